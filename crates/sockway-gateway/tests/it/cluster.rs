//! Cluster mode: three gateway nodes in this process sharing a real Redis (or a real Redis
//! Cluster of three masters), `@connections` calls from any node to a connection on any node,
//! a Redis outage under traffic, Redis over TLS (`rediss://`, with and without client
//! certificates), and the cluster's metrics on `GET /metrics`.

use std::time::Duration;

use serde_json::Value;
use sockway_testkit::{
    DEADLINE, MockBackend, RedisCluster, RedisServer, RedisTls, TestGateway, http_request, metric,
};
use tokio::time::Instant;

use crate::{check_error, config, connect};

/// `[cluster]` for `urls` with the short timings tests use, plus `extra` keys.
fn cluster_section_with(urls: &[String], extra: &str) -> String {
    format!("{}{extra}", cluster_section(urls))
}

/// `[cluster]` for `urls` with the short timings tests use.
fn cluster_section(urls: &[String]) -> String {
    let urls: Vec<String> = urls.iter().map(|url| format!("\"{url}\"")).collect();
    let redis_url = if urls.len() == 1 {
        urls[0].clone()
    } else {
        format!("[{}]", urls.join(", "))
    };
    format!("\n[cluster]\nredis_url = {redis_url}\nnode_timeout = \"2s\"\n")
}

/// Three nodes on `urls` (with `extra` `[cluster]` keys), all routed to `backend`.
async fn three_nodes(backend: &MockBackend, urls: &[String], extra: &str) -> [TestGateway; 3] {
    let text = config(backend, &cluster_section_with(urls, extra));
    [
        TestGateway::start(&text).await,
        TestGateway::start(&text).await,
        TestGateway::start(&text).await,
    ]
}

