//! The media worker under the conditions users notice: output RTP timestamps across a pause, a client
//! too slow to read its signal messages, and an in-process participant dropped while its media queue
//! is full. Real WebRTC peers (webrtc-rs `rtc` clients on 127.0.0.1) and a real server.

mod common;
#[path = "common/lk.rs"]
mod lk;

use common::*;
use futures_util::StreamExt;
use lk::{vp8_keyframe, Client, Seen};
use parlor_signaling::protocol::{self, proto};
use parlor_signaling::{AccessToken, Claims, VideoGrant};
use proto::signal_request::Message as Req;
use proto::signal_response::Message as Resp;
use rtc::peer_connection::state::RTCPeerConnectionState;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message as WsMsg;

async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A subscriber pauses a video track (`UpdateTrackSettings.disabled`) and resumes it a second later:
/// the first packet after the resume carries a timestamp one second (90 000 ticks) after the last one
/// before the pause, as a player needs to keep its timing — not one tick later, which compresses the
/// second to nothing (the worker used to hand the forwarder no arrival times). The same offset
/// computation runs on every simulcast layer switch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_timestamps_advance_by_the_time_elapsed_across_a_pause() {
    let db = TestDb::sqlite();
    let s = TestServer::start(&db).await;
    let mut cam = Client::connect_video(&s.ws, &s.token("cam", VideoGrant::join("ts-1"))).await;
    let track = cam.publish_video().await;
    cam.wait_for(|s| {
        matches!(s, Seen::PublisherState(RTCPeerConnectionState::Connected)).then_some(())
    })
    .await;
    let mut viewer =
        Client::connect(&s.ws, &s.token("viewer", VideoGrant::join("ts-1")), false).await;
    // 30 keyframes a second (every packet may start a resume) until the test is done.
    let stop = Arc::new(AtomicBool::new(false));
    let sending = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut i = 0u16;
            while !stop.load(Ordering::Relaxed) {
                cam.send_rtp(vp8_keyframe(i)).await;
                i = i.wrapping_add(1);
                tokio::time::sleep(Duration::from_millis(33)).await;
            }
            cam
        })
    };
    let sid = track.sid.clone();
    // Playing: a few packets arrive.
    let mut last: Option<(u32, Instant)> = None;
    for _ in 0..10 {
        last = Some(
            viewer
                .wait_for(|s| match s {
                    Seen::Rtp { track, ts, .. } if *track == sid => Some((*ts, Instant::now())),
                    _ => None,
                })
                .await,
        );
    }
    let settings = |disabled: bool| {
        Req::TrackSetting(proto::UpdateTrackSettings {
            track_sids: vec![sid.clone()],
            disabled,
            quality: proto::VideoQuality::High as i32,
            ..Default::default()
        })
    };
    viewer.send(settings(true)).await;
    // The last packet before the pause takes effect: nothing more for 300 ms.
    loop {
        match tokio::time::timeout(Duration::from_millis(300), viewer.seen.recv()).await {
            Ok(Some(Seen::Rtp { track, ts, .. })) if track == sid => {
                last = Some((ts, Instant::now()))
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("viewer event stream ended"),
            Err(_) => break,
        }
    }
    let (ts_before, at_before) = last.expect("packets before the pause");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    viewer.send(settings(false)).await;
    let (ts_after, at_after) = viewer
        .wait_for(|s| match s {
            Seen::Rtp { track, ts, .. } if *track == sid => Some((*ts, Instant::now())),
            _ => None,
        })
        .await;
    let ticks = ts_after.wrapping_sub(ts_before);
    let wall_ticks = at_after.duration_since(at_before).as_millis() as u32 * 90;
    println!("paused for {wall_ticks} ticks of wall time; the output timestamp advanced {ticks}");
    // The server measures between arrivals (the viewer between receptions): allow 200 ms either way.
    assert!(
        ticks + 18_000 >= wall_ticks && ticks <= wall_ticks + 18_000,
        "timestamp advanced {ticks} ticks across a {wall_ticks}-tick pause"
    );
    stop.store(true, Ordering::Relaxed);
    let cam = sending.await.unwrap();
    cam.leave().await;
    viewer.leave().await;
    s.stop().await;
}

