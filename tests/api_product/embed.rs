//! Voice-assistant accounts and the embed endpoint (seed 001): management with the account's
//! roomAdmin token, every embed error code, CORS for allowed origins only, the embed join token's
//! single purpose, the account's calls, the once-only credit ledger, dev-mode bootstrap.

use crate::common::{KEY, SECRET};
use crate::on_every_backend;
use crate::support::{assert_envelope, Resp, Srv};
use parlor::store::Charge;
use serde_json::{json, Value};

const ORIGIN: &str = "https://shop.example";
const OTHER_KEY: &str = "APIotherkey";
const OTHER_SECRET: &str = "other-secret-0123456789abcdefghijklmn";

async fn admin(s: &Srv, m: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> Resp {
    let mut rb = s.client.request(m, s.url(path)).bearer_auth(token);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// POST /api/v1/embed/token with `key` (None: no Authorization) from `origin` (None: no Origin).
async fn embed(s: &Srv, key: Option<&str>, origin: Option<&str>, body: &str) -> reqwest::Response {
    let mut rb = s
        .client
        .post(s.url("/api/v1/embed/token"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(k) = key {
        rb = rb.bearer_auth(k);
    }
    if let Some(o) = origin {
        rb = rb.header("origin", o);
    }
    rb.send().await.unwrap()
}

async fn embed_json(s: &Srv, key: Option<&str>, origin: Option<&str>, body: &str) -> Resp {
    let r = embed(s, key, origin, body).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// An assistant and a public key (allowed for ORIGIN) of the test key's account.
async fn setup(s: &Srv) -> (String, String) {
    let t = s.admin_token("ops");
    let a = admin(
        s,
        reqwest::Method::POST,
        "/api/v1/assistants",
        &t,
        Some(json!({ "name": "Support", "model": "parlor-local", "greeting": "Hi!", "pricePerMinute": 0.05 })),
    )
    .await;
    assert_eq!(a.0, 201, "{}", a.1);
    let k = admin(
        s,
        reqwest::Method::POST,
        "/api/v1/public-keys",
        &t,
        Some(json!({ "name": "site", "allowedOrigins": [ORIGIN, "https://*.example.com"] })),
    )
    .await;
    assert_eq!(k.0, 201, "{}", k.1);
    (
        a.1["data"]["id"].as_str().unwrap().to_string(),
        k.1["data"]["key"].as_str().unwrap().to_string(),
    )
}

async fn manage(s: &Srv) {
    use reqwest::Method as M;
    let t = s.admin_token("ops");
    let (asst, key) = setup(s).await;
    assert!(
        asst.starts_with("asst_") && key.starts_with("pk_live_"),
        "{asst} {key}"
    );
    let r = admin(s, M::GET, &format!("/api/v1/assistants/{asst}"), &t, None).await;
    assert_eq!(r.0, 200);
    let d = &r.1["data"];
    assert_eq!(
        (
            d["name"].as_str(),
            d["model"].as_str(),
            d["greeting"].as_str()
        ),
        (Some("Support"), Some("parlor-local"), Some("Hi!"))
    );
    assert_eq!(d["pricePerMinute"], 0.05);
    let r = admin(
        s,
        M::PATCH,
        &format!("/api/v1/assistants/{asst}"),
        &t,
        Some(json!({ "temperature": 0.2, "record": true })),
    )
    .await;
    assert_eq!(
        (r.0, &r.1["data"]["temperature"], &r.1["data"]["record"]),
        (200, &json!(0.2), &json!(true))
    );
    // Validation: the seed's INVALID_REQUEST.
    for bad in [
        json!({ "name": "x", "model": "no-such-model" }),
        json!({ "name": "x", "temperature": 3 }),
        json!({ "name": "" }),
        json!({ "model": "parlor-local" }),
        json!({ "name": "x", "maxTokens": 0 }),
        json!({ "name": "x", "unknownField": 1 }),
    ] {
        let r = admin(s, M::POST, "/api/v1/assistants", &t, Some(bad.clone())).await;
        assert_envelope(&r, 400, "INVALID_REQUEST");
    }
    for bad in [
        json!({ "allowedOrigins": [] }),
        json!({ "allowedOrigins": ["shop.example"] }),
        json!({ "allowedOrigins": ["https://a.example/path"] }),
        json!({ "allowedOrigins": [ORIGIN], "mode": "prod" }),
    ] {
        let r = admin(s, M::POST, "/api/v1/public-keys", &t, Some(bad.clone())).await;
        assert_envelope(&r, 400, "INVALID_REQUEST");
    }
    // Credentials: no token, a plain user token, a public key.
    let r = admin(s, M::GET, "/api/v1/assistants", "", None).await;
    assert_envelope(&r, 401, "UNAUTHORIZED");
    let r = admin(s, M::GET, "/api/v1/assistants", &s.token("ops"), None).await;
    assert_envelope(&r, 403, "FORBIDDEN");
    let r = admin(s, M::GET, "/api/v1/assistants", &key, None).await;
    assert_envelope(&r, 401, "UNAUTHORIZED");
    assert!(
        r.1["error"]["message"].as_str().unwrap().contains("embed"),
        "{}",
        r.1
    );
    // Another account (another API key) sees none of it.
    let other = s.admin_token_for(OTHER_KEY, OTHER_SECRET, "ops");
    let r = admin(s, M::GET, "/api/v1/assistants", &other, None).await;
    assert_eq!((r.0, r.1["data"]["total"].as_i64()), (200, Some(0)));
    let r = admin(
        s,
        M::GET,
        &format!("/api/v1/assistants/{asst}"),
        &other,
        None,
    )
    .await;
    assert_envelope(&r, 404, "ASSISTANT_NOT_FOUND");
    let r = admin(
        s,
        M::DELETE,
        &format!("/api/v1/public-keys/{key}"),
        &other,
        None,
    )
    .await;
    assert_envelope(&r, 404, "KEY_NOT_FOUND");
    // Keys list, rename, revoke.
    let r = admin(
        s,
        M::PATCH,
        &format!("/api/v1/public-keys/{key}"),
        &t,
        Some(json!({ "name": "renamed", "allowedOrigins": ["HTTPS://Shop.Example/"] })),
    )
    .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["data"]["allowedOrigins"], json!([ORIGIN]), "normalized");
    let r = admin(
        s,
        M::DELETE,
        &format!("/api/v1/public-keys/{key}"),
        &t,
        None,
    )
    .await;
    assert_eq!(r.0, 200);
    let r = admin(s, M::GET, "/api/v1/public-keys", &t, None).await;
    assert_eq!(r.1["data"]["keys"][0]["active"], false);
    let r = admin(
        s,
        M::DELETE,
        &format!("/api/v1/assistants/{asst}"),
        &t,
        None,
    )
    .await;
    assert_eq!(r.0, 200);
    let r = admin(s, M::GET, &format!("/api/v1/assistants/{asst}"), &t, None).await;
    assert_envelope(&r, 404, "ASSISTANT_NOT_FOUND");
}

#[tokio::test]
async fn assistants_and_public_keys_are_managed_with_the_accounts_token() {
    for db in crate::common::all_dbs().await {
        let s = Srv::start_with(&db, |c| {
            c.keys.insert(OTHER_KEY.into(), OTHER_SECRET.into());
        })
        .await;
        manage(&s).await;
        s.stop().await;
        db.drop_db().await;
    }
}

async fn errors(s: &Srv) {
    use reqwest::Method as M;
    let t = s.admin_token("ops");
    let (asst, key) = setup(s).await;
    let body = json!({ "assistantId": asst, "metadata": { "userId": "user-123" } }).to_string();
    // 401: no key, a JWT, an unknown key; 403: origin missing or not allowed.
    assert_envelope(
        &embed_json(s, None, Some(ORIGIN), &body).await,
        401,
        "UNAUTHORIZED",
    );
    assert_envelope(
        &embed_json(s, Some(&s.token("x")), Some(ORIGIN), &body).await,
        401,
        "UNAUTHORIZED",
    );
    assert_envelope(
        &embed_json(s, Some("pk_live_nope"), Some(ORIGIN), &body).await,
        401,
        "UNAUTHORIZED",
    );
    assert_envelope(
        &embed_json(s, Some(&key), None, &body).await,
        403,
        "DOMAIN_NOT_ALLOWED",
    );
    for o in [
        "https://evil.example",
        "http://shop.example",
        "https://example.com",
    ] {
        assert_envelope(
            &embed_json(s, Some(&key), Some(o), &body).await,
            403,
            "DOMAIN_NOT_ALLOWED",
        );
    }
    // 400: the body.
    for bad in [
        "",
        "not json",
        "[]",
        "{}",
        r#"{"assistantId": 5}"#,
        &json!({ "assistantId": asst, "metadata": "x" }).to_string(),
        &json!({ "assistantId": asst, "metadata": { "big": "x".repeat(5000) } }).to_string(),
    ] {
        let r = embed_json(s, Some(&key), Some(ORIGIN), bad).await;
        assert_envelope(&r, 400, "INVALID_REQUEST");
    }
    // 404: unknown assistant, and another account's.
    let r = embed_json(
        s,
        Some(&key),
        Some(ORIGIN),
        r#"{"assistantId": "asst_nope"}"#,
    )
    .await;
    assert_envelope(&r, 404, "ASSISTANT_NOT_FOUND");
    let other = s.admin_token_for(OTHER_KEY, OTHER_SECRET, "ops");
    let theirs = admin(
        s,
        M::POST,
        "/api/v1/assistants",
        &other,
        Some(json!({ "name": "theirs" })),
    )
    .await;
    let theirs = theirs.1["data"]["id"].as_str().unwrap().to_string();
    let r = embed_json(
        s,
        Some(&key),
        Some(ORIGIN),
        &json!({ "assistantId": theirs }).to_string(),
    )
    .await;
    assert_envelope(&r, 404, "ASSISTANT_NOT_FOUND");
    // 503: a model whose provider is not set up (no OpenAI key here).
    let gpt = admin(
        s,
        M::POST,
        "/api/v1/assistants",
        &t,
        Some(json!({ "name": "gpt", "model": "gpt-realtime" })),
    )
    .await;
    let gpt = gpt.1["data"]["id"].as_str().unwrap().to_string();
    let r = embed_json(
        s,
        Some(&key),
        Some(ORIGIN),
        &json!({ "assistantId": gpt }).to_string(),
    )
    .await;
    assert_envelope(&r, 503, "MODEL_NOT_AVAILABLE");
    // Success from an exact and from a wildcard origin.
    for o in [ORIGIN, "https://www.example.com"] {
        let r = embed(s, Some(&key), Some(o), &body).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["access-control-allow-origin"], o);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["success"], true);
        assert!(v["data"]["url"].as_str().unwrap().starts_with("ws://"));
        assert!(
            v["data"]["callId"].as_str().unwrap().starts_with("call_"),
            "{v}"
        );
    }
    // 402: a prepaid account at zero credits; credits make it work again.
    let r = admin(
        s,
        M::PATCH,
        "/api/v1/account",
        &t,
        Some(json!({ "allowNegative": false })),
    )
    .await;
    assert_eq!((r.0, &r.1["data"]["allowNegative"]), (200, &json!(false)));
    assert_envelope(
        &embed_json(s, Some(&key), Some(ORIGIN), &body).await,
        402,
        "INSUFFICIENT_CREDITS",
    );
    let r = admin(
        s,
        M::POST,
        "/api/v1/account/credits",
        &t,
        Some(json!({ "amount": 5 })),
    )
    .await;
    assert_eq!((r.0, &r.1["data"]["credits"]), (201, &json!(5.0)));
    assert_eq!(
        embed(s, Some(&key), Some(ORIGIN), &body).await.status(),
        200
    );
    // A revoked key is unknown.
    admin(
        s,
        M::DELETE,
        &format!("/api/v1/public-keys/{key}"),
        &t,
        None,
    )
    .await;
    assert_envelope(
        &embed_json(s, Some(&key), Some(ORIGIN), &body).await,
        401,
        "UNAUTHORIZED",
    );
}

#[tokio::test]
async fn every_embed_error_code_follows_the_seed() {
    for db in crate::common::all_dbs().await {
        let s = Srv::start_with(&db, |c| {
            c.keys.insert(OTHER_KEY.into(), OTHER_SECRET.into());
            // No OpenAI key can be found: gpt-realtime is unavailable.
            c.realtime.openai.api_key.clear();
            c.realtime.openai.api_key_env = "PARLOR_TEST_NO_SUCH_KEY".into();
        })
        .await;
        errors(&s).await;
        s.stop().await;
        db.drop_db().await;
    }
}

async fn rate_limit(s: &Srv) {
    let (asst, key) = setup(s).await;
    let body = json!({ "assistantId": asst }).to_string();
    for _ in 0..3 {
        assert_eq!(
            embed(s, Some(&key), Some(ORIGIN), &body).await.status(),
            200
        );
    }
    let r = embed(s, Some(&key), Some(ORIGIN), &body).await;
    assert_eq!(r.status(), 429);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        ORIGIN,
        "the page can read it"
    );
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "RATE_LIMIT_EXCEEDED");
    s.clock.advance_ms(61_000);
    assert_eq!(
        embed(s, Some(&key), Some(ORIGIN), &body).await.status(),
        200
    );
}

