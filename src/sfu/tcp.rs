//! ICE-TCP listener (passive candidates, RFC 6544) with RFC 4571 framing. Each accepted connection gets a
//! reader task that turns the byte stream into frames for the media worker and a writer task that frames
//! what the worker sends back. The worker sees frames exactly like UDP datagrams, tagged as TCP.
//!
//! Admission: the first frame must be a STUN request whose USERNAME's local part is the ufrag of a
//! *live* peer connection. Its first character names the media worker; that worker answers the
//! `Opened` event with accept/refuse (it owns the ufrag table, so nothing is shared or locked). A
//! connection is "bound" once the worker first sends on it, which the ICE agent only does after an
//! integrity-checked Binding request mapped the 4-tuple to a peer connection; one not bound within
//! `handshake_timeout` is closed. Connections are capped globally and per source IP (`ConnLimiter`);
//! at the global cap the oldest unbound connection is evicted. A bound connection lives until either
//! side closes it or its peer connection is dropped by the worker.

use crate::connlimit::{ConnGuard, ConnLimiter};
use rtc::shared::tcp_framing::{frame_packet, TcpFrameDecoder};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Largest RFC 4571 frame accepted (bigger frames close the connection).
const MAX_FRAME: usize = 1600;
/// Frames an unbound connection may send (ICE retransmits a handful of Binding requests).
const MAX_UNBOUND_FRAMES: usize = 64;

/// Caps and timeouts of the ICE-TCP listener (`[rtc] tcp_*` keys, bounded by the FD budget).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLimits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub handshake_timeout: Duration,
}

pub enum TcpEvent {
    /// A new connection whose first frame names `ufrag`. The worker answers on `admit` (true: the
    /// ufrag is live and the connection is registered with `writer`); `bound` fires on its first
    /// outgoing packet.
    Opened {
        addr: SocketAddr,
        writer: mpsc::Sender<Vec<u8>>,
        ufrag: String,
        admit: oneshot::Sender<bool>,
        bound: oneshot::Sender<()>,
    },
    Frame(SocketAddr, Vec<u8>),
    Closed(SocketAddr),
}

/// The worker's side of one admitted connection.
pub struct TcpConn {
    pub writer: mpsc::Sender<Vec<u8>>,
    /// Taken (and fired) on the first packet the worker sends on the connection.
    pub bound: Option<oneshot::Sender<()>>,
}

impl TcpConn {
    /// Queue one packet without blocking; false when the queue is full or the connection is gone.
    pub fn send(&mut self, pkt: Vec<u8>) -> bool {
        if let Some(b) = self.bound.take() {
            let _ = b.send(());
        }
        self.writer.try_send(pkt).is_ok()
    }
}

