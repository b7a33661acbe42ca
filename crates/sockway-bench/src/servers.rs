//! The servers built into the harness (`sockway-bench serve KIND`): the WebSocket echo
//! server of the self-baseline, the Lambda-proxy backend the gateway's routes call, a
//! same backend behind the Lambda Invoke API (checking every request's SigV4 signature, as
//! Lambda does), a bare HTTP server for the push baseline, a trivial broadcast hub for the
//! broadcast baseline, and the GRIP backend Pushpin calls in the side-by-side comparison.
//!
//! Each runs as its own process on `127.0.0.1:0`, prints `... listening on URL` and serves
//! until SIGTERM or until its stdin closes, so the harness measures its memory and CPU
//! exactly as it measures the gateway's. Which server a workload compares with is decided in
//! `workloads`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::SystemTime;

use anyhow::Context;
use bytes::Bytes;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use sockway_testkit::sigv4;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::task::TaskTracker;

use crate::client;
use crate::grip;
use crate::worker::WHOAMI_MESSAGE;

/// Which server to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ServerKind {
    /// A WebSocket server that sends every text or binary message back, with the gateway's
    /// buffer settings: the client's ceiling and the idle-memory baseline.
    WsEcho,
    /// An HTTP server answering each Lambda-proxy event with
    /// `{"statusCode":200,"body":<event body>}`; for route key `whoami`, the body is the
    /// event's connection id. `GET /last-event` returns the first `echo` event it received.
    LambdaBackend,
    /// The same function behind the Lambda Invoke API, `POST
    /// /2015-03-31/functions/{name}/invocations`: a request whose SigV4 signature is not
    /// [`LAMBDA_KEY`]'s for service `lambda` is refused with 403
    /// `InvalidSignatureException`, as Lambda refuses it. `GET /last-event` as above.
    Lambda,
    /// An HTTP server answering 200 with an empty body to every request.
    HttpOk,
    /// A WebSocket server that holds every connection and writes the body of each HTTP POST
    /// (any path) to all of them through a `tokio::sync::broadcast` channel, answering
    /// `{"delivered":N,"dropped":0}`: the least a broadcast can cost with these clients.
    WsBroadcast,
    /// The least a push can cost with these clients: an HTTP server that also holds
    /// WebSocket connections, answers a connection's `whoami` message with an id of its own,
    /// and on `POST …/@connections/{id}` writes the body to that connection from the
    /// request's own task (no hand-off to another task) and answers 200: the bare hyper
    /// server's request plus one frame written.
    WsPush,
    /// The least a routed message can cost with these libraries: a WebSocket server that
    /// turns each text message into a Lambda-proxy `MESSAGE` event (`serde_json`), POSTs it to
    /// `--backend` through hyper_util's pooled client (the gateway's), reads the
    /// `{"statusCode","body"}` answer and writes its body back, one task per connection.
    WsRelay,
    /// `ws-relay` with an HTTP/1.1 connection of its own to the backend per WebSocket
    /// connection, driven inside that connection's task (`hyper::client::conn::http1`, no
    /// connection task of hyper's to hand each call to and back from).
    WsRelayInline,
    /// Pushpin's backend in WebSocket-over-HTTP mode: accepts every `OPEN` (on a path ending
    /// in [`BROADCAST_PATH`], also subscribing the connection to [`BROADCAST_CHANNEL`]),
    /// answers the push receivers' `whoami` message with a channel of the connection's own
    /// and subscribes it to that channel, echoes any other text or binary message, answers
    /// `PING` with `PONG` and acknowledges `CLOSE`.
    GripBackend,
}

/// The key pair the Lambda stand-in accepts (`[aws]` of the gateway's config, and the
/// harness's own signed requests).
pub(crate) const LAMBDA_KEY: (&str, &str) = ("AKIDSOCKWAYBENCH", "sockway-bench-secret");

