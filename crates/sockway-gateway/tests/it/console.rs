//! The web console's HTTP side: embedded assets and their headers, sign-in against
//! `[[management.credentials]]`, the session cookie and the console header every data call
//! needs, the calls themselves against real connections, and sessions a reload ends.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use sockway_testkit::sigv4::request_with_headers;
use sockway_testkit::{MockBackend, TestGateway, http_request};

use crate::{ACCESS_KEY_ID, SECRET, config, connect, management_credentials};

const HEADER: (&str, &str) = ("x-sockway-console", "1");

/// `http://HOST:PORT` of the listener that serves the console.
fn console_base(gateway: &TestGateway) -> String {
    let running = gateway.gateway();
    let addr = running.management_addr().unwrap_or(running.local_addr());
    format!("http://{addr}")
}

type Answer = (u16, http::HeaderMap, Bytes);

async fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    request_with_headers(method, url, &headers, body).await
}

fn json(answer: &Answer) -> Value {
    serde_json::from_slice(&answer.2).unwrap_or_else(|error| {
        panic!(
            "status {}: body is not JSON ({error}): {}",
            answer.0,
            String::from_utf8_lossy(&answer.2)
        )
    })
}

fn message(answer: &Answer) -> String {
    json(answer)["message"]
        .as_str()
        .expect("error body has a message")
        .to_owned()
}

