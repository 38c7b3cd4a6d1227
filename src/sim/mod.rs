//! A deterministic, in-process network simulator: the main test tool of the project.
//!
//! Owns a virtual clock, an event queue and a world of hosts (sans-IO protocol cores that
//! implement [`Host`]), their access links and the NAT boxes some of them sit behind.
//! Scenario tests, benches and examples drive it; the protocol cores never see it, they
//! only implement [`Host`]. Nothing in here reads a clock, touches a socket or uses OS
//! randomness.
//!
//! # Determinism
//!
//! [`Sim::new`] takes a seed. Every random choice (loss, jitter, NAT public ports, the
//! seeds [`Sim::fork_seed`] hands to hosts) comes from one `ChaCha8Rng` seeded with it,
//! drawn in event order. Events run in `(time, sequence)` order, the sequence counting
//! schedulings, so ties are broken the same way every time. Same seed, same hosts, same
//! calls ⇒ the identical run, which [`Sim::trace_hash`] summarises. A failing seed is a
//! reproducible bug report.
//!
//! # The world
//!
//! - A **host** has one UDP socket (`ip:port`) and one access [`AccessLink`]. It is either on
//!   the public network or behind a NAT ([`NatId`]); hosts behind the same NAT form a LAN
//!   with its own address space (use 192.0.2.0/24 there) and reach each other directly
//!   by their private addresses.
//! - A **NAT** has a public IP, a [`NatKind`] and an idle timeout (default 60 s). Its
//!   exact mapping and filtering rules are in the table below.
//!
//! # A datagram's path
//!
//! After every call into a host, the simulator drains [`Host::poll_transmit`] until
//! `None`, then asks [`Host::poll_timeout`]. Each datagram then goes:
//!
//! 1. *Send* (now): dropped if the sender is down (`down_dropped`) or larger than its
//!    link's MTU (`mtu_dropped`). If the destination is a host on the sender's own LAN,
//!    it goes straight to step 3 over both links. Otherwise, from behind a NAT, the NAT
//!    maps it (new mapping or refresh) and rewrites the source to the public address; a
//!    datagram to the NAT's own public IP is dropped (no hairpinning, `nat_filtered`).
//!    Then the sender's link may lose it (`lost`).
//! 2. *Transit* (now + sender latency + jitter): it reaches the public network. The
//!    destination is looked up: a public host, or a NAT's public IP, whose filter admits
//!    it or not (`nat_filtered`); an address nobody holds is `unroutable`. The receiver's
//!    link checks its MTU and may lose it.
//! 3. *Deliver* (+ receiver latency + jitter): dropped if the receiver is down
//!    (`down_dropped`), moved away (`unroutable`) or partitioned from the sender
//!    (`partitioned`); otherwise handed to [`Host::handle_datagram`] (`delivered`).
//!
//! So the one-way delay between two hosts is the sum of both access links' latencies
//! plus a uniform jitter in `0..=jitter` per link; NAT hops are free. Jitter can reorder
//! datagrams. Loss and MTU are per link, checked on each end.
//!
//! # NAT behaviours
//!
//! | kind | mapping | filtering |
//! | --- | --- | --- |
//! | [`NatKind::EndpointIndependent`] (full cone) | one public port per private socket | none: after one outbound datagram anyone gets in |
//! | [`NatKind::PortRestricted`] | one public port per private socket | only from an `ip:port` the socket sent to |
//! | [`NatKind::Symmetric`] | one public port per (socket, destination `ip:port`) | only from that destination |
//!
//! A mapping lives while `now < last outbound datagram + timeout`; only outbound
//! traffic refreshes it; a port-restricted permission for a remote lives while
//! `now < last datagram to that remote + timeout`. An expired mapping is gone, and the
//! next outbound datagram gets a new random public port (1024..=65535, from the seeded
//! RNG). [`Sim::reset_nat`] forgets all mappings at once (a router reboot or conntrack
//! flush), [`Sim::set_nat_public_ip`] renumbers the NAT.
//!
//! # Failures
//!
//! A host that is down ([`Sim::set_up`]) is a dead machine: it receives nothing, sends
//! nothing, and gets no timeouts. When it comes back up its timer is asked again, and an
//! overdue timer fires at once. [`Sim::set_partition`] drops everything between two hosts
//! (checked on delivery, so datagrams already in flight are dropped too).
//!
//! # Touching hosts from a test
//!
//! [`Sim::host`] reads a host. [`Sim::host_mut`] changes one; the simulator then drains
//! its transmits and re-reads its timer before the next event, at the current time.
//! [`Sim::with_host`] does the same but drains immediately and passes `now`.
//!
//! # Panics
//!
//! Setup mistakes (two hosts on one address, an unknown id, a host of another type than
//! asked for) panic with a message saying what was wrong: they are bugs in the test, not
//! input. So does a livelock guard: more than [`Sim::set_livelock_limit`] events at one
//! instant means a host keeps rescheduling itself at `now`.
//!
//! # Example
//!
//! ```
//! use skylan::sim::{Host, AccessLink, NatKind, Sim};
//! use skylan::types::{Endpoint, Time, Transmit};
//! use std::time::Duration;
//!
//! /// Sends one datagram at start, counts replies.
//! struct Hello { to: Endpoint, out: Vec<Transmit>, replies: u32 }
//! impl Host for Hello {
//!     fn handle_datagram(&mut self, _: Time, _: Endpoint, _: Endpoint, _: &[u8]) {
//!         self.replies += 1;
//!     }
//!     fn handle_timeout(&mut self, _: Time) {}
//!     fn poll_transmit(&mut self) -> Option<Transmit> { self.out.pop() }
//!     fn poll_timeout(&self) -> Option<Time> { None }
//! }
//! /// Echoes every datagram back to its source.
//! struct Echo { out: Vec<Transmit> }
//! impl Host for Echo {
//!     fn handle_datagram(&mut self, _: Time, _: Endpoint, from: Endpoint, data: &[u8]) {
//!         self.out.push(Transmit { destination: from, contents: data.to_vec() });
//!     }
//!     fn handle_timeout(&mut self, _: Time) {}
//!     fn poll_transmit(&mut self) -> Option<Transmit> { self.out.pop() }
//!     fn poll_timeout(&self) -> Option<Time> { None }
//! }
//!
//! let mut sim = Sim::new(1);
//! let server_ip = "198.51.100.1".parse().unwrap();
//! sim.add_host(Echo { out: vec![] }, server_ip, 9993, AccessLink::default(), None);
//! let nat = sim.add_nat(NatKind::Symmetric, "203.0.113.1".parse().unwrap());
//! let to = "198.51.100.1/9993".parse().unwrap();
//! let hello = Hello { to, out: vec![Transmit { destination: to, contents: b"hi".to_vec() }], replies: 0 };
//! let client = sim.add_host(hello, "192.0.2.2".parse().unwrap(), 5000, AccessLink::default(), Some(nat));
//! assert!(sim.run_until_true(Duration::from_secs(1), |s| s.host::<Hello>(client).replies == 1));
//! assert_eq!(sim.now(), Time::from_millis(40)); // 2 × (10 ms + 10 ms)
//! ```

