//! Shared counters and histograms. Media threads keep thread-local histograms and merge them into the
//! shared ones about once a second, so the per-packet cost is a histogram increment and a few atomics.

use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Latencies are recorded in nanoseconds, 3 significant digits, up to 60 s.
pub fn new_histogram() -> Histogram<u64> {
    // Bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low, sigfig <= 5).
    Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap_or_else(|_| unreachable!())
}

/// Size of the stamp appended to every synthetic media payload: magic, stream, seq, send time.
pub const STAMP_LEN: usize = 20;
const MAGIC: u32 = 0x504c_4431; // "PLD1"

/// Append-at-the-end stamp so the same format works for audio and for VP8 (whose first bytes are the
/// payload descriptor).
pub fn write_stamp(buf: &mut [u8], stream: u32, seq: u32, send_ns: u64) {
    let n = buf.len();
    let s = &mut buf[n - STAMP_LEN..];
    s[0..4].copy_from_slice(&MAGIC.to_be_bytes());
    s[4..8].copy_from_slice(&stream.to_be_bytes());
    s[8..12].copy_from_slice(&seq.to_be_bytes());
    s[12..20].copy_from_slice(&send_ns.to_be_bytes());
}

/// (stream, seq, send_ns) from a payload carrying a stamp.
pub fn read_stamp(buf: &[u8]) -> Option<(u32, u32, u64)> {
    let n = buf.len();
    if n < STAMP_LEN {
        return None;
    }
    let s = &buf[n - STAMP_LEN..];
    let word = |i: usize| u32::from_be_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
    if word(0) != MAGIC {
        return None;
    }
    let mut t = [0u8; 8];
    t.copy_from_slice(&s[12..20]);
    Some((word(4), word(8), u64::from_be_bytes(t)))
}

/// Everything the run measures, shared by the media threads, the signaling tasks and the reporter.
pub struct Shared {
    /// All send/receive times are nanoseconds since this instant (same process: one clock).
    pub origin: Instant,
    pub joins_ok: AtomicU64,
    pub joins_failed: AtomicU64,
    pub disconnects: AtomicU64,
    pub pcs_connected: AtomicU64,
    pub pcs_failed: AtomicU64,
    pub packets_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub packets_recv: AtomicU64,
    pub bytes_recv: AtomicU64,
    pub send_errors: AtomicU64,
    pub socket_drops: AtomicU64,
    /// Highest sequence sent per stream (+1; 0 = nothing sent yet).
    pub sent_seq: Vec<AtomicU32>,
    pub hist: Mutex<Hists>,
}

pub struct Hists {
    /// One-way latency of every received packet (whole run).
    pub latency: Histogram<u64>,
    /// Since the last progress line.
    pub latency_interval: Histogram<u64>,
    /// Send stamp → packet handled by this tool (includes its own event-loop delay), whole run.
    pub app_latency: Histogram<u64>,
    /// WebSocket connect → JoinResponse.
    pub join: Histogram<u64>,
    /// WebSocket connect → first media packet on the subscriber connection.
    pub first_packet: Histogram<u64>,
    /// Per media thread, per received stream: first/highest sequence and count.
    pub streams: Vec<Vec<RecvStream>>,
}

#[derive(Debug, Clone, Copy)]
pub struct RecvStream {
    pub stream: u32,
    pub first_seq: u32,
    pub max_seq: u32,
    pub received: u64,
}

impl Shared {
    pub fn new(streams: usize) -> Shared {
        Shared {
            origin: Instant::now(),
            joins_ok: AtomicU64::new(0),
            joins_failed: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            pcs_connected: AtomicU64::new(0),
            pcs_failed: AtomicU64::new(0),
            packets_sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            packets_recv: AtomicU64::new(0),
            bytes_recv: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            socket_drops: AtomicU64::new(0),
            sent_seq: (0..streams).map(|_| AtomicU32::new(0)).collect(),
            hist: Mutex::new(Hists {
                latency: new_histogram(),
                latency_interval: new_histogram(),
                app_latency: new_histogram(),
                join: new_histogram(),
                first_packet: new_histogram(),
                streams: Vec::new(),
            }),
        }
    }

    pub fn ns_since_origin(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.origin).as_nanos() as u64
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn record_join(&self, d: std::time::Duration) {
        if let Ok(mut h) = self.hist.lock() {
            let _ = h.join.record((d.as_nanos() as u64).max(1));
        }
    }

    /// (expected, received) over all receive streams. Expected runs from each stream's first received
    /// sequence to, when `to_last_sent`, the last sequence its publisher sent (the final tally, which
    /// counts lost tails too), else to the highest sequence received (progress lines: nothing in flight
    /// counts as lost).
    pub fn loss(&self, to_last_sent: bool) -> (u64, u64) {
        let Ok(h) = self.hist.lock() else {
            return (0, 0);
        };
        let mut expected = 0u64;
        let mut received = 0u64;
        for s in h.streams.iter().flatten() {
            let last_sent = self
                .sent_seq
                .get(s.stream as usize)
                .map(|a| a.load(Ordering::Relaxed))
                .unwrap_or(0);
            // sent_seq holds (highest sequence sent + 1).
            let last = if to_last_sent {
                last_sent.saturating_sub(1).max(s.max_seq)
            } else {
                s.max_seq
            };
            expected += (last - s.first_seq) as u64 + 1;
            received += s.received;
        }
        (expected, received)
    }
}

/// CPU time and RSS of a process from /proc.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    pub cpu_secs: f64,
    pub rss_kb: u64,
}

pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Read /proc/<pid>/stat (utime + stime) and /proc/<pid>/status (VmRSS). `pid` None: this process.
pub fn proc_sample(pid: Option<u32>) -> Option<ProcSample> {
    let base = match pid {
        Some(p) => format!("/proc/{p}"),
        None => "/proc/self".to_string(),
    };
    let stat = std::fs::read_to_string(format!("{base}/stat")).ok()?;
    // Fields after the parenthesised command name: state is field 3; utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("{base}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some(ProcSample {
        cpu_secs: (utime + stime) / clk_tck(),
        rss_kb,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trip() {
        let mut b = vec![0u8; 80];
        write_stamp(&mut b, 7, 123456, 987654321);
        assert_eq!(read_stamp(&b), Some((7, 123456, 987654321)));
        b[60] ^= 1; // corrupt the magic
        assert_eq!(read_stamp(&b), None);
        assert_eq!(read_stamp(&b[..10]), None);
    }

    #[test]
    fn proc_self_reads() {
        let s = proc_sample(None).unwrap();
        assert!(s.rss_kb > 0);
    }
}
