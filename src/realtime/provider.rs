//! The model-provider interface: one live model conversation, driven by events modelled on the OpenAI
//! Realtime API (GA) event set, so a bridge written against it works with any provider.
//!
//! A [`Provider`] starts a [`Conversation`]: a pair of bounded channels. The caller sends [`Input`]
//! (caller audio, text turns, response control, barge-in) and reads [`Output`] (speech
//! started/stopped, the caller's transcript, reply audio and transcript deltas, per-response usage,
//! errors). Audio in both directions is PCM16 mono at [`SAMPLE_RATE`] (24 kHz, OpenAI's native
//! rate): the room bridge resamples from and to Opus' 48 kHz, a provider resamples to whatever its
//! model needs. Outputs of one response arrive in order; the provider waits on a full output channel
//! (backpressure) rather than dropping reply audio.
//!
//! Barge-in is the caller's job, as with OpenAI over WebSocket: on `SpeechStarted` during playout
//! the bridge sends [`Input::CancelResponse`] and then [`Input::Truncate`] with the position the
//! caller actually heard. A provider never lets `audio_end_ms` exceed the audio it produced for
//! that item (it clamps), and treats a cancel with no response running as a no-op.

use std::future::Future;
use std::pin::Pin;
use tokio::sync::mpsc;

/// Sample rate of every PCM buffer crossing this interface (mono, signed 16-bit).
pub const SAMPLE_RATE: u32 = 24_000;

/// Capacity of each direction of a [`Conversation`]. 256 inputs = 5 s of 20 ms audio frames.
pub const CHANNEL_CAPACITY: usize = 256;

/// Server-side voice activity detection (OpenAI `server_vad`): the provider finds turns in the
/// appended audio itself. Without it the caller commits the audio buffer to end a turn.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnDetection {
    /// Speech probability above which a frame counts as speech (0..1).
    pub threshold: f32,
    /// Audio kept from before speech started.
    pub prefix_padding_ms: u32,
    /// Silence that ends a turn.
    pub silence_duration_ms: u32,
    /// Start a response when a turn ends.
    pub create_response: bool,
    /// Cancel the running response when the caller starts speaking.
    pub interrupt_response: bool,
}

impl Default for TurnDetection {
    fn default() -> Self {
        TurnDetection {
            threshold: 0.5,
            prefix_padding_ms: 300,
            silence_duration_ms: 500,
            create_response: true,
            interrupt_response: true,
        }
    }
}

/// What a conversation is configured with (`session.update`).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSettings {
    /// The provider's own model name (`gpt-realtime`, `parlor-local`).
    pub model: String,
    /// System prompt.
    pub instructions: String,
    pub temperature: f32,
    /// Cap on output tokens per response (`None`: the provider's default).
    pub max_output_tokens: Option<u32>,
    /// Provider voice name (`None`: the provider's default).
    pub voice: Option<String>,
    /// Reply with audio (and its transcript) when true, with text only when false.
    pub audio_output: bool,
    /// `None`: no server VAD; the caller sends [`Input::CommitAudio`] to end a turn.
    pub turn_detection: Option<TurnDetection>,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            model: String::new(),
            instructions: String::new(),
            temperature: 0.8,
            max_output_tokens: None,
            voice: None,
            audio_output: false,
            turn_detection: None,
        }
    }
}

/// A finished turn of an earlier conversation, replayed into a new one (session resume).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryItem {
    pub role: Role,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// Caller → provider (OpenAI client events).
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// `input_audio_buffer.append`: caller audio, PCM16 mono 24 kHz, any length.
    Audio(Vec<i16>),
    /// `input_audio_buffer.commit`: end the caller's turn (needed without turn detection).
    CommitAudio,
    /// `input_audio_buffer.clear`.
    ClearAudio,
    /// A typed user message (`conversation.item.create` with `input_text`), then `response.create`.
    Text(String),
    /// `response.create`.
    CreateResponse,
    /// A response that speaks `text` as it is (an assistant's greeting): `response.create` with
    /// instructions to say exactly that.
    Say(String),
    /// `response.cancel`: stop the running response (no-op when none runs).
    CancelResponse,
    /// `conversation.item.truncate`: the caller heard only `audio_end_ms` of `item_id`'s audio.
    Truncate { item_id: String, audio_end_ms: u32 },
    /// `session.update`.
    Update(SessionSettings),
}

/// How a response ended (`response.done` `response.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseStatus {
    Completed,
    Cancelled,
    Failed,
    Incomplete,
}

impl ResponseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseStatus::Completed => "completed",
            ResponseStatus::Cancelled => "cancelled",
            ResponseStatus::Failed => "failed",
            ResponseStatus::Incomplete => "incomplete",
        }
    }
}

