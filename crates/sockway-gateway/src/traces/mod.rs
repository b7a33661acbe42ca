//! OpenTelemetry traces: the gateway's own span records, sampled, queued and exported over
//! OTLP (`[tracing]`, off by default).
//!
//! These spans are not the `tracing` crate's: those serve the application log, and a log
//! filter would switch them on and off. A [`Span`] here is plain data the code that does the
//! work creates and fills (the upgrade, a routed message, an integration call, an
//! `@connections` call, `$disconnect`), so what is exported does not depend on the log level
//! and nothing is recorded when tracing is off: without `[tracing]`, `State::tracer` is `None`
//! and every call site is one branch on it (no clock read, no id drawn, no allocation).
//!
//! Sampling is parent-based over a trace-id ratio: a span continuing a caller's context
//! (`traceparent`, or an `X-Amzn-Trace-Id` with `Parent` and `Sampled`) follows the caller's
//! decision, a new trace is sampled when its random id falls under `tracing.sample_ratio`, and
//! a child follows its parent. An unsampled span still has ids, so the context sent to
//! backends stays consistent, but records nothing.
//!
//! Concurrency rules: recording never waits. A span is finished when it is dropped: it is
//! offered to a bounded queue with `try_send`, and a full queue drops it and counts it in
//! `sockway_trace_spans_dropped_total{reason="queue_full"}`. One exporter task
//! ([`exporter`]) owns the queue's receiving end, batches and sends; [`Tracer::shutdown`]
//! flushes it once the gateway's tasks are done.

mod exporter;

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use sockway_protocol::trace::otlp::{self, Attribute, SpanKind, Status, Value};
use sockway_protocol::trace::{SpanContext, SpanId, TraceId, XrayTraceHeader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::TracingConfig;
use crate::metrics::TraceMetrics;
use crate::random_bytes;

/// Attribute keys: OpenTelemetry's semantic conventions where they have one, the log's field
/// names (`connection_id`, `request_id`, `route_key`, ...) for sockway's own.
pub(crate) mod key {
    /// `http.request.method`.
    pub(crate) const HTTP_REQUEST_METHOD: &str = "http.request.method";
    /// `http.response.status_code`.
    pub(crate) const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
    /// `http.route`: the resource's pattern, e.g. `/@connections/{connectionId}`.
    pub(crate) const HTTP_ROUTE: &str = "http.route";
    /// `url.full`.
    pub(crate) const URL_FULL: &str = "url.full";
    /// `url.path`.
    pub(crate) const URL_PATH: &str = "url.path";
    /// `server.address`.
    pub(crate) const SERVER_ADDRESS: &str = "server.address";
    /// `server.port`.
    pub(crate) const SERVER_PORT: &str = "server.port";
    /// `client.address`: the client as trusted proxies name it.
    pub(crate) const CLIENT_ADDRESS: &str = "client.address";
    /// `network.peer.address`: the TCP peer.
    pub(crate) const NETWORK_PEER_ADDRESS: &str = "network.peer.address";
    /// `user_agent.original`.
    pub(crate) const USER_AGENT_ORIGINAL: &str = "user_agent.original";
    /// `faas.invoked_name`: the Lambda function's name.
    pub(crate) const FAAS_INVOKED_NAME: &str = "faas.invoked_name";
    /// `faas.invoked_provider`: `aws`.
    pub(crate) const FAAS_INVOKED_PROVIDER: &str = "faas.invoked_provider";
    /// `faas.invoked_region`.
    pub(crate) const FAAS_INVOKED_REGION: &str = "faas.invoked_region";
    /// `aws.lambda.invoked_arn`, when the function is configured by its ARN.
    pub(crate) const AWS_LAMBDA_INVOKED_ARN: &str = "aws.lambda.invoked_arn";
    /// `aws.request_id`: Lambda's `x-amzn-RequestId`.
    pub(crate) const AWS_REQUEST_ID: &str = "aws.request_id";
    /// `rpc.system`: `aws-api` for Lambda's Invoke.
    pub(crate) const RPC_SYSTEM: &str = "rpc.system";
    /// `rpc.service`: `Lambda`.
    pub(crate) const RPC_SERVICE: &str = "rpc.service";
    /// `rpc.method`: `Invoke`.
    pub(crate) const RPC_METHOD: &str = "rpc.method";
    /// `error.type`: what kind of failure, on a failed span.
    pub(crate) const ERROR_TYPE: &str = "error.type";
    /// The connection's id.
    pub(crate) const CONNECTION_ID: &str = "connection_id";
    /// The event's `requestId` (a management call's `x-amzn-RequestId`).
    pub(crate) const REQUEST_ID: &str = "request_id";
    /// `requestContext.messageId`.
    pub(crate) const MESSAGE_ID: &str = "message_id";
    /// The route key.
    pub(crate) const ROUTE_KEY: &str = "route_key";
    /// The stage.
    pub(crate) const STAGE: &str = "stage";
    /// The integration's name in `[integrations]`.
    pub(crate) const INTEGRATION: &str = "integration";
    /// The cluster node a call went to (its tag).
    pub(crate) const NODE: &str = "node";
    /// The authorizer's decision: `allow`, `unauthorized`, `deny` or `error`.
    pub(crate) const AUTHORIZER_OUTCOME: &str = "authorizer.outcome";
    /// `disconnectStatusCode`.
    pub(crate) const DISCONNECT_STATUS_CODE: &str = "disconnect_status_code";
    /// `disconnectReason`.
    pub(crate) const DISCONNECT_REASON: &str = "disconnect_reason";
}

/// The header W3C trace context travels in.
pub(crate) const TRACEPARENT: &str = "traceparent";
/// The header AWS's trace context travels in.
pub(crate) const X_AMZN_TRACE_ID: &str = "X-Amzn-Trace-Id";

/// Records spans and hands finished ones to the exporter. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Tracer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// A new trace is sampled when its id's random part is below this (`u64::MAX`: always).
    threshold: u64,
    /// Whether every new trace is sampled (`sample_ratio = 1`).
    always: bool,
    queue: mpsc::Sender<otlp::Span>,
    metrics: TraceMetrics,
    stop: CancellationToken,
    exporter: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Trace context a caller sent: the trace to continue, the caller's span and its sampling
/// decision, from `traceparent` or, without one, from a valid `X-Amzn-Trace-Id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Upstream {
    /// The trace.
    pub(crate) trace_id: TraceId,
    /// The caller's span; `None` when an `X-Amzn-Trace-Id` names only a root.
    pub(crate) parent: Option<SpanId>,
    /// The caller's decision; `None` when it left it to the gateway.
    pub(crate) sampled: Option<bool>,
}

