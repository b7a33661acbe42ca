//! `type = "lambda"`: events reach a (fake) Lambda Invoke API, signed with SigV4, and the
//! function's answers, errors, throttling and slowness come back as AWS would report them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lambda_events::event::apigw::ApiGatewayWebsocketProxyRequest;
use serde_json::{Value, json};
use sockway_testkit::{FakeLambda, LambdaReply, TestGateway, connect};
use tokio_tungstenite::tungstenite;

const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// Every route on one `lambda` integration invoking `function` at `fake`, signed with
/// `secret`; `integration_extra` is added to the integration's table.
fn lambda_config(
    fake: &FakeLambda,
    function: &str,
    secret: &str,
    integration_extra: &str,
) -> String {
    format!(
        r#"
[gateway]
stage = "dev"
api_id = "a1b2c3d4e5"
# Pinned: a function without a region would otherwise be called in the AWS SDK's region,
# which could mean asking instance metadata.
region = "us-east-1"

[aws]
access_key_id = "{ACCESS_KEY_ID}"
secret_access_key = "{secret}"

[routes."$connect"]
integration = "chat"

[routes."$disconnect"]
integration = "chat"

[routes."$default"]
integration = "chat"
route_response = true

[routes.sendmessage]
integration = "chat"

[integrations.chat]
type = "lambda"
function = "{function}"
endpoint_url = "{endpoint}"
{integration_extra}
"#,
        endpoint = fake.endpoint_url()
    )
}

/// A function that accepts every event and echoes a message's body back.
fn echo(event: Value) -> LambdaReply {
    match event.get("body").and_then(Value::as_str) {
        Some(body) => {
            LambdaReply::Ok(json!({ "statusCode": 200, "body": format!("echo: {body}") }))
        }
        None => LambdaReply::Ok(json!({ "statusCode": 200 })),
    }
}

/// Answers `$connect` and `$disconnect` with 200 and messages with `reply`.
fn on_messages(
    reply: impl Fn(Value) -> LambdaReply + Send + Sync,
) -> impl Fn(Value) -> LambdaReply {
    move |event: Value| {
        if event["requestContext"]["eventType"] == "MESSAGE" {
            reply(event)
        } else {
            LambdaReply::Ok(json!({ "statusCode": 200 }))
        }
    }
}

fn refused_status(result: Result<sockway_testkit::WsClient, tungstenite::Error>) -> u16 {
    match result {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected the handshake to be refused"),
    }
}

