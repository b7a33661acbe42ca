//! An OTLP/HTTP trace receiver on port 0 for the gateway's tests: it takes `POST /v1/traces`,
//! reads the spans out of each `ExportTraceServiceRequest` and keeps them for the test to wait
//! on, and answers as scripted (success, an error status, or no answer at all).
//!
//! The spans are read with a protobuf wire-format walker written here against the published
//! schema, independently of the gateway's encoder. The Python compatibility suite checks the
//! same traffic with the official `opentelemetry-proto` decoder, over HTTP and gRPC.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::{DEADLINE, http_server};

/// A receiver of OTLP/HTTP trace exports. Stops when dropped.
pub struct OtlpReceiver {
    addr: SocketAddr,
    state: Arc<State>,
    server: JoinHandle<()>,
}

/// How the receiver answers an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpAnswer {
    /// This HTTP status, with an empty `ExportTraceServiceResponse` (spans are kept only
    /// with a 2xx).
    Status(u16),
    /// No answer: the request hangs until the exporter gives up on it.
    Hang,
}

/// One span as received.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// Hex trace id.
    pub trace_id: String,
    /// Hex span id.
    pub span_id: String,
    /// Hex parent span id; empty for a root.
    pub parent_span_id: String,
    /// The name.
    pub name: String,
    /// `SpanKind` as a number (1 internal, 2 server, 3 client).
    pub kind: u64,
    /// Start and end, nanoseconds since the epoch.
    pub start_unix_nanos: u64,
    /// End.
    pub end_unix_nanos: u64,
    /// Attributes in order.
    pub attributes: Vec<(String, AttributeValue)>,
    /// Links as (hex trace id, hex span id).
    pub links: Vec<(String, String)>,
    /// `Status.code` (0 unset, 2 error) and message.
    pub status: (u64, String),
    /// `flags`: the W3C trace flags (bit 0, sampled) and whether the parent is remote (bit 9,
    /// with bit 8 saying the bit is set).
    pub flags: u32,
    /// The resource's attributes.
    pub resource: Vec<(String, AttributeValue)>,
}

/// An attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    /// `string_value`.
    String(String),
    /// `bool_value`.
    Bool(bool),
    /// `int_value`.
    Int(i64),
    /// `double_value`.
    Double(f64),
}

struct State {
    spans: Mutex<Vec<ReceivedSpan>>,
    arrived: Notify,
    script: Mutex<VecDeque<OtlpAnswer>>,
    requests: AtomicUsize,
}

impl OtlpReceiver {
    /// Starts a receiver that takes every export.
    pub async fn start() -> OtlpReceiver {
        let state = Arc::new(State {
            spans: Mutex::new(Vec::new()),
            arrived: Notify::new(),
            script: Mutex::new(VecDeque::new()),
            requests: AtomicUsize::new(0),
        });
        let server_state = state.clone();
        let (addr, server) = http_server::spawn("OTLP receiver", move |parts, body| {
            let state = server_state.clone();
            async move { serve(&parts, &body, &state).await }
        })
        .await;
        OtlpReceiver {
            addr,
            state,
            server,
        }
    }

    /// `http://127.0.0.1:PORT`, for `tracing.endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers the next exports with `answers`, in order, then takes exports again.
    pub fn answer_next(&self, answers: &[OtlpAnswer]) {
        self.state
            .script
            .lock()
            .expect("script lock")
            .extend(answers.iter().copied());
    }

    /// How many export requests arrived, answered or not.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.state.spans.lock().expect("spans lock").clone()
    }

    /// The first span received that matches `predicate`, waiting up to the test deadline.
    pub async fn span(
        &self,
        what: &str,
        predicate: impl Fn(&ReceivedSpan) -> bool,
    ) -> ReceivedSpan {
        let wait = async {
            loop {
                let arrived = self.state.arrived.notified();
                if let Some(span) = self.spans().into_iter().find(|span| predicate(span)) {
                    return span;
                }
                arrived.await;
            }
        };
        tokio::time::timeout(DEADLINE, wait)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no span {what} within {DEADLINE:?}; received: {:#?}",
                    self.spans()
                )
            })
    }

    /// The first span named `name` whose `route_key` attribute is `route_key` (any, when
    /// `None`), waiting up to the test deadline.
    pub async fn named(&self, name: &str, route_key: Option<&str>) -> ReceivedSpan {
        let what = format!("{name} ({route_key:?})");
        self.span(&what, |span| {
            span.name == name && route_key.is_none_or(|key| span.string("route_key") == Some(key))
        })
        .await
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl std::fmt::Debug for OtlpReceiver {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("OtlpReceiver")
            .field("addr", &self.addr)
            .finish()
    }
}

impl ReceivedSpan {
    /// An attribute's value.
    pub fn attribute(&self, key: &str) -> Option<&AttributeValue> {
        self.attributes
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
    }

    /// A string attribute.
    pub fn string(&self, key: &str) -> Option<&str> {
        match self.attribute(key)? {
            AttributeValue::String(text) => Some(text),
            _ => None,
        }
    }

    /// An integer attribute.
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.attribute(key)? {
            AttributeValue::Int(number) => Some(*number),
            _ => None,
        }
    }
}

