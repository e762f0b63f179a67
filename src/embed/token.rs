//! `POST /api/v1/embed/token` (seed 001): a web page's public key and an assistant id become a
//! fresh call and a join token for its room, which `livekit-client`'s `room.connect(url, token)`
//! uses as is.
//!
//! Order of checks: the public key (401 UNAUTHORIZED), the request's `Origin` against the key's
//! allowed origins (403 DOMAIN_NOT_ALLOWED), the key's rate limit (429 RATE_LIMIT_EXCEEDED), the
//! body (400 INVALID_REQUEST), the assistant (404 ASSISTANT_NOT_FOUND: unknown, or another
//! account's), credits (402 INSUFFICIENT_CREDITS for a prepaid account at zero), the model (503
//! MODEL_NOT_AVAILABLE); anything else is 500 SERVER_ERROR. CORS is answered here, for allowed
//! origins only: a preflight (which carries no key) passes when any active key allows the origin;
//! responses to an allowed origin carry `Access-Control-Allow-Origin` so the page can read errors.
//!
//! The join token has purpose `Embed` (`aud` = `parlor:embed`, a derived signing key): `/rtc`
//! accepts it for its one room, and every Bearer API refuses it, so a visitor's token is no login.

use super::{invalid, origins, seed_error, unauthorized};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{AssistantCallRecord, CallRecord};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use parlor_signaling::{AccessToken, Claims, TokenPurpose, VideoGrant};
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/embed/token", post(mint).options(preflight))
}

/// Largest `metadata` object, serialized.
pub const MAX_METADATA_BYTES: usize = 4096;

fn origin(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ORIGIN)?.to_str().ok()
}

/// CORS headers for an allowed `origin` (never `*`: the list decides).
fn with_cors(mut resp: Response, origin: Option<&str>) -> Response {
    if let Some(o) = origin.and_then(|o| HeaderValue::from_str(o).ok()) {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Retry-After"),
        );
    }
    resp
}

async fn preflight(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(o) = origin(&headers) else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let allowed = match state.store.active_key_origins().await {
        Ok(lists) => lists.iter().any(|l| origins::allowed(o, l)),
        Err(e) => {
            tracing::warn!(error = %e, "embed preflight: cannot read public keys");
            false
        }
    };
    if !allowed {
        // No CORS headers: the browser refuses the request.
        return StatusCode::FORBIDDEN.into_response();
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    with_cors(resp, Some(o))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EmbedBody {
    assistant_id: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
}

async fn mint(State(state): State<AppState>, req: Request) -> Response {
    let headers = req.headers().clone();
    let req_origin = origin(&headers).map(str::to_string);
    let (result, cors_ok) = mint_inner(&state, &headers, req).await;
    let resp = match result {
        Ok(v) => (StatusCode::OK, Json(v)).into_response(),
        Err(e) => e.into_response(),
    };
    with_cors(resp, if cors_ok { req_origin.as_deref() } else { None })
}

/// (the response, whether the origin is allowed for the key: only then do CORS headers go out).
async fn mint_inner(
    state: &AppState,
    headers: &HeaderMap,
    req: Request,
) -> (Result<Value, ApiError>, bool) {
    let key = match crate::auth::bearer_header(headers) {
        Some(k) if k.starts_with("pk_") && k.len() <= 128 => k.to_string(),
        _ => return (Err(unauthorized("Invalid API key")), false),
    };
    let pk = match state.store.get_public_key(&key).await {
        Ok(Some(k)) if k.revoked_at.is_none() => k,
        Ok(_) => return (Err(unauthorized("Invalid API key")), false),
        Err(e) => return (Err(seed_error(e.into())), false),
    };
    let Some(req_origin) = origin(headers) else {
        return (
            Err(domain_not_allowed(
                "the request has no Origin header (embed tokens are minted for web pages)",
            )),
            false,
        );
    };
    if !origins::allowed(req_origin, &pk.allowed_origins) {
        return (Err(domain_not_allowed("Domain not in allowed list")), false);
    }
    let result = async {
        if let Err(retry) = state.embed.admit(
            &pk.key,
            state.config.embed.rate_limit_per_minute,
            state.clock.now(),
        ) {
            let e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMIT_EXCEEDED",
                format!(
                    "this key minted {} embed tokens in the last minute; retry in {} s",
                    state.config.embed.rate_limit_per_minute,
                    retry.as_secs().max(1)
                ),
            );
            return Err(e.with_retry_after(retry.as_secs().max(1)));
        }
        let body = read_body(req).await?;
        let assistant_id = body
            .assistant_id
            .filter(|a| !a.is_empty() && a.len() <= 128)
            .ok_or_else(|| invalid("assistantId is required"))?;
        let metadata = match body.metadata {
            None | Some(Value::Null) => json!({}),
            Some(m @ Value::Object(_)) => m,
            Some(_) => return Err(invalid("metadata must be an object")),
        };
        let meta_text = metadata.to_string();
        if meta_text.len() > MAX_METADATA_BYTES {
            return Err(invalid(format!(
                "metadata must be at most {MAX_METADATA_BYTES} bytes as JSON"
            )));
        }
        let assistant = state
            .store
            .get_assistant(&assistant_id)
            .await
            .map_err(|e| seed_error(e.into()))?
            .filter(|a| a.account_id == pk.account_id)
            .ok_or_else(|| ApiError::not_found("ASSISTANT_NOT_FOUND", "Assistant not found"))?;
        let account = state
            .store
            .get_account(&pk.account_id)
            .await
            .map_err(|e| seed_error(e.into()))?
            .ok_or_else(|| ApiError::internal("the key's account is missing"))
            .map_err(seed_error)?;
        if !account.allow_negative && account.credits_micros <= 0 {
            return Err(ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "INSUFFICIENT_CREDITS",
                "the account has no credits left",
            ));
        }
        model_available(state, &assistant.model)?;
        create_call(state, &pk.key, req_origin, &assistant, metadata, meta_text).await
    }
    .await;
    (result, true)
}

