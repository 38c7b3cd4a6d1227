//! The frame path through the node core: two [`Node`]s with an established direct
//! session, driven by hand (each one's `poll_transmit` output handed to the other's
//! `handle_datagram`; a root only introduces them during setup).
//!
//! - `inside`: `handle_tap_buffer` → `poll_transmit` (a TAP frame copied into a read
//!   buffer, through the switch and rules, sealed where it lies, fragmented: the data
//!   plane's inside path as the packet threads drive it);
//! - `outside`: `handle_datagram_in_place` → `poll_tap_at` (datagrams reassembled,
//!   opened, switched, the frame left where it was opened: the outside path);
//! - `round trip`: both, one frame from A's TAP to B's.
//!
//! Buffers go back with `recycle`, as a driver gives them back, and reassembly reuses
//! its own, so the steady state allocates no buffers. Each at a 1,400-byte frame (more than fits one
//! datagram at the default 1,432-byte UDP payload, so it travels as two fragments, as
//! it does in the daemon), at the largest frame that fits one datagram, and at a full
//! frame of a 2,756-byte-MTU network (2,770 bytes, two fragments). Time stands still
//! during a measurement, so no timer work is included.
//!
//! Run: `cargo bench --bench node` (add `-- --quick` for a rough pass). Numbers only.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use skylan::node::switch::{Admission, MemberInfo, SwitchSettings};
use skylan::node::{self, FRAME_HEADROOM, Link, Node, NodeConfig};
use skylan::root::Root;
use skylan::sim::mesh::{PORT, planet, test_identity};
use skylan::types::{Endpoint, Mac, NetworkId, NodeAddress, Time, Transmit};
use skylan::wire;
use skylan::world::RootSpec;

/// Bytes a frame gains on the way to a datagram: Data prefix, Frame message header
/// (verb included), tag.
const OVERHEAD: usize = wire::DATA_PREFIX_LEN + wire::FRAME_HEADER_LEN + wire::TAG_LEN;
/// The largest frame that travels in one datagram at the default path MTU.
const UNFRAGMENTED: usize = node::DEFAULT_PHYS_MTU - OVERHEAD;
/// A full frame of a network with a 2,756-byte MTU (ZeroTier's default): MTU plus header.
const FULL_MTU_FRAME: usize = 2756 + 14;

fn endpoint(last: u8) -> Endpoint {
    Endpoint((IpAddr::V4(Ipv4Addr::new(198, 51, 100, last)), PORT).into())
}

/// A root and two public nodes that talk directly.
struct Pair {
    root: Root,
    a: Node,
    b: Node,
    now: Time,
    network: NetworkId,
    /// A's TAP read buffer (the seal may take it and leave another).
    read: Vec<u8>,
}

impl Pair {
    const ROOT: u8 = 1;
    const A: u8 = 101;
    const B: u8 = 102;

    fn establish() -> Pair {
        let root_identity = test_identity(0);
        let world = planet(vec![RootSpec {
            identity: root_identity.public().clone(),
            endpoints: vec![endpoint(Self::ROOT)],
        }]);
        let now = Time::from_millis(1_000);
        let node = |i: usize, seed: u8| {
            Node::new(
                NodeConfig {
                    identity: test_identity(i),
                    world: world.clone(),
                    moons: Vec::new(),
                    seed: [seed; 32],
                    phys_mtu: node::DEFAULT_PHYS_MTU,
                },
                now,
            )
        };
        let network = NetworkId::new(test_identity(1).public().address(), 1);
        let mut pair = Pair {
            root: Root::new(root_identity, Some(&world), [9; 32], now),
            a: node(1, 1),
            b: node(2, 2),
            now,
            network,
            read: Vec::new(),
        };
        let members: Vec<MemberInfo> = [pair.a.address(), pair.b.address()]
            .into_iter()
            .map(|address| MemberInfo {
                address,
                ips: Vec::new(),
            })
            .collect();
        for n in [&mut pair.a, &mut pair.b] {
            let settings = SwitchSettings {
                enable_broadcast: true,
                multicast_limit: 0,
                members: members.clone(),
                bridges: Vec::new(),
                admission: Admission::Listed,
            };
            n.join(now, network);
            n.set_network(network, 1, settings, None, None);
        }
        let b = pair.b.address();
        // Reach the root, look B up and ping it (relayed), let the RENDEZVOUS work,
        // then ping until the answer comes back directly.
        for step in 0..100 {
            pair.tick(Duration::from_millis(100));
            if step % 10 == 5 {
                pair.a.ping(pair.now, b).expect("ping B");
            }
            if pair.link(b) == Some(Link::Direct(endpoint(Self::B))) && step > 40 {
                return pair;
            }
        }
        panic!("A and B did not go direct: {:?}", pair.link(b));
    }

    fn link(&self, peer: NodeAddress) -> Option<Link> {
        self.a
            .peers(self.now)
            .into_iter()
            .find(|p| p.address == peer)
            .and_then(|p| p.link)
    }