/// The region the Lambda stand-in is signed for.
pub(crate) const LAMBDA_REGION: &str = "us-east-1";

/// Connections opened on a path ending in this join [`BROADCAST_CHANNEL`] (GRIP backend).
pub(crate) const BROADCAST_PATH: &str = "/broadcast";

/// The channel the GRIP backend subscribes broadcast members to.
pub(crate) const BROADCAST_CHANNEL: &str = "all";

/// Listen backlog: room for every handshake a connect loop has in flight.
const BACKLOG: u32 = 4096;

/// The parts of a Lambda-proxy event the backend reads.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow, default)]
    body: Option<Cow<'a, str>>,
    #[serde(rename = "requestContext", borrow)]
    request_context: EventContext<'a>,
}

#[derive(Deserialize)]
struct EventContext<'a> {
    #[serde(rename = "routeKey", borrow)]
    route_key: Cow<'a, str>,
    #[serde(rename = "connectionId", borrow)]
    connection_id: Cow<'a, str>,
}

#[derive(Serialize)]
struct ProxyResult<'a> {
    #[serde(rename = "statusCode")]
    status_code: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
}

/// Runs the server until SIGTERM or end of stdin.
pub(crate) async fn run(kind: ServerKind, backend: Option<String>) -> anyhow::Result<()> {
    let relay = match kind {
        ServerKind::WsRelay | ServerKind::WsRelayInline => {
            let backend = backend.context("ws-relay needs --backend URL")?;
            Some(Relay::new(&backend, kind == ServerKind::WsRelayInline)?)
        }
        _ => None,
    };
    let socket = TcpSocket::new_v4().context("create socket")?;
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .context("bind 127.0.0.1:0")?;
    let listener = socket.listen(BACKLOG).context("listen")?;
    let addr = listener.local_addr().context("local address")?;
    let (name, url) = match kind {
        ServerKind::WsEcho => ("ws-echo", format!("ws://{addr}/dev")),
        ServerKind::LambdaBackend => ("lambda-backend", format!("http://{addr}/")),
        ServerKind::Lambda => ("lambda", format!("http://{addr}")),
        ServerKind::HttpOk => ("http-ok", format!("http://{addr}/")),
        ServerKind::WsBroadcast => ("ws-broadcast", format!("ws://{addr}/dev")),
        ServerKind::WsPush => ("ws-push", format!("ws://{addr}/dev")),
        ServerKind::WsRelay => ("ws-relay", format!("ws://{addr}/dev")),
        ServerKind::WsRelayInline => ("ws-relay-inline", format!("ws://{addr}/dev")),
        ServerKind::GripBackend => ("grip-backend", format!("http://{addr}/")),
    };
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "sockway-bench {name} listening on {url}").context("write stdout")?;
        stdout.flush().context("write stdout")?;
    }
    let tasks = TaskTracker::new();
    let captured = Arc::new(OnceLock::new());
    let accepting = tasks.spawn(accept_loop(listener, kind, tasks.clone(), captured, relay));
    wait_for_stop().await;
    accepting.abort();
    tasks.close();
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    kind: ServerKind,
    tasks: TaskTracker,
    captured: Arc<OnceLock<Bytes>>,
    relay: Option<Relay>,
) {
    // Only the broadcast hub uses it; a lagging receiver skips messages rather than holding
    // the others back.
    let (hub, _) = broadcast::channel::<Message>(64);
    // Only the push baseline uses it.
    let sinks = Arc::new(Sinks::default());
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                // EMFILE and friends: report and keep serving the connections already open.
                eprintln!("sockway-bench server: accept failed: {error}");
                tokio::task::yield_now().await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match kind {
            ServerKind::WsEcho => {
                tasks.spawn(echo_websocket(stream));
            }
            ServerKind::LambdaBackend => {
                let captured = captured.clone();
                tasks.spawn(serve_http(stream, move |request| {
                    lambda_backend(request, captured.clone())
                }));
            }
            ServerKind::Lambda => {
                let captured = captured.clone();
                tasks.spawn(serve_http(stream, move |request| {
                    lambda_invoke(request, captured.clone())
                }));
            }
            ServerKind::HttpOk => {
                tasks.spawn(serve_http(stream, http_ok));
            }
            ServerKind::WsBroadcast => {
                let hub = hub.clone();
                tasks.spawn(serve_http(stream, move |request| {
                    broadcast_hub(request, hub.clone())
                }));
            }
            ServerKind::WsPush => {
                let sinks = sinks.clone();
                tasks.spawn(serve_http(stream, move |request| {
                    bare_push(request, sinks.clone())
                }));
            }
            ServerKind::WsRelay | ServerKind::WsRelayInline => {
                if let Some(relay) = &relay {
                    tasks.spawn(relay.clone().serve(stream));
                }
            }
            ServerKind::GripBackend => {
                tasks.spawn(serve_http(stream, grip_backend));
            }
        }
    }
}

