//! Routes of the model sessions (seed 000): the REST API under `/api/realtime` and the session
//! WebSocket `/realtime/{session_id}`. The handlers live in `crate::realtime::{api, ws}`.

use crate::realtime::{api, history, ws};
use crate::state::AppState;
use axum::routing::{get, post};
use axum::Router;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/realtime/sessions", get(api::list).post(api::create))
        .route(
            "/api/realtime/sessions/{session_id}",
            get(api::get_one).delete(api::delete),
        )
        .route(
            "/api/realtime/sessions/{session_id}/resume",
            post(history::resume),
        )
        .route(
            "/api/realtime/sessions/{session_id}/history",
            get(history::history),
        )
        .route("/api/realtime/models", get(api::models))
        .route("/api/realtime/stream", get(api::stream))
        .route("/api/realtime/stats", get(api::stats))
        .route("/realtime/{session_id}", get(ws::upgrade))
}
