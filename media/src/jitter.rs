//! Per-stream jitter buffer for 20 ms Opus RTP packets.
//!
//! Packets go in with [`JitterBuffer::insert`] as they arrive, each with its arrival
//! time; [`JitterBuffer::pop`] is called once per 20 ms tick of the consumer (the
//! mixer) and hands out exactly one frame: the packet due now, or
//! [`JitterFrame::Missing`] so the decoder runs FEC or PLC.
//!
//! # Model
//!
//! * Sequence numbers and RTP timestamps are extended to 64 bits against the highest
//!   value seen so far (a 16-bit / 32-bit wrap is a step forward, not a jump back).
//!   Extended values start one cycle up (seq + 2¹⁶, ts + 2³²) so a packet reordered
//!   from before the first one is still representable.
//! * Playout is driven by the RTP timestamp: frame index = extended ts / 960. One
//!   pop = one frame = 20 ms, whether or not a packet exists for it, so a
//!   sender pause (DTX) keeps wall-clock time. Sequence numbers detect duplicates
//!   and count loss ([`JitterStats::lost`] = sequence numbers that were never played).
//! * Playout starts once the first buffered packet has waited `target_delay`; it
//!   starts at the oldest buffered frame.
//! * Memory is bounded: `capacity` slots of `max_payload` bytes, allocated once. A
//!   single packet more than `capacity` frames ahead of playout is dropped as an
//!   outlier; two in a row (a long network stall, or a sender timestamp jump) push
//!   playout forward (dropped packets count as `overflow`). When more than `max_delay` is buffered
//!   (a burst, or a sender clock running fast) playout skips ahead to `target_delay`.
//! * After `capacity` consecutive empty frames the stream is considered stopped and
//!   the buffer goes idle (`pop` returns `None`) until the next packet re-buffers.
//!
//! The sender must use 20 ms packetization (WebRTC's default `ptime`).
//! Nothing here allocates after [`JitterBuffer::new`].

use std::time::{Duration, Instant};

/// Jitter buffer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// Number of 20 ms slots (rounded up to a power of two, at least 4). Bounds memory
    /// (`capacity × max_payload` bytes) and the reorder window.
    pub capacity: usize,
    /// How long the first packet waits before playout starts.
    pub target_delay: Duration,
    /// Above this much buffered audio, playout skips ahead to `target_delay`.
    pub max_delay: Duration,
    /// Largest payload accepted, in bytes.
    pub max_payload: usize,
    /// RTP timestamp units per 20 ms frame (960 for Opus' 48 kHz RTP clock).
    pub samples_per_frame: u32,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            capacity: 64,
            target_delay: Duration::from_millis(60),
            max_delay: Duration::from_millis(400),
            max_payload: 1500,
            samples_per_frame: 960,
        }
    }
}

/// What [`JitterBuffer::insert`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Stored for playout.
    Buffered,
    /// Already buffered or already played.
    Duplicate,
    /// Its frame has already been played out (as missing): too late.
    Late,
    /// More than `capacity` frames ahead of playout, and the packet before it was
    /// not: dropped as an outlier (a second such packet in a row moves playout forward).
    OutOfWindow,
    /// Payload larger than `max_payload`.
    TooLarge,
    /// Empty payload.
    Empty,
}

/// One 20 ms frame handed out by [`JitterBuffer::pop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JitterFrame<'a> {
    /// The packet for this frame.
    Packet {
        /// Extended sequence number.
        seq: u64,
        /// Extended RTP timestamp.
        ts: u64,
        /// The Opus payload.
        payload: &'a [u8],
    },
    /// No packet for this frame (lost, late, or a sender pause).
    Missing {
        /// Extended RTP timestamp of the missing frame.
        ts: u64,
        /// The packet of the following frame if it is already here: its in-band FEC
        /// may rebuild this one ([`OpusDecoder::conceal`](crate::OpusDecoder::conceal)).
        next: Option<&'a [u8]>,
    },
}

