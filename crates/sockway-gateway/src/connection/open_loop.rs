//! The open loop of one connection: read client frames and route them, answer finished
//! integrations, write what the mailbox holds, ping, and watch the idle and duration
//! deadlines, until something ends the connection.
//!
//! Concurrency rules: the loop never awaits a backend. Integrations run as futures the task
//! polls alongside the socket (`FuturesUnordered`, no task of their own: a message's round trip
//! then wakes one task fewer) and come back as loop events; a panic in one is caught by the
//! integration and answered like any failed integration (error frame, metric, access-log
//! line); when `limits.max_inflight_integrations` are running, the loop stops reading frames
//! (backpressure) instead of queueing. Writes to the socket are bounded by [`SEND_TIMEOUT`]: a
//! client that does not read is closed as a slow consumer rather than buffered for without
//! bound.
//!
//! With `[tracing]`, each message is a `MESSAGE` span, the root of a trace of its own (a
//! connection can live for hours; one trace per message keeps traces small, as AWS makes one
//! request id per message), linked to the connection's `CONNECT` span, with the route
//! selection and the integration call as children. Without it, the one cost here is a branch
//! on `State::tracer`.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use sockway_protocol::close::CloseCause;
use sockway_protocol::error::ErrorFrame;
use sockway_protocol::event::ConnectionContext;
use sockway_protocol::id::RequestId;
use sockway_protocol::result::IntegrationResponse;
use sockway_protocol::route::RouteKey;
use sockway_protocol::trace::SpanContext;
use sockway_protocol::trace::otlp::SpanKind;
use sockway_protocol::websocket::reader::Message;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::resume::Replay;
use super::socket::WebSocket;
use super::timers::{Clock, Deadlines, Due, Heartbeat};
use crate::access_log::{AccessEvent, ErrorOutcome, EventType, IntegrationOutcome};
use crate::config::BinaryFrames;
use crate::integrations::{Call, CallKind, IntegrationError, Payload};
use crate::metrics::Throttled;
use crate::registry::{ConnectionHandle, ConnectionInfo, Next, Outbound, Takeover};
use crate::routing::{Route, Selection};
use crate::state::State;
use crate::traces::{Span, Tracer, key};
use crate::{ErrorChain, epoch_millis, random_bytes};

/// How long one write to a client may take before the client counts as not reading.
pub(super) const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the client's answer to our close frame before dropping the socket.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// The state of one open connection's task.
pub(super) struct Connection {
    pub(super) state: Arc<State>,
    /// Its id, context and close token are the connection's, held once.
    pub(super) handle: ConnectionHandle,
    pub(super) inflight: FuturesUnordered<Inflight>,
    /// What a resumable connection (`[resume]`, and its client asked) has sent, for replay;
    /// `None` otherwise, which costs nothing.
    pub(super) replay: Option<Box<Replay>>,
    /// The connection's `CONNECT` span, which its messages' spans link to (tracing).
    pub(super) connect_span: Option<Box<SpanContext>>,
}

/// Why one socket of a connection stopped being served.
pub(super) enum Ended {
    /// The connection ends or, when the cause suspends it, waits for its client.
    Closed(CloseCause),
    /// A new socket resumed the connection while this one was still open.
    TakenOver(Takeover),
}

/// What woke the open loop and asks for a write or a call: handed whole to
/// [`Connection::on_event`].
enum Event {
    /// A message from the client, to route.
    Message(Payload),
    /// An integration finished.
    Completed(Completion),
    /// A message from the mailbox, for the client.
    Push(Outbound),
    /// The heartbeat asks for a ping.
    Heartbeat,
    /// The client pinged: the pong is owed.
    Pinged,
}

/// An integration running for one message (a panic in it comes back as a failed integration).
pub(super) type Inflight = Pin<Box<dyn Future<Output = Completion> + Send>>;

/// A finished integration for one message.
pub(super) struct Completion {
    pub(super) route: Arc<Route>,
    pub(super) request_id: RequestId,
    pub(super) message_id: RequestId,
    /// When the message arrived, in epoch milliseconds.
    pub(super) requested_at: i64,
    pub(super) result: Result<IntegrationResponse, IntegrationError>,
    /// How long the integration took.
    pub(super) latency: Duration,
    /// The message's span, finished once the client has the answer (tracing). Boxed: a
    /// completion is part of the open loop's state, which every idle connection holds.
    pub(super) span: Option<Box<Span>>,
}

