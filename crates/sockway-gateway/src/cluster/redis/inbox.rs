//! The subscription actor: it owns the stream of RESP3 pushes from Redis and acts on each
//! message of this node's inbox channel, in the order Redis delivered them.
//!
//! A request for this node's connections (a post, a membership change, a broadcast to its
//! members, a page of a list) is served from the registry at once by
//! [`apply`](crate::cluster::command::apply) (queueing into a mailbox never waits), so
//! messages to one connection keep the order in which the caller published them; only the
//! reply's publish runs in the background, a bounded number at a time. A reply completes the
//! waiting call. A `Disconnection` notice means the subscription is gone until the heartbeat
//! restores it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::Inner;
use super::keys::NodeTag;
use super::wire::{Message, Refusal};
use crate::cluster::ClusterError;
use crate::cluster::command::{HandOverAnswer, Outcome, Request, Target, apply, hand_over, post};
use crate::metrics::RedisOperation;

/// Replies being published at once; past this the actor waits for one before reading on.
const MAX_REPLIES_IN_FLIGHT: usize = 256;

/// Runs until `stop` is cancelled or the connection is gone.
pub(super) async fn run(
    inner: Arc<Inner>,
    mut pushes: mpsc::Receiver<PushInfo>,
    stop: CancellationToken,
) {
    let mut replies = JoinSet::new();
    loop {
        let push = tokio::select! {
            _ = stop.cancelled() => break,
            Some(_) = replies.join_next(), if !replies.is_empty() => continue,
            push = pushes.recv() => match push {
                Some(push) => push,
                None => break,
            },
        };
        match push.kind {
            PushKind::Message | PushKind::SMessage => {
                let Some(message) = payload(push.data).and_then(Message::decode) else {
                    debug!("ignoring a malformed message on the inbox channel");
                    continue;
                };
                handle(&inner, message, &mut replies).await;
            }
            PushKind::Disconnection => {
                inner.subscribed.store(false, Ordering::Release);
            }
            PushKind::Subscribe | PushKind::SSubscribe => {
                inner.subscribed.store(true, Ordering::Release);
            }
            _ => {}
        }
    }
    replies.shutdown().await;
}

/// The message bytes of a `message`/`smessage` push: `[channel, payload]`.
fn payload(data: Vec<Value>) -> Option<Bytes> {
    match data.into_iter().nth(1)? {
        Value::BulkString(bytes) => Some(Bytes::from(bytes)),
        _ => None,
    }
}

async fn handle(inner: &Arc<Inner>, message: Message, replies: &mut JoinSet<()>) {
    match message {
        Message::Request {
            correlation,
            reply_to,
            request,
        } => {
            if replies.len() >= MAX_REPLIES_IN_FLIGHT {
                replies.join_next().await;
            }
            // A hand-over waits for the connection's task; its reply is published once the
            // task answered, the next messages are served meanwhile.
            if let Request::HandOver {
                connection_id,
                ticket,
                principal,
            } = request
            {
                // It moved on from here: the caller asks its new node.
                let moved_to = match inner.registry.get(&connection_id) {
                    Some(_) => None,
                    None => inner.moved_out_ids().get(&connection_id),
                };
                let answer = hand_over(&inner.registry, &connection_id, &ticket, *principal);
                let inner = inner.clone();
                replies.spawn(async move {
                    let answer = match (moved_to, answer) {
                        (Some(tag), _) => Err(Refusal::Moved(tag.0)),
                        (None, Ok(receiver)) => {
                            match receiver.await.unwrap_or(HandOverAnswer::Unknown) {
                                // The second step comes back here.
                                HandOverAnswer::Moved(mut moved) => {
                                    moved.node = inner.tag().0;
                                    Ok(Outcome::HandOver(HandOverAnswer::Moved(moved)))
                                }
                                other => Ok(Outcome::HandOver(other)),
                            }
                        }
                        (None, Err(answer)) => Ok(Outcome::HandOver(answer)),
                    };
                    let reply = Message::Reply {
                        correlation,
                        answer,
                    }
                    .encode();
                    publish_reply(&inner, reply_to, reply).await;
                });
                return;
            }
            let target = match request.target() {
                Target::Connection(connection_id) => Some(connection_id.clone()),
                Target::EveryNode => None,
            };
            if let Request::CompleteHandOver { connection_id, .. } = &request {
                // Before the mailbox closes: a post served after it is sent on to the new node.
                inner
                    .moved_out_ids()
                    .insert(connection_id.clone(), reply_to);
            }
            // Served at once, before the next message is read: this keeps the caller's order.
            // `[resume]`: a post queued for a suspended connection is also kept in Redis before
            // it is answered.
            let served = match request {
                Request::Post {
                    connection_id,
                    payload,
                } => match post(&inner.registry, connection_id.clone(), payload.clone()) {
                    Ok(Some(generation)) => {
                        let inner = inner.clone();
                        replies.spawn(async move {
                            inner.append_own(&connection_id, generation, &payload).await;
                            let reply = Message::Reply {
                                correlation,
                                answer: Ok(Outcome::Done),
                            }
                            .encode();
                            publish_reply(&inner, reply_to, reply).await;
                        });
                        return;
                    }
                    Ok(None) => Ok(Outcome::Done),
                    Err(error) => Err(error),
                },
                other => apply(&inner.registry, other),
            };
            let answer = served.map_err(|error| {
                // A connection that moved away (`[resume]`): the caller asks its new node.
                match (&error, &target) {
                    (ClusterError::Gone(_), Some(connection_id)) => {
                        match inner.moved_out_ids().get(connection_id) {
                            Some(tag) => Refusal::Moved(tag.0),
                            None => Refusal::Gone,
                        }
                    }
                    _ => Refusal::from_error(&error),
                }
            });
            let reply = Message::Reply {
                correlation,
                answer,
            }
            .encode();
            let inner = inner.clone();
            replies.spawn(async move { publish_reply(&inner, reply_to, reply).await });
        }
        Message::Reply {
            correlation,
            answer,
        } => inner.complete(correlation, answer),
        Message::Probe => {}
    }
}

/// Publishes a reply to the node tagged `reply_to`.
async fn publish_reply(inner: &Inner, reply_to: NodeTag, reply: Bytes) {
    let mut connection = inner.connection.clone();
    let mut command = redis::cmd(connection.publish_command());
    command.arg(reply_to.inbox_channel()).arg(reply.as_ref());
    let publish = command.query_async::<i64>(&mut connection);
    let publish = inner.timed(RedisOperation::Reply, publish);
    match tokio::time::timeout(inner.operation_timeout, publish).await {
        Ok(Ok(_)) => {}
        // The caller answers 504 after its timeout; nothing else to do here.
        Ok(Err(error)) => debug!(error = %error, "cannot publish a reply"),
        Err(_) => debug!("publishing a reply timed out"),
    }
}
