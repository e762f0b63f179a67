//! N-input mixer for 20 ms frames of 48 kHz PCM, with a soft limiter, plus the
//! RFC 6464 audio level.
//!
//! Each tick the caller [`push`](Mixer::push)es the frame of every participant that
//! has one and then calls [`mix`](Mixer::mix) once. An input that pushed nothing
//! this tick (absent, not started yet, left) or that is muted contributes silence,
//! and the mix still advances one frame: the mix keeps wall-clock time, and a
//! participant who joins late is heard from its own join tick on.
//!
//! The sum is scaled by a soft limiter (instant attack at the frame, ~150 ms release
//! ramped across frames) and finally passed through a soft clipper whose output is
//! always below full scale, so loud inputs never wrap and never hard-clip.
//! Nothing allocates per frame; `add_input` allocates only when the input table grows.

/// Why the mixer refused a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MixerError {
    /// The input id was never added or has been removed.
    #[error("unknown mixer input")]
    UnknownInput,
    /// The frame does not hold `960 × channels` samples.
    #[error("expected {expected} samples, got {got}")]
    FrameSize {
        /// Expected interleaved samples.
        expected: usize,
        /// Given.
        got: usize,
    },
    /// The input already pushed a frame this tick.
    #[error("input already pushed a frame this tick")]
    AlreadyPushed,
    /// Channels other than 1 or 2.
    #[error("unsupported channel count {0}")]
    Channels(u8),
}

/// Handle of one mixer input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InputId(usize);

#[derive(Debug, Clone, Copy)]
struct Input {
    active: bool,
    gain: f32,
    muted: bool,
    pushed: bool,
    level: u8,
}

/// Limiter threshold and soft-clip knee, as a fraction of full scale.
const KNEE: f32 = 0.9;
/// Per-frame release coefficient: 1 - exp(-20 ms / 150 ms).
const RELEASE: f32 = 0.125;

/// Audio level of one frame as in RFC 6464: 0 (loudest, 0 dBov) to 127 (-127 dBov or
/// silence), from the RMS of the samples relative to full scale.
pub fn audio_level(pcm: &[i16]) -> u8 {
    if pcm.is_empty() {
        return 127;
    }
    let sum: i64 = pcm.iter().map(|&s| i64::from(s) * i64::from(s)).sum();
    if sum == 0 {
        return 127;
    }
    let rms = (sum as f64 / pcm.len() as f64).sqrt() / 32768.0;
    let dbov = 20.0 * rms.log10();
    (-dbov).round().clamp(0.0, 127.0) as u8
}

/// Round to nearest (ties to even) for |x| < 2²², without a libm call: adding and
/// removing 1.5·2²³ leaves no fraction bits in an f32.
#[inline]
fn round_fast(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (x + MAGIC) - MAGIC
}

fn soft_clip(x: f32) -> f32 {
    let a = x.abs();
    if a <= KNEE {
        x
    } else {
        let y = KNEE + (1.0 - KNEE) * ((a - KNEE) / (1.0 - KNEE)).tanh();
        y.copysign(x)
    }
}

/// Mixes N inputs into one 48 kHz frame. See the module docs.
#[derive(Debug)]
pub struct Mixer {
    channels: usize,
    acc: Vec<f32>,
    inputs: Vec<Input>,
    gain: f32,
    ticks: u64,
}

impl Mixer {
    /// A mixer for frames of `channels` (1 or 2) interleaved channels.
    pub fn new(channels: u8) -> Result<Self, MixerError> {
        if !(1..=2).contains(&channels) {
            return Err(MixerError::Channels(channels));
        }
        let channels = usize::from(channels);
        Ok(Mixer {
            channels,
            acc: vec![0.0; crate::FRAME_SAMPLES * channels],
            inputs: Vec::new(),
            gain: 1.0,
            ticks: 0,
        })
    }

    /// Interleaved samples per frame (`960 × channels`).
    pub fn frame_len(&self) -> usize {
        self.acc.len()
    }

    /// Frames mixed so far (the mix's clock, in 20 ms ticks).
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// Adds an input with gain 1.0, not muted.
    pub fn add_input(&mut self) -> InputId {
        let fresh = Input {
            active: true,
            gain: 1.0,
            muted: false,
            pushed: false,
            level: 127,
        };
        if let Some(i) = self.inputs.iter().position(|x| !x.active) {
            self.inputs[i] = fresh;
            InputId(i)
        } else {
            self.inputs.push(fresh);
            InputId(self.inputs.len() - 1)
        }
    }

