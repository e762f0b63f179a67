//! The recorder end to end: a call with two real WebRTC clients sending Opus sine tones (440 Hz and
//! 660 Hz); recording started and stopped over the REST API; the mixed file and the per-participant
//! files checked with ffprobe/ffmpeg and by the tones they contain; the download URL serves the file.

mod common;
#[path = "common/lk.rs"]
mod lk;

use common::*;
use lk::{Client, Seen};
use parlor_media::{Application, EncoderConfig, OpusEncoder, FRAME_SAMPLES, MAX_PACKET_BYTES};
use parlor_signaling::protocol::proto;
use rtc::peer_connection::state::RTCPeerConnectionState;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

async fn api(
    s: &TestServer,
    m: reqwest::Method,
    path: &str,
    user: &str,
    body: Option<Value>,
) -> (u16, Value) {
    api_call(&s.http, m, path, user, body).await
}

#[path = "../media/tests/common/ffmpeg.rs"]
mod ffmpeg;
use ffmpeg::{ffmpeg_decode, ffmpeg_errors, ffprobe};

/// Power of `freq` in `pcm` (48 kHz mono), Goertzel, normalised by length.
fn tone_power(pcm: &[f32], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / 48_000.0;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in pcm {
        let s0 = f64::from(x) + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - c * s1 * s2) / (pcm.len() as f64).powi(2)
}

/// The file decoded to 48 kHz mono; ffmpeg must report no error.
fn decode_pcm(file: &Path) -> Vec<f32> {
    let errors = ffmpeg_errors(file);
    assert!(
        errors.is_empty(),
        "ffmpeg reported errors decoding {}: {errors}",
        file.display()
    );
    ffmpeg_decode(file, &[])
}

fn sine_encoder() -> OpusEncoder {
    OpusEncoder::new(EncoderConfig {
        channels: 1,
        bitrate: 32_000,
        application: Application::Audio,
        fec: false,
        expected_loss_percent: 0,
        dtx: false,
        complexity: 5,
    })
    .unwrap()
}

