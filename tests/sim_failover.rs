//! Failover and truthfulness in the deterministic simulator: a dead relaying root is
//! replaced within 10 s while direct traffic goes on; a dead root is not shown as
//! DIRECT and a node with no live root says OFFLINE and why; a NAT rebinding (new
//! external port) restores traffic within 5 s and the direct path within 30 s. The
//! timings are simulated time, the same on every machine; each run prints its median
//! and worst over ten seeds.

use std::time::Duration;

use skylan::node::{Event, Link as Via};
use skylan::sim::mesh::{Mesh, Placement};
use skylan::sim::{AccessLink, HostId, NatKind};

const SECOND: Duration = Duration::from_secs(1);
const STEP: Duration = Duration::from_millis(250);

fn median_and_worst(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    (times[times.len() / 2], times[times.len() - 1])
}

/// Pings `to` from `from` every [`STEP`] until `good` accepts an answer; returns how long
/// that took, or `None` after `max`.
fn until_answer(
    m: &mut Mesh,
    from: HostId,
    to: HostId,
    max: Duration,
    good: impl Fn(Via) -> bool,
) -> Option<Duration> {
    let start = m.sim.now();
    while m.sim.now().since(start) < max {
        let sent = m.sim.now();
        if let Some((_, via)) = m.ping(from, to, STEP) {
            if good(via) {
                return Some(sent.since(start));
            }
        }
        let next = sent + STEP;
        if m.sim.now() < next {
            m.sim.run_until(next);
        }
    }
    None
}

/// Two nodes behind symmetric NATs (so they stay relayed), two roots of which the first
/// is nearer; both measured.
fn relayed_pair(seed: u64) -> Mesh {
    let near = AccessLink::default().with_latency(Duration::from_millis(5));
    let far = AccessLink::default().with_latency(Duration::from_millis(40));
    let mut m = Mesh::build(
        seed,
        &[near, far],
        &[
            Placement::Behind(NatKind::Symmetric),
            Placement::Behind(NatKind::Symmetric),
        ],
        AccessLink::default(),
    );
    m.settle();
    m.sim.run_for(15 * SECOND);
    m
}

#[test]
fn relayed_traffic_moves_to_the_other_root_within_10_s() {
    let mut times = Vec::new();
    let mut back = Vec::new();
    for seed in 0..10u64 {
        let mut m = relayed_pair(100 + seed);
        let (a, b) = (m.nodes[0], m.nodes[1]);
        let r1 = m.root(m.roots[0]).address();
        let r2 = m.root(m.roots[1]).address();
        assert_eq!(m.ping(a, b, 10 * SECOND).map(|x| x.1), Some(Via::Relay(r1)));
        // Kill the root at a different point of the HELLO cycle each run.
        m.sim.run_for(Duration::from_millis(seed * 530));
        m.sim.set_up(m.roots[0], false);
        let took = until_answer(&mut m, a, b, 30 * SECOND, |v| v == Via::Relay(r2))
            .unwrap_or_else(|| panic!("seed {seed}: no answer through the second root"));
        times.push(took);
        // B's pings come back through the survivor too.
        let reply = m.ping(b, a, 5 * SECOND).map(|x| x.1);
        assert_eq!(reply, Some(Via::Relay(r2)), "seed {seed}: B -> A");
        back.push(took);
    }
    let (median, worst) = median_and_worst(times);
    eprintln!("relay failover over 10 seeds: median {median:?}, worst {worst:?}");
    assert!(worst <= 10 * SECOND, "worst failover {worst:?}");
}

#[test]
fn direct_traffic_does_not_notice_a_dead_root() {
    let mut m = Mesh::build(
        21,
        &[AccessLink::default(), AccessLink::default()],
        &[Placement::Public, Placement::Public],
        AccessLink::default(),
    );
    m.settle();
    let (a, b) = (m.nodes[0], m.nodes[1]);
    assert!(m.ping(a, b, 10 * SECOND).is_some());
    m.sim.run_for(2 * SECOND);
    assert!(matches!(
        m.ping(a, b, 5 * SECOND),
        Some((_, Via::Direct(_)))
    ));
    m.sim.set_up(m.roots[0], false);
    let start = m.sim.now();
    let mut lost = 0;
    while m.sim.now().since(start) < 20 * SECOND {
        match m.ping(a, b, SECOND) {
            Some((_, Via::Direct(_))) => {}
            _ => lost += 1,
        }
        m.sim.run_for(STEP);
    }
    assert_eq!(lost, 0, "pings lost or relayed while the root was down");
}

