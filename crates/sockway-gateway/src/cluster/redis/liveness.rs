//! Liveness: claiming a node tag, the heartbeat, coming back after an outage, and taking over
//! the connections of nodes that died.
//!
//! Every `heartbeat_interval` the node renews its liveness key (TTL `node_timeout`) and checks
//! that its inbox has a subscriber ([`scripts::HEARTBEAT`]). A failed heartbeat marks Redis
//! unreachable; the next good one ends the outage: the node claims its tag again if Redis lost
//! it (or a new one if another node took it, closing the connections that carry the old one),
//! subscribes again and asks for a full re-sync of its connection records.
//!
//! Then it looks for dead nodes: for every tag in the directory whose liveness key is gone,
//! [`scripts::CLAIM`] hands this node a batch of that node's connections, removed in the same
//! atomic step, so two survivors never deliver the same `$disconnect`. Claims are sized to the
//! room in the bounded orphan queue, so a node never holds more claimed connections than it
//! can hand on.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::{RedisResult, Value};
use sockway_protocol::close::CloseCause;
use sockway_protocol::event::ConnectionContext;
use sockway_protocol::id::ConnectionId;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::connection::RedisConnection;
use super::keys::{DIRECTORY, NodeTag};
use super::presence::ConnectionRecord;
use super::wire::Message;
use super::{Inner, JoinError, Orphan, TAG_ATTEMPTS, join_error, scripts, suspended};
use crate::metrics::RedisOperation;
use crate::random_bytes;

/// Connections claimed from a dead node in one script call at most.
const CLAIM_BATCH: usize = 64;
/// How long survivors remember whose connections they took over, so that instance, if it was
/// only cut off from Redis, does not come back under the same tag.
const REAPED_MEMORY: Duration = Duration::from_secs(3600);

/// Runs until `stop` is cancelled; takes nothing over once `shutdown` is cancelled (a node
/// shutting down could not deliver it).
pub(super) async fn run(inner: Arc<Inner>, shutdown: CancellationToken, stop: CancellationToken) {
    let orphans = inner.orphan_sender.clone();
    let mut ticker = tokio::time::interval(inner.heartbeat_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first tick is immediate and the node has just joined.
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match tokio::time::timeout(inner.operation_timeout, beat(&inner)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => inner.mark_down(&error),
            Err(_) => inner.mark_down(&"heartbeat timed out"),
        }
        if !inner.is_healthy() || shutdown.is_cancelled() {
            continue;
        }
        // Not cut short by a timeout: a claim whose answer was dropped half-read would lose
        // those connections' `$disconnect`. Each Redis call has the connection's own response
        // timeout instead.
        if let Err(error) = reap(&inner, &orphans).await {
            debug!(error = %error, "looking for lost nodes failed");
        }
    }
}

/// Claims a free random tag for `instance`; `None` when every attempt found a taken one.
pub(super) async fn claim_tag(
    connection: &mut RedisConnection,
    instance: &str,
    node_timeout: Duration,
) -> Result<Option<NodeTag>, JoinError> {
    for _ in 0..TAG_ATTEMPTS {
        let tag = NodeTag(u16::from_be_bytes(random_bytes()));
        let joined = join(connection, tag, instance, node_timeout)
            .await
            .map_err(|source| join_error("claim a node tag", source))?;
        if joined == 1 {
            return Ok(Some(tag));
        }
    }
    Ok(None)
}

/// Adds `tag` to the directory survivors scan for dead nodes.
pub(super) async fn announce(connection: &mut RedisConnection, tag: NodeTag) -> RedisResult<()> {
    redis::cmd("SADD")
        .arg(DIRECTORY)
        .arg(tag.to_hex())
        .query_async::<()>(connection)
        .await
}

/// Removes a node that leaves gracefully: its liveness key, owner record, connection records
/// and directory entry.
pub(super) async fn withdraw(
    connection: &mut RedisConnection,
    tag: NodeTag,
    instance: &str,
) -> RedisResult<()> {
    let removed: i64 = scripts::LEAVE
        .key(tag.node_key())
        .key(tag.owner_key())
        .key(tag.connections_key())
        .arg(instance)
        .invoke_async(connection)
        .await?;
    if removed == 1 {
        redis::cmd("SREM")
            .arg(DIRECTORY)
            .arg(tag.to_hex())
            .query_async::<()>(connection)
            .await?;
    }
    Ok(())
}