fn sine_frame(freq: f64, k: usize, enc: &mut OpusEncoder) -> Vec<u8> {
    let pcm: Vec<i16> = (0..FRAME_SAMPLES)
        .map(|j| {
            let t = (k * FRAME_SAMPLES + j) as f64 / 48_000.0;
            ((2.0 * std::f64::consts::PI * freq * t).sin() * 0.3 * 32767.0) as i16
        })
        .collect();
    let mut out = vec![0u8; MAX_PACKET_BYTES];
    let n = enc.encode(&pcm, &mut out).unwrap();
    out.truncate(n);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_recording_mixed_and_per_participant() {
    let db = TestDb::sqlite();
    let s = TestServer::start(&db).await;
    let (st, created) = api(
        &s,
        reqwest::Method::POST,
        "/api/calls",
        "alice",
        Some(json!({"call_type": "audio"})),
    )
    .await;
    assert_eq!(st, 201, "{created}");
    let call = created["call_id"].as_str().unwrap().to_string();
    api(
        &s,
        reqwest::Method::POST,
        &format!("/api/calls/{call}/invite"),
        "alice",
        Some(json!({"user_id": "bob"})),
    )
    .await;
    let (_, bob) = api(
        &s,
        reqwest::Method::POST,
        &format!("/api/calls/{call}/join"),
        "bob",
        None,
    )
    .await;
    // Not recording yet; stop without a recording is recording_not_found; outsiders are refused.
    let status_path = format!("/api/calls/{call}/recording/status");
    assert_eq!(
        api(&s, reqwest::Method::GET, &status_path, "alice", None)
            .await
            .1["recording"],
        false
    );
    let stop_path = format!("/api/calls/{call}/recording/stop");
    let start_path = format!("/api/calls/{call}/recording/start");
    let (code, v) = api(&s, reqwest::Method::POST, &stop_path, "alice", None).await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (404, Some("recording_not_found"))
    );
    let (code, v) = api(&s, reqwest::Method::POST, &start_path, "mallory", None).await;
    assert_eq!(code, 403, "{v}");

    let url = created["url"].as_str().unwrap();
    let mut a = Client::connect(url, created["token"].as_str().unwrap(), true).await;
    let mut b = Client::connect(url, bob["token"].as_str().unwrap(), true).await;
    a.publish_audio().await;
    let bob_track = b.publish_audio().await.sid;
    for c in [&mut a, &mut b] {
        c.wait_for(|s| {
            matches!(s, Seen::PublisherState(RTCPeerConnectionState::Connected)).then_some(())
        })
        .await;
    }
    wait_call_active(&s.http, &call, "alice").await;

    let (code, v) = api(&s, reqwest::Method::POST, &start_path, "alice", None).await;
    assert_eq!(code, 201, "{v}");
    let rec_id = v["recording_id"].as_str().unwrap().to_string();
    assert!(rec_id.starts_with("rec_"));
    let started = Instant::now();
    let (code, v) = api(&s, reqwest::Method::POST, &start_path, "bob", None).await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (409, Some("recording_in_progress"))
    );
    let v = api(&s, reqwest::Method::GET, &status_path, "bob", None)
        .await
        .1;
    assert_eq!(v["recording"], true);
    assert_eq!(v["recording_id"], rec_id.as_str());

    // 5 s of 440 Hz from alice and 660 Hz from bob, 20 ms apart. Alice's network loses 5 % of
    // her packets (seeded), and bob is muted for 1 s in the middle.
    let (mut ea, mut eb) = (sine_encoder(), sine_encoder());
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut lost = 0;
    let mute = |muted: bool| {
        proto::signal_request::Message::Mute(proto::MuteTrackRequest {
            sid: bob_track.clone(),
            muted,
        })
    };
    for k in 0..250 {
        tick.tick().await;
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let frame = sine_frame(440.0, k, &mut ea);
        if rng % 100 < 5 {
            a.lose_rtp().await;
            lost += 1;
        } else {
            a.send_rtp(frame).await;
        }
        match k {
            100 => b.send(mute(true)).await,
            150 => b.send(mute(false)).await,
            _ => {}
        }
        b.send_rtp(sine_frame(660.0, k, &mut eb)).await;
    }
    assert!(lost >= 5, "the loss simulation lost {lost} packets");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (code, v) = api(&s, reqwest::Method::POST, &stop_path, "alice", None).await;
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["recording_id"], rec_id.as_str());
    assert_eq!(v["status"], "completed");
    // `duration` is whole seconds (seed 002), `duration_ms` the precise value.
    let dur = v["duration_ms"].as_f64().unwrap() / 1000.0;
    assert_eq!(v["duration"], dur.round() as i64, "{v}");
    assert!(
        (dur - wall).abs() <= 0.02 * wall,
        "duration {dur} s vs wall {wall} s"
    );

    // The row is completed with the file.
    let (_, r) = api(
        &s,
        reqwest::Method::GET,
        &format!("/api/recordings/{rec_id}"),
        "bob",
        None,
    )
    .await;
    assert_eq!(r["recording"]["status"], "completed", "{r}");

    let dir = s.handle.state.config.storage.data_dir.join("recordings");
    let mixed = dir.join(format!("{rec_id}.webm"));
    let p = ffprobe(&mixed);
    let fdur = p.duration.unwrap_or(0.0);
    assert_eq!((p.codec.as_str(), p.sample_rate), ("opus", 48000));
    assert!(
        (fdur - dur).abs() <= 0.02 * dur + 0.05,
        "file {fdur} s vs {dur} s"
    );
    let pcm = decode_pcm(&mixed);
    let (p440, p660, p1000) = (
        tone_power(&pcm, 440.0),
        tone_power(&pcm, 660.0),
        tone_power(&pcm, 1000.0),
    );
    assert!(
        p440 > 100.0 * p1000 && p660 > 100.0 * p1000,
        "mix: 440 {p440:e}, 660 {p660:e}, 1000 {p1000:e}"
    );

    // Per-participant files: each holds only its own tone.
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{rec_id}.json"))).unwrap())
            .unwrap();
    let tracks = manifest["tracks"].as_array().unwrap();
    assert_eq!(tracks.len(), 2, "{manifest}");
    for t in tracks {
        let (own, other) = match t["identity"].as_str().unwrap() {
            "alice" => (440.0, 660.0),
            "bob" => (660.0, 440.0),
            who => panic!("unexpected track owner {who}"),
        };
        let f = dir.join(t["file"].as_str().unwrap());
        let p = ffprobe(&f);
        let tdur = p.duration.unwrap_or(0.0);
        assert_eq!(p.codec, "opus");
        assert!(tdur > 3.0, "{} is {tdur} s", f.display());
        let pcm = decode_pcm(&f);
        let (p_own, p_other) = (tone_power(&pcm, own), tone_power(&pcm, other));
        if own == 660.0 {
            // Bob was muted from 2.0 s to 3.0 s of his stream: that second is (nearly) silent.
            let at = |a: f64, b: f64| &pcm[(a * 48_000.0) as usize..(b * 48_000.0) as usize];
            let (loud, muted) = (
                tone_power(at(0.5, 1.5), 660.0),
                tone_power(at(2.3, 2.9), 660.0),
            );
            assert!(
                loud > 100.0 * muted,
                "mute not recorded: {loud:e} vs {muted:e}"
            );
        }
        assert!(
            p_own > 100.0 * p_other,
            "{}: own {p_own:e} other {p_other:e}",
            f.display()
        );
    }

    // Download: a signed URL serving the mixed file, with Range support.
    let (_, d) = api(
        &s,
        reqwest::Method::GET,
        &format!("/api/recordings/{rec_id}/download"),
        "alice",
        None,
    )
    .await;
    let url = d["url"].as_str().unwrap();
    let body = s.client.get(url).send().await.unwrap();
    assert_eq!(body.status(), 200);
    let bytes = body.bytes().await.unwrap();
    assert_eq!(bytes.as_ref(), std::fs::read(&mixed).unwrap().as_slice());
    let part = s
        .client
        .get(url)
        .header("Range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap().len(), 100);
    a.leave().await;
    b.leave().await;
    // Everyone left: the call is over and can no longer be recorded.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, c) = api(
            &s,
            reqwest::Method::GET,
            &format!("/api/calls/{call}"),
            "alice",
            None,
        )
        .await;
        if c["call"]["status"] == "completed" {
            break;
        }
        assert!(Instant::now() < deadline, "call never completed: {c}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, v) = api(&s, reqwest::Method::POST, &start_path, "alice", None).await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (409, Some("call_not_active"))
    );
    s.stop().await;
}

