//! The event JSON integrations receive is the exact Lambda-proxy event AWS sends.

use aws_lambda_events::event::apigw::ApiGatewayWebsocketProxyRequest;
use serde_json::Value;
use sockway_testkit::{MockBackend, TestGateway, connect_with_headers};

use crate::config;

/// Every event must deserialize into the type Rust Lambda handlers use.
fn check_oracle(event: &Value) -> ApiGatewayWebsocketProxyRequest {
    serde_json::from_value(event.clone())
        .unwrap_or_else(|error| panic!("aws_lambda_events rejects {event}: {error}"))
}

/// Asserts that `keys` appear in this order in the raw JSON text (serde_json's `Value` sorts
/// keys, so order is checked on the bytes the backend received).
fn check_key_order(raw: &str, keys: &[&str]) {
    let positions: Vec<usize> = keys
        .iter()
        .map(|key| {
            raw.find(&format!("\"{key}\":"))
                .unwrap_or_else(|| panic!("key {key} missing in {raw}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "key order {keys:?} in {raw}"
    );
}

/// Upgrades by hand, so header names go out exactly as written here (client libraries
/// normalise them), and returns the open socket.
pub(crate) async fn raw_upgrade(ws_url: &str, extra_headers: &str) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = ws_url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let mut stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let request = format!(
        "GET /dev HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = [0u8; 12];
    stream.read_exact(&mut response).await.unwrap();
    assert_eq!(&response, b"HTTP/1.1 101");
    stream
}

#[tokio::test]
async fn connect_event_has_aws_shape() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, "")).await;
    let url = format!("{}?token=abc&room=a%20b&room=c", gateway.ws_url);
    let _client = connect_with_headers(&url, &[("User-Agent", "sockway-test/1")])
        .await
        .unwrap();
    let request = backend.next_request().await;
    assert_eq!(request.method, "POST");
    assert_eq!(request.headers["content-type"], "application/json");
    let event = request.json();
    let oracle = check_oracle(&event);
    assert_eq!(
        oracle.request_context.event_type.as_deref(),
        Some("CONNECT")
    );

    assert_eq!(event["isBase64Encoded"], false);
    assert!(event.get("body").is_none(), "CONNECT has no body");
    let headers = &event["headers"];
    assert!(headers.get("Sec-WebSocket-Key").is_some(), "{headers}");
    assert!(
        headers.get("Connection").is_none() && headers.get("Upgrade").is_none(),
        "hop-by-hop dropped"
    );
    assert_eq!(headers["X-Forwarded-For"], "127.0.0.1");
    assert_eq!(headers["X-Forwarded-Proto"], "http");
    assert!(
        headers["X-Amzn-Trace-Id"]
            .as_str()
            .unwrap()
            .starts_with("Root=1-")
    );
    assert_eq!(
        event["queryStringParameters"],
        serde_json::json!({"token": "abc", "room": "c"})
    );
    assert_eq!(
        event["multiValueQueryStringParameters"]["room"],
        serde_json::json!(["a b", "c"])
    );

    let raw = String::from_utf8(request.body.to_vec()).unwrap();
    check_key_order(
        &raw,
        &[
            "headers",
            "multiValueHeaders",
            "queryStringParameters",
            "multiValueQueryStringParameters",
            "requestContext",
            "routeKey",
            "eventType",
            "extendedRequestId",
            "requestTime",
            "messageDirection",
            "stage",
            "connectedAt",
            "requestTimeEpoch",
            "identity",
            "requestId",
            "domainName",
            "connectionId",
            "apiId",
            "isBase64Encoded",
        ],
    );
    let context = &event["requestContext"];
    assert_eq!(context["routeKey"], "$connect");
    assert_eq!(context["requestId"], context["extendedRequestId"]);
    assert_eq!(context["stage"], "dev");
    assert_eq!(context["apiId"], "a1b2c3d4e5");
    assert_eq!(context["messageDirection"], "IN");
    assert_eq!(
        context["identity"],
        serde_json::json!({"sourceIp": "127.0.0.1", "userAgent": "sockway-test/1"})
    );
    let host = gateway
        .ws_url
        .trim_start_matches("ws://")
        .trim_end_matches("/dev");
    assert_eq!(context["domainName"], host);
    assert!(context["connectedAt"].is_i64() && context["requestTimeEpoch"].is_i64());
    let request_time = context["requestTime"].as_str().unwrap();
    assert!(
        request_time.ends_with(" +0000") && request_time.len() == 26,
        "CLF time: {request_time}"
    );
    let connection_id = context["connectionId"].as_str().unwrap();
    assert_eq!(connection_id.len(), 16);
    assert!(connection_id.ends_with('='));
    gateway.shutdown().await;
}

