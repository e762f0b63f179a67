//! The OpenAPI description of the embed and account routes (merged into `/openapi.json`).

use crate::api::openapi::{arr, boolean, dt, int, ndt, ns, obj, op, path_param, query, s};
use serde_json::{json, Value};

fn num() -> Value {
    json!({ "type": "number" })
}

fn data(schema: Value) -> Value {
    obj(
        json!({ "success": { "type": "boolean", "enum": [true] }, "data": schema }),
        &["success", "data"],
    )
}

fn assistant() -> Value {
    obj(
        json!({
            "id": s(), "name": s(), "model": s(), "voice": ns(), "systemPrompt": s(), "greeting": ns(),
            "temperature": num(), "maxTokens": int(), "pricePerMinute": num(), "currency": s(),
            "record": boolean(), "createdAt": dt(), "updatedAt": dt(),
        }),
        &["id", "name", "model"],
    )
}

fn assistant_body() -> Value {
    obj(
        json!({
            "name": s(), "model": { "type": "string", "description": "a model id of GET /api/realtime/models" },
            "voice": ns(), "systemPrompt": s(), "greeting": ns(),
            "temperature": { "type": "number", "minimum": 0, "maximum": 2 },
            "maxTokens": { "type": "integer", "minimum": 1, "maximum": 100000 },
            "pricePerMinute": { "type": "number", "minimum": 0 }, "record": boolean(),
        }),
        &[],
    )
}

fn public_key() -> Value {
    obj(
        json!({
            "key": s(), "name": s(), "mode": { "type": "string", "enum": ["live", "test"] },
            "allowedOrigins": arr(s()), "createdAt": dt(), "revokedAt": ndt(), "active": boolean(),
        }),
        &["key", "allowedOrigins"],
    )
}

fn call() -> Value {
    obj(
        json!({
            "id": s(), "status": { "type": "string", "enum": ["ringing", "active", "completed", "missed"] },
            "assistantId": s(), "callerIdentity": s(), "origin": s(), "metadata": { "type": "object" },
            "createdAt": dt(), "startedAt": ndt(), "endedAt": ndt(),
            "duration": { "type": "integer", "nullable": true, "description": "whole seconds" },
            "durationMs": { "type": "integer", "nullable": true },
            "cost": { "type": "number", "nullable": true }, "charged": { "type": "number", "nullable": true },
            "currency": s(), "endReason": ns(), "sessionId": ns(), "recordingId": ns(),
            "recordingIds": arr(s()),
            "transcript": arr(obj(json!({ "role": { "type": "string", "enum": ["user", "assistant"] }, "content": s(),
                "timestamp": dt(), "tokenCount": int() }), &["role", "content"])),
        }),
        &["id", "status", "assistantId"],
    )
}

const ACCOUNT_AUTH: &str = " Bearer: a token signed by the account's API key with the roomAdmin grant (`parlor token --identity ops --grant roomAdmin`); public keys are refused.";

