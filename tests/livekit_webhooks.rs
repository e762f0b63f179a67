//! LiveKit-format webhooks checked by LiveKit's own server SDK: Parlor is configured with
//! `[webhooks] livekit_urls` pointing at tests/python/lk_webhook_receiver.py, which verifies every
//! request with livekit-api's `WebhookReceiver(TokenVerifier(key, secret))`. Two real WebRTC
//! participants (webrtc-rs `rtc` clients, tests/common/lk.rs) join one room one after the other,
//! each publishes audio, then both leave; the receiver must have accepted, in order, room_started,
//! participant_joined / track_published of each, a track_unpublished when RoomService revokes
//! bob's canPublish (the server-side unpublish), track_unpublished + participant_left of alice as
//! she leaves, participant_left of bob and room_finished, all of one room, with LiveKit's
//! Content-Type. A copy of a real request with its body altered must be refused by the same
//! receiver (so its check can fail).
//!
//! The interpreter: env `PARLOR_TEST_PYTHON`, else the venv that .ci/run step 2 makes at
//! `${PARLOR_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/parlor}/test-venv`. Without livekit-api
//! there the test is skipped with a note, except under CI where it fails.

mod common;
#[path = "common/lk.rs"]
mod lk;
#[path = "common/twirp.rs"]
mod twirp;

use common::*;
use lk::{Client, Seen};
use parlor_signaling::VideoGrant;
use rtc::peer_connection::state::RTCPeerConnectionState;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

const ROOM: &str = "lk-hooks";

fn test_python() -> Option<PathBuf> {
    common::python::test_python("livekit.api", "LiveKit webhook test")
}

/// The running receiver: its URL and the requests it reported, in arrival order.
struct Receiver {
    url: String,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
    _child: tokio::process::Child,
}

impl Receiver {
    async fn start(py: &Path) -> Receiver {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/lk_webhook_receiver.py");
        let mut child = tokio::process::Command::new(py)
            .arg(script)
            .args(["--key", KEY, "--secret", SECRET])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("python did not start");
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), out.next_line())
            .await
            .expect("receiver did not start in time")
            .unwrap()
            .expect("receiver exited");
        let port = serde_json::from_str::<Value>(&first).unwrap()["listening"]
            .as_u64()
            .expect("listening line");
        let (tx, lines) = mpsc::channel(256);
        tokio::spawn(async move {
            while let Ok(Some(l)) = out.next_line().await {
                let v = serde_json::from_str(&l).unwrap_or(Value::String(l));
                if tx.send(v).await.is_err() {
                    break;
                }
            }
        });
        Receiver {
            url: format!("http://127.0.0.1:{port}/livekit"),
            lines,
            seen: Vec::new(),
            _child: child,
        }
    }

    /// Wait (up to 15 s) until a verified request for `event` (and `identity`, if given) arrived;
    /// everything received meanwhile is kept in `seen`.
    async fn until(&mut self, event: &str, identity: Option<&str>) -> Value {
        let matches = |r: &Value| {
            r["event"]["event"] == event
                && identity.is_none_or(|i| r["event"]["participant"]["identity"] == i)
        };
        if let Some(r) = self.seen.iter().find(|r| matches(r)) {
            return r.clone();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let r = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("no {event} {identity:?} webhook; got {:#?}", self.summary())
                })
                .expect("receiver output ended");
            self.seen.push(r.clone());
            if matches(&r) {
                return r;
            }
        }
    }

    /// `event identity` of every request seen (`!` marks a rejected one).
    fn summary(&self) -> Vec<String> {
        self.seen
            .iter()
            .map(|r| {
                let e = &r["event"];
                let who = e["participant"]["identity"].as_str().unwrap_or("");
                match r["ok"].as_bool() {
                    Some(true) => format!("{} {who}", e["event"].as_str().unwrap_or("?"))
                        .trim()
                        .to_string(),
                    _ => format!("! {}", r["error"]),
                }
            })
            .collect()
    }
}

