//! Interop with LiveKit's real Python SDK (`livekit` on PyPI: the Rust FFI core, pinned in
//! tests/python/requirements.txt): two tests/python/lk_peer.py participants join one room on an
//! in-process Parlor, each publishes a sine tone at its own frequency and checks by FFT that it hears
//! the other's; reliable data on a topic arrives with the sender's identity; a mute is seen by the
//! other side; a's disconnect is seen by b. Once with the SDK's default options (which may ask for
//! the single-peer-connection signal path `/rtc/v1`) and once with `single_peer_connection=False` (v0,
//! two peer connections). Join-to-first-audio figures are printed, never asserted.
//!
//! The interpreter: env `PARLOR_TEST_PYTHON`, else the venv that .ci/run step 2 makes at
//! `${PARLOR_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/parlor}/test-venv`.

mod common;
use common::*;
use parlor_signaling::VideoGrant;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

const TONE_A: f64 = 440.0;
const TONE_B: f64 = 740.0;
/// FFT bins are 1.25 Hz over the 0.8 s analysed; Opus keeps a pure tone's pitch.
const TOLERANCE_HZ: f64 = 15.0;

fn test_python() -> Option<PathBuf> {
    common::python::test_python("livekit.rtc, numpy", "python SDK test")
}

/// One peer's JSON line, its stderr (the SDK's log), and whether it exited 0.
struct Peer {
    json: Value,
    stderr: String,
    success: bool,
}

async fn run_peer(mut cmd: tokio::process::Command) -> Peer {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python did not start");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("python peer still running after 60 s (killed)")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON from lk_peer.py: {stdout}\n--- stderr:\n{stderr}"));
    Peer {
        json,
        stderr,
        success: out.status.success(),
    }
}

async fn two_peers(mode: &str) {
    let Some(py) = test_python() else { return };
    let db = TestDb::sqlite();
    let s = TestServer::start(&db).await;
    let room = format!("py-sdk-{mode}");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/lk_peer.py");
    let cmd = |role: &str, tone: f64, expect: f64| {
        let mut c = tokio::process::Command::new(&py);
        c.arg("-u")
            .arg(&script)
            .arg(&s.ws)
            .arg(s.token(&format!("py-{role}"), VideoGrant::join(&room)))
            .args(["--role", role, "--mode", mode])
            .args(["--tone", &tone.to_string()])
            .args(["--expect", &expect.to_string()]);
        // RUST_LOG reaches the SDK's Rust core (liblivekit_ffi); keep the caller's when set.
        if std::env::var_os("RUST_LOG").is_none() {
            c.env("RUST_LOG", "livekit=info,livekit_api=info,livekit_ffi=info");
        }
        c
    };
    let (a, b) = tokio::join!(
        run_peer(cmd("a", TONE_A, TONE_B)),
        run_peer(cmd("b", TONE_B, TONE_A))
    );
    for (p, name) in [(&a, "a"), (&b, "b")] {
        println!("peer {name} ({mode}): {}", p.json);
        if !p.success || p.json["ok"] != true {
            eprintln!("--- peer {name} stderr:\n{}", p.stderr);
        }
    }
    for (p, me, other, expect) in [(&a, "a", "b", TONE_B), (&b, "b", "a", TONE_A)] {
        let v = &p.json;
        // Judged on the peer's report (printed after its checks and its disconnect): the SDK can
        // still abort in its own FFI teardown at interpreter exit ("panic in a function that cannot
        // unwind"), which says nothing about the server.
        assert!(v["ok"] == true, "peer {me} failed: {v}");
        if !p.success {
            println!("peer {me}: the SDK process exited abnormally after its checks");
        }
        assert_eq!(v["subscribed_from"], format!("py-{other}"), "{v}");
        let heard = v["heard_hz"].as_f64().expect("heard_hz");
        assert!(
            (heard - expect).abs() <= TOLERANCE_HZ,
            "peer {me} heard {heard} Hz, expected {expect} Hz: {v}"
        );
        assert_eq!(v["data"]["text"], format!("hello from {other}"), "{v}");
        assert_eq!(v["data"]["from"], format!("py-{other}"), "{v}");
        assert_eq!(v["data"]["topic"], "chat", "{v}");
        assert_eq!(v["muted_seen"]["from"], format!("py-{other}"), "{v}");
    }
    assert_eq!(b.json["disconnect_seen"], "py-a", "{}", b.json);
    // Which signal protocol the SDK ended up on, as the server counted it: the default is v1 (one
    // peer connection) with no fallback; `single_peer_connection=False` goes straight to v0.
    let m = s.metrics().await;
    let (v1, v0) = (
        counter(&m, "parlor_signal_sessions_v1_total"),
        counter(&m, "parlor_signal_sessions_v0_total"),
    );
    if mode == "v0" {
        assert_eq!((v1, v0), (0, 2), "{m}");
    } else {
        assert_eq!((v1, v0), (2, 0), "{m}");
        for p in [&a, &b] {
            assert_eq!(p.json["fell_back_to_v0"], false, "{}", p.json);
        }
    }
    println!(
        "python SDK {mode}: join_to_first_audio_ms a={} b={}; connect_ms a={} b={}; \
         fell back from /rtc/v1 to v0: a={} b={}",
        a.json["join_to_first_audio_ms"],
        b.json["join_to_first_audio_ms"],
        a.json["connect_ms"],
        b.json["connect_ms"],
        a.json["fell_back_to_v0"],
        b.json["fell_back_to_v0"]
    );
    s.stop().await;
}

fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

/// The SDK's default RoomOptions (single_peer_connection unset).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_default_mode() {
    two_peers("default").await;
}

/// `RoomOptions(single_peer_connection=False)`: the v0 signal path, two peer connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_v0_two_peer_connections() {
    two_peers("v0").await;
}

/// Five Python participants in one room on v1: each hears the other four. A v1 client creates three
/// audio receive sections up front, so the fourth subscription needs the server to ask for more
/// (MediaSectionsRequirement with num_audios > 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_v1_five_participants_hear_each_other() {
    let Some(py) = test_python() else { return };
    let db = TestDb::sqlite();
    let s = TestServer::start(&db).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/lk_crowd.py");
    let tones = [300.0, 450.0, 600.0, 750.0, 900.0];
    let peers = tones.iter().enumerate().map(|(i, hz)| {
        let mut c = tokio::process::Command::new(&py);
        c.arg("-u")
            .arg(&script)
            .arg(&s.ws)
            .arg(s.token(&format!("crowd-{i}"), VideoGrant::join("py-crowd")))
            .args(["--tone", &hz.to_string(), "--others", "4"]);
        run_peer(c)
    });
    let results = futures_util::future::join_all(peers).await;
    for (i, p) in results.iter().enumerate() {
        println!("crowd-{i}: {}", p.json);
        if !p.success {
            eprintln!("--- crowd-{i} stderr:\n{}", p.stderr);
        }
    }
    for (i, p) in results.iter().enumerate() {
        // Judged on what the peer heard: the SDK can abort in its own teardown after printing
        // (the process then exits non-zero with "panic in a function that cannot unwind").
        assert_eq!(
            p.json["ok"], true,
            "crowd-{i} did not hear everyone: {}",
            p.json
        );
        if !p.success {
            println!("crowd-{i}: the SDK process exited abnormally after its checks");
        }
        for (j, hz) in tones.iter().enumerate().filter(|(j, _)| *j != i) {
            let heard = p.json["heard"][format!("crowd-{j}")]
                .as_f64()
                .unwrap_or_else(|| panic!("crowd-{i} never heard crowd-{j}: {}", p.json));
            assert!(
                (heard - hz).abs() <= TOLERANCE_HZ,
                "crowd-{i} heard crowd-{j} at {heard} Hz, sent {hz} Hz"
            );
        }
    }
    let m = s.metrics().await;
    assert_eq!(counter(&m, "parlor_signal_sessions_v1_total"), 5, "{m}");
    s.stop().await;
}

/// LiveKit's Python server SDK (`livekit-api`): RoomServiceClient's room and participant methods
/// against Parlor, each effect checked from a real participant (tests/python/lk_room_service.py).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_api_room_service() {
    let Some(py) = test_python() else { return };
    let db = TestDb::sqlite();
    let s = TestServer::start(&db).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/lk_room_service.py");
    let mut cmd = tokio::process::Command::new(&py);
    cmd.arg("-u")
        .arg(&script)
        .args([&s.http, &s.ws, KEY, SECRET]);
    let p = run_peer(cmd).await;
    println!("livekit-api RoomService: {}", p.json);
    if p.json["ok"] != true {
        eprintln!("--- stderr:\n{}", p.stderr);
    }
    assert!(
        p.json["ok"] == true,
        "RoomService checks failed: {}",
        p.json
    );
    // The server's own view agrees: the room is closed in the store.
    let stored = s
        .handle
        .state
        .store
        .get_room("py-room-service")
        .await
        .unwrap();
    assert!(stored.closed_at.is_some());
    s.stop().await;
}
