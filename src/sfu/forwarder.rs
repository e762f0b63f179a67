//! The per-(subscriber, track) forwarding decision: a pure struct with a closed set of outcomes.
//!
//! Each subscriber sees one continuous RTP stream per track even when the source changes (simulcast layer
//! switch, publisher restart): sequence numbers and timestamps are rewritten with offsets chosen at each
//! switch so the output stays contiguous. Video switches wait for a keyframe on the new layer.

/// What the forwarder needs to know about one incoming packet (parsed once, shared by all subscribers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketMeta {
    pub seq: u16,
    pub ts: u32,
    /// Simulcast layer (0 = lowest); 0 for audio and non-simulcast video.
    pub layer: u8,
    pub keyframe: bool,
    /// Arrival time in microseconds (any monotonic origin).
    pub arrival_us: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Forward { seq: u16, ts: u32 },
    Drop(DropReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The subscriber paused/unsubscribed or the track is muted.
    Paused,
    /// Another simulcast layer is selected.
    OtherLayer,
    /// A layer switch (or start) is waiting for a keyframe.
    WaitingForKeyframe,
    /// Older than what was already forwarded by more than the reorder window.
    TooOld,
}

#[derive(Debug, Clone)]
pub struct Forwarder {
    is_video: bool,
    clock_rate: u32,
    paused: bool,
    /// Layer the subscriber wants.
    target_layer: u8,
    /// Layer currently forwarded (None before the first packet / while switching).
    current_layer: Option<u8>,
    seq_offset: u16,
    ts_offset: u32,
    /// Highest input sequence number forwarded on the current layer.
    last_in_seq: u16,
    last_out_seq: u16,
    last_out_ts: u32,
    last_out_arrival_us: u64,
    started: bool,
}

impl Forwarder {
    pub fn new(is_video: bool, clock_rate: u32) -> Self {
        Forwarder {
            is_video,
            clock_rate: clock_rate.max(1),
            paused: false,
            target_layer: 0,
            current_layer: None,
            seq_offset: 0,
            ts_offset: 0,
            last_in_seq: 0,
            last_out_seq: 0,
            last_out_ts: 0,
            last_out_arrival_us: 0,
            started: false,
        }
    }

    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
        if paused && self.is_video {
            // Resume on a keyframe so the decoder does not show garbage.
            self.current_layer = None;
        }
    }

    pub fn set_target_layer(&mut self, layer: u8) {
        self.target_layer = layer;
    }

    pub fn target_layer(&self) -> u8 {
        self.target_layer
    }

    pub fn current_layer(&self) -> Option<u8> {
        self.current_layer
    }

    /// Does this forwarder need a keyframe to make progress (layer switch or start)?
    pub fn needs_keyframe(&self) -> bool {
        self.is_video && !self.paused && self.current_layer != Some(self.target_layer)
    }

    #[inline]
    pub fn on_packet(&mut self, p: &PacketMeta) -> Decision {
        if self.paused {
            return Decision::Drop(DropReason::Paused);
        }
        if self.current_layer != Some(p.layer) {
            // Not the forwarded layer: switch to it only if it is the target and we may switch here.
            if p.layer != self.target_layer {
                return Decision::Drop(DropReason::OtherLayer);
            }
            if self.is_video && !p.keyframe {
                return Decision::Drop(DropReason::WaitingForKeyframe);
            }
            self.switch_to(p);
        }
        let diff = p.seq.wrapping_sub(self.last_in_seq) as i16;
        if diff <= -1024 {
            return Decision::Drop(DropReason::TooOld);
        }
        let seq = p.seq.wrapping_add(self.seq_offset);
        let ts = p.ts.wrapping_add(self.ts_offset);
        if diff > 0 {
            self.last_in_seq = p.seq;
            self.last_out_seq = seq;
            self.last_out_ts = ts;
            self.last_out_arrival_us = p.arrival_us;
        }
        Decision::Forward { seq, ts }
    }

    fn switch_to(&mut self, p: &PacketMeta) {
        if self.started {
            // Continue right after the last forwarded packet; advance the timestamp by the wall time
            // elapsed since then (at least one tick) so players keep their timing.
            let want_seq = self.last_out_seq.wrapping_add(1);
            self.seq_offset = want_seq.wrapping_sub(p.seq);
            let elapsed_us = p.arrival_us.saturating_sub(self.last_out_arrival_us);
            let ticks = ((elapsed_us as u128 * self.clock_rate as u128) / 1_000_000).max(1) as u32;
            let want_ts = self.last_out_ts.wrapping_add(ticks);
            self.ts_offset = want_ts.wrapping_sub(p.ts);
        } else {
            self.seq_offset = 0;
            self.ts_offset = 0;
            self.started = true;
        }
        // Make the switch packet count as "newer" than the previous one.
        self.last_in_seq = p.seq.wrapping_sub(1);
        self.current_layer = Some(p.layer);
    }
}

