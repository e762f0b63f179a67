//! Reply audio waiting to be played: the model sends it faster than real time, the bridge plays one
//! 20 ms frame per tick. Pure and time-free (a tick is the caller's clock); with
//! [`crate::realtime::playout::Playout`] it tells how much of each reply item the caller heard.

use std::collections::VecDeque;

/// Samples of one 20 ms frame at the provider interface's 24 kHz.
pub const FRAME: usize = 480;

/// Most reply audio held (10 minutes): a provider that streams more is cut (and logged).
pub const MAX_BUFFERED: usize = 24_000 * 600;

#[derive(Debug, Default)]
pub struct Pacer {
    /// (item id, its samples not yet played), in order.
    queue: VecDeque<(String, VecDeque<i16>)>,
    buffered: usize,
    /// The previous tick sent a frame (the next frame after silence starts a talkspurt).
    talking: bool,
}

/// One frame to play.
#[derive(Debug, PartialEq)]
pub struct Frame<'a> {
    pub item_id: &'a str,
    /// Real samples in `pcm` (the rest is silence padding at the end of an item).
    pub samples: usize,
    /// First frame after silence (RTP marker bit).
    pub talkspurt_start: bool,
}

impl Pacer {
    /// Queue reply audio of `item_id`. False when the buffer is full (the audio is dropped).
    pub fn push(&mut self, item_id: &str, pcm: &[i16]) -> bool {
        if self.buffered + pcm.len() > MAX_BUFFERED {
            return false;
        }
        self.buffered += pcm.len();
        match self.queue.back_mut() {
            Some((id, q)) if id == item_id => q.extend(pcm.iter().copied()),
            _ => self
                .queue
                .push_back((item_id.to_string(), pcm.iter().copied().collect())),
        }
        true
    }

    /// Audio is waiting or being played.
    pub fn is_playing(&self) -> bool {
        self.buffered > 0
    }

    /// Fill `out` with the next frame (zero-padded at an item's end); None when nothing waits.
    pub fn next_frame<'a>(&'a mut self, out: &mut [i16; FRAME]) -> Option<Frame<'a>> {
        while self.queue.front().is_some_and(|(_, q)| q.is_empty()) {
            self.queue.pop_front();
        }
        let Some((_, q)) = self.queue.front_mut() else {
            self.talking = false;
            return None;
        };
        let n = q.len().min(FRAME);
        for (o, s) in out.iter_mut().zip(q.drain(..n)) {
            *o = s;
        }
        out[n..].fill(0);
        self.buffered -= n;
        let start = !self.talking;
        self.talking = true;
        let item_id = self.queue.front().map(|(id, _)| id.as_str()).unwrap_or("");
        Some(Frame {
            item_id,
            samples: n,
            talkspurt_start: start,
        })
    }

    /// Drop everything not yet played (barge-in, cancelled response).
    pub fn clear(&mut self) {
        self.queue.clear();
        self.buffered = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_out_in_order_padded_at_item_ends() {
        let mut p = Pacer::default();
        let mut out = [0i16; FRAME];
        assert!(p.next_frame(&mut out).is_none());
        let a: Vec<i16> = (1..=700).collect();
        assert!(p.push("a", &a));
        assert!(p.push("b", &[7; 100]));
        let f = p.next_frame(&mut out).unwrap();
        assert_eq!((f.item_id, f.samples, f.talkspurt_start), ("a", 480, true));
        assert_eq!((out[0], out[479]), (1, 480));
        let f = p.next_frame(&mut out).unwrap();
        assert_eq!((f.item_id, f.samples, f.talkspurt_start), ("a", 220, false));
        assert_eq!(
            (out[219], out[220]),
            (700, 0),
            "padded after the item's last sample"
        );
        let f = p.next_frame(&mut out).unwrap();
        assert_eq!((f.item_id, f.samples), ("b", 100));
        assert!(p.next_frame(&mut out).is_none());
        assert!(!p.is_playing());
        p.push("c", &[1; 10]);
        assert!(
            p.next_frame(&mut out).unwrap().talkspurt_start,
            "after silence"
        );
    }

    #[test]
    fn clear_drops_what_was_not_played_and_the_buffer_is_bounded() {
        let mut p = Pacer::default();
        p.push("a", &[1; 5000]);
        let mut out = [0i16; FRAME];
        p.next_frame(&mut out);
        p.clear();
        assert!(!p.is_playing() && p.next_frame(&mut out).is_none());
        assert!(p.push("big", &vec![0; MAX_BUFFERED]));
        assert!(!p.push("big", &[0; 1]), "full");
    }
}
