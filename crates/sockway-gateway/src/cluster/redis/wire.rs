//! The messages nodes exchange on their inbox channels, as bytes.
//!
//! A request names what to do, the caller's tag (where the reply goes) and a correlation number
//! the caller chose; the reply carries the correlation number back. Payloads stay raw bytes (a
//! binary `@connections` post must not be re-encoded), so the format is a fixed header plus
//! fields rather than JSON:
//!
//! - request: `Q`, the request kind (one byte), reply tag (u16 BE), correlation (u64 BE), then
//!   per kind: `P` post: the 16-character connection id and the payload; `G` get, `D` delete,
//!   `O` groups of: the id; `J` join, `L` leave: the id and the group name; `B` broadcast: the
//!   group name's length (u8, 0 for every connection), the name, the payload; `I` list: the
//!   page size (u16 BE), the id to start after (a flag byte `0`/`1`, then the id), the group
//!   name's length (u8, 0 for every connection) and the name;
//! - reply: `R`, correlation (u64 BE), outcome (`0` done, `1` gone, `2` queue full, `3`
//!   snapshot, `4` too many groups, `5` groups, `6` tally, `7` page), then for a snapshot, a
//!   group list or a page its JSON, for a tally two u64 BE counts;
//! - probe: `P`, published by a node to its own inbox to check its subscription.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use sockway_protocol::group::GroupName;
use sockway_protocol::id::{ConnectionId, ID_LENGTH};

use super::keys::NodeTag;
use crate::cluster::{ConnectionSnapshot, ListedConnection, Tally};

/// One message on an inbox channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Message {
    /// Another node asks this one to act on its connections.
    Request {
        /// Chosen by the caller; comes back in the reply.
        correlation: u64,
        /// The caller's tag: its inbox gets the reply.
        reply_to: NodeTag,
        /// What to do.
        request: Request,
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

/// What a node is asked to do with its own connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Request {
    /// `PostToConnection`.
    Post {
        /// The connection, which the receiving node owns.
        connection_id: ConnectionId,
        /// The message to queue.
        payload: Bytes,
    },
    /// `GetConnection`.
    Get {
        /// The connection.
        connection_id: ConnectionId,
    },
    /// `DeleteConnection`.
    Delete {
        /// The connection.
        connection_id: ConnectionId,
    },
    /// Add the connection to a group.
    Join {
        /// The connection.
        connection_id: ConnectionId,
        /// The group.
        group: GroupName,
    },
    /// Take the connection out of a group.
    Leave {
        /// The connection.
        connection_id: ConnectionId,
        /// The group.
        group: GroupName,
    },
    /// Report the connection's groups.
    Groups {
        /// The connection.
        connection_id: ConnectionId,
    },
    /// Queue a message for the node's members of a group, or all its connections.
    Broadcast {
        /// The group; `None` for every connection.
        group: Option<GroupName>,
        /// The message.
        payload: Bytes,
    },
    /// Report a page of the node's connections, in id order.
    List {
        /// The group; `None` for every connection.
        group: Option<GroupName>,
        /// Start after this id.
        after: Option<ConnectionId>,
        /// At most this many.
        limit: u16,
    },
}

/// What the owning node did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Queued (post), closing (delete), or the membership changed (join, leave).
    Done,
    /// The connection is not open on the owner.
    Gone,
    /// The connection's outbound queue is full.
    QueueFull,
    /// The connection's facts (get).
    Snapshot(ConnectionSnapshot),
    /// The connection is in as many groups as it may be (join).
    TooManyGroups,
    /// The connection's groups.
    Groups(Vec<GroupName>),
    /// What a broadcast did on the node.
    Tally(Tally),
    /// A page of the node's connections.
    Page {
        /// The connections.
        items: Vec<ListedConnection>,
        /// Whether the node has more after these.
        more: bool,
    },
}

