//! Shared helpers for the media integration tests: external tools (ffmpeg, ffprobe,
//! chromium), the `synth_webm` example, and spectrum checks.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

mod ffmpeg;
pub use ffmpeg::*;

/// True if `tool` can be run. When it cannot: panics under `CI`, otherwise prints why
/// the test is skipped and returns false.
pub fn have_tool(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("-version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
        || Command::new(tool)
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("{tool} is required (CI is set): apt-get install ffmpeg chromium");
        }
        // Written to the real stderr, past libtest's output capture, so the skip shows.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIP: {tool} not installed (apt-get install ffmpeg chromium); set CI to make this fail"
        );
    }
    ok
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("parlor-media-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn media_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds (once per test binary) and returns the `synth_webm` example binary, using the
/// same cargo, target dir and profile as the tests.
pub fn example_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let manifest = media_dir().join("Cargo.toml");
        let out = Command::new(env!("CARGO"))
            .args([
                "build",
                "--example",
                "synth_webm",
                "--message-format=json",
                "--manifest-path",
            ])
            .arg(&manifest)
            .output()
            .expect("run cargo");
        assert!(
            out.status.success(),
            "building synth_webm failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        for line in stdout.lines() {
            if line.contains("\"reason\":\"compiler-artifact\"") && line.contains("synth_webm") {
                if let Some(i) = line.find("\"executable\":\"") {
                    let rest = &line[i + 14..];
                    let end = rest.find('"').unwrap();
                    return PathBuf::from(&rest[..end]);
                }
            }
        }
        panic!("no synth_webm executable in cargo output");
    })
    .clone()
}

/// Runs the example with the given arguments; returns its JSON line.
pub fn run_example(out: &Path, seconds: u32, participants: usize, loss: f64, seed: u64) -> String {
    let o = Command::new(example_bin())
        .arg("--out")
        .arg(out)
        .args(["--seconds", &seconds.to_string()])
        .args(["--participants", &participants.to_string()])
        .args(["--loss", &loss.to_string()])
        .args(["--seed", &seed.to_string()])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "synth_webm failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let s = String::from_utf8(o.stdout).unwrap();
    assert_eq!(s.lines().count(), 1, "one JSON line expected: {s}");
    s.trim().to_string()
}

/// Reads an integer field of a flat JSON object.
pub fn json_u64(json: &str, key: &str) -> u64 {
    let pat = format!("\"{key}\":");
    let i = json
        .find(&pat)
        .unwrap_or_else(|| panic!("{key} missing in {json}"))
        + pat.len();
    let rest = &json[i..];
    let end = rest.find([',', '}']).unwrap();
    rest[..end].trim().parse::<f64>().unwrap() as u64
}

/// Magnitude spectrum (Hann window) of `x`; bin width 48000 / x.len().
pub fn spectrum(x: &[f32]) -> Vec<f32> {
    use rustfft::num_complex::Complex;
    let n = x.len();
    let mut buf: Vec<Complex<f32>> = x
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let w = 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / n as f32).cos();
            Complex::new(v * w, 0.0)
        })
        .collect();
    rustfft::FftPlanner::new()
        .plan_fft_forward(n)
        .process(&mut buf);
    buf[..n / 2].iter().map(|c| c.norm()).collect()
}

/// Peak magnitude within ±10 Hz of `freq`, in dB relative to the spectrum's maximum.
pub fn tone_db(spec: &[f32], n: usize, freq: f64) -> f64 {
    let bin_hz = 48_000.0 / n as f64;
    let lo = ((freq - 10.0) / bin_hz).floor().max(0.0) as usize;
    let hi = (((freq + 10.0) / bin_hz).ceil() as usize).min(spec.len() - 1);
    let peak = spec[lo..=hi].iter().cloned().fold(0.0f32, f32::max);
    let max = spec.iter().cloned().fold(1e-12f32, f32::max);
    20.0 * (f64::from(peak) / f64::from(max)).log10()
}

/// The tone of participant `i` (0-based) in the example.
pub fn tone(i: usize) -> f64 {
    440.0 + 220.0 * i as f64
}