pub fn paths() -> Value {
    let asst_id = || path_param("assistant_id", "assistant id (asst_…)");
    let key = || path_param("key", "public key (pk_live_…/pk_test_…)");
    let call_id = || path_param("call_id", "call id");
    let forbidden = ("403", "FORBIDDEN: the token lacks the roomAdmin grant");
    let account = obj(
        json!({
            "id": s(), "name": s(), "currency": s(), "credits": num(), "allowNegative": boolean(),
            "createdAt": dt(), "ledger": arr(obj(json!({ "id": s(), "kind": s(), "callId": ns(),
                "amount": num(), "balanceAfter": num(), "note": ns(), "createdAt": dt() }), &["id", "kind", "amount"])),
        }),
        &["id", "credits"],
    );
    let mut embed = op(
        "embed",
        "Mint an embed token (seed 001): a fresh call with the assistant and a join token for its room",
        vec![],
        Some(obj(
            json!({ "assistantId": s(), "metadata": { "type": "object", "description": "at most 4096 bytes as JSON; `userId` names the caller" } }),
            &["assistantId"],
        )),
        ("200", "join credentials for livekit-client's room.connect(url, token)", data(obj(json!({
            "url": s(), "token": s(), "callId": s(), "roomName": s(), "identity": s(),
            "assistantId": s(), "sessionId": { "type": "string", "description": "the call's model session (its history holds the transcript)" },
            "expiresAt": dt(),
        }), &["url", "token", "callId", "sessionId"]))),
        &[
            ("402", "INSUFFICIENT_CREDITS: a prepaid account has no credits left"),
            ("403", "DOMAIN_NOT_ALLOWED: the request's Origin is not in the key's allowed origins"),
            ("404", "ASSISTANT_NOT_FOUND"),
            ("429", "RATE_LIMIT_EXCEEDED (embed.rate_limit_per_minute per key; Retry-After)"),
            ("500", "SERVER_ERROR"),
            ("503", "MODEL_NOT_AVAILABLE: the assistant's model provider is not set up"),
        ],
        true,
    );
    embed["description"] = json!("Authorization: Bearer <public key> (pk_live_…/pk_test_…). CORS is answered for the key's allowed origins only (a preflight passes when any active key allows the origin).");
    embed["responses"]["401"] = json!({ "description": "UNAUTHORIZED: missing, unknown or revoked public key", "content": { "application/json": { "schema": crate::api::openapi::r("Error") } } });
    json!({
        "/api/v1/embed/token": {
            "post": embed,
            "options": {
                "tags": ["embed"], "summary": "CORS preflight (allowed origins only)", "parameters": [], "security": [],
                "responses": { "204": { "description": "allowed: CORS headers present" }, "403": { "description": "no active key allows the origin (no CORS headers)" } },
            },
        },
        "/widget.js": { "get": {
            "tags": ["embed"], "summary": "The embeddable voice widget script (loads livekit-client from this Parlor): <script src=…/widget.js data-key=pk_… data-assistant=asst_…>", "parameters": [], "security": [],
            "responses": { "200": { "description": "JavaScript", "content": { "text/javascript": { "schema": s() } } } },
        } },
        "/widget": { "get": {
            "tags": ["embed"], "summary": "A page showing the widget (dev mode: the demo assistant by default)", "security": [],
            "parameters": [query("key", "string", "public key"), query("assistant", "string", "assistant id")],
            "responses": { "200": { "description": "HTML page", "content": { "text/html": { "schema": s() } } } },
        } },
        "/api/v1/account": {
            "get": op("embed", &format!("The account, its credits and 50 newest ledger entries.{ACCOUNT_AUTH}"), vec![], None,
                ("200", "account", data(account.clone())), &[forbidden], true),
            "patch": op("embed", "Rename; postpaid (allowNegative true) or prepaid (false: embed refused at zero credits)", vec![],
                Some(obj(json!({ "name": s(), "allowNegative": boolean() }), &[])),
                ("200", "account", data(account)), &[forbidden], true),
        },
        "/api/v1/account/credits": { "post": op("embed", "Add credits (a ledger top-up)", vec![],
            Some(obj(json!({ "amount": { "type": "number", "exclusiveMinimum": 0 }, "note": s() }), &["amount"])),
            ("201", "the ledger entry", data(obj(json!({ "id": s(), "kind": s(), "amount": num(), "balanceAfter": num(), "credits": num() }), &["id"]))),
            &[forbidden], true) },
        "/api/v1/assistants": {
            "get": op("embed", "The account's assistants", vec![], None,
                ("200", "assistants", data(obj(json!({ "assistants": arr(assistant()), "total": int() }), &["assistants"]))), &[forbidden], true),
            "post": op("embed", "Create an assistant (name required)", vec![], Some(assistant_body()),
                ("201", "created", data(assistant())), &[forbidden, ("409", "ASSISTANT_LIMIT_EXCEEDED")], true),
        },
        "/api/v1/assistants/{assistant_id}": {
            "get": op("embed", "An assistant", vec![asst_id()], None, ("200", "assistant", data(assistant())),
                &[forbidden, ("404", "ASSISTANT_NOT_FOUND")], true),
            "patch": op("embed", "Update an assistant (fields given)", vec![asst_id()], Some(assistant_body()),
                ("200", "assistant", data(assistant())), &[forbidden, ("404", "ASSISTANT_NOT_FOUND")], true),
            "delete": op("embed", "Delete an assistant", vec![asst_id()], None,
                ("200", "deleted", data(obj(json!({ "id": s(), "deleted": boolean() }), &["id"]))),
                &[forbidden, ("404", "ASSISTANT_NOT_FOUND")], true),
        },
        "/api/v1/public-keys": {
            "get": op("embed", "The account's public keys", vec![], None,
                ("200", "keys", data(obj(json!({ "keys": arr(public_key()), "total": int() }), &["keys"]))), &[forbidden], true),
            "post": op("embed", "Create a public key for web pages, with its allowed origins", vec![],
                Some(obj(json!({ "name": s(), "mode": { "type": "string", "enum": ["live", "test"] },
                    "allowedOrigins": { "type": "array", "items": s(), "description": "scheme://host[:port] or https://*.example.com" } }), &["allowedOrigins"])),
                ("201", "created", data(public_key())), &[forbidden, ("409", "KEY_LIMIT_EXCEEDED")], true),
        },
        "/api/v1/public-keys/{key}": {
            "patch": op("embed", "Rename a key or replace its allowed origins", vec![key()],
                Some(obj(json!({ "name": s(), "allowedOrigins": arr(s()) }), &[])),
                ("200", "key", data(public_key())), &[forbidden, ("404", "KEY_NOT_FOUND")], true),
            "delete": op("embed", "Revoke a key (it mints nothing from now on)", vec![key()], None,
                ("200", "revoked", data(obj(json!({ "key": s(), "revoked": boolean() }), &["key"]))),
                &[forbidden, ("404", "KEY_NOT_FOUND")], true),
        },
        "/api/v1/calls": { "get": op("embed", "The account's assistant calls, newest first", vec![
                query("limit", "integer", "page size (default 20, max 100)"),
                query("before", "integer", "createdAt cursor (unix ms) from nextBefore")], None,
            ("200", "calls", data(obj(json!({ "calls": arr(call()), "hasMore": boolean(), "nextBefore": { "type": "integer", "nullable": true } }), &["calls"]))),
            &[forbidden], true) },
        "/api/v1/calls/{call_id}": {
            "get": op("embed", "An assistant call: status, times, cost, session and recording", vec![call_id()], None,
                ("200", "call", data(call())), &[forbidden, ("404", "CALL_NOT_FOUND")], true),
            "delete": op("embed", "Delete the call's record only: a live call goes on (end it with room.disconnect()) and is still finalized and charged",
                vec![call_id()], None,
                ("200", "deleted", data(obj(json!({ "id": s(), "deleted": boolean(), "callEnded": boolean(), "live": boolean(), "message": s() }), &["id"]))),
                &[forbidden, ("404", "CALL_NOT_FOUND")], true),
        },
    })
}
