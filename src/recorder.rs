//! The recorder: a hidden in-process participant of a call's room that writes the room's audio as
//! WebM/Opus — one mixed file (what users download) and one file per published audio track (for
//! transcription), plus a JSON manifest naming whose track each file is.
//!
//! Each recording runs on its own thread (Opus decode/encode and file writes never run on the async
//! runtime). Every 20 ms it takes one frame from each track's jitter buffer (packets are inserted
//! with the time the media worker read them), conceals losses with FEC/PLC, mixes, encodes and
//! appends: the mixed file advances one frame per tick whoever speaks, so its duration is wall time.
//! Files are written Cluster by Cluster (at most 1 s each) and flushed, so a crash leaves a playable
//! prefix that `parlor_media::repair` finalizes.
//!
//! [`Recorders`] is built from [`RecorderDeps`] (store, webhooks, the SFU and its workers, the
//! recordings directory, the clock): no server state, so it can be constructed on its own in a test.

use crate::sfu::local::{LocalOptions, LocalParticipant};
use crate::sfu::worker::WorkerHandle;
use crate::sfu::worker::{JoinError, LocalMedia};
use crate::sfu::SfuHandle;
use crate::store::Store;
use crate::webhooks::Webhooks;
use parlor_media::{
    Application, EncoderConfig, InputId, JitterBuffer, JitterConfig, Mixer, OpusDecoder,
    OpusEncoder, WebmConfig, WebmWriter, FRAME_SAMPLES, MAX_PACKET_BYTES,
};
use parlor_signaling::protocol::proto;
use serde::Serialize;
use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Per-participant tracks one recording follows at most (more are ignored and logged).
const MAX_TRACKS: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error("the call is already being recorded")]
    AlreadyRecording,
    #[error("joining the room: {0}")]
    Join(#[from] JoinError),
    #[error("media: {0}")]
    Media(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The call is not `active` (ringing: nobody has joined yet; completed/missed: it has ended).
    #[error("the call is not active ({0})")]
    CallNotActive(String),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// What a finished recording produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Mixed file, relative to the recordings directory.
    pub file: String,
    pub size_bytes: i64,
    /// Frames in the mixed file × 20 ms.
    pub duration_ms: i64,
    pub tracks: usize,
    pub error: Option<String>,
}

#[derive(Serialize)]
struct ManifestTrack {
    file: String,
    track_sid: String,
    identity: String,
    /// Offset of the file's first frame from the start of the mixed file.
    offset_ms: u64,
    duration_ms: u64,
}

/// What the recorder needs from the rest of the server (the composition root builds it).
#[derive(Clone)]
pub struct RecorderDeps {
    /// Recording rows.
    pub store: Store,
    /// `recording.completed` / `recording.failed` events.
    pub webhooks: Webhooks,
    /// The SFU and its media workers, which the recorder joins as a hidden participant.
    pub sfu: SfuHandle,
    pub workers: Arc<Vec<WorkerHandle>>,
    /// `room.max_rooms`: the recorder's join may open a room (placement limit).
    pub max_rooms: usize,
    /// Where recording files are written (`<data_dir>/recordings`).
    pub dir: PathBuf,
    pub clock: crate::clock::SharedClock,
    /// Multi-node mode: this node's name, stored with each recording (its files are on this node's
    /// disk); '' in single-node mode.
    pub node: String,
}

/// Running recordings by call id.
#[derive(Clone)]
pub struct Recorders {
    inner: Arc<Mutex<HashMap<String, Running>>>,
    deps: Arc<RecorderDeps>,
}

struct Running {
    recording_id: String,
    stop: CancellationToken,
    /// Becomes Some when the thread has finalized the files.
    outcome: watch::Receiver<Option<Outcome>>,
}

impl Recorders {
    pub fn new(deps: RecorderDeps) -> Self {
        Recorders {
            inner: Arc::default(),
            deps: Arc::new(deps),
        }
    }

    /// The recordings directory.
    pub fn dir(&self) -> &Path {
        &self.deps.dir
    }

    /// Start recording `call` for `started_by`: checks the call is live and not already recorded,
    /// stores the row, joins the recorder. Returns (recording id, start time in unix ms). Used by
    /// the REST API and by calls created with `"record": true`.
    pub async fn start_for_call(
        &self,
        call: &crate::store::CallRecord,
        started_by: &str,
    ) -> Result<(String, i64), RecorderError> {
        // Only a call someone has joined (media flowing: `active`) is recorded. The recorder is a
        // hidden participant and never counts for the call's lifecycle, so it must not be what
        // opens the room.
        if call.status != "active" {
            return Err(RecorderError::CallNotActive(call.status.clone()));
        }
        let store = &self.deps.store;
        if self.is_recording(&call.id) || store.active_recording_for_call(&call.id).await?.is_some()
        {
            return Err(RecorderError::AlreadyRecording);
        }
        let now = self.deps.clock.unix_ms();
        let id = crate::ids::new_id(&format!("rec_{}_", now / 1000));
        let rec = crate::store::RecordingRecord {
            id: id.clone(),
            call_id: call.id.clone(),
            conversation_id: call.conversation_id.clone(),
            call_type: call.call_type.clone(),
            started_by: started_by.to_string(),
            started_at: now,
            ended_at: None,
            duration_ms: None,
            status: "recording".into(),
            file_path: Some(format!("{id}.webm")),
            size_bytes: None,
            node: self.deps.node.clone(),
        };
        store.insert_recording(&rec).await?;
        if let Err(e) = self.start(&call.id, &id).await {
            let _ = store.finish_recording(&id, "failed", 0, None, None).await;
            return Err(e);
        }
        Ok((id, now))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_recording(&self, call_id: &str) -> bool {
        self.lock().contains_key(call_id)
    }

    /// The id of the recording running for the call, if any.
    pub fn recording_id(&self, call_id: &str) -> Option<String> {
        self.lock().get(call_id).map(|r| r.recording_id.clone())
    }

    /// Start recording room `room` (a call id) as `recording_id` (its row already stored), writing
    /// into the recordings directory. Returns once the recorder has joined the room. Whatever ends
    /// the recording (a stop, the room closing, shutdown), its row gets the outcome.
    pub async fn start(&self, room: &str, recording_id: &str) -> Result<(), RecorderError> {
        let stop = CancellationToken::new();
        let (outcome_tx, outcome) = watch::channel(None);
        {
            let mut m = self.lock();
            if m.contains_key(room) {
                return Err(RecorderError::AlreadyRecording);
            }
            m.insert(
                room.to_string(),
                Running {
                    recording_id: recording_id.to_string(),
                    stop: stop.clone(),
                    outcome: outcome.clone(),
                },
            );
        }
        if let Err(e) = self.spawn(room, recording_id, stop, outcome_tx).await {
            self.lock().remove(room);
            return Err(e);
        }
        // Store the outcome, then forget the recording (a stop racing the end still finds it and
        // waits for the same outcome).
        let (store, hooks, rid, room, recorders) = (
            self.deps.store.clone(),
            self.deps.webhooks.clone(),
            recording_id.to_string(),
            room.to_string(),
            self.clone(),
        );
        tokio::spawn(async move {
            if let Some(o) = wait_outcome(outcome).await {
                store_outcome(&store, &hooks, &rid, &o).await;
            }
            let mut m = recorders.lock();
            if m.get(&room).is_some_and(|r| r.recording_id == rid) {
                m.remove(&room);
            }
        });
        Ok(())
    }

    async fn spawn(
        &self,
        room: &str,
        recording_id: &str,
        stop: CancellationToken,
        outcome: watch::Sender<Option<Outcome>>,
    ) -> Result<(), RecorderError> {
        // Creating the files is blocking I/O: not on the async runtime.
        let (d, rid) = (self.deps.dir.clone(), recording_id.to_string());
        let pipeline = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&d)?;
            Pipeline::new(&d, &rid)
        })
        .await
        .map_err(|e| RecorderError::Media(format!("file setup task: {e}")))??;
        let participant = LocalParticipant::join(
            &self.deps.sfu,
            &self.deps.workers,
            self.deps.max_rooms,
            LocalOptions {
                room: room.to_string(),
                identity: format!("recorder-{recording_id}"),
                name: "Recorder".into(),
                kind: proto::participant_info::Kind::Egress,
                subscribe: true,
                publish: false,
                publish_data: false,
                hidden: true,
            },
        )
        .await?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        let (rid, room_name) = (recording_id.to_string(), room.to_string());
        std::thread::Builder::new()
            .name("parlor-recorder".into())
            .spawn(move || {
                let o = runtime.block_on(run(participant, pipeline, stop));
                info!(recording = %rid, room = %room_name, duration_ms = o.duration_ms,
                      tracks = o.tracks, error = o.error.as_deref(), "recording finished");
                let _ = outcome.send(Some(o));
            })?;
        Ok(())
    }

    /// Stop every running recording (server shutdown) and wait for their files; (id, outcome) each.
    /// The caller stores each outcome ([`store_outcome`]).
    pub async fn stop_all(&self) -> Vec<(String, Outcome)> {
        let rooms: Vec<String> = self.lock().keys().cloned().collect();
        let mut out = Vec::new();
        for room in rooms {
            if let Some(r) = self.stop(&room).await {
                out.push(r);
            }
        }
        out
    }

    /// Stop the call's recording and wait until its files are final. None if none was running.
    pub async fn stop(&self, room: &str) -> Option<(String, Outcome)> {
        let (id, stop, outcome) = {
            let m = self.lock();
            let r = m.get(room)?;
            (r.recording_id.clone(), r.stop.clone(), r.outcome.clone())
        };
        stop.cancel();
        Some((id, wait_outcome(outcome).await?))
    }
}