use std::fmt;
use std::time::Duration;

use crate::types::{Endpoint, Time, Transmit};

pub mod cores;
pub mod forge;
mod hash;
pub mod mesh;
mod nat;
pub mod pool;
mod queue;
mod rng;
mod simulator;

pub use nat::{DEFAULT_NAT_TIMEOUT, NatKind};
pub use simulator::Sim;

/// The simulator's wall clock: its one virtual clock stands for both the monotonic
/// [`Time`] and wall-clock [`UnixTime`](crate::types::UnixTime), read as that many
/// microseconds after the epoch.
pub fn wall(now: Time) -> crate::types::UnixTime {
    crate::types::UnixTime::from_micros(now.as_micros())
}

/// A sans-IO protocol core the simulator can run (the node and root cores implement it).
///
/// The simulator calls one `handle_*` method at a time, then drains `poll_transmit`
/// until it returns `None`, then reads `poll_timeout`.
pub trait Host: std::any::Any {
    /// A datagram arrived on the host's socket `local` from `from`.
    fn handle_datagram(&mut self, now: Time, local: Endpoint, from: Endpoint, data: &[u8]);
    /// The time returned by `poll_timeout` was reached.
    fn handle_timeout(&mut self, now: Time);
    /// Datagrams to send; the simulator drains until None after every call into the host.
    fn poll_transmit(&mut self) -> Option<Transmit>;
    /// The next time the host wants `handle_timeout`.
    fn poll_timeout(&self) -> Option<Time>;
}

/// A host in a [`Sim`]: an index, valid for the simulator that returned it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct HostId(pub(crate) u32);

