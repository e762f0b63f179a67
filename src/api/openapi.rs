//! `GET /openapi.json`: the OpenAPI 3.0 description of every REST endpoint, written as data.
//! `tests/api_openapi.rs` checks that every route registered under `src/api/` is described here and
//! that every described operation is served.

use crate::state::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

pub fn routes() -> Router<AppState> {
    Router::new().route("/openapi.json", get(serve))
}

async fn serve(State(state): State<AppState>) -> Json<Value> {
    Json(document(&state.config.public_http_url()))
}

pub(crate) fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

pub(crate) fn path_param(name: &str, desc: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": desc, "schema": { "type": "string" } })
}

pub(crate) fn query(name: &str, ty: &str, desc: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": desc, "schema": { "type": ty } })
}

pub(crate) fn ok(desc: &str, schema: Value) -> Value {
    json!({ "description": desc, "content": { "application/json": { "schema": schema } } })
}

pub(crate) fn err(desc: &str) -> Value {
    ok(desc, r("Error"))
}

/// One operation. `errors` are (status, description) pairs answered with the error envelope.
pub(crate) fn op(
    tag: &str,
    summary: &str,
    params: Vec<Value>,
    body: Option<Value>,
    success: (&str, &str, Value),
    errors: &[(&str, &str)],
    auth: bool,
) -> Value {
    let mut responses = Map::new();
    responses.insert(success.0.into(), ok(success.1, success.2));
    if auth {
        responses.insert(
            "401".into(),
            err("missing, invalid or expired Bearer token"),
        );
    }
    if body.is_some() || !params.is_empty() {
        responses.insert(
            "400".into(),
            err("invalid request (malformed JSON, wrong types, validation_error)"),
        );
    }
    for (code, desc) in errors {
        responses.insert((*code).into(), err(desc));
    }
    let mut o = json!({
        "tags": [tag],
        "summary": summary,
        "parameters": params,
        "responses": responses,
    });
    if let Some(b) = body {
        o["requestBody"] =
            json!({ "required": true, "content": { "application/json": { "schema": b } } });
    }
    if !auth {
        o["security"] = json!([]);
    }
    o
}

pub(crate) fn obj(props: Value, required: &[&str]) -> Value {
    json!({ "type": "object", "properties": props, "required": required })
}

pub(crate) fn success_obj(props: Value) -> Value {
    let mut p = props;
    p["success"] = json!({ "type": "boolean" });
    obj(p, &["success"])
}

pub(crate) fn s() -> Value {
    json!({ "type": "string" })
}
pub(crate) fn ns() -> Value {
    json!({ "type": "string", "nullable": true })
}
pub(crate) fn dt() -> Value {
    json!({ "type": "string", "format": "date-time" })
}
pub(crate) fn ndt() -> Value {
    json!({ "type": "string", "format": "date-time", "nullable": true })
}
pub(crate) fn int() -> Value {
    json!({ "type": "integer", "format": "int64" })
}
pub(crate) fn boolean() -> Value {
    json!({ "type": "boolean" })
}
pub(crate) fn arr(items: Value) -> Value {
    json!({ "type": "array", "items": items })
}

