//! `[realtime]`: model sessions, their WebSocket, the model catalogue and the providers' settings.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RealtimeConfig {
    /// Interval of `{"type":"heartbeat"}` on the session WebSocket (`connectionInfo.heartbeatInterval`).
    pub heartbeat_interval_ms: u64,
    /// Heartbeats in a row left without a `{"type":"pong"}` before the socket is closed.
    pub max_missed_pongs: u32,
    /// Reconnect attempts a client should make (`connectionInfo.reconnectAttempts`).
    pub reconnect_attempts: u32,
    /// Lifetime of a session's `authToken` (`connectionInfo.expiresAt`); resume mints a new one.
    pub token_ttl_secs: u64,
    /// A session WebSocket must send `{"type":"auth"}` within this time of opening.
    pub auth_timeout_ms: u64,
    /// An active session with no activity for this long reads `idle`.
    pub idle_after_secs: u64,
    /// `/api/realtime` requests per user per minute; beyond it `429 RATE_LIMIT_EXCEEDED`.
    pub rate_limit_per_minute: u32,
    /// Sessions a user may hold that are not completed or failed.
    pub max_sessions_per_user: usize,
    /// Largest `content` of a WebSocket message, in characters.
    pub max_message_chars: usize,
    /// Session WebSockets open at once.
    pub max_connections: usize,
    /// The model catalogue (`GET /api/realtime/models`). A model whose provider is not set up is
    /// listed `unavailable`.
    pub models: Vec<ModelConfig>,
    pub openai: OpenAiConfig,
    pub local: LocalConfig,
}

/// One model of the catalogue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// The id clients pass as `model`.
    pub id: String,
    pub name: String,
    /// `local`, `openai`, or `livekit-agent` (voice-assistant calls only: the call's room gets a
    /// LiveKit Agents dispatch for the agent named `provider_model`, see `crate::agents`).
    pub provider: String,
    /// The provider's own model name (empty: `id`).
    pub provider_model: String,
    pub description: String,
    /// `chat`, `completion` or `streaming`.
    #[serde(rename = "type")]
    pub kind: String,
    pub capabilities: Vec<String>,
    pub max_tokens: u32,
    pub context_length: u32,
    pub requests_per_minute: u32,
    /// Price per 1K input tokens.
    pub pricing_input: f64,
    /// Price per 1K output tokens.
    pub pricing_output: f64,
    pub currency: String,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            id: String::new(),
            name: String::new(),
            provider: "local".into(),
            provider_model: String::new(),
            description: String::new(),
            kind: "chat".into(),
            capabilities: vec!["chat".into(), "streaming".into()],
            max_tokens: 1024,
            context_length: 8192,
            requests_per_minute: 60,
            pricing_input: 0.0,
            pricing_output: 0.0,
            currency: "USD".into(),
        }
    }
}

impl ModelConfig {
    /// The name the provider knows the model by.
    pub fn provider_model(&self) -> &str {
        if self.provider_model.is_empty() {
            &self.id
        } else {
            &self.provider_model
        }
    }
}

/// The `openai` provider: the OpenAI Realtime API (GA protocol) over WebSocket, or any server that
/// speaks it (Azure OpenAI, compatible local servers).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiConfig {
    /// WebSocket URL; `?model=<provider_model>` is appended unless the URL already has `model=`.
    pub url: String,
    /// API key sent as `Authorization: Bearer`. Empty: the provider is unavailable (unless
    /// `api_key_env` names a set variable).
    pub api_key: String,
    /// Environment variable to read the key from when `api_key` is empty.
    pub api_key_env: String,
    /// Send the key as `api-key: <key>` (Azure) instead of `Authorization: Bearer`.
    pub azure_api_key_header: bool,
    /// Output voice.
    pub voice: String,
    /// Model transcribing the caller's audio (`audio.input.transcription`); empty: off (no
    /// input transcripts).
    pub input_transcription_model: String,
    pub connect_timeout_ms: u64,
}

/// The `local` provider: the built-in offline voice model (VAD → speech-to-text → rule-based
/// responder → text-to-speech), installed into the Parlor home by `scripts/setup`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LocalConfig {
    pub enabled: bool,
    /// Speech worker processes shared by all local conversations (each holds the STT and TTS
    /// models, ~350 MB).
    pub workers: usize,
    /// CPU threads each speech worker's speech-to-text may use.
    pub stt_threads: usize,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        RealtimeConfig {
            heartbeat_interval_ms: 30_000,
            max_missed_pongs: 2,
            reconnect_attempts: 3,
            token_ttl_secs: 3600,
            auth_timeout_ms: 10_000,
            idle_after_secs: 300,
            rate_limit_per_minute: 120,
            max_sessions_per_user: 20,
            max_message_chars: 4000,
            max_connections: 1000,
            models: vec![
                ModelConfig {
                    id: "parlor-local".into(),
                    name: "Parlor Local Voice".into(),
                    provider: "local".into(),
                    description: "Built-in offline voice model: whisper tiny.en speech-to-text, a \
                                  rule-based responder, Piper text-to-speech"
                        .into(),
                    capabilities: vec!["chat".into(), "streaming".into(), "audio".into()],
                    max_tokens: 256,
                    context_length: 4096,
                    requests_per_minute: 120,
                    ..ModelConfig::default()
                },
                ModelConfig {
                    id: "gpt-realtime".into(),
                    name: "GPT Realtime".into(),
                    provider: "openai".into(),
                    description: "OpenAI Realtime API (speech to speech)".into(),
                    capabilities: vec!["chat".into(), "streaming".into(), "audio".into()],
                    max_tokens: 4096,
                    context_length: 32_000,
                    requests_per_minute: 60,
                    pricing_input: 0.032,
                    pricing_output: 0.064,
                    ..ModelConfig::default()
                },
            ],
            openai: OpenAiConfig::default(),
            local: LocalConfig::default(),
        }
    }
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            url: "wss://api.openai.com/v1/realtime".into(),
            api_key: String::new(),
            api_key_env: "OPENAI_API_KEY".into(),
            azure_api_key_header: false,
            voice: "marin".into(),
            input_transcription_model: "gpt-4o-mini-transcribe".into(),
            connect_timeout_ms: 10_000,
        }
    }
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            enabled: true,
            workers: 1,
            stt_threads: 2,
        }
    }
}
