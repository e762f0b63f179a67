//! `livekit.RoomService`: rooms and participants managed by LiveKit's server SDKs.
//!
//! Served: CreateRoom, ListRooms, DeleteRoom (roomCreate / roomList grants), ListParticipants,
//! GetParticipant, RemoveParticipant, MutePublishedTrack, UpdateParticipant, UpdateSubscriptions,
//! SendData and UpdateRoomMetadata (roomAdmin for the room). A room is the stored room of
//! `POST /api/rooms` / CreateRoom (the SFU opens it on its first join with its `max_participants`,
//! `departure_timeout` and metadata; `empty_timeout` closes it if nobody joins) or a live room
//! opened by a join; participants are read from, and changed by, the worker that owns the room
//! (`sfu::room_admin`). ForwardParticipant, MoveParticipant (multi-node) and PerformRpc answer
//! Twirp's `unimplemented`. Multi-node mode: `super` forwards a method naming a room to the room's
//! node ([`room_of`]) and merges every node's ListRooms ([`merge_rooms`]).

use super::{Caller, Codec, TwirpError};
use crate::api::rooms::{create_room, validate_room_name, Created, NewRoom};
use crate::sfu::worker::{AdminError, AdminOk, AdminOp};
use crate::state::AppState;
use crate::store::{RoomRecord, StoreError};
use axum::response::Response;
use parlor_signaling::protocol::proto;
use std::collections::HashMap;

pub(super) async fn call(
    state: &AppState,
    caller: &Caller,
    method: &str,
    codec: Codec,
    body: &[u8],
) -> Result<Response, TwirpError> {
    match method {
        "CreateRoom" => Ok(codec.reply(&create(state, caller, codec.decode(body)?).await?)),
        "ListRooms" => Ok(codec.reply(&list(state, caller, codec.decode(body)?).await?)),
        "DeleteRoom" => Ok(codec.reply(&delete(state, caller, codec.decode(body)?).await?)),
        "ListParticipants" => {
            Ok(codec.reply(&participants(state, caller, codec.decode(body)?).await?))
        }
        "GetParticipant" => {
            Ok(codec.reply(&participant(state, caller, codec.decode(body)?).await?))
        }
        "RemoveParticipant" => Ok(codec.reply(&remove(state, caller, codec.decode(body)?).await?)),
        "SendData" => Ok(codec.reply(&send_data(state, caller, codec.decode(body)?).await?)),
        "UpdateParticipant" => Ok(codec.reply(&update(state, caller, codec.decode(body)?).await?)),
        "MutePublishedTrack" => Ok(codec.reply(&mute(state, caller, codec.decode(body)?).await?)),
        "UpdateSubscriptions" => {
            Ok(codec.reply(&subscriptions(state, caller, codec.decode(body)?).await?))
        }
        "UpdateRoomMetadata" => {
            Ok(codec.reply(&room_metadata(state, caller, codec.decode(body)?).await?))
        }
        "ForwardParticipant" | "MoveParticipant" | "PerformRpc" => Err(TwirpError::new(
            "unimplemented",
            format!("RoomService.{method} is not implemented"),
        )),
        _ => Err(TwirpError::new(
            "bad_route",
            format!("no method RoomService.{method}"),
        )),
    }
}

