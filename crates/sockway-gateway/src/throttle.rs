//! Throttling and admission: token buckets for messages, `@connections` calls and new
//! connections, and the counters behind the per-IP and total connection caps.
//!
//! Buckets follow AWS's model (a steady `rate` per second and a `burst`, the bucket's size)
//! and are implemented as a generic cell rate algorithm: one atomic "theoretical arrival
//! time" per bucket, advanced with compare-and-swap, so a bucket shared by every connection
//! of a route costs one uncontended atomic operation per message and never a lock.
//!
//! Connection caps hand out an [`Admission`] that the connection keeps for its lifetime;
//! dropping it gives the slot back, so a connection that ends in any way (close, error, panic
//! in its task, shutdown) cannot leak a slot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::config::{Config, RateLimit};

/// The throttles and caps of one gateway that are not tied to a route (route buckets live in
/// the route table).
#[derive(Debug)]
pub(crate) struct Throttles {
    /// `throttling.connect_rate_limit`: new connections, all clients together.
    pub(crate) connect: Option<TokenBucket>,
    /// `throttling.management_rate_limit`: management API calls.
    pub(crate) management: Option<TokenBucket>,
    /// `limits.max_connections` and `limits.max_connections_per_ip`.
    pub(crate) caps: Arc<ConnectionCaps>,
}

impl Throttles {
    /// The throttles `config` asks for.
    pub(crate) fn from_config(config: &Config) -> Throttles {
        let bucket =
            |limit: Option<RateLimit>| limit.map(|limit| TokenBucket::new(limit.rate, limit.burst));
        Throttles {
            connect: bucket(config.throttling.connect),
            management: bucket(config.throttling.management),
            caps: ConnectionCaps::new(
                config.limits.max_connections,
                config.limits.max_connections_per_ip,
            ),
        }
    }
}

/// A token bucket: at most `burst` requests at once, refilled at `rate` per second.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    /// Nanoseconds between two tokens at the steady rate.
    interval_ns: u64,
    /// How far ahead of now the theoretical arrival time may run: `burst` intervals.
    tolerance_ns: u64,
    /// Theoretical arrival time of the next request, in nanoseconds since `epoch`.
    tat_ns: AtomicU64,
    epoch: Instant,
}

impl TokenBucket {
    /// A full bucket. `rate` must be positive and finite and `burst` at least 1 (the config
    /// validates both).
    pub(crate) fn new(rate: f64, burst: u32) -> TokenBucket {
        // Rates above one per nanosecond cannot be told apart from unlimited.
        let interval_ns = (1e9 / rate).max(1.0) as u64;
        TokenBucket {
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(u64::from(burst.max(1))),
            tat_ns: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn try_acquire(&self) -> bool {
        self.try_acquire_at(self.now_ns())
    }

    fn now_ns(&self) -> u64 {
        // u64 nanoseconds last 584 years.
        self.epoch.elapsed().as_nanos() as u64
    }

    fn try_acquire_at(&self, now: u64) -> bool {
        let mut tat = self.tat_ns.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now).saturating_add(self.interval_ns);
            if next - now > self.tolerance_ns {
                return false;
            }
            match self
                .tat_ns
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(current) => tat = current,
            }
        }
    }

    /// How long until one token is available again (zero when one is available now); used
    /// for a `Retry-After` header.
    pub(crate) fn retry_after(&self) -> Duration {
        let now = self.now_ns();
        let tat = self.tat_ns.load(Ordering::Relaxed);
        let next = tat.max(now).saturating_add(self.interval_ns);
        Duration::from_nanos((next - now).saturating_sub(self.tolerance_ns))
    }
}

/// Why a new connection was refused before its upgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `limits.max_connections` connections are open.
    TotalCap,
    /// The client's address (or IPv6 /64) holds `limits.max_connections_per_ip` connections.
    PerIpCap,
}

/// The per-IP and total connection caps of one gateway.
#[derive(Debug)]
pub(crate) struct ConnectionCaps {
    max_total: usize,
    max_per_ip: Option<u32>,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpKey, u32>>,
}

/// The unit a per-IP cap counts: an IPv4 address, or the /64 prefix of an IPv6 address (one
/// subscriber is usually given a whole /64, so counting single IPv6 addresses would let one
/// client open connections without bound).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum IpKey {
    V4(u32),
    V6Prefix(u64),
}

