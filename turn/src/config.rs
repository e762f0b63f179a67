//! Configuration of the embedded TURN server.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use crate::TurnError;

/// Configuration of [`crate::TurnServer`].
///
/// `TurnConfig::new(realm, secrets)` gives production defaults (listen on `0.0.0.0:3478` UDP and
/// TCP); a deployment must at least set `public_ip` (or a concrete `relay_bind_ip`).
#[derive(Debug, Clone)]
pub struct TurnConfig {
    /// UDP listener (clients ↔ server). Port 0 picks an ephemeral port.
    pub udp_listen: SocketAddr,
    /// Optional TCP listener (RFC 6062 framing of STUN/ChannelData over TCP; relayed transport
    /// to peers is still UDP).
    pub tcp_listen: Option<SocketAddr>,
    /// Local IP the relay sockets bind to (IPv4 only; relaying is IPv4).
    pub relay_bind_ip: IpAddr,
    /// IP advertised in XOR-RELAYED-ADDRESS (NAT / public address). Defaults to `relay_bind_ip`,
    /// which then must not be unspecified.
    pub public_ip: Option<IpAddr>,
    /// Relay port range (inclusive). `None` lets the OS pick ephemeral ports.
    pub relay_port_range: Option<(u16, u16)>,
    /// REALM of the long-term credential mechanism.
    pub realm: String,
    /// TURN REST shared secrets: the first one mints, any is accepted.
    pub secrets: Vec<String>,
    /// Peer CIDRs allowed even though they are loopback/private/link-local/... (e.g.
    /// `127.0.0.1/32` in tests, an internal media network in a private deployment).
    pub allowed_peer_cidrs: Vec<IpNet>,
    /// Peer CIDRs always refused (wins over `allowed_peer_cidrs`).
    pub denied_peer_cidrs: Vec<IpNet>,
    /// Further addresses of this host (besides `public_ip`, `relay_bind_ip` and the listener
    /// addresses) that peers must not be: relaying to the server's own addresses is refused
    /// except to `server_peer_ports` and the relay port range.
    pub server_addresses: Vec<IpAddr>,
    /// Ports on the server's own addresses a client may relay to: the SFU's media ports.
    pub server_peer_ports: Vec<u16>,
    /// Let `allowed_peer_cidrs` also open the server's own addresses (every port but the TURN
    /// listener ports). Only for loopback test setups where peers share the server's address;
    /// `false` in production.
    pub allow_list_covers_server: bool,
    /// Maximum simultaneous allocations per user id (the part after `:` in the username).
    /// Ports reserved with EVEN-PORT(R) count as allocations until redeemed or expired.
    pub max_allocations_per_user: usize,
    /// Maximum simultaneous allocations in total.
    pub max_allocations: usize,
    /// Maximum simultaneous EVEN-PORT reservations in total (508 beyond).
    pub max_reservations: usize,
    /// Maximum simultaneous TCP client connections. At the cap the oldest connection without
    /// an allocation is closed for a new one; if every connection holds one, new ones are
    /// refused.
    pub max_tcp_connections: usize,
    /// Maximum simultaneous TCP client connections from one source IP.
    pub max_tcp_connections_per_ip: usize,
    /// A TCP connection without a live allocation for this long (since it was accepted, or
    /// since its allocation ended) is closed.
    pub tcp_idle_timeout: Duration,
    /// Lifetime granted when the client asks for less or nothing (RFC: 600 s).
    pub default_lifetime: Duration,
    /// Upper bound of one Allocate/Refresh lifetime (RFC recommendation: 3600 s).
    pub max_lifetime: Duration,
    /// Optional absolute cap on an allocation's age: refreshes never extend it past
    /// `created + max_allocation_age`.
    pub max_allocation_age: Option<Duration>,
    /// Permission lifetime (RFC: 300 s).
    pub permission_lifetime: Duration,
    /// Channel binding lifetime (RFC: 600 s).
    pub channel_lifetime: Duration,
    /// How long a NONCE stays valid before 438 Stale Nonce.
    pub nonce_lifetime: Duration,
    /// SOFTWARE attribute in responses (`None` to omit).
    pub software: Option<String>,
}

