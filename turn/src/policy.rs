//! Which peer addresses an allocation may relay to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Why a peer address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeniedReason {
    /// 0.0.0.0/8, `::`.
    Unspecified,
    /// 127.0.0.0/8, `::1`.
    Loopback,
    /// 10/8, 172.16/12, 192.168/16 (RFC 1918), 100.64/10 (RFC 6598), fc00::/7 (ULA).
    Private,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    /// 224/4, ff00::/8, 255.255.255.255, 240/4 (reserved).
    MulticastOrBroadcast,
    /// Matched an explicit deny CIDR.
    DeniedCidr,
}

/// Peer address policy: by default only globally routable unicast peers are allowed;
/// `allow` CIDRs override the built-in categories, `deny` CIDRs win over everything.
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl PeerPolicy {
    /// A policy with extra allowed and denied CIDRs.
    pub fn new(allow: Vec<IpNet>, deny: Vec<IpNet>) -> Self {
        Self { allow, deny }
    }

    /// `Ok(())` if relaying to `ip` is permitted.
    pub fn check(&self, ip: IpAddr) -> Result<(), DeniedReason> {
        let ip = canonical(ip);
        if self.deny.iter().any(|n| n.contains(&ip)) {
            return Err(DeniedReason::DeniedCidr);
        }
        if self.allow.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        match builtin_category(ip) {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
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

fn builtin_category(ip: IpAddr) -> Option<DeniedReason> {
    match ip {
        IpAddr::V4(v4) => v4_category(v4),
        IpAddr::V6(v6) => v6_category(v6),
    }
}

fn v4_category(ip: Ipv4Addr) -> Option<DeniedReason> {
    let o = ip.octets();
    if o[0] == 0 {
        Some(DeniedReason::Unspecified)
    } else if ip.is_loopback() {
        Some(DeniedReason::Loopback)
    } else if ip.is_private() || (o[0] == 100 && (o[1] & 0xC0) == 64) {
        Some(DeniedReason::Private)
    } else if ip.is_link_local() {
        Some(DeniedReason::LinkLocal)
    } else if ip.is_multicast() || ip.is_broadcast() || o[0] >= 240 {
        Some(DeniedReason::MulticastOrBroadcast)
    } else {
        None
    }
}

fn v6_category(ip: Ipv6Addr) -> Option<DeniedReason> {
    let s = ip.segments();
    if ip.is_unspecified() {
        Some(DeniedReason::Unspecified)
    } else if ip.is_loopback() {
        Some(DeniedReason::Loopback)
    } else if (s[0] & 0xFE00) == 0xFC00 {
        Some(DeniedReason::Private)
    } else if (s[0] & 0xFFC0) == 0xFE80 {
        Some(DeniedReason::LinkLocal)
    } else if ip.is_multicast() {
        Some(DeniedReason::MulticastOrBroadcast)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn default_denies_non_global() {
        let p = PeerPolicy::default();
        for (a, r) in [
            ("127.0.0.1", DeniedReason::Loopback),
            ("127.255.0.9", DeniedReason::Loopback),
            ("10.0.0.1", DeniedReason::Private),
            ("10.255.255.255", DeniedReason::Private),
            ("172.16.0.1", DeniedReason::Private),
            ("172.31.255.1", DeniedReason::Private),
            ("192.168.1.1", DeniedReason::Private),
            ("100.64.0.1", DeniedReason::Private),
            ("169.254.169.254", DeniedReason::LinkLocal),
            ("224.0.0.1", DeniedReason::MulticastOrBroadcast),
            ("239.255.255.250", DeniedReason::MulticastOrBroadcast),
            ("255.255.255.255", DeniedReason::MulticastOrBroadcast),
            ("0.0.0.0", DeniedReason::Unspecified),
            ("::", DeniedReason::Unspecified),
            ("::1", DeniedReason::Loopback),
            ("fd00::1", DeniedReason::Private),
            ("fe80::1", DeniedReason::LinkLocal),
            ("ff02::1", DeniedReason::MulticastOrBroadcast),
            ("::ffff:127.0.0.1", DeniedReason::Loopback),
            ("::ffff:10.1.2.3", DeniedReason::Private),
        ] {
            assert_eq!(p.check(ip(a)), Err(r), "{a}");
        }
        for a in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.0.2.1",
            "2001:db8::1",
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
        assert_eq!(p.check(ip("127.0.0.2")), Err(DeniedReason::Loopback));
        assert_eq!(p.check(ip("10.1.9.9")), Ok(()));
        assert_eq!(p.check(ip("10.1.2.3")), Err(DeniedReason::DeniedCidr));
        assert_eq!(p.check(ip("10.2.0.1")), Err(DeniedReason::Private));
    }
}
