//! The root core: a sans-IO state machine for `skylan root` (a planet or moon member).
//!
//! A root does four things:
//! - **HELLO**: answers with OK carrying the endpoint it saw the node's packet come
//!   from, which is how a node behind NAT learns its external endpoint;
//! - **WHOIS**: answers with the public identities of nodes that handshaked with it
//!   (and of the other roots of its world);
//! - **relay**: forwards a packet whose destination is another node it knows, after
//!   incrementing the hop count, without decrypting it (it cannot: sessions are
//!   end-to-end). Only for sources that said hello (an authenticated packet taught the
//!   root their endpoint) and only from that endpoint's IP address, each held to
//!   [`RELAY_PER_SOURCE_PER_SEC`], so the root is no free reflector toward its nodes
//!   for anyone who forges a source. Packets with [`RELAY_HOP_LIMIT`] hops are dropped;
//! - **RENDEZVOUS**: when it relays a packet that came straight from its source, it
//!   sends both ends each other's endpoint (at most once per pair per
//!   [`RENDEZVOUS_INTERVAL`]) so they can try a direct path;
//! - **worlds**: answers WORLD_REQUEST with each world it holds (its planet, the moons
//!   it serves) in a newer revision than the node named, one OK per world, so moons are
//!   fetched (`orbit`) and worlds updated in band;
//! - **multicast directory**: keeps the groups nodes announce (MULTICAST_LIKE) and
//!   answers MULTICAST_GATHER with their subscribers ([`multicast`]), which is how
//!   members find each other's addresses and group frames find their receivers
//!   without any roster.
//!
//! A moon root (one its planet does not list) also says hello to the planet's roots and
//! hands them packets for nodes it does not know ([`upstream`]). A relayed packet (one
//! hop or more) is accepted from a node that said hello from exactly that endpoint (a
//! moon root handing it up), charged to that node's relay budget.
//!
//! A node's endpoint is learned only from authenticated packets that arrived with zero
//! hops, so nobody can redirect another node's traffic by forging a source address.
//! State per node is bounded by [`MAX_NODES`] and expires after [`NODE_EXPIRE`] of silence.
//! Driving order is the node core's: input, then drain `poll_transmit`, then sleep until
//! `poll_timeout`.

pub mod multicast;
mod upstream;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

pub use upstream::UPSTREAM_HELLO;
use upstream::Upstream;

use crate::crypto::identity::{Identity, PublicIdentity};
use crate::crypto::table::{InitAnswer, LostSessionReplies, SessionTable, TableError};
use crate::crypto::tunnel::TunnelError;
use crate::types::{Endpoint, NodeAddress, Time, TokenBucket, Transmit, UnixTime};
use crate::wire::{self, Message, OkBody, Outer, PATH_MTU_FLOOR, Packet};
use crate::world::World;

/// Packets that already crossed this many relays are dropped by a root. Lower than the
/// most the header can carry ([`wire::MAX_HOPS`], 7): a packet that needs more than a
/// few relays is looping.
pub const RELAY_HOP_LIMIT: u8 = 3;
/// At most one RENDEZVOUS pair per this long for a given pair of nodes.
pub const RENDEZVOUS_INTERVAL: Duration = Duration::from_secs(10);
/// Nodes silent for this long are forgotten.
pub const NODE_EXPIRE: Duration = Duration::from_secs(600);
/// At most this many nodes are tracked.
pub const MAX_NODES: usize = 1_000_000;
/// At most this many identities in one WHOIS answer (nodes ask for one at a time).
pub const MAX_WHOIS_ANSWERS: usize = 2;
/// Packets per second a root relays for one source node (a burst of
/// [`RELAY_PER_SOURCE_BURST`]); about 560 Mbit/s of 1,400-byte packets.
pub const RELAY_PER_SOURCE_PER_SEC: u32 = 50_000;
/// See [`RELAY_PER_SOURCE_PER_SEC`]: a second's worth, so a node that answers thousands
/// of peers at once (a controller that 10,000 members join together sends each a
/// cookie, a handshake answer and a config through the roots within ~0.3 s) is not
/// cut, while a sustained flood still is.
pub const RELAY_PER_SOURCE_BURST: u32 = 50_000;
/// Housekeeping period.
pub const TICK: Duration = Duration::from_secs(5);

