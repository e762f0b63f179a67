//! Simulcast layer choice, pure: which layer a simulcast RTP stream carries (its `rid`), which layer a
//! subscriber's quality setting asks for, and which layer a subscriber's forwarder should target given
//! the layers the publisher is sending right now. The worker applies the answers; nothing here reads
//! the clock or touches room state.

use std::time::{Duration, Instant};

/// Layers a publisher may send (LiveKit's q/h/f).
pub const LAYERS: usize = 3;

/// A layer counts as sent if a packet of it arrived this recently (publishers drop layers under CPU
/// or bandwidth pressure and resume them later).
pub const ACTIVE_WINDOW: Duration = Duration::from_millis(1500);

/// The layer an inbound stream carries, from its RTP stream id: `q` (or none: not simulcast) 0, `h`
/// 1, `f` 2; an unknown rid counts as the lowest.
pub fn layer_of_rid(rid: Option<&str>) -> u8 {
    match rid {
        Some("h") => 1,
        Some("f") => 2,
        _ => 0,
    }
}

/// The layer a subscriber's `UpdateTrackSettings.quality` asks for (a `proto::VideoQuality` value):
/// HIGH 2, MEDIUM 1, anything else (LOW, OFF, unknown) 0.
pub fn layer_of_quality(quality: i32) -> u8 {
    use parlor_signaling::protocol::proto::VideoQuality;
    match VideoQuality::try_from(quality) {
        Ok(VideoQuality::High) => 2,
        Ok(VideoQuality::Medium) => 1,
        _ => 0,
    }
}

/// The best layer a track has published so far (from its (ssrc, layer) list); 0 with none.
pub fn best_published(layers: &[(u32, u8)]) -> u8 {
    layers.iter().map(|(_, l)| *l).max().unwrap_or(0)
}

/// Which layers arrived within [`ACTIVE_WINDOW`] before `now`, from each layer's last arrival.
pub fn active_layers(last_seen: &[Option<Instant>; LAYERS], now: Instant) -> [bool; LAYERS] {
    last_seen.map(|seen| seen.is_some_and(|at| now.saturating_duration_since(at) < ACTIVE_WINDOW))
}

/// The layer a subscriber that asked for `requested` should get while the publisher sends `active`:
/// the best active layer at or below the request, else the lowest active one (better a lower-quality
/// picture than none). None when no layer is active (keep the current target until one resumes).
pub fn choose_layer(requested: u8, active: [bool; LAYERS]) -> Option<u8> {
    let mut lowest = None;
    let mut best = None;
    for (layer, on) in (0u8..).zip(active) {
        if !on {
            continue;
        }
        lowest.get_or_insert(layer);
        if layer <= requested {
            best = Some(layer);
        }
    }
    best.or(lowest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parlor_signaling::protocol::proto::VideoQuality;

    #[test]
    fn rid_and_quality_map_to_layers() {
        let rids = [
            (None, 0),
            (Some("q"), 0),
            (Some("h"), 1),
            (Some("f"), 2),
            (Some("x"), 0),
            (Some(""), 0),
        ];
        for (rid, want) in rids {
            assert_eq!(layer_of_rid(rid), want, "rid {rid:?}");
        }
        let qualities = [
            (VideoQuality::Low as i32, 0),
            (VideoQuality::Medium as i32, 1),
            (VideoQuality::High as i32, 2),
            (VideoQuality::Off as i32, 0),
            (99, 0),
            (-1, 0),
        ];
        for (q, want) in qualities {
            assert_eq!(layer_of_quality(q), want, "quality {q}");
        }
        assert_eq!(best_published(&[]), 0);
        assert_eq!(best_published(&[(7, 0), (9, 2), (8, 1)]), 2);
        assert_eq!(best_published(&[(7, 1)]), 1);
    }

    #[test]
    fn choose_layer_table() {
        const N: bool = false;
        const Y: bool = true;
        // (requested, active q/h/f, chosen)
        let table: &[(u8, [bool; 3], Option<u8>)] = &[
            (2, [Y, Y, Y], Some(2)),
            (1, [Y, Y, Y], Some(1)),
            (0, [Y, Y, Y], Some(0)),
            // The high layer paused: the best below the request.
            (2, [Y, Y, N], Some(1)),
            (2, [Y, N, N], Some(0)),
            (2, [Y, N, Y], Some(2)),
            (1, [Y, N, Y], Some(0)),
            // Nothing at or below the request: the lowest active layer rather than nothing.
            (0, [N, Y, Y], Some(1)),
            (0, [N, N, Y], Some(2)),
            (1, [N, N, Y], Some(2)),
            // A request above the layers that exist.
            (7, [Y, Y, N], Some(1)),
            // Nothing active: keep the current target.
            (2, [N, N, N], None),
            (0, [N, N, N], None),
        ];
        for &(requested, active, want) in table {
            assert_eq!(
                choose_layer(requested, active),
                want,
                "requested {requested}, active {active:?}"
            );
        }
    }

    #[test]
    fn active_layers_use_the_window() {
        // Any instant will do as the origin (the clock module is where time is read).
        let t0 = crate::clock::system().now();
        let now = t0 + Duration::from_secs(10);
        let seen = [
            Some(now - Duration::from_millis(10)),
            None,
            Some(now - ACTIVE_WINDOW),
        ];
        assert_eq!(active_layers(&seen, now), [true, false, false]);
        let seen = [
            Some(now - ACTIVE_WINDOW + Duration::from_millis(1)),
            None,
            Some(now),
        ];
        assert_eq!(active_layers(&seen, now), [true, false, true]);
        // A packet stamped after `now` (a later wake-up's time) still counts as recent.
        let seen = [Some(now + Duration::from_millis(5)), None, None];
        assert_eq!(active_layers(&seen, now), [true, false, false]);
    }
}