/// What the console page sends to sign in: the proof over a fresh challenge, computed as its
/// script does (HMAC-SHA256 keyed with the secret, in hex), written here independently.
fn proof(secret: &str, nonce: &str, access_key_id: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("sockway-console-sign-in\n{nonce}\n{access_key_id}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The body of a sign-in with a proof made from `secret` over `nonce`.
fn login_body(access_key_id: &str, secret: &str, nonce: &str) -> String {
    serde_json::json!({
        "accessKeyId": access_key_id,
        "nonce": nonce,
        "proof": proof(secret, nonce, access_key_id),
    })
    .to_string()
}

/// A fresh sign-in challenge.
async fn challenge(base: &str) -> String {
    let answer = request(
        "GET",
        &format!("{base}/console/api/challenge"),
        &[HEADER],
        b"",
    )
    .await;
    assert_eq!(answer.0, 200, "{}", String::from_utf8_lossy(&answer.2));
    json(&answer)["nonce"].as_str().unwrap().to_owned()
}

async fn sign_in(base: &str, access_key_id: &str, secret: &str, extra: &[(&str, &str)]) -> Answer {
    let body = login_body(access_key_id, secret, &challenge(base).await);
    let mut headers = vec![HEADER, ("content-type", "application/json")];
    headers.extend_from_slice(extra);
    request(
        "POST",
        &format!("{base}/console/api/login"),
        &headers,
        body.as_bytes(),
    )
    .await
}

/// Signs in with the right pair and returns the `Cookie` header value to send.
async fn session(base: &str) -> String {
    let answer = sign_in(base, ACCESS_KEY_ID, SECRET, &[]).await;
    assert_eq!(answer.0, 200, "{}", String::from_utf8_lossy(&answer.2));
    let set_cookie = answer.1[http::header::SET_COOKIE].to_str().unwrap();
    set_cookie.split(';').next().unwrap().to_owned()
}

async fn call(method: &str, url: &str, cookie: &str, body: &[u8]) -> Answer {
    request(method, url, &[HEADER, ("cookie", cookie)], body).await
}

#[tokio::test]
async fn console_assets_are_embedded_with_a_strict_policy() {
    let backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, &management_credentials())).await;
    let base = console_base(&gateway);

    for (path, content_type, needle) in [
        (
            "/console",
            "text/html; charset=utf-8",
            "<script src=\"/console/console.js\"",
        ),
        ("/console/", "text/html; charset=utf-8", "<title>"),
        (
            "/console/console.js",
            "text/javascript; charset=utf-8",
            "X-Sockway-Console",
        ),
        ("/console/console.css", "text/css; charset=utf-8", ":root"),
    ] {
        let (status, headers, body) = http_request("GET", &format!("{base}{path}"), "").await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert_eq!(headers["cache-control"], "no-cache", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.starts_with("default-src 'self';"), "{policy}");
        assert!(policy.contains("connect-src 'self' ws: wss:"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert!(
            String::from_utf8_lossy(&body).contains(needle),
            "{path} lacks {needle}"
        );

        // A browser revalidating its copy gets 304 without the body.
        let etag = headers["etag"].to_str().unwrap();
        let (status, _, body) = request(
            "GET",
            &format!("{base}{path}"),
            &[("if-none-match", etag)],
            b"",
        )
        .await;
        assert_eq!(status, 304, "{path}");
        assert!(body.is_empty());
    }

    // The page loads nothing from elsewhere.
    let (_, _, page) = http_request("GET", &format!("{base}/console"), "").await;
    let page = String::from_utf8_lossy(&page);
    assert!(!page.contains("http://") && !page.contains("https://"));

    let answer = http_request("GET", &format!("{base}/console/missing.js"), "").await;
    assert_eq!(answer.0, 404);
    assert_eq!(message(&answer), "Not found");
    let answer = http_request("POST", &format!("{base}/console"), "").await;
    assert_eq!(answer.0, 405);
}

#[tokio::test]
async fn console_sign_in_checks_management_credentials() {
    let backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, &management_credentials())).await;
    let base = console_base(&gateway);

    // A wrong secret, an unknown key id, a right secret of another key: each refused, slowly.
    for (access_key_id, secret) in [
        (ACCESS_KEY_ID, "wrong"),
        ("AKIANOSUCHKEYEXAMPLE", SECRET),
        ("AKIAOTHEREXAMPLE0000", SECRET),
    ] {
        let started = Instant::now();
        let answer = sign_in(&base, access_key_id, secret, &[]).await;
        assert_eq!(answer.0, 401, "{access_key_id}");
        assert_eq!(
            message(&answer),
            "Invalid access key id or secret access key"
        );
        assert!(!answer.1.contains_key(http::header::SET_COOKIE));
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "a failed sign-in is answered after a delay, took {:?}",
            started.elapsed()
        );
    }
    let (_, _, metrics) = http_request("GET", &format!("{base}/metrics"), "").await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("sockway_console_login_failures_total 3"),
        "{metrics}"
    );

    // A proof seen on the wire cannot be replayed: its nonce is used up.
    let body = login_body(ACCESS_KEY_ID, SECRET, &challenge(&base).await);
    let login = format!("{base}/console/api/login");
    let first = request("POST", &login, &[HEADER], body.as_bytes()).await;
    assert_eq!(first.0, 200);
    let replayed = request("POST", &login, &[HEADER], body.as_bytes()).await;
    assert_eq!(replayed.0, 401, "a replayed proof");

    // Sign-in needs the console header too.
    let answer = request(
        "POST",
        &format!("{base}/console/api/login"),
        &[],
        body.as_bytes(),
    )
    .await;
    assert_eq!(answer.0, 403);
    let answer = request(
        "POST",
        &format!("{base}/console/api/login"),
        &[HEADER],
        b"accessKeyId=x",
    )
    .await;
    assert_eq!(answer.0, 400);
    assert!(message(&answer).contains("accessKeyId, nonce and proof"));

    let answer = sign_in(&base, ACCESS_KEY_ID, SECRET, &[]).await;
    assert_eq!(answer.0, 200);
    assert_eq!(json(&answer)["accessKeyId"], ACCESS_KEY_ID);
    let cookie = answer.1[http::header::SET_COOKIE].to_str().unwrap();
    let (pair, attributes) = cookie.split_once("; ").unwrap();
    let token = pair.strip_prefix("sockway_console=").expect(cookie);
    assert_eq!(token.len(), 43, "256 bits in URL-safe base64: {token}");
    assert_eq!(
        attributes,
        "Path=/console; Max-Age=43200; HttpOnly; SameSite=Strict"
    );

    // Behind a TLS-terminating proxy the cookie is also Secure.
    let answer = sign_in(
        &base,
        ACCESS_KEY_ID,
        SECRET,
        &[("x-forwarded-proto", "https")],
    )
    .await;
    assert_eq!(answer.0, 200);
    assert!(
        answer.1[http::header::SET_COOKIE]
            .to_str()
            .unwrap()
            .ends_with("; Secure")
    );
}

