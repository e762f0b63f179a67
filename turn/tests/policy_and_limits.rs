//! Peer-address policy, quotas, lifetimes and auth edge cases, driven by a raw TURN client built
//! on webrtc-rs's STUN/TURN codec against the embedded server on 127.0.0.1.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use parlor_turn::{Clock, TurnConfig};
use rtc::stun::attributes::*;
use rtc::stun::message::*;
use tokio::net::UdpSocket;

fn default_policy_config() -> TurnConfig {
    // Listeners and relays on 127.0.0.1, but the default peer policy (no allow-list).
    let mut cfg = TurnConfig::loopback(REALM, vec![SECRET.into()]);
    cfg.allowed_peer_cidrs.clear();
    cfg
}

#[tokio::test]
async fn relay_to_loopback_and_private_peers_is_refused_by_default() {
    let clock = real_time_manual_clock();
    let server = start(default_policy_config(), clock.clone()).await;
    let creds = server.credentials().mint("alice", 600, clock.unix_secs());
    let mut c = RawClient::new(server.local_addrs().udp, &creds.username, &creds.credential).await;
    let r = c.allocate().await;
    assert!(r.is_success(), "{r:?}");

    // A real UDP listener on loopback that must never receive anything.
    let peer_sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let loopback_peer = peer_sock.local_addr().unwrap();

    for peer in [
        loopback_peer,
        "127.0.0.1:9".parse().unwrap(),
        "10.0.0.1:5000".parse().unwrap(),
        "10.255.1.2:5000".parse().unwrap(),
        "192.168.1.1:5000".parse().unwrap(),
        "169.254.169.254:80".parse().unwrap(),
        "224.0.0.251:5353".parse().unwrap(),
    ] {
        let r = c
            .request(METHOD_CREATE_PERMISSION, &[Attr::Peer(peer)])
            .await;
        assert_eq!(r.error, Some(403), "CreatePermission {peer}: {r:?}");
        let r = c
            .request(
                METHOD_CHANNEL_BIND,
                &[Attr::Channel(0x4001), Attr::Peer(peer)],
            )
            .await;
        assert_eq!(r.error, Some(403), "ChannelBind {peer}: {r:?}");
    }
    // Mixed list: one forbidden peer refuses the whole request.
    let r = c
        .request(
            METHOD_CREATE_PERMISSION,
            &[
                Attr::Peer("192.0.2.10:5000".parse().unwrap()),
                Attr::Peer("10.0.0.1:5000".parse().unwrap()),
            ],
        )
        .await;
    assert_eq!(r.error, Some(403));

    // A Send indication to the loopback listener is dropped (only loopback is ever targeted).
    let before = server.metrics().forbidden_peer_refusals;
    c.send_indication(loopback_peer, b"must not arrive").await;
    c.barrier().await;
    assert!(nothing_queued(&peer_sock), "relay to loopback leaked");
    let m = server.metrics();
    assert_eq!(m.forbidden_peer_refusals, before + 1);
    assert_eq!(m.relayed_bytes_to_peers, 0);
    assert_eq!(m.forbidden_peer_refusals, 7 * 2 + 1 + 1);
    server.shutdown().await;
}

