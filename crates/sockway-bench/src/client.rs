//! The client side of every measurement: WebSocket and HTTP/1.1 connections from a chosen
//! loopback source address.
//!
//! Both the gateway runs and the baseline runs use these functions, so a ratio compares
//! servers, not clients. WebSocket clients use tokio-tungstenite with a 4 KiB read buffer and
//! eager writes (the gateway's own settings) so that 19,000 connections fit in a few worker
//! processes. What a connection does once open is the workers' business (`worker`).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// A connected WebSocket client.
pub(crate) type WsStream = WebSocketStream<TcpStream>;

/// How long a close handshake may take before the socket is dropped anyway.
const CLOSE_DEADLINE: Duration = Duration::from_secs(5);

/// A server to connect to: its URL (for the request line and `Host`) and its socket address.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// `ws://127.0.0.1:PORT/stage` or `http://127.0.0.1:PORT/`.
    pub(crate) url: String,
    /// The address taken from the URL.
    pub(crate) addr: SocketAddr,
}

/// Consecutive loopback source addresses, handed out round robin.
///
/// Binding each client socket to one of several `127.0.0.x` addresses gives every address
/// its own range of ephemeral ports, so tens of thousands of connections (and the
/// `TIME_WAIT` entries that connect loops leave behind) never exhaust one range.
#[derive(Debug)]
pub(crate) struct Sources {
    first: u32,
    count: u32,
    next: AtomicU32,
}

/// One keep-alive HTTP/1.1 connection, driven by its own task until it is dropped.
#[derive(Debug)]
pub(crate) struct HttpConnection {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    /// The server's address, for [`HttpConnection::reopen_if_closed`].
    addr: SocketAddr,
    /// Whether the last response said `Connection: close` (Pushpin's publish endpoint says
    /// it on every response).
    closing: bool,
    /// The task that reads and writes the socket; aborted on drop.
    driver: JoinHandle<()>,
}

impl Target {
    /// Parses `ws://HOST:PORT/...` or `http://HOST:PORT/...` where HOST is an IPv4 address.
    pub(crate) fn parse(url: &str) -> anyhow::Result<Target> {
        let rest = url
            .strip_prefix("ws://")
            .or_else(|| url.strip_prefix("http://"))
            .with_context(|| format!("url `{url}` is neither ws:// nor http://"))?;
        let authority = rest.split('/').next().unwrap_or(rest);
        let addr = authority
            .parse()
            .with_context(|| format!("url `{url}` does not name IP:port"))?;
        Ok(Target {
            url: url.to_owned(),
            addr,
        })
    }

    /// `IP:PORT`, as the `Host` header of every request to it carries it.
    pub(crate) fn authority(&self) -> String {
        self.addr.to_string()
    }

    /// The path of the URL, `/` when it has none.
    pub(crate) fn path(&self) -> &str {
        let rest = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, rest)| rest);
        rest.find('/').map_or("/", |start| &rest[start..])
    }
}

impl Sources {
    /// `count` addresses starting at `first`.
    pub(crate) fn new(first: Ipv4Addr, count: u32) -> Sources {
        Sources {
            first: u32::from(first),
            count: count.max(1),
            next: AtomicU32::new(0),
        }
    }

    /// The next address in turn.
    pub(crate) fn next(&self) -> Ipv4Addr {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.count;
        Ipv4Addr::from(self.first + index)
    }
}

/// The WebSocket settings of every bench client and of the baseline echo server: the
/// gateway's own (2 KiB read buffer, eager writes).
pub(crate) fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(2048)
        .write_buffer_size(0)
}

/// Opens a TCP connection from `source` with Nagle's algorithm off.
pub(crate) async fn connect_tcp(addr: SocketAddr, source: Ipv4Addr) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4().context("create socket")?;
    socket
        .bind(SocketAddr::new(source.into(), 0))
        .with_context(|| format!("bind {source}"))?;
    let stream = socket
        .connect(addr)
        .await
        .with_context(|| format!("connect {addr} from {source}"))?;
    stream.set_nodelay(true).context("set TCP_NODELAY")?;
    Ok(stream)
}

