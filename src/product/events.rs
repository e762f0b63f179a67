//! The consumer of SFU events: call status (ringing → active → completed/missed, the ring sweep),
//! huddle membership, presence of room participants, automatic recording, and stored rooms
//! (`POST /api/rooms`) marked closed when their live room closes.
//!
//! Built from [`ConsumerDeps`]; what it needs of services that depend on the whole server (the
//! voice assistants, assistant-call finalization) comes through [`CallHooks`], which the
//! composition root implements.

use super::Product;
use crate::clock::SharedClock;
use crate::recorder::Recorders;
use crate::sfu::{SfuEvent, SfuHandle};
use crate::store::{CallRecord, Store, StoreError, StoreResult};
use crate::webhooks::Webhooks;
use futures_util::future::BoxFuture;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the event consumer asks of the rest of the server when call participants come and go.
pub trait CallHooks: Send + Sync + 'static {
    /// `identity` joined call `call_id`'s room (the voice assistant of an assistant call follows
    /// its caller in).
    fn participant_joined<'a>(&'a self, call_id: &'a str, identity: &'a str) -> BoxFuture<'a, ()>;
    /// `identity` left call `call_id`'s room.
    fn participant_left<'a>(&'a self, call_id: &'a str, identity: &'a str) -> BoxFuture<'a, ()>;
    /// The `call.completed` webhook body of an ended call; an assistant call is finalized (cost,
    /// charge) here whether or not webhooks are on.
    fn completed_payload<'a>(&'a self, call: &'a CallRecord) -> BoxFuture<'a, Value>;
    /// Multi-node mode: `room` is live on another node (so its call is neither unanswered nor
    /// ended here).
    fn live_elsewhere<'a>(&'a self, room: &'a str) -> BoxFuture<'a, bool>;
}

/// What the event consumer is built from.
#[derive(Clone)]
pub struct ConsumerDeps {
    pub store: Store,
    pub product: Product,
    pub recorders: Recorders,
    pub webhooks: Webhooks,
    pub clock: SharedClock,
    /// Events come from here; `resync` reads the live participants.
    pub sfu: SfuHandle,
    /// `room.max_huddle_size`.
    pub max_huddle_size: usize,
    pub hooks: Arc<dyn CallHooks>,
    /// The consumer stops when this is cancelled.
    pub shutdown: CancellationToken,
}

/// A call nobody is in stays `ringing` this long after it was created, then ends `missed`.
pub const RING_TIMEOUT_MS: i64 = 60_000;
/// How often unanswered calls are looked for.
pub const RING_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Room-name prefixes of product rooms (the room name is the call / huddle id).
pub const CALL_PREFIX: &str = "call_";
pub const HUDDLE_PREFIX: &str = "huddle_";

