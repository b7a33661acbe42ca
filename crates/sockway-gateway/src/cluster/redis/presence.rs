//! The presence writer: keeps `sockway:{TAG}:connections` (what each live connection's
//! `$disconnect` needs) in step with the registry, off the connection's path.
//!
//! Registering a connection never waits for Redis: the change is queued (bounded) and written
//! here in batches. While Redis is unreachable changes are dropped and a full re-sync is due;
//! the re-sync runs in this task, so a change queued after the registry was read is always
//! written after the re-sync, never lost behind it. Writes are idempotent (`HSET`/`HDEL`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use redis::RedisResult;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sockway_protocol::event::{AccessIdentity, ConnectionContext};
use sockway_protocol::id::ConnectionId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::keys::NodeTag;
use super::{Inner, scripts};
use crate::metrics::RedisOperation;

/// Changes written in one pipeline at most.
const BATCH: usize = 256;

/// A change to this node's set of connections.
#[derive(Debug)]
pub(super) enum PresenceOp {
    /// A connection opened (or moved here), recorded under this tag.
    Register(Arc<ConnectionContext>, NodeTag),
    /// A connection ended and had (or will have) its `$disconnect` from this node, or moved
    /// away; its record is under this tag.
    Unregister(ConnectionId, NodeTag),
}

/// What Redis keeps per connection: the [`ConnectionContext`] fields that are not the same on
/// every node (the id is the hash field; the API id and stage come from the survivor's config).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ConnectionRecord {
    connected_at: i64,
    source_ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_agent: Option<String>,
    domain_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authorizer: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access: Option<Box<AccessIdentity>>,
}

impl ConnectionRecord {
    fn from_context(context: &ConnectionContext) -> ConnectionRecord {
        ConnectionRecord {
            connected_at: context.connected_at,
            source_ip: context.source_ip.clone(),
            user_agent: context.user_agent.clone(),
            domain_name: context.domain_name.clone(),
            authorizer: context.authorizer.clone(),
            access: context.access.clone(),
        }
    }

    /// The record as stored.
    pub(super) fn encode(context: &ConnectionContext) -> String {
        serde_json::to_string(&ConnectionRecord::from_context(context))
            .expect("a record of strings, numbers and JSON maps serializes")
    }

    /// The context a survivor builds to deliver the connection's `$disconnect`.
    pub(super) fn into_context(
        self,
        connection_id: ConnectionId,
        api_id: &str,
        stage: &str,
    ) -> ConnectionContext {
        ConnectionContext {
            connection_id,
            api_id: api_id.to_owned(),
            stage: stage.to_owned(),
            domain_name: self.domain_name,
            connected_at: self.connected_at,
            source_ip: self.source_ip,
            user_agent: self.user_agent,
            authorizer: self.authorizer,
            access: self.access,
        }
    }
}

/// Runs until `stop` is cancelled.
pub(super) async fn run(
    inner: Arc<Inner>,
    mut ops: mpsc::Receiver<PresenceOp>,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = inner.resync_wake.notified() => {}
            received = ops.recv_many(&mut batch, BATCH) => {
                if received == 0 {
                    return;
                }
            }
        }
        if !inner.is_healthy() {
            // The re-sync after the outage covers these.
            batch.clear();
            continue;
        }
        if inner.resync.swap(false, Ordering::AcqRel) {
            batch.clear();
            let result = tokio::time::timeout(inner.operation_timeout * 4, resync(&inner)).await;
            match result {
                Ok(Ok(())) => {}
                Ok(Err(error)) => inner.mark_down(&error),
                Err(_) => inner.mark_down(&"re-registering connections timed out"),
            }
            continue;
        }
        let result = tokio::time::timeout(inner.operation_timeout, apply(&inner, &batch)).await;
        batch.clear();
        match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => inner.mark_down(&error),
            Err(_) => inner.mark_down(&"writing connection records timed out"),
        }
    }
}