/// Opens a WebSocket connection to `target` from `source`.
pub(crate) async fn connect_ws(target: &Target, source: Ipv4Addr) -> anyhow::Result<WsStream> {
    let stream = connect_tcp(target.addr, source).await?;
    let (socket, _response) = tokio_tungstenite::client_async_with_config(
        target.url.as_str(),
        stream,
        Some(websocket_config()),
    )
    .await
    .with_context(|| format!("WebSocket handshake with {}", target.url))?;
    Ok(socket)
}

/// Sends a close frame and reads until the server has closed the TCP connection, so that
/// the server, which closes first, keeps the `TIME_WAIT` entry rather than the client.
pub(crate) async fn close_ws(mut socket: WsStream) {
    let closing = async {
        if socket.close(None).await.is_err() {
            return;
        }
        while let Some(Ok(_)) = socket.next().await {}
    };
    let _ = tokio::time::timeout(CLOSE_DEADLINE, closing).await;
}

/// Sends one text message.
pub(crate) async fn send_text(socket: &mut WsStream, text: String) -> anyhow::Result<()> {
    socket
        .send(Message::text(text))
        .await
        .context("send a text message")
}

/// The next text or binary message, skipping pings and pongs (tungstenite answers pings
/// itself while reading).
pub(crate) async fn next_data(socket: &mut WsStream) -> anyhow::Result<Bytes> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => return Ok(Bytes::from(text)),
            Some(Ok(Message::Binary(bytes))) => return Ok(bytes),
            Some(Ok(Message::Close(frame))) => bail!("server closed the connection: {frame:?}"),
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(error).context("read a message"),
            None => bail!("connection ended"),
        }
    }
}

impl HttpConnection {
    /// Opens a keep-alive HTTP/1.1 connection to `target` from `source`.
    pub(crate) async fn open(target: &Target, source: Ipv4Addr) -> anyhow::Result<HttpConnection> {
        HttpConnection::open_addr(target.addr, source).await
    }

    /// Opens a keep-alive HTTP/1.1 connection to `addr` from `source`.
    async fn open_addr(addr: SocketAddr, source: Ipv4Addr) -> anyhow::Result<HttpConnection> {
        let stream = connect_tcp(addr, source).await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(HttpConnection {
            sender,
            host: addr.to_string(),
            addr,
            closing: false,
            driver,
        })
    }

    /// Replaces the connection with a new one to the same server, from `source`, when the
    /// server said it would close it or has closed it; a keep-alive connection is left alone.
    pub(crate) async fn reopen_if_closed(&mut self, source: Ipv4Addr) -> anyhow::Result<()> {
        if self.closing || self.sender.is_closed() {
            *self = HttpConnection::open_addr(self.addr, source).await?;
        }
        Ok(())
    }

    /// Sends one request and reads the whole response.
    pub(crate) async fn request(
        &mut self,
        method: http::Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<(http::StatusCode, Bytes)> {
        self.request_with(method, path, &[], body).await
    }

    /// [`HttpConnection::request`] with `headers` added (a signature's, say).
    pub(crate) async fn request_with(
        &mut self,
        method: http::Method,
        path: &str,
        headers: &[(String, String)],
        body: Bytes,
    ) -> anyhow::Result<(http::StatusCode, Bytes)> {
        let mut builder = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &self.host)
            .header(http::header::CONTENT_TYPE, "application/json");
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let request = builder.body(Full::new(body)).context("build request")?;
        self.sender.ready().await.context("connection closed")?;
        let response = self
            .sender
            .send_request(request)
            .await
            .with_context(|| format!("request {path}"))?;
        let status = response.status();
        self.closing = response
            .headers()
            .get(http::header::CONNECTION)
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"close"));
        let body = response
            .into_body()
            .collect()
            .await
            .context("read response body")?
            .to_bytes();
        Ok((status, body))
    }
}

impl Drop for HttpConnection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}
