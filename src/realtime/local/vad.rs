//! Turn detection of the `local` provider (OpenAI `server_vad` semantics) on the `earshot` voice
//! activity detector: 16 kHz audio in 256-sample (16 ms) frames, each scored 0..1.
//!
//! Pure and time-free: sample counts are time. Speech starts when [`MIN_SPEECH_FRAMES`] frames in
//! a row score at least `threshold` (its start is the first of them); it stops once
//! `silence_duration_ms` of audio after the last voiced frame scored below it (its end is the end
//! of that last voiced frame). `prefix_padding_ms` is the caller's to apply when it cuts the turn's
//! audio ([`TurnDetector::prefix_samples`]). Positions count 16 kHz samples from the first sample
//! pushed. Before it stops, a turn reports [`VadEvent::Paused`] after [`PAUSE_MS`] of silence: the
//! caller may start transcribing then, speculatively, and use the result if the turn stops with
//! the same end.

use crate::realtime::provider::TurnDetection;

/// Sample rate the detector runs at.
pub const RATE: u32 = 16_000;
/// Samples per scored frame (16 ms).
pub const FRAME: usize = 256;
/// Voiced frames in a row that start speech (48 ms): a click or a cough onset is not a turn.
pub const MIN_SPEECH_FRAMES: u32 = 3;

/// Silence after which a speaking turn reports [`VadEvent::Paused`] (capped at the silence that
/// ends a turn).
pub const PAUSE_MS: u32 = 160;

/// Scores one 256-sample frame at 16 kHz: the probability that it is speech.
pub trait FrameScorer: Send {
    fn score(&mut self, frame: &[i16]) -> f32;
}

impl FrameScorer for Box<earshot::Detector> {
    fn score(&mut self, frame: &[i16]) -> f32 {
        self.predict_i16(frame)
    }
}

/// A change of turn, at a 16 kHz sample position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    /// Speech began at sample `start`.
    Started { start: u64 },
    /// The caller has been silent for [`PAUSE_MS`] since sample `end`; the turn stops with this
    /// `end` unless speech resumes first. At most once per pause.
    Paused { end: u64 },
    /// Speech ended at sample `end` (reported `silence_duration_ms` later).
    Stopped { end: u64 },
}

pub struct TurnDetector<S: FrameScorer = Box<earshot::Detector>> {
    scorer: S,
    threshold: f32,
    silence_samples: u64,
    pause_samples: u64,
    prefix_samples: u64,
    paused: bool,
    pending: Vec<i16>,
    /// Samples scored so far (the position of `pending[0]`).
    pos: u64,
    voiced_run: u32,
    run_start: u64,
    speaking: bool,
    last_voice_end: u64,
}

/// Samples at 16 kHz in `ms`.
pub fn samples(ms: u32) -> u64 {
    u64::from(ms) * u64::from(RATE) / 1000
}

/// Milliseconds of `samples` at 16 kHz (saturating at `u32::MAX`).
pub fn millis(samples: u64) -> u32 {
    u32::try_from(samples * 1000 / u64::from(RATE)).unwrap_or(u32::MAX)
}

impl TurnDetector {
    /// A detector on earshot's built-in model.
    pub fn new(cfg: &TurnDetection) -> TurnDetector {
        TurnDetector::with_scorer(earshot::Detector::default_boxed(), cfg)
    }
}

impl<S: FrameScorer> TurnDetector<S> {
    pub fn with_scorer(scorer: S, cfg: &TurnDetection) -> TurnDetector<S> {
        TurnDetector {
            scorer,
            threshold: cfg.threshold.clamp(0.0, 1.0),
            silence_samples: samples(cfg.silence_duration_ms).max(FRAME as u64),
            pause_samples: samples(PAUSE_MS.min(cfg.silence_duration_ms)).max(FRAME as u64),
            prefix_samples: samples(cfg.prefix_padding_ms),
            paused: false,
            pending: Vec::with_capacity(FRAME),
            pos: 0,
            voiced_run: 0,
            run_start: 0,
            speaking: false,
            last_voice_end: 0,
        }
    }

