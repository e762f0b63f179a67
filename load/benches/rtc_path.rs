//! Per-packet cost of the WebRTC layer the SFU worker pays on every packet, measured on two `rtc`
//! peer connections connected in memory (ICE + DTLS done for real, datagrams handed over without
//! sockets):
//! - `ingress`: `handle_read` of one SRTP audio packet + `poll_read` (decrypt, interceptors, demux);
//! - `egress`: `write_rtp` of one packet on a sender + `poll_write` (interceptors, encrypt);
//! - `forward_fanout/N`: one ingress plus N egress writes, what a packet to N subscribers costs.
//!
//! Run: `cargo bench -p parlor-load --bench rtc_path`.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use parlor_load::pc::{self, TrackSpec};
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::RTCPeerConnection;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

struct Pair {
    a: RTCPeerConnection,
    b: RTCPeerConnection,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
    sender: RTCRtpSenderId,
    ssrc: u32,
    pt: u8,
    seq: u16,
}

fn deliver(
    to: &mut RTCPeerConnection,
    local: SocketAddr,
    peer: SocketAddr,
    data: &[u8],
    now: Instant,
) {
    let _ = to.handle_read(TaggedBytesMut {
        now,
        transport: TransportContext {
            local_addr: local,
            peer_addr: peer,
            ecn: None,
            transport_protocol: TransportProtocol::UDP,
        },
        message: BytesMut::from(data),
    });
}

fn connected(pc: &mut RTCPeerConnection, flag: &mut bool) {
    while let Some(ev) = pc.poll_event() {
        if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(
            RTCPeerConnectionState::Connected,
        ) = ev
        {
            *flag = true;
        }
    }
    while pc.poll_read().is_some() {}
}

fn pair() -> Pair {
    let a_addr: SocketAddr = "127.0.0.1:41001".parse().unwrap();
    let b_addr: SocketAddr = "127.0.0.1:41002".parse().unwrap();
    let ssrc = 0x1234_5678;
    let now = Instant::now();
    let (mut a, senders) =
        pc::build(now, a_addr, &[TrackSpec { ssrc, video: false }], None).unwrap();
    let (mut b, _) = pc::build(now, b_addr, &[], None).unwrap();
    let offer = a.create_offer(None).unwrap();
    a.set_local_description(now, offer).unwrap();
    let sdp = a.local_description().unwrap().sdp;
    b.set_remote_description(now, RTCSessionDescription::offer(sdp).unwrap())
        .unwrap();
    let ans = b.create_answer(None).unwrap();
    b.set_local_description(now, ans).unwrap();
    let sdp = b.local_description().unwrap().sdp;
    a.set_remote_description(now, RTCSessionDescription::answer(sdp).unwrap())
        .unwrap();
    let (mut ca, mut cb) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(ca && cb) {
        assert!(Instant::now() < deadline, "in-memory pair did not connect");
        let now = Instant::now();
        while let Some(o) = a.poll_write() {
            deliver(&mut b, b_addr, a_addr, &o.message, now);
        }
        while let Some(o) = b.poll_write() {
            deliver(&mut a, a_addr, b_addr, &o.message, now);
        }
        connected(&mut a, &mut ca);
        connected(&mut b, &mut cb);
        for pc in [&mut a, &mut b] {
            if pc.poll_timeout().is_some_and(|t| t <= now) {
                let _ = pc.handle_timeout(now);
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let sender = senders[0];
    let pt = a
        .rtp_sender(sender)
        .and_then(|mut s| {
            s.get_parameters()
                .rtp_parameters
                .codecs
                .first()
                .map(|c| c.payload_type)
        })
        .unwrap_or(111);
    Pair {
        a,
        b,
        a_addr,
        b_addr,
        sender,
        ssrc,
        pt,
        seq: 1,
    }
}

impl Pair {
    /// Write one RTP packet on A and return the datagrams A emits (the SRTP packet).
    fn write(&mut self, now: Instant, out: &mut Vec<BytesMut>) {
        self.seq = self.seq.wrapping_add(1);
        let pkt = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                payload_type: self.pt,
                sequence_number: self.seq,
                timestamp: self.seq as u32 * 960,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: bytes::Bytes::from_static(&[0x78; 80]),
        };
        if let Some(mut s) = self.a.rtp_sender(self.sender) {
            let _ = s.write_rtp(now, pkt);
        }
        while let Some(o) = self.a.poll_write() {
            out.push(o.message);
        }
    }

    fn ingress(&mut self, dgram: &[u8], now: Instant) -> usize {
        deliver(&mut self.b, self.b_addr, self.a_addr, dgram, now);
        let mut n = 0;
        while let Some(m) = self.b.poll_read() {
            if matches!(m.message, RTCMessage::RtpPacket(..)) {
                n += 1;
            }
        }
        while self.b.poll_write().is_some() {}
        n
    }

    /// The direct ingress (vendor/README.md) as the server's worker drives it: decrypt, the
    /// interceptor and endpoint handlers, the media queue, the next deadline.
    fn ingress_direct(&mut self, dgram: &[u8], now: Instant) -> usize {
        if !self.b.read_rtp_direct(now, dgram).unwrap_or(false) {
            return self.ingress(dgram, now);
        }
        let mut n = 0;
        while let Some(m) = self.b.poll_media_read() {
            if matches!(m.message, RTCMessage::RtpPacket(..)) {
                n += 1;
            }
        }
        black_box(self.b.poll_timeout());
        n
    }
}

/// `iters` packets written by A (untimed) and received by B through `ingress` (timed).
fn timed_ingress(
    p: &mut Pair,
    iters: u64,
    ingress: fn(&mut Pair, &[u8], Instant) -> usize,
) -> Duration {
    let mut total = Duration::ZERO;
    let mut out = Vec::with_capacity(4);
    for _ in 0..iters {
        out.clear();
        p.write(Instant::now(), &mut out);
        let t = Instant::now();
        for d in &out {
            black_box(ingress(p, d, t));
        }
        total += t.elapsed();
    }
    total
}

fn bench(c: &mut Criterion) {
    let mut p = pair();
    let mut g = c.benchmark_group("rtc_path");
    g.throughput(Throughput::Elements(1));
    g.bench_function("egress_write_rtp_encrypt", |bch| {
        let mut out = Vec::with_capacity(4);
        bch.iter(|| {
            out.clear();
            p.write(Instant::now(), &mut out);
            black_box(out.len())
        })
    });
    g.bench_function("ingress_handle_read_decrypt", |bch| {
        bch.iter_custom(|iters| timed_ingress(&mut p, iters, Pair::ingress))
    });
    g.bench_function("ingress_direct_decrypt", |bch| {
        bch.iter_custom(|iters| timed_ingress(&mut p, iters, Pair::ingress_direct))
    });
    for n in [1u64, 9, 50] {
        g.throughput(Throughput::Elements(n));
        g.bench_with_input(BenchmarkId::new("forward_fanout", n), &n, |bch, &n| {
            bch.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut out = Vec::with_capacity(64);
                for _ in 0..iters {
                    out.clear();
                    let now = Instant::now();
                    p.write(now, &mut out);
                    let t = Instant::now();
                    for d in &out {
                        black_box(p.ingress(d, t));
                    }
                    // N subscriber legs: a write + encrypt each (same sender stands in for N).
                    let mut eg = Vec::with_capacity(n as usize);
                    for _ in 0..n {
                        p.write(t, &mut eg);
                    }
                    total += t.elapsed();
                    // Untimed: let B see every sequence so its NACK generator stays idle.
                    for d in &eg {
                        black_box(p.ingress(d, t));
                    }
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
