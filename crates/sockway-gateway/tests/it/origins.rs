//! `gateway.allowed_origins`: browsers from other origins get 403 before the authorizer and
//! `$connect` run; clients that send no `Origin` are let through.

use sockway_testkit::{MockBackend, TestGateway, connect_with_headers, metric};
use tokio_tungstenite::tungstenite;

use crate::config;

/// The `gateway.allowed_origins` line of these tests.
const ALLOWED_ORIGINS: &str = r#"allowed_origins = ["https://app.example.com", "http://localhost:3000", "https://*.example.org"]"#;

/// A gateway on [`config`] with [`ALLOWED_ORIGINS`] in its `[gateway]` table.
async fn origin_gateway() -> (MockBackend, TestGateway) {
    let backend = MockBackend::start().await;
    let toml = config(&backend, "").replacen(
        "api_id = \"a1b2c3d4e5\"\n",
        &format!("api_id = \"a1b2c3d4e5\"\n{ALLOWED_ORIGINS}\n"),
        1,
    );
    assert!(toml.contains(ALLOWED_ORIGINS));
    let gateway = TestGateway::start(&toml).await;
    (backend, gateway)
}

/// Connects with `Origin: origin` and returns the `$connect` event's `Origin` header.
async fn connect_from(gateway: &TestGateway, backend: &mut MockBackend, origin: &str) -> String {
    let client = connect_with_headers(&gateway.ws_url, &[("Origin", origin)])
        .await
        .unwrap_or_else(|error| panic!("origin {origin} was refused: {error}"));
    let event = backend.next_event_for("$connect").await;
    drop(client);
    event["headers"]["Origin"].as_str().unwrap().to_owned()
}

fn client_errors(metrics: &str) -> f64 {
    metric(metrics, r#"ClientError_total{stage="dev"}"#)
}

#[tokio::test]
async fn origins_on_the_list_connect() {
    let (mut backend, gateway) = origin_gateway().await;
    for origin in [
        "https://app.example.com",
        "https://APP.example.com:443",
        "http://localhost:3000",
        "https://chat.eu.example.org",
    ] {
        assert_eq!(connect_from(&gateway, &mut backend, origin).await, origin);
    }
    gateway.shutdown().await;
}

#[tokio::test]
async fn origins_off_the_list_get_403_before_connect_runs() {
    let (mut backend, gateway) = origin_gateway().await;
    let errors_before = client_errors(&gateway.metrics().await);
    for origin in [
        "https://evil.example.com",
        "http://app.example.com",
        "https://app.example.com:8443",
        "https://example.org",
        "null",
    ] {
        let refused = connect_with_headers(&gateway.ws_url, &[("Origin", origin)]).await;
        let Err(tungstenite::Error::Http(response)) = refused else {
            panic!("origin {origin}: expected an HTTP refusal, got {refused:?}");
        };
        assert_eq!(response.status().as_u16(), 403, "origin {origin}");
        assert_eq!(response.headers()["x-amzn-ErrorType"], "ForbiddenException");
        let body: serde_json::Value =
            serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
        assert_eq!(body, serde_json::json!({"message": "Forbidden"}));
    }
    assert_eq!(client_errors(&gateway.metrics().await), errors_before + 5.0);

    // No `$connect` reached the backend for the refused upgrades: the first request it sees
    // is the allowed client's.
    let allowed = connect_with_headers(&gateway.ws_url, &[("Origin", "https://app.example.com")])
        .await
        .unwrap();
    let first = backend.next_event().await;
    assert_eq!(first["requestContext"]["routeKey"], "$connect");
    assert_eq!(first["headers"]["Origin"], "https://app.example.com");
    drop(allowed);
    gateway.shutdown().await;
}

#[tokio::test]
async fn origins_do_not_apply_to_clients_without_an_origin_header() {
    let (mut backend, gateway) = origin_gateway().await;
    let client = gateway.connect().await;
    let event = backend.next_event_for("$connect").await;
    assert!(event["headers"].get("Origin").is_none());
    drop(client);
    gateway.shutdown().await;
}