/// The JSON of [`Outcome::Page`], as written.
#[derive(Serialize)]
struct PageOut<'a> {
    items: &'a [ListedConnection],
    more: bool,
}

/// The JSON of [`Outcome::Page`], as read.
#[derive(Deserialize)]
struct PageIn {
    items: Vec<ListedConnection>,
    more: bool,
}

impl Message {
    /// The message as published.
    pub(super) fn encode(&self) -> Bytes {
        match self {
            Message::Request {
                correlation,
                reply_to,
                request,
            } => {
                let mut bytes = BytesMut::with_capacity(32 + request.payload_len());
                bytes.put_u8(b'Q');
                bytes.put_u8(request.kind());
                bytes.put_u16(reply_to.0);
                bytes.put_u64(*correlation);
                request.encode_fields(&mut bytes);
                bytes.freeze()
            }
            Message::Reply {
                correlation,
                outcome,
            } => {
                let mut bytes = BytesMut::with_capacity(64);
                bytes.put_u8(b'R');
                bytes.put_u64(*correlation);
                outcome.encode(&mut bytes);
                bytes.freeze()
            }
            Message::Probe => Bytes::from_static(b"P"),
        }
    }

    /// Reads a message; `None` for anything malformed (logged by the caller).
    pub(super) fn decode(mut bytes: Bytes) -> Option<Message> {
        match take_u8(&mut bytes)? {
            b'Q' => {
                let kind = take_u8(&mut bytes)?;
                let reply_to = NodeTag(take_u16(&mut bytes)?);
                let correlation = take_u64(&mut bytes)?;
                let request = Request::decode_fields(kind, bytes)?;
                Some(Message::Request {
                    correlation,
                    reply_to,
                    request,
                })
            }
            b'R' => {
                let correlation = take_u64(&mut bytes)?;
                let outcome = Outcome::decode(bytes)?;
                Some(Message::Reply {
                    correlation,
                    outcome,
                })
            }
            b'P' if bytes.is_empty() => Some(Message::Probe),
            _ => None,
        }
    }
}

impl Request {
    fn kind(&self) -> u8 {
        match self {
            Request::Post { .. } => b'P',
            Request::Get { .. } => b'G',
            Request::Delete { .. } => b'D',
            Request::Join { .. } => b'J',
            Request::Leave { .. } => b'L',
            Request::Groups { .. } => b'O',
            Request::Broadcast { .. } => b'B',
            Request::List { .. } => b'I',
        }
    }

    fn payload_len(&self) -> usize {
        match self {
            Request::Post { payload, .. } | Request::Broadcast { payload, .. } => payload.len(),
            _ => 0,
        }
    }

    fn encode_fields(&self, bytes: &mut BytesMut) {
        match self {
            Request::Post {
                connection_id,
                payload,
            } => {
                bytes.put_slice(connection_id.as_str().as_bytes());
                bytes.put_slice(payload);
            }
            Request::Get { connection_id }
            | Request::Delete { connection_id }
            | Request::Groups { connection_id } => {
                bytes.put_slice(connection_id.as_str().as_bytes());
            }
            Request::Join {
                connection_id,
                group,
            }
            | Request::Leave {
                connection_id,
                group,
            } => {
                bytes.put_slice(connection_id.as_str().as_bytes());
                bytes.put_slice(group.as_str().as_bytes());
            }
            Request::Broadcast { group, payload } => {
                put_group(bytes, group.as_ref());
                bytes.put_slice(payload);
            }
            Request::List {
                group,
                after,
                limit,
            } => {
                bytes.put_u16(*limit);
                match after {
                    Some(after) => {
                        bytes.put_u8(1);
                        bytes.put_slice(after.as_str().as_bytes());
                    }
                    None => bytes.put_u8(0),
                }
                put_group(bytes, group.as_ref());
            }
        }
    }

