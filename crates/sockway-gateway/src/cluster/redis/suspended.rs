//! `[resume]` in a cluster: a suspended connection outlives its node.
//!
//! At suspension the node holding the connection writes its record
//! (`sockway:{TAG}:suspended:{ID}`: what a hand-over sends, the messages queued so far, the
//! token's ticket, the window's end) with [`scripts::SUSPEND`]; every message queued for it
//! while suspended is appended to `sockway:{TAG}:queue:{ID}:{GEN}` before the post is
//! answered ([`scripts::APPEND_OWN`]). A resume on the same node, or a hand-over to another,
//! goes on in memory as before; the holder then drops the record ([`scripts::DROP_OWN`]).
//!
//! When the holder is dead, the record decides, and **whoever takes it** ([`scripts::TAKE`],
//! [`scripts::APPEND`] past the limits) resumes the connection or delivers its `$disconnect`,
//! exactly once: a resume on any survivor takes it with the token's ticket; posts are appended
//! within the resume limits (past them the poster takes it and ends the connection); the
//! survivor that claimed the connection ([`scripts::CLAIM`] returns its record) waits for the
//! window's end and then takes what is left and delivers `$disconnect` with the reason of an
//! expired window. Taking the record also removes the connection's entry from its node's
//! connections, so a survivor that has not claimed it yet never will.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use redis::Value;
use sockway_protocol::close::CloseCause;
use sockway_protocol::group::GroupName;
use sockway_protocol::id::ConnectionId;
use tracing::{debug, info, warn};

use super::keys::NodeTag;
use super::{Inner, Orphan, RedisBackend, scripts};
use crate::cluster::ClusterError;
use crate::cluster::command::{Moved, MovedMessage, Suspended};
use crate::epoch_millis;
use crate::metrics::RedisOperation;

/// How long the ids of taken connections stay in their node's claimed set: as long as a
/// claim keeps them (`liveness::REAPED_MEMORY`).
const CLAIMED_MEMORY_MS: u64 = 3_600_000;

/// How long a record outlives its window: long enough for a survivor to claim the dead node
/// (`node_timeout`) and take it once the window ends.
fn ttl_ms(inner: &Inner, window_ends_at: i64) -> u64 {
    let remaining = u64::try_from(window_ends_at - epoch_millis()).unwrap_or(0);
    let node_timeout = u64::try_from(inner.node_timeout.as_millis()).unwrap_or(u64::MAX);
    remaining
        .saturating_add(node_timeout.saturating_mul(2))
        .saturating_add(30_000)
}

/// A new suspension's generation: larger than any this process gave before (and than those
/// of an earlier process on the same tag, being seeded with the clock in microseconds).
pub(crate) fn next_generation() -> u64 {
    static GENERATION: AtomicU64 = AtomicU64::new(0);
    let now = u64::try_from(epoch_millis())
        .unwrap_or(0)
        .saturating_mul(1000);
    let previous = GENERATION
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
            Some(last.max(now) + 1)
        })
        .unwrap_or(0);
    previous.max(now) + 1
}

/// A queued message as the queue keeps it: `t` or `b`, then the payload.
fn encode_message(text: bool, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1 + payload.len());
    bytes.push(if text { b't' } else { b'b' });
    bytes.extend_from_slice(payload);
    bytes
}

fn decode_message(bytes: &[u8]) -> Option<MovedMessage> {
    let (kind, payload) = bytes.split_first()?;
    let text = match kind {
        b't' => true,
        b'b' => false,
        _ => return None,
    };
    Some(MovedMessage {
        text,
        payload: payload.to_vec(),
    })
}

