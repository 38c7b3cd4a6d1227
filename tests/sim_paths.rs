//! LAN and direct paths in the simulator (PushDirectPaths): nodes tell the peers they
//! trust (members of a shared network, or peers they send traffic to) their local
//! endpoints, so two nodes behind one NAT that does not hairpin go direct over their
//! LAN; pairs that cannot go direct stay relayed and keep trying without flooding; and
//! pushes from strangers or unauthenticated sources change nothing.

mod adversary;

use std::time::Duration;

use adversary::{Attacker, add_attacker, attacker_connects, ep, join, public_ip, stats};
use skylan::node::Link as Via;
use skylan::node::control::PUSH_RX_BURST;
use skylan::sim::HostId;
use skylan::sim::mesh::{Mesh, Placement};
use skylan::sim::{AccessLink, NatKind};
use skylan::types::Endpoint;
use skylan::wire::Message;

const SECOND: Duration = Duration::from_secs(1);

fn link() -> AccessLink {
    AccessLink::default()
}

fn is_direct_to(l: Option<(Duration, Via)>, to: Endpoint) -> bool {
    matches!(l, Some((_, Via::Direct(e))) if e == to)
}

fn is_relayed(l: Option<(Duration, Via)>) -> bool {
    matches!(l, Some((_, Via::Relay(_))))
}

/// A and B behind one port-restricted NAT (no hairpinning), C and D each behind a
/// symmetric NAT of their own, all members of one network; with `announce`, every node
/// knows its local endpoint.
fn lan_mesh(seed: u64, announce: bool) -> Mesh {
    let mut m = Mesh::build(
        seed,
        &[link()],
        &[
            Placement::Lan(NatKind::PortRestricted, 1),
            Placement::Lan(NatKind::PortRestricted, 1),
            Placement::Behind(NatKind::Symmetric),
            Placement::Behind(NatKind::Symmetric),
        ],
        link(),
    );
    if announce {
        m.announce_local_endpoints();
    }
    m.settle();
    for id in m.nodes.clone() {
        join(&mut m, id);
    }
    m
}

/// Pings `from` → `to` every second until the answer comes back direct on `path`;
/// the time it took, or `None` within `max`.
fn time_to_direct(
    m: &mut Mesh,
    from: HostId,
    to: HostId,
    path: Endpoint,
    max: Duration,
) -> Option<Duration> {
    let start = m.sim.now();
    while m.sim.now().since(start) < max {
        if is_direct_to(m.ping(from, to, 5 * SECOND), path) {
            return Some(m.sim.now().since(start));
        }
        m.sim.run_for(SECOND);
    }
    None
}

#[test]
fn two_nodes_behind_one_nat_go_direct_over_their_lan() {
    let mut m = lan_mesh(41, true);
    let (a, b) = (m.nodes[0], m.nodes[1]);
    let (a_lan, b_lan) = (m.sim.endpoint(a), m.sim.endpoint(b));
    assert_eq!(a_lan, ep("192.0.2.2/9993"));
    assert_eq!(b_lan, ep("192.0.2.3/9993"));
    let first = m.ping(a, b, 10 * SECOND);
    assert!(
        is_relayed(first),
        "first contact goes through the root: {first:?}"
    );
    let took = time_to_direct(&mut m, a, b, b_lan, 30 * SECOND)
        .expect("A reaches B over the LAN within 30 s");
    eprintln!("LAN pair direct after {took:?} of pinging");
    assert!(took <= 5 * SECOND, "{took:?}");
    // Both ways, on the private addresses, and it stays so.
    for _ in 0..5 {
        assert!(is_direct_to(m.ping(b, a, 5 * SECOND), a_lan));
        assert!(is_direct_to(m.ping(a, b, 5 * SECOND), b_lan));
        m.sim.run_for(10 * SECOND);
    }
    assert_eq!(m.link_of(a, b), Some(Via::Direct(b_lan)));
    assert_eq!(m.link_of(b, a), Some(Via::Direct(a_lan)));
    // The other nodes still reach A, relayed (symmetric NATs).
    let c = m.nodes[2];
    assert!(m.ping(c, a, 10 * SECOND).is_some());
}

