//! The recorded conversation the node and root fuzz targets replay: a root and two
//! nodes behind port-restricted NATs in the simulator, relaying first and then going
//! direct, with frames (some fragmented), pings and the first rekey of each session.
//!
//! Every input the fuzzed node (`N`) and the root (`R`) received is recorded in order,
//! timers and commands included. Both cores are deterministic (their RNGs are seeded,
//! time is an input), so a fresh core built with the same identity, seed and start time
//! and fed the same inputs makes the same random choices and accepts the same genuine
//! packets. That is what lets the fuzzer mutate *real* traffic and reach the code behind
//! authentication, instead of stopping at the header parser.
//!
//! Contract: [`scenario`] is computed once per process and is the same in every process
//! and build of the same source (the seed corpora index into its traces). If the
//! protocol changes, the corpora still run but lose depth: regenerate them (see
//! `tests/fuzz_smoke.rs`).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;
use std::time::Duration;

use skylan::crypto::Identity;
use skylan::node::switch::SwitchSettings;
use skylan::node::{self, Node, NodeConfig};
use skylan::root::Root;
use skylan::sim::cores::NodeHost;
use skylan::sim::mesh::{PORT, planet, test_identity};
use skylan::sim::{AccessLink, Host, HostId, NatKind, Sim};
use skylan::types::{Endpoint, Mac, NetworkId, NodeAddress, Time, Transmit};
use skylan::wire::{self, Outer, Reassembler};
use skylan::world::{RootSpec, World};

/// The network the nodes exchange frames on.
pub const NETWORK: u64 = 0x8056_c2e2_1c00_0001;
/// Seed of the fuzzed node's RNG.
pub const NODE_SEED: [u8; 32] = [0x4e; 32];
/// Seed of the root's RNG.
pub const ROOT_SEED: [u8; 32] = [0x52; 32];
/// Seed of the peer node's RNG.
const PEER_SEED: [u8; 32] = [0x50; 32];
/// Seed of the simulator (NAT ports).
const SIM_SEED: u64 = 0x5eed;
/// How long the conversation runs: past the first rekey of every session.
const DURATION: Duration = Duration::from_secs(135);

/// One input a core received, in the order it received them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A datagram on the core's socket.
    Datagram {
        /// When it arrived.
        now: Time,
        /// The socket it arrived on.
        local: Endpoint,
        /// Its source as the core saw it.
        from: Endpoint,
        /// The UDP payload.
        bytes: Vec<u8>,
    },
    /// A timer call.
    Timeout {
        /// The time passed in.
        now: Time,
    },
    /// `Node::ping` (node only).
    Ping {
        /// When it was called.
        now: Time,
        /// Whom to ping.
        peer: NodeAddress,
    },
}

impl Input {
    /// The time the input happened.
    pub fn now(&self) -> Time {
        match self {
            Input::Datagram { now, .. } | Input::Timeout { now } | Input::Ping { now, .. } => *now,
        }
    }
}

/// A recorded datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The socket it arrived on.
    pub local: Endpoint,
    /// Its source as the core saw it.
    pub from: Endpoint,
    /// The UDP payload.
    pub bytes: Vec<u8>,
}

/// Everything a core received and sent during the conversation.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    /// Inputs in order.
    pub inputs: Vec<Input>,
    /// What the core sent after each input, by input position.
    pub outputs: Vec<(usize, Transmit)>,
    /// The datagram inputs, in order (what `Deliver`, `Mutate` and `Splice` ops index).
    pub datagrams: Vec<Recorded>,
    /// Whole packets: the datagrams that are not fragments, then every packet the
    /// fragments reassemble to (what `Fragments` ops index).
    pub wholes: Vec<Recorded>,
}

impl Trace {
    fn index(&mut self) {
        let mut reassembler = Reassembler::default();
        let mut joined = Vec::new();
        for input in &self.inputs {
            let Input::Datagram {
                now,
                local,
                from,
                bytes,
            } = input
            else {
                continue;
            };
            let recorded = Recorded {
                local: *local,
                from: *from,
                bytes: bytes.clone(),
            };
            match wire::parse(bytes) {
                Ok((header, outer @ Outer::Fragment { .. })) => {
                    let piece = outer.piece().expect("a fragment");
                    if let Some(whole) =
                        reassembler.insert(*now, wire::Arrival::KnownPath, header.src, piece)
                    {
                        joined.push(Recorded {
                            bytes: whole,
                            ..recorded.clone()
                        });
                    }
                }
                _ => self.wholes.push(recorded.clone()),
            }
            self.datagrams.push(recorded);
        }
        self.wholes.extend(joined);
    }
}

