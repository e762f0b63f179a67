//! Server assembly: state, router, listeners and graceful shutdown.

use crate::auth::{create_dev_keys, find_keys, KeyRing, KeySource};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::error::json_errors;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::store::Store;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::cors::CorsLayer;
use tower_http::trace::TraceLayer;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("storage: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: String,
        source: std::io::Error,
    },
    #[error("API keys: {0}")]
    Keys(#[from] crate::auth::KeysError),
    #[error("webhooks: {0}")]
    Webhooks(#[from] crate::webhooks::livekit::SignerError),
    #[error("cluster: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
}

/// A running server.
pub struct ServerHandle {
    pub http_addr: SocketAddr,
    pub state: AppState,
    /// Dev key generated at start-up (None when keys came from config).
    pub dev_key: Option<(String, String)>,
    /// Dev mode: the demo assistant and its public key (allowed for this server's origin).
    pub dev_embed: Option<(crate::store::AssistantRecord, crate::store::PublicKeyRecord)>,
    task: JoinHandle<()>,
}

/// Multi-node mode, on SIGINT/SIGTERM before shutdown: drain. The node is published as draining (no
/// new rooms here), and its rooms go on until nobody is in them or `server.drain_timeout_secs` has
/// passed; then what is still open is handed over ([`crate::cluster::Cluster::hand_over`]). Single-
/// node mode returns at once (there is nowhere to move a room to).
pub async fn drain(state: &AppState) {
    if !state.cluster.enabled() {
        return;
    }
    state.cluster.start_drain();
    let timeout = Duration::from_secs(state.config.server.drain_timeout_secs);
    let started = tokio::time::Instant::now();
    tracing::info!(
        timeout_secs = timeout.as_secs(),
        "draining: no new rooms here; waiting for the rooms to empty"
    );
    loop {
        let busy: Vec<String> = state
            .sfu
            .rooms()
            .into_iter()
            .filter(|r| !state.sfu.participants(r).is_empty())
            .collect();
        if busy.is_empty() {
            tracing::info!("drained: no participant left");
            return;
        }
        if started.elapsed() >= timeout {
            tracing::info!(
                rooms = busy.len(),
                "drain deadline: handing over the rooms still open"
            );
            state.cluster.hand_over(&state.sfu, &state.workers).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

impl ServerHandle {
    /// Begin graceful shutdown and wait for it to complete.
    pub async fn shutdown(self) {
        self.state.shutdown.cancel();
        let _ = self.task.await;
    }

    /// Wait until the server stops (after `state.shutdown` is cancelled).
    pub async fn wait(self) {
        let _ = self.task.await;
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.http_addr)
    }
}

pub fn router(state: AppState) -> Router {
    let limit = state.config.limits.max_body_bytes;
    Router::new()
        .merge(crate::api::routes())
        .merge(crate::twirp::routes())
        .merge(crate::agents::worker_ws::routes())
        .merge(crate::embed::routes())
        .layer(CorsLayer::permissive())
        // After the permissive CORS layer: the embed endpoint answers CORS for allowed origins only.
        .merge(crate::embed::public_routes())
        .fallback(|| async { axum::http::StatusCode::NOT_FOUND })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(middleware::from_fn(json_errors))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Count each request by method, matched route template (never the raw path) and status.
async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = crate::metrics::method_label(req.method());
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .cloned(); // an Arc clone
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    state
        .metrics
        .record_http(method, route.as_ref().map(|r| r.as_str()), status);
    if status >= 400 {
        Metrics::inc(&state.metrics.http_errors);
    }
    resp
}

/// Start every subsystem on `config`; returns once listeners are bound.
pub async fn start(mut config: Config, clock: SharedClock) -> Result<ServerHandle, StartError> {
    // The same key discovery `parlor token` uses; only the server creates dev keys.
    let found = match find_keys(&config.keys, &config.storage.data_dir)? {
        Some(f) => f,
        None => create_dev_keys(&config.storage.data_dir)?,
    };
    let dev_key = matches!(found.source, KeySource::DevFile(_))
        .then(|| found.keys.iter().next())
        .flatten()
        .map(|(k, s)| (k.clone(), s.clone()));
    config.keys = found.keys;
    let budget = fd_budget();
    let store = Store::connect(&config.database_url(), config.database.max_connections).await?;
    let listener = TcpListener::bind(&config.server.bind)
        .await
        .map_err(|source| StartError::Bind {
            what: "HTTP",
            addr: config.server.bind.clone(),
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| StartError::Bind {
        what: "HTTP",
        addr: config.server.bind.clone(),
        source,
    })?;
    // With port 0 (tests), the public URL follows the real port.
    if config.server.public_url.is_empty() {
        config.server.public_url = format!("ws://{http_addr}");
    }
    let shutdown = CancellationToken::new();
    let metrics = Arc::new(Metrics::default());
    let sfu = crate::sfu::SfuHandle::new();
    // Media workers: one thread per core by default, each with its own UDP socket and rooms.
    let bind_ip: std::net::IpAddr = config.rtc.bind_ip.parse().map_err(|_| StartError::Bind {
        what: "media UDP",
        addr: config.rtc.bind_ip.clone(),
        source: std::io::Error::other("rtc.bind_ip is not an IP address"),
    })?;
    let candidate_ip = if config.rtc.public_ip.is_empty() {
        if bind_ip.is_unspecified() {
            tracing::warn!(
                "rtc.bind_ip is unspecified and rtc.public_ip is empty; announcing 127.0.0.1"
            );
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            bind_ip
        }
    } else {
        config.rtc.public_ip.parse().map_err(|_| StartError::Bind {
            what: "media UDP",
            addr: config.rtc.public_ip.clone(),
            source: std::io::Error::other("rtc.public_ip is not an IP address"),
        })?
    };
    let udp_bind = std::net::SocketAddr::new(bind_ip, config.rtc.udp_port);
    let workers = if config.rtc.workers == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        config.rtc.workers
    };
    let workers = crate::sfu::worker::spawn_workers(
        udp_bind,
        crate::sfu::worker::WorkerConfig {
            workers,
            realtime_priority: config.rtc.realtime_priority,
            candidate_ip,
            tcp_bind: (config.rtc.tcp_port != 0)
                .then(|| std::net::SocketAddr::new(bind_ip, config.rtc.tcp_port)),
            tcp_limits: crate::sfu::tcp::TcpLimits {
                max_connections: config.rtc.tcp_max_connections.min(budget.ice_tcp),
                max_connections_per_ip: config.rtc.tcp_max_connections_per_ip,
                handshake_timeout: Duration::from_millis(config.rtc.tcp_handshake_timeout_ms),
            },
            max_participants: config.room.max_participants,
            max_rooms: config.room.max_rooms,
            empty_timeout: Duration::from_secs(config.room.empty_timeout_secs),
            remote_unmute: config.room.enable_remote_unmute,
        },
        sfu.clone(),
        metrics.clone(),
        clock.clone(),
        shutdown.clone(),
    )
    .await
    .map_err(|source| StartError::Bind {
        what: "media UDP",
        addr: udp_bind.to_string(),
        source,
    })?;
    // TURN REST secrets: configured, else derived from the primary API secret.
    let turn_secrets: Vec<String> = if config.turn.secrets.is_empty() {
        config
            .keys
            .values()
            .next()
            .map(|s| vec![format!("turn:{s}")])
            .unwrap_or_default()
    } else {
        config.turn.secrets.clone()
    };
    let turn_server = if config.turn.enabled {
        Some(
            start_turn(
                &config,
                bind_ip,
                &turn_secrets,
                budget,
                workers.iter().map(|w| w.udp_addr.port()).collect(),
                clock.clone(),
            )
            .await?,
        )
    } else {
        None
    };
    let webhook_secret = if config.webhooks.secret.is_empty() {
        config.keys.values().next().cloned().unwrap_or_default()
    } else {
        config.webhooks.secret.clone()
    };
    let livekit_signer =
        crate::webhooks::livekit::Signer::from_config(&config.webhooks, &config.keys)?;
    let webhooks = crate::webhooks::Webhooks::new(
        store.clone(),
        clock.clone(),
        &config.webhooks,
        webhook_secret,
        livekit_signer,
    );
    webhooks.spawn_dispatcher(shutdown.clone());
    crate::webhooks::livekit::spawn_consumer(webhooks.clone(), &sfu, shutdown.clone());
    let home = crate::home::Home::inspect(config.home_dir());
    for c in home.missing() {
        tracing::warn!(component = c.name, home = %home.root.display(), fix = %home.fix_command(),
            "not installed in the Parlor home; {} will not work", c.used_by);
    }
    let realtime = Arc::new(crate::realtime::sessions::RealtimeState::new(
        &config.realtime,
        crate::realtime::build_providers(&config.realtime, &home.root, clock.clone()),
        clock.clone(),
    ));
    let workers = Arc::new(workers);
    let recorders = crate::recorder::Recorders::new(crate::recorder::RecorderDeps {
        store: store.clone(),
        webhooks: webhooks.clone(),
        sfu: sfu.clone(),
        workers: workers.clone(),
        max_rooms: config.room.max_rooms,
        dir: config.storage.data_dir.join("recordings"),
        clock: clock.clone(),
        node: own_recordings_node(&config),
    });
    let product = crate::product::Product::default();
    // Multi-node mode: register in Redis once this node's media and TURN ports are known.
    let (cluster, relayed) = if config.redis.url.is_empty() {
        (crate::cluster::Cluster::single(), None)
    } else {
        let info = crate::cluster::NodeInfo {
            node: config.server.node_name.clone(),
            http_url: format!("http://{http_addr}"),
            rtc_ip: candidate_ip.to_string(),
            udp_ports: workers.iter().map(|w| w.udp_addr.port()).collect(),
            turn_udp_port: config.turn.udp_port,
        };
        let deps = crate::cluster::Deps {
            sfu: sfu.clone(),
            workers: workers.clone(),
            metrics: metrics.clone(),
            product: product.clone(),
            clock: clock.clone(),
        };
        let (c, rx) =
            crate::cluster::Cluster::start(&config.redis, info, deps, shutdown.clone()).await?;
        (c, Some(rx))
    };
    let state = AppState {
        cluster,
        realtime,
        embed: Default::default(),
        assistants: Default::default(),
        home: Arc::new(home),
        dev_keys: dev_key.is_some(),
        agents: Default::default(),
        keys: Arc::new(KeyRing::new(config.keys.clone())),
        config: Arc::new(config),
        store,
        metrics,
        clock,
        started: Instant::now(),
        shutdown: shutdown.clone(),
        sfu,
        workers,
        turn_secrets: Arc::new(turn_secrets),
        turn: Arc::new(std::sync::Mutex::new(turn_server)),
        product,
        recorders,
        webhooks,
    };
    // Recordings a crash cut short: repair their files and finish their rows before serving.
    let node = own_recordings_node(&state.config);
    let recovered =
        crate::recorder::recover_unfinished(&state.store, state.recorders.dir(), &node).await;
    if recovered > 0 {
        tracing::info!(recovered, "finished recordings left behind by a crash");
    }
    // Recording deletes a crash interrupted: remove the rest of their files and their rows.
    let deleted = crate::recording_delete::finish_pending(
        &state.store,
        &state.config.storage.data_dir.join("recordings"),
        &node,
    )
    .await;
    if deleted > 0 {
        tracing::info!(deleted, "finished recording deletes left behind by a crash");
    }
    // Calls and huddles a crash left open (their rooms died with it): finish them before serving.
    let heartbeat = crate::orphans::last_heartbeat(&state.config.storage.data_dir);
    let (calls, huddles) = crate::orphans::finish(&state, heartbeat).await;
    if calls + huddles > 0 {
        tracing::info!(
            calls,
            huddles,
            "finished calls and huddles left open by a crash"
        );
    }
    // Dev mode: a demo assistant and a public key for this server's own origin.
    let dev_embed = if dev_key.is_some() {
        match crate::embed::bootstrap_dev(&state).await {
            Ok(pair) => Some(pair),
            Err(e) => {
                tracing::warn!(error = %e, "could not create the dev demo assistant");
                None
            }
        }
    } else {
        None
    };
    // Assistant calls that ended but whose cost and charge a crash cut short.
    let finalized = crate::embed::finalize::finish_pending(&state).await;
    if finalized > 0 {
        tracing::info!(
            finalized,
            "finalized assistant calls left behind by a crash"
        );
    }
    crate::orphans::spawn_heartbeat(&state);
    crate::orphans::spawn_cluster_sweep(&state);
    crate::api::rooms::spawn_unused_room_sweep(&state);
    crate::agents::spawn_event_consumer(&state);
    crate::product::spawn_event_consumer(state.consumer_deps());
    if let Some(rx) = relayed {
        crate::signal::spawn_relayed(state.clone(), rx);
    }
    let app = router(state.clone());
    let http_limits = crate::http_serve::HttpLimits {
        max_connections: state.config.limits.http_max_connections.min(budget.http),
        max_connections_per_ip: state.config.limits.http_max_connections_per_ip,
        header_timeout: Duration::from_millis(state.config.limits.http_header_timeout_ms.max(1)),
        idle_timeout: Duration::from_millis(state.config.limits.http_idle_timeout_ms.max(1)),
    };
    tracing::info!(
        max = http_limits.max_connections,
        per_ip = http_limits.max_connections_per_ip,
        "HTTP connection caps"
    );
    let turn = state.turn.clone();
    let grace = Duration::from_secs(state.config.server.shutdown_grace_secs);
    let store = state.store.clone();
    let recorders = state.recorders.clone();
    let hooks = state.webhooks.clone();
    let cluster = state.cluster.clone();
    let sfu = state.sfu.clone();
    let task = tokio::spawn(async move {
        // In-flight requests get `grace` to finish once shutdown starts.
        let serve = crate::http_serve::serve(listener, app, http_limits, shutdown.clone());
        tokio::pin!(serve);
        tokio::select! {
            _ = &mut serve => {}
            _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!("shutdown grace period elapsed; dropping remaining connections");
            }
        }
        let turn = turn.lock().ok().and_then(|mut t| t.take());
        if let Some(turn) = turn {
            turn.shutdown().await;
        }
        // Running recordings are finalized and recorded before the store closes.
        for (id, outcome) in recorders.stop_all().await {
            crate::recorder::store_outcome(&store, &hooks, &id, &outcome).await;
        }
        cluster.leave(&sfu).await;
        store.close().await;
        tracing::info!("server stopped");
    });
    Ok(ServerHandle {
        http_addr,
        state,
        dev_key,
        dev_embed,
        task,
    })
}

/// Raise the open-file soft limit to the hard limit and split it between the TCP listeners.
fn fd_budget() -> crate::fdlimit::FdBudget {
    match crate::fdlimit::raise_nofile_limit() {
        Ok((before, after)) if before != after => {
            tracing::info!(
                before,
                after,
                "raised the open-file soft limit (RLIMIT_NOFILE)"
            )
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
    let budget = crate::fdlimit::FdBudget::from_limit(crate::fdlimit::nofile_limit());
    tracing::info!(
        limit = budget.limit,
        reserve = budget.reserve,
        http = budget.http,
        ice_tcp = budget.ice_tcp,
        turn_tcp = budget.turn_tcp,
        "open-file budget per listener"
    );
    budget
}

async fn start_turn(
    config: &Config,
    bind_ip: std::net::IpAddr,
    secrets: &[String],
    budget: crate::fdlimit::FdBudget,
    media_ports: Vec<u16>,
    clock: SharedClock,
) -> Result<parlor_turn::TurnServer, StartError> {
    let bad = |msg: String| StartError::Bind {
        what: "TURN",
        addr: format!("{bind_ip}:{}", config.turn.udp_port),
        source: std::io::Error::other(msg),
    };
    let mut tc = parlor_turn::TurnConfig::new(config.turn.realm.clone(), secrets.to_vec());
    tc.udp_listen = std::net::SocketAddr::new(bind_ip, config.turn.udp_port);
    tc.tcp_listen = (config.turn.tcp_port != 0)
        .then(|| std::net::SocketAddr::new(bind_ip, config.turn.tcp_port));
    tc.relay_bind_ip = bind_ip;
    if !config.rtc.public_ip.is_empty() {
        tc.public_ip = Some(
            config
                .rtc
                .public_ip
                .parse()
                .map_err(|_| bad("rtc.public_ip is not an IP address".into()))?,
        );
    }
    tc.allowed_peer_cidrs = config
        .turn
        .allow_peer_cidrs
        .iter()
        .map(|c| {
            c.parse()
                .map_err(|_| bad(format!("turn.allow_peer_cidrs: bad CIDR {c}")))
        })
        .collect::<Result<_, _>>()?;
    tc.max_allocations_per_user = config.turn.max_allocations_per_user;
    tc.max_reservations = config.turn.max_reservations;
    // FD budget: TURN TCP gets at most its share of the process's open files.
    tc.max_tcp_connections = config.turn.max_tcp_connections.min(budget.turn_tcp);
    tc.max_tcp_connections_per_ip = config.turn.max_tcp_connections_per_ip;
    tc.tcp_idle_timeout = std::time::Duration::from_millis(config.turn.tcp_idle_timeout_ms);
    // Relay-only clients reach the SFU through the relay: its media ports stay open on the
    // server's own addresses, everything else there is refused.
    tc.server_peer_ports = media_ports;
    tc.server_addresses = config
        .turn
        .host
        .parse::<std::net::IpAddr>()
        .ok()
        .into_iter()
        .collect();
    let turn_clock = move || std::time::Duration::from_millis(clock.unix_ms().max(0) as u64);
    parlor_turn::TurnServer::start(tc, Arc::new(turn_clock))
        .await
        .map_err(|e| bad(e.to_string()))
}

/// The node recordings made here are stored under (`RecordingRecord::node`): this node's name in
/// multi-node mode, '' in single-node mode (then start-up repair takes every recording).
fn own_recordings_node(config: &Config) -> String {
    if config.redis.url.is_empty() {
        String::new()
    } else {
        config.server.node_name.clone()
    }
}
