//! Account management: `GET|PATCH /api/v1/account`, `POST /api/v1/account/credits`,
//! `GET|POST /api/v1/assistants`, `GET|PATCH|DELETE /api/v1/assistants/{assistant_id}`,
//! `GET|POST /api/v1/public-keys`, `PATCH|DELETE /api/v1/public-keys/{key}`. Every route takes the
//! account's credentials ([`AccountAuth`]); successes are `{success: true, data}`.

use super::{
    assistant_json, invalid, new_public_key, not_found, origins, public_key_json, seed_error,
    to_micros, AccountAuth, ASSISTANT_PREFIX,
};
use crate::api::util::{JsonBody, OptionalJsonBody};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{AssistantRecord, PublicKeyRecord, StoreError};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/account", get(account).patch(update_account))
        .route("/api/v1/account/credits", post(add_credits))
        .route(
            "/api/v1/assistants",
            get(list_assistants).post(create_assistant),
        )
        .route(
            "/api/v1/assistants/{assistant_id}",
            get(get_assistant)
                .patch(update_assistant)
                .delete(delete_assistant),
        )
        .route("/api/v1/public-keys", get(list_keys).post(create_key))
        .route(
            "/api/v1/public-keys/{key}",
            patch(update_key).delete(revoke_key),
        )
}

const MAX_NAME: usize = 200;
const MAX_PROMPT: usize = 20_000;
const MAX_GREETING: usize = 2_000;

fn ok(data: Value) -> Json<Value> {
    Json(json!({ "success": true, "data": data }))
}

fn check_len(field: &str, v: &str, max: usize) -> ApiResult<()> {
    if v.chars().count() > max || v.contains('\0') {
        return Err(invalid(format!(
            "{field} must be at most {max} characters without NUL"
        )));
    }
    Ok(())
}

fn store_err(e: StoreError) -> ApiError {
    seed_error(e.into())
}

// ---- account -------------------------------------------------------------------------------------

async fn account(State(state): State<AppState>, auth: AccountAuth) -> ApiResult<Json<Value>> {
    account_view(&state, &auth.account.id).await
}

