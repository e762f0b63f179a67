//! A TCP listener that cannot accept (EMFILE: the process is out of descriptors) backs off
//! instead of spinning on the always-ready listener, and serves the waiting connections once
//! descriptors are available again. Alone in its binary: it lowers the process's RLIMIT_NOFILE.

mod common;

use std::time::Duration;

use common::*;
use parlor_turn::{TurnConfig, TurnServer};
use tokio::net::TcpSocket;

fn set_soft_nofile(n: libc::rlim_t) {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a valid, owned struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl), 0);
        rl.rlim_cur = n.min(rl.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &rl), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_failing_with_emfile_backs_off_and_recovers() {
    let hard = raise_nofile_limit();
    let clock = real_time_manual_clock();
    let server = TurnServer::start(TurnConfig::loopback(REALM, vec![SECRET.into()]), clock)
        .await
        .unwrap();
    let tcp = server.local_addrs().tcp.unwrap();
    // Client sockets created while descriptors are plentiful ...
    let sockets: Vec<TcpSocket> = (0..8).map(|_| TcpSocket::new_v4().unwrap()).collect();
    // ... then no descriptor is left: the kernel completes the handshakes, accept() fails.
    // (fd_count() counts the directory handle it reads with.)
    set_soft_nofile(fd_count() as libc::rlim_t - 1);
    let mut clients = Vec::new();
    for s in sockets {
        clients.push(s.connect(tcp).await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let errors = server.metrics().tcp_accept_errors;
    eprintln!("failed accepts while out of descriptors for 3 s: {errors}");
    // Spinning would be hundreds of thousands; a fixed short retry tens; back-off (10 ms
    // doubling to 1 s) about ten.
    assert!(errors >= 1, "accept never failed: {:?}", server.metrics());
    assert!(errors <= 20, "{errors} failed accepts in 3 s: no back-off");
    let stuck = server.metrics().tcp_connections;
    assert!(stuck < clients.len() as u64, "{:?}", server.metrics());
    // Descriptors are back: the waiting connections are accepted (within the 1 s back-off cap).
    set_soft_nofile(hard);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while server.metrics().tcp_connections < clients.len() as u64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            server.metrics()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(clients);
    server.shutdown().await;
}
