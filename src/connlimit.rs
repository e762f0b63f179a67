//! Connection admission for the TCP listeners (HTTP/WebSocket, ICE-TCP): a global cap, a cap per
//! source IP, and — at the global cap — eviction of the oldest connection that has not proven itself
//! yet (no complete request head on HTTP, no completed ICE binding on ICE-TCP), so that a flood of
//! idle connections from many addresses cannot lock real clients out. Used on accept and close only,
//! never per packet.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("connection cap reached and no unestablished connection to evict")]
    Global,
    #[error("per-address connection cap reached")]
    PerIp,
}

/// Caps of one listener.
pub struct ConnLimiter {
    name: &'static str,
    max: usize,
    per_ip: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    /// Admitted connections in admission order; established or released ones are skipped lazily.
    pending: VecDeque<Arc<Slot>>,
}

/// One admitted connection's state shared with its guard.
struct Slot {
    ip: IpAddr,
    /// Set by the connection once it has proven itself (lock-free; read under the limiter lock).
    established: AtomicBool,
    /// Its counts were given back (evicted, or the guard dropped). Written under the limiter lock.
    released: AtomicBool,
    /// Cancelled when the connection is evicted: its task closes it.
    evict: CancellationToken,
}

/// Held by a connection for as long as its socket is open; gives the slot back on drop.
pub struct ConnGuard {
    limiter: Arc<ConnLimiter>,
    slot: Arc<Slot>,
}

/// Cheap handle a connection's service uses to mark it established.
#[derive(Clone)]
pub struct Establish(Arc<Slot>);

impl Establish {
    pub fn mark(&self) {
        self.0.established.store(true, Ordering::Relaxed);
    }
}

impl ConnLimiter {
    pub fn new(name: &'static str, max: usize, per_ip: usize) -> Arc<ConnLimiter> {
        Arc::new(ConnLimiter {
            name,
            max: max.max(1),
            per_ip: per_ip.max(1),
            inner: Mutex::new(Inner::default()),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn per_ip(&self) -> usize {
        self.per_ip
    }

    /// Connections currently counted.
    pub fn open(&self) -> usize {
        self.inner.lock().map(|i| i.total).unwrap_or(0)
    }

    /// Admit a connection from `ip`, evicting the oldest unestablished connection when the global
    /// cap is reached.
    pub fn try_admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnGuard, Refused> {
        let mut inner = self.inner.lock().map_err(|_| Refused::Global)?;
        if inner.per_ip.get(&ip).copied().unwrap_or(0) >= self.per_ip {
            return Err(Refused::PerIp);
        }
        if inner.total >= self.max {
            let victim = loop {
                match inner.pending.pop_front() {
                    None => break None,
                    Some(s)
                        if s.established.load(Ordering::Relaxed)
                            || s.released.load(Ordering::Relaxed) => {}
                    Some(s) => break Some(s),
                }
            };
            let Some(victim) = victim else {
                return Err(Refused::Global);
            };
            tracing::debug!(listener = self.name, victim = %victim.ip, "connection cap: evicting the oldest unestablished connection");
            Self::release(&mut inner, &victim);
            victim.evict.cancel();
        }
        inner.total += 1;
        *inner.per_ip.entry(ip).or_insert(0) += 1;
        let slot = Arc::new(Slot {
            ip,
            established: AtomicBool::new(false),
            released: AtomicBool::new(false),
            evict: CancellationToken::new(),
        });
        inner.pending.push_back(slot.clone());
        // Bound the queue: established connections that never reach its front are pruned here.
        if inner.pending.len() > 2 * self.max + 16 {
            inner.pending.retain(|s| {
                !s.established.load(Ordering::Relaxed) && !s.released.load(Ordering::Relaxed)
            });
        }
        Ok(ConnGuard {
            limiter: self.clone(),
            slot,
        })
    }

    fn release(inner: &mut Inner, slot: &Slot) {
        if slot.released.swap(true, Ordering::Relaxed) {
            return;
        }
        inner.total = inner.total.saturating_sub(1);
        if let Some(n) = inner.per_ip.get_mut(&slot.ip) {
            *n -= 1;
            if *n == 0 {
                inner.per_ip.remove(&slot.ip);
            }
        }
    }
}

impl ConnGuard {
    /// The connection has proven itself: it is no longer evicted to make room.
    pub fn establish(&self) {
        self.slot.established.store(true, Ordering::Relaxed);
    }

    pub fn establisher(&self) -> Establish {
        Establish(self.slot.clone())
    }

    /// Cancelled when this connection is evicted.
    pub fn evicted(&self) -> CancellationToken {
        self.slot.evict.clone()
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.limiter.inner.lock() {
            ConnLimiter::release(&mut inner, &self.slot);
        }
    }
}

/// The next connection `limiter` admits on `listener` (refused ones are dropped, i.e. closed; a
/// failing accept backs off through `errors`), or None once `shutdown` fires.
pub async fn accept_admitted(
    listener: &tokio::net::TcpListener,
    limiter: &Arc<ConnLimiter>,
    errors: &mut crate::fdlimit::AcceptErrors,
    shutdown: &CancellationToken,
    what: &'static str,
) -> Option<(tokio::net::TcpStream, std::net::SocketAddr, ConnGuard)> {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return None,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                errors.on_error(&e).await;
                continue;
            }
        };
        match limiter.try_admit(peer.ip()) {
            Ok(guard) => {
                let _ = stream.set_nodelay(true);
                return Some((stream, peer, guard));
            }
            Err(why) => tracing::debug!(%peer, %why, listener = what, "connection refused"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_ip_and_evicts_oldest_pending() {
        let l = ConnLimiter::new("t", 3, 2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let c: IpAddr = [10, 0, 0, 3].into();
        let g1 = l.try_admit(a).unwrap();
        let g2 = l.try_admit(a).unwrap();
        assert_eq!(l.try_admit(a).err(), Some(Refused::PerIp));
        g1.establish();
        let g3 = l.try_admit(b).unwrap();
        // Full: the oldest unestablished (g2) is evicted, the established g1 is kept.
        let g4 = l.try_admit(c).unwrap();
        assert!(g2.evicted().is_cancelled());
        assert!(!g1.evicted().is_cancelled());
        assert_eq!(l.open(), 3);
        drop(g2); // evicted: already released, no double count
        assert_eq!(l.open(), 3);
        g3.establish();
        g4.establish();
        assert_eq!(l.try_admit(c).err(), Some(Refused::Global));
        drop(g1);
        assert_eq!(l.open(), 2);
        assert!(l.try_admit(a).is_ok());
    }
}
