//! Membership: joining a room (opening it if needed), leaving it, and what the other participants are
//! told; the per-session signal queue (`send_out`).

use super::*;
use crate::metrics::Metrics;
use parlor_signaling::protocol::{leave_response, proto};
use proto::signal_response::Message as Resp;
use std::collections::HashMap;
use std::time::Instant;
use tracing::{info, warn};

/// Slots of each session queue kept for the worker's last words to a client that does not keep up
/// (a LeaveRequest and the close).
const SESSION_QUEUE_RESERVE: usize = 2;

/// Slots of an in-process participant's channel that media may not take: its track events
/// (`TrackAdded`, `TrackRemoved`) always find room unless it stopped reading altogether.
const LOCAL_EVENT_RESERVE: usize = 16;

/// May a media packet go into this in-process participant's channel (without eating into the room
/// kept for its track events)?
pub(super) fn local_media_has_room(local: &mpsc::Sender<LocalMedia>) -> bool {
    local.capacity() > LOCAL_EVENT_RESERVE.min(local.max_capacity() / 2)
}

/// Deliver a track event to in-process participant `pid`. With no room left even in the reserve the
/// participant cannot be kept consistent: it is queued for disconnection at the end of this wake-up
/// (`disconnect_overflowed`; its channel then ends) and false is returned.
pub(super) fn send_local_event(
    overflowed: &mut Vec<Pid>,
    pid: Pid,
    local: &mpsc::Sender<LocalMedia>,
    event: LocalMedia,
) -> bool {
    match local.try_send(event) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            if !overflowed.contains(&pid) {
                warn!(
                    participant = pid,
                    "in-process participant's channel full: disconnecting it"
                );
                overflowed.push(pid);
            }
            false
        }
        // Gone: housekeeping removes it.
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