/// Is this RTP payload the start of a keyframe? `mime` is the codec mime type (case-insensitive).
pub fn is_keyframe(mime_is_vp8: bool, mime_is_h264: bool, payload: &[u8]) -> bool {
    if mime_is_vp8 {
        vp8_keyframe(payload)
    } else if mime_is_h264 {
        h264_keyframe(payload)
    } else {
        false
    }
}

fn vp8_keyframe(p: &[u8]) -> bool {
    // RFC 7741 payload descriptor.
    let Some(&b0) = p.first() else { return false };
    let x = b0 & 0x80 != 0;
    let s = b0 & 0x10 != 0;
    let pid = b0 & 0x07;
    if !s || pid != 0 {
        return false;
    }
    let mut i = 1;
    if x {
        let Some(&xb) = p.get(i) else { return false };
        i += 1;
        if xb & 0x80 != 0 {
            // PictureID: 1 or 2 bytes.
            let Some(&pb) = p.get(i) else { return false };
            i += if pb & 0x80 != 0 { 2 } else { 1 };
        }
        if xb & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if xb & 0x30 != 0 {
            i += 1; // TID/KEYIDX
        }
    }
    // VP8 payload header: P bit (inverse keyframe) is bit 0 of the first byte.
    p.get(i).is_some_and(|h| h & 0x01 == 0)
}

