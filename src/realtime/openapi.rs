//! The model-session operations and schemas of `/openapi.json` (merged by `crate::api::openapi`).

use crate::api::openapi::{arr, boolean, dt, err, int, ndt, ns, obj, op, path_param, query, r, s};
use serde_json::{json, Value};

fn num() -> Value {
    json!({ "type": "number" })
}
fn nnum(desc: &str) -> Value {
    json!({ "type": "number", "nullable": true, "description": desc })
}
fn nint(desc: &str) -> Value {
    json!({ "type": "integer", "nullable": true, "description": desc })
}
fn any_obj() -> Value {
    json!({ "type": "object", "additionalProperties": true })
}

/// `{success, data, message}` around `data`.
fn envelope(data: Value) -> Value {
    obj(
        json!({ "success": { "type": "boolean", "enum": [true] }, "data": data, "message": s() }),
        &["success", "data", "message"],
    )
}

pub fn schemas() -> Value {
    let states =
        json!({ "type": "string", "enum": ["active", "idle", "paused", "completed", "failed"] });
    json!({
        "RtTokenUsage": obj(json!({ "prompt": int(), "completion": int(), "total": int() }), &["prompt", "completion", "total"]),
        "RtConnectionInfo": obj(json!({
            "websocketUrl": { "type": "string", "description": "<public ws url>/realtime/{session_id}" },
            "authToken": { "type": "string", "description": "signed model-session token (aud parlor:model-session) for this session and token generation; only the session WebSocket accepts it" },
            "expiresAt": dt(),
            "heartbeatInterval": { "type": "integer", "description": "ms" },
            "reconnectAttempts": int(),
            "connected": { "type": "boolean", "description": "GET /sessions/{id} only: a socket is authenticated now" },
        }), &["websocketUrl", "authToken", "expiresAt", "heartbeatInterval", "reconnectAttempts"]),
        "RtSession": obj(json!({
            "id": s(), "userId": s(), "model": s(), "status": states,
            "createdAt": dt(), "lastActivity": dt(),
            "duration": { "type": "integer", "description": "seconds from creation to last activity" },
            "messageCount": int(), "tokenUsage": r("RtTokenUsage"),
            "settings": obj(json!({ "temperature": num(), "maxTokens": int(), "stream": boolean(),
                "systemPrompt": { "type": "string", "nullable": true, "description": "GET /sessions/{id} only" } }),
                &["temperature", "maxTokens", "stream"]),
            "metadata": any_obj(),
        }), &["id", "userId", "model", "status", "createdAt", "lastActivity", "duration", "messageCount", "tokenUsage", "settings", "metadata"]),
        "RtMessage": obj(json!({
            "id": s(), "role": { "type": "string", "enum": ["user", "assistant"] }, "content": s(),
            "timestamp": dt(), "tokenCount": int(),
            "metadata": { "type": "object", "description": "user: the client's metadata (source: audio for transcripts); assistant: model, temperature, responseTime (ms)" },
        }), &["id", "role", "content", "timestamp", "tokenCount"]),
        "RtModel": obj(json!({
            "id": s(), "name": s(), "type": s(), "provider": s(), "description": s(), "capabilities": arr(s()),
            "limits": obj(json!({ "maxTokens": int(), "contextLength": int(), "requestsPerMinute": int() }), &["maxTokens"]),
            "pricing": obj(json!({ "input": num(), "output": num(), "currency": s(), "unit": s() }), &["input", "output", "currency"]),
            "status": { "type": "string", "enum": ["available", "unavailable"] },
            "statusReason": { "type": "string", "nullable": true, "description": "why the model is unavailable" },
            "updatedAt": { "type": "string", "format": "date-time", "description": "when the catalogue was loaded" },
        }), &["id", "name", "provider", "status", "updatedAt"]),
    })
}

