//! The account's assistant calls: `GET /api/v1/calls` (newest first, `?limit&before`),
//! `GET /api/v1/calls/{call_id}`, `DELETE /api/v1/calls/{call_id}`.
//!
//! Only the account's secret credentials read or delete them ([`AccountAuth`]): a public key sits
//! in web pages, so anyone could use it to read the account's transcripts or wipe its history;
//! a request with one is refused with 401 and says what to use instead. As the seed insists,
//! `DELETE` removes the record only: a live call goes on, and is still finalized and charged
//! when the caller hangs up (the record stays hidden).

use super::{from_micros, not_found, seed_error, AccountAuth};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{AssistantCallRecord, StoreError};
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/calls", get(list))
        .route("/api/v1/calls/{call_id}", get(get_one).delete(delete))
}

fn store_err(e: StoreError) -> ApiError {
    seed_error(e.into())
}

fn call_not_found() -> ApiError {
    not_found("CALL_NOT_FOUND", "Call not found")
}

/// The call as the account sees it: the call row, its embed side, cost and recordings.
async fn view(state: &AppState, ac: &AssistantCallRecord, currency: &str) -> ApiResult<Value> {
    let call = state.store.get_call(&ac.call_id).await.map_err(store_err)?;
    let recordings = state
        .store
        .recording_ids_for_call(&ac.call_id)
        .await
        .map_err(store_err)?;
    let charge = state
        .store
        .call_charge(&ac.call_id)
        .await
        .map_err(store_err)?;
    // The transcript: the call's model session history (at most its last 500 turns).
    let transcript = match &ac.model_session_id {
        Some(sid) => state
            .store
            .recent_rt_messages(sid, 500)
            .await
            .map_err(store_err)?,
        None => Vec::new(),
    };
    Ok(json!({
        "id": call.id,
        "status": call.status,
        "assistantId": ac.assistant_id,
        "callerIdentity": ac.caller_identity,
        "origin": ac.origin,
        "metadata": serde_json::from_str::<Value>(&ac.metadata).unwrap_or(json!({})),
        "createdAt": crate::timefmt::rfc3339_ms(call.created_at),
        "startedAt": crate::timefmt::opt(call.started_at),
        "endedAt": crate::timefmt::opt(call.ended_at),
        "duration": call.duration_ms.map(crate::timefmt::whole_secs),
        "durationMs": call.duration_ms,
        "cost": ac.cost_micros.map(from_micros),
        "charged": charge.map(|c| from_micros(-c.amount_micros)),
        "currency": currency,
        "endReason": ac.end_reason,
        "sessionId": ac.model_session_id,
        "recordingId": recordings.last(),
        "recordingIds": recordings,
        "transcript": transcript.iter().map(|m| json!({
            "role": m.role,
            "content": m.content,
            "timestamp": crate::timefmt::rfc3339_ms(m.created_at),
            "tokenCount": m.token_count,
        })).collect::<Vec<_>>(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<i64>,
    /// `createdAt` cursor (unix ms): calls created before it.
    before: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    auth: AccountAuth,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q.map_err(|e| seed_error(e.into()))?;
    let limit = crate::api::util::limit(q.limit, 20, 100);
    let rows = state
        .store
        .list_assistant_calls(&auth.account.id, q.before, limit + 1)
        .await
        .map_err(store_err)?;
    let more = rows.len() as i64 > limit;
    let mut calls = Vec::with_capacity(rows.len());
    for ac in rows.iter().take(limit as usize) {
        calls.push(view(&state, ac, &auth.account.currency).await?);
    }
    let next = more
        .then(|| rows.get(limit as usize - 1).map(|r| r.created_at))
        .flatten();
    Ok(Json(json!({
        "success": true,
        "data": { "calls": calls, "hasMore": more, "nextBefore": next },
    })))
}

async fn load(state: &AppState, auth: &AccountAuth, id: &str) -> ApiResult<AssistantCallRecord> {
    if id.is_empty() || id.len() > 128 {
        return Err(call_not_found());
    }
    state
        .store
        .get_assistant_call(id)
        .await
        .map_err(store_err)?
        .filter(|c| c.account_id == auth.account.id && c.deleted_at.is_none())
        .ok_or_else(call_not_found)
}

async fn get_one(
    State(state): State<AppState>,
    auth: AccountAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let ac = load(&state, &auth, &id).await?;
    Ok(Json(json!({
        "success": true,
        "data": view(&state, &ac, &auth.account.currency).await?,
    })))
}

async fn delete(
    State(state): State<AppState>,
    auth: AccountAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    load(&state, &auth, &id).await?;
    let now = state.clock.unix_ms();
    match state
        .store
        .hide_assistant_call(&auth.account.id, &id, now)
        .await
    {
        Err(StoreError::NotFound) => Err(call_not_found()),
        other => {
            other.map_err(store_err)?;
            let live = state.sfu.room_worker(&id).is_some();
            Ok(Json(json!({
                "success": true,
                "data": {
                    "id": id,
                    "deleted": true,
                    "callEnded": false,
                    "live": live,
                    "message": if live {
                        "the record is deleted; the call goes on until the caller hangs up (room.disconnect())"
                    } else {
                        "the record is deleted"
                    },
                },
            })))
        }
    }
}
