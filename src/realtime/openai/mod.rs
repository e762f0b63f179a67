//! The `openai` provider: the OpenAI Realtime API (GA protocol) over WebSocket, or any server that
//! speaks it (Azure OpenAI, compatible local servers), configured by `[realtime.openai]`.
//!
//! [`OpenAiProvider::start`] connects (`Authorization: Bearer`, or `api-key:` for Azure;
//! `?model=` appended), waits for `session.created`, sends a GA `session.update`, waits for
//! `session.updated`, replays the history as conversation items, then hands the socket to one task
//! per conversation ([`run`]). That task owns the conversation's state and maps [`Input`] to client
//! events and server events to [`Output`] (see `docs/PROVIDERS.md` for the table). Beta event names
//! are accepted on input ([`wire::ga_event_name`]). Unknown or malformed server events are logged
//! (rate-limited) and skipped; losing the connection ends the conversation with a fatal error.
//!
//! Barge-in: `response.cancel` is sent only while a response is running (or requested), audio and
//! text deltas that arrive for a cancelled response are dropped, and `conversation.item.truncate`'s
//! `audio_end_ms` is clamped to the audio received for that item.

pub mod wire;

use crate::realtime::config::OpenAiConfig;
use crate::realtime::provider::{
    Availability, Conversation, HistoryItem, Input, Output, Provider, ProviderError,
    ResponseStatus, Role, SessionSettings, StartFuture, Usage, SAMPLE_RATE,
};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::Instrument;
use wire::{ClientEvent, ParseError, ServerEvent};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Reply items whose received audio is remembered for clamping truncates.
const TRACKED_ITEMS: usize = 32;

/// The provider's settings, resolved once at construction (the key is read from the environment
/// here, not per conversation).
#[derive(Clone)]
struct Conf {
    url: String,
    key: Option<String>,
    key_hint: String,
    azure: bool,
    voice: String,
    transcription_model: String,
    connect_timeout: Duration,
}

pub struct OpenAiProvider {
    conf: Arc<Conf>,
}

impl OpenAiProvider {
    pub fn new(config: &OpenAiConfig) -> OpenAiProvider {
        let key = if !config.api_key.is_empty() {
            Some(config.api_key.clone())
        } else if !config.api_key_env.is_empty() {
            std::env::var(&config.api_key_env)
                .ok()
                .filter(|k| !k.trim().is_empty())
        } else {
            None
        };
        let key_hint = if config.api_key_env.is_empty() {
            "no API key: set [realtime.openai] api_key".to_string()
        } else {
            format!(
                "no API key: set [realtime.openai] api_key or the environment variable {}",
                config.api_key_env
            )
        };
        OpenAiProvider {
            conf: Arc::new(Conf {
                url: config.url.clone(),
                key,
                key_hint,
                azure: config.azure_api_key_header,
                voice: config.voice.clone(),
                transcription_model: config.input_transcription_model.clone(),
                connect_timeout: Duration::from_millis(config.connect_timeout_ms.max(1)),
            }),
        }
    }
}

impl Provider for OpenAiProvider {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn availability(&self) -> Availability {
        match self.conf.key {
            Some(_) => Availability::Available,
            None => Availability::Unavailable {
                reason: self.conf.key_hint.clone(),
            },
        }
    }

    fn start(&self, settings: SessionSettings, history: Vec<HistoryItem>) -> StartFuture {
        let conf = self.conf.clone();
        Box::pin(async move {
            let Some(key) = conf.key.clone() else {
                return Err(ProviderError::Unavailable(conf.key_hint.clone()));
            };
            let url = model_url(&conf.url, &settings.model)?;
            let conv_id = crate::ids::new_id("oai_");
            let span = tracing::info_span!("openai", conv = %conv_id, model = %settings.model);
            let timeout = conf.connect_timeout;
            let ws = match tokio::time::timeout(
                timeout,
                handshake(&conf, &url, &key, &settings, &history),
            )
            .instrument(span.clone())
            .await
            {
                Ok(r) => r?,
                Err(_) => {
                    return Err(ProviderError::Connect(format!(
                        "{url}: no session within {} ms",
                        timeout.as_millis()
                    )))
                }
            };
            let (conv, input, output) = Conversation::channel();
            // A fresh channel has room: this cannot fail.
            let _ = output.try_send(Output::Ready);
            let state = State::new(settings, conf);
            tokio::spawn(run(ws, state, input, output).instrument(span));
            Ok(conv)
        })
    }
}

/// `url` with `?model=<model>` appended, unless it names a model already.
fn model_url(url: &str, model: &str) -> Result<String, ProviderError> {
    let mut u = reqwest::Url::parse(url)
        .map_err(|e| ProviderError::Connect(format!("invalid url `{url}`: {e}")))?;
    if !model.is_empty() && !u.query_pairs().any(|(k, _)| k == "model") {
        u.query_pairs_mut().append_pair("model", model);
    }
    Ok(u.to_string())
}

