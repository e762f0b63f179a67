//! Signal relay between nodes over Redis pub/sub: a client whose signal WebSocket reached a node that
//! does not own its room (the *edge*) has its signal session run on the room's node (the *owner*),
//! frame by frame. Each node subscribes to one channel, `P:sig:<node>`; every envelope names its
//! session and sender, so one subscription carries all of a node's relayed sessions. Media never
//! passes here: the owner's join response carries the owner's own ICE candidates.
//!
//! Envelope: `kind: u8`, `session: u64` (big-endian, chosen by the edge), `from` (u8 length + node
//! name), payload. Frames of one session are published by one task in order, over one connection,
//! so they arrive in order. A relayed session whose other end disappears ends: the owner's ping
//! timeout notices a dead edge, the edge watches the owner's registration.

use super::registry::Registry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Frames queued per relayed session before it is ended as too slow.
const SESSION_QUEUE: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    /// Edge → owner: start a session (payload: JSON [`Start`]).
    Start = 1,
    /// Edge → owner: one binary frame from the client.
    Up = 2,
    /// Owner → edge: one binary frame for the client.
    Down = 3,
    /// Owner → edge: close the client's socket (payload: u16 code, reason).
    Close = 4,
    /// Edge → owner: the client went away.
    Gone = 5,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Start,
            2 => Kind::Up,
            3 => Kind::Down,
            4 => Kind::Close,
            5 => Kind::Gone,
            _ => return None,
        })
    }
}

/// What the edge forwards to start a session: the request as the client made it (the owner
/// authorizes it again, with the same keys).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Start {
    pub token: String,
    pub params: HashMap<String, String>,
    /// `/rtc/v1` (single peer connection) rather than `/rtc`.
    pub v1: bool,
}

/// A relayed session as the owner sees it.
pub struct Started {
    pub start: Start,
    pub session: OwnerSide,
}

/// What reaches one side of a relayed session.
#[derive(Debug)]
pub enum Frame {
    Binary(Vec<u8>),
    Close(u16, String),
}

type Table<K> = Mutex<HashMap<K, mpsc::Sender<Frame>>>;

/// The relay of one node.
pub struct Relay {
    registry: Registry,
    /// Sessions this node relays for its clients, by session id.
    edges: Table<u64>,
    /// Sessions this node runs for other nodes' clients, by (edge node, session id).
    owned: Table<(String, u64)>,
    starts: mpsc::Sender<Started>,
}

fn encode(kind: Kind, session: u64, from: &str, payload: &[u8]) -> Vec<u8> {
    let from = &from.as_bytes()[..from.len().min(255)];
    let mut v = Vec::with_capacity(10 + from.len() + payload.len());
    v.push(kind as u8);
    v.extend_from_slice(&session.to_be_bytes());
    v.push(from.len() as u8);
    v.extend_from_slice(from);
    v.extend_from_slice(payload);
    v
}

fn decode(b: &[u8]) -> Option<(Kind, u64, &str, &[u8])> {
    let kind = Kind::from_u8(*b.first()?)?;
    let session = u64::from_be_bytes(b.get(1..9)?.try_into().ok()?);
    let n = *b.get(9)? as usize;
    let from = std::str::from_utf8(b.get(10..10 + n)?).ok()?;
    Some((kind, session, from, b.get(10 + n..)?))
}

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut v = code.to_be_bytes().to_vec();
    v.extend_from_slice(reason.as_bytes());
    v
}

fn parse_close(p: &[u8]) -> Frame {
    let code = p
        .get(..2)
        .map_or(1000, |c| u16::from_be_bytes([c[0], c[1]]));
    let reason = String::from_utf8_lossy(p.get(2..).unwrap_or_default()).into_owned();
    Frame::Close(code, reason)
}

