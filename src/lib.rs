//! skylan: a self-hostable, end-to-end encrypted L2 virtual Ethernet overlay.
//!
//! Layers (imports point downward only):
//!
//! ```text
//! types ← wire ← crypto            vocabulary, byte layouts, keys/sessions/AEAD
//! rules (types, wire)              pest grammar → AST → flat rule table → evaluate()
//! switch (node core)   moon (root core, worlds)       sans-IO state machines
//! controller                       pure decisions | Store trait
//! io                               the only place with tokio, sockets, TAP, clock, OsRng
//! sim                              a deterministic in-process network for tests
//! ```
#![warn(missing_docs)]

pub mod cli;
pub mod controller;
pub mod crypto;
pub mod io;
pub mod lab;
pub mod node;
pub mod root;
pub mod rules;
pub mod service;
// The simulator's and the wire layer's unit tests read and write seed files.
#[cfg(any(test, feature = "sim"))]
#[cfg_attr(test, allow(clippy::disallowed_methods))]
pub mod sim;
pub mod types;
#[cfg_attr(test, allow(clippy::disallowed_methods))]
pub mod wire;
pub mod world;
