//! Fuzz bodies for what the media crate parses from untrusted bytes, as plain `fn(&[u8])`.
//!
//! Not API (`#[doc(hidden)]`): `fuzz/` (cargo-fuzz) and `tests/no_panic.rs` (stable, CI) run these
//! same functions. A body panics only on a bug.
//!
//! - [`webm_repair`]: [`crate::repair`] on any bytes (a recording cut by a crash, or a file an
//!   attacker placed); a repaired file must repair to itself.
//! - [`ebml_reader`]: the EBML element reader `repair` is built on, walked over every nested
//!   element, and the Opus TrackEntry parser.
//! - [`opus_packet`]: the Opus TOC parser (RFC 6716 §3) the recorder runs on every received
//!   RTP payload.

use crate::ebml::{read_uint, Reader};

/// `repair` on any bytes; what it repairs must repair again to the same blocks and bytes.
pub fn webm_repair(data: &[u8]) {
    if let Ok((fixed, report)) = crate::repair(data) {
        let (again, r2) = crate::repair(&fixed).expect("a repaired file repairs");
        assert_eq!(
            r2.blocks, report.blocks,
            "repair lost blocks on its own output"
        );
        assert_eq!(again.len(), fixed.len(), "repair is not idempotent");
    }
}

/// Walk every element (depth-first, bounded) with the EBML reader and read each body as an
/// unsigned integer and as a TrackEntry.
pub fn ebml_reader(data: &[u8]) {
    // (start, end) of the ranges still to walk.
    let mut stack = vec![(0usize, data.len())];
    let mut steps = 0;
    while let Some((start, end)) = stack.pop() {
        let Some(slice) = data.get(start..end) else {
            continue;
        };
        let mut r = Reader::new(slice, 0);
        while let Some(h) = r.header() {
            steps += 1;
            if steps > 10_000 {
                return;
            }
            assert!(h.data_start <= slice.len(), "header past the data");
            let Some(e) = h.end() else {
                // Unknown size: the rest of the range is its body.
                stack.push((start + h.data_start, end));
                break;
            };
            let Some(body) = slice.get(h.data_start..e) else {
                break;
            };
            let _ = read_uint(body);
            let _ = crate::webm::parse_track(body);
            if body.len() >= 2 {
                stack.push((start + h.data_start, start + e));
            }
            r.pos = e;
        }
    }
}

/// The Opus TOC parser; what parses describes 1..=48 frames of at most 120 ms.
pub fn opus_packet(data: &[u8]) {
    if let Ok(i) = crate::parse_packet(data) {
        assert!(i.frame_count >= 1, "a parsed packet has no frames");
        assert!(
            i.duration_samples() <= 5760,
            "a parsed packet exceeds 120 ms"
        );
    }
}
