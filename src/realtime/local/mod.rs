//! The `local` provider: Parlor's built-in offline voice model. Text turns go straight to the
//! rule-based [`responder`](crate::realtime::responder); speech turns run voice activity detection
//! ([`vad`], earshot at 16 kHz) → speech-to-text → responder → text-to-speech, the two models living
//! in the speech workers ([`speech`]) that `scripts/setup` installs into the Parlor home. No key,
//! no network.
//!
//! One task per conversation owns its state (settings, the caller's audio buffer, the turn
//! detector, the running response) and never waits on a model: speech-to-text runs in a
//! per-conversation task (turns are transcribed in order) and each response in its own task
//! ([`response`]), both reporting [`response::Step`]s back. So caller audio keeps flowing while a
//! reply is produced, `CancelResponse` ends the running response at once (status `cancelled`, the
//! text and audio sent so far), and with `interrupt_response` speech that starts during a reply
//! cancels it. A new response while one runs cancels the running one first. Audio positions
//! (`audio_start_ms`, `audio_end_ms`) count from the conversation's first appended sample.
//!
//! Latency: a turn ends only after `silence_duration_ms` of silence, so the conversation speculates
//! during that wait. After [`vad::PAUSE_MS`] of silence ([`VadEvent::Paused`]) it transcribes the
//! turn so far, runs the responder and starts synthesizing the reply's first sentence; when the
//! turn stops with the same end the prepared transcript and audio are used at once, and if the
//! caller speaks again they are dropped (the synthesis is cancelled).
//!
//! Availability: text works whenever the provider is enabled. A conversation that asks for audio
//! (`audio_output` or `turn_detection`) needs the voice models; without them `start()` answers
//! [`ProviderError::Unavailable`] naming the fix (`scripts/setup`).

pub mod response;
pub mod speech;
mod transcribe;
pub mod vad;

use crate::clock::SharedClock;
use crate::home::VoiceModels;
use crate::realtime::provider::{
    estimate_tokens, Availability, Conversation, HistoryItem, Input, Output, Provider,
    ProviderError, ResponseStatus, Role, SessionSettings, StartFuture, SAMPLE_RATE,
};
use response::{reply_to, Step, TurnInput};
use speech::{SpeechPool, StreamResampler};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use tokio::sync::mpsc;
use vad::{TurnDetector, VadEvent};

/// Caller audio kept before the oldest is dropped (at 16 kHz: 60 s; a turn longer than that is
/// transcribed from its last minute).
const MAX_BUFFER_SAMPLES: usize = 60 * vad::RATE as usize;
/// Shortest audio worth transcribing (100 ms, OpenAI's minimum for a commit).
const MIN_TURN_SAMPLES: usize = vad::RATE as usize / 10;

pub struct LocalProvider {
    enabled: bool,
    clock: SharedClock,
    workers: usize,
    stt_threads: usize,
    /// The installed voice models, or why there are none (with the fix).
    models: Result<VoiceModels, String>,
    /// Started on the first conversation that needs speech.
    speech: Arc<OnceLock<Arc<SpeechPool>>>,
}

impl LocalProvider {
    /// `home`: the Parlor home, where `scripts/setup` installed the voice models.
    pub fn new(
        config: &crate::realtime::config::LocalConfig,
        home: &Path,
        clock: SharedClock,
    ) -> LocalProvider {
        let fix = crate::home::Home {
            root: home.to_path_buf(),
            components: Vec::new(),
        }
        .fix_command();
        let models = VoiceModels::load(home)
            .map_err(|why| format!("the offline voice models are missing: {why}. Fix: {fix}"));
        LocalProvider {
            enabled: config.enabled,
            clock,
            workers: config.workers,
            stt_threads: config.stt_threads,
            models,
            speech: Arc::new(OnceLock::new()),
        }
    }

    /// Whether speech works, and if not why (with the fix command).
    pub fn speech_availability(&self) -> Availability {
        match &self.models {
            Ok(_) => Availability::Available,
            Err(reason) => Availability::Unavailable {
                reason: reason.clone(),
            },
        }
    }

