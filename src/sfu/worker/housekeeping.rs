//! Housekeeping (every 250 ms): metrics flush, closing rooms that stayed empty, pending subscriber
//! offers, simulcast layer retargeting and active speakers.

use super::*;
use crate::sfu::{layers, speakers};
use parlor_signaling::protocol::proto;
use proto::signal_response::Message as Resp;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::time::Instant;
use tracing::info;

impl Worker {
    pub(super) fn housekeeping(&mut self, now: Instant) {
        self.counters.flush(&self.metrics);
        self.send_reports(now);
        self.retarget_layers(now);
        self.retry_single_pc_renegotiations(now);
        // Sessions that went away without a Leave (an in-process participant dropped while the
        // control queue was full, a session task that ended abruptly): their channel says so.
        let gone: Vec<Pid> = self
            .parts
            .values()
            .filter(|p| Self::session_closed(p))
            .map(|p| p.pid)
            .collect();
        for pid in gone {
            info!(
                participant = pid,
                "session channel closed without a leave; removing"
            );
            self.remove_participant(pid, now);
        }
        // Close rooms that stayed empty for the grace period.
        let expired: Vec<String> = self
            .rooms
            .values()
            .filter(|r| {
                r.empty_since
                    .is_some_and(|t| now.duration_since(t) >= r.departure_timeout)
            })
            .map(|r| r.name.clone())
            .collect();
        for name in expired {
            info!(room = %name, "room closed (empty)");
            self.shut_room(&name, now);
        }
        // Deliver pending subscriber offers and active speakers.
        let pending: Vec<Pid> = self
            .parts
            .values()
            .filter(|p| p.sub_needs_offer && !p.sub_awaiting_answer)
            .map(|p| p.pid)
            .collect();
        for pid in pending {
            self.negotiate_subscriber(pid, now);
        }
        let rooms: Vec<String> = self.rooms.keys().cloned().collect();
        for room in rooms {
            self.update_speakers(&room, now);
        }
    }

    /// Point every video subscriber at the best layer the publisher is actually sending at or below
    /// what it asked for (publishers drop layers under CPU or bandwidth pressure).
    pub(super) fn retarget_layers(&mut self, now: Instant) {
        for room in self.rooms.values() {
            for t in room.tracks.values() {
                if t.kind != RtpCodecKind::Video {
                    continue;
                }
                let active = layers::active_layers(&t.layer_seen, now);
                if !active.contains(&true) {
                    // Nothing sent lately (muted, paused): keep the targets until a layer resumes.
                    continue;
                }
                for sub in &t.subscribers {
                    let Some(out) = self
                        .parts
                        .get_mut(sub)
                        .and_then(|p| p.subs.get_mut(&*t.sid))
                    else {
                        continue;
                    };
                    let Some(want) = layers::choose_layer(out.requested_layer, active) else {
                        continue;
                    };
                    if out.forwarder.target_layer() != want {
                        out.forwarder.set_target_layer(want);
                    }
                }
            }
        }
    }

    pub(super) fn update_speakers(&mut self, room_name: &str, now: Instant) {
        let Some(room) = self.rooms.get(room_name) else {
            return;
        };
        let ranked = speakers::rank(
            room.participants
                .iter()
                .filter_map(|pid| self.parts.get(pid))
                .map(|p| (p.sid.as_str(), p.level)),
            now,
        );
        let Some(infos) = speakers::changes(&ranked, &room.last_speakers) else {
            return;
        };
        let targets = room.participants.clone();
        if let Some(r) = self.rooms.get_mut(room_name) {
            r.last_speakers = ranked.into_iter().map(|(sid, _)| sid).collect();
        }
        for t in targets {
            self.send_out(
                t,
                sig(Resp::SpeakersChanged(proto::SpeakersChanged {
                    speakers: infos.clone(),
                })),
            );
        }
    }
}
