//! Start-up repair of calls and huddles a crash (SIGKILL, power loss) left open: their rooms died
//! with the process, so no event will ever end them. Before serving, every open call and huddle
//! whose room is not live is finished the way the event consumer would have: members still in the
//! room are marked left, an `active` call (or a ringing one someone had joined) is `completed` with
//! its duration up to the best known end. The best known end is the latest of the members'
//! join/leave times, the end of the call's recordings (repaired just before) and, when someone was
//! still in the room, the server's last heartbeat (`<data_dir>/heartbeat`, unix ms, rewritten every
//! `HEARTBEAT_INTERVAL` while it runs). Calls ringing with nobody joined are left to the ring sweep
//! (they may still be answered until `RING_TIMEOUT_MS`, then end `missed`).
//!
//! Multi-node mode: a room another live node owns (its Redis lease) is live, not orphaned; the
//! start-up repair of one node never finishes the calls of another. The rooms of a node that died
//! are found by [`spawn_cluster_sweep`], which every node runs: a call or huddle whose room no live
//! node has owned for `[redis] orphan_grace_ms` (nobody rejoined it on a live node) is finished the
//! same way, its end estimated from the time its node stopped heartbeating. Finishing is a
//! conditional update, so when several nodes sweep at once one of them ends the call and sends its
//! one `call.completed` webhook.

use crate::state::AppState;
use crate::store::StoreResult;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::{info, warn};

/// How often the heartbeat file is rewritten (the precision of a crashed call's end time).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);

fn heartbeat_path(data_dir: &Path) -> PathBuf {
    data_dir.join("heartbeat")
}

/// The last heartbeat the previous run wrote (unix ms), if any.
pub fn last_heartbeat(data_dir: &Path) -> Option<i64> {
    std::fs::read_to_string(heartbeat_path(data_dir))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Rewrite the heartbeat file every `HEARTBEAT_INTERVAL` until shutdown (write + rename: a crash
/// mid-write leaves the previous value).
pub fn spawn_heartbeat(state: &AppState) {
    let (dir, clock, stop) = (
        state.config.storage.data_dir.clone(),
        state.clock.clone(),
        state.shutdown.clone(),
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
        let (path, tmp) = (heartbeat_path(&dir), dir.join("heartbeat.tmp"));
        if let Err(e) = tokio::fs::create_dir_all(&dir).await {
            warn!(dir = %dir.display(), error = %e, "no heartbeat: cannot create the data dir");
            return;
        }
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let now = clock.unix_ms().to_string();
            let res = async {
                tokio::fs::write(&tmp, now.as_bytes()).await?;
                tokio::fs::rename(&tmp, &path).await
            }
            .await;
            if let Err(e) = res {
                warn!(path = %path.display(), error = %e, "cannot write the heartbeat file");
            }
        }
    });
}

/// Finish the calls and huddles whose rooms are not live; `heartbeat` is the previous run's last.
/// Returns (calls, huddles) finished.
pub async fn finish(state: &AppState, heartbeat: Option<i64>) -> (usize, usize) {
    finish_due(state, &mut |_| Some(heartbeat)).await
}

/// Asked of every open call or huddle whose room is live nowhere: None leaves it open for now,
/// Some(heartbeat) finishes it with that as its node's last heartbeat.
type Due<'a> = dyn FnMut(&str) -> Option<Option<i64>> + Send + 'a;

async fn finish_due(state: &AppState, due: &mut Due<'_>) -> (usize, usize) {
    let calls = finish_calls(state, due).await.unwrap_or_else(|e| {
        warn!(error = %e, "finishing calls whose rooms died");
        0
    });
    let huddles = finish_huddles(state, due).await.unwrap_or_else(|e| {
        warn!(error = %e, "finishing huddles whose rooms died");
        0
    });
    (calls, huddles)
}

