//! Property tests: any reordering, duplication and loss of a packet sequence within
//! the window, including sequence wrap at 65535 and RTP timestamp wrap, comes out of
//! the jitter buffer in order, with exactly the lost packets reported missing.

use std::time::{Duration, Instant};

use parlor_media::{InsertOutcome, JitterBuffer, JitterConfig, JitterFrame};
use proptest::prelude::*;

const SPF: u32 = 960;

#[derive(Debug, Clone)]
struct Scenario {
    seq0: u16,
    ts0: u32,
    /// Per packet: (lost, duplicated, reorder displacement in packets, jitter ms, dup jitter ms)
    pkts: Vec<(bool, bool, u8, u8, u8)>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let seq0 = prop_oneof![Just(65535u16), 65400u16..=65535, any::<u16>()];
    let ts0 = prop_oneof![
        Just(u32::MAX),
        (0u32..200).prop_map(|k| u32::MAX - k * SPF),
        (0u32..200).prop_map(|k| u32::MAX - k * SPF - 17),
        any::<u32>()
    ];
    let pkt = (
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.1),
        0u8..12,
        0u8..=100,
        0u8..=100,
    );
    (seq0, ts0, prop::collection::vec(pkt, 2..150)).prop_map(|(seq0, ts0, pkts)| Scenario {
        seq0,
        ts0,
        pkts,
    })
}

fn payload(i: usize) -> [u8; 3] {
    [0xF8, (i >> 8) as u8, i as u8]
}

/// What must come out: from the first to the last received packet, each frame is the
/// packet (by index) or missing.
fn expected(s: &Scenario) -> Vec<Option<usize>> {
    let recv: Vec<usize> = (0..s.pkts.len()).filter(|&i| !s.pkts[i].0).collect();
    let (Some(&a), Some(&b)) = (recv.first(), recv.last()) else {
        return Vec::new();
    };
    (a..=b).map(|i| (!s.pkts[i].0).then_some(i)).collect()
}

fn check_output(s: &Scenario, out: &[(Option<usize>, u16, u32)]) -> Result<(), TestCaseError> {
    let exp = expected(s);
    prop_assert_eq!(out.len(), exp.len());
    let first = exp.first().map_or(0, |_| {
        (0..s.pkts.len()).find(|&i| !s.pkts[i].0).unwrap_or(0)
    });
    for (k, (got, e)) in out.iter().zip(&exp).enumerate() {
        let i = first + k;
        prop_assert_eq!(got.0, *e, "frame {} of {}", k, exp.len());
        prop_assert_eq!(
            got.2,
            s.ts0.wrapping_add(i as u32 * SPF),
            "ts of frame {}",
            k
        );
        if e.is_some() {
            prop_assert_eq!(got.1, s.seq0.wrapping_add(i as u16), "seq of frame {}", k);
        }
    }
    Ok(())
}

