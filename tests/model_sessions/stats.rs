//! `GET /api/realtime/stats` against rows the test stores: sessions by state, durations, usage,
//! success rate, latency min/max/average/p95/p99 (nearest rank) of the stored response times,
//! per-model figures, the time range, and the caller's scope (admins see everyone's).

use crate::on_every_backend;
use crate::support::{assert_error, assert_ok, Srv};
use parlor::store::{RtMessageRecord, RtSessionRecord};
use serde_json::json;

fn session(
    id: &str,
    user: &str,
    model: &str,
    status: &str,
    created: i64,
    last: i64,
) -> RtSessionRecord {
    RtSessionRecord {
        id: id.into(),
        user_id: user.into(),
        model: model.into(),
        status: status.into(),
        temperature: 0.7,
        max_tokens: 100,
        stream: true,
        system_prompt: None,
        metadata: "{}".into(),
        created_at: created,
        last_activity: last,
        ended_at: None,
        deleted_at: None,
        deleted_by: None,
        token_generation: 1,
        token_expires_at: created + 3_600_000,
        prompt_tokens: 0,
        completion_tokens: 0,
        message_count: 0,
        request_count: 0,
        failed_count: 0,
        response_ms_sum: 0,
        response_count: 0,
        failure_reason: None,
    }
}

fn nearest_rank(sorted: &[i64], p: usize) -> i64 {
    let rank = (p * sorted.len()).div_ceil(100);
    sorted[rank - 1]
}

