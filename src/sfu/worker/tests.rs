//! Unit tests of the worker's session bookkeeping, on a real `Worker` driven without its thread:
//! a participant whose channel closed is removed, and a client whose signal queue overflows is told
//! why and removed.

use super::*;
use crate::metrics::Metrics;
use crate::sfu::SfuHandle;
use std::sync::Arc;
use std::time::Duration;

async fn worker() -> Worker {
    let std_socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = std_socket.local_addr().expect("addr");
    let socket = crate::sfu::recvmmsg::media_socket(std_socket).expect("register");
    let cfg = WorkerConfig {
        workers: 1,
        realtime_priority: 0,
        candidate_ip: addr.ip(),
        tcp_bind: None,
        tcp_limits: crate::sfu::tcp::TcpLimits {
            max_connections: 4,
            max_connections_per_ip: 4,
            handshake_timeout: Duration::from_secs(1),
        },
        max_participants: 8,
        max_rooms: 2,
        empty_timeout: Duration::from_secs(60),
        remote_unmute: false,
    };
    Worker::new(
        0,
        socket,
        addr,
        None,
        cfg,
        SfuHandle::new(),
        Arc::new(Metrics::default()),
        crate::clock::system(),
    )
    .expect("worker")
}

fn req(
    identity: &str,
    events: mpsc::Sender<Out>,
    local: Option<mpsc::Sender<LocalMedia>>,
) -> JoinReq {
    JoinReq {
        room: "r".into(),
        identity: identity.into(),
        name: identity.into(),
        metadata: String::new(),
        attributes: Default::default(),
        perms: Perms {
            can_publish: true,
            can_subscribe: true,
            can_publish_data: true,
            can_update_metadata: false,
        },
        auto_subscribe: true,
        events,
        kind: proto::participant_info::Kind::Standard,
        single_pc: false,
        local,
        hidden: false,
        open_as: None,
    }
}

#[tokio::test]
async fn a_participant_whose_channel_closed_is_removed() {
    let mut w = worker().await;
    let now = w.wake();
    // An in-process participant (its signal channel is never read: only its media channel counts)
    // and a WebRTC client's session.
    let (media_tx, media_rx) = mpsc::channel(8);
    let (unused_tx, _) = mpsc::channel(1);
    let bot = w
        .join(req("bot", unused_tx, Some(media_tx)), now)
        .expect("join")
        .pid;
    let (events_tx, events_rx) = mpsc::channel(64);
    let client = w
        .join(req("client", events_tx, None), now)
        .expect("join")
        .pid;
    w.housekeeping(now);
    assert!(w.parts.contains_key(&bot) && w.parts.contains_key(&client));
    // The in-process participant goes away without a Leave (say its control queue was full).
    drop(media_rx);
    w.housekeeping(now);
    assert!(!w.parts.contains_key(&bot), "in-process participant stayed");
    assert!(w.parts.contains_key(&client));
    // So does the client's session.
    drop(events_rx);
    w.housekeeping(now);
    assert!(!w.parts.contains_key(&client), "client stayed");
}

#[tokio::test]
async fn a_client_whose_signal_queue_overflows_is_told_why_and_removed() {
    let mut w = worker().await;
    let now = w.wake();
    let (events_tx, mut events) = mpsc::channel(16);
    let slow = w.join(req("slow", events_tx, None), now).expect("join").pid;
    let (other_tx, _other_rx) = mpsc::channel(512);
    let other = w.join(req("other", other_tx, None), now).expect("join").pid;
    // What the session has not read yet: the join's own messages, then updates until the reserve.
    for _ in 0..40 {
        w.broadcast_participant(other);
    }
    assert!(
        w.parts.contains_key(&slow),
        "removed in the middle of a wake-up"
    );
    w.disconnect_overflowed(now);
    assert!(
        !w.parts.contains_key(&slow),
        "overflowing participant stayed"
    );
    assert!(w.parts.contains_key(&other));
    // Its session reads the queue: updates, then the LeaveRequest and the close, then the end.
    let mut got = Vec::new();
    while let Some(out) = events.recv().await {
        got.push(out);
    }
    assert_eq!(got.len(), 16, "the queue was used to its capacity");
    let n = got.len();
    match &got[n - 2] {
        Out::Signal(m) => match m.as_ref() {
            Resp::Leave(l) => {
                assert_eq!(l.reason, proto::DisconnectReason::SignalClose as i32);
                assert_eq!(l.action, proto::leave_request::Action::Disconnect as i32);
            }
            other => panic!("expected a LeaveRequest, got {other:?}"),
        },
        other => panic!("expected a LeaveRequest, got {other:?}"),
    }
    assert!(matches!(got[n - 1], Out::Close(_)), "{:?}", got[n - 1]);
    assert!(got[..n - 2]
        .iter()
        .all(|o| matches!(o, Out::Signal(m) if matches!(m.as_ref(), Resp::Update(_)))));
}

