//! OpenTelemetry's OTLP trace export as bytes: the spans of one batch in, the protobuf
//! `ExportTraceServiceRequest` out, and the collector's `ExportTraceServiceResponse` read back.
//!
//! The schema is `opentelemetry/proto/collector/trace/v1/trace_service.proto` and the messages
//! it uses (`trace/v1/trace.proto`, `common/v1/common.proto`, `resource/v1/resource.proto`).
//! Only what sockway records is encoded: a resource with attributes, one instrumentation scope,
//! spans with ids, parent, name, kind, times, attributes, links, status and flags. Fields are
//! written in field-number order and proto3 defaults are left out, as the reference encoders
//! do, so the bytes equal theirs (a test compares with bytes the official Python package
//! produced). The same message is the body of OTLP/HTTP (`application/x-protobuf`) and, behind
//! gRPC's 5-byte prefix, of OTLP/gRPC; framing and transport belong to the caller.

use std::borrow::Cow;

use super::{SpanContext, SpanId};

/// The kind of a span (`Span.SpanKind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    /// An operation inside the gateway.
    Internal = 1,
    /// The gateway serving a request.
    Server = 2,
    /// The gateway calling another service and waiting for its answer.
    Client = 3,
}

/// An attribute value (`AnyValue`, the scalar cases sockway records).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `string_value`.
    String(Cow<'static, str>),
    /// `int_value`.
    Int(i64),
    /// `bool_value`.
    Bool(bool),
    /// `double_value`.
    Double(f64),
}

impl From<&'static str> for Value {
    fn from(text: &'static str) -> Value {
        Value::String(Cow::Borrowed(text))
    }
}

impl From<String> for Value {
    fn from(text: String) -> Value {
        Value::String(Cow::Owned(text))
    }
}

impl From<i64> for Value {
    fn from(number: i64) -> Value {
        Value::Int(number)
    }
}

impl From<u16> for Value {
    fn from(number: u16) -> Value {
        Value::Int(i64::from(number))
    }
}

impl From<u32> for Value {
    fn from(number: u32) -> Value {
        Value::Int(i64::from(number))
    }
}

impl From<bool> for Value {
    fn from(flag: bool) -> Value {
        Value::Bool(flag)
    }
}

/// One attribute: a key from OpenTelemetry's semantic conventions or sockway's own log field
/// names, and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Attribute {
    /// The key, e.g. `http.request.method` or `connection_id`.
    pub key: &'static str,
    /// The value.
    pub value: Value,
}

/// A span's outcome (`Status`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Status {
    /// Nothing was said (`STATUS_CODE_UNSET`): a span that did not fail.
    #[default]
    Unset,
    /// The operation failed (`STATUS_CODE_ERROR`), with a message.
    Error(String),
}

/// One finished span, as exported.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    /// The span's own context (only sampled spans are exported).
    pub context: SpanContext,
    /// The parent span, when it has one.
    pub parent: Option<SpanId>,
    /// Whether the parent is in another process (a `traceparent` the gateway received).
    pub parent_is_remote: bool,
    /// The name, from a small fixed set (low cardinality, as the conventions ask).
    pub name: Cow<'static, str>,
    /// The kind.
    pub kind: SpanKind,
    /// Start, nanoseconds since the Unix epoch.
    pub start_unix_nanos: u64,
    /// End, nanoseconds since the Unix epoch.
    pub end_unix_nanos: u64,
    /// Attributes, in the order they were set.
    pub attributes: Vec<Attribute>,
    /// Spans of other traces this one relates to (a message's span links to its connection's).
    pub links: Vec<SpanContext>,
    /// The outcome.
    pub status: Status,
}

/// The instrumentation scope every span is exported under.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    /// The scope's name (`sockway`).
    pub name: &'a str,
    /// Its version.
    pub version: &'a str,
}

/// What the collector said about a batch it accepted (`ExportTracePartialSuccess`); both
/// fields are zero or empty when it took every span.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartialSuccess {
    /// Spans the collector rejected.
    pub rejected_spans: i64,
    /// Why, when it said.
    pub error_message: String,
}

/// An `ExportTraceServiceResponse` that is not valid protobuf.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed OTLP export response")]
pub struct MalformedResponse;

/// `flags` bit: the span says whether its parent is remote (`SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK`).
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
/// `flags` bit: the parent is remote (`SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`).
const FLAG_IS_REMOTE: u32 = 0x200;
/// `Status.code` of a failed span (`STATUS_CODE_ERROR`).
const STATUS_CODE_ERROR: u64 = 2;

