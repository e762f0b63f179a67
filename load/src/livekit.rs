//! A LiveKit-protocol (v0) participant: protobuf over a WebSocket at `/rtc`; a publisher connection
//! that offers after AddTrack/TrackPublished and a subscriber connection that answers server offers.
//! Media runs on a shared media thread; this task only signals.

use crate::media::{MediaHandle, OutSpec, PcEvent, PcId, PcSpec};
use crate::pc::track_cid;
use crate::stats::Shared;
use crate::{Participant, RunCtx};
use futures_util::{SinkExt, StreamExt};
use parlor_signaling::protocol::{self, proto};
use parlor_signaling::{AccessToken, VideoGrant};
use proto::signal_request::Message as Req;
use proto::signal_response::Message as Resp;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMsg;

#[derive(Debug, Clone)]
pub struct LiveKitTarget {
    /// Base URL, e.g. `ws://127.0.0.1:7880`.
    pub url: String,
    pub api_key: String,
    pub api_secret: String,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn req(m: Req) -> WsMsg {
    WsMsg::Binary(protocol::encode_request(m).into())
}

/// Run one participant until the run stops or the server drops it.
pub async fn run(
    target: Arc<LiveKitTarget>,
    ctx: Arc<RunCtx>,
    p: Participant,
    media: MediaHandle,
) -> Result<(), String> {
    let t0 = Instant::now();
    let token = AccessToken::for_join(
        &target.api_key,
        &target.api_secret,
        &p.identity,
        VideoGrant::join(p.room.clone()),
        unix_now(),
        6 * 3600,
    );
    let url = format!(
        "{}/rtc?access_token={token}&auto_subscribe={}&protocol=16&sdk=parlor-load",
        target.url.trim_end_matches('/'),
        if p.subscribe { 1 } else { 0 }
    );
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .map_err(|_| "websocket connect timed out".to_string())?
    .map_err(|e| format!("websocket connect: {e}"))?;
    // The first message is the JoinResponse.
    let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .map_err(|_| "join timed out".to_string())?;
    match first {
        Some(Ok(WsMsg::Binary(b))) => match protocol::decode_response(&b) {
            Ok(Resp::Join(_)) => {}
            Ok(other) => return Err(format!("expected JoinResponse, got {other:?}")),
            Err(e) => return Err(format!("bad join: {e}")),
        },
        other => return Err(format!("expected JoinResponse, got {other:?}")),
    }
    ctx.shared.record_join(t0.elapsed());
    Shared::inc(&ctx.shared.joins_ok);

    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<PcEvent>();
    let mut pub_pc: Option<PcId> = None;
    let mut sub_pc: Option<PcId> = None;
    let mut waiting_published = p.publish.len();
    if !p.publish.is_empty() {
        pub_pc = Some(
            media
                .new_pc(PcSpec {
                    tracks: p.publish.clone(),
                    join_started: t0,
                    events: ev_tx.clone(),
                })
                .await?,
        );
        for (i, OutSpec { track, .. }) in p.publish.iter().enumerate() {
            let (ty, source, name) = if track.video {
                (
                    proto::TrackType::Video,
                    proto::TrackSource::Camera,
                    "camera",
                )
            } else {
                (
                    proto::TrackType::Audio,
                    proto::TrackSource::Microphone,
                    "microphone",
                )
            };
            ws.send(req(Req::AddTrack(proto::AddTrackRequest {
                cid: track_cid(i, track.video),
                name: name.into(),
                r#type: ty as i32,
                source: source as i32,
                width: if track.video { 640 } else { 0 },
                height: if track.video { 360 } else { 0 },
                ..Default::default()
            })))
            .await
            .map_err(|e| e.to_string())?;
        }
    }
    let mut ping = tokio::time::interval(Duration::from_secs(5));
    let mut stop = ctx.stop.clone();
    let mut publisher_ready = p.ready;
    let result = loop {
        tokio::select! {
            _ = stop.changed() => break Ok(()),
            _ = ping.tick() => {
                let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
                if ws.send(req(Req::Ping(ms))).await.is_err() { break Err("websocket send failed".to_string()) }
            }
            ev = ev_rx.recv() => {
                tracing::debug!(participant = %p.identity, ?ev, at_ms = t0.elapsed().as_millis() as u64, "pc event");
                if ev == Some(PcEvent::Connected) {
                    // Only the publisher connection carries `ready`; subscribers never set it.
                    if let Some(r) = publisher_ready.take() { let _ = r.send(()); }
                }
            }
            msg = ws.next() => {
                let b = match msg {
                    Some(Ok(WsMsg::Binary(b))) => b,
                    Some(Ok(WsMsg::Close(_))) | None | Some(Err(_)) => {
                        Shared::inc(&ctx.shared.disconnects);
                        break Err("server closed the signal connection".to_string());
                    }
                    Some(Ok(_)) => continue,
                };
                let Ok(resp) = protocol::decode_response(&b) else { continue };
                match resp {
                    Resp::TrackPublished(_) => {
                        waiting_published = waiting_published.saturating_sub(1);
                        if waiting_published == 0 {
                            if let Some(id) = pub_pc {
                                let sdp = media.create_offer(id).await?;
                                let m = req(Req::Offer(proto::SessionDescription { r#type: "offer".into(), sdp, id: 1, ..Default::default() }));
                                if ws.send(m).await.is_err() { break Err("websocket send failed".into()) }
                            }
                        }
                    }
                    Resp::Answer(sd) => {
                        if let Some(id) = pub_pc {
                            media.set_remote(id, sd.sdp, false).await?;
                        }
                    }
                    Resp::Offer(sd) => {
                        tracing::debug!(participant = %p.identity, at_ms = t0.elapsed().as_millis() as u64, "subscriber offer");
                        let id = match sub_pc {
                            Some(id) => id,
                            None => {
                                let id = media.new_pc(PcSpec { tracks: Vec::new(), join_started: t0, events: ev_tx.clone() }).await?;
                                sub_pc = Some(id);
                                id
                            }
                        };
                        if let Some(sdp) = media.set_remote(id, sd.sdp, true).await? {
                            let m = req(Req::Answer(proto::SessionDescription { r#type: "answer".into(), sdp, id: sd.id, ..Default::default() }));
                            if ws.send(m).await.is_err() { break Err("websocket send failed".into()) }
                        }
                    }
                    Resp::Leave(_) => {
                        Shared::inc(&ctx.shared.disconnects);
                        break Err("server sent Leave".to_string());
                    }
                    _ => {}
                }
            }
        }
    };
    let _ = ws
        .send(req(Req::Leave(proto::LeaveRequest {
            reason: proto::DisconnectReason::ClientInitiated as i32,
            action: proto::leave_request::Action::Disconnect as i32,
            ..Default::default()
        })))
        .await;
    let _ = ws.close(None).await;
    for id in [pub_pc, sub_pc].into_iter().flatten() {
        media.close(id);
    }
    result
}
