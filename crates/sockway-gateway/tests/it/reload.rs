//! Reloading a running gateway: a route's integration and throttle change for new messages
//! while connections stay open and no message or push is lost; a configuration that does not
//! load, or that changes what only a restart can change, is refused and the running one stays;
//! origins and the authorizer apply to new connections only; the access log changes
//! destination without losing a line; unchanged buckets are kept; caps change in place.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use sockway_gateway::ReloadError;
use sockway_gateway::client::{ConnectionId, ManagementClient};
use sockway_testkit::{
    ConfigFile, DEADLINE, MockBackend, MockResponse, RecordedRequest, RedisServer, TestGateway,
    WsClient, connect, connect_with_headers, http_request, metric,
};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite;

use crate::access_log::{access_log_section, log_file, read_json_lines};
use crate::{config, connect as connect_client};

/// Clients sending messages in a loop during the reloads.
const CLIENTS: usize = 16;

/// Route responses every stage of the load test waits for before the next reload.
const ANSWERS_PER_STAGE: u64 = 40;

/// A backend named `name` that answers a message with `{name}|{connectionId}|{body}` as the
/// route response, after `delay` (so that reloads overlap integration calls under way).
async fn named_backend(name: &'static str, delay: Duration) -> MockBackend {
    let backend = MockBackend::start().await;
    backend.respond_with(move |request: &RecordedRequest| {
        let event = request.json();
        let body = format!(
            "{name}|{}|{}",
            event["requestContext"]["connectionId"]
                .as_str()
                .unwrap_or(""),
            event["body"].as_str().unwrap_or("")
        );
        MockResponse::proxy(200, Some(&body)).delayed(delay)
    });
    backend
}

/// `$connect` and `$disconnect` on `lifecycle`; `sendmessage`, two-way and throttled at `rate`
/// per second (never reached in these tests), on `work`.
fn load_config(lifecycle: &MockBackend, work: &MockBackend, rate: u32) -> String {
    format!(
        r#"
[gateway]
stage = "dev"
api_id = "a1b2c3d4e5"

[routes."$connect"]
integration = "lifecycle"
[routes."$disconnect"]
integration = "lifecycle"
[routes.sendmessage]
integration = "work"
route_response = true
throttling_rate_limit = {rate}
throttling_burst_limit = {rate}

[integrations.lifecycle]
type = "http"
uri = "{lifecycle}"
[integrations.work]
type = "http"
uri = "{work}"
"#,
        lifecycle = lifecycle.url("/lifecycle"),
        work = work.url("/work"),
    )
}

/// What one client saw by the end of the load test.
#[derive(Debug)]
struct ClientReport {
    client: WsClient,
    /// Messages it sent, each of which got its route response.
    answered: u64,
    /// Which backend answered its last message, sent after the last reload.
    last_answer_from: String,
    /// The pushes it received, in order, the end marker left out.
    pushes: Vec<String>,
}

