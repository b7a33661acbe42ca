//! Trace context on the wire: trace and span ids, W3C `traceparent`, AWS X-Ray's
//! `X-Amzn-Trace-Id`, and OpenTelemetry's OTLP export messages ([`otlp`]).
//!
//! Ids are made from caller-supplied bytes, never drawn here. A trace id made by
//! [`TraceId::from_time_and_random`] starts with the epoch seconds, so that the same 16 bytes
//! are both a W3C trace id and an X-Ray root (`1-{8 hex seconds}-{24 hex}`), as OpenTelemetry's
//! X-Ray id generator makes them: a trace that starts at the gateway has one id in both worlds.
//!
//! Parsing is strict where the formats are (lower-case hex of the exact length, no all-zero
//! ids) and returns `None` on anything else: a header a client sent that is not valid is
//! treated as absent, never as an error.

pub mod otlp;

#[cfg(test)]
mod tests;

use std::fmt;

/// A 16-byte trace id, never all zeros.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 16]);

/// An 8-byte span id, never all zeros.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpanId([u8; 8]);

/// What travels from a span to its children and to other services: the trace, the span and
/// whether the trace is sampled (W3C `trace-flags` bit 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanContext {
    /// The trace.
    pub trace_id: TraceId,
    /// The span.
    pub span_id: SpanId,
    /// Whether the trace's spans are recorded (and should be by those who receive it).
    pub sampled: bool,
}

/// An `X-Amzn-Trace-Id` header read into its parts: `Root=1-{8 hex}-{24 hex}`, optionally
/// `Parent={16 hex}` and `Sampled={0|1|?}`, separated by `;` in any order. Other fields (AWS
/// adds `Lineage`, `Self`) are allowed and ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XrayTraceHeader {
    /// The root, as a trace id (the 8 and 24 hex digits together).
    pub root: TraceId,
    /// The caller's segment, when it named one.
    pub parent: Option<SpanId>,
    /// `Sampled=1` or `Sampled=0`; `None` when absent or `?` (the receiver decides).
    pub sampled: Option<bool>,
}

impl TraceId {
    /// The id of `bytes`; `None` for all zeros, which W3C reserves for "no trace".
    pub fn from_bytes(bytes: [u8; 16]) -> Option<TraceId> {
        (bytes != [0; 16]).then_some(TraceId(bytes))
    }

    /// A new trace id: the epoch seconds `unix_seconds` (as X-Ray's root carries them), then 12
    /// random bytes. Never all zeros: a zero random part is replaced by one.
    pub fn from_time_and_random(unix_seconds: u64, mut random: [u8; 12]) -> TraceId {
        if random == [0; 12] {
            random[11] = 1;
        }
        let mut bytes = [0; 16];
        // X-Ray's time field is 32 bits; it wraps in 2106.
        bytes[..4].copy_from_slice(&(unix_seconds as u32).to_be_bytes());
        bytes[4..].copy_from_slice(&random);
        TraceId(bytes)
    }

    /// The 16 bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    /// Reads 32 lower-case hex digits.
    pub fn parse_hex(hex: &str) -> Option<TraceId> {
        TraceId::from_bytes(decode_hex(hex)?)
    }

    /// The id as X-Ray writes a root: `1-{first 8 hex}-{last 24 hex}`.
    pub fn to_xray_root(self) -> String {
        // `1-`, 8 hex digits, `-`, 24 hex digits.
        let mut root = String::with_capacity(35);
        self.push_xray_root(&mut root);
        root
    }

    /// Appends [`TraceId::to_xray_root`] to `out`.
    pub fn push_xray_root(self, out: &mut String) {
        let mut text = [0u8; 32];
        let hex = hex_into(&self.0, &mut text);
        out.push_str("1-");
        out.push_str(&hex[..8]);
        out.push('-');
        out.push_str(&hex[8..]);
    }

    /// Reads an X-Ray root, `1-{8 hex}-{24 hex}`.
    pub fn parse_xray_root(root: &str) -> Option<TraceId> {
        let rest = root.strip_prefix("1-")?;
        let (seconds, random) = rest.split_once('-')?;
        if seconds.len() != 8 || random.len() != 24 {
            return None;
        }
        let mut hex = String::with_capacity(32);
        hex.push_str(seconds);
        hex.push_str(random);
        TraceId::parse_hex(&hex)
    }

    /// The last 8 bytes as a number: what a ratio sampler compares (they are random in every
    /// id this crate makes and, per W3C, in every id a conforming tracer makes).
    pub fn random_part(self) -> u64 {
        let mut low = [0; 8];
        low.copy_from_slice(&self.0[8..]);
        u64::from_be_bytes(low)
    }
}

