//! One connection's task: handshake, open loop, close, `$disconnect`.
//!
//! The task that read the upgrade request owns the socket until it closes; nothing else writes
//! to it. Other parts of the gateway reach the connection through its `ConnectionHandle`
//! (a bounded mailbox plus a close token). The task reads top to bottom:
//!
//! - handshake: check the upgrade, run `$connect`, answer 101 or the refusal status;
//! - register: presence in the cluster, removed by a guard on every exit path;
//! - open loop ([`Connection::run`]): select over a client frame, a finished integration, a
//!   mailbox command, a heartbeat tick, the idle/duration deadline and the close token;
//! - finish: close the socket, wait for in-flight integrations, deliver `$disconnect`.
//!
//! Concurrency rules: the loop never awaits a backend. Integrations run as futures the task
//! polls alongside the socket (`FuturesUnordered`, no task of their own: a message's round trip
//! then wakes one task fewer) and come back as loop events; a panic in one is caught and answered
//! like a failed integration; when `limits.max_inflight_integrations` are running,
//! the loop stops reading frames (backpressure) instead of queueing. Writes to the socket are
//! bounded by [`SEND_TIMEOUT`]: a client that does not read is closed as a slow consumer
//! rather than buffered for without bound.

mod handshake;
mod socket;
mod timers;

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use sockway_protocol::close::CloseCause;
use sockway_protocol::error::ErrorFrame;
use sockway_protocol::event::ConnectionContext;
use sockway_protocol::id::RequestId;
use sockway_protocol::result::IntegrationResponse;
use sockway_protocol::websocket::reader::{Limits as FrameLimits, Message};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info_span, warn};

use self::socket::WebSocket;
use self::timers::{Deadlines, Heartbeat, HeartbeatAction};
use crate::access_log::{AccessEvent, ErrorOutcome, EventType, IntegrationOutcome};
use crate::config::BinaryFrames;
use crate::integrations::{Call, CallKind, IntegrationError, Payload};
use crate::metrics::Throttled;
use crate::registry::{ConnectionHandle, Outbound};
use crate::routing::{Route, Selection};
use crate::server::{RequestHead, Shared, respond_and_close};
use crate::{epoch_millis, random_bytes};

/// How long one write to a client may take before the client counts as not reading.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the client's answer to our close frame before dropping the socket.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves an upgrade request on `stream` (TCP, or TLS over TCP) from handshake to
/// `$disconnect`; `local` is the address the client connected to.
///
/// The handshake runs in the caller's task; an accepted connection then gets a task of its
/// own for the rest of its life. A task is allocated once at the size of its future's largest
/// state, and the handshake's states (the request head and its buffer, the TLS session setup,
/// the authorizer and `$connect` calls) are many times the open loop's: handing the socket
/// to a new task frees them after the 101, so an idle connection costs only what its open
/// loop needs.
pub(crate) async fn accept<S>(
    stream: S,
    local: Option<SocketAddr>,
    head: RequestHead,
    buffered: Vec<u8>,
    peer: SocketAddr,
    shared: Arc<Shared>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let upgrade = upgrade(stream, local, head, buffered, peer, &shared).await;
    let Some((stream, leftover, accepted)) = upgrade else {
        return;
    };
    let span = info_span!("connection", connection_id = %accepted.context.connection_id);
    shared
        .tasks
        .spawn(open(stream, leftover, accepted, shared.clone()).instrument(span));
}

/// Runs the handshake; on success returns the stream, the bytes the client sent after its
/// request head, and the accepted upgrade. A refusal is answered here.
async fn upgrade<S>(
    mut stream: S,
    local: Option<SocketAddr>,
    head: RequestHead,
    buffered: Vec<u8>,
    peer: SocketAddr,
    shared: &Shared,
) -> Option<(S, Vec<u8>, handshake::Accepted)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match handshake::negotiate(&head, peer, local, shared).await {
        Ok(accepted) => Some((stream, buffered[head.length..].to_vec(), accepted)),
        Err(refused) => {
            respond_and_close(&mut stream, refused.response).await;
            None
        }
    }
}

