//! Criterion benches for the audio path. See `benches/README.md` for the command,
//! the machine and the last results.
//!
//! * `pipeline/decode_mix_encode/{2,10,50}`: one 20 ms tick of a call: N × (Opus
//!   decode) + mix + one Opus encode. Real-time factor = 20 ms / time.
//! * `pipeline/mix_encode/10`: mix of 10 decoded frames + encode (the ≥ 200× target),
//!   at libopus complexity 10; `mix_encode_c5` at complexity 5; `mix_only` without encode;
//!   `mix_encode_cpu_time` = `mix_encode` measured in thread CPU time (`CLOCK_THREAD_CPUTIME_ID`).
//! * `webm/write_packet`: one packet into the WebM writer (cluster flush amortized).
//! * `jitter/insert_pop`: one packet in, one frame out, steady state (< 1 µs target).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use parlor_media::{
    EncoderConfig, JitterBuffer, JitterConfig, JitterFrame, Mixer, OpusDecoder, OpusEncoder,
    WebmConfig, WebmWriter, FRAME_SAMPLES, MAX_PACKET_BYTES,
};

fn tone(freq: f64, k: usize) -> Vec<i16> {
    (0..FRAME_SAMPLES)
        .map(|j| {
            let t = (k * FRAME_SAMPLES + j) as f64 / 48_000.0;
            ((2.0 * std::f64::consts::PI * freq * t).sin() * 6000.0) as i16
        })
        .collect()
}

/// 50 packets (1 s) of a participant's tone.
fn packets(freq: f64) -> Vec<Vec<u8>> {
    let mut enc = OpusEncoder::new(EncoderConfig::default()).unwrap();
    let mut buf = vec![0u8; MAX_PACKET_BYTES];
    (0..50)
        .map(|k| {
            let n = enc.encode(&tone(freq, k), &mut buf).unwrap();
            buf[..n].to_vec()
        })
        .collect()
}

/// CPU time this thread has run, in ns (`CLOCK_THREAD_CPUTIME_ID`), so a bench on a
/// shared, loaded machine is not charged for time spent waiting for a core.
fn thread_cpu_ns() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusive `ts`.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (r == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

#[path = "../tests/common/sink.rs"]
mod sink;
use sink::Sink;

fn mix_encoder() -> OpusEncoder {
    mix_encoder_c(10)
}

fn mix_encoder_c(complexity: u8) -> OpusEncoder {
    OpusEncoder::new(EncoderConfig {
        complexity,
        bitrate: 64_000,
        application: parlor_media::Application::Audio,
        fec: false,
        expected_loss_percent: 0,
        ..EncoderConfig::default()
    })
    .unwrap()
}

fn pipeline(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    for n in [2usize, 10, 50] {
        let streams: Vec<_> = (0..n)
            .map(|i| packets(440.0 + 220.0 * (i % 30) as f64))
            .collect();
        let mut decs: Vec<_> = (0..n).map(|_| OpusDecoder::new(1).unwrap()).collect();
        let mut mixer = Mixer::new(1).unwrap();
        let inputs: Vec<_> = (0..n).map(|_| mixer.add_input()).collect();
        let mut enc = mix_encoder();
        let mut pcm = vec![0i16; FRAME_SAMPLES];
        let mut mix = vec![0i16; FRAME_SAMPLES];
        let mut out = vec![0u8; MAX_PACKET_BYTES];
        let mut k = 0usize;
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("decode_mix_encode", n), |b| {
            b.iter(|| {
                for p in 0..n {
                    let payload = &streams[p][k % 50];
                    let f = JitterFrame::Packet {
                        seq: k as u64,
                        ts: 0,
                        payload,
                    };
                    decs[p].decode_frame(&f, &mut pcm).unwrap();
                    mixer.push(inputs[p], &pcm).unwrap();
                }
                mixer.mix(&mut mix).unwrap();
                black_box(enc.encode(&mix, &mut out).unwrap());
                k += 1;
            })
        });
    }
    // Mix + encode only, 10 participants (decoded frames ready), at libopus
    // complexity 10 (default) and 5; and the mix alone.
    let frames: Vec<Vec<i16>> = (0..10).map(|i| tone(440.0 + 220.0 * i as f64, 3)).collect();
    let mut mixer = Mixer::new(1).unwrap();
    let inputs: Vec<_> = (0..10).map(|_| mixer.add_input()).collect();
    let mut mix = vec![0i16; FRAME_SAMPLES];
    let mut out = vec![0u8; MAX_PACKET_BYTES];
    for (name, cx) in [("mix_encode", 10u8), ("mix_encode_c5", 5)] {
        let mut enc = mix_encoder_c(cx);
        g.bench_function(BenchmarkId::new(name, 10), |b| {
            b.iter(|| {
                for (i, f) in inputs.iter().zip(&frames) {
                    mixer.push(*i, f).unwrap();
                }
                mixer.mix(&mut mix).unwrap();
                black_box(enc.encode(&mix, &mut out).unwrap());
            })
        });
    }
    // The same mix + encode, charged CPU time only (not time spent waiting for a core).
    for (name, cx) in [("mix_encode_cpu_time", 10u8), ("mix_encode_c5_cpu_time", 5)] {
        if thread_cpu_ns().is_none() {
            break;
        }
        let mut enc = mix_encoder_c(cx);
        g.bench_function(BenchmarkId::new(name, 10), |b| {
            b.iter_custom(|iters| {
                let start = thread_cpu_ns().unwrap_or(0);
                for _ in 0..iters {
                    for (i, f) in inputs.iter().zip(&frames) {
                        mixer.push(*i, f).unwrap();
                    }
                    mixer.mix(&mut mix).unwrap();
                    black_box(enc.encode(&mix, &mut out).unwrap());
                }
                Duration::from_nanos(thread_cpu_ns().unwrap_or(0).saturating_sub(start))
            })
        });
    }
    g.bench_function(BenchmarkId::new("mix_only", 10), |b| {
        b.iter(|| {
            for (i, f) in inputs.iter().zip(&frames) {
                mixer.push(*i, f).unwrap();
            }
            black_box(mixer.mix(&mut mix).unwrap());
        })
    });
    g.finish();
}

fn webm(c: &mut Criterion) {
    let pk = packets(440.0);
    let mut w = WebmWriter::new(Sink(0), WebmConfig::default()).unwrap();
    let mut k = 0u64;
    let mut g = c.benchmark_group("webm");
    g.throughput(Throughput::Elements(1));
    g.bench_function("write_packet", |b| {
        b.iter(|| {
            w.write_packet(k * FRAME_SAMPLES as u64, &pk[(k % 50) as usize])
                .unwrap();
            k += 1;
        })
    });
    g.finish();
}

fn jitter(c: &mut Criterion) {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let t0 = Instant::now();
    let payload = [0x78u8; 80];
    // Prime with 3 frames of delay, then one in / one out per iteration.
    for k in 0..3u32 {
        jb.insert(t0, k as u16, k * 960, &payload);
    }
    let mut k = 3u64;
    let mut g = c.benchmark_group("jitter");
    g.throughput(Throughput::Elements(1));
    g.bench_function("insert_pop", |b| {
        b.iter(|| {
            let now = t0 + Duration::from_millis(60 + k * 20);
            jb.insert(now, k as u16, (k * 960) as u32, &payload);
            black_box(jb.pop(now));
            k += 1;
        })
    });
    g.finish();
}

criterion_group!(benches, pipeline, webm, jitter);
criterion_main!(benches);
