//! Cluster failures that need real processes: a node killed with SIGKILL (survivors deliver
//! each of its connections' `$disconnect` exactly once), a node that stops answering (504), and
//! a node frozen longer than `node_timeout` that comes back (still exactly once).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use sockway_testkit::{
    ConfigFile, DEADLINE, GatewayProcess, MockBackend, RedisServer, WsClient, connect,
    connect_with_headers, http_request,
};
use tokio::time::Instant;

use crate::binary;

/// `node_timeout` in these tests.
const NODE_TIMEOUT: Duration = Duration::from_secs(2);
/// Time allowed past `node_timeout` for a survivor to notice (a heartbeat interval) and deliver.
const MARGIN: Duration = Duration::from_secs(3);
/// The subprotocol a client offers to ask for resume (`[resume]`).
const RESUME: &str = "sockway.resume.v1";

/// A config whose lifecycle routes go to `backend`, clustered on `redis`.
fn cluster_config(backend: &MockBackend, redis: &RedisServer) -> String {
    format!(
        r#"
[gateway]
stage = "dev"
api_id = "a1b2c3d4e5"

[routes."$connect"]
integration = "backend"

[routes."$disconnect"]
integration = "backend"

[integrations.backend]
type = "http"
uri = "{uri}"

[cluster]
redis_url = "{redis}"
node_timeout = "{timeout}s"
"#,
        uri = backend.url("/events"),
        redis = redis.url(),
        timeout = NODE_TIMEOUT.as_secs(),
    )
}

