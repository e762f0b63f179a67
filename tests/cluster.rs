//! Multi-node mode: two in-process Parlor nodes sharing one Redis (127.0.0.1:6379, or
//! `PARLOR_TEST_REDIS_URL`) and one PostgreSQL database, with real WebRTC clients connected to
//! different nodes (the process-level tests are in cluster_procs.rs). Each test
//! uses its own key prefix, so tests (and runs) sharing the Redis do not see each other's nodes.
//! Redis and PostgreSQL are required under CI; elsewhere a missing one skips with a printed note.

#[path = "common/cluster.rs"]
mod cluster;
mod common;
#[path = "common/lk.rs"]
mod lk;
#[path = "common/twirp.rs"]
mod twirp;

use cluster::*;
use common::*;
use lk::{Client, Seen};
use parlor_signaling::VideoGrant;
use rtc::peer_connection::state::RTCPeerConnectionState;
use std::collections::HashMap;
use std::time::Duration;

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
    // Every metric sample names its node.
    for (s, node) in [(&c.a, "node-a"), (&c.b, "node-b")] {
        let text = reqwest::get(s.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(samples.len() > 20, "{text}");
        let label = format!("node=\"{node}\"");
        let unlabelled: Vec<&&str> = samples.iter().filter(|l| !l.contains(&label)).collect();
        assert!(
            unlabelled.is_empty(),
            "samples without {label}: {unlabelled:?}"
        );
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

/// Issue 20: what the APIs show is the same from both nodes — a call's live participants (members
/// joined through different nodes), presence and typing set through one node, read through the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_views_are_cluster_wide() {
    use reqwest::Method;
    use serde_json::json;
    let Some(c) = Cluster::start().await else {
        return;
    };
    let (call, created, bob_join) = call_of_alice_and_bob(&c.a.http, &c.b.http).await;
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

/// Issue 20: requests about a room are answered by its node, whichever node they reach. A call on A
/// (alice joined through A, bob through B); through B: the recorder starts on A and stops there, the
/// recording's file (on A's disk) downloads whole and by range, LiveKit RoomService lists, removes
/// and deletes on A, ListRooms shows A's room, and the recording's delete removes A's file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_about_a_room_reach_its_node() {
    use parlor_signaling::protocol::proto;
    use reqwest::Method;
    use twirp::{admin_token, twirp_pb};
    let Some(mut c) = Cluster::start().await else {
        return;
    };
    let (call, created, bob_join) = call_of_alice_and_bob(&c.a.http, &c.b.http).await;
    let alice = Client::publishing(&c.a.ws, created["token"].as_str().unwrap()).await;
    let mut bob = Client::publishing(&c.b.ws, bob_join["token"].as_str().unwrap()).await;
    assert_eq!(c.owner(&call).await.as_deref(), Some("node-a"));
    wait_call_active(&c.b.http, &call, "bob").await;

    // The recorder, asked through B, runs on A (the room's node).
    let (code, v) = api_call(
        &c.b.http,
        Method::POST,
        &format!("/api/calls/{call}/recording/start"),
        "bob",
        None,
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let rec = v["recording_id"].as_str().unwrap().to_string();
    assert!(c.a.handle.state.recorders.is_recording(&call));
    assert!(!c.b.handle.state.recorders.is_recording(&call));
    assert!(
        c.b.handle.state.sfu.room_worker(&call).is_none(),
        "the recorder must not open the room on B"
    );
    audio_flows(&alice, &mut bob, 1).await;
    let (code, v) = api_call(
        &c.b.http,
        Method::POST,
        &format!("/api/calls/{call}/recording/stop"),
        "bob",
        None,
    )
    .await;
    assert_eq!(
        (code, v["status"].as_str()),
        (200, Some("completed")),
        "{v}"
    );
    within_5s("the recorder gone from A", || async {
        (!c.a.handle.state.recorders.is_recording(&call)).then_some(())
    })
    .await;

    // Its file is on A's disk; the download link fetched through B streams it from A.
    let on_a = c.a.handle.state.config.storage.data_dir.join("recordings");
    let file = std::fs::read(on_a.join(format!("{rec}.webm"))).unwrap();
    assert!(file.len() > 1000, "{} bytes", file.len());
    assert!(!c
        .b
        .handle
        .state
        .config
        .storage
        .data_dir
        .join("recordings")
        .join(format!("{rec}.webm"))
        .exists());
    let (code, v) = api_call(
        &c.b.http,
        Method::GET,
        &format!("/api/recordings/{rec}/download"),
        "bob",
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let link = v["url"].as_str().unwrap();
    let path = &link[link.find("/api/").unwrap()..];
    let r = reqwest::get(format!("{}{path}", c.b.http)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), file.as_slice());
    let r = reqwest::Client::new()
        .get(format!("{}{path}", c.b.http))
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    let want = format!("bytes 100-199/{}", file.len());
    assert_eq!(r.headers()["content-range"].to_str().unwrap(), want);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &file[100..200]);

    // LiveKit RoomService through B acts on A's room.
    let admin = admin_token(VideoGrant {
        room_admin: true,
        room: Some(call.clone()),
        room_list: true,
        room_create: true,
        ..Default::default()
    });
    let names = |ps: &[proto::ParticipantInfo]| {
        let mut v: Vec<String> = ps.iter().map(|p| p.identity.clone()).collect();
        v.sort();
        v
    };
    let listed: proto::ListParticipantsResponse = twirp_pb(
        &c.b,
        "ListParticipants",
        &admin,
        &proto::ListParticipantsRequest { room: call.clone() },
    )
    .await
    .unwrap();
    assert_eq!(names(&listed.participants), ["alice", "bob"]);
    let rooms: proto::ListRoomsResponse = twirp_pb(
        &c.b,
        "ListRooms",
        &admin,
        &proto::ListRoomsRequest::default(),
    )
    .await
    .unwrap();
    let room = rooms.rooms.iter().find(|r| r.name == call);
    assert_eq!(room.map(|r| r.num_participants), Some(2), "{rooms:?}");
    let _: proto::RemoveParticipantResponse = twirp_pb(
        &c.b,
        "RemoveParticipant",
        &admin,
        &proto::RoomParticipantIdentity {
            room: call.clone(),
            identity: "bob".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    within_5s("bob removed from A's room", || async {
        let ps = c.a.handle.state.sfu.participants(&call);
        (!ps.iter().any(|p| p.identity == "bob")).then_some(())
    })
    .await;
    let _: proto::DeleteRoomResponse = twirp_pb(
        &c.b,
        "DeleteRoom",
        &admin,
        &proto::DeleteRoomRequest { room: call.clone() },
    )
    .await
    .unwrap();
    within_5s("the room closed on A", || async {
        c.a.handle
            .state
            .sfu
            .room_worker(&call)
            .is_none()
            .then_some(())
    })
    .await;

    // Deleting the recording through B removes A's file.
    let (code, v) = api_call(
        &c.b.http,
        Method::DELETE,
        &format!("/api/recordings/{rec}"),
        "bob",
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert!(!on_a.join(format!("{rec}.webm")).exists());
    drop((alice, bob));
    c.stop().await;
}