    /// The speech workers (started now if no conversation needed them yet). Must run inside a
    /// tokio runtime. `Err`: the models are missing.
    pub fn speech(&self) -> Result<Arc<SpeechPool>, String> {
        let models = self.models.as_ref().map_err(Clone::clone)?;
        Ok(self
            .speech
            .get_or_init(|| {
                Arc::new(SpeechPool::new(
                    models.clone(),
                    self.workers,
                    self.stt_threads,
                ))
            })
            .clone())
    }
}

fn wants_audio(s: &SessionSettings) -> bool {
    s.audio_output || s.turn_detection.is_some()
}

impl Provider for LocalProvider {
    fn name(&self) -> &'static str {
        "local"
    }

    fn availability(&self) -> Availability {
        if self.enabled {
            Availability::Available
        } else {
            Availability::Unavailable {
                reason: "[realtime.local] enabled = false".into(),
            }
        }
    }

    fn audio_availability(&self) -> Availability {
        match self.availability() {
            Availability::Available => self.speech_availability(),
            off => off,
        }
    }

    fn start(&self, settings: SessionSettings, history: Vec<HistoryItem>) -> StartFuture {
        let enabled = self.enabled;
        let clock = self.clock.clone();
        // A conversation that asks for audio starts the workers now (they load while it sets
        // up); a text one may switch to audio later and starts them then.
        let ready = if enabled && wants_audio(&settings) {
            Some(self.speech())
        } else {
            None
        };
        let source = SpeechSource {
            ready: None,
            lazy: self.speech.clone(),
            models: self.models.clone().ok(),
            workers: self.workers,
            stt_threads: self.stt_threads,
            missing: self.models.as_ref().err().cloned().unwrap_or_default(),
        };
        Box::pin(async move {
            if !enabled {
                return Err(ProviderError::Unavailable(
                    "[realtime.local] enabled = false".into(),
                ));
            }
            let mut source = source;
            match ready {
                Some(Ok(pool)) => source.ready = Some(pool),
                Some(Err(why)) => return Err(ProviderError::Unavailable(why)),
                None => {}
            }
            let (conv, input, output) = Conversation::channel();
            tokio::spawn(run(settings, history, clock, source, input, output));
            Ok(conv)
        })
    }
}

/// How a conversation reaches the speech workers (started lazily if it turns to audio later).
struct SpeechSource {
    ready: Option<Arc<SpeechPool>>,
    lazy: Arc<OnceLock<Arc<SpeechPool>>>,
    models: Option<VoiceModels>,
    workers: usize,
    stt_threads: usize,
    missing: String,
}

impl SpeechSource {
    fn get(&mut self) -> Option<Arc<SpeechPool>> {
        if self.ready.is_none() {
            let models = self.models.as_ref()?;
            let pool = self.lazy.get_or_init(|| {
                Arc::new(SpeechPool::new(
                    models.clone(),
                    self.workers,
                    self.stt_threads,
                ))
            });
            self.ready = Some(pool.clone());
        }
        self.ready.clone()
    }
}

/// The response in progress.
struct Running {
    id: String,
    handle: tokio::task::JoinHandle<()>,
    text: String,
    audio_samples: u64,
    input: TurnInput,
}

struct Conv {
    settings: SessionSettings,
    clock: SharedClock,
    output: mpsc::Sender<Output>,
    speech: SpeechSource,
    steps: mpsc::Sender<Step>,
    stt: Option<mpsc::Sender<transcribe::SttJob>>,
    vad: Option<TurnDetector>,
    down: Option<StreamResampler>,
    /// Caller audio at 16 kHz; `buf[0]` is sample `buf_start` of the conversation.
    buf: Vec<i16>,
    buf_start: u64,
    /// Samples at 16 kHz received so far.
    pos: u64,
    /// The caller's speech item in progress (turn detection) and where it started.
    item: Option<(String, u64)>,
    running: Option<Running>,
    spec: Option<transcribe::Spec>,
    /// A speculative transcription is running (at most one per conversation, so a caller who
    /// pauses often does not queue work on the shared workers).
    spec_running: bool,
    last_user: Option<String>,
    told_unavailable: bool,
}

