//! A fake OpenAI Realtime server for tests: a real WebSocket server on 127.0.0.1 speaking the GA
//! wire protocol (optionally the beta event names), so the `openai` provider and the rooms built
//! on it are tested without a key or the internet.
//!
//! It checks the key on the upgrade (a wrong one is answered HTTP 401), sends `session.created`,
//! answers `session.update` with `session.updated` (and refuses one without `session.type`, as the
//! GA API does), records every client event (parsed JSON, in order) and the decoded appended audio,
//! and answers `response.create` with a scripted response: `response.created`, the output item,
//! `chunks` audio deltas of [`fake_sample`] PCM (sample `n` of a response is `fake_sample(n)`, so
//! order and completeness are checkable) paced in real time or as fast as possible, transcript
//! deltas, the `.done` events and `response.done` with the scripted usage. `response.cancel` stops
//! a running response (`response.done` status `cancelled`) and is an error when none runs;
//! `conversation.item.truncate` beyond the audio sent for the item is an error, as with the real
//! API. Server VAD is emulated from the audio's energy when the session has `turn_detection`
//! (speech started/stopped, server-side interruption, a server-created response at the end of a
//! turn). Faults (junk frames, an abrupt close or a corrupt frame mid-response) are options.
#![allow(dead_code)]

mod script;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use script::{respond, Flags, Script};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub const RATE: u32 = 24_000;

/// Sample `n` of every scripted reply: a sawtooth counter, so any reordering, gap or duplicate
/// shows.
pub fn fake_sample(n: usize) -> i16 {
    (n % 30_000) as i16 - 15_000
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Each audio chunk after its own duration (like the real API, roughly).
    Realtime,
    /// Everything at once.
    Fast,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Drop the connection (no close frame) after this many audio chunks of a response.
    CloseAfterChunks(usize),
    /// Write bytes that are not a WebSocket frame onto the TCP stream after this many chunks.
    CorruptAfterChunks(usize),
}

#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// The key a client must present.
    pub api_key: String,
    /// Expect `api-key: <key>` (Azure) instead of `Authorization: Bearer <key>`.
    pub azure: bool,
    /// Speak the beta event names (`response.audio.delta`, `conversation.item.created`, …).
    pub beta_names: bool,
    pub pace: Pace,
    /// Audio deltas per response.
    pub chunks: usize,
    /// Samples per audio delta (2400 = 100 ms).
    pub chunk_samples: usize,
    /// Transcript (or text) deltas of each response.
    pub transcript: Vec<String>,
    /// `usage` of every `response.done`.
    pub usage: Value,
    /// Server VAD emulation, when the session has `turn_detection`: an append with an RMS of at
    /// least `vad_threshold` is speech (`speech_started`; with `interrupt_response` the running
    /// response is cancelled, reason `turn_detected`), `silence_duration_ms` of quieter appends end
    /// the turn (`speech_stopped`, commit, and with `create_response` a response). A client
    /// commit ends the turn too.
    pub vad: bool,
    pub vad_threshold: u16,
    /// Answer every user item (a client commit, a `conversation.item.create`) with a response, as
    /// if the client had sent `response.create`.
    pub respond_after_user_item: bool,
    /// Sent as `conversation.item.input_audio_transcription.completed` after each commit.
    pub input_transcript: Option<String>,
    /// Send junk (non-JSON, an unknown type, a malformed delta, bad base64, a binary frame)
    /// before every `response.created`.
    pub junk_before_response: bool,
    /// Audio deltas still sent after a `response.cancel` arrives (already in flight, as with
    /// the real API) before `response.done` `cancelled`.
    pub deltas_after_cancel: usize,
    pub fault: Option<Fault>,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            api_key: "sk-test-fake".into(),
            azure: false,
            beta_names: false,
            pace: Pace::Fast,
            chunks: 10,
            chunk_samples: 2400,
            transcript: vec!["Hello ".into(), "from the ".into(), "fake.".into()],
            usage: json!({
                "total_tokens": 460,
                "input_tokens": 120,
                "output_tokens": 340,
                "input_token_details": {"text_tokens": 20, "audio_tokens": 100, "cached_tokens": 64,
                    "cached_tokens_details": {"text_tokens": 16, "audio_tokens": 48}},
                "output_token_details": {"text_tokens": 40, "audio_tokens": 300}
            }),
            vad: false,
            vad_threshold: 1000,
            respond_after_user_item: false,
            input_transcript: None,
            junk_before_response: false,
            deltas_after_cancel: 0,
            fault: None,
        }
    }
}

