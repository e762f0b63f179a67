//! Presence: the presence WebSocket (multiple devices), status/custom message/emoji, last_seen,
//! online list with workspace filter, typing indicators with expiry (manual clock).

use crate::on_every_backend;
use crate::support::{assert_envelope, Srv};
use serde_json::json;

async fn presence(s: &Srv) {
    // Offline and never seen.
    let p = s.get("/api/presence/alice", "bob").await;
    assert_eq!(p.0, 200);
    assert_eq!(
        p.1["presence"],
        json!({"user_id": "alice", "status": "offline", "custom_message": null, "emoji": null,
               "last_seen": null, "devices": [], "in_rooms": 0})
    );
    // WS auth and upgrade errors are JSON.
    let r = s
        .req(reqwest::Method::GET, "/api/presence/ws", None, None)
        .await;
    assert_envelope(&r, 401, "unauthorized");
    let r = s
        .req(
            reqwest::Method::GET,
            "/api/presence/ws?access_token=garbage",
            None,
            None,
        )
        .await;
    assert_envelope(&r, 401, "unauthorized");
    let r = s.get("/api/presence/ws", "alice").await;
    assert_envelope(&r, 400, "websocket_required");

    // Two devices.
    let mut a1 = s.presence_ws("alice", "web:tab1", "ws-a").await;
    let a2 = s.presence_ws("alice", "ios:phone", "ws-a,ws-b").await;
    let mut b1 = s.presence_ws("bob", "web:b", "ws-b").await;
    let p = s.get("/api/presence/alice", "bob").await.1;
    assert_eq!(p["presence"]["status"], "online");
    let mut devs: Vec<&str> = p["presence"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    devs.sort();
    assert_eq!(devs, ["ios:phone", "web:tab1"]);
    assert!(p["presence"]["devices"][0]["timestamp"].as_i64().unwrap() > 1_600_000_000);
    assert!(p["presence"]["last_seen"].is_string());

    // Online list, with workspace filter and limit.
    let v = s.get("/api/presence/online", "carol").await.1;
    assert_eq!(v["total"], 2, "{v}");
    assert_eq!(
        v["users"],
        json!([{"user_id": "alice", "status": "online"}, {"user_id": "bob", "status": "online"}])
    );
    let v = s
        .get("/api/presence/online?workspace_id=ws-a", "carol")
        .await
        .1;
    assert_eq!(
        v["users"],
        json!([{"user_id": "alice", "status": "online"}])
    );
    assert_eq!(v["total"], 1);
    let v = s
        .get("/api/presence/online?workspace_id=ws-b&limit=1", "carol")
        .await
        .1;
    assert_eq!(v["total"], 2);
    assert_eq!(v["users"].as_array().unwrap().len(), 1);
    assert_envelope(
        &s.get("/api/presence/online?limit=x", "carol").await,
        400,
        "invalid_request",
    );

    // Ping/pong, status over the WebSocket, bad messages.
    a1.send(json!({"type": "ping"})).await;
    assert_eq!(a1.recv().await["type"], "pong");
    a1.send(json!({"type": "status", "status": "away", "custom_message": "In a meeting", "emoji": "📞"}))
        .await;
    let v = a1.recv().await;
    assert_eq!(v["type"], "presence", "{v}");
    assert_eq!(v["presence"]["status"], "away");
    assert_eq!(v["presence"]["custom_message"], "In a meeting");
    assert_eq!(v["presence"]["emoji"], "📞");
    a1.send_text("{not json").await;
    assert_eq!(a1.recv().await["code"], "invalid_message");
    a1.send(json!({"type": "status", "status": "busy"})).await;
    assert_eq!(a1.recv().await["code"], "validation_error");
    a1.send(json!({"type": "teleport"})).await;
    assert_eq!(a1.recv().await["code"], "invalid_message");
    let v = s
        .get("/api/presence/online?workspace_id=ws-a", "carol")
        .await
        .1;
    assert_eq!(v["users"], json!([{"user_id": "alice", "status": "away"}]));

    // REST status: back online, clear the emoji, keep the message.
    let r = s
        .put(
            "/api/presence",
            "alice",
            json!({"status": "online", "emoji": ""}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["presence"]["status"], "online");
    assert_eq!(r.1["presence"]["emoji"], serde_json::Value::Null);
    assert_eq!(r.1["presence"]["custom_message"], "In a meeting");
    assert_envelope(
        &s.put("/api/presence", "alice", json!({"status": "invisible"}))
            .await,
        400,
        "validation_error",
    );
    assert_envelope(
        &s.put(
            "/api/presence",
            "alice",
            json!({"custom_message": "x".repeat(257)}),
        )
        .await,
        400,
        "validation_error",
    );
    assert_envelope(
        &s.put("/api/presence", "alice", json!({"status": 1})).await,
        400,
        "invalid_request",
    );

    // One device disconnects: still online. Both: offline with last_seen; the message persists.
    a2.close().await;
    s.eventually("one device left", || async {
        let v = s.get("/api/presence/alice", "bob").await.1;
        (v["presence"]["devices"].as_array()?.len() == 1).then_some(())
    })
    .await;
    assert_eq!(
        s.get("/api/presence/alice", "bob").await.1["presence"]["status"],
        "online"
    );
    let before_close = s.now_ms();
    a1.close().await;
    // Her REST PUT above keeps her present (without devices) until presence.rest_ttl_secs pass.
    s.eventually("no devices left", || async {
        let v = s.get("/api/presence/alice", "bob").await.1;
        (v["presence"]["devices"] == json!([])).then_some(())
    })
    .await;
    assert_eq!(
        s.get("/api/presence/alice", "bob").await.1["presence"]["status"],
        "online"
    );
    s.clock.advance_ms(300_000);
    let v = s
        .eventually("alice offline", || async {
            let v = s.get("/api/presence/alice", "bob").await.1;
            (v["presence"]["status"] == "offline").then_some(v)
        })
        .await;
    assert_eq!(v["presence"]["custom_message"], "In a meeting");
    assert_eq!(v["presence"]["devices"], json!([]));
    let seen = v["presence"]["last_seen"].as_str().unwrap().to_string();
    assert!(seen >= parlor::timefmt::rfc3339_ms(before_close), "{seen}");
    assert_eq!(s.get("/api/presence/online", "carol").await.1["total"], 1);

    // A user set away stays away when reconnecting.
    s.put("/api/presence", "carol", json!({"status": "away"}))
        .await;
    let mut c = s.presence_ws("carol", "web:c", "").await;
    assert_eq!(
        s.get("/api/presence/carol", "bob").await.1["presence"]["status"],
        "away"
    );
    c.send(json!({"type": "ping"})).await;
    c.recv().await;
    c.close().await;
    b1.send(json!({"type": "ping"})).await;
    b1.recv().await;
    b1.close().await;
}

#[tokio::test]
async fn presence_websocket_status_and_online_list() {
    on_every_backend!(presence);
}

async fn typing(s: &Srv) {
    let path = "/api/presence/typing/conv-9";
    assert_eq!(
        s.get(path, "alice").await.1,
        json!({"success": true, "conversation_id": "conv-9", "typing_users": []})
    );
    let r = s.post(path, "bob", json!({"typing": true})).await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["expires_in_ms"], parlor::product::TYPING_TTL_MS);
    // Default body value: typing = true.
    assert_eq!(s.post(path, "carol", json!({})).await.0, 200);
    assert_eq!(
        s.get(path, "alice").await.1["typing_users"],
        json!(["bob", "carol"])
    );
    // Carol stops explicitly.
    s.post(path, "carol", json!({"typing": false})).await;
    assert_eq!(s.get(path, "alice").await.1["typing_users"], json!(["bob"]));
    // Expiry: just before the TTL bob is still typing, after it he is not.
    s.clock.advance_ms(parlor::product::TYPING_TTL_MS - 500);
    assert_eq!(s.get(path, "alice").await.1["typing_users"], json!(["bob"]));
    s.clock.advance_ms(1_000);
    assert_eq!(s.get(path, "alice").await.1["typing_users"], json!([]));
    // Refreshing extends it.
    s.post(path, "bob", json!({})).await;
    s.clock.advance_ms(parlor::product::TYPING_TTL_MS / 2);
    s.post(path, "bob", json!({})).await;
    s.clock.advance_ms(parlor::product::TYPING_TTL_MS / 2 + 100);
    assert_eq!(s.get(path, "alice").await.1["typing_users"], json!(["bob"]));
    // Over the WebSocket.
    let mut d = s.presence_ws("dave", "web:d", "").await;
    d.send(json!({"type": "typing", "conversation_id": "conv-9", "typing": true}))
        .await;
    assert_eq!(d.recv().await["type"], "typing.ack");
    assert_eq!(
        s.get(path, "alice").await.1["typing_users"],
        json!(["bob", "dave"])
    );
    // In a chat thread only its members may see or set typing; members get live typing pushes.
    let r = s
        .post(
            "/api/v1/chat/messages",
            "erin",
            json!({"to": "dave", "content": "hi"}),
        )
        .await;
    let thread = r.1["thread"]["_id"].as_str().unwrap().to_string();
    let tpath = format!("/api/presence/typing/{thread}");
    assert_envelope(
        &s.post(&tpath, "mallory", json!({})).await,
        403,
        "not_authorized",
    );
    assert_envelope(&s.get(&tpath, "mallory").await, 403, "not_authorized");
    assert_eq!(s.post(&tpath, "erin", json!({})).await.0, 200);
    let v = d.recv_type("typing").await;
    assert_eq!(
        v,
        json!({"type": "typing", "conversation_id": thread, "user_id": "erin", "typing": true})
    );
    assert_eq!(
        s.get(&tpath, "dave").await.1["typing_users"],
        json!(["erin"])
    );
    d.send(json!({"type": "typing", "conversation_id": thread.clone()}))
        .await;
    assert_eq!(d.recv_type("typing.ack").await["typing"], true);
    // Validation.
    assert_envelope(
        &s.post(path, "bob", json!({"typing": "yes"})).await,
        400,
        "invalid_request",
    );
    d.close().await;
}

#[tokio::test]
async fn typing_indicators_expire() {
    on_every_backend!(typing);
}

/// Issue 14 item 6: a flood of status writes on one presence socket is cut off: the socket is
/// closed with 1008 "too many presence messages" after at most a few windows of
/// `limits.max_presence_messages_per_sec` (default 20), so the store sees a bounded number of writes.
async fn flood(s: &Srv) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let sent = 2_000;
    let ws = s.presence_ws("alice", "d1", "").await;
    let (mut tx, mut rx) = ws.stream.split();
    let writer = tokio::spawn(async move {
        for i in 0..sent {
            let status = if i % 2 == 0 { "busy" } else { "online" };
            let m = json!({"type": "status", "status": status}).to_string();
            if tx.send(Message::Text(m.into())).await.is_err() {
                break; // closed by the server
            }
        }
    });
    let mut writes = 0;
    let close = loop {
        let m = tokio::time::timeout(std::time::Duration::from_secs(20), rx.next())
            .await
            .expect("the flooded presence socket was never closed");
        match m {
            Some(Ok(Message::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "presence" {
                    writes += 1;
                }
            }
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("socket ended without a close frame: {other:?}"),
        }
    };
    writer.abort();
    eprintln!("{writes} of {sent} status writes processed before the close");
    let frame = close.expect("close frame with a reason");
    assert_eq!(u16::from(frame.code), 1008);
    assert_eq!(frame.reason.as_str(), "too many presence messages");
    assert!(
        writes < sent / 10,
        "{writes} of {sent} status writes were processed before the close"
    );
    // The server is fine and the user can reconnect.
    let mut again = s.presence_ws("alice", "d2", "").await;
    again.send(json!({"type": "ping"})).await;
    assert_eq!(again.recv_type("pong").await["type"], "pong");
    again.close().await;
}

#[tokio::test]
async fn presence_socket_flood_is_closed() {
    on_every_backend!(flood);
}

/// `PUT /api/presence` stands on its own: no presence socket, status read back, listed online,
/// renewed by each PUT, offline (with last_seen) once `presence.rest_ttl_secs` pass.
async fn rest_presence(s: &Srv) {
    let ttl_ms = 120_000;
    let put_at = s.now_ms();
    let r = s
        .put("/api/presence", "dave", json!({"status": "away"}))
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["presence"]["status"], "away", "{}", r.1);
    let p = s.get("/api/presence/dave", "erin").await.1;
    assert_eq!(p["presence"]["status"], "away", "{p}");
    assert_eq!(p["presence"]["devices"], json!([]));
    assert_eq!(
        s.get("/api/presence/online", "erin").await.1["users"],
        json!([{"user_id": "dave", "status": "away"}])
    );
    // Not in a workspace (REST presence names none).
    assert_eq!(
        s.get("/api/presence/online?workspace_id=ws-a", "erin")
            .await
            .1["total"],
        0
    );
    // Back online, then renewed just before the expiry: still present after the first TTL.
    s.clock.advance_ms(ttl_ms - 1_000);
    let r = s
        .put("/api/presence", "dave", json!({"status": "online"}))
        .await;
    assert_eq!(r.1["presence"]["status"], "online", "{}", r.1);
    s.clock.advance_ms(ttl_ms - 1_000);
    assert_eq!(
        s.get("/api/presence/dave", "erin").await.1["presence"]["status"],
        "online"
    );
    // Expired: offline, last seen at the last PUT, gone from the online list and /health.
    s.clock.advance_ms(2_000);
    let p = s.get("/api/presence/dave", "erin").await.1;
    assert_eq!(p["presence"]["status"], "offline", "{p}");
    let seen = p["presence"]["last_seen"].as_str().unwrap().to_string();
    assert!(seen > parlor::timefmt::rfc3339_ms(put_at), "{p}");
    assert_eq!(s.get("/api/presence/online", "erin").await.1["total"], 0);
    let h = s
        .client
        .get(s.url("/health"))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(h["stats"]["online_users"], 0, "{h}");
}

#[tokio::test]
async fn rest_presence_without_a_socket_expires() {
    for db in crate::common::all_dbs().await {
        eprintln!("== backend {}", db.backend());
        let s = Srv::start_with(&db, |c| c.presence.rest_ttl_secs = 120).await;
        rest_presence(&s).await;
        s.stop().await;
        db.drop_db().await;
    }
}
