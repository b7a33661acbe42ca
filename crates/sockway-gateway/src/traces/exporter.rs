//! The exporter task: finished spans from the queue, in batches, to the collector over
//! OTLP/HTTP (protobuf over HTTP/1.1, through a keep-alive client like the integrations') or
//! OTLP/gRPC (HTTP/2, gRPC's 5-byte framing, the status in the trailers).
//!
//! A batch goes out when it is full (`tracing.batch_size`) or when its first span has waited
//! `tracing.export_interval`. A request is bounded by `tracing.timeout`. A failure the
//! collector may recover from (no connection, HTTP 429/502/503/504, gRPC `UNAVAILABLE` and
//! its kin) is retried with jittered exponential backoff, honouring `Retry-After`; while it
//! waits, new spans queue (and past `tracing.queue_size` are dropped): connections never wait
//! for the collector. Any other answer drops the batch. Every failed attempt counts in
//! `sockway_trace_export_errors_total`, every lost span in `sockway_trace_spans_dropped_total`.
//! When stopped, what is batched and queued is sent once, within `tracing.timeout`.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use sockway_protocol::trace::otlp::{self, Attribute, PartialSuccess, Scope};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::{OtlpProtocol, TracingConfig};
use crate::metrics::TraceMetrics;
use crate::pool::{PooledClient, http2_client, pooled_client};

/// Attempts per batch, the first included.
const MAX_ATTEMPTS: u32 = 5;
/// The wait before the second attempt; each later one doubles, up to [`MAX_BACKOFF`]. The wait
/// taken is a random point in its upper half.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between attempts, `Retry-After` included.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The largest collector answer read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// The gRPC method spans are exported with.
const GRPC_EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Everything the task needs to send a batch.
pub(super) struct Exporter {
    client: PooledClient,
    protocol: OtlpProtocol,
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    export_interval: Duration,
    batch_size: usize,
    resource: Vec<Attribute>,
    metrics: TraceMetrics,
}

/// Why an export attempt failed.
#[derive(Debug, thiserror::Error)]
enum ExportError {
    /// The collector may take the batch later: try again (after `retry_after`, when it said).
    #[error("{message}")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The collector will not take this batch.
    #[error("{0}")]
    Refused(String),
}