impl RedisBackend {
    /// Writes the record of a connection this node just suspended (one round trip; skipped
    /// at once while Redis is unreachable). A failure leaves the connection suspended in this
    /// node's memory only: it resumes here, or through a hand-over, but not after this node's
    /// death.
    pub(crate) fn record_suspension(
        &self,
        id: &ConnectionId,
        generation: u64,
        ticket: &[u8; 32],
        limits: (usize, usize),
        build: impl FnOnce(Vec<GroupName>) -> Suspended,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let inner = self.inner.clone();
        if !inner.is_healthy() {
            debug!(connection_id = %id, "Redis is unreachable: the suspended connection is kept in this node's memory only");
            return None;
        }
        let record = build(inner.registry.groups_of(id).unwrap_or_default());
        let tag = inner.record_tag(id);
        let queued_bytes: usize = record
            .queued
            .iter()
            .map(|message| message.payload.len())
            .sum();
        let state = serde_json::to_string(&record).expect("a record of strings and numbers");
        let mut invocation = scripts::SUSPEND.prepare_invoke();
        invocation
            .key(tag.suspended_key(id))
            .key(format!("{}{generation}", tag.queue_prefix(id)))
            .arg(generation)
            .arg(state)
            .arg(hex::encode(ticket))
            .arg(ttl_ms(&inner, record.window_ends_at))
            .arg(record.queued.len())
            .arg(queued_bytes)
            .arg(limits.0)
            .arg(limits.1);
        let id = id.clone();
        Some(async move {
            let mut connection = inner.connection.clone();
            let written = tokio::time::timeout(
                inner.operation_timeout,
                inner.timed(
                    RedisOperation::Suspended,
                    invocation.invoke_async::<i64>(&mut connection),
                ),
            )
            .await;
            match written {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    inner.mark_down(&error);
                    warn!(connection_id = %id, error = %error, "cannot record the suspended connection in Redis; it survives only while this node does");
                }
                Err(_) => {
                    warn!(connection_id = %id, "recording the suspended connection in Redis timed out; it survives only while this node does");
                }
            }
        })
    }

    /// Forgets the record of suspension `generation` (the connection has a socket again, moved,
    /// or ended here), in the background.
    pub(crate) fn end_suspension(&self, id: &ConnectionId, generation: u64) {
        let inner = self.inner.clone();
        let id = id.clone();
        self.tasks.spawn(async move {
            let tag = inner.record_tag(&id);
            let mut invocation = scripts::DROP_OWN.prepare_invoke();
            invocation
                .key(tag.suspended_key(&id))
                .key(format!("{}{generation}", tag.queue_prefix(&id)))
                .arg(generation);
            let mut connection = inner.connection.clone();
            let dropped = tokio::time::timeout(
                inner.operation_timeout,
                inner.timed(
                    RedisOperation::Suspended,
                    invocation.invoke_async::<i64>(&mut connection),
                ),
            )
            .await;
            if !matches!(dropped, Ok(Ok(_))) {
                // It expires with its TTL; a resume cannot use it (the token changed).
                debug!(connection_id = %id, "cannot drop a suspended connection's record");
            }
        });
    }

    /// The suspended connection `id` as its dead node left it, if `ticket` (hex) resumes it
    /// and its window is open: what a hand-over would have answered, marked
    /// [`Moved::stored`], with `node` naming the dead node. Reads only; the resume takes it
    /// with [`RedisBackend::take_suspended`].
    pub(crate) async fn find_suspended(&self, id: &ConnectionId, ticket: &str) -> Option<Moved> {
        let inner = &self.inner;
        let holder = inner.holder_of(id).await;
        let mut read = redis::cmd("HMGET");
        read.arg(holder.suspended_key(id))
            .arg("state")
            .arg("ticket");
        let mut connection = inner.connection.clone();
        let read = tokio::time::timeout(
            inner.operation_timeout,
            inner.timed(
                RedisOperation::Suspended,
                read.query_async::<(Option<String>, Option<String>)>(&mut connection),
            ),
        )
        .await;
        let (Some(state), Some(stored_ticket)) = (match read {
            Ok(Ok(found)) => found,
            Ok(Err(error)) => {
                inner.mark_down(&error);
                return None;
            }
            Err(_) => return None,
        }) else {
            return None;
        };
        let ticket_matches: bool = subtle_eq(stored_ticket.as_bytes(), ticket.as_bytes());
        if !ticket_matches {
            return None;
        }
        let record: Suspended = serde_json::from_str(&state).ok()?;
        if record.window_ends_at <= epoch_millis() {
            return None;
        }
        let mut moved = record.moved;
        moved.node = holder.0;
        moved.stored = true;
        Some(moved)
    }

    /// Takes the record of the suspended connection `id` that node `node` left, for a resume
    /// with `ticket` (hex): exactly one taker gets it. Answers the messages queued for it,
    /// oldest first.
    pub(crate) async fn take_suspended(
        &self,
        id: &ConnectionId,
        ticket: &str,
        node: u16,
    ) -> Result<Vec<MovedMessage>, ClusterError> {
        let holder = NodeTag(node);
        match self.inner.take(holder, id, ticket).await {
            Ok(Some((record, queued))) => {
                let mut messages = record.queued;
                messages.extend(queued);
                info!(connection_id = %id, node = %holder.to_hex(), messages = messages.len(), "resuming a suspended connection whose node is gone");
                Ok(messages)
            }
            Ok(None) => Err(ClusterError::Gone(id.clone())),
            Err(()) => Err(ClusterError::Unavailable(id.clone())),
        }
    }
}

