//! Access-log lines and the ring of recent records.
//!
//! One [`AccessEvent`] is recorded per CONNECT, MESSAGE and DISCONNECT and per management
//! call (`@connections`, groups, broadcast), carrying the same `requestId` the client or
//! backend saw. [`AccessLog::record`] keeps a small structured [`AccessRecord`] in an
//! in-memory ring (read by [`AccessLog::recent`]) and, when `[access_log]` is enabled, renders
//! the line from the configured `$context` template ([`Template`]) and hands it to the writer.
//!
//! Concurrency rules: recording never waits. The line is formatted on the caller's task and
//! offered to a bounded channel with `try_send`; when the channel is full the line is dropped
//! and counted in `sockway_access_log_dropped_total`, so a slow disk or a stalled stdout pipe
//! never slows traffic. One writer task (`writer`) owns the destination and its buffer. The
//! ring sits behind a `std::sync::Mutex` held for a push or a copy, never across `.await`.
//! What the events mean (statuses, latencies) is decided by the code that records them.
//!
//! A reload ([`AccessLog::prepare`], then [`AccessLog::switch`]) opens the destination again,
//! even an unchanged one (so a rotated file is let go of), and swaps in a new template, channel
//! and writer; recording reads the current ones through an `ArcSwapOption`, which costs no
//! lock. The writer before it writes every line already queued (it ends when the last sender
//! goes), and the new writer starts writing only once it has: no line is lost, and lines to
//! one destination stay in order.

mod template;
mod writer;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use sockway_protocol::error::ErrorFrame;
use sockway_protocol::event::ConnectionContext;
use sockway_protocol::result::IntegrationResponse;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{AccessLogConfig, Config};
use crate::integrations::IntegrationError;
use sockway_protocol::access_log::Template;

/// How many records the ring keeps.
pub(crate) const RECENT_CAPACITY: usize = 200;

/// Lines waiting for the writer before new ones are dropped.
const CHANNEL_CAPACITY: usize = 8192;

/// `$context.eventType`: AWS's three lifecycle events, plus sockway's management calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum EventType {
    /// The `$connect` phase of an upgrade request.
    Connect,
    /// A client message routed to its integration.
    Message,
    /// The `$disconnect` delivery after a connection closed.
    Disconnect,
    /// A call of the management API (`@connections`, groups, broadcast).
    Management,
    /// `[resume]`: a connection lost its socket and was suspended (a sockway extension).
    Suspend,
    /// `[resume]`: an upgrade that asked to resume a connection, and the `$resume` call (a
    /// sockway extension).
    Resume,
}

impl EventType {
    /// The value of `$context.eventType`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventType::Connect => "CONNECT",
            EventType::Message => "MESSAGE",
            EventType::Disconnect => "DISCONNECT",
            EventType::Management => "MANAGEMENT",
            EventType::Suspend => "SUSPEND",
            EventType::Resume => "RESUME",
        }
    }
}

