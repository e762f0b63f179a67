//! Direct RTP egress: how an RTP packet leaves for a subscriber leg without `rtc`'s write pipeline.
//!
//! Owns, per outbound stream (one `SubOut`: one subscriber, one track), what the `rtc` send-side
//! interceptors kept before (issue 21): the packet and octet counts and the last RTP timestamp for
//! sender reports, and for video a send cache answering the subscriber's NACKs. The packet path
//! writes the 12-byte header and the payload into one reused buffer, SRTP-protects it with the
//! leg's outbound context (`RTCPeerConnection::protect_rtp`, a vendored-`rtc` patch) and queues the
//! datagram for the wake-up's `sendmmsg`: no interceptor chain, no handler queues, no lookups by
//! string. RTCP (sender reports, keyframe requests) still goes through `rtc`'s pipeline: it is a
//! few packets per second per stream.

use bytes::Bytes;
use rtc::peer_connection::RTCPeerConnection;
use rtc::rtcp::sender_report::SenderReport;
use std::time::{Duration, Instant};

/// How often each outbound stream gets a sender report (the `rtc` interceptor's default, 1 s).
pub const SR_INTERVAL: Duration = Duration::from_secs(1);
/// Video packets kept per stream for retransmission: ~2.5 s at 100 packets/s, many round trips.
const SEND_CACHE: usize = 256;
/// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// One outbound stream's sender state.
pub struct OutStream {
    clock_rate: u32,
    packets: u32,
    octets: u32,
    last_ts: u32,
    /// When the last packet was sent (None: nothing sent yet, no sender report).
    last_at: Option<Instant>,
    last_sr: Option<Instant>,
    /// Video only: the last protected datagrams by sequence number (slot = seq % SEND_CACHE).
    cache: Option<Vec<Option<(u16, Bytes)>>>,
}

impl OutStream {
    pub fn new(video: bool, clock_rate: u32) -> OutStream {
        OutStream {
            clock_rate: clock_rate.max(1),
            packets: 0,
            octets: 0,
            last_ts: 0,
            last_at: None,
            last_sr: None,
            cache: video.then(Vec::new),
        }
    }

    /// A packet of `payload_len` octets with timestamp `ts` left at `now`.
    pub fn sent(&mut self, seq: u16, ts: u32, payload_len: usize, datagram: &Bytes, now: Instant) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload_len as u32);
        self.last_ts = ts;
        self.last_at = Some(now);
        if let Some(cache) = &mut self.cache {
            if cache.is_empty() {
                cache.resize(SEND_CACHE, None);
            }
            // Refcounted: the batch and the cache share the one datagram.
            cache[seq as usize % SEND_CACHE] = Some((seq, datagram.clone()));
        }
    }

    /// The cached datagram of `seq`, if it is still there.
    pub fn cached(&self, seq: u16) -> Option<&Bytes> {
        match self.cache.as_ref()?.get(seq as usize % SEND_CACHE)? {
            Some((s, d)) if *s == seq => Some(d),
            _ => None,
        }
    }

    /// The sender report due at `now` (wall-clock `unix_us` at the same instant), if one is.
    pub fn report_due(&mut self, ssrc: u32, now: Instant, unix_us: u64) -> Option<SenderReport> {
        let last_at = self.last_at?;
        if self
            .last_sr
            .is_some_and(|t| now.saturating_duration_since(t) < SR_INTERVAL)
        {
            return None;
        }
        self.last_sr = Some(now);
        // The RTP time of `now`: the last timestamp sent, advanced by the time since at the
        // codec's clock rate (what the receiver maps to `ntp_time` for lip sync).
        let since = now.saturating_duration_since(last_at);
        let ticks = since.as_micros() as u64 * u64::from(self.clock_rate) / 1_000_000;
        Some(SenderReport {
            ssrc,
            ntp_time: ntp_of_unix_us(unix_us),
            rtp_time: self.last_ts.wrapping_add(ticks as u32),
            packet_count: self.packets,
            octet_count: self.octets,
            ..Default::default()
        })
    }
}

/// A 64-bit NTP timestamp (RFC 3550 §4) of a Unix time in microseconds.
pub fn ntp_of_unix_us(unix_us: u64) -> u64 {
    let secs = unix_us / 1_000_000 + NTP_UNIX_OFFSET_SECS;
    let frac = ((unix_us % 1_000_000) << 32) / 1_000_000;
    (secs << 32) | frac
}

/// One outgoing RTP packet (the header fields the forwarder chose, the shared payload).
pub struct Rtp<'a> {
    pub marker: bool,
    pub pt: u8,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