    /// Removes an input; its id may be reused by a later `add_input`.
    pub fn remove_input(&mut self, id: InputId) -> Result<(), MixerError> {
        self.input(id)?.active = false;
        Ok(())
    }

    fn input(&mut self, id: InputId) -> Result<&mut Input, MixerError> {
        self.inputs
            .get_mut(id.0)
            .filter(|i| i.active)
            .ok_or(MixerError::UnknownInput)
    }

    /// Sets the linear gain of an input (1.0 = unchanged; negative is treated as 0).
    pub fn set_gain(&mut self, id: InputId, gain: f32) -> Result<(), MixerError> {
        self.input(id)?.gain = if gain.is_finite() { gain.max(0.0) } else { 0.0 };
        Ok(())
    }

    /// Mutes or unmutes an input; a muted input contributes silence.
    pub fn set_muted(&mut self, id: InputId, muted: bool) -> Result<(), MixerError> {
        self.input(id)?.muted = muted;
        Ok(())
    }

    /// RFC 6464 level of the input's last pushed frame (127 if absent this tick).
    pub fn input_level(&self, id: InputId) -> Option<u8> {
        self.inputs.get(id.0).filter(|i| i.active).map(|i| i.level)
    }

    /// Adds one input's frame for this tick. Returns its RFC 6464 level (before gain).
    pub fn push(&mut self, id: InputId, pcm: &[i16]) -> Result<u8, MixerError> {
        let expected = self.acc.len();
        let inp = self.input(id)?;
        if pcm.len() != expected {
            return Err(MixerError::FrameSize {
                expected,
                got: pcm.len(),
            });
        }
        if inp.pushed {
            return Err(MixerError::AlreadyPushed);
        }
        inp.pushed = true;
        inp.level = audio_level(pcm);
        let (level, muted, gain) = (inp.level, inp.muted, inp.gain);
        if !muted && gain > 0.0 {
            let g = gain / 32768.0;
            for (a, &s) in self.acc.iter_mut().zip(pcm) {
                *a += f32::from(s) * g;
            }
        }
        Ok(level)
    }

    /// Produces this tick's mix into `out` (`frame_len` samples) and starts the next
    /// tick. Returns the RFC 6464 level of the mix.
    pub fn mix(&mut self, out: &mut [i16]) -> Result<u8, MixerError> {
        let n = self.acc.len();
        let got = out.len();
        let out = out
            .get_mut(..n)
            .ok_or(MixerError::FrameSize { expected: n, got })?;
        let peak = self.acc.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let want = if peak > KNEE { KNEE / peak } else { 1.0 };
        let new_gain = if want < self.gain {
            want
        } else {
            (self.gain + (1.0 - self.gain) * RELEASE).min(want)
        };
        // Attack is instant (the whole frame gets the lower gain, so the peak stays at
        // the knee); release ramps across the frame to avoid zipper noise. The soft
        // clipper only runs when a sample can exceed the knee.
        let frames = n / self.channels;
        let (mut g, step) = if new_gain < self.gain {
            (new_gain, 0.0)
        } else {
            (self.gain, (new_gain - self.gain) / frames as f32)
        };
        let clip = peak * g.max(new_gain) > KNEE;
        // Scale by 32768 so a lone input at gain 1 passes through bit-exact; the
        // float-to-int cast saturates, and the output stays below full scale anyway.
        for (o, a) in out
            .chunks_exact_mut(self.channels)
            .zip(self.acc.chunks_exact(self.channels))
        {
            g += step;
            for (oo, aa) in o.iter_mut().zip(a) {
                let mut y = *aa * g;
                if clip {
                    y = soft_clip(y);
                }
                *oo = round_fast(y * 32768.0) as i16;
            }
        }
        self.acc.fill(0.0);
        self.gain = new_gain;
        for i in self.inputs.iter_mut() {
            if !i.pushed {
                i.level = 127;
            }
            i.pushed = false;
        }
        self.ticks += 1;
        Ok(audio_level(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(audio_level(&[0; 960]), 127);
        let full: Vec<i16> = (0..960)
            .map(|i| if i % 2 == 0 { 32767 } else { -32768 })
            .collect();
        assert_eq!(audio_level(&full), 0);
        let sine: Vec<i16> = (0..960)
            .map(|i| ((i as f32 * 0.1).sin() * 3276.8) as i16)
            .collect();
        assert_eq!(audio_level(&sine), 23); // -20 dB amplitude, -3 dB sine RMS
    }
}
