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

use std::any::Any;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use bytes::Bytes;
use prometheus_client::metrics::gauge::Gauge;
use sockway_protocol::close::CloseCause;
use sockway_protocol::event::ConnectionContext;
use sockway_protocol::group::GroupName;
use sockway_protocol::id::ConnectionId;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

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
    /// What every event of the connection carries; a cluster stores it so that another node
    /// can deliver `$disconnect` if this one is lost.
    pub(crate) context: Arc<ConnectionContext>,
    /// Cancelling it ends the connection's open loop; it is a child of the gateway's shutdown
    /// token, so shutdown reaches every connection without a registry walk.
    close: CancellationToken,
    /// Metadata shared with the connection's task.
    pub(crate) info: Arc<ConnectionInfo>,
}

/// The mutable state of a connection shared between its task and the rest of the gateway;
/// its fixed facts (`connectedAt`, source IP, user agent) are in the handle's context.
#[derive(Debug)]
pub(crate) struct ConnectionInfo {
    /// Epoch milliseconds of the last data frame in either direction.
    last_active_at: AtomicI64,
    /// Set once the connection will take no more messages.
    closing: AtomicBool,
    /// Why the connection was asked to close, read by its task once `close` is cancelled.
    close_cause: OnceLock<CloseCause>,
    /// Messages waiting for the connection's socket.
    mailbox: Mailbox,
}

/// A connection's bounded queue of outbound messages.
///
/// A `VecDeque` behind a lock and a `Notify` rather than a channel: an idle connection's
/// mailbox is a few words with nothing allocated (a tokio channel allocates its first block of
/// 32 slots and its shared state up front, about 1.7 KiB), the queue's memory is returned once a
/// burst has drained, and closing it under the same lock as pushes makes "accepted" and
/// "closed" exclusive: a message is either refused or in the queue when the task looks last.
#[derive(Debug)]
pub(crate) struct Mailbox {
    state: Mutex<MailboxState>,
    notify: Notify,
    capacity: usize,
}

#[derive(Default)]
struct MailboxState {
    queue: VecDeque<Outbound>,
    /// The bytes of the queued payloads.
    bytes: usize,
    closed: bool,
    /// Set when the connection's window ended: no socket may take it over any more.
    sealed: bool,
    /// `[resume]`: allocated when the connection first gets a ticket or is suspended, so a
    /// connection that never does (every one without `[resume]`) pays one pointer, not the
    /// 88 bytes of its parts: every connection's `ConnectionInfo` holds this state.
    resume: Option<Box<ResumeState>>,
}

/// What only a resumable connection's mailbox holds.
#[derive(Default)]
struct ResumeState {
    /// The limits while the connection is suspended; `None` while it has a socket.
    suspended: Option<Suspension>,
    /// The SHA-256 of the secret of the connection's resume token; `None` when it has none.
    ticket: Option<[u8; 32]>,
    /// A new socket for the connection, waiting for its task to take it (opaque here: only
    /// `connection` knows what a socket is).
    takeover: Option<Takeover>,
}

impl MailboxState {
    /// The suspension's limits, if the connection is suspended.
    fn suspended(&self) -> Option<&Suspension> {
        self.resume.as_ref()?.suspended.as_ref()
    }

    /// The connection's current ticket, if it has one.
    fn ticket(&self) -> Option<&[u8; 32]> {
        self.resume.as_ref()?.ticket.as_ref()
    }

    /// Takes the socket waiting to take the connection over, if any.
    fn take_takeover(&mut self) -> Option<Takeover> {
        self.resume.as_mut()?.takeover.take()
    }

    /// Takes the oldest queued message; a queue that grew past [`KEPT_QUEUE_SLOTS`] gives its
    /// memory back once empty.
    fn pop_front(&mut self) -> Option<Outbound> {
        let message = self.queue.pop_front();
        if let Some(message) = &message {
            self.bytes -= message.payload.len();
        }
        if self.queue.is_empty() && self.queue.capacity() > KEPT_QUEUE_SLOTS {
            self.queue = VecDeque::new();
        }
        message
    }

    /// The resume state, allocated on first use.
    fn resume(&mut self) -> &mut ResumeState {
        self.resume.get_or_insert_with(Box::default)
    }

    /// Ends a suspension: its queued bytes leave the gauge.
    fn unsuspend(&mut self) {
        let bytes = self.bytes;
        if let Some(limits) = self
            .resume
            .as_mut()
            .and_then(|resume| resume.suspended.take())
        {
            limits.queued_bytes.dec_by(bytes as i64);
        }
    }

