//! Barge-in bookkeeping on the caller's side: how much of the model's reply audio has actually been
//! played, so that an interruption truncates the reply where the listener stopped hearing it.
//!
//! Over WebSocket the model sends audio faster than real time; only the bridge knows how much of it
//! reached the speaker. Feed [`Playout::played`] each chunk as it is played (not as it arrives);
//! when the caller starts speaking during playout, [`Playout::barge_in`] gives the inputs to send:
//! [`Input::CancelResponse`] then [`Input::Truncate`] at the played position. The provider still
//! clamps `audio_end_ms` to the audio it produced, so a tracker that over-counts cannot make the
//! request invalid.

use crate::realtime::provider::{Input, SAMPLE_RATE};

/// Playout position of the reply item being played.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Playout {
    item_id: Option<String>,
    played_samples: u64,
}

impl Playout {
    pub fn new() -> Playout {
        Playout::default()
    }

    /// `samples` of `item_id`'s audio were just played. A new item restarts the count.
    pub fn played(&mut self, item_id: &str, samples: usize) {
        if self.item_id.as_deref() != Some(item_id) {
            self.item_id = Some(item_id.to_string());
            self.played_samples = 0;
        }
        self.played_samples += samples as u64;
    }

    /// The item being played, if any.
    pub fn item_id(&self) -> Option<&str> {
        self.item_id.as_deref()
    }

    /// Milliseconds of the current item played so far (rounded down).
    pub fn played_ms(&self) -> u32 {
        let ms = self.played_samples * 1000 / SAMPLE_RATE as u64;
        ms.min(u32::MAX as u64) as u32
    }

    /// The current item finished playing (or was discarded): nothing is playing.
    pub fn finish(&mut self) {
        self.item_id = None;
        self.played_samples = 0;
    }

    /// The caller interrupted: the inputs to send, in order (`CancelResponse`, then a `Truncate` at
    /// the played position when an item was playing). Resets the tracker.
    pub fn barge_in(&mut self) -> Vec<Input> {
        let mut out = vec![Input::CancelResponse];
        if let Some(item_id) = self.item_id.clone() {
            out.push(Input::Truncate {
                item_id,
                audio_end_ms: self.played_ms(),
            });
        }
        self.finish();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_item_and_truncates_at_the_played_position() {
        let mut p = Playout::new();
        assert_eq!(p.barge_in(), vec![Input::CancelResponse]);
        p.played("a", 2400);
        p.played("a", 2400);
        assert_eq!(p.played_ms(), 200);
        p.played("b", 480);
        assert_eq!((p.item_id(), p.played_ms()), (Some("b"), 20));
        assert_eq!(
            p.barge_in(),
            vec![
                Input::CancelResponse,
                Input::Truncate {
                    item_id: "b".into(),
                    audio_end_ms: 20
                }
            ]
        );
        assert_eq!(p.item_id(), None);
    }
}
