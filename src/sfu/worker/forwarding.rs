//! The forwarding hot path: one inbound RTP packet fanned out to every subscriber of its track
//! (WebRTC legs and in-process subscribers), keyframe requests to publishers.

use super::membership::local_media_has_room;
use super::*;
use crate::metrics::Metrics;
use crate::sfu::forwarder::{is_keyframe, Decision, PacketMeta};
use crate::sfu::peer;
use crate::sfu::speakers;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::time::Instant;
use tracing::debug;

impl Worker {
    /// The forwarding hot path: one inbound message from a peer connection.
    pub(super) fn on_pc_read(&mut self, pc_id: PcId, m: TaggedRTCMessage, now: Instant) {
        match m.message {
            RTCMessage::RtpPacket(track_id, pkt) => self.forward_rtp(pc_id, &track_id, pkt, now),
            RTCMessage::RtcpPacket(track_id, packets) => {
                // Only PLI/FIR reach us (see peer::KeyframeRequests). On a subscriber leg the local
                // track id is the track sid: ask that track's publisher for a keyframe.
                let Some(pc) = self.pcs.get(&pc_id) else {
                    return;
                };
                if pc.role.subscribes() && !packets.is_empty() {
                    if let Some(room) = self.parts.get(&pc.owner).map(|p| p.room.clone()) {
                        self.request_keyframe(&room, &track_id, now);
                    }
                }
            }
            RTCMessage::DataChannelMessage(dc_id, msg) => self.on_data(pc_id, dc_id, msg.data, now),
            _ => {}
        }
    }

    pub(super) fn forward_rtp(
        &mut self,
        pc_id: PcId,
        track_id: &str,
        pkt: rtc::rtp::Packet,
        now: Instant,
    ) {
        let Some(pc) = self.pcs.get(&pc_id) else {
            return;
        };
        let Some(sid) = pc.inbound.get(track_id).cloned() else {
            return;
        };
        let owner = pc.owner;
        self.forward_track(owner, &sid, pkt, now);
    }