async fn run(
    settings: SessionSettings,
    history: Vec<HistoryItem>,
    clock: SharedClock,
    speech: SpeechSource,
    mut input: mpsc::Receiver<Input>,
    output: mpsc::Sender<Output>,
) {
    let (steps, mut steps_rx) = mpsc::channel(64);
    let last_user = history
        .iter()
        .rev()
        .find(|h| h.role == Role::User)
        .map(|h| h.text.clone());
    let mut c = Conv {
        settings: SessionSettings::default(),
        clock,
        output,
        speech,
        steps,
        stt: None,
        vad: None,
        down: None,
        buf: Vec::new(),
        buf_start: 0,
        pos: 0,
        item: None,
        running: None,
        spec: None,
        spec_running: false,
        last_user,
        told_unavailable: false,
    };
    c.apply(settings);
    if c.output.send(Output::Ready).await.is_err() {
        return;
    }
    loop {
        let alive = tokio::select! {
            ev = input.recv() => match ev {
                Some(ev) => c.on_input(ev).await,
                None => false,
            },
            Some(step) = steps_rx.recv() => c.on_step(step).await,
        };
        if !alive {
            break;
        }
    }
    if let Some(r) = c.running.take() {
        r.handle.abort();
    }
}

impl Conv {
    async fn send(&self, o: Output) -> bool {
        self.output.send(o).await.is_ok()
    }

    async fn error(&self, code: &str, message: String) -> bool {
        self.send(Output::Error {
            code: code.into(),
            message,
            fatal: false,
        })
        .await
    }

    fn apply(&mut self, settings: SessionSettings) {
        match (&settings.turn_detection, self.vad.as_mut()) {
            (None, _) => self.vad = None,
            (Some(td), Some(v)) => v.configure(td),
            (Some(td), None) => {
                // Positions continue from the audio already received.
                self.vad = Some(TurnDetector::new(td).starting_at(self.pos));
            }
        }
        self.settings = settings;
    }

    async fn on_input(&mut self, ev: Input) -> bool {
        match ev {
            Input::Text(text) => {
                self.last_user = Some(text.clone());
                let input = TurnInput {
                    text_tokens: estimate_tokens(&text),
                    audio_ms: 0,
                };
                self.start_response(&text, input).await
            }
            Input::CreateResponse => match self.last_user.clone() {
                Some(text) => {
                    let input = TurnInput {
                        text_tokens: estimate_tokens(&text),
                        audio_ms: 0,
                    };
                    self.start_response(&text, input).await
                }
                None => true,
            },
            Input::Update(s) => {
                if wants_audio(&s) && self.speech.get().is_none() {
                    let mut s = s;
                    s.audio_output = false;
                    s.turn_detection = None;
                    self.apply(s);
                    let why = self.speech.missing.clone();
                    return self.error("audio_unavailable", why).await
                        && self.send(Output::Ready).await;
                }
                self.apply(s);
                self.send(Output::Ready).await
            }
            Input::Say(text) => self.say(text).await,
            Input::CancelResponse => self.cancel_response().await,
            // The caller heard only part of the reply: nothing server-side keeps the unheard
            // rest (the responder is stateless), so there is nothing to clamp or drop.
            Input::Truncate { .. } => true,
            Input::Audio(pcm) => self.on_audio(&pcm).await,
            Input::CommitAudio => self.commit().await,
            Input::ClearAudio => {
                self.buf.clear();
                self.buf_start = self.pos;
                self.item = None;
                self.spec = None;
                if let Some(v) = self.vad.as_mut() {
                    v.end_turn();
                }
                true
            }
        }
    }

