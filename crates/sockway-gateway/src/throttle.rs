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
//!
//! A reload builds new [`Throttles`] that keep every bucket whose settings it did not change
//! (a reload must not be a way to refill a throttle), and changes the limits of the
//! gateway-wide [`Caps`] in place: they count what is open, which a reload does not change.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::config::{Config, RateLimit};

/// Clients whose per-client bucket is kept at once. Past this, buckets that are full again
/// (they hold no information) are dropped; if every one is in use, a new client is refused
/// until some refill: failing closed under a flood of addresses rather than growing.
const MAX_CLIENT_BUCKETS: usize = 65_536;

/// The token buckets of one deployment that are not tied to a route (route buckets live in
/// the route table). A reload builds new ones through [`Throttles::from_config`], which keeps
/// each bucket whose settings did not change, so a reload neither refills nor empties it.
#[derive(Debug)]
pub(crate) struct Throttles {
    /// `throttling.connect_rate_limit_per_ip`: new connections, per client.
    pub(crate) connect_per_client: Option<Arc<ClientBuckets>>,
    /// `throttling.connect_rate_limit`: new connections, all clients together.
    pub(crate) connect: Option<Arc<TokenBucket>>,
    /// `throttling.management_rate_limit`: management API calls.
    pub(crate) management: Option<Arc<TokenBucket>>,
    /// `limits.ipv6_prefix_length`: the bits of an IPv6 address that name one client.
    ipv6_prefix_length: u8,
}

impl Throttles {
    /// The buckets `config` asks for, carrying over those of `previous` whose settings are
    /// unchanged.
    pub(crate) fn from_config(config: &Config, previous: Option<&Throttles>) -> Throttles {
        Throttles {
            connect_per_client: config.throttling.connect_per_ip.map(|limit| {
                let previous = previous.and_then(|previous| previous.connect_per_client.as_ref());
                match previous.filter(|buckets| buckets.limit == limit) {
                    Some(buckets) => buckets.clone(),
                    None => Arc::new(ClientBuckets::new(limit.rate, limit.burst)),
                }
            }),
            connect: carry_bucket(
                config.throttling.connect,
                previous.and_then(|previous| previous.connect.as_ref()),
            ),
            management: carry_bucket(
                config.throttling.management,
                previous.and_then(|previous| previous.management.as_ref()),
            ),
            ipv6_prefix_length: config.limits.ipv6_prefix_length,
        }
    }

    /// The client a connection from `ip` counts against.
    pub(crate) fn client(&self, ip: IpAddr) -> Client {
        Client::of(ip, self.ipv6_prefix_length)
    }
}

/// The bucket for `limit`: `previous` itself when it was made for the same settings (a reload
/// that leaves a throttle alone must not be a way to refill it), else a new full one.
pub(crate) fn carry_bucket(
    limit: Option<RateLimit>,
    previous: Option<&Arc<TokenBucket>>,
) -> Option<Arc<TokenBucket>> {
    let limit = limit?;
    Some(match previous.filter(|bucket| bucket.limit == limit) {
        Some(bucket) => bucket.clone(),
        None => Arc::new(TokenBucket::new(limit.rate, limit.burst)),
    })
}

/// The gateway's connection caps and its budget of buffered bytes: counters of what is open
/// now, so they live as long as the gateway; a reload changes only their limits.
#[derive(Debug)]
pub(crate) struct Caps {
    /// `limits.max_connections` and `limits.max_connections_per_ip`.
    pub(crate) connections: Arc<ConnectionCaps>,
    /// `management.max_connections` and `management.max_connections_per_ip`: HTTP
    /// connections to the management API and console.
    pub(crate) management: Arc<ConnectionCaps>,
    /// `limits.buffered_message_bytes`: partly received messages, all connections together.
    pub(crate) buffered: Arc<ByteBudget>,
}

impl Caps {
    /// The caps `config` sets, nothing held yet.
    pub(crate) fn from_config(config: &Config) -> Caps {
        Caps {
            connections: ConnectionCaps::new(
                config.limits.max_connections,
                config.limits.max_connections_per_ip,
            ),
            management: ConnectionCaps::new(
                config.management.max_connections,
                config.management.max_connections_per_ip,
            ),
            buffered: ByteBudget::new(config.limits.buffered_message_bytes),
        }
    }

    /// Applies the limits of a reloaded `config`. What is held stays held: a lower cap refuses
    /// new connections until enough have closed, and closes none.
    pub(crate) fn set_limits(&self, config: &Config) {
        self.connections.set_limits(
            config.limits.max_connections,
            config.limits.max_connections_per_ip,
        );
        self.management.set_limits(
            config.management.max_connections,
            config.management.max_connections_per_ip,
        );
        self.buffered
            .set_limit(config.limits.buffered_message_bytes);
    }
}