/// One client of the load test: sends `sendmessage` with a counter and reads until its route
/// response (keeping the pushes that arrive meanwhile), until `stop`; then sends one more
/// message and reads until the end marker the test pushes last.
async fn run_client(
    mut client: WsClient,
    stop: Arc<AtomicBool>,
    answers: watch::Sender<u64>,
    connection_id: tokio::sync::oneshot::Sender<String>,
) -> ClientReport {
    let mut connection_id = Some(connection_id);
    let mut pushes = Vec::new();
    let mut answered = 0;
    let mut last_answer_from = String::new();
    let mut finishing = false;
    loop {
        if stop.load(Ordering::Acquire) {
            if finishing {
                break;
            }
            finishing = true;
        }
        let sent = format!(r#"{{"action":"sendmessage","n":{answered}}}"#);
        client.send_text(&sent).await;
        loop {
            let text = client.next_text().await;
            if text.starts_with("push|") {
                pushes.push(text);
                continue;
            }
            let mut parts = text.splitn(3, '|');
            let (from, id, body) = (
                parts.next().unwrap().to_owned(),
                parts.next().expect("a backend's answer").to_owned(),
                parts.next().expect("a backend's answer"),
            );
            assert_eq!(body, sent, "the answer to this message, in order");
            if let Some(sender) = connection_id.take() {
                sender.send(id).unwrap();
            }
            last_answer_from = from;
            break;
        }
        answered += 1;
        answers.send_modify(|count| *count += 1);
    }
    loop {
        let text = client.next_text().await;
        if text == "push|end" {
            break;
        }
        assert!(text.starts_with("push|"), "only pushes are left: {text}");
        pushes.push(text);
    }
    ClientReport {
        client,
        answered,
        last_answer_from,
        pushes,
    }
}

/// Waits until `answers` counts at least `target` route responses.
async fn answers_reach(answers: &mut watch::Receiver<u64>, target: u64) {
    tokio::time::timeout(DEADLINE, answers.wait_for(|count| *count >= target))
        .await
        .unwrap_or_else(|_| panic!("{target} route responses within {DEADLINE:?}"))
        .expect("clients running");
}

#[tokio::test]
async fn reloads_under_load_drop_no_connection_and_lose_no_message_or_push() {
    let mut lifecycle = MockBackend::start().await;
    let mut backend_a = named_backend("A", Duration::from_millis(3)).await;
    let mut backend_b = named_backend("B", Duration::ZERO).await;
    let gateway = TestGateway::start(&load_config(&lifecycle, &backend_a, 100_000)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (answers, mut answered) = watch::channel(0u64);
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..CLIENTS {
        let (id_sender, id) = tokio::sync::oneshot::channel();
        let client = gateway.connect().await;
        clients.push(tokio::spawn(run_client(
            client,
            stop.clone(),
            answers.clone(),
            id_sender,
        )));
        ids.push(id);
    }
    let mut connection_ids = Vec::new();
    for id in ids {
        let id = tokio::time::timeout(DEADLINE, id).await.unwrap().unwrap();
        connection_ids.push(ConnectionId::parse(&id).unwrap());
    }

    // A backend pushing to every connection in rounds, through the reloads; it keeps what was
    // answered 200, per connection.
    let (pushing, stop_pushing) = watch::channel(false);
    let (rounds, mut pushed) = watch::channel(0u64);
    let pusher = {
        let ids = connection_ids.clone();
        let client = ManagementClient::new(&gateway.root_url(), "dev").unwrap();
        tokio::spawn(async move {
            let mut accepted: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut round = 0u64;
            while !*stop_pushing.borrow() {
                for (index, id) in ids.iter().enumerate() {
                    let payload = format!("push|{index}|{round}");
                    // A full queue (429) is a push the backend knows was not delivered.
                    if client.post_to_connection(id, payload.clone()).await.is_ok() {
                        accepted.entry(id.to_string()).or_default().push(payload);
                    }
                }
                round += 1;
                rounds.send_replace(round);
            }
            accepted
        })
    };
    let rounds_reach = |pushed: &mut watch::Receiver<u64>, target: u64| {
        let mut pushed = pushed.clone();
        async move {
            tokio::time::timeout(DEADLINE, pushed.wait_for(|round| *round >= target))
                .await
                .unwrap_or_else(|_| panic!("{target} push rounds within {DEADLINE:?}"))
                .expect("the pusher runs");
        }
    };

    // Reloads while both run, each after more route responses and two more push rounds: the
    // route moves between the two backends and its throttle changes; the last one changes the
    // throttle alone.
    let stages = [
        (&backend_b, 200_000),
        (&backend_a, 100_000),
        (&backend_b, 200_000),
        (&backend_a, 100_000),
        (&backend_b, 200_000),
        (&backend_b, 300_000),
    ];
    let mut target = *answered.borrow() + ANSWERS_PER_STAGE;
    let mut round_target = 2;
    for (work, rate) in stages {
        answers_reach(&mut answered, target).await;
        rounds_reach(&mut pushed, round_target).await;
        let outcome = gateway
            .reload(&load_config(&lifecycle, work, rate))
            .await
            .expect("the reload is put in place");
        assert!(
            outcome
                .changes
                .contains(&r#"routes."sendmessage""#.to_owned()),
            "{outcome:?}"
        );
        target = *answered.borrow() + ANSWERS_PER_STAGE;
        round_target = *pushed.borrow() + 2;
    }
    answers_reach(&mut answered, target).await;
    rounds_reach(&mut pushed, round_target).await;
    stop.store(true, Ordering::Release);
    pushing.send_replace(true);

    let accepted = tokio::time::timeout(DEADLINE, pusher)
        .await
        .unwrap()
        .unwrap();
    let management = ManagementClient::new(&gateway.root_url(), "dev").unwrap();
    for id in &connection_ids {
        management
            .post_to_connection(id, "push|end")
            .await
            .expect("the end marker is queued");
    }
    let mut total_answered = 0;
    let mut total_pushes = 0;
    let mut open = Vec::new();
    for (client, id) in clients.into_iter().zip(&connection_ids) {
        let report = tokio::time::timeout(DEADLINE, client)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            report.last_answer_from, "B",
            "a message sent after the last reload reaches the new integration"
        );
        let expected = accepted.get(id.as_str()).cloned().unwrap_or_default();
        assert_eq!(
            report.pushes, expected,
            "every push answered 200 arrived once, in order"
        );
        total_answered += report.answered;
        total_pushes += report.pushes.len();
        open.push(report.client);
    }
    assert!(
        total_pushes >= CLIENTS * 7,
        "pushes ran through the reloads: {total_pushes}"
    );
    assert!(total_answered >= ANSWERS_PER_STAGE * 7);

    // No connection was dropped: all are open, and no `$disconnect` was delivered.
    assert_eq!(gateway.gateway().connection_count(), CLIENTS);
    let disconnects = lifecycle
        .drain()
        .into_iter()
        .filter(|request| request.route_key() == "$disconnect")
        .count();
    assert_eq!(disconnects, 0);
    // Both backends served messages.
    assert!(!backend_a.drain().is_empty());
    assert!(!backend_b.drain().is_empty());
    let metrics = gateway.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"sockway_config_reloads_total{outcome="applied"}"#
        ),
        6.0
    );
    assert_eq!(
        metric(
            &metrics,
            r#"MessageCount_total{stage="dev",route="sendmessage",direction="in"}"#
        ),
        total_answered as f64,
        "the route's counters carried on across the reloads"
    );
    drop(open);
    gateway.shutdown().await;
}

