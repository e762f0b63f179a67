//! Voice-assistant accounts and the embed front door (seed 001).
//!
//! Owns: accounts (one per API key: tokens signed by key K with the `roomAdmin` grant manage
//! account K), their assistants and public keys (`manage`), `POST /api/v1/embed/token` with its
//! own CORS and per-key rate limit (`token`, on `crate::flood::KeyedRateLimit`), the account's view of its assistant calls
//! (`calls`), origin matching (`origins`) and the dev-mode demo assistant (`bootstrap_dev`).
//! Errors use the seed's codes (`INVALID_REQUEST`, `UNAUTHORIZED`, `DOMAIN_NOT_ALLOWED`,
//! `ASSISTANT_NOT_FOUND`, `SERVER_ERROR`, …) in the usual envelope.
//!
//! Public keys sit in web pages, so they can do exactly one thing: mint an embed token from an
//! allowed origin. Everything else (managing assistants and keys, reading or deleting calls) takes
//! the account's secret credentials.

pub mod calls;
pub mod cli;
pub mod config;
pub mod finalize;
pub mod manage;
pub mod openapi;
pub mod origins;
pub mod token;
pub mod widget;

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{AccountRecord, AssistantRecord, PublicKeyRecord};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Router;
use serde_json::{json, Value};

pub const ASSISTANT_PREFIX: &str = "asst_";
pub const LIVE_KEY_PREFIX: &str = "pk_live_";
pub const TEST_KEY_PREFIX: &str = "pk_test_";

/// The management and call routes (under the server's permissive CORS: they take Bearer tokens,
/// not cookies).
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(manage::routes())
        .merge(calls::routes())
        .merge(widget::routes())
}

/// `POST /api/v1/embed/token` and its preflight: merged outside the permissive CORS layer, since
/// it answers CORS for allowed origins only.
pub fn public_routes() -> Router<AppState> {
    token::routes()
}

/// Seed-001 error codes over the shared envelope.
pub fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("INVALID_REQUEST", message)
}
pub fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
}
pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::not_found(code, message)
}

/// Map a shared extractor or store error to the seed's codes (keeping its status).
pub fn seed_error(e: ApiError) -> ApiError {
    let code = match e.code {
        "invalid_request" | "validation_error" | "unsupported_media_type" | "payload_too_large" => {
            "INVALID_REQUEST"
        }
        "unauthorized" => "UNAUTHORIZED",
        "not_authorized" => "FORBIDDEN",
        "internal_error" | "service_unavailable" => "SERVER_ERROR",
        other => other,
    };
    e.with_code(code)
}

/// The account a request manages: a valid access token signed by API key K (`iss`) with the
/// `roomAdmin` grant acts for account K (created on first use). Plain user tokens and public
/// keys are refused.
pub struct AccountAuth {
    pub account: AccountRecord,
    pub subject: String,
}

impl FromRequestParts<AppState> for AccountAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = crate::auth::bearer(parts)
            .ok_or_else(|| unauthorized("missing Bearer token (an API key's signed token)"))?;
        if token.starts_with("pk_") {
            return Err(unauthorized(
                "a public key only mints embed tokens (POST /api/v1/embed/token); this endpoint \
                 takes a token signed by the account's API key",
            ));
        }
        let claims = state
            .keys
            .verify(token, state.clock.unix_secs())
            .map_err(|e| unauthorized(format!("invalid token: {e}")))?;
        if !claims.video().room_admin {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "managing an account needs a token with the roomAdmin grant \
                 (parlor token --identity ops --grant roomAdmin)",
            ));
        }
        let account = state
            .store
            .ensure_account(
                &claims.iss,
                &state.config.embed.currency,
                state.clock.unix_ms(),
            )
            .await
            .map_err(|e| seed_error(e.into()))?;
        Ok(AccountAuth {
            account,
            subject: claims.sub,
        })
    }
}

/// Money in the API is a decimal number of `currency` units; stored as micro-units.
pub fn to_micros(amount: f64) -> Option<i64> {
    (amount.is_finite() && amount.abs() < 1e12).then(|| (amount * 1e6).round() as i64)
}
pub fn from_micros(micros: i64) -> f64 {
    micros as f64 / 1e6
}

