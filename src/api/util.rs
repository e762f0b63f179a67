//! Helpers shared by the product APIs (calls, huddles, presence, devices, chat).

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use parlor_signaling::{AccessToken, VideoGrant};

/// Longest id accepted from a client (user ids, workspace ids, device ids, ...).
pub const MAX_ID_LEN: usize = 128;

pub fn validation(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("validation_error", message)
}

/// A client-supplied identifier: 1-128 characters, no control characters.
pub fn check_id(field: &str, value: &str) -> ApiResult<()> {
    if value.is_empty() || value.chars().count() > MAX_ID_LEN || value.chars().any(char::is_control)
    {
        return Err(validation(format!(
            "{field} must be 1-{MAX_ID_LEN} characters without control characters"
        )));
    }
    Ok(())
}

pub fn check_opt_id(field: &str, value: Option<&str>) -> ApiResult<()> {
    value.map_or(Ok(()), |v| check_id(field, v))
}

/// Free text with a length limit (in characters).
pub fn check_text(field: &str, value: &str, max: usize) -> ApiResult<()> {
    if value.chars().count() > max {
        return Err(validation(format!(
            "{field} must be at most {max} characters"
        )));
    }
    Ok(())
}

/// `{url, token}` for `identity` to join SFU room `room`.
pub fn join_credentials(
    state: &AppState,
    identity: &str,
    room: &str,
) -> ApiResult<(String, String)> {
    let (key, secret) = state
        .keys
        .primary()
        .ok_or_else(|| ApiError::unavailable("no API key configured to sign join tokens"))?;
    let token = AccessToken::for_join(
        key,
        secret,
        identity,
        VideoGrant::join(room),
        state.clock.unix_secs(),
        state.config.room.token_ttl_secs,
    );
    Ok((state.config.public_ws_url(), token))
}

/// Page size from an optional `limit` (default `def`, clamped to 1..=max).
pub fn limit(l: Option<i64>, def: i64, max: i64) -> i64 {
    l.unwrap_or(def).clamp(1, max)
}
