//! Proxies and load balancers in front (issue 15, points 5 and 3): the client a trusted proxy
//! names in `X-Forwarded-For` or in a PROXY protocol header (v1, v2, before TLS too) is
//! `identity.sourceIp`, the access log's and what the per-client cap counts; the same words
//! from any other peer are ignored; the CONNECT event's `X-Forwarded-Proto`/`-Port` are what
//! the client used.
//!
//! Loopback has a whole /8, so a client bound to 127.0.0.2 is "the proxy" (the only trusted
//! address) and one on 127.0.0.1 is anybody else.

use std::net::SocketAddr;

use serde_json::Value;
use sockway_testkit::tls::{TestCa, TlsFiles};
use sockway_testkit::{ConfigFile, DEADLINE, MockBackend, TestGateway, WsClient, metric};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

use crate::config;

/// The trusted proxy's address.
const PROXY: [u8; 4] = [127, 0, 0, 2];
/// Any other client's.
const STRANGER: [u8; 4] = [127, 0, 0, 1];

/// [`config`] with `keys` added to `[gateway]` and `extra` appended.
fn proxied_config(backend: &MockBackend, keys: &str, extra: &str) -> String {
    config(backend, extra).replacen(
        "api_id = \"a1b2c3d4e5\"\n",
        &format!("api_id = \"a1b2c3d4e5\"\n{keys}\n"),
        1,
    )
}

/// A TCP connection to the gateway listener from the loopback address `from`.
async fn tcp_from(gateway: &TestGateway, from: [u8; 4]) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket
        .connect(gateway.authority().parse().unwrap())
        .await
        .unwrap()
}

/// The WebSocket handshake for `url` with extra `headers` on `stream`: the client, or the
/// status the upgrade was refused with.
async fn upgrade<S>(stream: S, url: &str, headers: &[(&str, &str)]) -> Result<WsClient<S>, u16>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().append(
            http::HeaderName::try_from(*name).unwrap(),
            http::HeaderValue::try_from(*value).unwrap(),
        );
    }
    let handshake =
        tokio::time::timeout(DEADLINE, tokio_tungstenite::client_async(request, stream))
            .await
            .unwrap_or_else(|_| panic!("no handshake answer within {DEADLINE:?}"));
    match handshake {
        Ok((socket, response)) => Ok(WsClient::from_socket(socket, response.headers().clone())),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(error) => panic!("handshake with {url}: {error}"),
    }
}

/// A client connected from `from` with `headers`, which must be accepted.
async fn connect_from(
    gateway: &TestGateway,
    from: [u8; 4],
    headers: &[(&str, &str)],
) -> WsClient<TcpStream> {
    let stream = tcp_from(gateway, from).await;
    upgrade(stream, &gateway.ws_url, headers)
        .await
        .unwrap_or_else(|status| panic!("upgrade refused with {status}"))
}

/// A PROXY v1 header for a TCP connection from `source` to `destination`.
fn proxy_v1(source: &str, destination: &str) -> Vec<u8> {
    let source: SocketAddr = source.parse().unwrap();
    let destination: SocketAddr = destination.parse().unwrap();
    let protocol = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {protocol} {} {} {} {}\r\n",
        source.ip(),
        destination.ip(),
        source.port(),
        destination.port()
    )
    .into_bytes()
}

/// A PROXY v2 header (`PROXY` command over TCP) from `source` to `destination`, with an AWS
/// VPC endpoint extension (type 0xEA) the gateway must skip.
fn proxy_v2(source: &str, destination: &str) -> Vec<u8> {
    let source: SocketAddr = source.parse().unwrap();
    let destination: SocketAddr = destination.parse().unwrap();
    let mut block = Vec::new();
    let family = match (source, destination) {
        (SocketAddr::V4(source), SocketAddr::V4(destination)) => {
            block.extend_from_slice(&source.ip().octets());
            block.extend_from_slice(&destination.ip().octets());
            0x11
        }
        (SocketAddr::V6(source), SocketAddr::V6(destination)) => {
            block.extend_from_slice(&source.ip().octets());
            block.extend_from_slice(&destination.ip().octets());
            0x21
        }
        _ => panic!("one family for both ends"),
    };
    block.extend_from_slice(&source.port().to_be_bytes());
    block.extend_from_slice(&destination.port().to_be_bytes());
    block.extend_from_slice(b"\xea\x00\x0e\x01vpce-0123abcd");
    let mut header = b"\r\n\r\n\0\r\nQUIT\n\x21".to_vec();
    header.push(family);
    header.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
    header.extend_from_slice(&block);
    header
}

