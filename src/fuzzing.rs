//! Fuzz bodies for every path from the network into the server crate, as plain `fn(&[u8])`.
//!
//! Not API (`#[doc(hidden)]`): `fuzz/` (cargo-fuzz) and `tests/fuzz_bodies.rs` (stable, CI) run
//! these same functions. A body panics only on a bug. The member crates have their own
//! (`parlor_turn::fuzzing`, `parlor_signaling::fuzzing`, `parlor_media::fuzzing`); [`BODIES`] lists
//! every target of all four, so the harnesses cannot miss one.
//!
//! - [`signal_session`]: `SignalRequest` bytes as the `/rtc` session handles them (bounded decode,
//!   the session's request mapping), then into a real media worker's `on_signal` for a joined
//!   participant (offers, answers, trickle, AddTrack, mute, subscriptions, track settings).
//! - [`sdp_offer`]: any text as a publisher offer through the worker's negotiation
//!   (`answer_offer` on a real publisher peer connection) and its extmap lookup.
//! - [`ice_tcp_stream`]: an ICE-TCP byte stream through RFC 4571 framing (rtc's
//!   `TcpFrameDecoder`) and the listener's first-frame admission (`peer::is_stun`,
//!   `stun_local_ufrag`, `worker_of_ufrag`).
//! - [`udp_datagram`]: a datagram into the worker's receive path (`on_datagram`: STUN / DTLS /
//!   RTP demux, ufrag admission, `rtc` `handle_read` on a publisher whose offer was applied).
//! - [`rtp_forward`]: RTP packets parsed as `rtc` parses them, then what the worker does per
//!   packet: header extensions, the audio-level parser, keyframe detection and the forwarders.
//! - [`rtcp_packet`]: RTCP compound packets parsed as `rtc` parses them and the keyframe-request
//!   check the subscriber legs run on each.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use parlor_signaling::fuzzing::{CHROME_OFFER, MAX_SIGNAL_BYTES};
use parlor_signaling::protocol;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::shared::marshal::Unmarshal;
use rtc::shared::tcp_framing::TcpFrameDecoder;

use crate::sfu::forwarder::{is_keyframe, Decision, Forwarder, PacketMeta};
use crate::sfu::peer;
use crate::sfu::worker::fuzz::FuzzWorker;
use crate::signal::{incoming, Incoming};

/// A fuzz body (`fuzz/` has one cargo-fuzz target per name in [`BODIES`]).
pub type Body = fn(&[u8]);

/// Every fuzz target of the workspace: (name, body).
pub const BODIES: &[(&str, Body)] = &[
    ("stun_message", parlor_turn::fuzzing::stun_message),
    ("turn_server", parlor_turn::fuzzing::turn_server),
    ("turn_tcp_stream", parlor_turn::fuzzing::turn_tcp_stream),
    ("access_token", parlor_signaling::fuzzing::access_token),
    ("signed_token", parlor_signaling::fuzzing::signed_token),
    ("signal_request", parlor_signaling::fuzzing::signal_request),
    ("join_request", parlor_signaling::fuzzing::join_request),
    ("webm_repair", parlor_media::fuzzing::webm_repair),
    ("ebml_reader", parlor_media::fuzzing::ebml_reader),
    ("opus_packet", parlor_media::fuzzing::opus_packet),
    ("signal_session", signal_session),
    ("sdp_offer", sdp_offer),
    ("ice_tcp_stream", ice_tcp_stream),
    ("udp_datagram", udp_datagram),
    ("rtp_forward", rtp_forward),
    ("rtcp_packet", rtcp_packet),
];

thread_local! {
    static SIGNAL_WORKER: RefCell<Option<FuzzWorker>> = const { RefCell::new(None) };
    static MEDIA_WORKER: RefCell<Option<FuzzWorker>> = const { RefCell::new(None) };
}

fn with_worker(
    cell: &'static std::thread::LocalKey<RefCell<Option<FuzzWorker>>>,
    offer: Option<&str>,
    f: impl FnOnce(&mut FuzzWorker),
) {
    cell.with(|w| {
        let mut w = w.borrow_mut();
        if w.is_none() {
            *w = Some(FuzzWorker::new(offer.map(str::to_owned)).expect("fuzz media worker"));
        }
        if let Some(w) = w.as_mut() {
            f(w);
        }
    });
}