/// An upgrade request the server saw.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub accepted: bool,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default)]
struct Log {
    requests: Vec<SeenRequest>,
    /// Client events, parsed (a frame that is not JSON is kept as a string).
    events: Vec<Value>,
    /// Server events sent, as sent (beta names when speaking beta).
    sent: Vec<Value>,
    /// When each of `sent` went out.
    sent_at: Vec<std::time::Instant>,
    /// Appended caller audio, decoded.
    audio: Vec<i16>,
    /// Audio samples sent per reply item.
    generated: HashMap<String, usize>,
    /// Samples of the running reply item already sent when each `response.cancel` arrived.
    generated_at_cancel: Vec<usize>,
    /// Close frames received from clients.
    closes: usize,
}

pub struct FakeServer {
    addr: std::net::SocketAddr,
    log: Arc<Mutex<Log>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    pub async fn start(opts: FakeOptions) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Log::default()));
        let opts = Arc::new(opts);
        let l = log.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(serve(tcp, l.clone(), opts.clone()));
            }
        });
        FakeServer { addr, log, task }
    }

    /// `ws://127.0.0.1:<port>/v1/realtime` (no model: the provider appends it).
    pub fn url(&self) -> String {
        format!("ws://{}/v1/realtime", self.addr)
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.log.lock().unwrap().requests.clone()
    }

    pub fn events(&self) -> Vec<Value> {
        self.log.lock().unwrap().events.clone()
    }

    /// The `type`s of the client events, in order.
    pub fn event_types(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| e["type"].as_str().unwrap_or("?").to_string())
            .collect()
    }

    pub fn events_of(&self, kind: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["type"] == kind)
            .collect()
    }

    /// Server events sent of `kind` (as named on the wire).
    pub fn sent_of(&self, kind: &str) -> Vec<Value> {
        self.log
            .lock()
            .unwrap()
            .sent
            .iter()
            .filter(|e| e["type"] == kind)
            .cloned()
            .collect()
    }

    /// When each server event of `kind` went out.
    pub fn sent_times(&self, kind: &str) -> Vec<std::time::Instant> {
        let l = self.log.lock().unwrap();
        l.sent
            .iter()
            .zip(&l.sent_at)
            .filter(|(e, _)| e["type"] == kind)
            .map(|(_, t)| *t)
            .collect()
    }

    pub fn audio(&self) -> Vec<i16> {
        self.log.lock().unwrap().audio.clone()
    }

    /// Milliseconds of reply audio sent for `item_id`.
    pub fn generated_ms(&self, item_id: &str) -> u64 {
        let n = self
            .log
            .lock()
            .unwrap()
            .generated
            .get(item_id)
            .copied()
            .unwrap_or(0);
        n as u64 * 1000 / RATE as u64
    }

    /// Close frames received from clients (a clean end of a conversation).
    pub fn closes(&self) -> usize {
        self.log.lock().unwrap().closes
    }

    /// Samples of the reply already sent when each `response.cancel` arrived.
    pub fn generated_at_cancel(&self) -> Vec<usize> {
        self.log.lock().unwrap().generated_at_cancel.clone()
    }

    /// Wait until `n` client events of `kind` were received; returns them.
    pub async fn wait_events(&self, kind: &str, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.events_of(kind);
            if got.len() >= n {
                return got;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "fake: {n} `{kind}` events not received in 10 s; got {:?}",
                    self.event_types()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn wait_event(&self, kind: &str) -> Value {
        self.wait_events(kind, 1).await.remove(0)
    }

    /// Wait until at least `samples` of caller audio arrived.
    pub async fn wait_audio(&self, samples: usize) -> Vec<i16> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let a = self.audio();
            if a.len() >= samples || tokio::time::Instant::now() > deadline {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// What the connection loop writes.
enum Out {
    Event(Value),
    /// An audio delta: counted as generated for `item` when written.
    Audio(Value, String, usize),
    /// A frame as is (junk).
    Raw(Message),
    Drop,
    Corrupt,
}

type Ws = WebSocketStream<TcpStream>;

struct Running {
    id: String,
    item: String,
    cancel: Arc<AtomicBool>,
    by_server: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
}

fn id(prefix: &str) -> String {
    use rand::Rng;
    let n: u64 = rand::thread_rng().gen();
    format!("{prefix}{n:016x}")
}

fn beta_name(kind: &str) -> &str {
    match kind {
        "response.output_audio.delta" => "response.audio.delta",
        "response.output_audio.done" => "response.audio.done",
        "response.output_audio_transcript.delta" => "response.audio_transcript.delta",
        "response.output_audio_transcript.done" => "response.audio_transcript.done",
        "response.output_text.delta" => "response.text.delta",
        "response.output_text.done" => "response.text.done",
        "conversation.item.added" => "conversation.item.created",
        other => other,
    }
}

fn error_event(code: &str, message: &str, cause: &Value) -> Value {
    json!({"type": "error", "event_id": id("event_"), "error": {
        "type": "invalid_request_error", "code": code, "message": message, "param": null,
        "event_id": cause.get("event_id").cloned().unwrap_or(Value::Null)}})
}

// The upgrade callback's `Result<Response, ErrorResponse>` is tungstenite's signature.
#[allow(clippy::result_large_err)]
async fn serve(tcp: TcpStream, log: Arc<Mutex<Log>>, opts: Arc<FakeOptions>) {
    let l = log.clone();
    let o = opts.clone();
    let check = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let (name, expected) = if o.azure {
            ("api-key", o.api_key.clone())
        } else {
            ("authorization", format!("Bearer {}", o.api_key))
        };
        let presented = req.headers().get(name).map(|v| v.as_bytes());
        let accepted = presented == Some(expected.as_bytes());
        l.lock().unwrap().requests.push(SeenRequest {
            uri: req.uri().to_string(),
            headers,
            accepted,
        });
        if accepted {
            Ok(resp)
        } else {
            let body = json!({"type": "error", "error": {"type": "invalid_request_error",
                "code": "invalid_api_key", "message": "Incorrect API key provided."}});
            let mut r = ErrorResponse::new(Some(body.to_string()));
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            Err(r)
        }
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, check).await else {
        return;
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Out>();
    let mut conn = Conn {
        opts: opts.clone(),
        log: log.clone(),
        tx,
        session: json!({"type": "realtime", "object": "realtime.session", "id": id("sess_"),
            "model": "gpt-realtime", "output_modalities": ["audio"], "instructions": "",
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": RATE}, "turn_detection": null},
                      "output": {"format": {"type": "audio/pcm", "rate": RATE}, "voice": "alloy"}}}),
        running: None,
        speaking: None,
        silence_ms: 0,
        last_item: None,
    };
    let created =
        json!({"type": "session.created", "event_id": id("event_"), "session": conn.session});
    if !write(&mut ws, &log, &opts, created).await {
        return;
    }
    loop {
        tokio::select! {
            msg = ws.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Close(_))) => {
                        log.lock().unwrap().closes += 1;
                        return;
                    }
                    None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                };
                let ev: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
                log.lock().unwrap().events.push(ev.clone());
                for r in conn.handle(&ev) {
                    if !write(&mut ws, &log, &opts, r).await {
                        return;
                    }
                }
            }
            out = rx.recv() => {
                let Some(out) = out else { return };
                match out {
                    Out::Event(v) => {
                        if !write(&mut ws, &log, &opts, v).await {
                            return;
                        }
                    }
                    Out::Audio(v, item, n) => {
                        *log.lock().unwrap().generated.entry(item).or_default() += n;
                        if !write(&mut ws, &log, &opts, v).await {
                            return;
                        }
                    }
                    Out::Raw(m) => {
                        if ws.send(m).await.is_err() {
                            return;
                        }
                    }
                    Out::Drop => return,
                    Out::Corrupt => {
                        // Reserved bits set and a reserved opcode: a protocol violation, not a frame.
                        let _ = ws.get_mut().write_all(&[0xF3, 0x02, 0xAB, 0xCD]).await;
                        let _ = ws.get_mut().flush().await;
                    }
                }
            }
        }
    }
}

