//! The security trade-offs a valid configuration makes, stated for the operator among
//! [`Config::warnings`]: `sockway validate` prints them and a starting gateway logs them. Each is a setting that
//! is right for some deployments and dangerous in others, so it is allowed and said out loud
//! rather than refused (docs/security.md has the trust model they refer to).

use super::cluster::redacted_redis_url;
use super::{Config, ConfigWarning};

/// The trade-offs `config` makes, in a stable order.
pub(super) fn trust_warnings(config: &Config) -> Vec<ConfigWarning> {
    let mut warnings = Vec::new();
    let mut warn = |key_path: &str, message: String| {
        warnings.push(ConfigWarning {
            key_path: key_path.to_owned(),
            message,
        });
    };
    let networks = &config.management.trusted_networks;
    if !networks.is_empty() {
        let listed: Vec<String> = networks.iter().map(ToString::to_string).collect();
        let everything = networks.iter().any(|range| range.is_everything());
        warn(
            "management.trusted_networks",
            format!(
                "callers from {} may sign @connections calls with any access key: the \
                     signature's form, scope and time are checked and the access key id is \
                     logged, but the signature itself is not (only AWS can verify an AWS \
                     role's temporary credentials). Anything that can send from these \
                     networks can post to, read and close every connection{}",
                listed.join(", "),
                if everything {
                    "; a /0 range is every address, so this is the whole internet: list \
                         the subnets your backends run in"
                } else {
                    ". Keep the ranges to the subnets your backends run in"
                }
            ),
        );
    }
    if let Some(cluster) = &config.cluster {
        for url in &cluster.redis_urls {
            let shown = redacted_redis_url(url);
            if url.starts_with("redis://") && !names_loopback(url) {
                warn(
                    "cluster.redis_url",
                    format!(
                        "{shown} is reached without TLS: anyone on the network path can \
                             read and forge cluster traffic; use rediss://"
                    ),
                );
            }
            let has_password = cluster.redis_password.is_some()
                || url
                    .split_once("://")
                    .and_then(|(_, rest)| rest.split('/').next())
                    .is_some_and(|authority| authority.contains('@'));
            if !has_password && !url.starts_with("redis+unix://") {
                warn(
                    "cluster.redis_url",
                    format!(
                        "{shown} is reached without a password: any client that reaches \
                             it can act as a gateway node; set one (cluster.redis_password_env \
                             or the URL)"
                    ),
                );
            }
        }
    }
    if let Some(tracing) = &config.tracing {
        let endpoint = &tracing.endpoint;
        let local = endpoint
            .authority()
            .and_then(|authority| super::Authority::parse(authority.as_str()))
            .is_some_and(|authority| authority.names_loopback());
        if endpoint.scheme_str() == Some("http") && !local && !tracing.headers.is_empty() {
            warn(
                "tracing.endpoint",
                format!(
                    "{endpoint} is reached without TLS and tracing.headers or \
                         tracing.headers_env are sent with every export (an API key, usually): \
                         anyone on the network path can read them; use https://"
                ),
            );
        }
    }
    warnings
}

/// Whether a `redis://` URL's host is this machine.
fn names_loopback(url: &str) -> bool {
    url.strip_prefix("redis://")
        .and_then(|rest| {
            rest.rsplit_once('@')
                .map_or(Some(rest), |(_, host)| Some(host))
        })
        .and_then(|rest| rest.split(['/', '?']).next())
        .and_then(super::Authority::parse)
        .is_some_and(|authority| authority.names_loopback())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn warnings(extra: &str) -> Vec<String> {
        let text = format!(
            "[routes.\"$default\"]\nintegration = \"echo\"\n\n[integrations.echo]\ntype = \
             \"mock\"\nstatus_code = 200\n{extra}"
        );
        Config::from_toml_with_env(&text, "test.toml", |_: &str| None)
            .unwrap()
            .warnings()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn the_default_config_makes_no_trade_off() {
        assert_eq!(warnings(""), Vec::<String>::new());
    }

    #[test]
    fn trusted_networks_are_named_with_what_they_allow() {
        let found = warnings("[management]\ntrusted_networks = [\"10.0.0.0/16\"]\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("management.trusted_networks: callers from 10.0.0.0/16 may sign")
        );
        assert!(
            found[0].contains("subnets your backends run in"),
            "{}",
            found[0]
        );
        let found = warnings("[management]\ntrusted_networks = [\"0.0.0.0/0\"]\n");
        assert!(found[0].contains("the whole internet"), "{}", found[0]);
    }

    #[test]
    fn redis_without_tls_or_password_is_named_with_the_password_hidden() {
        let found = warnings("[cluster]\nredis_url = \"redis://redis.internal:6379\"\n");
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("without TLS"));
        assert!(found[1].contains("without a password"));
        let found = warnings("[cluster]\nredis_url = \"redis://:s3cret@127.0.0.1:6379\"\n");
        assert_eq!(found, Vec::<String>::new());
        let found = warnings("[cluster]\nredis_url = \"redis://:s3cret@redis.internal:6379\"\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(!found[0].contains("s3cret"), "{}", found[0]);
    }

    #[test]
    fn trace_headers_over_plain_http_are_named_without_their_values() {
        let found = warnings(
            "[tracing]\nendpoint = \"http://collector.internal:4318\"\nheaders = { authorization = \"Bearer s3cret\" }\n",
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with(
                "tracing.endpoint: http://collector.internal:4318/v1/traces is reached without TLS"
            ),
            "{}",
            found[0]
        );
        assert!(!found[0].contains("s3cret"), "{}", found[0]);
        for quiet in [
            "[tracing]\nendpoint = \"https://collector.internal\"\nheaders = { authorization = \"x\" }\n",
            "[tracing]\nendpoint = \"http://127.0.0.1:4318\"\nheaders = { authorization = \"x\" }\n",
            "[tracing]\nendpoint = \"http://collector.internal:4318\"\n",
        ] {
            assert_eq!(warnings(quiet), Vec::<String>::new(), "{quiet}");
        }
    }
}
