//! Allocation lifecycle: Allocate (quotas, EVEN-PORT and RESERVATION-TOKEN), relay socket
//! binding, and Refresh.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

use super::io::relay_loop;
use super::{
    live_allocation, Allocation, Authed, Ctx, Reservation, Shared, RESERVATION_LIFETIME,
    UDP_TRANSPORT,
};
use crate::metrics::Metrics;
use crate::stun::*;

impl Shared {
    pub(super) fn lifetime_for(&self, m: &Message<'_>) -> Duration {
        let requested = m
            .get_u32(ATTR_LIFETIME)
            .map(|s| Duration::from_secs(s.into()));
        let d = self.cfg.default_lifetime;
        let max = self.cfg.max_lifetime;
        match requested {
            Some(r) => r.max(d).min(max),
            None => d.min(max),
        }
    }

    pub(super) fn allocate(
        &self,
        ctx: &Ctx,
        m: &Message<'_>,
        auth: Authed,
    ) -> Result<Builder, Builder> {
        let mut st = self.lock();
        if st
            .allocations
            .get(&ctx.five)
            .is_some_and(|a| a.expires_at <= self.now())
        {
            // Expired but not swept yet: it no longer exists for the client.
            self.remove_allocation(&mut st, &ctx.five);
        }
        if let Some(a) = st.allocations.get(&ctx.five) {
            if a.allocate_txid == m.txid {
                // Retransmission of the Allocate that created it.
                return Err(Builder::from_raw(a.allocate_response.clone()));
            }
            return Err(self.error(m, 437, "Allocation Mismatch"));
        }
        match m.get(ATTR_REQUESTED_TRANSPORT) {
            None => return Err(self.error(m, 400, "Bad Request")),
            Some(v) if v.len() != 4 => return Err(self.error(m, 400, "Bad Request")),
            Some(v) if v[0] != UDP_TRANSPORT => {
                return Err(self.error(m, 442, "Unsupported Transport Protocol"))
            }
            Some(_) => {}
        }
        let token = match m.get(ATTR_RESERVATION_TOKEN) {
            None => None,
            Some(v) if v.len() == 8 && !m.has(ATTR_EVEN_PORT) => {
                let mut t = [0u8; 8];
                t.copy_from_slice(v);
                Some(t)
            }
            Some(_) => return Err(self.error(m, 400, "Bad Request")),
        };
        // EVEN-PORT: one byte, R bit (0x80) asks to reserve the next port.
        let even_port = match m.get(ATTR_EVEN_PORT) {
            None => None,
            Some(v) if !v.is_empty() => Some(v[0] & 0x80 != 0),
            Some(_) => return Err(self.error(m, 400, "Bad Request")),
        };
        if let Some(f) = m.get(ATTR_REQUESTED_ADDRESS_FAMILY) {
            if f.first() != Some(&0x01) {
                return Err(self.error(m, 440, "Address Family not Supported"));
            }
        }
        let now = self.now();
        // A reservation being redeemed frees its owner's quota slot as it becomes this
        // allocation; an EVEN-PORT(R) allocation needs a second slot for the port it reserves.
        let redeems_own = token.is_some_and(|t| {
            st.reservations
                .get(&t)
                .is_some_and(|r| r.user_id == auth.user_id)
        });
        let used = st
            .user_used(&auth.user_id)
            .saturating_sub(usize::from(redeems_own));
        let wanted = if even_port == Some(true) { 2 } else { 1 };
        if used + wanted > self.cfg.max_allocations_per_user {
            Metrics::inc(&self.metrics.quota_refusals);
            debug!(user = %auth.user_id, used, wanted, "allocation quota reached");
            return Err(self.error(m, 486, "Allocation Quota Reached"));
        }
        if st.allocations.len() >= self.cfg.max_allocations {
            return Err(self.error(m, 508, "Insufficient Capacity"));
        }
        if even_port == Some(true) && st.reservations.len() >= self.cfg.max_reservations {
            Metrics::inc(&self.metrics.quota_refusals);
            debug!(user = %auth.user_id, "reservation cap reached");
            return Err(self.error(m, 508, "Insufficient Capacity"));
        }
        let (relay, reserved) = if let Some(t) = token {
            match st.take_reservation(&t) {
                Some(r) if r.expires_at > now => (Arc::new(r.socket), None),
                _ => return Err(self.error(m, 508, "Insufficient Capacity")),
            }
        } else {
            match self.bind_relay(even_port.is_some(), even_port == Some(true)) {
                Ok((s, r)) => (Arc::new(s), r),
                Err(e) => {
                    warn!(error = %e, "could not bind a relay socket");
                    return Err(self.error(m, 508, "Insufficient Capacity"));
                }
            }
        };
        let Ok(local) = relay.local_addr() else {
            return Err(self.error(m, 508, "Insufficient Capacity"));
        };
        let relayed_addr = SocketAddr::new(self.cfg.advertised_relay_ip(), local.port());
        let mut lifetime = self.lifetime_for(m);
        if let Some(age) = self.cfg.max_allocation_age {
            lifetime = lifetime.min(age);
        }
        let mut b = Builder::new(METHOD_ALLOCATE, CLASS_SUCCESS, m.txid);
        b.xor_addr(ATTR_XOR_RELAYED_ADDRESS, relayed_addr);
        b.u32_attr(ATTR_LIFETIME, lifetime.as_secs() as u32);
        b.xor_addr(ATTR_XOR_MAPPED_ADDRESS, ctx.five.client);
        let Some(me) = self.self_arc() else {
            return Err(self.error(m, 508, "Insufficient Capacity"));
        };
        if let Some(socket) = reserved {
            let mut t = [0u8; 8];
            if getrandom::fill(&mut t).is_ok() && !st.reservations.contains_key(&t) {
                b.attr(ATTR_RESERVATION_TOKEN, &t);
                st.user_add(&auth.user_id);
                st.reservations.insert(
                    t,
                    Reservation {
                        socket,
                        expires_at: now + RESERVATION_LIFETIME,
                        user_id: auth.user_id.clone(),
                    },
                );
            }
        }
        self.software(&mut b);
        let mut cached = b.clone_builder();
        cached.integrity(&auth.key);
        if m.has(ATTR_FINGERPRINT) {
            cached.fingerprint();
        }

        st.next_id += 1;
        let id = st.next_id;
        let task = tokio::spawn(relay_loop(me, ctx.five, id, relay.clone()));
        st.user_add(&auth.user_id);
        info!(user = %auth.user_id, client = %ctx.five.client, relay = %relayed_addr,
            lifetime = lifetime.as_secs(), "allocation created");
        st.allocations.insert(
            ctx.five,
            Allocation {
                id,
                username: auth.username,
                user_id: auth.user_id,
                relay,
                relayed_addr,
                created_at: now,
                expires_at: now + lifetime,
                permissions: HashMap::new(),
                channels: HashMap::new(),
                peer_channels: HashMap::new(),
                sink: ctx.sink.clone(),
                task: Some(task),
                allocate_txid: m.txid,
                allocate_response: cached.finish(),
            },
        );
        Metrics::inc(&self.metrics.active_allocations);
        Metrics::inc(&self.metrics.allocations_total);
        Ok(b)
    }