/// One connection's session state.
struct Conn {
    opts: Arc<FakeOptions>,
    log: Arc<Mutex<Log>>,
    tx: mpsc::UnboundedSender<Out>,
    session: Value,
    running: Option<Running>,
    /// The user item being spoken (VAD emulation).
    speaking: Option<String>,
    /// Quiet audio since the last loud append, while speaking.
    silence_ms: u64,
    last_item: Option<String>,
}

impl Conn {
    fn turn_detection(&self) -> &Value {
        &self.session["audio"]["input"]["turn_detection"]
    }

    /// The server events answering one client event.
    fn handle(&mut self, ev: &Value) -> Vec<Value> {
        if let Some(r) = &self.running {
            if r.done.load(Ordering::SeqCst) {
                self.running = None;
            }
        }
        let kind = ev["type"].as_str().unwrap_or("").to_string();
        let mut replies = Vec::new();
        match kind.as_str() {
            "session.update" => {
                let s = &ev["session"];
                if s["type"] != "realtime" {
                    replies.push(error_event(
                        "missing_required_parameter",
                        "Missing required parameter: 'session.type'.",
                        ev,
                    ));
                } else {
                    if let (Some(dst), Some(src)) = (self.session.as_object_mut(), s.as_object()) {
                        for (k, v) in src {
                            dst.insert(k.clone(), v.clone());
                        }
                    }
                    replies.push(json!({"type": "session.updated", "event_id": id("event_"),
                        "session": self.session}));
                }
            }
            "input_audio_buffer.append" => {
                let decoded = ev["audio"]
                    .as_str()
                    .and_then(|a| base64::engine::general_purpose::STANDARD.decode(a).ok());
                match decoded {
                    Some(bytes) if bytes.len() % 2 == 0 => {
                        let pcm: Vec<i16> = bytes
                            .chunks_exact(2)
                            .map(|c| i16::from_le_bytes([c[0], c[1]]))
                            .collect();
                        let mut lg = self.log.lock().unwrap();
                        let start_ms = lg.audio.len() as u64 * 1000 / RATE as u64;
                        lg.audio.extend_from_slice(&pcm);
                        drop(lg);
                        if self.opts.vad {
                            self.vad(&pcm, start_ms, &mut replies);
                        }
                    }
                    _ => replies.push(error_event(
                        "invalid_value",
                        "Invalid 'audio'. Expected base64-encoded audio bytes.",
                        ev,
                    )),
                }
            }
            "input_audio_buffer.commit" => self.commit(&mut replies),
            "input_audio_buffer.clear" => {
                self.speaking = None;
                replies
                    .push(json!({"type": "input_audio_buffer.cleared", "event_id": id("event_")}));
            }
            "conversation.item.create" => {
                let mut item = ev["item"].clone();
                let item_id = item["id"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| id("item_"));
                item["id"] = json!(item_id);
                item["object"] = json!("realtime.item");
                item["status"] = json!("completed");
                replies.push(
                    json!({"type": "conversation.item.added", "event_id": id("event_"),
                    "previous_item_id": self.last_item, "item": item}),
                );
                replies.push(
                    json!({"type": "conversation.item.done", "event_id": id("event_"),
                    "previous_item_id": self.last_item, "item": item}),
                );
                self.last_item = Some(item_id);
                if self.opts.respond_after_user_item && item["role"] == "user" {
                    self.start_response();
                }
            }
            "response.create" => {
                if self.running.is_some() {
                    replies.push(error_event(
                        "conversation_already_has_active_response",
                        "Conversation already has an active response in progress.",
                        ev,
                    ));
                } else {
                    self.start_response();
                }
            }
            "response.cancel" => match &self.running {
                Some(r) => {
                    let mut lg = self.log.lock().unwrap();
                    let sent = lg.generated.get(&r.item).copied().unwrap_or(0);
                    lg.generated_at_cancel.push(sent);
                    r.cancel.store(true, Ordering::SeqCst);
                }
                None => replies.push(error_event(
                    "response_cancel_not_active",
                    "Cancellation failed: no active response found",
                    ev,
                )),
            },
            "conversation.item.truncate" => {
                let item = ev["item_id"].as_str().unwrap_or("").to_string();
                let end = ev["audio_end_ms"].as_u64();
                let generated = self.log.lock().unwrap().generated.get(&item).copied();
                match (generated, end) {
                    (None, _) => replies.push(error_event(
                        "invalid_value",
                        &format!("Item with item_id '{item}' has no audio content"),
                        ev,
                    )),
                    (_, None) => {
                        replies.push(error_event("invalid_value", "Invalid 'audio_end_ms'.", ev))
                    }
                    (Some(n), Some(end)) => {
                        let have = n as u64 * 1000 / RATE as u64;
                        if end > have {
                            replies.push(error_event(
                                "invalid_value",
                                &format!(
                                    "Audio content of {have}ms is already shorter than {end}ms"
                                ),
                                ev,
                            ));
                        } else {
                            replies.push(json!({"type": "conversation.item.truncated",
                                "event_id": id("event_"), "item_id": item, "content_index": 0,
                                "audio_end_ms": end}));
                        }
                    }
                }
            }
            other => replies.push(error_event(
                "invalid_value",
                &format!("Invalid value: '{other}'. Supported values are: 'session.update', …"),
                ev,
            )),
        }
        replies
    }