    /// Advances the clock, runs every timer and delivers until the network is quiet.
    fn tick(&mut self, step: Duration) {
        self.now = self.now + step;
        self.root.handle_timeout(self.now);
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
        let mut queue: VecDeque<(Endpoint, Transmit)> = VecDeque::new();
        loop {
            self.collect(&mut queue);
            let Some((from, t)) = queue.pop_front() else {
                break;
            };
            let to = t.destination;
            match to {
                _ if to == endpoint(Self::ROOT) => {
                    self.root.handle_datagram(self.now, to, from, &t.contents)
                }
                _ if to == endpoint(Self::A) => {
                    self.a.handle_datagram(self.now, to, from, &t.contents)
                }
                _ if to == endpoint(Self::B) => {
                    self.b.handle_datagram(self.now, to, from, &t.contents)
                }
                _ => {}
            }
        }
        while self.b.poll_event().is_some() {}
        while self.a.poll_event().is_some() {}
        while let Some(t) = self.b.poll_tap() {
            self.b.recycle(t.frame);
        }
    }

    fn collect(&mut self, queue: &mut VecDeque<(Endpoint, Transmit)>) {
        while let Some(t) = self.root.poll_transmit() {
            queue.push_back((endpoint(Self::ROOT), t));
        }
        while let Some(t) = self.a.poll_transmit() {
            queue.push_back((endpoint(Self::A), t));
        }
        while let Some(t) = self.b.poll_transmit() {
            queue.push_back((endpoint(Self::B), t));
        }
    }

    /// A's TAP hands it `frame` (for B) as the packet threads do: copied into a read
    /// buffer with room before it, sealed there; returns the datagrams.
    fn inside(&mut self, frame: &[u8], out: &mut Vec<Vec<u8>>) {
        let read = &mut self.read;
        read.clear();
        read.resize(FRAME_HEADROOM, 0);
        read.extend_from_slice(frame);
        self.a
            .handle_tap_buffer(self.now, self.network, read)
            .expect("frame accepted");
        while let Some(t) = self.a.poll_transmit() {
            out.push(t.contents);
        }
    }

    /// Gives sent datagrams back to A, as a driver does once they are on the wire.
    fn sent(&mut self, datagrams: &mut Vec<Vec<u8>>) {
        for d in datagrams.drain(..) {
            self.a.recycle(d);
        }
    }

    /// B receives A's datagrams, opened where they lie as the packet threads do;
    /// returns the length of the frame they carried.
    fn outside(&mut self, datagrams: &mut [Vec<u8>]) -> usize {
        for d in datagrams {
            self.b
                .handle_datagram_in_place(self.now, endpoint(Self::B), endpoint(Self::A), d);
        }
        let (frame, start) = self.b.poll_tap_at().expect("the frame arrived");
        let len = frame.frame.len() - start;
        self.b.recycle(frame.frame);
        len
    }
}

/// A frame from A's member MAC to B's.
fn frame(pair: &Pair, len: usize) -> Vec<u8> {
    let mut f = vec![0x5a; len];
    f[..6].copy_from_slice(&Mac::for_member(pair.b.address(), pair.network).0);
    f[6..12].copy_from_slice(&Mac::for_member(pair.a.address(), pair.network).0);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f
}

fn frame_path(c: &mut Criterion) {
    let mut pair = Pair::establish();
    let cases = [
        ("1400B (2 fragments)".to_string(), 1400, 2),
        (format!("{UNFRAGMENTED}B (1 datagram)"), UNFRAGMENTED, 1),
        (
            format!("{FULL_MTU_FRAME}B (2756 MTU, 2 fragments)"),
            FULL_MTU_FRAME,
            2,
        ),
    ];
    for (name, len, datagrams) in cases {
        let f = frame(&pair, len);
        let mut probe = Vec::new();
        pair.inside(&f, &mut probe);
        let sizes: Vec<usize> = probe.iter().map(Vec::len).collect();
        println!("{name}: travels as datagrams of {sizes:?} bytes");
        assert_eq!(probe.len(), datagrams);
        assert_eq!(
            pair.outside(&mut probe),
            len,
            "the probe frame went through"
        );
        pair.sent(&mut probe);
        let handed = [&mut pair.a, &mut pair.b].map(|n| n.data_plane().handed_over());
        for _ in 0..10 {
            pair.inside(&f, &mut probe);
            pair.outside(&mut probe);
            pair.sent(&mut probe);
        }
        let after = [&mut pair.a, &mut pair.b].map(|n| n.data_plane().handed_over());
        assert_eq!(after, handed, "steady frames stay in the data plane");

        let mut group = c.benchmark_group(format!("node frame path/{name}"));
        group.throughput(Throughput::Bytes(len as u64));
        let mut out = Vec::with_capacity(4);
        group.bench_function("inside: handle_tap_buffer → poll_transmit", |bench| {
            bench.iter(|| {
                pair.inside(black_box(&f), &mut out);
                black_box(out.len());
                pair.sent(&mut out);
            })
        });
        // Every datagram opens once (replay protection), so A seals a fresh one for
        // each iteration, outside the measurement.
        let shared = RefCell::new(&mut pair);
        group.bench_function(
            "outside: handle_datagram_in_place → poll_tap_at",
            |bench| {
                bench.iter_batched(
                    || {
                        let mut d = Vec::with_capacity(4);
                        shared.borrow_mut().inside(&f, &mut d);
                        d
                    },
                    |mut d| {
                        let mut pair = shared.borrow_mut();
                        black_box(pair.outside(&mut d));
                        pair.sent(&mut d);
                    },
                    BatchSize::SmallInput,
                )
            },
        );
        let pair = shared.into_inner();
        group.bench_function("round trip: A's TAP → B's TAP", |bench| {
            bench.iter(|| {
                pair.inside(black_box(&f), &mut out);
                black_box(pair.outside(&mut out));
                pair.sent(&mut out);
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = frame_path
}
criterion_main!(benches);
