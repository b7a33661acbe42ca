//! API keys on `$connect` (issue 17): a required key refuses a missing, unknown, disabled or
//! planless key with 403 before `$connect` runs, counts each key's connects, throttles at its
//! plan's rate and stops at its quota with 429; `identity.apiKey` and `apiKeyId` appear in the
//! events; a REQUEST authorizer's `usageIdentifierKey` selects the key when the selection
//! expression says so. The cluster cases are in `cluster::api_key_quotas_hold_across_nodes`.

use serde_json::{Value, json};
use sockway_testkit::{
    MockBackend, MockResponse, RecordedRequest, TestGateway, WsClient, connect_with_headers,
    http_request, metric,
};
use tokio_tungstenite::tungstenite;

use crate::config;

pub(crate) const GOLD_KEY: &str = "gold-key-0123456789abcdef";
pub(crate) const SILVER_KEY: &str = "silver-key-0123456789abcdef";
const DISABLED_KEY: &str = "disabled-key-0123456789abcdef";
const PLANLESS_KEY: &str = "planless-key-0123456789abcdef";

/// `$connect` requiring a key; `gold` (quota `gold_quota` a day) and `silver` (burst 2, then
/// one connect every 1000 s) in plans, `disabled` and `planless` not usable.
pub(crate) fn key_tables(gold_quota: u32) -> String {
    format!(
        r#"
[[api_keys]]
name = "gold"
id = "goldkey001"
value = "{GOLD_KEY}"

[[api_keys]]
name = "silver"
value = "{SILVER_KEY}"

[[api_keys]]
name = "disabled"
value = "{DISABLED_KEY}"
enabled = false

[[api_keys]]
name = "planless"
value = "{PLANLESS_KEY}"

[[usage_plans]]
name = "gold-plan"
api_keys = ["gold", "disabled"]
quota_limit = {gold_quota}
quota_period = "DAY"

[[usage_plans]]
name = "silver-plan"
api_keys = ["silver"]
rate_limit = 0.001
burst_limit = 2
"#
    )
}

/// The test config with `$connect` requiring a key.
pub(crate) fn keyed_config(backend: &MockBackend, extra: &str) -> String {
    config(backend, extra).replacen(
        "[routes.\"$connect\"]\nintegration = \"backend\"\n",
        "[routes.\"$connect\"]\nintegration = \"backend\"\napi_key_required = true\n",
        1,
    )
}

/// Connects with `x-api-key: key` (no header for `None`).
pub(crate) async fn connect_with_key(
    url: &str,
    key: Option<&str>,
) -> Result<WsClient, tungstenite::Error> {
    match key {
        Some(key) => connect_with_headers(url, &[("x-api-key", key)]).await,
        None => connect_with_headers(url, &[]).await,
    }
}

/// The status, headers and body of a refused handshake.
pub(crate) fn refusal(
    result: Result<WsClient, tungstenite::Error>,
) -> (u16, http::HeaderMap, String) {
    match result {
        Err(tungstenite::Error::Http(response)) => (
            response.status().as_u16(),
            response.headers().clone(),
            String::from_utf8(response.body().clone().unwrap_or_default()).unwrap(),
        ),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected the handshake to be refused"),
    }
}

/// `GET @api-keys/usage`'s items, by key name.
pub(crate) async fn usage(gateway: &TestGateway) -> Vec<Value> {
    let url = format!("{}/@api-keys/usage", gateway.management_url);
    let (status, _, body) = http_request("GET", &url, "").await;
    assert_eq!(status, 200, "{body:?}");
    let report: Value = serde_json::from_slice(&body).unwrap();
    report["items"].as_array().unwrap().clone()
}

pub(crate) fn used(items: &[Value], name: &str) -> u64 {
    let item = items
        .iter()
        .find(|item| item["name"] == name)
        .unwrap_or_else(|| panic!("no key {name} in {items:?}"));
    item["used"].as_u64().unwrap()
}