/// Everything one access-log line can show. Fields left `None` render as `-`.
#[derive(Clone, Debug)]
pub(crate) struct AccessEvent {
    /// Which event this is.
    pub(crate) event_type: EventType,
    /// `$context.requestId`: the id the client sees in error frames and `x-amzn-RequestId`,
    /// and the backend in `requestContext.requestId`.
    pub(crate) request_id: String,
    /// `$context.requestTimeEpoch`: when the request arrived, in epoch milliseconds.
    pub(crate) request_time_epoch: i64,
    /// The connection's context, for the events of a WebSocket connection.
    pub(crate) connection: Option<Arc<ConnectionContext>>,
    /// The connection id a management call names, when it names one.
    pub(crate) connection_id: Option<String>,
    /// The caller's address for a management call (a connection's is in `connection`).
    pub(crate) source_ip: Option<String>,
    /// The caller's `User-Agent` for a management call.
    pub(crate) user_agent: Option<String>,
    /// The access key id a management call was signed with.
    pub(crate) access_key: Option<String>,
    /// `$context.routeKey`.
    pub(crate) route_key: Option<String>,
    /// `$context.messageId` (MESSAGE only).
    pub(crate) message_id: Option<String>,
    /// `$context.status`: the status of the gateway's answer.
    pub(crate) status: Option<u16>,
    /// `$context.error.*`: the error the client was answered with.
    pub(crate) error: Option<ErrorOutcome>,
    /// `$context.integration.*`: the integration call, when one was made.
    pub(crate) integration: Option<IntegrationOutcome>,
    /// `$context.authorizer.latency`, `.status`, `.error` (CONNECT only).
    pub(crate) authorizer: Option<AuthorizerDecision>,
    /// `$context.disconnectStatusCode` (DISCONNECT only).
    pub(crate) disconnect_status_code: Option<u16>,
    /// `$context.disconnectReason` (DISCONNECT only).
    pub(crate) disconnect_reason: Option<String>,
    /// `$context.httpMethod` (management calls).
    pub(crate) http_method: Option<String>,
    /// `$context.resourcePath`: the request path (management calls).
    pub(crate) resource_path: Option<String>,
    /// `$context.responseLength`: bytes of the answer's body.
    pub(crate) response_length: Option<usize>,
}

/// The error an event was answered with.
#[derive(Clone, Debug)]
pub(crate) struct ErrorOutcome {
    /// `$context.error.message`: the message the client saw.
    pub(crate) message: String,
    /// `$context.error.responseType`, AWS's gateway response type such as
    /// `INTEGRATION_FAILURE`.
    pub(crate) response_type: &'static str,
}

/// One integration call.
#[derive(Clone, Debug)]
pub(crate) struct IntegrationOutcome {
    /// `$context.integrationLatency`, in milliseconds.
    pub(crate) latency_ms: u64,
    /// `$context.integration.status`: the status the integration answered with.
    pub(crate) status: Option<u16>,
    /// `$context.integration.error`: why the call failed.
    pub(crate) error: Option<String>,
}

/// The authorizer's part of a CONNECT.
#[derive(Clone, Debug)]
pub(crate) struct AuthorizerDecision {
    /// `$context.authorizer.latency`, in milliseconds.
    pub(crate) latency_ms: Option<u64>,
    /// `$context.authorizer.status`: 200 when allowed, else the refusal status.
    pub(crate) status: u16,
    /// `$context.authorizer.error`: why the authorizer refused or failed.
    pub(crate) error: Option<String>,
}

/// One entry of the ring of recent events, for a console: the fields a route view needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AccessRecord {
    /// When the request arrived, in epoch milliseconds.
    pub(crate) timestamp: i64,
    /// `CONNECT`, `MESSAGE`, `DISCONNECT` or `MANAGEMENT`.
    pub(crate) event_type: EventType,
    /// The route key; for management calls the method and resource, e.g.
    /// `POST /@connections/{connectionId}`.
    pub(crate) route_key: Option<String>,
    /// The connection the event concerns.
    pub(crate) connection_id: Option<String>,
    /// The request id, as in the access-log line.
    pub(crate) request_id: String,
    /// The status of the gateway's answer.
    pub(crate) status: Option<u16>,
    /// How long the integration took, in milliseconds, when one was called.
    pub(crate) integration_latency_ms: Option<u64>,
    /// What the integration answered, when it answered.
    pub(crate) integration_status: Option<u16>,
    /// The error message the client saw, if any.
    pub(crate) error: Option<String>,
}

