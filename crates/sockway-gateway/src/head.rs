//! HTTP/1.1 before hyper: reading a request head by hand, replaying it to hyper, and writing
//! the complete responses sent before (or instead of) an upgrade.
//!
//! hyper lower-cases header names and hides their order; AWS hands the `$connect` integration
//! the client's headers as sent. So the gateway listener parses the first request head with
//! `httparse` and keeps the raw bytes: an upgrade continues as a WebSocket in
//! `connection::accept`, anything else is replayed to hyper through [`Rewind`]. This module is
//! a leaf: it knows bytes and HTTP, not the gateway's state, so `server` and `connection` both
//! use it without knowing each other's insides.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use sockway_protocol::error::AwsError;
use sockway_protocol::id::RequestId;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tracing::debug;

/// Largest request head accepted: AWS caps URLs at 4096 characters, and headers beyond this
/// are abuse rather than use.
pub(crate) const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most headers accepted in one request head.
const MAX_HEADERS: usize = 100;

/// The parts of a request head that routing and `$connect` need, as the client sent them.
#[derive(Debug, Clone)]
pub(crate) struct RequestHead {
    /// The method token, e.g. `GET`.
    pub(crate) method: String,
    /// The path without the query, still percent-encoded.
    pub(crate) path: String,
    /// The raw query string without `?`, when the target had one.
    pub(crate) query: Option<String>,
    /// Header names with the client's casing, in the client's order.
    pub(crate) headers: Vec<(String, String)>,
    /// `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub(crate) minor_version: u8,
    /// Length of the head in bytes; what follows it in the read buffer was sent after it.
    pub(crate) length: usize,
}

/// A request head that cannot be served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeadError {
    /// The client closed or the socket failed before a full head arrived.
    #[error("connection failed while reading the request head")]
    Io(#[source] io::Error),
    /// Not an HTTP/1.x request.
    #[error("malformed request head: {0}")]
    Malformed(httparse::Error),
    /// Larger than [`MAX_HEAD_BYTES`] or more than [`MAX_HEADERS`] headers.
    #[error("request head too large")]
    TooLarge,
    /// The handshake timeout passed first.
    #[error("request head not received in time")]
    Timeout,
}

impl HeadError {
    /// The HTTP response this failure gets.
    pub(crate) fn response(&self) -> Vec<u8> {
        match self {
            HeadError::Io(_) | HeadError::Malformed(_) => {
                error_response(&AwsError::bad_request("Malformed HTTP request"))
            }
            HeadError::TooLarge => http_response(
                431,
                &[("Content-Type", "application/json")],
                br#"{"message":"Request Header Fields Too Large"}"#,
            ),
            HeadError::Timeout => http_response(
                408,
                &[("Content-Type", "application/json")],
                br#"{"message":"Request Timeout"}"#,
            ),
        }
    }
}

impl RequestHead {
    /// The first value of a header, compared case-insensitively.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Whether a header's comma-separated value list contains `token` (case-insensitive), as
    /// RFC 6455 requires for `Connection: Upgrade` and `Upgrade: websocket`.
    pub(crate) fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
            .flat_map(|(_, value)| value.split(','))
            .any(|item| item.trim().eq_ignore_ascii_case(token))
    }

    /// Whether the client asks for a WebSocket upgrade. Whether the upgrade is valid (method,
    /// version, key) is decided by the handshake, which answers with the matching status.
    pub(crate) fn is_websocket_upgrade(&self) -> bool {
        self.header_has_token("Upgrade", "websocket")
    }

    /// The query as decoded name/value pairs, in order.
    pub(crate) fn query_pairs(&self) -> Vec<(String, String)> {
        let Some(query) = &self.query else {
            return Vec::new();
        };
        query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (decode_query_component(name), decode_query_component(value))
            })
            .collect()
    }
}

fn decode_query_component(raw: &str) -> String {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// Reads from `stream` until a complete request head has arrived. Returns the parsed head and
/// every byte read so far (the head and anything the client sent after it).
pub(crate) async fn read_request_head<S>(
    stream: &mut S,
) -> Result<(RequestHead, Vec<u8>), HeadError>
where
    S: AsyncRead + Unpin,
{
    let mut buffer = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 2048];
        let read = stream.read(&mut chunk).await.map_err(HeadError::Io)?;
        if read == 0 {
            return Err(HeadError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(head) = parse_head(&buffer)? {
            return Ok((head, buffer));
        }
        if buffer.len() > MAX_HEAD_BYTES {
            return Err(HeadError::TooLarge);
        }
    }
}

/// Parses a head from `buffer`; `Ok(None)` when more bytes are needed.
fn parse_head(buffer: &[u8]) -> Result<Option<RequestHead>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let length = match request.parse(buffer) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(error) => return Err(HeadError::Malformed(error)),
    };
    if length > MAX_HEAD_BYTES {
        return Err(HeadError::TooLarge);
    }
    let target = request.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (target.to_owned(), None),
    };
    let headers = request
        .headers
        .iter()
        .map(|header| {
            (
                header.name.to_owned(),
                String::from_utf8_lossy(header.value).into_owned(),
            )
        })
        .collect();
    Ok(Some(RequestHead {
        method: request.method.unwrap_or("GET").to_owned(),
        path,
        query,
        headers,
        minor_version: request.version.unwrap_or(1),
        length,
    }))
}

