//! Route selection end to end: which integration a message reaches and what comes back.

use sockway_testkit::{MockBackend, MockResponse, RecordedRequest, TestGateway};
use tokio_tungstenite::tungstenite::Message;

use crate::config;

async fn routed_key(gateway: &TestGateway, backend: &mut MockBackend, body: &str) -> String {
    let mut client = gateway.connect().await;
    backend.next_event_for("$connect").await;
    client.send_text(body).await;
    let event = backend.next_event().await;
    assert_eq!(
        event["body"], body,
        "the MESSAGE event carries the frame verbatim"
    );
    event["requestContext"]["routeKey"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn custom_route_is_selected_by_action() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, "")).await;
    assert_eq!(
        routed_key(
            &gateway,
            &mut backend,
            r#"{"action":"sendmessage","data":"hi"}"#
        )
        .await,
        "sendmessage"
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn route_keys_match_exactly_and_case_sensitively() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, "")).await;
    assert_eq!(
        routed_key(&gateway, &mut backend, r#"{"action":"SendMessage"}"#).await,
        "$default"
    );
    assert_eq!(
        routed_key(&gateway, &mut backend, r#"{"action":"sendmessage "}"#).await,
        "$default"
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn non_json_goes_to_default() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, "")).await;
    assert_eq!(
        routed_key(&gateway, &mut backend, "hello there").await,
        "$default"
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn nested_path_and_template_expressions_route() {
    let mut backend = MockBackend::start().await;
    let toml = format!(
        r#"
[gateway]
route_selection_expression = "${{request.body.service}}/${{request.body.op.name}}"
[routes."chat/join"]
integration = "backend"
[routes."$default"]
integration = "backend"
[integrations.backend]
type = "http"
uri = "{}"
"#,
        backend.url("/events")
    );
    let gateway = TestGateway::start(&toml).await;
    let mut client = gateway.connect().await;
    client
        .send_text(r#"{"service":"chat","op":{"name":"join"}}"#)
        .await;
    assert_eq!(
        backend.next_event().await["requestContext"]["routeKey"],
        "chat/join"
    );
    client.send_text(r#"{"service":"chat"}"#).await;
    assert_eq!(
        backend.next_event().await["requestContext"]["routeKey"],
        "$default",
        "chat/ has no route"
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn unmatched_message_without_default_gets_forbidden_frame() {
    let mut backend = MockBackend::start().await;
    let toml = format!(
        "[routes.sendmessage]\nintegration = \"backend\"\n[integrations.backend]\ntype = \"http\"\nuri = \"{}\"\n",
        backend.url("/events")
    );
    let gateway = TestGateway::start(&toml).await;
    let mut client = gateway.connect().await;
    client.send_text(r#"{"action":"nothing"}"#).await;
    let frame = client.next_text().await;
    let parsed: serde_json::Value = serde_json::from_str(&frame).unwrap();
    let connection_id = parsed["connectionId"].as_str().unwrap();
    let request_id = parsed["requestId"].as_str().unwrap();
    assert_eq!(
        frame,
        format!(
            r#"{{"message": "Forbidden", "connectionId":"{connection_id}", "requestId":"{request_id}"}}"#
        )
    );
    assert_eq!(connection_id.len(), 16);
    // The connection stays open: a routable message still works.
    client.send_text(r#"{"action":"sendmessage"}"#).await;
    assert_eq!(
        backend.next_event().await["requestContext"]["routeKey"],
        "sendmessage"
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn two_way_route_sends_body_back_and_one_way_does_not() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, "")).await;
    let mut client = gateway.connect().await;
    // One-way first: the echo body must not come back, so the next frame the client sees is
    // the answer to the two-way message sent after it.
    client.send_text(r#"{"action":"sendmessage","n":1}"#).await;
    backend.next_event_for("sendmessage").await;
    client.send_text(r#"{"action":"other","n":2}"#).await;
    assert_eq!(client.next_text().await, r#"{"action":"other","n":2}"#);
    client.send_text(r#"{"action":"ping"}"#).await;
    assert_eq!(
        client.next_text().await,
        r#"{"pong":true}"#,
        "mock integration answers two-way"
    );
    gateway.shutdown().await;
}

/// A backend that echoes each MESSAGE event's `body` and `isBase64Encoded` as its proxy result,
/// as the Autobahn run's echo backend does.
fn binary_aware_echo(request: &RecordedRequest) -> MockResponse {
    let event = request.json();
    if event["requestContext"]["eventType"] != "MESSAGE" {
        return MockResponse::proxy(200, None);
    }
    MockResponse::json(serde_json::json!({
        "statusCode": 200,
        "body": event["body"],
        "isBase64Encoded": event["isBase64Encoded"],
    }))
}

#[tokio::test]
async fn base64_proxy_results_go_back_as_binary_messages() {
    // Autobahn 9.4.2: a binary message of ASCII bytes was echoed as a text message, because
    // the frame type was decided by UTF-8 validity alone.
    let backend = MockBackend::start().await;
    backend.respond_with(binary_aware_echo);
    let gateway = TestGateway::start(&config(&backend, "")).await;
    let mut client = gateway.connect().await;
    for payload in [&b"plain ascii"[..], b"", &[0xfe, 0x00, 0x23]] {
        client.send_binary(payload).await;
        match client.next_message().await {
            Message::Binary(bytes) => assert_eq!(&bytes[..], payload),
            other => panic!("binary {payload:?} came back as {other:?}"),
        }
    }
    client.send_text("text stays text").await;
    assert_eq!(client.next_text().await, "text stays text");
    client.close(1000, "").await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn empty_proxy_body_is_sent_and_absent_body_is_not() {
    // Autobahn 1.1.1 and 6.1.1: an empty text message got no echo, because an empty body
    // was treated like no body.
    let backend = MockBackend::start().await;
    backend.respond_with(|request: &RecordedRequest| {
        let event = request.json();
        match event["body"].as_str() {
            Some("no body") => MockResponse::proxy(200, None),
            Some(body) => MockResponse::proxy(200, Some(body)),
            None => MockResponse::proxy(200, None),
        }
    });
    let gateway = TestGateway::start(&config(&backend, "")).await;
    let mut client = gateway.connect().await;
    client.send_text("").await;
    assert_eq!(
        client.next_text().await,
        "",
        "`\"body\": \"\"` is an empty message"
    );
    // No body: nothing is sent, so the next frame is the answer to the message after it.
    client.send_text("no body").await;
    client.send_text(r#"{"action":"ping"}"#).await;
    assert_eq!(client.next_text().await, r#"{"pong":true}"#);
    client.close(1000, "").await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn integration_response_bytes_bounds_backend_replies() {
    // Autobahn 9.1.5: the echo of an 8 MiB message exceeded the fixed 6 MiB reply limit.
    let backend = MockBackend::start().await;
    backend.respond_with(|request: &RecordedRequest| {
        let event = request.json();
        match event["body"].as_str() {
            Some("small") => MockResponse::proxy(200, Some(&"s".repeat(900))),
            Some("large") => MockResponse::proxy(200, Some(&"l".repeat(2000))),
            _ => MockResponse::proxy(200, None),
        }
    });
    let gateway = TestGateway::start(&config(
        &backend,
        "[limits]\nintegration_response_bytes = 1024\n",
    ))
    .await;
    let mut client = gateway.connect().await;
    client.send_text("small").await;
    assert_eq!(client.next_text().await, "s".repeat(900));
    client.send_text("large").await;
    let frame: serde_json::Value = serde_json::from_str(&client.next_text().await).unwrap();
    assert_eq!(frame["message"], "Internal server error");
    client.close(1000, "").await;
    gateway.shutdown().await;
}