fn record(f: JitterFrame<'_>) -> (Option<usize>, u16, u32) {
    match f {
        JitterFrame::Packet { seq, ts, payload } => (
            Some((usize::from(payload[1]) << 8) | usize::from(payload[2])),
            seq as u16,
            ts as u32,
        ),
        JitterFrame::Missing { ts, .. } => (None, 0, ts as u32),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Everything arrives (shuffled within a window, with duplicates) before playout starts.
    #[test]
    fn burst_arrival_in_order_with_exact_missing(s in scenario()) {
        let cfg = JitterConfig {
            capacity: 256,
            max_delay: Duration::from_secs(10),
            ..JitterConfig::default()
        };
        let mut jb = JitterBuffer::new(cfg);
        let t0 = Instant::now();
        let mut order: Vec<(usize, usize)> = Vec::new(); // (sort key, index)
        let mut dups = 0u64;
        for (i, p) in s.pkts.iter().enumerate() {
            if p.0 { continue; }
            order.push((i + usize::from(p.2), i));
            if p.1 {
                order.push((i + usize::from(p.2) + usize::from(p.3 % 7), i));
                dups += 1;
            }
        }
        order.sort_by_key(|x| x.0);
        for &(_, i) in &order {
            let o = jb.insert(t0, s.seq0.wrapping_add(i as u16), s.ts0.wrapping_add(i as u32 * SPF), &payload(i));
            prop_assert!(matches!(o, InsertOutcome::Buffered | InsertOutcome::Duplicate));
        }
        let exp_len = expected(&s).len();
        let t = t0 + cfg.target_delay;
        let mut out = Vec::new();
        for _ in 0..exp_len {
            let f = jb.pop(t);
            prop_assert!(f.is_some());
            out.push(record(f.unwrap()));
        }
        check_output(&s, &out)?;
        let st = jb.stats();
        let missing = out.iter().filter(|o| o.0.is_none()).count() as u64;
        prop_assert_eq!(st.missing, missing);
        prop_assert_eq!(st.lost, missing);
        prop_assert_eq!(st.duplicate, dups);
        prop_assert_eq!(st.late, 0);
        prop_assert_eq!(st.buffered, 0);
    }

    /// Packets arrive over time with up to 100 ms of jitter (which reorders them) and
    /// late duplicates, while the consumer pops every 20 ms.
    #[test]
    fn streaming_arrival_in_order_with_exact_missing(s in scenario()) {
        let cfg = JitterConfig {
            target_delay: Duration::from_millis(120),
            ..JitterConfig::default()
        };
        let mut jb = JitterBuffer::new(cfg);
        let t0 = Instant::now();
        let mut events: Vec<(u64, usize)> = Vec::new(); // (arrival ms, index)
        for (i, p) in s.pkts.iter().enumerate() {
            if p.0 { continue; }
            events.push((i as u64 * 20 + u64::from(p.3), i));
            if p.1 {
                events.push((i as u64 * 20 + u64::from(p.4), i));
            }
        }
        events.sort();
        let exp_len = expected(&s).len();
        let mut out = Vec::new();
        let mut next = 0;
        let mut tick = 0u64;
        while out.len() < exp_len {
            let now_ms = tick * 20;
            while next < events.len() && events[next].0 <= now_ms {
                let (at, i) = events[next];
                jb.insert(t0 + Duration::from_millis(at), s.seq0.wrapping_add(i as u16), s.ts0.wrapping_add(i as u32 * SPF), &payload(i));
                next += 1;
            }
            if let Some(f) = jb.pop(t0 + Duration::from_millis(now_ms)) {
                out.push(record(f));
            }
            tick += 1;
            prop_assert!(tick < 10_000);
        }
        check_output(&s, &out)?;
        let st = jb.stats();
        prop_assert_eq!(st.late, 0);
        prop_assert_eq!(st.lost, out.iter().filter(|o| o.0.is_none()).count() as u64);
    }
}

#[test]
fn late_packet_after_its_frame_is_reported_late() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let seq0 = 65534u16;
    let ts0 = u32::MAX - 959;
    assert_eq!(jb.insert(t0, seq0, ts0, &[1]), InsertOutcome::Buffered);
    assert_eq!(
        jb.insert(t0, seq0.wrapping_add(2), ts0.wrapping_add(2 * SPF), &[3]),
        InsertOutcome::Buffered
    );
    let t = t0 + Duration::from_millis(60);
    assert!(matches!(jb.pop(t), Some(JitterFrame::Packet { .. })));
    let f = jb.pop(t).unwrap();
    assert!(
        matches!(
            f,
            JitterFrame::Missing {
                next: Some(&[3]),
                ..
            }
        ),
        "{f:?}"
    );
    assert_eq!(
        jb.insert(t, seq0.wrapping_add(1), ts0.wrapping_add(SPF), &[2]),
        InsertOutcome::Late
    );
    assert!(matches!(
        jb.pop(t),
        Some(JitterFrame::Packet { payload: &[3], .. })
    ));
    assert_eq!(jb.stats().late, 1);
}

