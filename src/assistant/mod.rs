//! Voice-assistant participants: when the caller of an assistant call (one minted by
//! `POST /api/v1/embed/token`) joins its room, the call's assistant joins too — an in-process
//! participant of kind AGENT (the recorder's pattern, `sfu::local`) — and bridges the caller's audio
//! to a model conversation (`realtime::provider`) and the model's audio back into the room
//! (`bridge`). When the caller leaves, the assistant leaves, the room empties and the call is
//! finalized (`embed::finalize`).
//!
//! Owns: the registry of running assistants (one per call), their metrics (`metrics`), the reply
//! audio pacing (`pacer`).

pub mod bridge;
pub mod captions;
pub mod metrics;
pub mod pacer;

use crate::state::AppState;
use metrics::AssistantMetrics;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// The identity the assistant joins rooms with.
pub const IDENTITY: &str = "assistant";

#[derive(Clone, Default)]
pub struct Assistants {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Call id → the running assistant's stop token.
    running: Mutex<HashMap<String, CancellationToken>>,
    metrics: AssistantMetrics,
}

impl Assistants {
    pub fn metrics(&self) -> &AssistantMetrics {
        &self.inner.metrics
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.inner.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether an assistant runs in `call_id`'s room.
    pub fn is_running(&self, call_id: &str) -> bool {
        self.running().contains_key(call_id)
    }

    /// Someone joined a call's room: when it is an assistant call and `identity` its caller, start
    /// the call's assistant (once).
    pub async fn participant_joined(&self, state: &AppState, call_id: &str, identity: &str) {
        if identity == IDENTITY || self.is_running(call_id) {
            return;
        }
        let ac = match state.store.get_assistant_call(call_id).await {
            Ok(Some(ac)) if ac.caller_identity == identity => ac,
            Ok(_) => return,
            Err(e) => {
                tracing::error!(call = %call_id, error = %e, "cannot load the assistant call");
                return;
            }
        };
        let stop = CancellationToken::new();
        {
            let mut running = self.running();
            if running.contains_key(call_id) {
                return;
            }
            running.insert(call_id.to_string(), stop.clone());
        }
        let m = &self.inner.metrics;
        m.started.fetch_add(1, Relaxed);
        m.active.fetch_add(1, Relaxed);
        let (this, state, call) = (self.clone(), state.clone(), call_id.to_string());
        tokio::spawn(async move {
            bridge::run(&state, &this, ac, stop).await;
            this.running().remove(&call);
            let _ = this
                .inner
                .metrics
                .active
                .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
        });
    }

    /// Someone left a call's room: when it was the caller, the assistant leaves too.
    pub async fn participant_left(&self, state: &AppState, call_id: &str, identity: &str) {
        if identity == IDENTITY || !self.is_running(call_id) {
            return;
        }
        let is_caller = matches!(
            state.store.get_assistant_call(call_id).await,
            Ok(Some(ac)) if ac.caller_identity == identity
        );
        if is_caller {
            if let Some(stop) = self.running().get(call_id) {
                stop.cancel();
            }
        }
    }

    /// Stop every assistant (server shutdown).
    pub fn stop_all(&self) {
        for stop in self.running().values() {
            stop.cancel();
        }
    }
}