impl Connection {
    /// The loop's state for a connection that has just been registered.
    pub(super) fn new(
        state: Arc<State>,
        handle: ConnectionHandle,
        replay: Option<Box<Replay>>,
        connect_span: Option<Box<SpanContext>>,
    ) -> Connection {
        Connection {
            state,
            handle,
            inflight: FuturesUnordered::new(),
            replay,
            connect_span,
        }
    }

    /// The open loop. Returns why the connection ends.
    ///
    /// What happens once an event arrived (route a message, answer a completed integration,
    /// write a push or a ping) runs boxed, in [`Connection::on_event`]: that future exists only
    /// while it runs, so the task an idle connection keeps holds the loop's waiting state
    /// alone (see `an_open_connection_task_stays_small`). One small allocation per message
    /// buys about 1.4 KiB less per open connection. For the same reason the `select!`'s
    /// branches only say what happened, and each event is handed on whole: a value taken
    /// apart across an await point keeps its whole slot (the select's output, as large as a
    /// finished integration) in the state every idle connection holds.
    pub(super) async fn run<S>(&mut self, socket: &mut WebSocket<S>) -> Ended
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // A resumable connection's first message is its resume frame (here rather than in
        // the caller: an await point there would make every connection's task bigger).
        if self.replay.as_ref().is_some_and(|replay| !replay.greeted()) {
            if let Err(cause) = Box::pin(self.greet(socket)).await {
                return Ended::Closed(cause);
            }
        }
        // A connection keeps the limits of the deployment it opened (or was resumed) under;
        // a reload applies them to the connections opened after it.
        let (max_inflight, idle_timeout, max_duration, heartbeat_period) = {
            let limits = &self.state.deployment().config.limits;
            (
                limits.max_inflight_integrations,
                limits.idle_timeout,
                limits.max_connection_duration,
                limits.heartbeat_interval,
            )
        };
        // The maximum duration counts from the upgrade, across resumes; idleness from now.
        let opened_at = self
            .replay
            .as_ref()
            .map_or_else(Instant::now, |replay| replay.opened_at());
        let now = Instant::now();
        let mut clock = Clock {
            deadlines: Deadlines::new(opened_at, idle_timeout, max_duration),
            heartbeat: Heartbeat::new(now, heartbeat_period),
        };
        clock.deadlines.on_activity(now);
        // Boxed: a sleep is 112 bytes, and with it inline the task would not fit the
        // allocator size class below (`an_open_connection_task_stays_small`).
        let mut timer = Box::pin(tokio::time::sleep_until(armed_for(&clock)));
        // One wait for the close token for the whole loop: a new one per event would join and
        // leave the token's waiter list, under its lock, twice per message.
        let closed = self.handle.close_token().clone().cancelled_owned();
        let mut closed = pin!(closed);

