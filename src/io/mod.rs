//! The drivers: the only layer that touches sockets, TAP devices, netlink, files, the
//! clock and OS randomness. Each driver owns one protocol core and feeds it.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
pub mod rules_cli;
