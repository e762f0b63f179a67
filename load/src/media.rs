//! Media threads: each owns many client peer connections (one UDP socket each, registered with ONE
//! `mio` poll), drives them Sans-I/O (handle_read / poll_write / poll_event / poll_read / timeouts),
//! paces the synthetic publishers and measures what the subscriber connections receive. No task or
//! thread per connection, no per-packet channel hop: signaling talks to a thread only to create,
//! negotiate and close connections.

use crate::pc::{self, TrackSpec};
use crate::stats::{self, new_histogram, RecvStream, Shared, STAMP_LEN};
use bytes::BytesMut;
use hdrhistogram::Histogram;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::RTCPeerConnection;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc as tmpsc, oneshot};
use tracing::debug;

const WAKER: Token = Token(usize::MAX);
const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
const VIDEO_FPS: u32 = 30;
const VIDEO_MAX_PACKET: usize = 1000;

pub type PcId = u64;

/// What a signaling task hears about its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PcEvent {
    Connected,
    Failed,
}

/// One outgoing synthetic track: its stream index (for loss accounting) and codec.
#[derive(Debug, Clone, Copy)]
pub struct OutSpec {
    pub stream: u32,
    pub track: TrackSpec,
}

pub struct PcSpec {
    pub tracks: Vec<OutSpec>,
    /// When the participant started joining (for join-to-first-packet).
    pub join_started: Instant,
    pub events: tmpsc::UnboundedSender<PcEvent>,
}

/// Media settings shared by all publishers.
#[derive(Debug, Clone, Copy)]
pub struct MediaParams {
    /// Audio payload bytes per 20 ms packet (stamp included).
    pub audio_bytes: usize,
    /// VP8 bitrate (kbit/s) when a track is video.
    pub video_kbps: u32,
    /// ICE connectivity-check pacing of the client connections.
    pub ice_check_interval: Option<Duration>,
    /// Address the client sockets bind to (and announce as their host candidate).
    pub bind_ip: std::net::IpAddr,
}

enum Cmd {
    New(PcId, PcSpec, oneshot::Sender<Result<(), String>>),
    CreateOffer(PcId, oneshot::Sender<Result<String, String>>),
    /// Set a remote description; for an offer, reply with our answer SDP.
    Remote(
        PcId,
        String,
        bool,
        oneshot::Sender<Result<Option<String>, String>>,
    ),
    Close(PcId),
}

/// Handle to one media thread.
#[derive(Clone)]
pub struct MediaHandle {
    tx: mpsc::Sender<Cmd>,
    waker: Arc<Waker>,
}

static NEXT_PC: AtomicU64 = AtomicU64::new(1);

impl MediaHandle {
    fn send(&self, c: Cmd) -> Result<(), String> {
        self.tx
            .send(c)
            .map_err(|_| "media thread gone".to_string())?;
        self.waker.wake().map_err(|e| e.to_string())
    }

    pub async fn new_pc(&self, spec: PcSpec) -> Result<PcId, String> {
        let id = NEXT_PC.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::New(id, spec, tx))?;
        rx.await.map_err(|_| "media thread gone".to_string())??;
        Ok(id)
    }

    pub async fn create_offer(&self, id: PcId) -> Result<String, String> {
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::CreateOffer(id, tx))?;
        rx.await.map_err(|_| "media thread gone".to_string())?
    }

    /// Apply a remote SDP; an offer yields our answer.
    pub async fn set_remote(
        &self,
        id: PcId,
        sdp: String,
        is_offer: bool,
    ) -> Result<Option<String>, String> {
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Remote(id, sdp, is_offer, tx))?;
        rx.await.map_err(|_| "media thread gone".to_string())?
    }

    pub fn close(&self, id: PcId) {
        let _ = self.send(Cmd::Close(id));
    }
}

struct OutTrack {
    spec: OutSpec,
    sender: RTCRtpSenderId,
    pt: Option<u8>,
    rtp_seq: u16,
    rtp_ts: u32,
    /// Stamp sequence (one per packet).
    n: u32,
    frame: u32,
}

