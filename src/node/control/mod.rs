//! The control core: everything about a node that is not the per-frame path. It owns
//! peers and their paths, the roots, WHOIS, handshakes and sessions (through
//! [`SessionTable`], with the seeded RNG), pings, network configs and events, and
//! chooses between a direct path and a relay through a root.
//!
//! # What it publishes
//! After every input it calls [`Control::settle`], which publishes a new immutable
//! [`Snapshot`] when (and only when) something in it changed: a confirmed session
//! installed, promoted, expired or removed; a peer's route or direct path; a peer
//! appearing or forgotten; a network joined, left, reconfigured or its status changed.
//! It derives again only what may have changed (peers changed since the last
//! publication, all of them once per tick), so an input costs the same with 10 peers
//! as with 10,000.
//! It folds in the data plane's [`PeerActivity`](super::snapshot::PeerActivity)
//! counters, so path liveness, keepalives, rekeys and idle-peer expiry see the traffic
//! the data plane carried: for every peer on each tick and before commands
//! ([`Control::fold`]), for the peer an input concerns and the roots before that input
//! ([`Control::fold_around`]), and for a peer whose route changes before publishing.
//!
//! # What it receives
//! Datagrams and messages the data plane does not handle ([`ToControl`]), and the
//! commands of [`Node`](super::Node). Frames it receives itself (the first packet on a
//! session it just promoted) go back to the data plane's inbound checks through
//! [`Control::poll_delivery`]; frames it sends (queued for a WHOIS or handshake) are
//! counted by the data plane that handed them over.
//!
//! # Behaviour
//! - At start the node handshakes with every root of its world and sends each a HELLO
//!   every [`ROOT_HELLO_INTERVAL`]; the OK gives latency and our external endpoint.
//!   Traffic that must be relayed goes through the alive root with the lowest latency;
//!   when a root stops answering it is no longer alive after `PATH_ALIVE` and the
//!   next one takes over.
//! - To reach a peer whose identity it lacks, the node asks the roots (WHOIS), verifies
//!   the answer (the address must match the keys), handshakes (relayed), then sends.
//! - Roots send RENDEZVOUS when they relay between two nodes; both nodes then probe
//!   each other's endpoints directly. The first authenticated packet that arrives on a
//!   direct path makes it usable; traffic moves there. When it dies (no authenticated
//!   packet for `PATH_ALIVE`, though keepalives go every [`KEEPALIVE`]), traffic
//!   falls back to the relay.
//! - Each route (a direct path, or the relaying root) carries datagrams of its probed
//!   path MTU, at first [`wire::PATH_MTU_FLOOR`](crate::wire::PATH_MTU_FLOOR) (see [`pmtu`]); the control core's own
//!   messages are always cut to that floor.
//! - Every input packet that fails a check is dropped and counted in [`NodeStats`];
//!   nothing unauthenticated changes a path, a session or reaches the TAP.

mod liveness;
pub mod membership;
pub mod multicast;
pub(crate) mod network;
mod paths;
pub mod pmtu;
mod publish;
mod roots;
pub mod worlds;

pub use liveness::PATH_QUIET;
pub use paths::{
    PROBE_BACKOFF_MAX, PROBE_BURST, PUSH_ACCEPTED, PUSH_FIRST, PUSH_MAX, PUSH_RX_BURST,
    PUSH_RX_WINDOW, usable_candidate,
};
pub use roots::{ROOT_ANSWER_TIMEOUT, ROOT_RETRY, RootReport};

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::data::ToControl;
use super::peer::{self, Peer, PeerBook, Role};
use super::snapshot::{Snapshot, later};
use super::{
    Event, KEEPALIVE, Link, MAX_PENDING_OUTPUT, NodeConfig, NodeError, NodeStats, PEER_FORGET,
    PING_TIMEOUT, PeerInfo, SILENCE_REHANDSHAKE, TICK, WHOIS_GIVE_UP, WHOIS_RETRY,
};
use crate::crypto::identity::PublicIdentity;
use crate::crypto::table::{InitAnswer, LostSessionReplies, SessionTable, TableError};
use crate::crypto::tunnel::REKEY_TIMEOUT;
use crate::types::{Endpoint, NetworkId, NodeAddress, Time, Transmit};
use crate::wire::{self, Hello, Message, OkBody, Outer, PROTOCOL_VERSION, SOFTWARE_VERSION, Verb};
use network::Joined;

struct Whois {
    first: Time,
    last_sent: Option<Time>,
    queue: Vec<Vec<u8>>,
}

struct PendingPing {
    peer: NodeAddress,
    sent: Time,
}

/// A Frame control received (on a session the data plane did not hold yet), for the
/// data plane's checks and delivery.
#[derive(Debug)]
pub struct Delivery {
    /// The authenticated sender.
    pub peer: NodeAddress,
    /// The frame's network.
    pub network: NetworkId,
    /// Its FRAME flags.
    pub flags: u8,
    /// The Ethernet frame.
    pub frame: Vec<u8>,
    /// True for a frame that waited for its sender's credential: if the switch still
    /// refuses it, it is dropped (not handed back again).
    pub retried: bool,
}

