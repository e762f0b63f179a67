//! The speech workers of the `local` provider: long-lived Python processes (the program in
//! `speech_worker.py`, embedded here) that hold whisper tiny.en (speech-to-text) and a Piper voice
//! (text-to-speech), driven over their stdin/stdout with the framed protocol that file documents.
//!
//! A [`SpeechPool`] runs `[realtime.local] workers` processes, shared by every local conversation.
//! Requests queue on one channel; each worker task takes the next one when idle, so a slow request
//! never blocks an async task (all process I/O is tokio's). A worker that crashes, answers garbage
//! or exceeds a timeout is killed (`kill_on_drop`) and started again for the next request; the
//! request in flight gets a [`SpeechError`]. Synthesis streams one PCM chunk per sentence, and
//! dropping the receiver cancels the rest. Also here: [`StreamResampler`], which turns arbitrary
//! chunks into 20 ms frames for `parlor-media`'s resampler (24 kHz ↔ 16 kHz, 22.05 kHz → 24 kHz).

use crate::home::VoiceModels;
use parlor_media::Resampler;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot, Mutex};

/// The worker program (`python -u -c SCRIPT serve …`).
pub const WORKER_SCRIPT: &str = include_str!("speech_worker.py");

/// Loading both models (measured: 0.5–1.5 s; generous for a loaded machine).
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// One request, or the gap between two chunks of one synthesis.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Wait before starting a worker again after it failed to start.
const RESTART_BACKOFF: Duration = Duration::from_secs(1);
/// Largest frame the worker may send (a sentence of 22.05 kHz PCM is ~100 KB per 2 s).
const MAX_FRAME: usize = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpeechError {
    #[error("speech worker did not start: {0}")]
    Start(String),
    #[error("speech worker timed out after {0} s (it was restarted)")]
    Timeout(u64),
    #[error("speech worker exited unexpectedly (it will be restarted)")]
    Exited,
    #[error("speech worker failed: {0}")]
    Worker(String),
    #[error("speech worker protocol error: {0}")]
    Protocol(String),
    #[error("speech workers are shut down")]
    Closed,
}

enum Job {
    Stt {
        pcm: Vec<i16>,
        reply: oneshot::Sender<Result<String, SpeechError>>,
    },
    Tts {
        text: String,
        chunks: mpsc::Sender<Result<Vec<i16>, SpeechError>>,
    },
    Ping {
        reply: oneshot::Sender<Result<(), SpeechError>>,
    },
}

/// The speech workers shared by all local conversations. Dropping the pool stops them.
pub struct SpeechPool {
    jobs: mpsc::Sender<Job>,
    models: VoiceModels,
    /// Process id of each worker's current process (0: none running).
    pids: Arc<Vec<AtomicU32>>,
}

impl SpeechPool {
    /// Start `workers` (at least one) worker processes, each loading the models now. Must run
    /// inside a tokio runtime.
    pub fn new(models: VoiceModels, workers: usize, stt_threads: usize) -> SpeechPool {
        let (jobs, rx) = mpsc::channel(64);
        let rx = Arc::new(Mutex::new(rx));
        let pids: Arc<Vec<AtomicU32>> =
            Arc::new((0..workers.max(1)).map(|_| AtomicU32::new(0)).collect());
        for n in 0..workers.max(1) {
            tokio::spawn(worker_loop(
                n,
                models.clone(),
                stt_threads.max(1),
                rx.clone(),
                pids.clone(),
            ));
        }
        SpeechPool { jobs, models, pids }
    }

    /// Process ids of the running worker processes (for metrics, and tests that kill one).
    pub fn worker_pids(&self) -> Vec<u32> {
        self.pids
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .filter(|p| *p != 0)
            .collect()
    }

    pub fn models(&self) -> &VoiceModels {
        &self.models
    }

    /// Transcribe PCM16 mono at [`VoiceModels::stt_rate`] (16 kHz).
    pub async fn transcribe(&self, pcm: Vec<i16>) -> Result<String, SpeechError> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job::Stt { pcm, reply })
            .await
            .map_err(|_| SpeechError::Closed)?;
        rx.await.map_err(|_| SpeechError::Closed)?
    }

    /// Speak `text`: PCM16 mono chunks at [`VoiceModels::tts_rate`] (22.05 kHz), one per sentence;
    /// the channel closes after the last one (or after an error). Drop the receiver to cancel.
    pub fn synthesize(&self, text: String) -> mpsc::Receiver<Result<Vec<i16>, SpeechError>> {
        let (chunks, rx) = mpsc::channel(16);
        let jobs = self.jobs.clone();
        tokio::spawn(async move {
            if let Err(mpsc::error::SendError(Job::Tts { chunks, .. })) =
                jobs.send(Job::Tts { text, chunks }).await
            {
                let _ = chunks.send(Err(SpeechError::Closed)).await;
            }
        });
        rx
    }

    /// Round trip to a worker (waits for it to have loaded the models).
    pub async fn ping(&self) -> Result<(), SpeechError> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job::Ping { reply })
            .await
            .map_err(|_| SpeechError::Closed)?;
        rx.await.map_err(|_| SpeechError::Closed)?
    }
}

