//! The drivers: the only layer that touches sockets, TAP devices, netlink, files, the
//! clock and OS randomness. Each driver owns one protocol core and feeds it.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod cli;
pub mod client;
pub mod controller_cli;
pub mod daemon;
pub mod demo;
pub mod home;
pub mod http;
pub mod idtool;
pub mod lab;
pub mod netconf;
pub mod netdev;
pub mod networks;
pub mod rules_cli;
pub mod tap;