/// The recorded conversation. See the module documentation.
pub struct Scenario {
    /// The planet (one root).
    pub world: World,
    /// Identity of the root `R` (test pool #0).
    pub root_identity: Identity,
    /// Identity of the fuzzed node `N` (test pool #1).
    pub node_identity: Identity,
    /// Address of the peer node `P` (test pool #2).
    pub peer: NodeAddress,
    /// When the cores were built.
    pub start: Time,
    /// Everything `N` received.
    pub node: Trace,
    /// Everything `R` received.
    pub root: Trace,
    /// The Ethernet frames `P` sent to `N` on [`NETWORK`], each unique.
    pub frames: Vec<Vec<u8>>,
    /// Every endpoint that appeared in the conversation (sockets, NAT mappings).
    pub endpoints: Vec<Endpoint>,
}

impl Scenario {
    /// The network of the conversation.
    pub fn network(&self) -> NetworkId {
        // Invariant: NETWORK's controller part (8056c2e21c) is not a reserved address.
        NetworkId::from_u64(NETWORK).expect("the scenario network ID is valid")
    }

    /// A fresh node core in the state `N` was in before its first input.
    pub fn fresh_node(&self) -> Node {
        let mut node = Node::new(
            NodeConfig {
                identity: self.node_identity.clone(),
                world: self.world.clone(),
                moons: Vec::new(),
                seed: NODE_SEED,
                phys_mtu: node::DEFAULT_PHYS_MTU,
            },
            self.start,
        );
        node.join(self.start, self.network());
        let members = [self.node_address(), self.peer];
        node.set_network(
            self.network(),
            1,
            SwitchSettings::open(&members),
            None,
            None,
        );
        node
    }

    /// A fresh root core in the state `R` was in before its first input.
    pub fn fresh_root(&self) -> Root {
        Root::new(
            self.root_identity.clone(),
            Some(&self.world),
            ROOT_SEED,
            self.start,
        )
    }

    /// Address of `N`.
    pub fn node_address(&self) -> NodeAddress {
        self.node_identity.public().address()
    }

    /// Address of `R`.
    pub fn root_address(&self) -> NodeAddress {
        self.root_identity.public().address()
    }
}

/// The conversation, recorded on first use.
pub fn scenario() -> &'static Scenario {
    static SCENARIO: OnceLock<Scenario> = OnceLock::new();
    SCENARIO.get_or_init(record)
}

/// A core that records its inputs and outputs.
struct Recorder<H> {
    inner: H,
    trace: Trace,
}

impl<H: Host> Host for Recorder<H> {
    fn handle_datagram(&mut self, now: Time, local: Endpoint, from: Endpoint, data: &[u8]) {
        self.trace.inputs.push(Input::Datagram {
            now,
            local,
            from,
            bytes: data.to_vec(),
        });
        self.inner.handle_datagram(now, local, from, data);
    }
    fn handle_timeout(&mut self, now: Time) {
        self.trace.inputs.push(Input::Timeout { now });
        self.inner.handle_timeout(now);
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.inner.poll_transmit()?;
        let at = self.trace.inputs.len().saturating_sub(1);
        self.trace.outputs.push((at, t.clone()));
        Some(t)
    }
    fn poll_timeout(&self) -> Option<Time> {
        self.inner.poll_timeout()
    }
}

/// A frame unique to `tag`, with a local experimental ethertype.
pub fn frame(tag: u16, len: usize, from: NodeAddress, to: NodeAddress) -> Vec<u8> {
    let network = NetworkId::from_u64(NETWORK).expect("the scenario network ID is valid");
    let mut f: Vec<u8> = (0..len.max(16)).map(|i| (i as u8) ^ (tag as u8)).collect();
    f[..6].copy_from_slice(&Mac::for_member(to, network).0);
    f[6..12].copy_from_slice(&Mac::for_member(from, network).0);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f[14..16].copy_from_slice(&tag.to_be_bytes());
    f
}

