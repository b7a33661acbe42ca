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
use super::wire::{Message, Refusal};
use crate::cluster::command::apply;
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
            // Served at once, before the next message is read: this keeps the caller's order.
            let answer =
                apply(&inner.registry, request).map_err(|error| Refusal::from_error(&error));
            let reply = Message::Reply {
                correlation,
                answer,
            }
            .encode();
            if replies.len() >= MAX_REPLIES_IN_FLIGHT {
                replies.join_next().await;
            }
            let mut connection = inner.connection.clone();
            let inner = inner.clone();
            replies.spawn(async move {
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
            });
        }
        Message::Reply {
            correlation,
            answer,
        } => inner.complete(correlation, answer),
        Message::Probe => {}
    }
}
