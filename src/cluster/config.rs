//! `[redis]`: multi-node mode. Empty `url` (the default) is single-node mode: no Redis is used.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db` (env `PARLOR_REDIS_URL`). Set: this node joins the cluster of every
    /// node using the same Redis and `prefix`; each needs its own `server.node_name`.
    pub url: String,
    /// Prefix of every key and channel, so several clusters (or test runs) can share one Redis.
    pub prefix: String,
    /// How often this node refreshes its registration, its load and the leases of its rooms.
    pub heartbeat_ms: u64,
    /// A node that has not refreshed for this long is gone: its registration and its rooms expire,
    /// and the rooms can be claimed again by a live node. The bound on fail-over time.
    pub node_ttl_ms: u64,
    /// Timeout of one Redis command; a slower Redis counts as unavailable for that request.
    pub command_timeout_ms: u64,
    /// A call or huddle whose room no live node owns (its node died and nobody rejoined) is
    /// finished by a surviving node once it has been unowned this long. Rejoining within it
    /// continues the call on a live node.
    pub orphan_grace_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: String::new(),
            prefix: "parlor".into(),
            heartbeat_ms: 1000,
            node_ttl_ms: 5000,
            command_timeout_ms: 2000,
            orphan_grace_ms: 30_000,
        }
    }
}