/// `SignalRequest` bytes into the signal session and on to the media worker.
pub fn signal_session(data: &[u8]) {
    let Ok(req) = protocol::decode_request(data, MAX_SIGNAL_BYTES) else {
        return;
    };
    if let Incoming::Forward(cmd) = incoming(req) {
        with_worker(&SIGNAL_WORKER, None, |w| w.signal(cmd));
    }
}

/// Any text as a publisher offer, negotiated as the worker does.
pub fn sdp_offer(data: &[u8]) {
    let sdp = String::from_utf8_lossy(data).into_owned();
    for media in ["audio", "video"] {
        let _ = crate::sfu::worker::extmap_id(&sdp, media, peer::AUDIO_LEVEL_URI);
    }
    // Parsing comes first (as in `on_publisher_offer`); only an offer that parses meets a PC.
    let Ok(offer) = RTCSessionDescription::offer(sdp) else {
        return;
    };
    let now = Instant::now();
    let addr = SocketAddr::from(([127, 0, 0, 1], 7882));
    let Ok(mut pc) = peer::build(
        now,
        &peer::ufrag_for_worker(0),
        &peer::random_string(24),
        addr,
        Some(addr),
        true,
        true,
    ) else {
        return;
    };
    if let Ok(answer) = crate::sfu::worker::answer_offer(&mut pc, now, offer) {
        let _ = crate::sfu::worker::extmap_id(&answer, "audio", peer::AUDIO_LEVEL_URI);
    }
    if let Some(remote) = pc.remote_description() {
        let _ = crate::sfu::worker::extmap_id(&remote.sdp, "audio", peer::AUDIO_LEVEL_URI);
    }
}

/// Largest frame the ICE-TCP listener accepts (`sfu::tcp::MAX_FRAME`).
const ICE_TCP_MAX_FRAME: usize = 1600;

/// An ICE-TCP stream: RFC 4571 framing and the first-frame admission, as `sfu::tcp` runs them.
pub fn ice_tcp_stream(data: &[u8]) {
    let mut decoder = TcpFrameDecoder::new();
    let mut admitted = false;
    // Fed in reads of varying size (the first byte picks the size), like a socket delivers them.
    let chunk = usize::from(data.first().copied().unwrap_or(0) % 64) + 1;
    for part in data.chunks(chunk) {
        decoder.extend_from_slice(part);
        if decoder.buffered_len() > ICE_TCP_MAX_FRAME + 2 && !admitted {
            return;
        }
        while let Some(frame) = decoder.next_packet() {
            if frame.len() > ICE_TCP_MAX_FRAME {
                return;
            }
            if !admitted {
                let worker = peer::is_stun(&frame)
                    .then(|| peer::stun_local_ufrag(&frame))
                    .flatten()
                    .and_then(peer::worker_of_ufrag);
                match worker {
                    Some(i) => assert!(i < crate::sfu::worker::MAX_WORKERS, "worker index"),
                    None => return,
                }
                admitted = true;
            }
        }
    }
}

/// A datagram into the media worker. First byte: bit 0 from the publisher's known address,
/// bit 1 as an ICE-TCP frame; the rest is the datagram.
pub fn udp_datagram(data: &[u8]) {
    let Some((&flags, dgram)) = data.split_first() else {
        return;
    };
    // The demux the worker runs before any state: cheap, pure.
    if peer::is_stun(dgram) {
        if let Some(u) = peer::stun_local_ufrag(dgram) {
            let _ = peer::worker_of_ufrag(u);
        }
    }
    with_worker(&MEDIA_WORKER, Some(CHROME_OFFER), |w| {
        w.datagram(dgram, flags & 1 != 0, flags & 2 != 0)
    });
}

