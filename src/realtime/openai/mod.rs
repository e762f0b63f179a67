//! The `openai` provider: the OpenAI Realtime API (GA protocol) over WebSocket, or any server that
//! speaks it (Azure OpenAI, compatible local servers), configured by `[realtime.openai]`.
//!
//! [`OpenAiProvider::start`] connects (`Authorization: Bearer`, or `api-key:` for Azure;
//! `?model=` appended), waits for `session.created`, sends a GA `session.update`, waits for
//! `session.updated`, replays the history as conversation items, then hands the socket to one task
//! per conversation ([`run`]). That task owns the conversation's state (`state.rs`), which maps [`Input`] to client
//! events and server events to [`Output`] (see `docs/PROVIDERS.md` for the table). Beta event names
//! are accepted on input ([`wire::ga_event_name`]). Unknown or malformed server events are logged
//! (rate-limited) and skipped; losing the connection ends the conversation with a fatal error.
//!
//! Barge-in: `response.cancel` is sent only while a response is running (or requested), audio and
//! text deltas that arrive for a cancelled response are dropped, and `conversation.item.truncate`'s
//! `audio_end_ms` is clamped to the audio received for that item.

mod state;
pub mod wire;

use crate::realtime::config::OpenAiConfig;
use crate::realtime::provider::{
    Availability, Conversation, HistoryItem, Input, Output, Provider, ProviderError, Role,
    SessionSettings, StartFuture,
};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use state::State;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::Instrument;
use wire::{ClientEvent, ServerEvent};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

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
                        "{}: no session within {} ms",
                        redact(&url),
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
        .map_err(|e| ProviderError::Connect(format!("invalid [realtime.openai] url: {e}")))?;
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

/// `url` without its query (which may carry a key, e.g. Azure's `api-key=`): for messages and logs.
fn redact(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => url.to_string(),
    }
}

/// Connect, wait for `session.created`, configure the session, replay `history`.
async fn handshake(
    conf: &Conf,
    target: &str,
    key: &str,
    settings: &SessionSettings,
    history: &[HistoryItem],
) -> Result<Socket, ProviderError> {
    let url = &redact(target);
    let mut req = target
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
}
