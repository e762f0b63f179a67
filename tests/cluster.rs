//! Multi-node mode: two Parlor nodes sharing one Redis (127.0.0.1:6379, or `PARLOR_TEST_REDIS_URL`)
//! and one PostgreSQL database, with real WebRTC clients connected to different nodes. Each test
//! uses its own key prefix, so tests (and runs) sharing the Redis do not see each other's nodes.
//! Redis and PostgreSQL are required under CI; elsewhere a missing one skips with a printed note.

mod common;
#[path = "common/lk.rs"]
mod lk;

use common::*;
use lk::{Client, Seen};
use parlor_signaling::VideoGrant;
use rtc::peer_connection::state::RTCPeerConnectionState;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

fn redis_url() -> String {
    std::env::var("PARLOR_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A connection to the test Redis, or None (printed) when it is unreachable outside CI.
async fn redis() -> Option<redis::aio::MultiplexedConnection> {
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

struct Cluster {
    a: TestServer,
    b: TestServer,
    prefix: String,
    redis: redis::aio::MultiplexedConnection,
    db: TestDb,
}

impl Cluster {
    async fn start() -> Option<Cluster> {
        let redis = redis().await?;
        let db = TestDb::postgres().await?;
        let prefix = format!("parlor-test-{}", parlor::ids::new_id("").to_lowercase());
        let node = |name: &'static str| {
            let prefix = prefix.clone();
            move |c: &mut parlor::config::Config| {
                c.server.node_name = name.into();
                c.redis.url = redis_url();
                c.redis.prefix = prefix;
                c.redis.heartbeat_ms = 200;
                c.redis.node_ttl_ms = 1500;
            }
        };
        let a = TestServer::start_with(&db, node("node-a")).await;
        let b = TestServer::start_with(&db, node("node-b")).await;
        Some(Cluster {
            a,
            b,
            prefix,
            redis,
            db,
        })
    }

    /// The node Redis names as the owner of `room`.
    async fn owner(&mut self, room: &str) -> Option<String> {
        owner_of(&mut self.redis, &self.prefix, room).await
    }

    async fn stop(self) {
        self.a.stop().await;
        self.b.stop().await;
        self.db.drop_db().await;
    }
}

/// The node Redis names as the owner of `room` under key prefix `prefix`.
async fn owner_of(
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

fn payload(from: u8, i: u16) -> Vec<u8> {
    let mut v = vec![0xF8, from, (i >> 8) as u8, i as u8];
    v.extend((0..40u8).map(|k| k.wrapping_mul(7).wrapping_add(i as u8) ^ from));
    v
}

/// `tx` sends until `rx` receives its first packet (subscription negotiated, through the relay when
/// `rx` is on the other node), then 100 numbered packets that must arrive unaltered.
async fn audio_flows(tx: &Client, rx: &mut Client, from: u8) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_two_nodes_share_a_room_on_one() {
    let Some(mut c) = Cluster::start().await else {
        return;
    };
    // Both nodes are listed by both.
    for s in [&c.a, &c.b] {
        let h = s.get_json("/health").await;
        let mut nodes: Vec<String> = serde_json::from_value(h["cluster"]["nodes"].clone()).unwrap();
        nodes.sort();
        assert_eq!(nodes, ["node-a", "node-b"], "{h}");
        assert_eq!(h["cluster"]["connected"], true, "{h}");
        assert_eq!(h["dependencies"]["redis"], "healthy", "{h}");
    }
    // Alice joins through A: an idle cluster ties, and ties go to the node asked.
    let ta = c.a.token("alice", VideoGrant::join("shared"));
    let mut alice = Client::connect(&c.a.ws, &ta, true).await;
    assert_eq!(c.owner("shared").await.as_deref(), Some("node-a"));
    // Bob's signal connection reaches B, which relays it to A; his media goes to A directly.
    let tb = c.b.token("bob", VideoGrant::join("shared"));
    let mut bob = Client::connect(&c.b.ws, &tb, true).await;
    assert_eq!(bob.join.room.as_ref().unwrap().name, "shared");
    let others: Vec<_> = bob
        .join
        .other_participants
        .iter()
        .map(|p| p.identity.as_str())
        .collect();
    assert_eq!(others, ["alice"], "bob joined the room alice is in");
    assert_eq!(c.owner("shared").await.as_deref(), Some("node-a"));
    assert!(
        c.b.handle.state.sfu.room_worker("shared").is_none(),
        "the room must not open on B as well"
    );
    let a_sees: Vec<String> =
        c.a.handle
            .state
            .sfu
            .participants("shared")
            .iter()
            .map(|p| p.identity.clone())
            .collect();
    assert!(a_sees.contains(&"bob".to_string()), "{a_sees:?}");

    alice.publish_audio().await;
    bob.publish_audio().await;
    for cl in [&mut alice, &mut bob] {
        cl.wait_for(|s| {
            matches!(s, Seen::PublisherState(RTCPeerConnectionState::Connected)).then_some(())
        })
        .await;
    }
    audio_flows(&alice, &mut bob, 1).await;
    audio_flows(&bob, &mut alice, 2).await;

    // Bob leaving through the relay leaves the room on A.
    bob.leave().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while c
        .a
        .handle
        .state
        .sfu
        .participants("shared")
        .iter()
        .any(|p| p.identity == "bob")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob still in the room"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    alice.leave().await;
    c.stop().await;
}

/// Join `room` over a bare signal WebSocket (no peer connection) and return the socket once the
/// join response arrived: enough to open the room and hold it.
async fn bare_join(
    ws_base: &str,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use futures_util::StreamExt;
    use parlor_signaling::protocol::proto;
    use prost::Message as _;
    let url = format!("{ws_base}/rtc?access_token={token}&auto_subscribe=0&protocol=16");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("join response in time")
        .expect("socket open")
        .unwrap();
    let resp = proto::SignalResponse::decode(first.into_data().as_ref()).unwrap();
    assert!(
        matches!(resp.message, Some(proto::signal_response::Message::Join(_))),
        "{resp:?}"
    );
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_spread_across_nodes_by_load() {
    let Some(mut c) = Cluster::start().await else {
        return;
    };
    let mut held = Vec::new();
    for i in 0..20 {
        // Alternate the node asked, as a load balancer in front of both would.
        let s = if i % 2 == 0 { &c.a } else { &c.b };
        let t = s.token(
            &format!("user-{i}"),
            VideoGrant::join(format!("spread-{i}")),
        );
        held.push(bare_join(&s.ws, &t).await);
    }
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for i in 0..20 {
        let owner = c.owner(&format!("spread-{i}")).await.expect("room owned");
        let open_on = if c
            .a
            .handle
            .state
            .sfu
            .room_worker(&format!("spread-{i}"))
            .is_some()
        {
            "node-a"
        } else {
            "node-b"
        };
        assert_eq!(owner, open_on, "spread-{i} is open where Redis says");
        *per_node.entry(owner).or_default() += 1;
    }
    let (a, b) = (per_node["node-a"], per_node["node-b"]);
    assert!(
        a.abs_diff(b) <= 2,
        "rooms must spread by load: node-a {a}, node-b {b}"
    );
    // The cluster view agrees (after a heartbeat).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let h = c.b.get_json("/health").await;
    let rooms: u64 = h["cluster"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["rooms"].as_u64().unwrap())
        .sum();
    assert_eq!(rooms, 20, "{h}");
    drop(held);
    c.stop().await;
}

/// Poll `f` every 50 ms for at most 5 s until it returns Some.
async fn within_5s<T, F: std::future::Future<Output = Option<T>>>(
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

/// Issue 20: what the APIs show is the same from both nodes — a call's live participants (members
/// joined through different nodes), presence and typing set through one node, read through the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_views_are_cluster_wide() {
    use reqwest::Method;
    use serde_json::json;
    let Some(c) = Cluster::start().await else {
        return;
    };
    let (code, created) = api_call(
        &c.a.http,
        Method::POST,
        "/api/calls",
        "alice",
        Some(json!({"call_type": "audio"})),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let call = created["call_id"].as_str().unwrap().to_string();
    let (code, v) = api_call(
        &c.a.http,
        Method::POST,
        &format!("/api/calls/{call}/invite"),
        "alice",
        Some(json!({"user_id": "bob"})),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let (_, bob_join) = api_call(
        &c.b.http,
        Method::POST,
        &format!("/api/calls/{call}/join"),
        "bob",
        None,
    )
    .await;
    let alice = Client::connect(&c.a.ws, created["token"].as_str().unwrap(), true).await;
    let bob = Client::connect(&c.b.ws, bob_join["token"].as_str().unwrap(), true).await;
    let path = format!("/api/calls/{call}/participants");
    let ids = |v: &serde_json::Value| -> Vec<String> {
        let mut ids: Vec<String> = v["participants"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| p["user_id"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    };
    for (node, s) in [("A", &c.a), ("B", &c.b)] {
        within_5s(
            &format!("both participants listed by node {node}"),
            || async {
                let (code, v) = api_call(&s.http, Method::GET, &path, "alice", None).await;
                (code == 200 && ids(&v) == ["alice", "bob"]).then_some(())
            },
        )
        .await;
        let (_, v) = api_call(
            &s.http,
            Method::GET,
            &format!("/api/calls/{call}"),
            "bob",
            None,
        )
        .await;
        assert_eq!(v["call"]["participant_count"], 2, "node {node}: {v}");
    }

    // Presence: carol declares herself away through A (REST presence); B reads it.
    let (code, v) = api_call(
        &c.a.http,
        Method::PUT,
        "/api/presence",
        "carol",
        Some(json!({"status": "away", "custom_message": "lunch"})),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    within_5s("carol away as node B sees her", || async {
        let (_, v) = api_call(&c.b.http, Method::GET, "/api/presence/carol", "dave", None).await;
        (v["presence"]["status"] == "away" && v["presence"]["custom_message"] == "lunch")
            .then_some(())
    })
    .await;
    // Bob is in the call's room on A (his signal relayed through B): online for both nodes.
    for s in [&c.a, &c.b] {
        within_5s("bob online in the list", || async {
            let (_, v) = api_call(&s.http, Method::GET, "/api/presence/online", "dave", None).await;
            let users = v["users"].as_array().cloned().unwrap_or_default();
            let has = |u: &str| users.iter().any(|x| x["user_id"] == u);
            (has("bob") && has("alice") && has("carol")).then_some(())
        })
        .await;
    }
    // Typing through B, read through A.
    let typing = "/api/presence/typing/conv-c1";
    let (code, _) = api_call(
        &c.b.http,
        Method::POST,
        typing,
        "erin",
        Some(json!({"typing": true})),
    )
    .await;
    assert_eq!(code, 200);
    within_5s("erin typing as node A sees it", || async {
        let (_, v) = api_call(&c.a.http, Method::GET, typing, "alice", None).await;
        (v["typing_users"] == json!(["erin"])).then_some(())
    })
    .await;
    drop((alice, bob));
    c.stop().await;
}

/// A `parlor serve` process of the test cluster (killed when dropped); its log in its data dir.
struct Proc {
    child: std::process::Child,
    http: String,
    ws: String,
    _dir: tempfile::TempDir,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start node `name` as its own process on `db` and `redis_url` (key prefix `prefix`), and wait until
/// it is healthy.
async fn spawn_node(name: &str, db: &TestDb, redis_url: &str, prefix: &str) -> Proc {
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

fn join_token(identity: &str, room: &str) -> String {
    parlor_signaling::AccessToken::for_join(
        KEY,
        SECRET,
        identity,
        VideoGrant::join(room),
        now_unix(),
        3600,
    )
}

async fn publishing(ws: &str, identity: &str, room: &str) -> Client {
    Client::publishing(ws, &join_token(identity, room)).await
}

/// Issue 20: kill -9 of the node owning a room, two `parlor serve` processes. Within the configured
/// bound (node_ttl_ms 1.5 s) the room's lease is gone, clients rejoining through the surviving node
/// get audio again there, and a room the survivor owns the whole time loses no packet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_fails_over_to_the_survivor() {
    let Some(mut redis) = redis().await else {
        return;
    };
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let prefix = format!("parlor-test-{}", parlor::ids::new_id("").to_lowercase());
    let url = redis_url();
    let mut a = spawn_node("node-a", &db, &url, &prefix).await;
    let b = spawn_node("node-b", &db, &url, &prefix).await;
    // Room "doomed" on A (joined through A first; ties go to the node asked), bob relayed via B.
    let mut alice = publishing(&a.ws, "alice", "doomed").await;
    let got = owner_of(&mut redis, &prefix, "doomed").await;
    assert_eq!(got.as_deref(), Some("node-a"));
    let mut bob = publishing(&b.ws, "bob", "doomed").await;
    audio_flows(&alice, &mut bob, 1).await;
    // Room "steady" on B (the least-loaded node now), streaming across the kill.
    let carl = publishing(&b.ws, "carl", "steady").await;
    let mut dan = publishing(&b.ws, "dan", "steady").await;
    let got = owner_of(&mut redis, &prefix, "steady").await;
    assert_eq!(got.as_deref(), Some("node-b"));
    audio_flows(&carl, &mut dan, 3).await;
    // 250 packets (5 s) sent while A dies and "doomed" fails over.
    let counting = tokio::spawn(async move {
        let n = stream_count(&carl, &mut dan, 3, 1000, 250).await;
        (n, carl, dan)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = tokio::time::Instant::now();
    a.child.kill().unwrap(); // SIGKILL
    let _ = a.child.wait();
    drop((alice, bob));
    // The lease of "doomed" lapses within node_ttl_ms (plus a heartbeat of slack).
    loop {
        let got = owner_of(&mut redis, &prefix, "doomed").await;
        if got.is_none() {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_millis(2_500),
            "lease of a dead node still held after {:?}",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let released_after = killed.elapsed();
    // Rejoin through the survivor: the room is claimed for B and audio flows both ways again.
    alice = publishing(&b.ws, "alice", "doomed").await;
    bob = publishing(&b.ws, "bob", "doomed").await;
    let got = owner_of(&mut redis, &prefix, "doomed").await;
    assert_eq!(got.as_deref(), Some("node-b"));
    audio_flows(&alice, &mut bob, 1).await;
    audio_flows(&bob, &mut alice, 2).await;
    let (n, _carl, _dan) = counting.await.unwrap();
    eprintln!("lease released {released_after:?} after kill -9; steady room got {n}/250 packets");
    assert_eq!(
        n, 250,
        "the survivor's own room lost packets across the kill"
    );
    drop(b);
    db.drop_db().await;
}

/// A private `redis-server` on `port` (killed when dropped), for tests that restart Redis.
struct OwnRedis(std::process::Child);

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn own_redis(port: u16) -> OwnRedis {
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
async fn stream_count(tx: &Client, rx: &mut Client, from: u8, first: u16, n: u16) -> usize {
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

/// Issue 20: Redis killed and restarted (empty) mid-call, two `parlor serve` processes: media of the
/// call (bob's signal relayed through B to A) keeps flowing, bob's relayed session survives, and new
/// joins work again once Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_survives_a_redis_restart() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let port = free_port();
    let mut r = own_redis(port).await;
    let url = format!("redis://127.0.0.1:{port}");
    let a = spawn_node("node-a", &db, &url, "restart").await;
    let b = spawn_node("node-b", &db, &url, "restart").await;
    let mut alice = publishing(&a.ws, "alice", "calm").await;
    let mut bob = publishing(&b.ws, "bob", "calm").await;
    audio_flows(&alice, &mut bob, 1).await;
    let restart = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = r.0.kill(); // SIGKILL: no goodbye, every key gone
        let _ = r.0.wait();
        tokio::time::sleep(Duration::from_secs(1)).await;
        own_redis(port).await
    };
    let (n, again) = tokio::join!(stream_count(&alice, &mut bob, 1, 1000, 250), restart);
    r = again;
    eprintln!("{n}/250 packets across the Redis restart");
    assert_eq!(n, 250, "media must not depend on Redis");
    // Bob's relayed signal session survived: he still gets alice's audio and she his.
    audio_flows(&bob, &mut alice, 2).await;
    // Both nodes register again; a new room joined through both nodes works.
    for p in [&a, &b] {
        within_5s("node re-registered after the Redis restart", || async {
            let h: serde_json::Value = reqwest::get(format!("{}/health", p.http))
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (h["cluster"]["connected"] == true && h["cluster"]["nodes"].as_array()?.len() == 2)
                .then_some(())
        })
        .await;
    }
    let carol = publishing(&b.ws, "carol", "fresh").await;
    let mut dave = publishing(&a.ws, "dave", "fresh").await;
    audio_flows(&carol, &mut dave, 3).await;
    drop((alice, bob, carol, dave, a, b, r));
    db.drop_db().await;
}