async fn join(
    connection: &mut RedisConnection,
    tag: NodeTag,
    instance: &str,
    node_timeout: Duration,
) -> RedisResult<i64> {
    scripts::JOIN
        .key(tag.node_key())
        .key(tag.owner_key())
        .key(tag.connections_key())
        .key(tag.reaped_key())
        .arg(instance)
        .arg(millis(node_timeout))
        .invoke_async(connection)
        .await
}

/// One heartbeat, with the recovery steps an outage or a lost tag needs.
async fn beat(inner: &Inner) -> RedisResult<()> {
    let mut connection = inner.connection.clone();
    let tag = inner.tag();
    let probe = Message::Probe.encode();
    let publish = connection.publish_command();
    let mut heartbeat = scripts::HEARTBEAT.prepare_invoke();
    heartbeat
        .key(tag.node_key())
        .arg(&inner.instance)
        .arg(millis(inner.node_timeout))
        .arg(tag.inbox_channel())
        .arg(probe.as_ref())
        .arg(publish);
    let (status, receivers): (i64, i64) = inner
        .timed(
            RedisOperation::Heartbeat,
            heartbeat.invoke_async(&mut connection),
        )
        .await?;
    let recovered = inner.mark_up();
    let mut subscribe = receivers == 0;
    match status {
        1 => {}
        -1 => {
            // Redis lost the key (a restart) or it expired while this node was cut off.
            let joined = inner
                .timed(
                    RedisOperation::Join,
                    join(&mut connection, tag, &inner.instance, inner.node_timeout),
                )
                .await?;
            if joined == 1 {
                info!(node = %inner.node_id, tag = %tag.to_hex(), "claimed the node tag again");
                inner.request_resync();
            } else {
                retag(inner, &mut connection, joined).await?;
            }
            subscribe = true;
        }
        _ => {
            retag(inner, &mut connection, 0).await?;
            subscribe = true;
        }
    }
    if subscribe {
        inner.subscribed.store(false, Ordering::Release);
        let mut subscriber = inner.connection.clone();
        let channel = inner.tag().inbox_channel();
        inner
            .timed(RedisOperation::Subscribe, subscriber.subscribe(&channel))
            .await?;
    }
    // The probe reached a subscriber (or the subscription was just made): the inbox works,
    // even if the push announcing a re-subscription was missed.
    inner.subscribed.store(true, Ordering::Release);
    // Again on every beat: a survivor that found this tag drained may have removed it.
    inner
        .timed(
            RedisOperation::Directory,
            announce(&mut connection, inner.tag()),
        )
        .await?;
    if recovered {
        inner.request_resync();
    }
    Ok(())
}

/// Moves this node to a new tag after the old one was lost: `joined` is 0 when another node
/// holds it, -1 when survivors took this node's connections over. Connections carrying the old
/// tag can no longer be reached from other nodes, so they are closed.
async fn retag(inner: &Inner, connection: &mut RedisConnection, joined: i64) -> RedisResult<()> {
    let old = inner.tag();
    let Some(tag) = claim_tag(connection, &inner.instance, inner.node_timeout)
        .await
        .map_err(|error| match error {
            JoinError::Redis { source, .. } => source,
            other => redis_error(other.to_string()),
        })?
    else {
        return Err(redis_error("no free node tag".to_owned()));
    };
    inner.tag.store(tag.0, Ordering::Release);
    let mut closed = 0usize;
    for handle in inner.registry.handles() {
        if NodeTag::of(handle.id()) == old && handle.close(CloseCause::NodeLost) {
            closed += 1;
        }
    }
    let reason = if joined == -1 {
        "other nodes took this node's connections over while it was cut off from Redis"
    } else {
        "another node holds the tag"
    };
    warn!(node = %inner.node_id, old_tag = %old.to_hex(), tag = %tag.to_hex(), closed, reason, "lost the node tag; closed the connections that carry it");
    let _ = inner
        .connection
        .clone()
        .unsubscribe(&old.inbox_channel())
        .await;
    inner.request_resync();
    Ok(())
}