    async fn on_audio(&mut self, pcm: &[i16]) -> bool {
        if self.speech.get().is_none() {
            if self.told_unavailable {
                return true;
            }
            self.told_unavailable = true;
            let why = self.speech.missing.clone();
            return self.error("audio_unavailable", why).await;
        }
        let down = match self.down.as_mut() {
            Some(d) => d,
            None => match StreamResampler::new(SAMPLE_RATE, vad::RATE) {
                Ok(d) => self.down.insert(d),
                Err(e) => return self.error("audio_unavailable", e.to_string()).await,
            },
        };
        let start = self.buf.len();
        down.push(pcm, &mut self.buf);
        self.pos += (self.buf.len() - start) as u64;
        let events = match self.vad.as_mut() {
            Some(v) => v.push(&self.buf[start..]),
            None => Vec::new(),
        };
        for e in events {
            if !self.on_vad(e).await {
                return false;
            }
        }
        // Between turns keep only the prefix padding; without turn detection keep up to a cap.
        let keep = match &self.vad {
            Some(v) if !v.is_speaking() => v.prefix_samples() as usize,
            _ => MAX_BUFFER_SAMPLES,
        };
        if self.buf.len() > keep {
            let drop = self.buf.len() - keep;
            self.buf.drain(..drop);
            self.buf_start += drop as u64;
        }
        true
    }

    async fn on_vad(&mut self, e: VadEvent) -> bool {
        match e {
            VadEvent::Started { start } => {
                let interrupt = self
                    .settings
                    .turn_detection
                    .as_ref()
                    .is_some_and(|t| t.interrupt_response);
                if self.spec.as_ref().is_some_and(|s| s.confirmed.is_none()) {
                    self.spec = None;
                }
                let item_id = crate::ids::new_id("item_");
                self.item = Some((item_id.clone(), start));
                let started = Output::SpeechStarted {
                    item_id,
                    audio_start_ms: vad::millis(start),
                };
                // As OpenAI: speech_started, then the interrupted response's response.done.
                self.send(started).await && (!interrupt || self.cancel_response().await)
            }
            VadEvent::Paused { end } => self.on_paused(end),
            VadEvent::Stopped { end } => {
                let Some((item_id, start)) = self.item.take() else {
                    return true;
                };
                if !self
                    .send(Output::SpeechStopped {
                        item_id: item_id.clone(),
                        audio_end_ms: vad::millis(end),
                    })
                    .await
                {
                    return false;
                }
                let create = self
                    .settings
                    .turn_detection
                    .as_ref()
                    .is_none_or(|t| t.create_response);
                match self.spec.as_mut() {
                    Some(s) if s.item_id == item_id && s.end == end => {
                        s.confirmed = Some(create);
                        if s.text.is_some() {
                            return self.adopt_spec().await;
                        }
                        true // the transcript is on its way
                    }
                    _ => {
                        self.spec = None;
                        let pcm = self.turn_audio(start, end);
                        self.transcribe(item_id, pcm, create).await
                    }
                }
            }
        }
    }

    /// The caller's audio of a turn from `start` (less the prefix padding) to `end`.
    fn turn_audio(&self, start: u64, end: u64) -> Vec<i16> {
        let prefix = self.vad.as_ref().map_or(0, |v| v.prefix_samples());
        let from = start.saturating_sub(prefix).max(self.buf_start) - self.buf_start;
        let to = (end.max(self.buf_start) - self.buf_start).min(self.buf.len() as u64);
        self.buf[from as usize..to.max(from) as usize].to_vec()
    }