/// The room a method acts on, for the methods that name one (the request is decoded again by the
/// method; a body that does not decode names none and fails there).
pub(super) fn room_of(method: &str, codec: Codec, body: &[u8]) -> Option<String> {
    fn room<T: prost::Message + Default + serde::de::DeserializeOwned>(
        codec: Codec,
        body: &[u8],
        get: impl Fn(T) -> String,
    ) -> Option<String> {
        codec.decode::<T>(body).ok().map(get)
    }
    match method {
        "DeleteRoom" => room(codec, body, |r: proto::DeleteRoomRequest| r.room),
        "ListParticipants" => room(codec, body, |r: proto::ListParticipantsRequest| r.room),
        "GetParticipant" | "RemoveParticipant" => {
            room(codec, body, |r: proto::RoomParticipantIdentity| r.room)
        }
        "SendData" => room(codec, body, |r: proto::SendDataRequest| r.room),
        "UpdateParticipant" => room(codec, body, |r: proto::UpdateParticipantRequest| r.room),
        "MutePublishedTrack" => room(codec, body, |r: proto::MuteRoomTrackRequest| r.room),
        "UpdateSubscriptions" => room(codec, body, |r: proto::UpdateSubscriptionsRequest| r.room),
        "UpdateRoomMetadata" => room(codec, body, |r: proto::UpdateRoomMetadataRequest| r.room),
        _ => None,
    }
    .filter(|r| !r.is_empty())
}

/// Merge the rooms other nodes listed into this node's list: a room open on another node is
/// listed with that node's participant counts.
pub(super) fn merge_rooms(mine: &mut proto::ListRoomsResponse, theirs: proto::ListRoomsResponse) {
    for r in theirs.rooms {
        match mine.rooms.iter_mut().find(|m| m.name == r.name) {
            Some(m) if r.num_participants > m.num_participants => *m = r,
            Some(_) => {}
            None => mine.rooms.push(r),
        }
    }
}

/// A stored or live room as LiveKit's `Room`.
fn room_proto(
    rec: Option<&RoomRecord>,
    name: &str,
    live: Option<&[proto::ParticipantInfo]>,
) -> proto::Room {
    let num_participants = live.map_or(0, |p| p.len()) as u32;
    let num_publishers =
        live.map_or(0, |p| p.iter().filter(|i| !i.tracks.is_empty()).count()) as u32;
    proto::Room {
        sid: rec.map(|r| r.sid.clone()).unwrap_or_default(),
        name: name.to_string(),
        max_participants: rec.map_or(0, |r| u32::try_from(r.max_participants).unwrap_or(0)),
        creation_time: rec.map_or(0, |r| r.created_at / 1000),
        creation_time_ms: rec.map_or(0, |r| r.created_at),
        num_participants,
        num_publishers,
        active_recording: false,
        empty_timeout: rec.map_or(0, |r| u32::try_from(r.empty_timeout_secs).unwrap_or(0)),
        departure_timeout: rec.map_or(0, |r| u32::try_from(r.departure_timeout_secs).unwrap_or(0)),
        metadata: rec.map(|r| r.metadata.clone()).unwrap_or_default(),
        ..Default::default()
    }
}

async fn create(
    state: &AppState,
    caller: &Caller,
    req: proto::CreateRoomRequest,
) -> Result<proto::Room, TwirpError> {
    if !caller.video().room_create {
        return Err(TwirpError::permission_denied(
            "token lacks the roomCreate grant",
        ));
    }
    validate_room_name(&req.name).map_err(|_| {
        TwirpError::invalid_argument(
            "room name must be 1-128 characters of letters, digits, '_', '-', '.', ':'",
        )
    })?;
    if req.metadata.len() > MAX_METADATA {
        return Err(TwirpError::invalid_argument("metadata over 64 KiB"));
    }
    for a in &req.agents {
        super::agent_dispatch::validate(a)?;
    }
    let agents = req.agents;
    let new = NewRoom {
        name: req.name.clone(),
        max_participants: (req.max_participants > 0).then_some(i64::from(req.max_participants)),
        empty_timeout_secs: req.empty_timeout,
        departure_timeout_secs: req.departure_timeout,
        metadata: req.metadata,
    };
    // LiveKit's CreateRoom is idempotent: an open room of that name is returned as it is.
    let rec = match create_room(state, new).await? {
        // CreateRoom's agents are dispatched when the room is created (LiveKit: at creation,
        // before anyone joins); an existing room keeps its dispatches.
        Created::New(rec) => {
            for a in agents {
                if let Err(e) = state.agents.create_dispatch(state, &rec.name, &rec.sid, a) {
                    return Err(TwirpError::new("resource_exhausted", e));
                }
            }
            rec
        }
        Created::Exists(rec) => rec,
    };
    let live = crate::sfu::room_participants(&state.sfu, &state.workers, &rec.name).await;
    Ok(room_proto(Some(&rec), &rec.name, live.as_deref()))
}

