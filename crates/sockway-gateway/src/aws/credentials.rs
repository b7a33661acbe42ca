//! AWS credentials and region for sockway's own calls to AWS (Lambda Invoke), from the AWS
//! SDK's chains (`aws-config`).
//!
//! Credentials are the static keys of `[aws]` when they are set. Otherwise they come from the
//! SDK's default credential chain, in its order: the environment (`AWS_ACCESS_KEY_ID`, ...);
//! the shared config and credentials files for the profile (`[aws] profile`, else
//! `AWS_PROFILE`, else `default`), with keys, `credential_process`, SSO, or a role to assume
//! from a `source_profile` or `credential_source`; a web identity token file
//! (`AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN`, through STS); the ECS/EKS container
//! credentials endpoint; EC2 instance metadata (IMDSv2). The region of a Lambda target that
//! names none is the SDK's region for the same profile (`AWS_REGION`, the profile's `region`,
//! instance metadata), else `us-east-1`. `docs/aws-credentials.md` lists what each provider
//! reads.
//!
//! Nothing is read at start: the SDK's configuration is loaded, once, by the first call that
//! needs credentials or a region, so a gateway without Lambda integrations reads no AWS
//! environment or file and asks no metadata endpoint. Missing or failing credentials are
//! reported by [`CredentialsProvider::credentials`], with the SDK's reason as the source.
//!
//! The SDK's providers do not cache (the SDK's own clients cache in their request pipeline,
//! which sockway does not use), so this module does: credentials are kept and fetched again
//! once within [`REFRESH_BEFORE_EXPIRY`] of their expiry. Callers wait for one fetch at a time;
//! a failed fetch is not repeated for [`RETRY_AFTER_FAILURE`], and credentials not yet expired
//! are used meanwhile. Token files are read, and `credential_process` run, at each fetch. A
//! load or fetch runs inside the call that needed it, so the call's own timeout bounds it: a
//! call that gives up leaves nothing half-done, and the next call starts again.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_credential_types::provider::error::CredentialsError as SdkCredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use tokio::sync::{Mutex, OnceCell};

use super::connector::SdkHttpClient;
use crate::ErrorChain;
use crate::config::{AwsConfig, GatewayConfig};

/// How long before their expiry credentials are fetched again. AWS's metadata services hand
/// out new credentials at least this long before the old ones expire.
pub(crate) const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// How long after a failed fetch the next one is tried; calls meanwhile get the same answer
/// instead of each waiting for its own (a metadata endpoint that does not answer takes
/// seconds per try).
pub(crate) const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);

/// One set of AWS credentials. `Debug` shows the access key id only.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    /// `AKIA…` or `ASIA…`.
    pub(crate) access_key_id: String,
    /// The secret the signature is derived from.
    pub(crate) secret_access_key: String,
    /// Sent as `X-Amz-Security-Token` with temporary credentials.
    pub(crate) session_token: Option<String>,
    /// When temporary credentials stop working; `None` for long-term keys.
    pub(crate) expires_at: Option<SystemTime>,
}

/// Credentials and region for calls to AWS, from `[aws]` and the SDK's chains. Built once per
/// gateway; cheap to clone, and clones share what was loaded and cached.
#[derive(Debug, Clone)]
pub(crate) struct CredentialsProvider {
    inner: Arc<Inner>,
}

/// Why no usable credentials could be produced. The SDK's error, with its causes, is the
/// source.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum CredentialsError {
    /// No provider of the chain had credentials.
    #[error(
        "no AWS credentials: set [aws] access_key_id and secret_access_key, or give the AWS \
         SDK's credential chain something to find ({searched})"
    )]
    NotFound {
        /// The profile and the providers that were asked.
        searched: String,
        /// The SDK's report.
        #[source]
        source: Arc<SdkCredentialsError>,
    },
    /// A provider that applies failed (an unreadable token file, a refused STS call, a
    /// failing `credential_process`, ...); the chain stops there.
    #[error("AWS credentials could not be loaded ({profile})")]
    Provider {
        /// The profile in use.
        profile: String,
        /// The SDK's report.
        #[source]
        source: Arc<SdkCredentialsError>,
    },
}

