//! The media worker: one task that owns a UDP socket, every peer connection on it and the rooms they
//! belong to. Signaling sessions talk to it only through `Cmd`s on a bounded channel and receive `Out`
//! messages on their own bounded channel; a full session queue disconnects that session instead of
//! blocking the worker. No locks on the packet path: the worker is the single owner of room state.

use super::forwarder::{is_keyframe, Decision, Forwarder, PacketMeta};
use super::peer::{self, AUDIO_LEVEL_URI};
use super::stun_check::{self, StunFault};
use super::{ParticipantSnapshot, SfuEvent, SfuHandle};
use crate::log_limit::LogLimiter;
use crate::metrics::Metrics;
use bytes::BytesMut;
use parlor_signaling::protocol::{
    leave_response, proto, subscriber_stream_id, CandidateInit, Target,
};
use proto::signal_response::Message as Resp;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::peer_connection::RTCPeerConnection;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

pub type Pid = u64;
type PcId = u64;

/// Permissions a participant joined with (from its token).
#[derive(Debug, Clone, Copy)]
pub struct Perms {
    pub can_publish: bool,
    pub can_subscribe: bool,
    pub can_publish_data: bool,
}

pub struct JoinReq {
    pub room: String,
    pub identity: String,
    pub name: String,
    pub metadata: String,
    pub perms: Perms,
    pub auto_subscribe: bool,
    pub events: mpsc::Sender<Out>,
    /// What the other participants see (STANDARD for clients; AGENT, EGRESS... for in-process ones).
    pub kind: proto::participant_info::Kind,
    /// In-process participant (recorder, assistant): no peer connections; its subscriptions are
    /// delivered on this channel and it publishes with `Cmd::LocalPublish` / `Cmd::LocalRtp`.
    pub local: Option<mpsc::Sender<LocalMedia>>,
    /// Invisible to the room (a recorder): not announced to clients, not in the participants API or
    /// lifecycle events, does not keep the room open, may not publish.
    pub hidden: bool,
}

/// What an in-process participant receives.
#[derive(Debug)]
pub enum LocalMedia {
    /// Subscribed to a track (auto-subscribe): its packets follow as `Rtp`.
    TrackAdded {
        track_sid: Arc<str>,
        publisher: String,
        kind: RtpCodecKind,
        mime_type: String,
        clock_rate: u32,
    },
    /// The track was unpublished (or its publisher left).
    TrackRemoved {
        track_sid: Arc<str>,
    },
    Rtp(LocalRtp),
}

/// One forwarded RTP packet as an in-process subscriber gets it: sequence number and timestamp are
/// rewritten by the same `Forwarder` as for WebRTC subscribers (continuous across layer switches),
/// `arrival` is when the worker read the packet from the publisher's socket.
#[derive(Debug, Clone)]
pub struct LocalRtp {
    pub track_sid: Arc<str>,
    pub arrival: Instant,
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: bytes::Bytes,
}

