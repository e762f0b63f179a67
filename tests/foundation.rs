//! Foundation: health, API conventions (auth, envelope, limits), config, on SQLite and PostgreSQL.

mod common;
use common::*;
use parlor_signaling::{AccessToken, Claims, VideoGrant};
use serde_json::{json, Value};

async fn check_health(s: &TestServer, backend: &str) {
    let r = s.client.get(s.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["dependencies"][backend], "healthy", "{v}");
    for k in [
        "websocket_connections",
        "online_users",
        "active_calls",
        "active_huddles",
    ] {
        assert!(v["stats"][k].is_u64(), "missing stats.{k}: {v}");
    }
    assert!(v["uptime"].is_u64() && v["version"].is_string() && v["node"].is_string());
    let r = s.client.get(s.url("/health/ready")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = s.client.get(s.url("/health/live")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let m = s.metrics().await;
    assert!(
        m.contains("# TYPE parlor_http_requests_total counter"),
        "{m}"
    );
    assert!(m.contains("parlor_rtp_packets_out_total"));
}

fn assert_envelope(v: &Value, code: &str) {
    assert_eq!(v["success"], false, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
}

async fn check_auth_and_errors(s: &TestServer) {
    let rooms = s.url("/api/rooms");
    // Missing token.
    let r = s.client.get(&rooms).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_envelope(&r.json().await.unwrap(), "unauthorized");
    // Expired token.
    let expired = AccessToken::encode(
        &Claims {
            iss: KEY.into(),
            sub: "u".into(),
            exp: now_unix() - 3600,
            nbf: 0,
            ..Default::default()
        },
        SECRET,
    );
    let r = s
        .client
        .get(&rooms)
        .bearer_auth(expired)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_envelope(&v, "unauthorized");
    assert!(v["error"]["message"].as_str().unwrap().contains("expired"));
    // Wrongly signed token.
    let forged = AccessToken::for_join(
        KEY,
        "not-the-secret",
        "u",
        VideoGrant::join("r"),
        now_unix(),
        60,
    );
    let r = s
        .client
        .get(&rooms)
        .bearer_auth(forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_envelope(&r.json().await.unwrap(), "unauthorized");
    // Garbage token and wrong scheme.
    let r = s
        .client
        .get(&rooms)
        .header("authorization", "Bearer \u{1}\u{2}")
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), 401);
    }
    let r = s
        .client
        .get(&rooms)
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Valid token.
    let r = s
        .client
        .get(&rooms)
        .bearer_auth(s.user_token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Unknown route: JSON 404. Wrong method: JSON 405.
    let r = s.client.get(s.url("/no/such/route")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_envelope(&r.json().await.unwrap(), "not_found");
    let r = s.client.delete(s.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_envelope(&r.json().await.unwrap(), "method_not_allowed");
    // Oversized body: 413 JSON.
    let admin = {
        let mut g = VideoGrant::join("x");
        g.room_create = true;
        s.token("admin", g)
    };
    let big = json!({ "name": "x".repeat(2 * 1024 * 1024) });
    let r = s
        .client
        .post(&rooms)
        .bearer_auth(&admin)
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_envelope(&r.json().await.unwrap(), "payload_too_large");
    // Malformed JSON: 400 JSON.
    let r = s
        .client
        .post(&rooms)
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_envelope(&r.json().await.unwrap(), "invalid_request");
    // Wrong type.
    let r = s
        .client
        .post(&rooms)
        .bearer_auth(&admin)
        .json(&json!({"name": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Missing grant: 403.
    let r = s
        .client
        .post(&rooms)
        .bearer_auth(s.user_token("bob"))
        .json(&json!({"name": "r1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_envelope(&r.json().await.unwrap(), "not_authorized");
    // Create + conflict + list.
    let r = s
        .client
        .post(&rooms)
        .bearer_auth(&admin)
        .json(&json!({"name": "r1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = s
        .client
        .post(&rooms)
        .bearer_auth(&admin)
        .json(&json!({"name": "r1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_envelope(&r.json().await.unwrap(), "room_exists");
    let r = s
        .client
        .post(&rooms)
        .bearer_auth(&admin)
        .json(&json!({"name": "bad name!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = s
        .client
        .get(&rooms)
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["count"], 1);
    assert_eq!(v["rooms"][0]["name"], "r1");
    assert!(v["rooms"][0]["sid"].as_str().unwrap().starts_with("RM_"));
    // The server is still healthy after all of that.
    let r = s.client.get(s.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn health_auth_and_error_envelope_on_every_backend() {
    for db in all_dbs().await {
        let backend = db.backend();
        let s = TestServer::start(&db).await;
        check_health(&s, backend).await;
        check_auth_and_errors(&s).await;
        s.stop().await;
        db.drop_db().await;
    }
}

#[tokio::test]
async fn graceful_shutdown_stops_accepting() {
    let db = TestDb::sqlite();
    let s = TestServer::start(&db).await;
    let url = s.url("/health/live");
    let client = s.client.clone();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    s.stop().await;
    assert!(
        client.get(&url).send().await.is_err(),
        "server still accepting after shutdown"
    );
}

/// The binary itself: `parlor token` mints a token the library accepts; `parlor keys` prints a pair.
#[test]
fn cli_token_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_parlor");
    let out = std::process::Command::new(bin)
        .args(["token", "--room", "r9", "--identity", "zed"])
        .env("PARLOR_KEYS", format!("{KEY}:{SECRET}"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let claims =
        AccessToken::decode(token.trim(), |k| (k == KEY).then_some(SECRET), now_unix()).unwrap();
    assert_eq!(claims.sub, "zed");
    assert_eq!(claims.video().room.as_deref(), Some("r9"));
    let out = std::process::Command::new(bin)
        .arg("keys")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("API key:    API") && text.contains("API secret:"),
        "{text}"
    );
}

/// `parlor serve` with no config: SQLite under ./data, dev keys generated and printed, /health healthy.
#[test]
fn serve_on_embedded_defaults() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_parlor"))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("PARLOR_RTC_UDP_PORT", "0")
        .env("PARLOR_RTC_TCP_PORT", "0")
        .env("PARLOR_TURN_ENABLED", "false")
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut printed = String::new();
    for line in lines.by_ref().take(8) {
        let line = line.unwrap();
        printed.push_str(&line);
        printed.push('\n');
        if line.contains("dev API secret") {
            break;
        }
    }
    assert!(printed.contains("dev API key:    API"), "{printed}");
    assert!(printed.contains("/demo"), "{printed}");
    let body = blocking::blocking_get(&format!("http://127.0.0.1:{port}/health"));
    let _ = child.kill();
    let _ = child.wait();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["dependencies"]["sqlite"], "healthy");
    assert!(dir.path().join("data/parlor.db").exists());
    assert!(dir.path().join("data/dev-keys.toml").exists());
}

mod blocking {
    /// Minimal blocking GET without enabling reqwest's blocking feature.
    pub fn blocking_get(url: &str) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { ::reqwest::get(url).await.unwrap().text().await.unwrap() })
    }
}