    /// Bind a relay socket (even port if `even`); with `reserve`, also bind the next port and
    /// return it for a RESERVATION-TOKEN (RFC 5766 §6.2).
    pub(super) fn bind_relay(
        &self,
        even: bool,
        reserve: bool,
    ) -> std::io::Result<(UdpSocket, Option<UdpSocket>)> {
        let ip = self.cfg.relay_bind_ip;
        let bind_std = |port: u16| std::net::UdpSocket::bind(SocketAddr::new(ip, port));
        let to_tokio = |s: std::net::UdpSocket| -> std::io::Result<UdpSocket> {
            s.set_nonblocking(true)?;
            UdpSocket::from_std(s)
        };
        let attempt =
            |s: std::net::UdpSocket| -> std::io::Result<Option<(UdpSocket, Option<UdpSocket>)>> {
                let port = s.local_addr()?.port();
                if even && port & 1 == 1 {
                    return Ok(None);
                }
                if reserve {
                    let Some(next) = port.checked_add(1) else {
                        return Ok(None);
                    };
                    match bind_std(next) {
                        Ok(r) => Ok(Some((to_tokio(s)?, Some(to_tokio(r)?)))),
                        Err(_) => Ok(None),
                    }
                } else {
                    Ok(Some((to_tokio(s)?, None)))
                }
            };
        let exhausted = || {
            std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "no suitable relay port available",
            )
        };
        match self.cfg.relay_port_range {
            None => {
                for _ in 0..64 {
                    if let Some(found) = attempt(bind_std(0)?)? {
                        return Ok(found);
                    }
                }
                Err(exhausted())
            }
            Some((lo, hi)) => {
                let span = u32::from(hi - lo) + 1;
                let mut r = [0u8; 4];
                let _ = getrandom::fill(&mut r);
                let start = u32::from_be_bytes(r) % span;
                for i in 0..span {
                    let port = (u32::from(lo) + (start + i) % span) as u16;
                    if (even && port & 1 == 1) || (reserve && port >= hi) {
                        continue;
                    }
                    if let Ok(s) = bind_std(port) {
                        if let Some(found) = attempt(s)? {
                            return Ok(found);
                        }
                    }
                }
                Err(exhausted())
            }
        }
    }

    pub(super) fn refresh(
        &self,
        ctx: &Ctx,
        m: &Message<'_>,
        auth: &Authed,
    ) -> Result<Builder, Builder> {
        let mut st = self.lock();
        let now = self.now();
        let Some(a) = live_allocation(&mut st, &ctx.five, now) else {
            return Err(self.error(m, 437, "Allocation Mismatch"));
        };
        if a.username != auth.username {
            return Err(self.error(m, 441, "Wrong Credentials"));
        }
        let requested_zero = m.get_u32(ATTR_LIFETIME) == Some(0);
        let granted = if requested_zero {
            self.remove_allocation(&mut st, &ctx.five);
            Duration::ZERO
        } else {
            let mut lifetime = self.lifetime_for(m);
            if let Some(age) = self.cfg.max_allocation_age {
                let left = (a.created_at + age).saturating_sub(now);
                lifetime = lifetime.min(left);
            }
            a.expires_at = now + lifetime;
            lifetime
        };
        let mut b = Builder::new(METHOD_REFRESH, CLASS_SUCCESS, m.txid);
        b.u32_attr(ATTR_LIFETIME, granted.as_secs() as u32);
        self.software(&mut b);
        Ok(b)
    }
}