impl Delivery {
    /// A frame that waited for its sender's credential (see `retried`).
    pub(crate) fn retried(
        peer: NodeAddress,
        network: NetworkId,
        flags: u8,
        frame: Vec<u8>,
    ) -> Self {
        Delivery {
            peer,
            network,
            flags,
            frame,
            retried: true,
        }
    }
}

/// The control core. See the module documentation.
pub struct Control {
    table: SessionTable,
    /// Packets ever opened (authenticated) by the control core itself.
    authenticated: u64,
    /// False when the host has no IPv6 address to send from: IPv6 endpoints of roots and
    /// peers are then not tried (see `Node::set_ipv6`).
    ipv6: bool,
    /// Rate limit of SessionUnknown answers.
    lost_replies: LostSessionReplies,
    /// The planet and moons (`worlds`).
    worlds: worlds::Worlds,
    roots: Vec<NodeAddress>,
    /// Every peer, with the ones changed since the last publication marked.
    peers: PeerBook,
    whois: HashMap<NodeAddress, Whois>,
    pings: HashMap<u64, PendingPing>,
    links: HashMap<NodeAddress, Link>,
    networks: HashMap<NetworkId, Joined>,
    /// The path MTU of each route in use (`pmtu`).
    pmtu: pmtu::PathMtus,
    surface: Option<Endpoint>,
    next_tick: Time,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: NodeStats,
    /// What the data plane reads; replaced (never changed) by [`Control::settle`].
    snapshot: Arc<Snapshot>,
    /// The receiver indices of each peer's sessions in the snapshot.
    published_indices: HashMap<NodeAddress, Vec<u32>>,
    /// The relay (root and its endpoint) the snapshot's relayed routes use.
    published_relay: Option<(NodeAddress, Endpoint)>,
    /// Something published changed (a network, a peer forgotten); publish again.
    dirty: bool,
    /// Join counter, so a network left and joined again gets a fresh switch.
    epochs: u64,
    /// Frames from opened messages control handled (the first packet on a new
    /// session), for the data plane's inbound checks: (peer, network, frame).
    deliveries: VecDeque<Delivery>,
    /// Frames from our TAP that waited for a gather, to go through the data plane's
    /// switch again: (network, frame).
    reinject: VecDeque<(NetworkId, Vec<u8>)>,
    /// Whether a root was alive at the last tick (to report changes once).
    was_online: bool,
    /// Our local endpoints and the per-peer push and probe state (`paths`).
    lan: paths::Lan,
}

impl Control {
    /// A node that will contact the roots of its planet and moons at its first timeout.
    pub fn new(config: NodeConfig, now: Time) -> Self {
        let mut table = SessionTable::new(config.identity, config.seed);
        table.report_changes();
        let me = table.address();
        let mut control = Self {
            table,
            authenticated: 0,
            ipv6: true,
            lost_replies: LostSessionReplies::default(),
            worlds: worlds::Worlds::new(config.world, config.moons),
            roots: Vec::new(),
            peers: PeerBook::default(),
            whois: HashMap::new(),
            pings: HashMap::new(),
            links: HashMap::new(),
            networks: HashMap::new(),
            pmtu: pmtu::PathMtus::new(config.phys_mtu),
            surface: None,
            next_tick: now,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: NodeStats::default(),
            snapshot: Arc::new(Snapshot::empty(me)),
            published_indices: HashMap::new(),
            published_relay: None,
            dirty: true,
            epochs: 0,
            deliveries: VecDeque::new(),
            reinject: VecDeque::new(),
            was_online: false,
            lan: paths::Lan::default(),
        };
        control.rebuild_roots(now);
        control
    }

    /// Our address.
    pub fn address(&self) -> NodeAddress {
        self.table.address()
    }

    /// See [`SessionTable::set_wall_origin`].
    pub fn set_wall_origin(&mut self, origin: crate::types::UnixTime) {
        self.table.set_wall_origin(origin);
    }

    /// The verified identity of a peer we have a tunnel with (or our own).
    pub fn peer_identity(&self, peer: NodeAddress) -> Option<PublicIdentity> {
        if peer == self.address() {
            return Some(self.table.identity().public().clone());
        }
        self.table.tunnel(peer).map(|t| t.remote().clone())
    }

    /// Drop and traffic counters of the control core.
    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    /// The snapshot in force.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// A seed for a data plane, from the control core's seeded RNG.
    pub fn data_seed(&mut self) -> u64 {
        self.table.random_u64()
    }

    /// Sends an ECHO to `peer` (looking it up and handshaking first if needed). The
    /// answer arrives as [`Event::Pong`] or [`Event::PingLost`] with the returned ID.
    pub fn ping(&mut self, now: Time, peer: NodeAddress) -> Result<u64, NodeError> {
        if peer == self.address() {
            return Err(NodeError::SelfAddress);
        }
        let id = self.table.random_u64();
        self.pings.insert(id, PendingPing { peer, sent: now });
        self.touch_activity(now, peer);
        let payload = id.to_be_bytes();
        self.send_message(now, peer, &Message::Echo(&payload));
        Ok(id)
    }