/// A gateway reading `file`, with a route `ping` to a mock that answers `pong`.
const PONG: &str = r#"
[routes.ping]
integration = "pong"
route_response = true
[integrations.pong]
type = "mock"
status_code = 200
body = "pong"
"#;

async fn ping(client: &mut WsClient) -> String {
    client.send_text(r#"{"action":"ping"}"#).await;
    client.next_text().await
}

#[tokio::test]
async fn a_config_that_does_not_load_is_refused_with_its_problems_and_the_old_routes_serve() {
    let file = ConfigFile::new("reload-invalid", PONG);
    let gateway = TestGateway::start_from_file(&file.path).await;
    let mut client = gateway.connect().await;
    assert_eq!(ping(&mut client).await, "pong");

    let broken = PONG.replace("integration = \"pong\"", "integration = \"pang\"");
    std::fs::write(&file.path, &broken).unwrap();
    // The text `sockway validate` prints: the same loader's error.
    let expected = sockway_gateway::config::Config::load(&file.path)
        .unwrap_err()
        .to_string();
    assert!(expected.contains("routes.ping.integration"), "{expected}");

    let refused = gateway.gateway().reload_from_source().await.unwrap_err();
    assert!(
        matches!(&refused, ReloadError::Invalid(text) if *text == expected),
        "{refused:?}"
    );
    // The management call answers the same text.
    let (status, headers, body) =
        http_request("POST", &format!("{}/@reload", gateway.management_url), "").await;
    crate::check_error(status, &headers, 400, "BadRequestException");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["message"], expected.as_str());

    // The running configuration stays, for the open connection and for a new one.
    assert_eq!(ping(&mut client).await, "pong");
    let mut fresh = gateway.connect().await;
    assert_eq!(ping(&mut fresh).await, "pong");
    let metrics = gateway.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"sockway_config_reloads_total{outcome="invalid"}"#
        ),
        2.0
    );
    assert_eq!(
        metric(&metrics, "sockway_config_last_reload_successful"),
        0.0
    );

    // Fixed, the file reloads through the management call.
    std::fs::write(
        &file.path,
        PONG.replace("body = \"pong\"", "body = \"pong again\""),
    )
    .unwrap();
    let (status, _, body) =
        http_request("POST", &format!("{}/@reload", gateway.management_url), "").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["changes"], json!(["integrations.pong"]));
    assert_eq!(ping(&mut client).await, "pong again");
    let metrics = gateway.metrics().await;
    assert_eq!(
        metric(&metrics, "sockway_config_last_reload_successful"),
        1.0
    );
    assert_eq!(
        metric(&metrics, "sockway_config_hash"),
        body["configHash"].as_f64().unwrap()
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn changing_a_listen_address_or_the_cluster_is_refused_naming_the_key() {
    let redis = RedisServer::start().await;
    let cluster = format!("[cluster]\nredis_url = \"{}\"\n", redis.url());
    let file = ConfigFile::new("reload-restart", &format!("{PONG}{cluster}"));
    let gateway = TestGateway::start_from_file(&file.path).await;
    let mut client = gateway.connect().await;

    let moved = format!("[gateway]\nlisten = \"127.0.0.2:9\"\n{PONG}{cluster}");
    std::fs::write(&file.path, &moved).unwrap();
    // The source puts the listener on port 0 as the gateway runs; a changed address in the
    // file reaches the check through a config given in hand.
    let mut config = sockway_gateway::config::Config::load(&file.path).unwrap();
    let refused = gateway.gateway().reload(config.clone()).await.unwrap_err();
    let ReloadError::RestartRequired(keys) = &refused else {
        panic!("{refused:?}");
    };
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].key, "gateway.listen");
    assert!(
        refused.to_string().starts_with(
            "gateway.listen: cannot change without a restart (running with 127.0.0.1:0, \
             the configuration says 127.0.0.2:9)"
        ),
        "{refused}"
    );

    // The cluster's settings: refused through the management call, with 409.
    let timeout = format!("{PONG}{cluster}node_timeout = \"30s\"\n");
    std::fs::write(&file.path, &timeout).unwrap();
    let (status, headers, body) =
        http_request("POST", &format!("{}/@reload", gateway.management_url), "").await;
    crate::check_error(status, &headers, 409, "ConflictException");
    let body: Value = serde_json::from_slice(&body).unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with("cluster.node_timeout: cannot change without a restart"),
        "{message}"
    );
    assert!(message.contains("cluster.heartbeat_interval"), "{message}");
    assert!(!message.contains(&redis.url()), "no Redis URL is shown");

    // Leaving the cluster, likewise; and nothing changed meanwhile.
    config.cluster = None;
    config.gateway.listen = "127.0.0.1:0".parse().unwrap();
    let refused = gateway.gateway().reload(config).await.unwrap_err();
    assert!(
        refused
            .to_string()
            .starts_with("cluster: cannot change without a restart"),
        "{refused}"
    );
    assert_eq!(ping(&mut client).await, "pong");
    assert_eq!(
        metric(
            &gateway.metrics().await,
            r#"sockway_config_reloads_total{outcome="restart_required"}"#
        ),
        3.0
    );
    gateway.shutdown().await;
}

