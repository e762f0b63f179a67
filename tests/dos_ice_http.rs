//! Denial of service by connection floods, against the real listeners (issue 14, items 2 and 3):
//! ICE-TCP lockout by forged STUN frames and half-open connections, HTTP idle and slow-header floods,
//! and floods of both under a 1,024 open-file limit on the real binary.
//!
//! Attackers connect from other loopback addresses (127.0.0.2 …) than the real client (127.0.0.1),
//! as distinct hosts would: the per-address caps hold them, the real client is not one of them.

mod common;
#[path = "common/lk.rs"]
mod lk;
use common::*;
use lk::{Client, Seen};
use parlor_signaling::VideoGrant;
use rtc::peer_connection::state::RTCPeerConnectionState;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The floods share the machine's descriptors and cores: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Raise this process's soft RLIMIT_NOFILE to its hard limit (the floods need thousands of sockets).
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid rlimit pointers.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    lim.rlim_cur
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Loopback source address number `i` (127.0.0.2, 127.0.0.3, …): never the real client's 127.0.0.1.
fn attacker_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        1 + (i / 250) as u8,
        2 + (i % 250) as u8,
    ))
}

/// A TCP connection to `to` from `from` (any port).
async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(from, 0))?;
    tokio::time::timeout(Duration::from_secs(5), s.connect(to))
        .await
        .map_err(|_| std::io::Error::other("connect timeout"))?
}

/// One RFC 4571-framed, 48-byte STUN Binding request with USERNAME `user` (no integrity).
fn stun_frame(user: &str) -> Vec<u8> {
    let mut attr = user.as_bytes().to_vec();
    let ulen = attr.len();
    attr.resize(ulen.div_ceil(4) * 4, 0);
    let mut m = Vec::with_capacity(48);
    m.extend_from_slice(&[0x00, 0x01]);
    m.extend_from_slice(&((4 + attr.len()) as u16).to_be_bytes());
    m.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
    m.extend_from_slice(&rand::random::<[u8; 12]>());
    m.extend_from_slice(&[0x00, 0x06]);
    m.extend_from_slice(&(ulen as u16).to_be_bytes());
    m.extend_from_slice(&attr);
    let mut framed = (m.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&m);
    framed
}

/// Did the server close `s` (EOF or reset) within `within`? Bytes the server sends are skipped.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// How many of `conns` the server closes within `within` (checked concurrently).
async fn count_closed(conns: &mut [TcpStream], within: Duration) -> usize {
    close_times(conns, within, tokio::time::Instant::now())
        .await
        .iter()
        .filter(|c| c.is_some())
        .count()
}

/// When (after `since`) the server closed each of `conns`; None: still open after `within`.
async fn close_times(
    conns: &mut [TcpStream],
    within: Duration,
    since: tokio::time::Instant,
) -> Vec<Option<Duration>> {
    let checks = conns
        .iter_mut()
        .map(|c| async move { closed_within(c, within).await.then(|| since.elapsed()) });
    futures_util::future::join_all(checks).await
}

/// The signal WebSocket still answers a ping.
async fn signal_alive(c: &mut Client) {
    use parlor_signaling::protocol::proto;
    c.send(proto::signal_request::Message::PingReq(proto::Ping {
        timestamp: 42,
        rtt: 0,
    }))
    .await;
    c.wait_for(|s| match s {
        Seen::Signal(proto::signal_response::Message::PongResp(p)) => {
            (p.last_ping_timestamp == 42).then_some(())
        }
        Seen::Closed => panic!("signal WebSocket closed"),
        _ => None,
    })
    .await;
}

