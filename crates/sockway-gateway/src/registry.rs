//! This node's open connections, each reachable through its [`ConnectionHandle`], and the
//! groups they belong to.
//!
//! The registry is two maps behind one `std::sync::Mutex`: connections by id, and members by
//! group. Every operation is a short lookup, insert or remove with no `.await` while the lock
//! is held, so a synchronous lock is cheaper than an async one and cannot be held across a
//! suspension point; one lock for both maps keeps a connection and its memberships consistent
//! (a connection that leaves the registry leaves its groups in the same step). Fan-out copies
//! the members' handles out and sends after the lock is released. Delivery decisions (queue
//! full, closing) are made by the handle, not here.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use sockway_protocol::close::CloseCause;
use sockway_protocol::event::ConnectionContext;
use sockway_protocol::group::GroupName;
use sockway_protocol::id::ConnectionId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A command for a connection's task. A new capability is a new variant plus a match arm in
/// `connection`.
#[derive(Debug)]
pub(crate) enum Command {
    /// Deliver one message (a text frame when `text`, binary otherwise).
    Send(Outbound),
}

/// One message queued for a client.
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    /// The payload as it goes on the wire.
    pub(crate) payload: Bytes,
    /// Whether the payload is valid UTF-8 and goes out as a text message.
    pub(crate) text: bool,
}

impl Outbound {
    /// A message from raw bytes: text when they are valid UTF-8, binary otherwise.
    pub(crate) fn from_bytes(payload: Bytes) -> Outbound {
        let text = std::str::from_utf8(&payload).is_ok();
        Outbound { payload, text }
    }
}

/// What the rest of the gateway holds to reach a connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionHandle {
    /// The connection's id.
    pub(crate) id: ConnectionId,
    /// What every event of the connection carries; a cluster stores it so that another node
    /// can deliver `$disconnect` if this one is lost.
    pub(crate) context: Arc<ConnectionContext>,
    mailbox: mpsc::Sender<Command>,
    /// Cancelling it ends the connection's open loop; it is a child of the gateway's shutdown
    /// token, so shutdown reaches every connection without a registry walk.
    close: CancellationToken,
    /// Metadata shared with the connection's task.
    pub(crate) info: Arc<ConnectionInfo>,
}

/// Facts about a connection that `GET @connections/{id}` reports.
#[derive(Debug)]
pub(crate) struct ConnectionInfo {
    /// Epoch milliseconds of the upgrade.
    pub(crate) connected_at: i64,
    /// The client's address.
    pub(crate) source_ip: String,
    /// The client's `User-Agent`, when it sent one.
    pub(crate) user_agent: Option<String>,
    /// Epoch milliseconds of the last data frame in either direction.
    last_active_at: AtomicI64,
    /// Set once the connection will take no more messages.
    closing: AtomicBool,
    /// Why the connection was asked to close, read by its task once `close` is cancelled.
    close_cause: OnceLock<CloseCause>,
}

/// Why a message could not be queued for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueError {
    /// The connection is closing or closed.
    Gone,
    /// Its outbound queue is full: the client reads slower than messages arrive.
    Full,
}

impl ConnectionInfo {
    /// Info for a connection opened at `connected_at`.
    pub(crate) fn new(connected_at: i64, source_ip: String, user_agent: Option<String>) -> Self {
        ConnectionInfo {
            connected_at,
            source_ip,
            user_agent,
            last_active_at: AtomicI64::new(connected_at),
            closing: AtomicBool::new(false),
            close_cause: OnceLock::new(),
        }
    }

    /// Records data-frame activity at `now`.
    pub(crate) fn touch(&self, now: i64) {
        self.last_active_at.fetch_max(now, Ordering::Relaxed);
    }

    /// Epoch milliseconds of the last data frame either way.
    pub(crate) fn last_active_at(&self) -> i64 {
        self.last_active_at.load(Ordering::Relaxed)
    }

    /// The cause recorded by [`ConnectionHandle::close`], if any.
    pub(crate) fn close_cause(&self) -> Option<CloseCause> {
        self.close_cause.get().cloned()
    }
}

