//! The cluster's shared state in Redis: node registrations (heartbeat + expiry), room ownership
//! leases and the load every placement decision is made on. Each change that must be atomic (claim,
//! renew, release) is one Lua script, timed by Redis' own clock (`TIME`), so nodes need no clock sync.
//!
//! Keys (`P` = `[redis] prefix`):
//! - `P:node:<name>`: the node's record (JSON [`NodeRecord`]), expiring `node_ttl_ms` after its last
//!   heartbeat;
//! - `P:nodes`: sorted set of node names scored by the expiry of their record (listing without SCAN);
//! - `P:room:<room>`: the node owning the room, a lease of `node_ttl_ms` its owner renews;
//! - `P:noderooms:<name>`: the rooms a node owns or was handed (claimed for it, not opened yet);
//! - `P:sig:<name>`: the node's signal relay channel (pub/sub, `super::relay`);
//! - `P:presence:<name>`, `P:typing:<conversation>`, `P:parts:<room>`, `P:push`: the shared views of
//!   `super::shared`.

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;
use std::time::Duration;

/// What a node publishes about itself on every heartbeat.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NodeRecord {
    pub node: String,
    /// Where clients and other nodes reach its HTTP/WebSocket edge.
    pub http_url: String,
    /// The media address its ICE candidates carry (first worker's UDP port).
    pub rtc_ip: String,
    pub udp_ports: Vec<u16>,
    pub turn_udp_port: u16,
    pub rooms: u64,
    pub participants: u64,
    /// Load average over one minute divided by the number of cores (0 where unknown).
    pub cpu_load: f64,
    /// Shutting down: no new rooms are placed on it.
    pub draining: bool,
    /// Unix ms of this heartbeat (by the node's clock; informational).
    pub updated_at_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("no live node can take the room")]
    NoNode,
}

/// Heartbeat: write the record, renew the leases of the rooms open here, forget rooms handed to this
/// node that it never opened (their lease expired), drop expired nodes from the listing. Returns the
/// rooms open here that Redis says another node owns (this node was cut off for longer than the TTL).
static HEARTBEAT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('PEXPIRE', KEYS[2], ttl * 2)
local lost = {}
for i = 5, #ARGV do
  local rk = ARGV[4] .. ARGV[i]
  local cur = redis.call('GET', rk)
  if cur == false or cur == ARGV[1] then
    redis.call('SET', rk, ARGV[1], 'PX', ttl)
    redis.call('SADD', KEYS[3], ARGV[i])
  else
    table.insert(lost, ARGV[i])
  end
end
for _, r in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  if redis.call('GET', ARGV[4] .. r) ~= ARGV[1] then redis.call('SREM', KEYS[3], r) end
end
redis.call('PEXPIRE', KEYS[3], ttl)
return lost
"#,
    )
});

/// Claim: the room's owner if it has a live one; else the least-loaded live node that is not
/// draining (rooms it owns or was handed + its participants; ties go to the asking node, then by
/// name) becomes the owner, atomically.
static CLAIM: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local cur = redis.call('GET', KEYS[1])
if cur and redis.call('EXISTS', ARGV[2] .. cur) == 1 then return cur end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local best, bestload = nil, nil
for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], now, '+inf')) do
  local rec = redis.call('GET', ARGV[2] .. n)
  if rec then
    local ok, r = pcall(cjson.decode, rec)
    if ok and not r.draining then
      local load = redis.call('SCARD', ARGV[3] .. n) + (tonumber(r.participants) or 0)
      if best == nil or load < bestload or (load == bestload and n == ARGV[5]) then
        best, bestload = n, load
      end
    end
  end
end
if best == nil then return false end
redis.call('SET', KEYS[1], best, 'PX', tonumber(ARGV[1]))
redis.call('SADD', ARGV[3] .. best, ARGV[4])
redis.call('PEXPIRE', ARGV[3] .. best, tonumber(ARGV[1]))
return best
"#,
    )
});

/// Release: the room closed on its owner.
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('SREM', KEYS[2], ARGV[2])
return 1
"#,
    )
});

/// Deregister: a node shutting down removes itself at once (rooms it still owns keep their lease).
static DEREGISTER: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"#,
    )
});

/// Redis access of one node.
#[derive(Clone)]
pub struct Registry {
    con: ConnectionManager,
    prefix: String,
    node: String,
    ttl_ms: u64,
    timeout: Duration,
}

