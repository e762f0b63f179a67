//! Product-side live state and background work: presence (WebSocket connections and SFU
//! participants), typing indicators, live pushes to connected users, the pluggable notification
//! sender, and (in [`events`]) the consumer of SFU events that drives call, huddle and stored room
//! status. [`call_view`] is the call as the calls API and the call webhooks show it.
//!
//! Domain code: built from the narrow dependencies it uses, never from the whole server state.

pub mod call_view;
pub mod events;
pub mod shared;

pub use events::{
    spawn_event_consumer, CallHooks, ConsumerDeps, CALL_PREFIX, HUDDLE_PREFIX, RING_SWEEP_INTERVAL,
    RING_TIMEOUT_MS,
};
pub use shared::{PresenceShare, SharedPresence};

use crate::store::{DeviceRecord, NotificationRecord, Store, StoreResult};
use futures_util::future::BoxFuture;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::mpsc;

/// How long a typing indicator lasts unless refreshed.
pub const TYPING_TTL_MS: i64 = 6_000;
/// Messages queued for one presence connection before further pushes to it are dropped.
pub const PUSH_QUEUE: usize = 256;

/// Delivers push notifications to devices. Pluggable; the default only logs.
pub trait NotificationSender: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Deliver one notification to `device` (which has a push token).
    fn send<'a>(
        &'a self,
        device: &'a DeviceRecord,
        kind: &'a str,
        payload: &'a Value,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// The default sender: writes the notification to the log.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogSender;

impl NotificationSender for LogSender {
    fn name(&self) -> &'static str {
        "log"
    }
    fn send<'a>(
        &'a self,
        device: &'a DeviceRecord,
        kind: &'a str,
        payload: &'a Value,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            tracing::info!(
                user = %device.user_id,
                device = %device.id,
                platform = %device.platform,
                kind,
                %payload,
                "push notification (log sender)"
            );
            Ok(())
        })
    }
}

/// One live presence WebSocket connection.
struct Conn {
    device_id: String,
    connected_at_ms: i64,
    workspaces: Vec<String>,
    tx: mpsc::Sender<String>,
}

#[derive(Default)]
struct UserLive {
    conns: BTreeMap<u64, Conn>,
    /// SFU rooms the user is in -> the room's workspace (huddles) if known.
    sfu_rooms: HashMap<String, Option<String>>,
    /// Cached manual status (`away`), loaded from the store when the user comes online.
    manual_status: Option<String>,
}

impl UserLive {
    fn online(&self) -> bool {
        !self.conns.is_empty() || !self.sfu_rooms.is_empty()
    }
    fn status(&self) -> &'static str {
        if !self.online() {
            "offline"
        } else if self.manual_status.as_deref() == Some("away") {
            "away"
        } else {
            "online"
        }
    }
    fn in_workspace(&self, ws: &str) -> bool {
        self.conns
            .values()
            .any(|c| c.workspaces.iter().any(|w| w == ws))
            || self.sfu_rooms.values().any(|w| w.as_deref() == Some(ws))
    }
}

/// A device currently connected for a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveDevice {
    pub id: String,
    pub connected_at_ms: i64,
}

/// A user's live presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LivePresence {
    /// `online`, `away` or `offline`.
    pub status: &'static str,
    pub devices: Vec<LiveDevice>,
    /// Number of SFU rooms the user is in.
    pub rooms: usize,
}

/// Presence a user declared with `PUT /api/presence`, without a live connection.
struct RestPresence {
    until_ms: i64,
    manual_status: Option<String>,
}

impl RestPresence {
    fn status(&self) -> &'static str {
        if self.manual_status.as_deref() == Some("away") {
            "away"
        } else {
            "online"
        }
    }
}

struct Inner {
    users: Mutex<HashMap<String, UserLive>>,
    /// REST-declared presence (user -> expiry and status); read next to the live state.
    rest: Mutex<HashMap<String, RestPresence>>,
    next_conn: std::sync::atomic::AtomicU64,
    /// conversation -> user -> expiry (unix ms).
    typing: Mutex<HashMap<String, HashMap<String, i64>>>,
    sender: RwLock<Arc<dyn NotificationSender>>,
    /// The other nodes (multi-node mode only).
    share: RwLock<Option<Arc<dyn PresenceShare>>>,
}

/// Product live state, cloneable (the server holds one).
#[derive(Clone)]
pub struct Product {
    inner: Arc<Inner>,
}

impl Default for Product {
    fn default() -> Self {
        Self::new(Arc::new(LogSender))
    }
}

