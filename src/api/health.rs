//! `/health`, `/health/ready`, `/health/live`, `/metrics`.

use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/health/ready", get(ready))
        .route("/health/live", get(live))
        .route("/metrics", get(metrics))
}

async fn db_status(state: &AppState) -> &'static str {
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => "healthy",
        _ => "unhealthy",
    }
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let db = db_status(&state).await;
    let healthy = db == "healthy";
    let m = &state.metrics;
    let active_calls = state
        .store
        .count_calls_with_status("active")
        .await
        .unwrap_or(0);
    let active_huddles = state.store.count_active_huddles().await.unwrap_or(0);
    let body = json!({
        "success": healthy,
        "status": if healthy { "healthy" } else { "unhealthy" },
        "version": env!("CARGO_PKG_VERSION"),
        "uptime": state.started.elapsed().as_secs(),
        "node": state.config.server.node_name,
        "dependencies": { state.store.backend.name(): db },
        "stats": {
            "websocket_connections": m.websocket_connections.load(Relaxed),
            "online_users": state.product.online_count(),
            "active_calls": active_calls.max(0),
            "active_huddles": active_huddles.max(0),
            "rooms": m.rooms.load(Relaxed),
            "participants": m.participants.load(Relaxed),
        }
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let db = db_status(&state).await;
    let shutting_down = state.shutdown.is_cancelled();
    let ready = db == "healthy" && !shutting_down;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "success": ready,
            "status": if ready { "ready" } else { "not_ready" },
            "dependencies": { state.store.backend.name(): db },
            "shutting_down": shutting_down,
        })),
    )
}

async fn live(State(state): State<AppState>) -> impl IntoResponse {
    Json(json!({ "success": true, "status": "alive", "uptime": state.started.elapsed().as_secs() }))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let uptime = state.started.elapsed().as_secs_f64();
    let mut extra = vec![("parlor_uptime_seconds", "Seconds since start", uptime)];
    let turn_metrics = state
        .turn
        .lock()
        .ok()
        .and_then(|t| t.as_ref().map(|t| t.metrics()));
    if let Some(m) = turn_metrics {
        extra.push((
            "parlor_turn_active_allocations",
            "Active TURN allocations",
            m.active_allocations as f64,
        ));
        extra.push((
            "parlor_turn_relayed_bytes",
            "Bytes relayed by TURN (both directions)",
            m.relayed_bytes() as f64,
        ));
        extra.push((
            "parlor_turn_auth_failures",
            "TURN authentication failures",
            m.auth_failures as f64,
        ));
        extra.push((
            "parlor_turn_forbidden_peer_refusals",
            "TURN relays refused by peer policy",
            m.forbidden_peer_refusals as f64,
        ));
    }
    let body = state.metrics.render(&extra);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}