/// A `parlor serve` process on a data directory (kill -9 test).
struct Proc {
    child: std::process::Child,
    http: String,
}

fn spawn_server(dir: &Path) -> Proc {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_parlor"))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("PARLOR_KEYS", format!("{KEY}:{SECRET}"))
        .env("PARLOR_RTC_UDP_PORT", "0")
        .env("PARLOR_RTC_TCP_PORT", "0")
        .env("PARLOR_TURN_ENABLED", "false")
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    Proc {
        child,
        http: format!("http://127.0.0.1:{port}"),
    }
}

/// Create a call as alice at `http`, connect her publishing client and start recording:
/// (call id, client, recording id).
async fn call_being_recorded(http: &str) -> (String, Client, String) {
    let (code, created) = api_call(
        http,
        reqwest::Method::POST,
        "/api/calls",
        "alice",
        Some(json!({"call_type": "audio"})),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let call = created["call_id"].as_str().unwrap().to_string();
    let mut a = Client::connect(
        created["url"].as_str().unwrap(),
        created["token"].as_str().unwrap(),
        true,
    )
    .await;
    a.publish_audio().await;
    a.wait_for(|s| {
        matches!(s, Seen::PublisherState(RTCPeerConnectionState::Connected)).then_some(())
    })
    .await;
    wait_call_active(http, &call, "alice").await;
    let (code, v) = api_call(
        http,
        reqwest::Method::POST,
        &format!("/api/calls/{call}/recording/start"),
        "alice",
        None,
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let rec = v["recording_id"].as_str().unwrap().to_string();
    (call, a, rec)
}

/// Stop the call's recording as alice; the response body (asserted 200).
async fn stop_recording(http: &str, call: &str) -> Value {
    let (code, v) = api_call(
        http,
        reqwest::Method::POST,
        &format!("/api/calls/{call}/recording/stop"),
        "alice",
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    v
}

/// Recording `rec` as the API shows it at `http`: must be `completed`; its duration in seconds.
async fn completed_duration(http: &str, rec: &str) -> f64 {
    let (code, r) = api_call(
        http,
        reqwest::Method::GET,
        &format!("/api/recordings/{rec}"),
        "alice",
        None,
    )
    .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["recording"]["status"], "completed", "{r}");
    r["recording"]["duration_ms"].as_f64().unwrap() / 1000.0
}

/// `frames` × 20 ms of a 440 Hz tone from `client`.
async fn send_tone(client: &Client, frames: usize) {
    let mut enc = sine_encoder();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for k in 0..frames {
        tick.tick().await;
        client.send_rtp(sine_frame(440.0, k, &mut enc)).await;
    }
}

/// kill -9 mid-recording: the partial file decodes; after a restart the recording is completed with
/// the duration that reached the disk and its file is a finalized, cleanly decodable WebM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = spawn_server(dir.path());
    wait_healthy(&p.http).await;
    let (_call, a, rec) = call_being_recorded(&p.http).await;
    send_tone(&a, 150).await;
    // SIGKILL: no shutdown path runs.
    p.child.kill().unwrap();
    p.child.wait().unwrap();
    drop(a);

    let file = dir
        .path()
        .join("data")
        .join("recordings")
        .join(format!("{rec}.webm"));
    let size_cut = std::fs::metadata(&file).expect("partial file exists").len();
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&file)
        .args(["-f", "s16le", "-ac", "1", "-ar", "48000", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "partial file does not decode");
    let secs = out.stdout.len() as f64 / 2.0 / 48_000.0;
    assert!(
        secs >= 1.0,
        "only {secs} s decodable from the cut file ({size_cut} bytes)"
    );

    // Restart: the recording is finished with what reached the disk.
    let mut p2 = spawn_server(dir.path());
    wait_healthy(&p2.http).await;
    let dur = completed_duration(&p2.http, &rec).await;
    assert!((1.0..=3.6).contains(&dur), "recovered duration {dur} s");
    let p = ffprobe(&file);
    let fdur = p.duration.unwrap_or(0.0);
    assert_eq!(p.codec, "opus");
    assert!((fdur - dur).abs() < 0.15, "file says {fdur} s, row {dur} s");
    let pcm = decode_pcm(&file); // asserts ffmpeg prints no error
    assert!(tone_power(&pcm, 440.0) > 100.0 * tone_power(&pcm, 1000.0));
    p2.child.kill().unwrap();
    p2.child.wait().unwrap();
}

/// A graceful shutdown finalizes a running recording before the store closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finalizes_a_running_recording() {
    let db = TestDb::sqlite();
    let s = TestServer::start(&db).await;
    let (_call, a, rec) = call_being_recorded(&s.http).await;
    send_tone(&a, 75).await;
    s.stop().await;
    drop(a);
    // Same database, new server: the row was finished at shutdown (not left "recording").
    let s = TestServer::start(&db).await;
    let dur = completed_duration(&s.http, &rec).await;
    assert!((1.2..=3.0).contains(&dur), "duration {dur} s");
    s.stop().await;
}

