//! Sample-rate and channel conversion for 20 ms frames, built on `rubato`.
//!
//! A [`Resampler`] takes one 20 ms frame of interleaved `i16` PCM at the input rate
//! and returns one 20 ms frame at the output rate, every call: input and output
//! lengths are fixed, so a stream never drifts. It uses rubato's synchronous FFT
//! resampler (`FixedSync::Both`), which has a fixed latency ([`Resampler::delay`]).
//! Channels are mixed down before resampling (mono = mean of L and R) and up after
//! (L = R = mono), so the filter always runs on the fewest channels.
//! Nothing allocates after [`Resampler::new`].

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::Resampler as _;

/// Why a resampler cannot be built or a frame cannot be processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResampleError {
    /// Rates that do not give a whole number of samples in 20 ms, or are zero.
    #[error("unsupported rate conversion {from} Hz -> {to} Hz")]
    Rate {
        /// Input rate.
        from: u32,
        /// Output rate.
        to: u32,
    },
    /// Channels other than 1 or 2.
    #[error("unsupported channel count {0}")]
    Channels(u8),
    /// Input or output slice of the wrong length.
    #[error("expected {expected} samples, got {got}")]
    FrameSize {
        /// Expected interleaved samples.
        expected: usize,
        /// Given.
        got: usize,
    },
    /// rubato failed.
    #[error("rubato: {0}")]
    Rubato(String),
}

/// Converts 20 ms frames between rates (8, 16, 24, 48 kHz …) and between mono and stereo.
pub struct Resampler {
    from_ch: usize,
    to_ch: usize,
    work_ch: usize,
    in_frames: usize,
    out_frames: usize,
    inner: Option<rubato::Fft<f32>>,
    work_in: Vec<f32>,
    work_out: Vec<f32>,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("from_ch", &self.from_ch)
            .field("to_ch", &self.to_ch)
            .field("in_frames", &self.in_frames)
            .field("out_frames", &self.out_frames)
            .finish()
    }
}

fn check_ch(c: u8) -> Result<usize, ResampleError> {
    match c {
        1 | 2 => Ok(usize::from(c)),
        c => Err(ResampleError::Channels(c)),
    }
}

impl Resampler {
    /// Creates a converter from `from_rate`/`from_channels` to `to_rate`/`to_channels`.
    /// Both rates must be multiples of 50 Hz (a whole number of samples per 20 ms).
    pub fn new(
        from_rate: u32,
        to_rate: u32,
        from_channels: u8,
        to_channels: u8,
    ) -> Result<Self, ResampleError> {
        let bad = ResampleError::Rate {
            from: from_rate,
            to: to_rate,
        };
        if from_rate == 0
            || to_rate == 0
            || !from_rate.is_multiple_of(50)
            || !to_rate.is_multiple_of(50)
        {
            return Err(bad);
        }
        let from_ch = check_ch(from_channels)?;
        let to_ch = check_ch(to_channels)?;
        let work_ch = from_ch.min(to_ch);
        let in_frames = (from_rate / 50) as usize;
        let out_frames = (to_rate / 50) as usize;
        let inner = if from_rate == to_rate {
            None
        } else {
            let r = rubato::Fft::<f32>::new(
                from_rate as usize,
                to_rate as usize,
                in_frames,
                work_ch,
                rubato::FixedSync::Both,
            )
            .map_err(|e| ResampleError::Rubato(e.to_string()))?;
            if r.input_frames_next() != in_frames || r.output_frames_next() != out_frames {
                return Err(bad);
            }
            Some(r)
        };
        Ok(Resampler {
            from_ch,
            to_ch,
            work_ch,
            in_frames,
            out_frames,
            inner,
            work_in: vec![0.0; in_frames * work_ch],
            work_out: vec![0.0; out_frames * work_ch],
        })
    }

    /// Interleaved samples in one input frame.
    pub fn input_len(&self) -> usize {
        self.in_frames * self.from_ch
    }

    /// Interleaved samples in one output frame.
    pub fn output_len(&self) -> usize {
        self.out_frames * self.to_ch
    }

    /// Latency in output samples per channel (0 when only channels change).
    pub fn delay(&self) -> usize {
        self.inner.as_ref().map_or(0, |r| r.output_delay())
    }

    /// Converts one 20 ms frame. `input.len()` must be [`Self::input_len`] and
    /// `output.len()` at least [`Self::output_len`]; returns the samples written.
    pub fn process(&mut self, input: &[i16], output: &mut [i16]) -> Result<usize, ResampleError> {
        if input.len() != self.input_len() {
            return Err(ResampleError::FrameSize {
                expected: self.input_len(),
                got: input.len(),
            });
        }
        let out_len = self.output_len();
        if output.len() < out_len {
            return Err(ResampleError::FrameSize {
                expected: out_len,
                got: output.len(),
            });
        }
        // Down-mix (or copy) into the work buffer as f32.
        if self.from_ch == 2 && self.work_ch == 1 {
            for (w, lr) in self.work_in.iter_mut().zip(input.chunks_exact(2)) {
                *w = (f32::from(lr[0]) + f32::from(lr[1])) * 0.5 / 32768.0;
            }
        } else {
            for (w, s) in self.work_in.iter_mut().zip(input) {
                *w = f32::from(*s) / 32768.0;
            }
        }
        let work: &[f32] = match self.inner.as_mut() {
            None => &self.work_in,
            Some(r) => {
                let inp = InterleavedSlice::new(&self.work_in, self.work_ch, self.in_frames)
                    .map_err(|e| ResampleError::Rubato(e.to_string()))?;
                let mut out =
                    InterleavedSlice::new_mut(&mut self.work_out, self.work_ch, self.out_frames)
                        .map_err(|e| ResampleError::Rubato(e.to_string()))?;
                r.process_into_buffer(&inp, &mut out, None)
                    .map_err(|e| ResampleError::Rubato(e.to_string()))?;
                &self.work_out
            }
        };
        let to_i16 = |x: f32| (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
        if self.to_ch == 2 && self.work_ch == 1 {
            for (o, w) in output[..out_len].chunks_exact_mut(2).zip(work) {
                let v = to_i16(*w);
                o[0] = v;
                o[1] = v;
            }
        } else {
            for (o, w) in output[..out_len].iter_mut().zip(work) {
                *o = to_i16(*w);
            }
        }
        Ok(out_len)
    }
}
