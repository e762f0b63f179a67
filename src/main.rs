//! The `parlor` binary: `serve` (default), `token`, `keys`, `assistant create`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use parlor::config::{Config, Loaded};
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
    /// Data directory (overrides storage.data_dir): SQLite file, recordings, dev keys.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (default).
    Serve(ServeArgs),
    /// Mint an access token, signed with a key the server on the same config/data dir accepts.
    Token(TokenArgs),
    /// Generate a new API key and secret.
    Keys,
    /// Voice assistants of the account of the server's API key (written into its store).
    #[command(subcommand)]
    Assistant(AssistantCmd),
}

#[derive(Subcommand)]
enum AssistantCmd {
    /// Create an assistant and, with --origin, a public key for the web pages that embed it.
    Create(AssistantArgs),
}

#[derive(clap::Args)]
struct AssistantArgs {
    #[arg(long)]
    name: String,
    /// A model id of the catalogue ([realtime] models; default parlor-local, the offline model).
    #[arg(long)]
    model: Option<String>,
    /// System prompt.
    #[arg(long)]
    prompt: Option<String>,
    /// What the assistant says first.
    #[arg(long)]
    greeting: Option<String>,
    #[arg(long)]
    voice: Option<String>,
    #[arg(long)]
    temperature: Option<f64>,
    #[arg(long)]
    max_tokens: Option<i64>,
    /// Price per minute of call, in the account's currency.
    #[arg(long)]
    price_per_minute: Option<f64>,
    /// Record its calls.
    #[arg(long)]
    record: bool,
    /// Allowed origin of a new public key (repeat or comma-separate; none: no key is created).
    #[arg(long, value_delimiter = ',')]
    origin: Vec<String>,
    /// Create a pk_test_ key instead of pk_live_.
    #[arg(long)]
    test_key: bool,
    /// API key id whose account gets the assistant (default: the first key the server uses).
    #[arg(long)]
    api_key: Option<String>,
}

#[derive(clap::Args, Default)]
struct ServeArgs {
    /// HTTP/WebSocket listen address (overrides server.bind).
    #[arg(long)]
    bind: Option<String>,
    /// Database URL (overrides database.url).
    #[arg(long)]
    database_url: Option<String>,
    /// Media UDP port (overrides rtc.udp_port).
    #[arg(long)]
    udp_port: Option<u16>,
    /// Public IP for ICE candidates (overrides rtc.public_ip).
    #[arg(long)]
    public_ip: Option<String>,
}

#[derive(clap::Args)]
struct TokenArgs {
    /// Identity (user id) the token is for (the JWT `sub`).
    #[arg(long)]
    identity: String,
    /// Room to join: grants roomJoin, canPublish, canSubscribe and canPublishData for it.
    #[arg(long)]
    room: Option<String>,
    /// Display name (default: the identity).
    #[arg(long)]
    name: Option<String>,
    /// Participant metadata (free text, often JSON).
    #[arg(long)]
    metadata: Option<String>,
    /// Lifetime: seconds, or with a unit: 90s, 30m, 6h, 7d.
    #[arg(long, default_value = "6h", value_parser = parse_ttl)]
    ttl: u64,
    /// More grants, comma-separated LiveKit VideoGrant names: roomJoin, roomCreate, roomAdmin,
    /// roomList, roomRecord, canPublish, canSubscribe, canPublishData, hidden.
    #[arg(long, value_delimiter = ',')]
    grant: Vec<String>,
    /// Deny publishing.
    #[arg(long)]
    no_publish: bool,
    /// API key id to sign with (default: the first key the server uses).
    #[arg(long)]
    api_key: Option<String>,
}

