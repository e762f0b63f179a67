//! libopus encoder and decoder wrappers for 20 ms frames at 48 kHz.
//!
//! [`OpusDecoder::decode_frame`] takes what the [`JitterBuffer`](crate::JitterBuffer)
//! hands out and does the right thing for each case: decode a packet, recover a lost
//! frame from the in-band FEC (LBRR) data of the *next* packet, or run packet-loss
//! concealment when there is nothing to recover from.

use crate::jitter::JitterFrame;

/// Sample rate of everything this crate encodes, decodes and mixes.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples per channel in one 20 ms frame at 48 kHz.
pub const FRAME_SAMPLES: usize = 960;
/// A buffer of this many bytes holds any packet the encoder produces.
pub const MAX_PACKET_BYTES: usize = 1500;

/// An error from libopus, or a frame of the wrong size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// libopus refused the call (corrupt packet, bad argument …).
    #[error("libopus: {0}")]
    Opus(String),
    /// Channels other than 1 or 2.
    #[error("unsupported channel count {0}")]
    Channels(u8),
    /// The PCM slice does not hold exactly one 20 ms frame.
    #[error("expected {expected} samples, got {got}")]
    FrameSize {
        /// Expected number of interleaved samples.
        expected: usize,
        /// Given number.
        got: usize,
    },
}

impl From<opus::Error> for CodecError {
    fn from(e: opus::Error) -> Self {
        CodecError::Opus(e.to_string())
    }
}

fn channels(n: u8) -> Result<opus::Channels, CodecError> {
    match n {
        1 => Ok(opus::Channels::Mono),
        2 => Ok(opus::Channels::Stereo),
        n => Err(CodecError::Channels(n)),
    }
}

/// What the encoder is tuned for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Application {
    /// Speech: prefers SILK/hybrid, which is where in-band FEC exists.
    Voip,
    /// Music or a mixed call recording.
    Audio,
}

/// Encoder settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderConfig {
    /// 1 or 2.
    pub channels: u8,
    /// Target bitrate in bits per second.
    pub bitrate: i32,
    /// Application tuning.
    pub application: Application,
    /// Add in-band FEC (LBRR) so the receiver can rebuild a lost frame from the next packet.
    /// Only SILK and hybrid modes carry it.
    pub fec: bool,
    /// Loss the encoder should plan its FEC for, in percent (0–100).
    pub expected_loss_percent: u8,
    /// Discontinuous transmission: near-silent frames become 1–2 byte packets.
    pub dtx: bool,
    /// 0–10; 10 is libopus' default.
    pub complexity: u8,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        EncoderConfig {
            channels: 1,
            bitrate: 32_000,
            application: Application::Voip,
            fec: true,
            expected_loss_percent: 10,
            dtx: false,
            complexity: 10,
        }
    }
}

/// A libopus encoder for 20 ms frames of interleaved 48 kHz `i16` PCM.
pub struct OpusEncoder {
    inner: opus::Encoder,
    channels: u8,
    pre_skip: u16,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("channels", &self.channels)
            .field("pre_skip", &self.pre_skip)
            .finish()
    }
}

impl OpusEncoder {
    /// Creates an encoder.
    pub fn new(cfg: EncoderConfig) -> Result<Self, CodecError> {
        let app = match cfg.application {
            Application::Voip => opus::Application::Voip,
            Application::Audio => opus::Application::Audio,
        };
        let mut inner = opus::Encoder::new(SAMPLE_RATE, channels(cfg.channels)?, app)?;
        inner.set_bitrate(opus::Bitrate::Bits(cfg.bitrate))?;
        inner.set_inband_fec(cfg.fec)?;
        inner.set_packet_loss_perc(i32::from(cfg.expected_loss_percent.min(100)))?;
        inner.set_dtx(cfg.dtx)?;
        inner.set_complexity(i32::from(cfg.complexity.min(10)))?;
        let lookahead = inner.get_lookahead()?;
        Ok(OpusEncoder {
            inner,
            channels: cfg.channels,
            pre_skip: u16::try_from(lookahead).unwrap_or(0),
        })
    }

    /// Channels per frame.
    pub fn channels(&self) -> u8 {
        self.channels
    }

    /// Encoder lookahead in 48 kHz samples: the OpusHead pre-skip / WebM CodecDelay.
    pub fn pre_skip(&self) -> u16 {
        self.pre_skip
    }

