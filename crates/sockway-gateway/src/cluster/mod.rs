//! One interface for presence and delivery, whatever the deployment.
//!
//! Code above this module (connections, the management API, the server) never asks whether
//! the gateway is clustered: it draws connection ids, registers presence, delivers and takes
//! over lost connections through [`Cluster`]. Single-node mode is the `Local` backend over this
//! node's [`Registry`]; the `Redis` backend ([`redis`]) reaches connections on other nodes and
//! is the only code that knows Redis key names and channels.
//!
//! Both backends serve a connection of this node the same way, through [`local`]; the Redis
//! backend adds routing by the node tag inside every connection id, liveness, and the hand-over
//! of a lost node's connections (their `$disconnect`, delivered by the caller of
//! [`Cluster::next_orphan`]).

mod local;
mod redis;

use std::sync::Arc;

use bytes::Bytes;
use sockway_protocol::event::ConnectionContext;
use sockway_protocol::id::ConnectionId;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::random_bytes;
use crate::registry::{ConnectionHandle, Registry};

/// Presence and delivery for connections.
#[derive(Debug)]
pub(crate) enum Cluster {
    /// Every connection lives in this process.
    Local(Registry),
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
    /// Joining the cluster at startup failed.
    #[error("cannot join the cluster: {operation}")]
    Join {
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

/// What `GET @connections/{id}` reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
}

/// Keeps a connection present in the cluster; dropping it removes the connection on every exit
/// path of the connection task.
#[derive(Debug)]
pub(crate) struct Presence<'a> {
    cluster: &'a Cluster,
    id: ConnectionId,
}

impl Drop for Presence<'_> {
    fn drop(&mut self) {
        self.cluster.remove(&self.id);
    }
}

impl Cluster {
    /// The backend `config` asks for: `Local` without `[cluster]`, otherwise the Redis backend,
    /// which joins the cluster (claims a node tag, subscribes) before returning. Once `shutdown`
    /// is cancelled the node takes no more connections of lost nodes over; it keeps serving
    /// calls until [`Cluster::leave`].
    pub(crate) async fn start(
        config: &Config,
        shutdown: &CancellationToken,
    ) -> Result<Cluster, ClusterError> {
        match &config.cluster {
            None => Ok(Cluster::Local(Registry::default())),
            Some(cluster) => {
                let backend = redis::RedisBackend::start(
                    cluster,
                    &config.gateway.api_id,
                    &config.gateway.stage,
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
            Cluster::Local(_) => ConnectionId::from_random(random_bytes()),
            Cluster::Redis(backend) => backend.new_connection_id(),
        }
    }

    /// Makes `handle` reachable until the returned guard drops. `None` if the id is taken.
    pub(crate) fn register(&self, handle: ConnectionHandle) -> Option<Presence<'_>> {
        let id = handle.id.clone();
        let inserted = match self {
            Cluster::Local(registry) => registry.insert(handle),
            Cluster::Redis(backend) => backend.register(handle),
        };
        inserted.then_some(Presence { cluster: self, id })
    }

    fn remove(&self, id: &ConnectionId) {
        match self {
            Cluster::Local(registry) => {
                registry.remove(id);
            }
            Cluster::Redis(backend) => backend.remove(id),
        }
    }

    /// Queues `payload` for the connection (`PostToConnection`). Returns once it is queued for
    /// the socket, on whichever node holds it, in order with other messages this caller sent
    /// to that connection.
    pub(crate) async fn post_to_connection(
        &self,
        id: &ConnectionId,
        payload: Bytes,
    ) -> Result<(), ClusterError> {
        match self {
            Cluster::Local(registry) => local::post_to_connection(registry, id, payload),
            Cluster::Redis(backend) => backend.post_to_connection(id, payload).await,
        }
    }

    /// Reports a connection (`GetConnection`).
    pub(crate) async fn get_connection(
        &self,
        id: &ConnectionId,
    ) -> Result<ConnectionSnapshot, ClusterError> {
        match self {
            Cluster::Local(registry) => local::get_connection(registry, id),
            Cluster::Redis(backend) => backend.get_connection(id).await,
        }
    }

    /// Closes a connection with 1000 (`DeleteConnection`).
    pub(crate) async fn delete_connection(&self, id: &ConnectionId) -> Result<(), ClusterError> {
        match self {
            Cluster::Local(registry) => local::delete_connection(registry, id),
            Cluster::Redis(backend) => backend.delete_connection(id).await,
        }
    }

    /// The next connection of a lost node whose `$disconnect` this node must deliver; each is
    /// handed to exactly one surviving node. `None` once there will be no more (at once for
    /// `Local`, where no node can be lost; after [`Cluster::leave`] for Redis).
    pub(crate) async fn next_orphan(&self) -> Option<Arc<ConnectionContext>> {
        match self {
            Cluster::Local(_) => None,
            Cluster::Redis(backend) => backend.next_orphan().await,
        }
    }

    /// A lost connection already claimed by this node, without waiting; for delivering what is
    /// left once the gateway shuts down (nothing else would deliver it).
    pub(crate) fn claimed_orphan(&self) -> Option<Arc<ConnectionContext>> {
        match self {
            Cluster::Local(_) => None,
            Cluster::Redis(backend) => backend.claimed_orphan(),
        }
    }

    /// Leaves the cluster after this node's connections have ended: stops liveness and
    /// take-overs and removes what the node stored. A node that leaves hands nothing over.
    pub(crate) async fn leave(&self) {
        match self {
            Cluster::Local(_) => {}
            Cluster::Redis(backend) => backend.leave().await,
        }
    }

    /// Connections open on this node.
    pub(crate) fn local_connection_count(&self) -> usize {
        match self {
            Cluster::Local(registry) => registry.len(),
            Cluster::Redis(backend) => backend.local_connection_count(),
        }
    }
}