/// Looks for dead nodes and claims their connections, as many as the orphan queue has room for;
/// counts the live ones on the way.
async fn reap(inner: &Arc<Inner>, orphans: &mpsc::Sender<Orphan>) -> RedisResult<()> {
    let mut connection = inner.connection.clone();
    let mut members = redis::cmd("SMEMBERS");
    members.arg(DIRECTORY);
    let members: Vec<String> = inner
        .timed(
            RedisOperation::Directory,
            members.query_async(&mut connection),
        )
        .await?;
    let mut peers = 0i64;
    for member in members {
        let Some(tag) = NodeTag::parse(&member) else {
            continue;
        };
        if tag == inner.tag() {
            continue;
        }
        let mut claimed = 0usize;
        loop {
            let room = orphans.capacity().min(CLAIM_BATCH);
            if room == 0 {
                return Ok(());
            }
            let mut claim = scripts::CLAIM.prepare_invoke();
            claim
                .key(tag.node_key())
                .key(tag.owner_key())
                .key(tag.connections_key())
                .key(tag.reaped_key())
                .key(tag.claimed_key())
                .arg(room)
                .arg(millis(REAPED_MEMORY))
                .arg(tag.suspended_prefix());
            let reply: Vec<Value> = inner
                .timed(RedisOperation::Claim, claim.invoke_async(&mut connection))
                .await?;
            match reply.first() {
                Some(Value::Int(0)) => {
                    peers += 1;
                    break;
                }
                Some(Value::Int(1)) => {
                    for triple in reply[1..].chunks(3) {
                        let [
                            Value::BulkString(id),
                            Value::BulkString(record),
                            Value::BulkString(suspended),
                        ] = triple
                        else {
                            continue;
                        };
                        let Some(context) = orphan(inner, id, record) else {
                            warn!(tag = %tag.to_hex(), "skipping an unreadable connection record of a lost node");
                            continue;
                        };
                        // `[resume]`: suspended with a record, it waits for a resume on a
                        // survivor until its window ends; whoever takes the record then
                        // resumes it or delivers its `$disconnect`.
                        if let Some(record) = (!suspended.is_empty())
                            .then(|| suspended::read_record(suspended))
                            .flatten()
                        {
                            debug!(connection_id = %context.connection_id, "a lost node's connection is suspended; it waits for its window");
                            inner.tasks.spawn(inner.clone().expire_orphaned(
                                tag,
                                context.connection_id.clone(),
                                record,
                            ));
                            continue;
                        }
                        claimed += 1;
                        inner.metrics.claimed.inc();
                        let assigned = NodeTag::of(&context.connection_id);
                        if assigned != tag {
                            // It had moved to the lost node (`[resume]`): it ends here.
                            let mut forget = redis::cmd("DEL");
                            forget.arg(assigned.moved_key(&context.connection_id));
                            let _ = forget.query_async::<i64>(&mut connection).await;
                        }
                        // This task is the only sender and claimed no more than the room.
                        let orphan = Orphan {
                            context: Arc::new(context),
                            cause: CloseCause::NodeLost,
                        };
                        if orphans.try_send(orphan).is_err() {
                            warn!(tag = %tag.to_hex(), "orphan queue full; a lost connection's $disconnect is dropped");
                        }
                    }
                }
                Some(Value::Int(2)) => {
                    let mut remove = redis::cmd("SREM");
                    remove.arg(DIRECTORY).arg(&member);
                    inner
                        .timed(
                            RedisOperation::Directory,
                            remove.query_async::<()>(&mut connection),
                        )
                        .await?;
                    break;
                }
                _ => break,
            }
        }
        if claimed > 0 {
            warn!(node = %inner.node_id, lost_tag = %tag.to_hex(), connections = claimed, "a node was lost; delivering $disconnect for its connections");
        }
    }
    inner.metrics.peers.set(peers);
    Ok(())
}

/// The context of a claimed connection, from its hash field and record.
fn orphan(inner: &Inner, id: &[u8], record: &[u8]) -> Option<ConnectionContext> {
    let id = ConnectionId::parse(std::str::from_utf8(id).ok()?).ok()?;
    let record: ConnectionRecord = serde_json::from_slice(record).ok()?;
    Some(record.into_context(id, &inner.api_id, &inner.stage))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn redis_error(message: String) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::other(message))
}
