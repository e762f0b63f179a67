//! The HTTP/WebSocket listener: accepts under a connection cap (global and per source IP, see
//! `connlimit`), serves each connection with hyper's HTTP/1 server (WebSocket upgrades included)
//! with a header-read timeout against slow-header clients, and closes connections on which nothing
//! has moved for the idle timeout. A connection counts against the caps for as long as its socket
//! is open, also after a WebSocket upgrade (the guard travels inside the socket wrapper).

use crate::connlimit::{ConnGuard, ConnLimiter};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;
use tracing::debug;

/// Caps and timeouts of the HTTP listener (`[limits] http_*`, bounded by the FD budget).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Serve `app` on `listener` until `shutdown`; then stop accepting, ask every connection to finish
/// its in-flight request and return once they have (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    let limiter = ConnLimiter::new(
        "http",
        limits.max_connections,
        limits.max_connections_per_ip,
    );
    let tracker = TaskTracker::new();
    let mut errors = crate::fdlimit::AcceptErrors::new("http");
    while let Some((stream, peer, guard)) =
        crate::connlimit::accept_admitted(&listener, &limiter, &mut errors, &shutdown, "http").await
    {
        tracker.spawn(connection(
            stream,
            peer,
            guard,
            app.clone(),
            limits,
            shutdown.clone(),
        ));
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    guard: ConnGuard,
    app: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    let activity = Arc::new(AtomicU64::new(0));
    let evicted = guard.evicted();
    let establish = guard.establisher();
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
        _guard: guard,
    });
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        // A complete request head arrived: no longer evicted to make room.
        establish.mark();
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        app.clone().call(req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let conn = builder.serve_connection(io, svc).with_upgrades();
    tokio::pin!(conn);
    let idle = limits.idle_timeout.max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(idle / 4);
    let mut last = (0u64, tokio::time::Instant::now());
    let mut draining = false;
    let why = loop {
        tokio::select! {
            r = conn.as_mut() => break match r {
                Ok(()) => "done",
                Err(e) if e.is_timeout() => "header read timeout",
                Err(_) => "error",
            },
            _ = shutdown.cancelled(), if !draining => {
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
            _ = evicted.cancelled() => break "evicted (connection cap)",
            now = tick.tick() => {
                let a = activity.load(Ordering::Relaxed);
                if a != last.0 {
                    last = (a, now);
                } else if now.duration_since(last.1) >= idle {
                    break "idle timeout";
                }
            }
        }
    };
    debug!(%peer, reason = why, "HTTP connection ended");
}

/// The socket with an activity counter (read by the idle check) and the connection's cap slot.
struct Tracked {
    inner: TcpStream,
    activity: Arc<AtomicU64>,
    _guard: ConnGuard,
}

impl Tracked {
    fn touch(&self) {
        self.activity.fetch_add(1, Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