/// An in-process subscriber that stopped reading: its channel fills with media, but the track
/// events it needs (here: the track ended) are never lost — delivered from a reserve media cannot
/// take, or, if even that is gone, the participant is removed and its channel ends.
#[tokio::test]
async fn an_in_process_subscriber_never_silently_misses_a_track_event() {
    let mut w = worker().await;
    let now = w.wake();
    let (media_tx, _pub_media) = mpsc::channel(8);
    let (unused_tx, _) = mpsc::channel(1);
    let mut publisher = req("voice", unused_tx.clone(), Some(media_tx));
    publisher.auto_subscribe = false;
    let publisher = w.join(publisher, now).expect("join").pid;
    let (sub_tx, mut sub_rx) = mpsc::channel(64);
    let subscriber = w
        .join(req("rec", unused_tx, Some(sub_tx)), now)
        .expect("join")
        .pid;
    let track = w
        .local_publish(
            publisher,
            LocalTrackReq {
                name: "voice".into(),
                source: proto::TrackSource::Microphone,
            },
            now,
        )
        .expect("publish");
    // The subscriber does not read: far more packets than its channel holds.
    for i in 0..200u16 {
        let rtp = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                payload_type: 111,
                sequence_number: i,
                timestamp: 960 * u32::from(i),
                ..Default::default()
            },
            payload: bytes::Bytes::from_static(&[0xFC, 1, 2, 3]),
        };
        let pkt = LocalPacket {
            pid: publisher,
            track_sid: track.clone(),
            rtp,
        };
        w.on_local_rtp(pkt, now);
    }
    // The track ends (its publisher leaves).
    w.remove_participant(publisher, now);
    w.disconnect_overflowed(now);
    let mut events = Vec::new();
    while let Ok(m) = sub_rx.try_recv() {
        if !matches!(m, LocalMedia::Rtp(_)) {
            events.push(m);
        }
    }
    let removed = events
        .iter()
        .any(|m| matches!(m, LocalMedia::TrackRemoved { track_sid } if *track_sid == track));
    let ended = !w.parts.contains_key(&subscriber) && sub_rx.recv().await.is_none();
    assert!(
        removed || ended,
        "the subscriber missed the end of the track and is still in the room: {events:?}"
    );
}

/// Agents are LiveKit's dependent participants: they do not count toward the room's limit, keep a
/// room open while they wait for its first member, and do not keep it open once its members left.
#[tokio::test]
async fn agents_do_not_fill_a_room_nor_keep_it_open_after_its_members() {
    let mut w = worker().await;
    let now = w.wake();
    let agent_req = |id: &str| {
        let (tx, rx) = mpsc::channel(64);
        let mut r = req(id, tx, None);
        r.kind = proto::participant_info::Kind::Agent;
        r.open_as = Some(RoomSpec {
            sid: "RM_r".into(),
            max_participants: 1,
            departure_timeout_secs: 1,
            metadata: String::new(),
        });
        (r, rx)
    };
    let (r, _a_rx) = agent_req("agent-1");
    w.join(r, now).expect("agent opens the room");
    assert!(
        w.rooms["r"].empty_since.is_none(),
        "an agent waiting for its first member keeps the room open"
    );
    let (tx, _m_rx) = mpsc::channel(64);
    let member = w.join(req("alice", tx, None), now).expect("member").pid;
    let (tx, _full_rx) = mpsc::channel(64);
    assert!(matches!(
        w.join(req("bob", tx, None), now),
        Err(JoinError::RoomFull)
    ));
    let (r, _b_rx) = agent_req("agent-2");
    w.join(r, now)
        .expect("a second agent is not refused by the limit");
    w.remove_participant(member, now);
    assert!(
        w.rooms["r"].empty_since.is_some(),
        "agents alone keep a room open after its member left"
    );
    w.housekeeping(now + Duration::from_secs(2));
    assert!(
        !w.rooms.contains_key("r"),
        "room not closed after its departure timeout"
    );
}

/// Deadlines come from the timer heap: the earliest live one, stale entries (a dropped connection,
/// a moved deadline) skipped; a due connection is run and rescheduled with what `rtc` asks next.
#[tokio::test]
async fn timers_come_from_the_heap() {
    let mut w = worker().await;
    let now = w.wake();
    let a = w.new_pc(1, Role::Subscriber, now).expect("pc a");
    let b = w.new_pc(2, Role::Subscriber, now).expect("pc b");
    assert_eq!(w.earliest(), None, "nothing scheduled yet");
    // As `update_timeout` does when `rtc` moves a deadline.
    let schedule = |w: &mut Worker, id: PcId, t: Instant| {
        w.pcs.get_mut(&id).expect("pc").next_timeout = Some(t);
        w.timers.push(std::cmp::Reverse((t, id)));
    };
    let ms = Duration::from_millis;
    schedule(&mut w, a, now + ms(10));
    schedule(&mut w, b, now + ms(20));
    assert_eq!(w.earliest(), Some(now + ms(10)));
    // a's deadline moves later: its first entry is stale.
    schedule(&mut w, a, now + ms(30));
    assert_eq!(w.earliest(), Some(now + ms(20)));
    assert_eq!(w.timers.len(), 2, "the stale entry was dropped on the way");
    // Due at 25 ms: only b runs, and gets whatever `rtc` schedules next.
    w.on_timers(now + ms(25));
    let b_next = w.pcs[&b].next_timeout;
    assert_eq!(
        b_next,
        rtc::sansio::Protocol::poll_timeout(&mut w.pcs.get_mut(&b).expect("b").rtc)
    );
    assert_eq!(w.pcs[&a].next_timeout, Some(now + ms(30)), "a untouched");
    assert_eq!(
        w.earliest(),
        b_next.map_or(Some(now + ms(30)), |t| Some(t.min(now + ms(30))))
    );
    // A dropped connection's entry is stale too.
    w.drop_pc(a);
    assert_eq!(w.earliest(), b_next);
}