        loop {
            let reading = self.inflight.len() < max_inflight;
            let event = tokio::select! {
                biased;
                () = closed.as_mut() => {
                    return Ended::Closed(self.handle.info.close_cause().unwrap_or(CloseCause::ServerShutdown));
                }
                frame = socket.next(), if reading => {
                    clock.heartbeat.on_frame();
                    let message = match frame {
                        Err(cause) => return Ended::Closed(cause),
                        Ok(message) => message,
                    };
                    match message {
                        Message::Text(text) => Event::Message(Payload::Text(text)),
                        Message::Binary(_) if self.state.deployment().config.gateway.binary_frames == BinaryFrames::Reject => {
                            return Ended::Closed(CloseCause::BinaryNotSupported);
                        }
                        Message::Binary(bytes) => Event::Message(Payload::Binary(Bytes::from(bytes))),
                        Message::Close(frame) => {
                            let (code, reason) = match frame {
                                Some((code, reason)) => (Some(code), reason),
                                None => (None, String::new()),
                            };
                            return Ended::Closed(CloseCause::ClientClosed { code, reason });
                        }
                        // The socket owes the pong from now on; flushing sends it.
                        Message::Ping(_) => Event::Pinged,
                        Message::Pong => continue,
                    }
                }
                Some(completion) = self.inflight.next(), if !self.inflight.is_empty() => {
                    Event::Completed(completion)
                }
                next = self.handle.mailbox().pop() => match next {
                    Next::Message(outbound) => Event::Push(outbound),
                    Next::Takeover(takeover) => return Ended::TakenOver(takeover),
                },
                () = &mut timer => {
                    let due = clock.on_timer(Instant::now());
                    timer.as_mut().reset(armed_for(&clock));
                    match due {
                        Due::Close(cause) => return Ended::Closed(cause),
                        Due::Ping => Event::Heartbeat,
                        Due::Nothing => continue,
                    }
                }
            };
            if matches!(event, Event::Message(_)) {
                clock.deadlines.on_activity(Instant::now());
            }
            match Box::pin(self.on_event(socket, event)).await {
                Ok(true) => clock.deadlines.on_activity(Instant::now()),
                Ok(false) => {}
                Err(ended) => return ended,
            }
        }
    }

    /// Does what one event of the open loop asks: routes a message, answers a finished
    /// integration, writes a push, a ping or the pong owed. Returns whether a data frame went
    /// out to the client.
    async fn on_event<S>(&mut self, socket: &mut WebSocket<S>, event: Event) -> Result<bool, Ended>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match event {
            Event::Message(payload) => {
                self.handle.info.touch(epoch_millis());
                self.state.metrics.bytes_in(payload.len());
                // The one cost of tracing when it is off: this branch.
                let received = self.state.tracer.is_some().then(SystemTime::now);
                // Each message is routed by the deployment in use when it arrived.
                let selection = {
                    let deployment = self.state.deployment();
                    match &payload {
                        Payload::Text(text) => deployment.routes.select_text(text),
                        Payload::Binary(_) => deployment.routes.select_binary(),
                    }
                };
                unless_taken_over(
                    self.watch(),
                    self.dispatch(socket, selection, payload, received),
                )
                .await?;
                Ok(false)
            }
            Event::Completed(completion) => {
                let sent =
                    unless_taken_over(self.watch(), self.complete(socket, completion)).await?;
                if sent {
                    self.handle.info.touch(epoch_millis());
                }
                Ok(sent)
            }
            Event::Push(outbound) => {
                unless_taken_over(self.watch(), self.deliver(socket, &outbound)).await?;
                self.state.metrics.pushes_out.inc();
                self.state.metrics.bytes_out(outbound.payload.len());
                self.handle.info.touch(epoch_millis());
                Ok(true)
            }
            Event::Heartbeat => {
                unless_taken_over(self.watch(), bounded(socket.ping())).await?;
                Ok(false)
            }
            Event::Pinged => {
                unless_taken_over(self.watch(), bounded(socket.flush())).await?;
                Ok(false)
            }
        }
    }

    /// What a write of this connection races against: for a resumable connection, a new
    /// socket taking it over; `None` for others, which just write.
    fn watch(&self) -> Option<Arc<ConnectionInfo>> {
        self.replay.as_ref().map(|_| self.handle.info.clone())
    }

    /// Starts the integration for a routed message, or answers `Forbidden`. `received` is
    /// when the message arrived, when tracing.
    async fn dispatch<S>(
        &mut self,
        socket: &mut WebSocket<S>,
        selection: Selection,
        body: Payload,
        received: Option<SystemTime>,
    ) -> Result<(), CloseCause>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let request_id = RequestId::from_random(random_bytes());
        let span = received
            .zip(self.state.tracer.as_ref())
            .map(|(received, tracer)| {
                let selected = match &selection {
                    Selection::Route(route) => Some(route.key.as_str()),
                    Selection::Forbidden => None,
                };
                self.message_span(tracer, received, &request_id, selected)
            });
        let route = match selection {
            Selection::Route(route) => route,
            Selection::Forbidden => {
                debug!(connection_id = %self.handle.context.connection_id, request_id = %request_id, "no route for message and no $default");
                return self
                    .refuse(socket, ErrorFrame::Forbidden, None, &request_id, span)
                    .await;
            }
        };
        if !route.admit() {
            debug!(connection_id = %self.handle.context.connection_id, request_id = %request_id, route_key = %route.key, "message throttled");
            self.state.metrics.throttled(Throttled::Route);
            return self
                .refuse(
                    socket,
                    ErrorFrame::TooManyRequests,
                    Some(&route),
                    &request_id,
                    span,
                )
                .await;
        }
        let integration = route.integration.clone();
        let message_id = RequestId::from_random(random_bytes());
        let requested_at = epoch_millis();
        let call = Call {
            connection: self.handle.context.clone(),
            request_id: request_id.clone(),
            now_ms: requested_at,
            kind: CallKind::Message {
                route_key: route.key.clone(),
                body,
                message_id: message_id.clone(),
            },
        };
        route.metrics.messages_in.inc();
        let mut span = span.map(Box::new);
        if let Some(span) = &mut span {
            span.set(key::MESSAGE_ID, message_id.to_string());
        }
        let running = async move {
            let started = Instant::now();
            let result = integration.invoke(&call, span.as_deref()).await;
            Completion {
                route,
                request_id,
                message_id,
                requested_at,
                result,
                latency: started.elapsed(),
                span,
            }
        };
        self.inflight.push(Box::pin(running));
        Ok(())
    }

    /// Sends what a finished integration means for the client. Returns whether a data frame
    /// went out.
    async fn complete<S>(
        &mut self,
        socket: &mut WebSocket<S>,
        completion: Completion,
    ) -> Result<bool, CloseCause>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // The message's span ends once the client has the answer (when it is dropped).
        let (outbound, _span) = self.conclude(completion);
        match outbound {
            Some(outbound) => {
                self.deliver(socket, &outbound).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Records a finished integration (access log, metrics) and returns what the client is
    /// owed: a two-way route's answer, or the error frame of a failure. `$resume` owes nothing:
    /// it only tells the backend. The message's span comes back too, for the caller to end
    /// once the answer is sent.
    pub(super) fn conclude(
        &mut self,
        completion: Completion,
    ) -> (Option<Outbound>, Option<Box<Span>>) {
        let resume_call = completion.route.key.as_str() == RouteKey::RESUME;
        let error_frame = match &completion.result {
            Ok(_) => None,
            Err(error) if error.is_timeout() => Some(ErrorFrame::EndpointRequestTimedOut),
            Err(_) => Some(ErrorFrame::InternalServerError),
        };
        let mut event = message_event(&self.handle.context, &completion, error_frame);
        if resume_call {
            event.event_type = EventType::Resume;
            event.message_id = None;
        }
        self.state.access_log.record(event);
        let Completion {
            route,
            request_id,
            result,
            latency,
            mut span,
            ..
        } = completion;
        if let (Some(span), Some(frame)) = (&mut span, error_frame) {
            span.fail(frame.message());
        }
        let metrics = &route.metrics;
        metrics
            .integration_latency
            .observe(crate::metrics::millis(latency));
        match &result {
            Ok(response) if response.status_code >= 400 => {
                metrics.integration_error.inc();
            }
            Ok(_) => {}
            Err(IntegrationError::Timeout { .. } | IntegrationError::Unreachable { .. }) => {
                metrics.integration_error.inc();
                metrics.execution_error.inc();
            }
            Err(_) => {
                metrics.integration_error.inc();
            }
        }
        if resume_call {
            if let Err(error) = &result {
                warn!(connection_id = %self.handle.context.connection_id, request_id = %request_id, route_key = %route.key, error = %ErrorChain(error), "$resume integration failed");
            }
            return (None, span);
        }
        let outbound = match result {
            Ok(response) => {
                if !route.route_response {
                    return (None, span);
                }
                // A present body is sent even when empty (`"body": ""` asks for an empty
                // message); `isBase64Encoded: true` makes it binary whatever its bytes.
                let Some(body) = response.body else {
                    return (None, span);
                };
                let mut outbound = Outbound::from_bytes(Bytes::from(body));
                outbound.text &= !response.binary;
                self.state.metrics.bytes_out(outbound.payload.len());
                outbound
            }
            Err(error) => {
                warn!(connection_id = %self.handle.context.connection_id, request_id = %request_id, route_key = %route.key, error = %ErrorChain(&error), "integration failed");
                let frame = error_frame.expect("a failed integration has an error frame");
                let text = frame.render(&self.handle.context.connection_id, &request_id);
                Outbound {
                    payload: Bytes::from(text),
                    text: true,
                }
            }
        };
        metrics.messages_out.inc();
        (Some(outbound), span)
    }

    /// Sends one message to the client; a resumable connection first keeps it for replay, so
    /// that a message the socket took but the client never read goes out again on resume.
    pub(super) async fn deliver<S>(
        &mut self,
        socket: &mut WebSocket<S>,
        outbound: &Outbound,
    ) -> Result<(), CloseCause>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if let Some(replay) = &mut self.replay {
            replay.record(outbound);
        }
        let frame_bytes = self.frame_bytes();
        send_outbound(socket, outbound, frame_bytes).await
    }

    /// Sends what is still owed to the client and the close frame, when the socket can take
    /// them. Messages queued before a `DELETE` or shutdown were acknowledged with 200, so they
    /// go out before the close frame.
    pub(super) async fn close_socket<S>(&mut self, socket: &mut WebSocket<S>, cause: &CloseCause)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Some((code, reason)) = cause.close_frame() else {
            if matches!(cause, CloseCause::ClientClosed { .. }) {
                // The socket owes the echo of the client's close frame.
                let echo = socket.finish_client_close();
                let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, echo).await;
            }
            return;
        };
        if matches!(cause, CloseCause::Deleted | CloseCause::ServerShutdown) {
            while let Some(outbound) = self.handle.mailbox().try_pop() {
                if self.deliver(socket, &outbound).await.is_err() {
                    return;
                }
            }
        }
        let closing = socket.close(code, &reason);
        let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, closing).await;
    }

    /// Lets integrations still running finish within the shutdown grace period, so backends
    /// see every MESSAGE before the DISCONNECT; aborts the rest.
    pub(super) async fn settle_inflight(&mut self) {
        if self.inflight.is_empty() {
            return;
        }
        let grace = self.state.deployment().config.limits.shutdown_grace;
        let drained = tokio::time::timeout(grace, async {
            while self.inflight.next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(
                remaining = self.inflight.len(),
                "integrations still running after the grace period; cancelling them"
            );
            self.inflight.clear();
        }
    }
}

