//! The drivers: the only layer that touches sockets, TAP devices, netlink, files, the
//! clock and OS randomness. Each driver owns one protocol core and feeds it.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod daemon;
pub mod dns;
pub mod handle;
pub mod home;
pub mod http;
pub mod interfaces;
pub mod local;
pub mod netconf;
pub mod netdev;
pub mod networks;
pub mod offload;
pub mod packets;
pub mod postgres;
pub mod tap;
pub mod tcp;
pub mod udp;
pub mod underlay;
pub mod workers;
