//! REST API routes.

pub mod calls;
pub mod chat;
pub mod devices;
pub mod forwarded;
pub mod front;
pub mod health;
pub mod huddles;
pub mod ice;
pub mod openapi;
pub mod presence;
pub mod realtime;
pub mod recordings;
pub mod rooms;
pub mod util;

use crate::state::AppState;
use axum::Router;

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(health::routes())
        .merge(rooms::routes())
        .merge(ice::routes())
        .merge(crate::signal::routes())
        .merge(calls::routes())
        .merge(huddles::routes())
        .merge(presence::routes())
        .merge(devices::routes())
        .merge(chat::routes())
        .merge(recordings::routes())
        .merge(realtime::routes())
        .merge(openapi::routes())
        .merge(front::routes())
}
