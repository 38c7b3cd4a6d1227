//! `cargo fuzz run -s none node_datagrams`: the harness and its invariants are in
//! `fuzz/src/node.rs` (shared with `tests/fuzz_smoke.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    skylan_fuzz::node::run(data);
});
