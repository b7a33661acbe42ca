//! Turning a client's bytes into messages: frame checks, unmasking, reassembly of fragments,
//! UTF-8 validation, decompression and the size limits.

use super::deflate::{Deflate, InflateError};
use super::frame::{self, Header, OpCode};
use crate::close::codes;

/// The size limits a reader enforces (RFC 6455 leaves them to the endpoint; AWS documents
/// 32 KiB frames and 128 KiB messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest frame payload.
    pub max_frame_bytes: usize,
    /// The largest message, after reassembly and decompression.
    pub max_message_bytes: usize,
}

/// What a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A complete text message.
    Text(String),
    /// A complete binary message.
    Binary(Vec<u8>),
    /// A ping, with its payload (to be echoed in the pong).
    Ping(Vec<u8>),
    /// A pong.
    Pong,
    /// A close frame: its status code and reason, if it had a code.
    Close(Option<(u16, String)>),
}

/// Why the connection must fail; each maps to the close code the client is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// A protocol violation: 1002.
    #[error("{0}")]
    Protocol(String),
    /// Invalid UTF-8 in a text message or close reason: 1007.
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// A frame or message over the limits: 1009.
    #[error("message too big")]
    TooBig,
}

impl From<frame::HeaderError> for ReadError {
    fn from(error: frame::HeaderError) -> Self {
        Self::Protocol(error.to_string())
    }
}

/// The outcome of one [`Reader::read`] call.
#[derive(Debug, PartialEq, Eq)]
pub struct Step {
    /// How many bytes from the start of the input were used up.
    pub consumed: usize,
    /// The message completed by those bytes, if any.
    pub message: Option<Message>,
    /// When no message completed: how many more bytes (after the unconsumed ones) the next
    /// frame needs at least.
    pub needed: usize,
}

/// A message whose frames are still arriving.
#[derive(Debug)]
struct Partial {
    text: bool,
    compressed: bool,
    data: Vec<u8>,
    /// How much of `data` is known to be valid UTF-8 (text, uncompressed only).
    checked: usize,
}

/// The receiving half of a server-side WebSocket: feed it the bytes read from the client.
#[derive(Debug)]
pub struct Reader {
    limits: Limits,
    /// Boxed: most connections do not negotiate it, and every connection's task carries
    /// this field.
    deflate: Option<Box<Deflate>>,
    partial: Option<Partial>,
}

impl Reader {
    /// A reader with the given limits; `deflate` when permessage-deflate was agreed.
    pub fn new(limits: Limits, deflate: Option<Deflate>) -> Self {
        Self {
            limits,
            deflate: deflate.map(Box::new),
            partial: None,
        }
    }

    /// Bytes held for a message whose frames are still arriving (its buffer's capacity).
    pub fn buffered_bytes(&self) -> usize {
        self.partial
            .as_ref()
            .map_or(0, |partial| partial.data.capacity())
    }

    /// The connection's permessage-deflate state, when it was agreed.
    pub fn deflate(&self) -> Option<&Deflate> {
        self.deflate.as_deref()
    }

    /// Reads whole frames from the front of `bytes` (unmasking them in place) until one
    /// completes a message or control frame, or the bytes run out.
    pub fn read(&mut self, bytes: &mut [u8]) -> Result<Step, ReadError> {
        let mut consumed = 0;
        loop {
            let rest = &mut bytes[consumed..];
            let Some(header) = frame::parse_header(rest)? else {
                return Ok(Step {
                    consumed,
                    message: None,
                    needed: frame::MAX_HEADER_LEN.min(header_len_hint(rest)) - rest.len(),
                });
            };
            self.check(&header)?;
            // Within the frame limit, so it fits a usize.
            let length = header.payload_len as usize;
            let total = header.header_len + length;
            if rest.len() < total {
                return Ok(Step {
                    consumed,
                    message: None,
                    needed: total - rest.len(),
                });
            }
            let payload = &mut rest[header.header_len..total];
            frame::apply_mask(payload, header.mask, 0);
            consumed += total;
            if let Some(message) = self.frame(&header, payload)? {
                return Ok(Step {
                    consumed,
                    message: Some(message),
                    needed: 0,
                });
            }
        }
    }

