//! Injected wall clock.
//!
//! Library code never reads the system time itself: every time-dependent decision (credential
//! expiry, nonce age, allocation / permission / channel lifetimes) asks a [`Clock`]. The server
//! binary passes a closure over the system clock; tests pass a [`ManualClock`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A source of "now" as time since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    /// Time elapsed since 1970-01-01T00:00:00Z.
    fn unix_now(&self) -> Duration;

    /// Whole seconds since the Unix epoch.
    fn unix_secs(&self) -> u64 {
        self.unix_now().as_secs()
    }
}

/// Any `Fn() -> Duration` is a clock, e.g.
/// a closure returning the system time since `UNIX_EPOCH` in the server binary.
impl<F> Clock for F
where
    F: Fn() -> Duration + Send + Sync + 'static,
{
    fn unix_now(&self) -> Duration {
        self()
    }
}

/// A clock that only moves when told to (tests, simulations).
#[derive(Debug, Default)]
pub struct ManualClock {
    millis: AtomicU64,
}

impl ManualClock {
    /// A clock reading `unix_secs` seconds after the epoch.
    pub fn new(unix_secs: u64) -> Self {
        Self {
            millis: AtomicU64::new(unix_secs.saturating_mul(1000)),
        }
    }

    /// Move the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.millis.fetch_add(ms, Ordering::SeqCst);
    }

    /// Set the clock to `unix_secs` seconds after the epoch.
    pub fn set_unix_secs(&self, unix_secs: u64) {
        self.millis
            .store(unix_secs.saturating_mul(1000), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn unix_now(&self) -> Duration {
        Duration::from_millis(self.millis.load(Ordering::SeqCst))
    }
}
