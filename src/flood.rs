//! Rate limits. Per connection, of the client-facing WebSockets (`/rtc` and the presence socket):
//! a one-second window admits at most `max_per_sec` messages; the session that exceeds it is closed
//! with 1008 and a reason; one instance per connection, owned by its task. Per key, of REST
//! endpoints ([`KeyedRateLimit`]: the realtime API per user, embed tokens per public key).

use std::time::{Duration, Instant};

/// Close code for a flooding client (RFC 6455 "policy violation").
pub const CLOSE_CODE: u16 = 1008;

#[derive(Debug)]
pub struct FloodLimit {
    max_per_sec: u32,
    window_start: Instant,
    count: u32,
}

impl FloodLimit {
    pub fn new(max_per_sec: u32, now: Instant) -> Self {
        FloodLimit {
            max_per_sec: max_per_sec.max(1),
            window_start: now,
            count: 0,
        }
    }

    /// Count one message received at `now`; false when it exceeds the limit (close the session).
    pub fn admit(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.count = 0;
        }
        self.count += 1;
        self.count <= self.max_per_sec
    }
}

/// Requests per key per minute: a one-minute window opens at a key's first request and admits
/// `per_minute` of them. Shared by the handlers of one endpoint family (a short lock, HTTP path
/// only); windows that ended are dropped once the map grows past 10,000 keys.
#[derive(Debug, Default)]
pub struct KeyedRateLimit {
    windows: std::sync::Mutex<std::collections::HashMap<String, (Instant, u32)>>,
}

impl KeyedRateLimit {
    /// Count one request of `key` at `now`; `Err(time until its window ends)` beyond the limit.
    pub fn admit(&self, key: &str, per_minute: u32, now: Instant) -> Result<(), Duration> {
        let window = Duration::from_secs(60);
        let mut map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, (start, _)| now.saturating_duration_since(*start) < window);
        }
        let e = map.entry(key.to_string()).or_insert((now, 0));
        if now.saturating_duration_since(e.0) >= window {
            *e = (now, 0);
        }
        if e.1 >= per_minute.max(1) {
            return Err(window.saturating_sub(now.saturating_duration_since(e.0)));
        }
        e.1 += 1;
        Ok(())
    }
}

/// After sending a close frame: read (and discard) what the client still sends until it answers
/// the close, for at most `CLOSE_DRAIN` — closing with unread data would reset the connection and
/// the client would never see the close reason.
pub async fn drain_until_closed(ws: &mut axum::extract::ws::WebSocket) {
    use axum::extract::ws::Message;
    let _ = tokio::time::timeout(CLOSE_DRAIN, async {
        while let Some(Ok(m)) = ws.recv().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Longest wait for a flooding client to acknowledge the close.
pub const CLOSE_DRAIN: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_the_limit_per_second() {
        let t0 = Instant::now();
        let mut f = FloodLimit::new(3, t0);
        assert!((0..3).all(|_| f.admit(t0)));
        assert!(!f.admit(t0 + Duration::from_millis(999)));
        assert!(f.admit(t0 + Duration::from_secs(1)));
        assert!(FloodLimit::new(0, t0).admit(t0), "0 means 1, not none");
    }

    #[test]
    fn keyed_limit_admits_per_minute_per_key() {
        let l = KeyedRateLimit::default();
        let t0 = Instant::now();
        assert!((0..3).all(|_| l.admit("pk_a", 3, t0).is_ok()));
        let retry = l
            .admit("pk_a", 3, t0 + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(retry, Duration::from_secs(50));
        assert!(l.admit("pk_b", 3, t0).is_ok(), "keys are independent");
        assert!(l.admit("pk_a", 3, t0 + Duration::from_secs(60)).is_ok());
    }
}
