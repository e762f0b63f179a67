//! Parlor: a self-hostable real-time media server.
//!
//! The server crate assembles the member crates (`parlor-media`, `parlor-signaling`, `parlor-turn`)
//! into one binary: REST API, signaling WebSocket, SFU media workers, embedded TURN, storage.

pub mod agents;
pub mod api;
pub mod assistant;
pub mod auth;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod connlimit;
pub mod embed;
pub mod error;
pub mod fdlimit;
pub mod flood;
#[doc(hidden)]
pub mod fuzzing;
pub mod home;
pub mod http_serve;
pub mod ice;
pub mod ids;
pub mod log_limit;
pub mod metrics;
pub mod orphans;
pub mod product;
pub mod realtime;
pub mod recorder;
pub mod recording_delete;
pub mod server;
pub mod sfu;
pub mod signal;
pub mod state;
pub mod store;
pub mod timefmt;
pub mod twirp;
pub mod webhooks;
