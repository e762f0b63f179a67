//! Janus VideoRoom adapter over Janus's WebSocket JSON API (`janus-protocol` subprotocol), so the
//! same workload runs against Janus for comparison. One session per participant:
//! publisher: create session → attach `janus.plugin.videoroom` → `create` room (427 "exists" is fine)
//! → `join` as publisher → `configure` with our offer → Janus's answer; trickle `completed`.
//! subscriber: create → attach → `listparticipants` → `join` as subscriber with every publisher's feed
//! → Janus's offer → our answer with `start`. Keepalives every 25 s.

use crate::media::{MediaHandle, PcEvent, PcId, PcSpec};
use crate::stats::Shared;
use crate::{Participant, RunCtx};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMsg;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[derive(Debug, Clone)]
pub struct JanusTarget {
    /// e.g. `ws://127.0.0.1:8188`
    pub url: String,
    /// Janus rooms are numeric: room index i is `room_base + i`.
    pub room_base: u64,
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Conn {
    ws: Ws,
    next_tx: u64,
    session: u64,
    handle: u64,
}

impl Conn {
    async fn connect(url: &str) -> Result<Conn, String> {
        let mut req = url.into_client_request().map_err(|e| e.to_string())?;
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "janus-protocol".parse().map_err(|_| "header")?,
        );
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(req),
        )
        .await
        .map_err(|_| "websocket connect timed out".to_string())?
        .map_err(|e| format!("websocket connect: {e}"))?;
        Ok(Conn {
            ws,
            next_tx: 1,
            session: 0,
            handle: 0,
        })
    }

    async fn send(&mut self, mut v: Value) -> Result<String, String> {
        let tx = format!("t{}", self.next_tx);
        self.next_tx += 1;
        v["transaction"] = json!(tx);
        if self.session != 0 {
            v["session_id"] = json!(self.session);
        }
        if self.handle != 0 && v.get("janus").and_then(Value::as_str) != Some("keepalive") {
            v["handle_id"] = json!(self.handle);
        }
        self.ws
            .send(WsMsg::Text(v.to_string().into()))
            .await
            .map_err(|e| e.to_string())?;
        Ok(tx)
    }

    /// Send and wait for the reply with the same transaction that is not an `ack`.
    async fn call(&mut self, v: Value) -> Result<Value, String> {
        let tx = self.send(v).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let m = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| "janus reply timed out".to_string())?;
            let text = match m {
                Some(Ok(WsMsg::Text(t))) => t,
                Some(Ok(_)) => continue,
                _ => return Err("janus connection closed".into()),
            };
            let Ok(v) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            if v.get("transaction").and_then(Value::as_str) != Some(tx.as_str()) {
                continue;
            }
            match v.get("janus").and_then(Value::as_str) {
                Some("ack") => continue,
                Some("error") => return Err(format!("janus error: {}", v["error"])),
                _ => return Ok(v),
            }
        }
    }

    async fn message(&mut self, body: Value, jsep: Option<Value>) -> Result<Value, String> {
        let mut m = json!({"janus": "message", "body": body});
        if let Some(j) = jsep {
            m["jsep"] = j;
        }
        let v = self.call(m).await?;
        let data = &v["plugindata"]["data"];
        if let Some(code) = data.get("error_code") {
            return Err(format!("videoroom error {code}: {}", data["error"]));
        }
        Ok(v)
    }
}

async fn setup(conn: &mut Conn) -> Result<(), String> {
    let v = conn.call(json!({"janus": "create"})).await?;
    conn.session = v["data"]["id"].as_u64().ok_or("no session id")?;
    let v = conn
        .call(json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}))
        .await?;
    conn.handle = v["data"]["id"].as_u64().ok_or("no handle id")?;
    Ok(())
}

