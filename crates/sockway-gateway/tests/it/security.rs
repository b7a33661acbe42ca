//! Attacks from the security review (issue 14), each reproduced with a real client and seen
//! refused.

use std::time::{Duration, SystemTime};

use sockway_testkit::sigv4::{SigningKey, request_with_headers, signature_headers};
use sockway_testkit::{MockBackend, TestGateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config;

/// How long an answer may take.
const DEADLINE: Duration = Duration::from_secs(10);

/// Sends a valid upgrade request with `Host: host` and returns the response's status.
async fn upgrade_status(gateway: &TestGateway, host: &str) -> u16 {
    let stream = TcpStream::connect(gateway.authority()).await.unwrap();
    upgrade_on(stream, host).await.0
}

/// Sends a valid upgrade request from the loopback address `from` (a client of its own) and
/// returns the status and the socket, which holds an accepted connection open.
async fn upgrade_from(gateway: &TestGateway, from: [u8; 4]) -> (u16, TcpStream) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((from, 0))).unwrap();
    let stream = socket
        .connect(gateway.authority().parse().unwrap())
        .await
        .unwrap();
    upgrade_on(stream, &gateway.authority()).await
}

async fn upgrade_on(mut stream: TcpStream, host: &str) -> (u16, TcpStream) {
    let request = format!(
        "GET /dev HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut head))
        .await
        .expect("an answer within the deadline")
        .unwrap();
    (
        String::from_utf8_lossy(&head[9..12]).parse().unwrap(),
        stream,
    )
}

/// A client that names its own server in `Host` would have the example backend post every
/// connection id there: the gateway refuses such an upgrade before `$connect`, and the
/// `domainName` backends see is this machine's.
#[tokio::test]
async fn a_client_chosen_host_never_becomes_the_domain_name() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, "")).await;
    for host in [
        "attacker.example:9999/any/path?x=",
        "attacker.example",
        "localhost:6379",
        "127.0.0.1",
    ] {
        assert_eq!(upgrade_status(&gateway, host).await, 403, "Host: {host}");
    }
    assert!(
        backend.drain().is_empty(),
        "no refused upgrade reached $connect"
    );

    assert_eq!(upgrade_status(&gateway, &gateway.authority()).await, 101);
    let event = backend.next_event_for("$connect").await;
    assert_eq!(
        event["requestContext"]["domainName"],
        gateway.authority().as_str()
    );
    let port = gateway.authority().rsplit(':').next().unwrap().to_owned();
    assert_eq!(
        upgrade_status(&gateway, &format!("localhost:{port}")).await,
        101
    );
    let event = backend.next_event_for("$connect").await;
    assert_eq!(
        event["requestContext"]["domainName"],
        format!("localhost:{port}")
    );
    gateway.shutdown().await;
}

/// With `gateway.domain_name` (and aliases) configured, only those names are served, and the
/// `domainName` is the configured name, never the header's spelling of it.
#[tokio::test]
async fn configured_domain_names_are_the_only_names_served() {
    let mut backend = MockBackend::start().await;
    let toml = config(&backend, "").replacen(
        "api_id = \"a1b2c3d4e5\"\n",
        "api_id = \"a1b2c3d4e5\"\ndomain_name = \"ws.example.com\"\n\
         domain_name_aliases = [\"chat.example.org:8443\"]\n",
        1,
    );
    let gateway = TestGateway::start(&toml).await;
    for (host, domain_name) in [
        ("WS.Example.com:443", "ws.example.com"),
        ("ws.example.com", "ws.example.com"),
        ("chat.example.org:8443", "chat.example.org:8443"),
    ] {
        assert_eq!(upgrade_status(&gateway, host).await, 101, "Host: {host}");
        let event = backend.next_event_for("$connect").await;
        assert_eq!(
            event["requestContext"]["domainName"], domain_name,
            "Host: {host}"
        );
    }
    for host in [
        "chat.example.org",
        "ws.example.com.attacker.net",
        &gateway.authority(),
    ] {
        assert_eq!(upgrade_status(&gateway, host).await, 403, "Host: {host}");
    }
    let connects = backend
        .drain()
        .iter()
        .filter(|request| request.route_key() == "$connect")
        .count();
    assert_eq!(connects, 0, "no refused upgrade reached $connect");
    gateway.shutdown().await;
}

