//! `parlor-load`: a WebRTC load generator for Parlor (LiveKit protocol) and, for comparison, Janus
//! (VideoRoom over its WebSocket JSON API).
//!
//! Shape: signaling is one light tokio task per participant; media runs on a few dedicated threads
//! (`--threads`, default 1), each driving many `rtc` Sans-I/O peer connections from one `mio` poll
//! loop, like the server's media worker. Publishers send synthetic Opus-like RTP at 50 packets/s (and
//! optionally VP8-like video at a set bitrate) whose payload ends with a stamp (stream, sequence,
//! send time in ns since a process-wide origin), so subscribers in the same process measure one-way
//! latency and loss exactly.

pub mod janus;
pub mod livekit;
pub mod media;
pub mod pc;
pub mod sock;
pub mod stats;

use media::{MediaHandle, MediaParams, OutSpec};
use pc::TrackSpec;
use serde::Serialize;
use stats::{ProcSample, Shared};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// Which server the run talks to.
#[derive(Debug, Clone)]
pub enum Target {
    LiveKit(livekit::LiveKitTarget),
    Janus(janus::JanusTarget),
}

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub target: Target,
    pub rooms: usize,
    pub publishers: usize,
    pub subscribers: usize,
    /// Total run time from the first join to the end of sending.
    pub duration: Duration,
    /// Audio payload bytes per packet (50 packets/s).
    pub audio_bytes: usize,
    /// Also publish VP8-like video at this bitrate (0: audio only).
    pub video_kbps: u32,
    /// Participants started per second.
    pub join_rate: f64,
    /// Media threads.
    pub threads: usize,
    /// Server process to sample CPU and RSS from.
    pub server_pid: Option<u32>,
    pub progress_every: Duration,
    /// Prefix of room names (LiveKit) / offset of room ids (Janus).
    pub room_prefix: String,
    /// Publishers also subscribe to the other publishers of their room.
    pub publishers_subscribe: bool,
    /// Print progress lines to stderr.
    pub progress: bool,
    /// ICE connectivity-check pacing of the client connections (None: `rtc` default, 200 ms).
    pub ice_check_interval: Option<Duration>,
    /// Address the client sockets bind to (127.0.0.1; Janus/libnice gathers no loopback candidates,
    /// so against Janus use the host's own address: traffic still never leaves the machine).
    pub bind_ip: std::net::IpAddr,
}

impl LoadConfig {
    pub fn streams_per_publisher(&self) -> usize {
        if self.video_kbps > 0 {
            2
        } else {
            1
        }
    }
}

/// One participant the run drives.
pub struct Participant {
    pub room: String,
    /// Room index (Janus uses numeric rooms).
    pub room_index: usize,
    pub identity: String,
    pub publish: Vec<OutSpec>,
    pub subscribe: bool,
    /// Fired when the publisher connection is connected.
    pub ready: Option<oneshot::Sender<()>>,
}

