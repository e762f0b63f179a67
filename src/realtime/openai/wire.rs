//! The OpenAI Realtime API (GA) wire format: serde types of the client events the `openai` provider
//! sends and the server events it reads, with the beta event names mapped onto the GA ones.
//!
//! Client events are built as typed structs and serialized; server events are parsed in two steps
//! ([`parse_server_event`]): the `type` is read first (so an unknown type is told apart from a
//! malformed known event), then the fields of the events the provider acts on. Fields the provider
//! does not use are ignored, so additive protocol changes never break parsing.

use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// Client events
// ---------------------------------------------------------------------------------------------

/// A client → server event.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type")]
pub enum ClientEvent {
    #[serde(rename = "session.update")]
    SessionUpdate { session: Session },
    #[serde(rename = "input_audio_buffer.append")]
    InputAudioAppend {
        /// Base64 PCM16 little-endian, mono, 24 kHz.
        audio: String,
    },
    #[serde(rename = "input_audio_buffer.commit")]
    InputAudioCommit,
    #[serde(rename = "input_audio_buffer.clear")]
    InputAudioClear,
    #[serde(rename = "conversation.item.create")]
    ItemCreate { item: MessageItem },
    #[serde(rename = "response.create")]
    ResponseCreate {
        #[serde(skip_serializing_if = "Option::is_none")]
        response: Option<ResponseParams>,
    },
    #[serde(rename = "response.cancel")]
    ResponseCancel,
    #[serde(rename = "conversation.item.truncate")]
    ItemTruncate {
        item_id: String,
        content_index: u32,
        audio_end_ms: u32,
    },
}

/// `response` of `response.create`: per-response instructions (a scripted line).
#[derive(Debug, Clone, Serialize)]
pub struct ResponseParams {
    pub instructions: String,
}

