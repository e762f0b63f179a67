//! Call recordings (rows written by the recorder): `GET /api/recordings`,
//! `GET|DELETE /api/recordings/{recording_id}`, `GET /api/recordings/{recording_id}/download`
//! (a URL with an expiring signed token) and `GET /api/recordings/{recording_id}/file?token=...`
//! (the file itself). Users see recordings of calls they belong to, and the ones they started.
//! `POST /api/calls/{call_id}/recording/start|stop` run the recorder (`crate::recorder`), a hidden
//! participant of the call's room.

use super::forwarded::Forwardable;
use super::util::{check_id, check_opt_id, limit};
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiPath, ApiQuery, ApiResult};
use crate::state::AppState;
use crate::store::{RecordingRecord, StoreError};
use crate::timefmt::{opt, rfc3339_ms};
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parlor_signaling::{AccessToken, TokenPurpose};
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::PathBuf;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/recordings", get(list))
        .route(
            "/api/recordings/{recording_id}",
            get(get_one).delete(delete),
        )
        .route("/api/recordings/{recording_id}/download", get(download))
        .route("/api/recordings/{recording_id}/file", get(file))
        .route("/api/calls/{call_id}/recording/status", get(call_status))
        .route("/api/calls/{call_id}/recording/start", post(start))
        .route("/api/calls/{call_id}/recording/stop", post(stop))
}

/// `POST /api/calls/{call_id}/recording/start` (members of an active call).
async fn start(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(call_id): ApiPath<String>,
    fwd: Forwardable,
) -> ApiResult<Response> {
    use crate::recorder::RecorderError as E;
    let call = super::calls::load_for(&state, &call_id, user.id()).await?;
    // The recorder joins the call's room as a hidden participant: on the room's node.
    if let Some(answer) = fwd.to_room_node(&state, &call.id).await {
        return Ok(answer);
    }
    let (id, now) = match state.recorders.start_for_call(&call, user.id()).await {
        Ok(x) => x,
        Err(E::CallNotActive(status)) => {
            let why = if status == "ringing" {
                "nobody has joined it yet"
            } else {
                "it has ended"
            };
            return Err(ApiError::conflict(
                "call_not_active",
                format!("the call is not active ({status}): {why}"),
            ));
        }
        Err(E::AlreadyRecording) => {
            return Err(ApiError::conflict(
                "recording_in_progress",
                "the call is already being recorded",
            ))
        }
        Err(E::Store(e)) => return Err(e.into()),
        Err(e) => {
            return Err(ApiError::unavailable(format!(
                "cannot start the recorder: {e}"
            )))
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "success": true,
            "recording_id": id,
            "started_at": rfc3339_ms(now),
        })),
    )
        .into_response())
}

/// `POST /api/calls/{call_id}/recording/stop`: finalize the files; `duration` in whole seconds
/// (rounded), `duration_ms` exact.
async fn stop(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(call_id): ApiPath<String>,
    fwd: Forwardable,
) -> ApiResult<Response> {
    let call = super::calls::load_for(&state, &call_id, user.id()).await?;
    if let Some(answer) = fwd.to_room_node(&state, &call.id).await {
        return Ok(answer);
    }
    let Some((id, outcome)) = state.recorders.stop(&call.id).await else {
        return Err(ApiError::not_found(
            "recording_not_found",
            "the call is not being recorded",
        ));
    };
    crate::recorder::store_outcome(&state.store, &state.webhooks, &id, &outcome).await;
    Ok(Json(json!({
        "success": true,
        "recording_id": id,
        "duration": crate::timefmt::whole_secs(outcome.duration_ms),
        "duration_ms": outcome.duration_ms,
        "status": if outcome.error.is_some() { "failed" } else { "completed" },
    }))
    .into_response())
}

/// Lifetime of download URLs.
pub const DOWNLOAD_TTL_SECS: u64 = 3600;

/// Where recording files live: `<data_dir>/recordings`.
pub fn recordings_dir(state: &AppState) -> PathBuf {
    state.config.storage.data_dir.join("recordings")
}

fn recording_json(r: &RecordingRecord) -> Value {
    json!({
        "id": r.id,
        "call_id": r.call_id,
        "conversation_id": r.conversation_id,
        "call_type": r.call_type,
        "started_by": r.started_by,
        "started_at": rfc3339_ms(r.started_at),
        "ended_at": opt(r.ended_at),
        "duration": r.duration_ms.map(crate::timefmt::whole_secs),
        "duration_ms": r.duration_ms,
        "status": r.status,
        "size_bytes": r.size_bytes,
        "has_file": r.file_path.is_some(),
    })
}