/// Compares two byte strings in constant time (for equal lengths).
fn subtle_eq(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}

impl Inner {
    /// The node that holds (or held) `id`: where it moved, else the one that assigned it.
    pub(super) async fn holder_of(&self, id: &ConnectionId) -> NodeTag {
        match self.moved_to(id).await {
            Some(tag) => tag,
            None => NodeTag::of(id),
        }
    }

    /// Appends a message this node queued for its suspended connection (suspension
    /// `generation`) to its queue in Redis, before the post is answered. Failures are logged:
    /// the message is queued in memory either way.
    pub(super) async fn append_own(&self, id: &ConnectionId, generation: u64, payload: &Bytes) {
        if !self.is_healthy() {
            return;
        }
        let tag = self.record_tag(id);
        let text = std::str::from_utf8(payload).is_ok();
        let mut invocation = scripts::APPEND_OWN.prepare_invoke();
        // The window is at most an hour: the record's TTL bounds this one from above.
        let ttl = ttl_ms(self, epoch_millis() + 3_600_000);
        invocation
            .key(tag.suspended_key(id))
            .key(format!("{}{generation}", tag.queue_prefix(id)))
            .arg(generation)
            .arg(encode_message(text, payload))
            .arg(payload.len())
            .arg(ttl);
        let mut connection = self.connection.clone();
        let appended = tokio::time::timeout(
            self.operation_timeout,
            self.timed(
                RedisOperation::Suspended,
                invocation.invoke_async::<i64>(&mut connection),
            ),
        )
        .await;
        match appended {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => self.mark_down(&error),
            Err(_) => {
                debug!(connection_id = %id, "appending to a suspended connection's queue timed out")
            }
        }
    }

    /// Serves a post to a connection whose node `holder` is dead: appended to its suspended
    /// queue (200) within the resume limits; past them the connection ends (this node
    /// delivers its `$disconnect`, 1008) and the caller gets 410, as any later one; no
    /// record: 410.
    pub(super) async fn append_orphaned(
        &self,
        holder: NodeTag,
        id: &ConnectionId,
        payload: &Bytes,
    ) -> Result<(), ClusterError> {
        let text = std::str::from_utf8(payload).is_ok();
        let mut invocation = scripts::APPEND.prepare_invoke();
        invocation
            .key(holder.suspended_key(id))
            .key(holder.connections_key())
            .key(holder.claimed_key())
            .arg(id.as_str())
            .arg(encode_message(text, payload))
            .arg(payload.len())
            .arg(holder.queue_prefix(id))
            .arg(CLAIMED_MEMORY_MS);
        let mut connection = self.connection.clone();
        let appended = tokio::time::timeout(
            self.operation_timeout,
            self.timed(
                RedisOperation::Suspended,
                invocation.invoke_async::<Vec<Value>>(&mut connection),
            ),
        )
        .await;
        let reply = match appended {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => {
                self.mark_down(&error);
                return Err(ClusterError::Unavailable(id.clone()));
            }
            Err(_) => return Err(ClusterError::Timeout(id.clone())),
        };
        match reply.as_slice() {
            [Value::Int(1)] => Ok(()),
            [Value::Int(-1), Value::BulkString(state)] => {
                if let Some(record) = read_record(state) {
                    self.hand_on(holder, id, record, CloseCause::ResumeQueueFull)
                        .await;
                }
                Err(ClusterError::Gone(id.clone()))
            }
            _ => Err(ClusterError::Gone(id.clone())),
        }
    }

    /// Ends a suspended connection whose node `holder` is dead (`DELETE`): takes its record
    /// and delivers `$disconnect` 1000. `false` when there was none to take.
    pub(super) async fn delete_orphaned(&self, holder: NodeTag, id: &ConnectionId) -> bool {
        match self.take(holder, id, "").await {
            Ok(Some((record, _))) => {
                self.hand_on(holder, id, record, CloseCause::Deleted).await;
                true
            }
            _ => false,
        }
    }

