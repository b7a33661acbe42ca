//! One interface for presence and delivery, whatever the deployment.
//!
//! Code above this module (connections, the management API, the server) never asks whether
//! the gateway is clustered: it draws connection ids, registers presence and takes over lost
//! connections through [`Cluster`], and runs every operation on connections (deliver, get,
//! delete, manage groups, broadcast, list) as a [`Request`] through [`Cluster::call`].
//! Single-node mode is the `Local` backend over this node's [`Registry`]; the `Redis` backend
//! ([`redis`]) reaches connections on other nodes and is the only code that knows Redis key
//! names and channels.
//!
//! Both backends serve a request on this node the same way, through [`command::apply`]; the
//! Redis backend adds routing by the node tag inside every connection id, fan-out of
//! broadcasts and lists to every live node, liveness, and the hand-over of a lost node's
//! connections (their `$disconnect`, delivered by the caller of [`Cluster::next_orphan`]).
//!
//! Group membership lives with the connection, in the registry of the node that holds it: a
//! join is routed to that node like a post, membership ends when the connection leaves the
//! registry, and a broadcast asks each node to fan out to its own members.

mod command;
mod redis;
mod usage;

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sockway_protocol::close::CloseCause;
use sockway_protocol::event::ConnectionContext;
use sockway_protocol::group::GroupName;
use sockway_protocol::id::{ConnectionId, ID_LENGTH};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use self::command::Target;
pub(crate) use self::command::{
    HandOverAnswer, HandOverAsk, Moved, MovedContext, MovedMessage, Outcome, Request, Suspended,
    SuspendedBy,
};
use self::usage::MemoryUsage;
pub(crate) use self::usage::{Counted, UsageCount};
use crate::config::Config;
use crate::metrics::ClusterMetrics;
use crate::random_bytes;
use crate::registry::{ConnectionHandle, Registry};
use crate::traces::Span;

/// Presence and delivery for connections.
#[derive(Debug)]
pub(crate) enum Cluster {
    /// Every connection lives in this process, and so do API keys' usage counts.
    Local(Registry, MemoryUsage),
    /// Nodes share a Redis (or Redis Cluster): connections on other nodes are reached through
    /// it, and a lost node's connections are taken over.
    Redis(redis::RedisBackend),
}

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClusterError {
    /// No open connection has this id, on any node.
    #[error("connection {0} is gone")]
    Gone(ConnectionId),
    /// The connection's outbound queue is full.
    #[error("connection {0}: outbound queue full")]
    QueueFull(ConnectionId),
    /// The node that owns the connection cannot be reached right now (Redis is unreachable,
    /// or the owner is not listening): a fault of sockway's, not the caller's.
    #[error("connection {0}: its node cannot be reached")]
    Unavailable(ConnectionId),
    /// The node that owns the connection did not answer in time.
    #[error("connection {0}: its node did not answer in time")]
    Timeout(ConnectionId),
    /// The connection is in as many groups as it may be.
    #[error("connection {0}: group limit reached")]
    TooManyGroups(ConnectionId),
    /// API key usage cannot be counted or read right now (Redis is unreachable).
    #[error("API key usage cannot be reached")]
    UsageUnavailable,
    /// A call that needs every node (a broadcast, a list) could not reach some of them.
    #[error("some nodes could not be reached")]
    Incomplete {
        /// Whether they did not answer in time (rather than being unreachable at once).
        timed_out: bool,
        /// What a broadcast did reach before it gave up on those nodes.
        reached: Option<Tally>,
    },
}

/// Why a node could not join the cluster at startup; only `Cluster::start` returns it.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// A Redis call made while joining failed.
    #[error("cannot join the cluster: {operation}")]
    Redis {
        /// What was being done.
        operation: String,
        /// What Redis (or the client library) reported.
        #[source]
        source: ::redis::RedisError,
    },
    /// Every node tag tried at startup was taken.
    #[error("cannot join the cluster: no free node tag after {attempts} attempts")]
    NoFreeTag {
        /// How many random tags were tried.
        attempts: usize,
    },
}

