//! Validation of `[cluster]` into a [`ClusterConfig`]: the Redis URLs, the node id and the
//! liveness timings. Connecting to Redis and running heartbeats belong to
//! `gateway::cluster`.

use std::time::Duration;

use serde_spanned::Spanned;

use super::ClusterConfig;
use super::duration::format_duration;
use super::raw::{RawCluster, RawRedisUrls};
use super::validate::{DurationRule, Problems};

/// Bounds of `cluster.node_timeout`.
const NODE_TIMEOUT_RULE: DurationRule =
    DurationRule::Between(Duration::from_secs(1), Duration::from_secs(10 * 60));

/// Shortest `cluster.heartbeat_interval`; the longest is half of `node_timeout`.
const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);

/// Validates `[cluster]`, recording problems; `None` if it has any.
pub(super) fn validate_cluster(
    raw: &RawCluster,
    problems: &mut Problems<'_>,
) -> Option<ClusterConfig> {
    let before = problems.count();
    let redis_urls = redis_urls(&raw.redis_url, problems);
    let node_id = problems.string("cluster.node_id", raw.node_id.as_ref(), node_id_problem);

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

    if problems.count() > before {
        return None;
    }
    Some(ClusterConfig {
        redis_urls,
        node_id,
        node_timeout,
        heartbeat_interval,
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

/// What is wrong with a Redis URL, if anything: `redis://` and `rediss://` need a host,
/// `redis+unix://` an absolute socket path.
fn redis_url_problem(url: &str) -> Option<String> {
    let expected = "(expected redis://host:port, rediss://host:port or \
                    redis+unix:///path/to/socket)";
    if let Some(path) = url.strip_prefix("redis+unix://") {
        return (!path.starts_with('/') || path.len() < 2)
            .then(|| format!("Redis URL {url:?} has no absolute socket path {expected}"));
    }
    let Some(rest) = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"))
    else {
        return Some(format!(
            "Redis URL {url:?} has an unsupported scheme {expected}"
        ));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    (host.is_empty() || host.starts_with(':') || host.contains(char::is_whitespace))
        .then(|| format!("Redis URL {url:?} has no host {expected}"))
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