/// The account with its 50 newest ledger entries.
async fn account_view(state: &AppState, id: &str) -> ApiResult<Json<Value>> {
    let a = state
        .store
        .get_account(id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| not_found("ACCOUNT_NOT_FOUND", "account not found"))?;
    let ledger = state.store.ledger(id, 50).await.map_err(store_err)?;
    Ok(ok(json!({
        "id": a.id,
        "name": a.name,
        "currency": a.currency,
        "credits": super::from_micros(a.credits_micros),
        "allowNegative": a.allow_negative,
        "createdAt": crate::timefmt::rfc3339_ms(a.created_at),
        "ledger": ledger.iter().map(|e| json!({
            "id": e.id, "kind": e.kind, "callId": e.call_id,
            "amount": super::from_micros(e.amount_micros),
            "balanceAfter": super::from_micros(e.balance_after_micros),
            "note": e.note, "createdAt": crate::timefmt::rfc3339_ms(e.created_at),
        })).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AccountPatch {
    name: Option<String>,
    /// Postpaid (true) or prepaid (false: embed tokens are refused at zero credits).
    allow_negative: Option<bool>,
}

async fn update_account(
    State(state): State<AppState>,
    auth: AccountAuth,
    body: Result<OptionalJsonBody<AccountPatch>, ApiError>,
) -> ApiResult<Json<Value>> {
    let OptionalJsonBody(p) = body.map_err(seed_error)?;
    if let Some(n) = &p.name {
        check_len("name", n, MAX_NAME)?;
    }
    state
        .store
        .update_account(&auth.account.id, p.name.as_deref(), p.allow_negative)
        .await
        .map_err(store_err)?;
    account_view(&state, &auth.account.id).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credits {
    amount: f64,
    #[serde(default)]
    note: Option<String>,
}

async fn add_credits(
    State(state): State<AppState>,
    auth: AccountAuth,
    body: Result<JsonBody<Credits>, ApiError>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let JsonBody(c) = body.map_err(seed_error)?;
    let micros = to_micros(c.amount)
        .filter(|m| *m > 0)
        .ok_or_else(|| invalid("amount must be a positive number"))?;
    if let Some(n) = &c.note {
        check_len("note", n, MAX_NAME)?;
    }
    let e = state
        .store
        .add_credits(
            &auth.account.id,
            micros,
            c.note.as_deref(),
            state.clock.unix_ms(),
        )
        .await
        .map_err(store_err)?;
    Ok((
        StatusCode::CREATED,
        ok(json!({
            "id": e.id, "kind": e.kind, "amount": super::from_micros(e.amount_micros),
            "balanceAfter": super::from_micros(e.balance_after_micros),
            "credits": super::from_micros(e.balance_after_micros),
        })),
    ))
}

// ---- assistants ----------------------------------------------------------------------------------

/// The editable fields of an assistant (REST bodies and `parlor assistant create`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AssistantBody {
    pub name: Option<String>,
    pub model: Option<String>,
    pub voice: Option<Option<String>>,
    pub system_prompt: Option<String>,
    pub greeting: Option<Option<String>>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<i64>,
    pub price_per_minute: Option<f64>,
    pub record: Option<bool>,
}

/// A new assistant of `account` with the defaults, created at `now`.
pub fn new_assistant(account: &str, now: i64) -> AssistantRecord {
    AssistantRecord {
        id: crate::ids::new_id(ASSISTANT_PREFIX),
        account_id: account.to_string(),
        name: String::new(),
        model: "parlor-local".into(),
        voice: None,
        system_prompt: String::new(),
        greeting: None,
        temperature: 0.7,
        max_tokens: 1024,
        price_per_minute_micros: 0,
        record: false,
        created_at: now,
        updated_at: now,
    }
}

/// Apply `b` onto `a`, validating every field it sets (`models`: the catalogue).
pub fn apply(
    models: &[crate::realtime::config::ModelConfig],
    a: &mut AssistantRecord,
    b: AssistantBody,
) -> ApiResult<()> {
    if let Some(n) = b.name {
        if n.trim().is_empty() {
            return Err(invalid("name must not be empty"));
        }
        check_len("name", &n, MAX_NAME)?;
        a.name = n;
    }
    if let Some(m) = b.model {
        if !models.iter().any(|c| c.id == m) {
            let known: Vec<&str> = models.iter().map(|c| c.id.as_str()).collect();
            return Err(invalid(format!(
                "unknown model `{m}` (GET /api/realtime/models lists them: {})",
                known.join(", ")
            )));
        }
        a.model = m;
    }
    if let Some(v) = b.voice {
        if let Some(v) = &v {
            check_len("voice", v, 64)?;
        }
        a.voice = v;
    }
    if let Some(p) = b.system_prompt {
        check_len("systemPrompt", &p, MAX_PROMPT)?;
        a.system_prompt = p;
    }
    if let Some(g) = b.greeting {
        if let Some(g) = &g {
            check_len("greeting", g, MAX_GREETING)?;
        }
        a.greeting = g.filter(|g| !g.trim().is_empty());
    }
    if let Some(t) = b.temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(invalid("temperature must be between 0 and 2"));
        }
        a.temperature = t;
    }
    if let Some(m) = b.max_tokens {
        if !(1..=100_000).contains(&m) {
            return Err(invalid("maxTokens must be between 1 and 100000"));
        }
        a.max_tokens = m;
    }
    if let Some(p) = b.price_per_minute {
        a.price_per_minute_micros = to_micros(p)
            .filter(|m| *m >= 0)
            .ok_or_else(|| invalid("pricePerMinute must be a number ≥ 0"))?;
    }
    if let Some(r) = b.record {
        a.record = r;
    }
    Ok(())
}

async fn list_assistants(
    State(state): State<AppState>,
    auth: AccountAuth,
) -> ApiResult<Json<Value>> {
    let list = state
        .store
        .list_assistants(&auth.account.id)
        .await
        .map_err(store_err)?;
    let cur = &auth.account.currency;
    Ok(ok(json!({
        "assistants": list.iter().map(|a| assistant_json(a, cur)).collect::<Vec<_>>(),
        "total": list.len(),
    })))
}

async fn create_assistant(
    State(state): State<AppState>,
    auth: AccountAuth,
    body: Result<JsonBody<AssistantBody>, ApiError>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let JsonBody(b) = body.map_err(seed_error)?;
    if b.name.is_none() {
        return Err(invalid("name is required"));
    }
    let count = state
        .store
        .count_assistants(&auth.account.id)
        .await
        .map_err(store_err)?;
    let max = state.config.embed.max_assistants_per_account;
    if count as usize >= max {
        return Err(ApiError::conflict(
            "ASSISTANT_LIMIT_EXCEEDED",
            format!("an account holds at most {max} assistants (embed.max_assistants_per_account)"),
        ));
    }
    let mut a = new_assistant(&auth.account.id, state.clock.unix_ms());
    apply(&state.config.realtime.models, &mut a, b)?;
    state.store.insert_assistant(&a).await.map_err(store_err)?;
    Ok((
        StatusCode::CREATED,
        ok(assistant_json(&a, &auth.account.currency)),
    ))
}

/// An assistant of the caller's account (another account's answers the same 404).
async fn load_assistant(
    state: &AppState,
    auth: &AccountAuth,
    id: &str,
) -> ApiResult<AssistantRecord> {
    state
        .store
        .get_assistant(id)
        .await
        .map_err(store_err)?
        .filter(|a| a.account_id == auth.account.id)
        .ok_or_else(|| not_found("ASSISTANT_NOT_FOUND", "Assistant not found"))
}

async fn get_assistant(
    State(state): State<AppState>,
    auth: AccountAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let a = load_assistant(&state, &auth, &id).await?;
    Ok(ok(assistant_json(&a, &auth.account.currency)))
}

async fn update_assistant(
    State(state): State<AppState>,
    auth: AccountAuth,
    Path(id): Path<String>,
    body: Result<JsonBody<AssistantBody>, ApiError>,
) -> ApiResult<Json<Value>> {
    let JsonBody(b) = body.map_err(seed_error)?;
    let mut a = load_assistant(&state, &auth, &id).await?;
    apply(&state.config.realtime.models, &mut a, b)?;
    a.updated_at = state.clock.unix_ms();
    state.store.update_assistant(&a).await.map_err(store_err)?;
    Ok(ok(assistant_json(&a, &auth.account.currency)))
}

async fn delete_assistant(
    State(state): State<AppState>,
    auth: AccountAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    load_assistant(&state, &auth, &id).await?;
    state
        .store
        .delete_assistant(&auth.account.id, &id)
        .await
        .map_err(store_err)?;
    Ok(ok(json!({ "id": id, "deleted": true })))
}

// ---- public keys ---------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KeyBody {
    name: Option<String>,
    allowed_origins: Option<Vec<String>>,
    /// `live` (default) or `test`.
    mode: Option<String>,
}

/// Validate and normalize allowed origins (at most `max`, duplicates dropped).
pub fn check_origins(max: usize, list: &[String]) -> ApiResult<Vec<String>> {
    if list.len() > max {
        return Err(invalid(format!("at most {max} allowed origins per key")));
    }
    let mut out = Vec::with_capacity(list.len());
    for o in list {
        let n = origins::normalize(o).map_err(invalid)?;
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

async fn list_keys(State(state): State<AppState>, auth: AccountAuth) -> ApiResult<Json<Value>> {
    let keys = state
        .store
        .list_public_keys(&auth.account.id)
        .await
        .map_err(store_err)?;
    Ok(ok(json!({
        "keys": keys.iter().map(public_key_json).collect::<Vec<_>>(),
        "total": keys.len(),
    })))
}

async fn create_key(
    State(state): State<AppState>,
    auth: AccountAuth,
    body: Result<JsonBody<KeyBody>, ApiError>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let JsonBody(b) = body.map_err(seed_error)?;
    let live = match b.mode.as_deref() {
        None | Some("live") => true,
        Some("test") => false,
        Some(other) => return Err(invalid(format!("mode must be live or test, not `{other}`"))),
    };
    let origins = check_origins(
        state.config.embed.max_origins_per_key,
        b.allowed_origins.as_deref().unwrap_or(&[]),
    )?;
    if origins.is_empty() {
        return Err(invalid(
            "allowedOrigins must list at least one origin (https://example.com)",
        ));
    }
    let name = b.name.unwrap_or_default();
    check_len("name", &name, MAX_NAME)?;
    let count = state
        .store
        .count_public_keys(&auth.account.id)
        .await
        .map_err(store_err)?;
    let max = state.config.embed.max_public_keys_per_account;
    if count as usize >= max {
        return Err(ApiError::conflict(
            "KEY_LIMIT_EXCEEDED",
            format!("an account holds at most {max} active public keys"),
        ));
    }
    let k = PublicKeyRecord {
        key: new_public_key(live),
        account_id: auth.account.id.clone(),
        name,
        allowed_origins: origins,
        created_at: state.clock.unix_ms(),
        revoked_at: None,
    };
    state.store.insert_public_key(&k).await.map_err(store_err)?;
    Ok((StatusCode::CREATED, ok(public_key_json(&k))))
}

async fn update_key(
    State(state): State<AppState>,
    auth: AccountAuth,
    Path(key): Path<String>,
    body: Result<JsonBody<KeyBody>, ApiError>,
) -> ApiResult<Json<Value>> {
    let JsonBody(b) = body.map_err(seed_error)?;
    if b.mode.is_some() {
        return Err(invalid("a key's mode cannot change; create a new key"));
    }
    let origins = match &b.allowed_origins {
        Some(list) => {
            let o = check_origins(state.config.embed.max_origins_per_key, list)?;
            if o.is_empty() {
                return Err(invalid("allowedOrigins must list at least one origin"));
            }
            Some(o)
        }
        None => None,
    };
    if let Some(n) = &b.name {
        check_len("name", n, MAX_NAME)?;
    }
    let not_found = || not_found("KEY_NOT_FOUND", "public key not found");
    match state
        .store
        .update_public_key(
            &auth.account.id,
            &key,
            b.name.as_deref(),
            origins.as_deref(),
        )
        .await
    {
        Err(StoreError::NotFound) => return Err(not_found()),
        other => other.map_err(store_err)?,
    }
    let k = state
        .store
        .get_public_key(&key)
        .await
        .map_err(store_err)?
        .ok_or_else(not_found)?;
    Ok(ok(public_key_json(&k)))
}

async fn revoke_key(
    State(state): State<AppState>,
    auth: AccountAuth,
    Path(key): Path<String>,
) -> ApiResult<Json<Value>> {
    match state
        .store
        .revoke_public_key(&auth.account.id, &key, state.clock.unix_ms())
        .await
    {
        Err(StoreError::NotFound) => Err(not_found(
            "KEY_NOT_FOUND",
            "public key not found (or already revoked)",
        )),
        other => {
            other.map_err(store_err)?;
            Ok(ok(json!({ "key": key, "revoked": true })))
        }
    }
}
