//! Acceptance: coturn's `turnutils_uclient` (a third-party TURN client) allocates and relays
//! through the embedded server with a freshly minted REST credential; an expired credential and
//! a wrong password are rejected. Needs the Debian package `coturn`.

mod common;

use std::time::Duration;

use common::*;
use parlor_turn::{Clock, TurnConfig};

const MESSAGES: u32 = 20;

fn assert_relayed(r: &UclientResult) {
    assert!(r.success, "uclient failed:\n{}", r.output);
    // -y: two clients each send MESSAGES packets to the other's relayed address (twice that
    // without -c: an RTP and an RTCP allocation per client).
    assert!(r.sent >= 2 * u64::from(MESSAGES), "{}", r.output);
    assert!(r.received > 0, "nothing relayed:\n{}", r.output);
    assert!(
        !r.output.contains("ERROR"),
        "uclient reported an error:\n{}",
        r.output
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_relays_over_udp_and_tcp_with_minted_credential() {
    let Some(bin) = require_tool("turnutils_uclient", "coturn") else {
        return;
    };
    let clock = real_time_manual_clock();
    let server = start(
        TurnConfig::loopback(REALM, vec![SECRET.into()]),
        clock.clone(),
    )
    .await;
    let addrs = server.local_addrs();
    let creds = server
        .credentials()
        .mint("uclient-user", 600, clock.unix_secs());

    // UDP, RTP+RTCP pairs (EVEN-PORT with reservation + RESERVATION-TOKEN), ChannelData.
    let r = uclient(
        &bin,
        addrs.udp.port(),
        &creds.username,
        &creds.credential,
        &[],
        MESSAGES,
    )
    .await;
    assert_relayed(&r);
    let after_udp = server.metrics();
    assert!(after_udp.allocations_total >= 4, "{after_udp:?}");
    assert!(after_udp.relayed_bytes_to_peers > 0 && after_udp.relayed_bytes_from_peers > 0);

    // UDP with Send/Data indications instead of channels.
    let r = uclient(
        &bin,
        addrs.udp.port(),
        &creds.username,
        &creds.credential,
        &["-s", "-c"],
        MESSAGES,
    )
    .await;
    assert_relayed(&r);

    // TCP listener.
    let tcp = addrs.tcp.unwrap();
    let r = uclient(
        &bin,
        tcp.port(),
        &creds.username,
        &creds.credential,
        &["-t"],
        MESSAGES,
    )
    .await;
    assert_relayed(&r);

    let m = server.metrics();
    assert!(m.relayed_bytes() > after_udp.relayed_bytes(), "{m:?}");
    assert_eq!(m.auth_failures, 0, "{m:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_is_rejected_with_wrong_password_or_expired_credential() {
    let Some(bin) = require_tool("turnutils_uclient", "coturn") else {
        return;
    };
    let clock = real_time_manual_clock();
    let server = start(
        TurnConfig::loopback(REALM, vec![SECRET.into()]),
        clock.clone(),
    )
    .await;
    let port = server.local_addrs().udp.port();
    let creds = server
        .credentials()
        .mint("uclient-user", 60, clock.unix_secs());

    // Wrong password: the HMAC of a different secret.
    let wrong = parlor_turn::credential_for(b"not-the-secret", &creds.username);
    let r = uclient(&bin, port, &creds.username, &wrong, &["-c"], 3).await;
    assert!(!r.success, "wrong password accepted:\n{}", r.output);
    assert!(
        r.output.contains("Cannot complete Allocation"),
        "{}",
        r.output
    );
    assert_eq!(r.received, 0);
    let m = server.metrics();
    assert!(m.auth_failures > 0, "{m:?}");
    assert_eq!(m.allocations_total, 0, "{m:?}");

    // Expired: the same (correct) credential after the injected clock passes its expiry.
    clock.advance(Duration::from_secs(61));
    let r = uclient(&bin, port, &creds.username, &creds.credential, &["-c"], 3).await;
    assert!(!r.success, "expired credential accepted:\n{}", r.output);
    assert!(
        r.output.contains("Cannot complete Allocation"),
        "{}",
        r.output
    );
    assert_eq!(server.metrics().allocations_total, 0);

    // Control: a fresh credential works on the same server.
    let fresh = server
        .credentials()
        .mint("uclient-user", 60, clock.unix_secs());
    let r = uclient(&bin, port, &fresh.username, &fresh.credential, &["-c"], 3).await;
    assert!(r.success, "{}", r.output);
    assert!(server.metrics().allocations_total >= 2);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_relay_to_loopback_is_refused_by_default_policy() {
    let Some(bin) = require_tool("turnutils_uclient", "coturn") else {
        return;
    };
    let clock = real_time_manual_clock();
    let mut cfg = TurnConfig::loopback(REALM, vec![SECRET.into()]);
    cfg.allowed_peer_cidrs.clear();
    let server = start(cfg, clock.clone()).await;
    let creds = server
        .credentials()
        .mint("uclient-user", 600, clock.unix_secs());
    // Client-to-client: the peers are the relayed addresses on 127.0.0.1, which the default
    // policy refuses.
    let r = uclient(
        &bin,
        server.local_addrs().udp.port(),
        &creds.username,
        &creds.credential,
        &["-c"],
        3,
    )
    .await;
    assert_eq!(r.received, 0, "{}", r.output);
    let m = server.metrics();
    assert!(m.forbidden_peer_refusals > 0, "{m:?}");
    assert_eq!(m.relayed_bytes(), 0, "{m:?}");
    server.shutdown().await;
}
