//! The voice assistant's audio work per 20 ms frame, both directions of the bridge
//! (`src/assistant/bridge.rs`): caller Opus → decode (48 kHz) → resample to the provider's 24 kHz,
//! and reply PCM 24 kHz → resample to 48 kHz → Opus encode. The provider itself is not included
//! (local or remote model cost is in docs/VOICE.md). Run: `cargo bench --bench assistant_bridge`;
//! one call costs (in + out) / 20 ms of one core.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use parlor_media::{EncoderConfig, OpusDecoder, OpusEncoder, Resampler};
use std::hint::black_box;

/// 20 ms of a voice-like signal (two tones with a slow envelope) at 48 kHz.
fn voice_frame(n: usize) -> Vec<i16> {
    (0..960)
        .map(|i| {
            let t = (n * 960 + i) as f64 / 48_000.0;
            let env = 0.5 + 0.5 * (2.0 * std::f64::consts::PI * 3.0 * t).sin();
            let s = (2.0 * std::f64::consts::PI * 180.0 * t).sin()
                + 0.4 * (2.0 * std::f64::consts::PI * 900.0 * t).sin();
            (8000.0 * env * s) as i16
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut enc = OpusEncoder::new(EncoderConfig {
        channels: 1,
        ..Default::default()
    })
    .unwrap();
    let packets: Vec<Vec<u8>> = (0..50)
        .map(|n| {
            let mut out = [0u8; 1500];
            let len = enc.encode(&voice_frame(n), &mut out).unwrap();
            out[..len].to_vec()
        })
        .collect();
    let mut g = c.benchmark_group("assistant_bridge");
    g.throughput(Throughput::Elements(1));
    g.bench_function("caller_frame_decode_resample_48k_to_24k", |b| {
        let mut dec = OpusDecoder::new(1).unwrap();
        let mut down = Resampler::new(48_000, 24_000, 1, 1).unwrap();
        let mut pcm48 = [0i16; 5760];
        let mut pcm24 = [0i16; 480];
        let mut i = 0;
        b.iter(|| {
            let n = dec.decode(&packets[i % packets.len()], &mut pcm48).unwrap();
            down.process(&pcm48[..n], &mut pcm24).unwrap();
            i += 1;
            black_box(pcm24.to_vec()) // the bridge hands the provider an owned frame
        })
    });
    g.bench_function("reply_frame_resample_24k_to_48k_encode", |b| {
        let mut enc = OpusEncoder::new(EncoderConfig {
            channels: 1,
            ..Default::default()
        })
        .unwrap();
        let mut up = Resampler::new(24_000, 48_000, 1, 1).unwrap();
        let reply: Vec<[i16; 480]> = (0..50)
            .map(|n| {
                let f = voice_frame(n);
                let mut half = [0i16; 480];
                for (o, s) in half.iter_mut().zip(f.iter().step_by(2)) {
                    *o = *s;
                }
                half
            })
            .collect();
        let mut pcm48 = [0i16; 960];
        let mut pkt = [0u8; 1500];
        let mut i = 0;
        b.iter(|| {
            up.process(&reply[i % reply.len()], &mut pcm48).unwrap();
            i += 1;
            black_box(enc.encode(&pcm48, &mut pkt).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
