//! Malformed upgrades and management requests get a clear HTTP error, never a panic, and the
//! gateway keeps serving everyone else.

use std::time::Duration;

use sockway_testkit::{MockBackend, TestGateway, http_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config;

fn authority(gateway: &TestGateway) -> String {
    gateway
        .ws_url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .to_owned()
}

/// Sends `request` as raw bytes and returns the status code of the response (0 when the
/// server closed without one).
async fn raw_status(gateway: &TestGateway, request: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(authority(gateway)).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    let read =
        tokio::time::timeout(sockway_testkit::DEADLINE, stream.read_to_end(&mut response)).await;
    assert!(
        read.is_ok(),
        "the server answers and closes within the deadline"
    );
    let text = String::from_utf8_lossy(&response);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

fn upgrade(method: &str, version: &str, headers: &str) -> Vec<u8> {
    format!("{method} /dev {version}\r\nHost: localhost\r\n{headers}\r\n").into_bytes()
}

const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n";

#[tokio::test]
async fn malformed_upgrades_get_clear_statuses() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, "")).await;
    let version = "Sec-WebSocket-Version: 13\r\n";
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "missing key",
            upgrade("GET", "HTTP/1.1", &format!("{UPGRADE}{version}")),
            400,
        ),
        (
            "bad key",
            upgrade(
                "GET",
                "HTTP/1.1",
                &format!("{UPGRADE}{version}Sec-WebSocket-Key: short\r\n"),
            ),
            400,
        ),
        (
            "wrong version",
            upgrade(
                "GET",
                "HTTP/1.1",
                &format!("{UPGRADE}{KEY}Sec-WebSocket-Version: 8\r\n"),
            ),
            426,
        ),
        (
            "bad method",
            upgrade("POST", "HTTP/1.1", &format!("{UPGRADE}{KEY}{version}")),
            405,
        ),
        (
            "HTTP/1.0",
            upgrade("GET", "HTTP/1.0", &format!("{UPGRADE}{KEY}{version}")),
            400,
        ),
        (
            "no Connection: upgrade",
            upgrade(
                "GET",
                "HTTP/1.1",
                &format!("Upgrade: websocket\r\n{KEY}{version}"),
            ),
            400,
        ),
        (
            "garbage",
            b"\x16\x03\x01\x02\x00 not http at all\r\n\r\n".to_vec(),
            400,
        ),
    ];
    for (name, request, expected) in cases {
        assert_eq!(raw_status(&gateway, &request).await, expected, "{name}");
    }
    // None of them reached `$connect`, and the gateway still serves a real client.
    assert!(backend.drain().is_empty());
    let mut client = gateway.connect().await;
    client.send_text(r#"{"action":"ping"}"#).await;
    assert_eq!(client.next_text().await, r#"{"pong":true}"#);
    gateway.shutdown().await;
}

#[tokio::test]
async fn oversize_request_heads_are_refused() {
    let backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, "")).await;
    let long_url = format!(
        "GET /dev?{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(20_000)
    );
    assert_eq!(raw_status(&gateway, long_url.as_bytes()).await, 431);
    let many_headers: String = (0..200).map(|index| format!("X-H{index}: v\r\n")).collect();
    let request = format!("GET /dev HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n");
    assert_eq!(raw_status(&gateway, request.as_bytes()).await, 431);
    gateway.shutdown().await;
}

#[tokio::test]
async fn slow_handshakes_time_out() {
    let backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(
        &backend,
        "[limits]\nhandshake_timeout = \"300ms\"\n",
    ))
    .await;
    // A slowloris client sends part of a head and stalls: the server answers 408 and closes.
    let started = std::time::Instant::now();
    assert_eq!(
        raw_status(&gateway, b"GET /dev HTTP/1.1\r\nHost: x\r\n").await,
        408
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    gateway.shutdown().await;
}

#[tokio::test]
async fn management_rejects_bad_paths_and_methods() {
    let backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, "")).await;
    let base = &gateway.management_url;
    for (method, path, expected_status, expected_type) in [
        ("PUT", "/@connections", 405, "MethodNotAllowedException"),
        ("POST", "/@groups", 403, "ForbiddenException"),
        ("POST", "/@connections/", 403, "ForbiddenException"),
        ("POST", "/@connections/%ZZ", 400, "BadRequestException"),
        (
            "POST",
            "/@connections/AAAAAAAAAAAAAAAA",
            400,
            "BadRequestException",
        ),
        (
            "PATCH",
            "/@connections/AAAAAAAAAAAAAAA=",
            405,
            "MethodNotAllowedException",
        ),
        ("GET", "/../../etc/passwd", 403, "ForbiddenException"),
    ] {
        let (status, headers, _) = http_request(method, &format!("{base}{path}"), "").await;
        assert_eq!(status, expected_status, "{method} {path}");
        assert_eq!(
            headers["x-amzn-ErrorType"], expected_type,
            "{method} {path}"
        );
    }
    gateway.shutdown().await;
}
