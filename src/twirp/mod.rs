//! LiveKit's server APIs over Twirp: `POST /twirp/livekit.<Service>/<Method>`, so LiveKit's server
//! SDKs (`livekit-api`, `livekit-server-sdk`, …) manage Parlor rooms unchanged.
//!
//! Owns the Twirp edge: routing by service and method, both body codecs (protobuf,
//! `application/protobuf`; proto3 JSON, `application/json`, answered in the codec asked in), the
//! bearer access token and its grants, and Twirp's error JSON (`{"code", "msg"}`) with Twirp's HTTP
//! status per code. The methods live per service ([`room_service`], [`agent_dispatch`]); they act on the live rooms
//! through the SFU's commands and on the stored rooms through the store.

mod agent_dispatch;
mod room_service;

use crate::cluster::forward::{Target, FORWARDED_BY};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use parlor_signaling::token::{Claims, VideoGrant};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest request body (a `SendData` payload is the only large field).
const MAX_BODY: usize = 1 << 20;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/twirp/{service}/{method}", post(dispatch))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

/// A Twirp error: one of Twirp's codes and a message; answered as `{"code", "msg"}` JSON with
/// the code's HTTP status (whatever codec the request used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwirpError {
    pub code: &'static str,
    pub msg: String,
}

impl TwirpError {
    pub fn new(code: &'static str, msg: impl Into<String>) -> Self {
        TwirpError {
            code,
            msg: msg.into(),
        }
    }
    pub fn invalid_argument(msg: impl Into<String>) -> Self {
        Self::new("invalid_argument", msg)
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::new("not_found", msg)
    }
    pub fn permission_denied(msg: impl Into<String>) -> Self {
        Self::new("permission_denied", msg)
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new("internal", msg)
    }

    /// Twirp's status for each code (twitchtv/twirp `ServerHTTPStatusFromErrorCode`).
    pub fn status(&self) -> StatusCode {
        match self.code {
            "canceled" | "deadline_exceeded" => StatusCode::REQUEST_TIMEOUT,
            "invalid_argument" | "malformed" | "out_of_range" => StatusCode::BAD_REQUEST,
            "not_found" | "bad_route" => StatusCode::NOT_FOUND,
            "already_exists" | "aborted" => StatusCode::CONFLICT,
            "permission_denied" => StatusCode::FORBIDDEN,
            "unauthenticated" => StatusCode::UNAUTHORIZED,
            "resource_exhausted" => StatusCode::TOO_MANY_REQUESTS,
            "failed_precondition" => StatusCode::PRECONDITION_FAILED,
            "unimplemented" => StatusCode::NOT_IMPLEMENTED,
            "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<crate::store::StoreError> for TwirpError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::warn!(error = %e, "twirp: store error");
        TwirpError::internal("storage error")
    }
}

impl IntoResponse for TwirpError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.code, "msg": self.msg });
        (
            self.status(),
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

/// The request's body codec (Twirp: by `Content-Type`; the response uses the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Protobuf,
    Json,
}

impl Codec {
    fn of(headers: &HeaderMap) -> Result<Codec, TwirpError> {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        match mime {
            "application/protobuf" | "application/x-protobuf" => Ok(Codec::Protobuf),
            "application/json" => Ok(Codec::Json),
            other => Err(TwirpError::new(
                "bad_route",
                format!(
                    "unexpected Content-Type {other:?}: use application/protobuf or application/json"
                ),
            )),
        }
    }

    /// Decode a request message (an empty JSON body is the default message, as Twirp allows).
    pub fn decode<T: prost::Message + Default + DeserializeOwned>(
        self,
        body: &[u8],
    ) -> Result<T, TwirpError> {
        match self {
            Codec::Protobuf => T::decode(body)
                .map_err(|e| TwirpError::new("malformed", format!("bad protobuf body: {e}"))),
            Codec::Json if body.iter().all(u8::is_ascii_whitespace) => Ok(T::default()),
            Codec::Json => serde_json::from_slice(body)
                .map_err(|e| TwirpError::new("malformed", format!("bad JSON body: {e}"))),
        }
    }

    /// Encode a response message in this codec.
    pub fn reply<T: prost::Message + Serialize>(self, msg: &T) -> Response {
        match self {
            Codec::Protobuf => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/protobuf")],
                msg.encode_to_vec(),
            )
                .into_response(),
            Codec::Json => match serde_json::to_vec(msg) {
                Ok(body) => (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    body,
                )
                    .into_response(),
                Err(e) => TwirpError::internal(format!("encoding the reply: {e}")).into_response(),
            },
        }
    }
}

/// The caller: a verified access token (LiveKit's: API key as issuer, HMAC-SHA256 with its secret).
/// Server SDK tokens usually carry no identity, so none is required.
pub struct Caller {
    pub claims: Claims,
}

