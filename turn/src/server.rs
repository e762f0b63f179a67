//! The embedded TURN server: UDP and TCP listeners, one UDP relay socket per allocation.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha1::Sha1;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

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

#[derive(Default)]
struct State {
    allocations: HashMap<FiveTuple, Allocation>,
    per_user: HashMap<String, usize>,
    /// RESERVATION-TOKEN → reserved relay socket and its expiry.
    reservations: HashMap<[u8; 8], (UdpSocket, Duration)>,
    next_id: u64,
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
        let (udp_listen, tcp_listen) = (config.udp_listen, config.tcp_listen);
        let shared = Shared::new(config, clock)?;
        let udp = UdpSocket::bind(udp_listen)
            .await
            .map_err(|source| TurnError::Bind {
                addr: udp_listen,
                source,
            })?;
        let udp_addr = udp.local_addr()?;
        let tcp = match tcp_listen {
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
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(udp_loop(
            shared.clone(),
            Arc::new(udp),
            stop_rx.clone(),
        )));
        if let Some(listener) = tcp {
            tasks.push(tokio::spawn(tcp_accept_loop(
                shared.clone(),
                listener,
                stop_rx.clone(),
            )));
        }
        tasks.push(tokio::spawn(sweep_loop(shared.clone(), stop_rx)));
        info!(udp = %udp_addr, tcp = ?tcp_addr, realm = %shared.cfg.realm, "TURN server started");
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
        self.shared.metrics.snapshot()
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

async fn udp_loop(shared: Arc<Shared>, socket: Arc<UdpSocket>, mut stop: watch::Receiver<bool>) {
    let server = match socket.local_addr() {
        Ok(a) => a,
        Err(e) => {
            warn!(error = %e, "UDP listener has no local address");
            return;
        }
    };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, from) = tokio::select! {
            _ = stop.changed() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(v) => v,
                Err(e) => {
                    // ICMP port-unreachable surfaces here on some platforms; keep serving.
                    debug!(error = %e, "UDP listener recv error");
                    continue;
                }
            },
        };
        let ctx = Ctx {
            five: FiveTuple {
                client: from,
                server,
                transport: Transport::Udp,
            },
            sink: ClientSink::Udp {
                socket: socket.clone(),
                client: from,
            },
        };
        if let Some(reply) = shared.handle_packet(&ctx, &buf[..n]) {
            if let Err(e) = socket.send_to(&reply, from).await {
                debug!(error = %e, %from, "UDP reply failed");
            }
        }
    }
}

async fn tcp_accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, from) = tokio::select! {
            _ = stop.changed() => {
                // Connections watch the same signal; wait for them to close.
                while conns.join_next().await.is_some() {}
                return;
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    debug!(error = %e, "TCP accept error");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        conns.spawn(tcp_conn(shared.clone(), stream, from, stop.clone()));
    }
}

async fn tcp_conn(
    shared: Arc<Shared>,
    stream: TcpStream,
    from: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let server = match stream.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(TCP_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if wr.write_all(&frame).await.is_err() {
                break;
            }
        }
    });
    let five = FiveTuple {
        client: from,
        server,
        transport: Transport::Tcp,
    };
    let ctx = Ctx {
        five,
        sink: ClientSink::Tcp(tx.clone()),
    };
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    'conn: loop {
        let n = tokio::select! {
            _ = stop.changed() => break 'conn,
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
                if tx.send(reply).await.is_err() {
                    break 'conn;
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
    let _ = writer.await;
    debug!(%from, "TCP client disconnected");
}

async fn sweep_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => shared.sweep(),
        }
    }
}

