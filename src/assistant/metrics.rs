//! The assistant's metrics in `/metrics`: turn latency (end of the caller's speech → first assistant
//! audio sent) as a histogram, barge-ins, provider errors, active assistants. Atomics only.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds (seconds) of the turn-latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0];

#[derive(Debug, Default)]
pub struct AssistantMetrics {
    /// Cumulative counts per bucket of `LATENCY_BUCKETS` (then +Inf).
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
    latency_count: AtomicU64,
    pub barge_ins: AtomicU64,
    pub provider_errors: AtomicU64,
    pub active: AtomicU64,
    pub started: AtomicU64,
    /// Caller audio frames dropped because the provider's input queue was full (a stalled provider).
    pub input_dropped: AtomicU64,
}

impl AssistantMetrics {
    pub fn observe_latency(&self, secs: f64) {
        let secs = secs.max(0.0);
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.latency_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.latency_buckets[LATENCY_BUCKETS.len()].fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add((secs * 1e6) as u64, Relaxed);
        self.latency_count.fetch_add(1, Relaxed);
    }

    pub fn latency_count(&self) -> u64 {
        self.latency_count.load(Relaxed)
    }

    pub fn render(&self, out: &mut String) {
        let h = "parlor_assistant_turn_latency_seconds";
        let _ = writeln!(
            out,
            "# HELP {h} End of the caller's speech to the first assistant audio sent\n# TYPE {h} histogram"
        );
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{h}_bucket{{le=\"{le}\"}} {}",
                self.latency_buckets[i].load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "{h}_bucket{{le=\"+Inf\"}} {}\n{h}_sum {}\n{h}_count {}",
            self.latency_buckets[LATENCY_BUCKETS.len()].load(Relaxed),
            self.latency_sum_us.load(Relaxed) as f64 / 1e6,
            self.latency_count.load(Relaxed)
        );
        for (name, help, kind, v) in [
            (
                "parlor_assistant_barge_ins_total",
                "Caller speech that interrupted the assistant",
                "counter",
                &self.barge_ins,
            ),
            (
                "parlor_assistant_provider_errors_total",
                "Errors the model provider reported to assistants",
                "counter",
                &self.provider_errors,
            ),
            (
                "parlor_assistant_sessions_active",
                "Assistants in rooms now",
                "gauge",
                &self.active,
            ),
            (
                "parlor_assistant_sessions_total",
                "Assistants started",
                "counter",
                &self.started,
            ),
            (
                "parlor_assistant_input_dropped_total",
                "Caller audio frames dropped because the provider fell behind",
                "counter",
                &self.input_dropped,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                v.load(Relaxed)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_is_cumulative() {
        let m = AssistantMetrics::default();
        m.observe_latency(0.35);
        m.observe_latency(0.9);
        m.observe_latency(9.0);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("_bucket{le=\"0.3\"} 0\n"), "{out}");
        assert!(out.contains("_bucket{le=\"0.4\"} 1\n"), "{out}");
        assert!(out.contains("_bucket{le=\"1\"} 2\n"), "{out}");
        assert!(out.contains("_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("parlor_assistant_turn_latency_seconds_count 3\n"));
        assert!(out.contains("# TYPE parlor_assistant_turn_latency_seconds histogram"));
    }
}
