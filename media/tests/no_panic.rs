//! No panic on arbitrary bytes: the Opus TOC parser, jitter-buffer inserts (any
//! seq/ts/payload/time sequence) and `repair` (random bytes, and real files cut and
//! corrupted at random). Run longer with `PROPTEST_CASES=100000`. The TOC and `repair` cases
//! run the `parlor_media::fuzzing` bodies, the same the cargo-fuzz targets run (fuzz/README.md).

use std::io::Cursor;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use parlor_media::{
    EncoderConfig, JitterBuffer, JitterConfig, OpusEncoder, WebmConfig, WebmWriter, FRAME_SAMPLES,
};
use proptest::prelude::*;

fn real_file() -> &'static [u8] {
    static F: OnceLock<Vec<u8>> = OnceLock::new();
    F.get_or_init(|| {
        let mut enc = OpusEncoder::new(EncoderConfig::default()).unwrap();
        let cfg = WebmConfig {
            pre_skip: enc.pre_skip(),
            cluster_ms: 200,
            ..WebmConfig::default()
        };
        let mut w = WebmWriter::new(Cursor::new(Vec::new()), cfg).unwrap();
        let mut buf = vec![0u8; 1500];
        for t in 0..100 {
            let pcm: Vec<i16> = (0..FRAME_SAMPLES)
                .map(|j| ((t * 7 + j) % 200) as i16 * 50)
                .collect();
            let n = enc.encode(&pcm, &mut buf).unwrap();
            w.write_packet((t * FRAME_SAMPLES) as u64, &buf[..n])
                .unwrap();
        }
        w.finalize().unwrap().0.into_inner()
    })
}

#[derive(Debug, Clone)]
enum Op {
    Insert {
        seq: u16,
        ts: u32,
        len: usize,
        dt_ms: u16,
    },
    Pop {
        dt_ms: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<u16>(), any::<u32>(), 0usize..1600, 0u16..100)
            .prop_map(|(seq, ts, len, dt_ms)| Op::Insert { seq, ts, len, dt_ms }),
        // Mostly sane streams too, so deep states are reached.
        3 => (0u16..4, 0u32..3, 1usize..200, 0u16..40)
            .prop_map(|(seq, ts, len, dt_ms)| Op::Insert { seq, ts: ts * 960, len, dt_ms }),
        2 => (0u16..60).prop_map(|dt_ms| Op::Pop { dt_ms }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn toc_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..1800)) {
        // The cargo-fuzz body (fuzz/fuzz_targets/opus_packet.rs): frame count and duration bounds.
        parlor_media::fuzzing::opus_packet(&bytes);
    }

    #[test]
    fn jitter_inserts_never_panic(
        cap in 1usize..300, target in 0u64..300, max_delay in 0u64..2000,
        ops in prop::collection::vec(op(), 1..400),
    ) {
        let mut jb = JitterBuffer::new(JitterConfig {
            capacity: cap,
            target_delay: Duration::from_millis(target),
            max_delay: Duration::from_millis(max_delay),
            ..JitterConfig::default()
        });
        let cap = jb.config().capacity as u32;
        let t0 = Instant::now();
        let mut now = t0;
        let payload = [0x78u8; 1600];
        // Sane ops are relative to a running stream position.
        let (mut base_seq, mut base_ts) = (0u16, 0u32);
        for o in ops {
            match o {
                Op::Insert { seq, ts, len, dt_ms } => {
                    now += Duration::from_millis(u64::from(dt_ms));
                    let (s, t) = if seq < 4 && ts < 3 * 960 {
                        base_seq = base_seq.wrapping_add(1);
                        base_ts = base_ts.wrapping_add(960);
                        (base_seq.wrapping_sub(seq), base_ts.wrapping_sub(ts))
                    } else {
                        (seq, ts)
                    };
                    jb.insert(now, s, t, &payload[..len]);
                }
                Op::Pop { dt_ms } => {
                    now += Duration::from_millis(u64::from(dt_ms));
                    let _ = jb.pop(now);
                }
            }
            prop_assert!(jb.stats().buffered <= cap);
        }
    }

    #[test]
    fn repair_never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..4000)) {
        parlor_media::fuzzing::webm_repair(&bytes);
        parlor_media::fuzzing::ebml_reader(&bytes);
    }

    #[test]
    fn repair_never_panics_on_cut_and_corrupted_files(
        cut in 0usize..100_000,
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
    ) {
        let f = real_file();
        let mut b = f[..cut % (f.len() + 1)].to_vec();
        let len = b.len();
        for (pos, v) in flips {
            if len > 0 {
                b[pos % len] = v;
            }
        }
        // The cargo-fuzz bodies (fuzz/fuzz_targets/webm_repair.rs, ebml_reader.rs): a repaired
        // file repairs to itself, with the same blocks and bytes.
        parlor_media::fuzzing::webm_repair(&b);
        parlor_media::fuzzing::ebml_reader(&b);
    }
}