/// Connects `count` clients to `node`; returns them with their connection ids.
async fn connect_clients(
    node: &GatewayProcess,
    backend: &mut MockBackend,
    count: usize,
) -> (Vec<WsClient>, Vec<String>) {
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..count {
        clients.push(connect(&node.ws_url).await.unwrap());
        let event = backend.next_event_for("$connect").await;
        ids.push(
            event["requestContext"]["connectionId"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    (clients, ids)
}

#[tokio::test]
async fn a_killed_nodes_connections_get_one_disconnect_from_the_survivors() {
    let redis = RedisServer::start().await;
    let mut backend = MockBackend::start().await;
    let file = ConfigFile::new("crash", &cluster_config(&backend, &redis));
    let a = GatewayProcess::start(binary(), &file.path).await;
    let b = GatewayProcess::start(binary(), &file.path).await;
    let c = GatewayProcess::start(binary(), &file.path).await;
    let (clients, ids) = connect_clients(&b, &mut backend, 5).await;
    // B is reachable from A before the crash.
    let (status, _, _) = http_request("POST", &a.connection_url(&ids[0]), "hello").await;
    assert_eq!(status, 200);

    b.kill().await;
    let killed_at = Instant::now();
    drop(clients);

    let mut disconnects: HashMap<String, Value> = HashMap::new();
    while disconnects.len() < ids.len() {
        let event = backend.next_event_for("$disconnect").await;
        let id = event["requestContext"]["connectionId"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            ids.contains(&id),
            "DISCONNECT for an unknown connection {id}"
        );
        assert!(
            disconnects.insert(id.clone(), event).is_none(),
            "two DISCONNECT events for {id}"
        );
    }
    let elapsed = killed_at.elapsed();
    assert!(
        elapsed <= NODE_TIMEOUT + MARGIN,
        "DISCONNECT events took {elapsed:?}, more than node_timeout + {MARGIN:?}"
    );
    for (id, event) in &disconnects {
        let context = &event["requestContext"];
        assert_eq!(context["eventType"], "DISCONNECT", "{id}");
        assert_eq!(context["disconnectStatusCode"], 1006, "{id}");
        assert_eq!(context["disconnectReason"], "Gateway node lost", "{id}");
        assert_eq!(context["connectionId"], id.as_str());
        assert_eq!(context["identity"]["sourceIp"], "127.0.0.1");
        assert!(context["connectedAt"].is_i64(), "{id}");
    }
    for id in &ids {
        for node in [&a, &c] {
            let (status, headers, _) = http_request("POST", &node.connection_url(id), "x").await;
            assert_eq!(status, 410);
            assert_eq!(headers["x-amzn-ErrorType"], "GoneException");
        }
    }
    // Exactly once: a second survivor's delivery would arrive within another heartbeat or two.
    if let Some(extra) = backend.next_request_within(NODE_TIMEOUT).await {
        panic!("unexpected request after the take-over: {}", extra.json());
    }

    a.terminate().await;
    c.terminate().await;
}

/// A node SIGKILLed while it holds a suspended connection (`[resume]`): the other nodes
/// report it suspended and queue posts for it while its node lives; once the node is gone a
/// survivor delivers its `$disconnect` exactly once, and a resume on a survivor is refused with
/// 4410 (the client then opens a new connection).
#[tokio::test]
async fn a_killed_nodes_suspended_connection_gets_one_disconnect_from_the_survivors() {
    let redis = RedisServer::start().await;
    let mut backend = MockBackend::start().await;
    let config = format!(
        "{}\n[resume]\nwindow = \"60s\"\n",
        cluster_config(&backend, &redis)
    );
    let file = ConfigFile::new("suspended-crash", &config);
    let a = GatewayProcess::start(binary(), &file.path).await;
    let b = GatewayProcess::start(binary(), &file.path).await;
    let mut client = connect_with_headers(&b.ws_url, &[("Sec-WebSocket-Protocol", RESUME)])
        .await
        .unwrap();
    let frame: Value = serde_json::from_str(&client.next_text().await).unwrap();
    assert_eq!(frame["type"], "sockway.resume", "{frame}");
    let id = frame["connectionId"].as_str().unwrap().to_owned();
    backend.next_event_for("$connect").await;
    client.drop_tcp();

    // Reported suspended through the other node, and posts through it are queued.
    tokio::time::timeout(DEADLINE, async {
        loop {
            let (status, _, body) = http_request("GET", &a.connection_url(&id), "").await;
            assert_eq!(status, 200);
            let body: Value = serde_json::from_slice(&body).unwrap();
            if body["status"] == "suspended" {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the connection is reported suspended through the other node");
    let (status, _, _) = http_request("POST", &a.connection_url(&id), "queued").await;
    assert_eq!(status, 200);

    b.kill().await;
    let killed_at = Instant::now();
    let event = backend.next_event_for("$disconnect").await;
    let elapsed = killed_at.elapsed();
    assert!(
        elapsed <= NODE_TIMEOUT + MARGIN,
        "DISCONNECT took {elapsed:?}, more than node_timeout + {MARGIN:?}"
    );
    let context = &event["requestContext"];
    assert_eq!(context["connectionId"], id.as_str());
    assert_eq!(context["disconnectStatusCode"], 1006);
    assert_eq!(context["disconnectReason"], "Gateway node lost");

    let token = frame["token"].as_str().unwrap();
    let protocols = format!("{RESUME}, sockway.resume.token.{token}.0");
    let mut again = connect_with_headers(&a.ws_url, &[("Sec-WebSocket-Protocol", &protocols)])
        .await
        .expect("the resume upgrade completes");
    let (code, _) = again.next_close().await.expect("a close frame");
    assert_eq!(code, 4410);
    let (status, _, _) = http_request("POST", &a.connection_url(&id), "late").await;
    assert_eq!(status, 410);
    // Exactly once: a second delivery would arrive within another heartbeat or two.
    if let Some(extra) = backend.next_request_within(NODE_TIMEOUT).await {
        panic!("unexpected request after the take-over: {}", extra.json());
    }
    a.terminate().await;
}

#[tokio::test]
async fn a_node_that_does_not_answer_gets_504_and_a_gracefully_stopped_one_410() {
    let redis = RedisServer::start().await;
    let mut backend = MockBackend::start().await;
    let file = ConfigFile::new("stalled", &cluster_config(&backend, &redis));
    let a = GatewayProcess::start(binary(), &file.path).await;
    let b = GatewayProcess::start(binary(), &file.path).await;
    let (mut clients, ids) = connect_clients(&b, &mut backend, 1).await;

    b.signal("STOP").await;
    let started = Instant::now();
    let (status, headers, _) = http_request("POST", &a.connection_url(&ids[0]), "x").await;
    let waited = started.elapsed();
    b.signal("CONT").await;
    assert_eq!(status, 504, "{headers:?}");
    assert_eq!(headers["x-amzn-ErrorType"], "GatewayTimeoutException");
    assert!(waited < NODE_TIMEOUT, "504 after {waited:?}");
    // A 504 leaves the outcome open: B had received the request, and serves it once it runs.
    assert_eq!(clients[0].next_text().await, "x");

    // A graceful stop hands nothing over: B delivers its own DISCONNECT and leaves.
    let status = b.terminate().await;
    assert!(status.success(), "{status}");
    let event = backend.next_event_for("$disconnect").await;
    assert_eq!(event["requestContext"]["connectionId"], ids[0].as_str());
    assert_eq!(event["requestContext"]["disconnectStatusCode"], 1001);
    assert_eq!(
        clients[0].next_close().await,
        Some((1001, "Going away".to_owned()))
    );
    let (status, headers, _) = http_request("POST", &a.connection_url(&ids[0]), "x").await;
    assert_eq!(status, 410);
    assert_eq!(headers["x-amzn-ErrorType"], "GoneException");
    if let Some(extra) = backend.next_request_within(NODE_TIMEOUT + MARGIN).await {
        panic!("a survivor took over a node that left: {}", extra.json());
    }
    clients.clear();
    a.terminate().await;
}

#[tokio::test]
async fn connections_are_taken_over_after_redis_restarted_empty() {
    let mut redis = RedisServer::start().await;
    let mut backend = MockBackend::start().await;
    let file = ConfigFile::new("restart", &cluster_config(&backend, &redis));
    let a = GatewayProcess::start(binary(), &file.path).await;
    let b = GatewayProcess::start(binary(), &file.path).await;
    let (mut clients, mut ids) = connect_clients(&b, &mut backend, 2).await;

    redis.stop();
    // A connection opened while Redis is down exists only in B's registry.
    let (late_clients, late_ids) = connect_clients(&b, &mut backend, 1).await;
    clients.extend(late_clients);
    ids.extend(late_ids);
    redis.restart().await;

    // B stores all three records again on its own, without a restart.
    let deadline = Instant::now() + sockway_testkit::DEADLINE;
    let mut pace = tokio::time::interval(Duration::from_millis(50));
    loop {
        pace.tick().await;
        let stored = redis.query(&["EVAL", STORED_RECORDS, "0"]).await;
        if stored.as_deref() == Some(":3") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B did not re-register its connections: {stored:?}"
        );
    }

    b.kill().await;
    let killed_at = Instant::now();
    drop(clients);
    let mut delivered = Vec::new();
    while delivered.len() < ids.len() {
        let event = backend.next_event_for("$disconnect").await;
        assert_eq!(event["requestContext"]["disconnectStatusCode"], 1006);
        delivered.push(
            event["requestContext"]["connectionId"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert!(killed_at.elapsed() <= NODE_TIMEOUT + MARGIN);
    delivered.sort();
    ids.sort();
    assert_eq!(
        delivered, ids,
        "one DISCONNECT per connection of the lost node"
    );
    a.terminate().await;
}

/// Counts the connection records in Redis (the layout is documented in docs/cluster.md).
const STORED_RECORDS: &str = "local count = 0 \
    for _, key in ipairs(redis.call('KEYS', 'sockway:*:connections')) do \
    count = count + redis.call('HLEN', key) end return count";

/// The value of the series `series` on `node`'s `GET /metrics`.
async fn metric(node: &GatewayProcess, series: &str) -> f64 {
    let base = node.management_url().trim_end_matches("/dev").to_owned();
    let (status, _, body) = http_request("GET", &format!("{base}/metrics"), "").await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body.to_vec()).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

/// Issue #4: a node cut off from the cluster for longer than `node_timeout` (here frozen with
/// SIGSTOP: its heartbeats stop, its sockets stay open) is declared dead and its connections'
/// `$disconnect` is delivered by a survivor. When it runs again, it must not deliver a second
/// one, neither for connections whose clients left while it was frozen nor for those it then
/// closes because the cluster already declared them gone.
#[tokio::test]
async fn a_node_cut_off_longer_than_node_timeout_delivers_no_second_disconnect() {
    let redis = RedisServer::start().await;
    let mut backend = MockBackend::start().await;
    let file = ConfigFile::new("partition", &cluster_config(&backend, &redis));
    let a = GatewayProcess::start(binary(), &file.path).await;
    let b = GatewayProcess::start(binary(), &file.path).await;
    let (mut clients, ids) = connect_clients(&b, &mut backend, 4).await;

    b.signal("STOP").await;
    // Two clients leave while B is frozen: B reads their end only once it runs again.
    for client in clients.drain(..2) {
        client.drop_tcp();
    }
    let mut delivered = Vec::new();
    while delivered.len() < ids.len() {
        let event = backend.next_event_for("$disconnect").await;
        let context = &event["requestContext"];
        assert_eq!(context["disconnectStatusCode"], 1006);
        assert_eq!(context["disconnectReason"], "Gateway node lost");
        let id = context["connectionId"].as_str().unwrap().to_owned();
        assert!(
            ids.contains(&id),
            "DISCONNECT for an unknown connection {id}"
        );
        assert!(!delivered.contains(&id), "two DISCONNECT events for {id}");
        delivered.push(id);
    }
    assert_eq!(
        metric(&a, "sockway_cluster_claimed_connections_total").await,
        ids.len() as f64
    );
    for id in &ids {
        let (status, _, _) = http_request("POST", &a.connection_url(id), "x").await;
        assert_eq!(status, 410, "{id} is gone for the rest of the cluster");
    }

    b.signal("CONT").await;
    // B learns that it was taken over and closes the connections the cluster declared gone
    // (1006: the socket ends without a close frame).
    for client in &mut clients {
        assert_eq!(client.next_close().await, None);
    }
    // B decides, for every one of its connections, that a survivor delivered the $disconnect.
    let deadline = Instant::now() + sockway_testkit::DEADLINE;
    let mut pace = tokio::time::interval(Duration::from_millis(50));
    loop {
        pace.tick().await;
        let skipped = metric(&b, "sockway_cluster_disconnects_skipped_total").await;
        if skipped == ids.len() as f64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B left {skipped} of {} DISCONNECTs to the survivor",
            ids.len()
        );
    }
    if let Some(extra) = backend
        .next_request_within(Duration::from_millis(500))
        .await
    {
        panic!("a second DISCONNECT after the partition: {}", extra.json());
    }
    // B serves new connections under its new tag, reachable from A.
    let (mut fresh, fresh_ids) = connect_clients(&b, &mut backend, 1).await;
    let (status, _, _) = http_request("POST", &a.connection_url(&fresh_ids[0]), "back").await;
    assert_eq!(status, 200);
    assert_eq!(fresh[0].next_text().await, "back");

    fresh.clear();
    a.terminate().await;
    b.terminate().await;
}
