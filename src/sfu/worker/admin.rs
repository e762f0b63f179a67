//! Server-side administration of a room (what LiveKit's RoomService asks of the worker that owns
//! it): a participant's name, metadata, attributes and permissions; muting one of its tracks;
//! subscriptions made or dropped by the server; the room's metadata; and unpublishing a track (a
//! publisher whose `canPublish` is revoked). Every change reaches the clients as the LiveKit
//! protocol says: a `ParticipantUpdate` to everyone (the participant included), a `MuteTrackRequest`
//! or `TrackUnpublishedResponse` to the publisher, a `RoomUpdate` to the room.

use super::*;
use parlor_signaling::protocol::proto;
use std::collections::HashMap;
use std::time::Instant;
use tracing::info;

/// One administrative change of a room, addressed by room (the `Cmd::Admin`) and identity.
#[derive(Debug)]
pub enum AdminOp {
    /// None / empty: unchanged. An attribute with an empty value is deleted. A permission replaces
    /// the participant's: revoking `can_publish` unpublishes its tracks, revoking `can_subscribe`
    /// drops its subscriptions.
    UpdateParticipant {
        identity: String,
        name: Option<String>,
        metadata: Option<String>,
        attributes: HashMap<String, String>,
        permission: Option<proto::ParticipantPermission>,
    },
    /// Mute (or, when the server allows remote unmute, unmute) one published track.
    MuteTrack {
        identity: String,
        track_sid: String,
        muted: bool,
    },
    /// Subscribe `identity` to (or unsubscribe it from) these tracks.
    UpdateSubscriptions {
        identity: String,
        track_sids: Vec<String>,
        subscribe: bool,
    },
    RoomMetadata {
        metadata: String,
    },
    /// Read the room as clients see it (no change).
    Info,
}

