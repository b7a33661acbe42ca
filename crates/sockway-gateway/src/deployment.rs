//! A deployment: everything a reload may change, built from one validated [`Config`]. The word
//! is AWS's: a stage serves one deployment, a snapshot of the API's routes, integrations and
//! authorizer, and deploying again replaces it without touching the stage.
//!
//! `State` holds the current deployment behind an `ArcSwap`. A connection reads it per message
//! (new messages use new routes) and at `$disconnect`; a handshake reads it once and keeps it
//! to the end; an integration call holds its route, so a call already under way finishes on
//! the deployment it started with. What lives as long as the gateway (listeners, the registry
//! and the cluster, metrics, caps, the access log's ring, shutdown and tasks) stays in `State`.
//!
//! [`Deployment::build`] is the one way to make one, at startup and at each reload. Given the
//! running deployment it carries over what must not restart with a reload: token buckets whose
//! settings are unchanged (a reload is not a way to reset a throttle), the connection pool to
//! the backends, the Lambda client with its cached credentials while `[aws]` is unchanged, and a
//! JWT authorizer's fetched keys while `[authorizer]` is unchanged. Deciding which keys a reload
//! may change, and swapping, is `reload`'s.

use sha2::{Digest, Sha256};

use crate::api_keys::ApiKeys;
use crate::authorizers::Authorizer;
use crate::authorizers::iam::IamAuthorizer;
use crate::config::Config;
use crate::integrations::{Integrations, UnsupportedScheme};
use crate::metrics::Metrics;
use crate::routing::{RouteError, RouteTable};
use crate::throttle::Throttles;

/// One deployment of the API: a configuration and what is built from it.
#[derive(Debug)]
pub(crate) struct Deployment {
    /// The configuration. It differs from the one the gateway started with only in keys that
    /// a reload may change: `reload` refuses the others.
    pub(crate) config: Config,
    /// The routes, each holding its integration, bucket and counters.
    pub(crate) routes: RouteTable,
    /// The integrations by name and the clients they share, kept so the next deployment can
    /// reuse the clients.
    pub(crate) integrations: Integrations,
    /// The API's `$connect` authorizer, when one is configured.
    pub(crate) authorizer: Option<Authorizer>,
    /// `[[iam.credentials]]`, when `$connect` is `AWS_IAM`.
    pub(crate) iam: Option<IamAuthorizer>,
    /// `[[api_keys]]` with their usage plans, when any are configured.
    pub(crate) api_keys: Option<ApiKeys>,
    /// The connect and management buckets.
    pub(crate) throttles: Throttles,
    /// A hash of the configuration (48 bits, secrets left out): nodes with the same hash run
    /// the same configuration.
    pub(crate) hash: u64,
}

/// Why a configuration cannot be deployed. Validation rejects both in a configuration file,
/// so only a configuration built in code reaches them.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    /// A route names an integration that does not exist.
    #[error("invalid route table")]
    Routes(#[from] RouteError),
    /// An integration or the authorizer names a backend that is not HTTP.
    #[error("invalid backend")]
    Backend(#[from] UnsupportedScheme),
}

impl Deployment {
    /// Builds the deployment of `config`; `previous` is the running one on a reload, whose
    /// buckets, clients and keys are carried over as the module documentation says.
    pub(crate) fn build(
        config: Config,
        previous: Option<&Deployment>,
        metrics: &Metrics,
    ) -> Result<Deployment, DeploymentError> {
        let integrations = Integrations::from_config(
            &config,
            previous.map(|previous| (&previous.config, &previous.integrations)),
            metrics,
        )?;
        let routes = RouteTable::from_config(
            &config,
            &integrations,
            metrics,
            previous.map(|previous| &previous.routes),
        )?;
        let same_authorizer = previous
            .filter(|previous| previous.config.authorizer == config.authorizer)
            .and_then(|previous| previous.authorizer.as_ref());
        let authorizer = Authorizer::from_config(
            &config,
            integrations.lambda_client(),
            integrations.http_client(),
            same_authorizer,
        )?;
        Ok(Deployment {
            hash: hash(&config),
            api_keys: ApiKeys::from_config(
                &config,
                previous.and_then(|previous| previous.api_keys.as_ref()),
            ),
            iam: IamAuthorizer::from_config(&config),
            throttles: Throttles::from_config(
                &config,
                previous.map(|previous| &previous.throttles),
            ),
            routes,
            integrations,
            authorizer,
            config,
        })
    }
}

/// 48 bits of the SHA-256 of the configuration's `Debug` form, which leaves secrets out (they
/// print as `****`), so the hash can be shown as a metric. The form is deterministic: the
/// configuration holds only ordered maps.
fn hash(config: &Config) -> u64 {
    let digest = Sha256::digest(format!("{config:?}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes[2..].copy_from_slice(&digest[..6]);
    u64::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_toml(text, "<test>").unwrap()
    }

    #[test]
    fn the_hash_follows_the_configuration_but_not_its_secrets() {
        let base = "[[management.credentials]]\naccess_key_id = \"AKIAIOSFODNN7EXAMPLE\"\n";
        let one = config(&format!(
            "{base}secret_access_key = \"first-secret-0123456789\"\n"
        ));
        let rotated = config(&format!(
            "{base}secret_access_key = \"second-secret-0123456789\"\n"
        ));
        let other = config(&format!(
            "[gateway]\nstage = \"prod\"\n{base}secret_access_key = \"first-secret-0123456789\"\n"
        ));
        assert_eq!(hash(&one), hash(&one.clone()));
        assert_eq!(hash(&one), hash(&rotated), "secrets are not hashed");
        assert_ne!(hash(&one), hash(&other));
        assert!(hash(&one) < 1 << 48);
    }
}
