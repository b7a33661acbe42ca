//! PNG encoding of an 8-bit RGB image: the signature, then `IHDR`, one `IDAT` and `IEND`
//! chunks, each with its CRC-32; the scanlines (filter type 0, none) compressed as one zlib
//! stream by flate2, which the gateway already depends on for permessage-deflate.
//!
//! Drawing is the chart module's business; this module only turns pixels into bytes.

use std::io::Write as _;

use flate2::Compression;
use flate2::write::ZlibEncoder;

/// The eight bytes every PNG file starts with.
pub(crate) const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// `width × height` pixels, row by row, three bytes (red, green, blue) each.
pub(crate) fn encode(width: u32, height: u32, rgb: &[u8]) -> Vec<u8> {
    let row = width as usize * 3;
    assert_eq!(
        rgb.len(),
        row * height as usize,
        "the caller passes width × height RGB pixels"
    );
    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    // Bit depth 8, colour type 2 (RGB), deflate, adaptive filtering, no interlace.
    header.extend_from_slice(&[8, 2, 0, 0, 0]);

    let mut scanlines = Vec::with_capacity((row + 1) * height as usize);
    for line in rgb.chunks_exact(row.max(1)).take(height as usize) {
        scanlines.push(0);
        scanlines.extend_from_slice(line);
    }
    let mut zlib = ZlibEncoder::new(Vec::new(), Compression::best());
    zlib.write_all(&scanlines)
        .and_then(|()| zlib.finish())
        .map(|data| {
            let mut png = SIGNATURE.to_vec();
            chunk(&mut png, b"IHDR", &header);
            chunk(&mut png, b"IDAT", &data);
            chunk(&mut png, b"IEND", &[]);
            png
        })
        .expect("compressing into memory does not fail")
}

/// Appends one chunk: length, type, data, and the CRC-32 of type and data.
fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    let length = u32::try_from(data.len()).expect("a chart's chunk is far below 4 GiB");
    png.extend_from_slice(&length.to_be_bytes());
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    png.extend_from_slice(&crc.sum().to_be_bytes());
}

/// A PNG's width and height, read from its `IHDR`, after checking the signature and every
/// chunk's CRC (the harness checks the chart it wrote).
pub(crate) fn dimensions(png: &[u8]) -> anyhow::Result<(u32, u32)> {
    let chunks = chunks(png)?;
    match chunks.first() {
        Some((kind, data)) if kind == b"IHDR" && data.len() == 13 => Ok((
            u32::from_be_bytes(data[0..4].try_into().expect("four bytes")),
            u32::from_be_bytes(data[4..8].try_into().expect("four bytes")),
        )),
        _ => anyhow::bail!("the PNG does not start with an IHDR chunk"),
    }
}