struct ClientPc {
    id: PcId,
    rtc: RTCPeerConnection,
    socket: UdpSocket,
    local: SocketAddr,
    next_timeout: Option<Instant>,
    connected: bool,
    out: Vec<OutTrack>,
    recv: Vec<RecvStream>,
    join_started: Instant,
    got_first: bool,
    events: tmpsc::UnboundedSender<PcEvent>,
}

/// Thread-local measurements, merged into `Shared` every `FLUSH`.
struct Local {
    latency: Histogram<u64>,
    app_latency: Histogram<u64>,
    first_packet: Histogram<u64>,
    packets_sent: u64,
    bytes_sent: u64,
    packets_recv: u64,
    bytes_recv: u64,
    send_errors: u64,
    socket_drops: u64,
}

const FLUSH: Duration = Duration::from_millis(500);

struct MediaThread {
    index: usize,
    poll: Poll,
    rx: mpsc::Receiver<Cmd>,
    shared: Arc<Shared>,
    sending: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    params: MediaParams,
    slots: Vec<Option<ClientPc>>,
    free: Vec<usize>,
    by_id: HashMap<PcId, usize>,
    /// (due, pc id, track index)
    schedule: BinaryHeap<Reverse<(Instant, PcId, usize)>>,
    earliest: Option<Instant>,
    local: Local,
    closed_recv: Vec<RecvStream>,
    buf: Vec<u8>,
    /// Kernel arrival time (realtime ns) of the datagram being handled, if any.
    rx_ns: Option<u64>,
}