/// The gateway's access log: the ring of recent records and, when enabled, the line writer.
#[derive(Debug)]
pub(crate) struct AccessLog {
    /// The last [`RECENT_CAPACITY`] records, oldest first. A plain mutex: each use pushes or
    /// copies a few hundred small records and never awaits.
    recent: Mutex<VecDeque<AccessRecord>>,
    /// Renders and ships lines; `None` when `[access_log]` is disabled. Read on every event,
    /// replaced by a reload.
    lines: ArcSwapOption<Lines>,
    /// `sockway_access_log_dropped_total`.
    dropped: Counter,
    /// The newest writer task. Each writer waits for the one before it, so waiting for this
    /// one waits for every line recorded.
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// The line half of the access log.
#[derive(Debug)]
struct Lines {
    template: Template,
    api_id: String,
    stage: String,
    sender: mpsc::Sender<String>,
    /// Cancelled to make the writer flush what it has and stop.
    stop: CancellationToken,
}

/// The destination and template of a reloaded configuration, opened and not yet in use.
pub(crate) struct NextLines(Option<Opened>);

/// An enabled access log's opened destination and what its lines are made from.
struct Opened {
    output: writer::Output,
    template: Template,
    api_id: String,
    stage: String,
}

impl std::fmt::Debug for NextLines {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("NextLines")
            .field("enabled", &self.0.is_some())
            .finish()
    }
}

impl AccessEvent {
    /// An event with only its kind, request id and time set.
    pub(crate) fn new(event_type: EventType, request_id: String, request_time_epoch: i64) -> Self {
        AccessEvent {
            event_type,
            request_id,
            request_time_epoch,
            connection: None,
            connection_id: None,
            source_ip: None,
            access_key: None,
            user_agent: None,
            route_key: None,
            message_id: None,
            status: None,
            error: None,
            integration: None,
            authorizer: None,
            disconnect_status_code: None,
            disconnect_reason: None,
            http_method: None,
            resource_path: None,
            response_length: None,
        }
    }

    /// An event of a WebSocket connection.
    pub(crate) fn of_connection(
        event_type: EventType,
        connection: Arc<ConnectionContext>,
        request_id: String,
        request_time_epoch: i64,
    ) -> Self {
        AccessEvent {
            connection: Some(connection),
            ..AccessEvent::new(event_type, request_id, request_time_epoch)
        }
    }

    /// Sets the status of the gateway's answer and the error it carried.
    pub(crate) fn answered(&mut self, status: u16, error: Option<ErrorOutcome>) {
        self.status = Some(status);
        self.error = error;
    }

    /// The connection id the event concerns.
    fn connection_id(&self) -> Option<&str> {
        match &self.connection {
            Some(connection) => Some(connection.connection_id.as_str()),
            None => self.connection_id.as_deref(),
        }
    }

    fn to_record(&self) -> AccessRecord {
        AccessRecord {
            timestamp: self.request_time_epoch,
            event_type: self.event_type,
            route_key: self.route_key.clone(),
            connection_id: self.connection_id().map(str::to_owned),
            request_id: self.request_id.clone(),
            status: self.status,
            integration_latency_ms: self
                .integration
                .as_ref()
                .map(|integration| integration.latency_ms),
            integration_status: self
                .integration
                .as_ref()
                .and_then(|integration| integration.status),
            error: self.error.as_ref().map(|error| error.message.clone()),
        }
    }
}

impl ErrorOutcome {
    /// An error answered with `message`, of AWS's gateway response type `response_type`.
    pub(crate) fn new(message: impl Into<String>, response_type: &'static str) -> Self {
        ErrorOutcome {
            message: message.into(),
            response_type,
        }
    }

    /// The error a client's error frame reports, with its status.
    pub(crate) fn of_frame(frame: ErrorFrame) -> (u16, ErrorOutcome) {
        let (status, response_type) = match frame {
            ErrorFrame::InternalServerError => (500, "INTEGRATION_FAILURE"),
            ErrorFrame::EndpointRequestTimedOut => (504, "INTEGRATION_TIMEOUT"),
            ErrorFrame::Forbidden => (403, "MISSING_AUTHENTICATION_TOKEN"),
            ErrorFrame::TooManyRequests => (429, "THROTTLED"),
        };
        (status, ErrorOutcome::new(frame.message(), response_type))
    }
}

