//! The load generator itself, end to end against an in-process server: a tiny workload for a few
//! seconds must deliver media and produce a sane summary (it is the tool the performance figures in
//! docs/PERFORMANCE.md come from).

mod common;

use common::*;
use parlor_load::livekit::LiveKitTarget;
use parlor_load::{LoadConfig, Target};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parlor_load_tiny_workload() {
    let db = TestDb::sqlite();
    let s = TestServer::start(&db).await;
    let cfg = LoadConfig {
        target: Target::LiveKit(LiveKitTarget {
            url: s.ws.clone(),
            api_key: KEY.into(),
            api_secret: SECRET.into(),
        }),
        rooms: 2,
        publishers: 1,
        subscribers: 2,
        duration: Duration::from_secs(6),
        audio_bytes: 80,
        video_kbps: 0,
        join_rate: 20.0,
        threads: 1,
        // Sample our own process (the server runs in-process here).
        server_pid: Some(std::process::id()),
        progress_every: Duration::from_secs(2),
        room_prefix: "lt-".into(),
        publishers_subscribe: false,
        progress: true,
        ice_check_interval: Some(Duration::from_millis(50)),
        bind_ip: "127.0.0.1".parse().unwrap(),
    };
    let summary = parlor_load::run(cfg).await.unwrap();
    let json = serde_json::to_string_pretty(&summary).unwrap();
    println!("{json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["participants"], 6);
    assert_eq!(v["joins_ok"], 6, "every participant joins");
    // 2 rooms × 1 publisher × 2 subscribers.
    assert_eq!(v["forwarded_streams"], 4);
    let received = v["packets_received"].as_u64().unwrap();
    assert!(received > 0, "no media received");
    assert!(v["packets_sent"].as_u64().unwrap() >= received / 2);
    let loss = v["loss_pct"].as_f64().unwrap();
    assert!(loss < 5.0, "loss {loss}%");
    let lat = &v["latency_ms"];
    assert_eq!(lat["count"].as_u64().unwrap(), received);
    assert!(lat["p50"].as_f64().unwrap() > 0.0);
    assert!(lat["p50"].as_f64().unwrap() <= lat["p99"].as_f64().unwrap());
    assert_eq!(v["first_packet_ms"]["count"], 4);
    assert!(v["server"]["rss_kb_end"].as_u64().unwrap() > 0);
    s.stop().await;
}
