//! The TCP listener (RFC 6062 framing of STUN and ChannelData over a stream): accepting
//! connections under the global and per-IP caps, the per-connection read/write tasks, and the
//! table of open connections with its idle timeout (a connection that holds no allocation for
//! `tcp_idle_timeout` is closed; at the global cap the oldest such connection makes room).
//!
//! Time: idle decisions use the injected [`crate::Clock`] on the housekeeping sweep; the accept
//! back-off only sleeps (tokio timers), it never reads a clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, warn};

use super::{Allocation, ClientSink, Ctx, FiveTuple, Shared, State, Transport, TCP_QUEUE};
use crate::metrics::Metrics;
use crate::stun::*;

/// Connections closed by eviction or idle timeout whose tasks have not ended yet; while this
/// many are pending, a full table refuses instead of evicting (bounds FDs to cap + this).
const MAX_CLOSING: usize = 64;
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one WARN per this interval about failing `accept` calls (the rest are counted).
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(10);
/// How long a closing connection may take to flush queued replies.
const FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// One open TCP client connection.
struct TcpConn {
    ip: IpAddr,
    /// Admission order (eviction picks the lowest).
    seq: u64,
    /// Since when the connection has held no live allocation (`None`: it holds one).
    idle_since: Option<Duration>,
    /// Dropping this closes the connection; `None` once closing.
    close: Option<oneshot::Sender<()>>,
}

/// Open TCP client connections, for admission and idle timeouts.
#[derive(Default)]
pub(super) struct TcpTable {
    conns: HashMap<FiveTuple, TcpConn>,
    /// Connections per source IP that are not closing.
    per_ip: HashMap<IpAddr, usize>,
    /// Connections told to close whose task has not ended.
    closing: usize,
    next_seq: u64,
}

impl TcpTable {
    fn open(&self) -> usize {
        self.conns.len() - self.closing
    }

    /// Tell `five` to close (it stays in the table, counted as closing, until its task ends).
    fn close(&mut self, five: &FiveTuple) {
        let Some(c) = self.conns.get_mut(five) else {
            return;
        };
        if c.close.take().is_some() {
            self.closing += 1;
            if let Some(n) = self.per_ip.get_mut(&c.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_ip.remove(&c.ip);
                }
            }
        }
    }

    /// Close the oldest connection without a live allocation (from `ip` if given).
    fn evict_oldest_idle(
        &mut self,
        allocations: &HashMap<FiveTuple, Allocation>,
        ip: Option<IpAddr>,
        now: Duration,
    ) -> bool {
        let victim = self
            .conns
            .iter()
            .filter(|(five, c)| {
                c.close.is_some()
                    && ip.is_none_or(|ip| c.ip == ip)
                    && allocations.get(five).is_none_or(|a| a.expires_at <= now)
            })
            .min_by_key(|(_, c)| c.seq)
            .map(|(five, _)| *five);
        match victim {
            Some(five) => {
                debug!(client = %five.client, "TCP connection without allocation evicted");
                self.close(&five);
                true
            }
            None => false,
        }
    }
}

impl Shared {
    /// Admit a new TCP connection, or `None` if it must be closed at once.
    fn admit_tcp(&self, five: FiveTuple) -> Option<oneshot::Receiver<()>> {
        let mut st = self.lock();
        let now = self.now();
        let ip = five.client.ip();
        let State {
            tcp, allocations, ..
        } = &mut *st;
        let ip_full =
            tcp.per_ip.get(&ip).copied().unwrap_or(0) >= self.cfg.max_tcp_connections_per_ip;
        let all_full = tcp.open() >= self.cfg.max_tcp_connections;
        if ip_full || all_full {
            let evicted = tcp.closing < MAX_CLOSING
                && tcp.evict_oldest_idle(allocations, ip_full.then_some(ip), now);
            if !evicted {
                Metrics::inc(&self.metrics.tcp_refused);
                debug!(client = %five.client, ip_full, "TCP connection refused: at the cap");
                return None;
            }
            Metrics::inc(&self.metrics.tcp_idle_closed);
        }
        let (tx, rx) = oneshot::channel();
        tcp.next_seq += 1;
        tcp.conns.insert(
            five,
            TcpConn {
                ip,
                seq: tcp.next_seq,
                idle_since: Some(now),
                close: Some(tx),
            },
        );
        *tcp.per_ip.entry(ip).or_insert(0) += 1;
        Metrics::inc(&self.metrics.tcp_connections);
        Some(rx)
    }

