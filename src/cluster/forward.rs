//! Requests about a room that another node owns, answered by that node: the HTTP request is
//! forwarded as the client made it (method, path and query, body, `Authorization`, `Content-Type`,
//! `Range`) to the owner's HTTP edge (`NodeRecord::http_url`), and its answer (status, body streamed,
//! the headers a client needs) is returned unchanged. The owner authorizes the request again with the
//! same keys, so forwarding grants nothing. What is forwarded: the recorder's start/stop/status of a
//! call, LiveKit RoomService methods naming a room, and a recording's file or delete on the node that
//! holds its files. A forwarded request carries [`FORWARDED_BY`] and is never forwarded again, so
//! two nodes that disagree for a moment about an owner cannot bounce a request between them.
//!
//! Nodes must reach each other's `http_url` (the address they register); in a deployment behind a
//! load balancer that is the node's own address, not the shared URL.

use super::{Cluster, NodeRecord};
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use std::time::Duration;

/// Header naming the node that forwarded a request.
pub const FORWARDED_BY: &str = "x-parlor-forwarded-by";
/// Request headers passed to the owner.
const REQUEST_HEADERS: [HeaderName; 4] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::RANGE,
    header::ACCEPT,
];
/// Response headers passed back to the client.
const RESPONSE_HEADERS: [HeaderName; 7] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_DISPOSITION,
    header::CONTENT_RANGE,
    header::ACCEPT_RANGES,
    header::CACHE_CONTROL,
    header::ETAG,
];
/// Connecting to another node and getting its response headers; the body then streams unbounded.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a request about a room is answered.
pub enum Target {
    /// Here: single-node mode, this node owns the room, nobody does, the request was forwarded to
    /// this node already, or Redis cannot tell (then this node answers from what it has).
    Here,
    /// On that live node.
    Node(NodeRecord),
    /// The node named is not registered (dead or gone).
    Gone(String),
}

impl Cluster {
    /// Where a request about `room` is answered (see [`Target`]).
    pub async fn target_of_room(&self, room: &str, headers: &HeaderMap) -> Target {
        if !self.enabled() || headers.contains_key(FORWARDED_BY) {
            return Target::Here;
        }
        match self.owner(room).await {
            Ok(Some(owner)) => match self.target_of_node(&owner, headers).await {
                // Its lease is about to lapse: the room can only open here or on a live node.
                Target::Gone(_) => Target::Here,
                t => t,
            },
            Ok(None) => Target::Here,
            Err(e) => {
                tracing::warn!(room, error = %e, "redis cannot tell the room's node; answering here");
                Target::Here
            }
        }
    }

    /// Where a request that node `node` must answer is answered: here when that is this node (or
    /// the request was forwarded already, or Redis cannot tell); else that node, or `Gone`.
    pub async fn target_of_node(&self, node: &str, headers: &HeaderMap) -> Target {
        let Some(reg) = self.registry() else {
            return Target::Here;
        };
        if node == reg.node() || headers.contains_key(FORWARDED_BY) {
            return Target::Here;
        }
        match reg.node_record(node).await {
            Ok(Some(rec)) => Target::Node(rec),
            Ok(None) => Target::Gone(node.to_string()),
            Err(e) => {
                tracing::warn!(node, error = %e, "redis cannot tell the node's address; answering here");
                Target::Here
            }
        }
    }

    /// Forward the request to `to` and return its answer; Err (why) when it cannot be reached.
    pub async fn forward(
        &self,
        to: &NodeRecord,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response, Unreachable> {
        let from = self.node().unwrap_or_default().to_string();
        let url = format!("{}{}", to.http_url.trim_end_matches('/'), path_and_query);
        let mut rb = client().request(method, &url).body(body);
        for h in REQUEST_HEADERS {
            if let Some(v) = headers.get(&h) {
                rb = rb.header(h, v);
            }
        }
        rb = rb.header(FORWARDED_BY, from);
        let res = match tokio::time::timeout(RESPONSE_TIMEOUT, rb.send()).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(Unreachable::new(&to.node, e.to_string())),
            Err(_) => return Err(Unreachable::new(&to.node, "no answer in time".into())),
        };
        let status = StatusCode::from_u16(res.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut out = Response::builder().status(status);
        for h in RESPONSE_HEADERS {
            if let Some(v) = res.headers().get(h.as_str()) {
                if let Ok(v) = HeaderValue::from_bytes(v.as_bytes()) {
                    out = out.header(h, v);
                }
            }
        }
        out.body(Body::from_stream(res.bytes_stream()))
            .map_err(|e| Unreachable::new(&to.node, e.to_string()))
    }
}

/// The node a request was forwarded to could not be reached (logged when made).
#[derive(Debug, thiserror::Error)]
#[error("the node that has this room ({node}) cannot be reached: {why}")]
pub struct Unreachable {
    pub node: String,
    pub why: String,
}

impl Unreachable {
    fn new(node: &str, why: String) -> Unreachable {
        tracing::warn!(node, error = %why, "forwarding a request to another node failed");
        Unreachable {
            node: node.to_string(),
            why,
        }
    }
}

impl From<Unreachable> for crate::error::ApiError {
    fn from(e: Unreachable) -> Self {
        crate::error::ApiError::unavailable(e.to_string()).with_code("node_unreachable")
    }
}

/// One HTTP client for every forward (connection reuse between nodes); no redirects.
fn client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    })
}
