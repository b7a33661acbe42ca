//! permessage-deflate (RFC 7692): negotiating it, and compressing and decompressing
//! messages with memory bounded per connection.
//!
//! The design keeps no compressor or decompressor per connection:
//!
//! - the server always declares `server_no_context_takeover`, so each message it sends is
//!   compressed on its own, by a compressor that belongs to the worker thread and is reset
//!   between messages;
//! - messages from the client are decompressed by the thread's decompressor, reset per
//!   message. A client that keeps its compression context between messages (it did not offer
//!   `client_no_context_takeover`) may refer back into what it sent before, up to its window
//!   (2^bits bytes): the connection keeps the last window's worth of what it received and
//!   hands it to the decompressor as a preset dictionary. That history is the only state a
//!   connection holds, allocated when the first compressed message arrives and never more
//!   than the window, which [`DeflateConfig::client_max_window_bits`] caps whenever the
//!   client lets the server choose.

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The extension's registered name.
pub const EXTENSION: &str = "permessage-deflate";

/// The four bytes a sync flush ends with, which RFC 7692 §7.2.1 strips from each message.
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// The server's permessage-deflate settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// The zlib level (0–9) for messages the server sends.
    pub level: u32,
    /// Messages shorter than this go out uncompressed (the flag is per message).
    pub min_message_bytes: usize,
    /// The largest window (8–15) a client that keeps its context may use. Below 15, an offer
    /// that does not let the server set `client_max_window_bits` and does not promise
    /// `client_no_context_takeover` is declined, so no connection keeps more history than
    /// 2^bits bytes.
    pub client_max_window_bits: u8,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            level: 1,
            min_message_bytes: 64,
            client_max_window_bits: 15,
        }
    }
}

/// The parameters agreed with one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreement {
    /// The window the server compresses with (8–15).
    pub server_window_bits: u8,
    /// Whether the client keeps its context between messages.
    pub client_takeover: bool,
    /// The window the client compresses with (8–15).
    pub client_window_bits: u8,
}

impl Agreement {
    /// The `Sec-WebSocket-Extensions` value of the 101 response.
    pub fn response_header(&self, offer: &Offer) -> String {
        let mut header = format!("{EXTENSION}; server_no_context_takeover");
        if !self.client_takeover {
            header.push_str("; client_no_context_takeover");
        }
        if offer.server_max_window_bits.is_some() {
            header.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_window_bits
            ));
        }
        if self.client_takeover && offer.client_max_window_bits.is_some() {
            header.push_str(&format!(
                "; client_max_window_bits={}",
                self.client_window_bits
            ));
        }
        header
    }
}

/// One permessage-deflate offer from a client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offer {
    /// `server_no_context_takeover` was asked for (always granted).
    pub server_no_context_takeover: bool,
    /// The client will not keep its context.
    pub client_no_context_takeover: bool,
    /// `server_max_window_bits=N`.
    pub server_max_window_bits: Option<u8>,
    /// `client_max_window_bits`, with its value when it has one (`Some(None)`: the client
    /// lets the server choose).
    pub client_max_window_bits: Option<Option<u8>>,
}

/// Reads the `Sec-WebSocket-Extensions` header values of an upgrade request and picks the
/// first permessage-deflate offer the server can accept (RFC 7692 §5); returns it with what
/// was agreed. Malformed offers and other extensions are skipped.
pub fn negotiate<'a>(
    header_values: impl IntoIterator<Item = &'a str>,
    config: &DeflateConfig,
) -> Option<(Offer, Agreement)> {
    header_values
        .into_iter()
        .flat_map(|value| value.split(','))
        .filter_map(parse_offer)
        .find_map(|offer| accept(&offer, config).map(|agreement| (offer, agreement)))
}

/// Parses one comma-separated element; `None` if it is not a valid permessage-deflate offer.
fn parse_offer(element: &str) -> Option<Offer> {
    let mut parts = element.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(EXTENSION) {
        return None;
    }
    let mut offer = Offer::default();
    let mut seen = [false; 4];
    for part in parts {
        let (name, value) = match part.split_once('=') {
            Some((name, value)) => (name.trim(), Some(unquote(value.trim())?)),
            None => (part, None),
        };
        let slot = match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if value.is_none() => {
                offer.server_no_context_takeover = true;
                0
            }
            "client_no_context_takeover" if value.is_none() => {
                offer.client_no_context_takeover = true;
                1
            }
            "server_max_window_bits" => {
                offer.server_max_window_bits = Some(window_bits(value?)?);
                2
            }
            "client_max_window_bits" => {
                offer.client_max_window_bits = Some(match value {
                    Some(value) => Some(window_bits(value)?),
                    None => None,
                });
                3
            }
            _ => return None,
        };
        if std::mem::replace(&mut seen[slot], true) {
            return None;
        }
    }
    Some(offer)
}

