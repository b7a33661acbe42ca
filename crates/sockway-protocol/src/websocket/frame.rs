//! RFC 6455 §5.2 frame headers: reading a client's, writing the server's, and masking.

/// A frame's opcode (RFC 6455 §5.2). The reserved opcodes (3–7, 11–15) are not
/// representable: reading one is a protocol error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// A continuation of a fragmented message.
    Continuation,
    /// The first (or only) frame of a text message.
    Text,
    /// The first (or only) frame of a binary message.
    Binary,
    /// A close frame.
    Close,
    /// A ping.
    Ping,
    /// A pong.
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Whether this is a control frame's opcode (close, ping, pong).
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// The header of a frame received from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The FIN bit: the last frame of its message.
    pub fin: bool,
    /// The RSV1 bit: with permessage-deflate, the message is compressed.
    pub rsv1: bool,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key (clients must mask every frame).
    pub mask: [u8; 4],
    /// The payload length.
    pub payload_len: u64,
    /// The length of the header itself, 6 to 14 bytes.
    pub header_len: usize,
}

/// A frame header that breaks RFC 6455 for a frame sent by a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// RSV2 or RSV3 is set; no extension sockway speaks defines them.
    #[error("reserved bits set")]
    ReservedBits,
    /// The opcode is one of the reserved values.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// The client did not mask the frame (RFC 6455 §5.1).
    #[error("client frame not masked")]
    Unmasked,
    /// A control frame with FIN unset (RFC 6455 §5.5).
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A control frame payload over 125 bytes (RFC 6455 §5.5).
    #[error("control frame payload over 125 bytes")]
    ControlTooLong,
    /// A 64-bit length with its most significant bit set (RFC 6455 §5.2).
    #[error("invalid payload length")]
    InvalidLength,
}

/// The longest frame header: 2 bytes, an 8-byte extended length and a 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// Reads a client frame's header from the start of `bytes`: `Ok(None)` when `bytes` does not
/// hold all of it yet.
pub fn parse_header(bytes: &[u8]) -> Result<Option<Header>, HeaderError> {
    let [first, second, ..] = *bytes else {
        return Ok(None);
    };
    if first & 0x30 != 0 {
        return Err(HeaderError::ReservedBits);
    }
    let opcode =
        OpCode::from_bits(first & 0x0F).ok_or(HeaderError::ReservedOpcode(first & 0x0F))?;
    let fin = first & 0x80 != 0;
    if second & 0x80 == 0 {
        return Err(HeaderError::Unmasked);
    }
    let (payload_len, length_len) = match second & 0x7F {
        126 => match bytes.get(2..4) {
            Some(extended) => (u64::from(u16::from_be_bytes([extended[0], extended[1]])), 2),
            None => return Ok(None),
        },
        127 => match bytes.get(2..10) {
            Some(extended) => {
                let mut length = [0; 8];
                length.copy_from_slice(extended);
                (u64::from_be_bytes(length), 8)
            }
            None => return Ok(None),
        },
        short => (u64::from(short), 0),
    };
    if payload_len >> 63 != 0 {
        return Err(HeaderError::InvalidLength);
    }
    if opcode.is_control() {
        if !fin {
            return Err(HeaderError::FragmentedControl);
        }
        if payload_len > 125 {
            return Err(HeaderError::ControlTooLong);
        }
    }
    let mask_at = 2 + length_len;
    let Some(mask) = bytes.get(mask_at..mask_at + 4) else {
        return Ok(None);
    };
    Ok(Some(Header {
        fin,
        rsv1: first & 0x40 != 0,
        opcode,
        mask: [mask[0], mask[1], mask[2], mask[3]],
        payload_len,
        header_len: mask_at + 4,
    }))
}

