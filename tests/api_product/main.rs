//! Calls, huddles, presence, devices, chat and OpenAPI over real HTTP/WebSocket against a running
//! server, on every backend from `all_dbs()` (SQLite and PostgreSQL).

#[path = "../common/mod.rs"]
mod common;

mod calls;
mod chat;
mod devices;
mod embed;
mod fuzz;
mod huddles;
mod openapi;
mod presence;
mod recordings;
mod seed_shapes;
mod support;
mod token_purpose;
