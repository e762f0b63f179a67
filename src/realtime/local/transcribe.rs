//! Speech-to-text of the caller's turns: the per-conversation queue (turns are transcribed in
//! order, one at a time) and the speculation during the end-of-turn silence (see the `local`
//! module doc): after [`vad::PAUSE_MS`] of silence the turn so far is transcribed and its reply's
//! first sentence synthesized; a stop with the same end adopts both, speech resuming drops them.

use super::response::{self, Step};
use super::speech::SpeechPool;
use super::{reply_to, vad, Conv};
use std::sync::Arc;
use tokio::sync::mpsc;

/// A turn transcribed (and its reply prepared) while the turn detector waits for the silence that
/// ends it.
pub(super) struct Spec {
    pub(super) item_id: String,
    /// The turn's end the speculation is for: valid while the turn stops there.
    pub(super) end: u64,
    pub(super) pcm: Vec<i16>,
    /// The transcript, once speech-to-text answered.
    pub(super) text: Option<String>,
    /// The reply and its first sentence being synthesized (audio replies).
    pub(super) prepared: Option<response::Prepared>,
    /// The turn stopped with this end: `create_response` of it.
    pub(super) confirmed: Option<bool>,
}

/// A caller turn waiting for speech-to-text.
pub(super) struct SttJob {
    pub(super) item_id: String,
    pub(super) pcm: Vec<i16>,
    pub(super) create_response: bool,
}

impl Conv {
    /// [`VadEvent::Paused`]: transcribe the turn so far, speculatively.
    pub(super) fn on_paused(&mut self, end: u64) -> bool {
        let Some((item_id, start)) = self.item.clone() else {
            return true;
        };
        if self.spec_running {
            self.spec = None; // the stop transcribes as usual
            return true;
        }
        let pcm = self.turn_audio(start, end);
        let Some(pool) = self.speech.get() else {
            return true;
        };
        self.spec_running = true;
        self.spec = Some(Spec {
            item_id: item_id.clone(),
            end,
            pcm: pcm.clone(),
            text: None,
            prepared: None,
            confirmed: None,
        });
        let steps = self.steps.clone();
        tokio::spawn(async move {
            let result = pool.transcribe(pcm).await.map_err(|e| e.to_string());
            let _ = steps
                .send(Step::Speculated {
                    item_id,
                    end,
                    result,
                })
                .await;
        });
        true
    }

    /// A speculative transcript arrived.
    pub(super) async fn on_speculated(
        &mut self,
        item_id: String,
        end: u64,
        result: Result<String, String>,
    ) -> bool {
        self.spec_running = false;
        let Some(s) = self
            .spec
            .as_mut()
            .filter(|s| s.item_id == item_id && s.end == end)
        else {
            return true; // the caller spoke again: stale
        };
        match result {
            Ok(text) => {
                let wanted = self.settings.audio_output
                    && self
                        .settings
                        .turn_detection
                        .as_ref()
                        .is_none_or(|t| t.create_response);
                if wanted && !text.trim().is_empty() {
                    if let Some(pool) = self.speech.get() {
                        let reply = reply_to(&self.settings, &self.clock, &text);
                        s.prepared = Some(response::Prepared::start(reply, &pool));
                    }
                }
                s.text = Some(text);
                if s.confirmed.is_some() {
                    return self.adopt_spec().await;
                }
                true
            }
            Err(e) => {
                let Some(create) = s.confirmed else {
                    self.spec = None; // the stop transcribes again
                    return true;
                };
                tracing::debug!(error = %e, "speculative transcription failed; retrying");
                let Some(s) = self.spec.take() else {
                    return true;
                };
                self.transcribe(s.item_id, s.pcm, create).await
            }
        }
    }

    /// The turn stopped where the speculation assumed: use its transcript and prepared reply.
    pub(super) async fn adopt_spec(&mut self) -> bool {
        let Some(s) = self.spec.take() else {
            return true;
        };
        let (Some(text), Some(create)) = (s.text, s.confirmed) else {
            return true;
        };
        let audio_ms = vad::millis(s.pcm.len() as u64);
        self.on_transcript(s.item_id, text, audio_ms, create, s.prepared)
            .await
    }

    /// Queue a turn for speech-to-text (the conversation's STT task keeps turns in order).
    pub(super) async fn transcribe(
        &mut self,
        item_id: String,
        pcm: Vec<i16>,
        create: bool,
    ) -> bool {
        let Some(pool) = self.speech.get() else {
            let why = self.speech.missing.clone();
            return self.error("audio_unavailable", why).await;
        };
        let stt = self.stt.get_or_insert_with(|| {
            let (tx, rx) = mpsc::channel(8);
            tokio::spawn(stt_task(pool, rx, self.steps.clone()));
            tx
        });
        let job = SttJob {
            item_id,
            pcm,
            create_response: create,
        };
        if stt.send(job).await.is_err() {
            return self
                .error("speech_failed", "speech-to-text task ended".into())
                .await;
        }
        true
    }
}

pub(super) async fn stt_task(
    pool: Arc<SpeechPool>,
    mut jobs: mpsc::Receiver<SttJob>,
    steps: mpsc::Sender<Step>,
) {
    while let Some(job) = jobs.recv().await {
        let audio_ms = vad::millis(job.pcm.len() as u64);
        let step = match pool.transcribe(job.pcm).await {
            Ok(text) => Step::Transcript {
                item_id: job.item_id,
                text,
                audio_ms,
                create_response: job.create_response,
            },
            Err(e) => Step::TranscriptFailed {
                item_id: job.item_id,
                error: e.to_string(),
            },
        };
        if steps.send(step).await.is_err() {
            return;
        }
    }
}
