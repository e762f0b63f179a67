//! One `openai` conversation's state machine, owned by its task: [`Input`] → client events,
//! server text frames → [`Output`]. It tracks the running response (so `response.cancel` is sent
//! only while one runs, and late deltas of a cancelled response are dropped), the reply text per
//! response (the `ResponseDone` text) and the audio received per reply item (the truncate clamp).
//! No I/O here: the task in `mod.rs` moves the events.

use super::wire::{self, ClientEvent, ParseError, ServerEvent};
use super::{decode_pcm, encode_pcm, session, Conf};
use crate::realtime::provider::{
    Input, Output, ResponseStatus, SessionSettings, Usage, SAMPLE_RATE,
};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Reply items whose received audio is remembered for clamping truncates.
const TRACKED_ITEMS: usize = 32;
/// Cancelled responses remembered (their late deltas are dropped).
const TRACKED_CANCELLED: usize = 16;

/// Warnings about bad server events: at most `burst` per window, the rest counted.
pub(super) struct LogLimiter {
    window: Duration,
    burst: u32,
    started: Instant,
    logged: u32,
    suppressed: u64,
}

impl LogLimiter {
    fn new() -> LogLimiter {
        LogLimiter {
            window: Duration::from_secs(10),
            burst: 5,
            started: Instant::now(),
            logged: 0,
            suppressed: 0,
        }
    }

    pub(super) fn warn(&mut self, what: &str, detail: &str) {
        let now = Instant::now();
        if now.duration_since(self.started) >= self.window {
            if self.suppressed > 0 {
                tracing::warn!(
                    suppressed = self.suppressed,
                    "more bad server events skipped"
                );
            }
            self.started = now;
            self.logged = 0;
            self.suppressed = 0;
        }
        if self.logged < self.burst {
            self.logged += 1;
            tracing::warn!(detail, "{what}");
        } else {
            self.suppressed += 1;
        }
    }
}

/// One conversation's state, owned by its task.
pub(super) struct State {
    settings: SessionSettings,
    conf: Arc<Conf>,
    /// The response the server says is running.
    active: Option<String>,
    /// `response.create` sent, `response.created` not seen yet.
    requested: u32,
    /// A cancel was sent before the requested response was created: that one is cancelled.
    cancel_next: bool,
    /// Responses cancelled by the caller: their late deltas are dropped.
    cancelled: Vec<String>,
    /// Reply text so far, per response.
    text: HashMap<String, String>,
    /// Audio samples received per reply item, most recent last.
    item_samples: VecDeque<(String, u64)>,
    pub(super) bad: LogLimiter,
}

impl State {
    pub(super) fn new(settings: SessionSettings, conf: Arc<Conf>) -> State {
        State {
            settings,
            conf,
            active: None,
            requested: 0,
            cancel_next: false,
            cancelled: Vec::new(),
            text: HashMap::new(),
            item_samples: VecDeque::new(),
            bad: LogLimiter::new(),
        }
    }

    fn add_samples(&mut self, item_id: &str, n: u64) {
        if let Some(e) = self.item_samples.iter_mut().find(|(id, _)| id == item_id) {
            e.1 += n;
            return;
        }
        if self.item_samples.len() == TRACKED_ITEMS {
            self.item_samples.pop_front();
        }
        self.item_samples.push_back((item_id.to_string(), n));
    }

    /// Milliseconds of audio received for `item_id` (rounded down).
    fn received_ms(&self, item_id: &str) -> u32 {
        let samples = self
            .item_samples
            .iter()
            .find(|(id, _)| id == item_id)
            .map(|(_, n)| *n)
            .unwrap_or(0);
        (samples * 1000 / SAMPLE_RATE as u64).min(u32::MAX as u64) as u32
    }

    fn is_cancelled(&self, response_id: &str) -> bool {
        self.cancelled.iter().any(|r| r == response_id)
    }

