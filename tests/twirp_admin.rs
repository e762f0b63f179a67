//! RoomService's changes of a live room, each checked from real WebRTC participants (webrtc-rs
//! `rtc` clients): CreateRoom's options (metadata, departure and empty timeouts), UpdateRoomMetadata
//! (RoomUpdate), MutePublishedTrack (the publisher is asked to mute, the others see it; no remote
//! unmute by default), UpdateSubscriptions, UpdateParticipant's attributes and permission (revoking
//! canPublish unpublishes the track: the publisher is told, the subscriber loses it).

mod common;
#[path = "common/lk.rs"]
mod lk;
#[path = "common/twirp.rs"]
mod twirp;

use common::*;
use lk::{Client, Seen};
use parlor_signaling::protocol::proto;
use parlor_signaling::VideoGrant;
use proto::signal_response::Message as Resp;
use rtc::peer_connection::state::RTCPeerConnectionState;
use std::time::Duration;
use twirp::*;

/// `who`'s info in a ParticipantUpdate `e`, if it is one and `pred` holds for it.
fn update_of(
    e: &Seen,
    who: &str,
    pred: impl Fn(&proto::ParticipantInfo) -> bool,
) -> Option<proto::ParticipantInfo> {
    match e {
        Seen::Signal(Resp::Update(u)) => u
            .participants
            .iter()
            .find(|p| p.identity == who && pred(p))
            .cloned(),
        _ => None,
    }
}

/// Send Opus-like packets from `a` until `b` receives one (10 s at most).
async fn media_flows(a: &Client, b: &mut Client) -> bool {
    for i in 0..500u16 {
        a.send_rtp(vec![0xF8, (i >> 8) as u8, i as u8, 1, 2, 3])
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        while let Ok(s) = b.seen.try_recv() {
            if matches!(s, Seen::Rtp { .. }) {
                return true;
            }
        }
    }
    false
}