    fn decode_fields(kind: u8, mut bytes: Bytes) -> Option<Request> {
        Some(match kind {
            b'P' => Request::Post {
                connection_id: take_id(&mut bytes)?,
                payload: bytes,
            },
            b'G' => Request::Get {
                connection_id: take_last_id(bytes)?,
            },
            b'D' => Request::Delete {
                connection_id: take_last_id(bytes)?,
            },
            b'O' => Request::Groups {
                connection_id: take_last_id(bytes)?,
            },
            b'J' | b'L' => {
                let connection_id = take_id(&mut bytes)?;
                let group = GroupName::parse(std::str::from_utf8(&bytes).ok()?).ok()?;
                if kind == b'J' {
                    Request::Join {
                        connection_id,
                        group,
                    }
                } else {
                    Request::Leave {
                        connection_id,
                        group,
                    }
                }
            }
            b'B' => Request::Broadcast {
                group: take_group(&mut bytes)?,
                payload: bytes,
            },
            b'I' => {
                let limit = take_u16(&mut bytes)?;
                let after = match take_u8(&mut bytes)? {
                    0 => None,
                    1 => Some(take_id(&mut bytes)?),
                    _ => return None,
                };
                let group = take_group(&mut bytes)?;
                if !bytes.is_empty() {
                    return None;
                }
                Request::List {
                    group,
                    after,
                    limit,
                }
            }
            _ => return None,
        })
    }
}

impl Outcome {
    fn encode(&self, bytes: &mut BytesMut) {
        match self {
            Outcome::Done => bytes.put_u8(b'0'),
            Outcome::Gone => bytes.put_u8(b'1'),
            Outcome::QueueFull => bytes.put_u8(b'2'),
            Outcome::Snapshot(snapshot) => {
                bytes.put_u8(b'3');
                put_json(bytes, snapshot);
            }
            Outcome::TooManyGroups => bytes.put_u8(b'4'),
            Outcome::Groups(groups) => {
                bytes.put_u8(b'5');
                put_json(bytes, groups);
            }
            Outcome::Tally(tally) => {
                bytes.put_u8(b'6');
                bytes.put_u64(tally.delivered);
                bytes.put_u64(tally.dropped);
            }
            Outcome::Page { items, more } => {
                bytes.put_u8(b'7');
                put_json(bytes, &PageOut { items, more: *more });
            }
        }
    }

    fn decode(mut bytes: Bytes) -> Option<Outcome> {
        let outcome = match take_u8(&mut bytes)? {
            b'0' => Outcome::Done,
            b'1' => Outcome::Gone,
            b'2' => Outcome::QueueFull,
            b'3' => return Some(Outcome::Snapshot(serde_json::from_slice(&bytes).ok()?)),
            b'4' => Outcome::TooManyGroups,
            b'5' => {
                let names: Vec<String> = serde_json::from_slice(&bytes).ok()?;
                let groups = names
                    .iter()
                    .map(|name| GroupName::parse(name).ok())
                    .collect::<Option<Vec<_>>>()?;
                return Some(Outcome::Groups(groups));
            }
            b'6' => Outcome::Tally(Tally {
                delivered: take_u64(&mut bytes)?,
                dropped: take_u64(&mut bytes)?,
            }),
            b'7' => {
                let page: PageIn = serde_json::from_slice(&bytes).ok()?;
                return Some(Outcome::Page {
                    items: page.items,
                    more: page.more,
                });
            }
            _ => return None,
        };
        bytes.is_empty().then_some(outcome)
    }
}

fn put_json<T: Serialize>(bytes: &mut BytesMut, value: &T) {
    let json = serde_json::to_vec(value).expect("strings, integers and lists serialize");
    bytes.put_slice(&json);
}

fn put_group(bytes: &mut BytesMut, group: Option<&GroupName>) {
    let name = group.map_or("", GroupName::as_str);
    let length = u8::try_from(name.len()).expect("group names are at most 128 bytes");
    bytes.put_u8(length);
    bytes.put_slice(name.as_bytes());
}