async fn echo_websocket(stream: TcpStream) {
    let Ok(mut socket) =
        tokio_tungstenite::accept_async_with_config(stream, Some(client::websocket_config())).await
    else {
        return;
    };
    while let Some(Ok(message)) = socket.next().await {
        if (message.is_text() || message.is_binary()) && socket.send(message).await.is_err() {
            return;
        }
    }
}

/// The routed-message baseline ([`ServerKind::WsRelay`]).
#[derive(Clone)]
struct Relay {
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    backend: hyper::Uri,
    /// Whether each connection calls the backend over a connection of its own, driven in its
    /// task, instead of through the pool.
    inline: bool,
}

/// What the relay reads of the backend's answer.
#[derive(Deserialize)]
struct RelayResult<'a> {
    #[serde(rename = "statusCode")]
    status_code: u16,
    #[serde(borrow, default)]
    body: Option<Cow<'a, str>>,
}

impl Relay {
    fn new(backend: &str, inline: bool) -> anyhow::Result<Relay> {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(std::time::Duration::from_secs(60))
                .build(connector);
        Ok(Relay {
            client,
            backend: backend.parse().context("the backend's URL")?,
            inline,
        })
    }

    /// Serves one connection: each text message goes to the backend as an event, and the
    /// answer's body comes back; one message at a time.
    async fn serve(self, stream: TcpStream) {
        let Ok(mut socket) =
            tokio_tungstenite::accept_async_with_config(stream, Some(client::websocket_config()))
                .await
        else {
            return;
        };
        let connection_id = format!("r{:x}", rand_id());
        let connected_at = epoch_millis();
        let mut own = None;
        if self.inline {
            let Some(authority) = self.backend.authority() else {
                return;
            };
            let Ok(stream) = TcpStream::connect(authority.as_str()).await else {
                return;
            };
            let _ = stream.set_nodelay(true);
            let Ok(handshake) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
            else {
                return;
            };
            own = Some(handshake);
        }
        while let Some(Ok(message)) = socket.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            let request = self.request(&connection_id, connected_at, &text);
            let answer = match &mut own {
                None => self.exchange_pooled(request).await,
                Some((sender, connection)) => {
                    // The connection is driven only while a call is in flight, by this task.
                    let exchange = pin!(exchange_on(sender, request));
                    match futures_util::future::select(connection, exchange).await {
                        futures_util::future::Either::Right((answer, _)) => answer,
                        futures_util::future::Either::Left(_) => None,
                    }
                }
            };
            let Some(reply) = answer.and_then(|answer| reply_of(&answer)) else {
                return;
            };
            if socket.send(Message::Text(reply)).await.is_err() {
                return;
            }
        }
    }

    /// The POST of one event for `body`.
    fn request(&self, connection_id: &str, connected_at: u128, body: &str) -> Request<Full<Bytes>> {
        let now = epoch_millis();
        let request_id = format!("{:x}", rand_id());
        let event = serde_json::json!({
            "requestContext": {
                "routeKey": "echo",
                "messageId": format!("{:x}", rand_id()),
                "eventType": "MESSAGE",
                "extendedRequestId": request_id,
                "requestTime": now.to_string(),
                "messageDirection": "IN",
                "stage": "dev",
                "connectedAt": connected_at,
                "requestTimeEpoch": now,
                "identity": { "sourceIp": "127.0.0.1" },
                "requestId": request_id,
                "domainName": "127.0.0.1",
                "connectionId": connection_id,
                "apiId": "relay",
            },
            "body": body,
            "isBase64Encoded": false,
        });
        let mut request = Request::post(self.backend.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(event.to_string())))
            .expect("a valid request");
        if let Some(authority) = self.backend.authority() {
            if let Ok(host) = hyper::header::HeaderValue::from_str(authority.as_str()) {
                request.headers_mut().insert(hyper::header::HOST, host);
            }
        }
        request
    }

    /// One call through the pool; the answer's body.
    async fn exchange_pooled(&self, request: Request<Full<Bytes>>) -> Option<Bytes> {
        let response = self.client.request(request).await.ok()?;
        Some(response.into_body().collect().await.ok()?.to_bytes())
    }
}

