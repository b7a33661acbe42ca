//! The running gateway as a handle: [`Gateway::bind`] builds the shared [`State`] from a
//! validated configuration, binds the listeners and starts the tasks; the handle reports the
//! bound addresses, reloads the configuration ([`Gateway::reload`], through `reload`) and shuts
//! everything down in the documented order.
//!
//! Startup fails with a [`GatewayError`] before anything serves: every part is built (TLS
//! files read, the first [`Deployment`] made with its integrations and route table, the
//! cluster joined) before the first accept. The deployment is built by the same
//! `Deployment::build` a reload uses. What happens on a socket is `server`'s and
//! `connection`'s business.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::access_log::AccessLog;
use crate::cluster::{Cluster, JoinError};
use crate::config::{Config, ConfigSource};
use crate::connection;
use crate::deployment::{Deployment, DeploymentError};
use crate::integrations::UnsupportedScheme;
use crate::metrics::Metrics;
use crate::reload::{self, ReloadError, ReloadOutcome};
use crate::routing::RouteError;
use crate::server::{self, Listeners};
use crate::state::{Parts, State};
use crate::tls::{Tls, TlsError};
use crate::traces::Tracer;

/// A running gateway: its listeners are bound and its accept loops run until
/// [`Gateway::shutdown`].
#[derive(Debug)]
pub struct Gateway {
    local_addr: SocketAddr,
    management_addr: Option<SocketAddr>,
    operations_addr: Option<SocketAddr>,
    state: Arc<State>,
}