/// A span being recorded. It is finished, and offered to the exporter, when dropped.
#[derive(Debug)]
pub(crate) struct Span {
    context: SpanContext,
    /// What is recorded; `None` for a span whose trace is not sampled.
    record: Option<Box<Record>>,
}

#[derive(Debug)]
struct Record {
    tracer: Tracer,
    data: otlp::Span,
}

impl Tracer {
    /// Starts the exporter for `config` and returns the tracer that feeds it. `node_id` is
    /// `service.instance.id`. Must be called inside the runtime.
    pub(crate) fn start(config: &TracingConfig, node_id: String, metrics: TraceMetrics) -> Tracer {
        let ratio = config.sample_ratio.get();
        let (queue, spans) = mpsc::channel(config.queue_size);
        let stop = CancellationToken::new();
        let exporter = exporter::Exporter::new(config, node_id, metrics.clone());
        let task = tokio::spawn(exporter::run(exporter, spans, stop.clone()));
        Tracer {
            inner: Arc::new(Inner {
                // The share of the u64 range below the threshold is the ratio.
                threshold: (ratio * u64::MAX as f64) as u64,
                always: ratio >= 1.0,
                queue,
                metrics,
                stop,
                exporter: Mutex::new(Some(task)),
            }),
        }
    }

    /// Starts a span with no parent in this process: continuing `incoming` when a caller sent
    /// trace context, else a new trace (whose id starts with the time, so that it is also an
    /// X-Ray root). `start` is when the work began.
    pub(crate) fn start_span(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        incoming: Option<Upstream>,
        start: SystemTime,
    ) -> Span {
        let (trace_id, parent, sampled) = match incoming {
            Some(incoming) => (
                incoming.trace_id,
                incoming.parent,
                incoming
                    .sampled
                    .unwrap_or_else(|| self.samples(incoming.trace_id)),
            ),
            None => {
                let seconds = start
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |since| since.as_secs());
                let trace_id = TraceId::from_time_and_random(seconds, random_bytes());
                (trace_id, None, self.samples(trace_id))
            }
        };
        let context = SpanContext {
            trace_id,
            span_id: SpanId::from_random(random_bytes()),
            sampled,
        };
        Span::new(
            self,
            context,
            parent,
            parent.is_some(),
            name.into(),
            kind,
            start,
        )
    }

    /// Whether a new trace with this id is recorded.
    fn samples(&self, trace_id: TraceId) -> bool {
        self.inner.always || trace_id.random_part() < self.inner.threshold
    }

    /// Sends what is queued and stops the exporter; spans finished after this are dropped.
    /// Called once the gateway's tasks are done, so every span they recorded is queued.
    pub(crate) async fn shutdown(&self) {
        self.inner.stop.cancel();
        let task = self
            .inner
            .exporter
            .lock()
            .expect("the exporter handle's lock is never poisoned")
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    fn submit(&self, span: otlp::Span) {
        if self.inner.queue.try_send(span).is_err() {
            self.inner.metrics.dropped_queue_full.inc();
        }
    }
}

