//! skylan: a self-hostable, end-to-end encrypted L2 virtual Ethernet overlay.
//!
//! # Layers
//!
//! One folder per layer; a layer imports only the layers below it (`tests/layers.rs`
//! checks this, and holds the one table of the order):
//!
//! ```text
//! types                 identifiers, the monotonic `Time` and the wall-clock `UnixTime`
//!   ← wire              byte layouts of packets and messages, fragmentation
//!   ← crypto            identities, Noise sessions, replay window, signing
//!   ← rules             flow-rules grammar → rule table → pure evaluate()
//!   ← world             signed world definitions (planet, moons): parse and verify
//!   ← node | root       the sans-IO cores: a node (peers, paths, networks, switch) and a root
//!   ← controller        networks, members, IP pools, signed configs; pure decisions | Store
//!   ← service           the glue that serves a controller from a node (daemon and simulator)
//!   ← sim | io          the deterministic simulator (feature `sim`) | the drivers: tokio,
//!                       sockets, TAP, netlink, HTTP, files, the clock, OsRng
//!   ← cli               command-line clients
//!   ← lab               network-namespace lab and demo
//!   ← main.rs           command-line parsing only
//! ```
//!
//! # What the lower layers may not do
//!
//! Below `io`, nothing reads a clock, opens a file or socket, reads the environment, or
//! starts a thread or process: time, randomness and bytes are inputs. `clippy.toml` bans
//! those calls; `io`, `cli`, `lab` and tests allow them explicitly.
//!
//! # Unsafe code
//!
//! Denied everywhere (`#![deny(unsafe_code)]`), allowed only where a libc call has no
//! safe wrapper: `io` (the daemon's forced socket buffer sizes) and `lab` (`setns`,
//! signals and `kill` for the processes it starts). Every `unsafe` block carries a
//! `SAFETY` comment.
//!
//! # Visibility
//!
//! `#![warn(unreachable_pub)]`: an item is `pub` only if it is reachable from outside
//! the crate; helpers of private modules are `pub(crate)` or narrower.
#![warn(missing_docs)]
#![warn(unreachable_pub)]
#![deny(unsafe_code)]

pub mod cli;
pub mod controller;
pub mod crypto;
// `io::daemon` sets socket options through libc (the allow would sit on that module
// alone, but `io/mod.rs` declares it).
#[allow(unsafe_code)]
pub mod io;
// Namespaces (`setns`), signal handlers and `kill` for the processes the lab starts.
#[allow(unsafe_code)]
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
