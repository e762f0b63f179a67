//! Live figures of the model-session WebSockets that no table holds: open and total connections,
//! the peak of concurrently authenticated sessions, frames per second over the last minute and the
//! heartbeat → pong round trips. All time comes from the server's clock, so tests drive it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Seconds of the sliding window behind `messagesPerSecond`.
pub const RATE_WINDOW_SECS: u64 = 60;

pub struct LiveStats {
    started: Instant,
    /// WebSockets open now (authenticated or not).
    pub open: AtomicUsize,
    /// WebSockets accepted since start.
    pub total: AtomicU64,
    /// Sessions with an authenticated socket now, and the most there have been at once.
    pub authenticated: AtomicUsize,
    pub peak_authenticated: AtomicUsize,
    /// Frames per second, one bucket per second of the window: (second since start, count).
    buckets: Mutex<[(u64, u64); RATE_WINDOW_SECS as usize]>,
    rtt_sum_us: AtomicU64,
    rtt_count: AtomicU64,
}

impl LiveStats {
    pub fn new(now: Instant) -> LiveStats {
        LiveStats {
            started: now,
            open: AtomicUsize::new(0),
            total: AtomicU64::new(0),
            authenticated: AtomicUsize::new(0),
            peak_authenticated: AtomicUsize::new(0),
            buckets: Mutex::new([(u64::MAX, 0); RATE_WINDOW_SECS as usize]),
            rtt_sum_us: AtomicU64::new(0),
            rtt_count: AtomicU64::new(0),
        }
    }

    /// Time since this server's model sessions started.
    pub fn uptime(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }

    fn second(&self, now: Instant) -> u64 {
        self.uptime(now).as_secs()
    }

    /// Count one WebSocket frame (either direction).
    pub fn frame(&self, now: Instant) {
        let sec = self.second(now);
        if let Ok(mut b) = self.buckets.lock() {
            let slot = &mut b[(sec % RATE_WINDOW_SECS) as usize];
            if slot.0 != sec {
                *slot = (sec, 0);
            }
            slot.1 += 1;
        }
    }

    /// Frames per second over the last [`RATE_WINDOW_SECS`] (or since start, when shorter), the
    /// current second included.
    pub fn frames_per_second(&self, now: Instant) -> f64 {
        let sec = self.second(now);
        let oldest = sec.saturating_sub(RATE_WINDOW_SECS - 1);
        let n: u64 = self
            .buckets
            .lock()
            .map(|b| {
                b.iter()
                    .filter(|(s, _)| *s != u64::MAX && *s >= oldest && *s <= sec)
                    .map(|(_, c)| c)
                    .sum()
            })
            .unwrap_or(0);
        let span = (self.uptime(now).as_secs_f64()).clamp(1.0, RATE_WINDOW_SECS as f64);
        n as f64 / span
    }

    pub fn connection_opened(&self) {
        self.open.fetch_add(1, Ordering::SeqCst);
        self.total.fetch_add(1, Ordering::SeqCst);
    }

    pub fn connection_closed(&self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }

    pub fn session_authenticated(&self) {
        let now = self.authenticated.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_authenticated.fetch_max(now, Ordering::SeqCst);
    }

    pub fn session_left(&self) {
        self.authenticated.fetch_sub(1, Ordering::SeqCst);
    }

    /// One measured heartbeat → pong round trip.
    pub fn rtt(&self, d: Duration) {
        self.rtt_sum_us
            .fetch_add(d.as_micros().min(u64::MAX as u128) as u64, Ordering::SeqCst);
        self.rtt_count.fetch_add(1, Ordering::SeqCst);
    }

    /// Mean round trip in milliseconds (None before the first pong) and the sample count.
    pub fn average_rtt_ms(&self) -> (Option<f64>, u64) {
        let n = self.rtt_count.load(Ordering::SeqCst);
        let sum = self.rtt_sum_us.load(Ordering::SeqCst);
        ((n > 0).then(|| sum as f64 / n as f64 / 1000.0), n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_per_second_over_the_last_minute() {
        let t0 = Instant::now();
        let s = LiveStats::new(t0);
        for _ in 0..10 {
            s.frame(t0);
        }
        // 10 frames in the first second.
        assert_eq!(s.frames_per_second(t0), 10.0);
        // Two seconds in: 10 frames over 2 s.
        assert_eq!(s.frames_per_second(t0 + Duration::from_secs(2)), 5.0);
        s.frame(t0 + Duration::from_secs(30));
        assert_eq!(
            s.frames_per_second(t0 + Duration::from_secs(59)),
            11.0 / 59.0
        );
        // At 61 s the first second has left the window.
        assert_eq!(
            s.frames_per_second(t0 + Duration::from_secs(61)),
            1.0 / 60.0
        );
        assert_eq!(s.frames_per_second(t0 + Duration::from_secs(200)), 0.0);
    }

    #[test]
    fn rtt_and_peak() {
        let s = LiveStats::new(Instant::now());
        assert_eq!(s.average_rtt_ms(), (None, 0));
        s.rtt(Duration::from_millis(40));
        s.rtt(Duration::from_millis(20));
        assert_eq!(s.average_rtt_ms(), (Some(30.0), 2));
        s.session_authenticated();
        s.session_authenticated();
        s.session_left();
        s.session_authenticated();
        assert_eq!(s.peak_authenticated.load(Ordering::SeqCst), 2);
    }
}
