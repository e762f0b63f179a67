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
    pub max_allocations_per_user: usize,
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
    pub max_devices_per_user: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig {
                bind: "127.0.0.1:7880".into(),
                public_url: String::new(),
                node_name: "parlor-1".into(),
                shutdown_grace_secs: 10,
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
            },
            room: RoomConfig {
                empty_timeout_secs: 20,
                max_participants: 100,
                max_rooms: 1000,
                max_huddle_size: 50,
                token_ttl_secs: 6 * 3600,
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
            },
            limits: LimitsConfig {
                max_body_bytes: 1024 * 1024,
                max_signal_message_bytes: 256 * 1024,
                max_signal_messages_per_sec: 200,
                max_devices_per_user: 10,
            },
            webhooks: WebhooksConfig {
                urls: Vec::new(),
                secret: String::new(),
                max_attempts: 8,
                timeout_secs: 5,
            },
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
    #[error("environment variable {var}: {msg}")]
    Env { var: String, msg: String },
}

impl Config {
    /// Load defaults, then the TOML file (if given or `./parlor.toml` exists), then `PARLOR_*` env vars.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut value = toml::Value::try_from(Config::default())
            .map_err(|e| ConfigError::Parse(e.to_string()))?;
        let file = match path {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from("parlor.toml")).filter(|p| p.exists()),
        };
        if let Some(p) = file {
            let text = std::fs::read_to_string(&p).map_err(|source| ConfigError::Read {
                path: p.clone(),
                source,
            })?;
            let file_value: toml::Value =
                toml::from_str(&text).map_err(|e| ConfigError::Parse(e.to_string()))?;
            merge(&mut value, file_value);
        }
        apply_env(&mut value, env)?;
        value
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))
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

fn apply_env(
    value: &mut toml::Value,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let toml::Value::Table(root) = value else {
        return Ok(());
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
        if section == "keys" && key.is_empty() {
            continue;
        }
        let Some(toml::Value::Table(sec)) = root.get_mut(section) else {
            continue;
        };
        let Some(current) = sec.get(key) else {
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_env_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.toml");
        std::fs::write(
            &p,
            "[server]\nbind = \"0.0.0.0:9000\"\n[rtc]\nudp_port = 9001\n[keys]\nAPIk = \"s\"\n",
        )
        .unwrap();
        let env = vec![
            ("PARLOR_RTC_UDP_PORT".to_string(), "9002".to_string()),
            ("PARLOR_TURN_SECRETS".to_string(), "a, b".to_string()),
            ("PARLOR_TURN_ENABLED".to_string(), "false".to_string()),
            (
                "PARLOR_DATABASE_URL".to_string(),
                "postgres://x/y".to_string(),
            ),
            ("UNRELATED".to_string(), "1".to_string()),
            ("PARLOR_KEYS".to_string(), "APIk:s, APIz:t".to_string()),
            ("PARLOR_HOME".to_string(), "/srv/parlor-home".to_string()),
        ];
        let c = Config::load(Some(&p), env).unwrap();
        assert_eq!(c.server.bind, "0.0.0.0:9000");
        assert_eq!(c.rtc.udp_port, 9002);
        assert_eq!(c.turn.secrets, vec!["a", "b"]);
        assert!(!c.turn.enabled);
        assert_eq!(c.database.url, "postgres://x/y");
        assert_eq!(c.keys.get("APIk").map(String::as_str), Some("s"));
        assert_eq!(c.keys.get("APIz").map(String::as_str), Some("t"));
        assert_eq!(c.room.max_participants, 100);
        assert_eq!(c.home_dir(), PathBuf::from("/srv/parlor-home"));
    }

    #[test]
    fn bad_values_are_errors() {
        let env = vec![("PARLOR_RTC_UDP_PORT".to_string(), "abc".to_string())];
        assert!(Config::load(None, env).is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.toml");
        std::fs::write(&p, "[server]\nbindd = \"x\"\n").unwrap();
        assert!(Config::load(Some(&p), Vec::new()).is_err());
    }

    #[test]
    fn example_config_parses_and_matches_defaults() {
        let example = include_str!("../parlor.example.toml");
        let parsed: Config = toml::from_str(example).unwrap();
        assert_eq!(parsed, Config::default());
    }
}
