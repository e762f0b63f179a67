//! ICE server configuration handed to clients (JoinResponse and the REST endpoints), made from the
//! narrow inputs in [`IceInputs`] (the edge builds them from its state).

use crate::config::Config;
use parlor_signaling::protocol::proto;

/// One ICE server entry.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// What the ICE configuration is made of: the `[rtc]`/`[turn]` settings, the TURN REST shared
/// secrets (the first mints) and the time credentials are minted at.
#[derive(Clone, Copy)]
pub struct IceInputs<'a> {
    pub config: &'a Config,
    pub turn_secrets: &'a [String],
    pub now_unix: u64,
}

impl IceInputs<'_> {
    /// Host clients use for TURN: `turn.host`, else the public IP, else the bind IP.
    pub fn turn_host(&self) -> String {
        let c = self.config;
        if !c.turn.host.is_empty() {
            c.turn.host.clone()
        } else if !c.rtc.public_ip.is_empty() {
            c.rtc.public_ip.clone()
        } else {
            c.rtc.bind_ip.clone()
        }
    }

    /// TURN REST credentials for `user`, when a TURN secret is configured.
    pub fn turn_credentials(&self, user: &str) -> Option<parlor_turn::Credentials> {
        let secret = self.turn_secrets.first()?;
        Some(parlor_turn::mint(
            secret.as_bytes(),
            user,
            self.config.turn.ttl_secs,
            self.now_unix,
        ))
    }

    /// TURN URLs from config (`turn:host:3478`, `turn:host:P?transport=tcp`, `turns:host:P` with
    /// TLS).
    pub fn turn_urls(&self) -> Vec<String> {
        let t = &self.config.turn;
        parlor_turn::turn_urls(
            &self.turn_host(),
            t.udp_port,
            (t.tcp_port != 0).then_some(t.tcp_port),
            (t.tls_port != 0).then_some(t.tls_port),
        )
    }

    /// STUN entries first (configured STUN URLs and our own TURN server's STUN), then TURN with
    /// credentials.
    pub fn ice_servers(&self, user: &str) -> Vec<IceServer> {
        let c = self.config;
        let mut out: Vec<IceServer> = c
            .rtc
            .stun_urls
            .iter()
            .map(|u| IceServer {
                urls: vec![u.clone()],
                username: None,
                credential: None,
            })
            .collect();
        if let Some(creds) = self.turn_credentials(user) {
            if c.turn.enabled {
                out.push(IceServer {
                    urls: vec![parlor_turn::stun_url(&self.turn_host(), c.turn.udp_port)],
                    username: None,
                    credential: None,
                });
            }
            out.push(IceServer {
                urls: self.turn_urls(),
                username: Some(creds.username),
                credential: Some(creds.credential),
            });
        }
        out
    }

    pub fn ice_servers_proto(&self, user: &str) -> Vec<proto::IceServer> {
        self.ice_servers(user)
            .into_iter()
            .map(|s| proto::IceServer {
                urls: s.urls,
                username: s.username.unwrap_or_default(),
                credential: s.credential.unwrap_or_default(),
            })
            .collect()
    }
}
