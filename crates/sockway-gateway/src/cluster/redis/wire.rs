//! The messages nodes exchange on their inbox channels, as bytes.
//!
//! A request carries a [`Request`], the caller's tag (where the reply goes) and a correlation
//! number the caller chose; the reply carries the correlation number back with the
//! [`Outcome`], or the [`Refusal`] the owning node decided. Both are encoded generically (compact
//! serde JSON), so a new cluster operation needs nothing here. A message payload (a post's, a
//! broadcast's) stays raw bytes after the encoded request, never inside the JSON: a binary
//! `@connections` post must not be re-encoded, and a large one is copied once, into the
//! published message.
//!
//! - request: `Q`, reply tag (u16 BE), correlation (u64 BE), the JSON's length (u32 BE), the
//!   JSON of the [`Request`] (payload left out), then the payload's bytes, if it has one;
//! - reply: `R`, correlation (u64 BE), then the JSON of the [`Answer`];
//! - probe: `P`, published by a node to its own inbox to check its subscription.
//!
//! Decoding never panics: anything malformed decodes to `None`.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use sockway_protocol::id::ConnectionId;

use super::keys::NodeTag;
use crate::cluster::ClusterError;
use crate::cluster::command::{Outcome, Request};

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
        answer: Answer,
    },
    /// A node's check that its own subscription works.
    Probe,
}

/// What the node that served a request answers: its outcome, or why it refused.
pub(super) type Answer = Result<Outcome, Refusal>;

/// A failure the serving node decided, sent back in place of an outcome. The caller turns it
/// into the [`ClusterError`] for the connection it asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Refusal {
    /// The connection is not open on the node.
    Gone,
    /// The connection's outbound queue is full.
    QueueFull,
    /// The connection is in as many groups as it may be.
    TooManyGroups,
    /// `[resume]`: the connection moved to the node with this tag; the caller asks there.
    Moved(u16),
}

/// The length of a request's fixed header: kind, reply tag, correlation and the JSON's length.
const REQUEST_HEADER: usize = 1 + 2 + 8 + 4;
/// Room reserved for a request's JSON, so that encoding one seldom grows the buffer (a post's
/// is 47 bytes, a broadcast's to the longest group name 154).
const JSON_ROOM: usize = 160;

impl Message {
    /// The message as published.
    pub(super) fn encode(&self) -> Bytes {
        match self {
            Message::Request {
                correlation,
                reply_to,
                request,
            } => {
                let payload = request.payload().map_or(&[][..], |payload| payload);
                let mut bytes = BytesMut::with_capacity(REQUEST_HEADER + JSON_ROOM + payload.len());
                bytes.put_u8(b'Q');
                bytes.put_u16(reply_to.0);
                bytes.put_u64(*correlation);
                let length_at = bytes.len();
                bytes.put_u32(0);
                put_json(&mut bytes, request);
                let length = u32::try_from(bytes.len() - REQUEST_HEADER)
                    .expect("a request's JSON is far shorter than 4 GiB");
                bytes[length_at..REQUEST_HEADER].copy_from_slice(&length.to_be_bytes());
                bytes.put_slice(payload);
                bytes.freeze()
            }
            Message::Reply {
                correlation,
                answer,
            } => {
                let mut bytes = BytesMut::with_capacity(64);
                bytes.put_u8(b'R');
                bytes.put_u64(*correlation);
                put_json(&mut bytes, answer);
                bytes.freeze()
            }
            Message::Probe => Bytes::from_static(b"P"),
        }
    }

