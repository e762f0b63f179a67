//! The voice assistant in an embedded call, against the in-repo fake OpenAI Realtime server (its
//! energy-based server VAD stands in for the model's): a real WebRTC caller (webrtc-rs, LiveKit
//! protocol) speaks Opus, the assistant joins with the caller, its reply audio arrives as an Opus
//! track paced at 20 ms; caller speech during the reply (barge-in) stops the assistant's audio
//! within 100 ms + one frame of the provider's `speech_started`, and the truncate position is what
//! the caller received; both turns land in the call's model session; hanging up ends the call.

mod common;
#[path = "common/lk.rs"]
mod lk;

use common::openai_fake::{FakeOptions, FakeServer, Pace};
use common::*;
use lk::{Client, Seen};
use parlor_signaling::protocol::proto;
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

async fn admin(http: &str, m: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut rb = reqwest::Client::new()
        .request(m, format!("{http}{path}"))
        .bearer_auth(admin_token());
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

/// An assistant on `model` and a key for ORIGIN (through the account API), an embed token for it,
/// and the caller connected with it, publishing audio: (the embed response's `data`, the caller).
async fn embedded_caller(s: &TestServer, model: &str) -> (Value, Client) {
    use reqwest::Method as M;
    let a = admin(
        &s.http,
        M::POST,
        "/api/v1/assistants",
        Some(json!({ "name": "Support", "model": model })),
    )
    .await;
    let k = admin(
        &s.http,
        M::POST,
        "/api/v1/public-keys",
        Some(json!({ "allowedOrigins": [ORIGIN] })),
    )
    .await;
    let v: Value = reqwest::Client::new()
        .post(format!("{}/api/v1/embed/token", s.http))
        .bearer_auth(k["data"]["key"].as_str().unwrap())
        .header("origin", ORIGIN)
        .json(&json!({ "assistantId": a["data"]["id"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut c = Client::connect(&s.ws, v["data"]["token"].as_str().unwrap(), true).await;
    c.publish_audio().await;
    c.wait_for(|e| {
        matches!(e, Seen::PublisherState(RTCPeerConnectionState::Connected)).then_some(())
    })
    .await;
    (v["data"].clone(), c)
}

/// 20 ms Opus frames of a loud tone (speech to the fake's VAD) or of silence.
struct Voice {
    enc: parlor_media::OpusEncoder,
    n: usize,
}

impl Voice {
    fn new() -> Voice {
        let enc = parlor_media::OpusEncoder::new(parlor_media::EncoderConfig {
            channels: 1,
            ..Default::default()
        })
        .unwrap();
        Voice { enc, n: 0 }
    }
    fn frame(&mut self, loud: bool) -> Vec<u8> {
        let pcm: Vec<i16> = (0..960)
            .map(|i| {
                let t = (self.n * 960 + i) as f64 / 48_000.0;
                if loud {
                    (12_000.0 * (2.0 * std::f64::consts::PI * 220.0 * t).sin()) as i16
                } else {
                    0
                }
            })
            .collect();
        self.n += 1;
        let mut out = [0u8; 1500];
        let len = self.enc.encode(&pcm, &mut out).unwrap();
        out[..len].to_vec()
    }
}

/// Send `frames` 20 ms frames, collecting the assistant packets that arrive meanwhile.
async fn speak(c: &mut Client, v: &mut Voice, loud: bool, frames: usize, got: &mut Vec<Instant>) {
    let mut next = tokio::time::Instant::now();
    for _ in 0..frames {
        c.send_rtp(v.frame(loud)).await;
        next += Duration::from_millis(20);
        drain(c, got, next).await;
    }
}

/// Collect assistant RTP packets (their arrival times) until `until`.
async fn drain(c: &mut Client, got: &mut Vec<Instant>, until: tokio::time::Instant) {
    loop {
        match tokio::time::timeout_at(until, c.seen.recv()).await {
            Ok(Some(Seen::Rtp { .. })) => got.push(Instant::now()),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_assistant_answers_is_interrupted_and_both_turns_are_stored() {
    let fake = FakeServer::start(FakeOptions {
        vad: true,
        pace: Pace::Fast, // like the real API: faster than real time; the assistant paces it
        chunks: 40,       // 4 s of reply audio
        chunk_samples: 2400,
        transcript: vec!["Two plus two ".into(), "is four.".into()],
        input_transcript: Some("what is two plus two".into()),
        ..Default::default()
    })
    .await;
    let db = TestDb::sqlite();
    let url = fake.url();
    let s = TestServer::start_with(&db, |c| {
        c.realtime.openai.url = url.clone();
        c.realtime.openai.api_key = "sk-test-fake".into();
    })
    .await;
    let (v, mut c) = embedded_caller(&s, "gpt-realtime").await;
    let call = v["callId"].as_str().unwrap().to_string();
    let session = v["sessionId"].as_str().unwrap().to_string();
    // The assistant joined with the caller.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.handle.state.assistants.is_running(&call) {
        assert!(Instant::now() < deadline, "no assistant in the call");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The caller asks (1 s of speech, then silence: the VAD ends the turn).
    let mut voice = Voice::new();
    let mut got = Vec::new();
    speak(&mut c, &mut voice, true, 50, &mut got).await;
    speak(&mut c, &mut voice, false, 40, &mut got).await;
    // The reply arrives as paced Opus: wait for 1 s of it.
    let deadline = Instant::now() + Duration::from_secs(15);
    while got.len() < 50 {
        assert!(
            Instant::now() < deadline,
            "assistant audio: {} packets",
            got.len()
        );
        speak(&mut c, &mut voice, false, 5, &mut got).await;
    }
    assert!(
        !fake.audio().is_empty(),
        "the caller's audio reached the model"
    );
    let first = got[0];
    let span = got[49].duration_since(first).as_millis();
    assert!(
        (700..1_400).contains(&span),
        "50 packets over {span} ms: paced, not a burst"
    );
    // Barge-in: the caller speaks over the reply.
    let before = got.len();
    speak(&mut c, &mut voice, true, 30, &mut got).await;
    speak(&mut c, &mut voice, false, 10, &mut got).await;
    let started = fake.sent_times("input_audio_buffer.speech_started");
    assert_eq!(
        started.len(),
        2,
        "speech started twice (question, interruption)"
    );
    let ss = started[1];
    eprintln!(
        "speech_started at {:?} and {:?} after the first reply packet; barge-in speech began after {} packets ({:?})",
        started[0].checked_duration_since(first), ss.checked_duration_since(first), before,
        got[before - 1].duration_since(first)
    );
    let last = *got
        .iter()
        .rev()
        .find(|t| **t < ss + Duration::from_secs(1))
        .unwrap();
    let after = last.saturating_duration_since(ss).as_millis();
    assert!(
        after <= 120,
        "assistant audio {after} ms after speech_started (bound: 100 ms + a frame)"
    );
    let heard = got.iter().filter(|t| **t <= ss).count();
    assert!(
        heard >= before,
        "the reply was playing when the caller spoke"
    );
    assert!(
        got.len() < 150,
        "the 4 s reply was cut: {} packets",
        got.len()
    );
    eprintln!(
        "barge-in: last assistant packet {after} ms after speech_started; {heard} packets heard"
    );
    // Truncate at what was heard (never more than was generated). The fake streamed the whole
    // reply at once, as the real API does, so its response was done: no `response.cancel` is due
    // (one is sent for a running response: tests/openai_provider).
    let trunc = fake.events_of("conversation.item.truncate");
    let t = trunc.last().expect("a truncate on barge-in");
    let end_ms = t["audio_end_ms"].as_u64().unwrap();
    let item = t["item_id"].as_str().unwrap();
    assert!(end_ms <= fake.generated_ms(item), "{end_ms} > generated");
    let heard_ms = heard as u64 * 20;
    assert!(
        end_ms.abs_diff(heard_ms) <= 100,
        "truncated at {end_ms} ms, the caller got {heard_ms} ms"
    );
    eprintln!("truncate: audio_end_ms {end_ms}, received {heard_ms} ms");
    // Both turns in the call's model session.
    let msgs = s
        .handle
        .state
        .store
        .recent_rt_messages(&session, 10)
        .await
        .unwrap();
    assert!(
        msgs.iter()
            .any(|m| m.role == "user" && m.content == "what is two plus two"),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.role == "assistant" && m.content == "Two plus two is four."),
        "{msgs:?}"
    );
    let m = s.metrics().await;
    assert!(m.contains("parlor_assistant_barge_ins_total 1"), "{m}");
    assert!(
        !m.contains("parlor_assistant_turn_latency_seconds_count 0"),
        "latency measured"
    );
    // Hanging up ends the call: the assistant leaves, the room empties.
    c.leave().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let c = s.handle.state.store.get_call(&call).await.unwrap();
        if c.is_over() {
            assert_eq!(c.status, "completed");
            break;
        }
        assert!(Instant::now() < deadline, "call never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!s.handle.state.assistants.is_running(&call));
    s.stop().await;
}

/// The model's connection drops mid-reply: the call ends with it — the caller is removed (told
/// why), the call completes with `endReason` `model_failed: …`, the session is `failed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_model_ends_the_call_with_the_reason() {
    use common::openai_fake::Fault;
    let fake = FakeServer::start(FakeOptions {
        vad: true,
        chunks: 40,
        fault: Some(Fault::CloseAfterChunks(5)),
        ..Default::default()
    })
    .await;
    let db = TestDb::sqlite();
    let url = fake.url();
    let s = TestServer::start_with(&db, |c| {
        c.realtime.openai.url = url.clone();
        c.realtime.openai.api_key = "sk-test-fake".into();
    })
    .await;
    let (v, mut c) = embedded_caller(&s, "gpt-realtime").await;
    let call = v["callId"].as_str().unwrap().to_string();
    let session = v["sessionId"].as_str().unwrap().to_string();
    let mut voice = Voice::new();
    let mut got = Vec::new();
    speak(&mut c, &mut voice, true, 50, &mut got).await;
    // Silence ends the turn; the model drops after 5 chunks of its reply: the server removes the
    // caller (keep sending silence while watching the signal channel for it).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut removed = None;
    while removed.is_none() && tokio::time::Instant::now() < deadline {
        c.send_rtp(voice.frame(false)).await;
        let tick = tokio::time::Instant::now() + Duration::from_millis(20);
        while let Ok(e) = tokio::time::timeout_at(tick, c.seen.recv()).await {
            match e {
                Some(Seen::Signal(proto::signal_response::Message::Leave(l))) => {
                    removed = Some(l.reason);
                    break;
                }
                Some(Seen::Closed) | None => {
                    removed = Some(-1);
                    break;
                }
                _ => {}
            }
        }
    }
    let Some(removed) = removed else {
        let ac = s
            .handle
            .state
            .store
            .get_assistant_call(&call)
            .await
            .unwrap()
            .unwrap();
        panic!("the caller was not removed: end reason {:?}", ac.end_reason);
    };
    assert_eq!(removed, proto::DisconnectReason::ParticipantRemoved as i32);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let cr = s.handle.state.store.get_call(&call).await.unwrap();
        if cr.is_over() {
            break;
        }
        assert!(Instant::now() < deadline, "call never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ac = s
        .handle
        .state
        .store
        .get_assistant_call(&call)
        .await
        .unwrap()
        .unwrap();
    let reason = ac.end_reason.unwrap_or_default();
    assert!(reason.starts_with("model_failed: "), "{reason}");
    let sess = s.handle.state.store.get_rt_session(&session).await.unwrap();
    assert_eq!(sess.status, "failed");
    s.stop().await;
}

/// Benchmark (not a timed test): turn latency through a room with the built-in offline model —
/// from the last voiced 20 ms frame of a spoken question (espeak-ng, Opus over WebRTC) to the first
/// assistant audio packet at the caller — over 20 utterances; prints p50/p95 and the server's
/// own histogram count. Run: `cargo test --test assistant_call -- --ignored --nocapture benchmark`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn benchmark_turn_latency_through_a_room_with_the_local_model() {
    let home = parlor::home::default_home(|k| std::env::var(k).ok());
    parlor::home::VoiceModels::load(&home).expect("voice models (scripts/setup)");
    let db = TestDb::sqlite();
    let s = TestServer::start_with(&db, |c| c.server.home = home.display().to_string()).await;
    let (v, mut c) = embedded_caller(&s, "parlor-local").await;
    // The question as 48 kHz PCM (espeak-ng → sox), then encoded frame by frame.
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("q.raw");
    let ok = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "espeak-ng --stdout 'what is two plus two' | sox -t wav - -r 48000 -b 16 -c 1 -e signed -t raw {}",
            raw.display()
        ))
        .status()
        .unwrap()
        .success();
    assert!(ok, "espeak-ng | sox");
    let pcm: Vec<i16> = std::fs::read(&raw)
        .unwrap()
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let mut enc = parlor_media::OpusEncoder::new(parlor_media::EncoderConfig {
        channels: 1,
        ..Default::default()
    })
    .unwrap();
    let mut frames = Vec::new();
    for f in pcm.chunks(960) {
        let mut frame = [0i16; 960];
        frame[..f.len()].copy_from_slice(f);
        let mut out = [0u8; 1500];
        let n = enc.encode(&frame, &mut out).unwrap();
        frames.push(out[..n].to_vec());
    }
    let mut voice = Voice::new();
    let mut latencies = Vec::new();
    for round in 0..20 {
        // The signal session's keepalive (this test client does not ping by itself; the server
        // drops a session silent for 20 s).
        c.send(proto::signal_request::Message::PingReq(proto::Ping {
            timestamp: now_unix() as i64 * 1000,
            rtt: 0,
        }))
        .await;
        // Quiet first (and drain the previous reply).
        let mut got = Vec::new();
        speak(&mut c, &mut voice, false, 150, &mut got).await;
        let mut next = tokio::time::Instant::now();
        for f in &frames {
            c.send_rtp(f.clone()).await;
            next += Duration::from_millis(20);
            tokio::time::sleep_until(next).await;
        }
        let spoke = Instant::now();
        // Silence until the first assistant packet.
        let first = loop {
            c.send_rtp(voice.frame(false)).await;
            next += Duration::from_millis(20);
            let mut hit = None;
            while let Ok(Some(e)) = tokio::time::timeout_at(next, c.seen.recv()).await {
                if matches!(e, Seen::Rtp { .. }) {
                    hit = Some(Instant::now());
                    break;
                }
            }
            if let Some(t) = hit {
                break t;
            }
            if spoke.elapsed() > Duration::from_secs(20) {
                let m = s.metrics().await;
                let lines: Vec<&str> = m
                    .lines()
                    .filter(|l| l.starts_with("parlor_assistant") && !l.contains("bucket"))
                    .collect();
                let call = v["callId"].as_str().unwrap();
                let in_room: Vec<String> = s
                    .handle
                    .state
                    .sfu
                    .participants(call)
                    .into_iter()
                    .map(|p| p.identity)
                    .collect();
                let status = s.handle.state.store.get_call(call).await.unwrap().status;
                panic!("round {round}: no reply; in room {in_room:?}, call {status}; metrics {lines:?}");
            }
        };
        let ms = first.duration_since(spoke).as_secs_f64() * 1000.0;
        eprintln!("round {round}: {ms:.0} ms");
        latencies.push(ms);
    }
    let mut sorted = latencies.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| sorted[((sorted.len() as f64 - 1.0) * p).round() as usize];
    let m = s.metrics().await;
    let count = m
        .lines()
        .find_map(|l| l.strip_prefix("parlor_assistant_turn_latency_seconds_count "))
        .unwrap_or("0")
        .to_string();
    println!(
        "turn latency through a room (end of question -> first assistant packet), {} turns: p50 {:.0} ms, p95 {:.0} ms, min {:.0}, max {:.0}; server histogram count {count}",
        sorted.len(),
        pct(0.5),
        pct(0.95),
        sorted[0],
        sorted[sorted.len() - 1]
    );
    s.stop().await;
}
