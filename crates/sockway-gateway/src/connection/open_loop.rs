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

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use sockway_protocol::close::CloseCause;
use sockway_protocol::error::ErrorFrame;
use sockway_protocol::event::ConnectionContext;
use sockway_protocol::id::RequestId;
use sockway_protocol::result::IntegrationResponse;
use sockway_protocol::websocket::reader::Message;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::socket::WebSocket;
use super::timers::{Deadlines, Heartbeat, HeartbeatAction};
use crate::access_log::{AccessEvent, ErrorOutcome, EventType, IntegrationOutcome};
use crate::config::BinaryFrames;
use crate::integrations::{Call, CallKind, IntegrationError, Payload};
use crate::metrics::Throttled;
use crate::registry::{ConnectionHandle, Outbound};
use crate::routing::{Route, Selection};
use crate::state::State;
use crate::{ErrorChain, epoch_millis, random_bytes};

/// How long one write to a client may take before the client counts as not reading.
pub(super) const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the client's answer to our close frame before dropping the socket.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// The state of one open connection's task.
pub(super) struct Connection {
    state: Arc<State>,
    context: Arc<ConnectionContext>,
    handle: ConnectionHandle,
    close: CancellationToken,
    inflight: FuturesUnordered<Inflight>,
}

/// An integration running for one message (a panic in it comes back as a failed integration).
type Inflight = Pin<Box<dyn Future<Output = Completion> + Send>>;

/// A finished integration for one message.
struct Completion {
    route: Arc<Route>,
    request_id: RequestId,
    message_id: RequestId,
    /// When the message arrived, in epoch milliseconds.
    requested_at: i64,
    result: Result<IntegrationResponse, IntegrationError>,
    /// How long the integration took.
    latency: Duration,
}

impl Connection {
    /// The loop's state for a connection that has just been registered.
    pub(super) fn new(
        state: Arc<State>,
        context: Arc<ConnectionContext>,
        handle: ConnectionHandle,
        close: CancellationToken,
    ) -> Connection {
        Connection {
            state,
            context,
            handle,
            close,
            inflight: FuturesUnordered::new(),
        }
    }

