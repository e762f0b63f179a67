//! Rate-limited logging for per-packet faults: the first occurrence of each reason is logged, then
//! at most one line per reason per interval, carrying how many occurrences it stood for. Owned by
//! one thread (a media worker): no locks, no allocation per call.

use std::time::{Duration, Instant};

/// Default interval between two lines for one reason.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// `N` reasons, indexed `0..N`.
#[derive(Debug)]
pub struct LogLimiter<const N: usize> {
    interval: Duration,
    last: [Option<Instant>; N],
    suppressed: [u64; N],
}

impl<const N: usize> LogLimiter<N> {
    pub fn new(interval: Duration) -> Self {
        LogLimiter {
            interval,
            last: [None; N],
            suppressed: [0; N],
        }
    }

    /// One occurrence of `reason` at `now`: Some(occurrences suppressed since the last line) when a
    /// line should be logged now, None when this one is suppressed. Out-of-range reasons log.
    pub fn hit(&mut self, reason: usize, now: Instant) -> Option<u64> {
        let (Some(last), Some(suppressed)) =
            (self.last.get_mut(reason), self.suppressed.get_mut(reason))
        else {
            return Some(0);
        };
        match *last {
            Some(t) if now.saturating_duration_since(t) < self.interval => {
                *suppressed += 1;
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_then_once_per_interval_with_the_suppressed_count() {
        let t0 = Instant::now();
        let mut l = LogLimiter::<2>::new(Duration::from_secs(10));
        assert_eq!(l.hit(0, t0), Some(0));
        for i in 1..=1000 {
            assert_eq!(l.hit(0, t0 + Duration::from_millis(i)), None);
        }
        // Another reason has its own budget.
        assert_eq!(l.hit(1, t0), Some(0));
        assert_eq!(l.hit(0, t0 + Duration::from_secs(10)), Some(1000));
        assert_eq!(l.hit(0, t0 + Duration::from_secs(11)), None);
        assert_eq!(l.hit(0, t0 + Duration::from_secs(25)), Some(1));
        assert_eq!(l.hit(7, t0), Some(0));
    }
}