/// Start `n` media threads. They run until `stop` is set; `sending` gates the publishers.
pub fn spawn(
    n: usize,
    shared: Arc<Shared>,
    params: MediaParams,
    sending: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<(Vec<MediaHandle>, Vec<std::thread::JoinHandle<()>>)> {
    let mut handles = Vec::new();
    let mut joins = Vec::new();
    for index in 0..n.max(1) {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = mpsc::channel();
        let t = MediaThread {
            index,
            poll,
            rx,
            shared: shared.clone(),
            sending: sending.clone(),
            stop: stop.clone(),
            params,
            slots: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            schedule: BinaryHeap::new(),
            earliest: None,
            local: Local {
                latency: new_histogram(),
                app_latency: new_histogram(),
                first_packet: new_histogram(),
                packets_sent: 0,
                bytes_sent: 0,
                packets_recv: 0,
                bytes_recv: 0,
                send_errors: 0,
                socket_drops: 0,
            },
            closed_recv: Vec::new(),
            buf: vec![0u8; 2048],
            rx_ns: None,
        };
        joins.push(
            std::thread::Builder::new()
                .name(format!("media-{index}"))
                .spawn(move || t.run())?,
        );
        handles.push(MediaHandle { tx, waker });
    }
    Ok((handles, joins))
}

impl MediaThread {
    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut next_flush = Instant::now() + FLUSH;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let now = Instant::now();
            let mut wake = next_flush;
            if let Some(e) = self.earliest {
                wake = wake.min(e);
            }
            if let Some(Reverse((t, _, _))) = self.schedule.peek() {
                wake = wake.min(*t);
            }
            // Never sleep long so `stop` is noticed.
            let timeout = wake
                .saturating_duration_since(now)
                .min(Duration::from_millis(100));
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "poll failed");
                    break;
                }
            }
            for ev in events.iter() {
                if ev.token() == WAKER {
                    self.commands();
                } else {
                    self.readable(ev.token().0);
                }
            }
            let now = Instant::now();
            if self.earliest.is_some_and(|e| e <= now) {
                self.timeouts(now);
            }
            self.send_due(now);
            if now >= next_flush {
                self.flush_stats();
                next_flush = now + FLUSH;
            }
        }
        // Close everything (DTLS close_notify etc.), then publish the final figures.
        let ids: Vec<PcId> = self.by_id.keys().copied().collect();
        for id in ids {
            self.close(id);
        }
        self.flush_stats();
    }

    fn commands(&mut self) {
        while let Ok(c) = self.rx.try_recv() {
            let now = Instant::now();
            match c {
                Cmd::New(id, spec, reply) => {
                    let _ = reply.send(self.create(id, spec, now));
                }
                Cmd::CreateOffer(id, reply) => {
                    let r = self.with_pc(id, |pc| {
                        let offer = pc.rtc.create_offer(None)?;
                        pc.rtc.set_local_description(now, offer)?;
                        pc.rtc
                            .local_description()
                            .map(|d| d.sdp)
                            .ok_or(rtc::shared::error::Error::ErrPeerConnLocalDescriptionNil)
                    });
                    let _ = reply.send(r);
                    self.drive_id(id, now);
                }
                Cmd::Remote(id, sdp, is_offer, reply) => {
                    let r = self.with_pc(id, |pc| {
                        if is_offer {
                            pc.rtc
                                .set_remote_description(now, RTCSessionDescription::offer(sdp)?)?;
                            let ans = pc.rtc.create_answer(None)?;
                            pc.rtc.set_local_description(now, ans)?;
                            Ok(pc.rtc.local_description().map(|d| d.sdp))
                        } else {
                            pc.rtc
                                .set_remote_description(now, RTCSessionDescription::answer(sdp)?)?;
                            Ok(None)
                        }
                    });
                    let _ = reply.send(r);
                    self.drive_id(id, now);
                }
                Cmd::Close(id) => self.close(id),
            }
        }
    }

    fn with_pc<T>(
        &mut self,
        id: PcId,
        f: impl FnOnce(&mut ClientPc) -> Result<T, rtc::shared::error::Error>,
    ) -> Result<T, String> {
        let slot = *self.by_id.get(&id).ok_or("unknown peer connection")?;
        let pc = self.slots[slot].as_mut().ok_or("unknown peer connection")?;
        f(pc).map_err(|e| e.to_string())
    }

    fn create(&mut self, id: PcId, spec: PcSpec, now: Instant) -> Result<(), String> {
        let std_sock = std::net::UdpSocket::bind(SocketAddr::new(self.params.bind_ip, 0))
            .map_err(|e| e.to_string())?;
        std_sock.set_nonblocking(true).map_err(|e| e.to_string())?;
        crate::sock::enable_rx_timestamps(&std_sock).map_err(|e| e.to_string())?;
        let local = std_sock.local_addr().map_err(|e| e.to_string())?;
        let mut socket = UdpSocket::from_std(std_sock);
        let tracks: Vec<TrackSpec> = spec.tracks.iter().map(|t| t.track).collect();
        let (rtc, senders) = pc::build(now, local, &tracks, self.params.ice_check_interval)
            .map_err(|e| e.to_string())?;
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        self.poll
            .registry()
            .register(&mut socket, Token(slot), Interest::READABLE)
            .map_err(|e| e.to_string())?;
        let out = spec
            .tracks
            .iter()
            .zip(senders)
            .map(|(s, sender)| OutTrack {
                spec: *s,
                sender,
                pt: None,
                rtp_seq: rand::random(),
                rtp_ts: rand::random(),
                n: 0,
                frame: 0,
            })
            .collect();
        self.slots[slot] = Some(ClientPc {
            id,
            rtc,
            socket,
            local,
            next_timeout: None,
            connected: false,
            out,
            recv: Vec::new(),
            join_started: spec.join_started,
            got_first: false,
            events: spec.events,
        });
        self.by_id.insert(id, slot);
        Ok(())
    }

    fn close(&mut self, id: PcId) {
        let Some(slot) = self.by_id.remove(&id) else {
            return;
        };
        if let Some(mut pc) = self.slots[slot].take() {
            let _ = pc.rtc.close();
            while let Some(out) = pc.rtc.poll_write() {
                let _ = pc.socket.send_to(&out.message, out.transport.peer_addr);
            }
            let _ = self.poll.registry().deregister(&mut pc.socket);
            self.closed_recv.extend(pc.recv.iter().copied());
        }
        self.free.push(slot);
    }

    fn readable(&mut self, slot: usize) {
        loop {
            let Some(pc) = self.slots.get_mut(slot).and_then(|s| s.as_mut()) else {
                return;
            };
            let (n, from, rx_ns) = match crate::sock::recv_with_ts(&pc.socket, &mut self.buf) {
                Ok(x) => x,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    debug!(error = %e, "recv_from");
                    return;
                }
            };
            let now = Instant::now();
            if pc.connected {
                // Media on a connected transport: the direct ingress (as the server takes it),
                // so the generator's own cost per received packet stays small beside the
                // server's.
                match pc.rtc.read_rtp_direct(now, &self.buf[..n]) {
                    Ok(true) => {
                        self.rx_ns = rx_ns;
                        self.drive_media(slot, now);
                        self.rx_ns = None;
                        continue;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        debug!(error = %e, "srtp read");
                        continue;
                    }
                }
            }
            let msg = TaggedBytesMut {
                now,
                transport: TransportContext {
                    local_addr: pc.local,
                    peer_addr: from,
                    ecn: None,
                    transport_protocol: TransportProtocol::UDP,
                },
                message: BytesMut::from(&self.buf[..n]),
            };
            if let Err(e) = pc.rtc.handle_read(msg) {
                debug!(error = %e, "handle_read");
            }
            self.rx_ns = rx_ns;
            self.drive(slot, now);
            self.rx_ns = None;
        }
    }

    /// After the direct ingress: the media it delivered; the whole drive only if a handler raised
    /// an event (nothing is written on a read).
    fn drive_media(&mut self, slot: usize, now: Instant) {
        let Some(pc) = self.slots.get_mut(slot).and_then(|s| s.as_mut()) else {
            return;
        };
        while let Some(m) = pc.rtc.poll_media_read() {
            if let RTCMessage::RtpPacket(_, pkt) = m.message {
                record_rtp(&mut self.local, pc, self.rx_ns, &pkt, now);
            }
        }
        if pc.rtc.has_pending_events() {
            self.drive(slot, now);
            return;
        }
        pc.next_timeout = pc.rtc.poll_timeout();
        if let Some(t) = pc.next_timeout {
            self.earliest = Some(self.earliest.map_or(t, |e| e.min(t)));
        }
    }

    fn drive_id(&mut self, id: PcId, now: Instant) {
        if let Some(&slot) = self.by_id.get(&id) {
            self.drive(slot, now);
        }
    }

    /// Drain one connection: datagrams out, state events, received media.
    fn drive(&mut self, slot: usize, now: Instant) {
        let Some(pc) = self.slots.get_mut(slot).and_then(|s| s.as_mut()) else {
            return;
        };
        while let Some(out) = pc.rtc.poll_write() {
            if pc
                .socket
                .send_to(&out.message, out.transport.peer_addr)
                .is_err()
            {
                self.local.socket_drops += 1;
            }
        }
        while let Some(ev) = pc.rtc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) = ev {
                match s {
                    RTCPeerConnectionState::Connected if !pc.connected => {
                        pc.connected = true;
                        Shared::inc(&self.shared.pcs_connected);
                        let _ = pc.events.send(PcEvent::Connected);
                        // Start the publishers, spread over one packet interval.
                        for (i, t) in pc.out.iter_mut().enumerate() {
                            if let Some(mut s) = pc.rtc.rtp_sender(t.sender) {
                                t.pt = s
                                    .get_parameters()
                                    .rtp_parameters
                                    .codecs
                                    .first()
                                    .map(|c| c.payload_type);
                            }
                            let jitter = Duration::from_micros(rand::random::<u64>() % 20_000);
                            self.schedule.push(Reverse((now + jitter, pc.id, i)));
                        }
                    }
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                        if pc.connected {
                            pc.connected = false;
                            Shared::inc(&self.shared.pcs_failed);
                        }
                        let _ = pc.events.send(PcEvent::Failed);
                    }
                    _ => {}
                }
            }
        }
        while let Some(m) = pc.rtc.poll_read() {
            if let RTCMessage::RtpPacket(_, pkt) = m.message {
                record_rtp(&mut self.local, pc, self.rx_ns, &pkt, now);
            }
        }
        pc.next_timeout = pc.rtc.poll_timeout();
        if let Some(t) = pc.next_timeout {
            self.earliest = Some(self.earliest.map_or(t, |e| e.min(t)));
        }
    }

    fn timeouts(&mut self, now: Instant) {
        for slot in 0..self.slots.len() {
            let due = self.slots[slot]
                .as_ref()
                .is_some_and(|pc| pc.next_timeout.is_some_and(|t| t <= now));
            if due {
                if let Some(pc) = self.slots[slot].as_mut() {
                    let _ = pc.rtc.handle_timeout(now);
                }
                self.drive(slot, now);
            }
        }
        self.earliest = self
            .slots
            .iter()
            .flatten()
            .filter_map(|pc| pc.next_timeout)
            .min();
    }

    fn send_due(&mut self, now: Instant) {
        let sending = self.sending.load(Ordering::Relaxed);
        while let Some(Reverse((due, id, ti))) = self.schedule.peek().copied() {
            if due > now {
                break;
            }
            self.schedule.pop();
            if !sending {
                continue;
            }
            let Some(&slot) = self.by_id.get(&id) else {
                continue;
            };
            let next = self.send_one(slot, ti, now);
            if let Some(interval) = next {
                // Keep an absolute cadence; resynchronise after a long stall.
                let mut at = due + interval;
                if at + Duration::from_millis(100) < now {
                    at = now + interval;
                }
                self.schedule.push(Reverse((at, id, ti)));
            }
            self.drive(slot, now);
        }
    }

    /// Send one audio packet or one video frame; returns the interval to the next.
    fn send_one(&mut self, slot: usize, ti: usize, now: Instant) -> Option<Duration> {
        let params = self.params;
        let pc = self.slots.get_mut(slot)?.as_mut()?;
        if !pc.connected {
            return None;
        }
        let t = pc.out.get_mut(ti)?;
        let pt = t.pt?;
        let stream = t.spec.stream;
        let mut packets: Vec<(BytesMut, bool)> = Vec::new();
        let interval;
        if t.spec.track.video {
            interval = Duration::from_secs(1) / VIDEO_FPS;
            let frame_bytes =
                ((params.video_kbps as usize * 1000 / 8) / VIDEO_FPS as usize).max(STAMP_LEN + 3);
            let keyframe = t.frame % VIDEO_FPS == 0;
            let per = VIDEO_MAX_PACKET;
            let count = frame_bytes.div_ceil(per).max(1);
            for k in 0..count {
                let len = (frame_bytes / count).max(STAMP_LEN + 3);
                let mut b = BytesMut::zeroed(len);
                if k == 0 {
                    b[0] = 0x10; // S bit, partition 0
                    b[1] = if keyframe { 0x00 } else { 0x01 };
                } else {
                    b[0] = 0x00;
                    b[1] = 0x01;
                }
                packets.push((b, k + 1 == count));
            }
            t.frame = t.frame.wrapping_add(1);
        } else {
            interval = AUDIO_INTERVAL;
            let mut b = BytesMut::zeroed(params.audio_bytes.max(STAMP_LEN + 1));
            b[0] = 0x78; // an Opus TOC byte (SILK/CELT hybrid, 20 ms)
            packets.push((b, true));
        }
        let ts_step = if t.spec.track.video {
            90000 / VIDEO_FPS
        } else {
            960
        };
        for (mut payload, marker) in packets {
            // Stamped per packet, right before SRTP and sendto (same clock as kernel timestamps).
            stats::write_stamp(&mut payload, stream, t.n, crate::sock::realtime_ns());
            let len = payload.len() as u64;
            let pkt = rtc::rtp::Packet {
                header: rtc::rtp::header::Header {
                    version: 2,
                    marker,
                    payload_type: pt,
                    sequence_number: t.rtp_seq,
                    timestamp: t.rtp_ts,
                    ssrc: t.spec.track.ssrc,
                    ..Default::default()
                },
                payload: payload.freeze(),
            };
            t.rtp_seq = t.rtp_seq.wrapping_add(1);
            t.n = t.n.wrapping_add(1);
            let ok = pc
                .rtc
                .rtp_sender(t.sender)
                .map(|mut s| s.write_rtp(now, pkt).is_ok())
                .unwrap_or(false);
            if ok {
                self.local.packets_sent += 1;
                self.local.bytes_sent += len;
            } else {
                self.local.send_errors += 1;
            }
        }
        t.rtp_ts = t.rtp_ts.wrapping_add(ts_step);
        if let Some(a) = self.shared.sent_seq.get(stream as usize) {
            a.store(t.n, Ordering::Relaxed);
        }
        Some(interval)
    }

    fn flush_stats(&mut self) {
        let s = &self.shared;
        let l = &mut self.local;
        Shared::add(&s.packets_sent, std::mem::take(&mut l.packets_sent));
        Shared::add(&s.bytes_sent, std::mem::take(&mut l.bytes_sent));
        Shared::add(&s.packets_recv, std::mem::take(&mut l.packets_recv));
        Shared::add(&s.bytes_recv, std::mem::take(&mut l.bytes_recv));
        Shared::add(&s.send_errors, std::mem::take(&mut l.send_errors));
        Shared::add(&s.socket_drops, std::mem::take(&mut l.socket_drops));
        let mut streams: Vec<RecvStream> = self.closed_recv.clone();
        for pc in self.slots.iter().flatten() {
            streams.extend(pc.recv.iter().copied());
        }
        if let Ok(mut h) = s.hist.lock() {
            let _ = h.latency.add(&l.latency);
            let _ = h.latency_interval.add(&l.latency);
            let _ = h.app_latency.add(&l.app_latency);
            let _ = h.first_packet.add(&l.first_packet);
            if h.streams.len() <= self.index {
                h.streams.resize_with(self.index + 1, Vec::new);
            }
            h.streams[self.index] = streams;
        }
        l.latency.reset();
        l.app_latency.reset();
        l.first_packet.reset();
    }
}