fn take_u8(bytes: &mut Bytes) -> Option<u8> {
    (bytes.remaining() >= 1).then(|| bytes.get_u8())
}

fn take_u16(bytes: &mut Bytes) -> Option<u16> {
    (bytes.remaining() >= 2).then(|| bytes.get_u16())
}

fn take_u64(bytes: &mut Bytes) -> Option<u64> {
    (bytes.remaining() >= 8).then(|| bytes.get_u64())
}

fn take_id(bytes: &mut Bytes) -> Option<ConnectionId> {
    if bytes.len() < ID_LENGTH {
        return None;
    }
    let id = bytes.split_to(ID_LENGTH);
    ConnectionId::parse(std::str::from_utf8(&id).ok()?).ok()
}

/// An id that must be all that is left.
fn take_last_id(mut bytes: Bytes) -> Option<ConnectionId> {
    let id = take_id(&mut bytes)?;
    bytes.is_empty().then_some(id)
}

/// A length-prefixed group name; `Some(None)` for length 0 (every connection).
fn take_group(bytes: &mut Bytes) -> Option<Option<GroupName>> {
    let length = usize::from(take_u8(bytes)?);
    if length == 0 {
        return Some(None);
    }
    if bytes.len() < length {
        return None;
    }
    let name = bytes.split_to(length);
    Some(Some(
        GroupName::parse(std::str::from_utf8(&name).ok()?).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(message: Message) {
        assert_eq!(Message::decode(message.encode()), Some(message));
    }

    fn request(request: Request) {
        check(Message::Request {
            correlation: 7,
            reply_to: NodeTag(0xbeef),
            request,
        });
    }

    #[test]
    fn messages_round_trip() {
        let connection_id = ConnectionId::parse("BFaT_fALIAMCKug=").unwrap();
        let group = GroupName::parse("room:1").unwrap();
        let payload = Bytes::from_static(b"\x00\xffbinary or text");
        request(Request::Post {
            connection_id: connection_id.clone(),
            payload: payload.clone(),
        });
        request(Request::Get {
            connection_id: connection_id.clone(),
        });
        request(Request::Delete {
            connection_id: connection_id.clone(),
        });
        request(Request::Groups {
            connection_id: connection_id.clone(),
        });
        request(Request::Join {
            connection_id: connection_id.clone(),
            group: group.clone(),
        });
        request(Request::Leave {
            connection_id: connection_id.clone(),
            group: group.clone(),
        });
        for target in [None, Some(group.clone())] {
            request(Request::Broadcast {
                group: target.clone(),
                payload: payload.clone(),
            });
            for after in [None, Some(connection_id.clone())] {
                request(Request::List {
                    group: target.clone(),
                    after,
                    limit: 1000,
                });
            }
        }
        let snapshot = ConnectionSnapshot {
            connected_at: 1,
            last_active_at: 2,
            source_ip: "127.0.0.1".into(),
            user_agent: None,
            groups: vec!["room:1".into()],
        };
        for outcome in [
            Outcome::Done,
            Outcome::Gone,
            Outcome::QueueFull,
            Outcome::TooManyGroups,
            Outcome::Snapshot(snapshot.clone()),
            Outcome::Groups(vec![group.clone()]),
            Outcome::Groups(Vec::new()),
            Outcome::Tally(Tally {
                delivered: 19_000,
                dropped: 3,
            }),
            Outcome::Page {
                items: vec![ListedConnection {
                    connection_id: connection_id.clone(),
                    snapshot,
                }],
                more: true,
            },
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
            b"QG\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00BFaT_fALIAMCKug=extra",
            b"QJ\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00BFaT_fALIAMCKug=bad/group",
            b"QB\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x09short",
            b"R\x00",
            b"R\x00\x00\x00\x00\x00\x00\x00\x00\x09",
            b"R\x00\x00\x00\x00\x00\x00\x00\x000trailing",
            b"R\x00\x00\x00\x00\x00\x00\x00\x006\x00",
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
