//! The voice widget: `GET /widget.js` (the embeddable script, loading `livekit-client` from this
//! Parlor's `/assets/`) and `GET /widget` (a page showing it: `?key=pk_…&assistant=asst_…`, in dev
//! mode the demo assistant and key by default).

use crate::home::LIVEKIT_CLIENT;
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/widget.js", get(script))
        .route("/widget", get(page))
}

async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        include_str!("widget.js").replace("{{LIVEKIT_URL}}", &LIVEKIT_CLIENT.url()),
    )
}

#[derive(Deserialize)]
struct PageQuery {
    key: Option<String>,
    assistant: Option<String>,
}

/// HTML-escape for attribute and text positions.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

async fn page(
    State(state): State<AppState>,
    q: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Html<String> {
    let q = q.map(|Query(q)| q).unwrap_or(PageQuery {
        key: None,
        assistant: None,
    });
    let mut key = q.key.unwrap_or_default();
    let mut assistant = q.assistant.unwrap_or_default();
    if state.dev_keys && (key.is_empty() || assistant.is_empty()) {
        if let Ok((a, k)) = crate::embed::bootstrap_dev(&state).await {
            if key.is_empty() {
                key = k.key;
            }
            if assistant.is_empty() {
                assistant = a.id;
            }
        }
    }
    let missing = if key.is_empty() || assistant.is_empty() {
        "Give the page ?key=pk_…&assistant=asst_… (create them with `parlor assistant create \
         --name N --origin <this origin>`)."
    } else {
        ""
    };
    let base = state.config.public_http_url();
    let snippet = format!(
        "<script src=\"{base}/widget.js\" data-key=\"{key}\" data-assistant=\"{assistant}\" async></script>"
    );
    Html(
        include_str!("widget.html")
            .replace("{{MISSING}}", &esc(missing))
            .replace("{{SNIPPET}}", &esc(&snippet))
            .replace("{{KEY}}", &esc(&key))
            .replace("{{ASSISTANT}}", &esc(&assistant)),
    )
}
