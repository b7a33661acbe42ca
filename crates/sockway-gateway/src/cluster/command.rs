//! Cluster operations as one closed command type: a [`Request`] says what to do, an
//! [`Outcome`] says what came of it, and [`apply`] serves a request against this node's
//! [`Registry`].
//!
//! **Adding a cluster operation** costs one `Request` variant and one match arm in [`apply`]
//! (plus an `Outcome` variant and its line in `outcome_value!` if it answers with a new kind of
//! value, and the HTTP endpoint that calls [`Cluster::call`](super::Cluster::call)). Nothing
//! else changes: the Local backend, the Redis backend's own-node path and the Redis inbox all
//! serve requests through `apply`, the Redis backend routes a request by its [`Target`], and
//! the Redis wire format encodes `Request` and `Outcome` with serde. Two exceptions are
//! inherent: a request that carries a message payload names it in [`Request::payload`] and
//! [`Request::payload_mut`] (so that the bytes travel outside the encoding; both matches list
//! every variant, so the compiler asks), and a request for
//! every node needs a rule for combining the nodes' answers in the Redis backend.
//!
//! Failures decided by the node that holds the connection (gone, queue full, too many groups)
//! come back as [`ClusterError`]s. Decisions about full or closing mailboxes are the
//! handle's; routing, fan-out to other nodes and Redis are the backends'.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sockway_protocol::close::CloseCause;
use sockway_protocol::event::{AccessIdentity, ConnectionContext};
use sockway_protocol::group::GroupName;
use sockway_protocol::id::ConnectionId;

use super::{ClusterError, ConnectionSnapshot, Cursor, ListedConnection, Page, Tally};
use crate::registry::{ConnectionHandle, MembershipError, Outbound, QueueError, Registry};

/// What a caller asks of the cluster.
///
/// Message payloads are not part of the serde encoding (`#[serde(skip)]`): the Redis wire
/// format carries them as raw bytes after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Request {
    /// `PostToConnection`: queue a message for the connection. Answers once it is queued for
    /// the socket, on whichever node holds it, in order with other messages this caller sent
    /// to that connection.
    Post {
        /// The connection.
        connection_id: ConnectionId,
        /// The message, sent as text when it is valid UTF-8.
        #[serde(skip)]
        payload: Bytes,
    },
    /// `GetConnection`: report the connection.
    Get {
        /// The connection.
        connection_id: ConnectionId,
    },
    /// `DeleteConnection`: close the connection with 1000.
    Delete {
        /// The connection.
        connection_id: ConnectionId,
    },
    /// Add the connection to a group.
    Join {
        /// The connection.
        connection_id: ConnectionId,
        /// The group.
        group: GroupName,
    },
    /// Take the connection out of a group.
    Leave {
        /// The connection.
        connection_id: ConnectionId,
        /// The group.
        group: GroupName,
    },
    /// Report the groups the connection is in.
    GroupsOf {
        /// The connection.
        connection_id: ConnectionId,
    },
    /// Queue a message for every member of a group, or every connection, on every node. Each
    /// node fans out to its own members, so the message crosses Redis once per node.
    Broadcast {
        /// The group; `None` for every connection.
        group: Option<GroupName>,
        /// The message, shared (not copied) by every queued copy.
        #[serde(skip)]
        payload: Bytes,
    },
    /// `[resume]`: a client resumes the connection on another node, which asks the node
    /// holding it for what the connection needs to go on there (first step of a move). The
    /// holder checks the token and the principal, lets the connection's in-flight
    /// integrations finish, and answers with [`Moved`]; messages stay queued with it until
    /// [`Request::CompleteHandOver`].
    HandOver {
        /// The connection.
        connection_id: ConnectionId,
        /// The SHA-256 of the presented resume token, in hex.
        ticket: String,
        /// The resuming upgrade's identity (authorizer, IAM, API key), which must name the
        /// connection's principal.
        principal: Box<MovedContext>,
    },
    /// `[resume]`: the node the connection moved to has registered it; the previous holder
    /// answers with the messages still queued for it and, from then on, sends callers there
    /// (second step of a move).
    CompleteHandOver {
        /// The connection.
        connection_id: ConnectionId,
        /// The node that answered the first step ([`Moved::node`]).
        node: u16,
    },
    /// Report a page of open connections (members of a group, or all): nodes in tag order,
    /// each node's connections in id order.
    List {
        /// The group; `None` for every connection.
        group: Option<GroupName>,
        /// Where the page starts; `None` for the first page. A node asked for its part reads
        /// only `after`.
        cursor: Option<Cursor>,
        /// At most this many connections.
        limit: usize,
    },
}