impl Exporter {
    pub(super) fn new(config: &TracingConfig, node_id: String, metrics: TraceMetrics) -> Exporter {
        let (client, uri) = match config.protocol {
            OtlpProtocol::HttpProtobuf => (pooled_client(), config.endpoint.clone()),
            OtlpProtocol::Grpc => {
                let base = config.endpoint.to_string();
                let uri = format!("{}{GRPC_EXPORT_PATH}", base.trim_end_matches('/'))
                    .parse()
                    .expect("a validated endpoint without a path plus a fixed path is a URI");
                (http2_client(), uri)
            }
        };
        let headers = config
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    HeaderName::from_bytes(name.as_bytes())
                        .expect("validation checked the header name"),
                    HeaderValue::from_str(value).expect("validation checked the header value"),
                )
            })
            .collect();
        Exporter {
            client,
            protocol: config.protocol,
            uri,
            headers,
            timeout: config.timeout,
            export_interval: config.export_interval,
            batch_size: config.batch_size,
            resource: vec![
                Attribute {
                    key: "service.name",
                    value: config.service_name.clone().into(),
                },
                Attribute {
                    key: "service.version",
                    value: env!("CARGO_PKG_VERSION").into(),
                },
                Attribute {
                    key: "service.instance.id",
                    value: node_id.into(),
                },
            ],
            metrics,
        }
    }

    /// Exports `batch`, retrying what may succeed later, and empties it.
    async fn export(&self, batch: &mut Vec<otlp::Span>, stop: &CancellationToken) {
        let body = self.encode(batch);
        let mut attempt = 1;
        loop {
            let error = match self.send(body.clone()).await {
                Ok(partial) => {
                    self.exported(batch.len(), &partial);
                    break;
                }
                Err(error) => error,
            };
            self.metrics.export_errors.inc();
            let retry_after = match &error {
                ExportError::Transient { retry_after, .. } if attempt < MAX_ATTEMPTS => retry_after
                    .unwrap_or_else(|| backoff(attempt))
                    .min(MAX_BACKOFF),
                _ => {
                    warn!(error = %error, spans = batch.len(), attempts = attempt, "trace export failed; dropping the spans");
                    self.metrics
                        .dropped_export_failed
                        .inc_by(batch.len() as u64);
                    break;
                }
            };
            debug!(error = %error, attempt, "trace export failed; retrying");
            tokio::select! {
                _ = tokio::time::sleep(retry_after) => attempt += 1,
                // Stopping: the batch gets one more try in the flush.
                _ = stop.cancelled() => return,
            }
        }
        batch.clear();
    }

    /// One attempt at `batch`, for the flush at shutdown; empties it.
    async fn export_once(&self, batch: &mut Vec<otlp::Span>) {
        match self.send(self.encode(batch)).await {
            Ok(partial) => self.exported(batch.len(), &partial),
            Err(error) => {
                self.metrics.export_errors.inc();
                self.metrics
                    .dropped_export_failed
                    .inc_by(batch.len() as u64);
                warn!(error = %error, spans = batch.len(), "trace export failed at shutdown; dropping the spans");
            }
        }
        batch.clear();
    }

    fn exported(&self, sent: usize, partial: &PartialSuccess) {
        let rejected = usize::try_from(partial.rejected_spans)
            .unwrap_or(0)
            .min(sent);
        if rejected > 0 || !partial.error_message.is_empty() {
            warn!(rejected, message = %partial.error_message, "the trace collector rejected some spans");
        }
        self.metrics.exported.inc_by((sent - rejected) as u64);
        self.metrics.dropped_rejected.inc_by(rejected as u64);
    }

    fn encode(&self, batch: &[otlp::Span]) -> Bytes {
        let scope = Scope {
            name: "sockway",
            version: env!("CARGO_PKG_VERSION"),
        };
        let message = otlp::encode_export_request(&self.resource, scope, batch);
        match self.protocol {
            OtlpProtocol::HttpProtobuf => Bytes::from(message),
            OtlpProtocol::Grpc => grpc_frame(&message),
        }
    }

    /// One request, bounded by the timeout.
    async fn send(&self, body: Bytes) -> Result<PartialSuccess, ExportError> {
        match tokio::time::timeout(self.timeout, self.exchange(body)).await {
            Ok(result) => result,
            Err(_elapsed) => Err(ExportError::Transient {
                message: format!("no answer from {} within {:?}", self.uri, self.timeout),
                retry_after: None,
            }),
        }
    }

    async fn exchange(&self, body: Bytes) -> Result<PartialSuccess, ExportError> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(
                http::header::USER_AGENT,
                concat!("sockway/", env!("CARGO_PKG_VERSION")),
            );
        request = match self.protocol {
            OtlpProtocol::HttpProtobuf => {
                request.header(http::header::CONTENT_TYPE, "application/x-protobuf")
            }
            OtlpProtocol::Grpc => request
                .header(http::header::CONTENT_TYPE, "application/grpc")
                .header(http::header::TE, "trailers")
                .header("grpc-timeout", format!("{}m", self.timeout.as_millis())),
        };
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(body))
            .expect("a validated endpoint and validated headers form a valid request");
        let response =
            self.client
                .request(request)
                .await
                .map_err(|error| ExportError::Transient {
                    message: format!("{}: {}", self.uri, crate::ErrorChain(&error)),
                    retry_after: None,
                })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let grpc_status_in_headers = grpc_status(response.headers());
        let collected = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|error| ExportError::Transient {
                message: format!("{}: reading the answer: {error}", self.uri),
                retry_after: None,
            })?;
        let trailers = collected.trailers().cloned();
        let body = collected.to_bytes();
        match self.protocol {
            OtlpProtocol::HttpProtobuf => read_http_answer(status.as_u16(), retry_after, &body),
            OtlpProtocol::Grpc => {
                if !status.is_success() {
                    return Err(http_failure(status.as_u16(), retry_after));
                }
                // A trailers-only answer carries the status in the headers.
                let (code, message) = trailers
                    .as_ref()
                    .and_then(grpc_status)
                    .or(grpc_status_in_headers)
                    .ok_or_else(|| ExportError::Transient {
                        message: "gRPC answer without grpc-status".to_owned(),
                        retry_after: None,
                    })?;
                read_grpc_answer(code, &message, body)
            }
        }
    }
}

