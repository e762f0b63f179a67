//! REST shapes as seed 000; list filters, pagination and summaries checked against the rows the
//! test made; history filters; visibility (own sessions, admins see all).

use crate::on_every_backend;
use crate::support::{assert_error, assert_ok, Srv};
use parlor::realtime::config::ModelConfig;
use serde_json::{json, Value};

pub fn two_models(c: &mut parlor::config::Config) {
    c.realtime.models.push(ModelConfig {
        id: "parlor-local-b".into(),
        name: "Second local".into(),
        provider: "local".into(),
        max_tokens: 100,
        pricing_input: 0.5,
        pricing_output: 1.25,
        ..ModelConfig::default()
    });
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

fn has(v: &Value, fields: &[&str]) {
    for f in fields {
        assert!(v.get(f).is_some(), "missing {f} in {v}");
    }
}

async fn shapes(s: &Srv) {
    let body = json!({
        "model": "parlor-local", "temperature": 0.5, "maxTokens": 200, "stream": false,
        "systemPrompt": "You are helpful.",
        "metadata": {"appId": "app_123", "version": "1.0.0", "platform": "react-native"},
    });
    let c = assert_ok(&s.post("/api/realtime/sessions", "alice", body).await, 201);
    has(
        &c,
        &[
            "id",
            "status",
            "createdAt",
            "connectionInfo",
            "sessionData",
            "usage",
        ],
    );
    assert!(c["id"].as_str().unwrap().starts_with("session_"));
    assert_eq!(c["status"], "active");
    let ci = &c["connectionInfo"];
    assert_eq!(
        keys(ci),
        [
            "authToken",
            "expiresAt",
            "heartbeatInterval",
            "reconnectAttempts",
            "websocketUrl"
        ]
    );
    assert_eq!(ci["heartbeatInterval"], 30_000);
    assert_eq!(ci["reconnectAttempts"], 3);
    assert_eq!(
        ci["expiresAt"],
        parlor::timefmt::rfc3339_ms(s.now_ms() + 3_600_000)
    );
    assert_eq!(
        c["sessionData"],
        json!({"model": "parlor-local", "temperature": 0.5, "maxTokens": 200, "stream": false,
            "systemPrompt": "You are helpful.",
            "metadata": {"appId": "app_123", "version": "1.0.0", "platform": "react-native"}})
    );
    assert_eq!(
        c["usage"],
        json!({"tokenCount": 0, "messageCount": 0, "duration": 0})
    );
    let id = c["id"].as_str().unwrap();

    let g = assert_ok(
        &s.get(&format!("/api/realtime/sessions/{id}"), "alice")
            .await,
        200,
    );
    has(
        &g,
        &[
            "id",
            "userId",
            "model",
            "status",
            "createdAt",
            "lastActivity",
            "duration",
            "messageCount",
            "tokenUsage",
            "settings",
            "connectionInfo",
            "metadata",
            "performance",
        ],
    );
    assert_eq!(g["userId"], "alice");
    assert_eq!(
        g["settings"],
        json!({"temperature": 0.5, "maxTokens": 200, "stream": false, "systemPrompt": "You are helpful."})
    );
    assert_eq!(
        g["tokenUsage"],
        json!({"prompt": 0, "completion": 0, "total": 0})
    );
    assert_eq!(g["metadata"]["appId"], "app_123");
    assert_eq!(g["performance"]["totalRequests"], 0);
    assert!(g["performance"]["averageResponseTime"].is_null());
    assert_eq!(g["createdAt"], c["createdAt"]);

    let l = assert_ok(&s.get("/api/realtime/sessions", "alice").await, 200);
    assert_eq!(keys(&l), ["pagination", "sessions", "summary"]);
    let item = &l["sessions"][0];
    assert_eq!(
        keys(item),
        [
            "createdAt",
            "duration",
            "id",
            "lastActivity",
            "messageCount",
            "metadata",
            "model",
            "settings",
            "status",
            "tokenUsage",
            "userId"
        ]
    );
    assert_eq!(
        item["settings"],
        json!({"temperature": 0.5, "maxTokens": 200, "stream": false})
    );
    assert_eq!(
        l["pagination"],
        json!({"page": 1, "limit": 20, "total": 1, "pages": 1})
    );
    has(
        &l["summary"],
        &[
            "totalSessions",
            "activeSessions",
            "idleSessions",
            "completedSessions",
            "totalUsers",
        ],
    );

    let h = assert_ok(
        &s.get(&format!("/api/realtime/sessions/{id}/history"), "alice")
            .await,
        200,
    );
    assert_eq!(keys(&h), ["messages", "pagination", "sessionId", "summary"]);
    assert_eq!(h["summary"]["totalMessages"], 0);
    has(
        &h["summary"],
        &[
            "totalMessages",
            "userMessages",
            "assistantMessages",
            "totalTokens",
            "averageResponseTime",
            "sessionDuration",
        ],
    );

    let r = assert_ok(
        &s.post_empty(&format!("/api/realtime/sessions/{id}/resume"), "alice")
            .await,
        200,
    );
    has(
        &r,
        &[
            "id",
            "status",
            "resumedAt",
            "connectionInfo",
            "sessionData",
            "usage",
        ],
    );
    has(
        &r["sessionData"],
        &["model", "temperature", "maxTokens", "messageHistory"],
    );

    let m = assert_ok(&s.get("/api/realtime/models", "alice").await, 200);
    assert_eq!(m["totalModels"], 2);
    assert_eq!(m["availableModels"], 1);
    let local = &m["models"][0];
    assert_eq!(
        keys(local),
        [
            "capabilities",
            "description",
            "id",
            "limits",
            "name",
            "pricing",
            "provider",
            "status",
            "statusReason",
            "type",
            "updatedAt"
        ]
    );
    assert_eq!(local["id"], "parlor-local");
    assert_eq!(local["status"], "available");
    assert!(local["statusReason"].is_null());
    assert_eq!(local["limits"]["maxTokens"], 256);
    assert_eq!(local["updatedAt"], m["lastUpdated"]);
    let gpt = &m["models"][1];
    assert_eq!(gpt["status"], "unavailable");
    assert!(
        gpt["statusReason"].as_str().is_some_and(|r| !r.is_empty()),
        "{gpt}"
    );
    assert_eq!(gpt["pricing"]["input"], 0.032);
    assert_eq!(gpt["pricing"]["output"], 0.064);
    assert_eq!(gpt["pricing"]["currency"], "USD");

    let st = assert_ok(&s.get("/api/realtime/stream", "alice").await, 200);
    has(
        &st,
        &[
            "status",
            "configuration",
            "performance",
            "endpoints",
            "features",
            "lastUpdated",
        ],
    );
    assert_eq!(st["status"], "active");
    assert_eq!(st["configuration"]["maxConnections"], 1000);
    assert_eq!(st["configuration"]["heartbeatInterval"], 30_000);
    assert_eq!(st["endpoints"]["websocket"], format!("{}/realtime", s.ws));
    has(
        &st["performance"],
        &[
            "activeConnections",
            "totalConnections",
            "messagesPerSecond",
            "averageLatency",
            "uptime",
        ],
    );
    // Measured: the clock has not moved since start.
    assert_eq!(st["performance"]["uptimeSeconds"], 0);
    s.clock.advance_ms(12 * 3600 * 1000);
    let st = assert_ok(&s.get("/api/realtime/stream", "alice").await, 200);
    assert_eq!(st["performance"]["uptime"], 50.0);

    let stats = assert_ok(&s.get("/api/realtime/stats", "alice").await, 200);
    has(
        &stats,
        &[
            "sessions",
            "usage",
            "performance",
            "models",
            "timeRange",
            "lastUpdated",
        ],
    );
    has(
        &stats["sessions"],
        &[
            "total",
            "active",
            "idle",
            "completed",
            "averageDuration",
            "peakConcurrent",
        ],
    );
    has(
        &stats["usage"],
        &[
            "totalMessages",
            "totalTokens",
            "averageTokensPerMessage",
            "messagesPerSecond",
            "tokensPerSecond",
        ],
    );
    has(
        &stats["performance"]["latency"],
        &["min", "max", "average", "p95", "p99"],
    );
    assert_eq!(stats["timeRange"]["duration"], "24 hours");
    assert_eq!(stats["sessions"]["total"], 1);
    assert_eq!(
        stats["sessions"]["idle"], 1,
        "12 h without activity: {stats}"
    );
}

#[tokio::test]
async fn endpoints_answer_in_the_seed_shapes() {
    on_every_backend!(|_| {}, shapes);
}

/// Ids of `data.sessions`.
fn ids(l: &Value) -> Vec<String> {
    l["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect()
}

async fn filters(s: &Srv) {
    let store = &s.handle.state.store;
    // alice: a0..a4 (a3, a4 on model b), one second apart; bob: b0, b1.
    let mut a = Vec::new();
    for i in 0..5 {
        let model = if i >= 3 {
            "parlor-local-b"
        } else {
            "parlor-local"
        };
        a.push(
            s.create("alice", model).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        s.clock.advance_ms(1000);
    }
    let mut b = Vec::new();
    for _ in 0..2 {
        b.push(
            s.create("bob", "parlor-local").await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        s.clock.advance_ms(1000);
    }
    // Everything idle, then a0, a3 and b0 active again; a1 paused, a2 deleted.
    s.clock.advance_ms(301_000);
    for id in [&a[3], &a[0], &b[0]] {
        store
            .set_rt_status(id, "active", s.now_ms(), true, None)
            .await
            .unwrap();
        s.clock.advance_ms(1000);
    }
    store.pause_rt_session(&a[1]).await.unwrap();
    assert_ok(
        &s.delete(&format!("/api/realtime/sessions/{}", a[2]), "alice")
            .await,
        200,
    );

    let l = assert_ok(&s.get("/api/realtime/sessions", "alice").await, 200);
    // Default: newest first, completed left out.
    assert_eq!(
        ids(&l).iter().collect::<Vec<_>>(),
        [&a[4], &a[3], &a[1], &a[0]]
    );
    assert_eq!(l["pagination"]["total"], 4);
    assert_eq!(
        l["summary"],
        json!({"totalSessions": 5, "activeSessions": 2, "idleSessions": 1, "pausedSessions": 1,
            "completedSessions": 1, "failedSessions": 0, "totalUsers": 1})
    );
    let status = |l: &Value, i: usize| l["sessions"][i]["status"].as_str().unwrap().to_string();
    assert_eq!(
        [status(&l, 0), status(&l, 1), status(&l, 2), status(&l, 3)],
        ["idle", "active", "paused", "active"]
    );
    for (q, want) in [
        ("status=active", vec![&a[3], &a[0]]),
        ("status=idle", vec![&a[4]]),
        ("status=paused", vec![&a[1]]),
        ("status=completed", vec![&a[2]]),
        ("status=failed", vec![]),
        ("model=parlor-local-b", vec![&a[4], &a[3]]),
        ("model=parlor-local&sortOrder=asc", vec![&a[0], &a[1]]),
        (
            "sortBy=lastActivity&sortOrder=desc&status=active",
            vec![&a[0], &a[3]],
        ),
        ("userId=bob", vec![]),
        ("limit=2&page=2", vec![&a[1], &a[0]]),
        ("limit=3&page=2", vec![&a[0]]),
        ("limit=3&page=3", vec![]),
    ] {
        let l = assert_ok(
            &s.get(&format!("/api/realtime/sessions?{q}"), "alice").await,
            200,
        );
        assert_eq!(ids(&l).iter().collect::<Vec<_>>(), want, "{q}: {l}");
    }
    let l = assert_ok(
        &s.get("/api/realtime/sessions?limit=3&page=2", "alice")
            .await,
        200,
    );
    assert_eq!(
        l["pagination"],
        json!({"page": 2, "limit": 3, "total": 4, "pages": 2})
    );
    let l = assert_ok(
        &s.get("/api/realtime/sessions?model=parlor-local-b", "alice")
            .await,
        200,
    );
    assert_eq!(
        l["summary"]["totalSessions"], 2,
        "the summary follows the model filter"
    );
    // Bob sees his own only; an admin sees everyone's and can filter by user.
    let l = assert_ok(&s.get("/api/realtime/sessions", "bob").await, 200);
    assert_eq!(ids(&l).iter().collect::<Vec<_>>(), [&b[1], &b[0]]);
    assert_eq!(l["summary"]["totalUsers"], 1);
    let l = assert_ok(
        &s.get_admin("/api/realtime/sessions?limit=100", "root")
            .await,
        200,
    );
    assert_eq!(l["pagination"]["total"], 6);
    assert_eq!(l["summary"]["totalSessions"], 7);
    assert_eq!(l["summary"]["totalUsers"], 2);
    let l = assert_ok(
        &s.get_admin("/api/realtime/sessions?userId=bob", "root")
            .await,
        200,
    );
    assert_eq!(ids(&l).iter().collect::<Vec<_>>(), [&b[1], &b[0]]);
    // Other users' sessions are not found, except for admins.
    assert_error(
        &s.get(&format!("/api/realtime/sessions/{}", a[0]), "bob")
            .await,
        404,
        "SESSION_NOT_FOUND",
    );
    assert_error(
        &s.post_empty(&format!("/api/realtime/sessions/{}/resume", a[0]), "bob")
            .await,
        404,
        "SESSION_NOT_FOUND",
    );
    assert_error(
        &s.get(&format!("/api/realtime/sessions/{}/history", a[0]), "bob")
            .await,
        404,
        "SESSION_NOT_FOUND",
    );
    assert_error(
        &s.delete(&format!("/api/realtime/sessions/{}", a[0]), "bob")
            .await,
        404,
        "SESSION_NOT_FOUND",
    );
    let g = assert_ok(
        &s.get_admin(&format!("/api/realtime/sessions/{}", a[0]), "root")
            .await,
        200,
    );
    assert_eq!(g["userId"], "alice");
    // Bad parameters.
    for q in [
        "page=0",
        "limit=101",
        "limit=x",
        "status=sleeping",
        "sortBy=color",
        "sortOrder=up",
    ] {
        assert_error(
            &s.get(&format!("/api/realtime/sessions?{q}"), "alice").await,
            400,
            "VALIDATION_ERROR",
        );
    }
}

#[tokio::test]
async fn list_filters_pagination_and_summary_match_the_rows() {
    on_every_backend!(two_models, filters);
}

async fn history(s: &Srv) {
    let store = &s.handle.state.store;
    let id = s.create("alice", "parlor-local").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let t0 = s.now_ms();
    // 6 messages one minute apart: user/assistant pairs; assistants took 100, 200, 300 ms.
    for i in 0..6i64 {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        let m = parlor::store::RtMessageRecord {
            id: format!("msg_{i:012}"),
            session_id: id.clone(),
            role: role.into(),
            content: format!("message {i}"),
            created_at: t0 + i * 60_000,
            token_count: 10 + i,
            metadata: "{}".into(),
            response_ms: (role == "assistant").then_some(100 * (i + 1) / 2),
        };
        store.add_rt_message(&m, 3, m.token_count).await.unwrap();
    }
    let path = format!("/api/realtime/sessions/{id}/history");
    let h = assert_ok(&s.get(&path, "alice").await, 200);
    let contents: Vec<&str> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        [
            "message 0",
            "message 1",
            "message 2",
            "message 3",
            "message 4",
            "message 5"
        ]
    );
    assert_eq!(
        h["messages"][1]["timestamp"],
        parlor::timefmt::rfc3339_ms(t0 + 60_000)
    );
    assert_eq!(
        h["summary"],
        json!({"totalMessages": 6, "userMessages": 3, "assistantMessages": 3, "totalTokens": 75,
            "averageResponseTime": 200, "sessionDuration": 300})
    );
    let start = parlor::timefmt::rfc3339_ms(t0 + 60_000);
    let end = parlor::timefmt::rfc3339_ms(t0 + 180_000);
    let h = assert_ok(
        &s.get(
            &format!("{path}?startDate={start}&endDate={end}&sortOrder=desc"),
            "alice",
        )
        .await,
        200,
    );
    let contents: Vec<&str> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["message 3", "message 2", "message 1"]);
    assert_eq!(h["summary"]["totalMessages"], 3);
    assert_eq!(h["summary"]["userMessages"], 1);
    assert_eq!(h["summary"]["totalTokens"], 11 + 12 + 13);
    assert_eq!(h["summary"]["averageResponseTime"], 150);
    let h = assert_ok(
        &s.get(
            &format!("{path}?limit=4&page=2&sortBy=tokenCount&sortOrder=desc"),
            "alice",
        )
        .await,
        200,
    );
    let contents: Vec<&str> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["message 1", "message 0"]);
    assert_eq!(
        h["pagination"],
        json!({"page": 2, "limit": 4, "total": 6, "pages": 2})
    );
    // Unix ms work as dates too.
    let h = assert_ok(
        &s.get(&format!("{path}?startDate={}", t0 + 240_000), "alice")
            .await,
        200,
    );
    assert_eq!(h["summary"]["totalMessages"], 2);
    for q in [
        "startDate=yesterday",
        "endDate=2024-13-01T00:00:00Z",
        "sortBy=mood",
        "limit=0",
    ] {
        assert_error(
            &s.get(&format!("{path}?{q}"), "alice").await,
            400,
            "VALIDATION_ERROR",
        );
    }
    assert_error(
        &s.get(&format!("{path}?startDate={end}&endDate={start}"), "alice")
            .await,
        400,
        "VALIDATION_ERROR",
    );
    // The session's counters follow the stored messages.
    let g = assert_ok(
        &s.get(&format!("/api/realtime/sessions/{id}"), "alice")
            .await,
        200,
    );
    assert_eq!(g["messageCount"], 6);
    assert_eq!(
        g["tokenUsage"],
        json!({"prompt": 18, "completion": 75, "total": 93})
    );
    assert_eq!(g["performance"]["averageResponseTime"], 200);
    assert_eq!(g["performance"]["totalRequests"], 3);
    assert_eq!(g["duration"], 300);
}

#[tokio::test]
async fn history_filters_sorting_pagination_and_summary() {
    on_every_backend!(|_| {}, history);
}
