//! The session WebSocket, `GET /realtime/{session_id}` (`connectionInfo.websocketUrl`).
//!
//! The client's first message must be `{"type":"auth","token":<authToken>}` within
//! `realtime.auth_timeout_ms`; the token is a `model-session` token bound to this session and its
//! current token generation (resume revokes older ones). The server then starts the session's model
//! conversation (seeded with the stored history), sends `{"type":"connected"}`, a
//! `{"type":"heartbeat","timestamp"}` every `heartbeat_interval_ms` (answered by `{"type":"pong"}`;
//! `max_missed_pongs` unanswered in a row close the socket), and relays turns: a
//! `{"type":"message","content"}` is stored, answered by `delta`s and a final assistant `message`
//! (stored with its token count and response time). Voice extension: `audio` (base64 PCM16LE mono
//! 24 kHz), `audio.commit`, `cancel`; the provider's transcript, audio and speech events come back.
//! Close codes: [`super::sessions::close`]. All timers run on the server clock
//! ([`crate::clock::Clock::sleep_until`]), so tests drive them.

use super::sessions::{close, valid_session_id, Kick};
use crate::realtime::provider::{
    estimate_tokens, HistoryItem, Input, Output, ResponseStatus, Role, SessionSettings,
    TurnDetection,
};
use crate::state::AppState;
use crate::store::{RtMessageRecord, RtSessionRecord};
use crate::timefmt::rfc3339_ms;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use parlor_signaling::TokenPurpose;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Largest frame accepted (audio frames are base64; text is limited by `max_message_chars`).
pub const MAX_FRAME_BYTES: usize = 1 << 20;
/// Frames per second a client may send before it is closed with 4029.
pub const FLOOD_FRAMES_PER_SEC: u32 = 200;

pub async fn upgrade(
    State(state): State<AppState>,
    Path(id): Path<String>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    if !valid_session_id(&id) {
        return super::api::err(
            StatusCode::BAD_REQUEST,
            "INVALID_SESSION_ID",
            "not a session id (session_ followed by 12 letters or digits)",
        )
        .into_response();
    }
    let Ok(upgrade) = upgrade else {
        return super::api::err(
            StatusCode::BAD_REQUEST,
            "WEBSOCKET_REQUIRED",
            "this endpoint needs a WebSocket upgrade request",
        )
        .into_response();
    };
    upgrade
        .max_message_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| async move {
            let stats = &state.realtime.stats;
            stats.connection_opened();
            let mut c = Conn {
                socket,
                state: state.clone(),
                session_id: id,
            };
            c.run().await;
            state.realtime.stats.connection_closed();
        })
}

fn error(code: &str, message: impl Into<String>) -> Value {
    json!({ "type": "error", "code": code, "message": message.into() })
}

