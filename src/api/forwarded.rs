//! Product API requests that another node must answer in multi-node mode (the recorder of a call
//! whose room lives there, a recording whose files it holds), forwarded as `crate::cluster::forward`
//! describes. Handlers take a [`Forwardable`] and ask it first; None means: answer here. Only
//! bodiless requests are forwarded this way.

use crate::cluster::forward::Target;
use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;

/// What a forward needs of the request.
pub struct Forwardable {
    method: Method,
    path_and_query: String,
    headers: HeaderMap,
}

impl<S: Send + Sync> FromRequestParts<S> for Forwardable {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Forwardable {
            method: parts.method.clone(),
            path_and_query: parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string()),
            headers: parts.headers.clone(),
        })
    }
}

impl Forwardable {
    /// The answer of the node that owns `room`, when that is another live node.
    pub async fn to_room_node(&self, state: &AppState, room: &str) -> Option<Response> {
        let target = state.cluster.target_of_room(room, &self.headers).await;
        self.send(state, target).await
    }

    /// The answer of node `node`, when that is another node: forwarded when it is live, else
    /// 503 `unavailable` with `what` as the thing that node holds.
    pub async fn to_node(&self, state: &AppState, node: &str, what: &str) -> Option<Response> {
        match state.cluster.target_of_node(node, &self.headers).await {
            Target::Gone(node) => Some(
                ApiError::unavailable(format!(
                    "{what} is on node {node}, which is not running; try again when it is back"
                ))
                .with_code("node_unavailable")
                .into_response(),
            ),
            target => self.send(state, target).await,
        }
    }

    async fn send(&self, state: &AppState, target: Target) -> Option<Response> {
        let Target::Node(to) = target else {
            return None;
        };
        let res = state
            .cluster
            .forward(
                &to,
                self.method.clone(),
                &self.path_and_query,
                &self.headers,
                Bytes::new(),
            )
            .await;
        Some(res.unwrap_or_else(|e| ApiError::from(e).into_response()))
    }
}
