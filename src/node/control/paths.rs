//! The control core's direct paths to leaves: candidates from a root's RENDEZVOUS and
//! from the peer itself (PushDirectPaths, its LAN endpoints), probed until an
//! authenticated answer confirms one (the anti-spoofing contract is in
//! [`crate::node::peer`]).
//!
//! # Local endpoints and pushes (ZeroTier's PUSH_DIRECT_PATHS)
//! The driver tells the node its own endpoints ([`Control::set_local_endpoints`]: each
//! interface address with the node's UDP port). The node tells them to each *trusted*
//! leaf — one with a usable session that is a member of a network that is OK here (on
//! its list, or its credential accepted), or that we exchanged user traffic with within
//! `ACTIVE_FOR` (frames either way, or our pings; ZeroTier's "trust established") — over
//! their session:
//! - when the session becomes usable (the first tick it is, and after each handshake
//!   we complete while the pair is relayed);
//! - while the pair is relayed, again after [`PUSH_FIRST`], then twice as long each
//!   time up to [`PUSH_MAX`] (5 s, 10 s, 20 s ... 5 min); a direct pair gets no
//!   pushes, and its backoff starts over;
//! - at once when the local endpoints change.
//!
//! # Receiving a push
//! Accepted only inside an authenticated Data packet from a trusted leaf (as above);
//! from anyone else (a root, a stranger that merely handshaked, a node that only pings
//! us) it is dropped and counted (`drop_push_not_peer`), so nobody can make us send
//! probes to addresses of their choosing, nor learn our LAN addresses by asking. At most
//! [`PUSH_RX_BURST`] pushes per [`PUSH_RX_WINDOW`] per peer; the excess is dropped and
//! counted (`drop_push_rate`). Of each push only endpoints that pass
//! [`usable_candidate`] become candidates (at most [`PUSH_ACCEPTED`]): unicast, not
//! loopback, unspecified, multicast, broadcast, link-local or reserved, port not 0, and
//! not one of our own addresses. A candidate is probed and carries traffic only once
//! an authenticated packet arrives on it.
//!
//! # Probing and retrying
//! An unconfirmed path is probed with an authenticated HELLO at once when it is
//! (re)nominated, then [`PROBE_BURST`] times every `PROBE_INTERVAL`, then twice as far
//! apart each time up to [`PROBE_BACKOFF_MAX`]. While the pair is relayed over a usable
//! session, its unconfirmed candidates are kept (not forgotten after
//! `CANDIDATE_EXPIRE`) and probed on that schedule for the life of the session, so a
//! relayed pair keeps trying direct without flooding; roots renominate the external
//! endpoints with each RENDEZVOUS while relayed traffic flows.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use super::Control;
use crate::node::PROBE_INTERVAL;
use crate::node::network::NetworkStatus;
use crate::node::peer::{self, Peer, Role};
use crate::types::{Endpoint, NodeAddress, Time};
use crate::wire::{MAX_PUSHED_PATHS, Message};

/// The first push to a relayed peer is repeated after this long, then twice as long
/// each time.
pub const PUSH_FIRST: Duration = Duration::from_secs(5);
/// The longest wait between two pushes to a relayed peer.
pub const PUSH_MAX: Duration = Duration::from_secs(300);
/// At most [`PUSH_RX_BURST`] pushes from one peer are taken per this long.
pub const PUSH_RX_WINDOW: Duration = Duration::from_secs(10);
/// See [`PUSH_RX_WINDOW`].
pub const PUSH_RX_BURST: u32 = 3;
/// At most this many endpoints of one push become candidates.
pub const PUSH_ACCEPTED: usize = 4;
/// Probes of an unconfirmed path sent `PROBE_INTERVAL` apart before the backoff.
pub const PROBE_BURST: u32 = 4;
/// The longest wait between two probes of an unconfirmed path.
pub const PROBE_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// What the control core knows for LAN paths: our own endpoints and, per peer, the
/// push schedule, the receive budget and the probe counts.
#[derive(Debug, Default)]
pub(super) struct Lan {
    /// Our endpoints, as the driver last reported them (filtered, sorted, bounded).
    local: Vec<Endpoint>,
    /// Bumped whenever `local` changes, so every peer hears the new list.
    generation: u64,
    peers: HashMap<NodeAddress, PeerLan>,
}