#[tokio::test]
async fn allow_list_permits_loopback_and_data_flows_both_ways() {
    let clock = real_time_manual_clock();
    let mut cfg = default_policy_config();
    cfg.allowed_peer_cidrs = vec!["127.0.0.1/32".parse().unwrap()];
    let server = start(cfg, clock.clone()).await;
    let creds = server.credentials().mint("bob", 600, clock.unix_secs());
    let mut c = RawClient::new(server.local_addrs().udp, &creds.username, &creds.credential).await;
    let r = c.allocate().await;
    assert!(r.is_success(), "{r:?}");
    let relayed = r.xor_addr(ATTR_XOR_RELAYED_ADDRESS);
    assert_eq!(relayed.ip(), ip("127.0.0.1"));
    assert_eq!(server.metrics().active_allocations, 1);

    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    // Still refused: 10/8 is not on the allow-list.
    let r = c
        .request(
            METHOD_CREATE_PERMISSION,
            &[Attr::Peer("10.0.0.1:1".parse().unwrap())],
        )
        .await;
    assert_eq!(r.error, Some(403));

    let r = c
        .request(METHOD_CREATE_PERMISSION, &[Attr::Peer(peer_addr)])
        .await;
    assert!(r.is_success(), "{r:?}");

    // Client → peer via Send indication.
    c.send_indication(peer_addr, b"hello peer").await;
    let mut buf = [0u8; 1500];
    let (n, from) = tokio::time::timeout(Duration::from_secs(10), peer.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"hello peer");
    assert_eq!(from, relayed);

    // Peer → client via Data indication.
    peer.send_to(b"hello client", relayed).await.unwrap();
    let (p, ch, data) = c.recv_relayed().await;
    assert_eq!(
        (p, ch, data.as_slice()),
        (Some(peer_addr), None, &b"hello client"[..])
    );

    // ChannelBind, then both directions over ChannelData.
    let r = c
        .request(
            METHOD_CHANNEL_BIND,
            &[Attr::Channel(0x4000), Attr::Peer(peer_addr)],
        )
        .await;
    assert!(r.is_success(), "{r:?}");
    c.channel_data(0x4000, b"over channel").await;
    let (n, _) = tokio::time::timeout(Duration::from_secs(10), peer.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"over channel");
    peer.send_to(b"back on channel", relayed).await.unwrap();
    let (p, ch, data) = c.recv_relayed().await;
    assert_eq!(
        (p, ch, data.as_slice()),
        (None, Some(0x4000), &b"back on channel"[..])
    );

    // A packet from a peer without permission is not relayed.
    let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // (Different port, same IP: permissions are per IP, so this one IS allowed by RFC 5766.)
    stranger.send_to(b"same ip", relayed).await.unwrap();
    let (p, _, data) = c.recv_relayed().await;
    assert_eq!(p, Some(stranger.local_addr().unwrap()));
    assert_eq!(data, b"same ip");

    let m = server.metrics();
    assert_eq!(m.relayed_bytes_to_peers, (10 + 12) as u64);
    assert_eq!(m.relayed_bytes_from_peers, (12 + 15 + 7) as u64);

    // Refresh with lifetime 0 deletes the allocation.
    let r = c.request(METHOD_REFRESH, &[Attr::Lifetime(0)]).await;
    assert!(r.is_success(), "{r:?}");
    assert_eq!(server.metrics().active_allocations, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn per_user_quota_is_enforced() {
    let clock = real_time_manual_clock();
    let mut cfg = TurnConfig::loopback(REALM, vec![SECRET.into()]);
    cfg.max_allocations_per_user = 2;
    let server = start(cfg, clock.clone()).await;
    let udp = server.local_addrs().udp;
    let now = clock.unix_secs();
    let a = server.credentials().mint("carol", 600, now);
    let mut clients = Vec::new();
    for _ in 0..2 {
        let mut c = RawClient::new(udp, &a.username, &a.credential).await;
        assert!(c.allocate().await.is_success());
        clients.push(c);
    }
    // A third allocation for the same user id (even with a differently-minted credential).
    let a2 = server.credentials().mint("carol", 1200, now);
    let mut third = RawClient::new(udp, &a2.username, &a2.credential).await;
    assert_eq!(third.allocate().await.error, Some(486));
    // Another user is unaffected.
    let d = server.credentials().mint("dave", 600, now);
    let mut other = RawClient::new(udp, &d.username, &d.credential).await;
    assert!(other.allocate().await.is_success());
    // Releasing one frees a slot.
    let r = clients[0]
        .request(METHOD_REFRESH, &[Attr::Lifetime(0)])
        .await;
    assert!(r.is_success());
    assert!(third.allocate().await.is_success());
    let m = server.metrics();
    assert_eq!(m.quota_refusals, 1);
    assert_eq!(m.active_allocations, 3);
    assert_eq!(m.allocations_total, 4);
    server.shutdown().await;
}

#[tokio::test]
async fn lifetimes_are_capped_and_expire_on_the_injected_clock() {
    let clock = real_time_manual_clock();
    let mut cfg = TurnConfig::loopback(REALM, vec![SECRET.into()]);
    cfg.max_lifetime = Duration::from_secs(900);
    cfg.max_allocation_age = Some(Duration::from_secs(1000));
    cfg.nonce_lifetime = Duration::from_secs(3600);
    let server = start(cfg, clock.clone()).await;
    let creds = server.credentials().mint("erin", 86_400, clock.unix_secs());
    let mut c = RawClient::new(server.local_addrs().udp, &creds.username, &creds.credential).await;
    let r = c
        .request(METHOD_ALLOCATE, &[Attr::Transport, Attr::Lifetime(100_000)])
        .await;
    assert!(r.is_success(), "{r:?}");
    assert_eq!(r.lifetime(), Duration::from_secs(900));
    // Asking for less than the default gets the default (600 s).
    let r = c.request(METHOD_REFRESH, &[Attr::Lifetime(30)]).await;
    assert_eq!(r.lifetime(), Duration::from_secs(600));
    // The absolute age cap (1000 s) limits refreshes: 500 s in, at most 500 s remain.
    clock.advance(Duration::from_secs(500));
    let r = c.request(METHOD_REFRESH, &[Attr::Lifetime(900)]).await;
    assert_eq!(r.lifetime(), Duration::from_secs(500));
    // Past expiry the allocation is gone (no wall-clock waiting: the clock is injected).
    clock.advance(Duration::from_secs(501));
    let r = c.request(METHOD_REFRESH, &[Attr::Lifetime(600)]).await;
    assert_eq!(r.error, Some(437), "{r:?}");
    // The same 5-tuple can allocate again; the expired one no longer counts.
    let r = c.allocate().await;
    assert!(r.is_success(), "{r:?}");
    let m = server.metrics();
    assert_eq!((m.active_allocations, m.allocations_total), (1, 2), "{m:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn auth_rejects_expired_wrong_and_stale() {
    let clock = real_time_manual_clock();
    let mut cfg = TurnConfig::loopback(REALM, vec!["new-secret".into(), SECRET.into()]);
    cfg.nonce_lifetime = Duration::from_secs(60);
    let server = start(cfg, clock.clone()).await;
    let udp = server.local_addrs().udp;
    let now = clock.unix_secs();

    // No credentials at all: 401 challenge with realm and nonce, not counted as a failure.
    let mut c = RawClient::new(udp, "x", "y").await;
    let r = c
        .request_unauthenticated(METHOD_ALLOCATE, &[Attr::Transport])
        .await;
    assert_eq!(r.error, Some(401));
    assert_eq!(c.realm.as_deref(), Some(REALM));
    assert!(c.nonce.is_some());
    assert_eq!(server.metrics().auth_failures, 0);

    // Wrong password.
    let good = server.credentials().mint("frank", 600, now);
    let mut c = RawClient::new(udp, &good.username, "d3JvbmcgcGFzc3dvcmQ=").await;
    assert_eq!(c.allocate().await.error, Some(401));
    // Expired credential (expiry one second before the injected now).
    let expired = parlor_turn::mint(b"new-secret", "frank", 60, now - 61);
    let mut c = RawClient::new(udp, &expired.username, &expired.credential).await;
    assert_eq!(c.allocate().await.error, Some(401));
    // Malformed username.
    let mut c = RawClient::new(udp, "frank", &good.credential).await;
    assert_eq!(c.allocate().await.error, Some(401));
    assert_eq!(server.metrics().auth_failures, 3);
    assert_eq!(server.metrics().active_allocations, 0);

    // A credential minted with the old (second) secret is still accepted: rotation.
    let old = parlor_turn::mint(SECRET.as_bytes(), "frank", 600, now);
    let mut c = RawClient::new(udp, &old.username, &old.credential).await;
    assert!(c.allocate().await.is_success());

    // A valid credential that expires while the allocation lives: refreshing fails.
    let short = server.credentials().mint("gina", 30, now);
    let mut g = RawClient::new(udp, &short.username, &short.credential).await;
    assert!(g.allocate().await.is_success());
    clock.advance(Duration::from_secs(31));
    // The nonce is still fresh (60 s), the credential is not.
    let r = g.request(METHOD_REFRESH, &[Attr::Lifetime(600)]).await;
    assert_eq!(r.error, Some(401), "{r:?}");

    // Stale nonce: after nonce_lifetime the server answers 438 with a new nonce, and the
    // client's retry with it succeeds.
    clock.advance(Duration::from_secs(120));
    let stale = c.nonce.clone();
    let r = c.request(METHOD_REFRESH, &[Attr::Lifetime(600)]).await;
    assert!(r.is_success(), "{r:?}");
    assert_ne!(c.nonce, stale);
    assert_eq!(server.metrics().auth_failures, 4);
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_releases_ports() {
    let clock = real_time_manual_clock();
    let server = start(
        TurnConfig::loopback(REALM, vec![SECRET.into()]),
        clock.clone(),
    )
    .await;
    let addrs = server.local_addrs();
    let creds = server.credentials().mint("h", 600, clock.unix_secs());
    let mut c = RawClient::new(addrs.udp, &creds.username, &creds.credential).await;
    let relayed: SocketAddr = c.allocate().await.xor_addr(ATTR_XOR_RELAYED_ADDRESS);
    server.shutdown().await;
    // Everything the server bound can be bound again.
    std::net::UdpSocket::bind(addrs.udp).unwrap();
    std::net::TcpListener::bind(addrs.tcp.unwrap()).unwrap();
    std::net::UdpSocket::bind(relayed).unwrap();
}

#[tokio::test]
async fn special_purpose_ranges_and_server_addresses_are_refused_on_the_wire() {
    let clock = real_time_manual_clock();
    let mut cfg = TurnConfig::loopback(REALM, vec![SECRET.into()]);
    // Loopback peers are allow-listed (so the special-purpose table is what refuses below),
    // but that does not open the server's own addresses: 127.0.0.1 (bind) and 127.0.0.2
    // (public), except the one "media" port 7882 (any other port: refused).
    cfg.allowed_peer_cidrs = vec!["127.0.0.0/8".parse().unwrap()];
    cfg.allow_list_covers_server = false;
    cfg.public_ip = Some(ip("127.0.0.2"));
    cfg.server_peer_ports = vec![7882];
    let server = start(cfg, clock.clone()).await;
    let addrs = server.local_addrs();
    let creds = server.credentials().mint("ivan", 600, clock.unix_secs());
    let mut c = RawClient::new(addrs.udp, &creds.username, &creds.credential).await;
    let r = c.allocate().await;
    assert!(r.is_success(), "{r:?}");
    let listener_sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let own_other_port = listener_sock.local_addr().unwrap();
    let denied: Vec<SocketAddr> = [
        "0.1.2.3:5000",
        "192.0.0.1:5000",
        "192.0.0.10:3478",
        "192.0.2.1:5000",
        "192.88.99.1:5000",
        "198.18.0.1:5000",
        "198.19.255.1:5000",
        "198.51.100.1:5000",
        "203.0.113.1:5000",
        "240.0.0.1:5000",
        "255.255.255.255:5000",
        "127.0.0.2:9",
        "127.0.0.2:3478",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .chain([
        own_other_port,
        addrs.udp,
        SocketAddr::new(ip("127.0.0.2"), addrs.udp.port()),
        addrs.tcp.unwrap(),
    ])
    .collect();
    for peer in &denied {
        let r = c
            .request(METHOD_CREATE_PERMISSION, &[Attr::Peer(*peer)])
            .await;
        assert_eq!(r.error, Some(403), "CreatePermission {peer}: {r:?}");
        let r = c
            .request(
                METHOD_CHANNEL_BIND,
                &[Attr::Channel(0x4001), Attr::Peer(*peer)],
            )
            .await;
        assert_eq!(r.error, Some(403), "ChannelBind {peer}: {r:?}");
    }
    let refused = server.metrics().forbidden_peer_refusals;
    assert_eq!(refused, 2 * denied.len() as u64);

    // The open media port on the server's own address, and another allow-listed loopback host.
    for peer in ["127.0.0.2:7882", "127.0.0.1:7882", "127.0.0.9:9"] {
        let r = c
            .request(
                METHOD_CREATE_PERMISSION,
                &[Attr::Peer(peer.parse().unwrap())],
            )
            .await;
        assert!(r.is_success(), "CreatePermission {peer}: {r:?}");
    }
    // Permissions are per IP: 127.0.0.1 now has one (for its port 7882), yet a Send indication
    // to another port of the server's own address (here a live socket, and the TURN listener
    // itself) is dropped.
    c.send_indication(own_other_port, b"must not arrive").await;
    c.send_indication(addrs.udp, b"loop").await;
    // Control: the same path to an allowed peer delivers.
    let control = UdpSocket::bind("127.0.0.9:0").await.unwrap();
    c.send_indication(control.local_addr().unwrap(), b"control")
        .await;
    let mut buf = [0u8; 64];
    let (n, _) = tokio::time::timeout(Duration::from_secs(10), control.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"control");
    c.barrier().await;
    assert!(
        nothing_queued(&listener_sock),
        "relay to own address leaked"
    );
    assert_eq!(server.metrics().forbidden_peer_refusals, refused + 2);
    server.shutdown().await;
}

const EVEN_PORT_RESERVE: u16 = 0x0018;

fn reservation_token(r: &Resp) -> Vec<u8> {
    r.msg.get(ATTR_RESERVATION_TOKEN).unwrap()
}

#[tokio::test]
async fn even_port_reservations_count_against_the_quota_and_a_global_cap() {
    let clock = real_time_manual_clock();
    let mut cfg = TurnConfig::loopback(REALM, vec![SECRET.into()]);
    cfg.max_allocations_per_user = 4;
    cfg.max_reservations = 3;
    let server = start(cfg, clock.clone()).await;
    let udp = server.local_addrs().udp;
    let m = server.credentials().mint("mallory", 600, clock.unix_secs());
    // The attack: Allocate(EVEN-PORT, R) then Refresh(0), again and again from one client.
    let mut c = RawClient::new(udp, &m.username, &m.credential).await;
    let even_r = [Attr::Transport, Attr::Raw(EVEN_PORT_RESERVE, vec![0x80])];
    let mut cycles = 0;
    let mut tokens = Vec::new();
    let refused = loop {
        let r = c.request(METHOD_ALLOCATE, &even_r).await;
        if !r.is_success() {
            break r.error;
        }
        tokens.push(reservation_token(&r));
        assert_eq!(r.xor_addr(ATTR_XOR_RELAYED_ADDRESS).port() % 2, 0);
        let r = c.request(METHOD_REFRESH, &[Attr::Lifetime(0)]).await;
        assert!(r.is_success(), "{r:?}");
        cycles += 1;
        assert!(
            cycles <= 20,
            "20 reserve/release cycles without hitting the quota"
        );
    };
    // Quota 4: each cycle leaves one reservation; the 4th needs 3 + 2 slots.
    assert_eq!((refused, cycles), (Some(486), 3));
    let snap = server.metrics();
    assert_eq!((snap.reserved_ports, snap.active_allocations), (3, 0));

    // The global reservation cap (3) is full: another user's EVEN-PORT(R) gets 508, while
    // plain allocations of other users are unaffected.
    let t = server.credentials().mint("trent", 600, clock.unix_secs());
    let mut other = RawClient::new(udp, &t.username, &t.credential).await;
    assert_eq!(
        other.request(METHOD_ALLOCATE, &even_r).await.error,
        Some(508)
    );
    assert!(other.allocate().await.is_success());

    // Redeeming one's own reservation frees the slot it held: 3 reserved + 1 allocation fits.
    let mut redeem = RawClient::new(udp, &m.username, &m.credential).await;
    let r = redeem
        .request(
            METHOD_ALLOCATE,
            &[
                Attr::Transport,
                Attr::Raw(ATTR_RESERVATION_TOKEN.0, tokens[0].clone()),
            ],
        )
        .await;
    assert!(r.is_success(), "{r:?}");
    assert_eq!(r.xor_addr(ATTR_XOR_RELAYED_ADDRESS).port() % 2, 1);
    let mut fourth = RawClient::new(udp, &m.username, &m.credential).await;
    assert!(fourth.allocate().await.is_success());
    let mut fifth = RawClient::new(udp, &m.username, &m.credential).await;
    assert_eq!(fifth.allocate().await.error, Some(486));
    assert_eq!(server.metrics().reserved_ports, 2);

    // Reservations expire (30 s on the injected clock) and give their slots back.
    clock.advance(Duration::from_secs(31));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while server.metrics().reserved_ports > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "reservations never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(fifth.allocate().await.is_success());
    server.shutdown().await;
}

/// With a wildcard bind (0.0.0.0) the server's own addresses are every address of the host's
/// interfaces: even when an operator allow-lists their networks for peers, relaying to the
/// server itself is refused (here loopback, and the first non-loopback IPv4 address, if any),
/// while another host of the allowed networks is reachable.
#[tokio::test]
async fn a_wildcard_bind_counts_every_interface_address_as_the_servers_own() {
    let clock = real_time_manual_clock();
    let mut cfg = TurnConfig::loopback(REALM, vec![SECRET.into()]);
    let any: std::net::IpAddr = "0.0.0.0".parse().unwrap();
    cfg.relay_bind_ip = any;
    cfg.public_ip = Some(ip("127.0.0.2")); // required with a wildcard relay bind
    cfg.udp_listen = SocketAddr::new(any, 0);
    cfg.tcp_listen = None;
    let host = parlor_turn::netif::host_addresses();
    let lan = host
        .iter()
        .copied()
        .find(|a| a.is_ipv4() && !a.is_loopback());
    cfg.allowed_peer_cidrs = vec!["127.0.0.0/8".parse().unwrap()];
    if let Some(std::net::IpAddr::V4(v4)) = lan {
        let o = v4.octets();
        cfg.allowed_peer_cidrs
            .push(format!("{}.{}.{}.0/24", o[0], o[1], o[2]).parse().unwrap());
    }
    cfg.allow_list_covers_server = false;
    let server = start(cfg, clock.clone()).await;
    let port = server.local_addrs().udp.port();
    let creds = server.credentials().mint("wanda", 600, clock.unix_secs());
    let to = SocketAddr::new(ip("127.0.0.1"), port);
    let mut c = RawClient::new(to, &creds.username, &creds.credential).await;
    assert!(c.allocate().await.is_success());
    let mut own = vec![SocketAddr::new(ip("127.0.0.1"), 5000)];
    let mut other = vec![SocketAddr::new(ip("127.0.0.9"), 5000)];
    if let Some(std::net::IpAddr::V4(v4)) = lan {
        own.push(SocketAddr::new(lan.unwrap(), 5000));
        let o = v4.octets();
        let neighbour = if o[3] == 200 { 201 } else { 200 };
        other.push(SocketAddr::new(
            std::net::IpAddr::V4(std::net::Ipv4Addr::new(o[0], o[1], o[2], neighbour)),
            5000,
        ));
    } else {
        eprintln!("note: no non-loopback IPv4 interface here; checked loopback only");
    }
    for peer in &own {
        let r = c
            .request(METHOD_CREATE_PERMISSION, &[Attr::Peer(*peer)])
            .await;
        assert_eq!(r.error, Some(403), "CreatePermission to own {peer}: {r:?}");
    }
    for peer in &other {
        let r = c
            .request(METHOD_CREATE_PERMISSION, &[Attr::Peer(*peer)])
            .await;
        assert!(r.is_success(), "CreatePermission to {peer}: {r:?}");
    }
}
