//! ICE config + TURN REST credentials from the HTTP API, used by coturn's `turnutils_uclient` against the
//! embedded TURN server; and the defaults that keep relays off private networks.

mod common;
use common::*;
use serde_json::Value;
use std::time::Duration;

fn free_port() -> u16 {
    loop {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn uclient_bin() -> Option<&'static str> {
    let bin = "/usr/bin/turnutils_uclient";
    if std::path::Path::new(bin).exists() {
        return Some(bin);
    }
    if std::env::var_os("CI").is_some() {
        panic!("turnutils_uclient (apt package coturn) is required under CI");
    }
    eprintln!("SKIP: turnutils_uclient missing (apt-get install coturn)");
    None
}

async fn uclient(port: u16, user: &str, pass: &str) -> (bool, String) {
    let mut cmd = tokio::process::Command::new(uclient_bin().unwrap());
    cmd.args([
        "-y",
        "-c",
        "-n",
        "5",
        "-l",
        "120",
        "-m",
        "1",
        "-u",
        user,
        "-w",
        pass,
        "-p",
        &port.to_string(),
        "127.0.0.1",
    ])
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("uclient hung")
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let received = text
        .lines()
        .rev()
        .find_map(|l| l.split("tot_recv_msgs=").nth(1))
        .and_then(|r| {
            r.trim()
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|d| d.parse::<u64>().ok())
        })
        .unwrap_or(0);
    (out.status.success() && received > 0, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_minted_credentials_relay_through_embedded_turn() {
    if uclient_bin().is_none() {
        return;
    }
    let port = free_port();
    let db = TestDb::sqlite();
    let s = TestServer::start_with(&db, |c| {
        c.turn.enabled = true;
        c.turn.udp_port = port;
        c.turn.tcp_port = port;
        c.turn.secrets = vec!["rotated-new".into(), "rotated-old".into()];
        // Tests relay between loopback peers, which the default policy refuses.
        c.turn.allow_peer_cidrs = vec!["127.0.0.1/32".into()];
        c.rtc.stun_urls = vec!["stun:stun.example.org:3478".into()];
    })
    .await;
    let tok = s.user_token("user-123");

    // ICE config: STUN entries, then TURN with REST credentials (udp + tcp URLs).
    let v: Value = s
        .client
        .get(s.url("/api/signaling/ice-config"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["success"], true);
    assert_eq!(v["config"]["ice_transport_policy"], "all");
    assert_eq!(v["config"]["ttl"], 86400);
    let servers = v["config"]["ice_servers"].as_array().unwrap();
    assert_eq!(servers[0]["urls"][0], "stun:stun.example.org:3478");
    let turn = servers
        .iter()
        .find(|s| s["username"].is_string())
        .expect("no TURN entry");
    let urls: Vec<&str> = turn["urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    assert_eq!(
        urls,
        vec![
            format!("turn:127.0.0.1:{port}"),
            format!("turn:127.0.0.1:{port}?transport=tcp")
        ]
    );
    let username = turn["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, "user-123");
    let expiry: u64 = expiry.parse().unwrap();
    assert!(expiry >= now_unix() + 86400 - 5 && expiry <= now_unix() + 86400 + 5);
    // Minted with the first secret: base64(HMAC-SHA1("rotated-new", username)).
    assert_eq!(
        turn["credential"],
        parlor_turn::credential_for(b"rotated-new", username)
    );

    // turn-credentials endpoint.
    let r = s
        .client
        .post(s.url("/api/signaling/turn-credentials"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let creds = &v["credentials"];
    assert_eq!(creds["ttl"], 86400);
    assert!(creds["urls"].as_array().unwrap().len() >= 2);
    let (u, p) = (
        creds["username"].as_str().unwrap(),
        creds["credential"].as_str().unwrap(),
    );

    // A third-party TURN client allocates and relays with the REST-minted credential.
    let (ok, out) = uclient(port, u, p).await;
    assert!(ok, "uclient failed with REST credentials:\n{out}");
    // A credential minted with the OLD (second) secret is still accepted: rotation.
    let old = parlor_turn::mint(b"rotated-old", "user-123", 600, now_unix());
    let (ok, out) = uclient(port, &old.username, &old.credential).await;
    assert!(ok, "rotated secret refused:\n{out}");
    // A wrong password is refused.
    let (ok, _) = uclient(port, u, "d3Jvbmc=").await;
    assert!(!ok, "wrong password accepted");
    // Metrics expose TURN counters.
    let m = s.metrics().await;
    let line = m
        .lines()
        .find(|l| l.starts_with("parlor_turn_auth_failures_total "))
        .expect("no turn metrics");
    assert!(
        line.split(' ').nth(1).unwrap().parse::<f64>().unwrap() >= 1.0,
        "{line}"
    );
    assert!(
        m.lines()
            .any(|l| l.starts_with("parlor_turn_relayed_bytes_total ") && !l.ends_with(" 0")),
        "{m}"
    );

    // Unauthenticated requests are refused.
    let r = s
        .client
        .post(s.url("/api/signaling/turn-credentials"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    s.stop().await;
}

#[tokio::test]
async fn default_policy_refuses_loopback_peers() {
    if uclient_bin().is_none() {
        return;
    }
    let port = free_port();
    let db = TestDb::sqlite();
    let s = TestServer::start_with(&db, |c| {
        c.turn.enabled = true;
        c.turn.udp_port = port;
        c.turn.tcp_port = 0;
    })
    .await;
    let v: Value = s
        .client
        .post(s.url("/api/signaling/turn-credentials"))
        .bearer_auth(s.user_token("u"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (u, p) = (
        v["credentials"]["username"].as_str().unwrap(),
        v["credentials"]["credential"].as_str().unwrap(),
    );
    let (ok, out) = uclient(port, u, p).await;
    assert!(
        !ok,
        "relay to a 127.0.0.1 peer was allowed by default:\n{out}"
    );
    s.stop().await;
}
