//! The model-sessions REST API (seed 000) under `/api/realtime`: sessions (list, create, read,
//! resume, history, delete), the model catalogue, the stream's configuration and live figures, and
//! statistics. Answers use the seed's envelope `{success, data, message}` and camelCase fields;
//! errors the seed's codes (`UNAUTHORIZED`, `SESSION_NOT_FOUND`, ...). The routes are registered in
//! `crate::api::realtime`; resume and history are in `super::history`, the figures of `/stream` and
//! `/stats` in `super::report`.

use super::report;
use super::sessions::{close, mint_token, valid_session_id, RealtimeState, SESSION_PREFIX};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{RtScope, RtSessionQuery, RtSessionRecord};
use crate::timefmt::{opt, rfc3339_ms, whole_secs};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Largest `systemPrompt`, in characters.
pub const MAX_SYSTEM_PROMPT_CHARS: usize = 8000;
/// Largest `metadata` object, as serialized JSON bytes.
pub const MAX_METADATA_BYTES: usize = 4096;
/// Messages returned in `messageHistory` and replayed into a new conversation.
pub const HISTORY_REPLAY: i64 = 200;

pub type RtResult<T> = Result<T, ApiError>;

pub fn err(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(status, code, message)
}

pub fn validation(message: impl Into<String>) -> ApiError {
    err(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
}

pub(super) fn not_found() -> ApiError {
    err(
        StatusCode::NOT_FOUND,
        "SESSION_NOT_FOUND",
        "no such session (or it belongs to another user, or it was deleted)",
    )
}

/// `{success: true, data, message}`.
pub fn ok(data: Value, message: &str) -> Json<Value> {
    Json(json!({ "success": true, "data": data, "message": message }))
}

/// An authenticated `/api/realtime` caller. `admin`: the token carries the `roomAdmin` video grant
/// and sees every user's sessions. Each request counts against the caller's per-minute limit.
pub struct RtUser {
    pub id: String,
    pub admin: bool,
}

impl FromRequestParts<AppState> for RtUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let unauthorized = |m: String| err(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", m);
        let token = crate::auth::bearer(parts)
            .ok_or_else(|| unauthorized("missing Bearer access token".into()))?;
        let claims = state
            .keys
            .verify(token, state.clock.unix_secs())
            .map_err(|e| unauthorized(format!("invalid access token: {e}")))?;
        if claims.sub.is_empty() {
            return Err(unauthorized("token has no identity (sub)".into()));
        }
        Ok(RtUser {
            admin: claims.video().room_admin,
            id: claims.sub,
        })
    }
}

impl RtUser {
    /// Count this request; 429 `RATE_LIMIT_EXCEEDED` beyond `realtime.rate_limit_per_minute`.
    pub fn admit(&self, rt: &RealtimeState) -> RtResult<()> {
        rt.admit_request(&self.id).map_err(|retry| {
            err(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMIT_EXCEEDED",
                format!(
                    "more than {} requests per minute; retry in {retry} s",
                    rt.config.rate_limit_per_minute
                ),
            )
        })
    }
}

/// A 429 with `Retry-After`.
fn with_retry_after(e: ApiError) -> Response {
    let retry = (e.code == "RATE_LIMIT_EXCEEDED").then(|| {
        e.message
            .rsplit("retry in ")
            .next()
            .and_then(|s| s.trim_end_matches(" s").parse::<u64>().ok())
    });
    let mut r = e.into_response();
    if let Some(Some(secs)) = retry {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
        }
    }
    r
}

pub(super) fn respond(r: RtResult<(StatusCode, Json<Value>)>) -> Response {
    match r {
        Ok(x) => x.into_response(),
        Err(e) => with_retry_after(e),
    }
}

fn check_session_id(id: &str) -> RtResult<()> {
    if valid_session_id(id) {
        Ok(())
    } else {
        Err(err(
            StatusCode::BAD_REQUEST,
            "INVALID_SESSION_ID",
            format!(
                "`{}` is not a session id ({SESSION_PREFIX} followed by 12 letters or digits)",
                id.chars().take(64).collect::<String>()
            ),
        ))
    }
}

