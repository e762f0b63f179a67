//! Huddles: create/get/invite/join/leave, huddle_full, authorization, SFU-driven participants.

use crate::support::{assert_envelope, Srv};
use parlor::clock::Clock;
use parlor::sfu::SfuEvent;
use serde_json::json;

async fn huddles(s: &Srv) {
    let r = s
        .post(
            "/api/huddles",
            "alice",
            json!({"name": "Quick Sync", "workspace_id": "ws-1", "channel_id": "ch-1"}),
        )
        .await;
    assert_eq!(r.0, 201, "{}", r.1);
    let h = &r.1["huddle"];
    let id = h["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("huddle_"));
    assert_eq!(h["name"], "Quick Sync");
    assert_eq!(h["created_by"], "alice");
    assert_eq!(h["participants"], json!([]));
    assert_eq!(h["status"], "idle");
    assert_eq!(h["max_participants"], 3);
    assert!(h["created_at"].as_str().unwrap().ends_with('Z'));

    // Validation.
    assert_envelope(
        &s.post("/api/huddles", "alice", json!({"name": "  "})).await,
        400,
        "validation_error",
    );
    assert_envelope(
        &s.post("/api/huddles", "alice", json!({"workspace_id": "w"}))
            .await,
        400,
        "invalid_request",
    );
    assert_envelope(
        &s.post("/api/huddles", "alice", json!({"name": "x".repeat(101)}))
            .await,
        400,
        "validation_error",
    );

    // Authorization: not a member.
    let base = format!("/api/huddles/{id}");
    assert_envelope(&s.get(&base, "bob").await, 403, "not_authorized");
    assert_envelope(
        &s.post_empty(&format!("{base}/join"), "bob").await,
        403,
        "not_authorized",
    );
    assert_envelope(
        &s.post_empty(&format!("{base}/leave"), "bob").await,
        403,
        "not_authorized",
    );
    assert_envelope(
        &s.post(
            &format!("{base}/invite"),
            "bob",
            json!({"user_ids": ["bob"]}),
        )
        .await,
        403,
        "not_authorized",
    );
    assert_envelope(
        &s.get("/api/huddles/huddle_nope", "alice").await,
        404,
        "huddle_not_found",
    );

    // Invite: validation, then bob, carol, dave (dave has a device -> notification record).
    assert_envelope(
        &s.post(&format!("{base}/invite"), "alice", json!({"user_ids": []}))
            .await,
        400,
        "validation_error",
    );
    assert_envelope(
        &s.post(
            &format!("{base}/invite"),
            "alice",
            json!({"user_ids": "bob"}),
        )
        .await,
        400,
        "invalid_request",
    );
    s.post(
        "/api/devices",
        "dave",
        json!({"device_id": "d1", "platform": "android", "token": "fcm"}),
    )
    .await;
    let r = s
        .post(
            &format!("{base}/invite"),
            "alice",
            json!({"user_ids": ["bob", "carol", "dave", "bob"]}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["invited_users"], json!(["bob", "carol", "dave"]));
    // Re-inviting adds nobody.
    let r = s
        .post(
            &format!("{base}/invite"),
            "bob",
            json!({"user_ids": ["carol"]}),
        )
        .await;
    assert_eq!(r.1["invited_users"], json!([]));
    let n = s.get("/api/notifications", "dave").await.1;
    assert_eq!(n["count"], 1, "{n}");
    assert_eq!(n["notifications"][0]["kind"], "huddle_invite");
    assert_eq!(n["notifications"][0]["payload"]["huddle_id"], id.as_str());

    // Join: credentials for the huddle room; max size 3 -> the 4th is huddle_full.
    for u in ["alice", "bob", "carol"] {
        let r = s.post_empty(&format!("{base}/join"), u).await;
        assert_eq!(r.0, 200, "{u}: {}", r.1);
        assert_eq!(r.1["url"], s.ws.as_str());
        let claims = parlor_signaling::AccessToken::decode(
            r.1["token"].as_str().unwrap(),
            |k| (k == crate::common::KEY).then_some(crate::common::SECRET),
            s.clock.unix_secs(),
        )
        .unwrap();
        assert_eq!(claims.sub, u);
        assert_eq!(claims.video.unwrap().room.as_deref(), Some(id.as_str()));
    }
    // Joining again is idempotent.
    assert_eq!(s.post_empty(&format!("{base}/join"), "alice").await.0, 200);
    assert_envelope(
        &s.post_empty(&format!("{base}/join"), "dave").await,
        409,
        "huddle_full",
    );
    let v = s.get(&base, "dave").await.1;
    assert_eq!(v["huddle"]["status"], "active");
    let ps: Vec<&str> = v["huddle"]["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(ps, ["alice", "bob", "carol"]);
    let h: serde_json::Value = s
        .client
        .get(s.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["stats"]["active_huddles"], 1, "{h}");

    // Leave frees a slot.
    let r = s.post_empty(&format!("{base}/leave"), "bob").await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["left"], true);
    assert_eq!(
        s.post_empty(&format!("{base}/leave"), "bob").await.1["left"],
        false
    );
    assert_eq!(s.post_empty(&format!("{base}/join"), "dave").await.0, 200);
    assert_envelope(
        &s.post_empty(&format!("{base}/join"), "bob").await,
        409,
        "huddle_full",
    );
    // Everyone leaves: ended.
    for u in ["alice", "carol", "dave"] {
        assert_eq!(s.post_empty(&format!("{base}/leave"), u).await.0, 200);
    }
    let v = s.get(&base, "alice").await.1;
    assert_eq!(v["huddle"]["status"], "ended");
    assert!(v["huddle"]["ended_at"].is_string());

    // SFU events drive participants too: joining the room (with a token) makes you a participant,
    // leaving it removes you; SFU huddle participants count as online in the huddle's workspace.
    let sfu = &s.handle.state.sfu;
    let t = s.now_ms();
    sfu.emit(SfuEvent::ParticipantJoined {
        room: id.clone(),
        identity: "erin".into(),
        at_ms: t,
        info: Default::default(),
    });
    s.eventually("erin in huddle", || async {
        let v = s.get(&base, "alice").await.1;
        (v["huddle"]["participants"][0]["user_id"] == "erin").then_some(())
    })
    .await;
    let online = s
        .get("/api/presence/online?workspace_id=ws-1", "alice")
        .await
        .1;
    assert_eq!(
        online["users"],
        json!([{"user_id": "erin", "status": "online"}]),
        "{online}"
    );
    assert_eq!(
        s.get("/api/presence/online?workspace_id=ws-2", "alice")
            .await
            .1["total"],
        0
    );
    sfu.emit(SfuEvent::ParticipantLeft {
        room: id.clone(),
        identity: "erin".into(),
        at_ms: t + 10,
        info: Default::default(),
    });
    s.eventually("erin left", || async {
        let v = s.get(&base, "alice").await.1;
        (v["huddle"]["participants"] == json!([])).then_some(())
    })
    .await;
    assert_eq!(s.get(&base, "alice").await.1["huddle"]["status"], "ended");
}

#[tokio::test]
async fn huddles_join_leave_full_and_authorization() {
    for db in crate::common::all_dbs().await {
        let s = Srv::start_with(&db, |c| c.room.max_huddle_size = 3).await;
        huddles(&s).await;
        s.stop().await;
        db.drop_db().await;
    }
}
