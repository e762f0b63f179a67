#![no_main]
// The body is shared with the stable harness (tests/fuzz_bodies.rs); see fuzz/README.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| parlor_signaling::fuzzing::join_request(data));
