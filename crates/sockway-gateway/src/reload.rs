//! Reloading the configuration of a running gateway: SIGHUP (through the binary),
//! `sockway reload` and `POST /@reload` all end in [`reload_from_source`], which loads the
//! configuration from the gateway's [`ConfigSource`] and hands it to [`reload`].
//!
//! A reload is all or nothing. It first refuses a configuration that changes a key only a
//! restart can change ([`restart_required`]: the listeners, the stage and API id, the cluster,
//! whether TLS is on, the log format), then does everything that can fail (reads the TLS
//! certificate, opens the access log's destination, builds the [`Deployment`]), and only then
//! switches: the certificate, the access log, the caps' limits, and last the deployment, in
//! one swap. A refused or failed reload changes nothing, and says why once: in the log here,
//! in the management call's answer, in `sockway_config_reloads_total`. Two reloads never
//! interleave (`State::reloading`).
//!
//! What a reload changes applies to what starts after it: new connections (their origin
//! check, authorizer, API key, `$connect`, and the limits a connection takes when it opens),
//! new messages (their route, integration and bucket), new management requests (their
//! credentials, throttle). Open connections stay open; a message whose integration is running
//! finishes on the route it started with.

use std::collections::BTreeMap;
use std::fmt;

use tracing::{error, info, warn};

use crate::ErrorChain;
use crate::access_log::AccessLog;
use crate::config::{ClusterConfig, Config, IntegrationConfig, RouteConfig};
use crate::deployment::{Deployment, DeploymentError};
use crate::metrics::Reloaded;
use crate::state::State;
use crate::tls::TlsError;

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// The tables and entries that changed, in file order of their sections:
    /// `routes."sendmessage"`, `integrations.backend`, `throttling`, ...; empty when the
    /// configuration is the same (the TLS certificate and the access log's file are opened
    /// again all the same).
    pub changes: Vec<String>,
    /// The hash of the configuration now in use, as `sockway_config_hash` shows it.
    pub config_hash: u64,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The gateway was bound without a [`ConfigSource`], so there is nothing to read again.
    #[error("this gateway has no configuration source to reload from")]
    NoSource,
    /// The configuration did not load: the text `sockway validate` prints for it.
    #[error("{0}")]
    Invalid(String),
    /// Keys that only a restart can change differ from the running configuration.
    #[error("{}", RestartList(.0))]
    RestartRequired(Vec<RestartRequired>),
    /// The route table or a backend of a configuration built in code is unusable.
    #[error("cannot deploy the configuration")]
    Deployment(#[source] DeploymentError),
    /// The access log's destination cannot be opened.
    #[error("access_log.destination: cannot open it")]
    AccessLog(#[source] std::io::Error),
    /// The `[tls]` certificate or key cannot be loaded.
    #[error("cannot load the TLS certificate")]
    Tls(#[source] TlsError),
}

/// A key whose change needs a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartRequired {
    /// The key, written as in the file: `gateway.listen`, `cluster.redis_url`.
    pub key: String,
    /// What changed, e.g. `127.0.0.1:8080 is in use, the configuration says 127.0.0.1:9090`.
    pub change: String,
}

impl fmt::Display for RestartRequired {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{}: cannot change without a restart ({})",
            self.key, self.change
        )
    }
}

/// Keys one per line.
struct RestartList<'a>(&'a [RestartRequired]);

impl fmt::Display for RestartList<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, key) in self.0.iter().enumerate() {
            if index > 0 {
                formatter.write_str("\n")?;
            }
            write!(formatter, "{key}")?;
        }
        Ok(())
    }
}

impl ReloadError {
    fn counted_as(&self) -> Reloaded {
        match self {
            ReloadError::RestartRequired(_) => Reloaded::RestartRequired,
            _ => Reloaded::Invalid,
        }
    }
}

/// Loads the configuration from the gateway's source and reloads it.
pub(crate) async fn reload_from_source(state: &State) -> Result<ReloadOutcome, ReloadError> {
    let loaded = match state.source.clone() {
        None => Err(ReloadError::NoSource),
        // The source reads files (a template may be large): off the async threads.
        Some(source) => match tokio::task::spawn_blocking(move || source.load()).await {
            Ok(loaded) => loaded.map_err(ReloadError::Invalid),
            Err(_) => Err(ReloadError::Invalid(
                "the configuration source failed (panicked)".to_owned(),
            )),
        },
    };
    match loaded {
        Ok(config) => reload(state, config).await,
        Err(error) => Err(refused(state, error)),
    }
}

