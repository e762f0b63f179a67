//! The running state of model sessions: the model catalogue, the providers, the registry of live
//! session WebSockets, measured figures, the per-user request limiter and the session authTokens.
//!
//! # States and transitions
//!
//! | from | event | to |
//! |------|-------|----|
//! | — | `POST /sessions` | `active` |
//! | `active` | no activity for `realtime.idle_after_secs` (derived at read time) | `idle` |
//! | `idle`, `paused` | socket authenticates, a message or audio turn | `active` |
//! | `active`, `idle` | the socket closes (client close, heartbeat timeout, network) | `paused` |
//! | `active`, `idle`, `paused`, `failed` | `POST /sessions/{id}/resume` | `active` (new token generation) |
//! | `active`, `idle`, `paused` | the provider reports a fatal error | `failed` |
//! | any but `completed` | `DELETE /sessions/{id}` | `completed` (soft delete; the row stays for stats) |
//!
//! Activity is what the caller does: creating, resuming, authenticating a socket and every turn
//! (heartbeats are not activity). A `completed` session is gone for every per-session endpoint
//! (`SESSION_NOT_FOUND`); a `failed` one must be resumed before a socket may connect again.

use crate::clock::SharedClock;
use crate::realtime::config::{ModelConfig, RealtimeConfig};
use crate::realtime::provider::Availability;
use crate::realtime::stats::LiveStats;
use crate::realtime::Providers;
use parlor_signaling::{AccessToken, Claims, TokenPurpose};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::mpsc;

/// Prefix of session ids; the rest is 12 base62 characters.
pub const SESSION_PREFIX: &str = "session_";
/// Prefix of message ids.
pub const MESSAGE_PREFIX: &str = "msg_";

