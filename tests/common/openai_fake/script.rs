//! The fake's scripted response: `response.created`, the output item, the audio and transcript
//! deltas (paced, cancellable, with faults), the `.done` events and `response.done`.

use super::{fake_sample, id, FakeOptions, Fault, Out, Pace, RATE};
use base64::Engine;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// What one scripted response is.
pub(super) struct Script {
    pub(super) resp_id: String,
    pub(super) item_id: String,
    pub(super) previous: Option<String>,
    pub(super) text_only: bool,
}

/// Shared between a running response and its connection.
pub(super) struct Flags {
    pub(super) cancel: Arc<AtomicBool>,
    /// The cancel came from server VAD (`interrupt_response`), not from the client.
    pub(super) by_server: Arc<AtomicBool>,
    pub(super) done: Arc<AtomicBool>,
}

/// Produce one scripted response into `tx`.
pub(super) async fn respond(
    opts: Arc<FakeOptions>,
    script: Script,
    flags: Flags,
    tx: mpsc::UnboundedSender<Out>,
) {
    let Script {
        resp_id,
        item_id,
        previous,
        text_only,
    } = script;
    let Flags {
        cancel,
        by_server,
        done,
    } = flags;
    let ev = |v: Value| Out::Event(v);
    let eid = || id("event_");
    let modality = if text_only { "text" } else { "audio" };
    if opts.junk_before_response {
        let _ = tx.send(Out::Raw(Message::text("{this is not json")));
        let _ = tx.send(Out::Raw(Message::binary(vec![1u8, 2, 3])));
        let _ = tx.send(Out::Event(json!("not an event")));
        let _ = tx.send(ev(json!({"type": "made.up.event", "event_id": eid()})));
        let _ = tx.send(ev(
            json!({"type": "response.output_audio.delta", "delta": 5}),
        ));
        let _ = tx.send(ev(json!({"type": "response.output_audio.delta", "event_id": eid(),
            "response_id": "resp_junk", "item_id": "item_junk", "output_index": 0, "content_index": 0,
            "delta": "%%% not base64 %%%"})));
    }
    let response = |status: &str, output: Value, usage: Value| {
        json!({"id": resp_id, "object": "realtime.response", "status": status,
            "status_details": if status == "cancelled" {
                let reason = if by_server.load(Ordering::SeqCst) { "turn_detected" } else { "client_cancelled" };
                json!({"type": "cancelled", "reason": reason})
            } else { Value::Null },
            "output": output, "conversation_id": "conv_fake", "output_modalities": [modality],
            "max_output_tokens": "inf", "usage": usage})
    };
    let _ = tx.send(ev(
        json!({"type": "response.created", "event_id": eid(), "response": response("in_progress", json!([]), Value::Null)}),
    ));
    let item = json!({"id": item_id, "object": "realtime.item", "type": "message", "role": "assistant",
        "status": "in_progress", "content": []});
    let _ = tx.send(ev(
        json!({"type": "response.output_item.added", "event_id": eid(),
        "response_id": resp_id, "output_index": 0, "item": item}),
    ));
    let _ = tx.send(ev(
        json!({"type": "conversation.item.added", "event_id": eid(),
        "previous_item_id": previous, "item": item}),
    ));
    let part = if text_only {
        "output_text"
    } else {
        "output_audio"
    };
    let _ = tx.send(ev(
        json!({"type": "response.content_part.added", "event_id": eid(),
        "response_id": resp_id, "item_id": item_id, "output_index": 0, "content_index": 0,
        "part": {"type": part}}),
    ));
    let delta_kind = if text_only {
        "response.output_text.delta"
    } else {
        "response.output_audio_transcript.delta"
    };
    let text_delta = |t: &str| {
        json!({"type": delta_kind, "event_id": id("event_"), "response_id": resp_id,
            "item_id": item_id, "output_index": 0, "content_index": 0, "delta": t})
    };
    let chunk_dur = Duration::from_micros(opts.chunk_samples as u64 * 1_000_000 / RATE as u64);
    let mut cancelled = false;
    let mut n = 0usize;
    let chunks = if text_only { 0 } else { opts.chunks };
    let mut late = opts.deltas_after_cancel;
    for c in 0..chunks.max(opts.transcript.len()) {
        if cancel.load(Ordering::SeqCst) {
            cancelled = true;
            if late == 0 || c >= chunks {
                break;
            }
            late -= 1;
        }
        match opts.fault {
            Some(Fault::CloseAfterChunks(k)) if k == c => {
                let _ = tx.send(Out::Drop);
                return;
            }
            Some(Fault::CorruptAfterChunks(k)) if k == c => {
                let _ = tx.send(Out::Corrupt);
                return;
            }
            _ => {}
        }
        if c < chunks {
            let pcm: Vec<u8> = (n..n + opts.chunk_samples)
                .flat_map(|i| fake_sample(i).to_le_bytes())
                .collect();
            n += opts.chunk_samples;
            let v = json!({"type": "response.output_audio.delta", "event_id": eid(), "response_id": resp_id,
                "item_id": item_id, "output_index": 0, "content_index": 0,
                "delta": base64::engine::general_purpose::STANDARD.encode(pcm)});
            let _ = tx.send(Out::Audio(v, item_id.clone(), opts.chunk_samples));
        }
        if let Some(t) = opts.transcript.get(c) {
            let _ = tx.send(ev(text_delta(t)));
        }
        match opts.pace {
            Pace::Realtime => tokio::time::sleep(chunk_dur).await,
            Pace::Fast => tokio::task::yield_now().await,
        }
    }
    let transcript: String = opts.transcript.concat();
    if !cancelled && !text_only {
        let _ = tx.send(ev(
            json!({"type": "response.output_audio.done", "event_id": eid(),
            "response_id": resp_id, "item_id": item_id, "output_index": 0, "content_index": 0}),
        ));
        let _ = tx.send(ev(
            json!({"type": "response.output_audio_transcript.done", "event_id": eid(),
            "response_id": resp_id, "item_id": item_id, "output_index": 0, "content_index": 0,
            "transcript": transcript}),
        ));
    }
    let status = if cancelled { "incomplete" } else { "completed" };
    let content = if text_only {
        json!([{"type": "output_text", "text": transcript}])
    } else {
        json!([{"type": "output_audio", "transcript": transcript}])
    };
    let mut item = item;
    item["status"] = json!(status);
    item["content"] = content;
    let _ = tx.send(ev(
        json!({"type": "response.output_item.done", "event_id": eid(),
        "response_id": resp_id, "output_index": 0, "item": item}),
    ));
    let _ = tx.send(ev(
        json!({"type": "conversation.item.done", "event_id": eid(),
        "previous_item_id": previous, "item": item}),
    ));
    let status = if cancelled { "cancelled" } else { "completed" };
    let _ = tx.send(ev(json!({"type": "response.done", "event_id": eid(),
        "response": response(status, json!([item]), opts.usage.clone())})));
    done.store(true, Ordering::SeqCst);
}