async fn open<S>(
    mut stream: S,
    leftover: Vec<u8>,
    accepted: handshake::Accepted,
    shared: Arc<Shared>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handshake::Accepted {
        context,
        response,
        groups,
        deflate,
        // Held until this function returns: the connection's slot under the connection caps.
        admission: _admission,
    } = accepted;
    let limits = &shared.config.limits;
    let close = shared.shutdown.child_token();
    let handle = ConnectionHandle::new(context.clone(), limits.outbound_queue, close.clone());
    // Registered before the 101 goes out, so a backend that posts as soon as `$connect`
    // returned reaches the connection instead of getting 410.
    let registered = shared.cluster.register(handle.clone(), &groups);
    drop(groups);
    let Some(presence) = registered else {
        error!("connection id collision; refusing the upgrade");
        respond_and_close(
            &mut stream,
            crate::server::head::error_response(&sockway_protocol::error::AwsError::internal(
                "Internal server error",
            )),
        )
        .await;
        return;
    };

    shared.metrics.connections.inc();
    let written = stream.write_all(&response).await;
    drop(response);
    let cause = match written {
        Err(error) => {
            debug!(error = %error, "client went away before the 101 was written");
            CloseCause::ConnectionLost
        }
        Ok(()) => {
            let frame_limits = FrameLimits {
                max_frame_bytes: limits.frame_bytes,
                max_message_bytes: limits.message_bytes,
            };
            let mut socket = WebSocket::new(stream, &leftover, frame_limits, deflate);
            drop(leftover);
            let mut connection = Connection {
                shared: shared.clone(),
                context: context.clone(),
                handle: handle.clone(),
                close,
                inflight: FuturesUnordered::new(),
            };
            let cause = connection.run(&mut socket).await;
            handle.mark_closing();
            // Boxed, like the `$disconnect` delivery below: one-off phases whose state would
            // otherwise size every open connection's task (about 90 bytes each, measured).
            Box::pin(connection.close_socket(&mut socket, &cause)).await;
            Box::pin(connection.settle_inflight()).await;
            cause
        }
    };
    let undelivered = handle.mailbox().close();
    if undelivered > 0 {
        debug!(undelivered, cause = ?cause, "messages still queued when the connection ended");
    }
    shared.metrics.connections.dec();
    // In a cluster, nodes that declared this one dead may already have delivered it.
    if Box::pin(presence.end()).await {
        Box::pin(deliver_disconnect(&shared, context, &cause)).await;
    }
}

/// The state of one open connection's task.
struct Connection {
    shared: Arc<Shared>,
    context: Arc<ConnectionContext>,
    handle: ConnectionHandle,
    close: CancellationToken,
    inflight: FuturesUnordered<Inflight>,
}