/// What the clones of a provider share.
#[derive(Debug)]
struct Inner {
    /// `[aws] profile`: overrides `AWS_PROFILE` in both chains.
    profile: Option<String>,
    /// `[aws]`'s static keys: when set, the credential chain is not built.
    static_keys: Option<Credentials>,
    /// The SDK's configuration, loaded by the first call that needs it.
    sdk: OnceCell<Sdk>,
    /// The credentials last fetched from the chain. tokio's mutex, held during a fetch, so
    /// that concurrent callers wait for one fetch instead of each starting their own.
    cache: Mutex<Cache>,
}

/// What the SDK's chains produced when loaded.
struct Sdk {
    /// The SDK's region, when its region chain found one.
    region: Option<String>,
    /// The SDK's credential chain; `None` with `[aws]` static keys.
    credentials: Option<SharedCredentialsProvider>,
}

/// The chain's last answer.
#[derive(Debug, Default)]
struct Cache {
    /// The credentials last fetched, expired or not.
    credentials: Option<Credentials>,
    /// When the last fetch failed, and why.
    failure: Option<(SystemTime, CredentialsError)>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "** redacted **"),
            )
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl fmt::Debug for Sdk {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Sdk")
            .field("region", &self.region)
            .field("credentials", &self.credentials.is_some())
            .finish()
    }
}

impl From<&aws_credential_types::Credentials> for Credentials {
    fn from(credentials: &aws_credential_types::Credentials) -> Credentials {
        Credentials {
            access_key_id: credentials.access_key_id().to_owned(),
            secret_access_key: credentials.secret_access_key().to_owned(),
            session_token: credentials
                .session_token()
                .filter(|token| !token.is_empty())
                .map(str::to_owned),
            expires_at: credentials.expiry(),
        }
    }
}

impl CredentialsProvider {
    /// The provider for `[aws]`. Reads nothing yet: the SDK's chains are loaded by the first
    /// call that needs them.
    pub(crate) fn from_config(config: &AwsConfig) -> CredentialsProvider {
        let static_keys = match (&config.access_key_id, &config.secret_access_key) {
            (Some(access_key_id), Some(secret_access_key)) => Some(Credentials {
                access_key_id: access_key_id.clone(),
                secret_access_key: secret_access_key.clone(),
                session_token: config.session_token.clone(),
                expires_at: None,
            }),
            _ => None,
        };
        CredentialsProvider {
            inner: Arc::new(Inner {
                profile: config.profile.clone(),
                static_keys,
                sdk: OnceCell::new(),
                cache: Mutex::new(Cache::default()),
            }),
        }
    }

    /// A provider over an SDK credential provider and region already at hand, for tests of
    /// the cache.
    #[cfg(test)]
    pub(crate) fn from_sdk(
        credentials: impl ProvideCredentials + 'static,
        region: Option<&str>,
    ) -> CredentialsProvider {
        let sdk = Sdk {
            region: region.map(str::to_owned),
            credentials: Some(SharedCredentialsProvider::new(credentials)),
        };
        CredentialsProvider {
            inner: Arc::new(Inner {
                profile: None,
                static_keys: None,
                sdk: OnceCell::new_with(Some(sdk)),
                cache: Mutex::new(Cache::default()),
            }),
        }
    }