#[derive(Debug, Default)]
struct PeerLan {
    /// Our pushes to the peer; `None` until the first one of this session.
    push: Option<PushSchedule>,
    /// Receive budget: start of the current window and pushes taken in it.
    rx_window: Option<(Time, u32)>,
    /// Probes sent on each unconfirmed path since it was nominated or last alive.
    probes: HashMap<Endpoint, u32>,
}

#[derive(Debug)]
struct PushSchedule {
    /// The `Lan::generation` last pushed.
    generation: u64,
    /// When to push again while the pair is relayed.
    next: Time,
    /// The wait after the next push.
    interval: Duration,
}

impl PeerLan {
    /// Takes one push from the receive budget; false when it is spent.
    fn take_push(&mut self, now: Time) -> bool {
        match &mut self.rx_window {
            Some((start, n)) if now.since(*start) < PUSH_RX_WINDOW => {
                *n += 1;
                *n <= PUSH_RX_BURST
            }
            window => {
                *window = Some((now, 1));
                true
            }
        }
    }
}

/// True when `endpoint` may become a candidate path: a unicast address that is not
/// loopback, unspecified, multicast, broadcast, link-local or reserved, with a port,
/// and whose address is none of `own` (ours: probing it would reach ourselves or a
/// neighbour that merely shares a private address with the peer).
pub fn usable_candidate(endpoint: &Endpoint, own: &[Endpoint]) -> bool {
    plausible(endpoint) && !own.iter().any(|o| o.0.ip() == endpoint.0.ip())
}

/// The address checks of [`usable_candidate`], without the comparison with our own.
fn plausible(endpoint: &Endpoint) -> bool {
    if endpoint.0.port() == 0 {
        return false;
    }
    match endpoint.0.ip() {
        IpAddr::V4(a) => {
            let first = a.octets()[0];
            // 0.0.0.0/8 "this network", 240.0.0.0/4 reserved and the broadcast address.
            !(first == 0
                || first >= 240
                || a.is_loopback()
                || a.is_multicast()
                || a.is_link_local())
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            // The first 80 bits zero: unspecified, loopback, IPv4-compatible and
            // IPv4-mapped addresses (which would dodge the IPv4 checks).
            !(s[..5].iter().all(|x| *x == 0) || a.is_multicast() || (s[0] & 0xffc0) == 0xfe80)
        }
    }
}

/// The wait after the `probes`-th probe of an unconfirmed path.
fn probe_gap(probes: u32) -> Duration {
    if probes < PROBE_BURST {
        return PROBE_INTERVAL;
    }
    let doublings = (probes - PROBE_BURST + 1).min(16);
    (PROBE_INTERVAL * 2u32.pow(doublings)).min(PROBE_BACKOFF_MAX)
}

impl Control {
    /// The driver's view of our own endpoints (interface addresses with our UDP port).
    /// Implausible ones are left out; when the list changed, every peer we push to
    /// hears it now.
    pub fn set_local_endpoints(&mut self, now: Time, endpoints: Vec<Endpoint>) {
        let mut local: Vec<Endpoint> = endpoints.into_iter().filter(plausible).collect();
        local.sort_by_key(|e| e.0);
        local.dedup();
        local.truncate(MAX_PUSHED_PATHS);
        if local == self.lan.local {
            return;
        }
        self.lan.local = local;
        self.lan.generation += 1;
        let peers: Vec<NodeAddress> = self.peers.keys().copied().collect();
        for peer in peers {
            self.push_paths(now, peer);
        }
    }

    /// Our endpoints as last set with [`Control::set_local_endpoints`].
    pub fn local_endpoints(&self) -> &[Endpoint] {
        &self.lan.local
    }

    pub(super) fn on_rendezvous(&mut self, now: Time, other: NodeAddress, endpoints: &[Endpoint]) {
        // Only for peers we are talking to: a RENDEZVOUS about a stranger (a root
        // introducing someone after spoofed traffic) must not create state.
        if other == self.address()
            || self.roots.contains(&other)
            || self.table.tunnel(other).is_none()
        {
            return;
        }
        let p = self
            .peers
            .entry(other)
            .or_insert_with(|| Peer::new(Role::Leaf));
        for ep in endpoints.iter().take(peer::MAX_PATHS) {
            p.add_candidate(now, *ep);
        }
        self.probe_candidates(now, other);
    }

