//! AWS credentials for outgoing calls (Lambda Invoke), resolved once when the gateway starts.
//!
//! The chain is the AWS CLI's, reduced to what a gateway needs: the keys in `[aws]` of the
//! config; else `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (with `AWS_SESSION_TOKEN`); else
//! the profile (`[aws] profile`, `AWS_PROFILE` or `default`) from the shared credentials file
//! (`[name]`) and the shared config file (`[profile name]`, or `[default]`), which holds either
//! keys or a `credential_process`. SSO, web identity, ECS and instance metadata are not
//! supported.
//!
//! [`CredentialsProvider::from_environment`] is the only place in the gateway that reads
//! environment variables or credential files; it runs once, at start. A `credential_process`
//! is run on first use and again whenever its credentials are within
//! [`REFRESH_BEFORE_EXPIRY`] of their `Expiration`. Finding no credentials is not a start-up
//! error: a gateway without Lambda integrations needs none, so the failure is reported by
//! [`CredentialsProvider::credentials`] when a call needs them.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::time::parse_rfc3339;
use crate::config::AwsConfig;

/// How long before `Expiration` a `credential_process` is run again.
pub(crate) const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

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

/// Where credentials come from, decided once at start. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct CredentialsProvider {
    source: Arc<Source>,
}

/// Why no usable credentials could be produced.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum CredentialsError {
    /// Nothing in the chain had credentials.
    #[error(
        "no AWS credentials: set [aws] access_key_id and secret_access_key, \
         AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile ({searched})"
    )]
    NotFound {
        /// The profile and files that were looked at.
        searched: String,
    },
    /// A profile was named explicitly but is in neither shared file.
    #[error("AWS profile `{profile}` not found ({searched})")]
    ProfileNotFound {
        /// The profile's name.
        profile: String,
        /// The files that were looked at.
        searched: String,
    },
    /// The profile exists but has only one of the two keys and no `credential_process`.
    #[error("AWS profile `{profile}` has an access key id or a secret access key but not both")]
    IncompleteProfile {
        /// The profile's name.
        profile: String,
    },
    /// The profile's `credential_process` failed or printed something unusable.
    #[error("credential_process of AWS profile `{profile}` failed")]
    Process {
        /// The profile's name.
        profile: String,
        /// What went wrong.
        #[source]
        source: Arc<ProcessError>,
    },
}

/// How a `credential_process` failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProcessError {
    /// The command could not be started.
    #[error("cannot run `{command}`")]
    Spawn {
        /// The command line.
        command: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The command exited unsuccessfully.
    #[error("`{command}` exited with {status}: {stderr}")]
    Exit {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The start of its standard error.
        stderr: String,
    },
    /// Its output is not the JSON document the protocol defines.
    #[error("output is not a credential_process JSON document")]
    Output(#[source] serde_json::Error),
    /// `Version` is not 1.
    #[error("unsupported credential_process Version {0}")]
    Version(i64),
    /// `Expiration` is not an RFC 3339 timestamp.
    #[error("Expiration `{0}` is not an RFC 3339 timestamp")]
    Expiration(String),
    /// The credentials expire too soon to be used.
    #[error("credentials expire at `{0}`, too soon to be used")]
    Expired(String),
}

/// What the chain found.
#[derive(Debug)]
enum Source {
    /// Keys that never change.
    Static(Credentials),
    /// A `credential_process`, with the credentials it last printed. The lock is tokio's:
    /// it is held while the process runs so that concurrent callers wait for one refresh
    /// instead of each starting the command.
    Process {
        profile: String,
        command: String,
        cached: tokio::sync::Mutex<Option<Credentials>>,
    },
    /// Nothing usable; the error is reported on every call.
    Missing(CredentialsError),
}

/// The JSON document a `credential_process` prints.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ProcessOutput {
    version: i64,
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    expiration: Option<String>,
}

