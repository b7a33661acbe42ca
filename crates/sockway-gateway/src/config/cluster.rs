//! Validation of `[cluster]` into a [`ClusterConfig`]: the Redis URLs, the node id (from the
//! file or from the environment variable `cluster.node_id_env` names), the
//! liveness timings and the names of the `rediss://` certificate files. Connecting to Redis,
//! reading those files and running heartbeats belong to `gateway::cluster`.

use std::path::PathBuf;
use std::time::Duration;

use serde_spanned::Spanned;

use super::duration::format_duration;
use super::raw::{RawCluster, RawRedisUrls};
use super::validate::{DurationRule, Lookup, Problems, environment_value};
use super::{ClusterConfig, RedisTlsConfig};

/// Bounds of `cluster.node_timeout`.
const NODE_TIMEOUT_RULE: DurationRule =
    DurationRule::Between(Duration::from_secs(1), Duration::from_secs(10 * 60));

/// Shortest `cluster.heartbeat_interval`; the longest is half of `node_timeout`.
const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);

/// Validates `[cluster]`, recording problems; `None` if it has any.
pub(super) fn validate_cluster(
    raw: &RawCluster,
    env: Lookup<'_>,
    problems: &mut Problems<'_>,
) -> Option<ClusterConfig> {
    let before = problems.count();
    let redis_urls = redis_urls(&raw.redis_url, problems);
    let node_id = node_id(raw, env, problems);

    let node_timeout = problems.duration(
        "cluster.node_timeout".to_owned(),
        raw.node_timeout.as_ref(),
        NODE_TIMEOUT_RULE,
    );
    // Compare the heartbeat with node_timeout only when it is what the user wrote (or the
    // default), not a stand-in for a rejected value.
    let node_timeout_valid = raw.node_timeout.is_none() || node_timeout.is_some();
    let node_timeout = node_timeout.unwrap_or(ClusterConfig::DEFAULT_NODE_TIMEOUT);
    let heartbeat_interval = match &raw.heartbeat_interval {
        None => ClusterConfig::default_heartbeat_interval(node_timeout),
        Some(raw_interval) => {
            let max = node_timeout / 2;
            let interval = problems.duration(
                "cluster.heartbeat_interval".to_owned(),
                Some(raw_interval),
                DurationRule::Any,
            );
            let problem = match interval {
                Some(interval) if !node_timeout_valid && interval < MIN_HEARTBEAT_INTERVAL => {
                    Some(format!(
                        "must be at least {}",
                        format_duration(MIN_HEARTBEAT_INTERVAL)
                    ))
                }
                Some(interval)
                    if node_timeout_valid
                        && (interval < MIN_HEARTBEAT_INTERVAL || interval > max) =>
                {
                    Some(format!(
                        "must be between {} and {} (half of cluster.node_timeout), got {:?}",
                        format_duration(MIN_HEARTBEAT_INTERVAL),
                        format_duration(max),
                        raw_interval.get_ref().0
                    ))
                }
                _ => None,
            };
            if let Some(message) = problem {
                problems.add(
                    "cluster.heartbeat_interval".to_owned(),
                    raw_interval.span(),
                    message,
                );
            }
            interval.unwrap_or_else(|| ClusterConfig::default_heartbeat_interval(node_timeout))
        }
    };

    let redis_tls = redis_tls(raw, &redis_urls, problems);
    let redis_password = match (&raw.redis_password, &raw.redis_password_env) {
        (Some(_), Some(variable)) => {
            problems.add(
                "cluster.redis_password_env".to_owned(),
                variable.span(),
                "set either redis_password or redis_password_env, not both".to_owned(),
            );
            None
        }
        (Some(password), None) => problems.string(
            "cluster.redis_password",
            Some(password),
            |password: &str| password.is_empty().then(|| "must not be empty".to_owned()),
        ),
        (None, Some(variable)) => {
            environment_value("cluster.redis_password_env", variable, env, problems)
        }
        (None, None) => None,
    };

    if problems.count() > before {
        return None;
    }
    Some(ClusterConfig {
        redis_urls,
        node_id,
        node_timeout,
        heartbeat_interval,
        redis_tls,
        redis_password,
    })
}

/// The node id: `cluster.node_id`, or the value of the variable `cluster.node_id_env` names
/// (checked as a node id, and named in the message when it is not one), or `None` when
/// neither is set. Setting both is a problem: the file would not say which one wins.
fn node_id(raw: &RawCluster, env: Lookup<'_>, problems: &mut Problems<'_>) -> Option<String> {
    let Some(variable) = &raw.node_id_env else {
        return problems.string("cluster.node_id", raw.node_id.as_ref(), node_id_problem);
    };
    if raw.node_id.is_some() {
        problems.add(
            "cluster.node_id_env".to_owned(),
            variable.span(),
            "cannot be combined with cluster.node_id: set one of them".to_owned(),
        );
        return None;
    }
    let node_id = environment_value("cluster.node_id_env", variable, env, problems)?;
    match node_id_problem(&node_id) {
        Some(message) => {
            let name = variable.get_ref();
            problems.add(
                "cluster.node_id_env".to_owned(),
                variable.span(),
                format!("environment variable {name}: {message}"),
            );
            None
        }
        None => Some(node_id),
    }
}