pub fn paths() -> Value {
    let sid = || path_param("session_id", "session id (session_ + 12 base62 characters)");
    let limited = ("429", "RATE_LIMIT_EXCEEDED: more than realtime.rate_limit_per_minute requests this minute (Retry-After)");
    let nf = (
        "404",
        "SESSION_NOT_FOUND: no such session, another user's, or deleted",
    );
    let bad_id = (
        "400",
        "INVALID_SESSION_ID (malformed id) or VALIDATION_ERROR",
    );
    let pagination = obj(
        json!({ "page": int(), "limit": int(), "total": int(), "pages": int() }),
        &["page", "limit", "total", "pages"],
    );
    let mut create = op("realtime", "Create a model session; returns its WebSocket URL and authToken", vec![],
        Some(obj(json!({
            "model": { "type": "string", "description": "a model id from GET /api/realtime/models" },
            "temperature": { "type": "number", "minimum": 0, "maximum": 2, "default": 0.7 },
            "maxTokens": { "type": "integer", "minimum": 1, "description": "at most the model's limits.maxTokens (default)" },
            "stream": { "type": "boolean", "default": true, "description": "stream delta messages on the socket" },
            "systemPrompt": { "type": "string", "maxLength": 8000 },
            "metadata": { "type": "object", "description": "at most 4096 bytes of JSON" },
        }), &["model"])),
        ("201", "created", envelope(obj(json!({
            "id": s(), "status": s(), "createdAt": dt(), "connectionInfo": r("RtConnectionInfo"),
            "sessionData": obj(json!({ "model": s(), "temperature": num(), "maxTokens": int(), "stream": boolean(), "systemPrompt": ns(), "metadata": any_obj() }), &["model"]),
            "usage": obj(json!({ "tokenCount": int(), "messageCount": int(), "duration": int() }), &["tokenCount"]),
        }), &["id", "status", "connectionInfo"]))),
        &[("400", "VALIDATION_ERROR (temperature, maxTokens above the model's limit, systemPrompt/metadata size) or MODEL_NOT_AVAILABLE (unknown model)"),
          ("409", "SESSION_CREATION_FAILED: realtime.max_sessions_per_user open sessions"),
          limited,
          ("500", "SESSION_CREATION_FAILED: the session could not be stored"),
          ("503", "MODEL_NOT_AVAILABLE: the model's provider is not available (reason in the message); CONNECTION_FAILED: no signing key")], true);
    create["responses"]["401"] =
        err("UNAUTHORIZED: missing, invalid or expired Bearer access token");
    json!({
        "/api/realtime/sessions": {
            "get": op("realtime", "Model sessions of the caller (every user's with the roomAdmin grant)", vec![
                query("page", "integer", "default 1"),
                query("limit", "integer", "1-100, default 20"),
                query("status", "string", "active, idle, paused, completed or failed (default: every state but completed)"),
                query("userId", "string", "only this user's sessions"),
                query("model", "string", "only this model's sessions"),
                query("sortBy", "string", "createdAt (default), lastActivity, duration, messageCount, tokenUsage, model, status, userId"),
                query("sortOrder", "string", "asc or desc (default)")], None,
                ("200", "sessions", envelope(obj(json!({
                    "sessions": arr(r("RtSession")), "pagination": pagination.clone(),
                    "summary": obj(json!({ "totalSessions": int(), "activeSessions": int(), "idleSessions": int(),
                        "pausedSessions": int(), "completedSessions": int(), "failedSessions": int(), "totalUsers": int() }),
                        &["totalSessions"]),
                }), &["sessions", "pagination", "summary"]))),
                &[limited], true),
            "post": create,
        },
        "/api/realtime/sessions/{session_id}": {
            "get": op("realtime", "A model session with its settings, connection info and performance", vec![sid()], None,
                ("200", "the session", envelope(json!({ "allOf": [r("RtSession"), obj(json!({
                    "connectionInfo": r("RtConnectionInfo"),
                    "performance": obj(json!({ "averageResponseTime": nint("ms; null before the first reply"),
                        "totalRequests": int(), "failedRequests": int(), "successRate": nnum("percent; null before the first request") }), &[]),
                    "endedAt": ndt(), "failureReason": ns(),
                }), &[])] }))),
                &[bad_id, nf, limited], true),
            "delete": op("realtime", "End a model session (soft delete: state completed, kept for stats; its socket closes with 4009)", vec![sid()], None,
                ("200", "deleted", envelope(obj(json!({
                    "id": s(), "deletedAt": dt(), "deletedBy": s(),
                    "finalStats": obj(json!({ "duration": int(), "messageCount": int(), "tokenUsage": r("RtTokenUsage"),
                        "averageResponseTime": nint("ms"), "successRate": nnum("percent") }), &["duration", "messageCount", "tokenUsage"]),
                }), &["id", "deletedAt", "deletedBy", "finalStats"]))),
                &[bad_id, nf, limited, ("500", "SESSION_DELETION_FAILED")], true),
        },
        "/api/realtime/sessions/{session_id}/resume": {
            "post": op("realtime", "Resume a session: state active, a fresh authToken (older ones stop working; a connected socket closes with 4001), the message history", vec![sid()], None,
                ("200", "resumed", envelope(obj(json!({
                    "id": s(), "status": s(), "resumedAt": dt(), "connectionInfo": r("RtConnectionInfo"),
                    "sessionData": obj(json!({ "model": s(), "temperature": num(), "maxTokens": int(), "messageHistory": arr(r("RtMessage")) }), &["model", "messageHistory"]),
                    "usage": obj(json!({ "tokenCount": int(), "messageCount": int(), "duration": int() }), &["tokenCount"]),
                }), &["id", "status", "connectionInfo", "sessionData"]))),
                &[bad_id, nf, limited, ("503", "MODEL_NOT_AVAILABLE")], true),
        },
        "/api/realtime/sessions/{session_id}/history": {
            "get": op("realtime", "Messages of a session with a summary of the selected ones", vec![sid(),
                query("page", "integer", "default 1"),
                query("limit", "integer", "1-200, default 50"),
                query("startDate", "string", "RFC 3339 time or unix ms (inclusive)"),
                query("endDate", "string", "RFC 3339 time or unix ms (inclusive)"),
                query("sortBy", "string", "timestamp (default), tokenCount, role"),
                query("sortOrder", "string", "asc (default) or desc")], None,
                ("200", "history", envelope(obj(json!({
                    "sessionId": s(), "messages": arr(r("RtMessage")), "pagination": pagination,
                    "summary": obj(json!({ "totalMessages": int(), "userMessages": int(), "assistantMessages": int(),
                        "totalTokens": int(), "averageResponseTime": nint("ms"), "sessionDuration": int() }), &["totalMessages"]),
                }), &["sessionId", "messages", "pagination", "summary"]))),
                &[bad_id, nf, limited], true),
        },
        "/api/realtime/models": {
            "get": op("realtime", "The model catalogue (config realtime.models) with each model's availability", vec![], None,
                ("200", "models", envelope(obj(json!({ "models": arr(r("RtModel")), "totalModels": int(), "availableModels": int(), "lastUpdated": dt() }), &["models"]))),
                &[limited], true),
        },
        "/api/realtime/stream": {
            "get": op("realtime", "Session WebSocket configuration and live measurements", vec![], None,
                ("200", "stream", envelope(obj(json!({
                    "status": { "type": "string", "enum": ["active", "saturated", "stopping"] },
                    "configuration": any_obj(),
                    "performance": obj(json!({ "activeConnections": int(), "totalConnections": int(),
                        "messagesPerSecond": { "type": "number", "description": "frames per second over the last minute" },
                        "averageLatency": nnum("mean measured heartbeat→pong round trip, ms"),
                        "uptime": { "type": "number", "description": "percent of the last 24 hours this server has been up" },
                        "uptimeSeconds": int() }), &["activeConnections"]),
                    "endpoints": any_obj(), "features": any_obj(), "lastUpdated": dt(),
                }), &["status", "configuration", "performance"]))),
                &[limited], true),
        },
        "/api/realtime/stats": {
            "get": op("realtime", "Statistics of the caller's sessions (everyone's with roomAdmin) over a time range (default: the last 24 hours)", vec![
                query("startDate", "string", "RFC 3339 time or unix ms"),
                query("endDate", "string", "RFC 3339 time or unix ms (default now)")], None,
                ("200", "statistics", envelope(obj(json!({
                    "sessions": any_obj(), "usage": any_obj(), "performance": any_obj(),
                    "models": { "type": "object", "additionalProperties": obj(json!({ "sessions": int(), "tokens": int(), "averageResponseTime": nint("ms") }), &[]) },
                    "timeRange": obj(json!({ "start": dt(), "end": dt(), "duration": s() }), &["start", "end", "duration"]),
                    "lastUpdated": dt(),
                }), &["sessions", "usage", "performance", "models", "timeRange"]))),
                &[limited], true),
        },
        "/realtime/{session_id}": { "get": {
            "tags": ["realtime"],
            "summary": "Session WebSocket (upgrade): first message {type:auth, token:<authToken>}; then heartbeat/pong, message → delta… + message (see docs/MODEL_SESSIONS.md)",
            "security": [],
            "parameters": [sid()],
            "responses": {
                "101": { "description": "switching protocols" },
                "400": err("INVALID_SESSION_ID, or WEBSOCKET_REQUIRED: not an upgrade request"),
            },
        } },
    })
}