/// Puts `config` in place of the running configuration, or changes nothing and says why.
pub(crate) async fn reload(state: &State, config: Config) -> Result<ReloadOutcome, ReloadError> {
    let _reloading = state.reloading.lock().await;
    let running = state.current();
    let restart = restart_required(&running.config, &config);
    if !restart.is_empty() {
        return Err(refused(state, ReloadError::RestartRequired(restart)));
    }
    // Everything that can fail, before anything changes.
    let certificate = match (&state.tls, &config.tls) {
        (Some(tls), Some(files)) => match tls.prepare(files) {
            Ok(certificate) => Some(certificate),
            Err(error) => return Err(refused(state, ReloadError::Tls(error))),
        },
        _ => None,
    };
    let lines = match AccessLog::prepare(&config) {
        Ok(lines) => lines,
        Err(error) => return Err(refused(state, ReloadError::AccessLog(error))),
    };
    let deployment = match Deployment::build(config, Some(&running), &state.metrics) {
        Ok(deployment) => deployment,
        Err(error) => return Err(refused(state, ReloadError::Deployment(error))),
    };
    let changes = changes(&running.config, &deployment.config);
    drop(running);
    for warning in deployment.config.warnings() {
        warn!("configuration: {warning}");
    }
    // The switch: nothing below fails.
    if let (Some(tls), Some(certificate)) = (&state.tls, certificate) {
        tls.switch(certificate);
    }
    state.access_log.switch(lines);
    state.caps.set_limits(&deployment.config);
    deployment.integrations.apply_limits(&deployment.config);
    if let Some(source) = &state.source {
        source.applied(&deployment.config);
    }
    let config_hash = deployment.hash;
    state.deploy(deployment);
    state.metrics.config_applied(config_hash);
    state.metrics.reloaded(Reloaded::Applied);
    if changes.is_empty() {
        info!(config_hash, "configuration reloaded: no changes");
    } else {
        info!(config_hash, changes = %changes.join(", "), "configuration reloaded");
    }
    Ok(ReloadOutcome {
        changes,
        config_hash,
    })
}

/// Counts and logs a reload that changed nothing; returns its error.
fn refused(state: &State, error: ReloadError) -> ReloadError {
    state.metrics.reloaded(error.counted_as());
    error!(
        "configuration not reloaded; the running configuration stays:\n{}",
        ErrorChain(&error)
    );
    error
}

/// The keys of `new` that differ from `running` and that only a restart can change: what
/// was bound (listeners and their TLS), joined (the cluster) or set up once per process (the
/// log's format), and the API's identity that connections and cluster records carry (stage,
/// API id).
pub(crate) fn restart_required(running: &Config, new: &Config) -> Vec<RestartRequired> {
    let mut keys = Vec::new();
    let mut shown = |key: &str, running: String, new: String| {
        if running != new {
            keys.push(RestartRequired {
                key: key.to_owned(),
                change: format!("running with {running}, the configuration says {new}"),
            });
        }
    };
    let address = |addr: Option<std::net::SocketAddr>| {
        addr.map_or_else(|| "none".to_owned(), |addr| addr.to_string())
    };
    shown(
        "gateway.listen",
        running.gateway.listen.to_string(),
        new.gateway.listen.to_string(),
    );
    shown(
        "gateway.stage",
        format!("{:?}", running.gateway.stage),
        format!("{:?}", new.gateway.stage),
    );
    shown(
        "gateway.api_id",
        format!("{:?}", running.gateway.api_id),
        format!("{:?}", new.gateway.api_id),
    );
    shown(
        "management.listen",
        address(running.management.listen),
        address(new.management.listen),
    );
    shown(
        "management.operations_listen",
        address(running.management.operations_listen),
        address(new.management.operations_listen),
    );
    shown(
        "tls",
        table(running.tls.is_some()),
        table(new.tls.is_some()),
    );
    shown(
        "management.tls",
        running.management.tls.to_string(),
        new.management.tls.to_string(),
    );
    shown(
        "log.format",
        format!("{:?}", running.log.format).to_lowercase(),
        format!("{:?}", new.log.format).to_lowercase(),
    );
    cluster_changes(running.cluster.as_ref(), new.cluster.as_ref(), &mut keys);
    // The exporter is started once, with the node's id; its settings are not shown, since
    // its headers usually hold a collector's API key.
    if running.tracing != new.tracing {
        keys.push(RestartRequired {
            key: "tracing".to_owned(),
            change: "the exporter is started once; its settings differ (not shown: headers may \
                     hold credentials)"
                .to_owned(),
        });
    }
    keys
}

