//! The worker's thread shell: starting the workers (one OS thread and current-thread runtime each),
//! the event loop that waits on the socket, ICE-TCP frames, control commands, in-process
//! participants' RTP (its own lossy queue) and timers, and the dispatch of commands. The loop is
//! where time is read: once per wake-up, passed down as `now`.

use super::*;
use crate::metrics::Metrics;
use crate::sfu::SfuHandle;
use parlor_signaling::protocol::{leave_response, proto};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// Start the media workers: `cfg.workers` threads, each with its own single-threaded runtime, UDP
/// socket and rooms (worker `i` binds `bind.port() + i`, or an ephemeral port when it is 0). One
/// ICE-TCP listener (if configured) hands each connection to the worker its ufrag names.
pub async fn spawn_workers(
    bind: SocketAddr,
    cfg: WorkerConfig,
    sfu: SfuHandle,
    metrics: Arc<Metrics>,
    clock: crate::clock::SharedClock,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<Vec<WorkerHandle>> {
    let n = cfg.workers.clamp(1, MAX_WORKERS);
    let mut tcp_txs = Vec::with_capacity(n);
    let mut tcp_rxs = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = mpsc::channel(4096);
        tcp_txs.push(tx);
        tcp_rxs.push(rx);
    }
    let tcp_local = match cfg.tcp_bind {
        Some(addr) => {
            Some(crate::sfu::tcp::listen(addr, tcp_txs, cfg.tcp_limits, shutdown.clone()).await?)
        }
        None => None,
    };
    let mut handles = Vec::with_capacity(n);
    for (index, tcp_rx) in tcp_rxs.into_iter().enumerate() {
        let port = if bind.port() == 0 {
            0
        } else {
            u16::try_from(bind.port() as usize + index)
                .map_err(|_| std::io::Error::other("rtc.udp_port + rtc.workers exceeds 65535"))?
        };
        let handle = Worker::spawn(
            index,
            SocketAddr::new(bind.ip(), port),
            tcp_local,
            tcp_rx,
            cfg.clone(),
            sfu.clone(),
            metrics.clone(),
            clock.clone(),
            shutdown.clone(),
        )?;
        handles.push(handle);
    }
    Ok(handles)
}

/// Put the calling thread under SCHED_FIFO at `priority` (clamped to 1..=99); logs and carries on
/// with normal scheduling when not permitted.
fn set_realtime_priority(index: usize, priority: u8) {
    let param = libc::sched_param {
        sched_priority: i32::from(priority.clamp(1, 99)),
    };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if r == 0 {
        info!(
            worker = index,
            priority, "media worker runs under SCHED_FIFO"
        );
    } else {
        warn!(
            worker = index,
            priority,
            error = %std::io::Error::last_os_error(),
            "could not set realtime priority (needs CAP_SYS_NICE); normal scheduling"
        );
    }
}

