//! Which peer addresses an allocation may relay to.
//!
//! By default only globally routable unicast peers are allowed: every range of the IANA IPv4 and
//! IPv6 special-purpose address registries (RFC 6890 and its updates) is refused, IPv6 forms that
//! embed an IPv4 address (IPv4-mapped `::ffff:0:0/96`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`)
//! are judged by the IPv4 address they carry, and the server's own addresses are refused except
//! for the ports a client legitimately relays to (the SFU's media ports and the relay port range,
//! for client-to-client relaying). The TURN listener ports on the server's own addresses are
//! refused always (a relay looping into the server itself).
//!
//! Order of the checks: explicit deny CIDRs, then the server's own addresses, then explicit allow
//! CIDRs (which override the special-purpose ranges), then the special-purpose table.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

/// Why a peer address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeniedReason {
    /// 0.0.0.0/8, `::`.
    Unspecified,
    /// 127.0.0.0/8, `::1`.
    Loopback,
    /// 10/8, 172.16/12, 192.168/16 (RFC 1918), 100.64/10 (RFC 6598), fc00::/7 (ULA),
    /// fec0::/10 (deprecated site-local).
    Private,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    /// 224/4, ff00::/8, 255.255.255.255, 240/4 (reserved).
    MulticastOrBroadcast,
    /// Documentation ranges: 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20.
    Documentation,
    /// Any other special-purpose range: IETF protocol assignments (192.0.0/24, 2001::/23),
    /// benchmarking (198.18/15), 6to4 relay anycast (192.88.99/24), AS112, AMT, discard-only
    /// (100::/64), IPv4-compatible (::/96), local-use NAT64 (64:ff9b:1::/48), SRv6 SIDs.
    SpecialPurpose,
    /// One of the server's own addresses on a port peers may not reach.
    ServerAddress,
    /// Matched an explicit deny CIDR.
    DeniedCidr,
}

use DeniedReason as R;

/// IPv4 special-purpose ranges (IANA "IPv4 Special-Purpose Address Registry" plus multicast
/// and the reserved 240/4), as (network, prefix length, reason).
const V4_SPECIAL: &[(u32, u8, DeniedReason)] = &[
    (0x0000_0000, 8, R::Unspecified),     // 0.0.0.0/8 "this network"
    (0x0A00_0000, 8, R::Private),         // 10.0.0.0/8
    (0x6440_0000, 10, R::Private),        // 100.64.0.0/10 shared address space
    (0x7F00_0000, 8, R::Loopback),        // 127.0.0.0/8
    (0xA9FE_0000, 16, R::LinkLocal),      // 169.254.0.0/16
    (0xAC10_0000, 12, R::Private),        // 172.16.0.0/12
    (0xC000_0000, 24, R::SpecialPurpose), // 192.0.0.0/24 IETF protocol assignments
    (0xC000_0200, 24, R::Documentation),  // 192.0.2.0/24 TEST-NET-1
    (0xC01F_C400, 24, R::SpecialPurpose), // 192.31.196.0/24 AS112-v4
    (0xC034_C100, 24, R::SpecialPurpose), // 192.52.193.0/24 AMT
    (0xC058_6300, 24, R::SpecialPurpose), // 192.88.99.0/24 6to4 relay anycast
    (0xC0A8_0000, 16, R::Private),        // 192.168.0.0/16
    (0xC0AF_3000, 24, R::SpecialPurpose), // 192.175.48.0/24 AS112 direct delegation
    (0xC612_0000, 15, R::SpecialPurpose), // 198.18.0.0/15 benchmarking
    (0xC633_6400, 24, R::Documentation),  // 198.51.100.0/24 TEST-NET-2
    (0xCB00_7100, 24, R::Documentation),  // 203.0.113.0/24 TEST-NET-3
    (0xE000_0000, 4, R::MulticastOrBroadcast), // 224.0.0.0/4 multicast
    (0xF000_0000, 4, R::MulticastOrBroadcast), // 240.0.0.0/4 reserved, 255.255.255.255
];

