//! ICE configuration and TURN REST credentials:
//! `GET /api/signaling/ice-config`, `POST /api/signaling/turn-credentials`.
//! (`GET /api/calls/:call_id/ice-servers` lives with the calls API, on the same helpers.)

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/signaling/ice-config", get(ice_config))
        .route("/api/signaling/turn-credentials", post(turn_credentials))
}

async fn ice_config(State(state): State<AppState>, user: AuthUser) -> Json<Value> {
    let servers = state.ice().ice_servers(user.id());
    Json(json!({
        "success": true,
        "config": {
            "ice_servers": servers,
            "ice_transport_policy": "all",
            "ttl": state.config.turn.ttl_secs,
        }
    }))
}

async fn turn_credentials(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<Value>> {
    let creds = state.ice().turn_credentials(user.id()).ok_or_else(|| {
        ApiError::unavailable("no TURN secret is configured").with_code("invalid_turn_credentials")
    })?;
    Ok(Json(json!({
        "success": true,
        "credentials": {
            "username": creds.username,
            "credential": creds.credential,
            "ttl": creds.ttl,
            "expires_at": creds.expires_at,
            "urls": state.ice().turn_urls(),
        }
    })))
}