    /// Encodes one 20 ms frame (`960 × channels` interleaved samples) into `out`.
    /// Returns the packet length. `out` of [`MAX_PACKET_BYTES`] is always enough.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        let expected = FRAME_SAMPLES * usize::from(self.channels);
        if pcm.len() != expected {
            return Err(CodecError::FrameSize {
                expected,
                got: pcm.len(),
            });
        }
        Ok(self.inner.encode(pcm, out)?)
    }
}

/// How a decoded frame came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeKind {
    /// Decoded from its own packet.
    Normal,
    /// The packet was lost; rebuilt from the in-band FEC of the next packet.
    Fec,
    /// The packet was lost and nothing could rebuild it: packet-loss concealment.
    Plc,
}

/// A libopus decoder producing 48 kHz interleaved `i16` PCM.
pub struct OpusDecoder {
    inner: opus::Decoder,
    channels: u8,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder")
            .field("channels", &self.channels)
            .finish()
    }
}

/// True when `packet` carries SILK LBRR (in-band FEC) data for the frame before it.
#[allow(unsafe_code)]
fn has_lbrr(packet: &[u8]) -> bool {
    let Ok(len) = i32::try_from(packet.len()) else {
        return false;
    };
    if len == 0 {
        return false;
    }
    // SAFETY: `opus_packet_has_lbrr` only reads `len` bytes from `packet`, which is a
    // live slice of exactly that length; it keeps no pointer after returning and
    // returns a negative error code for malformed packets.
    let r = unsafe { opusic_sys::opus_packet_has_lbrr(packet.as_ptr(), len) };
    r > 0
}

impl OpusDecoder {
    /// Creates a decoder with 1 or 2 output channels (libopus up/down-mixes packets as needed).
    pub fn new(channels_out: u8) -> Result<Self, CodecError> {
        let inner = opus::Decoder::new(SAMPLE_RATE, channels(channels_out)?)?;
        Ok(OpusDecoder {
            inner,
            channels: channels_out,
        })
    }

    /// Output channels.
    pub fn channels(&self) -> u8 {
        self.channels
    }

    fn frame<'a>(&self, out: &'a mut [i16]) -> Result<&'a mut [i16], CodecError> {
        let n = FRAME_SAMPLES * usize::from(self.channels);
        let got = out.len();
        out.get_mut(..n)
            .ok_or(CodecError::FrameSize { expected: n, got })
    }

    /// Decodes one packet into `out` (room for 120 ms: `5760 × channels`).
    /// Returns samples per channel.
    pub fn decode(&mut self, packet: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        Ok(self.inner.decode(packet, out, false)?)
    }

    /// Fills one 20 ms frame for a lost packet: FEC from `next` (the packet after the
    /// lost one) when it carries LBRR data, otherwise PLC.
    pub fn conceal(
        &mut self,
        next: Option<&[u8]>,
        out: &mut [i16],
    ) -> Result<DecodeKind, CodecError> {
        let frame = self.frame(out)?;
        match next {
            Some(p) if has_lbrr(p) => {
                self.inner.decode(p, frame, true)?;
                Ok(DecodeKind::Fec)
            }
            _ => {
                self.inner.decode(&[], frame, false)?;
                Ok(DecodeKind::Plc)
            }
        }
    }

    /// Decodes what the jitter buffer handed out into exactly one 20 ms frame
    /// (`960 × channels` samples at the start of `out`).
    ///
    /// A packet that is corrupt, or holds other than 20 ms, is concealed instead
    /// (and reported as [`DecodeKind::Plc`]), so one bad packet from a peer never
    /// breaks the output timing.
    pub fn decode_frame(
        &mut self,
        frame: &JitterFrame<'_>,
        out: &mut [i16],
    ) -> Result<DecodeKind, CodecError> {
        match frame {
            JitterFrame::Packet { payload, .. } => {
                let ok = crate::toc::parse_packet(payload)
                    .map(|i| i.duration_samples() as usize == FRAME_SAMPLES)
                    .unwrap_or(false);
                if ok {
                    let f = self.frame(out)?;
                    if self.inner.decode(payload, f, false).is_ok() {
                        return Ok(DecodeKind::Normal);
                    }
                }
                tracing::trace!("undecodable packet, concealing");
                self.conceal(None, out)
            }
            JitterFrame::Missing { next, .. } => self.conceal(*next, out),
        }
    }
}