/// Token usage of one response (`response.done` `usage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub input_text_tokens: u64,
    pub input_audio_tokens: u64,
    pub cached_tokens: u64,
    pub output_text_tokens: u64,
    pub output_audio_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

/// Provider → caller (OpenAI server events).
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// `session.created` / `session.updated`: settings are in effect.
    Ready,
    /// `input_audio_buffer.speech_started` (turn detection only). `audio_start_ms` counts from the
    /// first appended sample of the conversation.
    SpeechStarted {
        item_id: String,
        audio_start_ms: u32,
    },
    /// `input_audio_buffer.speech_stopped`.
    SpeechStopped { item_id: String, audio_end_ms: u32 },
    /// `conversation.item.input_audio_transcription.completed`: what the caller said.
    InputTranscript { item_id: String, text: String },
    /// `response.created`.
    ResponseStarted { response_id: String },
    /// `response.output_audio.delta`: reply audio, PCM16 mono 24 kHz, in order.
    AudioDelta {
        response_id: String,
        item_id: String,
        pcm: Vec<i16>,
    },
    /// `response.output_audio_transcript.delta` (audio replies) or `response.output_text.delta`.
    TextDelta {
        response_id: String,
        item_id: String,
        text: String,
    },
    /// `response.done`: `text` is the whole reply transcript.
    ResponseDone {
        response_id: String,
        status: ResponseStatus,
        text: String,
        usage: Usage,
    },
    /// `error`. `fatal`: the conversation is over (its channels close next).
    Error {
        code: String,
        message: String,
        fatal: bool,
    },
}

/// One live conversation. Dropping `input` ends it: the provider closes its connection and then
/// `output`.
#[derive(Debug)]
pub struct Conversation {
    pub input: mpsc::Sender<Input>,
    pub output: mpsc::Receiver<Output>,
}

impl Conversation {
    /// The two ends a provider implementation keeps: (receiver of inputs, sender of outputs).
    pub fn channel() -> (Conversation, mpsc::Receiver<Input>, mpsc::Sender<Output>) {
        let (in_tx, in_rx) = mpsc::channel(CHANNEL_CAPACITY);
        let (out_tx, out_rx) = mpsc::channel(CHANNEL_CAPACITY);
        (
            Conversation {
                input: in_tx,
                output: out_rx,
            },
            in_rx,
            out_tx,
        )
    }
}

/// Whether a provider can serve sessions, and if not, why (shown in `/api/realtime/models` and at
/// start-up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    Available,
    Unavailable { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider is not set up (no key, models not installed).
    #[error("provider not available: {0}")]
    Unavailable(String),
    /// Connecting to the provider failed.
    #[error("connection failed: {0}")]
    Connect(String),
    /// The provider refused the settings.
    #[error("rejected: {0}")]
    Rejected(String),
}

pub type StartFuture = Pin<Box<dyn Future<Output = Result<Conversation, ProviderError>> + Send>>;

/// A model provider (`openai`, `local`). Cheap to share; each [`Provider::start`] is one
/// conversation with its own connection or worker state.
pub trait Provider: Send + Sync + 'static {
    /// The provider id used in config (`provider = "openai"`).
    fn name(&self) -> &'static str;
    fn availability(&self) -> Availability;
    /// Whether conversations with audio in and out (voice-assistant calls) work; by default the
    /// same as [`Provider::availability`]. The local model answers text without its speech
    /// models, but no call.
    fn audio_availability(&self) -> Availability {
        self.availability()
    }
    /// Start a conversation configured with `settings`, seeded with `history` (earlier turns, oldest
    /// first). Resolves once the provider accepted the settings.
    fn start(&self, settings: SessionSettings, history: Vec<HistoryItem>) -> StartFuture;
}

/// Token count of a text for providers that report none (the local model): OpenAI's rule of thumb
/// of one token per four characters, at least one for non-empty text. Documented as an estimate.
pub fn estimate_tokens(text: &str) -> u64 {
    let chars = text.trim().chars().count() as u64;
    if chars == 0 {
        0
    } else {
        chars.div_ceil(4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_estimate() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("  "), 0);
        assert_eq!(estimate_tokens("hi"), 1);
        assert_eq!(estimate_tokens("what is two plus two"), 5);
    }

    #[tokio::test]
    async fn channel_pairs_connect() {
        let (mut conv, mut input, output) = Conversation::channel();
        conv.input.send(Input::CommitAudio).await.unwrap();
        assert_eq!(input.recv().await, Some(Input::CommitAudio));
        output.send(Output::Ready).await.unwrap();
        assert_eq!(conv.output.recv().await, Some(Output::Ready));
    }
}
