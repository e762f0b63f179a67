//! Product-side live state and background work: presence (WebSocket connections and SFU
//! participants), typing indicators, live pushes to connected users, the pluggable notification
//! sender, and the consumer of SFU events that drives call and huddle status.

use crate::sfu::SfuEvent;
use crate::state::AppState;
use crate::store::{DeviceRecord, NotificationRecord, Store, StoreResult};
use futures_util::future::BoxFuture;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

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
}

/// Product live state, cloneable, held in `AppState`.
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

    /// Push a JSON message to every live connection of `user`. Returns how many got it.
    pub fn push(&self, user: &str, msg: &Value) -> usize {
        let text = msg.to_string();
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

// ---- SFU event consumer ----

/// A call nobody is in stays `ringing` this long after it was created, then ends `missed`.
pub const RING_TIMEOUT_MS: i64 = 60_000;
/// How often unanswered calls are looked for.
pub const RING_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Room-name prefixes of product rooms (the room name is the call / huddle id).
pub const CALL_PREFIX: &str = "call_";
pub const HUDDLE_PREFIX: &str = "huddle_";

/// Spawn the task that turns SFU events into call/huddle status and presence. It subscribes before
/// returning, so no event emitted after this call is missed.
pub fn spawn_event_consumer(state: AppState) -> JoinHandle<()> {
    let mut rx = state.sfu.subscribe_events();
    tokio::spawn(async move {
        let mut consumer = EventConsumer {
            state: state.clone(),
            rooms: HashMap::new(),
        };
        let mut sweep = tokio::time::interval(RING_SWEEP_INTERVAL);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let ev = tokio::select! {
                _ = state.shutdown.cancelled() => break,
                _ = sweep.tick() => {
                    if let Err(e) = consumer.sweep_unanswered().await {
                        tracing::error!(error = %e, "sweeping unanswered calls failed");
                    }
                    continue;
                }
                ev = rx.recv() => ev,
            };
            match ev {
                Ok(ev) => consumer.handle(ev).await,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "SFU event consumer lagged; resynchronising");
                    consumer.resync().await;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    })
}

struct EventConsumer {
    state: AppState,
    /// Participants per room as seen through events.
    rooms: HashMap<String, HashSet<String>>,
}

impl EventConsumer {
    async fn handle(&mut self, ev: SfuEvent) {
        let res = match ev {
            SfuEvent::RoomCreated { room, .. } => {
                self.rooms.entry(room).or_default();
                Ok(())
            }
            SfuEvent::ParticipantJoined {
                room,
                identity,
                at_ms,
            } => self.joined(room, identity, at_ms).await,
            SfuEvent::MediaConnected { room, at_ms, .. } => {
                if room.starts_with(CALL_PREFIX) {
                    let res = self.state.store.activate_call(&room, at_ms).await;
                    if let Ok(true) = res {
                        self.call_event("call.started", &room).await;
                    }
                    self.auto_record(&room).await;
                    res.map(|_| ())
                } else {
                    Ok(())
                }
            }
            SfuEvent::ParticipantLeft {
                room,
                identity,
                at_ms,
            } => self.left(room, identity, at_ms).await,
            SfuEvent::RoomClosed { room, at_ms } => self.closed(room, at_ms).await,
        };
        if let Err(e) = res {
            tracing::error!(error = %e, "handling SFU event failed");
        }
    }

    /// A call created with `"record": true` starts recording when media first flows (for its
    /// creator); later connections find it recording already.
    async fn auto_record(&self, room: &str) {
        let Ok(call) = self.state.store.get_call(room).await else {
            return;
        };
        if !call.auto_record || self.state.recorders.is_recording(&call.id) {
            return;
        }
        match crate::recorder::start_for_call(&self.state, &call, &call.created_by).await {
            Ok((id, _)) => {
                tracing::info!(call = %call.id, recording = %id, "automatic recording started")
            }
            Err(crate::recorder::RecorderError::AlreadyRecording) => {}
            Err(e) => tracing::warn!(call = %call.id, error = %e, "automatic recording failed"),
        }
    }

    async fn joined(&mut self, room: String, identity: String, at: i64) -> StoreResult<()> {
        self.rooms
            .entry(room.clone())
            .or_default()
            .insert(identity.clone());
        let store = &self.state.store;
        let call = if room.starts_with(CALL_PREFIX) {
            store.get_call(&room).await.ok()
        } else {
            None
        };
        let huddle = if room.starts_with(HUDDLE_PREFIX) {
            store.get_huddle(&room).await.ok()
        } else {
            None
        };
        // Presence first, so whoever sees the call/huddle change also sees the presence change.
        let manual = store
            .get_presence(&identity)
            .await
            .ok()
            .flatten()
            .and_then(|p| p.manual_status);
        let workspace = huddle.as_ref().and_then(|h| h.workspace_id.clone());
        self.state
            .product
            .sfu_joined(&identity, &room, workspace, manual);
        if call.is_some() {
            store.mark_call_joined(&room, &identity, at).await?;
            // The caller of an assistant call brings the call's assistant in.
            let assistants = self.state.assistants.clone();
            assistants
                .participant_joined(&self.state, &room, &identity)
                .await;
        }
        if huddle.is_some() {
            let max = self.state.config.room.max_huddle_size as i64;
            let outcome = store.join_huddle(&room, &identity, max, at, true).await?;
            if outcome == crate::store::JoinOutcome::Full {
                tracing::warn!(huddle = %room, user = %identity, "joined the room of a full huddle");
            }
        }
        Ok(())
    }

    async fn left(&mut self, room: String, identity: String, at: i64) -> StoreResult<()> {
        let now_empty = match self.rooms.get_mut(&room) {
            Some(set) => {
                set.remove(&identity);
                set.is_empty()
            }
            None => true,
        };
        let store = &self.state.store;
        // Presence first, so whoever sees the call/huddle change also sees the presence change;
        // last_seen is stored before the user shows as offline.
        if self
            .state
            .product
            .would_go_offline(&identity, None, Some(&room))
        {
            store.set_last_seen(&identity, at).await?;
        }
        self.state.product.sfu_left(&identity, &room);
        if room.starts_with(CALL_PREFIX) {
            store.mark_call_left(&room, &identity, at).await?;
            let assistants = self.state.assistants.clone();
            assistants
                .participant_left(&self.state, &room, &identity)
                .await;
            if now_empty {
                self.end_call(&room, at).await?;
            }
        } else if room.starts_with(HUDDLE_PREFIX) {
            store.leave_huddle(&room, &identity, at).await?;
        }
        Ok(())
    }

    async fn is_ringing(&self, call_id: &str) -> bool {
        let call = self.state.store.get_call(call_id).await;
        call.is_ok_and(|c| c.status == "ringing")
    }

    async fn closed(&mut self, room: String, at: i64) -> StoreResult<()> {
        let remaining: Vec<String> = self
            .rooms
            .get(&room)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let had_nobody = remaining.is_empty();
        for identity in remaining {
            self.left(room.clone(), identity, at).await?;
        }
        self.rooms.remove(&room);
        // A room that closes with nobody ever tracked in it was opened by hidden participants only
        // (a recorder): a ringing call stays ringing (the ring sweep ends it), others end here.
        if room.starts_with(CALL_PREFIX) && !(had_nobody && self.is_ringing(&room).await) {
            self.end_call(&room, at).await?;
        }
        Ok(())
    }

    async fn end_call(&self, room: &str, at: i64) -> StoreResult<()> {
        if let Some(call) = self.state.store.end_call(room, at).await? {
            tracing::info!(call = %call.id, status = %call.status, duration_ms = call.duration_ms, "call ended");
            // An assistant call is finalized (cost, the one charge) whether or not webhooks are on.
            let body = crate::embed::finalize::completed_payload(&self.state, &call).await;
            if self.state.webhooks.enabled() {
                self.state.webhooks.emit("call.completed", body).await;
            }
        }
        Ok(())
    }

    /// A call lifecycle webhook with the call as it is now.
    async fn call_event(&self, event: &str, call_id: &str) {
        if !self.state.webhooks.enabled() {
            return;
        }
        let Ok(call) = self.state.store.get_call(call_id).await else {
            return;
        };
        let members = self
            .state
            .store
            .call_members(&call.id)
            .await
            .unwrap_or_default();
        self.state
            .webhooks
            .emit(event, crate::api::calls::call_json(&call, &members))
            .await;
    }

    /// Calls ringing for `RING_TIMEOUT_MS` with nobody in their room end `missed`.
    async fn sweep_unanswered(&mut self) -> StoreResult<()> {
        let now = self.state.clock.unix_ms();
        let ids = self
            .state
            .store
            .ringing_calls_before(now - RING_TIMEOUT_MS, 100)
            .await?;
        for id in ids {
            if self.rooms.get(&id).is_none_or(|p| p.is_empty()) {
                self.end_call(&id, now).await?;
            }
        }
        Ok(())
    }

    /// After missing events: align the tracked rooms with the SFU's current participants.
    async fn resync(&mut self) {
        let now = self.state.clock.unix_ms();
        let rooms: Vec<String> = self.rooms.keys().cloned().collect();
        for room in rooms {
            let live: HashSet<String> = self
                .state
                .sfu
                .participants(&room)
                .into_iter()
                .map(|p| p.identity)
                .collect();
            let known = self.rooms.get(&room).cloned().unwrap_or_default();
            for gone in known.difference(&live) {
                let _ = self.left(room.clone(), gone.clone(), now).await;
            }
            for new in live.difference(&known) {
                let _ = self.joined(room.clone(), new.clone(), now).await;
            }
        }
    }
}