/// Registration of a presence connection; unregister it with `Product::disconnect`.
pub struct ConnHandle {
    pub id: u64,
    pub user: String,
    pub rx: mpsc::Receiver<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave the maps inconsistent; keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Product {
    pub fn new(sender: Arc<dyn NotificationSender>) -> Self {
        Product {
            inner: Arc::new(Inner {
                users: Mutex::new(HashMap::new()),
                rest: Mutex::new(HashMap::new()),
                next_conn: std::sync::atomic::AtomicU64::new(1),
                typing: Mutex::new(HashMap::new()),
                sender: RwLock::new(sender),
                share: RwLock::new(None),
            }),
        }
    }

    /// Replace the notification sender (e.g. an APNs/FCM sender).
    pub fn set_sender(&self, sender: Arc<dyn NotificationSender>) {
        *self.inner.sender.write().unwrap_or_else(|p| p.into_inner()) = sender;
    }

    pub fn sender(&self) -> Arc<dyn NotificationSender> {
        self.inner
            .sender
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    // ---- presence ----

    /// Register a presence connection of `user` from `device_id`.
    pub fn connect(
        &self,
        user: &str,
        device_id: &str,
        workspaces: Vec<String>,
        manual_status: Option<String>,
        now_ms: i64,
    ) -> ConnHandle {
        let id = self
            .inner
            .next_conn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(PUSH_QUEUE);
        let mut users = lock(&self.inner.users);
        let live = users.entry(user.to_string()).or_default();
        if !live.online() {
            live.manual_status = manual_status;
        }
        live.conns.insert(
            id,
            Conn {
                device_id: device_id.to_string(),
                connected_at_ms: now_ms,
                workspaces,
                tx,
            },
        );
        drop(users);
        self.changed(user);
        ConnHandle {
            id,
            user: user.to_string(),
            rx,
        }
    }

    /// Whether removing connection `conn` and/or SFU room `room` would leave `user` offline. Lets
    /// callers record `last_seen` before the user is seen offline.
    pub fn would_go_offline(&self, user: &str, conn: Option<u64>, room: Option<&str>) -> bool {
        let users = lock(&self.inner.users);
        let Some(live) = users.get(user) else {
            return false;
        };
        let conns = live.conns.keys().filter(|c| Some(**c) != conn).count();
        let rooms = live
            .sfu_rooms
            .keys()
            .filter(|r| Some(r.as_str()) != room)
            .count();
        live.online() && conns == 0 && rooms == 0
    }

    /// Unregister a connection. Returns true when the user is now offline.
    pub fn disconnect(&self, user: &str, conn: u64) -> bool {
        let mut users = lock(&self.inner.users);
        let Some(live) = users.get_mut(user) else {
            return true;
        };
        live.conns.remove(&conn);
        let offline = !live.online();
        if offline {
            users.remove(user);
        }
        drop(users);
        self.changed(user);
        offline
    }

    /// The user joined SFU room `room` (whose workspace is `workspace`, for huddles).
    pub fn sfu_joined(
        &self,
        user: &str,
        room: &str,
        workspace: Option<String>,
        manual_status: Option<String>,
    ) {
        let mut users = lock(&self.inner.users);
        let live = users.entry(user.to_string()).or_default();
        if !live.online() {
            live.manual_status = manual_status;
        }
        live.sfu_rooms.insert(room.to_string(), workspace);
        drop(users);
        self.changed(user);
    }

    /// The user left SFU room `room`. Returns true when the user is now offline.
    pub fn sfu_left(&self, user: &str, room: &str) -> bool {
        let mut users = lock(&self.inner.users);
        let Some(live) = users.get_mut(user) else {
            return false;
        };
        let was_online = live.online();
        live.sfu_rooms.remove(room);
        let offline = !live.online();
        if offline {
            users.remove(user);
        }
        drop(users);
        self.changed(user);
        was_online && offline
    }

    /// Update the cached manual status of a connected (or REST-present) user.
    pub fn set_manual_status(&self, user: &str, status: Option<String>) {
        if let Some(live) = lock(&self.inner.users).get_mut(user) {
            live.manual_status = status.clone();
        }
        if let Some(r) = lock(&self.inner.rest).get_mut(user) {
            r.manual_status = status;
        }
        self.changed(user);
    }

    /// `user` declared presence over REST: present (online, or away per `manual_status`) until
    /// `until_ms` even without a presence WebSocket or room connection.
    pub fn rest_present(&self, user: &str, manual_status: Option<String>, until_ms: i64) {
        lock(&self.inner.rest).insert(
            user.to_string(),
            RestPresence {
                until_ms,
                manual_status,
            },
        );
        self.changed(user);
    }

    /// Until when `user`'s REST-declared presence lasts, if they declared one.
    fn rest_until(&self, user: &str) -> Option<i64> {
        lock(&self.inner.rest).get(user).map(|r| r.until_ms)
    }

    /// The workspaces of `user`'s connections and rooms here.
    fn workspaces_of(&self, user: &str) -> Vec<String> {
        let users = lock(&self.inner.users);
        let Some(live) = users.get(user) else {
            return Vec::new();
        };
        let mut ws: Vec<String> = live
            .conns
            .values()
            .flat_map(|c| c.workspaces.iter().cloned())
            .chain(live.sfu_rooms.values().flatten().cloned())
            .collect();
        ws.sort();
        ws.dedup();
        ws
    }

    fn rest_status(&self, user: &str, now_ms: i64) -> Option<&'static str> {
        let rest = lock(&self.inner.rest);
        rest.get(user)
            .filter(|r| r.until_ms > now_ms)
            .map(RestPresence::status)
    }

    /// Live presence at `now_ms`: connections and rooms first, then unexpired REST presence.
    pub fn presence(&self, user: &str, now_ms: i64) -> LivePresence {
        {
            let users = lock(&self.inner.users);
            if let Some(live) = users.get(user).filter(|l| l.online()) {
                return LivePresence {
                    status: live.status(),
                    devices: live
                        .conns
                        .values()
                        .map(|c| LiveDevice {
                            id: c.device_id.clone(),
                            connected_at_ms: c.connected_at_ms,
                        })
                        .collect(),
                    rooms: live.sfu_rooms.len(),
                };
            }
        }
        LivePresence {
            status: self.rest_status(user, now_ms).unwrap_or("offline"),
            devices: Vec::new(),
            rooms: 0,
        }
    }

    /// Online (or away) users at `now_ms`, sorted by id, optionally only those in `workspace`
    /// (REST-present users belong to no workspace); returns `(page of (user, status), total)`.
    pub fn online_users(
        &self,
        workspace: Option<&str>,
        limit: usize,
        now_ms: i64,
    ) -> (Vec<(String, &'static str)>, usize) {
        let mut all: BTreeMap<String, &'static str> = lock(&self.inner.users)
            .iter()
            .filter(|(_, l)| l.online() && workspace.is_none_or(|w| l.in_workspace(w)))
            .map(|(u, l)| (u.clone(), l.status()))
            .collect();
        {
            let mut rest = lock(&self.inner.rest);
            rest.retain(|_, r| r.until_ms > now_ms);
            if workspace.is_none() {
                for (u, r) in rest.iter() {
                    all.entry(u.clone()).or_insert_with(|| r.status());
                }
            }
        }
        let total = all.len();
        (all.into_iter().take(limit).collect(), total)
    }

    pub fn online_count(&self, now_ms: i64) -> usize {
        self.online_users(None, 0, now_ms).1
    }

    /// Push a JSON message to every live connection of `user`, on this node and (multi-node mode)
    /// the others. Returns how many connections here got it.
    pub fn push(&self, user: &str, msg: &Value) -> usize {
        let text = msg.to_string();
        if let Some(s) = self.share() {
            s.push(user, &text);
        }
        self.push_local(user, text)
    }

    /// Deliver an encoded push to `user`'s connections on this node only.
    pub fn push_local(&self, user: &str, text: String) -> usize {
        let users = lock(&self.inner.users);
        let Some(live) = users.get(user) else {
            return 0;
        };
        live.conns
            .values()
            .filter(|c| c.tx.try_send(text.clone()).is_ok())
            .count()
    }

    // ---- typing ----

    /// Set (or clear) `user`'s typing state in `conversation`; it expires after `TYPING_TTL_MS`.
    pub fn set_typing(&self, conversation: &str, user: &str, typing: bool, now_ms: i64) {
        if let Some(s) = self.share() {
            s.typing(conversation, user, typing.then_some(now_ms + TYPING_TTL_MS));
        }
        let mut t = lock(&self.inner.typing);
        if typing {
            t.entry(conversation.to_string())
                .or_default()
                .insert(user.to_string(), now_ms + TYPING_TTL_MS);
        } else if let Some(c) = t.get_mut(conversation) {
            c.remove(user);
            if c.is_empty() {
                t.remove(conversation);
            }
        }
    }

    /// Users typing in `conversation` at `now_ms`, sorted (expired entries are dropped).
    pub fn typing_users(&self, conversation: &str, now_ms: i64) -> Vec<String> {
        let mut t = lock(&self.inner.typing);
        let Some(c) = t.get_mut(conversation) else {
            return Vec::new();
        };
        c.retain(|_, exp| *exp > now_ms);
        let mut users: Vec<String> = c.keys().cloned().collect();
        if c.is_empty() {
            t.remove(conversation);
        }
        users.sort();
        users
    }

    // ---- notifications ----

    /// Create a notification record for each of `user`'s devices and hand it to the sender.
    /// Returns the records created.
    pub async fn notify_user(
        &self,
        store: &Store,
        user: &str,
        kind: &str,
        payload: &Value,
        now_ms: i64,
    ) -> StoreResult<Vec<NotificationRecord>> {
        let devices = store.list_devices(user).await?;
        let sender = self.sender();
        let mut out = Vec::with_capacity(devices.len());
        for d in &devices {
            let (status, error) = match d.token.as_deref() {
                None | Some("") => ("skipped", Some("device has no push token".to_string())),
                Some(_) => match sender.send(d, kind, payload).await {
                    Ok(()) => ("sent", None),
                    Err(e) => {
                        tracing::warn!(user, device = %d.id, error = %e, "push notification failed");
                        ("failed", Some(e))
                    }
                },
            };
            let rec = NotificationRecord {
                id: crate::ids::new_id("ntf_"),
                user_id: user.to_string(),
                device_id: d.id.clone(),
                kind: kind.to_string(),
                payload: payload.to_string(),
                status: status.to_string(),
                error,
                created_at: now_ms,
            };
            store.insert_notification(&rec).await?;
            out.push(rec);
        }
        Ok(out)
    }
}