fn domain_not_allowed(message: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "DOMAIN_NOT_ALLOWED", message)
}

async fn read_body(req: Request) -> Result<EmbedBody, ApiError> {
    let bytes = axum::body::to_bytes(req.into_body(), 64 * 1024)
        .await
        .map_err(|_| invalid("the request body is too large or unreadable"))?;
    if bytes.is_empty() {
        return Err(invalid("a JSON body {assistantId, metadata} is required"));
    }
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| invalid(format!("the body is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(invalid("the body must be a JSON object"));
    }
    serde_json::from_value(v).map_err(|e| invalid(format!("invalid body: {e}")))
}

fn model_available(state: &AppState, model: &str) -> Result<(), ApiError> {
    let unavailable = |why: String| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "MODEL_NOT_AVAILABLE",
            format!("the assistant's model `{model}` is not available: {why}"),
        )
    };
    let Some(m) = state.config.realtime.models.iter().find(|m| m.id == model) else {
        return Err(unavailable("it is not in the catalogue".into()));
    };
    // A LiveKit agent answers calls when a worker of its name is registered.
    if m.provider == crate::agents::PROVIDER {
        return match state.agents.has_worker(m.provider_model()) {
            true => Ok(()),
            false => Err(unavailable(format!(
                "no LiveKit Agents worker named `{}` is registered",
                m.provider_model()
            ))),
        };
    }
    // A call needs audio both ways (the local model without its speech models only does text).
    match state.realtime.providers.audio_availability(&m.provider) {
        crate::realtime::provider::Availability::Available => Ok(()),
        crate::realtime::provider::Availability::Unavailable { reason } => Err(unavailable(reason)),
    }
}