/// A live session `user` may see: their own, or any for an admin. Deleted sessions and other users'
/// are `SESSION_NOT_FOUND`.
pub async fn load_for(
    state: &AppState,
    id: &str,
    user: &RtUser,
    store_error: &'static str,
) -> RtResult<RtSessionRecord> {
    check_session_id(id)?;
    let s = match state.store.get_rt_session(id).await {
        Ok(s) => s,
        Err(crate::store::StoreError::NotFound) => return Err(not_found()),
        Err(e) => {
            return Err(err(
                StatusCode::INTERNAL_SERVER_ERROR,
                store_error,
                format!("cannot read the session: {e}"),
            ))
        }
    };
    if s.deleted_at.is_some() || (s.user_id != user.id && !user.admin) {
        return Err(not_found());
    }
    Ok(s)
}

pub(super) fn metadata_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| json!({}))
}

fn token_usage(s: &RtSessionRecord) -> Value {
    json!({
        "prompt": s.prompt_tokens,
        "completion": s.completion_tokens,
        "total": s.prompt_tokens + s.completion_tokens,
    })
}

/// Mean response time in whole ms, None without responses.
fn average_response(s: &RtSessionRecord) -> Option<i64> {
    (s.response_count > 0)
        .then(|| (s.response_ms_sum as f64 / s.response_count as f64).round() as i64)
}

/// Percent of requests that succeeded (one decimal), None without requests.
fn success_rate(s: &RtSessionRecord) -> Option<f64> {
    (s.request_count > 0).then(|| {
        let ok = (s.request_count - s.failed_count) as f64 / s.request_count as f64;
        (ok * 1000.0).round() / 10.0
    })
}

/// A session as listed (`GET /sessions` items).
pub fn session_json(s: &RtSessionRecord, idle_cut: i64) -> Value {
    json!({
        "id": s.id,
        "userId": s.user_id,
        "model": s.model,
        "status": s.state(idle_cut),
        "createdAt": rfc3339_ms(s.created_at),
        "lastActivity": rfc3339_ms(s.last_activity),
        "duration": whole_secs(s.duration_ms()),
        "messageCount": s.message_count,
        "tokenUsage": token_usage(s),
        "settings": {
            "temperature": s.temperature,
            "maxTokens": s.max_tokens,
            "stream": s.stream,
        },
        "metadata": metadata_value(&s.metadata),
    })
}

pub(super) fn connection_info(state: &AppState, s: &RtSessionRecord) -> RtResult<Value> {
    let token = mint_token(
        &state.keys,
        &s.user_id,
        &s.id,
        s.token_generation,
        state.clock.unix_secs(),
        s.token_expires_at,
    )
    .ok_or_else(|| {
        err(
            StatusCode::SERVICE_UNAVAILABLE,
            "CONNECTION_FAILED",
            "no API key is configured to sign session tokens",
        )
    })?;
    let rt = &state.realtime.config;
    Ok(json!({
        "websocketUrl": format!("{}/realtime/{}", state.config.public_ws_url(), s.id),
        "authToken": token,
        "expiresAt": rfc3339_ms(s.token_expires_at),
        "heartbeatInterval": rt.heartbeat_interval_ms,
        "reconnectAttempts": rt.reconnect_attempts,
    }))
}

// ---- GET /api/realtime/sessions ----

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    page: Option<String>,
    limit: Option<String>,
    status: Option<String>,
    user_id: Option<String>,
    model: Option<String>,
    sort_by: Option<String>,
    sort_order: Option<String>,
}

pub(super) fn int_param(
    name: &str,
    v: Option<&str>,
    default: i64,
    min: i64,
    max: i64,
) -> RtResult<i64> {
    let Some(v) = v else { return Ok(default) };
    match v.trim().parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(validation(format!(
            "{name} must be an integer from {min} to {max}"
        ))),
    }
}

pub(super) fn order_param(v: Option<&str>, default_desc: bool) -> RtResult<bool> {
    match v {
        None => Ok(default_desc),
        Some("desc") => Ok(true),
        Some("asc") => Ok(false),
        Some(_) => Err(validation("sortOrder must be asc or desc")),
    }
}

