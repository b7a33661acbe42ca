//! `[tracing]`: spans exported to an OTLP/HTTP receiver on loopback, trace context on the calls
//! the gateway makes (`X-Amzn-Trace-Id` on Lambda's Invoke, `traceparent` to HTTP backends),
//! the CONNECT event's `X-Amzn-Trace-Id` with and without tracing, a failing or stalled
//! collector, and a cluster delivery's span. The Python compatibility suite checks the same
//! traffic with the official OTLP decoder over HTTP and gRPC.

use serde_json::json;
use sockway_testkit::{
    FakeLambda, Invocation, LambdaReply, MockBackend, OtlpAnswer, OtlpReceiver, ReceivedSpan,
    RedisServer, TestGateway, connect_with_headers, http_request, metric,
};

use crate::{ACCESS_KEY_ID, SECRET, config, connect};

/// A valid X-Ray header, sampled, as a client (or AWS's edge in front of it) sends it.
const CLIENT_TRACE: &str =
    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
const CLIENT_ROOT: &str = "5759e988bd862e3fe1be46a994272793";

/// `[tracing]` exporting to `receiver` quickly, plus `extra` keys.
fn tracing_section(receiver: &OtlpReceiver, extra: &str) -> String {
    format!(
        "\n[tracing]\nendpoint = \"{}\"\nexport_interval = \"20ms\"\n{extra}\n",
        receiver.endpoint()
    )
}

/// Every route and a REQUEST authorizer (identity source `x-token`) on Lambda functions at
/// `fake`: `auth` allows, `chat` accepts every event and answers messages.
fn lambda_config(fake: &FakeLambda, extra: &str) -> String {
    fake.on("auth", |event| {
        LambdaReply::Ok(json!({
            "principalId": "user",
            "policyDocument": {"Version": "2012-10-17", "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": event["methodArn"]}
            ]},
        }))
    });
    fake.on("chat", |_| {
        LambdaReply::Ok(json!({ "statusCode": 200, "body": "ok" }))
    });
    format!(
        r#"
[gateway]
stage = "dev"
api_id = "a1b2c3d4e5"
region = "us-east-1"

[aws]
access_key_id = "{ACCESS_KEY_ID}"
secret_access_key = "{SECRET}"

[routes."$connect"]
integration = "chat"
[routes."$disconnect"]
integration = "chat"
[routes."$default"]
integration = "chat"
route_response = true

[integrations.chat]
type = "lambda"
function = "chat"
endpoint_url = "{endpoint}"

[authorizer]
type = "lambda"
function = "auth"
endpoint_url = "{endpoint}"
identity_sources = ["route.request.header.x-token"]
{extra}
"#,
        endpoint = fake.endpoint_url()
    )
}

/// The `X-Amzn-Trace-Id` an invocation carried, if any.
fn trace_header(invocation: &Invocation) -> Option<&str> {
    invocation
        .headers
        .get("x-amzn-trace-id")
        .map(|value| value.to_str().expect("an ASCII header"))
}

/// The CONNECT event's `X-Amzn-Trace-Id` (whatever the casing the client sent it in).
fn event_trace_header(invocation: &Invocation) -> &str {
    let headers = invocation.payload["headers"]
        .as_object()
        .expect("the event has headers");
    headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("x-amzn-trace-id"))
        .and_then(|(_, value)| value.as_str())
        .expect("the CONNECT event has an X-Amzn-Trace-Id")
}

/// The `X-Amzn-Trace-Id` a span's calls carry: its trace as an X-Ray root, itself as parent.
fn xray_of(span: &ReceivedSpan) -> String {
    format!(
        "Root=1-{}-{};Parent={};Sampled=1",
        &span.trace_id[..8],
        &span.trace_id[8..],
        span.span_id
    )
}

