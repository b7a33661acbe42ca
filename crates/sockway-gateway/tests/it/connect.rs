//! `$connect`: the upgrade waits for the integration, whose answer decides the handshake.

use std::time::Duration;

use sockway_testkit::{
    MockBackend, MockResponse, RecordedRequest, TestGateway, connect, connect_with_headers,
};
use tokio_tungstenite::tungstenite;

use crate::config;

/// The HTTP status of a refused handshake.
fn refused_status(result: Result<sockway_testkit::WsClient, tungstenite::Error>) -> u16 {
    match result {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected the handshake to be refused"),
    }
}

fn refuse_connect_with(response: MockResponse) -> impl Fn(&RecordedRequest) -> MockResponse {
    move |request: &RecordedRequest| {
        if request.route_key() == "$connect" {
            response.clone()
        } else {
            MockResponse::proxy(200, None)
        }
    }
}

#[tokio::test]
async fn non_2xx_connect_status_refuses_with_that_status() {
    for status in [400, 401, 403, 500] {
        let mut backend = MockBackend::start().await;
        backend.respond_with(refuse_connect_with(MockResponse::proxy(
            status,
            Some("nope"),
        )));
        let gateway = TestGateway::start(&config(&backend, "")).await;
        assert_eq!(refused_status(connect(&gateway.ws_url).await), status);
        backend.next_event_for("$connect").await;
        gateway.shutdown().await;
        assert!(
            backend.drain().is_empty(),
            "a refused connection gets no $disconnect"
        );
    }
}

#[tokio::test]
async fn plain_http_status_decides_connect_too() {
    let backend = MockBackend::start().await;
    backend.respond_with(refuse_connect_with(MockResponse::status(401, "denied")));
    let gateway = TestGateway::start(&config(&backend, "")).await;
    assert_eq!(refused_status(connect(&gateway.ws_url).await), 401);
    gateway.shutdown().await;
}

#[tokio::test]
async fn connect_integration_failure_is_502() {
    let backend = MockBackend::start().await;
    backend.respond_with(refuse_connect_with(MockResponse::status(500, "crash")));
    let gateway = TestGateway::start(&config(&backend, "")).await;
    assert_eq!(refused_status(connect(&gateway.ws_url).await), 502);
    backend.respond_with(refuse_connect_with(MockResponse::json(
        serde_json::json!({"statusCode": "x"}),
    )));
    assert_eq!(
        refused_status(connect(&gateway.ws_url).await),
        502,
        "malformed proxy result"
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn unreachable_connect_backend_is_502() {
    let backend = MockBackend::start().await;
    let toml = config(&backend, "");
    drop(backend);
    let gateway = TestGateway::start(&toml).await;
    assert_eq!(refused_status(connect(&gateway.ws_url).await), 502);
    gateway.shutdown().await;
}

#[tokio::test]
async fn connect_timeout_is_504() {
    let backend = MockBackend::start().await;
    backend.respond_with(refuse_connect_with(
        MockResponse::proxy(200, None).delayed(Duration::from_secs(5)),
    ));
    let gateway = TestGateway::start(&config(
        &backend,
        "[limits]\nintegration_timeout = \"200ms\"\n",
    ))
    .await;
    assert_eq!(refused_status(connect(&gateway.ws_url).await), 504);
    gateway.shutdown().await;
}

#[tokio::test]
async fn without_connect_route_the_upgrade_succeeds() {
    let mut backend = MockBackend::start().await;
    let toml = format!(
        "[routes.\"$default\"]\nintegration = \"backend\"\n[integrations.backend]\ntype = \"http\"\nuri = \"{}\"\n",
        backend.url("/events")
    );
    let gateway = TestGateway::start(&toml).await;
    let mut client = gateway.connect().await;
    client.send_text("hello").await;
    assert_eq!(
        backend.next_event().await["requestContext"]["eventType"],
        "MESSAGE"
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn only_the_chosen_subprotocol_header_reaches_the_client() {
    let backend = MockBackend::start().await;
    backend.respond_with(|request: &RecordedRequest| {
        let mut response = MockResponse::proxy(200, Some("ignored"));
        if request.route_key() == "$connect" {
            response = MockResponse::json(serde_json::json!({
                "statusCode": 200,
                "headers": {"Sec-WebSocket-Protocol": "chat2", "X-Secret": "not for clients"}
            }));
        }
        response
    });
    let gateway = TestGateway::start(&config(&backend, "")).await;
    let client = connect_with_headers(
        &gateway.ws_url,
        &[("Sec-WebSocket-Protocol", "chat1, chat2")],
    )
    .await
    .unwrap();
    assert_eq!(
        client
            .response_headers
            .get("sec-websocket-protocol")
            .unwrap(),
        "chat2"
    );
    assert!(client.response_headers.get("x-secret").is_none());
    gateway.shutdown().await;
}

#[tokio::test]
async fn wrong_stage_path_is_forbidden() {
    let backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, "")).await;
    let wrong = gateway.ws_url.replace("/dev", "/prod");
    assert_eq!(refused_status(connect(&wrong).await), 403);
    gateway.shutdown().await;
}

#[tokio::test]
async fn empty_stage_serves_clients_at_the_root() {
    let mut backend = MockBackend::start().await;
    let toml = config(&backend, "").replace("stage = \"dev\"", "stage = \"\"");
    let gateway = TestGateway::start(&toml).await;
    assert!(gateway.ws_url.ends_with('/'), "{}", gateway.ws_url);
    let _client = gateway.connect().await;
    let event = backend.next_event_for("$connect").await;
    assert_eq!(event["requestContext"]["stage"], "");
    gateway.shutdown().await;
}