/// Whether `id` is shaped like a session id (`session_` + 12 base62 characters).
pub fn valid_session_id(id: &str) -> bool {
    id.strip_prefix(SESSION_PREFIX)
        .is_some_and(|r| r.len() == 12 && r.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The resource a session's authToken opens: the session and its token generation.
pub fn token_resource(session_id: &str, generation: i64) -> String {
    format!("model-session:{session_id}:{generation}")
}

/// A request to close a live session socket with a close code and reason.
#[derive(Debug, Clone)]
pub struct Kick {
    pub code: u16,
    pub reason: String,
}

struct LiveConn {
    conn_id: u64,
    kick: mpsc::Sender<Kick>,
}

/// Model-session state shared by the REST API and the WebSockets.
pub struct RealtimeState {
    pub config: RealtimeConfig,
    pub providers: Providers,
    /// When the catalogue was loaded (`updatedAt` of every model), unix ms.
    pub catalogue_loaded_ms: i64,
    pub stats: LiveStats,
    clock: SharedClock,
    live: Mutex<HashMap<String, LiveConn>>,
    next_conn: AtomicU64,
    limiter: crate::flood::KeyedRateLimit,
}

impl RealtimeState {
    pub fn new(config: &RealtimeConfig, providers: Providers, clock: SharedClock) -> RealtimeState {
        for m in &config.models {
            match providers.availability(&m.provider) {
                Availability::Available => {
                    tracing::info!(model = %m.id, provider = %m.provider, "model available")
                }
                Availability::Unavailable { reason } => {
                    tracing::warn!(model = %m.id, provider = %m.provider, %reason, "model unavailable")
                }
            }
        }
        RealtimeState {
            config: config.clone(),
            providers,
            catalogue_loaded_ms: clock.unix_ms(),
            stats: LiveStats::new(clock.now()),
            clock,
            live: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            limiter: Default::default(),
        }
    }

    pub fn model(&self, id: &str) -> Option<&ModelConfig> {
        self.config.models.iter().find(|m| m.id == id)
    }

    pub fn availability(&self, m: &ModelConfig) -> Availability {
        self.providers.availability(&m.provider)
    }

    /// Sessions active before this time read `idle`.
    pub fn idle_cut(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub((self.config.idle_after_secs as i64).saturating_mul(1000))
    }

    /// Count one `/api/realtime` request of `user`; Err(seconds until the window resets) beyond
    /// `rate_limit_per_minute` in the current one-minute window.
    pub fn admit_request(&self, user: &str) -> Result<(), u64> {
        self.limiter
            .admit(user, self.config.rate_limit_per_minute, self.clock.now())
            .map_err(|left| left.as_secs().max(1))
    }

    /// Register the authenticated socket of `session`, replacing (and closing) an older one.
    /// Returns this connection's id and the receiver of close requests.
    pub fn register(&self, session: &str) -> (u64, mpsc::Receiver<Kick>) {
        let conn_id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(1);
        let old = self
            .live
            .lock()
            .ok()
            .and_then(|mut m| m.insert(session.to_string(), LiveConn { conn_id, kick: tx }));
        if let Some(old) = old {
            let _ = old.kick.try_send(Kick {
                code: close::REPLACED,
                reason: "replaced by a newer connection to this session".into(),
            });
        }
        (conn_id, rx)
    }

    /// Remove `conn_id`'s registration (a newer connection's stays). False when it was no longer
    /// registered (replaced, or kicked by resume or delete).
    pub fn unregister(&self, session: &str, conn_id: u64) -> bool {
        let Ok(mut m) = self.live.lock() else {
            return false;
        };
        if m.get(session).is_some_and(|c| c.conn_id == conn_id) {
            m.remove(session);
            true
        } else {
            false
        }
    }

    /// Close the live socket of `session`, if any.
    pub fn kick(&self, session: &str, code: u16, reason: &str) {
        let conn = self.live.lock().ok().and_then(|mut m| m.remove(session));
        if let Some(c) = conn {
            let _ = c.kick.try_send(Kick {
                code,
                reason: reason.to_string(),
            });
        }
    }

    /// Whether `session` has an authenticated socket now.
    pub fn is_connected(&self, session: &str) -> bool {
        self.live.lock().is_ok_and(|m| m.contains_key(session))
    }
}

/// Mint the authToken of `session` (owned by `user`) for its token `generation`, expiring at
/// `expires_ms` (unix ms). Purpose `model-session`: no other endpoint accepts it.
pub fn mint_token(
    keys: &crate::auth::KeyRing,
    user: &str,
    session: &str,
    generation: i64,
    now_unix: u64,
    expires_ms: i64,
) -> Option<String> {
    let (key, secret) = keys.primary()?;
    let claims = Claims {
        iss: key.to_string(),
        sub: user.to_string(),
        nbf: now_unix.saturating_sub(1),
        exp: (expires_ms.max(0) / 1000) as u64,
        res: Some(token_resource(session, generation)),
        ..Default::default()
    };
    Some(AccessToken::encode_for(
        TokenPurpose::ModelSession,
        &claims,
        secret,
    ))
}

/// Close codes of the session WebSocket (4000-4999 are private to the application).
pub mod close {
    /// Missing, malformed, expired or revoked authToken (also: first message not `auth`).
    pub const UNAUTHORIZED: u16 = 4001;
    /// No `auth` message within `realtime.auth_timeout_ms`.
    pub const AUTH_TIMEOUT: u16 = 4002;
    /// `realtime.max_missed_pongs` heartbeats in a row went unanswered.
    pub const HEARTBEAT_TIMEOUT: u16 = 4003;
    /// The session does not exist or was deleted.
    pub const NOT_FOUND: u16 = 4004;
    /// A newer connection to the same session took over.
    pub const REPLACED: u16 = 4008;
    /// The session ended (deleted) or failed while connected, or is failed (resume it first).
    pub const SESSION_ENDED: u16 = 4009;
    /// The model could not be reached, or failed fatally.
    pub const MODEL_FAILED: u16 = 4011;
    /// `realtime.max_connections` sockets are open.
    pub const CAPACITY: u16 = 4013;
    /// The client sent frames faster than the per-connection flood limit.
    pub const RATE_LIMITED: u16 = 4029;
    /// The server is shutting down (RFC 6455 "going away").
    pub const GOING_AWAY: u16 = 1001;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids() {
        assert!(valid_session_id("session_abcDEF012345"));
        assert!(!valid_session_id("session_abcDEF01234"));
        assert!(!valid_session_id("session_abcDEF01234!"));
        assert!(!valid_session_id("sess_abcDEF012345"));
        let id = crate::ids::new_id(SESSION_PREFIX);
        assert!(valid_session_id(&id), "{id}");
    }

    #[test]
    fn request_limit_per_user_and_window() {
        use std::sync::Arc;
        let clock = Arc::new(crate::clock::ManualClock::new());
        let cfg = RealtimeConfig {
            rate_limit_per_minute: 3,
            ..Default::default()
        };
        let st = RealtimeState::new(&cfg, Providers::default(), clock.clone());
        for _ in 0..3 {
            st.admit_request("a").unwrap();
        }
        assert_eq!(st.admit_request("a"), Err(60));
        st.admit_request("b").unwrap();
        clock.advance_ms(59_000);
        assert_eq!(st.admit_request("a"), Err(1));
        clock.advance_ms(1_000);
        st.admit_request("a").unwrap();
    }
}