    /// Refuses further messages and drops a socket handed over and not taken; returns the
    /// queue.
    fn close(&mut self) -> VecDeque<Outbound> {
        self.closed = true;
        self.sealed = true;
        self.unsuspend();
        if let Some(resume) = &mut self.resume {
            resume.takeover = None;
        }
        self.bytes = 0;
        std::mem::take(&mut self.queue)
    }
}

impl std::fmt::Debug for MailboxState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("MailboxState")
            .field("queued", &self.queue.len())
            .field("bytes", &self.bytes)
            .field("closed", &self.closed)
            .field("suspended", &self.suspended().is_some())
            .field(
                "takeover",
                &self
                    .resume
                    .as_ref()
                    .is_some_and(|resume| resume.takeover.is_some()),
            )
            .field("sealed", &self.sealed)
            .finish_non_exhaustive()
    }
}

/// What a suspended connection may queue, and the gauge of bytes queued for suspended
/// connections that its queue counts in.
#[derive(Debug, Clone)]
pub(crate) struct Suspension {
    /// `resume.max_queued_messages`.
    pub(crate) max_messages: usize,
    /// `resume.max_queued_bytes`.
    pub(crate) max_bytes: usize,
    /// `sockway_resume_queued_bytes`.
    pub(crate) queued_bytes: Gauge,
    /// Which suspension of the connection this is (in a cluster, names its record in Redis);
    /// grows from one suspension to the next.
    pub(crate) generation: u64,
}

/// A new socket for a connection, as `connection` packs it; the registry only carries it.
pub(crate) type Takeover = Box<dyn Any + Send>;

/// What a connection's task takes from its mailbox next.
pub(crate) enum Next {
    /// A message to send.
    Message(Outbound),
    /// A new socket that resumed the connection; it goes before any message.
    Takeover(Takeover),
}

/// Queues above this many slots are freed once they drain, so a burst does not pin memory.
const KEPT_QUEUE_SLOTS: usize = 16;

