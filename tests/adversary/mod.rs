//! Shared pieces of the adversarial scenarios: small helpers over the simulator and
//! the `Attacker` host (a real session table with a pool identity that can complete
//! handshakes, seal any message and act as a lying root).

// Each test binary uses a different part of the helpers.
#![allow(dead_code)]

use skylan::crypto::identity::{Identity, PublicIdentity};
use skylan::crypto::table::{InitAnswer, SessionTable};
use skylan::node::switch::{Admission, MemberInfo, SwitchSettings};
use skylan::node::{self, Event, Link as Via, Node, NodeConfig};
use skylan::sim::cores::NodeHost;
#[allow(unused_imports)] // not every test binary forges handshakes
pub use skylan::sim::forge::{handshake_init, random_address, throwaway_init};
use skylan::sim::mesh::{Mesh, PORT, Placement, planet, test_identity};
use skylan::sim::{AccessLink, Captured, Host, HostId, Sim};
use skylan::types::{Endpoint, Mac, NetworkId, NodeAddress, Time, Transmit};
use skylan::wire::{self, Header, Kind, Message, OkBody, Outer};
use skylan::world::{RootSpec, World};
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

pub const SECOND: Duration = Duration::from_secs(1);
pub const MS: Duration = Duration::from_millis(1);

/// First pool identity the attackers use (meshes use the low ones for roots and nodes).
pub const ATTACKER_POOL: usize = 40;

// ----- helpers ---------------------------------------------------------------------

pub fn link() -> AccessLink {
    AccessLink::default()
}

pub fn network() -> NetworkId {
    "8056c2e21c000001".parse().unwrap()
}

pub fn frame(tag: u8, len: usize) -> Vec<u8> {
    let mut f = vec![tag; len.max(14)];
    f[12] = 0x88;
    f[13] = 0xb5; // a local experimental ethertype
    f
}

pub fn ep(s: &str) -> Endpoint {
    s.parse().unwrap()
}

/// Where off-path attackers claim to send from; nobody holds it.
pub fn spoofer() -> Endpoint {
    ep("203.0.113.250/4444")
}

pub fn header(bytes: &[u8]) -> Option<Header> {
    Header::parse(bytes).ok()
}

pub fn is_kind(c: &Captured, kind: Kind, src: NodeAddress, dest: NodeAddress) -> bool {
    header(&c.bytes).is_some_and(|h| h.kind == kind && h.src == src && h.dest == dest)
}

pub fn stats(sim: &Sim, id: HostId) -> node::NodeStats {
    sim.host::<NodeHost>(id).node.stats()
}

pub fn peer_info(sim: &Sim, id: HostId, peer: NodeAddress) -> Option<node::PeerInfo> {
    sim.host::<NodeHost>(id)
        .node
        .peers(sim.now())
        .into_iter()
        .find(|p| p.address == peer)
}

/// Starts a ping from `from` to `to`; returns its ID.
pub fn start_ping(sim: &mut Sim, from: HostId, to: NodeAddress) -> u64 {
    sim.with_host::<NodeHost, _>(from, |h, now| h.node.ping(now, to))
        .expect("ping accepted")
}

/// The outcome of ping `id` if it is known yet.
pub fn ping_outcome(sim: &Sim, from: HostId, id: u64) -> Option<Option<(Duration, Via)>> {
    sim.host::<NodeHost>(from)
        .events
        .iter()
        .find_map(|e| match e {
            Event::Pong {
                id: got, rtt, link, ..
            } if *got == id => Some(Some((*rtt, *link))),
            Event::PingLost { id: got, .. } if *got == id => Some(None),
            _ => None,
        })
}

/// Pings and waits up to `max` for the answer.
pub fn ping(
    sim: &mut Sim,
    from: HostId,
    to: NodeAddress,
    max: Duration,
) -> Option<(Duration, Via)> {
    let id = start_ping(sim, from, to);
    sim.run_until_true(max, |s| ping_outcome(s, from, id).is_some());
    ping_outcome(sim, from, id).flatten()
}

/// Runs for `duration` and calls `f` with every datagram right after its delivery
/// (capture must be on), so the test can react before anything else happens: the way
/// an on-path attacker sees a packet and answers at once.
pub fn intercept(sim: &mut Sim, duration: Duration, mut f: impl FnMut(&mut Sim, &Captured)) {
    let deadline = sim.now() + duration;
    loop {
        let seen = sim.captured().len();
        let left = deadline.since(sim.now());
        let hit = sim.run_until_true(left, |s| s.captured().len() > seen);
        let fresh = sim.take_captured();
        for c in &fresh {
            f(sim, c);
        }
        if !hit || sim.now() >= deadline {
            return;
        }
    }
}

