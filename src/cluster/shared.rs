//! The shared views that make the APIs read the same on every node, kept in Redis by one writer
//! task per node:
//! - `P:presence:<node>`: hash user → [`SharedPresence`] JSON of the users present on that node; it
//!   expires with the node (`node_ttl_ms`), so a dead node's users go offline with it;
//! - `P:typing:<conversation>`: hash user → expiry (unix ms) of typing indicators;
//! - `P:push:all` (pub/sub): live pushes (chat, typing, invitations) for users connected elsewhere;
//! - `P:parts:<room>`: the [`ParticipantSnapshot`]s of a room open on this node, rewritten on every
//!   participant or track event of the room and renewed with the heartbeat.
//!
//! API paths only queue work ([`PresenceShare`]'s sync methods) and never wait for Redis; a full
//! queue drops the op and schedules a full rewrite. After a Redis restart (keys gone) the next
//! renewal finds the presence hash missing and writes it all again.

use super::registry::{Registry, RegistryError};
use crate::clock::SharedClock;
use crate::product::{PresenceShare, Product, SharedPresence, TYPING_TTL_MS};
use crate::sfu::{ParticipantSnapshot, SfuEvent, SfuHandle};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// Presence ops queued for the writer before further ones are dropped (and a full rewrite is due).
const QUEUE: usize = 8192;
/// Ops the writer sends to Redis in one pipeline.
const BATCH: usize = 256;

enum Op {
    Changed(String),
    Push {
        user: String,
        text: String,
    },
    Typing {
        conversation: String,
        user: String,
        until_ms: Option<i64>,
    },
}

/// A push relayed to every node (`P:push:all`).
#[derive(Serialize, Deserialize)]
pub(super) struct PushEnvelope {
    pub from: String,
    pub user: String,
    pub text: String,
}

/// This node's [`PresenceShare`]: queues writes for the writer task, reads the other nodes' views.
pub struct Share {
    reg: Registry,
    tx: mpsc::Sender<Op>,
    resync: Arc<AtomicBool>,
}

impl Share {
    fn send(&self, op: Op) {
        if self.tx.try_send(op).is_err() {
            self.resync.store(true, Relaxed);
            tracing::warn!("cluster presence queue full; a full rewrite follows");
        }
    }

    async fn other_nodes(&self) -> Result<Vec<String>, RegistryError> {
        let mut names = self.reg.node_names().await?;
        names.retain(|n| n != self.reg.node());
        Ok(names)
    }

    async fn try_user(&self, user: &str) -> Result<Vec<SharedPresence>, RegistryError> {
        let others = self.other_nodes().await?;
        if others.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for n in &others {
            pipe.cmd("HGET").arg(self.reg.key("presence", n)).arg(user);
        }
        let mut con = self.reg.con();
        let vals: Vec<Option<String>> = self.reg.run(pipe.query_async(&mut con)).await?;
        Ok(vals
            .into_iter()
            .flatten()
            .filter_map(|j| serde_json::from_str(&j).ok())
            .collect())
    }

    async fn try_all(&self) -> Result<Vec<(String, SharedPresence)>, RegistryError> {
        let others = self.other_nodes().await?;
        if others.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for n in &others {
            pipe.cmd("HGETALL").arg(self.reg.key("presence", n));
        }
        let mut con = self.reg.con();
        let maps: Vec<Vec<(String, String)>> = self.reg.run(pipe.query_async(&mut con)).await?;
        Ok(maps
            .into_iter()
            .flatten()
            .filter_map(|(u, j)| serde_json::from_str(&j).ok().map(|p| (u, p)))
            .collect())
    }

    async fn try_typing(&self, conversation: &str) -> Result<Vec<(String, i64)>, RegistryError> {
        let mut con = self.reg.con();
        let key = self.reg.key("typing", conversation);
        self.reg
            .run(redis::cmd("HGETALL").arg(key).query_async(&mut con))
            .await
    }
}

/// A failed read of the other nodes counts as "nobody there" (logged): presence degrades to local.
fn or_empty<T>(r: Result<Vec<T>, RegistryError>) -> Vec<T> {
    r.unwrap_or_else(|e| {
        tracing::debug!(error = %e, "reading presence of the other nodes failed; local view only");
        Vec::new()
    })
}