/// The GA `session` for `settings`.
fn session(settings: &SessionSettings, conf: &Conf) -> wire::Session {
    let voice = settings
        .voice
        .clone()
        .filter(|v| !v.is_empty())
        .or_else(|| Some(conf.voice.clone()).filter(|v| !v.is_empty()));
    wire::Session {
        kind: "realtime",
        output_modalities: vec![if settings.audio_output {
            "audio"
        } else {
            "text"
        }],
        instructions: settings.instructions.clone(),
        audio: wire::SessionAudio {
            input: wire::AudioInput {
                format: wire::AudioFormat::pcm24k(),
                turn_detection: settings.turn_detection.as_ref().map(|t| wire::ServerVad {
                    kind: "server_vad",
                    threshold: t.threshold,
                    prefix_padding_ms: t.prefix_padding_ms,
                    silence_duration_ms: t.silence_duration_ms,
                    create_response: t.create_response,
                    interrupt_response: t.interrupt_response,
                }),
                transcription: Some(conf.transcription_model.clone())
                    .filter(|m| !m.is_empty())
                    .map(|model| wire::Transcription { model }),
            },
            output: wire::AudioOutput {
                format: wire::AudioFormat::pcm24k(),
                voice,
            },
        },
        max_output_tokens: match settings.max_output_tokens {
            Some(n) => wire::MaxTokens::Limit(n.clamp(1, 4096)),
            None => wire::MaxTokens::Inf("inf"),
        },
    }
}

/// Connect, wait for `session.created`, configure the session, replay `history`.
async fn handshake(
    conf: &Conf,
    url: &str,
    key: &str,
    settings: &SessionSettings,
    history: &[HistoryItem],
) -> Result<Socket, ProviderError> {
    let mut req = url
        .into_client_request()
        .map_err(|e| ProviderError::Connect(format!("{url}: {e}")))?;
    let (name, value) = if conf.azure {
        ("api-key", key.to_string())
    } else {
        ("authorization", format!("Bearer {key}"))
    };
    let value = HeaderValue::from_str(&value)
        .map_err(|_| ProviderError::Connect("the API key is not a valid header value".into()))?;
    req.headers_mut().insert(name, value);
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .map_err(|e| connect_error(url, e))?;
    tracing::debug!("connected");

    wait_for(&mut ws, url, ServerEvent::SessionCreated).await?;
    let update = ClientEvent::SessionUpdate {
        session: session(settings, conf),
    };
    send(&mut ws, &update)
        .await
        .map_err(|e| ProviderError::Connect(format!("{url}: {e}")))?;
    wait_for(&mut ws, url, ServerEvent::SessionUpdated).await?;
    for h in history {
        let item = match h.role {
            Role::User => wire::MessageItem::user_text(&h.text),
            Role::Assistant => wire::MessageItem::assistant_text(&h.text),
        };
        send(&mut ws, &ClientEvent::ItemCreate { item })
            .await
            .map_err(|e| ProviderError::Connect(format!("{url}: {e}")))?;
    }
    tracing::info!(history = history.len(), "session ready");
    Ok(ws)
}

fn connect_error(url: &str, e: tokio_tungstenite::tungstenite::Error) -> ProviderError {
    use tokio_tungstenite::tungstenite::Error as WsError;
    match e {
        WsError::Http(resp) => {
            let body = resp
                .body()
                .as_deref()
                .map(|b| {
                    String::from_utf8_lossy(b)
                        .chars()
                        .take(300)
                        .collect::<String>()
                })
                .unwrap_or_default();
            ProviderError::Connect(format!(
                "{url}: HTTP {} on the WebSocket upgrade {}",
                resp.status(),
                body.trim()
            ))
        }
        other => ProviderError::Connect(format!("{url}: {other}")),
    }
}

/// Read until `want` (`session.created` / `session.updated`); an `error` event is a refusal.
async fn wait_for(ws: &mut Socket, url: &str, want: ServerEvent) -> Result<(), ProviderError> {
    loop {
        let msg = match ws.next().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(ProviderError::Connect(format!("{url}: {e}"))),
            None => {
                return Err(ProviderError::Connect(format!(
                    "{url}: closed before {want:?}"
                )))
            }
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(f) => {
                return Err(ProviderError::Connect(format!(
                    "{url}: closed before {want:?} ({})",
                    f.map(|f| format!("{} {}", f.code, f.reason))
                        .unwrap_or_default()
                )))
            }
            _ => continue,
        };
        match wire::parse_server_event(&text) {
            Ok(ev) if ev == want => return Ok(()),
            Ok(ServerEvent::Error(e)) => {
                return Err(ProviderError::Rejected(format!(
                    "{}: {}",
                    e.code.unwrap_or(e.kind),
                    e.message
                )))
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "skipped during the handshake"),
        }
    }
}

