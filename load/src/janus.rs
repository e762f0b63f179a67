//! Janus VideoRoom adapter (WebSocket JSON API).

use crate::media::MediaHandle;
use crate::{Participant, RunCtx};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct JanusTarget {
    /// e.g. `ws://127.0.0.1:8188`
    pub url: String,
    /// Janus rooms are numeric: room index i is `room_base + i`.
    pub room_base: u64,
}

pub async fn run(
    _target: Arc<JanusTarget>,
    _ctx: Arc<RunCtx>,
    _p: Participant,
    _media: MediaHandle,
) -> Result<(), String> {
    Err("janus adapter not implemented yet".into())
}
