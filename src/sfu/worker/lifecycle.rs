//! Lifecycle events: the [`SfuEvent`]s the worker emits on control transitions (a room opens or
//! closes, a participant joins or leaves, a track is published or unpublished), each with its
//! [`EventInfo`] — LiveKit's `Room` / `ParticipantInfo` / `TrackInfo` as of the event — built here
//! from the room model. Hidden participants (a recorder) produce no participant or track events.
//! Never on the packet path.

use super::*;
use crate::sfu::{EventInfo, SfuEvent};
use parlor_signaling::protocol::proto;

impl Worker {
    /// LiveKit's `Room` for `room` as it is now (as clients see it), with visible participants
    /// only in the counts.
    fn room_proto(&self, room: &Room) -> proto::Room {
        let visible: Vec<&Participant> = room
            .participants
            .iter()
            .filter_map(|pid| self.parts.get(pid))
            .filter(|p| !p.hidden)
            .collect();
        proto::Room {
            num_participants: visible.len() as u32,
            num_publishers: visible.iter().filter(|p| !p.tracks.is_empty()).count() as u32,
            ..room.info(self.cfg.empty_timeout)
        }
    }

    fn room_proto_of(&self, name: &str) -> proto::Room {
        match self.rooms.get(name) {
            Some(r) => self.room_proto(r),
            None => proto::Room {
                name: name.to_string(),
                ..Default::default()
            },
        }
    }

    /// `room` was just opened.
    pub(super) fn emit_room_created(&self, room: &str) {
        self.sfu.emit(SfuEvent::RoomCreated {
            room: room.to_string(),
            at_ms: self.now_ms(),
            info: Box::new(EventInfo {
                room: self.room_proto_of(room),
                ..Default::default()
            }),
        });
    }

    /// `room` is closed (already removed from the worker's rooms).
    pub(super) fn emit_room_closed(&self, room: &Room) {
        self.sfu.emit(SfuEvent::RoomClosed {
            room: room.name.clone(),
            at_ms: self.now_ms(),
            info: Box::new(EventInfo {
                room: self.room_proto(room),
                ..Default::default()
            }),
        });
    }

    /// `pid` joined its room (nothing for a hidden participant).
    pub(super) fn emit_participant_joined(&self, pid: Pid) {
        let Some(p) = self.parts.get(&pid).filter(|p| !p.hidden) else {
            return;
        };
        self.sfu.emit(SfuEvent::ParticipantJoined {
            room: p.room.clone(),
            identity: p.identity.clone(),
            at_ms: self.now_ms(),
            info: Box::new(EventInfo {
                room: self.room_proto_of(&p.room),
                participant: self.participant_info(pid),
                track: None,
            }),
        });
    }

    /// Track `sid` of `owner` is published (it is in the room's tracks).
    pub(super) fn emit_track_published(&self, owner: Pid, sid: &str) {
        self.emit_track(owner, sid, true);
    }

    /// Track `sid` of `owner` is being unpublished: call while it is still in the room's tracks
    /// (its info is read from there). Every path that removes a published track calls this.
    pub(super) fn emit_track_unpublished(&self, owner: Pid, sid: &str) {
        self.emit_track(owner, sid, false);
    }

    fn emit_track(&self, owner: Pid, sid: &str, published: bool) {
        let Some(p) = self.parts.get(&owner).filter(|p| !p.hidden) else {
            return;
        };
        let Some(room) = self.rooms.get(&p.room) else {
            return;
        };
        let Some(track) = room.tracks.get(sid) else {
            return;
        };
        let info = Box::new(EventInfo {
            room: self.room_proto(room),
            // What LiveKit's track webhooks say of the publisher, and its kind (the agents
            // dispatcher gives no publisher job for an agent's own tracks).
            participant: Some(proto::ParticipantInfo {
                sid: p.sid.clone(),
                identity: p.identity.clone(),
                kind: p.kind as i32,
                ..Default::default()
            }),
            track: Some(track.info.clone()),
        });
        let (room, identity, at_ms) = (p.room.clone(), p.identity.clone(), self.now_ms());
        self.sfu.emit(if published {
            SfuEvent::TrackPublished {
                room,
                identity,
                at_ms,
                info,
            }
        } else {
            SfuEvent::TrackUnpublished {
                room,
                identity,
                at_ms,
                info,
            }
        });
    }

    /// `pid` is about to be removed (still in the worker's state): each of its published tracks
    /// emits `TrackUnpublished` now, and its info is returned for the `ParticipantLeft` that
    /// follows (`emit_participant_left`). None for a hidden or unknown participant.
    pub(super) fn departing(&self, pid: Pid) -> Option<proto::ParticipantInfo> {
        let p = self.parts.get(&pid).filter(|p| !p.hidden)?;
        for sid in &p.tracks {
            self.emit_track_unpublished(pid, sid);
        }
        self.participant_info(pid)
    }

    /// The participant whose info `departing` returned has left `room` (removed from it).
    pub(super) fn emit_participant_left(
        &self,
        room: &str,
        identity: &str,
        info: Option<proto::ParticipantInfo>,
        at_ms: i64,
    ) {
        let participant = info.map(|mut i| {
            i.state = proto::participant_info::State::Disconnected as i32;
            // Its tracks went (TrackUnpublished) before it did.
            i.tracks.clear();
            i.is_publisher = false;
            i
        });
        self.sfu.emit(SfuEvent::ParticipantLeft {
            room: room.to_string(),
            identity: identity.to_string(),
            at_ms,
            info: Box::new(EventInfo {
                room: self.room_proto_of(room),
                participant,
                track: None,
            }),
        });
    }
}