/// Multi-node mode: every `heartbeat_ms × 2`, finish the calls and huddles no live node has owned
/// for `orphan_grace_ms` (the rooms of a node that died). Their end is estimated as the time they
/// were first seen unowned less `node_ttl_ms` (when the dead node last renewed its leases).
pub fn spawn_cluster_sweep(state: &AppState) {
    if !state.cluster.enabled() {
        return;
    }
    let cfg = state.config.redis.clone();
    let state = state.clone();
    tokio::spawn(async move {
        let grace = i64::try_from(cfg.orphan_grace_ms).unwrap_or(i64::MAX);
        let ttl = i64::try_from(cfg.node_ttl_ms).unwrap_or(0);
        let mut tick = tokio::time::interval(Duration::from_millis(cfg.heartbeat_ms.max(50) * 2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Room → when this node first saw it unowned (forgotten once it is owned or finished).
        let mut unowned: HashMap<String, i64> = HashMap::new();
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let now = state.clock.unix_ms();
            let mut seen = HashSet::new();
            let (calls, huddles) = finish_due(&state, &mut |room| {
                seen.insert(room.to_owned());
                let first = *unowned.entry(room.to_owned()).or_insert(now);
                (now - first >= grace).then_some(Some(first - ttl))
            })
            .await;
            unowned.retain(|room, _| seen.contains(room));
            if calls + huddles > 0 {
                info!(
                    calls,
                    huddles, "finished calls and huddles of a node that died"
                );
            }
        }
    });
}

/// Multi-node mode: the room is open on another live node (so not orphaned). When Redis cannot
/// tell, it is assumed live: finishing a call that is still going would be the worse mistake.
pub(crate) async fn live_elsewhere(state: &AppState, room: &str) -> bool {
    if !state.cluster.enabled() {
        return false;
    }
    state.cluster.room_live_elsewhere(room).await.unwrap_or_else(|e| {
        warn!(room, error = %e, "cannot tell from redis whether the room is live elsewhere; leaving it open");
        true
    })
}

/// The best known end: the latest known time, the heartbeat too when someone was still in.
fn best_end(
    known: impl Iterator<Item = i64>,
    still_in: bool,
    heartbeat: Option<i64>,
    now: i64,
) -> i64 {
    let latest = known.max();
    let hb = heartbeat.filter(|_| still_in);
    latest.into_iter().chain(hb).max().unwrap_or(now).min(now)
}

async fn finish_calls(state: &AppState, due: &mut Due<'_>) -> StoreResult<usize> {
    let store = &state.store;
    let live = state.sfu.rooms();
    let now = state.clock.unix_ms();
    let mut n = 0;
    for call in store.open_calls().await? {
        if live.contains(&call.id) || live_elsewhere(state, &call.id).await {
            continue;
        }
        let members = store.call_members(&call.id).await?;
        let first_join = members.iter().filter_map(|m| m.joined_at).min();
        let Some(started) = call.started_at.or(first_join) else {
            continue; // ringing, nobody joined: the ring sweep's
        };
        let Some(heartbeat) = due(&call.id) else {
            continue;
        };
        let still_in = members
            .iter()
            .any(|m| m.joined_at.is_some() && m.left_at.is_none());
        let recorded = store.last_recording_end(&call.id).await?;
        let known = members
            .iter()
            .flat_map(|m| [m.joined_at, m.left_at])
            .chain([Some(started), recorded])
            .flatten();
        let end = best_end(known, still_in, heartbeat, now).max(started);
        if store
            .finish_orphaned_call(&call.id, &call.status, started, end, end - started)
            .await?
        {
            n += 1;
            info!(call = %call.id, was = %call.status, ended_at = end, duration_ms = end - started,
                "call left open by a crash completed");
            if let Ok(c) = store.get_call(&call.id).await {
                let body = crate::embed::finalize::completed_payload(state, &c).await;
                state.webhooks.emit("call.completed", body).await;
            }
        }
    }
    Ok(n)
}

async fn finish_huddles(state: &AppState, due: &mut Due<'_>) -> StoreResult<usize> {
    let store = &state.store;
    let live = state.sfu.rooms();
    let now = state.clock.unix_ms();
    let mut n = 0;
    for id in store.active_huddle_ids().await? {
        if live.contains(&id) || live_elsewhere(state, &id).await {
            continue;
        }
        let Some(heartbeat) = due(&id) else {
            continue;
        };
        let members = store.huddle_members(&id).await?;
        let known = members
            .iter()
            .flat_map(|m| [m.joined_at, m.left_at])
            .flatten();
        let end = best_end(known, true, heartbeat, now);
        store.finish_orphaned_huddle(&id, end).await?;
        info!(huddle = %id, ended_at = end, "huddle left open by a crash ended");
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::best_end;

    #[test]
    fn best_end_prefers_the_latest_known_time() {
        let now = 10_000;
        assert_eq!(best_end([1, 5, 3].into_iter(), false, Some(9_000), now), 5);
        assert_eq!(best_end([1, 5].into_iter(), true, Some(9_000), now), 9_000);
        assert_eq!(best_end([1, 5].into_iter(), true, None, now), 5);
        assert_eq!(best_end([1, 50_000].into_iter(), true, None, now), now);
        assert_eq!(best_end(std::iter::empty(), false, None, now), now);
    }
}