/// Encodes one `ExportTraceServiceRequest`: one `ResourceSpans` with `resource`'s attributes,
/// one `ScopeSpans` for `scope`, and `spans`.
pub fn encode_export_request(resource: &[Attribute], scope: Scope<'_>, spans: &[Span]) -> Vec<u8> {
    let span_lengths: Vec<usize> = spans.iter().map(span_length).collect();
    let scope_length = string_field_length(1, scope.name) + string_field_length(2, scope.version);
    let scope_spans_length = nested_length(1, scope_length)
        + span_lengths
            .iter()
            .map(|length| nested_length(2, *length))
            .sum::<usize>();
    let resource_length = attributes_length(1, resource);
    let resource_spans_length =
        nested_length(1, resource_length) + nested_length(2, scope_spans_length);

    let mut out = Vec::with_capacity(nested_length(1, resource_spans_length));
    put_key(&mut out, 1, LEN);
    put_varint(&mut out, resource_spans_length as u64);
    // ResourceSpans.resource
    put_key(&mut out, 1, LEN);
    put_varint(&mut out, resource_length as u64);
    put_attributes(&mut out, 1, resource);
    // ResourceSpans.scope_spans
    put_key(&mut out, 2, LEN);
    put_varint(&mut out, scope_spans_length as u64);
    put_key(&mut out, 1, LEN);
    put_varint(&mut out, scope_length as u64);
    put_string_field(&mut out, 1, scope.name);
    put_string_field(&mut out, 2, scope.version);
    for (span, length) in spans.iter().zip(span_lengths) {
        put_key(&mut out, 2, LEN);
        put_varint(&mut out, length as u64);
        put_span(&mut out, span);
    }
    out
}

/// Reads an `ExportTraceServiceResponse` (an empty body is a full success).
pub fn decode_export_response(mut bytes: &[u8]) -> Result<PartialSuccess, MalformedResponse> {
    let mut partial = PartialSuccess::default();
    while !bytes.is_empty() {
        let (field, wire) = take_key(&mut bytes)?;
        if (field, wire) == (1, LEN) {
            let mut inner = take_length_delimited(&mut bytes)?;
            while !inner.is_empty() {
                match take_key(&mut inner)? {
                    (1, VARINT) => partial.rejected_spans = take_varint(&mut inner)? as i64,
                    (2, LEN) => {
                        let text = take_length_delimited(&mut inner)?;
                        partial.error_message = String::from_utf8_lossy(text).into_owned();
                    }
                    (_, wire) => skip(&mut inner, wire)?,
                }
            }
        } else {
            skip(&mut bytes, wire)?;
        }
    }
    Ok(partial)
}

// Wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

fn span_length(span: &Span) -> usize {
    let mut length = bytes_field_length(1, 16) + bytes_field_length(2, 8);
    if span.parent.is_some() {
        length += bytes_field_length(4, 8);
    }
    length += string_field_length(5, &span.name);
    length += key_length(6) + varint_length(span.kind as u64);
    length += 2 * (key_length(7) + 8);
    length += attributes_length(9, &span.attributes);
    for _ in &span.links {
        length += nested_length(13, link_length());
    }
    if let Status::Error(message) = &span.status {
        length += nested_length(15, status_length(message));
    }
    length + key_length(16) + 4
}

fn put_span(out: &mut Vec<u8>, span: &Span) {
    put_bytes_field(out, 1, &span.context.trace_id.to_bytes());
    put_bytes_field(out, 2, &span.context.span_id.to_bytes());
    if let Some(parent) = span.parent {
        put_bytes_field(out, 4, &parent.to_bytes());
    }
    put_string_field(out, 5, &span.name);
    put_key(out, 6, VARINT);
    put_varint(out, span.kind as u64);
    put_key(out, 7, FIXED64);
    out.extend_from_slice(&span.start_unix_nanos.to_le_bytes());
    put_key(out, 8, FIXED64);
    out.extend_from_slice(&span.end_unix_nanos.to_le_bytes());
    put_attributes(out, 9, &span.attributes);
    for link in &span.links {
        put_key(out, 13, LEN);
        put_varint(out, link_length() as u64);
        put_bytes_field(out, 1, &link.trace_id.to_bytes());
        put_bytes_field(out, 2, &link.span_id.to_bytes());
        put_key(out, 6, FIXED32);
        out.extend_from_slice(&trace_flags(link.sampled).to_le_bytes());
    }
    if let Status::Error(message) = &span.status {
        put_key(out, 15, LEN);
        put_varint(out, status_length(message) as u64);
        put_string_field(out, 2, message);
        put_key(out, 3, VARINT);
        put_varint(out, STATUS_CODE_ERROR);
    }
    let mut flags = trace_flags(span.context.sampled) | FLAG_HAS_IS_REMOTE;
    if span.parent.is_some() && span.parent_is_remote {
        flags |= FLAG_IS_REMOTE;
    }
    put_key(out, 16, FIXED32);
    out.extend_from_slice(&flags.to_le_bytes());
}

