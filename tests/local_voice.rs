//! The `local` provider by real speech: espeak-ng speaks a question into a WAV, it is resampled
//! to the interface's 24 kHz and fed to a local conversation as 20 ms `Input::Audio` frames
//! (followed by silence so turn detection ends the turn), and the conversation must transcribe the
//! question, answer it, and speak an answer that whisper (the speech worker's STT) hears back.
//! Also barge-in (speech during a long reply cancels it), commit without turn detection, and the
//! latency benchmark (`--ignored`, prints figures; see docs/VOICE.md).
//!
//! The models are found as the server finds them: in the Parlor home (`$PARLOR_HOME`, else the
//! XDG data dir). Without them (or without espeak-ng) the tests fail under `CI` and skip loudly
//! otherwise; `scripts/setup` installs the models.

mod common;

use parlor::home::{default_home, VoiceModels};
use parlor::realtime::config::LocalConfig;
use parlor::realtime::local::speech::{SpeechPool, StreamResampler};
use parlor::realtime::local::LocalProvider;
use parlor::realtime::provider::{
    Conversation, Input, Output, Provider, ResponseStatus, SessionSettings, TurnDetection,
    SAMPLE_RATE,
};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// 20 ms at 24 kHz.
const FRAME: usize = 480;

/// The home and its models, or `None` after a loud skip (a panic under `CI`).
fn models() -> Option<PathBuf> {
    let home = default_home(|k| std::env::var(k).ok());
    let problem = match VoiceModels::load(&home) {
        Err(why) => format!("voice models: {why} (run scripts/setup)"),
        Ok(_) if which("espeak-ng").is_none() => {
            "espeak-ng not installed (apt-get install espeak-ng)".to_string()
        }
        Ok(_) => return Some(home),
    };
    if std::env::var_os("CI").is_some() {
        panic!("{problem}");
    }
    // Straight to stderr: the harness captures eprintln! of passing tests.
    let _ = writeln!(std::io::stderr(), "SKIP local_voice: {problem}");
    None
}

fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(cmd))
            .find(|p| p.is_file())
    })
}

/// espeak-ng speaks `text`: PCM16 mono at 24 kHz.
fn speak(text: &str) -> Vec<i16> {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("q.wav");
    let st = std::process::Command::new("espeak-ng")
        .arg("-w")
        .arg(&wav)
        .arg(text)
        .status()
        .expect("espeak-ng runs");
    assert!(st.success(), "espeak-ng failed");
    let (rate, pcm) = read_wav(&std::fs::read(&wav).unwrap());
    resample(&pcm, rate, SAMPLE_RATE)
}

/// A mono PCM16 WAV file: (rate, samples).
fn read_wav(b: &[u8]) -> (u32, Vec<i16>) {
    assert!(
        b.len() > 12 && &b[0..4] == b"RIFF" && &b[8..12] == b"WAVE",
        "not a WAV"
    );
    let (mut rate, mut i) = (0u32, 12usize);
    while i + 8 <= b.len() {
        let id = &b[i..i + 4];
        let len = u32::from_le_bytes([b[i + 4], b[i + 5], b[i + 6], b[i + 7]]) as usize;
        let body = &b[i + 8..(i + 8).saturating_add(len).min(b.len())];
        if id == b"fmt " {
            assert_eq!(u16::from_le_bytes([body[2], body[3]]), 1, "mono");
            assert_eq!(u16::from_le_bytes([body[14], body[15]]), 16, "16-bit");
            rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
        } else if id == b"data" {
            let pcm = body
                .chunks_exact(2)
                .map(|s| i16::from_le_bytes([s[0], s[1]]))
                .collect();
            return (rate, pcm);
        }
        i += 8 + len + (len & 1);
    }
    panic!("WAV without data");
}

fn resample(pcm: &[i16], from: u32, to: u32) -> Vec<i16> {
    let mut r = StreamResampler::new(from, to).unwrap();
    let mut out = Vec::new();
    r.push(pcm, &mut out);
    r.flush(&mut out);
    out
}

