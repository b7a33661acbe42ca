//! `[resume]`: a client whose socket drops without a clean close resumes its connection with
//! its token, keeps its id and gets every push exactly once and in order, with no `$connect`
//! or `$disconnect`; past the window, one `$disconnect`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use sockway_testkit::{
    DEADLINE, MockBackend, MockResponse, RecordedRequest, RedisServer, TestGateway, WsClient,
    connect_with_headers, http_request, metric,
};
use tokio_tungstenite::tungstenite::Message;

use crate::config;

const RESUME: &str = "sockway.resume.v1";

/// A client asking for resume, and its resume frame (the first message).
async fn open(url: &str) -> (WsClient, Value) {
    let mut client = connect_with_headers(url, &[("Sec-WebSocket-Protocol", RESUME)])
        .await
        .expect("the upgrade succeeds");
    assert_eq!(
        client.response_headers["sec-websocket-protocol"], RESUME,
        "the resume protocol is chosen"
    );
    let frame = resume_frame(&mut client).await;
    assert_eq!(frame["resumed"], false, "{frame}");
    (client, frame)
}

async fn resume_frame(client: &mut WsClient) -> Value {
    let frame: Value = serde_json::from_str(&client.next_text().await).expect("a JSON frame");
    assert_eq!(frame["type"], "sockway.resume", "{frame}");
    frame
}

/// Reconnects with `frame`'s token, having counted `received` messages.
async fn reconnect(
    url: &str,
    frame: &Value,
    received: usize,
) -> Result<WsClient, tokio_tungstenite::tungstenite::Error> {
    let token = frame["token"].as_str().expect("a token");
    let protocols = format!("{RESUME}, sockway.resume.token.{token}.{received}");
    connect_with_headers(url, &[("Sec-WebSocket-Protocol", &protocols)]).await
}

/// Reconnects and expects the connection back: its resume frame.
async fn resume(url: &str, frame: &Value, received: usize) -> (WsClient, Value) {
    let mut client = reconnect(url, frame, received)
        .await
        .expect("the resume upgrade succeeds");
    let resumed = resume_frame(&mut client).await;
    assert_eq!(resumed["resumed"], true, "{resumed}");
    assert_eq!(resumed["connectionId"], frame["connectionId"]);
    assert_ne!(
        resumed["token"], frame["token"],
        "a resume rotates the token"
    );
    (client, resumed)
}

/// Reconnects with a token that must be refused: the upgrade completes and is closed at once
/// with `code`.
async fn refused(url: &str, frame: &Value, code: u16) {
    let mut client = reconnect(url, frame, 0)
        .await
        .expect("the upgrade completes");
    let (closed, _) = client.next_close().await.expect("a close frame");
    assert_eq!(closed, code);
}