#[tokio::test]
async fn console_calls_need_a_session_and_the_console_header() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, &management_credentials())).await;
    let base = console_base(&gateway);
    let summary_url = format!("{base}/console/api/summary");
    let (_client, _id) = connect(&gateway, &mut backend).await;

    let answer = request("GET", &summary_url, &[HEADER], b"").await;
    assert_eq!(answer.0, 401);
    assert_eq!(message(&answer), "Sign in to use the console");
    assert_eq!(answer.1["cache-control"], "no-store");
    let answer = call(
        "GET",
        &summary_url,
        "sockway_console=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        b"",
    )
    .await;
    assert_eq!(answer.0, 401);

    let cookie = session(&base).await;
    // A session without the header (what a cross-site form would send) is refused.
    let answer = request("GET", &summary_url, &[("cookie", &cookie)], b"").await;
    assert_eq!(answer.0, 403);
    assert!(message(&answer).contains("X-Sockway-Console"));
    let answer = request(
        "GET",
        &summary_url,
        &[("cookie", &cookie), ("x-sockway-console", "yes")],
        b"",
    )
    .await;
    assert_eq!(answer.0, 403);

    let answer = call("GET", &summary_url, &cookie, b"").await;
    assert_eq!(answer.0, 200);
    let summary = json(&answer);
    assert_eq!(summary["stage"], "dev");
    assert_eq!(summary["webSocketUrl"], gateway.ws_url.as_str());
    assert_eq!(summary["connectionCount"], 1);
    assert_eq!(summary["clusterMode"], false);
    assert_eq!(summary["signInRequired"], true);
    assert_eq!(summary["accessKeyId"], ACCESS_KEY_ID);

    // The management API itself still wants signatures: a console cookie is not one.
    let answer = request(
        "GET",
        &format!("{}/@connections", gateway.management_url),
        &[HEADER, ("cookie", &cookie)],
        b"",
    )
    .await;
    assert_eq!(answer.0, 403);
}

#[tokio::test]
async fn console_logout_ends_the_session() {
    let backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, &management_credentials())).await;
    let base = console_base(&gateway);
    let summary_url = format!("{base}/console/api/summary");
    let cookie = session(&base).await;
    let other = session(&base).await;
    assert_eq!(call("GET", &summary_url, &cookie, b"").await.0, 200);

    let answer = call("POST", &format!("{base}/console/api/logout"), &cookie, b"").await;
    assert_eq!(answer.0, 204);
    assert_eq!(
        answer.1[http::header::SET_COOKIE],
        "sockway_console=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict"
    );
    assert_eq!(call("GET", &summary_url, &cookie, b"").await.0, 401);
    // Other sessions live on.
    assert_eq!(call("GET", &summary_url, &other, b"").await.0, 200);
}

/// A reload that removes a key from `[[management.credentials]]` ends the console sessions
/// signed in with it; the other key's sessions live on.
#[tokio::test]
async fn a_reload_that_removes_a_key_ends_its_console_sessions() {
    let backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, &management_credentials())).await;
    let base = console_base(&gateway);
    let summary_url = format!("{base}/console/api/summary");
    let cookie = session(&base).await;
    let other = sign_in(
        &base,
        "AKIAOTHEREXAMPLE0000",
        "other-secret-of-the-first-key",
        &[],
    )
    .await;
    assert_eq!(other.0, 200);
    let other = other.1[http::header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let only_the_first = "\n[[management.credentials]]\naccess_key_id = \"AKIAOTHEREXAMPLE0000\"\nsecret_access_key = \"other-secret-of-the-first-key\"\n";
    gateway
        .reload(&config(&backend, only_the_first))
        .await
        .unwrap();
    assert_eq!(call("GET", &summary_url, &cookie, b"").await.0, 401);
    assert_eq!(call("GET", &summary_url, &other, b"").await.0, 200);
    gateway.shutdown().await;
}

