//! Open-file budget: raise RLIMIT_NOFILE's soft limit to the hard limit at start-up, and split the
//! limit between the TCP listeners (HTTP/WebSocket, ICE-TCP, TURN TCP) after a reserve for everything
//! else (database pool, media and TURN relay UDP sockets, recordings, logs), so that a connection
//! flood on one listener cannot take the descriptors the others need. Also: what an accept loop does
//! when `accept` fails (EMFILE and friends): back off briefly, log rate-limited.

use std::time::{Duration, Instant};

/// Raise the soft RLIMIT_NOFILE to the hard limit. Returns (soft before, soft after).
pub fn raise_nofile_limit() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit to write into.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before: u64 = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit; raising soft up to hard needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((before, lim.rlim_cur))
}

/// The current soft RLIMIT_NOFILE (u64::MAX when unlimited or unknown).
pub fn nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit to write into.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0
        || lim.rlim_cur == libc::RLIM_INFINITY
    {
        return u64::MAX;
    }
    lim.rlim_cur
}

/// How many descriptors each TCP listener may hold at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdBudget {
    pub limit: u64,
    /// Kept for everything that is not a listener's connection.
    pub reserve: u64,
    pub http: usize,
    pub ice_tcp: usize,
    pub turn_tcp: usize,
}

impl FdBudget {
    /// Reserve a quarter of the limit (at least 128, at most half, at most 8192), then give HTTP 40 %
    /// and ICE-TCP and TURN TCP 30 % each of the rest.
    pub fn from_limit(limit: u64) -> FdBudget {
        let limit = limit.min(1 << 24);
        let reserve = (limit / 4).clamp(128, 8192).min(limit / 2);
        let rest = limit - reserve;
        let share = |pct: u64| {
            usize::try_from(rest * pct / 100)
                .unwrap_or(usize::MAX)
                .max(1)
        };
        FdBudget {
            limit,
            reserve,
            http: share(40),
            ice_tcp: share(30),
            turn_tcp: share(30),
        }
    }
}

/// Rate-limited handling of failing `accept` calls for one listener.
pub struct AcceptErrors {
    listener: &'static str,
    last_log: Option<Instant>,
    suppressed: u64,
}

const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(5);

impl AcceptErrors {
    pub fn new(listener: &'static str) -> AcceptErrors {
        AcceptErrors {
            listener,
            last_log: None,
            suppressed: 0,
        }
    }

    /// Log (at most once per 5 s, with the count of errors since) and wait before the next accept:
    /// out of descriptors or memory the error repeats until something closes, so spinning on it
    /// would only burn a core and flood the log.
    pub async fn on_error(&mut self, e: &std::io::Error) {
        let now = Instant::now();
        if self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= ACCEPT_LOG_EVERY)
        {
            tracing::warn!(listener = self.listener, error = %e, suppressed = self.suppressed, "accept failed; backing off");
            self.last_log = Some(now);
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        let exhausted = matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        );
        let pause = if exhausted { 100 } else { 10 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_shares_fit_the_limit() {
        let b = FdBudget::from_limit(1024);
        assert_eq!(b.reserve, 256);
        assert_eq!((b.http, b.ice_tcp, b.turn_tcp), (307, 230, 230));
        assert!(b.reserve + (b.http + b.ice_tcp + b.turn_tcp) as u64 <= 1024);
        let small = FdBudget::from_limit(200);
        assert!(small.reserve + (small.http + small.ice_tcp + small.turn_tcp) as u64 <= 200);
        let big = FdBudget::from_limit(1 << 20);
        assert_eq!(big.reserve, 8192);
    }
}