    /// The checks that need only the header, so a bad or oversize frame fails before its
    /// payload is read.
    fn check(&self, header: &Header) -> Result<(), ReadError> {
        if header.payload_len > self.limits.max_frame_bytes as u64 {
            return Err(ReadError::TooBig);
        }
        if header.rsv1 {
            let first_data = matches!(header.opcode, OpCode::Text | OpCode::Binary);
            if self.deflate.is_none() || !first_data {
                return Err(ReadError::Protocol("reserved bits set".to_owned()));
            }
        }
        match (header.opcode, &self.partial) {
            (OpCode::Continuation, None) => Err(ReadError::Protocol(
                "continuation frame without a message to continue".to_owned(),
            )),
            (OpCode::Text | OpCode::Binary, Some(_)) => Err(ReadError::Protocol(
                "new message before the previous one was finished".to_owned(),
            )),
            (OpCode::Continuation, Some(partial))
                if partial.data.len() as u64 + header.payload_len
                    > self.limits.max_message_bytes as u64 =>
            {
                Err(ReadError::TooBig)
            }
            _ if header.payload_len > self.limits.max_message_bytes as u64 => {
                Err(ReadError::TooBig)
            }
            _ => Ok(()),
        }
    }

    fn frame(&mut self, header: &Header, payload: &[u8]) -> Result<Option<Message>, ReadError> {
        match header.opcode {
            OpCode::Ping => Ok(Some(Message::Ping(payload.to_vec()))),
            OpCode::Pong => Ok(Some(Message::Pong)),
            OpCode::Close => close_frame(payload).map(|close| Some(Message::Close(close))),
            OpCode::Text | OpCode::Binary => {
                let text = header.opcode == OpCode::Text;
                if header.fin && !header.rsv1 {
                    // The common case: a whole message in one frame, one copy.
                    return finish(text, payload.to_vec()).map(Some);
                }
                let mut partial = Partial {
                    text,
                    compressed: header.rsv1,
                    data: payload.to_vec(),
                    checked: 0,
                };
                if header.fin {
                    return self.complete(partial).map(Some);
                }
                partial.check_utf8(false)?;
                self.partial = Some(partial);
                Ok(None)
            }
            OpCode::Continuation => {
                let mut partial = self
                    .partial
                    .take()
                    .expect("check() refuses a continuation without a message");
                partial.data.extend_from_slice(payload);
                if header.fin {
                    return self.complete(partial).map(Some);
                }
                partial.check_utf8(false)?;
                self.partial = Some(partial);
                Ok(None)
            }
        }
    }

    fn complete(&mut self, partial: Partial) -> Result<Message, ReadError> {
        if !partial.compressed {
            return finish(partial.text, partial.data);
        }
        let deflate = self
            .deflate
            .as_mut()
            .expect("check() refuses RSV1 unless deflate was agreed");
        let data = deflate
            .decompress(&partial.data, self.limits.max_message_bytes)
            .map_err(|error| match error {
                InflateError::TooBig => ReadError::TooBig,
                InflateError::Corrupt => ReadError::Protocol(error.to_string()),
            })?;
        finish(partial.text, data)
    }
}

impl Partial {
    /// Validates the UTF-8 received so far, so invalid text fails on the frame that holds
    /// it rather than at the end of the message; a sequence cut at the frame's end is fine
    /// until `complete`.
    fn check_utf8(&mut self, complete: bool) -> Result<(), ReadError> {
        if !self.text || self.compressed {
            return Ok(());
        }
        match std::str::from_utf8(&self.data[self.checked..]) {
            Ok(_) => {
                self.checked = self.data.len();
                Ok(())
            }
            Err(error) if error.error_len().is_none() && !complete => {
                self.checked += error.valid_up_to();
                Ok(())
            }
            Err(_) => Err(ReadError::InvalidUtf8),
        }
    }
}