    /// An authenticated PushDirectPaths from `peer` (see the module documentation).
    pub(super) fn on_push_direct_paths(
        &mut self,
        now: Time,
        peer: NodeAddress,
        endpoints: &[Endpoint],
    ) {
        if !self.trusted(now, peer) {
            self.stats.drop_push_not_peer += 1;
            return;
        }
        if !self.lan.peers.entry(peer).or_default().take_push(now) {
            self.stats.drop_push_rate += 1;
            return;
        }
        let own = &self.lan.local;
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        for ep in endpoints
            .iter()
            .filter(|e| usable_candidate(e, own))
            .take(PUSH_ACCEPTED)
        {
            p.add_candidate(now, *ep);
        }
        self.probe_candidates(now, peer);
    }

    /// A handshake we started completed: a relayed pair hears our endpoints again at
    /// once (the peer may have restarted and forgotten them).
    pub(super) fn paths_on_session_ready(&mut self, now: Time, peer: NodeAddress) {
        if self.relayed(now, peer)
            && let Some(state) = self.lan.peers.get_mut(&peer)
        {
            state.push = None;
        }
        self.push_paths(now, peer);
    }

    /// The tick's path work for a leaf: probes and pushes that are due.
    pub(super) fn maintain_paths(&mut self, now: Time, peer: NodeAddress) {
        self.probe_candidates(now, peer);
        self.push_paths(now, peer);
    }