/// A track an in-process participant publishes (Opus audio).
#[derive(Debug, Clone)]
pub struct LocalTrackReq {
    pub name: String,
    /// Ask for subscriber-side Opus DTX/stereo etc. later; today always Opus 48 kHz stereo (RFC 7587).
    pub source: proto::TrackSource,
}

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("room is full")]
    RoomFull,
    #[error("too many rooms on this server")]
    TooManyRooms,
    #[error("server is shutting down")]
    ShuttingDown,
    /// The room is owned by another media worker (it closed and reopened elsewhere meanwhile):
    /// route the join again.
    #[error("room moved to another media worker")]
    Moved,
    #[error("the media worker did not answer in time")]
    Timeout,
    #[error("not allowed: {0}")]
    NotAllowed(&'static str),
    #[error("webrtc: {0}")]
    Peer(#[from] peer::PeerError),
}

pub struct Joined {
    pub pid: Pid,
    pub join: proto::JoinResponse,
}

/// Client → worker.
pub enum Cmd {
    Join(Box<JoinReq>, oneshot::Sender<Result<Joined, JoinError>>),
    Signal(Pid, Box<SignalIn>),
    Leave(Pid),
    /// An in-process participant publishes a track; the reply carries its sid.
    LocalPublish(
        Pid,
        LocalTrackReq,
        oneshot::Sender<Result<Arc<str>, JoinError>>,
    ),
    /// An in-process participant's RTP for one of its tracks (forwarded like a publisher's).
    LocalRtp(Pid, Arc<str>, rtc::rtp::Packet),
}

/// No peer connection (in-process participants); ids start at 1.
const NO_PC: PcId = 0;

pub enum SignalIn {
    Offer(proto::SessionDescription),
    Answer(proto::SessionDescription),
    Trickle(Target, CandidateInit),
    AddTrack(proto::AddTrackRequest),
    Mute(proto::MuteTrackRequest),
    Subscription(proto::UpdateSubscription),
    TrackSetting(proto::UpdateTrackSettings),
}

/// Worker → session.
#[derive(Debug)]
pub enum Out {
    Signal(Box<Resp>),
    /// Close the session with this reason (already sent a LeaveRequest when appropriate).
    Close(&'static str),
}

fn sig(m: Resp) -> Out {
    Out::Signal(Box::new(m))
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Media workers (threads) to start; rooms are spread over them. Clamped to 1..=MAX_WORKERS.
    pub workers: usize,
    /// SCHED_FIFO priority for the worker threads (0: normal scheduling).
    pub realtime_priority: u8,
    pub candidate_ip: std::net::IpAddr,
    /// ICE-TCP (passive, RFC 6544 + RFC 4571 framing) listener for clients whose UDP is blocked.
    pub tcp_bind: Option<SocketAddr>,
    /// Caps and handshake timeout of the ICE-TCP listener.
    pub tcp_limits: super::tcp::TcpLimits,
    pub max_participants: usize,
    pub max_rooms: usize,
    pub empty_timeout: Duration,
}

#[derive(Clone)]
pub struct WorkerHandle {
    pub tx: mpsc::Sender<Cmd>,
    pub udp_addr: SocketAddr,
}

/// Most media workers one server runs (the worker index is encoded in one ufrag character).
pub const MAX_WORKERS: usize = 32;

/// Per-packet counters kept by the worker itself and added to the shared `Metrics` on every
/// housekeeping tick: no atomic read-modify-write shared between worker threads per packet.
#[derive(Default)]
struct Counters {
    packets_in: u64,
    bytes_in: u64,
    packets_out: u64,
    bytes_out: u64,
    dropped: u64,
    send_failures: u64,
    /// STUN packets dropped before the ICE agent, by `StunFault` index.
    stun_dropped: [u64; StunFault::ALL.len()],
}

impl Counters {
    fn flush(&mut self, m: &Metrics) {
        let c = std::mem::take(self);
        Metrics::add(&m.rtp_packets_in, c.packets_in);
        Metrics::add(&m.rtp_bytes_in, c.bytes_in);
        Metrics::add(&m.rtp_packets_out, c.packets_out);
        Metrics::add(&m.rtp_bytes_out, c.bytes_out);
        Metrics::add(&m.rtp_dropped, c.dropped);
        Metrics::add(&m.rtp_send_failures, c.send_failures);
        for (total, n) in m.stun_dropped.iter().zip(c.stun_dropped) {
            Metrics::add(total, n);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Publisher,
    Subscriber,
}

struct Pc {
    rtc: RTCPeerConnection,
    owner: Pid,
    role: Role,
    ufrag: String,
    /// Local ICE password (MESSAGE-INTEGRITY key of the checks addressed to this connection).
    pwd: String,
    /// The peer's ICE password (from the remote description, once set).
    remote_pwd: Option<String>,
    addrs: Vec<(SocketAddr, bool)>,
    next_timeout: Option<Instant>,
    connected: bool,
    /// rtc track id → (track sid) for inbound tracks (publisher PCs).
    inbound: HashMap<String, Arc<str>>,
    /// Data channels by label (publisher PCs).
    reliable_dc: Option<rtc::data_channel::RTCDataChannelId>,
    lossy_dc: Option<rtc::data_channel::RTCDataChannelId>,
}

struct SubOut {
    /// Simulcast layer the subscriber asked for (0 low .. 2 high); the forwarder targets the best
    /// published layer at or below it.
    requested_layer: u8,
    sender_id: RTCRtpSenderId,
    ssrc: u32,
    /// Payload type negotiated on this subscriber's sender (None until the answer arrives).
    pt: Option<u8>,
    forwarder: Forwarder,
}

struct Participant {
    pid: Pid,
    sid: String,
    identity: String,
    name: String,
    metadata: String,
    room: String,
    perms: Perms,
    auto_subscribe: bool,
    events: mpsc::Sender<Out>,
    pub_pc: PcId,
    sub_pc: PcId,
    version: u32,
    joined_at_ms: i64,
    media_connected_at_ms: Option<i64>,
    /// AddTrack requests waiting for their media (cid → TrackInfo).
    pending: HashMap<String, proto::TrackInfo>,
    /// Published tracks by sid.
    tracks: Vec<String>,
    /// Subscriptions by track sid.
    subs: HashMap<String, SubOut>,
    /// Subscriber PC negotiation.
    sub_offer_id: u32,
    sub_awaiting_answer: bool,
    sub_needs_offer: bool,
    data_seq: u32,
    level: Option<(u8, Instant)>,
    kind: proto::participant_info::Kind,
    /// In-process participant: where its subscriptions go (None for WebRTC clients).
    local: Option<mpsc::Sender<LocalMedia>>,
    /// See `JoinReq::hidden`.
    hidden: bool,
}

struct TrackIn {
    /// Shared (inbound map, in-process subscribers' packets) without allocating.
    sid: Arc<str>,
    owner: Pid,
    info: proto::TrackInfo,
    kind: RtpCodecKind,
    codec: Option<RTCRtpCodec>,
    receiver_id: Option<RTCRtpReceiverId>,
    /// ssrc → simulcast layer.
    layers: Vec<(u32, u8)>,
    /// Last packet arrival per simulcast layer (0..=2): which layers the publisher sends right now.
    layer_seen: [Option<Instant>; 3],
    is_vp8: bool,
    is_h264: bool,
    subscribers: Vec<Pid>,
    audio_level_ext: Option<u8>,
    last_pli: Option<Instant>,
}

struct Room {
    name: String,
    sid: String,
    created_at_ms: i64,
    participants: Vec<Pid>,
    tracks: HashMap<String, TrackIn>,
    empty_since: Option<Instant>,
    last_speakers: Vec<String>,
}

pub struct Worker {
    /// This worker's index (0..workers): its rooms are placed on it in `SfuHandle`.
    index: usize,
    socket: Arc<UdpSocket>,
    local_addr: SocketAddr,
    candidate_addr: SocketAddr,
    cfg: WorkerConfig,
    pcs: HashMap<PcId, Pc>,
    /// (remote address, is TCP) → peer connection.
    by_addr: HashMap<(SocketAddr, bool), PcId>,
    /// ICE-TCP: our listener's address and the writer queue of each accepted connection.
    tcp_local: Option<SocketAddr>,
    tcp_conns: HashMap<SocketAddr, super::tcp::TcpConn>,
    by_ufrag: HashMap<String, PcId>,
    rooms: HashMap<String, Room>,
    parts: HashMap<Pid, Participant>,
    next_id: u64,
    sfu: SfuHandle,
    metrics: Arc<Metrics>,
    clock: crate::clock::SharedClock,
    /// Scratch space reused on every forwarded packet (no per-packet allocation).
    scratch: Vec<(PcId, RTCRtpSenderId, u32, u8, u16, u32)>,
    /// Peer connections whose timer is due (reused by `on_timers`).
    due_scratch: Vec<PcId>,
    earliest: Option<Instant>,
    counters: Counters,
    /// Rate limit of the per-packet STUN fault lines.
    stun_log: LogLimiter<{ StunFault::ALL.len() }>,
    /// UDP datagrams produced since the last `send_batch` (sent with one sendmmsg).
    batch: super::sendmmsg::SendBatch,
}

const PLI_MIN_INTERVAL: Duration = Duration::from_millis(500);
/// RFC 6464 level (−dBov) below which a packet counts as voiced.
const SPEAKING_LEVEL: u8 = 50;
const UDP_BUFFER_BYTES: usize = 4 << 20;
/// Datagrams handled per wake-up of the worker (the rest wait for the next turn of the loop, so
/// commands and timers are never starved).
const RECV_BATCH: usize = 64;

/// Send a join to the worker that owns `room` (a room not open yet is placed on the least-loaded
/// worker) and wait for its answer. A room that closed and reopened on another worker meanwhile
/// answers `Moved`: the join is routed again (a few times at most).
pub async fn route_join(
    sfu: &SfuHandle,
    workers: &[WorkerHandle],
    max_rooms: usize,
    room: &str,
    make_req: impl Fn() -> JoinReq,
) -> Result<(Joined, WorkerHandle), JoinError> {
    for _ in 0..3 {
        let w = match sfu.place_room(room, workers.len(), max_rooms) {
            Ok(w) => w,
            Err(super::PlaceError::TooManyRooms) => return Err(JoinError::TooManyRooms),
            Err(super::PlaceError::NoWorker) => return Err(JoinError::ShuttingDown),
        };
        let handle = workers.get(w).ok_or(JoinError::ShuttingDown)?;
        let (reply_tx, reply_rx) = oneshot::channel();
        handle
            .tx
            .send(Cmd::Join(Box::new(make_req()), reply_tx))
            .await
            .map_err(|_| JoinError::ShuttingDown)?;
        match tokio::time::timeout(Duration::from_secs(5), reply_rx).await {
            Ok(Ok(Err(JoinError::Moved))) => continue,
            Ok(Ok(r)) => return r.map(|j| (j, handle.clone())),
            Ok(Err(_)) => return Err(JoinError::ShuttingDown),
            Err(_) => return Err(JoinError::Timeout),
        }
    }
    Err(JoinError::Moved)
}

/// Start the media workers: `cfg.workers` threads, each with its own single-threaded runtime, UDP
/// socket and rooms (worker `i` binds `bind.port() + i`, or an ephemeral port when it is 0). One
/// ICE-TCP listener (if configured) hands each connection to the worker its ufrag names.
pub async fn spawn_workers(
    bind: SocketAddr,
    cfg: WorkerConfig,
    sfu: SfuHandle,
    metrics: Arc<Metrics>,
    clock: crate::clock::SharedClock,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<Vec<WorkerHandle>> {
    let n = cfg.workers.clamp(1, MAX_WORKERS);
    let mut tcp_txs = Vec::with_capacity(n);
    let mut tcp_rxs = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = mpsc::channel(4096);
        tcp_txs.push(tx);
        tcp_rxs.push(rx);
    }
    let tcp_local = match cfg.tcp_bind {
        Some(addr) => {
            Some(super::tcp::listen(addr, tcp_txs, cfg.tcp_limits, shutdown.clone()).await?)
        }
        None => None,
    };
    let mut handles = Vec::with_capacity(n);
    for (index, tcp_rx) in tcp_rxs.into_iter().enumerate() {
        let port = if bind.port() == 0 {
            0
        } else {
            u16::try_from(bind.port() as usize + index)
                .map_err(|_| std::io::Error::other("rtc.udp_port + rtc.workers exceeds 65535"))?
        };
        let handle = Worker::spawn(
            index,
            SocketAddr::new(bind.ip(), port),
            tcp_local,
            tcp_rx,
            cfg.clone(),
            sfu.clone(),
            metrics.clone(),
            clock.clone(),
            shutdown.clone(),
        )?;
        handles.push(handle);
    }
    Ok(handles)
}

/// Put the calling thread under SCHED_FIFO at `priority` (clamped to 1..=99); logs and carries on
/// with normal scheduling when not permitted.
fn set_realtime_priority(index: usize, priority: u8) {
    let param = libc::sched_param {
        sched_priority: i32::from(priority.clamp(1, 99)),
    };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if r == 0 {
        info!(
            worker = index,
            priority, "media worker runs under SCHED_FIFO"
        );
    } else {
        warn!(
            worker = index,
            priority,
            error = %std::io::Error::last_os_error(),
            "could not set realtime priority (needs CAP_SYS_NICE); normal scheduling"
        );
    }
}

impl Worker {
    /// One worker on its own OS thread: a current-thread runtime drives its socket, timers and
    /// channels, so a burst of packets is handled where it arrives (no hand-off between runtime
    /// threads, no contention with HTTP/signaling tasks).
    #[allow(clippy::too_many_arguments)]
    fn spawn(
        index: usize,
        bind: SocketAddr,
        tcp_local: Option<SocketAddr>,
        tcp_rx: mpsc::Receiver<super::tcp::TcpEvent>,
        cfg: WorkerConfig,
        sfu: SfuHandle,
        metrics: Arc<Metrics>,
        clock: crate::clock::SharedClock,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> std::io::Result<WorkerHandle> {
        let std_socket = std::net::UdpSocket::bind(bind)?;
        std_socket.set_nonblocking(true)?;
        // Every peer of this worker shares this socket: the default receive buffer (~200 KiB, a few
        // hundred small datagrams) overflows after a ~100 ms scheduling stall at a few thousand
        // packets/s. Ask for 4 MiB each way (the kernel caps it at net.core.{r,w}mem_max).
        let sock = socket2::SockRef::from(&std_socket);
        let _ = sock.set_recv_buffer_size(UDP_BUFFER_BYTES);
        let _ = sock.set_send_buffer_size(UDP_BUFFER_BYTES);
        debug!(
            worker = index,
            rcvbuf = sock.recv_buffer_size().unwrap_or(0),
            sndbuf = sock.send_buffer_size().unwrap_or(0),
            "media socket buffers"
        );
        let local_addr = std_socket.local_addr()?;
        let candidate_addr = SocketAddr::new(cfg.candidate_ip, local_addr.port());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (tx, rx) = mpsc::channel(1024);
        std::thread::Builder::new()
            .name(format!("parlor-media-{index}"))
            .spawn(move || {
                if cfg.realtime_priority > 0 {
                    set_realtime_priority(index, cfg.realtime_priority);
                }
                runtime.block_on(async move {
                    let socket = match UdpSocket::from_std(std_socket) {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::error!(worker = index, error = %e, "media socket");
                            return;
                        }
                    };
                    let w = Worker {
                        index,
                        socket: Arc::new(socket),
                        local_addr,
                        candidate_addr,
                        cfg,
                        pcs: HashMap::new(),
                        by_addr: HashMap::new(),
                        tcp_local,
                        tcp_conns: HashMap::new(),
                        by_ufrag: HashMap::new(),
                        rooms: HashMap::new(),
                        parts: HashMap::new(),
                        // Ids unique across workers (they show up in logs).
                        next_id: ((index as u64) << 48) + 1,
                        sfu,
                        metrics,
                        clock,
                        scratch: Vec::with_capacity(64),
                        due_scratch: Vec::new(),
                        earliest: None,
                        counters: Counters::default(),
                        stun_log: LogLimiter::new(crate::log_limit::INTERVAL),
                        batch: Default::default(),
                    };
                    w.run(rx, tcp_rx, shutdown).await;
                });
            })?;
        Ok(WorkerHandle {
            tx,
            udp_addr: local_addr,
        })
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Cmd>,
        mut tcp_rx: mpsc::Receiver<super::tcp::TcpEvent>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        info!(worker = self.index, udp = %self.local_addr, candidate = %self.candidate_addr, "media worker started");
        let mut buf = vec![0u8; 1500 * 2];
        let mut housekeeping = tokio::time::interval(Duration::from_millis(250));
        // With ICE-TCP off the channel's sender is gone: never poll a closed channel in a loop.
        let mut tcp_enabled = self.tcp_local.is_some();
        loop {
            let sleep_until = self
                .earliest
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            let timer = tokio::time::sleep_until(tokio::time::Instant::from_std(sleep_until));
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                res = self.socket.recv_from(&mut buf) => {
                    match res {
                        Ok((n, from)) => {
                            self.on_datagram(&buf[..n], from, false);
                            self.send_batch();
                            // Drain what else is queued before going back to select!: one wake-up
                            // (and one timer registration) per burst instead of per datagram.
                            for _ in 0..RECV_BATCH {
                                match self.socket.try_recv_from(&mut buf) {
                                    Ok((n, from)) => {
                                        self.on_datagram(&buf[..n], from, false);
                                        // Each packet's fan-out leaves before the next is read.
                                        self.send_batch();
                                    }
                                    Err(_) => break,
                                }
                            }
                        }
                        Err(e) => debug!(error = %e, "udp recv error"),
                    }
                }
                ev = tcp_rx.recv(), if tcp_enabled => match ev {
                    Some(super::tcp::TcpEvent::Opened { addr, writer, ufrag, admit, bound }) => {
                        // Admitted only for a live peer connection's ufrag (no lock: this worker owns them).
                        let live = self.by_ufrag.contains_key(&ufrag);
                        if live {
                            Metrics::inc(&self.metrics.ice_tcp_connections);
                            self.tcp_conns.insert(addr, super::tcp::TcpConn { writer, bound: Some(bound) });
                        }
                        let _ = admit.send(live);
                    }
                    Some(super::tcp::TcpEvent::Frame(addr, frame)) => {
                        Metrics::inc(&self.metrics.ice_tcp_frames_in);
                        self.on_datagram(&frame, addr, true);
                    }
                    Some(super::tcp::TcpEvent::Closed(addr)) => {
                        self.tcp_conns.remove(&addr);
                        // Free the peer connection's address slot too (a closed half-open
                        // connection must not use up one of its 8).
                        if let Some(id) = self.by_addr.remove(&(addr, true)) {
                            if let Some(pc) = self.pcs.get_mut(&id) {
                                pc.addrs.retain(|a| *a != (addr, true));
                            }
                        }
                    }
                    None => tcp_enabled = false,
                },
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.on_cmd(cmd),
                    None => break,
                },
                _ = timer => self.on_timers(),
                _ = housekeeping.tick() => self.housekeeping(),
            }
            self.send_batch();
        }
        let pids: Vec<Pid> = self.parts.keys().copied().collect();
        for pid in pids {
            self.send_out(
                pid,
                sig(leave_response(
                    proto::DisconnectReason::ServerShutdown,
                    proto::leave_request::Action::Disconnect,
                )),
            );
            self.remove_participant(pid);
        }
        self.send_batch();
        self.counters.flush(&self.metrics);
        info!(worker = self.index, "media worker stopped");
    }

    fn now_ms(&self) -> i64 {
        self.clock.unix_ms()
    }

    // ---------------------------------------------------------------- UDP path

    fn on_datagram(&mut self, data: &[u8], from: SocketAddr, tcp: bool) {
        let known = self.by_addr.get(&(from, tcp)).copied();
        let pc_id = match known {
            Some(id) => id,
            None => {
                // Unknown 4-tuple: only a STUN binding with one of our ufrags may introduce it.
                let Some(ufrag) = peer::is_stun(data)
                    .then(|| peer::stun_local_ufrag(data))
                    .flatten()
                else {
                    return;
                };
                let Some(&id) = self.by_ufrag.get(ufrag) else {
                    return;
                };
                id
            }
        };
        let now = Instant::now();
        // STUN reaches the ICE agent only if it can act on it (an authenticated check): anything
        // else is a per-packet fault, counted and logged rate-limited, never handed to `rtc`.
        if peer::is_stun(data) {
            let Some(pc) = self.pcs.get_mut(&pc_id) else {
                return;
            };
            if pc.remote_pwd.is_none() {
                pc.remote_pwd = pc.rtc.remote_description().and_then(|d| ice_pwd(&d.sdp));
            }
            let checked = stun_check::check(data, &pc.ufrag, &pc.pwd, pc.remote_pwd.as_deref());
            if let Err(fault) = checked {
                self.stun_fault(fault, pc_id, from, now);
                return;
            }
        }
        if known.is_none() {
            if let Some(pc) = self.pcs.get_mut(&pc_id) {
                if pc.addrs.len() < 8 {
                    pc.addrs.push((from, tcp));
                    self.by_addr.insert((from, tcp), pc_id);
                }
            }
        }
        let Some(pc) = self.pcs.get_mut(&pc_id) else {
            return;
        };
        let msg = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: if tcp {
                    self.tcp_local.unwrap_or(self.local_addr)
                } else {
                    self.local_addr
                },
                peer_addr: from,
                ecn: None,
                transport_protocol: if tcp {
                    TransportProtocol::TCP
                } else {
                    TransportProtocol::UDP
                },
            },
            message: BytesMut::from(data),
        };
        if let Err(e) = pc.rtc.handle_read(msg) {
            debug!(pc = pc_id, error = %e, "handle_read");
        }
        self.drive(pc_id, now);
    }

    fn stun_fault(&mut self, fault: StunFault, pc_id: PcId, from: SocketAddr, now: Instant) {
        self.counters.stun_dropped[fault.index()] += 1;
        if let Some(suppressed) = self.stun_log.hit(fault.index(), now) {
            warn!(
                worker = self.index,
                pc = pc_id,
                %from,
                reason = fault.reason(),
                suppressed,
                "dropped STUN packet (counted in parlor_stun_dropped_total; one line per reason per 10 s)"
            );
        }
    }

    /// Drain one peer connection's outputs: datagrams, events, inbound media.
    fn drive(&mut self, pc_id: PcId, now: Instant) {
        self.flush(pc_id);
        // One output at a time (no buffering Vec): a handler may remove this peer connection.
        while let Some(ev) = self.pcs.get_mut(&pc_id).and_then(|pc| pc.rtc.poll_event()) {
            self.on_pc_event(pc_id, ev, now);
        }
        while let Some(m) = self.pcs.get_mut(&pc_id).and_then(|pc| pc.rtc.poll_read()) {
            self.on_pc_read(pc_id, m, now);
        }
        self.flush(pc_id);
        self.update_timeout(pc_id);
    }

    fn flush(&mut self, pc_id: PcId) {
        let Some(pc) = self.pcs.get_mut(&pc_id) else {
            return;
        };
        while let Some(out) = pc.rtc.poll_write() {
            // Never block the worker: a full socket buffer or TCP queue drops the packet (congestion).
            let sent = if out.transport.transport_protocol == TransportProtocol::TCP {
                self.tcp_conns
                    .get_mut(&out.transport.peer_addr)
                    .is_some_and(|c| c.send(out.message.to_vec()))
            } else {
                // Queued; `send_batch` hands the whole fan-out to the kernel at once.
                self.batch.push(out.transport.peer_addr, out.message);
                true
            };
            if !sent {
                self.counters.send_failures += 1;
            }
        }
    }

    fn send_batch(&mut self) {
        if !self.batch.is_empty() {
            use std::os::fd::AsRawFd;
            let (_, failed) = self.batch.send(self.socket.as_raw_fd());
            self.counters.send_failures += failed as u64;
        }
    }

    fn update_timeout(&mut self, pc_id: PcId) {
        if let Some(pc) = self.pcs.get_mut(&pc_id) {
            pc.next_timeout = pc.rtc.poll_timeout();
            if let Some(t) = pc.next_timeout {
                self.earliest = Some(self.earliest.map_or(t, |e| e.min(t)));
            }
        }
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        // Reused list (timers fire hundreds of times a second under load).
        let mut due = std::mem::take(&mut self.due_scratch);
        due.clear();
        due.extend(
            self.pcs
                .iter()
                .filter(|(_, pc)| pc.next_timeout.is_some_and(|t| t <= now))
                .map(|(id, _)| *id),
        );
        for &id in &due {
            if let Some(pc) = self.pcs.get_mut(&id) {
                let _ = pc.rtc.handle_timeout(now);
            }
            self.drive(id, now);
        }
        self.due_scratch = due;
        self.earliest = self.pcs.values().filter_map(|pc| pc.next_timeout).min();
    }

    fn on_pc_event(&mut self, pc_id: PcId, ev: RTCPeerConnectionEvent, now: Instant) {
        let Some(pc) = self.pcs.get_mut(&pc_id) else {
            return;
        };
        let owner = pc.owner;
        let role = pc.role;
        match ev {
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                debug!(pc = pc_id, ?role, %state, "peer connection state");
                match state {
                    RTCPeerConnectionState::Connected => {
                        pc.connected = true;
                        self.on_media_connected(owner);
                    }
                    RTCPeerConnectionState::Failed => {
                        warn!(
                            pc = pc_id,
                            ?role,
                            "peer connection failed; removing participant"
                        );
                        self.send_out(owner, Out::Close("peer connection failed"));
                        self.remove_participant(owner);
                    }
                    _ => {}
                }
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init))
                if role == Role::Publisher =>
            {
                self.on_track_open(pc_id, owner, init, now);
            }
            RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(id)) => {
                if let Some(dc) = pc.rtc.data_channel(id) {
                    match dc.label() {
                        "_reliable" => pc.reliable_dc = Some(id),
                        "_lossy" => pc.lossy_dc = Some(id),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }

    fn on_media_connected(&mut self, pid: Pid) {
        let now_ms = self.now_ms();
        let Some(p) = self.parts.get_mut(&pid) else {
            return;
        };
        if p.media_connected_at_ms.is_none() {
            p.media_connected_at_ms = Some(now_ms);
            let ev = SfuEvent::MediaConnected {
                room: p.room.clone(),
                identity: p.identity.clone(),
                at_ms: now_ms,
            };
            let room = p.room.clone();
            self.sfu.emit(ev);
            self.publish_snapshot(&room);
        }
    }

    fn on_track_open(
        &mut self,
        pc_id: PcId,
        owner: Pid,
        init: rtc::peer_connection::event::RTCTrackEventInit,
        now: Instant,
    ) {
        let layer = match init.rid.as_deref() {
            Some("q") | None => 0,
            Some("h") => 1,
            Some("f") => 2,
            Some(_) => 0,
        };
        // Known track (another simulcast layer)?
        if let Some(sid) = self
            .pcs
            .get(&pc_id)
            .and_then(|pc| pc.inbound.get(&init.track_id))
            .map(|s| s.to_string())
        {
            if let Some(t) = self.track_mut(owner, &sid) {
                if t.layers.len() < 4 && !t.layers.iter().any(|(s, _)| *s == init.ssrc) {
                    t.layers.push((init.ssrc, layer));
                    info!(track = %sid, rid = init.rid.as_deref(), layer, "simulcast layer received");
                }
                let max_layer = t.layers.iter().map(|(_, l)| *l).max().unwrap_or(0);
                let subs = t.subscribers.clone();
                for sub in subs {
                    if let Some(out) = self.parts.get_mut(&sub).and_then(|p| p.subs.get_mut(&sid)) {
                        out.forwarder
                            .set_target_layer(out.requested_layer.min(max_layer));
                    }
                }
            }
            return;
        }
        let Some(p) = self.parts.get_mut(&owner) else {
            return;
        };
        // Match to the pending AddTrack by cid (= msid track id), else the first pending of this kind.
        let (kind, codec) = {
            let Some(pc) = self.pcs.get_mut(&pc_id) else {
                return;
            };
            let Some(mut rx) = pc.rtc.rtp_receiver(init.receiver_id) else {
                return;
            };
            let kind = rx.track().kind();
            let codec = rx
                .get_parameters()
                .rtp_parameters
                .codecs
                .first()
                .map(|c| c.rtp_codec.clone());
            (kind, codec)
        };
        let want_type = if kind == RtpCodecKind::Audio {
            proto::TrackType::Audio as i32
        } else {
            proto::TrackType::Video as i32
        };
        let cid = if p.pending.contains_key(&init.track_id) {
            Some(init.track_id.clone())
        } else {
            p.pending
                .iter()
                .find(|(_, t)| t.r#type == want_type)
                .map(|(c, _)| c.clone())
        };
        let Some(cid) = cid else {
            warn!(participant = %p.identity, track = %init.track_id, "media for a track without AddTrackRequest; ignored");
            return;
        };
        let Some(mut info) = p.pending.remove(&cid) else {
            return;
        };
        if let Some(c) = &codec {
            info.mime_type = c.mime_type.clone();
        }
        let sid = info.sid.clone();
        p.tracks.push(sid.clone());
        p.version += 1;
        let room_name = p.room.clone();
        let identity = p.identity.clone();
        let mime = codec
            .as_ref()
            .map(|c| c.mime_type.to_ascii_lowercase())
            .unwrap_or_default();
        // Only audio carries levels; video extension ids mean other things.
        let audio_level_ext = if kind == RtpCodecKind::Audio {
            self.pcs.get(&pc_id).and_then(|pc| {
                pc.rtc
                    .remote_description()
                    .and_then(|d| extmap_id(&d.sdp, "audio", AUDIO_LEVEL_URI))
            })
        } else {
            None
        };
        let sid_arc: Arc<str> = Arc::from(sid.as_str());
        if let Some(pc) = self.pcs.get_mut(&pc_id) {
            pc.inbound.insert(init.track_id.clone(), sid_arc.clone());
        }
        let track = TrackIn {
            sid: sid_arc,
            owner,
            info,
            kind,
            codec,
            receiver_id: Some(init.receiver_id),
            layers: vec![(init.ssrc, layer)],
            layer_seen: [None; 3],
            is_vp8: mime.ends_with("vp8"),
            is_h264: mime.ends_with("h264"),
            subscribers: Vec::new(),
            audio_level_ext,
            last_pli: None,
        };
        info!(room = %room_name, participant = %identity, track = %sid, mime = %mime, rid = init.rid.as_deref(), "track published");
        self.add_track(owner, &room_name, track, now);
    }

    /// A new published track: into the room, announced to everyone, auto-subscribers subscribed.
    fn add_track(&mut self, owner: Pid, room_name: &str, track: TrackIn, now: Instant) {
        let sid = track.sid.clone();
        let Some(room) = self.rooms.get_mut(room_name) else {
            return;
        };
        room.tracks.insert(sid.to_string(), track);
        let others: Vec<Pid> = room
            .participants
            .iter()
            .copied()
            .filter(|&x| x != owner)
            .collect();
        // Tell everyone about the new track, then subscribe those who auto-subscribe.
        self.publish_snapshot(room_name);
        self.broadcast_participant(owner);
        for other in others {
            let auto = self
                .parts
                .get(&other)
                .is_some_and(|o| o.auto_subscribe && o.perms.can_subscribe);
            if auto {
                self.subscribe(other, room_name, &sid, now);
            }
        }
    }

    /// An in-process participant publishes an Opus track (no peer connection: its RTP arrives as
    /// `Cmd::LocalRtp`).
    fn local_publish(
        &mut self,
        pid: Pid,
        req: LocalTrackReq,
        now: Instant,
    ) -> Result<Arc<str>, JoinError> {
        let p = self
            .parts
            .get_mut(&pid)
            .ok_or(JoinError::NotAllowed("no such participant"))?;
        if p.local.is_none() {
            return Err(JoinError::NotAllowed("not an in-process participant"));
        }
        if p.hidden {
            return Err(JoinError::NotAllowed("hidden participants do not publish"));
        }
        if !p.perms.can_publish {
            return Err(JoinError::NotAllowed("publish permission"));
        }
        if p.tracks.len() >= 8 {
            return Err(JoinError::NotAllowed("too many tracks"));
        }
        let sid = crate::ids::new_id("TR_");
        let codec = RTCRtpCodec {
            mime_type: "audio/opus".to_string(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".to_string(),
            rtcp_feedback: Vec::new(),
        };
        let info = proto::TrackInfo {
            sid: sid.clone(),
            r#type: proto::TrackType::Audio as i32,
            name: req.name,
            source: req.source as i32,
            mime_type: codec.mime_type.clone(),
            ..Default::default()
        };
        p.tracks.push(sid.clone());
        p.version += 1;
        let room_name = p.room.clone();
        let sid_arc: Arc<str> = Arc::from(sid.as_str());
        let track = TrackIn {
            sid: sid_arc.clone(),
            owner: pid,
            info,
            kind: RtpCodecKind::Audio,
            codec: Some(codec),
            receiver_id: None,
            layers: vec![(0, 0)],
            layer_seen: [None; 3],
            is_vp8: false,
            is_h264: false,
            subscribers: Vec::new(),
            audio_level_ext: None,
            last_pli: None,
        };
        info!(room = %room_name, participant = pid, track = %sid, "in-process track published");
        self.add_track(pid, &room_name, track, now);
        Ok(sid_arc)
    }

    fn track_mut(&mut self, owner: Pid, sid: &str) -> Option<&mut TrackIn> {
        let room = &self.parts.get(&owner)?.room;
        self.rooms.get_mut(room)?.tracks.get_mut(sid)
    }

    /// The forwarding hot path: one inbound message from a peer connection.
    fn on_pc_read(&mut self, pc_id: PcId, m: TaggedRTCMessage, now: Instant) {
        match m.message {
            RTCMessage::RtpPacket(track_id, pkt) => self.forward_rtp(pc_id, &track_id, pkt, now),
            RTCMessage::RtcpPacket(track_id, packets) => {
                // Only PLI/FIR reach us (see peer::KeyframeRequests). On a subscriber leg the local
                // track id is the track sid: ask that track's publisher for a keyframe.
                let Some(pc) = self.pcs.get(&pc_id) else {
                    return;
                };
                if pc.role == Role::Subscriber && !packets.is_empty() {
                    if let Some(room) = self.parts.get(&pc.owner).map(|p| p.room.clone()) {
                        self.request_keyframe(&room, &track_id, now);
                    }
                }
            }
            RTCMessage::DataChannelMessage(dc_id, msg) => self.on_data(pc_id, dc_id, msg.data, now),
            _ => {}
        }
    }

    fn forward_rtp(&mut self, pc_id: PcId, track_id: &str, pkt: rtc::rtp::Packet, now: Instant) {
        let Some(pc) = self.pcs.get(&pc_id) else {
            return;
        };
        let Some(sid) = pc.inbound.get(track_id).cloned() else {
            return;
        };
        let owner = pc.owner;
        self.forward_track(owner, &sid, pkt, now);
    }

    /// Forward one packet of `owner`'s track `sid` to every subscriber of it (WebRTC legs and
    /// in-process subscribers alike).
    fn forward_track(&mut self, owner: Pid, sid: &str, pkt: rtc::rtp::Packet, now: Instant) {
        self.counters.packets_in += 1;
        self.counters.bytes_in += pkt.payload.len() as u64;
        let Some(p) = self.parts.get_mut(&owner) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&p.room) else {
            return;
        };
        let Some(track) = room.tracks.get_mut(sid) else {
            return;
        };
        // Audio level for active-speaker detection.
        if let Some(id) = track.audio_level_ext {
            if let Some(v) = pkt.header.get_extension(id) {
                // Remember the last voiced packet (louder than -50 dBov); the speaker check looks
                // at a window, so one quiet packet between words does not end "speaking".
                if let Some(level) = peer::audio_level(&v).filter(|l| *l < SPEAKING_LEVEL) {
                    p.level = Some((level, now));
                }
            }
        }
        if track.info.muted {
            return;
        }
        let layer = track
            .layers
            .iter()
            .find(|(s, _)| *s == pkt.header.ssrc)
            .map(|(_, l)| *l)
            .unwrap_or(0);
        if let Some(seen) = track.layer_seen.get_mut(layer as usize) {
            *seen = Some(now);
        }
        let keyframe = track.kind == RtpCodecKind::Video
            && is_keyframe(track.is_vp8, track.is_h264, &pkt.payload);
        let meta = PacketMeta {
            seq: pkt.header.sequence_number,
            ts: pkt.header.timestamp,
            layer,
            keyframe,
            arrival_us: 0,
        };
        let sid_ref: &str = &track.sid;
        self.scratch.clear();
        let mut needs_kf = false;
        for sub in &track.subscribers {
            let Some(sp) = self.parts.get_mut(sub) else {
                continue;
            };
            let Some(out) = sp.subs.get_mut(sid_ref) else {
                continue;
            };
            if let Some(local) = &sp.local {
                // In-process subscriber: the packet (shared payload, no copy) with its arrival time.
                if let Decision::Forward { seq, ts } = out.forwarder.on_packet(&meta) {
                    let m = LocalMedia::Rtp(LocalRtp {
                        track_sid: track.sid.clone(),
                        arrival: now,
                        seq,
                        timestamp: ts,
                        marker: pkt.header.marker,
                        payload: pkt.payload.clone(),
                    });
                    // A slow consumer loses packets (its jitter buffer conceals); never block.
                    if local.try_send(m).is_err() {
                        self.counters.dropped += 1;
                    }
                }
                continue;
            }
            let Some(pt) = out.pt else { continue };
            // Until DTLS is up the sender has no SRTP context: writing would fail (and rtc logs a
            // WARN per packet). The forwarder starts with the first packet it actually forwards.
            if !self.pcs.get(&sp.sub_pc).is_some_and(|pc| pc.connected) {
                continue;
            }
            let before = out.forwarder.current_layer();
            let decision = out.forwarder.on_packet(&meta);
            if out.forwarder.current_layer() != before {
                debug!(
                    track = sid_ref,
                    from = before,
                    to = out.forwarder.current_layer(),
                    "layer switch"
                );
            }
            match decision {
                Decision::Forward { seq, ts } => {
                    self.scratch
                        .push((sp.sub_pc, out.sender_id, out.ssrc, pt, seq, ts));
                }
                Decision::Drop(reason) => {
                    if reason == super::forwarder::DropReason::WaitingForKeyframe {
                        needs_kf = true;
                    }
                    self.counters.dropped += 1;
                }
            }
        }
        // Rate limit checked here too, so packets waiting for a keyframe clone nothing.
        if needs_kf
            && track
                .last_pli
                .is_none_or(|l| now.duration_since(l) >= PLI_MIN_INTERVAL)
        {
            let room_name = room.name.clone();
            let sid = track.sid.clone();
            self.request_keyframe(&room_name, &sid, now);
        }
        let n = self.scratch.len();
        for i in 0..n {
            let (sub_pc, sender_id, ssrc, pt, seq, ts) = self.scratch[i];
            // A fresh header (no extension or CSRC vectors to clone: no heap allocation) around the
            // shared payload. Extension ids differ per leg and the sender rejects ids it did not
            // negotiate, so extensions are not forwarded.
            let out = rtc::rtp::Packet {
                header: rtc::rtp::header::Header {
                    version: 2,
                    marker: pkt.header.marker,
                    payload_type: pt,
                    sequence_number: seq,
                    timestamp: ts,
                    ssrc,
                    ..Default::default()
                },
                payload: pkt.payload.clone(),
            };
            let Some(spc) = self.pcs.get_mut(&sub_pc) else {
                continue;
            };
            let ok = spc
                .rtc
                .rtp_sender(sender_id)
                .map(|mut s| s.write_rtp(now, out).is_ok())
                .unwrap_or(false);
            if ok {
                self.counters.packets_out += 1;
                self.counters.bytes_out += pkt.payload.len() as u64;
            } else {
                self.counters.send_failures += 1;
            }
            // No `update_timeout` here: writing RTP only pushes a leg's deadlines later (sender
            // reports and ICE keepalives are on fixed schedules), so the known deadline stays a
            // safe lower bound; skipping it saves walking the whole `rtc` stack per packet copy.
            self.flush(sub_pc);
        }
    }

    fn request_keyframe(&mut self, room: &str, track_sid: &str, now: Instant) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        let Some(t) = r.tracks.get_mut(track_sid) else {
            return;
        };
        if t.kind != RtpCodecKind::Video {
            return;
        }
        if t.last_pli
            .is_some_and(|l| now.duration_since(l) < PLI_MIN_INTERVAL)
        {
            return;
        }
        t.last_pli = Some(now);
        let Some(rx_id) = t.receiver_id else { return };
        let ssrcs: Vec<u32> = t.layers.iter().map(|(s, _)| *s).collect();
        let owner = t.owner;
        let Some(pub_pc) = self.parts.get(&owner).map(|p| p.pub_pc) else {
            return;
        };
        if let Some(pc) = self.pcs.get_mut(&pub_pc) {
            if let Some(mut rx) = pc.rtc.rtp_receiver(rx_id) {
                let pkts: Vec<Box<dyn rtc::rtcp::Packet>> = ssrcs
                    .iter()
                    .map(|&media_ssrc| {
                        Box::new(PictureLossIndication {
                            sender_ssrc: 0,
                            media_ssrc,
                        }) as Box<dyn rtc::rtcp::Packet>
                    })
                    .collect();
                let ok = rx.write_rtcp(now, pkts).is_ok();
                debug!(track = %track_sid, ?ssrcs, ok, "keyframe requested from publisher");
                if ok {
                    Metrics::inc(&self.metrics.plis_forwarded);
                }
            }
        }
        self.flush(pub_pc);
    }

    fn on_data(
        &mut self,
        pc_id: PcId,
        dc_id: rtc::data_channel::RTCDataChannelId,
        data: BytesMut,
        now: Instant,
    ) {
        use prost::Message;
        let Some(pc) = self.pcs.get(&pc_id) else {
            return;
        };
        let owner = pc.owner;
        let reliable = pc.reliable_dc == Some(dc_id);
        let Some(p) = self.parts.get_mut(&owner) else {
            return;
        };
        if !p.perms.can_publish_data || data.len() > 64 * 1024 {
            return;
        }
        let Ok(mut packet) = proto::DataPacket::decode(&data[..]) else {
            Metrics::inc(&self.metrics.signal_errors);
            return;
        };
        // Only user payloads and a few benign kinds are relayed; the sender's identity is authoritative.
        packet.participant_identity = p.identity.clone();
        packet.participant_sid = p.sid.clone();
        p.data_seq += 1;
        packet.sequence = p.data_seq;
        #[allow(deprecated)]
        if let Some(proto::data_packet::Value::User(u)) = packet.value.as_mut() {
            u.participant_identity = p.identity.clone();
            u.participant_sid = p.sid.clone();
        }
        let dest: Vec<String> = packet.destination_identities.clone();
        let bytes = BytesMut::from(&packet.encode_to_vec()[..]);
        let room = p.room.clone();
        let Some(r) = self.rooms.get(&room) else {
            return;
        };
        let targets: Vec<Pid> = r
            .participants
            .iter()
            .copied()
            .filter(|&x| x != owner)
            .filter(|x| {
                dest.is_empty()
                    || self
                        .parts
                        .get(x)
                        .is_some_and(|o| dest.contains(&o.identity))
            })
            .collect();
        for t in targets {
            let Some(tp) = self.parts.get(&t) else {
                continue;
            };
            let pub_pc = tp.pub_pc;
            if let Some(tpc) = self.pcs.get_mut(&pub_pc) {
                let dc = if reliable {
                    tpc.reliable_dc
                } else {
                    tpc.lossy_dc.or(tpc.reliable_dc)
                };
                if let Some(dc) = dc {
                    if let Some(mut ch) = tpc.rtc.data_channel(dc) {
                        let _ = ch.send(now, bytes.clone());
                    }
                }
            }
            self.flush(pub_pc);
            self.update_timeout(pub_pc);
        }
    }

    // ---------------------------------------------------------------- control path

    fn on_cmd(&mut self, cmd: Cmd) {
        let now = Instant::now();
        match cmd {
            Cmd::Join(req, reply) => {
                let res = self.join(*req, now);
                let _ = reply.send(res);
            }
            Cmd::Signal(pid, msg) => self.on_signal(pid, *msg, now),
            Cmd::Leave(pid) => self.remove_participant(pid),
            Cmd::LocalPublish(pid, req, reply) => {
                let res = self.local_publish(pid, req, now);
                let _ = reply.send(res);
            }
            Cmd::LocalRtp(pid, sid, pkt) => {
                // Only the owner's own tracks (a participant cannot inject into another's track).
                let owns = self
                    .parts
                    .get(&pid)
                    .is_some_and(|p| p.local.is_some() && p.tracks.iter().any(|t| **t == *sid));
                if owns {
                    self.forward_track(pid, &sid, pkt, now);
                }
            }
        }
    }

    fn new_pc(&mut self, owner: Pid, role: Role, now: Instant) -> Result<PcId, JoinError> {
        let id = self.next_id;
        self.next_id += 1;
        let ufrag = peer::ufrag_for_worker(self.index);
        let pwd = peer::random_string(24);
        let tcp_candidate = self
            .tcp_local
            .map(|t| SocketAddr::new(self.candidate_addr.ip(), t.port()));
        let rtc = peer::build(
            now,
            &ufrag,
            &pwd,
            self.candidate_addr,
            tcp_candidate,
            role == Role::Publisher,
        )?;
        self.by_ufrag.insert(ufrag.clone(), id);
        self.pcs.insert(
            id,
            Pc {
                rtc,
                owner,
                role,
                ufrag,
                pwd,
                remote_pwd: None,
                addrs: Vec::new(),
                next_timeout: None,
                connected: false,
                inbound: HashMap::new(),
                reliable_dc: None,
                lossy_dc: None,
            },
        );
        Ok(id)
    }

    fn join(&mut self, req: JoinReq, now: Instant) -> Result<Joined, JoinError> {
        let now_ms = self.now_ms();
        // A second connection with the same identity replaces the first (LiveKit semantics).
        if let Some(room) = self.rooms.get(&req.room) {
            let dup = room.participants.iter().copied().find(|p| {
                self.parts
                    .get(p)
                    .is_some_and(|x| x.identity == req.identity)
            });
            if let Some(dup) = dup {
                self.send_out(
                    dup,
                    sig(leave_response(
                        proto::DisconnectReason::DuplicateIdentity,
                        proto::leave_request::Action::Disconnect,
                    )),
                );
                self.send_out(dup, Out::Close("duplicate identity"));
                self.remove_participant(dup);
            }
        }
        if !self.rooms.contains_key(&req.room) {
            // Rooms are placed on workers before the join is sent; a room that closed here since
            // may have been placed on another worker.
            if !self.sfu.claim_room(&req.room, self.index) {
                return Err(JoinError::Moved);
            }
            if self.rooms.len() >= self.cfg.max_rooms {
                self.sfu.release_room(&req.room, self.index);
                return Err(JoinError::TooManyRooms);
            }
            self.rooms.insert(
                req.room.clone(),
                Room {
                    name: req.room.clone(),
                    sid: crate::ids::new_id("RM_"),
                    created_at_ms: now_ms,
                    participants: Vec::new(),
                    tracks: HashMap::new(),
                    // Empty until the join below completes (if it fails, the room still closes).
                    empty_since: Some(now),
                    last_speakers: Vec::new(),
                },
            );
            Metrics::inc(&self.metrics.rooms);
            self.sfu.emit(SfuEvent::RoomCreated {
                room: req.room.clone(),
                at_ms: now_ms,
            });
        }
        // Hidden participants (a recorder) neither count toward the limit nor are refused by it.
        let parts = &self.parts;
        let count = self.rooms.get(&req.room).map_or(0, |r| {
            r.participants
                .iter()
                .filter(|p| parts.get(p).is_some_and(|q| !q.hidden))
                .count()
        });
        if !req.hidden && count >= self.cfg.max_participants {
            return Err(JoinError::RoomFull);
        }
        let pid = self.next_id;
        self.next_id += 1;
        let (pub_pc, sub_pc) = if req.local.is_some() {
            (NO_PC, NO_PC)
        } else {
            let pub_pc = self.new_pc(pid, Role::Publisher, now)?;
            match self.new_pc(pid, Role::Subscriber, now) {
                Ok(id) => (pub_pc, id),
                Err(e) => {
                    self.drop_pc(pub_pc);
                    return Err(e);
                }
            }
        };
        let p = Participant {
            pid,
            sid: crate::ids::new_id("PA_"),
            identity: req.identity,
            name: req.name,
            metadata: req.metadata,
            room: req.room.clone(),
            perms: req.perms,
            auto_subscribe: req.auto_subscribe,
            events: req.events,
            pub_pc,
            sub_pc,
            version: 1,
            joined_at_ms: now_ms,
            media_connected_at_ms: None,
            pending: HashMap::new(),
            tracks: Vec::new(),
            subs: HashMap::new(),
            sub_offer_id: 0,
            sub_awaiting_answer: false,
            sub_needs_offer: false,
            data_seq: 0,
            level: None,
            kind: req.kind,
            local: req.local,
            hidden: req.hidden,
        };
        info!(room = %req.room, participant = %p.identity, sid = %p.sid, "participant joined");
        let identity = p.identity.clone();
        self.parts.insert(pid, p);
        Metrics::inc(&self.metrics.participants);
        self.sfu.worker_participants(self.index, 1);
        let room = self
            .rooms
            .get_mut(&req.room)
            .ok_or(JoinError::ShuttingDown)?;
        room.participants.push(pid);
        if !req.hidden {
            room.empty_since = None;
        }
        let room_info = proto::Room {
            sid: room.sid.clone(),
            name: room.name.clone(),
            empty_timeout: self.cfg.empty_timeout.as_secs() as u32,
            max_participants: self.cfg.max_participants as u32,
            creation_time: room.created_at_ms / 1000,
            creation_time_ms: room.created_at_ms,
            num_participants: room.participants.len() as u32,
            ..Default::default()
        };
        let others: Vec<Pid> = room
            .participants
            .iter()
            .copied()
            .filter(|&x| x != pid)
            .collect();
        let track_sids: Vec<String> = room.tracks.keys().cloned().collect();
        let other_participants = others
            .iter()
            .filter(|o| !self.parts.get(o).is_some_and(|p| p.hidden))
            .filter_map(|o| self.participant_info(*o))
            .collect();
        let participant = self.participant_info(pid);
        let join = proto::JoinResponse {
            room: Some(room_info),
            participant,
            other_participants,
            server_version: parlor_signaling::protocol::SERVER_VERSION.to_string(),
            subscriber_primary: false,
            ping_timeout: 15,
            ping_interval: 5,
            server_info: Some(proto::ServerInfo {
                edition: proto::server_info::Edition::Standard as i32,
                version: parlor_signaling::protocol::SERVER_VERSION.to_string(),
                protocol: parlor_signaling::protocol::PROTOCOL_VERSION,
                node_id: "parlor".into(),
                ..Default::default()
            }),
            client_configuration: Some(proto::ClientConfiguration {
                resume_connection: proto::ClientConfigSetting::Disabled as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        // Announce the newcomer, then subscribe it to what is already published.
        self.broadcast_participant(pid);
        if !req.hidden {
            self.sfu.emit(SfuEvent::ParticipantJoined {
                room: req.room.clone(),
                identity,
                at_ms: now_ms,
            });
        }
        let auto = self
            .parts
            .get(&pid)
            .is_some_and(|p| p.auto_subscribe && p.perms.can_subscribe);
        if auto {
            for sid in track_sids {
                self.subscribe_no_offer(pid, &req.room, &sid, now);
            }
            // Offer right away: the session sends the JoinResponse before it forwards any queued
            // Out, so the client still sees join first. (Waiting for the 250 ms housekeeping tick
            // added 0-250 ms to join-to-first-audio.)
            if self.parts.get(&pid).is_some_and(|p| !p.subs.is_empty()) {
                self.negotiate_subscriber(pid, now);
            }
        }
        self.publish_snapshot(&req.room);
        Ok(Joined { pid, join })
    }

    fn participant_info(&self, pid: Pid) -> Option<proto::ParticipantInfo> {
        let p = self.parts.get(&pid)?;
        let room = self.rooms.get(&p.room)?;
        let tracks = p
            .tracks
            .iter()
            .filter_map(|sid| room.tracks.get(sid))
            .map(|t| t.info.clone())
            .collect();
        Some(proto::ParticipantInfo {
            sid: p.sid.clone(),
            identity: p.identity.clone(),
            name: p.name.clone(),
            metadata: p.metadata.clone(),
            state: if p.media_connected_at_ms.is_some() {
                proto::participant_info::State::Active as i32
            } else {
                proto::participant_info::State::Joined as i32
            },
            tracks,
            joined_at: p.joined_at_ms / 1000,
            joined_at_ms: p.joined_at_ms,
            version: p.version,
            permission: Some(proto::ParticipantPermission {
                can_subscribe: p.perms.can_subscribe,
                can_publish: p.perms.can_publish,
                can_publish_data: p.perms.can_publish_data,
                ..Default::default()
            }),
            is_publisher: !p.tracks.is_empty(),
            kind: p.kind as i32,
            ..Default::default()
        })
    }

    /// Send the participant's current info to everyone else in its room.
    fn broadcast_participant(&mut self, pid: Pid) {
        if self.parts.get(&pid).is_none_or(|p| p.hidden) {
            return;
        }
        let Some(info) = self.participant_info(pid) else {
            return;
        };
        let Some(room) = self.parts.get(&pid).and_then(|p| self.rooms.get(&p.room)) else {
            return;
        };
        let others: Vec<Pid> = room
            .participants
            .iter()
            .copied()
            .filter(|&x| x != pid)
            .collect();
        for o in others {
            self.send_out(
                o,
                sig(Resp::Update(proto::ParticipantUpdate {
                    participants: vec![info.clone()],
                })),
            );
        }
    }

    fn send_out(&mut self, pid: Pid, out: Out) {
        // In-process participants get media on their own channel; signal messages are for clients.
        let Some(p) = self.parts.get(&pid).filter(|p| p.local.is_none()) else {
            return;
        };
        if p.events.try_send(out).is_err() {
            // Slow or gone client: never block the worker. Its session notices the closed channel.
            debug!(participant = %p.identity, "session queue full or closed");
        }
    }

    fn on_signal(&mut self, pid: Pid, msg: SignalIn, now: Instant) {
        if !self.parts.contains_key(&pid) {
            return;
        }
        match msg {
            SignalIn::Offer(sd) => self.on_publisher_offer(pid, sd, now),
            SignalIn::Answer(sd) => self.on_subscriber_answer(pid, sd, now),
            SignalIn::Trickle(target, cand) => {
                let Some(p) = self.parts.get(&pid) else {
                    return;
                };
                let pc_id = if target == Target::Subscriber {
                    p.sub_pc
                } else {
                    p.pub_pc
                };
                if let Some(pc) = self.pcs.get_mut(&pc_id) {
                    let init = RTCIceCandidateInit {
                        candidate: cand.candidate,
                        sdp_mid: cand.sdp_mid,
                        sdp_mline_index: cand.sdp_mline_index,
                        username_fragment: cand.username_fragment,
                        ..Default::default()
                    };
                    // ICE-lite: remote candidates are informational; bad ones are ignored.
                    let _ = pc.rtc.add_remote_candidate(init);
                }
            }
            SignalIn::AddTrack(req) => self.on_add_track(pid, req),
            SignalIn::Mute(m) => self.on_mute(pid, &m.sid, m.muted),
            SignalIn::Subscription(s) => {
                let room = self
                    .parts
                    .get(&pid)
                    .map(|p| p.room.clone())
                    .unwrap_or_default();
                let mut sids = s.track_sids.clone();
                for pt in &s.participant_tracks {
                    sids.extend(pt.track_sids.iter().cloned());
                }
                for sid in sids {
                    if s.subscribe {
                        self.subscribe(pid, &room, &sid, now);
                    } else {
                        self.unsubscribe(pid, &sid, now);
                    }
                }
            }
            SignalIn::TrackSetting(s) => {
                let room = self
                    .parts
                    .get(&pid)
                    .map(|p| p.room.clone())
                    .unwrap_or_default();
                debug!(tracks = ?s.track_sids, quality = s.quality, disabled = s.disabled, width = s.width, "track settings");
                let layer = match proto::VideoQuality::try_from(s.quality) {
                    Ok(proto::VideoQuality::High) => 2,
                    Ok(proto::VideoQuality::Medium) => 1,
                    _ => 0,
                };
                for sid in &s.track_sids {
                    let max_layer = self
                        .rooms
                        .get(&room)
                        .and_then(|r| r.tracks.get(sid))
                        .map(|t| t.layers.iter().map(|(_, l)| *l).max().unwrap_or(0))
                        .unwrap_or(0);
                    if let Some(out) = self.parts.get_mut(&pid).and_then(|p| p.subs.get_mut(sid)) {
                        out.forwarder.set_paused(s.disabled);
                        out.requested_layer = layer;
                        out.forwarder.set_target_layer(layer.min(max_layer));
                    }
                    self.request_keyframe(&room, sid, now);
                }
            }
        }
    }

    fn on_add_track(&mut self, pid: Pid, req: proto::AddTrackRequest) {
        let Some(p) = self.parts.get_mut(&pid) else {
            return;
        };
        if !p.perms.can_publish {
            warn!(participant = %p.identity, "AddTrack without canPublish refused");
            self.send_out(
                pid,
                sig(Resp::RequestResponse(proto::RequestResponse {
                    reason: proto::request_response::Reason::NotAllowed as i32,
                    message: "token does not allow publishing".into(),
                    ..Default::default()
                })),
            );
            return;
        }
        if p.pending.len() + p.tracks.len() >= 16 || req.cid.is_empty() || req.cid.len() > 256 {
            return;
        }
        #[allow(deprecated)]
        let info = proto::TrackInfo {
            sid: crate::ids::new_id("TR_"),
            r#type: req.r#type,
            name: req.name.clone(),
            muted: req.muted,
            width: req.width,
            height: req.height,
            simulcast: req.layers.len() > 1
                || req.simulcast_codecs.iter().any(|c| c.layers.len() > 1),
            disable_dtx: req.disable_dtx,
            source: req.source,
            layers: req.layers.clone(),
            stereo: req.stereo,
            disable_red: req.disable_red,
            stream: req.stream.clone(),
            ..Default::default()
        };
        p.pending.insert(req.cid.clone(), info.clone());
        self.send_out(
            pid,
            sig(Resp::TrackPublished(proto::TrackPublishedResponse {
                cid: req.cid,
                track: Some(info),
            })),
        );
    }

    fn on_mute(&mut self, pid: Pid, sid: &str, muted: bool) {
        let Some(p) = self.parts.get_mut(&pid) else {
            return;
        };
        if let Some(t) = p.pending.values_mut().find(|t| t.sid == sid) {
            t.muted = muted;
            return;
        }
        if !p.tracks.iter().any(|s| s == sid) {
            return;
        }
        p.version += 1;
        let room = p.room.clone();
        if let Some(t) = self
            .rooms
            .get_mut(&room)
            .and_then(|r| r.tracks.get_mut(sid))
        {
            t.info.muted = muted;
        }
        self.publish_snapshot(&room);
        self.broadcast_participant(pid);
    }

    fn on_publisher_offer(&mut self, pid: Pid, sd: proto::SessionDescription, now: Instant) {
        let Some(p) = self.parts.get(&pid) else {
            return;
        };
        let pc_id = p.pub_pc;
        let Some(pc) = self.pcs.get_mut(&pc_id) else {
            return;
        };
        let result = RTCSessionDescription::offer(sd.sdp)
            .and_then(|offer| answer_offer(&mut pc.rtc, now, offer));
        match result {
            Ok(sdp) => {
                self.send_out(
                    pid,
                    sig(Resp::Answer(proto::SessionDescription {
                        r#type: "answer".into(),
                        sdp,
                        id: sd.id,
                        ..Default::default()
                    })),
                );
            }
            Err(e) => {
                warn!(error = %e, "invalid publisher offer");
                Metrics::inc(&self.metrics.signal_errors);
                self.send_out(pid, Out::Close("invalid offer"));
                self.remove_participant(pid);
                return;
            }
        }
        self.drive(pc_id, now);
    }

    fn on_subscriber_answer(&mut self, pid: Pid, sd: proto::SessionDescription, now: Instant) {
        let Some(p) = self.parts.get_mut(&pid) else {
            return;
        };
        if !p.sub_awaiting_answer {
            return;
        }
        p.sub_awaiting_answer = false;
        let pc_id = p.sub_pc;
        let Some(pc) = self.pcs.get_mut(&pc_id) else {
            return;
        };
        let res = RTCSessionDescription::answer(sd.sdp)
            .and_then(|a| pc.rtc.set_remote_description(now, a));
        if let Err(e) = res {
            warn!(error = %e, "invalid subscriber answer");
            Metrics::inc(&self.metrics.signal_errors);
            self.send_out(pid, Out::Close("invalid answer"));
            self.remove_participant(pid);
            return;
        }
        // Learn the negotiated payload types per sender.
        let Some(p) = self.parts.get_mut(&pid) else {
            return;
        };
        for out in p.subs.values_mut() {
            if let Some(mut s) = pc.rtc.rtp_sender(out.sender_id) {
                out.pt = s
                    .get_parameters()
                    .rtp_parameters
                    .codecs
                    .first()
                    .map(|c| c.payload_type);
            }
        }
        let need_again = p.sub_needs_offer;
        let room = p.room.clone();
        let sids: Vec<String> = p.subs.keys().cloned().collect();
        for sid in sids {
            self.request_keyframe(&room, &sid, now);
        }
        if need_again {
            self.negotiate_subscriber(pid, now);
        }
        self.drive(pc_id, now);
    }

    /// Add the track to the subscriber PC without sending an offer yet.
    fn subscribe_no_offer(&mut self, pid: Pid, room: &str, sid: &str, _now: Instant) -> bool {
        let Some(r) = self.rooms.get_mut(room) else {
            return false;
        };
        let Some(t) = r.tracks.get_mut(sid) else {
            return false;
        };
        let Some(p) = self.parts.get_mut(&pid) else {
            return false;
        };
        if p.subs.contains_key(sid) || t.owner == pid || !p.perms.can_subscribe {
            return false;
        }
        let Some(codec) = t.codec.clone() else {
            return false;
        };
        let Some((owner_sid, owner_identity)) = self
            .parts
            .get(&t.owner)
            .map(|o| (o.sid.clone(), o.identity.clone()))
        else {
            return false;
        };
        let Some(p) = self.parts.get_mut(&pid) else {
            return false;
        };
        if let Some(local) = &p.local {
            let added = LocalMedia::TrackAdded {
                track_sid: t.sid.clone(),
                publisher: owner_identity,
                kind: t.kind,
                mime_type: codec.mime_type.clone(),
                clock_rate: codec.clock_rate,
            };
            if local.try_send(added).is_err() {
                return false;
            }
            let mut forwarder = Forwarder::new(t.kind == RtpCodecKind::Video, codec.clock_rate);
            forwarder.set_target_layer(t.layers.iter().map(|(_, l)| *l).max().unwrap_or(0));
            p.subs.insert(
                sid.to_string(),
                SubOut {
                    requested_layer: 2,
                    sender_id: RTCRtpSenderId::default(),
                    ssrc: 0,
                    pt: None,
                    forwarder,
                },
            );
            t.subscribers.push(pid);
            return true;
        }
        let Some(pc) = self.pcs.get_mut(&p.sub_pc) else {
            return false;
        };
        let ssrc: u32 = rand::random();
        let track = MediaStreamTrack::new(
            subscriber_stream_id(&owner_sid, sid),
            sid.to_string(),
            sid.to_string(),
            t.kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: codec.clone(),
                ..Default::default()
            }],
        );
        let sender_id = match pc.rtc.add_track(track) {
            Ok(id) => id,
            Err(e) => {
                warn!(error = %e, track = %sid, "add_track on subscriber failed");
                return false;
            }
        };
        let is_video = t.kind == RtpCodecKind::Video;
        let mut forwarder = Forwarder::new(is_video, codec.clock_rate);
        // Default HIGH, like LiveKit: the best layer published so far, raised as more layers arrive.
        forwarder.set_target_layer(t.layers.iter().map(|(_, l)| *l).max().unwrap_or(0));
        p.subs.insert(
            sid.to_string(),
            SubOut {
                requested_layer: 2,
                sender_id,
                ssrc,
                pt: None,
                forwarder,
            },
        );
        t.subscribers.push(pid);
        true
    }

    fn subscribe(&mut self, pid: Pid, room: &str, sid: &str, now: Instant) {
        if self.subscribe_no_offer(pid, room, sid, now) {
            self.negotiate_subscriber(pid, now);
            // The publisher learns its track has a subscriber.
            if let Some(owner) = self
                .rooms
                .get(room)
                .and_then(|r| r.tracks.get(sid))
                .map(|t| t.owner)
            {
                self.send_out(
                    owner,
                    sig(Resp::TrackSubscribed(proto::TrackSubscribed {
                        track_sid: sid.to_string(),
                    })),
                );
            }
        }
    }

    fn unsubscribe(&mut self, pid: Pid, sid: &str, now: Instant) {
        let Some(p) = self.parts.get_mut(&pid) else {
            return;
        };
        let Some(out) = p.subs.remove(sid) else {
            return;
        };
        let room = p.room.clone();
        let sub_pc = p.sub_pc;
        if let Some(pc) = self.pcs.get_mut(&sub_pc) {
            let _ = pc.rtc.remove_track(out.sender_id);
        }
        if let Some(t) = self
            .rooms
            .get_mut(&room)
            .and_then(|r| r.tracks.get_mut(sid))
        {
            t.subscribers.retain(|&x| x != pid);
        }
        self.negotiate_subscriber(pid, now);
    }

    /// Send a subscriber offer now, or remember to once the pending one is answered.
    fn negotiate_subscriber(&mut self, pid: Pid, now: Instant) {
        let Some(p) = self.parts.get_mut(&pid) else {
            return;
        };
        if p.sub_awaiting_answer {
            p.sub_needs_offer = true;
            return;
        }
        p.sub_needs_offer = false;
        let pc_id = p.sub_pc;
        let Some(pc) = self.pcs.get_mut(&pc_id) else {
            return;
        };
        let res = pc
            .rtc
            .create_offer(None)
            .and_then(|offer| apply_local(&mut pc.rtc, now, offer));
        match res {
            Ok(sdp) => {
                p.sub_offer_id += 1;
                p.sub_awaiting_answer = true;
                let id = p.sub_offer_id;
                self.send_out(
                    pid,
                    sig(Resp::Offer(proto::SessionDescription {
                        r#type: "offer".into(),
                        sdp,
                        id,
                        ..Default::default()
                    })),
                );
            }
            Err(e) => warn!(error = %e, "subscriber offer failed"),
        }
        self.drive(pc_id, now);
    }

    fn drop_pc(&mut self, pc_id: PcId) {
        if let Some(mut pc) = self.pcs.remove(&pc_id) {
            let _ = pc.rtc.close();
            for a in pc.addrs {
                self.by_addr.remove(&a);
                if a.1 {
                    // Its ICE-TCP connection closes with it (the writer queue is dropped).
                    self.tcp_conns.remove(&a.0);
                }
            }
            self.by_ufrag.remove(&pc.ufrag);
        }
    }

    fn remove_participant(&mut self, pid: Pid) {
        let Some(mut p) = self.parts.remove(&pid) else {
            return;
        };
        Metrics::dec(&self.metrics.participants);
        self.sfu.worker_participants(self.index, -1);
        let now = Instant::now();
        let now_ms = self.now_ms();
        self.drop_pc(p.pub_pc);
        self.drop_pc(p.sub_pc);
        let room_name = p.room.clone();
        info!(room = %room_name, participant = %p.identity, "participant left");
        // Unpublish its tracks: subscribers drop them and renegotiate.
        let mut affected: Vec<Pid> = Vec::new();
        if let Some(room) = self.rooms.get_mut(&room_name) {
            room.participants.retain(|&x| x != pid);
            for sid in &p.tracks {
                if let Some(t) = room.tracks.remove(sid) {
                    for s in t.subscribers {
                        affected.push(s);
                        if let Some(sp) = self.parts.get_mut(&s) {
                            if let Some(out) = sp.subs.remove(sid) {
                                if let Some(pc) = self.pcs.get_mut(&sp.sub_pc) {
                                    let _ = pc.rtc.remove_track(out.sender_id);
                                }
                            }
                            if let Some(local) = &sp.local {
                                let _ = local.try_send(LocalMedia::TrackRemoved {
                                    track_sid: t.sid.clone(),
                                });
                            }
                        }
                    }
                }
            }
            for t in room.tracks.values_mut() {
                t.subscribers.retain(|&x| x != pid);
            }
            // Hidden participants (a recorder) do not keep a room open.
            let parts = &self.parts;
            if room
                .participants
                .iter()
                .all(|x| parts.get(x).is_none_or(|q| q.hidden))
            {
                room.empty_since.get_or_insert(now);
            }
        }
        // Observers (product APIs) see the new state before any client hears about it.
        self.publish_snapshot(&room_name);
        if p.hidden {
            // Nobody was told it joined.
            affected.sort_unstable();
            affected.dedup();
            for s in affected {
                self.negotiate_subscriber(s, now);
            }
            return;
        }
        self.sfu.emit(SfuEvent::ParticipantLeft {
            room: room_name.clone(),
            identity: p.identity.clone(),
            at_ms: now_ms,
        });
        // Tell the others it left (state DISCONNECTED).
        p.version += 1;
        let info = proto::ParticipantInfo {
            sid: p.sid.clone(),
            identity: p.identity.clone(),
            name: p.name.clone(),
            state: proto::participant_info::State::Disconnected as i32,
            version: p.version,
            ..Default::default()
        };
        let others: Vec<Pid> = self
            .rooms
            .get(&room_name)
            .map(|r| r.participants.clone())
            .unwrap_or_default();
        for o in others {
            self.send_out(
                o,
                sig(Resp::Update(proto::ParticipantUpdate {
                    participants: vec![info.clone()],
                })),
            );
        }
        affected.sort_unstable();
        affected.dedup();
        for s in affected {
            self.negotiate_subscriber(s, now);
        }
    }

    fn housekeeping(&mut self) {
        let now = Instant::now();
        self.counters.flush(&self.metrics);
        self.retarget_layers(now);
        // Close rooms that stayed empty for the grace period.
        let expired: Vec<String> = self
            .rooms
            .values()
            .filter(|r| {
                r.empty_since
                    .is_some_and(|t| now.duration_since(t) >= self.cfg.empty_timeout)
            })
            .map(|r| r.name.clone())
            .collect();
        for name in expired {
            // Hidden participants still in it (a recorder) leave with the room: their media channel
            // closes, which is their signal to finish.
            let left: Vec<Pid> = self
                .rooms
                .get(&name)
                .map(|r| r.participants.clone())
                .unwrap_or_default();
            for pid in left {
                self.remove_participant(pid);
            }
            self.rooms.remove(&name);
            Metrics::dec(&self.metrics.rooms);
            info!(room = %name, "room closed (empty)");
            self.sfu.remove_room(&name);
            self.sfu.release_room(&name, self.index);
            self.sfu.emit(SfuEvent::RoomClosed {
                room: name,
                at_ms: self.now_ms(),
            });
        }
        // Deliver pending subscriber offers and active speakers.
        let pending: Vec<Pid> = self
            .parts
            .values()
            .filter(|p| p.sub_needs_offer && !p.sub_awaiting_answer)
            .map(|p| p.pid)
            .collect();
        for pid in pending {
            self.negotiate_subscriber(pid, now);
        }
        let rooms: Vec<String> = self.rooms.keys().cloned().collect();
        for room in rooms {
            self.update_speakers(&room, now);
        }
    }

    /// Point every video subscriber at the best layer the publisher is actually sending at or below
    /// what it asked for (publishers drop layers under CPU or bandwidth pressure).
    fn retarget_layers(&mut self, now: Instant) {
        const ACTIVE: Duration = Duration::from_millis(1500);
        for room in self.rooms.values() {
            for t in room.tracks.values() {
                if t.kind != RtpCodecKind::Video {
                    continue;
                }
                let active: Vec<u8> = (0u8..3)
                    .filter(|l| {
                        t.layer_seen[*l as usize].is_some_and(|at| now.duration_since(at) < ACTIVE)
                    })
                    .collect();
                let Some(&lowest) = active.first() else {
                    continue;
                };
                for sub in &t.subscribers {
                    let Some(out) = self
                        .parts
                        .get_mut(sub)
                        .and_then(|p| p.subs.get_mut(&*t.sid))
                    else {
                        continue;
                    };
                    let want = active
                        .iter()
                        .rev()
                        .find(|l| **l <= out.requested_layer)
                        .copied()
                        .unwrap_or(lowest);
                    if out.forwarder.target_layer() != want {
                        out.forwarder.set_target_layer(want);
                    }
                }
            }
        }
    }

    fn update_speakers(&mut self, room_name: &str, now: Instant) {
        let Some(room) = self.rooms.get(room_name) else {
            return;
        };
        let mut speakers: Vec<(String, f32)> = room
            .participants
            .iter()
            .filter_map(|pid| self.parts.get(pid))
            .filter_map(|p| {
                let (level, at) = p.level?;
                // RFC 6464: 0 dBov loudest .. 127 silence. Speaking: a voiced packet in the last 500 ms.
                (now.duration_since(at) < Duration::from_millis(500))
                    .then(|| (p.sid.clone(), 1.0 - level as f32 / 127.0))
            })
            .collect();
        speakers.sort_by(|a, b| b.1.total_cmp(&a.1));
        let sids: Vec<String> = speakers.iter().map(|s| s.0.clone()).collect();
        if sids == room.last_speakers {
            return;
        }
        let mut infos: Vec<proto::SpeakerInfo> = speakers
            .iter()
            .map(|(sid, level)| proto::SpeakerInfo {
                sid: sid.clone(),
                level: *level,
                active: true,
            })
            .collect();
        for old in &room.last_speakers {
            if !sids.contains(old) {
                infos.push(proto::SpeakerInfo {
                    sid: old.clone(),
                    level: 0.0,
                    active: false,
                });
            }
        }
        let targets = room.participants.clone();
        if let Some(r) = self.rooms.get_mut(room_name) {
            r.last_speakers = sids;
        }
        for t in targets {
            self.send_out(
                t,
                sig(Resp::SpeakersChanged(proto::SpeakersChanged {
                    speakers: infos.clone(),
                })),
            );
        }
    }

    fn publish_snapshot(&self, room_name: &str) {
        let Some(room) = self.rooms.get(room_name) else {
            self.sfu.remove_room(room_name);
            return;
        };
        let snaps = room
            .participants
            .iter()
            .filter_map(|pid| self.parts.get(pid))
            .filter(|p| !p.hidden)
            .map(|p| {
                let has = |kind: RtpCodecKind| {
                    p.tracks
                        .iter()
                        .filter_map(|s| room.tracks.get(s))
                        .any(|t| t.kind == kind && !t.info.muted)
                };
                ParticipantSnapshot {
                    identity: p.identity.clone(),
                    sid: p.sid.clone(),
                    name: p.name.clone(),
                    joined_at_ms: p.joined_at_ms,
                    media_connected_at_ms: p.media_connected_at_ms,
                    audio: has(RtpCodecKind::Audio),
                    video: has(RtpCodecKind::Video),
                }
            })
            .collect();
        self.sfu.set_room(room_name, snaps);
    }
}

/// Negotiate a publisher's `offer` on its peer connection: the answer SDP.
pub(crate) fn answer_offer(
    pc: &mut RTCPeerConnection,
    now: Instant,
    offer: RTCSessionDescription,
) -> Result<String, rtc::shared::error::Error> {
    pc.set_remote_description(now, offer)?;
    let answer = pc.create_answer(None)?;
    apply_local(pc, now, answer)
}

/// Set `desc` as the local description and return the resulting SDP (with our candidates).
fn apply_local(
    pc: &mut RTCPeerConnection,
    now: Instant,
    desc: RTCSessionDescription,
) -> Result<String, rtc::shared::error::Error> {
    pc.set_local_description(now, desc)?;
    pc.local_description()
        .map(|d| d.sdp)
        .ok_or(rtc::shared::error::Error::ErrPeerConnLocalDescriptionNil)
}

/// The extmap id of `uri` in the first `m=<media>` section that declares it.
/// The first `a=ice-pwd:` of an SDP.
fn ice_pwd(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-pwd:"))
        .map(|p| p.trim().to_string())
}

pub(crate) fn extmap_id(sdp: &str, media: &str, uri: &str) -> Option<u8> {
    let mut in_media = false;
    for l in sdp.lines() {
        if let Some(m) = l.strip_prefix("m=") {
            in_media = m.split_whitespace().next() == Some(media);
            continue;
        }
        if !in_media {
            continue;
        }
        let Some(rest) = l.strip_prefix("a=extmap:") else {
            continue;
        };
        let Some((id, tail)) = rest.split_once(' ') else {
            continue;
        };
        if tail.split_whitespace().next() == Some(uri) {
            return id.split('/').next()?.parse().ok();
        }
    }
    None
}

/// The worker driven without threads or sockets' I/O, for `crate::fuzzing`.
#[doc(hidden)]
pub mod fuzz;

#[cfg(test)]
mod tests {
    #[test]
    fn extmap_lookup() {
        let sdp = "v=0\r\nm=video 9 UDP 96\r\na=extmap:5 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
                   m=audio 9 UDP 111\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=extmap:3/recvonly http://x\r\n";
        assert_eq!(
            super::extmap_id(sdp, "audio", super::AUDIO_LEVEL_URI),
            Some(1)
        );
        assert_eq!(
            super::extmap_id(sdp, "video", super::AUDIO_LEVEL_URI),
            Some(5)
        );
        assert_eq!(super::extmap_id(sdp, "audio", "http://x"), Some(3));
        assert_eq!(super::extmap_id(sdp, "audio", "nope"), None);
    }
}