/// Lower-case words, digits spelled out ("2 + 2" → "two plus two"), punctuation dropped.
fn normalize(text: &str) -> String {
    let spaced = text
        .to_lowercase()
        .replace('+', " plus ")
        .replace(['×', '*'], " times ")
        .replace('-', " ");
    let words: Vec<String> = spaced
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| match w.parse::<u32>() {
            Ok(n) => parlor::realtime::responder::number_words(f64::from(n)).replace('-', " "),
            Err(_) => w.to_string(),
        })
        .collect();
    words.join(" ")
}

fn voice_settings() -> SessionSettings {
    SessionSettings {
        model: "parlor-local".into(),
        audio_output: true,
        turn_detection: Some(TurnDetection::default()),
        ..SessionSettings::default()
    }
}

async fn start(p: &LocalProvider) -> Conversation {
    let mut conv = p.start(voice_settings(), Vec::new()).await.unwrap();
    assert_eq!(conv.output.recv().await, Some(Output::Ready));
    conv
}

fn provider(home: &std::path::Path) -> LocalProvider {
    LocalProvider::new(&LocalConfig::default(), home, parlor::clock::system())
}

fn frames(pcm: &[i16]) -> Vec<Vec<i16>> {
    pcm.chunks(FRAME).map(|c| c.to_vec()).collect()
}

fn silence(ms: usize) -> Vec<i16> {
    vec![0; SAMPLE_RATE as usize * ms / 1000]
}

/// Feed `audio` as 20 ms frames, as fast as the conversation takes them.
fn feed(input: tokio::sync::mpsc::Sender<Input>, audio: Vec<i16>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for f in frames(&audio) {
            if input.send(Input::Audio(f)).await.is_err() {
                return;
            }
        }
    })
}

/// What one spoken turn produced.
#[derive(Default, Debug)]
struct Turn {
    started_ms: Option<u32>,
    stopped_ms: Option<u32>,
    transcript: String,
    reply: String,
    streamed: String,
    audio: Vec<i16>,
    status: Option<ResponseStatus>,
}

/// Read outputs until the turn's response is done.
async fn collect_turn(conv: &mut Conversation) -> Turn {
    let mut t = Turn::default();
    loop {
        let out = tokio::time::timeout(Duration::from_secs(60), conv.output.recv())
            .await
            .expect("the turn finishes within 60 s")
            .expect("conversation open");
        match out {
            Output::SpeechStarted { audio_start_ms, .. } => t.started_ms = Some(audio_start_ms),
            Output::SpeechStopped { audio_end_ms, .. } => t.stopped_ms = Some(audio_end_ms),
            Output::InputTranscript { text, .. } => t.transcript = text,
            Output::ResponseStarted { .. } => {}
            Output::TextDelta { text, .. } => t.streamed.push_str(&text),
            Output::AudioDelta { pcm, .. } => {
                assert!(!pcm.is_empty() && pcm.len() <= 2400, "deltas of 20–100 ms");
                t.audio.extend_from_slice(&pcm);
            }
            Output::ResponseDone {
                status,
                text,
                usage,
                ..
            } => {
                assert!(usage.input_audio_tokens > 0 && usage.output_audio_tokens > 0);
                t.status = Some(status);
                t.reply = text;
                return t;
            }
            Output::Ready => {}
            Output::Error { code, message, .. } => panic!("error {code}: {message}"),
        }
    }
}

