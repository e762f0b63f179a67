//! The room model: what one media worker owns (peer connections, participants, rooms, published
//! tracks and their subscriptions) and the read-only views of it (participant info for clients,
//! snapshots for the product APIs). Only the worker's own thread touches it: no locks.

use super::*;
use crate::log_limit::LogLimiter;
use crate::metrics::Metrics;
use crate::sfu::forwarder::Forwarder;
use crate::sfu::stun_check::StunFault;
use crate::sfu::{ParticipantSnapshot, SfuHandle};
use parlor_signaling::protocol::proto;
use rtc::peer_connection::RTCPeerConnection;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RtpCodecKind};
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The maps the packet path looks up (peer connections, participants, rooms, tracks, subscriptions,
/// address routing): foldhash, seeded per map like std's SipHash (so a peer choosing source ports
/// cannot aim collisions) but several times cheaper per lookup.
pub(super) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Per-packet counters kept by the worker itself and added to the shared `Metrics` on every
/// housekeeping tick: no atomic read-modify-write shared between worker threads per packet.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) packets_in: u64,
    pub(super) bytes_in: u64,
    pub(super) packets_out: u64,
    pub(super) bytes_out: u64,
    pub(super) dropped: u64,
    pub(super) send_failures: u64,
    /// NACKs received from subscribers, and the packets resent from send caches for them.
    pub(super) nacks: u64,
    pub(super) retransmits: u64,
    /// STUN packets dropped before the ICE agent, by `StunFault` index.
    pub(super) stun_dropped: [u64; StunFault::ALL.len()],
}

