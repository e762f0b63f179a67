//! ICE-TCP listener (passive candidates, RFC 6544) with RFC 4571 framing. Each accepted connection gets a
//! reader task that turns the byte stream into frames for the media worker and a writer task that frames
//! what the worker sends back. The worker sees frames exactly like UDP datagrams, tagged as TCP.
//! With several media workers, the first frame (a STUN Binding request) names the worker: its
//! USERNAME starts with our ufrag, whose first character is the worker's index.

use rtc::shared::tcp_framing::{frame_packet, TcpFrameDecoder};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Connections accepted at once; more are refused until some close.
const MAX_CONNS: usize = 4096;
/// A connection that has not delivered a single frame by then is closed.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest RFC 4571 frame accepted (bigger frames close the connection).
const MAX_FRAME: usize = 1600;

pub enum TcpEvent {
    Opened(SocketAddr, mpsc::Sender<Vec<u8>>),
    Frame(SocketAddr, Vec<u8>),
    Closed(SocketAddr),
}

/// Bind and start accepting; returns the bound address.
pub async fn listen(
    addr: SocketAddr,
    workers: Vec<mpsc::Sender<TcpEvent>>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let workers = std::sync::Arc::new(workers);
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        let live = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            let Ok((stream, peer)) = accepted else {
                continue;
            };
            if live.load(std::sync::atomic::Ordering::Relaxed) >= MAX_CONNS {
                continue; // dropped: refused
            }
            let _ = stream.set_nodelay(true);
            live.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (workers, live, shutdown) = (workers.clone(), live.clone(), shutdown.clone());
            tokio::spawn(async move {
                connection(stream, peer, &workers, shutdown).await;
                live.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            });
        }
    });
    Ok(local)
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    workers: &[mpsc::Sender<TcpEvent>],
    shutdown: CancellationToken,
) {
    let (mut rd, mut wr) = stream.into_split();
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(1024);
    let mut out_tx = Some(out_tx);
    // The worker this connection belongs to, known from its first frame.
    let mut to_worker: Option<&mpsc::Sender<TcpEvent>> = None;
    let writer = tokio::spawn(async move {
        while let Some(pkt) = out_rx.recv().await {
            if wr.write_all(&frame_packet(&pkt)).await.is_err() {
                break;
            }
        }
    });
    let mut decoder = TcpFrameDecoder::new();
    let mut buf = vec![0u8; 4096];
    let mut got_frame = false;
    let deadline = tokio::time::sleep(FIRST_FRAME_TIMEOUT);
    tokio::pin!(deadline);
    'read: loop {
        let n = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = &mut deadline, if !got_frame => break,
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
        };
        decoder.extend_from_slice(&buf[..n]);
        if decoder.buffered_len() > MAX_FRAME + 2 && !got_frame {
            // A non-ICE client (or garbage): do not buffer it.
            break;
        }
        while let Some(frame) = decoder.next_packet() {
            if frame.len() > MAX_FRAME {
                break 'read;
            }
            got_frame = true;
            let w = match to_worker {
                Some(w) => w,
                None => {
                    // Only a STUN request carrying one of our ufrags may open the connection.
                    let Some(w) = super::peer::is_stun(&frame)
                        .then(|| super::peer::stun_local_ufrag(&frame))
                        .flatten()
                        .and_then(super::peer::worker_of_ufrag)
                        .and_then(|i| workers.get(i))
                    else {
                        break 'read;
                    };
                    let Some(tx) = out_tx.take() else {
                        break 'read;
                    };
                    if w.send(TcpEvent::Opened(peer, tx)).await.is_err() {
                        break 'read;
                    }
                    to_worker = Some(w);
                    w
                }
            };
            if w.send(TcpEvent::Frame(peer, frame)).await.is_err() {
                break 'read;
            }
        }
    }
    debug!(%peer, "ICE-TCP connection closed");
    writer.abort();
    if let Some(w) = to_worker {
        let _ = w.send(TcpEvent::Closed(peer)).await;
    }
}
