//! Client peer connections on the webrtc-rs `rtc` Sans-I/O core: full ICE (as a browser), one host
//! candidate (the connection's own UDP socket on loopback), mDNS off, default interceptors.

use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_OPUS, MIME_TYPE_VP8,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::RTCRtpSenderId;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub type RtcError = rtc::shared::error::Error;

/// A synthetic outgoing track.
#[derive(Debug, Clone, Copy)]
pub struct TrackSpec {
    pub ssrc: u32,
    pub video: bool,
}

/// Build a client peer connection whose only candidate is `addr`, with `tracks` added; returns the
/// connection and one sender id per track. `ice_check_interval`: pacing of ICE connectivity checks
/// (None: the `rtc` default of 200 ms; browsers pace at Ta = 50 ms, RFC 8445).
pub fn build(
    now: Instant,
    addr: SocketAddr,
    tracks: &[TrackSpec],
    ice_check_interval: Option<Duration>,
) -> Result<(RTCPeerConnection, Vec<RTCRtpSenderId>), RtcError> {
    let se = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .with_ice_connection_attempts(ice_check_interval, None)
        .build();
    let mut me = MediaEngine::default();
    me.register_default_codecs()?;
    let reg = register_default_interceptors(Registry::new(), &mut me)?;
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(se)
        .with_media_engine(me)
        .with_interceptor_registry(reg)
        .build(now)?;
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
    .new_candidate_host()?;
    pc.add_local_candidate(RTCIceCandidate::from(&cand).to_json()?)?;
    let mut senders = Vec::with_capacity(tracks.len());
    for (i, t) in tracks.iter().enumerate() {
        let codec = if t.video {
            RTCRtpCodec {
                mime_type: MIME_TYPE_VP8.into(),
                clock_rate: 90000,
                channels: 0,
                sdp_fmtp_line: String::new(),
                rtcp_feedback: vec![],
            }
        } else {
            RTCRtpCodec {
                mime_type: MIME_TYPE_OPUS.into(),
                clock_rate: 48000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
                rtcp_feedback: vec![],
            }
        };
        let (kind, id) = if t.video {
            (RtpCodecKind::Video, format!("cam-{i}"))
        } else {
            (RtpCodecKind::Audio, format!("mic-{i}"))
        };
        let track = MediaStreamTrack::new(
            "load-stream".into(),
            id.clone(),
            id,
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(t.ssrc),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        );
        senders.push(pc.add_track(track)?);
    }
    Ok((pc, senders))
}

/// The msid track id `build` gives the `i`-th track (LiveKit's AddTrack `cid`).
pub fn track_cid(i: usize, video: bool) -> String {
    if video {
        format!("cam-{i}")
    } else {
        format!("mic-{i}")
    }
}