impl ConnectionHandle {
    /// A handle and the receiving end of its mailbox, which the connection task owns.
    pub(crate) fn new(
        context: Arc<ConnectionContext>,
        info: ConnectionInfo,
        queue: usize,
        close: CancellationToken,
    ) -> (ConnectionHandle, mpsc::Receiver<Command>) {
        let (mailbox, receiver) = mpsc::channel(queue);
        let handle = ConnectionHandle {
            id: context.connection_id.clone(),
            context,
            mailbox,
            close,
            info: Arc::new(info),
        };
        (handle, receiver)
    }

    /// Queues a message. Never waits: a full queue is reported to the caller (who answers 429,
    /// as AWS does when the client-side buffer is full) rather than stalling the API.
    pub(crate) fn try_send(&self, message: Outbound) -> Result<(), QueueError> {
        if self.info.closing.load(Ordering::Acquire) {
            return Err(QueueError::Gone);
        }
        self.mailbox
            .try_send(Command::Send(message))
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => QueueError::Full,
                mpsc::error::TrySendError::Closed(_) => QueueError::Gone,
            })
    }

    /// Asks the connection to close with `cause`. From this call on it takes no messages.
    /// Returns false when it was already closing.
    pub(crate) fn close(&self, cause: CloseCause) -> bool {
        let first = !self.info.closing.swap(true, Ordering::AcqRel);
        if first {
            let _ = self.info.close_cause.set(cause);
            self.close.cancel();
        }
        first
    }

    /// Whether the connection is closing or closed.
    pub(crate) fn is_closing(&self) -> bool {
        self.info.closing.load(Ordering::Acquire)
    }

    /// Marks the connection as taking no more messages (its task is ending on its own).
    pub(crate) fn mark_closing(&self) {
        self.info.closing.store(true, Ordering::Release);
    }
}

/// How many groups one connection may belong to.
pub(crate) const MAX_GROUPS_PER_CONNECTION: usize = 100;

/// Why a membership change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MembershipError {
    /// The connection is closing, closed or unknown.
    Gone,
    /// The connection is already in [`MAX_GROUPS_PER_CONNECTION`] groups.
    TooManyGroups,
}

/// This node's connections by id, and its groups.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    connections: HashMap<ConnectionId, Entry>,
    /// Members of each group that has any on this node; a group with no member left is removed.
    groups: HashMap<GroupName, HashSet<ConnectionId>>,
}

#[derive(Debug)]
struct Entry {
    handle: ConnectionHandle,
    /// The groups the connection is in, in the order it joined them.
    groups: Vec<GroupName>,
}

impl State {
    fn join(&mut self, id: &ConnectionId, group: &GroupName) -> Result<(), MembershipError> {
        let entry = self
            .connections
            .get_mut(id)
            .filter(|entry| !entry.handle.is_closing())
            .ok_or(MembershipError::Gone)?;
        if entry.groups.contains(group) {
            return Ok(());
        }
        if entry.groups.len() >= MAX_GROUPS_PER_CONNECTION {
            return Err(MembershipError::TooManyGroups);
        }
        entry.groups.push(group.clone());
        self.groups
            .entry(group.clone())
            .or_default()
            .insert(id.clone());
        Ok(())
    }