fn record() -> Scenario {
    let root_identity = test_identity(0);
    let node_identity = test_identity(1);
    let peer_identity = test_identity(2);
    let peer = peer_identity.public().address();
    let root_ip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
    let world = planet(vec![RootSpec {
        identity: root_identity.public().clone(),
        endpoints: vec![Endpoint((root_ip, PORT).into())],
    }]);
    let network = NetworkId::from_u64(NETWORK).expect("the scenario network ID is valid");

    let mut sim = Sim::new(SIM_SEED);
    let start = sim.now();
    let link = AccessLink::default();
    let root = Recorder {
        inner: Root::new(root_identity.clone(), Some(&world), ROOT_SEED, start),
        trace: Trace::default(),
    };
    let r = sim.add_host(root, root_ip, PORT, link, None);
    let node_config = |identity: &Identity, seed| NodeConfig {
        identity: identity.clone(),
        world: world.clone(),
        moons: Vec::new(),
        seed,
        phys_mtu: node::DEFAULT_PHYS_MTU,
    };
    let mut n_core = Node::new(node_config(&node_identity, NODE_SEED), start);
    n_core.join(start, network);
    let members = [node_identity.public().address(), peer];
    n_core.set_network(network, 1, SwitchSettings::open(&members), None, None);
    let n = add_behind_nat(
        &mut sim,
        Recorder {
            inner: NodeHost::new(n_core),
            trace: Trace::default(),
        },
        1,
        link,
    );
    let mut p_core = Node::new(node_config(&peer_identity, PEER_SEED), start);
    p_core.join(start, network);
    p_core.set_network(network, 1, SwitchSettings::open(&members), None, None);
    let p = add_behind_nat(&mut sim, NodeHost::new(p_core), 2, link);
    // P tells the peers it talks to its LAN endpoint (PushDirectPaths), which N probes
    // in vain: N's own LAN has no 192.0.2.3.
    let p_local = sim.endpoint(p);
    sim.with_host::<NodeHost, _>(p, |h, now| h.node.set_local_endpoints(now, vec![p_local]));
    let n_address = node_identity.public().address();

    let mut frames = Vec::new();
    let mut send = |sim: &mut Sim, len: usize| {
        let f = frame(frames.len() as u16, len, peer, n_address);
        sim.with_host::<NodeHost, _>(p, |h, now| h.node.handle_tap_frame(now, network, &f))
            .expect("the scenario frame is accepted");
        frames.push(f);
    };
    let ping_from_n = |sim: &mut Sim| {
        sim.with_host::<Recorder<NodeHost>, _>(n, |h, now| {
            h.trace.inputs.push(Input::Ping { now, peer });
            h.inner.node.ping(now, peer)
        })
        .expect("the scenario ping is accepted");
    };

    // Both nodes reach the root.
    sim.run_for(Duration::from_secs(2));
    // Relayed: P looks N up, handshakes through R, sends frames (the large ones in
    // fragments); N answers a ping; R introduces the two.
    send(&mut sim, 64);
    send(&mut sim, 1400);
    sim.run_for(Duration::from_millis(300));
    ping_from_n(&mut sim);
    send(&mut sim, 3000);
    sim.run_for(Duration::from_secs(3));
    // Direct now.
    send(&mut sim, 200);
    ping_from_n(&mut sim);
    sim.run_for(Duration::from_secs(1));
    send(&mut sim, 1500);
    // Keep the pair active until past the first rekeys.
    while sim.now().since(start) < DURATION {
        sim.run_for(Duration::from_secs(15));
        send(&mut sim, 100);
    }
    sim.run_for(Duration::from_secs(1));
    ping_from_n(&mut sim);
    sim.run_for(Duration::from_secs(1));

    let mut endpoints = vec![sim.endpoint(r), sim.endpoint(n), sim.endpoint(p)];
    let mut node = std::mem::take(&mut sim.host_mut::<Recorder<NodeHost>>(n).trace);
    let mut root = std::mem::take(&mut sim.host_mut::<Recorder<Root>>(r).trace);
    node.index();
    root.index();
    for input in node.inputs.iter().chain(&root.inputs) {
        if let Input::Datagram { from, local, .. } = input {
            endpoints.push(*from);
            endpoints.push(*local);
        }
    }
    for (_, t) in node.outputs.iter().chain(&root.outputs) {
        endpoints.push(t.destination);
    }
    endpoints.sort_by_key(|e| e.0);
    endpoints.dedup();
    Scenario {
        world,
        root_identity,
        node_identity,
        peer,
        start,
        node,
        root,
        frames,
        endpoints,
    }
}

fn add_behind_nat<H: Host>(sim: &mut Sim, host: H, n: u8, link: AccessLink) -> HostId {
    let nat = sim.add_nat(
        NatKind::PortRestricted,
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, n)),
    );
    let private = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1 + n));
    sim.add_host(host, private, PORT, link, Some(nat))
}
