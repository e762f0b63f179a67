//! Signal protocol v1 (`/rtc/v1`): one peer connection per client that both publishes and
//! subscribes. The client offers every negotiation; the server only answers. Subscribed tracks go
//! out on the client's *receive sections* (the `recvonly` m-sections it adds up front, three audio
//! and three video, and on request): each answer says which mid carries which track
//! (`SessionDescription.mid_to_track_id`), and when the client has too few free sections the
//! server asks for more with `MediaSectionsRequirement{num_audios, num_videos}`, which also makes
//! the client offer again (the SDKs' way for the server to start a renegotiation: a v1 client
//! does not answer server offers).
//!
//! `rtc::add_track` attaches a track to the first free transceiver of its kind, which may be one
//! of the client's own publishing sections. [`attach`] steers it onto the wanted receive section
//! and checks it landed there.

use super::*;
use crate::metrics::Metrics;
use crate::sfu::peer::random_string;
use negotiation::apply_local;
use parlor_signaling::protocol::subscriber_stream_id;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::RTCPeerConnection;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters,
};
use rtc::rtp_transceiver::{RTCRtpSenderId, RTCRtpTransceiverDirection, RTCRtpTransceiverId};
use std::collections::HashMap;
use tracing::{debug, warn};

/// How long to wait for the client's offer after asking for one before asking again.
const RENEGOTIATION_RETRY: Duration = Duration::from_secs(2);

/// One m-section of an SDP, as far as receive sections are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Section {
    pub(super) mid: String,
    pub(super) kind: RtpCodecKind,
    /// The offerer's direction attribute (`sendrecv` when absent).
    pub(super) direction: &'static str,
    /// Port 0 without `a=bundle-only` (Firefox offers bundled sections with port 0 and that
    /// attribute): rejected or stopped.
    pub(super) rejected: bool,
}

/// The audio and video m-sections of `sdp`, in order.
pub(super) fn sections(sdp: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    let mut cur: Option<Section> = None;
    for l in sdp.lines() {
        let l = l.trim_end();
        if let Some(m) = l.strip_prefix("m=") {
            out.extend(cur.take().filter(|s| !s.mid.is_empty()));
            let mut it = m.split_whitespace();
            let kind = match it.next() {
                Some("audio") => RtpCodecKind::Audio,
                Some("video") => RtpCodecKind::Video,
                _ => continue,
            };
            cur = Some(Section {
                mid: String::new(),
                kind,
                direction: "sendrecv",
                rejected: it.next() == Some("0"),
            });
            continue;
        }
        let Some(s) = cur.as_mut() else { continue };
        if l == "a=bundle-only" {
            s.rejected = false;
        } else if let Some(mid) = l.strip_prefix("a=mid:") {
            s.mid = mid.trim().to_string();
        } else if let Some(d) = ["sendrecv", "sendonly", "recvonly", "inactive"]
            .into_iter()
            .find(|d| l.strip_prefix("a=") == Some(d))
        {
            s.direction = d;
        }
    }
    out.extend(cur.filter(|s| !s.mid.is_empty()));
    out
}

/// The client's receive sections: `recvonly`, not rejected.
pub(super) fn receive_sections(sdp: &str) -> Vec<(String, RtpCodecKind)> {
    sections(sdp)
        .into_iter()
        .filter(|s| s.direction == "recvonly" && !s.rejected)
        .map(|s| (s.mid, s.kind))
        .collect()
}

/// How many more receive sections of each kind (audio, video) the subscriptions need.
pub(super) fn missing_sections(
    slots: &[(String, RtpCodecKind)],
    used: &[&str],
    waiting: &[RtpCodecKind],
) -> (u32, u32) {
    let free = |k: RtpCodecKind| {
        slots
            .iter()
            .filter(|(m, kind)| *kind == k && !used.contains(&m.as_str()))
            .count()
    };
    let want = |k: RtpCodecKind| waiting.iter().filter(|&&w| w == k).count();
    let audio = want(RtpCodecKind::Audio).saturating_sub(free(RtpCodecKind::Audio));
    let video = want(RtpCodecKind::Video).saturating_sub(free(RtpCodecKind::Video));
    (audio as u32, video as u32)
}

fn transceiver_with_mid(pc: &mut RTCPeerConnection, mid: &str) -> Option<RTCRtpTransceiverId> {
    let ids: Vec<RTCRtpTransceiverId> = pc.get_transceivers().collect();
    ids.into_iter().find(|&id| {
        pc.rtp_transceiver(id)
            .is_some_and(|t| t.mid().as_deref() == Some(mid))
    })
}

