//! Building `rtc` (Sans-I/O webrtc-rs) peer connections for the shared UDP socket: ICE-lite with
//! per-connection ICE credentials (so the worker can route STUN by USERNAME), our host candidate with the
//! public IP, mDNS off, and per direction only the interceptors it needs (publisher legs: NACK generator,
//! receiver reports, TWCC feedback; subscriber legs: only a tap handing keyframe requests and NACKs to
//! the worker, whose direct egress keeps the send cache and sender-report counts itself).

use rand::distributions::Alphanumeric;
use rand::Rng;
use rtc::interceptor::{Attribute, Interceptor, Packet, Registry, Slot, StreamInfo, TaggedPacket};
use rtc::interceptor::{NackGeneratorBuilder, ReceiverReportBuilder};
use rtc::peer_connection::configuration::interceptor_registry::configure_twcc_receiver_only;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::sansio::Protocol;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
const SDES_MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
const SDES_RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
const SDES_RRID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("webrtc: {0}")]
    Rtc(#[from] rtc::shared::error::Error),
}

pub fn random_string(n: usize) -> String {
    rand::thread_rng()
        .sample_iter(Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

const WORKER_CHARS: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";

/// A fresh local ICE ufrag for a peer connection of media worker `index` (< 32): its first character
/// names the worker, so the shared ICE-TCP listener can hand a connection to the right worker from
/// the first STUN request's USERNAME.
pub fn ufrag_for_worker(index: usize) -> String {
    let mut u = String::with_capacity(16);
    u.push(WORKER_CHARS[index % WORKER_CHARS.len()] as char);
    u.push_str(&random_string(15));
    u
}

/// The media worker a local ufrag (from `ufrag_for_worker`) belongs to.
pub fn worker_of_ufrag(ufrag: &str) -> Option<usize> {
    let c = *ufrag.as_bytes().first()?;
    WORKER_CHARS.iter().position(|&w| w == c)
}

/// The codecs the forwarding path handles: Opus, VP8 and H.264 (with RTX). rtc's default set also
/// has VP9, AV1 and HEVC, which the forwarder cannot switch layers of; and with them an answer to a
/// browser's single-connection offer (receive sections and a simulcast send section on one
/// connection) listed VP9's payload type twice, which Chrome rejects.
fn register_codecs(m: &mut MediaEngine) -> Result<(), rtc::shared::error::Error> {
    use rtc::peer_connection::configuration::media_engine::{
        MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_RTX, MIME_TYPE_VP8,
    };
    use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters};
    let codec =
        |mime: &str, clock_rate: u32, channels: u16, fmtp: &str, fb: Vec<RTCPFeedback>, pt: u8| {
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: mime.to_owned(),
                    clock_rate,
                    channels,
                    sdp_fmtp_line: fmtp.to_owned(),
                    rtcp_feedback: fb,
                },
                payload_type: pt,
            }
        };
    m.register_codec(
        codec(
            MIME_TYPE_OPUS,
            48000,
            2,
            "minptime=10;useinbandfec=1",
            vec![],
            111,
        ),
        RtpCodecKind::Audio,
    )?;
    let fb: Vec<RTCPFeedback> = [
        ("goog-remb", ""),
        ("ccm", "fir"),
        ("nack", ""),
        ("nack", "pli"),
    ]
    .into_iter()
    .map(|(typ, parameter)| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    })
    .collect();
    let h264 = |pm: u8, profile: &str| {
        format!("level-asymmetry-allowed=1;packetization-mode={pm};profile-level-id={profile}")
    };
    for (mime, fmtp, pt, rtx) in [
        (MIME_TYPE_VP8, String::new(), 96, 97),
        (MIME_TYPE_H264, h264(1, "42001f"), 102, 103),
        (MIME_TYPE_H264, h264(0, "42001f"), 127, 104),
        (MIME_TYPE_H264, h264(1, "42e01f"), 125, 105),
        (MIME_TYPE_H264, h264(0, "42e01f"), 108, 109),
        (MIME_TYPE_H264, h264(1, "640032"), 123, 124),
    ] {
        m.register_codec(
            codec(mime, 90000, 0, &fmtp, fb.clone(), pt),
            RtpCodecKind::Video,
        )?;
        m.register_codec(
            codec(MIME_TYPE_RTX, 90000, 0, &format!("apt={pt}"), vec![], rtx),
            RtpCodecKind::Video,
        )?;
    }
    Ok(())
}

