//! Room records: `POST /api/rooms` (needs the roomCreate grant), `GET /api/rooms`.

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiJson, ApiQuery, ApiResult};
use crate::state::AppState;
use crate::store::RoomRecord;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/rooms", get(list).post(create))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRoom {
    name: String,
    #[serde(default)]
    max_participants: Option<u32>,
}

/// Room names: 1-128 chars of [A-Za-z0-9_-.:].
pub fn validate_room_name(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_room_name",
            "room name must be 1-128 characters of letters, digits, '_', '-', '.', ':'",
        ))
    }
}

fn room_json(r: &RoomRecord) -> Value {
    json!({
        "name": r.name,
        "sid": r.sid,
        "created_at": r.created_at,
        "max_participants": r.max_participants,
    })
}

async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<CreateRoom>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if !user.claims.video().room_create {
        return Err(ApiError::forbidden("token lacks the roomCreate grant"));
    }
    validate_room_name(&body.name)?;
    let max = body
        .max_participants
        .map(|m| m as usize)
        .unwrap_or(state.config.room.max_participants)
        .min(state.config.room.max_participants);
    let rec = RoomRecord {
        name: body.name,
        sid: crate::ids::new_id("RM_"),
        created_at: state.clock.unix_ms(),
        closed_at: None,
        max_participants: max as i64,
    };
    state.store.insert_room(&rec).await.map_err(|e| match e {
        crate::store::StoreError::Conflict(_) => {
            ApiError::conflict("room_exists", "a room with this name already exists")
        }
        e => e.into(),
    })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "success": true, "room": room_json(&rec) })),
    ))
}

#[derive(Deserialize)]
struct ListQuery {
    before: Option<i64>,
    limit: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    _user: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let rooms = state.store.list_open_rooms(q.before, limit).await?;
    let rooms: Vec<Value> = rooms.iter().map(room_json).collect();
    Ok(Json(
        json!({ "success": true, "count": rooms.len(), "rooms": rooms }),
    ))
}