impl TurnConfig {
    /// Defaults for `realm` and `secrets`.
    pub fn new(realm: impl Into<String>, secrets: Vec<String>) -> Self {
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        Self {
            udp_listen: SocketAddr::new(any, 3478),
            tcp_listen: Some(SocketAddr::new(any, 3478)),
            relay_bind_ip: any,
            public_ip: None,
            relay_port_range: Some((49152, 65535)),
            realm: realm.into(),
            secrets,
            allowed_peer_cidrs: Vec::new(),
            denied_peer_cidrs: Vec::new(),
            server_addresses: Vec::new(),
            server_peer_ports: Vec::new(),
            allow_list_covers_server: false,
            max_allocations_per_user: 10,
            max_allocations: 10_000,
            max_reservations: 1000,
            max_tcp_connections: 4096,
            max_tcp_connections_per_ip: 256,
            tcp_idle_timeout: Duration::from_secs(10),
            default_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            max_allocation_age: None,
            permission_lifetime: Duration::from_secs(300),
            channel_lifetime: Duration::from_secs(600),
            nonce_lifetime: Duration::from_secs(600),
            software: Some(concat!("parlor-turn/", env!("CARGO_PKG_VERSION")).to_owned()),
        }
    }

    /// Everything on 127.0.0.1 with ephemeral ports (UDP and TCP listeners, relays), loopback
    /// peers allowed (also on the server's own 127.0.0.1, but never its listener ports): the
    /// shape every test uses.
    pub fn loopback(realm: impl Into<String>, secrets: Vec<String>) -> Self {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Self {
            udp_listen: SocketAddr::new(lo, 0),
            tcp_listen: Some(SocketAddr::new(lo, 0)),
            relay_bind_ip: lo,
            public_ip: None,
            relay_port_range: None,
            allowed_peer_cidrs: vec![IpNet::from(lo)],
            allow_list_covers_server: true,
            ..Self::new(realm, secrets)
        }
    }

    /// The address written into XOR-RELAYED-ADDRESS.
    pub fn advertised_relay_ip(&self) -> IpAddr {
        self.public_ip.unwrap_or(self.relay_bind_ip)
    }

    /// The server's own addresses: public, relay bind, listener and configured extra ones, and
    /// with a wildcard bind (`0.0.0.0`/`::`) every address of the host's interfaces (unspecified
    /// ones are skipped by the policy).
    pub fn server_ips(&self) -> Vec<IpAddr> {
        let mut v = vec![self.relay_bind_ip, self.udp_listen.ip()];
        v.extend(self.public_ip);
        v.extend(self.tcp_listen.map(|a| a.ip()));
        v.extend(self.server_addresses.iter().copied());
        let wildcard = self.relay_bind_ip.is_unspecified()
            || self.udp_listen.ip().is_unspecified()
            || self.tcp_listen.is_some_and(|a| a.ip().is_unspecified());
        if wildcard {
            v.extend(crate::netif::host_addresses());
        }
        v
    }

    /// Check the configuration for contradictions.
    pub fn validate(&self) -> Result<(), TurnError> {
        let bad = |m: &str| Err(TurnError::Config(m.to_owned()));
        if self.realm.is_empty() {
            return bad("realm must not be empty");
        }
        if self.secrets.is_empty() || self.secrets.iter().any(String::is_empty) {
            return bad("at least one non-empty shared secret is required");
        }
        if !self.relay_bind_ip.is_ipv4() || !self.advertised_relay_ip().is_ipv4() {
            return bad("relaying is IPv4 only: relay_bind_ip/public_ip must be IPv4");
        }
        if self.advertised_relay_ip().is_unspecified() {
            return bad("public_ip is required when relay_bind_ip is unspecified");
        }
        if let Some((lo, hi)) = self.relay_port_range {
            if lo == 0 || lo > hi {
                return bad("relay_port_range must be 1..=65535 with low <= high");
            }
        }
        if self.max_allocations_per_user == 0 || self.max_allocations == 0 {
            return bad("allocation quotas must be at least 1");
        }
        if self.max_tcp_connections == 0 || self.max_tcp_connections_per_ip == 0 {
            return bad("max_tcp_connections and max_tcp_connections_per_ip must be at least 1");
        }
        if self.tcp_idle_timeout.is_zero() {
            return bad("tcp_idle_timeout must be positive");
        }
        if self.default_lifetime.is_zero()
            || self.max_lifetime.is_zero()
            || self.permission_lifetime.is_zero()
            || self.channel_lifetime.is_zero()
            || self.nonce_lifetime.is_zero()
        {
            return bad("lifetimes must be positive");
        }
        Ok(())
    }
}