#[tokio::test]
async fn lambda_invocations_carry_the_calls_context_as_x_amzn_trace_id() {
    let receiver = OtlpReceiver::start().await;
    let mut fake = FakeLambda::start(ACCESS_KEY_ID, SECRET).await;
    let gateway = TestGateway::start(&lambda_config(&fake, &tracing_section(&receiver, ""))).await;
    let mut client = connect_with_headers(
        &gateway.ws_url,
        &[("X-Amzn-Trace-Id", CLIENT_TRACE), ("x-token", "t")],
    )
    .await
    .expect("the upgrade is accepted");

    // The upgrade continues the client's X-Ray trace; each call carries its own span.
    let connect = receiver.named("CONNECT", None).await;
    assert_eq!(connect.trace_id, CLIENT_ROOT);
    assert_eq!(connect.parent_span_id, "53995c3f42cd8ad8");
    assert_eq!(connect.flags & 0x300, 0x300, "the parent is remote");
    let authorizer = receiver.named("authorizer", None).await;
    assert_eq!(authorizer.parent_span_id, connect.span_id);
    let auth_call = fake.next_invocation().await;
    assert_eq!(auth_call.function_name, "auth");
    assert_eq!(
        trace_header(&auth_call),
        Some(xray_of(&authorizer).as_str())
    );
    assert_eq!(authorizer.string("faas.invoked_name"), Some("auth"));
    assert_eq!(authorizer.string("faas.invoked_provider"), Some("aws"));
    assert_eq!(authorizer.string("faas.invoked_region"), Some("us-east-1"));
    assert_eq!(authorizer.string("rpc.method"), Some("Invoke"));
    assert_eq!(
        authorizer.string("aws.request_id"),
        Some("00000000-0000-4000-8000-000000000000")
    );
    assert_eq!(authorizer.string("authorizer.outcome"), Some("allow"));

    let connect_call = receiver.named("integration", Some("$connect")).await;
    assert_eq!(connect_call.parent_span_id, connect.span_id);
    let invocation = fake.next_invocation_for("$connect").await;
    assert_eq!(
        trace_header(&invocation),
        Some(xray_of(&connect_call).as_str())
    );
    // The event keeps the client's header as it was sent.
    assert_eq!(event_trace_header(&invocation), CLIENT_TRACE);

    // A message is a new trace, linked to the connection's; AWS makes a new id per request.
    client.send_text("hello").await;
    assert_eq!(client.next_text().await, "ok");
    let message = receiver.named("MESSAGE", Some("$default")).await;
    assert_ne!(message.trace_id, CLIENT_ROOT);
    assert_eq!(
        message.links,
        [(connect.trace_id.clone(), connect.span_id.clone())]
    );
    let message_call = receiver.named("integration", Some("$default")).await;
    assert_eq!(message_call.parent_span_id, message.span_id);
    let invocation = fake.next_invocation_for("$default").await;
    assert_eq!(
        trace_header(&invocation),
        Some(xray_of(&message_call).as_str())
    );

    client.close(1000, "bye").await;
    let disconnect_call = receiver.named("integration", Some("$disconnect")).await;
    let invocation = fake.next_invocation_for("$disconnect").await;
    assert_eq!(
        trace_header(&invocation),
        Some(xray_of(&disconnect_call).as_str())
    );
    let disconnect = receiver.named("DISCONNECT", None).await;
    assert_eq!(disconnect_call.parent_span_id, disconnect.span_id);
    assert_eq!(disconnect.links, [(connect.trace_id, connect.span_id)]);
    assert_eq!(disconnect.int("disconnect_status_code"), Some(1000));
    gateway.shutdown().await;
}

