//! NAT boxes: the mapping and filtering table of one simulated NAT.
//!
//! Owns, for one NAT, the translations from private sockets to public ports and the
//! filtering state that decides which inbound datagrams pass. It knows nothing of hosts,
//! links or the event queue: [`super::Sim`] calls [`Nat::outbound`] when a host behind
//! the NAT sends to an address outside its LAN, and [`Nat::inbound`] when a datagram
//! reaches the NAT's public IP.
//!
//! The behaviours, in the terms of RFC 4787:
//!
//! | kind | mapping | filtering |
//! | --- | --- | --- |
//! | [`NatKind::EndpointIndependent`] (full cone) | one public port per private socket, whatever the destination | none: anyone may send to a live mapping |
//! | [`NatKind::PortRestricted`] | one public port per private socket | address-and-port dependent: only from an `ip:port` the private socket sent to |
//! | [`NatKind::Symmetric`] | one public port per (private socket, destination `ip:port`) | only from that one destination |
//!
//! Timing rules (all with the NAT's idle timeout `T`, default 60 s):
//! - A mapping is live while `now < last_outbound + T`, where `last_outbound` is the time
//!   of the last datagram sent through it. Only outbound traffic refreshes it; inbound
//!   traffic does not (a host that only listens loses its mapping, as on many home routers).
//! - A port-restricted permission for a remote `ip:port` is live while
//!   `now < last_outbound_to_that_remote + T`.
//! - An expired mapping is gone: the next outbound datagram gets a fresh public port.
//! - Public ports are drawn uniformly from 1024..=65535 with the simulator's seeded RNG,
//!   avoiding ports held by live mappings.
//! - No hairpinning and no port preservation.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::hash::FastMap;
use super::rng::SimRng;
use crate::types::Time;

/// How a NAT maps and filters (see the module documentation for the exact rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NatKind {
    /// Full cone: endpoint-independent mapping, no filtering. After one outbound
    /// datagram, anyone can reach the private socket through its public port.
    EndpointIndependent,
    /// Port-restricted cone: endpoint-independent mapping with address-and-port
    /// dependent filtering. Only an `ip:port` the private socket sent to gets in.
    PortRestricted,
    /// Symmetric: a new public port for every destination `ip:port`, and only that
    /// destination gets in through it.
    Symmetric,
}

/// The idle timeout a new NAT starts with.
pub const DEFAULT_NAT_TIMEOUT: Duration = Duration::from_secs(60);

/// Lowest public port a NAT hands out (the pool is `FIRST_PORT..=65535`).
const FIRST_PORT: u16 = 1024;
/// Random draws before falling back to a scan for a free port.
const RANDOM_PORT_TRIES: usize = 64;

/// Why [`Nat::inbound`] refused a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No live mapping holds that public port.
    NoMapping,
    /// A mapping exists, but its filter does not admit that sender.
    Filtered,
}

/// The key a mapping is found by on the way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct MapKey {
    private: SocketAddr,
    /// The destination, only for symmetric NATs (mapping depends on it there).
    remote: Option<SocketAddr>,
}

#[derive(Debug)]
struct Mapping {
    key: MapKey,
    last_outbound: Time,
    /// Port-restricted only: remote `ip:port` → last outbound datagram to it.
    permits: FastMap<SocketAddr, Time>,
}

/// One NAT box's state.
#[derive(Debug)]
pub(crate) struct Nat {
    kind: NatKind,
    public_ip: IpAddr,
    timeout: Duration,
    by_key: FastMap<MapKey, u16>,
    by_port: FastMap<u16, Mapping>,
    /// Lowest port of the pool; [`FIRST_PORT`] except in tests that exhaust the pool.
    first_port: u16,
}

