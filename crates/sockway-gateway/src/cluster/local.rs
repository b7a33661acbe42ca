//! `@connections` operations on a connection of this node, shared by both backends: the Local
//! backend for every call, the Redis backend for its own connections and for requests other
//! nodes route to it. Decisions about full or closing mailboxes are the handle's.

use bytes::Bytes;
use sockway_protocol::close::CloseCause;
use sockway_protocol::id::ConnectionId;

use super::{ClusterError, ConnectionSnapshot};
use crate::registry::{ConnectionHandle, Outbound, QueueError, Registry};

/// Queues `payload` for a connection of this node.
pub(super) fn post_to_connection(
    registry: &Registry,
    id: &ConnectionId,
    payload: Bytes,
) -> Result<(), ClusterError> {
    let handle = open_handle(registry, id)?;
    handle
        .try_send(Outbound::from_bytes(payload))
        .map_err(|error| match error {
            QueueError::Gone => ClusterError::Gone(id.clone()),
            QueueError::Full => ClusterError::QueueFull(id.clone()),
        })
}

/// Reports a connection of this node.
pub(super) fn get_connection(
    registry: &Registry,
    id: &ConnectionId,
) -> Result<ConnectionSnapshot, ClusterError> {
    let handle = open_handle(registry, id)?;
    let info = &handle.info;
    Ok(ConnectionSnapshot {
        connected_at: info.connected_at,
        last_active_at: info.last_active_at(),
        source_ip: info.source_ip.clone(),
        user_agent: info.user_agent.clone(),
    })
}

/// Closes a connection of this node with 1000.
pub(super) fn delete_connection(
    registry: &Registry,
    id: &ConnectionId,
) -> Result<(), ClusterError> {
    let handle = open_handle(registry, id)?;
    if handle.close(CloseCause::Deleted) {
        Ok(())
    } else {
        Err(ClusterError::Gone(id.clone()))
    }
}

/// The handle of a registered connection that is not closing.
fn open_handle(registry: &Registry, id: &ConnectionId) -> Result<ConnectionHandle, ClusterError> {
    match registry.get(id) {
        Some(handle) if !handle.is_closing() => Ok(handle),
        _ => Err(ClusterError::Gone(id.clone())),
    }
}
