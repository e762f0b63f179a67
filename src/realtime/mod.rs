//! Model sessions (seed 000): conversations with a realtime model, over REST (`/api/realtime`) and a
//! per-session WebSocket (`/realtime/{session_id}`), and the model providers behind them.
//!
//! This module owns the model catalogue (`[realtime] models`), the providers (`provider`: the
//! interface; `openai`: the OpenAI Realtime API; `local`: the built-in offline voice model) and the
//! rule-based responder of the offline model (`responder`). The voice-assistant rooms bridge room
//! audio to a [`provider::Conversation`]; they only move audio.

pub mod api;
pub mod config;
pub mod history;
pub mod local;
pub mod openai;
pub mod openapi;
pub mod pcm;
pub mod playout;
pub mod provider;
pub mod report;
pub mod responder;
pub mod sessions;
pub mod stats;
pub mod ws;

use provider::{Availability, Provider};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The providers this server runs, by provider id (`local`, `openai`).
#[derive(Clone, Default)]
pub struct Providers {
    by_name: BTreeMap<&'static str, Arc<dyn Provider>>,
}

impl Providers {
    pub fn insert(&mut self, p: Arc<dyn Provider>) {
        self.by_name.insert(p.name(), p);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Provider>> {
        self.by_name.get(name)
    }

    /// A provider's availability; a provider id this server does not know is unavailable.
    pub fn availability(&self, name: &str) -> Availability {
        match self.get(name) {
            Some(p) => p.availability(),
            None => Availability::Unavailable {
                reason: format!("unknown provider `{name}`"),
            },
        }
    }

    /// A provider's availability for audio conversations (voice-assistant calls).
    pub fn audio_availability(&self, name: &str) -> Availability {
        match self.get(name) {
            Some(p) => p.audio_availability(),
            None => Availability::Unavailable {
                reason: format!("unknown provider `{name}`"),
            },
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Provider>> {
        self.by_name.values()
    }
}

/// The providers `config` sets up: `local` always (it may be disabled; its voice models are found
/// in the Parlor home `home`), `openai` (added by its module).
pub fn build_providers(
    config: &config::RealtimeConfig,
    home: &std::path::Path,
    clock: crate::clock::SharedClock,
) -> Providers {
    let mut p = Providers::default();
    p.insert(Arc::new(local::LocalProvider::new(
        &config.local,
        home,
        clock,
    )));
    p.insert(Arc::new(openai::OpenAiProvider::new(&config.openai)));
    p
}
