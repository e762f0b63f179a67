//! Model sessions (seed 000, issue 16 items 1-2) over real HTTP and WebSocket against a running
//! server with a manual clock, on every backend from `all_dbs()` (SQLite and PostgreSQL).

#[path = "../common/mod.rs"]
mod common;

mod errors;
mod openai;
mod rest;
mod stats;
mod support;
mod ws;
