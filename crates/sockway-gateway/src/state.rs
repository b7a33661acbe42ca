//! The gateway's shared state: what every connection task and every management request reads.
//!
//! [`State`] is built once by `gateway` and handed down as an `Arc<State>`; no module below
//! the crate root defines state that others import. What a reload may change is one
//! [`Deployment`] (the configuration, routes and integrations, authorizers, API keys,
//! buckets), which `State` holds behind an `ArcSwap`: readers take the current one without a
//! lock, and `reload` swaps in a new one whole, so nobody sees half of a reload. The rest of
//! `State` is never replaced after startup; its parts guard what changes inside them: the
//! registry inside `cluster` (a synchronous lock held for a few lines), the metrics (atomics),
//! the access log (a bounded channel to its writer task, whose destination a reload swaps),
//! the console's sessions, the caps' counters and limits (atomics), and the TLS certificate
//! (which a reload or the file watch swaps).

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access_log::AccessLog;
use crate::cluster::Cluster;
use crate::config::ConfigSource;
use crate::deployment::Deployment;
use crate::metrics::Metrics;
use crate::sign_in::SignIn;
use crate::throttle::Caps;
use crate::tls::Tls;
use crate::traces::Tracer;

/// State every connection and request of one gateway reads.
#[derive(Debug)]
pub(crate) struct State {
    /// The deployment in use. Read through [`State::deployment`] (per message, per request)
    /// or [`State::current`] (kept across `.await`s, as a handshake does).
    deployment: ArcSwap<Deployment>,
    /// This gateway's Prometheus metrics.
    pub(crate) metrics: Metrics,
    /// Access-log lines and the ring of recent events.
    pub(crate) access_log: AccessLog,
    /// The web console's sessions and sign-in gate.
    pub(crate) sign_in: SignIn,
    /// The gateway listener's bound address.
    pub(crate) local_addr: SocketAddr,
    /// Presence and delivery: this node's registry, and the other nodes in cluster mode.
    pub(crate) cluster: Cluster,
    /// Cancelled when the gateway shuts down; every connection's token is a child of it.
    pub(crate) shutdown: CancellationToken,
    /// Owns every task the gateway spawns, so shutdown can wait for all of them.
    pub(crate) tasks: TaskTracker,
    /// The stage path clients connect to: `/dev`, or `/` for the empty stage. The stage is
    /// one of the keys only a restart changes.
    pub(crate) stage_path: String,
    /// The certificate of the TLS listeners, when `[tls]` is configured.
    pub(crate) tls: Option<Arc<Tls>>,
    /// The connection caps and the buffered-bytes budget: counters of what is open.
    pub(crate) caps: Caps,
    /// Where a reload reads the configuration from, when the embedding program gave one.
    pub(crate) source: Option<ConfigSource>,
    /// Held by a reload from its first check to its swap, so two reloads (a SIGHUP and a
    /// management call) cannot interleave. A tokio mutex: reading the source is awaited.
    pub(crate) reloading: tokio::sync::Mutex<()>,
    /// Records and exports spans, with `[tracing]`; `None` (the default): nothing is
    /// recorded, and every place that would is one branch on this.
    pub(crate) tracer: Option<Tracer>,
}

/// The parts of [`State`] other than the deployment, for [`State::new`].
#[derive(Debug)]
pub(crate) struct Parts {
    /// See [`State::metrics`].
    pub(crate) metrics: Metrics,
    /// See [`State::access_log`].
    pub(crate) access_log: AccessLog,
    /// See [`State::local_addr`].
    pub(crate) local_addr: SocketAddr,
    /// See [`State::cluster`].
    pub(crate) cluster: Cluster,
    /// See [`State::shutdown`].
    pub(crate) shutdown: CancellationToken,
    /// See [`State::tls`].
    pub(crate) tls: Option<Arc<Tls>>,
    /// See [`State::source`].
    pub(crate) source: Option<ConfigSource>,
    /// See [`State::tracer`].
    pub(crate) tracer: Option<Tracer>,
}

impl State {
    /// The state of a gateway starting with `deployment`.
    pub(crate) fn new(deployment: Deployment, parts: Parts) -> State {
        State {
            stage_path: format!("/{}", deployment.config.gateway.stage),
            caps: Caps::from_config(&deployment.config),
            deployment: ArcSwap::from_pointee(deployment),
            metrics: parts.metrics,
            access_log: parts.access_log,
            sign_in: SignIn::default(),
            local_addr: parts.local_addr,
            cluster: parts.cluster,
            shutdown: parts.shutdown,
            tasks: TaskTracker::new(),
            tls: parts.tls,
            source: parts.source,
            reloading: tokio::sync::Mutex::new(()),
            tracer: parts.tracer,
        }
    }

    /// The deployment in use, for a short read that does not await: no lock, and no reference
    /// count taken in the common case.
    pub(crate) fn deployment(&self) -> Guard<Arc<Deployment>> {
        self.deployment.load()
    }

    /// The deployment in use, to keep across `.await`s.
    pub(crate) fn current(&self) -> Arc<Deployment> {
        self.deployment.load_full()
    }

    /// Puts `deployment` in use for everything that reads it from now on.
    pub(crate) fn deploy(&self, deployment: Deployment) {
        self.deployment.store(Arc::new(deployment));
    }
}
