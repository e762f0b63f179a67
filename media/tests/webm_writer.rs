//! WebM writer: live file validity, cluster flushing, finalize (Duration, Cues,
//! OpusHead), gaps, and errors. Validated with ffprobe/ffmpeg.

mod common;
use common::*;
use std::io::Cursor;

use parlor_media::{EncoderConfig, OpusEncoder, WebmConfig, WebmError, WebmWriter, FRAME_SAMPLES};

fn packets(seconds: usize) -> (Vec<Vec<u8>>, u16) {
    let mut enc = OpusEncoder::new(EncoderConfig::default()).unwrap();
    let mut buf = vec![0u8; 1500];
    let mut out = Vec::new();
    for t in 0..seconds * 50 {
        let pcm: Vec<i16> = (0..FRAME_SAMPLES)
            .map(|j| {
                let x = (t * FRAME_SAMPLES + j) as f64 / 48_000.0;
                ((2.0 * std::f64::consts::PI * 440.0 * x).sin() * 8000.0) as i16
            })
            .collect();
        let n = enc.encode(&pcm, &mut buf).unwrap();
        out.push(buf[..n].to_vec());
    }
    (out, enc.pre_skip())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn clusters_are_flushed_every_second_and_the_live_file_plays() {
    let (pk, pre_skip) = packets(3);
    let cfg = WebmConfig {
        pre_skip,
        ..WebmConfig::default()
    };
    let mut w = WebmWriter::new(Cursor::new(Vec::new()), cfg).unwrap();
    let header_len = w.get_mut().get_ref().len();
    assert!(header_len > 100, "headers are written and flushed at once");
    let mut sizes = Vec::new();
    for (i, p) in pk.iter().enumerate() {
        w.write_packet((i * FRAME_SAMPLES) as u64, p).unwrap();
        sizes.push(w.get_mut().get_ref().len());
    }
    // Nothing reaches the file within a second; each full second is one Cluster.
    assert_eq!(sizes[48], header_len);
    assert!(sizes[49] > header_len, "first second flushed");
    assert_eq!(sizes[98], sizes[50]);
    assert!(sizes[99] > sizes[98]);
    assert!(sizes[149] > sizes[148]);
    let live = w.get_mut().get_ref().clone();
    let cluster_id = [0x1F, 0x43, 0xB6, 0x75];
    assert_eq!(live.windows(4).filter(|x| *x == cluster_id).count(), 3);
    let (done, summary) = w.finalize().unwrap();
    assert_eq!(summary.duration_ms, 3000);
    assert_eq!(summary.clusters, 3);
    let done = done.into_inner();
    // Live Segment had the unknown size; the final one has a real size.
    assert!(find(&live, &[0x18, 0x53, 0x80, 0x67, 0x01, 0xFF, 0xFF, 0xFF]).is_some());
    assert!(find(&done, &[0x18, 0x53, 0x80, 0x67, 0x01, 0xFF, 0xFF, 0xFF]).is_none());
    // Cues after the last cluster.
    // Cues after the last cluster (the id also appears in the SeekHead, which points at it).
    assert!(
        find(&done[live.len()..], &[0x1C, 0x53, 0xBB, 0x6B]).is_some(),
        "Cues"
    );
    assert!(
        find(&done[..200], &[0x53, 0xAB, 0x84, 0x1C, 0x53, 0xBB, 0x6B]).is_some(),
        "SeekHead -> Cues"
    );
    // OpusHead: version 1, mono, our pre-skip, 48 kHz.
    let h = find(&done, b"OpusHead").unwrap();
    assert_eq!(done[h + 8], 1);
    assert_eq!(done[h + 9], 1);
    assert_eq!(u16::from_le_bytes([done[h + 10], done[h + 11]]), pre_skip);
    assert_eq!(
        u32::from_le_bytes(done[h + 12..h + 16].try_into().unwrap()),
        48_000
    );

    if !have_tool("ffprobe") || !have_tool("ffmpeg") {
        return;
    }
    let dir = scratch("writer");
    let live_f = dir.join("live.webm");
    std::fs::write(&live_f, &live).unwrap();
    let got = ffmpeg_decode(&live_f, &[]).len() as f64 / 48_000.0;
    assert!(
        (got - 3.0).abs() < 0.05,
        "live (unfinalized) file decodes to {got}s"
    );
    let done_f = dir.join("done.webm");
    std::fs::write(&done_f, &done).unwrap();
    let p = ffprobe(&done_f);
    assert_eq!((p.codec.as_str(), p.sample_rate), ("opus", 48_000));
    assert!((p.duration.unwrap() - 3.0).abs() < 0.01);
    assert_eq!(ffmpeg_errors(&done_f), "");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn gaps_keep_wall_clock_time_and_repair_of_a_complete_file_is_stable() {
    let (pk, pre_skip) = packets(2);
    let cfg = WebmConfig {
        pre_skip,
        ..WebmConfig::default()
    };
    let mut w = WebmWriter::new(Cursor::new(Vec::new()), cfg).unwrap();
    // 1 s, a 2 s pause (participant away), 1 s.
    for (i, p) in pk.iter().enumerate() {
        let frame = if i < 50 { i } else { i + 100 };
        w.write_packet((frame * FRAME_SAMPLES) as u64, p).unwrap();
    }
    assert!(matches!(
        w.write_packet(0, &pk[0]),
        Err(WebmError::NonMonotonic { .. })
    ));
    assert!(w.write_packet(10_000_000, &[]).is_err());
    let (cur, s) = w.finalize().unwrap();
    assert_eq!(s.duration_ms, 4000);
    let bytes = cur.into_inner();
    let (again, report) = parlor_media::repair(&bytes).unwrap();
    assert_eq!(report.blocks, 100);
    assert_eq!(report.duration_ms, 4000);
    assert_eq!(report.discarded_bytes, 0);
    let (third, _) = parlor_media::repair(&again).unwrap();
    assert_eq!(again, third, "repair is idempotent");

    if !have_tool("ffprobe") {
        return;
    }
    let dir = scratch("writer-gap");
    let f = dir.join("gap.webm");
    std::fs::write(&f, &bytes).unwrap();
    assert!((ffprobe(&f).duration.unwrap() - 4.0).abs() < 0.01);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn stereo_and_bad_config() {
    let cfg = WebmConfig {
        channels: 2,
        ..WebmConfig::default()
    };
    let w = WebmWriter::new(Cursor::new(Vec::new()), cfg).unwrap();
    let (cur, s) = w.finalize().unwrap();
    assert_eq!(s.blocks, 0);
    let b = cur.into_inner();
    let h = find(&b, b"OpusHead").unwrap();
    assert_eq!(b[h + 9], 2);
    let bad = WebmConfig {
        channels: 3,
        ..WebmConfig::default()
    };
    assert!(WebmWriter::new(Cursor::new(Vec::new()), bad).is_err());
}
