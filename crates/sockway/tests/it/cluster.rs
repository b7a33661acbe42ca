//! Cluster failures that need real processes: a node killed with SIGKILL (survivors deliver
//! each of its connections' `$disconnect` exactly once), a node that stops answering (504), and
//! a node frozen longer than `node_timeout` that comes back (still exactly once).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use sockway_testkit::{
    ConfigFile, DEADLINE, GatewayProcess, MockBackend, RedisCluster, RedisServer, WsClient,
    connect, connect_with_headers, http_request,
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
    cluster_config_on(backend, &format!("\"{}\"", redis.url()))
}

/// A config whose lifecycle routes go to `backend`, clustered on `redis_url` (TOML: a string,
/// or a list for a Redis Cluster).
fn cluster_config_on(backend: &MockBackend, redis_url: &str) -> String {
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
redis_url = {redis_url}
node_timeout = "{timeout}s"
"#,
        uri = backend.url("/events"),
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

/// Opens a resumable connection on `node`; returns the client and its resume frame.
async fn open_resumable(node: &GatewayProcess, backend: &mut MockBackend) -> (WsClient, Value) {
    let mut client = connect_with_headers(&node.ws_url, &[("Sec-WebSocket-Protocol", RESUME)])
        .await
        .unwrap();
    let frame: Value = serde_json::from_str(&client.next_text().await).unwrap();
    assert_eq!(frame["type"], "sockway.resume", "{frame}");
    backend.next_event_for("$connect").await;
    (client, frame)
}

/// Counts the suspended connections' records in Redis.
const SUSPENDED_RECORDS: &str = "return #redis.call('KEYS', 'sockway:*:suspended:*')";

/// The Redis servers a test's nodes share: one, or those of a Redis Cluster.
fn single(redis: &RedisServer) -> Vec<&RedisServer> {
    vec![redis]
}

/// Waits until `node` reports the connection suspended and its holder recorded it in Redis
/// (the one write a suspension costs; a node killed before it lands loses the connection as
/// before: one `$disconnect` 1006 from the survivors).
async fn until_suspended(node: &GatewayProcess, redis: &[&RedisServer], id: &str) {
    tokio::time::timeout(DEADLINE, async {
        let mut pace = tokio::time::interval(Duration::from_millis(20));
        loop {
            pace.tick().await;
            let (status, _, body) = http_request("GET", &node.connection_url(id), "").await;
            assert_eq!(status, 200);
            let body: Value = serde_json::from_slice(&body).unwrap();
            let mut recorded = 0;
            for server in redis {
                let count = server.query(&["EVAL", SUSPENDED_RECORDS, "0"]).await;
                recorded += count
                    .and_then(|count| count.strip_prefix(':')?.parse::<usize>().ok())
                    .unwrap_or(0);
            }
            if body["status"] == "suspended" && recorded == 1 {
                break;
            }
        }
    })
    .await
    .expect("the connection is reported suspended and recorded");
}

/// Posts `body` through `node`, again while the answer is 503 or 504 (the killed node is not
/// yet known dead: the post was not acknowledged); returns the final status.
async fn post_until_answered(node: &GatewayProcess, id: &str, body: &'static str) -> u16 {
    tokio::time::timeout(DEADLINE, async {
        let mut pace = tokio::time::interval(Duration::from_millis(50));
        loop {
            pace.tick().await;
            let (status, _, _) = http_request("POST", &node.connection_url(id), body).await;
            if status != 503 && status != 504 {
                return status;
            }
        }
    })
    .await
    .expect("the post is answered with more than 503/504 once the node is known dead")
}

/// Resumes with `frame`'s token and count `received` through `node`, again while the upgrade
/// fails (the node holding the connection cannot be asked yet); returns the client after the
/// 101 (a resume frame follows, or a close with 4410/4403).
async fn resume_on(node: &GatewayProcess, frame: &Value, received: usize) -> WsClient {
    let token = frame["token"].as_str().unwrap();
    let protocols = format!("{RESUME}, sockway.resume.token.{token}.{received}");
    tokio::time::timeout(DEADLINE, async {
        let mut pace = tokio::time::interval(Duration::from_millis(50));
        loop {
            pace.tick().await;
            if let Ok(client) =
                connect_with_headers(&node.ws_url, &[("Sec-WebSocket-Protocol", &protocols)]).await
            {
                return client;
            }
        }
    })
    .await
    .expect("the resume upgrade completes once the node is known dead")
}

/// A node SIGKILLed while it holds a suspended connection (`[resume]`): posts through a
/// survivor are acknowledged (before the death through the holder, after it into Redis), and
/// the client resumes on the survivor within the window with the same id, every acknowledged
/// post once and in order, and neither `$connect` nor `$disconnect`.
#[tokio::test]
async fn a_killed_nodes_suspended_connection_resumes_on_a_survivor() {
    let redis = RedisServer::start().await;
    check_resume_on_a_survivor(&format!("\"{}\"", redis.url()), &single(&redis)).await;
}

/// [`a_killed_nodes_suspended_connection_resumes_on_a_survivor`] on a Redis Cluster: every
/// script of the dead-node path stays in one slot.
#[tokio::test]
async fn a_killed_nodes_suspended_connection_resumes_on_a_survivor_on_a_redis_cluster() {
    let redis = RedisCluster::start().await;
    let urls: Vec<String> = redis
        .urls()
        .iter()
        .map(|url| format!("\"{url}\""))
        .collect();
    let servers: Vec<&RedisServer> = redis.servers().iter().collect();
    check_resume_on_a_survivor(&format!("[{}]", urls.join(", ")), &servers).await;
}

async fn check_resume_on_a_survivor(redis_url: &str, redis: &[&RedisServer]) {
    let mut backend = MockBackend::start().await;
    let config = format!(
        "{}\n[resume]\nwindow = \"60s\"\n",
        cluster_config_on(&backend, redis_url)
    );
    let file = ConfigFile::new("suspended-crash", &config);
    let a = GatewayProcess::start(binary(), &file.path).await;
    let b = GatewayProcess::start(binary(), &file.path).await;
    let (mut client, frame) = open_resumable(&b, &mut backend).await;
    let id = frame["connectionId"].as_str().unwrap().to_owned();
    // One message received before the drop, and counted.
    let (status, _, _) = http_request("POST", &a.connection_url(&id), "m0").await;
    assert_eq!(status, 200);
    assert_eq!(client.next_text().await, "m0");
    client.drop_tcp();
    until_suspended(&a, redis, &id).await;
    // Queued at B while it lives, through A.
    for body in ["m1", "m2"] {
        let (status, _, _) = http_request("POST", &a.connection_url(&id), body).await;
        assert_eq!(status, 200);
    }

    b.kill().await;
    // Through A while B is dying and once it is known dead: kept in Redis.
    for body in ["m3", "m4"] {
        assert_eq!(post_until_answered(&a, &id, body).await, 200, "{body}");
    }

    let mut resumed = resume_on(&a, &frame, 1).await;
    let again: Value = serde_json::from_str(&resumed.next_text().await).unwrap();
    assert_eq!(again["connectionId"], id.as_str(), "{again}");
    assert_eq!(again["resumed"], true, "{again}");
    assert_eq!(again["sequence"], 1, "{again}");
    assert_eq!(again["missed"], 0, "{again}");
    for expected in ["m1", "m2", "m3", "m4"] {
        assert_eq!(resumed.next_text().await, expected);
    }
    // New posts reach it on its new node, through either id lookup.
    let (status, _, _) = http_request("POST", &a.connection_url(&id), "m5").await;
    assert_eq!(status, 200);
    assert_eq!(resumed.next_text().await, "m5");
    // Neither $connect nor $disconnect, and the survivor that claimed the dead node does not
    // end it.
    if let Some(extra) = backend.next_request_within(NODE_TIMEOUT + MARGIN).await {
        panic!("unexpected request after the resume: {}", extra.json());
    }
    // It ends once, from its new node.
    resumed.close(1000, "done").await;
    let event = backend.next_event_for("$disconnect").await;
    assert_eq!(event["requestContext"]["connectionId"], id.as_str());
    assert_eq!(event["requestContext"]["disconnectStatusCode"], 1000);
    if let Some(extra) = backend.next_request_within(NODE_TIMEOUT).await {
        panic!("unexpected request after the $disconnect: {}", extra.json());
    }
    a.terminate().await;
}

/// A node SIGKILLed while it holds a suspended connection that nobody resumes: one survivor
/// delivers its `$disconnect` once its window ends, not before, with the reason of an expired
/// window; a resume after that is refused with 4410 and posts get 410.
#[tokio::test]
async fn a_killed_nodes_suspended_connection_not_resumed_gets_one_disconnect_after_its_window() {
    const WINDOW: Duration = Duration::from_secs(6);
    let redis = RedisServer::start().await;
    let mut backend = MockBackend::start().await;
    let config = format!(
        "{}\n[resume]\nwindow = \"{}s\"\n",
        cluster_config(&backend, &redis),
        WINDOW.as_secs()
    );
    let file = ConfigFile::new("suspended-expiry", &config);
    let a = GatewayProcess::start(binary(), &file.path).await;
    let b = GatewayProcess::start(binary(), &file.path).await;
    let c = GatewayProcess::start(binary(), &file.path).await;
    let (client, frame) = open_resumable(&b, &mut backend).await;
    let id = frame["connectionId"].as_str().unwrap().to_owned();
    client.drop_tcp();
    let dropped_at = Instant::now();
    until_suspended(&a, &single(&redis), &id).await;

    b.kill().await;
    let event = backend.next_event_for("$disconnect").await;
    let elapsed = dropped_at.elapsed();
    assert!(
        elapsed >= WINDOW,
        "DISCONNECT after {elapsed:?}, before the window ended"
    );
    assert!(
        elapsed <= WINDOW + MARGIN,
        "DISCONNECT took {elapsed:?}, more than the window + {MARGIN:?}"
    );
    let context = &event["requestContext"];
    assert_eq!(context["connectionId"], id.as_str());
    assert_eq!(context["disconnectStatusCode"], 1006);
    assert_eq!(
        context["disconnectReason"],
        "Connection lost; not resumed within the resume window"
    );

    let refused = resume_on(&a, &frame, 0).await.next_close().await;
    assert_eq!(refused.map(|(code, _)| code), Some(4410));
    let (status, _, _) = http_request("POST", &c.connection_url(&id), "late").await;
    assert_eq!(status, 410);
    // Exactly once: a second delivery would arrive within another heartbeat or two.
    if let Some(extra) = backend.next_request_within(NODE_TIMEOUT).await {
        panic!("unexpected request after the $disconnect: {}", extra.json());
    }
    a.terminate().await;
    c.terminate().await;
}

/// Posts to a dead node's suspended connection past the resume limits: 410, as on the node
/// itself, and the connection ends once (1008).
#[tokio::test]
async fn a_killed_nodes_suspended_connection_ends_once_past_its_queue_limits() {
    let redis = RedisServer::start().await;
    let mut backend = MockBackend::start().await;
    let config = format!(
        "{}\n[resume]\nwindow = \"60s\"\nmax_queued_messages = 3\n",
        cluster_config(&backend, &redis)
    );
    let file = ConfigFile::new("suspended-overflow", &config);
    let a = GatewayProcess::start(binary(), &file.path).await;
    let b = GatewayProcess::start(binary(), &file.path).await;
    let (client, frame) = open_resumable(&b, &mut backend).await;
    let id = frame["connectionId"].as_str().unwrap().to_owned();
    client.drop_tcp();
    until_suspended(&a, &single(&redis), &id).await;
    let (status, _, _) = http_request("POST", &a.connection_url(&id), "m1").await;
    assert_eq!(status, 200);

    b.kill().await;
    for body in ["m2", "m3"] {
        assert_eq!(post_until_answered(&a, &id, body).await, 200, "{body}");
    }
    let (status, headers, _) = http_request("POST", &a.connection_url(&id), "m4").await;
    assert_eq!(status, 410);
    assert_eq!(headers["x-amzn-ErrorType"], "GoneException");
    let event = backend.next_event_for("$disconnect").await;
    let context = &event["requestContext"];
    assert_eq!(context["connectionId"], id.as_str());
    assert_eq!(context["disconnectStatusCode"], 1008);
    assert_eq!(context["disconnectReason"], "Resume queue full");
    let (status, _, _) = http_request("POST", &a.connection_url(&id), "m5").await;
    assert_eq!(status, 410);
    let refused = resume_on(&a, &frame, 0).await.next_close().await;
    assert_eq!(refused.map(|(code, _)| code), Some(4410));
    if let Some(extra) = backend.next_request_within(NODE_TIMEOUT + MARGIN).await {
        panic!("unexpected request after the $disconnect: {}", extra.json());
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