    /// The connection's task ended: forget it.
    fn release_tcp(&self, five: &FiveTuple) {
        let mut st = self.lock();
        st.tcp.close(five);
        if st.tcp.conns.remove(five).is_some() {
            st.tcp.closing = st.tcp.closing.saturating_sub(1);
            self.metrics.tcp_connections.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Close connections that have held no live allocation for `tcp_idle_timeout`.
    pub(super) fn sweep_tcp(&self, st: &mut State, now: Duration) {
        let State {
            tcp, allocations, ..
        } = st;
        let mut idle = Vec::new();
        for (five, c) in tcp.conns.iter_mut() {
            if c.close.is_none() {
                continue;
            }
            if allocations.get(five).is_some_and(|a| a.expires_at > now) {
                c.idle_since = None;
                continue;
            }
            let since = *c.idle_since.get_or_insert(now);
            if now.saturating_sub(since) >= self.cfg.tcp_idle_timeout {
                idle.push(*five);
            }
        }
        for five in idle {
            debug!(client = %five.client, "TCP connection idle without allocation: closing");
            tcp.close(&five);
            Metrics::inc(&self.metrics.tcp_idle_closed);
        }
    }
}

/// Removes the connection from the table when its task ends, however it ends.
struct Registered {
    shared: Arc<Shared>,
    five: FiveTuple,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.shared.release_tcp(&self.five);
    }
}

pub(super) async fn tcp_accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut last_warn: Option<Duration> = None;
    let mut suppressed: u64 = 0;
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            r = listener.accept() => r,
        };
        let (stream, from) = match accepted {
            Ok(v) => {
                backoff = ACCEPT_BACKOFF_MIN;
                v
            }
            Err(e) => {
                // EMFILE / ENFILE / ENOBUFS: the pending connection stays in the backlog, so
                // retrying at once would spin. Back off (doubling) and warn rate-limited.
                Metrics::inc(&shared.metrics.tcp_accept_errors);
                let now = shared.now();
                if last_warn.is_none_or(|t| now.saturating_sub(t) >= ACCEPT_WARN_EVERY) {
                    warn!(error = %e, suppressed, backoff_ms = backoff.as_millis() as u64,
                        "TURN TCP accept failed; backing off");
                    last_warn = Some(now);
                    suppressed = 0;
                } else {
                    suppressed += 1;
                }
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let Ok(server) = stream.local_addr() else {
            continue;
        };
        let five = FiveTuple {
            client: from,
            server,
            transport: Transport::Tcp,
        };
        let Some(close) = shared.admit_tcp(five) else {
            drop(stream);
            continue;
        };
        let reg = Registered {
            shared: shared.clone(),
            five,
        };
        conns.spawn(tcp_conn(reg, stream, close, stop.clone()));
    }
    // Connections watch the same signal; wait for them to close.
    while conns.join_next().await.is_some() {}
}

async fn tcp_conn(
    reg: Registered,
    stream: TcpStream,
    mut close: oneshot::Receiver<()>,
    mut stop: watch::Receiver<bool>,
) {
    let shared = reg.shared.clone();
    let five = reg.five;
    let from = five.client;
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(TCP_QUEUE);
    let mut writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if wr.write_all(&frame).await.is_err() {
                break;
            }
        }
    });
    let ctx = Ctx {
        five,
        sink: ClientSink::Tcp(tx.clone()),
    };
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut closed_by_server = false;
    'conn: loop {
        let n = tokio::select! {
            _ = stop.changed() => break 'conn,
            _ = &mut close => {
                closed_by_server = true;
                break 'conn;
            }
            r = rd.read(&mut chunk) => match r {
                Ok(0) | Err(_) => break 'conn,
                Ok(n) => n,
            },
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            if buf.len() < 4 {
                break;
            }
            let frame_len = if buf[0] & 0xC0 == 0 {
                if buf.len() < HEADER_LEN {
                    break;
                }
                match stun_frame_len(&buf) {
                    Some(l) => l,
                    None => break 'conn,
                }
            } else {
                match channel_data_frame_len(&buf, true) {
                    Some(l) => l,
                    None => break 'conn,
                }
            };
            if buf.len() < frame_len {
                break;
            }
            let frame: Vec<u8> = buf.drain(..frame_len).collect();
            if let Some(reply) = shared.handle_packet(&ctx, &frame) {
                // A client that does not read must not pin the connection past a close.
                tokio::select! {
                    _ = stop.changed() => break 'conn,
                    _ = &mut close => {
                        closed_by_server = true;
                        break 'conn;
                    }
                    r = tx.send(reply) => if r.is_err() {
                        break 'conn;
                    },
                }
            }
        }
    }
    {
        let mut st = shared.lock();
        shared.remove_allocation(&mut st, &five);
    }
    drop(ctx);
    drop(tx);
    if closed_by_server
        || tokio::time::timeout(FLUSH_LIMIT, &mut writer)
            .await
            .is_err()
    {
        writer.abort();
        let _ = writer.await;
    }
    drop(reg);
    debug!(%from, closed_by_server, "TCP client disconnected");
}