fn text_param(name: &str, v: Option<String>) -> RtResult<Option<String>> {
    match v {
        Some(v) if v.is_empty() || v.chars().count() > 128 || v.chars().any(char::is_control) => {
            Err(validation(format!(
                "{name} must be 1-128 characters without control characters"
            )))
        }
        v => Ok(v),
    }
}

pub(super) fn query<T: serde::de::DeserializeOwned>(
    q: Result<Query<T>, axum::extract::rejection::QueryRejection>,
) -> RtResult<T> {
    q.map(|Query(q)| q)
        .map_err(|e| validation(format!("invalid query: {}", e.body_text())))
}

pub const STATES: [&str; 5] = ["active", "idle", "paused", "completed", "failed"];

pub async fn list(
    State(state): State<AppState>,
    user: RtUser,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    respond(list_inner(&state, &user, q).await)
}

async fn list_inner(
    state: &AppState,
    user: &RtUser,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> RtResult<(StatusCode, Json<Value>)> {
    let q = query(q)?;
    user.admit(&state.realtime)?;
    let page = int_param("page", q.page.as_deref(), 1, 1, 1_000_000)?;
    let limit = int_param("limit", q.limit.as_deref(), 20, 1, 100)?;
    if let Some(st) = &q.status {
        if !STATES.contains(&st.as_str()) {
            return Err(validation(format!(
                "status must be one of {}",
                STATES.join(", ")
            )));
        }
    }
    let sort_by = q.sort_by.unwrap_or_else(|| "createdAt".into());
    if crate::store::session_sort_column(&sort_by).is_none() {
        return Err(validation(
            "sortBy must be createdAt, lastActivity, duration, messageCount, tokenUsage, model, status or userId",
        ));
    }
    let now = state.clock.unix_ms();
    let scope = RtScope {
        owner: (!user.admin).then(|| user.id.clone()),
        user_id: text_param("userId", q.user_id)?,
        model: text_param("model", q.model)?,
        idle_cut: state.realtime.idle_cut(now),
    };
    let query = RtSessionQuery {
        scope: scope.clone(),
        state: q.status,
        sort_by,
        descending: order_param(q.sort_order.as_deref(), true)?,
        limit,
        offset: (page - 1) * limit,
    };
    let db = |e: crate::store::StoreError| {
        err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            format!("database error: {e}"),
        )
    };
    let (rows, total) = state.store.list_rt_sessions(&query).await.map_err(db)?;
    let sum = state.store.rt_session_summary(&scope).await.map_err(db)?;
    let sessions: Vec<Value> = rows
        .iter()
        .map(|s| session_json(s, scope.idle_cut))
        .collect();
    Ok((
        StatusCode::OK,
        ok(
            json!({
                "sessions": sessions,
                "pagination": {
                    "page": page,
                    "limit": limit,
                    "total": total,
                    "pages": (total + limit - 1) / limit,
                },
                "summary": {
                    "totalSessions": sum.total,
                    "activeSessions": sum.active,
                    "idleSessions": sum.idle,
                    "pausedSessions": sum.paused,
                    "completedSessions": sum.completed,
                    "failedSessions": sum.failed,
                    "totalUsers": sum.users,
                },
            }),
            "sessions listed",
        ),
    ))
}

// ---- POST /api/realtime/sessions ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateBody {
    model: Option<String>,
    temperature: Option<f64>,
    max_tokens: Option<i64>,
    stream: Option<bool>,
    system_prompt: Option<String>,
    metadata: Option<Value>,
}

fn body<T>(b: Result<crate::api::util::JsonBody<T>, ApiError>) -> RtResult<T> {
    b.map(|crate::api::util::JsonBody(v)| v).map_err(|mut e| {
        if e.status == StatusCode::BAD_REQUEST {
            e.code = "VALIDATION_ERROR";
        }
        e
    })
}

pub async fn create(
    State(state): State<AppState>,
    user: RtUser,
    b: Result<crate::api::util::JsonBody<CreateBody>, ApiError>,
) -> Response {
    respond(create_inner(&state, &user, b).await)
}

