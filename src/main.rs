//! The `parlor` binary: `serve` (default), `token`, `keys`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use parlor::config::Config;
use parlor_signaling::{AccessToken, VideoGrant};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "parlor",
    version,
    about = "Self-hostable real-time media server"
)]
struct Cli {
    /// Config file (default: ./parlor.toml if present).
    #[arg(long, short, global = true, env = "PARLOR_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (default).
    Serve(ServeArgs),
    /// Mint an access token for a room and identity.
    Token(TokenArgs),
    /// Generate a new API key and secret.
    Keys,
}

#[derive(clap::Args, Default)]
struct ServeArgs {
    /// HTTP/WebSocket listen address (overrides server.bind).
    #[arg(long)]
    bind: Option<String>,
    /// Database URL (overrides database.url).
    #[arg(long)]
    database_url: Option<String>,
    /// Data directory (overrides storage.data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Media UDP port (overrides rtc.udp_port).
    #[arg(long)]
    udp_port: Option<u16>,
    /// Public IP for ICE candidates (overrides rtc.public_ip).
    #[arg(long)]
    public_ip: Option<String>,
}

#[derive(clap::Args)]
struct TokenArgs {
    #[arg(long)]
    room: String,
    #[arg(long)]
    identity: String,
    #[arg(long)]
    name: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 6 * 3600)]
    ttl: u64,
    /// Deny publishing.
    #[arg(long)]
    no_publish: bool,
    /// API key to sign with (default: the first configured key or the dev key).
    #[arg(long)]
    api_key: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = Config::load(cli.config.as_deref(), std::env::vars())?;
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Keys => {
            let (k, s) = parlor::auth::generate_key_pair();
            println!(
                "API key:    {k}\nAPI secret: {s}\n\nAdd to parlor.toml:\n[keys]\n{k} = \"{s}\""
            );
            Ok(())
        }
        Command::Token(args) => {
            if config.keys.is_empty() {
                config.keys = parlor::auth::load_or_create_dev_keys(&config.storage.data_dir)?;
            }
            let (key, secret) = match &args.api_key {
                Some(k) => (
                    k.clone(),
                    config.keys.get(k).cloned().context("unknown --api-key")?,
                ),
                None => config
                    .keys
                    .iter()
                    .next()
                    .map(|(k, s)| (k.clone(), s.clone()))
                    .context("no API keys")?,
            };
            let mut grant = VideoGrant::join(&args.room);
            if args.no_publish {
                grant.can_publish = Some(false);
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            let mut claims = parlor_signaling::Claims {
                iss: key,
                sub: args.identity,
                nbf: now.saturating_sub(1),
                exp: now + args.ttl,
                name: args.name,
                video: Some(grant),
                ..Default::default()
            };
            if claims.name.is_none() {
                claims.name = Some(claims.sub.clone());
            }
            println!("{}", AccessToken::encode(&claims, &secret));
            Ok(())
        }
        Command::Serve(args) => {
            if let Some(b) = args.bind {
                config.server.bind = b;
            }
            if let Some(u) = args.database_url {
                config.database.url = u;
            }
            if let Some(d) = args.data_dir {
                config.storage.data_dir = d;
            }
            if let Some(p) = args.udp_port {
                config.rtc.udp_port = p;
            }
            if let Some(ip) = args.public_ip {
                config.rtc.public_ip = ip;
            }
            init_tracing();
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(serve(config))
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("PARLOR_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,webrtc=warn,rtc=warn,sqlx=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let handle = parlor::server::start(config, parlor::clock::system())
        .await
        .context("starting server")?;
    let http = handle.http_url();
    println!("Parlor {} listening on {http}", env!("CARGO_PKG_VERSION"));
    println!("  health:    {http}/health");
    println!("  API docs:  {http}/docs (OpenAPI: {http}/openapi.json)");
    if handle.dev_key.is_some() {
        println!(
            "  demo page: {http}/demo (dev mode: click Join, the page gets a demo-room token)"
        );
    } else {
        println!(
            "  demo page: {http}/demo (paste a token: parlor token --room demo --identity you)"
        );
    }
    println!("  signaling: {}/rtc (LiveKit protocol)", handle.ws_url());
    if let Some((k, s)) = &handle.dev_key {
        println!("  dev API key:    {k}");
        println!("  dev API secret: {s}");
        println!("  (stored in the data dir; set [keys] in parlor.toml for production)");
    }
    // What the Parlor home provides (scripts/setup installs it) and the command for what is missing.
    for line in handle.state.home.report() {
        println!("{line}");
    }
    let stop = handle.state.shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown signal received; finishing in-flight work");
        stop.cancel();
    });
    handle.wait().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