fn unquote(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"'),
        None => Some(value),
    }
}

/// A window size parameter: 8 to 15, digits only, no leading zero (RFC 7692 §7.1.2).
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

fn accept(offer: &Offer, config: &DeflateConfig) -> Option<Agreement> {
    let server_window_bits = offer.server_max_window_bits.unwrap_or(15);
    let cap = config.client_max_window_bits.clamp(8, 15);
    let client_takeover = !offer.client_no_context_takeover;
    let client_window_bits = match offer.client_max_window_bits {
        Some(Some(offered)) => offered.min(cap),
        Some(None) => cap,
        // The client will use a 32 KiB window and the server cannot ask for less.
        None if client_takeover && cap < 15 => return None,
        None => 15,
    };
    Some(Agreement {
        server_window_bits,
        client_takeover,
        client_window_bits,
    })
}

/// Why a compressed message could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    /// The compressed data is not valid DEFLATE.
    #[error("invalid compressed data")]
    Corrupt,
    /// The message decompresses to more than the message size limit.
    #[error("message too big")]
    TooBig,
}

/// A connection's permessage-deflate state: what was agreed, and the client's recent
/// history when it keeps its context.
#[derive(Debug, Clone)]
pub struct Deflate {
    agreement: Agreement,
    level: u32,
    min_message_bytes: usize,
    /// The last up to 2^client_window_bits bytes the client sent (decompressed), when it
    /// keeps its context; empty until its first compressed message.
    history: Vec<u8>,
}

thread_local! {
    static INFLATE: RefCell<Decompress> = RefCell::new(Decompress::new(false));
    /// Compressors by (level, window bits); a handful at most.
    static DEFLATE: RefCell<Vec<(u32, u8, Compress)>> = const { RefCell::new(Vec::new()) };
}

impl Deflate {
    /// The state for a connection that agreed on `agreement`.
    pub fn new(agreement: Agreement, config: &DeflateConfig) -> Self {
        Self {
            agreement,
            level: config.level.min(9),
            min_message_bytes: config.min_message_bytes,
            history: Vec::new(),
        }
    }

    /// Decompresses one message (the payloads of its frames, joined); `max` bounds its
    /// decompressed size.
    pub fn decompress(&mut self, compressed: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
        let output = INFLATE.with(|inflate| {
            let mut inflate = inflate.borrow_mut();
            inflate.reset(false);
            if self.agreement.client_takeover && !self.history.is_empty() {
                inflate
                    .set_dictionary(&self.history)
                    .map_err(|_| InflateError::Corrupt)?;
            }
            let mut output = Vec::with_capacity((compressed.len() * 3).clamp(64, max.max(64)));
            inflate_into(&mut inflate, compressed, &mut output, max)?;
            inflate_into(&mut inflate, &SYNC_TAIL, &mut output, max)?;
            Ok(output)
        })?;
        if self.agreement.client_takeover {
            self.remember(&output);
        }
        Ok(output)
    }

    /// Keeps the last window's worth of what the client sent. The buffer grows by exactly
    /// what it needs, never past the window (a doubling `Vec` would hold up to twice it).
    fn remember(&mut self, message: &[u8]) {
        let window = 1usize << self.agreement.client_window_bits;
        let message = &message[message.len().saturating_sub(window)..];
        let excess = (self.history.len() + message.len()).saturating_sub(window);
        self.history.drain(..excess);
        self.history.reserve_exact(message.len());
        self.history.extend_from_slice(message);
    }

    /// Compresses a message to send, or `None` when it goes out uncompressed: shorter than
    /// the threshold, or longer than a 256-byte window allows (a client that asked for
    /// `server_max_window_bits=8`, which zlib cannot produce). Data that does not shrink is
    /// still sent compressed (slightly longer): the threshold, not the outcome, decides, so a
    /// client sees one behaviour for messages of one size.
    pub fn compress(&self, message: &[u8]) -> Option<Vec<u8>> {
        if message.len() < self.min_message_bytes {
            return None;
        }
        let bits = self.agreement.server_window_bits;
        // A message within the window cannot refer further back than its own length, so a
        // 9-bit compressor honours an 8-bit limit for it.
        if bits == 8 && message.len() > 256 {
            return None;
        }
        DEFLATE.with(|compressors| {
            let mut compressors = compressors.borrow_mut();
            let bits = bits.max(9);
            let index = match compressors
                .iter()
                .position(|(level, window, _)| *level == self.level && *window == bits)
            {
                Some(index) => index,
                None => {
                    let compressor =
                        Compress::new_with_window_bits(Compression::new(self.level), false, bits);
                    compressors.push((self.level, bits, compressor));
                    compressors.len() - 1
                }
            };
            let compressor = &mut compressors[index].2;
            compressor.reset();
            deflate_message(compressor, message)
        })
    }
}