/// Runs the exporter until `stop` is cancelled, then sends what is left, once, within the
/// export timeout.
pub(super) async fn run(
    exporter: Exporter,
    mut spans: mpsc::Receiver<otlp::Span>,
    stop: CancellationToken,
) {
    let batch_size = exporter.batch_size;
    let mut batch = Vec::with_capacity(batch_size);
    'serve: loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break 'serve,
            received = spans.recv_many(&mut batch, batch_size) => if received == 0 { break 'serve },
        }
        let deadline = Instant::now() + exporter.export_interval;
        while batch.len() < batch_size {
            let room = batch_size - batch.len();
            tokio::select! {
                biased;
                _ = stop.cancelled() => break 'serve,
                _ = tokio::time::sleep_until(deadline) => break,
                received = spans.recv_many(&mut batch, room) => if received == 0 { break 'serve },
            }
        }
        exporter.export(&mut batch, &stop).await;
    }
    spans.close();
    let flush = async {
        loop {
            while batch.len() < batch_size {
                match spans.try_recv() {
                    Ok(span) => batch.push(span),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                return;
            }
            exporter.export_once(&mut batch).await;
        }
    };
    if tokio::time::timeout(exporter.timeout, flush).await.is_err() {
        let left = batch.len() + spans.len();
        exporter.metrics.dropped_export_failed.inc_by(left as u64);
        warn!(
            spans = left,
            "trace export did not finish at shutdown; dropping the spans"
        );
    }
}

/// What an OTLP/HTTP answer means: 2xx is success (with the partial success in its body),
/// 429, 502, 503 and 504 may pass, anything else refuses the batch.
fn read_http_answer(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<PartialSuccess, ExportError> {
    if (200..300).contains(&status) {
        // An answer that is not the protobuf message (a proxy's) still means it was taken.
        return Ok(otlp::decode_export_response(body).unwrap_or_default());
    }
    Err(http_failure(status, retry_after))
}

fn http_failure(status: u16, retry_after: Option<Duration>) -> ExportError {
    let message = format!("the collector answered HTTP {status}");
    match status {
        429 | 502 | 503 | 504 => ExportError::Transient {
            message,
            retry_after,
        },
        _ => ExportError::Refused(message),
    }
}

/// What a gRPC status means: 0 is success (with the response message), the codes the OTLP
/// specification calls retryable may pass, anything else refuses the batch.
fn read_grpc_answer(
    code: u32,
    message: &str,
    mut body: Bytes,
) -> Result<PartialSuccess, ExportError> {
    if code == 0 {
        // One length-prefixed, uncompressed message, or none.
        if body.len() >= 5 && body[0] == 0 {
            body.advance(1);
            let length = body.get_u32() as usize;
            if body.len() >= length {
                return Ok(otlp::decode_export_response(&body[..length]).unwrap_or_default());
            }
        }
        return Ok(PartialSuccess::default());
    }
    let text = format!("the collector answered gRPC status {code} {message}");
    // CANCELLED, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, OUT_OF_RANGE, UNAVAILABLE,
    // DATA_LOSS.
    if matches!(code, 1 | 4 | 8 | 10 | 11 | 14 | 15) {
        Err(ExportError::Transient {
            message: text,
            retry_after: None,
        })
    } else {
        Err(ExportError::Refused(text))
    }
}

/// `grpc-status` and `grpc-message` from a header map, when it has them.
fn grpc_status(headers: &http::HeaderMap) -> Option<(u32, String)> {
    let code = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let message = headers
        .get("grpc-message")
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            percent_encoding::percent_decode_str(value)
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    Some((code, message))
}

/// A message in gRPC's length-prefixed framing: not compressed, its length (u32 BE), its bytes.
fn grpc_frame(message: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(5 + message.len());
    frame.put_u8(0);
    frame.put_u32(u32::try_from(message.len()).expect("a batch is far smaller than 4 GiB"));
    frame.put_slice(message);
    frame.freeze()
}

/// The wait after failed attempt `attempt` (1-based): `FIRST_BACKOFF * 2^(attempt-1)`, of which
/// a random 50–100 % is taken.
fn backoff(attempt: u32) -> Duration {
    let full = FIRST_BACKOFF * 2u32.saturating_pow(attempt.saturating_sub(1));
    let [random] = crate::random_bytes::<1>();
    full / 2 + full / 2 * u32::from(random) / 255
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_answers() {
        let ok = read_http_answer(200, None, b"\x0a\x02\x08\x03").unwrap();
        assert_eq!(ok.rejected_spans, 3);
        assert_eq!(
            read_http_answer(202, None, b"not protobuf\xff").unwrap(),
            PartialSuccess::default()
        );
        for status in [429, 502, 503, 504] {
            assert!(matches!(
                read_http_answer(status, Some(Duration::from_secs(2)), b""),
                Err(ExportError::Transient { retry_after: Some(wait), .. }) if wait == Duration::from_secs(2)
            ));
        }
        for status in [400, 401, 404, 413, 500] {
            assert!(matches!(
                read_http_answer(status, None, b""),
                Err(ExportError::Refused(_))
            ));
        }
    }

    #[test]
    fn grpc_answers() {
        let framed = grpc_frame(b"\x0a\x02\x08\x01");
        assert_eq!(&framed[..5], b"\0\0\0\0\x04");
        assert_eq!(read_grpc_answer(0, "", framed).unwrap().rejected_spans, 1);
        assert_eq!(
            read_grpc_answer(0, "", Bytes::new()).unwrap(),
            PartialSuccess::default()
        );
        assert!(matches!(
            read_grpc_answer(14, "unavailable", Bytes::new()),
            Err(ExportError::Transient { .. })
        ));
        assert!(matches!(
            read_grpc_answer(3, "invalid argument", Bytes::new()),
            Err(ExportError::Refused(_))
        ));
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-status", HeaderValue::from_static("13"));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static("internal%20failure"),
        );
        assert_eq!(
            grpc_status(&headers),
            Some((13, "internal failure".to_owned()))
        );
    }

    #[test]
    fn backoff_grows_within_its_band() {
        for attempt in 1..MAX_ATTEMPTS {
            let full = FIRST_BACKOFF * 2u32.pow(attempt - 1);
            let wait = backoff(attempt);
            assert!(
                wait >= full / 2 && wait <= full,
                "attempt {attempt}: {wait:?}"
            );
        }
    }
}