fn schemas() -> Value {
    json!({
        "Error": obj(json!({
            "success": { "type": "boolean", "enum": [false] },
            "error": obj(json!({ "code": s(), "message": s() }), &["code", "message"]),
        }), &["success", "error"]),
        "Room": obj(json!({ "name": s(), "sid": s(), "created_at": int(),
            "closed_at": { "type": "integer", "nullable": true, "description": "unix ms when its live room closed" },
            "max_participants": int() }), &["name", "sid"]),
        "CallMember": obj(json!({
            "user_id": s(), "role": { "type": "string", "enum": ["creator", "invitee", "participant"] },
            "invited_by": ns(), "invited_at": dt(), "joined_at": ndt(), "left_at": ndt(),
        }), &["user_id", "role"]),
        "Call": obj(json!({
            "id": s(), "type": { "type": "string", "enum": ["audio", "video"] },
            "conversation_id": ns(), "created_by": s(),
            "status": { "type": "string", "enum": ["ringing", "active", "completed", "missed"] },
            "created_at": dt(), "started_at": ndt(), "ended_at": ndt(),
            "duration": { "type": "integer", "nullable": true, "description": "whole seconds (rounded)" },
            "duration_ms": { "type": "integer", "nullable": true },
            "record": boolean(), "room": s(), "members": arr(r("CallMember")),
            "participant_count": { "type": "integer", "description": "GET /api/calls/{call_id} only" },
        }), &["id", "type", "status", "created_by"]),
        "Participant": obj(json!({
            "user_id": s(), "name": s(), "joined_at": dt(), "joined_at_ms": int(),
            "media_connected": boolean(),
            "media": obj(json!({ "audio": boolean(), "video": boolean() }), &["audio", "video"]),
        }), &["user_id", "joined_at", "media"]),
        "Huddle": obj(json!({
            "id": s(), "name": s(), "workspace_id": ns(), "channel_id": ns(), "created_by": s(),
            "created_at": dt(), "started_at": ndt(), "ended_at": ndt(),
            "status": { "type": "string", "enum": ["idle", "active", "ended"] },
            "participants": arr(obj(json!({
                "user_id": s(), "joined_at": ndt(), "connected": boolean(),
                "media": obj(json!({ "audio": boolean(), "video": boolean() }), &[]),
            }), &["user_id"])),
            "members": arr(s()),
            "max_participants": int(),
        }), &["id", "name", "created_by", "participants"]),
        "Presence": obj(json!({
            "user_id": s(), "status": { "type": "string", "enum": ["online", "away", "offline"] },
            "custom_message": ns(), "emoji": ns(), "last_seen": ndt(),
            "devices": arr(obj(json!({ "id": s(), "timestamp": int() }), &["id", "timestamp"])),
            "in_rooms": int(),
        }), &["user_id", "status"]),
        "Device": obj(json!({
            "id": s(), "platform": s(), "name": ns(), "app_version": ns(), "push_enabled": boolean(),
            "registered_at": dt(), "last_active": dt(),
        }), &["id", "platform"]),
        "Notification": obj(json!({
            "id": s(), "kind": { "type": "string", "enum": ["call_invite", "huddle_invite"] },
            "device_id": s(), "status": { "type": "string", "enum": ["sent", "failed", "skipped"] },
            "error": ns(), "payload": { "type": "object" }, "created_at": dt(), "created_at_ms": int(),
        }), &["id", "kind", "device_id", "status"]),
        "ChatMessage": obj(json!({
            "_id": s(), "thread": s(), "from": s(), "content": s(),
            "files": arr(obj(json!({ "_id": s() }), &["_id"])),
            "likes": arr(s()), "dislikes": arr(s()), "replyTo": ns(), "createdAt": int(),
        }), &["_id", "thread", "from", "content", "createdAt"]),
        "ChatThread": obj(json!({
            "_id": s(), "type": { "type": "string", "enum": ["personal", "group", "custom"] },
            "group": s(), "name": s(), "users": arr(s()), "activity": int(), "access": int(),
            "lastMessage": { "allOf": [r("ChatMessage")], "nullable": true },
            "newActivityCount": int(), "createdAt": int(),
        }), &["_id", "type", "users", "activity", "access", "lastMessage", "newActivityCount", "createdAt"]),
        "Recording": obj(json!({
            "id": s(), "call_id": s(), "conversation_id": ns(), "call_type": s(), "started_by": s(),
            "started_at": dt(), "ended_at": ndt(),
            "duration": { "type": "integer", "nullable": true, "description": "whole seconds (rounded)" },
            "duration_ms": { "type": "integer", "nullable": true },
            "status": { "type": "string", "enum": ["recording", "completed", "failed"] },
            "size_bytes": { "type": "integer", "nullable": true }, "has_file": boolean(),
        }), &["id", "call_id", "status"]),
        "IceServer": obj(json!({
            "urls": { "type": "array", "items": s(), "description": "always an array (WebRTC's RTCIceServer.urls takes a string or an array; Parlor sends the array form, which browsers and the LiveKit SDKs accept, with one entry per transport for TURN)" },
            "username": s(), "credential": s() }), &["urls"]),
        "JoinCredentials": success_obj(json!({
            "url": { "type": "string", "description": "WebSocket URL of the signaling endpoint" },
            "token": { "type": "string", "description": "access token for the call/huddle room" },
        })),
    })
}

/// `POST /api/dev/demo-token` (its body is optional).
fn demo_token_op() -> Value {
    let mut o = op(
        "meta",
        "Dev mode only (no [keys] configured): a join token for the `demo` room, so /demo works with one click",
        vec![],
        Some(obj(
            json!({ "identity": { "type": "string", "description": "default: guest-<random>; 1-64 of A-Z a-z 0-9 - _ ." } }),
            &[],
        )),
        (
            "200",
            "token",
            success_obj(json!({ "url": s(), "token": s(), "room": s(), "identity": s(), "expires_in": int() })),
        ),
        &[("403", "dev_mode_only: API keys are configured")],
        false,
    );
    o["requestBody"]["required"] = json!(false);
    o
}