/// The chunks of a PNG as (type, data), checking the signature and every CRC.
fn chunks(png: &[u8]) -> anyhow::Result<Vec<([u8; 4], &[u8])>> {
    let Some(mut rest) = png.strip_prefix(&SIGNATURE[..]) else {
        anyhow::bail!("not a PNG: wrong signature");
    };
    let mut chunks = Vec::new();
    while !rest.is_empty() {
        anyhow::ensure!(rest.len() >= 12, "truncated chunk");
        let length = u32::from_be_bytes(rest[0..4].try_into().expect("four bytes")) as usize;
        anyhow::ensure!(rest.len() >= 12 + length, "truncated chunk data");
        let kind: [u8; 4] = rest[4..8].try_into().expect("four bytes");
        let data = &rest[8..8 + length];
        let stored = u32::from_be_bytes(rest[8 + length..12 + length].try_into().expect("4"));
        let mut crc = flate2::Crc::new();
        crc.update(&rest[4..8 + length]);
        anyhow::ensure!(
            crc.sum() == stored,
            "chunk {} has a bad CRC",
            String::from_utf8_lossy(&kind)
        );
        chunks.push((kind, data));
        rest = &rest[12 + length..];
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    /// CRC-32 (ISO-HDLC, PNG's) bit by bit, independent of the encoder's.
    fn reference_crc(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// Adler-32 of `bytes`, as zlib ends its streams with it.
    fn adler32(bytes: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in bytes {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }

    /// Decodes a PNG this module wrote: checks every chunk's CRC against the reference, the
    /// zlib stream's Adler-32, and returns (width, height, RGB pixels).
    fn decode(png: &[u8]) -> (u32, u32, Vec<u8>) {
        assert_eq!(&png[..8], &SIGNATURE);
        let mut rest = &png[8..];
        let mut kinds = Vec::new();
        let (mut header, mut data) = (Vec::new(), Vec::new());
        while !rest.is_empty() {
            let length = u32::from_be_bytes(rest[0..4].try_into().unwrap()) as usize;
            let kind = &rest[4..8];
            let body = &rest[8..8 + length];
            let crc = u32::from_be_bytes(rest[8 + length..12 + length].try_into().unwrap());
            assert_eq!(crc, reference_crc(&rest[4..8 + length]), "CRC of {kind:?}");
            match kind {
                b"IHDR" => header = body.to_vec(),
                b"IDAT" => data.extend_from_slice(body),
                _ => {}
            }
            kinds.push(String::from_utf8(kind.to_vec()).unwrap());
            rest = &rest[12 + length..];
        }
        assert_eq!(kinds, ["IHDR", "IDAT", "IEND"]);
        assert_eq!(&header[8..], &[8, 2, 0, 0, 0]);
        let width = u32::from_be_bytes(header[0..4].try_into().unwrap());
        let height = u32::from_be_bytes(header[4..8].try_into().unwrap());
        // zlib: CMF 0x78 (deflate, 32 KiB window), a header checksum, Adler-32 at the end.
        assert_eq!(data[0], 0x78);
        assert_eq!((u16::from(data[0]) << 8 | u16::from(data[1])) % 31, 0);
        let mut scanlines = Vec::new();
        flate2::read::ZlibDecoder::new(&data[..])
            .read_to_end(&mut scanlines)
            .unwrap();
        let stored = u32::from_be_bytes(data[data.len() - 4..].try_into().unwrap());
        assert_eq!(stored, adler32(&scanlines));
        let row = width as usize * 3;
        assert_eq!(scanlines.len(), (row + 1) * height as usize);
        let mut pixels = Vec::new();
        for line in scanlines.chunks_exact(row + 1) {
            assert_eq!(line[0], 0, "filter type none");
            pixels.extend_from_slice(&line[1..]);
        }
        (width, height, pixels)
    }

    #[test]
    fn crc_and_adler_match_the_published_check_values() {
        assert_eq!(reference_crc(b"123456789"), 0xcbf4_3926);
        assert_eq!(reference_crc(b"IEND"), 0xae42_6082);
        let mut crc = flate2::Crc::new();
        crc.update(b"123456789");
        assert_eq!(crc.sum(), 0xcbf4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
    }

    #[test]
    fn encoded_image_decodes_to_the_same_pixels() {
        let (width, height) = (37, 11);
        let pixels: Vec<u8> = (0..width * height * 3)
            .map(|index| (index * 7 % 251) as u8)
            .collect();
        let png = encode(width, height, &pixels);
        assert_eq!(decode(&png), (width, height, pixels));
        assert_eq!(dimensions(&png).unwrap(), (width, height));
        // The empty IEND chunk ends every file the same way.
        assert_eq!(&png[png.len() - 12..], b"\0\0\0\0IEND\xaeB`\x82");
    }

    #[test]
    fn a_large_plain_image_compresses() {
        let (width, height) = (1200, 700);
        let pixels = vec![255; (width * height * 3) as usize];
        let png = encode(width, height, &pixels);
        assert!(png.len() < 10_000, "{} bytes", png.len());
        assert_eq!(decode(&png).2, pixels);
    }

    #[test]
    fn corrupt_files_are_rejected() {
        let png = encode(2, 2, &[0; 12]);
        let mut flipped = png.clone();
        flipped[20] ^= 1;
        assert!(dimensions(&flipped).is_err());
        assert!(dimensions(&png[..png.len() - 3]).is_err());
        assert!(dimensions(b"GIF89a").is_err());
    }
}