impl SpanId {
    /// The id of `bytes`; `None` for all zeros. A zero random draw can be replaced with
    /// [`SpanId::from_random`].
    pub fn from_bytes(bytes: [u8; 8]) -> Option<SpanId> {
        (bytes != [0; 8]).then_some(SpanId(bytes))
    }

    /// A span id from random bytes, never all zeros: zeros become one.
    pub fn from_random(mut random: [u8; 8]) -> SpanId {
        if random == [0; 8] {
            random[7] = 1;
        }
        SpanId(random)
    }

    /// The 8 bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0
    }

    /// Reads 16 lower-case hex digits.
    pub fn parse_hex(hex: &str) -> Option<SpanId> {
        SpanId::from_bytes(decode_hex(hex)?)
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(formatter, &self.0)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(formatter, &self.0)
    }
}

impl SpanContext {
    /// The W3C `traceparent` value: `00-{trace id}-{span id}-{01|00}`.
    pub fn to_traceparent(&self) -> String {
        format!(
            "00-{}-{}-{}",
            self.trace_id,
            self.span_id,
            if self.sampled { "01" } else { "00" }
        )
    }

    /// Reads a W3C `traceparent` (trace-context level 1): version `00` with exactly four
    /// fields; a later version is read by its first four fields, as the specification asks.
    /// `None` for anything malformed, version `ff`, or an all-zero id.
    pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
        let value = value.trim_matches([' ', '\t']);
        let version = value.get(..2)?;
        let version = u8::from_str_radix(version, 16)
            .ok()
            .filter(|_| is_lower_hex(&value[..2]))?;
        if version == 0xff {
            return None;
        }
        // 2 + 1 + 32 + 1 + 16 + 1 + 2 characters.
        let (known, rest) = (value.get(..55)?, &value[55..]);
        let well_ended = match version {
            0 => rest.is_empty(),
            _ => rest.is_empty() || rest.starts_with('-'),
        };
        if !well_ended {
            return None;
        }
        let mut fields = known.split('-');
        let (_, trace, span, flags) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        if flags.len() != 2 || !is_lower_hex(flags) {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(SpanContext {
            trace_id: TraceId::parse_hex(trace)?,
            span_id: SpanId::parse_hex(span)?,
            sampled: flags & 1 == 1,
        })
    }

    /// The `X-Amzn-Trace-Id` value a service called from this span receives:
    /// `Root=1-{8 hex}-{24 hex};Parent={span id};Sampled={1|0}`.
    pub fn to_xray_header(&self) -> String {
        format!(
            "Root={};Parent={};Sampled={}",
            self.trace_id.to_xray_root(),
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

impl XrayTraceHeader {
    /// Reads an `X-Amzn-Trace-Id` value; `None` unless it has a valid `Root`. A malformed
    /// `Parent` or `Sampled` makes the whole header invalid, as it would confuse whoever reads
    /// it next.
    pub fn parse(value: &str) -> Option<XrayTraceHeader> {
        let mut root = None;
        let mut parent = None;
        let mut sampled = None;
        for field in value.split(';') {
            let field = field.trim();
            if field.is_empty() {
                continue;
            }
            let (key, value) = field.split_once('=')?;
            match key.trim() {
                "Root" if root.is_none() => root = Some(TraceId::parse_xray_root(value.trim())?),
                "Parent" if parent.is_none() => parent = Some(SpanId::parse_hex(value.trim())?),
                "Sampled" if sampled.is_none() => {
                    sampled = Some(match value.trim() {
                        "1" => Some(true),
                        "0" => Some(false),
                        "?" => None,
                        _ => return None,
                    });
                }
                "Root" | "Parent" | "Sampled" => return None,
                _ => {}
            }
        }
        Some(XrayTraceHeader {
            root: root?,
            parent,
            sampled: sampled.flatten(),
        })
    }
}

fn is_lower_hex(text: &str) -> bool {
    text.bytes()
        .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

fn decode_hex<const N: usize>(hex: &str) -> Option<[u8; N]> {
    if hex.len() != N * 2 || !is_lower_hex(hex) {
        return None;
    }
    let mut bytes = [0; N];
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[index * 2..index * 2 + 2], 16).ok()?;
    }
    Some(bytes)
}

fn write_hex(formatter: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    let mut text = [0u8; 32];
    formatter.write_str(hex_into(bytes, &mut text))
}

/// `bytes` as lowercase hex in `text` (twice their length), without the formatter's
/// machinery: ids are written on every connect.
fn hex_into<'t>(bytes: &[u8], text: &'t mut [u8]) -> &'t str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (byte, pair) in bytes.iter().zip(text.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
    let written = &text[..bytes.len() * 2];
    std::str::from_utf8(written).expect("hex digits are ASCII")
}
