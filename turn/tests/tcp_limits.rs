//! TURN TCP listener under a flood of idle connections: the global and per-IP caps bound the
//! server's file descriptors, idle connections (no allocation) are closed after the configured
//! timeout on the injected clock, and a real client (coturn's `turnutils_uclient` over TCP, and
//! the raw test client) still allocates meanwhile.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use parlor_turn::{Clock, TurnConfig, TurnServer};
use rtc::stun::message::*;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

const FLOOD: usize = 2000;
const CAP: usize = 300;
const PER_IP: usize = 150;
/// Closing connections the server may hold beyond the cap for a moment (its MAX_CLOSING).
const SLACK: usize = 64;

async fn connect_from(src: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{src}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

/// Has the server closed this connection? (EOF or reset, without blocking.)
fn closed_by_server(s: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    match s.try_read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn open_conns(server: &TurnServer) -> usize {
    server.metrics().tcp_connections as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tcp_flood_is_capped_and_timed_out_while_real_clients_allocate() {
    let limit = raise_nofile_limit();
    assert!(
        limit as usize > 2 * FLOOD + 200,
        "RLIMIT_NOFILE hard limit {limit} too low"
    );
    let clock = real_time_manual_clock();
    let mut cfg = TurnConfig::loopback(REALM, vec![SECRET.into()]);
    cfg.max_tcp_connections = CAP;
    cfg.max_tcp_connections_per_ip = PER_IP;
    cfg.tcp_idle_timeout = Duration::from_secs(30);
    cfg.nonce_lifetime = Duration::from_secs(3600);
    let server = TurnServer::start(cfg, clock.clone()).await.unwrap();
    let tcp = server.local_addrs().tcp.unwrap();
    let fd0 = fd_count();

    // 2,000 idle connections: 1,000 from 127.0.0.1 (the legitimate clients' address too), the
    // rest from 127.0.0.2..=127.0.0.5. None ever sends a byte.
    let mut flood = Vec::with_capacity(FLOOD);
    for i in 0..FLOOD {
        let src = if i % 2 == 0 {
            "127.0.0.1".to_owned()
        } else {
            format!("127.0.0.{}", 2 + (i / 2) % 4)
        };
        flood.push(connect_from(&src, tcp).await);
        if i % 100 == 99 {
            let server_side = fd_count().saturating_sub(fd0 + flood.len());
            assert!(
                server_side <= CAP + SLACK,
                "after {} connections the server holds {server_side} descriptors",
                flood.len()
            );
        }
    }
    // Settled: exactly the cap is open (never more descriptors than cap + slack), the others
    // were closed by the server.
    wait_until("server settles at the cap", || open_conns(&server) == CAP).await;
    let server_side = fd_count() - fd0 - FLOOD;
    assert!(
        server_side <= CAP + SLACK,
        "server holds {server_side} descriptors"
    );
    wait_until("excess connections closed", || {
        flood.iter().filter(|s| closed_by_server(s)).count() == FLOOD - CAP
    })
    .await;
    let m = server.metrics();
    eprintln!(
        "{FLOOD} idle connections: server holds {server_side} descriptors (cap {CAP}), \
         {} open, {} evicted/idle-closed, {} refused",
        m.tcp_connections, m.tcp_idle_closed, m.tcp_refused
    );
    assert!(
        m.tcp_idle_closed + m.tcp_refused >= (FLOOD - CAP) as u64,
        "{m:?}"
    );

    // Meanwhile a real client allocates and relays over TCP from the flooded address.
    let creds = server.credentials().mint("legit", 600, clock.unix_secs());
    let mut raw = RawClient::new_tcp(tcp, &creds.username, &creds.credential).await;
    let r = raw.allocate().await;
    assert!(r.is_success(), "{r:?}");
    if let Some(bin) = require_tool("turnutils_uclient", "coturn") {
        let r = uclient(
            &bin,
            tcp.port(),
            &creds.username,
            &creds.credential,
            &["-t"],
            10,
        )
        .await;
        assert!(
            r.success && r.received > 0,
            "uclient over TCP: {}",
            r.output
        );
    }
    assert!(open_conns(&server) <= CAP, "{:?}", server.metrics());

    // Nothing idle is closed before the timeout on the injected clock (sweeps run every
    // second; evictions only happen when a connection is admitted) ...
    let closed_before = server.metrics().tcp_idle_closed;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(server.metrics().tcp_idle_closed, closed_before);
    // ... and everything without an allocation is closed after it; the allocating client stays.
    clock.advance(Duration::from_secs(31));
    wait_until("idle connections closed", || open_conns(&server) == 1).await;
    wait_until("every flood connection closed", || {
        flood.iter().all(closed_by_server)
    })
    .await;
    let r = raw.request(METHOD_REFRESH, &[Attr::Lifetime(600)]).await;
    assert!(r.is_success(), "the allocating client was cut off: {r:?}");
    eprintln!("after the idle timeout: {:?}", server.metrics());
    drop(flood);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connection_is_closed_after_its_allocation_ends() {
    let clock = real_time_manual_clock();
    let mut cfg = TurnConfig::loopback(REALM, vec![SECRET.into()]);
    cfg.tcp_idle_timeout = Duration::from_secs(20);
    cfg.nonce_lifetime = Duration::from_secs(3600);
    let server = TurnServer::start(cfg, clock.clone()).await.unwrap();
    let tcp = server.local_addrs().tcp.unwrap();
    let creds = server
        .credentials()
        .mint("expiring", 7200, clock.unix_secs());
    let mut c = RawClient::new_tcp(tcp, &creds.username, &creds.credential).await;
    let r = c.allocate().await;
    assert!(r.is_success(), "{r:?}");
    assert_eq!(r.lifetime(), Duration::from_secs(600));
    // Holding an allocation: well past the idle timeout, the connection stays.
    clock.advance(Duration::from_secs(300));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = c.request(METHOD_REFRESH, &[Attr::Lifetime(600)]).await;
    assert!(r.is_success(), "{r:?}");
    // The allocation expires; the connection is closed one idle timeout later.
    clock.advance(Duration::from_secs(601));
    wait_until("allocation expired", || {
        server.metrics().active_allocations == 0
    })
    .await;
    assert_eq!(server.metrics().tcp_connections, 1);
    clock.advance(Duration::from_secs(21));
    wait_until("connection closed", || {
        server.metrics().tcp_connections == 0
    })
    .await;
    let mut b = [0u8; 1];
    let mut s = c.tcp.take().unwrap();
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b))
        .await
        .unwrap();
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    server.shutdown().await;
}
