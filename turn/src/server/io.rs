//! Socket tasks: the UDP listener loop, the housekeeping sweep and the per-allocation relay
//! receive loop.

use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tracing::{debug, warn};

use super::{ClientSink, Ctx, FiveTuple, Shared, Transport, MAX_DATAGRAM, SWEEP_EVERY};

pub(super) async fn udp_loop(
    shared: Arc<Shared>,
    socket: Arc<UdpSocket>,
    mut stop: watch::Receiver<bool>,
) {
    let server = match socket.local_addr() {
        Ok(a) => a,
        Err(e) => {
            warn!(error = %e, "UDP listener has no local address");
            return;
        }
    };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, from) = tokio::select! {
            _ = stop.changed() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(v) => v,
                Err(e) => {
                    // ICMP port-unreachable surfaces here on some platforms; keep serving.
                    debug!(error = %e, "UDP listener recv error");
                    continue;
                }
            },
        };
        let ctx = Ctx {
            five: FiveTuple {
                client: from,
                server,
                transport: Transport::Udp,
            },
            sink: ClientSink::Udp {
                socket: socket.clone(),
                client: from,
            },
        };
        if let Some(reply) = shared.handle_packet(&ctx, &buf[..n]) {
            if let Err(e) = socket.send_to(&reply, from).await {
                debug!(error = %e, %from, "UDP reply failed");
            }
        }
    }
}

pub(super) async fn sweep_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => shared.sweep(),
        }
    }
}

pub(super) async fn relay_loop(
    shared: Arc<Shared>,
    five: FiveTuple,
    id: u64,
    relay: Arc<UdpSocket>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match relay.recv_from(&mut buf).await {
            Ok((n, peer)) => shared.on_peer_packet(&five, id, peer, &buf[..n]),
            Err(e) => debug!(error = %e, "relay recv error"),
        }
    }
}
