//! Route selection end to end: which integration a message reaches and what comes back.

use sockway_testkit::{MockBackend, TestGateway};

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
