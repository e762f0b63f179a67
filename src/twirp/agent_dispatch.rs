//! `livekit.AgentDispatchService`: CreateDispatch, ListDispatch, DeleteDispatch (roomAdmin for the
//! room). A dispatch names an agent (LiveKit Agents workers registered under that name on
//! `/agent`); creating one offers its room job to those workers at once (see `crate::agents`). A
//! room that is neither live nor stored is created as a stored room first, as LiveKit auto-creates.

use super::{Caller, Codec, TwirpError};
use crate::api::rooms::{create_room, validate_room_name, NewRoom};
use crate::state::AppState;
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
        "CreateDispatch" => Ok(codec.reply(&create(state, caller, codec.decode(body)?).await?)),
        "ListDispatch" => Ok(codec.reply(&list(caller, state, codec.decode(body)?)?)),
        "DeleteDispatch" => Ok(codec.reply(&delete(state, caller, codec.decode(body)?)?)),
        _ => Err(TwirpError::new(
            "bad_route",
            format!("no method AgentDispatchService.{method}"),
        )),
    }
}

/// Largest dispatch metadata, and attributes in all (LiveKit's limits are similar).
const MAX_METADATA: usize = 64 * 1024;

/// Check a dispatch's agent name, metadata and attributes.
pub(super) fn validate(d: &proto::RoomAgentDispatch) -> Result<(), TwirpError> {
    let attrs: usize = d.attributes.iter().map(|(k, v)| k.len() + v.len()).sum();
    if d.agent_name.len() > 256 || d.metadata.len() > MAX_METADATA || attrs > MAX_METADATA {
        return Err(TwirpError::invalid_argument(
            "agent name over 256 bytes, or metadata/attributes over 64 KiB",
        ));
    }
    Ok(())
}

async fn create(
    state: &AppState,
    caller: &Caller,
    req: proto::CreateAgentDispatchRequest,
) -> Result<proto::AgentDispatch, TwirpError> {
    caller.require_room_admin(&req.room)?;
    validate_room_name(&req.room).map_err(|_| TwirpError::invalid_argument("invalid room name"))?;
    let d = proto::RoomAgentDispatch {
        agent_name: req.agent_name,
        metadata: req.metadata,
        restart_policy: req.restart_policy,
        deployment: req.deployment,
        attributes: req.attributes,
    };
    validate(&d)?;
    if state.sfu.room_worker(&req.room).is_none() {
        let new = NewRoom {
            name: req.room.clone(),
            ..Default::default()
        };
        create_room(state, new).await?;
    }
    let sid = crate::agents::room_sid(state, &req.room).await;
    state
        .agents
        .create_dispatch(state, &req.room, &sid, d)
        .map_err(|e| TwirpError::new("resource_exhausted", e))
}

fn list(
    caller: &Caller,
    state: &AppState,
    req: proto::ListAgentDispatchRequest,
) -> Result<proto::ListAgentDispatchResponse, TwirpError> {
    caller.require_room_admin(&req.room)?;
    Ok(proto::ListAgentDispatchResponse {
        agent_dispatches: state.agents.list(&req.room, &req.dispatch_id),
    })
}

fn delete(
    state: &AppState,
    caller: &Caller,
    req: proto::DeleteAgentDispatchRequest,
) -> Result<proto::AgentDispatch, TwirpError> {
    caller.require_room_admin(&req.room)?;
    state
        .agents
        .delete_dispatch(state, &req.room, &req.dispatch_id)
        .ok_or_else(|| {
            TwirpError::not_found(format!(
                "no dispatch {:?} in room {:?}",
                req.dispatch_id, req.room
            ))
        })
}
