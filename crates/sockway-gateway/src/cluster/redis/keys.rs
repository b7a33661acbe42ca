//! Every Redis key and channel name sockway uses, and the node tag they are built from. No other
//! module spells a key; `docs/cluster.md` documents each one.
//!
//! Keys of one node share the hash tag `{TAG}` (the node tag in hex), so on a Redis Cluster
//! they live in one slot: the Lua scripts that touch several of them stay single-slot, and the
//! node's inbox channel (a sharded channel) lives on the same shard as its liveness key.

use sockway_protocol::id::{ConnectionId, ID_BYTES};

/// The set of node tags that have joined and not yet left or been taken over.
pub(super) const DIRECTORY: &str = "sockway:nodes";

/// `sockway:usage:{KEY_ID}:{PERIOD}`: the uses of an API key in one quota period (e.g.
/// `DAY:2026-11-28`), an integer with an expiry after the period ends. The key id is the hash
/// tag, so one key's counters share a slot on a Redis Cluster.
pub(super) fn usage_key(key_id: &str, period: &str) -> String {
    format!("sockway:usage:{{{key_id}}}:{period}")
}

/// A node's 16-bit tag: claimed in Redis at startup and written into the first two bytes of
/// every connection id the node assigns, so any node can tell a connection's owner without a
/// lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct NodeTag(pub(super) u16);

impl NodeTag {
    /// The tag of the node that assigned `id`.
    pub(super) fn of(id: &ConnectionId) -> NodeTag {
        let bytes = id.to_bytes();
        NodeTag(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    /// A connection id carrying this tag and 72 random bits.
    pub(super) fn connection_id(self, random: [u8; ID_BYTES - 2]) -> ConnectionId {
        let mut bytes = [0u8; ID_BYTES];
        bytes[..2].copy_from_slice(&self.0.to_be_bytes());
        bytes[2..].copy_from_slice(&random);
        ConnectionId::from_random(bytes)
    }

    /// Parses a tag as stored in [`DIRECTORY`] (four hex digits).
    pub(super) fn parse(text: &str) -> Option<NodeTag> {
        (text.len() == 4)
            .then(|| u16::from_str_radix(text, 16).ok())
            .flatten()
            .map(NodeTag)
    }

    /// The tag as stored in [`DIRECTORY`] and inside key names.
    pub(super) fn to_hex(self) -> String {
        format!("{:04x}", self.0)
    }

    /// `sockway:{TAG}:node`: the live node's instance id, with a TTL of `node_timeout` that
    /// every heartbeat renews. Its absence means the node is dead (or never existed).
    pub(super) fn node_key(self) -> String {
        format!("sockway:{{{}}}:node", self.to_hex())
    }

    /// `sockway:{TAG}:owner`: the instance that holds the tag, without a TTL, so a survivor
    /// can still name the instance it takes over from.
    pub(super) fn owner_key(self) -> String {
        format!("sockway:{{{}}}:owner", self.to_hex())
    }

    /// `sockway:{TAG}:connections`: a hash from connection id to what its `$disconnect` event
    /// needs (JSON), one field per live connection of the node.
    pub(super) fn connections_key(self) -> String {
        format!("sockway:{{{}}}:connections", self.to_hex())
    }

    /// `sockway:{TAG}:reaped`: the instance whose connections survivors took over, so that
    /// instance, if it was only cut off, does not claim the tag again.
    pub(super) fn reaped_key(self) -> String {
        format!("sockway:{{{}}}:reaped", self.to_hex())
    }

    /// `sockway:{TAG}:claimed`: the ids of the node's connections that survivors took over
    /// (and delivered `$disconnect` for), kept as long as [`Self::reaped_key`], so the node,
    /// if it was only cut off, does not deliver a second one when they end.
    pub(super) fn claimed_key(self) -> String {
        format!("sockway:{{{}}}:claimed", self.to_hex())
    }

    /// `sockway:{TAG}:moved:{ID}`: the tag (hex) of the node a connection assigned under
    /// this tag moved to (`[resume]`), for callers whose request finds this tag's node gone.
    /// Written and removed by the node holding the connection; no TTL.
    pub(super) fn moved_key(self, id: &ConnectionId) -> String {
        format!("sockway:{{{}}}:moved:{}", self.to_hex(), id.as_str())
    }

    /// `sockway:{TAG}:suspended:{ID}`: `[resume]`, a hash with what a survivor needs to resume
    /// the suspended connection `id` held by this tag's node, or to end it (`state`, the
    /// token's `ticket`, the suspension's `gen`eration, the queue's `count` and `bytes` and
    /// their limits). Written at suspension, removed by whoever takes it (a resume, the end of
    /// the window, a `DELETE`, a post past the limits) or by the holder once the connection
    /// has a socket again; a TTL a little past the window.
    pub(super) fn suspended_key(self, id: &ConnectionId) -> String {
        format!("sockway:{{{}}}:suspended:{}", self.to_hex(), id.as_str())
    }

    /// The start of [`Self::suspended_key`], which [`scripts::CLAIM`](super::scripts::CLAIM)
    /// completes with each claimed id.
    pub(super) fn suspended_prefix(self) -> String {
        format!("sockway:{{{}}}:suspended:", self.to_hex())
    }

    /// `sockway:{TAG}:queue:{ID}:{GEN}`: `[resume]`, the messages posted to the suspended
    /// connection `id` during its suspension `GEN` (a list, oldest first; each a kind byte,
    /// `t` or `b`, then the payload), same TTL as its [`Self::suspended_key`]. This is the
    /// prefix; the scripts add the generation.
    pub(super) fn queue_prefix(self, id: &ConnectionId) -> String {
        format!("sockway:{{{}}}:queue:{}:", self.to_hex(), id.as_str())
    }

    /// `sockway:{TAG}:inbox`: the channel the node subscribes to; requests for its
    /// connections and replies to its own requests arrive on it.
    pub(super) fn inbox_channel(self) -> String {
        format!("sockway:{{{}}}:inbox", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ids_carry_the_tag_and_stay_aws_shaped() {
        for tag in [0u16, 1, 0x1234, 0xffff] {
            let id = NodeTag(tag).connection_id([0xa5; ID_BYTES - 2]);
            assert_eq!(id.as_str().len(), 16);
            assert_eq!(ConnectionId::parse(id.as_str()), Ok(id.clone()));
            assert_eq!(NodeTag::of(&id), NodeTag(tag));
        }
    }

    #[test]
    fn usage_keys_are_tagged_by_api_key() {
        assert_eq!(
            usage_key("k1a2b3c4d5", "DAY:2026-11-28"),
            "sockway:usage:{k1a2b3c4d5}:DAY:2026-11-28"
        );
    }

    #[test]
    fn keys_of_one_node_share_a_hash_tag() {
        let tag = NodeTag(0x0a1f);
        assert_eq!(tag.node_key(), "sockway:{0a1f}:node");
        assert_eq!(tag.connections_key(), "sockway:{0a1f}:connections");
        assert_eq!(tag.inbox_channel(), "sockway:{0a1f}:inbox");
        assert_eq!(tag.claimed_key(), "sockway:{0a1f}:claimed");
        let id = tag.connection_id([1; ID_BYTES - 2]);
        assert!(tag.suspended_key(&id).starts_with(&tag.suspended_prefix()));
        assert!(tag.queue_prefix(&id).starts_with("sockway:{0a1f}:queue:"));
        assert_eq!(NodeTag::parse(&tag.to_hex()), Some(tag));
        assert_eq!(NodeTag::parse("xyz"), None);
        assert_eq!(NodeTag::parse("12345"), None);
    }
}