/// One frame of the worker protocol.
struct Frame {
    header: serde_json::Value,
    payload: Vec<u8>,
}

/// A running worker process.
struct Process {
    child: Child,
    stdin: ChildStdin,
    frames: mpsc::Receiver<Result<Frame, SpeechError>>,
    next_id: u64,
}

async fn worker_loop(
    n: usize,
    models: VoiceModels,
    stt_threads: usize,
    jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
    pids: Arc<Vec<AtomicU32>>,
) {
    let mut process: Option<Process> = None;
    loop {
        if process.is_none() {
            pids[n].store(0, Ordering::Relaxed);
            match spawn(n, &models, stt_threads).await {
                Ok(p) => {
                    pids[n].store(p.child.id().unwrap_or(0), Ordering::Relaxed);
                    process = Some(p);
                }
                Err(e) => {
                    tracing::warn!(worker = n, error = %e, "speech worker did not start");
                    // Fail the next request rather than leaving it waiting, then retry.
                    let job = jobs.lock().await.recv().await;
                    match job {
                        Some(job) => fail(job, e).await,
                        None => return,
                    }
                    tokio::time::sleep(RESTART_BACKOFF).await;
                    continue;
                }
            }
        }
        let job = jobs.lock().await.recv().await;
        let Some(job) = job else { return };
        let Some(p) = process.as_mut() else { continue };
        if let Err(e) = run_job(p, job).await {
            tracing::warn!(worker = n, error = %e, "speech worker restarted");
            process = None; // kill_on_drop
        }
    }
}

async fn fail(job: Job, e: SpeechError) {
    match job {
        Job::Stt { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Job::Ping { reply } => {
            let _ = reply.send(Err(e));
        }
        Job::Tts { chunks, .. } => {
            let _ = chunks.send(Err(e)).await;
        }
    }
}

async fn spawn(n: usize, m: &VoiceModels, stt_threads: usize) -> Result<Process, SpeechError> {
    let start = |e: std::io::Error| SpeechError::Start(format!("{}: {e}", m.python.display()));
    let mut cmd = Command::new(&m.python);
    cmd.arg("-u")
        .arg("-c")
        .arg(WORKER_SCRIPT)
        .arg("serve")
        .arg("--stt-model")
        .arg(&m.stt_model)
        .arg("--tts-model")
        .arg(&m.tts_model)
        .arg("--tts-config")
        .arg(&m.tts_config)
        .arg("--stt-threads")
        .arg(stt_threads.to_string())
        .env("HF_HUB_OFFLINE", "1")
        .env("OMP_NUM_THREADS", stt_threads.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = m.tts_model.parent() {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().map_err(start)?;
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(SpeechError::Start("no pipes".into()));
    };
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(worker = n, "{line}");
        }
    });
    let (tx, frames) = mpsc::channel(16);
    tokio::spawn(read_frames(stdout, tx));
    let mut p = Process {
        child,
        stdin,
        frames,
        next_id: 1,
    };
    let ready = match tokio::time::timeout(LOAD_TIMEOUT, p.frames.recv()).await {
        Err(_) => return Err(SpeechError::Start("models took over 60 s to load".into())),
        Ok(None) => return Err(SpeechError::Start("exited while loading the models".into())),
        Ok(Some(r)) => r?,
    };
    if ready.header["op"] != "ready" {
        return Err(SpeechError::Protocol(format!(
            "expected ready, got {}",
            ready.header
        )));
    }
    tracing::info!(worker = n, stt = %m.stt_name, tts = %m.tts_name,
        load_ms = ready.header["load_ms"].as_u64().unwrap_or(0), "speech worker ready");
    Ok(p)
}

async fn read_frames(mut out: ChildStdout, tx: mpsc::Sender<Result<Frame, SpeechError>>) {
    loop {
        let frame = read_frame(&mut out).await;
        let end = !matches!(frame, Ok(Some(_)));
        let item = match frame {
            Ok(Some(f)) => Ok(f),
            Ok(None) => Err(SpeechError::Exited),
            Err(e) => Err(e),
        };
        if tx.send(item).await.is_err() || end {
            return;
        }
    }
}

