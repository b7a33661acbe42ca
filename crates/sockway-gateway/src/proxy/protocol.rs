//! The PROXY protocol (HAProxy's, versions 1 and 2): the header a load balancer writes at the
//! start of a TCP connection to say whom it relays.
//!
//! [`parse`] reads a header from bytes without I/O and tells, while the bytes are incomplete,
//! that every byte it was given belongs to the header; [`read_header`] uses that to consume
//! exactly the header from a `TcpStream` (peeking first, never reading past it), so what
//! follows (a TLS ClientHello, an HTTP request) stays in the socket for whoever reads next.
//!
//! Version 1 is a text line, `PROXY TCP4|TCP6 <source> <destination> <source port>
//! <destination port>\r\n` or `PROXY UNKNOWN ...\r\n`, at most 107 bytes. Version 2 is binary:
//! a 12-byte signature, a version and command byte, a family and transport byte, a length, then
//! the addresses and type-length-value extensions, which are skipped. The reading is strict, as
//! the specification asks: anything else is an error and the connection is closed.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The start of every version 2 header.
pub(crate) const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The start of every version 1 header.
const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest version 1 header, `\r\n` included (the specification's bound).
pub(crate) const V1_MAX_BYTES: usize = 107;
/// The fixed part of a version 2 header: signature, version and command, family, length.
const V2_FIXED_BYTES: usize = 16;
/// The largest address block a version 2 header is read up to (two UNIX socket paths); what
/// follows it, up to the header's length, is skipped unread.
const V2_MAX_ADDRESS_BYTES: usize = 216;

/// What a PROXY header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProxyHeader {
    /// 1 or 2.
    pub(crate) version: u8,
    /// The relayed connection's endpoints: `None` when the proxy does not say (version 1
    /// `UNKNOWN`, a version 2 `LOCAL` command such as a health check, or an address family
    /// other than TCP over IPv4 or IPv6); then the TCP peer itself is the client.
    pub(crate) addresses: Option<Addresses>,
}

/// The endpoints of a relayed TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Addresses {
    /// The client's address and port.
    pub(crate) source: SocketAddr,
    /// The address and port the client connected to, at the proxy.
    pub(crate) destination: SocketAddr,
}

/// What the bytes read so far amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// Not enough bytes yet, and every byte given is part of the header.
    Incomplete,
    /// A whole header. `length` is its size in bytes; for version 2 it may run past the bytes
    /// given, into extensions nobody needs to see.
    Complete {
        /// What the header says.
        header: ProxyHeader,
        /// The header's length in bytes, from the first byte.
        length: usize,
    },
}

