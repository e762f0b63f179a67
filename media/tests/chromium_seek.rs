//! Acceptance: headless Chromium (Debian `chromium`) loads a repaired recording in an
//! `<audio>` element, reports a finite duration within 1 % of the file's, and a seek
//! to the middle lands there.
//!
//! The page and the file are served by a small HTTP/1.1 server in this test (with
//! Range support, as browsers seek media through Range requests); the page reports
//! its findings back with a `fetch` to the same server.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const PAGE: &str = r#"<!doctype html><html><body>
<audio id="a" preload="auto" src="/audio.webm"></audio>
<script>
const a = document.getElementById('a');
const report = (o) => fetch('/result?' + encodeURIComponent(JSON.stringify(o)));
a.addEventListener('error', () => report({error: a.error ? a.error.code : -1}));
a.addEventListener('loadedmetadata', () => {
  const d = a.duration;
  const mid = d / 2;
  a.addEventListener('seeked', () => report({
    duration: d, target: mid, current: a.currentTime,
    seekable: a.seekable.length ? a.seekable.end(0) : -1, ready: a.readyState,
  }), {once: true});
  a.currentTime = mid;
});
</script></body></html>"#;

fn serve(mut s: TcpStream, audio: &[u8], results: &mpsc::Sender<String>) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("range: bytes=") {
            let (a, b) = v.trim().split_once('-').unwrap_or(("0", ""));
            let start: usize = a.parse().unwrap_or(0);
            let end: usize = b.parse().unwrap_or(audio.len() - 1).min(audio.len() - 1);
            range = Some((start, end));
        }
    }
    let (status, ctype, body, extra): (&str, &str, Vec<u8>, String) = if path == "/" {
        (
            "200 OK",
            "text/html",
            PAGE.as_bytes().to_vec(),
            String::new(),
        )
    } else if path == "/audio.webm" {
        match range {
            Some((a, b)) if a < audio.len() && a <= b => (
                "206 Partial Content",
                "audio/webm",
                audio[a..=b].to_vec(),
                format!("Content-Range: bytes {a}-{b}/{}\r\n", audio.len()),
            ),
            Some(_) => (
                "416 Range Not Satisfiable",
                "text/plain",
                Vec::new(),
                String::new(),
            ),
            None => ("200 OK", "audio/webm", audio.to_vec(), String::new()),
        }
    } else if let Some(q) = path.strip_prefix("/result?") {
        let _ = results.send(percent_decode(q));
        ("200 OK", "text/plain", b"ok".to_vec(), String::new())
    } else {
        ("404 Not Found", "text/plain", Vec::new(), String::new())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(&body);
    let _ = s.flush();
    let _ = r.read(&mut [0u8; 0]);
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn field(json: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\":");
    let i = json
        .find(&pat)
        .unwrap_or_else(|| panic!("{key} missing in {json}"))
        + pat.len();
    let rest = &json[i..];
    let end = rest.find([',', '}']).unwrap();
    rest[..end].parse().unwrap()
}

#[test]
fn chromium_plays_and_seeks_a_repaired_file() {
    if !have_tool("ffprobe") || !have_tool("ffmpeg") || !have_tool("chromium") {
        return;
    }
    let dir = scratch("chromium");
    let full = dir.join("rec.webm");
    run_example(&full, 10, 2, 0.0, 11);
    let bytes = std::fs::read(&full).unwrap();
    // A crash at 75 % of the recording, then repair.
    let (fixed, report) = parlor_media::repair(&bytes[..bytes.len() * 3 / 4]).unwrap();
    let fixed_file = dir.join("fixed.webm");
    std::fs::write(&fixed_file, &fixed).unwrap();
    let expected = ffprobe(&fixed_file).duration.expect("duration");
    assert!((expected - report.duration_ms as f64 / 1000.0).abs() < 0.01);
    assert!(expected > 6.0, "{expected}");

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            serve(s, &fixed, &tx);
        }
    });

    let profile = dir.join("profile");
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("http://127.0.0.1:{port}/"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start chromium");
    // A hang guard only: the page normally answers within a few seconds.
    let result = rx.recv_timeout(Duration::from_secs(90));
    // Stop the browser we started: SIGTERM to its main process lets it shut down and
    // reap its own children; SIGKILL its process group (by its id) if it lingers.
    let pid = child.id() as libc::pid_t;
    // SAFETY: plain kill(2) on the process we spawned (and its own process group).
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let mut exited = false;
    for _ in 0..100 {
        if child.try_wait().ok().flatten().is_some() {
            exited = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if !exited {
        // SAFETY: as above; a negative pid addresses the process group we created.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = child.wait();
    }
    let json = result.expect("no result from the page");
    eprintln!("chromium reported: {json}");
    assert!(!json.contains("error"), "media error in chromium: {json}");
    let d = field(&json, "duration");
    assert!(d.is_finite(), "{json}");
    assert!(
        (d - expected).abs() <= expected * 0.01,
        "chromium duration {d} vs {expected}"
    );
    let (target, current) = (field(&json, "target"), field(&json, "current"));
    assert!(
        (current - target).abs() < 0.1,
        "seek to {target} landed at {current}"
    );
    assert!(field(&json, "ready") >= 1.0, "{json}");
    assert!(
        (field(&json, "seekable") - d).abs() < 0.1,
        "not seekable to the end: {json}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