async fn stats(s: &Srv) {
    let store = &s.handle.state.store;
    let now = s.now_ms();
    let hour = 3_600_000;
    // alice: s1 (local, active, 10 min long), s2 (local-b, paused, 30 min), s3 (failed);
    // bob: s4 (active, idle for an hour); old: 2 days ago (outside the default range).
    let rows = [
        session(
            "session_statsalice01",
            "alice",
            "parlor-local",
            "active",
            now - 2 * hour,
            now - 2 * hour + 600_000,
        ),
        session(
            "session_statsalice02",
            "alice",
            "parlor-local-b",
            "paused",
            now - hour,
            now - hour + 1_800_000,
        ),
        session(
            "session_statsalice03",
            "alice",
            "parlor-local",
            "failed",
            now - hour,
            now - hour,
        ),
        session(
            "session_statsbob0001",
            "bob",
            "parlor-local",
            "active",
            now - 3 * hour,
            now - hour,
        ),
        session(
            "session_statsold0001",
            "alice",
            "parlor-local",
            "active",
            now - 48 * hour,
            now - 48 * hour,
        ),
    ];
    for r in &rows {
        store.insert_rt_session(r).await.unwrap();
    }
    // s1 made activity recent again so it reads active; response times 1..=40 * 50 ms on s1/s2.
    store
        .set_rt_status("session_statsalice01", "active", now, true, None)
        .await
        .unwrap();
    let mut times = Vec::new();
    for i in 1..=40i64 {
        let sid = if i % 4 == 0 {
            "session_statsalice02"
        } else {
            "session_statsalice01"
        };
        let ms = i * 50 + if i == 40 { 10_000 } else { 0 };
        times.push(ms);
        let user = RtMessageRecord {
            id: format!("msg_u{i:011}"),
            session_id: sid.into(),
            role: "user".into(),
            content: "q".into(),
            created_at: now - 30 * 60_000 + i,
            token_count: 2,
            metadata: "{}".into(),
            response_ms: None,
        };
        store.add_rt_message(&user, 0, 0).await.unwrap();
        let reply = RtMessageRecord {
            id: format!("msg_a{i:011}"),
            role: "assistant".into(),
            token_count: 8,
            response_ms: Some(ms),
            ..user
        };
        store.add_rt_message(&reply, 2, 8).await.unwrap();
    }
    // Two failed requests on s3; a message of the old session outside the range.
    store
        .add_rt_failure("session_statsalice03", now)
        .await
        .unwrap();
    store
        .add_rt_failure("session_statsalice03", now)
        .await
        .unwrap();
    let old = RtMessageRecord {
        id: "msg_old000000000".into(),
        session_id: "session_statsold0001".into(),
        role: "assistant".into(),
        content: "old".into(),
        created_at: now - 48 * hour,
        token_count: 1000,
        metadata: "{}".into(),
        response_ms: Some(99_999),
    };
    store.add_rt_message(&old, 0, 1000).await.unwrap();

    let st = assert_ok(&s.get("/api/realtime/stats", "alice").await, 200);
    let sess = &st["sessions"];
    assert_eq!(sess["total"], 3, "{st}");
    assert_eq!(sess["active"], 1);
    assert_eq!(sess["paused"], 1);
    assert_eq!(sess["failed"], 1);
    assert_eq!(sess["idle"], 0);
    assert_eq!(sess["completed"], 0);
    // Durations (creation → last activity): s1 2 h (activity now), s2 30 min (its last message),
    // s3 1 h (its failed requests now) → mean 70 min.
    assert_eq!(sess["averageDuration"], 4200);
    assert_eq!(st["usage"]["totalMessages"], 80);
    assert_eq!(st["usage"]["totalTokens"], 40 * 10);
    assert_eq!(st["usage"]["averageTokensPerMessage"], 5.0);
    assert_eq!(st["usage"]["messagesPerSecond"], 80.0 / 86_400.0);
    assert_eq!(st["usage"]["tokensPerSecond"], 400.0 / 86_400.0);
    let perf = &st["performance"];
    assert_eq!(perf["totalRequests"], 42);
    assert_eq!(perf["failedRequests"], 2);
    assert_eq!(perf["successRate"], 95.2);
    assert_eq!(perf["errorRate"], 4.8);
    let mut sorted = times.clone();
    sorted.sort();
    let avg = (times.iter().sum::<i64>() as f64 / 40.0).round() as i64;
    assert_eq!(
        perf["latency"],
        json!({"min": 50, "max": 12_000, "average": avg, "p95": nearest_rank(&sorted, 95),
            "p99": nearest_rank(&sorted, 99), "samples": 40})
    );
    assert_eq!(perf["latency"]["p95"], 1900);
    assert_eq!(perf["latency"]["p99"], 12_000);
    assert_eq!(perf["averageResponseTime"], avg);
    let b_times: Vec<i64> = times
        .iter()
        .enumerate()
        .filter(|(i, _)| (i + 1) % 4 == 0)
        .map(|(_, t)| *t)
        .collect();
    let b_avg = (b_times.iter().sum::<i64>() as f64 / b_times.len() as f64).round() as i64;
    assert_eq!(
        st["models"]["parlor-local-b"],
        json!({"sessions": 1, "tokens": 100, "averageResponseTime": b_avg})
    );
    assert_eq!(st["models"]["parlor-local"]["sessions"], 2);
    assert_eq!(st["models"]["parlor-local"]["tokens"], 300);
    assert_eq!(st["timeRange"]["end"], parlor::timefmt::rfc3339_ms(now));
    assert_eq!(
        st["timeRange"]["start"],
        parlor::timefmt::rfc3339_ms(now - 24 * hour)
    );
    assert_eq!(st["timeRange"]["duration"], "24 hours");

    // An explicit range that includes the old session.
    let start = parlor::timefmt::rfc3339_ms(now - 72 * hour);
    let st = assert_ok(
        &s.get(&format!("/api/realtime/stats?startDate={start}"), "alice")
            .await,
        200,
    );
    assert_eq!(st["sessions"]["total"], 4);
    assert_eq!(st["sessions"]["idle"], 1, "the old one is idle");
    assert_eq!(st["usage"]["totalTokens"], 1400);
    assert_eq!(st["performance"]["latency"]["max"], 99_999);
    assert_eq!(st["timeRange"]["duration"], "72 hours");
    // Bob sees his own; an admin everyone's.
    let st = assert_ok(&s.get("/api/realtime/stats", "bob").await, 200);
    assert_eq!(st["sessions"]["total"], 1);
    assert_eq!(st["sessions"]["idle"], 1);
    assert_eq!(st["usage"]["totalMessages"], 0);
    assert!(st["performance"]["successRate"].is_null());
    assert!(st["performance"]["latency"]["p95"].is_null());
    let st = assert_ok(&s.get_admin("/api/realtime/stats", "root").await, 200);
    assert_eq!(st["sessions"]["total"], 4);
    assert_eq!(
        st["sessions"]["peakConcurrent"], 0,
        "no socket was ever authenticated"
    );
    for q in [
        "startDate=soon",
        "startDate=2030-01-01T00:00:00Z&endDate=2020-01-01T00:00:00Z",
        "window=1h",
    ] {
        assert_error(
            &s.get(&format!("/api/realtime/stats?{q}"), "alice").await,
            400,
            "VALIDATION_ERROR",
        );
    }
}

#[tokio::test]
async fn stats_are_computed_from_the_stored_rows() {
    on_every_backend!(crate::rest::two_models, stats);
}
