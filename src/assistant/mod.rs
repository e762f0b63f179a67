//! Voice-assistant participants: when the caller of an assistant call (one minted by
//! `POST /api/v1/embed/token`) joins its room, the call's assistant joins too — an in-process
//! participant of kind AGENT (the recorder's pattern, `sfu::local`) — and bridges the caller's audio
//! to a model conversation (`realtime::provider`) and the model's audio back into the room
//! (`bridge`). When the caller leaves, the assistant leaves, the room empties and the call is
//! finalized (`embed::finalize`).
//!
//! An assistant whose model is a LiveKit agent (catalogue provider `livekit-agent`) runs the team's
//! own agent instead: the caller's join dispatches that agent into the room (`crate::agents`), and the
//! caller's leave deletes the dispatch (the agent leaves).
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
        let agent = livekit_agent(state, &ac.assistant_id).await;
        let (this, state, call) = (self.clone(), state.clone(), call_id.to_string());
        tokio::spawn(async move {
            match agent {
                Some(name) => run_livekit_agent(&state, &ac, &name, stop).await,
                None => bridge::run(&state, &this, ac, stop).await,
            }
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

/// The LiveKit agent name of assistant `assistant_id`, if its model is a LiveKit agent.
async fn livekit_agent(state: &AppState, assistant_id: &str) -> Option<String> {
    let a = match state.store.get_assistant(assistant_id).await {
        Ok(Some(a)) => a,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(assistant = %assistant_id, error = %e, "cannot load the assistant");
            return None;
        }
    };
    let m = state
        .config
        .realtime
        .models
        .iter()
        .find(|m| m.id == a.model)?;
    (m.provider == crate::agents::PROVIDER).then(|| m.provider_model().to_string())
}

/// The call's assistant is LiveKit agent `name`: dispatch it into the call's room (with the call's
/// metadata) until `stop` (the caller left), then delete the dispatch (the agent is told to end
/// its job, and removed if it stays).
async fn run_livekit_agent(
    state: &AppState,
    ac: &crate::store::AssistantCallRecord,
    name: &str,
    stop: CancellationToken,
) {
    let room = ac.call_id.as_str();
    let sid = crate::agents::room_sid(state, room).await;
    let req = parlor_signaling::protocol::proto::RoomAgentDispatch {
        agent_name: name.to_string(),
        metadata: ac.metadata.clone(),
        ..Default::default()
    };
    let d = match state.agents.create_dispatch(state, room, &sid, req) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(call = %room, agent = name, error = e, "cannot dispatch the LiveKit agent");
            return;
        }
    };
    tracing::info!(call = %room, agent = name, dispatch = %d.id, "assistant call answered by a LiveKit agent");
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = state.shutdown.cancelled() => {}
    }
    state.agents.delete_dispatch(state, room, &d.id);
}
