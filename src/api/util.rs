//! Helpers shared by the product APIs (calls, huddles, presence, devices, chat).

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::FromRequest;
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
    if value.contains('\0') {
        return Err(validation(format!(
            "{field} must not contain NUL characters"
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

/// A JSON request body that must be a JSON object (serde would also accept an array for a struct),
/// with envelope rejections: 400 `invalid_request` for syntax, type and shape errors.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let crate::error::ApiJson(value) =
            crate::error::ApiJson::<serde_json::Value>::from_request(req, state).await?;
        if !value.is_object() {
            return Err(ApiError::bad_request(
                "invalid_request",
                "the request body must be a JSON object",
            ));
        }
        serde_json::from_value(value)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request("invalid_request", format!("invalid body: {e}")))
    }
}

/// [`JsonBody`] for endpoints whose fields are all optional: an empty body (with or without a
/// content type) is `T::default()`; anything else is parsed and rejected exactly as `JsonBody`.
pub struct OptionalJsonBody<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJsonBody<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        // Through the `Bytes` extractor so the configured body limit still applies.
        let bytes = bytes::Bytes::from_request(
            axum::extract::Request::from_parts(parts.clone(), body),
            state,
        )
        .await
        .map_err(|e| {
            let code = if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                "payload_too_large"
            } else {
                "invalid_request"
            };
            ApiError::new(e.status(), code, e.body_text())
        })?;
        if bytes.is_empty() {
            return Ok(OptionalJsonBody(T::default()));
        }
        let req = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
        JsonBody::<T>::from_request(req, state)
            .await
            .map(|JsonBody(v)| OptionalJsonBody(v))
    }
}
