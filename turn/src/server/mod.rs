//! The embedded TURN server: UDP and TCP listeners, one UDP relay socket per allocation.
//!
//! This module owns the public [`TurnServer`] handle (start-up, shutdown), the shared state
//! (allocation table, quotas, reservations) and request dispatch; the work is split into
//! `auth` (nonces, MESSAGE-INTEGRITY), `allocate` (Allocate / Refresh / relay sockets),
//! `relay` (permissions, channels, data path), `tcp` (the TCP listener) and `io` (UDP
//! listener, relay and sweep tasks).

mod allocate;
mod auth;
mod fuzz;
mod io;
mod relay;
mod tcp;

pub(crate) use fuzz::FuzzServer;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info};

use crate::clock::Clock;
use crate::config::TurnConfig;
use crate::credentials::CredentialValidator;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::policy::PeerPolicy;
use crate::stun::*;
use crate::TurnError;

const UDP_TRANSPORT: u8 = 17;
const MAX_DATAGRAM: usize = 65_536;
/// Outgoing frames queued per TCP client before relayed data is dropped.
const TCP_QUEUE: usize = 512;
/// Peer IPs one allocation may hold permissions for (bounds memory per allocation).
const MAX_PERMISSIONS: usize = 1024;
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How long a port reserved by EVEN-PORT(R) is kept (RFC 5766 §6.2: about 30 s).
const RESERVATION_LIFETIME: Duration = Duration::from_secs(30);

/// Addresses the server actually listens on (useful with port 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddrs {
    /// UDP listener.
    pub udp: SocketAddr,
    /// TCP listener, if configured.
    pub tcp: Option<SocketAddr>,
}

/// A running TURN server. Dropping it without [`TurnServer::shutdown`] leaves its tasks running
/// until the runtime stops.
pub struct TurnServer {
    shared: Arc<Shared>,
    addrs: LocalAddrs,
    tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for TurnServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnServer")
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Transport {
    Udp,
    Tcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FiveTuple {
    client: SocketAddr,
    server: SocketAddr,
    transport: Transport,
}

#[derive(Clone)]
enum ClientSink {
    Udp {
        socket: Arc<UdpSocket>,
        client: SocketAddr,
    },
    Tcp(mpsc::Sender<Vec<u8>>),
}

impl ClientSink {
    /// Non-blocking send of relayed data; dropped (like any UDP loss) when the path is full.
    fn try_send(&self, frame: Vec<u8>) -> bool {
        match self {
            ClientSink::Udp { socket, client } => socket.try_send_to(&frame, *client).is_ok(),
            ClientSink::Tcp(tx) => tx.try_send(frame).is_ok(),
        }
    }

    fn pads_channel_data(&self) -> bool {
        matches!(self, ClientSink::Tcp(_))
    }
}

struct Allocation {
    id: u64,
    username: String,
    user_id: String,
    relay: Arc<UdpSocket>,
    relayed_addr: SocketAddr,
    created_at: Duration,
    expires_at: Duration,
    permissions: HashMap<IpAddr, Duration>,
    channels: HashMap<u16, (SocketAddr, Duration)>,
    peer_channels: HashMap<SocketAddr, u16>,
    sink: ClientSink,
    task: Option<JoinHandle<()>>,
    allocate_txid: [u8; 12],
    allocate_response: Vec<u8>,
}

/// A relay port kept by EVEN-PORT(R) for a later Allocate with its RESERVATION-TOKEN. It counts
/// against its owner's allocation quota and the global reservation cap until used or expired.
struct Reservation {
    socket: UdpSocket,
    expires_at: Duration,
    user_id: String,
}

#[derive(Default)]
struct State {
    allocations: HashMap<FiveTuple, Allocation>,
    /// Allocations plus unexpired reservations per user id (the quota counter).
    per_user: HashMap<String, usize>,
    /// RESERVATION-TOKEN → reserved relay socket.
    reservations: HashMap<[u8; 8], Reservation>,
    /// Open TCP client connections (admission, idle timeouts).
    tcp: tcp::TcpTable,
    next_id: u64,
}

impl State {
    fn user_used(&self, user_id: &str) -> usize {
        self.per_user.get(user_id).copied().unwrap_or(0)
    }

    fn user_add(&mut self, user_id: &str) {
        *self.per_user.entry(user_id.to_owned()).or_insert(0) += 1;
    }

    fn user_release(&mut self, user_id: &str) {
        if let Some(n) = self.per_user.get_mut(user_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_user.remove(user_id);
            }
        }
    }

    /// Take a reservation out of the table (used or expired), releasing its quota slot.
    fn take_reservation(&mut self, token: &[u8; 8]) -> Option<Reservation> {
        let r = self.reservations.remove(token)?;
        self.user_release(&r.user_id);
        Some(r)
    }
}

struct Shared {
    cfg: TurnConfig,
    validator: CredentialValidator,
    policy: PeerPolicy,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    nonce_key: [u8; 32],
    txid_prefix: [u8; 4],
    txid_counter: AtomicU64,
    state: Mutex<State>,
    me: Weak<Shared>,
}

struct Authed {
    username: String,
    user_id: String,
    key: [u8; 16],
}

/// Per-packet context: who sent it, on which listener, and how to answer.
struct Ctx {
    five: FiveTuple,
    sink: ClientSink,
}

impl TurnServer {
    /// Bind the listeners and start serving. Must be called inside a Tokio runtime.
    pub async fn start(config: TurnConfig, clock: Arc<dyn Clock>) -> Result<Self, TurnError> {
        config.validate()?;
        let udp = UdpSocket::bind(config.udp_listen)
            .await
            .map_err(|source| TurnError::Bind {
                addr: config.udp_listen,
                source,
            })?;
        let udp_addr = udp.local_addr()?;
        let tcp = match config.tcp_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| TurnError::Bind { addr, source })?,
            ),
            None => None,
        };
        let tcp_addr = match &tcp {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let listener_ports = std::iter::once(udp_addr.port())
            .chain(tcp_addr.map(|a| a.port()))
            .collect();
        let shared = Shared::new(config, clock, listener_ports)?;
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(io::udp_loop(
            shared.clone(),
            Arc::new(udp),
            stop_rx.clone(),
        )));
        if let Some(listener) = tcp {
            tasks.push(tokio::spawn(tcp::tcp_accept_loop(
                shared.clone(),
                listener,
                stop_rx.clone(),
            )));
        }
        tasks.push(tokio::spawn(io::sweep_loop(shared.clone(), stop_rx)));
        info!(udp = %udp_addr, tcp = tcp_addr.map(tracing::field::display), realm = %shared.cfg.realm, "TURN server started");
        Ok(Self {
            shared,
            addrs: LocalAddrs {
                udp: udp_addr,
                tcp: tcp_addr,
            },
            tasks,
            stop,
        })
    }

    /// The bound listener addresses.
    pub fn local_addrs(&self) -> LocalAddrs {
        self.addrs
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        let mut m = self.shared.metrics.snapshot();
        m.reserved_ports = self.shared.lock().reservations.len() as u64;
        m
    }

    /// The credential validator built from the configured secrets (mint with it).
    pub fn credentials(&self) -> &CredentialValidator {
        &self.shared.validator
    }

    /// Stop the listeners, close every allocation and TCP connection, and wait for the tasks.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        let relay_tasks: Vec<JoinHandle<()>> = {
            let mut st = self.shared.lock();
            let keys: Vec<FiveTuple> = st.allocations.keys().copied().collect();
            let mut tasks = Vec::new();
            for k in keys {
                if let Some(t) = st.allocations.get_mut(&k).and_then(|a| a.task.take()) {
                    tasks.push(t);
                }
                self.shared.remove_allocation(&mut st, &k);
            }
            st.reservations.clear();
            st.per_user.clear();
            tasks
        };
        // Wait until the aborted relay tasks have dropped their sockets.
        for t in relay_tasks {
            t.abort();
            let _ = t.await;
        }
        info!("TURN server stopped");
    }
}

