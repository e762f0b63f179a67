//! REST API routes.

pub mod health;
pub mod ice;
pub mod rooms;

use crate::state::AppState;
use axum::Router;

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(health::routes())
        .merge(rooms::routes())
        .merge(ice::routes())
        .merge(crate::signal::routes())
}
