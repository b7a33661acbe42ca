//! One connection's task: handshake, register, open loop, finish.
//!
//! The task that read the upgrade request owns the socket until it closes; nothing else writes
//! to it. Other parts of the gateway reach the connection through its `ConnectionHandle`
//! (`registry`: a bounded mailbox plus a close token). The task reads top to bottom, one phase
//! a file:
//!
//! - handshake ([`handshake`]): check the upgrade, throttle, authorize, run `$connect`; a
//!   refusal is one [`refusal::ConnectError`], answered with its status;
//! - register ([`open`]): presence in the registry and the cluster, removed by a guard on every
//!   exit path, then the 101;
//! - open loop ([`open_loop`]): select over a client frame, a finished integration, a mailbox
//!   command, the one timer of the heartbeat and the idle/duration deadlines ([`timers`]) and
//!   the close token; it returns the close reason;
//! - finish ([`open`], then [`disconnect`]): close the socket, let in-flight integrations
//!   finish, deliver `$disconnect` once.
//!
//! [`disconnect`] also delivers the `$disconnect` of connections the cluster took over from a
//! lost node ([`deliver_orphans`]).

mod disconnect;
mod handshake;
mod open_loop;
mod refusal;
mod resume;
mod socket;
mod timers;

use std::net::SocketAddr;
use std::sync::Arc;

use sockway_protocol::close::CloseCause;
use sockway_protocol::event::ConnectionContext;
use sockway_protocol::group::GroupName;
use sockway_protocol::id::RequestId;
use sockway_protocol::trace::SpanContext;
use sockway_protocol::websocket::reader::Limits as FrameLimits;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::{Instrument, debug, error, info_span};

pub(crate) use self::disconnect::deliver_orphans;
use self::open_loop::{Connection, Ended};
use self::refusal::ConnectError;
use self::socket::WebSocket;
use crate::access_log::AccessEvent;
use crate::cluster::Presence;
use crate::head::{RequestHead, respond_and_close};
use crate::registry::ConnectionHandle;
use crate::state::State;
use crate::throttle::Admission;

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
    mut stream: S,
    local: Option<SocketAddr>,
    head: RequestHead,
    buffered: Vec<u8>,
    peer: SocketAddr,
    state: Arc<State>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match handshake::negotiate(&head, peer, local, &state).await {
        Ok((mut accepted, event)) => {
            let leftover = buffered[head.length..].to_vec();
            drop((head, buffered));
            if let Some(resuming) = accepted.resuming.take() {
                let response_head =
                    String::from_utf8(accepted.response).expect("the 101 sockway writes is ASCII");
                if matches!(resuming.holder, resume::Holder::Moved(_)) {
                    // Handed over by another node: the connection gets a task here.
                    let span =
                        info_span!("connection", connection_id = %accepted.context.connection_id);
                    state.tasks.spawn(
                        resume::arrive(
                            stream,
                            leftover,
                            response_head,
                            accepted.deflate,
                            accepted.admission,
                            *resuming,
                            accepted.request_id,
                            event,
                            state.clone(),
                        )
                        .instrument(span),
                    );
                    return;
                }
                Box::pin(resume::hand_over(
                    stream,
                    leftover,
                    response_head,
                    accepted.deflate,
                    accepted.admission,
                    *resuming,
                    accepted.request_id,
                    event,
                    &state,
                ))
                .await;
                return;
            }
            let span = info_span!("connection", connection_id = %accepted.context.connection_id);
            state
                .tasks
                .spawn(open(stream, leftover, accepted, event, state.clone()).instrument(span));
        }
        Err(refused) => {
            respond_and_close(&mut stream, refused.error.response(&refused.request_id)).await;
        }
    }
}

