//! SFU core: rooms, participants, tracks and RTP forwarding.
//!
//! This module's public surface (`SfuHandle`, `SfuEvent`, `ParticipantSnapshot`) is what the product
//! APIs use: live participant state per room and a stream of lifecycle events.

pub mod egress;
pub mod forwarder;
pub mod layers;
pub mod local;
pub mod peer;
pub mod recvmmsg;
pub mod sendmmsg;
pub mod speakers;
pub mod stun_check;
pub mod tcp;
pub mod worker;

use parlor_signaling::protocol::proto;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Events the broadcast channel holds for a receiver that has not read them yet; one that falls
/// further behind loses the oldest (`RecvError::Lagged`). A join or leave is a handful of events,
/// so this covers hundreds of participants coming and going at once.
pub const EVENT_CHANNEL_CAPACITY: usize = 4096;

/// Live state of one participant, as the product APIs see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ParticipantSnapshot {
    pub identity: String,
    pub sid: String,
    pub name: String,
    /// Unix ms when the participant joined the room.
    pub joined_at_ms: i64,
    /// Unix ms when its media transport connected (ICE+DTLS), if it has.
    pub media_connected_at_ms: Option<i64>,
    /// Publishes an (unmuted) audio track.
    pub audio: bool,
    /// Publishes an (unmuted) video track.
    pub video: bool,
}

/// Room lifecycle events (broadcast; slow receivers may lag and miss events). Emitted by the media
/// worker on control transitions only (never per packet); each but `MediaConnected` carries
/// [`EventInfo`], LiveKit's view of what it is about (what LiveKit's webhooks send). Hidden
/// participants (a recorder) produce none of the participant or track events.
#[derive(Debug, Clone, PartialEq)]
pub enum SfuEvent {
    RoomCreated {
        room: String,
        at_ms: i64,
        info: Box<EventInfo>,
    },
    ParticipantJoined {
        room: String,
        identity: String,
        at_ms: i64,
        info: Box<EventInfo>,
    },
    /// The participant's media transport connected (first time).
    MediaConnected {
        room: String,
        identity: String,
        at_ms: i64,
    },
    /// After the `TrackUnpublished` of each of its tracks.
    ParticipantLeft {
        room: String,
        identity: String,
        at_ms: i64,
        info: Box<EventInfo>,
    },
    RoomClosed {
        room: String,
        at_ms: i64,
        info: Box<EventInfo>,
    },
    /// A track of `identity` is published: its media arrived (or an in-process participant
    /// published it) and the room was told.
    TrackPublished {
        room: String,
        identity: String,
        at_ms: i64,
        info: Box<EventInfo>,
    },
    /// A published track of `identity` is gone (unpublished, or its publisher is leaving).
    TrackUnpublished {
        room: String,
        identity: String,
        at_ms: i64,
        info: Box<EventInfo>,
    },
}

/// LiveKit's view of what an [`SfuEvent`] is about, as of the event: the room (`sid`, name,
/// creation time, counts of visible participants), the participant (its full info for joins and
/// leaves, `sid` + identity for track events) and the track. Protobuf types of `livekit-protocol`,
/// so a consumer can put them straight into a `livekit.WebhookEvent`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventInfo {
    pub room: proto::Room,
    pub participant: Option<proto::ParticipantInfo>,
    pub track: Option<proto::TrackInfo>,
}

/// Handle to the SFU, cloneable, held in `AppState`.
#[derive(Clone)]
pub struct SfuHandle {
    events: broadcast::Sender<SfuEvent>,
    inner: std::sync::Arc<SfuShared>,
}

#[derive(Default)]
struct SfuShared {
    /// Room name -> participants. Written only by room actors on join/leave/publish (not per packet).
    rooms: std::sync::RwLock<std::collections::HashMap<String, Vec<ParticipantSnapshot>>>,
    /// Which media worker owns each open room (control path only: joins and room closes).
    placement: std::sync::Mutex<Placement>,
}

#[derive(Default)]
struct Placement {
    /// Room name -> index of the media worker that owns it.
    rooms: std::collections::HashMap<String, usize>,
    /// Participants per worker (the load measure new rooms are balanced on).
    participants: Vec<usize>,
}

/// Why a room could not be placed on a media worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    #[error("too many rooms on this server")]
    TooManyRooms,
    #[error("no media worker")]
    NoWorker,
}

impl Placement {
    fn ensure(&mut self, workers: usize) {
        if self.participants.len() < workers {
            self.participants.resize(workers, 0);
        }
    }
}