    /// Count positions from `pos` (a detector switched on mid-conversation).
    pub fn starting_at(mut self, pos: u64) -> Self {
        self.pos = pos;
        self
    }

    /// Take new settings; a turn in progress continues under them.
    pub fn configure(&mut self, cfg: &TurnDetection) {
        self.threshold = cfg.threshold.clamp(0.0, 1.0);
        self.silence_samples = samples(cfg.silence_duration_ms).max(FRAME as u64);
        self.pause_samples = samples(PAUSE_MS.min(cfg.silence_duration_ms)).max(FRAME as u64);
        self.prefix_samples = samples(cfg.prefix_padding_ms);
    }

    /// Audio to keep from before speech started (`prefix_padding_ms`), in samples.
    pub fn prefix_samples(&self) -> u64 {
        self.prefix_samples
    }

    pub fn is_speaking(&self) -> bool {
        self.speaking
    }

    /// End of the last voiced frame (valid while speaking).
    pub fn last_voice_end(&self) -> u64 {
        self.last_voice_end
    }

    /// Samples pushed so far.
    pub fn position(&self) -> u64 {
        self.pos + self.pending.len() as u64
    }

    /// Forget the turn in progress (the caller committed or cleared the buffer).
    pub fn end_turn(&mut self) {
        self.speaking = false;
        self.voiced_run = 0;
    }

    /// Feed 16 kHz audio; returns the turn changes it completes, in order.
    pub fn push(&mut self, mut pcm: &[i16]) -> Vec<VadEvent> {
        let mut events = Vec::new();
        while !pcm.is_empty() {
            let take = (FRAME - self.pending.len()).min(pcm.len());
            self.pending.extend_from_slice(&pcm[..take]);
            pcm = &pcm[take..];
            if self.pending.len() < FRAME {
                break;
            }
            let score = self.scorer.score(&self.pending);
            self.pending.clear();
            let start = self.pos;
            self.pos += FRAME as u64;
            self.frame(start, score >= self.threshold, &mut events);
        }
        events
    }