impl Relay {
    pub fn new(registry: Registry, starts: mpsc::Sender<Started>) -> Arc<Relay> {
        Arc::new(Relay {
            registry,
            edges: Default::default(),
            owned: Default::default(),
            starts,
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Handle one envelope from this node's channel.
    pub fn deliver(self: &Arc<Self>, bytes: &[u8]) {
        let Some((kind, session, from, payload)) = decode(bytes) else {
            tracing::warn!(len = bytes.len(), "malformed relay envelope");
            return;
        };
        match kind {
            Kind::Start => {
                let Ok(start) = serde_json::from_slice::<Start>(payload) else {
                    tracing::warn!(from, "malformed relay start");
                    return;
                };
                let (tx, rx) = mpsc::channel(SESSION_QUEUE);
                let key = (from.to_string(), session);
                lock(&self.owned).insert(key.clone(), tx);
                let session = OwnerSide {
                    relay: self.clone(),
                    key,
                    rx,
                };
                if self.starts.try_send(Started { start, session }).is_err() {
                    tracing::warn!(from, "relay start dropped: too many pending starts");
                }
            }
            Kind::Up | Kind::Gone => {
                let key = (from.to_string(), session);
                let frame = if kind == Kind::Up {
                    Frame::Binary(payload.to_vec())
                } else {
                    Frame::Close(1000, "client left".into())
                };
                Self::route(&self.owned, &key, frame);
            }
            Kind::Down => Self::route(&self.edges, &session, Frame::Binary(payload.to_vec())),
            Kind::Close => Self::route(&self.edges, &session, parse_close(payload)),
        }
    }

    fn route<K: std::hash::Hash + Eq>(table: &Table<K>, key: &K, frame: Frame) {
        let mut t = lock(table);
        let Some(tx) = t.get(key) else { return };
        if tx.try_send(frame).is_err() {
            // Full (a stalled session) or gone: end it rather than block every relayed session.
            t.remove(key);
        }
    }

    /// Open a relayed session to `owner` for a client of this node.
    pub async fn open_edge(
        self: &Arc<Self>,
        owner: &str,
        start: &Start,
    ) -> Result<EdgeSide, super::registry::RegistryError> {
        let session = rand::random::<u64>();
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        lock(&self.edges).insert(session, tx);
        let side = EdgeSide {
            relay: self.clone(),
            owner: owner.to_string(),
            session,
            rx,
        };
        let payload = serde_json::to_vec(start).unwrap_or_default();
        let env = encode(Kind::Start, session, self.registry.node(), &payload);
        let n = self.registry.publish(owner, env).await?;
        if n == 0 {
            return Err(super::registry::RegistryError::NoNode);
        }
        Ok(side)
    }
}

fn lock<K>(t: &Table<K>) -> std::sync::MutexGuard<'_, HashMap<K, mpsc::Sender<Frame>>> {
    // Single inserts and removes: a panic elsewhere cannot leave the map inconsistent.
    t.lock().unwrap_or_else(|e| e.into_inner())
}

/// The edge's end of a relayed session.
pub struct EdgeSide {
    relay: Arc<Relay>,
    pub owner: String,
    session: u64,
    rx: mpsc::Receiver<Frame>,
}

impl EdgeSide {
    /// Next frame from the owner; None when the relay ended the session.
    pub async fn recv(&mut self) -> Option<Frame> {
        self.rx.recv().await
    }

    /// Forward one client frame; false if Redis did not take it.
    pub async fn send(&self, bytes: &[u8]) -> bool {
        let env = encode(Kind::Up, self.session, self.relay.registry.node(), bytes);
        self.relay.registry.publish(&self.owner, env).await.is_ok()
    }

    /// The client went away.
    pub async fn gone(&self) {
        let env = encode(Kind::Gone, self.session, self.relay.registry.node(), &[]);
        let _ = self.relay.registry.publish(&self.owner, env).await;
    }

    pub fn registry(&self) -> &Registry {
        &self.relay.registry
    }
}

impl Drop for EdgeSide {
    fn drop(&mut self) {
        lock(&self.relay.edges).remove(&self.session);
    }
}

/// The owner's end of a relayed session.
pub struct OwnerSide {
    relay: Arc<Relay>,
    key: (String, u64),
    rx: mpsc::Receiver<Frame>,
}

impl OwnerSide {
    pub async fn recv(&mut self) -> Option<Frame> {
        self.rx.recv().await
    }

    pub async fn send(&self, bytes: &[u8]) -> bool {
        let env = encode(Kind::Down, self.key.1, self.relay.registry.node(), bytes);
        self.relay.registry.publish(&self.key.0, env).await.is_ok()
    }

    pub async fn close(&self, code: u16, reason: &str) {
        let env = encode(
            Kind::Close,
            self.key.1,
            self.relay.registry.node(),
            &close_payload(code, reason),
        );
        let _ = self.relay.registry.publish(&self.key.0, env).await;
    }

    /// The node the client is connected to.
    pub fn edge(&self) -> &str {
        &self.key.0
    }
}

impl Drop for OwnerSide {
    fn drop(&mut self) {
        lock(&self.relay.owned).remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_garbage_is_refused() {
        let e = encode(Kind::Down, 0x0102_0304_0506_0708, "node-a", b"\x0a\x00");
        let (k, s, from, p) = decode(&e).unwrap();
        assert_eq!(
            (k, s, from, p),
            (
                Kind::Down,
                0x0102_0304_0506_0708,
                "node-a",
                &b"\x0a\x00"[..]
            )
        );
        assert!(decode(&[]).is_none());
        assert!(decode(&[9, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_none());
        assert!(decode(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 5, b'a']).is_none());
        match parse_close(&close_payload(1008, "no")) {
            Frame::Close(1008, r) => assert_eq!(r, "no"),
            f => panic!("{f:?}"),
        }
        assert!(matches!(parse_close(&[]), Frame::Close(1000, _)));
    }
}
