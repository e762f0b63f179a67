//! Presence: `GET /api/presence/ws` (the presence WebSocket), `PUT /api/presence` (own status),
//! `GET /api/presence/online`, `GET|POST /api/presence/typing/{conversation_id}`,
//! `GET /api/presence/{user_id}`.
//!
//! A user is online while at least one presence WebSocket of theirs is open, they are a participant
//! of an SFU room, or a `PUT /api/presence` of theirs is younger than `presence.rest_ttl_secs`
//! (REST clients need no socket; each PUT renews it); `away` when they said so; offline (with
//! `last_seen`) otherwise. The presence
//! WebSocket also carries live pushes (chat messages, typing, invitations).
//!
//! Presence WebSocket protocol (JSON text frames):
//! - connect: `GET /api/presence/ws?access_token=JWT&device_id=web:abc&workspace_id=ws1,ws2`
//!   (or an `Authorization: Bearer` header); the server sends
//!   `{"type":"hello","user_id","status","heartbeat_interval"}`.
//! - client → server: `{"type":"ping"}` (answered `{"type":"pong","timestamp"}`),
//!   `{"type":"status","status":"online"|"away","custom_message"?,"emoji"?}` (answered with the new
//!   presence), `{"type":"typing","conversation_id","typing":true|false}`.
//! - server → client: `chat.message`, `typing`, `call.invite`, `huddle.invite`, `error`.

use super::util::{check_id, check_text, limit, validation, JsonBody, OptionalJsonBody};
use crate::auth::{bearer, AuthUser};
use crate::error::{ApiError, ApiPath, ApiQuery, ApiResult};
use crate::state::AppState;
use crate::store::{PresenceRecord, StoreError};
use crate::timefmt::{opt, rfc3339_ms};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/presence", axum::routing::put(set_status_rest))
        .route("/api/presence/ws", get(ws))
        .route("/api/presence/online", get(online))
        .route(
            "/api/presence/typing/{conversation_id}",
            get(typing_get).post(typing_set_rest),
        )
        .route("/api/presence/{user_id}", get(get_user))
}

/// Seconds between client pings the server suggests.
pub const HEARTBEAT_INTERVAL_SECS: u64 = 30;
pub const MAX_CUSTOM_MESSAGE: usize = 256;
pub const MAX_EMOJI: usize = 32;

async fn presence_json(state: &AppState, user: &str) -> ApiResult<Value> {
    let rec = state.store.get_presence(user).await?.unwrap_or_default();
    let now = state.clock.unix_ms();
    let live = state.product.presence_all(user, now).await;
    let last_seen = if live.status == "offline" {
        rec.last_seen
    } else {
        Some(now)
    };
    Ok(json!({
        "user_id": user,
        "status": live.status,
        "custom_message": rec.custom_message,
        "emoji": rec.emoji,
        "last_seen": opt(last_seen),
        "devices": live.devices.iter().map(|d| json!({
            "id": d.id,
            "timestamp": d.connected_at_ms / 1000,
        })).collect::<Vec<_>>(),
        "in_rooms": live.rooms,
    }))
}