/// Counters of the root core.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RootStats {
    /// Datagrams received.
    pub rx_datagrams: u64,
    /// Datagrams sent (answers, relayed packets, rendezvous).
    pub tx_datagrams: u64,
    /// Packets relayed between nodes.
    pub relayed: u64,
    /// RENDEZVOUS messages sent.
    pub rendezvous: u64,
    /// Packets that did not parse.
    pub drop_malformed: u64,
    /// Relay requests for nodes we do not know.
    pub drop_unknown_dest: u64,
    /// Relay requests from sources that did not say hello, or not from their address.
    pub drop_unknown_src: u64,
    /// Relay requests over their source's rate.
    pub drop_relay_rate: u64,
    /// Relay requests over the hop limit.
    pub drop_hops: u64,
    /// Handshakes refused (bad crypto or identity).
    pub drop_handshake: u64,
    /// HandshakeInits dropped for a bad mac1 (before any public-key work).
    pub drop_handshake_mac: u64,
    /// HandshakeInits over their source address's budget while under load.
    pub drop_handshake_rate: u64,
    /// CookieReplies sent instead of answering a HandshakeInit while under load.
    pub cookie_replies: u64,
    /// HandshakeInits dropped unanswered because the cookie budget was spent.
    pub drop_cookie_rate: u64,
    /// Data packets naming no session, or whose source does not own it.
    pub drop_unknown_session: u64,
    /// Replayed or too-old packets.
    pub drop_replay: u64,
    /// Packets that failed authentication or came on expired sessions.
    pub drop_auth: u64,
    /// Messages a root does not handle.
    pub drop_unhandled: u64,
    /// Packets for unknown nodes handed up to a planet root (moon roots).
    pub forwarded_upstream: u64,
    /// Worlds sent in answer to WORLD_REQUEST.
    pub worlds_sent: u64,
    /// Multicast subscriptions refused (over a bound, or not a group).
    pub drop_subscription: u64,
    /// MULTICAST_GATHER requests answered.
    pub gathers: u64,
}

impl RootStats {
    /// Every counter with its metric name.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("rx_datagrams", self.rx_datagrams),
            ("tx_datagrams", self.tx_datagrams),
            ("relayed", self.relayed),
            ("rendezvous", self.rendezvous),
            ("drop_malformed", self.drop_malformed),
            ("drop_unknown_dest", self.drop_unknown_dest),
            ("drop_unknown_src", self.drop_unknown_src),
            ("drop_relay_rate", self.drop_relay_rate),
            ("drop_hops", self.drop_hops),
            ("drop_handshake", self.drop_handshake),
            ("drop_handshake_mac", self.drop_handshake_mac),
            ("drop_handshake_rate", self.drop_handshake_rate),
            ("cookie_replies", self.cookie_replies),
            ("drop_cookie_rate", self.drop_cookie_rate),
            ("drop_unknown_session", self.drop_unknown_session),
            ("drop_replay", self.drop_replay),
            ("drop_auth", self.drop_auth),
            ("drop_unhandled", self.drop_unhandled),
            ("forwarded_upstream", self.forwarded_upstream),
            ("worlds_sent", self.worlds_sent),
            ("drop_subscription", self.drop_subscription),
            ("gathers", self.gathers),
        ]
        .into_iter()
    }
}

/// A dual-stack node's IPv6 endpoint stays where packets for it go while the node was
/// heard over IPv6 at most this long before it was last heard over IPv4 (nodes say HELLO
/// over both families every 5 s).
pub const FAMILY_FRESH: Duration = Duration::from_secs(12);

struct Known {
    /// Last endpoint an authenticated zero-hop packet came from, per address family
    /// (IPv4, IPv6), and when.
    seen: [Option<(Endpoint, Time)>; 2],
    last_rx: Time,
    /// What the node may still have relayed.
    relay_budget: TokenBucket,
}

