//! Relaying: the peer policy check, CreatePermission and ChannelBind, and the data path in both
//! directions (Send / ChannelData to peers, Data indications / ChannelData to clients).

use std::net::SocketAddr;

use tracing::debug;

use super::{live_allocation, Authed, Ctx, FiveTuple, Shared, MAX_PERMISSIONS};
use crate::metrics::Metrics;
use crate::stun::*;

impl Shared {
    pub(super) fn peer_allowed(&self, peer: SocketAddr) -> Result<(), (u16, &'static str)> {
        if !peer.is_ipv4() {
            return Err((443, "Peer Address Family Mismatch"));
        }
        if let Err(reason) = self.policy.check_peer(peer) {
            Metrics::inc(&self.metrics.forbidden_peer_refusals);
            debug!(%peer, ?reason, "relay to peer refused by policy");
            return Err((403, "Forbidden"));
        }
        Ok(())
    }

    pub(super) fn create_permission(
        &self,
        ctx: &Ctx,
        m: &Message<'_>,
        auth: &Authed,
    ) -> Result<Builder, Builder> {
        let mut peers = Vec::new();
        for v in m.get_all(ATTR_XOR_PEER_ADDRESS) {
            match decode_xor_addr(v, &m.txid) {
                Ok(p) => peers.push(p),
                Err(()) => return Err(self.error(m, 400, "Bad Request")),
            }
        }
        if peers.is_empty() {
            return Err(self.error(m, 400, "Bad Request"));
        }
        let mut st = self.lock();
        let now = self.now();
        let Some(a) = live_allocation(&mut st, &ctx.five, now) else {
            return Err(self.error(m, 437, "Allocation Mismatch"));
        };
        if a.username != auth.username {
            return Err(self.error(m, 441, "Wrong Credentials"));
        }
        for p in &peers {
            if let Err((code, reason)) = self.peer_allowed(*p) {
                return Err(self.error(m, code, reason));
            }
        }
        let new_ips = peers
            .iter()
            .filter(|p| !a.permissions.contains_key(&p.ip()))
            .count();
        if a.permissions.len() + new_ips > MAX_PERMISSIONS {
            return Err(self.error(m, 508, "Insufficient Capacity"));
        }
        for p in peers {
            a.permissions
                .insert(p.ip(), now + self.cfg.permission_lifetime);
        }
        let mut b = Builder::new(METHOD_CREATE_PERMISSION, CLASS_SUCCESS, m.txid);
        self.software(&mut b);
        Ok(b)
    }

    pub(super) fn channel_bind(
        &self,
        ctx: &Ctx,
        m: &Message<'_>,
        auth: &Authed,
    ) -> Result<Builder, Builder> {
        let channel = match m.get(ATTR_CHANNEL_NUMBER) {
            Some(v) if v.len() == 4 => u16::from_be_bytes([v[0], v[1]]),
            _ => return Err(self.error(m, 400, "Bad Request")),
        };
        if !(0x4000..=0x7FFF).contains(&channel) {
            return Err(self.error(m, 400, "Bad Request"));
        }
        let peer = match m.xor_addr(ATTR_XOR_PEER_ADDRESS) {
            Some(Ok(p)) => p,
            _ => return Err(self.error(m, 400, "Bad Request")),
        };
        let mut st = self.lock();
        let now = self.now();
        let Some(a) = live_allocation(&mut st, &ctx.five, now) else {
            return Err(self.error(m, 437, "Allocation Mismatch"));
        };
        if a.username != auth.username {
            return Err(self.error(m, 441, "Wrong Credentials"));
        }
        if let Err((code, reason)) = self.peer_allowed(peer) {
            return Err(self.error(m, code, reason));
        }
        let bound_peer = a
            .channels
            .get(&channel)
            .filter(|(_, exp)| *exp >= now)
            .map(|(p, _)| *p);
        let bound_channel = a.peer_channels.get(&peer).copied();
        let conflict = matches!(bound_peer, Some(p) if p != peer)
            || matches!(bound_channel, Some(c) if c != channel && a.channels.get(&c).is_some_and(|(_, e)| *e >= now));
        if conflict {
            return Err(self.error(m, 400, "Bad Request"));
        }
        if !a.permissions.contains_key(&peer.ip()) && a.permissions.len() >= MAX_PERMISSIONS {
            return Err(self.error(m, 508, "Insufficient Capacity"));
        }
        if let Some(old) = bound_channel {
            a.channels.remove(&old);
        }
        a.channels
            .insert(channel, (peer, now + self.cfg.channel_lifetime));
        a.peer_channels.insert(peer, channel);
        a.permissions
            .insert(peer.ip(), now + self.cfg.permission_lifetime);
        let mut b = Builder::new(METHOD_CHANNEL_BIND, CLASS_SUCCESS, m.txid);
        self.software(&mut b);
        Ok(b)
    }

    // ---- data path ----

    pub(super) fn on_send_indication(&self, ctx: &Ctx, m: &Message<'_>) {
        let (Some(Ok(peer)), Some(data)) = (m.xor_addr(ATTR_XOR_PEER_ADDRESS), m.get(ATTR_DATA))
        else {
            return;
        };
        if self.policy.check_peer(peer).is_err() {
            Metrics::inc(&self.metrics.forbidden_peer_refusals);
            return;
        }
        let mut st = self.lock();
        let now = self.now();
        let Some(a) = live_allocation(&mut st, &ctx.five, now) else {
            return;
        };
        if a.permissions.get(&peer.ip()).is_none_or(|e| *e < now) {
            return;
        }
        if a.relay.try_send_to(data, peer).is_ok() {
            Metrics::add(&self.metrics.relayed_bytes_to_peers, data.len() as u64);
        }
    }

    pub(super) fn on_channel_data(&self, ctx: &Ctx, pkt: &[u8]) {
        let Some(len) = channel_data_frame_len(pkt, false) else {
            return;
        };
        if pkt.len() < len {
            return;
        }
        let channel = u16::from_be_bytes([pkt[0], pkt[1]]);
        let data = &pkt[4..len];
        let mut st = self.lock();
        let now = self.now();
        let Some(a) = live_allocation(&mut st, &ctx.five, now) else {
            return;
        };
        let Some((peer, exp)) = a.channels.get(&channel).copied() else {
            return;
        };
        if exp < now || a.permissions.get(&peer.ip()).is_none_or(|e| *e < now) {
            return;
        }
        if a.relay.try_send_to(data, peer).is_ok() {
            Metrics::add(&self.metrics.relayed_bytes_to_peers, data.len() as u64);
        }
    }

    pub(super) fn on_peer_packet(&self, five: &FiveTuple, id: u64, peer: SocketAddr, data: &[u8]) {
        let mut st = self.lock();
        let now = self.now();
        let Some(a) = live_allocation(&mut st, five, now) else {
            return;
        };
        if a.id != id || a.permissions.get(&peer.ip()).is_none_or(|e| *e < now) {
            return;
        }
        let channel = a
            .peer_channels
            .get(&peer)
            .copied()
            .filter(|c| a.channels.get(c).is_some_and(|(_, e)| *e >= now));
        let frame = match channel {
            Some(c) => encode_channel_data(c, data, a.sink.pads_channel_data()),
            None => {
                let mut b = Builder::new(METHOD_DATA, CLASS_INDICATION, self.next_txid());
                b.xor_addr(ATTR_XOR_PEER_ADDRESS, peer);
                b.attr(ATTR_DATA, data);
                b.finish()
            }
        };
        if a.sink.try_send(frame) {
            Metrics::add(&self.metrics.relayed_bytes_from_peers, data.len() as u64);
        }
    }
}
