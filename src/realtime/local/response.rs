//! One response of the `local` provider, as a task: the responder's reply streamed as text
//! deltas, and for audio replies spoken sentence by sentence by the speech workers (Piper at
//! 22.05 kHz, resampled to the interface's 24 kHz and cut into [`AUDIO_DELTA_SAMPLES`] deltas), so
//! the first audio leaves after the first sentence is synthesized. The conversation task owns the
//! response's bookkeeping; this task only produces [`Step`]s and is aborted to cancel it.
//!
//! Usage is estimated (the local model counts nothing): text with
//! [`estimate_tokens`](crate::realtime::provider::estimate_tokens), audio at OpenAI's published
//! rates of one token per 100 ms of caller audio and one per 50 ms of reply audio.

use super::speech::{SpeechPool, StreamResampler};
use crate::clock::SharedClock;
use crate::realtime::provider::{
    estimate_tokens, Output, ResponseStatus, SessionSettings, Usage, SAMPLE_RATE,
};
use crate::realtime::responder;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Samples per reply audio delta: 40 ms at 24 kHz.
pub const AUDIO_DELTA_SAMPLES: usize = 960;

/// What a response task reports to its conversation.
#[derive(Debug)]
pub enum Step {
    /// A transcript of caller speech is ready (from the conversation's speech-to-text task).
    Transcript {
        item_id: String,
        text: String,
        audio_ms: u32,
        create_response: bool,
    },
    /// A speculative transcript of the turn `item_id` up to `end` (see the module doc of `local`).
    Speculated {
        item_id: String,
        end: u64,
        result: Result<String, String>,
    },
    /// Speech-to-text failed for an item.
    TranscriptFailed { item_id: String, error: String },
    /// An output of response `response_id` (a text or audio delta).
    Out { response_id: String, output: Output },
    /// Response `response_id` ended; `error` when it failed.
    Done {
        response_id: String,
        status: ResponseStatus,
        error: Option<String>,
    },
}

/// A reply whose first sentence is already being synthesized (dropping it cancels that).
pub struct Prepared {
    pub reply: String,
    pub first: Chunks,
}

/// Synthesized audio of one sentence, as the speech pool streams it.
pub type Chunks = mpsc::Receiver<Result<Vec<i16>, super::speech::SpeechError>>;

impl Prepared {
    pub fn start(reply: String, speech: &SpeechPool) -> Prepared {
        let first = sentences(&reply)
            .first()
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        Prepared {
            first: speech.synthesize(first),
            reply,
        }
    }
}

/// What the caller's turn cost (for usage).
#[derive(Debug, Clone, Copy, Default)]
pub struct TurnInput {
    pub text_tokens: u64,
    pub audio_ms: u32,
}

/// Estimated usage of a response with `input`, having produced `text` and `audio_samples` of
/// 24 kHz reply audio.
pub fn usage(input: TurnInput, text: &str, audio_samples: u64) -> Usage {
    let input_audio_tokens = u64::from(input.audio_ms).div_ceil(100);
    let output_text_tokens = estimate_tokens(text);
    let audio_ms = audio_samples * 1000 / u64::from(SAMPLE_RATE);
    let output_audio_tokens = audio_ms.div_ceil(50);
    Usage {
        input_tokens: input.text_tokens + input_audio_tokens,
        input_text_tokens: input.text_tokens,
        input_audio_tokens,
        cached_tokens: 0,
        output_tokens: output_text_tokens + output_audio_tokens,
        output_text_tokens,
        output_audio_tokens,
    }
}

/// Split a reply into sentences (each keeps its punctuation and trailing space).
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        let end_of_sentence =
            matches!(b, b'.' | b'!' | b'?') && bytes.get(i + 1).is_none_or(|n| *n == b' ');
        if end_of_sentence {
            let end = (i + 2).min(text.len());
            if !text[start..end].trim().is_empty() {
                out.push(&text[start..end]);
            }
            start = end;
        }
    }
    if !text[start..].trim().is_empty() {
        out.push(&text[start..]);
    }
    out
}

