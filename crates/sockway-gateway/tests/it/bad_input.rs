//! Bad input gets a clear outcome, never a panic, and the gateway keeps serving everyone else:
//! malformed upgrades and management requests get an HTTP error; frames that break RFC 6455
//! get the close code it prescribes (written byte by byte with [`RawClient`], since client
//! libraries refuse to send them); hostile message bodies and misbehaving backends get an
//! error frame or their documented routing. Every accepted connection gets exactly one
//! `$disconnect`.

use std::time::Duration;

use serde_json::Value;
use sockway_testkit::{MockBackend, MockResponse, RecordedRequest, TestGateway, http_request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config;

/// Sends `request` as raw bytes and returns the status code of the response (0 when the
/// server closed without one).
async fn raw_status(gateway: &TestGateway, request: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(gateway.authority()).await.unwrap();
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

fn upgrade(host: &str, method: &str, version: &str, headers: &str) -> Vec<u8> {
    format!("{method} /dev {version}\r\nHost: {host}\r\n{headers}\r\n").into_bytes()
}

const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n";

#[tokio::test]
async fn malformed_upgrades_get_clear_statuses() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, "")).await;
    let host = gateway.authority();
    let version = "Sec-WebSocket-Version: 13\r\n";
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "missing key",
            upgrade(&host, "GET", "HTTP/1.1", &format!("{UPGRADE}{version}")),
            400,
        ),
        (
            "bad key",
            upgrade(
                &host,
                "GET",
                "HTTP/1.1",
                &format!("{UPGRADE}{version}Sec-WebSocket-Key: short\r\n"),
            ),
            400,
        ),
        (
            "wrong version",
            upgrade(
                &host,
                "GET",
                "HTTP/1.1",
                &format!("{UPGRADE}{KEY}Sec-WebSocket-Version: 8\r\n"),
            ),
            426,
        ),
        (
            "bad method",
            upgrade(
                &host,
                "POST",
                "HTTP/1.1",
                &format!("{UPGRADE}{KEY}{version}"),
            ),
            405,
        ),
        (
            "HTTP/1.0",
            upgrade(
                &host,
                "GET",
                "HTTP/1.0",
                &format!("{UPGRADE}{KEY}{version}"),
            ),
            400,
        ),
        (
            "no Connection: upgrade",
            upgrade(
                &host,
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

/// A WebSocket client that writes frames byte by byte: unmasked frames, reserved bits and
/// opcodes, fragmented or oversized control frames, which client libraries refuse to send.
pub(crate) struct RawClient {
    pub(crate) stream: TcpStream,
}

/// The mask key of every masked frame [`RawClient`] sends.
pub(crate) const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A frame: `first_byte` is FIN, RSV1-3 and the opcode; the payload is masked when `masked`.
pub(crate) fn frame(first_byte: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mask_bit = if masked { 0x80 } else { 0 };
    let mut bytes = vec![first_byte];
    match payload.len() {
        length @ 0..=125 => bytes.push(mask_bit | length as u8),
        length @ 126..=65535 => {
            bytes.push(mask_bit | 126);
            bytes.extend_from_slice(&(length as u16).to_be_bytes());
        }
        length => {
            bytes.push(mask_bit | 127);
            bytes.extend_from_slice(&(length as u64).to_be_bytes());
        }
    }
    if masked {
        bytes.extend_from_slice(&MASK);
        bytes.extend(
            payload
                .iter()
                .enumerate()
                .map(|(index, byte)| byte ^ MASK[index % 4]),
        );
    } else {
        bytes.extend_from_slice(payload);
    }
    bytes
}

/// A masked frame, as a conforming client sends it.
pub(crate) fn masked(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    frame(first_byte, payload, true)
}

/// Reads one server frame: its first byte (FIN, RSV, opcode) and its payload; `None` at end
/// of stream or on a reset.
pub(crate) async fn read_frame(reader: &mut (impl AsyncRead + Unpin)) -> Option<(u8, Vec<u8>)> {
    let read = async {
        let mut head = [0u8; 2];
        reader.read_exact(&mut head).await.ok()?;
        assert_eq!(head[1] & 0x80, 0, "server frames are never masked");
        let length = match head[1] & 0x7f {
            126 => u64::from(reader.read_u16().await.ok()?),
            127 => reader.read_u64().await.ok()?,
            length => u64::from(length),
        };
        let mut payload = vec![0u8; usize::try_from(length).unwrap()];
        reader.read_exact(&mut payload).await.ok()?;
        Some((head[0], payload))
    };
    tokio::time::timeout(sockway_testkit::DEADLINE, read)
        .await
        .unwrap_or_else(|_| panic!("no frame within {:?}", sockway_testkit::DEADLINE))
}

impl RawClient {
    /// Upgrades by hand and reads the rest of the 101's head.
    async fn connect(gateway: &TestGateway) -> RawClient {
        Self::connect_with(gateway, "").await.0
    }

    /// Upgrades by hand with `extra_headers` (each ending in CRLF); returns the client and
    /// the 101's head after its status code.
    pub(crate) async fn connect_with(
        gateway: &TestGateway,
        extra_headers: &str,
    ) -> (RawClient, String) {
        let mut stream = crate::events::raw_upgrade(&gateway.ws_url, extra_headers).await;
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(stream.read_u8().await.unwrap());
        }
        (RawClient { stream }, String::from_utf8(head).unwrap())
    }

    /// Writes `bytes` as they are. The gateway may already have closed, so errors are ignored.
    pub(crate) async fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// The code of the server's close frame, skipping other frames; `None` when the socket
    /// ended without one.
    pub(crate) async fn close_code(&mut self) -> Option<u16> {
        while let Some((first_byte, payload)) = read_frame(&mut self.stream).await {
            if first_byte & 0x0f == 0x8 {
                assert!(payload.len() >= 2, "the close frame has a status code");
                return Some(u16::from_be_bytes([payload[0], payload[1]]));
            }
        }
        None
    }
}

/// The `$connect` event's connection id: the only client connecting at that moment.
pub(crate) async fn connected_id(backend: &mut MockBackend) -> String {
    backend.next_event_for("$connect").await["requestContext"]["connectionId"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The next `$disconnect` event of `connection_id`; it must carry `code`.
pub(crate) async fn expect_disconnect(backend: &mut MockBackend, connection_id: &str, code: u16) {
    loop {
        let event = backend.next_event_for("$disconnect").await;
        let context = &event["requestContext"];
        if context["connectionId"] == connection_id {
            assert_eq!(context["disconnectStatusCode"], code, "{event}");
            return;
        }
    }
}

/// A new client is still served end to end (its `$connect`, a message through the backend,
/// a two-way mock route); then the gateway shuts down, which delivers every `$disconnect`
/// still owed, and none of `connection_ids` (whose `$disconnect` was already taken) gets a
/// second one.
async fn still_serving_then_shutdown(
    mut backend: MockBackend,
    gateway: TestGateway,
    connection_ids: &[String],
) {
    let mut client = gateway.connect().await;
    client.send_text("still there?").await;
    assert_eq!(client.next_text().await, "still there?");
    client.send_text(r#"{"action":"ping"}"#).await;
    assert_eq!(client.next_text().await, r#"{"pong":true}"#);
    client.close(1000, "").await;
    gateway.shutdown().await;
    let repeated: Vec<Value> = backend
        .drain()
        .iter()
        .filter(|request| request.route_key() == "$disconnect")
        .map(RecordedRequest::json)
        .filter(|event| {
            connection_ids
                .iter()
                .any(|id| event["requestContext"]["connectionId"] == id.as_str())
        })
        .collect();
    assert!(repeated.is_empty(), "a second $disconnect: {repeated:?}");
}

/// Opens one raw connection per entry of `cases`, writes its bytes, and expects the close
/// code; then checks the gateway still serves and delivered one `$disconnect` each.
async fn check_close_codes(extra_config: &str, cases: &[(impl AsRef<str>, Vec<u8>, u16)]) {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, extra_config)).await;
    let mut connection_ids = Vec::new();
    for (name, bytes, code) in cases {
        let mut client = RawClient::connect(&gateway).await;
        let connection_id = connected_id(&mut backend).await;
        client.send(bytes).await;
        assert_eq!(client.close_code().await, Some(*code), "{}", name.as_ref());
        drop(client);
        expect_disconnect(&mut backend, &connection_id, *code).await;
        connection_ids.push(connection_id);
    }
    still_serving_then_shutdown(backend, gateway, &connection_ids).await;
}

#[tokio::test]
async fn unmasked_client_frame_closes_with_1002() {
    check_close_codes("", &[("unmasked text", frame(0x81, b"hello", false), 1002)]).await;
}

#[tokio::test]
async fn reserved_bits_close_with_1002() {
    check_close_codes(
        "",
        &[
            ("RSV1", masked(0x81 | 0x40, b"hello"), 1002),
            ("RSV2", masked(0x81 | 0x20, b"hello"), 1002),
            ("RSV3", masked(0x81 | 0x10, b"hello"), 1002),
        ],
    )
    .await;
}

#[tokio::test]
async fn reserved_opcodes_close_with_1002() {
    let cases: Vec<(String, Vec<u8>, u16)> = [0x3, 0x4, 0x5, 0x6, 0x7, 0xb, 0xc, 0xd, 0xe, 0xf]
        .into_iter()
        .map(|opcode| {
            let name = format!("opcode {opcode:#x}");
            (name, masked(0x80 | opcode, b"reserved"), 1002)
        })
        .collect();
    check_close_codes("", &cases).await;
}

#[tokio::test]
async fn invalid_utf8_text_closes_with_1007() {
    let mut fragmented = masked(0x01, &[b'a', 0xce]);
    fragmented.extend(masked(0x80, &[0xff, b'b']));
    check_close_codes(
        "",
        &[
            ("one frame", masked(0x81, &[b'a', 0xff, b'b']), 1007),
            ("split code point then garbage", fragmented, 1007),
            // An encoded surrogate (U+D800) is not UTF-8 either.
            ("surrogate", masked(0x81, &[0xed, 0xa0, 0x80]), 1007),
        ],
    )
    .await;
}

#[tokio::test]
async fn fragmented_control_frames_close_with_1002() {
    check_close_codes(
        "",
        &[
            ("ping without FIN", masked(0x09, b"part"), 1002),
            ("pong without FIN", masked(0x0a, b"part"), 1002),
        ],
    )
    .await;
}

#[tokio::test]
async fn control_frames_over_125_bytes_close_with_1002() {
    check_close_codes(
        "",
        &[
            ("ping of 126 bytes", masked(0x89, &[b'p'; 126]), 1002),
            ("close of 126 bytes", masked(0x88, &[b'c'; 126]), 1002),
        ],
    )
    .await;
}

#[tokio::test]
async fn ping_flood_is_answered_without_starving_others() {
    const PINGS: usize = 10_000;
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, "")).await;
    let client = RawClient::connect(&gateway).await;
    let connection_id = connected_id(&mut backend).await;
    let (mut reader, mut writer) = client.stream.into_split();
    // Every ping carries its number in a payload of the largest allowed size, 125 bytes
    // (1.3 MB in all), then a two-way message ends the flood.
    let flood = tokio::spawn(async move {
        let mut bytes = Vec::with_capacity(PINGS * 135);
        for index in 0..PINGS {
            bytes.extend(masked(0x89, format!("{index:0>125}").as_bytes()));
        }
        bytes.extend(masked(0x81, br#"{"action":"ping"}"#));
        writer.write_all(&bytes).await.unwrap();
        writer
    });
    // While the flood is read, another client is served.
    let mut other = gateway.connect().await;
    other.send_text(r#"{"action":"ping"}"#).await;
    assert_eq!(other.next_text().await, r#"{"pong":true}"#);
    other.close(1000, "").await;
    // The flooder gets pongs echoing its pings' payloads, in order and never more than it
    // sent (a pong not yet written is replaced by the next one), then its answer.
    let mut pongs = 0;
    let mut last = None;
    loop {
        let (first_byte, payload) = read_frame(&mut reader)
            .await
            .expect("the flooder's connection stays open");
        match first_byte {
            0x8a => {
                let number: usize = std::str::from_utf8(&payload).unwrap().parse().unwrap();
                assert!(
                    number < PINGS && last < Some(number),
                    "pong {number} after {last:?}"
                );
                last = Some(number);
                pongs += 1;
            }
            0x81 => {
                assert_eq!(payload, br#"{"pong":true}"#);
                break;
            }
            other => panic!("unexpected frame {other:#x} during the flood"),
        }
    }
    assert!(
        (1..=PINGS).contains(&pongs),
        "{pongs} pongs for {PINGS} pings"
    );
    let mut writer = flood.await.unwrap();
    writer
        .write_all(&masked(0x88, &1000u16.to_be_bytes()))
        .await
        .unwrap();
    let (first_byte, payload) = read_frame(&mut reader).await.expect("the close echo");
    assert_eq!(
        (first_byte, &payload[..]),
        (0x88, &1000u16.to_be_bytes()[..])
    );
    expect_disconnect(&mut backend, &connection_id, 1000).await;
    still_serving_then_shutdown(backend, gateway, &[connection_id]).await;
}

#[tokio::test]
async fn deeply_nested_json_is_routed_to_default() {
    // serde_json stops at 128 levels: the body is not JSON to route selection, so it goes to
    // `$default` (AWS: a body that is not JSON goes to `$default`), unparsed and unchanged.
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, "[limits]\nframe_bytes = 131072\n")).await;
    let mut client = gateway.connect().await;
    let connection_id = connected_id(&mut backend).await;
    for body in [
        "[".repeat(100_000),
        format!("{}1{}", "[".repeat(50_000), "]".repeat(50_000)),
    ] {
        client.send_text(&body).await;
        let event = backend.next_event().await;
        assert_eq!(event["requestContext"]["routeKey"], "$default");
        assert_eq!(event["body"], body.as_str());
        assert_eq!(client.next_text().await, body, "the $default echo");
    }
    // Nesting inside the selected value is fine below the limit.
    let nested = format!(r#"{{"action":{}"x"{}}}"#, "[".repeat(100), "]".repeat(100));
    client.send_text(&nested).await;
    assert_eq!(
        backend.next_event().await["requestContext"]["routeKey"],
        "$default",
        "an array value selects no route"
    );
    assert_eq!(client.next_text().await, nested);
    client.close(1000, "").await;
    expect_disconnect(&mut backend, &connection_id, 1000).await;
    still_serving_then_shutdown(backend, gateway, &[connection_id]).await;
}

#[tokio::test]
async fn huge_json_body_is_routed_by_its_action() {
    // 8 MiB of JSON with the route key at the very end: parsed once, routed to the one-way
    // `sendmessage` route, delivered whole.
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(
        &backend,
        "[limits]\nframe_bytes = 16777216\nmessage_bytes = 16777216\n",
    ))
    .await;
    let mut client = gateway.connect().await;
    let connection_id = connected_id(&mut backend).await;
    let body = format!(
        r#"{{"data":"{}","items":[{}0],"action":"sendmessage"}}"#,
        "x".repeat(4 << 20),
        "1,".repeat(2 << 20)
    );
    client.send_text(&body).await;
    let event = backend.next_event().await;
    assert_eq!(event["requestContext"]["routeKey"], "sendmessage");
    assert_eq!(event["body"].as_str().map(str::len), Some(body.len()));
    // One-way: nothing comes back, so the next frame answers the message after it.
    client.send_text(r#"{"action":"ping"}"#).await;
    assert_eq!(client.next_text().await, r#"{"pong":true}"#);
    client.close(1000, "").await;
    expect_disconnect(&mut backend, &connection_id, 1000).await;
    still_serving_then_shutdown(backend, gateway, &[connection_id]).await;
}

/// Asserts that `frame` is AWS's error frame with `message` for `connection_id`.
fn check_error_frame(frame: &str, message: &str, connection_id: &str) {
    let parsed: Value = serde_json::from_str(frame).unwrap();
    let request_id = parsed["requestId"].as_str().unwrap();
    assert_eq!(
        frame,
        format!(
            r#"{{"message": "{message}", "connectionId":"{connection_id}", "requestId":"{request_id}"}}"#
        )
    );
}

/// A gateway whose backend answers each message by its body, through `answer` (other events
/// get a bare 200), with `timeout` on the backend integration; one client connected.
async fn misbehaving_backend(
    timeout: &str,
    answer: impl Fn(&str) -> MockResponse + Send + Sync + 'static,
) -> (MockBackend, TestGateway, sockway_testkit::WsClient, String) {
    let mut backend = MockBackend::start().await;
    backend.respond_with(
        move |request: &RecordedRequest| match request.json()["body"].as_str() {
            Some(body) => answer(body),
            None => MockResponse::proxy(200, None),
        },
    );
    let toml = config(&backend, "").replace(
        "type = \"http\"\nuri",
        &format!("type = \"http\"\ntimeout = \"{timeout}\"\nuri"),
    );
    let gateway = TestGateway::start(&toml).await;
    let client = gateway.connect().await;
    let connection_id = connected_id(&mut backend).await;
    (backend, gateway, client, connection_id)
}

/// The connection still routes after a backend failure; then it closes with one `$disconnect`
/// and the gateway serves another client.
async fn still_open_then_closed(
    mut backend: MockBackend,
    gateway: TestGateway,
    mut client: sockway_testkit::WsClient,
    connection_id: String,
) {
    client.send_text(r#"{"action":"ping"}"#).await;
    assert_eq!(client.next_text().await, r#"{"pong":true}"#);
    client.close(1000, "").await;
    expect_disconnect(&mut backend, &connection_id, 1000).await;
    still_serving_then_shutdown(backend, gateway, &[connection_id]).await;
}

#[tokio::test]
async fn backend_slower_than_the_timeout_gets_endpoint_request_timed_out() {
    let (backend, gateway, mut client, connection_id) =
        misbehaving_backend("300ms", |body| match body {
            "slow" => MockResponse::proxy(200, Some("too late")).delayed(Duration::from_secs(2)),
            other => MockResponse::proxy(200, Some(other)),
        })
        .await;
    let started = std::time::Instant::now();
    client.send_text("slow").await;
    check_error_frame(
        &client.next_text().await,
        "Endpoint request timed out",
        &connection_id,
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at the timeout"
    );
    // The late answer is dropped: the next frame answers the next message.
    client.send_text("fast").await;
    assert_eq!(client.next_text().await, "fast");
    still_open_then_closed(backend, gateway, client, connection_id).await;
}

#[tokio::test]
async fn backend_garbage_passes_through_or_fails_clearly() {
    let (backend, gateway, mut client, connection_id) =
        misbehaving_backend("29s", |body| match body {
            // Not a proxy result: a plain reply, whose body a two-way route sends as it is.
            "html" => MockResponse::status(200, "<html>not json</html>"),
            "bytes" => MockResponse {
                body: bytes::Bytes::from_static(&[0xff, 0x00, 0xfe]),
                ..MockResponse::status(200, "")
            },
            // A plain 5xx is a failed backend; a proxy result that does not parse is too.
            "html 502" => MockResponse::status(502, "<html>bad gateway</html>"),
            "bad proxy result" => MockResponse::status(200, r#"{"statusCode":"teapot"}"#),
            "truncated json" => MockResponse::status(200, r#"{"statusCode":200,"body":"#),
            other => MockResponse::proxy(200, Some(other)),
        })
        .await;
    client.send_text("html").await;
    assert_eq!(client.next_text().await, "<html>not json</html>");
    client.send_text("bytes").await;
    match client.next_message().await {
        tokio_tungstenite::tungstenite::Message::Binary(bytes) => {
            assert_eq!(&bytes[..], &[0xff, 0x00, 0xfe]);
        }
        other => panic!("expected the bytes as a binary message, got {other:?}"),
    }
    for failing in ["html 502", "bad proxy result"] {
        client.send_text(failing).await;
        check_error_frame(
            &client.next_text().await,
            "Internal server error",
            &connection_id,
        );
    }
    // Truncated JSON is not JSON: a plain 200 reply, passed through.
    client.send_text("truncated json").await;
    assert_eq!(client.next_text().await, r#"{"statusCode":200,"body":"#);
    still_open_then_closed(backend, gateway, client, connection_id).await;
}

#[tokio::test]
async fn backend_reply_over_the_limit_gets_internal_server_error() {
    // 10 MB is over the default `limits.integration_response_bytes` (6 MiB): the reply is not
    // read further and the client gets AWS's error frame.
    let (backend, gateway, mut client, connection_id) =
        misbehaving_backend("29s", |body| match body {
            "huge" => MockResponse::proxy(200, Some(&"h".repeat(10_000_000))),
            "huge plain" => MockResponse::status(200, &"p".repeat(10_000_000)),
            other => MockResponse::proxy(200, Some(other)),
        })
        .await;
    for message in ["huge", "huge plain"] {
        client.send_text(message).await;
        check_error_frame(
            &client.next_text().await,
            "Internal server error",
            &connection_id,
        );
    }
    still_open_then_closed(backend, gateway, client, connection_id).await;
}

#[tokio::test]
async fn backend_that_never_answers_gets_endpoint_request_timed_out() {
    let (backend, gateway, mut client, connection_id) =
        misbehaving_backend("300ms", |body| match body {
            "never" => MockResponse::proxy(200, None).delayed(Duration::from_secs(24 * 3600)),
            other => MockResponse::proxy(200, Some(other)),
        })
        .await;
    for _ in 0..3 {
        client.send_text("never").await;
        check_error_frame(
            &client.next_text().await,
            "Endpoint request timed out",
            &connection_id,
        );
    }
    still_open_then_closed(backend, gateway, client, connection_id).await;
}
