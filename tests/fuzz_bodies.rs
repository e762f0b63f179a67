//! The fuzz bodies (`parlor::fuzzing::BODIES`, the same functions the cargo-fuzz targets in
//! `fuzz/` run) under a seeded mutator on stable Rust: a short run of each target in CI, a long
//! one on demand. See fuzz/README.md.
//!
//! - `PARLOR_FUZZ_RUNS=N`: inputs per target (default: a few thousand, scaled down for the
//!   targets that negotiate real peer connections).
//! - `PARLOR_FUZZ_SEED=S`: mutator seed (default fixed, so CI runs are reproducible).
//! - `PARLOR_FUZZ_TARGET=name`: with `long_run`, only that target.
//!
//! Inputs start from the seeds (`parlor::fuzzing::all_seeds`) and the committed corpus
//! (`fuzz/corpus/<target>/`, which also holds every input that once crashed). A panicking input
//! is written to `target/fuzz-crashes/<target>-<hash>` and its hex printed, then the test fails.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use parlor::fuzzing::{all_seeds, BODIES};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MAX_LEN: usize = 8 * 1024;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let mut v = all_seeds(target);
    if let Ok(rd) = std::fs::read_dir(corpus_dir(target)) {
        let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        // `seed-*` files are written from `all_seeds` (already in); the rest are extra real
        // inputs and regression inputs.
        v.extend(
            files
                .iter()
                .filter(|p| {
                    !p.file_name()
                        .is_some_and(|f| f.to_string_lossy().starts_with("seed-"))
                })
                .filter_map(|p| std::fs::read(p).ok()),
        );
    }
    if v.is_empty() {
        v.push(Vec::new());
    }
    v
}

const INTERESTING: &[u8] = &[
    0, 1, 0x7F, 0x80, 0xFF, 0x40, 0x21, 0x12, 0xA4, 0x42, b'{', b'"',
];

/// One mutation step of `input` (with `pool` for splicing), libFuzzer-style.
fn mutate(rng: &mut StdRng, input: &mut Vec<u8>, pool: &[Vec<u8>]) {
    let ops = rng.gen_range(1..=4);
    for _ in 0..ops {
        let len = input.len();
        match rng.gen_range(0..10) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                input[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.gen_range(0..len);
                input[i] = INTERESTING[rng.gen_range(0..INTERESTING.len())];
            }
            2 if len > 0 => {
                let i = rng.gen_range(0..len);
                input[i] = rng.gen();
            }
            3 if len < MAX_LEN => {
                let i = rng.gen_range(0..=len);
                let n = rng.gen_range(1..=8);
                for _ in 0..n {
                    input.insert(i, rng.gen());
                }
            }
            4 if len > 0 => {
                let i = rng.gen_range(0..len);
                let n = rng.gen_range(1..=(len - i).min(16));
                input.drain(i..i + n);
            }
            5 if len > 0 => {
                input.truncate(rng.gen_range(0..len));
            }
            6 if len > 1 => {
                // Copy a chunk elsewhere (repeats fields, attributes, elements).
                let a = rng.gen_range(0..len);
                let n = rng.gen_range(1..=(len - a).min(64));
                let chunk = input[a..a + n].to_vec();
                let at = rng.gen_range(0..=len);
                if len + n <= MAX_LEN {
                    input.splice(at..at, chunk);
                }
            }
            7 if !pool.is_empty() => {
                // Splice with another input.
                let other = &pool[rng.gen_range(0..pool.len())];
                let cut = rng.gen_range(0..=len);
                let from = rng.gen_range(0..=other.len());
                input.truncate(cut);
                input.extend_from_slice(&other[from..]);
                input.truncate(MAX_LEN);
            }
            8 if len >= 2 => {
                // Big-endian 16-bit length-like fields: set to small, boundary or huge values.
                let i = rng.gen_range(0..len - 1);
                let v: u16 = match rng.gen_range(0..4) {
                    0 => 0,
                    1 => rng.gen_range(0..64),
                    2 => u16::MAX,
                    _ => (len as u16).wrapping_add(rng.gen_range(0..8)),
                };
                input[i..i + 2].copy_from_slice(&v.to_be_bytes());
            }
            _ => {
                let n = rng.gen_range(0..64);
                input.clear();
                input.extend((0..n).map(|_| rng.gen::<u8>()));
            }
        }
    }
}

