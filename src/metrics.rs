//! Process-wide counters rendered in Prometheus text format at `/metrics`.
//! Plain atomics: cheap enough for the media path (Relaxed increments, no locks).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Metrics {
    pub http_requests: AtomicU64,
    pub http_errors: AtomicU64,
    pub websocket_connections: AtomicU64,
    pub rooms: AtomicU64,
    pub participants: AtomicU64,
    pub rtp_packets_in: AtomicU64,
    pub rtp_packets_out: AtomicU64,
    pub rtp_bytes_in: AtomicU64,
    pub rtp_bytes_out: AtomicU64,
    pub rtp_send_failures: AtomicU64,
    pub rtp_dropped: AtomicU64,
    pub nacks_received: AtomicU64,
    pub retransmits: AtomicU64,
    pub plis_forwarded: AtomicU64,
    pub signal_errors: AtomicU64,
    pub ice_tcp_connections: AtomicU64,
    pub ice_tcp_frames_in: AtomicU64,
    /// STUN packets the media workers dropped, by `StunFault` index.
    pub stun_dropped: [AtomicU64; crate::sfu::stun_check::StunFault::ALL.len()],
}

impl Metrics {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }
    pub fn dec(c: &AtomicU64) {
        let _ = c.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
    }

    pub fn render(&self, extra: &[(&str, &str, f64)]) -> String {
        let mut out = String::with_capacity(2048);
        let counters: [(&str, &str, &AtomicU64, &str); 17] = [
            (
                "parlor_http_requests_total",
                "HTTP requests served",
                &self.http_requests,
                "counter",
            ),
            (
                "parlor_http_errors_total",
                "HTTP responses with status >= 400",
                &self.http_errors,
                "counter",
            ),
            (
                "parlor_websocket_connections",
                "Open signaling WebSocket connections",
                &self.websocket_connections,
                "gauge",
            ),
            ("parlor_rooms", "Open rooms", &self.rooms, "gauge"),
            (
                "parlor_participants",
                "Connected participants",
                &self.participants,
                "gauge",
            ),
            (
                "parlor_rtp_packets_in_total",
                "RTP packets received from publishers",
                &self.rtp_packets_in,
                "counter",
            ),
            (
                "parlor_rtp_packets_out_total",
                "RTP packets forwarded to subscribers",
                &self.rtp_packets_out,
                "counter",
            ),
            (
                "parlor_rtp_bytes_in_total",
                "RTP payload bytes received",
                &self.rtp_bytes_in,
                "counter",
            ),
            (
                "parlor_rtp_bytes_out_total",
                "RTP payload bytes forwarded",
                &self.rtp_bytes_out,
                "counter",
            ),
            (
                "parlor_rtp_send_failures_total",
                "RTP packets the transport refused",
                &self.rtp_send_failures,
                "counter",
            ),
            (
                "parlor_rtp_dropped_total",
                "RTP packets dropped by the forwarder",
                &self.rtp_dropped,
                "counter",
            ),
            (
                "parlor_nacks_received_total",
                "NACKs received from subscribers",
                &self.nacks_received,
                "counter",
            ),
            (
                "parlor_retransmits_total",
                "Packets retransmitted from the cache",
                &self.retransmits,
                "counter",
            ),
            (
                "parlor_plis_forwarded_total",
                "PLI/FIR requests forwarded to publishers",
                &self.plis_forwarded,
                "counter",
            ),
            (
                "parlor_signal_errors_total",
                "Signal connections closed for bad input",
                &self.signal_errors,
                "counter",
            ),
            (
                "parlor_ice_tcp_connections_total",
                "ICE-TCP connections accepted",
                &self.ice_tcp_connections,
                "counter",
            ),
            (
                "parlor_ice_tcp_frames_in_total",
                "Frames received over ICE-TCP",
                &self.ice_tcp_frames_in,
                "counter",
            ),
        ];
        for (name, help, v, kind) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                v.load(Relaxed)
            );
        }
        let name = "parlor_stun_dropped_total";
        let _ = writeln!(
            out,
            "# HELP {name} STUN packets dropped before the ICE agent (per-packet faults), by reason\n# TYPE {name} counter"
        );
        for f in crate::sfu::stun_check::StunFault::ALL {
            let v = self.stun_dropped[f.index()].load(Relaxed);
            let _ = writeln!(out, "{name}{{reason=\"{}\"}} {v}", f.reason());
        }
        for (name, help, v) in extra {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}
