//! `/metrics` exposition: every family typed, counters named `*_total`, HTTP requests labelled by
//! method, matched route template and status, process metrics from /proc, optional bearer auth.

mod common;
use common::*;
use std::collections::{BTreeMap, BTreeSet};

fn free_port() -> u16 {
    loop {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// One parsed sample: name, labels, value.
type Samples = Vec<(String, BTreeMap<String, String>, f64)>;

/// Parse Prometheus text format 0.0.4: `# TYPE` per family, samples `name{k="v",...} value`.
fn parse(text: &str) -> (BTreeMap<String, String>, Samples) {
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line");
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "family {name} typed twice"
            );
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment: {line}");
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => {
                let l = l.strip_suffix('}').expect("closing brace");
                let labels = l
                    .split("\",")
                    .map(|kv| {
                        let (k, v) = kv.split_once("=\"").expect("label");
                        (k.to_string(), v.trim_end_matches('"').to_string())
                    })
                    .collect();
                (n.to_string(), labels)
            }
            None => (series.to_string(), BTreeMap::new()),
        };
        samples.push((name, labels, value));
    }
    (types, samples)
}

#[tokio::test]
async fn metrics_types_labels_process_and_auth() {
    let db = TestDb::sqlite();
    let port = free_port();
    let s = TestServer::start_with(&db, |c| {
        c.turn.enabled = true;
        c.turn.udp_port = port;
        c.turn.tcp_port = 0;
    })
    .await;
    // Traffic on a templated route (two different ids), an unmatched path and an error.
    for id in ["call_aaa", "call_bbb"] {
        let r = s
            .client
            .get(s.url(&format!("/api/calls/{id}")))
            .bearer_auth(s.user_token("alice"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    let r = s
        .client
        .get(s.url("/no/such/route/42"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = s.client.get(s.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let text = s.metrics().await;
    let (types, samples) = parse(&text);
    // Every sample belongs to a typed family; counters (and only counters) end in _total.
    let names: BTreeSet<&str> = samples.iter().map(|(n, _, _)| n.as_str()).collect();
    // A histogram family's samples are <name>_bucket, <name>_sum and <name>_count.
    let family = |n: &str| -> String {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = n.strip_suffix(suffix) {
                if types.get(base).map(String::as_str) == Some("histogram") {
                    return base.to_string();
                }
            }
        }
        n.to_string()
    };
    for n in &names {
        assert!(
            types.contains_key(&family(n)),
            "sample {n} has no # TYPE line"
        );
    }
    assert_eq!(
        types
            .get("parlor_assistant_turn_latency_seconds")
            .map(String::as_str),
        Some("histogram")
    );
    for (name, kind) in &types {
        assert!(
            kind == "counter" || kind == "gauge" || kind == "histogram",
            "{name}: {kind}"
        );
        assert_eq!(
            kind == "counter",
            name.ends_with("_total"),
            "{name} is a {kind}: counters and only counters end in _total"
        );
    }
    for n in [
        "parlor_turn_relayed_bytes_total",
        "parlor_turn_auth_failures_total",
        "parlor_turn_forbidden_peer_refusals_total",
        "parlor_turn_allocations_total",
    ] {
        assert_eq!(types.get(n).map(String::as_str), Some("counter"), "{n}");
    }
    assert_eq!(types["parlor_turn_active_allocations"], "gauge");

    // HTTP requests: method, route template (never the raw path; unmatched -> other), status.
    let http: Vec<_> = samples
        .iter()
        .filter(|(n, _, _)| n == "parlor_http_requests_total")
        .collect();
    assert!(!http.is_empty(), "{text}");
    for (_, l, _) in &http {
        let keys: Vec<&str> = l.keys().map(String::as_str).collect();
        assert_eq!(keys, ["method", "route", "status"], "{l:?}");
        assert!(
            !l["route"].contains("call_aaa") && !l["route"].contains("42"),
            "{l:?}"
        );
    }
    let count = |method: &str, route: &str, status: &str| {
        http.iter()
            .find(|(_, l, _)| l["method"] == method && l["route"] == route && l["status"] == status)
            .map(|(_, _, v)| *v)
    };
    assert_eq!(
        count("GET", "/api/calls/{call_id}", "404"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(count("GET", "other", "404"), Some(1.0), "{text}");
    assert_eq!(count("GET", "/health", "200"), Some(1.0), "{text}");

    // Process metrics from /proc/self.
    for n in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        let v = samples
            .iter()
            .find(|(name, _, _)| name == n)
            .unwrap_or_else(|| panic!("missing {n}:\n{text}"))
            .2;
        assert!(v > 0.0, "{n} = {v}");
    }
    let start = samples
        .iter()
        .find(|(n, _, _)| n == "process_start_time_seconds")
        .unwrap()
        .2;
    assert!(start <= now_unix() as f64 + 1.0 && start > now_unix() as f64 - 86_400.0);
    s.stop().await;

    // With metrics.token: 401 (JSON envelope) without it or with a wrong one, 200 with it.
    let s = TestServer::start_with(&db, |c| c.metrics.token = "scrape-secret".into()).await;
    let r = s.client.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unauthorized", "{v}");
    let r = s
        .client
        .get(s.url("/metrics"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = s
        .client
        .get(s.url("/metrics"))
        .bearer_auth("scrape-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("# TYPE parlor_http_requests_total counter"));
    s.stop().await;
}
