//! Shared helpers for the integration tests: server start-up, external-tool lookup, and a raw
//! TURN test client built on webrtc-rs's STUN/TURN codec (`rtc::stun`, `rtc::turn::proto`), an
//! implementation independent of the server's own codec.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parlor_turn::{ManualClock, TurnConfig, TurnServer};
use rtc::crypto::RTCCryptoProvider;
use rtc::stun::attributes::*;
use rtc::stun::error_code::ErrorCodeAttribute;
use rtc::stun::integrity::MessageIntegrity;
use rtc::stun::message::*;
use rtc::stun::textattrs::TextAttribute;
use rtc::stun::xoraddr::XorMappedAddress;
use rtc::turn::proto::channum::ChannelNumber;
use rtc::turn::proto::data::Data;
use rtc::turn::proto::lifetime::Lifetime;
use rtc::turn::proto::peeraddr::PeerAddress;
use rtc::turn::proto::reqtrans::RequestedTransport;
use rtc::turn::proto::PROTO_UDP;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

pub const REALM: &str = "parlor.test";
pub const SECRET: &str = "test-shared-secret";

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A manual clock starting at the real current time (coturn compares expiry with its own
/// wall clock, so minted credentials must be realistic).
pub fn real_time_manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(unix_now()))
}

pub async fn start(cfg: TurnConfig, clock: Arc<ManualClock>) -> TurnServer {
    TurnServer::start(cfg, clock).await.unwrap()
}

/// Locate an external binary. Missing: panic when `CI` is set, otherwise `None` with a message.
pub fn require_tool(name: &str, apt_package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    match found {
        Some(p) => Some(p),
        None if std::env::var_os("CI").is_some() => {
            panic!("`{name}` not found but CI is set: install the Debian package `{apt_package}`")
        }
        None => {
            eprintln!("SKIPPED: `{name}` not found (apt-get install {apt_package})");
            None
        }
    }
}

/// Run a command with a hard upper bound on its duration (a hang guard, not an assertion).
pub async fn run_bounded(mut cmd: tokio::process::Command, limit: Duration) -> Output {
    cmd.kill_on_drop(true);
    match tokio::time::timeout(limit, cmd.output()).await {
        Ok(out) => out.unwrap(),
        Err(_) => panic!("command did not finish within {limit:?}: {cmd:?}"),
    }
}

/// What `turnutils_uclient` reported.
#[derive(Debug)]
pub struct UclientResult {
    pub success: bool,
    pub sent: u64,
    pub received: u64,
    pub lost: Option<u64>,
    pub output: String,
}

/// `turnutils_uclient` in client-to-client mode (`-y`): two allocations on the server relay
/// `messages` packets to each other.
pub async fn uclient(
    bin: &PathBuf,
    port: u16,
    username: &str,
    password: &str,
    extra: &[&str],
    messages: u32,
) -> UclientResult {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(extra)
        .args(["-y", "-n", &messages.to_string(), "-l", "120", "-m", "1"])
        .args(["-u", username, "-w", password, "-p", &port.to_string()])
        .arg("127.0.0.1");
    let out = run_bounded(cmd, Duration::from_secs(60)).await;
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let last_num = |key: &str| -> Option<u64> {
        output.lines().rev().find_map(|l| {
            let i = l.find(key)?;
            let rest = &l[i + key.len()..];
            let digits: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            digits.parse().ok()
        })
    };
    UclientResult {
        success: out.status.success(),
        sent: last_num("tot_send_msgs=").unwrap_or(0),
        received: last_num("tot_recv_msgs=").unwrap_or(0),
        lost: last_num("Total lost packets"),
        output,
    }
}