impl PresenceShare for Share {
    fn changed(&self, user: &str) {
        self.send(Op::Changed(user.to_string()));
    }
    fn push(&self, user: &str, text: &str) {
        self.send(Op::Push {
            user: user.to_string(),
            text: text.to_string(),
        });
    }
    fn typing(&self, conversation: &str, user: &str, until_ms: Option<i64>) {
        self.send(Op::Typing {
            conversation: conversation.to_string(),
            user: user.to_string(),
            until_ms,
        });
    }
    fn user<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Vec<SharedPresence>> {
        Box::pin(async move { or_empty(self.try_user(user).await) })
    }
    fn all(&self) -> BoxFuture<'_, Vec<(String, SharedPresence)>> {
        Box::pin(async move { or_empty(self.try_all().await) })
    }
    fn typing_in<'a>(&'a self, conversation: &'a str) -> BoxFuture<'a, Vec<(String, i64)>> {
        Box::pin(async move { or_empty(self.try_typing(conversation).await) })
    }
}

/// The participants of `room` as its owner last wrote them (None: no snapshot, the room is not open
/// anywhere or its node is gone).
pub(super) async fn room_participants(
    reg: &Registry,
    room: &str,
) -> Result<Option<Vec<ParticipantSnapshot>>, RegistryError> {
    let mut con = reg.con();
    let json: Option<String> = reg
        .run(
            redis::cmd("GET")
                .arg(reg.key("parts", room))
                .query_async(&mut con),
        )
        .await?;
    Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
}

/// Everything the writer task needs.
pub(super) struct Writer {
    pub reg: Registry,
    pub product: Product,
    pub sfu: SfuHandle,
    pub clock: SharedClock,
    pub period: Duration,
}

