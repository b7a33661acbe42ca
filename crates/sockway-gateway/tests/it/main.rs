//! Integration tests of the gateway library: real WebSocket clients, a real HTTP backend, a
//! gateway on port 0. One test crate, one module per area, so the gateway is linked once.

mod access_log;
mod api_keys;
mod authorizers;
mod bad_input;
mod cluster;
mod compression;
mod connect;
mod console;
mod disconnect;
mod events;
mod groups;
mod iam;
mod lambda;
mod limits;
mod management;
mod management_sigv4;
mod operations;
mod origins;
mod proxies;
mod refusals;
mod reload;
mod resume;
mod routing;
mod security;
mod throttling;
mod tls;
mod traces;

use sockway_testkit::{MockBackend, TestGateway, WsClient};

/// A config with every route pointed at `backend`: `$connect`, `$disconnect`, `$default`
/// (two-way), `sendmessage` (one-way) and `ping` (a two-way mock). `extra` is appended and may
/// add `[limits]` keys or more routes.
pub(crate) fn config(backend: &MockBackend, extra: &str) -> String {
    format!(
        r#"
[gateway]
stage = "dev"
api_id = "a1b2c3d4e5"

[routes."$connect"]
integration = "backend"

[routes."$disconnect"]
integration = "backend"

[routes."$default"]
integration = "backend"
route_response = true

[routes.sendmessage]
integration = "backend"

[routes.ping]
integration = "pong"
route_response = true

[integrations.backend]
type = "http"
uri = "{uri}"

[integrations.pong]
type = "mock"
status_code = 200
body = '{{"pong":true}}'
{extra}
"#,
        uri = backend.url("/events")
    )
}

/// Checks an AWS-style error answer of the management API: status, `x-amzn-ErrorType` and a
/// request id.
/// The key a signed test signs with: AWS's documentation example.
pub(crate) const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
pub(crate) const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// `[[management.credentials]]` with two keys, [`ACCESS_KEY_ID`] second.
pub(crate) fn management_credentials() -> String {
    format!(
        r#"
[[management.credentials]]
access_key_id = "AKIAOTHEREXAMPLE0000"
secret_access_key = "other-secret-of-the-first-key"

[[management.credentials]]
access_key_id = "{ACCESS_KEY_ID}"
secret_access_key = "{SECRET}"
"#
    )
}

pub(crate) fn check_error(
    status: u16,
    headers: &http::HeaderMap,
    expected_status: u16,
    expected_type: &str,
) {
    assert_eq!(status, expected_status, "{headers:?}");
    assert_eq!(headers["x-amzn-ErrorType"], expected_type);
    assert!(headers.contains_key("x-amzn-RequestId"));
}

/// Connects a client to `gateway` and returns it with its connection id, taken from the
/// `$connect` event `backend` received.
pub(crate) async fn connect(
    gateway: &TestGateway,
    backend: &mut MockBackend,
) -> (WsClient, String) {
    let client = gateway.connect().await;
    let event = backend.next_event_for("$connect").await;
    let id = event["requestContext"]["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    (client, id)
}

/// A gateway on [`config`] with one connected client: the backend, the gateway, the client and
/// its connection id (taken from the `$connect` event).
pub(crate) async fn connected(extra: &str) -> (MockBackend, TestGateway, WsClient, String) {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, extra)).await;
    let (client, connection_id) = connect(&gateway, &mut backend).await;
    (backend, gateway, client, connection_id)
}