fn frame_message(text: &str) -> String {
    let frame: Value = serde_json::from_str(text)
        .unwrap_or_else(|error| panic!("error frame is not JSON ({error}): {text}"));
    frame["message"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn events_reach_the_function_signed_and_in_aws_shape() {
    let mut fake = FakeLambda::start(ACCESS_KEY_ID, SECRET).await;
    fake.on("chat", echo);
    let gateway = TestGateway::start(&lambda_config(&fake, "chat", SECRET, "")).await;
    let mut client = gateway.connect().await;

    let connect = fake.next_invocation_for("$connect").await;
    assert_eq!(connect.function_name, "chat");
    assert_eq!(connect.qualifier, None);
    assert_eq!(connect.path, "/2015-03-31/functions/chat/invocations");
    assert_eq!(connect.region, "us-east-1");
    assert_eq!(connect.headers["x-amz-invocation-type"], "RequestResponse");
    assert_eq!(connect.headers["content-type"], "application/json");
    assert_eq!(connect.payload["requestContext"]["eventType"], "CONNECT");
    let typed: ApiGatewayWebsocketProxyRequest =
        serde_json::from_value(connect.payload.clone()).expect("CONNECT event deserializes");
    assert_eq!(typed.request_context.route_key.as_deref(), Some("$connect"));

    client
        .send_text(r#"{"action":"sendmessage","text":"hi"}"#)
        .await;
    let message = fake.next_invocation_for("sendmessage").await;
    let typed: ApiGatewayWebsocketProxyRequest =
        serde_json::from_value(message.payload.clone()).expect("MESSAGE event deserializes");
    assert_eq!(
        typed.body.as_deref(),
        Some(r#"{"action":"sendmessage","text":"hi"}"#)
    );
    assert_eq!(
        typed.request_context.connection_id,
        connect.payload["requestContext"]["connectionId"]
            .as_str()
            .map(str::to_owned)
    );

    client.close(1000, "bye").await;
    let disconnect = fake.next_invocation_for("$disconnect").await;
    let typed: ApiGatewayWebsocketProxyRequest =
        serde_json::from_value(disconnect.payload).expect("DISCONNECT event deserializes");
    assert_eq!(
        typed.request_context.event_type.as_deref(),
        Some("DISCONNECT")
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn two_way_route_sends_the_function_body() {
    let fake = FakeLambda::start(ACCESS_KEY_ID, SECRET).await;
    fake.on("chat", echo);
    let gateway = TestGateway::start(&lambda_config(&fake, "chat", SECRET, "")).await;
    let mut client = gateway.connect().await;
    client.send_text("hello").await;
    assert_eq!(client.next_text().await, "echo: hello");
    client.close(1000, "done").await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn function_error_on_connect_is_502() {
    let mut fake = FakeLambda::start(ACCESS_KEY_ID, SECRET).await;
    fake.on("chat", |_event| {
        LambdaReply::FunctionError("TypeError".to_owned(), "boom".to_owned())
    });
    let gateway = TestGateway::start(&lambda_config(&fake, "chat", SECRET, "")).await;
    assert_eq!(refused_status(connect(&gateway.ws_url).await), 502);
    fake.next_invocation_for("$connect").await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn function_error_on_a_message_is_an_internal_server_error_frame() {
    let fake = FakeLambda::start(ACCESS_KEY_ID, SECRET).await;
    fake.on(
        "chat",
        on_messages(|_event| LambdaReply::FunctionError("Error".to_owned(), "boom".to_owned())),
    );
    let gateway = TestGateway::start(&lambda_config(&fake, "chat", SECRET, "")).await;
    let mut client = gateway.connect().await;
    client.send_text("hello").await;
    assert_eq!(
        frame_message(&client.next_text().await),
        "Internal server error"
    );

    // An error document without the header is a function error too.
    fake.on(
        "chat",
        on_messages(|_event| {
            LambdaReply::Ok(json!({ "errorMessage": "boom", "errorType": "Error" }))
        }),
    );
    client.send_text("again").await;
    assert_eq!(
        frame_message(&client.next_text().await),
        "Internal server error"
    );
    client.close(1000, "done").await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn slow_function_times_out() {
    let fake = FakeLambda::start(ACCESS_KEY_ID, SECRET).await;
    fake.on(
        "chat",
        on_messages(|event| LambdaReply::Delay(Duration::from_secs(3), Box::new(echo(event)))),
    );
    let gateway = TestGateway::start(&lambda_config(
        &fake,
        "chat",
        SECRET,
        r#"timeout = "300ms""#,
    ))
    .await;
    let mut client = gateway.connect().await;
    client.send_text("hello").await;
    assert_eq!(
        frame_message(&client.next_text().await),
        "Endpoint request timed out"
    );
    client.close(1000, "done").await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn throttling_is_retried_until_the_function_answers() {
    let mut fake = FakeLambda::start(ACCESS_KEY_ID, SECRET).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    fake.on(
        "chat",
        on_messages(move |event| match counted.fetch_add(1, Ordering::SeqCst) {
            0 => LambdaReply::Throttle,
            1 => LambdaReply::ServiceError(503),
            _ => echo(event),
        }),
    );
    let gateway = TestGateway::start(&lambda_config(&fake, "chat", SECRET, "")).await;
    let mut client = gateway.connect().await;
    client.send_text("hello").await;
    assert_eq!(client.next_text().await, "echo: hello");
    for attempt in 1..=3 {
        let invocation = fake.next_invocation_for("$default").await;
        assert_eq!(invocation.payload["body"], "hello", "attempt {attempt}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    client.close(1000, "done").await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn persistent_throttling_fails_after_bounded_retries() {
    let mut fake = FakeLambda::start(ACCESS_KEY_ID, SECRET).await;
    fake.on("chat", on_messages(|_event| LambdaReply::Throttle));
    let gateway = TestGateway::start(&lambda_config(&fake, "chat", SECRET, "")).await;
    let mut client = gateway.connect().await;
    client.send_text("hello").await;
    assert_eq!(
        frame_message(&client.next_text().await),
        "Internal server error"
    );
    // Each attempt is recorded before the fake answers it, so all of them are in the channel
    // once the error frame has arrived.
    let attempts = fake
        .drain()
        .into_iter()
        .filter(|invocation| invocation.payload["requestContext"]["eventType"] == "MESSAGE")
        .count();
    assert_eq!(attempts, 3);
    client.close(1000, "done").await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn wrong_secret_is_rejected_by_lambda_and_fails_the_integration() {
    let fake = FakeLambda::start(ACCESS_KEY_ID, SECRET).await;
    fake.on("chat", echo);
    let gateway = TestGateway::start(&lambda_config(&fake, "chat", "not-the-secret", "")).await;
    assert_eq!(refused_status(connect(&gateway.ws_url).await), 502);
    assert_eq!(fake.rejected_signatures(), 1, "rejected once, not retried");
    gateway.shutdown().await;
}

#[tokio::test]
async fn qualifiers_and_arns_reach_the_right_path() {
    let cases = [
        (
            "chat:live",
            "chat",
            Some("live"),
            "us-east-1",
            "/2015-03-31/functions/chat/invocations",
        ),
        (
            "arn:aws:lambda:eu-west-1:123456789012:function:chat:7",
            "arn:aws:lambda:eu-west-1:123456789012:function:chat",
            Some("7"),
            "eu-west-1",
            "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-west-1%3A123456789012%3Afunction%3Achat/invocations",
        ),
        (
            "123456789012:function:chat",
            "123456789012:function:chat",
            None,
            "us-east-1",
            "/2015-03-31/functions/123456789012%3Afunction%3Achat/invocations",
        ),
    ];
    for (function, name, qualifier, region, path) in cases {
        let mut fake = FakeLambda::start(ACCESS_KEY_ID, SECRET).await;
        fake.on("chat", echo);
        let gateway = TestGateway::start(&lambda_config(&fake, function, SECRET, "")).await;
        let client = gateway.connect().await;
        let invocation = fake.next_invocation_for("$connect").await;
        client.close(1000, "done").await;
        assert_eq!(invocation.function_name, name, "{function}");
        assert_eq!(invocation.qualifier.as_deref(), qualifier, "{function}");
        assert_eq!(invocation.region, region, "{function}");
        assert_eq!(invocation.path, path, "{function}");
        gateway.shutdown().await;
    }
}
