//! The gateway's outgoing HTTP: hyper_util's pooled HTTP/1.1 client of JWKS fetches, OTLP/HTTP
//! trace export and the management client, and the connector under every client, which the
//! AWS SDK's credential providers also use (`aws::connector`); the HTTP/2 client of OTLP/gRPC
//! trace export. A leaf, so that `aws`
//! and `integrations` share it without importing each other.
//!
//! Integrations, authorizers and Lambda Invoke, whose calls follow client traffic, go through
//! [`BackendClient`] instead (`backend`): a pool of the gateway's own, capped per backend, whose
//! connections are driven by the calls that hold them.

mod backend;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub(crate) use self::backend::{BackendClient, BackendError};

/// The pooled HTTP/1.1 client type every outgoing call uses: `http://` and `https://`
/// (rustls with the ring provider and the webpki roots), keep-alive.
pub(crate) type PooledClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// How long a connection to a backend may wait unused in a pool before it is closed.
///
/// A pool grows to the most calls ever in flight at once: a burst of 200 `$connect` or route
/// calls leaves 200 connections (hyper's buffers, about 13 KiB with hyper_util's task each) behind,
/// which a gateway holding idle WebSocket connections would otherwise keep for a minute
/// (BENCHMARKS.md, section 1). Under steady traffic a pooled connection is reused within
/// milliseconds, so ten seconds closes only what a burst left behind.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds a [`PooledClient`].
pub(crate) fn pooled_client() -> PooledClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(https_connector(Some(Duration::from_secs(10))))
}

/// A keep-alive HTTP/2 client (prior knowledge over `http://`, ALPN `h2` over `https://`),
/// for OTLP/gRPC trace export; integrations and Lambda stay on HTTP/1.1.
pub(crate) fn http2_client() -> PooledClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.enforce_http(false);
    connector.set_connect_timeout(Some(Duration::from_secs(10)));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .expect("ring supports the default TLS protocol versions")
        .https_or_http()
        .enable_http2()
        .wrap_connector(connector);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .http2_only(true)
        .build(connector)
}

/// The connector under every client of the gateway: `http://` and `https://` (rustls with the
/// ring provider and the webpki roots), TCP_NODELAY, HTTP/1.1, with `connect_timeout`.
pub(crate) fn https_connector(connect_timeout: Option<Duration>) -> HttpsConnector<HttpConnector> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.enforce_http(false);
    connector.set_connect_timeout(connect_timeout);
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .expect("ring supports the default TLS protocol versions")
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector)
}
