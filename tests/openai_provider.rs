//! The `openai` provider against the in-repo fake OpenAI Realtime server (`common::openai_fake`),
//! over real WebSockets on 127.0.0.1: the GA `session.update`, caller audio as base64 PCM16 at
//! 24 kHz, reply audio in order, usage, barge-in (cancel + truncate at the played position,
//! clamped), beta names, text turns, history replay, connection failures and faults.

mod common;

use base64::Engine;
use common::openai_fake::{fake_sample, FakeOptions, FakeServer, Fault, Pace};
use futures_util::{SinkExt, StreamExt};
use parlor::realtime::config::OpenAiConfig;
use parlor::realtime::openai::OpenAiProvider;
use parlor::realtime::playout::Playout;
use parlor::realtime::provider::{
    Availability, Conversation, HistoryItem, Input, Output, Provider, ProviderError,
    ResponseStatus, Role, SessionSettings, TurnDetection, Usage,
};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn config(fake: &FakeServer) -> OpenAiConfig {
    OpenAiConfig {
        url: fake.url(),
        api_key: FakeOptions::default().api_key,
        api_key_env: String::new(),
        connect_timeout_ms: 5000,
        ..OpenAiConfig::default()
    }
}

fn voice_settings() -> SessionSettings {
    SessionSettings {
        model: "gpt-realtime".into(),
        instructions: "Be brief.".into(),
        max_output_tokens: Some(300),
        audio_output: true,
        turn_detection: Some(TurnDetection::default()),
        ..SessionSettings::default()
    }
}

async fn start(fake: &FakeServer, settings: SessionSettings) -> Conversation {
    start_with(config(fake), settings, Vec::new()).await
}

async fn start_with(
    cfg: OpenAiConfig,
    settings: SessionSettings,
    history: Vec<HistoryItem>,
) -> Conversation {
    let mut conv = OpenAiProvider::new(&cfg)
        .start(settings, history)
        .await
        .expect("start");
    assert_eq!(recv(&mut conv).await, Some(Output::Ready));
    conv
}

/// The next output (`None`: the conversation closed); fails after 10 s.
async fn recv(conv: &mut Conversation) -> Option<Output> {
    tokio::time::timeout(Duration::from_secs(10), conv.output.recv())
        .await
        .expect("no output within 10 s")
}

/// Outputs up to and including the next `ResponseDone`.
async fn until_done(conv: &mut Conversation) -> Vec<Output> {
    let mut v = Vec::new();
    loop {
        let o = recv(conv).await.expect("closed before response.done");
        let done = matches!(o, Output::ResponseDone { .. });
        v.push(o);
        if done {
            return v;
        }
    }
}

