//! Frame and message limits, binary frames, error frames and backpressure.

use std::sync::Arc;
use std::time::Duration;

use sockway_testkit::{MockBackend, MockResponse, RecordedRequest, TestGateway, WsClient};
use tokio_tungstenite::tungstenite::Message;

use crate::config;

fn error_frame(message: &str, frame: &str) {
    let parsed: serde_json::Value = serde_json::from_str(frame).unwrap();
    let connection_id = parsed["connectionId"].as_str().unwrap();
    let request_id = parsed["requestId"].as_str().unwrap();
    assert_eq!(
        frame,
        format!(
            r#"{{"message": "{message}", "connectionId":"{connection_id}", "requestId":"{request_id}"}}"#
        ),
        "byte-exact AWS error frame"
    );
}

#[tokio::test]
async fn oversized_frame_closes_with_1009() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(
        &backend,
        "[limits]\nframe_bytes = 1024\nmessage_bytes = 4096\n",
    ))
    .await;
    let mut client = gateway.connect().await;
    backend.next_event_for("$connect").await;
    client.send_text(&"x".repeat(1025)).await;
    assert_eq!(client.next_close().await.map(|(code, _)| code), Some(1009));
    let event = backend.next_event_for("$disconnect").await;
    assert_eq!(event["requestContext"]["disconnectStatusCode"], 1009);
    gateway.shutdown().await;
}

#[tokio::test]
async fn oversized_fragmented_message_closes_with_1009() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(
        &backend,
        "[limits]\nframe_bytes = 1024\nmessage_bytes = 2048\n",
    ))
    .await;
    let mut client = gateway.connect().await;
    backend.next_event_for("$connect").await;
    let chunk = bytes::Bytes::from(vec![b'a'; 1000]);
    client
        .send(Message::Frame(Frame::message(
            chunk.clone(),
            OpCode::Data(Data::Text),
            false,
        )))
        .await
        .unwrap();
    client
        .send(Message::Frame(Frame::message(
            chunk.clone(),
            OpCode::Data(Data::Continue),
            false,
        )))
        .await
        .unwrap();
    let _ = client
        .send(Message::Frame(Frame::message(
            chunk,
            OpCode::Data(Data::Continue),
            true,
        )))
        .await;
    assert_eq!(client.next_close().await.map(|(code, _)| code), Some(1009));
    backend.next_event_for("$disconnect").await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn binary_frames_can_be_rejected_with_1003() {
    let mut backend = MockBackend::start().await;
    let toml = config(&backend, "").replace(
        "api_id = \"a1b2c3d4e5\"",
        "api_id = \"a1b2c3d4e5\"\nbinary_frames = \"reject\"",
    );
    let gateway = TestGateway::start(&toml).await;
    let mut client = gateway.connect().await;
    backend.next_event_for("$connect").await;
    client.send_binary(b"\x00\x01").await;
    assert_eq!(client.next_close().await.map(|(code, _)| code), Some(1003));
    let event = backend.next_event_for("$disconnect").await;
    assert_eq!(event["requestContext"]["disconnectStatusCode"], 1003);
    gateway.shutdown().await;
}