/// One profile's keys, merged from both shared files.
#[derive(Debug, Default)]
struct Profile {
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    session_token: Option<String>,
    credential_process: Option<String>,
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

impl CredentialsProvider {
    /// Resolves the chain against this process's environment and home directory. Called
    /// once, when the gateway starts.
    pub(crate) fn from_environment(config: &AwsConfig) -> CredentialsProvider {
        let env: HashMap<String, String> = [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_SHARED_CREDENTIALS_FILE",
            "AWS_CONFIG_FILE",
            "HOME",
        ]
        .into_iter()
        .filter_map(|name| Some((name.to_owned(), std::env::var(name).ok()?)))
        .collect();
        let home = env.get("HOME").map(PathBuf::from);
        CredentialsProvider::from_parts(config, &env, home.as_deref())
    }

    /// Resolves the chain against the given environment variables and home directory, so
    /// tests never touch the process environment.
    pub(crate) fn from_parts(
        config: &AwsConfig,
        env: &HashMap<String, String>,
        home: Option<&Path>,
    ) -> CredentialsProvider {
        CredentialsProvider {
            source: Arc::new(resolve(config, env, home)),
        }
    }

    /// Credentials valid now, running the `credential_process` when its last answer is
    /// missing or about to expire.
    pub(crate) async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        self.credentials_at(SystemTime::now()).await
    }

    /// [`CredentialsProvider::credentials`] as of `now`.
    pub(crate) async fn credentials_at(
        &self,
        now: SystemTime,
    ) -> Result<Credentials, CredentialsError> {
        match &*self.source {
            Source::Static(credentials) => Ok(credentials.clone()),
            Source::Missing(error) => Err(error.clone()),
            Source::Process {
                profile,
                command,
                cached,
            } => {
                let mut cached = cached.lock().await;
                if let Some(credentials) = cached.as_ref().filter(|found| fresh(found, now)) {
                    return Ok(credentials.clone());
                }
                let credentials = run_process(command, now).await.map_err(|source| {
                    CredentialsError::Process {
                        profile: profile.clone(),
                        source: Arc::new(source),
                    }
                })?;
                *cached = Some(credentials.clone());
                Ok(credentials)
            }
        }
    }
}

/// Whether credentials can still be used at `now` without a refresh.
fn fresh(credentials: &Credentials, now: SystemTime) -> bool {
    credentials
        .expires_at
        .is_none_or(|expires_at| now + REFRESH_BEFORE_EXPIRY < expires_at)
}

fn resolve(config: &AwsConfig, env: &HashMap<String, String>, home: Option<&Path>) -> Source {
    if let (Some(access_key_id), Some(secret_access_key)) =
        (&config.access_key_id, &config.secret_access_key)
    {
        return Source::Static(Credentials {
            access_key_id: access_key_id.clone(),
            secret_access_key: secret_access_key.clone(),
            session_token: config.session_token.clone(),
            expires_at: None,
        });
    }
    let non_empty = |name: &str| env.get(name).filter(|value| !value.is_empty());
    if let (Some(access_key_id), Some(secret_access_key)) = (
        non_empty("AWS_ACCESS_KEY_ID"),
        non_empty("AWS_SECRET_ACCESS_KEY"),
    ) {
        return Source::Static(Credentials {
            access_key_id: access_key_id.clone(),
            secret_access_key: secret_access_key.clone(),
            session_token: non_empty("AWS_SESSION_TOKEN").cloned(),
            expires_at: None,
        });
    }

    let named = config
        .profile
        .clone()
        .or_else(|| non_empty("AWS_PROFILE").cloned());
    let profile_name = named.clone().unwrap_or_else(|| "default".to_owned());
    let file = |variable: &str, default: &str| {
        non_empty(variable)
            .map(PathBuf::from)
            .or_else(|| home.map(|home| home.join(".aws").join(default)))
    };
    let credentials_file = file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    let config_file = file("AWS_CONFIG_FILE", "config");
    let searched = [&credentials_file, &config_file]
        .into_iter()
        .flatten()
        .map(|path| format!("`{}`", path.display()))
        .collect::<Vec<_>>()
        .join(" and ");
    let searched = format!("profile `{profile_name}` in {searched}");

    // Values in the credentials file win over the config file, key by key, as in the CLI.
    let mut profile = Profile::default();
    let mut found = false;
    let config_section = if profile_name == "default" {
        vec!["default".to_owned(), "profile default".to_owned()]
    } else {
        vec![format!("profile {profile_name}")]
    };
    for (path, sections) in [
        (&config_file, config_section),
        (&credentials_file, vec![profile_name.clone()]),
    ] {
        let Some(text) = path
            .as_ref()
            .and_then(|path| std::fs::read_to_string(path).ok())
        else {
            continue;
        };
        let parsed = parse_ini(&text);
        for section in sections {
            if let Some(values) = parsed.get(&section) {
                found = true;
                profile.merge(values);
            }
        }
    }

    match profile {
        Profile {
            access_key_id: Some(access_key_id),
            secret_access_key: Some(secret_access_key),
            session_token,
            ..
        } => Source::Static(Credentials {
            access_key_id,
            secret_access_key,
            session_token,
            expires_at: None,
        }),
        Profile {
            credential_process: Some(command),
            ..
        } => Source::Process {
            profile: profile_name,
            command,
            cached: tokio::sync::Mutex::new(None),
        },
        Profile {
            access_key_id: Some(_),
            ..
        }
        | Profile {
            secret_access_key: Some(_),
            ..
        } => Source::Missing(CredentialsError::IncompleteProfile {
            profile: profile_name,
        }),
        _ if !found && named.is_some() => Source::Missing(CredentialsError::ProfileNotFound {
            profile: profile_name,
            searched,
        }),
        _ => Source::Missing(CredentialsError::NotFound { searched }),
    }
}

