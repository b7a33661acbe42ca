//! The pooled HTTP/1.1 client every outgoing call of the gateway uses: integrations, Lambda
//! Invoke, authorizers, JWKS fetches, OTLP/HTTP trace export and the management client, and
//! the connector under it, which the AWS SDK's credential providers also use
//! (`aws::connector`); and the HTTP/2 client of OTLP/gRPC trace export. A leaf, so that `aws`
//! and `integrations` share it without importing each other.
//!
//! [`BackendClient`] is the pooled client with a cap: integrations and authorizers, whose calls
//! follow client traffic, have at most `limits.max_backend_connections` calls in flight to one
//! backend (scheme, host and port) and the calls beyond wait, first come first served, for one
//! to finish. An HTTP/1.1 connection carries one call at a time, so this also caps the
//! connections the pool opens to that backend. Without the cap a backlog of calls opens a
//! connection each: under open-loop load just below the saturating rate the gateway spent its
//! time opening connections until it ran out of file descriptors (BENCHMARKS.md, latency
//! curves), where a bounded pool keeps reusing the connections it has.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The pooled HTTP/1.1 client type every outgoing call uses: `http://` and `https://`
/// (rustls with the ring provider and the webpki roots), keep-alive.
pub(crate) type PooledClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// How long a connection to a backend may wait unused in the pool before it is closed.
///
/// The pool grows to the most calls ever in flight at once: a burst of 200 `$connect` or
/// route calls leaves 200 connections (hyper's buffers and a task each, about 13 KiB) behind,
/// which a gateway holding idle WebSocket connections would otherwise keep for a minute
/// (BENCHMARKS.md, section 1). Under steady traffic a pooled connection is reused within
/// milliseconds, so ten seconds closes only what a burst left behind.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds a [`PooledClient`]. One is built per gateway and shared by every integration and
/// authorizer, so connections to a backend are reused across routes.
pub(crate) fn pooled_client() -> PooledClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(https_connector(Some(Duration::from_secs(10))))
}

/// The pooled client of integrations and authorizers, with at most `limit` calls in flight to
/// one backend (module documentation). Cheap to clone; clones share the pool and the caps.
#[derive(Debug, Clone)]
pub(crate) struct BackendClient {
    inner: Arc<BackendInner>,
}

#[derive(Debug)]
struct BackendInner {
    client: PooledClient,
    caps: Mutex<Caps>,
    /// Counts the calls that found their backend's places taken and waited.
    waits: Counter,
}

/// The cap and each backend's semaphore, behind one lock: a call takes it once, to find its
/// backend's semaphore; `set_limit` changes both at once. A list, not a map: the backends are
/// the configuration's (its HTTP hosts and a Lambda endpoint per region), a handful, and
/// comparing a few short authorities costs less than hashing one (`Authority` hashes byte by
/// byte, lower-casing).
#[derive(Debug)]
struct Caps {
    limit: usize,
    by_backend: Vec<(Scheme, Authority, Arc<Semaphore>)>,
}

/// A call's place among its backend's `limit`: hold it until the answer's body is read, when
/// the connection is free for the next call.
#[derive(Debug)]
pub(crate) struct BackendPermit {
    _permit: Option<OwnedSemaphorePermit>,
}

impl BackendClient {
    /// A client over a new pool, with at most `limit` calls in flight to one backend, counting
    /// in `waits` the calls that had to wait.
    pub(crate) fn new(limit: usize, waits: Counter) -> BackendClient {
        BackendClient {
            inner: Arc::new(BackendInner {
                client: pooled_client(),
                caps: Mutex::new(Caps {
                    limit: limit.max(1),
                    by_backend: Vec::new(),
                }),
                waits,
            }),
        }
    }