/// `[tls]` present or not, as a change names it.
fn table(present: bool) -> String {
    if present { "the table" } else { "none" }.to_owned()
}

/// Which `[cluster]` keys differ. Their values are not shown: Redis URLs may hold passwords.
fn cluster_changes(
    running: Option<&ClusterConfig>,
    new: Option<&ClusterConfig>,
    keys: &mut Vec<RestartRequired>,
) {
    let (running, new) = match (running, new) {
        (None, None) => return,
        (Some(running), Some(new)) => (running, new),
        (running, new) => {
            keys.push(RestartRequired {
                key: "cluster".to_owned(),
                change: format!(
                    "running {}, the configuration says {}",
                    if running.is_some() {
                        "in a cluster"
                    } else {
                        "alone"
                    },
                    if new.is_some() {
                        "in a cluster"
                    } else {
                        "alone"
                    }
                ),
            });
            return;
        }
    };
    let differ = [
        ("cluster.redis_url", running.redis_urls != new.redis_urls),
        ("cluster.node_id", running.node_id != new.node_id),
        (
            "cluster.node_timeout",
            running.node_timeout != new.node_timeout,
        ),
        (
            "cluster.heartbeat_interval",
            running.heartbeat_interval != new.heartbeat_interval,
        ),
        (
            "cluster.tls_ca_file",
            running.redis_tls.as_ref().map(|tls| &tls.ca_file)
                != new.redis_tls.as_ref().map(|tls| &tls.ca_file),
        ),
        (
            "cluster.tls_cert_file",
            running.redis_tls.as_ref().map(|tls| &tls.client_identity)
                != new.redis_tls.as_ref().map(|tls| &tls.client_identity),
        ),
        (
            "cluster.redis_password_env",
            running.redis_password != new.redis_password,
        ),
    ];
    for (key, _) in differ.into_iter().filter(|(_, differs)| *differs) {
        keys.push(RestartRequired {
            key: key.to_owned(),
            change: "the cluster is joined once, at startup".to_owned(),
        });
    }
}

/// What differs between `running` and `new`: tables by name, and routes and integrations
/// one by one, in the order the configuration documents its tables.
pub(crate) fn changes(running: &Config, new: &Config) -> Vec<String> {
    let routes = |config: &Config| -> BTreeMap<String, RouteConfig> {
        config
            .routes
            .iter()
            .map(|route| (format!("routes.{:?}", route.key.as_str()), route.clone()))
            .collect()
    };
    let integrations = |config: &Config| -> BTreeMap<String, IntegrationConfig> {
        config
            .integrations
            .iter()
            .map(|(name, integration)| (format!("integrations.{name}"), integration.clone()))
            .collect()
    };
    let tables = [
        ("gateway", running.gateway != new.gateway),
        ("limits", running.limits != new.limits),
    ];
    let more_tables = [
        ("management", running.management != new.management),
        ("authorizer", running.authorizer != new.authorizer),
        ("aws", running.aws != new.aws),
        ("access_log", running.access_log != new.access_log),
        ("tls", running.tls != new.tls),
        ("throttling", running.throttling != new.throttling),
        (
            "permessage_deflate",
            running.permessage_deflate != new.permessage_deflate,
        ),
        ("log", running.log != new.log),
        ("api_keys", running.api_keys != new.api_keys),
        ("usage_plans", running.usage_plans != new.usage_plans),
        ("iam", running.iam != new.iam),
    ];
    let changed_tables = |tables: &[(&str, bool)]| {
        tables
            .iter()
            .filter(|(_, differs)| *differs)
            .map(|(name, _)| (*name).to_owned())
            .collect::<Vec<_>>()
    };
    let mut changed = changed_tables(&tables);
    changed.extend(changed_entries(routes(running), routes(new)));
    changed.extend(changed_entries(integrations(running), integrations(new)));
    changed.extend(changed_tables(&more_tables));
    changed
}