/// A call created with `"record": true` is recorded from the moment media flows, for its creator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_created_with_record_are_recorded_automatically() {
    let db = TestDb::sqlite();
    let s = TestServer::start(&db).await;
    let (code, created) = api(
        &s,
        reqwest::Method::POST,
        "/api/calls",
        "alice",
        Some(json!({"call_type": "audio", "record": true})),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["call"]["record"], true);
    let call = created["call_id"].as_str().unwrap().to_string();
    let status_path = format!("/api/calls/{call}/recording/status");
    // Nothing to record before anyone connects.
    assert_eq!(
        api(&s, reqwest::Method::GET, &status_path, "alice", None)
            .await
            .1["recording"],
        false
    );
    let mut a = Client::connect(
        created["url"].as_str().unwrap(),
        created["token"].as_str().unwrap(),
        true,
    )
    .await;
    a.publish_audio().await;
    a.wait_for(|s| {
        matches!(s, Seen::PublisherState(RTCPeerConnectionState::Connected)).then_some(())
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let v = api(&s, reqwest::Method::GET, &status_path, "alice", None)
            .await
            .1;
        if v["recording"] == true {
            break v;
        }
        assert!(Instant::now() < deadline, "never started recording: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status["started_by"], "alice");
    let rec = status["recording_id"].as_str().unwrap().to_string();
    send_tone(&a, 75).await;
    let v = stop_recording(&s.http, &call).await;
    assert_eq!(v["recording_id"], rec.as_str());
    let dur = completed_duration(&s.http, &rec).await;
    assert!(dur >= 1.4, "duration {dur} s");
    // A call created without it is not.
    let (_, plain) = api(
        &s,
        reqwest::Method::POST,
        "/api/calls",
        "alice",
        Some(json!({"call_type": "audio"})),
    )
    .await;
    assert_eq!(plain["call"]["record"], false);
    a.leave().await;
    s.stop().await;
}

/// Webhooks: call.started, recording.completed and call.completed reach a local receiver as signed
/// JSON; a delivery the receiver refuses once is retried with the same delivery id; the log shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_retried_and_logged() {
    use axum::http::HeaderMap;
    use hmac::{Hmac, Mac};
    use std::sync::{Arc, Mutex};

    type Seen = Arc<Mutex<Vec<(HeaderMap, String)>>>;
    let seen: Seen = Arc::default();
    let failed_once = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let (seen, failed_once) = (seen.clone(), failed_once.clone());
            move |headers: HeaderMap, body: String| {
                let (seen, failed_once) = (seen.clone(), failed_once.clone());
                async move {
                    seen.lock().unwrap().push((headers, body));
                    // Refuse the very first delivery once.
                    if !failed_once.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    axum::http::StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let db = TestDb::sqlite();
    let s = TestServer::start_with(&db, |c| {
        c.webhooks.urls = vec![hook_url.clone()];
        c.webhooks.secret = "whsec-test".into();
    })
    .await;
    let (call, a, rec) = call_being_recorded(&s.http).await;
    send_tone(&a, 50).await;
    stop_recording(&s.http, &call).await;
    a.leave().await;

    // Wait for the three events (the refused first delivery is retried after ~1 s).
    let deadline = Instant::now() + Duration::from_secs(15);
    let delivered = |seen: &Seen| -> Vec<String> {
        let v = seen.lock().unwrap();
        let mut by_delivery: std::collections::HashMap<String, (String, usize)> =
            Default::default();
        for (h, _) in v.iter() {
            let id = h["x-parlor-delivery"].to_str().unwrap().to_string();
            let ev = h["x-parlor-event"].to_str().unwrap().to_string();
            by_delivery.entry(id).or_insert((ev, 0)).1 += 1;
        }
        let mut evs: Vec<String> = by_delivery.into_values().map(|(e, _)| e).collect();
        evs.sort();
        evs
    };
    loop {
        let evs = delivered(&seen);
        if evs == ["call.completed", "call.started", "recording.completed"]
            && seen.lock().unwrap().len() == 4
        {
            break;
        }
        assert!(Instant::now() < deadline, "webhooks seen: {evs:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let requests = seen.lock().unwrap().clone();
    // Every request is signed over "{timestamp}.{body}" with the configured secret.
    for (h, body) in &requests {
        let ts = h["x-parlor-timestamp"].to_str().unwrap();
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"whsec-test").unwrap();
        mac.update(format!("{ts}.{body}").as_bytes());
        let want: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            h["x-parlor-signature"].to_str().unwrap(),
            format!("sha256={want}")
        );
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["event"], h["x-parlor-event"].to_str().unwrap());
        assert!(v["id"].as_str().unwrap().starts_with("evt_"));
    }
    // The first delivery was refused and retried: same delivery id twice, the same body.
    let first_id = requests[0].0["x-parlor-delivery"].to_str().unwrap();
    let retries: Vec<&(HeaderMap, String)> = requests
        .iter()
        .filter(|(h, _)| h["x-parlor-delivery"].to_str().unwrap() == first_id)
        .collect();
    assert_eq!(retries.len(), 2);
    assert_eq!(retries[0].1, retries[1].1);
    assert_eq!(requests[0].0["x-parlor-event"], "call.started");
    let rec_ev = requests
        .iter()
        .find(|(h, _)| h["x-parlor-event"] == "recording.completed")
        .map(|(_, b)| serde_json::from_str::<Value>(b).unwrap())
        .unwrap();
    assert_eq!(rec_ev["data"]["recording_id"], rec.as_str());
    assert_eq!(rec_ev["data"]["call_id"], call.as_str());
    // The delivery log: all delivered, the refused one after 2 attempts with its 503 remembered.
    let log = s.handle.state.store.list_deliveries(10).await.unwrap();
    assert_eq!(log.len(), 3);
    assert!(log.iter().all(|d| d.status == "delivered"), "{log:?}");
    let first = log.iter().find(|d| d.id == first_id).unwrap();
    assert_eq!(first.attempts, 2);
    s.stop().await;
}