#[tokio::test]
async fn console_lists_inspects_messages_and_disconnects_connections() {
    let mut backend = MockBackend::start().await;
    let extra = format!(
        "{}\n[management]\nlisten = \"127.0.0.1:0\"\n",
        management_credentials()
    );
    let gateway = TestGateway::start(&config(&backend, &extra)).await;
    let base = console_base(&gateway);
    let (mut client, connection_id) = connect(&gateway, &mut backend).await;
    let cookie = session(&base).await;
    let api = format!("{base}/console/api");

    // The console is on the management listener only; the summary names the gateway's.
    let gateway_base = format!("http://{}", gateway.gateway().local_addr());
    let answer = http_request("GET", &format!("{gateway_base}/console"), "").await;
    assert_eq!(answer.0, 403);
    let summary = json(&call("GET", &format!("{api}/summary"), &cookie, b"").await);
    assert_eq!(summary["webSocketUrl"], gateway.ws_url.as_str());

    let answer = call("GET", &format!("{api}/connections"), &cookie, b"").await;
    assert_eq!(answer.0, 200);
    let list = json(&answer);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["connectionId"], connection_id.as_str());
    assert_eq!(items[0]["identity"]["sourceIp"], "127.0.0.1");
    assert!(list["nextToken"].is_null());

    // Join a group through the management API; the console's details show it.
    let management_open = request(
        "PUT",
        &format!(
            "{}/@connections/{}/groups/room-1",
            gateway.management_url,
            connection_id.replace('=', "%3D")
        ),
        &[],
        b"",
    )
    .await;
    assert_eq!(
        management_open.0, 403,
        "the management API wants a signature"
    );
    let key = sockway_testkit::sigv4::SigningKey::new(ACCESS_KEY_ID, SECRET);
    let joined = sockway_testkit::sigv4::signed_request(
        "PUT",
        &format!(
            "{}/@connections/{}/groups/room-1",
            gateway.management_url,
            connection_id.replace('=', "%3D")
        ),
        b"",
        &key,
        "us-east-1",
        std::time::SystemTime::now(),
    )
    .await;
    assert_eq!(joined.0, 204);

    let detail_url = format!("{api}/connections/{}", connection_id.replace('=', "%3D"));
    let answer = call("GET", &detail_url, &cookie, b"").await;
    assert_eq!(answer.0, 200);
    let details = json(&answer);
    assert_eq!(details["connectionId"], connection_id.as_str());
    assert_eq!(details["groups"], serde_json::json!(["room-1"]));
    assert!(details["connectedAt"].as_str().unwrap().ends_with('Z'));
    assert!(details["lastActiveAt"].is_string());
    assert_eq!(details["identity"]["sourceIp"], "127.0.0.1");

    let answer = call(
        "POST",
        &format!("{detail_url}/messages"),
        &cookie,
        "hello from the console".as_bytes(),
    )
    .await;
    assert_eq!(answer.0, 204);
    assert_eq!(client.next_text().await, "hello from the console");

    // A message routed to `$default`: its event is recorded before the reply is sent.
    client.send_text("echo me").await;
    assert_eq!(client.next_text().await, "echo me");
    let events = json(&call("GET", &format!("{api}/events?limit=10"), &cookie, b"").await);
    let items = events["items"].as_array().expect("items");
    assert!(items.len() <= 10);
    let routed = items
        .iter()
        .find(|event| event["eventType"] == "MESSAGE")
        .unwrap_or_else(|| panic!("no MESSAGE event in {events}"));
    assert_eq!(routed["routeKey"], "$default");
    assert_eq!(routed["connectionId"], connection_id.as_str());
    assert_eq!(routed["status"], 200);
    assert_eq!(routed["integrationStatus"], 200);
    assert!(routed["integrationLatencyMs"].is_u64(), "{routed}");
    assert!(routed["requestId"].is_string());
    assert!(
        items.iter().any(|event| event["eventType"] == "CONNECT"),
        "{events}"
    );
    let answer = call("GET", &format!("{api}/events?limit=0"), &cookie, b"").await;
    assert_eq!(answer.0, 400);

    let answer = call("DELETE", &detail_url, &cookie, b"").await;
    assert_eq!(answer.0, 204);
    assert_eq!(client.next_close().await.map(|(code, _)| code), Some(1000));
    backend.next_event_for("$disconnect").await;

    let answer = call("GET", &detail_url, &cookie, b"").await;
    assert_eq!(answer.0, 410);
    assert!(message(&answer).starts_with("GoneException"));
    let answer = call(
        "POST",
        &format!("{detail_url}/messages"),
        &cookie,
        b"too late",
    )
    .await;
    assert_eq!(answer.0, 410);

    let answer = call("GET", &format!("{api}/connections/not-an-id"), &cookie, b"").await;
    assert_eq!(answer.0, 400);
    assert!(message(&answer).contains("Invalid connectionId"));
    let answer = call("PUT", &detail_url, &cookie, b"").await;
    assert_eq!(answer.0, 405);
    let answer = call("GET", &format!("{api}/nothing"), &cookie, b"").await;
    assert_eq!(answer.0, 404);
}

