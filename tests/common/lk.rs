//! A LiveKit-protocol test client on real WebRTC (webrtc-rs `rtc`, full ICE as a browser would be):
//! WebSocket signaling with protobuf, a publisher PC that offers, a subscriber PC that answers server
//! offers, each on its own UDP socket on 127.0.0.1 — or, with `Client::connect_tcp`, over ICE-TCP only
//! (an active TCP candidate: the client connects to the server's passive candidate, RFC 4571 framing).
#![allow(dead_code, clippy::large_enum_variant)]

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use parlor_signaling::protocol::{self, proto, CandidateInit};
use proto::signal_request::Message as Req;
use proto::signal_response::Message as Resp;
use rtc::interceptor::{Registry, Slot};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_OPUS, MIME_TYPE_VP8,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMsg;

/// A VP8 keyframe payload (RFC 7741: S=1, PID=0, no extensions; payload header P=0) carrying `i`.
pub fn vp8_keyframe(i: u16) -> Vec<u8> {
    let mut v = vec![0x10, 0x00, 0x9d, 0x01, 0x2a, (i >> 8) as u8, i as u8];
    v.extend(std::iter::repeat_n(0x55, 200));
    v
}

/// What the test observes.
#[derive(Debug)]
pub enum Seen {
    Signal(Resp),
    /// RTP received on the subscriber PC: (rtc track id, sequence, timestamp, payload).
    Rtp {
        track: String,
        seq: u16,
        ts: u32,
        payload: Vec<u8>,
    },
    /// An RTCP sender report received on the subscriber PC.
    SenderReport {
        ssrc: u32,
        packets: u32,
        octets: u32,
        rtp_time: u32,
    },
    SubscriberState(RTCPeerConnectionState),
    PublisherState(RTCPeerConnectionState),
    Closed,
}

enum PcCmd {
    Remote(RTCSessionDescription, Option<u32>),
    CreateOffer(u32),
    SendRtp(Vec<u8>),
    /// A packet lost on the way: its sequence number and timestamp are used up, nothing is sent.
    LoseRtp,
    /// Drop the next n inbound RTP datagrams before the PC sees them (loss on the way in).
    DropInbound(u32),
    Stop,
}

pub struct Client {
    pub join: proto::JoinResponse,
    ws_tx: mpsc::Sender<WsMsg>,
    pub seen: mpsc::Receiver<Seen>,
    pub_cmd: mpsc::Sender<PcCmd>,
    sub_cmd: mpsc::Sender<PcCmd>,
}

/// How a client PC reaches the server: its own UDP socket, or ICE-TCP connections it opens.
enum Net {
    Udp(UdpSocket),
    Tcp(TcpNet),
}

/// ICE-TCP (active): one connection per server address, opened on the first packet to it; frames
/// read from every connection arrive on `rx` as (server address, our local address, frame).
struct TcpNet {
    conns: std::collections::HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    tx: mpsc::Sender<(SocketAddr, SocketAddr, Vec<u8>)>,
    rx: mpsc::Receiver<(SocketAddr, SocketAddr, Vec<u8>)>,
}

impl Net {
    fn tcp() -> Net {
        let (tx, rx) = mpsc::channel(1024);
        Net::Tcp(TcpNet {
            conns: Default::default(),
            tx,
            rx,
        })
    }

