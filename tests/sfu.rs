//! SFU core over the LiveKit protocol with real WebRTC peers (webrtc-rs `rtc` clients on 127.0.0.1).

mod common;
#[path = "common/lk.rs"]
mod lk;

use common::*;
use lk::{Client, Seen};
use parlor_signaling::protocol::proto;
use parlor_signaling::VideoGrant;
use proto::signal_response::Message as Resp;
use rtc::peer_connection::state::RTCPeerConnectionState;
use std::collections::BTreeMap;
use std::time::Duration;

fn payload(i: u16) -> Vec<u8> {
    // A known pattern: index, then bytes derived from it.
    let mut v = vec![0xF8, (i >> 8) as u8, i as u8];
    v.extend((0..40u8).map(|k| k.wrapping_mul(7).wrapping_add(i as u8)));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_audio_mute_and_leave() {
    let db = TestDb::sqlite();
    let s = TestServer::start(&db).await;
    let mut a = Client::connect(&s.ws, &s.token("alice", VideoGrant::join("room-1")), true).await;
    let mut b = Client::connect(&s.ws, &s.token("bob", VideoGrant::join("room-1")), false).await;
    assert_eq!(b.join.room.as_ref().unwrap().name, "room-1");
    assert!(b.join.participant.as_ref().unwrap().sid.starts_with("PA_"));
    assert!(b.join.ping_interval > 0 && b.join.ping_timeout > 0);
    assert!(!b.join.server_info.as_ref().unwrap().version.is_empty());
    assert_eq!(b.join.other_participants.len(), 1);
    assert_eq!(b.join.other_participants[0].identity, "alice");

    let track = a.publish_audio().await;
    assert!(track.sid.starts_with("TR_"));
    a.wait_for(|s| {
        matches!(s, Seen::PublisherState(RTCPeerConnectionState::Connected)).then_some(())
    })
    .await;

    // Send 250 packets (5 s of 20 ms frames) with a known payload pattern.
    let sender = {
        let n = 250u16;
        let pub_client = &a;
        for i in 0..n {
            pub_client.send_rtp(payload(i)).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        n
    };
    // B: participant update with the track, a subscriber offer, connected, then the packets.
    let mut got: BTreeMap<u16, Vec<u8>> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut saw_track_update = false;
    while tokio::time::Instant::now() < deadline && got.len() < sender as usize {
        match tokio::time::timeout_at(deadline, b.seen.recv()).await {
            Ok(Some(Seen::Rtp { payload, .. })) => {
                assert!(
                    payload.len() >= 3 && payload[0] == 0xF8,
                    "payload corrupted: {payload:?}"
                );
                let i = u16::from_be_bytes([payload[1], payload[2]]);
                assert_eq!(payload, self::payload(i), "payload {i} altered");
                got.insert(i, payload);
            }
            Ok(Some(Seen::Signal(Resp::Update(u)))) => {
                if u.participants
                    .iter()
                    .any(|p| p.identity == "alice" && p.tracks.iter().any(|t| t.sid == track.sid))
                {
                    saw_track_update = true;
                }
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    assert!(
        saw_track_update,
        "B never saw alice's track in a ParticipantUpdate"
    );
    // The first packets may go out before B's subscriber PC is connected; count from the first received.
    let first = *got.keys().next().expect("B received no RTP at all");
    let expected = sender - first;
    let ratio = got.len() as f64 / expected as f64;
    println!(
        "B received {} of {} packets after the first ({:.1}%)",
        got.len(),
        expected,
        ratio * 100.0
    );
    assert!(ratio >= 0.99, "received {} of {expected}", got.len());
    assert!(
        first < 100,
        "subscription took too long: first packet index {first}"
    );

    // Mute: B sees the track muted.
    a.send(proto::signal_request::Message::Mute(
        proto::MuteTrackRequest {
            sid: track.sid.clone(),
            muted: true,
        },
    ))
    .await;
    b.wait_for(|s| match s {
        Seen::Signal(Resp::Update(u)) => u
            .participants
            .iter()
            .any(|p| {
                p.identity == "alice" && p.tracks.iter().any(|t| t.sid == track.sid && t.muted)
            })
            .then_some(()),
        _ => None,
    })
    .await;
    // The participants API view follows.
    let snap = s.handle.state.sfu.participants("room-1");
    assert_eq!(snap.len(), 2);
    assert!(
        snap.iter().all(|p| !p.audio),
        "muted track still counted: {snap:?}"
    );

    // A leaves: B gets DISCONNECTED and a renegotiation offer for its subscriber PC.
    a.leave().await;
    let mut left = false;
    let mut reoffer = false;
    while !(left && reoffer) {
        b.wait_for(|s| match s {
            Seen::Signal(Resp::Update(u)) => {
                if u.participants.iter().any(|p| {
                    p.identity == "alice"
                        && p.state == proto::participant_info::State::Disconnected as i32
                }) {
                    left = true;
                }
                Some(())
            }
            Seen::Signal(Resp::Offer(o)) => {
                if o.id >= 2 {
                    reoffer = true;
                }
                Some(())
            }
            _ => None,
        })
        .await;
    }
    assert_eq!(s.handle.state.sfu.participants("room-1").len(), 1);
    b.leave().await;
    s.stop().await;
}