impl ClientEvent {
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail (string keys, no maps with non-string keys).
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// `session` of `session.update` (GA: nested, `type: "realtime"`).
#[derive(Debug, Clone, Serialize)]
pub struct Session {
    /// Always `realtime`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `["audio"]` (audio plus its transcript) or `["text"]`; never both (the API refuses it).
    pub output_modalities: Vec<&'static str>,
    pub instructions: String,
    pub audio: SessionAudio,
    /// An integer 1..4096, or `"inf"`.
    pub max_output_tokens: MaxTokens,
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum MaxTokens {
    Limit(u32),
    Inf(&'static str),
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionAudio {
    pub input: AudioInput,
    pub output: AudioOutput,
}

#[derive(Debug, Clone, Serialize)]
pub struct AudioInput {
    pub format: AudioFormat,
    /// Sent as `null` when off (the caller commits turns itself).
    pub turn_detection: Option<ServerVad>,
    /// Input transcription (`{"model": …}`); `null` turns it off.
    pub transcription: Option<Transcription>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AudioOutput {
    pub format: AudioFormat,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
}

/// `{"type": "audio/pcm", "rate": 24000}`: the only PCM format the API takes.
#[derive(Debug, Clone, Serialize)]
pub struct AudioFormat {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub rate: u32,
}

impl AudioFormat {
    pub fn pcm24k() -> AudioFormat {
        AudioFormat {
            kind: "audio/pcm",
            rate: crate::realtime::provider::SAMPLE_RATE,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerVad {
    /// Always `server_vad`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub threshold: f32,
    pub prefix_padding_ms: u32,
    pub silence_duration_ms: u32,
    pub create_response: bool,
    pub interrupt_response: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Transcription {
    pub model: String,
}

/// A `message` item (`conversation.item.create`).
#[derive(Debug, Clone, Serialize)]
pub struct MessageItem {
    /// Always `message`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `user` or `assistant`.
    pub role: &'static str,
    pub content: Vec<ContentPart>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContentPart {
    /// `input_text` (user) or `output_text` (assistant, GA; the beta said `text`).
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: String,
}

impl MessageItem {
    pub fn user_text(text: &str) -> MessageItem {
        MessageItem {
            kind: "message",
            role: "user",
            content: vec![ContentPart {
                kind: "input_text",
                text: text.to_string(),
            }],
        }
    }

    pub fn assistant_text(text: &str) -> MessageItem {
        MessageItem {
            kind: "message",
            role: "assistant",
            content: vec![ContentPart {
                kind: "output_text",
                text: text.to_string(),
            }],
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server events
// ---------------------------------------------------------------------------------------------

/// A server → client event the provider acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    SessionCreated,
    SessionUpdated,
    SpeechStarted {
        item_id: String,
        audio_start_ms: u32,
    },
    SpeechStopped {
        item_id: String,
        audio_end_ms: u32,
    },
    InputTranscript {
        item_id: String,
        transcript: String,
    },
    ResponseCreated {
        response_id: String,
    },
    /// `delta`: still base64 (decoded by the provider, which logs a bad one).
    AudioDelta {
        response_id: String,
        item_id: String,
        delta: String,
    },
    /// Audio transcript or text delta.
    TextDelta {
        response_id: String,
        item_id: String,
        delta: String,
    },
    ResponseDone(ResponseBody),
    Error(ErrorBody),
    /// A known event the provider has no use for (`conversation.item.added`, `rate_limits.updated`…).
    Ignored,
}

/// `response` of `response.created` / `response.done`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ResponseBody {
    pub id: String,
    pub status: String,
    pub status_details: Option<StatusDetails>,
    pub usage: Option<WireUsage>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct StatusDetails {
    /// `cancelled`: `turn_detected` | `client_cancelled`; `incomplete`: `max_output_tokens` | ….
    pub reason: Option<String>,
    pub error: Option<StatusError>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct StatusError {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub code: Option<String>,
}

/// `response.usage`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct WireUsage {
    pub total_tokens: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub input_token_details: InputTokenDetails,
    pub output_token_details: OutputTokenDetails,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct InputTokenDetails {
    pub text_tokens: u64,
    pub audio_tokens: u64,
    pub cached_tokens: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct OutputTokenDetails {
    pub text_tokens: u64,
    pub audio_tokens: u64,
}

/// `error` of an `error` event.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ErrorBody {
    #[serde(rename = "type")]
    pub kind: String,
    pub code: Option<String>,
    pub message: String,
    /// The client event that caused it, when the client sent an `event_id`.
    pub event_id: Option<String>,
}

/// Why a server message was not turned into a [`ServerEvent`].
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParseError {
    #[error("not a JSON object with a string `type`")]
    NotAnEvent,
    #[error("unknown event type `{0}`")]
    Unknown(String),
    #[error("malformed `{kind}` event: {reason}")]
    Malformed { kind: String, reason: String },
}

/// The GA name of a server event type: beta names (`response.audio.delta`,
/// `response.audio_transcript.delta`, `response.text.delta`, `conversation.item.created`, …) map to
/// their GA successors; every other name is returned unchanged.
pub fn ga_event_name(kind: &str) -> &str {
    match kind {
        "response.audio.delta" => "response.output_audio.delta",
        "response.audio.done" => "response.output_audio.done",
        "response.audio_transcript.delta" => "response.output_audio_transcript.delta",
        "response.audio_transcript.done" => "response.output_audio_transcript.done",
        "response.text.delta" => "response.output_text.delta",
        "response.text.done" => "response.output_text.done",
        "conversation.item.created" => "conversation.item.added",
        other => other,
    }
}

/// Server events that need no action (GA names).
const IGNORED: &[&str] = &[
    "conversation.created",
    "conversation.item.added",
    "conversation.item.done",
    "conversation.item.deleted",
    "conversation.item.retrieved",
    "conversation.item.truncated",
    "conversation.item.input_audio_transcription.delta",
    "conversation.item.input_audio_transcription.segment",
    "conversation.item.input_audio_transcription.failed",
    "input_audio_buffer.committed",
    "input_audio_buffer.cleared",
    "input_audio_buffer.timeout_triggered",
    "output_audio_buffer.started",
    "output_audio_buffer.stopped",
    "output_audio_buffer.cleared",
    "response.output_item.added",
    "response.output_item.done",
    "response.content_part.added",
    "response.content_part.done",
    "response.output_audio.done",
    "response.output_audio_transcript.done",
    "response.output_text.done",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "rate_limits.updated",
    "transcription_session.updated",
];

#[derive(Deserialize)]
struct SpeechStartedWire {
    item_id: String,
    audio_start_ms: u32,
}

#[derive(Deserialize)]
struct SpeechStoppedWire {
    item_id: String,
    audio_end_ms: u32,
}

#[derive(Deserialize)]
struct TranscriptWire {
    item_id: String,
    transcript: String,
}

#[derive(Deserialize)]
struct ResponseWire {
    response: ResponseBody,
}

#[derive(Deserialize)]
struct DeltaWire {
    response_id: String,
    item_id: String,
    delta: String,
}

#[derive(Deserialize)]
struct ErrorWire {
    error: ErrorBody,
}

/// Parse one text frame from the server.
pub fn parse_server_event(text: &str) -> Result<ServerEvent, ParseError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|_| ParseError::NotAnEvent)?;
    let kind = value
        .get("type")
        .and_then(|t| t.as_str())
        .ok_or(ParseError::NotAnEvent)?
        .to_string();
    let ga = ga_event_name(&kind);
    fn fields<T: serde::de::DeserializeOwned>(
        kind: &str,
        value: serde_json::Value,
    ) -> Result<T, ParseError> {
        serde_json::from_value(value).map_err(|e| ParseError::Malformed {
            kind: kind.to_string(),
            reason: e.to_string(),
        })
    }
    let ev = match ga {
        "session.created" => ServerEvent::SessionCreated,
        "session.updated" => ServerEvent::SessionUpdated,
        "input_audio_buffer.speech_started" => {
            let w: SpeechStartedWire = fields(&kind, value)?;
            ServerEvent::SpeechStarted {
                item_id: w.item_id,
                audio_start_ms: w.audio_start_ms,
            }
        }
        "input_audio_buffer.speech_stopped" => {
            let w: SpeechStoppedWire = fields(&kind, value)?;
            ServerEvent::SpeechStopped {
                item_id: w.item_id,
                audio_end_ms: w.audio_end_ms,
            }
        }
        "conversation.item.input_audio_transcription.completed" => {
            let w: TranscriptWire = fields(&kind, value)?;
            ServerEvent::InputTranscript {
                item_id: w.item_id,
                transcript: w.transcript,
            }
        }
        "response.created" => {
            let w: ResponseWire = fields(&kind, value)?;
            ServerEvent::ResponseCreated {
                response_id: w.response.id,
            }
        }
        "response.output_audio.delta" => {
            let w: DeltaWire = fields(&kind, value)?;
            ServerEvent::AudioDelta {
                response_id: w.response_id,
                item_id: w.item_id,
                delta: w.delta,
            }
        }
        "response.output_audio_transcript.delta" | "response.output_text.delta" => {
            let w: DeltaWire = fields(&kind, value)?;
            ServerEvent::TextDelta {
                response_id: w.response_id,
                item_id: w.item_id,
                delta: w.delta,
            }
        }
        "response.done" => {
            let w: ResponseWire = fields(&kind, value)?;
            ServerEvent::ResponseDone(w.response)
        }
        "error" => {
            let w: ErrorWire = fields(&kind, value)?;
            ServerEvent::Error(w.error)
        }
        other if IGNORED.contains(&other) => ServerEvent::Ignored,
        _ => return Err(ParseError::Unknown(kind)),
    };
    Ok(ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beta_names_map_to_ga() {
        let beta = r#"{"type":"response.audio.delta","event_id":"e","response_id":"r","item_id":"i","output_index":0,"content_index":0,"delta":"AAA="}"#;
        let ga = beta.replace("response.audio.delta", "response.output_audio.delta");
        assert_eq!(parse_server_event(beta), parse_server_event(&ga));
        assert!(matches!(
            parse_server_event(r#"{"type":"conversation.item.created","item":{}}"#),
            Ok(ServerEvent::Ignored)
        ));
        assert!(matches!(
            parse_server_event(
                r#"{"type":"response.text.delta","response_id":"r","item_id":"i","delta":"hi"}"#
            ),
            Ok(ServerEvent::TextDelta { .. })
        ));
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        assert_eq!(parse_server_event("garbage"), Err(ParseError::NotAnEvent));
        assert_eq!(parse_server_event("[1,2]"), Err(ParseError::NotAnEvent));
        assert_eq!(
            parse_server_event(r#"{"type":"x.y"}"#),
            Err(ParseError::Unknown("x.y".into()))
        );
        assert!(matches!(
            parse_server_event(r#"{"type":"response.output_audio.delta","delta":5}"#),
            Err(ParseError::Malformed { .. })
        ));
    }

    #[test]
    fn usage_reads_the_token_details() {
        let done = r#"{"type":"response.done","event_id":"e","response":{"id":"resp_1","object":"realtime.response","status":"completed","usage":{"total_tokens":30,"input_tokens":10,"output_tokens":20,"input_token_details":{"text_tokens":4,"audio_tokens":6,"cached_tokens":2,"cached_tokens_details":{"text_tokens":2}},"output_token_details":{"text_tokens":5,"audio_tokens":15}}}}"#;
        let Ok(ServerEvent::ResponseDone(r)) = parse_server_event(done) else {
            panic!("not parsed");
        };
        let u = r.usage.unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (10, 20));
        assert_eq!(u.input_token_details.cached_tokens, 2);
        assert_eq!(u.output_token_details.audio_tokens, 15);
    }

    #[test]
    fn client_events_have_the_ga_type_tags() {
        let t = ClientEvent::ItemTruncate {
            item_id: "i".into(),
            content_index: 0,
            audio_end_ms: 10,
        };
        let v: serde_json::Value = serde_json::from_str(&t.to_json()).unwrap();
        assert_eq!(v["type"], "conversation.item.truncate");
        assert_eq!(v["audio_end_ms"], 10);
        let c: serde_json::Value =
            serde_json::from_str(&ClientEvent::ResponseCancel.to_json()).unwrap();
        assert_eq!(c, serde_json::json!({"type": "response.cancel"}));
    }
}
