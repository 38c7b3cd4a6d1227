//! Dual-stack underlays in the deterministic simulator: every host has an IPv4 and an
//! IPv6 address, and the planet lists each root at both.
//!
//! - A pair goes DIRECT over IPv6 both ways and stays there while pings flow (no link
//!   change after it settled), and each root reports our endpoint over both families.
//! - When one node's IPv6 is cut, pings go on over IPv4 (median and worst over ten seeds
//!   reported; at most 5 s); the roots still answer over IPv4.
//! - Mixed: a dual-stack node and an IPv4-only node go DIRECT over IPv4, and the
//!   IPv4-only node sends nothing to IPv6 endpoints.

use std::time::Duration;

use skylan::node::{Event, Link as Via};
use skylan::sim::mesh::{Mesh, Placement, ipv6_of};
use skylan::sim::{AccessLink, HostId};

const SECOND: Duration = Duration::from_secs(1);
const STEP: Duration = Duration::from_millis(250);

fn dual_pair(seed: u64) -> Mesh {
    let mut m = Mesh::build_dual_stack(
        seed,
        &[AccessLink::default()],
        &[Placement::DualStack, Placement::DualStack],
        AccessLink::default(),
    );
    m.announce_local_endpoints();
    m.settle();
    m
}

fn direct_v6(via: Via) -> bool {
    matches!(via, Via::Direct(ep) if ep.0.is_ipv6())
}

fn direct_v4(via: Via) -> bool {
    matches!(via, Via::Direct(ep) if ep.0.is_ipv4())
}

/// Pings every [`STEP`] until an answer's link satisfies `good`; how long that took.
fn until(
    m: &mut Mesh,
    from: HostId,
    to: HostId,
    max: Duration,
    good: fn(Via) -> bool,
) -> Option<Duration> {
    let start = m.sim.now();
    while m.sim.now().since(start) < max {
        let sent = m.sim.now();
        if m.ping(from, to, STEP).is_some_and(|(_, via)| good(via)) {
            return Some(sent.since(start));
        }
        let next = sent + STEP;
        if m.sim.now() < next {
            m.sim.run_until(next);
        }
    }
    None
}

/// The link changes `id`'s node reported for `peer` so far.
fn link_changes(m: &mut Mesh, id: HostId, peer: HostId) -> Vec<Via> {
    let peer = m.address(peer);
    m.sim
        .with_host::<skylan::sim::cores::NodeHost, _>(id, |h, _| {
            std::iter::from_fn(|| h.node.poll_event())
                .filter_map(|e| match e {
                    Event::LinkChanged { peer: p, link } if p == peer => Some(link),
                    _ => None,
                })
                .collect()
        })
}

#[test]
fn a_dual_stack_pair_goes_direct_over_ipv6_and_stays() {
    for seed in 0..10u64 {
        let mut m = dual_pair(300 + seed);
        let (a, b) = (m.nodes[0], m.nodes[1]);
        until(&mut m, a, b, 10 * SECOND, direct_v6)
            .unwrap_or_else(|| panic!("seed {seed}: A -> B never DIRECT over IPv6"));
        until(&mut m, b, a, 10 * SECOND, direct_v6)
            .unwrap_or_else(|| panic!("seed {seed}: B -> A never DIRECT over IPv6"));
        // Settled: drain what was reported so far, then a minute of pings both ways.
        link_changes(&mut m, a, b);
        link_changes(&mut m, b, a);
        for _ in 0..60 {
            for (x, y) in [(a, b), (b, a)] {
                let via = m.ping(x, y, SECOND).map(|p| p.1);
                if !via.is_some_and(direct_v6) {
                    let changes = link_changes(&mut m, x, y);
                    panic!("seed {seed}: {via:?}; link changes since: {changes:?}");
                }
            }
            m.sim.run_for(SECOND);
        }
        for (x, y) in [(a, b), (b, a)] {
            let changes = link_changes(&mut m, x, y);
            assert!(changes.is_empty(), "seed {seed}: link moved: {changes:?}");
        }
        let now = m.sim.now();
        let roots = m.node(a).node.roots_report(now);
        assert_eq!(
            roots[0].observed_ipv6.map(|e| e.0.ip()),
            Some(ipv6_of(101)),
            "seed {seed}: the root sees A over IPv6"
        );
        assert!(
            roots[0].observed_ipv4.is_some(),
            "seed {seed}: and over IPv4"
        );
    }
}

#[test]
fn a_pair_moves_to_ipv4_when_ipv6_breaks() {
    let mut times = Vec::new();
    for seed in 0..10u64 {
        let mut m = dual_pair(400 + seed);
        let (a, b) = (m.nodes[0], m.nodes[1]);
        until(&mut m, a, b, 10 * SECOND, direct_v6).expect("direct over IPv6 first");
        // Cut at a different point of the HELLO cycle each run.
        m.sim.run_for(Duration::from_millis(seed * 470));
        m.sim.set_ipv6_up(b, false);
        let took = until(&mut m, a, b, 30 * SECOND, direct_v4)
            .unwrap_or_else(|| panic!("seed {seed}: never DIRECT over IPv4"));
        times.push(took);
        until(&mut m, b, a, 10 * SECOND, direct_v4)
            .unwrap_or_else(|| panic!("seed {seed}: B -> A never over IPv4"));
        let now = m.sim.now();
        assert!(
            m.node(b).node.status(now).online,
            "seed {seed}: B keeps its root"
        );
    }
    times.sort();
    let (median, worst) = (times[times.len() / 2], times[times.len() - 1]);
    eprintln!("IPv6 cut -> DIRECT over IPv4, 10 seeds: median {median:?}, worst {worst:?}");
    assert!(worst <= 5 * SECOND, "worst {worst:?}");
}

#[test]
fn a_dual_stack_node_reaches_an_ipv4_only_node_over_ipv4() {
    let mut m = Mesh::build_dual_stack(
        7,
        &[AccessLink::default()],
        &[Placement::DualStack, Placement::Public],
        AccessLink::default(),
    );
    m.announce_local_endpoints();
    m.settle();
    let (a, b) = (m.nodes[0], m.nodes[1]);
    until(&mut m, a, b, 10 * SECOND, direct_v4).expect("A -> B DIRECT over IPv4");
    until(&mut m, b, a, 10 * SECOND, direct_v4).expect("B -> A DIRECT over IPv4");
    // The IPv4-only node never sends to an IPv6 endpoint (the root's, A's): nothing
    // unroutable over a minute of HELLOs and probes.
    m.sim.run_for(60 * SECOND);
    assert_eq!(m.sim.stats().unroutable, 0, "{:?}", m.sim.stats());
}