/// A PROXY v2 `LOCAL` header: the proxy's own connection, such as a health check.
fn proxy_v2_local() -> Vec<u8> {
    b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec()
}

/// Waits until the gateway closes `stream` and checks it never answered.
async fn assert_closed_without_answer(mut stream: TcpStream, case: &str) {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("{case}: still open after {DEADLINE:?}"));
    // A reset (the gateway closed with our bytes unread) or an orderly close, but no bytes.
    if let Err(error) = read {
        assert_eq!(
            error.kind(),
            std::io::ErrorKind::ConnectionReset,
            "{case}: {error}"
        );
    }
    assert!(
        answer.is_empty(),
        "{case}: answered {:?}",
        String::from_utf8_lossy(&answer)
    );
}

/// A scratch directory (removed on drop) and an `[access_log]` table writing into it.
fn access_log(name: &str) -> (ConfigFile, String, String) {
    let directory = ConfigFile::new(name, "");
    let path = directory.path.with_file_name("access.log");
    let path = path.to_str().unwrap().to_owned();
    let section = format!("[access_log]\ndestination = '{path}'\n");
    (directory, path, section)
}

/// The `ip` (`$context.identity.sourceIp`) and status of every CONNECT line in the log.
fn connect_lines(path: &str) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|line| line["eventType"] == "CONNECT")
        .map(|line| {
            (
                line["ip"].as_str().unwrap().to_owned(),
                line["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The next `$connect` event's `identity.sourceIp` and forwarding headers.
async fn next_connect(backend: &mut MockBackend) -> (String, [String; 3]) {
    let event = backend.next_event_for("$connect").await;
    let header = |name: &str| event["headers"][name].as_str().unwrap().to_owned();
    (
        event["requestContext"]["identity"]["sourceIp"]
            .as_str()
            .unwrap()
            .to_owned(),
        [
            header("X-Forwarded-For"),
            header("X-Forwarded-Proto"),
            header("X-Forwarded-Port"),
        ],
    )
}

/// Behind a trusted proxy the client is the address `X-Forwarded-For` names: in the event, in
/// the access log, and for the per-client cap, which no longer counts every client as the
/// proxy. The proxy's `X-Forwarded-Proto`/`-Port` say what the client used.
#[tokio::test]
async fn x_forwarded_for_from_a_trusted_proxy_names_the_client() {
    let (_directory, log, section) = access_log("proxies-xff");
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&proxied_config(
        &backend,
        "trusted_proxies = [\"127.0.0.2\"]",
        &format!("{section}\n[limits]\nmax_connections_per_ip = 1\n"),
    ))
    .await;
    let through_proxy = [
        ("X-Forwarded-For", "6.6.6.6, 203.0.113.9"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Port", "443"),
    ];
    let held = connect_from(&gateway, PROXY, &through_proxy).await;
    let (source_ip, [forwarded_for, proto, port]) = next_connect(&mut backend).await;
    assert_eq!(source_ip, "203.0.113.9");
    assert_eq!(forwarded_for, "6.6.6.6, 203.0.113.9");
    assert_eq!((proto.as_str(), port.as_str()), ("https", "443"));

    // The same client through the proxy again: over its cap of 1.
    let stream = tcp_from(&gateway, PROXY).await;
    let refused = upgrade(stream, &gateway.ws_url, &through_proxy).await;
    assert_eq!(refused.err(), Some(429));
    // Another client through the same proxy is not.
    let other = connect_from(&gateway, PROXY, &[("X-Forwarded-For", "203.0.113.10")]).await;
    let (source_ip, [forwarded_for, proto, _]) = next_connect(&mut backend).await;
    assert_eq!(source_ip, "203.0.113.10");
    assert_eq!(forwarded_for, "203.0.113.10");
    assert_eq!(proto, "http", "no X-Forwarded-Proto: the listener's");
    drop((held, other));
    gateway.shutdown().await;

    assert_eq!(
        connect_lines(&log),
        [
            ("203.0.113.9".to_owned(), "200".to_owned()),
            ("203.0.113.9".to_owned(), "429".to_owned()),
            ("203.0.113.10".to_owned(), "200".to_owned()),
        ]
    );
}

/// The same headers from a peer that is not a trusted proxy name nobody: the peer is the
/// client, the header only gets it appended (as AWS's edge does), and the listener's scheme
/// and port stand.
#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    let (_directory, log, section) = access_log("proxies-spoofed");
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&proxied_config(
        &backend,
        "trusted_proxies = [\"127.0.0.2\"]",
        &format!("{section}\n[limits]\nmax_connections_per_ip = 1\n"),
    ))
    .await;
    let listener_port = gateway.authority().rsplit(':').next().unwrap().to_owned();
    let held = connect_from(
        &gateway,
        STRANGER,
        &[
            ("X-Forwarded-For", "203.0.113.9"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Port", "443"),
        ],
    )
    .await;
    let (source_ip, [forwarded_for, proto, port]) = next_connect(&mut backend).await;
    assert_eq!(source_ip, "127.0.0.1");
    assert_eq!(forwarded_for, "203.0.113.9, 127.0.0.1");
    assert_eq!(proto, "http");
    assert_eq!(port, listener_port);

    // A different spoofed address does not make a different client.
    let stream = tcp_from(&gateway, STRANGER).await;
    let refused = upgrade(
        stream,
        &gateway.ws_url,
        &[("X-Forwarded-For", "203.0.113.10")],
    )
    .await;
    assert_eq!(refused.err(), Some(429));
    drop(held);
    gateway.shutdown().await;
    assert_eq!(
        connect_lines(&log),
        [
            ("127.0.0.1".to_owned(), "200".to_owned()),
            ("127.0.0.1".to_owned(), "429".to_owned()),
        ]
    );
}

/// A connection through the trusted proxy: its PROXY header, its upgrade's extra headers and
/// the client the gateway should see.
struct ProxiedCase {
    name: &'static str,
    header: Vec<u8>,
    headers: &'static [(&'static str, &'static str)],
    client: &'static str,
}

/// PROXY v1 and v2 headers from the trusted proxy, for IPv4 and IPv6 clients, name the client
/// (`LOCAL` and `UNKNOWN` stand for the proxy itself); a trusted hop named by the header is
/// looked past through `X-Forwarded-For`. The access log and the cap see the same client.
#[tokio::test]
async fn proxy_protocol_v1_and_v2_name_the_client() {
    let (_directory, log, section) = access_log("proxies-proxy-protocol");
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&proxied_config(
        &backend,
        "trusted_proxies = [\"127.0.0.2\", \"10.0.0.0/8\"]\nproxy_protocol = true",
        &format!("{section}\n[limits]\nmax_connections_per_ip = 1\n"),
    ))
    .await;
    let cases = [
        ProxiedCase {
            name: "v1 TCP4",
            header: proxy_v1("192.0.2.10:56324", "198.51.100.1:443"),
            headers: &[],
            client: "192.0.2.10",
        },
        ProxiedCase {
            name: "v1 TCP6",
            header: proxy_v1("[2001:db8::7]:56324", "[2001:db8::1]:443"),
            headers: &[],
            client: "2001:db8::7",
        },
        ProxiedCase {
            name: "v2 TCP4",
            header: proxy_v2("192.0.2.11:1234", "198.51.100.1:443"),
            headers: &[],
            client: "192.0.2.11",
        },
        ProxiedCase {
            name: "v2 TCP6",
            header: proxy_v2("[2001:db9::8]:1234", "[2001:db8::1]:443"),
            headers: &[],
            client: "2001:db9::8",
        },
        ProxiedCase {
            name: "v1 UNKNOWN",
            header: b"PROXY UNKNOWN\r\n".to_vec(),
            headers: &[],
            client: "127.0.0.2",
        },
        ProxiedCase {
            name: "v2 from a trusted hop, then X-Forwarded-For",
            header: proxy_v2("10.1.2.3:1234", "10.0.0.1:8080"),
            headers: &[("X-Forwarded-For", "198.51.100.4")],
            client: "198.51.100.4",
        },
        ProxiedCase {
            name: "v1 TCP4 with a spoofed X-Forwarded-For",
            header: proxy_v1("192.0.2.12:1", "198.51.100.1:443"),
            headers: &[("X-Forwarded-For", "10.9.9.9")],
            client: "192.0.2.12",
        },
    ];
    let mut held = Vec::new();
    for case in &cases {
        let mut stream = tcp_from(&gateway, PROXY).await;
        stream.write_all(&case.header).await.unwrap();
        held.push(
            upgrade(stream, &gateway.ws_url, case.headers)
                .await
                .unwrap_or_else(|status| panic!("{}: refused with {status}", case.name)),
        );
        let (source_ip, _) = next_connect(&mut backend).await;
        assert_eq!(source_ip, case.client, "{}", case.name);
    }
    // A health check's LOCAL header stands for the proxy, which already holds its one slot.
    let mut stream = tcp_from(&gateway, PROXY).await;
    stream.write_all(&proxy_v2_local()).await.unwrap();
    assert_eq!(upgrade(stream, &gateway.ws_url, &[]).await.err(), Some(429));
    // The same client through another connection of the proxy is over its cap too.
    let mut stream = tcp_from(&gateway, PROXY).await;
    stream
        .write_all(&proxy_v2("192.0.2.11:4321", "198.51.100.1:443"))
        .await
        .unwrap();
    assert_eq!(upgrade(stream, &gateway.ws_url, &[]).await.err(), Some(429));
    drop(held);
    gateway.shutdown().await;

    let ips: Vec<(String, String)> = connect_lines(&log);
    let expected: Vec<(String, String)> = cases
        .iter()
        .map(|case| (case.client.to_owned(), "200".to_owned()))
        .chain([
            ("127.0.0.2".to_owned(), "429".to_owned()),
            ("192.0.2.11".to_owned(), "429".to_owned()),
        ])
        .collect();
    assert_eq!(ips, expected);
}

/// On a TLS listener the PROXY header comes before the ClientHello.
#[tokio::test]
async fn proxy_protocol_comes_before_tls() {
    let ca = TestCa::new();
    let files = TlsFiles::new("proxies-tls", &ca.issue());
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&proxied_config(
        &backend,
        "trusted_proxies = [\"127.0.0.2\"]\nproxy_protocol = true",
        &files.toml(""),
    ))
    .await;
    assert!(gateway.ws_url.starts_with("wss://"));
    for (header, expected) in [
        (
            proxy_v2("192.0.2.20:5000", "198.51.100.1:443"),
            "192.0.2.20",
        ),
        (
            proxy_v1("[2001:db8::21]:5000", "[2001:db8::1]:443"),
            "2001:db8::21",
        ),
    ] {
        let mut stream = tcp_from(&gateway, PROXY).await;
        stream.write_all(&header).await.unwrap();
        let server_name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let tls = tokio_rustls::TlsConnector::from(ca.client_config())
            .connect(server_name, stream)
            .await
            .expect("TLS handshake after the PROXY header");
        let client = upgrade(tls, &gateway.ws_url, &[])
            .await
            .unwrap_or_else(|status| panic!("refused with {status}"));
        let (source_ip, [_, proto, _]) = next_connect(&mut backend).await;
        assert_eq!(source_ip, expected);
        assert_eq!(proto, "https");
        drop(client);
    }
    // Without the header, the ClientHello itself is refused as a missing PROXY header.
    let stream = tcp_from(&gateway, PROXY).await;
    let server_name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let handshake = tokio_rustls::TlsConnector::from(ca.client_config())
        .connect(server_name, stream)
        .await;
    assert!(handshake.is_err(), "TLS without a PROXY header");
    gateway.shutdown().await;
}

/// A PROXY listener closes, without a word, connections from peers that are not trusted
/// proxies (a valid header included), and trusted ones whose header is missing, malformed or
/// incomplete; nothing panics, and the next good connection is served. Each refusal is counted.
#[tokio::test]
async fn proxy_protocol_refuses_untrusted_peers_and_bad_headers() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&proxied_config(
        &backend,
        "trusted_proxies = [\"127.0.0.2\"]\nproxy_protocol = true",
        "[management]\nlisten = \"127.0.0.1:0\"\n[limits]\nhandshake_timeout = \"500ms\"\n",
    ))
    .await;
    let valid = proxy_v1("192.0.2.10:56324", "198.51.100.1:443");
    let upgrade_request = format!(
        "GET /dev HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        gateway.authority()
    );
    let with_request = |header: &[u8]| {
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(upgrade_request.as_bytes());
        bytes
    };
    let mut v2_bad_version = proxy_v2("192.0.2.10:1", "198.51.100.1:443");
    v2_bad_version[12] = 0x11;
    let cases: [(&str, [u8; 4], Vec<u8>); 7] = [
        (
            "a valid header from an untrusted peer",
            STRANGER,
            with_request(&valid),
        ),
        (
            "no header from an untrusted peer",
            STRANGER,
            with_request(b""),
        ),
        ("no header from the proxy", PROXY, with_request(b"")),
        (
            "a malformed v1 header",
            PROXY,
            with_request(b"PROXY TCP4 192.0.2.10 garbage 1 2\r\n"),
        ),
        (
            "a v1 header without its line end",
            PROXY,
            format!("PROXY UNKNOWN {}", "x".repeat(200)).into_bytes(),
        ),
        (
            "a v2 header of version 1",
            PROXY,
            with_request(&v2_bad_version),
        ),
        (
            "a header cut short",
            PROXY,
            b"PROXY TCP4 192.0.2.10".to_vec(),
        ),
    ];
    for (case, from, bytes) in &cases {
        let mut stream = tcp_from(&gateway, *from).await;
        // The gateway may close before everything is written.
        let _ = stream.write_all(bytes).await;
        assert_closed_without_answer(stream, case).await;
    }
    assert!(
        backend.drain().is_empty(),
        "no refused connection reached $connect"
    );

    let mut stream = tcp_from(&gateway, PROXY).await;
    stream.write_all(&valid).await.unwrap();
    let client = upgrade(stream, &gateway.ws_url, &[])
        .await
        .unwrap_or_else(|status| panic!("refused with {status}"));
    let (source_ip, _) = next_connect(&mut backend).await;
    assert_eq!(source_ip, "192.0.2.10");
    drop(client);

    let metrics = gateway.metrics().await;
    for (reason, count) in [
        ("untrusted_peer", 2.0),
        ("missing", 1.0),
        ("malformed", 3.0),
        ("incomplete", 1.0),
    ] {
        assert_eq!(
            metric(
                &metrics,
                &format!("sockway_proxy_protocol_refused_total{{reason=\"{reason}\"}}")
            ),
            count,
            "{reason}"
        );
    }
    gateway.shutdown().await;
}

