//! SFU core: rooms, participants, tracks and RTP forwarding.
//!
//! This module's public surface (`SfuHandle`, `SfuEvent`, `ParticipantSnapshot`) is what the product
//! APIs use: live participant state per room and a stream of lifecycle events.

pub mod forwarder;
pub mod peer;
pub mod tcp;
pub mod worker;

use serde::Serialize;
use tokio::sync::broadcast;

/// Live state of one participant, as the product APIs see it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
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

/// Room lifecycle events (broadcast; slow receivers may lag and miss events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SfuEvent {
    RoomCreated {
        room: String,
        at_ms: i64,
    },
    ParticipantJoined {
        room: String,
        identity: String,
        at_ms: i64,
    },
    /// The participant's media transport connected (first time).
    MediaConnected {
        room: String,
        identity: String,
        at_ms: i64,
    },
    ParticipantLeft {
        room: String,
        identity: String,
        at_ms: i64,
    },
    RoomClosed {
        room: String,
        at_ms: i64,
    },
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
}

impl Default for SfuHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl SfuHandle {
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(1024);
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

    pub fn room_count(&self) -> usize {
        self.inner.rooms.read().map(|r| r.len()).unwrap_or(0)
    }
}
