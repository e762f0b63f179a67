//! Acceptance: two webrtc-rs 0.21 peers, forced to relay (`iceTransportPolicy: relay`) through
//! the embedded TURN server on 127.0.0.1, connect (ICE + DTLS + SCTP + SRTP) and exchange
//! data-channel messages and Opus RTP media both ways; the selected candidate pair is relay/relay and the server's counters show
//! the traffic.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use parlor_turn::{Clock, TurnConfig};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceCandidateType, RTCIceGatheringState, RTCIceServer,
    RTCIceTransportPolicy, RTCPeerConnectionIceEvent, RTCPeerConnectionState, SettingEngineBuilder,
};
use webrtc::runtime::{channel, default_runtime, Receiver, Runtime, Sender};

/// Hang guard for each wait (not a performance assertion).
const WAIT: Duration = Duration::from_secs(30);

struct Handler {
    gathered: Sender<()>,
    connected: Sender<()>,
    failed: Sender<RTCPeerConnectionState>,
    candidates: Sender<RTCIceCandidateType>,
    remote_dc: Sender<Arc<dyn DataChannel>>,
    rtp: Sender<(u32, Vec<u8>)>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        let _ = self.candidates.try_send(event.candidate.typ);
    }
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.try_send(());
        }
    }
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        match state {
            RTCPeerConnectionState::Connected => {
                let _ = self.connected.try_send(());
            }
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                let _ = self.failed.try_send(state);
            }
            _ => {}
        }
    }
    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        let _ = self.remote_dc.try_send(dc);
    }
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let rtp = self.rtp.clone();
        tokio::spawn(async move {
            while let Some(ev) = track.poll().await {
                match ev {
                    TrackRemoteEvent::OnRtpPacket(p) => {
                        let _ = rtp.try_send((p.header.ssrc, p.payload.to_vec()));
                    }
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
        });
    }
}

const OPUS_PT: u8 = 111;

fn opus_track(id: &str, ssrc: u32) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        format!("stream-{id}"),
        format!("audio-{id}"),
        format!("label-{id}"),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: RTCRtpCodec {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: 48000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                rtcp_feedback: vec![],
            },
            ..Default::default()
        }],
    )))
}