/// Posts `p0`, `p1`, ... to `connection_id` until `count` were sent; counts the acknowledged
/// ones in `progress` as it goes and returns them, in order.
fn push(
    gateway: &TestGateway,
    connection_id: &str,
    count: usize,
    progress: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Vec<String>> {
    push_as("p", gateway, connection_id, count, progress)
}

/// [`push`] with the messages named `{prefix}0`, `{prefix}1`, ...
fn push_as(
    prefix: &'static str,
    gateway: &TestGateway,
    connection_id: &str,
    count: usize,
    progress: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Vec<String>> {
    let url = gateway.connection_url(connection_id);
    tokio::spawn(async move {
        let mut acknowledged = Vec::new();
        for n in 0..count {
            let text = format!("{prefix}{n}");
            let (status, _, _) = http_request("POST", &url, text.clone()).await;
            assert_eq!(status, 200, "POST {text}");
            acknowledged.push(text);
            progress.fetch_add(1, Ordering::Relaxed);
        }
        acknowledged
    })
}

/// Waits until `progress` reaches `count`.
async fn until_acknowledged(progress: &AtomicUsize, count: usize) {
    tokio::time::timeout(DEADLINE, async {
        while progress.load(Ordering::Relaxed) < count {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the pushes are acknowledged");
}

/// Reads text messages until `expected` many arrived.
async fn read(client: &mut WsClient, into: &mut Vec<String>, expected: usize) {
    while into.len() < expected {
        into.push(client.next_text().await);
    }
}

/// Events the backend received other than messages: `$connect`, `$disconnect`, `$resume`.
fn lifecycle(requests: Vec<RecordedRequest>) -> Vec<String> {
    requests
        .into_iter()
        .map(|request| request.route_key())
        .filter(|key| key.starts_with('$') && key != "$default")
        .collect()
}

/// `GET @connections/{id}` until it reports the connection suspended.
async fn until_suspended(gateway: &TestGateway, connection_id: &str) -> Value {
    let url = gateway.connection_url(connection_id);
    tokio::time::timeout(DEADLINE, async {
        loop {
            let (status, _, body) = http_request("GET", &url, "").await;
            assert_eq!(status, 200);
            let body: Value = serde_json::from_slice(&body).unwrap();
            if body["status"] == "suspended" {
                return body;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the connection is suspended")
}

async fn gateway(extra: &str) -> (MockBackend, TestGateway) {
    let backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, &format!("[resume]\n{extra}"))).await;
    (backend, gateway)
}

/// The drop of the TCP stream (no close frame) while pushes keep coming: the client resumes
/// and has every acknowledged push once, in order.
#[tokio::test]
async fn a_dropped_client_resumes_with_every_push_once_and_in_order() {
    let (mut backend, gateway) = gateway("window = \"30s\"\n").await;
    let (mut client, frame) = open(&gateway.ws_url).await;
    let connection_id = frame["connectionId"].as_str().unwrap().to_owned();
    assert_eq!(
        backend.next_event_for("$connect").await["requestContext"]["connectionId"],
        connection_id
    );

    let progress = Arc::new(AtomicUsize::new(0));
    let pusher = push(&gateway, &connection_id, 400, progress.clone());
    let mut received = Vec::new();
    read(&mut client, &mut received, 50).await;
    // The client stops reading while pushes go on: what the socket takes from now on is lost
    // with it when the TCP stream drops, and must be replayed.
    until_acknowledged(&progress, 100).await;
    client.drop_tcp();

    let (mut client, resumed) = resume(&gateway.ws_url, &frame, received.len()).await;
    assert_eq!(resumed["missed"], 0, "{resumed}");
    assert_eq!(resumed["sequence"], received.len());
    let acknowledged = pusher.await.unwrap();
    read(&mut client, &mut received, acknowledged.len()).await;
    assert_eq!(received, acknowledged, "every push once, in order");

    // The connection goes on as before: messages route with the same id, no second $connect.
    client.send_text("after the resume").await;
    assert_eq!(client.next_text().await, "after the resume");
    let metrics = gateway.metrics().await;
    assert_eq!(
        metric(&metrics, "sockway_resumes_total{outcome=\"resumed\"}"),
        1.0
    );
    let replayed = metric(&metrics, "sockway_resume_replayed_messages_total");
    assert!(
        replayed > 0.0,
        "the pushes the dropped socket took were replayed"
    );
    client.close(1000, "done").await;
    let disconnect = backend.next_event_for("$disconnect").await;
    assert_eq!(disconnect["requestContext"]["connectionId"], connection_id);
    assert_eq!(disconnect["requestContext"]["disconnectStatusCode"], 1000);
    gateway.shutdown().await;
    assert_eq!(
        lifecycle(backend.drain()),
        Vec::<String>::new(),
        "no other $connect or $disconnect"
    );
}

/// A client that stops reading past the heartbeat is suspended; pushes queue and it resumes.
#[tokio::test]
async fn a_client_that_stops_reading_is_suspended_and_resumes() {
    let (mut backend, gateway) =
        gateway("window = \"30s\"\n[limits]\nheartbeat_interval = \"100ms\"\n").await;
    let (client, frame) = open(&gateway.ws_url).await;
    let connection_id = frame["connectionId"].as_str().unwrap().to_owned();
    backend.next_event_for("$connect").await;
    // Never polled again: its pings go unanswered.
    let silent = client.into_inner();
    let snapshot = until_suspended(&gateway, &connection_id).await;
    assert!(snapshot["connectedAt"].is_string(), "{snapshot}");
    let metrics = gateway.metrics().await;
    assert_eq!(metric(&metrics, "sockway_suspended_connections"), 1.0);

    let progress = Arc::new(AtomicUsize::new(0));
    let acknowledged = push(&gateway, &connection_id, 20, progress).await.unwrap();
    let metrics = gateway.metrics().await;
    assert!(
        metric(&metrics, "sockway_resume_queued_bytes") >= 20.0,
        "{metrics}"
    );
    let (mut client, resumed) = resume(&gateway.ws_url, &frame, 0).await;
    assert_eq!(resumed["sequence"], 0);
    let mut received = Vec::new();
    read(&mut client, &mut received, acknowledged.len()).await;
    assert_eq!(received, acknowledged);
    drop(silent);
    let metrics = gateway.metrics().await;
    assert_eq!(metric(&metrics, "sockway_suspended_connections"), 0.0);
    assert_eq!(metric(&metrics, "sockway_resume_queued_bytes"), 0.0);
    client.close(1000, "done").await;
    backend.next_event_for("$disconnect").await;
    gateway.shutdown().await;
    assert_eq!(lifecycle(backend.drain()), Vec::<String>::new());
}

/// A client reconnecting before the gateway noticed its old socket died takes the connection
/// over from that socket.
#[tokio::test]
async fn a_resume_takes_over_from_a_socket_still_open() {
    let (mut backend, gateway) = gateway("").await;
    let (mut old, frame) = open(&gateway.ws_url).await;
    let connection_id = frame["connectionId"].as_str().unwrap().to_owned();
    backend.next_event_for("$connect").await;
    let url = gateway.connection_url(&connection_id);
    let (status, _, _) = http_request("POST", &url, "before").await;
    assert_eq!(status, 200);
    assert_eq!(old.next_text().await, "before");

    let (mut client, _) = resume(&gateway.ws_url, &frame, 1).await;
    let (status, _, _) = http_request("POST", &url, "after").await;
    assert_eq!(status, 200);
    assert_eq!(client.next_text().await, "after");
    // The old socket was let go without a close frame.
    assert!(matches!(
        tokio::time::timeout(DEADLINE, old.into_inner().next_message_or_end()).await,
        Ok(None)
    ));
    client.close(1000, "done").await;
    backend.next_event_for("$disconnect").await;
    gateway.shutdown().await;
    assert_eq!(lifecycle(backend.drain()), Vec::<String>::new());
}

/// The old socket's client is gone and its writes are stuck on full buffers: the resume does
/// not wait for them (they could take `SEND_TIMEOUT`, 10 s) and what they held is replayed.
#[tokio::test]
async fn a_resume_does_not_wait_for_writes_stuck_on_the_old_socket() {
    let (mut backend, gateway) =
        gateway("max_queued_bytes = 67108864\n[limits]\noutbound_queue = 20\n").await;
    let (old, frame) = open(&gateway.ws_url).await;
    let connection_id = frame["connectionId"].as_str().unwrap().to_owned();
    backend.next_event_for("$connect").await;
    // Never read again: the socket's buffers fill and the gateway's write blocks.
    let stuck = old.into_inner();
    let url = gateway.connection_url(&connection_id);
    let payload = "x".repeat(100 * 1024);
    let mut acknowledged = Vec::new();
    for n in 0..400 {
        let text = format!("{n:04}{payload}");
        let (status, _, _) = http_request("POST", &url, text.clone()).await;
        if status == 429 {
            // The mailbox is full: the write is stuck.
            break;
        }
        assert_eq!(status, 200);
        acknowledged.push(text);
    }
    assert!(acknowledged.len() < 400, "the writes never blocked");

    let started = tokio::time::Instant::now();
    let (mut client, _) = resume(&gateway.ws_url, &frame, 0).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the resume waited {:?} for the old socket",
        started.elapsed()
    );
    let mut received = Vec::new();
    read(&mut client, &mut received, acknowledged.len()).await;
    assert!(received == acknowledged, "every push once, in order");
    drop(stuck);
    client.close(1000, "done").await;
    backend.next_event_for("$disconnect").await;
    gateway.shutdown().await;
    assert_eq!(lifecycle(backend.drain()), Vec::<String>::new());
}

/// Nobody resumes: `$disconnect` fires once when the window ends, with the cause.
#[tokio::test]
async fn past_the_window_disconnect_fires_once_with_the_reason() {
    let (mut backend, gateway) = gateway("window = \"1s\"\n").await;
    let (client, frame) = open(&gateway.ws_url).await;
    backend.next_event_for("$connect").await;
    client.drop_tcp();
    let event = backend.next_event_for("$disconnect").await;
    let context = &event["requestContext"];
    assert_eq!(context["connectionId"], frame["connectionId"]);
    assert_eq!(context["disconnectStatusCode"], 1006);
    assert_eq!(
        context["disconnectReason"],
        "Connection lost; not resumed within the resume window"
    );
    let metrics = gateway.metrics().await;
    assert_eq!(
        metric(&metrics, "sockway_resume_windows_expired_total"),
        1.0
    );
    // The token no longer resumes anything.
    refused(&gateway.ws_url, &frame, 4410).await;
    gateway.shutdown().await;
    assert_eq!(
        lifecycle(backend.drain()),
        Vec::<String>::new(),
        "one $disconnect"
    );
}

/// A suspended connection queues up to its limits; the post past them is answered 410 and the
/// connection ends with `$disconnect`.
#[tokio::test]
async fn a_suspended_connection_queues_up_to_its_limits_then_ends() {
    let (mut backend, gateway) = gateway("max_queued_messages = 3\n").await;
    let (client, frame) = open(&gateway.ws_url).await;
    let connection_id = frame["connectionId"].as_str().unwrap().to_owned();
    backend.next_event_for("$connect").await;
    client.drop_tcp();
    until_suspended(&gateway, &connection_id).await;
    let url = gateway.connection_url(&connection_id);
    for n in 0..3 {
        let (status, _, _) = http_request("POST", &url, format!("q{n}")).await;
        assert_eq!(status, 200);
    }
    let (status, headers, _) = http_request("POST", &url, "one too many").await;
    assert_eq!(status, 410);
    assert_eq!(headers["x-amzn-ErrorType"], "GoneException");
    let event = backend.next_event_for("$disconnect").await;
    assert_eq!(event["requestContext"]["disconnectStatusCode"], 1008);
    assert_eq!(
        event["requestContext"]["disconnectReason"],
        "Resume queue full"
    );
    let (status, _, _) = http_request("GET", &url, "").await;
    assert_eq!(status, 410);
    refused(&gateway.ws_url, &frame, 4410).await;
    gateway.shutdown().await;
    assert_eq!(lifecycle(backend.drain()), Vec::<String>::new());
}

/// `DELETE` ends a suspended connection with its `$disconnect`.
#[tokio::test]
async fn delete_ends_a_suspended_connection() {
    let (mut backend, gateway) = gateway("").await;
    let (client, frame) = open(&gateway.ws_url).await;
    let connection_id = frame["connectionId"].as_str().unwrap().to_owned();
    backend.next_event_for("$connect").await;
    client.close(1001, "").await;
    let snapshot = until_suspended(&gateway, &connection_id).await;
    assert!(snapshot["identity"]["sourceIp"].is_string(), "{snapshot}");
    let (status, _, _) = http_request("DELETE", &gateway.connection_url(&connection_id), "").await;
    assert_eq!(status, 204);
    let event = backend.next_event_for("$disconnect").await;
    assert_eq!(event["requestContext"]["disconnectStatusCode"], 1000);
    gateway.shutdown().await;
    assert_eq!(lifecycle(backend.drain()), Vec::<String>::new());
}

/// A token is single use, and one that matches nothing is refused with 4410; a client that
/// does not ask for resume gets no frame and its drop ends the connection as before.
#[tokio::test]
async fn tokens_are_single_use_and_unknown_ones_are_refused() {
    let (mut backend, gateway) = gateway("").await;
    let (client, frame) = open(&gateway.ws_url).await;
    backend.next_event_for("$connect").await;
    let mut forged = frame.clone();
    forged["token"] = json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    refused(&gateway.ws_url, &forged, 4410).await;
    client.drop_tcp();
    let (client, _) = resume(&gateway.ws_url, &frame, 0).await;
    refused(&gateway.ws_url, &frame, 4410).await;
    let metrics = gateway.metrics().await;
    assert_eq!(
        metric(&metrics, "sockway_resumes_total{outcome=\"unknown_token\"}"),
        2.0
    );

    let mut plain = gateway.connect().await;
    backend.next_event_for("$connect").await;
    plain.send_text("first").await;
    assert_eq!(plain.next_text().await, "first", "no resume frame");
    plain.drop_tcp();
    let event = backend.next_event_for("$disconnect").await;
    assert_eq!(
        event["requestContext"]["disconnectReason"],
        "Connection lost"
    );
    client.close(1000, "").await;
    backend.next_event_for("$disconnect").await;
    gateway.shutdown().await;
}

/// The `$resume` route hears of a resume, with the connection's context; `$connect` is not
/// called again.
#[tokio::test]
async fn the_resume_route_is_told() {
    let (mut backend, gateway) = gateway("[routes.\"$resume\"]\nintegration = \"backend\"\n").await;
    let (client, frame) = open(&gateway.ws_url).await;
    let connect = backend.next_event_for("$connect").await;
    client.drop_tcp();
    let (client, _) = resume(&gateway.ws_url, &frame, 0).await;
    let event = backend.next_event_for("$resume").await;
    let context = &event["requestContext"];
    assert_eq!(context["eventType"], "RESUME");
    assert_eq!(context["routeKey"], "$resume");
    assert_eq!(context["connectionId"], frame["connectionId"]);
    assert_eq!(
        context["connectedAt"],
        connect["requestContext"]["connectedAt"]
    );
    let protocol = event["headers"]["Sec-WebSocket-Protocol"].as_str().unwrap();
    assert_eq!(protocol, RESUME, "the token is not passed on");
    drop(client);
    gateway.shutdown().await;
}

/// With an authorizer, a resume runs it again and must name the same principal: another one
/// is refused with 4403 and the connection stays suspended for its own client.
#[tokio::test]
async fn a_resume_by_another_principal_is_refused() {
    let mut authorizer = MockBackend::start().await;
    authorizer.respond_with(|request: &RecordedRequest| {
        let event = request.json();
        let user = event["queryStringParameters"]["user"]
            .as_str()
            .unwrap_or("nobody");
        MockResponse::json(json!({
            "principalId": user,
            "policyDocument": {"Version": "2012-10-17", "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "*"}
            ]},
        }))
    });
    let mut backend = MockBackend::start().await;
    let toml = config(
        &backend,
        &format!(
            "[resume]\n[authorizer]\ntype = \"http\"\nuri = \"{}\"\nidentity_sources = [\"route.request.querystring.user\"]\n",
            authorizer.url("/authorize")
        ),
    );
    let gateway = TestGateway::start(&toml).await;
    let ann = format!("{}?user=ann", gateway.ws_url);
    let (client, frame) = open(&ann).await;
    let connection_id = frame["connectionId"].as_str().unwrap().to_owned();
    backend.next_event_for("$connect").await;
    client.drop_tcp();
    until_suspended(&gateway, &connection_id).await;
    refused(&format!("{}?user=bob", gateway.ws_url), &frame, 4403).await;
    let (mut client, _) = resume(&ann, &frame, 0).await;
    let event = authorizer.next_request().await.json();
    assert_eq!(event["requestContext"]["connectionId"], connection_id);
    let metrics = gateway.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "sockway_resumes_total{outcome=\"identity_mismatch\"}"
        ),
        1.0
    );
    client.send_text("still ann").await;
    let message = backend.next_event_for("$default").await;
    assert_eq!(
        message["requestContext"]["authorizer"]["principalId"],
        "ann"
    );
    assert_eq!(client.next_text().await, "still ann");
    drop(client);
    gateway.shutdown().await;
}

/// Two nodes of a cluster with `[resume]`, and their configuration.
async fn cluster_pair(
    redis: &RedisServer,
    window: &str,
) -> (MockBackend, TestGateway, TestGateway, String) {
    let backend = MockBackend::start().await;
    let text = config(
        &backend,
        &format!(
            "[resume]\nwindow = \"{window}\"\n[cluster]\nredis_url = \"{}\"\nnode_timeout = \"2s\"\n",
            redis.url()
        ),
    );
    let a = TestGateway::start(&text).await;
    let b = TestGateway::start(&text).await;
    (backend, a, b, text)
}

/// In cluster mode a client whose reconnect lands on another node resumes there: the
/// connection moves with its queue, pushes sent through either node meanwhile arrive once and
/// in order (each sender's), with the same id and no `$connect` or `$disconnect`; then it is
/// served by its new node, reached through either, and past the window its new node delivers
/// one `$disconnect`.
#[tokio::test]
async fn in_a_cluster_a_resume_on_another_node_moves_the_connection_there() {
    let redis = RedisServer::start().await;
    let (mut backend, a, b, _) = cluster_pair(&redis, "3s").await;
    let (mut client, frame) = open(&a.ws_url).await;
    let connection_id = frame["connectionId"].as_str().unwrap().to_owned();
    backend.next_event_for("$connect").await;

    let through_a = Arc::new(AtomicUsize::new(0));
    let through_b = Arc::new(AtomicUsize::new(0));
    let pusher_a = push_as("a", &a, &connection_id, 200, through_a.clone());
    let pusher_b = push_as("b", &b, &connection_id, 200, through_b.clone());
    let mut received = Vec::new();
    read(&mut client, &mut received, 20).await;
    until_acknowledged(&through_a, 40).await;
    client.drop_tcp();
    // GET through the node that does not hold it reports it suspended.
    until_suspended(&b, &connection_id).await;

    let (mut client, resumed) = resume(&b.ws_url, &frame, received.len()).await;
    assert_eq!(resumed["missed"], 0, "{resumed}");
    let acknowledged_a = pusher_a.await.unwrap();
    let acknowledged_b = pusher_b.await.unwrap();
    read(
        &mut client,
        &mut received,
        acknowledged_a.len() + acknowledged_b.len(),
    )
    .await;
    let from = |prefix: char| -> Vec<String> {
        received
            .iter()
            .filter(|text| text.starts_with(prefix))
            .cloned()
            .collect()
    };
    assert_eq!(
        from('a'),
        acknowledged_a,
        "every push through A once, in order"
    );
    assert_eq!(
        from('b'),
        acknowledged_b,
        "every push through B once, in order"
    );

    // Served by B now, reached through either node.
    client.send_text("after the move").await;
    assert_eq!(client.next_text().await, "after the move");
    for node in [&a, &b] {
        let (status, _, body) = http_request("GET", &node.connection_url(&connection_id), "").await;
        assert_eq!(status, 200);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_ne!(body["status"], "suspended", "{body}");
        let (status, _, _) =
            http_request("POST", &node.connection_url(&connection_id), "late").await;
        assert_eq!(status, 200);
        assert_eq!(client.next_text().await, "late");
    }

    // Lost again, not resumed: its new node ends it once, past the window.
    client.drop_tcp();
    let event = backend.next_event_for("$disconnect").await;
    assert_eq!(event["requestContext"]["connectionId"], connection_id);
    assert_eq!(
        event["requestContext"]["disconnectReason"],
        "Connection lost; not resumed within the resume window"
    );
    let (status, _, _) = http_request("POST", &a.connection_url(&connection_id), "gone").await;
    assert_eq!(status, 410);
    a.shutdown().await;
    b.shutdown().await;
    assert_eq!(
        lifecycle(backend.drain()),
        Vec::<String>::new(),
        "no other $connect or $disconnect"
    );
}

/// A connection that moved keeps being reached by callers on a third node through the node
/// that assigned its id, and still once that node is gone (the move is recorded in Redis).
#[tokio::test]
async fn in_a_cluster_a_moved_connection_outlives_the_node_that_assigned_its_id() {
    let redis = RedisServer::start().await;
    let (mut backend, a, b, text) = cluster_pair(&redis, "30s").await;
    let c = TestGateway::start(&text).await;
    let (client, frame) = open(&a.ws_url).await;
    let connection_id = frame["connectionId"].as_str().unwrap().to_owned();
    backend.next_event_for("$connect").await;
    let membership = format!("{}/groups/room", c.connection_url(&connection_id));
    let (status, _, _) = http_request("PUT", &membership, "").await;
    assert_eq!(status, 204);
    client.drop_tcp();
    until_suspended(&a, &connection_id).await;
    let (mut client, _) = resume(&b.ws_url, &frame, 0).await;
    let (status, _, _) = http_request("POST", &c.connection_url(&connection_id), "via c").await;
    assert_eq!(status, 200);
    assert_eq!(client.next_text().await, "via c");
    // Its groups moved with it.
    let (status, _, body) = http_request(
        "POST",
        &format!("{}/@groups/room", c.management_url),
        "to room",
    )
    .await;
    assert_eq!(status, 200);
    let tally: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(tally["delivered"], 1, "{tally}");
    assert_eq!(client.next_text().await, "to room");

    a.shutdown().await;
    let (status, _, _) = http_request("POST", &c.connection_url(&connection_id), "a is gone").await;
    assert_eq!(status, 200);
    assert_eq!(client.next_text().await, "a is gone");
    client.close(1000, "done").await;
    let event = backend.next_event_for("$disconnect").await;
    assert_eq!(event["requestContext"]["connectionId"], connection_id);
    let (status, _, _) = http_request("POST", &c.connection_url(&connection_id), "gone").await;
    assert_eq!(status, 410);
    b.shutdown().await;
    c.shutdown().await;
    assert_eq!(lifecycle(backend.drain()), Vec::<String>::new());
}

/// A client that notices the drop before its node does resumes on another node while the old
/// socket is still open: the connection moves, the old socket is let go.
#[tokio::test]
async fn in_a_cluster_a_resume_on_another_node_takes_over_a_socket_still_open() {
    let redis = RedisServer::start().await;
    let (mut backend, a, b, _) = cluster_pair(&redis, "30s").await;
    let (mut old, frame) = open(&a.ws_url).await;
    let connection_id = frame["connectionId"].as_str().unwrap().to_owned();
    backend.next_event_for("$connect").await;
    let (status, _, _) = http_request("POST", &a.connection_url(&connection_id), "before").await;
    assert_eq!(status, 200);
    assert_eq!(old.next_text().await, "before");

    let (mut client, resumed) = resume(&b.ws_url, &frame, 1).await;
    assert_eq!(resumed["sequence"], 1, "{resumed}");
    let (status, _, _) = http_request("POST", &a.connection_url(&connection_id), "after").await;
    assert_eq!(status, 200);
    assert_eq!(client.next_text().await, "after");
    assert!(matches!(
        tokio::time::timeout(DEADLINE, old.into_inner().next_message_or_end()).await,
        Ok(None)
    ));
    client.send_text("echo on b").await;
    assert_eq!(client.next_text().await, "echo on b");
    client.close(1000, "done").await;
    let event = backend.next_event_for("$disconnect").await;
    assert_eq!(event["requestContext"]["disconnectStatusCode"], 1000);
    a.shutdown().await;
    b.shutdown().await;
    assert_eq!(lifecycle(backend.drain()), Vec::<String>::new());
}

/// A connection that moves twice is recorded where it is now: once the node that assigned its
/// id is gone, a caller on the node it passed through still reaches it.
#[tokio::test]
async fn in_a_cluster_a_connection_that_moves_twice_stays_reachable() {
    let redis = RedisServer::start().await;
    let (mut backend, a, b, text) = cluster_pair(&redis, "30s").await;
    let c = TestGateway::start(&text).await;
    let (client, frame) = open(&a.ws_url).await;
    let connection_id = frame["connectionId"].as_str().unwrap().to_owned();
    backend.next_event_for("$connect").await;
    client.drop_tcp();
    until_suspended(&a, &connection_id).await;
    let (client, frame) = resume(&b.ws_url, &frame, 0).await;
    client.drop_tcp();
    until_suspended(&b, &connection_id).await;
    let (mut client, _) = resume(&c.ws_url, &frame, 0).await;
    let (status, _, _) = http_request("POST", &b.connection_url(&connection_id), "via b").await;
    assert_eq!(status, 200);
    assert_eq!(client.next_text().await, "via b");

    a.shutdown().await;
    let (status, _, _) = http_request("POST", &b.connection_url(&connection_id), "a is gone").await;
    assert_eq!(status, 200);
    assert_eq!(client.next_text().await, "a is gone");
    client.close(1000, "done").await;
    backend.next_event_for("$disconnect").await;
    b.shutdown().await;
    c.shutdown().await;
    assert_eq!(lifecycle(backend.drain()), Vec::<String>::new());
}

/// A resume on another node with a wrong token is refused with 4410 and leaves the connection
/// where it is; the right one still resumes it there.
#[tokio::test]
async fn in_a_cluster_a_wrong_token_moves_nothing() {
    let redis = RedisServer::start().await;
    let (mut backend, a, b, _) = cluster_pair(&redis, "30s").await;
    let (client, frame) = open(&a.ws_url).await;
    let connection_id = frame["connectionId"].as_str().unwrap().to_owned();
    backend.next_event_for("$connect").await;
    client.drop_tcp();
    until_suspended(&a, &connection_id).await;
    let mut forged = frame.clone();
    let token = frame["token"].as_str().unwrap();
    let mut raw = token.as_bytes().to_vec();
    let last = raw.len() - 1;
    raw[last] = if raw[last] == b'A' { b'B' } else { b'A' };
    forged["token"] = Value::String(String::from_utf8(raw).unwrap());
    refused(&b.ws_url, &forged, 4410).await;
    until_suspended(&a, &connection_id).await;
    let (status, _, _) = http_request("POST", &b.connection_url(&connection_id), "kept").await;
    assert_eq!(status, 200);
    let (mut client, _) = resume(&b.ws_url, &frame, 0).await;
    assert_eq!(client.next_text().await, "kept");
    client.close(1000, "done").await;
    let event = backend.next_event_for("$disconnect").await;
    assert_eq!(event["requestContext"]["disconnectStatusCode"], 1000);
    a.shutdown().await;
    b.shutdown().await;
    assert_eq!(lifecycle(backend.drain()), Vec::<String>::new());
}

/// Messages from the socket: `None` once it ended without a close frame.
trait NextOrEnd {
    async fn next_message_or_end(self) -> Option<Message>;
}

impl<S> NextOrEnd for tokio_tungstenite::WebSocketStream<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    async fn next_message_or_end(mut self) -> Option<Message> {
        use futures_util::StreamExt;
        loop {
            match self.next().await {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(message)) => return Some(message),
                Some(Err(_)) | None => return None,
            }
        }
    }
}

/// Counts the suspended connections' records and queues in Redis, as `:records * 1000 + queues`.
const SUSPENDED_KEYS: &str = "return 1000 * #redis.call('KEYS', 'sockway:*:suspended:*') \
     + #redis.call('KEYS', 'sockway:*:queue:*')";

/// Waits until Redis holds `records` suspended records and `queues` queues.
async fn until_recorded(redis: &RedisServer, records: usize, queues: usize) {
    let expected = format!(":{}", records * 1000 + queues);
    tokio::time::timeout(DEADLINE, async {
        loop {
            let found = redis.query(&["EVAL", SUSPENDED_KEYS, "0"]).await;
            if found.as_deref() == Some(expected.as_str()) {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("Redis does not hold {records} records and {queues} queues"));
}

/// In cluster mode a suspension is recorded in Redis (for survivors, should its node die),
/// posts queued meanwhile are kept there too, and a resume on the same node forgets both.
#[tokio::test]
async fn in_a_cluster_a_suspended_connection_is_recorded_until_it_resumes() {
    let redis = RedisServer::start().await;
    let (mut backend, a, b, _) = cluster_pair(&redis, "30s").await;
    let (client, frame) = open(&a.ws_url).await;
    let connection_id = frame["connectionId"].as_str().unwrap().to_owned();
    backend.next_event_for("$connect").await;
    until_recorded(&redis, 0, 0).await;
    client.drop_tcp();
    until_suspended(&a, &connection_id).await;
    until_recorded(&redis, 1, 0).await;
    // Through its node and through the other one.
    for (node, text) in [(&a, "q1"), (&b, "q2")] {
        let (status, _, _) = http_request("POST", &node.connection_url(&connection_id), text).await;
        assert_eq!(status, 200);
    }
    until_recorded(&redis, 1, 1).await;

    let (mut client, resumed) = resume(&a.ws_url, &frame, 0).await;
    assert_eq!(resumed["sequence"], 0, "{resumed}");
    assert_eq!(client.next_text().await, "q1");
    assert_eq!(client.next_text().await, "q2");
    until_recorded(&redis, 0, 0).await;
    drop(client);
    a.shutdown().await;
    b.shutdown().await;
    assert_eq!(lifecycle(backend.drain()), vec!["$disconnect".to_owned()]);
}

/// With Redis down, a suspension cannot be recorded: the connection stays suspended in its
/// node's memory and resumes there as on a single node, every acknowledged push once.
#[tokio::test]
async fn in_a_cluster_a_suspension_while_redis_is_down_resumes_on_its_node() {
    let mut redis = RedisServer::start().await;
    let (mut backend, a, b, _) = cluster_pair(&redis, "30s").await;
    let (mut client, frame) = open(&a.ws_url).await;
    let connection_id = frame["connectionId"].as_str().unwrap().to_owned();
    backend.next_event_for("$connect").await;
    let (status, _, _) = http_request("POST", &a.connection_url(&connection_id), "p0").await;
    assert_eq!(status, 200);
    assert_eq!(client.next_text().await, "p0");

    redis.stop();
    client.drop_tcp();
    until_suspended(&a, &connection_id).await;
    for text in ["p1", "p2"] {
        let (status, _, _) = http_request("POST", &a.connection_url(&connection_id), text).await;
        assert_eq!(status, 200, "{text}");
    }
    let (mut client, resumed) = resume(&a.ws_url, &frame, 1).await;
    assert_eq!(resumed["sequence"], 1, "{resumed}");
    assert_eq!(client.next_text().await, "p1");
    assert_eq!(client.next_text().await, "p2");
    client.send_text("still here").await;
    assert_eq!(client.next_text().await, "still here");
    drop(client);
    redis.restart().await;
    a.shutdown().await;
    b.shutdown().await;
    assert_eq!(lifecycle(backend.drain()), vec!["$disconnect".to_owned()]);
}