/// The recording's outcome once its thread has finished (None if the thread died without one).
async fn wait_outcome(mut rx: watch::Receiver<Option<Outcome>>) -> Option<Outcome> {
    rx.wait_for(Option::is_some).await.ok()?.clone()
}

struct Track {
    identity: String,
    track_sid: Arc<str>,
    jitter: JitterBuffer,
    decoder: OpusDecoder,
    input: InputId,
    encoder: OpusEncoder,
    writer: Option<WebmWriter<BufWriter<File>>>,
    file: String,
    /// Mixed-file frame index when this track's file got its first frame.
    first_frame: Option<u64>,
    frames: u64,
}

struct Pipeline {
    dir: PathBuf,
    id: String,
    mixer: Mixer,
    mix_encoder: OpusEncoder,
    mix: WebmWriter<BufWriter<File>>,
    frames: u64,
    tracks: Vec<Track>,
    finished: Vec<ManifestTrack>,
    pcm: Vec<i16>,
    mix_pcm: Vec<i16>,
    packet: Vec<u8>,
    next_track_file: usize,
}

fn webm_cfg(pre_skip: u16) -> WebmConfig {
    WebmConfig {
        channels: 1,
        pre_skip,
        input_sample_rate: 48_000,
        cluster_ms: 1000,
    }
}