impl Known {
    fn new(now: Time) -> Self {
        Self {
            seen: [None, None],
            last_rx: now,
            relay_budget: TokenBucket::full(RELAY_PER_SOURCE_BURST, now),
        }
    }

    /// Notes an authenticated zero-hop packet from `from`; returns the endpoint of the
    /// same family it replaces, if it differs.
    fn learn(&mut self, now: Time, from: Endpoint) -> Option<Endpoint> {
        let old = self.seen[usize::from(from.0.is_ipv6())].replace((from, now));
        old.map(|(ep, _)| ep).filter(|ep| *ep != from)
    }

    /// Where packets for the node go: its IPv6 endpoint unless it went stale against
    /// the IPv4 one ([`FAMILY_FRESH`]), else the IPv4 one.
    fn endpoint(&self) -> Option<Endpoint> {
        match self.seen {
            [Some((v4, t4)), Some((_, t6))] if t4.since(t6) > FAMILY_FRESH => Some(v4),
            [v4, v6] => v6.or(v4).map(|(ep, _)| ep),
        }
    }

    /// Every endpoint the node was heard from (one per family).
    fn endpoints(&self) -> impl Iterator<Item = Endpoint> + '_ {
        self.seen.iter().flatten().map(|(ep, _)| *ep)
    }

    /// The endpoints worth introducing the node at: each family's, unless it went
    /// silent for [`FAMILY_FRESH`] while the other was heard.
    fn fresh_endpoints(&self) -> impl Iterator<Item = Endpoint> + '_ {
        let newest = self.seen.iter().flatten().map(|(_, t)| *t).max();
        self.seen
            .iter()
            .flatten()
            .filter(move |(_, t)| newest.is_some_and(|n| n.since(*t) <= FAMILY_FRESH))
            .map(|(ep, _)| *ep)
    }
}

/// The root core. See the module documentation.
pub struct Root {
    table: SessionTable,
    /// Rate limit of SessionUnknown answers.
    lost_replies: LostSessionReplies,
    nodes: HashMap<NodeAddress, Known>,
    /// Which node said hello from each endpoint (to accept packets moon roots hand up).
    by_endpoint: HashMap<Endpoint, NodeAddress>,
    /// The planet's roots, when this root is a moon root (`upstream`).
    upstream: Vec<Upstream>,
    /// Public identities of the other roots, served to WHOIS.
    world_roots: Vec<PublicIdentity>,
    /// The worlds this root holds (its planet, moons), served to WORLD_REQUEST.
    worlds: Vec<World>,
    rendezvous_sent: HashMap<(NodeAddress, NodeAddress), Time>,
    /// Multicast subscriptions (`multicast`).
    directory: multicast::Directory,
    next_tick: Time,
    transmits: VecDeque<Transmit>,
    stats: RootStats,
    scratch: Vec<u8>,
}

impl Root {
    /// A root with `identity`; `world`, if given, lists its fellow roots.
    /// A root that its planet does not list is a moon root: it says hello to the planet's
    /// roots from its first timeout on (see [`upstream`]).
    pub fn new(identity: Identity, world: Option<&World>, seed: [u8; 32], now: Time) -> Self {
        let me = identity.public().address();
        let directory_seed = u64::from_be_bytes([
            seed[0], seed[1], seed[2], seed[3], seed[4], seed[5], seed[6], seed[7],
        ]) ^ 0x6d75_6c74_6963_6173;
        let mut table = SessionTable::new(identity, seed);
        let upstream = Upstream::of_planet(world, me);
        for r in world.iter().flat_map(|w| &w.roots) {
            if upstream.iter().any(|u| u.address == r.identity.address()) {
                table.add_peer(r.identity.clone());
            }
        }
        let world_roots = world
            .map(|w| {
                w.roots
                    .iter()
                    .map(|r| r.identity.clone())
                    .filter(|i| i.address() != me)
                    .collect()
            })
            .unwrap_or_default();
        Self {
            table,
            lost_replies: LostSessionReplies::default(),
            nodes: HashMap::new(),
            by_endpoint: HashMap::new(),
            next_tick: if upstream.is_empty() { now + TICK } else { now },
            upstream,
            world_roots,
            worlds: world.into_iter().cloned().collect(),
            rendezvous_sent: HashMap::new(),
            directory: multicast::Directory::new(directory_seed),
            transmits: VecDeque::new(),
            stats: RootStats::default(),
            scratch: Vec::with_capacity(2048),
        }
    }