#[tokio::test]
async fn a_public_key_is_rate_limited_per_minute() {
    for db in crate::common::all_dbs().await {
        let s = Srv::start_with(&db, |c| c.embed.rate_limit_per_minute = 3).await;
        rate_limit(&s).await;
        s.stop().await;
        db.drop_db().await;
    }
}

async fn cors(s: &Srv) {
    setup(s).await;
    let preflight = |origin: &'static str| {
        s.client
            .request(reqwest::Method::OPTIONS, s.url("/api/v1/embed/token"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let r = preflight(ORIGIN).await.unwrap();
    assert_eq!(r.status(), 204);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], ORIGIN);
    assert!(h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("authorization"));
    assert!(h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    let r = preflight("https://evil.example").await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // A refused origin's POST carries no CORS headers either.
    let r = embed(s, Some("pk_live_x"), Some("https://evil.example"), "{}").await;
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // The rest of the API keeps its permissive CORS (Bearer tokens, no cookies).
    let r = s
        .client
        .request(reqwest::Method::OPTIONS, s.url("/api/calls"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_some());
}

#[tokio::test]
async fn cors_preflight_is_answered_for_allowed_origins_only() {
    on_every_backend!(cors);
}

async fn single_purpose(s: &Srv) {
    use reqwest::Method as M;
    let t = s.admin_token("ops");
    let (asst, key) = setup(s).await;
    let r = embed_json(
        s,
        Some(&key),
        Some(ORIGIN),
        &json!({ "assistantId": asst, "metadata": { "userId": "user-123", "source": "website" } })
            .to_string(),
    )
    .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let token = r.1["data"]["token"].as_str().unwrap().to_string();
    let call = r.1["data"]["callId"].as_str().unwrap().to_string();
    // The call's model session, on the assistant's model, owned by the caller.
    let sid = r.1["data"]["sessionId"].as_str().unwrap().to_string();
    let session = s.handle.state.store.get_rt_session(&sid).await.unwrap();
    assert_eq!(session.model, "parlor-local");
    assert_eq!(session.user_id, r.1["data"]["identity"].as_str().unwrap());
    assert!(session.metadata.contains(&call), "{}", session.metadata);
    // /rtc accepts it (the SDKs' validate endpoint), for its one room.
    let v = s
        .client
        .get(s.url(&format!("/rtc/validate?access_token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(v.status(), 200, "{}", v.text().await.unwrap());
    // No Bearer API does.
    for path in [
        "/api/calls",
        "/api/presence/online",
        "/api/v1/chat/threads",
        "/api/recordings",
        "/api/v1/calls",
    ] {
        let r = admin(s, M::GET, path, &token, None).await;
        assert_eq!(r.0, 401, "{path}: {}", r.1);
    }
    // The account sees the call; a public key cannot read or delete it.
    let r = admin(s, M::GET, "/api/v1/calls", &t, None).await;
    assert_eq!(r.0, 200);
    let c = &r.1["data"]["calls"][0];
    assert_eq!(
        (c["id"].as_str(), c["status"].as_str()),
        (Some(call.as_str()), Some("ringing"))
    );
    assert_eq!(c["assistantId"].as_str(), Some(asst.as_str()));
    assert_eq!(c["origin"], ORIGIN);
    assert_eq!(c["metadata"]["source"], "website");
    assert_eq!(c["sessionId"].as_str(), Some(sid.as_str()));
    assert_eq!(c["transcript"], json!([]));
    let r = admin(s, M::DELETE, &format!("/api/v1/calls/{call}"), &key, None).await;
    assert_envelope(&r, 401, "UNAUTHORIZED");
    let r = admin(s, M::GET, &format!("/api/v1/calls/{call}"), &t, None).await;
    assert_eq!(
        (r.0, r.1["data"]["id"].as_str()),
        (200, Some(call.as_str()))
    );
    // DELETE removes the record only.
    let r = admin(s, M::DELETE, &format!("/api/v1/calls/{call}"), &t, None).await;
    assert_eq!((r.0, &r.1["data"]["callEnded"]), (200, &json!(false)));
    let r = admin(s, M::GET, &format!("/api/v1/calls/{call}"), &t, None).await;
    assert_envelope(&r, 404, "CALL_NOT_FOUND");
    assert_eq!(
        s.handle.state.store.get_call(&call).await.unwrap().status,
        "ringing"
    );
    let r = admin(s, M::GET, "/api/v1/calls", &t, None).await;
    assert_eq!(r.1["data"]["calls"], json!([]));
}

#[tokio::test]
async fn the_embed_join_token_joins_its_room_and_nothing_else() {
    on_every_backend!(single_purpose);
}

async fn ledger(s: &Srv) {
    let store = &s.handle.state.store;
    let t = s.admin_token("ops");
    let (asst, key) = setup(s).await;
    let mut calls = Vec::new();
    for _ in 0..2 {
        let r = embed_json(
            s,
            Some(&key),
            Some(ORIGIN),
            &json!({ "assistantId": asst }).to_string(),
        )
        .await;
        calls.push(r.1["data"]["callId"].as_str().unwrap().to_string());
    }
    let now = s.now_ms();
    // Ten concurrent charges of one call: exactly one takes effect.
    let results = futures_util::future::join_all(
        (0..10).map(|_| store.charge_call(KEY, &calls[0], 1_500_000, now)),
    )
    .await;
    let charged = results
        .iter()
        .filter(|r| matches!(r, Ok(Charge::Charged(_))))
        .count();
    let again = results
        .iter()
        .filter(|r| matches!(r, Ok(Charge::AlreadyCharged(_))))
        .count();
    assert_eq!((charged, again), (1, 9), "{results:?}");
    let acct = store.get_account(KEY).await.unwrap().unwrap();
    assert_eq!(acct.credits_micros, -1_500_000, "postpaid goes below zero");
    // Prepaid: a charge never takes the balance below zero.
    store.update_account(KEY, None, Some(false)).await.unwrap();
    store.add_credits(KEY, 2_000_000, None, now).await.unwrap();
    let Charge::Charged(e) = store
        .charge_call(KEY, &calls[1], 5_000_000, now)
        .await
        .unwrap()
    else {
        panic!("not charged");
    };
    assert_eq!((e.amount_micros, e.balance_after_micros), (-500_000, 0));
    assert!(e.note.unwrap().contains("ran out"));
    let r = admin(s, reqwest::Method::GET, "/api/v1/account", &t, None).await;
    assert_eq!(r.1["data"]["credits"], json!(0.0));
    assert_eq!(r.1["data"]["ledger"].as_array().unwrap().len(), 3);
    let _ = SECRET;
}

#[tokio::test]
async fn a_call_is_charged_exactly_once_and_prepaid_balances_stop_at_zero() {
    on_every_backend!(ledger);
}

#[tokio::test]
async fn dev_mode_creates_a_demo_assistant_and_a_key_for_its_own_origin() {
    let db = crate::common::TestDb::sqlite();
    let s = Srv::start_with(&db, |c| c.keys.clear()).await;
    let (a, k) = s
        .handle
        .dev_embed
        .clone()
        .expect("dev mode bootstraps the demo assistant");
    assert_eq!(a.model, "parlor-local");
    assert!(k.key.starts_with("pk_test_"));
    assert_eq!(k.allowed_origins, vec![s.http.clone()]);
    let r = embed_json(
        &s,
        Some(&k.key),
        Some(&s.http),
        &json!({ "assistantId": a.id }).to_string(),
    )
    .await;
    assert_eq!(r.0, 200, "{}", r.1);
    s.stop().await;
}

/// A call needs the model's audio: the offline model without its speech models (a home where
/// `scripts/setup` never ran) is refused at embed time with 503 MODEL_NOT_AVAILABLE naming the fix,
/// instead of connecting a caller to an assistant that cannot hear.
#[tokio::test]
async fn an_assistant_whose_model_cannot_do_audio_is_refused_at_embed_time() {
    let db = crate::common::TestDb::sqlite();
    let empty_home = tempfile::tempdir().unwrap();
    let home = empty_home.path().display().to_string();
    let s = Srv::start_with(&db, |c| c.server.home = home).await;
    let (asst, key) = setup(&s).await;
    let r = embed_json(
        &s,
        Some(&key),
        Some(ORIGIN),
        &json!({ "assistantId": asst }).to_string(),
    )
    .await;
    assert_envelope(&r, 503, "MODEL_NOT_AVAILABLE");
    assert!(
        r.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("scripts/setup"),
        "{}",
        r.1
    );
    // Text sessions on the same model still work: it is listed available.
    let m = s.get("/api/realtime/models", "alice").await;
    let local = m.1["data"]["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == "parlor-local")
        .cloned()
        .unwrap();
    assert_eq!(local["status"], "available", "{local}");
    s.stop().await;
}