impl HostId {
    /// The position of the host in order of [`Sim::add_host`] calls, from 0.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "host{}", self.0)
    }
}

/// A NAT box in a [`Sim`]: an index, valid for the simulator that returned it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct NatId(pub(crate) u32);

impl NatId {
    /// The position of the NAT in order of [`Sim::add_nat`] calls, from 0.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nat{}", self.0)
    }
}

/// A host's access link: what every datagram to or from the host goes through.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct AccessLink {
    /// One-way delay added to every datagram crossing the link.
    pub latency: Duration,
    /// Extra one-way delay, uniform in `0..=jitter` per datagram (can reorder).
    pub jitter: Duration,
    /// Probability, `0.0..=1.0`, that a datagram crossing the link is lost.
    pub loss: f64,
    /// Largest UDP payload the link carries; larger datagrams are dropped and counted
    /// in [`SimStats::mtu_dropped`].
    pub mtu: usize,
}

impl AccessLink {
    /// This link with another latency.
    pub fn with_latency(self, latency: Duration) -> Self {
        Self { latency, ..self }
    }

    /// This link with another jitter.
    pub fn with_jitter(self, jitter: Duration) -> Self {
        Self { jitter, ..self }
    }

    /// This link with another loss probability.
    pub fn with_loss(self, loss: f64) -> Self {
        Self { loss, ..self }
    }

    /// This link with another MTU (largest UDP payload).
    pub fn with_mtu(self, mtu: usize) -> Self {
        Self { mtu, ..self }
    }
}

impl Default for AccessLink {
    /// 10 ms, no jitter, no loss, 1472-byte payloads (a 1500-byte IPv4 Ethernet path).
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss: 0.0,
            mtu: 1472,
        }
    }
}

/// Counters over a whole run. Every datagram taken from a host or injected ends in
/// exactly one of `delivered`, `lost`, `mtu_dropped`, `nat_filtered`, `down_dropped`,
/// `unroutable`, `partitioned`, or is still in flight.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub struct SimStats {
    /// Datagrams hosts handed over (including those a down host tried to send).
    pub sent: u64,
    /// Datagrams put in by [`Sim::inject`], [`Sim::inject_to_host`] or [`Sim::replay`].
    pub injected: u64,
    /// Datagrams handed to a host.
    pub delivered: u64,
    /// Datagrams lost on a link.
    pub lost: u64,
    /// Datagrams larger than a link's MTU.
    pub mtu_dropped: u64,
    /// Datagrams a NAT refused: no live mapping, filtered, hairpin, or no free port.
    pub nat_filtered: u64,
    /// Datagrams from or to a host that was down.
    pub down_dropped: u64,
    /// Datagrams to an address no host or NAT holds (or a host that moved away).
    pub unroutable: u64,
    /// Datagrams dropped by [`Sim::set_partition`].
    pub partitioned: u64,
    /// Calls to [`Host::handle_timeout`].
    pub timeouts: u64,
    /// Events processed (deliveries, transits and timer firings; stale timers excluded).
    pub events: u64,
}

/// Per-host counters.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub struct HostStats {
    /// Datagrams the host handed over.
    pub sent: u64,
    /// Datagrams handed to the host.
    pub received: u64,
    /// Real (wall-clock) time spent inside the host's calls, measured only after
    /// [`Sim::enable_timing`]; it never feeds back into the run.
    pub busy: std::time::Duration,
}

/// A delivered datagram, recorded when capture is on ([`Sim::enable_capture`]).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Captured {
    /// When it was handed to the receiver.
    pub time: Time,
    /// The sending host (`None` if injected).
    pub sender: Option<HostId>,
    /// The receiving host.
    pub receiver: HostId,
    /// Its source as the receiver saw it (after the sender's NAT).
    pub from: Endpoint,
    /// The address the sender put on it (a NAT's public address for a host behind one);
    /// [`Sim::inject`]`(from, to, bytes)` sends a copy down the same path.
    pub to: Endpoint,
    /// The receiver's socket (its private address behind a NAT).
    pub local: Endpoint,
    /// True if it never crossed the public network: LAN traffic between hosts behind
    /// one NAT, or [`Sim::inject_to_host`]. [`Sim::replay`] then delivers it directly.
    pub lan: bool,
    /// The UDP payload.
    pub bytes: Vec<u8>,
}