/// Where a [`Request`] is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    /// The node that holds this connection, named by the node tag inside its id.
    Connection(&'a ConnectionId),
    /// Every node, whose answers are combined.
    EveryNode,
}

/// What a request did, when it succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
    /// Queued (post), closing (delete), or the membership changed (join, leave).
    Done,
    /// The connection's facts (get).
    Snapshot(ConnectionSnapshot),
    /// The connection's groups (groups of).
    Groups(Vec<GroupName>),
    /// What a broadcast did.
    Tally(Tally),
    /// A page of connections (list).
    Page(Page),
    /// What the holder of a connection answered to [`Request::HandOver`].
    HandOver(HandOverAnswer),
    /// The messages queued for a connection that moved (complete hand-over), oldest first.
    Queued(Vec<MovedMessage>),
}

/// The holder's answer to [`Request::HandOver`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum HandOverAnswer {
    /// The connection, ready to go on at the asking node.
    Moved(Box<Moved>),
    /// No connection can be resumed with that token here.
    Unknown,
    /// The resuming upgrade named another principal; the connection stays where it is.
    Forbidden,
}

/// What a connection needs to go on at another node: its facts, its groups and what it keeps
/// for replay. Messages queued for it follow with [`Request::CompleteHandOver`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Moved {
    /// The connection's context from its `$connect`.
    pub(crate) context: MovedContext,
    /// The groups it is in.
    pub(crate) groups: Vec<GroupName>,
    /// The subprotocol it was opened with.
    pub(crate) subprotocol: Option<String>,
    /// How many counted messages went to the client.
    pub(crate) sent: u64,
    /// The last of them, kept for replay, oldest first.
    pub(crate) retained: Vec<MovedMessage>,
    /// Milliseconds since the connection was accepted (its maximum duration counts from then).
    pub(crate) open_for_ms: u64,
    /// Epoch milliseconds of the last data frame either way.
    pub(crate) last_active_at: i64,
    /// The node that held it (its tag, filled in by the cluster backend that answered).
    #[serde(default)]
    pub(crate) node: u16,
    /// Read from the Redis record its node left when that node died (`[resume]`), not handed
    /// over by a live node: the resume takes that record rather than completing a hand-over.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) stored: bool,
}

/// `[resume]`, in a cluster: what a suspended connection leaves in Redis, so that a survivor of
/// its node can resume it (or end it once its window passed). The messages posted during the
/// suspension are kept beside it, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Suspended {
    /// What a hand-over sends.
    pub(crate) moved: Moved,
    /// Messages queued before the suspension began, oldest first.
    pub(crate) queued: Vec<MovedMessage>,
    /// What suspended it (its `$disconnect` says so if it is not resumed).
    pub(crate) cause: SuspendedBy,
    /// Epoch milliseconds when its window ends.
    pub(crate) window_ends_at: i64,
}

/// What suspended a connection, as a [`Suspended`] record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum SuspendedBy {
    /// The socket ended without a close frame.
    ConnectionLost,
    /// Missed heartbeats.
    HeartbeatTimeout,
    /// A client that stopped reading.
    SlowConsumer,
    /// The client's close (1001).
    ClientClosed {
        /// Its code.
        code: Option<u16>,
        /// Its reason.
        reason: String,
    },
}

