//! Publishing: AddTrack requests, an inbound track's media opening (and its simulcast layers), tracks of
//! in-process participants, and mute.

use super::*;
use crate::sfu::layers;
use crate::sfu::peer::AUDIO_LEVEL_URI;
use parlor_signaling::protocol::proto;
use proto::signal_response::Message as Resp;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RtpCodecKind};
use std::sync::Arc;
use std::time::Instant;
use tracing::{info, warn};

impl Worker {
    pub(super) fn on_track_open(
        &mut self,
        pc_id: PcId,
        owner: Pid,
        init: rtc::peer_connection::event::RTCTrackEventInit,
        now: Instant,
    ) {
        let layer = layers::layer_of_rid(init.rid.as_deref());
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
                let max_layer = layers::best_published(&t.layers);
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
    pub(super) fn add_track(&mut self, owner: Pid, room_name: &str, track: TrackIn, now: Instant) {
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
        self.emit_track_published(owner, &sid);
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
    pub(super) fn local_publish(
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

    pub(super) fn on_add_track(&mut self, pid: Pid, req: proto::AddTrackRequest) {
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

    pub(super) fn on_mute(&mut self, pid: Pid, sid: &str, muted: bool) {
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
}
