//! This node's open connections, each reachable through its [`ConnectionHandle`].
//!
//! The registry is a map behind a `std::sync::Mutex`: every operation is a short lookup, insert
//! or remove with no `.await` while the lock is held, so a synchronous lock is cheaper than an
//! async one and cannot be held across a suspension point. Delivery decisions (queue full,
//! closing) are made by the handle, not here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use sockway_protocol::close::CloseCause;
use sockway_protocol::event::ConnectionContext;
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

/// This node's connections by id.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    connections: Mutex<HashMap<ConnectionId, ConnectionHandle>>,
}

impl Registry {
    /// Adds a connection. Ids come from a CSPRNG, so a collision means a bug, and the old entry
    /// is kept rather than silently replaced.
    pub(crate) fn insert(&self, handle: ConnectionHandle) -> bool {
        let mut connections = self
            .connections
            .lock()
            .expect("registry lock is never poisoned");
        if connections.contains_key(&handle.id) {
            return false;
        }
        connections.insert(handle.id.clone(), handle);
        true
    }

    /// Removes a connection; returns whether it was there.
    pub(crate) fn remove(&self, id: &ConnectionId) -> bool {
        self.connections
            .lock()
            .expect("registry lock is never poisoned")
            .remove(id)
            .is_some()
    }

    /// The handle of an open connection.
    pub(crate) fn get(&self, id: &ConnectionId) -> Option<ConnectionHandle> {
        self.connections
            .lock()
            .expect("registry lock is never poisoned")
            .get(id)
            .cloned()
    }

    /// Every registered connection's handle, e.g. to store them again after the cluster's
    /// store lost them.
    pub(crate) fn handles(&self) -> Vec<ConnectionHandle> {
        self.connections
            .lock()
            .expect("registry lock is never poisoned")
            .values()
            .cloned()
            .collect()
    }

    /// How many connections are registered.
    pub(crate) fn len(&self) -> usize {
        self.connections
            .lock()
            .expect("registry lock is never poisoned")
            .len()
    }
}