/// The outgoing track of one subscription: one encoding with our SSRC, the publisher's codec.
pub(super) fn track_for(
    kind: RtpCodecKind,
    codec: &RTCRtpCodec,
    ssrc: u32,
    stream: String,
    id: String,
) -> MediaStreamTrack {
    MediaStreamTrack::new(
        stream,
        id.clone(),
        id,
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: codec.clone(),
            ..Default::default()
        }],
    )
}

/// Attach `track` to the transceiver of `mid`. `kinds` maps every mid of the offer to its kind.
/// Free transceivers of the same kind that come before it (the client's publishing sections, which
/// have no sender) are given a placeholder sender for the duration of the call, so `add_track`
/// skips them, and released again. Returns the sender, or None (nothing changed) when the track
/// did not land on `mid`.
fn attach(
    pc: &mut RTCPeerConnection,
    mid: &str,
    kinds: &HashMap<String, RtpCodecKind>,
    track: MediaStreamTrack,
    codec: &RTCRtpCodec,
) -> Option<RTCRtpSenderId> {
    let kind = track.kind();
    let target = transceiver_with_mid(pc, mid)?;
    let ids: Vec<RTCRtpTransceiverId> = pc.get_transceivers().collect();
    let mut blockers = Vec::new();
    for id in ids {
        if id == target {
            break;
        }
        let Some(t) = pc.rtp_transceiver(id) else {
            continue;
        };
        let same_kind = t.mid().as_ref().and_then(|m| kinds.get(m)) == Some(&kind);
        if same_kind && t.sender().is_none() {
            blockers.push((id, t.direction()));
        }
    }
    let mut placeholders = Vec::new();
    for _ in &blockers {
        let id = random_string(8);
        let dummy = track_for(kind, codec, rand::random(), id.clone(), id);
        match pc.add_track(dummy) {
            Ok(s) => placeholders.push(s),
            Err(_) => break,
        }
    }
    let sender = pc.add_track(track).ok();
    for s in placeholders {
        let _ = pc.remove_track(s);
    }
    for (id, direction) in blockers {
        if let Some(mut t) = pc.rtp_transceiver(id) {
            t.set_direction(direction);
        }
    }
    let landed = pc.rtp_transceiver(target).and_then(|t| t.sender());
    match (sender, landed) {
        (Some(s), Some(l)) if s == l => Some(s),
        (Some(s), _) => {
            let _ = pc.remove_track(s);
            None
        }
        _ => None,
    }
}