impl SuspendedBy {
    /// The record of `cause`; `None` for a cause that does not suspend.
    pub(crate) fn of(cause: &CloseCause) -> Option<SuspendedBy> {
        match cause {
            CloseCause::ConnectionLost => Some(SuspendedBy::ConnectionLost),
            CloseCause::HeartbeatTimeout => Some(SuspendedBy::HeartbeatTimeout),
            CloseCause::SlowConsumer => Some(SuspendedBy::SlowConsumer),
            CloseCause::ClientClosed { code, reason } => Some(SuspendedBy::ClientClosed {
                code: *code,
                reason: reason.clone(),
            }),
            _ => None,
        }
    }

    /// The cause again.
    pub(crate) fn into_cause(self) -> CloseCause {
        match self {
            SuspendedBy::ConnectionLost => CloseCause::ConnectionLost,
            SuspendedBy::HeartbeatTimeout => CloseCause::HeartbeatTimeout,
            SuspendedBy::SlowConsumer => CloseCause::SlowConsumer,
            SuspendedBy::ClientClosed { code, reason } => CloseCause::ClientClosed { code, reason },
        }
    }
}

/// A [`ConnectionContext`] as it crosses nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MovedContext {
    connection_id: ConnectionId,
    api_id: String,
    stage: String,
    domain_name: String,
    connected_at: i64,
    source_ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authorizer: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access: Option<Box<AccessIdentity>>,
}

impl MovedContext {
    /// The context as it crosses nodes.
    pub(crate) fn of(context: &ConnectionContext) -> MovedContext {
        MovedContext {
            connection_id: context.connection_id.clone(),
            api_id: context.api_id.clone(),
            stage: context.stage.clone(),
            domain_name: context.domain_name.clone(),
            connected_at: context.connected_at,
            source_ip: context.source_ip.clone(),
            user_agent: context.user_agent.clone(),
            authorizer: context.authorizer.clone(),
            access: context.access.clone(),
        }
    }

    /// The context again.
    pub(crate) fn into_context(self) -> ConnectionContext {
        ConnectionContext {
            connection_id: self.connection_id,
            api_id: self.api_id,
            stage: self.stage,
            domain_name: self.domain_name,
            connected_at: self.connected_at,
            source_ip: self.source_ip,
            user_agent: self.user_agent,
            authorizer: self.authorizer,
            access: self.access,
        }
    }
}

/// One message of a connection that moves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MovedMessage {
    /// Whether it goes out as text.
    pub(crate) text: bool,
    /// Its bytes.
    pub(crate) payload: Vec<u8>,
}

impl MovedMessage {
    /// The message as it moves.
    pub(crate) fn of(outbound: &Outbound) -> MovedMessage {
        MovedMessage {
            text: outbound.text,
            payload: outbound.payload.to_vec(),
        }
    }

    /// The message to queue or keep again.
    pub(crate) fn into_outbound(self) -> Outbound {
        Outbound {
            payload: Bytes::from(self.payload),
            text: self.text,
        }
    }
}

/// A hand-over asked of a connection's task ([`Request::HandOver`]), passed through its
/// mailbox like a resuming socket; the task answers on `reply`.
#[derive(Debug)]
pub(crate) struct HandOverAsk {
    /// The ticket that was used up, given back if the hand-over does not happen.
    pub(crate) ticket: [u8; 32],
    /// The resuming upgrade's identity.
    pub(crate) principal: Box<ConnectionContext>,
    /// Where the task answers.
    pub(crate) reply: tokio::sync::oneshot::Sender<HandOverAnswer>,
}