/// The whole document; `server_url` goes into `servers`.
pub fn document(server_url: &str) -> Value {
    let call_id = || path_param("call_id", "call id (also the SFU room name)");
    let huddle_id = || path_param("huddle_id", "huddle id (also the SFU room name)");
    let device_id = || path_param("device_id", "the client's device id");
    let rec_id = || path_param("recording_id", "recording id");
    let not_found_call = ("404", "call_not_found");
    let forbidden = ("403", "not_authorized: the caller is not a member");
    let paths = json!({
        "/health": { "get": op("health", "Health with dependency and connection stats", vec![], None,
            ("200", "healthy", obj(json!({ "status": s(), "version": s(), "uptime": int(), "node": s(),
                "cluster": obj(json!({ "nodes": arr(s()), "connected": boolean(),
                    "members": arr(obj(json!({ "node": s(), "address": s(), "status": s(), "rooms": int(),
                        "participants": int(), "self": boolean() }), &["node", "status"])) }), &["nodes", "connected"]),
                "dependencies": { "type": "object" }, "stats": { "type": "object" } }), &["status"])),
            &[("503", "unhealthy (database unreachable)")], false) },
        "/health/ready": { "get": op("health", "Readiness", vec![], None,
            ("200", "ready", obj(json!({ "status": s() }), &["status"])), &[("503", "not ready")], false) },
        "/health/live": { "get": op("health", "Liveness", vec![], None,
            ("200", "alive", obj(json!({ "status": s() }), &["status"])), &[], false) },
        "/metrics": { "get": {
            "tags": ["health"], "summary": "Prometheus metrics (text format)", "parameters": [], "security": [],
            "description": "Open unless `metrics.token` is configured; then `Authorization: Bearer <metrics.token>` is required.",
            "responses": { "200": { "description": "metrics", "content": { "text/plain": { "schema": s() } } },
                "401": err("metrics.token is set and the request lacks it") },
        } },
        "/demo": { "get": {
            "tags": ["meta"], "summary": "Demo page joining a room with the livekit-client SDK (served from /assets/)", "parameters": [], "security": [],
            "responses": { "200": { "description": "HTML page", "content": { "text/html": { "schema": s() } } } },
        } },
        "/docs": { "get": {
            "tags": ["meta"], "summary": "This API reference, rendered from /openapi.json (no external assets)", "parameters": [], "security": [],
            "responses": { "200": { "description": "HTML page", "content": { "text/html": { "schema": s() } } } },
        } },
        "/favicon.ico": { "get": {
            "tags": ["meta"], "summary": "Favicon (SVG)", "parameters": [], "security": [],
            "responses": { "200": { "description": "icon", "content": { "image/svg+xml": { "schema": s() } } } },
        } },
        "/assets/{file}": { "get": {
            "tags": ["meta"], "summary": "A pinned browser bundle from the Parlor home (`livekit-client.umd.js`); with `?v=<pinned version>` cacheable for a year",
            "security": [],
            "parameters": [path_param("file", "asset file name, e.g. livekit-client.umd.js"),
                query("v", "string", "the pinned version (as in the URL /demo uses)")],
            "responses": {
                "200": { "description": "the file", "content": { "text/javascript": { "schema": s() } } },
                "400": err("invalid request"),
                "404": err("asset_not_found, asset_version_not_found, or asset_not_installed (run scripts/setup on the server)"),
            },
        } },
        "/api/dev/demo-token": { "post": demo_token_op() },
        "/openapi.json": { "get": op("meta", "This document", vec![], None,
            ("200", "OpenAPI 3 document", json!({ "type": "object" })), &[], false) },
        "/api/rooms": {
            "get": op("rooms", "List open rooms (newest first)", vec![
                query("before", "integer", "created_at (unix ms) of the last room of the previous page"),
                query("limit", "integer", "1-200, default 50")], None,
                ("200", "rooms", success_obj(json!({ "count": int(), "rooms": arr(r("Room")) }))), &[], true),
            "post": op("rooms", "Create a room (needs the roomCreate grant): the SFU runs it under its sid and \
                max_participants (absent or 0: the server limit, which also caps it); a closed room's name may be created again", vec![],
                Some(obj(json!({ "name": s(), "max_participants": int() }), &["name"])),
                ("201", "created", success_obj(json!({ "room": r("Room") }))),
                &[("403", "not_authorized: token lacks roomCreate"), ("409", "room_exists")], true),
        },
        "/api/rooms/{name}": {
            "get": op("rooms", "A stored room, open or closed (closed_at is set when its live room closes)",
                vec![path_param("name", "room name")], None,
                ("200", "the room", success_obj(json!({ "room": r("Room") }))),
                &[("404", "room_not_found")], true),
        },
        "/api/calls": {
            "get": op("calls", "Calls the caller belongs to, newest first", vec![
                query("conversation_id", "string", "only this conversation's calls"),
                query("before", "integer", "`next_before` of the previous page (created_at, unix ms)"),
                query("limit", "integer", "1-100, default 20")], None,
                ("200", "calls", success_obj(json!({ "calls": arr(r("Call")), "count": int(), "next_before": { "type": "integer", "nullable": true } }))),
                &[], true),
            "post": op("calls", "Create a call (status ringing) and get the creator's join credentials", vec![],
                Some(obj(json!({ "call_type": { "type": "string", "enum": ["audio", "video"], "default": "video" },
                    "conversation_id": s(), "record": { "type": "boolean", "default": false,
                    "description": "record automatically once media flows" } }), &[])),
                ("201", "created", success_obj(json!({ "call_id": s(), "call": r("Call"), "url": s(), "token": s() }))),
                &[], true),
        },
        "/api/calls/{call_id}": {
            "get": op("calls", "A call", vec![call_id()], None,
                ("200", "the call", success_obj(json!({ "call": r("Call") }))), &[forbidden, not_found_call], true),
            "delete": op("calls", "Delete the call record (creator only); never ends a live call", vec![call_id()], None,
                ("200", "deleted", success_obj(json!({ "call_id": s(), "deleted": boolean() }))),
                &[("403", "not_authorized: not the creator / not a member"), not_found_call], true),
        },
        "/api/calls/{call_id}/invite": { "post": op("calls", "Invite a user: adds them to the call and notifies their devices",
            vec![call_id()],
            Some(obj(json!({ "user_id": s(), "call_type": { "type": "string", "enum": ["audio", "video"] } }), &["user_id"])),
            ("200", "invited", success_obj(json!({ "call_id": s(), "invited_user": s(), "notified_devices": int() }))),
            &[forbidden, not_found_call, ("409", "call_not_active: the call has ended")], true) },
        "/api/calls/{call_id}/join": { "post": op("calls", "Join credentials for a member", vec![call_id()], None,
            ("200", "credentials", success_obj(json!({ "call_id": s(), "url": s(), "token": s() }))),
            &[forbidden, not_found_call, ("409", "call_not_active: the call has ended")], true) },
        "/api/calls/{call_id}/participants": { "get": op("calls", "Live participants and their media (from the SFU)",
            vec![call_id()], None,
            ("200", "participants", success_obj(json!({ "call_id": s(), "status": s(), "participants": arr(r("Participant")), "count": int() }))),
            &[forbidden, not_found_call], true) },
    });
    let paths2 = json!({
        "/api/calls/{call_id}/ice-servers": { "get": op("calls", "ICE servers (STUN, TURN with REST credentials) for a member",
            vec![call_id()], None,
            ("200", "ICE servers", success_obj(json!({ "call_id": s(), "ice_servers": arr(r("IceServer")), "ttl": int() }))),
            &[forbidden, not_found_call], true) },
        "/api/signaling/ice-config": { "get": op("signaling", "ICE configuration for the caller", vec![], None,
            ("200", "ICE config", success_obj(json!({ "config": obj(json!({ "ice_servers": arr(r("IceServer")),
                "ice_transport_policy": s(), "ttl": int() }), &["ice_servers"]) }))), &[], true) },
        "/api/signaling/turn-credentials": { "post": op("signaling", "TURN REST credentials (expiry:user, base64 HMAC-SHA1)", vec![], None,
            ("200", "credentials", success_obj(json!({ "credentials": obj(json!({ "username": s(), "credential": s(),
                "ttl": int(), "expires_at": int(), "urls": arr(s()) }), &["username", "credential"]) }))),
            &[("503", "invalid_turn_credentials: no TURN secret configured")], true) },
        "/rtc": { "get": {
            "tags": ["signaling"], "summary": "LiveKit signaling WebSocket (protobuf SignalRequest/SignalResponse)", "security": [],
            "parameters": [query("access_token", "string", "join token (or Authorization: Bearer)")],
            "responses": { "101": { "description": "switching protocols" },
                "400": err("not a WebSocket upgrade request"),
                "401": { "description": "invalid token", "content": { "text/plain": { "schema": s() } } },
                "403": { "description": "token lacks the roomJoin grant", "content": { "text/plain": { "schema": s() } } } },
        } },
        "/agent": { "get": {
            "tags": ["livekit-server-api"], "summary": "LiveKit Agents worker WebSocket (binary protobuf WorkerMessage in, ServerMessage out: register, availability, job assignment, job status, load, pings); see docs/SERVER_API.md", "security": [],
            "parameters": [query("access_token", "string", "access token with the agent grant (or Authorization: Bearer)")],
            "responses": { "101": { "description": "switching protocols" },
                "401": { "description": "missing or invalid token, or no agent grant", "content": { "text/plain": { "schema": s() } } },
                "404": { "description": "not a WebSocket upgrade request", "content": { "text/plain": { "schema": s() } } } },
        } },
        "/rtc/v1": { "get": {
            "tags": ["signaling"], "summary": "LiveKit signal protocol v1: one peer connection that publishes and subscribes; the client offers every negotiation", "security": [],
            "parameters": [query("join_request", "string", "URL-safe base64 WrappedJoinRequest (JoinRequest, plain or gzip; may carry the first offer)"),
                query("access_token", "string", "join token (or Authorization: Bearer)")],
            "responses": { "101": { "description": "switching protocols" },
                "400": { "description": "not a WebSocket upgrade, or a malformed join_request", "content": { "text/plain": { "schema": s() } } },
                "401": { "description": "invalid token", "content": { "text/plain": { "schema": s() } } },
                "403": { "description": "token lacks the roomJoin grant", "content": { "text/plain": { "schema": s() } } } },
        } },
        "/rtc/v1/validate": { "get": {
            "tags": ["signaling"], "summary": "Token check after a failed /rtc/v1 upgrade (as /rtc/validate)", "security": [],
            "parameters": [query("access_token", "string", "join token (or Authorization: Bearer)")],
            "responses": { "200": { "description": "success", "content": { "text/plain": { "schema": s() } } },
                "401": { "description": "invalid token", "content": { "text/plain": { "schema": s() } } },
                "403": { "description": "token lacks the roomJoin grant", "content": { "text/plain": { "schema": s() } } } },
        } },
        "/twirp/{service}/{method}": { "post": {
            "tags": ["livekit-server-api"],
            "summary": "LiveKit server APIs over Twirp (livekit.RoomService: CreateRoom, ListRooms, DeleteRoom, ListParticipants, GetParticipant, RemoveParticipant, MutePublishedTrack, UpdateParticipant, UpdateSubscriptions, SendData, UpdateRoomMetadata; livekit.AgentDispatchService: CreateDispatch, ListDispatch, DeleteDispatch); see docs/SERVER_API.md",
            "parameters": [path_param("service", "e.g. livekit.RoomService"), path_param("method", "e.g. CreateRoom")],
            "requestBody": { "required": true, "content": {
                "application/protobuf": { "schema": { "type": "string", "format": "binary" } },
                "application/json": { "schema": { "type": "object", "description": "the request message, proto3 JSON" } } } },
            "responses": {
                "200": { "description": "the response message, in the request's codec", "content": {
                    "application/protobuf": { "schema": { "type": "string", "format": "binary" } },
                    "application/json": { "schema": { "type": "object" } } } },
                "400": { "description": "Twirp error: invalid_argument or malformed", "content": { "application/json": { "schema": obj(json!({ "code": s(), "msg": s() }), &["code", "msg"]) } } },
                "401": { "description": "Twirp error: unauthenticated", "content": { "application/json": { "schema": obj(json!({ "code": s(), "msg": s() }), &["code", "msg"]) } } },
                "403": { "description": "Twirp error: permission_denied (grant missing)", "content": { "application/json": { "schema": obj(json!({ "code": s(), "msg": s() }), &["code", "msg"]) } } },
                "404": { "description": "Twirp error: not_found or bad_route", "content": { "application/json": { "schema": obj(json!({ "code": s(), "msg": s() }), &["code", "msg"]) } } },
                "412": { "description": "Twirp error: failed_precondition (e.g. remote unmute not enabled)", "content": { "application/json": { "schema": obj(json!({ "code": s(), "msg": s() }), &["code", "msg"]) } } },
                "500": { "description": "Twirp error: internal", "content": { "application/json": { "schema": obj(json!({ "code": s(), "msg": s() }), &["code", "msg"]) } } },
                "501": { "description": "Twirp error: unimplemented", "content": { "application/json": { "schema": obj(json!({ "code": s(), "msg": s() }), &["code", "msg"]) } } } },
        } },
        "/rtc/validate": { "get": {
            "tags": ["signaling"], "summary": "LiveKit SDK token validation (plain-text answer)", "security": [],
            "parameters": [query("access_token", "string", "join token")],
            "responses": { "200": { "description": "success", "content": { "text/plain": { "schema": s() } } },
                "401": { "description": "invalid token", "content": { "text/plain": { "schema": s() } } },
                "403": { "description": "token lacks the roomJoin grant", "content": { "text/plain": { "schema": s() } } } },
        } },
        "/api/calls/{call_id}/recording/status": { "get": op("recordings", "Whether the call is being recorded",
            vec![call_id()], None,
            ("200", "status", success_obj(json!({ "recording": boolean(), "recording_id": s(), "started_at": dt(), "started_by": s() }))),
            &[forbidden, not_found_call], true) },
        "/api/calls/{call_id}/recording/start": { "post": op("recordings", "Start recording the call (mixed + per-participant WebM/Opus)",
            vec![call_id()], None,
            ("201", "started", success_obj(json!({ "recording_id": s(), "started_at": dt() }))),
            &[forbidden, not_found_call, ("409", "call_not_active"), ("409", "recording_in_progress"),
              ("503", "node_unreachable: multi-node mode, the call's node did not answer")], true) },
        "/api/calls/{call_id}/recording/stop": { "post": op("recordings", "Stop recording; the files are final when this returns",
            vec![call_id()], None,
            ("200", "stopped", success_obj(json!({ "recording_id": s(), "duration": json!({"type": "integer", "description": "whole seconds (rounded)"}), "duration_ms": int(), "status": s() }))),
            &[forbidden, not_found_call, ("404", "recording_not_found"),
              ("503", "node_unreachable: multi-node mode, the call's node did not answer")], true) },
        "/api/huddles": { "post": op("huddles", "Create a huddle", vec![],
            Some(obj(json!({ "name": s(), "workspace_id": s(), "channel_id": s() }), &["name"])),
            ("201", "created", success_obj(json!({ "huddle": r("Huddle") }))), &[], true) },
        "/api/huddles/{huddle_id}": { "get": op("huddles", "A huddle", vec![huddle_id()], None,
            ("200", "the huddle", success_obj(json!({ "huddle": r("Huddle") }))),
            &[forbidden, ("404", "huddle_not_found")], true) },
        "/api/huddles/{huddle_id}/invite": { "post": op("huddles", "Invite users (members only); notifies their devices",
            vec![huddle_id()], Some(obj(json!({ "user_ids": arr(s()) }), &["user_ids"])),
            ("200", "invited", success_obj(json!({ "huddle_id": s(), "invited_users": arr(s()) }))),
            &[forbidden, ("404", "huddle_not_found")], true) },
        "/api/huddles/{huddle_id}/join": { "post": op("huddles", "Join (members only): returns the room join credentials",
            vec![huddle_id()], None,
            ("200", "joined", success_obj(json!({ "huddle_id": s(), "url": s(), "token": s(), "huddle": r("Huddle") }))),
            &[forbidden, ("404", "huddle_not_found"), ("409", "huddle_full")], true) },
        "/api/huddles/{huddle_id}/leave": { "post": op("huddles", "Leave", vec![huddle_id()], None,
            ("200", "left", success_obj(json!({ "huddle_id": s(), "left": boolean(), "huddle": r("Huddle") }))),
            &[forbidden, ("404", "huddle_not_found")], true) },
        "/api/presence": { "put": op("presence", "Set the caller's status, custom message and emoji; the caller counts as present (online/away) for presence.rest_ttl_secs (default 300) without a presence WebSocket, renewed by each PUT", vec![],
            Some(obj(json!({ "status": { "type": "string", "enum": ["online", "away"] },
                "custom_message": { "type": "string", "description": "empty string clears" },
                "emoji": { "type": "string", "description": "empty string clears" } }), &[])),
            ("200", "new presence", success_obj(json!({ "presence": r("Presence") }))), &[], true) },
        "/api/presence/ws": { "get": {
            "tags": ["presence"],
            "summary": "Presence WebSocket (upgrade): online while connected; carries live pushes",
            "description": "Client frames: {type: ping|status|typing}. Server frames: hello, pong, presence, typing, typing.ack, chat.message, call.invite, huddle.invite, error.",
            "parameters": [
                query("access_token", "string", "JWT (or an Authorization: Bearer header)"),
                query("device_id", "string", "device id reported in presence.devices"),
                query("workspace_id", "string", "comma-separated workspaces for /api/presence/online")],
            "responses": {
                "101": { "description": "switching protocols" },
                "400": err("websocket_required: not an upgrade request"),
                "401": err("missing or invalid token"),
            },
        } },
        "/api/presence/online": { "get": op("presence", "Online and away users", vec![
                query("workspace_id", "string", "only users connected for this workspace"),
                query("limit", "integer", "1-500, default 50")], None,
            ("200", "users", success_obj(json!({ "users": arr(obj(json!({ "user_id": s(), "status": s() }), &["user_id", "status"])), "total": int() }))),
            &[], true) },
        "/api/presence/typing/{conversation_id}": {
            "get": op("presence", "Users typing in a conversation (indicators expire after 6 s)",
                vec![path_param("conversation_id", "chat thread, call or other conversation id")], None,
                ("200", "typing users", success_obj(json!({ "conversation_id": s(), "typing_users": arr(s()) }))),
                &[("403", "not_authorized: not a member of that thread/call")], true),
            "post": op("presence", "Set or clear the caller's typing state",
                vec![path_param("conversation_id", "chat thread, call or other conversation id")],
                Some(obj(json!({ "typing": { "type": "boolean", "default": true } }), &[])),
                ("200", "set", success_obj(json!({ "conversation_id": s(), "typing": boolean(), "expires_in_ms": int() }))),
                &[("403", "not_authorized: not a member of that thread/call")], true),
        },
        "/api/presence/{user_id}": { "get": op("presence", "A user's presence", vec![path_param("user_id", "user id")], None,
            ("200", "presence", success_obj(json!({ "presence": r("Presence") }))), &[], true) },
        "/api/devices": {
            "get": op("devices", "The caller's devices", vec![], None,
                ("200", "devices", success_obj(json!({ "devices": arr(r("Device")), "count": int(), "max_devices": int() }))), &[], true),
            "post": op("devices", "Register (or re-register) a device; at most 10 per user", vec![],
                Some(obj(json!({ "device_id": s(), "platform": { "type": "string", "enum": ["ios", "android", "web", "desktop", "macos", "windows", "linux"] },
                    "token": s(), "name": s(), "app_version": s() }), &["device_id", "platform"])),
                ("201", "registered (200 when it re-registers an existing device)", success_obj(json!({ "device": r("Device") }))),
                &[("409", "device_limit_exceeded")], true),
        },
        "/api/devices/{device_id}/token": { "put": op("devices", "Update the push token", vec![device_id()],
            Some(obj(json!({ "token": s() }), &["token"])),
            ("200", "updated", success_obj(json!({ "device": r("Device") }))), &[("404", "device_not_found")], true) },
        "/api/devices/{device_id}": { "delete": op("devices", "Unregister a device", vec![device_id()], None,
            ("200", "deleted", success_obj(json!({ "device_id": s(), "deleted": boolean() }))), &[("404", "device_not_found")], true) },
        "/api/devices/{device_id}/heartbeat": { "post": op("devices", "Mark the device active", vec![device_id()], None,
            ("200", "ok", success_obj(json!({ "device_id": s(), "last_active": dt() }))), &[("404", "device_not_found")], true) },
        "/api/notifications": { "get": op("devices", "Notification records created for the caller's devices, newest first", vec![
                query("before", "integer", "created_at_ms of the last item of the previous page"),
                query("limit", "integer", "1-200, default 50")], None,
            ("200", "notifications", success_obj(json!({ "notifications": arr(r("Notification")), "count": int(), "sender": s() }))),
            &[], true) },
    });
    let paths3 = json!({
        "/api/recordings": { "get": op("recordings", "Recordings of the caller's calls (and the ones it started), newest first", vec![
                query("conversation_id", "string", "only this conversation's recordings"),
                query("limit", "integer", "1-100, default 20"),
                query("offset", "integer", "default 0")], None,
            ("200", "recordings", success_obj(json!({ "recordings": arr(r("Recording")), "count": int() }))), &[], true) },
        "/api/recordings/{recording_id}": {
            "get": op("recordings", "Recording details", vec![rec_id()], None,
                ("200", "the recording", success_obj(json!({ "recording": r("Recording") }))),
                &[forbidden, ("404", "recording_not_found")], true),
            "delete": op("recordings", "Delete a recording and its file (its starter or the call's creator)", vec![rec_id()], None,
                ("200", "deleted", success_obj(json!({ "recording_id": s(), "deleted": boolean() }))),
                &[("403", "not_authorized"), ("404", "recording_not_found"),
                  ("503", "node_unavailable / node_unreachable: multi-node mode, the node holding its files is not running or did not answer")], true),
        },
        "/api/recordings/{recording_id}/download": { "get": op("recordings", "A download URL with an expiring signed token",
            vec![rec_id()], None,
            ("200", "URL", success_obj(json!({ "url": s(), "expires_in": int() }))),
            &[forbidden, ("404", "recording_not_found"), ("409", "recording_not_ready")], true) },
        "/api/recordings/{recording_id}/file": { "get": {
            "tags": ["recordings"], "summary": "The recording file (authorised by the `token` from /download)",
            "security": [],
            "parameters": [rec_id(), query("token", "string", "signed download token")],
            "responses": {
                "200": { "description": "the file", "content": { "audio/webm": {}, "video/webm": {}, "application/octet-stream": {} } },
                "400": err("invalid request"),
                "401": err("missing, invalid or expired download token"),
                "403": err("not_authorized: token for another recording"),
                "404": err("recording_not_found"),
                "409": err("recording_not_ready"),
                "503": err("node_unavailable / node_unreachable: multi-node mode, the node holding the file is not running or did not answer"),
            },
        } },
        "/api/v1/chat/threads": {
            "get": op("chat", "The caller's threads, most recent activity first", vec![], None,
                ("200", "threads", arr(r("ChatThread"))), &[], true),
            "post": op("chat", "Create a custom or group thread (the caller is added)", vec![],
                Some(obj(json!({ "type": { "type": "string", "enum": ["custom", "group"] }, "name": s(), "group": s(), "users": arr(s()) }), &["type", "users"])),
                ("201", "created", r("ChatThread")), &[], true),
        },
        "/api/v1/chat/threads/{thread_id}/messages": { "get": op("chat", "Messages of a thread (chronological); marks the thread read",
            vec![path_param("thread_id", "thread id"),
                query("limit", "integer", "1-200, default 50"),
                query("search", "string", "case-insensitive text in the content"),
                query("before", "string", "message id: the newest messages before it"),
                query("after", "string", "message id: the messages after it")], None,
            ("200", "messages", arr(r("ChatMessage"))),
            &[("403", "not_authorized: not a member"), ("404", "thread_not_found / message_not_found (cursor)")], true) },
        "/api/v1/chat/messages": { "post": op("chat", "Post a message to `thread` or to user `to` (creates the personal thread)", vec![],
            Some(obj(json!({ "thread": s(), "to": s(), "content": s(), "files": arr(s()), "replyTo": s() }), &[])),
            ("200", "posted; `thread` is present when this created a personal thread",
                obj(json!({ "message": s(), "thread": r("ChatThread") }), &["message"])),
            &[("403", "not_authorized: not a member of the thread"), ("404", "thread_not_found")], true) },
    });
    let mut paths = paths;
    for more in [
        paths2,
        paths3,
        crate::realtime::openapi::paths(),
        crate::embed::openapi::paths(),
    ] {
        if let (Some(all), Value::Object(m)) = (paths.as_object_mut(), more) {
            all.extend(m);
        }
    }
    // Every field of these bodies is optional: no body at all means all defaults. (After the
    // merge above: a later part may define the same path.)
    paths["/api/calls"]["post"]["requestBody"]["required"] = json!(false);
    paths["/api/presence/typing/{conversation_id}"]["post"]["requestBody"]["required"] =
        json!(false);
    let mut all_schemas = schemas();
    if let (Some(m), Value::Object(more)) = (
        all_schemas.as_object_mut(),
        crate::realtime::openapi::schemas(),
    ) {
        m.extend(more);
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Parlor API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Parlor REST API. Errors: {success:false, error:{code, message}}. Authenticate with `Authorization: Bearer <JWT>` signed by an API key (sub = user id).",
        },
        "servers": [{ "url": server_url }],
        "security": [{ "bearer": [] }],
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
            "schemas": all_schemas,
        },
    })
}
