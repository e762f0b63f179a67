//! SFU core over the LiveKit protocol with real WebRTC peers (webrtc-rs `rtc` clients on 127.0.0.1).

mod common;
#[path = "common/lk.rs"]
mod lk;

use common::*;
use lk::{Client, Seen};
use parlor_signaling::protocol::proto;
use parlor_signaling::VideoGrant;
use proto::signal_response::Message as Resp;
use rtc::peer_connection::state::RTCPeerConnectionState;
use std::collections::BTreeMap;
use std::time::Duration;

fn payload(i: u16) -> Vec<u8> {
    // A known pattern: index, then bytes derived from it.
    let mut v = vec![0xF8, (i >> 8) as u8, i as u8];
    v.extend((0..40u8).map(|k| k.wrapping_mul(7).wrapping_add(i as u8)));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_audio_mute_and_leave() {
    let db = TestDb::sqlite();
    let s = TestServer::start(&db).await;
    let mut a = Client::connect(&s.ws, &s.token("alice", VideoGrant::join("room-1")), true).await;
    let mut b = Client::connect(&s.ws, &s.token("bob", VideoGrant::join("room-1")), false).await;
    assert_eq!(b.join.room.as_ref().unwrap().name, "room-1");
    assert!(b.join.participant.as_ref().unwrap().sid.starts_with("PA_"));
    assert!(b.join.ping_interval > 0 && b.join.ping_timeout > 0);
    assert!(!b.join.server_info.as_ref().unwrap().version.is_empty());
    assert_eq!(b.join.other_participants.len(), 1);
    assert_eq!(b.join.other_participants[0].identity, "alice");

    let track = a.publish_audio().await;
    assert!(track.sid.starts_with("TR_"));
    a.wait_for(|s| {
        matches!(s, Seen::PublisherState(RTCPeerConnectionState::Connected)).then_some(())
    })
    .await;

    // Send 250 packets (5 s of 20 ms frames) with a known payload pattern.
    let sender = {
        let n = 250u16;
        let pub_client = &a;
        for i in 0..n {
            pub_client.send_rtp(payload(i)).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        n
    };
    // B: participant update with the track, a subscriber offer, connected, then the packets.
    let mut got: BTreeMap<u16, Vec<u8>> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut saw_track_update = false;
    while tokio::time::Instant::now() < deadline && got.len() < sender as usize {
        match tokio::time::timeout_at(deadline, b.seen.recv()).await {
            Ok(Some(Seen::Rtp { payload, .. })) => {
                assert!(
                    payload.len() >= 3 && payload[0] == 0xF8,
                    "payload corrupted: {payload:?}"
                );
                let i = u16::from_be_bytes([payload[1], payload[2]]);
                assert_eq!(payload, self::payload(i), "payload {i} altered");
                got.insert(i, payload);
            }
            Ok(Some(Seen::Signal(Resp::Update(u)))) => {
                if u.participants
                    .iter()
                    .any(|p| p.identity == "alice" && p.tracks.iter().any(|t| t.sid == track.sid))
                {
                    saw_track_update = true;
                }
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    assert!(
        saw_track_update,
        "B never saw alice's track in a ParticipantUpdate"
    );
    // The first packets may go out before B's subscriber PC is connected; count from the first received.
    let first = *got.keys().next().expect("B received no RTP at all");
    let expected = sender - first;
    let ratio = got.len() as f64 / expected as f64;
    println!(
        "B received {} of {} packets after the first ({:.1}%)",
        got.len(),
        expected,
        ratio * 100.0
    );
    assert!(ratio >= 0.99, "received {} of {expected}", got.len());
    assert!(
        first < 100,
        "subscription took too long: first packet index {first}"
    );

    // Mute: B sees the track muted.
    a.send(proto::signal_request::Message::Mute(
        proto::MuteTrackRequest {
            sid: track.sid.clone(),
            muted: true,
        },
    ))
    .await;
    b.wait_for(|s| match s {
        Seen::Signal(Resp::Update(u)) => u
            .participants
            .iter()
            .any(|p| {
                p.identity == "alice" && p.tracks.iter().any(|t| t.sid == track.sid && t.muted)
            })
            .then_some(()),
        _ => None,
    })
    .await;
    // The participants API view follows.
    let snap = s.handle.state.sfu.participants("room-1");
    assert_eq!(snap.len(), 2);
    assert!(
        snap.iter().all(|p| !p.audio),
        "muted track still counted: {snap:?}"
    );

    // A leaves: B gets DISCONNECTED and a renegotiation offer for its subscriber PC.
    a.leave().await;
    let mut left = false;
    let mut reoffer = false;
    while !(left && reoffer) {
        b.wait_for(|s| match s {
            Seen::Signal(Resp::Update(u)) => {
                if u.participants.iter().any(|p| {
                    p.identity == "alice"
                        && p.state == proto::participant_info::State::Disconnected as i32
                }) {
                    left = true;
                }
                Some(())
            }
            Seen::Signal(Resp::Offer(o)) => {
                if o.id >= 2 {
                    reoffer = true;
                }
                Some(())
            }
            _ => None,
        })
        .await;
    }
    assert_eq!(s.handle.state.sfu.participants("room-1").len(), 1);
    b.leave().await;
    s.stop().await;
}

/// Bad input on the signaling path gets a clean close, and the other participants keep being served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_contained() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as WsMsg;
    let db = TestDb::sqlite();
    let s = TestServer::start_with(&db, |c| c.limits.max_signal_messages_per_sec = 50).await;
    // A healthy pair that must keep working throughout.
    let mut a = Client::connect(&s.ws, &s.token("alice", VideoGrant::join("calm")), true).await;
    let mut b = Client::connect(&s.ws, &s.token("bob", VideoGrant::join("calm")), false).await;
    a.publish_audio().await;

    // Token for another room cannot join this one; a forged or missing token never upgrades.
    let connect = |url: String| async move { tokio_tungstenite::connect_async(url).await };
    let bad_sig = parlor_signaling::AccessToken::for_join(
        KEY,
        "wrong-secret",
        "eve",
        VideoGrant::join("calm"),
        now_unix(),
        60,
    );
    for (tok, want) in [(bad_sig.as_str(), 401u16), ("garbage", 401)] {
        match connect(format!("{}/rtc?access_token={tok}", s.ws)).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                assert_eq!(r.status().as_u16(), want)
            }
            other => panic!("bad token upgraded: {:?}", other.map(|_| ())),
        }
    }
    let other_room = s.token("mallory", VideoGrant::join("elsewhere"));
    let c = Client::connect(&s.ws, &other_room, false).await;
    assert_eq!(
        c.join.room.as_ref().unwrap().name,
        "elsewhere",
        "token for room elsewhere joined another room"
    );
    assert!(c.join.other_participants.is_empty());
    c.leave().await;
    // The validate endpoint explains failures the way the JS SDK expects.
    let r = s
        .client
        .get(s.url("/rtc/validate?access_token=garbage"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // v1 is served (the SDKs' default): its validate answers like v0's, readable cross-origin.
    let r = s
        .client
        .get(s.url("/rtc/v1/validate?access_token=garbage"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let ok = s.token("checker", VideoGrant::join("calm"));
    let r = s
        .client
        .get(s.url(&format!("/rtc/v1/validate?access_token={ok}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "success");
    // A subscriber-only token cannot publish.
    let mut ro = VideoGrant::join("calm");
    ro.can_publish = Some(false);
    let mut viewer = Client::connect(&s.ws, &s.token("viewer", ro), true).await;
    assert!(
        !viewer
            .join
            .participant
            .as_ref()
            .unwrap()
            .permission
            .as_ref()
            .unwrap()
            .can_publish
    );
    viewer
        .send(proto::signal_request::Message::AddTrack(
            proto::AddTrackRequest {
                cid: "x".into(),
                r#type: proto::TrackType::Audio as i32,
                ..Default::default()
            },
        ))
        .await;
    viewer
        .wait_for(|s| match s {
            Seen::Signal(Resp::RequestResponse(r)) => Some(r.reason),
            Seen::Signal(Resp::TrackPublished(_)) => panic!("publish allowed without canPublish"),
            _ => None,
        })
        .await;
    viewer.leave().await;

    // Malformed protobuf → clean close.
    let m = Client::connect(&s.ws, &s.token("m1", VideoGrant::join("calm")), false).await;
    let mut m = m;
    m.send_raw(vec![0xff, 0xff, 0xff, 0xff, 0x0f]).await;
    m.wait_for(|s| matches!(s, Seen::Closed).then_some(()))
        .await;
    // Invalid SDP → clean close.
    let mut m = Client::connect(&s.ws, &s.token("m2", VideoGrant::join("calm")), false).await;
    m.send(proto::signal_request::Message::Offer(
        proto::SessionDescription {
            r#type: "offer".into(),
            sdp: "v=0\r\nthis is not sdp\r\n".into(),
            id: 1,
            ..Default::default()
        },
    ))
    .await;
    m.wait_for(|s| matches!(s, Seen::Closed).then_some(()))
        .await;
    // Text frame and oversized frame.
    let (mut ws, _) = connect(format!(
        "{}/rtc?access_token={}",
        s.ws,
        s.token("m3", VideoGrant::join("calm"))
    ))
    .await
    .unwrap();
    let _join = ws.next().await;
    ws.send(WsMsg::Text("{\"hello\": 1}".into())).await.unwrap();
    let mut closed = false;
    while let Some(Ok(msg)) = ws.next().await {
        if matches!(msg, WsMsg::Close(_)) {
            closed = true;
            break;
        }
    }
    assert!(closed, "text frame did not close the session");
    let (mut ws, _) = connect(format!(
        "{}/rtc?access_token={}",
        s.ws,
        s.token("m4", VideoGrant::join("calm"))
    ))
    .await
    .unwrap();
    let _join = ws.next().await;
    let _ = ws
        .send(WsMsg::Binary(vec![0u8; 2 * 1024 * 1024].into()))
        .await;
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(msg)) = ws.next().await {
            if matches!(msg, WsMsg::Close(_)) {
                break;
            }
        }
    })
    .await;
    assert!(end.is_ok(), "oversized frame did not end the session");
    // Flood: many valid pings quickly → closed for flooding.
    let mut f = Client::connect(&s.ws, &s.token("flood", VideoGrant::join("calm")), false).await;
    for i in 0..500 {
        f.send(proto::signal_request::Message::Ping(i)).await;
    }
    f.wait_for(|s| matches!(s, Seen::Closed).then_some(()))
        .await;

    // Through all of that, alice → bob media kept flowing.
    for i in 0..100u16 {
        a.send_rtp(payload(i)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut n = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while n < 50 {
        match tokio::time::timeout_at(deadline, b.seen.recv()).await {
            Ok(Some(Seen::Rtp { .. })) => n += 1,
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    assert!(n >= 50, "media stopped after bad input: {n} packets");
    let errors = s.metrics().await;
    assert!(errors
        .lines()
        .any(|l| l.starts_with("parlor_signal_errors_total ") && !l.ends_with(" 0")));
    assert_eq!(
        s.client
            .get(s.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    a.leave().await;
    b.leave().await;
    s.stop().await;
}

/// Max participants is enforced; an empty room closes after the grace period and the participant list
/// follows joins and leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_limits_and_empty_close() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message as WsMsg;
    let db = TestDb::sqlite();
    let s = TestServer::start_with(&db, |c| {
        c.room.max_participants = 2;
        c.room.empty_timeout_secs = 1;
    })
    .await;
    let a = Client::connect(&s.ws, &s.token("a", VideoGrant::join("small")), false).await;
    let b = Client::connect(&s.ws, &s.token("b", VideoGrant::join("small")), false).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "{}/rtc?access_token={}",
        s.ws,
        s.token("c", VideoGrant::join("small"))
    ))
    .await
    .unwrap();
    let first = ws.next().await.unwrap().unwrap();
    let WsMsg::Binary(bytes) = first else {
        panic!("expected a binary leave, got {first:?}")
    };
    match parlor_signaling::protocol::decode_response(&bytes).unwrap() {
        Resp::Leave(l) => assert_eq!(l.action, proto::leave_request::Action::Disconnect as i32),
        other => panic!("third participant was not refused: {other:?}"),
    }
    assert_eq!(s.handle.state.sfu.participants("small").len(), 2);
    assert_eq!(s.handle.state.sfu.rooms(), vec!["small".to_string()]);
    // A hidden participant (a recorder) still gets into the full room and does not count.
    let st = &s.handle.state;
    let _rec = parlor::sfu::local::LocalParticipant::join(
        &st.sfu,
        &st.workers,
        st.config.room.max_rooms,
        parlor::sfu::local::LocalOptions {
            room: "small".into(),
            identity: "rec".into(),
            name: String::new(),
            kind: proto::participant_info::Kind::Egress,
            subscribe: true,
            publish: false,
            publish_data: false,
            hidden: true,
        },
    )
    .await
    .expect("hidden join into a full room");
    assert_eq!(s.handle.state.sfu.participants("small").len(), 2);
    a.leave().await;
    b.leave().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !s.handle.state.sfu.rooms().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "empty room never closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.stop().await;
}

/// One room model: the room `POST /api/rooms` creates is the room the SFU runs. Its sid is the sid
/// clients see in their JoinResponse, its `max_participants` is what the worker enforces (below the
/// config limit), and when the live room closes the stored room is marked closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_room_is_the_live_room() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message as WsMsg;
    let db = TestDb::sqlite();
    // The config allows 100 participants per room; the stored room allows 2.
    let s = TestServer::start_with(&db, |c| c.room.empty_timeout_secs = 1).await;
    assert!(s.handle.state.config.room.max_participants > 2);
    let admin = {
        let mut g = VideoGrant::join("stored");
        g.room_create = true;
        s.token("admin", g)
    };
    let r = s
        .client
        .post(s.url("/api/rooms"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({ "name": "stored", "max_participants": 2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: serde_json::Value = r.json().await.unwrap();
    let sid = created["room"]["sid"].as_str().unwrap().to_string();
    assert_eq!(
        created["room"]["closed_at"],
        serde_json::Value::Null,
        "{created}"
    );

    let a = Client::connect(&s.ws, &s.token("a", VideoGrant::join("stored")), false).await;
    let b = Client::connect(&s.ws, &s.token("b", VideoGrant::join("stored")), false).await;
    for c in [&a, &b] {
        let room = c.join.room.as_ref().unwrap();
        assert_eq!(room.sid, sid, "the live room is not the stored room");
        assert_eq!(room.max_participants, 2);
    }
    // The third participant is refused the way a full room refuses (a LeaveRequest, DISCONNECT).
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "{}/rtc?access_token={}",
        s.ws,
        s.token("c", VideoGrant::join("stored"))
    ))
    .await
    .unwrap();
    let first = ws.next().await.unwrap().unwrap();
    let WsMsg::Binary(bytes) = first else {
        panic!("expected a binary leave, got {first:?}")
    };
    match parlor_signaling::protocol::decode_response(&bytes).unwrap() {
        Resp::Leave(l) => assert_eq!(l.action, proto::leave_request::Action::Disconnect as i32),
        other => panic!("third participant was not refused: {other:?}"),
    }
    assert_eq!(s.handle.state.sfu.participants("stored").len(), 2);

    // Everyone leaves; after the empty timeout the live room closes and so does the stored one.
    a.leave().await;
    b.leave().await;
    let get = |t: String| {
        let (c, url) = (s.client.clone(), s.url("/api/rooms/stored"));
        async move {
            let r = c.get(url).bearer_auth(t).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let started = std::time::Instant::now();
    let closed = loop {
        let v = get(s.user_token("viewer")).await;
        assert_eq!(v["room"]["sid"], sid.as_str(), "{v}");
        if !v["room"]["closed_at"].is_null() {
            break v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the stored room was never closed: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        closed["room"]["closed_at"].as_i64().unwrap()
            >= closed["room"]["created_at"].as_i64().unwrap()
    );
    eprintln!(
        "stored room closed {:?} after the last leave",
        started.elapsed()
    );
    // A closed room is out of the open-room list, and its name can be created again (a new sid).
    let list: serde_json::Value = s
        .client
        .get(s.url("/api/rooms"))
        .bearer_auth(s.user_token("viewer"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["count"], 0, "{list}");
    let r = s
        .client
        .post(s.url("/api/rooms"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({ "name": "stored" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let again: serde_json::Value = r.json().await.unwrap();
    assert_ne!(again["room"]["sid"], sid.as_str(), "{again}");
    assert_eq!(
        again["room"]["closed_at"],
        serde_json::Value::Null,
        "{again}"
    );
    s.stop().await;
}

/// Rooms are spread over the media workers (one thread and UDP port each); each room's media flows
/// on its own worker, and a room keeps its worker for every later join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_spread_over_media_workers() {
    let db = TestDb::sqlite();
    let s = TestServer::start_with(&db, |c| c.rtc.workers = 2).await;
    let sfu = s.handle.state.sfu.clone();
    assert_eq!(s.handle.state.workers.len(), 2);
    let ports: Vec<u16> = s
        .handle
        .state
        .workers
        .iter()
        .map(|w| w.udp_addr.port())
        .collect();
    assert_ne!(ports[0], ports[1], "each worker has its own UDP socket");

    let mut rooms = Vec::new();
    for room in ["spread-1", "spread-2"] {
        let mut a = Client::connect(&s.ws, &s.token("pub", VideoGrant::join(room)), true).await;
        let b = Client::connect(&s.ws, &s.token("sub", VideoGrant::join(room)), false).await;
        a.publish_audio().await;
        a.wait_for(|s| {
            matches!(s, Seen::PublisherState(RTCPeerConnectionState::Connected)).then_some(())
        })
        .await;
        rooms.push((room, a, b));
    }
    let w1 = sfu.room_worker("spread-1").expect("room 1 placed");
    let w2 = sfu.room_worker("spread-2").expect("room 2 placed");
    assert_ne!(
        w1, w2,
        "two rooms on an idle server go to different workers"
    );

    // Media flows in both rooms at once.
    for (room, a, b) in rooms.iter_mut() {
        let mut received = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut i = 0u16;
        while received < 20 && tokio::time::Instant::now() < deadline {
            a.send_rtp(payload(i)).await;
            i = i.wrapping_add(1);
            while let Ok(Some(seen)) =
                tokio::time::timeout(Duration::from_millis(20), b.seen.recv()).await
            {
                if let Seen::Rtp { payload, .. } = seen {
                    let k = u16::from_be_bytes([payload[1], payload[2]]);
                    assert_eq!(payload, self::payload(k), "payload altered in {room}");
                    received += 1;
                }
            }
        }
        assert!(received >= 20, "{room}: only {received} packets forwarded");
    }
    // A later join of an open room lands on the room's worker (it sees the other participants).
    let c = Client::connect(&s.ws, &s.token("late", VideoGrant::join("spread-2")), false).await;
    assert_eq!(c.join.other_participants.len(), 2);
    assert_eq!(sfu.room_worker("spread-2"), Some(w2));
    s.stop().await;
}

/// An in-process participant (the shape of the recorder and the assistant) joins without a peer
/// connection: it is subscribed to a WebRTC client's audio and gets every packet with its arrival
/// time, publishes an Opus track that the client receives intact, shows up to clients with its kind,
/// and leaving removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_participant_subscribes_and_publishes() {
    use parlor::sfu::local::{LocalOptions, LocalParticipant};
    use parlor::sfu::worker::LocalMedia;
    use proto::participant_info::{Kind, State};

    let db = TestDb::sqlite();
    let s = TestServer::start(&db).await;
    let st = &s.handle.state;
    let mut caller =
        Client::connect(&s.ws, &s.token("caller", VideoGrant::join("local-1")), true).await;
    let track = caller.publish_audio().await;
    caller
        .wait_for(|s| {
            matches!(s, Seen::PublisherState(RTCPeerConnectionState::Connected)).then_some(())
        })
        .await;
    let mut bot = LocalParticipant::join(
        &st.sfu,
        &st.workers,
        st.config.room.max_rooms,
        LocalOptions {
            room: "local-1".into(),
            identity: "assistant".into(),
            name: "Assistant".into(),
            kind: Kind::Agent,
            subscribe: true,
            publish: true,
            publish_data: false,
            hidden: false,
        },
    )
    .await
    .expect("in-process join");
    caller
        .wait_for(|s| match s {
            Seen::Signal(Resp::Update(u)) => u
                .participants
                .iter()
                .any(|p| p.identity == "assistant" && p.kind == Kind::Agent as i32)
                .then_some(()),
            _ => None,
        })
        .await;
    let participants = st.sfu.participants("local-1");
    assert!(participants.iter().any(|p| p.identity == "assistant"));

    // The SFU opens the caller's track on its first packet; the bot is subscribed then.
    for i in 0..50u16 {
        caller.send_rtp(payload(i)).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let added = tokio::time::timeout(Duration::from_secs(5), bot.recv())
        .await
        .expect("track added in time")
        .expect("media channel open");
    let LocalMedia::TrackAdded {
        track_sid,
        publisher,
        mime_type,
        clock_rate,
        ..
    } = added
    else {
        panic!("expected TrackAdded, got {added:?}")
    };
    assert_eq!(&*track_sid, track.sid.as_str());
    assert_eq!(publisher, "caller");
    assert_eq!(mime_type.to_ascii_lowercase(), "audio/opus");
    assert_eq!(clock_rate, 48000);

    // The caller's packets reach it unchanged, in order, with non-decreasing arrival times.
    let mut got = Vec::new();
    while got.len() < 50 {
        match tokio::time::timeout(Duration::from_secs(5), bot.recv()).await {
            Ok(Some(LocalMedia::Rtp(p))) => got.push(p),
            Ok(Some(other)) => panic!("unexpected {other:?}"),
            _ => break,
        }
    }
    assert!(got.len() >= 45, "only {} of 50 packets", got.len());
    for w in got.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "sequence continuous");
        assert_eq!(w[1].timestamp, w[0].timestamp.wrapping_add(960));
        assert!(w[1].arrival >= w[0].arrival);
    }
    for p in &got {
        let i = u16::from_be_bytes([p.payload[1], p.payload[2]]);
        assert_eq!(&p.payload[..], &payload(i)[..], "payload {i} altered");
        assert_eq!(&*p.track_sid, track.sid.as_str());
    }

    // It publishes; the caller is subscribed (auto) and receives its packets intact.
    let voice = bot.publish_audio("voice").await.expect("publish");
    let mut received = 0;
    let mut i = 0u16;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while received < 30 && tokio::time::Instant::now() < deadline {
        let mut p = payload(i);
        p[0] = 0xFC;
        bot.send_rtp(
            &voice,
            7000u16.wrapping_add(i),
            960 * i as u32,
            false,
            p.into(),
        )
        .expect("worker queue has room");
        i = i.wrapping_add(1);
        while let Ok(Some(seen)) =
            tokio::time::timeout(Duration::from_millis(20), caller.seen.recv()).await
        {
            if let Seen::Rtp { track, payload, .. } = seen {
                assert_eq!(track, &*voice.sid, "the caller hears the bot's track");
                assert_eq!(payload[0], 0xFC);
                let k = u16::from_be_bytes([payload[1], payload[2]]);
                let mut want = self::payload(k);
                want[0] = 0xFC;
                assert_eq!(payload, want, "bot payload {k} altered");
                received += 1;
            }
        }
    }
    assert!(received >= 30, "caller got {received} of the bot's packets");

    // Leaving: the caller sees it disconnect, the participants API drops it.
    bot.leave().await;
    caller
        .wait_for(|s| match s {
            Seen::Signal(Resp::Update(u)) => u
                .participants
                .iter()
                .any(|p| p.identity == "assistant" && p.state == State::Disconnected as i32)
                .then_some(()),
            _ => None,
        })
        .await;
    assert!(!st
        .sfu
        .participants("local-1")
        .iter()
        .any(|p| p.identity == "assistant"));
    s.stop().await;
}

/// A hidden in-process participant (the recorder's shape): clients and the participants API never
/// see it, it still gets the media, it may not publish, it does not keep the room open, and it is
/// removed (its media channel ends) when the room closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_in_process_participant_is_invisible_and_closes_with_the_room() {
    use parlor::sfu::local::{LocalOptions, LocalParticipant};
    use parlor::sfu::worker::LocalMedia;

    let db = TestDb::sqlite();
    let s = TestServer::start(&db).await; // empty_timeout 1 s
    let st = &s.handle.state;
    let mut caller = Client::connect(
        &s.ws,
        &s.token("caller", VideoGrant::join("hidden-1")),
        true,
    )
    .await;
    caller.publish_audio().await;
    caller
        .wait_for(|s| {
            matches!(s, Seen::PublisherState(RTCPeerConnectionState::Connected)).then_some(())
        })
        .await;
    let mut rec = LocalParticipant::join(
        &st.sfu,
        &st.workers,
        st.config.room.max_rooms,
        LocalOptions {
            room: "hidden-1".into(),
            identity: "recorder".into(),
            name: "Recorder".into(),
            kind: proto::participant_info::Kind::Egress,
            subscribe: true,
            publish: false,
            publish_data: false,
            hidden: true,
        },
    )
    .await
    .expect("hidden join");
    assert!(
        rec.publish_audio("nope").await.is_err(),
        "hidden may not publish"
    );
    for i in 0..30u16 {
        caller.send_rtp(payload(i)).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut rtp = 0;
    while rtp < 20 {
        match tokio::time::timeout(Duration::from_secs(5), rec.recv()).await {
            Ok(Some(LocalMedia::Rtp(_))) => rtp += 1,
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    assert!(rtp >= 20, "hidden participant got {rtp} packets");
    // Invisible: not in the participants API; a late joiner is not told about it.
    let ids: Vec<String> = st
        .sfu
        .participants("hidden-1")
        .into_iter()
        .map(|p| p.identity)
        .collect();
    assert_eq!(ids, vec!["caller".to_string()]);
    let late = Client::connect(&s.ws, &s.token("late", VideoGrant::join("hidden-1")), false).await;
    let others: Vec<&str> = late
        .join
        .other_participants
        .iter()
        .map(|p| p.identity.as_str())
        .collect();
    assert_eq!(others, vec!["caller"]);
    // The caller was never told about it either.
    while let Ok(Some(seen)) =
        tokio::time::timeout(Duration::from_millis(200), caller.seen.recv()).await
    {
        if let Seen::Signal(Resp::Update(u)) = seen {
            assert!(
                u.participants.iter().all(|p| p.identity != "recorder"),
                "recorder announced: {u:?}"
            );
        }
    }
    // Everyone visible leaves: the room closes after empty_timeout despite the recorder, whose
    // media channel then ends.
    caller.leave().await;
    late.leave().await;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while rec.recv().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "hidden participant outlived its room");
    // The worker releases the room's placement right after removing its participants.
    let mut placed = true;
    for _ in 0..50 {
        placed = st.sfu.room_worker("hidden-1").is_some();
        if !placed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!placed, "room still placed");
    s.stop().await;
}
