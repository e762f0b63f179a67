//! Acceptance: a 10 s recording cut at 20 random byte offsets still decodes to at
//! least (cut time − 1 s) of audio, and `repair` turns each cut into a finalized file
//! with a Duration that ffmpeg can seek in (`-ss 5` starts mid-file).

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

/// (pts_time, pos, size) of every packet, from ffprobe.
fn packets(file: &Path) -> Vec<(f64, u64, u64)> {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "a", "-show_entries"])
        .args(["packet=pts_time,pos,size", "-of", "compact=p=0"])
        .arg(file)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&o.stdout);
    s.lines()
        .filter_map(|l| {
            let mut t = None;
            let mut pos = None;
            let mut size = None;
            for kv in l.split('|') {
                match kv.split_once('=') {
                    Some(("pts_time", v)) => t = v.parse().ok(),
                    Some(("pos", v)) => pos = v.parse().ok(),
                    Some(("size", v)) => size = v.parse().ok(),
                    _ => {}
                }
            }
            Some((t?, pos?, size?))
        })
        .collect()
}

#[test]
fn cut_at_20_random_offsets_then_repair() {
    if !have_tool("ffprobe") || !have_tool("ffmpeg") {
        return;
    }
    let dir = scratch("truncation");
    let full = dir.join("ten.webm");
    run_example(&full, 10, 1, 0.0, 3);
    let bytes = std::fs::read(&full).unwrap();
    let pk = packets(&full);
    assert_eq!(pk.len(), 500, "10 s of 20 ms packets");

    let mut seed = 0x5eed_u64;
    let mut seek_checked = 0;
    for i in 0..20 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let cut = 1 + (seed >> 33) as usize % (bytes.len() - 1);
        let cut_time = pk
            .iter()
            .filter(|(_, pos, size)| pos + size <= cut as u64)
            .map(|(t, _, _)| t + 0.02)
            .fold(0.0f64, f64::max);
        let cut_file = dir.join(format!("cut{i}.webm"));
        std::fs::write(&cut_file, &bytes[..cut]).unwrap();
        let decoded = ffmpeg_decode(&cut_file, &[]).len() as f64 / 48_000.0;
        assert!(
            decoded >= cut_time - 1.0,
            "cut at byte {cut} (t={cut_time:.3}s): ffmpeg decoded only {decoded:.3}s"
        );

        match parlor_media::repair(&bytes[..cut]) {
            Ok((fixed, report)) => {
                let fixed_file = dir.join(format!("fixed{i}.webm"));
                std::fs::write(&fixed_file, &fixed).unwrap();
                let p = ffprobe(&fixed_file);
                assert_eq!(p.codec, "opus");
                let d = p.duration.expect("repaired file has a Duration");
                assert!(
                    (d - report.duration_ms as f64 / 1000.0).abs() < 0.01,
                    "{d} {report:?}"
                );
                assert!(d >= cut_time - 0.05, "repair kept {d}s of {cut_time}s");
                let errs = ffmpeg_errors(&fixed_file);
                assert!(errs.is_empty(), "repaired file: {errs}");
                if d > 6.0 {
                    let tail = ffmpeg_decode(&fixed_file, &["-ss", "5"]).len() as f64 / 48_000.0;
                    assert!(
                        (tail - (d - 5.0)).abs() < 0.15,
                        "-ss 5 on a {d}s file decoded {tail}s"
                    );
                    seek_checked += 1;
                }
            }
            Err(e) => {
                // Only a cut inside the headers leaves nothing to repair.
                assert!(cut_time == 0.0, "repair failed at t={cut_time}: {e}");
            }
        }
    }
    assert!(seek_checked >= 3, "too few cuts past 6 s ({seek_checked})");
    let _ = std::fs::remove_dir_all(dir);
}
