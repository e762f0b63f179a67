//! Server counters, readable as a [`MetricsSnapshot`].

use std::sync::atomic::{AtomicU64, Ordering};

/// A point-in-time copy of the server's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Allocations currently alive.
    pub active_allocations: u64,
    /// Allocations created since start.
    pub allocations_total: u64,
    /// Payload bytes relayed client → peer.
    pub relayed_bytes_to_peers: u64,
    /// Payload bytes relayed peer → client.
    pub relayed_bytes_from_peers: u64,
    /// Requests that carried credentials which failed (bad/expired username, wrong password,
    /// wrong realm). The unauthenticated first request of the normal 401 challenge is not counted.
    pub auth_failures: u64,
    /// CreatePermission/ChannelBind refused (403) and Send indications dropped by the peer policy.
    pub forbidden_peer_refusals: u64,
    /// Allocate requests refused by the per-user quota (486) or the reservation cap (508).
    pub quota_refusals: u64,
    /// Relay ports currently held by EVEN-PORT reservations.
    pub reserved_ports: u64,
    /// TCP client connections currently open.
    pub tcp_connections: u64,
    /// TCP connections refused at accept (global or per-IP cap, every slot holding an
    /// allocation).
    pub tcp_refused: u64,
    /// TCP connections closed because they held no allocation for `tcp_idle_timeout`, or
    /// evicted (oldest without an allocation) to admit a new one at the cap.
    pub tcp_idle_closed: u64,
    /// Failed `accept` calls on the TCP listener (e.g. EMFILE), each followed by a back-off.
    pub tcp_accept_errors: u64,
}

impl MetricsSnapshot {
    /// Bytes relayed in both directions.
    pub fn relayed_bytes(&self) -> u64 {
        self.relayed_bytes_to_peers + self.relayed_bytes_from_peers
    }
}

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub active_allocations: AtomicU64,
    pub allocations_total: AtomicU64,
    pub relayed_bytes_to_peers: AtomicU64,
    pub relayed_bytes_from_peers: AtomicU64,
    pub auth_failures: AtomicU64,
    pub forbidden_peer_refusals: AtomicU64,
    pub quota_refusals: AtomicU64,
    pub tcp_connections: AtomicU64,
    pub tcp_refused: AtomicU64,
    pub tcp_idle_closed: AtomicU64,
    pub tcp_accept_errors: AtomicU64,
}

impl Metrics {
    pub fn snapshot(&self) -> MetricsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsSnapshot {
            active_allocations: l(&self.active_allocations),
            allocations_total: l(&self.allocations_total),
            relayed_bytes_to_peers: l(&self.relayed_bytes_to_peers),
            relayed_bytes_from_peers: l(&self.relayed_bytes_from_peers),
            auth_failures: l(&self.auth_failures),
            forbidden_peer_refusals: l(&self.forbidden_peer_refusals),
            quota_refusals: l(&self.quota_refusals),
            reserved_ports: 0,
            tcp_connections: l(&self.tcp_connections),
            tcp_refused: l(&self.tcp_refused),
            tcp_idle_closed: l(&self.tcp_idle_closed),
            tcp_accept_errors: l(&self.tcp_accept_errors),
        }
    }

    pub fn inc(a: &AtomicU64) {
        a.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(a: &AtomicU64, n: u64) {
        a.fetch_add(n, Ordering::Relaxed);
    }
}