fn media_err(e: impl std::fmt::Display) -> RecorderError {
    RecorderError::Media(e.to_string())
}

impl Pipeline {
    fn new(dir: &Path, id: &str) -> Result<Pipeline, RecorderError> {
        let mix_encoder = OpusEncoder::new(EncoderConfig {
            bitrate: 48_000,
            application: Application::Audio,
            fec: false,
            expected_loss_percent: 0,
            ..EncoderConfig::default()
        })
        .map_err(media_err)?;
        let file = File::create(dir.join(format!("{id}.webm")))?;
        let mix = WebmWriter::new(BufWriter::new(file), webm_cfg(mix_encoder.pre_skip()))
            .map_err(media_err)?;
        Ok(Pipeline {
            dir: dir.to_path_buf(),
            id: id.to_string(),
            mixer: Mixer::new(1).map_err(media_err)?,
            mix_encoder,
            mix,
            frames: 0,
            tracks: Vec::new(),
            finished: Vec::new(),
            pcm: vec![0; FRAME_SAMPLES],
            mix_pcm: vec![0; FRAME_SAMPLES],
            packet: vec![0; MAX_PACKET_BYTES],
            next_track_file: 1,
        })
    }

    fn add_track(&mut self, track_sid: Arc<str>, identity: String) -> Result<(), RecorderError> {
        if self.tracks.len() >= MAX_TRACKS || self.tracks.iter().any(|t| t.track_sid == track_sid) {
            warn!(recording = %self.id, track = %track_sid, "track not recorded");
            return Ok(());
        }
        let encoder = OpusEncoder::new(EncoderConfig {
            bitrate: 32_000,
            application: Application::Voip,
            fec: false,
            expected_loss_percent: 0,
            ..EncoderConfig::default()
        })
        .map_err(media_err)?;
        let file = format!("{}.p{}.webm", self.id, self.next_track_file);
        self.next_track_file += 1;
        let writer = WebmWriter::new(
            BufWriter::new(File::create(self.dir.join(&file))?),
            webm_cfg(encoder.pre_skip()),
        )
        .map_err(media_err)?;
        self.tracks.push(Track {
            identity,
            track_sid,
            jitter: JitterBuffer::new(JitterConfig::default()),
            decoder: OpusDecoder::new(1).map_err(media_err)?,
            input: self.mixer.add_input(),
            encoder,
            writer: Some(writer),
            file,
            first_frame: None,
            frames: 0,
        });
        Ok(())
    }

