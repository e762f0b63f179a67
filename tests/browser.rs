//! Browser interop: headless Debian chromium runs the unmodified `livekit-client` SDK (npm, pinned in
//! tests/browser/package.json) against Parlor: two pages connect, publish microphone (and camera), each
//! page's TrackSubscribed fires and getStats() shows inbound audio bytes (and decoded video frames) grow;
//! reliable data packets reach the other page with the sender's identity; active speakers are announced;
//! with video, one subscriber's switch to the LOW simulcast layer changes only its own stream; page A's
//! mute and unmute reach page B, and B sees A leave (tests/common/pages.rs). The same pages in Firefox
//! ESR: tests/browser_firefox.rs.

mod common;
use common::pages::{self, Browser, Mode};
use common::*;
use std::path::Path;
use std::process::Command;

/// Node + chromium + npm packages present? Under CI a missing piece is a failure, else a skip.
fn browser_ready() -> bool {
    pages::browser_ready(Browser::Chromium)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_client_pages_exchange_audio() {
    pages::run_pages(Browser::Chromium, Mode::Audio, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_client_pages_exchange_audio_and_video() {
    pages::run_pages(Browser::Chromium, Mode::Video, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_client_pages_over_ice_tcp_when_udp_is_blocked() {
    pages::run_pages(Browser::Chromium, Mode::TcpOnly, None).await;
}

/// Run `tests/browser/<script>` with `args`; its last stdout line is a JSON result.
async fn node_json(
    script: &str,
    args: &[&str],
    env: &[(&str, &std::ffi::OsStr)],
) -> (bool, serde_json::Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(script).args(args).current_dir(&dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(150), cmd.output())
        .await
        .expect("browser run timed out")
        .expect("node did not start");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tail: String = stdout
        .chars()
        .skip(stdout.chars().count().saturating_sub(3000))
        .collect();
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}"))
        .unwrap_or_else(|_| {
            panic!(
                "no JSON from {script}: {tail} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    // A recording (base64) is too long to print.
    let mut shown = v.clone();
    if shown.get("recording").is_some() {
        shown["recording"] = serde_json::json!("…");
    }
    println!("{shown}");
    (out.status.success(), v)
}

/// An assistant of the test key's account on `model` at `price_micros` per minute, and a public
/// key allowed for the server's own origin (so its `/widget` page may embed it).
async fn assistant_and_key(
    s: &TestServer,
    model: &str,
    price_micros: i64,
) -> (
    parlor::store::AssistantRecord,
    parlor::store::PublicKeyRecord,
) {
    let state = &s.handle.state;
    let now = state.clock.unix_ms();
    let mut a = parlor::embed::manage::new_assistant(common::KEY, now);
    a.name = "Support".into();
    a.model = model.into();
    a.price_per_minute_micros = price_micros;
    state
        .store
        .ensure_account(common::KEY, "USD", now)
        .await
        .unwrap();
    state.store.insert_assistant(&a).await.unwrap();
    let key = parlor::store::PublicKeyRecord {
        key: parlor::embed::new_public_key(false),
        account_id: common::KEY.into(),
        name: "test".into(),
        allowed_origins: vec![s.http.clone()],
        created_at: now,
        revoked_at: None,
    };
    state.store.insert_public_key(&key).await.unwrap();
    (a, key)
}

/// The voice widget in headless chromium, on a dev-mode server: /widget's call button fetches an
/// embed token for the demo assistant, connects with the SDK served by Parlor, shows real
/// microphone levels, and hanging up (room.disconnect()) completes the call on the server. A page
/// with an unknown key shows the seed's UNAUTHORIZED message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_calls_through_the_embed_token_and_hang_up_completes_the_call() {
    if !browser_ready() {
        return;
    }
    let db = TestDb::sqlite();
    let s = TestServer::start_with(&db, |c| c.keys.clear()).await;
    let (ok, v) = node_json("widget.mjs", &[&s.http], &[]).await;
    assert!(ok && v["ok"] == true, "widget run failed: {v}");
    let call = v["checks"]["callId"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let c = s.handle.state.store.get_call(&call).await.unwrap();
        if c.is_over() {
            assert_eq!(c.status, "completed", "the caller connected: {c:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "call never ended: {c:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let ac = s
        .handle
        .state
        .store
        .get_assistant_call(&call)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ac.cost_micros,
        Some(0),
        "the demo assistant is free; finalized"
    );
    assert_eq!(ac.end_reason.as_deref(), Some("caller_hung_up"));
    let (ok, v) = node_json("widget.mjs", &[&s.http, "bad-key"], &[]).await;
    assert!(ok && v["ok"] == true, "bad-key run failed: {v}");
    s.stop().await;
}

/// espeak-ng speaks `text` into a 48 kHz WAV with silence around it (the fake microphone's file).
/// None (skip) when espeak-ng or sox is missing outside CI; under CI that is a failure.
pub fn spoken_wav(text: &str, dir: &Path) -> Option<std::path::PathBuf> {
    let raw = dir.join("raw.wav");
    let out = dir.join("question.wav");
    let ok = Command::new("espeak-ng")
        .arg("-w")
        .arg(&raw)
        .arg(text)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("sox")
            .arg(&raw)
            .args(["-r", "48000", "-b", "16", "-c", "1"])
            .arg(&out)
            .args(["pad", "0.5", "6"])
            .status()
            .is_ok_and(|s| s.success());
    match ok {
        true => Some(out),
        false if std::env::var_os("CI").is_some() => panic!("espeak-ng and sox are required"),
        false => {
            eprintln!("SKIP: espeak-ng or sox missing");
            None
        }
    }
}

/// The seed's basic flow in headless chromium, verbatim through the widget, against the in-repo
/// fake OpenAI Realtime server (no key, no internet): the fake microphone plays an espeak-ng
/// question, the fake's VAD ends the turn, the assistant's audio track arrives with real levels,
/// the caption of its reply arrives as an `lk.transcription` text stream, hang-up completes the
/// call and the session history holds both turns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_talks_to_an_assistant_on_the_openai_fake() {
    use common::openai_fake::{FakeOptions, FakeServer};
    if !browser_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(wav) = spoken_wav("what is two plus two", dir.path()) else {
        return;
    };
    let fake = FakeServer::start(FakeOptions {
        vad: true,
        vad_threshold: 500,
        chunks: 20,
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
    let state = &s.handle.state;
    let (a, key) = assistant_and_key(&s, "gpt-realtime", 0).await;
    let args = [s.http.as_str(), key.key.as_str(), a.id.as_str(), "is four"];
    let (ok, v) = node_json("assistant.mjs", &args, &[("FAKE_AUDIO", wav.as_os_str())]).await;
    assert!(ok && v["ok"] == true, "assistant run failed: {v}");
    let call = v["checks"]["callId"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !state.store.get_call(&call).await.unwrap().is_over() {
        assert!(std::time::Instant::now() < deadline, "call never ended");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let ac = state
        .store
        .get_assistant_call(&call)
        .await
        .unwrap()
        .unwrap();
    let sid = ac.model_session_id.unwrap();
    let msgs = state.store.recent_rt_messages(&sid, 10).await.unwrap();
    assert!(
        msgs.iter()
            .any(|m| m.role == "user" && m.content.contains("two plus two")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.role == "assistant" && m.content.contains("four")),
        "{msgs:?}"
    );
    assert!(
        !fake.audio().is_empty(),
        "the browser's microphone reached the model"
    );
    s.stop().await;
}

/// The seed's basic flow through the widget with the built-in offline model, as acceptance asks:
/// the fake microphone asks "what is two plus two" (espeak-ng), the assistant's audio is recorded
/// in the page and transcribed by whisper (it says "four"), captions arrive; after hang-up the call
/// is completed with a duration, its cost is charged once, the session history holds both turns and
/// a local receiver got a correctly signed `call.completed` carrying the cost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_talks_to_the_local_model_and_the_answer_is_heard_in_the_page() {
    if !browser_ready() {
        return;
    }
    let home = parlor::home::default_home(|k| std::env::var(k).ok());
    if let Err(why) = parlor::home::VoiceModels::load(&home) {
        if std::env::var_os("CI").is_some() {
            panic!("voice models: {why} (run scripts/setup)");
        }
        eprintln!("SKIP: voice models: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(wav) = spoken_wav("what is two plus two", dir.path()) else {
        return;
    };
    let hooks = common::webhooks::Receiver::start().await;
    let db = TestDb::sqlite();
    let s = TestServer::start_with(&db, |c| {
        c.server.home = home.display().to_string();
        c.webhooks.urls = vec![hooks.url.clone()];
        c.webhooks.secret = "whsec-test".into();
    })
    .await;
    let state = &s.handle.state;
    let (a, key) = assistant_and_key(&s, "parlor-local", 600_000).await;
    let args = [s.http.as_str(), key.key.as_str(), a.id.as_str(), "four"];
    let env = [
        ("FAKE_AUDIO", wav.as_os_str()),
        ("RECORD_MS", std::ffi::OsStr::new("4000")),
    ];
    let (ok, v) = node_json("assistant.mjs", &args, &env).await;
    assert!(
        ok && v["ok"] == true,
        "assistant run failed (recording elided above)"
    );
    if v["checks"]["hangClicks"].as_u64().unwrap_or(0) > 1 {
        eprintln!(
            "WARNING: the widget needed {} hang-up presses (see tests/browser/assistant.mjs)",
            v["checks"]["hangClicks"]
        );
    }
    // What the page played, transcribed by whisper.
    use base64::Engine;
    let webm = base64::engine::general_purpose::STANDARD
        .decode(v["recording"].as_str().expect("a recording"))
        .unwrap();
    let rec = dir.path().join("heard.webm");
    std::fs::write(&rec, &webm).unwrap();
    let pcm = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&rec)
        .args(["-ar", "16000", "-ac", "1", "-f", "s16le", "-"])
        .output()
        .unwrap();
    assert!(
        pcm.status.success(),
        "{}",
        String::from_utf8_lossy(&pcm.stderr)
    );
    let samples: Vec<i16> = pcm
        .stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let provider = parlor::realtime::local::LocalProvider::new(
        &Default::default(),
        &home,
        parlor::clock::system(),
    );
    let heard = provider
        .speech()
        .unwrap()
        .transcribe(samples)
        .await
        .unwrap();
    println!("the page heard: {heard:?}");
    assert!(
        heard.to_lowercase().contains("four") || heard.contains('4'),
        "the page heard {heard:?}"
    );
    // The call: completed, charged once, both turns stored, a signed call.completed.
    let call = v["checks"]["callId"].as_str().unwrap().to_string();
    let body = hooks.signed_event("call.completed", "whsec-test").await;
    let d = &body["data"];
    assert_eq!(
        (d["id"].as_str(), d["status"].as_str()),
        (Some(call.as_str()), Some("completed"))
    );
    let ms = d["duration_ms"].as_i64().unwrap();
    assert!(ms > 5_000, "{ms}");
    let cost = d["assistant"]["cost"].as_f64().unwrap();
    assert!(
        cost >= ms as f64 * 0.6 / 60_000.0 - 1e-6,
        "{cost} for {ms} ms"
    );
    assert_eq!(d["assistant"]["charged"], d["assistant"]["cost"]);
    let ledger = state.store.ledger(common::KEY, 10).await.unwrap();
    assert_eq!(
        ledger
            .iter()
            .filter(|e| e.call_id.as_deref() == Some(&call))
            .count(),
        1
    );
    let sid = d["assistant"]["sessionId"].as_str().unwrap();
    let msgs = state.store.recent_rt_messages(sid, 20).await.unwrap();
    // Whisper writes numbers as it likes ("What is 2 plus 2?", and through the browser's audio
    // processing sometimes "What is too plus too?", which the responder reads as two plus two).
    let said = |m: &parlor::store::RtMessageRecord, words: &[&str]| {
        let c = m.content.to_lowercase();
        words.iter().any(|w| c.contains(w))
    };
    assert!(
        msgs.iter()
            .any(|m| m.role == "user"
                && said(m, &["two plus two", "2 plus 2", "2 + 2", "too plus too"])),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.role == "assistant" && said(m, &["four"])),
        "{msgs:?}"
    );
    s.stop().await;
}
