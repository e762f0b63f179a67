//! Finalizing an assistant call once it has ended (the caller's `room.disconnect()`, a missed call,
//! or the start-up repair after a crash): its cost is computed and stored, the account is charged
//! exactly once, and the `call.completed` webhook carries duration, cost, the model session and the
//! recording.
//!
//! Cost = duration in minutes × the assistant's price per minute + the call's model session token
//! usage × the model's pricing per 1K tokens (`[realtime] models`). Idempotent: the store
//! keeps one charge per call, so a second finalization (a retry, or the start-up sweep finding a
//! call whose first finalization was cut short by a crash) charges nothing more.

use crate::state::AppState;
use crate::store::{AssistantCallRecord, CallRecord, Charge, StoreResult};
use serde_json::{json, Value};

/// The cost of `call` in micro-units: whole call time (ms precision) × price per minute, plus
/// `token_cost_micros`.
pub fn cost_micros(duration_ms: i64, price_per_minute_micros: i64, token_cost_micros: i64) -> i64 {
    let time = (duration_ms.max(0) as i128 * price_per_minute_micros.max(0) as i128) / 60_000;
    i64::try_from(time)
        .unwrap_or(i64::MAX)
        .saturating_add(token_cost_micros.max(0))
}

/// Token cost in micro-units: `prompt`/`completion` tokens at `input`/`output` per 1K tokens.
pub fn token_cost_micros(
    prompt: u64,
    completion: u64,
    input_per_1k: f64,
    output_per_1k: f64,
) -> i64 {
    let c = (prompt as f64 * input_per_1k + completion as f64 * output_per_1k) / 1000.0;
    super::to_micros(c).unwrap_or(0).max(0)
}

/// Finalize `call` if it is an ended assistant call: store its cost, charge it once. Returns the
/// `assistant` part of the `call.completed` payload (None for other calls).
pub async fn finalize(state: &AppState, call: &CallRecord) -> StoreResult<Option<Value>> {
    if !call.is_over() {
        return Ok(None);
    }
    let Some(ac) = state.store.get_assistant_call(&call.id).await? else {
        return Ok(None);
    };
    let price = state
        .store
        .get_assistant(&ac.assistant_id)
        .await?
        .map_or(0, |a| a.price_per_minute_micros);
    // Token usage of the call's model session at the model's price per 1K tokens.
    let tokens = match &ac.model_session_id {
        Some(sid) => match state.store.get_rt_session(sid).await {
            Ok(s) => state.realtime.model(&s.model).map_or(0, |m| {
                token_cost_micros(
                    s.prompt_tokens.max(0) as u64,
                    s.completion_tokens.max(0) as u64,
                    m.pricing_input,
                    m.pricing_output,
                )
            }),
            Err(_) => 0,
        },
        None => 0,
    };
    let cost = cost_micros(call.duration_ms.unwrap_or(0), price, tokens);
    state
        .store
        .update_assistant_call(&call.id, None, Some(cost), Some(end_reason(&ac, call)))
        .await?;
    let charge = if cost > 0 {
        let now = state.clock.unix_ms();
        match state
            .store
            .charge_call(&ac.account_id, &call.id, cost, now)
            .await?
        {
            Charge::Charged(e) => {
                tracing::info!(call = %call.id, account = %ac.account_id, cost, charged = -e.amount_micros,
                    balance = e.balance_after_micros, "assistant call charged");
                Some(e)
            }
            Charge::AlreadyCharged(e) => Some(e),
        }
    } else {
        None
    };
    let recordings = state.store.recording_ids_for_call(&call.id).await?;
    let currency = state
        .store
        .get_account(&ac.account_id)
        .await?
        .map(|a| a.currency)
        .unwrap_or_default();
    Ok(Some(json!({
        "assistantId": ac.assistant_id,
        "accountId": ac.account_id,
        "duration": call.duration_ms.map(crate::timefmt::whole_secs),
        "durationMs": call.duration_ms,
        "cost": super::from_micros(cost),
        "charged": super::from_micros(charge.map_or(0, |e| -e.amount_micros)),
        "currency": currency,
        "sessionId": ac.model_session_id,
        "recordingId": recordings.last(),
        "endReason": end_reason(&ac, call),
    })))
}

fn end_reason<'a>(ac: &'a AssistantCallRecord, call: &CallRecord) -> &'a str {
    match ac.end_reason.as_deref() {
        Some(r) => r,
        None if call.status == "missed" => "caller_never_connected",
        None => "caller_hung_up",
    }
}

/// The `call.completed` webhook body: the call as the calls API shows it, plus `assistant` for an
/// assistant call (after finalizing it).
pub async fn completed_payload(state: &AppState, call: &CallRecord) -> Value {
    let members = state.store.call_members(&call.id).await.unwrap_or_default();
    let mut body = crate::product::call_view::call_json(call, &members);
    match finalize(state, call).await {
        Ok(Some(a)) => body["assistant"] = a,
        Ok(None) => {}
        Err(e) => {
            tracing::error!(call = %call.id, error = %e, "finalizing the assistant call failed")
        }
    }
    body
}

/// Start-up sweep: ended assistant calls whose finalization a crash cut short (no cost stored).
pub async fn finish_pending(state: &AppState) -> usize {
    let ids = match state.store.unfinalized_assistant_calls().await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::error!(error = %e, "cannot list unfinalized assistant calls");
            return 0;
        }
    };
    let mut n = 0;
    for id in ids {
        let Ok(call) = state.store.get_call(&id).await else {
            continue;
        };
        match finalize(state, &call).await {
            Ok(Some(_)) => n += 1,
            Ok(None) => {}
            Err(e) => {
                tracing::error!(call = %id, error = %e, "finalizing the assistant call failed")
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_time_times_price_plus_tokens() {
        // 90 s at 0.05/min = 0.075
        assert_eq!(cost_micros(90_000, 50_000, 0), 75_000);
        assert_eq!(cost_micros(0, 50_000, 10), 10);
        assert_eq!(cost_micros(-5, 50_000, -3), 0);
        assert_eq!(
            cost_micros(i64::MAX, i64::MAX, 0),
            i64::MAX,
            "saturates, never wraps"
        );
        // 1500 prompt + 500 completion at 0.032/0.064 per 1K = 0.048 + 0.032
        assert_eq!(token_cost_micros(1500, 500, 0.032, 0.064), 80_000);
    }
}