impl Counters {
    pub(super) fn flush(&mut self, m: &Metrics) {
        let c = std::mem::take(self);
        Metrics::add(&m.rtp_packets_in, c.packets_in);
        Metrics::add(&m.rtp_bytes_in, c.bytes_in);
        Metrics::add(&m.rtp_packets_out, c.packets_out);
        Metrics::add(&m.rtp_bytes_out, c.bytes_out);
        Metrics::add(&m.rtp_dropped, c.dropped);
        Metrics::add(&m.rtp_send_failures, c.send_failures);
        Metrics::add(&m.nacks_received, c.nacks);
        Metrics::add(&m.retransmits, c.retransmits);
        for (total, n) in m.stun_dropped.iter().zip(c.stun_dropped) {
            Metrics::add(total, n);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Role {
    Publisher,
    Subscriber,
    /// Signal protocol v1: one connection that both publishes and subscribes.
    Both,
}

impl Role {
    pub(super) fn publishes(self) -> bool {
        self != Role::Subscriber
    }
    pub(super) fn subscribes(self) -> bool {
        self != Role::Publisher
    }
}

pub(super) struct Pc {
    pub(super) rtc: RTCPeerConnection,
    pub(super) owner: Pid,
    pub(super) role: Role,
    pub(super) ufrag: String,
    /// Local ICE password (MESSAGE-INTEGRITY key of the checks addressed to this connection).
    pub(super) pwd: String,
    /// The peer's ICE password (from the remote description, once set).
    pub(super) remote_pwd: Option<String>,
    pub(super) addrs: Vec<(SocketAddr, bool)>,
    pub(super) next_timeout: Option<Instant>,
    pub(super) connected: bool,
    /// Where the direct egress sends this leg's RTP: the selected ICE pair, refreshed each time
    /// the connection is driven (a selection changes only while `rtc` handles input or timers).
    pub(super) route: Option<rtc::peer_connection::DirectRoute>,
    /// rtc track id → (track sid) for inbound tracks (publisher PCs).
    pub(super) inbound: FastMap<String, Arc<str>>,
    /// Data channels by label (publisher PCs).
    pub(super) reliable_dc: Option<rtc::data_channel::RTCDataChannelId>,
    pub(super) lossy_dc: Option<rtc::data_channel::RTCDataChannelId>,
}

pub(super) struct SubOut {
    /// Simulcast layer the subscriber asked for (0 low .. 2 high); the forwarder targets the best
    /// published layer at or below it.
    pub(super) requested_layer: u8,
    /// The sender on the subscriber's connection (None: an in-process subscriber, or a v1 client
    /// whose connection has no free receive section for it yet).
    pub(super) sender_id: Option<RTCRtpSenderId>,
    /// v1: the client's receive section (mid) this track is sent on.
    pub(super) mid: Option<String>,
    pub(super) ssrc: u32,
    /// Payload type negotiated on this subscriber's sender (None until the answer arrives).
    pub(super) pt: Option<u8>,
    pub(super) forwarder: Forwarder,
    /// Sender state of the direct egress (counts for sender reports, video send cache).
    pub(super) egress: crate::sfu::egress::OutStream,
}

pub(super) struct Participant {
    pub(super) pid: Pid,
    pub(super) sid: String,
    pub(super) identity: String,
    pub(super) name: String,
    pub(super) metadata: String,
    /// Participant attributes (RoomService.UpdateParticipant), in its `ParticipantInfo`.
    pub(super) attributes: HashMap<String, String>,
    pub(super) room: String,
    pub(super) perms: Perms,
    pub(super) auto_subscribe: bool,
    pub(super) events: mpsc::Sender<Out>,
    pub(super) pub_pc: PcId,
    pub(super) sub_pc: PcId,
    pub(super) version: u32,
    pub(super) joined_at_ms: i64,
    pub(super) media_connected_at_ms: Option<i64>,
    /// AddTrack requests waiting for their media (cid → TrackInfo).
    pub(super) pending: HashMap<String, proto::TrackInfo>,
    /// Published tracks by sid.
    pub(super) tracks: Vec<String>,
    /// Subscriptions by track sid.
    pub(super) subs: FastMap<String, SubOut>,
    /// Subscriber PC negotiation.
    pub(super) sub_offer_id: u32,
    pub(super) sub_awaiting_answer: bool,
    pub(super) sub_needs_offer: bool,
    /// Signal protocol v1: `pub_pc == sub_pc`, the client offers every renegotiation.
    pub(super) single_pc: bool,
    /// v1: the client's receive sections (mid, kind) from its latest offer.
    pub(super) recv_slots: Vec<(String, RtpCodecKind)>,
    /// v1: when we last asked the client to renegotiate (MediaSectionsRequirement) and have not
    /// seen its offer since.
    pub(super) reneg_asked: Option<Instant>,
    pub(super) data_seq: u32,
    pub(super) level: Option<(u8, Instant)>,
    pub(super) kind: proto::participant_info::Kind,
    /// In-process participant: where its subscriptions go (None for WebRTC clients).
    pub(super) local: Option<mpsc::Sender<LocalMedia>>,
    /// See `JoinReq::hidden`.
    pub(super) hidden: bool,
}

impl Participant {
    /// Hidden (a recorder) or an agent: does not count toward the room's limit, and does not keep
    /// the room open once its members left (LiveKit's dependent participants).
    pub(super) fn dependent(&self) -> bool {
        self.hidden || self.kind == proto::participant_info::Kind::Agent
    }
}

pub(super) struct TrackIn {
    /// Shared (inbound map, in-process subscribers' packets) without allocating.
    pub(super) sid: Arc<str>,
    pub(super) owner: Pid,
    pub(super) info: proto::TrackInfo,
    pub(super) kind: RtpCodecKind,
    pub(super) codec: Option<RTCRtpCodec>,
    pub(super) receiver_id: Option<RTCRtpReceiverId>,
    /// ssrc → simulcast layer.
    pub(super) layers: Vec<(u32, u8)>,
    /// Last packet arrival per simulcast layer (0..=2): which layers the publisher sends right now.
    pub(super) layer_seen: [Option<Instant>; 3],
    pub(super) is_vp8: bool,
    pub(super) is_h264: bool,
    pub(super) subscribers: Vec<Pid>,
    pub(super) audio_level_ext: Option<u8>,
    pub(super) last_pli: Option<Instant>,
}

pub(super) struct Room {
    pub(super) name: String,
    pub(super) sid: String,
    pub(super) created_at_ms: i64,
    /// Visible participants allowed (the stored room's limit, else the configured one).
    pub(super) max_participants: usize,
    pub(super) participants: Vec<Pid>,
    pub(super) tracks: FastMap<String, TrackIn>,
    pub(super) empty_since: Option<Instant>,
    /// A member (a participant neither hidden nor an agent) has joined.
    pub(super) had_member: bool,
    /// How long the room stays open once `empty_since` is set (the stored room's
    /// `departure_timeout`, else `WorkerConfig::empty_timeout`).
    pub(super) departure_timeout: Duration,
    /// Room metadata (RoomService.CreateRoom / UpdateRoomMetadata), in every client's `Room`.
    pub(super) metadata: String,
    pub(super) last_speakers: Vec<String>,
}

impl Room {
    /// The room as clients see it (JoinResponse, RoomUpdate).
    pub(super) fn info(&self, empty_timeout: Duration) -> proto::Room {
        proto::Room {
            sid: self.sid.clone(),
            name: self.name.clone(),
            empty_timeout: empty_timeout.as_secs() as u32,
            departure_timeout: self.departure_timeout.as_secs() as u32,
            max_participants: self.max_participants as u32,
            creation_time: self.created_at_ms / 1000,
            creation_time_ms: self.created_at_ms,
            metadata: self.metadata.clone(),
            num_participants: self.participants.len() as u32,
            ..Default::default()
        }
    }
}

pub(crate) struct Worker {
    /// This worker's index (0..workers): its rooms are placed on it in `SfuHandle`.
    pub(super) index: usize,
    pub(super) socket: crate::sfu::recvmmsg::MediaSocket,
    pub(super) local_addr: SocketAddr,
    pub(super) candidate_addr: SocketAddr,
    pub(super) cfg: WorkerConfig,
    pub(super) pcs: FastMap<PcId, Pc>,
    /// (remote address, is TCP) → peer connection.
    pub(super) by_addr: FastMap<(SocketAddr, bool), PcId>,
    /// ICE-TCP: our listener's address and the writer queue of each accepted connection.
    pub(super) tcp_local: Option<SocketAddr>,
    pub(super) tcp_conns: HashMap<SocketAddr, crate::sfu::tcp::TcpConn>,
    pub(super) by_ufrag: HashMap<String, PcId>,
    pub(super) rooms: FastMap<String, Room>,
    pub(super) parts: FastMap<Pid, Participant>,
    pub(super) next_id: u64,
    pub(super) sfu: SfuHandle,
    pub(super) metrics: Arc<Metrics>,
    pub(super) clock: crate::clock::SharedClock,
    /// The plaintext RTP packet being protected (reused on every output packet).
    pub(super) plain: Vec<u8>,
    /// Peer connections whose timer is due (reused by `on_timers`).
    pub(super) due_scratch: Vec<PcId>,
    /// Peer-connection deadlines, earliest first: (deadline, connection). An entry whose
    /// connection is gone or has moved its deadline (`Pc::next_timeout` differs) is stale and
    /// skipped when it comes up, so rescheduling costs one push, never a search.
    pub(super) timers: std::collections::BinaryHeap<std::cmp::Reverse<(Instant, PcId)>>,
    /// Origin of the arrival times the forwarders get (microseconds since the worker started).
    pub(super) epoch: Instant,
    /// Participants whose session queue reached its reserve during this wake-up: disconnected at its
    /// end (`disconnect_overflowed`), not in the middle of whatever was telling them something.
    pub(super) overflowed: Vec<Pid>,
    /// Wall-clock time (Unix ms) of the current wake-up, read with its `now` (see `Worker::wake`).
    pub(super) wake_unix_ms: i64,
    pub(super) counters: Counters,
    /// Rate limit of the per-packet STUN fault lines.
    pub(super) stun_log: LogLimiter<{ StunFault::ALL.len() }>,
    /// UDP datagrams produced since the last `send_batch` (sent with one sendmmsg).
    pub(super) batch: crate::sfu::sendmmsg::SendBatch,
}

pub(super) const PLI_MIN_INTERVAL: Duration = Duration::from_millis(500);
pub(super) const UDP_BUFFER_BYTES: usize = 4 << 20;
/// Datagrams handled per wake-up of the worker (the rest wait for the next turn of the loop, so
/// commands and timers are never starved).
pub(super) const RECV_BATCH: usize = 64;

impl Worker {
    /// A worker on `socket` (not started: `Worker::run` drives it). Ids it mints start at
    /// `index << 48` so they are unique across workers (they show up in logs).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        index: usize,
        socket: crate::sfu::recvmmsg::MediaSocket,
        candidate_addr: SocketAddr,
        tcp_local: Option<SocketAddr>,
        cfg: WorkerConfig,
        sfu: SfuHandle,
        metrics: Arc<Metrics>,
        clock: crate::clock::SharedClock,
    ) -> std::io::Result<Worker> {
        let local_addr = socket.get_ref().local_addr()?;
        let epoch = clock.now();
        let wake_unix_ms = clock.unix_ms();
        Ok(Worker {
            index,
            socket,
            local_addr,
            candidate_addr,
            cfg,
            pcs: FastMap::default(),
            by_addr: FastMap::default(),
            tcp_local,
            tcp_conns: HashMap::new(),
            by_ufrag: HashMap::new(),
            rooms: FastMap::default(),
            parts: FastMap::default(),
            next_id: ((index as u64) << 48) + 1,
            sfu,
            metrics,
            clock,
            plain: Vec::with_capacity(1500),
            due_scratch: Vec::new(),
            timers: Default::default(),
            epoch,
            overflowed: Vec::new(),
            wake_unix_ms,
            counters: Counters::default(),
            stun_log: LogLimiter::new(crate::log_limit::INTERVAL),
            batch: Default::default(),
        })
    }

    pub(super) fn now_ms(&self) -> i64 {
        self.wake_unix_ms
    }

    pub(super) fn track_mut(&mut self, owner: Pid, sid: &str) -> Option<&mut TrackIn> {
        let room = &self.parts.get(&owner)?.room;
        self.rooms.get_mut(room)?.tracks.get_mut(sid)
    }

    pub(super) fn participant_info(&self, pid: Pid) -> Option<proto::ParticipantInfo> {
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
            attributes: p.attributes.clone(),
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
                can_update_metadata: p.perms.can_update_metadata,
                ..Default::default()
            }),
            is_publisher: !p.tracks.is_empty(),
            kind: p.kind as i32,
            ..Default::default()
        })
    }

    pub(super) fn publish_snapshot(&self, room_name: &str) {
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