/// RTP packets (records of `[len hi][len lo][bytes]`) through the per-packet work of the worker:
/// one audio forwarder and a video forwarder per simulcast layer target.
pub fn rtp_forward(data: &[u8]) {
    let mut audio = Forwarder::new(false, 48_000);
    let mut video: Vec<Forwarder> = (0..3)
        .map(|l| {
            let mut f = Forwarder::new(true, 90_000);
            f.set_target_layer(l);
            f
        })
        .collect();
    let mut rest = data;
    let mut n = 0;
    while rest.len() >= 2 && n < 64 {
        n += 1;
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let mut buf = Bytes::copy_from_slice(&rest[2..2 + len]);
        rest = &rest[2 + len..];
        let Ok(pkt) = rtc::rtp::Packet::unmarshal(&mut buf) else {
            continue;
        };
        let mut level = None;
        for id in 1..=14u8 {
            if let Some(v) = pkt.header.get_extension(id) {
                level = level.or(peer::audio_level(&v));
            }
        }
        if let Some(l) = level {
            assert!(l <= 127, "audio level out of range");
        }
        let layer = (pkt.header.ssrc % 3) as u8;
        let meta = PacketMeta {
            seq: pkt.header.sequence_number,
            ts: pkt.header.timestamp,
            layer,
            keyframe: is_keyframe(pkt.header.payload_type & 1 == 0, false, &pkt.payload)
                || is_keyframe(false, true, &pkt.payload),
            arrival_us: u64::from(pkt.header.timestamp),
        };
        let _ = audio.on_packet(&PacketMeta { layer: 0, ..meta });
        if pkt.header.marker {
            audio.set_paused(pkt.header.padding);
        }
        for f in &mut video {
            if let Decision::Forward { .. } = f.on_packet(&meta) {
                assert_eq!(f.current_layer(), Some(layer), "forwarded another layer");
            }
            if pkt.header.padding {
                f.set_paused(pkt.header.marker);
            }
        }
    }
}

/// RTCP bytes through `rtc`'s parser and the subscriber legs' keyframe-request check.
pub fn rtcp_packet(data: &[u8]) {
    let mut buf = Bytes::copy_from_slice(data);
    let Ok(pkts) = rtc::rtcp::packet::unmarshal(&mut buf) else {
        return;
    };
    for p in &pkts {
        let a = p.as_any();
        let _ = a.is::<PictureLossIndication>() || a.is::<FullIntraRequest>();
        let _ = p.destination_ssrc();
    }
}

/// Seed inputs of the server crate's targets, from real traffic shapes: a Chromium offer, the
/// requests a livekit-client session sends, a browser's STUN binding (in RFC 4571 framing too),
/// RTP with the audio-level extension, VP8 keyframes, and a PLI.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "signal_session" => parlor_signaling::fuzzing::seeds("signal_request"),
        "sdp_offer" => vec![CHROME_OFFER.as_bytes().to_vec()],
        "ice_tcp_stream" => {
            let b = stun_binding("0abcdefghijklmno:rmt1");
            let mut framed = (b.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&b);
            let rtp = rtp_audio(1, 960);
            framed.extend_from_slice(&(rtp.len() as u16).to_be_bytes());
            framed.extend_from_slice(&rtp);
            vec![framed]
        }
        "udp_datagram" => {
            let mut v = vec![
                [&[0u8][..], &stun_binding("0abcdefghijklmno:rmt1")].concat(),
                [&[1u8][..], &stun_binding("0abcdefghijklmno:rmt1")].concat(),
                [&[1u8][..], &rtp_audio(7, 960 * 7)].concat(),
                [&[1u8][..], &pli()].concat(),
            ];
            // A DTLS 1.2 ClientHello record header (content type 22, version 1.2).
            v.push([1u8, 22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0].to_vec());
            v
        }
        "rtp_forward" => {
            let mut s = Vec::new();
            for i in 0..4u16 {
                let p = rtp_audio(i, u32::from(i) * 960);
                s.extend_from_slice(&(p.len() as u16).to_be_bytes());
                s.extend_from_slice(&p);
            }
            let kf = rtp_vp8_keyframe(100, 3000);
            s.extend_from_slice(&(kf.len() as u16).to_be_bytes());
            s.extend_from_slice(&kf);
            vec![s]
        }
        "rtcp_packet" => vec![pli()],
        _ => Vec::new(),
    }
}

