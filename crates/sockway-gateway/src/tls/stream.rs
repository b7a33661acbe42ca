//! A server-side TLS stream over TCP that holds no buffer while its connection is idle:
//! rustls's unbuffered API (`UnbufferedServerConnection`), with the buffers owned here.
//!
//! rustls's buffered `ServerConnection` (and tokio-rustls over it) keeps a 4 KiB receive
//! buffer from the first read until the connection closes, and grows send and plaintext
//! queues it keeps; an idle `wss://` connection held about 7.5 KB of rustls heap that way.
//! Here TLS bytes read from the socket go through a buffer on the stack and are only copied
//! into `incoming` while a record is incomplete; decrypted bytes the caller has not taken yet
//! wait in `plaintext`; encoded bytes not yet written wait in `outgoing`. Each is released
//! (capacity and all) as soon as it runs empty, so between messages the stream holds the
//! socket and rustls's connection state (keys, the key schedule) only. This mirrors what
//! `connection::socket` does for the WebSocket layer above it.
//!
//! Once a TLS 1.3 handshake is done, rustls hands the connection's keys over and
//! [`records`](super::records) protects the application traffic: an idle connection then keeps
//! its raw keys and rustls's key schedule, not rustls's connection (1,088 bytes) and the
//! expanded keys of its record layer. TLS 1.2 connections stay with rustls.
//!
//! Post-handshake messages: session tickets and a `key_update` answer come out as records to
//! send (written before any later application data, in order), an alert from the peer ends
//! reading with an error, and `close_notify` ends it cleanly. A TCP end of
//! stream without `close_notify` is reported as `UnexpectedEof`, as rustls's own reader does.
//! When rustls refuses a handshake or a record, the alert it queued is sent before the error
//! is returned. Early data is never accepted (the server config leaves `max_early_data_size`
//! at 0).

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustls::ServerConfig;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    AppDataRecord, ConnectionState, EncodeError, EncodeTlsData, EncryptError,
    InsufficientSizeError, ReadTraffic, UnbufferedStatus,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::records::Records;

/// Socket reads go through a stack buffer of this size.
const STACK_READ_BYTES: usize = 4096;

/// The most plaintext one write encrypts before the ciphertext is written out, so a large
/// write never queues more than about this much in `outgoing`.
const MAX_WRITE_BYTES: usize = 64 * 1024;

/// A TLS connection from a client, after [`accept`].
pub(crate) struct TlsStream {
    tcp: TcpStream,
    layer: Layer,
    /// TLS bytes read and not yet processed: an incomplete record. Empty, without capacity,
    /// otherwise.
    incoming: Vec<u8>,
    /// TLS bytes encoded and not yet written, from `outgoing_written` on. Empty, without
    /// capacity, once written.
    outgoing: Vec<u8>,
    outgoing_written: usize,
    /// Application data decrypted and not yet read, from `plaintext_read` on. Empty, without
    /// capacity, once read.
    plaintext: Vec<u8>,
    plaintext_read: usize,
    /// The peer sent `close_notify`: nothing more will be read.
    peer_closed: bool,
    /// This side queued its `close_notify`: nothing more may be written.
    closing: bool,
}

/// Who protects the connection's records.
enum Layer {
    /// rustls: through the handshake, and for a TLS 1.2 connection's whole life.
    Rustls(Box<UnbufferedServerConnection>),
    /// A TLS 1.3 connection after its handshake.
    Tls13(Box<Records>),
}

/// What the connection needs next, after [`TlsStream::process`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The handshake needs more bytes from the client.
    Handshake,
    /// The handshake is done; application data may be written, and more read.
    Traffic,
    /// Both sides sent `close_notify`.
    Closed,
}

/// What [`TlsStream::write_records`] encrypts.
#[derive(Debug, Clone, Copy)]
enum Write<'a> {
    Data(&'a [u8]),
    CloseNotify,
}

