//! [`MockBackend`]: a real HTTP server on port 0 that records what it receives.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{DEADLINE, http_server};

/// One request the backend received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// The headers.
    pub headers: http::HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl RecordedRequest {
    /// The body as JSON (a Lambda-proxy event for `http` integrations).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "backend request body is not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// `requestContext.routeKey` of the event.
    pub fn route_key(&self) -> String {
        self.json()["requestContext"]["routeKey"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// How the backend answers one request.
#[derive(Debug, Clone)]
pub struct MockResponse {
    /// HTTP status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
    /// Wait this long before answering (for timeout tests).
    pub delay: Option<Duration>,
}

impl MockResponse {
    /// A 200 with a JSON body.
    pub fn json(value: Value) -> MockResponse {
        MockResponse {
            status: 200,
            headers: Vec::new(),
            body: Bytes::from(value.to_string()),
            delay: None,
        }
    }

    /// A Lambda-proxy result with `statusCode` and an optional `body`.
    pub fn proxy(status_code: u16, body: Option<&str>) -> MockResponse {
        let mut result = serde_json::json!({ "statusCode": status_code });
        if let Some(body) = body {
            result["body"] = Value::String(body.to_owned());
        }
        MockResponse::json(result)
    }

    /// A plain reply with this status and body.
    pub fn status(status: u16, body: &str) -> MockResponse {
        MockResponse {
            status,
            headers: Vec::new(),
            body: Bytes::from(body.to_owned()),
            delay: None,
        }
    }

    /// The same reply with one more header.
    pub fn with_header(mut self, name: &str, value: &str) -> MockResponse {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The same reply after `delay`.
    pub fn delayed(mut self, delay: Duration) -> MockResponse {
        self.delay = Some(delay);
        self
    }
}

/// Decides the answer to each request.
pub type Responder = Arc<dyn Fn(&RecordedRequest) -> MockResponse + Send + Sync>;

/// A real HTTP server on `127.0.0.1:0`; stopped when dropped.
pub struct MockBackend {
    addr: SocketAddr,
    requests: mpsc::UnboundedReceiver<RecordedRequest>,
    responder: Arc<Mutex<Responder>>,
    server: JoinHandle<()>,
    counters: Arc<http_server::Counters>,
}

impl std::fmt::Debug for MockBackend {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("MockBackend")
            .field("addr", &self.addr)
            .finish()
    }
}

/// The default answer: an echo Lambda that returns the event's body.
pub fn echo_responder() -> Responder {
    Arc::new(|request: &RecordedRequest| {
        let body = serde_json::from_slice::<Value>(&request.body)
            .ok()
            .and_then(|event| event.get("body").and_then(Value::as_str).map(str::to_owned));
        MockResponse::proxy(200, body.as_deref())
    })
}

impl MockBackend {
    /// Starts a backend that answers like an echo Lambda.
    pub async fn start() -> MockBackend {
        MockBackend::with_responder(echo_responder()).await
    }

    /// Starts a backend that answers with `responder`.
    pub async fn with_responder(responder: Responder) -> MockBackend {
        let (sender, requests) = mpsc::unbounded_channel();
        let responder = Arc::new(Mutex::new(responder));
        let shared_responder = responder.clone();
        let (addr, server, counters) =
            http_server::spawn_counted("mock backend", move |parts, body| {
                let recorded = RecordedRequest {
                    method: parts.method.to_string(),
                    uri: parts.uri.to_string(),
                    headers: parts.headers,
                    body,
                };
                let answer = (shared_responder.lock().expect("responder lock"))(&recorded);
                let _ = sender.send(recorded);
                async move {
                    if let Some(delay) = answer.delay {
                        tokio::time::sleep(delay).await;
                    }
                    http_server::response(answer.status, answer.headers, answer.body)
                }
            })
            .await;
        MockBackend {
            addr,
            requests,
            responder,
            server,
            counters,
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Replaces how the backend answers from now on.
    pub fn respond_with(
        &self,
        responder: impl Fn(&RecordedRequest) -> MockResponse + Send + Sync + 'static,
    ) {
        *self.responder.lock().expect("responder lock") = Arc::new(responder);
    }

    /// The next request, waiting up to the test deadline.
    pub async fn next_request(&mut self) -> RecordedRequest {
        tokio::time::timeout(DEADLINE, self.requests.recv())
            .await
            .unwrap_or_else(|_| panic!("backend received no request within {DEADLINE:?}"))
            .expect("backend server is running")
    }

    /// The next request if one arrives within `within`; `None` otherwise. For asserting that
    /// nothing more arrives.
    pub async fn next_request_within(&mut self, within: Duration) -> Option<RecordedRequest> {
        tokio::time::timeout(within, self.requests.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next request's JSON body (a Lambda-proxy event).
    pub async fn next_event(&mut self) -> Value {
        self.next_request().await.json()
    }

    /// The next event whose route key is `route_key`, skipping others.
    pub async fn next_event_for(&mut self, route_key: &str) -> Value {
        loop {
            let event = self.next_event().await;
            if event["requestContext"]["routeKey"] == route_key {
                return event;
            }
        }
    }

    /// TCP connections the backend has accepted so far.
    pub fn connections_accepted(&self) -> usize {
        self.counters.connections()
    }

    /// The most requests the backend was answering at once (a delayed answer counts until its
    /// delay is over) since the last call; the count starts again.
    pub fn take_max_in_flight(&self) -> usize {
        self.counters.take_max_in_flight()
    }

    /// Every request received so far and not yet taken, without waiting.
    pub fn drain(&mut self) -> Vec<RecordedRequest> {
        let mut drained = Vec::new();
        while let Ok(request) = self.requests.try_recv() {
            drained.push(request);
        }
        drained
    }
}

impl Drop for MockBackend {
    fn drop(&mut self) {
        self.server.abort();
    }
}