#[test]
fn memory_is_bounded_and_overflow_skips_ahead() {
    let t0 = Instant::now();
    let cfg = JitterConfig {
        capacity: 16,
        max_delay: Duration::from_millis(200),
        ..JitterConfig::default()
    };
    let mut jb = JitterBuffer::new(cfg);
    for i in 0..100u32 {
        jb.insert(t0, i as u16, i * SPF, &[i as u8]);
    }
    let st = jb.stats();
    assert_eq!(st.buffered, 16);
    assert_eq!(st.overflow, 84);
    // Playout starts at the oldest packet still held; a burst over max_delay skips to the target delay.
    let f = jb.pop(t0 + Duration::from_millis(60)).unwrap();
    assert!(matches!(f, JitterFrame::Packet { .. }));
    let st = jb.stats();
    assert_eq!(st.buffered, 2, "{st:?}");
    assert_eq!(st.overflow, 84 + 13, "{st:?}");
}

#[test]
fn goes_idle_after_a_long_silence_and_rebuffers() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig {
        capacity: 8,
        ..JitterConfig::default()
    });
    jb.insert(t0, 1, 960, &[1]);
    let t = t0 + Duration::from_millis(60);
    assert!(jb.pop(t).is_some());
    for _ in 0..8 {
        assert!(matches!(jb.pop(t), Some(JitterFrame::Missing { .. })));
    }
    assert!(jb.pop(t).is_none(), "idle after capacity empty frames");
    // A new talk spurt far ahead re-buffers for the target delay.
    let t2 = t + Duration::from_secs(5);
    jb.insert(t2, 300, 960 * 300, &[9]);
    assert!(jb.pop(t2).is_none());
    assert!(matches!(
        jb.pop(t2 + Duration::from_millis(60)),
        Some(JitterFrame::Packet { payload: &[9], .. })
    ));
}

#[test]
fn one_stray_timestamp_does_not_flush_the_buffer() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::default());
    for k in 0..3u32 {
        jb.insert(t0, k as u16, k * SPF, &[k as u8 + 1]);
    }
    let t = t0 + Duration::from_millis(60);
    assert!(matches!(
        jb.pop(t),
        Some(JitterFrame::Packet { payload: &[1], .. })
    ));
    // A corrupt timestamp far ahead is dropped ...
    assert_eq!(jb.insert(t, 3, 1 << 30, &[9]), InsertOutcome::OutOfWindow);
    assert_eq!(jb.insert(t, 4, 3 * SPF, &[4]), InsertOutcome::Buffered);
    assert!(matches!(
        jb.pop(t),
        Some(JitterFrame::Packet { payload: &[2], .. })
    ));
    assert!(matches!(
        jb.pop(t),
        Some(JitterFrame::Packet { payload: &[3], .. })
    ));
    assert!(matches!(
        jb.pop(t),
        Some(JitterFrame::Packet { payload: &[4], .. })
    ));
    // ... but a real jump (two in a row) moves playout.
    assert_eq!(
        jb.insert(t, 5, 10_000 * SPF, &[5]),
        InsertOutcome::OutOfWindow
    );
    assert_eq!(jb.insert(t, 6, 10_001 * SPF, &[6]), InsertOutcome::Buffered);
    let mut got = Vec::new();
    for _ in 0..64 {
        if let Some(JitterFrame::Packet { payload, .. }) = jb.pop(t) {
            got.push(payload[0]);
        }
    }
    assert_eq!(got, vec![6]);
}

#[test]
fn reorder_dup_late_missing() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let p = [1u8, 2, 3];
    assert_eq!(jb.insert(t0, 10, 9600, &p), InsertOutcome::Buffered);
    assert_eq!(jb.insert(t0, 12, 11520, &p), InsertOutcome::Buffered);
    assert_eq!(jb.insert(t0, 10, 9600, &p), InsertOutcome::Duplicate);
    assert!(jb.pop(t0).is_none(), "still buffering");
    let t = t0 + Duration::from_millis(60);
    assert!(matches!(jb.pop(t), Some(JitterFrame::Packet { .. })));
    match jb.pop(t) {
        Some(JitterFrame::Missing { next, .. }) => assert!(next.is_some()),
        other => panic!("{other:?}"),
    }
    assert_eq!(jb.insert(t, 11, 10560, &p), InsertOutcome::Late);
    assert!(matches!(jb.pop(t), Some(JitterFrame::Packet { .. })));
    let s = jb.stats();
    assert_eq!(
        (s.late, s.duplicate, s.lost, s.missing, s.played),
        (1, 1, 1, 1, 2)
    );
}