    /// `input_audio_buffer.commit`: the buffered audio (or the speech in progress) is a turn.
    async fn commit(&mut self) -> bool {
        let (item_id, from) = match self.item.take() {
            Some((id, start)) => {
                let prefix = self.vad.as_ref().map_or(0, |v| v.prefix_samples());
                (
                    id,
                    start.saturating_sub(prefix).max(self.buf_start) - self.buf_start,
                )
            }
            None => (crate::ids::new_id("item_"), 0),
        };
        if let Some(v) = self.vad.as_mut() {
            v.end_turn();
        }
        self.spec = None;
        let pcm: Vec<i16> = self.buf.drain(from as usize..).collect();
        self.buf.clear();
        self.buf_start = self.pos;
        if pcm.len() < MIN_TURN_SAMPLES {
            return self
                .error(
                    "input_audio_buffer_commit_empty",
                    format!(
                        "buffer too small: {} ms of audio, at least 100 ms needed",
                        vad::millis(pcm.len() as u64)
                    ),
                )
                .await;
        }
        self.transcribe(item_id, pcm, true).await
    }

    async fn on_step(&mut self, step: Step) -> bool {
        match step {
            Step::Transcript {
                item_id,
                text,
                audio_ms,
                create_response,
            } => {
                self.on_transcript(item_id, text, audio_ms, create_response, None)
                    .await
            }
            Step::Speculated {
                item_id,
                end,
                result,
            } => self.on_speculated(item_id, end, result).await,
            Step::TranscriptFailed { item_id, error } => {
                self.error(
                    "transcription_failed",
                    format!("speech-to-text of {item_id} failed: {error}"),
                )
                .await
            }
            Step::Out {
                response_id,
                output,
            } => {
                let Some(r) = self.running.as_mut().filter(|r| r.id == response_id) else {
                    return true; // from a response cancelled meanwhile
                };
                match &output {
                    Output::TextDelta { text, .. } => r.text.push_str(text),
                    Output::AudioDelta { pcm, .. } => r.audio_samples += pcm.len() as u64,
                    _ => {}
                }
                self.send(output).await
            }
            Step::Done {
                response_id,
                status,
                error,
            } => {
                if self.running.as_ref().is_none_or(|r| r.id != response_id) {
                    return true;
                }
                if let Some(e) = error {
                    if !self.error("response_failed", e).await {
                        return false;
                    }
                }
                self.finish(status).await
            }
        }
    }

    /// What the caller said in a turn: its transcript, then the reply (`prepared` when the
    /// speculation already started it).
    async fn on_transcript(
        &mut self,
        item_id: String,
        text: String,
        audio_ms: u32,
        create_response: bool,
        prepared: Option<response::Prepared>,
    ) -> bool {
        let spoke = !text.trim().is_empty();
        if !self
            .send(Output::InputTranscript {
                item_id,
                text: text.clone(),
            })
            .await
        {
            return false;
        }
        if !spoke {
            return true;
        }
        self.last_user = Some(text.clone());
        if !create_response {
            return true;
        }
        let input = TurnInput {
            text_tokens: 0,
            audio_ms,
        };
        self.respond(&text, input, prepared).await
    }

    async fn start_response(&mut self, text: &str, input: TurnInput) -> bool {
        self.respond(text, input, None).await
    }

    /// Answer `text`: cancel a running response, then start one (audio when configured).
    async fn respond(
        &mut self,
        text: &str,
        input: TurnInput,
        prepared: Option<response::Prepared>,
    ) -> bool {
        if self.running.is_some() && !self.cancel_response().await {
            return false;
        }
        let speech = if self.settings.audio_output {
            self.speech.get()
        } else {
            None
        };
        let (reply, first) = match prepared {
            Some(p) if speech.is_some() => (p.reply, Some(p.first)),
            _ => (reply_to(&self.settings, &self.clock, text), None),
        };
        self.run_reply(reply, first, input).await
    }

    /// Start a response that says `reply` (aloud when configured), cancelling a running one.
    async fn say(&mut self, reply: String) -> bool {
        if self.running.is_some() && !self.cancel_response().await {
            return false;
        }
        let input = TurnInput {
            text_tokens: 0,
            audio_ms: 0,
        };
        self.run_reply(reply, None, input).await
    }