/// A STUN Binding request like a browser's ICE check: USERNAME, PRIORITY, ICE-CONTROLLING,
/// USE-CANDIDATE, (dummy) MESSAGE-INTEGRITY, FINGERPRINT.
fn stun_binding(username: &str) -> Vec<u8> {
    let mut attrs = Vec::new();
    let mut attr = |t: u16, v: &[u8]| {
        attrs.extend_from_slice(&t.to_be_bytes());
        attrs.extend_from_slice(&(v.len() as u16).to_be_bytes());
        attrs.extend_from_slice(v);
        attrs.resize(attrs.len().next_multiple_of(4), 0);
    };
    attr(0x0006, username.as_bytes());
    attr(0x0024, &0x6e00_1eff_u32.to_be_bytes());
    attr(0x802A, &[1, 2, 3, 4, 5, 6, 7, 8]);
    attr(0x0025, &[]);
    attr(0x0008, &[0xAB; 20]);
    attr(0x8028, &[0, 0, 0, 0]);
    let mut m = vec![0x00, 0x01];
    m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
    m.extend_from_slice(b"fuzzTxId1234");
    m.extend_from_slice(&attrs);
    m
}

/// Opus RTP (PT 111) with a one-byte-header audio-level extension (id 1, level 30, voiced).
fn rtp_audio(seq: u16, ts: u32) -> Vec<u8> {
    let mut p = vec![0x90, 111];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&0x1234_5678_u32.to_be_bytes());
    p.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, 0x80 | 30, 0, 0]);
    p.extend_from_slice(&[0x78, 0x01, 0x02, 0x03]);
    p
}

/// VP8 RTP (PT 96) starting a keyframe.
fn rtp_vp8_keyframe(seq: u16, ts: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0x80 | 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&0x0000_0003_u32.to_be_bytes());
    // VP8 payload descriptor (S=1, PID 0), then a keyframe header (P=0) with the start code.
    p.extend_from_slice(&[
        0x10, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01,
    ]);
    p
}

/// RTCP PLI (PT 206, FMT 1).
fn pli() -> Vec<u8> {
    let mut p = vec![0x81, 206, 0, 2];
    p.extend_from_slice(&0x0000_0001_u32.to_be_bytes());
    p.extend_from_slice(&0x1234_5678_u32.to_be_bytes());
    p
}

/// Seeds of any target in [`BODIES`].
pub fn all_seeds(target: &str) -> Vec<Vec<u8>> {
    let mut v = parlor_turn::fuzzing::seeds(target);
    v.extend(parlor_signaling::fuzzing::seeds(target));
    v.extend(seeds(target));
    if matches!(target, "webm_repair" | "ebml_reader") {
        v.extend(webm_seeds());
    }
    if target == "opus_packet" {
        v.push(vec![0x78, 0x01, 0x02]);
        v.push(vec![0x7B, 0x83, 1, 2, 3, 4]);
    }
    v
}

/// A real recording: what `WebmWriter` writes for 40 Opus frames, complete and cut mid-cluster.
fn webm_seeds() -> Vec<Vec<u8>> {
    use parlor_media::{EncoderConfig, OpusEncoder, WebmConfig, WebmWriter, FRAME_SAMPLES};
    let Ok(mut enc) = OpusEncoder::new(EncoderConfig::default()) else {
        return Vec::new();
    };
    let cfg = WebmConfig {
        pre_skip: enc.pre_skip(),
        cluster_ms: 200,
        ..WebmConfig::default()
    };
    let Ok(mut w) = WebmWriter::new(std::io::Cursor::new(Vec::new()), cfg) else {
        return Vec::new();
    };
    let mut buf = vec![0u8; 1500];
    for t in 0..40usize {
        let pcm: Vec<i16> = (0..FRAME_SAMPLES)
            .map(|j| (((t * 7 + j) % 200) as i16 - 100) * 50)
            .collect();
        let Ok(n) = enc.encode(&pcm, &mut buf) else {
            return Vec::new();
        };
        if w.write_packet((t * FRAME_SAMPLES) as u64, &buf[..n])
            .is_err()
        {
            return Vec::new();
        }
    }
    let Ok((cur, _)) = w.finalize() else {
        return Vec::new();
    };
    let file = cur.into_inner();
    let cut = file[..file.len() * 2 / 3].to_vec();
    vec![file, cut]
}