/// What can stop a gateway from starting.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address from the configuration.
        addr: SocketAddr,
        /// Why binding failed.
        #[source]
        source: std::io::Error,
    },
    /// A route names an integration that does not exist.
    #[error("invalid route table")]
    Routes(#[from] RouteError),
    /// An integration or the authorizer names a backend that is not HTTP.
    #[error("invalid backend")]
    Backend(#[from] UnsupportedScheme),
    /// The access log's destination cannot be opened.
    #[error("access_log.destination: cannot open it")]
    AccessLog(#[source] std::io::Error),
    /// `[cluster]` is configured and the node could not join (Redis unreachable at startup,
    /// no free node tag).
    #[error("cannot join the cluster")]
    Cluster(#[from] JoinError),
    /// `[tls]` is configured and its certificate or key file is missing, unreadable, not
    /// PEM, or the key does not match the certificate.
    #[error("cannot load the TLS certificate")]
    Tls(#[source] TlsError),
}

impl From<DeploymentError> for GatewayError {
    fn from(error: DeploymentError) -> Self {
        match error {
            DeploymentError::Routes(error) => GatewayError::Routes(error),
            DeploymentError::Backend(error) => GatewayError::Backend(error),
        }
    }
}

impl Gateway {
    /// Binds the listeners named in `config` and starts serving. Port 0 is allowed; the bound
    /// addresses are reported by [`Gateway::local_addr`] and [`Gateway::management_addr`].
    /// Without a [`ConfigSource`], only [`Gateway::reload`] with a configuration in hand can
    /// reload it; see [`Gateway::bind_with_source`].
    pub async fn bind(config: Config) -> Result<Gateway, GatewayError> {
        Gateway::start(config, None).await
    }

    /// Binds like [`Gateway::bind`], with `source` as where [`Gateway::reload_from_source`]
    /// and `POST /@reload` read the configuration again. `config` should be what `source`
    /// loaded, so that start and reload share one path.
    pub async fn bind_with_source(
        config: Config,
        source: ConfigSource,
    ) -> Result<Gateway, GatewayError> {
        Gateway::start(config, Some(source)).await
    }

    async fn start(config: Config, source: Option<ConfigSource>) -> Result<Gateway, GatewayError> {
        for warning in config.warnings() {
            warn!("configuration: {warning}");
        }
        let tls = match &config.tls {
            Some(files) => Some(Arc::new(Tls::load(files).map_err(GatewayError::Tls)?)),
            None => None,
        };
        let metrics = Metrics::new(&config);
        let deployment = Deployment::build(config, None, &metrics)?;
        let config = &deployment.config;
        let access_log = AccessLog::start(config, metrics.access_log_dropped.clone())
            .map_err(GatewayError::AccessLog)?;
        let listeners = Listeners::bind(config)
            .await
            .map_err(|(addr, source)| GatewayError::Bind { addr, source })?;
        let shutdown = CancellationToken::new();
        let cluster = Cluster::start(config, metrics.cluster.clone(), &shutdown).await?;
        // `service.instance.id`: the cluster's node id, or a fresh one for a single node.
        // `[tracing]` needs a restart to change (`reload::restart_required`): the exporter is
        // the process's.
        let tracer = config.tracing.as_ref().map(|tracing| {
            let node_id = cluster
                .node_id()
                .map_or_else(crate::management::new_request_id, str::to_owned);
            Tracer::start(tracing, node_id, metrics.traces.clone())
        });
        let local_addr = listeners.local_addr();
        let management_addr = listeners.management_addr();
        let operations_addr = listeners.operations_addr();
        metrics.config_applied(deployment.hash);
        let state = Arc::new(State::new(
            deployment,
            Parts {
                metrics,
                access_log,
                local_addr,
                cluster,
                shutdown,
                tls,
                source,
                tracer,
            },
        ));
        server::serve(listeners, &state);
        state
            .tasks
            .spawn(connection::deliver_orphans(state.clone()));
        Ok(Gateway {
            local_addr,
            management_addr,
            operations_addr,
            state,
        })
    }

    /// The address WebSocket clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the separate management listener, when one is configured.
    pub fn management_addr(&self) -> Option<SocketAddr> {
        self.management_addr
    }

    /// The address of the separate operations listener (`/ready`, `/metrics`), when one is
    /// configured.
    pub fn operations_addr(&self) -> Option<SocketAddr> {
        self.operations_addr
    }

    /// The URL clients connect to, e.g. `ws://127.0.0.1:41237/dev` (`wss://` with `[tls]`).
    pub fn ws_url(&self) -> String {
        let scheme = if self.state.tls.is_some() {
            "wss"
        } else {
            "ws"
        };
        format!("{scheme}://{}{}", self.local_addr, self.stage_suffix())
    }

    /// The `endpoint_url` an AWS SDK's `ApiGatewayManagementApi` client takes, e.g.
    /// `http://127.0.0.1:41237/dev` (`https://` when that listener serves TLS).
    pub fn management_url(&self) -> String {
        let addr = self.management_addr.unwrap_or(self.local_addr);
        let scheme = if server::management_tls(&self.state) {
            "https"
        } else {
            "http"
        };
        let stage = &self.state.deployment().config.gateway.stage;
        if stage.is_empty() {
            format!("{scheme}://{addr}")
        } else {
            format!("{scheme}://{addr}/{stage}")
        }
    }

    /// `/dev` for stage `dev`, `/` for the empty stage.
    fn stage_suffix(&self) -> String {
        self.state.stage_path.clone()
    }

    /// Reads the `[tls]` certificate and key files again and makes new handshakes use them;
    /// open connections keep theirs. On failure the certificate in use stays and the error
    /// says why (it is also logged). A configuration reload reads them again too.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        match &self.state.tls {
            Some(tls) => tls.reload(),
            None => Err(TlsError::NotConfigured),
        }
    }

    /// Puts `config` in place of the running configuration for new connections, messages and
    /// requests; open connections stay open. Refused, changing nothing, when a key that only a
    /// restart can change differs ([`ReloadError::RestartRequired`] names each) or when a
    /// part cannot be built. The outcome is logged and counted here. Equal to the running
    /// configuration, it still reads the TLS certificate and opens the access log's file again.
    pub async fn reload(&self, config: Config) -> Result<ReloadOutcome, ReloadError> {
        reload::reload(&self.state, config).await
    }

    /// Loads the configuration from the source given to [`Gateway::bind_with_source`] and
    /// reloads it, as SIGHUP and `POST /@reload` do; a source that fails is
    /// [`ReloadError::Invalid`] with its text.
    pub async fn reload_from_source(&self) -> Result<ReloadOutcome, ReloadError> {
        reload::reload_from_source(&self.state).await
    }

    /// Number of connections currently open on this gateway.
    pub fn connection_count(&self) -> usize {
        self.state.cluster.local_connection_count()
    }

    /// A token that, once cancelled, starts the same shutdown as [`Gateway::shutdown`]. The
    /// binary cancels it from its signal handler.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.state.shutdown.clone()
    }

    /// Shuts down in the documented order: stop accepting, close every connection with 1001,
    /// let in-flight integrations finish within `limits.shutdown_grace`, deliver every
    /// `$disconnect`, leave the cluster (nothing is handed over), then return.
    pub async fn shutdown(self) {
        self.state.shutdown.cancel();
        self.wait().await;
    }

    /// Waits until the gateway has shut down (after [`Gateway::shutdown_token`] was cancelled).
    /// The spans of the last `$disconnect`s are sent (within `tracing.timeout`) before it
    /// returns.
    pub async fn wait(self) {
        self.state.shutdown.cancelled().await;
        self.state.tasks.close();
        self.state.tasks.wait().await;
        self.state.cluster.leave().await;
        self.state.access_log.close().await;
        if let Some(tracer) = &self.state.tracer {
            tracer.shutdown().await;
        }
    }
}