    /// Adds a world this root holds besides its planet (a moon from `moons.d/`): its
    /// roots are answered to WHOIS, and nodes asking for it (WORLD_REQUEST) get it.
    pub fn add_world(&mut self, world: World) {
        let me = self.address();
        for r in &world.roots {
            let a = r.identity.address();
            if a != me && !self.world_roots.iter().any(|i| i.address() == a) {
                self.world_roots.push(r.identity.clone());
            }
        }
        self.worlds.retain(|w| w.id != world.id);
        self.worlds.push(world);
    }

    /// Our address.
    pub fn address(&self) -> NodeAddress {
        self.table.address()
    }

    /// Sets the wall-clock time `Time::ZERO` stands for (see
    /// [`SessionTable::set_wall_origin`]).
    pub fn set_wall_origin(&mut self, origin: UnixTime) {
        self.table.set_wall_origin(origin);
    }

    /// Counters.
    pub fn stats(&self) -> &RootStats {
        &self.stats
    }

    /// Number of nodes currently known.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Number of multicast subscriptions held.
    pub fn subscription_count(&self) -> usize {
        self.directory.len()
    }

    /// A datagram arrived from `from`.
    pub fn handle_datagram(&mut self, now: Time, _local: Endpoint, from: Endpoint, data: &[u8]) {
        self.stats.rx_datagrams += 1;
        let (header, outer) = match wire::parse(data) {
            Ok(x) => x,
            Err(_) => {
                self.stats.drop_malformed += 1;
                return;
            }
        };
        if header.dest != self.address() {
            self.relay(now, from, header.src, header.dest, header.hops, data);
            return;
        }
        match outer {
            Outer::HandshakeInit { .. } => {
                if self.nodes.len() >= MAX_NODES && !self.nodes.contains_key(&header.src) {
                    self.stats.drop_handshake += 1;
                    return;
                }
                match self.table.on_handshake_init(now, from, data) {
                    Ok(InitAnswer::Cookie(reply)) => {
                        self.stats.cookie_replies += 1;
                        self.send(from, reply);
                    }
                    Ok(InitAnswer::Session { peer, reply }) => {
                        // Tracked from the handshake on, so silent ones expire too; the
                        // endpoint is learned only from Data.
                        let known = self.nodes.entry(peer).or_insert_with(|| Known::new(now));
                        known.last_rx = now;
                        self.send(from, reply);
                    }
                    Err(e) => self.count(e),
                }
            }
            Outer::HandshakeResp {
                sender_index,
                receiver_index,
                noise,
            } => match self.table.on_handshake_resp(
                now,
                &header,
                sender_index,
                receiver_index,
                noise,
            ) {
                Ok(peer) => self.upstream_ready(now, peer, from),
                Err(e) => self.count(e),
            },
            Outer::CookieReply {
                receiver_index,
                nonce,
                sealed,
            } => match self
                .table
                .on_cookie_reply(now, &header, receiver_index, &nonce, &sealed)
            {
                Ok(peer) => {
                    if let Ok(packet) = self.table.handshake_packet(now, peer) {
                        self.send(from, packet);
                    }
                }
                Err(e) => self.count(e),
            },
            Outer::Data { receiver_index, .. } => {
                if self.on_data(now, from, header.hops, data) == Err(TableError::UnknownIndex)
                    && self.lost_replies.allow(now, header.src)
                {
                    // Restarted (or expired the session): the node handshakes again now.
                    let mut packet = Vec::with_capacity(wire::HEADER_LEN + 4);
                    Outer::SessionUnknown { receiver_index }.emit(
                        header.src,
                        self.address(),
                        &mut packet,
                    );
                    self.send(from, packet);
                }
            }
            _ => self.stats.drop_unhandled += 1,
        }
    }

