//! Throttles and caps: a route's token bucket answers with an error frame and keeps the
//! connection; the connect bucket and the connection caps refuse upgrades with 429 (503 for
//! the total cap) before `$connect` runs; the management bucket answers 429
//! `LimitExceededException`. Each refusal is counted.

use serde_json::Value;
use sockway_testkit::{MockBackend, TestGateway, connect, http_request, metric};
use tokio_tungstenite::tungstenite;

use crate::{check_error, config, connected};

/// Upgrades `url` and returns the refusal's status, headers and JSON body.
async fn refused_upgrade(url: &str) -> (u16, http::HeaderMap, Value) {
    match connect(url).await {
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let body = response.body().clone().unwrap_or_default();
            let body = serde_json::from_slice(&body).expect("a JSON error body");
            (status, response.headers().clone(), body)
        }
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

/// How many requests for `route_key` the backend received and no test step took yet.
fn remaining(backend: &mut MockBackend, route_key: &str) -> usize {
    backend
        .drain()
        .into_iter()
        .filter(|request| request.json()["requestContext"]["routeKey"] == route_key)
        .count()
}

fn throttled(metrics: &str, reason: &str) -> f64 {
    metric(
        metrics,
        &format!(r#"sockway_throttled_total{{reason="{reason}"}}"#),
    )
}

#[tokio::test]
async fn a_throttled_route_answers_with_an_error_frame_and_keeps_the_connection() {
    let (mut backend, gateway, mut client, connection_id) = connected(
        r#"
[throttling]
rate_limit = 0.001
burst_limit = 2
"#,
    )
    .await;
    for n in 0..5 {
        client
            .send_text(&format!(r#"{{"action":"sendmessage","n":{n}}}"#))
            .await;
    }
    // The first two take the bucket's tokens and reach the backend; the other three are
    // refused in order, each with its own request id.
    let mut request_ids = Vec::new();
    for _ in 0..3 {
        let frame: Value = serde_json::from_str(&client.next_text().await).unwrap();
        assert_eq!(frame["message"], "Too Many Requests");
        assert_eq!(frame["connectionId"], connection_id.as_str());
        request_ids.push(frame["requestId"].as_str().unwrap().to_owned());
    }
    request_ids.dedup();
    assert_eq!(request_ids.len(), 3);
    for n in 0..2 {
        let event = backend.next_event_for("sendmessage").await;
        let body: Value = serde_json::from_str(event["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["n"], n);
    }

    // Each route has its own bucket (AWS's DefaultRouteSettings): `ping` still has tokens, and
    // the connection is still open.
    client.send_text(r#"{"action":"ping"}"#).await;
    assert_eq!(client.next_text().await, r#"{"pong":true}"#);

    let metrics = gateway.metrics().await;
    assert_eq!(throttled(&metrics, "route"), 3.0);
    assert_eq!(metric(&metrics, r#"ClientError_total{stage="dev"}"#), 3.0);
    gateway.shutdown().await;
    assert_eq!(remaining(&mut backend, "sendmessage"), 0);
}

#[tokio::test]
async fn a_route_can_override_the_default_bucket_or_turn_it_off() {
    let (_backend, gateway, mut client, _) = connected(
        r#"
[throttling]
rate_limit = 0.001
burst_limit = 1
"#,
    )
    .await;
    // `ping` (a mock route) has the default bucket of one token.
    client.send_text(r#"{"action":"ping"}"#).await;
    assert_eq!(client.next_text().await, r#"{"pong":true}"#);
    client.send_text(r#"{"action":"ping"}"#).await;
    let frame: Value = serde_json::from_str(&client.next_text().await).unwrap();
    assert_eq!(frame["message"], "Too Many Requests");
    gateway.shutdown().await;

    // The same route with `throttling_rate_limit = 0` is never throttled.
    let backend = MockBackend::start().await;
    let toml = config(
        &backend,
        "[throttling]\nrate_limit = 0.001\nburst_limit = 1\n",
    )
    .replacen(
        "[routes.ping]\nintegration = \"pong\"\n",
        "[routes.ping]\nintegration = \"pong\"\nthrottling_rate_limit = 0\n",
        1,
    );
    assert!(toml.contains("throttling_rate_limit = 0"));
    let gateway = TestGateway::start(&toml).await;
    let mut client = gateway.connect().await;
    for _ in 0..20 {
        client.send_text(r#"{"action":"ping"}"#).await;
    }
    for _ in 0..20 {
        assert_eq!(client.next_text().await, r#"{"pong":true}"#);
    }
    gateway.shutdown().await;
}

#[tokio::test]
async fn the_connect_bucket_refuses_upgrades_with_429_before_connect_runs() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(
        &backend,
        "[throttling]\nconnect_rate_limit = 0.001\nconnect_burst_limit = 2\n",
    ))
    .await;
    let _first = gateway.connect().await;
    let _second = gateway.connect().await;
    backend.next_event_for("$connect").await;
    backend.next_event_for("$connect").await;

    let (status, headers, body) = refused_upgrade(&gateway.ws_url).await;
    check_error(status, &headers, 429, "LimitExceededException");
    assert_eq!(body, serde_json::json!({"message": "Too Many Requests"}));
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1, "Retry-After {retry_after}");

    let metrics = gateway.metrics().await;
    assert_eq!(throttled(&metrics, "connect_rate"), 1.0);
    gateway.shutdown().await;
    // Only the two admitted connections ever reached `$connect`.
    assert_eq!(remaining(&mut backend, "$connect"), 0);
}

#[tokio::test]
async fn the_per_ip_cap_refuses_with_429_until_a_connection_ends() {
    let mut backend = MockBackend::start().await;
    let gateway =
        TestGateway::start(&config(&backend, "[limits]\nmax_connections_per_ip = 2\n")).await;
    let first = gateway.connect().await;
    let _second = gateway.connect().await;
    let (status, headers, _) = refused_upgrade(&gateway.ws_url).await;
    check_error(status, &headers, 429, "LimitExceededException");

    // The slot comes back once the connection has ended.
    first.close(1000, "bye").await;
    backend.next_event_for("$disconnect").await;
    let _third = gateway.connect().await;

    let metrics = gateway.metrics().await;
    assert_eq!(throttled(&metrics, "connections_per_ip"), 1.0);
    gateway.shutdown().await;
}

#[tokio::test]
async fn the_total_cap_refuses_with_503() {
    let backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, "[limits]\nmax_connections = 1\n")).await;
    let _only = gateway.connect().await;
    let (status, headers, body) = refused_upgrade(&gateway.ws_url).await;
    check_error(status, &headers, 503, "ServiceUnavailableException");
    assert_eq!(body["message"], "Service Unavailable");
    let metrics = gateway.metrics().await;
    assert_eq!(throttled(&metrics, "max_connections"), 1.0);
    gateway.shutdown().await;
}

#[tokio::test]
async fn the_management_bucket_answers_429_limit_exceeded() {
    let (_backend, gateway, mut client, connection_id) =
        connected("[throttling]\nmanagement_rate_limit = 0.001\nmanagement_burst_limit = 2\n")
            .await;
    let url = gateway.connection_url(&connection_id);
    for n in 0..2 {
        assert_eq!(http_request("POST", &url, format!("m{n}")).await.0, 200);
    }
    let (status, headers, body) = http_request("POST", &url, "m2").await;
    check_error(status, &headers, 429, "LimitExceededException");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["message"], "Too Many Requests");
    // What was acknowledged arrived; what was refused did not.
    assert_eq!(client.next_text().await, "m0");
    assert_eq!(client.next_text().await, "m1");

    let metrics = gateway.metrics().await;
    assert_eq!(throttled(&metrics, "management"), 1.0);
    gateway.shutdown().await;
}