fn audio_of(outs: &[Output]) -> Vec<i16> {
    outs.iter()
        .filter_map(|o| match o {
            Output::AudioDelta { pcm, .. } => Some(pcm.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn text_of(outs: &[Output]) -> String {
    outs.iter()
        .filter_map(|o| match o {
            Output::TextDelta { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn done_of(outs: &[Output]) -> (ResponseStatus, String, Usage) {
    match outs.last() {
        Some(Output::ResponseDone {
            status,
            text,
            usage,
            ..
        }) => (*status, text.clone(), *usage),
        other => panic!("not done: {other:?}"),
    }
}

fn scripted_usage() -> Usage {
    Usage {
        input_tokens: 120,
        output_tokens: 340,
        input_text_tokens: 20,
        input_audio_tokens: 100,
        cached_tokens: 64,
        output_text_tokens: 40,
        output_audio_tokens: 300,
    }
}

fn expected_reply(samples: usize) -> Vec<i16> {
    (0..samples).map(fake_sample).collect()
}

#[tokio::test]
async fn session_update_has_the_ga_shape() {
    let fake = FakeServer::start(FakeOptions::default()).await;
    let conv = start(&fake, voice_settings()).await;

    let req = &fake.requests()[0];
    assert_eq!(req.uri, "/v1/realtime?model=gpt-realtime");
    assert_eq!(req.header("authorization"), Some("Bearer sk-test-fake"));
    assert_eq!(req.header("openai-beta"), None, "GA needs no beta header");

    let ev = fake.wait_event("session.update").await;
    let s = &ev["session"];
    assert_eq!(s["type"], "realtime");
    assert_eq!(s["output_modalities"], json!(["audio"]));
    assert_eq!(s["instructions"], "Be brief.");
    assert_eq!(
        s["audio"]["input"]["format"],
        json!({"type": "audio/pcm", "rate": 24000})
    );
    assert_eq!(
        s["audio"]["input"]["turn_detection"],
        json!({"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
            "silence_duration_ms": 500, "create_response": true, "interrupt_response": true})
    );
    assert_eq!(
        s["audio"]["input"]["transcription"],
        json!({"model": "gpt-4o-mini-transcribe"})
    );
    assert_eq!(
        s["audio"]["output"]["format"],
        json!({"type": "audio/pcm", "rate": 24000})
    );
    assert_eq!(s["audio"]["output"]["voice"], "marin");
    assert_eq!(s["max_output_tokens"], 300);
    for beta in [
        "modalities",
        "voice",
        "input_audio_format",
        "output_audio_format",
        "turn_detection",
        "input_audio_transcription",
        "max_response_output_tokens",
    ] {
        assert!(s.get(beta).is_none(), "beta field `{beta}` sent: {s}");
    }
    assert_eq!(fake.sent_of("session.updated").len(), 1);

    // An update: text only, no turn detection (sent as null), another voice, no token cap.
    let mut conv = conv;
    conv.input
        .send(Input::Update(SessionSettings {
            voice: Some("cedar".into()),
            audio_output: false,
            turn_detection: None,
            max_output_tokens: None,
            ..voice_settings()
        }))
        .await
        .unwrap();
    assert_eq!(recv(&mut conv).await, Some(Output::Ready));
    let ev = fake.wait_events("session.update", 2).await.remove(1);
    let s = &ev["session"];
    assert_eq!(s["output_modalities"], json!(["text"]));
    assert!(s["audio"]["input"]
        .as_object()
        .unwrap()
        .contains_key("turn_detection"));
    assert_eq!(s["audio"]["input"]["turn_detection"], Value::Null);
    assert_eq!(s["audio"]["output"]["voice"], "cedar");
    assert_eq!(s["max_output_tokens"], "inf");
}

#[tokio::test]
async fn caller_audio_arrives_as_base64_pcm16_at_24k() {
    let fake = FakeServer::start(FakeOptions {
        vad: true,
        input_transcript: Some("what is two plus two".into()),
        ..FakeOptions::default()
    })
    .await;
    let mut conv = start(&fake, voice_settings()).await;
    // 50 frames of 20 ms (480 samples), covering the whole i16 range.
    let frames: Vec<Vec<i16>> = (0..50i32)
        .map(|f| {
            (0..480i32)
                .map(|i| ((f * 480 + i) * 1373 % 65536 - 32768) as i16)
                .collect()
        })
        .collect();
    for f in &frames {
        conv.input.send(Input::Audio(f.clone())).await.unwrap();
    }
    conv.input.send(Input::Audio(Vec::new())).await.unwrap(); // nothing to send
    conv.input.send(Input::CommitAudio).await.unwrap();
    conv.input.send(Input::ClearAudio).await.unwrap();
    fake.wait_event("input_audio_buffer.clear").await;

    let sent: Vec<i16> = frames.concat();
    assert_eq!(
        fake.audio(),
        sent,
        "the fake decoded exactly the samples sent"
    );
    let appends = fake.events_of("input_audio_buffer.append");
    assert_eq!(appends.len(), 50);
    let first = base64::engine::general_purpose::STANDARD
        .decode(appends[0]["audio"].as_str().unwrap())
        .unwrap();
    assert_eq!(first.len(), 960, "PCM16: two bytes a sample");
    assert_eq!(&first[..2], &frames[0][0].to_le_bytes(), "little-endian");
    let types = fake.event_types();
    assert_eq!(types[0], "session.update");
    assert_eq!(
        &types[types.len() - 2..],
        &["input_audio_buffer.commit", "input_audio_buffer.clear"]
    );
    let rate = &fake.events_of("session.update")[0]["session"]["audio"]["input"]["format"]["rate"];
    assert_eq!(rate, 24000);

    // Server VAD and input transcription map to outputs.
    let Some(Output::SpeechStarted {
        item_id,
        audio_start_ms,
    }) = recv(&mut conv).await
    else {
        panic!("no SpeechStarted")
    };
    assert_eq!(audio_start_ms, 0);
    let stopped = recv(&mut conv).await;
    assert_eq!(
        stopped,
        Some(Output::SpeechStopped {
            item_id: item_id.clone(),
            audio_end_ms: 1000
        })
    );
    assert_eq!(
        recv(&mut conv).await,
        Some(Output::InputTranscript {
            item_id,
            text: "what is two plus two".into()
        })
    );
}

#[tokio::test]
async fn reply_audio_comes_back_in_order_and_complete_with_usage() {
    let fake = FakeServer::start(FakeOptions::default()).await;
    let mut conv = start(&fake, voice_settings()).await;
    conv.input.send(Input::CreateResponse).await.unwrap();
    let outs = until_done(&mut conv).await;

    let Output::ResponseStarted { response_id } = &outs[0] else {
        panic!("first output {:?}", outs[0])
    };
    for o in &outs {
        if let Output::AudioDelta { response_id: r, .. }
        | Output::TextDelta { response_id: r, .. } = o
        {
            assert_eq!(r, response_id);
        }
    }
    assert_eq!(audio_of(&outs), expected_reply(10 * 2400));
    assert_eq!(text_of(&outs), "Hello from the fake.");
    let (status, text, usage) = done_of(&outs);
    assert_eq!(status, ResponseStatus::Completed);
    assert_eq!(text, "Hello from the fake.");
    assert_eq!(usage, scripted_usage());
    assert_eq!(usage.total(), 460);
    assert!(!outs.iter().any(|o| matches!(o, Output::Error { .. })));
}

#[tokio::test]
async fn barge_in_cancels_and_truncates_at_the_played_position() {
    // 2 s of reply in 50 ms chunks, paced in real time; the fake emulates server VAD and sends
    // three more chunks after the cancel arrives (in flight, as the real API does).
    let fake = FakeServer::start(FakeOptions {
        pace: Pace::Realtime,
        chunks: 40,
        chunk_samples: 1200,
        vad: true,
        deltas_after_cancel: 3,
        ..FakeOptions::default()
    })
    .await;
    let mut conv = start(&fake, voice_settings()).await;
    conv.input.send(Input::CreateResponse).await.unwrap();

    // Play three chunks (150 ms), then the caller speaks.
    let mut playout = Playout::new();
    let mut played = 0;
    let mut received = 0;
    let mut item = String::new();
    while played < 3 {
        if let Some(Output::AudioDelta { item_id, pcm, .. }) = recv(&mut conv).await {
            playout.played(&item_id, pcm.len());
            received += pcm.len();
            item = item_id;
            played += 1;
        }
    }
    conv.input.send(Input::Audio(vec![500; 480])).await.unwrap();
    loop {
        match recv(&mut conv).await.expect("open") {
            Output::SpeechStarted { .. } => break,
            Output::AudioDelta { pcm, .. } => received += pcm.len(), // arrived, not played
            Output::TextDelta { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    for i in playout.barge_in() {
        conv.input.send(i).await.unwrap();
    }
    let rest = until_done(&mut conv).await;
    let (status, _, usage) = done_of(&rest);
    assert_eq!(status, ResponseStatus::Cancelled);
    // Audio the fake sent after it got the cancel never comes out of the provider.
    received += audio_of(&rest).len();
    let at_cancel = fake.generated_at_cancel();
    assert_eq!(at_cancel.len(), 1);
    assert!(
        received <= at_cancel[0],
        "{received} samples came out, {} were sent before the cancel",
        at_cancel[0]
    );
    assert_eq!(
        fake.generated_ms(&item) as usize * 24,
        at_cancel[0] + 3 * 1200,
        "the fake sent 3 chunks after the cancel"
    );
    assert_eq!(usage, scripted_usage());

    assert_eq!(fake.events_of("response.cancel").len(), 1);
    let t = fake.wait_event("conversation.item.truncate").await;
    assert_eq!(t["item_id"], item.as_str());
    assert_eq!(t["content_index"], 0);
    assert_eq!(t["audio_end_ms"], 150, "what was played");
    assert!(fake.generated_ms(&item) >= 150);
    assert!(
        fake.generated_ms(&item) < 2000,
        "the fake stopped generating"
    );
    // The truncate was accepted (no error), and a cancel after the end is not sent.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fake.sent_of("conversation.item.truncated").len(), 1);
    assert!(
        fake.sent_of("error").is_empty(),
        "{:?}",
        fake.sent_of("error")
    );
    conv.input.send(Input::CancelResponse).await.unwrap();
    conv.input.send(Input::CommitAudio).await.unwrap();
    fake.wait_event("input_audio_buffer.commit").await;
    assert_eq!(fake.events_of("response.cancel").len(), 1);
}

#[tokio::test]
async fn a_truncate_beyond_the_audio_received_is_clamped() {
    let fake = FakeServer::start(FakeOptions {
        chunks: 5,
        ..FakeOptions::default()
    })
    .await;
    let mut conv = start(&fake, voice_settings()).await;
    conv.input.send(Input::CreateResponse).await.unwrap();
    let outs = until_done(&mut conv).await;
    let item = outs
        .iter()
        .find_map(|o| match o {
            Output::AudioDelta { item_id, .. } => Some(item_id.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(audio_of(&outs).len(), 5 * 2400);
    conv.input
        .send(Input::Truncate {
            item_id: item.clone(),
            audio_end_ms: 60_000,
        })
        .await
        .unwrap();
    let t = fake.wait_event("conversation.item.truncate").await;
    assert_eq!(t["audio_end_ms"], 500, "clamped to the 500 ms received");
    assert_eq!(fake.generated_ms(&item), 500);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fake.sent_of("conversation.item.truncated").len(), 1);
    assert!(fake.sent_of("error").is_empty());
    // A cancel with nothing running is not sent at all.
    conv.input.send(Input::CancelResponse).await.unwrap();
    conv.input.send(Input::ClearAudio).await.unwrap();
    fake.wait_event("input_audio_buffer.clear").await;
    assert!(fake.events_of("response.cancel").is_empty());
}

/// The fake must refuse what the real API refuses, or the clamp test above could not fail.
#[tokio::test]
async fn the_fake_refuses_a_truncate_beyond_its_audio_and_a_cancel_with_nothing_running() {
    let fake = FakeServer::start(FakeOptions {
        chunks: 2,
        ..FakeOptions::default()
    })
    .await;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let mut req = fake.url().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", "Bearer sk-test-fake".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::text(
        json!({"type": "response.create"}).to_string(),
    ))
    .await
    .unwrap();
    let mut item = None;
    loop {
        let Some(Ok(Message::Text(t))) = ws.next().await else {
            panic!("closed")
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        if v["type"] == "response.output_audio.delta" {
            item = v["item_id"].as_str().map(String::from);
        }
        if v["type"] == "response.done" {
            break;
        }
    }
    let item = item.unwrap();
    for ev in [
        json!({"type": "conversation.item.truncate", "item_id": item, "content_index": 0, "audio_end_ms": 201}),
        json!({"type": "response.cancel"}),
        json!({"type": "conversation.item.truncate", "item_id": item, "content_index": 0, "audio_end_ms": 200}),
    ] {
        ws.send(Message::text(ev.to_string())).await.unwrap();
    }
    let mut replies = Vec::new();
    while replies.len() < 3 {
        if let Some(Ok(Message::Text(t))) = ws.next().await {
            let v: Value = serde_json::from_str(&t).unwrap();
            replies.push(v);
        }
    }
    assert_eq!(replies[0]["type"], "error");
    assert_eq!(
        replies[0]["error"]["message"],
        "Audio content of 200ms is already shorter than 201ms"
    );
    assert_eq!(replies[1]["error"]["code"], "response_cancel_not_active");
    assert_eq!(replies[2]["type"], "conversation.item.truncated");
}

#[tokio::test]
async fn beta_event_names_are_accepted() {
    let fake = FakeServer::start(FakeOptions {
        beta_names: true,
        ..FakeOptions::default()
    })
    .await;
    let mut conv = start(&fake, voice_settings()).await;
    conv.input.send(Input::CreateResponse).await.unwrap();
    let outs = until_done(&mut conv).await;
    assert_eq!(fake.sent_of("response.audio.delta").len(), 10);
    assert_eq!(fake.sent_of("response.audio_transcript.delta").len(), 3);
    assert!(!fake.sent_of("conversation.item.created").is_empty());
    assert!(fake.sent_of("response.output_audio.delta").is_empty());
    assert_eq!(audio_of(&outs), expected_reply(10 * 2400));
    assert_eq!(text_of(&outs), "Hello from the fake.");
    assert_eq!(done_of(&outs).2, scripted_usage());
}

#[tokio::test]
async fn a_text_turn_sends_an_item_and_a_response_create() {
    let fake = FakeServer::start(FakeOptions::default()).await;
    let settings = SessionSettings {
        audio_output: false,
        turn_detection: None,
        ..voice_settings()
    };
    let mut conv = start(&fake, settings).await;
    conv.input
        .send(Input::Text("what is two plus two".into()))
        .await
        .unwrap();
    let outs = until_done(&mut conv).await;
    let types = fake.event_types();
    assert_eq!(
        types,
        [
            "session.update",
            "conversation.item.create",
            "response.create"
        ]
    );
    let item = &fake.events_of("conversation.item.create")[0]["item"];
    assert_eq!(
        item,
        &json!({"type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "what is two plus two"}]})
    );
    assert!(audio_of(&outs).is_empty(), "text-only session");
    assert_eq!(fake.sent_of("response.output_text.delta").len(), 3);
    let (status, text, usage) = done_of(&outs);
    assert_eq!(
        (status, text.as_str()),
        (ResponseStatus::Completed, "Hello from the fake.")
    );
    assert_eq!(usage, scripted_usage());

    // A server error is a non-fatal error output: two responses at once.
    let fake2 = FakeServer::start(FakeOptions {
        pace: Pace::Realtime,
        chunks: 20,
        ..FakeOptions::default()
    })
    .await;
    let mut conv = start(&fake2, voice_settings()).await;
    conv.input.send(Input::CreateResponse).await.unwrap();
    conv.input.send(Input::CreateResponse).await.unwrap();
    let err = loop {
        if let Some(o @ Output::Error { .. }) = recv(&mut conv).await {
            break o;
        }
    };
    assert_eq!(
        err,
        Output::Error {
            code: "conversation_already_has_active_response".into(),
            message: "Conversation already has an active response in progress.".into(),
            fatal: false
        }
    );
}

#[tokio::test]
async fn history_is_replayed_as_conversation_items() {
    let fake = FakeServer::start(FakeOptions::default()).await;
    let history = vec![
        HistoryItem {
            role: Role::User,
            text: "my name is Ada".into(),
        },
        HistoryItem {
            role: Role::Assistant,
            text: "Hello Ada.".into(),
        },
    ];
    let _conv = start_with(config(&fake), voice_settings(), history).await;
    let items = fake.wait_events("conversation.item.create", 2).await;
    assert_eq!(
        fake.event_types(),
        [
            "session.update",
            "conversation.item.create",
            "conversation.item.create"
        ]
    );
    assert_eq!(
        items[0]["item"],
        json!({"type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "my name is Ada"}]})
    );
    assert_eq!(
        items[1]["item"],
        json!({"type": "message", "role": "assistant",
            "content": [{"type": "output_text", "text": "Hello Ada."}]})
    );
}

#[tokio::test]
async fn a_wrong_key_is_a_connect_error_with_the_status() {
    let fake = FakeServer::start(FakeOptions::default()).await;
    let cfg = OpenAiConfig {
        api_key: "sk-wrong".into(),
        ..config(&fake)
    };
    let err = OpenAiProvider::new(&cfg)
        .start(voice_settings(), Vec::new())
        .await
        .unwrap_err();
    let ProviderError::Connect(msg) = err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("401"), "{msg}");
    assert!(msg.contains("invalid_api_key"), "{msg}");
    assert!(!msg.contains("sk-wrong"), "the key leaked: {msg}");
    assert!(!fake.requests()[0].accepted);
}

#[tokio::test]
async fn azure_sends_the_api_key_header_and_keeps_a_model_in_the_url() {
    let fake = FakeServer::start(FakeOptions {
        azure: true,
        ..FakeOptions::default()
    })
    .await;
    let cfg = OpenAiConfig {
        url: format!(
            "{}?api-version=2025-08-28&deployment=rt&model=my-deployment",
            fake.url()
        ),
        azure_api_key_header: true,
        ..config(&fake)
    };
    let _conv = start_with(cfg, voice_settings(), Vec::new()).await;
    let req = &fake.requests()[0];
    assert_eq!(
        req.uri,
        "/v1/realtime?api-version=2025-08-28&deployment=rt&model=my-deployment"
    );
    assert_eq!(req.header("api-key"), Some("sk-test-fake"));
    assert_eq!(req.header("authorization"), None);
}

#[tokio::test]
async fn an_unreachable_server_is_a_connect_error_within_the_timeout() {
    // Nothing listens.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = OpenAiConfig {
        url: format!("ws://127.0.0.1:{port}/v1/realtime"),
        api_key: "k".into(),
        connect_timeout_ms: 500,
        ..OpenAiConfig::default()
    };
    let t0 = Instant::now();
    let err = OpenAiProvider::new(&cfg)
        .start(voice_settings(), Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Connect(_)), "{err:?}");
    assert!(t0.elapsed() < Duration::from_secs(2));

    // Accepts TCP, never answers the upgrade.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let cfg = OpenAiConfig {
        url: format!("ws://{addr}/v1/realtime"),
        connect_timeout_ms: 300,
        ..cfg
    };
    let t0 = Instant::now();
    let err = OpenAiProvider::new(&cfg)
        .start(voice_settings(), Vec::new())
        .await
        .unwrap_err();
    let elapsed = t0.elapsed();
    let ProviderError::Connect(msg) = err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("300 ms"), "{msg}");
    assert!(
        msg.contains("?…") && !msg.contains("model="),
        "query redacted: {msg}"
    );
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
}

/// `wss://` builds the TLS client (rustls with its one crypto provider) without panicking; a peer
/// that is not a TLS server is a connect error.
#[tokio::test]
async fn a_wss_url_to_a_server_that_is_not_tls_is_a_connect_error() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let _srv = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let cfg = OpenAiConfig {
        url: format!("wss://localhost:{}/v1/realtime", addr.port()),
        api_key: "k".into(),
        connect_timeout_ms: 2000,
        ..OpenAiConfig::default()
    };
    let err = OpenAiProvider::new(&cfg)
        .start(voice_settings(), Vec::new())
        .await
        .unwrap_err();
    let ProviderError::Connect(msg) = err else {
        panic!("{err:?}")
    };
    assert!(!msg.contains("no session within"), "failed fast: {msg}");
    assert!(
        msg.contains("corrupt message"),
        "the TLS handshake ran: {msg}"
    );
}

#[tokio::test]
async fn junk_from_the_server_is_skipped() {
    let fake = FakeServer::start(FakeOptions {
        junk_before_response: true,
        ..FakeOptions::default()
    })
    .await;
    let mut conv = start(&fake, voice_settings()).await;
    for _ in 0..2 {
        conv.input.send(Input::CreateResponse).await.unwrap();
        let outs = until_done(&mut conv).await;
        assert!(
            outs.iter().all(|o| !matches!(o, Output::Error { .. })),
            "{outs:?}"
        );
        assert_eq!(audio_of(&outs), expected_reply(10 * 2400));
        assert_eq!(done_of(&outs).0, ResponseStatus::Completed);
    }
}

async fn fatal_mid_response(fault: Fault) {
    let fake = FakeServer::start(FakeOptions {
        fault: Some(fault),
        ..FakeOptions::default()
    })
    .await;
    let mut conv = start(&fake, voice_settings()).await;
    conv.input.send(Input::CreateResponse).await.unwrap();
    let mut audio = 0;
    let err = loop {
        match recv(&mut conv).await.expect("closed without an error") {
            Output::AudioDelta { pcm, .. } => audio += pcm.len(),
            e @ Output::Error { .. } => break e,
            Output::ResponseDone { .. } => panic!("the response completed"),
            _ => {}
        }
    };
    assert_eq!(audio, 3 * 2400, "the audio before the fault came through");
    let Output::Error { code, fatal, .. } = err else {
        unreachable!()
    };
    assert!(fatal);
    assert_eq!(code, "connection_lost");
    assert_eq!(
        recv(&mut conv).await,
        None,
        "the channel closes after a fatal error"
    );
}

#[tokio::test]
async fn a_connection_dropped_mid_response_is_a_fatal_error() {
    fatal_mid_response(Fault::CloseAfterChunks(3)).await;
}

#[tokio::test]
async fn a_corrupt_frame_mid_response_is_a_fatal_error() {
    fatal_mid_response(Fault::CorruptAfterChunks(3)).await;
}

#[tokio::test]
async fn without_a_key_the_provider_is_unavailable() {
    let cfg = OpenAiConfig {
        api_key: String::new(),
        api_key_env: "PARLOR_TEST_UNSET_OPENAI_KEY".into(),
        ..OpenAiConfig::default()
    };
    let p = OpenAiProvider::new(&cfg);
    assert_eq!(p.name(), "openai");
    let Availability::Unavailable { reason } = p.availability() else {
        panic!("available without a key")
    };
    assert!(reason.contains("PARLOR_TEST_UNSET_OPENAI_KEY"), "{reason}");
    let err = p.start(voice_settings(), Vec::new()).await.unwrap_err();
    assert!(matches!(err, ProviderError::Unavailable(_)), "{err:?}");

    let keyed = OpenAiProvider::new(&OpenAiConfig {
        api_key: "k".into(),
        ..cfg.clone()
    });
    assert_eq!(keyed.availability(), Availability::Available);

    let rt = parlor::realtime::config::RealtimeConfig {
        openai: cfg,
        ..Default::default()
    };
    let providers = parlor::realtime::build_providers(&rt, parlor::clock::system());
    assert!(matches!(
        providers.availability("openai"),
        Availability::Unavailable { .. }
    ));
}