/// Starts serving [`Request::HandOver`] on this node: the connection's task answers later.
/// `Err` holds an answer decided at once (no such connection, or the ticket does not match).
pub(crate) fn hand_over(
    registry: &Registry,
    connection_id: &ConnectionId,
    ticket: &str,
    principal: MovedContext,
) -> Result<tokio::sync::oneshot::Receiver<HandOverAnswer>, HandOverAnswer> {
    let Some(handle) = registry
        .get(connection_id)
        .filter(|handle| !handle.is_closing())
    else {
        return Err(HandOverAnswer::Unknown);
    };
    let mut digest = [0u8; 32];
    if hex::decode_to_slice(ticket, &mut digest).is_err() {
        return Err(HandOverAnswer::Unknown);
    }
    let (reply, receiver) = tokio::sync::oneshot::channel();
    let ask = HandOverAsk {
        ticket: digest,
        principal: Box::new(principal.into_context()),
        reply,
    };
    match handle.mailbox().take_over(&digest, Box::new(ask)) {
        Ok(()) => Ok(receiver),
        Err(_) => Err(HandOverAnswer::Unknown),
    }
}

impl Request {
    /// Where the request is served.
    pub(crate) fn target(&self) -> Target<'_> {
        match self {
            Request::Post { connection_id, .. }
            | Request::Get { connection_id }
            | Request::Delete { connection_id }
            | Request::Join { connection_id, .. }
            | Request::Leave { connection_id, .. }
            | Request::GroupsOf { connection_id } => Target::Connection(connection_id),
            Request::HandOver { connection_id, .. }
            | Request::CompleteHandOver { connection_id, .. } => Target::Connection(connection_id),
            Request::Broadcast { .. } | Request::List { .. } => Target::EveryNode,
        }
    }

    /// The message bytes the request carries, which the Redis wire format sends raw after the
    /// encoded request; `None` when it carries none.
    pub(crate) fn payload(&self) -> Option<&Bytes> {
        match self {
            Request::Post { payload, .. } | Request::Broadcast { payload, .. } => Some(payload),
            // Listed one by one, so that a new variant with a payload cannot be forgotten here.
            Request::Get { .. }
            | Request::Delete { .. }
            | Request::Join { .. }
            | Request::Leave { .. }
            | Request::GroupsOf { .. }
            | Request::HandOver { .. }
            | Request::CompleteHandOver { .. }
            | Request::List { .. } => None,
        }
    }

    /// Where a decoded request takes its message bytes back; `None` when it carries none.
    pub(crate) fn payload_mut(&mut self) -> Option<&mut Bytes> {
        match self {
            Request::Post { payload, .. } | Request::Broadcast { payload, .. } => Some(payload),
            // Listed one by one, so that a new variant with a payload cannot be forgotten here.
            Request::Get { .. }
            | Request::Delete { .. }
            | Request::Join { .. }
            | Request::Leave { .. }
            | Request::GroupsOf { .. }
            | Request::HandOver { .. }
            | Request::CompleteHandOver { .. }
            | Request::List { .. } => None,
        }
    }
}