impl Worker {
    /// One worker on its own OS thread: a current-thread runtime drives its socket, timers and
    /// channels, so a burst of packets is handled where it arrives (no hand-off between runtime
    /// threads, no contention with HTTP/signaling tasks).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn spawn(
        index: usize,
        bind: SocketAddr,
        tcp_local: Option<SocketAddr>,
        tcp_rx: mpsc::Receiver<crate::sfu::tcp::TcpEvent>,
        cfg: WorkerConfig,
        sfu: SfuHandle,
        metrics: Arc<Metrics>,
        clock: crate::clock::SharedClock,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> std::io::Result<WorkerHandle> {
        let std_socket = std::net::UdpSocket::bind(bind)?;
        std_socket.set_nonblocking(true)?;
        // Every peer of this worker shares this socket: the default receive buffer (~200 KiB, a few
        // hundred small datagrams) overflows after a ~100 ms scheduling stall at a few thousand
        // packets/s. Ask for 4 MiB each way (the kernel caps it at net.core.{r,w}mem_max).
        let sock = socket2::SockRef::from(&std_socket);
        let _ = sock.set_recv_buffer_size(UDP_BUFFER_BYTES);
        let _ = sock.set_send_buffer_size(UDP_BUFFER_BYTES);
        debug!(
            worker = index,
            rcvbuf = sock.recv_buffer_size().unwrap_or(0),
            sndbuf = sock.send_buffer_size().unwrap_or(0),
            "media socket buffers"
        );
        let local_addr = std_socket.local_addr()?;
        let candidate_addr = SocketAddr::new(cfg.candidate_ip, local_addr.port());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (tx, rx) = mpsc::channel(1024);
        // In-process participants' RTP has its own (lossy) queue: control never waits behind media.
        let (media, media_rx) = mpsc::channel(LOCAL_MEDIA_QUEUE);
        std::thread::Builder::new()
            .name(format!("parlor-media-{index}"))
            .spawn(move || {
                if cfg.realtime_priority > 0 {
                    set_realtime_priority(index, cfg.realtime_priority);
                }
                runtime.block_on(async move {
                    let socket = match crate::sfu::recvmmsg::media_socket(std_socket) {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::error!(worker = index, error = %e, "media socket");
                            return;
                        }
                    };
                    let w = Worker::new(
                        index,
                        socket,
                        candidate_addr,
                        tcp_local,
                        cfg,
                        sfu,
                        metrics,
                        clock,
                    );
                    match w {
                        Ok(w) => w.run(rx, media_rx, tcp_rx, shutdown).await,
                        Err(e) => tracing::error!(worker = index, error = %e, "media worker"),
                    }
                });
            })?;
        Ok(WorkerHandle {
            tx,
            media,
            udp_addr: local_addr,
        })
    }

    pub(super) async fn run(
        mut self,
        mut rx: mpsc::Receiver<Cmd>,
        mut media_rx: mpsc::Receiver<LocalPacket>,
        mut tcp_rx: mpsc::Receiver<crate::sfu::tcp::TcpEvent>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        info!(worker = self.index, udp = %self.local_addr, candidate = %self.candidate_addr, "media worker started");
        // Every datagram queued at a wake-up, in one recvmmsg (buffers allocated once).
        let mut recv = crate::sfu::recvmmsg::RecvBatch::new();
        let mut housekeeping = tokio::time::interval(Duration::from_millis(250));
        // With ICE-TCP off the channel's sender is gone: never poll a closed channel in a loop.
        let mut tcp_enabled = self.tcp_local.is_some();
        let mut media_open = true;
        let mut now = self.wake();
        // Per-wake cost (issue 21): the loop wakes about once per inbound packet under load, so the
        // futures that live across iterations are made once. A `cancelled()` future registers with
        // the token's waiter list (a mutex) when polled and unregisters when dropped; the timer is
        // one `Sleep`, moved in the timer wheel only when the deadline changes.
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        let mut timer_at = now + Duration::from_secs(1);
        let timer = tokio::time::sleep_until(tokio::time::Instant::from_std(timer_at));
        tokio::pin!(timer);
        let mut timer_fired = false;
        loop {
            // With no peer-connection deadline, look again a second after this wake-up. A deadline
            // is met up to TIMER_SLACK late, so that deadlines close together share one wake-up
            // (the timers are RTCP reports, NACK scans, ICE checks: a millisecond does not matter).
            let sleep_until = self
                .earliest()
                .map_or(now + Duration::from_secs(1), |t| t + TIMER_SLACK);
            // An idle worker's one-second look-ahead is not moved forward on every wake-up: only an
            // earlier deadline, or a timer that fired (a completed `Sleep` stays ready), resets it. A
            // later deadline costs at most one early wake-up.
            if timer_fired || sleep_until < timer_at {
                timer_fired = false;
                timer_at = sleep_until;
                timer
                    .as_mut()
                    .reset(tokio::time::Instant::from_std(timer_at));
            }
            let wake = tokio::select! {
                biased;
                _ = &mut cancelled => break,
                res = self.socket.readable() => Wake::Udp(res.map(drop)),
                ev = tcp_rx.recv(), if tcp_enabled => Wake::Tcp(ev),
                cmd = rx.recv() => match cmd {
                    Some(cmd) => Wake::Cmd(cmd),
                    None => break,
                },
                pkt = media_rx.recv(), if media_open => Wake::Media(pkt),
                _ = &mut timer => Wake::Timer,
                _ = housekeeping.tick() => Wake::Housekeeping,
            };
            // The one clock read of this wake-up: everything below takes `now` as an argument.
            now = self.wake();
            match wake {
                Wake::Udp(Ok(())) => {
                    // Drain what is queued before going back to select!: one wake-up (and one
                    // timer registration) per burst instead of per datagram, one recvmmsg per
                    // CAPACITY datagrams, and no call that only finds the queue empty (a short
                    // read clears the readiness). At most RECV_BATCH datagrams per wake-up, so
                    // commands and timers are not starved.
                    for _ in 0..RECV_BATCH.div_ceil(crate::sfu::recvmmsg::RecvBatch::CAPACITY) {
                        let n = match recv.recv(&self.socket) {
                            Ok(n) => n,
                            Err(e) => {
                                if e.kind() != std::io::ErrorKind::WouldBlock {
                                    debug!(error = %e, "udp recv error");
                                }
                                break;
                            }
                        };
                        for i in 0..n {
                            if let Some((data, from)) = recv.get(i) {
                                self.on_datagram(data, from, false, now);
                                // Each packet's fan-out leaves before the next is handled.
                                self.send_batch();
                            }
                        }
                        if n < crate::sfu::recvmmsg::RecvBatch::CAPACITY {
                            break;
                        }
                    }
                }
                Wake::Udp(Err(e)) => debug!(error = %e, "udp recv error"),
                Wake::Tcp(Some(crate::sfu::tcp::TcpEvent::Opened {
                    addr,
                    writer,
                    ufrag,
                    admit,
                    bound,
                })) => {
                    // Admitted only for a live peer connection's ufrag (no lock: this worker owns them).
                    let live = self.by_ufrag.contains_key(&ufrag);
                    if live {
                        Metrics::inc(&self.metrics.ice_tcp_connections);
                        self.tcp_conns.insert(
                            addr,
                            crate::sfu::tcp::TcpConn {
                                writer,
                                bound: Some(bound),
                            },
                        );
                    }
                    let _ = admit.send(live);
                }
                Wake::Tcp(Some(crate::sfu::tcp::TcpEvent::Frame(addr, frame))) => {
                    Metrics::inc(&self.metrics.ice_tcp_frames_in);
                    self.on_datagram(&frame, addr, true, now);
                }
                Wake::Tcp(Some(crate::sfu::tcp::TcpEvent::Closed(addr))) => {
                    self.tcp_conns.remove(&addr);
                    // Free the peer connection's address slot too (a closed half-open connection
                    // must not use up one of its 8).
                    if let Some(id) = self.by_addr.remove(&(addr, true)) {
                        if let Some(pc) = self.pcs.get_mut(&id) {
                            pc.addrs.retain(|a| *a != (addr, true));
                        }
                    }
                }
                Wake::Tcp(None) => tcp_enabled = false,
                Wake::Cmd(cmd) => self.on_cmd(cmd, now),
                Wake::Media(Some(pkt)) => self.on_local_rtp(pkt, now),
                Wake::Media(None) => media_open = false,
                Wake::Timer => timer_fired = true,
                Wake::Housekeeping => self.housekeeping(now),
            }
            // Due timers run on whatever woke the worker: under a steady packet stream the UDP arm
            // (polled first) would otherwise starve the timer arm, and a timer due meanwhile costs
            // no wake-up of its own.
            if self.earliest().is_some_and(|t| t <= now) {
                self.on_timers(now);
            }
            self.disconnect_overflowed(now);
            self.send_batch();
        }
        let now = self.wake();
        let pids: Vec<Pid> = self.parts.keys().copied().collect();
        for pid in pids {
            self.send_out(
                pid,
                sig(leave_response(
                    proto::DisconnectReason::ServerShutdown,
                    proto::leave_request::Action::Disconnect,
                )),
            );
            self.remove_participant(pid, now);
        }
        self.send_batch();
        self.counters.flush(&self.metrics);
        info!(worker = self.index, "media worker stopped");
    }

    /// One RTP packet of an in-process participant's track, forwarded like a publisher's; only the
    /// owner's own tracks (a participant cannot inject into another's track).
    pub(super) fn on_local_rtp(&mut self, pkt: LocalPacket, now: Instant) {
        let owns = self
            .parts
            .get(&pkt.pid)
            .is_some_and(|p| p.local.is_some() && p.tracks.iter().any(|t| **t == *pkt.track_sid));
        if owns {
            self.forward_track(pkt.pid, &pkt.track_sid, pkt.rtp, now);
        }
    }

    /// Read the clock (the server's `SharedClock`): the monotonic `now` this wake-up's handlers get as
    /// an argument, and the wall-clock time of the same instant for the timestamps the control path
    /// reports (`now_ms`). Called once per wake-up by the loop (and by the fuzz harness per input).
    pub(super) fn wake(&mut self) -> Instant {
        self.wake_unix_ms = self.clock.unix_ms();
        self.clock.now()
    }

    pub(super) fn on_cmd(&mut self, cmd: Cmd, now: Instant) {
        match cmd {
            Cmd::Join(req, reply) => {
                let res = self.join(*req, now);
                let _ = reply.send(res);
            }
            Cmd::Signal(pid, msg) => self.on_signal(pid, *msg, now),
            Cmd::Leave(pid) => self.remove_participant(pid, now),
            Cmd::LocalPublish(pid, req, reply) => {
                let res = self.local_publish(pid, req, now);
                let _ = reply.send(res);
            }
            Cmd::LocalData(pid, packet) => self.relay_data(pid, *packet, true, now),
            Cmd::Remove {
                room,
                identity,
                reason,
                reply,
            } => {
                let _ = reply.send(self.remove_identity(&room, &identity, reason, now));
            }
            Cmd::ServerData {
                room,
                packet,
                reliable,
                reply,
            } => {
                let _ = reply.send(self.server_data(&room, *packet, reliable, now));
            }
            Cmd::Admin { room, op, reply } => {
                let _ = reply.send(self.admin(&room, op, now));
            }
            Cmd::Participants { room, reply } => {
                let _ = reply.send(self.room_participant_infos(&room));
            }
            Cmd::CloseRoom {
                room,
                reason,
                moved,
                reply,
            } => {
                let _ = reply.send(self.close_room(&room, reason, moved, now));
            }
        }
    }
}

/// How late a peer-connection deadline may be met (see the loop's sleep).
const TIMER_SLACK: Duration = Duration::from_millis(1);

/// What woke the worker's loop up.
enum Wake {
    Udp(std::io::Result<()>),
    Tcp(Option<crate::sfu::tcp::TcpEvent>),
    Cmd(Cmd),
    Media(Option<LocalPacket>),
    Timer,
    Housekeeping,
}
