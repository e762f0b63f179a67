//! Multi-node mode: several Parlor nodes sharing one Redis (and one SQL database) behind one URL.
//! Owns this node's membership of the cluster — its registration and heartbeat, the leases of the
//! rooms it owns, room placement across nodes, and the signal relay to other nodes — behind
//! [`Cluster`], a handle the control plane (signal edge, health) calls. Media threads never call it.
//!
//! A room lives on exactly one node: the first join claims it in Redis for the least-loaded live node
//! ([`registry`]); a signal connection that arrives at another node is relayed to the owner
//! ([`relay`]); media goes straight to the owner's UDP candidates. A node that stops heartbeating
//! loses its registration and its room leases after `[redis] node_ttl_ms`, and its rooms can then
//! be claimed again. With no `[redis] url` (the default) the handle is inert: single-node mode.

pub mod config;
pub mod edge;
pub mod forward;
pub mod registry;
pub mod relay;
pub mod shared;

pub use registry::{NodeRecord, RegistryError};

use crate::clock::SharedClock;
use crate::metrics::Metrics;
use crate::product::Product;
use crate::sfu::worker::WorkerHandle;
use crate::sfu::{ParticipantSnapshot, SfuEvent, SfuHandle};
use futures_util::StreamExt;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// How long a room closed here because it moved is remembered as moved (its close's events are
/// handled by then).
const MOVED_MEMORY: Duration = Duration::from_secs(30);
/// After a participant joins or leaves, this node's load is published this soon (one heartbeat for
/// every change within it).
const LOAD_PUBLISH_DELAY: Duration = Duration::from_millis(25);
/// Relay starts waiting for the server to pick them up.
const START_QUEUE: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("invalid redis url: {0}")]
    Url(redis::RedisError),
    #[error("cannot reach redis at {url}: {source}")]
    Connect {
        url: String,
        source: redis::RedisError,
    },
    #[error("registering this node: {0}")]
    Register(RegistryError),
}

/// Where a join for a room must be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// On this node.
    Local,
    /// On that node (relay the signal session).
    Remote(String),
}

/// This node in the cluster; `Cluster::single()` in single-node mode.
#[derive(Clone, Default)]
pub struct Cluster {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    relay: Arc<relay::Relay>,
    /// Redis answered the last heartbeat.
    connected: AtomicBool,
    draining: AtomicBool,
    /// Rooms this node closed because they move to another node (lease lost, drain), and when: their
    /// calls go on elsewhere, so the events of the close must not end them here.
    moved: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Wakes the heartbeat when draining starts (published at once).
    drain_now: tokio::sync::Notify,
    /// Deregistered: the heartbeat must not register the node again.
    left: AtomicBool,
}

/// The parts of the server the cluster works with.
pub struct Deps {
    pub sfu: SfuHandle,
    /// The media workers (a room whose lease was lost is closed on its worker).
    pub workers: Arc<Vec<WorkerHandle>>,
    pub metrics: Arc<Metrics>,
    pub product: Product,
    pub clock: SharedClock,
}

/// What the server tells the cluster about this node when it starts.
pub struct NodeInfo {
    pub node: String,
    pub http_url: String,
    pub rtc_ip: String,
    pub udp_ports: Vec<u16>,
    pub turn_udp_port: u16,
}

