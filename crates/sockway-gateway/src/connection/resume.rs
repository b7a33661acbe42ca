//! Connection resume (`[resume]`): a connection whose socket drops without a clean close is
//! suspended for the window instead of ended, and a client that reconnects with its resume
//! token continues it on the new socket: same id, the messages it missed, no `$connect` and no
//! `$disconnect`.
//!
//! The protocol, as a client sees it (`docs/resume.md`):
//!
//! - A client asks for resume by offering the subprotocol [`RESUME_PROTOCOL`]. Right after the
//!   101, before any other message, sockway sends it the *resume frame*: a text message with
//!   the connection id, a resume token and the window (see [`Connection::greet`]).
//! - The client counts the other messages it receives. To resume, it reconnects offering
//!   [`RESUME_PROTOCOL`] and `sockway.resume.token.<token>.<count>` ([`TOKEN_PROTOCOL_PREFIX`]):
//!   a subprotocol, because a browser can set no header, and unlike a query parameter it lands
//!   in no URL log. The token is left out of the headers the authorizer and `$resume` see.
//! - The upgrade runs the authorizer (and IAM and API key checks) as for a new connection: the
//!   token is not a credential. The outcome must name the connection's principal
//!   ([`same_principal`]). Then the connection's task takes the new socket over (the old one is
//!   dropped if it was still open): it sends a new resume frame, replays what the client did
//!   not count (sockway keeps what it sent, within the resume limits: [`Replay`]), then what
//!   was queued meanwhile, then goes on.
//! - A token that matches nothing (unknown, used, or its window ended) completes the upgrade and
//!   closes it at once with 4410; another principal with 4403. Close codes, unlike an HTTP
//!   refusal's status, are what a browser can read.
//!
//! One task still owns a connection from upgrade to `$disconnect`: the socket is handed to it
//! through its mailbox ([`crate::registry::Mailbox::take_over`]), so in-flight integrations
//! answer on the new socket and nothing else writes to it.

use std::collections::VecDeque;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use sockway_protocol::close::{CloseCause, codes};
use sockway_protocol::event::ConnectionContext;
use sockway_protocol::group::GroupName;
use sockway_protocol::id::{ConnectionId, ID_LENGTH, RequestId};
use sockway_protocol::websocket::deflate::Deflate;
use sockway_protocol::websocket::reader::Limits as FrameLimits;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::{debug, warn};

use super::open_loop::{Completion, Connection, Ended, bounded, send_text};
use super::refusal::ConnectError;
use super::socket::WebSocket;
use crate::access_log::{AccessEvent, EventType};
use crate::cluster::{
    HandOverAnswer, HandOverAsk, Moved, MovedContext, MovedMessage, Request, Suspended, SuspendedBy,
};
use crate::config::ResumeConfig;
use crate::integrations::{Call, CallKind};
use crate::metrics::ResumeOutcome;
use crate::registry::{ConnectionHandle, Outbound, Suspension, Takeover as Opaque};
use crate::state::State;
use crate::throttle::Admission;
use crate::{epoch_millis, random_bytes};

/// The subprotocol a client offers to ask for resume (and to resume).
pub(super) const RESUME_PROTOCOL: &str = "sockway.resume.v1";

/// The subprotocol that carries a resume token and the client's count of received messages:
/// `sockway.resume.token.<token>.<count>`.
pub(super) const TOKEN_PROTOCOL_PREFIX: &str = "sockway.resume.token.";

/// A socket of any kind the gateway listener accepts (TCP, TLS over TCP), boxed so that the
/// connection's task can take over a socket accepted by another task.
pub(super) trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// How long a connection handed to another node waits for that node to take its queued
/// messages before it stays where it is.
const HAND_OVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A resume token: the connection it resumes and a 128-bit secret. Only the SHA-256 of id and
/// secret is kept (in the connection's mailbox), compared in constant time, and used once.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct ResumeToken {
    /// The connection the token resumes.
    pub(super) connection_id: ConnectionId,
    secret: [u8; 16],
}

impl std::fmt::Debug for ResumeToken {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ResumeToken")
            .field("connection_id", &self.connection_id)
            .finish_non_exhaustive()
    }
}

impl ResumeToken {
    /// A fresh token for `connection_id`.
    fn generate(connection_id: ConnectionId) -> ResumeToken {
        ResumeToken {
            connection_id,
            secret: random_bytes(),
        }
    }

