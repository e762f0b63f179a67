//! Opus packet TOC parsing (RFC 6716 §3.1–3.2).
//!
//! [`parse_packet`] reads the table-of-contents byte and the frame-count framing of
//! one Opus packet and checks the framing rules of RFC 6716 §3.2 (code 0–3, frame
//! lengths, padding, the 120 ms limit). It never panics and never allocates; bytes
//! from the network go straight in.

use std::time::Duration;

/// Largest frame payload an Opus frame may carry (RFC 6716 §3.2.1).
const MAX_FRAME_BYTES: usize = 1275;
/// Largest packet duration in 48 kHz samples (120 ms, RFC 6716 §3.2.5).
const MAX_PACKET_SAMPLES: u32 = 5760;

/// Why a packet is not a well-formed Opus packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TocError {
    /// A zero-length packet (RFC 6716 R1).
    #[error("empty Opus packet")]
    Empty,
    /// The packet ends inside its framing header or a frame length.
    #[error("Opus packet truncated")]
    Truncated,
    /// The frame lengths do not add up to the packet length, or one frame exceeds 1275 bytes.
    #[error("invalid Opus frame lengths")]
    BadFrameLengths,
    /// A code 3 packet with zero frames or more than 120 ms of audio.
    #[error("invalid Opus frame count")]
    BadFrameCount,
}

/// The codec mode signalled by the TOC configuration number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpusMode {
    /// SILK only (configurations 0–11), speech oriented.
    Silk,
    /// SILK and CELT together (configurations 12–15).
    Hybrid,
    /// CELT only (configurations 16–31), music and low delay.
    Celt,
}

/// Audio bandwidth signalled by the TOC configuration number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpusBandwidth {
    /// 4 kHz.
    Narrowband,
    /// 6 kHz.
    Mediumband,
    /// 8 kHz.
    Wideband,
    /// 12 kHz.
    SuperWideband,
    /// 20 kHz.
    Fullband,
}

/// What one Opus packet holds, read from its TOC byte and framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusPacketInfo {
    /// TOC configuration number, 0–31.
    pub config: u8,
    /// Codec mode.
    pub mode: OpusMode,
    /// Audio bandwidth.
    pub bandwidth: OpusBandwidth,
    /// The stereo flag of the TOC byte.
    pub stereo: bool,
    /// Number of frames in the packet (1–48).
    pub frame_count: u8,
    /// Duration of each frame in 48 kHz samples (120 = 2.5 ms … 2880 = 60 ms).
    pub frame_samples: u32,
    /// The packet carries no coded audio: a DTX / comfort-noise packet (at most two
    /// bytes, or only zero-length frames). The decoder continues comfort noise (PLC).
    pub dtx: bool,
}

impl OpusPacketInfo {
    /// Total duration in 48 kHz samples.
    pub fn duration_samples(&self) -> u32 {
        u32::from(self.frame_count) * self.frame_samples
    }

    /// Total duration.
    pub fn duration(&self) -> Duration {
        Duration::from_micros(u64::from(self.duration_samples()) * 1000 / 48)
    }
}

/// Reads a frame length coded on one or two bytes (RFC 6716 §3.2.1).
/// Returns (length, bytes used).
fn frame_len(b: &[u8]) -> Result<(usize, usize), TocError> {
    match b {
        [] => Err(TocError::Truncated),
        [x, ..] if *x < 252 => Ok((usize::from(*x), 1)),
        [_] => Err(TocError::Truncated),
        [x, y, ..] => Ok((usize::from(*y) * 4 + usize::from(*x), 2)),
    }
}