impl Mailbox {
    fn new(capacity: usize) -> Mailbox {
        Mailbox {
            state: Mutex::new(MailboxState::default()),
            notify: Notify::new(),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MailboxState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a message; answers the suspension's generation when the connection is
    /// suspended.
    fn push(&self, message: Outbound) -> Result<Option<u64>, QueueError> {
        let mut state = self.lock();
        if state.closed {
            return Err(QueueError::Gone);
        }
        let length = message.payload.len();
        let generation = state.suspended().map(|limits| limits.generation);
        match state.suspended() {
            Some(limits) => {
                if state.queue.len() >= limits.max_messages
                    || state.bytes + length > limits.max_bytes
                {
                    return Err(QueueError::Overflow);
                }
                limits.queued_bytes.inc_by(length as i64);
            }
            None if state.queue.len() >= self.capacity => return Err(QueueError::Full),
            None => {}
        }
        state.bytes += length;
        state.queue.push_back(message);
        drop(state);
        self.notify.notify_one();
        Ok(generation)
    }

    /// The oldest queued message, without waiting.
    pub(crate) fn try_pop(&self) -> Option<Outbound> {
        self.lock().pop_front()
    }

    /// Waits for what comes next: a new socket that resumed the connection, else the oldest
    /// message. Cancel-safe: nothing is taken unless this returns.
    pub(crate) async fn pop(&self) -> Next {
        loop {
            // One lock for both: the connection's task looks here on every wake.
            {
                let mut state = self.lock();
                if let Some(takeover) = state.take_takeover() {
                    return Next::Takeover(takeover);
                }
                if let Some(message) = state.pop_front() {
                    return Next::Message(message);
                }
            }
            // `notify_one` leaves a permit when nobody waits, so a push between the check
            // above and this wait is not missed.
            self.notify.notified().await;
        }
    }

    /// Refuses further messages; returns how many accepted ones were still queued. A socket
    /// that was handed over and not taken is dropped (its client sees the TCP connection end
    /// and opens a new one).
    pub(crate) fn close(&self) -> usize {
        self.lock().close().len()
    }

    /// Refuses further messages because the connection moved to another node, and returns
    /// those still queued, oldest first; wakes the task waiting in [`Mailbox::wait_closed`].
    pub(crate) fn close_moved(&self) -> Vec<Outbound> {
        let queued = self.lock().close().into();
        self.notify.notify_one();
        queued
    }

    /// Waits until the mailbox is closed.
    pub(crate) async fn wait_closed(&self) {
        loop {
            if self.lock().closed {
                return;
            }
            self.notify.notified().await;
        }
    }

    /// Queues `messages` ahead of those already queued (a connection that moved here: what
    /// was queued on its previous node is older), whatever the limits.
    pub(crate) fn push_front(&self, messages: Vec<Outbound>) {
        let mut state = self.lock();
        for message in messages.into_iter().rev() {
            state.bytes += message.payload.len();
            if let Some(limits) = state.suspended() {
                limits.queued_bytes.inc_by(message.payload.len() as i64);
            }
            state.queue.push_front(message);
        }
        drop(state);
        self.notify.notify_one();
    }

    /// How many messages are queued.
    pub(crate) fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Suspends the connection: from now on messages queue within `limits`, past which a push
    /// is refused with [`QueueError::Overflow`]. Returns the messages queued before, oldest
    /// first (shared, not copied), in the same step: every later one is pushed as suspended.
    pub(crate) fn suspend(&self, limits: Suspension) -> Vec<Outbound> {
        let mut state = self.lock();
        limits.queued_bytes.inc_by(state.bytes as i64);
        state.resume().suspended = Some(limits);
        state.queue.iter().cloned().collect()
    }

    /// The SHA-256 of the connection's current resume secret, if it has one.
    pub(crate) fn ticket(&self) -> Option<[u8; 32]> {
        self.lock().ticket().copied()
    }

    /// Ends a suspension (the connection has a socket again, or is ending).
    pub(crate) fn unsuspend(&self) {
        self.lock().unsuspend();
    }

    /// Whether the connection is suspended.
    pub(crate) fn is_suspended(&self) -> bool {
        self.lock().suspended().is_some()
    }

    /// Sets the SHA-256 of the connection's current resume secret (the previous one no longer
    /// resumes it).
    pub(crate) fn set_ticket(&self, ticket: [u8; 32]) {
        self.lock().resume().ticket = Some(ticket);
    }

    /// Whether `ticket` is the SHA-256 of the connection's current resume secret and a socket
    /// could still take the connection over. Compared in constant time.
    pub(crate) fn ticket_matches(&self, ticket: &[u8; 32]) -> bool {
        let state = self.lock();
        !state.closed
            && !state.sealed
            && state
                .ticket()
                .is_some_and(|stored| constant_time_eq(stored, ticket))
    }

    /// Hands a new socket to the connection's task, if `ticket` still resumes it; the ticket
    /// is used up (single use). The task takes it with [`Mailbox::pop`] while its old socket
    /// is open, or [`Mailbox::next_takeover`] while suspended. Gives the takeover back when
    /// the ticket does not match or the connection can no longer be taken over.
    pub(crate) fn take_over(&self, ticket: &[u8; 32], takeover: Takeover) -> Result<(), Takeover> {
        let mut state = self.lock();
        let matches = state
            .ticket()
            .is_some_and(|stored| constant_time_eq(stored, ticket));
        if state.closed || state.sealed || !matches {
            return Err(takeover);
        }
        let resume = state.resume();
        if resume.takeover.is_some() {
            return Err(takeover);
        }
        resume.ticket = None;
        resume.takeover = Some(takeover);
        drop(state);
        self.notify.notify_one();
        Ok(())
    }

    /// Waits for a socket handed over by [`Mailbox::take_over`], leaving messages queued.
    pub(crate) async fn next_takeover(&self) -> Takeover {
        loop {
            if let Some(takeover) = self.lock().take_takeover() {
                return takeover;
            }
            self.notify.notified().await;
        }
    }

    /// Ends the resume window: no socket can take the connection over from now on. A socket
    /// handed over just before wins and is returned (its token was already used up).
    pub(crate) fn seal(&self) -> Option<Takeover> {
        let mut state = self.lock();
        if let Some(takeover) = state.take_takeover() {
            return Some(takeover);
        }
        state.sealed = true;
        None
    }
}

/// Compares two digests without an early exit, so the time taken says nothing about where
/// they differ.
fn constant_time_eq(left: &[u8; 32], right: &[u8; 32]) -> bool {
    left.iter()
        .zip(right)
        .fold(0u8, |difference, (l, r)| difference | (l ^ r))
        == 0
}

/// Why a message could not be queued for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueError {
    /// The connection is closing or closed.
    Gone,
    /// Its outbound queue is full: the client reads slower than messages arrive.
    Full,
    /// The connection is suspended and its queue reached the resume limits: it must end.
    Overflow,
}

impl ConnectionInfo {
    /// Records data-frame activity at `now`.
    pub(crate) fn touch(&self, now: i64) {
        self.last_active_at.fetch_max(now, Ordering::Relaxed);
    }