impl Worker {
    /// A v1 client's offer: take its receive sections, put waiting subscriptions on free ones,
    /// answer with the mid → track map, and ask for more sections if some still wait.
    pub(super) fn on_single_pc_offer(
        &mut self,
        pid: Pid,
        sd: proto::SessionDescription,
        now: Instant,
    ) {
        let Some(p) = self.parts.get_mut(&pid) else {
            return;
        };
        p.reneg_asked = None;
        let pc_id = p.pub_pc;
        let room = p.room.clone();
        let Some(pc) = self.pcs.get_mut(&pc_id) else {
            return;
        };
        let res = RTCSessionDescription::offer(sd.sdp.clone())
            .and_then(|offer| pc.rtc.set_remote_description(now, offer));
        if let Err(e) = res {
            warn!(error = %e, "invalid offer");
            Metrics::inc(&self.metrics.signal_errors);
            self.send_out(pid, Out::Close("invalid offer"));
            self.remove_participant(pid, now);
            return;
        }
        let kinds: HashMap<String, RtpCodecKind> = sections(&sd.sdp)
            .into_iter()
            .map(|s| (s.mid, s.kind))
            .collect();
        let slots = receive_sections(&sd.sdp);
        // Subscriptions whose section is gone wait again; the rest keep theirs.
        let mut lost = Vec::new();
        for out in p.subs.values_mut() {
            let keep = out
                .mid
                .as_ref()
                .is_some_and(|m| slots.iter().any(|(s, _)| s == m));
            if !keep && out.sender_id.is_some() {
                lost.extend(out.sender_id.take());
                out.mid = None;
                out.pt = None;
            }
        }
        for s in lost {
            let _ = pc.rtc.remove_track(s);
        }
        // Free sections send nothing until a track is put on them.
        let used: Vec<String> = p.subs.values().filter_map(|o| o.mid.clone()).collect();
        for (mid, _) in slots.iter().filter(|(m, _)| !used.contains(m)) {
            if let Some(id) = transceiver_with_mid(&mut pc.rtc, mid) {
                if let Some(mut t) = pc.rtc.rtp_transceiver(id) {
                    if t.sender().is_none() {
                        t.set_direction(RTCRtpTransceiverDirection::Inactive);
                    }
                }
            }
        }
        // Waiting subscriptions, in a stable order, onto free sections of their kind.
        let mut waiting: Vec<String> = p
            .subs
            .iter()
            .filter(|(_, o)| o.mid.is_none())
            .map(|(sid, _)| sid.clone())
            .collect();
        waiting.sort();
        let mut used = used;
        let mut attached = Vec::new();
        let mut still_waiting = Vec::new();
        for sid in waiting {
            let Some(t) = self.rooms.get(&room).and_then(|r| r.tracks.get(&sid)) else {
                continue;
            };
            let (kind, owner) = (t.kind, t.owner);
            let Some(codec) = t.codec.clone() else {
                continue;
            };
            let Some(owner_sid) = self.parts.get(&owner).map(|o| o.sid.clone()) else {
                continue;
            };
            let Some(mid) = slots
                .iter()
                .find(|(m, k)| *k == kind && !used.contains(m))
                .map(|(m, _)| m.clone())
            else {
                still_waiting.push(kind);
                continue;
            };
            let ssrc: u32 = rand::random();
            let track = track_for(
                kind,
                &codec,
                ssrc,
                subscriber_stream_id(&owner_sid, &sid),
                sid.clone(),
            );
            let Some(pc) = self.pcs.get_mut(&pc_id) else {
                return;
            };
            match attach(&mut pc.rtc, &mid, &kinds, track, &codec) {
                Some(sender) => {
                    if let Some(out) = self.parts.get_mut(&pid).and_then(|p| p.subs.get_mut(&sid)) {
                        out.sender_id = Some(sender);
                        out.mid = Some(mid.clone());
                        out.ssrc = ssrc;
                    }
                    used.push(mid);
                    attached.push(sid);
                }
                None => {
                    warn!(track = %sid, mid = %mid, "could not put a track on the client's receive section");
                    used.push(mid);
                    still_waiting.push(kind);
                }
            }
        }
        let Some(pc) = self.pcs.get_mut(&pc_id) else {
            return;
        };
        let answer = pc
            .rtc
            .create_answer(None)
            .and_then(|a| apply_local(&mut pc.rtc, now, a));
        let sdp = match answer {
            Ok(sdp) => sdp,
            Err(e) => {
                warn!(error = %e, "answer to a v1 offer failed");
                Metrics::inc(&self.metrics.signal_errors);
                self.send_out(pid, Out::Close("invalid offer"));
                self.remove_participant(pid, now);
                return;
            }
        };
        tracing::trace!(offer_id = sd.id, offer = %sd.sdp, answer = %sdp, "v1 negotiation");
        let Some(p) = self.parts.get_mut(&pid) else {
            return;
        };
        p.recv_slots = slots;
        let mut mid_to_track_id = HashMap::new();
        let room_tracks = self.rooms.get(&room).map(|r| &r.tracks);
        for (sid, out) in p.subs.iter_mut() {
            let (Some(mid), Some(sender_id)) = (&out.mid, out.sender_id) else {
                continue;
            };
            mid_to_track_id.insert(mid.clone(), sid.clone());
            let codec = room_tracks
                .and_then(|t| t.get(sid))
                .and_then(|t| t.codec.as_ref());
            let pt = negotiation::sender_payload_type(&mut pc.rtc, sender_id, codec);
            if pt != out.pt {
                debug!(track = %sid, mid = %mid, old = ?out.pt, new = ?pt, "v1 payload type");
            }
            out.pt = pt;
        }
        debug!(participant = %p.identity, attached = attached.len(), waiting = still_waiting.len(), "v1 answer");
        self.send_out(
            pid,
            sig(Resp::Answer(proto::SessionDescription {
                r#type: "answer".into(),
                sdp,
                id: sd.id,
                mid_to_track_id,
            })),
        );
        for sid in &attached {
            self.request_keyframe(&room, sid, now);
            if let Some(owner) = self
                .rooms
                .get(&room)
                .and_then(|r| r.tracks.get(sid))
                .map(|t| t.owner)
            {
                self.send_out(
                    owner,
                    sig(Resp::TrackSubscribed(proto::TrackSubscribed {
                        track_sid: sid.clone(),
                    })),
                );
            }
        }
        if !still_waiting.is_empty() {
            self.ask_single_pc_renegotiation(pid, now);
        }
        self.drive(pc_id, now);
    }

