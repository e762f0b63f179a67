//! One assistant in one call's room: an in-process AGENT participant that subscribes to the
//! caller's audio only, decodes it (Opus 48 kHz → PCM 24 kHz) into the model conversation, and
//! publishes the model's reply audio as an Opus track paced at 20 ms (24 kHz → 48 kHz → Opus).
//!
//! Barge-in: caller speech during playout (the provider's `SpeechStarted`) drops the reply audio
//! not yet played at once — the next 20 ms tick sends nothing — and sends the provider
//! `CancelResponse` then `Truncate` at the position the caller actually heard
//! ([`Playout`]). Both turns land in the call's model session history. The task owns all of its
//! state; the media worker is reached with `try_send` only, so a stalled provider never stalls it
//! (caller audio the provider cannot take is dropped and counted).

use super::captions;
use super::pacer::{Pacer, FRAME};
use super::Assistants;
use crate::realtime::playout::Playout;
use crate::realtime::provider::{
    estimate_tokens, Conversation, Input, Output, ResponseStatus, SessionSettings, TurnDetection,
};
use crate::sfu::local::{LocalOptions, LocalParticipant, LocalTrack};
use crate::sfu::worker::LocalMedia;
use crate::state::AppState;
use crate::store::{AssistantCallRecord, RtMessageRecord};
use parlor_media::{EncoderConfig, OpusDecoder, OpusEncoder, Resampler};
use parlor_signaling::protocol::proto;
use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Why an assistant stopped.
#[derive(Debug)]
enum Ended {
    CallerLeft,
    RoomClosed,
    ProviderClosed,
    Failed(String),
}

/// Run the call's assistant until the caller leaves, the room closes or the model fails.
pub async fn run(
    state: &AppState,
    reg: &Assistants,
    ac: AssistantCallRecord,
    stop: CancellationToken,
) {
    let span = tracing::info_span!("assistant", call = %ac.call_id, assistant = %ac.assistant_id);
    async {
        let ended = bridge(state, reg, &ac, &stop).await;
        tracing::info!(?ended, "assistant left the call");
        let now = state.clock.unix_ms();
        if let Ended::Failed(reason) = &ended {
            reg.metrics().provider_errors.fetch_add(1, Relaxed);
            let reason = format!("model_failed: {reason}");
            let _ = state
                .store
                .update_assistant_call(&ac.call_id, None, None, Some(&reason))
                .await;
            if let Some(sid) = &ac.model_session_id {
                let _ = state
                    .store
                    .set_rt_status(sid, "failed", now, true, Some(&reason))
                    .await;
            }
            // The call ends with the model: the caller is removed (told why), the room empties
            // and the call is finalized with this end reason.
            let removed = crate::sfu::remove_participant(
                &state.sfu,
                &state.workers,
                &ac.call_id,
                &ac.caller_identity,
                "the assistant's model failed",
            )
            .await;
            tracing::warn!(%reason, caller_removed = removed, "assistant call ended: the model failed");
        } else if let Some(sid) = &ac.model_session_id {
            let _ = state
                .store
                .set_rt_status(sid, "completed", now, false, None)
                .await;
        }
    }
    .instrument(span)
    .await
}