pub async fn run(
    target: Arc<JanusTarget>,
    ctx: Arc<RunCtx>,
    p: Participant,
    media: MediaHandle,
) -> Result<(), String> {
    let t0 = Instant::now();
    let room = target.room_base + p.room_index as u64;
    let mut conn = Conn::connect(&target.url).await?;
    setup(&mut conn).await?;
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<PcEvent>();
    let mut pc: Option<PcId> = None;
    let mut ready = p.ready;
    if !p.publish.is_empty() {
        // Create the room (idempotent: 427 means it exists).
        let create = json!({
            "request": "create", "room": room, "publishers": 16, "audiocodec": "opus",
            "videocodec": "vp8", "permanent": false, "is_private": false,
        });
        if let Err(e) = conn.message(create, None).await {
            if !e.contains("427") {
                return Err(e);
            }
        }
        conn.message(
            json!({"request": "join", "ptype": "publisher", "room": room, "display": p.identity}),
            None,
        )
        .await?;
        ctx.shared.record_join(t0.elapsed());
        Shared::inc(&ctx.shared.joins_ok);
        let id = media
            .new_pc(PcSpec {
                tracks: p.publish.clone(),
                join_started: t0,
                events: ev_tx.clone(),
            })
            .await?;
        pc = Some(id);
        let sdp = media.create_offer(id).await?;
        let has_video = p.publish.iter().any(|t| t.track.video);
        let v = conn
            .message(
                json!({"request": "configure", "audio": true, "video": has_video}),
                Some(json!({"type": "offer", "sdp": sdp})),
            )
            .await?;
        let answer = v["jsep"]["sdp"]
            .as_str()
            .ok_or("janus sent no answer")?
            .to_string();
        tracing::debug!(%sdp, %answer, "janus publisher negotiation");
        media.set_remote(id, answer, false).await?;
    } else if p.subscribe {
        let v = conn
            .message(json!({"request": "listparticipants", "room": room}), None)
            .await?;
        let feeds: Vec<Value> = v["plugindata"]["data"]["participants"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|x| x["publisher"].as_bool().unwrap_or(false))
                    .filter_map(|x| x["id"].as_u64())
                    .map(|id| json!({"feed": id}))
                    .collect()
            })
            .unwrap_or_default();
        if feeds.is_empty() {
            return Err("no publishers in the room".into());
        }
        let v = conn
            .message(
                json!({"request": "join", "ptype": "subscriber", "room": room, "streams": feeds}),
                None,
            )
            .await?;
        ctx.shared.record_join(t0.elapsed());
        Shared::inc(&ctx.shared.joins_ok);
        let offer = v["jsep"]["sdp"]
            .as_str()
            .ok_or("janus sent no offer")?
            .to_string();
        let id = media
            .new_pc(PcSpec {
                tracks: Vec::new(),
                join_started: t0,
                events: ev_tx.clone(),
            })
            .await?;
        pc = Some(id);
        let answer = media
            .set_remote(id, offer, true)
            .await?
            .ok_or("no answer")?;
        conn.message(
            json!({"request": "start"}),
            Some(json!({"type": "answer", "sdp": answer})),
        )
        .await?;
    }
    conn.send(json!({"janus": "trickle", "candidate": {"completed": true}}))
        .await?;
    let mut keepalive = tokio::time::interval(Duration::from_secs(25));
    let mut stop = ctx.stop.clone();
    let result = loop {
        tokio::select! {
            _ = stop.changed() => break Ok(()),
            _ = keepalive.tick() => {
                if conn.send(json!({"janus": "keepalive"})).await.is_err() {
                    break Err("websocket send failed".to_string());
                }
            }
            ev = ev_rx.recv() => {
                if ev == Some(PcEvent::Connected) {
                    if let Some(r) = ready.take() { let _ = r.send(()); }
                }
            }
            m = conn.ws.next() => match m {
                Some(Ok(WsMsg::Text(t))) => {
                    if let Ok(v) = serde_json::from_str::<Value>(&t) {
                        if v["janus"].as_str() == Some("hangup") {
                            Shared::inc(&ctx.shared.disconnects);
                            break Err(format!("janus hangup: {}", v["reason"]));
                        }
                    }
                }
                Some(Ok(_)) => {}
                _ => {
                    Shared::inc(&ctx.shared.disconnects);
                    break Err("janus connection closed".to_string());
                }
            }
        }
    };
    let _ = conn.send(json!({"janus": "detach"})).await;
    conn.handle = 0;
    let _ = conn.send(json!({"janus": "destroy"})).await;
    let _ = conn.ws.close(None).await;
    if let Some(id) = pc {
        media.close(id);
    }
    result
}
