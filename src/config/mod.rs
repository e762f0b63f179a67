//! Configuration: defaults < `parlor.toml` < `PARLOR_*` environment variables < command-line flags.
//!
//! Every key `[section] key` can be overridden by the environment variable `PARLOR_SECTION_KEY`
//! (upper case), e.g. `PARLOR_SERVER_BIND=0.0.0.0:7880` or `PARLOR_DATABASE_URL=postgres://...`.
//! Lists take comma-separated values (`PARLOR_TURN_SECRETS=new,old`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub storage: StorageConfig,
    pub rtc: RtcConfig,
    pub room: RoomConfig,
    pub turn: TurnConfig,
    pub limits: LimitsConfig,
    pub webhooks: WebhooksConfig,
    pub presence: PresenceConfig,
    pub metrics: MetricsConfig,
    /// Model sessions and their providers (`src/realtime/config.rs`).
    pub realtime: crate::realtime::config::RealtimeConfig,
    /// Voice-assistant accounts and the embed endpoint (`src/embed/config.rs`).
    pub embed: crate::embed::config::EmbedConfig,
    /// Multi-node mode (`src/cluster/config.rs`); off unless `url` is set.
    pub redis: crate::cluster::config::RedisConfig,
    /// API keys: key -> secret. Empty: a dev key is generated on first start and kept in the data dir.
    pub keys: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// HTTP + WebSocket listen address.
    pub bind: String,
    /// URL clients use to reach this server (used in join URLs); derived from `bind` when empty.
    pub public_url: String,
    /// Node name reported by /health.
    pub node_name: String,
    /// Seconds to wait for in-flight work on shutdown.
    pub shutdown_grace_secs: u64,
    /// Multi-node mode: how long a node drains on SIGINT/SIGTERM (no new rooms; its rooms go on
    /// until empty) before it hands over the rooms still open and shuts down.
    pub drain_timeout_secs: u64,
    /// Parlor home: per-machine directory shared by every data dir, where `scripts/setup` installs
    /// the web assets (and later the voice models). Empty: `$PARLOR_HOME`, else
    /// `$XDG_DATA_HOME/parlor`, else `~/.local/share/parlor`. `PARLOR_HOME` also sets it.
    pub home: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/file.db` (default, under the data dir) or `postgres://user@host/db`.
    pub url: String,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Where the SQLite file, recordings and dev keys live.
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RtcConfig {
    /// IP the media UDP socket binds to.
    pub bind_ip: String,
    /// UDP port of the first media worker; worker `i` uses `udp_port + i` (0: ephemeral ports).
    pub udp_port: u16,
    /// ICE-TCP fallback port for clients whose UDP is blocked (0: off). One port for all workers.
    pub tcp_port: u16,
    /// Media workers (threads, each owning its rooms and UDP socket). 0: one per CPU core.
    pub workers: usize,
    /// Run media workers under SCHED_FIFO with this priority (1-99; 0: normal scheduling). Needs
    /// CAP_SYS_NICE (or root); without it the server logs a warning and keeps normal scheduling.
    pub realtime_priority: u8,
    /// Public IP announced in ICE candidates (NAT 1:1). Empty: the bind IP.
    pub public_ip: String,
    /// Extra STUN URLs handed to clients.
    pub stun_urls: Vec<String>,
    /// ICE-TCP connections held at once (also bounded by the open-file budget). At the cap, the
    /// oldest connection without a completed ICE binding is closed to make room.
    pub tcp_max_connections: usize,
    /// ICE-TCP connections held at once from one source IP.
    pub tcp_max_connections_per_ip: usize,
    /// An ICE-TCP connection whose first frame is not a STUN Binding for a live peer connection is
    /// closed at once; one that has not completed an integrity-checked binding within this time is
    /// closed.
    pub tcp_handshake_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RoomConfig {
    /// Seconds an empty room stays open before it is closed.
    pub empty_timeout_secs: u64,
    pub max_participants: usize,
    pub max_rooms: usize,
    /// Maximum participants in a huddle.
    pub max_huddle_size: usize,
    /// Lifetime of join tokens issued by the REST API.
    pub token_ttl_secs: u64,
    /// RoomService.MutePublishedTrack may also unmute a track (LiveKit's option of the same name;
    /// off: a server can silence a participant, never open its microphone).
    pub enable_remote_unmute: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TurnConfig {
    /// Run the embedded TURN server. Disable when an external coturn uses the same secrets.
    pub enabled: bool,
    pub udp_port: u16,
    pub tcp_port: u16,
    /// TLS port for `turns:` URLs (only advertised; terminate TLS in front when used).
    pub tls_port: u16,
    pub realm: String,
    /// Host clients use in TURN URLs. Empty: the public IP / bind IP.
    pub host: String,
    /// Shared secrets (first mints, any validates). Empty: derived from the dev key.
    pub secrets: Vec<String>,
    /// Credential lifetime in seconds.
    pub ttl_secs: u64,
    /// Peer CIDRs allowed even though they are private/loopback (default: none).
    pub allow_peer_cidrs: Vec<String>,
    /// Allocations per user id; EVEN-PORT reservations count as allocations.
    pub max_allocations_per_user: usize,
    /// EVEN-PORT reservations in total.
    pub max_reservations: usize,
    /// TURN TCP client connections in total.
    pub max_tcp_connections: usize,
    /// TURN TCP client connections per source IP.
    pub max_tcp_connections_per_ip: usize,
    /// A TURN TCP connection without an allocation for this long is closed.
    pub tcp_idle_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Endpoints that receive every event (POST, JSON). Empty: webhooks off.
    pub urls: Vec<String>,
    /// HMAC-SHA256 signing secret. Empty: the primary API secret.
    pub secret: String,
    /// Attempts per delivery before it is marked failed (retries back off 1 s, 2 s, 4 s … 5 min).
    pub max_attempts: u32,
    /// Per-attempt timeout.
    pub timeout_secs: u64,
    /// Endpoints that receive LiveKit-format webhooks (`room_started`, `participant_joined`,
    /// `track_published`, … as `livekit.WebhookEvent` JSON, signed like LiveKit's: a JWT in
    /// `Authorization`). Same queue, retries and log as `urls`. Empty: off.
    pub livekit_urls: Vec<String>,
    /// The API key (one of `[keys]`) whose secret signs the LiveKit-format webhooks; the
    /// receiver verifies with that key and secret. Empty: the primary API key.
    pub livekit_api_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceConfig {
    /// Seconds a status set with `PUT /api/presence` keeps a user present without a presence
    /// WebSocket or room connection; after it the user reads `offline` (each PUT renews it).
    pub rest_ttl_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Bearer token `/metrics` requires (`Authorization: Bearer <token>`). Empty: no auth.
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest accepted HTTP request body.
    pub max_body_bytes: usize,
    /// Largest accepted signal (WebSocket) message.
    pub max_signal_message_bytes: usize,
    /// Signal messages per second per connection before the connection is closed.
    pub max_signal_messages_per_sec: u32,
    /// Presence WebSocket messages per second per connection before the connection is closed.
    pub max_presence_messages_per_sec: u32,
    pub max_devices_per_user: usize,
    /// HTTP/WebSocket connections held at once (also bounded by the open-file budget). At the cap,
    /// the oldest connection that has not sent a complete request head is closed to make room.
    pub http_max_connections: usize,
    /// HTTP/WebSocket connections held at once from one source IP.
    pub http_max_connections_per_ip: usize,
    /// A request head (request line and headers) must arrive complete within this time of the
    /// connection waiting for it — also bounds how long a keep-alive connection waits for its next
    /// request (slow-header / slowloris clients are closed).
    pub http_header_timeout_ms: u64,
    /// An HTTP connection on which no byte moves either way for this long is closed (stalled
    /// request bodies, silent clients). Upgraded WebSockets are not affected.
    pub http_idle_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig {
                bind: "127.0.0.1:7880".into(),
                public_url: String::new(),
                node_name: "parlor-1".into(),
                shutdown_grace_secs: 10,
                drain_timeout_secs: 60,
                home: String::new(),
            },
            database: DatabaseConfig {
                url: String::new(),
                max_connections: 8,
            },
            storage: StorageConfig {
                data_dir: PathBuf::from("./data"),
            },
            rtc: RtcConfig {
                bind_ip: "127.0.0.1".into(),
                udp_port: 7882,
                tcp_port: 7881,
                workers: 0,
                realtime_priority: 0,
                public_ip: String::new(),
                stun_urls: Vec::new(),
                tcp_max_connections: 4096,
                tcp_max_connections_per_ip: 64,
                tcp_handshake_timeout_ms: 10_000,
            },
            room: RoomConfig {
                empty_timeout_secs: 20,
                max_participants: 100,
                max_rooms: 1000,
                max_huddle_size: 50,
                token_ttl_secs: 6 * 3600,
                enable_remote_unmute: false,
            },
            turn: TurnConfig {
                enabled: true,
                udp_port: 3478,
                tcp_port: 3478,
                tls_port: 0,
                realm: "parlor".into(),
                host: String::new(),
                secrets: Vec::new(),
                ttl_secs: 86400,
                allow_peer_cidrs: Vec::new(),
                max_allocations_per_user: 10,
                max_reservations: 1000,
                max_tcp_connections: 4096,
                max_tcp_connections_per_ip: 256,
                tcp_idle_timeout_ms: 10_000,
            },
            limits: LimitsConfig {
                max_body_bytes: 1024 * 1024,
                max_signal_message_bytes: 256 * 1024,
                max_signal_messages_per_sec: 200,
                max_presence_messages_per_sec: 20,
                max_devices_per_user: 10,
                http_max_connections: 10_000,
                http_max_connections_per_ip: 256,
                http_header_timeout_ms: 10_000,
                http_idle_timeout_ms: 60_000,
            },
            webhooks: WebhooksConfig {
                urls: Vec::new(),
                secret: String::new(),
                max_attempts: 8,
                timeout_secs: 5,
                livekit_urls: Vec::new(),
                livekit_api_key: String::new(),
            },
            presence: PresenceConfig { rest_ttl_secs: 300 },
            metrics: MetricsConfig {
                token: String::new(),
            },
            realtime: Default::default(),
            embed: Default::default(),
            redis: Default::default(),
            keys: BTreeMap::new(),
        }
    }
}
impl Default for ServerConfig {
    fn default() -> Self {
        Config::default().server
    }
}
impl Default for DatabaseConfig {
    fn default() -> Self {
        Config::default().database
    }
}
impl Default for WebhooksConfig {
    fn default() -> Self {
        Config::default().webhooks
    }
}
impl Default for StorageConfig {
    fn default() -> Self {
        Config::default().storage
    }
}
impl Default for RtcConfig {
    fn default() -> Self {
        Config::default().rtc
    }
}
impl Default for RoomConfig {
    fn default() -> Self {
        Config::default().room
    }
}
impl Default for TurnConfig {
    fn default() -> Self {
        Config::default().turn
    }
}
impl Default for PresenceConfig {
    fn default() -> Self {
        Config::default().presence
    }
}
impl Default for MetricsConfig {
    fn default() -> Self {
        Config::default().metrics
    }
}
impl Default for LimitsConfig {
    fn default() -> Self {
        Config::default().limits
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config: {0}")]
    Parse(String),
    /// A key the file sets that this version does not have (a typo, or a newer/older setting).
    #[error("{}: unknown key `{key}`{}", file.display(), hint)]
    UnknownKey {
        file: PathBuf,
        key: String,
        /// `; did you mean `x.y`?` or the list of keys of that section.
        hint: String,
    },
    #[error("environment variable {var}: {msg}")]
    Env { var: String, msg: String },
}

/// What [`Config::load_report`] found besides the config itself.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// The file that was read (`--config`, or `./parlor.toml` when present).
    pub file: Option<PathBuf>,
    /// `[keys]` came from the `PARLOR_KEYS` environment variable.
    pub keys_from_env: bool,
    /// Start-up warnings (e.g. a `PARLOR_<SECTION>_<KEY>` variable naming no key).
    pub warnings: Vec<String>,
}

impl Config {
    /// Load defaults, then the TOML file (if given or `./parlor.toml` exists), then `PARLOR_*` env vars.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        Self::load_report(path, env).map(|l| l.config)
    }

    /// [`Config::load`], also reporting where values came from and warnings to log.
    pub fn load_report(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Loaded, ConfigError> {
        let mut value = toml::Value::try_from(Config::default())
            .map_err(|e| ConfigError::Parse(e.to_string()))?;
        let file = match path {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from("parlor.toml")).filter(|p| p.exists()),
        };
        if let Some(p) = &file {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.clone(),
                source,
            })?;
            let file_value: toml::Value = toml::from_str(&text)
                .map_err(|e| ConfigError::Parse(format!("{}: {e}", p.display())))?;
            check_known_keys(&value, &file_value, p)?;
            merge(&mut value, file_value);
        }
        let mut warnings = Vec::new();
        let keys_from_env = apply_env(&mut value, env, &mut warnings)?;
        let config = value
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        Ok(Loaded {
            config,
            file,
            keys_from_env,
            warnings,
        })
    }

    /// The Parlor home (see `server.home`).
    pub fn home_dir(&self) -> PathBuf {
        if self.server.home.is_empty() {
            crate::home::default_home(|k| std::env::var(k).ok())
        } else {
            PathBuf::from(&self.server.home)
        }
    }

    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.storage.data_dir.join("parlor.db").display()
            )
        } else {
            self.database.url.clone()
        }
    }

    /// The URL clients connect to (ws://host:port).
    pub fn public_ws_url(&self) -> String {
        if !self.server.public_url.is_empty() {
            return self.server.public_url.clone();
        }
        format!("ws://{}", self.server.bind)
    }

    pub fn public_http_url(&self) -> String {
        let ws = self.public_ws_url();
        if let Some(rest) = ws.strip_prefix("wss://") {
            format!("https://{rest}")
        } else if let Some(rest) = ws.strip_prefix("ws://") {
            format!("http://{rest}")
        } else {
            ws
        }
    }
}

fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) if existing.is_table() && v.is_table() => merge(existing, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// Apply `PARLOR_<SECTION>_<KEY>` overrides. A variable whose section exists but whose key does not
/// adds a warning naming the closest key; variables naming no section (e.g. `PARLOR_TEST_PG_URL`,
/// `PARLOR_LOG`) are not settings and are left alone. Returns whether `PARLOR_KEYS` set the keys.
fn apply_env(
    value: &mut toml::Value,
    env: impl IntoIterator<Item = (String, String)>,
    warnings: &mut Vec<String>,
) -> Result<bool, ConfigError> {
    let mut keys_from_env = false;
    let toml::Value::Table(root) = value else {
        return Ok(false);
    };
    for (var, raw) in env {
        if var == "PARLOR_KEYS" {
            // `key:secret,key2:secret2`
            let mut keys = toml::map::Map::new();
            for pair in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let (k, s) = pair.split_once(':').ok_or_else(|| ConfigError::Env {
                    var: var.clone(),
                    msg: "expected key:secret pairs".into(),
                })?;
                keys.insert(k.to_string(), toml::Value::String(s.to_string()));
            }
            root.insert("keys".into(), toml::Value::Table(keys));
            keys_from_env = true;
            continue;
        }
        if var == "PARLOR_HOME" {
            // The variable `scripts/setup` uses; an alias of PARLOR_SERVER_HOME.
            if let Some(toml::Value::Table(server)) = root.get_mut("server") {
                server.insert("home".into(), toml::Value::String(raw.clone()));
            }
            continue;
        }
        let Some(rest) = var.strip_prefix("PARLOR_") else {
            continue;
        };
        let rest = rest.to_ascii_lowercase();
        // Find the section whose name prefixes the rest (sections have no underscores).
        let Some((section, key)) = rest.split_once('_') else {
            continue;
        };
        if section == "keys" {
            continue;
        }
        let Some(toml::Value::Table(sec)) = root.get_mut(section) else {
            continue;
        };
        let Some(current) = sec.get(key) else {
            let env_name = |k: &str| format!("PARLOR_{}_{}", section, k).to_ascii_uppercase();
            let hint = match closest(key, sec.keys().map(String::as_str)) {
                Some(k) => format!("did you mean {}?", env_name(k)),
                None => format!(
                    "[{section}] keys: {}",
                    sec.keys()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            warnings.push(format!(
                "environment variable {var} is ignored: [{section}] has no key `{key}`; {hint}"
            ));
            continue;
        };
        let err = |msg: &str| ConfigError::Env {
            var: var.clone(),
            msg: msg.to_string(),
        };
        let new = match current {
            toml::Value::Integer(_) => {
                toml::Value::Integer(raw.trim().parse().map_err(|_| err("expected an integer"))?)
            }
            toml::Value::Boolean(_) => toml::Value::Boolean(match raw.trim() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => return Err(err("expected true/false")),
            }),
            toml::Value::Array(_) => toml::Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.to_string()))
                    .collect(),
            ),
            _ => toml::Value::String(raw.clone()),
        };
        sec.insert(key.to_string(), new);
    }
    Ok(keys_from_env)
}

