//! Barge-in: cancel and truncate at the played position, clamped; server VAD turns and interruptions.

use super::*;

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
    // Barge-in by the caller (the bridge), not by the server.
    let settings = SessionSettings {
        turn_detection: Some(TurnDetection {
            interrupt_response: false,
            ..TurnDetection::default()
        }),
        ..voice_settings()
    };
    let mut conv = start(&fake, settings).await;
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
    conv.input
        .send(Input::Audio(vec![5000; 480]))
        .await
        .unwrap();
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
async fn server_vad_ends_the_turn_and_the_server_creates_the_response() {
    let fake = FakeServer::start(FakeOptions {
        vad: true,
        input_transcript: Some("hello there".into()),
        ..FakeOptions::default()
    })
    .await;
    let settings = SessionSettings {
        turn_detection: Some(TurnDetection {
            silence_duration_ms: 200,
            ..TurnDetection::default()
        }),
        ..voice_settings()
    };
    let mut conv = start(&fake, settings).await;
    // 300 ms of speech, then 300 ms of silence, in 20 ms frames.
    for f in 0..30 {
        let amp = if f < 15 { 8000 } else { 0 };
        let frame: Vec<i16> = (0..480)
            .map(|i| if i % 2 == 0 { amp } else { -amp })
            .collect();
        conv.input.send(Input::Audio(frame)).await.unwrap();
    }
    let mut outs = vec![recv(&mut conv).await.unwrap()];
    outs.extend(until_done(&mut conv).await);
    let Output::SpeechStarted {
        item_id,
        audio_start_ms: 0,
    } = &outs[0]
    else {
        panic!("{:?}", outs[0])
    };
    assert_eq!(
        outs[1],
        Output::SpeechStopped {
            item_id: item_id.clone(),
            audio_end_ms: 500
        },
        "300 ms of speech + the 200 ms of silence that ended it"
    );
    assert_eq!(
        outs[2],
        Output::InputTranscript {
            item_id: item_id.clone(),
            text: "hello there".into()
        }
    );
    assert!(matches!(outs[3], Output::ResponseStarted { .. }));
    assert_eq!(audio_of(&outs), expected_reply(10 * 2400));
    assert_eq!(done_of(&outs).0, ResponseStatus::Completed);
    assert!(
        fake.events_of("response.create").is_empty(),
        "server-created"
    );
}

#[tokio::test]
async fn a_server_side_interruption_needs_only_the_truncate() {
    // interrupt_response: the server cancels the response itself when the caller speaks. The
    // bridge's own cancel then has nothing to stop: no error may surface.
    let fake = FakeServer::start(FakeOptions {
        pace: Pace::Realtime,
        chunks: 40,
        chunk_samples: 1200,
        vad: true,
        ..FakeOptions::default()
    })
    .await;
    let mut conv = start(&fake, voice_settings()).await;
    conv.input.send(Input::CreateResponse).await.unwrap();
    let mut playout = Playout::new();
    let mut deltas = 0;
    while deltas < 2 {
        if let Some(Output::AudioDelta { item_id, pcm, .. }) = recv(&mut conv).await {
            playout.played(&item_id, pcm.len());
            deltas += 1;
        }
    }
    conv.input
        .send(Input::Audio(vec![9000; 480]))
        .await
        .unwrap();
    let item = playout.item_id().unwrap().to_string();
    let mut outs = Vec::new();
    loop {
        let o = recv(&mut conv).await.unwrap();
        if matches!(o, Output::SpeechStarted { .. }) {
            for i in playout.barge_in() {
                conv.input.send(i).await.unwrap();
            }
        }
        let done = matches!(o, Output::ResponseDone { .. });
        outs.push(o);
        if done {
            break;
        }
    }
    assert_eq!(done_of(&outs).0, ResponseStatus::Cancelled);
    let rd = fake.sent_of("response.done");
    assert_eq!(
        rd[0]["response"]["status_details"]["reason"],
        "turn_detected"
    );
    let t = fake.wait_event("conversation.item.truncate").await;
    assert_eq!(
        (t["item_id"].as_str(), t["audio_end_ms"].as_u64()),
        (Some(item.as_str()), Some(100))
    );
    outs.extend(drain(&mut conv, 300).await);
    assert!(
        !outs.iter().any(|o| matches!(o, Output::Error { .. })),
        "{outs:?}"
    );
    assert_eq!(fake.sent_of("conversation.item.truncated").len(), 1);
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
