//! The session WebSocket: auth (timeout on the injected clock, wrong tokens), heartbeat/pong and the
//! measured round trip, missed pongs, a text turn answered by the local model and stored, resume
//! revoking older tokens, delete closing the socket.

use crate::on_every_backend;
use crate::support::{assert_error, assert_ok, Frame, Srv};
use futures_util::SinkExt;
use serde_json::{json, Value};
use std::time::Duration;

fn url_token(data: &Value) -> (String, String) {
    (
        data["connectionInfo"]["websocketUrl"]
            .as_str()
            .unwrap()
            .to_string(),
        data["connectionInfo"]["authToken"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

async fn auth_timeout(s: &Srv) {
    let d = s.create("alice", "parlor-local").await;
    let (url, _) = url_token(&d);
    assert!(
        url.starts_with(&s.ws)
            && url.ends_with(&format!("/realtime/{}", d["id"].as_str().unwrap())),
        "{url}"
    );
    let mut ws = s.connect(&url).await;
    s.until_sleepers(1).await;
    s.clock.advance_ms(9_900);
    // Still open at 9.9 s: nothing arrives.
    assert!(matches!(
        ws.next(Duration::from_millis(300)).await,
        Frame::Silent
    ));
    s.clock.advance_ms(100);
    ws.expect_error_close("UNAUTHORIZED", 4002).await;
    // The refused socket does not count as a connection any more.
    s.until("the socket to end", |st| {
        st.realtime
            .stats
            .open
            .load(std::sync::atomic::Ordering::SeqCst)
            == 0
    })
    .await;
    let st = assert_ok(&s.get("/api/realtime/stream", "alice").await, 200);
    assert_eq!(st["performance"]["activeConnections"], 0, "{st}");
    assert_eq!(st["performance"]["totalConnections"], 1, "{st}");
}

#[tokio::test]
async fn no_auth_closes_after_the_auth_timeout_on_the_clock() {
    on_every_backend!(|_| {}, auth_timeout);
}

async fn wrong_tokens(s: &Srv) {
    let a = s.create("alice", "parlor-local").await;
    let b = s.create("alice", "parlor-local").await;
    let (url_a, _) = url_token(&a);
    let (_, tok_b) = url_token(&b);
    let access = s.token("alice");
    let cases: Vec<(Value, &str)> = vec![
        (json!({"type": "auth", "token": "not-a-token"}), "garbage"),
        (json!({"type": "auth", "token": access}), "an access token"),
        (
            json!({"type": "auth", "token": tok_b}),
            "another session's token",
        ),
        (json!({"type": "message", "content": "hi"}), "no auth first"),
        (json!({"type": "auth"}), "no token"),
    ];
    for (msg, what) in cases {
        let mut ws = s.connect(&url_a).await;
        ws.send(msg).await;
        let e = ws.expect_error_close("UNAUTHORIZED", 4001).await;
        eprintln!("{what}: {}", e["message"]);
    }
    let mut ws = s.connect(&url_a).await;
    ws.send_text("{not json").await;
    ws.expect_error_close("UNAUTHORIZED", 4001).await;
    // A well-formed id of no session: the token cannot be for it.
    let mut ws = s
        .connect(&format!("{}/realtime/session_000000000000", s.ws))
        .await;
    ws.send(json!({"type": "auth", "token": tok_b})).await;
    ws.expect_error_close("UNAUTHORIZED", 4001).await;
    // A malformed id is refused before the upgrade.
    let r = s.client.get(s.url("/realtime/bogus")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "INVALID_SESSION_ID");
    // An expired token: the clock moves past token_ttl_secs.
    s.clock.advance_ms(3_600_000 + 11_000);
    let (url, tok) = url_token(&a);
    let mut ws = s.connect(&url).await;
    ws.send(json!({"type": "auth", "token": tok})).await;
    let e = ws.expect_error_close("UNAUTHORIZED", 4001).await;
    assert!(e["message"].as_str().unwrap().contains("expired"), "{e}");
}

#[tokio::test]
async fn wrong_tokens_get_an_error_and_close_4001() {
    on_every_backend!(|_| {}, wrong_tokens);
}

async fn heartbeats(s: &Srv) {
    let d = s.create("alice", "parlor-local").await;
    let (url, tok) = url_token(&d);
    let (mut ws, hello) = s.connect_auth(&url, &tok).await;
    assert_eq!(hello["heartbeatInterval"], 30_000);
    assert_eq!(s.clock.sleepers(), 1, "the heartbeat timer");
    // Nothing before the interval.
    s.clock.advance_ms(29_999);
    assert!(matches!(
        ws.next(Duration::from_millis(200)).await,
        Frame::Silent
    ));
    s.clock.advance_ms(1);
    let hb = ws.recv().await;
    assert_eq!(hb["type"], "heartbeat", "{hb}");
    assert_eq!(hb["timestamp"], s.now_ms());
    // Answer 40 ms later (on the clock): the measured round trip.
    s.clock.advance_ms(40);
    ws.send(json!({"type": "pong"})).await;
    s.until("the pong", |st| st.realtime.stats.average_rtt_ms().1 == 1)
        .await;
    let st = assert_ok(&s.get("/api/realtime/stream", "alice").await, 200);
    assert_eq!(st["performance"]["averageLatency"], 40.0, "{st}");
    assert_eq!(st["performance"]["activeConnections"], 1, "{st}");
    assert!(
        st["performance"]["messagesPerSecond"].as_f64().unwrap() > 0.0,
        "{st}"
    );
    // Two more heartbeats go unanswered; the next tick closes (max_missed_pongs = 2).
    s.clock.advance_ms(29_960);
    assert_eq!(ws.recv().await["type"], "heartbeat");
    s.clock.advance_ms(30_000);
    assert_eq!(ws.recv().await["type"], "heartbeat");
    s.clock.advance_ms(29_999);
    assert!(matches!(
        ws.next(Duration::from_millis(200)).await,
        Frame::Silent
    ));
    s.clock.advance_ms(1);
    ws.expect_error_close("HEARTBEAT_TIMEOUT", 4003).await;
    // The socket is gone: the session is paused.
    let id = d["id"].as_str().unwrap();
    let mut status = Value::Null;
    for _ in 0..200 {
        status = assert_ok(
            &s.get(&format!("/api/realtime/sessions/{id}"), "alice")
                .await,
            200,
        )["status"]
            .clone();
        if status == "paused" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status, "paused");
}

#[tokio::test]
async fn heartbeat_pong_round_trip_and_missed_pongs_close() {
    on_every_backend!(|_| {}, heartbeats);
}

/// Send a text turn; (ack, deltas joined, final message).
async fn turn(ws: &mut crate::support::Ws, text: &str) -> (Value, String, Value) {
    ws.send(json!({"type": "message", "content": text, "metadata": {"platform": "test"}}))
        .await;
    let ack = ws.recv_type("ack").await;
    let mut deltas = String::new();
    loop {
        let v = ws.recv().await;
        match v["type"].as_str().unwrap() {
            "delta" => deltas.push_str(v["content"].as_str().unwrap()),
            "message" => return (ack, deltas, v),
            "response.started" => {}
            other => panic!("unexpected {other}: {v}"),
        }
    }
}

async fn conversation(s: &Srv) {
    let d = s.create("alice", "parlor-local").await;
    let id = d["id"].as_str().unwrap().to_string();
    let (url, tok) = url_token(&d);
    let (mut ws, _) = s.connect_auth(&url, &tok).await;
    let (ack, deltas, reply) = turn(&mut ws, "what is two plus two").await;
    assert_eq!(ack["role"], "user");
    assert_eq!(ack["tokenCount"], 5);
    assert_eq!(reply["role"], "assistant");
    let content = reply["content"].as_str().unwrap();
    assert!(content.to_lowercase().contains("four"), "{reply}");
    assert_eq!(deltas, content);
    assert_eq!(reply["tokenCount"], 6);
    assert!(reply["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(reply["metadata"]["model"], "parlor-local");
    assert_eq!(reply["metadata"]["temperature"], 0.7);
    assert!(reply["metadata"]["responseTime"].is_i64(), "{reply}");
    // Malformed frames get an error, never a close.
    ws.send_text("{oops").await;
    assert_eq!(ws.recv().await["code"], "INVALID_MESSAGE");
    ws.send(json!({"type": "message", "content": "x".repeat(4001)}))
        .await;
    assert_eq!(ws.recv().await["code"], "MESSAGE_TOO_LONG");
    ws.send(json!({"type": "dance"})).await;
    assert_eq!(ws.recv().await["code"], "INVALID_MESSAGE");
    ws.send(json!({"type": "audio", "audio": "***"})).await;
    assert_eq!(ws.recv().await["code"], "INVALID_AUDIO");

    // Both turns are in the history with their token counts.
    let h = assert_ok(
        &s.get(&format!("/api/realtime/sessions/{id}/history"), "alice")
            .await,
        200,
    );
    let msgs = h["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2, "{h}");
    assert_eq!(msgs[0]["role"], "user");
    assert_eq!(msgs[0]["content"], "what is two plus two");
    assert_eq!(msgs[0]["tokenCount"], 5);
    assert_eq!(msgs[0]["metadata"]["platform"], "test");
    assert_eq!(msgs[0]["id"], ack["id"]);
    assert_eq!(msgs[1]["role"], "assistant");
    assert_eq!(msgs[1]["id"], reply["id"]);
    assert_eq!(msgs[1]["content"], reply["content"]);
    assert_eq!(msgs[1]["tokenCount"], 6);
    assert_eq!(
        msgs[1]["metadata"]["responseTime"],
        reply["metadata"]["responseTime"]
    );
    assert_eq!(h["summary"]["totalMessages"], 2);
    assert_eq!(h["summary"]["userMessages"], 1);
    assert_eq!(h["summary"]["assistantMessages"], 1);
    assert_eq!(h["summary"]["totalTokens"], 11);
    // Usage and performance follow.
    let g = assert_ok(
        &s.get(&format!("/api/realtime/sessions/{id}"), "alice")
            .await,
        200,
    );
    assert_eq!(g["status"], "active");
    assert_eq!(g["messageCount"], 2);
    assert_eq!(
        g["tokenUsage"],
        json!({"prompt": 5, "completion": 6, "total": 11})
    );
    assert_eq!(g["performance"]["totalRequests"], 1);
    assert_eq!(g["performance"]["successRate"], 100.0);
    assert_eq!(g["connectionInfo"]["connected"], true);
    let st = assert_ok(&s.get("/api/realtime/stats", "alice").await, 200);
    assert_eq!(st["usage"]["totalMessages"], 2, "{st}");
    assert_eq!(st["usage"]["totalTokens"], 11, "{st}");
    assert_eq!(st["sessions"]["peakConcurrent"], 1, "{st}");
    assert_eq!(st["models"]["parlor-local"]["tokens"], 11, "{st}");

    // Resume: a new token; the connected socket used the old one and is closed.
    let r = assert_ok(
        &s.post_empty(&format!("/api/realtime/sessions/{id}/resume"), "alice")
            .await,
        200,
    );
    let (url2, tok2) = url_token(&r);
    assert_eq!(url2, url);
    assert_ne!(tok2, tok);
    let hist = r["sessionData"]["messageHistory"].as_array().unwrap();
    assert_eq!(hist.len(), 2);
    assert_eq!(hist[1]["content"], reply["content"]);
    assert_eq!(r["usage"]["tokenCount"], 11);
    assert_eq!(r["usage"]["messageCount"], 2);
    ws.expect_error_close("UNAUTHORIZED", 4001).await;
    // The old token no longer opens the socket; the new one does, and the model has the history.
    let mut old = s.connect(&url).await;
    old.send(json!({"type": "auth", "token": tok})).await;
    let e = old.expect_error_close("UNAUTHORIZED", 4001).await;
    assert!(e["message"].as_str().unwrap().contains("revoked"), "{e}");
    let (mut ws, hello) = s.connect_auth(&url2, &tok2).await;
    assert_eq!(hello["historyLength"], 2);
    let (_, _, reply) = turn(&mut ws, "hello").await;
    assert!(!reply["content"].as_str().unwrap().is_empty());
    // A second connection replaces the first.
    let (mut ws2, _) = s.connect_auth(&url2, &tok2).await;
    ws.expect_error_close("CONNECTION_REPLACED", 4008).await;

    // Delete: final stats, the socket closes, then SESSION_NOT_FOUND everywhere.
    let del = assert_ok(
        &s.delete(&format!("/api/realtime/sessions/{id}"), "alice")
            .await,
        200,
    );
    assert_eq!(del["id"], id.as_str());
    assert_eq!(del["deletedBy"], "alice");
    assert_eq!(del["finalStats"]["messageCount"], 4);
    assert_eq!(del["finalStats"]["successRate"], 100.0);
    let tu = &del["finalStats"]["tokenUsage"];
    assert_eq!(
        tu["total"],
        tu["prompt"].as_i64().unwrap() + tu["completion"].as_i64().unwrap()
    );
    ws2.expect_error_close("SESSION_ENDED", 4009).await;
    assert_error(
        &s.get(&format!("/api/realtime/sessions/{id}"), "alice")
            .await,
        404,
        "SESSION_NOT_FOUND",
    );
    assert_error(
        &s.get(&format!("/api/realtime/sessions/{id}/history"), "alice")
            .await,
        404,
        "SESSION_NOT_FOUND",
    );
    assert_error(
        &s.delete(&format!("/api/realtime/sessions/{id}"), "alice")
            .await,
        404,
        "SESSION_NOT_FOUND",
    );
    let mut ws = s.connect(&url2).await;
    ws.send(json!({"type": "auth", "token": tok2})).await;
    ws.expect_error_close("SESSION_NOT_FOUND", 4004).await;
    // Listed only as completed.
    let l = assert_ok(
        &s.get("/api/realtime/sessions?status=completed", "alice")
            .await,
        200,
    );
    assert_eq!(l["sessions"][0]["id"], id.as_str());
    assert_eq!(l["sessions"][0]["status"], "completed");
}

#[tokio::test]
async fn a_text_turn_is_answered_stored_and_survives_resume_and_delete() {
    on_every_backend!(|_| {}, conversation);
}

async fn closed_by_client(s: &Srv) {
    let d = s.create("alice", "parlor-local").await;
    let id = d["id"].as_str().unwrap();
    let (url, tok) = url_token(&d);
    let (ws, _) = s.connect_auth(&url, &tok).await;
    ws.close().await;
    let mut status = Value::Null;
    for _ in 0..200 {
        status = assert_ok(
            &s.get(&format!("/api/realtime/sessions/{id}"), "alice")
                .await,
            200,
        )["status"]
            .clone();
        if status == "paused" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status, "paused");
    // Reconnecting with the same (current) token makes it active again.
    let (ws, _) = s.connect_auth(&url, &tok).await;
    let g = assert_ok(
        &s.get(&format!("/api/realtime/sessions/{id}"), "alice")
            .await,
        200,
    );
    assert_eq!(g["status"], "active");
    ws.close().await;
}

#[tokio::test]
async fn a_client_close_pauses_the_session() {
    on_every_backend!(|_| {}, closed_by_client);
}

fn tight_limits(c: &mut parlor::config::Config) {
    c.realtime.max_connections = 1;
    c.realtime
        .models
        .push(parlor::realtime::config::ModelConfig {
            id: "slow-local".into(),
            name: "Two turns a minute".into(),
            provider: "local".into(),
            requests_per_minute: 2,
            ..Default::default()
        });
}

async fn limits(s: &Srv) {
    // stream = false: no deltas, only the final message.
    let r = s
        .post(
            "/api/realtime/sessions",
            "alice",
            json!({"model": "slow-local", "stream": false}),
        )
        .await;
    let d = assert_ok(&r, 201);
    let (url, tok) = url_token(&d);
    let (mut ws, _) = s.connect_auth(&url, &tok).await;
    for q in ["hello", "what is two plus two"] {
        ws.send(json!({"type": "message", "content": q})).await;
        assert_eq!(ws.recv().await["type"], "ack");
        assert_eq!(ws.recv().await["type"], "response.started");
        let m = ws.recv().await;
        assert_eq!(m["type"], "message", "no delta when stream is false: {m}");
    }
    // The model's requests_per_minute, per connection, on the clock.
    ws.send(json!({"type": "message", "content": "again"}))
        .await;
    let e = ws.recv().await;
    assert_eq!(e["code"], "RATE_LIMIT_EXCEEDED", "{e}");
    s.clock.advance_ms(60_000);
    // (the heartbeat that interval brought, if any, is skipped)
    ws.send(json!({"type": "message", "content": "again"}))
        .await;
    assert_eq!(ws.recv_type("ack").await["content"], "again");
    // max_connections = 1: a second socket is refused.
    let mut second = s.connect(&url).await;
    second.expect_error_close("CONNECTION_FAILED", 4013).await;
    ws.close().await;
    s.until("the sockets to end", |st| {
        st.realtime
            .stats
            .open
            .load(std::sync::atomic::Ordering::SeqCst)
            == 0
    })
    .await;
    // A binary frame or a flood is handled without a panic: the flood closes with 4029.
    let (mut ws, _) = s.connect_auth(&url, &tok).await;
    ws.stream
        .send(tokio_tungstenite::tungstenite::Message::Binary(
            vec![1, 2, 3].into(),
        ))
        .await
        .unwrap();
    assert_eq!(ws.recv().await["code"], "INVALID_MESSAGE");
    for _ in 0..250 {
        ws.send(json!({"type": "ping"})).await;
    }
    loop {
        match ws.next(Duration::from_secs(10)).await {
            Frame::Json(v) if v["type"] == "pong" => continue,
            Frame::Json(v) => {
                assert_eq!(v["code"], "RATE_LIMIT_EXCEEDED", "{v}");
                ws.expect_close(4029).await;
                break;
            }
            other => panic!("expected the flood error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn connection_turn_and_flood_limits() {
    on_every_backend!(tight_limits, limits);
}

async fn failed_sessions(s: &Srv) {
    let d = s.create("alice", "parlor-local").await;
    let id = d["id"].as_str().unwrap();
    let (url, tok) = url_token(&d);
    // The state a fatal provider error leaves (the local model has none to give).
    let now = s.now_ms();
    let store = &s.handle.state.store;
    store
        .set_rt_status(id, "failed", now, false, Some("the model failed"))
        .await
        .unwrap();
    let g = assert_ok(
        &s.get(&format!("/api/realtime/sessions/{id}"), "alice")
            .await,
        200,
    );
    assert_eq!(g["status"], "failed");
    assert_eq!(g["failureReason"], "the model failed");
    assert!(g["endedAt"].is_string());
    let l = assert_ok(
        &s.get("/api/realtime/sessions?status=failed", "alice").await,
        200,
    );
    assert_eq!(l["sessions"][0]["id"], id);
    assert_eq!(l["summary"]["failedSessions"], 1);
    let mut ws = s.connect(&url).await;
    ws.send(json!({"type": "auth", "token": tok})).await;
    ws.expect_error_close("SESSION_FAILED", 4009).await;
    // Resume brings it back.
    let r = assert_ok(
        &s.post_empty(&format!("/api/realtime/sessions/{id}/resume"), "alice")
            .await,
        200,
    );
    let (_, tok2) = url_token(&r);
    let (mut ws, _) = s.connect_auth(&url, &tok2).await;
    let (_, _, reply) = turn(&mut ws, "what is two plus two").await;
    assert!(reply["content"].as_str().unwrap().contains("four"));
    let g = assert_ok(
        &s.get(&format!("/api/realtime/sessions/{id}"), "alice")
            .await,
        200,
    );
    assert_eq!(g["status"], "active");
    assert!(g["failureReason"].is_null());
    ws.close().await;
}

#[tokio::test]
async fn a_failed_session_refuses_sockets_until_resumed() {
    on_every_backend!(|_| {}, failed_sessions);
}