/// One address over its connection cap used to drain the node-wide new-connection bucket with
/// refused attempts, until nobody could connect: its refusals now cost nobody else anything.
#[tokio::test]
async fn a_client_over_its_cap_cannot_use_up_the_shared_budget() {
    let backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(
        &backend,
        "[limits]\nmax_connections_per_ip = 1\n\
         [throttling]\nconnect_rate_limit = 0.001\nconnect_burst_limit = 3\n",
    ))
    .await;
    let (status, _held) = upgrade_from(&gateway, [127, 0, 0, 2]).await;
    assert_eq!(status, 101);
    for attempt in 0..20 {
        let (status, _) = upgrade_from(&gateway, [127, 0, 0, 2]).await;
        assert_eq!(status, 429, "attempt {attempt} over the cap");
    }
    let (status, _other) = upgrade_from(&gateway, [127, 0, 0, 3]).await;
    assert_eq!(status, 101, "another client still connects");
    gateway.shutdown().await;
}

/// A client's own connection rate runs out before the node's: a fast client is refused while
/// another connects.
#[tokio::test]
async fn a_fast_client_meets_its_own_rate_first() {
    let backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(
        &backend,
        "[throttling]\nconnect_rate_limit_per_ip = 0.001\nconnect_burst_limit_per_ip = 2\n",
    ))
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let (status, stream) = upgrade_from(&gateway, [127, 0, 0, 4]).await;
        assert_eq!(status, 101);
        held.push(stream);
    }
    let (status, _) = upgrade_from(&gateway, [127, 0, 0, 4]).await;
    assert_eq!(status, 429);
    let (status, _other) = upgrade_from(&gateway, [127, 0, 0, 5]).await;
    assert_eq!(status, 101);
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains("reason=\"connect_rate_per_ip\""),
        "the refusal is counted under its own reason"
    );
    gateway.shutdown().await;
}

/// Without credentials the management API and the console serve this machine's own tools,
/// not any page the operator's browser opens: a cross-site form post, a rebinding `Host`, a
/// request relayed by a local proxy are refused; an SDK-style request is served.
#[tokio::test]
async fn loopback_mode_refuses_what_a_browser_page_or_a_proxy_sends() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, "")).await;
    let mut client = gateway.connect().await;
    backend.next_event_for("$connect").await;
    let broadcast = format!("{}/@connections", gateway.management_url);
    let port = gateway.authority().rsplit(':').next().unwrap().to_owned();
    let header = |name: &str, value: &str| (name.to_owned(), value.to_owned());

    // A page on another site posting a "simple" request (no preflight).
    let cross_site = [
        header("Content-Type", "text/plain"),
        header("Origin", "http://evil.example"),
    ];
    let (status, _, _) = request_with_headers("POST", &broadcast, &cross_site, b"pwned").await;
    assert_eq!(status, 403, "cross-site form post");
    for (name, headers) in [
        (
            "rebinding Host",
            vec![header("Host", &format!("rebind.attacker.example:{port}"))],
        ),
        (
            "forwarded by a local proxy",
            vec![header("X-Forwarded-For", "203.0.113.9")],
        ),
        (
            "cross-site fetch",
            vec![header("Sec-Fetch-Site", "cross-site")],
        ),
        (
            "a page served by this machine",
            vec![header("Origin", &format!("http://localhost:{port}"))],
        ),
    ] {
        let (status, _, _) = request_with_headers("GET", &broadcast, &headers, b"").await;
        assert_eq!(status, 403, "{name}");
    }
    // What an SDK or the admin CLI sends is served, and the refused post delivered nothing.
    let (status, _, _) = request_with_headers("POST", &broadcast, &[], b"hello").await;
    assert_eq!(status, 200);
    assert_eq!(client.next_text().await, "hello");

    // The console: its own page is served, the same calls from elsewhere are not.
    let summary = format!("{}/console/api/summary", gateway.root_url());
    let console = header("X-Sockway-Console", "1");
    let own_page = header("Origin", &format!("http://{}", gateway.authority()));
    let (status, _, _) =
        request_with_headers("GET", &summary, &[console.clone(), own_page], b"").await;
    assert_eq!(status, 200, "the console's own page");
    for headers in [
        vec![console.clone(), header("Origin", "http://evil.example")],
        vec![
            console.clone(),
            header("Host", &format!("rebind.attacker.example:{port}")),
        ],
    ] {
        let (status, _, _) = request_with_headers("GET", &summary, &headers, b"").await;
        assert_eq!(status, 403, "{headers:?}");
    }
    gateway.shutdown().await;
}

