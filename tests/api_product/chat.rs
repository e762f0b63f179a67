//! Chat: personal threads created by the first message, custom/group threads, message listing with
//! limit/before/after/search, newActivityCount/access, validation, authorization, live pushes.

use crate::on_every_backend;
use crate::support::{assert_envelope, Srv};
use serde_json::{json, Value};

const MSGS: &str = "/api/v1/chat/messages";

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| m["_id"].as_str().unwrap().to_string())
        .collect()
}

async fn post(s: &Srv, user: &str, body: Value) -> Value {
    s.clock.advance_ms(1);
    let r = s.post(MSGS, user, body).await;
    assert_eq!(r.0, 200, "{}", r.1);
    r.1
}

async fn chat(s: &Srv) {
    let mut bob_ws = s.presence_ws("bob", "web:b", "").await;

    // First message to a user creates the personal thread.
    let v = post(s, "alice", json!({"to": "bob", "content": "Merhaba Dünya"})).await;
    let m1 = v["message"].as_str().unwrap().to_string();
    let t = v["thread"].clone();
    let tid = t["_id"].as_str().unwrap().to_string();
    assert_eq!(t["type"], "personal");
    assert_eq!(t["users"], json!(["alice", "bob"]));
    assert_eq!(t["lastMessage"]["_id"], m1.as_str());
    assert_eq!(t["lastMessage"]["content"], "Merhaba Dünya");
    assert_eq!(t["lastMessage"]["from"], "alice");
    assert_eq!(t["newActivityCount"], 0);
    assert!(t["createdAt"].as_i64().unwrap() > 0);
    assert!(t.get("name").is_none() && t.get("group").is_none());
    // Pushed live to bob.
    let push = bob_ws.recv_type("chat.message").await;
    assert_eq!(push["thread"], tid.as_str());
    assert_eq!(push["message"]["_id"], m1.as_str());
    assert_eq!(push["message"]["content"], "Merhaba Dünya");

    // The reverse direction and `to` again reuse the thread (no `thread` in the answer).
    let v = post(s, "bob", json!({"to": "alice", "content": "selam"})).await;
    assert!(v.get("thread").is_none(), "{v}");
    let m2 = v["message"].as_str().unwrap().to_string();
    assert_eq!(
        bob_ws.recv_type("chat.message").await["message"]["_id"],
        m2.as_str()
    );
    let v = post(
        s,
        "alice",
        json!({"thread": tid, "files": ["file-1", "file-2"]}),
    )
    .await;
    let m3 = v["message"].as_str().unwrap().to_string();
    let v = post(
        s,
        "alice",
        json!({"thread": tid, "content": "cevap", "replyTo": m2}),
    )
    .await;
    let m4 = v["message"].as_str().unwrap().to_string();

    // Threads: newActivityCount counts others' messages since the user's last access.
    let threads = s.get("/api/v1/chat/threads", "bob").await;
    assert_eq!(threads.0, 200);
    let th = &threads.1[0];
    assert_eq!(threads.1.as_array().unwrap().len(), 1);
    assert_eq!(th["_id"], tid.as_str());
    assert_eq!(th["lastMessage"]["_id"], m4.as_str());
    assert_eq!(th["lastMessage"]["replyTo"], m2.as_str());
    // bob posted m2 after m1 (which set his access), so only m3 and m4 are new.
    assert_eq!(th["newActivityCount"], 2, "{th}");
    assert_eq!(th["activity"], th["lastMessage"]["createdAt"]);
    let alice_view = s.get("/api/v1/chat/threads", "alice").await.1;
    assert_eq!(alice_view[0]["newActivityCount"], 0, "{alice_view}");

    // Reading marks the thread read.
    let msgs = s
        .get(&format!("/api/v1/chat/threads/{tid}/messages"), "bob")
        .await;
    assert_eq!(msgs.0, 200, "{}", msgs.1);
    assert_eq!(
        ids(&msgs.1),
        [m1.clone(), m2.clone(), m3.clone(), m4.clone()]
    );
    let m3v = &msgs.1[2];
    assert_eq!(m3v["files"], json!([{"_id": "file-1"}, {"_id": "file-2"}]));
    assert_eq!(m3v["content"], "");
    assert_eq!(m3v["likes"], json!([]));
    assert_eq!(m3v["dislikes"], json!([]));
    assert_eq!(m3v["thread"], tid.as_str());
    assert!(m3v["replyTo"].is_null());
    let th = &s.get("/api/v1/chat/threads", "bob").await.1[0];
    assert_eq!(th["newActivityCount"], 0);
    assert!(th["access"].as_i64().unwrap() >= th["activity"].as_i64().unwrap());

    // Validation.
    for (body, what) in [
        (json!({"content": "x"}), "neither thread nor to"),
        (
            json!({"thread": tid, "to": "bob", "content": "x"}),
            "both thread and to",
        ),
        (json!({"to": "bob"}), "neither content nor files"),
        (
            json!({"to": "bob", "content": "   ", "files": []}),
            "blank content",
        ),
        (json!({"to": "alice", "content": "me"}), "to self"),
        (
            json!({"thread": tid, "content": "x", "replyTo": "msg_nope"}),
            "unknown replyTo",
        ),
        (json!({"to": "", "content": "x"}), "empty to"),
        (
            json!({"to": "bob", "content": "x".repeat(10_001)}),
            "too long",
        ),
    ] {
        let r = s.post(MSGS, "alice", body).await;
        assert_eq!(r.0, 400, "{what}: {}", r.1);
        assert_envelope(&r, 400, "validation_error");
    }
    assert_envelope(
        &s.post(MSGS, "alice", json!({"to": "bob", "content": 5}))
            .await,
        400,
        "invalid_request",
    );
    assert_envelope(
        &s.post(
            MSGS,
            "alice",
            json!({"to": "bob", "content": "x", "extra": true}),
        )
        .await,
        400,
        "invalid_request",
    );

    // Authorization: carol is not in the thread.
    assert_envelope(
        &s.get(&format!("/api/v1/chat/threads/{tid}/messages"), "carol")
            .await,
        403,
        "not_authorized",
    );
    assert_envelope(
        &s.post(
            MSGS,
            "carol",
            json!({"thread": tid, "content": "let me in"}),
        )
        .await,
        403,
        "not_authorized",
    );
    assert_envelope(
        &s.get("/api/v1/chat/threads/thr_nope/messages", "alice")
            .await,
        404,
        "thread_not_found",
    );
    assert_eq!(s.get("/api/v1/chat/threads", "carol").await.1, json!([]));
    // A reply to a message of another thread is rejected.
    let v = post(s, "carol", json!({"to": "alice", "content": "hi alice"})).await;
    let other_thread = v["thread"]["_id"].as_str().unwrap().to_string();
    let carol_msg = v["message"].as_str().unwrap().to_string();
    assert_envelope(
        &s.post(
            MSGS,
            "alice",
            json!({"thread": tid, "content": "x", "replyTo": carol_msg}),
        )
        .await,
        400,
        "validation_error",
    );
    // alice now has two threads, most recent activity first.
    let at = s.get("/api/v1/chat/threads", "alice").await.1;
    assert_eq!(
        at.as_array()
            .unwrap()
            .iter()
            .map(|t| t["_id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        [other_thread.as_str(), tid.as_str()]
    );
    assert_eq!(at[0]["newActivityCount"], 1);

    bob_ws.close().await;
}

#[tokio::test]
async fn chat_threads_messages_validation_and_push() {
    on_every_backend!(chat);
}

async fn pagination_and_search(s: &Srv) {
    let v = post(s, "alice", json!({"to": "bob", "content": "msg 0"})).await;
    let tid = v["thread"]["_id"].as_str().unwrap().to_string();
    let mut all = vec![v["message"].as_str().unwrap().to_string()];
    for i in 1..25 {
        let content = match i {
            7 => "Toplantı saat 3'te, DÜNYA kupası".to_string(),
            13 => "100% done_ok".to_string(),
            20 => "dünya turu".to_string(),
            _ => format!("msg {i}"),
        };
        let v = post(
            s,
            if i % 2 == 0 { "alice" } else { "bob" },
            json!({"thread": tid, "content": content}),
        )
        .await;
        all.push(v["message"].as_str().unwrap().to_string());
    }
    let base = format!("/api/v1/chat/threads/{tid}/messages");
    // Default: the newest (up to 50), chronological.
    assert_eq!(ids(&s.get(&base, "alice").await.1), all);
    // limit: the newest 10.
    let page1 = ids(&s.get(&format!("{base}?limit=10"), "alice").await.1);
    assert_eq!(page1, all[15..25]);
    // before: the 10 before the oldest of page 1, then the rest.
    let page2 = ids(&s
        .get(&format!("{base}?limit=10&before={}", page1[0]), "alice")
        .await
        .1);
    assert_eq!(page2, all[5..15]);
    let page3 = ids(&s
        .get(&format!("{base}?limit=10&before={}", page2[0]), "alice")
        .await
        .1);
    assert_eq!(page3, all[0..5]);
    let none = ids(&s
        .get(&format!("{base}?limit=10&before={}", all[0]), "alice")
        .await
        .1);
    assert!(none.is_empty());
    // after: forward from a message.
    let fwd = ids(&s
        .get(&format!("{base}?limit=5&after={}", all[3]), "alice")
        .await
        .1);
    assert_eq!(fwd, all[4..9]);
    let fwd = ids(&s.get(&format!("{base}?after={}", all[20]), "alice").await.1);
    assert_eq!(fwd, all[21..25]);
    // after + before: the range between.
    let mid = ids(&s
        .get(
            &format!("{base}?after={}&before={}", all[10], all[14]),
            "alice",
        )
        .await
        .1);
    assert_eq!(mid, all[11..14]);
    // Search: case-insensitive (also for non-ASCII letters), combined with paging; LIKE wildcards
    // are literal.
    let found = ids(&s.get(&format!("{base}?search=d%C3%BCnya"), "alice").await.1);
    assert_eq!(found, [all[7].clone(), all[20].clone()]);
    let found = ids(&s
        .get(&format!("{base}?search=D%C3%9CNYA&limit=1"), "alice")
        .await
        .1);
    assert_eq!(found, [all[20].clone()]);
    let found = ids(&s
        .get(
            &format!("{base}?search=d%C3%BCnya&before={}", all[20]),
            "alice",
        )
        .await
        .1);
    assert_eq!(found, [all[7].clone()]);
    let found = ids(&s.get(&format!("{base}?search=0%25"), "alice").await.1);
    assert_eq!(found, [all[13].clone()]);
    let found = ids(&s.get(&format!("{base}?search=e_o"), "alice").await.1);
    assert_eq!(found, [all[13].clone()]);
    let found = ids(&s.get(&format!("{base}?search=e%25o"), "alice").await.1);
    assert!(found.is_empty());
    let found = ids(&s.get(&format!("{base}?search=msg%202"), "alice").await.1);
    assert_eq!(
        found,
        [
            all[2].clone(),
            all[21].clone(),
            all[22].clone(),
            all[23].clone(),
            all[24].clone()
        ]
    );
    // Cursor errors.
    assert_envelope(
        &s.get(&format!("{base}?before=msg_nope"), "alice").await,
        404,
        "message_not_found",
    );
    assert_envelope(
        &s.get(&format!("{base}?limit=ten"), "alice").await,
        400,
        "invalid_request",
    );
    // A cursor from another thread is not accepted.
    let v = post(s, "carol", json!({"to": "alice", "content": "other"})).await;
    let foreign = v["message"].as_str().unwrap();
    assert_envelope(
        &s.get(&format!("{base}?after={foreign}"), "alice").await,
        404,
        "message_not_found",
    );
}

#[tokio::test]
async fn chat_pagination_and_search() {
    on_every_backend!(pagination_and_search);
}

async fn custom_and_group_threads(s: &Srv) {
    let threads = "/api/v1/chat/threads";
    let r = s
        .post(
            threads,
            "alice",
            json!({"type": "custom", "name": "Proje ekibi", "users": ["bob", "carol", "bob"]}),
        )
        .await;
    assert_eq!(r.0, 201, "{}", r.1);
    let t = &r.1;
    let tid = t["_id"].as_str().unwrap().to_string();
    assert_eq!(t["type"], "custom");
    assert_eq!(t["name"], "Proje ekibi");
    assert_eq!(t["users"], json!(["alice", "bob", "carol"]));
    assert_eq!(t["lastMessage"], Value::Null);
    assert_eq!(t["access"], 0);
    assert_eq!(t["newActivityCount"], 0);
    let r = s
        .post(
            threads,
            "bob",
            json!({"type": "group", "group": "project-7", "users": ["alice"]}),
        )
        .await;
    assert_eq!(r.0, 201, "{}", r.1);
    assert_eq!(r.1["group"], "project-7");
    for (body, code) in [
        (
            json!({"type": "custom", "users": ["bob"]}),
            "validation_error",
        ),
        (
            json!({"type": "group", "users": ["bob"]}),
            "validation_error",
        ),
        (
            json!({"type": "personal", "users": ["bob"]}),
            "validation_error",
        ),
        (
            json!({"type": "secret", "users": ["bob"]}),
            "validation_error",
        ),
        (
            json!({"type": "custom", "name": "x", "users": []}),
            "validation_error",
        ),
        (
            json!({"type": "custom", "name": "x", "users": ["alice"]}),
            "validation_error",
        ),
        (json!({"type": "custom", "name": "x"}), "invalid_request"),
        (
            json!({"type": "custom", "name": "x", "users": [1]}),
            "invalid_request",
        ),
    ] {
        assert_envelope(&s.post(threads, "alice", body).await, 400, code);
    }
    // Messages in a custom thread reach all its members; newActivityCount per member.
    post(s, "carol", json!({"thread": tid, "content": "hello team"})).await;
    post(s, "bob", json!({"thread": tid, "content": "hi"})).await;
    let mine = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|t| t["_id"] == tid.as_str())
            .cloned()
            .unwrap()
    };
    assert_eq!(
        mine(&s.get(threads, "alice").await.1)["newActivityCount"],
        2
    );
    assert_eq!(mine(&s.get(threads, "bob").await.1)["newActivityCount"], 0);
    assert_eq!(
        mine(&s.get(threads, "carol").await.1)["newActivityCount"],
        1
    );
    assert_envelope(
        &s.get(&format!("{threads}/{tid}/messages"), "dave").await,
        403,
        "not_authorized",
    );
}

#[tokio::test]
async fn chat_custom_and_group_threads() {
    on_every_backend!(custom_and_group_threads);
}