async fn read_frame(out: &mut ChildStdout) -> Result<Option<Frame>, SpeechError> {
    let mut head = [0u8; 8];
    match out.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(_) => return Err(SpeechError::Exited),
    }
    let hlen = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let plen = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
    if hlen > 1 << 20 || plen > MAX_FRAME {
        return Err(SpeechError::Protocol(format!(
            "frame too large ({hlen} + {plen} bytes)"
        )));
    }
    let mut h = vec![0u8; hlen];
    let mut payload = vec![0u8; plen];
    out.read_exact(&mut h)
        .await
        .map_err(|_| SpeechError::Exited)?;
    out.read_exact(&mut payload)
        .await
        .map_err(|_| SpeechError::Exited)?;
    let header = serde_json::from_slice(&h)
        .map_err(|e| SpeechError::Protocol(format!("bad header: {e}")))?;
    Ok(Some(Frame { header, payload }))
}

impl Process {
    async fn send(&mut self, header: serde_json::Value, payload: &[u8]) -> Result<(), SpeechError> {
        let h = header.to_string();
        let mut buf = Vec::with_capacity(8 + h.len() + payload.len());
        buf.extend_from_slice(&(h.len() as u32).to_le_bytes());
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(h.as_bytes());
        buf.extend_from_slice(payload);
        self.stdin
            .write_all(&buf)
            .await
            .map_err(|_| SpeechError::Exited)?;
        self.stdin.flush().await.map_err(|_| SpeechError::Exited)
    }

    /// The next frame answering request `id` (frames for other ids are stale: skipped).
    async fn recv(&mut self, id: u64) -> Result<Frame, SpeechError> {
        loop {
            let f = match tokio::time::timeout(REQUEST_TIMEOUT, self.frames.recv()).await {
                Err(_) => return Err(SpeechError::Timeout(REQUEST_TIMEOUT.as_secs())),
                Ok(None) => return Err(SpeechError::Exited),
                Ok(Some(f)) => f?,
            };
            if f.header["id"].as_u64() == Some(id) {
                return Ok(f);
            }
        }
    }
}

fn worker_error(f: &Frame) -> Option<SpeechError> {
    (f.header["op"] == "error")
        .then(|| SpeechError::Worker(f.header["message"].as_str().unwrap_or("error").to_string()))
}

fn unexpected(f: &Frame) -> SpeechError {
    SpeechError::Protocol(format!("unexpected {}", f.header))
}

/// Run one job on `p`. `Err` means the process is no longer trustworthy (restart it); the job's
/// requester has been told.
async fn run_job(p: &mut Process, job: Job) -> Result<(), SpeechError> {
    let id = p.next_id;
    p.next_id += 1;
    match job {
        Job::Ping { reply } => {
            let r = ping(p, id).await;
            let _ = reply.send(r.clone());
            r
        }
        Job::Stt { pcm, reply } => {
            let r = stt(p, id, &pcm).await;
            match r {
                Ok(text) => {
                    let _ = reply.send(Ok(text));
                    Ok(())
                }
                Err(SpeechError::Worker(e)) => {
                    let _ = reply.send(Err(SpeechError::Worker(e)));
                    Ok(())
                }
                Err(e) => {
                    let _ = reply.send(Err(e.clone()));
                    Err(e)
                }
            }
        }
        Job::Tts { text, chunks } => tts(p, id, text, chunks).await,
    }
}

async fn ping(p: &mut Process, id: u64) -> Result<(), SpeechError> {
    p.send(serde_json::json!({"op": "ping", "id": id}), &[])
        .await?;
    let f = p.recv(id).await?;
    if f.header["op"] == "pong" {
        Ok(())
    } else {
        Err(unexpected(&f))
    }
}

async fn stt(p: &mut Process, id: u64, pcm: &[i16]) -> Result<String, SpeechError> {
    let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    p.send(serde_json::json!({"op": "stt", "id": id}), &bytes)
        .await?;
    let f = p.recv(id).await?;
    if let Some(e) = worker_error(&f) {
        return Err(e);
    }
    match (f.header["op"].as_str(), f.header["text"].as_str()) {
        (Some("text"), Some(t)) => Ok(t.to_string()),
        _ => Err(unexpected(&f)),
    }
}

