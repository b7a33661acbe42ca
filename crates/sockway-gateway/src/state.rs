//! The gateway's shared state: what every connection task and every management request reads.
//!
//! [`State`] is built once by `gateway` from the validated configuration and handed down as an
//! `Arc<State>`; no module below the crate root defines state that others import. It is never
//! mutated after startup, apart from what its parts guard themselves: the registry inside
//! `cluster` (a synchronous lock held for a few lines), the metrics (atomics), the access log
//! (a bounded channel to its writer task), the console's sessions and the throttles' buckets.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access_log::AccessLog;
use crate::api_keys::ApiKeys;
use crate::authorizers::Authorizer;
use crate::authorizers::iam::IamAuthorizer;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::routing::RouteTable;
use crate::sign_in::SignIn;
use crate::throttle::Throttles;
use crate::tls::Tls;
use crate::traces::Tracer;

/// State every connection and request of one gateway reads.
#[derive(Debug)]
pub(crate) struct State {
    /// The validated configuration the gateway started with.
    pub(crate) config: Config,
    /// The routes, each holding its integration.
    pub(crate) routes: RouteTable,
    /// The API's `$connect` authorizer, when one is configured.
    pub(crate) authorizer: Option<Authorizer>,
    /// `[[iam.credentials]]`, when `$connect` is `AWS_IAM`.
    pub(crate) iam: Option<IamAuthorizer>,
    /// `[[api_keys]]` with their usage plans, when any are configured.
    pub(crate) api_keys: Option<ApiKeys>,
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
    /// The stage path clients connect to: `/dev`, or `/` for the empty stage.
    pub(crate) stage_path: String,
    /// The certificate of the TLS listeners, when `[tls]` is configured.
    pub(crate) tls: Option<Arc<Tls>>,
    /// Connect and management throttles and the connection caps.
    pub(crate) throttles: Throttles,
    /// Records and exports spans, with `[tracing]`; `None` (the default): nothing is
    /// recorded, and every place that would is one branch on this.
    pub(crate) tracer: Option<Tracer>,
}
