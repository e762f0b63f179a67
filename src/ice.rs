//! ICE server configuration handed to clients (JoinResponse and the REST endpoints).

use crate::state::AppState;
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

/// Host clients use for TURN: `turn.host`, else the public IP, else the bind IP.
pub fn turn_host(state: &AppState) -> String {
    let c = &state.config;
    if !c.turn.host.is_empty() {
        c.turn.host.clone()
    } else if !c.rtc.public_ip.is_empty() {
        c.rtc.public_ip.clone()
    } else {
        c.rtc.bind_ip.clone()
    }
}

/// TURN REST credentials for `user`, when a TURN secret is configured.
pub fn turn_credentials(state: &AppState, user: &str) -> Option<parlor_turn::Credentials> {
    let secret = state.turn_secrets.first()?;
    Some(parlor_turn::mint(
        secret.as_bytes(),
        user,
        state.config.turn.ttl_secs,
        state.clock.unix_secs(),
    ))
}

/// TURN URLs from config (`turn:host:3478`, `turn:host:P?transport=tcp`, `turns:host:P` with TLS).
pub fn turn_urls(state: &AppState) -> Vec<String> {
    let t = &state.config.turn;
    parlor_turn::turn_urls(
        &turn_host(state),
        t.udp_port,
        (t.tcp_port != 0).then_some(t.tcp_port),
        (t.tls_port != 0).then_some(t.tls_port),
    )
}

/// STUN entries first (configured STUN URLs and our own TURN server's STUN), then TURN with credentials.
pub fn ice_servers(state: &AppState, user: &str) -> Vec<IceServer> {
    let c = &state.config;
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
    if let Some(creds) = turn_credentials(state, user) {
        if c.turn.enabled {
            out.push(IceServer {
                urls: vec![parlor_turn::stun_url(&turn_host(state), c.turn.udp_port)],
                username: None,
                credential: None,
            });
        }
        out.push(IceServer {
            urls: turn_urls(state),
            username: Some(creds.username),
            credential: Some(creds.credential),
        });
    }
    out
}

pub fn ice_servers_proto(state: &AppState, user: &str) -> Vec<proto::IceServer> {
    ice_servers(state, user)
        .into_iter()
        .map(|s| proto::IceServer {
            urls: s.urls,
            username: s.username.unwrap_or_default(),
            credential: s.credential.unwrap_or_default(),
        })
        .collect()
}
