//! `cargo fuzz run -s none root_datagrams`: the harness and its invariants are in
//! `fuzz/src/root.rs` (shared with `tests/fuzz_smoke.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    skylan_fuzz::root::run(data);
});
