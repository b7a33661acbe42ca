//! Validation of throttling settings: `[throttling]` and each route's `throttling_*` keys, into
//! [`RateLimit`]s. The buckets themselves live in `gateway::throttle`.

use serde_spanned::Spanned;

use super::raw::RawThrottling;
use super::validate::Problems;
use super::{RateLimit, Throttling};

/// Largest rate accepted, in requests per second: far above what one node serves, and small
/// enough that one token's interval stays a whole number of nanoseconds.
const MAX_RATE: f64 = 1e9;

/// Largest burst accepted.
const MAX_BURST: i64 = 100_000_000;

/// Validates `[throttling]`, recording problems; the defaults stand in for rejected values.
pub(super) fn validate_throttling(raw: &RawThrottling, problems: &mut Problems<'_>) -> Throttling {
    let defaults = Throttling::default();
    let connect_per_ip = rate_limit(
        problems,
        (
            "throttling.connect_rate_limit_per_ip",
            raw.connect_rate_limit_per_ip.as_ref(),
        ),
        (
            "throttling.connect_burst_limit_per_ip",
            raw.connect_burst_limit_per_ip.as_ref(),
        ),
        defaults.connect_per_ip,
    );
    // `throttling.{prefix}rate_limit` and `throttling.{prefix}burst_limit`.
    let mut bucket = |prefix: &str, rate, burst, fallback| {
        let rate_key = format!("throttling.{prefix}rate_limit");
        let burst_key = format!("throttling.{prefix}burst_limit");
        rate_limit(problems, (&rate_key, rate), (&burst_key, burst), fallback)
    };
    Throttling {
        route_default: bucket(
            "",
            raw.rate_limit.as_ref(),
            raw.burst_limit.as_ref(),
            defaults.route_default,
        ),
        connect: bucket(
            "connect_",
            raw.connect_rate_limit.as_ref(),
            raw.connect_burst_limit.as_ref(),
            defaults.connect,
        ),
        connect_per_ip,
        management: bucket(
            "management_",
            raw.management_rate_limit.as_ref(),
            raw.management_burst_limit.as_ref(),
            defaults.management,
        ),
    }
}

