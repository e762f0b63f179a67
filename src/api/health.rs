//! `/health`, `/health/ready`, `/health/live`, `/metrics`.

use crate::error::ApiError;
use crate::metrics::Sample;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
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
        "cluster": cluster_view(&state, healthy).await,
        "dependencies": dependencies(&state, db),
        "stats": {
            "websocket_connections": m.websocket_connections.load(Relaxed),
            "online_users": state.product.online_count_all(state.clock.unix_ms()).await,
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

/// Seed 002's `cluster` (`nodes` + `connected`) with each member's details. Single node: this server;
/// multi-node: every node registered in Redis, as its last heartbeat described it.
async fn cluster_view(state: &AppState, healthy: bool) -> serde_json::Value {
    let m = &state.metrics;
    let me = &state.config.server.node_name;
    let local = json!({
        "node": me,
        "address": state.config.public_http_url(),
        "status": if healthy { "healthy" } else { "unhealthy" },
        "rooms": m.rooms.load(Relaxed),
        "participants": m.participants.load(Relaxed),
        "self": true,
    });
    if !state.cluster.enabled() {
        return json!({ "mode": "single", "nodes": [me], "connected": true, "members": [local] });
    }
    let nodes = tokio::time::timeout(Duration::from_secs(2), state.cluster.nodes()).await;
    let Ok(Ok(nodes)) = nodes else {
        // Redis is away: this node still serves its rooms; the cluster view is unknown.
        return json!({ "mode": "redis", "nodes": [me], "connected": false, "members": [local] });
    };
    let members: Vec<_> = nodes
        .iter()
        .map(|n| {
            json!({
                "node": n.node,
                "address": n.http_url,
                "status": if n.draining { "draining" } else { "healthy" },
                "rooms": n.rooms,
                "participants": n.participants,
                "cpu_load": n.cpu_load,
                "media": { "ip": n.rtc_ip, "udp_ports": n.udp_ports },
                "self": &n.node == me,
            })
        })
        .collect();
    json!({
        "mode": "redis",
        "nodes": nodes.iter().map(|n| n.node.clone()).collect::<Vec<_>>(),
        "connected": state.cluster.connected(),
        "members": members,
    })
}

fn dependencies(state: &AppState, db: &str) -> serde_json::Value {
    let mut d = json!({ state.store.backend.name(): db });
    if state.cluster.enabled() {
        d["redis"] = json!(if state.cluster.connected() {
            "healthy"
        } else {
            "unhealthy"
        });
    }
    d
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

/// `/metrics`: Prometheus text. With `metrics.token` set, callers need `Authorization: Bearer <token>`.
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let want = &state.config.metrics.token;
    if !want.is_empty() {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), want.as_bytes())) {
            let mut resp =
                ApiError::unauthorized("/metrics needs Authorization: Bearer <metrics.token>")
                    .into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"metrics\""),
            );
            return resp;
        }
    }
    let uptime = state.started.elapsed().as_secs_f64();
    let mut extra = vec![Sample::gauge(
        "parlor_uptime_seconds",
        "Seconds since start",
        uptime,
    )];
    let turn_metrics = state
        .turn
        .lock()
        .ok()
        .and_then(|t| t.as_ref().map(|t| t.metrics()));
    if let Some(m) = turn_metrics {
        extra.extend([
            Sample::gauge(
                "parlor_turn_active_allocations",
                "Active TURN allocations",
                m.active_allocations as f64,
            ),
            Sample::counter(
                "parlor_turn_allocations_total",
                "TURN allocations created",
                m.allocations_total as f64,
            ),
            Sample::counter(
                "parlor_turn_relayed_bytes_total",
                "Bytes relayed by TURN (both directions)",
                m.relayed_bytes() as f64,
            ),
            Sample::counter(
                "parlor_turn_auth_failures_total",
                "TURN authentication failures",
                m.auth_failures as f64,
            ),
            Sample::counter(
                "parlor_turn_forbidden_peer_refusals_total",
                "TURN relays refused by peer policy",
                m.forbidden_peer_refusals as f64,
            ),
            Sample::counter(
                "parlor_turn_quota_refusals_total",
                "TURN allocations refused by the per-user quota",
                m.quota_refusals as f64,
            ),
            Sample::gauge(
                "parlor_turn_tcp_connections",
                "Open TURN TCP client connections",
                m.tcp_connections as f64,
            ),
            Sample::counter(
                "parlor_turn_tcp_refused_total",
                "TURN TCP connections refused at the connection caps",
                m.tcp_refused as f64,
            ),
            Sample::counter(
                "parlor_turn_tcp_idle_closed_total",
                "TURN TCP connections closed without an allocation (idle timeout or evicted at the cap)",
                m.tcp_idle_closed as f64,
            ),
            Sample::gauge(
                "parlor_turn_reserved_ports",
                "Relay ports held by TURN EVEN-PORT reservations",
                m.reserved_ports as f64,
            ),
        ]);
    }
    extra.extend(crate::metrics::process_metrics());
    let mut body = state.metrics.render(&extra);
    state.assistants.metrics().render(&mut body);
    // Multi-node mode: every sample names this node.
    if let Some(node) = state.cluster.node() {
        body = crate::metrics::label_every_sample(&body, "node", node);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