/// A connection of a lost node whose `$disconnect` this node delivers, and why it ended: the
/// node was lost (1006), or, for one that was suspended (`[resume]`), its window passed, a post
/// overflowed its queue or a `DELETE` ended it.
#[derive(Debug)]
pub(crate) struct Orphan {
    /// What its `$disconnect` needs.
    pub(crate) context: Arc<ConnectionContext>,
    /// Why it ended.
    pub(crate) cause: CloseCause,
}

/// What `GET @connections/{id}` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConnectionSnapshot {
    /// Epoch milliseconds of the upgrade.
    pub(crate) connected_at: i64,
    /// Epoch milliseconds of the last data frame either way.
    pub(crate) last_active_at: i64,
    /// The client's address.
    pub(crate) source_ip: String,
    /// The client's `User-Agent`.
    pub(crate) user_agent: Option<String>,
    /// Whether the connection is suspended (`[resume]`): its client dropped and may resume it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) suspended: bool,
    /// The groups the connection is in (filled in lists, empty for `GetConnection`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) groups: Vec<String>,
}

/// One connection in a list: its id and what `GetConnection` reports, plus its groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListedConnection {
    /// The connection's id.
    pub(crate) connection_id: ConnectionId,
    /// Its facts.
    #[serde(flatten)]
    pub(crate) snapshot: ConnectionSnapshot,
}

/// What a broadcast did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Tally {
    /// Connections the message was queued for.
    pub(crate) delivered: u64,
    /// Connections whose outbound queue was full, so the message was not queued for them.
    pub(crate) dropped: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, other: Tally) {
        self.delivered += other.delivered;
        self.dropped += other.dropped;
    }
}

/// One page of a list, and where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Page {
    /// The connections, in node order then id order.
    pub(crate) items: Vec<ListedConnection>,
    /// Where the next page starts; `None` on the last page.
    pub(crate) next: Option<Cursor>,
}

/// A position in a list across the cluster: a node (by tag; 0 in single-node mode) and the
/// last id returned from it. Lists run in node order and, within a node, in id order, so a
/// cursor stays valid while connections come and go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cursor {
    /// The node the next page starts on.
    pub(crate) node: u16,
    /// The last connection returned from that node; `None` to start at its first.
    pub(crate) after: Option<ConnectionId>,
}

impl Cursor {
    /// The cursor as an opaque, URL-safe `nextToken`.
    pub(crate) fn to_token(&self) -> String {
        let mut raw = format!("{:04x}", self.node);
        if let Some(after) = &self.after {
            raw.push_str(after.as_str());
        }
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Reads a `nextToken`; `None` when it is not one this gateway made.
    pub(crate) fn from_token(token: &str) -> Option<Cursor> {
        let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let node_hex = raw.get(..4)?;
        if !node_hex.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return None;
        }
        let node = u16::from_str_radix(node_hex, 16).ok()?;
        let after = match &raw[4..] {
            "" => None,
            id if id.len() == ID_LENGTH => Some(ConnectionId::parse(id).ok()?),
            _ => return None,
        };
        Some(Cursor { node, after })
    }
}

/// Keeps a connection present in the cluster until [`Presence::end`]; dropping it instead
/// removes the connection on every other exit path of the connection task.
#[derive(Debug)]
pub(crate) struct Presence<'a> {
    cluster: &'a Cluster,
    id: ConnectionId,
    ended: bool,
}

