//! The Redis backend of [`Cluster`](super::Cluster): nodes that share a Redis (or a Redis
//! Cluster) form one API.
//!
//! - **Routing without lookups.** At startup a node claims a random 16-bit [`NodeTag`] in Redis
//!   and writes it into the first two bytes of every connection id it assigns (nine random
//!   bytes stay: 72 bits). An `@connections` call for another node's connection is one script
//!   call ([`scripts::ROUTE`]): it checks that the owner is alive and publishes the request to
//!   the owner's inbox channel; the owner serves it from its registry and publishes the reply
//!   to the caller's inbox, which the caller's subscription receives. Dead or unknown owner:
//!   410 at once. No reply within `reply_timeout`: 504. Redis unreachable, or the owner not
//!   listening: 503 at once.
//! - **Liveness and take-over** ([`liveness`]): each node renews `sockway:{TAG}:node` every
//!   `heartbeat_interval` (TTL `node_timeout`) and keeps, per live connection, what its
//!   `$disconnect` needs ([`presence`]). Survivors claim a dead node's connections in batches
//!   with an atomic script, so each is handed to exactly one survivor, which delivers its
//!   `$disconnect` (1006, "Gateway node lost"). A connection that ends on its own node is
//!   released with another ([`RedisBackend::end`]): whoever removes the record delivers,
//!   so a node that was only cut off does not deliver what survivors claimed.
//! - **TLS.** `rediss://` URLs connect over rustls, with the CA and client certificate named
//!   by `cluster.tls_*` ([`connection`]).
//! - **Outages.** Redis unreachable: this node's own connections keep working (they never touch
//!   Redis), calls for other nodes fail fast with 503, the outage is logged once. When Redis
//!   answers again, the node claims its tag again, subscribes again and stores its live
//!   connections again.
//!
//! Concurrency: the subscription is an actor ([`inbox`]) that owns the stream of pushes; the
//! heartbeat ([`liveness`]) and the presence writer ([`presence`]) are one task each; all three
//! are owned by the backend's `TaskTracker` and stopped by [`RedisBackend::leave`]. Shared
//! state is atomics plus the map of pending replies, a `std::sync::Mutex` held for one insert or
//! remove and never across an `.await`. Every queue is bounded: a full one drops work that a
//! timeout or a full re-sync then covers, and never makes a caller wait.

mod connection;
mod inbox;
mod keys;
mod liveness;
mod presence;
mod scripts;
mod suspended;
mod wire;

pub(crate) use self::suspended::next_generation;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use redis::RedisError;
use sockway_protocol::group::GroupName;
use sockway_protocol::id::ConnectionId;
use sockway_protocol::trace::otlp::SpanKind;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use self::connection::RedisConnection;
use self::keys::NodeTag;
use self::presence::PresenceOp;
use self::wire::{Answer, Message, Refusal};
use super::command::{Outcome, Request, Target, apply, post};
use super::usage::{Counted, UsageCount};
use super::{ClusterError, Cursor, JoinError, Orphan, Page, Tally};
use crate::config::ClusterConfig;
use crate::metrics::{ClusterMetrics, RedisOperation, RemoteOutcome};
use crate::random_bytes;
use crate::registry::{ConnectionHandle, Registry};
use crate::traces::{Span, key};

/// Pushes (subscription messages) waiting for the inbox actor. Past this, requests are dropped
/// and their callers answer 504 after their timeout.
const PUSH_QUEUE: usize = 4096;
/// Presence changes waiting to be written to Redis. Past this, the node re-syncs in full.
const PRESENCE_QUEUE: usize = 4096;
/// Lost connections claimed but not yet handed to `$disconnect` delivery. The take-over claims
/// no more than there is room for.
const ORPHAN_QUEUE: usize = 256;
/// Cross-node calls waiting for their reply; past this, calls answer 503 at once.
const MAX_PENDING_REPLIES: usize = 16_384;
/// How many random tags a node tries before giving up.
const TAG_ATTEMPTS: usize = 64;
/// Connections that moved away that a node still sends callers on for; past this the oldest
/// is forgotten (a call for it then answers 410).
const MAX_MOVED_OUT: usize = 65_536;
/// How many times a call follows a connection that moved before giving up (410).
const MAX_HOPS: usize = 4;

/// Where this node's connections that moved away went, oldest first.
#[derive(Debug, Default)]
struct MovedOut {
    to: HashMap<ConnectionId, NodeTag>,
    order: VecDeque<ConnectionId>,
}

impl MovedOut {
    fn insert(&mut self, id: ConnectionId, tag: NodeTag) {
        if self.to.insert(id.clone(), tag).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > MAX_MOVED_OUT {
            if let Some(oldest) = self.order.pop_front() {
                self.to.remove(&oldest);
            }
        }
    }

    fn remove(&mut self, id: &ConnectionId) {
        if self.to.remove(id).is_some() {
            self.order.retain(|kept| kept != id);
        }
    }

