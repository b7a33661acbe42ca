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
