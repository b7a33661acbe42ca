//! A server-side WebSocket over a byte stream (TCP, or TLS over TCP): the I/O around the
//! protocol crate's [`Reader`] and frame headers.
//!
//! Memory is the design's first concern, because an idle connection is what a gateway holds
//! most of. While a connection waits for its client, it holds no read or write buffer: a
//! read goes through a buffer on the stack inside the poll, and only the bytes that arrived
//! are copied into `input`, which is released again once its frames are consumed. A frame
//! that does not fit the stack buffer is read straight into `input`, reserved to its size.
//! Frames are written with one vectored write of header and payload, without copying the
//! payload.
//!
//! [`WebSocket::next`] is cancellation-safe (the connection loop polls it inside a `select!`):
//! bytes are only taken from the stream into `input`, and only consumed from `input` when
//! a whole frame is there.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, ready};

use bytes::{Buf, BytesMut};
use sockway_protocol::close::CloseCause;
use sockway_protocol::websocket::deflate::Deflate;
use sockway_protocol::websocket::frame::{self, MAX_HEADER_LEN, OpCode};
use sockway_protocol::websocket::reader::{Limits, Message, ReadError, Reader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::throttle::ByteBudget;

/// Reads that may need less than this go through a stack buffer of this size.
const STACK_READ_BYTES: usize = 4096;

/// A control frame owed to the client, written before the next data frame or on flush.
#[derive(Debug)]
enum Owed {
    /// The pong answering the latest ping (RFC 6455 §5.5.3 lets a pong answer only the most
    /// recent of several pings, so a ping flood owes one pong at a time).
    Pong(Vec<u8>),
    /// The echo of the client's close frame.
    Close(Option<(u16, String)>),
}

/// One client's WebSocket.
#[derive(Debug)]
pub(super) struct WebSocket<S> {
    stream: S,
    /// Bytes read and not yet consumed; empty, without capacity, between messages.
    input: BytesMut,
    reader: Reader,
    owed: Option<Owed>,
    /// What every connection's buffers may hold together (`limits.buffered_message_bytes`).
    budget: Arc<ByteBudget>,
    /// How much of `budget` this connection's buffers hold now.
    held: usize,
}

impl<S> Drop for WebSocket<S> {
    fn drop(&mut self) {
        self.budget.give_back(self.held);
    }
}

impl<S> WebSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Wraps an upgraded stream; `leftover` holds bytes the client sent right after its
    /// request head.
    pub(super) fn new(
        stream: S,
        leftover: &[u8],
        limits: Limits,
        deflate: Option<Deflate>,
        budget: Arc<ByteBudget>,
    ) -> Self {
        Self {
            stream,
            input: BytesMut::from(leftover),
            reader: Reader::new(limits, deflate),
            owed: None,
            budget,
            held: 0,
        }
    }

    /// Brings what this connection holds of the shared budget in line with its buffers:
    /// gives back what they released, takes what they grew by. A connection whose buffers
    /// grew past what is left is closed with 1013: many clients each stalling a large
    /// fragmented message cannot make the gateway hold more than the budget.
    fn account(&mut self) -> Result<(), CloseCause> {
        let holding = self.input.capacity() + self.reader.buffered_bytes();
        if holding < self.held {
            self.budget.give_back(self.held - holding);
            self.held = holding;
        } else if holding > self.held {
            if !self.budget.try_take(holding - self.held) {
                return Err(CloseCause::Overloaded);
            }
            self.held = holding;
        }
        Ok(())
    }

    /// The next message or control frame from the client. A ping's pong and a close frame's
    /// echo are owed from then on and go out with the next write or [`WebSocket::flush`].
    pub(super) async fn next(&mut self) -> Result<Message, CloseCause> {
        loop {
            let mut needed = 1;
            if !self.input.is_empty() {
                let step = self.reader.read(&mut self.input).map_err(read_cause)?;
                self.input.advance(step.consumed);
                self.account()?;
                if let Some(message) = step.message {
                    match &message {
                        Message::Ping(payload) => self.owed = Some(Owed::Pong(payload.clone())),
                        Message::Close(frame) => self.owed = Some(Owed::Close(frame.clone())),
                        _ => {}
                    }
                    return Ok(message);
                }
                needed = step.needed;
            }
            if self.input.is_empty() {
                self.input = BytesMut::new();
            }
            self.account()?;
            match self.fill(needed).await {
                Ok(0) | Err(_) => return Err(CloseCause::ConnectionLost),
                Ok(_) => {}
            }
            self.account()?;
        }
    }

    /// Reads what the stream has (at least one byte, or 0 at its end) into `input`.
    async fn fill(&mut self, needed: usize) -> io::Result<usize> {
        let spare = self.input.capacity() - self.input.len();
        if needed > STACK_READ_BYTES || spare >= needed {
            self.input.reserve(needed);
            return self.stream.read_buf(&mut self.input).await;
        }
        let Self { stream, input, .. } = self;
        poll_fn(|context| {
            let mut chunk = [MaybeUninit::<u8>::uninit(); STACK_READ_BYTES];
            let mut buffer = ReadBuf::uninit(&mut chunk);
            ready!(Pin::new(&mut *stream).poll_read(context, &mut buffer))?;
            input.extend_from_slice(buffer.filled());
            Poll::Ready(Ok(buffer.filled().len()))
        })
        .await
    }

    /// Sends one message, compressed when permessage-deflate was agreed and it pays, split
    /// into frames of at most `frame_bytes` (as AWS does for `@connections` posts larger than
    /// a frame), and flushes.
    pub(super) async fn send(
        &mut self,
        payload: &[u8],
        text: bool,
        frame_bytes: usize,
    ) -> io::Result<()> {
        self.write_owed().await?;
        let compressed = self
            .reader
            .deflate()
            .and_then(|deflate| deflate.compress(payload));
        let body = compressed.as_deref().unwrap_or(payload);
        let compressed = compressed.is_some();
        let first = if text { OpCode::Text } else { OpCode::Binary };
        let frame_bytes = frame_bytes.max(1);
        if body.len() <= frame_bytes {
            self.write_frame(true, compressed, first, body).await?;
        } else {
            let count = body.len().div_ceil(frame_bytes);
            for (index, chunk) in body.chunks(frame_bytes).enumerate() {
                let opcode = if index == 0 {
                    first
                } else {
                    OpCode::Continuation
                };
                self.write_frame(index + 1 == count, compressed && index == 0, opcode, chunk)
                    .await?;
            }
        }
        self.stream.flush().await
    }

    /// Sends a ping (the heartbeat) and flushes.
    pub(super) async fn ping(&mut self) -> io::Result<()> {
        self.write_owed().await?;
        self.write_frame(true, false, OpCode::Ping, &[]).await?;
        self.stream.flush().await
    }

    /// Writes what is owed (a pong, a close echo) and flushes.
    pub(super) async fn flush(&mut self) -> io::Result<()> {
        self.write_owed().await?;
        self.stream.flush().await
    }

    /// Starts the closing handshake: sends a close frame with `code` and `reason`, then reads
    /// (discarding messages) until the client's close frame or the end of the stream, and
    /// shuts the stream down. The caller bounds how long this may take.
    pub(super) async fn close(&mut self, code: u16, reason: &str) {
        let payload = close_payload(Some((code, reason)));
        self.owed = None;
        if self
            .write_frame(true, false, OpCode::Close, &payload)
            .await
            .is_err()
            || self.stream.flush().await.is_err()
        {
            return;
        }
        while let Ok(message) = self.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
        let _ = self.stream.shutdown().await;
    }

    /// Ends a closing handshake the client started: echoes its close frame and shuts the
    /// stream down (the server closes the TCP connection first, RFC 6455 §7.1.1).
    pub(super) async fn finish_client_close(&mut self) {
        if self.flush().await.is_ok() {
            let _ = self.stream.shutdown().await;
        }
    }

    async fn write_owed(&mut self) -> io::Result<()> {
        match self.owed.take() {
            None => Ok(()),
            Some(Owed::Pong(payload)) => {
                self.write_frame(true, false, OpCode::Pong, &payload).await
            }
            Some(Owed::Close(frame)) => {
                let payload = close_payload(
                    frame
                        .as_ref()
                        .map(|(code, reason)| (*code, reason.as_str())),
                );
                self.write_frame(true, false, OpCode::Close, &payload).await
            }
        }
    }

    /// Writes one frame: header and payload in vectored writes, the payload not copied.
    async fn write_frame(
        &mut self,
        fin: bool,
        rsv1: bool,
        opcode: OpCode,
        payload: &[u8],
    ) -> io::Result<()> {
        let mut header = [0; MAX_HEADER_LEN];
        let header_len = frame::write_header(&mut header, fin, rsv1, opcode, payload.len());
        let mut header = &header[..header_len];
        let mut payload = payload;
        while !header.is_empty() || !payload.is_empty() {
            let written = if header.is_empty() {
                self.stream.write(payload).await?
            } else {
                self.stream
                    .write_vectored(&[IoSlice::new(header), IoSlice::new(payload)])
                    .await?
            };
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            let from_header = written.min(header.len());
            header = &header[from_header..];
            payload = &payload[written - from_header..];
        }
        Ok(())
    }
}

/// A close frame's payload: the status code and reason, or nothing (RFC 6455 §5.5.1).
fn close_payload(frame: Option<(u16, &str)>) -> Vec<u8> {
    let Some((code, reason)) = frame else {
        return Vec::new();
    };
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    payload
}

/// The close cause of a frame the reader refused.
fn read_cause(error: ReadError) -> CloseCause {
    match error {
        ReadError::Protocol(text) => CloseCause::ProtocolError(text),
        ReadError::InvalidUtf8 => CloseCause::InvalidPayload,
        ReadError::TooBig => CloseCause::MessageTooBig,
    }
}
