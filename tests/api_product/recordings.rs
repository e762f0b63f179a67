//! Recordings: list/details/download/file/delete with authorization. Rows and files are what the
//! recorder writes (inserted here through the real store and filesystem).

use crate::on_every_backend;
use crate::support::{assert_envelope, Srv};
use parlor::store::RecordingRecord;
use serde_json::json;

async fn recordings(s: &Srv) {
    let r = s
        .post(
            "/api/calls",
            "alice",
            json!({"call_type": "audio", "conversation_id": "conv-r"}),
        )
        .await;
    let call = r.1["call_id"].as_str().unwrap().to_string();
    s.post(
        &format!("/api/calls/{call}/invite"),
        "alice",
        json!({"user_id": "bob"}),
    )
    .await;
    let state = &s.handle.state;
    let dir = state.config.storage.data_dir.join("recordings");
    std::fs::create_dir_all(dir.join(&call)).unwrap();
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let rel = format!("{call}/rec_done.webm");
    std::fs::write(dir.join(&rel), &bytes).unwrap();
    let t0 = s.now_ms();
    let done = RecordingRecord {
        id: "rec_done".into(),
        call_id: call.clone(),
        conversation_id: Some("conv-r".into()),
        call_type: "audio".into(),
        started_by: "bob".into(),
        started_at: t0,
        ended_at: None,
        duration_ms: None,
        status: "recording".into(),
        file_path: None,
        size_bytes: None,
        node: String::new(),
    };
    state.store.insert_recording(&done).await.unwrap();
    state
        .store
        .finish_recording(
            "rec_done",
            "completed",
            3_600_000,
            Some(&rel),
            Some(bytes.len() as i64),
        )
        .await
        .unwrap();
    let live = RecordingRecord {
        id: "rec_live".into(),
        started_at: t0 + 1,
        ..done.clone()
    };
    state.store.insert_recording(&live).await.unwrap();
    // A recording of a call alice and bob are not in.
    let other = s.post("/api/calls", "carol", json!({})).await.1["call_id"]
        .as_str()
        .unwrap()
        .to_string();
    state
        .store
        .insert_recording(&RecordingRecord {
            id: "rec_carol".into(),
            call_id: other,
            conversation_id: None,
            started_by: "carol".into(),
            status: "completed".into(),
            file_path: Some(rel.clone()),
            ..done.clone()
        })
        .await
        .unwrap();

    // Recording status of the call: rec_live is in progress.
    let r = s
        .get(&format!("/api/calls/{call}/recording/status"), "bob")
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["recording"], true);
    assert_eq!(r.1["recording_id"], "rec_live");
    assert_eq!(r.1["started_by"], "bob");
    assert_eq!(r.1["started_at"], parlor::timefmt::rfc3339_ms(t0 + 1));
    assert_envelope(
        &s.get(&format!("/api/calls/{call}/recording/status"), "carol")
            .await,
        403,
        "not_authorized",
    );
    assert_envelope(
        &s.get("/api/calls/call_nope/recording/status", "bob").await,
        404,
        "call_not_found",
    );

    // Lists: members of the call see its recordings, newest first; carol sees only hers.
    let v = s.get("/api/recordings", "alice").await.1;
    assert_eq!(v["count"], 2, "{v}");
    assert_eq!(v["recordings"][0]["id"], "rec_live");
    assert_eq!(v["recordings"][1]["id"], "rec_done");
    let d = &v["recordings"][1];
    assert_eq!(d["call_id"], call.as_str());
    assert_eq!(d["conversation_id"], "conv-r");
    assert_eq!(d["call_type"], "audio");
    assert_eq!(d["started_by"], "bob");
    assert_eq!(d["status"], "completed");
    assert_eq!(d["duration"], 3600);
    assert_eq!(d["duration_ms"], 3_600_000);
    assert_eq!(d["size_bytes"], 100_000);
    assert_eq!(
        s.get("/api/recordings?limit=1&offset=1", "bob").await.1["recordings"][0]["id"],
        "rec_done"
    );
    assert_eq!(
        s.get("/api/recordings?conversation_id=nope", "alice")
            .await
            .1["count"],
        0
    );
    let v = s.get("/api/recordings", "carol").await.1;
    assert_eq!(v["count"], 1);
    assert_eq!(v["recordings"][0]["id"], "rec_carol");
    assert_eq!(s.get("/api/recordings", "mallory").await.1["count"], 0);

    // Details and authorization.
    let r = s.get("/api/recordings/rec_done", "alice").await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["recording"]["has_file"], true);
    for u in ["carol", "mallory"] {
        assert_envelope(
            &s.get("/api/recordings/rec_done", u).await,
            403,
            "not_authorized",
        );
        assert_envelope(
            &s.get("/api/recordings/rec_done/download", u).await,
            403,
            "not_authorized",
        );
        assert_envelope(
            &s.delete("/api/recordings/rec_done", u).await,
            403,
            "not_authorized",
        );
    }
    assert_envelope(
        &s.get("/api/recordings/rec_carol", "alice").await,
        403,
        "not_authorized",
    );
    assert_envelope(
        &s.get("/api/recordings/rec_nope", "alice").await,
        404,
        "recording_not_found",
    );

    // Download: a URL with an expiring token that serves the file without a Bearer header.
    assert_envelope(
        &s.get("/api/recordings/rec_live/download", "alice").await,
        409,
        "recording_not_ready",
    );
    let r = s.get("/api/recordings/rec_done/download", "alice").await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["expires_in"], 3600);
    let url = r.1["url"].as_str().unwrap().to_string();
    assert!(url.starts_with(&format!("{}/api/recordings/rec_done/file?token=", s.http)));
    let resp = s.client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "audio/webm");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), bytes.as_slice());
    // Without / with a bad token / a token for another recording / expired.
    let base = s.url("/api/recordings/rec_done/file");
    let r = s.client.get(&base).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = s
        .client
        .get(format!("{base}?token=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let carol_url = s.get("/api/recordings/rec_carol/download", "carol").await.1["url"]
        .as_str()
        .unwrap()
        .to_string();
    let carol_token = carol_url.split("token=").nth(1).unwrap();
    let r = s
        .client
        .get(format!("{base}?token={carol_token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "not_authorized");
    s.clock.advance_ms(3_700_000);
    let r = s.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // Delete: bob started it (alice created the call: she could too); the file goes with it.
    assert_envelope(
        &s.delete("/api/recordings/rec_carol", "bob").await,
        403,
        "not_authorized",
    );
    let r = s.delete("/api/recordings/rec_done", "bob").await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert!(!dir.join(&rel).exists());
    assert_envelope(
        &s.get("/api/recordings/rec_done", "bob").await,
        404,
        "recording_not_found",
    );
    assert_envelope(
        &s.delete("/api/recordings/rec_done", "bob").await,
        404,
        "recording_not_found",
    );
    let r = s.delete("/api/recordings/rec_live", "alice").await;
    assert_eq!(r.0, 200, "{}", r.1);
    let r = s
        .get(&format!("/api/calls/{call}/recording/status"), "alice")
        .await;
    assert_eq!(r.1, json!({"success": true, "recording": false}));
    assert_eq!(s.get("/api/recordings", "alice").await.1["count"], 0);
}

#[tokio::test]
async fn recordings_authorization_download_and_delete() {
    on_every_backend!(recordings);
}

/// Issue 14 item 10: recording a call nobody has joined is refused (409 `call_not_active`), and the
/// recorder (a hidden participant) never drives the call's lifecycle: a ringing call whose room only
/// a recorder opened and left is still ringing, and its invitee can join.
async fn recorder_is_not_a_participant(s: &Srv) {
    let create = |who: &'static str| async move {
        s.post("/api/calls", who, json!({"call_type": "audio"}))
            .await
            .1["call_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let call = create("alice").await;
    s.post(
        &format!("/api/calls/{call}/invite"),
        "alice",
        json!({"user_id": "bob"}),
    )
    .await;
    let r = s
        .post_empty(&format!("/api/calls/{call}/recording/start"), "alice")
        .await;
    assert_envelope(&r, 409, "call_not_active");
    assert!(r.1["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ringing"));
    assert_envelope(
        &s.post_empty(&format!("/api/calls/{call}/recording/stop"), "alice")
            .await,
        404,
        "recording_not_found",
    );

    // The recorder itself (started below the API check) opens the ringing call's room and leaves.
    let state = &s.handle.state;
    let mut events = state.sfu.subscribe_events();
    let dir = state.config.storage.data_dir.join("recordings");
    std::fs::create_dir_all(&dir).unwrap();
    state
        .store
        .insert_recording(&RecordingRecord {
            id: "rec_ring".into(),
            call_id: call.clone(),
            conversation_id: None,
            call_type: "audio".into(),
            started_by: "alice".into(),
            started_at: s.now_ms(),
            ended_at: None,
            duration_ms: None,
            status: "recording".into(),
            file_path: Some("rec_ring.webm".into()),
            size_bytes: None,
            node: String::new(),
        })
        .await
        .unwrap();
    state.recorders.start(&call, "rec_ring").await.unwrap();
    state.recorders.stop(&call).await.unwrap();
    // Its room closes (rooms.empty_timeout_secs = 1 in tests).
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            if let Ok(parlor::sfu::SfuEvent::RoomClosed { room, .. }) = events.recv().await {
                if room == call {
                    break;
                }
            }
        }
    })
    .await
    .expect("the recorder's room never closed");
    // Barrier: the event consumer handles events in order, so once an event emitted after the
    // RoomClosed is visible, the RoomClosed has been handled.
    let other = create("carol").await;
    state.sfu.emit(parlor::sfu::SfuEvent::ParticipantJoined {
        room: other.clone(),
        identity: "carol".into(),
        at_ms: s.now_ms(),
        info: Default::default(),
    });
    s.eventually("the barrier event", || async {
        let m = state.store.call_member(&other, "carol").await.unwrap();
        m.and_then(|m| m.joined_at)
    })
    .await;
    let v = s.get(&format!("/api/calls/{call}"), "alice").await.1;
    assert_eq!(v["call"]["status"], "ringing", "{v}");
    let r = s
        .post_empty(&format!("/api/calls/{call}/join"), "bob")
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
}

#[tokio::test]
async fn recording_needs_an_active_call_and_the_recorder_is_no_participant() {
    on_every_backend!(recorder_is_not_a_participant);
}

/// A finished recording row `id` of `call` by `user` whose mixed file is `<id>.webm`.
async fn finished_row(s: &Srv, call: &str, id: &str, user: &str) {
    let store = &s.handle.state.store;
    let rec = RecordingRecord {
        id: id.into(),
        call_id: call.into(),
        conversation_id: None,
        call_type: "audio".into(),
        started_by: user.into(),
        started_at: s.now_ms(),
        ended_at: None,
        duration_ms: None,
        status: "recording".into(),
        file_path: None,
        size_bytes: None,
        node: String::new(),
    };
    store.insert_recording(&rec).await.unwrap();
    let file = format!("{id}.webm");
    store
        .finish_recording(id, "completed", 1000, Some(&file), Some(4))
        .await
        .unwrap();
}

/// Issue 14 item 8: a delete removes the mixed file, every per-participant file and the manifest;
/// a delete a crash interrupted (row marked `deleting`, some files left) is finished at start-up.
#[tokio::test]
async fn delete_removes_every_file_and_a_crashed_delete_finishes_at_startup() {
    for db in crate::common::all_dbs().await {
        eprintln!("== backend {}", db.backend());
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("recordings");
        std::fs::create_dir_all(&dir).unwrap();
        let at = |d: &tempfile::TempDir| {
            let p = d.path().to_path_buf();
            move |c: &mut parlor::config::Config| c.storage.data_dir = p
        };
        let s = Srv::start_with(&db, at(&data)).await;
        let call = s.post("/api/calls", "alice", json!({})).await.1["call_id"]
            .as_str()
            .unwrap()
            .to_string();
        let files = |id: &str| {
            [
                format!("{id}.webm"),
                format!("{id}.p0.webm"),
                format!("{id}.p1.webm"),
                format!("{id}.json"),
            ]
        };
        for id in ["rec_x", "rec_y", "rec_x1"] {
            finished_row(&s, &call, id, "alice").await;
            for f in files(id) {
                std::fs::write(dir.join(f), b"data").unwrap();
            }
        }
        let r = s.delete("/api/recordings/rec_x", "alice").await;
        assert_eq!(r.0, 200, "{}", r.1);
        for f in files("rec_x") {
            assert!(!dir.join(&f).exists(), "{f} left behind by the delete");
        }
        // Another recording's files (even with a similar name) stay.
        for f in files("rec_x1") {
            assert!(dir.join(&f).exists(), "{f} deleted with rec_x");
        }

        // A delete cut short after its first step and one file: the API already treats it as gone.
        let store = &s.handle.state.store;
        assert!(store.mark_recording_deleting("rec_y").await.unwrap());
        std::fs::remove_file(dir.join("rec_y.webm")).unwrap();
        assert_envelope(
            &s.get("/api/recordings/rec_y", "alice").await,
            404,
            "recording_not_found",
        );
        let listed = s.get("/api/recordings", "alice").await.1;
        let ids: Vec<&str> = listed["recordings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["rec_x1"], "{listed}");
        s.stop().await;
        assert!(dir.join("rec_y.p0.webm").exists());

        // Restarted on the same database and data dir: the delete is finished.
        let s = Srv::start_with(&db, at(&data)).await;
        for f in files("rec_y") {
            assert!(!dir.join(&f).exists(), "{f} survived the restart");
        }
        assert!(matches!(
            s.handle.state.store.get_recording("rec_y").await,
            Err(parlor::store::StoreError::NotFound)
        ));
        for f in files("rec_x1") {
            assert!(dir.join(&f).exists(), "{f} deleted at start-up");
        }
        s.stop().await;
        db.drop_db().await;
    }
}
