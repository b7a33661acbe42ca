//! AWS-style ids: connection ids, request ids and message ids.
//!
//! AWS ids are the base64url encoding of 11 bytes, which is 15 alphabet characters and a
//! single `=` pad, e.g. `BFaT_fALIAMCKug=` (reference §1.4). Because 11 bytes leave two
//! unused bits in the last character, that 15th character is always one of
//! `AEIMQUYcgkosw048`. This module turns caller-supplied random bytes into ids and checks
//! ids received from outside; it never draws randomness itself.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use serde::{Deserialize, Deserializer, Serialize};

/// Identifies one client connection, e.g. `BFaT_fALIAMCKug=`.
///
/// Holds only strings of the exact form [`ConnectionId::from_random`] produces, so it can be
/// put into URLs (after percent-encoding the `=`) and JSON without escaping.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ConnectionId(String);

/// Identifies one request: an event sent to an integration, an error frame, or a message
/// (`messageId` values use the same format).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RequestId(String);

/// Why a string is not a valid connection id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    /// The id does not have exactly 16 bytes.
    #[error("connection id must be 16 characters, got {length} bytes")]
    WrongLength {
        /// The length of the rejected input in bytes.
        length: usize,
    },
    /// One of the first 15 characters is outside the base64url alphabet.
    #[error(
        "connection id has {character:?} at position {position}, outside the base64url alphabet"
    )]
    InvalidCharacter {
        /// The offending character.
        character: char,
        /// Its zero-based position.
        position: usize,
    },
    /// The 15th character carries bits that an 11-byte value cannot have.
    #[error(
        "connection id has {character:?} at position 14, where only one of `AEIMQUYcgkosw048` can follow 11 bytes"
    )]
    NonCanonicalEnd {
        /// The offending character.
        character: char,
    },
    /// The id does not end with the single `=` pad.
    #[error("connection id must end with `=`")]
    MissingPadding,
}

/// The number of random bytes behind every id.
pub const ID_BYTES: usize = 11;

/// The length in characters of every id.
pub const ID_LENGTH: usize = 16;

/// Characters that can end the 15-character body of an 11-byte base64 value: those whose
/// low two bits are zero.
const LAST_CHARACTERS: &str = "AEIMQUYcgkosw048";

impl ConnectionId {
    /// Builds a connection id from 11 random bytes: their base64url encoding with its
    /// single `=` pad, 16 characters in all.
    pub fn from_random(bytes: [u8; ID_BYTES]) -> Self {
        Self(encode(bytes))
    }

    /// Checks that `s` has exactly the form [`ConnectionId::from_random`] produces.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.len() != ID_LENGTH {
            return Err(IdError::WrongLength { length: s.len() });
        }
        for (position, character) in s.chars().enumerate().take(ID_LENGTH - 1) {
            if !(character.is_ascii_alphanumeric() || character == '-' || character == '_') {
                return Err(IdError::InvalidCharacter {
                    character,
                    position,
                });
            }
        }
        // All of the first 15 characters are ASCII, so byte offsets are character offsets.
        let last = char::from(s.as_bytes()[ID_LENGTH - 2]);
        if !LAST_CHARACTERS.contains(last) {
            return Err(IdError::NonCanonicalEnd { character: last });
        }
        if !s.ends_with('=') {
            return Err(IdError::MissingPadding);
        }
        Ok(Self(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 11 bytes the id encodes, the inverse of [`ConnectionId::from_random`]. A cluster
    /// reads the owning node's tag from them.
    pub fn to_bytes(&self) -> [u8; ID_BYTES] {
        let decoded = URL_SAFE
            .decode(&self.0)
            .expect("a ConnectionId only holds the base64url of 11 bytes");
        decoded
            .try_into()
            .expect("a ConnectionId only holds the base64url of 11 bytes")
    }
}

impl RequestId {
    /// Builds a request id from 11 random bytes, in the same format as a connection id.
    pub fn from_random(bytes: [u8; ID_BYTES]) -> Self {
        Self(encode(bytes))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ConnectionId {
    /// Reads a connection id and checks it, so a deserialized id is as valid as a parsed one.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ConnectionId::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ConnectionId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn encode(bytes: [u8; ID_BYTES]) -> String {
    URL_SAFE.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<(), IdError>) {
        let parsed = input.parse::<ConnectionId>();
        assert_eq!(
            parsed.as_ref().map(ConnectionId::as_str),
            expected.as_ref().map(|()| input),
            "input {input:?}"
        );
    }

    #[test]
    fn from_random_produces_16_character_base64url() {
        let id = ConnectionId::from_random([0xff; 11]);
        assert_eq!(id.as_str(), "______________8=");
        assert_eq!(id.as_str().len(), ID_LENGTH);
        assert_eq!(RequestId::from_random([0; 11]).as_str(), "AAAAAAAAAAAAAAA=");
        assert_eq!(
            RequestId::from_random([0xfb; 11]).as_str(),
            "-_v7-_v7-_v7-_s="
        );
    }

    #[test]
    fn from_random_output_always_parses() {
        for seed in 0..=255u8 {
            let mut bytes = [0u8; 11];
            for (index, byte) in bytes.iter_mut().enumerate() {
                *byte = seed
                    .wrapping_mul(31)
                    .wrapping_add((index as u8).wrapping_mul(97));
            }
            let id = ConnectionId::from_random(bytes);
            assert_eq!(ConnectionId::parse(id.as_str()), Ok(id.clone()));
            assert_eq!(id.to_bytes(), bytes);
        }
    }

    #[test]
    fn captured_aws_ids_parse() {
        for id in [
            "BFaT_fALIAMCKug=",
            "Gto47d9-DoECGqg=",
            "L0SM9cOFvHcCIhw=",
            "TWegAcC4EowCHnA=",
            "R0oXAdfD0kwCH6w=",
        ] {
            check(id, Ok(()));
        }
    }

    #[test]
    fn malformed_ids_are_rejected() {
        check("", Err(IdError::WrongLength { length: 0 }));
        check("BFaT_fALIAMCKug", Err(IdError::WrongLength { length: 15 }));
        check(
            "BFaT_fALIAMCKug==",
            Err(IdError::WrongLength { length: 17 }),
        );
        check(
            "BFaT+fALIAMCKug=",
            Err(IdError::InvalidCharacter {
                character: '+',
                position: 4,
            }),
        );
        check(
            "BFaT_fALIAMCKuh=",
            Err(IdError::NonCanonicalEnd { character: 'h' }),
        );
        check("BFaT_fALIAMCKugA", Err(IdError::MissingPadding));
        // 16 bytes but not 16 characters.
        check(
            "BFaT_fALIAMCKé=",
            Err(IdError::InvalidCharacter {
                character: 'é',
                position: 13,
            }),
        );
    }

    #[test]
    fn ids_display_and_serialize_as_their_text() {
        let id = ConnectionId::parse("BFaT_fALIAMCKug=").unwrap();
        assert_eq!(id.to_string(), "BFaT_fALIAMCKug=");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"BFaT_fALIAMCKug=\"");
        let request_id = RequestId::from_random([0; 11]);
        assert_eq!(request_id.to_string(), "AAAAAAAAAAAAAAA=");
        assert_eq!(
            serde_json::to_string(&request_id).unwrap(),
            "\"AAAAAAAAAAAAAAA=\""
        );
    }
}