#[tokio::test]
async fn connect_event_without_query_has_no_query_maps() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, "")).await;
    let _client = gateway.connect().await;
    let event = backend.next_event().await;
    check_oracle(&event);
    assert!(event.get("queryStringParameters").is_none());
    assert!(event.get("multiValueQueryStringParameters").is_none());
    assert!(
        event["requestContext"]["identity"]
            .get("userAgent")
            .is_none(),
        "no User-Agent sent, none reported"
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn message_and_disconnect_events_have_aws_shape() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, "")).await;
    let mut client = gateway.connect().await;
    let connect = backend.next_event().await;
    let body = r#"{"action": "sendmessage", "message": "Hello from client"}"#;
    client.send_text(body).await;
    let request = backend.next_request().await;
    let message = request.json();
    check_oracle(&message);
    let raw = String::from_utf8(request.body.to_vec()).unwrap();
    check_key_order(
        &raw,
        &[
            "requestContext",
            "routeKey",
            "messageId",
            "eventType",
            "apiId",
            "body",
            "isBase64Encoded",
        ],
    );
    assert!(
        message.get("headers").is_none(),
        "MESSAGE events carry no headers"
    );
    assert_eq!(message["body"], body);
    let context = &message["requestContext"];
    assert_eq!(context["eventType"], "MESSAGE");
    assert_eq!(context["routeKey"], "sendmessage");
    assert_eq!(context["messageId"].as_str().unwrap().len(), 16);
    assert_ne!(
        context["requestId"], connect["requestContext"]["requestId"],
        "a new requestId per event"
    );
    assert_eq!(
        context["connectedAt"],
        connect["requestContext"]["connectedAt"]
    );
    assert_eq!(
        context["connectionId"],
        connect["requestContext"]["connectionId"]
    );

    client.close(1000, "").await;
    let disconnect = backend.next_event().await;
    check_oracle(&disconnect);
    let host = connect["requestContext"]["domainName"].clone();
    assert_eq!(
        disconnect["headers"],
        serde_json::json!({"Host": host, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""})
    );
    assert_eq!(
        disconnect["multiValueHeaders"]["x-restapi"],
        serde_json::json!([""])
    );
    let context = &disconnect["requestContext"];
    assert_eq!(context["eventType"], "DISCONNECT");
    assert!(context.get("messageId").is_none());
    assert_eq!(context["identity"]["sourceIp"], "127.0.0.1");
    gateway.shutdown().await;
}

#[tokio::test]
async fn binary_frames_arrive_base64_encoded() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, "")).await;
    let mut client = gateway.connect().await;
    backend.next_event_for("$connect").await;
    client.send_binary(&[0, 159, 146, 150, 255]).await;
    let event = backend.next_event().await;
    check_oracle(&event);
    assert_eq!(event["requestContext"]["routeKey"], "$default");
    assert_eq!(event["isBase64Encoded"], true);
    assert_eq!(event["body"], "AJ+Slv8=");
    gateway.shutdown().await;
}

#[tokio::test]
async fn connect_headers_keep_client_casing_and_order() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, "")).await;
    let _socket = raw_upgrade(
        &gateway.ws_url,
        "HeaderAuth1: headerValue1\r\nx-lower: a\r\nX-Lower: b\r\n",
    )
    .await;
    let request = backend.next_request().await;
    let raw = String::from_utf8(request.body.to_vec()).unwrap();
    check_key_order(
        &raw,
        &[
            "Host",
            "Sec-WebSocket-Key",
            "Sec-WebSocket-Version",
            "HeaderAuth1",
            "x-lower",
        ],
    );
    let event = request.json();
    check_oracle(&event);
    assert_eq!(event["headers"]["HeaderAuth1"], "headerValue1");
    assert_eq!(
        event["headers"]["x-lower"], "b",
        "repeated header: first casing, last value"
    );
    assert_eq!(
        event["multiValueHeaders"]["x-lower"],
        serde_json::json!(["a", "b"])
    );
    gateway.shutdown().await;
}

/// Issue 16: `gateway.stage_variables` reach an `http` integration's events as
/// `stageVariables`, before `requestContext` as in AWS's proxy events.
#[tokio::test]
async fn stage_variables_reach_every_event() {
    let mut backend = MockBackend::start().await;
    let toml = config(&backend, "").replace(
        "api_id = \"a1b2c3d4e5\"\n",
        "api_id = \"a1b2c3d4e5\"\nstage_variables = { table = \"connections-dev\" }\n",
    );
    let gateway = TestGateway::start(&toml).await;
    let mut client = gateway.connect().await;
    let connect = backend.next_event_for("$connect").await;
    check_oracle(&connect);
    assert_eq!(
        connect["stageVariables"],
        serde_json::json!({"table": "connections-dev"})
    );
    client.send_text("hello").await;
    let message = backend.next_event_for("$default").await;
    assert_eq!(message["stageVariables"]["table"], "connections-dev");
    gateway.shutdown().await;
}
