//! Shared application state handed to every handler of the HTTP/signal edge (`api`, `signal`,
//! `embed`, `realtime`'s handlers). Domain services (`product`, `recorder`, `auth`, `ice`) never see
//! it: they are built from the narrow dependencies they use, and this module provides those
//! (`FromRef` for the auth extractor, [`AppState::ice`], the event consumer's [`CallHooks`]).

use crate::auth::KeyRing;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::sfu::SfuHandle;
use crate::store::Store;
use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub keys: Arc<KeyRing>,
    pub metrics: Arc<Metrics>,
    pub clock: SharedClock,
    pub started: Instant,
    /// Cancelled when the server begins shutting down.
    pub shutdown: CancellationToken,
    /// Live rooms and participants.
    pub sfu: SfuHandle,
    /// The media workers (rooms are placed on them by `sfu`).
    pub workers: Arc<Vec<crate::sfu::worker::WorkerHandle>>,
    /// TURN REST shared secrets (first mints).
    pub turn_secrets: Arc<Vec<String>>,
    /// The embedded TURN server, when enabled (taken out at shutdown).
    pub turn: Arc<std::sync::Mutex<Option<parlor_turn::TurnServer>>>,
    /// Presence, typing, live pushes and notifications (calls/huddles/chat APIs).
    pub product: crate::product::Product,
    /// Running call recordings.
    pub recorders: crate::recorder::Recorders,
    /// Outgoing webhook queue.
    pub webhooks: crate::webhooks::Webhooks,
    /// The Parlor home and what was installed in it at start-up (web assets, later voice models).
    pub home: Arc<crate::home::Home>,
    /// Model sessions: catalogue, providers, live session sockets, measured figures.
    pub realtime: Arc<crate::realtime::sessions::RealtimeState>,
    /// The voice assistants running in assistant calls.
    pub assistants: crate::assistant::Assistants,
    /// Per-public-key rate limit of `POST /api/v1/embed/token`.
    pub embed: Arc<crate::flood::KeyedRateLimit>,
    /// The keys are dev keys generated because none are configured: dev-only endpoints answer.
    pub dev_keys: bool,
    /// LiveKit Agents workers, dispatches and jobs.
    pub agents: crate::agents::Agents,
    /// This node's membership of a multi-node cluster (inert in single-node mode).
    pub cluster: crate::cluster::Cluster,
}

impl axum::extract::FromRef<AppState> for crate::auth::TokenVerifier {
    fn from_ref(s: &AppState) -> Self {
        crate::auth::TokenVerifier {
            keys: s.keys.clone(),
            clock: s.clock.clone(),
        }
    }
}

impl AppState {
    /// What ICE server lists and TURN credentials are minted from, now.
    pub fn ice(&self) -> crate::ice::IceInputs<'_> {
        crate::ice::IceInputs {
            config: &self.config,
            turn_secrets: &self.turn_secrets,
            now_unix: self.clock.unix_secs(),
        }
    }

    /// The live participants of `room`, cluster-wide: from this node's SFU when the room is open
    /// here, else (multi-node mode) as the node that has it open last published them.
    pub async fn participants(&self, room: &str) -> Vec<crate::sfu::ParticipantSnapshot> {
        if self.sfu.room_worker(room).is_some() || !self.cluster.enabled() {
            return self.sfu.participants(room);
        }
        match self.cluster.room_participants(room).await {
            Ok(p) => p.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(room, error = %e, "cannot read the room's participants from redis");
                Vec::new()
            }
        }
    }

    /// The SFU event consumer's dependencies (`product::spawn_event_consumer`).
    pub fn consumer_deps(&self) -> crate::product::ConsumerDeps {
        crate::product::ConsumerDeps {
            store: self.store.clone(),
            product: self.product.clone(),
            recorders: self.recorders.clone(),
            webhooks: self.webhooks.clone(),
            clock: self.clock.clone(),
            sfu: self.sfu.clone(),
            max_huddle_size: self.config.room.max_huddle_size,
            hooks: Arc::new(self.clone()),
            shutdown: self.shutdown.clone(),
        }
    }
}

/// The services that need the whole server (the voice assistants, assistant-call finalization),
/// as the SFU event consumer calls them.
impl crate::product::CallHooks for AppState {
    fn participant_joined<'a>(&'a self, call_id: &'a str, identity: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.assistants.participant_joined(self, call_id, identity))
    }
    fn participant_left<'a>(&'a self, call_id: &'a str, identity: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.assistants.participant_left(self, call_id, identity))
    }
    fn completed_payload<'a>(
        &'a self,
        call: &'a crate::store::CallRecord,
    ) -> BoxFuture<'a, serde_json::Value> {
        Box::pin(crate::embed::finalize::completed_payload(self, call))
    }
    fn live_elsewhere<'a>(&'a self, room: &'a str) -> BoxFuture<'a, bool> {
        // When Redis cannot tell: not elsewhere (the room was open here; ending its call here is
        // the likely right answer, and leaving it open for ever the worse one).
        Box::pin(async move {
            if self.cluster.moved_recently(room) {
                return true;
            }
            !self.sfu.rooms().iter().any(|r| r == room)
                && self
                    .cluster
                    .room_live_elsewhere(room)
                    .await
                    .unwrap_or_else(|e| {
                        tracing::warn!(room, error = %e, "redis cannot tell where the room lives; treating it as here");
                        false
                    })
        })
    }
}
