//! Presence across nodes: what one node tells the others about its users ([`SharedPresence`]), the
//! hook through which [`Product`] publishes its changes and reads the other nodes' state
//! ([`PresenceShare`], implemented by the cluster over Redis), and the merged, cluster-wide reads
//! the presence API and `/health` use. In single-node mode no hook is set and every read is local.

use super::{LiveDevice, LivePresence, Product};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One node's view of one user who is present there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedPresence {
    /// `online` or `away`.
    pub status: String,
    /// Presence WebSocket connections there: (device id, connected at unix ms).
    #[serde(default)]
    pub devices: Vec<(String, i64)>,
    /// SFU rooms the user is in there.
    #[serde(default)]
    pub rooms: usize,
    /// Workspaces of those connections and rooms.
    #[serde(default)]
    pub workspaces: Vec<String>,
    /// REST-declared presence only (no connection there): present until this unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<i64>,
}

impl SharedPresence {
    /// Still present at `now_ms` (REST presence expires).
    pub fn current(&self, now_ms: i64) -> bool {
        self.until_ms.is_none_or(|u| u > now_ms)
    }
}

/// The other nodes of the cluster, as presence sees them. The sync methods only queue work (they
/// are called with presence locks released, on API paths, and must not wait for Redis).
pub trait PresenceShare: Send + Sync + 'static {
    /// `user`'s state on this node changed: publish [`Product::shared_snapshot`] of it.
    fn changed(&self, user: &str);
    /// Deliver `text` to `user`'s presence connections on the other nodes.
    fn push(&self, user: &str, text: &str);
    /// `user` typing in `conversation` until `until_ms` (None: stopped).
    fn typing(&self, conversation: &str, user: &str, until_ms: Option<i64>);
    /// `user` as each other live node sees them (nodes where they are not present give nothing).
    fn user<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Vec<SharedPresence>>;
    /// Every user present on another live node, with each node's view.
    fn all(&self) -> BoxFuture<'_, Vec<(String, SharedPresence)>>;
    /// Users typing in `conversation` on any node, with their expiry (unix ms).
    fn typing_in<'a>(&'a self, conversation: &'a str) -> BoxFuture<'a, Vec<(String, i64)>>;
}

/// `away` when any node says so (the user chose it), else `online`.
fn merged_status<'a>(mut statuses: impl Iterator<Item = &'a str>) -> &'static str {
    if statuses.any(|s| s == "away") {
        "away"
    } else {
        "online"
    }
}

impl Product {
    pub(super) fn share(&self) -> Option<std::sync::Arc<dyn PresenceShare>> {
        self.inner
            .share
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Multi-node mode: publish changes to, and read presence from, the other nodes through `share`.
    pub fn set_share(&self, share: std::sync::Arc<dyn PresenceShare>) {
        *self.inner.share.write().unwrap_or_else(|p| p.into_inner()) = Some(share);
    }

    /// Tell the other nodes that `user` changed here (no-op in single-node mode).
    pub(super) fn changed(&self, user: &str) {
        if let Some(s) = self.share() {
            s.changed(user);
        }
    }

    /// What this node tells the other nodes about `user` at `now_ms` (None: not present here).
    pub fn shared_snapshot(&self, user: &str, now_ms: i64) -> Option<SharedPresence> {
        let live = self.presence(user, now_ms);
        if live.status == "offline" {
            return None;
        }
        // Connected or in a room here; otherwise only REST-present (which expires).
        let live_here = !live.devices.is_empty() || live.rooms > 0;
        Some(SharedPresence {
            status: live.status.to_string(),
            devices: live
                .devices
                .iter()
                .map(|d| (d.id.clone(), d.connected_at_ms))
                .collect(),
            rooms: live.rooms,
            workspaces: self.workspaces_of(user),
            until_ms: if live_here {
                None
            } else {
                self.rest_until(user)
            },
        })
    }

    /// Every user present here, as [`Product::shared_snapshot`] gives them (a full resync).
    pub fn shared_snapshots(&self, now_ms: i64) -> Vec<(String, SharedPresence)> {
        let (present, _) = self.online_users(None, usize::MAX, now_ms);
        present
            .into_iter()
            .filter_map(|(u, _)| self.shared_snapshot(&u, now_ms).map(|s| (u, s)))
            .collect()
    }

    /// Presence across the cluster: this node's live state merged with every other node's.
    pub async fn presence_all(&self, user: &str, now_ms: i64) -> LivePresence {
        let mut p = self.presence(user, now_ms);
        let Some(share) = self.share() else {
            return p;
        };
        let others: Vec<SharedPresence> = share
            .user(user)
            .await
            .into_iter()
            .filter(|s| s.current(now_ms))
            .collect();
        if others.is_empty() {
            return p;
        }
        let here = (p.status != "offline").then_some(p.status);
        p.status = merged_status(
            here.into_iter()
                .chain(others.iter().map(|s| s.status.as_str())),
        );
        for s in &others {
            p.rooms += s.rooms;
            p.devices
                .extend(s.devices.iter().map(|(id, at)| LiveDevice {
                    id: id.clone(),
                    connected_at_ms: *at,
                }));
        }
        p.devices.sort_by_key(|d| d.connected_at_ms);
        p
    }

    /// Online (or away) users across the cluster, as [`Product::online_users`] gives them here.
    pub async fn online_users_all(
        &self,
        workspace: Option<&str>,
        limit: usize,
        now_ms: i64,
    ) -> (Vec<(String, &'static str)>, usize) {
        let Some(share) = self.share() else {
            return self.online_users(workspace, limit, now_ms);
        };
        let (local, _) = self.online_users(workspace, usize::MAX, now_ms);
        let mut all: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for (u, s) in &local {
            all.entry(u.clone()).or_default().push(s);
        }
        let others = share.all().await;
        for (u, s) in &others {
            if s.current(now_ms) && workspace.is_none_or(|w| s.workspaces.iter().any(|x| x == w)) {
                all.entry(u.clone()).or_default().push(&s.status);
            }
        }
        let total = all.len();
        let page = all
            .into_iter()
            .take(limit)
            .map(|(u, st)| (u, merged_status(st.into_iter())))
            .collect();
        (page, total)
    }

    pub async fn online_count_all(&self, now_ms: i64) -> usize {
        self.online_users_all(None, 0, now_ms).await.1
    }

    /// Users typing in `conversation` on any node at `now_ms`, sorted.
    pub async fn typing_users_all(&self, conversation: &str, now_ms: i64) -> Vec<String> {
        let mut users = self.typing_users(conversation, now_ms);
        if let Some(share) = self.share() {
            for (u, until) in share.typing_in(conversation).await {
                if until > now_ms && !users.contains(&u) {
                    users.push(u);
                }
            }
            users.sort();
        }
        users
    }
}
