//! Acceptance: the `synth_webm` example's files are valid Opus WebM of the right
//! duration, the mix holds every tone and each participant file only its own.

mod common;
use common::*;

fn check_file(path: &std::path::Path, seconds: f64) {
    let p = ffprobe(path);
    assert_eq!(p.codec, "opus", "{path:?}");
    assert_eq!(p.sample_rate, 48_000, "{path:?}");
    let d = p.duration.expect("duration");
    assert!(
        (d - seconds).abs() <= seconds * 0.01,
        "{path:?}: duration {d} not within 1% of {seconds}"
    );
    let errs = ffmpeg_errors(path);
    assert!(
        errs.is_empty(),
        "ffmpeg reported errors for {path:?}: {errs}"
    );
}

/// Spectrum of the middle `secs` seconds of a decoded file.
fn mid_spectrum(path: &std::path::Path, secs: usize) -> (Vec<f32>, usize) {
    let pcm = ffmpeg_decode(path, &[]);
    assert!(
        pcm.len() > 48_000 * (secs + 1),
        "decoded too little: {}",
        pcm.len()
    );
    let n = 48_000 * secs;
    let start = (pcm.len() - n) / 2;
    (spectrum(&pcm[start..start + n]), n)
}

#[test]
fn mix_has_every_tone_and_each_participant_only_its_own() {
    if !have_tool("ffprobe") || !have_tool("ffmpeg") {
        return;
    }
    let dir = scratch("synth");
    let out = dir.join("call.webm");
    let (seconds, n) = (6u32, 3usize);
    let json = run_example(&out, seconds, n, 0.0, 42);
    assert_eq!(json_u64(&json, "frames"), u64::from(seconds) * 50, "{json}");
    assert!(json.contains("\"wall_ms\":"), "{json}");

    check_file(&out, f64::from(seconds));
    let (spec, len) = mid_spectrum(&out, 4);
    for i in 0..n {
        let db = tone_db(&spec, len, tone(i));
        assert!(db > -12.0, "mix: tone {} Hz only {db:.1} dB", tone(i));
    }
    // Not a tone of a participant who is not there.
    let absent = tone(n);
    assert!(tone_db(&spec, len, absent) < -40.0, "mix has {absent} Hz");

    for p in 0..n {
        let f = dir.join(format!("call.p{}.webm", p + 1));
        check_file(&f, f64::from(seconds));
        let (spec, len) = mid_spectrum(&f, 4);
        assert!(
            tone_db(&spec, len, tone(p)) > -1.0,
            "p{} lacks its own tone",
            p + 1
        );
        for q in 0..n {
            if q != p {
                let db = tone_db(&spec, len, tone(q));
                assert!(db < -40.0, "p{} holds {} Hz at {db:.1} dB", p + 1, tone(q));
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn five_percent_loss_keeps_duration() {
    if !have_tool("ffprobe") || !have_tool("ffmpeg") {
        return;
    }
    let dir = scratch("synth-loss");
    let out = dir.join("lossy.webm");
    let seconds = 5u32;
    let json = run_example(&out, seconds, 2, 0.05, 7);
    assert!(json_u64(&json, "dropped") > 0, "{json}");
    assert!(json_u64(&json, "lost") > 0, "{json}");
    assert!(json_u64(&json, "concealed") > 0, "{json}");
    check_file(&out, f64::from(seconds));
    for p in 1..=2 {
        check_file(&dir.join(format!("lossy.p{p}.webm")), f64::from(seconds));
    }
    let (spec, len) = mid_spectrum(&out, 3);
    for i in 0..2 {
        assert!(
            tone_db(&spec, len, tone(i)) > -12.0,
            "lossy mix lacks {} Hz",
            tone(i)
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