/// Reads `cluster.tls_ca_file`, `tls_cert_file` and `tls_key_file`: file names only (the files
/// are read when the node joins), meaningful only with `rediss://` URLs, and the client
/// certificate and key come together.
fn redis_tls(
    raw: &RawCluster,
    redis_urls: &[String],
    problems: &mut Problems<'_>,
) -> Option<RedisTlsConfig> {
    let path = |problems: &mut Problems<'_>, key: &str, raw: Option<&Spanned<String>>| {
        problems
            .string(key, raw, |path| {
                path.trim()
                    .is_empty()
                    .then(|| "must name a PEM file".to_owned())
            })
            .map(PathBuf::from)
    };
    let ca_file = path(problems, "cluster.tls_ca_file", raw.tls_ca_file.as_ref());
    let cert_file = path(
        problems,
        "cluster.tls_cert_file",
        raw.tls_cert_file.as_ref(),
    );
    let key_file = path(problems, "cluster.tls_key_file", raw.tls_key_file.as_ref());
    let client_identity = match (&raw.tls_cert_file, &raw.tls_key_file) {
        (Some(_), None) => {
            let span = raw.tls_cert_file.as_ref().map(Spanned::span);
            problems.add(
                "cluster.tls_key_file".to_owned(),
                span.unwrap_or_default(),
                "is required with cluster.tls_cert_file (the client certificate's private key)"
                    .to_owned(),
            );
            None
        }
        (None, Some(key)) => {
            problems.add(
                "cluster.tls_cert_file".to_owned(),
                key.span(),
                "is required with cluster.tls_key_file (the client certificate chain)".to_owned(),
            );
            None
        }
        _ => cert_file.zip(key_file),
    };
    let first_key = [
        ("cluster.tls_ca_file", &raw.tls_ca_file),
        ("cluster.tls_cert_file", &raw.tls_cert_file),
        ("cluster.tls_key_file", &raw.tls_key_file),
    ]
    .into_iter()
    .find_map(|(key, value)| value.as_ref().map(|value| (key, value.span())));
    let (key, span) = first_key?;
    if let Some(plain) = redis_urls.iter().find(|url| !url.starts_with("rediss://")) {
        problems.add(
            key.to_owned(),
            span,
            format!(
                "applies to rediss:// URLs only, but cluster.redis_url has {:?} \
                 (use rediss:// for every Redis URL, or remove the cluster.tls_* keys)",
                redacted_redis_url(plain)
            ),
        );
        return None;
    }
    Some(RedisTlsConfig {
        ca_file,
        client_identity,
    })
}

/// Reads `cluster.redis_url`, one URL or a non-empty list of them.
fn redis_urls(raw: &Spanned<RawRedisUrls>, problems: &mut Problems<'_>) -> Vec<String> {
    match raw.get_ref() {
        RawRedisUrls::One(url) => {
            if let Some(message) = redis_url_problem(url) {
                problems.add("cluster.redis_url".to_owned(), raw.span(), message);
            }
            vec![url.clone()]
        }
        RawRedisUrls::Many(urls) if urls.is_empty() => {
            problems.add(
                "cluster.redis_url".to_owned(),
                raw.span(),
                "must list at least one Redis URL".to_owned(),
            );
            Vec::new()
        }
        RawRedisUrls::Many(urls) => {
            for (index, url) in urls.iter().enumerate() {
                if let Some(message) = redis_url_problem(url.get_ref()) {
                    problems.add(format!("cluster.redis_url[{index}]"), url.span(), message);
                }
            }
            urls.iter().map(|url| url.get_ref().clone()).collect()
        }
    }
}

/// `url` with the password in its user part, if any, replaced by `****`, for messages and
/// `Debug` output.
pub(crate) fn redacted_redis_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((user_info, _)) => {
            let user = user_info
                .split_once(':')
                .map_or(user_info, |(user, _)| user);
            let redacted = if user_info.contains(':') {
                format!("{user}:****")
            } else {
                "****".to_owned()
            };
            format!("{scheme}://{redacted}{}", &rest[user_info.len()..])
        }
        None => url.to_owned(),
    }
}

