//! Per-packet forwarding cost: the Forwarder decision and the per-subscriber RTP header rewrite that the
//! media worker does for every (packet, subscriber) pair. Run: `cargo bench --bench forwarding`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use parlor::sfu::forwarder::{Decision, Forwarder, PacketMeta};
use std::hint::black_box;

fn packet(seq: u16) -> rtc::rtp::Packet {
    rtc::rtp::Packet {
        header: rtc::rtp::header::Header {
            version: 2,
            payload_type: 111,
            sequence_number: seq,
            timestamp: seq as u32 * 960,
            ssrc: 0x1234_5678,
            ..Default::default()
        },
        payload: bytes::Bytes::from(vec![0xAB; 120]),
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("forward");
    g.throughput(Throughput::Elements(1));
    g.bench_function("forwarder_decision", |b| {
        let mut f = Forwarder::new(false, 48000);
        let mut seq = 0u16;
        b.iter(|| {
            seq = seq.wrapping_add(1);
            let m = PacketMeta {
                seq,
                ts: seq as u32 * 960,
                layer: 0,
                keyframe: false,
                arrival_us: 0,
            };
            black_box(f.on_packet(black_box(&m)))
        })
    });
    for subs in [1usize, 10, 50] {
        g.throughput(Throughput::Elements(subs as u64));
        g.bench_with_input(
            BenchmarkId::new("decision_and_rewrite_fanout", subs),
            &subs,
            |b, &subs| {
                let mut fwd: Vec<Forwarder> =
                    (0..subs).map(|_| Forwarder::new(false, 48000)).collect();
                let mut seq = 0u16;
                let pkt = packet(0);
                b.iter(|| {
                    seq = seq.wrapping_add(1);
                    let m = PacketMeta {
                        seq,
                        ts: seq as u32 * 960,
                        layer: 0,
                        keyframe: false,
                        arrival_us: 0,
                    };
                    for (i, f) in fwd.iter_mut().enumerate() {
                        if let Decision::Forward { seq, ts } = f.on_packet(&m) {
                            // What the worker does per subscriber: share the payload, rewrite the header.
                            let mut out = pkt.clone();
                            out.header.ssrc = i as u32;
                            out.header.payload_type = 111;
                            out.header.sequence_number = seq;
                            out.header.timestamp = ts;
                            out.header.extension = false;
                            out.header.extensions.clear();
                            black_box(&out);
                        }
                    }
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