impl Upstream {
    /// The context in a request's headers: a valid `traceparent` wins; otherwise a valid
    /// `X-Amzn-Trace-Id` (its root, and its `Parent` and `Sampled` when present).
    pub(crate) fn from_headers(traceparent: Option<&str>, xray: Option<&str>) -> Option<Upstream> {
        if let Some(context) = traceparent.and_then(SpanContext::parse_traceparent) {
            return Some(Upstream {
                trace_id: context.trace_id,
                parent: Some(context.span_id),
                sampled: Some(context.sampled),
            });
        }
        let header = xray.and_then(XrayTraceHeader::parse)?;
        Some(Upstream {
            trace_id: header.root,
            parent: header.parent,
            // A decision without a span to hang it on is the gateway's to make again.
            sampled: header.sampled.filter(|_| header.parent.is_some()),
        })
    }
}

impl Span {
    fn new(
        tracer: &Tracer,
        context: SpanContext,
        parent: Option<SpanId>,
        parent_is_remote: bool,
        name: Cow<'static, str>,
        kind: SpanKind,
        start: SystemTime,
    ) -> Span {
        let record = context.sampled.then(|| {
            Box::new(Record {
                tracer: tracer.clone(),
                data: otlp::Span {
                    context,
                    parent,
                    parent_is_remote,
                    name,
                    kind,
                    start_unix_nanos: unix_nanos(start),
                    end_unix_nanos: 0,
                    attributes: Vec::new(),
                    links: Vec::new(),
                    status: Status::Unset,
                },
            })
        });
        // An unsampled span keeps no tracer: nothing of it is exported.
        Span { context, record }
    }

    /// The span's context: what its children and the services it calls continue.
    pub(crate) fn context(&self) -> SpanContext {
        self.context
    }

    /// Whether the span records (its trace is sampled): attributes that cost something to
    /// compute are worth computing only then.
    pub(crate) fn is_recording(&self) -> bool {
        self.record.is_some()
    }

    /// Starts a child of this span, now.
    pub(crate) fn child(&self, name: &'static str, kind: SpanKind) -> Span {
        self.child_at(name, kind, SystemTime::now())
    }

    /// Starts a child of this span that began at `start`.
    pub(crate) fn child_at(&self, name: &'static str, kind: SpanKind, start: SystemTime) -> Span {
        let context = SpanContext {
            span_id: SpanId::from_random(random_bytes()),
            ..self.context
        };
        match &self.record {
            Some(record) => Span::new(
                &record.tracer,
                context,
                Some(self.context.span_id),
                false,
                Cow::Borrowed(name),
                kind,
                start,
            ),
            None => Span {
                context,
                record: None,
            },
        }
    }

    /// Sets an attribute (the last value set for a key is the one exported).
    pub(crate) fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(record) = &mut self.record {
            let attributes = &mut record.data.attributes;
            let value = value.into();
            match attributes.iter_mut().find(|attribute| attribute.key == key) {
                Some(attribute) => attribute.value = value,
                None => attributes.push(Attribute { key, value }),
            }
        }
    }

    /// Links the span to another trace's span (a message's span to its connection's).
    pub(crate) fn link(&mut self, context: SpanContext) {
        if let Some(record) = &mut self.record {
            record.data.links.push(context);
        }
    }

    /// Marks the span failed, with what went wrong.
    pub(crate) fn fail(&mut self, message: impl std::fmt::Display) {
        if let Some(record) = &mut self.record {
            record.data.status = Status::Error(message.to_string());
        }
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            let Record { tracer, mut data } = *record;
            data.end_unix_nanos = unix_nanos(SystemTime::now()).max(data.start_unix_nanos);
            tracer.submit(data);
        }
    }
}

/// Nanoseconds since the Unix epoch (0 before it).
fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    })
}

#[cfg(test)]
mod tests;
