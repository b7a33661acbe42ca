//! The cluster's metrics: peers, Redis round trips and their latency, calls to other nodes,
//! take-overs, and Redis outages.
//!
//! Registered only when `[cluster]` is configured. Every handle is created once, at startup:
//! a Redis round trip or a remote call picks its pre-built handle by the index of a closed enum
//! and never builds a label set. This module records; `gateway::cluster` decides.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Latency buckets of one Redis round trip, in milliseconds: from a loopback Redis to the
/// largest `node_timeout / 2` a call may take.
const REDIS_LATENCY_BUCKETS_MS: [f64; 13] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0, 5000.0,
];

/// What a Redis round trip was for: the `operation` label of `sockway_redis_commands_total`
/// and `sockway_redis_latency_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RedisOperation {
    /// Claiming a node tag.
    Join,
    /// The heartbeat script.
    Heartbeat,
    /// Adding the node to the directory, or reading it.
    Directory,
    /// Subscribing to (or leaving) the node's inbox.
    Subscribe,
    /// Publishing a request to another node's inbox.
    Route,
    /// Publishing the reply to another node's request.
    Reply,
    /// Writing connection records.
    Presence,
    /// Taking a dead node's connections over.
    Claim,
    /// Deciding who delivers an ended connection's `$disconnect`.
    Release,
    /// Leaving the cluster.
    Leave,
    /// Counting or reading an API key's usage.
    Usage,
    /// Looking up where a connection moved (`[resume]`), when the node that assigned its id is
    /// gone.
    Moved,
    /// A suspended connection's record and queue (`[resume]`): written at suspension, appended
    /// to, read and taken.
    Suspended,
}

impl RedisOperation {
    const ALL: [RedisOperation; 13] = [
        RedisOperation::Join,
        RedisOperation::Heartbeat,
        RedisOperation::Directory,
        RedisOperation::Subscribe,
        RedisOperation::Route,
        RedisOperation::Reply,
        RedisOperation::Presence,
        RedisOperation::Claim,
        RedisOperation::Release,
        RedisOperation::Leave,
        RedisOperation::Usage,
        RedisOperation::Moved,
        RedisOperation::Suspended,
    ];

    fn as_str(self) -> &'static str {
        match self {
            RedisOperation::Join => "join",
            RedisOperation::Heartbeat => "heartbeat",
            RedisOperation::Directory => "directory",
            RedisOperation::Subscribe => "subscribe",
            RedisOperation::Route => "route",
            RedisOperation::Reply => "reply",
            RedisOperation::Presence => "presence",
            RedisOperation::Claim => "claim",
            RedisOperation::Release => "release",
            RedisOperation::Leave => "leave",
            RedisOperation::Usage => "usage",
            RedisOperation::Moved => "moved",
            RedisOperation::Suspended => "suspended",
        }
    }
}

/// How a call to another node ended: the `outcome` label of
/// `sockway_cluster_remote_calls_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RemoteOutcome {
    /// The owner answered (done, a snapshot, a page, a full queue...).
    Ok,
    /// The owner is dead or unknown, or does not hold the connection (410).
    Gone,
    /// The owner did not answer in time (504).
    Timeout,
    /// Redis or the owner's inbox could not be reached (503).
    Unavailable,
}

impl RemoteOutcome {
    const ALL: [RemoteOutcome; 4] = [
        RemoteOutcome::Ok,
        RemoteOutcome::Gone,
        RemoteOutcome::Timeout,
        RemoteOutcome::Unavailable,
    ];