    /// The open loop. Returns why the connection ends.
    ///
    /// What a branch does once its event arrived (route a message, answer a completed
    /// integration, write a push or a ping) runs boxed: those futures exist only while they
    /// run, so the task an idle connection keeps holds the loop's waiting state alone (see
    /// `an_open_connection_task_stays_small`). One small allocation per message buys
    /// about 1.4 KiB less per open connection.
    pub(super) async fn run<S>(&mut self, socket: &mut WebSocket<S>) -> CloseCause
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // A connection keeps the limits of the deployment it opened under; a reload applies
        // them to the connections opened after it.
        let (max_inflight, idle_timeout, max_duration, heartbeat_period) = {
            let limits = &self.state.deployment().config.limits;
            (
                limits.max_inflight_integrations,
                limits.idle_timeout,
                limits.max_connection_duration,
                limits.heartbeat_interval,
            )
        };
        let mut deadlines = Deadlines::new(Instant::now(), idle_timeout, max_duration);
        let far_future = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
        let deadline_sleep = tokio::time::sleep_until(deadlines.next().unwrap_or(far_future));
        tokio::pin!(deadline_sleep);
        let mut heartbeat = Heartbeat::default();
        let mut ticker = tokio::time::interval_at(
            Instant::now() + heartbeat_period.unwrap_or(Duration::from_secs(3600)),
            heartbeat_period.unwrap_or(Duration::from_secs(3600)),
        );
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);

        loop {
            let reading = self.inflight.len() < max_inflight;
            tokio::select! {
                biased;
                _ = self.close.cancelled() => {
                    return self.handle.info.close_cause().unwrap_or(CloseCause::ServerShutdown);
                }
                frame = socket.next(), if reading => {
                    heartbeat.on_frame();
                    let message = match frame {
                        Err(cause) => return cause,
                        Ok(message) => message,
                    };
                    let payload = match message {
                        Message::Text(text) => Payload::Text(text),
                        Message::Binary(_) if self.state.deployment().config.gateway.binary_frames == BinaryFrames::Reject => {
                            return CloseCause::BinaryNotSupported;
                        }
                        Message::Binary(bytes) => Payload::Binary(Bytes::from(bytes)),
                        Message::Close(frame) => {
                            let (code, reason) = match frame {
                                Some((code, reason)) => (Some(code), reason),
                                None => (None, String::new()),
                            };
                            return CloseCause::ClientClosed { code, reason };
                        }
                        // The socket owes the pong from now on; flushing sends it.
                        Message::Ping(_) => {
                            if let Err(cause) = Box::pin(bounded(socket.flush())).await {
                                return cause;
                            }
                            continue;
                        }
                        Message::Pong => continue,
                    };
                    deadlines.on_activity(Instant::now());
                    self.handle.info.touch(epoch_millis());
                    self.state.metrics.bytes_in(payload.len());
                    // Each message is routed by the deployment in use when it arrived.
                    let selection = {
                        let deployment = self.state.deployment();
                        match &payload {
                            Payload::Text(text) => deployment.routes.select_text(text),
                            Payload::Binary(_) => deployment.routes.select_binary(),
                        }
                    };
                    if let Err(cause) = Box::pin(self.dispatch(socket, selection, payload)).await {
                        return cause;
                    }
                }
                Some(completion) = self.inflight.next(), if !self.inflight.is_empty() => {
                    match Box::pin(self.complete(socket, completion)).await {
                        Ok(true) => {
                            deadlines.on_activity(Instant::now());
                            self.handle.info.touch(epoch_millis());
                        }
                        Ok(false) => {}
                        Err(cause) => return cause,
                    }
                }
                outbound = self.handle.mailbox().pop() => {
                    let frame_bytes = self.frame_bytes();
                    if let Err(cause) = Box::pin(send_outbound(socket, &outbound, frame_bytes)).await {
                        return cause;
                    }
                    self.state.metrics.pushes_out.inc();
                    self.state.metrics.bytes_out(outbound.payload.len());
                    deadlines.on_activity(Instant::now());
                    self.handle.info.touch(epoch_millis());
                }
                _ = ticker.tick(), if heartbeat_period.is_some() => match heartbeat.on_tick() {
                    HeartbeatAction::Dead => return CloseCause::HeartbeatTimeout,
                    HeartbeatAction::Ping => {
                        if let Err(cause) = Box::pin(bounded(socket.ping())).await {
                            return cause;
                        }
                    }
                },
                _ = &mut deadline_sleep => {
                    let now = Instant::now();
                    if let Some(cause) = deadlines.expired(now) {
                        return cause;
                    }
                    // Activity moved the deadline since the sleep was armed.
                    deadline_sleep.as_mut().reset(deadlines.next().unwrap_or(far_future));
                }
            }
        }
    }

    /// Starts the integration for a routed message, or answers `Forbidden`.
    async fn dispatch<S>(
        &mut self,
        socket: &mut WebSocket<S>,
        selection: Selection,
        body: Payload,
    ) -> Result<(), CloseCause>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let request_id = RequestId::from_random(random_bytes());
        let route = match selection {
            Selection::Route(route) => route,
            Selection::Forbidden => {
                debug!(connection_id = %self.context.connection_id, request_id = %request_id, "no route for message and no $default");
                return self
                    .refuse(socket, ErrorFrame::Forbidden, None, &request_id)
                    .await;
            }
        };
        if !route.admit() {
            debug!(connection_id = %self.context.connection_id, request_id = %request_id, route_key = %route.key, "message throttled");
            self.state.metrics.throttled(Throttled::Route);
            return self
                .refuse(
                    socket,
                    ErrorFrame::TooManyRequests,
                    Some(&route),
                    &request_id,
                )
                .await;
        }
        let integration = route.integration.clone();
        let message_id = RequestId::from_random(random_bytes());
        let requested_at = epoch_millis();
        let call = Call {
            connection: self.context.clone(),
            request_id: request_id.clone(),
            now_ms: requested_at,
            kind: CallKind::Message {
                route_key: route.key.clone(),
                body,
                message_id: message_id.clone(),
            },
        };
        route.metrics.messages_in.inc();
        let running = async move {
            let started = Instant::now();
            let result = integration.invoke(&call).await;
            Completion {
                route,
                request_id,
                message_id,
                requested_at,
                result,
                latency: started.elapsed(),
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
        let error_frame = match &completion.result {
            Ok(_) => None,
            Err(error) if error.is_timeout() => Some(ErrorFrame::EndpointRequestTimedOut),
            Err(_) => Some(ErrorFrame::InternalServerError),
        };
        self.state
            .access_log
            .record(message_event(&self.context, &completion, error_frame));
        let Completion {
            route,
            request_id,
            result,
            latency,
            ..
        } = completion;
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
        match result {
            Ok(response) => {
                if !route.route_response {
                    return Ok(false);
                }
                // A present body is sent even when empty (`"body": ""` asks for an empty
                // message); `isBase64Encoded: true` makes it binary whatever its bytes.
                match response.body {
                    Some(body) => {
                        let mut outbound = Outbound::from_bytes(Bytes::from(body));
                        outbound.text &= !response.binary;
                        let frame_bytes = self.frame_bytes();
                        send_outbound(socket, &outbound, frame_bytes).await?;
                        route.metrics.messages_out.inc();
                        self.state.metrics.bytes_out(outbound.payload.len());
                        Ok(true)
                    }
                    None => Ok(false),
                }
            }
            Err(error) => {
                warn!(connection_id = %self.context.connection_id, request_id = %request_id, route_key = %route.key, error = %ErrorChain(&error), "integration failed");
                let frame = error_frame.expect("a failed integration has an error frame");
                let text = frame.render(&self.context.connection_id, &request_id);
                send_text(socket, &text).await?;
                route.metrics.messages_out.inc();
                Ok(true)
            }
        }
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
            let frame_bytes = self.frame_bytes();
            while let Some(outbound) = self.handle.mailbox().try_pop() {
                if send_outbound(socket, &outbound, frame_bytes).await.is_err() {
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

    /// Answers a message with an error frame without running an integration (no route, or
    /// throttled): counted as `ClientError` and logged, and the connection stays open.
    async fn refuse<S>(
        &mut self,
        socket: &mut WebSocket<S>,
        frame: ErrorFrame,
        route: Option<&Route>,
        request_id: &RequestId,
    ) -> Result<(), CloseCause>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.state.metrics.client_error.inc();
        let mut event = AccessEvent::of_connection(
            EventType::Message,
            self.context.clone(),
            request_id.to_string(),
            epoch_millis(),
        );
        event.route_key = route.map(|route| route.key.to_string());
        let (status, error) = ErrorOutcome::of_frame(frame);
        event.answered(status, Some(error));
        self.state.access_log.record(event);
        let text = frame.render(&self.context.connection_id, request_id);
        send_text(socket, &text).await
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

/// Runs one write to the client, bounded by [`SEND_TIMEOUT`]: a client that does not read
/// within it is a slow consumer.
async fn bounded(write: impl Future<Output = std::io::Result<()>>) -> Result<(), CloseCause> {
    match tokio::time::timeout(SEND_TIMEOUT, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(CloseCause::ConnectionLost),
        Err(_elapsed) => Err(CloseCause::SlowConsumer),
    }
}

/// Sends a text message the gateway wrote (an error frame).
async fn send_text<S>(socket: &mut WebSocket<S>, text: &str) -> Result<(), CloseCause>
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
