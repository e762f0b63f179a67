//! The server's clock, injected as `SharedClock`. Library crates and the media workers (`src/sfu`,
//! checked by `.ci/run`) take time as an argument; the workers read this clock once per wake-up. The
//! HTTP/signal edge still reads `Instant::now()` directly in places (signal sessions' liveness and
//! flood limits, presence, the fd-limit probe, the server's start time, the CLI).

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Instant;
    /// Unix time in milliseconds.
    fn unix_ms(&self) -> i64;
    fn unix_secs(&self) -> u64 {
        (self.unix_ms().max(0) / 1000) as u64
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