impl Cluster {
    /// Single-node mode.
    pub fn single() -> Cluster {
        Cluster { inner: None }
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Connect to Redis, register this node and start its heartbeat and relay subscription. The
    /// returned receiver yields relayed sessions other nodes start here.
    pub async fn start(
        cfg: &config::RedisConfig,
        info: NodeInfo,
        deps: Deps,
        shutdown: CancellationToken,
    ) -> Result<(Cluster, mpsc::Receiver<relay::Started>), ClusterError> {
        let Deps {
            sfu,
            workers,
            metrics,
            product,
            clock,
        } = deps;
        let client = redis::Client::open(cfg.url.as_str()).map_err(ClusterError::Url)?;
        let timeout = Duration::from_millis(cfg.command_timeout_ms.max(1));
        let mgr_cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let con = client
            .get_connection_manager_with_config(mgr_cfg)
            .await
            .map_err(|source| ClusterError::Connect {
                url: redact(&cfg.url),
                source,
            })?;
        let registry =
            registry::Registry::new(con, &cfg.prefix, &info.node, cfg.node_ttl_ms, timeout);
        let (starts_tx, starts_rx) = mpsc::channel(START_QUEUE);
        let relay = relay::Relay::new(registry.clone(), starts_tx);
        let inner = Arc::new(Inner {
            relay,
            connected: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            drain_now: tokio::sync::Notify::new(),
            moved: Default::default(),
            left: AtomicBool::new(false),
        });
        let cluster = Cluster {
            inner: Some(inner.clone()),
        };
        // Subscribe before registering: once other nodes see this node, relays to it must arrive.
        let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(subscribe_loop(
            client,
            inner.relay.clone(),
            product.clone(),
            shutdown.clone(),
            Some(subscribed_tx),
        ));
        let _ = tokio::time::timeout(timeout, subscribed_rx).await;
        let period = Duration::from_millis(cfg.heartbeat_ms.max(50));
        shared::Writer {
            reg: registry.clone(),
            product,
            sfu: sfu.clone(),
            clock,
            period,
        }
        .start(shutdown.clone());
        let beat = Heartbeat {
            info,
            sfu,
            workers,
            metrics,
            inner: inner.clone(),
        };
        beat.once().await.map_err(ClusterError::Register)?;
        tracing::info!(node = registry.node(), prefix = %cfg.prefix, "joined the cluster");
        tokio::spawn(beat.run(period, shutdown));
        Ok((cluster, starts_rx))
    }

    fn registry(&self) -> Option<&registry::Registry> {
        self.inner.as_ref().map(|i| i.relay.registry())
    }

    /// This node's name in the cluster.
    pub fn node(&self) -> Option<&str> {
        self.registry().map(|r| r.node())
    }

    /// Where a join for `room` is served. `open_here`: the room is open on this node already (then it
    /// is served here even while Redis is unreachable).
    pub async fn route(&self, room: &str, open_here: bool) -> Result<Route, RegistryError> {
        let Some(inner) = &self.inner else {
            return Ok(Route::Local);
        };
        let reg = inner.relay.registry();
        let owner = match reg.claim(room).await {
            Ok(o) => o,
            Err(e) if open_here => {
                tracing::warn!(room, error = %e, "redis unavailable; serving the join on this node, which has the room open");
                return Ok(Route::Local);
            }
            Err(e) => return Err(e),
        };
        Ok(if owner == reg.node() {
            Route::Local
        } else {
            Route::Remote(owner)
        })
    }

    /// Open the relayed session of a client of this node whose room lives on `owner`.
    pub async fn open_relay(
        &self,
        owner: &str,
        start: &relay::Start,
    ) -> Result<relay::EdgeSide, RegistryError> {
        match &self.inner {
            Some(i) => i.relay.open_edge(owner, start).await,
            None => Err(RegistryError::NoNode),
        }
    }

    /// The node that owns `room` (None: nobody, or single-node mode).
    pub async fn owner(&self, room: &str) -> Result<Option<String>, RegistryError> {
        match self.registry() {
            Some(r) => r.owner(room).await,
            None => Ok(None),
        }
    }

    /// The participants of `room` as the node that has it open last published them (None: single-node
    /// mode, or the room is open nowhere).
    pub async fn room_participants(
        &self,
        room: &str,
    ) -> Result<Option<Vec<ParticipantSnapshot>>, RegistryError> {
        match self.registry() {
            Some(r) => shared::room_participants(r, room).await,
            None => Ok(None),
        }
    }

    /// Whether `room` is owned by a live node other than this one (false in single-node mode; an
    /// error when Redis cannot tell).
    pub async fn room_live_elsewhere(&self, room: &str) -> Result<bool, RegistryError> {
        let Some(r) = self.registry() else {
            return Ok(false);
        };
        match r.owner(room).await? {
            Some(owner) if owner != r.node() => r.alive(&owner).await,
            _ => Ok(false),
        }
    }

    /// Every live node (empty in single-node mode).
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, RegistryError> {
        match self.registry() {
            Some(r) => r.nodes().await,
            None => Ok(Vec::new()),
        }
    }

    /// Redis answered this node's last heartbeat (true in single-node mode).
    pub fn connected(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(|i| i.connected.load(Relaxed))
    }

    /// `room` was closed here within the last [`MOVED_MEMORY`] because it moves to another node.
    pub fn moved_recently(&self, room: &str) -> bool {
        self.inner.as_ref().is_some_and(|i| {
            let m = i.moved.lock().unwrap_or_else(|e| e.into_inner());
            m.get(room).is_some_and(|at| at.elapsed() < MOVED_MEMORY)
        })
    }

    /// Close `room` here because it moves (clients told to reconnect), remembered as moved first.
    async fn close_moved(&self, sfu: &SfuHandle, workers: &[WorkerHandle], room: &str) -> usize {
        if let Some(i) = &self.inner {
            let mut m = i.moved.lock().unwrap_or_else(|e| e.into_inner());
            m.retain(|_, at| at.elapsed() < MOVED_MEMORY);
            m.insert(room.to_string(), std::time::Instant::now());
        }
        crate::sfu::close_moved_room(sfu, workers, room)
            .await
            .unwrap_or(0)
    }

    /// End of a drain: every room still open here moves. Its clients are told to reconnect (they
    /// reach a live node, where the room opens again) and its lease is released now.
    pub async fn hand_over(&self, sfu: &SfuHandle, workers: &[WorkerHandle]) {
        let Some(reg) = self.registry() else {
            return;
        };
        for room in sfu.rooms() {
            let told = self.close_moved(sfu, workers, &room).await;
            if let Err(e) = reg.release(&room).await {
                tracing::debug!(room = %room, error = %e, "release failed; the lease will expire");
            }
            tracing::info!(room = %room, clients = told, "room handed over; its clients told to reconnect");
        }
    }

    /// Start draining: this node is published as draining at once, so no new room is placed here;
    /// rooms open here go on (and joins to them are still served here).
    pub fn start_drain(&self) {
        if let Some(i) = &self.inner {
            i.draining.store(true, Relaxed);
            i.drain_now.notify_one();
        }
    }

    /// Leave the cluster at the end of a clean shutdown: the leases of rooms still listed here are
    /// released, and other nodes stop listing this node at once instead of after `node_ttl_ms`.
    pub async fn leave(&self, sfu: &SfuHandle) {
        if let Some(i) = &self.inner {
            // Leases of rooms still listed here are released now, not after node_ttl_ms.
            let reg = i.relay.registry();
            for room in sfu.rooms() {
                if let Err(e) = reg.release(&room).await {
                    tracing::debug!(room = %room, error = %e, "release failed; the lease will expire");
                }
            }
            i.left.store(true, Relaxed);
            let mut con = reg.con();
            let presence = reg.key("presence", reg.node());
            let _ = reg
                .run(redis::cmd("DEL").arg(presence).query_async::<()>(&mut con))
                .await;
            if let Err(e) = reg.deregister().await {
                tracing::warn!(error = %e, "could not deregister from the cluster; the record expires");
            }
        }
    }
}

/// `redis://user:password@host` without the password, for logs and errors.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

struct Heartbeat {
    info: NodeInfo,
    sfu: SfuHandle,
    workers: Arc<Vec<WorkerHandle>>,
    metrics: Arc<Metrics>,
    inner: Arc<Inner>,
}

impl Heartbeat {
    async fn once(&self) -> Result<(), RegistryError> {
        if self.inner.left.load(Relaxed) {
            return Ok(());
        }
        let rooms = self.sfu.rooms();
        let record = NodeRecord {
            node: self.info.node.clone(),
            http_url: self.info.http_url.clone(),
            rtc_ip: self.info.rtc_ip.clone(),
            udp_ports: self.info.udp_ports.clone(),
            turn_udp_port: self.info.turn_udp_port,
            rooms: rooms.len() as u64,
            participants: self.metrics.participants.load(Relaxed),
            cpu_load: cpu_load(),
            draining: self.inner.draining.load(Relaxed),
            updated_at_ms: crate::clock::system().unix_ms().max(0) as u64,
        };
        let r = self.inner.relay.registry().heartbeat(&record, &rooms).await;
        self.inner.connected.store(r.is_ok(), Relaxed);
        let lost = r?;
        for room in lost {
            // This node was cut off longer than the lease and another node owns the room now:
            // close the copy here, its clients told to reconnect (they reach the new owner).
            let cluster = Cluster {
                inner: Some(self.inner.clone()),
            };
            let told = cluster.close_moved(&self.sfu, &self.workers, &room).await;
            tracing::error!(room = %room, node = %self.info.node, clients = told,
                "room lease lost to another node; closed here, its clients told to reconnect");
        }
        Ok(())
    }

