//! The messages nodes exchange on their inbox channels, as bytes.
//!
//! A request names the operation, the connection, the caller's tag (where the reply goes) and a
//! correlation number the caller chose; the reply carries the correlation number back. Payloads
//! stay raw bytes (a binary `@connections` post must not be re-encoded), so the format is a
//! fixed header plus the payload rather than JSON:
//!
//! - request: `Q`, operation (`P`/`G`/`D`), reply tag (u16 BE), correlation (u64 BE), the
//!   16-character connection id, then the payload;
//! - reply: `R`, correlation (u64 BE), outcome (`0` done, `1` gone, `2` queue full, `3`
//!   snapshot), then for a snapshot its JSON;
//! - probe: `P`, published by a node to its own inbox to check its subscription.

use bytes::{BufMut, Bytes, BytesMut};
use sockway_protocol::id::{ConnectionId, ID_LENGTH};

use super::keys::NodeTag;
use crate::cluster::ConnectionSnapshot;

/// One message on an inbox channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Message {
    /// Another node asks this one to act on one of its connections.
    Request {
        /// Chosen by the caller; comes back in the reply.
        correlation: u64,
        /// The caller's tag: its inbox gets the reply.
        reply_to: NodeTag,
        /// What to do.
        operation: Operation,
        /// The connection, which this node owns.
        connection_id: ConnectionId,
        /// The message to queue, for [`Operation::Post`].
        payload: Bytes,
    },
    /// The answer to a request this node sent.
    Reply {
        /// The request's correlation number.
        correlation: u64,
        /// What happened.
        outcome: Outcome,
    },
    /// A node's check that its own subscription works.
    Probe,
}

/// An `@connections` operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Operation {
    /// `PostToConnection`.
    Post,
    /// `GetConnection`.
    Get,
    /// `DeleteConnection`.
    Delete,
}

/// What the owning node did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Queued (post) or closing (delete).
    Done,
    /// The connection is not open on the owner.
    Gone,
    /// The connection's outbound queue is full.
    QueueFull,
    /// The connection's facts (get).
    Snapshot(ConnectionSnapshot),
}

impl Message {
    /// The message as published.
    pub(super) fn encode(&self) -> Bytes {
        match self {
            Message::Request {
                correlation,
                reply_to,
                operation,
                connection_id,
                payload,
            } => {
                let mut bytes = BytesMut::with_capacity(28 + payload.len());
                bytes.put_u8(b'Q');
                bytes.put_u8(match operation {
                    Operation::Post => b'P',
                    Operation::Get => b'G',
                    Operation::Delete => b'D',
                });
                bytes.put_u16(reply_to.0);
                bytes.put_u64(*correlation);
                bytes.put_slice(connection_id.as_str().as_bytes());
                bytes.put_slice(payload);
                bytes.freeze()
            }
            Message::Reply {
                correlation,
                outcome,
            } => {
                let mut bytes = BytesMut::with_capacity(64);
                bytes.put_u8(b'R');
                bytes.put_u64(*correlation);
                match outcome {
                    Outcome::Done => bytes.put_u8(b'0'),
                    Outcome::Gone => bytes.put_u8(b'1'),
                    Outcome::QueueFull => bytes.put_u8(b'2'),
                    Outcome::Snapshot(snapshot) => {
                        bytes.put_u8(b'3');
                        let json = serde_json::to_vec(snapshot)
                            .expect("a snapshot of strings and integers serializes");
                        bytes.put_slice(&json);
                    }
                }
                bytes.freeze()
            }
            Message::Probe => Bytes::from_static(b"P"),
        }
    }

    /// Reads a message; `None` for anything malformed (logged by the caller).
    pub(super) fn decode(bytes: Bytes) -> Option<Message> {
        match bytes.first()? {
            b'Q' => {
                let header = 1 + 1 + 2 + 8;
                if bytes.len() < header + ID_LENGTH {
                    return None;
                }
                let operation = match bytes[1] {
                    b'P' => Operation::Post,
                    b'G' => Operation::Get,
                    b'D' => Operation::Delete,
                    _ => return None,
                };
                let reply_to = NodeTag(u16::from_be_bytes([bytes[2], bytes[3]]));
                let correlation = u64::from_be_bytes(bytes[4..12].try_into().ok()?);
                let id = std::str::from_utf8(&bytes[header..header + ID_LENGTH]).ok()?;
                let connection_id = ConnectionId::parse(id).ok()?;
                Some(Message::Request {
                    correlation,
                    reply_to,
                    operation,
                    connection_id,
                    payload: bytes.slice(header + ID_LENGTH..),
                })
            }
            b'R' => {
                if bytes.len() < 10 {
                    return None;
                }
                let correlation = u64::from_be_bytes(bytes[1..9].try_into().ok()?);
                let outcome = match bytes[9] {
                    b'0' => Outcome::Done,
                    b'1' => Outcome::Gone,
                    b'2' => Outcome::QueueFull,
                    b'3' => Outcome::Snapshot(serde_json::from_slice(&bytes[10..]).ok()?),
                    _ => return None,
                };
                Some(Message::Reply {
                    correlation,
                    outcome,
                })
            }
            b'P' => Some(Message::Probe),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(message: Message) {
        assert_eq!(Message::decode(message.encode()), Some(message));
    }

    #[test]
    fn messages_round_trip() {
        let connection_id = ConnectionId::parse("BFaT_fALIAMCKug=").unwrap();
        for operation in [Operation::Post, Operation::Get, Operation::Delete] {
            check(Message::Request {
                correlation: 7,
                reply_to: NodeTag(0xbeef),
                operation,
                connection_id: connection_id.clone(),
                payload: Bytes::from_static(b"\x00\xffbinary or text"),
            });
        }
        for outcome in [
            Outcome::Done,
            Outcome::Gone,
            Outcome::QueueFull,
            Outcome::Snapshot(ConnectionSnapshot {
                connected_at: 1,
                last_active_at: 2,
                source_ip: "127.0.0.1".into(),
                user_agent: None,
            }),
        ] {
            check(Message::Reply {
                correlation: u64::MAX,
                outcome,
            });
        }
        check(Message::Probe);
    }

    #[test]
    fn malformed_messages_are_rejected() {
        for bytes in [
            &b""[..],
            b"Q",
            b"QX\x00\x00",
            b"R\x00",
            b"R\x00\x00\x00\x00\x00\x00\x00\x00\x09",
            b"Z",
        ] {
            assert_eq!(
                Message::decode(Bytes::copy_from_slice(bytes)),
                None,
                "{bytes:?}"
            );
        }
    }
}