impl Nat {
    /// A NAT with no mappings and the default timeout.
    pub(crate) fn new(kind: NatKind, public_ip: IpAddr) -> Self {
        Self {
            kind,
            public_ip,
            timeout: DEFAULT_NAT_TIMEOUT,
            by_key: FastMap::default(),
            by_port: FastMap::default(),
            first_port: FIRST_PORT,
        }
    }

    pub(crate) fn kind(&self) -> NatKind {
        self.kind
    }

    pub(crate) fn public_ip(&self) -> IpAddr {
        self.public_ip
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    pub(crate) fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Forgets every mapping (a reboot or a conntrack flush).
    pub(crate) fn reset(&mut self) {
        self.by_key.clear();
        self.by_port.clear();
    }

    /// Changes the public address; mappings are forgotten, as when an ISP renumbers.
    pub(crate) fn set_public_ip(&mut self, ip: IpAddr) {
        self.public_ip = ip;
        self.reset();
    }

    /// Mappings still live at `now`.
    pub(crate) fn live_mappings(&self, now: Time) -> usize {
        self.by_port
            .values()
            .filter(|m| self.is_live(m.last_outbound, now))
            .count()
    }

    /// Translates a datagram from `private` to `remote`: finds or creates the mapping,
    /// refreshes it and returns the public source address. `None` when every port is
    /// held by a live mapping.
    pub(crate) fn outbound(
        &mut self,
        now: Time,
        private: SocketAddr,
        remote: SocketAddr,
        rng: &mut SimRng,
    ) -> Option<SocketAddr> {
        let key = MapKey {
            private,
            remote: (self.kind == NatKind::Symmetric).then_some(remote),
        };
        let port = match self.live_port(key, now) {
            Some(port) => port,
            None => {
                let port = self.allocate_port(now, rng)?;
                self.by_key.insert(key, port);
                self.by_port.insert(
                    port,
                    Mapping {
                        key,
                        last_outbound: now,
                        permits: FastMap::default(),
                    },
                );
                port
            }
        };
        // Invariant: `port` was just found live or inserted above.
        let mapping = self
            .by_port
            .get_mut(&port)
            .expect("mapping for a port found or created just above");
        mapping.last_outbound = now;
        if self.kind == NatKind::PortRestricted {
            mapping.permits.insert(remote, now);
        }
        Some(SocketAddr::new(self.public_ip, port))
    }

    /// Decides a datagram from `remote` arriving at public port `port`: the private
    /// socket to hand it to, or why it is refused. Does not refresh anything.
    pub(crate) fn inbound(
        &mut self,
        now: Time,
        port: u16,
        remote: SocketAddr,
    ) -> Result<SocketAddr, Refusal> {
        let Some(mapping) = self.by_port.get(&port) else {
            return Err(Refusal::NoMapping);
        };
        if !self.is_live(mapping.last_outbound, now) {
            self.remove(port);
            return Err(Refusal::NoMapping);
        }
        let admitted = match self.kind {
            NatKind::EndpointIndependent => true,
            NatKind::PortRestricted => mapping
                .permits
                .get(&remote)
                .is_some_and(|&t| self.is_live(t, now)),
            NatKind::Symmetric => mapping.key.remote == Some(remote),
        };
        if admitted {
            Ok(mapping.key.private)
        } else {
            Err(Refusal::Filtered)
        }
    }

    fn is_live(&self, last_outbound: Time, now: Time) -> bool {
        now < last_outbound + self.timeout
    }

    /// The port of a live mapping for `key`; an expired one is removed.
    fn live_port(&mut self, key: MapKey, now: Time) -> Option<u16> {
        let port = *self.by_key.get(&key)?;
        let live = self
            .by_port
            .get(&port)
            .is_some_and(|m| self.is_live(m.last_outbound, now));
        if live {
            Some(port)
        } else {
            self.remove(port);
            None
        }
    }

    fn remove(&mut self, port: u16) {
        if let Some(mapping) = self.by_port.remove(&port) {
            self.by_key.remove(&mapping.key);
        }
    }

    /// A port not held by a live mapping (an expired holder is evicted).
    fn allocate_port(&mut self, now: Time, rng: &mut SimRng) -> Option<u16> {
        let count = 65536 - u64::from(self.first_port);
        for _ in 0..RANDOM_PORT_TRIES {
            // `below(count)` < 65536 - first_port, so the sum fits in u16.
            let port = self.first_port + rng.below(count) as u16;
            if self.claim(port, now) {
                return Some(port);
            }
        }
        (self.first_port..=u16::MAX).find(|&port| self.claim(port, now))
    }

    /// True if `port` is free at `now`, evicting an expired mapping that holds it.
    fn claim(&mut self, port: u16, now: Time) -> bool {
        match self.by_port.get(&port) {
            None => true,
            Some(m) if !self.is_live(m.last_outbound, now) => {
                self.remove(port);
                true
            }
            Some(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const PRIVATE: &str = "192.0.2.10:5000";
    const SERVER: &str = "198.51.100.1:9993";
    const OTHER: &str = "198.51.100.2:9993";

    fn nat(kind: NatKind) -> (Nat, SimRng) {
        (
            Nat::new(kind, "203.0.113.1".parse().unwrap()),
            SimRng::new(3),
        )
    }

    #[test]
    fn full_cone_admits_anyone_after_one_outbound() {
        let (mut n, mut rng) = nat(NatKind::EndpointIndependent);
        let t = Time::ZERO;
        let public = n.outbound(t, sa(PRIVATE), sa(SERVER), &mut rng).unwrap();
        assert_eq!(public.ip(), n.public_ip());
        assert!(public.port() >= FIRST_PORT);
        assert_eq!(n.inbound(t, public.port(), sa(OTHER)), Ok(sa(PRIVATE)));
        let again = n.outbound(t, sa(PRIVATE), sa(OTHER), &mut rng).unwrap();
        assert_eq!(again, public, "mapping must not depend on the destination");
        assert_eq!(
            n.inbound(t, public.port().wrapping_add(1), sa(OTHER)),
            Err(Refusal::NoMapping)
        );
    }

    #[test]
    fn port_restricted_admits_only_contacted_sockets() {
        let (mut n, mut rng) = nat(NatKind::PortRestricted);
        let t = Time::ZERO;
        let public = n.outbound(t, sa(PRIVATE), sa(SERVER), &mut rng).unwrap();
        assert_eq!(n.inbound(t, public.port(), sa(SERVER)), Ok(sa(PRIVATE)));
        assert_eq!(
            n.inbound(t, public.port(), sa("198.51.100.1:9994")),
            Err(Refusal::Filtered),
            "same IP, other port"
        );
        assert_eq!(
            n.inbound(t, public.port(), sa(OTHER)),
            Err(Refusal::Filtered)
        );
        assert_eq!(
            n.outbound(t, sa(PRIVATE), sa(OTHER), &mut rng),
            Some(public)
        );
        assert_eq!(n.inbound(t, public.port(), sa(OTHER)), Ok(sa(PRIVATE)));
    }

    #[test]
    fn symmetric_maps_per_destination() {
        let (mut n, mut rng) = nat(NatKind::Symmetric);
        let t = Time::ZERO;
        let p1 = n.outbound(t, sa(PRIVATE), sa(SERVER), &mut rng).unwrap();
        let p2 = n.outbound(t, sa(PRIVATE), sa(OTHER), &mut rng).unwrap();
        assert_ne!(p1.port(), p2.port());
        assert_eq!(n.outbound(t, sa(PRIVATE), sa(SERVER), &mut rng), Some(p1));
        assert_eq!(n.inbound(t, p1.port(), sa(SERVER)), Ok(sa(PRIVATE)));
        assert_eq!(n.inbound(t, p1.port(), sa(OTHER)), Err(Refusal::Filtered));
        assert_eq!(n.inbound(t, p2.port(), sa(OTHER)), Ok(sa(PRIVATE)));
    }

    #[test]
    fn mappings_expire_after_idle_timeout_and_outbound_refreshes() {
        let (mut n, mut rng) = nat(NatKind::PortRestricted);
        n.set_timeout(Duration::from_secs(10));
        let t0 = Time::ZERO;
        let p = n.outbound(t0, sa(PRIVATE), sa(SERVER), &mut rng).unwrap();
        let almost = t0 + Duration::from_secs(10) - Duration::from_micros(1);
        assert!(n.inbound(almost, p.port(), sa(SERVER)).is_ok());
        // Refresh at 9 s: live until 19 s.
        let t9 = t0 + Duration::from_secs(9);
        assert_eq!(n.outbound(t9, sa(PRIVATE), sa(SERVER), &mut rng), Some(p));
        assert!(
            n.inbound(t0 + Duration::from_secs(18), p.port(), sa(SERVER))
                .is_ok()
        );
        let t19 = t0 + Duration::from_secs(19);
        assert_eq!(
            n.inbound(t19, p.port(), sa(SERVER)),
            Err(Refusal::NoMapping)
        );
        assert_eq!(n.live_mappings(t19), 0);
        let fresh = n.outbound(t19, sa(PRIVATE), sa(SERVER), &mut rng).unwrap();
        assert_ne!(fresh.port(), p.port(), "seed 3 draws a different port");
        assert_eq!(n.live_mappings(t19), 1);
    }

    #[test]
    fn permits_expire_per_remote() {
        let (mut n, mut rng) = nat(NatKind::PortRestricted);
        n.set_timeout(Duration::from_secs(10));
        let p = n
            .outbound(Time::ZERO, sa(PRIVATE), sa(SERVER), &mut rng)
            .unwrap();
        // Traffic to OTHER keeps the mapping alive but not the permit for SERVER.
        let t8 = Time::ZERO + Duration::from_secs(8);
        n.outbound(t8, sa(PRIVATE), sa(OTHER), &mut rng).unwrap();
        let t12 = Time::ZERO + Duration::from_secs(12);
        assert_eq!(n.inbound(t12, p.port(), sa(SERVER)), Err(Refusal::Filtered));
        assert_eq!(n.inbound(t12, p.port(), sa(OTHER)), Ok(sa(PRIVATE)));
    }

    #[test]
    fn reset_and_renumber_forget_mappings() {
        let (mut n, mut rng) = nat(NatKind::EndpointIndependent);
        let p = n
            .outbound(Time::ZERO, sa(PRIVATE), sa(SERVER), &mut rng)
            .unwrap();
        n.reset();
        assert_eq!(
            n.inbound(Time::ZERO, p.port(), sa(SERVER)),
            Err(Refusal::NoMapping)
        );
        n.set_public_ip("203.0.113.9".parse().unwrap());
        let q = n
            .outbound(Time::ZERO, sa(PRIVATE), sa(SERVER), &mut rng)
            .unwrap();
        assert_eq!(q.ip(), "203.0.113.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn ports_run_out_cleanly() {
        let (mut n, mut rng) = nat(NatKind::Symmetric);
        n.first_port = 65000;
        let t = Time::ZERO;
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        let mut ports = std::collections::HashSet::new();
        for i in 0..536 {
            let public = n.outbound(t, sa(PRIVATE), SocketAddr::new(ip, i + 1), &mut rng);
            assert!(
                ports.insert(public.unwrap().port()),
                "port handed out twice"
            );
        }
        assert_eq!(n.outbound(t, sa(PRIVATE), sa(OTHER), &mut rng), None);
        // Once they expire, ports are reused.
        let later = t + DEFAULT_NAT_TIMEOUT;
        assert!(
            n.outbound(later, sa(PRIVATE), sa(OTHER), &mut rng)
                .is_some()
        );
    }
}