/// Join `room` as `who` and wait until the publisher PC is connected (UDP, or ICE-TCP only).
async fn join_and_connect(ws: &str, token: &str, tcp: bool) -> Client {
    let mut c = if tcp {
        Client::connect_tcp(ws, token, true).await
    } else {
        Client::connect(ws, token, true).await
    };
    c.publish_audio().await;
    c.wait_for(|s| {
        matches!(s, Seen::PublisherState(RTCPeerConnectionState::Connected)).then_some(())
    })
    .await;
    c
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// 4,200 attacking ICE-TCP connections: 4,000 send one forged 48-byte STUN Binding whose USERNAME
/// starts with a worker's ufrag character ("0…"/"1…", no live ufrag), 200 send nothing. A real
/// client still connects over ICE-TCP, and every forged connection has been closed by the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stun_flood_does_not_lock_out_ice_tcp() {
    let _serial = SERIAL.lock().await;
    let nofile = raise_nofile();
    assert!(
        nofile >= 10_000,
        "test needs RLIMIT_NOFILE >= 10000, hard limit is {nofile}"
    );
    let db = TestDb::sqlite();
    let tcp_port = free_port();
    let s = TestServer::start_with(&db, |c| c.rtc.tcp_port = tcp_port).await;
    let target = SocketAddr::from(([127, 0, 0, 1], tcp_port));
    let mut forged = Vec::new();
    let mut silent = Vec::new();
    for i in 0..4200usize {
        let Ok(mut conn) = connect_from(attacker_ip(i % 100), target).await else {
            continue; // refused at once is fine: it holds nothing
        };
        if i % 21 == 20 {
            silent.push(conn);
        } else {
            let user = format!("{}xxxxxxxxxxxxxxx:yyyy", i % 2);
            let frame = stun_frame(&user);
            assert_eq!(frame.len(), 2 + 48);
            let _ = conn.write_all(&frame).await;
            forged.push(conn);
        }
    }
    println!(
        "attackers: {} forged-STUN and {} silent connections open",
        forged.len(),
        silent.len()
    );
    assert!(forged.len() >= 3900, "could not open the flood");
    let started = Instant::now();
    let token = s.token("real-tcp", VideoGrant::join("dos-ice"));
    let client = join_and_connect(&s.ws, &token, true).await;
    println!(
        "real ICE-TCP client connected {} ms after the flood",
        started.elapsed().as_millis()
    );
    let m = s.metrics().await;
    assert!(
        metric(&m, "parlor_ice_tcp_frames_in_total") > 0.0,
        "media did not use ICE-TCP:\n{m}"
    );
    // Every forged connection was refused (closed by the server), not held.
    let held = forged.len() - count_closed(&mut forged, Duration::from_secs(2)).await;
    assert_eq!(
        held, 0,
        "{held} forged-STUN connections are still held open"
    );
    client.leave().await;
    s.stop().await;
}