/// How long until `works` first holds, trying up to `tries` times (each try takes
/// the simulated time it needs, e.g. a ping's wait).
pub fn time_until(
    sim: &mut Sim,
    tries: usize,
    mut works: impl FnMut(&mut Sim) -> bool,
) -> Option<Duration> {
    let start = sim.now();
    (0..tries)
        .find(|_| works(sim))
        .map(|_| sim.now().since(start))
}

/// Hands `from`'s TAP a frame of `network()`, addressed from its member MAC to `to`'s
/// (`from` must have joined with [`join`]).
pub fn send_frame(sim: &mut Sim, from: HostId, to: NodeAddress, f: &[u8]) {
    let mut f = f.to_vec();
    let me = sim.host::<NodeHost>(from).node.address();
    f[..6].copy_from_slice(&Mac::for_member(to, network()).0);
    f[6..12].copy_from_slice(&Mac::for_member(me, network()).0);
    sim.with_host::<NodeHost, _>(from, |h, now| h.node.handle_tap_frame(now, network(), &f))
        .expect("frame accepted by the switch");
}

/// Joins `network()` and applies a config listing every node of the mesh (no controller:
/// these tests attack the transport, not the configuration).
pub fn join(m: &mut Mesh, id: HostId) {
    let members: Vec<MemberInfo> = m
        .nodes
        .iter()
        .map(|&n| MemberInfo {
            address: m.address(n),
            ips: Vec::new(),
        })
        .collect();
    m.sim.with_host::<NodeHost, _>(id, |h, now| {
        h.node.join(now, network());
        h.node.set_network(
            network(),
            1,
            SwitchSettings {
                enable_broadcast: true,
                multicast_limit: 32,
                members,
                bridges: Vec::new(),
                admission: Admission::Listed,
            },
            None,
            None,
        );
    });
}

pub fn node_config(identity: Identity, world: &World, seed: u8) -> NodeConfig {
    NodeConfig {
        identity,
        world: world.clone(),
        moons: Vec::new(),
        seed: [seed; 32],
        phys_mtu: node::DEFAULT_PHYS_MTU,
    }
}

pub fn public_ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, last))
}

/// A settled mesh of one root and two public nodes: the mesh, A, B and their addresses.
pub fn public_pair(seed: u64) -> (Mesh, HostId, HostId, NodeAddress, NodeAddress) {
    let mut m = Mesh::build(seed, &[link()], &[Placement::Public; 2], link());
    m.settle();
    let (a, b) = (m.nodes[0], m.nodes[1]);
    let (a_addr, b_addr) = (m.address(a), m.address(b));
    (m, a, b, a_addr, b_addr)
}

/// The datagram for `outer` from `src` to `dest`.
pub fn packet(outer: Outer<'_>, dest: NodeAddress, src: NodeAddress) -> Vec<u8> {
    let mut out = Vec::new();
    outer.emit(dest, src, &mut out);
    out
}

/// A planet whose one root (`root`, at 198.51.100.1) is added by `add_root`, and `n`
/// public nodes (pool identities 1..=n at 198.51.100.101..), settled.
pub fn small_world(
    sim: &mut Sim,
    root: &PublicIdentity,
    add_root: impl FnOnce(&mut Sim, &World),
    n: u8,
) -> Vec<HostId> {
    let world = planet(vec![RootSpec {
        identity: root.clone(),
        endpoints: vec![Endpoint((public_ip(1), PORT).into())],
    }]);
    add_root(sim, &world);
    let now = sim.now();
    let nodes: Vec<HostId> = (0..n)
        .map(|i| {
            let node = Node::new(
                node_config(test_identity(1 + usize::from(i)), &world, i),
                now,
            );
            sim.add_host(NodeHost::new(node), public_ip(101 + i), PORT, link(), None)
        })
        .collect();
    let online = sim.run_until_true(30 * SECOND, |s| {
        nodes
            .iter()
            .all(|&n| s.host::<NodeHost>(n).node.status(s.now()).online)
    });
    assert!(online, "the nodes reached the root");
    nodes
}

// ----- the attacker host -----------------------------------------------------------

/// A host run by the attacker: a valid identity and a real session table, so it can
/// handshake like a node and then seal any message it wants. It logs what it receives
/// and can play a (malicious) root: answer HELLO with OK and WHOIS with a chosen list.
pub struct Attacker {
    pub table: SessionTable,
    pub out: VecDeque<Transmit>,
    /// Every datagram received: source and bytes.
    pub received: Vec<(Endpoint, Vec<u8>)>,
    /// When set, HELLOs are answered with OK (keeps nodes using us as a root).
    pub answer_hello: bool,
    /// When set, every WHOIS is answered with exactly these identities.
    pub whois_answer: Option<Vec<[u8; 69]>>,
    /// Confirm a completed handshake at once with an ECHO (what a node does).
    pub confirm: bool,
}

