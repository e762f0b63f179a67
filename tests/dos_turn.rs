//! Issue 14 item 3 (TURN part) against the real server: 2,000 idle TURN TCP connections are
//! capped (the process's descriptors stay bounded by the cap), `/health` answers and a WebRTC
//! client joins meanwhile, and the idle connections are closed after the (short, configured)
//! idle timeout.

mod common;
#[path = "common/lk.rs"]
mod lk;

use common::*;
use lk::{Client, Seen};
use parlor_signaling::VideoGrant;
use rtc::peer_connection::state::RTCPeerConnectionState;
use std::time::Duration;
use tokio::net::TcpStream;

const FLOOD: usize = 2000;
const CAP: usize = 400;
/// Connections the TURN server may hold beyond its cap while they close (its MAX_CLOSING).
const SLACK: usize = 64;

fn raise_nofile_limit() -> libc::rlim_t {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a valid, owned struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl), 0);
        rl.rlim_cur = rl.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &rl), 0);
    }
    rl.rlim_cur
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn free_port() -> u16 {
    loop {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn closed_by_server(s: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    match s.try_read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_turn_tcp_flood_does_not_starve_health_or_joins() {
    let limit = raise_nofile_limit();
    assert!(
        limit as usize > 2 * FLOOD + 500,
        "RLIMIT_NOFILE hard limit {limit} too low"
    );
    let port = free_port();
    let db = TestDb::sqlite();
    let s = TestServer::start_with(&db, |c| {
        c.turn.enabled = true;
        c.turn.udp_port = port;
        c.turn.tcp_port = port;
        c.turn.max_tcp_connections = CAP;
        c.turn.max_tcp_connections_per_ip = CAP;
        c.turn.tcp_idle_timeout_ms = 3000;
    })
    .await;
    let fd0 = fd_count();
    let mut flood = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        flood.push(
            TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("TCP connect to TURN"),
        );
    }
    // The server side never holds more than the cap (+ connections being closed).
    let server_side = fd_count().saturating_sub(fd0 + FLOOD);
    assert!(
        server_side <= CAP + SLACK,
        "server holds {server_side} descriptors for {FLOOD} idle TURN connections"
    );
    let m = s.metrics().await;
    let open = metric(&m, "parlor_turn_tcp_connections");
    eprintln!("{FLOOD} idle TURN TCP connections: server holds {server_side} descriptors, {open} open (cap {CAP})");
    assert!(open <= (CAP + SLACK) as f64);

    // While the flood is open: /health answers and a WebRTC client joins and connects.
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        s.client.get(s.url("/health")).send(),
    )
    .await
    .expect("/health timed out under the TURN flood")
    .unwrap();
    assert_eq!(r.status(), 200);
    let mut a = Client::connect(&s.ws, &s.token("alice", VideoGrant::join("dos-turn")), true).await;
    a.publish_audio().await;
    a.wait_for(|e| {
        matches!(e, Seen::PublisherState(RTCPeerConnectionState::Connected)).then_some(())
    })
    .await;

    // The idle connections (no allocation) are closed after the 3 s idle timeout.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !flood.iter().all(closed_by_server) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {FLOOD} idle TURN connections still open",
            flood.iter().filter(|c| !closed_by_server(c)).count()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = s.metrics().await;
    assert!(
        metric(&m, "parlor_turn_tcp_idle_closed_total") >= CAP as f64,
        "{m}"
    );
    drop(flood);
    a.leave().await;
    s.stop().await;
}