    /// Epoch milliseconds of the last data frame either way.
    pub(crate) fn last_active_at(&self) -> i64 {
        self.last_active_at.load(Ordering::Relaxed)
    }

    /// The connection's outbound queue.
    pub(crate) fn mailbox(&self) -> &Mailbox {
        &self.mailbox
    }

    /// The cause recorded by [`ConnectionHandle::close`], if any.
    pub(crate) fn close_cause(&self) -> Option<CloseCause> {
        self.close_cause.get().cloned()
    }

    /// [`ConnectionHandle::try_send`], answering the suspension's generation when the message
    /// was queued for a suspended connection. A push calls it on the shared state alone.
    pub(crate) fn try_send_noting(&self, message: Outbound) -> Result<Option<u64>, QueueError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(QueueError::Gone);
        }
        self.mailbox.push(message)
    }
}

impl ConnectionHandle {
    /// A handle for a connection whose mailbox holds up to `queue` messages.
    pub(crate) fn new(
        context: Arc<ConnectionContext>,
        queue: usize,
        close: CancellationToken,
    ) -> ConnectionHandle {
        let info = ConnectionInfo {
            last_active_at: AtomicI64::new(context.connected_at),
            closing: AtomicBool::new(false),
            close_cause: OnceLock::new(),
            mailbox: Mailbox::new(queue),
        };
        ConnectionHandle {
            context,
            close,
            info: Arc::new(info),
        }
    }

    /// The connection's id (its context's: held once, since every connection has two
    /// handles, its task's and the registry's).
    pub(crate) fn id(&self) -> &ConnectionId {
        &self.context.connection_id
    }

    /// The token whose cancellation ends the connection's open loop.
    pub(crate) fn close_token(&self) -> &CancellationToken {
        &self.close
    }

    /// The connection's outbound queue, which its task reads.
    pub(crate) fn mailbox(&self) -> &Mailbox {
        &self.info.mailbox
    }