    /// Reads a message; `None` for anything malformed (logged by the caller).
    pub(super) fn decode(mut bytes: Bytes) -> Option<Message> {
        match take_u8(&mut bytes)? {
            b'Q' => {
                let reply_to = NodeTag(take_u16(&mut bytes)?);
                let correlation = take_u64(&mut bytes)?;
                let length = usize::try_from(take_u32(&mut bytes)?).ok()?;
                if bytes.len() < length {
                    return None;
                }
                let json = bytes.split_to(length);
                let mut request: Request = serde_json::from_slice(&json).ok()?;
                // What follows the JSON is the payload, for a request that carries one.
                match request.payload_mut() {
                    Some(payload) => *payload = bytes,
                    None if bytes.is_empty() => {}
                    None => return None,
                }
                Some(Message::Request {
                    correlation,
                    reply_to,
                    request,
                })
            }
            b'R' => {
                let correlation = take_u64(&mut bytes)?;
                let answer = serde_json::from_slice(&bytes).ok()?;
                Some(Message::Reply {
                    correlation,
                    answer,
                })
            }
            b'P' if bytes.is_empty() => Some(Message::Probe),
            _ => None,
        }
    }
}

impl Refusal {
    /// The refusal that reports `error` to the caller; a failure that is not the serving
    /// node's decision reads as the connection being gone.
    pub(super) fn from_error(error: &ClusterError) -> Refusal {
        match error {
            ClusterError::QueueFull(_) => Refusal::QueueFull,
            ClusterError::TooManyGroups(_) => Refusal::TooManyGroups,
            _ => Refusal::Gone,
        }
    }

    /// The error for the caller that asked about `connection_id`.
    pub(super) fn into_error(self, connection_id: ConnectionId) -> ClusterError {
        match self {
            Refusal::Gone | Refusal::Moved(_) => ClusterError::Gone(connection_id),
            Refusal::QueueFull => ClusterError::QueueFull(connection_id),
            Refusal::TooManyGroups => ClusterError::TooManyGroups(connection_id),
        }
    }
}

/// Appends `value` as compact JSON, written straight into `bytes`.
fn put_json<T: Serialize>(bytes: &mut BytesMut, value: &T) {
    serde_json::to_writer(bytes.writer(), value)
        .expect("cluster requests and outcomes hold only strings, integers and lists");
}

fn take_u8(bytes: &mut Bytes) -> Option<u8> {
    (bytes.remaining() >= 1).then(|| bytes.get_u8())
}

fn take_u16(bytes: &mut Bytes) -> Option<u16> {
    (bytes.remaining() >= 2).then(|| bytes.get_u16())
}

fn take_u32(bytes: &mut Bytes) -> Option<u32> {
    (bytes.remaining() >= 4).then(|| bytes.get_u32())
}

fn take_u64(bytes: &mut Bytes) -> Option<u64> {
    (bytes.remaining() >= 8).then(|| bytes.get_u64())
}

#[cfg(test)]
mod tests {
    use sockway_protocol::group::GroupName;

    use super::*;
    use crate::cluster::{ConnectionSnapshot, Cursor, ListedConnection, Page, Tally};

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

    /// A request message with this JSON and these trailing bytes.
    fn raw_request(json: &str, rest: &[u8]) -> Vec<u8> {
        let mut bytes = b"Q\xbe\xef\x00\x00\x00\x00\x00\x00\x00\x07".to_vec();
        let length = u32::try_from(json.len()).unwrap();
        bytes.extend_from_slice(&length.to_be_bytes());
        bytes.extend_from_slice(json.as_bytes());
        bytes.extend_from_slice(rest);
        bytes
    }

