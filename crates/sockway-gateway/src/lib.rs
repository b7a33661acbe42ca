//! The sockway gateway as a library.
//!
//! [`Gateway::bind`] takes a validated [`config::Config`], builds the shared state (`state`)
//! around its first deployment (`deployment`), binds its listeners and returns a running
//! handle (`gateway`), which reloads the configuration (`reload`). Everything a WebSocket client
//! or a backend can observe lives below this crate: the accept loop ([`server`]) and the
//! request head (`head`), one task per connection (`connection`), the route table
//! (`routing`), integrations (`integrations`), this node's connections (`registry`), delivery
//! across nodes (`cluster`) and the `@connections` API (`management`).
//! The wire contract itself (ids, events, error bodies) is `sockway_protocol`, which does no
//! I/O.

mod access_log;
mod api_keys;
mod authorizers;
mod aws;
pub mod client;
mod cluster;
pub mod config;
mod connection;
mod console;
mod deployment;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod gateway;
mod head;
mod integrations;
mod management;
#[cfg(feature = "measure")]
#[doc(hidden)]
pub mod measure;
mod metrics;
mod pool;
mod proxy;
mod registry;
mod reload;
mod routing;
pub mod server;
mod sign_in;
mod state;
mod throttle;
mod tls;
mod traces;

pub use cluster::JoinError;
pub use deployment::DeploymentError;
pub use gateway::{Gateway, GatewayError};
pub use integrations::UnsupportedScheme;
pub use reload::{ReloadError, ReloadOutcome, RestartRequired};
pub use routing::RouteError;

use std::time::{SystemTime, UNIX_EPOCH};

/// An address as `Display` writes it; an IPv4 address (nearly every caller) written octet by
/// octet, which costs a push or a connect a tenth of what the formatter does.
pub(crate) fn ip_text(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut text = String::with_capacity(15);
    for (index, octet) in v4.octets().into_iter().enumerate() {
        if index > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

/// Milliseconds since the Unix epoch, the unit of every AWS timestamp in events.
pub(crate) fn epoch_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Bytes from the operating system's CSPRNG: connection ids must be unguessable, since knowing
/// one is enough to push to or close that connection through `@connections`.
///
/// Every message needs two ids, so bytes are drawn from the OS in 4 KiB blocks per thread
/// rather than with one system call per id; each byte is handed out once.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    const BLOCK: usize = 4096;
    struct Pool {
        bytes: [u8; BLOCK],
        used: usize,
    }
    thread_local! {
        static POOL: std::cell::RefCell<Pool> = const { std::cell::RefCell::new(Pool { bytes: [0; BLOCK], used: BLOCK }) };
    }
    let mut bytes = [0u8; N];
    if N > BLOCK {
        getrandom::fill(&mut bytes).expect("the operating system's random source is available");
        return bytes;
    }
    POOL.with_borrow_mut(|pool| {
        if BLOCK - pool.used < N {
            getrandom::fill(&mut pool.bytes)
                .expect("the operating system's random source is available");
            pool.used = 0;
        }
        bytes.copy_from_slice(&pool.bytes[pool.used..pool.used + N]);
        pool.used += N;
    });
    bytes
}

/// Renders an error with its causes, `a: b: c`, for a log line.
pub(crate) struct ErrorChain<'a>(pub(crate) &'a dyn std::error::Error);

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(formatter, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::random_bytes;

    #[test]
    fn an_address_reads_as_display_writes_it() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "192.168.100.9",
            "255.255.255.255",
            "::1",
            "2001:db8::8a2e:370:7334",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(super::ip_text(ip), ip.to_string());
        }
        for octet in 0..=255u8 {
            let ip = std::net::IpAddr::from([octet, 7, octet, 70]);
            assert_eq!(super::ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn random_bytes_are_never_handed_out_twice() {
        let mut seen = std::collections::HashSet::new();
        // More than one 4 KiB block, so the refill path runs too.
        for _ in 0..1000 {
            assert!(seen.insert(random_bytes::<11>()), "an id repeated");
        }
    }
}
