//! The `parlor` binary itself: `parlor token` finds the server's keys from any directory and never
//! creates files; config typos fail start-up with a suggestion; logs on a pipe carry no ANSI
//! colour, no Rust `Some(..)`/`None`, and no third-party WARN noise through a real WebRTC join.

mod common;
#[path = "common/lk.rs"]
mod lk;

use common::*;
use lk::{Client, Seen};
use parlor_signaling::{AccessToken, VideoGrant};
use rtc::peer_connection::state::RTCPeerConnectionState;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

/// The real binary, run in `cwd` with an empty environment (no PARLOR_*, RUST_LOG, NO_COLOR).
fn parlor(cwd: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_parlor"));
    c.current_dir(cwd).env_clear();
    c
}

fn run(c: &mut Command) -> (Output, String, String) {
    let out = c.output().expect("run parlor");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn token_from_another_directory_is_signed_with_the_servers_key() {
    let db = TestDb::sqlite();
    // A server on dev keys: it generates them in its data dir.
    let s = TestServer::start_with(&db, |c| c.keys.clear()).await;
    let data = s.handle.state.config.storage.data_dir.clone();
    let (dev_key, dev_secret) = s.handle.dev_key.clone().expect("dev key");
    let cwd = tempfile::tempdir().unwrap();

    let (out, stdout, stderr) = run(parlor(cwd.path()).args([
        "token",
        "--data-dir",
        data.to_str().unwrap(),
        "--identity",
        "alice",
        "--room",
        "cli-room",
        "--grant",
        "roomCreate,roomList",
        "--ttl",
        "10m",
        "--metadata",
        "{\"team\":\"a\"}",
    ]));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("signed with API key {dev_key} from dev keys file"))
            && stderr.contains("dev-keys.toml"),
        "{stderr}"
    );
    assert!(
        stderr.contains("roomJoin") && stderr.contains("roomCreate"),
        "{stderr}"
    );
    let token = stdout.trim();
    // The running server accepts it: the room API with roomCreate, and the signal validate check.
    let r = s
        .client
        .post(s.url("/api/rooms"))
        .bearer_auth(token)
        .json(&serde_json::json!({"name": "cli-room"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = s
        .client
        .get(s.url(&format!("/rtc/validate?access_token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let c = AccessToken::decode(
        token,
        |k| (k == dev_key).then_some(dev_secret.as_str()),
        now_unix(),
    )
    .unwrap();
    let g = c.video.clone().unwrap();
    assert!(
        g.room_join && g.room_create && g.room_list && !g.room_admin,
        "{g:?}"
    );
    assert_eq!(g.room.as_deref(), Some("cli-room"));
    assert_eq!(c.metadata.as_deref(), Some("{\"team\":\"a\"}"));
    assert!(
        c.exp > now_unix() + 500 && c.exp <= now_unix() + 601,
        "ttl 10m: {}",
        c.exp
    );
    assert!(entries(cwd.path()).is_empty(), "token created files in cwd");

    // An unknown --api-key: non-zero, lists the available ids, creates nothing.
    let (out, _, stderr) = run(parlor(cwd.path()).args([
        "token",
        "--data-dir",
        data.to_str().unwrap(),
        "--identity",
        "alice",
        "--api-key",
        "APInope",
    ]));
    assert!(!out.status.success());
    assert!(
        stderr.contains("APInope") && stderr.contains(&format!("available key ids: {dev_key}")),
        "{stderr}"
    );
    // Without any way to find keys: a clear error naming where it looked; no ./data.
    let (out, _, stderr) = run(parlor(cwd.path()).args(["token", "--identity", "alice"]));
    assert!(!out.status.success());
    assert!(
        stderr.contains("no API keys found")
            && stderr.contains("dev-keys.toml")
            && stderr.contains("--data-dir"),
        "{stderr}"
    );
    // Unknown grant names are refused with the list.
    let (out, _, stderr) = run(parlor(cwd.path()).args([
        "token",
        "--data-dir",
        data.to_str().unwrap(),
        "--identity",
        "alice",
        "--grant",
        "roomAdmn",
    ]));
    assert!(!out.status.success());
    assert!(
        stderr.contains("unknown grant `roomAdmn`") && stderr.contains("roomAdmin"),
        "{stderr}"
    );
    assert!(
        entries(cwd.path()).is_empty(),
        "failed runs created files in cwd"
    );

    // Keys from --config FILE and from PARLOR_KEYS, each named as the source.
    let cfg = cwd.path().join("conf.toml");
    std::fs::write(&cfg, format!("[keys]\n{KEY} = \"{SECRET}\"\n")).unwrap();
    let (out, stdout, stderr) = run(parlor(cwd.path()).args([
        "token",
        "--config",
        cfg.to_str().unwrap(),
        "--identity",
        "bob",
    ]));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{KEY} from [keys] in ")),
        "{stderr}"
    );
    let c =
        AccessToken::decode(stdout.trim(), |k| (k == KEY).then_some(SECRET), now_unix()).unwrap();
    assert_eq!((c.sub.as_str(), c.video), ("bob", None));
    let (out, _, stderr) = run(parlor(cwd.path())
        .env("PARLOR_KEYS", format!("{KEY}:{SECRET}"))
        .args(["token", "--identity", "bob", "--room", "r"]));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{KEY} from PARLOR_KEYS")),
        "{stderr}"
    );
    std::fs::remove_file(&cfg).unwrap();
    assert!(entries(cwd.path()).is_empty());
    s.stop().await;
}

#[test]
fn config_typos_fail_start_up_or_warn_with_the_closest_key() {
    let cwd = tempfile::tempdir().unwrap();
    std::fs::write(
        cwd.path().join("parlor.toml"),
        "[server]\nbind = \"127.0.0.1:0\"\n[rtc]\nudp_prot = 7882\n",
    )
    .unwrap();
    let (out, _, stderr) = run(parlor(cwd.path()).arg("serve"));
    assert!(!out.status.success(), "started despite a typo: {stderr}");
    assert!(
        stderr.contains("unknown key `rtc.udp_prot`")
            && stderr.contains("did you mean `rtc.udp_port`?")
            && stderr.contains("parlor.toml"),
        "{stderr}"
    );
    assert_eq!(entries(cwd.path()), ["parlor.toml"], "nothing started");
    std::fs::remove_file(cwd.path().join("parlor.toml")).unwrap();
    // A PARLOR_<SECTION>_<KEY> variable of a known section with an unknown key: a warning.
    let (out, _, stderr) = run(parlor(cwd.path())
        .env("PARLOR_KEYS", format!("{KEY}:{SECRET}"))
        .env("PARLOR_ROOM_MAX_PARTICIPANT", "5")
        .env("PARLOR_TEST_PG_URL", "postgres://x/y")
        .args(["token", "--identity", "a"]));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("PARLOR_ROOM_MAX_PARTICIPANT")
            && stderr.contains("did you mean PARLOR_ROOM_MAX_PARTICIPANTS?"),
        "{stderr}"
    );
    assert!(!stderr.contains("PARLOR_TEST_PG_URL"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_on_a_pipe_are_plain_and_quiet_through_a_webrtc_join() {
    let dir = tempfile::tempdir().unwrap();
    let turn_port = free_port();
    let cfg = dir.path().join("parlor.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nbind = \"127.0.0.1:0\"\nshutdown_grace_secs = 2\n\
             [storage]\ndata_dir = \"{}\"\n\
             [rtc]\nudp_port = 0\ntcp_port = 0\nworkers = 1\n\
             [turn]\nenabled = true\nudp_port = {turn_port}\ntcp_port = {turn_port}\n\
             [keys]\n{KEY} = \"{SECRET}\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_parlor"))
        .current_dir(dir.path())
        .env_clear()
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let err_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = String::new();
    let http = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = stdout.next_line().await {
            banner.push_str(&line);
            banner.push('\n');
            if let Some(url) = line.split("listening on ").nth(1) {
                return url.trim().to_string();
            }
        }
        panic!("server exited before listening")
    })
    .await
    .expect("server start");
    let ws = http.replacen("http://", "ws://", 1);
    let tok = |who: &str| {
        AccessToken::for_join(
            KEY,
            SECRET,
            who,
            VideoGrant::join("log-room"),
            now_unix(),
            600,
        )
    };

    // A healthy join: alice publishes audio, bob receives it.
    let mut a = Client::connect(&ws, &tok("alice"), true).await;
    let mut b = Client::connect(&ws, &tok("bob"), false).await;
    a.publish_audio().await;
    a.wait_for(|s| {
        matches!(s, Seen::PublisherState(RTCPeerConnectionState::Connected)).then_some(())
    })
    .await;
    let mut got = false;
    for i in 0..500u16 {
        let mut p = vec![0xF8, (i >> 8) as u8, i as u8];
        p.extend([7u8; 40]);
        a.send_rtp(p).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        while let Ok(s) = b.seen.try_recv() {
            got |= matches!(s, Seen::Rtp { .. });
        }
        if got {
            break;
        }
    }
    assert!(got, "bob received no media");
    a.leave().await;
    b.leave().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Graceful stop, then read everything the server logged.
    let pid = child.id().expect("pid") as i32;
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("server did not stop")
        .unwrap();
    let mut rest = String::new();
    while let Ok(Some(line)) = stdout.next_line().await {
        rest.push_str(&line);
        rest.push('\n');
    }
    let logs = err_task.await.unwrap();
    eprintln!("--- server stderr ---\n{logs}--- end ---");
    assert!(status.success(), "exit {status}");

    // Logs are on stderr (the banner on stdout), and they cover the join.
    for want in [
        "signal session started",
        "track published",
        "TURN server started",
    ] {
        assert!(logs.contains(want), "no {want:?} in the logs");
    }
    assert!(
        !banner.contains(" INFO ") && !rest.contains(" INFO "),
        "logs on stdout"
    );
    // No colour on a pipe.
    assert!(!logs.contains("\x1b["), "ANSI escapes in piped logs");
    assert!(!banner.contains("\x1b[") && !rest.contains("\x1b["));
    // Optional values are printed plainly or omitted.
    for line in logs.lines() {
        assert!(
            !line.contains("Some(")
                && !line
                    .split(|c: char| !c.is_alphanumeric())
                    .any(|w| w == "None"),
            "Rust Option in a log line: {line}"
        );
    }
    assert!(
        logs.contains(&format!("tcp=127.0.0.1:{turn_port}")),
        "TURN line should print the TCP address"
    );
    // No third-party DTLS noise for a healthy connection.
    let noise: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("rtc_dtls"))
        .collect();
    assert!(noise.is_empty(), "rtc_dtls WARNs: {noise:#?}");
}