/// Half-open ICE-TCP connections — silent ones, and ones whose STUN Binding names a live peer
/// connection's ufrag but fails integrity — are closed once the (configured) handshake timeout
/// passes, not before; a connection without a live ufrag is closed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_ice_tcp_connections_close_after_the_handshake_timeout() {
    let _serial = SERIAL.lock().await;
    raise_nofile();
    const TIMEOUT: Duration = Duration::from_millis(1500);
    let db = TestDb::sqlite();
    let tcp_port = free_port();
    let s = TestServer::start_with(&db, |c| {
        c.rtc.tcp_port = tcp_port;
        c.rtc.tcp_handshake_timeout_ms = TIMEOUT.as_millis() as u64;
    })
    .await;
    let target = SocketAddr::from(([127, 0, 0, 1], tcp_port));
    // A live peer connection's ufrag, from the server's answer to the publisher offer.
    let token = s.token("victim", VideoGrant::join("dos-half-open"));
    let mut victim = Client::connect(&s.ws, &token, true).await;
    victim.publish_audio().await;
    let answer = victim
        .wait_for(|s| match s {
            Seen::Signal(parlor_signaling::protocol::proto::signal_response::Message::Answer(
                sd,
            )) => Some(sd.sdp.clone()),
            _ => None,
        })
        .await;
    let ufrag = answer
        .lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .expect("ufrag in answer")
        .to_string();
    let opened = tokio::time::Instant::now();
    let mut half_open = Vec::new();
    for i in 0..200usize {
        let mut c = connect_from(attacker_ip(i % 10), target).await.unwrap();
        if i % 2 == 0 {
            // Live ufrag, no MESSAGE-INTEGRITY: admitted, never bound.
            c.write_all(&stun_frame(&format!("{ufrag}:evil")))
                .await
                .unwrap();
        }
        half_open.push(c);
    }
    let mut unknown = connect_from(attacker_ip(50), target).await.unwrap();
    unknown
        .write_all(&stun_frame("0nosuchufrag0000:evil"))
        .await
        .unwrap();
    assert!(
        closed_within(&mut unknown, Duration::from_secs(5)).await,
        "a connection naming no live ufrag was not closed"
    );
    let times = close_times(&mut half_open, TIMEOUT + Duration::from_secs(20), opened).await;
    let closed: Vec<Duration> = times.iter().flatten().copied().collect();
    assert_eq!(closed.len(), 200, "half-open ICE-TCP connections are held");
    let first = *closed.iter().min().unwrap();
    println!(
        "200 half-open connections closed between {} and {} ms after the first was opened",
        first.as_millis(),
        closed.iter().max().unwrap().as_millis()
    );
    // Each was opened after `opened`, so none may close earlier than TIMEOUT after it.
    assert!(
        first >= TIMEOUT,
        "closed before the handshake timeout: {first:?}"
    );
    // The victim's own UDP session is unaffected.
    victim
        .wait_for(|s| {
            matches!(s, Seen::PublisherState(RTCPeerConnectionState::Connected)).then_some(())
        })
        .await;
    s.stop().await;
}

/// An HTTP request over a fresh connection from 127.0.0.1: (status, body) or an error text.
async fn health(http: &str) -> Result<(u16, serde_json::Value), String> {
    let r = reqwest::Client::new()
        .get(format!("{http}/health"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(serde_json::Value::Null)))
}

