//! Counting the uses of API keys against their quotas: one counter per key and period, in
//! this process's memory on a single node (lost on restart) and in Redis in cluster mode (shared
//! by every node, kept across restarts of the nodes).
//!
//! Which key, period and limit apply is decided by the caller (`api_keys`); this module only
//! counts, atomically: a use is counted only while the counter is below the limit, so a refused
//! use does not count.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// One use of an API key to count.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UsageCount<'a> {
    /// The key's id.
    pub(crate) key_id: &'a str,
    /// The period's label, e.g. `DAY:2026-11-28`; a new label starts a new count.
    pub(crate) period: &'a str,
    /// Uses allowed in the period.
    pub(crate) limit: u64,
    /// When the counter may be forgotten, in epoch seconds (after the period ends).
    pub(crate) expires_at: u64,
}

/// What counting a use found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counted {
    /// The use was counted; this many uses in the period, this one included.
    Within(u64),
    /// The limit was already reached; the use was not counted.
    Exhausted(u64),
}

/// Single-node counters, behind a mutex held for one lookup (never across `.await`): a few
/// entries per key, touched once per keyed connect.
#[derive(Debug, Default)]
pub(crate) struct MemoryUsage {
    /// Uses and expiry (epoch seconds) per key id and period.
    counts: Mutex<HashMap<(String, String), (u64, u64)>>,
}

impl MemoryUsage {
    /// Counts one use at `now` (epoch seconds), forgetting periods that have expired.
    pub(crate) fn count(&self, count: &UsageCount<'_>, now: u64) -> Counted {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (count.key_id.to_owned(), count.period.to_owned());
        if !counts.contains_key(&key) {
            counts.retain(|_, (_, expires_at)| *expires_at > now);
        }
        let (used, _) = counts.entry(key).or_insert((0, count.expires_at));
        if *used >= count.limit {
            return Counted::Exhausted(*used);
        }
        *used += 1;
        Counted::Within(*used)
    }

    /// The uses counted for `key_id` in `period`.
    pub(crate) fn used(&self, key_id: &str, period: &str) -> u64 {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts
            .get(&(key_id.to_owned(), period.to_owned()))
            .map_or(0, |(used, _)| *used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(period: &str, limit: u64, expires_at: u64) -> UsageCount<'_> {
        UsageCount {
            key_id: "k1a2b3c4d5",
            period,
            limit,
            expires_at,
        }
    }

    #[test]
    fn uses_count_up_to_the_limit_and_refusals_do_not_count() {
        let usage = MemoryUsage::default();
        let today = count("DAY:2026-11-28", 2, 100);
        assert_eq!(usage.count(&today, 10), Counted::Within(1));
        assert_eq!(usage.count(&today, 10), Counted::Within(2));
        assert_eq!(usage.count(&today, 10), Counted::Exhausted(2));
        assert_eq!(usage.used("k1a2b3c4d5", "DAY:2026-11-28"), 2);
        // A new period starts from zero and forgets the expired one.
        let tomorrow = count("DAY:2026-11-29", 2, 200);
        assert_eq!(usage.count(&tomorrow, 150), Counted::Within(1));
        assert_eq!(usage.used("k1a2b3c4d5", "DAY:2026-11-28"), 0);
        assert_eq!(usage.used("other", "DAY:2026-11-29"), 0);
    }
}
