//! The server's clock, injected as `SharedClock`, and sleeps on it. Library crates and the media
//! workers (`src/sfu`, checked by `.ci/run`) take time as an argument; the workers read this clock
//! once per wake-up. The HTTP/signal edge still reads `Instant::now()` directly in places (signal
//! sessions' liveness and flood limits, presence, the fd-limit probe, the server's start time, the
//! CLI). [`ManualClock`] is a clock whose time moves only when a test advances it; code that waits
//! through [`Clock::sleep_until`] (the model-session WebSocket's timers) is then driven
//! deterministically by the test.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A future returned by [`Clock::sleep_until`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Instant;
    /// Unix time in milliseconds.
    fn unix_ms(&self) -> i64;
    fn unix_secs(&self) -> u64 {
        (self.unix_ms().max(0) / 1000) as u64
    }
    /// Resolves once [`Clock::now`] has reached `deadline` (the system clock: a tokio timer).
    fn sleep_until(&self, deadline: Instant) -> Sleep {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn unix_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

pub type SharedClock = Arc<dyn Clock>;

pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock for tests: it starts at the real time of its creation and then stands still until
/// [`ManualClock::advance`] moves it; sleepers whose deadline is reached wake then.
pub struct ManualClock {
    base_instant: Instant,
    base_unix_ms: i64,
    /// Time advanced so far; every sleeper watches it.
    offset: tokio::sync::watch::Sender<Duration>,
    /// Deadlines of the sleeps pending right now (for [`ManualClock::sleepers`]).
    pending: Arc<Mutex<Vec<(u64, Instant)>>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl ManualClock {
    pub fn new() -> ManualClock {
        ManualClock {
            base_instant: Instant::now(),
            base_unix_ms: SystemClock.unix_ms(),
            offset: tokio::sync::watch::channel(Duration::ZERO).0,
            pending: Arc::default(),
            next_id: Default::default(),
        }
    }

    /// Move time forward by `by`, waking every sleeper whose deadline it reaches.
    pub fn advance(&self, by: Duration) {
        self.offset.send_modify(|o| *o += by);
    }

    pub fn advance_ms(&self, ms: u64) {
        self.advance(Duration::from_millis(ms));
    }

    /// How many sleeps are pending (a test waits for the server to be asleep before advancing).
    pub fn sleepers(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// The deadlines of the pending sleeps, earliest first.
    pub fn deadlines(&self) -> Vec<Instant> {
        let mut d: Vec<Instant> = self
            .pending
            .lock()
            .map(|p| p.iter().map(|(_, t)| *t).collect())
            .unwrap_or_default();
        d.sort();
        d
    }
}

/// Removes a sleep from [`ManualClock::pending`] however it ends (woken or dropped).
struct PendingGuard {
    pending: Arc<Mutex<Vec<(u64, Instant)>>>,
    id: u64,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if let Ok(mut p) = self.pending.lock() {
            p.retain(|(id, _)| *id != self.id);
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base_instant + *self.offset.borrow()
    }
    fn unix_ms(&self) -> i64 {
        self.base_unix_ms + self.offset.borrow().as_millis() as i64
    }
    fn sleep_until(&self, deadline: Instant) -> Sleep {
        let mut rx = self.offset.subscribe();
        let base = self.base_instant;
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Registered now (not at first poll), so `sleepers()` counts a sleep as soon as it exists.
        if let Ok(mut p) = self.pending.lock() {
            p.push((id, deadline));
        }
        let guard = PendingGuard {
            pending: self.pending.clone(),
            id,
        };
        Box::pin(async move {
            let _guard = guard;
            loop {
                if base + *rx.borrow_and_update() >= deadline {
                    return;
                }
                if rx.changed().await.is_err() {
                    // The clock is gone: time will never reach the deadline.
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_sleep_wakes_only_when_advanced_past_the_deadline() {
        let c = Arc::new(ManualClock::new());
        let t0 = c.now();
        let u0 = c.unix_ms();
        let mut sleep = c.sleep_until(t0 + Duration::from_millis(100));
        assert_eq!(c.sleepers(), 1);
        let poll = |s: &mut Sleep| {
            let waker = futures_util::task::noop_waker();
            let mut cx = std::task::Context::from_waker(&waker);
            s.as_mut().poll(&mut cx).is_ready()
        };
        assert!(!poll(&mut sleep));
        c.advance_ms(99);
        assert!(!poll(&mut sleep));
        c.advance_ms(1);
        assert!(poll(&mut sleep));
        drop(sleep);
        assert_eq!(c.sleepers(), 0);
        assert_eq!(c.unix_ms() - u0, 100);
        assert_eq!(c.now() - t0, Duration::from_millis(100));
        // A deadline already reached resolves at once.
        c.sleep_until(t0).await;
        // Woken from another task.
        let c2 = c.clone();
        let h = tokio::spawn(async move { c2.sleep_until(t0 + Duration::from_secs(5)).await });
        while c.sleepers() == 0 {
            tokio::task::yield_now().await;
        }
        c.advance(Duration::from_secs(5));
        tokio::time::timeout(Duration::from_secs(5), h)
            .await
            .unwrap()
            .unwrap();
    }
}