/// `parlor assistant create` writes an assistant and a public key into the running server's store,
/// for the account of the key the server signs with; the key then mints embed tokens from its
/// origin. Bad input is refused with a clear message and writes nothing.
#[tokio::test]
async fn assistant_create_writes_into_the_servers_store() {
    let db = TestDb::sqlite();
    let s = TestServer::start_with(&db, |c| c.keys.clear()).await;
    let data = s.handle.state.config.storage.data_dir.clone();
    let (dev_key, _) = s.handle.dev_key.clone().expect("dev key");
    let cwd = tempfile::tempdir().unwrap();
    let create = |extra: &[&str]| {
        let mut c = parlor(cwd.path());
        c.env("PARLOR_DATABASE_URL", &db.url).args([
            "assistant",
            "create",
            "--data-dir",
            data.to_str().unwrap(),
        ]);
        c.args(extra);
        run(&mut c)
    };
    let (out, _, stderr) = create(&["--name", "Bad", "--model", "no-such-model"]);
    assert!(!out.status.success());
    assert!(stderr.contains("unknown model `no-such-model`"), "{stderr}");
    let (out, stdout, stderr) = create(&[
        "--name",
        "Sales",
        "--greeting",
        "Hello!",
        "--price-per-minute",
        "0.1",
        "--origin",
        &s.http,
    ]);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("API key {dev_key}")), "{stderr}");
    let asst = stdout
        .lines()
        .find_map(|l| l.strip_prefix("assistant: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_string();
    let key = stdout
        .lines()
        .find_map(|l| l.strip_prefix("public key: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_string();
    assert!(key.starts_with("pk_live_"), "{key}");
    let a = s
        .handle
        .state
        .store
        .get_assistant(&asst)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (a.name.as_str(), a.account_id.as_str()),
        ("Sales", dev_key.as_str())
    );
    assert_eq!(a.price_per_minute_micros, 100_000);
    let r = s
        .client
        .post(s.url("/api/v1/embed/token"))
        .bearer_auth(&key)
        .header("origin", &s.http)
        .json(&serde_json::json!({ "assistantId": asst }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    s.stop().await;
}