impl Presence<'_> {
    /// Removes the connection without a `$disconnect`: it moved to another node, which now
    /// holds it and its record.
    pub(crate) fn moved(mut self) {
        self.ended = true;
        self.cluster.remove(&self.id);
    }

    /// Removes the connection and answers whether this node delivers its `$disconnect`: true,
    /// unless other nodes declared this one dead while it was cut off from Redis and took the
    /// connection over (they delivered it). Waits while Redis cannot be reached, because only
    /// Redis knows; once the gateway shuts down it stops waiting and answers false (the record
    /// stays in Redis and whichever node takes this one over delivers it).
    pub(crate) async fn end(mut self) -> bool {
        self.ended = true;
        match self.cluster {
            Cluster::Local(registry, _) => {
                registry.remove(&self.id);
                true
            }
            Cluster::Redis(backend) => backend.end(&self.id).await,
        }
    }
}

impl Drop for Presence<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.cluster.remove(&self.id);
        }
    }
}

impl Cluster {
    /// The backend `config` asks for: `Local` without `[cluster]`, otherwise the Redis backend,
    /// which joins the cluster (claims a node tag, subscribes) before returning. Once `shutdown`
    /// is cancelled the node takes no more connections of lost nodes over; it keeps serving
    /// calls until [`Cluster::leave`].
    pub(crate) async fn start(
        config: &Config,
        metrics: ClusterMetrics,
        shutdown: &CancellationToken,
    ) -> Result<Cluster, JoinError> {
        match &config.cluster {
            None => Ok(Cluster::Local(Registry::default(), MemoryUsage::default())),
            Some(cluster) => {
                let backend = redis::RedisBackend::start(
                    cluster,
                    &config.gateway.api_id,
                    &config.gateway.stage,
                    metrics,
                    shutdown.clone(),
                )
                .await?;
                Ok(Cluster::Redis(backend))
            }
        }
    }

    /// A fresh, unguessable id for a connection this node accepts. The Redis backend puts its
    /// node tag into it, so any node can tell where the connection lives without a lookup.
    pub(crate) fn new_connection_id(&self) -> ConnectionId {
        match self {
            Cluster::Local(..) => ConnectionId::from_random(random_bytes()),
            Cluster::Redis(backend) => backend.new_connection_id(),
        }
    }

