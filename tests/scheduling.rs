//! Media worker scheduling. Its own test binary: it inspects this process's threads, so no other
//! test's server may run alongside it.

mod common;

use common::*;
use std::time::Duration;

/// `rtc.realtime_priority` puts the media worker threads under SCHED_FIFO (when the process may:
/// root or CAP_SYS_NICE), and a server that may not keeps running with normal scheduling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_workers_take_the_configured_realtime_priority() {
    let db = TestDb::sqlite();
    let s = TestServer::start_with(&db, |c| {
        c.rtc.workers = 2;
        c.rtc.realtime_priority = 7;
    })
    .await;
    // /proc/<tid>/stat: fields after the ")" of comm; rt_priority is field 40, policy field 41.
    let mut found = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while found.len() < 2 && std::time::Instant::now() < deadline {
        found.clear();
        for e in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            if !comm.starts_with("parlor-media-") {
                continue;
            }
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            let f: Vec<&str> = after.split_whitespace().collect();
            // `after` starts at field 3 (state).
            let rt_priority: u32 = f[40 - 3].parse().unwrap();
            let policy: u32 = f[41 - 3].parse().unwrap();
            found.push((comm.trim().to_string(), rt_priority, policy));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(found.len(), 2, "media threads: {found:?}");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    for (name, prio, policy) in &found {
        if root {
            assert_eq!((*prio, *policy), (7, 1), "{name}: SCHED_FIFO priority 7");
        } else {
            assert_eq!(*policy, 0, "{name}: normal scheduling when not permitted");
        }
    }
    // Either way the server serves.
    let h = s.client.get(s.url("/health")).send().await.unwrap();
    assert_eq!(h.status(), 200);
    s.stop().await;
}
