//! In-process room participants: the recorder and the voice assistant join a room without a peer
//! connection. They subscribe to tracks (each RTP packet arrives with the time the worker read it)
//! and publish Opus tracks by handing RTP packets to the room's media worker, which forwards them
//! to WebRTC subscribers exactly like a browser's packets (SRTP, NACK, reports per leg).
//!
//! Control (publish, leave) and media travel on separate queues to the worker: RTP is `try_send` on
//! the worker's lossy media queue, control is sent on its control queue, so a full media queue never
//! loses a leave. A participant dropped without a delivered leave is still removed: the worker sees
//! its media channel closed.

use super::worker::{
    route_join, Cmd, JoinError, JoinReq, LocalMedia, LocalPacket, LocalTrackReq, Out, Perms, Pid,
    WorkerHandle,
};
use super::SfuHandle;
use parlor_signaling::protocol::proto;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Packets (and track events) buffered for an in-process subscriber before the worker drops them.
/// 1024 is ~20 s of one audio track or ~2 s of ten: room for a slow consumer's hiccup, bounded.
const MEDIA_QUEUE: usize = 1024;

/// How an in-process participant joins.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub room: String,
    pub identity: String,
    pub name: String,
    /// AGENT for an assistant, EGRESS for a recorder.
    pub kind: proto::participant_info::Kind,
    /// Subscribe to every track published in the room (now and later).
    pub subscribe: bool,
    pub publish: bool,
    /// May send data packets to the room (transcriptions).
    pub publish_data: bool,
    /// Invisible to clients and the participants API, does not keep the room open, cannot publish
    /// (a recorder). When the room closes the participant is removed: `recv` returns None.
    pub hidden: bool,
}

/// A joined in-process participant. Dropping it leaves the room.
pub struct LocalParticipant {
    pid: Pid,
    /// The worker's control queue (publish, leave).
    worker: mpsc::Sender<Cmd>,
    /// The worker's media queue (this participant's RTP; lossy).
    rtp: mpsc::Sender<LocalPacket>,
    media: mpsc::Receiver<LocalMedia>,
    left: bool,
}

/// A track published by an in-process participant.
#[derive(Debug, Clone)]
pub struct LocalTrack {
    pub sid: Arc<str>,
    /// The SSRC this track's packets carry into the worker (the worker rewrites it per subscriber).
    pub ssrc: u32,
}

/// The media worker's queue is full: the packet was not sent (the caller may count it as lost).
#[derive(Debug, thiserror::Error)]
#[error("media worker queue full or closed")]
pub struct SendError;

impl LocalParticipant {
    /// Join `opts.room` on the worker that owns it (opening the room if needed).
    pub async fn join(
        sfu: &SfuHandle,
        workers: &[WorkerHandle],
        max_rooms: usize,
        opts: LocalOptions,
    ) -> Result<LocalParticipant, JoinError> {
        let (media_tx, media) = mpsc::channel(MEDIA_QUEUE);
        // Signal messages are for WebRTC clients: the worker sends none to in-process participants.
        let (events_tx, _) = mpsc::channel::<Out>(1);
        let make_req = || JoinReq {
            room: opts.room.clone(),
            identity: opts.identity.clone(),
            name: opts.name.clone(),
            metadata: String::new(),
            attributes: Default::default(),
            perms: Perms {
                can_publish: opts.publish,
                can_subscribe: opts.subscribe,
                can_publish_data: opts.publish_data && !opts.hidden,
                can_update_metadata: false,
            },
            auto_subscribe: opts.subscribe,
            events: events_tx.clone(),
            kind: opts.kind,
            single_pc: false,
            local: Some(media_tx.clone()),
            hidden: opts.hidden,
            open_as: None,
        };
        let (joined, worker) = route_join(sfu, workers, max_rooms, &opts.room, make_req).await?;
        Ok(LocalParticipant {
            pid: joined.pid,
            worker: worker.tx,
            rtp: worker.media,
            media,
            left: false,
        })
    }

    /// Publish an Opus audio track (48 kHz, RFC 7587 payload).
    pub async fn publish_audio(&self, name: &str) -> Result<LocalTrack, JoinError> {
        let (tx, rx) = oneshot::channel();
        let req = LocalTrackReq {
            name: name.to_string(),
            source: proto::TrackSource::Microphone,
        };
        self.worker
            .send(Cmd::LocalPublish(self.pid, req, tx))
            .await
            .map_err(|_| JoinError::ShuttingDown)?;
        let sid = rx.await.map_err(|_| JoinError::ShuttingDown)??;
        Ok(LocalTrack {
            sid,
            ssrc: rand::random(),
        })
    }

    /// Send one RTP packet of `track` (never waits: a full media queue refuses it).
    pub fn send_rtp(
        &self,
        track: &LocalTrack,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: bytes::Bytes,
    ) -> Result<(), SendError> {
        let pkt = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                marker,
                payload_type: 111,
                sequence_number: seq,
                timestamp,
                ssrc: track.ssrc,
                ..Default::default()
            },
            payload,
        };
        self.rtp
            .try_send(LocalPacket {
                pid: self.pid,
                track_sid: track.sid.clone(),
                rtp: pkt,
            })
            .map_err(|_| SendError)
    }

    /// Send a data packet to the room's other participants over their reliable data channels
    /// (waits for room in the worker's control queue: a few packets per turn, never media).
    pub async fn send_data(&self, packet: proto::DataPacket) -> Result<(), SendError> {
        self.worker
            .send(Cmd::LocalData(self.pid, Box::new(packet)))
            .await
            .map_err(|_| SendError)
    }

    /// The next subscription event or packet; None once the participant was removed (room closed,
    /// server shutting down, or replaced by a join with the same identity).
    pub async fn recv(&mut self) -> Option<LocalMedia> {
        self.media.recv().await
    }

    /// Leave the room now.
    pub async fn leave(mut self) {
        self.left = true;
        let _ = self.worker.send(Cmd::Leave(self.pid)).await;
    }
}

impl Drop for LocalParticipant {
    fn drop(&mut self) {
        if !self.left {
            // Not the media queue: a full one cannot lose this. Should the control queue itself be
            // full, the worker still removes the participant once it sees `media` closed (below).
            let _ = self.worker.try_send(Cmd::Leave(self.pid));
        }
        // Dropping `media` (with the rest of `self`) closes the worker's channel to this participant.
    }
}