    /// Credentials valid now: `[aws]`'s static keys, or the chain's, fetched when missing or
    /// about to expire.
    pub(crate) async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        self.credentials_at(SystemTime::now()).await
    }

    /// [`CredentialsProvider::credentials`] as of `now`.
    pub(crate) async fn credentials_at(
        &self,
        now: SystemTime,
    ) -> Result<Credentials, CredentialsError> {
        if let Some(keys) = &self.inner.static_keys {
            return Ok(keys.clone());
        }
        let mut cache = self.inner.cache.lock().await;
        if let Some(credentials) = cache.credentials.as_ref().filter(|found| fresh(found, now)) {
            return Ok(credentials.clone());
        }
        let usable = cache
            .credentials
            .clone()
            .filter(|found| found.expires_at.is_none_or(|expires_at| now < expires_at));
        if let Some((failed_at, error)) = &cache.failure
            && now >= *failed_at
            && now < *failed_at + RETRY_AFTER_FAILURE
        {
            return usable.ok_or_else(|| error.clone());
        }
        let provider = self
            .sdk()
            .await
            .credentials
            .as_ref()
            .expect("the SDK's credential chain is built whenever [aws] has no static keys");
        match provider.provide_credentials().await {
            Ok(found) => {
                let credentials = Credentials::from(&found);
                tracing::debug!(
                    access_key_id = %credentials.access_key_id,
                    expires_at = ?credentials.expires_at,
                    "AWS credentials fetched"
                );
                cache.credentials = Some(credentials.clone());
                cache.failure = None;
                Ok(credentials)
            }
            Err(source) => {
                let error = self.error(source);
                cache.failure = Some((now, error.clone()));
                match usable {
                    Some(credentials) => {
                        tracing::warn!(
                            error = %ErrorChain(&error),
                            "AWS credentials not refreshed; using the current ones until they expire"
                        );
                        Ok(credentials)
                    }
                    None => Err(error),
                }
            }
        }
    }

    /// The region for a call whose target names none: the SDK's region chain (`AWS_REGION`,
    /// the profile's `region`, instance metadata), else `gateway.region`'s default.
    pub(crate) async fn region(&self) -> String {
        self.sdk()
            .await
            .region
            .clone()
            .unwrap_or_else(|| GatewayConfig::DEFAULT_REGION.to_owned())
    }

    /// The SDK's configuration, loaded once, by the first caller.
    async fn sdk(&self) -> &Sdk {
        self.inner
            .sdk
            .get_or_init(|| async {
                let mut loader = aws_config::defaults(BehaviorVersion::latest())
                    .http_client(SdkHttpClient::default());
                if let Some(profile) = &self.inner.profile {
                    loader = loader.profile_name(profile);
                }
                if let Some(keys) = &self.inner.static_keys {
                    loader = loader.credentials_provider(aws_credential_types::Credentials::new(
                        &keys.access_key_id,
                        &keys.secret_access_key,
                        keys.session_token.clone(),
                        None,
                        "sockway [aws]",
                    ));
                }
                let config = loader.load().await;
                let region = config.region().map(ToString::to_string);
                tracing::info!(
                    region = region.as_deref().unwrap_or("(none)"),
                    profile = self
                        .inner
                        .profile
                        .as_deref()
                        .unwrap_or("(AWS_PROFILE or default)"),
                    "AWS SDK configuration loaded"
                );
                Sdk {
                    region,
                    credentials: match &self.inner.static_keys {
                        Some(_) => None,
                        None => config.credentials_provider(),
                    },
                }
            })
            .await
    }

    /// The error for the SDK's `source`, naming what was asked.
    fn error(&self, source: SdkCredentialsError) -> CredentialsError {
        let profile = match &self.inner.profile {
            Some(profile) => format!("profile `{profile}`"),
            None => "the profile of AWS_PROFILE, else `default`".to_owned(),
        };
        let source = Arc::new(source);
        match &*source {
            SdkCredentialsError::CredentialsNotLoaded(_) => CredentialsError::NotFound {
                searched: format!(
                    "asked: environment, shared files ({profile}), web identity token, \
                     container endpoint, instance metadata"
                ),
                source,
            },
            _ => CredentialsError::Provider { profile, source },
        }
    }
}

/// Whether `credentials` can be used at `now` without a fetch.
fn fresh(credentials: &Credentials, now: SystemTime) -> bool {
    credentials
        .expires_at
        .is_none_or(|expires_at| now + REFRESH_BEFORE_EXPIRY < expires_at)
}

#[cfg(test)]
mod tests;
