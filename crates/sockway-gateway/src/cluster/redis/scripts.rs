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
/// reaped, claimed. ARGV: batch size, how long the reaped marker and the claimed ids live in ms,
/// the node's suspended-record prefix.
///
/// Returns `{0}` when the node is alive, `{2}` when it has no connections left (its owner
/// record is then removed), or `{1, id, record, suspended, id, record, suspended, ...}`
/// (`suspended`: the `state` of the connection's suspended record, `[resume]`, or an empty
/// string when it has none) with the connections now
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
local claimed = {1}
for index = 1, #entries, 2 do
  redis.call('HDEL', KEYS[3], entries[index])
  redis.call('SADD', KEYS[5], entries[index])
  local suspended = redis.call('HGET', ARGV[3] .. entries[index], 'state')
  claimed[#claimed + 1] = entries[index]
  claimed[#claimed + 1] = entries[index + 1]
  claimed[#claimed + 1] = suspended or ''
end
redis.call('PEXPIRE', KEYS[5], ARGV[2])
return claimed
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

/// `[resume]`: records a suspended connection for survivors, by the node holding it. KEYS: its
/// suspended record, its queue of this suspension. ARGV: generation, state, ticket (hex), ttl
/// ms, the messages already queued (count, bytes: they are in the state), the queue's limits
/// (messages, bytes).
///
/// Messages posted since the suspension began may already be in the queue ([`APPEND_OWN`]):
/// their count is kept. A record of an older suspension is replaced; one of a newer is left.
pub(super) static SUSPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = tonumber(redis.call('HGET', KEYS[1], 'gen') or '0')
if current > tonumber(ARGV[1]) then
  return 0
end
if current < tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'gen', ARGV[1])
end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'ticket', ARGV[3], 'max_count', ARGV[7], 'max_bytes', ARGV[8])
redis.call('HINCRBY', KEYS[1], 'count', ARGV[5])
redis.call('HINCRBY', KEYS[1], 'bytes', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
",
    )
});

/// `[resume]`: appends a message the holding node queued for its suspended connection, so
/// that it survives the node. KEYS: the suspended record, the queue of this suspension.
/// ARGV: generation, the encoded message, its payload's length, ttl ms.
///
/// Returns 0 (nothing written) when the record belongs to a newer suspension.
pub(super) static APPEND_OWN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = tonumber(redis.call('HGET', KEYS[1], 'gen') or '0')
if current > tonumber(ARGV[1]) then
  return 0
end
if current < tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'gen', ARGV[1])
end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('HINCRBY', KEYS[1], 'count', 1)
redis.call('HINCRBY', KEYS[1], 'bytes', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
",
    )
});

/// `[resume]`: the holder forgets its record once the connection has a socket again or ended
/// on it, if the record is still of that suspension. KEYS: the suspended record, the queue of
/// that suspension. ARGV: generation.
pub(super) static DROP_OWN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], 'gen') == ARGV[1] then
  return redis.call('DEL', KEYS[1], KEYS[2])
end
return 0
",
    )
});

/// `[resume]`: appends a message posted to a suspended connection whose node is dead, within
/// the resume limits. KEYS: the suspended record, the dead node's connections, its claimed ids.
/// ARGV: the connection id, the encoded message, its payload's length, the queue prefix, how
/// long the claimed ids live in ms.
///
/// Returns `{1}` when appended, `{0}` when there is no record (nothing to resume: the caller
/// answers 410), or `{-1, state}` when the message is past the limits: the record, its queue
/// and the connection's entry are removed in the same step, so the caller alone delivers the
/// connection's `$disconnect`.
pub(super) static APPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local f = redis.call('HMGET', KEYS[1], 'state', 'gen', 'count', 'bytes', 'max_count', 'max_bytes')
if not f[1] then
  return {0}
end
local queue = ARGV[4] .. f[2]
if tonumber(f[3] or '0') >= tonumber(f[5]) or tonumber(f[4] or '0') + tonumber(ARGV[3]) > tonumber(f[6]) then
  redis.call('DEL', KEYS[1], queue)
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('SADD', KEYS[3], ARGV[1])
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
  return {-1, f[1]}
end
redis.call('RPUSH', queue, ARGV[2])
redis.call('HINCRBY', KEYS[1], 'count', 1)
redis.call('HINCRBY', KEYS[1], 'bytes', ARGV[3])
return {1}
",
    )
});

/// `[resume]`: takes a suspended connection's record, exactly once: for a resume (with the
/// token's ticket, which must match), or to end it (an empty ticket: its window passed, or a
/// `DELETE`). KEYS: the suspended record, its node's connections, its claimed ids. ARGV: the
/// connection id, the ticket (hex) or empty, the queue prefix, how long the claimed ids live in
/// ms.
///
/// Returns `{0}` when there is nothing to take (already taken, expired, another ticket), or
/// `{1, state, {message, ...}}` after removing the record, its queue and the connection's
/// entry in its node's connections (so no survivor claims it later), recording the id among
/// the node's claimed ones (so the node, if it was only cut off, delivers no `$disconnect` for
/// it): whoever takes it resumes it or delivers its `$disconnect`.
pub(super) static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local f = redis.call('HMGET', KEYS[1], 'state', 'gen', 'ticket')
if not f[1] then
  return {0}
end
if ARGV[2] ~= '' and f[3] ~= ARGV[2] then
  return {0}
end
local queue = ARGV[3] .. f[2]
local queued = redis.call('LRANGE', queue, 0, -1)
redis.call('DEL', KEYS[1], queue)
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return {1, f[1], queued}
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