    /// Housekeeping time.
    pub fn handle_timeout(&mut self, now: Time) {
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + TICK;
        self.table.expire(now);
        let stale: Vec<NodeAddress> = self
            .nodes
            .iter()
            .filter(|(a, k)| now.since(k.last_rx) >= NODE_EXPIRE && !self.is_upstream(**a))
            .map(|(a, _)| *a)
            .collect();
        for a in stale {
            for ep in self.nodes.remove(&a).iter().flat_map(Known::endpoints) {
                if self.by_endpoint.get(&ep) == Some(&a) {
                    self.by_endpoint.remove(&ep);
                }
            }
            self.table.remove_peer(a);
        }
        self.greet_upstream(now);
        self.directory.expire(now);
        self.rendezvous_sent
            .retain(|_, t| now.since(*t) < RENDEZVOUS_INTERVAL);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// When to call `handle_timeout` next.
    pub fn poll_timeout(&self) -> Option<Time> {
        Some(self.next_tick)
    }

    fn on_data(
        &mut self,
        now: Time,
        from: Endpoint,
        hops: u8,
        data: &[u8],
    ) -> Result<(), TableError> {
        // Decrypted in place in the reused scratch buffer, which the plaintext borrows
        // until the message is handled.
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        buf.extend_from_slice(data);
        let result = match self.table.open(now, &mut buf) {
            Ok(o) => {
                self.on_plaintext(now, from, hops, o.peer, o.counter, o.plaintext);
                Ok(())
            }
            Err(e) => {
                self.count(e);
                Err(e)
            }
        };
        self.scratch = buf;
        result
    }

    fn on_plaintext(
        &mut self,
        now: Time,
        from: Endpoint,
        hops: u8,
        peer: NodeAddress,
        counter: u64,
        plaintext: &[u8],
    ) {
        if hops == 0 && (self.nodes.len() < MAX_NODES || self.nodes.contains_key(&peer)) {
            let known = self.nodes.entry(peer).or_insert_with(|| Known::new(now));
            known.last_rx = now;
            if let Some(old) = known.learn(now, from) {
                if self.by_endpoint.get(&old) == Some(&peer) {
                    self.by_endpoint.remove(&old);
                }
            }
            self.by_endpoint.insert(from, peer);
        }
        let upstream = self.heard_upstream(now, peer);
        let reply = match Message::parse(plaintext) {
            // A planet root's answers to our HELLOs and its introductions need nothing.
            Ok(Message::Ok { .. } | Message::Rendezvous { .. }) if upstream => None,
            Ok(Message::Hello(hello)) => Some(Message::hello_ok(counter, &hello, from)),
            Ok(Message::WorldRequest { worlds }) => {
                self.send_worlds(now, peer, from, counter, &worlds);
                None
            }
            Ok(Message::Whois { mut addresses }) => {
                // Bounded answer: the reply goes to an unverified source address, so it
                // must not be an amplifier.
                addresses.sort();
                addresses.dedup();
                addresses.truncate(MAX_WHOIS_ANSWERS);
                let identities: Vec<[u8; 69]> = addresses
                    .iter()
                    .filter_map(|a| self.identity_of(*a))
                    .map(|i| i.to_bytes())
                    .collect();
                (!identities.is_empty()).then_some(Message::Ok {
                    in_re_counter: counter,
                    body: OkBody::Whois(identities),
                })
            }
            Ok(Message::Echo(data)) => Some(Message::Ok {
                in_re_counter: counter,
                body: OkBody::Echo(data),
            }),
            Ok(Message::MulticastLike { subscriptions }) => {
                let refused = self.directory.like(now, peer, &subscriptions);
                self.stats.drop_subscription += refused as u64;
                None
            }
            Ok(Message::MulticastGather {
                network,
                group,
                limit,
            }) => {
                self.stats.gathers += 1;
                let gathered = self.directory.gather(peer, network, group, limit);
                Some(Message::Ok {
                    in_re_counter: counter,
                    body: OkBody::Gather(gathered),
                })
            }
            Ok(_) => {
                self.stats.drop_unhandled += 1;
                None
            }
            Err(_) => {
                self.stats.drop_malformed += 1;
                None
            }
        };
        if let Some(reply) = reply {
            self.seal_and_send(now, peer, from, &reply);
        }
    }

    /// Answers a WORLD_REQUEST: one OK per world we hold in a newer revision than asked.
    fn send_worlds(
        &mut self,
        now: Time,
        peer: NodeAddress,
        to: Endpoint,
        counter: u64,
        asked: &[(u64, u64)],
    ) {
        let newer: Vec<Vec<u8>> = asked
            .iter()
            .filter_map(|(id, timestamp)| {
                self.worlds
                    .iter()
                    .find(|w| w.id == *id && w.timestamp > *timestamp)
            })
            .map(World::to_bytes)
            .collect();
        for bytes in newer {
            self.stats.worlds_sent += 1;
            let ok = Message::Ok {
                in_re_counter: counter,
                body: OkBody::World(&bytes),
            };
            self.seal_and_send(now, peer, to, &ok);
        }
    }

    /// Seals `msg` for `peer` and sends it to `to`, in fragments of at most
    /// [`PATH_MTU_FLOOR`] bytes when larger (a world can be).
    fn seal_and_send(&mut self, now: Time, peer: NodeAddress, to: Endpoint, msg: &Message<'_>) {
        let mut out = Vec::new();
        if self.table.seal(now, peer, msg, &mut out).is_err() {
            return;
        }
        if out.len() <= PATH_MTU_FLOOR {
            self.send(to, out);
            return;
        }
        let id = self.table.random_u64();
        if let Ok(fragments) = wire::fragment(&out, PATH_MTU_FLOOR, id) {
            for f in fragments {
                self.send(to, f);
            }
        }
    }

    fn identity_of(&self, address: NodeAddress) -> Option<PublicIdentity> {
        if let Some(t) = self.table.tunnel(address) {
            return Some(t.remote().clone());
        }
        self.world_roots
            .iter()
            .find(|i| i.address() == address)
            .cloned()
    }

    fn relay(
        &mut self,
        now: Time,
        from: Endpoint,
        src: NodeAddress,
        dest: NodeAddress,
        hops: u8,
        data: &[u8],
    ) {
        if hops >= RELAY_HOP_LIMIT {
            self.stats.drop_hops += 1;
            return;
        }
        // The source said hello, from this address (the port may have changed since:
        // a NAT rebinding); or a moon root hands the packet up from exactly the endpoint
        // it said hello from. Whoever it is must have budget left.
        let from_source = self
            .nodes
            .get(&src)
            .is_some_and(|k| k.endpoints().any(|e| e.0.ip() == from.0.ip()));
        let payer = if from_source {
            Some(src)
        } else if hops > 0 {
            self.by_endpoint.get(&from).copied()
        } else {
            None
        };
        let Some(payer) = payer.and_then(|a| self.nodes.get_mut(&a)) else {
            self.stats.drop_unknown_src += 1;
            return;
        };
        if !payer
            .relay_budget
            .take(now, RELAY_PER_SOURCE_PER_SEC, RELAY_PER_SOURCE_BURST)
        {
            self.stats.drop_relay_rate += 1;
            return;
        }
        let mut packet = data.to_vec();
        match Packet::new_checked(&mut packet[..]) {
            Ok(mut p) => p.set_hops(hops + 1),
            Err(_) => {
                self.stats.drop_malformed += 1;
                return;
            }
        }
        let Some(to) = self.nodes.get(&dest).and_then(Known::endpoint) else {
            if !self.forward_upstream(now, packet, hops + 1) {
                self.stats.drop_unknown_dest += 1;
            }
            return;
        };
        self.stats.relayed += 1;
        self.send(to, packet);
        // Introduce the two ends when the packet came straight from its source.
        let straight = self
            .nodes
            .get(&src)
            .is_some_and(|k| k.endpoints().any(|e| e == from));
        if hops == 0 && straight {
            self.rendezvous(now, src, dest);
        }
    }

    /// Sends `a` and `b` each other's endpoints (both families), each at the endpoint
    /// it is relayed to.
    fn rendezvous(&mut self, now: Time, a: NodeAddress, b: NodeAddress) {
        let key = if a < b { (a, b) } else { (b, a) };
        if self
            .rendezvous_sent
            .get(&key)
            .is_some_and(|t| now.since(*t) < RENDEZVOUS_INTERVAL)
        {
            return;
        }
        self.rendezvous_sent.insert(key, now);
        for (to, other) in [(a, b), (b, a)] {
            let Some(to_ep) = self.nodes.get(&to).and_then(Known::endpoint) else {
                continue;
            };
            let endpoints: Vec<Endpoint> = self
                .nodes
                .get(&other)
                .map(|k| k.fresh_endpoints().collect())
                .unwrap_or_default();
            let msg = Message::Rendezvous {
                peer: other,
                endpoints,
            };
            let mut out = Vec::new();
            if self.table.seal(now, to, &msg, &mut out).is_ok() {
                self.stats.rendezvous += 1;
                self.send(to_ep, out);
            }
        }
    }

    fn send(&mut self, to: Endpoint, contents: Vec<u8>) {
        self.stats.tx_datagrams += 1;
        self.transmits.push_back(Transmit {
            destination: to,
            contents,
        });
    }

    fn count(&mut self, e: TableError) {
        let counter = match e {
            TableError::Tunnel(TunnelError::Replay) => &mut self.stats.drop_replay,
            TableError::Tunnel(TunnelError::Decrypt | TunnelError::Expired) => {
                &mut self.stats.drop_auth
            }
            TableError::Malformed => &mut self.stats.drop_malformed,
            TableError::Handshake => &mut self.stats.drop_handshake,
            TableError::Replay => &mut self.stats.drop_replay,
            TableError::BadMac => &mut self.stats.drop_handshake_mac,
            TableError::RateLimited => &mut self.stats.drop_handshake_rate,
            TableError::CookieWithheld => &mut self.stats.drop_cookie_rate,
            _ => &mut self.stats.drop_unknown_session,
        };
        *counter += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(text: &str) -> Endpoint {
        text.parse().unwrap()
    }

    #[test]
    fn a_dual_stack_node_is_reached_over_ipv6_until_it_goes_stale() {
        let t = Time::from_millis(1_000);
        let mut k = Known::new(t);
        assert_eq!(k.learn(t, ep("198.51.100.7/9993")), None);
        assert_eq!(k.endpoint(), Some(ep("198.51.100.7/9993")));
        k.learn(t, ep("2001:db8::7/9993"));
        // HELLOs over both families, IPv4 last: IPv6 stays.
        let later = t + Duration::from_secs(5);
        k.learn(later, ep("2001:db8::7/9993"));
        k.learn(later, ep("198.51.100.7/9993"));
        assert_eq!(k.endpoint(), Some(ep("2001:db8::7/9993")));
        assert_eq!(k.endpoints().count(), 2);
        // A NAT rebinding replaces the IPv4 endpoint and says which went.
        assert_eq!(
            k.learn(later, ep("198.51.100.7/40000")),
            Some(ep("198.51.100.7/9993"))
        );
        assert_eq!(k.fresh_endpoints().count(), 2);
        // IPv6 silent while IPv4 goes on: IPv4 takes over, and only it is introduced.
        k.learn(later + FAMILY_FRESH * 2, ep("198.51.100.7/40000"));
        assert_eq!(k.endpoint(), Some(ep("198.51.100.7/40000")));
        let fresh: Vec<Endpoint> = k.fresh_endpoints().collect();
        assert_eq!(fresh, vec![ep("198.51.100.7/40000")]);
    }
}