    /// The token as the client sees it: base64url (no padding) of the id's 16 characters and
    /// the secret's 16 bytes, 43 characters that are valid in a subprotocol.
    pub(super) fn encode(&self) -> String {
        let mut raw = Vec::with_capacity(ID_LENGTH + self.secret.len());
        raw.extend_from_slice(self.connection_id.as_str().as_bytes());
        raw.extend_from_slice(&self.secret);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Reads a token; `None` when it is not one sockway made.
    pub(super) fn decode(text: &str) -> Option<ResumeToken> {
        let raw = URL_SAFE_NO_PAD.decode(text).ok()?;
        if raw.len() != ID_LENGTH + 16 {
            return None;
        }
        let id = std::str::from_utf8(&raw[..ID_LENGTH]).ok()?;
        let connection_id = ConnectionId::parse(id).ok()?;
        let secret = raw[ID_LENGTH..].try_into().ok()?;
        Some(ResumeToken {
            connection_id,
            secret,
        })
    }

    /// What the connection keeps of the token: SHA-256 over the id and the secret.
    pub(super) fn ticket(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.connection_id.as_str().as_bytes());
        hasher.update(self.secret);
        hasher.finalize().into()
    }
}

/// What a client's offered subprotocols say about resume.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct ResumeOffer {
    /// The client offered [`RESUME_PROTOCOL`]: it wants the resume frame.
    pub(super) asked: bool,
    /// The token it presents, and how many messages it received on the connection.
    pub(super) resuming: Option<(ResumeToken, u64)>,
}

impl ResumeOffer {
    /// Reads the offered subprotocols. A malformed token value counts as a token that matches
    /// nothing (the client is told with 4410, not left to guess).
    pub(super) fn of<'a>(offered: impl Iterator<Item = &'a str>) -> ResumeOffer {
        let mut offer = ResumeOffer::default();
        for protocol in offered {
            if protocol == RESUME_PROTOCOL {
                offer.asked = true;
            } else if let Some(value) = protocol.strip_prefix(TOKEN_PROTOCOL_PREFIX) {
                let parsed = value.split_once('.').and_then(|(token, received)| {
                    Some((ResumeToken::decode(token)?, received.parse().ok()?))
                });
                offer.resuming = Some(parsed.unwrap_or_else(|| {
                    // Never matches: no connection keeps an all-zero secret's ticket.
                    (
                        ResumeToken {
                            connection_id: ConnectionId::from_random([0; 11]),
                            secret: [0; 16],
                        },
                        0,
                    )
                }));
            }
        }
        offer
    }
}

/// Removes resume tokens from `Sec-WebSocket-Protocol` headers (a header left empty goes), so
/// that the authorizer, `$resume` and the access log never see a token.
pub(super) fn strip_tokens(headers: &mut Vec<(String, String)>) {
    for (name, value) in headers.iter_mut() {
        if !name.eq_ignore_ascii_case("Sec-WebSocket-Protocol")
            || !value.contains(TOKEN_PROTOCOL_PREFIX)
        {
            continue;
        }
        let kept: Vec<&str> = value
            .split(',')
            .map(str::trim)
            .filter(|protocol| !protocol.starts_with(TOKEN_PROTOCOL_PREFIX))
            .collect();
        *value = kept.join(", ");
    }
    headers.retain(|(name, value)| {
        !(name.eq_ignore_ascii_case("Sec-WebSocket-Protocol") && value.is_empty())
    });
}

/// Whether the resuming upgrade's access checks name the connection's principal: the
/// authorizer's `principalId` (a JWT authorizer's `sub`), the IAM access key and the API key.
/// Without an authorizer, IAM or API keys both sides have none and the token suffices.
pub(super) fn same_principal(original: &ConnectionContext, now: &ConnectionContext) -> bool {
    let principal = |context: &ConnectionContext| {
        context
            .authorizer
            .as_ref()
            .and_then(|authorizer| authorizer.get("principalId").cloned())
    };
    let access = |context: &ConnectionContext| {
        context.access.as_ref().map(|access| {
            (
                access.access_key.clone(),
                access.api_key_id.clone(),
                access.user_arn.clone(),
            )
        })
    };
    principal(original) == principal(now) && access(original) == access(now)
}

/// Where a resumed connection is.
#[derive(Debug)]
pub(super) enum Holder {
    /// On this node: the suspended (or still open) connection.
    Here(ConnectionHandle),
    /// It was on another node, which handed it over (`[resume]` in a cluster).
    Moved(Box<Moved>),
}

/// A resume that passed the checks, on its way to the connection's task.
#[derive(Debug)]
pub(super) struct Resuming {
    /// Where the connection is.
    pub(super) holder: Holder,
    /// The token the client presented.
    pub(super) token: ResumeToken,
    /// How many messages the client counted.
    pub(super) received: u64,
    /// The subprotocols the client offered (the connection's own is chosen again if offered).
    pub(super) offered: Vec<String>,
    /// The upgrade's headers (tokens removed) and query, for `$resume`.
    pub(super) headers: Arc<Vec<(String, String)>>,
    /// The upgrade's query.
    pub(super) query: Arc<Vec<(String, String)>>,
}

/// A new socket handed to the connection's task.
struct Takeover {
    stream: Box<dyn Transport>,
    /// Bytes read past the request head.
    leftover: Vec<u8>,
    /// The 101 without its `Sec-WebSocket-Protocol` line and final blank line: the task
    /// chooses the subprotocol, which only it knows.
    response_head: String,
    deflate: Option<Deflate>,
    admission: Admission,
    resuming: Resuming,
    /// The upgrade's request id (`$resume`'s).
    request_id: RequestId,
}

