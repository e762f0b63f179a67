//! Housekeeping (every 250 ms): metrics flush, closing rooms that stayed empty, pending subscriber
//! offers, simulcast layer retargeting and active speakers.

use super::*;

impl Worker {
    pub(super) fn housekeeping(&mut self) {
        let now = Instant::now();
        self.counters.flush(&self.metrics);
        self.retarget_layers(now);
        // Close rooms that stayed empty for the grace period.
        let expired: Vec<String> = self
            .rooms
            .values()
            .filter(|r| {
                r.empty_since
                    .is_some_and(|t| now.duration_since(t) >= self.cfg.empty_timeout)
            })
            .map(|r| r.name.clone())
            .collect();
        for name in expired {
            // Hidden participants still in it (a recorder) leave with the room: their media channel
            // closes, which is their signal to finish.
            let left: Vec<Pid> = self
                .rooms
                .get(&name)
                .map(|r| r.participants.clone())
                .unwrap_or_default();
            for pid in left {
                self.remove_participant(pid);
            }
            self.rooms.remove(&name);
            Metrics::dec(&self.metrics.rooms);
            info!(room = %name, "room closed (empty)");
            self.sfu.remove_room(&name);
            self.sfu.release_room(&name, self.index);
            self.sfu.emit(SfuEvent::RoomClosed {
                room: name,
                at_ms: self.now_ms(),
            });
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
        const ACTIVE: Duration = Duration::from_millis(1500);
        for room in self.rooms.values() {
            for t in room.tracks.values() {
                if t.kind != RtpCodecKind::Video {
                    continue;
                }
                let active: Vec<u8> = (0u8..3)
                    .filter(|l| {
                        t.layer_seen[*l as usize].is_some_and(|at| now.duration_since(at) < ACTIVE)
                    })
                    .collect();
                let Some(&lowest) = active.first() else {
                    continue;
                };
                for sub in &t.subscribers {
                    let Some(out) = self
                        .parts
                        .get_mut(sub)
                        .and_then(|p| p.subs.get_mut(&*t.sid))
                    else {
                        continue;
                    };
                    let want = active
                        .iter()
                        .rev()
                        .find(|l| **l <= out.requested_layer)
                        .copied()
                        .unwrap_or(lowest);
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
        let mut speakers: Vec<(String, f32)> = room
            .participants
            .iter()
            .filter_map(|pid| self.parts.get(pid))
            .filter_map(|p| {
                let (level, at) = p.level?;
                // RFC 6464: 0 dBov loudest .. 127 silence. Speaking: a voiced packet in the last 500 ms.
                (now.duration_since(at) < Duration::from_millis(500))
                    .then(|| (p.sid.clone(), 1.0 - level as f32 / 127.0))
            })
            .collect();
        speakers.sort_by(|a, b| b.1.total_cmp(&a.1));
        let sids: Vec<String> = speakers.iter().map(|s| s.0.clone()).collect();
        if sids == room.last_speakers {
            return;
        }
        let mut infos: Vec<proto::SpeakerInfo> = speakers
            .iter()
            .map(|(sid, level)| proto::SpeakerInfo {
                sid: sid.clone(),
                level: *level,
                active: true,
            })
            .collect();
        for old in &room.last_speakers {
            if !sids.contains(old) {
                infos.push(proto::SpeakerInfo {
                    sid: old.clone(),
                    level: 0.0,
                    active: false,
                });
            }
        }
        let targets = room.participants.clone();
        if let Some(r) = self.rooms.get_mut(room_name) {
            r.last_speakers = sids;
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
