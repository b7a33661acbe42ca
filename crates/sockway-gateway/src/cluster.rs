//! One interface for presence and delivery, whatever the deployment.
//!
//! Code above this module (connections, the management API) never asks whether the gateway is
//! clustered: it registers presence and delivers through [`Cluster`]. Single-node mode is the
//! `Local` backend over this node's [`Registry`]; a Redis backend that reaches connections on
//! other nodes is another variant of the same enum.

use bytes::Bytes;
use sockway_protocol::close::CloseCause;
use sockway_protocol::id::ConnectionId;

use crate::registry::{ConnectionHandle, Outbound, QueueError, Registry};

/// Presence and delivery for connections.
#[derive(Debug)]
pub(crate) enum Cluster {
    /// Every connection lives in this process.
    Local(Registry),
}

/// Why a management operation on a connection failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ClusterError {
    /// No open connection has this id.
    #[error("connection {0} is gone")]
    Gone(ConnectionId),
    /// The connection's outbound queue is full.
    #[error("connection {0}: outbound queue full")]
    QueueFull(ConnectionId),
}

/// What `GET @connections/{id}` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The single-node backend.
    pub(crate) fn local() -> Cluster {
        Cluster::Local(Registry::default())
    }

    /// Makes `handle` reachable until the returned guard drops. `None` if the id is taken.
    pub(crate) fn register(&self, handle: ConnectionHandle) -> Option<Presence<'_>> {
        let id = handle.id.clone();
        let inserted = match self {
            Cluster::Local(registry) => registry.insert(handle),
        };
        inserted.then_some(Presence { cluster: self, id })
    }

    fn remove(&self, id: &ConnectionId) {
        match self {
            Cluster::Local(registry) => {
                registry.remove(id);
            }
        }
    }

    fn handle(&self, id: &ConnectionId) -> Result<ConnectionHandle, ClusterError> {
        let handle = match self {
            Cluster::Local(registry) => registry.get(id),
        };
        match handle {
            Some(handle) if !handle.is_closing() => Ok(handle),
            _ => Err(ClusterError::Gone(id.clone())),
        }
    }

    /// Queues `payload` for the connection (`PostToConnection`). Returns once it is queued for
    /// the socket, in order with other messages to that connection.
    pub(crate) async fn post_to_connection(
        &self,
        id: &ConnectionId,
        payload: Bytes,
    ) -> Result<(), ClusterError> {
        let handle = self.handle(id)?;
        handle
            .try_send(Outbound::from_bytes(payload))
            .map_err(|error| match error {
                QueueError::Gone => ClusterError::Gone(id.clone()),
                QueueError::Full => ClusterError::QueueFull(id.clone()),
            })
    }

    /// Reports a connection (`GetConnection`).
    pub(crate) async fn get_connection(
        &self,
        id: &ConnectionId,
    ) -> Result<ConnectionSnapshot, ClusterError> {
        let handle = self.handle(id)?;
        let info = &handle.info;
        Ok(ConnectionSnapshot {
            connected_at: info.connected_at,
            last_active_at: info.last_active_at(),
            source_ip: info.source_ip.clone(),
            user_agent: info.user_agent.clone(),
        })
    }

    /// Closes a connection with 1000 (`DeleteConnection`).
    pub(crate) async fn delete_connection(&self, id: &ConnectionId) -> Result<(), ClusterError> {
        let handle = self.handle(id)?;
        if handle.close(CloseCause::Deleted) {
            Ok(())
        } else {
            Err(ClusterError::Gone(id.clone()))
        }
    }

    /// Connections open on this node.
    pub(crate) fn local_connection_count(&self) -> usize {
        match self {
            Cluster::Local(registry) => registry.len(),
        }
    }
}