/// A reserved-then-released ephemeral port (UDP and TCP free at the time of the call).
pub fn free_port() -> u16 {
    loop {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw TURN client over UDP (webrtc-rs codec)
// ---------------------------------------------------------------------------------------------

pub struct RawClient {
    pub sock: UdpSocket,
    /// Set for a client on the TCP listener (then `sock` is unused).
    pub tcp: Option<TcpStream>,
    pub server: SocketAddr,
    pub username: String,
    pub password: String,
    pub realm: Option<String>,
    pub nonce: Option<String>,
    crypto: Arc<dyn RTCCryptoProvider>,
    /// Data indications / ChannelData seen while waiting for responses.
    pub stray: Vec<Vec<u8>>,
}

/// A decoded response.
#[derive(Debug)]
pub struct Resp {
    pub class: MessageClass,
    pub error: Option<u16>,
    pub msg: Message,
}

impl Resp {
    pub fn is_success(&self) -> bool {
        self.class == CLASS_SUCCESS_RESPONSE
    }
    pub fn xor_addr(&self, t: AttrType) -> SocketAddr {
        let mut a = XorMappedAddress::default();
        a.get_from_as(&self.msg, t).unwrap();
        SocketAddr::new(a.ip, a.port)
    }
    pub fn lifetime(&self) -> Duration {
        let mut l = Lifetime::default();
        l.get_from(&self.msg).unwrap();
        l.0
    }
}

pub enum Attr {
    Transport,
    Lifetime(u32),
    Peer(SocketAddr),
    Channel(u16),
    Data(Vec<u8>),
    /// Any attribute by type and value (EVEN-PORT, RESERVATION-TOKEN, ...).
    Raw(u16, Vec<u8>),
}

impl RawClient {
    pub async fn new(server: SocketAddr, username: &str, password: &str) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        Self {
            sock,
            tcp: None,
            server,
            username: username.to_owned(),
            password: password.to_owned(),
            realm: None,
            nonce: None,
            crypto: rtc::crypto::default_provider().unwrap(),
            stray: Vec::new(),
        }
    }

    /// A client on the server's TCP listener (RFC 6062 framing).
    pub async fn new_tcp(server: SocketAddr, username: &str, password: &str) -> Self {
        let mut c = Self::new(server, username, password).await;
        c.tcp = Some(TcpStream::connect(server).await.unwrap());
        c
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        match &mut self.tcp {
            Some(t) => t.write_all(bytes).await.unwrap(),
            None => {
                self.sock.send_to(bytes, self.server).await.unwrap();
            }
        }
    }

    /// The next datagram (UDP) or frame (TCP: STUN by its length, ChannelData padded to 4).
    /// `None` when the TCP connection was closed by the server.
    pub async fn recv_raw(&mut self) -> Option<Vec<u8>> {
        let fut = async {
            match &mut self.tcp {
                None => {
                    let mut buf = vec![0u8; 2048];
                    let (n, _) = self.sock.recv_from(&mut buf).await.unwrap();
                    Some(buf[..n].to_vec())
                }
                Some(t) => {
                    let mut head = [0u8; 4];
                    if t.read_exact(&mut head).await.is_err() {
                        return None;
                    }
                    let len = u16::from_be_bytes([head[2], head[3]]) as usize;
                    let body = if (0x40..=0x7f).contains(&head[0]) {
                        len.div_ceil(4) * 4
                    } else {
                        16 + len
                    };
                    let mut frame = head.to_vec();
                    frame.resize(4 + body, 0);
                    t.read_exact(&mut frame[4..]).await.ok()?;
                    Some(frame)
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), fut)
            .await
            .expect("nothing received from the TURN server")
    }

    fn build(&self, method: Method, class: MessageClass, attrs: &[Attr], auth: bool) -> Message {
        let mut setters: Vec<Box<dyn Setter + '_>> = vec![
            Box::new(MessageType::new(method, class)),
            Box::new(TransactionId::new()),
        ];
        for a in attrs {
            match a {
                Attr::Transport => setters.push(Box::new(RequestedTransport {
                    protocol: PROTO_UDP,
                })),
                Attr::Lifetime(s) => {
                    setters.push(Box::new(Lifetime(Duration::from_secs(u64::from(*s)))))
                }
                Attr::Peer(p) => setters.push(Box::new(PeerAddress {
                    ip: p.ip(),
                    port: p.port(),
                })),
                Attr::Channel(c) => setters.push(Box::new(ChannelNumber(*c))),
                Attr::Data(d) => setters.push(Box::new(Data(d.clone()))),
                Attr::Raw(t, v) => setters.push(Box::new(RawAttribute {
                    typ: AttrType(*t),
                    length: 0,
                    value: v.clone(),
                })),
            }
        }
        if auth {
            let realm = self.realm.clone().unwrap_or_default();
            setters.push(Box::new(TextAttribute::new(
                ATTR_USERNAME,
                self.username.clone(),
            )));
            setters.push(Box::new(TextAttribute::new(ATTR_REALM, realm.clone())));
            setters.push(Box::new(TextAttribute::new(
                ATTR_NONCE,
                self.nonce.clone().unwrap_or_default(),
            )));
            setters.push(Box::new(
                MessageIntegrity::new_long_term_integrity_with_provider(
                    self.username.clone(),
                    realm,
                    self.password.clone(),
                    self.crypto.crypto(),
                )
                .unwrap(),
            ));
        }
        let mut m = Message::new();
        m.build(&setters).unwrap();
        m
    }

    async fn roundtrip(&mut self, m: &Message) -> Resp {
        self.send_raw(&m.raw).await;
        loop {
            let buf = self
                .recv_raw()
                .await
                .expect("TURN server closed the connection");
            let n = buf.len();
            let mut r = Message::new();
            if r.unmarshal_binary(&buf[..n]).is_err() || r.transaction_id != m.transaction_id {
                self.stray.push(buf[..n].to_vec());
                continue;
            }
            let error = if r.typ.class == CLASS_ERROR_RESPONSE {
                let mut ec = ErrorCodeAttribute::default();
                ec.get_from(&r).unwrap();
                Some(ec.code.0)
            } else {
                None
            };
            if let Ok(n) = TextAttribute::get_from_as(&r, ATTR_NONCE) {
                self.nonce = Some(n.text);
            }
            if let Ok(realm) = TextAttribute::get_from_as(&r, ATTR_REALM) {
                self.realm = Some(realm.text);
            }
            return Resp {
                class: r.typ.class,
                error,
                msg: r,
            };
        }
    }

    /// Authenticated request, doing the 401 / 438 nonce dance as needed.
    pub async fn request(&mut self, method: Method, attrs: &[Attr]) -> Resp {
        if self.nonce.is_none() {
            let m = self.build(method, CLASS_REQUEST, attrs, false);
            let r = self.roundtrip(&m).await;
            if r.error != Some(401) {
                return r;
            }
        }
        let m = self.build(method, CLASS_REQUEST, attrs, true);
        let r = self.roundtrip(&m).await;
        if r.error == Some(438) {
            let m = self.build(method, CLASS_REQUEST, attrs, true);
            return self.roundtrip(&m).await;
        }
        r
    }

    /// Unauthenticated request (first leg of the challenge).
    pub async fn request_unauthenticated(&mut self, method: Method, attrs: &[Attr]) -> Resp {
        let m = self.build(method, CLASS_REQUEST, attrs, false);
        self.roundtrip(&m).await
    }

    pub async fn allocate(&mut self) -> Resp {
        self.request(METHOD_ALLOCATE, &[Attr::Transport]).await
    }

    pub async fn send_indication(&mut self, peer: SocketAddr, data: &[u8]) {
        let m = self.build(
            METHOD_SEND,
            CLASS_INDICATION,
            &[Attr::Peer(peer), Attr::Data(data.to_vec())],
            false,
        );
        self.send_raw(&m.raw).await;
    }

    pub async fn channel_data(&mut self, channel: u16, data: &[u8]) {
        let mut v = channel.to_be_bytes().to_vec();
        v.extend_from_slice(&(data.len() as u16).to_be_bytes());
        v.extend_from_slice(data);
        if self.tcp.is_some() {
            v.resize(v.len().div_ceil(4) * 4, 0);
        }
        self.send_raw(&v).await;
    }

    /// A Binding round trip: the server handles a client's packets in order, so once this
    /// returns every packet sent before it has been processed.
    pub async fn barrier(&mut self) {
        let m = self.build(METHOD_BINDING, CLASS_REQUEST, &[], false);
        let r = self.roundtrip(&m).await;
        assert!(r.is_success());
    }

    /// Next relayed packet from the server (Data indication or ChannelData), as (peer or
    /// channel, payload).
    pub async fn recv_relayed(&mut self) -> (Option<SocketAddr>, Option<u16>, Vec<u8>) {
        let pkt = if self.stray.is_empty() {
            self.recv_raw().await.expect("connection closed")
        } else {
            self.stray.remove(0)
        };
        if (0x40..=0x7f).contains(&pkt[0]) {
            let ch = u16::from_be_bytes([pkt[0], pkt[1]]);
            let len = u16::from_be_bytes([pkt[2], pkt[3]]) as usize;
            return (None, Some(ch), pkt[4..4 + len].to_vec());
        }
        let mut m = Message::new();
        m.unmarshal_binary(&pkt).unwrap();
        assert_eq!(m.typ, MessageType::new(METHOD_DATA, CLASS_INDICATION));
        let mut p = PeerAddress::default();
        p.get_from(&m).unwrap();
        let mut d = Data::default();
        d.get_from(&m).unwrap();
        (Some(SocketAddr::new(p.ip, p.port)), None, d.0)
    }
}

/// Non-blocking check that nothing is queued on `sock`.
pub fn nothing_queued(sock: &UdpSocket) -> bool {
    let mut buf = [0u8; 2048];
    matches!(sock.try_recv_from(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Raise this process's open-file soft limit to its hard limit (flood tests open thousands).
pub fn raise_nofile_limit() -> libc::rlim_t {
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

/// Open file descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}