impl Profile {
    fn merge(&mut self, values: &HashMap<String, String>) {
        let take = |key: &str| values.get(key).filter(|value| !value.is_empty()).cloned();
        for (slot, key) in [
            (&mut self.access_key_id, "aws_access_key_id"),
            (&mut self.secret_access_key, "aws_secret_access_key"),
            (&mut self.session_token, "aws_session_token"),
            (&mut self.credential_process, "credential_process"),
        ] {
            if let Some(value) = take(key) {
                *slot = Some(value);
            }
        }
    }
}

/// Parses the INI dialect of the shared files: `[section]` headers, `key = value` lines,
/// comments starting with `#` or `;`. Keys are lower-cased; indented lines continue a
/// nested setting (`s3 =` followed by indented keys) and are skipped.
fn parse_ini(text: &str) -> HashMap<String, HashMap<String, String>> {
    let mut sections: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            continue;
        }
        if let Some(header) = trimmed
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        {
            let name = header.split_whitespace().collect::<Vec<_>>().join(" ");
            sections.entry(name.clone()).or_default();
            current = Some(name);
            continue;
        }
        let (Some(section), Some((key, value))) = (&current, trimmed.split_once('=')) else {
            continue;
        };
        sections
            .entry(section.clone())
            .or_default()
            .insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    sections
}

/// Largest `credential_process` output read, far more than any real document.
const MAX_PROCESS_OUTPUT: usize = 64 * 1024;

/// Runs `command` through `sh -c` (as the AWS SDKs do on Unix) and reads its JSON.
async fn run_process(command: &str, now: SystemTime) -> Result<Credentials, ProcessError> {
    let output = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| ProcessError::Spawn {
            command: command.to_owned(),
            source,
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(ProcessError::Exit {
            command: command.to_owned(),
            status: output.status,
            stderr: stderr
                .chars()
                .take(200)
                .collect::<String>()
                .trim()
                .to_owned(),
        });
    }
    let stdout = &output.stdout[..output.stdout.len().min(MAX_PROCESS_OUTPUT)];
    read_process_output(stdout, now)
}

/// Reads a `credential_process` document.
fn read_process_output(stdout: &[u8], now: SystemTime) -> Result<Credentials, ProcessError> {
    let document: ProcessOutput = serde_json::from_slice(stdout).map_err(ProcessError::Output)?;
    if document.version != 1 {
        return Err(ProcessError::Version(document.version));
    }
    let expires_at = match &document.expiration {
        None => None,
        Some(text) => {
            Some(parse_rfc3339(text).ok_or_else(|| ProcessError::Expiration(text.clone()))?)
        }
    };
    if expires_at.is_some_and(|expires_at| expires_at <= now) {
        return Err(ProcessError::Expired(
            document.expiration.unwrap_or_default(),
        ));
    }
    Ok(Credentials {
        access_key_id: document.access_key_id,
        secret_access_key: document.secret_access_key,
        session_token: document.session_token.filter(|token| !token.is_empty()),
        expires_at,
    })
}

#[cfg(test)]
mod tests;
