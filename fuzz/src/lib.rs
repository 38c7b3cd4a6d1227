//! Harnesses of the skylan fuzz targets, kept apart from the `fuzz_targets/` stubs so a
//! plain `cargo test` can run the same logic (`tests/fuzz_smoke.rs` compiles this file
//! as a module; that is why modules refer to each other with `super::`).
//!
//! - [`node`]: `node_datagrams`, a whole node core;
//! - [`root`]: `root_datagrams`, a whole root core;
//! - [`world`]: `world_file`, world definitions in both forms;
//! - [`ops`]: how a core target reads its input as operations;
//! - [`scenario`]: the recorded genuine conversation the core targets replay and mutate.
//!
//! Each target's entry point is `run(data: &[u8])`; it panics when an invariant of the
//! core is broken (the module docs list them) and never otherwise.
#![warn(missing_docs)]

pub mod node;
pub mod ops;
pub mod root;
pub mod scenario;
pub mod world;