    fn get(&self, id: &ConnectionId) -> Option<NodeTag> {
        self.to.get(id).copied()
    }
}

/// The Redis backend: this node's registry plus its membership in the cluster.
#[derive(Debug)]
pub(crate) struct RedisBackend {
    inner: Arc<Inner>,
    /// Lost connections this node claimed; read by [`RedisBackend::next_orphan`].
    orphans: tokio::sync::Mutex<mpsc::Receiver<Orphan>>,
    tasks: TaskTracker,
    stop: CancellationToken,
}

/// State shared by the backend and its three tasks.
#[derive(Debug)]
struct Inner {
    registry: Registry,
    /// This node's name in logs (`cluster.node_id`, or generated).
    node_id: String,
    /// The value of this node's liveness key: the node id plus a random part, so a restarted
    /// node is a new instance even with the same node id.
    instance: String,
    /// The current tag; it changes only when Redis lost the old one to another node.
    tag: AtomicU16,
    connection: RedisConnection,
    /// Whether Redis answered the last call. Cross-node calls fail fast while it is false.
    healthy: AtomicBool,
    /// Whether this node's inbox subscription is known to work.
    subscribed: AtomicBool,
    /// Cross-node calls waiting for their reply, by correlation number.
    pending: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
    /// `[resume]`: connections of other tags that moved here; their records are under this
    /// node's tag. A `std::sync::Mutex` held for one lookup, insert or remove.
    moved_in: Mutex<HashSet<ConnectionId>>,
    /// `[resume]`: connections of this node's tag that moved to another node, and where they
    /// went, so that callers who route by the tag are sent on; bounded by
    /// [`MAX_MOVED_OUT`] (the oldest is forgotten first), held like `moved_in`.
    moved_out: Mutex<MovedOut>,
    next_correlation: AtomicU64,
    presence: mpsc::Sender<PresenceOp>,
    /// Set when Redis's copy of this node's connections may be wrong (after an outage, a full
    /// queue, or a new tag); the presence writer then rewrites it from the registry.
    resync: AtomicBool,
    resync_wake: Notify,
    node_timeout: Duration,
    heartbeat_interval: Duration,
    /// How long one Redis call may take before it counts as failed.
    operation_timeout: Duration,
    /// How long a cross-node call waits for the owner's reply before answering 504.
    reply_timeout: Duration,
    api_id: String,
    stage: String,
    metrics: ClusterMetrics,
    /// The gateway's shutdown: ending connections stop waiting for an unreachable Redis.
    shutdown: CancellationToken,
    /// Where lost connections whose `$disconnect` this node delivers go.
    orphan_sender: mpsc::Sender<Orphan>,
    /// The backend's tasks (the three above and `[resume]`'s waits for lost suspended
    /// connections' windows); `stop` ends them.
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl RedisBackend {
    /// Connects, claims a node tag, subscribes to the node's inbox and starts the inbox actor,
    /// the heartbeat and the presence writer.
    pub(crate) async fn start(
        config: &ClusterConfig,
        api_id: &str,
        stage: &str,
        metrics: ClusterMetrics,
        shutdown: CancellationToken,
    ) -> Result<RedisBackend, JoinError> {
        let node_timeout = config.node_timeout;
        let operation_timeout = config
            .heartbeat_interval
            .max(Duration::from_secs(1))
            .min(node_timeout / 2);
        let reply_timeout = (node_timeout / 2).min(Duration::from_secs(5));
        let tls =
            match &config.redis_tls {
                Some(files) => Some(connection::tls_certificates(files).map_err(|error| {
                    join_error(&error.to_string(), RedisError::from(error.source))
                })?),
                None => None,
            };
        let over_tls = config
            .redis_urls
            .iter()
            .any(|url| url.starts_with("rediss://"));
        let operation = if over_tls {
            "connect to Redis over TLS (rediss://)"
        } else {
            "connect to Redis"
        };
        let (push_sender, pushes) = mpsc::channel(PUSH_QUEUE);
        let connect = RedisConnection::connect(
            &config.redis_urls,
            config.redis_password.as_deref(),
            tls,
            operation_timeout,
            push_sender,
        );
        let mut connection = tokio::time::timeout(node_timeout, connect)
            .await
            .map_err(|_| join_error(operation, timed_out()))?
            .map_err(|source| join_error(operation, source))?;

        let node_id = config.node_id.clone().unwrap_or_else(|| {
            let random: [u8; 3] = random_bytes();
            format!("node-{}", hex::encode(random))
        });
        let nonce: [u8; 8] = random_bytes();
        let instance = format!("{node_id}/{}", hex::encode(nonce));
        let tag = liveness::claim_tag(&mut connection, &instance, node_timeout)
            .await?
            .ok_or(JoinError::NoFreeTag {
                attempts: TAG_ATTEMPTS,
            })?;
        liveness::announce(&mut connection, tag)
            .await
            .map_err(|source| join_error("add the node to the directory", source))?;
        connection
            .subscribe(&tag.inbox_channel())
            .await
            .map_err(|source| join_error("subscribe to the node's inbox", source))?;

        let (presence_sender, presence_receiver) = mpsc::channel(PRESENCE_QUEUE);
        let (orphan_sender, orphan_receiver) = mpsc::channel(ORPHAN_QUEUE);
        let tasks = TaskTracker::new();
        let stop = CancellationToken::new();
        let inner = Arc::new(Inner {
            registry: Registry::default(),
            node_id,
            instance,
            tag: AtomicU16::new(tag.0),
            connection,
            healthy: AtomicBool::new(true),
            subscribed: AtomicBool::new(true),
            pending: Mutex::new(HashMap::new()),
            moved_in: Mutex::new(HashSet::new()),
            moved_out: Mutex::new(MovedOut::default()),
            next_correlation: AtomicU64::new(0),
            presence: presence_sender,
            resync: AtomicBool::new(false),
            resync_wake: Notify::new(),
            node_timeout,
            heartbeat_interval: config.heartbeat_interval,
            operation_timeout,
            reply_timeout,
            api_id: api_id.to_owned(),
            stage: stage.to_owned(),
            metrics,
            shutdown: shutdown.clone(),
            orphan_sender,
            tasks: tasks.clone(),
            stop: stop.clone(),
        });
        inner.metrics.redis_up.set(1);
        info!(node = %inner.node_id, tag = %tag.to_hex(), "joined the cluster");
        tasks.spawn(inbox::run(inner.clone(), pushes, stop.clone()));
        tasks.spawn(liveness::run(inner.clone(), shutdown, stop.clone()));
        tasks.spawn(presence::run(
            inner.clone(),
            presence_receiver,
            stop.clone(),
        ));
        Ok(RedisBackend {
            inner,
            orphans: tokio::sync::Mutex::new(orphan_receiver),
            tasks,
            stop,
        })
    }

    /// A connection id carrying this node's tag.
    pub(crate) fn new_connection_id(&self) -> ConnectionId {
        self.inner.tag().connection_id(random_bytes())
    }

    /// Adds a connection (a member of `groups`) to the registry and, in the background, to
    /// Redis.
    pub(crate) fn register(&self, handle: ConnectionHandle, groups: &[GroupName]) -> bool {
        let context = handle.context.clone();
        let tag = NodeTag::of(handle.id());
        if !self.inner.registry.insert(handle, groups) {
            return false;
        }
        self.inner
            .queue_presence(PresenceOp::Register(context, tag));
        true
    }

    /// Adds a connection that moved here from another node (`[resume]`): like
    /// [`RedisBackend::register`], but its record goes under this node's tag rather than the
    /// one in its id, so that this node's loss ends it.
    pub(crate) fn register_moved(&self, handle: ConnectionHandle, groups: &[GroupName]) -> bool {
        let context = handle.context.clone();
        let id = handle.id().clone();
        self.inner.moved_in_ids().insert(id.clone());
        if !self.inner.registry.insert(handle, groups) {
            self.inner.moved_in_ids().remove(&id);
            return false;
        }
        self.inner.moved_out_ids().remove(&id);
        self.inner
            .queue_presence(PresenceOp::Register(context, self.inner.tag()));
        true
    }

    /// Removes a connection from the registry and, in the background, from Redis.
    pub(crate) fn remove(&self, id: &ConnectionId) {
        if self.inner.registry.remove(id) {
            let tag = self.inner.record_tag(id);
            self.inner.moved_in_ids().remove(id);
            self.inner
                .queue_presence(PresenceOp::Unregister(id.clone(), tag));
        }
    }

    /// Runs `request`: for a connection of this node, from the registry at once; for another
    /// node's connection, through that node's inbox; for every node, on all of them, combining
    /// their answers.
    /// With a `parent` span, each call to another node is a `cluster delivery` child of it.
    pub(crate) async fn call(
        &self,
        request: Request,
        parent: Option<&Span>,
    ) -> Result<Outcome, ClusterError> {
        // A hand-over is asked of the node holding the connection, never of this one: its
        // first step finds that node through the id's tag (following moves), its second goes
        // to the node that answered the first.
        match &request {
            Request::HandOver { connection_id, .. } => {
                let connection_id = connection_id.clone();
                return self.inner.call_owner(connection_id, request, parent).await;
            }
            Request::CompleteHandOver {
                connection_id,
                node,
            } => {
                let connection_id = connection_id.clone();
                return match self.inner.call(NodeTag(*node), request, parent).await {
                    Ok(Ok(outcome)) => Ok(outcome),
                    Ok(Err(refusal)) => Err(refusal.into_error(connection_id)),
                    Err(CallError::NodeGone) => Err(ClusterError::Gone(connection_id)),
                    Err(CallError::Unavailable) => Err(ClusterError::Unavailable(connection_id)),
                    Err(CallError::Timeout) => Err(ClusterError::Timeout(connection_id)),
                };
            }
            _ => {}
        }
        let connection_id = match request.target() {
            // A connection that moved here (`[resume]`) is served here too, whatever its tag.
            Target::Connection(connection_id)
                if self.inner.owns(connection_id)
                    || self.inner.registry.get(connection_id).is_some() =>
            {
                let retry = request.clone();
                let applied = match request {
                    Request::Post {
                        connection_id,
                        payload,
                    } => self.inner.post_here(connection_id, payload).await,
                    other => apply(&self.inner.registry, other),
                };
                return match applied {
                    // It moved away from here since the check above (`[resume]`).
                    Err(ClusterError::Gone(connection_id)) => {
                        let moved_to = self.inner.moved_out_ids().get(&connection_id);
                        match moved_to {
                            Some(tag) => {
                                self.inner
                                    .call_from(tag, connection_id, retry, parent)
                                    .await
                            }
                            None => Err(ClusterError::Gone(connection_id)),
                        }
                    }
                    other => other,
                };
            }
            Target::Connection(connection_id) => connection_id.clone(),
            Target::EveryNode => {
                // Each request for every node has its own rule for combining the answers.
                return match request {
                    Request::Broadcast { group, payload } => self
                        .broadcast(group, payload, parent)
                        .await
                        .map(Outcome::Tally),
                    Request::List {
                        group,
                        cursor,
                        limit,
                    } => self
                        .list(group, cursor, limit, parent)
                        .await
                        .map(Outcome::Page),
                    other => unreachable!(
                        "a request for every node needs a rule for combining the answers: {other:?}"
                    ),
                };
            }
        };
        self.inner.call_owner(connection_id, request, parent).await
    }

    /// Queues `payload` for the members of `group` (all connections when `None`) on this node
    /// at once and on every other live node through its inbox, all nodes at the same time.
    /// Answers with the sum of what the nodes did; a node that could not be reached makes the
    /// result [`ClusterError::Incomplete`], carrying what the others did.
    async fn broadcast(
        &self,
        group: Option<GroupName>,
        payload: Bytes,
        parent: Option<&Span>,
    ) -> Result<Tally, ClusterError> {
        let request = Request::Broadcast { group, payload };
        let own = self.inner.tag();
        let mut tally = match self.on_node(own, request.clone(), None).await {
            Ok(Ok(Outcome::Tally(tally))) => tally,
            _ => Tally::default(),
        };
        let Some(nodes) = self.inner.live_tags().await else {
            return Err(ClusterError::Incomplete {
                timed_out: false,
                reached: Some(tally),
            });
        };
        let calls = nodes
            .into_iter()
            .filter(|tag| *tag != own)
            .map(|tag| self.inner.call(tag, request.clone(), parent));
        let mut missed = None;
        for answer in futures_util::future::join_all(calls).await {
            match answer {
                Ok(Ok(Outcome::Tally(node))) => tally += node,
                // The node died since the directory was read: its connections are gone too.
                Err(CallError::NodeGone) => {}
                Err(CallError::Timeout) => missed = Some(true),
                Err(CallError::Unavailable) | Ok(_) => {
                    missed.get_or_insert(false);
                }
            }
        }
        match missed {
            None => Ok(tally),
            Some(timed_out) => Err(ClusterError::Incomplete {
                timed_out,
                reached: Some(tally),
            }),
        }
    }

    /// A page of open connections across the cluster: nodes in tag order, each node's
    /// connections in id order, starting at `cursor`.
    async fn list(
        &self,
        group: Option<GroupName>,
        cursor: Option<Cursor>,
        limit: usize,
        parent: Option<&Span>,
    ) -> Result<Page, ClusterError> {
        let own = self.inner.tag();
        let mut nodes = self
            .inner
            .live_tags()
            .await
            .ok_or(ClusterError::Incomplete {
                timed_out: false,
                reached: None,
            })?;
        if !nodes.contains(&own) {
            nodes.push(own);
        }
        nodes.sort_unstable_by_key(|tag| tag.0);
        let start = cursor.as_ref().map_or(0, |cursor| cursor.node);
        let nodes: Vec<NodeTag> = nodes.into_iter().filter(|tag| tag.0 >= start).collect();
        let mut items = Vec::with_capacity(limit.min(1024));
        for (index, tag) in nodes.iter().enumerate() {
            let after = cursor
                .as_ref()
                .filter(|cursor| cursor.node == tag.0)
                .and_then(|cursor| cursor.after.clone());
            let want = limit - items.len();
            let request = Request::List {
                group: group.clone(),
                cursor: Some(Cursor { node: tag.0, after }),
                limit: want,
            };
            let (page, more) = match self.on_node(*tag, request, parent).await {
                Ok(Ok(Outcome::Page(mut page))) => {
                    page.items.truncate(want);
                    (page.items, page.next.is_some())
                }
                Err(CallError::NodeGone) => continue,
                Err(error) => {
                    return Err(ClusterError::Incomplete {
                        timed_out: matches!(error, CallError::Timeout),
                        reached: None,
                    });
                }
                Ok(answer) => {
                    warn!(answer = ?answer, "unexpected reply to a list request");
                    return Err(ClusterError::Incomplete {
                        timed_out: false,
                        reached: None,
                    });
                }
            };
            items.extend(page);
            if items.len() >= limit {
                let next = if more {
                    Some(Cursor {
                        node: tag.0,
                        after: items.last().map(|item| item.connection_id.clone()),
                    })
                } else {
                    nodes.get(index + 1).map(|next| Cursor {
                        node: next.0,
                        after: None,
                    })
                };
                return Ok(Page { items, next });
            }
        }
        Ok(Page { items, next: None })
    }

    /// Serves `request` on the node tagged `tag`: this node's part from the registry at once,
    /// another node's through its inbox.
    async fn on_node(
        &self,
        tag: NodeTag,
        request: Request,
        parent: Option<&Span>,
    ) -> Result<Answer, CallError> {
        if tag == self.inner.tag() {
            Ok(apply(&self.inner.registry, request).map_err(|error| Refusal::from_error(&error)))
        } else {
            self.inner.call(tag, request, parent).await
        }
    }

    /// Removes this node's ended connection `id` from the registry and its record from Redis,
    /// and answers whether this node delivers its `$disconnect` ([`scripts::RELEASE`]): false
    /// when survivors took it over while this node was cut off (or, `[resume]`, took its
    /// suspended record). The record's tag is read first: for a connection that moved here it
    /// is this node's, which the registry forgets with the connection. While Redis is unreachable it asks again every
    /// `heartbeat_interval`; once the gateway shuts down it asks one last time, and without an
    /// answer leaves the record (and the `$disconnect`) to whichever node takes this one over.
    pub(crate) async fn end(&self, id: &ConnectionId) -> bool {
        // The tag its record is under, read before the removal forgets that it moved here.
        let tag = self.inner.record_tag(id);
        self.remove(id);
        let inner = &self.inner;
        loop {
            let shutting_down = inner.shutdown.is_cancelled();
            if inner.is_healthy() || shutting_down {
                let mut connection = inner.connection.clone();
                let mut release = scripts::RELEASE.prepare_invoke();
                release
                    .key(tag.connections_key())
                    .key(tag.claimed_key())
                    .arg(id.as_str());
                let released = tokio::time::timeout(
                    inner.operation_timeout,
                    inner.timed(
                        RedisOperation::Release,
                        release.invoke_async::<i64>(&mut connection),
                    ),
                )
                .await;
                match released {
                    Ok(Ok(1)) => return true,
                    Ok(Ok(_)) => {
                        inner.metrics.disconnects_skipped.inc();
                        info!(node = %inner.node_id, connection_id = %id, "the connection was taken over while this node was cut off from Redis; its $disconnect was delivered by the node that took it over");
                        return false;
                    }
                    Ok(Err(error)) => inner.mark_down(&error),
                    Err(_) => inner.mark_down(&"removing a connection record timed out"),
                }
            }
            if shutting_down {
                warn!(node = %inner.node_id, connection_id = %id, "Redis is unreachable while shutting down; this connection's $disconnect is left to the node that takes this one over");
                return false;
            }
            tokio::select! {
                _ = tokio::time::sleep(inner.heartbeat_interval) => {}
                _ = inner.shutdown.cancelled() => {}
            }
        }
    }

    /// The next lost connection this node claimed; `None` after [`RedisBackend::leave`].
    pub(crate) async fn next_orphan(&self) -> Option<Orphan> {
        self.orphans.lock().await.recv().await
    }

    /// A lost connection already claimed, without waiting.
    pub(crate) fn claimed_orphan(&self) -> Option<Orphan> {
        self.orphans.try_lock().ok()?.try_recv().ok()
    }

    /// Stops the tasks, then removes this node's keys and directory entry: its connections
    /// have already had their `$disconnect`, so nothing is left for survivors.
    pub(crate) async fn leave(&self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        let tag = self.inner.tag();
        let mut connection = self.inner.connection.clone();
        let left = tokio::time::timeout(
            self.inner.operation_timeout,
            self.inner.timed(RedisOperation::Leave, async {
                let _ = connection.unsubscribe(&tag.inbox_channel()).await;
                liveness::withdraw(&mut connection, tag, &self.inner.instance).await
            }),
        )
        .await;
        match left {
            Ok(Ok(())) => info!(node = %self.inner.node_id, "left the cluster"),
            Ok(Err(error)) => {
                warn!(node = %self.inner.node_id, error = %error, "could not remove this node from Redis; its keys expire after node_timeout")
            }
            Err(_) => {
                warn!(node = %self.inner.node_id, "Redis did not answer while leaving; this node's keys expire after node_timeout")
            }
        }
    }

    /// Counts one use of an API key in Redis ([`scripts::COUNT_USAGE`], one round trip).
    /// Fails at once while Redis is known to be unreachable.
    pub(crate) async fn count_usage(
        &self,
        count: &UsageCount<'_>,
    ) -> Result<Counted, ClusterError> {
        let inner = &self.inner;
        if !inner.is_healthy() {
            return Err(ClusterError::UsageUnavailable);
        }
        let mut connection = inner.connection.clone();
        let mut invocation = scripts::COUNT_USAGE.prepare_invoke();
        invocation
            .key(keys::usage_key(count.key_id, count.period))
            .arg(count.limit.min(i64::MAX as u64))
            .arg(count.expires_at);
        let counted = tokio::time::timeout(
            inner.operation_timeout,
            inner.timed(
                RedisOperation::Usage,
                invocation.invoke_async::<i64>(&mut connection),
            ),
        )
        .await;
        match counted {
            Ok(Ok(used)) if used >= 0 => Ok(Counted::Within(used.unsigned_abs())),
            Ok(Ok(refused)) => Ok(Counted::Exhausted((refused + 1).unsigned_abs())),
            Ok(Err(error)) => {
                inner.mark_down(&error);
                Err(ClusterError::UsageUnavailable)
            }
            Err(_elapsed) => Err(ClusterError::UsageUnavailable),
        }
    }

    /// The uses of an API key counted in Redis for `period`.
    pub(crate) async fn usage(&self, key_id: &str, period: &str) -> Result<u64, ClusterError> {
        let inner = &self.inner;
        if !inner.is_healthy() {
            return Err(ClusterError::UsageUnavailable);
        }
        let mut connection = inner.connection.clone();
        let mut get = redis::cmd("GET");
        get.arg(keys::usage_key(key_id, period));
        let read = tokio::time::timeout(
            inner.operation_timeout,
            inner.timed(
                RedisOperation::Usage,
                get.query_async::<Option<u64>>(&mut connection),
            ),
        )
        .await;
        match read {
            Ok(Ok(used)) => Ok(used.unwrap_or(0)),
            Ok(Err(error)) => {
                inner.mark_down(&error);
                Err(ClusterError::UsageUnavailable)
            }
            Err(_elapsed) => Err(ClusterError::UsageUnavailable),
        }
    }

    /// Connections open on this node.
    pub(crate) fn local_connection_count(&self) -> usize {
        self.inner.registry.len()
    }

    /// The handle of a connection this node holds.
    pub(crate) fn local_handle(&self, id: &ConnectionId) -> Option<ConnectionHandle> {
        self.inner.registry.get(id)
    }

    /// This node's id: `cluster.node_id`, or the one made up when it joined.
    pub(crate) fn node_id(&self) -> &str {
        &self.inner.node_id
    }
}

impl Inner {
    /// Serves a post to a connection this node holds; one queued for a suspended connection
    /// is also appended to its queue in Redis before it is answered (`[resume]`).
    async fn post_here(
        &self,
        connection_id: ConnectionId,
        payload: Bytes,
    ) -> Result<Outcome, ClusterError> {
        let id = connection_id.clone();
        if let Some(generation) = post(&self.registry, connection_id, payload.clone())? {
            self.append_own(&id, generation, &payload).await;
        }
        Ok(Outcome::Done)
    }