/// IPv6 special-purpose ranges (IANA "IPv6 Special-Purpose Address Registry" plus multicast,
/// link-local and site-local). `::ffff:0:0/96`, `64:ff9b::/96` and `2002::/16` are not listed:
/// they are judged by their embedded IPv4 address.
const V6_SPECIAL: &[(u128, u8, DeniedReason)] = &[
    (0, 128, R::Unspecified),                             // ::/128
    (1, 128, R::Loopback),                                // ::1/128
    (0, 96, R::SpecialPurpose),                           // ::/96 IPv4-compatible
    (0x0064_ff9b_0001_u128 << 80, 48, R::SpecialPurpose), // 64:ff9b:1::/48
    (0x0100_u128 << 112, 64, R::SpecialPurpose),          // 100::/64 discard-only
    (0x2001_u128 << 112, 23, R::SpecialPurpose),          // 2001::/23 IETF
    (0x2001_0db8_u128 << 96, 32, R::Documentation),       // 2001:db8::/32
    (0x2620_004f_8000_u128 << 80, 48, R::SpecialPurpose), // 2620:4f:8000::/48 AS112
    (0x3fff_u128 << 112, 20, R::Documentation),           // 3fff::/20
    (0x5f00_u128 << 112, 16, R::SpecialPurpose),          // 5f00::/16 SRv6 SIDs
    (0xfc00_u128 << 112, 7, R::Private),                  // fc00::/7 ULA
    (0xfe80_u128 << 112, 10, R::LinkLocal),               // fe80::/10
    (0xfec0_u128 << 112, 10, R::Private),                 // fec0::/10 site-local
    (0xff00_u128 << 112, 8, R::MulticastOrBroadcast),     // ff00::/8
];

/// Peer address policy: see the module documentation for the rules and their order.
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    /// The server's own addresses (public, relay bind, listener, extra configured ones).
    server_ips: Vec<IpAddr>,
    /// Ports on the server's own addresses a peer may be (SFU media ports).
    server_peer_ports: Vec<u16>,
    /// Relay port range: reachable on the server's own addresses (client-to-client relaying).
    relay_ports: Option<(u16, u16)>,
    /// The TURN listener ports: never reachable on the server's own addresses.
    listener_ports: Vec<u16>,
    /// Test/lab escape hatch: allow-listed own addresses are reachable on any non-listener port.
    allow_list_covers_server: bool,
}

impl PeerPolicy {
    /// A policy with extra allowed and denied CIDRs (no server addresses known).
    pub fn new(allow: Vec<IpNet>, deny: Vec<IpNet>) -> Self {
        Self {
            allow,
            deny,
            ..Self::default()
        }
    }

    /// Declare the server's own addresses: `ips` (unspecified addresses are ignored), the ports
    /// peers may reach on them (`peer_ports`, e.g. the SFU's media ports), the relay port range
    /// (reachable for client-to-client relaying) and the TURN `listener_ports` (never reachable).
    pub fn with_server(
        mut self,
        ips: impl IntoIterator<Item = IpAddr>,
        peer_ports: Vec<u16>,
        relay_ports: Option<(u16, u16)>,
        listener_ports: Vec<u16>,
    ) -> Self {
        for ip in ips {
            let ip = canonical(ip);
            if !ip.is_unspecified() && !self.server_ips.contains(&ip) {
                self.server_ips.push(ip);
            }
        }
        self.server_peer_ports = peer_ports;
        self.relay_ports = relay_ports;
        self.listener_ports = listener_ports;
        self
    }

    /// Let allow-listed CIDRs cover the server's own addresses too (any port but the TURN
    /// listener ports). For loopback test setups where peers live on the server's own address.
    pub fn allow_list_covers_server(mut self, yes: bool) -> Self {
        self.allow_list_covers_server = yes;
        self
    }

    /// `Ok(())` if relaying to `ip` is permitted by the address rules (deny list, allow list,
    /// special-purpose ranges); the port-dependent server-address rule is in [`Self::check_peer`].
    pub fn check(&self, ip: IpAddr) -> Result<(), DeniedReason> {
        let ip = canonical(ip);
        if self.deny.iter().any(|n| n.contains(&ip)) {
            return Err(DeniedReason::DeniedCidr);
        }
        self.check_after_deny(ip)
    }

