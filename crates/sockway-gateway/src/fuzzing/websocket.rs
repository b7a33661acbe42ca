//! The `websocket` target: a client's bytes through the server's WebSocket reader, with and
//! without permessage-deflate.

use sockway_protocol::websocket::deflate::{Agreement, Deflate, DeflateConfig};
use sockway_protocol::websocket::reader::{Limits, Message, ReadError, Reader};

const LIMITS: Limits = Limits {
    max_frame_bytes: 4096,
    max_message_bytes: 16384,
};

/// Input: one flags byte, then the bytes a client sends. Flags: bit 0, permessage-deflate
/// was agreed; bit 1, the client keeps its context (a 9-bit window, so the history wraps
/// often); bits 4–7, the size of the reads the bytes arrive in (0: all at once).
///
/// Checks: the messages and the error (if any) are the same whether the bytes arrive at once
/// or in reads of any size; a step never consumes more than it was given and, when it
/// completes nothing, asks for at least one more byte; messages stay within the limits.
pub fn websocket(data: &[u8]) {
    let Some((&flags, bytes)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(flags >> 4);
    let whole = read_all(flags, bytes, bytes.len().max(1));
    if chunk > 0 {
        assert_eq!(
            read_all(flags, bytes, chunk),
            whole,
            "reads of {chunk} bytes give other messages than one read"
        );
    }
    for message in &whole.0 {
        let length = match message {
            Message::Text(text) => text.len(),
            Message::Binary(bytes) => bytes.len(),
            Message::Ping(payload) => {
                assert!(payload.len() <= 125);
                payload.len()
            }
            Message::Pong | Message::Close(_) => 0,
        };
        assert!(length <= LIMITS.max_message_bytes);
    }
}

/// Feeds `bytes` to a fresh reader `chunk` bytes at a time; returns the messages up to the
/// first close frame, and the error that ended the stream, if any.
fn read_all(flags: u8, bytes: &[u8], chunk: usize) -> (Vec<Message>, Option<ReadError>) {
    let deflate = (flags & 1 != 0).then(|| {
        let agreement = Agreement {
            server_window_bits: 15,
            client_takeover: flags & 2 != 0,
            client_window_bits: 9,
        };
        Deflate::new(agreement, &DeflateConfig::default())
    });
    let mut reader = Reader::new(LIMITS, deflate);
    let mut buffer = Vec::new();
    let mut messages = Vec::new();
    for piece in bytes.chunks(chunk) {
        buffer.extend_from_slice(piece);
        loop {
            let given = buffer.len();
            let step = match reader.read(&mut buffer) {
                Ok(step) => step,
                Err(error) => return (messages, Some(error)),
            };
            assert!(step.consumed <= given, "consumed more than given");
            buffer.drain(..step.consumed);
            match step.message {
                Some(message) => {
                    let closed = matches!(message, Message::Close(_));
                    messages.push(message);
                    if closed {
                        return (messages, None);
                    }
                }
                None => {
                    assert!(step.needed >= 1, "no message and nothing more needed");
                    break;
                }
            }
        }
    }
    (messages, None)
}
