//! Devices: register / list / token / heartbeat / unregister, the 10-device limit, isolation.

use crate::on_every_backend;
use crate::support::{assert_envelope, Srv};
use serde_json::json;

async fn devices(s: &Srv) {
    let r = s
        .post(
            "/api/devices",
            "alice",
            json!({"device_id": "device-abc123", "platform": "ios", "token": "apns-token-here",
                   "name": "iPhone 15 Pro", "app_version": "1.0.0"}),
        )
        .await;
    assert_eq!(r.0, 201, "{}", r.1);
    let d = &r.1["device"];
    assert_eq!(r.1["success"], true);
    assert_eq!(d["id"], "device-abc123");
    assert_eq!(d["platform"], "ios");
    assert_eq!(d["name"], "iPhone 15 Pro");
    assert_eq!(d["push_enabled"], true);
    assert!(d["registered_at"].as_str().unwrap().ends_with('Z'));
    assert!(d.get("token").is_none(), "push token must not be echoed");

    // Validation.
    for (body, code) in [
        (
            json!({"device_id": "d", "platform": "toaster"}),
            "validation_error",
        ),
        (
            json!({"device_id": "", "platform": "ios"}),
            "validation_error",
        ),
        (json!({"platform": "ios"}), "invalid_request"),
        (
            json!({"device_id": "d", "platform": "ios", "token": 5}),
            "invalid_request",
        ),
        (
            json!({"device_id": "d", "platform": "ios", "name": "n".repeat(129)}),
            "validation_error",
        ),
    ] {
        assert_envelope(&s.post("/api/devices", "alice", body).await, 400, code);
    }

    // Re-registering the same device updates it (200) and does not count twice.
    let r = s
        .post(
            "/api/devices",
            "alice",
            json!({"device_id": "device-abc123", "platform": "ios", "name": "Renamed"}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["device"]["name"], "Renamed");
    assert_eq!(r.1["device"]["registered_at"], d["registered_at"]);

    // Up to 10 devices; the 11th is device_limit_exceeded.
    for i in 2..=10 {
        let r = s
            .post(
                "/api/devices",
                "alice",
                json!({"device_id": format!("dev-{i}"), "platform": "web"}),
            )
            .await;
        assert_eq!(r.0, 201, "device {i}: {}", r.1);
    }
    let r = s
        .post(
            "/api/devices",
            "alice",
            json!({"device_id": "dev-11", "platform": "web"}),
        )
        .await;
    assert_envelope(&r, 409, "device_limit_exceeded");
    // Re-registering an existing one still works at the limit.
    let r = s
        .post(
            "/api/devices",
            "alice",
            json!({"device_id": "dev-5", "platform": "android"}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    // Another user's limit is separate.
    let r = s
        .post(
            "/api/devices",
            "bob",
            json!({"device_id": "dev-11", "platform": "web"}),
        )
        .await;
    assert_eq!(r.0, 201, "{}", r.1);

    let v = s.get("/api/devices", "alice").await.1;
    assert_eq!(v["count"], 10);
    assert_eq!(v["max_devices"], 10);
    assert_eq!(v["devices"][0]["id"], "device-abc123");
    let v = s.get("/api/devices", "bob").await.1;
    assert_eq!(v["count"], 1);

    // Token update and heartbeat advance last_active.
    s.clock.advance_ms(5_000);
    let r = s
        .put(
            "/api/devices/dev-2/token",
            "alice",
            json!({"token": "new-token"}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["device"]["push_enabled"], true);
    let last1 = r.1["device"]["last_active"].as_str().unwrap().to_string();
    assert!(last1.as_str() > r.1["device"]["registered_at"].as_str().unwrap());
    assert_envelope(
        &s.put("/api/devices/dev-2/token", "alice", json!({"token": ""}))
            .await,
        400,
        "validation_error",
    );
    assert_envelope(
        &s.put("/api/devices/dev-2/token", "alice", json!({})).await,
        400,
        "invalid_request",
    );
    s.clock.advance_ms(5_000);
    let r = s.post_empty("/api/devices/dev-2/heartbeat", "alice").await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["device_id"], "dev-2");
    assert!(r.1["last_active"].as_str().unwrap() > last1.as_str());

    // Isolation: bob cannot touch alice's devices (they are not his: 404).
    assert_envelope(
        &s.put("/api/devices/dev-2/token", "bob", json!({"token": "x"}))
            .await,
        404,
        "device_not_found",
    );
    assert_envelope(
        &s.post_empty("/api/devices/dev-2/heartbeat", "bob").await,
        404,
        "device_not_found",
    );
    assert_envelope(
        &s.delete("/api/devices/dev-2", "bob").await,
        404,
        "device_not_found",
    );
    // bob's "dev-11" is not alice's.
    assert_envelope(
        &s.delete("/api/devices/dev-11", "alice").await,
        404,
        "device_not_found",
    );

    // Unregister frees a slot.
    let r = s.delete("/api/devices/dev-2", "alice").await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_envelope(
        &s.delete("/api/devices/dev-2", "alice").await,
        404,
        "device_not_found",
    );
    assert_eq!(s.get("/api/devices", "alice").await.1["count"], 9);
    let r = s
        .post(
            "/api/devices",
            "alice",
            json!({"device_id": "dev-11", "platform": "web"}),
        )
        .await;
    assert_eq!(r.0, 201, "{}", r.1);
    let r = s
        .req(reqwest::Method::GET, "/api/devices", None, None)
        .await;
    assert_envelope(&r, 401, "unauthorized");

    // Twenty registrations at once cannot get past the limit together.
    let posts = (0..20).map(|i| {
        s.post(
            "/api/devices",
            "carol",
            json!({"device_id": format!("race-{i}"), "platform": "web"}),
        )
    });
    let results = futures_util::future::join_all(posts).await;
    let created = results.iter().filter(|r| r.0 == 201).count();
    let refused = results
        .iter()
        .filter(|r| r.0 == 409 && r.1["error"]["code"] == "device_limit_exceeded")
        .count();
    assert_eq!((created, refused), (10, 10), "{results:?}");
    assert_eq!(s.get("/api/devices", "carol").await.1["count"], 10);
}

#[tokio::test]
async fn devices_limit_and_isolation() {
    on_every_backend!(devices);
}