    fn frame(&mut self, start: u64, voiced: bool, events: &mut Vec<VadEvent>) {
        if voiced {
            if self.voiced_run == 0 {
                self.run_start = start;
            }
            self.voiced_run += 1;
            if self.speaking {
                self.last_voice_end = self.pos;
                self.paused = false;
            } else if self.voiced_run >= MIN_SPEECH_FRAMES {
                self.speaking = true;
                self.paused = false;
                self.last_voice_end = self.pos;
                events.push(VadEvent::Started {
                    start: self.run_start,
                });
            }
        } else {
            self.voiced_run = 0;
            let silent = self.pos - self.last_voice_end;
            if self.speaking && !self.paused && silent >= self.pause_samples {
                self.paused = true;
                events.push(VadEvent::Paused {
                    end: self.last_voice_end,
                });
            }
            if self.speaking && silent >= self.silence_samples {
                self.speaking = false;
                events.push(VadEvent::Stopped {
                    end: self.last_voice_end,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scores a frame by its loudness: synthetic audio where "speech" is a loud tone.
    struct Loudness;
    impl FrameScorer for Loudness {
        fn score(&mut self, frame: &[i16]) -> f32 {
            let peak = frame.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
            if peak > 1000 {
                0.9
            } else {
                0.1
            }
        }
    }

    fn tone(ms: u32) -> Vec<i16> {
        (0..samples(ms))
            .map(|i| ((i as f32 * 0.2).sin() * 10_000.0) as i16)
            .collect()
    }

    fn silence(ms: u32) -> Vec<i16> {
        vec![0; samples(ms) as usize]
    }

    fn cfg(silence_ms: u32) -> TurnDetection {
        TurnDetection {
            silence_duration_ms: silence_ms,
            ..TurnDetection::default()
        }
    }

    /// Feed in uneven chunks, collecting events with the position they were reported at.
    fn run(d: &mut TurnDetector<Loudness>, audio: &[i16]) -> Vec<(VadEvent, u64)> {
        let mut out = Vec::new();
        for chunk in audio.chunks(333) {
            for e in d.push(chunk) {
                if !matches!(e, VadEvent::Paused { .. }) {
                    out.push((e, d.position()));
                }
            }
        }
        out
    }

    #[test]
    fn a_pause_is_reported_before_the_stop_with_the_same_end() {
        let mut d = TurnDetector::with_scorer(Loudness, &cfg(500));
        let mut ev = Vec::new();
        // A 250 ms pause (paused, not stopped), more speech, then the end.
        for chunk in [tone(500), silence(250), tone(500), silence(600)]
            .concat()
            .chunks(320)
        {
            ev.extend(d.push(chunk));
        }
        let pauses: Vec<u64> = ev
            .iter()
            .filter_map(|e| match e {
                VadEvent::Paused { end } => Some(*end),
                _ => None,
            })
            .collect();
        assert_eq!(pauses.len(), 2, "{ev:?}");
        assert_eq!(ev.last(), Some(&VadEvent::Stopped { end: pauses[1] }));
        assert!(pauses[0] < pauses[1]);
    }

    #[test]
    fn a_turn_starts_and_stops_at_sample_positions() {
        let mut d = TurnDetector::with_scorer(Loudness, &cfg(500));
        let audio = [silence(1024), tone(1024), silence(2048)].concat();
        let ev = run(&mut d, &audio);
        assert_eq!(ev.len(), 2, "{ev:?}");
        // 1024 ms = 64 frames of 256: speech starts exactly on the tone's first frame.
        assert_eq!(ev[0].0, VadEvent::Started { start: 16_384 });
        assert_eq!(ev[1].0, VadEvent::Stopped { end: 32_768 });
        // Reported once 500 ms of silence followed the last voiced frame, not before.
        let reported = ev[1].1;
        assert!(reported >= 32_768 + samples(500), "{reported}");
        // (positions are read after each 333-sample chunk: within a frame plus a chunk)
        assert!(
            reported < 32_768 + samples(500) + FRAME as u64 + 333,
            "{reported}"
        );
        assert!(!d.is_speaking());
        assert_eq!(millis(16_384), 1024);
    }

    #[test]
    fn short_pauses_do_not_end_a_turn_and_clicks_do_not_start_one() {
        let mut d = TurnDetector::with_scorer(Loudness, &cfg(500));
        let click = tone(20); // one or two frames: below MIN_SPEECH_FRAMES
        let audio = [
            silence(500),
            click,
            silence(800),
            tone(600),
            silence(300), // shorter than silence_duration_ms
            tone(600),
            silence(700),
        ]
        .concat();
        let ev: Vec<VadEvent> = run(&mut d, &audio).into_iter().map(|(e, _)| e).collect();
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert!(matches!(ev[0], VadEvent::Started { start } if start >= samples(1300)));
        assert!(matches!(ev[1], VadEvent::Stopped { end } if end >= samples(2500) - FRAME as u64));
    }

    #[test]
    fn silence_duration_and_threshold_are_honoured() {
        // A longer silence_duration_ms keeps the turn open across a 600 ms pause.
        let mut d = TurnDetector::with_scorer(Loudness, &cfg(800));
        let audio = [tone(500), silence(600), tone(500), silence(900)].concat();
        assert_eq!(run(&mut d, &audio).len(), 2);
        // A threshold above every score finds no speech at all.
        let mut deaf = TurnDetector::with_scorer(
            Loudness,
            &TurnDetection {
                threshold: 0.95,
                ..cfg(500)
            },
        );
        assert!(run(&mut deaf, &audio).is_empty());
        assert_eq!(deaf.prefix_samples(), samples(300));
    }

    #[test]
    fn earshot_hears_no_speech_in_silence_or_a_steady_hum() {
        let mut d = TurnDetector::new(&cfg(500));
        let hum: Vec<i16> = (0..samples(2000))
            .map(|i| {
                ((i as f32 * 2.0 * std::f32::consts::PI * 50.0 / 16_000.0).sin() * 300.0) as i16
            })
            .collect();
        let audio = [silence(1000), hum].concat();
        let mut events = Vec::new();
        for chunk in audio.chunks(320) {
            events.extend(d.push(chunk));
        }
        assert!(events.is_empty(), "{events:?}");
    }
}