/// Writes the header of an unmasked (server) frame into `out`; returns its length.
pub fn write_header(
    out: &mut [u8; MAX_HEADER_LEN],
    fin: bool,
    rsv1: bool,
    opcode: OpCode,
    payload_len: usize,
) -> usize {
    out[0] = (u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode.bits();
    match payload_len {
        0..=125 => {
            out[1] = payload_len as u8;
            2
        }
        126..=0xFFFF => {
            out[1] = 126;
            out[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
            4
        }
        _ => {
            out[1] = 127;
            out[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
            10
        }
    }
}

/// Applies (or removes: the operation is its own inverse) `mask` to `payload`, whose first
/// byte is at offset `offset` of the frame's payload.
pub fn apply_mask(payload: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut key = [0; 4];
    for (index, byte) in key.iter_mut().enumerate() {
        *byte = mask[(offset + index) % 4];
    }
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (index, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[index % 4];
    }
}

/// Encodes a whole masked frame as a client sends it: for tests and fuzzing.
pub fn client_frame(
    fin: bool,
    rsv1: bool,
    opcode: OpCode,
    mask: [u8; 4],
    payload: &[u8],
) -> Vec<u8> {
    let mut header = [0; MAX_HEADER_LEN];
    let length = write_header(&mut header, fin, rsv1, opcode, payload.len());
    header[1] |= 0x80;
    let mut frame = Vec::with_capacity(length + 4 + payload.len());
    frame.extend_from_slice(&header[..length]);
    frame.extend_from_slice(&mask);
    let start = frame.len();
    frame.extend_from_slice(payload);
    apply_mask(&mut frame[start..], mask, 0);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lengths_round_trip() {
        for length in [0, 1, 125, 126, 127, 0xFFFF, 0x10000, 1 << 24] {
            let payload = vec![0x5A; length];
            let frame = client_frame(true, false, OpCode::Binary, [1, 2, 3, 4], &payload);
            let header = parse_header(&frame).unwrap().unwrap();
            assert_eq!(header.payload_len, length as u64);
            assert_eq!(header.header_len + length, frame.len());
            assert_eq!(header.mask, [1, 2, 3, 4]);
            assert!(header.fin && !header.rsv1);
            // Any prefix of the header is "not yet".
            for cut in 0..header.header_len {
                assert_eq!(parse_header(&frame[..cut]), Ok(None), "cut {cut}");
            }
        }
    }

    #[test]
    fn rejects_what_rfc_6455_forbids() {
        let frame = |first: u8, second: u8| {
            let mut bytes = vec![first, second];
            bytes.extend_from_slice(&[0; 12]);
            parse_header(&bytes)
        };
        assert_eq!(frame(0x81 | 0x20, 0x80), Err(HeaderError::ReservedBits));
        assert_eq!(frame(0x81 | 0x10, 0x80), Err(HeaderError::ReservedBits));
        assert_eq!(frame(0x83, 0x80), Err(HeaderError::ReservedOpcode(3)));
        assert_eq!(frame(0x8B, 0x80), Err(HeaderError::ReservedOpcode(0xB)));
        assert_eq!(frame(0x81, 0x00), Err(HeaderError::Unmasked));
        assert_eq!(frame(0x09, 0x80), Err(HeaderError::FragmentedControl));
        let mut long_ping = vec![0x89, 0x80 | 126, 0x00, 0xC8];
        long_ping.extend_from_slice(&[0; 4]);
        assert_eq!(parse_header(&long_ping), Err(HeaderError::ControlTooLong));
        let mut huge = vec![0x82, 0xFF, 0x80];
        huge.extend_from_slice(&[0; 11]);
        assert_eq!(parse_header(&huge), Err(HeaderError::InvalidLength));
        // RSV1 is reported, not refused: whether it is allowed depends on the extensions.
        assert!(frame(0xC1, 0x80).unwrap().unwrap().rsv1);
    }

    #[test]
    fn masking_is_its_own_inverse_at_any_offset() {
        let original: Vec<u8> = (0..=255).collect();
        let mask = [0xA1, 0xB2, 0xC3, 0xD4];
        let mut whole = original.clone();
        apply_mask(&mut whole, mask, 0);
        // Unmasking in two pieces (a frame read in two reads) gives the same bytes.
        let mut pieces = whole.clone();
        let (head, tail) = pieces.split_at_mut(37);
        apply_mask(head, mask, 0);
        apply_mask(tail, mask, 37);
        assert_eq!(pieces, original);
        for (index, byte) in whole.iter().enumerate() {
            assert_eq!(*byte, original[index] ^ mask[index % 4]);
        }
    }

    #[test]
    fn server_headers() {
        let mut out = [0; MAX_HEADER_LEN];
        assert_eq!(write_header(&mut out, true, false, OpCode::Text, 5), 2);
        assert_eq!(out[..2], [0x81, 5]);
        assert_eq!(write_header(&mut out, false, true, OpCode::Binary, 300), 4);
        assert_eq!(out[..4], [0x42, 126, 1, 44]);
        assert_eq!(
            write_header(&mut out, true, false, OpCode::Continuation, 70_000),
            10
        );
        assert_eq!(out[..10], [0x80, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    }
}