impl Worker {
    pub(super) fn join(&mut self, req: JoinReq, now: Instant) -> Result<Joined, JoinError> {
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
                self.remove_participant(dup, now);
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
            // A stored room opens under its sid and limit (never above the configured one).
            let cap = self.cfg.max_participants;
            let (sid, max_participants) = match &req.open_as {
                Some(s) if s.max_participants > 0 => (s.sid.clone(), s.max_participants.min(cap)),
                Some(s) => (s.sid.clone(), cap),
                None => (crate::ids::new_id("RM_"), cap),
            };
            let departure_timeout = match &req.open_as {
                Some(s) if s.departure_timeout_secs > 0 => {
                    Duration::from_secs(u64::from(s.departure_timeout_secs))
                }
                _ => self.cfg.empty_timeout,
            };
            let metadata = req
                .open_as
                .as_ref()
                .map(|s| s.metadata.clone())
                .unwrap_or_default();
            self.rooms.insert(
                req.room.clone(),
                Room {
                    name: req.room.clone(),
                    sid,
                    created_at_ms: now_ms,
                    max_participants,
                    participants: Vec::new(),
                    tracks: FastMap::default(),
                    // Empty until the join below completes (if it fails, the room still closes).
                    empty_since: Some(now),
                    had_member: false,
                    departure_timeout,
                    metadata,
                    last_speakers: Vec::new(),
                },
            );
            Metrics::inc(&self.metrics.rooms);
            self.emit_room_created(&req.room);
        }
        // Hidden participants (a recorder) and agents neither count toward the limit nor are
        // refused by it (LiveKit's dependent participants).
        let parts = &self.parts;
        let (count, max) = self
            .rooms
            .get(&req.room)
            .map_or((0, self.cfg.max_participants), |r| {
                let members = r.participants.iter();
                let members = members.filter(|p| parts.get(p).is_some_and(|q| !q.dependent()));
                (members.count(), r.max_participants)
            });
        let agent = req.kind == proto::participant_info::Kind::Agent;
        if !req.hidden && !agent && count >= max {
            return Err(JoinError::RoomFull);
        }
        let pid = self.next_id;
        self.next_id += 1;
        let (pub_pc, sub_pc) = if req.local.is_some() {
            (NO_PC, NO_PC)
        } else if req.single_pc {
            let pc = self.new_pc(pid, Role::Both, now)?;
            (pc, pc)
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
            attributes: req.attributes,
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
            subs: FastMap::default(),
            sub_offer_id: 0,
            sub_awaiting_answer: false,
            sub_needs_offer: false,
            single_pc: req.single_pc && req.local.is_none(),
            recv_slots: Vec::new(),
            reneg_asked: None,
            data_seq: 0,
            level: None,
            kind: req.kind,
            local: req.local,
            hidden: req.hidden,
        };
        info!(room = %req.room, participant = %p.identity, sid = %p.sid, "participant joined");
        self.parts.insert(pid, p);
        Metrics::inc(&self.metrics.participants);
        self.sfu.worker_participants(self.index, 1);
        let room = self
            .rooms
            .get_mut(&req.room)
            .ok_or(JoinError::ShuttingDown)?;
        room.participants.push(pid);
        // An agent keeps a room open while it waits for its first member; once members came and
        // all left, agents alone do not.
        if !req.hidden && (!agent || !room.had_member) {
            room.empty_since = None;
        }
        if !req.hidden && !agent {
            room.had_member = true;
        }
        let room_info = room.info(self.cfg.empty_timeout);
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
        self.emit_participant_joined(pid);
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
            if self
                .parts
                .get(&pid)
                .is_some_and(|p| !p.subs.is_empty() && !p.single_pc)
            {
                self.negotiate_subscriber(pid, now);
            }
        }
        self.publish_snapshot(&req.room);
        Ok(Joined { pid, join })
    }

    /// Send the participant's current info to everyone else in its room.
    pub(super) fn broadcast_participant(&mut self, pid: Pid) {
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

    /// Queue `out` for a client's signal session. A queue down to its reserve means the client does
    /// not keep up: it is disconnected at the end of this wake-up (`disconnect_overflowed`) rather
    /// than left with gaps in what it was told (a lost subscriber offer would stall its negotiation
    /// for good). Never blocks the worker.
    pub(super) fn send_out(&mut self, pid: Pid, out: Out) {
        // In-process participants get media on their own channel; signal messages are for clients.
        let Some(p) = self.parts.get(&pid).filter(|p| p.local.is_none()) else {
            return;
        };
        if p.events.is_closed() {
            // The session ended; its Leave is on the way (or housekeeping notices the closed channel).
            return;
        }
        if p.events.capacity() <= SESSION_QUEUE_RESERVE {
            if !self.overflowed.contains(&pid) {
                warn!(participant = %p.identity, room = %p.room, "signal queue full: disconnecting the participant");
                Metrics::inc(&self.metrics.signal_errors);
                self.overflowed.push(pid);
            }
            return;
        }
        // Only the worker sends on a joined session's queue, so the slot checked above is there.
        let _ = p.events.try_send(out);
    }

    /// Disconnect the participants whose queue overflowed: a client's LeaveRequest saying why and the
    /// close go into its signal queue's reserved slots (the session delivers them after what is
    /// queued, if the client reads at all); then the participant is removed and its queue's sender
    /// dropped (for an in-process participant, `recv` returns None).
    pub(super) fn disconnect_overflowed(&mut self, now: Instant) {
        // Removing one tells the others, which may overflow another: drain until none is left.
        while let Some(pid) = self.overflowed.pop() {
            self.evict(
                pid,
                proto::DisconnectReason::SignalClose,
                "signal queue overflow: the client did not keep up",
                now,
            );
        }
    }

    /// The server ends a participant's session: a client gets a LeaveRequest (`why`, disconnect)
    /// and a close with `reason` (`try_send`: an overflowing queue keeps slots for them), then the
    /// participant is removed as if it had left.
    fn evict(
        &mut self,
        pid: Pid,
        why: proto::DisconnectReason,
        reason: &'static str,
        now: Instant,
    ) {
        let disconnect = proto::leave_request::Action::Disconnect;
        self.evict_with(pid, why, disconnect, reason, now);
    }

    /// As [`Self::evict`], the client told to take `action` (disconnect, or reconnect elsewhere).
    fn evict_with(
        &mut self,
        pid: Pid,
        why: proto::DisconnectReason,
        action: proto::leave_request::Action,
        reason: &'static str,
        now: Instant,
    ) {
        if let Some(p) = self.parts.get(&pid).filter(|p| p.local.is_none()) {
            let _ = p.events.try_send(sig(leave_response(why, action)));
            let _ = p.events.try_send(Out::Close(reason));
        }
        self.remove_participant(pid, now);
    }

    /// The server removes `identity` from `room`: a client gets a LeaveRequest
    /// (PARTICIPANT_REMOVED, disconnect) and a close with `reason`, then it is removed like a leave.
    pub(super) fn remove_identity(
        &mut self,
        room: &str,
        identity: &str,
        reason: &'static str,
        now: Instant,
    ) -> bool {
        let Some(r) = self.rooms.get(room) else {
            return false;
        };
        let Some(pid) = r
            .participants
            .iter()
            .copied()
            .find(|p| self.parts.get(p).is_some_and(|x| x.identity == identity))
        else {
            return false;
        };
        info!(
            room,
            participant = identity,
            reason,
            "participant removed by the server"
        );
        self.evict(
            pid,
            proto::DisconnectReason::ParticipantRemoved,
            reason,
            now,
        );
        true
    }

    /// Every visible participant of `room`, as clients see them (None: not open on this worker).
    pub(super) fn room_participant_infos(&self, room: &str) -> Option<Vec<proto::ParticipantInfo>> {
        let r = self.rooms.get(room)?;
        Some(
            r.participants
                .iter()
                .filter(|pid| self.parts.get(pid).is_some_and(|p| !p.hidden))
                .filter_map(|&pid| self.participant_info(pid))
                .collect(),
        )
    }

    /// Remove everyone from `room` (told ROOM_DELETED); the last removal closes the room.
    pub(super) fn close_room(
        &mut self,
        room: &str,
        reason: &'static str,
        moved: bool,
        now: Instant,
    ) -> Option<usize> {
        let pids: Vec<Pid> = self.rooms.get(room)?.participants.to_vec();
        info!(
            room,
            participants = pids.len(),
            reason,
            "room closed by the server"
        );
        let mut told = 0;
        for &pid in &pids {
            if self.parts.get(&pid).is_some_and(|p| !p.hidden) {
                let (why, action) = if moved {
                    use proto::leave_request::Action;
                    (proto::DisconnectReason::Migration, Action::Reconnect)
                } else {
                    use proto::leave_request::Action;
                    (proto::DisconnectReason::RoomDeleted, Action::Disconnect)
                };
                self.evict_with(pid, why, action, reason, now);
                told += 1;
            }
        }
        // Closed now, not after the empty-room grace period.
        self.shut_room(room, now);
        Some(told)
    }

    /// Close `room` at once: whoever is still in it (hidden participants such as a recorder) is
    /// removed (their media channel closes, their signal to finish), then the room goes and
    /// `RoomClosed` is emitted.
    pub(super) fn shut_room(&mut self, name: &str, now: Instant) {
        let left: Vec<Pid> = self
            .rooms
            .get(name)
            .map(|r| r.participants.clone())
            .unwrap_or_default();
        for pid in left {
            self.remove_participant(pid, now);
        }
        let Some(room) = self.rooms.remove(name) else {
            return;
        };
        Metrics::dec(&self.metrics.rooms);
        self.sfu.remove_room(name);
        self.sfu.release_room(name, self.index);
        self.emit_room_closed(&room);
    }

    /// Has the participant's session gone without a Leave (its channel's receiver dropped)? For a
    /// client, its signal queue; for an in-process participant, its media channel.
    pub(super) fn session_closed(p: &Participant) -> bool {
        match &p.local {
            Some(local) => local.is_closed(),
            None => p.events.is_closed(),
        }
    }

    pub(super) fn remove_participant(&mut self, pid: Pid, now: Instant) {
        // Its tracks' TrackUnpublished go out while they are still here; its info is for ParticipantLeft.
        let left_info = self.departing(pid);
        let Some(mut p) = self.parts.remove(&pid) else {
            return;
        };
        Metrics::dec(&self.metrics.participants);
        self.sfu.worker_participants(self.index, -1);
        let now_ms = self.now_ms();
        self.drop_pc(p.pub_pc);
        if p.sub_pc != p.pub_pc {
            self.drop_pc(p.sub_pc);
        }
        let room_name = p.room.clone();
        info!(room = %room_name, participant = %p.identity, "participant left");
        // Unpublish its tracks: subscribers drop them and renegotiate.
        let mut affected: Vec<Pid> = Vec::new();
        for sid in &p.tracks {
            affected.extend(self.detach_track(&room_name, sid));
        }
        if let Some(room) = self.rooms.get_mut(&room_name) {
            room.participants.retain(|&x| x != pid);
            for t in room.tracks.values_mut() {
                t.subscribers.retain(|&x| x != pid);
            }
            // Hidden participants (a recorder) do not keep a room open, nor do agents once its
            // members have left.
            let parts = &self.parts;
            let had_member = room.had_member;
            if room.participants.iter().all(|x| {
                parts
                    .get(x)
                    .is_none_or(|q| q.hidden || (had_member && q.dependent()))
            }) {
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
        self.emit_participant_left(&room_name, &p.identity, left_info, now_ms);
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
}