#[tokio::test]
async fn without_tracing_the_upgrades_calls_carry_the_connect_events_trace_id() {
    let mut fake = FakeLambda::start(ACCESS_KEY_ID, SECRET).await;
    let gateway = TestGateway::start(&lambda_config(&fake, "")).await;

    // No header from the client: the event gets a new root, and both calls of the upgrade
    // carry it to Lambda.
    let mut client = connect_with_headers(&gateway.ws_url, &[("x-token", "t")])
        .await
        .expect("the upgrade is accepted");
    let authorize = fake.next_invocation().await;
    let connect = fake.next_invocation_for("$connect").await;
    let generated = event_trace_header(&connect).to_owned();
    let root = generated.strip_prefix("Root=1-").expect("a root");
    assert!(
        root.len() == 33 && root.as_bytes()[8] == b'-',
        "{generated}"
    );
    assert_eq!(trace_header(&authorize), Some(generated.as_str()));
    assert_eq!(trace_header(&connect), Some(generated.as_str()));
    assert_eq!(
        authorize.payload["headers"]["X-Amzn-Trace-Id"],
        generated.as_str()
    );
    // Messages carry none: without tracing nothing is drawn per message.
    client.send_text("hello").await;
    assert_eq!(client.next_text().await, "ok");
    let message = fake.next_invocation_for("$default").await;
    assert_eq!(trace_header(&message), None);
    client.close(1000, "bye").await;
    assert_eq!(
        trace_header(&fake.next_invocation_for("$disconnect").await),
        None
    );

    // A valid header from the client is kept, in the event and on the calls.
    let _kept = connect_with_headers(
        &gateway.ws_url,
        &[("X-Amzn-Trace-Id", CLIENT_TRACE), ("x-token", "t")],
    )
    .await
    .expect("the upgrade is accepted");
    let authorize = fake.next_invocation().await;
    let connect = fake.next_invocation_for("$connect").await;
    assert_eq!(event_trace_header(&connect), CLIENT_TRACE);
    assert_eq!(trace_header(&authorize), Some(CLIENT_TRACE));
    assert_eq!(trace_header(&connect), Some(CLIENT_TRACE));

    // An invalid one is replaced, as AWS replaces it.
    let _replaced = connect_with_headers(
        &gateway.ws_url,
        &[("X-Amzn-Trace-Id", "Root=1-nothex-x"), ("x-token", "t")],
    )
    .await
    .expect("the upgrade is accepted");
    fake.next_invocation().await;
    let connect = fake.next_invocation_for("$connect").await;
    let value = connect.payload["headers"]["X-Amzn-Trace-Id"]
        .as_str()
        .unwrap();
    assert!(
        value.starts_with("Root=1-") && value != "Root=1-nothex-x",
        "{value}"
    );
    let values = &connect.payload["multiValueHeaders"]["X-Amzn-Trace-Id"];
    assert_eq!(values.as_array().map(Vec::len), Some(1), "{values}");
    gateway.shutdown().await;
}