    /// Makes `handle` reachable, a member of `groups`, until the returned guard drops. `None`
    /// if the id is taken.
    pub(crate) fn register(
        &self,
        handle: ConnectionHandle,
        groups: &[GroupName],
    ) -> Option<Presence<'_>> {
        self.insert(handle, groups, false)
    }

    /// Makes `handle`, a connection that moved here from another node (`[resume]`),
    /// reachable like [`Cluster::register`]; its record in the cluster is kept under this
    /// node, so that this node's loss ends it.
    pub(crate) fn register_moved(
        &self,
        handle: ConnectionHandle,
        groups: &[GroupName],
    ) -> Option<Presence<'_>> {
        self.insert(handle, groups, true)
    }

    fn insert(
        &self,
        handle: ConnectionHandle,
        groups: &[GroupName],
        moved: bool,
    ) -> Option<Presence<'_>> {
        let id = handle.id().clone();
        let inserted = match self {
            Cluster::Local(registry, _) => registry.insert(handle, groups),
            Cluster::Redis(backend) if moved => backend.register_moved(handle, groups),
            Cluster::Redis(backend) => backend.register(handle, groups),
        };
        inserted.then_some(Presence {
            cluster: self,
            id,
            ended: false,
        })
    }

    /// Whether a connection this node does not hold may be held by another node (and
    /// resumed from there): never on a single node.
    pub(crate) fn may_hold_elsewhere(&self, id: &ConnectionId) -> bool {
        match self {
            Cluster::Local(..) => false,
            Cluster::Redis(backend) => backend.local_handle(id).is_none(),
        }
    }

    fn remove(&self, id: &ConnectionId) {
        match self {
            Cluster::Local(registry, _) => {
                registry.remove(id);
            }
            Cluster::Redis(backend) => backend.remove(id),
        }
    }

    /// Runs `request` where it is served: on this node (the `Local` backend, or a connection
    /// this node holds), on the node that holds its connection, or on every node, whose
    /// answers are combined ([`command`]). Answers with the value the request yields (`()`
    /// for a request that yields nothing, [`ConnectionSnapshot`], the groups, a [`Tally`] or a
    /// [`Page`]); a reply that does not fit the request (from a node running other code) is
    /// logged and reported as the connection being gone, or, for every node, incomplete.
    pub(crate) async fn call<T>(&self, request: Request) -> Result<T, ClusterError>
    where
        T: TryFrom<Outcome, Error = Outcome>,
    {
        self.call_traced(request, None).await
    }

    /// [`Cluster::call`] as part of `parent`'s trace: each call to another node is a
    /// `cluster delivery` child span of it (a call served on this node has none).
    pub(crate) async fn call_traced<T>(
        &self,
        request: Request,
        parent: Option<&Span>,
    ) -> Result<T, ClusterError>
    where
        T: TryFrom<Outcome, Error = Outcome>,
    {
        let misfit = match request.target() {
            Target::Connection(connection_id) => ClusterError::Gone(connection_id.clone()),
            Target::EveryNode => ClusterError::Incomplete {
                timed_out: false,
                reached: None,
            },
        };
        let outcome = match self {
            Cluster::Local(registry, _) => command::apply(registry, request)?,
            Cluster::Redis(backend) => backend.call(request, parent).await?,
        };
        T::try_from(outcome).map_err(|outcome| {
            warn!(outcome = ?outcome, error = %misfit, "a cluster call was answered with an outcome that does not fit it");
            misfit
        })
    }

    /// The next connection of a lost node whose `$disconnect` this node must deliver; each is
    /// handed to exactly one surviving node. `None` once there will be no more (at once for
    /// `Local`, where no node can be lost; after [`Cluster::leave`] for Redis).
    pub(crate) async fn next_orphan(&self) -> Option<Orphan> {
        match self {
            Cluster::Local(..) => None,
            Cluster::Redis(backend) => backend.next_orphan().await,
        }
    }

    /// A lost connection already claimed by this node, without waiting; for delivering what is
    /// left once the gateway shuts down (nothing else would deliver it).
    pub(crate) fn claimed_orphan(&self) -> Option<Orphan> {
        match self {
            Cluster::Local(..) => None,
            Cluster::Redis(backend) => backend.claimed_orphan(),
        }
    }

    /// `[resume]`: a generation for a new suspension (in a cluster it names the suspension's
    /// record in Redis; grows from one to the next).
    pub(crate) fn suspension_generation(&self) -> u64 {
        match self {
            Cluster::Local(..) => 0,
            Cluster::Redis(_) => redis::next_generation(),
        }
    }

    /// `[resume]`: records a connection this node just suspended, so that a survivor can
    /// resume it (or end it) if this node dies; the returned future makes one Redis write in a
    /// cluster (the record is built before, so the future borrows nothing of the caller's), nothing on a
    /// single node, where `record` is not even built. `limits` are the queue's (messages,
    /// bytes); `record` builds the record from the connection's groups.
    pub(crate) fn record_suspension<'a>(
        &'a self,
        id: &ConnectionId,
        generation: u64,
        ticket: &[u8; 32],
        limits: (usize, usize),
        record: impl FnOnce(Vec<GroupName>) -> Suspended,
    ) -> impl Future<Output = ()> + Send + 'a {
        let write = match self {
            Cluster::Redis(backend) => {
                backend.record_suspension(id, generation, ticket, limits, record)
            }
            Cluster::Local(..) => None,
        };
        async move {
            if let Some(write) = write {
                write.await;
            }
        }
    }

    /// `[resume]`: the suspension `generation` ended on this node (a socket took the
    /// connection again, it moved, or it ended): its record is dropped, in the background.
    pub(crate) fn end_suspension(&self, id: &ConnectionId, generation: u64) {
        if let Cluster::Redis(backend) = self {
            backend.end_suspension(id, generation);
        }
    }

    /// `[resume]`: a suspended connection whose node died, if `ticket` (hex) resumes it and its
    /// window is open ([`Moved::stored`]); `None` on a single node.
    pub(crate) async fn find_suspended(&self, id: &ConnectionId, ticket: &str) -> Option<Moved> {
        match self {
            Cluster::Local(..) => None,
            Cluster::Redis(backend) => backend.find_suspended(id, ticket).await,
        }
    }

    /// `[resume]`: takes the suspended connection [`Cluster::find_suspended`] found, exactly
    /// once, and answers the messages queued for it, oldest first.
    pub(crate) async fn take_suspended(
        &self,
        id: &ConnectionId,
        ticket: &str,
        node: u16,
    ) -> Result<Vec<MovedMessage>, ClusterError> {
        match self {
            Cluster::Local(..) => Err(ClusterError::Gone(id.clone())),
            Cluster::Redis(backend) => backend.take_suspended(id, ticket, node).await,
        }
    }

    /// Leaves the cluster after this node's connections have ended: stops liveness and
    /// take-overs and removes what the node stored. A node that leaves hands nothing over.
    pub(crate) async fn leave(&self) {
        match self {
            Cluster::Local(..) => {}
            Cluster::Redis(backend) => backend.leave().await,
        }
    }

    /// Counts one use of an API key against its limit for a period: in memory on a single
    /// node, in Redis (one round trip, shared by every node) in cluster mode.
    pub(crate) async fn count_usage(
        &self,
        count: &UsageCount<'_>,
    ) -> Result<Counted, ClusterError> {
        match self {
            Cluster::Local(_, usage) => Ok(usage.count(count, crate::epoch_millis() as u64 / 1000)),
            Cluster::Redis(backend) => backend.count_usage(count).await,
        }
    }

    /// The uses of the API key `key_id` counted in `period`.
    pub(crate) async fn usage(&self, key_id: &str, period: &str) -> Result<u64, ClusterError> {
        match self {
            Cluster::Local(_, usage) => Ok(usage.used(key_id, period)),
            Cluster::Redis(backend) => backend.usage(key_id, period).await,
        }
    }

    /// The handle of a connection this node holds (open or suspended), e.g. to resume it.
    pub(crate) fn local_handle(&self, id: &ConnectionId) -> Option<ConnectionHandle> {
        match self {
            Cluster::Local(registry, _) => registry.get(id),
            Cluster::Redis(backend) => backend.local_handle(id),
        }
    }

    /// This node's id in the cluster (`cluster.node_id`, or the one it made up); `None` on a
    /// single node.
    pub(crate) fn node_id(&self) -> Option<&str> {
        match self {
            Cluster::Local(..) => None,
            Cluster::Redis(backend) => Some(backend.node_id()),
        }
    }

    /// Connections open on this node.
    pub(crate) fn local_connection_count(&self) -> usize {
        match self {
            Cluster::Local(registry, _) => registry.len(),
            Cluster::Redis(backend) => backend.local_connection_count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_through_tokens() {
        let id = ConnectionId::parse("BFaT_fALIAMCKug=").unwrap();
        for cursor in [
            Cursor {
                node: 0,
                after: None,
            },
            Cursor {
                node: 0xbeef,
                after: Some(id),
            },
        ] {
            let token = cursor.to_token();
            assert!(
                token
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'),
                "{token}"
            );
            assert_eq!(Cursor::from_token(&token), Some(cursor));
        }
    }

    #[test]
    fn foreign_tokens_are_refused() {
        for token in [
            "",
            "!!",
            "abc",
            &URL_SAFE_NO_PAD.encode("zzzz"),
            &URL_SAFE_NO_PAD.encode("0001short"),
        ] {
            assert_eq!(Cursor::from_token(token), None, "{token}");
        }
    }
}