impl Registry {
    pub fn new(
        con: ConnectionManager,
        prefix: &str,
        node: &str,
        ttl_ms: u64,
        timeout: Duration,
    ) -> Self {
        Registry {
            con,
            prefix: prefix.to_string(),
            node: node.to_string(),
            ttl_ms: ttl_ms.max(1),
            timeout,
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub(super) fn key(&self, kind: &str, name: &str) -> String {
        format!("{}:{kind}:{name}", self.prefix)
    }

    pub fn nodes_key(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// The relay channel of `node`.
    pub fn channel(&self, node: &str) -> String {
        self.key("sig", node)
    }

    pub(super) fn con(&self) -> ConnectionManager {
        self.con.clone()
    }

    pub(super) fn ttl_ms(&self) -> u64 {
        self.ttl_ms
    }

    /// Names of the nodes listed (live, or expired since the last heartbeat's clean-up).
    pub(super) async fn node_names(&self) -> Result<Vec<String>, RegistryError> {
        let mut con = self.con.clone();
        self.run(
            redis::cmd("ZRANGE")
                .arg(self.nodes_key())
                .arg(0)
                .arg(-1)
                .query_async(&mut con),
        )
        .await
    }

    pub(super) async fn run<T: redis::FromRedisValue>(
        &self,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RegistryError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(RegistryError::Timeout(self.timeout)),
        }
    }

    /// Refresh this node's record and the leases of `open_rooms`; returns rooms another node owns.
    pub async fn heartbeat(
        &self,
        record: &NodeRecord,
        open_rooms: &[String],
    ) -> Result<Vec<String>, RegistryError> {
        let json = serde_json::to_string(record).unwrap_or_default();
        let mut con = self.con.clone();
        let mut inv = HEARTBEAT.key(self.key("node", &self.node));
        inv.key(self.nodes_key())
            .key(self.key("noderooms", &self.node))
            .arg(&self.node)
            .arg(json)
            .arg(self.ttl_ms)
            .arg(format!("{}:room:", self.prefix));
        for r in open_rooms {
            inv.arg(r);
        }
        self.run(inv.invoke_async(&mut con)).await
    }

    /// The node that owns `room`, claiming it for the least-loaded live node if it has none.
    pub async fn claim(&self, room: &str) -> Result<String, RegistryError> {
        let mut con = self.con.clone();
        let mut inv = CLAIM.key(self.key("room", room));
        inv.key(self.nodes_key())
            .arg(self.ttl_ms)
            .arg(format!("{}:node:", self.prefix))
            .arg(format!("{}:noderooms:", self.prefix))
            .arg(room)
            .arg(&self.node);
        let owner: Option<String> = self.run(inv.invoke_async(&mut con)).await?;
        owner.ok_or(RegistryError::NoNode)
    }

    /// The node that owns `room` now, if any (no claim).
    pub async fn owner(&self, room: &str) -> Result<Option<String>, RegistryError> {
        let mut con = self.con.clone();
        let key = self.key("room", room);
        self.run(redis::cmd("GET").arg(key).query_async(&mut con))
            .await
    }

    /// This node closed `room`.
    pub async fn release(&self, room: &str) -> Result<(), RegistryError> {
        let mut con = self.con.clone();
        let mut inv = RELEASE.key(self.key("room", room));
        inv.key(self.key("noderooms", &self.node))
            .arg(&self.node)
            .arg(room);
        let _: i64 = self.run(inv.invoke_async(&mut con)).await?;
        Ok(())
    }

    /// This node leaves the cluster (clean shutdown).
    pub async fn deregister(&self) -> Result<(), RegistryError> {
        let mut con = self.con.clone();
        let mut inv = DEREGISTER.key(self.key("node", &self.node));
        inv.key(self.nodes_key()).arg(&self.node);
        let _: i64 = self.run(inv.invoke_async(&mut con)).await?;
        Ok(())
    }

    /// Whether `node` is registered (its record has not expired).
    pub async fn alive(&self, node: &str) -> Result<bool, RegistryError> {
        let mut con = self.con.clone();
        let key = self.key("node", node);
        let n: i64 = self
            .run(redis::cmd("EXISTS").arg(key).query_async(&mut con))
            .await?;
        Ok(n == 1)
    }

    /// `node`'s record, if it is registered.
    pub async fn node_record(&self, node: &str) -> Result<Option<NodeRecord>, RegistryError> {
        let mut con = self.con.clone();
        let key = self.key("node", node);
        let rec: Option<String> = self
            .run(redis::cmd("GET").arg(key).query_async(&mut con))
            .await?;
        Ok(rec.and_then(|j| serde_json::from_str(&j).ok()))
    }

    /// Every live node's record, by name.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, RegistryError> {
        let mut con = self.con.clone();
        let names = self.node_names().await?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = names.iter().map(|n| self.key("node", n)).collect();
        let recs: Vec<Option<String>> = self
            .run(redis::cmd("MGET").arg(keys).query_async(&mut con))
            .await?;
        Ok(recs
            .into_iter()
            .flatten()
            .filter_map(|j| serde_json::from_str(&j).ok())
            .collect())
    }

    /// Publish a relay envelope on `node`'s channel; the number of subscribers that got it.
    pub async fn publish(&self, node: &str, bytes: Vec<u8>) -> Result<i64, RegistryError> {
        let mut con = self.con.clone();
        let ch = self.channel(node);
        self.run(
            redis::cmd("PUBLISH")
                .arg(ch)
                .arg(bytes)
                .query_async(&mut con),
        )
        .await
    }

    pub async fn ping(&self) -> Result<(), RegistryError> {
        let mut con = self.con.clone();
        let _: String = self.run(redis::cmd("PING").query_async(&mut con)).await?;
        Ok(())
    }
}
