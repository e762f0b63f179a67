//! A server on a [`ManualClock`] (time moves only when a test advances it), REST helpers and a
//! session WebSocket client.
#![allow(dead_code)]

use crate::common::{test_config, TestDb, KEY, SECRET};
use futures_util::{SinkExt, StreamExt};
use parlor::clock::{Clock, ManualClock};
use parlor::server::ServerHandle;
use parlor_signaling::{AccessToken, Claims, VideoGrant};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

pub type Resp = (u16, Value);

pub struct Srv {
    pub handle: ServerHandle,
    pub http: String,
    pub ws: String,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    _data: tempfile::TempDir,
}

/// The test configuration: no OpenAI key can be found, so `gpt-realtime` is unavailable.
pub fn base(c: &mut parlor::config::Config) {
    c.realtime.openai.api_key.clear();
    c.realtime.openai.api_key_env = "PARLOR_TEST_NO_SUCH_KEY".into();
}

impl Srv {
    pub async fn start(db: &TestDb) -> Srv {
        Self::start_with(db, |_| {}).await
    }

    pub async fn start_with(db: &TestDb, tweak: impl FnOnce(&mut parlor::config::Config)) -> Srv {
        let data = tempfile::tempdir().unwrap();
        let mut config = test_config(&db.url, data.path());
        base(&mut config);
        tweak(&mut config);
        let clock = Arc::new(ManualClock::new());
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

    fn claims(&self, user: &str) -> Claims {
        let now = self.clock.unix_secs();
        Claims {
            iss: KEY.into(),
            sub: user.into(),
            nbf: now - 1,
            exp: now + 3600,
            ..Default::default()
        }
    }

    /// A plain API access token for `user`.
    pub fn token(&self, user: &str) -> String {
        AccessToken::encode(&self.claims(user), SECRET)
    }

    /// An access token with the `roomAdmin` grant.
    pub fn admin_token(&self, user: &str) -> String {
        let mut c = self.claims(user);
        c.video = Some(VideoGrant {
            room_admin: true,
            ..Default::default()
        });
        AccessToken::encode(&c, SECRET)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.http, path)
    }

    pub async fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Resp {
        let mut rb = self.client.request(method.clone(), self.url(path));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
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
        self.req(reqwest::Method::GET, path, Some(&self.token(user)), None)
            .await
    }
    pub async fn get_admin(&self, path: &str, user: &str) -> Resp {
        self.req(
            reqwest::Method::GET,
            path,
            Some(&self.admin_token(user)),
            None,
        )
        .await
    }
    pub async fn post(&self, path: &str, user: &str, body: Value) -> Resp {
        self.req(
            reqwest::Method::POST,
            path,
            Some(&self.token(user)),
            Some(&body),
        )
        .await
    }
    pub async fn post_empty(&self, path: &str, user: &str) -> Resp {
        self.req(reqwest::Method::POST, path, Some(&self.token(user)), None)
            .await
    }
    pub async fn delete(&self, path: &str, user: &str) -> Resp {
        self.req(reqwest::Method::DELETE, path, Some(&self.token(user)), None)
            .await
    }

    /// Create a session on `model` as `user`; its `data`.
    pub async fn create(&self, user: &str, model: &str) -> Value {
        let r = self
            .post("/api/realtime/sessions", user, json!({ "model": model }))
            .await;
        assert_eq!(r.0, 201, "{}", r.1);
        r.1["data"].clone()
    }