/// Serves `request` against this node's registry: the one place a cluster operation acts on
/// connections. Never waits: queueing into a mailbox and changing a membership are
/// synchronous, which keeps messages to one connection in the order they were served.
///
/// A request for every node gets this node's part: a broadcast to its members, a page of its
/// connections continuing the cursor's (a `next` cursor names the cursor's node).
pub(crate) fn apply(registry: &Registry, request: Request) -> Result<Outcome, ClusterError> {
    match request {
        Request::Post {
            connection_id,
            payload,
        } => post(registry, connection_id, payload).map(|_| Outcome::Done),
        Request::Get { connection_id } => {
            let handle = open_handle(registry, connection_id)?;
            Ok(Outcome::Snapshot(snapshot(&handle, Vec::new())))
        }
        Request::Delete { connection_id } => {
            let handle = open_handle(registry, connection_id)?;
            if handle.close(CloseCause::Deleted) {
                Ok(Outcome::Done)
            } else {
                Err(ClusterError::Gone(handle.id().clone()))
            }
        }
        Request::Join {
            connection_id,
            group,
        } => match registry.join(&connection_id, &group) {
            Ok(()) => Ok(Outcome::Done),
            Err(error) => Err(membership_error(connection_id, error)),
        },
        Request::Leave {
            connection_id,
            group,
        } => match registry.leave(&connection_id, &group) {
            Ok(()) => Ok(Outcome::Done),
            Err(error) => Err(membership_error(connection_id, error)),
        },
        Request::GroupsOf { connection_id } => match registry.groups_of(&connection_id) {
            Some(groups) => Ok(Outcome::Groups(groups)),
            None => Err(ClusterError::Gone(connection_id)),
        },
        // Served by the Redis backend's inbox, which can wait for the connection's task
        // ([`hand_over`]); a node never asks itself.
        Request::HandOver { .. } => Ok(Outcome::HandOver(HandOverAnswer::Unknown)),
        Request::CompleteHandOver { connection_id, .. } => {
            let handle = registry
                .get(&connection_id)
                .ok_or(ClusterError::Gone(connection_id))?;
            let queued = handle.mailbox().close_moved();
            Ok(Outcome::Queued(
                queued.iter().map(MovedMessage::of).collect(),
            ))
        }
        Request::Broadcast { group, payload } => {
            Ok(Outcome::Tally(fan_out(registry, group.as_ref(), &payload)))
        }
        Request::List {
            group,
            cursor,
            limit,
        } => {
            let (node, after) = cursor.map_or((0, None), |cursor| (cursor.node, cursor.after));
            let (items, more) = page(registry, group.as_ref(), after.as_ref(), limit);
            let next = more.then(|| Cursor {
                node,
                after: items.last().map(|item| item.connection_id.clone()),
            });
            Ok(Outcome::Page(Page { items, next }))
        }
    }
}

/// Serves [`Request::Post`] (see [`apply`]); answers the suspension's generation when the
/// message was queued for a suspended connection, which the Redis backend also keeps in Redis.
pub(crate) fn post(
    registry: &Registry,
    connection_id: ConnectionId,
    payload: Bytes,
) -> Result<Option<u64>, ClusterError> {
    let Some(info) = registry.info(&connection_id) else {
        return Err(ClusterError::Gone(connection_id));
    };
    match info.try_send_noting(Outbound::from_bytes(payload)) {
        Ok(generation) => Ok(generation),
        Err(QueueError::Gone) => Err(ClusterError::Gone(connection_id)),
        Err(QueueError::Full) => Err(ClusterError::QueueFull(connection_id)),
        Err(QueueError::Overflow) => {
            // A suspended connection past its resume limits ends: the caller is told it is
            // gone, as every later caller will be.
            if let Some(handle) = registry.get(&connection_id) {
                handle.close(CloseCause::ResumeQueueFull);
            }
            Err(ClusterError::Gone(connection_id))
        }
    }
}

/// `TryFrom<Outcome>` for the value one variant carries: what `Cluster::call` hands back to
/// its caller; any other outcome comes back as the error (an answer that does not fit).
macro_rules! outcome_value {
    ($($variant:ident $(($binding:ident))? => $value:ty),* $(,)?) => {$(
        impl TryFrom<Outcome> for $value {
            type Error = Outcome;

            fn try_from(outcome: Outcome) -> Result<$value, Outcome> {
                match outcome {
                    Outcome::$variant $(($binding))? => Ok(outcome_value!(@value $($binding)?)),
                    other => Err(other),
                }
            }
        }
    )*};
    (@value $binding:ident) => { $binding };
    (@value) => { () };
}

outcome_value! {
    Done => (),
    Snapshot(snapshot) => ConnectionSnapshot,
    Groups(groups) => Vec<GroupName>,
    Tally(tally) => Tally,
    Page(page) => Page,
    HandOver(answer) => HandOverAnswer,
    Queued(messages) => Vec<MovedMessage>,
}

/// Queues `payload` for every member of `group` on this node (every connection when `group`
/// is `None`). The payload's bytes are shared by all the queued messages, not copied.
fn fan_out(registry: &Registry, group: Option<&GroupName>, payload: &Bytes) -> Tally {
    let text = std::str::from_utf8(payload).is_ok();
    let mut tally = Tally::default();
    for handle in registry.members(group) {
        let message = Outbound {
            payload: payload.clone(),
            text,
        };
        match handle.try_send(message) {
            Ok(()) => tally.delivered += 1,
            Err(QueueError::Full) => tally.dropped += 1,
            Err(QueueError::Overflow) => {
                handle.close(CloseCause::ResumeQueueFull);
                tally.dropped += 1;
            }
            // Closing while the broadcast ran: it was not a target any more.
            Err(QueueError::Gone) => {}
        }
    }
    tally
}

