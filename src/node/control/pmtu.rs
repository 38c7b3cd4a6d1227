//! Path MTU discovery without ICMP: the largest datagram that crosses the way we send
//! to each peer, found with padded, authenticated probes (PATH_PROBE, answered by OK).
//!
//! # Contract
//! - Every datagram size is a UDP payload size. Until a size is confirmed, a route
//!   carries datagrams of at most [`PATH_MTU_FLOOR`] bytes (1,280, the smallest MTU
//!   IPv6 allows, minus IPv6 and UDP headers), which cross any IPv6 path and any IPv4
//!   path of at least 1,280 bytes. Larger packets are cut into fragments that fit.
//! - A route is one way to a peer: its direct endpoint, or the endpoint of the root
//!   that relays for it (the probe then measures both legs, us → root → peer). Each is
//!   probed on its own, the first time it carries traffic.
//! - A search sends, at once, one probe of each size of [`PROBE_LADDER`] above what is
//!   confirmed, up to the ceiling (the node's `phys_mtu`, 1,432 by default), and repeats
//!   the unanswered ones every [`PROBE_WAIT`], at most [`PROBE_ROUNDS`] times. The
//!   largest answered size is in force as soon as its answer arrives (one round trip
//!   after the route first carries traffic, when nothing is in the way).
//! - While the route carries traffic, the confirmed size is probed again every
//!   [`REVALIDATE`]; when [`PROBE_ROUNDS`] of those probes in a row go unanswered (the
//!   path shrank and dropped the ICMP that would have said so: a PMTU black hole), the
//!   route falls back to the floor and searches again. A route settled below the
//!   ceiling searches upwards again every [`RAISE_AGAIN`].
//! - Probes are sealed in the peer's session, so nobody else can answer one or make a
//!   route's MTU grow; a forged or stale answer matches no pending token and is ignored.
//! - State for a route unused for [`FORGET_AFTER`] is forgotten.
//!
//! Sockets send with the don't-fragment bit and ignore the kernel's own path MTU
//! (`IP_PMTUDISC_PROBE`, see `io::udp`), so what a probe finds is what the path
//! carries, and routers never fragment skylan's datagrams.

use std::collections::HashMap;
use std::time::Duration;

use super::Control;
use crate::types::{Endpoint, NodeAddress, Time};
use crate::wire::{self, Message, PATH_MTU_FLOOR};

/// Sizes probed below the ceiling: the UDP payload under common underlay MTUs over
/// IPv4 (1,392 for WireGuard's 1,420, 1,372 for 1,400, 1,252 for 1,280) and a few steps
/// between.
pub const PROBE_LADDER: [usize; 6] = [1400, 1392, 1372, 1340, 1300, 1252];
/// How long a probe is waited for before it is sent again.
pub const PROBE_WAIT: Duration = Duration::from_secs(1);
/// How many times a size is probed before it counts as too big.
pub const PROBE_ROUNDS: u8 = 3;
/// How often the size in force is probed again while a route carries traffic.
pub const REVALIDATE: Duration = Duration::from_secs(5);
/// How often a route settled below the ceiling searches upwards again.
pub const RAISE_AGAIN: Duration = Duration::from_secs(600);
/// State of a route that carried no traffic this long is dropped.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Bytes of a sealed PATH_PROBE besides its padding: the Data prefix and tag, the verb
/// and the token.
pub const PROBE_OVERHEAD: usize = wire::DATA_PREFIX_LEN + wire::TAG_LEN + 1 + 4;

/// The path MTU of every route in use, and the probes waiting for an answer.
#[derive(Debug)]
pub(crate) struct PathMtus {
    ceiling: usize,
    floor: usize,
    routes: HashMap<(NodeAddress, Endpoint), RouteMtu>,
    pending: HashMap<u32, Pending>,
    next_token: u32,
}

/// A probe on its way.
#[derive(Debug, Clone, Copy)]
struct Pending {
    peer: NodeAddress,
    to: Endpoint,
    size: usize,
    sent: Time,
}

