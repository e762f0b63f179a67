//! User-space egress cost per output packet of the SFU forwarding path: one RTP packet in, N
//! subscriber legs protected (SRTP) and queued for `sendmmsg`, no system call. Per leg and packet
//! `egress/fanout/N` does what `Worker::forward_track` (src/sfu/worker/forwarding.rs) does through
//! the direct egress (src/sfu/egress.rs): the 12-byte header and the shared payload marshalled into
//! one reused buffer, `egress::protect` (SRTP with the leg's outbound context, the stream's
//! sender-report counts) and the datagram queued, with the leg's cached route, in a preallocated
//! batch, cleared after the fan-out as `SendBatch::send` does (minus the syscall).
//! `egress_pipeline/fanout/N` is the path it replaced, for comparison in the same run: a fresh
//! header around the payload, `write_rtp` through the leg's `rtc` write pipeline, `poll_write`.
//!
//! Each leg is a real connected pair built in memory with the Sans-I/O API: the server side exactly
//! as the worker builds subscriber legs (`peer::build`, an Opus track added like `subscribe`, the
//! server offers), the client side a plain `rtc` peer connection like tests/common/lk.rs; ICE and
//! DTLS run by handing datagrams between the two with a synthetic clock. Timers and stray output
//! (sender reports, consent checks) are pumped every 50 packets outside the timed section.
//!
//! Groups: `egress/fanout/N` and `egress_pipeline/fanout/N` (N = 1, 10, 50 legs; ns per output
//! packet), `srtp_only` (bare
//! `rtc::srtp` encrypt of the same 112-byte packet), `marshal_only` (`Packet::marshal`).
//!
//! Run: `cargo bench --bench egress -- --warm-up-time 1 --measurement-time 3`

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use parlor::sfu::egress::{self, OutStream};
use parlor::sfu::peer;
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{MediaEngine, MIME_TYPE_OPUS};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::sansio::Protocol;
use rtc::shared::error::Error::ErrPeerConnLocalDescriptionNil as ErrNoDesc;
use rtc::shared::marshal::Marshal;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use rtc::srtp::context::Context;
use rtc::srtp::protection_profile::ProtectionProfile;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const SERVER: &str = "10.0.0.1:5000";
/// Packets between untimed housekeeping rounds (1 s of 20 ms Opus frames).
const CHUNK: u64 = 50;
/// A queued datagram, as in `SendBatch`.
type Datagram = (SocketAddr, Bytes);
const FRAME: Duration = Duration::from_millis(20);

/// ~100-byte Opus frame: TOC 0xF8 (CELT FB 20 ms) + 99 bytes.
fn opus_payload() -> Bytes {
    let mut p = vec![0xF8u8];
    p.extend((0..99u8).map(|i| i.wrapping_mul(37)));
    Bytes::from(p)
}

/// One subscriber leg: the server-side connection and sender, and the client it is connected to.
struct Leg {
    server: RTCPeerConnection,
    client: RTCPeerConnection,
    /// The direct egress's stream state and cached route (as the worker keeps them).
    stream: OutStream,
    route: Option<rtc::peer_connection::DirectRoute>,
    sender_id: RTCRtpSenderId,
    ssrc: u32,
    pt: u8,
    /// Last connection state each side reported.
    server_state: Option<RTCPeerConnectionState>,
    client_state: Option<RTCPeerConnectionState>,
}

/// A client peer connection like tests/common/lk.rs builds: default codecs and interceptors, one
/// UDP host candidate.
fn client_pc(now: Instant, addr: SocketAddr) -> RTCPeerConnection {
    let se = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .build();
    let mut me = MediaEngine::default();
    me.register_default_codecs().expect("client codecs");
    let reg = register_default_interceptors(Registry::new(), &mut me).expect("client interceptors");
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(se)
        .with_media_engine(me)
        .with_interceptor_registry(reg)
        .build(now)
        .expect("client peer connection");
    let cand = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".into(),
            address: addr.ip().to_string(),
            port: addr.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .expect("client candidate");
    let init = RTCIceCandidate::from(&cand)
        .to_json()
        .expect("candidate json");
    pc.add_local_candidate(init)
        .expect("client local candidate");
    pc
}

