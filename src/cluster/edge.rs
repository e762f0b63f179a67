//! The edge of a relayed signal session: a client's WebSocket on this node, its room on another.
//! Frames go through unchanged (the owner decodes, answers pings and enforces the protocol); the
//! edge applies the same size and rate limits as a local session, so a flood never reaches Redis,
//! and ends the session when the owner disappears from the registry, so the client reconnects —
//! and its rejoin claims the room again for a live node.

use super::relay::{EdgeSide, Frame};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use std::time::{Duration, Instant};

/// How often the edge checks that the room's node is still registered.
const OWNER_CHECK: Duration = Duration::from_secs(1);

/// Pump frames between `ws` and the relayed session until either end closes.
pub async fn pump(
    mut ws: WebSocket,
    mut side: EdgeSide,
    max_messages_per_sec: u32,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let owner = side.owner.clone();
    let mut flood = crate::flood::FloodLimit::new(max_messages_per_sec, Instant::now());
    let mut check = tokio::time::interval(OWNER_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Consecutive checks that found the owner unregistered.
    let mut missing = 0u32;
    let mut close: Option<(u16, String)> = None;
    loop {
        tokio::select! {
            m = ws.recv() => {
                let Some(Ok(m)) = m else { break };
                match m {
                    Message::Binary(b) => {
                        if !flood.admit(Instant::now()) {
                            close = Some((crate::flood::CLOSE_CODE, "too many signal messages".into()));
                            break;
                        }
                        if !side.send(&b).await {
                            close = Some((1011, "cluster relay unavailable".into()));
                            break;
                        }
                    }
                    Message::Text(_) => {
                        close = Some((1003, "binary protobuf frames expected".into()));
                        break;
                    }
                    Message::Close(_) => break,
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
            f = side.recv() => match f {
                Some(Frame::Binary(b)) => {
                    if ws.send(Message::Binary(b.into())).await.is_err() { break }
                }
                Some(Frame::Close(code, reason)) => {
                    // The owner ended the session itself: nothing to tell it.
                    side_closed(&mut ws, Some((code, reason))).await;
                    return;
                }
                None => { close = Some((1011, "cluster relay lost".into())); break }
            },
            _ = check.tick() => {
                // Only a definite "not registered", twice in a row, ends the session: Redis being
                // away does not, nor a Redis that just restarted empty (the owner's next heartbeat,
                // well within a check period, registers it again).
                match side.registry().alive(&owner).await {
                    Ok(false) => missing += 1,
                    Ok(true) => missing = 0,
                    Err(_) => {}
                }
                if missing >= 2 {
                    tracing::warn!(node = %owner, "room's node is gone; ending relayed session");
                    close = Some((1011, "room node unavailable".into()));
                    break;
                }
            }
            _ = shutdown.cancelled() => {
                close = Some((1001, "server shutting down".into()));
                break;
            }
        }
    }
    // The client left, or the edge ended the session: the owner's session ends too.
    side.gone().await;
    let flooded = close
        .as_ref()
        .is_some_and(|(c, _)| *c == crate::flood::CLOSE_CODE);
    side_closed(&mut ws, close).await;
    if flooded {
        crate::flood::drain_until_closed(&mut ws).await;
    }
}

async fn side_closed(ws: &mut WebSocket, close: Option<(u16, String)>) {
    if let Some((code, reason)) = close {
        let _ = ws
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
    }
}