async fn get_user(
    State(state): State<AppState>,
    _user: AuthUser,
    ApiPath(user_id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    check_id("user_id", &user_id)?;
    Ok(Json(json!({
        "success": true,
        "presence": presence_json(&state, &user_id).await?,
    })))
}

#[derive(Deserialize)]
struct OnlineQuery {
    workspace_id: Option<String>,
    limit: Option<i64>,
}

async fn online(
    State(state): State<AppState>,
    _user: AuthUser,
    ApiQuery(q): ApiQuery<OnlineQuery>,
) -> ApiResult<Json<Value>> {
    super::util::check_opt_id("workspace_id", q.workspace_id.as_deref())?;
    let (users, total) = state
        .product
        .online_users_all(
            q.workspace_id.as_deref(),
            limit(q.limit, 50, 500) as usize,
            state.clock.unix_ms(),
        )
        .await;
    Ok(Json(json!({
        "success": true,
        "users": users.iter().map(|(u, s)| json!({"user_id": u, "status": s})).collect::<Vec<_>>(),
        "total": total,
    })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StatusBody {
    /// `online` (automatic) or `away`.
    #[serde(default)]
    status: Option<String>,
    /// Empty string clears it; absent keeps it.
    #[serde(default)]
    custom_message: Option<String>,
    #[serde(default)]
    emoji: Option<String>,
}

/// Set `user`'s status. `rest`: it came from `PUT /api/presence`, which also declares the user
/// present for `presence.rest_ttl_secs` (no presence WebSocket needed) and records `last_seen`.
async fn set_status(
    state: &AppState,
    user: &str,
    body: StatusBody,
    rest: bool,
) -> ApiResult<Value> {
    if let Some(s) = &body.status {
        if !matches!(s.as_str(), "online" | "away") {
            return Err(validation("status must be \"online\" or \"away\""));
        }
    }
    if let Some(m) = &body.custom_message {
        check_text("custom_message", m, MAX_CUSTOM_MESSAGE)?;
    }
    if let Some(e) = &body.emoji {
        check_text("emoji", e, MAX_EMOJI)?;
    }
    let mut rec = state
        .store
        .get_presence(user)
        .await?
        .unwrap_or_else(|| PresenceRecord {
            user_id: user.to_string(),
            ..Default::default()
        });
    let non_empty = |s: String| (!s.is_empty()).then_some(s);
    if let Some(s) = body.status {
        rec.manual_status = (s == "away").then_some(s);
    }
    if let Some(m) = body.custom_message {
        rec.custom_message = non_empty(m);
    }
    if let Some(e) = body.emoji {
        rec.emoji = non_empty(e);
    }
    state.store.set_presence_status(&rec).await?;
    state
        .product
        .set_manual_status(user, rec.manual_status.clone());
    if rest {
        let now = state.clock.unix_ms();
        let ttl_ms = state.config.presence.rest_ttl_secs.saturating_mul(1000);
        let until = now.saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX));
        state.store.set_last_seen(user, now).await?;
        state
            .product
            .rest_present(user, rec.manual_status.clone(), until);
    }
    presence_json(state, user).await
}

async fn set_status_rest(
    State(state): State<AppState>,
    user: AuthUser,
    JsonBody(body): JsonBody<StatusBody>,
) -> ApiResult<Json<Value>> {
    let p = set_status(&state, user.id(), body, true).await?;
    Ok(Json(json!({ "success": true, "presence": p })))
}

/// Who may see / set typing in a conversation: members of the chat thread or call it names; any
/// authenticated user for other conversation ids.
async fn check_conversation_access(state: &AppState, conv: &str, user: &str) -> ApiResult<bool> {
    check_id("conversation_id", conv)?;
    match state.store.get_thread(conv).await {
        Ok(_) => {
            if !state.store.is_thread_member(conv, user).await? {
                return Err(ApiError::forbidden("you are not a member of this thread"));
            }
            return Ok(true);
        }
        Err(StoreError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    if conv.starts_with(crate::product::CALL_PREFIX)
        && state.store.get_call(conv).await.is_ok()
        && state.store.call_member(conv, user).await?.is_none()
    {
        return Err(ApiError::forbidden("you are not a member of this call"));
    }
    Ok(false)
}

async fn set_typing(state: &AppState, user: &str, conv: &str, typing: bool) -> ApiResult<()> {
    let is_thread = check_conversation_access(state, conv, user).await?;
    state
        .product
        .set_typing(conv, user, typing, state.clock.unix_ms());
    if is_thread {
        let msg = json!({
            "type": "typing",
            "conversation_id": conv,
            "user_id": user,
            "typing": typing,
        });
        for member in state.store.thread_users(conv).await? {
            if member != user {
                state.product.push(&member, &msg);
            }
        }
    }
    Ok(())
}

async fn typing_get(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(conv): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    check_conversation_access(&state, &conv, user.id()).await?;
    let users = state
        .product
        .typing_users_all(&conv, state.clock.unix_ms())
        .await;
    Ok(Json(json!({
        "success": true,
        "conversation_id": conv,
        "typing_users": users,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TypingBody {
    #[serde(default = "yes")]
    typing: bool,
}

fn yes() -> bool {
    true
}

impl Default for TypingBody {
    fn default() -> Self {
        TypingBody { typing: true }
    }
}

async fn typing_set_rest(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(conv): ApiPath<String>,
    OptionalJsonBody(body): OptionalJsonBody<TypingBody>,
) -> ApiResult<Json<Value>> {
    set_typing(&state, user.id(), &conv, body.typing).await?;
    Ok(Json(json!({
        "success": true,
        "conversation_id": conv,
        "typing": body.typing,
        "expires_in_ms": if body.typing { crate::product::TYPING_TTL_MS } else { 0 },
    })))
}

// ---- WebSocket ----

#[derive(Deserialize)]
struct WsQuery {
    access_token: Option<String>,
    device_id: Option<String>,
    workspace_id: Option<String>,
}

fn ws_user(state: &AppState, parts_token: Option<&str>) -> ApiResult<String> {
    let token = parts_token.ok_or_else(|| ApiError::unauthorized("missing access token"))?;
    let claims = state
        .keys
        .verify(token, state.clock.unix_secs())
        .map_err(|e| ApiError::unauthorized(format!("invalid token: {e}")))?;
    if claims.sub.is_empty() {
        return Err(ApiError::unauthorized("token has no identity (sub)"));
    }
    Ok(claims.sub)
}

/// Header token extractor that never rejects (the query parameter is the alternative).
pub struct MaybeBearer(Option<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for MaybeBearer {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(MaybeBearer(bearer(parts).map(str::to_string)))
    }
}

async fn ws(
    State(state): State<AppState>,
    MaybeBearer(header_token): MaybeBearer,
    ApiQuery(q): ApiQuery<WsQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let token = header_token.or(q.access_token);
    let user = match ws_user(&state, token.as_deref()) {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let device = q.device_id.unwrap_or_else(|| "unknown".into());
    if let Err(e) = check_id("device_id", &device) {
        return e.into_response();
    }
    let workspaces: Vec<String> = q
        .workspace_id
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    for w in &workspaces {
        if let Err(e) = check_id("workspace_id", w) {
            return e.into_response();
        }
    }
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(_) => {
            return ApiError::bad_request(
                "websocket_required",
                "this endpoint needs a WebSocket upgrade request",
            )
            .into_response()
        }
    };
    let max = state.config.limits.max_signal_message_bytes;
    upgrade
        .max_message_size(max)
        .on_upgrade(move |socket| run(socket, state, user, device, workspaces))
}

async fn run(
    mut socket: WebSocket,
    state: AppState,
    user: String,
    device: String,
    workspaces: Vec<String>,
) {
    let manual = state
        .store
        .get_presence(&user)
        .await
        .ok()
        .flatten()
        .and_then(|p| p.manual_status);
    let mut conn = state
        .product
        .connect(&user, &device, workspaces, manual, state.clock.unix_ms());
    let hello = json!({
        "type": "hello",
        "user_id": user,
        "device_id": device,
        "status": state.product.presence_all(&user, state.clock.unix_ms()).await.status,
        "heartbeat_interval": HEARTBEAT_INTERVAL_SECS,
    });
    let mut ok = socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_ok();
    let mut flood = crate::flood::FloodLimit::new(
        state.config.limits.max_presence_messages_per_sec,
        std::time::Instant::now(),
    );
    while ok {
        tokio::select! {
            _ = state.shutdown.cancelled() => {
                let _ = socket.send(Message::Close(None)).await;
                break;
            }
            out = conn.rx.recv() => match out {
                Some(text) => ok = socket.send(Message::Text(text.into())).await.is_ok(),
                None => break,
            },
            inbound = socket.recv() => match inbound {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) if !flood.admit(std::time::Instant::now()) => {
                    tracing::warn!(user, device, "presence socket flood; closing");
                    let _ = socket
                        .send(Message::Close(Some(CloseFrame {
                            code: crate::flood::CLOSE_CODE,
                            reason: "too many presence messages".into(),
                        })))
                        .await;
                    crate::flood::drain_until_closed(&mut socket).await;
                    break;
                }
                Some(Ok(Message::Text(text))) => {
                    let reply = handle_message(&state, &user, text.as_str()).await;
                    ok = socket.send(Message::Text(reply.to_string().into())).await.is_ok();
                }
                Some(Ok(Message::Binary(_))) => {
                    let reply = ws_error("invalid_message", "send JSON text frames");
                    ok = socket.send(Message::Text(reply.to_string().into())).await.is_ok();
                }
                Some(Ok(_)) => {} // ping/pong
            },
        }
    }
    // last_seen is stored before the user shows as offline.
    if state.product.would_go_offline(&user, Some(conn.id), None) {
        if let Err(e) = state
            .store
            .set_last_seen(&user, state.clock.unix_ms())
            .await
        {
            tracing::warn!(user, error = %e, "cannot record last_seen");
        }
    }
    state.product.disconnect(&user, conn.id);
}

fn ws_error(code: &str, message: impl Into<String>) -> Value {
    json!({ "type": "error", "code": code, "message": message.into() })
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum ClientMessage {
    Ping,
    Status {
        #[serde(default)]
        status: Option<String>,
        #[serde(default)]
        custom_message: Option<String>,
        #[serde(default)]
        emoji: Option<String>,
    },
    Typing {
        conversation_id: String,
        #[serde(default = "yes")]
        typing: bool,
    },
}

async fn handle_message(state: &AppState, user: &str, text: &str) -> Value {
    let msg: ClientMessage = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => return ws_error("invalid_message", e.to_string()),
    };
    let res = match msg {
        ClientMessage::Ping => {
            return json!({ "type": "pong", "timestamp": state.clock.unix_ms() });
        }
        ClientMessage::Status {
            status,
            custom_message,
            emoji,
        } => set_status(
            state,
            user,
            StatusBody {
                status,
                custom_message,
                emoji,
            },
            false,
        )
        .await
        .map(|p| json!({ "type": "presence", "presence": p })),
        ClientMessage::Typing {
            conversation_id,
            typing,
        } => set_typing(state, user, &conversation_id, typing)
            .await
            .map(|()| {
                json!({
                    "type": "typing.ack",
                    "conversation_id": conversation_id,
                    "typing": typing,
                    "at": rfc3339_ms(state.clock.unix_ms()),
                })
            }),
    };
    res.unwrap_or_else(|e| ws_error(e.code, e.message))
}