async fn bridge(
    state: &AppState,
    reg: &Assistants,
    ac: &AssistantCallRecord,
    stop: &CancellationToken,
) -> Ended {
    let assistant = match state.store.get_assistant(&ac.assistant_id).await {
        Ok(Some(a)) => a,
        Ok(None) => return Ended::Failed("the assistant was deleted".into()),
        Err(e) => return Ended::Failed(format!("store: {e}")),
    };
    let Some(model) = state.realtime.model(&assistant.model).cloned() else {
        return Ended::Failed(format!(
            "model `{}` is not in the catalogue",
            assistant.model
        ));
    };
    let Some(provider) = state.realtime.providers.get(&model.provider).cloned() else {
        return Ended::Failed(format!("provider `{}` is not configured", model.provider));
    };
    let settings = SessionSettings {
        model: model.provider_model().to_string(),
        instructions: assistant.system_prompt.clone(),
        temperature: assistant.temperature as f32,
        max_output_tokens: u32::try_from(assistant.max_tokens).ok(),
        voice: assistant.voice.clone(),
        audio_output: true,
        turn_detection: Some(TurnDetection::default()),
    };
    let conv = match provider.start(settings, Vec::new()).await {
        Ok(c) => c,
        Err(e) => return Ended::Failed(e.to_string()),
    };
    let opts = LocalOptions {
        room: ac.call_id.clone(),
        identity: super::IDENTITY.into(),
        name: assistant.name.clone(),
        kind: proto::participant_info::Kind::Agent,
        subscribe: true,
        publish: true,
        publish_data: true,
        hidden: false,
    };
    let lp = match LocalParticipant::join(
        &state.sfu,
        &state.workers,
        state.config.room.max_rooms,
        opts,
    )
    .await
    {
        Ok(lp) => lp,
        Err(e) => return Ended::Failed(format!("joining the room: {e}")),
    };
    let track = match lp.publish_audio("assistant").await {
        Ok(t) => t,
        Err(e) => return Ended::Failed(format!("publishing audio: {e}")),
    };
    if let Some(g) = assistant.greeting.as_ref().filter(|g| !g.trim().is_empty()) {
        let _ = conv.input.send(Input::Say(g.clone())).await;
    }
    let mut b = match Bridge::new(state, reg, ac, lp, track, conv) {
        Ok(b) => b,
        Err(e) => return Ended::Failed(e),
    };
    let ended = b.run(stop).await;
    b.lp.leave().await;
    ended
}

struct Bridge<'a> {
    state: &'a AppState,
    reg: &'a Assistants,
    ac: &'a AssistantCallRecord,
    lp: LocalParticipant,
    track: LocalTrack,
    conv: Conversation,
    caller_track: Option<Arc<str>>,
    decoder: OpusDecoder,
    down: Resampler,
    last_seq: Option<u16>,
    encoder: OpusEncoder,
    up: Resampler,
    pacer: Pacer,
    playout: Playout,
    rtp_seq: u16,
    rtp_ts: u32,
    /// Responses cancelled by a barge-in: their late audio is dropped.
    cancelled: HashSet<String>,
    /// The caller stopped speaking here and no assistant audio has gone out since.
    turn_end: Option<Instant>,
    /// When the running response started (for its response time).
    response_start: Option<Instant>,
    audio_input: bool,
    /// The assistant caption being streamed: (stream id, next chunk index, response id).
    caption: Option<(String, u64, String)>,
}

impl<'a> Bridge<'a> {
    fn new(
        state: &'a AppState,
        reg: &'a Assistants,
        ac: &'a AssistantCallRecord,
        lp: LocalParticipant,
        track: LocalTrack,
        conv: Conversation,
    ) -> Result<Self, String> {
        let err = |e: &dyn std::fmt::Display| format!("audio pipeline: {e}");
        Ok(Bridge {
            state,
            reg,
            ac,
            lp,
            track,
            conv,
            caller_track: None,
            decoder: OpusDecoder::new(1).map_err(|e| err(&e))?,
            down: Resampler::new(48_000, 24_000, 1, 1).map_err(|e| err(&e))?,
            last_seq: None,
            encoder: OpusEncoder::new(EncoderConfig {
                channels: 1,
                ..EncoderConfig::default()
            })
            .map_err(|e| err(&e))?,
            up: Resampler::new(24_000, 48_000, 1, 1).map_err(|e| err(&e))?,
            pacer: Pacer::default(),
            playout: Playout::new(),
            rtp_seq: rand::random(),
            rtp_ts: rand::random(),
            cancelled: HashSet::new(),
            turn_end: None,
            response_start: None,
            audio_input: true,
            caption: None,
        })
    }

