//! parlor-turn: TURN REST API credentials and an embedded TURN server.
//!
//! # Credentials
//! [`mint`] / [`CredentialValidator`] implement the TURN REST API scheme used by coturn's
//! `use-auth-secret` + `static-auth-secret`: username `"<unix expiry>:<user id>"`, credential
//! `base64(HMAC-SHA1(secret, username))`. Several secrets can be configured for rotation (mint
//! with the first, accept any). Credentials minted here work unchanged against a coturn
//! configured with the same secret (tested in `tests/coturn_interop.rs`).
//!
//! # Server
//! [`TurnServer`] is an RFC 5766/8656 TURN server (UDP relays; clients over UDP and TCP) with:
//! long-term credential auth validating the REST credentials (expiry checked against an injected
//! [`Clock`], MESSAGE-INTEGRITY verified in constant time against every configured secret),
//! stateless HMAC nonces, a peer address policy ([`PeerPolicy`]: every IANA special-purpose
//! IPv4/IPv6 range (RFC 6890) is refused with 403 unless allow-listed, and the server's own
//! addresses except its media and relay ports), per-user and global allocation quotas (486 /
//! 508; EVEN-PORT reservations count), TCP connection caps (global, per source IP) with an idle
//! timeout for connections without an allocation, lifetime caps, and counters
//! ([`MetricsSnapshot`]).
//!
//! ## Why not the webrtc-rs TURN server
//! Evaluated (Nov 2026): `rtc-turn` 0.21.1 (Sans-I/O) ships only the *client* and the protocol
//! attributes — there is no server in it. `turn` 0.17.2 (tokio) has a server, but its
//! `AuthHandler` returns a single key per username (no secret rotation: MESSAGE-INTEGRITY is
//! checked against one key only), it has no hook to refuse peer addresses (CreatePermission /
//! ChannelBind / Send are accepted for any peer), no TCP listener, no per-user quota, a
//! hard-coded 3600 s lifetime cap, and it reads the system clock for nonces and expiry. Wrapping
//! it would have meant parsing and filtering every packet before it anyway, so the server here
//! owns its (small, fuzz-tested) STUN codec and allocation table, and follows the same RFC
//! structure as webrtc-rs/Pion (five-tuple keyed allocations, one relay socket per allocation,
//! permission and channel maps with expiry).
//!
//! # Time
//! Library code never reads the system time: the server binary passes a closure returning the
//! system time since `UNIX_EPOCH` (any `Fn() -> Duration` is a [`Clock`]), tests pass a
//! [`ManualClock`].

mod clock;
mod config;
pub mod credentials;
#[doc(hidden)]
pub mod fuzzing;
mod metrics;
pub mod netif;
mod policy;
mod server;
mod stun;
mod urls;

pub use clock::{Clock, ManualClock};
pub use config::TurnConfig;
pub use credentials::{
    credential_for, long_term_key, mint, CredentialError, CredentialValidator, Credentials,
    ValidatedUser, DEFAULT_TTL_SECS,
};
pub use ipnet::IpNet;
pub use metrics::MetricsSnapshot;
pub use policy::{special_purpose, DeniedReason, PeerPolicy};
pub use server::{LocalAddrs, TurnServer};
pub use urls::{stun_url, turn_urls};

/// Errors starting the TURN server.
#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    /// Invalid configuration.
    #[error("invalid TURN configuration: {0}")]
    Config(String),
    /// A listener could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address that failed.
        addr: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Other I/O failure.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The OS random source failed.
    #[error("random source failed: {0}")]
    Random(String),
}