enum Reply {
    /// Unauthenticated reply (error before auth, Binding).
    Plain(Builder),
    /// Reply signed with the long-term key.
    Signed(Builder, [u8; 16]),
}

impl Shared {
    /// The server state without listeners (`start` binds those; the fuzz entry uses none).
    fn new(
        config: TurnConfig,
        clock: Arc<dyn Clock>,
        listener_ports: Vec<u16>,
    ) -> Result<Arc<Self>, TurnError> {
        let validator = CredentialValidator::new(&config.secrets)
            .map_err(|e| TurnError::Config(e.to_string()))?;
        let mut nonce_key = [0u8; 32];
        let mut txid_prefix = [0u8; 4];
        getrandom::fill(&mut nonce_key).map_err(|e| TurnError::Random(e.to_string()))?;
        getrandom::fill(&mut txid_prefix).map_err(|e| TurnError::Random(e.to_string()))?;
        let policy = PeerPolicy::new(
            config.allowed_peer_cidrs.clone(),
            config.denied_peer_cidrs.clone(),
        )
        .with_server(
            config.server_ips(),
            config.server_peer_ports.clone(),
            config.relay_port_range,
            listener_ports,
        )
        .allow_list_covers_server(config.allow_list_covers_server);
        Ok(Arc::new_cyclic(|me| Shared {
            cfg: config,
            validator,
            policy,
            clock,
            metrics: Metrics::default(),
            nonce_key,
            txid_prefix,
            txid_counter: AtomicU64::new(0),
            state: Mutex::new(State::default()),
            me: me.clone(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than stopping the server would: keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> Duration {
        self.clock.unix_now()
    }

    fn next_txid(&self) -> [u8; 12] {
        let mut t = [0u8; 12];
        t[..4].copy_from_slice(&self.txid_prefix);
        let n = self.txid_counter.fetch_add(1, Ordering::Relaxed);
        t[4..].copy_from_slice(&n.to_be_bytes());
        t
    }

    fn handle_packet(&self, ctx: &Ctx, pkt: &[u8]) -> Option<Vec<u8>> {
        if pkt.is_empty() {
            return None;
        }
        if (0x40..=0x7F).contains(&pkt[0]) {
            self.on_channel_data(ctx, pkt);
            return None;
        }
        let msg = Message::parse(pkt)?;
        if !fingerprint_ok(&msg) {
            debug!("dropping STUN message with bad FINGERPRINT");
            return None;
        }
        let with_fp = msg.has(ATTR_FINGERPRINT);
        match msg.class {
            CLASS_REQUEST => {
                let reply = self.handle_request(ctx, &msg);
                Some(finish(reply, with_fp))
            }
            CLASS_INDICATION => {
                if msg.method == METHOD_SEND {
                    self.on_send_indication(ctx, &msg);
                }
                None
            }
            _ => None,
        }
    }

    fn software(&self, b: &mut Builder) {
        if let Some(s) = &self.cfg.software {
            b.attr(ATTR_SOFTWARE, s.as_bytes());
        }
    }

    fn error(&self, m: &Message<'_>, code: u16, reason: &str) -> Builder {
        let mut b = Builder::new(m.method, CLASS_ERROR, m.txid);
        b.error(code, reason);
        self.software(&mut b);
        b
    }

    fn handle_request(&self, ctx: &Ctx, m: &Message<'_>) -> Reply {
        let unknown = m.unknown_required();
        if !unknown.is_empty() {
            let mut b = self.error(m, 420, "Unknown Attribute");
            let v: Vec<u8> = unknown.iter().flat_map(|t| t.to_be_bytes()).collect();
            b.attr(ATTR_UNKNOWN_ATTRIBUTES, &v);
            return Reply::Plain(b);
        }
        if m.method == METHOD_BINDING {
            let mut b = Builder::new(METHOD_BINDING, CLASS_SUCCESS, m.txid);
            b.xor_addr(ATTR_XOR_MAPPED_ADDRESS, ctx.five.client);
            self.software(&mut b);
            return Reply::Plain(b);
        }
        if !matches!(
            m.method,
            METHOD_ALLOCATE | METHOD_REFRESH | METHOD_CREATE_PERMISSION | METHOD_CHANNEL_BIND
        ) {
            return Reply::Plain(self.error(m, 400, "Bad Request"));
        }
        let auth = match self.authenticate(m) {
            Ok(a) => a,
            Err(reply) => return reply,
        };
        let key = auth.key;
        let result = match m.method {
            METHOD_ALLOCATE => self.allocate(ctx, m, auth),
            METHOD_REFRESH => self.refresh(ctx, m, &auth),
            METHOD_CREATE_PERMISSION => self.create_permission(ctx, m, &auth),
            _ => self.channel_bind(ctx, m, &auth),
        };
        match result {
            Ok(b) | Err(b) => Reply::Signed(b, key),
        }
    }

    // ---- housekeeping ----

    fn sweep(&self) {
        let mut st = self.lock();
        let now = self.now();
        let expired: Vec<FiveTuple> = st
            .allocations
            .iter()
            .filter(|(_, a)| a.expires_at <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            debug!(client = %k.client, "allocation expired");
            self.remove_allocation(&mut st, &k);
        }
        let stale: Vec<[u8; 8]> = st
            .reservations
            .iter()
            .filter(|(_, r)| r.expires_at <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in stale {
            st.take_reservation(&t);
        }
        for a in st.allocations.values_mut() {
            a.permissions.retain(|_, e| *e >= now);
            a.channels.retain(|_, (_, e)| *e >= now);
            let channels = &a.channels;
            a.peer_channels.retain(|_, c| channels.contains_key(c));
        }
        self.sweep_tcp(&mut st, now);
    }

    fn remove_allocation(&self, st: &mut State, five: &FiveTuple) {
        if let Some(mut a) = st.allocations.remove(five) {
            if let Some(t) = a.task.take() {
                t.abort();
            }
            st.user_release(&a.user_id);
            self.metrics
                .active_allocations
                .fetch_sub(1, Ordering::Relaxed);
            debug!(relay = %a.relayed_addr, user = %a.user_id, "allocation removed");
        }
    }

    fn self_arc(&self) -> Option<Arc<Shared>> {
        self.me.upgrade()
    }
}

/// The allocation on `five` if it has not expired.
fn live_allocation<'s>(
    st: &'s mut State,
    five: &FiveTuple,
    now: Duration,
) -> Option<&'s mut Allocation> {
    st.allocations.get_mut(five).filter(|a| a.expires_at > now)
}

fn finish(reply: Reply, fingerprint: bool) -> Vec<u8> {
    let mut b = match reply {
        Reply::Plain(b) => b,
        Reply::Signed(mut b, key) => {
            if b.is_raw() {
                return b.finish();
            }
            b.integrity(&key);
            b
        }
    };
    if b.is_raw() {
        return b.finish();
    }
    if fingerprint {
        b.fingerprint();
    }
    b.finish()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
