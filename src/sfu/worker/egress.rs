//! The worker's side of the direct egress (`sfu::egress`): queueing protected datagrams (the
//! wake-up's `sendmmsg` batch, or an ICE-TCP connection), answering subscribers' NACKs from the
//! streams' send caches, and writing each outbound stream's sender report once a second.

use super::*;
use crate::sfu::egress::{self, OutStream, Rtp};
use crate::sfu::sendmmsg::SendBatch;
use crate::sfu::tcp::TcpConn;
use bytes::Bytes;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::shared::TransportProtocol;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

/// Where the worker's datagrams go: this wake-up's UDP batch, or an ICE-TCP connection. Every
/// datagram leaves through `queue` (the direct egress, NACK answers, and `rtc`'s own output in
/// `Worker::flush`). Separate borrows of the worker's fields, so the forwarding loop can send
/// while it holds the room and the subscriber.
pub(super) struct Sinks<'a> {
    pub(super) batch: &'a mut SendBatch,
    pub(super) tcp: &'a mut HashMap<SocketAddr, TcpConn>,
}

impl Sinks<'_> {
    /// Queue a datagram for the peer at `to` (UDP: the batch; TCP: its connection's queue, which
    /// drops when full — the worker never waits).
    pub(super) fn queue(
        &mut self,
        to: SocketAddr,
        protocol: TransportProtocol,
        datagram: Bytes,
    ) -> bool {
        if protocol == TransportProtocol::TCP {
            return self
                .tcp
                .get_mut(&to)
                .is_some_and(|c| c.send(datagram.to_vec()));
        }
        self.batch.push(to, datagram);
        true
    }
}

/// Protect `p` for the leg `pc` (marshalled into the reused `plain`) and queue the datagram (see
/// `egress::protect`). False if it could not be sent (no selected route or SRTP context yet, TCP
/// queue full).
pub(super) fn send(
    pc: &mut Pc,
    stream: &mut OutStream,
    plain: &mut Vec<u8>,
    sinks: &mut Sinks<'_>,
    p: &Rtp<'_>,
    now: Instant,
) -> bool {
    let Some(route) = pc.route else {
        return false;
    };
    match egress::protect(&mut pc.rtc, stream, plain, p, now) {
        Some(datagram) => sinks.queue(route.peer_addr, route.protocol, datagram),
        None => false,
    }
}

impl Worker {
    /// A subscriber's NACK for track `sid` on its leg `pc_id`: resend what the send cache has.
    pub(super) fn answer_nack(&mut self, pc_id: PcId, sid: &str, nack: &TransportLayerNack) {
        let Some(pc) = self.pcs.get(&pc_id) else {
            return;
        };
        let Some(route) = pc.route else {
            return;
        };
        let Some(out) = self.parts.get(&pc.owner).and_then(|p| p.subs.get(sid)) else {
            return;
        };
        if out.ssrc != nack.media_ssrc {
            return;
        }
        let mut sinks = Sinks {
            batch: &mut self.batch,
            tcp: &mut self.tcp_conns,
        };
        for pair in &nack.nacks {
            for seq in pair.packet_list() {
                if let Some(d) = out.egress.cached(seq) {
                    if sinks.queue(route.peer_addr, route.protocol, d.clone()) {
                        self.counters.retransmits += 1;
                    }
                }
            }
        }
    }

    /// Sender reports for every outbound stream that is due one (called on housekeeping ticks).
    pub(super) fn send_reports(&mut self, now: Instant) {
        let unix_us = self.wake_unix_ms.max(0) as u64 * 1000;
        let mut due: Vec<(PcId, rtc::rtp_transceiver::RTCRtpSenderId, SenderReport)> = Vec::new();
        for p in self.parts.values_mut() {
            if p.local.is_some() {
                continue;
            }
            for out in p.subs.values_mut() {
                let Some(sender) = out.sender_id else {
                    continue;
                };
                if let Some(sr) = out.egress.report_due(out.ssrc, now, unix_us) {
                    due.push((p.sub_pc, sender, sr));
                }
            }
        }
        for (pc_id, sender, sr) in due {
            if let Some(pc) = self.pcs.get_mut(&pc_id) {
                if let Some(mut s) = pc.rtc.rtp_sender(sender) {
                    let _ = s.write_rtcp(now, vec![Box::new(sr)]);
                }
            }
            self.flush(pc_id);
        }
    }
}