fn udp(local_addr: SocketAddr, peer_addr: SocketAddr) -> TransportContext {
    TransportContext {
        local_addr,
        peer_addr,
        ecn: None,
        transport_protocol: TransportProtocol::UDP,
    }
}

/// Hand every queued datagram of `from` to `to`, addresses swapped. Returns how many moved.
fn transfer(from: &mut RTCPeerConnection, to: &mut RTCPeerConnection, now: Instant) -> usize {
    let mut n = 0;
    while let Some(out) = from.poll_write() {
        n += 1;
        let _ = to.handle_read(TaggedBytesMut {
            now,
            transport: udp(out.transport.peer_addr, out.transport.local_addr),
            message: out.message,
        });
    }
    n
}

/// Drain events and inbound messages; returns the last connection state seen, if any.
fn drain(pc: &mut RTCPeerConnection) -> Option<RTCPeerConnectionState> {
    let mut state = None;
    while let Some(ev) = pc.poll_event() {
        if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) = ev {
            state = Some(s);
        }
    }
    while pc.poll_read().is_some() {}
    state
}

/// The server offers (as `negotiate_subscriber`), the client answers (as lk.rs does).
fn negotiate(
    server: &mut RTCPeerConnection,
    client: &mut RTCPeerConnection,
    now: Instant,
) -> Result<(), rtc::shared::error::Error> {
    let offer = server.create_offer(None)?;
    server.set_local_description(now, offer)?;
    let offer = server.local_description().ok_or(ErrNoDesc)?.sdp;
    client.set_remote_description(now, RTCSessionDescription::offer(offer)?)?;
    let answer = client.create_answer(None)?;
    client.set_local_description(now, answer)?;
    let answer = client.local_description().ok_or(ErrNoDesc)?.sdp;
    server.set_remote_description(now, RTCSessionDescription::answer(answer)?)
}

impl Leg {
    fn new(now: Instant, i: usize) -> Leg {
        let server_addr: SocketAddr = SERVER.parse().expect("server addr");
        let client_addr = SocketAddr::from(([10, 0, 0, 2], 6000 + i as u16));
        let ufrag = peer::ufrag_for_worker(0);
        let pwd = peer::random_string(32);
        let mut server = peer::build(now, &ufrag, &pwd, server_addr, None, false, true)
            .expect("server subscriber leg");
        // As `Worker::subscribe_no_offer` / `single_pc::track_for`: one encoding, our SSRC.
        let ssrc = 0x5000_0000 + i as u32;
        let sid = format!("TR_bench{i}");
        let track = MediaStreamTrack::new(
            parlor_signaling::protocol::subscriber_stream_id("PA_bench", &sid),
            sid.clone(),
            sid,
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: RTCRtpCodec {
                    mime_type: MIME_TYPE_OPUS.into(),
                    clock_rate: 48000,
                    channels: 2,
                    sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
                    rtcp_feedback: vec![],
                },
                ..Default::default()
            }],
        );
        let sender_id = server.add_track(track).expect("add_track on server leg");
        let mut client = client_pc(now, client_addr);
        negotiate(&mut server, &mut client, now).expect("offer/answer");
        // As `negotiation::sender_payload_type`: the first negotiated Opus payload type.
        let pt = {
            let mut s = server.rtp_sender(sender_id).expect("server sender");
            let codecs = &s.get_parameters().rtp_parameters.codecs;
            codecs
                .iter()
                .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(MIME_TYPE_OPUS))
                .or(codecs.first())
                .map(|c| c.payload_type)
                .expect("negotiated payload type")
        };
        Leg {
            server,
            client,
            stream: OutStream::new(false, 48_000),
            route: None,
            sender_id,
            ssrc,
            pt,
            server_state: None,
            client_state: None,
        }
    }

    /// One round of timers and datagram exchange in both directions.
    fn pump(&mut self, now: Instant) {
        for pc in [&mut self.server, &mut self.client] {
            if pc.poll_timeout().is_some_and(|t| t <= now) {
                let _ = pc.handle_timeout(now);
            }
        }
        for _ in 0..16 {
            let moved = transfer(&mut self.server, &mut self.client, now)
                + transfer(&mut self.client, &mut self.server, now);
            for (pc, state) in [
                (&mut self.server, &mut self.server_state),
                (&mut self.client, &mut self.client_state),
            ] {
                if let Some(s) = drain(pc) {
                    let was_up = *state == Some(RTCPeerConnectionState::Connected);
                    assert!(!was_up, "leg left the connected state: {s}");
                    *state = Some(s);
                }
            }
            if moved == 0 {
                break;
            }
        }
    }

    fn up(&self) -> bool {
        let c = Some(RTCPeerConnectionState::Connected);
        self.server_state == c && self.client_state == c
    }
}

