//! Socket I/O and peer-connection plumbing: datagrams in (STUN gate, address → connection routing),
//! driving each `rtc` connection's outputs (datagrams, events, inbound messages), timers, and creating
//! and dropping peer connections.

use super::negotiation::ice_pwd;
use super::*;
use crate::sfu::peer;
use crate::sfu::stun_check::{self, StunFault};
use crate::sfu::SfuEvent;
use bytes::BytesMut;
use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::net::SocketAddr;
use std::time::Instant;
use tracing::{debug, warn};

impl Worker {
    pub(super) fn on_datagram(&mut self, data: &[u8], from: SocketAddr, tcp: bool, now: Instant) {
        let known = self.by_addr.get(&(from, tcp)).copied();
        let pc_id = match known {
            Some(id) => id,
            None => {
                // Unknown 4-tuple: only a STUN binding with one of our ufrags may introduce it.
                let Some(ufrag) = peer::is_stun(data)
                    .then(|| peer::stun_local_ufrag(data))
                    .flatten()
                else {
                    return;
                };
                let Some(&id) = self.by_ufrag.get(ufrag) else {
                    return;
                };
                id
            }
        };
        // STUN reaches the ICE agent only if it can act on it (an authenticated check): anything
        // else is a per-packet fault, counted and logged rate-limited, never handed to `rtc`.
        if peer::is_stun(data) {
            let Some(pc) = self.pcs.get_mut(&pc_id) else {
                return;
            };
            if pc.remote_pwd.is_none() {
                pc.remote_pwd = pc.rtc.remote_description().and_then(|d| ice_pwd(&d.sdp));
            }
            let checked = stun_check::check(data, &pc.ufrag, &pc.pwd, pc.remote_pwd.as_deref());
            if let Err(fault) = checked {
                self.stun_fault(fault, pc_id, from, now);
                return;
            }
        }
        if known.is_none() {
            if let Some(pc) = self.pcs.get_mut(&pc_id) {
                if pc.addrs.len() < 8 {
                    pc.addrs.push((from, tcp));
                    self.by_addr.insert((from, tcp), pc_id);
                }
            }
        }
        let Some(pc) = self.pcs.get_mut(&pc_id) else {
            return;
        };
        if known.is_some() {
            // Publisher media from a connected peer: the direct ingress (decrypted, then only the
            // interceptor and endpoint handlers; see vendor/README.md) instead of the whole
            // pipeline and its sweeps.
            match pc.rtc.read_rtp_direct(now, data) {
                Ok(true) => {
                    self.drive_media(pc_id, now);
                    return;
                }
                Ok(false) => {}
                Err(e) => {
                    debug!(pc = pc_id, error = %e, "srtp read");
                    return;
                }
            }
        }
        let msg = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: if tcp {
                    self.tcp_local.unwrap_or(self.local_addr)
                } else {
                    self.local_addr
                },
                peer_addr: from,
                ecn: None,
                transport_protocol: if tcp {
                    TransportProtocol::TCP
                } else {
                    TransportProtocol::UDP
                },
            },
            message: BytesMut::from(data),
        };
        if let Err(e) = pc.rtc.handle_read(msg) {
            debug!(pc = pc_id, error = %e, "handle_read");
        }
        self.drive(pc_id, now);
    }

    pub(super) fn stun_fault(
        &mut self,
        fault: StunFault,
        pc_id: PcId,
        from: SocketAddr,
        now: Instant,
    ) {
        self.counters.stun_dropped[fault.index()] += 1;
        if let Some(suppressed) = self.stun_log.hit(fault.index(), now) {
            warn!(
                worker = self.index,
                pc = pc_id,
                %from,
                reason = fault.reason(),
                suppressed,
                "dropped STUN packet (counted in parlor_stun_dropped_total; one line per reason per 10 s)"
            );
        }
    }

    /// Drain one peer connection's outputs: datagrams, events, inbound media.
    pub(super) fn drive(&mut self, pc_id: PcId, now: Instant) {
        self.flush(pc_id);
        // One output at a time (no buffering Vec): a handler may remove this peer connection.
        while let Some(ev) = self.pcs.get_mut(&pc_id).and_then(|pc| pc.rtc.poll_event()) {
            self.on_pc_event(pc_id, ev, now);
        }
        while let Some(m) = self.pcs.get_mut(&pc_id).and_then(|pc| pc.rtc.poll_read()) {
            self.on_pc_read(pc_id, m, now);
        }
        self.flush(pc_id);
        self.update_timeout(pc_id);
        if let Some(pc) = self.pcs.get_mut(&pc_id) {
            pc.route = pc.rtc.direct_route();
        }
    }

    /// After the direct ingress: the media it delivered, then only what the two handlers it ran
    /// can have changed (an event, the connection's next deadline). Nothing was written: the
    /// receive-side interceptors write on their timers.
    fn drive_media(&mut self, pc_id: PcId, now: Instant) {
        while let Some(m) = self
            .pcs
            .get_mut(&pc_id)
            .and_then(|pc| pc.rtc.poll_media_read())
        {
            self.on_pc_read(pc_id, m, now);
        }
        if self
            .pcs
            .get(&pc_id)
            .is_some_and(|pc| pc.rtc.has_pending_events())
        {
            self.drive(pc_id, now);
        } else {
            self.update_timeout(pc_id);
        }
    }

    pub(super) fn flush(&mut self, pc_id: PcId) {
        let Some(pc) = self.pcs.get_mut(&pc_id) else {
            return;
        };
        let mut sinks = super::egress::Sinks {
            batch: &mut self.batch,
            tcp: &mut self.tcp_conns,
        };
        while let Some(out) = pc.rtc.poll_write() {
            // Never blocks: a full TCP queue drops the packet (congestion); UDP waits in the batch
            // that `send_batch` hands to the kernel at once.
            let t = &out.transport;
            if !sinks.queue(t.peer_addr, t.transport_protocol, out.message.freeze()) {
                self.counters.send_failures += 1;
            }
        }
    }

    pub(super) fn send_batch(&mut self) {
        if !self.batch.is_empty() {
            use std::os::fd::AsRawFd;
            let (_, failed) = self.batch.send(self.socket.as_raw_fd());
            self.counters.send_failures += failed as u64;
        }
    }

    pub(super) fn update_timeout(&mut self, pc_id: PcId) {
        if let Some(pc) = self.pcs.get_mut(&pc_id) {
            let next = pc.rtc.poll_timeout();
            // Most drives leave the deadline where it was: nothing to schedule then.
            if next != pc.next_timeout {
                pc.next_timeout = next;
                if let Some(t) = next {
                    self.timers.push(std::cmp::Reverse((t, pc_id)));
                }
            }
        }
    }

    /// The earliest live peer-connection deadline (stale heap entries dropped on the way).
    pub(super) fn earliest(&mut self) -> Option<Instant> {
        while let Some(std::cmp::Reverse((t, id))) = self.timers.peek().copied() {
            if self
                .pcs
                .get(&id)
                .is_some_and(|pc| pc.next_timeout == Some(t))
            {
                return Some(t);
            }
            self.timers.pop();
        }
        None
    }

    /// Run every peer connection whose deadline is due: popped from the timer heap, no scan of
    /// the other connections.
    pub(super) fn on_timers(&mut self, now: Instant) {
        // Reused list (timers fire hundreds of times a second under load).
        let mut due = std::mem::take(&mut self.due_scratch);
        due.clear();
        while let Some(std::cmp::Reverse((t, id))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            if let Some(pc) = self.pcs.get_mut(&id) {
                if pc.next_timeout == Some(t) {
                    // Taken off the schedule: `drive` below schedules what `rtc` wants next.
                    pc.next_timeout = None;
                    due.push(id);
                }
            }
        }
        for &id in &due {
            if let Some(pc) = self.pcs.get_mut(&id) {
                let _ = pc.rtc.handle_timeout(now);
            }
            self.drive(id, now);
        }
        self.due_scratch = due;
    }

    pub(super) fn on_pc_event(&mut self, pc_id: PcId, ev: RTCPeerConnectionEvent, now: Instant) {
        let Some(pc) = self.pcs.get_mut(&pc_id) else {
            return;
        };
        let owner = pc.owner;
        let role = pc.role;
        match ev {
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                debug!(pc = pc_id, ?role, %state, "peer connection state");
                match state {
                    RTCPeerConnectionState::Connected => {
                        pc.connected = true;
                        self.on_media_connected(owner);
                    }
                    RTCPeerConnectionState::Failed => {
                        warn!(
                            pc = pc_id,
                            ?role,
                            "peer connection failed; removing participant"
                        );
                        self.send_out(owner, Out::Close("peer connection failed"));
                        self.remove_participant(owner, now);
                    }
                    _ => {}
                }
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) if role.publishes() => {
                self.on_track_open(pc_id, owner, init, now);
            }
            RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(id)) => {
                if let Some(dc) = pc.rtc.data_channel(id) {
                    match dc.label() {
                        "_reliable" => pc.reliable_dc = Some(id),
                        "_lossy" => pc.lossy_dc = Some(id),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }

    pub(super) fn on_media_connected(&mut self, pid: Pid) {
        let now_ms = self.now_ms();
        let Some(p) = self.parts.get_mut(&pid) else {
            return;
        };
        if p.media_connected_at_ms.is_none() {
            p.media_connected_at_ms = Some(now_ms);
            let ev = SfuEvent::MediaConnected {
                room: p.room.clone(),
                identity: p.identity.clone(),
                at_ms: now_ms,
            };
            let room = p.room.clone();
            self.sfu.emit(ev);
            self.publish_snapshot(&room);
        }
    }

    pub(super) fn new_pc(
        &mut self,
        owner: Pid,
        role: Role,
        now: Instant,
    ) -> Result<PcId, JoinError> {
        let id = self.next_id;
        self.next_id += 1;
        let ufrag = peer::ufrag_for_worker(self.index);
        let pwd = peer::random_string(24);
        let tcp_candidate = self
            .tcp_local
            .map(|t| SocketAddr::new(self.candidate_addr.ip(), t.port()));
        let rtc = peer::build(
            now,
            &ufrag,
            &pwd,
            self.candidate_addr,
            tcp_candidate,
            role.publishes(),
            role.subscribes(),
        )?;
        self.by_ufrag.insert(ufrag.clone(), id);
        self.pcs.insert(
            id,
            Pc {
                rtc,
                owner,
                role,
                ufrag,
                pwd,
                remote_pwd: None,
                addrs: Vec::new(),
                next_timeout: None,
                connected: false,
                route: None,
                inbound: FastMap::default(),
                reliable_dc: None,
                lossy_dc: None,
            },
        );
        Ok(id)
    }

    pub(super) fn drop_pc(&mut self, pc_id: PcId) {
        if let Some(mut pc) = self.pcs.remove(&pc_id) {
            let _ = pc.rtc.close();
            for a in pc.addrs {
                self.by_addr.remove(&a);
                if a.1 {
                    // Its ICE-TCP connection closes with it (the writer queue is dropped).
                    self.tcp_conns.remove(&a.0);
                }
            }
            self.by_ufrag.remove(&pc.ufrag);
        }
    }
}
