//! The front door: `/demo` (join a room from the browser), `/docs` (the API reference rendered from
//! `/openapi.json`), `/assets/{file}` (the pinned browser bundles installed in the Parlor home, one
//! mechanism for the demo and the widget), `/favicon.ico`, and the dev-only
//! `POST /api/dev/demo-token`. Every page uses same-origin assets only: nothing leaves the machine.

use crate::error::{ApiError, ApiPath, ApiQuery, ApiResult};
use crate::home::{Status, ASSETS, LIVEKIT_CLIENT};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

/// The room `POST /api/dev/demo-token` grants.
pub const DEMO_ROOM: &str = "demo";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/demo", get(demo))
        .route("/docs", get(docs))
        .route("/assets/{file}", get(asset))
        .route("/favicon.ico", get(favicon))
        .route("/api/dev/demo-token", post(demo_token))
}

const FAVICON: &str = include_str!("favicon.svg");

async fn demo(State(state): State<AppState>) -> Html<String> {
    // Inspected per request: running scripts/setup while the server runs fixes the page at once.
    let bundle = match LIVEKIT_CLIENT.inspect(&state.home.root) {
        Status::Available { .. } => String::new(),
        Status::Missing { why } => format!(
            "livekit-client {why}; run {} on the server",
            state.home.fix_command()
        ),
    };
    Html(
        include_str!("demo.html")
            .replace("{{LIVEKIT_URL}}", &LIVEKIT_CLIENT.url())
            .replace("{{DEV}}", if state.dev_keys { "true" } else { "false" })
            .replace("{{BUNDLE_MISSING}}", &html_attr(&bundle)),
    )
}

async fn docs() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}

async fn favicon() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        FAVICON,
    )
}

#[derive(Deserialize)]
struct AssetQuery {
    v: Option<String>,
}

/// A pinned bundle from the Parlor home. With `?v=` equal to the pinned version it may be cached
/// for a year (the URL changes with the version); without it, it is revalidated every time.
async fn asset(
    State(state): State<AppState>,
    ApiPath(file): ApiPath<String>,
    ApiQuery(q): ApiQuery<AssetQuery>,
) -> ApiResult<Response> {
    let a = ASSETS
        .iter()
        .find(|a| a.file == file)
        .ok_or_else(|| ApiError::not_found("asset_not_found", format!("no asset {file}")))?;
    if q.v.as_deref().is_some_and(|v| v != a.version) {
        return Err(ApiError::not_found(
            "asset_version_not_found",
            format!("{} is pinned at {}", a.package, a.version),
        ));
    }
    let missing = || {
        ApiError::not_found(
            "asset_not_installed",
            format!(
                "{} is not installed in the Parlor home; run {} on the server",
                a.package,
                state.home.fix_command()
            ),
        )
    };
    if let Status::Missing { .. } = a.inspect(&state.home.root) {
        return Err(missing());
    }
    let body = tokio::fs::read(a.path(&state.home.root))
        .await
        .map_err(|_| missing())?;
    let cache = if q.v.is_some() {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    Ok((
        [
            (header::CONTENT_TYPE, a.content_type),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DemoTokenRequest {
    identity: Option<String>,
}

/// Dev mode only (keys generated because none are configured): a join token for the demo room, so
/// the demo page works with one click. With configured keys: 403.
async fn demo_token(
    State(state): State<AppState>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    if !state.dev_keys {
        return Err(ApiError::forbidden(
            "demo tokens are minted only in dev mode (no [keys] configured); mint one with `parlor token`",
        )
        .with_code("dev_mode_only"));
    }
    let req: DemoTokenRequest = if body.iter().all(u8::is_ascii_whitespace) {
        DemoTokenRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))?
    };
    let identity = match req.identity.map(|s| s.trim().to_string()) {
        Some(id) if !id.is_empty() => {
            let ok = id.len() <= 64
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !ok {
                return Err(ApiError::bad_request(
                    "validation_error",
                    "identity: 1-64 characters from A-Z a-z 0-9 - _ .",
                ));
            }
            id
        }
        _ => crate::ids::new_id("guest-"),
    };
    let (key, secret) = state
        .keys
        .primary()
        .ok_or_else(|| ApiError::internal("no API key"))?;
    let ttl = state.config.room.token_ttl_secs;
    let token = parlor_signaling::AccessToken::for_join(
        key,
        secret,
        &identity,
        parlor_signaling::VideoGrant::join(DEMO_ROOM),
        state.clock.unix_secs(),
        ttl,
    );
    Ok(Json(json!({
        "success": true,
        "url": state.config.public_ws_url(),
        "token": token,
        "room": DEMO_ROOM,
        "identity": identity,
        "expires_in": ttl,
    })))
}

/// Escape for an HTML attribute value in double quotes.
fn html_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
