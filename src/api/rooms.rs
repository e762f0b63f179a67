//! Room records: `POST /api/rooms` (needs the roomCreate grant), `GET /api/rooms`,
//! `GET /api/rooms/{name}`.
//!
//! One room model: a stored room is the room the SFU runs under that name. The signal edge looks it
//! up before a join ([`open_as`]): the live room opens with the stored sid and `max_participants`.
//! When the live room closes (its last participant left and `room.empty_timeout_secs` passed), the
//! stored room is closed (`closed_at`); a later join to the name opens an ad-hoc room (a fresh sid,
//! the configured limit), and `POST /api/rooms` may create the name again (a new sid).

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult};
use crate::sfu::worker::RoomSpec;
use crate::state::AppState;
use crate::store::{RoomRecord, StoreError};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/rooms", get(list).post(create))
        .route("/api/rooms/{name}", get(get_one))
}

/// How a join to `name` opens its live room: as the open stored room of that name, if any.
pub async fn open_as(store: &crate::store::Store, name: &str) -> Option<RoomSpec> {
    match store.get_room(name).await {
        Ok(r) if r.closed_at.is_none() => Some(RoomSpec {
            sid: r.sid,
            max_participants: usize::try_from(r.max_participants).unwrap_or(0),
            departure_timeout_secs: u32::try_from(r.departure_timeout_secs).unwrap_or(0),
            metadata: r.metadata,
        }),
        Ok(_) | Err(crate::store::StoreError::NotFound) => None,
        Err(e) => {
            tracing::warn!(room = %name, error = %e, "cannot look up the stored room; opening ad hoc");
            None
        }
    }
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
        "closed_at": r.closed_at,
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
    let new = NewRoom {
        name: body.name,
        max_participants: body.max_participants.map(i64::from),
        ..Default::default()
    };
    let rec = match create_room(&state, new).await? {
        Created::New(rec) => rec,
        Created::Exists(_) => {
            return Err(ApiError::conflict(
                "room_exists",
                "a room with this name already exists",
            ))
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({ "success": true, "room": room_json(&rec) })),
    ))
}

/// What [`create_room`] did.
pub enum Created {
    New(RoomRecord),
    /// An open room of that name exists (its record).
    Exists(RoomRecord),
}

/// A room to store (see [`create_room`]).
#[derive(Debug, Default, Clone)]
pub struct NewRoom {
    /// Already validated ([`validate_room_name`]).
    pub name: String,
    /// Absent or 0: the configured limit, which also caps any value given.
    pub max_participants: Option<i64>,
    /// Seconds the room stays open while nobody joins it (0: until closed).
    pub empty_timeout_secs: u32,
    /// Seconds the live room stays open after its last participant left (0: the server default).
    pub departure_timeout_secs: u32,
    pub metadata: String,
}

/// Store a new room. A closed room's name is free again: its record is replaced. The SFU opens the
/// stored room on its first join.
pub async fn create_room(state: &AppState, new: NewRoom) -> Result<Created, StoreError> {
    let cap = state.config.room.max_participants;
    let max = match new.max_participants {
        Some(m) if m > 0 => (m as usize).min(cap),
        _ => cap,
    };
    let rec = RoomRecord {
        name: new.name,
        sid: crate::ids::new_id("RM_"),
        created_at: state.clock.unix_ms(),
        closed_at: None,
        max_participants: max as i64,
        empty_timeout_secs: i64::from(new.empty_timeout_secs),
        departure_timeout_secs: i64::from(new.departure_timeout_secs),
        metadata: new.metadata,
    };
    match state.store.insert_room(&rec).await {
        Ok(()) => return Ok(Created::New(rec)),
        Err(StoreError::Conflict(_)) => {}
        Err(e) => return Err(e),
    }
    match state.store.get_room(&rec.name).await {
        Ok(old) if old.closed_at.is_some() => {}
        Ok(old) => return Ok(Created::Exists(old)),
        Err(e) => return Err(e),
    }
    match state.store.delete_room(&rec.name).await {
        Ok(()) | Err(StoreError::NotFound) => {}
        Err(e) => return Err(e),
    }
    match state.store.insert_room(&rec).await {
        Ok(()) => Ok(Created::New(rec)),
        // Lost a race with another create of the same name.
        Err(StoreError::Conflict(_)) => state.store.get_room(&rec.name).await.map(Created::Exists),
        Err(e) => Err(e),
    }
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

/// `GET /api/rooms/{name}` (any valid token): the stored room, open or closed.
async fn get_one(
    State(state): State<AppState>,
    _user: AuthUser,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    validate_room_name(&name)?;
    match state.store.get_room(&name).await {
        Ok(r) => Ok(Json(json!({ "success": true, "room": room_json(&r) }))),
        Err(StoreError::NotFound) => Err(ApiError::not_found(
            "room_not_found",
            "no room with this name has been created",
        )),
        Err(e) => Err(e.into()),
    }
}

/// How often stored rooms whose `empty_timeout` ran out are looked for.
const UNUSED_SWEEP: std::time::Duration = std::time::Duration::from_secs(1);

/// Close stored rooms created with an `empty_timeout` (RoomService.CreateRoom) that nobody joined
/// within it. A room that is live is left to the SFU (its `departure_timeout` applies after the
/// last participant leaves, and its close closes the stored room).
pub fn spawn_unused_room_sweep(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UNUSED_SWEEP);
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let now = state.clock.unix_ms();
            let expired = match state.store.expired_unused_rooms(now).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read rooms for the empty-timeout sweep");
                    continue;
                }
            };
            for r in expired {
                if state.sfu.room_worker(&r.name).is_some() {
                    continue;
                }
                match state.store.close_room(&r.name, now).await {
                    Ok(()) => tracing::info!(
                        room = %r.name,
                        empty_timeout = r.empty_timeout_secs,
                        "room closed: nobody joined within its empty timeout"
                    ),
                    Err(StoreError::NotFound) => {}
                    Err(e) => tracing::warn!(room = %r.name, error = %e, "cannot close room"),
                }
            }
        }
    });
}