async fn stored(state: &AppState, name: &str) -> Result<Option<RoomRecord>, TwirpError> {
    match state.store.get_room(name).await {
        Ok(r) if r.closed_at.is_none() => Ok(Some(r)),
        Ok(_) | Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn list(
    state: &AppState,
    caller: &Caller,
    req: proto::ListRoomsRequest,
) -> Result<proto::ListRoomsResponse, TwirpError> {
    if !caller.video().room_list {
        return Err(TwirpError::permission_denied(
            "token lacks the roomList grant",
        ));
    }
    // Open rooms: the stored ones (newest first) and live ones opened by a join alone.
    let mut names: Vec<String> = state
        .store
        .list_open_rooms(None, 1000)
        .await?
        .into_iter()
        .map(|r| r.name)
        .collect();
    let mut live = state.sfu.rooms();
    live.sort();
    for n in live {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    if !req.names.is_empty() {
        names.retain(|n| req.names.contains(n));
    }
    let mut rooms = Vec::with_capacity(names.len());
    for name in names {
        let rec = stored(state, &name).await?;
        let live = crate::sfu::room_participants(&state.sfu, &state.workers, &name).await;
        rooms.push(room_proto(rec.as_ref(), &name, live.as_deref()));
    }
    Ok(proto::ListRoomsResponse { rooms })
}

async fn delete(
    state: &AppState,
    caller: &Caller,
    req: proto::DeleteRoomRequest,
) -> Result<proto::DeleteRoomResponse, TwirpError> {
    if !caller.video().room_create {
        return Err(TwirpError::permission_denied(
            "token lacks the roomCreate grant",
        ));
    }
    let removed =
        crate::sfu::close_room(&state.sfu, &state.workers, &req.room, "room deleted").await;
    let was_stored = stored(state, &req.room).await?.is_some();
    if was_stored {
        // Closed in the store now: a join racing the delete cannot reopen it under the old record.
        match state
            .store
            .close_room(&req.room, state.clock.unix_ms())
            .await
        {
            Ok(()) | Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if removed.is_none() && !was_stored {
        return Err(TwirpError::not_found(format!(
            "room {:?} does not exist",
            req.room
        )));
    }
    Ok(proto::DeleteRoomResponse {})
}

async fn live_participants(
    state: &AppState,
    room: &str,
) -> Result<Vec<proto::ParticipantInfo>, TwirpError> {
    match crate::sfu::room_participants(&state.sfu, &state.workers, room).await {
        Some(p) => Ok(p),
        // A stored room nobody has joined yet has no participants.
        None if stored(state, room).await?.is_some() => Ok(Vec::new()),
        None => Err(TwirpError::not_found(format!(
            "room {room:?} does not exist"
        ))),
    }
}

async fn participants(
    state: &AppState,
    caller: &Caller,
    req: proto::ListParticipantsRequest,
) -> Result<proto::ListParticipantsResponse, TwirpError> {
    caller.require_room_admin(&req.room)?;
    Ok(proto::ListParticipantsResponse {
        participants: live_participants(state, &req.room).await?,
    })
}

async fn participant(
    state: &AppState,
    caller: &Caller,
    req: proto::RoomParticipantIdentity,
) -> Result<proto::ParticipantInfo, TwirpError> {
    caller.require_room_admin(&req.room)?;
    live_participants(state, &req.room)
        .await?
        .into_iter()
        .find(|p| p.identity == req.identity)
        .ok_or_else(|| {
            TwirpError::not_found(format!(
                "participant {:?} is not in room {:?}",
                req.identity, req.room
            ))
        })
}

async fn remove(
    state: &AppState,
    caller: &Caller,
    req: proto::RoomParticipantIdentity,
) -> Result<proto::RemoveParticipantResponse, TwirpError> {
    caller.require_room_admin(&req.room)?;
    let removed = crate::sfu::remove_participant(
        &state.sfu,
        &state.workers,
        &req.room,
        &req.identity,
        "removed by RoomService.RemoveParticipant",
    )
    .await;
    if !removed {
        return Err(TwirpError::not_found(format!(
            "participant {:?} is not in room {:?}",
            req.identity, req.room
        )));
    }
    Ok(proto::RemoveParticipantResponse {})
}

/// Largest SendData payload (LiveKit's data channel message limit is 64 KiB for a whole packet).
const MAX_DATA: usize = 60 * 1024;

async fn send_data(
    state: &AppState,
    caller: &Caller,
    req: proto::SendDataRequest,
) -> Result<proto::SendDataResponse, TwirpError> {
    caller.require_room_admin(&req.room)?;
    if req.data.len() > MAX_DATA {
        return Err(TwirpError::invalid_argument(format!(
            "data is {} bytes; at most {MAX_DATA}",
            req.data.len()
        )));
    }
    let reliable = req.kind != proto::data_packet::Kind::Lossy as i32;
    #[allow(deprecated)]
    let packet = proto::DataPacket {
        kind: req.kind,
        destination_identities: req.destination_identities.clone(),
        value: Some(proto::data_packet::Value::User(proto::UserPacket {
            payload: req.data,
            destination_identities: req.destination_identities,
            topic: req.topic,
            nonce: req.nonce,
            ..Default::default()
        })),
        ..Default::default()
    };
    if !crate::sfu::send_server_data(&state.sfu, &state.workers, &req.room, packet, reliable).await
    {
        return Err(TwirpError::not_found(format!(
            "room {:?} is not open",
            req.room
        )));
    }
    Ok(proto::SendDataResponse {})
}

/// Largest participant metadata (LiveKit's default limit).
const MAX_METADATA: usize = 64 * 1024;

/// A worker's refusal as a Twirp error.
fn admin_error(e: AdminError, room: &str, identity: &str) -> TwirpError {
    match e {
        AdminError::NoRoom => TwirpError::not_found(format!("room {room:?} is not open")),
        AdminError::NoParticipant => {
            TwirpError::not_found(format!("participant {identity:?} is not in room {room:?}"))
        }
        AdminError::NoTrack => {
            TwirpError::not_found(format!("participant {identity:?} has no such track"))
        }
        AdminError::NotAllowed(why) => TwirpError::new("failed_precondition", why),
    }
}

async fn admin(
    state: &AppState,
    room: &str,
    identity: &str,
    op: AdminOp,
) -> Result<AdminOk, TwirpError> {
    crate::sfu::room_admin(&state.sfu, &state.workers, room, op)
        .await
        .map_err(|e| admin_error(e, room, identity))
}

/// Most attributes a participant may carry, and their sizes (LiveKit's limits are similar).
const MAX_ATTRIBUTES: usize = 64;
const MAX_ATTRIBUTE_KEY: usize = 256;

async fn update(
    state: &AppState,
    caller: &Caller,
    req: proto::UpdateParticipantRequest,
) -> Result<proto::ParticipantInfo, TwirpError> {
    caller.require_room_admin(&req.room)?;
    if req.metadata.len() > MAX_METADATA || req.name.len() > 1024 {
        return Err(TwirpError::invalid_argument(
            "metadata over 64 KiB or name over 1 KiB",
        ));
    }
    let attr_bytes: usize = req.attributes.iter().map(|(k, v)| k.len() + v.len()).sum();
    if req.attributes.len() > MAX_ATTRIBUTES
        || req
            .attributes
            .keys()
            .any(|k| k.is_empty() || k.len() > MAX_ATTRIBUTE_KEY)
        || attr_bytes > MAX_METADATA
    {
        return Err(TwirpError::invalid_argument(format!(
            "at most {MAX_ATTRIBUTES} attributes, keys of 1-{MAX_ATTRIBUTE_KEY} bytes, 64 KiB in all"
        )));
    }
    // LiveKit: an empty field means "unchanged"; an attribute set to "" is deleted.
    let op = AdminOp::UpdateParticipant {
        identity: req.identity.clone(),
        name: (!req.name.is_empty()).then_some(req.name),
        metadata: (!req.metadata.is_empty()).then_some(req.metadata),
        attributes: req.attributes.into_iter().collect::<HashMap<_, _>>(),
        permission: req.permission,
    };
    match admin(state, &req.room, &req.identity, op).await? {
        AdminOk::Participant(p) => Ok(*p),
        other => Err(unexpected(other)),
    }
}

fn unexpected(other: AdminOk) -> TwirpError {
    TwirpError::new("internal", format!("unexpected worker answer {other:?}"))
}

async fn mute(
    state: &AppState,
    caller: &Caller,
    req: proto::MuteRoomTrackRequest,
) -> Result<proto::MuteRoomTrackResponse, TwirpError> {
    caller.require_room_admin(&req.room)?;
    let op = AdminOp::MuteTrack {
        identity: req.identity.clone(),
        track_sid: req.track_sid,
        muted: req.muted,
    };
    match admin(state, &req.room, &req.identity, op).await? {
        AdminOk::Track(t) => Ok(proto::MuteRoomTrackResponse { track: Some(*t) }),
        other => Err(unexpected(other)),
    }
}

async fn subscriptions(
    state: &AppState,
    caller: &Caller,
    req: proto::UpdateSubscriptionsRequest,
) -> Result<proto::UpdateSubscriptionsResponse, TwirpError> {
    caller.require_room_admin(&req.room)?;
    let mut track_sids = req.track_sids;
    for pt in req.participant_tracks {
        track_sids.extend(pt.track_sids);
    }
    if track_sids.len() > 256 {
        return Err(TwirpError::invalid_argument("at most 256 tracks at once"));
    }
    let op = AdminOp::UpdateSubscriptions {
        identity: req.identity.clone(),
        track_sids,
        subscribe: req.subscribe,
    };
    admin(state, &req.room, &req.identity, op).await?;
    Ok(proto::UpdateSubscriptionsResponse {})
}

async fn room_metadata(
    state: &AppState,
    caller: &Caller,
    req: proto::UpdateRoomMetadataRequest,
) -> Result<proto::Room, TwirpError> {
    caller.require_room_admin(&req.room)?;
    if req.metadata.len() > MAX_METADATA {
        return Err(TwirpError::invalid_argument("metadata over 64 KiB"));
    }
    // The stored room keeps it (a later reopen starts with it); the live room tells its clients.
    let rec = match state
        .store
        .set_room_metadata(&req.room, &req.metadata)
        .await
    {
        Ok(()) => stored(state, &req.room).await?,
        Err(StoreError::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    let op = AdminOp::RoomMetadata {
        metadata: req.metadata,
    };
    match crate::sfu::room_admin(&state.sfu, &state.workers, &req.room, op).await {
        Ok(AdminOk::Room(live)) => {
            let parts = crate::sfu::room_participants(&state.sfu, &state.workers, &req.room).await;
            let mut room = room_proto(rec.as_ref(), &req.room, parts.as_deref());
            room.metadata = live.metadata;
            if rec.is_none() {
                room.sid = live.sid;
                room.creation_time = live.creation_time;
                room.creation_time_ms = live.creation_time_ms;
            }
            Ok(room)
        }
        Ok(other) => Err(unexpected(other)),
        Err(AdminError::NoRoom) => match rec {
            Some(r) => Ok(room_proto(Some(&r), &req.room, None)),
            None => Err(TwirpError::not_found(format!(
                "room {:?} does not exist",
                req.room
            ))),
        },
        Err(e) => Err(admin_error(e, &req.room, "")),
    }
}