/// A complete `Connection: close` HTTP/1.1 response.
pub(crate) fn http_response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|code| code.canonical_reason())
        .unwrap_or("Unknown");
    let mut response = format!("HTTP/1.1 {status} {reason}\r\n");
    for (name, value) in headers {
        response.push_str(name);
        response.push_str(": ");
        response.push_str(value);
        response.push_str("\r\n");
    }
    response.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut bytes = response.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// An AWS-style error as a complete HTTP response, with `x-amzn-ErrorType` and a fresh request
/// id: for requests that end before they have an access-log event (a head that cannot be read,
/// a request the gateway listener does not serve).
pub(crate) fn error_response(error: &AwsError) -> Vec<u8> {
    let request_id = RequestId::from_random(crate::random_bytes()).to_string();
    http_response(
        error.status,
        &[
            ("Content-Type", "application/json"),
            ("x-amzn-RequestId", &request_id),
            ("x-amzn-ErrorType", error.error_type),
        ],
        &error.body(),
    )
}

/// Writes a complete HTTP response and closes the socket; used before any upgrade.
pub(crate) async fn respond_and_close<S>(stream: &mut S, response: Vec<u8>)
where
    S: AsyncWrite + Unpin,
{
    if let Err(error) = stream.write_all(&response).await {
        debug!(error = %error, "cannot write the HTTP response");
        return;
    }
    let _ = stream.shutdown().await;
}

/// A stream that yields `prefix` before reading from `inner`: hands bytes the head reader
/// already consumed to hyper or to the WebSocket codec.
#[derive(Debug)]
pub(crate) struct Rewind<S> {
    prefix: Vec<u8>,
    position: usize,
    inner: S,
}

impl<S> Rewind<S> {
    /// Replays `prefix`, then continues with `inner`.
    pub(crate) fn new(inner: S, prefix: Vec<u8>) -> Self {
        Rewind {
            prefix,
            position: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.position < self.prefix.len() {
            let remaining = &self.prefix[self.position..];
            let count = remaining.len().min(buf.remaining());
            buf.put_slice(&remaining[..count]);
            self.position += count;
            if self.position == self.prefix.len() {
                self.prefix = Vec::new();
                self.position = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        raw: &str,
        expected_path: &str,
        expected_query: Option<&str>,
        expected_headers: &[(&str, &str)],
    ) {
        let head = parse_head(raw.as_bytes()).unwrap().unwrap();
        assert_eq!(head.path, expected_path);
        assert_eq!(head.query.as_deref(), expected_query);
        let headers: Vec<(&str, &str)> = head
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        assert_eq!(headers, expected_headers);
    }

    #[test]
    fn head_keeps_header_case_and_order() {
        check(
            "GET /dev?token=a%20b HTTP/1.1\r\nHost: x\r\nSec-WebSocket-Key: k\r\nHeaderAuth1: v\r\n\r\n",
            "/dev",
            Some("token=a%20b"),
            &[
                ("Host", "x"),
                ("Sec-WebSocket-Key", "k"),
                ("HeaderAuth1", "v"),
            ],
        );
    }

    #[test]
    fn partial_head_needs_more_bytes() {
        assert!(
            parse_head(b"GET /dev HTTP/1.1\r\nHost: x\r\n")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn query_pairs_are_decoded_in_order() {
        let head = parse_head(b"GET /dev?b=2&a=x+y&a=%41&flag HTTP/1.1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            head.query_pairs(),
            vec![
                ("b".to_owned(), "2".to_owned()),
                ("a".to_owned(), "x y".to_owned()),
                ("a".to_owned(), "A".to_owned()),
                ("flag".to_owned(), String::new()),
            ]
        );
    }

    #[test]
    fn upgrade_tokens_are_case_insensitive_lists() {
        let head = parse_head(
            b"GET / HTTP/1.1\r\nconnection: keep-alive, Upgrade\r\nupgrade: WebSocket\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(head.is_websocket_upgrade());
        assert!(head.header_has_token("Connection", "upgrade"));
    }
}
