//! The media worker: one task that owns a UDP socket, every peer connection on it and the rooms they
//! belong to. Signaling sessions talk to it only through `Cmd`s on a bounded channel and receive `Out`
//! messages on their own bounded channel; a full session queue disconnects that session instead of
//! blocking the worker. No locks on the packet path: the worker is the single owner of room state.
//!
//! This module holds the worker's interface (commands in, events out, join routing); the worker itself
//! is split along its seams: [`shell`] (thread and event loop), [`transport`] (socket I/O and peer
//! connections), [`model`] (room state), [`membership`], [`publishing`], [`forwarding`], [`data`],
//! [`negotiation`] (with [`single_pc`] for signal protocol v1), [`admin`] (server-side changes),
//! [`housekeeping`] and [`lifecycle`] (the `SfuEvent`s it emits).

mod admin;
mod data;
mod egress;
mod forwarding;
mod housekeeping;
mod lifecycle;
mod membership;
mod model;
mod negotiation;
mod publishing;
mod shell;
mod single_pc;
mod transport;

use super::peer;
use super::SfuHandle;
use parlor_signaling::protocol::{proto, CandidateInit, Target};
use proto::signal_response::Message as Resp;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

use model::*;

pub use admin::{AdminError, AdminOk, AdminOp};

pub(crate) use negotiation::{answer_offer, extmap_id};
pub use shell::spawn_workers;

pub type Pid = u64;
type PcId = u64;

/// Permissions a participant joined with (from its token).
#[derive(Debug, Clone, Copy)]
pub struct Perms {
    pub can_publish: bool,
    pub can_subscribe: bool,
    pub can_publish_data: bool,
    /// May change its own name, metadata and attributes (`UpdateParticipantMetadata`).
    pub can_update_metadata: bool,
}

pub struct JoinReq {
    pub room: String,
    pub identity: String,
    pub name: String,
    pub metadata: String,
    /// LiveKit participant attributes (from the token).
    pub attributes: std::collections::HashMap<String, String>,
    pub perms: Perms,
    pub auto_subscribe: bool,
    pub events: mpsc::Sender<Out>,
    /// What the other participants see (STANDARD for clients; AGENT, EGRESS... for in-process ones).
    pub kind: proto::participant_info::Kind,
    /// Signal protocol v1 (`/rtc/v1`): one peer connection that publishes and subscribes, and the
    /// client offers every negotiation.
    pub single_pc: bool,
    /// In-process participant (recorder, assistant): no peer connections; its subscriptions are
    /// delivered on this channel and it publishes with `Cmd::LocalPublish` / `Cmd::LocalRtp`.
    pub local: Option<mpsc::Sender<LocalMedia>>,
    /// Invisible to the room (a recorder): not announced to clients, not in the participants API or
    /// lifecycle events, does not keep the room open, may not publish.
    pub hidden: bool,
    /// When this join opens the room: open it as this stored room (its sid and participant limit).
    /// None: a fresh sid and the configured limit. Ignored when the room is already open.
    pub open_as: Option<RoomSpec>,
}

/// A stored room (`POST /api/rooms`) the SFU opens under its name: the signal edge looks it up
/// before the join, so the worker never touches the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSpec {
    pub sid: String,
    /// Clamped to `WorkerConfig::max_participants`; 0 means that limit.
    pub max_participants: usize,
    /// Seconds the room stays open after its last participant left (0: `WorkerConfig::empty_timeout`).
    pub departure_timeout_secs: u32,
    pub metadata: String,
}

/// What an in-process participant receives, in order, on one bounded channel: media is dropped when
/// the channel is nearly full (a reserve is kept for the track events), and a participant whose
/// channel has no room for a track event is removed (its channel ends) rather than left inconsistent.
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
    /// An in-process participant sends a data packet to the room (reliable; e.g. transcriptions).
    LocalData(Pid, Box<proto::DataPacket>),
    /// Remove `identity` from `room` (the server ends its session): a client is told why (a
    /// LeaveRequest, PARTICIPANT_REMOVED) and its session closed. Replies whether it was there.
    Remove {
        room: String,
        identity: String,
        reason: &'static str,
        reply: oneshot::Sender<bool>,
    },
    /// The live `ParticipantInfo` of every visible participant of `room` (None: the room is not
    /// open on this worker). Server APIs read participants here, not from a copy.
    Participants {
        room: String,
        reply: oneshot::Sender<Option<Vec<proto::ParticipantInfo>>>,
    },
    /// A server-side change of `room` or one of its participants (RoomService); everyone
    /// concerned is told as the LiveKit protocol says (see [`admin`]).
    Admin {
        room: String,
        op: AdminOp,
        reply: oneshot::Sender<Result<AdminOk, AdminError>>,
    },
    /// A data packet from the server (no sender) to `room` (its destination identities, if any).
    /// Replies false when the room is not open here.
    ServerData {
        room: String,
        packet: Box<proto::DataPacket>,
        reliable: bool,
        reply: oneshot::Sender<bool>,
    },
    /// Close `room`: every participant is told (LeaveRequest, ROOM_DELETED; with `moved`:
    /// MIGRATION and the RECONNECT action, so SDKs join again, where the room lives now) and
    /// removed, which closes the room. Replies how many were removed (None: not open here).
    CloseRoom {
        room: String,
        reason: &'static str,
        moved: bool,
        reply: oneshot::Sender<Option<usize>>,
    },
}

/// One RTP packet an in-process participant publishes on one of its tracks (`WorkerHandle::media`).
pub struct LocalPacket {
    pub pid: Pid,
    pub track_sid: Arc<str>,
    pub rtp: rtc::rtp::Packet,
}

/// Packets of in-process publishers a worker buffers before refusing more (shared by its in-process
/// participants; ~2 s of ten Opus tracks).
pub const LOCAL_MEDIA_QUEUE: usize = 1024;

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
    UpdateMetadata(proto::UpdateParticipantMetadata),
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
    /// RoomService.MutePublishedTrack may unmute (LiveKit's `room.enable_remote_unmute`).
    pub remote_unmute: bool,
}

#[derive(Clone)]
pub struct WorkerHandle {
    /// Control: joins, signal requests, leaves, publishing (senders wait for room: never lost).
    pub tx: mpsc::Sender<Cmd>,
    /// In-process participants' RTP (`try_send`: a full queue refuses the packet, never blocks).
    pub media: mpsc::Sender<LocalPacket>,
    pub udp_addr: SocketAddr,
}

/// Most media workers one server runs (the worker index is encoded in one ufrag character).
pub const MAX_WORKERS: usize = 32;

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

#[cfg(test)]
mod tests;

/// The worker driven without threads or sockets' I/O, for `crate::fuzzing`.
#[doc(hidden)]
pub mod fuzz;
