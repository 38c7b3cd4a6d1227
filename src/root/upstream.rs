//! A moon root's link to its planet: it handshakes with each planet root and says HELLO
//! every [`UPSTREAM_HELLO`], like a node does, so the planet's roots know its identity
//! and endpoint. A node that knows only a moon root's address (`skylan orbit <id>
//! <seed>`) then finds it through the planet (WHOIS, relay, RENDEZVOUS), and a packet
//! for a node this root has never heard of is handed up to a planet root
//! ([`Root::forward_upstream`]) instead of being dropped, so nodes that relay through a
//! moon still reach nodes that orbit no moon.
//!
//! A root listed by the planet has no upstream: it is one of the planet's roots.

use std::time::Duration;

use super::{Known, RELAY_HOP_LIMIT, Root};
use crate::crypto::tunnel::REKEY_TIMEOUT;
use crate::types::{Endpoint, NodeAddress, Time};
use crate::wire::{Hello, Message, PROTOCOL_VERSION, SOFTWARE_VERSION};
use crate::world::World;

/// A moon root says HELLO to each planet root this often.
pub const UPSTREAM_HELLO: Duration = Duration::from_secs(5);

/// A planet root as a moon root sees it.
pub(super) struct Upstream {
    pub(super) address: NodeAddress,
    /// The planet's endpoints for it; tried in turn while it does not answer.
    endpoints: Vec<Endpoint>,
    next_endpoint: usize,
    last_hello: Option<Time>,
    last_handshake: Option<Time>,
    /// Last authenticated packet from it.
    pub(super) last_rx: Option<Time>,
}

impl Upstream {
    /// The planet's roots, unless `me` is one of them.
    pub(super) fn of_planet(planet: Option<&World>, me: NodeAddress) -> Vec<Upstream> {
        let Some(planet) = planet else {
            return Vec::new();
        };
        if planet.roots.iter().any(|r| r.identity.address() == me) {
            return Vec::new();
        }
        planet
            .roots
            .iter()
            .map(|r| Upstream {
                address: r.identity.address(),
                endpoints: r.endpoints.clone(),
                next_endpoint: 0,
                last_hello: None,
                last_handshake: None,
                last_rx: None,
            })
            .collect()
    }

    /// Where to send to it now: the endpoint it last answered from, else the next
    /// configured one in turn.
    fn endpoint(&self, known: Option<Endpoint>) -> Option<Endpoint> {
        known
            .filter(|_| self.last_rx.is_some())
            .or_else(|| self.endpoints.get(self.next_endpoint).copied())
    }

    /// Alive while it answered within three HELLO intervals.
    fn alive(&self, now: Time) -> bool {
        self.last_rx
            .is_some_and(|t| now.since(t) < 3 * UPSTREAM_HELLO)
    }
}

impl Root {
    /// Handshakes with or says HELLO to each planet root when due.
    pub(super) fn greet_upstream(&mut self, now: Time) {
        for i in 0..self.upstream.len() {
            let u = &self.upstream[i];
            let address = u.address;
            let known = self.nodes.get(&address).and_then(Known::endpoint);
            let Some(to) = u.endpoint(known) else {
                continue;
            };
            let ready = self
                .table
                .tunnel(address)
                .is_some_and(|t| t.can_seal(now) && !t.wants_handshake(now));
            if ready {
                if u.last_hello.is_some_and(|t| now.since(t) < UPSTREAM_HELLO) {
                    continue;
                }
                self.upstream[i].last_hello = Some(now);
                self.hello_upstream(now, address, to);
                continue;
            }
            if u.last_handshake
                .is_some_and(|t| now.since(t) < REKEY_TIMEOUT)
            {
                continue;
            }
            let u = &mut self.upstream[i];
            u.last_handshake = Some(now);
            if u.last_rx.is_none() && !u.endpoints.is_empty() {
                u.next_endpoint = (u.next_endpoint + 1) % u.endpoints.len();
            }
            if let Ok(packet) = self.table.handshake_packet(now, address) {
                self.send(to, packet);
            }
        }
    }

    /// Our handshake with a planet root completed: say HELLO at once.
    pub(super) fn upstream_ready(&mut self, now: Time, peer: NodeAddress, from: Endpoint) {
        if let Some(u) = self.upstream.iter_mut().find(|u| u.address == peer) {
            u.last_hello = Some(now);
            self.hello_upstream(now, peer, from);
        }
    }

    fn hello_upstream(&mut self, now: Time, peer: NodeAddress, to: Endpoint) {
        let hello = Message::Hello(Hello {
            proto_version: PROTOCOL_VERSION,
            version: SOFTWARE_VERSION,
            timestamp: now,
            world_id: self.worlds.first().map_or(0, |w| w.id),
            world_timestamp: self.worlds.first().map_or(0, |w| w.timestamp),
        });
        self.seal_and_send(now, peer, to, &hello);
    }

    /// Notes an authenticated packet from `peer`; true when it is a planet root of ours
    /// (its answers need no reply).
    pub(super) fn heard_upstream(&mut self, now: Time, peer: NodeAddress) -> bool {
        match self.upstream.iter_mut().find(|u| u.address == peer) {
            Some(u) => {
                u.last_rx = Some(now);
                true
            }
            None => false,
        }
    }

    /// True when `address` is one of our planet roots (never expired).
    pub(super) fn is_upstream(&self, address: NodeAddress) -> bool {
        self.upstream.iter().any(|u| u.address == address)
    }

    /// Hands a packet for a node we do not know to an alive planet root, which may know
    /// it; returns false when there is none. `hops` counts our relay already: only
    /// packets that came straight from their source go up, so two roots never pass a
    /// packet back and forth.
    pub(super) fn forward_upstream(&mut self, now: Time, packet: Vec<u8>, hops: u8) -> bool {
        if hops > 1 || hops >= RELAY_HOP_LIMIT {
            return false;
        }
        let Some(to) = self
            .upstream
            .iter()
            .filter(|u| u.alive(now))
            .find_map(|u| self.nodes.get(&u.address).and_then(Known::endpoint))
        else {
            return false;
        };
        self.stats.forwarded_upstream += 1;
        self.send(to, packet);
        true
    }
}