/// Packets `b` still receives of 50 that `a` sends after a quiet half second (packets in flight
/// when a subscription ended may arrive; later ones may not).
async fn media_leaks(a: &Client, b: &mut Client) -> usize {
    tokio::time::sleep(Duration::from_millis(500)).await;
    while b.seen.try_recv().is_ok() {}
    let mut leaked = 0;
    for i in 0..50u16 {
        a.send_rtp(vec![0xF8, 0xFF, i as u8, 1, 2, 3]).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        while let Ok(e) = b.seen.try_recv() {
            leaked += usize::from(matches!(e, Seen::Rtp { .. }));
        }
    }
    leaked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_service_changes_reach_participants() {
    let db = TestDb::sqlite();
    let s = TestServer::start(&db).await;
    let creator = admin_token(create_grant());
    let admin = admin_token(admin_grant("adm"));

    // CreateRoom's metadata and departure timeout are the live room's.
    let room: proto::Room = twirp_pb(
        &s,
        "CreateRoom",
        &creator,
        &proto::CreateRoomRequest {
            name: "adm".into(),
            metadata: "m0".into(),
            departure_timeout: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!((room.metadata.as_str(), room.departure_timeout), ("m0", 1));
    let mut a = Client::connect(&s.ws, &s.token("alice", VideoGrant::join("adm")), true).await;
    let joined = a.join.room.clone().unwrap();
    assert_eq!(
        (joined.metadata.as_str(), joined.departure_timeout),
        ("m0", 1)
    );
    let track = a.publish_audio().await;
    a.wait_for(|e| {
        matches!(e, Seen::PublisherState(RTCPeerConnectionState::Connected)).then_some(())
    })
    .await;
    let mut b = Client::connect(&s.ws, &s.token("bob", VideoGrant::join("adm")), false).await;
    assert!(media_flows(&a, &mut b).await, "bob receives no audio");

    // UpdateRoomMetadata: everyone gets a RoomUpdate.
    let (st, r) = twirp_json(
        &s,
        "UpdateRoomMetadata",
        &admin,
        serde_json::json!({ "room": "adm", "metadata": "m1" }),
    )
    .await;
    assert_eq!((st, r["metadata"].as_str()), (200, Some("m1")), "{r}");
    let seen = b
        .wait_for(|e| match e {
            Seen::Signal(Resp::RoomUpdate(u)) => u.room.as_ref().map(|r| r.metadata.clone()),
            _ => None,
        })
        .await;
    assert_eq!(seen, "m1");

    // MutePublishedTrack: alice is asked to mute; bob sees the track muted.
    let muted: proto::MuteRoomTrackResponse = twirp_pb(
        &s,
        "MutePublishedTrack",
        &admin,
        &proto::MuteRoomTrackRequest {
            room: "adm".into(),
            identity: "alice".into(),
            track_sid: track.sid.clone(),
            muted: true,
        },
    )
    .await
    .unwrap();
    assert!(muted.track.unwrap().muted);
    let asked = a
        .wait_for(|e| match e {
            Seen::Signal(Resp::Mute(m)) => Some((m.sid.clone(), m.muted)),
            _ => None,
        })
        .await;
    assert_eq!(asked, (track.sid.clone(), true));
    b.wait_for(|e| update_of(e, "alice", |p| p.tracks.iter().any(|t| t.muted)))
        .await;
    // No remote unmute unless the server enables it.
    let (st, err) = twirp_json(
        &s,
        "MutePublishedTrack",
        &admin,
        serde_json::json!({ "room": "adm", "identity": "alice", "trackSid": track.sid, "muted": false }),
    )
    .await;
    assert_eq!(
        (st, err["code"].as_str()),
        (412, Some("failed_precondition")),
        "{err}"
    );
    let (st, err) = twirp_json(
        &s,
        "MutePublishedTrack",
        &admin,
        serde_json::json!({ "room": "adm", "identity": "alice", "trackSid": "TR_nope", "muted": true }),
    )
    .await;
    assert_eq!(
        (st, err["code"].as_str()),
        (404, Some("not_found")),
        "{err}"
    );
    // The publisher answers the request by muting (as its SDK would), then unmutes itself.
    for m in [true, false] {
        a.send(proto::signal_request::Message::Mute(
            proto::MuteTrackRequest {
                sid: track.sid.clone(),
                muted: m,
            },
        ))
        .await;
    }
    b.wait_for(|e| update_of(e, "alice", |p| p.tracks.iter().any(|t| !t.muted)))
        .await;

    // UpdateSubscriptions: bob is unsubscribed (no more media), then subscribed again.
    let _: proto::UpdateSubscriptionsResponse = twirp_pb(
        &s,
        "UpdateSubscriptions",
        &admin,
        &proto::UpdateSubscriptionsRequest {
            room: "adm".into(),
            identity: "bob".into(),
            track_sids: vec![track.sid.clone()],
            subscribe: false,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        media_leaks(&a, &mut b).await,
        0,
        "bob still receives an unsubscribed track"
    );
    let _: proto::UpdateSubscriptionsResponse = twirp_pb(
        &s,
        "UpdateSubscriptions",
        &admin,
        &proto::UpdateSubscriptionsRequest {
            room: "adm".into(),
            identity: "bob".into(),
            participant_tracks: vec![proto::ParticipantTracks {
                participant_sid: String::new(),
                track_sids: vec![track.sid.clone()],
            }],
            subscribe: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(media_flows(&a, &mut b).await, "bob not resubscribed");

    // Attributes: set, seen by bob; an empty value deletes.
    let (st, info) = twirp_json(
        &s,
        "UpdateParticipant",
        &admin,
        serde_json::json!({ "room": "adm", "identity": "alice", "attributes": { "role": "host", "x": "1" } }),
    )
    .await;
    assert_eq!(
        (st, info["attributes"]["role"].as_str()),
        (200, Some("host"))
    );
    b.wait_for(|e| {
        update_of(e, "alice", |p| {
            p.attributes.get("x").is_some_and(|v| v == "1")
        })
    })
    .await;
    let (_, info) = twirp_json(
        &s,
        "UpdateParticipant",
        &admin,
        serde_json::json!({ "room": "adm", "identity": "alice", "attributes": { "x": "" } }),
    )
    .await;
    assert_eq!(info["attributes"], serde_json::json!({ "role": "host" }));

    // A participant may change its own attributes only with canUpdateOwnMetadata (LiveKit):
    // alice's token lacks it, so her request is answered NOT_ALLOWED.
    a.send(proto::signal_request::Message::UpdateMetadata(
        proto::UpdateParticipantMetadata {
            attributes: [("self".to_string(), "set".to_string())].into(),
            request_id: 7,
            ..Default::default()
        },
    ))
    .await;
    let answer = a
        .wait_for(|e| match e {
            Seen::Signal(Resp::RequestResponse(r)) if r.request_id == 7 => Some(r.reason),
            _ => None,
        })
        .await;
    assert_eq!(answer, proto::request_response::Reason::NotAllowed as i32);

    // Revoking canPublish unpublishes alice's track: she is told, bob sees her without it and
    // stops receiving it; a new AddTrack is refused.
    let (st, info) = twirp_json(
        &s,
        "UpdateParticipant",
        &admin,
        serde_json::json!({ "room": "adm", "identity": "alice",
            "permission": { "canSubscribe": true, "canPublish": false, "canPublishData": true } }),
    )
    .await;
    assert_eq!(st, 200, "{info}");
    assert_ne!(info["permission"]["canPublish"], true, "{info}");
    assert!(
        info["tracks"].as_array().is_none_or(|t| t.is_empty()),
        "{info}"
    );
    let gone = a
        .wait_for(|e| match e {
            Seen::Signal(Resp::TrackUnpublished(t)) => Some(t.track_sid.clone()),
            _ => None,
        })
        .await;
    assert_eq!(gone, track.sid);
    b.wait_for(|e| {
        update_of(e, "alice", |p| {
            p.tracks.is_empty() && p.permission.as_ref().is_some_and(|x| !x.can_publish)
        })
    })
    .await;
    assert_eq!(
        media_leaks(&a, &mut b).await,
        0,
        "an unpublished track is still forwarded"
    );
    let list: proto::ListParticipantsResponse = twirp_pb(
        &s,
        "ListParticipants",
        &admin,
        &proto::ListParticipantsRequest { room: "adm".into() },
    )
    .await
    .unwrap();
    assert!(list.participants.iter().all(|p| p.tracks.is_empty()));

    // departure_timeout (1 s): the room closes soon after the last participant leaves.
    a.leave().await;
    b.leave().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while s.handle.state.sfu.room_worker("adm").is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "room open long after its departure timeout"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_service_empty_timeout_closes_unused_rooms() {
    let db = TestDb::sqlite();
    let s = TestServer::start(&db).await;
    let creator = admin_token(create_grant());
    for (name, empty_timeout) in [("unused", 1), ("kept", 0)] {
        let _: proto::Room = twirp_pb(
            &s,
            "CreateRoom",
            &creator,
            &proto::CreateRoomRequest {
                name: name.into(),
                empty_timeout,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    let names = || async {
        let l: proto::ListRoomsResponse = twirp_pb(
            &s,
            "ListRooms",
            &creator,
            &proto::ListRoomsRequest::default(),
        )
        .await
        .unwrap();
        let mut n: Vec<String> = l.rooms.into_iter().map(|r| r.name).collect();
        n.sort();
        n
    };
    assert_eq!(names().await, ["kept", "unused"]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while names().await.len() > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a room nobody joined outlived its empty timeout"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(names().await, ["kept"]);
    assert!(s
        .handle
        .state
        .store
        .get_room("unused")
        .await
        .unwrap()
        .closed_at
        .is_some());
    s.stop().await;
}