/// Hands an accepted resume's socket to the connection's task; refuses it with 4410 when the
/// token stopped matching since the checks (used by a concurrent resume, or the window ended).
#[allow(clippy::too_many_arguments)]
pub(super) async fn hand_over<S>(
    stream: S,
    leftover: Vec<u8>,
    response_head: String,
    deflate: Option<Deflate>,
    admission: Admission,
    resuming: Resuming,
    request_id: RequestId,
    mut event: AccessEvent,
    state: &State,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Holder::Here(handle) = &resuming.holder else {
        unreachable!("a connection handed over by another node arrives through `arrive`");
    };
    let handle = handle.clone();
    let ticket = resuming.token.ticket();
    let key_line = accept_line(&response_head);
    let takeover = Takeover {
        stream: Box::new(stream),
        leftover,
        response_head,
        deflate,
        admission,
        resuming,
        request_id: request_id.clone(),
    };
    match handle.mailbox().take_over(&ticket, Box::new(takeover)) {
        Ok(()) => {
            state.metrics.resume.resumed(ResumeOutcome::Resumed);
            state.access_log.record(event);
        }
        Err(back) => {
            let takeover = back
                .downcast::<Takeover>()
                .expect("the mailbox gives back what it was handed");
            let refusal = ConnectError::ResumeRefused {
                code: codes::RESUME_UNKNOWN,
                accept: key_line,
            };
            refusal.record(&state.metrics, &mut event);
            state.access_log.record(event);
            let mut stream = takeover.stream;
            let _ = bounded(stream.write_all(&refusal.response(&request_id))).await;
            let _ = stream.shutdown().await;
        }
    }
}

/// Continues, on this node, a connection that another node handed over for an accepted
/// resume: registers it here (its record now under this node), takes the messages queued for
/// it on the old node ahead of any that arrived here since, and serves it from the resume on
/// like its own task would have; delivers its `$disconnect` when it ends here.
#[allow(clippy::too_many_arguments)]
pub(super) async fn arrive<S>(
    stream: S,
    leftover: Vec<u8>,
    response_head: String,
    deflate: Option<Deflate>,
    admission: Admission,
    resuming: Resuming,
    request_id: RequestId,
    mut event: AccessEvent,
    state: Arc<State>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Resuming {
        holder,
        token,
        received,
        offered,
        headers,
        query,
    } = resuming;
    let Holder::Moved(moved) = holder else {
        unreachable!("a connection held here resumes through `hand_over`");
    };
    let Moved {
        context,
        groups,
        subprotocol,
        sent,
        retained,
        open_for_ms,
        last_active_at,
        node,
        stored,
    } = *moved;
    let context = Arc::new(context.into_context());
    let connection_id = context.connection_id.clone();
    let (limits, outbound_queue) = {
        let config = &state.deployment().config;
        (config.resume, config.limits.outbound_queue)
    };
    let key_line = accept_line(&response_head);
    let refuse = |mut stream: S, mut event: AccessEvent| {
        let state = state.clone();
        let request_id = request_id.clone();
        let key_line = key_line.clone();
        async move {
            let refusal = ConnectError::ResumeRefused {
                code: codes::RESUME_UNKNOWN,
                accept: key_line,
            };
            refusal.record(&state.metrics, &mut event);
            state.access_log.record(event);
            let _ = bounded(stream.write_all(&refusal.response(&request_id))).await;
            let _ = stream.shutdown().await;
        }
    };
    let Some(limits) = limits else {
        // A reload turned `[resume]` off since the upgrade was checked.
        refuse(stream, event).await;
        return;
    };
    let handle = ConnectionHandle::new(
        context.clone(),
        outbound_queue,
        state.shutdown.child_token(),
    );
    handle.info.touch(last_active_at);
    let Some(presence) = state.cluster.register_moved(handle.clone(), &groups) else {
        refuse(stream, event).await;
        return;
    };
    // The messages queued on the old node are older than any that reached this one since.
    let queued = if stored {
        // Its node is gone: the record it left is taken, by this resume alone.
        state
            .cluster
            .take_suspended(&connection_id, &hex::encode(token.ticket()), node)
            .await
    } else {
        state
            .cluster
            .call::<Vec<MovedMessage>>(Request::CompleteHandOver {
                connection_id: connection_id.clone(),
                node,
            })
            .await
    };
    let queued = match queued {
        Ok(queued) => queued,
        Err(error) => {
            warn!(connection_id = %connection_id, error = %error, "the node that handed the connection over did not release it; the resume is refused");
            presence.moved();
            refuse(stream, event).await;
            return;
        }
    };
    handle.mailbox().push_front(
        queued
            .into_iter()
            .map(MovedMessage::into_outbound)
            .collect(),
    );
    state.metrics.resume.resumed(ResumeOutcome::Resumed);
    event.connection = Some(context.clone());
    state.access_log.record(event);
    state.metrics.connections.inc();

    let mut replay = Replay::new(limits, subprotocol);
    replay.greeted = true;
    replay.opened_at = tokio::time::Instant::now()
        .checked_sub(std::time::Duration::from_millis(open_for_ms))
        .unwrap_or_else(tokio::time::Instant::now);
    for message in retained {
        replay.record(&message.into_outbound());
    }
    // What was sent before the kept messages counts too.
    replay.sent = sent;
    let mut connection =
        Connection::new(state.clone(), handle.clone(), Some(Box::new(replay)), None);
    let takeover = Takeover {
        stream: Box::new(stream),
        leftover,
        response_head,
        deflate,
        admission,
        resuming: Resuming {
            holder: Holder::Here(handle.clone()),
            token,
            received,
            offered,
            headers,
            query,
        },
        request_id,
    };
    let mut admission = None;
    let ended =
        Box::pin(connection.serve(Pending::TakeOver(Box::new(takeover)), &mut admission)).await;
    handle.mailbox().close();
    state.metrics.connections.dec();
    match ended {
        Some(cause) => {
            if Box::pin(presence.end()).await {
                Box::pin(super::disconnect::deliver_disconnect(
                    &state, context, &cause, None,
                ))
                .await;
            }
        }
        None => presence.moved(),
    }
}

