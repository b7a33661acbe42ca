//! API keys on `$connect`: AWS's `ApiKeyRequired` with usage plans.
//!
//! A `$connect` route with `api_key_required` admits an upgrade only with a key that is
//! configured, enabled and in a usage plan, found where `gateway.api_key_selection_expression`
//! says (the `x-api-key` header, or a REQUEST authorizer's `usageIdentifierKey`); anything else
//! is 403 `Forbidden` before `$connect` runs. The key's plan then throttles it (a token bucket
//! per key on each node: AWS's throttles are approximate too) and caps it with a quota per
//! day, week or month, counted through `cluster` so that every node shares one count (in
//! Redis, surviving restarts) or, on a single node, in memory. Over the throttle: 429 `Too Many
//! Requests`; over the quota: 429 `Limit Exceeded`, AWS's messages.
//!
//! When a use cannot be counted (Redis unreachable) the connect is admitted and the miss
//! counted in `sockway_api_key_uses_uncounted_total`: the per-node throttle still holds, and a
//! Redis outage does not lock every keyed client out.
//!
//! What a refusal looks like to the client is `connection::refusal`'s; this module decides.

use std::collections::HashMap;
use std::sync::Arc;

use sockway_protocol::event::AccessIdentity;
use sockway_protocol::route::RouteKey;
use sockway_protocol::time::civil_from_days;
use tracing::warn;

use crate::aws::time::days_from_civil;
use crate::cluster::{Cluster, ClusterError, Counted, UsageCount};
use crate::config::{ApiKeySelection, Config, Quota, QuotaPeriod, RateLimit};
use crate::metrics::Metrics;
use crate::throttle::{TokenBucket, carry_bucket};

/// Seconds in a day.
const DAY_SECONDS: u64 = 86_400;

/// The API keys and usage plans of one gateway.
#[derive(Debug)]
pub(crate) struct ApiKeys {
    /// Whether `$connect` requires a key.
    required: bool,
    selection: ApiKeySelection,
    keys: Vec<Key>,
    /// Index into `keys` by key value.
    by_value: HashMap<String, usize>,
}

/// One configured key with its plan.
#[derive(Debug)]
struct Key {
    id: String,
    name: String,
    value: String,
    enabled: bool,
    plan: Option<Plan>,
}

/// A key's usage plan: the plan's settings and this key's own bucket.
#[derive(Debug)]
struct Plan {
    name: String,
    /// The plan's throttle and this key's bucket, which a reload keeps while the key's id and
    /// its plan's throttle stay the same.
    throttle: Option<(RateLimit, Arc<TokenBucket>)>,
    quota: Option<Quota>,
}

/// Why an API key did not admit a connect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ApiKeyError {
    /// No key where the selection expression looks.
    #[error("no API key in the request")]
    Missing,
    /// A key that is not configured.
    #[error("unknown API key")]
    Unknown,
    /// A configured key that is disabled.
    #[error("API key {key_id} is disabled")]
    Disabled {
        /// The key's id.
        key_id: String,
    },
    /// A key in no usage plan (AWS refuses those too).
    #[error("API key {key_id} is in no usage plan")]
    NoUsagePlan {
        /// The key's id.
        key_id: String,
    },
    /// The plan's throttle refused it.
    #[error("API key {key_id} is over its usage plan's rate")]
    Throttled {
        /// The key's id.
        key_id: String,
        /// `Retry-After`, in whole seconds.
        retry_after_secs: u64,
    },
    /// The plan's quota for the period is used up.
    #[error("API key {key_id} has used its quota of {limit} connects per {period}")]
    QuotaExceeded {
        /// The key's id.
        key_id: String,
        /// The quota.
        limit: u64,
        /// `DAY`, `WEEK` or `MONTH`.
        period: &'static str,
    },
}

impl ApiKeyError {
    /// The `sockway_access_refused_total` label of a 403, or `None` for the throttles.
    pub(crate) fn refusal_label(&self) -> Option<&'static str> {
        match self {
            ApiKeyError::Missing => Some("api_key_missing"),
            ApiKeyError::Unknown => Some("api_key_unknown"),
            ApiKeyError::Disabled { .. } => Some("api_key_disabled"),
            ApiKeyError::NoUsagePlan { .. } => Some("api_key_no_usage_plan"),
            ApiKeyError::Throttled { .. } | ApiKeyError::QuotaExceeded { .. } => None,
        }
    }
}

/// One key's usage in its current period, as `GET @api-keys/usage` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyUsage {
    /// The key's id.
    pub(crate) id: String,
    /// The key's name.
    pub(crate) name: String,
    /// Whether the key is enabled.
    pub(crate) enabled: bool,
    /// The usage plan's name.
    pub(crate) usage_plan: Option<String>,
    /// The plan's quota.
    pub(crate) quota: Option<Quota>,
    /// The plan's throttle.
    pub(crate) throttle: Option<RateLimit>,
    /// The period counted: the quota's, or the UTC day for a key without a quota.
    pub(crate) period: Period,
    /// Uses counted in the period.
    pub(crate) used: u64,
}