/// Whisper's transcript of 24 kHz reply audio.
async fn hear(pool: &SpeechPool, audio: &[i16]) -> String {
    pool.transcribe(resample(audio, SAMPLE_RATE, 16_000))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoken_questions_are_understood_and_answered_aloud() {
    let Some(home) = models() else { return };
    let p = provider(&home);
    let pool = p.speech().unwrap();
    let cases = [
        ("what is two plus two", "two plus two", "four"),
        (
            "what is the capital of France",
            "capital of france",
            "paris",
        ),
        ("what is ten times three", "ten times three", "thirty"),
        ("how many days are in a week", "days are in a week", "seven"),
        ("what is the capital of Japan", "capital of japan", "tokyo"),
    ];
    for (question, heard, answer) in cases {
        let mut conv = start(&p).await;
        let speech = speak(question);
        let lead = silence(400);
        let audio = [lead.clone(), speech.clone(), silence(1500)].concat();
        let feeder = feed(conv.input.clone(), audio);
        let t = collect_turn(&mut conv).await;
        feeder.await.unwrap();
        eprintln!(
            "{question:?}: heard {:?}, replied {:?}, {} ms of reply audio",
            t.transcript,
            t.reply,
            t.audio.len() * 1000 / SAMPLE_RATE as usize
        );
        // Speech starts near the end of the lead-in silence and ends before the trailing one.
        let (start, stop) = (t.started_ms.unwrap(), t.stopped_ms.unwrap());
        let speech_ms = (speech.len() * 1000 / SAMPLE_RATE as usize) as u32;
        assert!((300..=700).contains(&start), "speech started at {start} ms");
        assert!(
            stop > start && stop <= 400 + speech_ms + 100,
            "stopped at {stop} ms"
        );
        assert!(
            normalize(&t.transcript).contains(heard),
            "transcript {:?} lacks {heard:?}",
            t.transcript
        );
        assert_eq!(t.status, Some(ResponseStatus::Completed));
        assert_eq!(t.streamed, t.reply, "text deltas add up to the reply");
        assert!(
            normalize(&t.reply).contains(answer),
            "reply {:?} lacks {answer:?}",
            t.reply
        );
        let back = hear(&pool, &t.audio).await;
        assert!(
            normalize(&back).contains(answer),
            "reply audio heard as {back:?}, lacks {answer:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_during_a_long_reply_cancels_it() {
    let Some(home) = models() else { return };
    let p = provider(&home);
    let mut conv = start(&p).await;
    // The fallback echoes what it heard: a long passage makes a long reply of several sentences,
    // synthesized one after the other, so the reply is still running when the caller talks.
    let long = speak(
        "Please remember this. The dog runs home. The cat sleeps all day. The sun is warm. \
         The sky is blue. The house is old. The tree is tall. The road is long. The car is red. \
         The door is open. The bird can sing. The fish can swim. The boat is slow.",
    );
    let barge_in = [speak("what is two plus two"), silence(1500)].concat();
    let first_feeder = feed(
        conv.input.clone(),
        [silence(300), long, silence(800)].concat(),
    );
    let mut first_response = None;
    let mut audio_before_cancel = 0usize;
    let mut turns = 0;
    // Wait for the reply to start speaking.
    while first_response.is_none() {
        match conv.output.recv().await.unwrap() {
            Output::AudioDelta {
                response_id, pcm, ..
            } => {
                audio_before_cancel += pcm.len();
                first_response = Some(response_id);
            }
            Output::SpeechStopped { .. } => turns += 1,
            Output::Error { code, message, .. } => panic!("{code}: {message}"),
            _ => {}
        }
    }
    assert_eq!(turns, 1, "the passage is one turn");
    let first_response = first_response.unwrap();
    // The caller talks over it.
    let barge = Instant::now();
    let feeder = feed(conv.input.clone(), barge_in);
    let mut cancelled_at = None;
    let mut answered = None;
    while answered.is_none() {
        let out = tokio::time::timeout(Duration::from_secs(60), conv.output.recv())
            .await
            .unwrap()
            .unwrap();
        match out {
            Output::AudioDelta {
                response_id, pcm, ..
            } if response_id == first_response => {
                assert!(cancelled_at.is_none(), "audio after the cancel");
                audio_before_cancel += pcm.len();
            }
            Output::SpeechStarted { .. } => {
                assert!(cancelled_at.is_none());
            }
            Output::ResponseDone {
                response_id,
                status,
                text,
                ..
            } if response_id == first_response => {
                assert_eq!(status, ResponseStatus::Cancelled);
                assert!(text.starts_with("You said"), "{text}");
                cancelled_at = Some(barge.elapsed());
            }
            Output::ResponseDone { status, text, .. } => {
                assert_eq!(status, ResponseStatus::Completed);
                answered = Some(text);
            }
            Output::Error { code, message, .. } => panic!("{code}: {message}"),
            _ => {}
        }
    }
    feeder.await.unwrap();
    first_feeder.await.unwrap();
    let cancelled_at = cancelled_at.expect("the long reply was cancelled");
    eprintln!(
        "barge-in: cancelled {} ms (wall) after the barge-in audio began to be fed (faster than real time), after {} ms of reply audio",
        cancelled_at.as_millis(),
        audio_before_cancel * 1000 / SAMPLE_RATE as usize
    );
    assert!(normalize(answered.as_deref().unwrap()).contains("four"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_ends_a_turn_without_turn_detection() {
    let Some(home) = models() else { return };
    let p = provider(&home);
    let settings = SessionSettings {
        turn_detection: None,
        audio_output: false,
        ..voice_settings()
    };
    let mut conv = p.start(settings, Vec::new()).await.unwrap();
    assert_eq!(conv.output.recv().await, Some(Output::Ready));
    for f in frames(&speak("what is two plus two")) {
        conv.input.send(Input::Audio(f)).await.unwrap();
    }
    conv.input.send(Input::CommitAudio).await.unwrap();
    let (mut transcript, mut reply) = (None, None);
    while reply.is_none() {
        match conv.output.recv().await.unwrap() {
            Output::InputTranscript { text, .. } => transcript = Some(text),
            Output::ResponseDone { text, status, .. } => {
                assert_eq!(status, ResponseStatus::Completed);
                reply = Some(text);
            }
            Output::AudioDelta { .. } => panic!("text-only conversation got audio"),
            Output::SpeechStarted { .. } => panic!("no turn detection configured"),
            Output::Error { code, message, .. } => panic!("{code}: {message}"),
            _ => {}
        }
    }
    assert!(normalize(&transcript.unwrap()).contains("two plus two"));
    assert_eq!(reply.unwrap(), "Two plus two is four.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_speech_worker_is_restarted() {
    let Some(home) = models() else { return };
    let p = provider(&home);
    let pool = p.speech().unwrap();
    pool.ping().await.unwrap();
    let pids = pool.worker_pids();
    assert_eq!(pids.len(), 1);
    // SAFETY: signals our own child process.
    assert_eq!(unsafe { libc::kill(pids[0] as i32, libc::SIGKILL) }, 0);
    // The request that meets the dead process fails; the worker is started again for the next.
    let mut answered = None;
    for _ in 0..3 {
        match tokio::time::timeout(
            Duration::from_secs(60),
            pool.transcribe(resample(
                &speak("what is two plus two"),
                SAMPLE_RATE,
                16_000,
            )),
        )
        .await
        {
            Ok(Ok(text)) => {
                answered = Some(text);
                break;
            }
            Ok(Err(e)) => eprintln!("after the kill: {e}"),
            Err(_) => panic!("no answer within 60 s after the kill"),
        }
    }
    let text = answered.expect("the restarted worker answers");
    assert!(normalize(&text).contains("two plus two"), "{text}");
    let new = pool.worker_pids();
    assert_eq!(new.len(), 1);
    assert_ne!(new[0], pids[0], "a new process");
}

#[tokio::test]
async fn audio_sessions_need_the_models_and_name_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let p = provider(dir.path());
    let err = p.start(voice_settings(), Vec::new()).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("voice models") && msg.contains("scripts/setup"),
        "{msg}"
    );
    // Text still works without them.
    let mut conv = p
        .start(SessionSettings::default(), Vec::new())
        .await
        .unwrap();
    assert_eq!(conv.output.recv().await, Some(Output::Ready));
    conv.input.send(Input::Text("hello".into())).await.unwrap();
    assert!(matches!(
        conv.output.recv().await,
        Some(Output::ResponseStarted { .. })
    ));
}

/// CPU seconds (user + system) of this process and of its live child processes (the speech
/// workers: `getrusage` counts children only once reaped, so live ones are read from /proc).
fn cpu_seconds() -> (f64, f64) {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let own = tv(ru.ru_utime) + tv(ru.ru_stime);
    let mut children = 0.0;
    // SAFETY: plain libc calls without pointers.
    let (me, tick) = unsafe { (libc::getpid(), libc::sysconf(libc::_SC_CLK_TCK) as f64) };
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // Fields after the ")" of the command name: state ppid … utime(12th) stime(13th).
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() > 12 && f[1].parse::<i32>().ok() == Some(me) {
            let ticks = f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0);
            children += ticks / tick;
        }
    }
    (own, children)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The benchmark (not a timed test): 20 spoken questions fed in real time (20 ms frames, paced);
/// end of speech (the frame holding the last voiced sample fed) → first reply audio delta, p50
/// and p95, and CPU seconds per second of speech. Run:
/// `cargo test --test local_voice -- --ignored --nocapture benchmark`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn benchmark_end_of_speech_to_first_reply_audio() {
    let Some(home) = models() else { return };
    let p = Arc::new(provider(&home));
    p.speech().unwrap().ping().await.unwrap(); // models loaded before timing
    let questions = [
        "what is two plus two",
        "what is the capital of France",
        "what is ten times three",
        "how many days are in a week",
        "what time is it",
    ];
    let spoken: Vec<Vec<i16>> = questions.iter().map(|q| speak(q)).collect();
    let mut latencies = Vec::new();
    let mut speech_secs = 0.0;
    let cpu0 = cpu_seconds();
    for n in 0..20 {
        let speech = &spoken[n % spoken.len()];
        // The last voiced sample: espeak pads its WAV with a little silence.
        let last_voiced = speech
            .iter()
            .rposition(|s| s.unsigned_abs() > 300)
            .unwrap_or(0);
        speech_secs += (last_voiced + 1) as f64 / f64::from(SAMPLE_RATE);
        let audio = [silence(300), speech.clone(), silence(2000)].concat();
        let end_frame = (SAMPLE_RATE as usize * 300 / 1000 + last_voiced) / FRAME;
        let mut conv = start(&p).await;
        let input = conv.input.clone();
        let (tx, mut end_rx) = tokio::sync::oneshot::channel();
        let feeder = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut tx = Some(tx);
            for (i, f) in frames(&audio).into_iter().enumerate() {
                tick.tick().await;
                if input.send(Input::Audio(f)).await.is_err() {
                    return;
                }
                if i == end_frame {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(Instant::now());
                    }
                }
            }
        });
        let (mut stopped, mut transcribed, mut first_audio) = (None, None, None);
        while first_audio.is_none() {
            let out = tokio::time::timeout(Duration::from_secs(30), conv.output.recv())
                .await
                .expect("reply within 30 s")
                .unwrap();
            match out {
                Output::SpeechStopped { .. } => stopped = Some(Instant::now()),
                Output::InputTranscript { .. } => transcribed = Some(Instant::now()),
                Output::AudioDelta { .. } => first_audio = Some(Instant::now()),
                Output::Error { code, message, .. } => panic!("{code}: {message}"),
                _ => {}
            }
        }
        let end = end_rx.try_recv().expect("end of speech was fed");
        let ms = |t: Option<Instant>| t.map_or(-1.0, |t| t.duration_since(end).as_secs_f64() * 1e3);
        let total = ms(first_audio);
        eprintln!(
            "utterance {n:2} {:32} speech_stopped +{:4.0} ms, transcript +{:4.0} ms, first audio +{:4.0} ms",
            format!("{:?}", questions[n % questions.len()]),
            ms(stopped),
            ms(transcribed),
            total
        );
        latencies.push(total);
        drop(conv);
        feeder.abort();
    }
    let cpu1 = cpu_seconds();
    let (own, workers) = (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1);
    let cpu = own + workers;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {} cores, load average (1/5/15 min) {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    latencies.sort_by(f64::total_cmp);
    println!(
        "local voice benchmark: end of speech -> first reply audio over {} utterances: p50 {:.0} ms, \
         p95 {:.0} ms (min {:.0}, max {:.0}); silence_duration_ms {}; CPU {:.2} s for {:.1} s of speech \
         = {:.2} CPU-s per s of speech (this process {:.2} s, speech worker {:.2} s)",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.95),
        latencies[0],
        latencies[latencies.len() - 1],
        TurnDetection::default().silence_duration_ms,
        cpu,
        speech_secs,
        cpu / speech_secs,
        own,
        workers
    );
}