/// 1,000 idle and 500 partial-header (slowloris, one header byte every 200 ms) HTTP connections:
/// `/health` answers, a WebRTC join succeeds, and the partial-header connections are closed once the
/// configured header timeout passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_idle_and_slow_header_flood() {
    let _serial = SERIAL.lock().await;
    raise_nofile();
    const HEADER_TIMEOUT: Duration = Duration::from_millis(3000);
    let db = TestDb::sqlite();
    let s = TestServer::start_with(&db, |c| {
        c.limits.http_header_timeout_ms = HEADER_TIMEOUT.as_millis() as u64;
    })
    .await;
    let target: SocketAddr = s.handle.http_addr;
    let opened = tokio::time::Instant::now();
    let mut idle = Vec::new();
    for i in 0..1000usize {
        idle.push(connect_from(attacker_ip(i % 5), target).await.unwrap());
    }
    let mut slow = Vec::new();
    for i in 0..500usize {
        let mut c = connect_from(attacker_ip(10 + i % 5), target).await.unwrap();
        c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(c);
    }
    // Trickle one header byte per connection every 200 ms (never finishing the head).
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let trickler = tokio::spawn(async move {
        let mut open: Vec<(TcpStream, Option<Duration>)> =
            slow.into_iter().map(|c| (c, None)).collect();
        while !*stop_rx.borrow() {
            for (c, closed_at) in open.iter_mut().filter(|(_, t)| t.is_none()) {
                let mut probe = [0u8; 64];
                let gone = match c.try_read(&mut probe) {
                    Ok(0) => true,
                    Ok(_) => false,
                    Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                } || c.write_all(b"a").await.is_err();
                if gone {
                    *closed_at = Some(opened.elapsed());
                }
            }
            if open.iter().all(|(_, t)| t.is_some()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        open.into_iter().map(|(_, t)| t).collect::<Vec<_>>()
    });
    let (status, body) = health(&s.http).await.expect("/health during the flood");
    assert_eq!(status, 200, "{body}");
    let token = s.token("real-http", VideoGrant::join("dos-http"));
    let client = join_and_connect(&s.ws, &token, false).await;
    println!(
        "/health and a WebRTC join succeeded {} ms into the flood",
        opened.elapsed().as_millis()
    );
    // Partial-header connections: all closed, none before the header timeout.
    let closed = tokio::time::timeout(HEADER_TIMEOUT + Duration::from_secs(30), trickler).await;
    let _ = stop_tx.send(true);
    let closed = closed
        .expect("partial-header connections still open long after the header timeout")
        .unwrap();
    let times: Vec<Duration> = closed.iter().flatten().copied().collect();
    assert_eq!(times.len(), 500, "partial-header connections held");
    let first = times.iter().min().unwrap();
    println!(
        "partial-header connections closed between {} and {} ms",
        first.as_millis(),
        times.iter().max().unwrap().as_millis()
    );
    assert!(
        *first >= HEADER_TIMEOUT,
        "closed before the header timeout: {first:?}"
    );
    // Idle connections are closed too (hyper's header timer runs while waiting for a request).
    let idle_closed = count_closed(&mut idle, Duration::from_secs(20)).await;
    assert_eq!(idle_closed, 1000, "idle HTTP connections held");
    // The client's signal WebSocket outlived the header and idle checks (upgraded: not timed out).
    let mut client = client;
    signal_alive(&mut client).await;
    client.leave().await;
    s.stop().await;
}

/// The idle timeout (here shorter than the header timeout): a silent connection and a request whose
/// body stalls are closed once nothing has moved for `http_idle_timeout_ms`; an open signal
/// WebSocket idle for longer is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_idle_timeout_closes_stalled_connections_but_not_websockets() {
    let _serial = SERIAL.lock().await;
    const IDLE: Duration = Duration::from_millis(1000);
    let db = TestDb::sqlite();
    let s = TestServer::start_with(&db, |c| {
        c.limits.http_header_timeout_ms = 60_000;
        c.limits.http_idle_timeout_ms = IDLE.as_millis() as u64;
    })
    .await;
    let token = s.token("ws-idle", VideoGrant::join("dos-idle"));
    let mut client = Client::connect(&s.ws, &token, false).await;
    let since = tokio::time::Instant::now();
    let silent = connect_from(attacker_ip(0), s.handle.http_addr)
        .await
        .unwrap();
    let mut stalled = connect_from(attacker_ip(1), s.handle.http_addr)
        .await
        .unwrap();
    // Authenticated, so the handler waits for the JSON body, which stops after one byte.
    let head = format!(
        "POST /api/calls HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
        user_token("stalls")
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    let mut conns = [silent, stalled];
    let times = close_times(&mut conns, IDLE + Duration::from_secs(20), since).await;
    println!("silent and stalled connections closed after {times:?}");
    for t in times {
        let t = t.expect("connection held past the idle timeout");
        assert!(t >= IDLE, "closed before the idle timeout: {t:?}");
    }
    tokio::time::sleep(IDLE).await;
    signal_alive(&mut client).await;
    client.leave().await;
    s.stop().await;
}

/// Per-address cap: from one address at most `http_max_connections_per_ip` connections are held;
/// the rest are closed at once, and another address is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connections_are_capped_per_address() {
    let _serial = SERIAL.lock().await;
    raise_nofile();
    let db = TestDb::sqlite();
    let s = TestServer::start_with(&db, |c| {
        c.limits.http_max_connections_per_ip = 50;
        c.limits.http_header_timeout_ms = 60_000;
    })
    .await;
    let mut conns = Vec::new();
    for _ in 0..80 {
        conns.push(
            connect_from(attacker_ip(0), s.handle.http_addr)
                .await
                .unwrap(),
        );
    }
    let refused = count_closed(&mut conns, Duration::from_secs(1)).await;
    assert_eq!(
        refused, 30,
        "per-address cap of 50 not applied to 80 connections"
    );
    let (status, _) = health(&s.http).await.expect("/health from another address");
    assert_eq!(status, 200);
    s.stop().await;
}

