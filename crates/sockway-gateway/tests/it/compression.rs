//! permessage-deflate (RFC 7692) against a hand-written client: the negotiation in the 101,
//! compressed messages in both directions (the backend sees the plain text, the client gets
//! RSV1 frames that inflate to the answer), a client that keeps its context across messages,
//! and the failures: RSV1 without the extension, corrupt data, a decompression bomb.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use sockway_testkit::{MockBackend, TestGateway};

use crate::bad_input::{RawClient, connected_id, expect_disconnect, masked, read_frame};
use crate::config;

const ENABLED: &str = "\n[permessage_deflate]\nenabled = true\nmin_message_bytes = 0\n";

/// Compresses like a client keeping its context: one raw deflate stream, a sync flush per
/// message, the 00 00 FF FF tail removed (RFC 7692 §7.2.1).
struct ClientDeflater(Compress);

impl ClientDeflater {
    fn new() -> Self {
        Self(Compress::new(Compression::default(), false))
    }

    fn compress(&mut self, message: &[u8]) -> Vec<u8> {
        let mut output = Vec::with_capacity(message.len() + 64);
        self.0
            .compress_vec(message, &mut output, FlushCompress::Sync)
            .unwrap();
        assert!(output.ends_with(&[0, 0, 0xFF, 0xFF]));
        output.truncate(output.len() - 4);
        output
    }
}

/// Inflates one server message on its own (the server never keeps its context).
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xFF, 0xFF]);
    let mut output = Vec::with_capacity(1 << 16);
    Decompress::new(false)
        .decompress_vec(&input, &mut output, FlushDecompress::Sync)
        .unwrap();
    output
}

fn extensions(head: &str) -> Option<&str> {
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("Sec-WebSocket-Extensions")
            .then(|| value.trim())
    })
}

#[tokio::test]
async fn compressed_both_ways_with_client_context_takeover() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, ENABLED)).await;
    let (mut client, head) = RawClient::connect_with(
        &gateway,
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
    )
    .await;
    assert_eq!(
        extensions(&head),
        Some("permessage-deflate; server_no_context_takeover; client_max_window_bits=15"),
        "{head}"
    );
    let connection_id = connected_id(&mut backend).await;

    let mut deflater = ClientDeflater::new();
    let first = r#"{"action":"chat","text":"compress me, compress me, compress me"}"#;
    let second = r#"{"action":"chat","text":"compress me, compress me, compress me!"}"#;
    for message in [first, second] {
        let compressed = deflater.compress(message.as_bytes());
        if message == second {
            // The second message is mostly a reference into the first (context takeover).
            assert!(compressed.len() < 20, "{}", compressed.len());
        }
        // RSV1 on the first frame: a compressed text message.
        client.send(&masked(0xC1, &compressed)).await;
        let event = backend.next_event_for("$default").await;
        assert_eq!(event["body"], message, "{event}");
        let (first_byte, payload) = read_frame(&mut client.stream).await.unwrap();
        assert_eq!(first_byte, 0xC1, "FIN, RSV1, text");
        assert_eq!(inflate(&payload), message.as_bytes());
    }

    // A compressed message in two fragments: RSV1 on the first only.
    let third = "fragmented and compressed ".repeat(8);
    let compressed = deflater.compress(third.as_bytes());
    let (head_part, tail_part) = compressed.split_at(compressed.len() / 2);
    client.send(&masked(0x41, head_part)).await;
    client.send(&masked(0x80, tail_part)).await;
    assert_eq!(backend.next_event_for("$default").await["body"], third);
    let (_, payload) = read_frame(&mut client.stream).await.unwrap();
    assert_eq!(inflate(&payload), third.as_bytes());

    // An uncompressed message is still fine within the session.
    client.send(&masked(0x81, b"plain")).await;
    assert_eq!(backend.next_event_for("$default").await["body"], "plain");
    let (first_byte, payload) = read_frame(&mut client.stream).await.unwrap();
    assert_eq!(first_byte, 0xC1);
    assert_eq!(inflate(&payload), b"plain");

    client.send(&masked(0x88, &1000u16.to_be_bytes())).await;
    expect_disconnect(&mut backend, &connection_id, 1000).await;
}

#[tokio::test]
async fn off_by_default_and_rsv1_is_then_a_protocol_error() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, "")).await;
    let (mut client, head) =
        RawClient::connect_with(&gateway, "Sec-WebSocket-Extensions: permessage-deflate\r\n").await;
    assert_eq!(extensions(&head), None, "{head}");
    let connection_id = connected_id(&mut backend).await;
    let compressed = ClientDeflater::new().compress(b"hello");
    client.send(&masked(0xC1, &compressed)).await;
    assert_eq!(client.close_code().await, Some(1002));
    expect_disconnect(&mut backend, &connection_id, 1002).await;
}

#[tokio::test]
async fn corrupt_data_and_bombs_close_the_connection() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, ENABLED)).await;
    let offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n";

    let (mut client, _) = RawClient::connect_with(&gateway, offer).await;
    let connection_id = connected_id(&mut backend).await;
    client.send(&masked(0xC1, &[0xFF, 0xFF, 0xFF, 0xFF])).await;
    assert_eq!(client.close_code().await, Some(1002));
    expect_disconnect(&mut backend, &connection_id, 1002).await;

    // 16 MiB of zeros compress to about 16 KiB; the default message limit is 128 KiB.
    let (mut client, _) = RawClient::connect_with(&gateway, offer).await;
    let connection_id = connected_id(&mut backend).await;
    let bomb = ClientDeflater::new().compress(&vec![0; 16 << 20]);
    assert!(bomb.len() < 32 << 10, "{}", bomb.len());
    client.send(&masked(0xC2, &bomb)).await;
    assert_eq!(client.close_code().await, Some(1009));
    expect_disconnect(&mut backend, &connection_id, 1009).await;

    // The gateway still serves others.
    let mut other = gateway.connect().await;
    other.send_text("still here").await;
    assert_eq!(other.next_text().await, "still here");
}

#[tokio::test]
async fn a_window_cap_declines_offers_it_cannot_bound() {
    let backend = MockBackend::start().await;
    let extra = format!("{ENABLED}client_max_window_bits = 10\n");
    let gateway = TestGateway::start(&config(&backend, &extra)).await;
    let (_, head) =
        RawClient::connect_with(&gateway, "Sec-WebSocket-Extensions: permessage-deflate\r\n").await;
    assert_eq!(extensions(&head), None, "{head}");
    let (_, head) = RawClient::connect_with(
        &gateway,
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, permessage-deflate\r\n",
    )
    .await;
    assert_eq!(
        extensions(&head),
        Some("permessage-deflate; server_no_context_takeover; client_max_window_bits=10")
    );
}
