//! What the multi-node tests share: the test Redis, Redis lookups, `parlor serve` node processes,
//! and payload-checked audio between lk clients.
#![allow(dead_code)]

use crate::common::*;
use crate::lk::{Client, Seen};
use parlor_signaling::VideoGrant;
use std::collections::BTreeMap;
use std::time::Duration;

pub fn redis_url() -> String {
    std::env::var("PARLOR_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A connection to the test Redis, or None (printed) when it is unreachable outside CI.
pub async fn redis() -> Option<redis::aio::MultiplexedConnection> {
    let url = redis_url();
    let r = async {
        redis::Client::open(url.as_str())?
            .get_multiplexed_async_connection()
            .await
    };
    match tokio::time::timeout(Duration::from_secs(3), r).await {
        Ok(Ok(c)) => Some(c),
        other => {
            let why = match other {
                Ok(Err(e)) => e.to_string(),
                _ => "timeout".into(),
            };
            if std::env::var_os("CI").is_some() {
                panic!("Redis at {url} is required under CI: {why}");
            }
            eprintln!("SKIP cluster: Redis at {url} unreachable: {why}");
            None
        }
    }
}

/// The node Redis names as the owner of `room` under key prefix `prefix`.
pub async fn owner_of(
    redis: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    room: &str,
) -> Option<String> {
    redis::cmd("GET")
        .arg(format!("{prefix}:room:{room}"))
        .query_async(redis)
        .await
        .unwrap()
}

pub fn payload(from: u8, i: u16) -> Vec<u8> {
    let mut v = vec![0xF8, from, (i >> 8) as u8, i as u8];
    v.extend((0..40u8).map(|k| k.wrapping_mul(7).wrapping_add(i as u8) ^ from));
    v
}

/// `tx` sends until `rx` receives its first packet (subscription negotiated, through the relay when
/// `rx` is on the other node), then 100 numbered packets that must arrive unaltered.
pub async fn audio_flows(tx: &Client, rx: &mut Client, from: u8) {
    let warm = async {
        loop {
            match rx.seen.recv().await {
                Some(Seen::Rtp { payload: p, .. }) if p.len() >= 2 && p[1] == from => return,
                Some(_) => {}
                None => panic!("client {from}'s peer went away"),
            }
        }
    };
    let send = async {
        for i in 0u16.. {
            tx.send_rtp(payload(from, 60_000 + (i % 5_000))).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        _ = warm => {}
        _ = send => {}
        _ = tokio::time::sleep(Duration::from_secs(15)) => panic!("no audio from {from} in 15 s"),
    }
    let n = 100u16;
    for i in 0..n {
        tx.send_rtp(payload(from, i)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut got: BTreeMap<u16, ()> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline && got.len() < n as usize {
        match tokio::time::timeout_at(deadline, rx.seen.recv()).await {
            Ok(Some(Seen::Rtp { payload: p, .. })) => {
                if p.len() >= 4 && p[0] == 0xF8 && p[1] == from {
                    let i = u16::from_be_bytes([p[2], p[3]]);
                    assert_eq!(p, payload(from, i), "payload {i} from {from} altered");
                    if i < n {
                        got.insert(i, ());
                    }
                }
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    assert!(
        got.len() >= 98,
        "only {} of {n} packets from {from} arrived",
        got.len()
    );
}

/// Poll `f` every 50 ms for at most 5 s until it returns Some.
pub async fn within_5s<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `parlor serve` process of the test cluster (killed when dropped); its log in its data dir.
pub struct Proc {
    pub child: std::process::Child,
    pub http: String,
    pub ws: String,
    _dir: tempfile::TempDir,
}

impl Proc {
    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("parlor.log")).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- log of {} ---\n{}", self.http, self.log());
        }
    }
}

/// Start node `name` as its own process on `db` and `redis_url` (key prefix `prefix`; more settings
/// as `PARLOR_*` variables in `env`), and wait until it is healthy.
pub async fn spawn_node(
    name: &str,
    db: &TestDb,
    redis_url: &str,
    prefix: &str,
    env: &[(&str, &str)],
) -> Proc {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("parlor.log")).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_parlor"))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("PARLOR_KEYS", format!("{KEY}:{SECRET}"))
        .env("PARLOR_DATABASE_URL", &db.url)
        .env("PARLOR_SERVER_NODE_NAME", name)
        .env("PARLOR_REDIS_URL", redis_url)
        .env("PARLOR_REDIS_PREFIX", prefix)
        .env("PARLOR_REDIS_HEARTBEAT_MS", "200")
        .env("PARLOR_REDIS_NODE_TTL_MS", "1500")
        .env("PARLOR_RTC_UDP_PORT", "0")
        .env("PARLOR_RTC_TCP_PORT", "0")
        .env("PARLOR_RTC_WORKERS", "1")
        .env("PARLOR_TURN_ENABLED", "false")
        .envs(env.iter().copied())
        .current_dir(dir.path())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let p = Proc {
        child,
        http: format!("http://127.0.0.1:{port}"),
        ws: format!("ws://127.0.0.1:{port}"),
        _dir: dir,
    };
    wait_healthy(&p.http).await;
    p
}

pub fn join_token(identity: &str, room: &str) -> String {
    parlor_signaling::AccessToken::for_join(
        KEY,
        SECRET,
        identity,
        VideoGrant::join(room),
        now_unix(),
        3600,
    )
}

pub async fn publishing(ws: &str, identity: &str, room: &str) -> Client {
    Client::publishing(ws, &join_token(identity, room)).await
}

/// A private `redis-server` on `port` (killed when dropped), for tests that restart Redis.
pub struct OwnRedis(pub std::process::Child);

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn own_redis(port: u16) -> OwnRedis {
    let child = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server (Redis runs on this machine kind) must be installed");
    let r = OwnRedis(child);
    let url = format!("redis://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let c = redis::Client::open(url.as_str()).unwrap();
        if let Ok(mut con) = c.get_multiplexed_async_connection().await {
            if redis::cmd("PING")
                .query_async::<String>(&mut con)
                .await
                .is_ok()
            {
                return r;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "redis-server on {port} never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `n` packets numbered from `first` sent by `tx` every 20 ms; how many `rx` got unaltered.
pub async fn stream_count(tx: &Client, rx: &mut Client, from: u8, first: u16, n: u16) -> usize {
    let mut seen = std::collections::BTreeSet::new();
    let recv = async {
        while let Some(s) = rx.seen.recv().await {
            if let Seen::Rtp { payload: p, .. } = s {
                if p.len() >= 4 && p[0] == 0xF8 && p[1] == from {
                    let i = u16::from_be_bytes([p[2], p[3]]);
                    if (first..first + n).contains(&i) {
                        assert_eq!(p, payload(from, i), "payload {i} altered");
                        seen.insert(i);
                    }
                }
            }
        }
    };
    let send = async {
        for i in first..first + n {
            tx.send_rtp(payload(from, i)).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    tokio::select! { _ = recv => {}, _ = send => {} }
    seen.len()
}

/// An audio call created by alice through `a_http`, bob invited and joined through `b_http`:
/// (call id, alice's create response, bob's join response; each carries its `token`).
pub async fn call_of_alice_and_bob(
    a_http: &str,
    b_http: &str,
) -> (String, serde_json::Value, serde_json::Value) {
    use reqwest::Method;
    let created = new_call(a_http, "alice").await;
    let call = created["call_id"].as_str().unwrap().to_string();
    let body = serde_json::json!({"user_id": "bob"});
    let path = format!("/api/calls/{call}/invite");
    let (code, v) = api_call(a_http, Method::POST, &path, "alice", Some(body)).await;
    assert_eq!(code, 200, "{v}");
    let path = format!("/api/calls/{call}/join");
    let (code, bob) = api_call(b_http, Method::POST, &path, "bob", None).await;
    assert_eq!(code, 200, "{bob}");
    (call, created, bob)
}

/// An audio call created by `user` through `http`: the create response.
pub async fn new_call(http: &str, user: &str) -> serde_json::Value {
    let body = serde_json::json!({"call_type": "audio"});
    let (code, v) = api_call(http, reqwest::Method::POST, "/api/calls", user, Some(body)).await;
    assert_eq!(code, 201, "{v}");
    v
}