    fn check_after_deny(&self, ip: IpAddr) -> Result<(), DeniedReason> {
        if self.allow.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        match special_purpose(ip) {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }

    /// `Ok(())` if relaying to `peer` (address and port) is permitted.
    pub fn check_peer(&self, peer: SocketAddr) -> Result<(), DeniedReason> {
        let ip = canonical(peer.ip());
        let port = peer.port();
        if self.deny.iter().any(|n| n.contains(&ip)) {
            return Err(DeniedReason::DeniedCidr);
        }
        if self.server_ips.contains(&ip) {
            if self.listener_ports.contains(&port) {
                return Err(DeniedReason::ServerAddress);
            }
            let open = self.server_peer_ports.contains(&port)
                || self
                    .relay_ports
                    .is_some_and(|(lo, hi)| (lo..=hi).contains(&port));
            let allow_listed =
                self.allow_list_covers_server && self.allow.iter().any(|n| n.contains(&ip));
            if !open && !allow_listed {
                return Err(DeniedReason::ServerAddress);
            }
        }
        self.check_after_deny(ip)
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is judged as the IPv4 address it carries.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// The special-purpose category of `ip`, `None` for a globally routable unicast address.
pub fn special_purpose(ip: IpAddr) -> Option<DeniedReason> {
    match canonical(ip) {
        IpAddr::V4(v4) => v4_special(v4),
        IpAddr::V6(v6) => v6_special(v6),
    }
}

fn v4_special(ip: Ipv4Addr) -> Option<DeniedReason> {
    let a = u32::from(ip);
    V4_SPECIAL
        .iter()
        .find(|(net, len, _)| a & mask32(*len) == *net)
        .map(|(_, _, r)| *r)
}

fn v6_special(ip: Ipv6Addr) -> Option<DeniedReason> {
    let a = u128::from(ip);
    // NAT64 well-known prefix 64:ff9b::/96: the IPv4 address is the low 32 bits.
    if a & mask128(96) == 0x0064_ff9b_u128 << 96 {
        return v4_special(Ipv4Addr::from(a as u32));
    }
    // 6to4 2002::/16: the IPv4 address is bits 16..48.
    if a & mask128(16) == 0x2002_u128 << 112 {
        return v4_special(Ipv4Addr::from((a >> 80) as u32));
    }
    V6_SPECIAL
        .iter()
        .find(|(net, len, _)| a & mask128(*len) == *net)
        .map(|(_, _, r)| *r)
}

fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn default_denies_every_special_purpose_range() {
        let p = PeerPolicy::default();
        for (a, r) in [
            ("0.0.0.0", R::Unspecified),
            ("0.1.2.3", R::Unspecified),
            ("10.0.0.1", R::Private),
            ("10.255.255.255", R::Private),
            ("100.64.0.1", R::Private),
            ("100.127.255.254", R::Private),
            ("127.0.0.1", R::Loopback),
            ("127.255.0.9", R::Loopback),
            ("169.254.169.254", R::LinkLocal),
            ("172.16.0.1", R::Private),
            ("172.31.255.1", R::Private),
            ("192.0.0.1", R::SpecialPurpose),
            ("192.0.0.170", R::SpecialPurpose),
            ("192.0.2.1", R::Documentation),
            ("192.31.196.1", R::SpecialPurpose),
            ("192.52.193.1", R::SpecialPurpose),
            ("192.88.99.1", R::SpecialPurpose),
            ("192.168.1.1", R::Private),
            ("192.175.48.1", R::SpecialPurpose),
            ("198.18.0.1", R::SpecialPurpose),
            ("198.19.255.255", R::SpecialPurpose),
            ("198.51.100.7", R::Documentation),
            ("203.0.113.9", R::Documentation),
            ("224.0.0.1", R::MulticastOrBroadcast),
            ("239.255.255.250", R::MulticastOrBroadcast),
            ("240.0.0.1", R::MulticastOrBroadcast),
            ("255.255.255.255", R::MulticastOrBroadcast),
            ("::", R::Unspecified),
            ("::1", R::Loopback),
            ("::8.8.8.8", R::SpecialPurpose),
            ("::ffff:127.0.0.1", R::Loopback),
            ("::ffff:10.1.2.3", R::Private),
            ("::ffff:192.0.2.1", R::Documentation),
            ("64:ff9b::7f00:1", R::Loopback),
            ("64:ff9b::c0a8:101", R::Private),
            ("64:ff9b:1::1", R::SpecialPurpose),
            ("100::1", R::SpecialPurpose),
            ("2001::1", R::SpecialPurpose),
            ("2001:1ff:ffff::1", R::SpecialPurpose),
            ("2001:db8::1", R::Documentation),
            ("2002:7f00:1::1", R::Loopback),
            ("2002:a00:1::1", R::Private),
            ("2002:c000:201::1", R::Documentation),
            ("2620:4f:8000::1", R::SpecialPurpose),
            ("3fff::1", R::Documentation),
            ("5f00::1", R::SpecialPurpose),
            ("fc00::1", R::Private),
            ("fd00::1", R::Private),
            ("fe80::1", R::LinkLocal),
            ("febf::1", R::LinkLocal),
            ("fec0::1", R::Private),
            ("ff02::1", R::MulticastOrBroadcast),
        ] {
            assert_eq!(p.check(ip(a)), Err(r), "{a}");
            assert_eq!(special_purpose(ip(a)), Some(r), "{a}");
        }
        for a in [
            "8.8.8.8",
            "1.1.1.1",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.0.1.255",
            "192.0.3.0",
            "192.88.98.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:200::1",
            "2001:4860:4860::8888",
            "2606:4700::1111",
        ] {
            assert_eq!(p.check(ip(a)), Ok(()), "{a}");
        }
    }

    #[test]
    fn allow_list_overrides_and_deny_wins() {
        let p = PeerPolicy::new(
            vec![
                "127.0.0.1/32".parse().unwrap(),
                "10.1.0.0/16".parse().unwrap(),
            ],
            vec!["10.1.2.0/24".parse().unwrap()],
        );
        assert_eq!(p.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(p.check(ip("127.0.0.2")), Err(R::Loopback));
        assert_eq!(p.check(ip("10.1.9.9")), Ok(()));
        assert_eq!(p.check(ip("10.1.2.3")), Err(R::DeniedCidr));
        assert_eq!(p.check(ip("10.2.0.1")), Err(R::Private));
        assert_eq!(p.check(ip("::ffff:10.1.2.3")), Err(R::DeniedCidr));
    }

    #[test]
    fn server_addresses_are_refused_except_media_and_relay_ports() {
        let public = ip("203.0.114.5");
        let p = PeerPolicy::new(vec!["203.0.114.0/24".parse().unwrap()], vec![]).with_server(
            [public, ip("0.0.0.0"), ip("198.51.99.1")],
            vec![7882, 7883],
            Some((49152, 65535)),
            vec![3478, 5349],
        );
        // The public address: only the SFU ports and the relay range, even though allow-listed.
        assert_eq!(p.check_peer(sa("203.0.114.5:7882")), Ok(()));
        assert_eq!(p.check_peer(sa("203.0.114.5:7883")), Ok(()));
        assert_eq!(p.check_peer(sa("203.0.114.5:50000")), Ok(()));
        for port in [3478, 5349, 22, 53, 161, 7880, 49151] {
            let a = SocketAddr::new(public, port);
            assert_eq!(p.check_peer(a), Err(R::ServerAddress), "{a}");
        }
        assert_eq!(
            p.check_peer(sa("[::ffff:203.0.114.5]:53")),
            Err(R::ServerAddress)
        );
        assert_eq!(
            p.check_peer(sa("198.51.99.1:9")),
            Err(R::ServerAddress),
            "a second own address"
        );
        // Another host on the allow-listed network is fine on any port.
        assert_eq!(p.check_peer(sa("203.0.114.6:53")), Ok(()));
        // The special-purpose table still applies to the open server ports.
        let lo = PeerPolicy::default().with_server([ip("127.0.0.1")], vec![7882], None, vec![3478]);
        assert_eq!(p.check_peer(sa("198.51.99.1:7882")), Ok(()));
        assert_eq!(lo.check_peer(sa("127.0.0.1:7882")), Err(R::Loopback));
        assert_eq!(lo.check_peer(sa("127.0.0.1:9")), Err(R::ServerAddress));
    }

    #[test]
    fn allow_list_covering_the_server_opens_all_but_listener_ports() {
        let p = PeerPolicy::new(vec!["127.0.0.1/32".parse().unwrap()], vec![])
            .with_server([ip("127.0.0.1")], vec![], None, vec![3478])
            .allow_list_covers_server(true);
        assert_eq!(p.check_peer(sa("127.0.0.1:40000")), Ok(()));
        assert_eq!(p.check_peer(sa("127.0.0.1:3478")), Err(R::ServerAddress));
        assert_eq!(p.check_peer(sa("127.0.0.2:40000")), Err(R::Loopback));
    }
}