    /// The client events for one input (none: nothing to send).
    pub(super) fn client_events(&mut self, input: Input) -> Vec<ClientEvent> {
        match input {
            Input::Audio(pcm) => {
                if pcm.is_empty() {
                    return Vec::new();
                }
                vec![ClientEvent::InputAudioAppend {
                    audio: encode_pcm(&pcm),
                }]
            }
            Input::CommitAudio => vec![ClientEvent::InputAudioCommit],
            Input::ClearAudio => vec![ClientEvent::InputAudioClear],
            Input::Text(text) => {
                self.requested += 1;
                vec![
                    ClientEvent::ItemCreate {
                        item: wire::MessageItem::user_text(&text),
                    },
                    ClientEvent::ResponseCreate { response: None },
                ]
            }
            Input::CreateResponse => {
                self.requested += 1;
                vec![ClientEvent::ResponseCreate { response: None }]
            }
            Input::Say(text) => {
                self.requested += 1;
                vec![ClientEvent::ResponseCreate {
                    response: Some(wire::ResponseParams {
                        instructions: format!(
                            "Say exactly the following, word for word, and nothing else: {text}"
                        ),
                    }),
                }]
            }
            Input::CancelResponse => {
                if let Some(id) = self.active.take() {
                    if self.cancelled.len() == TRACKED_CANCELLED {
                        self.cancelled.remove(0);
                    }
                    self.cancelled.push(id);
                    vec![ClientEvent::ResponseCancel]
                } else if self.requested > 0 {
                    self.cancel_next = true;
                    vec![ClientEvent::ResponseCancel]
                } else {
                    tracing::debug!("cancel with no response running: not sent");
                    Vec::new()
                }
            }
            Input::Truncate {
                item_id,
                audio_end_ms,
            } => {
                let received = self.received_ms(&item_id);
                if audio_end_ms > received {
                    tracing::debug!(
                        item_id,
                        asked = audio_end_ms,
                        received,
                        "truncate clamped to the audio received"
                    );
                }
                vec![ClientEvent::ItemTruncate {
                    item_id,
                    content_index: 0,
                    audio_end_ms: audio_end_ms.min(received),
                }]
            }
            Input::Update(settings) => {
                let ev = ClientEvent::SessionUpdate {
                    session: session(&settings, &self.conf),
                };
                self.settings = settings;
                vec![ev]
            }
        }
    }

    /// The outputs for one server text frame.
    pub(super) fn outputs(&mut self, text: &str) -> Vec<Output> {
        let ev = match wire::parse_server_event(text) {
            Ok(ev) => ev,
            Err(e) => {
                let what = match e {
                    ParseError::Unknown(_) => "unknown server event skipped",
                    _ => "malformed server event skipped",
                };
                let detail = format!("{e}; {}", text.chars().take(120).collect::<String>());
                self.bad.warn(what, &detail);
                return Vec::new();
            }
        };
        match ev {
            ServerEvent::SessionCreated | ServerEvent::Ignored => Vec::new(),
            ServerEvent::SessionUpdated => vec![Output::Ready],
            ServerEvent::SpeechStarted {
                item_id,
                audio_start_ms,
            } => vec![Output::SpeechStarted {
                item_id,
                audio_start_ms,
            }],
            ServerEvent::SpeechStopped {
                item_id,
                audio_end_ms,
            } => vec![Output::SpeechStopped {
                item_id,
                audio_end_ms,
            }],
            ServerEvent::InputTranscript {
                item_id,
                transcript,
            } => vec![Output::InputTranscript {
                item_id,
                text: transcript,
            }],
            ServerEvent::ResponseCreated { response_id } => {
                self.requested = self.requested.saturating_sub(1);
                if std::mem::take(&mut self.cancel_next) {
                    self.cancelled.push(response_id.clone());
                } else {
                    self.active = Some(response_id.clone());
                }
                self.text.insert(response_id.clone(), String::new());
                vec![Output::ResponseStarted { response_id }]
            }
            ServerEvent::AudioDelta {
                response_id,
                item_id,
                delta,
            } => {
                let pcm = match decode_pcm(&delta) {
                    Some(p) => p,
                    None => {
                        self.bad
                            .warn("audio delta is not base64 PCM16: skipped", &item_id);
                        return Vec::new();
                    }
                };
                self.add_samples(&item_id, pcm.len() as u64);
                if self.is_cancelled(&response_id) || pcm.is_empty() {
                    return Vec::new();
                }
                vec![Output::AudioDelta {
                    response_id,
                    item_id,
                    pcm,
                }]
            }
            ServerEvent::TextDelta {
                response_id,
                item_id,
                delta,
            } => {
                if self.is_cancelled(&response_id) {
                    return Vec::new();
                }
                self.text
                    .entry(response_id.clone())
                    .or_default()
                    .push_str(&delta);
                vec![Output::TextDelta {
                    response_id,
                    item_id,
                    text: delta,
                }]
            }
            ServerEvent::ResponseDone(r) => {
                if self.active.as_deref() == Some(r.id.as_str()) {
                    self.active = None;
                }
                self.cancelled.retain(|c| c != &r.id);
                let status = match r.status.as_str() {
                    "completed" => ResponseStatus::Completed,
                    "cancelled" => ResponseStatus::Cancelled,
                    "incomplete" => ResponseStatus::Incomplete,
                    _ => ResponseStatus::Failed,
                };
                let mut out = Vec::new();
                if status == ResponseStatus::Failed {
                    let err = r.status_details.as_ref().and_then(|d| d.error.clone());
                    let code = err
                        .and_then(|e| e.code.or(e.kind))
                        .unwrap_or_else(|| "response_failed".into());
                    out.push(Output::Error {
                        message: format!("response {} ended `{}`", r.id, r.status),
                        code,
                        fatal: false,
                    });
                }
                let text = self.text.remove(&r.id).unwrap_or_default();
                out.push(Output::ResponseDone {
                    usage: r.usage.map(usage).unwrap_or_default(),
                    response_id: r.id,
                    status,
                    text,
                });
                out
            }
            ServerEvent::Error(e) => {
                let code = e.code.clone().unwrap_or_else(|| e.kind.clone());
                if code == "response_cancel_not_active" {
                    // The response ended while our cancel was on its way (or the one we asked
                    // for was refused): the no-op we promise.
                    tracing::debug!("cancel arrived with no response running");
                    self.cancel_next = false;
                    return Vec::new();
                }
                if code == "conversation_already_has_active_response" {
                    // Our `response.create` was refused: no response is coming for it.
                    self.requested = self.requested.saturating_sub(1);
                }
                tracing::info!(code, message = %e.message, "server error");
                vec![Output::Error {
                    code,
                    message: e.message,
                    fatal: false,
                }]
            }
        }
    }
}