fn inflate_into(
    inflate: &mut Decompress,
    mut input: &[u8],
    output: &mut Vec<u8>,
    max: usize,
) -> Result<(), InflateError> {
    loop {
        if output.len() == output.capacity() {
            if output.len() > max {
                return Err(InflateError::TooBig);
            }
            let more = output.len().clamp(256, 1 << 20);
            output.reserve(more.min(max + 1 - output.len()).max(1));
        }
        let before = inflate.total_in();
        let status = inflate
            .decompress_vec(input, output, FlushDecompress::Sync)
            .map_err(|_| InflateError::Corrupt)?;
        input = &input[(inflate.total_in() - before) as usize..];
        if output.len() > max {
            return Err(InflateError::TooBig);
        }
        let room_left = output.len() < output.capacity();
        match status {
            // A final block ends the stream: what follows it is not DEFLATE.
            Status::StreamEnd if !input.is_empty() => return Err(InflateError::Corrupt),
            Status::StreamEnd => return Ok(()),
            _ if input.is_empty() && room_left => return Ok(()),
            Status::BufError if room_left => return Err(InflateError::Corrupt),
            _ => {}
        }
    }
}

fn deflate_message(compressor: &mut Compress, message: &[u8]) -> Option<Vec<u8>> {
    let mut output = Vec::with_capacity(message.len() / 2 + 64);
    let mut input = message;
    loop {
        if output.len() == output.capacity() {
            output.reserve(output.len().max(64));
        }
        let before = compressor.total_in();
        compressor
            .compress_vec(input, &mut output, FlushCompress::Sync)
            .ok()?;
        input = &input[(compressor.total_in() - before) as usize..];
        if input.is_empty() && output.len() < output.capacity() {
            break;
        }
    }
    let body = output.len().checked_sub(SYNC_TAIL.len())?;
    if output[body..] != SYNC_TAIL {
        return None;
    }
    output.truncate(body);
    Some(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DeflateConfig {
        DeflateConfig {
            min_message_bytes: 0,
            ..DeflateConfig::default()
        }
    }

    fn agreed(header: &str, config: &DeflateConfig) -> Option<String> {
        negotiate([header], config).map(|(offer, agreement)| agreement.response_header(&offer))
    }

    #[test]
    fn negotiation_answers_per_rfc_7692() {
        let config = config();
        assert_eq!(
            agreed("permessage-deflate", &config).as_deref(),
            Some("permessage-deflate; server_no_context_takeover")
        );
        // What browsers send.
        assert_eq!(
            agreed("permessage-deflate; client_max_window_bits", &config).as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_max_window_bits=15")
        );
        assert_eq!(
            agreed(
                "permessage-deflate; client_no_context_takeover; server_max_window_bits=10",
                &config
            )
            .as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"
            )
        );
        assert_eq!(
            agreed(
                "x-webkit-deflate-frame, permessage-deflate; client_max_window_bits=\"10\"",
                &config
            )
            .as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_max_window_bits=10")
        );
        // Invalid offers are skipped for the next one.
        for bad in [
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; unknown",
            "deflate-frame",
        ] {
            assert_eq!(agreed(bad, &config), None, "{bad}");
        }
        assert_eq!(
            agreed(
                "permessage-deflate; server_max_window_bits=16, permessage-deflate",
                &config
            )
            .as_deref(),
            Some("permessage-deflate; server_no_context_takeover")
        );
    }

    #[test]
    fn a_window_cap_below_15_declines_clients_it_cannot_bound() {
        let config = DeflateConfig {
            client_max_window_bits: 10,
            ..config()
        };
        assert_eq!(agreed("permessage-deflate", &config), None);
        assert_eq!(
            agreed("permessage-deflate; client_max_window_bits", &config).as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_max_window_bits=10")
        );
        assert_eq!(
            agreed("permessage-deflate; client_no_context_takeover", &config).as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
    }

    /// Compresses like a client that keeps its context: one raw deflate stream, a sync
    /// flush after each message, the tail stripped.
    fn client_stream(messages: &[&[u8]], bits: u8) -> Vec<Vec<u8>> {
        let mut compressor = Compress::new_with_window_bits(Compression::new(6), false, bits);
        messages
            .iter()
            .map(|message| deflate_message(&mut compressor, message).unwrap())
            .collect()
    }

    fn session(header: &str) -> Deflate {
        let config = config();
        let (_, agreement) = negotiate([header], &config).unwrap();
        Deflate::new(agreement, &config)
    }

    #[test]
    fn context_takeover_messages_decompress_through_the_history() {
        let mut deflate = session("permessage-deflate; client_max_window_bits=9");
        let first = b"the quick brown fox jumps over the lazy dog ".repeat(4);
        let second = b"the quick brown fox jumps over the lazy dog again".to_vec();
        let third: Vec<u8> = (0..2000u32).map(|i| (i * 7 % 251) as u8).collect();
        let fourth = third[1500..].to_vec();
        let messages = [&first[..], &second, &third, &fourth];
        let compressed = client_stream(&messages, 9);
        // The second message refers back into the first: it is shorter than its text.
        assert!(compressed[1].len() < 20, "{}", compressed[1].len());
        for (message, compressed) in messages.iter().zip(&compressed) {
            assert_eq!(&deflate.decompress(compressed, 1 << 20).unwrap(), message);
            assert!(deflate.history.len() <= 512);
            assert!(
                deflate.history.capacity() <= 512,
                "{}",
                deflate.history.capacity()
            );
        }
    }

    #[test]
    fn no_context_takeover_keeps_no_history() {
        let mut deflate = session("permessage-deflate; client_no_context_takeover");
        for _ in 0..3 {
            let compressed = client_stream(&[b"hello hello hello hello"], 15);
            assert_eq!(
                deflate.decompress(&compressed[0], 1024).unwrap(),
                b"hello hello hello hello"
            );
            assert_eq!(deflate.history.len(), 0);
        }
    }

    #[test]
    fn decompression_is_bounded_and_checked() {
        let mut deflate = session("permessage-deflate");
        let bomb = client_stream(&[&vec![0; 1 << 20]], 15);
        assert!(bomb[0].len() < 2048);
        assert_eq!(
            deflate.decompress(&bomb[0], 1000),
            Err(InflateError::TooBig)
        );
        let mut deflate = session("permessage-deflate");
        assert_eq!(
            deflate.decompress(&[0xFF, 0xFF, 0xFF], 1000),
            Err(InflateError::Corrupt)
        );
        // An empty message is a single empty stored block.
        let mut deflate = session("permessage-deflate");
        let empty = client_stream(&[b""], 15);
        assert_eq!(deflate.decompress(&empty[0], 10).unwrap(), b"");
    }

    #[test]
    fn server_messages_decompress_alone() {
        for header in [
            "permessage-deflate",
            "permessage-deflate; server_max_window_bits=9",
            "permessage-deflate; server_max_window_bits=8",
        ] {
            let deflate = session(header);
            let message = b"{\"action\":\"sendmessage\",\"data\":\"hello hello hello\"}".repeat(3);
            let compressed = deflate.compress(&message).expect("compressible");
            assert!(compressed.len() < message.len());
            // A fresh decompressor (no context) reads it back.
            let mut reader = session("permessage-deflate; client_no_context_takeover");
            assert_eq!(reader.decompress(&compressed, 1 << 20).unwrap(), message);
        }
        // Too short, or over 256 bytes with an 8-bit window: sent as is.
        assert_eq!(
            Deflate::new(
                negotiate(["permessage-deflate"], &DeflateConfig::default())
                    .unwrap()
                    .1,
                &DeflateConfig::default()
            )
            .compress(b"short"),
            None
        );
        let narrow = session("permessage-deflate; server_max_window_bits=8");
        assert_eq!(narrow.compress(&[b'a'; 300]), None);
        // Incompressible: still compressed, somewhat longer (level 1 uses fixed Huffman codes).
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect();
        let compressed = session("permessage-deflate").compress(&noise).unwrap();
        assert!(
            compressed.len() <= noise.len() * 9 / 8,
            "{}",
            compressed.len()
        );
        let mut reader = session("permessage-deflate; client_no_context_takeover");
        assert_eq!(reader.decompress(&compressed, 1 << 20).unwrap(), noise);
        let empty = session("permessage-deflate").compress(b"").unwrap();
        assert_eq!(reader.decompress(&empty, 10).unwrap(), b"");
    }
}
