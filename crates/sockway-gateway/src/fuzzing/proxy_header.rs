//! The `proxy_header` target: reading a PROXY protocol (v1 or v2) header from the first bytes
//! of a connection.

use crate::proxy::protocol::{Parsed, V1_MAX_BYTES, encode_v1, encode_v2, parse};

/// Input: the first bytes a load balancer (or anyone) sends on a connection.
///
/// Checks: the result of every prefix of the input agrees with the whole (incomplete, then
/// one header or one error for good), so reading in pieces decides what reading at once
/// does; an incomplete prefix is shorter than the header it becomes (a reader consumes it)
/// and than what a header may hold before its end is known;
/// a version 1 header ends with its `\r\n` within 107 bytes; a header's addresses, written
/// out again in either version, read back the same.
pub fn proxy_header(data: &[u8]) {
    let mut decided: Option<Option<Parsed>> = None;
    let mut longest_incomplete = 0;
    for end in 0..=data.len().min(512) {
        let result = parse(&data[..end]).ok();
        match (&decided, result) {
            (None, Some(Parsed::Incomplete)) => {
                assert!(end < V1_MAX_BYTES.max(52), "incomplete after {end} bytes");
                longest_incomplete = end;
            }
            (None, result) => decided = Some(result),
            (Some(first), result) => {
                assert_eq!(
                    *first, result,
                    "{data:?}: the result changed at {end} bytes"
                );
            }
        }
    }
    let Ok(Parsed::Complete { header, length }) = parse(data) else {
        return;
    };
    assert!(length >= 15, "a header of {length} bytes");
    // What was called incomplete was header: a reader may have consumed it already.
    assert!(
        length > longest_incomplete,
        "a header of {length} bytes after {longest_incomplete} incomplete ones"
    );
    if header.version == 1 {
        assert!(length <= V1_MAX_BYTES && length <= data.len());
        assert_eq!(&data[length - 2..length], b"\r\n");
    }
    for encoded in [
        encode_v1(header.addresses),
        encode_v2(header.addresses, &[]),
    ] {
        match parse(&encoded) {
            Ok(Parsed::Complete { header: again, .. }) => {
                assert_eq!(again.addresses, header.addresses, "{encoded:?}");
            }
            other => panic!("{encoded:?} re-encoded from {header:?} reads as {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::protocol::Addresses;

    fn addresses(source: &str, destination: &str) -> Addresses {
        Addresses {
            source: source.parse().unwrap(),
            destination: destination.parse().unwrap(),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_prefixes_agree() {
        // A small deterministic generator: mutations of valid headers and random bytes, each
        // parsed whole and at every prefix.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seeds = [
            encode_v1(Some(addresses("192.0.2.10:56324", "198.51.100.1:443"))),
            encode_v1(Some(addresses("[2001:db8::7]:1", "[2001:db8::1]:2"))),
            encode_v1(None),
            encode_v2(
                Some(addresses("192.0.2.10:56324", "198.51.100.1:443")),
                b"\x01\x00\x02h2",
            ),
            encode_v2(Some(addresses("[2001:db8::7]:1", "[2001:db8::1]:2")), &[]),
            encode_v2(None, &[]),
        ];
        for round in 0..3_000 {
            let mut bytes = seeds[round % seeds.len()].clone();
            match next() % 4 {
                0 => {
                    let at = (next() as usize) % bytes.len();
                    bytes[at] = next() as u8;
                }
                1 => {
                    let at = (next() as usize) % bytes.len();
                    bytes.truncate(at);
                }
                2 => bytes.extend((0..next() % 40).map(|_| next() as u8)),
                _ => bytes = (0..next() % 300).map(|_| next() as u8).collect(),
            }
            proxy_header(&bytes);
        }
    }
}
