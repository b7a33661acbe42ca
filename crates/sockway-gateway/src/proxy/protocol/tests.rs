//! Tests of the PROXY header parser, table by table, and of `read_header` on real sockets. The
//! fuzz target's checks run over mutated headers in `fuzzing::proxy_header`.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

fn addresses(source: &str, destination: &str) -> Addresses {
    Addresses {
        source: source.parse().unwrap(),
        destination: destination.parse().unwrap(),
    }
}

/// Parses `bytes` whole and expects a complete header of `length` bytes.
#[track_caller]
fn check(bytes: &[u8], version: u8, expected: Option<Addresses>, length: usize) {
    match parse(bytes) {
        Ok(Parsed::Complete {
            header,
            length: got,
        }) => {
            assert_eq!(header.version, version, "{bytes:?}");
            assert_eq!(header.addresses, expected, "{bytes:?}");
            assert_eq!(got, length, "{bytes:?}");
        }
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
    }
    // A shorter prefix is incomplete, or (a version 2 header whose extensions are still to
    // come) already the same header: nothing else is decided before the whole header is seen.
    let whole = parse(bytes).ok();
    for end in 0..length.min(bytes.len()) {
        let prefix = parse(&bytes[..end]).ok();
        assert!(
            prefix == Some(Parsed::Incomplete) || prefix == whole,
            "{:?} at {end}: {prefix:?}",
            String::from_utf8_lossy(bytes),
        );
    }
}

#[track_caller]
fn check_error(bytes: &[u8], fragment: &str) {
    match parse(bytes) {
        Err(error) => assert!(
            error.to_string().contains(fragment),
            "{:?}: {error}",
            String::from_utf8_lossy(bytes)
        ),
        Ok(parsed) => panic!("{:?}: {parsed:?}", String::from_utf8_lossy(bytes)),
    }
}

#[test]
fn v1_headers_name_tcp4_and_tcp6_endpoints() {
    let line = b"PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n";
    check(
        line,
        1,
        Some(addresses("192.0.2.10:56324", "198.51.100.1:443")),
        46,
    );
    let line = b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 0\r\n";
    check(
        line,
        1,
        Some(addresses("[2001:db8::7]:65535", "[2001:db8::1]:0")),
        line.len(),
    );
    check(b"PROXY UNKNOWN\r\n", 1, None, 15);
    check(
        b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n\x16\x03\x01",
        1,
        None,
        35,
    );
    // The longest lines: two full IPv6 addresses, and (107 bytes, the specification's bound)
    // the same after UNKNOWN.
    let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let tcp6 = format!("PROXY TCP6 {full} {full} 65535 65535\r\n");
    let endpoint = format!("[{full}]:65535");
    check(
        tcp6.as_bytes(),
        1,
        Some(addresses(&endpoint, &endpoint)),
        tcp6.len(),
    );
    let longest = format!("PROXY UNKNOWN {full} {full} 65535 65535\r\n");
    assert_eq!(longest.len(), V1_MAX_BYTES);
    check(longest.as_bytes(), 1, None, V1_MAX_BYTES);
}

#[test]
fn malformed_v1_headers_are_refused() {
    for (bytes, fragment) in [
        (
            &b"PROXY TCP4 192.0.2.10 198.51.100.1 56324\r\n"[..],
            "two addresses and two ports",
        ),
        (
            b"PROXY TCP4 192.0.2.10  198.51.100.1 1 2\r\n",
            "two addresses and two ports",
        ),
        (
            b"PROXY TCP4 192.0.2.10 198.51.100.1 1 2 3\r\n",
            "two addresses and two ports",
        ),
        (
            b"PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n",
            "does not match the protocol",
        ),
        (
            b"PROXY TCP6 192.0.2.10 2001:db8::1 1 2\r\n",
            "does not match the protocol",
        ),
        (
            b"PROXY TCP4 192.0.2.010 198.51.100.1 1 2\r\n",
            "does not match the protocol",
        ),
        (
            b"PROXY TCP4 192.0.2.10 198.51.100.1 65536 2\r\n",
            "from 0 to 65535",
        ),
        (
            b"PROXY TCP4 192.0.2.10 198.51.100.1 080 2\r\n",
            "from 0 to 65535",
        ),
        (
            b"PROXY TCP4 192.0.2.10 198.51.100.1 +80 2\r\n",
            "from 0 to 65535",
        ),
        (
            b"PROXY TCP4 192.0.2.10 198.51.100.1 -1 2\r\n",
            "from 0 to 65535",
        ),
        (
            b"PROXY UDP4 192.0.2.10 198.51.100.1 1 2\r\n",
            "not TCP4, TCP6 or UNKNOWN",
        ),
        (
            b"PROXY tcp4 192.0.2.10 198.51.100.1 1 2\r\n",
            "not TCP4, TCP6 or UNKNOWN",
        ),
        (
            b"PROXY TCP4 192.0.2.10\n",
            "line feed without a carriage return",
        ),
        (
            b"PROXY TCP4 192.0.2.10\rx",
            "carriage return without a line feed",
        ),
        (b"PROXY UNKNOWN \xff\r\n", "not ASCII"),
        (
            b"PROXY  TCP4 192.0.2.10 198.51.100.1 1 2\r\n",
            "not TCP4, TCP6 or UNKNOWN",
        ),
        (b"GET /dev HTTP/1.1\r\n", "does not start with a PROXY"),
        (b"proxy TCP4", "does not start with a PROXY"),
        (b"\x16\x03\x01\x02\x00", "does not start with a PROXY"),
    ] {
        check_error(bytes, fragment);
    }
    let endless = format!("PROXY UNKNOWN {}", "x".repeat(200));
    check_error(endless.as_bytes(), "longer than 107 bytes");
    // 107 bytes without the line's end can never become a header.
    check_error(&endless.as_bytes()[..V1_MAX_BYTES], "longer than 107 bytes");
    assert!(matches!(
        parse(&endless.as_bytes()[..V1_MAX_BYTES - 1]),
        Ok(Parsed::Incomplete)
    ));
}