    fn tag(&self) -> NodeTag {
        NodeTag(self.tag.load(Ordering::Acquire))
    }

    /// Whether `id` was assigned under this node's current tag.
    fn owns(&self, id: &ConnectionId) -> bool {
        NodeTag::of(id) == self.tag()
    }

    /// The tag under which this node keeps the record of its connection `id`: its own for a
    /// connection that moved here, else the one in the id.
    fn record_tag(&self, id: &ConnectionId) -> NodeTag {
        if self.moved_in_ids().contains(id) {
            self.tag()
        } else {
            NodeTag::of(id)
        }
    }

    fn moved_in_ids(&self) -> std::sync::MutexGuard<'_, HashSet<ConnectionId>> {
        self.moved_in
            .lock()
            .expect("moved_in lock is never poisoned")
    }

    fn moved_out_ids(&self) -> std::sync::MutexGuard<'_, MovedOut> {
        self.moved_out
            .lock()
            .expect("moved_out lock is never poisoned")
    }

    fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Runs one Redis round trip of `operation`, recording it and its latency.
    async fn timed<T>(&self, operation: RedisOperation, call: impl Future<Output = T>) -> T {
        let started = tokio::time::Instant::now();
        let result = call.await;
        self.metrics.redis_call(operation, started.elapsed());
        result
    }

    /// Records that Redis failed; logs only the first failure of an outage.
    fn mark_down(&self, error: &dyn std::fmt::Display) {
        self.resync.store(true, Ordering::Release);
        if self.healthy.swap(false, Ordering::AcqRel) {
            self.metrics.redis_outages.inc();
            self.metrics.redis_up.set(0);
            warn!(
                node = %self.node_id,
                error = %error,
                "Redis is unreachable: connections on this node keep working; @connections calls for other nodes answer 503 until it is back"
            );
        }
    }

    /// Records that Redis answered; returns whether an outage just ended.
    fn mark_up(&self) -> bool {
        let recovered = !self.healthy.swap(true, Ordering::AcqRel);
        if recovered {
            self.metrics.redis_up.set(1);
            info!(node = %self.node_id, "Redis is reachable again; re-registering this node's connections");
        }
        recovered
    }

    /// Asks the presence writer to rewrite this node's connections in Redis.
    fn request_resync(&self) {
        self.resync.store(true, Ordering::Release);
        self.resync_wake.notify_one();
    }

    /// Hands a presence change to the writer without waiting; a full queue turns into a
    /// full re-sync, which covers every change that could not be queued.
    fn queue_presence(&self, op: PresenceOp) {
        if self.presence.try_send(op).is_err() {
            self.request_resync();
        }
    }

    /// Sends `request` to the node that holds `connection_id` and waits for its answer: a
    /// refusal becomes the matching error, as does a call that got no answer.
    async fn call_owner(
        &self,
        connection_id: ConnectionId,
        request: Request,
        parent: Option<&Span>,
    ) -> Result<Outcome, ClusterError> {
        self.call_from(NodeTag::of(&connection_id), connection_id, request, parent)
            .await
    }

    /// [`Inner::call_owner`], asking `target` first.
    async fn call_from(
        &self,
        mut target: NodeTag,
        connection_id: ConnectionId,
        request: Request,
        parent: Option<&Span>,
    ) -> Result<Outcome, ClusterError> {
        let mut hops = 0;
        let mut looked_up = false;
        let answer = loop {
            match self.call(target, request.clone(), parent).await {
                // The connection moved (`[resume]`): follow it, a few hops at most.
                Ok(Err(Refusal::Moved(to))) if hops < MAX_HOPS => {
                    hops += 1;
                    target = NodeTag(to);
                }
                // The node asked is gone, or not listening (dead, but not yet known to be): the
                // connection may have moved on from it (`[resume]`), and Redis says where (one
                // more round trip, only in this case, once).
                Err(error @ (CallError::NodeGone | CallError::Unavailable))
                    if !looked_up && self.is_healthy() =>
                {
                    looked_up = true;
                    match self.moved_to(&connection_id).await {
                        Some(to) if to != target && hops < MAX_HOPS => {
                            hops += 1;
                            target = to;
                        }
                        _ => break Err(error),
                    }
                }
                answer => break answer,
            }
        };
        match answer {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(refusal)) => Err(refusal.into_error(connection_id)),
            // `[resume]`: the node holding it is dead, but it may be suspended, waiting for a
            // resume on a survivor.
            Err(CallError::NodeGone) => match request {
                Request::Post { payload, .. } => self
                    .append_orphaned(target, &connection_id, &payload)
                    .await
                    .map(|()| Outcome::Done),
                Request::Delete { .. } if self.delete_orphaned(target, &connection_id).await => {
                    Ok(Outcome::Done)
                }
                _ => Err(ClusterError::Gone(connection_id)),
            },
            Err(CallError::Unavailable) => Err(ClusterError::Unavailable(connection_id)),
            Err(CallError::Timeout) => Err(ClusterError::Timeout(connection_id)),
        }
    }

    /// Sends `request` to the node tagged `target` and waits for its answer, recording how
    /// the call ended.
    /// With a `parent` span, the call is a `cluster delivery` child of it, which fails when
    /// the node could not be reached or did not answer.
    async fn call(
        &self,
        target: NodeTag,
        request: Request,
        parent: Option<&Span>,
    ) -> Result<Answer, CallError> {
        let mut span = parent.map(|parent| {
            let mut span = parent.child("cluster delivery", SpanKind::Client);
            span.set(key::NODE, target.to_hex());
            span
        });
        let answer = self.call_unrecorded(target, request).await;
        let outcome = match &answer {
            Ok(Err(Refusal::Gone)) | Err(CallError::NodeGone) => RemoteOutcome::Gone,
            Ok(_) => RemoteOutcome::Ok,
            Err(CallError::Timeout) => RemoteOutcome::Timeout,
            Err(CallError::Unavailable) => RemoteOutcome::Unavailable,
        };
        self.metrics.remote_call(outcome);
        if let Some(span) = &mut span {
            match &answer {
                Ok(Ok(_)) => {}
                // The owner answered: the connection is gone or full, which is the caller's
                // answer, not a failed delivery.
                Ok(Err(refusal)) => span.set(key::ERROR_TYPE, format!("{refusal:?}")),
                Err(error) => {
                    span.set(key::ERROR_TYPE, format!("{error:?}"));
                    span.fail(format!("node {}: {error:?}", target.to_hex()));
                }
            }
        }
        answer
    }

    async fn call_unrecorded(
        &self,
        target: NodeTag,
        request: Request,
    ) -> Result<Answer, CallError> {
        if !self.is_healthy() || !self.subscribed.load(Ordering::Acquire) {
            return Err(CallError::Unavailable);
        }
        let correlation = self.next_correlation.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        {
            let mut pending = self.pending.lock().expect("pending lock is never poisoned");
            if pending.len() >= MAX_PENDING_REPLIES {
                return Err(CallError::Unavailable);
            }
            pending.insert(correlation, sender);
        }
        let _pending = PendingReply {
            inner: self,
            correlation,
        };
        let message = Message::Request {
            correlation,
            reply_to: self.tag(),
            request,
        }
        .encode();
        let deadline = tokio::time::Instant::now() + self.reply_timeout;
        let mut connection = self.connection.clone();
        let publish = connection.publish_command();
        let mut route = scripts::ROUTE.prepare_invoke();
        route
            .key(target.node_key())
            .arg(target.inbox_channel())
            .arg(message.as_ref())
            .arg(publish);
        let routed = tokio::time::timeout_at(
            deadline,
            self.timed(
                RedisOperation::Route,
                route.invoke_async::<i64>(&mut connection),
            ),
        )
        .await;
        match routed {
            Err(_elapsed) => return Err(CallError::Timeout),
            Ok(Err(error)) => {
                self.mark_down(&error);
                return Err(CallError::Unavailable);
            }
            Ok(Ok(-1)) => return Err(CallError::NodeGone),
            Ok(Ok(0)) => return Err(CallError::Unavailable),
            Ok(Ok(_receivers)) => {}
        }
        match tokio::time::timeout_at(deadline, receiver).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) | Err(_) => Err(CallError::Timeout),
        }
    }

    /// Where a connection whose first node is gone moved to (`[resume]`), if it did.
    async fn moved_to(&self, connection_id: &ConnectionId) -> Option<NodeTag> {
        let mut connection = self.connection.clone();
        let mut get = redis::cmd("GET");
        get.arg(NodeTag::of(connection_id).moved_key(connection_id));
        let read = tokio::time::timeout(
            self.operation_timeout,
            self.timed(
                RedisOperation::Moved,
                get.query_async::<Option<String>>(&mut connection),
            ),
        )
        .await;
        match read {
            Ok(Ok(tag)) => tag.as_deref().and_then(NodeTag::parse),
            Ok(Err(error)) => {
                self.mark_down(&error);
                None
            }
            Err(_elapsed) => None,
        }
    }

    /// The tags of the nodes in the directory (live, or dead and not yet taken over; a call
    /// to a dead one answers [`CallError::NodeGone`]).
    async fn live_tags(&self) -> Option<Vec<NodeTag>> {
        if !self.is_healthy() {
            return None;
        }
        let mut connection = self.connection.clone();
        let mut members = redis::cmd("SMEMBERS");
        members.arg(keys::DIRECTORY);
        let members = tokio::time::timeout(
            self.operation_timeout,
            self.timed(
                RedisOperation::Directory,
                members.query_async::<Vec<String>>(&mut connection),
            ),
        )
        .await;
        match members {
            Ok(Ok(members)) => Some(
                members
                    .iter()
                    .filter_map(|member| NodeTag::parse(member))
                    .collect(),
            ),
            Ok(Err(error)) => {
                self.mark_down(&error);
                None
            }
            Err(_elapsed) => None,
        }
    }

    /// Completes the cross-node call waiting for `correlation`, if it still waits.
    fn complete(&self, correlation: u64, answer: Answer) {
        let sender = self
            .pending
            .lock()
            .expect("pending lock is never poisoned")
            .remove(&correlation);
        if let Some(sender) = sender {
            let _ = sender.send(answer);
        }
    }
}

/// Why a call to another node got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallError {
    /// The node is dead or unknown: its connections are gone.
    NodeGone,
    /// Redis is unreachable, or the node is not listening: nothing was delivered.
    Unavailable,
    /// The node did not answer in time: the request may or may not have been acted on.
    Timeout,
}

/// Removes a call's entry from the pending map on every exit path (reply, timeout, error).
struct PendingReply<'a> {
    inner: &'a Inner,
    correlation: u64,
}

impl Drop for PendingReply<'_> {
    fn drop(&mut self) {
        self.inner
            .pending
            .lock()
            .expect("pending lock is never poisoned")
            .remove(&self.correlation);
    }
}

fn join_error(operation: &str, source: RedisError) -> JoinError {
    JoinError::Redis {
        operation: operation.to_owned(),
        source,
    }
}

fn timed_out() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "Redis did not answer within cluster.node_timeout",
    ))
}