    /// Work the data plane handed over (see [`ToControl`]). What the data plane reported
    /// about the peer it concerns, and about the roots, is folded in first.
    pub fn handle(&mut self, now: Time, item: &mut ToControl) {
        let peer = match item {
            ToControl::Datagram { packet, .. } => wire::Header::parse(packet).ok().map(|h| h.src),
            ToControl::Opened { peer, .. }
            | ToControl::Seen { peer, .. }
            | ToControl::Frame { peer, .. }
            | ToControl::Stranger { peer, .. } => Some(*peer),
            ToControl::Gather { .. } => None,
        };
        self.fold_around(peer);
        match item {
            ToControl::Datagram {
                from,
                relayed,
                packet,
            } => self.process_datagram(now, *from, packet, *relayed),
            ToControl::Opened {
                from,
                direct,
                peer,
                counter,
                plaintext,
            } => self.on_plaintext(now, *from, *direct, *peer, *counter, plaintext),
            ToControl::Seen { peer, from } => {
                if let Some(p) = self.peers.get_mut(peer) {
                    p.learn_path(now, *from);
                }
                self.note_link(now, *peer);
                self.flush_queue(now, *peer);
            }
            ToControl::Frame {
                network,
                peer,
                flags,
                frame,
                introduce,
            } => {
                self.touch_activity(now, *peer);
                if *introduce {
                    self.on_introduce(now, *network, *peer);
                }
                let msg = Message::Frame {
                    network: *network,
                    flags: *flags,
                    frame,
                };
                self.send_message(now, *peer, &msg);
            }
            ToControl::Stranger {
                network,
                peer,
                flags,
                frame,
            } => self.on_stranger(now, *network, *peer, *flags, std::mem::take(frame)),
            ToControl::Gather {
                network,
                group,
                frame,
            } => self.on_gather_needed(now, *network, *group, std::mem::take(frame)),
        }
    }

    /// True when the tick is due at `now`.
    pub fn tick_due(&self, now: Time) -> bool {
        now >= self.next_tick
    }