fn save_crash(target: &str, input: &[u8]) -> PathBuf {
    let mut h = DefaultHasher::new();
    input.hash(&mut h);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-crashes");
    let _ = std::fs::create_dir_all(&dir);
    let p = dir.join(format!("{target}-{:016x}", h.finish()));
    let _ = std::fs::write(&p, input);
    p
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Run `runs` inputs of `target`; panics (after saving the input) on the first crash.
fn fuzz(target: &str, runs: u64) {
    let body = BODIES
        .iter()
        .find(|(n, _)| *n == target)
        .map(|(_, b)| *b)
        .unwrap_or_else(|| panic!("no fuzz body named {target}"));
    let seed: u64 = std::env::var("PARLOR_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_F022);
    let mut rng = StdRng::seed_from_u64(seed ^ target.len() as u64);
    let mut pool = corpus(target);
    let start = Instant::now();
    let run_one = |input: &[u8]| {
        if catch_unwind(AssertUnwindSafe(|| body(input))).is_err() {
            let p = save_crash(target, input);
            panic!(
                "fuzz target {target} panicked on input {} (saved to {})",
                hex(input),
                p.display()
            );
        }
    };
    // Every seed and corpus file as is, then mutants.
    for input in &pool {
        run_one(input);
    }
    let mut executed = pool.len() as u64;
    while executed < runs {
        let mut input = pool[rng.gen_range(0..pool.len())].clone();
        mutate(&mut rng, &mut input, &pool);
        run_one(&input);
        executed += 1;
        // Keep some mutants as parents so mutations stack (a poor man's corpus growth).
        if rng.gen_ratio(1, 64) && pool.len() < 4096 {
            pool.push(input);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "fuzz {target}: {executed} inputs in {secs:.1} s ({:.0}/s), seed {seed}, no panic",
        executed as f64 / secs.max(1e-9)
    );
}

fn runs(default: u64) -> u64 {
    std::env::var("PARLOR_FUZZ_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

macro_rules! short_runs {
    ($($name:ident: $default:expr,)*) => {
        $(
            #[test]
            fn $name() {
                fuzz(stringify!($name), runs($default));
            }
        )*

        /// Every body has a short run above (and a cargo-fuzz target, checked below).
        #[test]
        fn every_body_has_a_short_run() {
            let named = [$(stringify!($name)),*];
            for (n, _) in BODIES {
                assert!(named.contains(n), "{n} has no short run in tests/fuzz_bodies.rs");
            }
        }
    };
}

short_runs! {
    stun_message: 4000,
    turn_server: 3000,
    turn_tcp_stream: 3000,
    access_token: 4000,
    signed_token: 4000,
    signal_request: 4000,
    join_request: 4000,
    webm_repair: 3000,
    ebml_reader: 4000,
    opus_packet: 4000,
    signal_session: 1000,
    sdp_offer: 300,
    ice_tcp_stream: 4000,
    udp_datagram: 2000,
    rtp_forward: 4000,
    rtcp_packet: 4000,
}

#[test]
fn every_body_has_a_cargo_fuzz_target_and_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets");
    for (n, _) in BODIES {
        let src = std::fs::read_to_string(dir.join(format!("{n}.rs")))
            .unwrap_or_else(|e| panic!("fuzz/fuzz_targets/{n}.rs: {e}"));
        assert!(
            src.contains(&format!("::{n}(")),
            "{n}.rs does not call the {n} body"
        );
        assert!(!all_seeds(n).is_empty(), "{n} has no seeds");
    }
}

/// The long run: `PARLOR_FUZZ_RUNS=1000000 cargo test --release --test fuzz_bodies long_run --
/// --ignored --nocapture` (optionally `PARLOR_FUZZ_TARGET=name`), one target after another.
#[test]
#[ignore = "long: run explicitly (see fuzz/README.md)"]
fn long_run() {
    let only = std::env::var("PARLOR_FUZZ_TARGET").ok();
    for (n, _) in BODIES {
        if only.as_deref().is_none_or(|o| o == *n) {
            fuzz(n, runs(1_000_000));
        }
    }
}

/// Writes each target's seeds into `fuzz/corpus/<target>/` (the committed seed corpora):
/// `PARLOR_FUZZ_WRITE_CORPUS=1 cargo test --test fuzz_bodies write_seed_corpus -- --ignored`.
#[test]
#[ignore = "writes files: run explicitly to regenerate the seed corpora"]
fn write_seed_corpus() {
    assert!(std::env::var("PARLOR_FUZZ_WRITE_CORPUS").is_ok());
    for (n, _) in BODIES {
        let dir = corpus_dir(n);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in all_seeds(n).iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), s).unwrap();
        }
    }
}
