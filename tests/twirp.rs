//! LiveKit's Twirp RoomService against a real server: both codecs, grants, Twirp errors, and the
//! effects of its methods seen by a real WebRTC participant (webrtc-rs `rtc` client).

mod common;
#[path = "common/lk.rs"]
mod lk;
#[path = "common/twirp.rs"]
mod twirp;

use common::*;
use lk::{Client, Seen};
use parlor_signaling::protocol::proto;
use parlor_signaling::VideoGrant;
use std::time::Duration;
use twirp::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_service_rooms_and_participants() {
    let db = TestDb::sqlite();
    let s = TestServer::start(&db).await;
    let creator = admin_token(create_grant());

    // CreateRoom over JSON (camelCase in, proto3 JSON out: int64 as strings), then again over
    // protobuf: idempotent, the same room comes back.
    let (st, room) = twirp_json(
        &s,
        "CreateRoom",
        &creator,
        serde_json::json!({ "name": "tw-1", "maxParticipants": 2 }),
    )
    .await;
    assert_eq!(st, 200, "{room}");
    assert_eq!(room["name"], "tw-1");
    assert_eq!(room["maxParticipants"], 2);
    let sid = room["sid"].as_str().unwrap().to_string();
    assert!(sid.starts_with("RM_"), "{room}");
    let again: proto::Room = twirp_pb(
        &s,
        "CreateRoom",
        &creator,
        &proto::CreateRoomRequest {
            name: "tw-1".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(again.sid, sid);

    // Grants: no roomCreate -> permission_denied (403); no token -> unauthenticated (401).
    let joiner = s.token("x", VideoGrant::join("tw-1"));
    let (st, err) = twirp_json(
        &s,
        "CreateRoom",
        &joiner,
        serde_json::json!({ "name": "tw-2" }),
    )
    .await;
    assert_eq!(
        (st, err["code"].as_str()),
        (403, Some("permission_denied")),
        "{err}"
    );
    let r = s
        .client
        .post(s.url("/twirp/livekit.RoomService/ListRooms"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let err: serde_json::Value = r.json().await.unwrap();
    assert_eq!(err["code"], "unauthenticated");
    // Bad bodies and routes.
    let (st, err) = twirp_json(&s, "NoSuchMethod", &creator, serde_json::json!({})).await;
    assert_eq!((st, err["code"].as_str()), (404, Some("bad_route")));
    let bad: Result<proto::Room, _> = twirp_pb(
        &s,
        "CreateRoom",
        &creator,
        &proto::DeleteRoomRequest {
            room: "no such/name".into(),
        },
    )
    .await;
    let (st, err) = bad.unwrap_err();
    assert_eq!(
        (st, err["code"].as_str()),
        (400, Some("invalid_argument")),
        "{err}"
    );

    // Two real participants join the stored room; its limit (2) holds for a third.
    let mut a = Client::connect(&s.ws, &s.token("alice", VideoGrant::join("tw-1")), true).await;
    let mut b = Client::connect(&s.ws, &s.token("bob", VideoGrant::join("tw-1")), false).await;
    assert_eq!(
        a.join.room.as_ref().map(|r| r.sid.as_str()),
        Some(sid.as_str())
    );
    let admin = admin_token(admin_grant("tw-1"));
    let list: proto::ListParticipantsResponse = twirp_pb(
        &s,
        "ListParticipants",
        &admin,
        &proto::ListParticipantsRequest {
            room: "tw-1".into(),
        },
    )
    .await
    .unwrap();
    let mut ids: Vec<&str> = list
        .participants
        .iter()
        .map(|p| p.identity.as_str())
        .collect();
    ids.sort();
    assert_eq!(ids, ["alice", "bob"]);
    let rooms: proto::ListRoomsResponse = twirp_pb(
        &s,
        "ListRooms",
        &creator,
        &proto::ListRoomsRequest {
            names: vec!["tw-1".into()],
        },
    )
    .await
    .unwrap();
    assert_eq!(rooms.rooms.len(), 1);
    assert_eq!(rooms.rooms[0].num_participants, 2);
    assert_eq!(rooms.rooms[0].sid, sid);
    // roomAdmin for another room is not roomAdmin for this one.
    let other = admin_token(admin_grant("elsewhere"));
    let (st, err) = twirp_json(
        &s,
        "GetParticipant",
        &other,
        serde_json::json!({ "room": "tw-1", "identity": "bob" }),
    )
    .await;
    assert_eq!((st, err["code"].as_str()), (403, Some("permission_denied")));
    let (st, bob) = twirp_json(
        &s,
        "GetParticipant",
        &admin,
        serde_json::json!({ "room": "tw-1", "identity": "bob" }),
    )
    .await;
    assert_eq!(st, 200, "{bob}");
    assert_eq!(bob["identity"], "bob");
    let (st, err) = twirp_json(
        &s,
        "GetParticipant",
        &admin,
        serde_json::json!({ "room": "tw-1", "identity": "carol" }),
    )
    .await;
    assert_eq!((st, err["code"].as_str()), (404, Some("not_found")));

    // UpdateParticipant: alice sees bob's new metadata and name in a ParticipantUpdate.
    let (st, info) = twirp_json(
        &s,
        "UpdateParticipant",
        &admin,
        serde_json::json!({ "room": "tw-1", "identity": "bob", "metadata": "m1", "name": "Bob B." }),
    )
    .await;
    assert_eq!(st, 200, "{info}");
    assert_eq!(info["metadata"], "m1");
    let seen = a
        .wait_for(|e| match e {
            Seen::Signal(proto::signal_response::Message::Update(u)) => u
                .participants
                .iter()
                .find(|p| p.identity == "bob" && p.metadata == "m1")
                .map(|p| p.name.clone()),
            _ => None,
        })
        .await;
    assert_eq!(seen, "Bob B.");
    // RemoveParticipant: bob is told (LeaveRequest, PARTICIPANT_REMOVED) and is gone from the list.
    let _: proto::RemoveParticipantResponse = twirp_pb(
        &s,
        "RemoveParticipant",
        &admin,
        &proto::RoomParticipantIdentity {
            room: "tw-1".into(),
            identity: "bob".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let reason = leave_reason(&mut b).await;
    assert_eq!(reason, proto::DisconnectReason::ParticipantRemoved as i32);
    let list: proto::ListParticipantsResponse = twirp_pb(
        &s,
        "ListParticipants",
        &admin,
        &proto::ListParticipantsRequest {
            room: "tw-1".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(list.participants.len(), 1);
    assert_eq!(list.participants[0].identity, "alice");

    // DeleteRoom: alice is told ROOM_DELETED; the stored room is closed; a second delete is not_found.
    let _: proto::DeleteRoomResponse = twirp_pb(
        &s,
        "DeleteRoom",
        &creator,
        &proto::DeleteRoomRequest {
            room: "tw-1".into(),
        },
    )
    .await
    .unwrap();
    let reason = leave_reason(&mut a).await;
    assert_eq!(reason, proto::DisconnectReason::RoomDeleted as i32);
    let stored = s.handle.state.store.get_room("tw-1").await.unwrap();
    assert!(stored.closed_at.is_some());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while s.handle.state.sfu.room_worker("tw-1").is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "live room still open after DeleteRoom"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (st, err) = twirp_json(
        &s,
        "DeleteRoom",
        &creator,
        serde_json::json!({ "room": "tw-1" }),
    )
    .await;
    assert_eq!(
        (st, err["code"].as_str()),
        (404, Some("not_found")),
        "{err}"
    );
    // SendData to a room that is gone: not_found (nothing is queued for later).
    let (st, err) = twirp_json(
        &s,
        "SendData",
        &admin,
        serde_json::json!({ "room": "tw-1", "data": "aGk=" }),
    )
    .await;
    assert_eq!(
        (st, err["code"].as_str()),
        (404, Some("not_found")),
        "{err}"
    );
    // UpdateRoomMetadata of a room that is gone: not_found.
    let (st, err) = twirp_json(
        &s,
        "UpdateRoomMetadata",
        &admin,
        serde_json::json!({ "room": "tw-1", "metadata": "x" }),
    )
    .await;
    assert_eq!((st, err["code"].as_str()), (404, Some("not_found")));
    // Not built: an honest Twirp `unimplemented`.
    let (st, err) = twirp_json(
        &s,
        "MoveParticipant",
        &admin,
        serde_json::json!({ "room": "tw-1" }),
    )
    .await;
    assert_eq!((st, err["code"].as_str()), (501, Some("unimplemented")));
    s.stop().await;
}
