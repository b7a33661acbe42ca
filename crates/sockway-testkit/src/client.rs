//! [`WsClient`]: a real tokio-tungstenite client whose reads wait under a deadline.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::DEADLINE;

/// A connected WebSocket client, over plain TCP unless `S` says otherwise (`wss://` clients
/// are made by [`crate::tls::connect_wss`]).
#[derive(Debug)]
pub struct WsClient<S = MaybeTlsStream<TcpStream>> {
    socket: WebSocketStream<S>,
    /// The response headers of the 101.
    pub response_headers: http::HeaderMap,
}

/// Connects to `url`.
pub async fn connect(url: &str) -> Result<WsClient, tungstenite::Error> {
    connect_with_headers(url, &[]).await
}

/// Connects to `url` with extra request headers.
pub async fn connect_with_headers(
    url: &str,
    headers: &[(&str, &str)],
) -> Result<WsClient, tungstenite::Error> {
    let mut request = url.into_client_request()?;
    for (name, value) in headers {
        request.headers_mut().append(
            http::HeaderName::try_from(*name).expect("valid header name"),
            http::HeaderValue::try_from(*value).expect("valid header value"),
        );
    }
    let (socket, response) =
        tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(request))
            .await
            .unwrap_or_else(|_| {
                panic!("handshake with {url} did not finish within {DEADLINE:?}")
            })?;
    Ok(WsClient {
        socket,
        response_headers: response.headers().clone(),
    })
}

impl<S> WsClient<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Wraps a WebSocket connection that completed its handshake.
    pub fn from_socket(socket: WebSocketStream<S>, response_headers: http::HeaderMap) -> Self {
        WsClient {
            socket,
            response_headers,
        }
    }

    /// Sends a text message.
    pub async fn send_text(&mut self, text: &str) {
        self.socket
            .send(Message::text(text))
            .await
            .expect("send text");
    }

    /// Sends a binary message.
    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.socket
            .send(Message::binary(Bytes::copy_from_slice(bytes)))
            .await
            .expect("send binary");
    }

    /// Sends any message (a raw frame, a ping, a close).
    pub async fn send(&mut self, message: Message) -> Result<(), tungstenite::Error> {
        self.socket.send(message).await
    }

    /// The next data message (pings and pongs are skipped), under the deadline.
    pub async fn next_message(&mut self) -> Message {
        loop {
            let message = tokio::time::timeout(DEADLINE, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("no message within {DEADLINE:?}"))
                .expect("connection open")
                .expect("read message");
            match message {
                Message::Ping(_) | Message::Pong(_) => continue,
                other => return other,
            }
        }
    }

    /// The next text message.
    pub async fn next_text(&mut self) -> String {
        match self.next_message().await {
            Message::Text(text) => text.as_str().to_owned(),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// Waits for the server's close frame and returns its code and reason (`None` when the
    /// server dropped the socket without one).
    pub async fn next_close(&mut self) -> Option<(u16, String)> {
        loop {
            let next = tokio::time::timeout(DEADLINE, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("connection not closed within {DEADLINE:?}"));
            match next {
                Some(Ok(Message::Close(frame))) => {
                    return frame
                        .map(|frame| (u16::from(frame.code), frame.reason.as_str().to_owned()));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => panic!("expected a close frame, got {other:?}"),
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Closes with `code` and `reason` and waits for the server's answer.
    pub async fn close(mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: code.into(),
            reason: reason.into(),
        };
        let _ = self.socket.close(Some(frame)).await;
        let _ = tokio::time::timeout(DEADLINE, async {
            while let Some(Ok(_)) = self.socket.next().await {}
        })
        .await;
    }

    /// Sends a close frame with no status code.
    pub async fn close_without_status(mut self) {
        let _ = self.socket.close(None).await;
        let _ = tokio::time::timeout(DEADLINE, async {
            while let Some(Ok(_)) = self.socket.next().await {}
        })
        .await;
    }

    /// Drops the TCP connection without a close frame, as a vanished client does.
    pub fn drop_tcp(self) {
        drop(self.socket);
    }

    /// Stops reading; the socket stays open (a peer that does not answer pings is simulated by
    /// never polling it). Returns the raw socket so the test controls its lifetime.
    pub fn into_inner(self) -> WebSocketStream<S> {
        self.socket
    }
}
