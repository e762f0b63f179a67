//! Huddles: `POST /api/huddles`, `GET /api/huddles/{huddle_id}`, `POST .../invite`, `POST .../join`,
//! `POST .../leave`. A huddle is backed by an SFU room named after the huddle id; at most
//! `room.max_huddle_size` participants (`huddle_full`).

use super::util::{check_id, check_opt_id, check_text, join_credentials, validation, JsonBody};
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiPath, ApiResult};
use crate::state::AppState;
use crate::store::{HuddleMember, HuddleRecord, JoinOutcome, StoreError};
use crate::timefmt::{opt, rfc3339_ms};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/huddles", post(create))
        .route("/api/huddles/{huddle_id}", get(get_one))
        .route("/api/huddles/{huddle_id}/invite", post(invite))
        .route("/api/huddles/{huddle_id}/join", post(join))
        .route("/api/huddles/{huddle_id}/leave", post(leave))
}

/// Most user ids one invite request may carry.
pub const MAX_INVITES_PER_REQUEST: usize = 100;

fn huddle_json(
    state: &AppState,
    h: &HuddleRecord,
    members: &[HuddleMember],
    live: &[crate::sfu::ParticipantSnapshot],
) -> Value {
    let participants: Vec<Value> = members
        .iter()
        .filter(|m| m.in_huddle)
        .map(|m| {
            let p = live.iter().find(|p| p.identity == m.user_id);
            json!({
                "user_id": m.user_id,
                "joined_at": opt(m.joined_at),
                "connected": p.is_some_and(|p| p.media_connected_at_ms.is_some()),
                "media": {
                    "audio": p.is_some_and(|p| p.audio),
                    "video": p.is_some_and(|p| p.video),
                },
            })
        })
        .collect();
    let status = if !participants.is_empty() {
        "active"
    } else if h.ended_at.is_some() {
        "ended"
    } else {
        "idle"
    };
    json!({
        "id": h.id,
        "name": h.name,
        "workspace_id": h.workspace_id,
        "channel_id": h.channel_id,
        "created_by": h.created_by,
        "created_at": rfc3339_ms(h.created_at),
        "started_at": opt(h.started_at),
        "ended_at": opt(h.ended_at),
        "status": status,
        "participants": participants,
        "members": members.iter().map(|m| m.user_id.clone()).collect::<Vec<_>>(),
        "max_participants": state.config.room.max_huddle_size,
    })
}

fn huddle_not_found() -> ApiError {
    ApiError::not_found("huddle_not_found", "the specified huddle does not exist")
}

/// Load a huddle `user` is a member of: 404 `huddle_not_found`, 403 `not_authorized`.
async fn load_for(state: &AppState, id: &str, user: &str) -> ApiResult<HuddleRecord> {
    check_id("huddle_id", id)?;
    let h = match state.store.get_huddle(id).await {
        Ok(h) => h,
        Err(StoreError::NotFound) => return Err(huddle_not_found()),
        Err(e) => return Err(e.into()),
    };
    if state.store.huddle_member(id, user).await?.is_none() {
        return Err(ApiError::forbidden(
            "you are not a member of this huddle (ask a member to invite you)",
        ));
    }
    Ok(h)
}

async fn view(state: &AppState, h: &HuddleRecord) -> ApiResult<Value> {
    let members = state.store.huddle_members(&h.id).await?;
    let live = state.participants(&h.id).await;
    Ok(huddle_json(state, h, &members, &live))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateHuddle {
    name: String,
    #[serde(default)]
    workspace_id: Option<String>,
    #[serde(default)]
    channel_id: Option<String>,
}

async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    JsonBody(body): JsonBody<CreateHuddle>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = body.name.trim().to_string();
    if name.is_empty() {
        return Err(validation("name must not be empty"));
    }
    check_text("name", &name, 100)?;
    check_opt_id("workspace_id", body.workspace_id.as_deref())?;
    check_opt_id("channel_id", body.channel_id.as_deref())?;
    let h = HuddleRecord {
        id: crate::ids::new_id(crate::product::HUDDLE_PREFIX),
        name,
        workspace_id: body.workspace_id,
        channel_id: body.channel_id,
        created_by: user.id().to_string(),
        created_at: state.clock.unix_ms(),
        started_at: None,
        ended_at: None,
    };
    state.store.insert_huddle(&h).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "success": true, "huddle": view(&state, &h).await? })),
    ))
}

async fn get_one(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let h = load_for(&state, &id, user.id()).await?;
    Ok(Json(
        json!({ "success": true, "huddle": view(&state, &h).await? }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteBody {
    user_ids: Vec<String>,
}

async fn invite(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
    JsonBody(body): JsonBody<InviteBody>,
) -> ApiResult<Json<Value>> {
    if body.user_ids.is_empty() || body.user_ids.len() > MAX_INVITES_PER_REQUEST {
        return Err(validation(format!(
            "user_ids must hold 1-{MAX_INVITES_PER_REQUEST} user ids"
        )));
    }
    for u in &body.user_ids {
        check_id("user_ids[]", u)?;
    }
    let h = load_for(&state, &id, user.id()).await?;
    let now = state.clock.unix_ms();
    let mut ids = body.user_ids.clone();
    ids.sort();
    ids.dedup();
    let added = state
        .store
        .add_huddle_invitees(&h.id, &ids, user.id(), now)
        .await?;
    for u in &added {
        let payload = json!({
            "type": "huddle.invite",
            "huddle_id": h.id,
            "name": h.name,
            "workspace_id": h.workspace_id,
            "channel_id": h.channel_id,
            "from": user.id(),
        });
        state
            .product
            .notify_user(&state.store, u, "huddle_invite", &payload, now)
            .await?;
        state.product.push(u, &payload);
    }
    Ok(Json(json!({
        "success": true,
        "huddle_id": h.id,
        "invited_users": added,
    })))
}

async fn join(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let h = load_for(&state, &id, user.id()).await?;
    let max = state.config.room.max_huddle_size as i64;
    let outcome = state
        .store
        .join_huddle(&h.id, user.id(), max, state.clock.unix_ms(), false)
        .await?;
    if outcome == JoinOutcome::Full {
        return Err(ApiError::conflict(
            "huddle_full",
            format!("the huddle has reached its maximum of {max} participants"),
        ));
    }
    let (url, token) = join_credentials(&state, user.id(), &h.id)?;
    let h = state.store.get_huddle(&h.id).await?;
    Ok(Json(json!({
        "success": true,
        "huddle_id": h.id,
        "url": url,
        "token": token,
        "huddle": view(&state, &h).await?,
    })))
}

async fn leave(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let h = load_for(&state, &id, user.id()).await?;
    let left = state
        .store
        .leave_huddle(&h.id, user.id(), state.clock.unix_ms())
        .await?;
    let h = state.store.get_huddle(&h.id).await?;
    Ok(Json(json!({
        "success": true,
        "huddle_id": h.id,
        "left": left,
        "huddle": view(&state, &h).await?,
    })))
}