/// What is known about one route.
#[derive(Debug)]
struct RouteMtu {
    /// The largest size answered (or the floor).
    confirmed: usize,
    /// The search under way, if any.
    search: Option<Search>,
    /// When the last search ended.
    searched: Time,
    /// When `confirmed` was last answered.
    checked: Time,
    /// Unanswered probes of `confirmed` since it was last answered.
    missed: u8,
    /// When the last probe of `confirmed` was sent, while one is waited for.
    check_sent: Option<Time>,
    /// When the route last asked for probes (it carries traffic).
    used: Time,
}

#[derive(Debug, Clone, Copy)]
struct Search {
    rounds: u8,
    sent: Time,
}

impl PathMtus {
    /// Routes of a node whose largest datagram is `ceiling`.
    pub(crate) fn new(ceiling: usize) -> Self {
        PathMtus {
            ceiling,
            floor: ceiling.min(PATH_MTU_FLOOR),
            routes: HashMap::new(),
            pending: HashMap::new(),
            next_token: 1,
        }
    }

    /// The size every route may use without probing.
    pub(crate) fn floor(&self) -> usize {
        self.floor
    }

    /// The largest datagram to send to `peer` through `to` now.
    pub(crate) fn mtu(&self, peer: NodeAddress, to: Endpoint) -> usize {
        self.routes
            .get(&(peer, to))
            .map_or(self.floor, |r| r.confirmed)
    }

    /// The probes to send now on the route `to` of `peer`, which carries traffic: a
    /// token and the datagram size for each.
    pub(crate) fn probes(
        &mut self,
        now: Time,
        peer: NodeAddress,
        to: Endpoint,
    ) -> Vec<(u32, usize)> {
        if self.ceiling <= self.floor {
            return Vec::new();
        }
        let route = self.routes.entry((peer, to)).or_insert_with(|| RouteMtu {
            confirmed: self.floor,
            search: Some(Search {
                rounds: 0,
                sent: now,
            }),
            searched: now,
            checked: now,
            missed: 0,
            check_sent: None,
            used: now,
        });
        route.used = now;
        let sizes = route.due(now, self.floor, self.ceiling);
        sizes
            .into_iter()
            .map(|size| {
                let token = self.next_token;
                self.next_token = self.next_token.wrapping_add(1).max(1);
                self.pending.insert(
                    token,
                    Pending {
                        peer,
                        to,
                        size,
                        sent: now,
                    },
                );
                (token, size)
            })
            .collect()
    }

    /// `peer` answered the probe `token`; returns true when a route's MTU grew.
    pub(crate) fn on_answer(&mut self, now: Time, peer: NodeAddress, token: u32) -> bool {
        let Some(p) = self.pending.get(&token).copied() else {
            return false;
        };
        if p.peer != peer {
            return false;
        }
        self.pending.remove(&token);
        let Some(route) = self.routes.get_mut(&(p.peer, p.to)) else {
            return false;
        };
        route.answered(now, p.size, self.ceiling)
    }

    /// Drops probes nobody answered and routes nobody used.
    pub(crate) fn expire(&mut self, now: Time) {
        let wait = PROBE_WAIT * u32::from(PROBE_ROUNDS) * 2;
        self.pending.retain(|_, p| now.since(p.sent) < wait);
        self.routes.retain(|_, r| now.since(r.used) < FORGET_AFTER);
    }

    /// Forgets every route of `peer`.
    pub(crate) fn forget(&mut self, peer: NodeAddress) {
        self.routes.retain(|(p, _), _| *p != peer);
        self.pending.retain(|_, p| p.peer != peer);
    }
}