/// An integration running for one message; `Err` when it panicked.
type Inflight = Pin<Box<dyn Future<Output = std::thread::Result<Completion>> + Send>>;

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
    /// The open loop. Returns why the connection ends.
    ///
    /// What a branch does once its event arrived (route a message, answer a completed
    /// integration, write a push or a ping) runs boxed: those futures exist only while they
    /// run, so the task an idle connection keeps holds the loop's waiting state alone (see
    /// `an_open_connection_task_stays_small`). One small allocation per message buys
    /// about 1.4 KiB less per open connection.
    async fn run<S>(&mut self, socket: &mut WebSocket<S>) -> CloseCause
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let limits = &self.shared.config.limits;
        let max_inflight = limits.max_inflight_integrations;
        let mut deadlines = Deadlines::new(
            Instant::now(),
            limits.idle_timeout,
            limits.max_connection_duration,
        );
        let far_future = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
        let deadline_sleep = tokio::time::sleep_until(deadlines.next().unwrap_or(far_future));
        tokio::pin!(deadline_sleep);
        let heartbeat_period = limits.heartbeat_interval;
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
                    match message {
                        Message::Text(text) => {
                            deadlines.on_activity(Instant::now());
                            self.handle.info.touch(epoch_millis());
                            self.shared.metrics.bytes_in(text.len());
                            let selection = self.shared.routes.select_text(&text);
                            if let Err(cause) = Box::pin(self.dispatch(socket, selection, Payload::Text(text))).await {
                                return cause;
                            }
                        }
                        Message::Binary(bytes) => {
                            if self.shared.config.gateway.binary_frames == BinaryFrames::Reject {
                                return CloseCause::BinaryNotSupported;
                            }
                            deadlines.on_activity(Instant::now());
                            self.handle.info.touch(epoch_millis());
                            self.shared.metrics.bytes_in(bytes.len());
                            let selection = self.shared.routes.select_binary();
                            if let Err(cause) = Box::pin(self.dispatch(socket, selection, Payload::Binary(Bytes::from(bytes)))).await {
                                return cause;
                            }
                        }
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
                        }
                        Message::Pong => {}
                    }
                }
                Some(finished) = self.inflight.next(), if !self.inflight.is_empty() => {
                    let sent = match finished {
                        Ok(completion) => Box::pin(self.complete(socket, completion)).await,
                        Err(_panic) => {
                            error!("an integration panicked; its message gets no answer");
                            Ok(false)
                        }
                    };
                    match sent {
                        Ok(true) => {
                            deadlines.on_activity(Instant::now());
                            self.handle.info.touch(epoch_millis());
                        }
                        Ok(false) => {}
                        Err(cause) => return cause,
                    }
                }
                outbound = self.handle.mailbox().pop() => {
                    if let Err(cause) = Box::pin(send_outbound(socket, &outbound, self.shared.config.limits.frame_bytes)).await {
                        return cause;
                    }
                    self.shared.metrics.pushes_out.inc();
                    self.shared.metrics.bytes_out(outbound.payload.len());
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
                debug!(request_id = %request_id, "no route for message and no $default");
                return self
                    .refuse(socket, ErrorFrame::Forbidden, None, &request_id)
                    .await;
            }
        };
        if !route.admit() {
            debug!(request_id = %request_id, route_key = %route.key, "message throttled");
            self.shared.metrics.throttled(Throttled::Route);
            return self
                .refuse(
                    socket,
                    ErrorFrame::TooManyRequests,
                    Some(&route),
                    &request_id,
                )
                .await;
        }
        let integration = self
            .shared
            .integrations
            .get(&route.integration)
            .expect("the route table only holds routes whose integration exists");
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
        if let Some(metrics) = self.shared.metrics.route(route.key.as_str()) {
            metrics.messages_in.inc();
        }
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
        self.inflight
            .push(Box::pin(AssertUnwindSafe(running).catch_unwind()));
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
        self.shared
            .access_log
            .record(message_event(&self.context, &completion, error_frame));
        let Completion {
            route,
            request_id,
            result,
            latency,
            ..
        } = completion;
        let metrics = self.shared.metrics.route(route.key.as_str());
        if let Some(metrics) = metrics {
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
                        send_outbound(socket, &outbound, self.shared.config.limits.frame_bytes)
                            .await?;
                        if let Some(metrics) = metrics {
                            metrics.messages_out.inc();
                        }
                        self.shared.metrics.bytes_out(outbound.payload.len());
                        Ok(true)
                    }
                    None => Ok(false),
                }
            }
            Err(error) => {
                warn!(request_id = %request_id, route_key = %route.key, error = %error, "integration failed");
                let frame = error_frame.expect("a failed integration has an error frame");
                let text = frame.render(&self.context.connection_id, &request_id);
                send_text(socket, &text).await?;
                if let Some(metrics) = metrics {
                    metrics.messages_out.inc();
                }
                Ok(true)
            }
        }
    }

    /// Sends what is still owed to the client and the close frame, when the socket can take
    /// them. Messages queued before a `DELETE` or shutdown were acknowledged with 200, so they
    /// go out before the close frame.
    async fn close_socket<S>(&mut self, socket: &mut WebSocket<S>, cause: &CloseCause)
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
                if send_outbound(socket, &outbound, self.shared.config.limits.frame_bytes)
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        let closing = socket.close(code, &reason);
        let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, closing).await;
    }

    /// Lets integrations still running finish within the shutdown grace period, so backends
    /// see every MESSAGE before the DISCONNECT; aborts the rest.
    async fn settle_inflight(&mut self) {
        if self.inflight.is_empty() {
            return;
        }
        let grace = self.shared.config.limits.shutdown_grace;
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
        self.shared.metrics.client_error.inc();
        let mut event = AccessEvent::of_connection(
            EventType::Message,
            self.context.clone(),
            request_id.to_string(),
            epoch_millis(),
        );
        event.route_key = route.map(|route| route.key.to_string());
        let (status, error) = ErrorOutcome::of_frame(frame);
        event.answered(status, Some(error));
        self.shared.access_log.record(event);
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

/// Whether `ip` is this machine (IPv4-mapped loopback included).
pub(crate) fn is_loopback(ip: std::net::IpAddr) -> bool {
    handshake::canonical_ip(ip).is_loopback()
}

/// `$disconnect` deliveries for lost connections running at once.
const MAX_ORPHAN_DELIVERIES: usize = 64;

/// Delivers `$disconnect` (1006, "Gateway node lost") for each connection of a lost cluster
/// node that the cluster hands this node, a bounded number at a time, until shutdown. The
/// cluster hands each such connection to exactly one node; single-node mode has none.
pub(crate) async fn deliver_orphans(shared: Arc<Shared>) {
    let mut deliveries = JoinSet::new();
    loop {
        if deliveries.len() >= MAX_ORPHAN_DELIVERIES {
            deliveries.join_next().await;
            continue;
        }
        tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            Some(_) = deliveries.join_next(), if !deliveries.is_empty() => {}
            orphan = shared.cluster.next_orphan() => match orphan {
                Some(context) => {
                    let shared = shared.clone();
                    let span = info_span!("connection", connection_id = %context.connection_id);
                    deliveries.spawn(
                        async move { deliver_disconnect(&shared, context, &CloseCause::NodeLost).await }
                            .instrument(span),
                    );
                }
                None => break,
            },
        }
    }
    // Connections claimed before the shutdown are this node's to deliver: nobody else will.
    while let Some(context) = shared.cluster.claimed_orphan() {
        if deliveries.len() >= MAX_ORPHAN_DELIVERIES {
            deliveries.join_next().await;
        }
        let shared = shared.clone();
        let span = info_span!("connection", connection_id = %context.connection_id);
        deliveries.spawn(
            async move { deliver_disconnect(&shared, context, &CloseCause::NodeLost).await }
                .instrument(span),
        );
    }
    while deliveries.join_next().await.is_some() {}
}