/// Why a connection's PROXY header was not accepted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyHeaderError {
    /// The connection does not start with a PROXY header.
    #[error("the connection does not start with a PROXY protocol header")]
    Missing,
    /// A version 1 line without `\r\n` in its first 107 bytes.
    #[error("PROXY v1 header longer than 107 bytes")]
    TooLong,
    /// A version 1 line that does not follow the grammar.
    #[error("malformed PROXY v1 header: {0}")]
    MalformedV1(&'static str),
    /// A version 2 header with a version other than 2, an unknown command, family or
    /// transport, or a length too short for its addresses.
    #[error("malformed PROXY v2 header: {0}")]
    MalformedV2(&'static str),
    /// The peer closed the connection or the socket failed before the header was complete.
    #[error("connection failed while reading the PROXY header")]
    Io(#[source] io::Error),
}

/// Reads a PROXY header from the start of `bytes`; see [`Parsed`]. Never reads more than
/// 107 bytes of a version 1 header or 232 of a version 2 one.
pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    let shared = bytes.len().min(V2_SIGNATURE.len());
    if bytes[..shared] == V2_SIGNATURE[..shared] {
        return if shared < V2_SIGNATURE.len() {
            Ok(Parsed::Incomplete)
        } else {
            parse_v2(bytes)
        };
    }
    let shared = bytes.len().min(V1_PREFIX.len());
    if bytes[..shared] == V1_PREFIX[..shared] {
        return if shared < V1_PREFIX.len() {
            Ok(Parsed::Incomplete)
        } else {
            parse_v1(bytes)
        };
    }
    Err(ProxyHeaderError::Missing)
}

/// Consumes a PROXY header from the start of `stream`, and nothing after it: each step peeks,
/// asks [`parse`] how much of what it saw is header, and reads only that. Bounded by the
/// header's own limits (107 bytes for version 1, its stated length for version 2); the caller
/// bounds the time.
pub(crate) async fn read_header(stream: &mut TcpStream) -> Result<ProxyHeader, ProxyHeaderError> {
    let mut buffer = [0u8; V2_FIXED_BYTES + V2_MAX_ADDRESS_BYTES];
    let mut consumed = 0;
    loop {
        let peeked = stream
            .peek(&mut buffer[consumed..])
            .await
            .map_err(ProxyHeaderError::Io)?;
        if peeked == 0 {
            return Err(ProxyHeaderError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        let seen = consumed + peeked;
        match parse(&buffer[..seen])? {
            Parsed::Incomplete => {
                // All of it is header, so taking it out of the socket loses nothing; the next
                // peek then waits for bytes not seen yet.
                stream
                    .read_exact(&mut buffer[consumed..seen])
                    .await
                    .map_err(ProxyHeaderError::Io)?;
                consumed = seen;
            }
            Parsed::Complete { header, length } => {
                // `parse` promises `length >= consumed` (every byte it called incomplete was
                // header); `max` keeps a broken promise from becoming a panic.
                let in_buffer = length.min(seen).max(consumed);
                stream
                    .read_exact(&mut buffer[consumed..in_buffer])
                    .await
                    .map_err(ProxyHeaderError::Io)?;
                skip(stream, length.saturating_sub(in_buffer)).await?;
                return Ok(header);
            }
        }
    }
}

/// Reads and drops `count` bytes: a version 2 header's extensions.
async fn skip(stream: &mut TcpStream, mut count: usize) -> Result<(), ProxyHeaderError> {
    let mut scratch = [0u8; 512];
    while count > 0 {
        let chunk = count.min(scratch.len());
        stream
            .read_exact(&mut scratch[..chunk])
            .await
            .map_err(ProxyHeaderError::Io)?;
        count -= chunk;
    }
    Ok(())
}

/// `PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n`, `PROXY UNKNOWN[ anything]\r\n`.
fn parse_v1(bytes: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    let window = &bytes[..bytes.len().min(V1_MAX_BYTES)];
    let Some(end) = window.windows(2).position(|pair| pair == b"\r\n") else {
        return if window.len() < V1_MAX_BYTES {
            // A lone `\n` or `\r` followed by something else never becomes `\r\n` later.
            match window.iter().position(|&byte| byte == b'\n') {
                Some(_) => Err(ProxyHeaderError::MalformedV1(
                    "a line feed without a carriage return",
                )),
                None if window.len() >= 2 && window[..window.len() - 1].contains(&b'\r') => Err(
                    ProxyHeaderError::MalformedV1("a carriage return without a line feed"),
                ),
                None => Ok(Parsed::Incomplete),
            }
        } else {
            Err(ProxyHeaderError::TooLong)
        };
    };
    let line = std::str::from_utf8(&window[V1_PREFIX.len()..end])
        .map_err(|_| ProxyHeaderError::MalformedV1("not ASCII"))?;
    if !line.is_ascii() {
        return Err(ProxyHeaderError::MalformedV1("not ASCII"));
    }
    // Checked before the line's end was seen too, so the answer cannot change with it.
    if line.contains(['\r', '\n']) {
        return Err(ProxyHeaderError::MalformedV1(
            "a carriage return or line feed inside the line",
        ));
    }
    let length = end + 2;
    let mut fields = line.split(' ');
    let protocol = fields.next().unwrap_or_default();
    let header = |addresses| Parsed::Complete {
        header: ProxyHeader {
            version: 1,
            addresses,
        },
        length,
    };
    if protocol == "UNKNOWN" {
        // The specification lets the rest of an UNKNOWN line be anything.
        return Ok(header(None));
    }
    let is_v4 = match protocol {
        "TCP4" => true,
        "TCP6" => false,
        _ => {
            return Err(ProxyHeaderError::MalformedV1(
                "protocol is not TCP4, TCP6 or UNKNOWN",
            ));
        }
    };
    let fields: Vec<&str> = fields.collect();
    let [source, destination, source_port, destination_port] = fields[..] else {
        return Err(ProxyHeaderError::MalformedV1(
            "expected two addresses and two ports, separated by single spaces",
        ));
    };
    let address = |text: &str| -> Result<IpAddr, ProxyHeaderError> {
        let parsed = if is_v4 {
            text.parse::<Ipv4Addr>().map(IpAddr::V4)
        } else {
            text.parse::<Ipv6Addr>().map(IpAddr::V6)
        };
        parsed.map_err(|_| ProxyHeaderError::MalformedV1("an address does not match the protocol"))
    };
    let addresses = Addresses {
        source: SocketAddr::new(address(source)?, v1_port(source_port)?),
        destination: SocketAddr::new(address(destination)?, v1_port(destination_port)?),
    };
    Ok(header(Some(addresses)))
}

/// A version 1 port: 0 to 65535 in decimal, without a sign or leading zeros.
fn v1_port(text: &str) -> Result<u16, ProxyHeaderError> {
    let canonical = !text.is_empty()
        && text.len() <= 5
        && text.bytes().all(|byte| byte.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical
        .then(|| text.parse::<u16>().ok())
        .flatten()
        .ok_or(ProxyHeaderError::MalformedV1(
            "a port is not a number from 0 to 65535",
        ))
}

/// The binary header: signature (already matched), `0x2?` version and command, family and
/// transport, a big-endian length, then addresses and extensions.
fn parse_v2(bytes: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    if bytes.len() < V2_FIXED_BYTES {
        return Ok(Parsed::Incomplete);
    }
    let version_command = bytes[12];
    if version_command >> 4 != 2 {
        return Err(ProxyHeaderError::MalformedV2("version is not 2"));
    }
    let is_local = match version_command & 0x0f {
        0 => true,
        1 => false,
        _ => {
            return Err(ProxyHeaderError::MalformedV2(
                "command is not LOCAL or PROXY",
            ));
        }
    };
    let family_transport = bytes[13];
    let (family, transport) = (family_transport >> 4, family_transport & 0x0f);
    if family > 3 || transport > 2 {
        return Err(ProxyHeaderError::MalformedV2(
            "unknown address family or transport",
        ));
    }
    let stated = usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    let length = V2_FIXED_BYTES + stated;
    let header = |addresses| Parsed::Complete {
        header: ProxyHeader {
            version: 2,
            addresses,
        },
        length,
    };
    // LOCAL: the proxy's own connection (a health check); its addresses, if any, mean nothing.
    // UNSPEC and UNIX: not a TCP client, so the peer stands for itself.
    if is_local || family == 0 || family == 3 {
        return Ok(header(None));
    }
    if transport != 1 {
        return Err(ProxyHeaderError::MalformedV2(
            "an IPv4 or IPv6 connection that is not over TCP",
        ));
    }
    let address_bytes = if family == 1 { 12 } else { 36 };
    if stated < address_bytes {
        return Err(ProxyHeaderError::MalformedV2(
            "the length is too short for the addresses",
        ));
    }
    let Some(block) = bytes.get(V2_FIXED_BYTES..V2_FIXED_BYTES + address_bytes) else {
        return Ok(Parsed::Incomplete);
    };
    let addresses = if family == 1 {
        let ip = |at: usize| IpAddr::V4(Ipv4Addr::from(read_array::<4>(block, at)));
        let port = |at: usize| u16::from_be_bytes(read_array::<2>(block, at));
        Addresses {
            source: SocketAddr::new(ip(0), port(8)),
            destination: SocketAddr::new(ip(4), port(10)),
        }
    } else {
        let ip = |at: usize| IpAddr::V6(Ipv6Addr::from(read_array::<16>(block, at)));
        let port = |at: usize| u16::from_be_bytes(read_array::<2>(block, at));
        Addresses {
            source: SocketAddr::new(ip(0), port(32)),
            destination: SocketAddr::new(ip(16), port(34)),
        }
    };
    Ok(header(Some(addresses)))
}

/// `N` bytes of `block` from `at`; the caller has checked the block's length.
fn read_array<const N: usize>(block: &[u8], at: usize) -> [u8; N] {
    block[at..at + N]
        .try_into()
        .expect("the address block's length was checked")
}

/// A version 2 header for `addresses` (`None`: a LOCAL command), followed by `extensions`
/// bytes of type-length-value data. For tests and the fuzz target's round trip.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn encode_v2(addresses: Option<Addresses>, extensions: &[u8]) -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    let mut block = Vec::new();
    match addresses {
        None => header.extend_from_slice(&[0x20, 0x00]),
        Some(addresses) => {
            let family = match (addresses.source.ip(), addresses.destination.ip()) {
                (IpAddr::V4(source), IpAddr::V4(destination)) => {
                    block.extend_from_slice(&source.octets());
                    block.extend_from_slice(&destination.octets());
                    0x11
                }
                (source, destination) => {
                    let v6 = |ip: IpAddr| match ip {
                        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                        IpAddr::V6(v6) => v6,
                    };
                    block.extend_from_slice(&v6(source).octets());
                    block.extend_from_slice(&v6(destination).octets());
                    0x21
                }
            };
            block.extend_from_slice(&addresses.source.port().to_be_bytes());
            block.extend_from_slice(&addresses.destination.port().to_be_bytes());
            header.extend_from_slice(&[0x21, family]);
        }
    }
    block.extend_from_slice(extensions);
    let length = u16::try_from(block.len()).expect("test headers are short");
    header.extend_from_slice(&length.to_be_bytes());
    header.extend_from_slice(&block);
    header
}

/// A version 1 header for `addresses` (`None`: `UNKNOWN`). For tests and the fuzz target.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn encode_v1(addresses: Option<Addresses>) -> Vec<u8> {
    match addresses {
        None => b"PROXY UNKNOWN\r\n".to_vec(),
        Some(addresses) => {
            let protocol = if addresses.source.is_ipv4() {
                "TCP4"
            } else {
                "TCP6"
            };
            format!(
                "PROXY {protocol} {} {} {} {}\r\n",
                addresses.source.ip(),
                addresses.destination.ip(),
                addresses.source.port(),
                addresses.destination.port()
            )
            .into_bytes()
        }
    }
}

#[cfg(test)]
mod tests;