async fn serve(
    parts: &http::request::Parts,
    body: &Bytes,
    state: &State,
) -> hyper::Response<http_body_util::Full<Bytes>> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let answer = state.script.lock().expect("script lock").pop_front();
    match answer {
        Some(OtlpAnswer::Hang) => std::future::pending().await,
        Some(OtlpAnswer::Status(status)) if !(200..300).contains(&status) => {
            return http_server::response(status, [], Bytes::new());
        }
        _ => {}
    }
    let is_protobuf = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|value| value == "application/x-protobuf");
    if parts.method != http::Method::POST || parts.uri.path() != "/v1/traces" || !is_protobuf {
        return http_server::response(404, [], Bytes::new());
    }
    let Some(spans) = decode_request(body) else {
        return http_server::response(400, [], Bytes::new());
    };
    state.spans.lock().expect("spans lock").extend(spans);
    state.arrived.notify_waiters();
    http_server::response(
        200,
        [(
            "content-type".to_owned(),
            "application/x-protobuf".to_owned(),
        )],
        Bytes::new(),
    )
}

/// One field of a protobuf message: its number and value.
enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// The fields of a message, in order; `None` when it is not valid protobuf.
fn fields(mut bytes: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut fields = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let field = match key & 7 {
            0 => Field::Varint(varint(&mut bytes)?),
            1 => {
                let (value, rest) = bytes.split_first_chunk::<8>()?;
                bytes = rest;
                Field::Fixed64(u64::from_le_bytes(*value))
            }
            2 => {
                let length = usize::try_from(varint(&mut bytes)?).ok()?;
                if bytes.len() < length {
                    return None;
                }
                let (value, rest) = bytes.split_at(length);
                bytes = rest;
                Field::Bytes(value)
            }
            5 => {
                let (value, rest) = bytes.split_first_chunk::<4>()?;
                bytes = rest;
                Field::Fixed32(u32::from_le_bytes(*value))
            }
            _ => return None,
        };
        fields.push((key >> 3, field));
    }
    Some(fields)
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

/// `ExportTraceServiceRequest` → its spans, each with its resource's attributes.
fn decode_request(body: &[u8]) -> Option<Vec<ReceivedSpan>> {
    let mut spans = Vec::new();
    for (number, field) in fields(body)? {
        let (1, Field::Bytes(resource_spans)) = (number, field) else {
            continue;
        };
        let mut resource = Vec::new();
        let mut scope_spans = Vec::new();
        for (number, field) in fields(resource_spans)? {
            match (number, field) {
                (1, Field::Bytes(bytes)) => {
                    for (number, field) in fields(bytes)? {
                        if let (1, Field::Bytes(key_value)) = (number, field) {
                            resource.push(decode_key_value(key_value)?);
                        }
                    }
                }
                (2, Field::Bytes(bytes)) => scope_spans.push(bytes),
                _ => {}
            }
        }
        for scope in scope_spans {
            for (number, field) in fields(scope)? {
                if let (2, Field::Bytes(span)) = (number, field) {
                    let mut span = decode_span(span)?;
                    span.resource = resource.clone();
                    spans.push(span);
                }
            }
        }
    }
    Some(spans)
}

fn decode_span(bytes: &[u8]) -> Option<ReceivedSpan> {
    let mut span = ReceivedSpan {
        trace_id: String::new(),
        span_id: String::new(),
        parent_span_id: String::new(),
        name: String::new(),
        kind: 0,
        start_unix_nanos: 0,
        end_unix_nanos: 0,
        attributes: Vec::new(),
        links: Vec::new(),
        status: (0, String::new()),
        flags: 0,
        resource: Vec::new(),
    };
    for (number, field) in fields(bytes)? {
        match (number, field) {
            (1, Field::Bytes(id)) => span.trace_id = hex::encode(id),
            (2, Field::Bytes(id)) => span.span_id = hex::encode(id),
            (4, Field::Bytes(id)) => span.parent_span_id = hex::encode(id),
            (5, Field::Bytes(name)) => span.name = String::from_utf8(name.to_vec()).ok()?,
            (6, Field::Varint(kind)) => span.kind = kind,
            (7, Field::Fixed64(time)) => span.start_unix_nanos = time,
            (8, Field::Fixed64(time)) => span.end_unix_nanos = time,
            (9, Field::Bytes(key_value)) => span.attributes.push(decode_key_value(key_value)?),
            (13, Field::Bytes(link)) => {
                let mut ids = (String::new(), String::new());
                for (number, field) in fields(link)? {
                    match (number, field) {
                        (1, Field::Bytes(id)) => ids.0 = hex::encode(id),
                        (2, Field::Bytes(id)) => ids.1 = hex::encode(id),
                        _ => {}
                    }
                }
                span.links.push(ids);
            }
            (15, Field::Bytes(status)) => {
                for (number, field) in fields(status)? {
                    match (number, field) {
                        (2, Field::Bytes(message)) => {
                            span.status.1 = String::from_utf8_lossy(message).into_owned();
                        }
                        (3, Field::Varint(code)) => span.status.0 = code,
                        _ => {}
                    }
                }
            }
            (16, Field::Fixed32(flags)) => span.flags = flags,
            _ => {}
        }
    }
    Some(span)
}

fn decode_key_value(bytes: &[u8]) -> Option<(String, AttributeValue)> {
    let mut key = String::new();
    let mut value = None;
    for (number, field) in fields(bytes)? {
        match (number, field) {
            (1, Field::Bytes(text)) => key = String::from_utf8(text.to_vec()).ok()?,
            (2, Field::Bytes(any)) => {
                for (number, field) in fields(any)? {
                    value = Some(match (number, field) {
                        (1, Field::Bytes(text)) => {
                            AttributeValue::String(String::from_utf8(text.to_vec()).ok()?)
                        }
                        (2, Field::Varint(flag)) => AttributeValue::Bool(flag != 0),
                        (3, Field::Varint(number)) => AttributeValue::Int(number as i64),
                        (4, Field::Fixed64(bits)) => AttributeValue::Double(f64::from_bits(bits)),
                        _ => return None,
                    });
                }
            }
            _ => {}
        }
    }
    Some((key, value?))
}
