//! The pooled HTTP/1.1 client every outgoing call of the gateway uses: integrations, Lambda
//! Invoke, authorizers, JWKS fetches and the management client. A leaf, so that `aws` and
//! `integrations` share it without importing each other.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The pooled HTTP/1.1 client type every outgoing call uses: `http://` and `https://`
/// (rustls with the ring provider and the webpki roots), keep-alive.
pub(crate) type PooledClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Builds a [`PooledClient`]. One is built per gateway and shared by every integration and
/// authorizer, so connections to a backend are reused across routes.
pub(crate) fn pooled_client() -> PooledClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.enforce_http(false);
    connector.set_connect_timeout(Some(Duration::from_secs(10)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .expect("ring supports the default TLS protocol versions")
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(https)
}