fn finish(text: bool, data: Vec<u8>) -> Result<Message, ReadError> {
    if text {
        String::from_utf8(data)
            .map(Message::Text)
            .map_err(|_| ReadError::InvalidUtf8)
    } else {
        Ok(Message::Binary(data))
    }
}

/// How long the header starting with `bytes` is, as far as its first two bytes tell.
fn header_len_hint(bytes: &[u8]) -> usize {
    match bytes.get(1).map(|second| second & 0x7F) {
        None => 2,
        Some(126) => 8,
        Some(127) => 14,
        Some(_) => 6,
    }
}

/// Reads a close frame's payload (RFC 6455 §5.5.1, §7.4).
fn close_frame(payload: &[u8]) -> Result<Option<(u16, String)>, ReadError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ReadError::Protocol(
            "close frame with a one-byte payload".to_owned(),
        )),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !close_code_allowed(code) {
                return Err(ReadError::Protocol(format!("invalid close code {code}")));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| ReadError::InvalidUtf8)?;
            Ok(Some((code, reason.to_owned())))
        }
    }
}

/// Whether a peer may send `code` in a close frame: the defined codes that are not reserved
/// for local use, and the ranges for libraries (3000–3999) and applications (4000–4999).
pub fn close_code_allowed(code: u16) -> bool {
    matches!(code, codes::NORMAL..=codes::UNSUPPORTED_DATA | codes::INVALID_PAYLOAD..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::super::deflate::{DeflateConfig, negotiate};
    use super::*;
    use crate::websocket::frame::client_frame;

    const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

    fn reader() -> Reader {
        Reader::new(
            Limits {
                max_frame_bytes: 1000,
                max_message_bytes: 2500,
            },
            None,
        )
    }

    fn frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        client_frame(fin, false, opcode, MASK, payload)
    }

    /// Feeds `bytes` one byte at a time, as the slowest client would, and collects messages.
    fn feed(reader: &mut Reader, bytes: &[u8]) -> Result<Vec<Message>, ReadError> {
        let mut buffer = Vec::new();
        let mut messages = Vec::new();
        for byte in bytes {
            buffer.push(*byte);
            loop {
                let step = reader.read(&mut buffer)?;
                buffer.drain(..step.consumed);
                match step.message {
                    Some(message) => messages.push(message),
                    None => {
                        assert!(step.needed >= 1);
                        break;
                    }
                }
            }
        }
        assert!(buffer.is_empty(), "left over: {buffer:?}");
        Ok(messages)
    }

    #[test]
    fn whole_and_fragmented_messages_with_control_frames_between() {
        let mut bytes = frame(true, OpCode::Text, "héllo".as_bytes());
        bytes.extend(frame(false, OpCode::Binary, &[1, 2]));
        bytes.extend(frame(true, OpCode::Ping, b"are you there"));
        bytes.extend(frame(false, OpCode::Continuation, &[3]));
        bytes.extend(frame(true, OpCode::Continuation, &[4]));
        // A two-byte character split across fragments.
        bytes.extend(frame(false, OpCode::Text, &"é".as_bytes()[..1]));
        bytes.extend(frame(true, OpCode::Continuation, &"é".as_bytes()[1..]));
        bytes.extend(frame(true, OpCode::Pong, b""));
        bytes.extend(frame(true, OpCode::Close, &[0x03, 0xE8, b'o', b'k']));
        let messages = feed(&mut reader(), &bytes).unwrap();
        assert_eq!(
            messages,
            [
                Message::Text("héllo".to_owned()),
                Message::Ping(b"are you there".to_vec()),
                Message::Binary(vec![1, 2, 3, 4]),
                Message::Text("é".to_owned()),
                Message::Pong,
                Message::Close(Some((1000, "ok".to_owned()))),
            ]
        );
    }

    #[test]
    fn protocol_errors() {
        let cases: Vec<(Vec<u8>, ReadError)> = vec![
            (
                frame(true, OpCode::Continuation, b"x"),
                ReadError::Protocol("continuation frame without a message to continue".into()),
            ),
            (
                [
                    frame(false, OpCode::Text, b"a"),
                    frame(true, OpCode::Text, b"b"),
                ]
                .concat(),
                ReadError::Protocol("new message before the previous one was finished".into()),
            ),
            (
                client_frame(true, true, OpCode::Text, MASK, b"x"),
                ReadError::Protocol("reserved bits set".into()),
            ),
            (
                frame(true, OpCode::Close, &[3]),
                ReadError::Protocol("close frame with a one-byte payload".into()),
            ),
            (
                frame(true, OpCode::Close, &[0x03, 0xED]),
                ReadError::Protocol("invalid close code 1005".into()),
            ),
            (
                frame(true, OpCode::Close, &[0x03, 0xE8, 0xFF]),
                ReadError::InvalidUtf8,
            ),
            (
                frame(true, OpCode::Text, &[0xC3, 0x28]),
                ReadError::InvalidUtf8,
            ),
            (frame(true, OpCode::Binary, &[0; 1001]), ReadError::TooBig),
            (
                [
                    frame(false, OpCode::Binary, &[0; 1000]),
                    frame(false, OpCode::Continuation, &[0; 1000]),
                    frame(true, OpCode::Continuation, &[0; 501]),
                ]
                .concat(),
                ReadError::TooBig,
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(feed(&mut reader(), &bytes), Err(expected));
        }
    }

    #[test]
    fn invalid_utf8_fails_on_the_frame_that_holds_it() {
        let mut reader = reader();
        let mut first = frame(false, OpCode::Text, b"valid ");
        assert_eq!(reader.read(&mut first).unwrap().consumed, first.len());
        let mut second = frame(false, OpCode::Continuation, &[0xCE, 0xBA, 0xF4, 0x90]);
        assert_eq!(reader.read(&mut second), Err(ReadError::InvalidUtf8));
        // A frame ending inside a character is fine until the message ends there.
        let mut reader = super::tests::reader();
        let mut bytes = frame(false, OpCode::Text, &[0xE2, 0x82]);
        assert!(reader.read(&mut bytes).is_ok());
        let mut last = frame(true, OpCode::Continuation, b"");
        assert_eq!(reader.read(&mut last), Err(ReadError::InvalidUtf8));
    }

    #[test]
    fn close_codes() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1014, 3000, 4999,
        ] {
            assert!(close_code_allowed(code), "{code}");
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert!(!close_code_allowed(code), "{code}");
        }
    }

    #[test]
    fn compressed_fragments_are_joined_then_inflated() {
        let config = DeflateConfig::default();
        let (_, agreement) = negotiate(["permessage-deflate"], &config).unwrap();
        let mut reader = Reader::new(
            Limits {
                max_frame_bytes: 1 << 16,
                max_message_bytes: 1 << 16,
            },
            Some(Deflate::new(agreement, &config)),
        );
        let text = "compress me, compress me, compress me ".repeat(20);
        let mut compressor = flate2::Compress::new(flate2::Compression::default(), false);
        let mut compressed = Vec::with_capacity(2048);
        compressor
            .compress_vec(
                text.as_bytes(),
                &mut compressed,
                flate2::FlushCompress::Sync,
            )
            .unwrap();
        compressed.truncate(compressed.len() - 4);
        let (first, second) = compressed.split_at(compressed.len() / 2);
        let mut bytes = client_frame(false, true, OpCode::Text, MASK, first);
        bytes.extend(frame(true, OpCode::Continuation, second));
        assert_eq!(feed(&mut reader, &bytes).unwrap(), [Message::Text(text)]);
        // RSV1 on a continuation frame is an error.
        let mut bytes = client_frame(false, true, OpCode::Text, MASK, first);
        bytes.extend(client_frame(true, true, OpCode::Continuation, MASK, second));
        assert_eq!(
            feed(&mut reader, &bytes),
            Err(ReadError::Protocol("reserved bits set".into()))
        );
    }
}
