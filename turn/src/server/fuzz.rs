//! The message-handling entry without listeners, for `crate::fuzzing`: packets go to
//! `Shared::handle_packet` exactly as the UDP and TCP loops pass them.

use super::{ClientSink, Ctx, FiveTuple, Shared, Transport, TCP_QUEUE};
use crate::clock::Clock;
use crate::config::TurnConfig;
use crate::TurnError;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

pub(crate) struct FuzzServer {
    shared: Arc<Shared>,
    udp: Arc<UdpSocket>,
    server: SocketAddr,
    tcp_tx: mpsc::Sender<Vec<u8>>,
    tcp_rx: mpsc::Receiver<Vec<u8>>,
}

impl FuzzServer {
    /// Must be called inside a Tokio runtime (allocations spawn their relay task).
    pub(crate) fn new(config: TurnConfig, clock: Arc<dyn Clock>) -> Result<Self, TurnError> {
        config.validate()?;
        let std_udp = std::net::UdpSocket::bind(SocketAddr::new(config.relay_bind_ip, 0))?;
        std_udp.set_nonblocking(true)?;
        let udp = Arc::new(UdpSocket::from_std(std_udp)?);
        let server = udp.local_addr()?;
        let (tcp_tx, tcp_rx) = mpsc::channel(TCP_QUEUE);
        Ok(Self {
            shared: Shared::new(config, clock, vec![server.port()])?,
            udp,
            server,
            tcp_tx,
            tcp_rx,
        })
    }

    /// One packet from `client` (on the TCP listener if `tcp`): the reply, if any.
    pub(crate) fn packet(&self, client: SocketAddr, tcp: bool, pkt: &[u8]) -> Option<Vec<u8>> {
        let ctx = Ctx {
            five: FiveTuple {
                client,
                server: self.server,
                transport: if tcp { Transport::Tcp } else { Transport::Udp },
            },
            sink: if tcp {
                ClientSink::Tcp(self.tcp_tx.clone())
            } else {
                ClientSink::Udp {
                    socket: self.udp.clone(),
                    client,
                }
            },
        };
        self.shared.handle_packet(&ctx, pkt)
    }

    /// Remove every allocation and reservation (closing their sockets, releasing quota slots).
    pub(crate) fn reset(&mut self) {
        let mut st = self.shared.lock();
        let keys: Vec<FiveTuple> = st.allocations.keys().copied().collect();
        for k in keys {
            self.shared.remove_allocation(&mut st, &k);
        }
        let tokens: Vec<[u8; 8]> = st.reservations.keys().copied().collect();
        for t in tokens {
            st.take_reservation(&t);
        }
        drop(st);
        while self.tcp_rx.try_recv().is_ok() {}
    }

    /// A NONCE the server accepts now.
    pub(crate) fn nonce(&self) -> String {
        self.shared.make_nonce()
    }

    /// Allocations currently held.
    pub(crate) fn allocations(&self) -> usize {
        self.shared.lock().allocations.len()
    }
}