fn parse_ttl(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{s}`: use seconds or a number with s, m, h or d")),
    };
    match num.parse::<u64>() {
        Ok(n) if n > 0 => n
            .checked_mul(mult)
            .ok_or_else(|| format!("`{s}` is too long")),
        _ => Err(format!(
            "`{s}`: expected a positive number (e.g. 3600, 30m, 6h)"
        )),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let loaded = Config::load_report(cli.config.as_deref(), std::env::vars())?;
    let mut config = loaded.config.clone();
    if let Some(d) = &cli.data_dir {
        config.storage.data_dir = d.clone();
    }
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Keys => {
            let (k, s) = parlor::auth::generate_key_pair();
            println!(
                "API key:    {k}\nAPI secret: {s}\n\nAdd to parlor.toml:\n[keys]\n{k} = \"{s}\""
            );
            Ok(())
        }
        Command::Token(args) => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            token(&loaded, &config, args)
        }
        Command::Assistant(AssistantCmd::Create(args)) => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            assistant_create(&loaded, &config, args)
        }
        Command::Serve(args) => {
            if let Some(b) = args.bind {
                config.server.bind = b;
            }
            if let Some(u) = args.database_url {
                config.database.url = u;
            }
            if let Some(p) = args.udp_port {
                config.rtc.udp_port = p;
            }
            if let Some(ip) = args.public_ip {
                config.rtc.public_ip = ip;
            }
            init_tracing();
            for w in &loaded.warnings {
                tracing::warn!("{w}");
            }
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(serve(config))
        }
    }
}

fn show(p: &std::path::Path) -> String {
    std::path::absolute(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

/// `parlor assistant create`: for the account of the key `parlor token` would sign with.
fn assistant_create(loaded: &Loaded, config: &Config, a: AssistantArgs) -> anyhow::Result<()> {
    let (key, _, source) = signing_key(loaded, config, a.api_key.as_deref())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let new = parlor::embed::cli::NewAssistant {
        name: a.name,
        model: a.model,
        system_prompt: a.prompt,
        greeting: a.greeting,
        voice: a.voice,
        temperature: a.temperature,
        max_tokens: a.max_tokens,
        price_per_minute: a.price_per_minute,
        record: a.record,
        origins: a.origin,
        test_key: a.test_key,
    };
    let rt = tokio::runtime::Runtime::new()?;
    let (asst, pk) = rt.block_on(parlor::embed::cli::create(config, &key, now, new))?;
    eprintln!(
        "account: API key {key} (from {source}); store {}",
        config.database_url()
    );
    println!(
        "assistant: {} ({}, model {})",
        asst.id, asst.name, asst.model
    );
    if let Some(k) = pk {
        println!(
            "public key: {} (allowed origins: {})",
            k.key,
            k.allowed_origins.join(", ")
        );
    }
    Ok(())
}

/// The API key `serve` would sign with (or `api_key`): (key, secret, where it came from).
fn signing_key(
    loaded: &Loaded,
    config: &Config,
    api_key: Option<&str>,
) -> anyhow::Result<(String, String, String)> {
    use parlor::auth::{find_keys, KeySource};
    let data_dir = &config.storage.data_dir;
    let dev_file = parlor::auth::dev_keys_path(data_dir);
    let Some(found) = find_keys(&config.keys, data_dir)? else {
        let file = match &loaded.file {
            Some(f) => format!("{} (no [keys])", show(f)),
            None => "none (no --config / PARLOR_CONFIG, no ./parlor.toml)".to_string(),
        };
        anyhow::bail!(
            "no API keys found. Looked at:\n  config file:    {file}\n  PARLOR_KEYS:    not set\n  \
             dev keys file:  {} (not found)\n\
             Point at the server's config or data dir (parlor token --config FILE, --data-dir DIR),\n\
             or set PARLOR_KEYS=key:secret. `parlor serve` creates the dev keys file on first start.",
            show(&dev_file)
        );
    };
    let source = match &found.source {
        KeySource::Config if loaded.keys_from_env => "PARLOR_KEYS".to_string(),
        KeySource::Config => match &loaded.file {
            Some(f) => format!("[keys] in {}", show(f)),
            None => "[keys]".to_string(),
        },
        KeySource::DevFile(p) => format!("dev keys file {}", show(p)),
    };
    let (key, secret) = match api_key {
        Some(k) => match found.keys.get(k) {
            Some(s) => (k.to_string(), s.clone()),
            None => anyhow::bail!(
                "API key `{k}` not found in {source}; available key ids: {}",
                found.keys.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        },
        None => found
            .keys
            .iter()
            .next()
            .map(|(k, s)| (k.clone(), s.clone()))
            .context("no API keys")?,
    };
    Ok((key, secret, source))
}

/// `parlor token`: find the keys exactly as `serve` does (never creating any), mint, say which key.
fn token(loaded: &Loaded, config: &Config, args: TokenArgs) -> anyhow::Result<()> {
    let (key, secret, source) = signing_key(loaded, config, args.api_key.as_deref())?;
    let mut grant = match &args.room {
        Some(room) => VideoGrant::join(room),
        None => VideoGrant::default(),
    };
    for g in &args.grant {
        parlor::auth::add_grant(&mut grant, g.trim()).map_err(anyhow::Error::msg)?;
    }
    if grant.room_join && grant.room.is_none() {
        anyhow::bail!("the roomJoin grant needs --room");
    }
    if args.no_publish {
        if args.grant.iter().any(|g| g.trim() == "canPublish") {
            anyhow::bail!("--no-publish contradicts --grant canPublish");
        }
        grant.can_publish = Some(false);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let grants = parlor::auth::grant_names(&grant);
    let has_grant = grant != VideoGrant::default();
    let claims = parlor_signaling::Claims {
        iss: key.clone(),
        name: Some(args.name.unwrap_or_else(|| args.identity.clone())),
        sub: args.identity,
        nbf: now.saturating_sub(1),
        exp: now + args.ttl,
        metadata: args.metadata,
        video: has_grant.then_some(grant.clone()),
        ..Default::default()
    };
    eprintln!(
        "signed with API key {key} from {source}; identity {}, room {}, grants {}, expires {}",
        claims.sub,
        grant.room.as_deref().unwrap_or("none"),
        if grants.is_empty() {
            "none (API calls only)".to_string()
        } else {
            grants.join(",")
        },
        parlor::timefmt::rfc3339_ms(claims.exp as i64 * 1000)
    );
    println!("{}", AccessToken::encode(&claims, &secret));
    Ok(())
}

/// Default log filter. Third-party WARNs that every healthy connection triggers (rtc-dtls
/// "Unsupported Extension Type" for the TLS extensions browsers offer, "conn.remote_addr is
/// empty") are hidden unless `PARLOR_LOG`/`RUST_LOG` (which replace this filter) ask for them.
// rtc's pipeline logs each per-packet read/write error at WARN (a flood anyone can cause with STUN);
// the media worker drops those packets first and counts them (sfu::stun_check,
// parlor_stun_dropped_total) with rate-limited lines, so that handler's own lines are silenced.
const DEFAULT_LOG: &str = "info,sqlx=warn,webrtc=warn,rtc=warn,\
    rtc::peer_connection::handler=error,\
    rtc_dtls::handshake::handshake_message_client_hello=error,\
    rtc_dtls::handshake::handshake_message_server_hello=error,rtc_dtls::config=error";

/// Logs go to stderr, coloured only when stderr is a terminal and `NO_COLOR` is unset or empty.
fn init_tracing() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let user = ["PARLOR_LOG", "RUST_LOG"].into_iter().find_map(|var| {
        std::env::var(var)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| (var, v))
    });
    let mut bad = None;
    let filter = match user {
        Some((var, v)) => EnvFilter::builder().parse(&v).unwrap_or_else(|e| {
            bad = Some(format!(
                "{var}={v:?} is not a valid log filter ({e}); using the default"
            ));
            EnvFilter::new(DEFAULT_LOG)
        }),
        None => EnvFilter::new(DEFAULT_LOG),
    };
    let color = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .init();
    if let Some(b) = bad {
        tracing::warn!("{b}");
    }
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
    if let Some((a, k)) = &handle.dev_embed {
        println!("  voice widget:   {http}/widget (talk to the demo assistant)");
        println!("  demo assistant: {} ({}, model {})", a.id, a.name, a.model);
        println!(
            "  public key:     {} (embed tokens from {})",
            k.key,
            k.allowed_origins.join(", ")
        );
    }
    // What the Parlor home provides (scripts/setup installs it) and the command for what is missing.
    for line in handle.state.home.report() {
        println!("{line}");
    }
    let state = handle.state.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown signal received; finishing in-flight work");
        // Multi-node mode: drain first (a second signal stops at once).
        tokio::select! {
            _ = parlor::server::drain(&state) => {}
            _ = shutdown_signal() => tracing::warn!("second shutdown signal; not waiting for the drain"),
        }
        state.shutdown.cancel();
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

#[cfg(test)]
mod tests {
    use super::DEFAULT_LOG;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::EnvFilter;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The default filter hides exactly the per-connection rtc-dtls WARNs (the ones a browser's
    /// TLS extensions and every DTLS client role trigger), not other rtc-dtls warnings or errors.
    #[test]
    fn default_filter_hides_per_connection_dtls_noise_only() {
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new(DEFAULT_LOG))
            .with_writer(move || w.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(sub, || {
            tracing::warn!(target: "rtc_dtls::handshake::handshake_message_client_hello", "Unsupported Extension Type 0 23");
            tracing::warn!(target: "rtc_dtls::handshake::handshake_message_server_hello", "Unsupported Extension Type 0 5");
            tracing::warn!(target: "rtc_dtls::config", "conn.remote_addr is empty");
            tracing::warn!(target: "rtc_dtls::conn", "a real DTLS problem");
            tracing::error!(target: "rtc_dtls::config", "a real config error");
            tracing::info!(target: "rtc_ice::agent", "ice chatter");
            tracing::info!(target: "parlor::signal", "our own line");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(
            !out.contains("Unsupported") && !out.contains("remote_addr"),
            "{out}"
        );
        for want in ["a real DTLS problem", "a real config error", "our own line"] {
            assert!(out.contains(want), "{want} missing: {out}");
        }
        assert!(!out.contains("ice chatter"), "{out}");
    }
}
