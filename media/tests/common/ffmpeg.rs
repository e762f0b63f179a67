//! ffprobe/ffmpeg checks on recordings, shared by the media crate's tests and the server's recorder
//! tests (included there with `#[path]`).
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// ffprobe facts about a file.
#[derive(Debug)]
pub struct Probe {
    pub codec: String,
    pub sample_rate: u32,
    pub duration: Option<f64>,
}

pub fn ffprobe(file: &Path) -> Probe {
    let o = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,sample_rate:format=duration",
        ])
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let s = String::from_utf8_lossy(&o.stdout).to_string();
    let get = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_string)
            .unwrap_or_default()
    };
    Probe {
        codec: get("codec_name"),
        sample_rate: get("sample_rate").parse().unwrap_or(0),
        duration: get("duration").parse().ok(),
    }
}

/// stderr of `ffmpeg -v error -i F -f null -` (empty for a clean file).
pub fn ffmpeg_errors(file: &Path) -> String {
    let o = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Decodes a file with ffmpeg to mono 48 kHz f32 samples (`extra` goes before `-i`).
pub fn ffmpeg_decode(file: &Path, extra: &[&str]) -> Vec<f32> {
    let o = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "quiet"])
        .args(extra)
        .arg("-i")
        .arg(file)
        .args(["-f", "f32le", "-ac", "1", "-ar", "48000", "-"])
        .output()
        .unwrap();
    o.stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}
