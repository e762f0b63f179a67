//! # parlor-media
//!
//! Everything hard about audio in Parlor, as plain synchronous building blocks: no
//! tokio, no networking, no clock reads. Time always comes in as an argument (`now`
//! for arrival/playout, RTP timestamps for media time).
//!
//! A recorder or a voice-assistant bridge runs, per call, on its own task:
//!
//! ```text
//!  RTP (payload, seq, ts, arrival) per participant
//!    └─> JitterBuffer::insert(now, seq, ts, payload)
//!  every 20 ms tick:
//!    for each participant: JitterBuffer::pop(now) ─> OpusDecoder::decode_frame (FEC/PLC)
//!                          ─> Mixer::push(input, pcm)        (absent → nothing pushed)
//!    Mixer::mix(out) ─> OpusEncoder::encode ─> WebmWriter::write_packet(ts, packet)
//!  at the end: WebmWriter::finalize();  after a crash: repair(bytes)
//! ```
//!
//! [`Resampler`] converts 20 ms frames between 48 kHz and 8/16/24 kHz and between mono
//! and stereo (for telephony or speech models), [`audio_level`] gives the RFC 6464
//! level used for active-speaker detection, and [`parse_packet`] reads the Opus TOC.
//!
//! Each module's docs describe its model: [`jitter`] (playout, windows, statistics),
//! [`webm`] (file layout, crash safety, and why the writer is our own rather than a
//! Matroska crate), [`mixer`] (limiter), [`resample`] (rubato FFT resampler).
//!
//! ## Kinds of time
//!
//! * **now** (`std::time::Instant`): when a packet arrived, when a tick happens.
//!   Only the jitter buffer uses it (target delay, delay statistics).
//! * **RTP time**: the 48 kHz sample clock of each sender, extended to 64 bits in the
//!   jitter buffer; it orders packets and marks missing frames.
//! * **Recording time**: 48 kHz samples since the recording started, given to
//!   [`WebmWriter::write_packet`]. One mixer tick = 960 samples, so the mix and its
//!   file keep wall-clock time whoever is present.
//!
//! ## Allocation and cost
//!
//! Every type allocates its buffers when created. In steady state `insert`, `pop`,
//! `decode_frame`, `push`, `mix`, `encode`, `Resampler::process` and
//! `write_packet` do not allocate (the WebM Cues list grows by one entry per second
//! into a pre-reserved vector). See `benches/README.md` for measured figures.
//!
//! ## libopus
//!
//! The `opus` crate (0.4) links libopus through `opusic-sys` with its default
//! `bundled` feature: libopus **1.6.1** is built from source with cmake (Debian
//! package `cmake` is needed at build time; `libopus-dev` is *not* used). Bundled
//! was chosen because Debian 12 ships libopus 1.3.1, while 1.5+ brings the better
//! PLC/LBRR and `opus_packet_has_lbrr`, which [`OpusDecoder::conceal`] uses to tell
//! real FEC recovery from concealment; it also pins the same codec everywhere.
//! opusic-sys builds libopus in Release mode even for debug builds.
//!
//! ## Panics and errors
//!
//! Bytes from the network (RTP payloads, cut files) never cause a panic: every
//! parser is bounds-checked and fuzzed by property tests over random bytes. Bad
//! input returns a typed, `#[non_exhaustive]` error of the module concerned.
//! `unsafe` appears once, in a single libopus call (`opus_packet_has_lbrr`).

#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod codec;
mod ebml;
#[doc(hidden)]
#[allow(missing_docs)]
pub mod fuzzing;
pub mod jitter;
pub mod mixer;
pub mod resample;
pub mod toc;
pub mod webm;

pub use codec::{
    Application, CodecError, DecodeKind, EncoderConfig, OpusDecoder, OpusEncoder, FRAME_SAMPLES,
    MAX_PACKET_BYTES, SAMPLE_RATE,
};
pub use jitter::{InsertOutcome, JitterBuffer, JitterConfig, JitterFrame, JitterStats};
pub use mixer::{audio_level, InputId, Mixer, MixerError};
pub use resample::{ResampleError, Resampler};
pub use toc::{parse_packet, OpusBandwidth, OpusMode, OpusPacketInfo, TocError};
pub use webm::{opus_head, repair, RepairReport, WebmConfig, WebmError, WebmSummary, WebmWriter};