    /// The time from [`poll_timeout`](Self::poll_timeout) has come.
    pub fn handle_timeout(&mut self, now: Time) {
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + TICK;
        self.housekeeping(now);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next frame control received (on a session it just promoted) for the data
    /// plane's inbound checks: (sender, network, frame).
    pub fn poll_delivery(&mut self) -> Option<Delivery> {
        self.deliveries.pop_front()
    }

    /// The next frame from our TAP to run through the data plane again (its group's
    /// subscribers were gathered): (network, frame).
    pub fn poll_reinject(&mut self) -> Option<(NetworkId, Vec<u8>)> {
        self.reinject.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next.
    pub fn poll_timeout(&self) -> Option<Time> {
        Some(self.next_tick)
    }

    /// What `peers` shows, sorted by address (with what the data plane reported since
    /// the last fold).
    pub fn peers(&self, now: Time) -> Vec<PeerInfo> {
        let mut out: Vec<PeerInfo> = self
            .peers
            .iter()
            .map(|(&address, p)| {
                let act = p.activity.peek();
                PeerInfo {
                    address,
                    role: p.role,
                    version: p.version,
                    latency: p.latency,
                    link: self.shown_link(now, address),
                    paths: p
                        .paths
                        .iter()
                        .map(|x| (x.endpoint, x.alive(now) && !self.dead_root(now, address)))
                        .collect(),
                    last_tx: later(p.last_tx, act.tx).map(|t| now.since(t)),
                    last_rx: later(p.last_rx, act.rx).map(|t| now.since(t)),
                    session: self.table.tunnel(address).is_some_and(|t| t.can_seal(now)),
                    cipher: self
                        .table
                        .tunnel(address)
                        .and_then(|t| t.current())
                        .map(|s| s.cipher()),
                    traffic: p.activity.traffic(),
                    path_mtu: self
                        .route_to(now, address)
                        .map_or(self.pmtu.floor(), |(_, to)| self.pmtu.mtu(address, to)),
                }
            })
            .collect();
        out.sort_by_key(|p| p.address);
        out
    }

    // ----- input processing -------------------------------------------------------

    /// A whole packet the data plane handed over (it parsed it, checked the addresses
    /// and reassembled fragments already; those checks stay here for direct callers).
    /// `relayed` is set for a packet reassembled from fragments of which one came through
    /// a relay: its inner header still says zero hops. Fragments are never handed over,
    /// so one here (a fragment inside a fragment) is unknown.
    fn process_datagram(
        &mut self,
        now: Time,
        from: Endpoint,
        data: &mut [u8],
        relayed: Option<bool>,
    ) {
        let (header, outer) = match wire::parse(data) {
            Ok(x) => x,
            Err(_) => {
                self.stats.drop_malformed += 1;
                return;
            }
        };
        if header.dest != self.address() || header.src == self.address() {
            self.stats.drop_not_for_us += 1;
            return;
        }
        match outer {
            Outer::HandshakeInit { .. } => self.on_handshake_init(now, from, data),
            Outer::HandshakeResp {
                sender_index,
                receiver_index,
                noise,
            } => {
                match self.table.on_handshake_resp(
                    now,
                    &header,
                    sender_index,
                    receiver_index,
                    noise,
                ) {
                    Ok(peer) => {
                        self.stats.handshakes += 1;
                        self.on_session_ready(now, peer);
                    }
                    Err(e) => self.stats.count(e),
                }
            }
            Outer::Data { receiver_index, .. } => {
                let direct = header.hops == 0 && relayed != Some(true);
                if self.on_data(now, from, direct, data) == Err(TableError::UnknownIndex) {
                    self.answer_lost_session(now, from, header.src, receiver_index);
                }
            }
            Outer::SessionUnknown { receiver_index } => {
                self.on_session_unknown(now, header.src, receiver_index)
            }
            Outer::CookieReply {
                receiver_index,
                nonce,
                sealed,
            } => match self
                .table
                .on_cookie_reply(now, &header, receiver_index, &nonce, &sealed)
            {
                // The peer is under load: try again at once, now with its cookie.
                Ok(peer) => self.send_handshake(now, peer),
                Err(e) => self.stats.count(e),
            },
            _ => self.stats.drop_unknown += 1,
        }
    }

    fn on_handshake_init(&mut self, now: Time, from: Endpoint, datagram: &[u8]) {
        let from_root = self.is_root_endpoint(from);
        match self
            .table
            .on_handshake_init_from(now, from, from_root, datagram)
        {
            Ok(InitAnswer::Session { peer, reply }) => {
                // Heard from, authenticated by its static key: until its first Data packet
                // confirms the session, this keeps housekeeping from forgetting the peer
                // (and the session with it) as idle.
                self.peers
                    .entry(peer)
                    .or_insert_with(|| Peer::new(Role::Leaf))
                    .last_rx = Some(now);
                // Answer the way it came: directly, or through the relaying root.
                self.push_datagram(now, peer, from, reply);
            }
            Ok(InitAnswer::Cookie(reply)) => {
                // To the address it came from, whoever the header claims sent it.
                self.stats.cookie_replies += 1;
                self.stats.tx_datagrams += 1;
                self.transmits.push_back(Transmit {
                    destination: from,
                    contents: reply,
                });
            }
            Err(e) => self.stats.count(e),
        }
    }

    fn on_data(
        &mut self,
        now: Time,
        from: Endpoint,
        direct: bool,
        data: &mut [u8],
    ) -> Result<(), TableError> {
        // Decrypted in place in the buffer the data plane handed over.
        match self.table.open(now, data) {
            Ok(o) => {
                self.authenticated += 1;
                self.on_plaintext(now, from, direct, o.peer, o.counter, o.plaintext);
                Ok(())
            }
            Err(e) => {
                self.stats.count(e);
                Err(e)
            }
        }
    }

    /// A Data packet from `src` named an index we do not hold (we restarted, or
    /// expired the session): tell it, the way the packet came and at most once a
    /// second per source, so it handshakes again at once instead of at its next rekey.
    fn answer_lost_session(&mut self, now: Time, from: Endpoint, src: NodeAddress, index: u32) {
        if !self.lost_replies.allow(now, src) {
            return;
        }
        let mut packet = Vec::with_capacity(wire::HEADER_LEN + 4);
        Outer::SessionUnknown {
            receiver_index: index,
        }
        .emit(src, self.address(), &mut packet);
        self.stats.lost_session_answers += 1;
        self.push_datagram(now, src, from, packet);
    }

    /// `peer` says it holds no session with `index`. When that is the session we seal
    /// with (and we did not act on such news in the last rekey timeout), drop it and
    /// handshake again; frames meanwhile wait in the peer's queue.
    fn on_session_unknown(&mut self, now: Time, peer: NodeAddress, index: u32) {
        let recent = self
            .peers
            .get(&peer)
            .and_then(|p| p.last_lost_session)
            .is_some_and(|t| now.since(t) < REKEY_TIMEOUT);
        if recent || !self.table.peer_lost(peer, index) {
            self.stats.drop_unknown_session += 1;
            return;
        }
        if let Some(p) = self.peers.get_mut(&peer) {
            p.last_lost_session = Some(now);
        }
        self.stats.lost_session_rekeys += 1;
        self.start_handshake(now, peer);
    }

    pub(crate) fn on_plaintext(
        &mut self,
        now: Time,
        from: Endpoint,
        direct: bool,
        peer: NodeAddress,
        counter: u64,
        plaintext: &[u8],
    ) {
        {
            let p = self
                .peers
                .entry(peer)
                .or_insert_with(|| Peer::new(Role::Leaf));
            p.last_rx = Some(now);
            if direct {
                p.learn_path(now, from);
            } else {
                p.last_relayed_rx = Some(now);
            }
        }
        if !direct {
            self.check_direct_path(now, peer);
        }
        self.note_link(now, peer);
        self.flush_queue(now, peer);
        let msg = match Message::parse(plaintext) {
            Ok(m) => m,
            Err(_) => {
                self.stats.drop_malformed += 1;
                return;
            }
        };
        self.on_message(now, peer, from, direct, counter, msg);
    }

    fn on_message(
        &mut self,
        now: Time,
        peer: NodeAddress,
        from: Endpoint,
        direct: bool,
        counter: u64,
        msg: Message<'_>,
    ) {
        let from_root = self.roots.contains(&peer);
        match msg {
            Message::Hello(hello) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.version = Some(hello.version);
                }
                let reply = Message::hello_ok(counter, &hello, from);
                self.reply(now, peer, from, direct, &reply);
            }
            Message::Ok {
                body: OkBody::Hello(ok),
                ..
            } => {
                let rtt = now.since(ok.timestamp);
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.version = Some(ok.version);
                    p.record_rtt(direct.then_some(from), rtt);
                    if let Some(path) = p.path_mut(from).filter(|_| from_root && direct) {
                        path.observed = Some(ok.observed);
                    }
                }
                // What `info` shows: how the best root sees us on the path we use.
                let on_route = self.route_to(now, peer).is_some_and(|(_, ep)| ep == from);
                if from_root && on_route && self.best_root(now) == Some(peer) {
                    self.surface = Some(ok.observed);
                }
            }
            Message::Ok {
                body: OkBody::Whois(identities),
                ..
            } => {
                if !from_root {
                    self.stats.drop_not_from_root += 1;
                    return;
                }
                for bytes in identities {
                    self.on_whois_answer(now, &bytes);
                }
            }
            Message::Ok {
                body: OkBody::Echo(data),
                ..
            } => self.on_echo_reply(now, peer, from, direct, data),
            Message::Echo(data) => {
                let reply = Message::Ok {
                    in_re_counter: counter,
                    body: OkBody::Echo(data),
                };
                self.reply(now, peer, from, direct, &reply);
            }
            Message::PathProbe { token, .. } => {
                let reply = Message::Ok {
                    in_re_counter: counter,
                    body: OkBody::PathProbe { token },
                };
                self.reply(now, peer, from, direct, &reply);
            }
            Message::Ok {
                body: OkBody::PathProbe { token },
                ..
            } => {
                self.pmtu.on_answer(now, peer, token);
                self.peers.touch(peer);
            }
            Message::Rendezvous {
                peer: other,
                endpoints,
            } => {
                if !from_root {
                    self.stats.drop_not_from_root += 1;
                    return;
                }
                self.on_rendezvous(now, other, &endpoints);
            }
            Message::PushDirectPaths { endpoints } => {
                self.on_push_direct_paths(now, peer, &endpoints)
            }
            Message::Frame {
                network,
                flags,
                frame,
            } => {
                // Checked and delivered by the data plane (switch, rules, TAP queue).
                self.deliveries.push_back(Delivery {
                    peer,
                    network,
                    flags,
                    frame: frame.to_vec(),
                    retried: false,
                });
            }
            Message::NetworkCredentials {
                network,
                flags,
                credential,
            } => self.on_credentials(now, peer, network, flags, credential),
            Message::Ok {
                body: OkBody::Gather(gathered),
                ..
            } => self.on_gathered(now, peer, gathered),
            Message::NetworkConfigRequest { network, revision } => {
                self.on_config_request(now, peer, network, revision)
            }
            Message::NetworkConfig { network, config } => {
                self.on_network_config(peer, network, config)
            }
            Message::Error {
                in_re_verb: Verb::NetworkConfigRequest,
                code,
                payload,
                ..
            } => self.on_network_error(peer, code, payload),
            Message::Ok {
                body: OkBody::World(bytes),
                ..
            } => self.on_world(now, peer, bytes),
            // Nodes serve no WHOIS, worlds or multicast directory; other answers need
            // no action.
            Message::Whois { .. }
            | Message::WorldRequest { .. }
            | Message::MulticastLike { .. }
            | Message::MulticastGather { .. }
            | Message::Error { .. }
            | Message::Ok { .. } => {}
            Message::Unknown { .. } => self.stats.drop_unknown += 1,
        }
    }

    fn on_whois_answer(&mut self, now: Time, bytes: &[u8]) {
        let Some(identity) = self.table.verify_identity(bytes) else {
            self.stats.drop_handshake += 1;
            return;
        };
        let address = identity.address();
        let Some(waiting) = self.whois.remove(&address) else {
            return;
        };
        self.table.add_peer(identity);
        let p = self
            .peers
            .entry(address)
            .or_insert_with(|| Peer::new(Role::Leaf));
        for msg in waiting.queue {
            if !p.enqueue(msg) {
                self.stats.drop_queue_full += 1;
            }
        }
        self.start_handshake(now, address);
    }

    fn on_echo_reply(
        &mut self,
        now: Time,
        peer: NodeAddress,
        from: Endpoint,
        direct: bool,
        data: &[u8],
    ) {
        let Ok(id) = <[u8; 8]>::try_from(data).map(u64::from_be_bytes) else {
            return; // a keepalive reply
        };
        let Some(ping) = self.pings.get(&id) else {
            return;
        };
        if ping.peer != peer {
            return;
        }
        // Invariant: looked up just above.
        let ping = self.pings.remove(&id).expect("ping found above");
        let rtt = now.since(ping.sent);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.record_rtt(direct.then_some(from), rtt);
        }
        let link = if direct {
            Link::Direct(from)
        } else {
            Link::Relay(self.root_at(from).unwrap_or(peer))
        };
        self.event(Event::Pong {
            peer,
            id,
            rtt,
            link,
        });
    }

    /// A HELLO built now: our version, a timestamp the answer echoes (latency), our world.
    fn hello(&self, now: Time) -> Message<'static> {
        Message::Hello(Hello {
            proto_version: PROTOCOL_VERSION,
            version: SOFTWARE_VERSION,
            timestamp: now,
            world_id: self.worlds.planet.id,
            world_timestamp: self.worlds.planet.timestamp,
        })
    }

    /// Sends a HELLO to a peer with a session: straight to `to`, or over its current link.
    /// Used as probe, session confirmation and keepalive; the answer brings the peer's
    /// version and a latency sample.
    fn hello_via(&mut self, now: Time, peer: NodeAddress, to: Option<Endpoint>) {
        let hello = self.hello(now);
        let mut out = Vec::new();
        if self.table.seal(now, peer, &hello, &mut out).is_err() {
            return;
        }
        match to {
            Some(ep) => self.push_datagram(now, peer, ep, out),
            None => self.route(now, peer, out),
        }
    }

    // ----- output -----------------------------------------------------------------

    /// Seals `msg` for `peer` and sends it the best way; queues it (and starts a WHOIS
    /// or handshake) when that is not possible yet.
    fn send_message(&mut self, now: Time, peer: NodeAddress, msg: &Message<'_>) {
        if self.table.tunnel(peer).is_none() {
            let mut plain = Vec::with_capacity(msg.buffer_len());
            msg.emit(&mut plain);
            self.queue_for_whois(now, peer, plain);
            return;
        }
        let mut out = Vec::with_capacity(wire::DATA_PREFIX_LEN + msg.buffer_len() + wire::TAG_LEN);
        match self.table.seal(now, peer, msg, &mut out) {
            Ok(()) => self.route(now, peer, out),
            Err(_) => {
                let mut plain = Vec::with_capacity(msg.buffer_len());
                msg.emit(&mut plain);
                let p = self
                    .peers
                    .entry(peer)
                    .or_insert_with(|| Peer::new(Role::Leaf));
                if !p.enqueue(plain) {
                    self.stats.drop_queue_full += 1;
                }
                self.start_handshake(now, peer);
            }
        }
    }

    /// Replies on the path the request came in on (direct), or through the relay.
    fn reply(
        &mut self,
        now: Time,
        peer: NodeAddress,
        from: Endpoint,
        direct: bool,
        msg: &Message<'_>,
    ) {
        let mut out = Vec::new();
        if self.table.seal(now, peer, msg, &mut out).is_err() {
            return;
        }
        if direct {
            self.push_datagram(now, peer, from, out);
        } else {
            self.route(now, peer, out);
        }
    }

    fn queue_for_whois(&mut self, now: Time, peer: NodeAddress, plain: Vec<u8>) {
        let w = self.whois.entry(peer).or_insert(Whois {
            first: now,
            last_sent: None,
            queue: Vec::new(),
        });
        if w.queue.len() >= peer::MAX_QUEUED {
            self.stats.drop_queue_full += 1;
            w.queue.remove(0);
        }
        w.queue.push(plain);
        self.send_whois(now, peer);
    }

    fn send_whois(&mut self, now: Time, peer: NodeAddress) {
        let Some(w) = self.whois.get_mut(&peer) else {
            return;
        };
        if w.last_sent.is_some_and(|t| now.since(t) < WHOIS_RETRY) {
            return;
        }
        let first = w.last_sent.is_none();
        w.last_sent = Some(now);
        // The nearest root first; then every alive root (a moon root knows only the
        // nodes that orbit its moon).
        let alive: Vec<NodeAddress> = self
            .roots
            .iter()
            .copied()
            .filter(|r| self.peers.get(r).is_some_and(|p| roots::root_alive(p, now)))
            .collect();
        let best = self.best_root(now).or_else(|| self.roots.first().copied());
        let ask = match best {
            Some(root) if first || alive.is_empty() => {
                // A moon root may not know the address: ask the nearest planet root too.
                let planet = alive
                    .iter()
                    .copied()
                    .filter(|r| self.peers.get(r).is_some_and(|p| p.role == Role::Planet))
                    .min_by_key(|r| self.peers.get(r).and_then(|p| p.latency));
                let mut ask = vec![root];
                ask.extend(planet.filter(|p| *p != root));
                ask
            }
            _ => alive,
        };
        let msg = Message::Whois {
            addresses: vec![peer],
        };
        for root in ask {
            self.send_message(now, root, &msg);
        }
    }

    fn start_handshake(&mut self, now: Time, peer: NodeAddress) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.last_handshake
            .is_some_and(|t| now.since(t) < REKEY_TIMEOUT)
            && self
                .table
                .tunnel(peer)
                .is_some_and(|t| t.handshake_pending())
        {
            return;
        }
        self.send_handshake(now, peer);
    }

    /// Sends a new HandshakeInit to `peer` now, whatever is pending.
    fn send_handshake(&mut self, now: Time, peer: NodeAddress) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.last_handshake = Some(now);
        }
        match self.table.handshake_packet(now, peer) {
            Ok(packet) => self.route(now, peer, packet),
            Err(e) => self.stats.count(e),
        }
    }

    /// A handshake we started completed: confirm the session to the responder at once
    /// (it keeps the session in reserve until our first Data packet arrives), with a
    /// HELLO for a root, queued messages, or else an empty keepalive.
    fn on_session_ready(&mut self, now: Time, peer: NodeAddress) {
        let lost = self
            .peers
            .get(&peer)
            .and_then(|p| p.last_lost_session)
            .is_some_and(|t| now.since(t) < REKEY_TIMEOUT);
        if lost {
            // Config requests sealed on the session the peer had lost went nowhere.
            self.rerequest_configs_from(now, peer);
        }
        let queued = self.peers.get(&peer).is_some_and(|p| !p.queue.is_empty());
        if self.roots.contains(&peer) {
            if let Some(p) = self.peers.get_mut(&peer) {
                p.last_hello = None;
            }
            self.hello_root(now, peer);
            self.ask_root_for_worlds(now, peer, true);
        }
        if queued {
            self.flush_queue(now, peer);
        } else if !self.roots.contains(&peer) {
            self.hello_via(now, peer, None);
            self.probe_candidates(now, peer);
        }
        if !self.roots.contains(&peer) {
            self.paths_on_session_ready(now, peer);
        }
    }

    fn flush_queue(&mut self, now: Time, peer: NodeAddress) {
        let can = self.table.tunnel(peer).is_some_and(|t| t.can_seal(now));
        if !can {
            return;
        }
        self.probe_candidates(now, peer);
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let queued: Vec<Vec<u8>> = p.queue.drain(..).collect();
        for plain in queued {
            let mut out = Vec::new();
            if self.table.seal_raw(now, peer, &plain, &mut out).is_ok() {
                self.route(now, peer, out);
            }
        }
    }

    /// True when `from` is an endpoint of one of our roots (planet or moon).
    fn is_root_endpoint(&self, from: Endpoint) -> bool {
        self.roots.iter().any(|r| {
            self.peers
                .get(r)
                .is_some_and(|p| p.paths.iter().any(|path| path.endpoint == from))
        })
    }

    /// Sends a finished packet to `peer` over its current link.
    fn route(&mut self, now: Time, peer: NodeAddress, packet: Vec<u8>) {
        match self.link_for(now, peer) {
            Some(Link::Direct(ep)) => self.push_datagram(now, peer, ep, packet),
            Some(Link::Relay(root)) => {
                let ep = self.root_endpoint(now, root);
                if let Some(ep) = ep {
                    self.push_datagram(now, root, ep, packet);
                }
            }
            None => {}
        }
        self.note_link(now, peer);
    }

    /// Queues a datagram to `to`, fragmenting it when larger than the path MTU floor
    /// (control messages are few: they do not wait for a route's probed MTU).
    fn push_datagram(&mut self, now: Time, via: NodeAddress, to: Endpoint, packet: Vec<u8>) {
        let mtu = self.pmtu.floor();
        if packet.len() <= mtu {
            self.push_whole(now, via, to, packet);
            return;
        }
        let id = self.table.random_u64();
        if let Ok(fragments) = wire::fragment(&packet, mtu, id) {
            for contents in fragments {
                self.push_whole(now, via, to, contents);
            }
        }
    }

    /// Queues a datagram to `to` as it is, whatever its size (path MTU probes, and the
    /// fragments [`push_datagram`](Self::push_datagram) cut).
    fn push_whole(&mut self, now: Time, via: NodeAddress, to: Endpoint, packet: Vec<u8>) {
        if let Some(p) = self.peers.get_mut(&via) {
            p.sent_on(now, to);
        }
        self.stats.tx_datagrams += 1;
        self.transmits.push_back(Transmit {
            destination: to,
            contents: packet,
        });
    }

    // ----- path selection -----------------------------------------------------------

    /// How traffic to `peer` goes now.
    fn link_for(&self, now: Time, peer: NodeAddress) -> Option<Link> {
        let p = self.peers.get(&peer);
        if let Some(path) = p.and_then(|p| p.best_path(now)) {
            return Some(Link::Direct(path.endpoint));
        }
        if self.roots.contains(&peer) {
            return self.root_endpoint(now, peer).map(Link::Direct);
        }
        self.best_root(now)
            .or_else(|| self.roots.first().copied())
            .map(Link::Relay)
    }

    /// Where datagrams for `peer` go now: whose path it is (the peer's own, or the
    /// relaying root's) and the endpoint.
    fn route_to(&self, now: Time, peer: NodeAddress) -> Option<(NodeAddress, Endpoint)> {
        match self.link_for(now, peer)? {
            Link::Direct(ep) => Some((peer, ep)),
            Link::Relay(root) => Some((root, self.root_endpoint(now, root)?)),
        }
    }

    fn note_link(&mut self, now: Time, peer: NodeAddress) {
        if self.roots.contains(&peer) {
            return;
        }
        let Some(link) = self.link_for(now, peer) else {
            return;
        };
        if self.links.insert(peer, link) != Some(link) {
            self.event(Event::LinkChanged { peer, link });
            self.probe_path_mtu(now, peer);
        }
    }

    fn event(&mut self, event: Event) {
        if self.events.len() >= MAX_PENDING_OUTPUT {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    fn touch_activity(&mut self, now: Time, peer: NodeAddress) {
        self.peers
            .entry(peer)
            .or_insert_with(|| Peer::new(Role::Leaf))
            .last_activity = Some(now);
    }

    // ----- timers -------------------------------------------------------------------

    fn housekeeping(&mut self, now: Time) {
        // Paths and roots age with time: look at every peer's route again.
        self.peers.touch_all();
        self.table.expire(now);
        self.pmtu.expire(now);
        self.expire_pings(now);
        self.retry_whois(now);
        self.refresh_networks(now);
        self.expire_held_frames(now);
        self.multicast_housekeeping(now);
        self.ask_seeds(now);
        let roots = self.roots.clone();
        for root in &roots {
            self.hello_root(now, *root);
            if self.table.tunnel(*root).is_some_and(|t| t.can_seal(now)) {
                self.ask_root_for_worlds(now, *root, false);
            }
        }
        let addresses: Vec<NodeAddress> = self.peers.keys().copied().collect();
        for peer in addresses {
            self.maintain_peer(now, peer);
        }
        self.forget_idle_peers(now);
        self.forget_gone_paths();
        self.note_online(now);
    }

    fn maintain_peer(&mut self, now: Time, peer: NodeAddress) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let active = p.active(now) || !p.queue.is_empty();
        let silent = match (p.last_tx, p.last_rx) {
            (Some(tx), Some(rx)) => tx > rx && now.since(rx) >= SILENCE_REHANDSHAKE,
            (Some(_), None) => true,
            _ => false,
        };
        let handshake_idle = p
            .last_handshake
            .is_none_or(|t| now.since(t) >= REKEY_TIMEOUT);
        let wants = self
            .table
            .tunnel(peer)
            .is_some_and(|t| t.wants_handshake(now));
        if active && handshake_idle && (wants || silent) {
            self.start_handshake(now, peer);
        }
        if !self.roots.contains(&peer) {
            self.maintain_paths(now, peer);
            self.check_direct_path(now, peer);
            if active {
                self.probe_path_mtu(now, peer);
            }
        }
        // Keepalives on the direct path of active leaves.
        let keepalive_to = self.peers.get(&peer).and_then(|p| {
            let path = p.best_path(now)?;
            let idle = path.last_tx.is_none_or(|t| now.since(t) >= KEEPALIVE);
            (active && !p.role.is_root() && idle).then_some(path.endpoint)
        });
        if let Some(ep) = keepalive_to {
            self.hello_via(now, peer, Some(ep));
        }
        let keep: Vec<Endpoint> = if self.roots.contains(&peer) {
            self.configured_endpoints(peer)
        } else {
            self.retained_candidates(now, peer)
        };
        if let Some(p) = self.peers.get_mut(&peer) {
            p.expire_paths(now, &keep);
        }
        self.note_link(now, peer);
    }

    /// Drops leaves that have been silent for [`PEER_FORGET`] with no session and no
    /// work pending, so state does not grow with every address ever seen.
    fn forget_idle_peers(&mut self, now: Time) {
        let stale = |t: Option<Time>| t.is_none_or(|t| now.since(t) >= PEER_FORGET);
        let pinged: Vec<NodeAddress> = self.pings.values().map(|p| p.peer).collect();
        let forget: Vec<NodeAddress> = self
            .peers
            .iter()
            .filter(|(a, p)| {
                !p.role.is_root()
                    && p.queue.is_empty()
                    && !pinged.contains(a)
                    && stale(p.last_rx)
                    && stale(p.last_activity)
                    && stale(p.last_handshake)
                    && !self.table.tunnel(**a).is_some_and(|t| t.can_seal(now))
            })
            .map(|(a, _)| *a)
            .collect();
        for a in forget {
            self.dirty = true;
            self.peers.remove(&a);
            self.links.remove(&a);
            self.pmtu.forget(a);
            self.table.remove_peer(a);
        }
        // Tunnels nobody tracks as a peer (e.g. refused handshakes) go too.
        let peers = &self.peers;
        self.table.forget_idle(|a| peers.contains_key(&a));
    }

    fn retry_whois(&mut self, now: Time) {
        let pending: Vec<NodeAddress> = self.whois.keys().copied().collect();
        for peer in pending {
            let gave_up = self
                .whois
                .get(&peer)
                .is_some_and(|w| now.since(w.first) >= WHOIS_GIVE_UP);
            if gave_up {
                if let Some(w) = self.whois.remove(&peer) {
                    self.stats.drop_unreachable += w.queue.len() as u64;
                }
                self.event(Event::Unreachable(peer));
            } else {
                self.send_whois(now, peer);
            }
        }
    }

    fn expire_pings(&mut self, now: Time) {
        let lost: Vec<u64> = self
            .pings
            .iter()
            .filter(|(_, p)| now.since(p.sent) >= PING_TIMEOUT)
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            if let Some(p) = self.pings.remove(&id) {
                self.event(Event::PingLost { peer: p.peer, id });
            }
        }
    }
}