fn trace_flags(sampled: bool) -> u32 {
    u32::from(sampled)
}

/// A link's trace id, span id and flags.
fn link_length() -> usize {
    bytes_field_length(1, 16) + bytes_field_length(2, 8) + key_length(6) + 4
}

fn status_length(message: &str) -> usize {
    string_field_length(2, message) + key_length(3) + varint_length(STATUS_CODE_ERROR)
}

/// Every attribute as a repeated `KeyValue` field numbered `field`.
fn attributes_length(field: u32, attributes: &[Attribute]) -> usize {
    attributes
        .iter()
        .map(|attribute| nested_length(field, key_value_length(attribute)))
        .sum()
}

fn put_attributes(out: &mut Vec<u8>, field: u32, attributes: &[Attribute]) {
    for attribute in attributes {
        put_key(out, field, LEN);
        put_varint(out, key_value_length(attribute) as u64);
        put_string_field(out, 1, attribute.key);
        put_key(out, 2, LEN);
        put_varint(out, any_value_length(&attribute.value) as u64);
        match &attribute.value {
            Value::String(text) => {
                // A oneof member is written even when empty: its presence is the value.
                put_key(out, 1, LEN);
                put_varint(out, text.len() as u64);
                out.extend_from_slice(text.as_bytes());
            }
            Value::Bool(flag) => {
                put_key(out, 2, VARINT);
                put_varint(out, u64::from(*flag));
            }
            Value::Int(number) => {
                put_key(out, 3, VARINT);
                put_varint(out, *number as u64);
            }
            Value::Double(number) => {
                put_key(out, 4, FIXED64);
                out.extend_from_slice(&number.to_le_bytes());
            }
        }
    }
}

fn key_value_length(attribute: &Attribute) -> usize {
    string_field_length(1, attribute.key) + nested_length(2, any_value_length(&attribute.value))
}

fn any_value_length(value: &Value) -> usize {
    key_length(1)
        + match value {
            Value::String(text) => varint_length(text.len() as u64) + text.len(),
            Value::Bool(flag) => varint_length(u64::from(*flag)),
            Value::Int(number) => varint_length(*number as u64),
            Value::Double(_) => 8,
        }
}

/// A length-delimited field (key, length, `length` bytes) in total.
fn nested_length(field: u32, length: usize) -> usize {
    key_length(field) + varint_length(length as u64) + length
}

/// A `string` field, left out when empty (the proto3 default).
fn string_field_length(field: u32, text: &str) -> usize {
    if text.is_empty() {
        0
    } else {
        nested_length(field, text.len())
    }
}

fn bytes_field_length(field: u32, length: usize) -> usize {
    nested_length(field, length)
}

fn put_string_field(out: &mut Vec<u8>, field: u32, text: &str) {
    if !text.is_empty() {
        put_bytes_field(out, field, text.as_bytes());
    }
}

fn put_bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn key_length(field: u32) -> usize {
    varint_length(u64::from(field) << 3)
}

fn put_key(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn varint_length(value: u64) -> usize {
    // 7 bits a byte; zero takes one byte.
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn take_varint(bytes: &mut &[u8]) -> Result<u64, MalformedResponse> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first().ok_or(MalformedResponse)?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(MalformedResponse)
}

fn take_key(bytes: &mut &[u8]) -> Result<(u64, u8), MalformedResponse> {
    let key = take_varint(bytes)?;
    Ok((key >> 3, (key & 7) as u8))
}

fn take_length_delimited<'a>(bytes: &mut &'a [u8]) -> Result<&'a [u8], MalformedResponse> {
    let length = usize::try_from(take_varint(bytes)?).map_err(|_| MalformedResponse)?;
    if bytes.len() < length {
        return Err(MalformedResponse);
    }
    let (value, rest) = bytes.split_at(length);
    *bytes = rest;
    Ok(value)
}

/// Skips a field of an unknown number, as protobuf readers must.
fn skip(bytes: &mut &[u8], wire: u8) -> Result<(), MalformedResponse> {
    let skipped = match wire {
        VARINT => return take_varint(bytes).map(drop),
        FIXED64 => 8,
        LEN => return take_length_delimited(bytes).map(drop),
        FIXED32 => 4,
        _ => return Err(MalformedResponse),
    };
    if bytes.len() < skipped {
        return Err(MalformedResponse);
    }
    *bytes = &bytes[skipped..];
    Ok(())
}