/// What is wrong with a Redis URL, if anything: `redis://` and `rediss://` need a host,
/// `redis+unix://` an absolute socket path.
fn redis_url_problem(url: &str) -> Option<String> {
    let shown = redacted_redis_url(url);
    let expected = "(expected redis://host:port, rediss://host:port or \
                    redis+unix:///path/to/socket)";
    if let Some(path) = url.strip_prefix("redis+unix://") {
        return (!path.starts_with('/') || path.len() < 2)
            .then(|| format!("Redis URL {shown:?} has no absolute socket path {expected}"));
    }
    let Some(rest) = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"))
    else {
        return Some(format!(
            "Redis URL {shown:?} has an unsupported scheme {expected}"
        ));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    (host.is_empty() || host.starts_with(':') || host.contains(char::is_whitespace))
        .then(|| format!("Redis URL {shown:?} has no host {expected}"))
}

/// What is wrong with a node id, if anything.
fn node_id_problem(node_id: &str) -> Option<String> {
    let valid = (1..=64).contains(&node_id.len())
        && node_id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-'));
    (!valid).then(|| {
        format!(
            "{node_id:?} is not a node id: 1 to 64 characters of A-Z, a-z, 0-9, '_', '.' and '-'"
        )
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::validate::parse_and_validate;
    use super::super::{Config, ConfigProblem, RedisTlsConfig};

    fn parse(text: &str) -> Result<Config, Vec<ConfigProblem>> {
        parse_and_validate(text, &|_| None)
    }

    /// Checks that `[cluster]` with `body` parses into `expected` TLS settings.
    fn check_tls(body: &str, expected: Option<RedisTlsConfig>) {
        let text = format!("[cluster]\n{body}\n");
        let config = parse(&text).unwrap_or_else(|problems| panic!("{text}: {problems:?}"));
        assert_eq!(config.cluster.unwrap().redis_tls, expected, "{text}");
    }

    /// Checks that `[cluster]` with `body` has exactly one problem, at `key_path` on `line`
    /// (of the whole text), whose message contains `fragment`.
    fn check_problem(body: &str, key_path: &str, line: usize, fragment: &str) {
        let text = format!("[cluster]\n{body}\n");
        let problems = parse(&text).expect_err(&text);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key_path, key_path, "{problems:?}");
        assert_eq!(problems[0].line, Some(line), "{problems:?}");
        assert!(
            problems[0].message.contains(fragment),
            "{:?} lacks {fragment:?}",
            problems[0].message
        );
    }

    #[test]
    fn rediss_tls_files_are_read_as_names() {
        check_tls("redis_url = \"rediss://r:6380\"", None);
        check_tls("redis_url = \"redis://r:6379\"", None);
        check_tls(
            "redis_url = \"rediss://r:6380\"\ntls_ca_file = \"ca.pem\"",
            Some(RedisTlsConfig {
                ca_file: Some(PathBuf::from("ca.pem")),
                client_identity: None,
            }),
        );
        check_tls(
            "redis_url = [\"rediss://a:7000\", \"rediss://b:7001\"]\n\
             tls_cert_file = \"/etc/sockway/client.pem\"\ntls_key_file = \"/etc/sockway/client.key\"",
            Some(RedisTlsConfig {
                ca_file: None,
                client_identity: Some((
                    PathBuf::from("/etc/sockway/client.pem"),
                    PathBuf::from("/etc/sockway/client.key"),
                )),
            }),
        );
    }

    #[test]
    fn rediss_tls_errors_name_key_path_and_line() {
        check_problem(
            "redis_url = \"redis://r:6379\"\ntls_ca_file = \"ca.pem\"",
            "cluster.tls_ca_file",
            3,
            "applies to rediss:// URLs only, but cluster.redis_url has \"redis://r:6379\"",
        );
        check_problem(
            "redis_url = [\"rediss://a:7000\", \"redis://b:7001\"]\ntls_cert_file = \"c.pem\"\n\
             tls_key_file = \"k.pem\"",
            "cluster.tls_cert_file",
            3,
            "\"redis://b:7001\"",
        );
        check_problem(
            "redis_url = \"rediss://r:6380\"\ntls_cert_file = \"c.pem\"",
            "cluster.tls_key_file",
            3,
            "is required with cluster.tls_cert_file",
        );
        check_problem(
            "redis_url = \"rediss://r:6380\"\ntls_key_file = \"k.pem\"",
            "cluster.tls_cert_file",
            3,
            "is required with cluster.tls_key_file",
        );
        check_problem(
            "redis_url = \"rediss://r:6380\"\ntls_ca_file = \" \"",
            "cluster.tls_ca_file",
            3,
            "must name a PEM file",
        );
        check_problem(
            "redis_url = \"rediss://r:6380\"\ntls_ca_file = 3",
            "cluster.tls_ca_file",
            3,
            "",
        );
    }

    fn check_redacted(url: &str, expected: &str) {
        assert_eq!(super::redacted_redis_url(url), expected, "{url}");
    }

    #[test]
    fn redis_passwords_are_redacted_and_nothing_else() {
        check_redacted(
            "redis://:hunter2@redis.internal:6379/0",
            "redis://:****@redis.internal:6379/0",
        );
        check_redacted(
            "rediss://sockway:s3cret@redis.internal:6380",
            "rediss://sockway:****@redis.internal:6380",
        );
        check_redacted(
            "redis://token@redis.internal",
            "redis://****@redis.internal",
        );
        check_redacted("redis://127.0.0.1:6379", "redis://127.0.0.1:6379");
        check_redacted(
            "redis+unix:///run/redis.sock",
            "redis+unix:///run/redis.sock",
        );
        check_redacted("not a url", "not a url");
    }
}
