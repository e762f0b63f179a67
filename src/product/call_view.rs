//! The call as clients see it: the calls API (`GET /api/calls/{id}` ...) and the call webhooks
//! (`call.started`, `call.completed`) show the same JSON.

use crate::store::{CallMember, CallRecord};
use crate::timefmt::{opt, rfc3339_ms};
use serde_json::{json, Value};

pub fn call_json(c: &CallRecord, members: &[CallMember]) -> Value {
    json!({
        "id": c.id,
        "type": c.call_type,
        "conversation_id": c.conversation_id,
        "created_by": c.created_by,
        "status": c.status,
        "created_at": rfc3339_ms(c.created_at),
        "started_at": opt(c.started_at),
        "ended_at": opt(c.ended_at),
        "duration": c.duration_ms.map(crate::timefmt::whole_secs),
        "duration_ms": c.duration_ms,
        "record": c.auto_record,
        "room": c.id,
        "members": members.iter().map(|m| json!({
            "user_id": m.user_id,
            "role": m.role,
            "invited_by": m.invited_by,
            "invited_at": rfc3339_ms(m.invited_at),
            "joined_at": opt(m.joined_at),
            "left_at": opt(m.left_at),
        })).collect::<Vec<_>>(),
    })
}