fn not_found() -> ApiError {
    ApiError::not_found(
        "recording_not_found",
        "the specified recording does not exist",
    )
}

async fn load_for(state: &AppState, id: &str, user: &str) -> ApiResult<RecordingRecord> {
    check_id("recording_id", id)?;
    let r = match state.store.get_recording(id).await {
        Ok(r) if r.status != "deleting" => r,
        Ok(_) | Err(StoreError::NotFound) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    if !state.store.can_see_recording(&r, user).await? {
        return Err(ApiError::forbidden(
            "you did not start this recording and are not a member of its call",
        ));
    }
    Ok(r)
}

#[derive(Deserialize)]
struct ListQuery {
    conversation_id: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    check_opt_id("conversation_id", q.conversation_id.as_deref())?;
    let recs = state
        .store
        .list_recordings_for_user(
            user.id(),
            q.conversation_id.as_deref(),
            limit(q.limit, 20, 100),
            q.offset.unwrap_or(0).max(0),
        )
        .await?;
    let out: Vec<Value> = recs.iter().map(recording_json).collect();
    Ok(Json(
        json!({ "success": true, "recordings": out, "count": out.len() }),
    ))
}

async fn get_one(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let r = load_for(&state, &id, user.id()).await?;
    Ok(Json(
        json!({ "success": true, "recording": recording_json(&r) }),
    ))
}

/// Delete (the recording's starter or the call's creator): the row and the file.
async fn delete(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
    fwd: Forwardable,
) -> ApiResult<Response> {
    let r = load_for(&state, &id, user.id()).await?;
    // Its files are removed where they are: on the node that recorded it.
    if let Some(answer) = fwd.to_node(&state, &r.node, "the recording's files").await {
        return Ok(answer);
    }
    let creator = state
        .store
        .get_call(&r.call_id)
        .await
        .map(|c| c.created_by)
        .ok();
    if r.started_by != user.id() && creator.as_deref() != Some(user.id()) {
        return Err(ApiError::forbidden(
            "only the recording's starter or the call's creator can delete it",
        ));
    }
    // Crash-safe: mark the row first (a crash from here on is finished at start-up), stop a running
    // recorder so it writes no more, remove every file, then the row.
    match state.store.mark_recording_deleting(&r.id).await {
        Ok(_) => {}
        Err(StoreError::NotFound) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    }
    if r.status == "recording" && state.recorders.recording_id(&r.call_id).as_deref() == Some(&r.id)
    {
        state.recorders.stop(&r.call_id).await;
    }
    crate::recording_delete::finish(&state.store, &recordings_dir(&state), &r)
        .await
        .map_err(|e| match e {
            crate::recording_delete::DeleteError::Store(e) => e.into(),
            e => ApiError::internal(format!("{e}; the delete is finished at the next start")),
        })?;
    Ok(Json(json!({ "success": true, "recording_id": r.id, "deleted": true })).into_response())
}

/// The `res` claim of a recording's download token.
fn file_resource(id: &str) -> String {
    format!("recording:{id}")
}

async fn download(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let r = load_for(&state, &id, user.id()).await?;
    if r.status == "recording" || r.file_path.is_none() {
        return Err(ApiError::conflict(
            "recording_not_ready",
            "the recording has no finished file yet",
        ));
    }
    let (key, secret) = state
        .keys
        .primary()
        .ok_or_else(|| ApiError::unavailable("no API key configured to sign URLs"))?;
    // A download token (own audience and signing key): it opens this one file and is refused by
    // every other endpoint.
    let token = AccessToken::for_resource(
        TokenPurpose::Download,
        key,
        secret,
        user.id(),
        &file_resource(&r.id),
        state.clock.unix_secs(),
        DOWNLOAD_TTL_SECS,
    );
    let url = format!(
        "{}/api/recordings/{}/file?token={token}",
        state.config.public_http_url(),
        r.id
    );
    Ok(Json(json!({
        "success": true,
        "url": url,
        "expires_in": DOWNLOAD_TTL_SECS,
    })))
}

#[derive(Deserialize)]
struct FileQuery {
    token: Option<String>,
}

/// The file, authorised by the signed token from `/download` (no Bearer header needed).
/// A single `Range: bytes=...` request against a file of `len` bytes: the inclusive byte range, or
/// None when the range cannot be satisfied. Several ranges are not supported (the whole file is
/// served instead, as RFC 9110 allows).
fn byte_range(value: &str, len: u64) -> Option<Option<(u64, u64)>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        // Suffix: the last N bytes.
        let n: u64 = b.parse().ok()?;
        (n > 0 && len > 0).then(|| (len.saturating_sub(n), len - 1))
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse::<u64>().ok()?.min(len.saturating_sub(1))
        };
        (start < len && start <= end).then_some((start, end))
    };
    Some(range)
}

