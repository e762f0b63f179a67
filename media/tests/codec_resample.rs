//! libopus wrappers (encode/decode, in-band FEC recovery, PLC) and the resampler.

use parlor_media::{
    Application, DecodeKind, EncoderConfig, JitterFrame, OpusDecoder, OpusEncoder, Resampler,
    FRAME_SAMPLES, MAX_PACKET_BYTES,
};

fn tone(freq: f64, amp: f64, rate: u32, tick: usize, channels: usize) -> Vec<i16> {
    let n = rate as usize / 50;
    let mut v = Vec::with_capacity(n * channels);
    for j in 0..n {
        let t = (tick * n + j) as f64 / f64::from(rate);
        let s = ((2.0 * std::f64::consts::PI * freq * t).sin() * amp * 32767.0) as i16;
        for _ in 0..channels {
            v.push(s);
        }
    }
    v
}

/// Goertzel power of `freq` in `x` at `rate`, relative to the signal energy.
fn tone_share(x: &[i16], freq: f64, rate: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / rate;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = f64::from(v) + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let p = s1 * s1 + s2 * s2 - c * s1 * s2;
    let e: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    if e == 0.0 {
        0.0
    } else {
        2.0 * p / (e * x.len() as f64)
    }
}

fn corr(a: &[i16], b: &[i16]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-9)
}

#[test]
fn encode_decode_roundtrip_keeps_the_tone() {
    let mut enc = OpusEncoder::new(EncoderConfig::default()).unwrap();
    let mut dec = OpusDecoder::new(1).unwrap();
    assert!(enc.pre_skip() > 0 && enc.pre_skip() < 1000);
    let mut pkt = vec![0u8; MAX_PACKET_BYTES];
    let mut out = vec![0i16; FRAME_SAMPLES * 6];
    let mut all = Vec::new();
    for t in 0..50 {
        let n = enc
            .encode(&tone(440.0, 0.3, 48_000, t, 1), &mut pkt)
            .unwrap();
        let info = parlor_media::parse_packet(&pkt[..n]).unwrap();
        assert_eq!(info.duration_samples(), 960);
        let f = JitterFrame::Packet {
            seq: t as u64,
            ts: 0,
            payload: &pkt[..n],
        };
        assert_eq!(dec.decode_frame(&f, &mut out).unwrap(), DecodeKind::Normal);
        all.extend_from_slice(&out[..FRAME_SAMPLES]);
    }
    assert!(tone_share(&all[24_000..], 440.0, 48_000.0) > 0.9);
    assert!(enc.encode(&[0i16; 10], &mut pkt).is_err());
}

/// Lost packet N is rebuilt from the LBRR data in packet N+1, and sounds like the
/// original frame; with no next packet, PLC fills the gap.
#[test]
fn fec_recovers_packet_n_from_n_plus_1() {
    let mut enc = OpusEncoder::new(EncoderConfig {
        bitrate: 24_000,
        application: Application::Voip,
        fec: true,
        expected_loss_percent: 20,
        ..EncoderConfig::default()
    })
    .unwrap();
    let mut pkts = Vec::new();
    let mut buf = vec![0u8; MAX_PACKET_BYTES];
    for t in 0..100 {
        // A vowel-like signal: 200 Hz fundamental with harmonics, amplitude-modulated.
        let pcm: Vec<i16> = (0..FRAME_SAMPLES)
            .map(|j| {
                let x = (t * FRAME_SAMPLES + j) as f64 / 48_000.0;
                let env = 0.6 + 0.4 * (2.0 * std::f64::consts::PI * 3.0 * x).sin();
                let v: f64 = (1..6)
                    .map(|h| (2.0 * std::f64::consts::PI * 200.0 * h as f64 * x).sin() / h as f64)
                    .sum();
                (v * env * 6000.0) as i16
            })
            .collect();
        let n = enc.encode(&pcm, &mut buf).unwrap();
        pkts.push(buf[..n].to_vec());
    }
    // Find a frame whose successor carries FEC, then compare recovery to a clean decode.
    let mut recovered = 0;
    for lost in 40..95 {
        let mut clean = OpusDecoder::new(1).unwrap();
        let mut lossy = OpusDecoder::new(1).unwrap();
        let mut a = vec![0i16; FRAME_SAMPLES];
        let mut b = vec![0i16; FRAME_SAMPLES];
        for p in &pkts[..lost] {
            clean.decode(p, &mut a).unwrap();
            lossy.decode(p, &mut b).unwrap();
        }
        clean.decode(&pkts[lost], &mut a).unwrap();
        let f = JitterFrame::Missing {
            ts: 0,
            next: Some(&pkts[lost + 1]),
        };
        let kind = lossy.decode_frame(&f, &mut b).unwrap();
        if kind == DecodeKind::Fec {
            let c = corr(&a, &b);
            assert!(
                c > 0.8,
                "FEC frame {lost} correlates only {c:.2} with the original"
            );
            recovered += 1;
        }
    }
    assert!(recovered >= 10, "only {recovered} frames had FEC");

    // No next packet: PLC, a full frame.
    let mut dec = OpusDecoder::new(1).unwrap();
    let mut out = vec![0i16; FRAME_SAMPLES];
    dec.decode(&pkts[0], &mut out).unwrap();
    let f = JitterFrame::Missing { ts: 0, next: None };
    assert_eq!(dec.decode_frame(&f, &mut out).unwrap(), DecodeKind::Plc);
    // Garbage in a packet is concealed, not an error.
    let f = JitterFrame::Packet {
        seq: 0,
        ts: 0,
        payload: &[0xFF, 0xFF, 0xFF],
    };
    assert_eq!(dec.decode_frame(&f, &mut out).unwrap(), DecodeKind::Plc);
}