/// Send 20 ms Opus-sized RTP packets on `track` until `rx` has seen `want` packets carrying
/// exactly what was sent (bounded: at most 1000 packets).
async fn send_until_received(
    track: &Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    rx: &mut Receiver<(u32, Vec<u8>)>,
    tag: &str,
    want: usize,
) -> usize {
    let mut got = 0;
    for seq in 0u16..1000 {
        let payload = format!("{tag} opus frame {seq:04}").into_bytes();
        track
            .write_rtp(rtc::rtp::packet::Packet {
                header: rtc::rtp::header::Header {
                    version: 2,
                    payload_type: OPUS_PT,
                    sequence_number: seq,
                    timestamp: u32::from(seq) * 960,
                    ssrc,
                    ..Default::default()
                },
                payload: payload.into(),
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        while let Ok((s, p)) = rx.try_recv() {
            let text = String::from_utf8(p).unwrap();
            assert!(
                text.starts_with(&format!("{tag} opus frame ")),
                "unexpected payload {text:?}"
            );
            assert_eq!(s, ssrc);
            got += 1;
        }
        if got >= want {
            break;
        }
    }
    got
}

struct Peer {
    pc: Arc<dyn PeerConnection>,
    gathered: Receiver<()>,
    connected: Receiver<()>,
    failed: Receiver<RTCPeerConnectionState>,
    candidates: Receiver<RTCIceCandidateType>,
    remote_dc: Receiver<Arc<dyn DataChannel>>,
    rtp: Receiver<(u32, Vec<u8>)>,
}

async fn peer(runtime: Arc<dyn Runtime>, ice: RTCIceServer) -> Peer {
    let (gathered_tx, gathered) = channel(4);
    let (connected_tx, connected) = channel(4);
    let (failed_tx, failed) = channel(4);
    let (cand_tx, candidates) = channel(64);
    let (dc_tx, remote_dc) = channel(4);
    let (rtp_tx, rtp) = channel(1024);
    let mut media = MediaEngine::default();
    media.register_default_codecs().unwrap();
    // No multicast interface in containers / namespaces: mDNS must be off.
    let setting_engine = SettingEngineBuilder::new()
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .build();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(
            RTCConfigurationBuilder::new()
                .with_ice_servers(vec![ice])
                .with_ice_transport_policy(RTCIceTransportPolicy::Relay)
                .build(),
        )
        .with_media_engine(media)
        .with_setting_engine(setting_engine)
        .with_handler(Arc::new(Handler {
            gathered: gathered_tx,
            connected: connected_tx,
            failed: failed_tx,
            candidates: cand_tx,
            remote_dc: dc_tx,
            rtp: rtp_tx,
        }))
        .with_runtime(runtime)
        // Loopback must be given explicitly (a wildcard skips it).
        .with_udp_addrs(vec!["127.0.0.1:0".to_string()])
        .build()
        .await
        .unwrap();
    Peer {
        pc: Arc::new(pc),
        gathered,
        connected,
        failed,
        candidates,
        remote_dc,
        rtp,
    }
}

async fn wait<T>(rx: &mut Receiver<T>, what: &str) -> T {
    match tokio::time::timeout(WAIT, rx.recv()).await {
        Ok(Some(v)) => v,
        Ok(None) => panic!("{what}: channel closed"),
        Err(_) => panic!("{what}: nothing within {WAIT:?}"),
    }
}

/// Wait for `OnOpen` (if `need_open`), then for the next text message.
async fn next_message(dc: &Arc<dyn DataChannel>) -> String {
    loop {
        let ev = tokio::time::timeout(WAIT, dc.poll())
            .await
            .expect("data channel event");
        match ev {
            Some(DataChannelEvent::OnMessage(m)) => {
                return String::from_utf8(m.data.to_vec()).unwrap();
            }
            Some(DataChannelEvent::OnClose) | None => panic!("data channel closed"),
            Some(_) => {}
        }
    }
}

async fn wait_open(dc: &Arc<dyn DataChannel>) {
    loop {
        let ev = tokio::time::timeout(WAIT, dc.poll())
            .await
            .expect("data channel open");
        match ev {
            Some(DataChannelEvent::OnOpen) => return,
            Some(DataChannelEvent::OnClose) | None => panic!("data channel closed"),
            Some(_) => {}
        }
    }
}

async fn selected_pair_types(
    pc: &Arc<dyn PeerConnection>,
) -> (RTCIceCandidateType, RTCIceCandidateType) {
    let sctp = pc.sctp().await.expect("SCTP transport");
    let pair = sctp
        .transport()
        .ice_transport()
        .get_selected_candidate_pair()
        .await
        .unwrap()
        .expect("a selected candidate pair");
    (pair.local().typ, pair.remote().typ)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_webrtc_peers_connect_through_the_embedded_turn_server_relay_only() {
    let clock = real_time_manual_clock();
    // Relays on 127.0.0.1: the peers' relayed addresses are loopback, so the allow-list must
    // contain it (TurnConfig::loopback does).
    let server = start(
        TurnConfig::loopback(REALM, vec![SECRET.into()]),
        clock.clone(),
    )
    .await;
    let turn_url = format!("turn:{}?transport=udp", server.local_addrs().udp);
    let ice = |user: &str| {
        let c = server.credentials().mint(user, 600, clock.unix_secs());
        RTCIceServer {
            urls: vec![turn_url.clone()],
            username: c.username,
            credential: c.credential,
        }
    };

    let runtime = default_runtime().expect("tokio runtime");
    let mut a = peer(runtime.clone(), ice("alice")).await;
    let mut b = peer(runtime.clone(), ice("bob")).await;

    // Non-trickle offer/answer: wait for gathering so the SDP carries the relay candidates.
    let dc_a = a.pc.create_data_channel("chat", None).await.unwrap();
    let (ssrc_a, ssrc_b) = (0x1111_0001, 0x2222_0002);
    let track_a = opus_track("a", ssrc_a);
    a.pc.add_track(track_a.clone() as Arc<dyn TrackLocal>)
        .await
        .unwrap();
    let offer = a.pc.create_offer(None).await.unwrap();
    a.pc.set_local_description(offer).await.unwrap();
    wait(&mut a.gathered, "offerer gathering").await;
    let offer = a.pc.local_description().await.unwrap();
    assert!(
        offer.sdp.contains("typ relay"),
        "offer has no relay candidate:\n{}",
        offer.sdp
    );
    assert!(
        !offer.sdp.contains("typ host"),
        "relay policy leaked a host candidate"
    );

    b.pc.set_remote_description(offer).await.unwrap();
    let track_b = opus_track("b", ssrc_b);
    b.pc.add_track(track_b.clone() as Arc<dyn TrackLocal>)
        .await
        .unwrap();
    let answer = b.pc.create_answer(None).await.unwrap();
    b.pc.set_local_description(answer).await.unwrap();
    wait(&mut b.gathered, "answerer gathering").await;
    let answer = b.pc.local_description().await.unwrap();
    assert!(
        answer.sdp.contains("typ relay"),
        "answer has no relay candidate:\n{}",
        answer.sdp
    );
    a.pc.set_remote_description(answer).await.unwrap();

    tokio::select! {
        _ = wait(&mut a.connected, "offerer connected") => {}
        s = wait(&mut a.failed, "offerer failure") => panic!("offerer: {s}"),
    }
    tokio::select! {
        _ = wait(&mut b.connected, "answerer connected") => {}
        s = wait(&mut b.failed, "answerer failure") => panic!("answerer: {s}"),
    }
    for (name, p) in [("offerer", &mut a), ("answerer", &mut b)] {
        while let Ok(t) = p.candidates.try_recv() {
            assert_eq!(t, RTCIceCandidateType::Relay, "{name} gathered {t:?}");
        }
    }

    // Data channel both ways.
    wait_open(&dc_a).await;
    let dc_b = wait(&mut b.remote_dc, "remote data channel").await;
    for i in 0..10 {
        dc_a.send_text(&format!("a->b {i}")).await.unwrap();
        assert_eq!(next_message(&dc_b).await, format!("a->b {i}"));
        dc_b.send_text(&format!("b->a {i}")).await.unwrap();
        assert_eq!(next_message(&dc_a).await, format!("b->a {i}"));
    }

    // Media (Opus RTP over SRTP) both ways.
    let got = send_until_received(&track_a, ssrc_a, &mut b.rtp, "a->b", 25).await;
    assert!(got >= 25, "answerer received only {got} RTP packets");
    let got = send_until_received(&track_b, ssrc_b, &mut a.rtp, "b->a", 25).await;
    assert!(got >= 25, "offerer received only {got} RTP packets");

    for (name, pc) in [("offerer", &a.pc), ("answerer", &b.pc)] {
        let (local, remote) = selected_pair_types(pc).await;
        assert_eq!(local, RTCIceCandidateType::Relay, "{name} local candidate");
        assert_eq!(
            remote,
            RTCIceCandidateType::Relay,
            "{name} remote candidate"
        );
    }

    let m = server.metrics();
    assert!(m.active_allocations >= 2, "{m:?}");
    // 20 messages plus ICE/DTLS/SCTP went through the relays in both directions.
    assert!(
        m.relayed_bytes_to_peers > 1000 && m.relayed_bytes_from_peers > 1000,
        "{m:?}"
    );
    assert_eq!(m.auth_failures, 0, "{m:?}");

    a.pc.close().await.unwrap();
    b.pc.close().await.unwrap();
    server.shutdown().await;
}
