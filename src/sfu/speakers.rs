//! Active-speaker ranking, pure: who is speaking from each participant's last voiced audio level
//! (RFC 6464), loudest first, and the `SpeakerInfo` list clients get when the set changes (LiveKit
//! sends the current speakers active and those who stopped inactive). The worker records levels on
//! the packet path and calls these on its housekeeping tick.

use parlor_signaling::protocol::proto::SpeakerInfo;
use std::time::{Duration, Instant};

/// A participant is speaking if its last voiced packet is at most this old (one quiet packet between
/// words does not end "speaking").
pub const SPEAKING_WINDOW: Duration = Duration::from_millis(500);

/// RFC 6464 level (−dBov) below which a packet counts as voiced.
pub const SPEAKING_LEVEL: u8 = 50;

/// Is an RFC 6464 level (0 dBov loudest .. 127 silence) voiced?
pub fn is_voiced(level: u8) -> bool {
    level < SPEAKING_LEVEL
}

/// The speaking participants, loudest first, with LiveKit's level (0..1, 1 loudest): `candidates` are
/// (sid, last voiced level and when); ties keep the candidates' order.
pub fn rank<'a>(
    candidates: impl IntoIterator<Item = (&'a str, Option<(u8, Instant)>)>,
    now: Instant,
) -> Vec<(String, f32)> {
    let mut speakers: Vec<(String, f32)> = candidates
        .into_iter()
        .filter_map(|(sid, last)| {
            let (level, at) = last?;
            (now.saturating_duration_since(at) < SPEAKING_WINDOW)
                .then(|| (sid.to_string(), 1.0 - f32::from(level.min(127)) / 127.0))
        })
        .collect();
    speakers.sort_by(|a, b| b.1.total_cmp(&a.1));
    speakers
}

/// What to tell clients when the ranked speakers are `now` and were `last` (sids): None if the same
/// participants speak in the same order; else the speakers (active, loudest first) followed by those
/// who stopped (inactive, level 0).
pub fn changes(now: &[(String, f32)], last: &[String]) -> Option<Vec<SpeakerInfo>> {
    if now.len() == last.len() && now.iter().zip(last).all(|(a, b)| a.0 == *b) {
        return None;
    }
    let mut infos: Vec<SpeakerInfo> = now
        .iter()
        .map(|(sid, level)| SpeakerInfo {
            sid: sid.clone(),
            level: *level,
            active: true,
        })
        .collect();
    for old in last {
        if !now.iter().any(|(sid, _)| sid == old) {
            infos.push(SpeakerInfo {
                sid: old.clone(),
                level: 0.0,
                active: false,
            });
        }
    }
    Some(infos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voiced_threshold() {
        for (level, voiced) in [(0, true), (49, true), (50, false), (127, false)] {
            assert_eq!(is_voiced(level), voiced, "level {level}");
        }
    }

    #[test]
    fn rank_table() {
        // Any instant will do as the origin (the clock module is where time is read).
        let t0 = crate::clock::system().now();
        let now = t0 + Duration::from_secs(5);
        let ago = |ms: u64| Some(now - Duration::from_millis(ms));
        // (candidates as (sid, level, ms ago), ranked sids)
        type Candidate<'a> = (&'a str, u8, Option<u64>);
        let table: &[(&[Candidate], &[&str])] = &[
            (&[], &[]),
            (&[("a", 10, Some(0))], &["a"]),
            // Louder (lower −dBov) first.
            (&[("a", 30, Some(0)), ("b", 10, Some(100))], &["b", "a"]),
            // Stale (≥ 500 ms) or never voiced: not speaking.
            (
                &[("a", 10, Some(500)), ("b", 20, Some(499)), ("c", 0, None)],
                &["b"],
            ),
            // Ties keep the order given.
            (
                &[("a", 20, Some(0)), ("b", 20, Some(0)), ("c", 5, Some(0))],
                &["c", "a", "b"],
            ),
        ];
        for (candidates, want) in table {
            let ranked = rank(
                candidates
                    .iter()
                    .map(|(sid, level, ms)| (*sid, ms.and_then(ago).map(|at| (*level, at)))),
                now,
            );
            let sids: Vec<&str> = ranked.iter().map(|(s, _)| s.as_str()).collect();
            assert_eq!(&sids, want, "{candidates:?}");
        }
        let ranked = rank([("a", Some((0, now))), ("b", Some((127, now)))], now);
        assert_eq!(ranked, vec![("a".to_string(), 1.0), ("b".to_string(), 0.0)]);
    }

    #[test]
    fn changes_table() {
        let s = |v: &[(&str, f32)]| -> Vec<(String, f32)> {
            v.iter().map(|(a, l)| (a.to_string(), *l)).collect()
        };
        let l = |v: &[&str]| -> Vec<String> { v.iter().map(|a| a.to_string()).collect() };
        // (now, last, expected (sid, active) or None)
        type Row<'a> = (
            &'a [(&'a str, f32)],
            &'a [&'a str],
            Option<&'a [(&'a str, bool)]>,
        );
        let table: &[Row] = &[
            (&[], &[], None),
            (&[("a", 0.9)], &["a"], None),
            (&[("a", 0.9)], &[], Some(&[("a", true)])),
            (&[], &["a"], Some(&[("a", false)])),
            // Order changed: news.
            (
                &[("b", 0.9), ("a", 0.5)],
                &["a", "b"],
                Some(&[("b", true), ("a", true)]),
            ),
            (
                &[("b", 0.9)],
                &["a", "b"],
                Some(&[("b", true), ("a", false)]),
            ),
            (
                &[("c", 0.9)],
                &["a", "b"],
                Some(&[("c", true), ("a", false), ("b", false)]),
            ),
        ];
        for (now, last, want) in table {
            let got = changes(&s(now), &l(last));
            let got: Option<Vec<(&str, bool)>> = got
                .as_ref()
                .map(|v| v.iter().map(|i| (i.sid.as_str(), i.active)).collect());
            assert_eq!(got.as_deref(), *want, "now {now:?}, last {last:?}");
        }
        let infos = changes(&s(&[("a", 0.75)]), &l(&["b"])).unwrap();
        assert_eq!(infos[0].level, 0.75);
        assert_eq!(infos[1].level, 0.0);
    }
}