/// The `Sec-WebSocket-Accept` value of a 101 head.
fn accept_line(head: &str) -> String {
    head.lines()
        .find_map(|line| line.strip_prefix("Sec-WebSocket-Accept: "))
        .unwrap_or_default()
        .to_owned()
}

/// What a resumable connection sent, kept for replay: the last messages within the resume
/// limits, numbered from the connection's first.
#[derive(Debug)]
pub(super) struct Replay {
    limits: ResumeConfig,
    /// The subprotocol the connection was opened with, chosen again on resume if offered.
    subprotocol: Option<String>,
    /// How many counted messages went to the client (or were owed to it while suspended).
    sent: u64,
    /// The last of them, oldest first.
    retained: VecDeque<Outbound>,
    retained_bytes: usize,
    /// Whether a resume frame went out (the first is sent when the first socket opens).
    greeted: bool,
    /// When the connection was accepted: its maximum duration counts from here, across
    /// resumes (kept here rather than in every connection's task).
    opened_at: tokio::time::Instant,
}

/// Where a resume starts: what the client is told and which kept messages go out again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    /// The count the client continues from (its own, plus what could not be replayed).
    sequence: u64,
    /// Messages the client did not receive that are no longer kept.
    missed: u64,
    /// The first kept message to send again.
    from: usize,
}

impl Replay {
    /// Nothing sent yet.
    pub(super) fn new(limits: ResumeConfig, subprotocol: Option<String>) -> Replay {
        Replay {
            limits,
            subprotocol,
            sent: 0,
            retained: VecDeque::new(),
            retained_bytes: 0,
            greeted: false,
            opened_at: tokio::time::Instant::now(),
        }
    }

    /// When the connection was accepted.
    pub(super) fn opened_at(&self) -> tokio::time::Instant {
        self.opened_at
    }

    /// Whether a resume frame went out.
    pub(super) fn greeted(&self) -> bool {
        self.greeted
    }

    /// Counts and keeps one message, dropping the oldest past the limits.
    pub(super) fn record(&mut self, outbound: &Outbound) {
        self.sent += 1;
        self.retained_bytes += outbound.payload.len();
        self.retained.push_back(outbound.clone());
        while self.retained.len() > self.limits.max_queued_messages
            || (self.retained_bytes > self.limits.max_queued_bytes && self.retained.len() > 1)
        {
            let dropped = self.retained.pop_front().expect("more than one is kept");
            self.retained_bytes -= dropped.payload.len();
        }
    }

    /// Where to resume for a client that counted `received` messages.
    fn plan(&self, received: u64) -> Plan {
        let received = received.min(self.sent);
        let first_kept = self.sent - self.retained.len() as u64;
        let sequence = received.max(first_kept);
        Plan {
            sequence,
            missed: sequence - received,
            from: usize::try_from(sequence - first_kept).expect("at most the kept count"),
        }
    }
}

/// What the previous socket left the connection with.
enum Pending {
    /// The socket dropped: the connection is suspended until a resume or its end.
    Suspend(CloseCause),
    /// A new socket took over while the previous one was open.
    TakeOver(Opaque),
}

impl Connection {
    /// Whether `cause` suspends this connection rather than ending it: it is resumable, and
    /// the socket was lost without a clean close from the client (no close frame, missed
    /// heartbeats, a client that stopped reading, or the client's 1001 "going away").
    pub(super) fn suspends(&self, cause: &CloseCause) -> bool {
        self.replay.is_some()
            && !self.handle.close_token().is_cancelled()
            && match cause {
                CloseCause::ConnectionLost
                | CloseCause::HeartbeatTimeout
                | CloseCause::SlowConsumer => true,
                CloseCause::ClientClosed { code, .. } => *code == Some(codes::GOING_AWAY),
                _ => false,
            }
    }

