//! [`BackendClient`]: the client of integrations, authorizers and Lambda Invoke, whose calls
//! follow client traffic. Its own pool of HTTP/1.1 connections, one list per backend (scheme,
//! host and port), each connection driven by the call that holds it.
//!
//! **Driven by the call.** A connection is hyper's HTTP/1.1 client connection
//! (`hyper::client::conn::http1`), whose request sender and I/O driver are two halves of one
//! state machine. hyper_util's pooled client runs the driver on a task of its own, so every
//! call crosses tasks twice (the request handed to the driver, the answer handed back) and
//! builds a connect-or-checkout race it moves whole (BENCHMARKS.md, section 3a). Here a call
//! checks a connection out and polls both halves itself until it has read the answer's body:
//! no task per connection, no hand-off, and an idle connection costs no task at all.
//!
//! **The cap.** A call first takes one of its backend's `limits.max_backend_connections`
//! places, and the calls beyond wait, first come first served, for one to finish. A
//! connection carries one call at a time, so this also caps the connections open to that
//! backend. Without the cap a backlog of calls opens a connection each: under open-loop load
//! just below the saturating rate the gateway spent its time opening connections until it ran
//! out of file descriptors (BENCHMARKS.md, latency curves), where a bounded pool keeps reusing
//! the connections it has.
//!
//! **Idle connections.** A connection goes back to its backend's list once its answer is read
//! whole and it can carry another request; the newest is used first, so the ones a burst left
//! behind age out: a sweeper closes whatever waited longer than [`super::POOL_IDLE_TIMEOUT`].
//! A connection the backend closed while it waited is found when a call checks it out (its
//! driver reports the end before a request is written); the call then takes the next one, or
//! a new one, with its request unsent. A request already written is never sent twice.

use std::error::Error as StdError;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tower_service::Service;

use super::{POOL_IDLE_TIMEOUT, https_connector};

/// The integrations' and authorizers' client, with at most `limit` calls in flight to one
/// backend (module documentation). Cheap to clone; clones share the pool and the caps.
#[derive(Debug, Clone)]
pub(crate) struct BackendClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    connector: HttpsConnector<HttpConnector>,
    caps: Mutex<Caps>,
    /// Counts the calls that found their backend's places taken and waited.
    waits: Counter,
    /// How long a connection may wait unused before the sweeper closes it.
    idle_timeout: Duration,
    /// Whether a sweeper task is running.
    sweeping: AtomicBool,
}

/// The cap and each backend, behind one lock: a call takes it once, to find its backend;
/// `set_limit` changes the cap and every backend's places at once. A list, not a map: the
/// backends are the configuration's (its HTTP hosts and a Lambda endpoint per region), a
/// handful, and comparing a few short authorities costs less than hashing one (`Authority`
/// hashes byte by byte, lower-casing).
#[derive(Debug)]
struct Caps {
    limit: usize,
    backends: Vec<Arc<Backend>>,
}

/// One backend: its places, its idle connections and what every request to it carries.
#[derive(Debug)]
struct Backend {
    scheme: Scheme,
    authority: Authority,
    /// The `Host` header of its requests: the host, and the port unless the scheme's own.
    host: HeaderValue,
    places: Arc<Semaphore>,
    /// Idle connections, the most recently used last.
    idle: Mutex<Vec<Idle>>,
}

/// An idle connection and when it was given back.
struct Idle {
    connection: Box<Connection>,
    since: Instant,
}

impl std::fmt::Debug for Idle {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Idle")
            .field("since", &self.since)
            .finish_non_exhaustive()
    }
}

/// The stream under a connection: TCP, or TLS over TCP for `https://`.
type Io = MaybeHttpsStream<TokioIo<TcpStream>>;

/// One HTTP/1.1 connection's two halves.
struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
    driver: http1::Connection<Io, Full<Bytes>>,
}