/// The acceptance flow through a model session: spoken questions sent as `{"type":"audio"}`
/// messages over the session WebSocket of a real server; the stored user transcript holds the
/// question, the stored reply the answer, and the reply audio the socket streamed back is heard
/// by whisper with the answer in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoken_questions_over_the_session_socket_land_in_the_history() {
    use base64::Engine;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let Some(home) = models() else { return };
    let pool = provider(&home).speech().unwrap();
    let db = common::TestDb::sqlite();
    let s = common::TestServer::start_with(&db, |c| {
        c.server.home = home.display().to_string();
    })
    .await;
    let b64 = base64::engine::general_purpose::STANDARD;
    let cases = [
        ("what is two plus two", "two plus two", "four"),
        (
            "what is the capital of France",
            "capital of france",
            "paris",
        ),
        ("what is ten times three", "ten times three", "thirty"),
        ("how many days are in a week", "days are in a week", "seven"),
    ];
    for (question, heard, answer) in cases {
        let (st, created) = common::api_call(
            &s.http,
            reqwest::Method::POST,
            "/api/realtime/sessions",
            "alice",
            Some(serde_json::json!({ "model": "parlor-local" })),
        )
        .await;
        assert_eq!(st, 201, "{created}");
        let d = &created["data"];
        let id = d["id"].as_str().unwrap().to_string();
        let url = d["connectionInfo"]["websocketUrl"].as_str().unwrap();
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let auth = serde_json::json!({ "type": "auth", "token": d["connectionInfo"]["authToken"] });
        ws.send(Message::text(auth.to_string())).await.unwrap();
        // The question in 100 ms messages (PCM16LE, base64), then silence to end the turn.
        let audio = [silence(400), speak(question), silence(1500)].concat();
        for chunk in audio.chunks(2400) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|x| x.to_le_bytes()).collect();
            let m = serde_json::json!({ "type": "audio", "audio": b64.encode(bytes) });
            ws.send(Message::text(m.to_string())).await.unwrap();
        }
        let mut reply_audio: Vec<i16> = Vec::new();
        let reply = loop {
            let m = tokio::time::timeout(Duration::from_secs(60), ws.next())
                .await
                .expect("a reply within 60 s")
                .expect("socket open")
                .unwrap();
            let Message::Text(t) = m else { continue };
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            match v["type"].as_str().unwrap_or("") {
                "audio" => {
                    let b = b64.decode(v["audio"].as_str().unwrap()).unwrap();
                    reply_audio.extend(b.chunks_exact(2).map(|p| i16::from_le_bytes([p[0], p[1]])));
                }
                "message" => break v,
                "error" => panic!("{v}"),
                _ => {}
            }
        };
        let h = common::api_call(
            &s.http,
            reqwest::Method::GET,
            &format!("/api/realtime/sessions/{id}/history"),
            "alice",
            None,
        )
        .await
        .1;
        let msgs = h["data"]["messages"].as_array().unwrap();
        let user = msgs
            .iter()
            .find(|m| m["role"] == "user")
            .expect("user turn stored");
        let asst = msgs
            .iter()
            .find(|m| m["role"] == "assistant")
            .expect("reply stored");
        let back = hear(&pool, &reply_audio).await;
        eprintln!(
            "{question:?}: stored {:?} / {:?}; reply audio heard as {back:?}",
            user["content"], asst["content"]
        );
        assert!(
            normalize(user["content"].as_str().unwrap()).contains(heard),
            "{h}"
        );
        assert!(user["tokenCount"].as_i64().unwrap() > 0);
        assert!(
            normalize(asst["content"].as_str().unwrap()).contains(answer),
            "{h}"
        );
        assert_eq!(asst["content"], reply["content"]);
        assert!(
            normalize(&back).contains(answer),
            "reply audio heard as {back:?}"
        );
        let _ = ws.close(None).await;
    }
    s.stop().await;
}

/// One conversation, many turns: the same spoken question eight times, each answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_turns_in_one_conversation_are_each_answered() {
    let Some(home) = models() else { return };
    let p = provider(&home);
    let mut conv = start(&p).await;
    let speech = speak("what is two plus two");
    for round in 0..8 {
        let audio = [silence(400), speech.clone(), silence(1500)].concat();
        let feeder = feed(conv.input.clone(), audio);
        let t = collect_turn(&mut conv).await;
        feeder.await.unwrap();
        eprintln!(
            "round {round}: heard {:?}, replied {:?}",
            t.transcript, t.reply
        );
        assert!(normalize(&t.reply).contains("four"), "round {round}: {t:?}");
    }
}