/// One call on a connection of the caller's own; the answer's body.
async fn exchange_on(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Option<Bytes> {
    let response = sender.send_request(request).await.ok()?;
    Some(response.into_body().collect().await.ok()?.to_bytes())
}

/// The body of a backend's 200 answer.
fn reply_of(answer: &[u8]) -> Option<Utf8Bytes> {
    let result: RelayResult = serde_json::from_slice(answer).ok()?;
    (result.status_code == 200).then(|| Utf8Bytes::from(result.body.unwrap_or_default().as_ref()))
}

/// 64 bits that differ from one call to the next (ids of the relay's events).
fn rand_id() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(SystemTime::now())
}

fn epoch_millis() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis())
}

async fn serve_http<F, Fut>(stream: TcpStream, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut,
    Fut: Future<Output = Result<Response<Full<Bytes>>, Infallible>>,
{
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service_fn(handler))
        .with_upgrades()
        .await;
}

async fn lambda_backend(
    request: Request<Incoming>,
    captured: Arc<OnceLock<Bytes>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() == hyper::Method::GET && request.uri().path() == "/last-event" {
        return Ok(match captured.get() {
            Some(event) => Response::new(Full::new(event.clone())),
            None => respond(StatusCode::NOT_FOUND, Bytes::new()),
        });
    }
    let Some(body) = read_body(request).await else {
        return Ok(respond(StatusCode::BAD_REQUEST, Bytes::new()));
    };
    Ok(answer_event(body, &captured))
}

/// The Lambda Invoke API in front of [`answer_event`]: the signature checked as Lambda checks
/// it (`sockway_testkit::sigv4::verify`: key, date, session token, signature), then the
/// function's result as the response body.
async fn lambda_invoke(
    request: Request<Incoming>,
    captured: Arc<OnceLock<Bytes>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() == hyper::Method::GET && request.uri().path() == "/last-event" {
        return lambda_backend(request, captured).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = body.collect().await.map(|collected| collected.to_bytes()) else {
        return Ok(respond(StatusCode::BAD_REQUEST, Bytes::new()));
    };
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |path_and_query| path_and_query.as_str());
    let key = sigv4::SigningKey::new(LAMBDA_KEY.0, LAMBDA_KEY.1);
    let verified = sigv4::verify(
        parts.method.as_str(),
        target,
        &parts.headers,
        &body,
        std::slice::from_ref(&key),
        SystemTime::now(),
    );
    match verified {
        Ok(scope) if scope.service == "lambda" && scope.region == LAMBDA_REGION => {}
        refused => {
            let reason = match refused {
                Ok(scope) => format!("signed for {} in {}", scope.service, scope.region),
                Err(reason) => reason,
            };
            eprintln!("sockway-bench lambda: refused {target}: {reason}");
            let mut response = respond(
                StatusCode::FORBIDDEN,
                Bytes::from(serde_json::json!({ "message": reason }).to_string()),
            );
            response.headers_mut().insert(
                "x-amzn-errortype",
                hyper::header::HeaderValue::from_static("InvalidSignatureException"),
            );
            return Ok(response);
        }
    }
    if parts.method != hyper::Method::POST || !is_invoke_path(parts.uri.path()) {
        return Ok(respond(StatusCode::NOT_FOUND, Bytes::new()));
    }
    Ok(answer_event(body, &captured))
}

