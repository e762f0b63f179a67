//! Calls: create/get/list/delete, invite (+ notification records), join, participants, error codes,
//! authorization, and status driven by SFU events.

use crate::on_every_backend;
use crate::support::{assert_envelope, Srv};
use parlor::clock::Clock;
use parlor::sfu::SfuEvent;
use parlor_signaling::AccessToken;
use serde_json::json;

async fn create_call(s: &Srv, user: &str, body: serde_json::Value) -> String {
    let r = s.post("/api/calls", user, body).await;
    assert_eq!(r.0, 201, "{}", r.1);
    r.1["call_id"].as_str().unwrap().to_string()
}

async fn crud_invite_and_errors(s: &Srv) {
    // Create: ringing, creator is a member, join credentials for the call's room.
    let r = s
        .post(
            "/api/calls",
            "alice",
            json!({"call_type": "audio", "conversation_id": "conv-1"}),
        )
        .await;
    assert_eq!(r.0, 201, "{}", r.1);
    let v = &r.1;
    assert_eq!(v["success"], true);
    let id = v["call_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("call_"));
    assert_eq!(v["call"]["id"], id.as_str());
    assert_eq!(v["call"]["type"], "audio");
    assert_eq!(v["call"]["status"], "ringing");
    assert_eq!(v["call"]["conversation_id"], "conv-1");
    assert_eq!(v["call"]["created_by"], "alice");
    assert!(v["call"]["ended_at"].is_null() && v["call"]["duration"].is_null());
    assert_eq!(v["url"], s.ws.as_str());
    let claims = AccessToken::decode(
        v["token"].as_str().unwrap(),
        |k| (k == crate::common::KEY).then_some(crate::common::SECRET),
        s.clock.unix_secs(),
    )
    .unwrap();
    assert_eq!(claims.sub, "alice");
    let grant = claims.video.unwrap();
    assert_eq!(grant.room.as_deref(), Some(id.as_str()));
    assert!(grant.room_join && grant.can_publish());

    // Defaults: video.
    let r = s.post("/api/calls", "alice", json!({})).await;
    assert_eq!(r.0, 201);
    assert_eq!(r.1["call"]["type"], "video");
    // Validation.
    assert_envelope(
        &s.post("/api/calls", "alice", json!({"call_type": "hologram"}))
            .await,
        400,
        "validation_error",
    );
    assert_envelope(
        &s.post("/api/calls", "alice", json!({"conversation_id": ""}))
            .await,
        400,
        "validation_error",
    );
    assert_envelope(
        &s.post("/api/calls", "alice", json!({"bogus": 1})).await,
        400,
        "invalid_request",
    );
    // No token.
    let r = s
        .req(reqwest::Method::POST, "/api/calls", None, Some(&json!({})))
        .await;
    assert_envelope(&r, 401, "unauthorized");

    // Get.
    let r = s.get(&format!("/api/calls/{id}"), "alice").await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["call"]["status"], "ringing");
    assert_eq!(r.1["call"]["participant_count"], 0);
    assert_eq!(r.1["call"]["members"][0]["user_id"], "alice");
    assert_eq!(r.1["call"]["members"][0]["role"], "creator");
    assert_envelope(
        &s.get("/api/calls/call_nope", "alice").await,
        404,
        "call_not_found",
    );

    // Authorization: bob is not a member yet.
    for path in [
        format!("/api/calls/{id}"),
        format!("/api/calls/{id}/participants"),
    ] {
        assert_envelope(&s.get(&path, "bob").await, 403, "not_authorized");
    }
    assert_envelope(
        &s.post_empty(&format!("/api/calls/{id}/join"), "bob").await,
        403,
        "not_authorized",
    );
    assert_envelope(
        &s.post(
            &format!("/api/calls/{id}/invite"),
            "bob",
            json!({"user_id": "bob"}),
        )
        .await,
        403,
        "not_authorized",
    );
    assert_envelope(
        &s.delete(&format!("/api/calls/{id}"), "bob").await,
        403,
        "not_authorized",
    );

    // Bob has two devices (one without a push token): inviting him creates a notification record
    // for each.
    let r = s
        .post(
            "/api/devices",
            "bob",
            json!({"device_id": "bob-phone", "platform": "ios", "token": "apns-1"}),
        )
        .await;
    assert_eq!(r.0, 201, "{}", r.1);
    let r = s
        .post(
            "/api/devices",
            "bob",
            json!({"device_id": "bob-web", "platform": "web"}),
        )
        .await;
    assert_eq!(r.0, 201, "{}", r.1);
    let r = s
        .post(
            &format!("/api/calls/{id}/invite"),
            "alice",
            json!({"user_id": "bob", "call_type": "audio"}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(
        r.1,
        json!({"success": true, "call_id": id, "invited_user": "bob", "notified_devices": 2})
    );
    let r = s.get("/api/notifications", "bob").await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["count"], 2, "{}", r.1);
    assert_eq!(r.1["sender"], "log");
    let mut by_device: Vec<(String, String)> = r.1["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            assert_eq!(n["kind"], "call_invite");
            assert_eq!(n["payload"]["call_id"], id.as_str());
            assert_eq!(n["payload"]["from"], "alice");
            assert_eq!(n["payload"]["call_type"], "audio");
            (
                n["device_id"].as_str().unwrap().to_string(),
                n["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    by_device.sort();
    assert_eq!(
        by_device,
        [
            ("bob-phone".to_string(), "sent".to_string()),
            ("bob-web".to_string(), "skipped".to_string())
        ]
    );
    // Alice got none; nobody else sees bob's.
    assert_eq!(s.get("/api/notifications", "alice").await.1["count"], 0);

    // Invite validation.
    assert_envelope(
        &s.post(&format!("/api/calls/{id}/invite"), "alice", json!({}))
            .await,
        400,
        "invalid_request",
    );
    assert_envelope(
        &s.post(
            &format!("/api/calls/{id}/invite"),
            "alice",
            json!({"user_id": "carol", "call_type": "fax"}),
        )
        .await,
        400,
        "validation_error",
    );
    assert_envelope(
        &s.post(
            &format!("/api/calls/{id}/invite"),
            "alice",
            json!({"user_id": "alice"}),
        )
        .await,
        400,
        "validation_error",
    );
    assert_envelope(
        &s.post(
            "/api/calls/call_nope/invite",
            "alice",
            json!({"user_id": "bob"}),
        )
        .await,
        404,
        "call_not_found",
    );

    // Now bob is a member: he can read the call, its participants, and get join credentials.
    let r = s.get(&format!("/api/calls/{id}"), "bob").await;
    assert_eq!(r.0, 200);
    let members: Vec<&str> = r.1["call"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(members.len(), 2);
    assert!(members.contains(&"bob"));
    let r = s.post_empty(&format!("/api/calls/{id}/join"), "bob").await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["url"], s.ws.as_str());
    let claims = AccessToken::decode(
        r.1["token"].as_str().unwrap(),
        |k| (k == crate::common::KEY).then_some(crate::common::SECRET),
        s.clock.unix_secs(),
    )
    .unwrap();
    assert_eq!(claims.sub, "bob");
    assert_eq!(claims.video.unwrap().room.as_deref(), Some(id.as_str()));
    let r = s.get(&format!("/api/calls/{id}/participants"), "bob").await;
    assert_eq!(
        r.1,
        json!({"success": true, "call_id": id, "status": "ringing", "participants": [], "count": 0})
    );

    // List: alice has 2 calls, bob 1; pagination with before; conversation filter.
    let r = s.get("/api/calls?limit=1", "alice").await;
    assert_eq!(r.1["count"], 1, "{}", r.1);
    let first = r.1["calls"][0]["id"].as_str().unwrap().to_string();
    let before = r.1["next_before"].as_i64().unwrap();
    let r = s
        .get(&format!("/api/calls?limit=5&before={before}"), "alice")
        .await;
    let rest: Vec<&str> = r.1["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert!(!rest.contains(&first.as_str()));
    assert_eq!(
        s.get("/api/calls?conversation_id=conv-1", "alice").await.1["count"],
        1
    );
    assert_eq!(s.get("/api/calls", "bob").await.1["count"], 1);
    // Listed calls carry the same members as the single-call view (one query for the whole page).
    let all = s.get("/api/calls?limit=100", "alice").await.1;
    assert_eq!(all["count"], 2);
    for c in all["calls"].as_array().unwrap() {
        let id = c["id"].as_str().unwrap();
        let one = s.get(&format!("/api/calls/{id}"), "alice").await.1;
        assert_eq!(c["members"], one["call"]["members"], "members of {id}");
        assert!(!c["members"].as_array().unwrap().is_empty(), "{c}");
    }
    assert_eq!(s.get("/api/calls", "mallory").await.1["count"], 0);
    assert_envelope(
        &s.get("/api/calls?limit=abc", "alice").await,
        400,
        "invalid_request",
    );

    // Delete: only the creator; a member who is not the creator gets 403.
    assert_envelope(
        &s.delete(&format!("/api/calls/{id}"), "bob").await,
        403,
        "not_authorized",
    );
    let r = s.delete(&format!("/api/calls/{id}"), "alice").await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["deleted"], true);
    assert_envelope(
        &s.get(&format!("/api/calls/{id}"), "alice").await,
        404,
        "call_not_found",
    );
    assert_envelope(
        &s.delete(&format!("/api/calls/{id}"), "alice").await,
        404,
        "call_not_found",
    );
}

#[tokio::test]
async fn calls_crud_invite_errors_and_authorization() {
    on_every_backend!(crud_invite_and_errors);
}

async fn status_from_sfu_events(s: &Srv) {
    let sfu = &s.handle.state.sfu;
    let id = create_call(s, "alice", json!({"call_type": "video"})).await;
    s.post(
        &format!("/api/calls/{id}/invite"),
        "alice",
        json!({"user_id": "bob"}),
    )
    .await;
    let t0 = s.now_ms();
    sfu.emit(SfuEvent::RoomCreated {
        room: id.clone(),
        at_ms: t0,
        info: Default::default(),
    });
    sfu.emit(SfuEvent::ParticipantJoined {
        room: id.clone(),
        identity: "alice".into(),
        at_ms: t0 + 10,
        info: Default::default(),
    });
    sfu.emit(SfuEvent::ParticipantJoined {
        room: id.clone(),
        identity: "bob".into(),
        at_ms: t0 + 20,
        info: Default::default(),
    });
    // Joining alone does not make it active: media must connect.
    let path = format!("/api/calls/{id}");
    s.eventually("both joined", || async {
        let v = s.get(&path, "alice").await.1;
        let joined = v["call"]["members"]
            .as_array()?
            .iter()
            .filter(|m| !m["joined_at"].is_null())
            .count();
        (joined == 2).then_some(())
    })
    .await;
    assert_eq!(s.get(&path, "alice").await.1["call"]["status"], "ringing");
    // Presence: SFU participants are online.
    let p = s.get("/api/presence/bob", "alice").await.1;
    assert_eq!(p["presence"]["status"], "online", "{p}");
    let started = t0 + 1_000;
    sfu.emit(SfuEvent::MediaConnected {
        room: id.clone(),
        identity: "alice".into(),
        at_ms: started,
    });
    sfu.emit(SfuEvent::MediaConnected {
        room: id.clone(),
        identity: "bob".into(),
        at_ms: started + 500,
    });
    s.eventually("active", || async {
        let v = s.get(&path, "alice").await.1;
        (v["call"]["status"] == "active").then_some(())
    })
    .await;
    let v = s.get(&path, "alice").await.1;
    assert_eq!(
        v["call"]["started_at"],
        parlor::timefmt::rfc3339_ms(started)
    );
    assert!(v["call"]["ended_at"].is_null());
    let h = s.client.get(s.url("/health")).send().await.unwrap();
    let h: serde_json::Value = h.json().await.unwrap();
    assert_eq!(h["stats"]["active_calls"], 1, "{h}");
    assert!(h["stats"]["online_users"].as_u64().unwrap() >= 2, "{h}");
    // Invites to an active call are fine.
    let r = s
        .post(
            &format!("/api/calls/{id}/invite"),
            "bob",
            json!({"user_id": "carol"}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    // One leaves: still active. The last leaves: completed with ended_at and duration.
    sfu.emit(SfuEvent::ParticipantLeft {
        room: id.clone(),
        identity: "bob".into(),
        at_ms: started + 30_000,
        info: Default::default(),
    });
    let ended = started + 61_234;
    sfu.emit(SfuEvent::ParticipantLeft {
        room: id.clone(),
        identity: "alice".into(),
        at_ms: ended,
        info: Default::default(),
    });
    s.eventually("completed", || async {
        let v = s.get(&path, "alice").await.1;
        (v["call"]["status"] == "completed").then_some(())
    })
    .await;
    let v = s.get(&path, "bob").await.1;
    assert_eq!(v["call"]["ended_at"], parlor::timefmt::rfc3339_ms(ended));
    assert_eq!(v["call"]["duration_ms"], 61_234);
    // `duration` is whole seconds (seed 002), `duration_ms` the precise value.
    assert_eq!(v["call"]["duration"], 61);
    let left: Vec<_> = v["call"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["user_id"] == "bob")
        .map(|m| m["left_at"].clone())
        .collect();
    assert_eq!(left, [json!(parlor::timefmt::rfc3339_ms(started + 30_000))]);
    // Ended: call_not_active for invite and join.
    assert_envelope(
        &s.post(
            &format!("/api/calls/{id}/invite"),
            "alice",
            json!({"user_id": "dave"}),
        )
        .await,
        409,
        "call_not_active",
    );
    assert_envelope(
        &s.post_empty(&format!("/api/calls/{id}/join"), "bob").await,
        409,
        "call_not_active",
    );
    // SFU participants went offline with a last_seen.
    let p = s.get("/api/presence/alice", "bob").await.1;
    assert_eq!(p["presence"]["status"], "offline");
    assert_eq!(
        p["presence"]["last_seen"],
        parlor::timefmt::rfc3339_ms(ended)
    );
    let h: serde_json::Value = s
        .client
        .get(s.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["stats"]["active_calls"], 0, "{h}");

    // A call whose participants never connect media ends `missed` when its room closes.
    let id2 = create_call(s, "alice", json!({})).await;
    sfu.emit(SfuEvent::ParticipantJoined {
        room: id2.clone(),
        identity: "alice".into(),
        at_ms: t0,
        info: Default::default(),
    });
    sfu.emit(SfuEvent::RoomClosed {
        room: id2.clone(),
        at_ms: t0 + 5_000,
        info: Default::default(),
    });
    let path2 = format!("/api/calls/{id2}");
    s.eventually("missed", || async {
        let v = s.get(&path2, "alice").await.1;
        (v["call"]["status"] == "missed").then_some(())
    })
    .await;
    let v = s.get(&path2, "alice").await.1;
    assert_eq!(
        v["call"]["ended_at"],
        parlor::timefmt::rfc3339_ms(t0 + 5_000)
    );
    assert_eq!(v["call"]["duration_ms"], 0);

    // Deleting a call record never ends the live room: events for it are ignored afterwards.
    let id3 = create_call(s, "alice", json!({})).await;
    sfu.emit(SfuEvent::ParticipantJoined {
        room: id3.clone(),
        identity: "alice".into(),
        at_ms: t0,
        info: Default::default(),
    });
    assert_eq!(s.delete(&format!("/api/calls/{id3}"), "alice").await.0, 200);
    sfu.emit(SfuEvent::MediaConnected {
        room: id3.clone(),
        identity: "alice".into(),
        at_ms: t0 + 1,
    });
    sfu.emit(SfuEvent::ParticipantLeft {
        room: id3.clone(),
        identity: "alice".into(),
        at_ms: t0 + 2,
        info: Default::default(),
    });
    // The consumer is still alive and processing events after that.
    let id4 = create_call(s, "alice", json!({})).await;
    sfu.emit(SfuEvent::ParticipantJoined {
        room: id4.clone(),
        identity: "alice".into(),
        at_ms: t0,
        info: Default::default(),
    });
    sfu.emit(SfuEvent::MediaConnected {
        room: id4.clone(),
        identity: "alice".into(),
        at_ms: t0 + 100,
    });
    let path4 = format!("/api/calls/{id4}");
    s.eventually("active after deleted-call events", || async {
        let v = s.get(&path4, "alice").await.1;
        (v["call"]["status"] == "active").then_some(())
    })
    .await;
    assert_envelope(
        &s.get(&format!("/api/calls/{id3}"), "alice").await,
        404,
        "call_not_found",
    );
}

#[tokio::test]
async fn call_status_follows_sfu_events() {
    on_every_backend!(status_from_sfu_events);
}

/// A sender that refuses every notification, to check the sender is pluggable and failures are
/// recorded.
struct RefusingSender;

impl parlor::product::NotificationSender for RefusingSender {
    fn name(&self) -> &'static str {
        "refusing"
    }
    fn send<'a>(
        &'a self,
        device: &'a parlor::store::DeviceRecord,
        _kind: &'a str,
        _payload: &'a serde_json::Value,
    ) -> futures_util::future::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { Err(format!("push service rejected {}", device.id)) })
    }
}

async fn pluggable_sender(s: &Srv) {
    s.handle
        .state
        .product
        .set_sender(std::sync::Arc::new(RefusingSender));
    s.post(
        "/api/devices",
        "bob",
        json!({"device_id": "p1", "platform": "android", "token": "fcm-1"}),
    )
    .await;
    let id = create_call(s, "alice", json!({})).await;
    let r = s
        .post(
            &format!("/api/calls/{id}/invite"),
            "alice",
            json!({"user_id": "bob"}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let v = s.get("/api/notifications", "bob").await.1;
    assert_eq!(v["sender"], "refusing");
    assert_eq!(v["count"], 1);
    assert_eq!(v["notifications"][0]["status"], "failed");
    assert_eq!(v["notifications"][0]["error"], "push service rejected p1");
    // A live invite push reaches bob's presence connection.
    let mut ws = s.presence_ws("bob", "web:b", "").await;
    let id2 = create_call(s, "alice", json!({"call_type": "audio"})).await;
    s.post(
        &format!("/api/calls/{id2}/invite"),
        "alice",
        json!({"user_id": "bob"}),
    )
    .await;
    let push = ws.recv_type("call.invite").await;
    assert_eq!(push["call_id"], id2.as_str());
    assert_eq!(push["call_type"], "audio");
    assert_eq!(push["from"], "alice");
    ws.close().await;
}

#[tokio::test]
async fn notification_sender_is_pluggable() {
    on_every_backend!(pluggable_sender);
}

async fn unanswered_calls_are_missed(s: &Srv) {
    let sfu = &s.handle.state.sfu;
    // Nobody ever joins: missed after the ring timeout.
    let lonely = create_call(s, "alice", json!({})).await;
    // Someone is in the room (media not connected yet): not swept.
    let waiting = create_call(s, "alice", json!({})).await;
    sfu.emit(SfuEvent::ParticipantJoined {
        room: waiting.clone(),
        identity: "alice".into(),
        at_ms: s.now_ms(),
        info: Default::default(),
    });
    // Still ringing just before the timeout (the sweep runs every second).
    s.clock.advance_ms(parlor::product::RING_TIMEOUT_MS - 5_000);
    tokio::time::sleep(parlor::product::RING_SWEEP_INTERVAL * 2).await;
    let path = format!("/api/calls/{lonely}");
    assert_eq!(s.get(&path, "alice").await.1["call"]["status"], "ringing");
    s.clock.advance_ms(10_000);
    let v = s
        .eventually("missed", || async {
            let v = s.get(&path, "alice").await.1;
            (v["call"]["status"] == "missed").then_some(v)
        })
        .await;
    assert!(v["call"]["ended_at"].is_string());
    assert_eq!(v["call"]["duration_ms"], 0);
    let v = s.get(&format!("/api/calls/{waiting}"), "alice").await.1;
    assert_eq!(v["call"]["status"], "ringing", "{v}");
}

#[tokio::test]
async fn unanswered_calls_end_missed() {
    on_every_backend!(unanswered_calls_are_missed);
}