/// The response task. `speech` is `Some` for an audio reply, with the first sentence's audio
/// when it is already being synthesized ([`Prepared`]).
pub async fn run(
    response_id: String,
    item_id: String,
    reply: String,
    speech: Option<(Arc<SpeechPool>, Option<Chunks>)>,
    steps: mpsc::Sender<Step>,
) {
    let out = |output: Output| Step::Out {
        response_id: response_id.clone(),
        output,
    };
    let text_delta = |text: &str| {
        out(Output::TextDelta {
            response_id: response_id.clone(),
            item_id: item_id.clone(),
            text: text.to_string(),
        })
    };
    let done = |status, error| Step::Done {
        response_id: response_id.clone(),
        status,
        error,
    };
    let Some((speech, mut first)) = speech else {
        for piece in reply.split_inclusive(' ') {
            if steps.send(text_delta(piece)).await.is_err() {
                return;
            }
        }
        let _ = steps.send(done(ResponseStatus::Completed, None)).await;
        return;
    };
    let tts_rate = speech.models().tts_rate;
    let mut up = match StreamResampler::new(tts_rate, SAMPLE_RATE) {
        Ok(r) => r,
        Err(e) => {
            let _ = steps
                .send(done(ResponseStatus::Failed, Some(e.to_string())))
                .await;
            return;
        }
    };
    let mut ready: Vec<i16> = Vec::new();
    for sentence in sentences(&reply) {
        if steps.send(text_delta(sentence)).await.is_err() {
            return;
        }
        let mut chunks = match first.take() {
            Some(c) => c,
            None => speech.synthesize(sentence.trim().to_string()),
        };
        while let Some(chunk) = chunks.recv().await {
            match chunk {
                Ok(pcm) => up.push(&pcm, &mut ready),
                Err(e) => {
                    let _ = steps
                        .send(done(ResponseStatus::Failed, Some(e.to_string())))
                        .await;
                    return;
                }
            }
            if !send_audio(&mut ready, false, &out, &response_id, &item_id, &steps).await {
                return;
            }
        }
    }
    up.flush(&mut ready);
    if !send_audio(&mut ready, true, &out, &response_id, &item_id, &steps).await {
        return;
    }
    let _ = steps.send(done(ResponseStatus::Completed, None)).await;
}

/// Send `ready` audio as deltas of [`AUDIO_DELTA_SAMPLES`] (the remainder too when `last`).
async fn send_audio(
    ready: &mut Vec<i16>,
    last: bool,
    out: &impl Fn(Output) -> Step,
    response_id: &str,
    item_id: &str,
    steps: &mpsc::Sender<Step>,
) -> bool {
    let whole = if last {
        ready.len()
    } else {
        ready.len() / AUDIO_DELTA_SAMPLES * AUDIO_DELTA_SAMPLES
    };
    for pcm in ready[..whole].chunks(AUDIO_DELTA_SAMPLES) {
        let delta = Output::AudioDelta {
            response_id: response_id.to_string(),
            item_id: item_id.to_string(),
            pcm: pcm.to_vec(),
        };
        if steps.send(out(delta)).await.is_err() {
            return false;
        }
    }
    ready.drain(..whole);
    true
}

/// The responder's reply to `text`, within `max_output_tokens` (an estimate, see the module doc).
pub fn reply_to(settings: &SessionSettings, clock: &SharedClock, text: &str) -> String {
    let mut reply = responder::respond(text, clock.unix_ms());
    if let Some(max) = settings.max_output_tokens {
        truncate_to_tokens(&mut reply, u64::from(max));
    }
    reply
}

/// Cut `reply` at a word boundary so that its estimated tokens stay within `max`.
pub fn truncate_to_tokens(reply: &mut String, max: u64) {
    if estimate_tokens(reply) <= max {
        return;
    }
    let limit = (max as usize).saturating_mul(4);
    let cut = reply
        .char_indices()
        .take_while(|(i, _)| *i < limit)
        .filter(|(_, c)| *c == ' ')
        .map(|(i, _)| i)
        .last()
        .unwrap_or(0);
    reply.truncate(cut);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_split_into_sentences() {
        assert_eq!(
            sentences("Two plus two is four. Anything else? Yes"),
            vec!["Two plus two is four. ", "Anything else? ", "Yes"]
        );
        assert_eq!(sentences("It is 3.5 degrees."), vec!["It is 3.5 degrees."]);
        assert!(sentences("  ").is_empty());
    }

    #[test]
    fn usage_counts_text_and_audio() {
        let u = usage(
            TurnInput {
                text_tokens: 0,
                audio_ms: 1500,
            },
            "Two plus two is four.",
            24_000,
        );
        assert_eq!(u.input_audio_tokens, 15);
        assert_eq!(u.input_tokens, 15);
        assert_eq!(u.output_text_tokens, 6);
        assert_eq!(u.output_audio_tokens, 20);
        assert_eq!(u.output_tokens, 26);
    }

    #[test]
    fn replies_are_cut_to_max_output_tokens() {
        let mut r = "one two three four five six seven".to_string();
        truncate_to_tokens(&mut r, 3);
        assert_eq!(r, "one two");
    }
}