#[test]
fn without_local_endpoints_a_lan_pair_stays_relayed() {
    // The control: the NAT does not hairpin, so RENDEZVOUS alone cannot help.
    let mut m = lan_mesh(42, false);
    let (a, b) = (m.nodes[0], m.nodes[1]);
    assert!(m.ping(a, b, 10 * SECOND).is_some());
    m.sim.run_for(10 * SECOND);
    for _ in 0..5 {
        assert!(is_relayed(m.ping(a, b, 5 * SECOND)));
        m.sim.run_for(2 * SECOND);
    }
}

#[test]
fn nodes_behind_symmetric_nats_stay_relayed_and_keep_trying_without_flooding() {
    let mut m = lan_mesh(43, true);
    let (c, d) = (m.nodes[2], m.nodes[3]);
    let d_addr = m.address(d);
    assert!(m.ping(c, d, 10 * SECOND).is_some());
    let filtered_before = m.sim.stats().nat_filtered;
    // Five minutes of relayed traffic: pings both ways every 5 s.
    for _ in 0..60 {
        assert!(is_relayed(m.ping(c, d, 5 * SECOND)));
        assert!(is_relayed(m.ping(d, c, 5 * SECOND)));
        m.sim.run_for(3 * SECOND);
    }
    // Their pushes named private addresses that are each one's own (both are 192.0.2.2
    // behind their NATs), so the only candidates are the root's RENDEZVOUS endpoints,
    // still kept (past CANDIDATE_EXPIRE) and probed with backoff.
    let info = m
        .node(c)
        .node
        .peers(m.sim.now())
        .into_iter()
        .find(|p| p.address == d_addr)
        .expect("C knows D");
    assert!(
        !info.paths.is_empty(),
        "C still has candidates for D: {info:?}"
    );
    assert!(
        info.paths
            .iter()
            .all(|(e, alive)| !alive && e.0.ip() != m.sim.endpoint(c).0.ip()),
        "{info:?}"
    );
    let probes = m.sim.stats().nat_filtered - filtered_before;
    eprintln!("probes filtered by the symmetric NATs in 5 min: {probes}");
    // About one probe per RENDEZVOUS (every 10 s while traffic flows) and direction,
    // plus the backoff: far below one per second per direction.
    assert!(probes > 10, "the pair keeps trying: {probes}");
    assert!(probes < 150, "the pair does not flood: {probes}");
}

#[test]
fn a_node_that_only_pings_gets_no_push_taken() {
    // No shared network: B only answers A's pings, so it does not trust A. A's pushes
    // are refused and counted, B tells A nothing, and the pair stays relayed.
    let mut m = lan_mesh(46, true);
    let mut bare = Mesh::build(
        46,
        &[link()],
        &[
            Placement::Lan(NatKind::PortRestricted, 1),
            Placement::Lan(NatKind::PortRestricted, 1),
        ],
        link(),
    );
    bare.announce_local_endpoints();
    bare.settle();
    let (a, b) = (bare.nodes[0], bare.nodes[1]);
    for _ in 0..5 {
        assert!(is_relayed(bare.ping(a, b, 5 * SECOND)));
        bare.sim.run_for(5 * SECOND);
    }
    assert!(stats(&bare.sim, b).drop_push_not_peer >= 2);
    assert_eq!(
        stats(&bare.sim, a).drop_push_not_peer,
        0,
        "B pushed nothing"
    );
    // The same hosts as members of one network go direct.
    let (a, b) = (m.nodes[0], m.nodes[1]);
    let b_lan = m.sim.endpoint(b);
    assert!(time_to_direct(&mut m, a, b, b_lan, 30 * SECOND).is_some());
}

