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