impl JitterFrame<'_> {
    /// Extended RTP timestamp of the frame.
    pub fn ts(&self) -> u64 {
        match self {
            JitterFrame::Packet { ts, .. } | JitterFrame::Missing { ts, .. } => *ts,
        }
    }
}

/// Counters since creation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets passed to `insert`.
    pub received: u64,
    /// Packets handed out by `pop`.
    pub played: u64,
    /// Frames handed out as `Missing`.
    pub missing: u64,
    /// Sequence numbers skipped between two played packets (never played).
    pub lost: u64,
    /// Packets that arrived after their frame was played out.
    pub late: u64,
    /// Duplicate packets dropped.
    pub duplicate: u64,
    /// Packets that arrived after a packet with a higher sequence number.
    pub reordered: u64,
    /// Packets dropped to stay within `capacity` / `max_delay`, or as out-of-window outliers.
    pub overflow: u64,
    /// Arrival-to-playout delay of the last played packet.
    pub current_delay: Duration,
    /// Packets buffered now.
    pub buffered: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Empty,
    Buffered,
    Played,
    Missed,
}

#[derive(Debug)]
struct Slot {
    state: SlotState,
    frame: u64,
    seq: u64,
    ts: u64,
    arrival: Option<Instant>,
    len: usize,
    data: Box<[u8]>,
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Idle,
    Buffering { since: Instant },
    Playing { next: u64 },
}

/// Extends a wrapping counter of `BITS` bits to 64 bits.
#[derive(Debug, Clone, Copy, Default)]
struct Unwrapper<const BITS: u32> {
    highest: Option<u64>,
}

impl<const BITS: u32> Unwrapper<BITS> {
    fn extend(&mut self, v: u64) -> u64 {
        let cycle = 1u64 << BITS;
        let mask = cycle - 1;
        let ext = match self.highest {
            None => v + cycle,
            Some(h) => {
                let diff = v.wrapping_sub(h) & mask;
                if diff < cycle / 2 {
                    h + diff
                } else {
                    // Behind the highest value; never below zero.
                    h.saturating_sub(cycle - diff)
                }
            }
        };
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        ext
    }
}

/// A bounded, allocation-free jitter buffer for one RTP stream. See the module docs.
#[derive(Debug)]
pub struct JitterBuffer {
    cfg: JitterConfig,
    mask: u64,
    slots: Vec<Slot>,
    seq: Unwrapper<16>,
    ts: Unwrapper<32>,
    phase: u64,
    mode: Mode,
    lo: u64,
    hi: u64,
    last_played_seq: Option<u64>,
    max_seq: Option<u64>,
    empty_run: u64,
    ahead: bool,
    stats: JitterStats,
}

impl JitterBuffer {
    /// Creates a buffer; allocates all of its memory now.
    pub fn new(cfg: JitterConfig) -> Self {
        let cap = cfg.capacity.clamp(4, 1 << 16).next_power_of_two();
        let cfg = JitterConfig {
            capacity: cap,
            samples_per_frame: cfg.samples_per_frame.max(1),
            ..cfg
        };
        let slots = (0..cap)
            .map(|_| Slot {
                state: SlotState::Empty,
                frame: 0,
                seq: 0,
                ts: 0,
                arrival: None,
                len: 0,
                data: vec![0u8; cfg.max_payload].into_boxed_slice(),
            })
            .collect();
        JitterBuffer {
            cfg,
            mask: cap as u64 - 1,
            slots,
            seq: Unwrapper::default(),
            ts: Unwrapper::default(),
            phase: 0,
            mode: Mode::Idle,
            lo: 0,
            hi: 0,
            last_played_seq: None,
            max_seq: None,
            empty_run: 0,
            ahead: false,
            stats: JitterStats::default(),
        }
    }