    /// Forward one packet of `owner`'s track `sid` to every subscriber of it (WebRTC legs and
    /// in-process subscribers alike).
    pub(super) fn forward_track(
        &mut self,
        owner: Pid,
        sid: &str,
        pkt: rtc::rtp::Packet,
        now: Instant,
    ) {
        self.counters.packets_in += 1;
        self.counters.bytes_in += pkt.payload.len() as u64;
        let Some(p) = self.parts.get_mut(&owner) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&p.room) else {
            return;
        };
        let Some(track) = room.tracks.get_mut(sid) else {
            return;
        };
        // Audio level for active-speaker detection.
        if let Some(id) = track.audio_level_ext {
            if let Some(v) = pkt.header.get_extension(id) {
                // Remember the last voiced packet (louder than -50 dBov); the speaker check looks
                // at a window, so one quiet packet between words does not end "speaking".
                if let Some(level) = peer::audio_level(&v).filter(|l| speakers::is_voiced(*l)) {
                    p.level = Some((level, now));
                }
            }
        }
        if track.info.muted {
            return;
        }
        let layer = track
            .layers
            .iter()
            .find(|(s, _)| *s == pkt.header.ssrc)
            .map(|(_, l)| *l)
            .unwrap_or(0);
        if let Some(seen) = track.layer_seen.get_mut(layer as usize) {
            *seen = Some(now);
        }
        let keyframe = track.kind == RtpCodecKind::Video
            && is_keyframe(track.is_vp8, track.is_h264, &pkt.payload);
        let meta = PacketMeta {
            seq: pkt.header.sequence_number,
            ts: pkt.header.timestamp,
            layer,
            keyframe,
            arrival_us: now.saturating_duration_since(self.epoch).as_micros() as u64,
        };
        let sid_ref: &str = &track.sid;
        self.scratch.clear();
        let mut needs_kf = false;
        for sub in &track.subscribers {
            let Some(sp) = self.parts.get_mut(sub) else {
                continue;
            };
            let Some(out) = sp.subs.get_mut(sid_ref) else {
                continue;
            };
            if let Some(local) = &sp.local {
                // In-process subscriber: the packet (shared payload, no copy) with its arrival time.
                if let Decision::Forward { seq, ts } = out.forwarder.on_packet(&meta) {
                    let m = LocalMedia::Rtp(LocalRtp {
                        track_sid: track.sid.clone(),
                        arrival: now,
                        seq,
                        timestamp: ts,
                        marker: pkt.header.marker,
                        payload: pkt.payload.clone(),
                    });
                    // A slow consumer loses packets (its jitter buffer conceals); never block, and
                    // leave the slots its track events need.
                    if !local_media_has_room(local) || local.try_send(m).is_err() {
                        self.counters.dropped += 1;
                    }
                }
                continue;
            }
            let (Some(pt), Some(sender_id)) = (out.pt, out.sender_id) else {
                continue;
            };
            // Until DTLS is up the sender has no SRTP context: writing would fail (and rtc logs a
            // WARN per packet). The forwarder starts with the first packet it actually forwards.
            if !self.pcs.get(&sp.sub_pc).is_some_and(|pc| pc.connected) {
                continue;
            }
            let before = out.forwarder.current_layer();
            let decision = out.forwarder.on_packet(&meta);
            if out.forwarder.current_layer() != before {
                debug!(
                    track = sid_ref,
                    from = before,
                    to = out.forwarder.current_layer(),
                    "layer switch"
                );
            }
            match decision {
                Decision::Forward { seq, ts } => {
                    self.scratch
                        .push((sp.sub_pc, sender_id, out.ssrc, pt, seq, ts));
                }
                Decision::Drop(reason) => {
                    if reason == crate::sfu::forwarder::DropReason::WaitingForKeyframe {
                        needs_kf = true;
                    }
                    self.counters.dropped += 1;
                }
            }
        }
        // Rate limit checked here too, so packets waiting for a keyframe clone nothing.
        if needs_kf
            && track
                .last_pli
                .is_none_or(|l| now.duration_since(l) >= PLI_MIN_INTERVAL)
        {
            let room_name = room.name.clone();
            let sid = track.sid.clone();
            self.request_keyframe(&room_name, &sid, now);
        }
        let n = self.scratch.len();
        for i in 0..n {
            let (sub_pc, sender_id, ssrc, pt, seq, ts) = self.scratch[i];
            // A fresh header (no extension or CSRC vectors to clone: no heap allocation) around the
            // shared payload. Extension ids differ per leg and the sender rejects ids it did not
            // negotiate, so extensions are not forwarded.
            let out = rtc::rtp::Packet {
                header: rtc::rtp::header::Header {
                    version: 2,
                    marker: pkt.header.marker,
                    payload_type: pt,
                    sequence_number: seq,
                    timestamp: ts,
                    ssrc,
                    ..Default::default()
                },
                payload: pkt.payload.clone(),
            };
            let Some(spc) = self.pcs.get_mut(&sub_pc) else {
                continue;
            };
            let ok = spc
                .rtc
                .rtp_sender(sender_id)
                .map(|mut s| s.write_rtp(now, out).is_ok())
                .unwrap_or(false);
            if ok {
                self.counters.packets_out += 1;
                self.counters.bytes_out += pkt.payload.len() as u64;
            } else {
                self.counters.send_failures += 1;
            }
            // No `update_timeout` here: writing RTP only pushes a leg's deadlines later (sender
            // reports and ICE keepalives are on fixed schedules), so the known deadline stays a
            // safe lower bound; skipping it saves walking the whole `rtc` stack per packet copy.
            self.flush(sub_pc);
        }
    }

    pub(super) fn request_keyframe(&mut self, room: &str, track_sid: &str, now: Instant) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        let Some(t) = r.tracks.get_mut(track_sid) else {
            return;
        };
        if t.kind != RtpCodecKind::Video {
            return;
        }
        if t.last_pli
            .is_some_and(|l| now.duration_since(l) < PLI_MIN_INTERVAL)
        {
            return;
        }
        t.last_pli = Some(now);
        let Some(rx_id) = t.receiver_id else { return };
        let ssrcs: Vec<u32> = t.layers.iter().map(|(s, _)| *s).collect();
        let owner = t.owner;
        let Some(pub_pc) = self.parts.get(&owner).map(|p| p.pub_pc) else {
            return;
        };
        if let Some(pc) = self.pcs.get_mut(&pub_pc) {
            if let Some(mut rx) = pc.rtc.rtp_receiver(rx_id) {
                let pkts: Vec<Box<dyn rtc::rtcp::Packet>> = ssrcs
                    .iter()
                    .map(|&media_ssrc| {
                        Box::new(PictureLossIndication {
                            sender_ssrc: 0,
                            media_ssrc,
                        }) as Box<dyn rtc::rtcp::Packet>
                    })
                    .collect();
                let ok = rx.write_rtcp(now, pkts).is_ok();
                debug!(track = %track_sid, ?ssrcs, ok, "keyframe requested from publisher");
                if ok {
                    Metrics::inc(&self.metrics.plis_forwarded);
                }
            }
        }
        self.flush(pub_pc);
    }
}
