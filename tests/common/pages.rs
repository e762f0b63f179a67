//! Two pages of the unmodified `livekit-client` SDK in a headless browser (tests/browser/run.mjs)
//! against an in-process Parlor: shared by tests/browser.rs (chromium) and tests/browser_firefox.rs
//! (Firefox ESR, inside a private network namespace).

use super::*;
use parlor_signaling::VideoGrant;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Browser {
    /// Debian chromium through playwright-core.
    Chromium,
    /// Debian firefox-esr through puppeteer-core (WebDriver BiDi).
    Firefox,
}

impl Browser {
    fn name(self) -> &'static str {
        match self {
            Browser::Chromium => "chromium",
            Browser::Firefox => "firefox",
        }
    }

    fn executable(self) -> PathBuf {
        let (var, default) = match self {
            Browser::Chromium => ("CHROMIUM", "/usr/bin/chromium"),
            Browser::Firefox => ("FIREFOX", "/usr/bin/firefox-esr"),
        };
        std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from)
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Mode {
    Audio,
    Video,
    /// Chromium may not use UDP: media must go over ICE-TCP.
    TcpOnly,
}

pub fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Node + the browser + npm packages present? Under CI a missing piece is a failure, else a skip.
pub fn browser_ready(browser: Browser) -> bool {
    let dir = browser_dir();
    let driver = match browser {
        Browser::Chromium => "playwright-core",
        Browser::Firefox => "puppeteer-core",
    };
    let missing = if !dir.join("node_modules/livekit-client").exists()
        || !dir.join("node_modules").join(driver).exists()
    {
        Some("tests/browser/node_modules (run: cd tests/browser && npm ci)".to_string())
    } else if !browser.executable().exists() {
        Some(format!(
            "{} ({})",
            browser.name(),
            browser.executable().display()
        ))
    } else if Command::new("node").arg("--version").output().is_err() {
        Some("node".into())
    } else {
        None
    };
    match missing {
        None => true,
        Some(what) if std::env::var_os("CI").is_some() => panic!("browser test needs {what}"),
        Some(what) => {
            eprintln!("SKIP browser test: missing {what}");
            false
        }
    }
}

pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// Two pages join one room in `browser`, publish microphone (and camera with `Mode::Video`),
/// exchange media and data; page A mutes and unmutes its microphone, then leaves. `bind_ip`: the
/// media address (Firefox needs a non-loopback one, see tests/browser_firefox.rs).
pub async fn run_pages(browser: Browser, mode: Mode, bind_ip: Option<&str>) {
    if !browser_ready(browser) {
        return;
    }
    let video = mode == Mode::Video;
    let db = TestDb::sqlite();
    let tcp_port = free_port();
    let s = TestServer::start_with(&db, |c| {
        if mode == Mode::TcpOnly {
            c.rtc.tcp_port = tcp_port;
        }
        if let Some(ip) = bind_ip {
            c.rtc.bind_ip = ip.into();
        }
    })
    .await;
    let room = format!(
        "{}-{}",
        browser.name(),
        match mode {
            Mode::Audio => "audio",
            Mode::Video => "video",
            Mode::TcpOnly => "tcp",
        }
    );
    let ta = s.token("page-a", VideoGrant::join(&room));
    let tb = s.token("page-b", VideoGrant::join(&room));
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg("run.mjs")
        .arg(&s.ws)
        .arg(&ta)
        .arg(&tb)
        .env("PARLOR_BROWSER", browser.name())
        .current_dir(browser_dir());
    match mode {
        Mode::Video => {
            cmd.arg("video");
        }
        Mode::TcpOnly => {
            cmd.arg("tcp");
        }
        Mode::Audio => {}
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(150), cmd.output())
        .await
        .expect("browser run timed out")
        .expect("node did not start");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}"))
        .unwrap_or_else(|_| {
            panic!(
                "no JSON from run.mjs: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    // Figures, printed and never judged.
    println!(
        "{} {:?}: join-to-first-audio ms (page a, page b): {} (room.connect() took {}); signal: {} {}",
        v["browser"].as_str().unwrap_or(browser.name()),
        mode,
        v["joinToFirstAudioMs"],
        v["connectMs"],
        v["signal_version"],
        v["signal_urls"]
    );
    if !(out.status.success() && v["ok"] == true) {
        let m = s.metrics().await;
        let rtp: Vec<&str> = m.lines().filter(|l| l.starts_with("parlor_rtp")).collect();
        panic!("browser run failed: {v}\nserver: {rtp:?}");
    }
    if video {
        // Per-subscriber simulcast: page B asked for LOW; its frame width dropped, page A's did not
        // (checked in run.mjs whenever the publisher was sending two or more resolutions).
        assert!(v["simulcast"].is_object(), "{v}");
        println!("simulcast: {}", v["simulcast"]);
    }
    assert_eq!(v["data"][1][0]["text"], "hello from a", "{v}");
    assert_eq!(v["data"][0][0]["text"], "hello from b", "{v}");
    for page in v["pages"].as_array().unwrap() {
        assert!(
            page["last"]["audioBytes"].as_u64().unwrap()
                > page["first"]["audioBytes"].as_u64().unwrap()
        );
        if video {
            assert!(page["last"]["videoFramesDecoded"].as_u64().unwrap() > 0);
        }
    }
    // A's mute and unmute reached B (TrackMuted / TrackUnmuted); B saw A leave.
    let b_events: Vec<&str> = v["events"][1]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str())
        .collect();
    for want in ["muted:page-a:audio", "unmuted:page-a:audio", "left:page-a"] {
        assert!(b_events.contains(&want), "page b never saw {want}: {v}");
    }
    // livekit-client's default: signal protocol v1 (one peer connection), with no v0 fallback
    // (PARLOR_SIGNAL=v0 runs the pages on v0, for comparisons).
    let want = if std::env::var("PARLOR_SIGNAL").is_ok_and(|v| v == "v0") {
        "v0"
    } else {
        "v1"
    };
    let m = s.metrics().await;
    assert_eq!(v["signal_version"], serde_json::json!([want, want]), "{v}");
    let (v1, v0) = if want == "v1" { (2.0, 0.0) } else { (0.0, 2.0) };
    assert_eq!(metric(&m, "parlor_signal_sessions_v1_total"), v1, "{m}");
    assert_eq!(metric(&m, "parlor_signal_sessions_v0_total"), v0, "{m}");
    if mode == Mode::TcpOnly {
        assert!(
            metric(&m, "parlor_ice_tcp_connections_total") >= 2.0,
            "no ICE-TCP connections:\n{m}"
        );
        assert!(
            metric(&m, "parlor_ice_tcp_frames_in_total") > 100.0,
            "media did not use ICE-TCP:\n{m}"
        );
    }
    s.stop().await;
}
