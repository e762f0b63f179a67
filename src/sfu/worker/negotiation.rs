//! Signal handling and SDP: the client's signal requests, publisher offers, and the subscriber
//! connection's negotiation (subscribe, unsubscribe, one server offer in flight at a time).

use super::membership::send_local_event;
use super::*;
use crate::metrics::Metrics;
use crate::sfu::forwarder::Forwarder;
use crate::sfu::layers;
use parlor_signaling::protocol::{proto, subscriber_stream_id, Target};
use proto::signal_response::Message as Resp;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::peer_connection::RTCPeerConnection;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::time::Instant;
use tracing::{debug, warn};

impl Worker {
    pub(super) fn on_signal(&mut self, pid: Pid, msg: SignalIn, now: Instant) {
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
            SignalIn::UpdateMetadata(m) => self.on_update_metadata(pid, m, now),
            SignalIn::TrackSetting(s) => {
                let room = self
                    .parts
                    .get(&pid)
                    .map(|p| p.room.clone())
                    .unwrap_or_default();
                debug!(tracks = ?s.track_sids, quality = s.quality, disabled = s.disabled, width = s.width, "track settings");
                let layer = layers::layer_of_quality(s.quality);
                for sid in &s.track_sids {
                    let max_layer = self
                        .rooms
                        .get(&room)
                        .and_then(|r| r.tracks.get(sid))
                        .map(|t| layers::best_published(&t.layers))
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

    pub(super) fn on_publisher_offer(
        &mut self,
        pid: Pid,
        sd: proto::SessionDescription,
        now: Instant,
    ) {
        let Some(p) = self.parts.get(&pid) else {
            return;
        };
        if p.single_pc {
            self.on_single_pc_offer(pid, sd, now);
            return;
        }
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
                self.remove_participant(pid, now);
                return;
            }
        }
        self.drive(pc_id, now);
    }

    pub(super) fn on_subscriber_answer(
        &mut self,
        pid: Pid,
        sd: proto::SessionDescription,
        now: Instant,
    ) {
        let Some(p) = self.parts.get_mut(&pid) else {
            return;
        };
        if p.single_pc || !p.sub_awaiting_answer {
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
            self.remove_participant(pid, now);
            return;
        }
        // Learn the negotiated payload types per sender.
        let Some(p) = self.parts.get_mut(&pid) else {
            return;
        };
        let room_tracks = self.rooms.get(&p.room).map(|r| &r.tracks);
        for (sid, out) in p.subs.iter_mut() {
            let Some(sender_id) = out.sender_id else {
                continue;
            };
            let codec = room_tracks
                .and_then(|t| t.get(sid))
                .and_then(|t| t.codec.as_ref());
            out.pt = sender_payload_type(&mut pc.rtc, sender_id, codec);
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
    pub(super) fn subscribe_no_offer(
        &mut self,
        pid: Pid,
        room: &str,
        sid: &str,
        _now: Instant,
    ) -> bool {
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
        if p.local.is_some() || p.single_pc {
            if let Some(local) = &p.local {
                let added = LocalMedia::TrackAdded {
                    track_sid: t.sid.clone(),
                    publisher: owner_identity,
                    kind: t.kind,
                    mime_type: codec.mime_type.clone(),
                    clock_rate: codec.clock_rate,
                };
                if !send_local_event(&mut self.overflowed, pid, local, added) {
                    return false;
                }
            }
            // In-process subscribers have no sender; a v1 client's track waits for a receive
            // section of its next offer (`single_pc`).
            let mut forwarder = Forwarder::new(t.kind == RtpCodecKind::Video, codec.clock_rate);
            forwarder.set_target_layer(layers::best_published(&t.layers));
            p.subs.insert(
                sid.to_string(),
                SubOut {
                    requested_layer: 2,
                    sender_id: None,
                    mid: None,
                    ssrc: 0,
                    pt: None,
                    forwarder,
                    egress: crate::sfu::egress::OutStream::new(
                        t.kind == RtpCodecKind::Video,
                        codec.clock_rate,
                    ),
                },
            );
            t.subscribers.push(pid);
            return true;
        }
        let Some(pc) = self.pcs.get_mut(&p.sub_pc) else {
            return false;
        };
        let ssrc: u32 = rand::random();
        let track = single_pc::track_for(
            t.kind,
            &codec,
            ssrc,
            subscriber_stream_id(&owner_sid, sid),
            sid.to_string(),
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
        forwarder.set_target_layer(layers::best_published(&t.layers));
        p.subs.insert(
            sid.to_string(),
            SubOut {
                requested_layer: 2,
                sender_id: Some(sender_id),
                mid: None,
                ssrc,
                pt: None,
                forwarder,
                egress: crate::sfu::egress::OutStream::new(is_video, codec.clock_rate),
            },
        );
        t.subscribers.push(pid);
        true
    }

    pub(super) fn subscribe(&mut self, pid: Pid, room: &str, sid: &str, now: Instant) {
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

    pub(super) fn unsubscribe(&mut self, pid: Pid, sid: &str, now: Instant) {
        let Some(p) = self.parts.get_mut(&pid) else {
            return;
        };
        let Some(out) = p.subs.remove(sid) else {
            return;
        };
        let room = p.room.clone();
        let sub_pc = p.sub_pc;
        if let (Some(pc), Some(sender_id)) = (self.pcs.get_mut(&sub_pc), out.sender_id) {
            let _ = pc.rtc.remove_track(sender_id);
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
    pub(super) fn negotiate_subscriber(&mut self, pid: Pid, now: Instant) {
        let Some(p) = self.parts.get_mut(&pid) else {
            return;
        };
        if p.single_pc {
            // v1: the client offers; a freed section goes inactive in our answer.
            self.ask_renegotiation(pid, true, now);
            return;
        }
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

/// The payload type the subscriber negotiated for the publisher's codec on `sender`: the first
/// negotiated codec of the same MIME type (and H.264 packetization mode), else the first one. (The
/// negotiated list follows the remote side's preference order, which can put another codec first.)
pub(super) fn sender_payload_type(
    pc: &mut RTCPeerConnection,
    sender: rtc::rtp_transceiver::RTCRtpSenderId,
    codec: Option<&rtc::rtp_transceiver::rtp_sender::RTCRtpCodec>,
) -> Option<u8> {
    let mut s = pc.rtp_sender(sender)?;
    let codecs = &s.get_parameters().rtp_parameters.codecs;
    let mode = |fmtp: &str| {
        fmtp.split(';')
            .find_map(|kv| kv.trim().strip_prefix("packetization-mode="))
            .unwrap_or("0")
            .to_string()
    };
    let matching = codec.and_then(|want| {
        codecs.iter().find(|c| {
            c.rtp_codec.mime_type.eq_ignore_ascii_case(&want.mime_type)
                && (!want.mime_type.eq_ignore_ascii_case("video/H264")
                    || mode(&c.rtp_codec.sdp_fmtp_line) == mode(&want.sdp_fmtp_line))
        })
    });
    matching.or(codecs.first()).map(|c| c.payload_type)
}

/// Set `desc` as the local description and return the resulting SDP (with our candidates).
pub(super) fn apply_local(
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
pub(super) fn ice_pwd(sdp: &str) -> Option<String> {
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

#[cfg(test)]
mod tests {
    #[test]
    fn extmap_lookup() {
        let sdp = "v=0\r\nm=video 9 UDP 96\r\na=extmap:5 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
                   m=audio 9 UDP 111\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=extmap:3/recvonly http://x\r\n";
        assert_eq!(
            super::extmap_id(sdp, "audio", crate::sfu::peer::AUDIO_LEVEL_URI),
            Some(1)
        );
        assert_eq!(
            super::extmap_id(sdp, "video", crate::sfu::peer::AUDIO_LEVEL_URI),
            Some(5)
        );
        assert_eq!(super::extmap_id(sdp, "audio", "http://x"), Some(3));
        assert_eq!(super::extmap_id(sdp, "audio", "nope"), None);
    }
}
