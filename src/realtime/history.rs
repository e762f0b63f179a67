//! Session history endpoints: `POST /api/realtime/sessions/{session_id}/resume` (a new token
//! generation and the message history) and `GET /api/realtime/sessions/{session_id}/history`
//! (filters, sorting, pagination and a summary of the selected messages).

use super::api::{
    connection_info, err, int_param, load_for, metadata_value, not_found, ok, order_param, query,
    respond, validation, RtResult, RtUser, HISTORY_REPLAY,
};
use super::sessions::close;
use crate::state::AppState;
use crate::store::{RtMessageQuery, RtMessageRecord};
use crate::timefmt::{rfc3339_ms, whole_secs};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

fn history_json(m: &RtMessageRecord) -> Value {
    json!({
        "id": m.id,
        "role": m.role,
        "content": m.content,
        "timestamp": rfc3339_ms(m.created_at),
        "tokenCount": m.token_count,
    })
}

pub async fn resume(
    State(state): State<AppState>,
    user: RtUser,
    Path(id): Path<String>,
) -> Response {
    respond(resume_inner(&state, &user, &id).await)
}

async fn resume_inner(
    state: &AppState,
    user: &RtUser,
    id: &str,
) -> RtResult<(StatusCode, Json<Value>)> {
    user.admit(&state.realtime)?;
    let s = load_for(state, id, user, "INTERNAL_ERROR").await?;
    let rt = &state.realtime;
    if let Some(model) = rt.model(&s.model) {
        if let crate::realtime::provider::Availability::Unavailable { reason } =
            rt.availability(model)
        {
            return Err(err(
                StatusCode::SERVICE_UNAVAILABLE,
                "MODEL_NOT_AVAILABLE",
                format!("model `{}` is not available: {reason}", model.id),
            ));
        }
    } else {
        return Err(err(
            StatusCode::SERVICE_UNAVAILABLE,
            "MODEL_NOT_AVAILABLE",
            format!("model `{}` is no longer in the catalogue", s.model),
        ));
    }
    let now = state.clock.unix_ms();
    let expires = now + (rt.config.token_ttl_secs as i64) * 1000;
    let db = |e: crate::store::StoreError| {
        err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            format!("database error: {e}"),
        )
    };
    let s = state
        .store
        .resume_rt_session(&s.id, now, expires)
        .await
        .map_err(db)?
        .ok_or_else(not_found)?;
    // The live socket, if any, used a token of the older generation.
    rt.kick(
        &s.id,
        close::UNAUTHORIZED,
        "token revoked: the session was resumed",
    );
    let history = state
        .store
        .recent_rt_messages(&s.id, HISTORY_REPLAY)
        .await
        .map_err(db)?;
    let info = connection_info(state, &s)?;
    tracing::info!(session = %s.id, generation = s.token_generation, "model session resumed");
    Ok((
        StatusCode::OK,
        ok(
            json!({
                "id": s.id,
                "status": "active",
                "resumedAt": rfc3339_ms(now),
                "connectionInfo": info,
                "sessionData": {
                    "model": s.model,
                    "temperature": s.temperature,
                    "maxTokens": s.max_tokens,
                    "messageHistory": history.iter().map(history_json).collect::<Vec<_>>(),
                },
                "usage": {
                    "tokenCount": s.prompt_tokens + s.completion_tokens,
                    "messageCount": s.message_count,
                    "duration": whole_secs(s.duration_ms()),
                },
            }),
            "session resumed",
        ),
    ))
}

// ---- GET /api/realtime/sessions/{session_id}/history ----

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct HistoryQuery {
    page: Option<String>,
    limit: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
    sort_by: Option<String>,
    sort_order: Option<String>,
}

/// An RFC 3339 time or unix milliseconds.
pub fn time_param(name: &str, v: Option<&str>) -> RtResult<Option<i64>> {
    let Some(v) = v else { return Ok(None) };
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(Some(ms));
    }
    crate::timefmt::parse_rfc3339(v).map(Some).ok_or_else(|| {
        validation(format!(
            "{name} must be an RFC 3339 time (2024-01-15T10:30:00Z) or unix ms"
        ))
    })
}

pub async fn history(
    State(state): State<AppState>,
    user: RtUser,
    Path(id): Path<String>,
    q: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    respond(history_inner(&state, &user, &id, q).await)
}

async fn history_inner(
    state: &AppState,
    user: &RtUser,
    id: &str,
    q: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> RtResult<(StatusCode, Json<Value>)> {
    let q = query(q)?;
    user.admit(&state.realtime)?;
    let s = load_for(state, id, user, "INTERNAL_ERROR").await?;
    let page = int_param("page", q.page.as_deref(), 1, 1, 1_000_000)?;
    let limit = int_param("limit", q.limit.as_deref(), 50, 1, 200)?;
    let start = time_param("startDate", q.start_date.as_deref())?;
    let end = time_param("endDate", q.end_date.as_deref())?;
    if let (Some(a), Some(b)) = (start, end) {
        if a > b {
            return Err(validation("startDate is after endDate"));
        }
    }
    let sort_by = q.sort_by.unwrap_or_else(|| "timestamp".into());
    if crate::store::message_sort_column(&sort_by).is_none() {
        return Err(validation("sortBy must be timestamp, tokenCount or role"));
    }
    let mq = RtMessageQuery {
        session_id: s.id.clone(),
        start,
        end,
        sort_by,
        descending: order_param(q.sort_order.as_deref(), false)?,
        limit,
        offset: (page - 1) * limit,
    };
    let (rows, sum) = state.store.list_rt_messages(&mq).await.map_err(|e| {
        err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            format!("database error: {e}"),
        )
    })?;
    let messages: Vec<Value> = rows
        .iter()
        .map(|m| {
            let mut v = history_json(m);
            v["metadata"] = metadata_value(&m.metadata);
            v
        })
        .collect();
    Ok((
        StatusCode::OK,
        ok(
            json!({
                "sessionId": s.id,
                "messages": messages,
                "pagination": {
                    "page": page,
                    "limit": limit,
                    "total": sum.total,
                    "pages": (sum.total + limit - 1) / limit,
                },
                "summary": {
                    "totalMessages": sum.total,
                    "userMessages": sum.user,
                    "assistantMessages": sum.assistant,
                    "totalTokens": sum.tokens,
                    "averageResponseTime": sum.average_response_ms.map(|a| a.round() as i64),
                    "sessionDuration": whole_secs(s.duration_ms()),
                },
            }),
            "session history",
        ),
    ))
}