impl Control {
    /// Sends the path MTU probes due on `peer`'s current route (a leaf we carry
    /// traffic for, with a session).
    pub(super) fn probe_path_mtu(&mut self, now: Time, peer: NodeAddress) {
        if self.roots.contains(&peer) || !self.table.tunnel(peer).is_some_and(|t| t.can_seal(now)) {
            return;
        }
        let Some((via, to)) = self.route_to(now, peer) else {
            return;
        };
        for (token, size) in self.pmtu.probes(now, peer, to) {
            let probe = Message::PathProbe {
                token,
                padding: size.saturating_sub(PROBE_OVERHEAD),
            };
            let mut out = Vec::with_capacity(size);
            if self.table.seal(now, peer, &probe, &mut out).is_err() {
                return;
            }
            self.push_whole(now, via, to, out);
        }
    }
}

impl RouteMtu {
    /// The sizes to probe now, moving the search and the revalidation along.
    fn due(&mut self, now: Time, floor: usize, ceiling: usize) -> Vec<usize> {
        if self.search.is_none()
            && self.confirmed < ceiling
            && now.since(self.searched) >= RAISE_AGAIN
        {
            self.search = Some(Search {
                rounds: 0,
                sent: now,
            });
        }
        if let Some(search) = &mut self.search {
            if search.rounds > 0 && now.since(search.sent) < PROBE_WAIT {
                return Vec::new();
            }
            if search.rounds >= PROBE_ROUNDS {
                self.search = None;
                self.searched = now;
                self.checked = now;
                return Vec::new();
            }
            search.rounds += 1;
            search.sent = now;
            let above = self.confirmed;
            return std::iter::once(ceiling)
                .chain(PROBE_LADDER.into_iter().filter(|&s| s < ceiling))
                .filter(|&s| s > above)
                .collect();
        }
        if self.confirmed <= floor {
            return Vec::new();
        }
        match self.check_sent {
            None if now.since(self.checked) >= REVALIDATE => {}
            Some(sent) if now.since(sent) >= PROBE_WAIT => {
                self.missed += 1;
                if self.missed >= PROBE_ROUNDS {
                    // The size in force stopped getting through: a black hole.
                    self.confirmed = floor;
                    self.missed = 0;
                    self.check_sent = None;
                    self.search = Some(Search {
                        rounds: 0,
                        sent: now,
                    });
                    return self.due(now, floor, ceiling);
                }
            }
            _ => return Vec::new(),
        }
        self.check_sent = Some(now);
        vec![self.confirmed]
    }