impl Attacker {
    pub fn new(identity: Identity, seed: u8) -> Self {
        Self {
            table: SessionTable::new(identity, [seed; 32]),
            out: VecDeque::new(),
            received: Vec::new(),
            answer_hello: false,
            whois_answer: None,
            confirm: true,
        }
    }

    pub fn address(&self) -> NodeAddress {
        self.table.address()
    }

    /// Starts a handshake with `peer` at `to`; the session is confirmed by an ECHO as
    /// soon as the response arrives.
    pub fn handshake(&mut self, now: Time, peer: &PublicIdentity, to: Endpoint) {
        self.table.add_peer(peer.clone());
        let packet = self
            .table
            .handshake_packet(now, peer.address())
            .expect("attacker knows the identity");
        self.out.push_back(Transmit {
            destination: to,
            contents: packet,
        });
    }

    /// Seals `msg` for `peer` into a datagram (not sent).
    pub fn seal(&mut self, now: Time, peer: NodeAddress, msg: &Message<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        self.table
            .seal(now, peer, msg, &mut out)
            .expect("attacker has a session");
        out
    }

    pub fn send(&mut self, now: Time, peer: NodeAddress, msg: &Message<'_>, to: Endpoint) {
        let contents = self.seal(now, peer, msg);
        self.out.push_back(Transmit {
            destination: to,
            contents,
        });
    }

    pub fn can_seal(&self, now: Time, peer: NodeAddress) -> bool {
        self.table.tunnel(peer).is_some_and(|t| t.can_seal(now))
    }

    pub fn answer(
        &mut self,
        now: Time,
        peer: NodeAddress,
        counter: u64,
        from: Endpoint,
        plain: &[u8],
    ) {
        let Ok(msg) = Message::parse(plain) else {
            return;
        };
        let reply = match msg {
            Message::Hello(hello) if self.answer_hello => Message::hello_ok(counter, &hello, from),
            Message::Whois { .. } => match self.whois_answer.clone() {
                Some(ids) => Message::Ok {
                    in_re_counter: counter,
                    body: OkBody::Whois(ids),
                },
                None => return,
            },
            Message::Echo(data) => Message::Ok {
                in_re_counter: counter,
                body: OkBody::Echo(data),
            },
            _ => return,
        };
        self.send(now, peer, &reply, from);
    }
}

impl Host for Attacker {
    fn handle_datagram(&mut self, now: Time, _local: Endpoint, from: Endpoint, data: &[u8]) {
        self.received.push((from, data.to_vec()));
        let Ok((header, outer)) = wire::parse(data) else {
            return;
        };
        if header.dest != self.address() {
            return;
        }
        match outer {
            Outer::HandshakeInit { .. } => {
                if let Ok(InitAnswer::Session { reply, .. }) =
                    self.table.on_handshake_init(now, from, data)
                {
                    self.out.push_back(Transmit {
                        destination: from,
                        contents: reply,
                    });
                }
            }
            Outer::HandshakeResp {
                sender_index,
                receiver_index,
                noise,
            } => {
                let done =
                    self.table
                        .on_handshake_resp(now, &header, sender_index, receiver_index, noise);
                if let (Ok(peer), true) = (done, self.confirm) {
                    self.send(now, peer, &Message::Echo(&[]), from);
                }
            }
            Outer::Data { .. } => {
                let mut buf = data.to_vec();
                let Ok(opened) = self.table.open(now, &mut buf) else {
                    return;
                };
                let (peer, counter, plain) =
                    (opened.peer, opened.counter, opened.plaintext.to_vec());
                self.answer(now, peer, counter, from, &plain);
            }
            _ => {}
        }
    }
    fn handle_timeout(&mut self, _now: Time) {}
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }
    fn poll_timeout(&self) -> Option<Time> {
        None
    }
}

/// Adds an attacker host with pool identity `ATTACKER_POOL + n` at `ip`.
pub fn add_attacker(sim: &mut Sim, n: usize, ip: IpAddr) -> HostId {
    let attacker = Attacker::new(test_identity(ATTACKER_POOL + n), 0xa0 + n as u8);
    sim.add_host(attacker, ip, PORT, link(), None)
}

/// Has attacker `att` handshake with `peer` at `to` and waits until it can seal.
pub fn attacker_connects(sim: &mut Sim, att: HostId, peer: &PublicIdentity, to: Endpoint) {
    sim.with_host::<Attacker, _>(att, |h, now| h.handshake(now, peer, to));
    let address = peer.address();
    let ok = sim.run_until_true(5 * SECOND, |s| {
        s.host::<Attacker>(att).can_seal(s.now(), address)
    });
    assert!(ok, "the attacker got a session with {address}");
    sim.run_for(SECOND); // the confirming ECHO arrives and is answered
}

pub fn node_identity(m: &Mesh, index: usize) -> PublicIdentity {
    test_identity(m.roots.len() + index).public().clone()
}
