//! An embedded caller's whole call over real WebRTC: embed token → `room.connect` (a webrtc-rs
//! LiveKit-protocol client) → media → hang up; the call completes with its duration, its cost is
//! time × the assistant's price, the account is charged exactly once, and a signed `call.completed`
//! webhook carries duration, cost and the assistant. Also: kill -9 of the real binary mid-call,
//! then restarts: the call is completed from what is known and charged once, never twice.

mod common;
#[path = "../media/tests/common/ffmpeg.rs"]
mod ffmpeg;
#[path = "common/lk.rs"]
mod lk;

use common::*;
use lk::{Client, Seen};
use parlor_signaling::{AccessToken, Claims, VideoGrant};
use rtc::peer_connection::state::RTCPeerConnectionState;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ORIGIN: &str = "https://shop.example";

fn admin_token() -> String {
    AccessToken::encode(
        &Claims {
            iss: KEY.into(),
            sub: "ops".into(),
            nbf: now_unix() - 1,
            exp: now_unix() + 3600,
            video: Some(VideoGrant {
                room_admin: true,
                ..Default::default()
            }),
            ..Default::default()
        },
        SECRET,
    )
}

async fn admin_post(http: &str, path: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{http}{path}"))
        .bearer_auth(admin_token())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

async fn admin_get(http: &str, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{http}{path}"))
        .bearer_auth(admin_token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// An assistant at `price` per minute (recording its calls when `record`) and a key for ORIGIN;
/// then an embed token: (call id, token).
async fn embed_call(http: &str, price: f64, record: bool) -> (String, String) {
    let a = admin_post(
        http,
        "/api/v1/assistants",
        json!({ "name": "Support", "pricePerMinute": price, "record": record }),
    )
    .await;
    let k = admin_post(
        http,
        "/api/v1/public-keys",
        json!({ "allowedOrigins": [ORIGIN] }),
    )
    .await;
    let r = reqwest::Client::new()
        .post(format!("{http}/api/v1/embed/token"))
        .bearer_auth(k["data"]["key"].as_str().unwrap())
        .header("origin", ORIGIN)
        .json(&json!({ "assistantId": a["data"]["id"], "metadata": { "userId": "user-123" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    (
        v["data"]["callId"].as_str().unwrap().to_string(),
        v["data"]["token"].as_str().unwrap().to_string(),
    )
}

/// Connect with the embed token and send audio until the call is active.
async fn talk(ws: &str, http: &str, call: &str, token: &str) -> Client {
    let mut c = Client::connect(ws, token, true).await;
    c.publish_audio().await;
    c.wait_for(|s| {
        matches!(s, Seen::PublisherState(RTCPeerConnectionState::Connected)).then_some(())
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seq = 0u16;
    loop {
        c.send_rtp(vec![0xF8, (seq >> 8) as u8, seq as u8, 1, 2, 3])
            .await;
        seq = seq.wrapping_add(1);
        let v = admin_get(http, &format!("/api/v1/calls/{call}")).await;
        if v["data"]["status"] == "active" {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "the call never became active: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_up_completes_charges_once_and_sends_call_completed() {
    let hooks = common::webhooks::Receiver::start().await;
    let db = TestDb::sqlite();
    let s = TestServer::start_with(&db, |c| {
        c.webhooks.urls = vec![hooks.url.clone()];
        c.webhooks.secret = "whsec-test".into();
    })
    .await;
    let (call, token) = embed_call(&s.http, 0.6, false).await;
    let c = talk(&s.ws, &s.http, &call, &token).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.leave().await; // all a widget does: room.disconnect()

    let body = hooks.signed_event("call.completed", "whsec-test").await;
    let data = &body["data"];
    assert_eq!(data["id"], call.as_str());
    assert_eq!(data["status"], "completed");
    let ms = data["duration_ms"].as_i64().unwrap();
    assert!((1_000..15_000).contains(&ms), "{ms}");
    let a = &data["assistant"];
    let want = (ms as f64 * 600_000.0 / 60_000.0).floor() / 1e6;
    assert_eq!(a["cost"].as_f64().unwrap(), want, "{a}");
    assert_eq!(a["charged"], a["cost"]);
    assert_eq!(a["endReason"], "caller_hung_up");
    assert_eq!(a["durationMs"], ms);
    // The account's view and the ledger: one charge of that cost.
    let v = admin_get(&s.http, &format!("/api/v1/calls/{call}")).await;
    assert_eq!(
        (v["data"]["cost"].as_f64(), v["data"]["charged"].as_f64()),
        (Some(want), Some(want))
    );
    let acct = admin_get(&s.http, "/api/v1/account").await;
    let ledger = acct["data"]["ledger"].as_array().unwrap();
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0]["callId"], call.as_str());
    assert_eq!(acct["data"]["credits"].as_f64().unwrap(), -want);
    // Finalizing again (a retry) charges nothing more.
    let c = s.handle.state.store.get_call(&call).await.unwrap();
    parlor::embed::finalize::finalize(&s.handle.state, &c)
        .await
        .unwrap();
    let acct = admin_get(&s.http, "/api/v1/account").await;
    assert_eq!(acct["data"]["ledger"].as_array().unwrap().len(), 1);
    s.stop().await;
}

/// The real binary on a data dir, its HTTP and UDP ports fixed so a restart serves the same URLs.
fn spawn_server(data: &std::path::Path, http_port: u16, udp_port: u16) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_parlor"))
        .args([
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--bind",
            &format!("127.0.0.1:{http_port}"),
            "--udp-port",
            &udp_port.to_string(),
        ])
        .env_clear()
        .env("PARLOR_KEYS", format!("{KEY}:{SECRET}"))
        .env("PARLOR_TURN_ENABLED", "false")
        .env("PARLOR_RTC_TCP_PORT", "0")
        .env("PARLOR_RTC_WORKERS", "1")
        // The machine's Parlor home (the assistant's offline model), found as the tests find it.
        .env(
            "PARLOR_HOME",
            parlor::home::default_home(|k| std::env::var(k).ok()),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cut_by_sigkill_is_completed_and_charged_once_after_restarts() {
    let data = tempfile::tempdir().unwrap();
    let (http_port, udp_port) = (free_port(), free_port());
    let http = format!("http://127.0.0.1:{http_port}");
    let ws = format!("ws://127.0.0.1:{http_port}");
    let mut child = spawn_server(data.path(), http_port, udp_port);
    wait_healthy(&http).await;
    let (call, token) = embed_call(&http, 0.6, true).await;
    let c = talk(&ws, &http, &call, &token).await;
    let active = Instant::now();
    tokio::time::sleep(Duration::from_millis(2500)).await; // > 1 heartbeat interval (2 s)
    child.kill().unwrap(); // SIGKILL mid-call
    let lived = active.elapsed().as_millis() as i64;
    child.wait().unwrap();
    drop(c);
    for round in 0..2 {
        let mut child = spawn_server(data.path(), http_port, udp_port);
        wait_healthy(&http).await;
        let v = admin_get(&http, &format!("/api/v1/calls/{call}")).await;
        assert_eq!(v["data"]["status"], "completed", "round {round}: {v}");
        let ms = v["data"]["durationMs"].as_i64().unwrap();
        // The end is the last heartbeat (written every 2 s) before the kill: at most `lived`
        // (plus the activation poll's slack), at least `lived` minus one heartbeat interval.
        assert!(
            (lived - 2_200..=lived + 200).contains(&ms),
            "round {round}: {ms} ms of {lived}"
        );
        let want = (ms as f64 * 600_000.0 / 60_000.0).floor() / 1e6;
        assert_eq!(v["data"]["cost"].as_f64(), Some(want), "round {round}: {v}");
        assert_eq!(
            v["data"]["charged"].as_f64(),
            Some(want),
            "round {round}: {v}"
        );
        let acct = admin_get(&http, "/api/v1/account").await;
        assert_eq!(
            acct["data"]["ledger"].as_array().unwrap().len(),
            1,
            "round {round}: charged once"
        );
        // The assistant recorded the call: the recording a crash cut short is repaired, completed
        // and playable.
        let rec = v["data"]["recordingId"]
            .as_str()
            .expect("a recording")
            .to_string();
        let file = data.path().join("recordings").join(format!("{rec}.webm"));
        let p = ffmpeg::ffprobe(&file);
        assert_eq!(p.codec, "opus", "round {round}");
        let secs = p.duration.unwrap_or(0.0);
        assert!(secs > 0.5, "round {round}: {secs} s");
        assert_eq!(
            ffmpeg::ffmpeg_errors(&file),
            "",
            "round {round}: decodes cleanly"
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
