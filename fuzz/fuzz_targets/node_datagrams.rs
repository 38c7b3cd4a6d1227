#![no_main]
// Filled in with its layer.
libfuzzer_sys::fuzz_target!(|_data: &[u8]| {});