/// Count one received RTP packet and record its latency (from its stamp) and, the first time, the
/// connection's join-to-first-packet.
fn record_rtp(
    local: &mut Local,
    pc: &mut ClientPc,
    rx_ns: Option<u64>,
    pkt: &rtc::rtp::Packet,
    now: Instant,
) {
    local.packets_recv += 1;
    local.bytes_recv += pkt.payload.len() as u64;
    let Some((stream, seq, sent_ns)) = stats::read_stamp(&pkt.payload) else {
        return;
    };
    let app_ns = crate::sock::realtime_ns();
    let arrived_ns = rx_ns.unwrap_or(app_ns);
    let _ = local
        .latency
        .record(arrived_ns.saturating_sub(sent_ns).max(1));
    let _ = local
        .app_latency
        .record(app_ns.saturating_sub(sent_ns).max(1));
    if !pc.got_first {
        pc.got_first = true;
        debug!(
            pc = pc.id,
            at_ms = now.saturating_duration_since(pc.join_started).as_millis() as u64,
            "first packet"
        );
        let d = now.saturating_duration_since(pc.join_started);
        let _ = local.first_packet.record((d.as_nanos() as u64).max(1));
    }
    match pc.recv.iter_mut().find(|r| r.stream == stream) {
        Some(r) => {
            r.received += 1;
            r.max_seq = r.max_seq.max(seq);
            r.first_seq = r.first_seq.min(seq);
        }
        None => pc.recv.push(RecvStream {
            stream,
            first_seq: seq,
            max_seq: seq,
            received: 1,
        }),
    }
}