/// Bind and start accepting; returns the bound address.
pub async fn listen(
    addr: SocketAddr,
    workers: Vec<mpsc::Sender<TcpEvent>>,
    limits: TcpLimits,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let workers = Arc::new(workers);
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let limiter = ConnLimiter::new(
        "ice-tcp",
        limits.max_connections,
        limits.max_connections_per_ip,
    );
    tokio::spawn(async move {
        let mut errors = crate::fdlimit::AcceptErrors::new("ice-tcp");
        while let Some((stream, peer, guard)) = crate::connlimit::accept_admitted(
            &listener,
            &limiter,
            &mut errors,
            &shutdown,
            "ice-tcp",
        )
        .await
        {
            let (workers, shutdown) = (workers.clone(), shutdown.clone());
            tokio::spawn(async move {
                connection(stream, peer, guard, &workers, limits, shutdown).await;
            });
        }
    });
    Ok(local)
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    guard: ConnGuard,
    workers: &[mpsc::Sender<TcpEvent>],
    limits: TcpLimits,
    shutdown: CancellationToken,
) {
    let (mut rd, mut wr) = stream.into_split();
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(1024);
    let mut out_tx = Some(out_tx);
    // The worker this connection belongs to, known from its first frame.
    let mut to_worker: Option<&mpsc::Sender<TcpEvent>> = None;
    // Ends when the socket fails or the worker drops the connection (its peer connection is gone).
    let mut writer = tokio::spawn(async move {
        while let Some(pkt) = out_rx.recv().await {
            if wr.write_all(&frame_packet(&pkt)).await.is_err() {
                break;
            }
        }
    });
    let evicted = guard.evicted();
    let mut decoder = TcpFrameDecoder::new();
    let mut buf = vec![0u8; 4096];
    let mut bound_rx: Option<oneshot::Receiver<()>> = None;
    let mut bound = false;
    let mut unbound_frames = 0usize;
    let handshake = tokio::time::sleep(limits.handshake_timeout);
    tokio::pin!(handshake);
    let why = 'read: loop {
        let n = tokio::select! {
            _ = shutdown.cancelled() => break "shutdown",
            _ = &mut handshake, if !bound => break "no ICE binding before the handshake timeout",
            _ = evicted.cancelled(), if !bound => break "evicted (connection cap)",
            r = async { match bound_rx.as_mut() { Some(rx) => rx.await, None => std::future::pending().await } }, if !bound => {
                match r {
                    Ok(()) => {
                        bound = true;
                        guard.establish();
                        continue;
                    }
                    Err(_) => break "dropped by the media worker",
                }
            }
            _ = &mut writer => break "writer closed",
            r = rd.read(&mut buf) => match r {
                Ok(0) => break "closed by peer",
                Err(_) => break "read error",
                Ok(n) => n,
            },
        };
        decoder.extend_from_slice(&buf[..n]);
        if decoder.buffered_len() > MAX_FRAME + 2 && to_worker.is_none() {
            break "not ICE (oversized first frame)";
        }
        while let Some(frame) = decoder.next_packet() {
            if frame.len() > MAX_FRAME {
                break 'read "frame too large";
            }
            if !bound {
                unbound_frames += 1;
                if unbound_frames > MAX_UNBOUND_FRAMES {
                    break 'read "too many frames before a binding";
                }
            }
            let w = match to_worker {
                Some(w) => w,
                None => {
                    // Only a STUN request carrying one of our live ufrags may open the connection.
                    let Some(ufrag) = super::peer::is_stun(&frame)
                        .then(|| super::peer::stun_local_ufrag(&frame))
                        .flatten()
                    else {
                        break 'read "first frame is not a STUN request with a USERNAME";
                    };
                    let Some(w) = super::peer::worker_of_ufrag(ufrag).and_then(|i| workers.get(i))
                    else {
                        break 'read "ufrag names no media worker";
                    };
                    let Some(tx) = out_tx.take() else {
                        break 'read "internal: writer taken";
                    };
                    let (admit_tx, admit_rx) = oneshot::channel();
                    let (bound_tx, b_rx) = oneshot::channel();
                    let opened = TcpEvent::Opened {
                        addr: peer,
                        writer: tx,
                        ufrag: ufrag.to_owned(),
                        admit: admit_tx,
                        bound: bound_tx,
                    };
                    if w.send(opened).await.is_err() {
                        break 'read "media worker gone";
                    }
                    match tokio::time::timeout_at(handshake.deadline(), admit_rx).await {
                        Ok(Ok(true)) => {}
                        _ => break 'read "ufrag is not a live peer connection's",
                    }
                    to_worker = Some(w);
                    bound_rx = Some(b_rx);
                    w
                }
            };
            if w.send(TcpEvent::Frame(peer, frame)).await.is_err() {
                break 'read "media worker gone";
            }
        }
    };
    debug!(%peer, bound, reason = why, "ICE-TCP connection closed");
    writer.abort();
    if let Some(w) = to_worker {
        let _ = w.send(TcpEvent::Closed(peer)).await;
    }
    drop(guard);
}
