//! Devices: `POST /api/devices`, `GET /api/devices`, `PUT /api/devices/{device_id}/token`,
//! `DELETE /api/devices/{device_id}`, `POST /api/devices/{device_id}/heartbeat`; at most
//! `limits.max_devices_per_user` per user (`device_limit_exceeded`). Also
//! `GET /api/notifications`: the notification records created for the caller's devices.

use super::util::{check_id, check_text, limit, validation, JsonBody};
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiPath, ApiQuery, ApiResult};
use crate::state::AppState;
use crate::store::{DeviceRecord, Registered, StoreError};
use crate::timefmt::rfc3339_ms;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/devices", get(list).post(register))
        .route("/api/devices/{device_id}/token", put(update_token))
        .route("/api/devices/{device_id}", delete(unregister))
        .route("/api/devices/{device_id}/heartbeat", post(heartbeat))
        .route("/api/notifications", get(notifications))
}

pub const PLATFORMS: &[&str] = &[
    "ios", "android", "web", "desktop", "macos", "windows", "linux",
];
pub const MAX_PUSH_TOKEN: usize = 4096;

fn device_json(d: &DeviceRecord) -> Value {
    json!({
        "id": d.id,
        "platform": d.platform,
        "name": d.name,
        "app_version": d.app_version,
        // The push token itself is never echoed back.
        "push_enabled": d.token.as_deref().is_some_and(|t| !t.is_empty()),
        "registered_at": rfc3339_ms(d.registered_at),
        "last_active": rfc3339_ms(d.last_active),
    })
}

fn device_not_found() -> ApiError {
    ApiError::not_found(
        "device_not_found",
        "no such device registered for this user",
    )
}

fn map_nf(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => device_not_found(),
        e => e.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    device_id: String,
    platform: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    app_version: Option<String>,
}

async fn register(
    State(state): State<AppState>,
    user: AuthUser,
    JsonBody(b): JsonBody<RegisterBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    check_id("device_id", &b.device_id)?;
    if !PLATFORMS.contains(&b.platform.as_str()) {
        return Err(validation(format!(
            "platform must be one of {}",
            PLATFORMS.join(", ")
        )));
    }
    if let Some(t) = &b.token {
        check_text("token", t, MAX_PUSH_TOKEN)?;
    }
    if let Some(n) = &b.name {
        check_text("name", n, 128)?;
    }
    if let Some(v) = &b.app_version {
        check_text("app_version", v, 64)?;
    }
    let now = state.clock.unix_ms();
    let rec = DeviceRecord {
        user_id: user.id().to_string(),
        id: b.device_id,
        platform: b.platform,
        token: b.token,
        name: b.name,
        app_version: b.app_version,
        registered_at: now,
        last_active: now,
    };
    let max = state.config.limits.max_devices_per_user;
    let (status, d) = match state.store.register_device(&rec, max as i64).await? {
        Registered::Created(d) => (StatusCode::CREATED, d),
        Registered::Updated(d) => (StatusCode::OK, d),
        Registered::LimitExceeded => {
            return Err(ApiError::conflict(
                "device_limit_exceeded",
                format!("maximum {max} devices per user"),
            ))
        }
    };
    Ok((
        status,
        Json(json!({ "success": true, "device": device_json(&d) })),
    ))
}

async fn list(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<Value>> {
    let devices = state.store.list_devices(user.id()).await?;
    let out: Vec<Value> = devices.iter().map(device_json).collect();
    Ok(Json(json!({
        "success": true,
        "devices": out,
        "count": out.len(),
        "max_devices": state.config.limits.max_devices_per_user,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    token: String,
}

async fn update_token(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(device_id): ApiPath<String>,
    JsonBody(b): JsonBody<TokenBody>,
) -> ApiResult<Json<Value>> {
    check_id("device_id", &device_id)?;
    if b.token.is_empty() {
        return Err(validation("token must not be empty"));
    }
    check_text("token", &b.token, MAX_PUSH_TOKEN)?;
    let d = state
        .store
        .update_device_token(user.id(), &device_id, &b.token, state.clock.unix_ms())
        .await
        .map_err(map_nf)?;
    Ok(Json(json!({ "success": true, "device": device_json(&d) })))
}

async fn unregister(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(device_id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    check_id("device_id", &device_id)?;
    state
        .store
        .delete_device(user.id(), &device_id)
        .await
        .map_err(map_nf)?;
    Ok(Json(
        json!({ "success": true, "device_id": device_id, "deleted": true }),
    ))
}

async fn heartbeat(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(device_id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    check_id("device_id", &device_id)?;
    let d = state
        .store
        .touch_device(user.id(), &device_id, state.clock.unix_ms())
        .await
        .map_err(map_nf)?;
    Ok(Json(json!({
        "success": true,
        "device_id": d.id,
        "last_active": rfc3339_ms(d.last_active),
    })))
}

#[derive(Deserialize)]
struct NotificationsQuery {
    before: Option<i64>,
    limit: Option<i64>,
}

async fn notifications(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<NotificationsQuery>,
) -> ApiResult<Json<Value>> {
    let list = state
        .store
        .list_notifications(user.id(), q.before, limit(q.limit, 50, 200))
        .await?;
    let out: Vec<Value> = list
        .iter()
        .map(|n| {
            json!({
                "id": n.id,
                "kind": n.kind,
                "device_id": n.device_id,
                "status": n.status,
                "error": n.error,
                "payload": serde_json::from_str::<Value>(&n.payload).unwrap_or(Value::Null),
                "created_at": rfc3339_ms(n.created_at),
                "created_at_ms": n.created_at,
            })
        })
        .collect();
    Ok(Json(json!({
        "success": true,
        "notifications": out,
        "count": out.len(),
        "sender": state.product.sender().name(),
    })))
}