async fn tts(
    p: &mut Process,
    id: u64,
    text: String,
    chunks: mpsc::Sender<Result<Vec<i16>, SpeechError>>,
) -> Result<(), SpeechError> {
    let sent = p
        .send(
            serde_json::json!({"op": "tts", "id": id, "text": text}),
            &[],
        )
        .await;
    if let Err(e) = sent {
        let _ = chunks.send(Err(e.clone())).await;
        return Err(e);
    }
    let mut cancelled = false;
    loop {
        let f = if cancelled {
            p.recv(id).await
        } else {
            tokio::select! {
                f = p.recv(id) => f,
                _ = chunks.closed() => {
                    cancelled = true;
                    p.send(serde_json::json!({"op": "cancel", "id": 0, "target": id}), &[]).await?;
                    continue;
                }
            }
        };
        let f = match f {
            Ok(f) => f,
            Err(e) => {
                let _ = chunks.send(Err(e.clone())).await;
                return Err(e);
            }
        };
        match f.header["op"].as_str() {
            Some("audio") => {
                if cancelled {
                    continue;
                }
                let pcm: Vec<i16> = f
                    .payload
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
                if chunks.send(Ok(pcm)).await.is_err() {
                    cancelled = true;
                    p.send(
                        serde_json::json!({"op": "cancel", "id": 0, "target": id}),
                        &[],
                    )
                    .await?;
                }
            }
            Some("done") => return Ok(()),
            Some("error") => {
                let e = worker_error(&f).unwrap_or(SpeechError::Exited);
                let _ = chunks.send(Err(e)).await;
                return Ok(());
            }
            _ => {
                let e = unexpected(&f);
                let _ = chunks.send(Err(e.clone())).await;
                return Err(e);
            }
        }
    }
}

/// A streaming sample-rate converter over `parlor-media`'s 20 ms [`Resampler`]: takes chunks of
/// any length, returns what is ready; [`StreamResampler::flush`] pads the last partial frame
/// (and one more, to drain the filter's delay).
pub struct StreamResampler {
    inner: Option<Resampler>,
    pending: Vec<i16>,
    frame: Vec<i16>,
    in_len: usize,
}

impl StreamResampler {
    pub fn new(from: u32, to: u32) -> Result<StreamResampler, parlor_media::ResampleError> {
        let inner = if from == to {
            None
        } else {
            Some(Resampler::new(from, to, 1, 1)?)
        };
        let (in_len, out_len) = inner
            .as_ref()
            .map_or((0, 0), |r| (r.input_len(), r.output_len()));
        Ok(StreamResampler {
            inner,
            pending: Vec::with_capacity(in_len),
            frame: vec![0; out_len],
            in_len,
        })
    }

    /// Convert `input`; appends the output that is complete to `out`.
    pub fn push(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let Some(r) = self.inner.as_mut() else {
            out.extend_from_slice(input);
            return;
        };
        let mut rest = input;
        while !rest.is_empty() {
            let take = (self.in_len - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == self.in_len {
                // Lengths are right by construction; a failure would only drop one frame.
                if r.process(&self.pending, &mut self.frame).is_ok() {
                    out.extend_from_slice(&self.frame);
                }
                self.pending.clear();
            }
        }
    }

    /// Emit what is buffered (zero-padded) and the filter's delayed tail.
    pub fn flush(&mut self, out: &mut Vec<i16>) {
        if self.inner.is_none() {
            return;
        }
        let pad = (self.in_len - self.pending.len()) % self.in_len.max(1);
        let zeros = vec![0i16; pad + self.in_len];
        self.push(&zeros, out);
    }

    /// Drop buffered input (a new stream follows).
    pub fn reset(&mut self) {
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_resampler_keeps_the_duration() {
        let mut r = StreamResampler::new(22_050, 24_000).unwrap();
        let tone: Vec<i16> = (0..22_050)
            .map(|i| ((i as f32 * 0.05).sin() * 8000.0) as i16)
            .collect();
        let mut out = Vec::new();
        for chunk in tone.chunks(1000) {
            r.push(chunk, &mut out);
        }
        assert!(out.len() <= 24_000 && out.len() > 23_000, "{}", out.len());
        r.flush(&mut out);
        assert!(
            out.len() >= 24_000 && out.len() <= 24_000 + 2 * 480,
            "{}",
            out.len()
        );
        let same = {
            let mut r = StreamResampler::new(16_000, 16_000).unwrap();
            let mut o = Vec::new();
            r.push(&[1, 2, 3], &mut o);
            o
        };
        assert_eq!(same, vec![1, 2, 3]);
    }
}