/// Delivers `$disconnect` for a connection that was accepted, retrying with exponential backoff
/// up to `limits.disconnect_attempts`. A delivery that still fails is logged as an error, never
/// dropped silently.
async fn deliver_disconnect(shared: &Shared, context: Arc<ConnectionContext>, cause: &CloseCause) {
    let request_id = RequestId::from_random(random_bytes());
    let now_ms = epoch_millis();
    let mut event = AccessEvent::of_connection(
        EventType::Disconnect,
        context.clone(),
        request_id.to_string(),
        now_ms,
    );
    event.route_key = Some("$disconnect".to_owned());
    event.disconnect_status_code = Some(cause.disconnect_status_code());
    event.disconnect_reason = Some(cause.disconnect_reason());
    let Some(route) = shared.routes.disconnect() else {
        event.answered(200, None);
        shared.access_log.record(event);
        return;
    };
    let integration = shared
        .integrations
        .get(&route.integration)
        .expect("the route table only holds routes whose integration exists");
    let limits = &shared.config.limits;
    let call = Call {
        connection: context,
        request_id,
        now_ms,
        kind: CallKind::Disconnect {
            status_code: cause.disconnect_status_code(),
            reason: cause.disconnect_reason(),
        },
    };
    let mut backoff = limits.disconnect_backoff;
    for attempt in 1..=limits.disconnect_attempts {
        let started = Instant::now();
        let result = integration.invoke(&call).await;
        event.integration = Some(IntegrationOutcome::of(&result, started.elapsed()));
        match result {
            Ok(_) => {
                shared.metrics.disconnect_delivered(true);
                event.answered(200, None);
                shared.access_log.record(event);
                return;
            }
            Err(error) if attempt < limits.disconnect_attempts => {
                shared.metrics.disconnect_retries.inc();
                warn!(request_id = %call.request_id, attempt, error = %error, "$disconnect delivery failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
            Err(error) => {
                shared.metrics.disconnect_delivered(false);
                let frame = if error.is_timeout() {
                    ErrorFrame::EndpointRequestTimedOut
                } else {
                    ErrorFrame::InternalServerError
                };
                let (status, outcome) = ErrorOutcome::of_frame(frame);
                event.answered(status, Some(outcome));
                shared.access_log.record(event);
                error!(
                    request_id = %call.request_id,
                    attempts = limits.disconnect_attempts,
                    error = %error,
                    "$disconnect could not be delivered"
                );
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future an async fn returns, without calling it.
    fn output_size<F, Fut>(_: &F) -> usize
    where
        F: Fn(tokio::net::TcpStream, Vec<u8>, handshake::Accepted, Arc<Shared>) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// An open connection's task is allocated at the size of this future, so it is most of
    /// what an idle connection costs: the per-message phases are boxed to keep it small
    /// (3,168 bytes before they were, 1,736 after, in a debug build).
    #[test]
    fn an_open_connection_task_stays_small() {
        let size = output_size(&open::<tokio::net::TcpStream>);
        assert!(
            size <= 2048,
            "the open-connection future grew to {size} bytes"
        );
    }
}