#[test]
fn pushed_paths_from_strangers_change_nothing() {
    // Public nodes, so a stranger can reach P at all.
    let mut m = Mesh::build(
        45,
        &[link()],
        &[Placement::Public, Placement::Public],
        link(),
    );
    m.announce_local_endpoints();
    m.settle();
    let (p, q) = (m.nodes[0], m.nodes[1]);
    let p_ep = m.sim.endpoint(p);
    let att = add_attacker(&mut m.sim, 5, public_ip(77));
    let p_identity = m
        .node(p)
        .node
        .peer_identity(m.address(p))
        .expect("own identity");
    attacker_connects(&mut m.sim, att, &p_identity, p_ep);
    let att_addr = m.sim.host::<Attacker>(att).address();
    let trap = ep("198.51.100.99/9993");
    let push = Message::PushDirectPaths {
        endpoints: vec![trap],
    };
    let before = stats(&m.sim, p);
    m.sim
        .with_host::<Attacker, _>(att, |h, now| h.send(now, p_identity.address(), &push, p_ep));
    m.sim.run_for(2 * SECOND);
    let after = stats(&m.sim, p);
    assert_eq!(after.drop_push_not_peer - before.drop_push_not_peer, 1);
    let has_trap = |m: &Mesh| {
        m.node(p)
            .node
            .peers(m.sim.now())
            .iter()
            .any(|i| i.paths.iter().any(|(e, _)| *e == trap))
    };
    assert!(!has_trap(&m), "a stranger's push created no candidate");

    // Unauthenticated: the same message sealed for another session, and a forged
    // packet claiming to come from Q, are dropped before anything is read.
    let sealed = m
        .sim
        .with_host::<Attacker, _>(att, |h, now| h.seal(now, p_identity.address(), &push));
    let mut forged = sealed.clone();
    let q_addr = m.address(q);
    forged[7..12].copy_from_slice(&q_addr.to_bytes()); // claimed source
    let last = forged.len() - 1;
    forged[last] ^= 1;
    m.sim.inject(ep("203.0.113.250/4444"), p_ep, forged);
    let mut tampered = sealed;
    let last = tampered.len() - 1;
    tampered[last] ^= 0x80;
    m.sim.inject(ep("198.51.100.77/9993"), p_ep, tampered);
    m.sim.run_for(2 * SECOND);
    assert!(!has_trap(&m));
    let after2 = stats(&m.sim, p);
    assert_eq!(after2.drop_push_not_peer, after.drop_push_not_peer);
    assert!(
        after2.dropped() >= after.dropped() + 2,
        "both forgeries are dropped"
    );

    // Once P talks to the attacker (pings it), its pushes are taken, but only as
    // candidates, only plausible ones, and at most PUSH_RX_BURST per window.
    let pinged = m
        .sim
        .with_host::<skylan::sim::cores::NodeHost, _>(p, |h, now| h.node.ping(now, att_addr));
    assert!(pinged.is_ok());
    m.sim.run_for(SECOND);
    let own_port_other = Endpoint((p_ep.0.ip(), 1).into());
    let mixed = Message::PushDirectPaths {
        endpoints: vec![
            trap,
            ep("127.0.0.1/9993"),
            ep("224.0.0.1/9993"),
            own_port_other,
        ],
    };
    let before = stats(&m.sim, p);
    for _ in 0..PUSH_RX_BURST + 2 {
        m.sim.with_host::<Attacker, _>(att, |h, now| {
            h.send(now, p_identity.address(), &mixed, p_ep)
        });
    }
    m.sim.run_for(SECOND);
    let after = stats(&m.sim, p);
    assert_eq!(after.drop_push_rate - before.drop_push_rate, 2);
    let info = m
        .node(p)
        .node
        .peers(m.sim.now())
        .into_iter()
        .find(|i| i.address == att_addr)
        .expect("P knows the attacker");
    let endpoints: Vec<Endpoint> = info.paths.iter().map(|(e, _)| *e).collect();
    assert!(endpoints.contains(&trap), "{info:?}");
    assert_eq!(
        endpoints.len(),
        2,
        "only the trap and the real path: {info:?}"
    );
    assert!(
        info.paths.iter().any(|(e, alive)| *e == trap && !alive),
        "a pushed candidate never answered, so it carries nothing: {info:?}"
    );
    assert_eq!(
        info.link,
        Some(Via::Direct(m.sim.endpoint(att))),
        "traffic stays on the authenticated path"
    );
}