async fn create_call(
    state: &AppState,
    key: &str,
    origin: &str,
    assistant: &crate::store::AssistantRecord,
    metadata: Value,
    meta_text: String,
) -> Result<Value, ApiError> {
    let now = state.clock.unix_ms();
    let call = CallRecord {
        id: crate::ids::new_id(crate::product::CALL_PREFIX),
        call_type: "audio".into(),
        conversation_id: None,
        created_by: crate::ids::new_id("caller_"),
        status: "ringing".into(),
        created_at: now,
        started_at: None,
        ended_at: None,
        duration_ms: None,
        auto_record: assistant.record,
    };
    let server_err = |e: crate::store::StoreError| seed_error(e.into());
    state.store.insert_call(&call).await.map_err(server_err)?;
    // The call's model session: the caller's turns and the assistant's land in its history.
    let session = model_session(state, assistant, &call, now);
    state
        .store
        .insert_rt_session(&session)
        .await
        .map_err(server_err)?;
    state
        .store
        .insert_assistant_call(&AssistantCallRecord {
            call_id: call.id.clone(),
            account_id: assistant.account_id.clone(),
            assistant_id: assistant.id.clone(),
            public_key: key.to_string(),
            caller_identity: call.created_by.clone(),
            origin: origin.to_string(),
            metadata: meta_text.clone(),
            model_session_id: Some(session.id.clone()),
            cost_micros: None,
            end_reason: None,
            deleted_at: None,
            created_at: now,
        })
        .await
        .map_err(server_err)?;
    let (key_id, secret) = state
        .keys
        .primary()
        .ok_or_else(|| seed_error(ApiError::internal("no API key to sign join tokens")))?;
    let now_s = state.clock.unix_secs();
    let ttl = state.config.embed.token_ttl_secs;
    let name = metadata
        .get("userId")
        .and_then(Value::as_str)
        .filter(|n| n.len() <= 128)
        .unwrap_or("Caller")
        .to_string();
    let claims = Claims {
        iss: key_id.to_string(),
        sub: call.created_by.clone(),
        nbf: now_s.saturating_sub(1),
        exp: now_s + ttl,
        name: Some(name),
        metadata: Some(meta_text),
        video: Some(VideoGrant {
            can_publish: Some(true),
            can_subscribe: Some(true),
            can_publish_data: Some(true),
            ..VideoGrant::join(call.id.clone())
        }),
        ..Default::default()
    };
    let token = AccessToken::encode_for(TokenPurpose::Embed, &claims, secret);
    Ok(json!({
        "success": true,
        "data": {
            "url": state.config.public_ws_url(),
            "token": token,
            "callId": call.id,
            "roomName": call.id,
            "identity": call.created_by,
            "assistantId": assistant.id,
            "sessionId": session.id,
            "expiresAt": crate::timefmt::rfc3339_ms(((now_s + ttl) * 1000) as i64),
        }
    }))
}

/// The model session of an embedded call: owned by the caller identity, on the assistant's model
/// and settings (max tokens within the model's limit), its metadata naming the call.
fn model_session(
    state: &AppState,
    a: &crate::store::AssistantRecord,
    call: &CallRecord,
    now: i64,
) -> crate::store::RtSessionRecord {
    let model_max = state
        .realtime
        .model(&a.model)
        .map_or(a.max_tokens, |m| m.max_tokens as i64);
    crate::store::RtSessionRecord {
        id: crate::ids::new_id(crate::realtime::sessions::SESSION_PREFIX),
        user_id: call.created_by.clone(),
        model: a.model.clone(),
        status: "active".into(),
        temperature: a.temperature,
        max_tokens: a.max_tokens.clamp(1, model_max.max(1)),
        stream: true,
        system_prompt: Some(a.system_prompt.clone()).filter(|p| !p.is_empty()),
        metadata: json!({
            "callId": call.id, "assistantId": a.id, "accountId": a.account_id, "source": "embed",
        })
        .to_string(),
        created_at: now,
        last_activity: now,
        ended_at: None,
        deleted_at: None,
        deleted_by: None,
        token_generation: 1,
        token_expires_at: now + (state.realtime.config.token_ttl_secs as i64) * 1000,
        prompt_tokens: 0,
        completion_tokens: 0,
        message_count: 0,
        request_count: 0,
        failed_count: 0,
        response_ms_sum: 0,
        response_count: 0,
        failure_reason: None,
    }
}