/// A quota period: its label (part of the counter's name) and when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Period {
    /// `DAY:2026-11-28`, `WEEK:2026-11-22` (the Sunday it starts on) or `MONTH:2026-11`.
    pub(crate) label: String,
    /// The first second of the period, in epoch seconds.
    pub(crate) starts_at: u64,
    /// The first second after the period, in epoch seconds.
    pub(crate) ends_at: u64,
}

impl ApiKeys {
    /// The keys of `config`, or `None` when it has none. Each key keeps its bucket from
    /// `previous` (the running deployment's keys) when its plan's throttle is unchanged.
    pub(crate) fn from_config(config: &Config, previous: Option<&ApiKeys>) -> Option<ApiKeys> {
        if config.api_keys.is_empty() {
            return None;
        }
        let previous_bucket = |key_id: &str| {
            let previous = previous?;
            let key = previous.keys.iter().find(|key| key.id == key_id)?;
            key.plan
                .as_ref()?
                .throttle
                .as_ref()
                .map(|(_, bucket)| bucket)
        };
        let keys: Vec<Key> = config
            .api_keys
            .iter()
            .map(|key| Key {
                id: key.id.clone(),
                name: key.name.clone(),
                value: key.value.clone(),
                enabled: key.enabled,
                plan: config.usage_plan_of(&key.name).map(|plan| Plan {
                    name: plan.name.clone(),
                    throttle: plan.throttle.map(|limit| {
                        let bucket = carry_bucket(Some(limit), previous_bucket(&key.id))
                            .expect("a limit makes a bucket");
                        (limit, bucket)
                    }),
                    quota: plan.quota,
                }),
            })
            .collect();
        let by_value = keys
            .iter()
            .enumerate()
            .map(|(index, key)| (key.value.clone(), index))
            .collect();
        Some(ApiKeys {
            required: config
                .route(RouteKey::CONNECT)
                .is_some_and(|route| route.api_key_required),
            selection: config.gateway.api_key_selection_expression,
            keys,
            by_value,
        })
    }

    /// Whether `$connect` requires a key.
    pub(crate) fn required(&self) -> bool {
        self.required
    }

    /// Where the key is read.
    pub(crate) fn selection(&self) -> ApiKeySelection {
        self.selection
    }

    /// Admits a connect presenting `presented` (the `x-api-key` header or the authorizer's
    /// `usageIdentifierKey`): the key must be known, enabled and in a plan, within the plan's
    /// throttle and quota. On success, the identity fields the events carry.
    pub(crate) async fn admit(
        &self,
        presented: Option<&str>,
        cluster: &Cluster,
        metrics: &Metrics,
    ) -> Result<AccessIdentity, ApiKeyError> {
        let presented = presented
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .ok_or(ApiKeyError::Missing)?;
        let key = self
            .by_value
            .get(presented)
            .map(|&index| &self.keys[index])
            .ok_or(ApiKeyError::Unknown)?;
        if !key.enabled {
            return Err(ApiKeyError::Disabled {
                key_id: key.id.clone(),
            });
        }
        let plan = key.plan.as_ref().ok_or_else(|| ApiKeyError::NoUsagePlan {
            key_id: key.id.clone(),
        })?;
        if let Some((_, bucket)) = &plan.throttle
            && !bucket.try_acquire()
        {
            return Err(ApiKeyError::Throttled {
                key_id: key.id.clone(),
                retry_after_secs: bucket.retry_after().as_secs_f64().ceil().max(1.0) as u64,
            });
        }
        let now = now_secs();
        let period = period_of(
            plan.quota.map_or(QuotaPeriod::Day, |quota| quota.period),
            now,
        );
        let limit = plan.quota.map_or(u64::MAX, |quota| quota.limit);
        let count = UsageCount {
            key_id: &key.id,
            period: &period.label,
            limit,
            expires_at: period.ends_at + DAY_SECONDS,
        };
        match cluster.count_usage(&count).await {
            Ok(Counted::Within(_)) => {}
            Ok(Counted::Exhausted(_)) => {
                let quota = plan.quota.expect("only a quota has a limit to exhaust");
                return Err(ApiKeyError::QuotaExceeded {
                    key_id: key.id.clone(),
                    limit: quota.limit,
                    period: quota.period.as_str(),
                });
            }
            Err(error) => {
                metrics.api_key_uses_uncounted.inc();
                warn!(error = %error, "API key {}: its use could not be counted; admitting the connect (the usage plan's throttle still applies)", key.id);
            }
        }
        Ok(AccessIdentity {
            api_key: Some(key.value.clone()),
            api_key_id: Some(key.id.clone()),
            ..AccessIdentity::default()
        })
    }

