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
        } => {
            let handle = open_handle(registry, connection_id)?;
            match handle.try_send(Outbound::from_bytes(payload)) {
                Ok(()) => Ok(Outcome::Done),
                Err(QueueError::Gone) => Err(ClusterError::Gone(handle.id.clone())),
                Err(QueueError::Full) => Err(ClusterError::QueueFull(handle.id.clone())),
                Err(QueueError::Overflow) => {
                    // A suspended connection past its resume limits ends: the caller is told
                    // it is gone, as every later caller will be.
                    handle.close(CloseCause::ResumeQueueFull);
                    Err(ClusterError::Gone(handle.id.clone()))
                }
            }
        }
        Request::Get { connection_id } => {
            let handle = open_handle(registry, connection_id)?;
            Ok(Outcome::Snapshot(snapshot(&handle, Vec::new())))
        }
        Request::Delete { connection_id } => {
            let handle = open_handle(registry, connection_id)?;
            if handle.close(CloseCause::Deleted) {
                Ok(Outcome::Done)
            } else {
                Err(ClusterError::Gone(handle.id.clone()))
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
            connection_id: handle.id.clone(),
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