impl Connection {
    /// `limits.frame_bytes` of the deployment in use: the largest frame a message sockway
    /// sends now is split into.
    fn frame_bytes(&self) -> usize {
        self.state.deployment().config.limits.frame_bytes
    }

    /// The `MESSAGE` span of a message that arrived at `received`, linked to the connection's
    /// `CONNECT` span, with its route selection (from `received` to now) as a child.
    fn message_span(
        &self,
        tracer: &Tracer,
        received: SystemTime,
        request_id: &RequestId,
        route_key: Option<&str>,
    ) -> Span {
        let mut span = tracer.start_span("MESSAGE", SpanKind::Server, None, received);
        if let Some(connect_span) = &self.connect_span {
            span.link(**connect_span);
        }
        if span.is_recording() {
            span.set(
                key::CONNECTION_ID,
                self.handle.context.connection_id.to_string(),
            );
            span.set(key::REQUEST_ID, request_id.to_string());
            span.set(key::STAGE, self.handle.context.stage.clone());
            let mut selection = span.child_at("route selection", SpanKind::Internal, received);
            if let Some(route_key) = route_key {
                span.set(key::ROUTE_KEY, route_key.to_owned());
                selection.set(key::ROUTE_KEY, route_key.to_owned());
            }
        }
        span
    }

