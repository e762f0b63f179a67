//! The figures of `GET /api/realtime/models`, `/stream` and `/stats`: the catalogue with each
//! model's availability, the stream's configuration and live measurements (`super::stats`), and
//! statistics computed in SQL over the stored sessions and messages of a time range.

use super::api::{validation, RtResult, RtUser};
use super::history::time_param;
use crate::realtime::provider::{Availability, CHANNEL_CAPACITY};
use crate::state::AppState;
use crate::timefmt::rfc3339_ms;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering;

/// Default `/stats` range: the last 24 hours.
pub const DEFAULT_RANGE_MS: i64 = 24 * 3600 * 1000;

/// Round to one decimal.
fn r1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub fn models(state: &AppState) -> Value {
    let rt = &state.realtime;
    let updated = rfc3339_ms(rt.catalogue_loaded_ms);
    let mut available = 0;
    let models: Vec<Value> = rt
        .config
        .models
        .iter()
        .map(|m| {
            let (status, reason) = match rt.availability(m) {
                Availability::Available => {
                    available += 1;
                    ("available", None)
                }
                Availability::Unavailable { reason } => ("unavailable", Some(reason)),
            };
            json!({
                "id": m.id,
                "name": m.name,
                "type": m.kind,
                "provider": m.provider,
                "description": m.description,
                "capabilities": m.capabilities,
                "limits": {
                    "maxTokens": m.max_tokens,
                    "contextLength": m.context_length,
                    "requestsPerMinute": m.requests_per_minute,
                },
                "pricing": {
                    "input": m.pricing_input,
                    "output": m.pricing_output,
                    "currency": m.currency,
                    "unit": "1K tokens",
                },
                "status": status,
                "statusReason": reason,
                "updatedAt": updated,
            })
        })
        .collect();
    json!({
        "totalModels": models.len(),
        "availableModels": available,
        "models": models,
        "lastUpdated": updated,
    })
}

/// Percent of the `range_ms` ending now during which this server has been running (one decimal).
fn uptime_percent(uptime_ms: i64, range_ms: i64) -> f64 {
    if range_ms <= 0 {
        return 0.0;
    }
    r1((uptime_ms as f64 / range_ms as f64 * 100.0).min(100.0))
}

pub fn stream(state: &AppState) -> Value {
    let rt = &state.realtime;
    let now = state.clock.now();
    let open = rt.stats.open.load(Ordering::SeqCst);
    let max = rt.config.max_connections;
    let status = if state.shutdown.is_cancelled() {
        "stopping"
    } else if open >= max {
        "saturated"
    } else {
        "active"
    };
    let ws = state.config.public_ws_url();
    let secure = ws.starts_with("wss://");
    let (latency, samples) = rt.stats.average_rtt_ms();
    let up = rt.stats.uptime(now);
    json!({
        "status": status,
        "configuration": {
            "maxConnections": max,
            "heartbeatInterval": rt.config.heartbeat_interval_ms,
            "maxMissedPongs": rt.config.max_missed_pongs,
            "reconnectAttempts": rt.config.reconnect_attempts,
            "authTimeout": rt.config.auth_timeout_ms,
            "messageBufferSize": CHANNEL_CAPACITY,
            "maxMessageChars": rt.config.max_message_chars,
            "compression": "none",
            "encryption": if secure { "wss" } else { "none" },
        },
        "performance": {
            "activeConnections": open,
            "authenticatedConnections": rt.stats.authenticated.load(Ordering::SeqCst),
            "totalConnections": rt.stats.total.load(Ordering::SeqCst),
            "messagesPerSecond": r1(rt.stats.frames_per_second(now)),
            "averageLatency": latency.map(r1),
            "latencySamples": samples,
            "uptime": uptime_percent(up.as_millis() as i64, DEFAULT_RANGE_MS),
            "uptimeSeconds": up.as_secs(),
        },
        "endpoints": {
            "websocket": format!("{ws}/realtime"),
            "fallback": Value::Null,
            "healthCheck": format!("{}/health", state.config.public_http_url()),
        },
        "features": {
            "streaming": true,
            "heartbeat": true,
            "reconnection": true,
            "compression": false,
            "encryption": secure,
        },
        "lastUpdated": rfc3339_ms(state.clock.unix_ms()),
    })
}

