//! Calls: `POST /api/calls`, `GET /api/calls`, `GET|DELETE /api/calls/{call_id}`,
//! `POST /api/calls/{call_id}/invite`, `POST /api/calls/{call_id}/join`,
//! `GET /api/calls/{call_id}/participants`.
//!
//! A call is backed by an SFU room named after the call id. Its status follows the room: `ringing`
//! until the first participant's media connects (`active`), then `completed` (with `ended_at` and
//! `duration`) when the last participant leaves; a call nobody connected to ends `missed`.

use super::util::{
    check_id, check_opt_id, join_credentials, limit, validation, JsonBody, OptionalJsonBody,
};
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiPath, ApiQuery, ApiResult};
use crate::product::call_view::call_json;
use crate::state::AppState;
use crate::store::{CallRecord, StoreError};
use crate::timefmt::rfc3339_ms;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/calls", get(list).post(create))
        .route("/api/calls/{call_id}", get(get_one).delete(delete))
        .route("/api/calls/{call_id}/invite", post(invite))
        .route("/api/calls/{call_id}/join", post(join))
        .route("/api/calls/{call_id}/participants", get(participants))
        .route("/api/calls/{call_id}/ice-servers", get(ice_servers))
}

fn call_not_found() -> ApiError {
    ApiError::not_found("call_not_found", "the specified call does not exist")
}

fn check_call_type(t: &str) -> ApiResult<()> {
    if matches!(t, "audio" | "video") {
        Ok(())
    } else {
        Err(validation("call_type must be \"audio\" or \"video\""))
    }
}

/// Load a call `user` belongs to: 404 `call_not_found`, 403 `not_authorized`.
pub(crate) async fn load_for(state: &AppState, call_id: &str, user: &str) -> ApiResult<CallRecord> {
    check_id("call_id", call_id)?;
    let call = match state.store.get_call(call_id).await {
        Ok(c) => c,
        Err(StoreError::NotFound) => return Err(call_not_found()),
        Err(e) => return Err(e.into()),
    };
    if state.store.call_member(call_id, user).await?.is_none() {
        return Err(ApiError::forbidden("you are not a member of this call"));
    }
    Ok(call)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateCall {
    #[serde(default, alias = "type")]
    call_type: Option<String>,
    #[serde(default)]
    conversation_id: Option<String>,
    /// Record the call automatically once media flows.
    #[serde(default)]
    record: Option<bool>,
}

async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    OptionalJsonBody(body): OptionalJsonBody<CreateCall>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let call_type = body.call_type.unwrap_or_else(|| "video".into());
    check_call_type(&call_type)?;
    check_opt_id("conversation_id", body.conversation_id.as_deref())?;
    let now = state.clock.unix_ms();
    let call = CallRecord {
        id: crate::ids::new_id(crate::product::CALL_PREFIX),
        call_type,
        conversation_id: body.conversation_id,
        created_by: user.id().to_string(),
        status: "ringing".into(),
        created_at: now,
        started_at: None,
        ended_at: None,
        duration_ms: None,
        auto_record: body.record.unwrap_or(false),
    };
    state.store.insert_call(&call).await?;
    let (url, token) = join_credentials(&state, user.id(), &call.id)?;
    let members = state.store.call_members(&call.id).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "success": true,
            "call_id": call.id,
            "call": call_json(&call, &members),
            "url": url,
            "token": token,
        })),
    ))
}

#[derive(Deserialize)]
struct ListQuery {
    conversation_id: Option<String>,
    before: Option<i64>,
    limit: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    check_opt_id("conversation_id", q.conversation_id.as_deref())?;
    let calls = state
        .store
        .list_calls_for_user(
            user.id(),
            q.conversation_id.as_deref(),
            q.before,
            limit(q.limit, 20, 100),
        )
        .await?;
    // One query for every call's members (not one per call).
    let ids: Vec<&str> = calls.iter().map(|c| c.id.as_str()).collect();
    let members = state.store.call_members_many(&ids).await?;
    let out: Vec<Value> = calls
        .iter()
        .map(|c| call_json(c, members.get(&c.id).map_or(&[][..], |m| m.as_slice())))
        .collect();
    Ok(Json(json!({
        "success": true,
        "calls": out,
        "count": out.len(),
        // Pass as `before` to get the next (older) page.
        "next_before": calls.last().map(|c| c.created_at),
    })))
}

