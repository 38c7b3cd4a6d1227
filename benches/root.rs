//! The root core's relay path: `handle_datagram` of a 1,400-byte Data packet from a node
//! that said hello, addressed to another node the root knows, then `poll_transmit` of
//! the relayed copy. The mesh comes from the simulator (a root and nodes that reached
//! it); then the root is driven by hand.
//!
//! - `relay, 16 sources`: sources take turns, the clock advancing [`STEP`] per packet,
//!   so each sends 31,250 packets/s, within its relay budget
//!   (`RELAY_PER_SOURCE_PER_SEC`): what a root does per packet under normal load;
//! - `relay, one source over budget`: one source sends 1,000,000 packets/s, twenty
//!   times its budget: most are dropped and counted (`drop_relay_rate`), which must
//!   cost less than relaying them.
//!
//! Run: `cargo bench --bench root` (add `-- --quick` for a rough pass). Numbers only;
//! the packets per second a core manages is one second over the time per packet.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use skylan::root::{RELAY_PER_SOURCE_BURST, Root};
use skylan::sim::AccessLink;
use skylan::sim::mesh::{Mesh, Placement};
use skylan::types::Endpoint;
use skylan::wire;

/// Source and destination pairs in the normal-load case (the simulator's identity pool
/// holds 64).
const PAIRS: usize = 16;
/// Simulated time per packet in the normal-load case.
const STEP: Duration = Duration::from_nanos(2_000);
/// Bytes of each relayed packet.
const PACKET: usize = 1_400;

fn relay(c: &mut Criterion) {
    let mut m = Mesh::build(
        1,
        &[AccessLink::default()],
        &[Placement::Public; 2 * PAIRS],
        AccessLink::default(),
    );
    m.settle();
    let packets: Vec<(Endpoint, Vec<u8>)> = (0..PAIRS)
        .map(|i| {
            let (a, b) = (m.nodes[2 * i], m.nodes[2 * i + 1]);
            let mut p = Vec::with_capacity(PACKET);
            wire::emit_data_prefix(m.address(b), m.address(a), 1, 1, &mut p);
            p.resize(PACKET, 0x5a);
            (m.sim.endpoint(a), p)
        })
        .collect();
    let local = m.sim.endpoint(m.roots[0]);
    let mut now = m.sim.now();
    let root: &mut Root = m.sim.host_mut(m.roots[0]);
    let mut group = c.benchmark_group("root");
    group.throughput(Throughput::Elements(1));

    let mut turn = 0usize;
    group.bench_function("relay, 16 sources, 1400 B", |bench| {
        bench.iter(|| {
            let (from, packet) = &packets[turn % PAIRS];
            turn += 1;
            now = now + STEP;
            root.handle_datagram(now, local, *from, packet);
            while let Some(t) = root.poll_transmit() {
                black_box(t);
            }
        })
    });
    let stats = *root.stats();
    assert!(stats.relayed > 0, "nothing was relayed");
    assert_eq!(stats.drop_relay_rate, 0, "a source ran over its budget");

    let (from, packet) = &packets[0];
    // Spend the source's burst first, so every measured packet meets an empty budget
    // but for the trickle it earns back (also when `cargo test` runs this once).
    for _ in 0..2 * RELAY_PER_SOURCE_BURST {
        now = now + Duration::from_micros(1);
        root.handle_datagram(now, local, *from, packet);
        while root.poll_transmit().is_some() {}
    }
    assert!(root.stats().drop_relay_rate > 0, "the budget never ran out");
    group.bench_function("relay, one source over budget, 1400 B", |bench| {
        bench.iter(|| {
            now = now + Duration::from_micros(1);
            root.handle_datagram(now, local, *from, packet);
            while let Some(t) = root.poll_transmit() {
                black_box(t);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, relay);
criterion_main!(benches);