    fn remove_track(&mut self, track_sid: &str) {
        if let Some(i) = self.tracks.iter().position(|t| &*t.track_sid == track_sid) {
            let t = self.tracks.swap_remove(i);
            let _ = self.mixer.remove_input(t.input);
            self.close_track(t);
        }
    }

    fn close_track(&mut self, mut t: Track) {
        if let Some(w) = t.writer.take() {
            if let Err(e) = w.finalize() {
                warn!(recording = %self.id, file = %t.file, error = %e, "finalizing track file");
            }
        }
        self.finished.push(ManifestTrack {
            file: t.file,
            track_sid: t.track_sid.to_string(),
            identity: t.identity,
            offset_ms: t.first_frame.unwrap_or(self.frames) * 20,
            duration_ms: t.frames * 20,
        });
    }

    /// One 20 ms frame: every playing track's next frame into its file and the mix, then the mix.
    fn tick(&mut self, now: Instant) -> Result<(), RecorderError> {
        for t in &mut self.tracks {
            let Some(frame) = t.jitter.pop(now) else {
                continue;
            };
            t.decoder
                .decode_frame(&frame, &mut self.pcm)
                .map_err(media_err)?;
            self.mixer.push(t.input, &self.pcm).map_err(media_err)?;
            let n = t
                .encoder
                .encode(&self.pcm, &mut self.packet)
                .map_err(media_err)?;
            if let Some(w) = &mut t.writer {
                w.write_packet(t.frames * FRAME_SAMPLES as u64, &self.packet[..n])
                    .map_err(media_err)?;
            }
            t.first_frame.get_or_insert(self.frames);
            t.frames += 1;
        }
        self.mixer.mix(&mut self.mix_pcm).map_err(media_err)?;
        let n = self
            .mix_encoder
            .encode(&self.mix_pcm, &mut self.packet)
            .map_err(media_err)?;
        self.mix
            .write_packet(self.frames * FRAME_SAMPLES as u64, &self.packet[..n])
            .map_err(media_err)?;
        self.frames += 1;
        Ok(())
    }

    fn finish(mut self, error: Option<String>) -> Outcome {
        let tracks: Vec<Track> = std::mem::take(&mut self.tracks);
        for t in tracks {
            self.close_track(t);
        }
        let file = format!("{}.webm", self.id);
        let mut error = error;
        if let Err(e) = self.mix.finalize() {
            error.get_or_insert(format!("finalizing the mixed file: {e}"));
        }
        let manifest = serde_json::json!({
            "recording_id": self.id,
            "mixed": file,
            "duration_ms": self.frames * 20,
            "tracks": self.finished,
        });
        if let Err(e) = std::fs::write(
            self.dir.join(format!("{}.json", self.id)),
            serde_json::to_vec_pretty(&manifest).unwrap_or_default(),
        ) {
            warn!(recording = %self.id, error = %e, "writing the manifest");
        }
        let size_bytes = std::fs::metadata(self.dir.join(&file))
            .map(|m| m.len() as i64)
            .unwrap_or(0);
        Outcome {
            file,
            size_bytes,
            duration_ms: self.frames as i64 * 20,
            tracks: self.finished.len(),
            error,
        }
    }
}

async fn run(
    mut participant: LocalParticipant,
    mut p: Pipeline,
    stop: CancellationToken,
) -> Outcome {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    // A late tick is caught up (Burst): the mixed file keeps wall-clock time.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut error = None;
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            m = participant.recv() => match m {
                Some(LocalMedia::TrackAdded { track_sid, publisher, mime_type, .. }) => {
                    if !mime_type.eq_ignore_ascii_case("audio/opus") {
                        continue;
                    }
                    if let Err(e) = p.add_track(track_sid, publisher) {
                        error = Some(e.to_string());
                        break;
                    }
                }
                Some(LocalMedia::TrackRemoved { track_sid }) => p.remove_track(&track_sid),
                Some(LocalMedia::Rtp(pkt)) => {
                    if let Some(t) = p.tracks.iter_mut().find(|t| t.track_sid == pkt.track_sid) {
                        t.jitter.insert(pkt.arrival, pkt.seq, pkt.timestamp, &pkt.payload);
                    }
                }
                // Removed from the room (it closed, or the server is stopping).
                None => break,
            },
            // `t` is the tick's scheduled time (the frame's place on the recording's timeline), not
            // when we got to it.
            t = tick.tick() => {
                if let Err(e) = p.tick(t.into_std()) {
                    error = Some(e.to_string());
                    break;
                }
            }
        }
    }
    participant.leave().await;
    p.finish(error)
}

