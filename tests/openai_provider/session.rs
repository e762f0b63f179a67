//! Session set-up, caller audio, replies, usage, beta names, text turns, history.

use super::*;

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
async fn a_committed_turn_can_be_answered_by_the_server() {
    // `respond_after_user_item`: the fake answers a commit as a server would with a response
    // policy of its own; the provider reports the server-created response like any other.
    let fake = FakeServer::start(FakeOptions {
        respond_after_user_item: true,
        vad: true,
        input_transcript: Some("what time is it".into()),
        ..FakeOptions::default()
    })
    .await;
    let settings = SessionSettings {
        turn_detection: None,
        ..voice_settings()
    };
    let mut conv = start(&fake, settings).await;
    conv.input
        .send(Input::Audio(vec![3000; 4800]))
        .await
        .unwrap();
    conv.input.send(Input::CommitAudio).await.unwrap();
    let outs = until_done(&mut conv).await;
    assert!(matches!(&outs[0], Output::InputTranscript { text, .. } if text == "what time is it"));
    assert!(
        !outs
            .iter()
            .any(|o| matches!(o, Output::SpeechStarted { .. })),
        "no VAD without turn detection"
    );
    assert_eq!(audio_of(&outs), expected_reply(10 * 2400));
    assert_eq!(
        fake.event_types(),
        [
            "session.update",
            "input_audio_buffer.append",
            "input_audio_buffer.commit"
        ]
    );
}
