//! Multi-node mode on `parlor serve` processes sharing one Redis and one PostgreSQL database:
//! a node killed with SIGKILL, Redis restarted mid-call, and a call's product view (participants,
//! presence, its one `call.completed` webhook) across nodes. Redis and PostgreSQL are required under
//! CI; elsewhere a missing one skips with a printed note.

#[path = "common/cluster.rs"]
mod cluster;
mod common;
#[path = "common/lk.rs"]
mod lk;

use cluster::*;
use common::*;
use lk::Seen;
use std::time::Duration;

/// Issue 20: kill -9 of the node owning a room, two `parlor serve` processes. Within the configured
/// bound (node_ttl_ms 1.5 s) the room's lease is gone, clients rejoining through the surviving node
/// get audio again there, and a room the survivor owns the whole time loses no packet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_fails_over_to_the_survivor() {
    let Some(mut redis) = redis().await else {
        return;
    };
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let prefix = format!("parlor-test-{}", parlor::ids::new_id("").to_lowercase());
    let url = redis_url();
    let mut a = spawn_node("node-a", &db, &url, &prefix, &[]).await;
    let b = spawn_node("node-b", &db, &url, &prefix, &[]).await;
    // Room "doomed" on A (joined through A first; ties go to the node asked), bob relayed via B.
    let mut alice = publishing(&a.ws, "alice", "doomed").await;
    let got = owner_of(&mut redis, &prefix, "doomed").await;
    assert_eq!(got.as_deref(), Some("node-a"));
    let mut bob = publishing(&b.ws, "bob", "doomed").await;
    audio_flows(&alice, &mut bob, 1).await;
    // Room "steady" on B (the least-loaded node now), streaming across the kill.
    let carl = publishing(&b.ws, "carl", "steady").await;
    let mut dan = publishing(&b.ws, "dan", "steady").await;
    let got = owner_of(&mut redis, &prefix, "steady").await;
    assert_eq!(got.as_deref(), Some("node-b"));
    audio_flows(&carl, &mut dan, 3).await;
    // 250 packets (5 s) sent while A dies and "doomed" fails over.
    let counting = tokio::spawn(async move {
        let n = stream_count(&carl, &mut dan, 3, 1000, 250).await;
        (n, carl, dan)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = tokio::time::Instant::now();
    a.child.kill().unwrap(); // SIGKILL
    let _ = a.child.wait();
    drop((alice, bob));
    // The lease of "doomed" lapses within node_ttl_ms (plus a heartbeat of slack).
    loop {
        let got = owner_of(&mut redis, &prefix, "doomed").await;
        if got.is_none() {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_millis(2_500),
            "lease of a dead node still held after {:?}",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let released_after = killed.elapsed();
    // Rejoin through the survivor: the room is claimed for B and audio flows both ways again.
    alice = publishing(&b.ws, "alice", "doomed").await;
    bob = publishing(&b.ws, "bob", "doomed").await;
    let got = owner_of(&mut redis, &prefix, "doomed").await;
    assert_eq!(got.as_deref(), Some("node-b"));
    audio_flows(&alice, &mut bob, 1).await;
    audio_flows(&bob, &mut alice, 2).await;
    let (n, _carl, _dan) = counting.await.unwrap();
    eprintln!("lease released {released_after:?} after kill -9; steady room got {n}/250 packets");
    assert_eq!(
        n, 250,
        "the survivor's own room lost packets across the kill"
    );
    drop(b);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_survives_a_redis_restart() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let port = free_port();
    let mut r = own_redis(port).await;
    let url = format!("redis://127.0.0.1:{port}");
    let a = spawn_node("node-a", &db, &url, "restart", &[]).await;
    let b = spawn_node("node-b", &db, &url, "restart", &[]).await;
    let mut alice = publishing(&a.ws, "alice", "calm").await;
    let mut bob = publishing(&b.ws, "bob", "calm").await;
    audio_flows(&alice, &mut bob, 1).await;
    let restart = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = r.0.kill(); // SIGKILL: no goodbye, every key gone
        let _ = r.0.wait();
        tokio::time::sleep(Duration::from_secs(1)).await;
        own_redis(port).await
    };
    let (n, again) = tokio::join!(stream_count(&alice, &mut bob, 1, 1000, 250), restart);
    r = again;
    eprintln!("{n}/250 packets across the Redis restart");
    assert_eq!(n, 250, "media must not depend on Redis");
    // Bob's relayed signal session survived: he still gets alice's audio and she his.
    audio_flows(&bob, &mut alice, 2).await;
    // Both nodes register again; a new room joined through both nodes works.
    for p in [&a, &b] {
        within_5s("node re-registered after the Redis restart", || async {
            let h: serde_json::Value = reqwest::get(format!("{}/health", p.http))
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (h["cluster"]["connected"] == true && h["cluster"]["nodes"].as_array()?.len() == 2)
                .then_some(())
        })
        .await;
    }
    let carol = publishing(&b.ws, "carol", "fresh").await;
    let mut dave = publishing(&a.ws, "dave", "fresh").await;
    audio_flows(&carol, &mut dave, 3).await;
    drop((alice, bob, carol, dave, a, b, r));
    db.drop_db().await;
}

/// Issue 20 acceptance on two `parlor serve` processes sharing Redis, PostgreSQL and one webhook
/// receiver (both nodes send webhooks and both dispatch the shared queue): a call created through A,
/// alice on A and bob through B. The room's node is the one Redis names, audio flows both ways, the
/// participants list is the same from both nodes, presence set through A is read through B, and the
/// hang-up sends exactly one `call.completed`. Then a call whose node is killed and that nobody
/// rejoins: the survivor finishes it once `orphan_grace_ms` has passed, with one `call.completed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_across_two_processes_completes_once() {
    use reqwest::Method;
    use serde_json::json;
    let Some(mut redis) = redis().await else {
        return;
    };
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let hooks = webhooks::Receiver::start().await;
    let prefix = format!("parlor-test-{}", parlor::ids::new_id("").to_lowercase());
    let url = redis_url();
    let env = [
        ("PARLOR_WEBHOOKS_URLS", hooks.url.as_str()),
        ("PARLOR_REDIS_ORPHAN_GRACE_MS", "2000"),
    ];
    let a = spawn_node("node-a", &db, &url, &prefix, &env).await;
    let b = spawn_node("node-b", &db, &url, &prefix, &env).await;

    let (id, created, bob_join) = call_of_alice_and_bob(&a.http, &b.http).await;
    let mut alice = lk::Client::publishing(&a.ws, created["token"].as_str().unwrap()).await;
    assert_eq!(
        owner_of(&mut redis, &prefix, &id).await.as_deref(),
        Some("node-a")
    );
    let mut bob = lk::Client::publishing(&b.ws, bob_join["token"].as_str().unwrap()).await;
    audio_flows(&alice, &mut bob, 1).await;
    audio_flows(&bob, &mut alice, 2).await;

    let participants = |http: String, id: String| async move {
        let path = format!("/api/calls/{id}/participants");
        let (code, v) = api_call(&http, Method::GET, &path, "alice", None).await;
        assert_eq!(code, 200, "{v}");
        let mut ids: Vec<String> = v["participants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["user_id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    within_5s("both participants listed by both nodes", || async {
        let (on_a, on_b) = (
            participants(a.http.clone(), id.clone()).await,
            participants(b.http.clone(), id.clone()).await,
        );
        (on_a == ["alice", "bob"] && on_b == on_a).then_some(())
    })
    .await;
    let (code, v) = api_call(
        &a.http,
        Method::PUT,
        "/api/presence",
        "carol",
        Some(json!({"status": "away", "custom_message": "in a meeting"})),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    within_5s("carol away as node B sees her", || async {
        let (_, v) = api_call(&b.http, Method::GET, "/api/presence/carol", "dave", None).await;
        (v["presence"]["status"] == "away" && v["presence"]["custom_message"] == "in a meeting")
            .then_some(())
    })
    .await;

    // Hang up: one call.completed, whichever node's dispatcher sends it.
    bob.leave().await;
    alice.leave().await;
    let of = |id: &str| {
        let id = id.to_string();
        move |v: &serde_json::Value| v["data"]["id"] == id.as_str()
    };
    let done = hooks
        .signed_event_where("call.completed", SECRET, of(&id))
        .await;
    assert_eq!(done["data"]["status"], "completed", "{done}");
    let (_, v) = api_call(
        &b.http,
        Method::GET,
        &format!("/api/calls/{id}"),
        "bob",
        None,
    )
    .await;
    assert_eq!(v["call"]["status"], "completed", "{v}");

    // A second call (placed by load, so on either node); the node owning its room is killed and
    // nobody rejoins: the survivor finishes it after the grace.
    let second = new_call(&a.http, "alice").await;
    let id2 = second["call_id"].as_str().unwrap().to_string();
    let alice2 = lk::Client::publishing(&a.ws, second["token"].as_str().unwrap()).await;
    wait_call_active(&a.http, &id2, "alice").await;
    let active = tokio::time::Instant::now();
    let owner = owner_of(&mut redis, &prefix, &id2).await.unwrap();
    let (mut dead, survivor) = if owner == "node-a" { (a, b) } else { (b, a) };
    let killed = tokio::time::Instant::now();
    dead.child.kill().unwrap(); // SIGKILL
    let _ = dead.child.wait();
    drop(alice2);
    let done2 = hooks
        .signed_event_where("call.completed", SECRET, of(&id2))
        .await;
    let after = killed.elapsed();
    assert_eq!(done2["data"]["status"], "completed", "{done2}");
    // Its end is estimated as when its node last renewed the room's lease: not the time it was
    // swept up (the call was active for about `killed - active` before the kill).
    let ms = done2["data"]["duration_ms"].as_i64().unwrap();
    let before_kill = (killed - active).as_millis() as i64;
    assert!(
        (0..=before_kill + 1_500).contains(&ms),
        "duration {ms} ms of a call active {before_kill} ms before its node died"
    );
    // node_ttl 1.5 s + grace 2 s, swept every 0.4 s: finished no sooner than both and soon after.
    assert!(
        after >= Duration::from_millis(3_000) && after < Duration::from_secs(10),
        "the dead node's call finished {after:?} after the kill"
    );
    // No second delivery of either event arrives (both nodes sweep and dispatch).
    tokio::time::sleep(Duration::from_secs(3)).await;
    for call in [&id, &id2] {
        let n = hooks.events("call.completed", of(call)).len();
        assert_eq!(n, 1, "call.completed webhooks for {call}: {n}");
    }
    eprintln!(
        "{owner}'s call finished {after:?} after its kill -9 (duration {ms} ms, active {before_kill} ms \
         before it), one webhook each"
    );
    drop((dead, survivor));
    db.drop_db().await;
}

/// Issue 20: a node cut off longer than its lease (SIGSTOP, as a long GC pause or a partition would)
/// loses its room to the node a new client joins through; when it resumes it closes its stale copy
/// and tells its clients to reconnect (LeaveRequest MIGRATION + RECONNECT). The call goes on at the
/// new node: not completed by the move, one `call.completed` when it really ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_its_lease_hands_its_clients_over() {
    let Some(mut redis) = redis().await else {
        return;
    };
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let hooks = webhooks::Receiver::start().await;
    let prefix = format!("parlor-test-{}", parlor::ids::new_id("").to_lowercase());
    let url = redis_url();
    let env = [("PARLOR_WEBHOOKS_URLS", hooks.url.as_str())];
    let a = spawn_node("node-a", &db, &url, &prefix, &env).await;
    let b = spawn_node("node-b", &db, &url, &prefix, &env).await;
    let (id, created, bob_join) = call_of_alice_and_bob(&a.http, &b.http).await;
    let mut alice = lk::Client::publishing(&a.ws, created["token"].as_str().unwrap()).await;
    assert_eq!(
        owner_of(&mut redis, &prefix, &id).await.as_deref(),
        Some("node-a")
    );
    wait_call_active(&a.http, &id, "alice").await;

    // A freezes past node_ttl_ms (1.5 s); bob's join through B then claims the room for B.
    let pid = a.child.id().to_string();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap();
        assert!(ok.success(), "kill {sig}");
    };
    signal("-STOP");
    let frozen = tokio::time::Instant::now();
    while owner_of(&mut redis, &prefix, &id).await.is_some() {
        assert!(
            frozen.elapsed() < Duration::from_secs(5),
            "the frozen node's lease never lapsed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bob = lk::Client::publishing(&b.ws, bob_join["token"].as_str().unwrap()).await;
    assert_eq!(
        owner_of(&mut redis, &prefix, &id).await.as_deref(),
        Some("node-b")
    );
    signal("-CONT");

    // A notices on its next heartbeat: alice is told to reconnect, for the room moved.
    told_to_reconnect(
        &mut alice,
        5,
        "no LeaveRequest from the node that lost the room",
    )
    .await;
    drop(alice);
    // Her SDK would reconnect through the cluster's URL; here through A, relayed to B.
    alice = lk::Client::publishing(&a.ws, created["token"].as_str().unwrap()).await;
    assert_eq!(
        owner_of(&mut redis, &prefix, &id).await.as_deref(),
        Some("node-b")
    );
    goes_on_then_completes_once(
        alice,
        bob,
        &b.http,
        &hooks,
        &id,
        "the move must not end the call",
    )
    .await;
    drop((a, b));
    db.drop_db().await;
}

/// Issue 20: SIGTERM drains a node. At once it is listed as draining and a new room asked of it is
/// placed on the other node; its own call goes on (audio flowing) until the drain deadline
/// (`server.drain_timeout_secs`, 3 s here); then its clients are told to reconnect (MIGRATION +
/// RECONNECT), its leases are released at once (not after node_ttl_ms), the process exits 0, and the
/// call goes on at the survivor — still one call, completed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_hands_rooms_over() {
    let Some(mut redis) = redis().await else {
        return;
    };
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let hooks = webhooks::Receiver::start().await;
    let prefix = format!("parlor-test-{}", parlor::ids::new_id("").to_lowercase());
    let url = redis_url();
    let env = [
        ("PARLOR_WEBHOOKS_URLS", hooks.url.as_str()),
        ("PARLOR_SERVER_DRAIN_TIMEOUT_SECS", "3"),
    ];
    let mut a = spawn_node("node-a", &db, &url, &prefix, &env).await;
    let b = spawn_node("node-b", &db, &url, &prefix, &env).await;
    let (id, created, bob_join) = call_of_alice_and_bob(&a.http, &b.http).await;
    let mut alice = lk::Client::publishing(&a.ws, created["token"].as_str().unwrap()).await;
    let mut bob = lk::Client::publishing(&b.ws, bob_join["token"].as_str().unwrap()).await;
    assert_eq!(
        owner_of(&mut redis, &prefix, &id).await.as_deref(),
        Some("node-a")
    );
    audio_flows(&alice, &mut bob, 1).await;

    let pid = a.child.id().to_string();
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(ok.success());
    let term = tokio::time::Instant::now();
    within_5s("node-a listed as draining", || async {
        let h: serde_json::Value = reqwest::get(format!("{}/health", b.http))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let members = h["cluster"]["members"].as_array()?.clone();
        members
            .iter()
            .any(|m| m["node"] == "node-a" && m["status"] == "draining")
            .then_some(())
    })
    .await;
    // A new room asked of the draining node goes to the other one (it is still served: relayed).
    let carol = publishing(&a.ws, "carol", "after-term").await;
    assert_eq!(
        owner_of(&mut redis, &prefix, "after-term").await.as_deref(),
        Some("node-b")
    );
    drop(carol);
    // The call goes on through the drain.
    let n = stream_count(&alice, &mut bob, 1, 2000, 50).await;
    assert!(n >= 49, "{n}/50 packets during the drain");
    assert!(
        term.elapsed() < Duration::from_secs(3),
        "the drain ended early: {:?}",
        term.elapsed()
    );

    told_to_reconnect(&mut alice, 6, "no LeaveRequest at the drain deadline").await;
    let handed = term.elapsed();
    assert!(
        handed >= Duration::from_secs(3),
        "handed over after {handed:?}"
    );
    let status = tokio::task::spawn_blocking(move || {
        let s = a.child.wait();
        (s, a)
    })
    .await
    .unwrap();
    let (exit, a) = status;
    assert!(exit.unwrap().success(), "node-a exit: {}", a.log());
    assert_eq!(
        owner_of(&mut redis, &prefix, &id).await,
        None,
        "lease kept after the hand-over"
    );

    // Alice and bob come back through B: the same call goes on there.
    drop((alice, bob));
    let alice = lk::Client::publishing(&b.ws, created["token"].as_str().unwrap()).await;
    let bob = lk::Client::publishing(&b.ws, bob_join["token"].as_str().unwrap()).await;
    assert_eq!(
        owner_of(&mut redis, &prefix, &id).await.as_deref(),
        Some("node-b")
    );
    goes_on_then_completes_once(
        alice,
        bob,
        &b.http,
        &hooks,
        &id,
        "the drain must not end the call",
    )
    .await;
    eprintln!("drain: handed over {handed:?} after SIGTERM (deadline 3 s); call completed once");
    drop((a, b));
    db.drop_db().await;
}

/// The next LeaveRequest `client` gets (within `secs`) moves it: MIGRATION, RECONNECT.
async fn told_to_reconnect(client: &mut lk::Client, secs: u64, what: &str) {
    use parlor_signaling::protocol::proto;
    let leave = tokio::time::timeout(
        Duration::from_secs(secs),
        client.wait_for(|s| match s {
            Seen::Signal(proto::signal_response::Message::Leave(l)) => Some(l.clone()),
            _ => None,
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("{what}"));
    assert_eq!(
        leave.reason(),
        proto::DisconnectReason::Migration,
        "{leave:?}"
    );
    assert_eq!(
        leave.action(),
        proto::leave_request::Action::Reconnect,
        "{leave:?}"
    );
}

/// Call `id`, moved to the node at `http`, goes on there: audio both ways, still `active` (`why`
/// it must be), then one `call.completed` once both hang up.
async fn goes_on_then_completes_once(
    mut alice: lk::Client,
    mut bob: lk::Client,
    http: &str,
    hooks: &webhooks::Receiver,
    id: &str,
    why: &str,
) {
    audio_flows(&alice, &mut bob, 1).await;
    audio_flows(&bob, &mut alice, 2).await;
    let path = format!("/api/calls/{id}");
    let (_, v) = api_call(http, reqwest::Method::GET, &path, "bob", None).await;
    assert_eq!(v["call"]["status"], "active", "{why}: {v}");
    bob.leave().await;
    alice.leave().await;
    let of = |v: &serde_json::Value| v["data"]["id"] == id;
    let done = hooks.signed_event_where("call.completed", SECRET, of).await;
    assert_eq!(done["data"]["status"], "completed", "{done}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(hooks.events("call.completed", of).len(), 1);
}