#[test]
fn a_dead_root_is_shown_dead_and_a_node_without_roots_says_offline_and_why() {
    let mut m = relayed_pair(31);
    let a = m.nodes[0];
    let r1 = m.root(m.roots[0]).address();
    let shown = |m: &Mesh, root| {
        m.node(a)
            .node
            .peers(m.sim.now())
            .into_iter()
            .find(|p| p.address == root)
            .expect("a root is always a peer")
    };
    let before = shown(&m, r1);
    assert!(matches!(before.link, Some(Via::Direct(_))), "{before:?}");
    assert!(before.paths.iter().any(|(_, alive)| *alive), "{before:?}");

    m.sim.set_up(m.roots[0], false);
    m.sim.run_for(10 * SECOND);
    let after = shown(&m, r1);
    assert_eq!(after.link, None, "a dead root is not DIRECT: {after:?}");
    assert!(after.paths.iter().all(|(_, alive)| !alive), "{after:?}");
    assert!(
        m.node(a).node.status(m.sim.now()).online,
        "the other root answers"
    );

    m.sim.set_up(m.roots[1], false);
    m.sim.run_for(10 * SECOND);
    let status = m.node(a).node.status(m.sim.now());
    assert!(!status.online);
    let reason = status.offline_reason.expect("offline says why");
    assert!(
        reason.starts_with("no root has answered for") && reason.contains(&r1.to_string()),
        "{reason}"
    );
    let offline = |m: &Mesh| {
        m.node(a)
            .events
            .iter()
            .filter(|e| matches!(e, Event::Offline { .. }))
            .count()
    };
    m.sim.run_for(30 * SECOND);
    assert_eq!(offline(&m), 1, "going offline is reported once");

    m.sim.set_up(m.roots[0], false);
    m.sim.set_up(m.roots[1], true);
    m.sim.run_for(10 * SECOND);
    let status = m.node(a).node.status(m.sim.now());
    assert!(status.online && status.offline_reason.is_none());
    let online = m
        .node(a)
        .events
        .iter()
        .filter(|e| matches!(e, Event::Online { .. }))
        .count();
    assert_eq!(online, 2, "online at start and once more after the outage");
}

#[test]
fn a_nat_rebinding_restores_traffic_within_5_s_and_the_direct_path_within_30_s() {
    let mut restored = Vec::new();
    let mut direct = Vec::new();
    for seed in 0..10u64 {
        let mut m = Mesh::build(
            200 + seed,
            &[AccessLink::default()],
            &[
                Placement::Behind(NatKind::PortRestricted),
                Placement::Behind(NatKind::PortRestricted),
            ],
            AccessLink::default(),
        );
        m.settle();
        let (a, b) = (m.nodes[0], m.nodes[1]);
        assert!(m.ping(a, b, 10 * SECOND).is_some());
        m.sim.run_for(3 * SECOND);
        assert!(matches!(
            m.ping(a, b, 5 * SECOND),
            Some((_, Via::Direct(_)))
        ));
        m.sim.run_for(Duration::from_millis(seed * 770));
        // B's router forgets its mappings: B's next datagrams leave from new ports, and
        // what A sends to the old one is refused.
        let nat = m.sim.behind(b).expect("b is behind a NAT");
        m.sim.reset_nat(nat);
        let start = m.sim.now();
        let first = until_answer(&mut m, a, b, 30 * SECOND, |_| true)
            .unwrap_or_else(|| panic!("seed {seed}: traffic did not come back"));
        restored.push(first);
        let left = 60 * SECOND - m.sim.now().since(start);
        until_answer(&mut m, a, b, left, |v| matches!(v, Via::Direct(_)))
            .unwrap_or_else(|| panic!("seed {seed}: never direct again"));
        direct.push(m.sim.now().since(start));
    }
    let (median, worst) = median_and_worst(restored);
    let (d_median, d_worst) = median_and_worst(direct);
    eprintln!(
        "NAT rebinding over 10 seeds: traffic back median {median:?}, worst {worst:?}; \
         direct again median {d_median:?}, worst {d_worst:?}"
    );
    assert!(worst <= 5 * SECOND, "traffic came back after {worst:?}");
    assert!(d_worst <= 30 * SECOND, "direct again after {d_worst:?}");
}