/// A new peer connection whose local ICE credentials are `ufrag`/`pwd`, announcing `candidate_addr`
/// as its only (host) candidate.
pub fn build(
    now: Instant,
    ufrag: &str,
    pwd: &str,
    candidate_addr: SocketAddr,
    tcp_candidate: Option<SocketAddr>,
    publisher: bool,
    subscriber: bool,
) -> Result<RTCPeerConnection, PeerError> {
    let setting_engine = SettingEngineBuilder::new()
        .with_lite(true)
        .with_ice_credentials(ufrag.to_string(), pwd.to_string())
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        // The agent's tick while connecting (default 200 ms) also paces how soon the lite agent
        // acts on the client's nomination; 25 ms cuts join-to-first-audio by ~150 ms. Only used in
        // the New/Checking states (connected peers tick at the keepalive interval).
        .with_ice_connection_attempts(Some(std::time::Duration::from_millis(25)), None)
        // Liveness: rtc's agent counts only inbound STUN as proof of life (not media), and a lite
        // agent sends no checks of its own, so the client's consent checks are the only signal.
        // Firefox sends them about every 5 s (RFC 7675), exactly rtc's default disconnected
        // timeout: its connections flapped connected/disconnected all call long. 12 s spans two
        // missed checks; 12 + 18 s keeps the default 30 s to "failed" (participant removed).
        .with_ice_timeouts(
            Some(std::time::Duration::from_secs(12)),
            Some(std::time::Duration::from_secs(18)),
            None,
        )
        .build();
    let mut media_engine = MediaEngine::default();
    register_codecs(&mut media_engine)?;
    if publisher {
        // Receive audio levels (active speakers) and simulcast rids.
        for (uri, kind) in [
            (AUDIO_LEVEL_URI, RtpCodecKind::Audio),
            (SDES_MID_URI, RtpCodecKind::Audio),
            (SDES_MID_URI, RtpCodecKind::Video),
            (SDES_RID_URI, RtpCodecKind::Video),
            (SDES_RRID_URI, RtpCodecKind::Video),
        ] {
            media_engine.register_header_extension(
                RTCRtpHeaderExtensionCapability {
                    uri: uri.to_string(),
                },
                kind,
                None,
            )?;
        }
    }
    // Each leg gets only the interceptors its direction uses: every interceptor in the chain is a
    // hop (and a copy of the packet) on every RTP write, and subscriber legs carry all the egress.
    // NACK feedback is negotiated for video on both legs (browsers NACK lost video).
    for param in ["", "pli"] {
        media_engine.register_feedback(
            RTCPFeedback {
                typ: "nack".to_owned(),
                parameter: param.to_owned(),
            },
            RtpCodecKind::Video,
        );
    }
    let mut registry = Registry::new();
    if subscriber {
        // Send side: RTP leaves through the worker's direct egress (`worker::egress`), which
        // answers NACKs from its own send cache and writes the sender reports; this tap hands the
        // subscriber's keyframe requests (PLI/FIR, relayed to the publisher) and NACKs to it.
        registry = registry.with(Slot::from(14_000), RtcpTap::new(subscriber_feedback));
    }
    if publisher {
        // Receive side: NACK generation for lost video, receiver reports, and transport-wide CC
        // feedback so the browser's bandwidth estimator can adapt its send rate (without it the
        // browser stays near its initial estimate and drops its upper simulcast layers).
        registry = registry
            .with(Slot::NackGenerator, NackGeneratorBuilder::new().build())
            .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build());
        registry = configure_twcc_receiver_only(registry, &mut media_engine)?;
    }
    let config = RTCConfigurationBuilder::new().build();
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(config)
        .with_setting_engine(setting_engine)
        .with_media_engine(media_engine)
        .with_interceptor_registry(registry)
        .build(now)?;
    let candidate = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: candidate_addr.ip().to_string(),
            port: candidate_addr.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()?;
    pc.add_local_candidate(RTCIceCandidate::from(&candidate).to_json()?)?;
    if let Some(tcp) = tcp_candidate {
        // ICE-TCP passive candidate: clients that cannot use UDP connect to our TCP listener.
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "tcp".to_owned(),
                address: tcp.ip().to_string(),
                port: tcp.port(),
                component: 1,
                ..Default::default()
            },
            tcp_type: rtc::ice::tcp_type::TcpType::Passive,
        }
        .new_candidate_host()?;
        pc.add_local_candidate(RTCIceCandidate::from(&candidate).to_json()?)?;
    }
    Ok(pc)
}

