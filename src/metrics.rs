//! Process-wide metrics rendered in Prometheus text format at `/metrics`: server counters and
//! gauges (plain atomics, cheap enough for the media path: Relaxed increments, no locks), HTTP
//! requests by method, matched route template and status (a small map behind a mutex, HTTP path
//! only), and the standard `process_*` metrics read from `/proc/self`.
//! Values that only go up are `counter`s named `*_total`; values that go up and down are `gauge`s.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// One unlabelled sample added at render time (TURN, uptime, process metrics).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub value: f64,
}

impl Sample {
    pub fn counter(name: &'static str, help: &'static str, value: f64) -> Self {
        Sample {
            name,
            help,
            kind: Kind::Counter,
            value,
        }
    }
    pub fn gauge(name: &'static str, help: &'static str, value: f64) -> Self {
        Sample {
            name,
            help,
            kind: Kind::Gauge,
            value,
        }
    }
}

/// Add label `name="value"` to every sample of a rendered exposition (multi-node mode: `node`, so
/// one Prometheus scraping every node, or a federation of them, keeps the nodes apart). Comment
/// lines are kept as they are.
pub fn label_every_sample(text: &str, name: &str, value: &str) -> String {
    let escaped = value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    let label = format!("{name}=\"{escaped}\"");
    let mut out = String::with_capacity(text.len() + text.lines().count() * (label.len() + 3));
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            out.push_str(line);
        } else if let Some(brace) = line
            .find('{')
            .filter(|b| line.find(' ').is_none_or(|sp| *b < sp))
        {
            out.push_str(&line[..=brace]);
            out.push_str(&label);
            if !line[brace + 1..].starts_with('}') {
                out.push(',');
            }
            out.push_str(&line[brace + 1..]);
        } else if let Some(sp) = line.find(' ') {
            out.push_str(&line[..sp]);
            out.push('{');
            out.push_str(&label);
            out.push('}');
            out.push_str(&line[sp..]);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// Label value for the route of a request that matched no route.
pub const UNMATCHED_ROUTE: &str = "other";

/// HTTP method label: the standard methods by name, anything else `other` (bounded cardinality).
pub fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Request counts of one route template by (method label, status).
type ByMethodStatus = HashMap<(&'static str, u16), u64>;

#[derive(Debug, Default)]
pub struct Metrics {
    /// HTTP requests: route template -> (method, status) -> count.
    http: Mutex<HashMap<String, ByMethodStatus>>,
    pub http_errors: AtomicU64,
    pub websocket_connections: AtomicU64,
    /// Signal sessions started, by protocol: v0 (`/rtc`, two peer connections), v1 (`/rtc/v1`).
    pub signal_sessions_v0: AtomicU64,
    pub signal_sessions_v1: AtomicU64,
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

    /// Count one HTTP response. `route` is the matched route template (`/api/calls/{call_id}`), never
    /// the raw path; None (no route matched) counts as [`UNMATCHED_ROUTE`].
    pub fn record_http(&self, method: &'static str, route: Option<&str>, status: u16) {
        let route = route.unwrap_or(UNMATCHED_ROUTE);
        let mut map = self.http.lock().unwrap_or_else(|p| p.into_inner());
        let by_route = match map.get_mut(route) {
            Some(m) => m,
            None => map.entry(route.to_string()).or_default(),
        };
        *by_route.entry((method, status)).or_insert(0) += 1;
    }

    fn render_http(&self, out: &mut String) {
        let name = "parlor_http_requests_total";
        let _ = writeln!(
            out,
            "# HELP {name} HTTP requests served, by method, matched route and status\n# TYPE {name} counter"
        );
        let map = self.http.lock().unwrap_or_else(|p| p.into_inner());
        let mut rows: Vec<(&str, &str, u16, u64)> = map
            .iter()
            .flat_map(|(route, m)| {
                m.iter()
                    .map(move |((meth, st), n)| (route.as_str(), *meth, *st, *n))
            })
            .collect();
        rows.sort_unstable();
        for (route, method, status, n) in rows {
            let _ = writeln!(
                out,
                "{name}{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape_label(route)
            );
        }
    }

    pub fn render(&self, extra: &[Sample]) -> String {
        let mut out = String::with_capacity(4096);
        self.render_http(&mut out);
        let counters: [(&str, &str, &AtomicU64, &str); 18] = [
            (
                "parlor_signal_sessions_v0_total",
                "Signal sessions started on /rtc (protocol v0: two peer connections)",
                &self.signal_sessions_v0,
                "counter",
            ),
            (
                "parlor_signal_sessions_v1_total",
                "Signal sessions started on /rtc/v1 (protocol v1: one peer connection)",
                &self.signal_sessions_v1,
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
        for s in extra {
            let (name, help, kind, v) = (s.name, s.help, s.kind.as_str(), s.value);
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
        out
    }
}

/// Escape a label value (backslash, double quote, newline).
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The standard process metrics (CPU seconds, resident memory, open/max fds, start time), read
/// from `/proc/self`. Empty where `/proc` is not available.
pub fn process_metrics() -> Vec<Sample> {
    let mut out = Vec::new();
    #[cfg(target_os = "linux")]
    linux_process_metrics(&mut out);
    out
}

#[cfg(target_os = "linux")]
fn linux_process_metrics(out: &mut Vec<Sample>) {
    // SAFETY: sysconf only reads a system constant.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the parenthesised command name (which may contain spaces); field 3 is index 0.
        let f: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let num = |field: usize| f.get(field - 3).and_then(|v| v.parse::<f64>().ok());
        if let (Some(utime), Some(stime)) = (num(14), num(15)) {
            out.push(Sample::counter(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds",
                (utime + stime) / ticks,
            ));
        }
        if let Some(vsize) = num(23) {
            out.push(Sample::gauge(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                vsize,
            ));
        }
        if let Some(rss) = num(24) {
            out.push(Sample::gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                rss * page.max(1) as f64,
            ));
        }
        let btime = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
        if let (Some(start), Some(btime)) = (num(22), btime) {
            out.push(Sample::gauge(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                btime + start / ticks,
            ));
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        out.push(Sample::gauge(
            "process_open_fds",
            "Number of open file descriptors",
            dir.count() as f64,
        ));
    }
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<f64>().ok())
        });
    if let Some(m) = max_fds {
        out.push(Sample::gauge(
            "process_max_fds",
            "Maximum number of open file descriptors",
            m,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::label_every_sample;

    #[test]
    fn every_sample_gets_the_label_comments_do_not() {
        let text =
            "# HELP a_total A\n# TYPE a_total counter\na_total 3\nb{reason=\"x y\"} 1\nc{} 2\n";
        assert_eq!(
            label_every_sample(text, "node", "n\"1"),
            "# HELP a_total A\n# TYPE a_total counter\na_total{node=\"n\\\"1\"} 3\n\
             b{node=\"n\\\"1\",reason=\"x y\"} 1\nc{node=\"n\\\"1\"} 2\n"
        );
    }

    use super::*;

    #[test]
    fn http_requests_by_route_template() {
        let m = Metrics::default();
        m.record_http("GET", Some("/api/calls/{call_id}"), 200);
        m.record_http("GET", Some("/api/calls/{call_id}"), 200);
        m.record_http("POST", None, 404);
        let text = m.render(&[]);
        assert!(text.contains(
            "parlor_http_requests_total{method=\"GET\",route=\"/api/calls/{call_id}\",status=\"200\"} 2\n"
        ), "{text}");
        assert!(
            text.contains(
                "parlor_http_requests_total{method=\"POST\",route=\"other\",status=\"404\"} 1\n"
            ),
            "{text}"
        );
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_from_proc() {
        // CPU time has clock-tick granularity: use some first (bounded).
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_secs(5) {
            x = (0..100_000u64).fold(x, |a, b| a.wrapping_mul(31).wrapping_add(b));
            let cpu = process_metrics()
                .into_iter()
                .find(|s| s.name == "process_cpu_seconds_total");
            if cpu.is_some_and(|s| s.value > 0.0) {
                break;
            }
        }
        std::hint::black_box(x);
        let p = process_metrics();
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            let s = p.iter().find(|s| s.name == name).expect(name);
            assert!(s.value > 0.0, "{name} = {}", s.value);
        }
    }
}