/// Record a finished recording in the store (from the stop request, the room closing, or shutdown).
pub async fn store_outcome(
    store: &crate::store::Store,
    hooks: &crate::webhooks::Webhooks,
    id: &str,
    o: &Outcome,
) {
    let status = if o.error.is_some() {
        "failed"
    } else {
        "completed"
    };
    match store
        .finish_recording(id, status, o.duration_ms, Some(&o.file), Some(o.size_bytes))
        .await
    {
        Ok(true) => {}
        // Already finished by the other path (stop vs. the recorder's own end): one event only.
        Ok(false) => return,
        Err(e) => {
            warn!(recording = %id, error = %e, "cannot store the finished recording");
            return;
        }
    }
    if let Ok(r) = store.get_recording(id).await {
        let event = if o.error.is_some() {
            "recording.failed"
        } else {
            "recording.completed"
        };
        hooks
            .emit(
                event,
                serde_json::json!({
                    "recording_id": r.id,
                    "call_id": r.call_id,
                    "conversation_id": r.conversation_id,
                    "started_by": r.started_by,
                    "started_at": crate::timefmt::rfc3339_ms(r.started_at),
                    "duration_ms": r.duration_ms,
                    "size_bytes": r.size_bytes,
                    "tracks": o.tracks,
                    "error": o.error,
                }),
            )
            .await;
    }
}

/// Finalize recordings a crash left unfinished: each file cut mid-Cluster is repaired
/// (`parlor_media::repair`: every complete block kept, Duration and Cues written) and the row is
/// marked `completed` with the duration actually on disk; a missing or unreadable file marks it
/// `failed`. Per-participant files of the recording are repaired too. Run at start-up, before
/// anything records.
pub async fn recover_unfinished(store: &crate::store::Store, dir: &Path, node: &str) -> usize {
    let recs = match store.unfinished_recordings(node).await {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "listing unfinished recordings");
            return 0;
        }
    };
    let mut n = 0;
    for r in recs {
        let (dir2, id) = (dir.to_path_buf(), r.id.clone());
        let repaired = tokio::task::spawn_blocking(move || repair_recording_files(&dir2, &id))
            .await
            .unwrap_or_else(|e| Err(format!("repair task: {e}")));
        let res = match &repaired {
            Ok((duration_ms, size)) => {
                info!(recording = %r.id, duration_ms, "unfinished recording repaired");
                store
                    .finish_recording(
                        &r.id,
                        "completed",
                        *duration_ms as i64,
                        Some(&format!("{}.webm", r.id)),
                        Some(*size as i64),
                    )
                    .await
            }
            Err(e) => {
                warn!(recording = %r.id, error = %e, "unfinished recording lost");
                store.finish_recording(&r.id, "failed", 0, None, None).await
            }
        };
        if let Err(e) = res {
            warn!(recording = %r.id, error = %e, "cannot update the recovered recording");
        } else {
            n += 1;
        }
    }
    n
}

/// Repair `<id>.webm` and its `<id>.p<N>.webm` files in place (write a new file, then rename over
/// the old one). Returns the mixed file's (duration ms, size).
fn repair_recording_files(dir: &Path, id: &str) -> Result<(u64, u64), String> {
    let repair_one = |path: &Path| -> Result<(u64, u64), String> {
        let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let (fixed, report) =
            parlor_media::repair(&data).map_err(|e| format!("{}: {e}", path.display()))?;
        let tmp = path.with_extension("webm.repairing");
        std::fs::write(&tmp, &fixed).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok((report.duration_ms, fixed.len() as u64))
    };
    let mixed = repair_one(&dir.join(format!("{id}.webm")))?;
    if let Ok(entries) = std::fs::read_dir(dir) {
        let prefix = format!("{id}.p");
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with(&prefix) && name.ends_with(".webm") {
                if let Err(err) = repair_one(&e.path()) {
                    warn!(recording = %id, file = %name, error = %err, "track file not repaired");
                }
            }
        }
    }
    Ok(mixed)
}

#[cfg(test)]
mod tests {
    //! The recorder built from its narrow dependencies alone: a real SQLite store, real media
    //! workers on 127.0.0.1, webhooks off — no HTTP server, no server state.
    use super::*;
    use crate::store::CallRecord;

