//! Response shapes checked against seed 002: `POST /api/calls` without a body, integer recording
//! `duration`, the `/health` `cluster` object, and `ice_servers[].urls` (an array, documented).

use crate::on_every_backend;
use crate::support::{assert_envelope, Srv};
use serde_json::{json, Value};

/// POST with a raw body and content type (None: header absent).
async fn post_raw(s: &Srv, path: &str, ctype: Option<&str>, body: &'static str) -> (u16, Value) {
    let mut rb = s
        .client
        .post(s.url(path))
        .bearer_auth(s.token("alice"))
        .body(body);
    if let Some(c) = ctype {
        rb = rb.header("content-type", c);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("non-JSON ({e}): {text:?}")),
    )
}

async fn call_without_body(s: &Srv) {
    // No body, no content type: every field takes its default.
    let r = s.post_empty("/api/calls", "alice").await;
    assert_eq!(r.0, 201, "{}", r.1);
    assert_eq!(r.1["call"]["type"], "video", "{}", r.1);
    assert_eq!(r.1["call"]["record"], false);
    assert_eq!(r.1["call"]["conversation_id"], Value::Null);
    assert!(r.1["token"].is_string());
    // An empty body declared as JSON is the same.
    let r = post_raw(s, "/api/calls", Some("application/json"), "").await;
    assert_eq!(r.0, 201, "{}", r.1);
    // Invalid JSON still gets the envelope; so does a non-JSON content type with a body.
    assert_envelope(
        &post_raw(s, "/api/calls", Some("application/json"), "{").await,
        400,
        "invalid_request",
    );
    assert_envelope(
        &post_raw(s, "/api/calls", Some("text/plain"), "hello").await,
        415,
        "unsupported_media_type",
    );
    assert_envelope(
        &post_raw(s, "/api/calls", Some("application/json"), "[]").await,
        400,
        "invalid_request",
    );
    // Typing without a body means typing = true.
    let r = s.post_empty("/api/presence/typing/conv-x", "alice").await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["typing"], true);
}

#[tokio::test]
async fn post_calls_without_a_body_uses_defaults() {
    on_every_backend!(call_without_body);
}

async fn recording_stop_duration(s: &Srv) {
    let r = s.post("/api/calls", "alice", json!({})).await;
    assert_eq!(r.0, 201, "{}", r.1);
    let call = r.1["call_id"].as_str().unwrap().to_string();
    // Only an active call can be recorded: alice's media connects (the SFU's lifecycle events).
    let state = &s.handle.state;
    for ev in [
        parlor::sfu::SfuEvent::ParticipantJoined {
            room: call.clone(),
            identity: "alice".into(),
            at_ms: s.now_ms(),
            info: Default::default(),
        },
        parlor::sfu::SfuEvent::MediaConnected {
            room: call.clone(),
            identity: "alice".into(),
            at_ms: s.now_ms(),
        },
    ] {
        state.sfu.emit(ev);
    }
    s.eventually("the call to become active", || async {
        let v = s.get(&format!("/api/calls/{call}"), "alice").await.1;
        (v["call"]["status"] == "active").then_some(())
    })
    .await;
    let r = s
        .post_empty(&format!("/api/calls/{call}/recording/start"), "alice")
        .await;
    assert_eq!(r.0, 201, "{}", r.1);
    let r = s
        .post_empty(&format!("/api/calls/{call}/recording/stop"), "alice")
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let ms = r.1["duration_ms"].as_i64().expect("duration_ms");
    assert!(
        r.1["duration"].is_i64(),
        "duration must be whole seconds: {}",
        r.1
    );
    assert_eq!(r.1["duration"], (ms + 500) / 1000, "{}", r.1);
    let rec = r.1["recording_id"].as_str().unwrap();
    let v = s.get(&format!("/api/recordings/{rec}"), "alice").await.1;
    assert!(v["recording"]["duration"].is_i64(), "{v}");
    assert_eq!(v["recording"]["duration_ms"], ms, "{v}");
}

#[tokio::test]
async fn recording_stop_duration_is_whole_seconds() {
    on_every_backend!(recording_stop_duration);
}

async fn health_cluster_and_ice_urls(s: &Srv) {
    let h: Value = s
        .client
        .get(s.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let node = h["node"].as_str().unwrap();
    assert_eq!(h["cluster"]["nodes"], json!([node]), "{h}");
    assert_eq!(h["cluster"]["connected"], true, "{h}");
    let me = &h["cluster"]["members"][0];
    assert_eq!(me["node"], node, "{h}");
    assert_eq!(me["address"], s.http.as_str(), "{h}");
    assert_eq!(me["status"], "healthy", "{h}");
    assert_eq!(me["self"], true, "{h}");
    assert!(me["rooms"].is_u64() && me["participants"].is_u64(), "{h}");

    // ice_servers[].urls is always an array (the documented choice), on both endpoints.
    let r = s.post_empty("/api/calls", "alice").await;
    let call = r.1["call_id"].as_str().unwrap().to_string();
    for v in [
        s.get(&format!("/api/calls/{call}/ice-servers"), "alice")
            .await
            .1["ice_servers"]
            .clone(),
        s.get("/api/signaling/ice-config", "alice").await.1["config"]["ice_servers"].clone(),
    ] {
        let servers = v.as_array().expect("ice_servers");
        assert!(!servers.is_empty(), "{v}");
        for sv in servers {
            assert!(sv["urls"].as_array().is_some_and(|u| !u.is_empty()), "{sv}");
        }
    }
    let doc: Value = s
        .client
        .get(s.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let urls = &doc["components"]["schemas"]["IceServer"]["properties"]["urls"];
    assert_eq!(urls["type"], "array", "{urls}");
    assert!(urls["description"].as_str().unwrap().contains("array"));
    let cluster = &doc["paths"]["/health"]["get"]["responses"]["200"]["content"]
        ["application/json"]["schema"]["properties"]["cluster"];
    assert_eq!(cluster["type"], "object", "{cluster}");
    assert_eq!(
        doc["paths"]["/api/calls"]["post"]["requestBody"]["required"],
        false
    );
}

#[tokio::test]
async fn health_cluster_and_ice_server_urls_shape() {
    on_every_backend!(health_cluster_and_ice_urls);
}