    /// Answers a message with an error frame without running an integration (no route, or
    /// throttled): counted as `ClientError` and logged, and the connection stays open.
    async fn refuse<S>(
        &mut self,
        socket: &mut WebSocket<S>,
        frame: ErrorFrame,
        route: Option<&Route>,
        request_id: &RequestId,
        span: Option<Span>,
    ) -> Result<(), CloseCause>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if let Some(mut span) = span {
            span.fail(frame.message());
        }
        self.state.metrics.client_error.inc();
        let mut event = AccessEvent::of_connection(
            EventType::Message,
            self.handle.context.clone(),
            request_id.to_string(),
            epoch_millis(),
        );
        event.route_key = route.map(|route| route.key.to_string());
        let (status, error) = ErrorOutcome::of_frame(frame);
        event.answered(status, Some(error));
        self.state.access_log.record(event);
        let text = frame.render(&self.handle.context.connection_id, request_id);
        let outbound = Outbound {
            payload: Bytes::from(text),
            text: true,
        };
        self.deliver(socket, &outbound).await
    }
}

/// The access-log event of a message whose integration finished; `error_frame` is what the
/// client is sent when it failed.
fn message_event(
    context: &Arc<ConnectionContext>,
    completion: &Completion,
    error_frame: Option<ErrorFrame>,
) -> AccessEvent {
    let mut event = AccessEvent::of_connection(
        EventType::Message,
        context.clone(),
        completion.request_id.to_string(),
        completion.requested_at,
    );
    event.route_key = Some(completion.route.key.to_string());
    event.message_id = Some(completion.message_id.to_string());
    event.integration = Some(IntegrationOutcome::of(
        &completion.result,
        completion.latency,
    ));
    match error_frame {
        Some(frame) => {
            let (status, error) = ErrorOutcome::of_frame(frame);
            event.answered(status, Some(error));
        }
        None => {
            event.answered(200, None);
            event.response_length = completion
                .result
                .as_ref()
                .ok()
                .filter(|_| completion.route.route_response)
                .and_then(|response| response.body.as_ref())
                .map(Vec::len);
        }
    }
    event
}