    /// Queues a message. Never waits: a full queue is reported to the caller (who answers 429,
    /// as AWS does when the client-side buffer is full) rather than stalling the API.
    pub(crate) fn try_send(&self, message: Outbound) -> Result<(), QueueError> {
        self.info.try_send_noting(message).map(|_| ())
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
        if state.connections.contains_key(handle.id()) {
            return false;
        }
        let id = handle.id().clone();
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

    /// The shared state of connection `id`, which is all a push needs: one reference count,
    /// where a whole handle costs three (one of them the close token's, under its lock).
    pub(crate) fn info(&self, id: &ConnectionId) -> Option<Arc<ConnectionInfo>> {
        self.lock()
            .connections
            .get(id)
            .map(|entry| entry.handle.info.clone())
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;

    use prometheus_client::metrics::gauge::Gauge;

    use super::{KEPT_QUEUE_SLOTS, Mailbox, Next, Outbound, QueueError, Suspension};

    fn message(n: usize) -> Outbound {
        Outbound::from_bytes(Bytes::from(n.to_string()))
    }

    /// Every connection's `ConnectionInfo` is one allocation: 160 bytes plus the `Arc`'s two
    /// counts is mimalloc's 192-byte size class (248 with the resume state inline: 256).
    #[test]
    fn a_connection_info_stays_small() {
        let size = std::mem::size_of::<super::ConnectionInfo>();
        assert!(size <= 160, "ConnectionInfo grew to {size} bytes");
    }

    #[test]
    fn a_mailbox_keeps_order_and_refuses_beyond_its_capacity() {
        let mailbox = Mailbox::new(3);
        for n in 0..3 {
            mailbox.push(message(n)).unwrap();
        }
        assert_eq!(mailbox.push(message(3)), Err(QueueError::Full));
        for n in 0..3 {
            assert_eq!(mailbox.try_pop().unwrap().payload, n.to_string());
        }
        assert!(mailbox.try_pop().is_none());
        mailbox.push(message(4)).unwrap();
        assert_eq!(mailbox.try_pop().unwrap().payload, "4");
    }

    #[test]
    fn a_closed_mailbox_refuses_and_reports_what_was_left() {
        let mailbox = Mailbox::new(8);
        mailbox.push(message(1)).unwrap();
        mailbox.push(message(2)).unwrap();
        assert_eq!(mailbox.close(), 2);
        assert_eq!(mailbox.push(message(3)), Err(QueueError::Gone));
        assert!(mailbox.try_pop().is_none());
    }

    #[test]
    fn an_idle_mailbox_holds_no_allocation_and_a_drained_burst_is_freed() {
        let mailbox = Mailbox::new(1000);
        assert_eq!(mailbox.lock().queue.capacity(), 0);
        for n in 0..500 {
            mailbox.push(message(n)).unwrap();
        }
        while mailbox.try_pop().is_some() {}
        assert!(mailbox.lock().queue.capacity() <= KEPT_QUEUE_SLOTS);
    }

    #[tokio::test]
    async fn pop_waits_for_a_push_from_another_task() {
        let mailbox = Arc::new(Mailbox::new(4));
        let pusher = mailbox.clone();
        let push = tokio::spawn(async move {
            tokio::task::yield_now().await;
            pusher.push(message(7)).unwrap();
        });
        let popped = tokio::time::timeout(Duration::from_secs(5), mailbox.pop())
            .await
            .expect("pop returns once a message is pushed");
        let Next::Message(popped) = popped else {
            panic!("nothing was handed over")
        };
        assert_eq!(popped.payload, "7");
        push.await.unwrap();
    }

    fn suspension(max_messages: usize, max_bytes: usize) -> (Suspension, Gauge) {
        let gauge = Gauge::default();
        let limits = Suspension {
            max_messages,
            max_bytes,
            queued_bytes: gauge.clone(),
            generation: 7,
        };
        (limits, gauge)
    }

    #[test]
    fn a_suspended_mailbox_queues_within_the_resume_limits_and_counts_its_bytes() {
        let mailbox = Mailbox::new(1);
        mailbox.push(message(10)).unwrap();
        assert_eq!(mailbox.push(message(11)), Err(QueueError::Full));
        let (limits, gauge) = suspension(3, 6);
        let before = mailbox.suspend(limits);
        assert_eq!(before.len(), 1, "what was queued before is handed back");
        assert_eq!(gauge.get(), 2);
        assert_eq!(
            mailbox.push(message(12)),
            Ok(Some(7)),
            "queued while suspended"
        );
        mailbox.push(message(13)).unwrap();
        assert_eq!(gauge.get(), 6);
        // Three messages, six bytes: one byte more or one message more overflows.
        assert_eq!(mailbox.push(message(1)), Err(QueueError::Overflow));
        mailbox.unsuspend();
        assert_eq!(gauge.get(), 0);
        assert_eq!(mailbox.len(), 3);
        let (limits, gauge) = suspension(10, 100);
        mailbox.suspend(limits);
        assert_eq!(mailbox.close(), 3);
        assert_eq!(gauge.get(), 0);
    }

    #[test]
    fn a_ticket_takes_over_once_and_not_after_the_window_is_sealed() {
        let mailbox = Mailbox::new(4);
        let ticket = [7u8; 32];
        let other = [8u8; 32];
        assert!(
            mailbox.take_over(&ticket, Box::new(1u8)).is_err(),
            "no ticket yet"
        );
        mailbox.set_ticket(ticket);
        assert!(mailbox.ticket_matches(&ticket));
        assert!(!mailbox.ticket_matches(&other));
        assert!(mailbox.take_over(&other, Box::new(2u8)).is_err());
        assert!(mailbox.take_over(&ticket, Box::new(3u8)).is_ok());
        assert!(
            mailbox.take_over(&ticket, Box::new(4u8)).is_err(),
            "single use"
        );
        // A hand-over that came just before the window ended wins over the seal.
        let taken = mailbox.seal().expect("the handed-over socket");
        assert_eq!(taken.downcast_ref::<u8>(), Some(&3));
        mailbox.set_ticket(ticket);
        assert!(mailbox.seal().is_none());
        assert!(!mailbox.ticket_matches(&ticket));
        assert!(mailbox.take_over(&ticket, Box::new(5u8)).is_err(), "sealed");
    }
}
