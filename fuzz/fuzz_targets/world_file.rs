//! `cargo fuzz run -s none world_file`: the harness and its invariants are in
//! `fuzz/src/world.rs` (shared with `tests/fuzz_smoke.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    skylan_fuzz::world::run(data);
});
