//! Mixer properties: full-scale inputs never wrap or hard-clip; an absent, muted or
//! late-joining input is silence for that input only and the mix keeps time.

use parlor_media::{audio_level, Mixer, FRAME_SAMPLES};
use proptest::prelude::*;

fn sine(freq: f64, amp: f64, phase: f64, tick: usize) -> Vec<i16> {
    (0..FRAME_SAMPLES)
        .map(|j| {
            let t = (tick * FRAME_SAMPLES + j) as f64 / 48_000.0;
            ((2.0 * std::f64::consts::PI * freq * t + phase).sin() * amp * 32767.0).round() as i16
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Two full-scale inputs (any tones, phases, or extreme square waves) never wrap
    /// (the output keeps the sign of the sum) and never reach full scale.
    #[test]
    fn two_full_scale_inputs_never_wrap(
        f1 in 50.0f64..8000.0, f2 in 50.0f64..8000.0,
        p1 in 0.0f64..6.3, p2 in 0.0f64..6.3,
        square in any::<bool>(), ticks in 5usize..30,
    ) {
        let mut m = Mixer::new(1).unwrap();
        let a = m.add_input();
        let b = m.add_input();
        let mut out = vec![0i16; FRAME_SAMPLES];
        for t in 0..ticks {
            let (mut x, mut y) = (sine(f1, 1.0, p1, t), sine(f2, 1.0, p2, t));
            if square {
                for v in x.iter_mut().chain(y.iter_mut()) {
                    *v = if *v >= 0 { i16::MAX } else { i16::MIN };
                }
            }
            m.push(a, &x).unwrap();
            m.push(b, &y).unwrap();
            m.mix(&mut out).unwrap();
            for j in 0..FRAME_SAMPLES {
                let sum = i32::from(x[j]) + i32::from(y[j]);
                let o = i32::from(out[j]);
                if sum > 3000 { prop_assert!(o > 0, "wrapped: sum {} -> {}", sum, o); }
                if sum < -3000 { prop_assert!(o < 0, "wrapped: sum {} -> {}", sum, o); }
                prop_assert!(o.abs() < 32767, "hard clip at tick {} sample {}: {}", t, j, o);
            }
        }
    }

    /// Input B is absent for `len` ticks (a 1 s absence at least): during that time the
    /// mix is exactly A alone; before and after, A + B. A is never affected.
    #[test]
    fn absence_is_silence_for_that_input_only(
        start in 0usize..40, len in 50usize..80, gain_a in 0.2f32..1.0, mute in any::<bool>(),
    ) {
        let mut m = Mixer::new(1).unwrap();
        let a = m.add_input();
        let b = m.add_input();
        m.set_gain(a, gain_a).unwrap();
        let mut out = vec![0i16; FRAME_SAMPLES];
        for t in 0..start + len + 20 {
            let x = sine(440.0, 0.3, 0.0, t);
            let y = sine(660.0, 0.3, 1.0, t);
            m.push(a, &x).unwrap();
            let absent = t >= start && t < start + len;
            if absent && mute {
                m.set_muted(b, true).unwrap();
                m.push(b, &y).unwrap(); // muted: pushed but silent
            } else if !absent {
                m.set_muted(b, false).unwrap();
                m.push(b, &y).unwrap();
            }
            m.mix(&mut out).unwrap();
            for j in 0..FRAME_SAMPLES {
                let mut expect = f32::from(x[j]) * gain_a;
                if !absent { expect += f32::from(y[j]); }
                let d = (f32::from(out[j]) - expect).abs();
                prop_assert!(d <= 2.0, "tick {} sample {}: {} vs {}", t, j, out[j], expect);
            }
        }
    }
}

#[test]
fn late_joiner_starts_at_its_own_offset() {
    let mut m = Mixer::new(1).unwrap();
    let a = m.add_input();
    let mut out = vec![0i16; FRAME_SAMPLES];
    for t in 0..30 {
        m.push(a, &sine(440.0, 0.2, 0.0, t)).unwrap();
        m.mix(&mut out).unwrap();
    }
    assert_eq!(m.ticks(), 30);
    // B joins at tick 30 with its own first frame (its stream starts now).
    let b = m.add_input();
    m.push(a, &sine(440.0, 0.2, 0.0, 30)).unwrap();
    let first_b = sine(660.0, 0.2, 0.0, 0);
    m.push(b, &first_b).unwrap();
    m.mix(&mut out).unwrap();
    let a30 = sine(440.0, 0.2, 0.0, 30);
    for j in 0..FRAME_SAMPLES {
        let e = i32::from(a30[j]) + i32::from(first_b[j]);
        assert!((i32::from(out[j]) - e).abs() <= 1, "{j}");
    }
    assert_eq!(m.ticks(), 31);
}

#[test]
fn levels_per_input_and_mix() {
    let mut m = Mixer::new(1).unwrap();
    let a = m.add_input();
    let b = m.add_input();
    let loud = sine(440.0, 0.5, 0.0, 0);
    let quiet = sine(660.0, 0.01, 0.0, 0);
    assert_eq!(m.push(a, &loud).unwrap(), audio_level(&loud));
    m.push(b, &quiet).unwrap();
    assert!(m.input_level(a).unwrap() < m.input_level(b).unwrap());
    assert_eq!(audio_level(&loud), 9); // -6 dB peak, -9 dBov RMS
    assert_eq!(audio_level(&quiet), 43);
    let mut out = vec![0i16; FRAME_SAMPLES];
    let lvl = m.mix(&mut out).unwrap();
    assert_eq!(lvl, 9);
    m.mix(&mut out).unwrap();
    assert_eq!(m.input_level(a), Some(127), "absent this tick");
    assert!(m.push(a, &loud[..10]).is_err());
}