    async fn recorders(dir: &Path, shutdown: &CancellationToken) -> Recorders {
        let url = format!("sqlite://{}?mode=rwc", dir.join("t.db").display());
        let store = Store::connect(&url, 2).await.expect("store");
        let clock = crate::clock::system();
        let sfu = SfuHandle::new();
        let workers = crate::sfu::worker::spawn_workers(
            "127.0.0.1:0".parse().expect("addr"),
            crate::sfu::worker::WorkerConfig {
                workers: 1,
                realtime_priority: 0,
                candidate_ip: [127, 0, 0, 1].into(),
                tcp_bind: None,
                tcp_limits: crate::sfu::tcp::TcpLimits {
                    max_connections: 4,
                    max_connections_per_ip: 4,
                    handshake_timeout: Duration::from_secs(1),
                },
                max_participants: 8,
                max_rooms: 4,
                // Hidden participants do not keep a room open: long enough for the test.
                empty_timeout: Duration::from_secs(60),
                remote_unmute: false,
            },
            sfu.clone(),
            Arc::new(crate::metrics::Metrics::default()),
            clock.clone(),
            shutdown.clone(),
        )
        .await
        .expect("media workers");
        let webhooks = Webhooks::new(
            store.clone(),
            clock.clone(),
            &crate::config::WebhooksConfig::default(),
            String::new(),
            None,
        );
        assert!(!webhooks.enabled());
        Recorders::new(RecorderDeps {
            store,
            webhooks,
            sfu,
            workers: Arc::new(workers),
            max_rooms: 4,
            dir: dir.join("recordings"),
            clock,
            node: String::new(),
        })
    }

    fn call(id: &str, now: i64) -> CallRecord {
        CallRecord {
            id: id.into(),
            call_type: "audio".into(),
            conversation_id: None,
            created_by: "alice".into(),
            status: "ringing".into(),
            created_at: now,
            started_at: None,
            ended_at: None,
            duration_ms: None,
            auto_record: false,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_a_call_from_narrow_dependencies() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let shutdown = CancellationToken::new();
        let rec = recorders(tmp.path(), &shutdown).await;
        let store = rec.deps.store.clone();
        let now = rec.deps.clock.unix_ms();
        store
            .insert_call(&call("call_r1", now))
            .await
            .expect("call");

        // A ringing call is refused and leaves no row.
        let ringing = store.get_call("call_r1").await.expect("get");
        assert!(matches!(
            rec.start_for_call(&ringing, "alice").await,
            Err(RecorderError::CallNotActive(s)) if s == "ringing"
        ));
        assert!(store
            .active_recording_for_call("call_r1")
            .await
            .expect("query")
            .is_none());

        // An active call is recorded: the recorder joins its room (hidden, invisible to the
        // participants list), a second start is refused, a stop finalizes a playable file.
        assert!(store.activate_call("call_r1", now).await.expect("activate"));
        let active = store.get_call("call_r1").await.expect("get");
        let (id, _) = rec.start_for_call(&active, "alice").await.expect("start");
        assert!(rec.is_recording("call_r1"));
        assert_eq!(rec.recording_id("call_r1").as_deref(), Some(id.as_str()));
        assert_eq!(rec.deps.sfu.rooms(), vec!["call_r1".to_string()]);
        assert!(rec.deps.sfu.participants("call_r1").is_empty());
        assert!(matches!(
            rec.start_for_call(&active, "bob").await,
            Err(RecorderError::AlreadyRecording)
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (stopped, outcome) = rec.stop("call_r1").await.expect("running");
        assert_eq!(stopped, id);
        assert_eq!(outcome.error, None);
        assert_eq!(outcome.file, format!("{id}.webm"));
        assert!(outcome.duration_ms > 0, "{outcome:?}");
        let file = rec.dir().join(&outcome.file);
        let bytes = std::fs::metadata(&file).expect("mixed file").len();
        assert_eq!(bytes as i64, outcome.size_bytes);
        store_outcome(&store, &rec.deps.webhooks, &id, &outcome).await;
        let row = store.get_recording(&id).await.expect("row");
        assert_eq!(row.status, "completed");
        assert_eq!(row.duration_ms, Some(outcome.duration_ms));
        assert_eq!(row.size_bytes, Some(outcome.size_bytes));
        assert!(rec.dir().join(format!("{id}.json")).exists());
        shutdown.cancel();
    }
}
