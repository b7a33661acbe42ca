//! The sockway gateway as a library.
//!
//! [`Gateway::bind`] takes a validated [`config::Config`], binds its listeners and returns a
//! running handle. Everything a WebSocket client or a backend can observe lives below this
//! crate: the accept loop and upgrade ([`server`]), one task per connection (`connection`), the
//! route table (`routing`), integrations (`integrations`), this node's connections
//! (`registry`), delivery across nodes (`cluster`) and the `@connections` API (`management`).
//! The wire contract itself (ids, events, error bodies) is `sockway_protocol`, which does no
//! I/O.

mod authorizers;
mod aws;
mod cluster;
pub mod config;
mod connection;
mod integrations;
mod management;
mod metrics;
mod registry;
mod routing;
pub mod server;

pub use server::{Gateway, GatewayError};

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, the unit of every AWS timestamp in events.
pub(crate) fn epoch_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Bytes from the operating system's CSPRNG: connection ids must be unguessable, since knowing
/// one is enough to push to or close that connection through `@connections`.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random source is available");
    bytes
}