pub fn assistant_json(a: &AssistantRecord, currency: &str) -> Value {
    json!({
        "id": a.id,
        "name": a.name,
        "model": a.model,
        "voice": a.voice,
        "systemPrompt": a.system_prompt,
        "greeting": a.greeting,
        "temperature": a.temperature,
        "maxTokens": a.max_tokens,
        "pricePerMinute": from_micros(a.price_per_minute_micros),
        "currency": currency,
        "record": a.record,
        "createdAt": crate::timefmt::rfc3339_ms(a.created_at),
        "updatedAt": crate::timefmt::rfc3339_ms(a.updated_at),
    })
}

pub fn public_key_json(k: &PublicKeyRecord) -> Value {
    json!({
        "key": k.key,
        "name": k.name,
        "mode": if k.key.starts_with(LIVE_KEY_PREFIX) { "live" } else { "test" },
        "allowedOrigins": k.allowed_origins,
        "createdAt": crate::timefmt::rfc3339_ms(k.created_at),
        "revokedAt": crate::timefmt::opt(k.revoked_at),
        "active": k.revoked_at.is_none(),
    })
}

/// A new public key (`pk_live_` or `pk_test_` + 24 random base62 characters).
pub fn new_public_key(live: bool) -> String {
    let prefix = if live {
        LIVE_KEY_PREFIX
    } else {
        TEST_KEY_PREFIX
    };
    let mut k = crate::ids::new_id(prefix);
    k.push_str(&crate::ids::new_id(""));
    k
}

/// Dev mode (no `[keys]` configured): make sure the dev key's account has a demo assistant on the
/// local model and a test public key allowed for the server's own origin; returns both to print.
pub async fn bootstrap_dev(
    state: &AppState,
) -> Result<(AssistantRecord, PublicKeyRecord), crate::store::StoreError> {
    let (key_id, _) = state
        .keys
        .primary()
        .ok_or(crate::store::StoreError::NotFound)?;
    let now = state.clock.unix_ms();
    let account = state
        .store
        .ensure_account(key_id, &state.config.embed.currency, now)
        .await?;
    let own = origins::normalize(&state.config.public_http_url()).ok();
    let assistant = match state
        .store
        .list_assistants(&account.id)
        .await?
        .into_iter()
        .find(|a| a.name == DEMO_ASSISTANT)
    {
        Some(a) => a,
        None => {
            let a = AssistantRecord {
                id: crate::ids::new_id(ASSISTANT_PREFIX),
                account_id: account.id.clone(),
                name: DEMO_ASSISTANT.into(),
                model: "parlor-local".into(),
                voice: None,
                system_prompt: "You are Parlor's demo assistant.".into(),
                greeting: Some(
                    "Hello! I'm Parlor's demo assistant. Ask me the time, some arithmetic, or a \
                     simple fact."
                        .into(),
                ),
                temperature: 0.7,
                max_tokens: 256,
                price_per_minute_micros: 0,
                record: false,
                created_at: now,
                updated_at: now,
            };
            state.store.insert_assistant(&a).await?;
            a
        }
    };
    let keys = state.store.list_public_keys(&account.id).await?;
    let key = match keys
        .into_iter()
        .find(|k| k.revoked_at.is_none() && k.name == DEMO_KEY)
    {
        Some(mut k) => {
            // The server may have moved to another port: keep its own origin allowed.
            if let Some(own) = own.filter(|o| !k.allowed_origins.contains(o)) {
                k.allowed_origins.push(own);
                state
                    .store
                    .update_public_key(&account.id, &k.key, None, Some(&k.allowed_origins))
                    .await?;
            }
            k
        }
        None => {
            let k = PublicKeyRecord {
                key: new_public_key(false),
                account_id: account.id.clone(),
                name: DEMO_KEY.into(),
                allowed_origins: own.into_iter().collect(),
                created_at: now,
                revoked_at: None,
            };
            state.store.insert_public_key(&k).await?;
            k
        }
    };
    Ok((assistant, key))
}

const DEMO_ASSISTANT: &str = "Demo assistant";
const DEMO_KEY: &str = "dev demo key";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_round_trips_in_micro_units() {
        assert_eq!(to_micros(0.05), Some(50_000));
        assert_eq!(from_micros(50_000), 0.05);
        assert_eq!(to_micros(f64::NAN), None);
        assert_eq!(to_micros(1e13), None);
    }

    #[test]
    fn public_keys_have_their_mode_prefix_and_24_random_characters() {
        let k = new_public_key(true);
        assert!(k.starts_with("pk_live_") && k.len() == 8 + 24, "{k}");
        assert!(new_public_key(false).starts_with("pk_test_"));
    }
}
