//! `$connect` authorizers: identity sources, every outcome of AWS's REQUEST authorizer
//! contract, and the authorizer context in every later event.

use std::time::Duration;

use serde_json::{Value, json};
use sockway_testkit::{
    FakeLambda, LambdaReply, MockBackend, MockResponse, RecordedRequest, TestGateway, connect,
    connect_with_headers,
};
use tokio_tungstenite::tungstenite;

const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const METHOD_ARN: &str = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/dev/$connect";

/// Routes on the mock backend, and the given `[authorizer]` table.
fn authorized_config(backend: &MockBackend, authorizer: &str) -> String {
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
secret_access_key = "{SECRET}"

[routes."$connect"]
integration = "backend"
[routes."$disconnect"]
integration = "backend"
[routes."$default"]
integration = "backend"

[integrations.backend]
type = "http"
uri = "{uri}"

[authorizer]
{authorizer}
"#,
        uri = backend.url("/events")
    )
}

fn lambda_authorizer(fake: &FakeLambda, identity_sources: &str) -> String {
    format!(
        "type = \"lambda\"\nfunction = \"auth\"\nendpoint_url = \"{}\"\nidentity_sources = {identity_sources}\ntimeout = \"1s\"\n",
        fake.endpoint_url()
    )
}

fn allow_policy(principal: &str, resource: &str, context: Value) -> Value {
    json!({
        "principalId": principal,
        "policyDocument": {"Version": "2012-10-17", "Statement": [
            {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": resource}
        ]},
        "context": context,
    })
}

fn refused_status(result: Result<sockway_testkit::WsClient, tungstenite::Error>) -> u16 {
    match result {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected the handshake to be refused"),
    }
}

/// A gateway with a Lambda authorizer answering `reply` and identity source `token` in the
/// query string.
async fn lambda_gateway(reply: LambdaReply) -> (FakeLambda, MockBackend, TestGateway) {
    let fake = FakeLambda::start(ACCESS_KEY_ID, SECRET).await;
    fake.on("auth", move |_| reply.clone());
    let backend = MockBackend::start().await;
    let toml = authorized_config(
        &backend,
        &lambda_authorizer(&fake, r#"["route.request.querystring.token"]"#),
    );
    let gateway = TestGateway::start(&toml).await;
    (fake, backend, gateway)
}

#[tokio::test]
async fn missing_or_empty_identity_source_is_401_without_calling_the_authorizer() {
    let (mut fake, mut backend, gateway) =
        lambda_gateway(LambdaReply::Ok(allow_policy("u", METHOD_ARN, json!({})))).await;
    assert_eq!(refused_status(connect(&gateway.ws_url).await), 401);
    assert_eq!(
        refused_status(connect(&format!("{}?token=", gateway.ws_url)).await),
        401
    );
    assert_eq!(
        refused_status(connect(&format!("{}?other=x", gateway.ws_url)).await),
        401
    );
    gateway.shutdown().await;
    assert!(fake.drain().is_empty(), "the authorizer was not called");
    assert!(backend.drain().is_empty(), "$connect was not called");
}

#[tokio::test]
async fn allowed_connection_carries_the_context_in_every_event() {
    let policy = allow_policy(
        "user123",
        METHOD_ARN,
        json!({"role": "admin", "level": 3, "beta": true}),
    );
    let (mut fake, mut backend, gateway) = lambda_gateway(LambdaReply::Ok(policy)).await;
    let mut client = connect(&format!("{}?token=secret-token", gateway.ws_url))
        .await
        .unwrap();

    let request = fake.next_invocation().await.payload;
    assert_eq!(request["type"], "REQUEST");
    assert_eq!(request["methodArn"], METHOD_ARN);
    assert_eq!(
        request["queryStringParameters"],
        json!({"token": "secret-token"})
    );
    assert_eq!(request["stageVariables"], json!({}));
    assert!(
        request["headers"].get("Connection").is_some(),
        "the authorizer sees hop-by-hop headers"
    );
    assert_eq!(request["requestContext"]["routeKey"], "$connect");

    let connect_event = backend.next_event_for("$connect").await;
    assert_eq!(
        connect_event["requestContext"]["connectionId"], request["requestContext"]["connectionId"],
        "the connection id is assigned before the authorizer runs"
    );
    let authorizer = &connect_event["requestContext"]["authorizer"];
    assert_eq!(authorizer["principalId"], "user123");
    assert_eq!(authorizer["role"], "admin");
    assert_eq!(authorizer["level"], "3", "context values are stringified");
    assert_eq!(authorizer["beta"], "true");
    assert!(authorizer["integrationLatency"].is_u64(), "{authorizer}");

    client.send_text("hi").await;
    let message = backend.next_event_for("$default").await;
    let expected = json!({"principalId": "user123", "role": "admin", "level": "3", "beta": "true"});
    assert_eq!(message["requestContext"]["authorizer"], expected);
    client.close(1000, "").await;
    let disconnect = backend.next_event_for("$disconnect").await;
    assert_eq!(disconnect["requestContext"]["authorizer"], expected);
    gateway.shutdown().await;
}

#[tokio::test]
async fn authorizer_outcomes_map_to_aws_statuses() {
    let deny = json!({"principalId": "u", "policyDocument": {"Statement": [
        {"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": METHOD_ARN}]}});
    let cases = [
        (
            LambdaReply::FunctionError("Error".into(), "Unauthorized".into()),
            401,
        ),
        (LambdaReply::Ok(deny), 403),
        // The powertools case: `.../dev/*/*` does not match `.../dev/$connect`.
        (
            LambdaReply::Ok(allow_policy(
                "u",
                "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/dev/*/*",
                json!({}),
            )),
            403,
        ),
        (
            LambdaReply::Ok(allow_policy(
                "u",
                "arn:aws:execute-api:*:*:a1b2c3d4e5/*",
                json!({}),
            )),
            101,
        ),
        (
            LambdaReply::FunctionError("TypeError".into(), "boom".into()),
            500,
        ),
        (LambdaReply::Ok(json!({"statusCode": 401})), 500),
        (
            LambdaReply::Ok(allow_policy("u", METHOD_ARN, json!({"nested": {"a": 1}}))),
            500,
        ),
        (
            LambdaReply::Delay(
                Duration::from_secs(3),
                Box::new(LambdaReply::Ok(allow_policy("u", METHOD_ARN, json!({})))),
            ),
            500,
        ),
    ];
    for (reply, expected) in cases {
        let (_fake, mut backend, gateway) = lambda_gateway(reply.clone()).await;
        let result = connect(&format!("{}?token=t", gateway.ws_url)).await;
        let status = if result.is_ok() {
            101
        } else {
            refused_status(result)
        };
        assert_eq!(status, expected, "{reply:?}");
        gateway.shutdown().await;
        let connects = backend
            .drain()
            .iter()
            .filter(|request| request.route_key() == "$connect")
            .count();
        assert_eq!(
            connects,
            usize::from(expected == 101),
            "$connect runs only after Allow: {reply:?}"
        );
    }
}

#[tokio::test]
async fn header_identity_sources_match_case_insensitively() {
    let fake = FakeLambda::start(ACCESS_KEY_ID, SECRET).await;
    fake.on("auth", |_| {
        LambdaReply::Ok(allow_policy("u", METHOD_ARN, json!({})))
    });
    let backend = MockBackend::start().await;
    let toml = authorized_config(
        &backend,
        &lambda_authorizer(&fake, r#"["route.request.header.X-Auth-Token"]"#),
    );
    let gateway = TestGateway::start(&toml).await;
    assert_eq!(refused_status(connect(&gateway.ws_url).await), 401);
    connect_with_headers(&gateway.ws_url, &[("x-auth-token", "abc")])
        .await
        .unwrap();
    gateway.shutdown().await;
}

#[tokio::test]
async fn browsers_can_pass_a_token_as_a_subprotocol() {
    let mut fake = FakeLambda::start(ACCESS_KEY_ID, SECRET).await;
    fake.on("auth", |_| {
        LambdaReply::Ok(allow_policy("u", METHOD_ARN, json!({})))
    });
    let backend = MockBackend::start().await;
    let toml = authorized_config(
        &backend,
        &lambda_authorizer(&fake, r#"["route.request.header.Sec-WebSocket-Protocol"]"#),
    );
    let gateway = TestGateway::start(&toml).await;
    let client =
        connect_with_headers(&gateway.ws_url, &[("Sec-WebSocket-Protocol", "token.abc")]).await;
    // The backend's `$connect` did not choose a subprotocol, so the client library refuses the
    // handshake; what matters here is that the authorizer saw the token.
    drop(client);
    let request = fake.next_invocation().await.payload;
    assert_eq!(request["headers"]["Sec-WebSocket-Protocol"], "token.abc");
    gateway.shutdown().await;
}

#[tokio::test]
async fn http_authorizer_follows_the_same_contract() {
    let mut authorizer = MockBackend::start().await;
    authorizer.respond_with(|request: &RecordedRequest| {
        let event = request.json();
        match event["queryStringParameters"]["token"].as_str() {
            Some("good") => MockResponse::json(allow_policy(
                "http-user",
                METHOD_ARN,
                json!({"via": "http"}),
            )),
            Some("unauthorized") => MockResponse::status(401, "no"),
            _ => MockResponse::status(500, "crash"),
        }
    });
    let mut backend = MockBackend::start().await;
    let table = format!(
        "type = \"http\"\nuri = \"{}\"\nidentity_sources = [\"route.request.querystring.token\"]\n",
        authorizer.url("/authorize")
    );
    let gateway = TestGateway::start(&authorized_config(&backend, &table)).await;
    let _client = connect(&format!("{}?token=good", gateway.ws_url))
        .await
        .unwrap();
    let event = authorizer.next_request().await.json();
    assert_eq!(event["type"], "REQUEST");
    let connect_event = backend.next_event_for("$connect").await;
    assert_eq!(
        connect_event["requestContext"]["authorizer"]["principalId"],
        "http-user"
    );
    assert_eq!(connect_event["requestContext"]["authorizer"]["via"], "http");
    assert_eq!(
        refused_status(connect(&format!("{}?token=unauthorized", gateway.ws_url)).await),
        401
    );
    assert_eq!(
        refused_status(connect(&format!("{}?token=other", gateway.ws_url)).await),
        500
    );
    gateway.shutdown().await;
}