async fn create_inner(
    state: &AppState,
    user: &RtUser,
    b: Result<crate::api::util::JsonBody<CreateBody>, ApiError>,
) -> RtResult<(StatusCode, Json<Value>)> {
    let b = body(b)?;
    user.admit(&state.realtime)?;
    let rt = &state.realtime;
    let model_id = b
        .model
        .filter(|m| !m.is_empty())
        .ok_or_else(|| validation("model is required (GET /api/realtime/models lists them)"))?;
    let not_available = |status, m: String| err(status, "MODEL_NOT_AVAILABLE", m);
    let model = rt.model(&model_id).ok_or_else(|| {
        not_available(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown model `{}`; models: {}",
                model_id.chars().take(64).collect::<String>(),
                rt.config
                    .models
                    .iter()
                    .map(|m| m.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    if let crate::realtime::provider::Availability::Unavailable { reason } = rt.availability(model)
    {
        return Err(not_available(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("model `{}` is not available: {reason}", model.id),
        ));
    }
    let temperature = b.temperature.unwrap_or(0.7);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(validation("temperature must be from 0 to 2"));
    }
    let max_tokens = b.max_tokens.unwrap_or(model.max_tokens as i64);
    if max_tokens < 1 || max_tokens > model.max_tokens as i64 {
        return Err(validation(format!(
            "maxTokens must be from 1 to {} (the limit of {})",
            model.max_tokens, model.id
        )));
    }
    if let Some(p) = &b.system_prompt {
        if p.chars().count() > MAX_SYSTEM_PROMPT_CHARS || p.contains('\0') {
            return Err(validation(format!(
                "systemPrompt must be at most {MAX_SYSTEM_PROMPT_CHARS} characters without NUL"
            )));
        }
    }
    let metadata = match b.metadata {
        None | Some(Value::Null) => json!({}),
        Some(m @ Value::Object(_)) => m,
        Some(_) => return Err(validation("metadata must be a JSON object")),
    };
    let metadata_text = metadata.to_string();
    if metadata_text.len() > MAX_METADATA_BYTES || metadata_text.contains("\\u0000") {
        return Err(validation(format!(
            "metadata must be at most {MAX_METADATA_BYTES} bytes of JSON without NUL characters"
        )));
    }
    let failed = |e: crate::store::StoreError| {
        err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "SESSION_CREATION_FAILED",
            format!("cannot store the session: {e}"),
        )
    };
    let open = state
        .store
        .count_open_rt_sessions(&user.id)
        .await
        .map_err(failed)?;
    if open >= rt.config.max_sessions_per_user as i64 {
        return Err(err(
            StatusCode::CONFLICT,
            "SESSION_CREATION_FAILED",
            format!(
                "you already have {open} open sessions (at most {}); delete one first",
                rt.config.max_sessions_per_user
            ),
        ));
    }
    let now = state.clock.unix_ms();
    let s = RtSessionRecord {
        id: crate::ids::new_id(SESSION_PREFIX),
        user_id: user.id.clone(),
        model: model.id.clone(),
        status: "active".into(),
        temperature,
        max_tokens,
        stream: b.stream.unwrap_or(true),
        system_prompt: b.system_prompt,
        metadata: metadata_text,
        created_at: now,
        last_activity: now,
        ended_at: None,
        deleted_at: None,
        deleted_by: None,
        token_generation: 1,
        token_expires_at: now + (rt.config.token_ttl_secs as i64) * 1000,
        prompt_tokens: 0,
        completion_tokens: 0,
        message_count: 0,
        request_count: 0,
        failed_count: 0,
        response_ms_sum: 0,
        response_count: 0,
        failure_reason: None,
    };
    let info = connection_info(state, &s)?;
    state.store.insert_rt_session(&s).await.map_err(failed)?;
    tracing::info!(session = %s.id, user = %s.user_id, model = %s.model, "model session created");
    Ok((
        StatusCode::CREATED,
        ok(
            json!({
                "id": s.id,
                "status": "active",
                "createdAt": rfc3339_ms(now),
                "connectionInfo": info,
                "sessionData": {
                    "model": s.model,
                    "temperature": s.temperature,
                    "maxTokens": s.max_tokens,
                    "stream": s.stream,
                    "systemPrompt": s.system_prompt,
                    "metadata": metadata,
                },
                "usage": { "tokenCount": 0, "messageCount": 0, "duration": 0 },
            }),
            "session created",
        ),
    ))
}

// ---- GET /api/realtime/sessions/{session_id} ----

pub async fn get_one(
    State(state): State<AppState>,
    user: RtUser,
    Path(id): Path<String>,
) -> Response {
    respond(get_inner(&state, &user, &id).await)
}

async fn get_inner(
    state: &AppState,
    user: &RtUser,
    id: &str,
) -> RtResult<(StatusCode, Json<Value>)> {
    user.admit(&state.realtime)?;
    let s = load_for(state, id, user, "INTERNAL_ERROR").await?;
    let cut = state.realtime.idle_cut(state.clock.unix_ms());
    let mut v = session_json(&s, cut);
    v["settings"]["systemPrompt"] = json!(s.system_prompt);
    v["connectionInfo"] = connection_info(state, &s)?;
    v["connectionInfo"]["connected"] = json!(state.realtime.is_connected(&s.id));
    v["performance"] = json!({
        "averageResponseTime": average_response(&s),
        "totalRequests": s.request_count,
        "failedRequests": s.failed_count,
        "successRate": success_rate(&s),
    });
    v["endedAt"] = json!(opt(s.ended_at));
    v["failureReason"] = json!(s.failure_reason);
    Ok((StatusCode::OK, ok(v, "session found")))
}

// ---- DELETE /api/realtime/sessions/{session_id} ----

pub async fn delete(
    State(state): State<AppState>,
    user: RtUser,
    Path(id): Path<String>,
) -> Response {
    respond(delete_inner(&state, &user, &id).await)
}

async fn delete_inner(
    state: &AppState,
    user: &RtUser,
    id: &str,
) -> RtResult<(StatusCode, Json<Value>)> {
    user.admit(&state.realtime)?;
    let s = load_for(state, id, user, "SESSION_DELETION_FAILED").await?;
    let now = state.clock.unix_ms();
    let deleted = state
        .store
        .delete_rt_session(&s.id, &user.id, now)
        .await
        .map_err(|e| {
            err(
                StatusCode::INTERNAL_SERVER_ERROR,
                "SESSION_DELETION_FAILED",
                format!("cannot delete the session: {e}"),
            )
        })?;
    if !deleted {
        // A concurrent delete won.
        return Err(not_found());
    }
    state
        .realtime
        .kick(&s.id, close::SESSION_ENDED, "the session was deleted");
    tracing::info!(session = %s.id, by = %user.id, "model session deleted");
    Ok((
        StatusCode::OK,
        ok(
            json!({
                "id": s.id,
                "deletedAt": rfc3339_ms(now),
                "deletedBy": user.id,
                "finalStats": {
                    "duration": whole_secs(s.duration_ms()),
                    "messageCount": s.message_count,
                    "tokenUsage": token_usage(&s),
                    "averageResponseTime": average_response(&s),
                    "successRate": success_rate(&s),
                },
            }),
            "session deleted",
        ),
    ))
}

// ---- GET /api/realtime/models, /stream, /stats ----

pub async fn models(State(state): State<AppState>, user: RtUser) -> Response {
    respond((|| {
        user.admit(&state.realtime)?;
        Ok((StatusCode::OK, ok(report::models(&state), "models listed")))
    })())
}

pub async fn stream(State(state): State<AppState>, user: RtUser) -> Response {
    respond((|| {
        user.admit(&state.realtime)?;
        Ok((
            StatusCode::OK,
            ok(report::stream(&state), "stream information"),
        ))
    })())
}

pub async fn stats(
    State(state): State<AppState>,
    user: RtUser,
    q: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    respond(
        async {
            let q = query(q)?;
            user.admit(&state.realtime)?;
            let data = report::stats(&state, &user, &q).await?;
            Ok((StatusCode::OK, ok(data, "realtime statistics")))
        }
        .await,
    )
}