    /// Server VAD emulation: an append whose RMS reaches `vad_threshold` is speech. Speech starts
    /// a user item (`speech_started`, and with `interrupt_response` the running response is
    /// cancelled by the server); `silence_duration_ms` of quiet audio ends it (`speech_stopped`,
    /// the commit, and with `create_response` a response).
    fn vad(&mut self, pcm: &[i16], start_ms: u64, replies: &mut Vec<Value>) {
        let td = self.turn_detection().clone();
        if pcm.is_empty() || !td.is_object() {
            return; // no VAD without turn detection, as with the real API
        }
        let energy: f64 = pcm.iter().map(|&s| (s as f64) * (s as f64)).sum::<f64>();
        let rms = (energy / pcm.len() as f64).sqrt();
        let chunk_ms = pcm.len() as u64 * 1000 / RATE as u64;
        if rms >= self.opts.vad_threshold as f64 {
            self.silence_ms = 0;
            if self.speaking.is_none() {
                let item = id("item_");
                self.speaking = Some(item.clone());
                let prefix = td["prefix_padding_ms"].as_u64().unwrap_or(0);
                replies.push(json!({"type": "input_audio_buffer.speech_started",
                    "event_id": id("event_"), "audio_start_ms": start_ms.saturating_sub(prefix),
                    "item_id": item}));
                if td["interrupt_response"] == true {
                    if let Some(r) = &self.running {
                        r.by_server.store(true, Ordering::SeqCst);
                        r.cancel.store(true, Ordering::SeqCst);
                    }
                }
            }
        } else if self.speaking.is_some() {
            self.silence_ms += chunk_ms;
            let limit = td["silence_duration_ms"].as_u64().unwrap_or(500);
            if self.silence_ms >= limit {
                self.commit(replies);
                let busy = self
                    .running
                    .as_ref()
                    .is_some_and(|r| !r.done.load(Ordering::SeqCst));
                if td["create_response"] == true && !busy {
                    self.start_response();
                }
            }
        }
    }

