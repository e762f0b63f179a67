//! The `local` provider: Parlor's built-in offline voice model. Text turns go straight to the
//! rule-based [`responder`](crate::realtime::responder); speech turns (voice activity detection →
//! speech-to-text → responder → text-to-speech) run on the speech models `scripts/setup` installs
//! into the Parlor home. No key, no network.
//!
//! One task per conversation owns its state (settings, the turn in progress, the running response);
//! it reads [`Input`] and writes [`Output`] on the conversation's channels.

use crate::clock::SharedClock;
use crate::realtime::provider::{
    estimate_tokens, Availability, Conversation, HistoryItem, Input, Output, Provider,
    ProviderError, ResponseStatus, SessionSettings, StartFuture, Usage,
};
use crate::realtime::responder;
use tokio::sync::mpsc;

pub struct LocalProvider {
    enabled: bool,
    clock: SharedClock,
}

impl LocalProvider {
    pub fn new(config: &crate::realtime::config::LocalConfig, clock: SharedClock) -> LocalProvider {
        LocalProvider {
            enabled: config.enabled,
            clock,
        }
    }
}

impl Provider for LocalProvider {
    fn name(&self) -> &'static str {
        "local"
    }

    fn availability(&self) -> Availability {
        if self.enabled {
            Availability::Available
        } else {
            Availability::Unavailable {
                reason: "[realtime.local] enabled = false".into(),
            }
        }
    }

    fn start(&self, settings: SessionSettings, _history: Vec<HistoryItem>) -> StartFuture {
        let enabled = self.enabled;
        let clock = self.clock.clone();
        Box::pin(async move {
            if !enabled {
                return Err(ProviderError::Unavailable(
                    "[realtime.local] enabled = false".into(),
                ));
            }
            let (conv, input, output) = Conversation::channel();
            tokio::spawn(run(settings, clock, input, output));
            Ok(conv)
        })
    }
}

async fn run(
    mut settings: SessionSettings,
    clock: SharedClock,
    mut input: mpsc::Receiver<Input>,
    output: mpsc::Sender<Output>,
) {
    if output.send(Output::Ready).await.is_err() {
        return;
    }
    while let Some(ev) = input.recv().await {
        let sent = match ev {
            Input::Text(text) => text_turn(&settings, &clock, &text, &output).await,
            Input::Say(text) => say(&text, &output).await,
            Input::Update(s) => {
                settings = s;
                output.send(Output::Ready).await.is_ok()
            }
            // Text replies are produced at once: nothing runs that a cancel could stop, nothing was
            // played that a truncate could shorten.
            Input::CancelResponse | Input::Truncate { .. } | Input::CreateResponse => true,
            Input::Audio(_) | Input::CommitAudio | Input::ClearAudio => output
                .send(Output::Error {
                    code: "audio_unavailable".into(),
                    message: "the offline speech models are not wired in yet".into(),
                    fatal: false,
                })
                .await
                .is_ok(),
        };
        if !sent {
            return;
        }
    }
}

/// Answer one typed turn: the reply streamed word by word, then `ResponseDone` with token counts.
async fn text_turn(
    settings: &SessionSettings,
    clock: &SharedClock,
    text: &str,
    output: &mpsc::Sender<Output>,
) -> bool {
    let mut reply = responder::respond(text, clock.unix_ms());
    if let Some(max) = settings.max_output_tokens {
        truncate_to_tokens(&mut reply, max as u64);
    }
    stream_text(reply, estimate_tokens(text), output).await
}

/// Speak `text` as it is (a greeting): one response of exactly that text.
async fn say(text: &str, output: &mpsc::Sender<Output>) -> bool {
    stream_text(text.to_string(), 0, output).await
}

/// One text response: `ResponseStarted`, the reply word by word, `ResponseDone` with usage
/// (`input_tokens` for what was asked, the estimate of the reply as output).
async fn stream_text(reply: String, input_tokens: u64, output: &mpsc::Sender<Output>) -> bool {
    let response_id = crate::ids::new_id("resp_");
    let item_id = crate::ids::new_id("item_");
    if output
        .send(Output::ResponseStarted {
            response_id: response_id.clone(),
        })
        .await
        .is_err()
    {
        return false;
    }
    for piece in reply.split_inclusive(' ') {
        let delta = Output::TextDelta {
            response_id: response_id.clone(),
            item_id: item_id.clone(),
            text: piece.to_string(),
        };
        if output.send(delta).await.is_err() {
            return false;
        }
    }
    let usage = Usage {
        input_tokens,
        input_text_tokens: input_tokens,
        output_tokens: estimate_tokens(&reply),
        output_text_tokens: estimate_tokens(&reply),
        ..Usage::default()
    };
    output
        .send(Output::ResponseDone {
            response_id,
            status: ResponseStatus::Completed,
            text: reply,
            usage,
        })
        .await
        .is_ok()
}

/// Cut `reply` at a word boundary so that its estimated tokens stay within `max`.
fn truncate_to_tokens(reply: &mut String, max: u64) {
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

    #[tokio::test]
    async fn a_text_turn_streams_deltas_then_done_with_usage() {
        let p = LocalProvider::new(&Default::default(), crate::clock::system());
        let mut conv = p
            .start(SessionSettings::default(), Vec::new())
            .await
            .unwrap();
        assert_eq!(conv.output.recv().await, Some(Output::Ready));
        conv.input
            .send(Input::Text("what is two plus two".into()))
            .await
            .unwrap();
        let mut streamed = String::new();
        loop {
            match conv.output.recv().await.unwrap() {
                Output::ResponseStarted { .. } => {}
                Output::TextDelta { text, .. } => streamed.push_str(&text),
                Output::ResponseDone {
                    status,
                    text,
                    usage,
                    ..
                } => {
                    assert_eq!(status, ResponseStatus::Completed);
                    assert_eq!(text, "Two plus two is four.");
                    assert_eq!(streamed, text);
                    assert_eq!(usage.input_tokens, 5);
                    assert_eq!(usage.output_tokens, 6);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn replies_are_cut_to_max_output_tokens() {
        let mut r = "one two three four five six seven".to_string();
        truncate_to_tokens(&mut r, 3);
        assert_eq!(r, "one two");
    }
}