/// One bucket from its rate and burst keys (each a key path and its raw value).
///
/// - rate absent: `fallback`, with the burst key applied to it when given;
/// - rate 0: no bucket (a burst key next to it is a problem, since it would do nothing);
/// - rate positive: that rate, with the burst key or one second's worth of requests.
pub(super) fn rate_limit(
    problems: &mut Problems<'_>,
    (rate_key, raw_rate): (&str, Option<&Spanned<f64>>),
    (burst_key, raw_burst): (&str, Option<&Spanned<i64>>),
    fallback: Option<RateLimit>,
) -> Option<RateLimit> {
    let burst = raw_burst.and_then(|raw| {
        let value = *raw.get_ref();
        if (1..=MAX_BURST).contains(&value) {
            Some(u32::try_from(value).expect("the burst was checked to fit"))
        } else {
            problems.add(
                burst_key.to_owned(),
                raw.span(),
                format!("must be between 1 and {MAX_BURST}, got {value}"),
            );
            None
        }
    });
    let Some(raw_rate) = raw_rate else {
        return match (fallback, burst) {
            (Some(limit), Some(burst)) => Some(RateLimit { burst, ..limit }),
            (Some(limit), None) => Some(limit),
            (None, Some(_)) => {
                let span = raw_burst.map(Spanned::span).unwrap_or_default();
                problems.add(
                    burst_key.to_owned(),
                    span,
                    format!("needs {rate_key}: a burst without a rate throttles nothing"),
                );
                None
            }
            (None, None) => None,
        };
    };
    let rate = *raw_rate.get_ref();
    if !(rate.is_finite() && (0.0..=MAX_RATE).contains(&rate)) {
        problems.add(
            rate_key.to_owned(),
            raw_rate.span(),
            format!(
                "must be a number of requests per second between 0 and {MAX_RATE:e}, got {rate}"
            ),
        );
        return fallback;
    }
    if rate == 0.0 {
        if let Some(raw) = raw_burst {
            problems.add(
                burst_key.to_owned(),
                raw.span(),
                format!("has no effect: {rate_key} = 0 turns this throttle off"),
            );
        }
        return None;
    }
    let burst = burst.unwrap_or_else(|| {
        // One second at the rate, and at least one request.
        rate.ceil().clamp(1.0, MAX_BURST as f64) as u32
    });
    Some(RateLimit { rate, burst })
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, RateLimit, Throttling};

    fn load(text: &str) -> Result<Config, String> {
        Config::from_toml(text, "t.toml").map_err(|error| error.to_string())
    }

    #[test]
    fn defaults_throttle_connects_and_management_calls_but_not_routes() {
        let config = load("").unwrap();
        assert_eq!(config.throttling, Throttling::default());
        assert_eq!(config.throttling.route_default, None);
        assert_eq!(
            config.throttling.connect,
            Some(RateLimit {
                rate: 1000.0,
                burst: 2000
            })
        );
        assert_eq!(config.limits.max_connections, 100_000);
        assert_eq!(
            config.limits.max_connections_per_ip, None,
            "no per-client cap, as on AWS"
        );
    }

    #[test]
    fn routes_take_their_own_buckets_or_the_stage_default() {
        let config = load(
            r#"
            [throttling]
            rate_limit = 50
            burst_limit = 10
            connect_rate_limit = 0
            management_rate_limit = 2.5

            [integrations.mock]
            type = "mock"

            [routes."$default"]
            integration = "mock"

            [routes.chat]
            integration = "mock"
            throttling_rate_limit = 5
            throttling_burst_limit = 2

            [routes.free]
            integration = "mock"
            throttling_rate_limit = 0

            [routes."$disconnect"]
            integration = "mock"
            "#,
        )
        .unwrap();
        let throttling = |key: &str| {
            config
                .routes
                .iter()
                .find(|route| route.key.as_str() == key)
                .unwrap()
                .throttling
        };
        assert_eq!(
            throttling("$default"),
            Some(RateLimit {
                rate: 50.0,
                burst: 10
            })
        );
        assert_eq!(
            throttling("chat"),
            Some(RateLimit {
                rate: 5.0,
                burst: 2
            })
        );
        assert_eq!(throttling("free"), None);
        assert_eq!(throttling("$disconnect"), None);
        assert_eq!(config.throttling.connect, None);
        assert_eq!(
            config.throttling.management,
            Some(RateLimit {
                rate: 2.5,
                burst: 3
            })
        );
    }

    #[test]
    fn bad_values_are_reported_with_their_key() {
        let error = load(
            r#"
            [throttling]
            rate_limit = -1
            burst_limit = 0
            connect_rate_limit = 0
            connect_burst_limit = 5
            management_burst_limit = 9

            [limits]
            max_connections = 0
            max_connections_per_ip = -3

            [integrations.mock]
            type = "mock"

            [routes."$disconnect"]
            integration = "mock"
            throttling_rate_limit = 10
            "#,
        )
        .unwrap_err();
        for expected in [
            "throttling.rate_limit: must be a number of requests per second",
            "throttling.burst_limit: must be between 1 and",
            "throttling.connect_burst_limit: has no effect",
            "limits.max_connections: must be between 1 and",
            "limits.max_connections_per_ip: must be between 0 and",
            "routes.\"$disconnect\".throttling_rate_limit: $disconnect is never throttled",
        ] {
            assert!(
                error.contains(expected),
                "{expected:?} missing from:\n{error}"
            );
        }
        // A burst on its own adjusts the default bucket.
        let config = load("[throttling]\nmanagement_burst_limit = 9\n").unwrap();
        assert_eq!(
            config.throttling.management,
            Some(RateLimit {
                rate: 10_000.0,
                burst: 9
            })
        );
        let error = load("[throttling]\nburst_limit = 9\n").unwrap_err();
        assert!(
            error.contains("throttling.burst_limit: needs throttling.rate_limit"),
            "{error}"
        );
    }
}
