//! Every error code of the seed with its HTTP status, validation of bodies, the per-user rate limit
//! and session cap, store failures, and a model whose provider cannot start.

use crate::on_every_backend;
use crate::support::{assert_error, assert_ok, Srv};
use parlor::realtime::config::ModelConfig;
use reqwest::Method as M;
use serde_json::{json, Value};

async fn codes(s: &Srv) {
    let id = s.create("alice", "parlor-local").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let sessions = "/api/realtime/sessions";
    // UNAUTHORIZED: no token, a bad one, an expired one, on every endpoint.
    let expired = {
        let now = parlor::clock::Clock::unix_secs(&*s.clock);
        parlor_signaling::AccessToken::encode(
            &parlor_signaling::Claims {
                iss: crate::common::KEY.into(),
                sub: "alice".into(),
                nbf: now - 7200,
                exp: now - 3600,
                ..Default::default()
            },
            crate::common::SECRET,
        )
    };
    let one = format!("{sessions}/{id}");
    let endpoints: Vec<(M, String)> = vec![
        (M::GET, sessions.into()),
        (M::POST, sessions.into()),
        (M::GET, one.clone()),
        (M::DELETE, one.clone()),
        (M::POST, format!("{one}/resume")),
        (M::GET, format!("{one}/history")),
        (M::GET, "/api/realtime/models".into()),
        (M::GET, "/api/realtime/stream".into()),
        (M::GET, "/api/realtime/stats".into()),
    ];
    for (m, path) in &endpoints {
        for tok in [None, Some("garbage"), Some(expired.as_str())] {
            let r = s
                .req(
                    m.clone(),
                    path,
                    tok,
                    Some(&json!({"model": "parlor-local"})),
                )
                .await;
            assert_error(&r, 401, "UNAUTHORIZED");
        }
    }
    // INVALID_SESSION_ID for malformed ids; SESSION_NOT_FOUND for well-formed unknown ones.
    for bad in [
        "x",
        "session_short",
        "session_abc%21efghijkl",
        "msg_abcdefghijkl",
        "session_abcdefghijklm",
    ] {
        for (m, suffix) in [
            (M::GET, ""),
            (M::DELETE, ""),
            (M::POST, "/resume"),
            (M::GET, "/history"),
        ] {
            let r = s
                .req(
                    m,
                    &format!("{sessions}/{bad}{suffix}"),
                    Some(&s.token("alice")),
                    None,
                )
                .await;
            assert_error(&r, 400, "INVALID_SESSION_ID");
        }
    }
    let r = s
        .get(&format!("{sessions}/session_000000000000"), "alice")
        .await;
    assert_error(&r, 404, "SESSION_NOT_FOUND");
    // MODEL_NOT_AVAILABLE: unknown (400) or provider unavailable (503).
    let create = |body: Value| async move { s.post(sessions, "alice", body).await };
    assert_error(
        &create(json!({"model": "gpt-5"})).await,
        400,
        "MODEL_NOT_AVAILABLE",
    );
    let r = create(json!({"model": "gpt-realtime"})).await;
    assert_error(&r, 503, "MODEL_NOT_AVAILABLE");
    // Validation of the body.
    for body in [
        json!({}),
        json!({"model": ""}),
        json!({"model": "parlor-local", "temperature": 2.5}),
        json!({"model": "parlor-local", "temperature": -0.1}),
        json!({"model": "parlor-local", "maxTokens": 257}),
        json!({"model": "parlor-local", "maxTokens": 0}),
        json!({"model": "parlor-local", "systemPrompt": "x".repeat(8001)}),
        json!({"model": "parlor-local", "systemPrompt": "a\u{0}b"}),
        json!({"model": "parlor-local", "metadata": "not an object"}),
        json!({"model": "parlor-local", "metadata": {"big": "x".repeat(5000)}}),
        json!({"model": "parlor-local", "temperature": "hot"}),
        json!({"model": "parlor-local", "colour": "blue"}),
        json!([1, 2]),
    ] {
        let r = create(body.clone()).await;
        assert_error(&r, 400, "VALIDATION_ERROR");
        eprintln!(
            "{}: {}",
            body.to_string().chars().take(60).collect::<String>(),
            r.1["error"]["message"]
        );
    }
    let r = s
        .client
        .post(s.url(sessions))
        .bearer_auth(s.token("alice"))
        .header("content-type", "application/json")
        .body("{\"model\":")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // The limits are inclusive.
    assert_ok(
        &create(json!({"model": "parlor-local", "maxTokens": 256, "temperature": 2.0})).await,
        201,
    );
}

#[tokio::test]
async fn each_error_code_with_its_status() {
    on_every_backend!(|_| {}, codes);
}