    #[test]
    fn messages_round_trip() {
        let connection_id = ConnectionId::parse("BFaT_fALIAMCKug=").unwrap();
        let group = GroupName::parse("room:1").unwrap();
        for payload in [Bytes::from_static(b"\x00\xffbinary or text"), Bytes::new()] {
            request(Request::Post {
                connection_id: connection_id.clone(),
                payload: payload.clone(),
            });
            for target in [None, Some(group.clone())] {
                request(Request::Broadcast {
                    group: target,
                    payload: payload.clone(),
                });
            }
        }
        request(Request::Get {
            connection_id: connection_id.clone(),
        });
        request(Request::Delete {
            connection_id: connection_id.clone(),
        });
        request(Request::GroupsOf {
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
            for cursor in [
                None,
                Some(Cursor {
                    node: 0xbeef,
                    after: None,
                }),
                Some(Cursor {
                    node: 1,
                    after: Some(connection_id.clone()),
                }),
            ] {
                request(Request::List {
                    group: target.clone(),
                    cursor,
                    limit: 1000,
                });
            }
        }
        let snapshot = ConnectionSnapshot {
            connected_at: 1,
            last_active_at: 2,
            source_ip: "127.0.0.1".into(),
            user_agent: None,
            suspended: true,
            groups: vec!["room:1".into()],
        };
        for answer in [
            Ok(Outcome::Done),
            Err(Refusal::Gone),
            Err(Refusal::QueueFull),
            Err(Refusal::TooManyGroups),
            Ok(Outcome::Snapshot(snapshot.clone())),
            Ok(Outcome::Groups(vec![group.clone()])),
            Ok(Outcome::Groups(Vec::new())),
            Ok(Outcome::Tally(Tally {
                delivered: 19_000,
                dropped: 3,
            })),
            Ok(Outcome::Page(Page {
                items: vec![ListedConnection {
                    connection_id: connection_id.clone(),
                    snapshot,
                }],
                next: Some(Cursor {
                    node: 3,
                    after: Some(connection_id.clone()),
                }),
            })),
            Ok(Outcome::Page(Page {
                items: Vec::new(),
                next: None,
            })),
        ] {
            check(Message::Reply {
                correlation: u64::MAX,
                answer,
            });
        }
        check(Message::Probe);
    }

    #[test]
    fn payloads_travel_raw_after_a_compact_request() {
        let payload = Bytes::from_static(b"\x00\x01 not json \xff");
        let message = Message::Request {
            correlation: 7,
            reply_to: NodeTag(0xbeef),
            request: Request::Post {
                connection_id: ConnectionId::parse("BFaT_fALIAMCKug=").unwrap(),
                payload: payload.clone(),
            },
        };
        let encoded = message.encode();
        assert!(encoded.ends_with(&payload), "{encoded:?}");
        assert_eq!(
            encoded.as_ref(),
            raw_request(r#"{"post":{"connection_id":"BFaT_fALIAMCKug="}}"#, &payload)
        );
        let reply = Message::Reply {
            correlation: 7,
            answer: Err(Refusal::Gone),
        };
        assert_eq!(
            reply.encode().as_ref(),
            b"R\x00\x00\x00\x00\x00\x00\x00\x07{\"Err\":\"gone\"}"
        );
    }

    #[test]
    fn malformed_messages_are_rejected() {
        let post = r#"{"post":{"connection_id":"BFaT_fALIAMCKug="}}"#;
        let get = r#"{"get":{"connection_id":"BFaT_fALIAMCKug="}}"#;
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"Q".to_vec(),
            b"Q\x00\x00".to_vec(),
            b"QX\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00".to_vec(),
            // The length runs past the end.
            b"Q\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff{}".to_vec(),
            raw_request(get, b"extra"),
            raw_request(&post[..post.len() - 1], b""),
            raw_request(r#"{"get":{"connection_id":"not an id"}}"#, b""),
            raw_request(
                r#"{"join":{"connection_id":"BFaT_fALIAMCKug=","group":"bad/group"}}"#,
                b"",
            ),
            raw_request(r#"{"list":{"group":null,"cursor":null,"limit":-1}}"#, b""),
            raw_request(r#"{"unknown":{}}"#, b""),
            raw_request("\u{0}", b""),
            b"R\x00".to_vec(),
            b"R\x00\x00\x00\x00\x00\x00\x00\x00".to_vec(),
            b"R\x00\x00\x00\x00\x00\x00\x00\x00{\"Ok\":\"done\"}trailing".to_vec(),
            b"R\x00\x00\x00\x00\x00\x00\x00\x00{\"Ok\":{\"groups\":[\"a b\"]}}".to_vec(),
            b"R\x00\x00\x00\x00\x00\x00\x00\x00{\"Err\":\"teapot\"}".to_vec(),
            b"Pextra".to_vec(),
            b"Z".to_vec(),
        ];
        for bytes in cases {
            assert_eq!(
                Message::decode(Bytes::from(bytes.clone())),
                None,
                "{bytes:?}"
            );
        }
    }
}