/// `gateway.public_scheme` and `gateway.public_port` say what clients use (TLS ended in front,
/// at a balancer that sends no `X-Forwarded-Proto`), whatever a proxy's headers say; a scheme
/// alone brings its default port.
#[tokio::test]
async fn public_scheme_and_port_name_what_clients_use() {
    for (keys, expected_port) in [
        ("public_scheme = \"https\"", "443"),
        ("public_scheme = \"https\"\npublic_port = 8443", "8443"),
    ] {
        let mut backend = MockBackend::start().await;
        let gateway = TestGateway::start(&proxied_config(
            &backend,
            &format!("trusted_proxies = [\"127.0.0.2\"]\n{keys}"),
            "",
        ))
        .await;
        let client = connect_from(
            &gateway,
            PROXY,
            &[
                ("X-Forwarded-For", "203.0.113.9"),
                ("X-Forwarded-Proto", "http"),
                ("X-Forwarded-Port", "80"),
            ],
        )
        .await;
        let (source_ip, [_, proto, port]) = next_connect(&mut backend).await;
        assert_eq!(source_ip, "203.0.113.9");
        assert_eq!(
            (proto.as_str(), port.as_str()),
            ("https", expected_port),
            "{keys}"
        );
        drop(client);
        gateway.shutdown().await;
    }
}

