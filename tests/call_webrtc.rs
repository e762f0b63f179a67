//! A call created through the API, joined by two real WebRTC clients (webrtc-rs over the LiveKit
//! protocol): both show in `participants` with media flags, and after both leave the call is
//! completed with a duration within 1 s of the real one.

mod common;
#[path = "common/lk.rs"]
mod lk;

use common::*;
use lk::{Client, Seen};
use rtc::peer_connection::state::RTCPeerConnectionState;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn api(
    s: &TestServer,
    m: reqwest::Method,
    path: &str,
    user: &str,
    body: Option<Value>,
) -> Value {
    let (code, v) = api_call(&s.http, m, path, user, body).await;
    assert!((200..300).contains(&code), "{path}: {code} {v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_joined_by_two_webrtc_clients() {
    for db in all_dbs().await {
        let s = TestServer::start(&db).await;
        let created = api(
            &s,
            reqwest::Method::POST,
            "/api/calls",
            "alice",
            Some(json!({"call_type": "audio"})),
        )
        .await;
        let call = created["call_id"].as_str().unwrap().to_string();
        api(
            &s,
            reqwest::Method::POST,
            &format!("/api/calls/{call}/invite"),
            "alice",
            Some(json!({"user_id": "bob"})),
        )
        .await;
        let bob = api(
            &s,
            reqwest::Method::POST,
            &format!("/api/calls/{call}/join"),
            "bob",
            None,
        )
        .await;
        let url = created["url"].as_str().unwrap();
        assert_eq!(url, s.ws);

        let mut a = Client::connect(url, created["token"].as_str().unwrap(), true).await;
        let t_start = Instant::now();
        let b = Client::connect(url, bob["token"].as_str().unwrap(), false).await;
        a.publish_audio().await;
        a.wait_for(|s| {
            matches!(s, Seen::PublisherState(RTCPeerConnectionState::Connected)).then_some(())
        })
        .await;
        // Participants: both, alice with audio. Status: active.
        let path = format!("/api/calls/{call}/participants");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seq = 0u16;
        let v = loop {
            for _ in 0..3 {
                a.send_rtp(vec![0xF8, (seq >> 8) as u8, seq as u8, 1, 2, 3])
                    .await;
                seq = seq.wrapping_add(1);
            }
            let v = api(&s, reqwest::Method::GET, &path, "bob", None).await;
            if v["count"] == 2
                && v["status"] == "active"
                && v["participants"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["user_id"] == "alice" && p["media"]["audio"] == true)
            {
                break v;
            }
            assert!(
                Instant::now() < deadline,
                "participants never showed both: {v}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut ids: Vec<&str> = v["participants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["user_id"].as_str().unwrap())
            .collect();
        ids.sort();
        assert_eq!(ids, ["alice", "bob"]);
        for p in v["participants"].as_array().unwrap() {
            assert_eq!(p["media"]["video"], false);
            assert!(p["joined_at"].is_string());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        a.leave().await;
        b.leave().await;
        let real = t_start.elapsed();
        let cpath = format!("/api/calls/{call}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let v = loop {
            let v = api(&s, reqwest::Method::GET, &cpath, "alice", None).await;
            if v["call"]["status"] == "completed" {
                break v;
            }
            assert!(Instant::now() < deadline, "call never completed: {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let d = v["call"]["duration_ms"].as_f64().unwrap() / 1000.0;
        assert_eq!(
            v["call"]["duration"],
            d.round() as i64,
            "whole seconds: {v}"
        );
        println!(
            "{}: duration {d} s, measured {:.3} s",
            db.backend(),
            real.as_secs_f64()
        );
        assert!(
            (d - real.as_secs_f64()).abs() < 1.0,
            "duration {d} vs real {:?}",
            real
        );
        assert!(v["call"]["ended_at"].is_string());
        s.stop().await;
        db.drop_db().await;
    }
}