#[test]
fn v2_headers_name_endpoints_or_stand_for_the_peer() {
    let v4 = addresses("192.0.2.10:56324", "198.51.100.1:443");
    let bytes = encode_v2(Some(v4), &[]);
    check(&bytes, 2, Some(v4), 28);
    let v6 = addresses("[2001:db8::7]:1234", "[2001:db8::1]:8443");
    let bytes = encode_v2(Some(v6), &[]);
    check(&bytes, 2, Some(v6), 52);
    // Extensions (here an AWS VPC endpoint id, type 0xEA) are counted in the length, not read.
    let mut extension = vec![0xEA, 0x00, 0x05];
    extension.extend_from_slice(b"\x01vpce");
    let bytes = encode_v2(Some(v4), &extension);
    let mut stream = bytes.clone();
    stream.extend_from_slice(b"GET /");
    check(&stream, 2, Some(v4), bytes.len());
    // A LOCAL command (a health check) carries no client.
    check(&encode_v2(None, &[]), 2, None, 16);
    // UNSPEC and UNIX families: the peer stands for itself; the addresses are skipped.
    let mut unspec = V2_SIGNATURE.to_vec();
    unspec.extend_from_slice(&[0x21, 0x00, 0x00, 0x00]);
    check(&unspec, 2, None, 16);
    let mut unix = V2_SIGNATURE.to_vec();
    unix.extend_from_slice(&[0x21, 0x31, 0x00, 0xd8]);
    unix.extend_from_slice(&[b'/'; 216]);
    assert!(matches!(
        parse(&unix),
        Ok(Parsed::Complete {
            header: ProxyHeader {
                addresses: None,
                ..
            },
            length: 232
        })
    ));
}

#[test]
fn malformed_v2_headers_are_refused() {
    let v4 = addresses("192.0.2.10:56324", "198.51.100.1:443");
    let valid = encode_v2(Some(v4), &[]);
    let with = |at: usize, byte: u8| {
        let mut bytes = valid.clone();
        bytes[at] = byte;
        bytes
    };
    check_error(&with(12, 0x11), "version is not 2");
    check_error(&with(12, 0x22), "command is not LOCAL or PROXY");
    check_error(&with(13, 0x41), "unknown address family");
    check_error(&with(13, 0x13), "unknown address family or transport");
    check_error(&with(13, 0x12), "not over TCP");
    check_error(&with(13, 0x10), "not over TCP");
    // A length too short for the family's addresses.
    check_error(&with(15, 11), "too short for the addresses");
    check_error(&with(13, 0x21), "too short for the addresses");
    check_error(b"\r\n\r\n\0\r\nQUIT\r", "does not start with a PROXY");
}

/// A connected pair: the client's end and the server's.
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(TcpStream::connect(address), listener.accept());
    (client.unwrap(), accepted.unwrap().0)
}

#[tokio::test]
async fn reading_a_header_leaves_what_follows_in_the_socket() {
    let v4 = addresses("192.0.2.10:56324", "198.51.100.1:443");
    for (header, expected) in [
        (encode_v1(Some(v4)), Some(v4)),
        (encode_v2(Some(v4), &[0x04; 600]), Some(v4)),
        (encode_v2(None, &[]), None),
    ] {
        let (mut client, mut server) = pair().await;
        let mut sent = header.clone();
        sent.extend_from_slice(b"\x16\x03\x01 the ClientHello");
        // In three writes, so the reader sees the header arrive in pieces.
        let (first, rest) = sent.split_at(5);
        let (second, third) = rest.split_at(rest.len() / 2);
        let writer = async {
            for part in [first, second, third] {
                client.write_all(part).await.unwrap();
                client.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
            client
        };
        let (read, _client) = tokio::join!(read_header(&mut server), writer);
        assert_eq!(read.unwrap().addresses, expected);
        let mut rest = [0u8; 19];
        server.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"\x16\x03\x01 the ClientHello");
    }
}

#[tokio::test]
async fn a_peer_that_closes_mid_header_is_an_error() {
    let (mut client, mut server) = pair().await;
    client.write_all(b"PROXY TCP4 192.0.2.10").await.unwrap();
    drop(client);
    assert!(matches!(
        read_header(&mut server).await,
        Err(ProxyHeaderError::Io(_))
    ));
    let (mut client, mut server) = pair().await;
    client.write_all(b"GET /dev HTTP/1.1\r\n").await.unwrap();
    assert!(matches!(
        read_header(&mut server).await,
        Err(ProxyHeaderError::Missing)
    ));
}
