//! Synthetic call → mixed WebM recording, exercising the whole crate.
//!
//! ```text
//! cargo run --release --manifest-path media/Cargo.toml --example synth_webm -- \
//!     --out F.webm --seconds S --participants N --loss P --seed K
//! ```
//!
//! Participant i (1-based) sends a sine of 440 + 220·(i−1) Hz, Opus-encoded (VoIP,
//! in-band FEC) into RTP packets with a random start sequence number and timestamp.
//! A seeded network drops each packet with probability P, delays packets by 10–30 ms
//! and holds about 3 % of them back 30 ms more, which reorders them. Every 20 ms tick
//! each participant's jitter buffer hands out one frame, the decoder fills lost frames
//! with FEC or PLC, the mixer sums all participants, and the mix is Opus-encoded into
//! `F.webm`. Each participant's decoded audio is also re-encoded into `F.pI.webm`.
//! Prints one JSON line: frames, lost, concealed, and the wall time.

use std::fs::File;
use std::io::BufWriter;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use parlor_media::{
    Application, DecodeKind, EncoderConfig, JitterBuffer, JitterConfig, Mixer, OpusDecoder,
    OpusEncoder, WebmConfig, WebmWriter, FRAME_SAMPLES, MAX_PACKET_BYTES,
};

struct Args {
    out: String,
    seconds: u32,
    participants: usize,
    loss: f64,
    seed: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        out: String::new(),
        seconds: 10,
        participants: 2,
        loss: 0.0,
        seed: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
        let bad = || format!("bad value for {k}: {v}");
        match k.as_str() {
            "--out" => a.out = v.clone(),
            "--seconds" => a.seconds = v.parse().map_err(|_| bad())?,
            "--participants" => a.participants = v.parse().map_err(|_| bad())?,
            "--loss" => a.loss = v.parse().map_err(|_| bad())?,
            "--seed" => a.seed = v.parse().map_err(|_| bad())?,
            _ => return Err(format!("unknown argument {k}")),
        }
    }
    if a.out.is_empty() || a.seconds == 0 || a.participants == 0 || !(0.0..1.0).contains(&a.loss) {
        return Err("need --out F.webm, --seconds > 0, --participants > 0, 0 <= --loss < 1".into());
    }
    Ok(a)
}

/// SplitMix64: a tiny seeded PRNG, enough for a simulation.
struct Rng(u64);
impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Sent {
    arrival_us: u64,
    participant: usize,
    seq: u16,
    ts: u32,
    payload: Vec<u8>,
}

fn per_participant_path(out: &str, i: usize) -> String {
    let stem = out.strip_suffix(".webm").unwrap_or(out);
    format!("{stem}.p{i}.webm")
}

