//! The `@connections` API: delivery, GetConnection, DeleteConnection and AWS error shapes.

use sockway_testkit::{MockBackend, TestGateway, http_request};
use tokio_tungstenite::tungstenite::Message;

use crate::{check_error, config, connect, connected};

#[tokio::test]
async fn post_delivers_text_in_order() {
    let (_backend, gateway, mut client, connection_id) = connected("").await;
    let url = gateway.connection_url(&connection_id);
    for index in 0..20 {
        let (status, headers, _) = http_request("POST", &url, format!("message {index}")).await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-amzn-RequestId"].len(), 36, "a UUID request id");
    }
    for index in 0..20 {
        assert_eq!(client.next_text().await, format!("message {index}"));
    }
    gateway.shutdown().await;
}

#[tokio::test]
async fn post_of_non_utf8_arrives_as_binary() {
    let (_backend, gateway, mut client, connection_id) = connected("").await;
    let (status, _, _) = http_request(
        "POST",
        &gateway.connection_url(&connection_id),
        vec![0xff, 0x00, 0x80],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        client.next_message().await,
        Message::binary(vec![0xff, 0x00, 0x80])
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn post_larger_than_a_frame_is_fragmented_and_reassembled() {
    let (_backend, gateway, mut client, connection_id) =
        connected("[limits]\nframe_bytes = 1024\n").await;
    let payload = "abcdefghij".repeat(500);
    let (status, _, _) = http_request(
        "POST",
        &gateway.connection_url(&connection_id),
        payload.clone(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(client.next_text().await, payload);
    gateway.shutdown().await;
}

#[tokio::test]
async fn post_over_128_kib_is_payload_too_large() {
    let (_backend, gateway, _client, connection_id) = connected("").await;
    let url = gateway.connection_url(&connection_id);
    let (status, _, _) = http_request("POST", &url, vec![b'a'; 131072]).await;
    assert_eq!(status, 200, "exactly 128 KiB is allowed");
    let (status, headers, body) = http_request("POST", &url, vec![b'a'; 131073]).await;
    check_error(status, &headers, 413, "PayloadTooLargeException");
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(body["message"].is_string());
    gateway.shutdown().await;
}

#[tokio::test]
async fn get_connection_reports_times_and_identity() {
    let (_backend, gateway, mut client, connection_id) = connected("").await;
    client.send_text(r#"{"action":"ping"}"#).await;
    client.next_text().await;
    let (status, headers, body) =
        http_request("GET", &gateway.connection_url(&connection_id), "").await;
    assert_eq!(status, 200);
    assert!(headers.contains_key("x-amzn-RequestId"));
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let connected_at = body["connectedAt"].as_str().unwrap();
    let last_active_at = body["lastActiveAt"].as_str().unwrap();
    assert_eq!(
        connected_at.len(),
        24,
        "ISO-8601 with milliseconds: {connected_at}"
    );
    assert!(connected_at.ends_with('Z'));
    assert!(last_active_at >= connected_at);
    assert_eq!(body["identity"]["sourceIp"], "127.0.0.1");
    gateway.shutdown().await;
}

#[tokio::test]
async fn deleted_connection_is_gone() {
    let (_backend, gateway, mut client, connection_id) = connected("").await;
    let url = gateway.connection_url(&connection_id);
    assert_eq!(http_request("DELETE", &url, "").await.0, 204);
    for method in ["POST", "GET", "DELETE"] {
        let (status, headers, body) = http_request(method, &url, "late").await;
        check_error(status, &headers, 410, "GoneException");
        assert!(body.is_empty(), "410 has an empty body, as AWS sends it");
    }
    assert_eq!(client.next_close().await.map(|(code, _)| code), Some(1000));
    gateway.shutdown().await;
}

#[tokio::test]
async fn messages_queued_before_delete_are_delivered_first() {
    let (_backend, gateway, mut client, connection_id) = connected("").await;
    let url = gateway.connection_url(&connection_id);
    assert_eq!(http_request("POST", &url, "last words").await.0, 200);
    assert_eq!(http_request("DELETE", &url, "").await.0, 204);
    assert_eq!(client.next_text().await, "last words");
    assert_eq!(client.next_close().await.map(|(code, _)| code), Some(1000));
    gateway.shutdown().await;
}

#[tokio::test]
async fn unknown_and_malformed_ids() {
    let (_backend, gateway, _client, _) = connected("").await;
    let (status, headers, _) =
        http_request("POST", &gateway.connection_url("AAAAAAAAAAAAAAA="), "x").await;
    check_error(status, &headers, 410, "GoneException");
    let (status, headers, _) =
        http_request("POST", &gateway.connection_url("not-an-id"), "x").await;
    check_error(status, &headers, 400, "BadRequestException");
    let (status, headers, _) =
        http_request("PUT", &gateway.connection_url("AAAAAAAAAAAAAAA="), "x").await;
    check_error(status, &headers, 405, "MethodNotAllowedException");
    let wrong_stage = gateway
        .connection_url("AAAAAAAAAAAAAAA=")
        .replace("/dev/", "/prod/");
    let (status, headers, body) = http_request("POST", &wrong_stage, "x").await;
    check_error(status, &headers, 403, "ForbiddenException");
    assert_eq!(&body[..], br#"{"message":"Forbidden"}"#);
    gateway.shutdown().await;
}

#[tokio::test]
async fn percent_encoded_at_sign_is_accepted() {
    let (_backend, gateway, mut client, connection_id) = connected("").await;
    let url = gateway
        .connection_url(&connection_id)
        .replace("@connections", "%40connections");
    assert_eq!(http_request("POST", &url, "via %40").await.0, 200);
    assert_eq!(client.next_text().await, "via %40");
    gateway.shutdown().await;
}

#[tokio::test]
async fn full_outbound_queue_answers_429() {
    let (_backend, gateway, client, connection_id) =
        connected("[limits]\noutbound_queue = 1\n").await;
    // The client never reads: socket buffers fill, the connection's write stalls, its queue
    // fills, and the API reports LimitExceededException instead of buffering without bound.
    let socket = client.into_inner();
    let url = gateway.connection_url(&connection_id);
    let payload = vec![b'z'; 128 * 1024];
    let mut limited = None;
    for attempt in 0..2000 {
        let (status, headers, _) = http_request("POST", &url, payload.clone()).await;
        if status == 429 {
            limited = Some((attempt, headers));
            break;
        }
        assert_eq!(status, 200);
    }
    let (_, headers) = limited.expect("a non-reading client's queue fills within 256 MiB of posts");
    assert_eq!(headers["x-amzn-ErrorType"], "LimitExceededException");
    drop(socket);
    gateway.shutdown().await;
}

/// Issue 15: a handler behind a custom domain with an empty base path posts to
/// `/@connections/{id}` without the stage; it reaches the connection as the staged path does.
#[tokio::test]
async fn connections_answer_without_the_stage_prefix() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, "")).await;
    let (mut client, connection_id) = connect(&gateway, &mut backend).await;
    let url = format!(
        "{}/@connections/{}",
        gateway.root_url(),
        connection_id.replace('=', "%3D")
    );
    let (status, _, _) = http_request("POST", &url, "no stage").await;
    assert_eq!(status, 200);
    assert_eq!(client.next_text().await, "no stage");
    let (status, _, body) = http_request("GET", &url, "").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    gateway.shutdown().await;
}