/// `/2015-03-31/functions/{name}/invocations`.
fn is_invoke_path(path: &str) -> bool {
    path.strip_prefix("/2015-03-31/functions/")
        .and_then(|rest| rest.strip_suffix("/invocations"))
        .is_some_and(|name| !name.is_empty() && !name.contains('/'))
}

/// The function behind both backends: a Lambda-proxy result with the event's body, or, for
/// route `whoami`, its connection id; the first `echo` event is kept for `GET /last-event`.
fn answer_event(body: Bytes, captured: &OnceLock<Bytes>) -> Response<Full<Bytes>> {
    let Ok(event) = serde_json::from_slice::<Event>(&body) else {
        return respond(
            StatusCode::BAD_REQUEST,
            Bytes::from_static(b"not a Lambda-proxy event"),
        );
    };
    let reply_body = match event.request_context.route_key.as_ref() {
        "whoami" => Some(event.request_context.connection_id.as_ref()),
        "echo" => {
            captured.get_or_init(|| body.clone());
            event.body.as_deref()
        }
        _ => event.body.as_deref(),
    };
    let result = ProxyResult {
        status_code: 200,
        body: reply_body,
    };
    let json = serde_json::to_vec(&result).expect("a proxy result always serializes");
    respond(StatusCode::OK, Bytes::from(json))
}

async fn http_ok(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read the body like the gateway does, so both sides of the ratio receive it.
    let _ = request.into_body().collect().await;
    Ok(respond(StatusCode::OK, Bytes::new()))
}