    /// Every key's usage in its current period, in file order.
    pub(crate) async fn usage(&self, cluster: &Cluster) -> Result<Vec<KeyUsage>, ClusterError> {
        let now = now_secs();
        let mut report = Vec::with_capacity(self.keys.len());
        for key in &self.keys {
            let plan = key.plan.as_ref();
            let quota = plan.and_then(|plan| plan.quota);
            let period = period_of(quota.map_or(QuotaPeriod::Day, |quota| quota.period), now);
            let used = cluster.usage(&key.id, &period.label).await?;
            report.push(KeyUsage {
                id: key.id.clone(),
                name: key.name.clone(),
                enabled: key.enabled,
                usage_plan: plan.map(|plan| plan.name.clone()),
                quota,
                throttle: plan.and_then(|plan| plan.throttle.as_ref().map(|(limit, _)| *limit)),
                period,
                used,
            });
        }
        Ok(report)
    }
}

fn now_secs() -> u64 {
    u64::try_from(crate::epoch_millis() / 1000).unwrap_or(0)
}

/// The period of kind `kind` that `now` (epoch seconds) falls in, in UTC. Weeks start on
/// Sunday.
pub(crate) fn period_of(kind: QuotaPeriod, now: u64) -> Period {
    let day = i64::try_from(now / DAY_SECONDS).unwrap_or(i64::MAX);
    let at = |days: i64| u64::try_from(days).unwrap_or(0) * DAY_SECONDS;
    match kind {
        QuotaPeriod::Day => {
            let (year, month, date) = civil_from_days(day);
            Period {
                label: format!("DAY:{year:04}-{month:02}-{date:02}"),
                starts_at: at(day),
                ends_at: at(day + 1),
            }
        }
        QuotaPeriod::Week => {
            // 1970-01-01 was a Thursday: four days after a Sunday.
            let sunday = day - (day + 4).rem_euclid(7);
            let (year, month, date) = civil_from_days(sunday);
            Period {
                label: format!("WEEK:{year:04}-{month:02}-{date:02}"),
                starts_at: at(sunday),
                ends_at: at(sunday + 7),
            }
        }
        QuotaPeriod::Month => {
            let (year, month, _) = civil_from_days(day);
            let month = i64::from(month);
            let (next_year, next_month) = if month == 12 {
                (year + 1, 1)
            } else {
                (year, month + 1)
            };
            Period {
                label: format!("MONTH:{year:04}-{month:02}"),
                starts_at: at(days_from_civil(year, month, 1)),
                ends_at: at(days_from_civil(next_year, next_month, 1)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-28T12:00:00Z, a Saturday.
    const SATURDAY_NOON: u64 = 1_795_867_200;

    fn check(kind: QuotaPeriod, now: u64, label: &str, starts_at: u64, ends_at: u64) {
        assert_eq!(
            period_of(kind, now),
            Period {
                label: label.to_owned(),
                starts_at,
                ends_at
            },
            "{kind:?} at {now}"
        );
    }

    #[test]
    fn periods_are_utc_days_sunday_weeks_and_calendar_months() {
        let midnight = SATURDAY_NOON - 12 * 3600;
        check(
            QuotaPeriod::Day,
            SATURDAY_NOON,
            "DAY:2026-11-28",
            midnight,
            midnight + DAY_SECONDS,
        );
        check(
            QuotaPeriod::Day,
            midnight,
            "DAY:2026-11-28",
            midnight,
            midnight + DAY_SECONDS,
        );
        check(
            QuotaPeriod::Day,
            midnight - 1,
            "DAY:2026-11-27",
            midnight - DAY_SECONDS,
            midnight,
        );
        let sunday = midnight - 6 * DAY_SECONDS;
        check(
            QuotaPeriod::Week,
            SATURDAY_NOON,
            "WEEK:2026-11-22",
            sunday,
            sunday + 7 * DAY_SECONDS,
        );
        check(
            QuotaPeriod::Week,
            sunday,
            "WEEK:2026-11-22",
            sunday,
            sunday + 7 * DAY_SECONDS,
        );
        check(
            QuotaPeriod::Week,
            midnight + DAY_SECONDS,
            "WEEK:2026-11-29",
            sunday + 7 * DAY_SECONDS,
            sunday + 14 * DAY_SECONDS,
        );
        let november = midnight - 27 * DAY_SECONDS;
        check(
            QuotaPeriod::Month,
            SATURDAY_NOON,
            "MONTH:2026-11",
            november,
            november + 30 * DAY_SECONDS,
        );
        // December rolls over into the next year.
        let december = november + 30 * DAY_SECONDS;
        check(
            QuotaPeriod::Month,
            december + 5,
            "MONTH:2026-12",
            december,
            december + 31 * DAY_SECONDS,
        );
    }
}