    async fn send(&mut self, out: &TaggedBytesMut) {
        match self {
            Net::Udp(s) => {
                let _ = s.send_to(&out.message, out.transport.peer_addr).await;
            }
            Net::Tcp(t) => {
                if out.transport.transport_protocol != TransportProtocol::TCP {
                    return;
                }
                let to = out.transport.peer_addr;
                if t.conns.get(&to).is_none_or(|c| c.is_closed()) {
                    let Ok(Ok(stream)) = tokio::time::timeout(
                        Duration::from_secs(2),
                        tokio::net::TcpStream::connect(to),
                    )
                    .await
                    else {
                        return;
                    };
                    let _ = stream.set_nodelay(true);
                    let local = stream.local_addr().unwrap();
                    let (mut rd, mut wr) = stream.into_split();
                    let (ctx, mut crx) = mpsc::channel::<Vec<u8>>(256);
                    let inbound = t.tx.clone();
                    tokio::spawn(async move {
                        use tokio::io::AsyncReadExt;
                        let mut dec = rtc::shared::tcp_framing::TcpFrameDecoder::new();
                        let mut buf = vec![0u8; 4096];
                        loop {
                            tokio::select! {
                                r = rd.read(&mut buf) => match r {
                                    Ok(0) | Err(_) => break,
                                    Ok(n) => {
                                        dec.extend_from_slice(&buf[..n]);
                                        while let Some(f) = dec.next_packet() {
                                            if inbound.send((to, local, f)).await.is_err() {
                                                return;
                                            }
                                        }
                                    }
                                },
                                p = crx.recv() => {
                                    use tokio::io::AsyncWriteExt;
                                    let Some(p) = p else { break };
                                    let framed = rtc::shared::tcp_framing::frame_packet(&p);
                                    if wr.write_all(&framed).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                    });
                    t.conns.insert(to, ctx);
                }
                if let Some(c) = t.conns.get(&to) {
                    let _ = c.try_send(out.message.to_vec());
                }
            }
        }
    }

    /// Next inbound packet: (bytes, from, our local address, protocol).
    async fn recv(
        &mut self,
        buf: &mut [u8],
    ) -> Option<(BytesMut, SocketAddr, SocketAddr, TransportProtocol)> {
        match self {
            Net::Udp(s) => {
                let (n, from) = s.recv_from(buf).await.ok()?;
                let local = s.local_addr().ok()?;
                Some((
                    BytesMut::from(&buf[..n]),
                    from,
                    local,
                    TransportProtocol::UDP,
                ))
            }
            Net::Tcp(t) => {
                let (from, local, f) = t.rx.recv().await?;
                Some((BytesMut::from(&f[..]), from, local, TransportProtocol::TCP))
            }
        }
    }
}

fn build_pc(addr: SocketAddr, with_audio_track: Option<u32>) -> RTCPeerConnection {
    build_pc_on(addr, "udp", with_audio_track.map(|s| (s, Publish::Audio)))
}

/// What a client publishes: Opus audio (20 ms packets) or VP8 video (30 frames/s, one packet each).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Publish {
    Audio,
    Video,
}

impl Publish {
    /// RTP timestamp step between packets.
    fn ts_step(self) -> u32 {
        match self {
            Publish::Audio => 960,
            Publish::Video => 3000,
        }
    }
}

/// A client PC whose only local candidate is `addr` on `network` ("udp", or "tcp": active).
fn build_pc_on(
    addr: SocketAddr,
    network: &str,
    with_track: Option<(u32, Publish)>,
) -> RTCPeerConnection {
    let se = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .build();
    let mut me = MediaEngine::default();
    me.register_default_codecs().unwrap();
    let reg = register_default_interceptors(Registry::new(), &mut me)
        .unwrap()
        .with(
            Slot::from(14_000),
            parlor::sfu::peer::RtcpTap::new(|p| p.as_any().is::<SenderReport>()),
        );
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(se)
        .with_media_engine(me)
        .with_interceptor_registry(reg)
        .build(Instant::now())
        .unwrap();
    let cand = CandidateHostConfig {
        base_config: CandidateConfig {
            network: network.into(),
            address: addr.ip().to_string(),
            port: addr.port(),
            component: 1,
            ..Default::default()
        },
        tcp_type: if network == "tcp" {
            rtc::ice::tcp_type::TcpType::Active
        } else {
            Default::default()
        },
    }
    .new_candidate_host()
    .unwrap();
    pc.add_local_candidate(RTCIceCandidate::from(&cand).to_json().unwrap())
        .unwrap();
    if let Some((ssrc, kind)) = with_track {
        let (track_id, label, codec_kind, codec) = match kind {
            Publish::Audio => (
                "mic-track-1",
                "mic",
                RtpCodecKind::Audio,
                RTCRtpCodec {
                    mime_type: MIME_TYPE_OPUS.into(),
                    clock_rate: 48000,
                    channels: 2,
                    sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
                    rtcp_feedback: vec![],
                },
            ),
            Publish::Video => (
                "cam-track-1",
                "cam",
                RtpCodecKind::Video,
                RTCRtpCodec {
                    mime_type: MIME_TYPE_VP8.into(),
                    clock_rate: 90000,
                    channels: 0,
                    sdp_fmtp_line: String::new(),
                    rtcp_feedback: vec![],
                },
            ),
        };
        let track = MediaStreamTrack::new(
            "stream-a".into(),
            track_id.into(),
            label.into(),
            codec_kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        );
        pc.add_track(track).unwrap();
    }
    pc
}

/// Drive one client PC on its own socket (`ssrc`, `ts_step`: the stream it publishes, if any).
#[allow(clippy::too_many_arguments)]
async fn run_pc(
    mut pc: RTCPeerConnection,
    mut net: Net,
    mut cmds: mpsc::Receiver<PcCmd>,
    ws_tx: mpsc::Sender<WsMsg>,
    seen: mpsc::Sender<Seen>,
    publisher: bool,
    ssrc: u32,
    ts_step: u32,
) {
    let mut buf = vec![0u8; 3000];
    let mut seq: u16 = 1000;
    let mut ts: u32 = 0;
    let mut drop_in = 0u32;
    loop {
        while let Some(out) = pc.poll_write() {
            net.send(&out).await;
        }
        while let Some(ev) = pc.poll_event() {
            match ev {
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) => {
                    let _ = seen
                        .send(if publisher {
                            Seen::PublisherState(s)
                        } else {
                            Seen::SubscriberState(s)
                        })
                        .await;
                }
                RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(_)) => {}
                _ => {}
            }
        }
        while let Some(m) = pc.poll_read() {
            match m.message {
                RTCMessage::RtpPacket(track, p) => {
                    let _ = seen
                        .send(Seen::Rtp {
                            track,
                            seq: p.header.sequence_number,
                            ts: p.header.timestamp,
                            payload: p.payload.to_vec(),
                        })
                        .await;
                }
                RTCMessage::RtcpPacket(_, pkts) => {
                    for p in pkts {
                        if let Some(sr) = p.as_any().downcast_ref::<SenderReport>() {
                            let _ = seen
                                .send(Seen::SenderReport {
                                    ssrc: sr.ssrc,
                                    packets: sr.packet_count,
                                    octets: sr.octet_count,
                                    rtp_time: sr.rtp_time,
                                })
                                .await;
                        }
                    }
                }
                _ => {}
            }
        }
        let deadline = pc
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_millis(100));
        let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline));
        tokio::select! {
            r = net.recv(&mut buf) => {
                let Some((message, from, local, proto)) = r else { break };
                // RTP, not RTCP (RFC 5761: RTCP packet types 192..=223 in the second byte).
                let is_rtp = message.len() > 12 && message[0] & 0xc0 == 0x80 && !(192..=223).contains(&message[1]);
                if is_rtp && drop_in > 0 {
                    drop_in -= 1;
                    continue;
                }
                let _ = pc.handle_read(TaggedBytesMut {
                    now: Instant::now(),
                    transport: TransportContext { local_addr: local, peer_addr: from, ecn: None, transport_protocol: proto },
                    message,
                });
            }
            c = cmds.recv() => match c {
                None | Some(PcCmd::Stop) => break,
                Some(PcCmd::Remote(desc, answer_id)) => {
                    pc.set_remote_description(Instant::now(), desc).unwrap();
                    if let Some(id) = answer_id {
                        let ans = pc.create_answer(None).unwrap();
                        pc.set_local_description(Instant::now(), ans).unwrap();
                        let sdp = pc.local_description().unwrap().sdp;
                        send_req(&ws_tx, Req::Answer(proto::SessionDescription { r#type: "answer".into(), sdp, id, ..Default::default() })).await;
                    }
                }
                Some(PcCmd::CreateOffer(id)) => {
                    let offer = pc.create_offer(None).unwrap();
                    pc.set_local_description(Instant::now(), offer).unwrap();
                    let sdp = pc.local_description().unwrap().sdp;
                    send_req(&ws_tx, Req::Offer(proto::SessionDescription { r#type: "offer".into(), sdp, id, ..Default::default() })).await;
                }
                Some(PcCmd::DropInbound(n)) => drop_in += n,
                Some(PcCmd::LoseRtp) => {
                    seq = seq.wrapping_add(1);
                    ts = ts.wrapping_add(ts_step);
                }
                Some(PcCmd::SendRtp(payload)) => {
                    let first_sender = pc.get_senders().next();
                    if let Some(sender_id) = first_sender {
                        if let Some(mut s) = pc.rtp_sender(sender_id) {
                            let pt = s.get_parameters().rtp_parameters.codecs.first().map(|c| c.payload_type).unwrap_or(111);
                            let pkt = rtc::rtp::Packet {
                                header: rtc::rtp::header::Header {
                                    version: 2, payload_type: pt, sequence_number: seq, timestamp: ts, ssrc, ..Default::default()
                                },
                                payload: payload.into(),
                            };
                            let _ = s.write_rtp(Instant::now(), pkt);
                            seq = seq.wrapping_add(1);
                            ts = ts.wrapping_add(ts_step);
                        }
                    }
                }
            },
            _ = sleep => { let _ = pc.handle_timeout(Instant::now()); }
        }
    }
    let _ = pc.close();
}

async fn send_req(ws_tx: &mpsc::Sender<WsMsg>, m: Req) {
    let _ = ws_tx
        .send(WsMsg::Binary(protocol::encode_request(m).into()))
        .await;
}

impl Client {
    /// Connect and join; returns once the JoinResponse arrived and the publisher PC offer is sent.
    pub async fn connect(ws_base: &str, token: &str, publish_audio: bool) -> Client {
        Self::connect_on(ws_base, token, publish_audio, false).await
    }

    /// Like `connect`, but both PCs use ICE-TCP only (an active TCP candidate on 127.0.0.1).
    /// Connect, publish audio and wait until the publisher transport is connected.
    pub async fn publishing(ws_base: &str, token: &str) -> Client {
        let mut c = Self::connect(ws_base, token, true).await;
        c.publish_audio().await;
        c.wait_for(|s| {
            matches!(s, Seen::PublisherState(RTCPeerConnectionState::Connected)).then_some(())
        })
        .await;
        c
    }

    pub async fn connect_tcp(ws_base: &str, token: &str, publish_audio: bool) -> Client {
        Self::connect_on(ws_base, token, publish_audio, true).await
    }

    /// Like `connect`, publishing a VP8 video track (`publish_video`) instead of audio.
    pub async fn connect_video(ws_base: &str, token: &str) -> Client {
        Self::connect_with(ws_base, token, Some(Publish::Video), false).await
    }

    async fn connect_on(ws_base: &str, token: &str, publish_audio: bool, tcp: bool) -> Client {
        Self::connect_with(ws_base, token, publish_audio.then_some(Publish::Audio), tcp).await
    }

    async fn connect_with(
        ws_base: &str,
        token: &str,
        publish: Option<Publish>,
        tcp: bool,
    ) -> Client {
        let url = format!(
            "{ws_base}/rtc?access_token={token}&auto_subscribe=1&protocol=16&sdk=rust-test"
        );
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("ws connect");
        let (mut sink, mut stream) = ws.split();
        let (ws_tx, mut ws_rx) = mpsc::channel::<WsMsg>(256);
        tokio::spawn(async move {
            while let Some(m) = ws_rx.recv().await {
                let close = matches!(m, WsMsg::Close(_));
                if sink.send(m).await.is_err() || close {
                    break;
                }
            }
        });
        // First message must be the JoinResponse.
        let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("join timeout");
        let Some(Ok(WsMsg::Binary(b))) = first else {
            panic!("expected binary join, got {first:?}")
        };
        let Ok(Resp::Join(join)) = protocol::decode_response(&b) else {
            panic!("first message is not join")
        };
        let (seen_tx, seen) = mpsc::channel(4096);
        let ssrc = rand::random::<u32>();
        let (pub_net, sub_net, pub_pc, sub_pc) = if tcp {
            // Active TCP candidates announce port 9 (RFC 6544); the real port is the connection's.
            let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
            (
                Net::tcp(),
                Net::tcp(),
                build_pc_on(addr, "tcp", publish.map(|k| (ssrc, k))),
                build_pc_on(addr, "tcp", None),
            )
        } else {
            let pub_sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let sub_sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let pub_pc = build_pc_on(
                pub_sock.local_addr().unwrap(),
                "udp",
                publish.map(|k| (ssrc, k)),
            );
            let sub_pc = build_pc(sub_sock.local_addr().unwrap(), None);
            (Net::Udp(pub_sock), Net::Udp(sub_sock), pub_pc, sub_pc)
        };
        let (pub_cmd, pub_rx) = mpsc::channel(64);
        let (sub_cmd, sub_rx) = mpsc::channel(64);
        tokio::spawn(run_pc(
            pub_pc,
            pub_net,
            pub_rx,
            ws_tx.clone(),
            seen_tx.clone(),
            true,
            ssrc,
            publish.unwrap_or(Publish::Audio).ts_step(),
        ));
        tokio::spawn(run_pc(
            sub_pc,
            sub_net,
            sub_rx,
            ws_tx.clone(),
            seen_tx.clone(),
            false,
            0,
            0,
        ));
        // Signal reader: answers go to the publisher PC, offers to the subscriber PC; all is reported.
        let (pc_pub, pc_sub, seen_sig) = (pub_cmd.clone(), sub_cmd.clone(), seen_tx.clone());
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                let WsMsg::Binary(b) = m else {
                    if matches!(m, WsMsg::Close(_)) {
                        break;
                    }
                    continue;
                };
                let Ok(resp) = protocol::decode_response(&b) else {
                    continue;
                };
                match &resp {
                    Resp::Answer(sd) => {
                        let _ = pc_pub
                            .send(PcCmd::Remote(
                                RTCSessionDescription::answer(sd.sdp.clone()).unwrap(),
                                None,
                            ))
                            .await;
                    }
                    Resp::Offer(sd) => {
                        let _ = pc_sub
                            .send(PcCmd::Remote(
                                RTCSessionDescription::offer(sd.sdp.clone()).unwrap(),
                                Some(sd.id),
                            ))
                            .await;
                    }
                    _ => {}
                }
                let _ = seen_sig.send(Seen::Signal(resp)).await;
            }
            let _ = seen_sig.send(Seen::Closed).await;
        });
        Client {
            join,
            ws_tx,
            seen,
            pub_cmd,
            sub_cmd,
        }
    }

    pub async fn send(&self, m: Req) {
        send_req(&self.ws_tx, m).await;
    }

    pub async fn send_raw(&self, bytes: Vec<u8>) {
        let _ = self.ws_tx.send(WsMsg::Binary(bytes.into())).await;
    }

    /// Publish the audio track: AddTrack, wait for TrackPublished, then offer.
    pub async fn publish_audio(&mut self) -> proto::TrackInfo {
        self.send(Req::AddTrack(proto::AddTrackRequest {
            cid: "mic-track-1".into(),
            name: "microphone".into(),
            r#type: proto::TrackType::Audio as i32,
            source: proto::TrackSource::Microphone as i32,
            ..Default::default()
        }))
        .await;
        let info = self
            .wait_for(|s| match s {
                Seen::Signal(Resp::TrackPublished(t)) => t.track.clone(),
                _ => None,
            })
            .await;
        let _ = self.pub_cmd.send(PcCmd::CreateOffer(1)).await;
        info
    }

    /// Publish the video track (after `connect_video`): AddTrack, wait for TrackPublished, then offer.
    pub async fn publish_video(&mut self) -> proto::TrackInfo {
        self.send(Req::AddTrack(proto::AddTrackRequest {
            cid: "cam-track-1".into(),
            name: "camera".into(),
            r#type: proto::TrackType::Video as i32,
            source: proto::TrackSource::Camera as i32,
            width: 640,
            height: 360,
            ..Default::default()
        }))
        .await;
        let info = self
            .wait_for(|s| match s {
                Seen::Signal(Resp::TrackPublished(t)) => t.track.clone(),
                _ => None,
            })
            .await;
        let _ = self.pub_cmd.send(PcCmd::CreateOffer(1)).await;
        info
    }

    pub async fn send_rtp(&self, payload: Vec<u8>) {
        let _ = self.pub_cmd.send(PcCmd::SendRtp(payload)).await;
    }

    /// Simulate network loss of the next packet (sequence number and timestamp advance).
    #[allow(dead_code)]
    pub async fn lose_rtp(&self) {
        let _ = self.pub_cmd.send(PcCmd::LoseRtp).await;
    }

    /// Drop the next `n` RTP datagrams arriving at the subscriber PC (loss on the server's side of
    /// the path: the subscriber NACKs them, if its codec negotiated NACK).
    pub async fn drop_inbound_rtp(&self, n: u32) {
        let _ = self.sub_cmd.send(PcCmd::DropInbound(n)).await;
    }

    /// Wait (up to 15 s) for an observation `f` maps to Some; other observations are dropped.
    pub async fn wait_for<T>(&mut self, mut f: impl FnMut(&Seen) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            match tokio::time::timeout_at(deadline, self.seen.recv()).await {
                Ok(Some(s)) => {
                    if let Some(v) = f(&s) {
                        return v;
                    }
                }
                Ok(None) => panic!("client event stream ended"),
                Err(_) => panic!("timed out waiting for an event"),
            }
        }
    }

    pub async fn leave(self) {
        self.send(Req::Leave(proto::LeaveRequest {
            reason: proto::DisconnectReason::ClientInitiated as i32,
            action: proto::leave_request::Action::Disconnect as i32,
            ..Default::default()
        }))
        .await;
        let _ = self.ws_tx.send(WsMsg::Close(None)).await;
        let _ = self.pub_cmd.send(PcCmd::Stop).await;
        let _ = self.sub_cmd.send(PcCmd::Stop).await;
    }
}

pub fn candidate_json(c: &str) -> String {
    CandidateInit {
        candidate: c.into(),
        sdp_mid: Some("0".into()),
        sdp_mline_index: Some(0),
        username_fragment: None,
    }
    .to_json()
}