/// What an [`AdminOp`] answers.
#[derive(Debug)]
pub enum AdminOk {
    Participant(Box<proto::ParticipantInfo>),
    Track(Box<proto::TrackInfo>),
    Room(Box<proto::Room>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    #[error("the room is not open")]
    NoRoom,
    #[error("the participant is not in the room")]
    NoParticipant,
    #[error("the participant has no such track")]
    NoTrack,
    #[error("{0}")]
    NotAllowed(&'static str),
}

impl Worker {
    pub(super) fn admin(
        &mut self,
        room: &str,
        op: AdminOp,
        now: Instant,
    ) -> Result<AdminOk, AdminError> {
        if !self.rooms.contains_key(room) {
            return Err(AdminError::NoRoom);
        }
        match op {
            AdminOp::UpdateParticipant {
                identity,
                name,
                metadata,
                attributes,
                permission,
            } => {
                let pid = self.visible_pid(room, &identity)?;
                self.update_participant(pid, name, metadata, attributes, permission, now)
            }
            AdminOp::MuteTrack {
                identity,
                track_sid,
                muted,
            } => {
                let pid = self.visible_pid(room, &identity)?;
                self.mute_track(pid, room, &track_sid, muted)
            }
            AdminOp::UpdateSubscriptions {
                identity,
                track_sids,
                subscribe,
            } => {
                let pid = self.visible_pid(room, &identity)?;
                for sid in &track_sids {
                    if subscribe {
                        self.subscribe(pid, room, sid, now);
                    } else {
                        self.unsubscribe(pid, sid, now);
                    }
                }
                self.participant_info(pid)
                    .map(|i| AdminOk::Participant(Box::new(i)))
                    .ok_or(AdminError::NoParticipant)
            }
            AdminOp::Info => {
                let r = self.rooms.get(room).ok_or(AdminError::NoRoom)?;
                Ok(AdminOk::Room(Box::new(r.info(self.cfg.empty_timeout))))
            }
            AdminOp::RoomMetadata { metadata } => {
                let r = self.rooms.get_mut(room).ok_or(AdminError::NoRoom)?;
                r.metadata = metadata;
                let info = r.info(self.cfg.empty_timeout);
                let pids: Vec<Pid> = r.participants.clone();
                for pid in pids {
                    if self.parts.get(&pid).is_some_and(|p| !p.hidden) {
                        let update = proto::RoomUpdate {
                            room: Some(info.clone()),
                        };
                        self.send_out(pid, sig(Resp::RoomUpdate(update)));
                    }
                }
                Ok(AdminOk::Room(Box::new(info)))
            }
        }
    }

    /// A participant changes its own name, metadata or attributes (`UpdateParticipantMetadata`;
    /// empty name/metadata: unchanged, as LiveKit): allowed with `canUpdateOwnMetadata`; answered
    /// with a `RequestResponse` for its request id, and seen by everyone as a ParticipantUpdate.
    pub(super) fn on_update_metadata(
        &mut self,
        pid: Pid,
        m: proto::UpdateParticipantMetadata,
        now: Instant,
    ) {
        use proto::request_response::Reason;
        let Some(p) = self.parts.get(&pid) else {
            return;
        };
        let attr_bytes: usize = m.attributes.iter().map(|(k, v)| k.len() + v.len()).sum();
        let (reason, message) = if !p.perms.can_update_metadata {
            (Reason::NotAllowed, "token does not allow updating metadata")
        } else if m.metadata.len() > 64 * 1024
            || m.name.len() > 1024
            || m.attributes.len() > 64
            || attr_bytes > 64 * 1024
        {
            (
                Reason::LimitExceeded,
                "metadata, name or attributes too large",
            )
        } else {
            let name = (!m.name.is_empty()).then_some(m.name);
            let metadata = (!m.metadata.is_empty()).then_some(m.metadata);
            let attributes = m.attributes.into_iter().collect();
            let _ = self.update_participant(pid, name, metadata, attributes, None, now);
            (Reason::Ok, "")
        };
        self.send_out(
            pid,
            sig(Resp::RequestResponse(proto::RequestResponse {
                request_id: m.request_id,
                reason: reason as i32,
                message: message.into(),
                ..Default::default()
            })),
        );
    }

    /// The visible participant `identity` of `room`.
    fn visible_pid(&self, room: &str, identity: &str) -> Result<Pid, AdminError> {
        let r = self.rooms.get(room).ok_or(AdminError::NoRoom)?;
        r.participants
            .iter()
            .copied()
            .find(|p| {
                self.parts
                    .get(p)
                    .is_some_and(|x| x.identity == identity && !x.hidden)
            })
            .ok_or(AdminError::NoParticipant)
    }

    fn update_participant(
        &mut self,
        pid: Pid,
        name: Option<String>,
        metadata: Option<String>,
        attributes: HashMap<String, String>,
        permission: Option<proto::ParticipantPermission>,
        now: Instant,
    ) -> Result<AdminOk, AdminError> {
        let p = self.parts.get_mut(&pid).ok_or(AdminError::NoParticipant)?;
        if let Some(n) = name {
            p.name = n;
        }
        if let Some(m) = metadata {
            p.metadata = m;
        }
        for (k, v) in attributes {
            if v.is_empty() {
                p.attributes.remove(&k);
            } else {
                p.attributes.insert(k, v);
            }
        }
        let room = p.room.clone();
        let mut revoked_publish = false;
        let mut revoked_subscribe = false;
        let mut granted_subscribe = false;
        if let Some(perm) = permission {
            revoked_publish = p.perms.can_publish && !perm.can_publish;
            revoked_subscribe = p.perms.can_subscribe && !perm.can_subscribe;
            granted_subscribe = !p.perms.can_subscribe && perm.can_subscribe;
            p.perms = Perms {
                can_publish: perm.can_publish,
                can_subscribe: perm.can_subscribe,
                can_publish_data: perm.can_publish_data,
                can_update_metadata: perm.can_update_metadata,
            };
            info!(
                room = %room,
                participant = %p.identity,
                can_publish = perm.can_publish,
                can_subscribe = perm.can_subscribe,
                can_publish_data = perm.can_publish_data,
                "permission changed by the server"
            );
        }
        if revoked_publish {
            p.pending.clear();
            let tracks = p.tracks.clone();
            for sid in tracks {
                self.unpublish_track(pid, &sid, now);
            }
        }
        if revoked_subscribe {
            let subs: Vec<String> = self
                .parts
                .get(&pid)
                .map(|p| p.subs.keys().cloned().collect())
                .unwrap_or_default();
            for sid in subs {
                self.unsubscribe(pid, &sid, now);
            }
        }
        if granted_subscribe && self.parts.get(&pid).is_some_and(|p| p.auto_subscribe) {
            let sids: Vec<String> = self
                .rooms
                .get(&room)
                .map(|r| r.tracks.keys().cloned().collect())
                .unwrap_or_default();
            for sid in sids {
                self.subscribe(pid, &room, &sid, now);
            }
        }
        let p = self.parts.get_mut(&pid).ok_or(AdminError::NoParticipant)?;
        p.version += 1;
        let info = self
            .participant_info(pid)
            .ok_or(AdminError::NoParticipant)?;
        // The participant itself learns it too (its SDK updates the local participant).
        self.send_out(
            pid,
            sig(Resp::Update(proto::ParticipantUpdate {
                participants: vec![info.clone()],
            })),
        );
        self.broadcast_participant(pid);
        self.publish_snapshot(&room);
        Ok(AdminOk::Participant(Box::new(info)))
    }

    fn mute_track(
        &mut self,
        pid: Pid,
        room: &str,
        track_sid: &str,
        muted: bool,
    ) -> Result<AdminOk, AdminError> {
        let p = self.parts.get(&pid).ok_or(AdminError::NoParticipant)?;
        if !p.tracks.iter().any(|s| s == track_sid) {
            return Err(AdminError::NoTrack);
        }
        if !muted && !self.cfg.remote_unmute {
            return Err(AdminError::NotAllowed(
                "remote unmute is not enabled (room.enable_remote_unmute)",
            ));
        }
        let t = self
            .rooms
            .get_mut(room)
            .and_then(|r| r.tracks.get_mut(track_sid))
            .ok_or(AdminError::NoTrack)?;
        t.info.muted = muted;
        let info = t.info.clone();
        // The publisher's SDK mutes its local track (and answers with its own MuteTrackRequest).
        self.send_out(
            pid,
            sig(Resp::Mute(proto::MuteTrackRequest {
                sid: track_sid.to_string(),
                muted,
            })),
        );
        if let Some(p) = self.parts.get_mut(&pid) {
            p.version += 1;
        }
        self.publish_snapshot(room);
        self.broadcast_participant(pid);
        Ok(AdminOk::Track(Box::new(info)))
    }

    /// Unpublish `pid`'s track `sid` on the server's initiative: its subscribers drop it, the
    /// publisher is told (`TrackUnpublishedResponse`; its SDK removes the track) and everyone sees
    /// the participant without it. Packets still arriving for it are dropped.
    pub(super) fn unpublish_track(&mut self, pid: Pid, sid: &str, now: Instant) -> bool {
        let Some(p) = self.parts.get_mut(&pid) else {
            return false;
        };
        let Some(i) = p.tracks.iter().position(|s| s == sid) else {
            return false;
        };
        p.tracks.remove(i);
        let room = p.room.clone();
        if let Some(pc) = self.pcs.get_mut(&p.pub_pc) {
            pc.inbound.retain(|_, s| &**s != sid);
        }
        info!(room = %room, participant = %p.identity, track = %sid, "track unpublished by the server");
        self.emit_track_unpublished(pid, sid);
        let mut affected = self.detach_track(&room, sid);
        affected.sort_unstable();
        affected.dedup();
        for s in affected {
            self.negotiate_subscriber(s, now);
        }
        self.send_out(
            pid,
            sig(Resp::TrackUnpublished(proto::TrackUnpublishedResponse {
                track_sid: sid.to_string(),
            })),
        );
        if let Some(p) = self.parts.get_mut(&pid) {
            p.version += 1;
        }
        self.publish_snapshot(&room);
        self.broadcast_participant(pid);
        true
    }

    /// Remove track `sid` from `room` and from every subscriber (their senders removed, in-process
    /// subscribers told `TrackRemoved`). Returns the subscribers, which need a renegotiation.
    pub(super) fn detach_track(&mut self, room: &str, sid: &str) -> Vec<Pid> {
        let Some(t) = self.rooms.get_mut(room).and_then(|r| r.tracks.remove(sid)) else {
            return Vec::new();
        };
        for &s in &t.subscribers {
            let Some(sp) = self.parts.get_mut(&s) else {
                continue;
            };
            if let Some(out) = sp.subs.remove(sid) {
                if let (Some(pc), Some(sender_id)) = (self.pcs.get_mut(&sp.sub_pc), out.sender_id) {
                    let _ = pc.rtc.remove_track(sender_id);
                }
            }
            if let Some(local) = &sp.local {
                let ended = LocalMedia::TrackRemoved {
                    track_sid: t.sid.clone(),
                };
                membership::send_local_event(&mut self.overflowed, s, local, ended);
            }
        }
        t.subscribers
    }
}