/// A WebSocket upgrade joins the hub; any other request's body is sent to every member.
async fn broadcast_hub(
    mut request: Request<Incoming>,
    hub: broadcast::Sender<Message>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if is_upgrade(&request) {
        // A member from the moment the 101 is sent, as a gateway connection joined by
        // `$connect` is.
        let receiver = hub.subscribe();
        return Ok(upgrade(&mut request, |socket| {
            forward_broadcasts(socket, receiver)
        }));
    }
    let Some(body) = read_body(request).await else {
        return Ok(respond(StatusCode::BAD_REQUEST, Bytes::new()));
    };
    let delivered = hub.send(message_of(body)).unwrap_or(0);
    Ok(respond(
        StatusCode::OK,
        Bytes::from(format!(r#"{{"delivered":{delivered},"dropped":0}}"#)),
    ))
}

/// A server-side WebSocket over an upgraded hyper connection.
type Upgraded = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Whether `request` asks for a WebSocket upgrade.
fn is_upgrade(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get(hyper::header::UPGRADE)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// Answers a WebSocket upgrade with its 101 and hands the socket, once upgraded, to
/// `serve` in a task of its own.
fn upgrade<F, Fut>(request: &mut Request<Incoming>, serve: F) -> Response<Full<Bytes>>
where
    F: FnOnce(Upgraded) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(key) = request.headers().get(hyper::header::SEC_WEBSOCKET_KEY) else {
        return respond(StatusCode::BAD_REQUEST, Bytes::new());
    };
    let accept = derive_accept_key(key.as_bytes());
    let upgrading = hyper::upgrade::on(request);
    tokio::spawn(async move {
        if let Ok(upgraded) = upgrading.await {
            let socket = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(client::websocket_config()),
            )
            .await;
            serve(socket).await;
        }
    });
    let mut response = respond(StatusCode::SWITCHING_PROTOCOLS, Bytes::new());
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::UPGRADE,
        hyper::header::HeaderValue::from_static("websocket"),
    );
    headers.insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("Upgrade"),
    );
    if let Ok(accept) = hyper::header::HeaderValue::from_str(&accept) {
        headers.insert(hyper::header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// A body as the message it is: text when it is UTF-8, binary otherwise.
fn message_of(body: Bytes) -> Message {
    match Utf8Bytes::try_from(body.clone()) {
        Ok(text) => Message::Text(text),
        Err(_) => Message::Binary(body),
    }
}

/// The write half of a push baseline connection, which whoever writes to it locks.
type Sink = Arc<tokio::sync::Mutex<SplitSink<Upgraded, Message>>>;

/// The write halves of the push baseline's connections, by id.
#[derive(Default)]
struct Sinks {
    next_id: AtomicU64,
    by_id: Mutex<HashMap<u64, Sink>>,
}

/// The push baseline ([`ServerKind::WsPush`]): an upgrade becomes a connection with an id; a
/// `POST …/@connections/{id}` writes its body to that connection from this task.
async fn bare_push(
    mut request: Request<Incoming>,
    sinks: Arc<Sinks>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if is_upgrade(&request) {
        let id = sinks.next_id.fetch_add(1, Ordering::Relaxed);
        return Ok(upgrade(&mut request, move |socket| {
            hold_for_pushes(socket, id, sinks)
        }));
    }
    let id = request
        .uri()
        .path()
        .rsplit_once("/@connections/")
        .and_then(|(_, id)| id.strip_prefix('c')?.parse::<u64>().ok());
    let Some(sink) = id.and_then(|id| sinks.lock().get(&id).cloned()) else {
        return Ok(respond(StatusCode::GONE, Bytes::new()));
    };
    let Some(body) = read_body(request).await else {
        return Ok(respond(StatusCode::BAD_REQUEST, Bytes::new()));
    };
    let status = match sink.lock().await.send(message_of(body)).await {
        Ok(()) => StatusCode::OK,
        Err(_) => StatusCode::GONE,
    };
    Ok(respond(status, Bytes::new()))
}

impl Sinks {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Sink>> {
        self.by_id.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Registers a push baseline connection as `c{id}`, answers its `whoami` messages with that
/// id and reads (tungstenite answers pings and the close handshake) until it ends.
async fn hold_for_pushes(socket: Upgraded, id: u64, sinks: Arc<Sinks>) {
    let (sink, mut stream) = socket.split();
    let sink = Arc::new(tokio::sync::Mutex::new(sink));
    sinks.lock().insert(id, sink.clone());
    while let Some(Ok(message)) = stream.next().await {
        if message.to_text().is_ok_and(|text| text == WHOAMI_MESSAGE) {
            let reply = Message::Text(Utf8Bytes::from(format!("c{id}")));
            if sink.lock().await.send(reply).await.is_err() {
                break;
            }
        }
    }
    sinks.lock().remove(&id);
}

/// Answers a body of WebSocket events from Pushpin with the events [`grip_reply`] makes,
/// marking the connection as GRIP with unprefixed messages; any other request (Pushpin's
/// readiness probe) gets a plain 200.
async fn grip_backend(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let is_events = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .is_some_and(|value| {
            value
                .as_bytes()
                .starts_with(grip::EVENTS_CONTENT_TYPE.as_bytes())
        });
    let broadcast_member = request.uri().path().ends_with(BROADCAST_PATH);
    let connection_id = request
        .headers()
        .get("connection-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let Some(body) = read_body(request).await else {
        return Ok(respond(StatusCode::BAD_REQUEST, Bytes::new()));
    };
    if !is_events {
        return Ok(respond(StatusCode::OK, Bytes::from_static(b"grip-backend")));
    }
    match grip_reply(&body, connection_id.as_deref(), broadcast_member) {
        Ok(reply) => {
            let mut response = respond(StatusCode::OK, Bytes::from(reply));
            let headers = response.headers_mut();
            headers.insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(grip::EVENTS_CONTENT_TYPE),
            );
            headers.insert(
                hyper::header::SEC_WEBSOCKET_EXTENSIONS,
                hyper::header::HeaderValue::from_static(grip::GRIP_EXTENSION),
            );
            Ok(response)
        }
        Err(error) => Ok(respond(
            StatusCode::BAD_REQUEST,
            Bytes::from(format!("{error:#}")),
        )),
    }
}

/// The events answering the events in `body` from connection `connection_id`.
fn grip_reply(
    body: &[u8],
    connection_id: Option<&str>,
    broadcast_member: bool,
) -> anyhow::Result<Vec<u8>> {
    let mut reply = Vec::new();
    for event in grip::parse(body)? {
        match (event.kind, event.content) {
            ("OPEN", _) => {
                grip::encode(&mut reply, "OPEN", None);
                if broadcast_member {
                    let subscribe = grip::subscribe(BROADCAST_CHANNEL);
                    grip::encode(&mut reply, "TEXT", Some(subscribe.as_bytes()));
                }
            }
            ("TEXT", Some(text)) if text == WHOAMI_MESSAGE.as_bytes() => {
                let id = connection_id.context("a whoami message without Connection-Id")?;
                let channel = own_channel(id);
                let subscribe = grip::subscribe(&channel);
                grip::encode(&mut reply, "TEXT", Some(subscribe.as_bytes()));
                grip::encode(&mut reply, "TEXT", Some(channel.as_bytes()));
            }
            (kind @ ("TEXT" | "BINARY"), content) => {
                grip::encode(&mut reply, kind, Some(content.unwrap_or_default()));
            }
            ("CLOSE", content) => grip::encode(&mut reply, "CLOSE", content),
            ("PING", content) => grip::encode(&mut reply, "PONG", content),
            // PONG, DISCONNECT: nothing to answer.
            _ => {}
        }
    }
    Ok(reply)
}

/// The channel of the connection with Pushpin id `connection_id`: `conn-` and the id in
/// hexadecimal (ids may hold characters a push path or channel name should not).
fn own_channel(connection_id: &str) -> String {
    let mut channel = String::from("conn-");
    for byte in connection_id.bytes() {
        let _ = write!(channel, "{byte:02x}");
    }
    channel
}

/// Writes every broadcast to `socket` until either side ends.
async fn forward_broadcasts<S>(
    mut socket: WebSocketStream<S>,
    mut receiver: broadcast::Receiver<Message>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        tokio::select! {
            message = receiver.recv() => match message {
                Ok(message) => {
                    if socket.send(message).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            incoming = socket.next() => match incoming {
                // tungstenite answers pings and the close handshake while reading.
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return,
            },
        }
    }
}

fn respond(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
}

/// Returns on SIGTERM, on Ctrl-C or when stdin closes (the harness went away).
pub(crate) async fn wait_for_stop() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut stdin = tokio::io::stdin();
    let stdin_closed = async move {
        let mut buffer = [0u8; 64];
        while matches!(stdin.read(&mut buffer).await, Ok(read) if read > 0) {}
    };
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
                () = stdin_closed => {}
            }
        }
        Err(error) => {
            eprintln!(
                "sockway-bench server: cannot listen for SIGTERM ({error}); waiting for stdin to close"
            );
            stdin_closed.await;
        }
    }
}

/// A request's whole body; `None` when reading it failed.
async fn read_body(request: Request<Incoming>) -> Option<Bytes> {
    Some(request.into_body().collect().await.ok()?.to_bytes())
}