    /// Waits, on the survivor that claimed it, for the window of a dead node's suspended
    /// connection to end, then takes its record if nobody resumed it meanwhile and delivers
    /// its `$disconnect` (the reason of an expired window). Stops waiting when the node leaves.
    pub(super) async fn expire_orphaned(
        self: Arc<Self>,
        holder: NodeTag,
        id: ConnectionId,
        record: Suspended,
    ) {
        let wait = u64::try_from(record.window_ends_at - epoch_millis()).unwrap_or(0);
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_millis(wait)) => {}
            () = self.stop.cancelled() => {
                warn!(connection_id = %id, "leaving while a lost node's suspended connection waits for its window; its $disconnect is not delivered");
                return;
            }
        }
        loop {
            match self.take(holder, &id, "").await {
                Ok(Some((record, _))) => {
                    let cause = CloseCause::NotResumed(Box::new(record.cause.clone().into_cause()));
                    self.hand_on(holder, &id, record, cause).await;
                    return;
                }
                // Resumed (or ended) by another taker.
                Ok(None) => return,
                Err(()) => {
                    tokio::select! {
                        () = tokio::time::sleep(self.heartbeat_interval) => {}
                        () = self.stop.cancelled() => return,
                    }
                }
            }
        }
    }

    /// Hands a connection this node took from the dead node `holder` to `$disconnect`
    /// delivery; forgets where it had moved, if it had.
    async fn hand_on(
        &self,
        holder: NodeTag,
        id: &ConnectionId,
        record: Suspended,
        cause: CloseCause,
    ) {
        let assigned = NodeTag::of(id);
        if assigned != holder {
            let mut forget = scripts::FORGET_MOVED.prepare_invoke();
            forget.key(assigned.moved_key(id)).arg(holder.to_hex());
            let mut connection = self.connection.clone();
            let _ = tokio::time::timeout(
                self.operation_timeout,
                forget.invoke_async::<i64>(&mut connection),
            )
            .await;
        }
        self.metrics.claimed.inc();
        let context = Arc::new(record.moved.context.into_context());
        debug!(connection_id = %id, cause = ?cause, "a lost node's suspended connection ends");
        let _ = self.orphan_sender.send(Orphan { context, cause }).await;
    }

    /// Runs [`scripts::TAKE`]: `Ok(None)` when there was nothing to take, `Err` when Redis did
    /// not answer.
    async fn take(
        &self,
        holder: NodeTag,
        id: &ConnectionId,
        ticket: &str,
    ) -> Result<Option<(Suspended, Vec<MovedMessage>)>, ()> {
        let mut invocation = scripts::TAKE.prepare_invoke();
        invocation
            .key(holder.suspended_key(id))
            .key(holder.connections_key())
            .key(holder.claimed_key())
            .arg(id.as_str())
            .arg(ticket)
            .arg(holder.queue_prefix(id))
            .arg(CLAIMED_MEMORY_MS);
        let mut connection = self.connection.clone();
        let taken = tokio::time::timeout(
            self.operation_timeout,
            self.timed(
                RedisOperation::Suspended,
                invocation.invoke_async::<Vec<Value>>(&mut connection),
            ),
        )
        .await;
        let reply = match taken {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => {
                self.mark_down(&error);
                return Err(());
            }
            Err(_) => return Err(()),
        };
        match reply.as_slice() {
            [
                Value::Int(1),
                Value::BulkString(state),
                Value::Array(queued),
            ] => {
                let Some(record) = read_record(state) else {
                    warn!(connection_id = %id, "an unreadable suspended connection record was taken and dropped");
                    return Ok(None);
                };
                let queued = queued
                    .iter()
                    .filter_map(|message| match message {
                        Value::BulkString(bytes) => decode_message(bytes),
                        _ => None,
                    })
                    .collect();
                Ok(Some((record, queued)))
            }
            _ => Ok(None),
        }
    }
}

/// A record's state, as [`scripts::CLAIM`], [`scripts::APPEND`] and [`scripts::TAKE`] return it.
pub(super) fn read_record(state: &[u8]) -> Option<Suspended> {
    serde_json::from_slice(state).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_messages_keep_their_kind() {
        for (text, payload) in [
            (true, &b"hello"[..]),
            (false, &[0xff, 0, 1][..]),
            (true, &b""[..]),
        ] {
            let decoded = decode_message(&encode_message(text, payload)).unwrap();
            assert_eq!((decoded.text, decoded.payload.as_slice()), (text, payload));
        }
        assert_eq!(decode_message(b""), None);
        assert_eq!(decode_message(b"xabc"), None);
    }

    #[test]
    fn generations_grow() {
        let first = next_generation();
        let second = next_generation();
        assert!(second > first);
    }

    #[test]
    fn tickets_compare_whole() {
        assert!(subtle_eq(b"abcd", b"abcd"));
        assert!(!subtle_eq(b"abcd", b"abce"));
        assert!(!subtle_eq(b"abc", b"abcd"));
    }
}