/// Runs the server side of a TLS handshake on `tcp` with `config`. Application data the
/// client sent right behind its `Finished` is kept for the first read.
pub(crate) async fn accept(config: Arc<ServerConfig>, tcp: TcpStream) -> io::Result<TlsStream> {
    let connection = UnbufferedServerConnection::new(config).map_err(invalid_data)?;
    let mut stream = TlsStream {
        tcp,
        layer: Layer::Rustls(Box::new(connection)),
        incoming: Vec::new(),
        outgoing: Vec::new(),
        outgoing_written: 0,
        plaintext: Vec::new(),
        plaintext_read: 0,
        peer_closed: false,
        closing: false,
    };
    loop {
        let next = match stream.process() {
            Ok(next) => next,
            Err(error) => {
                // The alert, if the client still listens; the caller bounds the wait.
                let _ = poll_fn(|context| stream.poll_write_outgoing(context)).await;
                return Err(error);
            }
        };
        poll_fn(|context| stream.poll_write_outgoing(context)).await?;
        match next {
            Next::Traffic => return stream.hand_over(),
            Next::Closed => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the client closed the connection during the TLS handshake",
                ));
            }
            Next::Handshake => {
                let read = poll_fn(|context| stream.poll_read_socket(context)).await?;
                if read == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the client closed the connection during the TLS handshake",
                    ));
                }
            }
        }
    }
}

impl TlsStream {
    /// After the handshake: a TLS 1.3 connection's records are protected by [`Records`] from
    /// here on. Whole records that came right behind the client's `Finished` are read now.
    fn hand_over(self) -> io::Result<TlsStream> {
        let Layer::Rustls(connection) = self.layer else {
            return Ok(self);
        };
        if !connection
            .negotiated_cipher_suite()
            .is_some_and(Records::supports)
        {
            return Ok(TlsStream {
                layer: Layer::Rustls(connection),
                ..self
            });
        }
        let (secrets, schedule) = connection
            .dangerous_into_kernel_connection()
            .map_err(invalid_data)?;
        let records = Records::new(secrets, schedule).map_err(invalid_data)?;
        let mut stream = TlsStream {
            layer: Layer::Tls13(Box::new(records)),
            ..self
        };
        stream.process()?;
        Ok(stream)
    }

    /// Processes the records in `incoming`: application data goes to `plaintext`, records to
    /// send (handshake messages, tickets, a `key_update`, alerts) to `outgoing`. Returns what
    /// the connection needs next.
    fn process(&mut self) -> io::Result<Next> {
        let TlsStream {
            layer,
            incoming,
            outgoing,
            plaintext,
            peer_closed,
            ..
        } = self;
        let Layer::Tls13(records) = layer else {
            return self.process_rustls();
        };
        let opened = records
            .open(incoming, plaintext, outgoing)
            .map_err(invalid_data)?;
        if opened.closed {
            *peer_closed = true;
            // Nothing after `close_notify` is read.
            self.incoming = Vec::new();
        } else {
            self.discard_incoming(opened.consumed);
        }
        Ok(Next::Traffic)
    }