#[tokio::test]
async fn a_required_key_refuses_missing_unknown_disabled_and_planless_keys() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&keyed_config(&backend, &key_tables(100))).await;
    for key in [
        None,
        Some(""),
        Some("unknown-key-0123456789abcdef"),
        Some(DISABLED_KEY),
        Some(PLANLESS_KEY),
    ] {
        let (status, headers, body) = refusal(connect_with_key(&gateway.ws_url, key).await);
        assert_eq!(status, 403, "{key:?}");
        assert_eq!(body, r#"{"message":"Forbidden"}"#, "{key:?}");
        assert_eq!(headers["x-amzn-ErrorType"], "ForbiddenException");
        assert!(headers.contains_key("x-amzn-RequestId"));
    }
    assert!(
        backend.drain().is_empty(),
        "$connect never ran for a refused key"
    );

    let mut client = connect_with_key(&gateway.ws_url, Some(GOLD_KEY))
        .await
        .unwrap();
    let connect = backend.next_event_for("$connect").await;
    let identity = &connect["requestContext"]["identity"];
    assert_eq!(identity["apiKey"], GOLD_KEY);
    assert_eq!(identity["apiKeyId"], "goldkey001");
    assert_eq!(identity["sourceIp"], "127.0.0.1");
    assert_eq!(connect["headers"]["x-api-key"], GOLD_KEY);
    client.send_text(r#"{"action":"sendmessage"}"#).await;
    let message = backend.next_event_for("sendmessage").await;
    assert_eq!(
        message["requestContext"]["identity"]["apiKeyId"],
        "goldkey001"
    );
    client.close(1000, "bye").await;
    let disconnect = backend.next_event_for("$disconnect").await;
    assert_eq!(disconnect["requestContext"]["identity"]["apiKey"], GOLD_KEY);

    let metrics = gateway.metrics().await;
    for (reason, count) in [
        ("api_key_missing", 2.0),
        ("api_key_unknown", 1.0),
        ("api_key_disabled", 1.0),
        ("api_key_no_usage_plan", 1.0),
    ] {
        let series = format!("sockway_access_refused_total{{reason=\"{reason}\"}}");
        assert_eq!(metric(&metrics, &series), count, "{reason}");
    }
    gateway.shutdown().await;
}

#[tokio::test]
async fn usage_is_counted_per_key_and_stops_at_the_quota() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&keyed_config(&backend, &key_tables(3))).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(
            connect_with_key(&gateway.ws_url, Some(GOLD_KEY))
                .await
                .unwrap(),
        );
        backend.next_event_for("$connect").await;
    }
    let (status, headers, body) = refusal(connect_with_key(&gateway.ws_url, Some(GOLD_KEY)).await);
    assert_eq!(status, 429);
    assert_eq!(body, r#"{"message":"Limit Exceeded"}"#);
    assert_eq!(headers["x-amzn-ErrorType"], "LimitExceededException");
    // Closing connections gives nothing back: the quota counts connects.
    clients.clear();
    let (status, _, _) = refusal(connect_with_key(&gateway.ws_url, Some(GOLD_KEY)).await);
    assert_eq!(status, 429);
    // Another key's plan is its own.
    connect_with_key(&gateway.ws_url, Some(SILVER_KEY))
        .await
        .unwrap();

    let items = usage(&gateway).await;
    assert_eq!(used(&items, "gold"), 3, "refused connects do not count");
    assert_eq!(used(&items, "silver"), 1);
    assert_eq!(used(&items, "disabled"), 0);
    let gold = items.iter().find(|item| item["name"] == "gold").unwrap();
    assert_eq!(gold["id"], "goldkey001");
    assert_eq!(gold["usagePlan"], "gold-plan");
    assert_eq!(gold["quota"], json!({"limit": 3, "period": "DAY"}));
    assert_eq!(gold["remaining"], 0);
    assert_eq!(gold["period"], "DAY");
    assert!(
        gold["startDate"]
            .as_str()
            .unwrap()
            .ends_with("T00:00:00.000Z")
    );
    let silver = items.iter().find(|item| item["name"] == "silver").unwrap();
    assert_eq!(
        silver["throttle"],
        json!({"rateLimit": 0.001, "burstLimit": 2})
    );
    assert!(silver.get("remaining").is_none(), "{silver}");
    let metrics = gateway.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "sockway_throttled_total{reason=\"api_key_quota\"}"
        ),
        2.0
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn the_plan_rate_throttles_each_key_on_its_own() {
    let backend = MockBackend::start().await;
    let gateway = TestGateway::start(&keyed_config(&backend, &key_tables(100))).await;
    let mut clients = Vec::new();
    for _ in 0..2 {
        clients.push(
            connect_with_key(&gateway.ws_url, Some(SILVER_KEY))
                .await
                .unwrap(),
        );
    }
    let (status, headers, body) =
        refusal(connect_with_key(&gateway.ws_url, Some(SILVER_KEY)).await);
    assert_eq!(status, 429);
    assert_eq!(body, r#"{"message":"Too Many Requests"}"#);
    let retry_after: u64 = headers["Retry-After"].to_str().unwrap().parse().unwrap();
    assert!(retry_after > 900, "one connect every 1000 s: {retry_after}");
    // The gold key has no throttle, and the silver key's bucket is not the node's.
    for _ in 0..3 {
        clients.push(
            connect_with_key(&gateway.ws_url, Some(GOLD_KEY))
                .await
                .unwrap(),
        );
    }
    let items = usage(&gateway).await;
    assert_eq!(
        used(&items, "silver"),
        2,
        "a throttled connect is not counted"
    );
    let metrics = gateway.metrics().await;
    assert_eq!(
        metric(&metrics, "sockway_throttled_total{reason=\"api_key_rate\"}"),
        1.0
    );
    gateway.shutdown().await;
}

/// A browser cannot set `x-api-key`: with `$context.authorizer.usageIdentifierKey`, a REQUEST
/// authorizer reads the key from the query string and returns it.
#[tokio::test]
async fn a_request_authorizers_usage_identifier_key_selects_the_key() {
    let mut backend = MockBackend::start().await;
    backend.respond_with(|request: &RecordedRequest| {
        let event = request.json();
        if event["type"] != "REQUEST" {
            return MockResponse::proxy(200, None);
        }
        let key = event["queryStringParameters"]["key"].clone();
        MockResponse::json(json!({
            "principalId": "browser-user",
            "policyDocument": {"Version": "2012-10-17", "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "*"}
            ]},
            "usageIdentifierKey": key,
        }))
    });
    let extra = format!(
        "{}\n[authorizer]\ntype = \"http\"\nuri = \"{}\"\nidentity_sources = [\"route.request.querystring.key\"]\n",
        key_tables(100),
        backend.url("/auth")
    );
    let text = keyed_config(&backend, &extra).replacen(
        "api_id = \"a1b2c3d4e5\"\n",
        "api_id = \"a1b2c3d4e5\"\napi_key_selection_expression = \"$context.authorizer.usageIdentifierKey\"\n",
        1,
    );
    let gateway = TestGateway::start(&text).await;

    let url = format!("{}?key={GOLD_KEY}", gateway.ws_url);
    let _client = connect_with_key(&url, None).await.unwrap();
    let connect = loop {
        let event = backend.next_event().await;
        if event["requestContext"]["eventType"] == "CONNECT" && event.get("type").is_none() {
            break event;
        }
    };
    assert_eq!(connect["requestContext"]["identity"]["apiKey"], GOLD_KEY);
    assert_eq!(
        connect["requestContext"]["identity"]["apiKeyId"],
        "goldkey001"
    );
    assert_eq!(
        connect["requestContext"]["authorizer"]["principalId"],
        "browser-user"
    );
    assert!(
        connect["requestContext"]["authorizer"]
            .get("usageIdentifierKey")
            .is_none(),
        "the key stays out of the authorizer context"
    );

    // The header is not where this API looks.
    let (status, _, _) = refusal(
        connect_with_key(
            &format!("{}?key=nothing-here-0123456789", gateway.ws_url),
            Some(GOLD_KEY),
        )
        .await,
    );
    assert_eq!(status, 403);
    gateway.shutdown().await;
}
