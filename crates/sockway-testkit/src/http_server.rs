//! The one HTTP/1.1 server loop under every stand-in of the testkit (the mock backend, the
//! Lambda Invoke API, the JWKS endpoint, the credential endpoints): accept on a loopback
//! listener, read each request whole, answer with the stand-in's handler.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What a server has seen: TCP connections accepted, requests being answered now and the
/// most at once.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    connections: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Counters {
    /// TCP connections accepted so far.
    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The most requests answered at once since the last call (from receiving the head to
    /// handing the answer to hyper), and starts counting again.
    pub(crate) fn take_max_in_flight(&self) -> usize {
        self.max_in_flight
            .swap(self.in_flight.load(Ordering::SeqCst), Ordering::SeqCst)
    }

    fn enter(&self) {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Binds `127.0.0.1:0` and serves every request with `handler`, given the request's head and
/// whole body, until the returned task is aborted (the stand-ins abort it when dropped).
pub(crate) async fn spawn<F, Fut>(what: &str, handler: F) -> (SocketAddr, JoinHandle<()>)
where
    F: Fn(http::request::Parts, Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = hyper::Response<Full<Bytes>>> + Send + 'static,
{
    let (addr, task, _) = spawn_counted(what, handler).await;
    (addr, task)
}

/// [`spawn`], with the server's [`Counters`].
pub(crate) async fn spawn_counted<F, Fut>(
    what: &str,
    handler: F,
) -> (SocketAddr, JoinHandle<()>, Arc<Counters>)
where
    F: Fn(http::request::Parts, Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = hyper::Response<Full<Bytes>>> + Send + 'static,
{
    let counters = Arc::new(Counters::default());
    let counted = counters.clone();
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|error| panic!("bind the {what}: {error}"));
    let addr = listener.local_addr().expect("a bound address");
    let handler = Arc::new(handler);
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            counted.connections.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            let counted = counted.clone();
            connections.spawn(async move {
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let handler = handler.clone();
                    let counted = counted.clone();
                    async move {
                        counted.enter();
                        let (parts, body) = request.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|collected| collected.to_bytes())
                            .unwrap_or_default();
                        let response = handler(parts, body).await;
                        counted.leave();
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, task, counters)
}

/// A response with `status`, `body` and `headers`.
pub(crate) fn response(
    status: u16,
    headers: impl IntoIterator<Item = (String, String)>,
    body: Bytes,
) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(body));
    *response.status_mut() = http::StatusCode::from_u16(status).expect("valid status");
    for (name, value) in headers {
        response.headers_mut().append(
            http::HeaderName::try_from(name).expect("valid header name"),
            http::HeaderValue::try_from(value).expect("valid header value"),
        );
    }
    response
}