/// Console sign-in needs TLS from a remote browser, and `X-Forwarded-Proto: https` says so only
/// from a trusted proxy: a remote client that sends the header itself over plain HTTP is
/// refused. (A PROXY header makes the client remote, which a loopback test cannot otherwise be.)
#[tokio::test]
async fn console_sign_in_believes_x_forwarded_proto_only_from_trusted_proxies() {
    let backend = MockBackend::start().await;
    let gateway = TestGateway::start(&proxied_config(
        &backend,
        "trusted_proxies = [\"127.0.0.2\", \"10.0.0.0/8\"]\nproxy_protocol = true",
        &crate::management_credentials(),
    ))
    .await;
    for (source, proto, expected) in [
        ("203.0.113.9:5000", Some("https"), 403),
        ("203.0.113.9:5000", None, 403),
        ("10.0.0.5:5000", Some("https"), 200),
        ("10.0.0.5:5000", None, 403),
    ] {
        let mut stream = tcp_from(&gateway, PROXY).await;
        let mut request = proxy_v1(source, "198.51.100.1:443");
        request.extend_from_slice(
            format!(
                "GET /console/api/challenge HTTP/1.1\r\nHost: {}\r\nX-Sockway-Console: 1\r\n\
                 Connection: close\r\n{}\r\n",
                gateway.authority(),
                proto.map_or(String::new(), |proto| format!(
                    "X-Forwarded-Proto: {proto}\r\n"
                ))
            )
            .as_bytes(),
        );
        stream.write_all(&request).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
            .await
            .expect("an answer within the deadline")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {expected} ")),
            "{source} {proto:?}: {answer}"
        );
    }
    gateway.shutdown().await;
}