    async fn run(&mut self, stop: &CancellationToken) -> Ended {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ended::CallerLeft,
                _ = tick.tick() => self.play_tick(),
                m = self.lp.recv() => match m {
                    Some(m) => self.on_media(m),
                    None => return Ended::RoomClosed,
                },
                o = self.conv.output.recv() => match o {
                    Some(o) => {
                        if let Some(end) = self.on_output(o).await {
                            return end;
                        }
                    }
                    None => return Ended::ProviderClosed,
                },
            }
        }
    }

    /// One 20 ms tick: send the next reply frame, if any. The RTP timestamp moves on either way.
    fn play_tick(&mut self) {
        let now = self.state.clock.now();
        let mut pcm = [0i16; FRAME];
        let frame = self
            .pacer
            .next_frame(&mut pcm)
            .map(|f| (f.item_id.to_string(), f.samples, f.talkspurt_start));
        if let Some((item, samples, start)) = frame {
            self.playout.played(&item, samples);
            let mut up = [0i16; 2 * FRAME];
            let mut pkt = [0u8; 1500];
            let sent = self
                .up
                .process(&pcm, &mut up)
                .ok()
                .and_then(|_| self.encoder.encode(&up, &mut pkt).ok())
                .map(|n| {
                    let payload = bytes::Bytes::copy_from_slice(&pkt[..n]);
                    self.lp
                        .send_rtp(&self.track, self.rtp_seq, self.rtp_ts, start, payload)
                        .is_ok()
                });
            self.rtp_seq = self.rtp_seq.wrapping_add(1);
            if sent == Some(true) {
                if let Some(t) = self.turn_end.take() {
                    let latency = now.saturating_duration_since(t);
                    self.reg.metrics().observe_latency(latency.as_secs_f64());
                    tracing::debug!(latency_ms = latency.as_millis() as u64, "first reply audio");
                }
            }
        } else if self.playout.item_id().is_some() {
            // Everything queued was played: nothing to truncate on the next barge-in.
            self.playout.finish();
        }
        self.rtp_ts = self.rtp_ts.wrapping_add(960);
    }

    /// Caller audio: decode, conceal short gaps, resample to 24 kHz, hand to the provider.
    fn on_media(&mut self, m: LocalMedia) {
        match m {
            LocalMedia::TrackAdded {
                track_sid,
                publisher,
                mime_type,
                ..
            } if publisher == self.ac.caller_identity
                && mime_type.eq_ignore_ascii_case("audio/opus") =>
            {
                self.caller_track = Some(track_sid);
                self.last_seq = None;
            }
            LocalMedia::TrackAdded { .. } => {}
            LocalMedia::TrackRemoved { track_sid } => {
                if self.caller_track.as_ref() == Some(&track_sid) {
                    self.caller_track = None;
                }
            }
            LocalMedia::Rtp(p) => {
                if self.caller_track.as_ref() != Some(&p.track_sid) || !self.audio_input {
                    return;
                }
                let lost = match self.last_seq {
                    Some(last) => {
                        let d = p.seq.wrapping_sub(last);
                        if d == 0 || d > 0x8000 {
                            return; // duplicate or late: already covered
                        }
                        (d - 1).min(5)
                    }
                    None => 0,
                };
                self.last_seq = Some(p.seq);
                let mut pcm48 = [0i16; 5760];
                for _ in 0..lost {
                    if self.decoder.conceal(Some(&p.payload), &mut pcm48).is_ok() {
                        self.forward(&pcm48[..960]);
                    }
                }
                if let Ok(n) = self.decoder.decode(&p.payload, &mut pcm48) {
                    for chunk in pcm48[..n.min(5760)].chunks_exact(960) {
                        self.forward(chunk);
                    }
                }
            }
        }
    }

    fn forward(&mut self, pcm48: &[i16]) {
        let mut pcm24 = [0i16; FRAME];
        if self.down.process(pcm48, &mut pcm24).is_err() {
            return;
        }
        match self.conv.input.try_send(Input::Audio(pcm24.to_vec())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.reg.metrics().input_dropped.fetch_add(1, Relaxed);
            }
            Err(TrySendError::Closed(_)) => {}
        }
    }

    /// Stream the assistant's reply text as a caption (one stream per response).
    async fn caption_delta(&mut self, response_id: &str, text: &str) {
        if self
            .caption
            .as_ref()
            .is_none_or(|(_, _, r)| r != response_id)
        {
            if let Some((old, _, _)) = self.caption.take() {
                let _ = self
                    .lp
                    .send_data(captions::trailer(&old, "interrupted"))
                    .await;
            }
            let stream = format!("asst-{response_id}");
            let h = captions::header(
                &stream,
                &self.track.sid,
                super::IDENTITY,
                self.state.clock.unix_ms(),
            );
            let _ = self.lp.send_data(h).await;
            self.caption = Some((stream, 0, response_id.to_string()));
        }
        if let Some((stream, idx, _)) = self.caption.as_mut() {
            let p = captions::chunk(stream, *idx, text);
            *idx += 1;
            let _ = self.lp.send_data(p).await;
        }
    }

    async fn on_output(&mut self, o: Output) -> Option<Ended> {
        let now = self.state.clock.now();
        match o {
            Output::Ready => {}
            Output::SpeechStarted { .. } => {
                self.turn_end = None;
                if self.pacer.is_playing() {
                    // Barge-in: silence now, then cancel and truncate at what was heard.
                    self.pacer.clear();
                    self.reg.metrics().barge_ins.fetch_add(1, Relaxed);
                    let heard = self.playout.played_ms();
                    for i in self.playout.barge_in() {
                        let _ = self.conv.input.send(i).await;
                    }
                    tracing::info!(heard_ms = heard, "barge-in: reply cut");
                }
            }
            Output::SpeechStopped { .. } => self.turn_end = Some(now),
            Output::InputTranscript { item_id, text } => {
                if !text.trim().is_empty() {
                    let stream = format!("user-{item_id}");
                    let track = self.caller_track.as_deref().unwrap_or("").to_string();
                    let now_ms = self.state.clock.unix_ms();
                    let who = self.ac.caller_identity.clone();
                    for p in [
                        captions::header(&stream, &track, &who, now_ms),
                        captions::chunk(&stream, 0, &text),
                        captions::trailer(&stream, ""),
                    ] {
                        let _ = self.lp.send_data(p).await;
                    }
                    let (state, ac) = (self.state, self.ac);
                    store_message(state, ac, "user", &text, estimate_tokens(&text), None, 0, 0)
                        .await;
                }
            }
            Output::ResponseStarted { response_id } => {
                self.cancelled.remove(&response_id);
                self.response_start = Some(now);
            }
            Output::AudioDelta {
                response_id,
                item_id,
                pcm,
            } => {
                if !self.cancelled.contains(&response_id) && !self.pacer.push(&item_id, &pcm) {
                    tracing::warn!("reply audio buffer full: audio dropped");
                }
            }
            Output::TextDelta {
                response_id, text, ..
            } => {
                if !self.cancelled.contains(&response_id) {
                    self.caption_delta(&response_id, &text).await;
                }
            }
            Output::ResponseDone {
                response_id,
                status,
                text,
                usage,
            } => {
                if let Some((stream, _, rid)) = self.caption.take() {
                    let reason = if status == ResponseStatus::Completed {
                        ""
                    } else {
                        "interrupted"
                    };
                    if rid == response_id {
                        let _ = self.lp.send_data(captions::trailer(&stream, reason)).await;
                    }
                }
                if status == ResponseStatus::Cancelled {
                    self.cancelled.insert(response_id);
                }
                let ms = self
                    .response_start
                    .take()
                    .map(|t| now.saturating_duration_since(t).as_millis() as i64);
                if !text.trim().is_empty() {
                    let tokens = if usage.output_tokens > 0 {
                        usage.output_tokens
                    } else {
                        estimate_tokens(&text)
                    };
                    let (state, ac) = (self.state, self.ac);
                    store_message(
                        state,
                        ac,
                        "assistant",
                        &text,
                        tokens,
                        ms,
                        usage.input_tokens as i64,
                        usage.output_tokens as i64,
                    )
                    .await;
                }
            }
            Output::Error {
                code,
                message,
                fatal,
            } => {
                if fatal {
                    return Some(Ended::Failed(format!("{code}: {message}")));
                }
                self.reg.metrics().provider_errors.fetch_add(1, Relaxed);
                if code == "audio_unavailable" && self.audio_input {
                    tracing::warn!(%message, "the model takes no audio: the caller is not heard");
                    self.audio_input = false;
                } else {
                    tracing::warn!(%code, %message, "provider error");
                }
            }
        }
        None
    }
}

/// Store one turn in the call's model session (and its usage on the session).
#[allow(clippy::too_many_arguments)]
async fn store_message(
    state: &AppState,
    ac: &AssistantCallRecord,
    role: &str,
    text: &str,
    tokens: u64,
    response_ms: Option<i64>,
    prompt: i64,
    completion: i64,
) {
    let Some(sid) = &ac.model_session_id else {
        return;
    };
    let m = RtMessageRecord {
        id: crate::ids::new_id("msg_"),
        session_id: sid.clone(),
        role: role.into(),
        content: text.to_string(),
        created_at: state.clock.unix_ms(),
        token_count: tokens as i64,
        metadata: serde_json::json!({ "callId": ac.call_id, "source": "assistant" }).to_string(),
        response_ms,
    };
    if let Err(e) = state.store.add_rt_message(&m, prompt, completion).await {
        tracing::warn!(error = %e, "cannot store the turn");
    }
}
