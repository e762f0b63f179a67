//! Shared application state handed to every handler.

use crate::auth::KeyRing;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::sfu::SfuHandle;
use crate::store::Store;
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
}