async fn file(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<FileQuery>,
    headers: axum::http::HeaderMap,
    fwd: Forwardable,
) -> ApiResult<Response> {
    check_id("recording_id", &id)?;
    let token = q
        .token
        .ok_or_else(|| ApiError::unauthorized("missing download token"))?;
    let claims = state
        .keys
        .verify_for(TokenPurpose::Download, &token, state.clock.unix_secs())
        .map_err(|e| ApiError::unauthorized(format!("invalid download token: {e}")))?;
    if claims.res.as_deref() != Some(file_resource(&id).as_str()) {
        return Err(ApiError::forbidden("the token is not for this recording"));
    }
    let r = match state.store.get_recording(&id).await {
        Ok(r) if r.status != "deleting" => r,
        Ok(_) | Err(StoreError::NotFound) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    if let Some(answer) = fwd.to_node(&state, &r.node, "the recording's file").await {
        return Ok(answer);
    }
    let rel = r
        .file_path
        .as_deref()
        .and_then(crate::recording_delete::safe_relative)
        .ok_or_else(|| ApiError::conflict("recording_not_ready", "the recording has no file"))?;
    let path = recordings_dir(&state).join(rel);
    let f = tokio::fs::File::open(&path).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ApiError::not_found("recording_not_found", "the recording file is gone")
        } else {
            ApiError::internal(format!("cannot open recording file: {e}"))
        }
    })?;
    let len = f.metadata().await.map(|m| m.len()).ok();
    let ctype = match path.extension().and_then(|e| e.to_str()) {
        Some("webm") if r.call_type == "video" => "video/webm",
        Some("webm") => "audio/webm",
        Some("ogg") | Some("opus") => "audio/ogg",
        _ => "application/octet-stream",
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("recording")
        .replace('"', "");
    // Range requests (seeking in a browser <audio>): 206 with the slice, 416 when unsatisfiable.
    let range = match (
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        len,
    ) {
        (Some(v), Some(len)) => byte_range(v, len).map(|r| (r, len)),
        _ => None,
    };
    let mut f = f;
    let (mut resp, body_len) = match range {
        Some((Some((start, end)), total)) => {
            use tokio::io::{AsyncReadExt, AsyncSeekExt};
            f.seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(|e| ApiError::internal(format!("cannot seek recording file: {e}")))?;
            let n = end - start + 1;
            let mut resp =
                Body::from_stream(tokio_util::io::ReaderStream::new(f.take(n))).into_response();
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            if let Ok(v) = header::HeaderValue::from_str(&format!("bytes {start}-{end}/{total}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            (resp, Some(n))
        }
        Some((None, total)) => {
            let mut resp = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = header::HeaderValue::from_str(&format!("bytes */{total}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(resp);
        }
        None => (
            Body::from_stream(tokio_util::io::ReaderStream::new(f)).into_response(),
            len,
        ),
    };
    let h = resp.headers_mut();
    h.insert(
        header::ACCEPT_RANGES,
        header::HeaderValue::from_static("bytes"),
    );
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    if let Ok(v) = header::HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Some(len) = body_len {
        h.insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
    }
    Ok(resp)
}

/// `GET /api/calls/{call_id}/recording/status`: whether the call is being recorded (members only).
async fn call_status(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(call_id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let call = super::calls::load_for(&state, &call_id, user.id()).await?;
    Ok(Json(
        match state.store.active_recording_for_call(&call.id).await? {
            Some(r) => json!({
                "success": true,
                "recording": true,
                "recording_id": r.id,
                "started_at": rfc3339_ms(r.started_at),
                "started_by": r.started_by,
            }),
            None => json!({ "success": true, "recording": false }),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::byte_range;

    #[test]
    fn range_header_forms() {
        assert_eq!(byte_range("bytes=0-99", 1000), Some(Some((0, 99))));
        assert_eq!(byte_range("bytes=900-", 1000), Some(Some((900, 999))));
        assert_eq!(byte_range("bytes=-100", 1000), Some(Some((900, 999))));
        assert_eq!(byte_range("bytes=500-5000", 1000), Some(Some((500, 999))));
        // Unsatisfiable.
        assert_eq!(byte_range("bytes=1000-", 1000), Some(None));
        assert_eq!(byte_range("bytes=5-2", 1000), Some(None));
        assert_eq!(byte_range("bytes=-0", 1000), Some(None));
        // Not understood: serve the whole file.
        assert_eq!(byte_range("bytes=0-1,5-6", 1000), None);
        assert_eq!(byte_range("items=0-1", 1000), None);
        assert_eq!(byte_range("bytes=a-b", 1000), None);
    }
}