fn usage(u: wire::WireUsage) -> Usage {
    Usage {
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
        input_text_tokens: u.input_token_details.text_tokens,
        input_audio_tokens: u.input_token_details.audio_tokens,
        cached_tokens: u.input_token_details.cached_tokens,
        output_text_tokens: u.output_token_details.text_tokens,
        output_audio_tokens: u.output_token_details.audio_tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf() -> Arc<Conf> {
        Arc::new(Conf {
            url: "ws://127.0.0.1:1/v1/realtime".into(),
            key: Some("k".into()),
            key_hint: String::new(),
            azure: false,
            voice: "marin".into(),
            transcription_model: String::new(),
            connect_timeout: Duration::from_secs(1),
        })
    }

    #[test]
    fn cancel_is_sent_only_while_a_response_runs_and_truncate_is_clamped() {
        let mut s = State::new(SessionSettings::default(), conf());
        assert!(s.client_events(Input::CancelResponse).is_empty());
        s.outputs(r#"{"type":"response.created","response":{"id":"r1"}}"#);
        let delta = format!(
            r#"{{"type":"response.output_audio.delta","response_id":"r1","item_id":"i1","delta":"{}"}}"#,
            encode_pcm(&[7; 2400])
        );
        assert_eq!(s.outputs(&delta).len(), 1);
        assert_eq!(s.client_events(Input::CancelResponse).len(), 1);
        // Late audio of the cancelled response is dropped but still counted.
        assert!(s.outputs(&delta).is_empty());
        let t = s.client_events(Input::Truncate {
            item_id: "i1".into(),
            audio_end_ms: 5000,
        });
        let v: serde_json::Value = serde_json::from_str(&t[0].to_json()).unwrap();
        assert_eq!(v["audio_end_ms"], 200);
        assert!(s.client_events(Input::CancelResponse).is_empty());
    }

    #[test]
    fn a_refused_response_create_does_not_cancel_the_next_response() {
        let mut s = State::new(SessionSettings::default(), conf());
        s.client_events(Input::CreateResponse);
        s.outputs(r#"{"type":"error","error":{"type":"invalid_request_error","code":"conversation_already_has_active_response","message":"busy"}}"#);
        // Nothing requested or running any more: a cancel is not sent.
        assert!(s.client_events(Input::CancelResponse).is_empty());
        // A cancel that raced the end of a response is refused; the next response plays.
        s.client_events(Input::CreateResponse);
        assert_eq!(s.client_events(Input::CancelResponse).len(), 1);
        let refused = s.outputs(r#"{"type":"error","error":{"type":"invalid_request_error","code":"response_cancel_not_active","message":"none"}}"#);
        assert!(refused.is_empty(), "swallowed: {refused:?}");
        s.outputs(r#"{"type":"response.created","response":{"id":"r2"}}"#);
        let d = r#"{"type":"response.output_text.delta","response_id":"r2","item_id":"i2","delta":"hi"}"#;
        assert_eq!(s.outputs(d).len(), 1);
    }
}