#[tokio::test]
async fn without_credentials_the_console_is_as_open_as_the_management_api() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, "")).await;
    let base = console_base(&gateway);
    let (_client, _id) = connect(&gateway, &mut backend).await;

    let answer = request(
        "GET",
        &format!("{base}/console/api/summary"),
        &[HEADER],
        b"",
    )
    .await;
    assert_eq!(answer.0, 200);
    let summary = json(&answer);
    assert_eq!(summary["signInRequired"], false);
    assert_eq!(summary["connectionCount"], 1);
    assert!(summary["accessKeyId"].is_null());

    // The header is still required, and there is nothing to sign in to.
    let answer = request("GET", &format!("{base}/console/api/summary"), &[], b"").await;
    assert_eq!(answer.0, 403);
    let answer = request(
        "GET",
        &format!("{base}/console/api/challenge"),
        &[HEADER],
        b"",
    )
    .await;
    assert_eq!(answer.0, 400);
    assert!(message(&answer).contains("No management credentials"));
}

/// One raw HTTP/1.1 request from the loopback address `from`; returns the status.
async fn status_from(from: [u8; 4], base: &str, method: &str, path: &str, body: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = base.trim_start_matches("http://");
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((from, 0))).unwrap();
    let mut stream = socket.connect(authority.parse().unwrap()).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nX-Sockway-Console: 1\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut head))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&head[9..12]).parse().unwrap()
}

/// Four slow wrong sign-ins used to take every slot of a global gate and lock the operator
/// out: attempts are now counted per client, so one guessing address is refused (429) while
/// another signs in.
#[tokio::test]
async fn one_client_guessing_cannot_lock_others_out_of_the_console() {
    let backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, &management_credentials())).await;
    let base = console_base(&gateway);
    let wrong = |nonce: &str| login_body(ACCESS_KEY_ID, "a-wrong-guess", nonce);
    let mut guesses = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let nonce = challenge(&base).await;
        let body = wrong(&nonce);
        let base = base.clone();
        guesses.spawn(async move {
            status_from([127, 0, 0, 2], &base, "POST", "/console/api/login", &body).await
        });
    }
    while let Some(status) = guesses.join_next().await {
        assert_eq!(status.unwrap(), 401);
    }
    let nonce = challenge(&base).await;
    let status = status_from(
        [127, 0, 0, 2],
        &base,
        "POST",
        "/console/api/login",
        &wrong(&nonce),
    )
    .await;
    assert_eq!(status, 429, "the guessing client is out of attempts");

    let right = login_body(ACCESS_KEY_ID, SECRET, &challenge(&base).await);
    let status = status_from([127, 0, 0, 3], &base, "POST", "/console/api/login", &right).await;
    assert_eq!(status, 200, "another client signs in");
    gateway.shutdown().await;
}