/// A failed authentication: close code, error code, message.
type AuthFail = (u16, &'static str, String);

struct Conn {
    socket: WebSocket,
    state: AppState,
    session_id: String,
}

/// Per-connection state of an authenticated session socket.
struct Live {
    session: RtSessionRecord,
    settings: SessionSettings,
    input: mpsc::Sender<Input>,
    output: mpsc::Receiver<Output>,
    requests_per_minute: u32,
    turn_window: (Instant, u32),
    /// When the caller's latest turn ended (message received, audio committed, speech stopped).
    turn_end: Option<Instant>,
    /// Running responses: response id → (start of the turn it answers, assistant message id).
    responses: HashMap<String, (Instant, String)>,
    audio_on: bool,
}

/// How the connection ended, for the session's state.
enum End {
    /// Client gone or closed by a timeout/limit: `active` → `paused`.
    Pause,
    /// The session failed (fatal provider error).
    Failed,
    /// Someone else decided (deleted, resumed, replaced, shutdown): leave the state alone.
    Keep,
}

impl Conn {
    async fn send(&mut self, v: Value) -> bool {
        self.state.realtime.stats.frame(self.state.clock.now());
        self.socket
            .send(Message::Text(v.to_string().into()))
            .await
            .is_ok()
    }

    async fn close(&mut self, code: u16, reason: &str) {
        let _ = self
            .socket
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.chars().take(120).collect::<String>().into(),
            })))
            .await;
        crate::flood::drain_until_closed(&mut self.socket).await;
    }

    async fn fail(&mut self, close_code: u16, code: &str, message: &str) {
        self.send(error(code, message)).await;
        self.close(close_code, message).await;
    }

    async fn run(&mut self) {
        let rt = self.state.realtime.clone();
        let sid = self.session_id.clone();
        if rt.stats.open.load(std::sync::atomic::Ordering::SeqCst) > rt.config.max_connections {
            tracing::warn!(session = %sid, "session socket refused: max_connections reached");
            self.fail(
                close::CAPACITY,
                "CONNECTION_FAILED",
                "the server has reached realtime.max_connections; retry later",
            )
            .await;
            return;
        }
        let Some(session) = self.authenticate().await else {
            return;
        };
        let (conn_id, kicks) = rt.register(&sid);
        rt.stats.session_authenticated();
        let end = self.serve(session, kicks).await;
        let mine = rt.unregister(&sid, conn_id);
        rt.stats.session_left();
        let now = self.state.clock.unix_ms();
        let r = match end {
            End::Pause if mine => self.state.store.pause_rt_session(&sid).await.map(|_| ()),
            End::Failed => self
                .state
                .store
                .set_rt_status(&sid, "failed", now, false, Some("the model failed"))
                .await
                .map(|_| ()),
            _ => Ok(()),
        };
        if let Err(e) = r {
            tracing::warn!(session = %sid, error = %e, "cannot record the session state");
        }
        tracing::info!(session = %sid, "session socket closed");
    }

    /// Wait for the `auth` message (bounded by the auth timeout on the server clock).
    async fn authenticate(&mut self) -> Option<RtSessionRecord> {
        let state = self.state.clone();
        let timeout = Duration::from_millis(state.realtime.config.auth_timeout_ms);
        let mut deadline = state.clock.sleep_until(state.clock.now() + timeout);
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => {
                    self.close(close::GOING_AWAY, "server shutting down").await;
                    return None;
                }
                _ = &mut deadline => {
                    let m = format!("no auth message within {} ms", timeout.as_millis());
                    self.fail(close::AUTH_TIMEOUT, "UNAUTHORIZED", &m).await;
                    return None;
                }
                m = self.socket.recv() => match m {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
                    Some(Ok(Message::Text(t))) => {
                        state.realtime.stats.frame(state.clock.now());
                        match self.check_auth(t.as_str()).await {
                            Ok(s) => return Some(s),
                            Err((close_code, code, m)) => {
                                tracing::info!(session = %self.session_id, reason = %m, "session socket auth refused");
                                self.fail(close_code, code, &m).await;
                                return None;
                            }
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        self.fail(close::UNAUTHORIZED, "UNAUTHORIZED", "the first message must be {\"type\":\"auth\",\"token\":...}").await;
                        return None;
                    }
                    Some(Ok(_)) => {}
                },
            }
        }
    }

    async fn check_auth(&mut self, text: &str) -> Result<RtSessionRecord, AuthFail> {
        let unauthorized = |m: String| (close::UNAUTHORIZED, "UNAUTHORIZED", m);
        let v: Value = serde_json::from_str(text)
            .map_err(|e| unauthorized(format!("the first message is not JSON: {e}")))?;
        let token = match (v["type"].as_str(), v["token"].as_str()) {
            (Some("auth"), Some(t)) => t,
            _ => {
                return Err(unauthorized(
                    "the first message must be {\"type\":\"auth\",\"token\":...}".into(),
                ))
            }
        };
        let st = &self.state;
        let claims = st
            .keys
            .verify_for(TokenPurpose::ModelSession, token, st.clock.unix_secs())
            .map_err(|e| unauthorized(format!("invalid session token: {e}")))?;
        let res = claims.res.unwrap_or_default();
        let prefix = format!("model-session:{}:", self.session_id);
        let generation: i64 = res
            .strip_prefix(&prefix)
            .and_then(|g| g.parse().ok())
            .ok_or_else(|| unauthorized("the token is for another session".into()))?;
        let session = match st.store.get_rt_session(&self.session_id).await {
            Ok(s) if s.deleted_at.is_none() => s,
            Ok(_) | Err(crate::store::StoreError::NotFound) => {
                return Err((
                    close::NOT_FOUND,
                    "SESSION_NOT_FOUND",
                    "no such session (or it was deleted)".into(),
                ))
            }
            Err(e) => {
                return Err((
                    close::MODEL_FAILED,
                    "CONNECTION_FAILED",
                    format!("cannot read the session: {e}"),
                ))
            }
        };
        if session.user_id != claims.sub {
            return Err(unauthorized("the token is for another user".into()));
        }
        if generation != session.token_generation {
            return Err(unauthorized(
                "the token was revoked: the session was resumed since it was issued".into(),
            ));
        }
        if session.status == "failed" {
            return Err((
                close::SESSION_ENDED,
                "SESSION_FAILED",
                "the session failed; resume it for a new token".into(),
            ));
        }
        Ok(session)
    }

    /// Start the conversation and relay until the socket ends.
    async fn serve(&mut self, session: RtSessionRecord, mut kicks: mpsc::Receiver<Kick>) -> End {
        let state = self.state.clone();
        let rt = state.realtime.clone();
        let sid = session.id.clone();
        let Some(model) = rt.model(&session.model).cloned() else {
            self.fail(
                close::MODEL_FAILED,
                "MODEL_NOT_AVAILABLE",
                "the session's model is no longer in the catalogue",
            )
            .await;
            return End::Pause;
        };
        let Some(provider) = rt.providers.get(&model.provider).cloned() else {
            self.fail(
                close::MODEL_FAILED,
                "MODEL_NOT_AVAILABLE",
                "the model's provider is not running",
            )
            .await;
            return End::Pause;
        };
        let now_ms = state.clock.unix_ms();
        if let Err(e) = state
            .store
            .set_rt_status(&sid, "active", now_ms, true, None)
            .await
        {
            tracing::warn!(session = %sid, error = %e, "cannot mark the session active");
        }
        let history = match state
            .store
            .recent_rt_messages(&sid, super::api::HISTORY_REPLAY)
            .await
        {
            Ok(h) => h,
            Err(e) => {
                self.fail(
                    close::MODEL_FAILED,
                    "CONNECTION_FAILED",
                    &format!("cannot read the history: {e}"),
                )
                .await;
                return End::Pause;
            }
        };
        let seed: Vec<HistoryItem> = history
            .iter()
            .map(|m| HistoryItem {
                role: if m.role == "assistant" {
                    Role::Assistant
                } else {
                    Role::User
                },
                text: m.content.clone(),
            })
            .collect();
        let settings = SessionSettings {
            model: model.provider_model().to_string(),
            instructions: session.system_prompt.clone().unwrap_or_default(),
            temperature: session.temperature as f32,
            max_output_tokens: u32::try_from(session.max_tokens).ok(),
            ..SessionSettings::default()
        };
        let conv = match provider.start(settings.clone(), seed).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(session = %sid, error = %e, "model conversation did not start");
                self.fail(
                    close::MODEL_FAILED,
                    "CONNECTION_FAILED",
                    &format!("cannot reach the model: {e}"),
                )
                .await;
                return End::Pause;
            }
        };
        let mut live = Live {
            session,
            settings,
            input: conv.input,
            output: conv.output,
            requests_per_minute: model.requests_per_minute.max(1),
            turn_window: (state.clock.now(), 0),
            turn_end: None,
            responses: HashMap::new(),
            audio_on: false,
        };
        let interval = Duration::from_millis(rt.config.heartbeat_interval_ms.max(1));
        let mut next_hb = state.clock.now() + interval;
        let mut hb_sleep = state.clock.sleep_until(next_hb);
        let mut unanswered: u32 = 0;
        let mut hb_sent: Option<Instant> = None;
        let mut flood = crate::flood::FloodLimit::new(FLOOD_FRAMES_PER_SEC, state.clock.now());
        tracing::info!(session = %sid, model = %model.id, history = history.len(), "session socket authenticated");
        let hello = json!({
            "type": "connected",
            "sessionId": sid,
            "model": model.id,
            "heartbeatInterval": rt.config.heartbeat_interval_ms,
            "historyLength": history.len(),
            "timestamp": now_ms,
        });
        if !self.send(hello).await {
            return End::Pause;
        }
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => {
                    self.close(close::GOING_AWAY, "server shutting down").await;
                    return End::Keep;
                }
                k = kicks.recv() => {
                    let k = k.unwrap_or(Kick { code: close::SESSION_ENDED, reason: "session closed".into() });
                    let code = match k.code {
                        close::UNAUTHORIZED => "UNAUTHORIZED",
                        close::REPLACED => "CONNECTION_REPLACED",
                        _ => "SESSION_ENDED",
                    };
                    self.fail(k.code, code, &k.reason).await;
                    return End::Keep;
                }
                _ = &mut hb_sleep => {
                    if unanswered >= rt.config.max_missed_pongs.max(1) {
                        tracing::info!(session = %sid, unanswered, "heartbeat timeout");
                        self.fail(close::HEARTBEAT_TIMEOUT, "HEARTBEAT_TIMEOUT", &format!("{unanswered} heartbeats went unanswered")).await;
                        return End::Pause;
                    }
                    let hb = json!({ "type": "heartbeat", "timestamp": state.clock.unix_ms() });
                    if !self.send(hb).await {
                        return End::Pause;
                    }
                    hb_sent = Some(state.clock.now());
                    unanswered += 1;
                    next_hb += interval;
                    hb_sleep = state.clock.sleep_until(next_hb);
                }
                m = self.socket.recv() => {
                    let text = match m {
                        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return End::Pause,
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(Message::Binary(_))) => {
                            if !self.send(error("INVALID_MESSAGE", "send JSON text frames")).await {
                                return End::Pause;
                            }
                            continue;
                        }
                        Some(Ok(_)) => continue,
                    };
                    let now = state.clock.now();
                    rt.stats.frame(now);
                    if !flood.admit(now) {
                        tracing::warn!(session = %sid, "session socket flood; closing");
                        self.fail(close::RATE_LIMITED, "RATE_LIMIT_EXCEEDED", "too many frames per second").await;
                        return End::Pause;
                    }
                    let v: Value = match serde_json::from_str(text.as_str()) {
                        Ok(v @ Value::Object(_)) => v,
                        Ok(_) => {
                            if !self.send(error("INVALID_MESSAGE", "messages are JSON objects with a type")).await { return End::Pause; }
                            continue;
                        }
                        Err(e) => {
                            if !self.send(error("INVALID_MESSAGE", format!("malformed JSON: {e}"))).await { return End::Pause; }
                            continue;
                        }
                    };
                    if v["type"] == "pong" {
                        if let Some(t) = hb_sent.take() {
                            rt.stats.rtt(state.clock.now().saturating_duration_since(t));
                        }
                        unanswered = 0;
                        continue;
                    }
                    if !self.client_message(&mut live, &v).await {
                        return End::Pause;
                    }
                }
                out = live.output.recv() => {
                    let Some(out) = out else {
                        self.fail(close::MODEL_FAILED, "MODEL_ERROR", "the model conversation ended").await;
                        return End::Failed;
                    };
                    match self.model_output(&mut live, out).await {
                        Flow::Go => {}
                        Flow::Gone => return End::Pause,
                        Flow::Failed => return End::Failed,
                    }
                }
            }
        }
    }

    /// One client message other than `pong`. False when the socket is gone.
    async fn client_message(&mut self, live: &mut Live, v: &Value) -> bool {
        let state = self.state.clone();
        let cfg = &state.realtime.config;
        let reply = match v["type"].as_str().unwrap_or("") {
            "message" => {
                let Some(content) = v["content"].as_str() else {
                    return self
                        .send(error(
                            "INVALID_MESSAGE",
                            "a message needs a string `content`",
                        ))
                        .await;
                };
                if content.trim().is_empty()
                    || content.chars().count() > cfg.max_message_chars
                    || content.contains('\0')
                {
                    let m = format!(
                        "content must be 1-{} characters without NUL",
                        cfg.max_message_chars
                    );
                    return self.send(error("MESSAGE_TOO_LONG", m)).await;
                }
                if let Some(e) = self.admit_turn(live) {
                    return self.send(e).await;
                }
                let metadata = match &v["metadata"] {
                    Value::Object(m)
                        if Value::Object(m.clone()).to_string().len()
                            <= super::api::MAX_METADATA_BYTES =>
                    {
                        Value::Object(m.clone())
                    }
                    Value::Null => json!({}),
                    _ => {
                        return self
                            .send(error(
                                "INVALID_MESSAGE",
                                "metadata must be a small JSON object",
                            ))
                            .await
                    }
                };
                let Some(stored) = self.store_user(live, content, metadata).await else {
                    return self
                        .send(error("CONNECTION_FAILED", "cannot store the message"))
                        .await;
                };
                live.turn_end = Some(state.clock.now());
                if let Err(e) = live.input.try_send(Input::Text(content.to_string())) {
                    tracing::warn!(session = %live.session.id, error = %e, "model input refused");
                    return self
                        .send(error(
                            "MODEL_BUSY",
                            "the model is not accepting input; retry",
                        ))
                        .await;
                }
                stored
            }
            "audio" => {
                let pcm = match v["audio"].as_str().map(super::pcm::decode) {
                    Some(Ok(p)) => p,
                    Some(Err(m)) => return self.send(error("INVALID_AUDIO", m)).await,
                    None => {
                        return self
                            .send(error(
                                "INVALID_AUDIO",
                                "`audio` must be base64 PCM16LE mono 24 kHz",
                            ))
                            .await
                    }
                };
                if !live.audio_on {
                    live.audio_on = true;
                    live.settings.audio_output = true;
                    live.settings.turn_detection = Some(TurnDetection::default());
                    let _ = live.input.try_send(Input::Update(live.settings.clone()));
                }
                if live.input.try_send(Input::Audio(pcm)).is_err() {
                    return self
                        .send(error(
                            "MODEL_BUSY",
                            "audio dropped: the model is not keeping up",
                        ))
                        .await;
                }
                return true;
            }
            "audio.commit" => {
                if let Some(e) = self.admit_turn(live) {
                    return self.send(e).await;
                }
                live.turn_end = Some(state.clock.now());
                let _ = live.input.try_send(Input::CommitAudio);
                return true;
            }
            "cancel" => {
                let _ = live.input.try_send(Input::CancelResponse);
                return true;
            }
            "ping" => json!({ "type": "pong", "timestamp": state.clock.unix_ms() }),
            "auth" => error("INVALID_MESSAGE", "already authenticated"),
            other => error(
                "INVALID_MESSAGE",
                format!(
                    "unknown type `{}` (message, audio, audio.commit, cancel, pong, ping)",
                    other.chars().take(32).collect::<String>()
                ),
            ),
        };
        self.send(reply).await
    }

    /// The per-connection turn limit (the model's `requests_per_minute`).
    fn admit_turn(&self, live: &mut Live) -> Option<Value> {
        let now = self.state.clock.now();
        if now.saturating_duration_since(live.turn_window.0) >= Duration::from_secs(60) {
            live.turn_window = (now, 0);
        }
        if live.turn_window.1 >= live.requests_per_minute {
            return Some(error(
                "RATE_LIMIT_EXCEEDED",
                format!(
                    "more than {} turns per minute for this model",
                    live.requests_per_minute
                ),
            ));
        }
        live.turn_window.1 += 1;
        None
    }

    /// Store a user turn; the acknowledgement to send (None when the store failed).
    async fn store_user(
        &mut self,
        live: &mut Live,
        content: &str,
        metadata: Value,
    ) -> Option<Value> {
        let now = self.state.clock.unix_ms();
        let m = RtMessageRecord {
            id: crate::ids::new_id(super::sessions::MESSAGE_PREFIX),
            session_id: live.session.id.clone(),
            role: "user".into(),
            content: content.to_string(),
            created_at: now,
            token_count: estimate_tokens(content) as i64,
            metadata: metadata.to_string(),
            response_ms: None,
        };
        if let Err(e) = self.state.store.add_rt_message(&m, 0, 0).await {
            tracing::warn!(session = %live.session.id, error = %e, "cannot store a user message");
            return None;
        }
        Some(json!({
            "type": "ack",
            "id": m.id,
            "role": "user",
            "content": m.content,
            "tokenCount": m.token_count,
            "timestamp": rfc3339_ms(now),
        }))
    }

    async fn model_output(&mut self, live: &mut Live, out: Output) -> Flow {
        let state = self.state.clone();
        let sent = match out {
            Output::Ready => true,
            Output::SpeechStarted { item_id, audio_start_ms } => {
                self.send(json!({ "type": "speech.started", "itemId": item_id, "audioStartMs": audio_start_ms })).await
            }
            Output::SpeechStopped { item_id, audio_end_ms } => {
                live.turn_end = Some(state.clock.now());
                self.send(json!({ "type": "speech.stopped", "itemId": item_id, "audioEndMs": audio_end_ms })).await
            }
            Output::InputTranscript { item_id, text } => {
                match self.store_user(live, &text, json!({ "source": "audio", "itemId": item_id })).await {
                    Some(mut ack) => {
                        ack["type"] = json!("transcript");
                        self.send(ack).await
                    }
                    None => self.send(error("CONNECTION_FAILED", "cannot store the transcript")).await,
                }
            }
            Output::ResponseStarted { response_id } => {
                let start = live.turn_end.take().unwrap_or_else(|| state.clock.now());
                let msg_id = crate::ids::new_id(super::sessions::MESSAGE_PREFIX);
                live.responses.insert(response_id.clone(), (start, msg_id.clone()));
                self.send(json!({ "type": "response.started", "messageId": msg_id, "responseId": response_id })).await
            }
            Output::TextDelta { response_id, text, .. } => {
                if !live.session.stream {
                    return Flow::Go;
                }
                let msg_id = live.responses.get(&response_id).map(|r| r.1.clone());
                self.send(json!({ "type": "delta", "content": text, "messageId": msg_id })).await
            }
            Output::AudioDelta { response_id, pcm, .. } => {
                let msg_id = live.responses.get(&response_id).map(|r| r.1.clone());
                self.send(json!({ "type": "audio", "audio": super::pcm::encode(&pcm), "messageId": msg_id })).await
            }
            Output::ResponseDone { response_id, status, text, usage } => {
                return self.response_done(live, &response_id, status, text, usage).await;
            }
            Output::Error { code, message, fatal } => {
                tracing::warn!(session = %live.session.id, %code, %message, fatal, "model error");
                let now = state.clock.unix_ms();
                if fatal {
                    for _ in live.responses.drain() {
                        let _ = state.store.add_rt_failure(&live.session.id, now).await;
                    }
                    let e = json!({ "type": "error", "code": "MODEL_ERROR", "providerCode": code, "message": message, "fatal": true });
                    self.send(e).await;
                    self.close(close::MODEL_FAILED, "the model failed").await;
                    return Flow::Failed;
                }
                self.send(json!({ "type": "error", "code": "MODEL_ERROR", "providerCode": code, "message": message, "fatal": false })).await
            }
        };
        if sent {
            Flow::Go
        } else {
            Flow::Gone
        }
    }

    async fn response_done(
        &mut self,
        live: &mut Live,
        response_id: &str,
        status: ResponseStatus,
        text: String,
        usage: crate::realtime::provider::Usage,
    ) -> Flow {
        let state = self.state.clone();
        let now = state.clock.now();
        let now_ms = state.clock.unix_ms();
        let (start, msg_id) = live.responses.remove(response_id).unwrap_or_else(|| {
            (
                live.turn_end.take().unwrap_or(now),
                crate::ids::new_id(super::sessions::MESSAGE_PREFIX),
            )
        });
        let response_ms = now.saturating_duration_since(start).as_millis() as i64;
        let sid = live.session.id.clone();
        if status == ResponseStatus::Failed
            || (text.trim().is_empty() && status != ResponseStatus::Cancelled)
        {
            if let Err(e) = state.store.add_rt_failure(&sid, now_ms).await {
                tracing::warn!(session = %sid, error = %e, "cannot count a failed response");
            }
            let sent = self.send(json!({ "type": "error", "code": "MODEL_ERROR", "message": format!("the response {}", status.as_str()), "messageId": msg_id })).await;
            return if sent { Flow::Go } else { Flow::Gone };
        }
        if text.trim().is_empty() {
            let sent = self
                .send(json!({ "type": "response.cancelled", "messageId": msg_id }))
                .await;
            return if sent { Flow::Go } else { Flow::Gone };
        }
        let completion = if usage.output_tokens > 0 {
            usage.output_tokens
        } else {
            estimate_tokens(&text)
        } as i64;
        let mut metadata = json!({
            "model": live.session.model,
            "temperature": live.session.temperature,
            "responseTime": response_ms,
        });
        if status != ResponseStatus::Completed {
            metadata["status"] = json!(status.as_str());
        }
        let m = RtMessageRecord {
            id: msg_id,
            session_id: sid.clone(),
            role: "assistant".into(),
            content: text,
            created_at: now_ms,
            token_count: completion,
            metadata: metadata.to_string(),
            response_ms: Some(response_ms),
        };
        if let Err(e) = state
            .store
            .add_rt_message(&m, usage.input_tokens as i64, completion)
            .await
        {
            tracing::warn!(session = %sid, error = %e, "cannot store the reply");
        }
        tracing::debug!(session = %sid, response_ms, tokens = completion, "reply");
        let sent = self
            .send(json!({
                "type": "message",
                "role": "assistant",
                "id": m.id,
                "content": m.content,
                "tokenCount": m.token_count,
                "timestamp": rfc3339_ms(now_ms),
                "metadata": metadata,
                "usage": { "prompt": usage.input_tokens, "completion": completion },
            }))
            .await;
        if sent {
            Flow::Go
        } else {
            Flow::Gone
        }
    }
}

enum Flow {
    Go,
    Gone,
    Failed,
}