    /// The settings in force (capacity rounded).
    pub fn config(&self) -> &JitterConfig {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// True once playout has started (until the stream goes idle).
    pub fn is_playing(&self) -> bool {
        matches!(self.mode, Mode::Playing { .. })
    }

    fn cap(&self) -> u64 {
        self.cfg.capacity as u64
    }

    fn frame_dur(&self) -> Duration {
        Duration::from_micros(u64::from(self.cfg.samples_per_frame) * 1000 / 48)
    }

    fn frames_in(&self, d: Duration) -> u64 {
        let f = self.frame_dur().as_micros().max(1);
        (d.as_micros() / f) as u64
    }

    fn slot_mut(&mut self, frame: u64) -> &mut Slot {
        let i = (frame & self.mask) as usize;
        &mut self.slots[i]
    }

    fn slot(&self, frame: u64) -> &Slot {
        &self.slots[(frame & self.mask) as usize]
    }

    /// Drops every buffered packet whose frame is below `below`.
    fn evict_below(&mut self, below: u64) {
        for s in self.slots.iter_mut() {
            if s.state == SlotState::Buffered && s.frame < below {
                s.state = SlotState::Empty;
                self.stats.overflow += 1;
                self.stats.buffered -= 1;
            }
        }
    }

    fn recompute_lo(&mut self) {
        self.lo = self
            .slots
            .iter()
            .filter(|s| s.state == SlotState::Buffered)
            .map(|s| s.frame)
            .min()
            .unwrap_or(self.hi);
    }

    /// Inserts one received RTP packet (`seq`, `ts` as on the wire).
    pub fn insert(&mut self, now: Instant, seq: u16, ts: u32, payload: &[u8]) -> InsertOutcome {
        self.stats.received += 1;
        if payload.is_empty() {
            return InsertOutcome::Empty;
        }
        if payload.len() > self.cfg.max_payload {
            return InsertOutcome::TooLarge;
        }
        let ext_seq = self.seq.extend(u64::from(seq));
        let ext_ts = self.ts.extend(u64::from(ts));
        let spf = u64::from(self.cfg.samples_per_frame);
        let frame = ext_ts / spf;
        let cap = self.cap();

        match self.mode {
            Mode::Playing { next } => {
                if frame < next {
                    let s = self.slot(frame);
                    return if s.frame == frame && s.state == SlotState::Played && s.seq == ext_seq {
                        self.stats.duplicate += 1;
                        InsertOutcome::Duplicate
                    } else {
                        self.stats.late += 1;
                        InsertOutcome::Late
                    };
                }
                if frame >= next + cap {
                    if !self.ahead {
                        // One stray timestamp must not flush a healthy buffer.
                        self.ahead = true;
                        self.stats.overflow += 1;
                        return InsertOutcome::OutOfWindow;
                    }
                    let new_next = frame + 1 - cap;
                    self.evict_below(new_next);
                    self.mode = Mode::Playing { next: new_next };
                }
            }
            Mode::Buffering { .. } => {
                if frame < self.lo {
                    if self.hi - frame >= cap {
                        self.stats.late += 1;
                        return InsertOutcome::Late;
                    }
                } else if frame >= self.lo + cap {
                    self.evict_below(frame + 1 - cap);
                    self.recompute_lo();
                }
            }
            Mode::Idle => {
                self.mode = Mode::Buffering { since: now };
                self.lo = frame;
                self.hi = frame;
            }
        }

        self.ahead = false;
        {
            let s = self.slot(frame);
            if s.state == SlotState::Buffered && s.frame == frame {
                self.stats.duplicate += 1;
                return InsertOutcome::Duplicate;
            }
        }
        if self.max_seq.is_some_and(|m| ext_seq < m) {
            self.stats.reordered += 1;
        }
        self.max_seq = Some(self.max_seq.map_or(ext_seq, |m| m.max(ext_seq)));
        self.phase = ext_ts % spf;
        let s = self.slot_mut(frame);
        let replaced = s.state == SlotState::Buffered;
        s.state = SlotState::Buffered;
        s.frame = frame;
        s.seq = ext_seq;
        s.ts = ext_ts;
        s.arrival = Some(now);
        s.len = payload.len();
        s.data[..payload.len()].copy_from_slice(payload);
        if replaced {
            // Unreachable given the window checks above; counted, not trusted.
            self.stats.overflow += 1;
        } else {
            self.stats.buffered += 1;
        }
        if self.stats.buffered == 1 {
            self.lo = frame;
            self.hi = frame;
        } else {
            self.lo = self.lo.min(frame);
            self.hi = self.hi.max(frame);
        }
        InsertOutcome::Buffered
    }

    /// Hands out the frame due now: call exactly once per 20 ms tick.
    ///
    /// Returns `None` while the stream has not started (or has gone idle): the caller
    /// treats that participant as absent (silence).
    pub fn pop(&mut self, now: Instant) -> Option<JitterFrame<'_>> {
        let next = match self.mode {
            Mode::Idle => return None,
            Mode::Buffering { since } => {
                if now.saturating_duration_since(since) < self.cfg.target_delay
                    || self.stats.buffered == 0
                {
                    return None;
                }
                self.lo
            }
            Mode::Playing { next } => next,
        };
        // Too much buffered (burst, or sender clock faster than ours): skip ahead.
        let mut f = next;
        if self.stats.buffered > 0 && self.hi >= f {
            let span = self.hi + 1 - f;
            let max = self.frames_in(self.cfg.max_delay).max(1);
            if span > max {
                let target = self.frames_in(self.cfg.target_delay).max(1);
                f = f.max(self.hi + 1 - target.min(self.hi + 1));
                self.evict_below(f);
            }
        }
        self.mode = Mode::Playing { next: f + 1 };
        let spf = u64::from(self.cfg.samples_per_frame);
        let phase = self.phase;
        let idx = (f & self.mask) as usize;
        if self.slots[idx].state == SlotState::Buffered && self.slots[idx].frame == f {
            let s = &mut self.slots[idx];
            s.state = SlotState::Played;
            let seq = s.seq;
            if let Some(arr) = s.arrival {
                self.stats.current_delay = now.saturating_duration_since(arr);
            }
            self.stats.buffered -= 1;
            self.stats.played += 1;
            if let Some(last) = self.last_played_seq {
                if seq > last + 1 {
                    self.stats.lost += seq - last - 1;
                }
            }
            self.last_played_seq = Some(self.last_played_seq.map_or(seq, |l| l.max(seq)));
            self.empty_run = 0;
            let s = &self.slots[idx];
            return Some(JitterFrame::Packet {
                seq: s.seq,
                ts: s.ts,
                payload: &s.data[..s.len],
            });
        }
        if self.slots[idx].state == SlotState::Buffered {
            // A packet of another frame in this slot: cannot happen while every
            // buffered frame is in [f, f + capacity); counted rather than trusted.
            self.stats.buffered -= 1;
            self.stats.overflow += 1;
        }
        {
            let s = &mut self.slots[idx];
            s.state = SlotState::Missed;
            s.frame = f;
        }
        self.stats.missing += 1;
        if self.stats.buffered == 0 {
            self.empty_run += 1;
            if self.empty_run >= self.cap() {
                tracing::debug!("jitter buffer: stream stopped, going idle");
                self.mode = Mode::Idle;
                self.empty_run = 0;
            }
        }
        let n = self.slot(f + 1);
        let next_payload = (n.state == SlotState::Buffered && n.frame == f + 1)
            .then(|| &self.slots[((f + 1) & self.mask) as usize])
            .map(|s| &s.data[..s.len]);
        Some(JitterFrame::Missing {
            ts: f * spf + phase,
            next: next_payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwrap_seq_and_ts() {
        let mut u = Unwrapper::<16>::default();
        assert_eq!(u.extend(65535), 65535 + 65536);
        assert_eq!(u.extend(0), 2 * 65536);
        assert_eq!(u.extend(65534), 65534 + 65536);
        let mut t = Unwrapper::<32>::default();
        let a = t.extend(u64::from(u32::MAX - 100));
        let b = t.extend(860);
        assert_eq!(b - a, 961);
    }
}
