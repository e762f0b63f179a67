//! Test support: start a real Parlor server on ephemeral ports with a fresh database.
#![allow(dead_code)]

pub mod openai_fake;
pub mod pages;
pub mod python;
pub mod webhooks;

use parlor::config::Config;
use parlor::server::ServerHandle;
use parlor_signaling::{AccessToken, Claims, VideoGrant};
use sqlx::Connection;
use std::time::{SystemTime, UNIX_EPOCH};

pub const KEY: &str = "APItestkey";
pub const SECRET: &str = "test-secret-0123456789abcdefghijklmnop";

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A port free on 127.0.0.1 for both UDP and TCP (for a server spawned with fixed ports).
pub fn free_port() -> u16 {
    loop {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A plain API token for `user` (no room), signed with the test key.
pub fn user_token(user: &str) -> String {
    let claims = Claims {
        iss: KEY.into(),
        sub: user.into(),
        nbf: now_unix() - 1,
        exp: now_unix() + 3600,
        name: Some(user.into()),
        ..Default::default()
    };
    AccessToken::encode(&claims, SECRET)
}

/// One JSON API request as `user` against the server at `http`: (status, body or Null).
pub async fn api_call(
    http: &str,
    m: reqwest::Method,
    path: &str,
    user: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut rb = reqwest::Client::new()
        .request(m, format!("{http}{path}"))
        .bearer_auth(user_token(user));
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// Wait (up to 10 s) until the call `call` reads `active` for `user` at `http`. A client's publisher
/// connection reaching `Connected` does not mean the server has already marked the call active: that
/// follows from the SFU's media-connected event, handled asynchronously.
#[allow(dead_code)]
pub async fn wait_call_active(http: &str, call: &str, user: &str) {
    let path = format!("/api/calls/{call}/participants");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (code, v) = api_call(http, reqwest::Method::GET, &path, user, None).await;
        if code == 200 && v["status"] == "active" {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "call {call} never became active: {code} {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Which databases the suite must cover. PostgreSQL is required under CI (`CI` set) and used whenever
/// it is reachable; `PARLOR_TEST_PG_URL` points at an admin connection (default: local `test` db).
pub fn pg_admin_url() -> String {
    std::env::var("PARLOR_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        TestDb {
            url,
            pg_name: None,
            _dir: Some(dir),
        }
    }

    /// A fresh PostgreSQL database, or None (with a printed note) when PostgreSQL is unreachable
    /// outside CI. Under CI an unreachable PostgreSQL fails the test.
    pub async fn postgres() -> Option<TestDb> {
        let admin = pg_admin_url();
        let mut conn = match sqlx::PgConnection::connect(&admin).await {
            Ok(c) => c,
            Err(e) => {
                if std::env::var_os("CI").is_some() {
                    panic!("PostgreSQL at {admin} is required under CI: {e}");
                }
                eprintln!("SKIP postgres: {admin} unreachable: {e}");
                return None;
            }
        };
        // Databases are named parlor_t_<unix secs>_<random>; ones older than an hour are leftovers
        // of killed runs and are dropped here.
        let now = now_unix();
        let stale: Vec<String> =
            sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'parlor_t_%'")
                .fetch_all(&mut conn)
                .await
                .unwrap_or_default();
        for db in stale {
            let born = db
                .split('_')
                .nth(2)
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(0);
            if born + 3600 < now {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            }
        }
        let name = format!("parlor_t_{now}_{}", parlor::ids::new_id("").to_lowercase());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap();
        Some(TestDb {
            url: format!("{base}/{name}"),
            pg_name: Some(name),
            _dir: None,
        })
    }

    pub async fn drop_db(self) {
        if let Some(name) = &self.pg_name {
            if let Ok(mut conn) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            }
        }
    }

    pub fn backend(&self) -> &'static str {
        if self.pg_name.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }
}

/// Every database the suite runs on in this environment.
pub async fn all_dbs() -> Vec<TestDb> {
    let mut v = vec![TestDb::sqlite()];
    if let Some(pg) = TestDb::postgres().await {
        v.push(pg);
    }
    v
}

pub struct TestServer {
    pub handle: ServerHandle,
    pub http: String,
    pub ws: String,
    pub client: reqwest::Client,
    _data: tempfile::TempDir,
}

pub fn test_config(db_url: &str, data: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.server.bind = "127.0.0.1:0".into();
    c.server.shutdown_grace_secs = 2;
    c.database.url = db_url.to_string();
    c.storage.data_dir = data.to_path_buf();
    c.rtc.udp_port = 0;
    c.rtc.tcp_port = 0;
    c.turn.enabled = false;
    c.room.empty_timeout_secs = 1;
    c.keys.insert(KEY.into(), SECRET.into());
    c
}

impl TestServer {
    pub async fn start(db: &TestDb) -> TestServer {
        Self::start_with(db, |_| {}).await
    }

    pub async fn start_with(db: &TestDb, tweak: impl FnOnce(&mut Config)) -> TestServer {
        // PARLOR_TEST_LOG=<filter> (e.g. `parlor=debug`): the server's log on stderr, for debugging.
        if let Ok(filter) = std::env::var("PARLOR_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_writer(std::io::stderr)
                .try_init();
        }
        let data = tempfile::tempdir().unwrap();
        let mut config = test_config(&db.url, data.path());
        tweak(&mut config);
        let handle = parlor::server::start(config, parlor::clock::system())
            .await
            .unwrap();
        TestServer {
            http: handle.http_url(),
            ws: handle.ws_url(),
            handle,
            client: reqwest::Client::new(),
            _data: data,
        }
    }

    pub fn token(&self, identity: &str, grant: VideoGrant) -> String {
        AccessToken::for_join(KEY, SECRET, identity, grant, now_unix(), 3600)
    }

    /// A plain API token for `user` (no room).
    pub fn user_token(&self, user: &str) -> String {
        user_token(user)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.http, path)
    }

    /// GET `path` as JSON.
    #[allow(dead_code)]
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        r.json().await.unwrap()
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn stop(self) {
        self.handle.shutdown().await;
    }
}

/// Poll `{http}/health` until it answers 200 (at most 30 s) and return its body.
pub async fn wait_healthy(http: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{http}/health")).await {
            if r.status() == 200 {
                if let Ok(v) = r.json().await {
                    return v;
                }
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server at {http} never became healthy"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