impl Writer {
    /// Install the share in `product` and start the writer task.
    pub fn start(self, shutdown: CancellationToken) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let resync = Arc::new(AtomicBool::new(true));
        self.product.set_share(Arc::new(Share {
            reg: self.reg.clone(),
            tx,
            resync: resync.clone(),
        }));
        tokio::spawn(self.run(rx, resync, shutdown));
    }

    fn presence_key(&self) -> String {
        self.reg.key("presence", self.reg.node())
    }

    async fn run(
        self,
        mut rx: mpsc::Receiver<Op>,
        resync: Arc<AtomicBool>,
        shutdown: CancellationToken,
    ) {
        let mut events = self.sfu.subscribe_events();
        let mut tick = tokio::time::interval(self.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            let r = tokio::select! {
                _ = shutdown.cancelled() => return,
                op = rx.recv() => match op {
                    Some(op) => {
                        let mut batch = vec![op];
                        while batch.len() < BATCH {
                            match rx.try_recv() {
                                Ok(op) => batch.push(op),
                                Err(_) => break,
                            }
                        }
                        self.apply(batch).await
                    }
                    None => return,
                },
                ev = events.recv() => match ev {
                    Ok(ev) => self.room_event(ev).await,
                    Err(broadcast::error::RecvError::Lagged(_)) => self.renew_rooms().await,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => self.renew(&resync).await,
            };
            match r {
                Ok(()) if failing => failing = false,
                Ok(()) => {}
                Err(e) => {
                    // Whatever was lost is rewritten in full once Redis answers again.
                    resync.store(true, Relaxed);
                    if !failing {
                        failing = true;
                        tracing::warn!(error = %e, "writing shared presence to redis failed");
                    }
                }
            }
        }
    }

    async fn apply(&self, batch: Vec<Op>) -> Result<(), RegistryError> {
        let now = self.clock.unix_ms();
        let key = self.presence_key();
        let mut pipe = redis::pipe();
        let mut users = BTreeSet::new();
        for op in batch {
            match op {
                Op::Changed(u) => {
                    users.insert(u);
                }
                Op::Push { user, text } => {
                    let env = PushEnvelope {
                        from: self.reg.node().to_string(),
                        user,
                        text,
                    };
                    let json = serde_json::to_string(&env).unwrap_or_default();
                    pipe.cmd("PUBLISH")
                        .arg(self.reg.key("push", "all"))
                        .arg(json)
                        .ignore();
                }
                Op::Typing {
                    conversation,
                    user,
                    until_ms,
                } => {
                    let tk = self.reg.key("typing", &conversation);
                    match until_ms {
                        Some(until) => {
                            pipe.cmd("HSET").arg(&tk).arg(user).arg(until).ignore();
                            pipe.cmd("PEXPIRE").arg(&tk).arg(TYPING_TTL_MS).ignore();
                        }
                        None => {
                            pipe.cmd("HDEL").arg(&tk).arg(user).ignore();
                        }
                    }
                }
            }
        }
        for u in &users {
            match self.product.shared_snapshot(u, now) {
                Some(p) => {
                    let json = serde_json::to_string(&p).unwrap_or_default();
                    pipe.cmd("HSET").arg(&key).arg(u).arg(json).ignore();
                }
                None => {
                    pipe.cmd("HDEL").arg(&key).arg(u).ignore();
                }
            }
        }
        if !users.is_empty() {
            pipe.cmd("PEXPIRE")
                .arg(&key)
                .arg(self.reg.ttl_ms())
                .ignore();
        }
        let mut con = self.reg.con();
        self.reg.run(pipe.query_async::<()>(&mut con)).await
    }

    /// Renew the presence hash (rewrite it all when it is missing or ops were lost) and the room
    /// snapshots of the rooms open here.
    async fn renew(&self, resync: &AtomicBool) -> Result<(), RegistryError> {
        let key = self.presence_key();
        let mut con = self.reg.con();
        let renewed: i64 = self
            .reg
            .run(
                redis::cmd("PEXPIRE")
                    .arg(&key)
                    .arg(self.reg.ttl_ms())
                    .query_async(&mut con),
            )
            .await?;
        if renewed == 0 || resync.swap(false, Relaxed) {
            let all = self.product.shared_snapshots(self.clock.unix_ms());
            let mut pipe = redis::pipe();
            pipe.atomic().cmd("DEL").arg(&key).ignore();
            for (u, p) in &all {
                let json = serde_json::to_string(p).unwrap_or_default();
                pipe.cmd("HSET").arg(&key).arg(u).arg(json).ignore();
            }
            pipe.cmd("PEXPIRE")
                .arg(&key)
                .arg(self.reg.ttl_ms())
                .ignore();
            if let Err(e) = self.reg.run(pipe.query_async::<()>(&mut con)).await {
                resync.store(true, Relaxed);
                return Err(e);
            }
        }
        self.renew_rooms().await
    }

    async fn renew_rooms(&self) -> Result<(), RegistryError> {
        let rooms = self.sfu.rooms();
        if rooms.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for r in &rooms {
            self.queue_room(&mut pipe, r);
        }
        let mut con = self.reg.con();
        self.reg.run(pipe.query_async::<()>(&mut con)).await
    }

    fn queue_room(&self, pipe: &mut redis::Pipeline, room: &str) {
        let json = serde_json::to_string(&self.sfu.participants(room)).unwrap_or_default();
        pipe.cmd("SET")
            .arg(self.reg.key("parts", room))
            .arg(json)
            .arg("PX")
            .arg(self.reg.ttl_ms())
            .ignore();
    }

    async fn room_event(&self, ev: SfuEvent) -> Result<(), RegistryError> {
        let mut pipe = redis::pipe();
        match ev {
            SfuEvent::RoomClosed { room, .. } => {
                pipe.cmd("DEL").arg(self.reg.key("parts", &room)).ignore();
            }
            SfuEvent::RoomCreated { room, .. }
            | SfuEvent::ParticipantJoined { room, .. }
            | SfuEvent::MediaConnected { room, .. }
            | SfuEvent::ParticipantLeft { room, .. }
            | SfuEvent::TrackPublished { room, .. }
            | SfuEvent::TrackUnpublished { room, .. } => self.queue_room(&mut pipe, &room),
        }
        let mut con = self.reg.con();
        self.reg.run(pipe.query_async::<()>(&mut con)).await
    }
}
