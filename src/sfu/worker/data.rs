//! Data relay: LiveKit `DataPacket`s from one participant's data channels to the others', and the
//! server's own packets (RoomService.SendData) to a room.

use super::*;
use crate::metrics::Metrics;
use bytes::BytesMut;
use parlor_signaling::protocol::proto;
use std::time::Instant;

impl Worker {
    pub(super) fn on_data(
        &mut self,
        pc_id: PcId,
        dc_id: rtc::data_channel::RTCDataChannelId,
        data: BytesMut,
        now: Instant,
    ) {
        use prost::Message;
        let Some(pc) = self.pcs.get(&pc_id) else {
            return;
        };
        let owner = pc.owner;
        let reliable = pc.reliable_dc == Some(dc_id);
        if data.len() > 64 * 1024 {
            return;
        }
        let Ok(packet) = proto::DataPacket::decode(&data[..]) else {
            Metrics::inc(&self.metrics.signal_errors);
            return;
        };
        self.relay_data(owner, packet, reliable, now);
    }

    /// Relay `packet` from `owner` to the other participants of its room (or its destination
    /// identities), over their reliable or lossy data channel.
    pub(super) fn relay_data(
        &mut self,
        owner: Pid,
        mut packet: proto::DataPacket,
        reliable: bool,
        now: Instant,
    ) {
        let Some(p) = self.parts.get_mut(&owner) else {
            return;
        };
        if !p.perms.can_publish_data {
            return;
        }
        // Only user payloads and a few benign kinds are relayed; the sender's identity is authoritative.
        packet.participant_identity = p.identity.clone();
        packet.participant_sid = p.sid.clone();
        p.data_seq += 1;
        packet.sequence = p.data_seq;
        #[allow(deprecated)]
        if let Some(proto::data_packet::Value::User(u)) = packet.value.as_mut() {
            u.participant_identity = p.identity.clone();
            u.participant_sid = p.sid.clone();
        }
        let room = p.room.clone();
        self.deliver_data(&room, Some(owner), &packet, reliable, now);
    }

    /// A data packet from the server itself (RoomService.SendData: no sender identity) to everyone
    /// in `room` or its destination identities. False when the room is not open here.
    pub(super) fn server_data(
        &mut self,
        room: &str,
        packet: proto::DataPacket,
        reliable: bool,
        now: Instant,
    ) -> bool {
        if !self.rooms.contains_key(room) {
            return false;
        }
        self.deliver_data(room, None, &packet, reliable, now);
        true
    }

    /// `packet` to the participants of `room` other than `except` (only its destination
    /// identities when it names some), over their reliable or lossy data channel.
    fn deliver_data(
        &mut self,
        room: &str,
        except: Option<Pid>,
        packet: &proto::DataPacket,
        reliable: bool,
        now: Instant,
    ) {
        use prost::Message;
        let dest = &packet.destination_identities;
        let bytes = BytesMut::from(&packet.encode_to_vec()[..]);
        let Some(r) = self.rooms.get(room) else {
            return;
        };
        let targets: Vec<Pid> = r
            .participants
            .iter()
            .copied()
            .filter(|&x| Some(x) != except)
            .filter(|x| {
                dest.is_empty()
                    || self
                        .parts
                        .get(x)
                        .is_some_and(|o| dest.contains(&o.identity))
            })
            .collect();
        for t in targets {
            let Some(tp) = self.parts.get(&t) else {
                continue;
            };
            let pub_pc = tp.pub_pc;
            if let Some(tpc) = self.pcs.get_mut(&pub_pc) {
                let dc = if reliable {
                    tpc.reliable_dc
                } else {
                    tpc.lossy_dc.or(tpc.reliable_dc)
                };
                if let Some(dc) = dc {
                    if let Some(mut ch) = tpc.rtc.data_channel(dc) {
                        let _ = ch.send(now, bytes.clone());
                    }
                }
            }
            self.flush(pub_pc);
            self.update_timeout(pub_pc);
        }
    }
}