async fn relay_loop(shared: Arc<Shared>, five: FiveTuple, id: u64, relay: Arc<UdpSocket>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match relay.recv_from(&mut buf).await {
            Ok((n, peer)) => shared.on_peer_packet(&five, id, peer, &buf[..n]),
            Err(e) => debug!(error = %e, "relay recv error"),
        }
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
    fn new(config: TurnConfig, clock: Arc<dyn Clock>) -> Result<Arc<Self>, TurnError> {
        let validator = CredentialValidator::new(&config.secrets)
            .map_err(|e| TurnError::Config(e.to_string()))?;
        let policy = PeerPolicy::new(
            config.allowed_peer_cidrs.clone(),
            config.denied_peer_cidrs.clone(),
        );
        let mut nonce_key = [0u8; 32];
        let mut txid_prefix = [0u8; 4];
        getrandom::fill(&mut nonce_key).map_err(|e| TurnError::Random(e.to_string()))?;
        getrandom::fill(&mut txid_prefix).map_err(|e| TurnError::Random(e.to_string()))?;
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

    // ---- authentication (RFC 5389 §10.2.2) ----

    fn make_nonce(&self) -> String {
        let expiry = (self.now() + self.cfg.nonce_lifetime).as_secs();
        format!("{expiry:016x}{}", hex(&self.nonce_mac(expiry)))
    }

    fn nonce_mac(&self, expiry: u64) -> [u8; 8] {
        let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(&self.nonce_key) else {
            unreachable!("HMAC takes keys of any size")
        };
        mac.update(&expiry.to_be_bytes());
        let out = mac.finalize().into_bytes();
        let mut t = [0u8; 8];
        t.copy_from_slice(&out[..8]);
        t
    }

    fn nonce_valid(&self, nonce: &str) -> bool {
        if nonce.len() != 32 || !nonce.is_ascii() {
            return false;
        }
        let Ok(expiry) = u64::from_str_radix(&nonce[..16], 16) else {
            return false;
        };
        let expected = hex(&self.nonce_mac(expiry));
        let mac_ok: bool =
            subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), &nonce.as_bytes()[16..]).into();
        mac_ok && expiry >= self.now().as_secs()
    }

    fn challenge(&self, m: &Message<'_>, code: u16, reason: &str) -> Reply {
        let mut b = self.error(m, code, reason);
        b.attr(ATTR_REALM, self.cfg.realm.as_bytes());
        b.attr(ATTR_NONCE, self.make_nonce().as_bytes());
        Reply::Plain(b)
    }

    fn auth_failure(&self, m: &Message<'_>, why: &str) -> Reply {
        Metrics::inc(&self.metrics.auth_failures);
        debug!(why, "TURN authentication failed");
        self.challenge(m, 401, "Unauthorized")
    }

    fn authenticate(&self, m: &Message<'_>) -> Result<Authed, Reply> {
        if !m.has(ATTR_MESSAGE_INTEGRITY) {
            return Err(self.challenge(m, 401, "Unauthorized"));
        }
        let (Some(username), Some(realm), Some(nonce)) = (
            m.get_str(ATTR_USERNAME),
            m.get_str(ATTR_REALM),
            m.get_str(ATTR_NONCE),
        ) else {
            Metrics::inc(&self.metrics.auth_failures);
            return Err(Reply::Plain(self.error(m, 400, "Bad Request")));
        };
        if !self.nonce_valid(nonce) {
            return Err(self.challenge(m, 438, "Stale Nonce"));
        }
        if realm != self.cfg.realm {
            return Err(self.auth_failure(m, "wrong realm"));
        }
        let now = self.now().as_secs();
        let (user, keys) = match self.validator.long_term_keys(username, realm, now) {
            Ok(v) => v,
            Err(e) => return Err(self.auth_failure(m, &e.to_string())),
        };
        // Check every key (no early exit) so timing does not tell which secret matched.
        let mut found: Option<[u8; 16]> = None;
        for k in &keys {
            if m.check_integrity(k) && found.is_none() {
                found = Some(*k);
            }
        }
        match found {
            Some(key) => Ok(Authed {
                username: username.to_owned(),
                user_id: user.user_id,
                key,
            }),
            None => Err(self.auth_failure(m, "MESSAGE-INTEGRITY mismatch")),
        }
    }

    // ---- requests ----

    fn lifetime_for(&self, m: &Message<'_>) -> Duration {
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

    fn allocate(&self, ctx: &Ctx, m: &Message<'_>, auth: Authed) -> Result<Builder, Builder> {
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
        let used = st.per_user.get(&auth.user_id).copied().unwrap_or(0);
        if used >= self.cfg.max_allocations_per_user {
            Metrics::inc(&self.metrics.quota_refusals);
            debug!(user = %auth.user_id, used, "allocation quota reached");
            return Err(self.error(m, 486, "Allocation Quota Reached"));
        }
        if st.allocations.len() >= self.cfg.max_allocations {
            return Err(self.error(m, 508, "Insufficient Capacity"));
        }
        let now = self.now();
        let (relay, reserved) = if let Some(t) = token {
            match st.reservations.remove(&t) {
                Some((sock, exp)) if exp > now => (Arc::new(sock), None),
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
        if let Some(sock) = reserved {
            let mut t = [0u8; 8];
            if getrandom::fill(&mut t).is_ok() {
                b.attr(ATTR_RESERVATION_TOKEN, &t);
                st.reservations
                    .insert(t, (sock, now + RESERVATION_LIFETIME));
            }
        }
        self.software(&mut b);
        let mut cached = b.clone_builder();
        cached.integrity(&auth.key);
        if m.has(ATTR_FINGERPRINT) {
            cached.fingerprint();
        }

        let Some(me) = self.self_arc() else {
            return Err(self.error(m, 508, "Insufficient Capacity"));
        };
        st.next_id += 1;
        let id = st.next_id;
        let task = tokio::spawn(relay_loop(me, ctx.five, id, relay.clone()));
        *st.per_user.entry(auth.user_id.clone()).or_insert(0) += 1;
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
    fn bind_relay(
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

    fn refresh(&self, ctx: &Ctx, m: &Message<'_>, auth: &Authed) -> Result<Builder, Builder> {
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

    fn peer_allowed(&self, peer: SocketAddr) -> Result<(), (u16, &'static str)> {
        if !peer.is_ipv4() {
            return Err((443, "Peer Address Family Mismatch"));
        }
        if let Err(reason) = self.policy.check(peer.ip()) {
            Metrics::inc(&self.metrics.forbidden_peer_refusals);
            info!(%peer, ?reason, "relay to peer refused by policy");
            return Err((403, "Forbidden"));
        }
        Ok(())
    }

    fn create_permission(
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

    fn channel_bind(&self, ctx: &Ctx, m: &Message<'_>, auth: &Authed) -> Result<Builder, Builder> {
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

    fn on_send_indication(&self, ctx: &Ctx, m: &Message<'_>) {
        let (Some(Ok(peer)), Some(data)) = (m.xor_addr(ATTR_XOR_PEER_ADDRESS), m.get(ATTR_DATA))
        else {
            return;
        };
        if self.policy.check(peer.ip()).is_err() {
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

    fn on_channel_data(&self, ctx: &Ctx, pkt: &[u8]) {
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

    fn on_peer_packet(&self, five: &FiveTuple, id: u64, peer: SocketAddr, data: &[u8]) {
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
        st.reservations.retain(|_, (_, e)| *e > now);
        for a in st.allocations.values_mut() {
            a.permissions.retain(|_, e| *e >= now);
            a.channels.retain(|_, (_, e)| *e >= now);
            let channels = &a.channels;
            a.peer_channels.retain(|_, c| channels.contains_key(c));
        }
    }

    fn remove_allocation(&self, st: &mut State, five: &FiveTuple) {
        if let Some(mut a) = st.allocations.remove(five) {
            if let Some(t) = a.task.take() {
                t.abort();
            }
            if let Some(n) = st.per_user.get_mut(&a.user_id) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    st.per_user.remove(&a.user_id);
                }
            }
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

/// The message-handling entry without listeners, for `crate::fuzzing`: packets go to
/// `Shared::handle_packet` exactly as the UDP and TCP loops pass them.
pub(crate) struct FuzzServer {
    shared: Arc<Shared>,
    udp: Arc<UdpSocket>,
    server: SocketAddr,
    tcp_tx: mpsc::Sender<Vec<u8>>,
    tcp_rx: mpsc::Receiver<Vec<u8>>,
}

impl FuzzServer {
    /// Must be called inside a Tokio runtime (allocations spawn their relay task).
    pub(crate) fn new(config: TurnConfig, clock: Arc<dyn Clock>) -> Result<Self, TurnError> {
        config.validate()?;
        let std_udp = std::net::UdpSocket::bind(SocketAddr::new(config.relay_bind_ip, 0))?;
        std_udp.set_nonblocking(true)?;
        let udp = Arc::new(UdpSocket::from_std(std_udp)?);
        let server = udp.local_addr()?;
        let (tcp_tx, tcp_rx) = mpsc::channel(TCP_QUEUE);
        Ok(Self {
            shared: Shared::new(config, clock)?,
            udp,
            server,
            tcp_tx,
            tcp_rx,
        })
    }

    /// One packet from `client` (on the TCP listener if `tcp`): the reply, if any.
    pub(crate) fn packet(&self, client: SocketAddr, tcp: bool, pkt: &[u8]) -> Option<Vec<u8>> {
        let ctx = Ctx {
            five: FiveTuple {
                client,
                server: self.server,
                transport: if tcp { Transport::Tcp } else { Transport::Udp },
            },
            sink: if tcp {
                ClientSink::Tcp(self.tcp_tx.clone())
            } else {
                ClientSink::Udp {
                    socket: self.udp.clone(),
                    client,
                }
            },
        };
        self.shared.handle_packet(&ctx, pkt)
    }

    /// Remove every allocation and reservation (closing their sockets), as `shutdown` does.
    pub(crate) fn reset(&mut self) {
        let mut st = self.shared.lock();
        let keys: Vec<FiveTuple> = st.allocations.keys().copied().collect();
        for k in keys {
            self.shared.remove_allocation(&mut st, &k);
        }
        st.reservations.clear();
        drop(st);
        while self.tcp_rx.try_recv().is_ok() {}
    }

    /// A NONCE the server accepts now.
    pub(crate) fn nonce(&self) -> String {
        self.shared.make_nonce()
    }

    /// Allocations currently held.
    pub(crate) fn allocations(&self) -> usize {
        self.shared.lock().allocations.len()
    }
}