/// An HTTP authorizer on `authorizer` that allows the token `good` (principal `reloaded`).
fn token_authorizer(authorizer: &MockBackend) -> String {
    authorizer.respond_with(|request: &RecordedRequest| {
        let event = request.json();
        match event["queryStringParameters"]["token"].as_str() {
            Some("good") => MockResponse::json(json!({
                "principalId": "reloaded",
                "policyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Action": "execute-api:Invoke",
                    "Effect": "Allow",
                    "Resource": event["methodArn"],
                }]},
            })),
            _ => MockResponse::status(401, "no"),
        }
    });
    format!(
        "[authorizer]\ntype = \"http\"\nuri = \"{}\"\nidentity_sources = [\"route.request.querystring.token\"]\n",
        authorizer.url("/authorize")
    )
}

fn refusal_status(result: Result<WsClient, tungstenite::Error>) -> u16 {
    match result {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn origins_and_the_authorizer_apply_to_new_connections_and_open_ones_stay() {
    let mut backend = MockBackend::start().await;
    let authorizer = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, "")).await;
    let old_origin = [("Origin", "https://old.example.com")];
    let mut open = connect_with_headers(&gateway.ws_url, &old_origin)
        .await
        .unwrap();
    backend.next_event_for("$connect").await;

    let reloaded = config(&backend, &token_authorizer(&authorizer)).replacen(
        "api_id = \"a1b2c3d4e5\"\n",
        "api_id = \"a1b2c3d4e5\"\nallowed_origins = [\"https://new.example.com\"]\n",
        1,
    );
    let outcome = gateway.reload(&reloaded).await.unwrap();
    assert_eq!(
        outcome.changes,
        ["gateway", r#"routes."$connect""#, "authorizer"],
        "an authorizer is the `$connect` route's authorization type"
    );

    // The open connection, from an origin no longer allowed and without a token, stays and is
    // served; its events carry no authorizer context.
    open.send_text(r#"{"action":"sendmessage","from":"open"}"#)
        .await;
    let event = backend.next_event_for("sendmessage").await;
    assert!(event["requestContext"]["authorizer"].is_null(), "{event}");
    assert_eq!(ping(&mut open).await, r#"{"pong":true}"#);

    // New connections meet the new origin list, then the new authorizer.
    let url = format!("{}?token=good", gateway.ws_url);
    assert_eq!(
        refusal_status(connect_with_headers(&url, &old_origin).await),
        403
    );
    let new_origin = [("Origin", "https://new.example.com")];
    assert_eq!(
        refusal_status(connect_with_headers(&gateway.ws_url, &new_origin).await),
        401
    );
    let _authorized = connect_with_headers(&url, &new_origin).await.unwrap();
    let event = backend.next_event_for("$connect").await;
    assert_eq!(
        event["requestContext"]["authorizer"]["principalId"],
        "reloaded"
    );
    assert_eq!(gateway.gateway().connection_count(), 2);
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_changed_access_log_destination_takes_the_lines_after_it_and_loses_none() {
    let (_first_directory, first) = log_file("reload-first");
    let (_second_directory, second) = log_file("reload-second");
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, &access_log_section(&first, None))).await;
    let (mut client, _) = connect_client(&gateway, &mut backend).await;
    for _ in 0..3 {
        assert_eq!(ping(&mut client).await, r#"{"pong":true}"#);
    }
    gateway
        .reload(&config(&backend, &access_log_section(&second, None)))
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(ping(&mut client).await, r#"{"pong":true}"#);
    }
    // The same destination again: the file is opened anew (as after a rotation), and the
    // lines keep coming.
    let outcome = gateway
        .reload(&config(&backend, &access_log_section(&second, None)))
        .await
        .unwrap();
    assert!(outcome.changes.is_empty(), "{outcome:?}");
    for _ in 0..3 {
        assert_eq!(ping(&mut client).await, r#"{"pong":true}"#);
    }
    client.close(1000, "done").await;
    backend.next_event_for("$disconnect").await;
    gateway.shutdown().await;

    let kinds = |path: &str| {
        read_json_lines(path)
            .iter()
            .map(|line| line["eventType"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(kinds(&first), ["CONNECT", "MESSAGE", "MESSAGE", "MESSAGE"]);
    let mut expected = vec!["MESSAGE"; 6];
    expected.push("DISCONNECT");
    assert_eq!(kinds(&second), expected);
}

#[tokio::test]
async fn a_reload_keeps_a_route_bucket_it_did_not_change_and_replaces_one_it_did() {
    let throttle = |burst: u32| {
        format!(
            "[routes.slow]\nintegration = \"pong\"\nroute_response = true\nthrottling_rate_limit = 0.001\nthrottling_burst_limit = {burst}\n"
        )
    };
    let (backend, gateway, mut client, _) = crate::connected(&throttle(2)).await;
    async fn send_slow(client: &mut WsClient) -> String {
        client.send_text(r#"{"action":"slow"}"#).await;
        client.next_text().await
    }
    assert_eq!(send_slow(&mut client).await, r#"{"pong":true}"#);
    assert_eq!(send_slow(&mut client).await, r#"{"pong":true}"#);
    assert!(send_slow(&mut client).await.contains("Too Many Requests"));

    // Another route added, this one unchanged: its bucket is still empty.
    let unrelated = format!("{}[routes.other]\nintegration = \"pong\"\n", throttle(2));
    let outcome = gateway.reload(&config(&backend, &unrelated)).await.unwrap();
    assert_eq!(outcome.changes, [r#"routes."other""#]);
    assert!(send_slow(&mut client).await.contains("Too Many Requests"));

    // A new burst is a new bucket.
    let outcome = gateway
        .reload(&config(&backend, &throttle(3)))
        .await
        .unwrap();
    assert_eq!(outcome.changes, [r#"routes."other""#, r#"routes."slow""#]);
    for _ in 0..3 {
        assert_eq!(send_slow(&mut client).await, r#"{"pong":true}"#);
    }
    assert!(send_slow(&mut client).await.contains("Too Many Requests"));
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_lower_connection_cap_refuses_new_connections_and_closes_none() {
    let (mut backend, gateway, mut first, _) = crate::connected("").await;
    let (second, _) = connect_client(&gateway, &mut backend).await;
    gateway
        .reload(&config(&backend, "[limits]\nmax_connections = 1\n"))
        .await
        .unwrap();
    assert_eq!(refusal_status(connect(&gateway.ws_url).await), 503);
    assert_eq!(ping(&mut first).await, r#"{"pong":true}"#);
    drop(second);
    // Once one has closed, the cap of one still holds the remaining one.
    backend.next_event_for("$disconnect").await;
    assert_eq!(refusal_status(connect(&gateway.ws_url).await), 503);
    gateway
        .reload(&config(&backend, "[limits]\nmax_connections = 2\n"))
        .await
        .unwrap();
    let _third = gateway.connect().await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn the_reload_call_needs_the_management_credentials() {
    let backend = MockBackend::start().await;
    let text = config(&backend, &crate::management_credentials());
    let file = ConfigFile::new("reload-credentials", &text);
    let gateway = TestGateway::start_from_file(&file.path).await;
    let url = format!("{}/@reload", gateway.management_url);
    let (status, headers, _) = http_request("POST", &url, "").await;
    crate::check_error(status, &headers, 403, "MissingAuthenticationTokenException");
    let (status, _, body) = sockway_testkit::sigv4::signed_request(
        "POST",
        &url,
        b"",
        &sockway_testkit::sigv4::SigningKey::new(crate::ACCESS_KEY_ID, crate::SECRET),
        "us-east-1",
        std::time::SystemTime::now(),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (status, headers, _) = http_request("GET", &url, "").await;
    assert_eq!(status, 403, "{headers:?}");
    gateway.shutdown().await;
}