/// Pump all legs in lockstep, 5 ms per round, until every side reports Connected.
fn connect(legs: &mut [Leg], now: &mut Instant) {
    for _ in 0..2000 {
        legs.iter_mut().for_each(|l| l.pump(*now));
        if legs.iter().all(Leg::up) {
            return;
        }
        *now += Duration::from_millis(5);
    }
    let states: Vec<_> = legs
        .iter()
        .map(|l| (l.server_state, l.client_state))
        .collect();
    panic!("legs not connected after 2000 rounds of 5 ms (server, client): {states:?}");
}

/// The timed work for one inbound packet on the direct egress: every leg's header, protection and
/// queueing into `batch`. Returns the number of failures.
fn fan_out(
    legs: &mut [Leg],
    payload: &Bytes,
    seq: u16,
    ts: u32,
    now: Instant,
    batch: &mut Vec<Datagram>,
    plain: &mut Vec<u8>,
) -> u64 {
    let mut failures = 0;
    for leg in legs.iter_mut() {
        let Some(route) = leg.route else {
            failures += 1;
            continue;
        };
        let p = egress::Rtp {
            marker: false,
            pt: leg.pt,
            seq,
            ts,
            ssrc: leg.ssrc,
            payload,
        };
        match egress::protect(&mut leg.server, &mut leg.stream, plain, &p, now) {
            Some(d) => batch.push((route.peer_addr, d)),
            None => failures += 1,
        }
    }
    failures
}

/// The same through `rtc`'s write pipeline (the path the direct egress replaced).
fn fan_out_pipeline(
    legs: &mut [Leg],
    payload: &Bytes,
    seq: u16,
    ts: u32,
    now: Instant,
    batch: &mut Vec<Datagram>,
    _plain: &mut Vec<u8>,
) -> u64 {
    let mut failures = 0;
    for leg in legs.iter_mut() {
        let out = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                marker: false,
                payload_type: leg.pt,
                sequence_number: seq,
                timestamp: ts,
                ssrc: leg.ssrc,
                ..Default::default()
            },
            payload: payload.clone(),
        };
        let ok = leg
            .server
            .rtp_sender(leg.sender_id)
            .map(|mut s| s.write_rtp(now, out).is_ok())
            .unwrap_or(false);
        failures += u64::from(!ok);
        while let Some(d) = leg.server.poll_write() {
            batch.push((d.transport.peer_addr, d.message.freeze()));
        }
    }
    failures
}

type FanOut = fn(&mut [Leg], &Bytes, u16, u32, Instant, &mut Vec<Datagram>, &mut Vec<u8>) -> u64;

/// Sanity check, untimed: one packet per leg is one SRTP datagram of 12 + 100 bytes plus the tag
/// (16: AEAD_AES_128_GCM, which DTLS-SRTP negotiates first; 10: AES128_CM_HMAC_SHA1_80), which the
/// client decrypts and delivers.
fn check_delivery(
    legs: &mut [Leg],
    payload: &Bytes,
    seq: u16,
    now: Instant,
    batch: &mut Vec<Datagram>,
    f: FanOut,
) {
    let mut plain = Vec::new();
    assert_eq!(
        f(legs, payload, seq, 960, now, batch, &mut plain),
        0,
        "fan-out"
    );
    assert_eq!(batch.len(), legs.len(), "one datagram per leg");
    let (from, n): (SocketAddr, usize) = (SERVER.parse().expect("server addr"), legs.len());
    for (i, ((to, d), leg)) in batch.drain(..).zip(legs.iter_mut()).enumerate() {
        let len = d.len();
        assert!(matches!(len, 122 | 128), "SRTP datagram of {len} bytes");
        if i == 0 {
            eprintln!("{n} legs: SRTP datagrams of {len} bytes (128: GCM)");
        }
        let transport = udp(to, from);
        let msg = TaggedBytesMut {
            now,
            transport,
            message: BytesMut::from(&d[..]),
        };
        let _ = leg.client.handle_read(msg);
        let mut got = false;
        while let Some(m) = leg.client.poll_read() {
            got |= matches!(m.message, RTCMessage::RtpPacket(_, p) if p.payload == *payload);
        }
        assert!(got, "client did not receive the forwarded packet");
    }
}