    fn as_str(self) -> &'static str {
        match self {
            RemoteOutcome::Ok => "ok",
            RemoteOutcome::Gone => "gone",
            RemoteOutcome::Timeout => "timeout",
            RemoteOutcome::Unavailable => "unavailable",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// The cluster's metric handles; cheap to clone (every handle is shared).
#[derive(Clone, Debug)]
pub(crate) struct ClusterMetrics {
    /// `sockway_cluster_peers`: other nodes alive in the directory at the last scan.
    pub(crate) peers: Gauge,
    /// `sockway_cluster_claimed_connections_total`: connections of dead nodes this node took
    /// over (and delivers `$disconnect` for).
    pub(crate) claimed: Counter,
    /// `sockway_cluster_disconnects_skipped_total`: connections of this node whose
    /// `$disconnect` it did not deliver because another node had taken them over.
    pub(crate) disconnects_skipped: Counter,
    /// `sockway_redis_outages_total`: times Redis became unreachable.
    pub(crate) redis_outages: Counter,
    /// `sockway_redis_up`: 1 while Redis answers, 0 during an outage.
    pub(crate) redis_up: Gauge,
    families: Families,
    redis_commands: [Counter; RedisOperation::ALL.len()],
    redis_latency: [Histogram; RedisOperation::ALL.len()],
    remote_calls: [Counter; RemoteOutcome::ALL.len()],
}

/// The labelled families, kept to register them.
#[derive(Clone, Debug)]
struct Families {
    redis_commands: Family<OperationLabels, Counter>,
    redis_latency: Family<OperationLabels, Histogram>,
    remote_calls: Family<OutcomeLabels, Counter>,
}

impl ClusterMetrics {
    /// Every handle, with each label of the closed sets created up front (so a series exists,
    /// at 0, from the first scrape).
    pub(crate) fn new() -> ClusterMetrics {
        let families = Families {
            redis_commands: Family::default(),
            redis_latency: Family::new_with_constructor(redis_latency_histogram),
            remote_calls: Family::default(),
        };
        // One statement per handle: `get_or_create` returns a read guard on the family.
        let redis_commands = RedisOperation::ALL.map(|operation| {
            let labels = OperationLabels {
                operation: operation.as_str(),
            };
            families.redis_commands.get_or_create(&labels).clone()
        });
        let redis_latency = RedisOperation::ALL.map(|operation| {
            let labels = OperationLabels {
                operation: operation.as_str(),
            };
            families.redis_latency.get_or_create(&labels).clone()
        });
        let remote_calls = RemoteOutcome::ALL.map(|outcome| {
            let labels = OutcomeLabels {
                outcome: outcome.as_str(),
            };
            families.remote_calls.get_or_create(&labels).clone()
        });
        ClusterMetrics {
            peers: Gauge::default(),
            claimed: Counter::default(),
            disconnects_skipped: Counter::default(),
            redis_outages: Counter::default(),
            redis_up: Gauge::default(),
            families,
            redis_commands,
            redis_latency,
            remote_calls,
        }
    }

    /// Adds every family to `registry`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "sockway_cluster_peers",
            "Other cluster nodes alive at the last scan of the directory",
            self.peers.clone(),
        );
        registry.register(
            "sockway_cluster_remote_calls",
            "Calls to other nodes for their connections, by outcome",
            self.families.remote_calls.clone(),
        );
        registry.register(
            "sockway_cluster_claimed_connections",
            "Connections of dead nodes taken over by this node",
            self.claimed.clone(),
        );
        registry.register(
            "sockway_cluster_disconnects_skipped",
            "Connections whose $disconnect this node left to the node that took them over",
            self.disconnects_skipped.clone(),
        );
        registry.register(
            "sockway_redis_commands",
            "Redis round trips by operation",
            self.families.redis_commands.clone(),
        );
        registry.register(
            "sockway_redis_latency_ms",
            "Redis round-trip latency in milliseconds, by operation",
            self.families.redis_latency.clone(),
        );
        registry.register(
            "sockway_redis_outages",
            "Times Redis became unreachable from this node",
            self.redis_outages.clone(),
        );
        registry.register(
            "sockway_redis_up",
            "1 while Redis answers this node, 0 during an outage",
            self.redis_up.clone(),
        );
    }

    /// Records one Redis round trip (answered or failed) and how long it took.
    pub(crate) fn redis_call(&self, operation: RedisOperation, took: Duration) {
        let index = operation as usize;
        self.redis_commands[index].inc();
        self.redis_latency[index].observe(super::millis(took));
    }

    /// Records how a call to another node ended.
    pub(crate) fn remote_call(&self, outcome: RemoteOutcome) {
        self.remote_calls[outcome as usize].inc();
    }
}

fn redis_latency_histogram() -> Histogram {
    Histogram::new(REDIS_LATENCY_BUCKETS_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_is_present_from_the_start_and_moves_by_index() {
        let metrics = ClusterMetrics::new();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        for (index, operation) in RedisOperation::ALL.into_iter().enumerate() {
            assert_eq!(operation as usize, index);
        }
        for (index, outcome) in RemoteOutcome::ALL.into_iter().enumerate() {
            assert_eq!(outcome as usize, index);
        }
        metrics.redis_call(RedisOperation::Claim, Duration::from_micros(300));
        metrics.remote_call(RemoteOutcome::Timeout);
        metrics.redis_up.set(1);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for expected in [
            r#"sockway_redis_commands_total{operation="claim"} 1"#,
            r#"sockway_redis_commands_total{operation="release"} 0"#,
            r#"sockway_redis_latency_ms_bucket{le="0.5",operation="claim"} 1"#,
            r#"sockway_cluster_remote_calls_total{outcome="timeout"} 1"#,
            r#"sockway_cluster_remote_calls_total{outcome="ok"} 0"#,
            "sockway_redis_up 1",
            "sockway_cluster_peers 0",
            "sockway_redis_outages_total 0",
        ] {
            assert!(text.contains(expected), "{expected} missing from:\n{text}");
        }
    }
}