/// A token bucket: at most `burst` requests at once, refilled at `rate` per second.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    /// The settings it was made for, so a reload can tell whether to keep it.
    limit: RateLimit,
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
            limit: RateLimit { rate, burst },
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
            let Some(next) = gcra_step(tat, now, self.interval_ns, self.tolerance_ns) else {
                return false;
            };
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

/// A number of bytes shared by every connection: `limits.buffered_message_bytes`, what all
/// connections together may hold of messages still arriving. Taking and giving back are one
/// atomic operation each.
#[derive(Debug)]
pub(crate) struct ByteBudget {
    /// The limit; a reload may change it (bytes already taken stay taken).
    limit: AtomicUsize,
    used: AtomicUsize,
}

impl ByteBudget {
    /// A budget of `limit` bytes, none used.
    pub(crate) fn new(limit: usize) -> Arc<ByteBudget> {
        Arc::new(ByteBudget {
            limit: AtomicUsize::new(limit),
            used: AtomicUsize::new(0),
        })
    }

    /// Changes the limit; bytes already taken stay taken.
    pub(crate) fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Release);
    }

    /// Takes `bytes` if that many are left.
    pub(crate) fn try_take(&self, bytes: usize) -> bool {
        let limit = self.limit.load(Ordering::Acquire);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= limit)
            })
            .is_ok()
    }

    /// Gives back `bytes` taken before.
    pub(crate) fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Bytes in use.
    #[cfg(test)]
    fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// One step of the generic cell rate algorithm: the theoretical arrival time after taking a
/// token at `now`, or `None` when the bucket is empty.
fn gcra_step(tat: u64, now: u64, interval_ns: u64, tolerance_ns: u64) -> Option<u64> {
    let next = tat.max(now).saturating_add(interval_ns);
    (next - now <= tolerance_ns).then_some(next)
}

/// One token bucket per client, all with the same rate and burst.
///
/// A plain mutex over a map from client to theoretical arrival time: each use looks up one
/// entry and never awaits, and an upgrade already costs far more than the lock.
#[derive(Debug)]
pub(crate) struct ClientBuckets {
    /// The settings they were made for, so a reload can tell whether to keep them.
    limit: RateLimit,
    /// Nanoseconds between two tokens at the steady rate.
    interval_ns: u64,
    /// `burst` intervals.
    tolerance_ns: u64,
    /// Theoretical arrival time per client, in nanoseconds since `epoch`; a client whose time
    /// has passed has a full bucket, the same as no entry.
    arrivals: Mutex<HashMap<Client, u64>>,
    epoch: Instant,
}

impl ClientBuckets {
    /// Full buckets of `burst` refilled at `rate` per second.
    pub(crate) fn new(rate: f64, burst: u32) -> ClientBuckets {
        let interval_ns = (1e9 / rate).max(1.0) as u64;
        ClientBuckets {
            limit: RateLimit { rate, burst },
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(u64::from(burst.max(1))),
            arrivals: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
        }
    }

    /// Takes one of `client`'s tokens; on refusal, how long until one is back.
    pub(crate) fn try_acquire(&self, client: Client) -> Result<(), Duration> {
        self.try_acquire_at(client, self.epoch.elapsed().as_nanos() as u64)
    }

    fn try_acquire_at(&self, client: Client, now: u64) -> Result<(), Duration> {
        let mut arrivals = self.arrivals.lock().unwrap_or_else(PoisonError::into_inner);
        if arrivals.len() >= MAX_CLIENT_BUCKETS && !arrivals.contains_key(&client) {
            arrivals.retain(|_, tat| *tat > now);
            if arrivals.len() >= MAX_CLIENT_BUCKETS {
                return Err(Duration::from_nanos(self.interval_ns));
            }
        }
        let tat = arrivals.get(&client).copied().unwrap_or(0);
        match gcra_step(tat, now, self.interval_ns, self.tolerance_ns) {
            Some(next) => {
                arrivals.insert(client, next);
                Ok(())
            }
            None => {
                let next = tat.max(now).saturating_add(self.interval_ns);
                Err(Duration::from_nanos(
                    (next - now).saturating_sub(self.tolerance_ns),
                ))
            }
        }
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
    /// The total cap; a reload may change it.
    max_total: AtomicUsize,
    /// The per-client cap, 0 for none; a reload may change it. Connections admitted while
    /// there was none are not counted per client, so a per-client cap a reload turns on counts
    /// the connections opened after it.
    max_per_ip: AtomicU32,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<Client, u32>>,
}

/// The unit per-client caps and rates count: an IPv4 address, or the leading
/// `limits.ipv6_prefix_length` bits of an IPv6 address (one subscriber is usually given a
/// whole /64, so counting single IPv6 addresses would let one client open connections
/// without bound).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) enum Client {
    /// An IPv4 address (IPv4-mapped IPv6 included).
    V4(u32),
    /// An IPv6 prefix, the bits after it zero.
    V6Prefix(u128),
}