    /// End the user's turn: `speech_stopped` (VAD), `committed`, the user item, its transcript.
    fn commit(&mut self, replies: &mut Vec<Value>) {
        let ms = self.log.lock().unwrap().audio.len() as u64 * 1000 / RATE as u64;
        let spoken = self.speaking.take();
        let item = spoken.clone().unwrap_or_else(|| id("item_"));
        self.silence_ms = 0;
        if spoken.is_some() {
            replies.push(json!({"type": "input_audio_buffer.speech_stopped",
                "event_id": id("event_"), "audio_end_ms": ms, "item_id": item}));
        }
        replies.push(
            json!({"type": "input_audio_buffer.committed", "event_id": id("event_"),
            "previous_item_id": self.last_item, "item_id": item}),
        );
        replies.push(
            json!({"type": "conversation.item.added", "event_id": id("event_"),
            "previous_item_id": self.last_item, "item": {"id": item, "object": "realtime.item",
            "type": "message", "role": "user", "status": "completed",
            "content": [{"type": "input_audio", "transcript": null}]}}),
        );
        if let Some(t) = &self.opts.input_transcript {
            replies.push(
                json!({"type": "conversation.item.input_audio_transcription.completed",
                "event_id": id("event_"), "item_id": item, "content_index": 0, "transcript": t,
                "usage": {"type": "duration", "seconds": ms as f64 / 1000.0}}),
            );
        }
        self.last_item = Some(item);
        if self.opts.respond_after_user_item {
            self.start_response();
        }
    }

    fn start_response(&mut self) {
        let item = id("item_");
        let r = Running {
            id: id("resp_"),
            item: item.clone(),
            cancel: Arc::new(AtomicBool::new(false)),
            by_server: Arc::new(AtomicBool::new(false)),
            done: Arc::new(AtomicBool::new(false)),
        };
        let text_only = self.session["output_modalities"] == json!(["text"]);
        tokio::spawn(respond(
            self.opts.clone(),
            Script {
                resp_id: r.id.clone(),
                item_id: item.clone(),
                previous: self.last_item.clone(),
                text_only,
            },
            Flags {
                cancel: r.cancel.clone(),
                by_server: r.by_server.clone(),
                done: r.done.clone(),
            },
            self.tx.clone(),
        ));
        self.last_item = Some(item);
        self.running = Some(r);
    }
}

/// Send one server event (renamed to its beta name when speaking beta) and log it.
async fn write(ws: &mut Ws, log: &Arc<Mutex<Log>>, opts: &FakeOptions, mut v: Value) -> bool {
    if opts.beta_names {
        if let Some(k) = v["type"].as_str().map(|k| beta_name(k).to_string()) {
            v["type"] = json!(k);
        }
    }
    {
        let mut l = log.lock().unwrap();
        l.sent.push(v.clone());
        l.sent_at.push(std::time::Instant::now());
    }
    ws.send(Message::text(v.to_string())).await.is_ok()
}
