//! `$disconnect` runs exactly once for every accepted connection, whatever ended it, with the
//! close code and reason in the event.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use sockway_testkit::{MockBackend, MockResponse, RecordedRequest, TestGateway, http_request};

use crate::{config, connected};

/// Asserts the event is a DISCONNECT with this code and reason, and returns its connection id.
fn check_disconnect(event: &Value, code: u64, reason: &str) -> String {
    let context = &event["requestContext"];
    assert_eq!(context["eventType"], "DISCONNECT", "{event}");
    assert_eq!(context["disconnectStatusCode"], code, "{event}");
    assert_eq!(context["disconnectReason"], reason, "{event}");
    context["connectionId"].as_str().unwrap().to_owned()
}

/// Shuts the gateway down (which waits for every `$disconnect`) and asserts that no other
/// DISCONNECT event than the one already taken was delivered.
async fn assert_no_more_disconnects(gateway: TestGateway, backend: &mut MockBackend) {
    gateway.shutdown().await;
    let extra: Vec<RecordedRequest> = backend
        .drain()
        .into_iter()
        .filter(|request| request.route_key() == "$disconnect")
        .collect();
    assert!(extra.is_empty(), "more than one $disconnect: {extra:?}");
}

#[tokio::test]
async fn client_close_reports_its_code_and_reason() {
    let (mut backend, gateway, client, connection_id) = connected("").await;
    client.close(1000, "bye now").await;
    let event = backend.next_event_for("$disconnect").await;
    assert_eq!(check_disconnect(&event, 1000, "bye now"), connection_id);
    assert_no_more_disconnects(gateway, &mut backend).await;
}

#[tokio::test]
async fn client_close_without_status_is_1005() {
    let (mut backend, gateway, client, _) = connected("").await;
    client.close_without_status().await;
    let event = backend.next_event_for("$disconnect").await;
    check_disconnect(&event, 1005, "Client-side close frame status not set");
    assert_no_more_disconnects(gateway, &mut backend).await;
}

#[tokio::test]
async fn tcp_drop_is_1006() {
    let (mut backend, gateway, client, connection_id) = connected("").await;
    client.drop_tcp();
    let event = backend.next_event_for("$disconnect").await;
    assert_eq!(
        check_disconnect(&event, 1006, "Connection lost"),
        connection_id
    );
    assert_no_more_disconnects(gateway, &mut backend).await;
}

#[tokio::test]
async fn silent_peer_is_found_by_heartbeat() {
    let (mut backend, gateway, client, _) =
        connected("[limits]\nheartbeat_interval = \"100ms\"\n").await;
    // Never polling the client means its library never answers the server's pings.
    let socket = client.into_inner();
    let event = backend.next_event_for("$disconnect").await;
    check_disconnect(&event, 1006, "Heartbeat timeout: no pong from the client");
    drop(socket);
    assert_no_more_disconnects(gateway, &mut backend).await;
}

#[tokio::test]
async fn answering_pings_keeps_the_connection_alive() {
    let (mut backend, gateway, client, _) =
        connected("[limits]\nheartbeat_interval = \"50ms\"\n").await;
    let mut socket = client.into_inner();
    // Polling answers pings; ten intervals pass with the connection still open.
    let mut pings = 0;
    while pings < 10 {
        match tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .unwrap()
        {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Ping(_))) => pings += 1,
            other => panic!("expected pings, got {other:?}"),
        }
    }
    assert!(
        backend
            .drain()
            .iter()
            .all(|request| request.route_key() != "$disconnect")
    );
    drop(socket);
    gateway.shutdown().await;
}

#[tokio::test]
async fn idle_connection_is_closed_with_1001() {
    let (mut backend, gateway, mut client, _) =
        connected("[limits]\nidle_timeout = \"300ms\"\n").await;
    assert_eq!(
        client.next_close().await,
        Some((1001, "Idle timeout".to_owned()))
    );
    let event = backend.next_event_for("$disconnect").await;
    check_disconnect(&event, 1001, "Idle timeout");
    assert_no_more_disconnects(gateway, &mut backend).await;
}