/// POST, GET and DELETE from every node to a connection on node B, with single-node statuses;
/// `extra` holds more `[cluster]` keys (the TLS files).
async fn check_cross_node_operations(urls: &[String], extra: &str) {
    let mut backend = MockBackend::start().await;
    let [a, b, c] = three_nodes(&backend, urls, extra).await;
    let (mut client, id) = connect(&b, &mut backend).await;

    for (node, text) in [(&a, "from a"), (&b, "from b"), (&c, "from c")] {
        let (status, headers, _) = http_request("POST", &node.connection_url(&id), text).await;
        assert_eq!(status, 200, "POST via another node");
        assert!(headers.contains_key("x-amzn-RequestId"));
        assert_eq!(client.next_text().await, text);
    }

    let (status, _, body) = http_request("GET", &c.connection_url(&id), "").await;
    assert_eq!(status, 200);
    let snapshot: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(snapshot["identity"]["sourceIp"], "127.0.0.1");
    assert!(snapshot["connectedAt"].as_str().unwrap().ends_with('Z'));
    assert!(snapshot["lastActiveAt"].is_string());

    // An id no node assigned (or whose node does not have it) is gone, from any node.
    for node in [&a, &b, &c] {
        let (status, headers, _) =
            http_request("POST", &node.connection_url("AAAAAAAAAAAAAAA="), "x").await;
        check_error(status, &headers, 410, "GoneException");
    }

    let (status, _, _) = http_request("DELETE", &a.connection_url(&id), "").await;
    assert_eq!(status, 204);
    assert_eq!(
        client.next_close().await,
        Some((1000, "Connection Closed Normally".to_owned()))
    );
    let disconnect = backend.next_event_for("$disconnect").await;
    assert_eq!(disconnect["requestContext"]["connectionId"], id.as_str());
    assert_eq!(disconnect["requestContext"]["disconnectStatusCode"], 1000);
    for node in [&a, &c] {
        for method in ["POST", "GET", "DELETE"] {
            let (status, headers, _) = http_request(method, &node.connection_url(&id), "x").await;
            check_error(status, &headers, 410, "GoneException");
        }
    }

    for node in [a, b, c] {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn any_node_posts_gets_and_deletes_a_connection_on_another_node() {
    let redis = RedisServer::start().await;
    check_cross_node_operations(&[redis.url()], "").await;
}

#[tokio::test]
async fn any_node_posts_gets_and_deletes_on_a_redis_cluster() {
    let redis = RedisCluster::start().await;
    check_cross_node_operations(&redis.urls(), "").await;
}

#[tokio::test]
async fn any_node_posts_gets_and_deletes_over_rediss_on_a_redis_cluster() {
    let tls = RedisTls::new(false);
    let redis = RedisCluster::start_tls(&tls).await;
    let urls = redis.urls();
    assert!(
        urls.iter().all(|url| url.starts_with("rediss://")),
        "{urls:?}"
    );
    check_cross_node_operations(&urls, &tls.toml(false)).await;
}

/// Groups spanning three nodes: joins routed to the owner from any node, one broadcast call
/// reaching members on every node with the right count, a broadcast to all, a paginated list
/// that covers every node exactly once, and membership that ends with a remote connection.
async fn check_groups_across_nodes(urls: &[String]) {
    let mut backend = MockBackend::start().await;
    let nodes = three_nodes(&backend, urls, "").await;
    let mut clients = Vec::new();
    for node in &nodes {
        for _ in 0..2 {
            clients.push(connect(node, &mut backend).await);
        }
    }
    // Members: the first client of each node, each joined through a node that does not hold it.
    for (index, (_, id)) in clients.iter().enumerate().step_by(2) {
        let via = &nodes[(index / 2 + 1) % 3];
        let url = format!("{}/groups/room", via.connection_url(id));
        let (status, _, body) = http_request("PUT", &url, "").await;
        assert_eq!(status, 204, "{body:?}");
    }
    let (status, _, body) = http_request(
        "GET",
        &format!("{}/groups", nodes[2].connection_url(&clients[0].1)),
        "",
    )
    .await;
    assert_eq!(status, 200);
    let groups: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(groups["groups"], serde_json::json!(["room"]));

    for via in &nodes {
        let (status, _, body) = http_request(
            "POST",
            &format!("{}/@groups/room", via.management_url),
            "to room",
        )
        .await;
        assert_eq!(status, 200, "{body:?}");
        let tally: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(tally, serde_json::json!({"delivered": 3, "dropped": 0}));
        for (client, _) in clients.iter_mut().step_by(2) {
            assert_eq!(client.next_text().await, "to room");
        }
    }
    let (status, _, body) = http_request(
        "POST",
        &format!("{}/@connections", nodes[1].management_url),
        "all",
    )
    .await;
    assert_eq!(status, 200);
    let tally: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(tally["delivered"], 6);
    for (client, _) in &mut clients {
        assert_eq!(client.next_text().await, "all");
    }

    // A list through any node covers every node, two at a time.
    let mut listed = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut url = format!("{}/@connections?maxResults=2", nodes[0].management_url);
        if let Some(token) = &token {
            url.push_str(&format!("&nextToken={token}"));
        }
        let (status, _, body) = http_request("GET", &url, "").await;
        assert_eq!(status, 200, "{body:?}");
        let page: Value = serde_json::from_slice(&body).unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        listed.extend(
            items
                .iter()
                .map(|item| item["connectionId"].as_str().unwrap().to_owned()),
        );
        match page.get("nextToken").and_then(Value::as_str) {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
        assert!(listed.len() <= 12, "pagination ends");
    }
    let mut expected: Vec<String> = clients.iter().map(|(_, id)| id.clone()).collect();
    expected.sort();
    listed.sort();
    assert_eq!(listed, expected, "every connection exactly once");

    // A member on node B closes: the group shrinks everywhere.
    let (client, id) = clients.remove(2);
    client.close(1000, "bye").await;
    let disconnect = backend.next_event_for("$disconnect").await;
    assert_eq!(disconnect["requestContext"]["connectionId"], id.as_str());
    let (status, _, body) = http_request(
        "GET",
        &format!("{}/@groups/room", nodes[0].management_url),
        "",
    )
    .await;
    assert_eq!(status, 200);
    let members: Value = serde_json::from_slice(&body).unwrap();
    let members: Vec<&str> = members["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["connectionId"].as_str().unwrap())
        .collect();
    assert_eq!(members.len(), 2);
    assert!(!members.contains(&id.as_str()));
    let (status, _, body) = http_request(
        "POST",
        &format!("{}/@groups/room", nodes[0].management_url),
        "after",
    )
    .await;
    assert_eq!(status, 200);
    let tally: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(tally["delivered"], 2);

    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn groups_and_broadcast_span_nodes() {
    let redis = RedisServer::start().await;
    check_groups_across_nodes(&[redis.url()]).await;
}

#[tokio::test]
async fn groups_and_broadcast_span_nodes_on_a_redis_cluster() {
    let redis = RedisCluster::start().await;
    check_groups_across_nodes(&redis.urls()).await;
}

/// Script calls and publishes Redis has run so far (commands run inside a script count too).
async fn redis_calls(redis: &RedisServer) -> u64 {
    let stats = redis.query(&["INFO", "commandstats"]).await.unwrap();
    stats
        .lines()
        .filter(|line| {
            ["evalsha", "eval", "publish", "spublish"]
                .iter()
                .any(|command| line.starts_with(&format!("cmdstat_{command}:")))
        })
        .filter_map(|line| {
            let calls = line.split("calls=").nth(1)?;
            calls.split(',').next()?.parse::<u64>().ok()
        })
        .sum()
}

#[tokio::test]
async fn a_broadcast_crosses_redis_once_per_node_not_once_per_member() {
    let redis = RedisServer::start().await;
    let mut backend = MockBackend::start().await;
    let [a, b, c] = three_nodes(&backend, &[redis.url()], "").await;
    let mut members = Vec::new();
    for node in [&b, &c] {
        for _ in 0..20 {
            let (client, id) = connect(node, &mut backend).await;
            let (status, _, _) = http_request(
                "PUT",
                &format!("{}/groups/big", node.connection_url(&id)),
                "",
            )
            .await;
            assert_eq!(status, 204);
            members.push(client);
        }
    }
    let before = redis_calls(&redis).await;
    let (status, _, body) = http_request(
        "POST",
        &format!("{}/@groups/big", a.management_url),
        "fan out",
    )
    .await;
    let after = redis_calls(&redis).await;
    assert_eq!(status, 200);
    let tally: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(tally["delivered"], 40);
    for client in &mut members {
        assert_eq!(client.next_text().await, "fan out");
    }
    // Two remote nodes: one routed request and one reply each (heartbeats add a few calls);
    // one message per member would be at least 80.
    let calls = after - before;
    assert!(
        calls < 20,
        "{calls} Redis calls for one broadcast to 40 members"
    );
    for node in [a, b, c] {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn pushes_from_one_caller_arrive_in_order_across_nodes() {
    let redis = RedisServer::start().await;
    let mut backend = MockBackend::start().await;
    let [a, b, c] = three_nodes(&backend, &[redis.url()], "").await;
    let (mut client, id) = connect(&b, &mut backend).await;
    let url = a.connection_url(&id);
    for index in 0..100 {
        let (status, _, _) = http_request("POST", &url, format!("message {index}")).await;
        assert_eq!(status, 200);
    }
    for index in 0..100 {
        assert_eq!(client.next_text().await, format!("message {index}"));
    }
    for node in [a, b, c] {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn post_after_the_owner_closed_the_connection_is_gone() {
    let redis = RedisServer::start().await;
    let mut backend = MockBackend::start().await;
    let [a, b, c] = three_nodes(&backend, &[redis.url()], "").await;
    let (client, id) = connect(&b, &mut backend).await;
    client.close(1000, "bye").await;
    let disconnect = backend.next_event_for("$disconnect").await;
    assert_eq!(disconnect["requestContext"]["connectionId"], id.as_str());
    let (status, headers, body) = http_request("POST", &a.connection_url(&id), "late").await;
    check_error(status, &headers, 410, "GoneException");
    assert!(body.is_empty(), "410 has an empty body");
    for node in [a, b, c] {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn redis_outage_keeps_local_traffic_and_recovers_without_restarts() {
    let mut redis = RedisServer::start().await;
    let mut backend = MockBackend::start().await;
    let text = config(&backend, &cluster_section(&[redis.url()]));
    let a = TestGateway::start(&text).await;
    let b = TestGateway::start(&text).await;
    let (mut on_a, id_a) = connect(&a, &mut backend).await;
    let (mut on_b, id_b) = connect(&b, &mut backend).await;
    let (status, _, _) = http_request("POST", &a.connection_url(&id_b), "before").await;
    assert_eq!(status, 200);
    assert_eq!(on_b.next_text().await, "before");

    redis.stop();

    // Cross-node calls fail with a 5xx, soon and then fast: never a 200 for a dropped message.
    let first_failure = wait_for_status(&a.connection_url(&id_b), |status| status >= 500).await;
    assert!(
        first_failure == 503 || first_failure == 504,
        "cross-node call during the outage answered {first_failure}"
    );
    for _ in 0..5 {
        let started = Instant::now();
        let (status, headers, _) = http_request("POST", &a.connection_url(&id_b), "during").await;
        check_error(status, &headers, 503, "ServiceUnavailableException");
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "503 took {:?}",
            started.elapsed()
        );
    }

    // Local traffic keeps working: routes, and @connections on the owning node.
    on_a.send_text("{\"action\":\"unrouted\",\"n\":1}").await;
    assert_eq!(on_a.next_text().await, "{\"action\":\"unrouted\",\"n\":1}");
    let (status, _, _) = http_request("POST", &b.connection_url(&id_b), "local").await;
    assert_eq!(status, 200);
    assert_eq!(on_b.next_text().await, "local");
    // A connection opened during the outage works locally too.
    let (mut late, id_late) = connect(&b, &mut backend).await;
    let (status, _, _) = http_request("POST", &b.connection_url(&id_late), "hello").await;
    assert_eq!(status, 200);
    assert_eq!(late.next_text().await, "hello");
    // A broadcast reaches this node's connections and says, fast, that it could not reach
    // the others; group membership on this node keeps working.
    let (status, _, _) = http_request(
        "PUT",
        &format!("{}/groups/local", b.connection_url(&id_late)),
        "",
    )
    .await;
    assert_eq!(status, 204);
    let started = Instant::now();
    let (status, headers, body) = http_request(
        "POST",
        &format!("{}/@groups/local", b.management_url),
        "partial",
    )
    .await;
    check_error(status, &headers, 503, "ServiceUnavailableException");
    assert!(started.elapsed() < Duration::from_millis(500));
    let message: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        message["message"]
            .as_str()
            .unwrap()
            .contains("queued for 1 connection(s)"),
        "{message}"
    );
    assert_eq!(late.next_text().await, "partial");

    redis.restart().await;

    // Every direction works again, with no node restarted.
    wait_for_status(&a.connection_url(&id_b), |status| status == 200).await;
    assert_eq!(on_b.next_text().await, "again");
    let (status, _, _) = http_request("POST", &b.connection_url(&id_a), "reverse").await;
    assert_eq!(status, 200);
    assert_eq!(on_a.next_text().await, "reverse");
    let (status, _, _) = http_request("POST", &a.connection_url(&id_late), "late").await;
    assert_eq!(status, 200);
    assert_eq!(late.next_text().await, "late");
    let (status, _, _) = http_request("GET", &a.connection_url(&id_b), "").await;
    assert_eq!(status, 200);

    a.shutdown().await;
    b.shutdown().await;
}

/// POSTs "again" to `url` until the status satisfies `wanted`, pacing the attempts, and
/// returns that status; fails the test after [`DEADLINE`]. Statuses that do not satisfy it
/// must be failures (nothing was delivered).
async fn wait_for_status(url: &str, wanted: impl Fn(u16) -> bool) -> u16 {
    let deadline = Instant::now() + DEADLINE;
    let mut pace = tokio::time::interval(Duration::from_millis(50));
    loop {
        pace.tick().await;
        let (status, _, _) = http_request("POST", url, "again").await;
        if wanted(status) {
            return status;
        }
        assert!(status != 200, "a 200 that was not wanted");
        assert!(
            Instant::now() < deadline,
            "POST {url} still answered {status} after {DEADLINE:?}"
        );
    }
}

#[tokio::test]
async fn a_node_that_cannot_reach_redis_does_not_start() {
    let mut redis = RedisServer::start().await;
    redis.stop();
    let backend = MockBackend::start().await;
    let text = config(&backend, &cluster_section(&[redis.url()]));
    let mut config = sockway_gateway::config::Config::from_toml(&text, "<test>").unwrap();
    config.gateway.listen = "127.0.0.1:0".parse().unwrap();
    let error = sockway_gateway::Gateway::bind(config).await.unwrap_err();
    let text = sockway_testkit::error_chain(&error);
    assert!(
        text.contains("cannot join the cluster: connect to Redis"),
        "{text}"
    );
}

/// Scrapes `node` until `series` satisfies `wanted`; fails the test after [`DEADLINE`].
async fn wait_for_metric(node: &TestGateway, series: &str, wanted: impl Fn(f64) -> bool) {
    let deadline = Instant::now() + DEADLINE;
    let mut pace = tokio::time::interval(Duration::from_millis(50));
    loop {
        pace.tick().await;
        let text = node.metrics().await;
        if wanted(metric(&text, series)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} is {} after {DEADLINE:?}",
            metric(&text, series)
        );
    }
}

/// Two nodes on one TLS-only Redis push to each other's connections.
async fn check_two_nodes_push_to_each_other(redis: &RedisServer, keys: &str) {
    assert!(redis.url().starts_with("rediss://"));
    let mut backend = MockBackend::start().await;
    let text = config(&backend, &cluster_section_with(&[redis.url()], keys));
    let a = TestGateway::start(&text).await;
    let b = TestGateway::start(&text).await;
    let (mut on_a, id_a) = connect(&a, &mut backend).await;
    let (mut on_b, id_b) = connect(&b, &mut backend).await;
    let (status, _, _) = http_request("POST", &a.connection_url(&id_b), "a to b").await;
    assert_eq!(status, 200);
    assert_eq!(on_b.next_text().await, "a to b");
    let (status, _, _) = http_request("POST", &b.connection_url(&id_a), "b to a").await;
    assert_eq!(status, 200);
    assert_eq!(on_a.next_text().await, "b to a");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn two_nodes_push_to_each_other_over_rediss() {
    let tls = RedisTls::new(false);
    let redis = RedisServer::start_tls(&tls).await;
    check_two_nodes_push_to_each_other(&redis, &tls.toml(false)).await;
}

#[tokio::test]
async fn mutual_tls_to_redis_presents_the_client_certificate_and_fails_without_one() {
    let tls = RedisTls::new(true);
    let redis = RedisServer::start_tls(&tls).await;
    check_two_nodes_push_to_each_other(&redis, &tls.toml(true)).await;

    let text = bind_error(&redis.url(), &tls.toml(false)).await;
    assert!(
        text.contains("cannot join the cluster: connect to Redis over TLS (rediss://)"),
        "{text}"
    );
    assert!(text.contains("CertificateRequired"), "{text}");
}

#[tokio::test]
async fn a_redis_certificate_from_another_ca_stops_startup_naming_tls() {
    let tls = RedisTls::new(false);
    let other = RedisTls::new(false);
    let redis = RedisServer::start_tls(&tls).await;
    let text = bind_error(&redis.url(), &other.toml(false)).await;
    assert!(
        text.contains("cannot join the cluster: connect to Redis over TLS (rediss://)"),
        "{text}"
    );
    assert!(text.contains("certificate"), "{text}");

    // A CA file that cannot be read is named with its key.
    let text = bind_error(
        &redis.url(),
        "tls_ca_file = \"/nonexistent/sockway-ca.pem\"\n",
    )
    .await;
    assert!(
        text.contains("cannot read cluster.tls_ca_file `/nonexistent/sockway-ca.pem`"),
        "{text}"
    );
}

/// The startup error of a node on `url` with `keys` in `[cluster]`.
async fn bind_error(url: &str, keys: &str) -> String {
    let backend = MockBackend::start().await;
    let text = config(&backend, &cluster_section_with(&[url.to_owned()], keys));
    let mut config = sockway_gateway::config::Config::from_toml(&text, "<test>").unwrap();
    config.gateway.listen = "127.0.0.1:0".parse().unwrap();
    let started = tokio::time::timeout(DEADLINE, sockway_gateway::Gateway::bind(config))
        .await
        .expect("startup fails within the deadline");
    sockway_testkit::error_chain(&started.expect_err("the node must not start"))
}

#[tokio::test]
async fn cluster_metrics_count_peers_redis_round_trips_remote_calls_and_outages() {
    let mut redis = RedisServer::start().await;
    let mut backend = MockBackend::start().await;
    let text = config(&backend, &cluster_section(&[redis.url()]));
    let a = TestGateway::start(&text).await;
    let b = TestGateway::start(&text).await;
    let (mut on_b, id_b) = connect(&b, &mut backend).await;

    // A sees B once its heartbeat scanned the directory.
    wait_for_metric(&a, "sockway_cluster_peers", |peers| peers == 1.0).await;
    let (status, _, _) = http_request("POST", &a.connection_url(&id_b), "hi").await;
    assert_eq!(status, 200);
    assert_eq!(on_b.next_text().await, "hi");
    let (status, _, _) = http_request("POST", &a.connection_url("AAAAAAAAAAAAAAA="), "x").await;
    assert_eq!(status, 410);
    let text = a.metrics().await;
    assert_eq!(metric(&text, "sockway_redis_up"), 1.0);
    assert_eq!(metric(&text, "sockway_redis_outages_total"), 0.0);
    assert_eq!(
        metric(&text, r#"sockway_cluster_remote_calls_total{outcome="ok"}"#),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"sockway_cluster_remote_calls_total{outcome="gone"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(&text, r#"sockway_redis_commands_total{operation="route"}"#),
        2.0
    );
    // The unknown tag's connection might have moved (`[resume]`): one lookup, only then.
    assert_eq!(
        metric(&text, r#"sockway_redis_commands_total{operation="moved"}"#),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"sockway_redis_latency_ms_count{operation="route"}"#
        ),
        2.0
    );
    assert!(
        metric(
            &text,
            r#"sockway_redis_commands_total{operation="heartbeat"}"#
        ) >= 1.0
    );
    // B wrote its connection's record.
    wait_for_metric(
        &b,
        r#"sockway_redis_commands_total{operation="presence"}"#,
        |writes| writes >= 1.0,
    )
    .await;

    redis.stop();
    wait_for_metric(&a, "sockway_redis_up", |up| up == 0.0).await;
    let (status, _, _) = http_request("POST", &a.connection_url(&id_b), "x").await;
    assert_eq!(status, 503);
    let text = a.metrics().await;
    assert_eq!(metric(&text, "sockway_redis_outages_total"), 1.0);
    assert!(
        metric(
            &text,
            r#"sockway_cluster_remote_calls_total{outcome="unavailable"}"#
        ) >= 1.0,
        "{text}"
    );

    redis.restart().await;
    wait_for_metric(&a, "sockway_redis_up", |up| up == 1.0).await;
    assert_eq!(
        metric(&a.metrics().await, "sockway_redis_outages_total"),
        1.0
    );

    // A single node without [cluster] has no cluster series.
    let single = TestGateway::start(&config(&backend, "")).await;
    assert!(!single.metrics().await.contains("sockway_redis_up"));

    drop(on_b);
    a.shutdown().await;
    b.shutdown().await;
    single.shutdown().await;
}

/// Issue 14: the Redis password can come from the environment (`cluster.redis_password_env`,
/// here set on the validated config as loading would) rather than the URL, is used to join a
/// Redis that requires it, and never shows in the config's `Debug` output.
#[tokio::test]
async fn a_redis_password_outside_the_url_is_used_and_never_shown() {
    let redis = RedisServer::start().await;
    let password = "a-redis-password-0123";
    assert_eq!(
        redis
            .query(&["CONFIG", "SET", "requirepass", password])
            .await
            .as_deref(),
        Some("+OK")
    );
    let backend = MockBackend::start().await;
    let text = config(&backend, &cluster_section(&[redis.url()]));
    let mut without = sockway_gateway::config::Config::from_toml(&text, "<test>").unwrap();
    without.gateway.listen = "127.0.0.1:0".parse().unwrap();
    let mut with = without.clone();
    with.cluster.as_mut().unwrap().redis_password = Some(password.to_owned());
    assert!(
        !format!("{with:?}").contains(password),
        "Debug hides the password"
    );

    let error = tokio::time::timeout(DEADLINE, sockway_gateway::Gateway::bind(without))
        .await
        .expect("startup fails within the deadline")
        .expect_err("Redis refuses a node without the password");
    let text = sockway_testkit::error_chain(&error);
    assert!(text.contains("cannot join the cluster"), "{text}");

    let gateway = tokio::time::timeout(DEADLINE, sockway_gateway::Gateway::bind(with))
        .await
        .expect("startup within the deadline")
        .expect("the node joins with the password");
    gateway.shutdown().await;
}

/// Issue 17: an API key's quota is one count for the whole cluster, kept in Redis, so it
/// holds across nodes and across a node's restart; every node reports the same usage.
async fn check_api_key_quotas_across_nodes(urls: &[String]) {
    use crate::api_keys::{
        GOLD_KEY, SILVER_KEY, connect_with_key, key_tables, keyed_config, refusal, usage, used,
    };

    let mut backend = MockBackend::start().await;
    let text = keyed_config(
        &backend,
        &format!("{}{}", key_tables(3), cluster_section(urls)),
    );
    let a = TestGateway::start(&text).await;
    let b = TestGateway::start(&text).await;
    let mut clients = Vec::new();
    for node in [&a, &b, &a] {
        clients.push(
            connect_with_key(&node.ws_url, Some(GOLD_KEY))
                .await
                .unwrap(),
        );
        backend.next_event_for("$connect").await;
    }
    for node in [&a, &b] {
        let (status, _, body) = refusal(connect_with_key(&node.ws_url, Some(GOLD_KEY)).await);
        assert_eq!(status, 429);
        assert_eq!(body, r#"{"message":"Limit Exceeded"}"#);
    }
    // The silver key's plan throttles per node: burst 2 on each node.
    for node in [&a, &a, &b, &b] {
        clients.push(
            connect_with_key(&node.ws_url, Some(SILVER_KEY))
                .await
                .unwrap(),
        );
    }
    let (status, _, _) = refusal(connect_with_key(&a.ws_url, Some(SILVER_KEY)).await);
    assert_eq!(status, 429);
    for node in [&a, &b] {
        let items = usage(node).await;
        assert_eq!(used(&items, "gold"), 3);
        assert_eq!(used(&items, "silver"), 4);
    }

    // A node that restarts finds the count where it was.
    drop(clients);
    a.shutdown().await;
    let restarted = TestGateway::start(&text).await;
    assert_eq!(used(&usage(&restarted).await, "gold"), 3);
    let (status, _, _) = refusal(connect_with_key(&restarted.ws_url, Some(GOLD_KEY)).await);
    assert_eq!(status, 429);
    restarted.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn api_key_quotas_hold_across_nodes_and_restarts() {
    let redis = RedisServer::start().await;
    check_api_key_quotas_across_nodes(&[redis.url()]).await;
    let today = {
        // The count's key names the day the usage report starts on.
        let node = TestGateway::start(&crate::api_keys::keyed_config(
            &MockBackend::start().await,
            &format!(
                "{}{}",
                crate::api_keys::key_tables(3),
                cluster_section(&[redis.url()])
            ),
        ))
        .await;
        let items = crate::api_keys::usage(&node).await;
        node.shutdown().await;
        items[0]["startDate"].as_str().unwrap()[..10].to_owned()
    };
    let key = format!("sockway:usage:{{goldkey001}}:DAY:{today}");
    assert_eq!(
        redis.query(&["GET", &key]).await.as_deref(),
        Some("3"),
        "{key}"
    );
    let ttl: i64 = redis
        .query(&["TTL", &key])
        .await
        .unwrap()
        .trim_start_matches(':')
        .parse()
        .unwrap();
    assert!(
        ttl > 86_400 && ttl <= 2 * 86_400,
        "expires a day after the period: {ttl}"
    );
}

#[tokio::test]
async fn api_key_quotas_hold_across_nodes_on_a_redis_cluster() {
    let redis = RedisCluster::start().await;
    check_api_key_quotas_across_nodes(&redis.urls()).await;
}

/// Issue 17: while Redis cannot be reached, a keyed connect is admitted uncounted (the per-node
/// throttle still applies) and counted as such; the usage report answers 503.
#[tokio::test]
async fn api_key_uses_are_admitted_uncounted_while_redis_is_down() {
    use crate::api_keys::{GOLD_KEY, connect_with_key, key_tables, keyed_config};

    let mut redis = RedisServer::start().await;
    let backend = MockBackend::start().await;
    let text = keyed_config(
        &backend,
        &format!("{}{}", key_tables(3), cluster_section(&[redis.url()])),
    );
    let node = TestGateway::start(&text).await;
    redis.stop();
    let _client = connect_with_key(&node.ws_url, Some(GOLD_KEY))
        .await
        .unwrap();
    let metrics = node.metrics().await;
    assert_eq!(
        metric(&metrics, "sockway_api_key_uses_uncounted_total"),
        1.0
    );
    let url = format!("{}/@api-keys/usage", node.management_url);
    let (status, headers, _) = http_request("GET", &url, "").await;
    check_error(status, &headers, 503, "ServiceUnavailableException");
    node.shutdown().await;
}