/// The real binary under a soft and hard RLIMIT_NOFILE of 1,024, flooded with 1,000 idle HTTP and
/// 1,000 idle ICE-TCP connections from ten addresses: `/health` answers and a WebRTC join succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_under_1024_open_files_survives_http_ice_tcp_and_turn_tcp_floods() {
    use std::os::unix::process::CommandExt;
    let _serial = SERIAL.lock().await;
    raise_nofile();
    let dir = tempfile::tempdir().unwrap();
    let (http_port, tcp_port, turn_port) = (free_port(), free_port(), free_port());
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_parlor"));
    cmd.args(["serve", "--bind", &format!("127.0.0.1:{http_port}")])
        .env("PARLOR_RTC_UDP_PORT", "0")
        .env("PARLOR_RTC_TCP_PORT", tcp_port.to_string())
        .env("PARLOR_RTC_WORKERS", "1")
        .env("PARLOR_TURN_ENABLED", "true")
        .env("PARLOR_TURN_UDP_PORT", turn_port.to_string())
        .env("PARLOR_TURN_TCP_PORT", turn_port.to_string())
        .env("PARLOR_KEYS", format!("{KEY}:{SECRET}"))
        .env("PARLOR_STORAGE_DATA_DIR", dir.path())
        // Keep the flood's connections open for the whole test (timeouts are tested above).
        .env("PARLOR_TURN_TCP_IDLE_TIMEOUT_MS", "120000")
        .env("PARLOR_LIMITS_HTTP_HEADER_TIMEOUT_MS", "120000")
        .env("PARLOR_RTC_TCP_HANDSHAKE_TIMEOUT_MS", "120000")
        .env("RUST_LOG", "warn")
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("server.log")).unwrap());
    // SAFETY: only async-signal-safe setrlimit between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 1024,
                rlim_max: 1024,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let http = format!("http://127.0.0.1:{http_port}");
    let ws = format!("ws://127.0.0.1:{http_port}");
    let mut up = false;
    for _ in 0..100 {
        if health(&http).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "server did not start");
    let mut flood = Vec::new();
    let (mut http_ok, mut tcp_ok, mut turn_ok) = (0, 0, 0);
    for i in 0..1000usize {
        let from = attacker_ip(i % 10);
        if let Ok(c) = connect_from(from, SocketAddr::from(([127, 0, 0, 1], http_port))).await {
            http_ok += 1;
            flood.push(c);
        }
        if let Ok(c) = connect_from(from, SocketAddr::from(([127, 0, 0, 1], tcp_port))).await {
            tcp_ok += 1;
            flood.push(c);
        }
        if let Ok(c) = connect_from(from, SocketAddr::from(([127, 0, 0, 1], turn_port))).await {
            turn_ok += 1;
            flood.push(c);
        }
    }
    println!("flood: {http_ok} HTTP, {tcp_ok} ICE-TCP and {turn_ok} TURN TCP connections opened");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let result = async {
        let (status, body) = health(&http).await?;
        if status != 200 {
            return Err(format!("/health answered {status}: {body}"));
        }
        let token = parlor_signaling::AccessToken::for_join(
            KEY,
            SECRET,
            "real-fd",
            VideoGrant::join("dos-fd"),
            now_unix(),
            3600,
        );
        let join = tokio::spawn(async move { join_and_connect(&ws, &token, false).await });
        match tokio::time::timeout(Duration::from_secs(30), join).await {
            Ok(Ok(c)) => {
                c.leave().await;
                Ok(())
            }
            Ok(Err(e)) => Err(format!("join failed: {e}")),
            Err(_) => Err("join timed out".into()),
        }
    }
    .await;
    let fds = std::fs::read_dir(format!("/proc/{}/fd", child.id()))
        .map(|d| d.count())
        .unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
    let accept_errors = log.matches("accept").count();
    println!("server held {fds} descriptors; {accept_errors} log lines about accept");
    drop(flood);
    result.unwrap_or_else(|e| panic!("{e}\nserver log tail:\n{}", tail(&log)));
    assert!(fds < 1024, "descriptors exhausted: {fds}");
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
