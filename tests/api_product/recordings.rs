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