async fn get_one(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(call_id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let call = load_for(&state, &call_id, user.id()).await?;
    let members = state.store.call_members(&call.id).await?;
    let live = state.participants(&call.id).await.len();
    let mut v = call_json(&call, &members);
    v["participant_count"] = json!(live);
    Ok(Json(json!({ "success": true, "call": v })))
}

/// Deletes the record only: a live call's room goes on.
async fn delete(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(call_id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let call = load_for(&state, &call_id, user.id()).await?;
    if call.created_by != user.id() {
        return Err(ApiError::forbidden("only the call's creator can delete it"));
    }
    match state.store.delete_call(&call.id).await {
        Ok(()) | Err(StoreError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Json(
        json!({ "success": true, "call_id": call.id, "deleted": true }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteBody {
    user_id: String,
    #[serde(default)]
    call_type: Option<String>,
}

async fn invite(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(call_id): ApiPath<String>,
    JsonBody(body): JsonBody<InviteBody>,
) -> ApiResult<Json<Value>> {
    check_id("user_id", &body.user_id)?;
    if let Some(t) = &body.call_type {
        check_call_type(t)?;
    }
    let call = load_for(&state, &call_id, user.id()).await?;
    if call.is_over() {
        return Err(ApiError::conflict(
            "call_not_active",
            format!("the call has ended ({})", call.status),
        ));
    }
    if body.user_id == user.id() {
        return Err(validation("you cannot invite yourself"));
    }
    let now = state.clock.unix_ms();
    state
        .store
        .add_call_invitee(&call.id, &body.user_id, user.id(), now)
        .await?;
    let call_type = body.call_type.unwrap_or_else(|| call.call_type.clone());
    let payload = json!({
        "type": "call.invite",
        "call_id": call.id,
        "call_type": call_type,
        "conversation_id": call.conversation_id,
        "from": user.id(),
    });
    let sent = state
        .product
        .notify_user(&state.store, &body.user_id, "call_invite", &payload, now)
        .await?;
    state.product.push(&body.user_id, &payload);
    Ok(Json(json!({
        "success": true,
        "call_id": call.id,
        "invited_user": body.user_id,
        "notified_devices": sent.len(),
    })))
}

/// Join credentials for a member of a call that has not ended.
async fn join(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(call_id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let call = load_for(&state, &call_id, user.id()).await?;
    if call.is_over() {
        return Err(ApiError::conflict(
            "call_not_active",
            format!("the call has ended ({})", call.status),
        ));
    }
    let (url, token) = join_credentials(&state, user.id(), &call.id)?;
    Ok(Json(json!({
        "success": true,
        "call_id": call.id,
        "url": url,
        "token": token,
    })))
}

async fn participants(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(call_id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let call = load_for(&state, &call_id, user.id()).await?;
    let ps: Vec<Value> = state
        .participants(&call.id)
        .await
        .iter()
        .map(|p| {
            json!({
                "user_id": p.identity,
                "name": p.name,
                "joined_at": rfc3339_ms(p.joined_at_ms),
                "joined_at_ms": p.joined_at_ms,
                "media_connected": p.media_connected_at_ms.is_some(),
                "media": { "audio": p.audio, "video": p.video },
            })
        })
        .collect();
    Ok(Json(json!({
        "success": true,
        "call_id": call.id,
        "status": call.status,
        "participants": ps,
        "count": ps.len(),
    })))
}

/// ICE servers (STUN + TURN with REST credentials for the caller) for a call's members.
async fn ice_servers(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(call_id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let call = load_for(&state, &call_id, user.id()).await?;
    Ok(Json(json!({
        "success": true,
        "call_id": call.id,
        "ice_servers": state.ice().ice_servers(user.id()),
        "ttl": state.config.turn.ttl_secs,
    })))
}
