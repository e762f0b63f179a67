//! `parlor-load`: join N rooms × P publishers × S subscribers over real WebRTC, publish synthetic Opus
//! (and optionally VP8), and report joins, join-to-first-packet, forwarded packets/s, loss, one-way
//! latency percentiles, bytes/s and the server's CPU and RSS. Progress lines go to stderr, the JSON
//! summary to stdout (and `--json-out`).

use clap::Parser;
use parlor_load::janus::JanusTarget;
use parlor_load::livekit::LiveKitTarget;
use parlor_load::{LoadConfig, Target};
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "parlor-load", version, about)]
struct Args {
    /// Server: `ws://host:port` (LiveKit protocol at /rtc) or, with --janus, Janus's WebSocket API.
    #[arg(long, default_value = "ws://127.0.0.1:7880")]
    url: String,
    /// Talk to Janus VideoRoom instead of Parlor.
    #[arg(long)]
    janus: bool,
    #[arg(long, env = "PARLOR_LOAD_API_KEY", default_value = "")]
    api_key: String,
    #[arg(long, env = "PARLOR_LOAD_API_SECRET", default_value = "")]
    api_secret: String,
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    #[arg(long, default_value_t = 1)]
    subscribers: usize,
    /// Seconds from the first join to the end of sending.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Abort (exit 2) if the run has not finished this many seconds after --duration.
    #[arg(long, default_value_t = 60)]
    hard_stop_grace: u64,
    /// Audio payload bytes per 20 ms packet.
    #[arg(long, default_value_t = 80)]
    audio_bytes: usize,
    /// Also publish VP8-like video at this bitrate in kbit/s (0: audio only).
    #[arg(long, default_value_t = 0)]
    video_kbps: u32,
    /// Participants started per second.
    #[arg(long, default_value_t = 50.0)]
    join_rate: f64,
    /// Media threads in the load generator.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Server PID to sample CPU and RSS from (/proc).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 5)]
    progress: u64,
    /// Room name prefix (Parlor) — Janus rooms are numbered from --janus-room-base.
    #[arg(long, default_value = "load-")]
    room_prefix: String,
    #[arg(long, default_value_t = 4200)]
    janus_room_base: u64,
    /// Publishers also subscribe to the other publishers in their room.
    #[arg(long)]
    publishers_subscribe: bool,
    /// ICE connectivity-check pacing of the client connections in ms (browsers: Ta = 50 ms;
    /// 0: the webrtc-rs default, 200 ms).
    #[arg(long, default_value_t = 50)]
    ice_check_ms: u64,
    /// Address the client sockets bind to. Janus (libnice) gathers no loopback candidates: against
    /// Janus pass the host's own address (traffic still stays on the machine).
    #[arg(long, default_value = "127.0.0.1")]
    client_ip: std::net::IpAddr,
    /// Also write the JSON summary to this file.
    #[arg(long)]
    json_out: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,rtc=error,rtc_ice=error,rtc_dtls=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let a = Args::parse();
    let target = if a.janus {
        Target::Janus(JanusTarget {
            url: a.url.clone(),
            room_base: a.janus_room_base,
        })
    } else {
        if a.api_key.is_empty() || a.api_secret.is_empty() {
            anyhow::bail!("--api-key and --api-secret are required for Parlor");
        }
        Target::LiveKit(LiveKitTarget {
            url: a.url.clone(),
            api_key: a.api_key.clone(),
            api_secret: a.api_secret.clone(),
        })
    };
    let cfg = LoadConfig {
        target,
        rooms: a.rooms,
        publishers: a.publishers,
        subscribers: a.subscribers,
        duration: Duration::from_secs(a.duration),
        audio_bytes: a.audio_bytes,
        video_kbps: a.video_kbps,
        join_rate: a.join_rate,
        threads: a.threads,
        server_pid: a.server_pid,
        progress_every: Duration::from_secs(a.progress.max(1)),
        room_prefix: a.room_prefix.clone(),
        publishers_subscribe: a.publishers_subscribe,
        progress: true,
        bind_ip: a.client_ip,
        ice_check_interval: (a.ice_check_ms > 0).then(|| Duration::from_millis(a.ice_check_ms)),
    };
    // Hard stop: whatever happens, the process ends.
    let hard = Duration::from_secs(a.duration + a.hard_stop_grace);
    std::thread::spawn(move || {
        std::thread::sleep(hard);
        eprintln!("parlor-load: hard stop after {}s", hard.as_secs());
        std::process::exit(2);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let summary = rt.block_on(parlor_load::run(cfg))?;
    let json = serde_json::to_string_pretty(&summary)?;
    println!("{json}");
    if let Some(p) = a.json_out {
        std::fs::write(p, &json)?;
    }
    Ok(())
}