/// Parses the TOC byte and framing of one Opus packet.
///
/// ```
/// let info = parlor_media::parse_packet(&[0x78, 1, 2, 3]).unwrap(); // CELT FB 20 ms, code 0
/// assert_eq!(info.frame_count, 1);
/// assert_eq!(info.duration_samples(), 960);
/// ```
pub fn parse_packet(packet: &[u8]) -> Result<OpusPacketInfo, TocError> {
    let (&toc, rest) = packet.split_first().ok_or(TocError::Empty)?;
    let config = toc >> 3;
    let stereo = toc & 0x04 != 0;
    let code = toc & 0x03;
    let (mode, bandwidth, frame_samples) = match config {
        0..=11 => {
            let bw = match config / 4 {
                0 => OpusBandwidth::Narrowband,
                1 => OpusBandwidth::Mediumband,
                _ => OpusBandwidth::Wideband,
            };
            (
                OpusMode::Silk,
                bw,
                [480, 960, 1920, 2880][usize::from(config % 4)],
            )
        }
        12..=15 => {
            let bw = if config < 14 {
                OpusBandwidth::SuperWideband
            } else {
                OpusBandwidth::Fullband
            };
            (OpusMode::Hybrid, bw, [480, 960][usize::from(config % 2)])
        }
        _ => {
            let bw = match (config - 16) / 4 {
                0 => OpusBandwidth::Narrowband,
                1 => OpusBandwidth::Wideband,
                2 => OpusBandwidth::SuperWideband,
                _ => OpusBandwidth::Fullband,
            };
            (
                OpusMode::Celt,
                bw,
                [120, 240, 480, 960][usize::from(config % 4)],
            )
        }
    };
    let (frame_count, payload) = match code {
        0 => {
            if rest.len() > MAX_FRAME_BYTES {
                return Err(TocError::BadFrameLengths);
            }
            (1u8, rest.len())
        }
        1 => {
            if rest.len() % 2 != 0 || rest.len() / 2 > MAX_FRAME_BYTES {
                return Err(TocError::BadFrameLengths);
            }
            (2, rest.len())
        }
        2 => {
            let (n1, used) = frame_len(rest)?;
            let remaining = rest.len() - used;
            if n1 > remaining || n1 > MAX_FRAME_BYTES || remaining - n1 > MAX_FRAME_BYTES {
                return Err(TocError::BadFrameLengths);
            }
            (2, remaining)
        }
        _ => {
            let (&fc, mut rest) = rest.split_first().ok_or(TocError::Truncated)?;
            let vbr = fc & 0x80 != 0;
            let padded = fc & 0x40 != 0;
            let m = fc & 0x3f;
            if m == 0 || u32::from(m) * frame_samples > MAX_PACKET_SAMPLES {
                return Err(TocError::BadFrameCount);
            }
            let mut padding = 0usize;
            if padded {
                loop {
                    let (&p, r) = rest.split_first().ok_or(TocError::Truncated)?;
                    rest = r;
                    if p == 255 {
                        padding += 254;
                    } else {
                        padding += usize::from(p);
                        break;
                    }
                }
            }
            let m_usize = usize::from(m);
            if vbr {
                let mut sum = 0usize;
                for _ in 0..m_usize - 1 {
                    let (n, used) = frame_len(rest)?;
                    rest = &rest[used..];
                    if n > MAX_FRAME_BYTES {
                        return Err(TocError::BadFrameLengths);
                    }
                    sum += n;
                }
                let data = rest
                    .len()
                    .checked_sub(padding)
                    .ok_or(TocError::BadFrameLengths)?;
                if sum > data || data - sum > MAX_FRAME_BYTES {
                    return Err(TocError::BadFrameLengths);
                }
                (m, data)
            } else {
                let data = rest
                    .len()
                    .checked_sub(padding)
                    .ok_or(TocError::BadFrameLengths)?;
                if data % m_usize != 0 || data / m_usize > MAX_FRAME_BYTES {
                    return Err(TocError::BadFrameLengths);
                }
                (m, data)
            }
        }
    };
    Ok(OpusPacketInfo {
        config,
        mode,
        bandwidth,
        stereo,
        frame_count,
        frame_samples,
        dtx: payload == 0 || packet.len() <= 2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code0_celt_fb_20ms() {
        let i = parse_packet(&[31 << 3, 9, 9]).unwrap();
        assert_eq!(i.mode, OpusMode::Celt);
        assert_eq!(i.bandwidth, OpusBandwidth::Fullband);
        assert_eq!(i.duration_samples(), 960);
        assert!(!i.dtx);
    }

    #[test]
    fn silk_60ms_and_code1() {
        let i = parse_packet(&[(3 << 3) | 1, 1, 2, 3, 4]).unwrap();
        assert_eq!(i.mode, OpusMode::Silk);
        assert_eq!(i.frame_count, 2);
        assert_eq!(i.duration_samples(), 2 * 2880);
        assert!(!i.dtx);
        assert_eq!(parse_packet(&[1, 1, 2, 3]), Err(TocError::BadFrameLengths));
    }

    #[test]
    fn code2_lengths() {
        assert!(parse_packet(&[(12 << 3) | 2, 2, 1, 1, 5]).is_ok());
        assert_eq!(parse_packet(&[2, 5, 1]), Err(TocError::BadFrameLengths));
        assert_eq!(parse_packet(&[2, 253]), Err(TocError::Truncated));
    }

    #[test]
    fn code3_cbr_vbr_padding() {
        // CBR, 3 frames of 2 bytes, 2 bytes of padding.
        let p = [(16 << 3) | 3, 0x40 | 3, 2, 1, 1, 2, 2, 3, 3, 0, 0];
        let i = parse_packet(&p).unwrap();
        assert_eq!(i.frame_count, 3);
        assert_eq!(i.duration_samples(), 360);
        // VBR, 2 frames: first 1 byte, second 3 bytes.
        let p = [(16 << 3) | 3, 0x80 | 2, 1, 7, 8, 8, 8];
        assert_eq!(parse_packet(&p).unwrap().frame_count, 2);
        // 0 frames, and 7 x 20 ms = 140 ms.
        assert_eq!(parse_packet(&[3, 0]), Err(TocError::BadFrameCount));
        assert_eq!(
            parse_packet(&[(31 << 3) | 3, 7]),
            Err(TocError::BadFrameCount)
        );
        assert_eq!(parse_packet(&[]), Err(TocError::Empty));
    }

    #[test]
    fn dtx_one_byte() {
        let i = parse_packet(&[(1 << 3)]).unwrap();
        assert!(i.dtx);
        assert_eq!(i.duration_samples(), 960);
    }
}
