//! Browser interop in Firefox ESR (Debian firefox-esr, driven by puppeteer-core over WebDriver
//! BiDi): the same two pages of the unmodified `livekit-client` SDK as tests/browser.rs — audio,
//! video with per-subscriber simulcast layer choice, reliable data, mute/unmute, leave.
//!
//! Firefox never pairs with loopback ICE candidates, and tests may only send traffic to 127.0.0.1
//! or to namespaces they create. So each test re-executes this test binary inside a private network
//! namespace (`unshare -n`, root) holding `lo` and a dummy (or veth) interface 10.199.0.1/24 that
//! exists only there, where an `#[ignore]`d inner test binds the server's media to 10.199.0.1 and
//! drives Firefox. Without `unshare` (not root, no util-linux) the tests skip loudly, or fail in CI.

mod common;
use common::pages::{self, Browser, Mode};
use std::process::Command;

const NETNS_IP: &str = "10.199.0.1";
/// Set for the inner test run inside the namespace.
const IN_NETNS: &str = "PARLOR_IN_TEST_NETNS";

/// `lo` up, and a test interface with NETNS_IP: a dummy where the kernel has the module, else a
/// veth pair (containers often lack `dummy`); the default route points at it. Then run the inner
/// test (this binary, "$0", is the namespace's only program).
const NETNS_SETUP: &str = r#"set -e
ip link set lo up
if ! ip link add pl0 type dummy 2>/dev/null; then
  ip link add pl0 type veth peer name pl1
  ip link set pl1 up
fi
ip addr add 10.199.0.1/24 dev pl0
ip link set pl0 up
ip route add default dev pl0
exec "$0" --exact "$1" --ignored --nocapture --test-threads 1
"#;

/// `unshare -n` works here (root, util-linux, `ip`)? Under CI its absence is a failure.
fn netns_ready() -> bool {
    let ok = Command::new("unshare")
        .args(["-n", "ip", "link", "set", "lo", "up"])
        .output()
        .is_ok_and(|o| o.status.success());
    match ok {
        true => true,
        false if std::env::var_os("CI").is_some() => {
            panic!("Firefox browser test needs `unshare -n` (root, util-linux) and `ip` (iproute2)")
        }
        false => {
            eprintln!("SKIP Firefox browser test: `unshare -n` or `ip` unavailable (needs root)");
            false
        }
    }
}

/// Run the `#[ignore]`d test `inner` of this binary inside a fresh network namespace.
fn in_netns(inner: &str) {
    if !pages::browser_ready(Browser::Firefox) || !netns_ready() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["-n", "sh", "-c", NETNS_SETUP])
        .arg(&exe)
        .arg(inner)
        .env(IN_NETNS, "1")
        .output()
        .expect("unshare did not start");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(out.status.success(), "{inner} failed in the namespace");
    assert!(
        stdout.contains("1 passed"),
        "{inner} did not run in the namespace"
    );
}

/// The inner half: only meaningful inside the namespace `in_netns` made.
async fn inner(mode: Mode) {
    if std::env::var_os(IN_NETNS).is_none() {
        eprintln!("SKIP: run by its outer test inside a private network namespace, not directly");
        return;
    }
    pages::run_pages(Browser::Firefox, mode, Some(NETNS_IP)).await;
}

#[test]
fn firefox_pages_exchange_audio_data_mute_and_leave() {
    in_netns("firefox_inner_audio");
}

#[test]
fn firefox_pages_exchange_audio_and_video_with_simulcast_layer_choice() {
    in_netns("firefox_inner_video");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run inside a private network namespace by firefox_pages_exchange_audio_data_mute_and_leave"]
async fn firefox_inner_audio() {
    inner(Mode::Audio).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run inside a private network namespace by firefox_pages_exchange_audio_and_video_with_simulcast_layer_choice"]
async fn firefox_inner_video() {
    inner(Mode::Video).await;
}