#[tokio::test]
async fn data_frames_reset_the_idle_timer() {
    let mut backend = MockBackend::start().await;
    // Each round trip through `$default` takes 150 ms of backend time; six of them outlast the
    // 400 ms idle timeout, which only activity can explain.
    backend.respond_with(
        |request: &RecordedRequest| match request.route_key().as_str() {
            "$default" => {
                MockResponse::proxy(200, Some("pong")).delayed(Duration::from_millis(150))
            }
            _ => MockResponse::proxy(200, None),
        },
    );
    let gateway =
        TestGateway::start(&config(&backend, "[limits]\nidle_timeout = \"400ms\"\n")).await;
    let mut client = gateway.connect().await;
    backend.next_event_for("$connect").await;
    let started = std::time::Instant::now();
    for _ in 0..6 {
        client.send_text("ping").await;
        assert_eq!(client.next_text().await, "pong");
    }
    assert!(started.elapsed() > Duration::from_millis(800));
    assert_eq!(
        client.next_close().await,
        Some((1001, "Idle timeout".to_owned()))
    );
    backend.next_event_for("$disconnect").await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn max_duration_closes_even_busy_connections() {
    let (mut backend, gateway, mut client, _) =
        connected("[limits]\nmax_connection_duration = \"500ms\"\n").await;
    client.send_text(r#"{"action":"ping"}"#).await;
    assert_eq!(client.next_text().await, r#"{"pong":true}"#);
    assert_eq!(
        client.next_close().await,
        Some((1001, "Maximum connection duration reached".to_owned()))
    );
    let event = backend.next_event_for("$disconnect").await;
    check_disconnect(&event, 1001, "Maximum connection duration reached");
    assert_no_more_disconnects(gateway, &mut backend).await;
}

#[tokio::test]
async fn delete_closes_with_1000() {
    let (mut backend, gateway, mut client, connection_id) = connected("").await;
    let (status, _, _) = http_request("DELETE", &gateway.connection_url(&connection_id), "").await;
    assert_eq!(status, 204);
    assert_eq!(
        client.next_close().await,
        Some((1000, "Connection Closed Normally".to_owned()))
    );
    let event = backend.next_event_for("$disconnect").await;
    assert_eq!(
        check_disconnect(&event, 1000, "Connection Closed Normally"),
        connection_id
    );
    assert_no_more_disconnects(gateway, &mut backend).await;
}

#[tokio::test]
async fn shutdown_closes_with_1001_and_delivers_disconnect() {
    let (mut backend, gateway, mut client, connection_id) = connected("").await;
    let closing = tokio::spawn(async move { client.next_close().await });
    gateway.shutdown().await;
    assert_eq!(
        closing.await.unwrap(),
        Some((1001, "Going away".to_owned()))
    );
    let events: Vec<Value> = backend
        .drain()
        .into_iter()
        .filter(|request| request.route_key() == "$disconnect")
        .map(|request| request.json())
        .collect();
    assert_eq!(events.len(), 1, "exactly one $disconnect: {events:?}");
    assert_eq!(
        check_disconnect(&events[0], 1001, "Going away"),
        connection_id
    );
}

#[tokio::test]
async fn shutdown_lets_inflight_integrations_finish_first() {
    let mut backend = MockBackend::start().await;
    backend.respond_with(|request: &RecordedRequest| {
        if request.route_key() == "sendmessage" {
            MockResponse::proxy(200, None).delayed(Duration::from_millis(300))
        } else {
            MockResponse::proxy(200, None)
        }
    });
    let gateway = TestGateway::start(&config(&backend, "")).await;
    let mut client = gateway.connect().await;
    backend.next_event_for("$connect").await;
    client.send_text(r#"{"action":"sendmessage"}"#).await;
    backend.next_event_for("sendmessage").await;
    gateway.shutdown().await;
    let routes: Vec<String> = backend
        .drain()
        .iter()
        .map(RecordedRequest::route_key)
        .collect();
    assert_eq!(
        routes,
        vec!["$disconnect".to_owned()],
        "DISCONNECT after the in-flight MESSAGE finished"
    );
}

/// Issue 15: `$disconnect` runs once, as on AWS. A handler that answers an error (or throws,
/// or returns nothing usable) ran: it used to be invoked up to five times.
#[tokio::test]
async fn a_failing_disconnect_handler_runs_once() {
    let mut backend = MockBackend::start().await;
    backend.respond_with(|request: &RecordedRequest| {
        if request.route_key() == "$disconnect" {
            MockResponse::status(503, "handler threw")
        } else {
            MockResponse::proxy(200, None)
        }
    });
    let gateway = TestGateway::start(&config(
        &backend,
        "[limits]\ndisconnect_backoff = \"10ms\"\n",
    ))
    .await;
    let client = gateway.connect().await;
    backend.next_event_for("$connect").await;
    client.close(1000, "").await;
    backend.next_event_for("$disconnect").await;
    assert_no_more_disconnects(gateway, &mut backend).await;
}

/// A handler that could not be reached did not run: `$disconnect` is tried again, with the
/// same `requestId`, until it runs.
#[tokio::test]
async fn a_disconnect_handler_that_never_ran_is_retried() {
    let mut backend = MockBackend::start().await;
    // A port nothing listens on: a connection refused is a handler that never ran.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let toml =
        config(
            &backend,
            "[limits]\ndisconnect_backoff = \"10ms\"\ndisconnect_attempts = 3\n",
        )
        .replacen(
            "[routes.\"$disconnect\"]\nintegration = \"backend\"",
            "[routes.\"$disconnect\"]\nintegration = \"gone\"",
            1,
        ) + &format!("\n[integrations.gone]\ntype = \"http\"\nuri = \"http://{closed}/events\"\n");
    let gateway = TestGateway::start(&toml).await;
    let client = gateway.connect().await;
    backend.next_event_for("$connect").await;
    client.close(1000, "").await;
    // Shutdown waits for the delivery and its retries.
    let metrics_url = format!("{}/metrics", gateway.root_url());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    loop {
        poll.tick().await;
        let (_, _, body) = sockway_testkit::http_request("GET", &metrics_url, "").await;
        let text = String::from_utf8_lossy(&body).into_owned();
        if text.contains("sockway_disconnect_retries_total 2") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "two retries after the first attempt: {text}"
        );
    }
    gateway.shutdown().await;
}