#[test]
fn resampler_down_and_up_keeps_tone_and_length() {
    for (from, to) in [
        (48_000, 8_000),
        (48_000, 16_000),
        (48_000, 24_000),
        (16_000, 48_000),
        (8_000, 48_000),
        (24_000, 48_000),
    ] {
        let mut r = Resampler::new(from, to, 1, 1).unwrap();
        let mut out = vec![0i16; r.output_len()];
        let mut all = Vec::new();
        let frames = 100;
        for t in 0..frames {
            let n = r.process(&tone(1000.0, 0.5, from, t, 1), &mut out).unwrap();
            assert_eq!(n, to as usize / 50, "fixed output per frame, no drift");
            all.extend_from_slice(&out[..n]);
        }
        assert_eq!(all.len(), frames * to as usize / 50);
        let d = r.delay();
        let share = tone_share(&all[d + 1000..], 1000.0, f64::from(to));
        assert!(share > 0.95, "{from}->{to}: 1 kHz share {share:.3}");
    }
}

#[test]
fn channel_conversion() {
    // Stereo 48 kHz -> mono 16 kHz -> stereo 48 kHz.
    let mut down = Resampler::new(48_000, 16_000, 2, 1).unwrap();
    let mut up = Resampler::new(16_000, 48_000, 1, 2).unwrap();
    assert_eq!(down.input_len(), 1920);
    assert_eq!(down.output_len(), 320);
    assert_eq!(up.output_len(), 1920);
    let mut mid = vec![0i16; 320];
    let mut out = vec![0i16; 1920];
    let mut left = Vec::new();
    for t in 0..50 {
        let inp = tone(500.0, 0.4, 48_000, t, 2);
        down.process(&inp, &mut mid).unwrap();
        up.process(&mid, &mut out).unwrap();
        for lr in out.chunks_exact(2) {
            assert_eq!(
                lr[0], lr[1],
                "mono up-mix puts the same sample on both sides"
            );
            left.push(lr[0]);
        }
    }
    assert!(tone_share(&left[10_000..], 500.0, 48_000.0) > 0.95);
    // Stereo to mono is the mean of the two sides.
    let mut same = Resampler::new(48_000, 48_000, 2, 1).unwrap();
    let inp: Vec<i16> = (0..1920)
        .map(|i| if i % 2 == 0 { 1000 } else { 3000 })
        .collect();
    let mut o = vec![0i16; 960];
    same.process(&inp, &mut o).unwrap();
    assert!(o.iter().all(|&v| v == 2000));
    assert!(Resampler::new(44_100, 48_000, 1, 1).is_ok());
    assert!(Resampler::new(48_000, 11_025, 1, 1).is_err());
    assert!(Resampler::new(48_000, 16_000, 3, 1).is_err());
}