fn h264_keyframe(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    match b0 & 0x1f {
        5 | 7 => true,
        24 => {
            // STAP-A: 16-bit sizes followed by NAL units.
            let mut i = 1;
            while i + 2 < p.len() {
                let size = u16::from_be_bytes([p[i], p[i + 1]]) as usize;
                if let Some(nal) = p.get(i + 2) {
                    if matches!(nal & 0x1f, 5 | 7) {
                        return true;
                    }
                }
                i += 2 + size;
            }
            false
        }
        28 => p
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && matches!(fu & 0x1f, 5 | 7)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(seq: u16, ts: u32, layer: u8, keyframe: bool, t_ms: u64) -> PacketMeta {
        PacketMeta {
            seq,
            ts,
            layer,
            keyframe,
            arrival_us: t_ms * 1000,
        }
    }

    #[test]
    fn audio_passes_through_across_seq_wrap() {
        let mut f = Forwarder::new(false, 48000);
        let mut out = Vec::new();
        for i in 0..10u16 {
            let seq = 65530u16.wrapping_add(i);
            let ts = (u32::MAX - 2000).wrapping_add(i as u32 * 960);
            out.push(f.on_packet(&pkt(seq, ts, 0, false, i as u64 * 20)));
        }
        for (i, d) in out.iter().enumerate() {
            let seq = 65530u16.wrapping_add(i as u16);
            let ts = (u32::MAX - 2000).wrapping_add(i as u32 * 960);
            assert_eq!(*d, Decision::Forward { seq, ts });
        }
    }

    #[test]
    fn reordered_packets_keep_their_offsets_and_old_ones_drop() {
        let mut f = Forwarder::new(false, 48000);
        assert_eq!(
            f.on_packet(&pkt(100, 0, 0, false, 0)),
            Decision::Forward { seq: 100, ts: 0 }
        );
        assert_eq!(
            f.on_packet(&pkt(102, 1920, 0, false, 40)),
            Decision::Forward { seq: 102, ts: 1920 }
        );
        assert_eq!(
            f.on_packet(&pkt(101, 960, 0, false, 41)),
            Decision::Forward { seq: 101, ts: 960 }
        );
        assert_eq!(
            f.on_packet(&pkt(102u16.wrapping_sub(2000), 0, 0, false, 42)),
            Decision::Drop(DropReason::TooOld)
        );
    }

    #[test]
    fn video_waits_for_keyframe_then_switches_layers_contiguously() {
        let mut f = Forwarder::new(true, 90000);
        assert_eq!(
            f.on_packet(&pkt(10, 1000, 0, false, 0)),
            Decision::Drop(DropReason::WaitingForKeyframe)
        );
        assert!(f.needs_keyframe());
        assert_eq!(
            f.on_packet(&pkt(11, 1000, 0, true, 1)),
            Decision::Forward { seq: 11, ts: 1000 }
        );
        assert_eq!(
            f.on_packet(&pkt(12, 4000, 0, false, 34)),
            Decision::Forward { seq: 12, ts: 4000 }
        );
        // Layer 1 packets are dropped until selected.
        assert_eq!(
            f.on_packet(&pkt(500, 777, 1, true, 35)),
            Decision::Drop(DropReason::OtherLayer)
        );
        f.set_target_layer(1);
        assert!(f.needs_keyframe());
        // Still forwarding layer 0 until layer 1 delivers a keyframe.
        assert_eq!(
            f.on_packet(&pkt(13, 7000, 0, false, 67)),
            Decision::Forward { seq: 13, ts: 7000 }
        );
        assert_eq!(
            f.on_packet(&pkt(501, 900, 1, false, 68)),
            Decision::Drop(DropReason::WaitingForKeyframe)
        );
        // Keyframe on layer 1, 33 ms after the last forwarded packet: seq continues at 14, ts advances 33 ms.
        match f.on_packet(&pkt(502, 123_456, 1, true, 100)) {
            Decision::Forward { seq, ts } => {
                assert_eq!(seq, 14);
                assert_eq!(ts, 7000 + 33 * 90);
            }
            d => panic!("{d:?}"),
        }
        assert_eq!(
            f.on_packet(&pkt(503, 126_456, 1, false, 133)),
            Decision::Forward {
                seq: 15,
                ts: 7000 + 33 * 90 + 3000
            }
        );
        // Old layer is now dropped.
        assert_eq!(
            f.on_packet(&pkt(14, 10000, 0, false, 134)),
            Decision::Drop(DropReason::OtherLayer)
        );
    }

    #[test]
    fn pause_drops_and_resume_waits_for_keyframe() {
        let mut f = Forwarder::new(true, 90000);
        assert!(matches!(
            f.on_packet(&pkt(1, 0, 0, true, 0)),
            Decision::Forward { .. }
        ));
        f.set_paused(true);
        assert_eq!(
            f.on_packet(&pkt(2, 3000, 0, true, 33)),
            Decision::Drop(DropReason::Paused)
        );
        f.set_paused(false);
        assert_eq!(
            f.on_packet(&pkt(3, 6000, 0, false, 66)),
            Decision::Drop(DropReason::WaitingForKeyframe)
        );
        assert_eq!(
            f.on_packet(&pkt(4, 9000, 0, true, 100)),
            Decision::Forward {
                seq: 2,
                ts: 100 * 90
            }
        );
    }

    #[test]
    fn keyframe_detection() {
        // VP8: S=1, PID=0, no extension, payload header P=0 -> keyframe.
        assert!(is_keyframe(true, false, &[0x10, 0x00, 0x9d, 0x01, 0x2a]));
        assert!(!is_keyframe(true, false, &[0x10, 0x01]));
        assert!(!is_keyframe(true, false, &[0x00, 0x00]));
        // VP8 with X, I (2-byte picture id).
        assert!(is_keyframe(true, false, &[0x90, 0x80, 0x81, 0x23, 0x00]));
        assert!(!is_keyframe(true, false, &[]));
        // H264: IDR, SPS, STAP-A with SPS, FU-A start of IDR.
        assert!(is_keyframe(false, true, &[0x65]));
        assert!(is_keyframe(false, true, &[0x67]));
        assert!(is_keyframe(false, true, &[0x78, 0x00, 0x02, 0x67, 0x42]));
        assert!(is_keyframe(false, true, &[0x7c, 0x85]));
        assert!(!is_keyframe(false, true, &[0x7c, 0x05]));
        assert!(!is_keyframe(false, true, &[0x41]));
    }
}
