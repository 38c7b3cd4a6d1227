//! Path MTU in the simulator. A link of the simulator silently drops every datagram
//! larger than its MTU (no ICMP): each link below is a PMTU black hole. Nodes must find
//! each route's size with their own probes and cut packets to fit, directly and through
//! a relay, and follow a path that shrinks while it carries traffic.

mod adversary;

use std::time::Duration;

use adversary::{frame, join, link, peer_info, send_frame};
use skylan::node::Link as Via;
use skylan::node::control::pmtu::{PROBE_ROUNDS, PROBE_WAIT, REVALIDATE};
use skylan::sim::HostId;
use skylan::sim::NatKind;
use skylan::sim::mesh::{Mesh, Placement};
use skylan::wire::PATH_MTU_FLOOR;

const TICK: Duration = Duration::from_millis(100);

/// A settled mesh of one root and two nodes placed as given, both members of one
/// network, where `b`'s access link carries datagrams of at most `mtu` bytes.
fn mesh(seed: u64, placement: Placement, b_mtu: usize) -> (Mesh, HostId, HostId) {
    let mut m = Mesh::build(seed, &[link()], &[placement; 2], link());
    let (a, b) = (m.nodes[0], m.nodes[1]);
    m.sim.set_link(b, link().with_mtu(b_mtu));
    m.settle();
    join(&mut m, a);
    join(&mut m, b);
    (m, a, b)
}

/// Sends `count` frames of `len` bytes from `from` to `to`, one every 100 ms, then
/// waits a second; returns how many of them reached `to`'s TAP.
fn stream(m: &mut Mesh, from: HostId, to: HostId, len: usize, count: usize) -> usize {
    let target = m.address(to);
    let before = m.node(to).tap.len();
    for i in 0..count {
        send_frame(&mut m.sim, from, target, &frame(i as u8, len));
        m.sim.run_for(TICK);
    }
    m.sim.run_for(Duration::from_secs(1));
    m.node(to).tap[before..]
        .iter()
        .filter(|f| f.frame.len() == len)
        .count()
}

fn path_mtu(m: &Mesh, from: HostId, to: HostId) -> usize {
    peer_info(&m.sim, from, m.address(to))
        .expect("peer known")
        .path_mtu
}

#[test]
fn a_direct_path_of_1280_bytes_that_drops_icmp_carries_every_frame() {
    // 1,252 bytes of UDP payload: an IPv4 underlay of 1,280.
    let (mut m, a, b) = mesh(71, Placement::Public, 1252);
    assert_eq!(
        stream(&mut m, a, b, 2700, 50),
        50,
        "a → b, default MTU frames"
    );
    assert_eq!(stream(&mut m, b, a, 2700, 50), 50, "b → a");
    assert!(matches!(m.link_of(a, b), Some(Via::Direct(_))));
    assert_eq!(
        path_mtu(&m, a, b),
        1252,
        "a found the size that gets through"
    );
    assert_eq!(path_mtu(&m, b, a), 1252, "and so did b, on its own");
    assert!(
        m.sim.stats().mtu_dropped > 0,
        "the larger probes were dropped (a black hole, not a fragmenting router)"
    );
    // The largest network MTU a user may set (10,000) still fits in fragments.
    assert_eq!(stream(&mut m, a, b, 10_000, 10), 10, "10,000-byte frames");
    // Small frames are unaffected.
    assert_eq!(stream(&mut m, a, b, 60, 20), 20);
}

#[test]
fn a_clear_path_takes_the_full_size_within_a_round_trip() {
    let (mut m, a, b) = mesh(72, Placement::Public, 1472);
    assert_eq!(stream(&mut m, a, b, 2700, 20), 20);
    assert_eq!(path_mtu(&m, a, b), skylan::node::DEFAULT_PHYS_MTU);
    assert_eq!(
        m.sim.stats().mtu_dropped,
        0,
        "nothing was too big on a 1,500-byte underlay"
    );
}

#[test]
fn a_relayed_route_is_probed_end_to_end() {
    // Symmetric NATs on both sides: the pair stays relayed, and the root's leg to b
    // is the narrow one.
    let (mut m, a, b) = mesh(73, Placement::Behind(NatKind::Symmetric), 1300);
    assert_eq!(stream(&mut m, a, b, 2700, 40), 40);
    assert_eq!(stream(&mut m, b, a, 2700, 40), 40);
    assert!(matches!(m.link_of(a, b), Some(Via::Relay(_))));
    assert_eq!(path_mtu(&m, a, b), 1300);
    assert_eq!(path_mtu(&m, b, a), 1300);
}

#[test]
fn a_path_that_shrinks_under_traffic_recovers_after_revalidation() {
    let (mut m, a, b) = mesh(74, Placement::Public, 1472);
    assert_eq!(stream(&mut m, a, b, 2700, 20), 20);
    assert_eq!(path_mtu(&m, a, b), skylan::node::DEFAULT_PHYS_MTU);
    // The underlay now carries 1,340 bytes and says nothing about it.
    m.sim.set_link(b, link().with_mtu(1340));
    let start = m.sim.now();
    let bound = REVALIDATE + PROBE_WAIT * u32::from(PROBE_ROUNDS) + Duration::from_secs(3);
    let mut recovered = None;
    while m.sim.now().since(start) < bound + Duration::from_secs(5) {
        if stream(&mut m, a, b, 2700, 10) == 10 && path_mtu(&m, a, b) <= 1340 {
            recovered = Some(m.sim.now().since(start));
            break;
        }
    }
    let took = recovered.expect("traffic recovers after the path shrank");
    eprintln!("shrunk path: full frames flow again after {took:?} (bound {bound:?})");
    assert!(took <= bound + Duration::from_secs(2), "{took:?}");
    assert_eq!(path_mtu(&m, a, b), 1340);
    assert!(path_mtu(&m, a, b) >= PATH_MTU_FLOOR);
}