#[tokio::test]
async fn http_backends_receive_the_calls_traceparent() {
    let receiver = OtlpReceiver::start().await;
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, &tracing_section(&receiver, ""))).await;
    let (mut client, connection_id) = connect(&gateway, &mut backend).await;
    client.send_text(r#"{"action":"sendmessage"}"#).await;
    let request = loop {
        let request = backend.next_request().await;
        if request.route_key() == "sendmessage" {
            break request;
        }
    };
    let call = receiver.named("integration", Some("sendmessage")).await;
    let traceparent = request.headers["traceparent"].to_str().unwrap();
    assert_eq!(
        traceparent,
        format!("00-{}-{}-01", call.trace_id, call.span_id)
    );
    assert_eq!(
        request.headers["x-amzn-trace-id"].to_str().unwrap(),
        xray_of(&call)
    );
    assert_eq!(call.kind, 3, "a client span");
    assert_eq!(call.string("http.request.method"), Some("POST"));
    assert_eq!(
        call.string("url.full"),
        Some(backend.url("/events").as_str())
    );
    assert_eq!(call.string("server.address"), Some("127.0.0.1"));
    assert_eq!(call.int("http.response.status_code"), Some(200));
    assert_eq!(call.string("integration"), Some("backend"));
    assert_eq!(call.string("connection_id"), Some(connection_id.as_str()));
    let message = receiver.named("MESSAGE", Some("sendmessage")).await;
    assert_eq!(call.parent_span_id, message.span_id);
    assert_eq!(message.string("request_id"), call.string("request_id"));
    let selection = receiver.named("route selection", Some("sendmessage")).await;
    assert_eq!(selection.parent_span_id, message.span_id);
    assert!(selection.start_unix_nanos >= message.start_unix_nanos);
    assert!(message.end_unix_nanos >= call.end_unix_nanos);
    let resource: Vec<&str> = message
        .resource
        .iter()
        .map(|(key, _)| key.as_str())
        .collect();
    assert_eq!(
        resource,
        ["service.name", "service.version", "service.instance.id"]
    );

    // A management call is a server span of its own.
    let (status, _, _) = http_request(
        "GET",
        &format!("{}/@connections", gateway.management_url),
        "",
    )
    .await;
    assert_eq!(status, 200);
    let listed = receiver.named("GET /@connections", None).await;
    assert_eq!(listed.int("http.response.status_code"), Some(200));
    assert_eq!(listed.kind, 2, "a server span");
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_failing_collector_is_retried_and_counted() {
    let receiver = OtlpReceiver::start().await;
    // The first export is refused for now, the second refused for good.
    receiver.answer_next(&[OtlpAnswer::Status(503), OtlpAnswer::Status(400)]);
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, &tracing_section(&receiver, ""))).await;
    let (mut client, _) = connect(&gateway, &mut backend).await;
    // The CONNECT spans' batch: 503, then (retried after about a second) 400, dropped.
    let wait = tokio::time::Instant::now() + sockway_testkit::DEADLINE;
    while receiver.requests() < 2 {
        assert!(
            tokio::time::Instant::now() < wait,
            "the collector was not retried"
        );
        client.send_text(r#"{"action":"ping"}"#).await;
        assert_eq!(client.next_text().await, r#"{"pong":true}"#);
    }
    // Later batches go through.
    receiver.named("MESSAGE", Some("ping")).await;
    let metrics = gateway.metrics().await;
    assert!(
        metric(&metrics, "sockway_trace_export_errors_total") >= 2.0,
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            r#"sockway_trace_spans_dropped_total{reason="export_failed"}"#
        ) >= 1.0,
        "{metrics}"
    );
    assert!(metric(&metrics, "sockway_trace_spans_exported_total") >= 1.0);
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_stalled_collector_never_slows_connections() {
    let receiver = OtlpReceiver::start().await;
    receiver.answer_next(&[OtlpAnswer::Hang]);
    let mut backend = MockBackend::start().await;
    let tracing = tracing_section(
        &receiver,
        "batch_size = 1\nqueue_size = 2\ntimeout = \"30s\"",
    );
    let gateway = TestGateway::start(&config(&backend, &tracing)).await;
    let (mut client, _) = connect(&gateway, &mut backend).await;
    for _ in 0..20 {
        client.send_text(r#"{"action":"ping"}"#).await;
        assert_eq!(client.next_text().await, r#"{"pong":true}"#);
    }
    let metrics = gateway.metrics().await;
    assert!(
        metric(
            &metrics,
            r#"sockway_trace_spans_dropped_total{reason="queue_full"}"#
        ) >= 40.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn a_post_to_another_nodes_connection_has_a_cluster_delivery_span() {
    let redis = RedisServer::start().await;
    let receiver = OtlpReceiver::start().await;
    let mut backend = MockBackend::start().await;
    let extra = format!(
        "\n[cluster]\nredis_url = \"{}\"\nnode_id = \"node-x\"\nnode_timeout = \"2s\"\n{}",
        redis.url(),
        tracing_section(&receiver, "")
    );
    let text = config(&backend, &extra);
    let owner = TestGateway::start(&text.replace("node-x", "node-a")).await;
    let caller = TestGateway::start(&text.replace("node-x", "node-b")).await;
    let (mut client, id) = connect(&owner, &mut backend).await;
    let (status, _, _) = http_request("POST", &caller.connection_url(&id), "hi").await;
    assert_eq!(status, 200);
    assert_eq!(client.next_text().await, "hi");

    let post = receiver
        .named("POST /@connections/{connectionId}", None)
        .await;
    assert_eq!(post.string("connection_id"), Some(id.as_str()));
    assert_eq!(
        post.string("http.route"),
        Some("/@connections/{connectionId}")
    );
    let resource_id = post
        .resource
        .iter()
        .find(|(key, _)| key == "service.instance.id")
        .map(|(_, value)| value.clone());
    assert_eq!(
        resource_id,
        Some(sockway_testkit::AttributeValue::String("node-b".to_owned()))
    );
    let delivery = receiver.named("cluster delivery", None).await;
    assert_eq!(delivery.parent_span_id, post.span_id);
    assert_eq!(delivery.trace_id, post.trace_id);
    assert_eq!(delivery.status.0, 0, "delivered");
    // A post on the owner's own node needs no delivery.
    let (status, _, _) = http_request("POST", &owner.connection_url(&id), "again").await;
    assert_eq!(status, 200);
    assert_eq!(client.next_text().await, "again");
    receiver
        .span("the owner's POST", |span| {
            span.name == "POST /@connections/{connectionId}" && span.span_id != post.span_id
        })
        .await;
    owner.shutdown().await;
    caller.shutdown().await;
    let deliveries = receiver
        .spans()
        .iter()
        .filter(|span| span.name == "cluster delivery")
        .count();
    assert_eq!(deliveries, 1);
}