    async fn run_reply(
        &mut self,
        reply: String,
        first: Option<response::Chunks>,
        input: TurnInput,
    ) -> bool {
        let speech = if self.settings.audio_output {
            self.speech.get()
        } else {
            None
        };
        let id = crate::ids::new_id("resp_");
        let item_id = crate::ids::new_id("item_");
        if !self
            .send(Output::ResponseStarted {
                response_id: id.clone(),
            })
            .await
        {
            return false;
        }
        let handle = tokio::spawn(response::run(
            id.clone(),
            item_id,
            reply,
            speech.map(|pool| (pool, first)),
            self.steps.clone(),
        ));
        self.running = Some(Running {
            id,
            handle,
            text: String::new(),
            audio_samples: 0,
            input,
        });
        true
    }

    /// `response.cancel`: stop the running response now (a no-op when none runs).
    async fn cancel_response(&mut self) -> bool {
        match self.running.as_ref() {
            Some(r) => {
                r.handle.abort();
                self.finish(ResponseStatus::Cancelled).await
            }
            None => true,
        }
    }

    async fn finish(&mut self, status: ResponseStatus) -> bool {
        let Some(r) = self.running.take() else {
            return true;
        };
        let usage = response::usage(r.input, &r.text, r.audio_samples);
        self.send(Output::ResponseDone {
            response_id: r.id,
            status,
            text: r.text,
            usage,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_models_audio_is_refused_and_text_still_works() {
        let p = LocalProvider::new(
            &Default::default(),
            Path::new("/nonexistent-parlor-home"),
            crate::clock::system(),
        );
        assert_eq!(p.availability(), Availability::Available);
        assert!(matches!(
            p.speech_availability(),
            Availability::Unavailable { reason } if reason.contains("Fix: ")
        ));
        let audio = SessionSettings {
            audio_output: true,
            ..SessionSettings::default()
        };
        let err = p.start(audio.clone(), Vec::new()).await.unwrap_err();
        assert!(matches!(err, ProviderError::Unavailable(ref m) if m.contains("scripts/setup")));

        let mut conv = p
            .start(SessionSettings::default(), Vec::new())
            .await
            .unwrap();
        assert_eq!(conv.output.recv().await, Some(Output::Ready));
        // Audio frames: one audio_unavailable error, not one per frame.
        for _ in 0..3 {
            conv.input.send(Input::Audio(vec![0; 480])).await.unwrap();
        }
        // Switching to audio: an error, and the settings stay text-only.
        conv.input.send(Input::Update(audio)).await.unwrap();
        conv.input.send(Input::Text("hello".into())).await.unwrap();
        let mut errors = Vec::new();
        loop {
            match conv.output.recv().await.unwrap() {
                Output::Error { code, fatal, .. } => {
                    assert!(!fatal);
                    errors.push(code);
                }
                Output::AudioDelta { .. } => panic!("audio without models"),
                Output::ResponseDone { status, .. } => {
                    assert_eq!(status, ResponseStatus::Completed);
                    break;
                }
                _ => {}
            }
        }
        assert_eq!(errors, vec!["audio_unavailable", "audio_unavailable"]);
    }

    #[tokio::test]
    async fn a_text_turn_streams_deltas_then_done_with_usage() {
        let p = LocalProvider::new(
            &Default::default(),
            Path::new("/nonexistent-parlor-home"),
            crate::clock::system(),
        );
        let mut conv = p
            .start(SessionSettings::default(), Vec::new())
            .await
            .unwrap();
        assert_eq!(conv.output.recv().await, Some(Output::Ready));
        conv.input
            .send(Input::Text("what is two plus two".into()))
            .await
            .unwrap();
        let mut streamed = String::new();
        loop {
            match conv.output.recv().await.unwrap() {
                Output::ResponseStarted { .. } => {}
                Output::TextDelta { text, .. } => streamed.push_str(&text),
                Output::ResponseDone {
                    status,
                    text,
                    usage,
                    ..
                } => {
                    assert_eq!(status, ResponseStatus::Completed);
                    assert_eq!(text, "Two plus two is four.");
                    assert_eq!(streamed, text);
                    assert_eq!(usage.input_tokens, 5);
                    assert_eq!(usage.output_tokens, 6);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}