fn bench_fanout(c: &mut Criterion) {
    let payload = opus_payload();
    for (group, f) in [
        ("egress", fan_out as FanOut),
        ("egress_pipeline", fan_out_pipeline as FanOut),
    ] {
        let mut g = c.benchmark_group(group);
        for n in [1usize, 10, 50] {
            let mut now = Instant::now();
            let mut legs: Vec<Leg> = (0..n).map(|i| Leg::new(now, i)).collect();
            connect(&mut legs, &mut now);
            for leg in &mut legs {
                leg.route = leg.server.direct_route();
            }
            let mut batch: Vec<Datagram> = Vec::with_capacity(4 * n);
            let mut plain = Vec::with_capacity(1500);
            check_delivery(&mut legs, &payload, 1, now, &mut batch, f);
            let (mut seq, mut ts) = (2u16, 1920u32);
            g.throughput(Throughput::Elements(n as u64));
            g.bench_with_input(BenchmarkId::new("fanout", n), &n, |b, _| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    let mut done = 0;
                    while done < iters {
                        let k = CHUNK.min(iters - done);
                        let start = Instant::now();
                        let mut failures = 0;
                        for _ in 0..k {
                            now += FRAME;
                            failures +=
                                f(&mut legs, &payload, seq, ts, now, &mut batch, &mut plain);
                            batch.clear();
                            seq = seq.wrapping_add(1);
                            ts = ts.wrapping_add(960);
                        }
                        total += start.elapsed();
                        assert_eq!(failures, 0, "fan-out failed during measurement");
                        done += k;
                        // Untimed: timers, consent checks, both directions.
                        for leg in &mut legs {
                            leg.pump(now);
                        }
                    }
                    total
                })
            });
        }
        g.finish();
    }
}

fn header(seq: u16) -> rtc::rtp::header::Header {
    rtc::rtp::header::Header {
        version: 2,
        payload_type: 111,
        sequence_number: seq,
        timestamp: seq as u32 * 960,
        ssrc: 0x5000_0000,
        ..Default::default()
    }
}

/// `srtp_only` (bare SRTP encrypt of the marshalled 112-byte packet) and `marshal_only`.
fn bench_srtp(c: &mut Criterion) {
    let pkt = rtc::rtp::Packet {
        header: header(1),
        payload: opus_payload(),
    };
    let plain = pkt.marshal().expect("marshal");
    assert_eq!(plain.len(), 112);
    let provider = rtc::crypto::default_provider().expect("crypto provider");
    let mut g = c.benchmark_group("srtp_only");
    g.throughput(Throughput::Elements(1));
    for profile in [
        ProtectionProfile::Aes128CmHmacSha1_80,
        ProtectionProfile::AeadAes128Gcm,
    ] {
        let key: Vec<u8> = (0..profile.key_len() as u8).collect();
        let salt: Vec<u8> = (0..profile.salt_len() as u8).map(|b| b ^ 0xA5).collect();
        let mut ctx = Context::new(&key, &salt, profile, None, None, provider.crypto())
            .expect("srtp context");
        let mut buf = plain.clone();
        let mut seq = 1u16;
        // What rtc's SRTP handler calls: `encrypt_rtp` on the marshalled packet (it re-parses the
        // header); the sequence number advances in place.
        g.bench_function(format!("{profile:?}"), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                buf[2..4].copy_from_slice(&seq.to_be_bytes());
                black_box(ctx.encrypt_rtp(black_box(&buf)).is_ok())
            })
        });
    }
    g.finish();
    let payload = pkt.payload;
    let mut g = c.benchmark_group("marshal_only");
    g.throughput(Throughput::Elements(1));
    let mut seq = 1u16;
    g.bench_function("header_and_payload", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            let pkt = rtc::rtp::Packet {
                header: header(seq),
                payload: payload.clone(),
            };
            black_box(black_box(&pkt).marshal().map(|m| m.len()).unwrap_or(0))
        })
    });
    g.finish();
}

criterion_group!(benches, bench_fanout, bench_srtp);
criterion_main!(benches);