async fn rate_limit(s: &Srv) {
    for i in 0..5 {
        let r = s.get("/api/realtime/models", "alice").await;
        assert_eq!(r.0, 200, "request {i}: {}", r.1);
    }
    let r = s
        .client
        .get(s.url("/api/realtime/sessions"))
        .bearer_auth(s.token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "60");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "RATE_LIMIT_EXCEEDED");
    assert_error(
        &s.post(
            "/api/realtime/sessions",
            "alice",
            json!({"model": "parlor-local"}),
        )
        .await,
        429,
        "RATE_LIMIT_EXCEEDED",
    );
    // Per user: bob is not limited.
    assert_eq!(s.get("/api/realtime/models", "bob").await.0, 200);
    // The window passes on the clock.
    s.clock.advance_ms(59_000);
    assert_error(
        &s.get("/api/realtime/models", "alice").await,
        429,
        "RATE_LIMIT_EXCEEDED",
    );
    s.clock.advance_ms(1_000);
    assert_eq!(s.get("/api/realtime/models", "alice").await.0, 200);
}

#[tokio::test]
async fn rate_limit_per_user_per_minute() {
    on_every_backend!(
        |c: &mut parlor::config::Config| c.realtime.rate_limit_per_minute = 5,
        rate_limit
    );
}

async fn session_cap(s: &Srv) {
    let a = s.create("alice", "parlor-local").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.create("alice", "parlor-local").await;
    let r = s
        .post(
            "/api/realtime/sessions",
            "alice",
            json!({"model": "parlor-local"}),
        )
        .await;
    assert_error(&r, 409, "SESSION_CREATION_FAILED");
    s.create("bob", "parlor-local").await;
    // A completed (deleted) session frees a place.
    assert_ok(
        &s.delete(&format!("/api/realtime/sessions/{a}"), "alice")
            .await,
        200,
    );
    s.create("alice", "parlor-local").await;
}

#[tokio::test]
async fn max_sessions_per_user() {
    on_every_backend!(
        |c: &mut parlor::config::Config| c.realtime.max_sessions_per_user = 2,
        session_cap
    );
}

fn broken_model(c: &mut parlor::config::Config) {
    // A catalogue model on the local provider, which is disabled: listed unavailable.
    c.realtime.local.enabled = false;
    c.realtime.models.push(ModelConfig {
        id: "local-off".into(),
        name: "Disabled".into(),
        provider: "local".into(),
        ..ModelConfig::default()
    });
}

async fn failures(s: &Srv) {
    let m = assert_ok(&s.get("/api/realtime/models", "alice").await, 200);
    assert_eq!(m["availableModels"], 0);
    let off = m["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == "local-off")
        .unwrap()
        .clone();
    assert_eq!(off["status"], "unavailable");
    assert!(
        off["statusReason"]
            .as_str()
            .unwrap()
            .contains("enabled = false"),
        "{off}"
    );
    assert_error(
        &s.post(
            "/api/realtime/sessions",
            "alice",
            json!({"model": "local-off"}),
        )
        .await,
        503,
        "MODEL_NOT_AVAILABLE",
    );
    // A session stored while the model worked: resume says the model is unavailable and the socket
    // cannot reach the model.
    let now = s.now_ms();
    let rec = parlor::store::RtSessionRecord {
        id: "session_brokenmodel1".into(),
        user_id: "alice".into(),
        model: "local-off".into(),
        status: "paused".into(),
        temperature: 0.7,
        max_tokens: 100,
        stream: true,
        system_prompt: None,
        metadata: "{}".into(),
        created_at: now,
        last_activity: now,
        ended_at: None,
        deleted_at: None,
        deleted_by: None,
        token_generation: 1,
        token_expires_at: now + 3_600_000,
        prompt_tokens: 0,
        completion_tokens: 0,
        message_count: 0,
        request_count: 0,
        failed_count: 0,
        response_ms_sum: 0,
        response_count: 0,
        failure_reason: None,
    };
    s.handle.state.store.insert_rt_session(&rec).await.unwrap();
    let path = "/api/realtime/sessions/session_brokenmodel1";
    assert_error(
        &s.post_empty(&format!("{path}/resume"), "alice").await,
        503,
        "MODEL_NOT_AVAILABLE",
    );
    let g = assert_ok(&s.get(path, "alice").await, 200);
    let url = g["connectionInfo"]["websocketUrl"].as_str().unwrap();
    let tok = g["connectionInfo"]["authToken"].as_str().unwrap();
    let mut ws = s.connect(url).await;
    ws.send(json!({"type": "auth", "token": tok})).await;
    ws.expect_error_close("CONNECTION_FAILED", 4011).await;
    // The store fails: creation and deletion say so.
    s.handle.state.store.pool.close().await;
    assert_error(
        &s.delete(path, "alice").await,
        500,
        "SESSION_DELETION_FAILED",
    );
}

#[tokio::test]
async fn unavailable_models_and_store_failures() {
    on_every_backend!(broken_model, failures);
}

async fn creation_fails(s: &Srv) {
    s.handle.state.store.pool.close().await;
    assert_error(
        &s.post(
            "/api/realtime/sessions",
            "alice",
            json!({"model": "parlor-local"}),
        )
        .await,
        500,
        "SESSION_CREATION_FAILED",
    );
}

#[tokio::test]
async fn creation_fails_when_the_store_does() {
    on_every_backend!(|_| {}, creation_fails);
}
