//! `livekit.RoomService`: rooms and participants managed by LiveKit's server SDKs.
//!
//! Served: CreateRoom, ListRooms, DeleteRoom (roomCreate / roomList grants), ListParticipants,
//! GetParticipant, RemoveParticipant, SendData, UpdateParticipant (name and metadata; roomAdmin for
//! the room). A room is the stored room of
//! `POST /api/rooms` (the SFU opens it on its first join with its `max_participants`) or a live room
//! opened by a join; participants are read from the worker that owns the room. The remaining
//! methods answer Twirp's `unimplemented` until they are built (issue 19).

use super::{Caller, Codec, TwirpError};
use crate::api::rooms::{create_room, validate_room_name, Created};
use crate::state::AppState;
use crate::store::{RoomRecord, StoreError};
use axum::response::Response;
use parlor_signaling::protocol::proto;

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
        "MutePublishedTrack"
        | "UpdateSubscriptions"
        | "UpdateRoomMetadata"
        | "ForwardParticipant"
        | "MoveParticipant"
        | "PerformRpc" => Err(TwirpError::new(
            "unimplemented",
            format!("RoomService.{method} is not implemented yet"),
        )),
        _ => Err(TwirpError::new(
            "bad_route",
            format!("no method RoomService.{method}"),
        )),
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
    let max = (req.max_participants > 0).then_some(i64::from(req.max_participants));
    // LiveKit's CreateRoom is idempotent: an open room of that name is returned as it is.
    let rec = match create_room(state, req.name.clone(), max).await? {
        Created::New(rec) | Created::Exists(rec) => rec,
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

async fn list(
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

async fn update(
    state: &AppState,
    caller: &Caller,
    req: proto::UpdateParticipantRequest,
) -> Result<proto::ParticipantInfo, TwirpError> {
    caller.require_room_admin(&req.room)?;
    if req.permission.is_some() || !req.attributes.is_empty() {
        return Err(TwirpError::new(
            "unimplemented",
            "UpdateParticipant: permission and attributes are not implemented yet (name and metadata are)",
        ));
    }
    if req.metadata.len() > MAX_METADATA || req.name.len() > 1024 {
        return Err(TwirpError::invalid_argument(
            "metadata over 64 KiB or name over 1 KiB",
        ));
    }
    // LiveKit: an empty field means "unchanged".
    let name = (!req.name.is_empty()).then_some(req.name);
    let metadata = (!req.metadata.is_empty()).then_some(req.metadata);
    crate::sfu::update_participant(
        &state.sfu,
        &state.workers,
        &req.room,
        &req.identity,
        name,
        metadata,
    )
    .await
    .ok_or_else(|| {
        TwirpError::not_found(format!(
            "participant {:?} is not in room {:?}",
            req.identity, req.room
        ))
    })
}
