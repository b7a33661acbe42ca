//! The Lua scripts that make multi-key decisions atomic: joining with a node tag, the
//! heartbeat, routing a request to a live node, taking over a dead node's connections,
//! deciding who delivers an ended connection's `$disconnect` and forgetting where a moved
//! connection went; and counting an API key's use against its quota.
//!
//! Every script touches only keys of one node (one hash tag), so each runs on one shard of a
//! Redis Cluster. Scripts run by `EVALSHA`, falling back to `EVAL` once per Redis (the `redis`
//! crate's `Script` does this), so the text crosses the network only after a Redis restart.

use std::sync::LazyLock;

use redis::Script;

/// Claims a tag. KEYS: node, owner, connections, reaped. ARGV: instance, ttl ms.
///
/// Returns 1 when the tag is now this instance's (fresh, or its own again after an outage),
/// 0 when another live node holds it or a dead node's connections under it still await a
/// take-over, -1 when survivors took this instance's connections over (it was cut off longer
/// than `node_timeout`) and it must not come back under this tag.
pub(super) static JOIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if current then
  if current == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
  end
  return 0
end
if redis.call('GET', KEYS[4]) == ARGV[1] then
  return -1
end
local owner = redis.call('GET', KEYS[2])
if owner and owner ~= ARGV[1] and redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[1])
return 1
",
    )
});

/// Renews liveness and checks the node's own subscription. KEYS: node. ARGV: instance, ttl
/// ms, inbox channel, probe message, publish command (`PUBLISH` or `SPUBLISH`).
///
/// Returns `{1, receivers}` when renewed (receivers: subscribers of the inbox, 0 meaning this
/// node's subscription is lost), `{-1, 0}` when the node key is gone (Redis lost it, or it
/// expired while the node was cut off), `{-2, 0}` when another instance holds the tag.
pub(super) static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if not current then
  return {-1, 0}
end
if current ~= ARGV[1] then
  return {-2, 0}
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, redis.call(ARGV[5], ARGV[3], ARGV[4])}
",
    )
});

/// Publishes a request to a node if it is alive. KEYS: the target's node key. ARGV: its inbox
/// channel, the message, the publish command.
///
/// Returns -1 when the node is dead or unknown (no liveness key), otherwise the number of
/// subscribers that received the message (0: alive but not listening right now).
pub(super) static ROUTE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
return redis.call(ARGV[3], ARGV[1], ARGV[2])
",
    )
});

/// Takes over up to a batch of a dead node's connections. KEYS: node, owner, connections,
/// reaped, claimed. ARGV: batch size, how long the reaped marker and the claimed ids live in ms.
///
/// Returns `{0}` when the node is alive, `{2}` when it has no connections left (its owner
/// record is then removed), or `{1, id, record, id, record, ...}` with the connections now
/// claimed by the caller alone: they are removed in the same step, so no two survivors ever
/// receive the same connection, and their ids are added to the claimed set, so the node itself
/// (if it was only cut off) finds them there when they end ([`RELEASE`]).
pub(super) static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0}
end
local owner = redis.call('GET', KEYS[2])
if owner then
  redis.call('SET', KEYS[4], owner, 'PX', ARGV[2])
end
local entries = redis.call('HRANDFIELD', KEYS[3], ARGV[1], 'WITHVALUES')
if #entries == 0 then
  redis.call('DEL', KEYS[2])
  return {2}
end
for index = 1, #entries, 2 do
  redis.call('HDEL', KEYS[3], entries[index])
  redis.call('SADD', KEYS[5], entries[index])
end
redis.call('PEXPIRE', KEYS[5], ARGV[2])
return {1, unpack(entries)}
",
    )
});

/// Decides who delivers the `$disconnect` of a connection that ended on its own node. KEYS:
/// connections, claimed (of the connection's tag). ARGV: the connection id.
///
/// Returns 0 when survivors took the connection over (they delivered its `$disconnect`), or 1
/// after removing its record, in the same step: from then on no survivor can claim it, so the
/// node delivers. Whoever removes the record (this script or [`CLAIM`]) delivers, exactly once.
pub(super) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
",
    )
});

/// Removes a node that leaves gracefully, if the tag is still its own. KEYS: node, owner,
/// connections. ARGV: instance.
pub(super) static LEAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return 1
",
    )
});

/// Forgets where a connection moved (`[resume]`) if it still names this node: it may have
/// moved on since, and the next node's record must stay. KEYS: the moved key. ARGV: this
/// node's tag.
pub(super) static FORGET_MOVED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// Counts one use of an API key if its quota allows it. KEYS: the usage key. ARGV: the limit,
/// the expiry in epoch seconds.
///
/// Returns the uses counted in the period, this one included, or `-(uses)-1` when the limit
/// was already reached (the use is not counted).
pub(super) static COUNT_USAGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= tonumber(ARGV[1]) then
  return -used - 1
end
used = redis.call('INCR', KEYS[1])
if used == 1 then
  redis.call('EXPIREAT', KEYS[1], ARGV[2])
end
return used
",
    )
});