impl Default for SfuHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl SfuHandle {
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(EVENT_CHANNEL_CAPACITY);
        SfuHandle {
            events,
            inner: Default::default(),
        }
    }

    pub fn subscribe_events(&self) -> broadcast::Receiver<SfuEvent> {
        self.events.subscribe()
    }

    /// Current participants of `room` (empty if the room is not open).
    pub fn participants(&self, room: &str) -> Vec<ParticipantSnapshot> {
        self.inner
            .rooms
            .read()
            .map(|r| r.get(room).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Publish a lifecycle event (used by the media worker).
    #[doc(hidden)]
    pub fn emit(&self, ev: SfuEvent) {
        let _ = self.events.send(ev);
    }

    pub(crate) fn set_room(&self, room: &str, participants: Vec<ParticipantSnapshot>) {
        if let Ok(mut r) = self.inner.rooms.write() {
            r.insert(room.to_string(), participants);
        }
    }

    pub(crate) fn remove_room(&self, room: &str) {
        if let Ok(mut r) = self.inner.rooms.write() {
            r.remove(room);
        }
    }

    /// Names of open rooms.
    pub fn rooms(&self) -> Vec<String> {
        self.inner
            .rooms
            .read()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The media worker that owns `room`; a room not open yet goes to the least-loaded of `workers`
    /// workers (fewest participants, then fewest rooms). At most `max_rooms` rooms are placed.
    pub fn place_room(
        &self,
        room: &str,
        workers: usize,
        max_rooms: usize,
    ) -> Result<usize, PlaceError> {
        if workers == 0 {
            return Err(PlaceError::NoWorker);
        }
        let mut p = self.placement();
        p.ensure(workers);
        if let Some(&w) = p.rooms.get(room) {
            if w < workers {
                return Ok(w);
            }
        }
        if p.rooms.len() >= max_rooms {
            return Err(PlaceError::TooManyRooms);
        }
        // Fewest participants, then fewest rooms (counted here: placing is rare, rooms ≤ max_rooms).
        let w = (0..workers)
            .min_by_key(|&i| {
                (
                    p.participants[i],
                    p.rooms.values().filter(|&&o| o == i).count(),
                    i,
                )
            })
            .unwrap_or(0);
        p.rooms.insert(room.to_string(), w);
        Ok(w)
    }

    /// Worker `w` is about to open `room`: allowed if the room is placed on `w` or not placed at all
    /// (then it is placed on `w`). False means another worker owns it (the join must be re-routed).
    pub(crate) fn claim_room(&self, room: &str, w: usize) -> bool {
        let mut p = self.placement();
        p.ensure(w + 1);
        match p.rooms.get(room) {
            Some(&owner) => owner == w,
            None => {
                p.rooms.insert(room.to_string(), w);
                true
            }
        }
    }

    /// Worker `w` closed `room`.
    pub(crate) fn release_room(&self, room: &str, w: usize) {
        let mut p = self.placement();
        if p.rooms.get(room) == Some(&w) {
            p.rooms.remove(room);
        }
    }

    /// Worker `w` gained (`+1`) or lost (`-1`) a participant.
    pub(crate) fn worker_participants(&self, w: usize, delta: isize) {
        let mut p = self.placement();
        p.ensure(w + 1);
        p.participants[w] = p.participants[w].saturating_add_signed(delta);
    }

    /// Worker owning `room`, if it is placed.
    pub fn room_worker(&self, room: &str) -> Option<usize> {
        self.placement().rooms.get(room).copied()
    }

    fn placement(&self) -> std::sync::MutexGuard<'_, Placement> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts/removes).
        self.inner
            .placement
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub fn room_count(&self) -> usize {
        self.inner.rooms.read().map(|r| r.len()).unwrap_or(0)
    }
}

/// Remove `identity` from `room` on the worker that owns it (the server ends that participant's
/// session, telling a client why). False when the room or the participant is not there.
pub async fn remove_participant(
    sfu: &SfuHandle,
    workers: &[worker::WorkerHandle],
    room: &str,
    identity: &str,
    reason: &'static str,
) -> bool {
    let Some(w) = sfu.room_worker(room).and_then(|i| workers.get(i)) else {
        return false;
    };
    let (reply, rx) = tokio::sync::oneshot::channel();
    let cmd = worker::Cmd::Remove {
        room: room.to_string(),
        identity: identity.to_string(),
        reason,
        reply,
    };
    if w.tx.send(cmd).await.is_err() {
        return false;
    }
    rx.await.unwrap_or(false)
}

/// The live participants of `room` from the worker that owns it (None: the room is not open).
pub async fn room_participants(
    sfu: &SfuHandle,
    workers: &[worker::WorkerHandle],
    room: &str,
) -> Option<Vec<parlor_signaling::protocol::proto::ParticipantInfo>> {
    let w = sfu.room_worker(room).and_then(|i| workers.get(i))?;
    let (reply, rx) = tokio::sync::oneshot::channel();
    let cmd = worker::Cmd::Participants {
        room: room.to_string(),
        reply,
    };
    w.tx.send(cmd).await.ok()?;
    rx.await.ok().flatten()
}

/// Apply a server-side change to `room` on the worker that owns it.
pub async fn room_admin(
    sfu: &SfuHandle,
    workers: &[worker::WorkerHandle],
    room: &str,
    op: worker::AdminOp,
) -> Result<worker::AdminOk, worker::AdminError> {
    let w = sfu
        .room_worker(room)
        .and_then(|i| workers.get(i))
        .ok_or(worker::AdminError::NoRoom)?;
    let (reply, rx) = tokio::sync::oneshot::channel();
    let cmd = worker::Cmd::Admin {
        room: room.to_string(),
        op,
        reply,
    };
    w.tx.send(cmd)
        .await
        .map_err(|_| worker::AdminError::NoRoom)?;
    rx.await.unwrap_or(Err(worker::AdminError::NoRoom))
}

/// Send a server data packet to `room` on the worker that owns it (false: the room is not open).
pub async fn send_server_data(
    sfu: &SfuHandle,
    workers: &[worker::WorkerHandle],
    room: &str,
    packet: parlor_signaling::protocol::proto::DataPacket,
    reliable: bool,
) -> bool {
    let Some(w) = sfu.room_worker(room).and_then(|i| workers.get(i)) else {
        return false;
    };
    let (reply, rx) = tokio::sync::oneshot::channel();
    let cmd = worker::Cmd::ServerData {
        room: room.to_string(),
        packet: Box::new(packet),
        reliable,
        reply,
    };
    if w.tx.send(cmd).await.is_err() {
        return false;
    }
    rx.await.unwrap_or(false)
}

/// Close `room` on the worker that owns it: everyone is told why and removed. Returns how many
/// were removed (None: the room is not open).
pub async fn close_room(
    sfu: &SfuHandle,
    workers: &[worker::WorkerHandle],
    room: &str,
    reason: &'static str,
) -> Option<usize> {
    close(sfu, workers, room, reason, false).await
}

/// Multi-node mode: `room` lives on another node now (this node lost its lease while cut off from
/// Redis). Close it here, its clients told to reconnect (LeaveRequest MIGRATION, RECONNECT): they
/// join again through the cluster, where the room lives now.
pub async fn close_moved_room(
    sfu: &SfuHandle,
    workers: &[worker::WorkerHandle],
    room: &str,
) -> Option<usize> {
    close(sfu, workers, room, "room moved to another node", true).await
}

async fn close(
    sfu: &SfuHandle,
    workers: &[worker::WorkerHandle],
    room: &str,
    reason: &'static str,
    moved: bool,
) -> Option<usize> {
    let w = sfu.room_worker(room).and_then(|i| workers.get(i))?;
    let (reply, rx) = tokio::sync::oneshot::channel();
    let cmd = worker::Cmd::CloseRoom {
        room: room.to_string(),
        reason,
        moved,
        reply,
    };
    w.tx.send(cmd).await.ok()?;
    rx.await.ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_go_to_the_least_loaded_worker_and_stay_there() {
        let sfu = SfuHandle::new();
        assert_eq!(sfu.place_room("a", 2, 10), Ok(0));
        sfu.worker_participants(0, 1);
        assert_eq!(sfu.place_room("b", 2, 10), Ok(1));
        sfu.worker_participants(1, 1);
        sfu.worker_participants(1, 1);
        // Same room, same worker, whatever the load.
        assert_eq!(sfu.place_room("b", 2, 10), Ok(1));
        assert_eq!(sfu.place_room("c", 2, 10), Ok(0));
        assert_eq!(sfu.room_worker("c"), Some(0));
        assert_eq!(sfu.place_room("d", 2, 3), Err(PlaceError::TooManyRooms));
        assert_eq!(sfu.place_room("d", 0, 3), Err(PlaceError::NoWorker));
    }

    #[test]
    fn claim_and_release_keep_one_owner_per_room() {
        let sfu = SfuHandle::new();
        assert_eq!(sfu.place_room("r", 2, 10), Ok(0));
        // Worker 1 may not open a room placed on worker 0.
        assert!(!sfu.claim_room("r", 1));
        assert!(sfu.claim_room("r", 0));
        // Only the owner's release counts.
        sfu.release_room("r", 1);
        assert_eq!(sfu.room_worker("r"), Some(0));
        sfu.release_room("r", 0);
        assert_eq!(sfu.room_worker("r"), None);
        // A late join reaching worker 0 after the close re-places the room there...
        assert!(sfu.claim_room("r", 0));
        // ...so routing follows it.
        assert_eq!(sfu.place_room("r", 2, 10), Ok(0));
    }
}