/// What every participant task shares.
pub struct RunCtx {
    pub shared: Arc<Shared>,
    pub stop: watch::Receiver<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

fn percentiles_ms(h: &hdrhistogram::Histogram<u64>) -> Percentiles {
    let ms = |v: u64| (v as f64 / 1e6 * 1000.0).round() / 1000.0;
    Percentiles {
        count: h.len(),
        p50: ms(h.value_at_quantile(0.50)),
        p95: ms(h.value_at_quantile(0.95)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerStats {
    pub pid: u32,
    /// CPU% (100 = one core) over the steady window (all joined → end of sending).
    pub cpu_pct: f64,
    pub cpu_secs: f64,
    pub rss_kb_after_30s: Option<u64>,
    pub rss_kb_end: u64,
    /// (end − after 30 s) / after 30 s, in %.
    pub rss_growth_pct: Option<f64>,
    /// Forwarded stream-seconds per server CPU-second over the steady window.
    pub streams_per_cpu_sec: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub target: String,
    pub rooms: usize,
    pub publishers: usize,
    pub subscribers: usize,
    pub video_kbps: u32,
    pub duration_secs: f64,
    pub participants: usize,
    pub joins_ok: u64,
    pub joins_failed: u64,
    pub join_phase_secs: f64,
    pub joins_per_sec: f64,
    /// WebSocket connect → joined.
    pub join_ms: Percentiles,
    /// WebSocket connect → first media packet on the subscribing connection.
    pub first_packet_ms: Percentiles,
    pub pcs_connected: u64,
    pub pcs_failed: u64,
    pub disconnects: u64,
    /// (subscriber, published stream) pairs that received media.
    pub forwarded_streams: u64,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub packets_expected: u64,
    pub packets_lost: u64,
    pub loss_pct: f64,
    /// Steady window (all joined → end of sending).
    pub steady_secs: f64,
    pub sent_pps: f64,
    pub received_pps: f64,
    pub sent_bytes_per_sec: f64,
    pub received_bytes_per_sec: f64,
    /// One-way latency publisher → server → subscriber, whole run: from the publisher's send stamp
    /// (taken just before SRTP and `sendto`) to the kernel's arrival timestamp on the subscriber's
    /// socket (`SO_TIMESTAMPNS`). This is the latency the network path (here: the server) adds; it
    /// excludes this tool's own receive-side queueing.
    pub latency_ms: Percentiles,
    /// Send stamp → the moment this tool decrypted the packet (includes its event-loop delay).
    pub app_latency_ms: Percentiles,
    pub send_errors: u64,
    pub socket_drops: u64,
    pub server: Option<ServerStats>,
    pub loadgen_cpu_pct: f64,
    pub loadgen_rss_kb: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("starting media threads: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
}

fn participants(cfg: &LoadConfig) -> (Vec<Participant>, Vec<Participant>) {
    let per = cfg.streams_per_publisher();
    let mut pubs = Vec::new();
    let mut subs = Vec::new();
    for r in 0..cfg.rooms {
        let room = format!("{}{r}", cfg.room_prefix);
        for k in 0..cfg.publishers {
            let base = ((r * cfg.publishers + k) * per) as u32;
            let mut publish = vec![OutSpec {
                stream: base,
                track: TrackSpec {
                    ssrc: rand::random(),
                    video: false,
                },
            }];
            if cfg.video_kbps > 0 {
                publish.push(OutSpec {
                    stream: base + 1,
                    track: TrackSpec {
                        ssrc: rand::random(),
                        video: true,
                    },
                });
            }
            pubs.push(Participant {
                room: room.clone(),
                room_index: r,
                identity: format!("pub-{r}-{k}"),
                publish,
                subscribe: cfg.publishers_subscribe,
                ready: None,
            });
        }
        for k in 0..cfg.subscribers {
            subs.push(Participant {
                room: room.clone(),
                room_index: r,
                identity: format!("sub-{r}-{k}"),
                publish: Vec::new(),
                subscribe: true,
                ready: None,
            });
        }
    }
    (pubs, subs)
}

fn spawn_participant(
    cfg: &LoadConfig,
    ctx: &Arc<RunCtx>,
    p: Participant,
    media: MediaHandle,
) -> tokio::task::JoinHandle<()> {
    let ctx = ctx.clone();
    let target = cfg.target.clone();
    tokio::spawn(async move {
        let identity = p.identity.clone();
        let r = match target {
            Target::LiveKit(t) => livekit::run(Arc::new(t), ctx, p, media).await,
            Target::Janus(t) => janus::run(Arc::new(t), ctx, p, media).await,
        };
        if let Err(e) = r {
            tracing::warn!(participant = %identity, error = %e, "participant ended");
        }
    })
}

#[derive(Clone)]
struct Sample {
    at: Duration,
    server: Option<ProcSample>,
    me: Option<ProcSample>,
    recv: u64,
    sent: u64,
    bytes_recv: u64,
    bytes_sent: u64,
}

fn sample(shared: &Shared, pid: Option<u32>, start: Instant) -> Sample {
    Sample {
        at: start.elapsed(),
        server: pid.and_then(|p| stats::proc_sample(Some(p))),
        me: stats::proc_sample(None),
        recv: Shared::get(&shared.packets_recv),
        sent: Shared::get(&shared.packets_sent),
        bytes_recv: Shared::get(&shared.bytes_recv),
        bytes_sent: Shared::get(&shared.bytes_sent),
    }
}

fn progress_line(shared: &Shared, a: &Sample, b: &Sample, expected_joins: usize) -> String {
    let dt = (b.at - a.at).as_secs_f64().max(1e-3);
    let (lat50, lat99) = match shared.hist.lock() {
        Ok(mut h) => {
            let r = (
                h.latency_interval.value_at_quantile(0.5) as f64 / 1e6,
                h.latency_interval.value_at_quantile(0.99) as f64 / 1e6,
            );
            h.latency_interval.reset();
            r
        }
        Err(_) => (0.0, 0.0),
    };
    let (exp, got) = shared.loss(false);
    let loss = if exp > 0 {
        100.0 * exp.saturating_sub(got) as f64 / exp as f64
    } else {
        0.0
    };
    let cpu = |x: Option<ProcSample>, y: Option<ProcSample>| match (x, y) {
        (Some(x), Some(y)) => format!("{:.0}%", 100.0 * (y.cpu_secs - x.cpu_secs) / dt),
        _ => "-".into(),
    };
    format!(
        "t={:>5.1}s joined={}/{} pcs={} sent={:.0}pps recv={:.0}pps ({:.2} Mbit/s) loss={:.3}% lat p50={:.3}ms p99={:.3}ms server cpu={} rss={} loadgen cpu={}",
        b.at.as_secs_f64(),
        Shared::get(&shared.joins_ok),
        expected_joins,
        Shared::get(&shared.pcs_connected) - Shared::get(&shared.pcs_failed),
        (b.sent - a.sent) as f64 / dt,
        (b.recv - a.recv) as f64 / dt,
        (b.bytes_recv - a.bytes_recv) as f64 * 8.0 / dt / 1e6,
        loss,
        lat50,
        lat99,
        cpu(a.server, b.server),
        b.server.map(|s| format!("{}MB", s.rss_kb / 1024)).unwrap_or("-".into()),
        cpu(a.me, b.me),
    )
}

/// Run a whole load test and return its summary.
pub async fn run(cfg: LoadConfig) -> Result<Summary, LoadError> {
    if cfg.rooms == 0 || cfg.publishers == 0 {
        return Err(LoadError::Config(
            "need at least one room and one publisher".into(),
        ));
    }
    let streams = cfg.rooms * cfg.publishers * cfg.streams_per_publisher();
    let shared = Arc::new(Shared::new(streams));
    let sending = Arc::new(AtomicBool::new(true));
    let stop_media = Arc::new(AtomicBool::new(false));
    let params = MediaParams {
        audio_bytes: cfg.audio_bytes,
        video_kbps: cfg.video_kbps,
        ice_check_interval: cfg.ice_check_interval,
        bind_ip: cfg.bind_ip,
    };
    let (media, threads) = media::spawn(
        cfg.threads,
        shared.clone(),
        params,
        sending.clone(),
        stop_media.clone(),
    )?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let ctx = Arc::new(RunCtx {
        shared: shared.clone(),
        stop: stop_rx,
    });
    let (pubs, subs) = participants(&cfg);
    let total = pubs.len() + subs.len();
    let start = Instant::now();
    let end = start + cfg.duration;

    // Progress reporter + samples (RSS after 30 s, etc.).
    let samples = Arc::new(std::sync::Mutex::new(Vec::<Sample>::new()));
    let reporter = {
        let shared = shared.clone();
        let samples = samples.clone();
        let every = cfg.progress_every.max(Duration::from_millis(200));
        let pid = cfg.server_pid;
        let print = cfg.progress;
        let mut stop = ctx.stop.clone();
        tokio::spawn(async move {
            let mut prev = sample(&shared, pid, start);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => break,
                }
                let s = sample(&shared, pid, start);
                if print {
                    eprintln!("{}", progress_line(&shared, &prev, &s, total));
                }
                if let Ok(mut v) = samples.lock() {
                    v.push(s.clone());
                }
                prev = s;
            }
        })
    };

    // Join: publishers first (so subscribers measure join-to-first-packet against live streams).
    let gap = Duration::from_secs_f64(1.0 / cfg.join_rate.max(0.1));
    let mut tasks = Vec::new();
    let mut ready = Vec::new();
    let mut i = 0usize;
    for mut p in pubs {
        let (tx, rx) = oneshot::channel();
        p.ready = Some(tx);
        ready.push(rx);
        tasks.push(spawn_participant(
            &cfg,
            &ctx,
            p,
            media[i % media.len()].clone(),
        ));
        i += 1;
        tokio::time::sleep(gap).await;
    }
    let ready_deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for r in ready {
        let _ = tokio::time::timeout_at(ready_deadline, r).await;
    }
    for p in subs {
        if Instant::now() >= end {
            break;
        }
        tasks.push(spawn_participant(
            &cfg,
            &ctx,
            p,
            media[i % media.len()].clone(),
        ));
        i += 1;
        tokio::time::sleep(gap).await;
    }
    // Wait until every participant joined (or failed) to close the join phase.
    let join_deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < join_deadline.min(end) {
        let done = Shared::get(&shared.joins_ok) as usize
            + tasks.iter().filter(|t| t.is_finished()).count();
        if done >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let join_phase = start.elapsed();
    // Steady window: from one second after the join phase (subscriptions settle) to the end.
    let steady_start_at = (Instant::now() + Duration::from_secs(1)).min(end);
    tokio::time::sleep_until(tokio::time::Instant::from_std(steady_start_at)).await;
    let steady_a = sample(&shared, cfg.server_pid, start);
    tokio::time::sleep_until(tokio::time::Instant::from_std(end)).await;
    let steady_b = sample(&shared, cfg.server_pid, start);
    // Stop sending, let in-flight packets land, then leave and stop the media threads.
    sending.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop_tx.send(true);
    let _ = reporter.await;
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        futures_util::future::join_all(tasks),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop_media.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    joins_failed_fixup(&shared, total);

    let (expected, received) = shared.loss(true);
    let lost = expected.saturating_sub(received);
    let steady = (steady_b.at - steady_a.at).as_secs_f64().max(1e-3);
    let (latency, app_latency, join_ms, first_packet, fwd_streams) = match shared.hist.lock() {
        Ok(h) => (
            percentiles_ms(&h.latency),
            percentiles_ms(&h.app_latency),
            percentiles_ms(&h.join),
            percentiles_ms(&h.first_packet),
            h.streams.iter().map(|v| v.len() as u64).sum(),
        ),
        Err(_) => {
            let e = percentiles_ms(&stats::new_histogram());
            (e.clone(), e.clone(), e.clone(), e, 0)
        }
    };
    let server = cfg.server_pid.and_then(|pid| {
        let (a, b) = (steady_a.server?, steady_b.server?);
        let cpu_secs = b.cpu_secs - a.cpu_secs;
        let v = samples.lock().ok()?;
        let after30 = v
            .iter()
            .find(|s| s.at >= Duration::from_secs(30))
            .and_then(|s| s.server)
            .map(|s| s.rss_kb);
        Some(ServerStats {
            pid,
            cpu_pct: 100.0 * cpu_secs / steady,
            cpu_secs,
            rss_kb_after_30s: after30,
            rss_kb_end: b.rss_kb,
            rss_growth_pct: after30
                .filter(|&x| x > 0)
                .map(|x| 100.0 * (b.rss_kb as f64 - x as f64) / x as f64),
            streams_per_cpu_sec: if cpu_secs > 0.0 {
                fwd_streams as f64 * steady / cpu_secs
            } else {
                0.0
            },
        })
    });
    let loadgen_cpu_pct = match (steady_a.me, steady_b.me) {
        (Some(a), Some(b)) => 100.0 * (b.cpu_secs - a.cpu_secs) / steady,
        _ => 0.0,
    };
    let joins_ok = Shared::get(&shared.joins_ok);
    Ok(Summary {
        target: match &cfg.target {
            Target::LiveKit(t) => format!("parlor(livekit) {}", t.url),
            Target::Janus(t) => format!("janus {}", t.url),
        },
        rooms: cfg.rooms,
        publishers: cfg.publishers,
        subscribers: cfg.subscribers,
        video_kbps: cfg.video_kbps,
        duration_secs: cfg.duration.as_secs_f64(),
        participants: total,
        joins_ok,
        joins_failed: Shared::get(&shared.joins_failed),
        join_phase_secs: join_phase.as_secs_f64(),
        joins_per_sec: joins_ok as f64 / join_phase.as_secs_f64().max(1e-3),
        join_ms,
        first_packet_ms: first_packet,
        pcs_connected: Shared::get(&shared.pcs_connected),
        pcs_failed: Shared::get(&shared.pcs_failed),
        disconnects: Shared::get(&shared.disconnects),
        forwarded_streams: fwd_streams,
        packets_sent: Shared::get(&shared.packets_sent),
        packets_received: received,
        packets_expected: expected,
        packets_lost: lost,
        loss_pct: if expected > 0 {
            100.0 * lost as f64 / expected as f64
        } else {
            0.0
        },
        steady_secs: steady,
        sent_pps: (steady_b.sent - steady_a.sent) as f64 / steady,
        received_pps: (steady_b.recv - steady_a.recv) as f64 / steady,
        sent_bytes_per_sec: (steady_b.bytes_sent - steady_a.bytes_sent) as f64 / steady,
        received_bytes_per_sec: (steady_b.bytes_recv - steady_a.bytes_recv) as f64 / steady,
        latency_ms: latency,
        app_latency_ms: app_latency,
        send_errors: Shared::get(&shared.send_errors),
        socket_drops: Shared::get(&shared.socket_drops),
        server,
        loadgen_cpu_pct,
        loadgen_rss_kb: stats::proc_sample(None).map(|s| s.rss_kb).unwrap_or(0),
    })
}

fn joins_failed_fixup(shared: &Shared, total: usize) {
    let ok = Shared::get(&shared.joins_ok) as usize;
    shared
        .joins_failed
        .store(total.saturating_sub(ok) as u64, Ordering::Relaxed);
}