    /// Wait (real time, bounded) until the server has `n` clock sleeps pending.
    pub async fn until_sleepers(&self, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.clock.sleepers() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "the server never went to sleep on the clock ({} sleepers)",
                self.clock.sleepers()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Poll `f` on the server state until it holds (real time, bounded).
    pub async fn until(&self, what: &str, f: impl Fn(&parlor::state::AppState) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !f(&self.handle.state) {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Poll the stored session until its stored status is `status`.
    pub async fn until_status(&self, id: &str, status: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.handle.state.store.get_rt_session(id).await.unwrap();
            if s.status == status {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "session {id} stays {}, not {status}",
                s.status
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Open `connectionInfo.websocketUrl`.
    pub async fn connect(&self, url: &str) -> Ws {
        let (stream, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Ws { stream }
    }

    /// Connect and authenticate with `token`; the `connected` message.
    pub async fn connect_auth(&self, url: &str, token: &str) -> (Ws, Value) {
        let mut ws = self.connect(url).await;
        ws.send(json!({ "type": "auth", "token": token })).await;
        let hello = ws.recv().await;
        assert_eq!(hello["type"], "connected", "{hello}");
        (ws, hello)
    }
}

pub struct Ws {
    pub stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

/// What the next frame was.
#[derive(Debug)]
pub enum Frame {
    Json(Value),
    Closed(Option<(u16, String)>),
    /// Nothing within the wait.
    Silent,
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

    /// The next JSON frame or close within `wait` (real time).
    pub async fn next(&mut self, wait: Duration) -> Frame {
        loop {
            let m = match tokio::time::timeout(wait, self.stream.next()).await {
                Err(_) => return Frame::Silent,
                Ok(None) | Ok(Some(Err(_))) => return Frame::Closed(None),
                Ok(Some(Ok(m))) => m,
            };
            match m {
                Message::Text(t) => return Frame::Json(serde_json::from_str(t.as_str()).unwrap()),
                Message::Close(f) => {
                    return Frame::Closed(f.map(|f| (u16::from(f.code), f.reason.to_string())))
                }
                _ => {}
            }
        }
    }

    /// The next JSON frame (liveness bound: 10 s).
    pub async fn recv(&mut self) -> Value {
        match self.next(Duration::from_secs(10)).await {
            Frame::Json(v) => v,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// The next frame of type `ty`, skipping others.
    pub async fn recv_type(&mut self, ty: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] == ty {
                return v;
            }
        }
    }

    /// Expect an error message with `code`, then a close with `close_code`.
    pub async fn expect_error_close(&mut self, code: &str, close_code: u16) -> Value {
        let e = self.recv().await;
        assert_eq!(e["type"], "error", "{e}");
        assert_eq!(e["code"], code, "{e}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
        self.expect_close(close_code).await;
        e
    }

    pub async fn expect_close(&mut self, close_code: u16) {
        match self.next(Duration::from_secs(10)).await {
            Frame::Closed(Some((c, reason))) => {
                assert_eq!(c, close_code, "closed with {c} {reason:?}");
                assert!(!reason.is_empty(), "a close reason is given");
                // Reading on sends our close reply; the server then ends the connection.
                while let Ok(Some(Ok(_))) =
                    tokio::time::timeout(Duration::from_secs(5), self.stream.next()).await
                {
                }
            }
            other => panic!("expected close {close_code}, got {other:?}"),
        }
    }

    pub async fn close(mut self) {
        let _ = self
            .stream
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }))
            .await;
        while let Ok(Some(Ok(_))) =
            tokio::time::timeout(Duration::from_secs(5), self.stream.next()).await
        {}
    }
}

pub fn assert_error(r: &Resp, status: u16, code: &str) {
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

pub fn assert_ok(r: &Resp, status: u16) -> Value {
    assert_eq!(r.0, status, "{}", r.1);
    assert_eq!(r.1["success"], true, "{}", r.1);
    assert!(r.1["message"].is_string(), "{}", r.1);
    r.1["data"].clone()
}

/// Run `f` against a fresh server (configured by `tweak`) on every backend.
#[macro_export]
macro_rules! on_every_backend {
    ($tweak:expr, $f:expr) => {
        for db in $crate::common::all_dbs().await {
            eprintln!("== backend {}", db.backend());
            let s = $crate::support::Srv::start_with(&db, $tweak).await;
            $f(&s).await;
            s.stop().await;
            db.drop_db().await;
        }
    };
}
