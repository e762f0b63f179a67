//! The media worker driven synchronously for fuzzing (`crate::fuzzing` holds the bodies): a real
//! [`Worker`] with one joined participant, fed signal commands and datagrams directly, without its
//! thread and event loop. It never sends: whatever the peer connections write is discarded, so
//! no fuzz packet leaves the process.

use super::*;
use crate::metrics::Metrics;
use crate::sfu::SfuHandle;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The remote address the harness's datagrams come from (registered on the publisher PC).
pub const FUZZ_FROM: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10)),
    50_000,
);
const ROOM: &str = "fuzz-room";
/// Inputs after which the participant is replaced (bounds state carried between inputs).
const REJOIN_EVERY: u64 = 512;

pub struct FuzzWorker {
    rt: Arc<tokio::runtime::Runtime>,
    w: Worker,
    pid: Option<Pid>,
    events: Option<mpsc::Receiver<Out>>,
    inputs: u64,
    /// Apply this offer on (re)join, so ICE and DTLS are set up for datagrams.
    offer: Option<String>,
}

impl FuzzWorker {
    /// `offer`: a publisher offer applied on every (re)join.
    pub fn new(offer: Option<String>) -> std::io::Result<Self> {
        let rt = Arc::new(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        );
        let std_socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let local_addr = std_socket.local_addr()?;
        let socket = {
            let _in_runtime = rt.enter();
            crate::sfu::recvmmsg::media_socket(std_socket)?
        };
        let w = Worker::new(
            0,
            socket,
            local_addr,
            None,
            WorkerConfig {
                workers: 1,
                realtime_priority: 0,
                candidate_ip: local_addr.ip(),
                tcp_bind: None,
                max_participants: 8,
                max_rooms: 2,
                empty_timeout: Duration::from_secs(60),
                remote_unmute: false,
                tcp_limits: crate::sfu::tcp::TcpLimits {
                    max_connections: 16,
                    max_connections_per_ip: 16,
                    handshake_timeout: Duration::from_secs(10),
                },
            },
            SfuHandle::new(),
            Arc::new(Metrics::default()),
            crate::clock::system(),
        )?;
        Ok(Self {
            rt,
            w,
            pid: None,
            events: None,
            inputs: 0,
            offer,
        })
    }

    /// The participant, (re)joined if needed, at this input's `now`.
    fn joined(&mut self, now: Instant) -> Option<Pid> {
        self.inputs += 1;
        if self.inputs.is_multiple_of(REJOIN_EVERY) {
            if let Some(pid) = self.pid.take() {
                self.w.remove_participant(pid, now);
            }
        }
        if let Some(pid) = self.pid.filter(|p| self.w.parts.contains_key(p)) {
            return Some(pid);
        }
        let (tx, rx) = mpsc::channel(4096);
        let req = JoinReq {
            room: ROOM.into(),
            identity: "fuzzer".into(),
            name: "Fuzzer".into(),
            metadata: String::new(),
            attributes: Default::default(),
            perms: Perms {
                can_publish: true,
                can_subscribe: true,
                can_publish_data: true,
                can_update_metadata: false,
            },
            auto_subscribe: true,
            events: tx,
            kind: proto::participant_info::Kind::Standard,
            single_pc: false,
            local: None,
            hidden: false,
            open_as: None,
        };
        let joined = self.w.join(req, now).ok()?;
        let pid = joined.pid;
        self.pid = Some(pid);
        self.events = Some(rx);
        if let Some(sdp) = self.offer.clone() {
            self.w.on_publisher_offer(
                pid,
                proto::SessionDescription {
                    r#type: "offer".into(),
                    sdp,
                    ..Default::default()
                },
                now,
            );
        }
        let pub_pc = self.w.parts.get(&pid)?.pub_pc;
        self.w.by_addr.insert((FUZZ_FROM, false), pub_pc);
        self.w.by_addr.insert((FUZZ_FROM, true), pub_pc);
        Some(pid)
    }

    /// Drop what the worker produced: session messages and datagrams.
    fn drain(&mut self) {
        if let Some(rx) = &mut self.events {
            while rx.try_recv().is_ok() {}
        }
        self.w.batch = Default::default();
    }

    /// One command from the participant's signal session.
    pub fn signal(&mut self, msg: SignalIn) {
        let rt = self.rt.clone();
        let _guard = rt.enter();
        // One wake-up per input, as the worker's loop does.
        let now = self.w.wake();
        if let Some(pid) = self.joined(now) {
            self.w.on_signal(pid, msg, now);
        }
        self.w.disconnect_overflowed(now);
        self.drain();
    }

    /// One datagram into the worker's receive path, from `FUZZ_FROM` (known to the publisher PC)
    /// or from an unknown address (admitted only by STUN carrying a local ufrag).
    pub fn datagram(&mut self, data: &[u8], known: bool, tcp: bool) {
        let rt = self.rt.clone();
        let _guard = rt.enter();
        let now = self.w.wake();
        if self.joined(now).is_none() {
            return;
        }
        let from = if known {
            FUZZ_FROM
        } else {
            SocketAddr::new(FUZZ_FROM.ip(), 50_001)
        };
        self.w.on_datagram(data, from, tcp, now);
        self.w.on_timers(now);
        self.w.disconnect_overflowed(now);
        self.drain();
    }
}