    /// [`TlsStream::process`] while rustls protects the records.
    fn process_rustls(&mut self) -> io::Result<Next> {
        loop {
            let TlsStream {
                layer: Layer::Rustls(connection),
                incoming,
                outgoing,
                plaintext,
                peer_closed,
                ..
            } = self
            else {
                unreachable!("process_rustls runs while rustls protects the records");
            };
            let UnbufferedStatus { mut discard, state } =
                connection.process_tls_records(incoming.as_mut_slice());
            let state = match state {
                Ok(state) => state,
                Err(error) => {
                    self.encode_alert();
                    return Err(invalid_data(error));
                }
            };
            let next = match state {
                ConnectionState::ReadTraffic(traffic) => {
                    discard += read_records(traffic, plaintext)?;
                    None
                }
                ConnectionState::EncodeTlsData(encode) => {
                    encode_records(encode, outgoing)?;
                    None
                }
                // The encoded records stay queued in `outgoing`, ahead of anything written
                // later, and are written before the stream reads or writes again.
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    None
                }
                ConnectionState::BlockedHandshake => Some(Next::Handshake),
                ConnectionState::WriteTraffic(_) => Some(Next::Traffic),
                ConnectionState::PeerClosed => {
                    *peer_closed = true;
                    None
                }
                ConnectionState::Closed => {
                    *peer_closed = true;
                    Some(Next::Closed)
                }
                // Early data is never enabled; any other state is one this code does not know.
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "unexpected TLS connection state",
                    ));
                }
            };
            self.discard_incoming(discard);
            if let Some(next) = next {
                return Ok(next);
            }
        }
    }

    /// After rustls reported an error: the alert it queued for the peer (a handshake that
    /// cannot succeed gets `handshake_failure`, a bad record `bad_record_mac`, ...), encoded
    /// into `outgoing` for the caller to send before it closes, as rustls's buffered
    /// connection would.
    fn encode_alert(&mut self) {
        let Layer::Rustls(connection) = &mut self.layer else {
            return;
        };
        let UnbufferedStatus { state, .. } = connection.process_tls_records(&mut []);
        if let Ok(ConnectionState::EncodeTlsData(mut encode)) = state {
            let start = self.outgoing.len();
            if let Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) =
                encode.encode(&mut [])
            {
                self.outgoing.resize(start + required_size, 0);
                match encode.encode(&mut self.outgoing[start..]) {
                    Ok(written) => self.outgoing.truncate(start + written),
                    Err(_) => self.outgoing.truncate(start),
                }
            }
        }
    }

    /// Removes the first `discard` bytes of `incoming`, releasing it once empty.
    fn discard_incoming(&mut self, discard: usize) {
        if discard == 0 {
            return;
        }
        if discard >= self.incoming.len() {
            self.incoming = Vec::new();
        } else {
            self.incoming.drain(..discard);
        }
    }

    /// Encrypts `write` into `outgoing` (with rustls, after processing whatever it has
    /// pending).
    fn write_records(&mut self, write: Write<'_>) -> io::Result<()> {
        if let Layer::Tls13(records) = &mut self.layer {
            let outgoing = &mut self.outgoing;
            let sealed = match write {
                Write::Data(data) => records.seal_data(data, outgoing),
                Write::CloseNotify => records.seal_close_notify(outgoing),
            };
            return sealed.map_err(invalid_data);
        }
        loop {
            let TlsStream {
                layer: Layer::Rustls(connection),
                incoming,
                outgoing,
                plaintext,
                peer_closed,
                ..
            } = self
            else {
                unreachable!("TLS 1.3 records are sealed above");
            };
            let UnbufferedStatus { mut discard, state } =
                connection.process_tls_records(incoming.as_mut_slice());
            let done = match state.map_err(invalid_data)? {
                ConnectionState::WriteTraffic(mut traffic) => {
                    append_sized(
                        outgoing,
                        |buffer| match write {
                            Write::Data(data) => traffic.encrypt(data, buffer),
                            Write::CloseNotify => traffic.queue_close_notify(buffer),
                        },
                        |error| match error {
                            EncryptError::InsufficientSize(size) => Some(size.required_size),
                            _ => None,
                        },
                    )?;
                    true
                }
                ConnectionState::ReadTraffic(traffic) => {
                    discard += read_records(traffic, plaintext)?;
                    false
                }
                ConnectionState::EncodeTlsData(encode) => {
                    encode_records(encode, outgoing)?;
                    false
                }
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    false
                }
                ConnectionState::PeerClosed => {
                    *peer_closed = true;
                    false
                }
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the TLS connection cannot send application data",
                    ));
                }
            };
            self.discard_incoming(discard);
            if done {
                return Ok(());
            }
        }
    }

    /// Writes `outgoing` to the socket; ready once all of it is written (and released).
    fn poll_write_outgoing(&mut self, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.outgoing_written < self.outgoing.len() {
            let written = ready!(
                Pin::new(&mut self.tcp)
                    .poll_write(context, &self.outgoing[self.outgoing_written..])
            )?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.outgoing_written += written;
        }
        if self.outgoing.capacity() > 0 {
            self.outgoing = Vec::new();
            self.outgoing_written = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// Reads what the socket has (at most [`STACK_READ_BYTES`]) onto the end of `incoming`;
    /// 0 at the end of the stream.
    fn poll_read_socket(&mut self, context: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut stack = [0u8; STACK_READ_BYTES];
        let mut buffer = ReadBuf::new(&mut stack);
        ready!(Pin::new(&mut self.tcp).poll_read(context, &mut buffer))?;
        let filled = buffer.filled();
        self.incoming.extend_from_slice(filled);
        Poll::Ready(Ok(filled.len()))
    }

    /// Copies decrypted bytes into `buffer`, releasing `plaintext` once all are taken;
    /// whether there were any.
    fn take_plaintext(&mut self, buffer: &mut ReadBuf<'_>) -> bool {
        let available = &self.plaintext[self.plaintext_read..];
        if available.is_empty() {
            return false;
        }
        let count = available.len().min(buffer.remaining());
        buffer.put_slice(&available[..count]);
        self.plaintext_read += count;
        if self.plaintext_read == self.plaintext.len() {
            self.plaintext = Vec::new();
            self.plaintext_read = 0;
        }
        true
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if buffer.remaining() == 0 || this.take_plaintext(buffer) || this.peer_closed {
                return Poll::Ready(Ok(()));
            }
            // Records rustls owes the client (a `key_update` answer) go out even when the
            // application is only reading; if the socket is full, a later write or read sends
            // them.
            if let Poll::Ready(Err(error)) = this.poll_write_outgoing(context) {
                return Poll::Ready(Err(error));
            }
            let read = ready!(this.poll_read_socket(context))?;
            if read == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed connection without sending TLS close_notify",
                )));
            }
            if let Err(error) = this.process() {
                // The alert, if the socket takes it now.
                let _ = this.poll_write_outgoing(context);
                return Poll::Ready(Err(error));
            }
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_write_outgoing(context))?;
        if this.closing {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let data = &data[..data.len().min(MAX_WRITE_BYTES)];
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        this.write_records(Write::Data(data))?;
        // Written out now if the socket takes it; otherwise by the next write or flush.
        if let Poll::Ready(Err(error)) = this.poll_write_outgoing(context) {
            return Poll::Ready(Err(error));
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // One record for a frame's header and payload: joined here, at most
        // `MAX_WRITE_BYTES` of them.
        let mut joined = Vec::new();
        for buffer in buffers {
            let room = MAX_WRITE_BYTES - joined.len();
            joined.extend_from_slice(&buffer[..buffer.len().min(room)]);
            if joined.len() == MAX_WRITE_BYTES {
                break;
            }
        }
        self.poll_write(context, &joined)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_outgoing(context))?;
        Pin::new(&mut this.tcp).poll_flush(context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.closing {
            // Anything still queued goes first; then `close_notify`.
            ready!(this.poll_write_outgoing(context))?;
            this.closing = true;
            this.write_records(Write::CloseNotify)?;
        }
        ready!(this.poll_write_outgoing(context))?;
        Pin::new(&mut this.tcp).poll_shutdown(context)
    }
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TlsStream")
            .field("tcp", &self.tcp)
            .field("incoming", &self.incoming.len())
            .field("outgoing", &(self.outgoing.len() - self.outgoing_written))
            .field("plaintext", &(self.plaintext.len() - self.plaintext_read))
            .field("peer_closed", &self.peer_closed)
            .field("closing", &self.closing)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;

/// Appends what `encode` writes to `outgoing`: asked first with no room, it names the size it
/// needs (`required`), and writes into that much.
fn append_sized<E>(
    outgoing: &mut Vec<u8>,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, E>,
    required: impl Fn(&E) -> Option<usize>,
) -> io::Result<()>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let start = outgoing.len();
    let written = match encode(&mut []) {
        Ok(written) => written,
        Err(error) => {
            let Some(size) = required(&error) else {
                return Err(invalid_data(error));
            };
            outgoing.resize(start + size, 0);
            encode(&mut outgoing[start..]).map_err(invalid_data)?
        }
    };
    outgoing.truncate(start + written);
    Ok(())
}

/// Appends the handshake records `encode` produces to `outgoing`.
fn encode_records<Data>(
    mut encode: EncodeTlsData<'_, Data>,
    outgoing: &mut Vec<u8>,
) -> io::Result<()> {
    append_sized(
        outgoing,
        |buffer| encode.encode(buffer),
        |error| match error {
            EncodeError::InsufficientSize(size) => Some(size.required_size),
            _ => None,
        },
    )
}

/// Appends the plaintext of every record `traffic` holds to `plaintext`; returns how many bytes
/// of the received TLS data those records used.
fn read_records<Data>(
    mut traffic: ReadTraffic<'_, '_, Data>,
    plaintext: &mut Vec<u8>,
) -> io::Result<usize> {
    let mut discard = 0;
    while let Some(record) = traffic.next_record() {
        let AppDataRecord {
            discard: record_discard,
            payload,
        } = record.map_err(invalid_data)?;
        discard += record_discard;
        plaintext.extend_from_slice(payload);
    }
    Ok(discard)
}

fn invalid_data(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}
