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
pub fn turn_credentials(state: &AppState, user: &str) -> Option<(String, String)> {
    let secret = state.turn_secrets.first()?;
    let creds = parlor_turn::credentials::mint(
        secret,
        user,
        state.config.turn.ttl_secs,
        state.clock.unix_secs(),
    );
    Some((creds.username, creds.credential))
}

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
    if let Some((username, credential)) = turn_credentials(state, user) {
        let host = turn_host(state);
        let mut urls = vec![format!("stun:{host}:{}", c.turn.udp_port)];
        out.push(IceServer {
            urls: std::mem::take(&mut urls),
            username: None,
            credential: None,
        });
        let mut turn_urls = vec![format!("turn:{host}:{}?transport=udp", c.turn.udp_port)];
        if c.turn.tcp_port != 0 {
            turn_urls.push(format!("turn:{host}:{}?transport=tcp", c.turn.tcp_port));
        }
        if c.turn.tls_port != 0 {
            turn_urls.push(format!("turns:{host}:{}?transport=tcp", c.turn.tls_port));
        }
        out.push(IceServer {
            urls: turn_urls,
            username: Some(username),
            credential: Some(credential),
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
