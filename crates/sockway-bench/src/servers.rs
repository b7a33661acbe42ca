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
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use anyhow::Context;
use bytes::Bytes;
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
pub(crate) async fn run(kind: ServerKind) -> anyhow::Result<()> {
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
        ServerKind::GripBackend => ("grip-backend", format!("http://{addr}/")),
    };
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "sockway-bench {name} listening on {url}").context("write stdout")?;
        stdout.flush().context("write stdout")?;
    }
    let tasks = TaskTracker::new();
    let captured = Arc::new(OnceLock::new());
    let accepting = tasks.spawn(accept_loop(listener, kind, tasks.clone(), captured));
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
) {
    // Only the broadcast hub uses it; a lagging receiver skips messages rather than holding
    // the others back.
    let (hub, _) = broadcast::channel::<Message>(64);
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
    let upgrade = request
        .headers()
        .get(hyper::header::UPGRADE)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if upgrade {
        let Some(key) = request.headers().get(hyper::header::SEC_WEBSOCKET_KEY) else {
            return Ok(respond(StatusCode::BAD_REQUEST, Bytes::new()));
        };
        let accept = derive_accept_key(key.as_bytes());
        // A member from the moment the 101 is sent, as a gateway connection joined by
        // `$connect` is.
        let receiver = hub.subscribe();
        let upgrading = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrading.await {
                let socket = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(client::websocket_config()),
                )
                .await;
                forward_broadcasts(socket, receiver).await;
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
        return Ok(response);
    }
    let Some(body) = read_body(request).await else {
        return Ok(respond(StatusCode::BAD_REQUEST, Bytes::new()));
    };
    let message = match Utf8Bytes::try_from(body.clone()) {
        Ok(text) => Message::Text(text),
        Err(_) => Message::Binary(body),
    };
    let delivered = hub.send(message).unwrap_or(0);
    Ok(respond(
        StatusCode::OK,
        Bytes::from(format!(r#"{{"delivered":{delivered},"dropped":0}}"#)),
    ))
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