/// A page of this node's connections (of `group`, or all) in id order after `after`, and
/// whether more follow.
fn page(
    registry: &Registry,
    group: Option<&GroupName>,
    after: Option<&ConnectionId>,
    limit: usize,
) -> (Vec<ListedConnection>, bool) {
    let (handles, more) = registry.page(group, after, limit);
    let items = handles
        .into_iter()
        .map(|(handle, groups)| ListedConnection {
            connection_id: handle.id().clone(),
            snapshot: snapshot(&handle, groups),
        })
        .collect();
    (items, more)
}

fn snapshot(handle: &ConnectionHandle, groups: Vec<GroupName>) -> ConnectionSnapshot {
    let context = &handle.context;
    ConnectionSnapshot {
        connected_at: context.connected_at,
        last_active_at: handle.info.last_active_at(),
        source_ip: context.source_ip.clone(),
        user_agent: context.user_agent.clone(),
        suspended: handle.mailbox().is_suspended(),
        groups: groups
            .iter()
            .map(|group| group.as_str().to_owned())
            .collect(),
    }
}

fn membership_error(connection_id: ConnectionId, error: MembershipError) -> ClusterError {
    match error {
        MembershipError::Gone => ClusterError::Gone(connection_id),
        MembershipError::TooManyGroups => ClusterError::TooManyGroups(connection_id),
    }
}

/// The handle of a registered connection that is not closing.
fn open_handle(
    registry: &Registry,
    connection_id: ConnectionId,
) -> Result<ConnectionHandle, ClusterError> {
    match registry.get(&connection_id) {
        Some(handle) if !handle.is_closing() => Ok(handle),
        _ => Err(ClusterError::Gone(connection_id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_for_an_unknown_connection_are_refused_as_gone() {
        let registry = Registry::default();
        let connection_id = ConnectionId::parse("BFaT_fALIAMCKug=").unwrap();
        let group = GroupName::parse("room:1").unwrap();
        for request in [
            Request::Post {
                connection_id: connection_id.clone(),
                payload: Bytes::from_static(b"hello"),
            },
            Request::Get {
                connection_id: connection_id.clone(),
            },
            Request::Delete {
                connection_id: connection_id.clone(),
            },
            Request::Join {
                connection_id: connection_id.clone(),
                group: group.clone(),
            },
            Request::Leave {
                connection_id: connection_id.clone(),
                group: group.clone(),
            },
            Request::GroupsOf {
                connection_id: connection_id.clone(),
            },
        ] {
            assert_eq!(request.target(), Target::Connection(&connection_id));
            let answer = apply(&registry, request.clone());
            assert!(
                matches!(&answer, Err(ClusterError::Gone(gone)) if *gone == connection_id),
                "{request:?}: {answer:?}"
            );
        }
    }

    #[test]
    fn requests_for_every_node_serve_this_nodes_part() {
        let registry = Registry::default();
        let broadcast = Request::Broadcast {
            group: None,
            payload: Bytes::from_static(b"hello"),
        };
        assert_eq!(broadcast.target(), Target::EveryNode);
        assert_eq!(
            apply(&registry, broadcast).unwrap(),
            Outcome::Tally(Tally::default())
        );
        let list = Request::List {
            group: None,
            cursor: Some(Cursor {
                node: 7,
                after: None,
            }),
            limit: 10,
        };
        assert_eq!(list.target(), Target::EveryNode);
        assert_eq!(
            apply(&registry, list).unwrap(),
            Outcome::Page(Page {
                items: Vec::new(),
                next: None,
            })
        );
    }
}