    /// Sends `request` once one of its backend's places is free, and returns the answer with
    /// the place, which the caller holds until it has read the body. The wait has no bound of
    /// its own: callers bound the whole call by their timeout.
    pub(crate) async fn request(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<(Response<Incoming>, BackendPermit), hyper_util::client::legacy::Error> {
        let permit = match self.semaphore(request.uri()) {
            Some(semaphore) => match Arc::clone(&semaphore).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    self.inner.waits.inc();
                    // Never closed, so this fails never.
                    semaphore.acquire_owned().await.ok()
                }
            },
            None => None,
        };
        let response = self.inner.client.request(request).await?;
        Ok((response, BackendPermit { _permit: permit }))
    }

    /// Changes the cap (a reload). Calls in flight keep their places: a lower cap takes effect
    /// as they finish.
    pub(crate) fn set_limit(&self, limit: usize) {
        let limit = limit.max(1);
        let mut caps = self.inner.caps.lock().unwrap_or_else(|e| e.into_inner());
        let old = std::mem::replace(&mut caps.limit, limit);
        for (_, _, semaphore) in &caps.by_backend {
            if limit > old {
                semaphore.add_permits(limit - old);
            } else if limit < old {
                let excess = old - limit;
                let forgotten = semaphore.forget_permits(excess);
                if forgotten < excess {
                    // The rest are in use: take them out of circulation as they come back.
                    let semaphore = Arc::clone(semaphore);
                    let missing = u32::try_from(excess - forgotten).unwrap_or(u32::MAX);
                    tokio::spawn(async move {
                        if let Ok(permits) = semaphore.acquire_many_owned(missing).await {
                            permits.forget();
                        }
                    });
                }
            }
        }
    }

    /// The cap in force.
    pub(crate) fn limit(&self) -> usize {
        self.inner
            .caps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .limit
    }

    /// The semaphore of `uri`'s backend, made on its first call; `None` for a URI without a
    /// host, which the pooled client refuses anyway.
    fn semaphore(&self, uri: &http::Uri) -> Option<Arc<Semaphore>> {
        let (scheme, authority) = (uri.scheme()?, uri.authority()?);
        let mut caps = self.inner.caps.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, semaphore)) = caps
            .by_backend
            .iter()
            .find(|(known_scheme, known, _)| known == authority && known_scheme == scheme)
        {
            return Some(Arc::clone(semaphore));
        }
        let semaphore = Arc::new(Semaphore::new(caps.limit));
        caps.by_backend
            .push((scheme.clone(), authority.clone(), Arc::clone(&semaphore)));
        Some(semaphore)
    }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http_body_util::BodyExt;
    use sockway_testkit::{MockBackend, MockResponse};

    use super::*;

    /// A backend whose every answer takes `delay`.
    async fn slow_backend(delay: Duration) -> MockBackend {
        MockBackend::with_responder(Arc::new(move |_| {
            MockResponse::status(200, "done").delayed(delay)
        }))
        .await
    }

    /// One call, its answer read whole before the place is given back.
    async fn call(client: BackendClient, url: String) {
        let request = Request::post(url).body(Full::new(Bytes::new())).unwrap();
        let (response, permit) = client.request(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        drop(permit);
        assert_eq!(body, "done");
    }

    /// Runs `calls` calls at once and returns the most the backend answered at once.
    async fn burst(client: &BackendClient, backend: &MockBackend, calls: usize) -> usize {
        backend.take_max_in_flight();
        let calls = (0..calls).map(|_| call(client.clone(), backend.url("/")));
        futures_util::future::join_all(calls).await;
        backend.take_max_in_flight()
    }

    #[tokio::test]
    async fn calls_beyond_the_cap_wait_and_set_limit_moves_it() {
        let backend = slow_backend(Duration::from_millis(50)).await;
        let waits = Counter::default();
        let client = BackendClient::new(3, waits.clone());
        assert_eq!(burst(&client, &backend, 7).await, 3);
        assert_eq!(waits.get(), 4, "calls that found the three places taken");
        assert!(backend.connections_accepted() <= 3);
        client.set_limit(5);
        assert_eq!(burst(&client, &backend, 11).await, 5);
        client.set_limit(1);
        assert_eq!(burst(&client, &backend, 3).await, 1);
        assert_eq!(client.limit(), 1);
    }

    #[tokio::test]
    async fn a_lower_cap_waits_for_the_calls_in_flight() {
        let mut backend = slow_backend(Duration::from_millis(150)).await;
        let client = BackendClient::new(3, Counter::default());
        let first: Vec<_> = (0..3)
            .map(|_| tokio::spawn(call(client.clone(), backend.url("/"))))
            .collect();
        for _ in 0..3 {
            backend.next_request().await;
        }
        // All three places are taken: the two the lower cap removes are taken out as they
        // come back, before any later call gets one.
        client.set_limit(1);
        let later: Vec<_> = (0..3)
            .map(|_| tokio::spawn(call(client.clone(), backend.url("/"))))
            .collect();
        for task in first {
            task.await.unwrap();
        }
        backend.take_max_in_flight();
        for task in later {
            task.await.unwrap();
        }
        assert_eq!(backend.take_max_in_flight(), 1);
    }

    #[tokio::test]
    async fn backends_are_capped_apart() {
        let (one, two) = (
            slow_backend(Duration::from_millis(50)).await,
            slow_backend(Duration::from_millis(50)).await,
        );
        let client = BackendClient::new(2, Counter::default());
        let calls = (0..4).flat_map(|_| {
            [
                call(client.clone(), one.url("/")),
                call(client.clone(), two.url("/")),
            ]
        });
        one.take_max_in_flight();
        two.take_max_in_flight();
        futures_util::future::join_all(calls).await;
        assert_eq!(one.take_max_in_flight(), 2);
        assert_eq!(two.take_max_in_flight(), 2);
    }
}