/// Interceptor that marks inbound RTCP for delivery to the application when one of its packets is
/// of interest (`wants`); everything passes through unchanged. Subscriber legs hand PLI, FIR and
/// generic NACKs to the worker with it (`subscriber_feedback`).
pub struct RtcpTap {
    wants: fn(&dyn rtc::rtcp::Packet) -> bool,
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

impl RtcpTap {
    pub fn new(wants: fn(&dyn rtc::rtcp::Packet) -> bool) -> RtcpTap {
        RtcpTap {
            wants,
            reads: VecDeque::new(),
            writes: VecDeque::new(),
        }
    }
}

/// What a subscriber leg's RTCP the worker acts on: keyframe requests and NACKs.
fn subscriber_feedback(p: &dyn rtc::rtcp::Packet) -> bool {
    let a = p.as_any();
    a.is::<PictureLossIndication>() || a.is::<FullIntraRequest>() || a.is::<TransportLayerNack>()
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for RtcpTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(pkts) = &msg.message.packet {
            let for_worker = pkts.iter().any(|p| (self.wants)(p.as_ref()));
            if for_worker {
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.reads.push_back(msg);
        Ok(())
    }
    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.reads.pop_front()
    }
    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.writes.push_back(msg);
        Ok(())
    }
    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.writes.pop_front()
    }
    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Self::Error> {
        Ok(())
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        None
    }
}

impl Interceptor for RtcpTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// Local ICE ufrag from a STUN Binding request's USERNAME (`<our ufrag>:<their ufrag>`), without
/// allocating. Returns None for anything that is not a well-formed STUN message with a USERNAME.
pub fn stun_local_ufrag(buf: &[u8]) -> Option<&str> {
    // STUN: first two bits zero, magic cookie at 4..8, length at 2..4.
    if buf.len() < 20 || buf[0] & 0xC0 != 0 || buf[4..8] != [0x21, 0x12, 0xA4, 0x42] {
        return None;
    }
    let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    let body = buf.get(20..20 + len)?;
    let mut i = 0;
    while i + 4 <= body.len() {
        let typ = u16::from_be_bytes([body[i], body[i + 1]]);
        let alen = u16::from_be_bytes([body[i + 2], body[i + 3]]) as usize;
        let val = body.get(i + 4..i + 4 + alen)?;
        if typ == 0x0006 {
            let s = std::str::from_utf8(val).ok()?;
            return s.split(':').next();
        }
        i += 4 + alen.div_ceil(4) * 4;
    }
    None
}

/// Is this datagram a STUN message (RFC 7983 demultiplexing: first byte 0..3)?
pub fn is_stun(buf: &[u8]) -> bool {
    buf.first().is_some_and(|b| *b < 4)
}

/// Audio level (RFC 6464, 0 = loudest, 127 = silence) from a one-byte-header extension value.
pub fn audio_level(value: &[u8]) -> Option<u8> {
    value.first().map(|b| b & 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun_with_username(user: &str) -> Vec<u8> {
        let mut attr = vec![0x00, 0x06];
        attr.extend_from_slice(&(user.len() as u16).to_be_bytes());
        attr.extend_from_slice(user.as_bytes());
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attr.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
        m.extend_from_slice(&[7u8; 12]);
        m.extend_from_slice(&attr);
        m
    }

    #[test]
    fn parses_username_and_rejects_garbage() {
        let m = stun_with_username("abcd:efgh");
        assert_eq!(stun_local_ufrag(&m), Some("abcd"));
        for w in [0, 1, 9, 10, 31] {
            let u = ufrag_for_worker(w);
            assert_eq!(u.len(), 16);
            assert_eq!(worker_of_ufrag(&u), Some(w));
        }
        assert_eq!(worker_of_ufrag(""), None);
        assert_eq!(worker_of_ufrag("Zabc"), None);
        assert!(is_stun(&m));
        assert_eq!(stun_local_ufrag(&m[..m.len() - 3]), None);
        assert_eq!(stun_local_ufrag(&[0u8; 19]), None);
        let mut bad_cookie = m.clone();
        bad_cookie[5] = 0;
        assert_eq!(stun_local_ufrag(&bad_cookie), None);
        // Attribute length pointing past the end.
        let mut long = m.clone();
        long[22] = 0xff;
        assert_eq!(stun_local_ufrag(&long), None);
        for n in 0..64 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            let _ = stun_local_ufrag(&junk);
        }
    }
}