impl Rtp<'_> {
    /// Its header: version 2, no padding, extensions or CSRCs.
    pub fn header(&self) -> rtc::rtp::header::Header {
        rtc::rtp::header::Header {
            version: 2,
            marker: self.marker,
            payload_type: self.pt,
            sequence_number: self.seq,
            timestamp: self.ts,
            ssrc: self.ssrc,
            ..Default::default()
        }
    }

    /// Marshal it (the 12-byte header, then the payload) into `buf`.
    pub fn marshal_into(&self, buf: &mut Vec<u8>) {
        buf.clear();
        buf.push(0x80);
        buf.push((u8::from(self.marker) << 7) | (self.pt & 0x7f));
        buf.extend_from_slice(&self.seq.to_be_bytes());
        buf.extend_from_slice(&self.ts.to_be_bytes());
        buf.extend_from_slice(&self.ssrc.to_be_bytes());
        buf.extend_from_slice(self.payload);
    }
}

/// SRTP-protect `p` for the leg `rtc` (marshalled into the reused `plain` buffer, then one
/// encryption into the datagram) and record it in the stream's state. None before DTLS has made
/// an SRTP context.
pub fn protect(
    rtc: &mut RTCPeerConnection,
    stream: &mut OutStream,
    plain: &mut Vec<u8>,
    p: &Rtp<'_>,
    now: Instant,
) -> Option<Bytes> {
    p.marshal_into(plain);
    let datagram = rtc.protect_rtp(&p.header(), plain).ok()?.freeze();
    stream.sent(p.seq, p.ts, p.payload.len(), &datagram, now);
    Some(datagram)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_rfc3550() {
        let mut b = Vec::new();
        let p = Rtp {
            marker: true,
            pt: 111,
            seq: 0x1234,
            ts: 0xdeadbeef,
            ssrc: 0x01020304,
            payload: &[9, 9],
        };
        p.marshal_into(&mut b);
        assert_eq!(
            b,
            [
                0x80,
                0x80 | 111,
                0x12,
                0x34,
                0xde,
                0xad,
                0xbe,
                0xef,
                1,
                2,
                3,
                4,
                9,
                9
            ]
        );
        let mut r = &b[..];
        let h = <rtc::rtp::header::Header as rtc::shared::marshal::Unmarshal>::unmarshal(&mut r)
            .expect("parses");
        assert!(h.marker);
        assert_eq!(
            (h.payload_type, h.sequence_number, h.timestamp, h.ssrc),
            (111, 0x1234, 0xdeadbeef, 0x01020304)
        );
    }

    #[test]
    fn sender_report_counts_and_extrapolates() {
        let t0 = crate::clock::system().now();
        let mut s = OutStream::new(false, 48_000);
        assert!(s.report_due(7, t0, 0).is_none(), "nothing sent: no report");
        let d = Bytes::from_static(&[0u8; 10]);
        for i in 0..50u16 {
            s.sent(i, 960 * u32::from(i), 100, &d, t0);
        }
        let at = t0 + Duration::from_millis(20);
        let sr = s
            .report_due(7, at, 1_700_000_000_500_000)
            .expect("a report");
        assert_eq!((sr.ssrc, sr.packet_count, sr.octet_count), (7, 50, 5000));
        // 20 ms after the last packet at 48 kHz: 960 ticks later.
        assert_eq!(sr.rtp_time, 960 * 49 + 960);
        assert_eq!(sr.ntp_time >> 32, 1_700_000_000 + NTP_UNIX_OFFSET_SECS);
        assert_eq!(sr.ntp_time & 0xffff_ffff, 1 << 31, "half a second");
        assert!(
            s.report_due(7, at + Duration::from_millis(500), 0)
                .is_none(),
            "one a second"
        );
        assert!(s.report_due(7, at + SR_INTERVAL, 0).is_some());
    }

    #[test]
    fn video_cache_answers_the_last_packets_only() {
        let t0 = crate::clock::system().now();
        let mut s = OutStream::new(true, 90_000);
        for i in 0..300u16 {
            let d = Bytes::from(i.to_be_bytes().to_vec());
            s.sent(i.wrapping_add(65_500), 0, 2, &d, t0);
        }
        // 300 packets from seq 65500 (wrapping): the last 256 are cached.
        let last = 65_500u16.wrapping_add(299);
        assert_eq!(
            s.cached(last).map(|d| d.to_vec()),
            Some(299u16.to_be_bytes().to_vec())
        );
        assert!(s.cached(65_500).is_none(), "evicted");
        assert!(s.cached(last.wrapping_add(1)).is_none(), "never sent");
        assert!(
            OutStream::new(false, 48_000).cached(0).is_none(),
            "audio keeps none"
        );
    }
}