/// A range length in words: `14 days`, `24 hours`, `90 minutes`, `45 seconds`.
pub fn describe_duration(ms: i64) -> String {
    let s = ms / 1000;
    let (n, unit) = if s >= 7 * 86_400 && s % 86_400 == 0 {
        (s / 86_400, "day")
    } else if s >= 3600 && s % 3600 == 0 {
        (s / 3600, "hour")
    } else if s >= 60 && s % 60 == 0 {
        (s / 60, "minute")
    } else {
        (s, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

pub async fn stats(
    state: &AppState,
    user: &RtUser,
    q: &HashMap<String, String>,
) -> RtResult<Value> {
    if let Some(k) = q.keys().find(|k| *k != "startDate" && *k != "endDate") {
        return Err(validation(format!(
            "unknown parameter `{}` (startDate, endDate)",
            k.chars().take(32).collect::<String>()
        )));
    }
    let now = state.clock.unix_ms();
    let end = time_param("endDate", q.get("endDate").map(String::as_str))?.unwrap_or(now);
    let start = time_param("startDate", q.get("startDate").map(String::as_str))?
        .unwrap_or(end - DEFAULT_RANGE_MS);
    if start > end {
        return Err(validation("startDate is after endDate"));
    }
    let rt = &state.realtime;
    let owner = (!user.admin).then_some(user.id.as_str());
    let st = state
        .store
        .rt_stats(owner, start, end, rt.idle_cut(now))
        .await
        .map_err(|e| {
            super::api::err(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                format!("database error: {e}"),
            )
        })?;
    let range_ms = (end - start).max(1);
    let range_secs = range_ms as f64 / 1000.0;
    let (success, error) = if st.requests > 0 {
        let e = st.failed as f64 / st.requests as f64 * 100.0;
        (Some(r1(100.0 - e)), Some(r1(e)))
    } else {
        (None, None)
    };
    let mut models = Map::new();
    for m in &st.models {
        models.insert(
            m.model.clone(),
            json!({
                "sessions": m.sessions,
                "tokens": m.tokens,
                "averageResponseTime": m.average_response_ms.map(|a| a.round() as i64),
            }),
        );
    }
    let up = rt.stats.uptime(state.clock.now()).as_millis() as i64;
    // The part of the range this server has been up (capped at the range).
    let up_in_range = up.min((now.min(end) - start).max(0));
    Ok(json!({
        "sessions": {
            "total": st.sessions.total,
            "active": st.sessions.active,
            "idle": st.sessions.idle,
            "paused": st.sessions.paused,
            "completed": st.sessions.completed,
            "failed": st.sessions.failed,
            "averageDuration": st.average_duration_ms.map(|d| (d / 1000.0).round() as i64),
            "peakConcurrent": rt.stats.peak_authenticated.load(Ordering::SeqCst),
            "currentConcurrent": rt.stats.authenticated.load(Ordering::SeqCst),
        },
        "usage": {
            "totalMessages": st.messages,
            "totalTokens": st.tokens,
            "averageTokensPerMessage": (st.messages > 0)
                .then(|| r1(st.tokens as f64 / st.messages as f64)),
            "messagesPerSecond": st.messages as f64 / range_secs,
            "tokensPerSecond": st.tokens as f64 / range_secs,
        },
        "performance": {
            "averageResponseTime": st.latency.average.map(|a| a.round() as i64),
            "totalRequests": st.requests,
            "failedRequests": st.failed,
            "successRate": success,
            "errorRate": error,
            "uptime": uptime_percent(up_in_range, range_ms),
            "latency": {
                "min": st.latency.min,
                "max": st.latency.max,
                "average": st.latency.average.map(|a| a.round() as i64),
                "p95": st.latency.p95,
                "p99": st.latency.p99,
                "samples": st.latency.count,
            },
        },
        "models": models,
        "timeRange": {
            "start": rfc3339_ms(start),
            "end": rfc3339_ms(end),
            "duration": describe_duration(range_ms),
        },
        "lastUpdated": rfc3339_ms(now),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_words() {
        assert_eq!(describe_duration(DEFAULT_RANGE_MS), "24 hours");
        assert_eq!(describe_duration(14 * DEFAULT_RANGE_MS), "14 days");
        assert_eq!(describe_duration(2 * 3600 * 1000), "2 hours");
        assert_eq!(describe_duration(90 * 60 * 1000), "90 minutes");
        assert_eq!(describe_duration(61_000), "61 seconds");
        assert_eq!(uptime_percent(12 * 3600 * 1000, DEFAULT_RANGE_MS), 50.0);
        assert_eq!(uptime_percent(48 * 3600 * 1000, DEFAULT_RANGE_MS), 100.0);
    }
}