    /// A probe of `size` was answered; returns true when the MTU grew.
    fn answered(&mut self, now: Time, size: usize, ceiling: usize) -> bool {
        let grew = size > self.confirmed;
        if size >= self.confirmed {
            self.confirmed = size;
            self.checked = now;
            self.missed = 0;
            self.check_sent = None;
        }
        if self.confirmed >= ceiling && self.search.is_some() {
            self.search = None;
            self.searched = now;
        }
        grew
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> NodeAddress {
        "a1b2c3d4e5".parse().unwrap()
    }

    fn ep() -> Endpoint {
        "198.51.100.7/9993".parse().unwrap()
    }

    fn at(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    /// Answers every probe up to `limit` bytes (what a path of that size lets through).
    fn answer_up_to(m: &mut PathMtus, now: Time, probes: &[(u32, usize)], limit: usize) {
        for &(token, size) in probes {
            if size <= limit {
                m.on_answer(now, peer(), token);
            }
        }
    }

    #[test]
    fn a_route_starts_at_the_floor_and_takes_the_ceiling_when_it_gets_through() {
        let mut m = PathMtus::new(1432);
        assert_eq!(m.mtu(peer(), ep()), PATH_MTU_FLOOR);
        let probes = m.probes(at(0), peer(), ep());
        let sizes: Vec<usize> = probes.iter().map(|p| p.1).collect();
        assert_eq!(sizes, [1432, 1400, 1392, 1372, 1340, 1300, 1252]);
        assert!(
            m.probes(at(500), peer(), ep()).is_empty(),
            "waits for answers"
        );
        answer_up_to(&mut m, at(20), &probes, 1500);
        assert_eq!(m.mtu(peer(), ep()), 1432);
        // Settled: nothing until revalidation.
        assert!(m.probes(at(1_000), peer(), ep()).is_empty());
        let check = m.probes(at(20) + REVALIDATE, peer(), ep());
        assert_eq!(check.iter().map(|p| p.1).collect::<Vec<_>>(), [1432]);
    }

    #[test]
    fn a_black_hole_settles_on_the_largest_size_that_gets_through() {
        let mut m = PathMtus::new(1432);
        let mut t = 0;
        for round in 0..PROBE_ROUNDS {
            let probes = m.probes(at(t), peer(), ep());
            assert!(!probes.is_empty());
            if round > 0 {
                // Only sizes above the confirmed one are probed again.
                assert!(probes.iter().all(|p| p.1 > 1252), "{probes:?}");
            }
            answer_up_to(&mut m, at(t + 10), &probes, 1252);
            assert_eq!(m.mtu(peer(), ep()), 1252);
            t += 1_000;
        }
        assert!(m.probes(at(t), peer(), ep()).is_empty(), "search over");
        assert_eq!(m.mtu(peer(), ep()), 1252);
    }

    #[test]
    fn a_route_that_shrinks_falls_back_to_the_floor_and_searches_again() {
        let mut m = PathMtus::new(1432);
        let probes = m.probes(at(0), peer(), ep());
        answer_up_to(&mut m, at(10), &probes, 1500);
        assert_eq!(m.mtu(peer(), ep()), 1432);
        // The path now carries 1,300 bytes at most; revalidation probes go unanswered.
        let mut t = 10 + REVALIDATE.as_millis() as u64;
        for _ in 0..PROBE_ROUNDS {
            let check = m.probes(at(t), peer(), ep());
            assert_eq!(check.len(), 1, "one revalidation probe at {t}");
            t += 1_000;
        }
        let search = m.probes(at(t), peer(), ep());
        assert_eq!(m.mtu(peer(), ep()), PATH_MTU_FLOOR);
        assert!(search.len() > 1, "a new search: {search:?}");
        answer_up_to(&mut m, at(t + 10), &search, 1300);
        assert_eq!(m.mtu(peer(), ep()), 1300);
    }

    #[test]
    fn answers_from_another_peer_or_unknown_tokens_change_nothing() {
        let mut m = PathMtus::new(1432);
        let probes = m.probes(at(0), peer(), ep());
        let other: NodeAddress = "0102030405".parse().unwrap();
        assert!(!m.on_answer(at(5), other, probes[0].0));
        assert!(!m.on_answer(at(5), peer(), 999_999));
        assert_eq!(m.mtu(peer(), ep()), PATH_MTU_FLOOR);
        // The genuine answer still counts, once.
        assert!(m.on_answer(at(6), peer(), probes[0].0));
        assert!(!m.on_answer(at(7), peer(), probes[0].0));
        assert_eq!(m.mtu(peer(), ep()), 1432);
    }

    #[test]
    fn a_ceiling_at_or_below_the_floor_never_probes() {
        let mut m = PathMtus::new(1200);
        assert!(m.probes(at(0), peer(), ep()).is_empty());
        assert_eq!(m.mtu(peer(), ep()), 1200);
    }

    #[test]
    fn unused_routes_and_stale_probes_are_forgotten() {
        let mut m = PathMtus::new(1432);
        let probes = m.probes(at(0), peer(), ep());
        answer_up_to(&mut m, at(10), &probes[..1], 1500);
        m.expire(at(700_000));
        assert_eq!(m.mtu(peer(), ep()), PATH_MTU_FLOOR);
        assert!(m.pending.is_empty() && m.routes.is_empty());
    }

    #[test]
    fn probe_overhead_matches_a_sealed_probe() {
        let msg = wire::Message::PathProbe {
            token: 1,
            padding: 100,
        };
        assert_eq!(
            wire::DATA_PREFIX_LEN + msg.buffer_len() + wire::TAG_LEN,
            PROBE_OVERHEAD + 100
        );
    }
}