/// Spawn the task that turns SFU events into call/huddle status and presence. It subscribes before
/// returning, so no event emitted after this call is missed.
pub fn spawn_event_consumer(deps: ConsumerDeps) -> JoinHandle<()> {
    let mut rx = deps.sfu.subscribe_events();
    let shutdown = deps.shutdown.clone();
    tokio::spawn(async move {
        let mut consumer = EventConsumer {
            d: deps,
            rooms: HashMap::new(),
        };
        let mut sweep = tokio::time::interval(RING_SWEEP_INTERVAL);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let ev = tokio::select! {
                _ = shutdown.cancelled() => break,
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
    d: ConsumerDeps,
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
                ..
            } => self.joined(room, identity, at_ms).await,
            SfuEvent::MediaConnected { room, at_ms, .. } => {
                if room.starts_with(CALL_PREFIX) {
                    let res = self.d.store.activate_call(&room, at_ms).await;
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
                ..
            } => self.left(room, identity, at_ms).await,
            SfuEvent::RoomClosed { room, at_ms, .. } => self.closed(room, at_ms).await,
            // Tracks are LiveKit webhook material (`crate::webhooks::livekit`), not call status.
            SfuEvent::TrackPublished { .. } | SfuEvent::TrackUnpublished { .. } => Ok(()),
        };
        if let Err(e) = res {
            tracing::error!(error = %e, "handling SFU event failed");
        }
    }

    /// A call created with `"record": true` starts recording when media first flows (for its
    /// creator); later connections find it recording already.
    async fn auto_record(&self, room: &str) {
        let Ok(call) = self.d.store.get_call(room).await else {
            return;
        };
        if !call.auto_record || self.d.recorders.is_recording(&call.id) {
            return;
        }
        match self
            .d
            .recorders
            .start_for_call(&call, &call.created_by)
            .await
        {
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
        let store = &self.d.store;
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
        self.d
            .product
            .sfu_joined(&identity, &room, workspace, manual);
        if call.is_some() {
            store.mark_call_joined(&room, &identity, at).await?;
            // The caller of an assistant call brings the call's assistant in.
            self.d.hooks.participant_joined(&room, &identity).await;
        }
        if huddle.is_some() {
            let max = self.d.max_huddle_size as i64;
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
        let store = &self.d.store;
        // Presence first, so whoever sees the call/huddle change also sees the presence change;
        // last_seen is stored before the user shows as offline.
        if self
            .d
            .product
            .would_go_offline(&identity, None, Some(&room))
        {
            store.set_last_seen(&identity, at).await?;
        }
        self.d.product.sfu_left(&identity, &room);
        if room.starts_with(CALL_PREFIX) {
            store.mark_call_left(&room, &identity, at).await?;
            self.d.hooks.participant_left(&room, &identity).await;
            if now_empty {
                self.end_call(&room, at).await?;
            }
        } else if room.starts_with(HUDDLE_PREFIX) {
            store.leave_huddle(&room, &identity, at).await?;
        }
        Ok(())
    }

    async fn is_ringing(&self, call_id: &str) -> bool {
        let call = self.d.store.get_call(call_id).await;
        call.is_ok_and(|c| c.status == "ringing")
    }

    async fn closed(&mut self, room: String, at: i64) -> StoreResult<()> {
        // The stored room of that name (`POST /api/rooms`), if open, is closed with its live room
        // (product rooms, `call_*` and `huddle_*`, have none).
        match self.d.store.close_room(&room, at).await {
            Ok(()) => tracing::info!(room = %room, "stored room closed"),
            Err(StoreError::NotFound) => {}
            Err(e) => tracing::error!(room = %room, error = %e, "closing the stored room failed"),
        }
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
        // Multi-node mode: the room moved to another node (this one lost its lease); the call goes
        // on there, and ends there.
        if self.d.hooks.live_elsewhere(room).await {
            tracing::info!(call = %room, "the call's room lives on another node now; not ended here");
            return Ok(());
        }
        if let Some(call) = self.d.store.end_call(room, at).await? {
            tracing::info!(call = %call.id, status = %call.status, duration_ms = call.duration_ms, "call ended");
            // An assistant call is finalized (cost, the one charge) whether or not webhooks are on.
            let body = self.d.hooks.completed_payload(&call).await;
            if self.d.webhooks.enabled() {
                self.d.webhooks.emit("call.completed", body).await;
            }
        }
        Ok(())
    }

    /// A call lifecycle webhook with the call as it is now.
    async fn call_event(&self, event: &str, call_id: &str) {
        if !self.d.webhooks.enabled() {
            return;
        }
        let Ok(call) = self.d.store.get_call(call_id).await else {
            return;
        };
        let members = self
            .d
            .store
            .call_members(&call.id)
            .await
            .unwrap_or_default();
        self.d
            .webhooks
            .emit(event, super::call_view::call_json(&call, &members))
            .await;
    }

    /// Calls ringing for `RING_TIMEOUT_MS` with nobody in their room end `missed`.
    async fn sweep_unanswered(&mut self) -> StoreResult<()> {
        let now = self.d.clock.unix_ms();
        let ids = self
            .d
            .store
            .ringing_calls_before(now - RING_TIMEOUT_MS, 100)
            .await?;
        for id in ids {
            let empty_here = self.rooms.get(&id).is_none_or(|p| p.is_empty());
            if empty_here && !self.d.hooks.live_elsewhere(&id).await {
                self.end_call(&id, now).await?;
            }
        }
        Ok(())
    }

    /// After missing events: align the tracked rooms with the SFU's current participants.
    async fn resync(&mut self) {
        let now = self.d.clock.unix_ms();
        let rooms: Vec<String> = self.rooms.keys().cloned().collect();
        for room in rooms {
            let live: HashSet<String> = self
                .d
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

#[cfg(test)]
mod tests {
    //! The consumer built from its narrow dependencies (a real SQLite store, an SFU handle whose
    //! events the test emits, webhooks off) and hooks that record what they were asked.
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    #[derive(Default)]
    struct Hooks(Mutex<Vec<String>>);

    impl CallHooks for Hooks {
        fn participant_joined<'a>(&'a self, call: &'a str, who: &'a str) -> BoxFuture<'a, ()> {
            self.0.lock().unwrap().push(format!("joined {call} {who}"));
            Box::pin(async {})
        }
        fn participant_left<'a>(&'a self, call: &'a str, who: &'a str) -> BoxFuture<'a, ()> {
            self.0.lock().unwrap().push(format!("left {call} {who}"));
            Box::pin(async {})
        }
        fn completed_payload<'a>(&'a self, call: &'a CallRecord) -> BoxFuture<'a, Value> {
            self.0
                .lock()
                .unwrap()
                .push(format!("completed {}", call.id));
            Box::pin(async { Value::Null })
        }
        fn live_elsewhere<'a>(&'a self, _room: &'a str) -> BoxFuture<'a, bool> {
            Box::pin(async { false })
        }
    }

    async fn eventually<F: std::future::Future<Output = bool>>(what: &str, f: impl Fn() -> F) {
        let start = std::time::Instant::now();
        while !f().await {
            assert!(start.elapsed() < Duration::from_secs(5), "never: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn drives_calls_presence_and_stored_rooms_from_sfu_events() {
        let tmp = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", tmp.path().join("t.db").display());
        let store = Store::connect(&url, 2).await.unwrap();
        let clock = crate::clock::system();
        let sfu = SfuHandle::new();
        let webhooks = Webhooks::new(
            store.clone(),
            clock.clone(),
            &crate::config::WebhooksConfig::default(),
            String::new(),
            None,
        );
        let recorders = Recorders::new(crate::recorder::RecorderDeps {
            store: store.clone(),
            webhooks: webhooks.clone(),
            sfu: sfu.clone(),
            workers: Arc::new(Vec::new()),
            max_rooms: 1,
            dir: tmp.path().join("recordings"),
            clock: clock.clone(),
            node: String::new(),
        });
        let hooks = Arc::new(Hooks::default());
        let product = Product::default();
        let shutdown = CancellationToken::new();
        let task = spawn_event_consumer(ConsumerDeps {
            store: store.clone(),
            product: product.clone(),
            recorders,
            webhooks,
            clock: clock.clone(),
            sfu: sfu.clone(),
            max_huddle_size: 4,
            hooks: hooks.clone(),
            shutdown: shutdown.clone(),
        });
        let now = clock.unix_ms();
        store
            .insert_room(&crate::store::RoomRecord {
                name: "lobby".into(),
                sid: "RM_lobby".into(),
                created_at: now,
                closed_at: None,
                max_participants: 2,
                ..Default::default()
            })
            .await
            .unwrap();
        store
            .insert_call(&CallRecord {
                id: "call_t1".into(),
                call_type: "audio".into(),
                conversation_id: None,
                created_by: "alice".into(),
                status: "ringing".into(),
                created_at: now,
                started_at: None,
                ended_at: None,
                duration_ms: None,
                auto_record: false,
            })
            .await
            .unwrap();
        let (room, call) = (String::from("lobby"), String::from("call_t1"));
        let ev = |e| sfu.emit(e);

        // A stored room: presence follows its participant, and it closes with its live room.
        ev(SfuEvent::RoomCreated {
            room: room.clone(),
            at_ms: now,
            info: Default::default(),
        });
        ev(SfuEvent::ParticipantJoined {
            room: room.clone(),
            identity: "bob".into(),
            at_ms: now,
            info: Default::default(),
        });
        eventually("bob online", || async {
            product.presence("bob", now).rooms == 1
        })
        .await;
        ev(SfuEvent::ParticipantLeft {
            room: room.clone(),
            identity: "bob".into(),
            at_ms: now + 5,
            info: Default::default(),
        });
        ev(SfuEvent::RoomClosed {
            room: room.clone(),
            at_ms: now + 10,
            info: Default::default(),
        });
        eventually("stored room closed", || async {
            store.get_room("lobby").await.unwrap().closed_at == Some(now + 10)
        })
        .await;
        assert_eq!(product.presence("bob", now).status, "offline");

        // A call: active when media connects, completed when its last participant leaves; the
        // hooks see the participant come and go and the completed call.
        ev(SfuEvent::RoomCreated {
            room: call.clone(),
            at_ms: now,
            info: Default::default(),
        });
        ev(SfuEvent::ParticipantJoined {
            room: call.clone(),
            identity: "alice".into(),
            at_ms: now,
            info: Default::default(),
        });
        let media = SfuEvent::MediaConnected {
            room: call.clone(),
            identity: "alice".into(),
            at_ms: now + 1,
        };
        ev(media);
        eventually("call active", || async {
            store.get_call("call_t1").await.unwrap().status == "active"
        })
        .await;
        ev(SfuEvent::ParticipantLeft {
            room: call.clone(),
            identity: "alice".into(),
            at_ms: now + 2_001,
            info: Default::default(),
        });
        eventually("call completed", || async {
            store.get_call("call_t1").await.unwrap().status == "completed"
        })
        .await;
        let c = store.get_call("call_t1").await.unwrap();
        assert_eq!(c.duration_ms, Some(2_000));
        assert_eq!(
            *hooks.0.lock().unwrap(),
            [
                "joined call_t1 alice",
                "left call_t1 alice",
                "completed call_t1"
            ]
        );
        shutdown.cancel();
        task.await.unwrap();
    }
}