/// Fail on a key of `file` that `schema` (the defaults) does not have, naming the closest known key.
/// `[keys]` is free-form (API key ids).
fn check_known_keys(
    schema: &toml::Value,
    file: &toml::Value,
    path: &Path,
) -> Result<(), ConfigError> {
    let (toml::Value::Table(known), toml::Value::Table(given)) = (schema, file) else {
        return Ok(());
    };
    let unknown = |key: String, hint: String| ConfigError::UnknownKey {
        file: path.to_path_buf(),
        key,
        hint,
    };
    // Every `section.key` path, for keys set in the wrong section or at the top level.
    let all: Vec<String> = known
        .iter()
        .filter(|(s, _)| s.as_str() != "keys")
        .flat_map(|(s, v)| {
            v.as_table()
                .into_iter()
                .flat_map(move |t| t.keys().map(move |k| format!("{s}.{k}")))
        })
        .collect();
    let leaf_match = |key: &str| {
        closest(
            key,
            all.iter()
                .map(|p| p.split_once('.').map_or(p.as_str(), |(_, k)| k)),
        )
        .and_then(|leaf| all.iter().find(|p| p.ends_with(&format!(".{leaf}"))))
    };
    for (section, v) in given {
        let Some(known_sec) = known.get(section) else {
            let hint = if v.is_table() {
                closest(section, known.keys().map(String::as_str))
                    .map(|s| format!("; did you mean [{s}]?"))
            } else {
                leaf_match(section).map(|p| format!("; did you mean `{p}`?"))
            };
            let sections: Vec<&str> = known.keys().map(String::as_str).collect();
            return Err(unknown(
                section.clone(),
                hint.unwrap_or_else(|| format!("; sections: {}", sections.join(", "))),
            ));
        };
        if section == "keys" {
            continue;
        }
        let (Some(known_keys), Some(given_keys)) = (known_sec.as_table(), v.as_table()) else {
            continue; // a type error; deserialization reports it
        };
        for key in given_keys.keys() {
            if known_keys.contains_key(key) {
                continue;
            }
            let hint = closest(key, known_keys.keys().map(String::as_str))
                .map(|k| format!("; did you mean `{section}.{k}`?"))
                .or_else(|| {
                    leaf_match(key)
                        .filter(|p| !p.starts_with(&format!("{section}.")))
                        .map(|p| format!("; did you mean `{p}`?"))
                })
                .unwrap_or_else(|| {
                    let keys: Vec<&str> = known_keys.keys().map(String::as_str).collect();
                    format!("; [{section}] keys: {}", keys.join(", "))
                });
            return Err(unknown(format!("{section}.{key}"), hint));
        }
    }
    Ok(())
}

/// The candidate closest to `word` by edit distance, when it is close enough to be a likely typo
/// (at most a third of the word's length, at least 2 edits allowed).
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let max = (word.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= max)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance (insert, delete, substitute), by characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(cur)
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests;