impl Caller {
    fn from_headers(state: &AppState, headers: &HeaderMap) -> Result<Caller, TwirpError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| TwirpError::new("unauthenticated", "missing Bearer access token"))?;
        let claims = state
            .keys
            .verify(token, state.clock.unix_secs())
            .map_err(|e| {
                TwirpError::new("unauthenticated", format!("invalid access token: {e}"))
            })?;
        Ok(Caller { claims })
    }

    pub fn video(&self) -> VideoGrant {
        self.claims.video()
    }

    /// `roomAdmin` for `room` (LiveKit: the grant's room must name it).
    pub fn require_room_admin(&self, room: &str) -> Result<(), TwirpError> {
        let v = self.video();
        if v.room_admin && v.room.as_deref() == Some(room) {
            Ok(())
        } else {
            Err(TwirpError::permission_denied(format!(
                "token lacks the roomAdmin grant for room {room:?}"
            )))
        }
    }
}

async fn dispatch(
    State(state): State<AppState>,
    Path((service, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let codec = Codec::of(&headers)?;
        let caller = Caller::from_headers(&state, &headers)?;
        match service.as_str() {
            "livekit.RoomService" => {
                let path = format!("/twirp/{service}/{method}");
                // Multi-node mode: a room's methods run on the node that has it open; ListRooms
                // lists every node's rooms.
                if let Some(room) = room_service::room_of(&method, codec, &body) {
                    let target = state.cluster.target_of_room(&room, &headers).await;
                    if let Target::Node(to) = target {
                        let res = state
                            .cluster
                            .forward(&to, Method::POST, &path, &headers, body.clone())
                            .await;
                        return res.map_err(|e| TwirpError::new("unavailable", e.to_string()));
                    }
                }
                if method == "ListRooms" {
                    return list_rooms(&state, &caller, codec, &path, &headers, &body).await;
                }
                room_service::call(&state, &caller, &method, codec, &body).await
            }
            "livekit.AgentDispatchService" => {
                agent_dispatch::call(&state, &caller, &method, codec, &body).await
            }
            _ => Err(TwirpError::new(
                "bad_route",
                format!("no service {service:?} at this server"),
            )),
        }
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `RoomService.ListRooms`: this node's rooms, and in multi-node mode (unless forwarded here) every
/// other live node's, asked with the same request. A node that does not answer is left out (logged).
async fn list_rooms(
    state: &AppState,
    caller: &Caller,
    codec: Codec,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, TwirpError> {
    let mut rooms = room_service::list(state, caller, codec.decode(body)?).await?;
    if state.cluster.enabled() && !headers.contains_key(FORWARDED_BY) {
        let me = state.cluster.node().unwrap_or_default().to_string();
        let nodes = state.cluster.nodes().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "ListRooms: redis cannot list the nodes; listing this node's rooms");
            Vec::new()
        });
        for n in nodes.iter().filter(|n| n.node != me) {
            let res = state
                .cluster
                .forward(n, Method::POST, path, headers, body.clone())
                .await;
            let theirs = match res {
                Ok(r) if r.status() == StatusCode::OK => {
                    let bytes = axum::body::to_bytes(r.into_body(), 16 << 20).await;
                    bytes.ok().and_then(|b| codec.decode(&b).ok())
                }
                _ => None,
            };
            match theirs {
                Some(theirs) => room_service::merge_rooms(&mut rooms, theirs),
                None => tracing::warn!(node = %n.node, "ListRooms: that node's rooms left out"),
            }
        }
    }
    Ok(codec.reply(&rooms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use parlor_signaling::protocol::proto;

    #[test]
    fn codes_map_to_twirp_statuses() {
        for (code, status) in [
            ("permission_denied", 403),
            ("unauthenticated", 401),
            ("not_found", 404),
            ("bad_route", 404),
            ("invalid_argument", 400),
            ("malformed", 400),
            ("already_exists", 409),
            ("resource_exhausted", 429),
            ("unimplemented", 501),
            ("internal", 500),
        ] {
            assert_eq!(
                TwirpError::new(code, "").status().as_u16(),
                status,
                "{code}"
            );
        }
    }

    #[test]
    fn bodies_decode_in_both_codecs_and_bad_ones_are_malformed() {
        let req = proto::CreateRoomRequest {
            name: "r1".into(),
            max_participants: 3,
            ..Default::default()
        };
        let pb = prost::Message::encode_to_vec(&req);
        let got: proto::CreateRoomRequest = Codec::Protobuf.decode(&pb).unwrap();
        assert_eq!(got, req);
        // proto3 JSON: camelCase and the proto field names both parse.
        for json in [
            r#"{"name":"r1","maxParticipants":3}"#,
            r#"{"name":"r1","max_participants":3}"#,
        ] {
            let got: proto::CreateRoomRequest = Codec::Json.decode(json.as_bytes()).unwrap();
            assert_eq!(got, req, "{json}");
        }
        let empty: proto::ListRoomsRequest = Codec::Json.decode(b"").unwrap();
        assert!(empty.names.is_empty());
        let bad: Result<proto::CreateRoomRequest, _> = Codec::Json.decode(b"{\"name\":");
        assert_eq!(bad.unwrap_err().code, "malformed");
        let bad: Result<proto::CreateRoomRequest, _> = Codec::Protobuf.decode(&[0xff, 0xff, 0xff]);
        assert_eq!(bad.unwrap_err().code, "malformed");
    }
}