/// The keys of entries added, removed or changed between two maps, in key order.
fn changed_entries<T: PartialEq>(
    running: BTreeMap<String, T>,
    mut new: BTreeMap<String, T>,
) -> Vec<String> {
    let mut changed: Vec<String> = running
        .into_iter()
        .filter(|(key, entry)| new.remove(key).as_ref() != Some(entry))
        .map(|(key, _)| key)
        .collect();
    changed.extend(new.into_keys());
    changed.sort();
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_toml(text, "<test>").unwrap()
    }

    fn keys(running: &str, new: &str) -> Vec<String> {
        restart_required(&config(running), &config(new))
            .into_iter()
            .map(|key| key.key)
            .collect()
    }

    #[test]
    fn listeners_stage_cluster_and_log_format_need_a_restart() {
        assert_eq!(keys("", ""), Vec::<String>::new());
        assert_eq!(
            keys("", "[gateway]\nlisten = \"127.0.0.1:9090\"\n"),
            ["gateway.listen"]
        );
        assert_eq!(
            keys("", "[gateway]\nstage = \"prod\"\n"),
            ["gateway.stage", "gateway.api_id"],
            "the default API id follows the stage"
        );
        assert_eq!(
            keys(
                "",
                "[management]\nlisten = \"127.0.0.1:9091\"\noperations_listen = \"127.0.0.1:9092\"\n"
            ),
            ["management.listen", "management.operations_listen"]
        );
        assert_eq!(
            keys("", "[log]\nformat = \"json\"\nlevel = \"debug\"\n"),
            ["log.format"]
        );
        assert_eq!(
            keys("", "[tracing]\nendpoint = \"http://127.0.0.1:4318\"\n"),
            ["tracing"]
        );
        assert_eq!(
            keys("", "[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\n"),
            ["cluster"]
        );
        assert_eq!(
            keys(
                "[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\n",
                "[cluster]\nredis_url = \"redis://127.0.0.1:6380\"\nnode_timeout = \"20s\"\n"
            ),
            [
                "cluster.redis_url",
                "cluster.node_timeout",
                "cluster.heartbeat_interval"
            ],
            "the default heartbeat follows the timeout"
        );
        assert_eq!(
            keys(
                "",
                "[gateway]\nregion = \"eu-west-1\"\nallowed_origins = [\"https://example.com\"]\n\
                 [limits]\nidle_timeout = \"1m\"\n[throttling]\nconnect_rate_limit = 5\n"
            ),
            Vec::<String>::new(),
            "everything else reloads"
        );
    }

    #[test]
    fn a_restart_key_is_named_with_both_values() {
        let refused = restart_required(
            &config(""),
            &config("[gateway]\nlisten = \"127.0.0.1:9090\"\n"),
        );
        assert_eq!(
            ReloadError::RestartRequired(refused).to_string(),
            "gateway.listen: cannot change without a restart (running with 127.0.0.1:8080, \
             the configuration says 127.0.0.1:9090)"
        );
    }

    #[test]
    fn changes_name_tables_routes_and_integrations() {
        let running = config(
            "[routes.a]\nintegration = \"one\"\n[routes.b]\nintegration = \"one\"\n\
             [integrations.one]\ntype = \"mock\"\n",
        );
        let new = config(
            "[routes.a]\nintegration = \"two\"\n[routes.b]\nintegration = \"one\"\n\
             [routes.c]\nintegration = \"one\"\n[integrations.one]\ntype = \"mock\"\n\
             [integrations.two]\ntype = \"mock\"\n[throttling]\nconnect_rate_limit = 5\n",
        );
        assert_eq!(
            changes(&running, &new),
            [
                r#"routes."a""#,
                r#"routes."c""#,
                "integrations.two",
                "throttling"
            ]
        );
        assert!(changes(&running, &running.clone()).is_empty());
    }
}