async fn send(
    ws: &mut Socket,
    ev: &ClientEvent,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    ws.send(Message::text(ev.to_json())).await
}

/// Warnings about bad server events: at most `burst` per window, the rest counted.
struct LogLimiter {
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

    fn warn(&mut self, what: &str, detail: &str) {
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
struct State {
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
    bad: LogLimiter,
}

impl State {
    fn new(settings: SessionSettings, conf: Arc<Conf>) -> State {
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
    fn client_events(&mut self, input: Input) -> Vec<ClientEvent> {
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
                    ClientEvent::ResponseCreate,
                ]
            }
            Input::CreateResponse => {
                self.requested += 1;
                vec![ClientEvent::ResponseCreate]
            }
            Input::CancelResponse => {
                if let Some(id) = self.active.take() {
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
    fn outputs(&mut self, text: &str) -> Vec<Output> {
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
                    // The response ended while our cancel was on its way: the no-op we promise.
                    tracing::debug!("cancel arrived after the response ended");
                    return Vec::new();
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

/// PCM16 samples → base64 of their little-endian bytes.
pub fn encode_pcm(pcm: &[i16]) -> String {
    let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Base64 of little-endian PCM16 → samples; `None` when not base64 or an odd byte count.
pub fn decode_pcm(b64: &str) -> Option<Vec<i16>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    if bytes.len() % 2 != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect(),
    )
}

fn fatal(code: &str, message: String) -> Output {
    Output::Error {
        code: code.into(),
        message,
        fatal: true,
    }
}

/// The conversation task: inputs → client events, server events → outputs, until the caller drops
/// the input sender, drops the output receiver, or the connection is lost.
async fn run(
    mut ws: Socket,
    mut state: State,
    mut input: mpsc::Receiver<Input>,
    output: mpsc::Sender<Output>,
) {
    loop {
        tokio::select! {
            inp = input.recv() => {
                let Some(inp) = inp else {
                    tracing::debug!("caller ended the conversation");
                    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                    return;
                };
                for ev in state.client_events(inp) {
                    if let Err(e) = send(&mut ws, &ev).await {
                        tracing::warn!(error = %e, "send failed: connection lost");
                        let _ = output.send(fatal("connection_lost", format!("sending to the server: {e}"))).await;
                        return;
                    }
                }
            }
            msg = ws.next() => {
                let outs = match msg {
                    Some(Ok(Message::Text(t))) => state.outputs(&t),
                    Some(Ok(Message::Close(f))) => {
                        let why = f.map(|f| format!("{} {}", f.code, f.reason)).unwrap_or_default();
                        tracing::warn!(close = %why, "server closed the connection");
                        let _ = output.send(fatal("connection_closed", format!("the server closed the connection {why}").trim().to_string())).await;
                        return;
                    }
                    Some(Ok(Message::Binary(b))) => {
                        state.bad.warn("binary frame skipped", &format!("{} bytes", b.len()));
                        Vec::new()
                    }
                    Some(Ok(_)) => Vec::new(),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "connection lost");
                        let _ = output.send(fatal("connection_lost", format!("connection to the server lost: {e}"))).await;
                        return;
                    }
                    None => {
                        tracing::warn!("connection ended");
                        let _ = output.send(fatal("connection_lost", "the server ended the connection".into())).await;
                        return;
                    }
                };
                for o in outs {
                    if output.send(o).await.is_err() {
                        tracing::debug!("caller stopped reading: closing");
                        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                        return;
                    }
                }
            }
        }
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
    fn model_is_appended_once() {
        assert_eq!(
            model_url("wss://api.openai.com/v1/realtime", "gpt-realtime").unwrap(),
            "wss://api.openai.com/v1/realtime?model=gpt-realtime"
        );
        assert_eq!(
            model_url("wss://x/openai/realtime?api-version=1", "dep").unwrap(),
            "wss://x/openai/realtime?api-version=1&model=dep"
        );
        let has = "wss://x/realtime?model=other";
        assert_eq!(model_url(has, "dep").unwrap(), has);
        assert!(model_url("not a url", "m").is_err());
    }

    #[test]
    fn pcm_round_trips_little_endian() {
        let pcm = [0i16, 1, -1, i16::MAX, i16::MIN, 258];
        let b64 = encode_pcm(&pcm);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&b64)
            .unwrap();
        assert_eq!(&bytes[..4], &[0, 0, 1, 0]);
        assert_eq!(decode_pcm(&b64).unwrap(), pcm);
        assert_eq!(decode_pcm("AAA"), None);
        assert_eq!(decode_pcm("AA=="), None); // one byte
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
}