    /// A heartbeat, its failure logged once per outage.
    async fn beat(&self, failing: &mut bool) {
        match self.once().await {
            Ok(()) if *failing => {
                *failing = false;
                tracing::info!("redis reachable again; node re-registered");
            }
            Ok(()) => {}
            Err(e) if !*failing => {
                *failing = true;
                tracing::warn!(error = %e, "cluster heartbeat failed; rooms open here keep running");
            }
            Err(_) => {}
        }
    }

    async fn run(self, period: Duration, shutdown: CancellationToken) {
        let mut events = self.sfu.subscribe_events();
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        let mut draining = false;
        // A participant came or went: the load other nodes place rooms by is published soon after
        // (debounced), not only at the next heartbeat.
        let mut load_changed: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        // Runs until the process exits: a draining node keeps its registration (as draining, so no
        // new rooms come) and the leases of the rooms it finishes; `Cluster::leave` ends it cleanly.
        loop {
            tokio::select! {
                _ = shutdown.cancelled(), if !draining => {
                    draining = true;
                    self.inner.draining.store(true, Relaxed);
                    let _ = self.once().await;
                }
                _ = tick.tick() => self.beat(&mut failing).await,
                _ = self.inner.drain_now.notified() => self.beat(&mut failing).await,
                _ = async { load_changed.as_mut().map(|s| s.as_mut()).unwrap().await }, if load_changed.is_some() => {
                    load_changed = None;
                    self.beat(&mut failing).await;
                }
                ev = events.recv() => match ev {
                    Ok(SfuEvent::RoomClosed { room, .. }) => {
                        if let Err(e) = self.inner.relay.registry().release(&room).await {
                            tracing::debug!(room = %room, error = %e, "release failed; the lease will expire");
                        }
                    }
                    Ok(SfuEvent::ParticipantJoined { .. } | SfuEvent::ParticipantLeft { .. }) => {
                        if load_changed.is_none() {
                            load_changed = Some(Box::pin(tokio::time::sleep(LOAD_PUBLISH_DELAY)));
                        }
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        }
    }
}

/// One-minute load average per core, from `/proc/loadavg` (0 where unavailable).
fn cpu_load() -> f64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |l| l / cores)
}

/// A push another node relayed: deliver it to the user's connections here.
fn deliver_push(product: &Product, node: &str, bytes: &[u8]) {
    match serde_json::from_slice::<shared::PushEnvelope>(bytes) {
        Ok(p) if p.from != node => {
            product.push_local(&p.user, p.text);
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "undecodable relayed push"),
    }
}

/// Keep this node subscribed to its relay channel and the push channel, reconnecting while Redis is away.
async fn subscribe_loop(
    client: redis::Client,
    relay: Arc<relay::Relay>,
    product: Product,
    shutdown: CancellationToken,
    mut subscribed: Option<tokio::sync::oneshot::Sender<()>>,
) {
    let channel = relay.registry().channel(relay.registry().node());
    let pushes = relay.registry().key("push", "all");
    let node = relay.registry().node().to_string();
    let mut backoff = Duration::from_millis(100);
    loop {
        let attempt = async {
            let mut ps = client.get_async_pubsub().await?;
            ps.subscribe(&channel).await?;
            ps.subscribe(&pushes).await?;
            Ok::<_, redis::RedisError>(ps)
        };
        let ps = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = attempt => r,
        };
        match ps {
            Ok(ps) => {
                backoff = Duration::from_millis(100);
                if let Some(s) = subscribed.take() {
                    let _ = s.send(());
                }
                tracing::debug!(channel = %channel, "relay subscription up");
                let mut stream = ps.into_on_message();
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        m = stream.next() => match m {
                            Some(m) if m.get_channel_name() == pushes => {
                                deliver_push(&product, &node, m.get_payload_bytes());
                            }
                            Some(m) => relay.deliver(m.get_payload_bytes()),
                            None => break,
                        }
                    }
                }
                tracing::warn!(channel = %channel, "relay subscription lost; reconnecting");
            }
            Err(e) => {
                tracing::debug!(error = %e, "relay subscription failed; retrying");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