    /// Ask a v1 client to offer again because subscriptions wait for a receive section: for the
    /// sections it lacks (none when free ones exist: the request then only starts a negotiation).
    /// One request in flight; repeated after [`RENEGOTIATION_RETRY`] without an offer.
    pub(super) fn ask_single_pc_renegotiation(&mut self, pid: Pid, now: Instant) {
        self.ask_renegotiation(pid, false, now)
    }

    /// See [`Self::ask_single_pc_renegotiation`]; `always`: also when nothing waits (a section
    /// was freed and the client's view of it should follow).
    pub(super) fn ask_renegotiation(&mut self, pid: Pid, always: bool, now: Instant) {
        let Some(p) = self.parts.get_mut(&pid) else {
            return;
        };
        let waiting: Vec<(&String, &SubOut)> =
            p.subs.iter().filter(|(_, o)| o.mid.is_none()).collect();
        if waiting.is_empty() && !always {
            return;
        }
        if p.reneg_asked
            .is_some_and(|t| now.saturating_duration_since(t) < RENEGOTIATION_RETRY)
        {
            return;
        }
        let room = p.room.clone();
        let kinds: Vec<RtpCodecKind> = waiting
            .iter()
            .filter_map(|(sid, _)| {
                self.rooms
                    .get(&room)
                    .and_then(|r| r.tracks.get(sid.as_str()))
                    .map(|t| t.kind)
            })
            .collect();
        let used: Vec<&str> = p.subs.values().filter_map(|o| o.mid.as_deref()).collect();
        let (num_audios, num_videos) = missing_sections(&p.recv_slots, &used, &kinds);
        p.reneg_asked = Some(now);
        self.send_out(
            pid,
            sig(Resp::MediaSectionsRequirement(
                proto::MediaSectionsRequirement {
                    num_audios,
                    num_videos,
                },
            )),
        );
    }

    /// Housekeeping: repeat renegotiation requests the client has not acted on.
    pub(super) fn retry_single_pc_renegotiations(&mut self, now: Instant) {
        let due: Vec<Pid> = self
            .parts
            .values()
            .filter(|p| {
                p.single_pc
                    && p.reneg_asked
                        .is_some_and(|t| now.saturating_duration_since(t) >= RENEGOTIATION_RETRY)
            })
            .map(|p| p.pid)
            .collect();
        for pid in due {
            self.ask_single_pc_renegotiation(pid, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str =
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1 2 3\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=recvonly\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=recvonly\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:2\r\na=sendonly\r\n\
        m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:3\r\n\
        m=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=mid:4\r\na=recvonly\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:5\r\n\
        m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=bundle-only\r\na=mid:6\r\na=recvonly\r\n";

    #[test]
    fn sections_are_read_in_order_with_direction_and_rejection() {
        let s = sections(OFFER);
        let got: Vec<(&str, RtpCodecKind, &str, bool)> = s
            .iter()
            .map(|s| (s.mid.as_str(), s.kind, s.direction, s.rejected))
            .collect();
        assert_eq!(
            got,
            vec![
                ("0", RtpCodecKind::Audio, "recvonly", false),
                ("1", RtpCodecKind::Video, "recvonly", false),
                ("2", RtpCodecKind::Audio, "sendonly", false),
                ("4", RtpCodecKind::Audio, "recvonly", true),
                ("5", RtpCodecKind::Video, "sendrecv", false),
                ("6", RtpCodecKind::Video, "recvonly", false),
            ]
        );
        assert_eq!(
            receive_sections(OFFER),
            vec![
                ("0".to_string(), RtpCodecKind::Audio),
                ("1".to_string(), RtpCodecKind::Video),
                ("6".to_string(), RtpCodecKind::Video)
            ]
        );
    }

    #[test]
    fn missing_sections_counts_only_what_free_ones_cannot_take() {
        let slots = receive_sections(OFFER);
        use RtpCodecKind::{Audio, Video};
        assert_eq!(missing_sections(&slots, &[], &[Audio]), (0, 0));
        assert_eq!(missing_sections(&slots, &["0"], &[Audio]), (1, 0));
        assert_eq!(
            missing_sections(&slots, &[], &[Audio, Audio, Video, Video, Video]),
            (1, 1)
        );
        assert_eq!(missing_sections(&[], &[], &[]), (0, 0));
    }
}