impl IntegrationOutcome {
    /// What one integration call gave, after `latency`.
    pub(crate) fn of(
        result: &Result<IntegrationResponse, IntegrationError>,
        latency: Duration,
    ) -> Self {
        let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        match result {
            Ok(response) => IntegrationOutcome {
                latency_ms,
                status: Some(response.status_code),
                error: None,
            },
            Err(error) => {
                let mut text = error.to_string();
                let mut source = std::error::Error::source(error);
                while let Some(cause) = source {
                    text.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                let status = match error {
                    IntegrationError::BackendFailed { status, .. } => Some(*status),
                    _ => None,
                };
                IntegrationOutcome {
                    latency_ms,
                    status,
                    error: Some(text),
                }
            }
        }
    }
}

impl AccessLog {
    /// The access log `config` asks for. With `[access_log]` enabled this spawns the writer
    /// task on the current runtime; `dropped` counts lines the writer could not take.
    pub(crate) fn start(config: &Config, dropped: Counter) -> Result<AccessLog, std::io::Error> {
        let next = AccessLog::prepare(config)?;
        let log = AccessLog {
            recent: Mutex::new(VecDeque::with_capacity(RECENT_CAPACITY)),
            lines: ArcSwapOption::empty(),
            dropped,
            writer: Mutex::new(None),
        };
        log.switch(next);
        Ok(log)
    }

    /// Opens the destination `config` names (when the access log is enabled), without using
    /// it yet: a reload does everything that can fail before it changes anything.
    pub(crate) fn prepare(config: &Config) -> Result<NextLines, std::io::Error> {
        let AccessLogConfig {
            enabled,
            format,
            destination,
        } = &config.access_log;
        if !*enabled {
            return Ok(NextLines(None));
        }
        Ok(NextLines(Some(Opened {
            output: writer::open(destination)?,
            template: format.template().clone(),
            api_id: config.gateway.api_id.clone(),
            stage: config.gateway.stage.clone(),
        })))
    }

    /// Makes lines recorded from now on go to `next`. The writer before it still writes every
    /// line it was handed, and the new one starts writing after it.
    pub(crate) fn switch(&self, next: NextLines) {
        let mut writer = self
            .writer
            .lock()
            .expect("no code panics holding the writer lock");
        let lines = next.0.map(|opened| {
            let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
            let stop = CancellationToken::new();
            let task = tokio::spawn(writer::run(
                opened.output,
                receiver,
                stop.clone(),
                writer.take(),
            ));
            *writer = Some(task);
            Arc::new(Lines {
                template: opened.template,
                api_id: opened.api_id,
                stage: opened.stage,
                sender,
                stop,
            })
        });
        // The old lines' sender goes with the last event that still holds them, and their
        // writer ends once it has written what they queued.
        drop(self.lines.swap(lines));
    }

    /// Records one event: into the ring always, and as a line when enabled. Never waits.
    pub(crate) fn record(&self, event: AccessEvent) {
        let record = event.to_record();
        {
            let mut recent = self
                .recent
                .lock()
                .expect("no code panics holding the ring lock");
            if recent.len() == RECENT_CAPACITY {
                recent.pop_front();
            }
            recent.push_back(record);
        }
        if let Some(lines) = &*self.lines.load() {
            let line = template::render(&lines.template, &event, &lines.api_id, &lines.stage);
            if lines.sender.try_send(line).is_err() {
                self.dropped.inc();
            }
        }
    }

    /// Up to `limit` of the most recent records, newest first.
    pub(crate) fn recent(&self, limit: usize) -> Vec<AccessRecord> {
        let recent = self
            .recent
            .lock()
            .expect("no code panics holding the ring lock");
        recent.iter().rev().take(limit).cloned().collect()
    }

    /// Flushes the lines recorded so far and stops the writers; later lines are dropped.
    pub(crate) async fn close(&self) {
        if let Some(lines) = &*self.lines.load() {
            lines.stop.cancel();
        }
        let task = self
            .writer
            .lock()
            .expect("no code panics holding the writer lock")
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests;
