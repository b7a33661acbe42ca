//! Operations on connections of this node, shared by both backends: the Local backend for
//! every call, the Redis backend for its own connections and for requests other nodes route
//! to it. Decisions about full or closing mailboxes are the handle's.

use bytes::Bytes;
use sockway_protocol::close::CloseCause;
use sockway_protocol::group::GroupName;
use sockway_protocol::id::ConnectionId;

use super::{ClusterError, ConnectionSnapshot, ListedConnection, Tally};
use crate::registry::{ConnectionHandle, MembershipError, Outbound, QueueError, Registry};

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
    Ok(snapshot(&handle, Vec::new()))
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

/// Adds a connection of this node to `group`.
pub(super) fn join_group(
    registry: &Registry,
    id: &ConnectionId,
    group: &GroupName,
) -> Result<(), ClusterError> {
    registry
        .join(id, group)
        .map_err(|error| membership_error(id, error))
}

/// Takes a connection of this node out of `group`.
pub(super) fn leave_group(
    registry: &Registry,
    id: &ConnectionId,
    group: &GroupName,
) -> Result<(), ClusterError> {
    registry
        .leave(id, group)
        .map_err(|error| membership_error(id, error))
}

/// The groups of a connection of this node.
pub(super) fn connection_groups(
    registry: &Registry,
    id: &ConnectionId,
) -> Result<Vec<GroupName>, ClusterError> {
    registry
        .groups_of(id)
        .ok_or_else(|| ClusterError::Gone(id.clone()))
}

/// Queues `payload` for every member of `group` on this node (every connection when `group`
/// is `None`). The payload's bytes are shared by all the queued messages, not copied.
pub(super) fn broadcast(registry: &Registry, group: Option<&GroupName>, payload: &Bytes) -> Tally {
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
            // Closing while the broadcast ran: it was not a target any more.
            Err(QueueError::Gone) => {}
        }
    }
    tally
}

/// A page of this node's connections (of `group`, or all) in id order after `after`, and
/// whether more follow.
pub(super) fn page(
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
        groups: groups
            .iter()
            .map(|group| group.as_str().to_owned())
            .collect(),
    }
}

fn membership_error(id: &ConnectionId, error: MembershipError) -> ClusterError {
    match error {
        MembershipError::Gone => ClusterError::Gone(id.clone()),
        MembershipError::TooManyGroups => ClusterError::TooManyGroups(id.clone()),
    }
}

/// The handle of a registered connection that is not closing.
fn open_handle(registry: &Registry, id: &ConnectionId) -> Result<ConnectionHandle, ClusterError> {
    match registry.get(id) {
        Some(handle) if !handle.is_closing() => Ok(handle),
        _ => Err(ClusterError::Gone(id.clone())),
    }
}