/// A backend's answer, its body read whole.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// Why a call to a backend failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BackendError {
    /// No connection could be made: nothing was sent, so the backend's handler did not run.
    #[error("could not connect to the backend")]
    Connect(#[source] Box<dyn StdError + Send + Sync>),
    /// The exchange failed after the request may have been written.
    #[error("the exchange with the backend failed")]
    Exchange(#[source] hyper::Error),
    /// The backend closed the connection before its answer was complete.
    #[error("the backend closed the connection before its answer was complete")]
    Closed,
    /// The answer's body was larger than the caller reads.
    #[error("response body larger than {limit} bytes")]
    TooLarge {
        /// The caller's limit in bytes.
        limit: usize,
    },
    /// The request's URI names no backend (no scheme or no host).
    #[error("the request URI `{0}` has no scheme or host")]
    NotAbsolute(Uri),
}

impl BackendError {
    /// Whether nothing reached the backend: the connection was never made.
    pub(crate) fn is_connect(&self) -> bool {
        matches!(self, BackendError::Connect(_))
    }
}

/// How one exchange on a checked-out connection ended.
enum Exchange {
    /// The answer or a failure; the connection, when it can carry another request.
    Done(Result<Answer, BackendError>, Option<Box<Connection>>),
    /// The connection was closed before the request was written: the request is back.
    Unsent(Request<Full<Bytes>>, Option<hyper::Error>),
}

impl BackendClient {
    /// A client over a new pool, with at most `limit` calls in flight to one backend, counting
    /// in `waits` the calls that had to wait.
    pub(crate) fn new(limit: usize, waits: Counter) -> BackendClient {
        BackendClient::with_idle_timeout(limit, waits, POOL_IDLE_TIMEOUT)
    }

    fn with_idle_timeout(limit: usize, waits: Counter, idle_timeout: Duration) -> BackendClient {
        BackendClient {
            inner: Arc::new(Inner {
                connector: https_connector(Some(Duration::from_secs(10))),
                caps: Mutex::new(Caps {
                    limit: limit.max(1),
                    backends: Vec::new(),
                }),
                waits,
                idle_timeout,
                sweeping: AtomicBool::new(false),
            }),
        }
    }

    /// Sends `request` once one of its backend's places is free and reads the answer, its body
    /// at most `max_body` bytes. The wait has no bound of its own: callers bound the whole
    /// call by their timeout, and a call dropped midway closes its connection.
    pub(crate) async fn call(
        &self,
        request: Request<Full<Bytes>>,
        max_body: usize,
    ) -> Result<Answer, BackendError> {
        let backend = self.backend(request.uri())?;
        let _place = match backend.places.try_acquire() {
            Ok(place) => place,
            Err(_) => {
                self.inner.waits.inc();
                backend
                    .places
                    .acquire()
                    .await
                    .expect("a backend's places are never closed")
            }
        };
        let mut request = origin_form(request, &backend.host);
        loop {
            let (connection, reused) = match backend.checkout(self.inner.idle_timeout) {
                Some(connection) => (connection, true),
                None => (self.connect(&backend).await?, false),
            };
            match exchange(connection, request, max_body).await {
                Exchange::Done(answer, connection) => {
                    if let Some(connection) = connection {
                        self.checkin(&backend, connection);
                    }
                    return answer;
                }
                // The backend closed an idle connection: the next one, or a new one.
                Exchange::Unsent(unsent, _) if reused => request = unsent,
                Exchange::Unsent(_, error) => {
                    return Err(error.map_or(BackendError::Closed, BackendError::Exchange));
                }
            }
        }
    }

    /// Changes the cap (a reload). Calls in flight keep their places: a lower cap takes effect
    /// as they finish.
    pub(crate) fn set_limit(&self, limit: usize) {
        let limit = limit.max(1);
        let mut caps = self.inner.caps.lock().unwrap_or_else(|e| e.into_inner());
        let old = std::mem::replace(&mut caps.limit, limit);
        for backend in &caps.backends {
            let places = &backend.places;
            if limit > old {
                places.add_permits(limit - old);
            } else if limit < old {
                let excess = old - limit;
                let forgotten = places.forget_permits(excess);
                if forgotten < excess {
                    // The rest are in use: take them out of circulation as they come back.
                    let places = Arc::clone(places);
                    let missing = u32::try_from(excess - forgotten).unwrap_or(u32::MAX);
                    tokio::spawn(async move {
                        if let Ok(permits) = places.acquire_many_owned(missing).await {
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

    /// `uri`'s backend, made on its first call.
    fn backend(&self, uri: &Uri) -> Result<Arc<Backend>, BackendError> {
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(BackendError::NotAbsolute(uri.clone()));
        };
        let mut caps = self.inner.caps.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(backend) = caps
            .backends
            .iter()
            .find(|known| known.authority == *authority && known.scheme == *scheme)
        {
            return Ok(Arc::clone(backend));
        }
        let backend = Arc::new(Backend {
            scheme: scheme.clone(),
            authority: authority.clone(),
            host: host_header(scheme, authority),
            places: Arc::new(Semaphore::new(caps.limit)),
            idle: Mutex::new(Vec::new()),
        });
        caps.backends.push(Arc::clone(&backend));
        Ok(backend)
    }

    /// Opens a new connection to `backend` (TCP, and TLS for `https://`).
    async fn connect(&self, backend: &Backend) -> Result<Box<Connection>, BackendError> {
        let uri = Uri::from_parts({
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(backend.scheme.clone());
            parts.authority = Some(backend.authority.clone());
            parts.path_and_query = Some(PathAndQuery::from_static("/"));
            parts
        })
        .map_err(|error| BackendError::Connect(Box::new(error)))?;
        let mut connector = self.inner.connector.clone();
        poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(BackendError::Connect)?;
        let io = connector.call(uri).await.map_err(BackendError::Connect)?;
        let (sender, driver) = http1::handshake(io)
            .await
            .map_err(|error| BackendError::Connect(Box::new(error)))?;
        Ok(Box::new(Connection { sender, driver }))
    }

    /// Gives `connection` back to `backend`'s idle list, and makes sure a sweeper runs.
    fn checkin(&self, backend: &Backend, connection: Box<Connection>) {
        backend
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Idle {
                connection,
                since: Instant::now(),
            });
        if !self.inner.sweeping.swap(true, Ordering::AcqRel) {
            tokio::spawn(sweep(Arc::downgrade(&self.inner)));
        }
    }

    /// How many idle connections the pool holds, over every backend.
    #[cfg(test)]
    fn idle(&self) -> usize {
        let caps = self.inner.caps.lock().unwrap_or_else(|e| e.into_inner());
        caps.backends
            .iter()
            .map(|backend| backend.idle.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

impl Backend {
    /// The most recently used idle connection, unless it waited longer than `idle_timeout`
    /// (then every other did too, and all of them are closed).
    fn checkout(&self, idle_timeout: Duration) -> Option<Box<Connection>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let newest = idle.pop()?;
        if newest.since.elapsed() < idle_timeout {
            return Some(newest.connection);
        }
        let expired = std::mem::take(&mut *idle);
        drop(idle);
        drop((newest, expired));
        None
    }
}

/// Closes the connections that waited unused longer than the idle timeout, every half of it,
/// until the pool holds none or is gone.
async fn sweep(inner: Weak<Inner>) {
    loop {
        let Some(period) = inner.upgrade().map(|inner| inner.idle_timeout / 2) else {
            return;
        };
        tokio::time::sleep(period).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let backends = inner
            .caps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .backends
            .clone();
        let mut left = 0;
        for backend in &backends {
            let closed: Vec<Idle> = {
                let mut idle = backend.idle.lock().unwrap_or_else(|e| e.into_inner());
                let keep = idle
                    .iter()
                    .position(|idle| idle.since.elapsed() < inner.idle_timeout)
                    .unwrap_or(idle.len());
                left += idle.len() - keep;
                idle.drain(..keep).collect()
            };
            // Closed outside the lock.
            drop(closed);
        }
        if left == 0 {
            inner.sweeping.store(false, Ordering::Release);
            // A connection given back since the count: this sweeper goes on unless that
            // checkin started another.
            let any = backends.iter().any(|backend| {
                !backend
                    .idle
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_empty()
            });
            if !any || inner.sweeping.swap(true, Ordering::AcqRel) {
                return;
            }
        }
    }
}

/// `request` as sent on a connection to its backend: the URI in origin form (`/path?query`)
/// and a `Host` header unless it has one.
fn origin_form(request: Request<Full<Bytes>>, host: &HeaderValue) -> Request<Full<Bytes>> {
    let (mut parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    parts.uri = Uri::from(path);
    if !parts.headers.contains_key(HOST) {
        parts.headers.insert(HOST, host.clone());
    }
    Request::from_parts(parts, body)
}

/// The `Host` header for `authority`: its host, and its port unless the scheme's default.
fn host_header(scheme: &Scheme, authority: &Authority) -> HeaderValue {
    let default_port = if *scheme == Scheme::HTTPS { 443 } else { 80 };
    let text = match authority.port_u16() {
        Some(port) if port != default_port => format!("{}:{port}", authority.host()),
        _ => authority.host().to_owned(),
    };
    HeaderValue::from_str(&text).expect("an authority's host and port are header-safe")
}

/// Sends `request` on `connection` and reads the answer whole, polling the connection's driver
/// alongside: the calling task is the only one that touches the connection.
async fn exchange(
    mut connection: Box<Connection>,
    request: Request<Full<Bytes>>,
    max_body: usize,
) -> Exchange {
    let Connection { sender, driver } = &mut *connection;
    let mut driven = true;
    // Until the connection wants a request; a driver that ends first was closed. The driver
    // goes first: an idle connection may want a request already, and only its driver reads
    // the end the backend sent meanwhile.
    let ready = poll_fn(|cx| {
        if driven && driver.poll_without_shutdown(cx).is_ready() {
            driven = false;
        }
        poll_driven(driver, &mut driven, cx, |cx| sender.poll_ready(cx))
    })
    .await;
    match ready {
        // A request sender may still say ready when its driver has just ended.
        Some(Ok(())) if driven => {}
        Some(Ok(())) | None => return Exchange::Unsent(request, None),
        Some(Err(error)) => return Exchange::Unsent(request, Some(error)),
    }
    let mut response = pin!(sender.try_send_request(request));
    let response =
        poll_fn(|cx| poll_driven(driver, &mut driven, cx, |cx| response.as_mut().poll(cx))).await;
    let response = match response {
        Some(Ok(response)) => response,
        Some(Err(mut error)) => {
            return match error.take_message() {
                Some(request) => Exchange::Unsent(request, Some(error.into_error())),
                None => Exchange::Done(Err(BackendError::Exchange(error.into_error())), None),
            };
        }
        None => return Exchange::Done(Err(BackendError::Closed), None),
    };
    let (parts, body) = response.into_parts();
    let mut collect = pin!(Limited::new(body, max_body).collect());
    let body =
        poll_fn(|cx| poll_driven(driver, &mut driven, cx, |cx| collect.as_mut().poll(cx))).await;
    let body = match body {
        Some(Ok(body)) => body.to_bytes(),
        Some(Err(error)) => {
            let error = if error.is::<http_body_util::LengthLimitError>() {
                BackendError::TooLarge { limit: max_body }
            } else {
                match error.downcast::<hyper::Error>() {
                    Ok(error) => BackendError::Exchange(*error),
                    Err(_) => BackendError::Closed,
                }
            };
            return Exchange::Done(Err(error), None);
        }
        None => return Exchange::Done(Err(BackendError::Closed), None),
    };
    // One more turn of the driver, so a connection the answer closed is not kept.
    if driven {
        poll_fn(|cx| {
            if driver.poll_without_shutdown(cx).is_ready() {
                driven = false;
            }
            Poll::Ready(())
        })
        .await;
    }
    let answer = Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    };
    let reusable = driven && !sender.is_closed();
    Exchange::Done(Ok(answer), reusable.then_some(connection))
}

/// Polls `wanted`, something only `driver` can bring about (the connection wanting a request,
/// the answer, its body), and the driver in turns: `Some` once `wanted` is ready, `None` when
/// the driver ended first (`driven` then turns false).
///
/// Only the driver is polled with the task's waker, for the socket. `wanted` is polled with a
/// waker that does nothing and again right after each turn of the driver, which is what makes
/// it ready: a waker of the task's own there would only wake the task while it runs, and
/// tokio then queues it behind every other task before polling it again, a round of the
/// scheduler per step of the exchange.
fn poll_driven<T>(
    driver: &mut http1::Connection<Io, Full<Bytes>>,
    driven: &mut bool,
    cx: &mut Context<'_>,
    mut wanted: impl FnMut(&mut Context<'_>) -> Poll<T>,
) -> Poll<Option<T>> {
    let mut quiet = Context::from_waker(Waker::noop());
    // A few turns: the body's chunks each take one (the driver hands one over, then waits
    // until the reader wants the next).
    for _ in 0..4 {
        if let Poll::Ready(value) = wanted(&mut quiet) {
            return Poll::Ready(Some(value));
        }
        if !*driven {
            return Poll::Ready(None);
        }
        if driver.poll_without_shutdown(cx).is_ready() {
            *driven = false;
        }
    }
    match wanted(&mut quiet) {
        Poll::Ready(value) => Poll::Ready(Some(value)),
        Poll::Pending if !*driven => Poll::Ready(None),
        Poll::Pending => Poll::Pending,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use sockway_testkit::{MockBackend, MockResponse};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A backend whose every answer takes `delay`.
    async fn slow_backend(delay: Duration) -> MockBackend {
        MockBackend::with_responder(Arc::new(move |_| {
            MockResponse::status(200, "done").delayed(delay)
        }))
        .await
    }

    fn post(url: String) -> Request<Full<Bytes>> {
        Request::post(url)
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    }

    /// One call, its answer read whole.
    async fn call(client: BackendClient, url: String) {
        let answer = client.call(post(url), 1024).await.unwrap();
        assert_eq!(answer.body, "done");
    }

    /// Runs `calls` calls at once and returns the most the backend answered at once.
    async fn burst(client: &BackendClient, backend: &MockBackend, calls: usize) -> usize {
        backend.take_max_in_flight();
        let calls = (0..calls).map(|_| call(client.clone(), backend.url("/")));
        futures_util::future::join_all(calls).await;
        backend.take_max_in_flight()
    }

    /// A raw HTTP/1.1 server on loopback that answers each connection's first request with
    /// `200 ok` (keep-alive) and then, after `linger`, closes the connection; counts requests.
    async fn one_request_per_connection(linger: Duration) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&requests);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let counted = Arc::clone(&counted);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let mut body = [0u8; 2];
                    stream.read_exact(&mut body).await.unwrap();
                    counted.fetch_add(1, Ordering::SeqCst);
                    stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ndone")
                        .await
                        .unwrap();
                    tokio::time::sleep(linger).await;
                });
            }
        });
        (url, requests)
    }

    #[tokio::test]
    async fn calls_one_after_another_reuse_one_connection_in_origin_form_with_a_host() {
        let mut backend = MockBackend::with_responder(Arc::new(|request| {
            MockResponse::status(201, &request.uri).with_header("x-answer", "yes")
        }))
        .await;
        let client = BackendClient::new(4, Counter::default());
        let url = backend.url("/path/to?q=1");
        let host = url["http://".len()..].split('/').next().unwrap().to_owned();
        for _ in 0..5 {
            let answer = client.call(post(url.clone()), 1024).await.unwrap();
            assert_eq!(answer.status, StatusCode::CREATED);
            assert_eq!(answer.headers["x-answer"], "yes");
            assert_eq!(answer.body, "/path/to?q=1");
            let request = backend.next_request().await;
            assert_eq!(request.uri, "/path/to?q=1");
            assert_eq!(request.headers[HOST], host.as_str());
            assert_eq!(request.body, "{}");
        }
        assert_eq!(backend.connections_accepted(), 1);
        assert_eq!(client.idle(), 1);
    }

    #[test]
    fn the_host_header_leaves_out_the_schemes_own_port() {
        let host = |uri: &str| {
            let uri: Uri = uri.parse().unwrap();
            host_header(uri.scheme().unwrap(), uri.authority().unwrap())
        };
        assert_eq!(host("http://example.com:80/"), "example.com");
        assert_eq!(host("http://example.com:443/"), "example.com:443");
        assert_eq!(host("https://example.com:443/"), "example.com");
        assert_eq!(host("https://user@example.com:8443/"), "example.com:8443");
        assert_eq!(host("http://[::1]:9000/"), "[::1]:9000");
    }

    #[tokio::test]
    async fn a_connection_the_backend_closed_while_idle_is_replaced_and_the_request_sent_once() {
        let (url, requests) = one_request_per_connection(Duration::ZERO).await;
        let client = BackendClient::new(4, Counter::default());
        client.call(post(url.clone()), 1024).await.unwrap();
        assert_eq!(client.idle(), 1, "the answer left the connection open");
        // The server closes it after its answer; the close reaches the client meanwhile.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let answer = client.call(post(url), 1024).await.unwrap();
        assert_eq!(answer.body, "done");
        assert_eq!(requests.load(Ordering::SeqCst), 2, "one request per call");
    }

    #[tokio::test]
    async fn a_backend_that_closes_without_answering_fails_the_call_after_connecting() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let accepted = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buffer = [0u8; 1024];
            let _ = stream.read(&mut buffer).await;
            drop(stream);
            // A second connection would be a retry of a request that was written.
            tokio::time::timeout(Duration::from_millis(300), listener.accept())
                .await
                .is_ok()
        });
        let client = BackendClient::new(4, Counter::default());
        let error = client.call(post(url), 1024).await.unwrap_err();
        assert!(!error.is_connect(), "{error:?}");
        assert!(
            !accepted.await.unwrap(),
            "the written request was sent again"
        );
        assert_eq!(client.idle(), 0);
    }

    #[tokio::test]
    async fn a_backend_that_refuses_connections_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        let client = BackendClient::new(4, Counter::default());
        let error = client.call(post(url), 1024).await.unwrap_err();
        assert!(error.is_connect(), "{error:?}");
        let error = client
            .call(post("/no/host".to_owned()), 1024)
            .await
            .unwrap_err();
        assert!(matches!(error, BackendError::NotAbsolute(_)), "{error:?}");
    }

    #[tokio::test]
    async fn an_answer_that_closes_its_connection_is_not_kept() {
        let backend = MockBackend::with_responder(Arc::new(|_| {
            MockResponse::status(200, "done").with_header("connection", "close")
        }))
        .await;
        let client = BackendClient::new(4, Counter::default());
        call(client.clone(), backend.url("/")).await;
        assert_eq!(client.idle(), 0);
        call(client.clone(), backend.url("/")).await;
        assert_eq!(backend.connections_accepted(), 2);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_and_its_connection_closed() {
        let backend =
            MockBackend::with_responder(Arc::new(|_| MockResponse::status(200, &"x".repeat(100))))
                .await;
        let client = BackendClient::new(4, Counter::default());
        let error = client.call(post(backend.url("/")), 99).await.unwrap_err();
        assert!(
            matches!(error, BackendError::TooLarge { limit: 99 }),
            "{error:?}"
        );
        assert_eq!(client.idle(), 0);
        let answer = client.call(post(backend.url("/")), 100).await.unwrap();
        assert_eq!(answer.body.len(), 100);
        assert_eq!(backend.connections_accepted(), 2);
    }

    #[tokio::test]
    async fn a_call_dropped_midway_closes_its_connection_and_gives_its_place_back() {
        let backend = slow_backend(Duration::from_millis(300)).await;
        let client = BackendClient::new(1, Counter::default());
        let dropped = tokio::time::timeout(
            Duration::from_millis(50),
            client.call(post(backend.url("/")), 1024),
        )
        .await;
        assert!(dropped.is_err(), "the call should still have been waiting");
        call(client.clone(), backend.url("/")).await;
        assert_eq!(backend.connections_accepted(), 2);
        assert_eq!(client.idle(), 1);
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_the_idle_timeout() {
        let backend = slow_backend(Duration::ZERO).await;
        let client =
            BackendClient::with_idle_timeout(4, Counter::default(), Duration::from_millis(200));
        futures_util::future::join_all((0..3).map(|_| call(client.clone(), backend.url("/"))))
            .await;
        assert_eq!(client.idle(), 3);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(client.idle(), 0, "the sweeper closed them");
        assert!(
            !client.inner.sweeping.load(Ordering::Acquire),
            "and stopped"
        );
        call(client.clone(), backend.url("/")).await;
        assert_eq!(backend.connections_accepted(), 4);
        assert_eq!(client.idle(), 1);
        assert!(
            client.inner.sweeping.load(Ordering::Acquire),
            "a new sweeper runs"
        );
    }

    #[tokio::test]
    async fn calls_beyond_the_cap_wait_and_set_limit_moves_it() {
        let backend = slow_backend(Duration::from_millis(50)).await;
        let waits = Counter::default();
        let client = BackendClient::new(3, waits.clone());
        assert_eq!(burst(&client, &backend, 7).await, 3);
        assert_eq!(waits.get(), 4, "calls that found the three places taken");
        assert_eq!(backend.connections_accepted(), 3);
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
