//! What the direct egress (src/sfu/egress.rs) keeps of `rtc`'s send-side interceptors, seen from a
//! real subscriber (webrtc-rs `rtc` client with its default interceptors: NACK generator, receiver
//! reports): a video packet lost between the server and the subscriber is NACKed and resent from the
//! server's send cache, and sender reports arrive with counts that match what was received.

mod common;
#[path = "common/lk.rs"]
mod lk;

use common::pages::metric;
use common::*;
use lk::{vp8_keyframe, Client, Seen};
use parlor_signaling::VideoGrant;
use rtc::peer_connection::state::RTCPeerConnectionState;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

async fn next_seq(viewer: &mut Client, sid: &str) -> u16 {
    viewer
        .wait_for(|s| match s {
            Seen::Rtp { track, seq, .. } if track == sid => Some(*seq),
            _ => None,
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_packet_lost_on_the_way_to_a_subscriber_is_resent_from_the_send_cache() {
    let db = TestDb::sqlite();
    let s = TestServer::start(&db).await;
    let mut cam = Client::connect_video(&s.ws, &s.token("cam", VideoGrant::join("nack-1"))).await;
    let track = cam.publish_video().await;
    cam.wait_for(|s| {
        matches!(s, Seen::PublisherState(RTCPeerConnectionState::Connected)).then_some(())
    })
    .await;
    let mut viewer =
        Client::connect(&s.ws, &s.token("viewer", VideoGrant::join("nack-1")), false).await;
    let stop = Arc::new(AtomicBool::new(false));
    let sending = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut i = 0u16;
            while !stop.load(Ordering::Relaxed) {
                cam.send_rtp(vp8_keyframe(i)).await;
                i = i.wrapping_add(1);
                tokio::time::sleep(Duration::from_millis(33)).await;
            }
            cam
        })
    };
    let sid = track.sid.clone();
    // Playing.
    let mut first = 0;
    for _ in 0..5 {
        first = next_seq(&mut viewer, &sid).await;
    }
    let before = s.metrics().await;
    // The next two RTP datagrams to the viewer are lost: its NACK generator asks for them.
    viewer.drop_inbound_rtp(2).await;
    let mut seen = BTreeSet::new();
    let mut last = first;
    for _ in 0..45 {
        last = next_seq(&mut viewer, &sid).await;
        seen.insert(last);
    }
    stop.store(true, Ordering::Relaxed);
    let _cam = sending.await.expect("sender task");
    let missing: Vec<u16> = (first.wrapping_add(1)..=last)
        .filter(|q| !seen.contains(q))
        .collect();
    assert!(
        missing.is_empty(),
        "sequence numbers {first}+1..={last} never arrived: {missing:?}"
    );
    let after = s.metrics().await;
    let nacks = metric(&after, "parlor_nacks_received_total")
        - metric(&before, "parlor_nacks_received_total");
    let resent =
        metric(&after, "parlor_retransmits_total") - metric(&before, "parlor_retransmits_total");
    assert!(nacks >= 1.0, "no NACK counted");
    let plis = metric(&after, "parlor_plis_forwarded_total")
        - metric(&before, "parlor_plis_forwarded_total");
    assert_eq!(
        plis, 0.0,
        "a NACK (in a compound RTCP packet) became a keyframe request"
    );
    assert!(resent >= 2.0, "resent {resent} packets, 2 were lost");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_reports_count_what_the_subscriber_received() {
    let db = TestDb::sqlite();
    let s = TestServer::start(&db).await;
    let alice = Client::publishing(&s.ws, &s.token("alice", VideoGrant::join("sr-1"))).await;
    let mut bob = Client::connect(&s.ws, &s.token("bob", VideoGrant::join("sr-1")), false).await;
    let stop = Arc::new(AtomicBool::new(false));
    const PAYLOAD: usize = 100;
    let sending = {
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                alice.send_rtp(vec![0xab; PAYLOAD]).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            alice
        })
    };
    // Count the RTP packets bob receives until the second sender report (the first may come
    // before much was sent); at that report, the server's count of packets sent on bob's leg
    // matches what bob received (loopback: nothing is lost) to within what is in flight.
    let (mut received, mut last_ts, mut reports) = (0u32, 0u32, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let sr = loop {
        let ev = tokio::time::timeout_at(deadline, bob.seen.recv())
            .await
            .expect("a sender report within 15 s")
            .expect("bob's events");
        match ev {
            Seen::Rtp { ts, .. } => {
                received += 1;
                last_ts = ts;
            }
            Seen::SenderReport {
                ssrc,
                packets,
                octets,
                rtp_time,
            } if packets > 0 => {
                reports += 1;
                if reports == 2 {
                    break (ssrc, packets, octets, rtp_time);
                }
            }
            _ => {}
        }
    };
    stop.store(true, Ordering::Relaxed);
    let _alice = sending.await.expect("sender task");
    let (_ssrc, packets, octets, rtp_time) = sr;
    assert!(
        received >= 40,
        "only {received} packets before the second report"
    );
    assert!(
        packets.abs_diff(received) <= 3,
        "report counts {packets} packets, bob received {received}"
    );
    assert_eq!(octets, packets * PAYLOAD as u32, "payload octets");
    // The report's RTP time is "now" on the stream's clock: after the last packet bob had, by
    // less than a few packets' worth (48 kHz, 960 ticks per 20 ms packet).
    let ahead = rtp_time.wrapping_sub(last_ts);
    assert!(
        ahead < 5 * 960 || last_ts.wrapping_sub(rtp_time) < 3 * 960,
        "report rtp time {rtp_time} vs last received {last_ts}"
    );
    s.stop().await;
}