/// Opens a raw connection to the management API at `url`'s authority and sends `POST` with
/// `headers`, a declared body of 128 KiB and only its first byte: a slow body.
async fn slow_post(url: &str, headers: &[(String, String)]) -> TcpStream {
    let authority = url
        .split_once("://")
        .unwrap()
        .1
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let path = format!(
        "/{}",
        url.split_once("://").unwrap().1.split_once('/').unwrap().1
    );
    let mut stream = TcpStream::connect(&authority).await.unwrap();
    let mut request =
        format!("POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 131072\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\nx");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// The status of the response `stream` gets within `within`; `None` if none comes.
async fn status_within(stream: &mut TcpStream, within: Duration) -> Option<u16> {
    let mut head = [0u8; 12];
    match tokio::time::timeout(within, stream.read_exact(&mut head)).await {
        Ok(Ok(_)) => String::from_utf8_lossy(&head[9..12]).parse().ok(),
        _ => None,
    }
}

/// A management request whose `Authorization` names an unknown key is refused before its
/// body is read; one with a plausible signature must deliver its body in time; and a slow
/// request keeps neither the connection nor the gateway's shutdown waiting.
#[tokio::test]
async fn slow_management_bodies_cannot_hold_the_gateway() {
    let backend = MockBackend::start().await;
    let toml = config(
        &backend,
        &format!(
            "{}\n[limits]\nhandshake_timeout = \"500ms\"\nshutdown_grace = \"300ms\"\n",
            crate::management_credentials()
        ),
    );
    let gateway = TestGateway::start(&toml).await;
    let url = format!("{}/@connections", gateway.management_url);

    // An unknown access key: refused at once, the body never read.
    let stranger = SigningKey::new("AKIAUNKNOWNKEY000000", crate::SECRET);
    let headers = signature_headers(
        "POST",
        &url,
        &[],
        b"",
        &stranger,
        "us-east-1",
        "execute-api",
        SystemTime::now(),
    );
    let mut stream = slow_post(&url, &headers).await;
    assert_eq!(
        status_within(&mut stream, Duration::from_secs(2)).await,
        Some(403),
        "an unknown key is refused before the body"
    );
    let garbled = vec![(
        "Authorization".to_owned(),
        "AWS4-HMAC-SHA256 nonsense".to_owned(),
    )];
    let mut stream = slow_post(&url, &garbled).await;
    assert_eq!(
        status_within(&mut stream, Duration::from_secs(2)).await,
        Some(403),
        "a malformed Authorization is refused before the body"
    );

    // A known key (the signature cannot be checked before the body): the body must arrive
    // within handshake_timeout.
    let known = SigningKey::new(crate::ACCESS_KEY_ID, crate::SECRET);
    let headers = signature_headers(
        "POST",
        &url,
        &[],
        &[b'x'; 131072],
        &known,
        "us-east-1",
        "execute-api",
        SystemTime::now(),
    );
    let mut stream = slow_post(&url, &headers).await;
    assert_eq!(
        status_within(&mut stream, Duration::from_secs(5)).await,
        Some(408),
        "a slow body is cut off"
    );

    // Shutdown does not wait for a request still reading its body past the grace period.
    let _held = slow_post(&url, &headers).await;
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(5), gateway.shutdown())
        .await
        .expect("shutdown finishes while a slow request is open");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Management HTTP connections are capped per client: the next one is answered 429 and
/// closed, while WebSocket clients are unaffected.
#[tokio::test]
async fn management_connections_are_capped_per_client() {
    let backend = MockBackend::start().await;
    let toml = config(
        &backend,
        "[management]\nlisten = \"127.0.0.1:0\"\nmax_connections_per_ip = 2\n",
    );
    let gateway = TestGateway::start(&toml).await;
    let authority = gateway
        .management_url
        .split_once("://")
        .unwrap()
        .1
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let _first = TcpStream::connect(&authority).await.unwrap();
    let _second = TcpStream::connect(&authority).await.unwrap();
    let mut third = TcpStream::connect(&authority).await.unwrap();
    assert_eq!(
        status_within(&mut third, Duration::from_secs(5)).await,
        Some(429)
    );
    let _client = gateway.connect().await;
    gateway.shutdown().await;
}

/// A request signed for another server that shares the credentials (its `Host` is signed)
/// cannot be replayed here: the signed host must name this gateway.
#[tokio::test]
async fn a_request_signed_for_another_host_is_refused() {
    let backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, &crate::management_credentials())).await;
    let port = gateway.authority().rsplit(':').next().unwrap().to_owned();
    let key = SigningKey::new(crate::ACCESS_KEY_ID, crate::SECRET);
    let list = |host: &str| format!("http://{host}/dev/@connections");
    for (host, expected) in [
        (format!("other-gateway.example:{port}"), 403),
        (gateway.authority(), 200),
        (format!("localhost:{port}"), 200),
    ] {
        let mut headers = signature_headers(
            "GET",
            &list(&host),
            &[],
            b"",
            &key,
            "us-east-1",
            "execute-api",
            SystemTime::now(),
        );
        headers.push(("Host".to_owned(), host.clone()));
        let (status, _, body) =
            request_with_headers("GET", &list(&gateway.authority()), &headers, b"").await;
        assert_eq!(
            status,
            expected,
            "Host {host}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    gateway.shutdown().await;
}

/// `/ready` and `/metrics` can leave the public listener for one of their own
/// (`management.operations_listen`); `/health` stays for load balancers.
#[tokio::test]
async fn operational_endpoints_can_move_off_the_public_listener() {
    let backend = MockBackend::start().await;
    let toml = config(
        &backend,
        "[management]\noperations_listen = \"127.0.0.1:0\"\n",
    );
    let gateway = TestGateway::start(&toml).await;
    let operations = gateway
        .gateway()
        .operations_addr()
        .expect("the operations listener is bound");
    let public = gateway.root_url();
    for (path, expected) in [("/health", 200), ("/ready", 403), ("/metrics", 403)] {
        let (status, _, _) =
            request_with_headers("GET", &format!("{public}{path}"), &[], b"").await;
        assert_eq!(status, expected, "public {path}");
    }
    for (path, expected) in [
        ("/health", 200),
        ("/ready", 200),
        ("/metrics", 200),
        ("/dev/@connections", 404),
    ] {
        let url = format!("http://{operations}{path}");
        let (status, _, _) = request_with_headers("GET", &url, &[], b"").await;
        assert_eq!(status, expected, "operations {path}");
    }
    gateway.shutdown().await;
}

/// A client frame header with a zero mask (the payload then goes as it is).
fn fragment(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
    let length = u16::try_from(payload.len()).expect("a fragment under 64 KiB");
    frame.push(0x80 | 126);
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(payload);
    frame
}

/// Many clients each stalling a large fragmented message used to make the gateway hold
/// about 178 KiB apiece, without bound: what all connections hold of messages still arriving
/// is now capped by `limits.buffered_message_bytes`, and a connection that would go past it is
/// closed with 1013 (its `$disconnect` says so) while the others keep theirs.
#[tokio::test]
async fn stalled_fragments_cannot_take_more_than_the_buffer_budget() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(
        &backend,
        "[limits]\nbuffered_message_bytes = 1048576\n",
    ))
    .await;
    let piece = vec![b'x'; 32_000];
    let mut clients = Vec::new();
    for _ in 0..16 {
        let mut stream = crate::events::raw_upgrade(&gateway.ws_url, "").await;
        let mut frames = fragment(false, 0x1, &piece);
        frames.extend(fragment(false, 0x0, &piece));
        frames.extend(fragment(false, 0x0, &piece));
        // A client already closed for the budget may refuse the rest; that is the point.
        let _ = stream.write_all(&frames).await;
        clients.push(stream);
    }
    let first = tokio::time::timeout(DEADLINE, backend.next_event_for("$disconnect"))
        .await
        .expect("a connection over the budget is closed");
    assert_eq!(first["requestContext"]["disconnectStatusCode"], 1013);
    // Shutdown delivers every other `$disconnect`: the connections the budget admitted end
    // with 1001, the ones it refused with 1013.
    gateway.shutdown().await;
    let mut codes = vec![1013];
    for request in backend.drain() {
        if request.route_key() == "$disconnect" {
            codes.push(
                request.json()["requestContext"]["disconnectStatusCode"]
                    .as_u64()
                    .unwrap(),
            );
        }
    }
    assert_eq!(codes.len(), 16, "{codes:?}");
    let refused = codes.iter().filter(|code| **code == 1013).count();
    assert!(
        refused > 0 && refused < 16,
        "some admitted, some refused: {codes:?}"
    );
}
