//! The client side of every measurement: WebSocket and HTTP/1.1 connections from a chosen
//! loopback source address.
//!
//! Both the gateway runs and the baseline runs use these functions, so a ratio compares
//! servers, not clients. WebSocket clients use tokio-tungstenite with a 2 KiB read buffer and
//! eager writes (the gateway's own settings) so that 19,000 connections fit in a few worker
//! processes; a `wss://` target is reached over rustls (ring), trusting only the certificate
//! the harness made for the gateway ([`TestCertificate`]). What a connection does once open is
//! the workers' business (`worker`).

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// A connected WebSocket client.
pub(crate) type WsStream = WebSocketStream<ClientStream>;

/// A client's byte stream: plain TCP (`ws://`) or TLS over TCP (`wss://`).
#[derive(Debug)]
pub(crate) enum ClientStream {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`; boxed, since rustls's connection state is large.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// A self-signed certificate for `127.0.0.1` and `localhost` (ECDSA P-256, rcgen), written
/// as PEM files for the gateway's `[tls]` and the clients' `--ca-file`.
#[derive(Debug, Clone)]
pub(crate) struct TestCertificate {
    /// The certificate, PEM: the gateway's `tls.cert_file`, and what clients trust.
    pub(crate) cert_file: PathBuf,
    /// Its private key, PKCS#8 PEM: the gateway's `tls.key_file`.
    pub(crate) key_file: PathBuf,
}

/// How long a close handshake may take before the socket is dropped anyway.
const CLOSE_DEADLINE: Duration = Duration::from_secs(5);

/// A server to connect to: its URL (for the request line and `Host`) and its socket address.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// `ws://127.0.0.1:PORT/stage` or `http://127.0.0.1:PORT/`.
    pub(crate) url: String,
    /// The address taken from the URL.
    pub(crate) addr: SocketAddr,
    /// For a `wss://` URL: the client config trusting the certificate given to
    /// [`Target::trusting`]. `None` for any other URL, and for a `wss://` URL until then.
    tls: Option<Arc<rustls::ClientConfig>>,
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
    /// Parses `ws://HOST:PORT/...`, `wss://HOST:PORT/...` or `http://HOST:PORT/...` where
    /// HOST is an IPv4 address.
    pub(crate) fn parse(url: &str) -> anyhow::Result<Target> {
        let rest = url
            .strip_prefix("ws://")
            .or_else(|| url.strip_prefix("wss://"))
            .or_else(|| url.strip_prefix("http://"))
            .with_context(|| format!("url `{url}` is neither ws://, wss:// nor http://"))?;
        let authority = rest.split('/').next().unwrap_or(rest);
        let addr = authority
            .parse()
            .with_context(|| format!("url `{url}` does not name IP:port"))?;
        Ok(Target {
            url: url.to_owned(),
            addr,
            tls: None,
        })
    }

    /// `IP:PORT`, as the `Host` header of every request to it carries it.
    pub(crate) fn authority(&self) -> String {
        self.addr.to_string()
    }

    /// For a `wss://` target: trust the PEM certificate in `ca_file` (and nothing else).
    /// Other targets are returned as they are.
    pub(crate) fn trusting(mut self, ca_file: Option<&Path>) -> anyhow::Result<Target> {
        if !self.url.starts_with("wss://") {
            return Ok(self);
        }
        let ca_file = ca_file.with_context(|| format!("{} needs --ca-file", self.url))?;
        let mut roots = rustls::RootCertStore::empty();
        for certificate in CertificateDer::pem_file_iter(ca_file)
            .with_context(|| format!("read {}", ca_file.display()))?
        {
            let certificate =
                certificate.with_context(|| format!("parse {}", ca_file.display()))?;
            roots
                .add(certificate)
                .with_context(|| format!("trust {}", ca_file.display()))?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("ring supports TLS 1.2 and 1.3")?
        .with_root_certificates(roots)
        .with_no_client_auth();
        self.tls = Some(Arc::new(config));
        Ok(self)
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

/// Opens a WebSocket connection to `target` from `source`, over TLS for a `wss://` target.
pub(crate) async fn connect_ws(target: &Target, source: Ipv4Addr) -> anyhow::Result<WsStream> {
    let tcp = connect_tcp(target.addr, source).await?;
    let stream = match &target.tls {
        None if target.url.starts_with("wss://") => {
            bail!("{} needs a certificate to trust (--ca-file)", target.url)
        }
        None => ClientStream::Plain(tcp),
        Some(config) => {
            let name = ServerName::IpAddress(target.addr.ip().into());
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .with_context(|| format!("TLS handshake with {}", target.url))?;
            ClientStream::Tls(Box::new(tls))
        }
    };
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

impl TestCertificate {
    /// Makes a new key and self-signed certificate and writes them to `cert.pem` and
    /// `key.pem` in `directory`.
    pub(crate) fn create(directory: &Path) -> anyhow::Result<TestCertificate> {
        let certified = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .context("make a self-signed certificate")?;
        let cert_file = directory.join("cert.pem");
        let key_file = directory.join("key.pem");
        std::fs::write(&cert_file, certified.cert.pem())
            .with_context(|| format!("write {}", cert_file.display()))?;
        std::fs::write(&key_file, certified.signing_key.serialize_pem())
            .with_context(|| format!("write {}", key_file.display()))?;
        Ok(TestCertificate {
            cert_file,
            key_file,
        })
    }

    /// The gateway's `[tls]` table naming these files.
    pub(crate) fn toml(&self) -> String {
        format!(
            "\n[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            self.cert_file.display().to_string(),
            self.key_file.display().to_string()
        )
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut TaskContext<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(stream) => Pin::new(stream).poll_read(context, buffer),
            ClientStream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(context, buffer),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut TaskContext<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(stream) => Pin::new(stream).poll_write(context, bytes),
            ClientStream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(context, bytes),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(stream) => Pin::new(stream).poll_flush(context),
            ClientStream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(context),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(stream) => Pin::new(stream).poll_shutdown(context),
            ClientStream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(context),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut TaskContext<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(stream) => Pin::new(stream).poll_write_vectored(context, buffers),
            ClientStream::Tls(stream) => {
                Pin::new(stream.as_mut()).poll_write_vectored(context, buffers)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientStream::Plain(stream) => stream.is_write_vectored(),
            ClientStream::Tls(stream) => stream.is_write_vectored(),
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