/// Writes a batch of changes, one pipeline per node tag (each tag's keys are one slot).
async fn apply(inner: &Inner, batch: &[PresenceOp]) -> RedisResult<()> {
    let mut by_tag: BTreeMap<u16, redis::Pipeline> = BTreeMap::new();
    // Moved connections that ended or moved on (rare): one script call each.
    let mut forget = Vec::new();
    for op in batch {
        match op {
            PresenceOp::Register(context, tag) => {
                let assigned = NodeTag::of(&context.connection_id);
                if assigned != *tag {
                    // It moved here: callers who find its first node gone look here.
                    by_tag
                        .entry(assigned.0)
                        .or_insert_with(redis::pipe)
                        .set(assigned.moved_key(&context.connection_id), tag.to_hex())
                        .ignore();
                }
                by_tag
                    .entry(tag.0)
                    .or_insert_with(redis::pipe)
                    .hset(
                        tag.connections_key(),
                        context.connection_id.as_str(),
                        ConnectionRecord::encode(context),
                    )
                    .ignore();
            }
            PresenceOp::Unregister(id, tag) => {
                let assigned = NodeTag::of(id);
                if assigned != *tag {
                    forget.push((assigned.moved_key(id), tag.to_hex()));
                }
                by_tag
                    .entry(tag.0)
                    .or_insert_with(redis::pipe)
                    .hdel(tag.connections_key(), id.as_str())
                    .ignore();
            }
        }
    }
    let mut connection = inner.connection.clone();
    for pipeline in by_tag.values() {
        let write = pipeline.query_async::<()>(&mut connection);
        inner.timed(RedisOperation::Presence, write).await?;
    }
    for (key, tag) in forget {
        let mut invocation = scripts::FORGET_MOVED.prepare_invoke();
        invocation.key(key).arg(tag);
        let write = invocation.invoke_async::<i64>(&mut connection);
        inner.timed(RedisOperation::Presence, write).await?;
    }
    Ok(())
}

/// Replaces Redis's copy of this node's connections with the registry's.
async fn resync(inner: &Inner) -> RedisResult<()> {
    let tag = inner.tag();
    let key = tag.connections_key();
    let records: Vec<(String, String)> = inner
        .registry
        .handles()
        .iter()
        .filter(|handle| inner.record_tag(handle.id()) == tag)
        .map(|handle| {
            (
                handle.id().as_str().to_owned(),
                ConnectionRecord::encode(&handle.context),
            )
        })
        .collect();
    let mut pipeline = redis::pipe();
    pipeline.del(&key).ignore();
    for chunk in records.chunks(BATCH) {
        pipeline.hset_multiple(&key, chunk).ignore();
    }
    let mut connection = inner.connection.clone();
    let write = pipeline.query_async::<()>(&mut connection);
    inner.timed(RedisOperation::Presence, write).await?;
    tracing::debug!(node = %inner.node_id, connections = records.len(), "connection records re-synced");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_what_disconnect_needs() {
        let mut authorizer = Map::new();
        authorizer.insert("principalId".into(), "user-1".into());
        let context = ConnectionContext {
            connection_id: ConnectionId::parse("BFaT_fALIAMCKug=").unwrap(),
            api_id: "a1b2c3d4e5".into(),
            stage: "dev".into(),
            domain_name: "example.test".into(),
            connected_at: 1_700_000_000_000,
            source_ip: "192.0.2.1".into(),
            user_agent: Some("agent/1".into()),
            authorizer: Some(authorizer),
            access: Some(Box::new(AccessIdentity {
                api_key: Some("k".repeat(20)),
                api_key_id: Some("a1b2c3d4e5".into()),
                ..AccessIdentity::default()
            })),
        };
        let stored = ConnectionRecord::encode(&context);
        let record: ConnectionRecord = serde_json::from_str(&stored).unwrap();
        let rebuilt = record.into_context(context.connection_id.clone(), "a1b2c3d4e5", "dev");
        assert_eq!(format!("{rebuilt:?}"), format!("{context:?}"));
    }
}