/// Connect `identity`, publish its audio track and send audio until its track_published webhook
/// arrived (the server publishes a track when its media arrives). Returns the client and track sid.
async fn join_and_publish(
    s: &TestServer,
    hooks: &mut Receiver,
    identity: &str,
) -> (Client, String) {
    let mut c = Client::connect(&s.ws, &s.token(identity, VideoGrant::join(ROOM)), true).await;
    let track = c.publish_audio().await;
    c.wait_for(|s| {
        matches!(s, Seen::PublisherState(RTCPeerConnectionState::Connected)).then_some(())
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut i = 0u16;
    loop {
        c.send_rtp(vec![0xF8, (i >> 8) as u8, i as u8, 0, 0, 0])
            .await;
        i = i.wrapping_add(1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        while let Ok(r) = hooks.lines.try_recv() {
            hooks.seen.push(r);
        }
        let published = hooks.seen.iter().any(|r| {
            r["event"]["event"] == "track_published"
                && r["event"]["participant"]["identity"] == identity
        });
        if published {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no track_published for {identity}; got {:#?}",
            hooks.summary()
        );
    }
    (c, track.sid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_webhooks_verified_by_livekit_api() {
    let Some(py) = test_python() else {
        return;
    };
    let mut hooks = Receiver::start(&py).await;
    let db = TestDb::sqlite();
    let started = now_unix();
    let url = hooks.url.clone();
    let s = TestServer::start_with(&db, |c| {
        c.webhooks.livekit_urls = vec![url];
        // The test key is the primary (only) key: livekit_api_key may stay empty.
        assert!(c.webhooks.livekit_api_key.is_empty());
        // An empty room closes one second after its last participant left: room_finished.
        c.room.empty_timeout_secs = 1;
    })
    .await;

    let (a, a_track) = join_and_publish(&s, &mut hooks, "alice").await;
    let (b, b_track) = join_and_publish(&s, &mut hooks, "bob").await;
    // The server unpublishes bob's track (RoomService.UpdateParticipant revokes canPublish).
    let (st, info) = twirp::twirp_json(
        &s,
        "UpdateParticipant",
        &twirp::admin_token(twirp::admin_grant(ROOM)),
        serde_json::json!({ "room": ROOM, "identity": "bob",
            "permission": { "canSubscribe": true, "canPublish": false } }),
    )
    .await;
    assert_eq!(st, 200, "{info}");
    hooks.until("track_unpublished", Some("bob")).await;
    a.leave().await;
    hooks.until("participant_left", Some("alice")).await;
    b.leave().await;
    hooks.until("participant_left", Some("bob")).await;
    hooks.until("room_finished", None).await;
    // Nothing else (no duplicate, no retry) follows.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(r) = hooks.lines.try_recv() {
        hooks.seen.push(r);
    }

    // Every request was accepted by LiveKit's WebhookReceiver and came with LiveKit's media type.
    for r in &hooks.seen {
        assert_eq!(r["ok"], true, "rejected: {r:#}");
        assert_eq!(r["content_type"], "application/webhook+json", "{r:#}");
        assert!(
            !r["authorization"].as_str().unwrap().starts_with("Bearer"),
            "LiveKit sends the bare token"
        );
    }
    assert_eq!(
        hooks.summary(),
        [
            "room_started",
            "participant_joined alice",
            "track_published alice",
            "participant_joined bob",
            "track_published bob",
            "track_unpublished bob",
            "track_unpublished alice",
            "participant_left alice",
            "participant_left bob",
            "room_finished",
        ]
    );
    let events: Vec<&Value> = hooks.seen.iter().map(|r| &r["event"]).collect();
    // One room throughout, under its sid; fresh EV_ ids; created_at in unix seconds of the call.
    let sid = events[0]["room"]["sid"].as_str().unwrap();
    assert!(sid.starts_with("RM_"), "{:#}", events[0]);
    let mut ids = std::collections::HashSet::new();
    for e in &events {
        assert_eq!(e["room"]["sid"], sid, "{e:#}");
        assert_eq!(e["room"]["name"], ROOM, "{e:#}");
        let id = e["id"].as_str().unwrap();
        assert!(id.starts_with("EV_") && ids.insert(id.to_string()), "{e:#}");
        let at: u64 = e["createdAt"].as_str().unwrap().parse().unwrap();
        assert!(at >= started && at <= now_unix(), "{e:#}");
    }
    // Joins carry the participant's info; track events the publisher and the track.
    let joined_a = events[1];
    assert!(joined_a["participant"]["sid"]
        .as_str()
        .unwrap()
        .starts_with("PA_"));
    assert_eq!(joined_a["room"]["numParticipants"], 1);
    assert_eq!(events[3]["room"]["numParticipants"], 2);
    for (e, track, who) in [
        (events[2], &a_track, "alice"),
        (events[4], &b_track, "bob"),
        (events[5], &b_track, "bob"),
        (events[6], &a_track, "alice"),
    ] {
        assert_eq!(e["track"]["sid"], track.as_str(), "{e:#}");
        assert_eq!(e["track"]["source"], "MICROPHONE", "{e:#}");
        assert_eq!(e["track"]["mimeType"], "audio/opus", "{e:#}");
        assert_eq!(e["participant"]["identity"], who, "{e:#}");
    }
    assert_eq!(
        events[2]["participant"]["sid"],
        joined_a["participant"]["sid"]
    );
    for left in [events[7], events[8]] {
        assert_eq!(left["participant"]["state"], "DISCONNECTED", "{left:#}");
    }

    // The receiver's check is real: a copy of the first request with one byte of its body changed
    // is refused (the token's sha256 no longer matches), the unchanged copy accepted.
    let first = hooks.seen[0].clone();
    let body = first["body"].as_str().unwrap();
    let tampered = body.replacen(ROOM, "lk-hookz", 1);
    assert_ne!(tampered, body);
    let client = reqwest::Client::new();
    for (payload, want) in [(tampered.as_str(), 401), (body, 200)] {
        let r = client
            .post(&hooks.url)
            .header("Content-Type", "application/webhook+json")
            .header("Authorization", first["authorization"].as_str().unwrap())
            .body(payload.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "{payload}");
    }
    let refused = hooks.lines.recv().await.unwrap();
    assert_eq!(refused["ok"], false);
    assert!(
        refused["error"].as_str().unwrap().contains("hash mismatch"),
        "{refused:#}"
    );

    // The queue's log: every LiveKit delivery delivered at its first attempt.
    let log = s.handle.state.store.list_deliveries(50).await.unwrap();
    let lk: Vec<_> = log.iter().filter(|d| d.format == "livekit").collect();
    assert_eq!(lk.len(), 10, "{log:#?}");
    assert!(lk
        .iter()
        .all(|d| d.status == "delivered" && d.attempts == 1 && d.ordering_key == ROOM));
    s.stop().await;
}
