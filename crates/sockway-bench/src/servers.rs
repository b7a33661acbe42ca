//! The servers built into the harness (`sockway-bench serve KIND`): the WebSocket echo
//! server of the self-baseline, the Lambda-proxy backend the gateway's routes call, and a
//! bare HTTP server for the push baseline.
//!
//! Each runs as its own process on `127.0.0.1:0`, prints `... listening on URL` and serves
//! until SIGTERM or until its stdin closes, so the harness measures its memory and CPU
//! exactly as it measures the gateway's. Which server a workload compares with is decided in
//! `workloads`.

use std::borrow::Cow;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::task::TaskTracker;

use crate::client;

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
    /// An HTTP server answering 200 with an empty body to every request.
    HttpOk,
}

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
        ServerKind::HttpOk => ("http-ok", format!("http://{addr}/")),
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
            ServerKind::HttpOk => {
                tasks.spawn(serve_http(stream, http_ok));
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
    let Ok(body) = request
        .into_body()
        .collect()
        .await
        .map(|body| body.to_bytes())
    else {
        return Ok(respond(StatusCode::BAD_REQUEST, Bytes::new()));
    };
    let Ok(event) = serde_json::from_slice::<Event>(&body) else {
        return Ok(respond(
            StatusCode::BAD_REQUEST,
            Bytes::from_static(b"not a Lambda-proxy event"),
        ));
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
    Ok(respond(StatusCode::OK, Bytes::from(json)))
}

async fn http_ok(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read the body like the gateway does, so both sides of the ratio receive it.
    let _ = request.into_body().collect().await;
    Ok(respond(StatusCode::OK, Bytes::new()))
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