#[tokio::test]
async fn integration_errors_send_internal_server_error_even_one_way() {
    let mut backend = MockBackend::start().await;
    backend.respond_with(
        |request: &RecordedRequest| match request.route_key().as_str() {
            "sendmessage" => MockResponse::status(500, "boom"),
            "$default" => MockResponse::json(serde_json::json!({"statusCode": 200, "body": 5})),
            _ => MockResponse::proxy(200, None),
        },
    );
    let gateway = TestGateway::start(&config(&backend, "")).await;
    let mut client = gateway.connect().await;
    backend.next_event_for("$connect").await;
    client.send_text(r#"{"action":"sendmessage"}"#).await;
    error_frame("Internal server error", &client.next_text().await);
    client.send_text(r#"{"action":"x"}"#).await;
    error_frame("Internal server error", &client.next_text().await);
    // Still open.
    client.send_text(r#"{"action":"ping"}"#).await;
    assert_eq!(client.next_text().await, r#"{"pong":true}"#);
    gateway.shutdown().await;
}

#[tokio::test]
async fn proxy_status_does_not_stop_delivery_of_the_body() {
    let backend = MockBackend::start().await;
    backend.respond_with(
        |request: &RecordedRequest| match request.route_key().as_str() {
            "$default" => MockResponse::proxy(500, Some("still delivered")),
            _ => MockResponse::proxy(200, None),
        },
    );
    let gateway = TestGateway::start(&config(&backend, "")).await;
    let mut client = gateway.connect().await;
    client.send_text("anything").await;
    assert_eq!(client.next_text().await, "still delivered");
    gateway.shutdown().await;
}

#[tokio::test]
async fn slow_integration_sends_endpoint_request_timed_out() {
    let mut backend = MockBackend::start().await;
    backend.respond_with(|request: &RecordedRequest| {
        if request.route_key() == "sendmessage" {
            MockResponse::proxy(200, None).delayed(Duration::from_secs(5))
        } else {
            MockResponse::proxy(200, None)
        }
    });
    let toml = config(&backend, "").replace(
        "type = \"http\"\nuri",
        "type = \"http\"\ntimeout = \"200ms\"\nuri",
    );
    let gateway = TestGateway::start(&toml).await;
    let mut client = gateway.connect().await;
    backend.next_event_for("$connect").await;
    client.send_text(r#"{"action":"sendmessage"}"#).await;
    error_frame("Endpoint request timed out", &client.next_text().await);
    gateway.shutdown().await;
}

#[tokio::test]
async fn unreachable_backend_sends_internal_server_error() {
    let backend = MockBackend::start().await;
    let toml =
        config(&backend, "").replace("[routes.\"$connect\"]\nintegration = \"backend\"\n", "");
    drop(backend);
    let gateway = TestGateway::start(&toml).await;
    let mut client = gateway.connect().await;
    client.send_text(r#"{"action":"sendmessage"}"#).await;
    error_frame("Internal server error", &client.next_text().await);
    gateway.shutdown().await;
}

#[tokio::test]
async fn inflight_bound_applies_backpressure() {
    // With a bound of 1 the connection stops reading while an integration runs, so each
    // request reaches the backend only after the previous (delayed) answer went out.
    let serial = serial_arrivals(1).await;
    assert!(
        serial,
        "with max_inflight_integrations = 1 requests must not overlap"
    );
    let overlapping = serial_arrivals(4).await;
    assert!(
        !overlapping,
        "with a bound of 4 requests overlap (the test can see concurrency)"
    );
}

/// Whether every `sendmessage` request arrived after the previous one's delayed answer went out.
async fn serial_arrivals(inflight: usize) -> bool {
    let mut backend = MockBackend::start().await;
    let answered_at = Arc::new(std::sync::Mutex::new(Vec::<std::time::Instant>::new()));
    let arrivals = Arc::new(std::sync::Mutex::new(Vec::<std::time::Instant>::new()));
    let (answered_in, arrivals_in) = (answered_at.clone(), arrivals.clone());
    let delay = Duration::from_millis(150);
    backend.respond_with(move |request: &RecordedRequest| {
        if request.route_key() == "sendmessage" {
            let now = std::time::Instant::now();
            arrivals_in.lock().unwrap().push(now);
            answered_in.lock().unwrap().push(now + delay);
            MockResponse::proxy(200, None).delayed(delay)
        } else {
            MockResponse::proxy(200, None)
        }
    });
    let toml = config(
        &backend,
        &format!("[limits]\nmax_inflight_integrations = {inflight}\n"),
    );
    let gateway = TestGateway::start(&toml).await;
    let mut client = gateway.connect().await;
    backend.next_event_for("$connect").await;
    for _ in 0..4 {
        client.send_text(r#"{"action":"sendmessage"}"#).await;
    }
    for _ in 0..4 {
        backend.next_event_for("sendmessage").await;
    }
    client.send_text(r#"{"action":"ping"}"#).await;
    assert_eq!(client.next_text().await, r#"{"pong":true}"#);
    gateway.shutdown().await;
    let arrivals = arrivals.lock().unwrap().clone();
    let answered = answered_at.lock().unwrap().clone();
    arrivals
        .windows(2)
        .zip(answered.iter())
        .all(|(pair, previous_answer)| pair[1] >= *previous_answer)
}

#[tokio::test]
async fn backend_calls_beyond_the_cap_wait_for_a_pooled_connection() {
    // Twelve slow calls at once (three clients, four messages each): with a cap of 2 the
    // backend never answers more than two at once and the gateway opens no third connection;
    // every message is still answered.
    let backend = slow_default_backend(Duration::from_millis(100)).await;
    let gateway = TestGateway::start(&backend_cap(&backend, 2)).await;
    let (most, _clients) = twelve_at_once(&gateway, &backend).await;
    assert_eq!(most, 2, "calls at once");
    let connections = backend.connections_accepted();
    assert!(connections <= 2, "the capped pool opened {connections}");
    // Ten of the twelve found both places taken (the three `$connect` calls ran one by one).
    let waits = sockway_testkit::metric(
        &gateway.metrics().await,
        "sockway_backend_connection_waits_total",
    );
    assert_eq!(waits, 10.0);
    gateway.shutdown().await;
    // Without a cap the same load overlaps more (the test can see concurrency).
    let backend = slow_default_backend(Duration::from_millis(100)).await;
    let gateway = TestGateway::start(&backend_cap(&backend, 65536)).await;
    let (most, _clients) = twelve_at_once(&gateway, &backend).await;
    let connections = backend.connections_accepted();
    assert!(
        most > 2 && connections > 2,
        "uncapped: {most} at once over {connections} connections"
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_reload_lowers_the_backend_cap_for_the_calls_after_it() {
    let backend = slow_default_backend(Duration::from_millis(100)).await;
    let gateway = TestGateway::start(&backend_cap(&backend, 65536)).await;
    let (most, _before) = twelve_at_once(&gateway, &backend).await;
    assert!(most > 2, "{most} at once before the reload");
    let outcome = gateway.reload(&backend_cap(&backend, 2)).await.unwrap();
    assert_eq!(outcome.changes, ["limits"]);
    let (most, _after) = twelve_at_once(&gateway, &backend).await;
    assert_eq!(most, 2, "calls at once after the reload");
    gateway.shutdown().await;
}

/// The test config with `limits.max_backend_connections = cap`.
fn backend_cap(backend: &MockBackend, cap: usize) -> String {
    config(
        backend,
        &format!("[limits]\nmax_backend_connections = {cap}\n"),
    )
}

/// A backend that echoes, taking `delay` over each `$default` message.
async fn slow_default_backend(delay: Duration) -> MockBackend {
    let backend = MockBackend::start().await;
    let echo = sockway_testkit::echo_responder();
    backend.respond_with(move |request: &RecordedRequest| {
        let answer = echo(request);
        match request.route_key().as_str() {
            "$default" => answer.delayed(delay),
            _ => answer,
        }
    });
    backend
}

/// Sends twelve `$default` messages at once (three clients, four each), checks that each is
/// answered, and returns the most calls the backend answered at once, and the clients, for the
/// caller to hold until it has read what it needs (their `$disconnect` calls are calls too).
async fn twelve_at_once(gateway: &TestGateway, backend: &MockBackend) -> (usize, Vec<WsClient>) {
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(gateway.connect().await);
    }
    backend.take_max_in_flight();
    for (index, client) in clients.iter_mut().enumerate() {
        for message in 0..4 {
            client.send_text(&format!("m{index}-{message}")).await;
        }
    }
    for (index, client) in clients.iter_mut().enumerate() {
        let mut answers: Vec<String> = Vec::new();
        for _ in 0..4 {
            answers.push(client.next_text().await);
        }
        answers.sort();
        let expected: Vec<String> = (0..4)
            .map(|message| format!("m{index}-{message}"))
            .collect();
        assert_eq!(answers, expected, "client {index}'s answers");
    }
    (backend.take_max_in_flight(), clients)
}

#[tokio::test]
async fn waiting_for_a_backend_connection_counts_toward_the_timeout() {
    // One connection to the backend, each call 300 ms, a 450 ms timeout: the first of two
    // messages sent at once is answered, the second waits 300 ms for the connection and times
    // out during its own call.
    let backend = slow_default_backend(Duration::from_millis(300)).await;
    let toml = backend_cap(&backend, 1).replace(
        "type = \"http\"\nuri",
        "type = \"http\"\ntimeout = \"450ms\"\nuri",
    );
    let gateway = TestGateway::start(&toml).await;
    let mut client = gateway.connect().await;
    client.send_text("first").await;
    client.send_text("second").await;
    assert_eq!(client.next_text().await, "first");
    error_frame("Endpoint request timed out", &client.next_text().await);
    gateway.shutdown().await;
}