/// Makes the connection reachable (in the registry and the cluster, a member of `groups`) and
/// records its CONNECT line; on an id collision, the refusal to write instead. Not async, so
/// what it consumes is not kept in the connection task's state.
fn register<'s>(
    state: &'s State,
    handle: ConnectionHandle,
    groups: Vec<GroupName>,
    request_id: RequestId,
    mut event: AccessEvent,
) -> Result<Presence<'s>, Vec<u8>> {
    match state.cluster.register(handle, &groups) {
        Some(presence) => {
            state.access_log.record(event);
            Ok(presence)
        }
        None => {
            error!("connection id collision; refusing the upgrade");
            let refusal = ConnectError::IdCollision;
            refusal.record(&state.metrics, &mut event);
            state.access_log.record(event);
            Err(refusal.response(&request_id))
        }
    }
}

/// What an accepted connection's task starts from, in one box: an async fn keeps each of its
/// arguments for its whole life (once as the argument, once as the local it is moved into),
/// and these are all consumed before the 101 is written.
struct Opening<S> {
    stream: S,
    leftover: Vec<u8>,
    accepted: handshake::Accepted,
    event: AccessEvent,
    state: Arc<State>,
}

/// An open connection: what its task holds while the open loop waits, in one place the loop
/// borrows from (a value moved from one local to another would be kept twice).
///
/// The connection's handle, context and `CONNECT` span are the [`Connection`]'s: held once.
struct Open<'s, S> {
    socket: WebSocket<S>,
    connection: Connection,
    presence: Presence<'s>,
    /// The slot under the connection caps, held until the connection ends: the first
    /// socket's, or the last one's that resumed the connection.
    admission: Option<Admission>,
}

/// The accepted connection's task: register, write the 101, run the open loop, finish.
///
/// The task is allocated at the size of this future, which every idle connection keeps: only
/// the open loop's waiting state and [`Open`] are in it. What comes before the loop and after
/// it runs boxed, allocated while it runs.
fn open<S>(
    stream: S,
    leftover: Vec<u8>,
    accepted: handshake::Accepted,
    event: AccessEvent,
    state: Arc<State>,
) -> impl Future<Output = ()> + Send + 'static
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    serve(Box::new(Opening {
        stream,
        leftover,
        accepted,
        event,
        state,
    }))
}

/// [`open`]'s future.
async fn serve<S>(opening: Box<Opening<S>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = opening.state.clone();
    let Some(mut open) = Box::pin(start(opening, &state)).await else {
        return;
    };
    let ended = open.connection.run(&mut open.socket).await;
    Box::pin(open.finish(ended, &state)).await;
}

/// Registers the connection, writes the 101 and builds what the open loop needs; `None` when
/// the connection already ended (refused at registration, or gone before the 101).
async fn start<S>(opening: Box<Opening<S>>, state: &State) -> Option<Open<'_, S>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Opening {
        mut stream,
        leftover,
        accepted,
        event,
        state: shared,
    } = *opening;
    let handshake::Accepted {
        context,
        request_id,
        response,
        groups,
        deflate,
        admission,
        replay,
        resuming: _,
        connect_span,
    } = accepted;
    // The limits of the deployment in use now: the connection keeps them for its life.
    let (outbound_queue, frame_limits) = {
        let limits = &state.deployment().config.limits;
        let frame_limits = FrameLimits {
            max_frame_bytes: limits.frame_bytes,
            max_message_bytes: limits.message_bytes,
        };
        (limits.outbound_queue, frame_limits)
    };
    let handle = ConnectionHandle::new(
        context.clone(),
        outbound_queue,
        state.shutdown.child_token(),
    );
    // Registered before the 101 goes out, so a backend that posts as soon as `$connect`
    // returned reaches the connection instead of getting 410.
    let presence = match register(state, handle.clone(), groups, request_id, event) {
        Ok(presence) => presence,
        Err(response) => {
            respond_and_close(&mut stream, response).await;
            return None;
        }
    };

    state.metrics.connections.inc();
    if let Err(error) = stream.write_all(&response).await {
        debug!(error = %error, "client went away before the 101 was written");
        handle.mark_closing();
        let cause = CloseCause::ConnectionLost;
        // Boxed: the `$disconnect` delivery would make this step's future (allocated for
        // every connection) about 11 KB larger.
        Box::pin(end(state, &handle, presence, context, connect_span, cause)).await;
        return None;
    }
    let budget = state.caps.buffered.clone();
    let socket = WebSocket::new(stream, &leftover, frame_limits, deflate, budget);
    let connection = Connection::new(shared, handle, replay, connect_span);
    Some(Open {
        socket,
        connection,
        presence,
        admission: Some(admission),
    })
}

