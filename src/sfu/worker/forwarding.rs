//! The forwarding hot path: one inbound RTP packet fanned out to every subscriber of its track
//! (WebRTC legs and in-process subscribers), keyframe requests to publishers.

use super::egress;
use super::membership::local_media_has_room;
use super::*;
use crate::metrics::Metrics;
use crate::sfu::forwarder::{is_keyframe, Decision, PacketMeta};
use crate::sfu::peer;
use crate::sfu::speakers;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::time::Instant;
use tracing::debug;

impl Worker {
    /// The forwarding hot path: one inbound message from a peer connection.
    pub(super) fn on_pc_read(&mut self, pc_id: PcId, m: TaggedRTCMessage, now: Instant) {
        match m.message {
            RTCMessage::RtpPacket(track_id, pkt) => self.forward_rtp(pc_id, &track_id, pkt, now),
            RTCMessage::RtcpPacket(track_id, packets) => {
                // Only PLI/FIR and NACKs reach us (see peer::subscriber_feedback). On a subscriber
                // leg the local track id is the track sid.
                let Some(pc) = self.pcs.get(&pc_id) else {
                    return;
                };
                if !pc.role.subscribes() {
                    return;
                }
                let owner = pc.owner;
                let mut keyframe = false;
                for p in &packets {
                    // A compound packet carries its receiver report too: only PLI/FIR ask for a
                    // keyframe (every NACK must not become one).
                    let a = p.as_any();
                    if let Some(nack) = a.downcast_ref::<TransportLayerNack>() {
                        self.counters.nacks += 1;
                        self.answer_nack(pc_id, &track_id, nack);
                    } else if a.is::<PictureLossIndication>() || a.is::<FullIntraRequest>() {
                        keyframe = true;
                    }
                }
                if keyframe {
                    if let Some(room) = self.parts.get(&owner).map(|p| p.room.clone()) {
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
        let mut needs_kf = false;
        let payload: &[u8] = &pkt.payload;
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
            let (Some(pt), Some(_)) = (out.pt, out.sender_id) else {
                continue;
            };
            // Until DTLS is up the leg has no SRTP context. The forwarder starts with the first
            // packet it actually forwards.
            let Some(spc) = self.pcs.get_mut(&sp.sub_pc).filter(|pc| pc.connected) else {
                continue;
            };
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
                    // The direct egress (see `egress`): protected into one datagram, queued for
                    // this wake-up's sendmmsg.
                    let p = crate::sfu::egress::Rtp {
                        marker: pkt.header.marker,
                        pt,
                        seq,
                        ts,
                        ssrc: out.ssrc,
                        payload,
                    };
                    let mut sinks = egress::Sinks {
                        batch: &mut self.batch,
                        tcp: &mut self.tcp_conns,
                    };
                    let plain = &mut self.plain;
                    if egress::send(spc, &mut out.egress, plain, &mut sinks, &p, now) {
                        self.counters.packets_out += 1;
                        self.counters.bytes_out += payload.len() as u64;
                    } else {
                        self.counters.send_failures += 1;
                    }
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