fn run(a: &Args) -> Result<String, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let frames_total = a.seconds as usize * 50;
    let mut rng = Rng(a.seed);

    // 1. Senders: sine → Opus → RTP through a lossy, jittery network.
    let mut sent = Vec::new();
    let mut dropped = 0u64;
    let mut pkt = vec![0u8; MAX_PACKET_BYTES];
    let mut pcm = vec![0i16; FRAME_SAMPLES];
    for p in 0..a.participants {
        let freq = 440.0 + 220.0 * p as f64;
        let mut enc = OpusEncoder::new(EncoderConfig {
            channels: 1,
            bitrate: 24_000,
            application: Application::Voip,
            fec: true,
            expected_loss_percent: ((a.loss * 100.0).ceil() as u8).max(10),
            dtx: false,
            complexity: 5,
        })?;
        let seq0 = rng.next_u64() as u16;
        let ts0 = rng.next_u64() as u32;
        for k in 0..frames_total {
            for (j, s) in pcm.iter_mut().enumerate() {
                let t = (k * FRAME_SAMPLES + j) as f64 / 48_000.0;
                *s = ((2.0 * std::f64::consts::PI * freq * t).sin() * 0.25 * 32767.0) as i16;
            }
            let n = enc.encode(&pcm, &mut pkt)?;
            if rng.unit() < a.loss {
                dropped += 1;
                continue;
            }
            let mut delay_us = 10_000 + (rng.unit() * 20_000.0) as u64;
            if rng.unit() < 0.03 {
                delay_us += 30_000;
            }
            sent.push(Sent {
                arrival_us: k as u64 * 20_000 + delay_us,
                participant: p,
                seq: seq0.wrapping_add(k as u16),
                ts: ts0.wrapping_add((k * FRAME_SAMPLES) as u32),
                payload: pkt[..n].to_vec(),
            });
        }
    }
    sent.sort_by_key(|s| s.arrival_us);

    // 2. Receivers: jitter buffer → decoder (FEC/PLC) → mixer → encoder → WebM.
    let jcfg = JitterConfig::default();
    let mut jbs: Vec<JitterBuffer> = (0..a.participants)
        .map(|_| JitterBuffer::new(jcfg))
        .collect();
    let mut decs = (0..a.participants)
        .map(|_| OpusDecoder::new(1))
        .collect::<Result<Vec<_>, _>>()?;
    let mut mixer = Mixer::new(1)?;
    let inputs: Vec<_> = (0..a.participants).map(|_| mixer.add_input()).collect();
    let mix_cfg = EncoderConfig {
        bitrate: 64_000,
        application: Application::Audio,
        fec: false,
        expected_loss_percent: 0,
        ..EncoderConfig::default()
    };
    let mut mix_enc = OpusEncoder::new(mix_cfg)?;
    let webm_cfg = |pre_skip| WebmConfig {
        channels: 1,
        pre_skip,
        input_sample_rate: 48_000,
        cluster_ms: 1000,
    };
    let mut mix_out = WebmWriter::new(
        BufWriter::new(File::create(&a.out)?),
        webm_cfg(mix_enc.pre_skip()),
    )?;
    let mut part_enc = Vec::new();
    let mut part_out = Vec::new();
    for i in 0..a.participants {
        let e = OpusEncoder::new(EncoderConfig {
            bitrate: 32_000,
            application: Application::Audio,
            fec: false,
            expected_loss_percent: 0,
            ..EncoderConfig::default()
        })?;
        let path = per_participant_path(&a.out, i + 1);
        part_out.push(WebmWriter::new(
            BufWriter::new(File::create(path)?),
            webm_cfg(e.pre_skip()),
        )?);
        part_enc.push(e);
    }

    let base = Instant::now();
    let mut next_event = 0;
    let mut out_frames = vec![0usize; a.participants];
    let mut mix_frames = 0usize;
    let (mut fec, mut plc) = (0u64, 0u64);
    let mut dec_pcm = vec![0i16; FRAME_SAMPLES];
    let mut mix_pcm = vec![0i16; FRAME_SAMPLES];
    let mut tick = 0u64;
    while mix_frames < frames_total || out_frames.iter().any(|&f| f < frames_total) {
        let t_us = tick * 20_000;
        let now = base + Duration::from_micros(t_us);
        while next_event < sent.len() && sent[next_event].arrival_us <= t_us {
            let s = &sent[next_event];
            let at = base + Duration::from_micros(s.arrival_us);
            jbs[s.participant].insert(at, s.seq, s.ts, &s.payload);
            next_event += 1;
        }
        let mut any = false;
        for p in 0..a.participants {
            if out_frames[p] >= frames_total {
                continue;
            }
            let Some(frame) = jbs[p].pop(now) else {
                continue;
            };
            match decs[p].decode_frame(&frame, &mut dec_pcm)? {
                DecodeKind::Normal => {}
                DecodeKind::Fec => fec += 1,
                DecodeKind::Plc => plc += 1,
            }
            mixer.push(inputs[p], &dec_pcm)?;
            let n = part_enc[p].encode(&dec_pcm, &mut pkt)?;
            part_out[p].write_packet((out_frames[p] * FRAME_SAMPLES) as u64, &pkt[..n])?;
            out_frames[p] += 1;
            any = true;
        }
        if (any || mix_frames > 0) && mix_frames < frames_total {
            mixer.mix(&mut mix_pcm)?;
            let n = mix_enc.encode(&mix_pcm, &mut pkt)?;
            mix_out.write_packet((mix_frames * FRAME_SAMPLES) as u64, &pkt[..n])?;
            mix_frames += 1;
        }
        tick += 1;
        if tick > (frames_total as u64 + 500) * 2 {
            return Err("simulation did not finish".into());
        }
    }
    mix_out.finalize()?;
    for w in part_out {
        w.finalize()?;
    }
    let (mut lost, mut late, mut reordered) = (0u64, 0u64, 0u64);
    for jb in &jbs {
        let s = jb.stats();
        lost += s.lost;
        late += s.late;
        reordered += s.reordered;
    }
    Ok(format!(
        "{{\"out\":\"{}\",\"seconds\":{},\"participants\":{},\"frames\":{},\"sent\":{},\"dropped\":{},\"lost\":{},\"late\":{},\"reordered\":{},\"concealed\":{},\"fec\":{},\"plc\":{},\"wall_ms\":{:.1}}}",
        a.out.replace('\\', "\\\\").replace('"', "\\\""),
        a.seconds,
        a.participants,
        mix_frames,
        (frames_total * a.participants) as u64,
        dropped,
        lost,
        late,
        reordered,
        fec + plc,
        fec,
        plc,
        started.elapsed().as_secs_f64() * 1000.0
    ))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("synth_webm: {e}\nusage: synth_webm --out F.webm --seconds S --participants N --loss P --seed K");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("synth_webm: {e}");
            ExitCode::FAILURE
        }
    }
}