impl<S> Open<'_, S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// After the open loop: with `[resume]` the connection may go on on other sockets, or on
    /// another node; else (or once that ends) it ends here.
    async fn finish(mut self, ended: Ended, state: &State) {
        let finished = self
            .connection
            .finish(self.socket, ended, &mut self.admission)
            .await;
        match finished {
            Some(cause) => {
                let Open {
                    connection,
                    presence,
                    ..
                } = self;
                let Connection {
                    handle,
                    connect_span,
                    ..
                } = connection;
                let context = handle.context.clone();
                end(state, &handle, presence, context, connect_span, cause).await;
            }
            None => {
                state.metrics.connections.dec();
                self.presence.moved();
            }
        }
    }
}

/// The end of a connection that ended on this node: its mailbox closed, out of the gauge,
/// out of the cluster, and its `$disconnect` delivered (unless, in a cluster, nodes that
/// declared this one dead already delivered it).
async fn end(
    state: &State,
    handle: &ConnectionHandle,
    presence: Presence<'_>,
    context: Arc<ConnectionContext>,
    connect_span: Option<Box<SpanContext>>,
    cause: CloseCause,
) {
    let undelivered = handle.mailbox().close();
    if undelivered > 0 {
        debug!(undelivered, cause = ?cause, "messages still queued when the connection ended");
    }
    state.metrics.connections.dec();
    if presence.end().await {
        disconnect::deliver_disconnect(state, context, &cause, connect_span.map(|span| *span))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future an async fn returns, without calling it.
    fn output_size<F, Fut>(_: &F) -> usize
    where
        F: Fn(tokio::net::TcpStream, Vec<u8>, handshake::Accepted, AccessEvent, Arc<State>) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// An open connection's task is allocated at the size of this future, so it is most of
    /// what an idle connection costs: the per-message phases are boxed to keep it small
    /// (3,168 bytes before they were, 1,736 after, in a debug build; 1,712 once registration
    /// moved into a plain function; 1,984 with `[resume]`, whose suspension and hand-over paths
    /// are boxed, against 1,792 on the same toolchain just before it; 16 more with tracing: a
    /// boxed `CONNECT` span context, here and in the loop's state; 1,360 once the arguments,
    /// consumed before the 101, came in one box and the loop's state in one struct; 960 once
    /// the `select!`'s output (192 bytes, a finished integration) no longer outlived it, the
    /// heartbeat's `Interval` and the deadline's sleep became one timer, and the handle,
    /// context and `CONNECT` span were held once; 800 with that timer boxed and the
    /// connection's id, context and close token held once, in its handle).
    ///
    /// The bound is an allocator size class, not a round number: tokio allocates the task at
    /// the future's size plus its header and trailer (about 176 bytes), in steps of 128 bytes
    /// (2,176 bytes for a 2,000-byte future in the release build), and mimalloc serves that
    /// from classes of 1,024, 1,280, 1,536, 1,792, 2,048 and 2,560 bytes: a future 1 byte past
    /// a class costs every idle connection the step to the next (256 bytes from 1,024 to
    /// 1,280). 848 bytes is the most that keeps the task in the 1,024-byte class.
    #[test]
    fn an_open_connection_task_stays_small() {
        let size = output_size(&open::<tokio::net::TcpStream>);
        assert!(
            size <= 848,
            "the open-connection future grew to {size} bytes"
        );
    }
}
