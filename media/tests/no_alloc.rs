//! No heap allocation per frame in steady state: jitter insert/pop, decode (incl.
//! FEC/PLC), mix, resample, encode and WebM write run 300 frames for 10 participants without a
//! single Rust heap allocation on this thread (counted by a global allocator).
//! libopus' own C code does not allocate per frame either (it uses the stack), but its
//! `malloc` is outside what this counter sees.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use parlor_media::{
    EncoderConfig, JitterBuffer, JitterConfig, Mixer, OpusDecoder, OpusEncoder, Resampler,
    WebmConfig, WebmWriter, FRAME_SAMPLES, MAX_PACKET_BYTES,
};

struct Counting;
thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if ON.with(|o| o.get()) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if ON.with(|o| o.get()) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        unsafe { System.realloc(p, l, n) }
    }
}
#[global_allocator]
static A: Counting = Counting;

#[path = "common/sink.rs"]
mod sink;
use sink::Sink;

#[test]
fn steady_state_pipeline_does_not_allocate() {
    let n = 10;
    let mut encs: Vec<_> = (0..n)
        .map(|_| OpusEncoder::new(EncoderConfig::default()).unwrap())
        .collect();
    let mut jbs: Vec<_> = (0..n)
        .map(|_| JitterBuffer::new(JitterConfig::default()))
        .collect();
    let mut decs: Vec<_> = (0..n).map(|_| OpusDecoder::new(1).unwrap()).collect();
    let mut mixer = Mixer::new(1).unwrap();
    let inputs: Vec<_> = (0..n).map(|_| mixer.add_input()).collect();
    let mut mix_enc = OpusEncoder::new(EncoderConfig::default()).unwrap();
    let mut w = WebmWriter::new(Sink(0), WebmConfig::default()).unwrap();
    let mut pcm = vec![0i16; FRAME_SAMPLES];
    let mut dec = vec![0i16; FRAME_SAMPLES];
    let mut mix = vec![0i16; FRAME_SAMPLES];
    let mut pkt = vec![0u8; MAX_PACKET_BYTES];
    // The bridge's path: the mix down to 16 kHz for a speech model.
    let mut down = Resampler::new(48_000, 16_000, 1, 1).unwrap();
    let mut speech = vec![0i16; 320];
    let t0 = Instant::now();

    let mut run = |from: usize, to: usize| {
        for k in from..to {
            let now = t0 + Duration::from_millis(k as u64 * 20 + 100);
            for p in 0..n {
                for (j, s) in pcm.iter_mut().enumerate() {
                    *s = (((k * FRAME_SAMPLES + j) * (p + 3)) % 4000) as i16;
                }
                let len = encs[p].encode(&pcm, &mut pkt).unwrap();
                // Every 7th packet is lost, so FEC/PLC run too.
                if k % 7 != 3 {
                    jbs[p].insert(now, k as u16, (k * FRAME_SAMPLES) as u32, &pkt[..len]);
                }
                if let Some(f) = jbs[p].pop(now) {
                    decs[p].decode_frame(&f, &mut dec).unwrap();
                    mixer.push(inputs[p], &dec).unwrap();
                }
            }
            mixer.mix(&mut mix).unwrap();
            down.process(&mix, &mut speech).unwrap();
            let len = mix_enc.encode(&mix, &mut pkt).unwrap();
            w.write_packet((k * FRAME_SAMPLES) as u64, &pkt[..len])
                .unwrap();
        }
    };
    run(0, 50); // warm-up
    ON.with(|o| o.set(true));
    run(50, 350);
    ON.with(|o| o.set(false));
    let allocs = COUNT.with(|c| c.get());
    assert_eq!(
        allocs, 0,
        "{allocs} heap allocations in 300 steady-state frames"
    );
    assert!(jbs[0].stats().missing > 30);
}