    /// The ids of `group`'s members on this node, or of every connection when `None`.
    fn ids<'a>(
        &'a self,
        group: Option<&GroupName>,
    ) -> Box<dyn Iterator<Item = &'a ConnectionId> + 'a> {
        match group {
            None => Box::new(self.connections.keys()),
            Some(group) => Box::new(self.groups.get(group).into_iter().flatten()),
        }
    }

    fn drop_membership(&mut self, id: &ConnectionId, group: &GroupName) {
        if let Some(members) = self.groups.get_mut(group) {
            members.remove(id);
            if members.is_empty() {
                self.groups.remove(group);
            }
        }
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("registry lock is never poisoned")
    }

    /// Adds a connection, member of `groups` from the start (a `$connect` integration can
    /// place it). Ids come from a CSPRNG, so a collision means a bug, and the old entry is
    /// kept rather than silently replaced. Groups past [`MAX_GROUPS_PER_CONNECTION`] are
    /// ignored.
    pub(crate) fn insert(&self, handle: ConnectionHandle, groups: &[GroupName]) -> bool {
        let mut state = self.lock();
        if state.connections.contains_key(&handle.id) {
            return false;
        }
        let id = handle.id.clone();
        state.connections.insert(
            id.clone(),
            Entry {
                handle,
                groups: Vec::new(),
            },
        );
        for group in groups.iter().take(MAX_GROUPS_PER_CONNECTION) {
            state
                .join(&id, group)
                .expect("a connection just inserted is open and below the group limit");
        }
        true
    }

    /// Removes a connection and its memberships; returns whether it was there.
    pub(crate) fn remove(&self, id: &ConnectionId) -> bool {
        let mut state = self.lock();
        let Some(entry) = state.connections.remove(id) else {
            return false;
        };
        for group in &entry.groups {
            state.drop_membership(id, group);
        }
        true
    }

    /// The handle of a registered connection.
    pub(crate) fn get(&self, id: &ConnectionId) -> Option<ConnectionHandle> {
        self.lock()
            .connections
            .get(id)
            .map(|entry| entry.handle.clone())
    }

    /// Adds an open connection to `group` (nothing changes if it is a member already).
    pub(crate) fn join(&self, id: &ConnectionId, group: &GroupName) -> Result<(), MembershipError> {
        self.lock().join(id, group)
    }

    /// Takes an open connection out of `group` (nothing changes if it is not a member).
    pub(crate) fn leave(
        &self,
        id: &ConnectionId,
        group: &GroupName,
    ) -> Result<(), MembershipError> {
        let mut state = self.lock();
        let entry = state
            .connections
            .get_mut(id)
            .filter(|entry| !entry.handle.is_closing())
            .ok_or(MembershipError::Gone)?;
        let before = entry.groups.len();
        entry.groups.retain(|joined| joined != group);
        if entry.groups.len() != before {
            state.drop_membership(id, group);
        }
        Ok(())
    }

    /// The groups of an open connection, in the order it joined them.
    pub(crate) fn groups_of(&self, id: &ConnectionId) -> Option<Vec<GroupName>> {
        self.lock()
            .connections
            .get(id)
            .filter(|entry| !entry.handle.is_closing())
            .map(|entry| entry.groups.clone())
    }

    /// The handles of `group`'s members, or of every connection when `group` is `None`: the
    /// targets of a broadcast, copied out so that sending happens without the lock.
    pub(crate) fn members(&self, group: Option<&GroupName>) -> Vec<ConnectionHandle> {
        let state = self.lock();
        state
            .ids(group)
            .filter_map(|id| state.connections.get(id))
            .map(|entry| entry.handle.clone())
            .collect()
    }

    /// Up to `limit` open connections (of `group`, or all), in id order, starting after
    /// `after`; and whether more follow. Id order makes the position a stable cursor: a page
    /// never repeats or skips a connection that stays open while a caller pages through.
    pub(crate) fn page(
        &self,
        group: Option<&GroupName>,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> (Vec<(ConnectionHandle, Vec<GroupName>)>, bool) {
        let state = self.lock();
        let mut ids: Vec<&ConnectionId> = state
            .ids(group)
            .filter(|id| after.is_none_or(|after| *id > after))
            .filter(|id| {
                state
                    .connections
                    .get(*id)
                    .is_some_and(|entry| !entry.handle.is_closing())
            })
            .collect();
        let more = ids.len() > limit;
        if more {
            ids.select_nth_unstable(limit);
            ids.truncate(limit);
        }
        ids.sort_unstable();
        let page = ids
            .into_iter()
            .filter_map(|id| state.connections.get(id))
            .map(|entry| (entry.handle.clone(), entry.groups.clone()))
            .collect();
        (page, more)
    }

    /// Every registered connection's handle, e.g. to store them again after the cluster's
    /// store lost them.
    pub(crate) fn handles(&self) -> Vec<ConnectionHandle> {
        self.members(None)
    }

    /// How many connections are registered.
    pub(crate) fn len(&self) -> usize {
        self.lock().connections.len()
    }
}
