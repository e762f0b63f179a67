//! LiveKit Twirp calls for the RoomService tests: protobuf and JSON codecs, server-SDK tokens.
#![allow(dead_code)]

use super::common::*;
use super::lk::{Client, Seen};
use parlor_signaling::protocol::proto;
use parlor_signaling::VideoGrant;
use prost::Message;
use std::time::Duration;

/// A server-SDK style token: no identity, only the given grant.
pub fn admin_token(grant: VideoGrant) -> String {
    parlor_signaling::AccessToken::for_join(KEY, SECRET, "", grant, now_unix(), 600)
}

/// A RoomService call in protobuf: the reply, or the status and Twirp error JSON.
pub async fn twirp_pb<Req: Message, Res: Message + Default>(
    s: &TestServer,
    method: &str,
    token: &str,
    req: &Req,
) -> Result<Res, (u16, serde_json::Value)> {
    twirp_pb_at(s, "livekit.RoomService", method, token, req).await
}

/// A call of `service`'s `method` in protobuf.
pub async fn twirp_pb_at<Req: Message, Res: Message + Default>(
    s: &TestServer,
    service: &str,
    method: &str,
    token: &str,
    req: &Req,
) -> Result<Res, (u16, serde_json::Value)> {
    let r = s
        .client
        .post(s.url(&format!("/twirp/{service}/{method}")))
        .bearer_auth(token)
        .header("content-type", "application/protobuf")
        .body(req.encode_to_vec())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = r.bytes().await.unwrap();
    if status == 200 {
        assert_eq!(ct, "application/protobuf", "{method}");
        Ok(Res::decode(body.as_ref()).unwrap())
    } else {
        assert_eq!(ct, "application/json", "Twirp errors are JSON ({method})");
        Err((status, serde_json::from_slice(&body).unwrap()))
    }
}

pub async fn twirp_json(
    s: &TestServer,
    method: &str,
    token: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = s
        .client
        .post(s.url(&format!("/twirp/livekit.RoomService/{method}")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

pub fn create_grant() -> VideoGrant {
    VideoGrant {
        room_create: true,
        room_list: true,
        ..Default::default()
    }
}

pub fn admin_grant(room: &str) -> VideoGrant {
    VideoGrant {
        room: Some(room.into()),
        room_admin: true,
        ..Default::default()
    }
}

/// The reason of the LeaveRequest `c` receives (or fails after 10 s).
pub async fn leave_reason(c: &mut Client) -> i32 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, c.seen.recv()).await {
            Ok(Some(Seen::Signal(proto::signal_response::Message::Leave(l)))) => return l.reason,
            Ok(Some(Seen::Closed)) | Ok(None) => panic!("session closed without a LeaveRequest"),
            Ok(Some(_)) => {}
            Err(_) => panic!("no LeaveRequest within 10 s"),
        }
    }
}