impl IpKey {
    fn of(ip: IpAddr) -> IpKey {
        match ip {
            IpAddr::V4(v4) => IpKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey::V4(u32::from(v4)),
                None => IpKey::V6Prefix((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

impl ConnectionCaps {
    /// Caps of `max_total` open connections and, when set, `max_per_ip` per client.
    pub(crate) fn new(max_total: usize, max_per_ip: Option<u32>) -> Arc<ConnectionCaps> {
        Arc::new(ConnectionCaps {
            max_total,
            max_per_ip,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a slot for a connection from `ip`, or says which cap is reached.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admission, Refusal> {
        let reserved = self
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |total| {
                (total < self.max_total).then_some(total + 1)
            });
        if reserved.is_err() {
            return Err(Refusal::TotalCap);
        }
        let key = match self.max_per_ip {
            None => None,
            Some(max) => {
                let key = IpKey::of(ip);
                let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
                let count = per_ip.entry(key).or_insert(0);
                if *count >= max {
                    drop(per_ip);
                    self.total.fetch_sub(1, Ordering::AcqRel);
                    return Err(Refusal::PerIpCap);
                }
                *count += 1;
                Some(key)
            }
        };
        Ok(Admission {
            caps: self.clone(),
            key,
        })
    }

    /// Connections holding a slot.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    fn release(&self, key: Option<IpKey>) {
        if let Some(key) = key {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(count) = per_ip.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    per_ip.remove(&key);
                }
            }
        }
        self.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's slot under the caps; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct Admission {
    caps: Arc<ConnectionCaps>,
    key: Option<IpKey>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.caps.release(self.key);
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn a_bucket_allows_its_burst_at_once_then_its_rate() {
        let bucket = TokenBucket::new(10.0, 5);
        let allowed = (0..20).filter(|_| bucket.try_acquire_at(0)).count();
        assert_eq!(allowed, 5);
        // One token comes back every 100 ms.
        assert!(!bucket.try_acquire_at(SECOND / 10 - 1));
        assert!(bucket.try_acquire_at(SECOND / 10));
        assert!(!bucket.try_acquire_at(SECOND / 10));
        // After a long pause the bucket is full again, not fuller.
        let allowed = (0..20)
            .filter(|_| bucket.try_acquire_at(100 * SECOND))
            .count();
        assert_eq!(allowed, 5);
    }

    #[test]
    fn a_steady_stream_at_the_rate_is_never_throttled() {
        let bucket = TokenBucket::new(1000.0, 1);
        for i in 0..10_000 {
            assert!(bucket.try_acquire_at(i * SECOND / 1000), "request {i}");
        }
        assert!(!bucket.try_acquire_at(9_999 * SECOND / 1000));
    }

    #[test]
    fn concurrent_takers_never_exceed_the_burst() {
        let bucket = Arc::new(TokenBucket::new(0.001, 1000));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let bucket = bucket.clone();
                std::thread::spawn(move || (0..1000).filter(|_| bucket.try_acquire()).count())
            })
            .collect();
        let allowed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(allowed, 1000);
    }

    #[test]
    fn retry_after_is_the_wait_for_the_next_token() {
        let bucket = TokenBucket::new(1.0, 1);
        assert_eq!(bucket.retry_after(), Duration::ZERO);
        assert!(bucket.try_acquire());
        let wait = bucket.retry_after();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
    }

    #[test]
    fn caps_count_per_address_and_in_total_and_free_slots_on_drop() {
        let caps = ConnectionCaps::new(3, Some(2));
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let first = caps.admit(a).unwrap();
        let _second = caps.admit(a).unwrap();
        assert_eq!(caps.admit(a).unwrap_err(), Refusal::PerIpCap);
        let _third = caps.admit(b).unwrap();
        assert_eq!(caps.admit(b).unwrap_err(), Refusal::TotalCap);
        assert_eq!(caps.open(), 3);
        drop(first);
        assert_eq!(caps.open(), 2);
        let _again = caps.admit(a).unwrap();
    }

    #[test]
    fn ipv6_addresses_count_per_slash_64_and_mapped_ipv4_as_ipv4() {
        let caps = ConnectionCaps::new(100, Some(1));
        let one: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
        let same_prefix: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_prefix: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        let _held = caps.admit(IpAddr::V6(one)).unwrap();
        assert_eq!(
            caps.admit(IpAddr::V6(same_prefix)).unwrap_err(),
            Refusal::PerIpCap
        );
        let _other = caps.admit(IpAddr::V6(other_prefix)).unwrap();
        let v4 = Ipv4Addr::new(192, 0, 2, 7);
        let _v4 = caps.admit(IpAddr::V4(v4)).unwrap();
        assert_eq!(
            caps.admit(IpAddr::V6(v4.to_ipv6_mapped())).unwrap_err(),
            Refusal::PerIpCap
        );
    }

    #[test]
    fn without_a_per_ip_cap_only_the_total_counts() {
        let caps = ConnectionCaps::new(2, None);
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let _a = caps.admit(ip).unwrap();
        let _b = caps.admit(ip).unwrap();
        assert_eq!(caps.admit(ip).unwrap_err(), Refusal::TotalCap);
    }
}