    /// The unconfirmed candidates of `peer` to keep past `CANDIDATE_EXPIRE`: all of
    /// them while the pair is relayed over a usable session, none otherwise.
    pub(super) fn retained_candidates(&self, now: Time, peer: NodeAddress) -> Vec<Endpoint> {
        let usable = self.table.tunnel(peer).is_some_and(|t| t.can_seal(now));
        match self.peers.get(&peer) {
            Some(p) if usable && p.best_path(now).is_none() => p
                .paths
                .iter()
                .filter(|x| x.last_rx.is_none())
                .map(|x| x.endpoint)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Forgets the LAN state of peers that are gone.
    pub(super) fn forget_gone_paths(&mut self) {
        let peers = &self.peers;
        self.lan.peers.retain(|a, _| peers.contains_key(a));
    }

    /// Sends an authenticated probe straight to each unconfirmed candidate path of
    /// `peer` that is due (see the module documentation for the schedule). Whichever
    /// side's probe gets through first opens the NAT mappings for the other's answer.
    /// Needs a session: until there is one, candidates wait and are probed from the
    /// next tick on.
    pub(super) fn probe_candidates(&mut self, now: Time, peer: NodeAddress) {
        if !self.table.tunnel(peer).is_some_and(|t| t.can_seal(now)) {
            return;
        }
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let relayed = p.best_path(now).is_none();
        let state = self.lan.peers.entry(peer).or_default();
        // A path that answered (or is gone) starts its backoff over.
        state
            .probes
            .retain(|ep, _| p.paths.iter().any(|x| x.endpoint == *ep && !x.alive(now)));
        let due: Vec<Endpoint> = p
            .paths
            .iter()
            .filter(|x| x.wants_probe(now) || (relayed && x.last_rx.is_none() && !x.alive(now)))
            .filter(|x| self.ipv6 || x.endpoint.0.is_ipv4())
            .filter(|x| {
                let Some(sent) = x.last_tx else {
                    return true;
                };
                let gap = if x.nominated > sent {
                    PROBE_INTERVAL
                } else {
                    probe_gap(state.probes.get(&x.endpoint).copied().unwrap_or(0))
                };
                now.since(sent) >= gap
            })
            .map(|x| x.endpoint)
            .collect();
        for ep in &due {
            *state.probes.entry(*ep).or_insert(0) += 1;
        }
        for ep in due {
            self.hello_via(now, peer, Some(ep));
        }
    }

    /// Pushes our endpoints to `peer` when due (see the module documentation).
    fn push_paths(&mut self, now: Time, peer: NodeAddress) {
        if self.lan.local.is_empty() {
            return;
        }
        if !self.trusted(now, peer) {
            // The next usable session starts with a push again.
            if let Some(state) = self.lan.peers.get_mut(&peer) {
                state.push = None;
            }
            return;
        }
        let relayed = self.relayed(now, peer);
        let generation = self.lan.generation;
        let state = self.lan.peers.entry(peer).or_default();
        let send = match &mut state.push {
            None => {
                state.push = Some(PushSchedule {
                    generation,
                    next: now + PUSH_FIRST,
                    interval: PUSH_FIRST,
                });
                true
            }
            Some(s) if s.generation != generation => {
                s.generation = generation;
                s.next = now + s.interval;
                true
            }
            Some(s) if !relayed => {
                s.interval = PUSH_FIRST;
                s.next = now + PUSH_FIRST;
                false
            }
            Some(s) if now >= s.next => {
                s.interval = (s.interval * 2).min(PUSH_MAX);
                s.next = now + s.interval;
                true
            }
            Some(_) => false,
        };
        if send {
            let msg = Message::PushDirectPaths {
                endpoints: self.lan.local.clone(),
            };
            self.send_message(now, peer, &msg);
        }
    }

    /// True when traffic to `peer` goes through a relay (no alive direct path).
    fn relayed(&self, now: Time, peer: NodeAddress) -> bool {
        self.peers
            .get(&peer)
            .is_some_and(|p| p.best_path(now).is_none())
    }

    /// True for a leaf with a usable session that is a member of a network that is OK
    /// here (listed, or its credential accepted), or that we exchanged user traffic with
    /// within `ACTIVE_FOR` (frames either way, or our pings). Only such a peer hears our endpoints, and only its pushes are
    /// taken.
    fn trusted(&self, now: Time, peer: NodeAddress) -> bool {
        if peer == self.address()
            || self.roots.contains(&peer)
            || !self.table.tunnel(peer).is_some_and(|t| t.can_seal(now))
        {
            return false;
        }
        let Some(p) = self.peers.get(&peer).filter(|p| p.role == Role::Leaf) else {
            return false;
        };
        p.active(now)
            || self.networks.values().any(|j| {
                j.status == NetworkStatus::Ok
                    && (j.settings.members.iter().any(|m| m.address == peer)
                        || j.book.as_ref().is_some_and(|b| b.knows(peer)))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> Endpoint {
        s.parse().unwrap()
    }

    #[test]
    fn candidates_must_be_plausible_unicast_and_not_ours() {
        let own = [ep("192.0.2.10/9993"), ep("[2001:db8::10]:9993")];
        for good in [
            "192.0.2.20/9993",
            "198.51.100.7/1",
            "203.0.113.9/65535",
            "[2001:db8::20]:9993",
            "[fd00::1]:9993",
        ] {
            assert!(usable_candidate(&ep(good), &own), "{good} refused");
        }
        for bad in [
            "192.0.2.20/0",            // no port
            "0.0.0.0/9993",            // unspecified
            "0.1.2.3/9993",            // "this network"
            "127.0.0.1/9993",          // loopback
            "127.8.9.10/9993",         // loopback
            "224.0.0.1/9993",          // multicast
            "239.255.255.250/1900",    // multicast
            "255.255.255.255/9993",    // broadcast
            "240.0.0.1/9993",          // reserved
            "169.254.1.2/9993",        // link-local
            "192.0.2.10/9994",         // our own address, another port
            "[::]:9993",               // unspecified
            "[::1]:9993",              // loopback
            "[ff02::1]:9993",          // multicast
            "[fe80::1]:9993",          // link-local
            "[::ffff:127.0.0.1]:9993", // IPv4-mapped
            "[::7f00:1]:9993",         // IPv4-compatible
            "[2001:db8::10]:1",        // ours
        ] {
            assert!(!usable_candidate(&ep(bad), &own), "{bad} accepted");
        }
    }

    #[test]
    fn probes_back_off_to_a_cap() {
        let gaps: Vec<u64> = (0..12).map(|n| probe_gap(n).as_secs()).collect();
        assert_eq!(gaps, [1, 1, 1, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(probe_gap(u32::MAX), PROBE_BACKOFF_MAX);
    }

    #[test]
    fn the_receive_budget_refills_per_window() {
        let mut s = PeerLan::default();
        let t = Time::from_millis(1000);
        for _ in 0..PUSH_RX_BURST {
            assert!(s.take_push(t));
        }
        assert!(!s.take_push(t + Duration::from_secs(9)));
        assert!(s.take_push(t + PUSH_RX_WINDOW));
    }
}