/// A client that stops reading its signal connection: its session's queue fills up, and the worker
/// disconnects it — removed from the room (the others are told it left), and what it reads once it
/// reads again ends with a LeaveRequest saying why, then the close. (The worker used to drop the
/// messages it could not queue and keep the participant: a dropped subscriber offer left it waiting
/// for an answer forever, never to get another track.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_signal_queue_overflows_is_disconnected_and_told_why() {
    let db = TestDb::sqlite();
    let s = TestServer::start_with(&db, |c| c.limits.max_signal_messages_per_sec = 100_000).await;
    let st = &s.handle.state;
    // The slow client: a bare signal connection that reads its JoinResponse, then nothing.
    let url = format!(
        "{}/rtc?access_token={}&auto_subscribe=1&protocol=16&sdk=rust-test",
        s.ws,
        s.token("slow", VideoGrant::join("overflow-1"))
    );
    let (mut slow, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    let first = slow.next().await.expect("join").expect("join");
    let WsMsg::Binary(b) = first else {
        panic!("expected a binary JoinResponse")
    };
    assert!(matches!(protocol::decode_response(&b), Ok(Resp::Join(_))));
    // A publisher whose ParticipantInfo is large (5,000 bytes of metadata, as much as a token of at
    // most 8 KiB carries): each mute toggle sends the slow client one ParticipantUpdate carrying it.
    let now = now_unix();
    let token = AccessToken::encode(
        &Claims {
            iss: KEY.into(),
            sub: "loud".into(),
            nbf: now - 1,
            exp: now + 3600,
            metadata: Some("m".repeat(5_000)),
            video: Some(VideoGrant::join("overflow-1")),
            ..Default::default()
        },
        SECRET,
    );
    let mut loud = Client::connect(&s.ws, &token, true).await;
    let track = loud.publish_audio().await;
    loud.wait_for(|s| {
        matches!(s, Seen::PublisherState(RTCPeerConnectionState::Connected)).then_some(())
    })
    .await;
    // Mute only applies to a track whose media opened.
    for i in 0..20u16 {
        loud.send_rtp(vec![0xF8, 0, i as u8]).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wait_until("the track opens", Duration::from_secs(5), || {
        st.sfu
            .participants("overflow-1")
            .iter()
            .any(|p| p.identity == "loud" && p.audio)
    })
    .await;
    let slow_present = || {
        st.sfu
            .participants("overflow-1")
            .iter()
            .any(|p| p.identity == "slow")
    };
    // 512 queued plus what the socket buffers hold (a few MB on loopback): a few thousand toggles.
    let mut toggles = 0;
    while slow_present() && toggles < 20_000 {
        for _ in 0..50 {
            loud.send(Req::Mute(proto::MuteTrackRequest {
                sid: track.sid.clone(),
                muted: toggles % 2 == 0,
            }))
            .await;
            toggles += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    wait_until(
        "the slow client is removed from the room",
        Duration::from_secs(5),
        || !slow_present(),
    )
    .await;
    println!("slow client removed after {toggles} mute toggles");
    // The others are told it left.
    loud.wait_for(|s| match s {
        Seen::Signal(Resp::Update(u)) => u
            .participants
            .iter()
            .any(|p| {
                p.identity == "slow"
                    && p.state == proto::participant_info::State::Disconnected as i32
            })
            .then_some(()),
        _ => None,
    })
    .await;
    // It reads again: the queued messages, then a LeaveRequest with the reason, then the close.
    let mut leave = None;
    let mut closed = false;
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(m)) = slow.next().await {
            match m {
                WsMsg::Binary(b) => {
                    if let Ok(Resp::Leave(l)) = protocol::decode_response(&b) {
                        leave = Some(l);
                    }
                }
                WsMsg::Close(_) => {
                    closed = true;
                    break;
                }
                _ => {}
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the slow client's connection did not end");
    let leave = leave.expect("a LeaveRequest before the close");
    assert_eq!(leave.reason, proto::DisconnectReason::SignalClose as i32);
    assert_eq!(
        leave.action,
        proto::leave_request::Action::Disconnect as i32
    );
    assert!(closed, "no close frame after the LeaveRequest");
    loud.leave().await;
    s.stop().await;
}

/// An in-process participant (the assistant's shape) dropped right after filling its media queue:
/// it still leaves the room. (Its leave used to travel on the same bounded queue as its RTP, with
/// `try_send`: lost when full, and the participant stayed in the room forever, keeping it open.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_participant_dropped_with_a_full_media_queue_leaves() {
    use parlor::sfu::local::{LocalOptions, LocalParticipant};
    use proto::participant_info::Kind;

    let db = TestDb::sqlite();
    let s = TestServer::start(&db).await;
    let st = &s.handle.state;
    let mut caller =
        Client::connect(&s.ws, &s.token("caller", VideoGrant::join("drop-1")), false).await;
    let bot = LocalParticipant::join(
        &st.sfu,
        &st.workers,
        st.config.room.max_rooms,
        LocalOptions {
            room: "drop-1".into(),
            identity: "assistant".into(),
            name: "Assistant".into(),
            kind: Kind::Agent,
            subscribe: false,
            publish: true,
            publish_data: false,
            hidden: false,
        },
    )
    .await
    .expect("in-process join");
    let voice = bot.publish_audio("voice").await.expect("publish");
    // The caller subscribes (auto): every packet the bot sends is forwarded to it.
    caller
        .wait_for(|s| matches!(s, Seen::Signal(Resp::Offer(_))).then_some(()))
        .await;
    // Send until the worker's queue refuses a packet, then drop the participant at once.
    let mut refused = false;
    for i in 0..2_000_000u32 {
        let payload = bytes::Bytes::from(vec![0xFC, (i >> 8) as u8, i as u8]);
        if bot
            .send_rtp(&voice, i as u16, 960 * i, false, payload)
            .is_err()
        {
            refused = true;
            break;
        }
    }
    assert!(refused, "the worker's queue never filled");
    drop(bot);
    wait_until(
        "the dropped in-process participant leaves the room",
        Duration::from_secs(5),
        || {
            !st.sfu
                .participants("drop-1")
                .iter()
                .any(|p| p.identity == "assistant")
        },
    )
    .await;
    caller.leave().await;
    s.stop().await;
}