/// The instant the connection's timer is armed for: [`Clock::next`], or never.
fn armed_for(clock: &Clock) -> Instant {
    let now = Instant::now();
    clock
        .next()
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Runs `write` (one event's writes to the socket) unless a new socket takes the connection
/// over first (`watch`, see [`Connection::watch`]): the old socket's client is gone, so its
/// write may block until [`SEND_TIMEOUT`], and the client's resume must not wait for that. The
/// write is abandoned with the old socket; what it was sending is in the replay.
async fn unless_taken_over<T>(
    watch: Option<Arc<ConnectionInfo>>,
    write: impl Future<Output = Result<T, CloseCause>>,
) -> Result<T, Ended> {
    let Some(info) = watch else {
        return write.await.map_err(Ended::Closed);
    };
    tokio::select! {
        biased;
        takeover = info.mailbox().next_takeover() => Err(Ended::TakenOver(takeover)),
        written = write => written.map_err(Ended::Closed),
    }
}

/// Runs one write to the client, bounded by [`SEND_TIMEOUT`]: a client that does not read
/// within it is a slow consumer.
pub(super) async fn bounded(
    write: impl Future<Output = std::io::Result<()>>,
) -> Result<(), CloseCause> {
    bounded_by(SEND_TIMEOUT, write).await
}

async fn bounded_by(
    limit: Duration,
    write: impl Future<Output = std::io::Result<()>>,
) -> Result<(), CloseCause> {
    match tokio::time::timeout(limit, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(CloseCause::ConnectionLost),
        Err(_elapsed) => Err(CloseCause::SlowConsumer),
    }
}

/// Sends a text message the gateway wrote (the resume frame), which is not counted or kept.
pub(super) async fn send_text<S>(socket: &mut WebSocket<S>, text: &str) -> Result<(), CloseCause>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    bounded(socket.send(text.as_bytes(), true, usize::MAX)).await
}

/// Sends one message, split into frames of at most `frame_bytes` as AWS does for
/// `@connections` posts larger than a frame.
async fn send_outbound<S>(
    socket: &mut WebSocket<S>,
    outbound: &Outbound,
    frame_bytes: usize,
) -> Result<(), CloseCause>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    bounded(socket.send(&outbound.payload, outbound.text, frame_bytes)).await
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    const LIMIT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn a_write_done_at_once_succeeds() {
        assert_eq!(bounded_by(LIMIT, async { Ok(()) }).await, Ok(()));
    }

    #[tokio::test]
    async fn a_write_that_waits_finishes_under_the_limit() {
        let write = async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(())
        };
        assert_eq!(bounded_by(LIMIT, write).await, Ok(()));
    }

    #[tokio::test]
    async fn a_write_that_fails_loses_the_connection() {
        let failed = async { Err(io::ErrorKind::BrokenPipe.into()) };
        assert_eq!(
            bounded_by(LIMIT, failed).await,
            Err(CloseCause::ConnectionLost)
        );
        let failed_later = async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Err(io::ErrorKind::BrokenPipe.into())
        };
        assert_eq!(
            bounded_by(LIMIT, failed_later).await,
            Err(CloseCause::ConnectionLost)
        );
    }

    #[tokio::test]
    async fn a_write_that_never_finishes_is_a_slow_consumer() {
        let started = Instant::now();
        let stuck = std::future::pending::<io::Result<()>>();
        assert_eq!(
            bounded_by(LIMIT, stuck).await,
            Err(CloseCause::SlowConsumer)
        );
        assert!(started.elapsed() >= LIMIT);
    }
}
