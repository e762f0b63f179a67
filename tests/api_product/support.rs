//! A test server with a controllable clock, and small HTTP/WebSocket helpers.
#![allow(dead_code)]

use crate::common::{test_config, TestDb, KEY, SECRET};
use futures_util::{SinkExt, StreamExt};
use parlor::clock::Clock;
use parlor::server::ServerHandle;
use parlor_signaling::{AccessToken, Claims};
use serde_json::Value;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::Message;

/// Real time plus an offset the test can advance.
#[derive(Default)]
pub struct ManualClock {
    offset_ms: AtomicI64,
}

impl ManualClock {
    pub fn advance_ms(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant::now() + Duration::from_millis(self.offset_ms.load(Ordering::SeqCst).max(0) as u64)
    }
    fn unix_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            + self.offset_ms.load(Ordering::SeqCst)
    }
}

pub struct Srv {
    pub handle: ServerHandle,
    pub http: String,
    pub ws: String,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    _data: tempfile::TempDir,
}

pub type Resp = (u16, Value);

impl Srv {
    pub async fn start(db: &TestDb) -> Srv {
        Self::start_with(db, |_| {}).await
    }

    pub async fn start_with(db: &TestDb, tweak: impl FnOnce(&mut parlor::config::Config)) -> Srv {
        let data = tempfile::tempdir().unwrap();
        let mut config = test_config(&db.url, data.path());
        tweak(&mut config);
        let clock = Arc::new(ManualClock::default());
        let handle = parlor::server::start(config, clock.clone()).await.unwrap();
        Srv {
            http: handle.http_url(),
            ws: handle.ws_url(),
            handle,
            client: reqwest::Client::new(),
            clock,
            _data: data,
        }
    }

    pub async fn stop(self) {
        self.handle.shutdown().await;
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.unix_ms()
    }

    /// A plain API token for `user`.
    pub fn token(&self, user: &str) -> String {
        let now = self.clock.unix_secs();
        AccessToken::encode(
            &Claims {
                iss: KEY.into(),
                sub: user.into(),
                nbf: now - 1,
                exp: now + 3600,
                ..Default::default()
            },
            SECRET,
        )
    }

    /// An account-management token: signed by API key `key`/`secret` with the roomAdmin grant.
    pub fn admin_token_for(&self, key: &str, secret: &str, user: &str) -> String {
        let now = self.clock.unix_secs();
        AccessToken::encode(
            &Claims {
                iss: key.into(),
                sub: user.into(),
                nbf: now - 1,
                exp: now + 3600,
                video: Some(parlor_signaling::VideoGrant {
                    room_admin: true,
                    ..Default::default()
                }),
                ..Default::default()
            },
            secret,
        )
    }

    /// An account-management token of the test key's account.
    pub fn admin_token(&self, user: &str) -> String {
        self.admin_token_for(KEY, SECRET, user)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.http, path)
    }

    pub async fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        user: Option<&str>,
        body: Option<&Value>,
    ) -> Resp {
        let mut rb = self.client.request(method.clone(), self.url(path));
        if let Some(u) = user {
            rb = rb.bearer_auth(self.token(u));
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: non-JSON body ({e}): {text:?}"));
        (status, v)
    }

    pub async fn get(&self, path: &str, user: &str) -> Resp {
        self.req(reqwest::Method::GET, path, Some(user), None).await
    }
    pub async fn post(&self, path: &str, user: &str, body: Value) -> Resp {
        self.req(reqwest::Method::POST, path, Some(user), Some(&body))
            .await
    }
    /// POST without a body.
    pub async fn post_empty(&self, path: &str, user: &str) -> Resp {
        self.req(reqwest::Method::POST, path, Some(user), None)
            .await
    }
    pub async fn put(&self, path: &str, user: &str, body: Value) -> Resp {
        self.req(reqwest::Method::PUT, path, Some(user), Some(&body))
            .await
    }
    pub async fn delete(&self, path: &str, user: &str) -> Resp {
        self.req(reqwest::Method::DELETE, path, Some(user), None)
            .await
    }

    /// Open a presence WebSocket for `user` and read its hello.
    pub async fn presence_ws(&self, user: &str, device: &str, workspaces: &str) -> Ws {
        let url = format!(
            "{}/api/presence/ws?access_token={}&device_id={device}&workspace_id={workspaces}",
            self.ws,
            self.token(user)
        );
        let (stream, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut ws = Ws { stream };
        let hello = ws.recv().await;
        assert_eq!(hello["type"], "hello", "{hello}");
        assert_eq!(hello["user_id"], user);
        ws
    }

    /// Poll `f` until it returns Some (liveness bound: 10 s).
    pub async fn eventually<T, F, Fut>(&self, what: &str, mut f: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = f().await {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub struct Ws {
    pub stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Ws {
    pub async fn send(&mut self, v: Value) {
        self.stream
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }
    pub async fn send_text(&mut self, t: &str) {
        self.stream.send(Message::Text(t.into())).await.unwrap();
    }
    /// Next JSON text frame (liveness bound: 10 s).
    pub async fn recv(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(10), self.stream.next())
                .await
                .expect("timed out waiting for a WebSocket message")
                .expect("WebSocket closed")
                .unwrap();
            if let Message::Text(t) = m {
                return serde_json::from_str(t.as_str()).unwrap();
            }
        }
    }
    /// Next frame whose `type` is `ty`, skipping others.
    pub async fn recv_type(&mut self, ty: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] == ty {
                return v;
            }
        }
    }
    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
        // Drain until the server closes.
        while let Ok(Some(Ok(_))) =
            tokio::time::timeout(Duration::from_secs(5), self.stream.next()).await
        {}
    }
}

pub fn assert_envelope(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.0, status, "{}", r.1);
    assert_eq!(r.1["success"], false, "{}", r.1);
    assert_eq!(r.1["error"]["code"], code, "{}", r.1);
    assert!(
        r.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        r.1
    );
}

/// Run `f` against a fresh server on every backend.
#[macro_export]
macro_rules! on_every_backend {
    ($f:expr) => {
        for db in $crate::common::all_dbs().await {
            eprintln!("== backend {}", db.backend());
            let s = $crate::support::Srv::start(&db).await;
            $f(&s).await;
            s.stop().await;
            db.drop_db().await;
        }
    };
}