    /// Sends the resume frame, with a new token (the previous one stops resuming the
    /// connection): the first message on each of its sockets. `plan` is `None` on the first.
    async fn greet_with<S>(
        &mut self,
        socket: &mut WebSocket<S>,
        plan: Option<Plan>,
    ) -> Result<(), CloseCause>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Some(replay) = &mut self.replay else {
            return Ok(());
        };
        replay.greeted = true;
        let token = ResumeToken::generate(self.handle.context.connection_id.clone());
        self.handle.mailbox().set_ticket(token.ticket());
        let resumed = plan.is_some();
        let plan = plan.unwrap_or(Plan {
            sequence: 0,
            missed: 0,
            from: 0,
        });
        let frame = serde_json::json!({
            "type": "sockway.resume",
            "connectionId": self.handle.context.connection_id.as_str(),
            "token": token.encode(),
            "windowSeconds": replay.limits.window.as_secs(),
            "resumed": resumed,
            "sequence": plan.sequence,
            "missed": plan.missed,
        });
        send_text(socket, &frame.to_string()).await
    }

    /// Sends the first resume frame of a resumable connection (nothing for another one).
    pub(super) async fn greet<S>(&mut self, socket: &mut WebSocket<S>) -> Result<(), CloseCause>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.greet_with(socket, None).await
    }

    /// After the first socket's loop: ends the connection, or suspends it and serves every
    /// socket that resumes it until it ends. Returns why it ended, or `None` when it moved to
    /// another node (which now holds it and delivers its `$disconnect`); `admission` is then
    /// the connection slot of the last socket (each socket's own, taken over from its upgrade).
    pub(super) async fn finish<S>(
        &mut self,
        mut socket: WebSocket<S>,
        ended: Ended,
        admission: &mut Option<Admission>,
    ) -> Option<CloseCause>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let pending = match self.after_socket(&mut socket, ended).await {
            Ok(pending) => pending,
            Err(cause) => return Some(cause),
        };
        drop(socket);
        self.serve(pending, admission).await
    }

    /// What follows the end of one socket: the connection ends (`Err`, once its socket is
    /// closed and its integrations settled), or waits for the next socket (`Ok`).
    async fn after_socket<S>(
        &mut self,
        socket: &mut WebSocket<S>,
        ended: Ended,
    ) -> Result<Pending, CloseCause>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match ended {
            Ended::Closed(cause) if !self.suspends(&cause) => {
                self.handle.mark_closing();
                self.close_socket(socket, &cause).await;
                self.settle_inflight().await;
                Err(cause)
            }
            Ended::Closed(cause) => {
                self.close_socket(socket, &cause).await;
                Ok(Pending::Suspend(cause))
            }
            Ended::TakenOver(takeover) => Ok(Pending::TakeOver(takeover)),
        }
    }

    /// Serves the sockets that resume the connection, from `pending` on, until it ends
    /// (`Some` cause) or moves to another node (`None`).
    async fn serve(
        &mut self,
        mut pending: Pending,
        admission: &mut Option<Admission>,
    ) -> Option<CloseCause> {
        loop {
            let (takeover, cause) = match pending {
                // The old socket was open: if a hand-over to another node fails, the
                // connection waits here as if that socket had been lost.
                Pending::TakeOver(takeover) => (takeover, CloseCause::ConnectionLost),
                Pending::Suspend(cause) => match self.suspend(cause).await {
                    Ok(taken) => taken,
                    Err(cause) => {
                        self.handle.mark_closing();
                        self.settle_inflight().await;
                        return Some(cause);
                    }
                },
            };
            let takeover = match takeover.downcast::<HandOverAsk>() {
                Ok(ask) => {
                    if self.move_out(*ask).await {
                        return None;
                    }
                    pending = Pending::Suspend(cause);
                    continue;
                }
                Err(takeover) => takeover
                    .downcast::<Takeover>()
                    .expect("only connection::resume and the cluster hand connections over"),
            };
            let mut socket = match self.resume_on(*takeover, admission).await {
                Ok(socket) => socket,
                Err(cause) => {
                    pending = Pending::Suspend(cause);
                    continue;
                }
            };
            let ended = self.run(&mut socket).await;
            pending = match self.after_socket(&mut socket, ended).await {
                Ok(pending) => pending,
                Err(cause) => return Some(cause),
            };
        }
    }

    /// Hands the connection to the node its client resumed on (`[resume]` in a cluster):
    /// checks the principal, lets in-flight integrations finish (their answers go with the
    /// replay), answers with what the connection needs to go on there, then waits until that
    /// node took its queued messages ([`Request::CompleteHandOver`]). Returns whether it moved;
    /// otherwise its token resumes it here again.
    async fn move_out(&mut self, ask: HandOverAsk) -> bool {
        let HandOverAsk {
            ticket,
            principal,
            reply,
        } = ask;
        let connection_id = self.handle.context.connection_id.clone();
        if !same_principal(&self.handle.context, &principal) {
            debug!(connection_id = %connection_id, "hand-over refused: the authorizer named another principal");
            self.handle.mailbox().set_ticket(ticket);
            let _ = reply.send(HandOverAnswer::Forbidden);
            return false;
        }
        let grace = self.state.deployment().config.limits.shutdown_grace;
        let _ = tokio::time::timeout(grace, async {
            while let Some(completion) = self.inflight.next().await {
                self.owe(completion);
            }
        })
        .await;
        let groups = self
            .state
            .cluster
            .call::<Vec<GroupName>>(Request::GroupsOf {
                connection_id: connection_id.clone(),
            })
            .await
            .unwrap_or_default();
        let moved = self.moved(groups);
        if reply.send(HandOverAnswer::Moved(Box::new(moved))).is_err() {
            self.handle.mailbox().set_ticket(ticket);
            return false;
        }
        let completed = tokio::select! {
            () = self.handle.mailbox().wait_closed() => true,
            () = tokio::time::sleep(HAND_OVER_TIMEOUT) => false,
            () = self.handle.close_token().cancelled() => false,
        };
        if completed {
            // The in-flight integrations that did not finish in time are cancelled.
            self.inflight.clear();
            debug!(connection_id = %connection_id, "connection moved to another node");
        } else {
            warn!(connection_id = %connection_id, "the node the connection was handed to did not take it; it stays here");
            self.handle.mailbox().set_ticket(ticket);
        }
        completed
    }

    /// What the connection needs to go on at another node (a hand-over's answer, a suspended
    /// connection's record in a cluster).
    fn moved(&self, groups: Vec<GroupName>) -> Moved {
        let replay = self
            .replay
            .as_ref()
            .expect("only a resumable connection moves");
        Moved {
            context: MovedContext::of(&self.handle.context),
            groups,
            subprotocol: replay.subprotocol.clone(),
            sent: replay.sent,
            retained: replay.retained.iter().map(MovedMessage::of).collect(),
            open_for_ms: u64::try_from(replay.opened_at.elapsed().as_millis()).unwrap_or(u64::MAX),
            last_active_at: self.handle.info.last_active_at(),
            node: 0,
            stored: false,
        }
    }

    /// Waits, suspended, for a socket to take the connection over; or ends it: the window
    /// passed (`NotResumed`), a `DELETE`, the resume limits (`ResumeQueueFull`) or shutdown.
    /// Integrations that finish meanwhile are answered into the replay, so the client gets
    /// their answers on resume.
    async fn suspend(&mut self, cause: CloseCause) -> Result<(Opaque, CloseCause), CloseCause> {
        let state = self.state.clone();
        // A reload may have turned `[resume]` off since the connection was opened: then it
        // ends as it would have without it.
        let Some(limits) = state.deployment().config.resume else {
            return Err(cause);
        };
        let metrics = &state.metrics.resume;
        let generation = state.cluster.suspension_generation();
        let window_ends_at =
            epoch_millis() + i64::try_from(limits.window.as_millis()).unwrap_or(i64::MAX / 2);
        let expiry = tokio::time::sleep(limits.window);
        let queued = self.handle.mailbox().suspend(Suspension {
            max_messages: limits.max_queued_messages,
            max_bytes: limits.max_queued_bytes,
            queued_bytes: metrics.queued_bytes.clone(),
            generation,
        });
        metrics.suspended.inc();
        // In a cluster, what a survivor needs to resume it if this node dies (one Redis write;
        // nothing on a single node). Messages queued from now on are kept there as they come.
        if let (Some(by), Some(ticket)) = (SuspendedBy::of(&cause), self.handle.mailbox().ticket())
        {
            let id = self.handle.context.connection_id.clone();
            state
                .cluster
                .record_suspension(
                    &id,
                    generation,
                    &ticket,
                    (limits.max_queued_messages, limits.max_queued_bytes),
                    |groups| Suspended {
                        moved: self.moved(groups),
                        queued: queued.iter().map(MovedMessage::of).collect(),
                        cause: by,
                        window_ends_at,
                    },
                )
                .await;
        }
        drop(queued);
        debug!(connection_id = %self.handle.context.connection_id, cause = ?cause, "connection suspended");
        let mut event = AccessEvent::of_connection(
            EventType::Suspend,
            self.handle.context.clone(),
            RequestId::from_random(random_bytes()).to_string(),
            epoch_millis(),
        );
        event.disconnect_status_code = Some(cause.disconnect_status_code());
        event.disconnect_reason = Some(cause.disconnect_reason());
        state.access_log.record(event);

        tokio::pin!(expiry);
        let outcome = loop {
            tokio::select! {
                biased;
                _ = self.handle.close_token().cancelled() => {
                    break Err(self.handle.info.close_cause().unwrap_or(CloseCause::ServerShutdown));
                }
                takeover = self.handle.mailbox().next_takeover() => break Ok(takeover),
                Some(completion) = self.inflight.next(), if !self.inflight.is_empty() => {
                    self.owe(completion);
                }
                _ = &mut expiry => match self.handle.mailbox().seal() {
                    Some(takeover) => break Ok(takeover),
                    None => {
                        metrics.expired.inc();
                        break Err(CloseCause::NotResumed(Box::new(cause.clone())));
                    }
                },
            }
        };
        self.handle.mailbox().unsuspend();
        state
            .cluster
            .end_suspension(&self.handle.context.connection_id, generation);
        metrics.suspended.dec();
        outcome.map(|takeover| (takeover, cause))
    }

    /// Records a finished integration while there is no socket: what it owes the client is
    /// counted as sent and kept, so it goes out on resume.
    fn owe(&mut self, completion: Completion) {
        if let (Some(outbound), _span) = self.conclude(completion) {
            if let Some(replay) = &mut self.replay {
                replay.record(&outbound);
            }
        }
    }

    /// Continues the connection on a socket that took it over: the 101, the resume frame,
    /// what the client missed, what was queued, and `$resume`. On failure the socket is gone
    /// again and the token it used resumes the connection once more.
    async fn resume_on(
        &mut self,
        takeover: Takeover,
        admission: &mut Option<Admission>,
    ) -> Result<WebSocket<Box<dyn Transport>>, CloseCause> {
        let Takeover {
            mut stream,
            leftover,
            mut response_head,
            deflate,
            admission: new_admission,
            resuming,
            request_id,
        } = takeover;
        let replay = self
            .replay
            .as_ref()
            .expect("only a resumable connection is taken over");
        let offered = |protocol: &str| resuming.offered.iter().any(|offer| offer == protocol);
        // The connection's own subprotocol, else the resume one: whichever the client offered
        // (a client may not be told one it did not offer).
        let subprotocol = [replay.subprotocol.as_deref(), Some(RESUME_PROTOCOL)]
            .into_iter()
            .flatten()
            .find(|protocol| offered(protocol));
        if let Some(subprotocol) = subprotocol {
            response_head.push_str(&format!("Sec-WebSocket-Protocol: {subprotocol}\r\n"));
        }
        response_head.push_str("\r\n");
        if let Err(cause) = bounded(stream.write_all(response_head.as_bytes())).await {
            self.handle.mailbox().set_ticket(resuming.token.ticket());
            return Err(cause);
        }
        *admission = Some(new_admission);
        let (frame_limits, frame_bytes) = {
            let limits = &self.state.deployment().config.limits;
            let frame_limits = FrameLimits {
                max_frame_bytes: limits.frame_bytes,
                max_message_bytes: limits.message_bytes,
            };
            (frame_limits, limits.frame_bytes)
        };
        let budget = self.state.caps.buffered.clone();
        let mut socket = WebSocket::new(stream, &leftover, frame_limits, deflate, budget);
        let plan = replay.plan(resuming.received);
        let again: Vec<Outbound> = replay.retained.iter().skip(plan.from).cloned().collect();
        debug!(connection_id = %self.handle.context.connection_id, received = resuming.received, replayed = again.len(), missed = plan.missed, "connection resumed");
        self.greet_with(&mut socket, Some(plan)).await?;
        self.state
            .metrics
            .resume
            .replayed
            .inc_by(again.len() as u64);
        for outbound in &again {
            bounded(socket.send(&outbound.payload, outbound.text, frame_bytes)).await?;
        }
        // What was queued while suspended, in order, before anything new.
        for _ in 0..self.handle.mailbox().len() {
            let Some(outbound) = self.handle.mailbox().try_pop() else {
                break;
            };
            self.deliver(&mut socket, &outbound).await?;
            self.state.metrics.pushes_out.inc();
            self.state.metrics.bytes_out(outbound.payload.len());
        }
        self.handle.info.touch(epoch_millis());
        self.call_resume_route(resuming, request_id);
        Ok(socket)
    }

    /// Tells the `$resume` route, when there is one, alongside the connection's other calls.
    fn call_resume_route(&mut self, resuming: Resuming, request_id: RequestId) {
        let Some(route) = self.state.deployment().routes.resume().cloned() else {
            return;
        };
        let integration = route.integration.clone();
        let requested_at = epoch_millis();
        let call = Call {
            connection: self.handle.context.clone(),
            request_id: request_id.clone(),
            now_ms: requested_at,
            kind: CallKind::Resume {
                headers: resuming.headers,
                query: resuming.query,
            },
        };
        route.metrics.messages_in.inc();
        let message_id = RequestId::from_random(random_bytes());
        self.inflight.push(Box::pin(async move {
            let started = tokio::time::Instant::now();
            let result = integration.invoke(&call, None).await;
            Completion {
                route,
                request_id,
                message_id,
                requested_at,
                result,
                latency: started.elapsed(),
                span: None,
            }
        }));
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn message(n: u64) -> Outbound {
        Outbound::from_bytes(Bytes::from(format!("m{n:03}")))
    }

    #[test]
    fn tokens_round_trip_and_fit_a_subprotocol() {
        let token = ResumeToken::generate(ConnectionId::parse("BFaT_fALIAMCKug=").unwrap());
        let text = token.encode();
        assert_eq!(text.len(), 43);
        assert!(
            text.bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'),
            "{text}"
        );
        assert_eq!(ResumeToken::decode(&text), Some(token.clone()));
        assert_eq!(ResumeToken::decode(&text[1..]), None);
        assert_eq!(ResumeToken::decode("not a token"), None);
        let other = ResumeToken::generate(token.connection_id.clone());
        assert_ne!(token.ticket(), other.ticket());
    }

    #[test]
    fn offers_are_read_from_the_subprotocols() {
        let token = ResumeToken::generate(ConnectionId::parse("BFaT_fALIAMCKug=").unwrap());
        let offered = format!("{TOKEN_PROTOCOL_PREFIX}{}.42", token.encode());
        assert_eq!(
            ResumeOffer::of(["chat", RESUME_PROTOCOL, &offered].into_iter()),
            ResumeOffer {
                asked: true,
                resuming: Some((token, 42)),
            }
        );
        assert_eq!(
            ResumeOffer::of(["chat"].into_iter()),
            ResumeOffer::default()
        );
        let garbled = ResumeOffer::of([RESUME_PROTOCOL, "sockway.resume.token.xyz"].into_iter());
        assert!(
            garbled.resuming.is_some(),
            "a garbled token is refused, not ignored"
        );
    }

    #[test]
    fn tokens_are_stripped_from_the_headers_others_see() {
        let mut headers = vec![
            (
                "Sec-WebSocket-Protocol".to_owned(),
                format!("chat, {RESUME_PROTOCOL}, {TOKEN_PROTOCOL_PREFIX}abc.3"),
            ),
            (
                "sec-websocket-protocol".to_owned(),
                format!("{TOKEN_PROTOCOL_PREFIX}abc.3"),
            ),
            ("Host".to_owned(), "example".to_owned()),
        ];
        strip_tokens(&mut headers);
        assert_eq!(
            headers,
            vec![
                (
                    "Sec-WebSocket-Protocol".to_owned(),
                    format!("chat, {RESUME_PROTOCOL}")
                ),
                ("Host".to_owned(), "example".to_owned()),
            ]
        );
    }

    fn check(replay: &Replay, received: u64, sequence: u64, missed: u64, from: usize) {
        assert_eq!(
            replay.plan(received),
            Plan {
                sequence,
                missed,
                from
            },
            "received {received}"
        );
    }

    #[test]
    fn a_replay_sends_again_what_the_client_did_not_count() {
        let limits = ResumeConfig {
            max_queued_messages: 3,
            max_queued_bytes: 1000,
            ..ResumeConfig::default()
        };
        let mut replay = Replay::new(limits, None);
        check(&replay, 0, 0, 0, 0);
        for n in 1..=5 {
            replay.record(&message(n));
        }
        // Messages 3, 4 and 5 are kept.
        check(&replay, 5, 5, 0, 3);
        check(&replay, 3, 3, 0, 1);
        check(&replay, 2, 2, 0, 0);
        check(&replay, 0, 2, 2, 0);
        // A count beyond what was sent is taken as everything.
        check(&replay, 9, 5, 0, 3);
    }

    #[test]
    fn a_replay_keeps_within_its_bytes() {
        let limits = ResumeConfig {
            max_queued_messages: 100,
            max_queued_bytes: 8,
            ..ResumeConfig::default()
        };
        let mut replay = Replay::new(limits, None);
        for n in 1..=4 {
            replay.record(&message(n));
        }
        assert_eq!(replay.retained.len(), 2);
        assert_eq!(replay.retained_bytes, 8);
        check(&replay, 1, 2, 1, 0);
    }

    #[test]
    fn the_principal_must_be_the_same() {
        let context = |principal: Option<&str>| ConnectionContext {
            connection_id: ConnectionId::parse("BFaT_fALIAMCKug=").unwrap(),
            api_id: "api".to_owned(),
            stage: "dev".to_owned(),
            domain_name: "localhost".to_owned(),
            connected_at: 0,
            source_ip: "127.0.0.1".to_owned(),
            user_agent: None,
            authorizer: principal.map(|principal| {
                let mut map = serde_json::Map::new();
                map.insert("principalId".to_owned(), principal.into());
                map
            }),
            access: None,
        };
        assert!(same_principal(&context(None), &context(None)));
        assert!(same_principal(&context(Some("ann")), &context(Some("ann"))));
        assert!(!same_principal(
            &context(Some("ann")),
            &context(Some("bob"))
        ));
        assert!(!same_principal(&context(Some("ann")), &context(None)));
    }
}
