//! The `openai` provider against the in-repo fake OpenAI Realtime server (`common::openai_fake`),
//! over real WebSockets on 127.0.0.1: the GA `session.update`, caller audio as base64 PCM16 at
//! 24 kHz, reply audio in order, usage, barge-in (cancel + truncate at the played position,
//! clamped), beta names, text turns, history replay, connection failures and faults.

#[path = "../common/mod.rs"]
mod common;

mod barge_in;
mod connect;
mod session;

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

/// Outputs arriving within `ms`.
async fn drain(conv: &mut Conversation, ms: u64) -> Vec<Output> {
    let mut v = Vec::new();
    let end = tokio::time::Instant::now() + Duration::from_millis(ms);
    while let Ok(Some(o)) = tokio::time::timeout_at(end, conv.output.recv()).await {
        v.push(o);
    }
    v
}