impl Client {
    fn of(ip: IpAddr, ipv6_prefix_length: u8) -> Client {
        match ip {
            IpAddr::V4(v4) => Client::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Client::V4(u32::from(v4)),
                None => {
                    let mask = u128::MAX
                        .checked_shl(u32::from(128 - ipv6_prefix_length.min(128)))
                        .unwrap_or(0);
                    Client::V6Prefix(u128::from(v6) & mask)
                }
            },
        }
    }
}

impl ConnectionCaps {
    /// Caps of `max_total` open connections and, when set, `max_per_ip` per client.
    pub(crate) fn new(max_total: usize, max_per_ip: Option<u32>) -> Arc<ConnectionCaps> {
        Arc::new(ConnectionCaps {
            max_total: AtomicUsize::new(max_total),
            max_per_ip: AtomicU32::new(max_per_ip.unwrap_or(0)),
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// Changes the caps. Slots already held stay held: a lower cap refuses new connections
    /// until enough have closed.
    pub(crate) fn set_limits(&self, max_total: usize, max_per_ip: Option<u32>) {
        self.max_total.store(max_total, Ordering::Release);
        self.max_per_ip
            .store(max_per_ip.unwrap_or(0), Ordering::Release);
    }

    /// Takes a slot for a connection from `client`, or says which cap is reached. The
    /// client's own cap is checked first, so a client over it takes nothing from the total.
    pub(crate) fn admit(self: &Arc<Self>, client: Client) -> Result<Admission, Refusal> {
        let key = match self.max_per_ip.load(Ordering::Acquire) {
            0 => None,
            max => {
                let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
                let count = per_ip.entry(client).or_insert(0);
                if *count >= max {
                    return Err(Refusal::PerIpCap);
                }
                *count += 1;
                Some(client)
            }
        };
        let max_total = self.max_total.load(Ordering::Acquire);
        let reserved = self
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |total| {
                (total < max_total).then_some(total + 1)
            });
        if reserved.is_err() {
            self.release_client(key);
            return Err(Refusal::TotalCap);
        }
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

    fn release(&self, key: Option<Client>) {
        self.release_client(key);
        self.total.fetch_sub(1, Ordering::AcqRel);
    }

    /// Gives a client's slot back.
    fn release_client(&self, key: Option<Client>) {
        if let Some(key) = key {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(count) = per_ip.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    per_ip.remove(&key);
                }
            }
        }
    }
}

/// A connection's slot under the caps; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct Admission {
    caps: Arc<ConnectionCaps>,
    key: Option<Client>,
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
        let first = caps.admit(Client::of(a, 64)).unwrap();
        let _second = caps.admit(Client::of(a, 64)).unwrap();
        assert_eq!(
            caps.admit(Client::of(a, 64)).unwrap_err(),
            Refusal::PerIpCap
        );
        let _third = caps.admit(Client::of(b, 64)).unwrap();
        assert_eq!(
            caps.admit(Client::of(b, 64)).unwrap_err(),
            Refusal::TotalCap
        );
        assert_eq!(caps.open(), 3);
        drop(first);
        assert_eq!(caps.open(), 2);
        let _again = caps.admit(Client::of(a, 64)).unwrap();
    }

    #[test]
    fn ipv6_addresses_count_per_slash_64_and_mapped_ipv4_as_ipv4() {
        let caps = ConnectionCaps::new(100, Some(1));
        let one: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
        let same_prefix: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_prefix: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        let _held = caps.admit(Client::of(IpAddr::V6(one), 64)).unwrap();
        assert_eq!(
            caps.admit(Client::of(IpAddr::V6(same_prefix), 64))
                .unwrap_err(),
            Refusal::PerIpCap
        );
        let _other = caps
            .admit(Client::of(IpAddr::V6(other_prefix), 64))
            .unwrap();
        let v4 = Ipv4Addr::new(192, 0, 2, 7);
        let _v4 = caps.admit(Client::of(IpAddr::V4(v4), 64)).unwrap();
        assert_eq!(
            caps.admit(Client::of(IpAddr::V6(v4.to_ipv6_mapped()), 64))
                .unwrap_err(),
            Refusal::PerIpCap
        );
    }

    #[test]
    fn without_a_per_ip_cap_only_the_total_counts() {
        let caps = ConnectionCaps::new(2, None);
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let _a = caps.admit(Client::of(ip, 64)).unwrap();
        let _b = caps.admit(Client::of(ip, 64)).unwrap();
        assert_eq!(
            caps.admit(Client::of(ip, 64)).unwrap_err(),
            Refusal::TotalCap
        );
    }

    #[test]
    fn a_slash_48_prefix_counts_a_whole_site_as_one_client() {
        let site_a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let site_b: IpAddr = "2001:db8:1:ffff::1".parse().unwrap();
        let elsewhere: IpAddr = "2001:db8:2::1".parse().unwrap();
        assert_ne!(Client::of(site_a, 64), Client::of(site_b, 64));
        assert_eq!(Client::of(site_a, 48), Client::of(site_b, 48));
        assert_ne!(Client::of(site_a, 48), Client::of(elsewhere, 48));
        assert_ne!(Client::of(site_a, 128), Client::of(site_b, 128));
    }

    #[test]
    fn client_buckets_are_separate_and_refill() {
        let buckets = ClientBuckets::new(10.0, 2);
        let a = Client::V4(1);
        let b = Client::V4(2);
        assert!(buckets.try_acquire_at(a, 0).is_ok());
        assert!(buckets.try_acquire_at(a, 0).is_ok());
        let wait = buckets.try_acquire_at(a, 0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        assert!(
            buckets.try_acquire_at(b, 0).is_ok(),
            "another client is unaffected"
        );
        assert!(buckets.try_acquire_at(a, SECOND / 10).is_ok());
    }

    #[test]
    fn a_flood_of_clients_keeps_the_map_bounded() {
        let buckets = ClientBuckets::new(1.0, 1);
        for client in 0..MAX_CLIENT_BUCKETS as u32 {
            assert!(buckets.try_acquire_at(Client::V4(client), 0).is_ok());
        }
        assert!(
            buckets.try_acquire_at(Client::V4(u32::MAX), 0).is_err(),
            "every bucket in use: a new client waits"
        );
        // Once they refilled, the old entries make room.
        assert!(
            buckets
                .try_acquire_at(Client::V4(u32::MAX), 2 * SECOND)
                .is_ok()
        );
        assert_eq!(buckets.arrivals.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_reload_keeps_a_bucket_whose_settings_are_unchanged() {
        let limit = RateLimit {
            rate: 1.0,
            burst: 1,
        };
        let bucket = carry_bucket(Some(limit), None).unwrap();
        assert!(bucket.try_acquire());
        let kept = carry_bucket(Some(limit), Some(&bucket)).unwrap();
        assert!(Arc::ptr_eq(&bucket, &kept));
        assert!(!kept.try_acquire(), "the reload did not refill it");
        let changed = RateLimit {
            rate: 1.0,
            burst: 2,
        };
        let replaced = carry_bucket(Some(changed), Some(&bucket)).unwrap();
        assert!(!Arc::ptr_eq(&bucket, &replaced));
        assert!(replaced.try_acquire(), "new settings, a new full bucket");
        assert!(carry_bucket(None, Some(&bucket)).is_none());
    }

    #[test]
    fn changed_caps_keep_the_slots_held() {
        let caps = ConnectionCaps::new(2, None);
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let _a = caps.admit(Client::of(ip, 64)).unwrap();
        let b = caps.admit(Client::of(ip, 64)).unwrap();
        caps.set_limits(1, Some(1));
        assert_eq!(caps.open(), 2);
        assert_eq!(
            caps.admit(Client::of(ip, 64)).unwrap_err(),
            Refusal::TotalCap
        );
        drop(b);
        caps.set_limits(3, Some(1));
        // Connections admitted before the per-client cap existed are not counted by it.
        let c = caps.admit(Client::of(ip, 64)).unwrap();
        assert_eq!(
            caps.admit(Client::of(ip, 64)).unwrap_err(),
            Refusal::PerIpCap
        );
        drop(c);
        assert_eq!(caps.open(), 1);
        assert!(caps.per_ip.lock().unwrap().is_empty());
    }

    #[test]
    fn a_byte_budget_never_lends_more_than_it_has() {
        let budget = ByteBudget::new(100);
        assert!(budget.try_take(60));
        assert!(!budget.try_take(41));
        assert!(budget.try_take(40));
        budget.give_back(60);
        assert_eq!(budget.used(), 40);
        assert!(!budget.try_take(usize::MAX), "no overflow");
        budget.set_limit(30);
        assert!(!budget.try_take(1), "over the lowered limit");
        budget.give_back(40);
        assert!(budget.try_take(30));
    }
}
