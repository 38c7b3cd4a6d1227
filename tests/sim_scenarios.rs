//! Whole-mesh scenarios in the deterministic simulator: relays, hole punching, NATs,
//! root failover, replay and forgery, rekeying. Each test is one seeded run; a failure
//! is reproducible with the same seed.

use std::time::Duration;

use serde_json::json;
use skylan::node::Link as Via;
use skylan::node::network::NetworkStatus;
use skylan::sim::HostId;
use skylan::sim::cores::NodeHost;
use skylan::sim::mesh::{Mesh, Placement};
use skylan::sim::{AccessLink, Captured, NatKind};
use skylan::types::{Endpoint, NetworkId};

const SECOND: Duration = Duration::from_secs(1);

fn link() -> AccessLink {
    AccessLink::default()
}

/// Adds a public controller, creates a public network on it, joins `members` and waits
/// until each has its config and the controller's pushes have given every member the
/// whole roster (frames enter through the sender's switch, which refuses strangers).
fn network(m: &mut Mesh, members: &[HostId]) -> NetworkId {
    let ctrl = m.add_controller(Placement::Public, link());
    let nw = m.create_network(ctrl, json!({"name": "lab", "private": false}));
    for &h in members {
        m.join(h, nw);
    }
    for &h in members {
        assert!(
            m.wait_status(h, nw, NetworkStatus::Ok, 20 * SECOND),
            "member got its config"
        );
    }
    m.sim.run_for(SECOND);
    nw
}

fn is_direct(l: Option<(Duration, Via)>) -> bool {
    matches!(l, Some((_, Via::Direct(_))))
}

fn is_relayed(l: Option<(Duration, Via)>) -> bool {
    matches!(l, Some((_, Via::Relay(_))))
}

#[test]
fn two_nodes_talk_via_the_root_then_go_direct() {
    let mut m = Mesh::build(
        1,
        &[link()],
        &[
            Placement::Behind(NatKind::PortRestricted),
            Placement::Behind(NatKind::PortRestricted),
        ],
        link(),
    );
    m.settle();
    let (a, b) = (m.nodes[0], m.nodes[1]);
    let first = m.ping(a, b, 10 * SECOND);
    assert!(
        is_relayed(first),
        "first contact goes through the root: {first:?}"
    );
    assert!(
        m.root(m.roots[0]).stats().rendezvous >= 2,
        "root introduced the nodes"
    );
    m.sim.run_for(2 * SECOND);
    let later = m.ping(a, b, 10 * SECOND);
    assert!(
        is_direct(later),
        "after RENDEZVOUS the path is direct: {later:?}"
    );
    let relayed = m.root(m.roots[0]).stats().relayed;
    for _ in 0..5 {
        assert!(is_direct(m.ping(a, b, 10 * SECOND)));
        assert!(is_direct(m.ping(b, a, 10 * SECOND)));
    }
    assert_eq!(
        m.root(m.roots[0]).stats().relayed,
        relayed,
        "no more relaying once direct"
    );
    m.sim.run_for(Duration::from_secs(15));
    let b_addr = m.address(b);
    let seen = m
        .node(a)
        .node
        .peers(m.sim.now())
        .into_iter()
        .find(|p| p.address == b_addr)
        .unwrap();
    assert!(
        seen.version.is_some() && seen.latency.is_some(),
        "peers shows a leaf's version and latency: {seen:?}"
    );
}

#[test]
fn full_cone_and_symmetric_go_direct() {
    let mut m = Mesh::build(
        2,
        &[link()],
        &[
            Placement::Behind(NatKind::EndpointIndependent),
            Placement::Behind(NatKind::Symmetric),
        ],
        link(),
    );
    m.settle();
    let (a, b) = (m.nodes[0], m.nodes[1]);
    assert!(m.ping(b, a, 10 * SECOND).is_some());
    m.sim.run_for(3 * SECOND);
    assert!(is_direct(m.ping(b, a, 10 * SECOND)));
}

#[test]
fn behind_two_symmetric_nats_traffic_stays_relayed_and_arrives() {
    let mut m = Mesh::build(
        3,
        &[link()],
        &[
            Placement::Behind(NatKind::Symmetric),
            Placement::Behind(NatKind::Symmetric),
        ],
        link(),
    );
    m.settle();
    let (a, b) = (m.nodes[0], m.nodes[1]);
    let nw = network(&mut m, &[a, b]);
    for i in 0..20u8 {
        let pong = m.ping(a, b, 10 * SECOND);
        assert!(is_relayed(pong), "ping {i} relayed: {pong:?}");
        let f = m.frame(a, b, nw, i, 200);
        m.send_frame(a, b, nw, &f);
        m.sim.run_for(SECOND);
    }
    let got = &m.node(b).tap;
    assert_eq!(got.len(), 20, "every frame arrived through the relay");
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, f)| f.frame == m.frame(a, b, nw, i as u8, 200))
    );
    assert!(matches!(m.link_of(a, b), Some(Via::Relay(_))));
}

#[test]
fn a_dead_root_is_replaced_by_the_next_one() {
    let near = AccessLink::default().with_latency(Duration::from_millis(5));
    let far = AccessLink::default().with_latency(Duration::from_millis(40));
    let mut m = Mesh::build(
        4,
        &[near, far],
        &[
            Placement::Behind(NatKind::Symmetric),
            Placement::Behind(NatKind::Symmetric),
        ],
        link(),
    );
    m.settle();
    m.sim.run_for(15 * SECOND); // latencies measured
    let (a, b) = (m.nodes[0], m.nodes[1]);
    let (r1, r2) = (m.roots[0], m.roots[1]);
    let r1_addr = m.root(r1).address();
    let r2_addr = m.root(r2).address();
    assert_eq!(
        m.ping(a, b, 10 * SECOND).map(|x| x.1),
        Some(Via::Relay(r1_addr))
    );
    m.sim.set_up(r1, false);
    let start = m.sim.now();
    let mut recovered = None;
    for _ in 0..60 {
        if let Some((_, Via::Relay(r))) = m.ping(a, b, 2 * SECOND) {
            if r == r2_addr {
                recovered = Some(m.sim.now().since(start));
                break;
            }
        }
    }
    let took = recovered.expect("traffic moved to the second root");
    assert!(took <= Duration::from_secs(45), "failover took {took:?}");
    assert!(m.node(a).node.status(m.sim.now()).online);
}

/// Two public members of a network; `a` sends `b` one frame of `len` bytes, which is
/// captured on the way. Returns the mesh, `b` and the captured datagram.
fn captured_frame(seed: u64, len: usize) -> (Mesh, HostId, Captured) {
    let mut m = Mesh::build(
        seed,
        &[link()],
        &[Placement::Public, Placement::Public],
        link(),
    );
    m.settle();
    let (a, b) = (m.nodes[0], m.nodes[1]);
    let nw = network(&mut m, &[a, b]);
    assert!(m.ping(a, b, 10 * SECOND).is_some());
    m.sim.enable_capture();
    let f = m.frame(a, b, nw, 1, len);
    m.send_frame(a, b, nw, &f);
    m.sim.run_for(SECOND);
    assert_eq!(m.node(b).tap.len(), 1);
    let to_b = m.sim.endpoint(b);
    let genuine = m
        .sim
        .captured()
        .iter()
        .find(|c| c.to == to_b && c.bytes.len() > len)
        .cloned()
        .expect("the frame's datagram was captured");
    (m, b, genuine)
}

#[test]
fn a_replayed_packet_is_dropped() {
    let (mut m, b, genuine) = captured_frame(5, 100);
    let captured = [genuine];
    let replays_before = m.node(b).node.stats().drop_replay;
    // Right away (inside the replay window) and much later (after rekeys).
    for c in &captured {
        m.sim.replay(c);
    }
    m.sim.run_for(SECOND);
    assert_eq!(m.node(b).tap.len(), 1, "the replay reached nobody");
    assert!(m.node(b).node.stats().drop_replay > replays_before);
    m.sim.run_for(Duration::from_secs(400));
    let dropped_before = m.node(b).node.stats().dropped();
    for c in &captured {
        m.sim.replay(c);
    }
    m.sim.run_for(SECOND);
    assert_eq!(m.node(b).tap.len(), 1);
    assert!(m.node(b).node.stats().dropped() > dropped_before);
}

#[test]
fn forged_and_bit_flipped_packets_are_dropped_and_counted() {
    let (mut m, b, genuine) = captured_frame(6, 300);
    let a = m.nodes[0];
    let to_b = genuine.to;
    let before = m.node(b).node.stats();
    let from = genuine.from;
    // Every single-bit flip of the genuine packet (outside the hop bits, which relays
    // may change) must be rejected.
    let mut flips = 0;
    for byte in 0..genuine.bytes.len() {
        for bit in 0..8 {
            if byte == 1 && bit < 3 {
                continue;
            }
            let mut bytes = genuine.bytes.clone();
            bytes[byte] ^= 1 << bit;
            m.sim.inject(from, to_b, bytes);
            flips += 1;
        }
    }
    // Garbage and truncations.
    let mut noise = 0x1234_5678u64;
    for len in 0..200 {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                noise = noise
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (noise >> 56) as u8
            })
            .collect();
        m.sim.inject(from, to_b, bytes);
        m.sim.inject(
            from,
            to_b,
            genuine.bytes[..len.min(genuine.bytes.len() - 1)].to_vec(),
        );
    }
    m.sim.run_for(5 * SECOND);
    let after = m.node(b).node.stats();
    assert_eq!(m.node(b).tap.len(), 1, "nothing forged reached the TAP");
    assert!(
        after.dropped() - before.dropped() >= flips + 300,
        "every forged packet was counted: {} of {}",
        after.dropped() - before.dropped(),
        flips + 400
    );
    assert!(after.drop_auth > before.drop_auth);
    assert!(after.drop_malformed > before.drop_malformed);
    // And the real session still works.
    assert!(m.ping(a, b, 10 * SECOND).is_some());
}

#[test]
fn a_session_survives_ten_rekeys_without_loss() {
    let mut m = Mesh::build(
        7,
        &[link()],
        &[Placement::Public, Placement::Public],
        link(),
    );
    m.settle();
    let (a, b) = (m.nodes[0], m.nodes[1]);
    let nw = network(&mut m, &[a, b]);
    let handshakes_before = m.node(a).node.stats().handshakes + m.node(b).node.stats().handshakes;
    // One frame every 500 ms for 11 rekey periods (120 s each).
    let total = 11 * 120 * 2;
    for i in 0..total {
        let f = m.frame(a, b, nw, (i % 251) as u8, 64 + i % 1000);
        m.send_frame(a, b, nw, &f);
        m.sim.run_for(Duration::from_millis(500));
    }
    m.sim.run_for(SECOND);
    let got = &m.node(b).tap;
    assert_eq!(got.len(), total, "no frame lost across rekeys");
    for (i, f) in got.iter().enumerate() {
        assert_eq!(
            f.frame,
            m.frame(a, b, nw, (i % 251) as u8, 64 + i % 1000),
            "frame {i} intact and in order"
        );
    }
    let handshakes =
        m.node(a).node.stats().handshakes + m.node(b).node.stats().handshakes - handshakes_before;
    assert!(handshakes >= 10, "{handshakes} handshakes completed");
}

#[test]
fn steady_direct_traffic_does_not_touch_the_control_core() {
    let mut m = Mesh::build(
        8,
        &[link()],
        &[Placement::Public, Placement::Public],
        link(),
    );
    m.settle();
    let (a, b) = (m.nodes[0], m.nodes[1]);
    let nw = network(&mut m, &[a, b]);
    // Warm up: identities, sessions and the direct path in both directions.
    for i in 0..20u8 {
        let f = m.frame(a, b, nw, i, 300);
        m.send_frame(a, b, nw, &f);
        let f = m.frame(b, a, nw, i, 300);
        m.send_frame(b, a, nw, &f);
        m.sim.run_for(Duration::from_millis(200));
    }
    assert!(is_direct(m.ping(a, b, 10 * SECOND)));
    m.sim.run_for(2 * SECOND);
    let versions = |m: &Mesh| [a, b].map(|h| m.node(h).node.snapshot().version());
    let before = versions(&m);
    let delivered = m.node(b).tap.len();
    // Eight seconds of frames both ways (keepalives and rekeys are further off): the
    // published snapshot, sessions and routes included, never changes.
    for i in 0..80u8 {
        let f = m.frame(a, b, nw, i, 1400);
        m.send_frame(a, b, nw, &f);
        let f = m.frame(b, a, nw, i, 1400);
        m.send_frame(b, a, nw, &f);
        m.sim.run_for(Duration::from_millis(100));
    }
    assert_eq!(m.node(b).tap.len(), delivered + 80, "every frame arrived");
    assert_eq!(versions(&m), before, "nothing was published again");
    // What the data plane carried still reached the control core: the path is alive.
    let b_addr = m.address(b);
    let seen = m
        .node(a)
        .node
        .peers(m.sim.now())
        .into_iter()
        .find(|p| p.address == b_addr)
        .unwrap();
    assert!(seen.last_rx.is_some_and(|t| t < SECOND), "{seen:?}");
    assert!(matches!(seen.link, Some(Via::Direct(_))), "{seen:?}");
}

#[test]
fn a_dead_direct_path_falls_back_to_the_relay() {
    let mut m = Mesh::build(
        8,
        &[link()],
        &[Placement::Public, Placement::Public],
        link(),
    );
    m.settle();
    let (a, b) = (m.nodes[0], m.nodes[1]);
    assert!(m.ping(a, b, 10 * SECOND).is_some());
    m.sim.run_for(2 * SECOND);
    assert!(is_direct(m.ping(a, b, 10 * SECOND)));
    m.sim.set_partition(a, b, true);
    let mut relayed = false;
    for _ in 0..40 {
        if is_relayed(m.ping(a, b, 2 * SECOND)) {
            relayed = true;
            break;
        }
    }
    assert!(relayed, "traffic went back through the root");
    m.sim.set_partition(a, b, false);
    let mut direct = false;
    for _ in 0..40 {
        m.sim.run_for(SECOND);
        if is_direct(m.ping(a, b, 2 * SECOND)) {
            direct = true;
            break;
        }
    }
    assert!(direct, "and direct again once the path healed");
}

#[test]
fn keepalives_hold_nat_mappings_open() {
    let mut m = Mesh::build(
        9,
        &[link()],
        &[
            Placement::Behind(NatKind::PortRestricted),
            Placement::Behind(NatKind::PortRestricted),
        ],
        link(),
    );
    for &n in &m.nodes.clone() {
        let nat = m.sim.behind(n).unwrap();
        m.sim.set_nat_timeout(nat, Duration::from_secs(30));
    }
    m.settle();
    let (a, b) = (m.nodes[0], m.nodes[1]);
    assert!(m.ping(a, b, 10 * SECOND).is_some());
    m.sim.run_for(2 * SECOND);
    assert!(is_direct(m.ping(a, b, 10 * SECOND)));
    // Idle (no user traffic) for 4 minutes: keepalives keep the path.
    m.sim.run_for(Duration::from_secs(240));
    assert!(
        is_direct(m.ping(a, b, 10 * SECOND)),
        "still direct after idling"
    );
}

#[test]
fn an_unknown_address_is_reported_unreachable() {
    let mut m = Mesh::build(10, &[link()], &[Placement::Public], link());
    m.settle();
    let a = m.nodes[0];
    let ghost = "0123456789".parse().unwrap();
    m.sim
        .with_host::<NodeHost, _>(a, |h, now| h.node.ping(now, ghost))
        .unwrap();
    m.sim.run_for(15 * SECOND);
    let events = &m.node(a).events;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, skylan::node::Event::Unreachable(x) if *x == ghost))
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, skylan::node::Event::PingLost { .. }))
    );
}

#[test]
fn large_frames_are_fragmented_and_reassembled_relayed_and_direct() {
    let mut m = Mesh::build(
        11,
        &[link()],
        &[Placement::Behind(NatKind::Symmetric), Placement::Public],
        link(),
    );
    m.settle();
    let (a, b) = (m.nodes[0], m.nodes[1]);
    let nw = network(&mut m, &[a, b]);
    // a → b starts relayed; b is public so a symmetric NAT still gets direct after a while.
    for i in 0..10u8 {
        let f = m.frame(a, b, nw, i, 2800);
        m.send_frame(a, b, nw, &f);
        let f = m.frame(b, a, nw, i, 2800);
        m.send_frame(b, a, nw, &f);
        m.sim.run_for(SECOND);
    }
    assert_eq!(m.node(b).tap.len(), 10);
    assert_eq!(m.node(a).tap.len(), 10);
    assert!(m.node(b).tap.iter().all(|f| f.frame.len() == 2800));
}

#[test]
fn loss_slows_but_does_not_stop_the_mesh() {
    // 5 % loss on each of the two links a ping crosses each way loses about 18.5 % of
    // round trips; 200 pings make 70 % answered a bound about four deviations away.
    let lossy = AccessLink::default().with_loss(0.05);
    let mut m = Mesh::build(12, &[lossy], &[Placement::Public, Placement::Public], lossy);
    m.settle();
    let (a, b) = (m.nodes[0], m.nodes[1]);
    let answered = (0..200)
        .filter(|_| m.ping(a, b, 6 * SECOND).is_some())
        .count();
    eprintln!("{answered}/200 pings answered at 5 % loss per link");
    assert!(
        answered >= 140,
        "{answered}/200 pings answered at 5 % loss per link"
    );
}

#[test]
fn a_node_that_moves_keeps_its_sessions() {
    let mut m = Mesh::build(
        13,
        &[link()],
        &[Placement::Public, Placement::Public],
        link(),
    );
    m.settle();
    let (a, b) = (m.nodes[0], m.nodes[1]);
    assert!(m.ping(a, b, 10 * SECOND).is_some());
    m.sim.run_for(2 * SECOND);
    assert!(is_direct(m.ping(a, b, 10 * SECOND)));
    // a gets a new address (DHCP renumbering, Wi-Fi to LTE): roaming on authenticated packets.
    m.sim
        .move_host(a, "198.51.100.200".parse().unwrap(), 9993, None);
    let mut back = false;
    for _ in 0..30 {
        if let Some((_, Via::Direct(ep))) = m.ping(a, b, 2 * SECOND) {
            let _ = ep;
            back = true;
            break;
        }
        m.sim.run_for(SECOND);
    }
    assert!(back, "a and b talk directly again after a moved");
    let new_ep: Endpoint = "198.51.100.200/9993".parse().unwrap();
    let seen = m
        .node(b)
        .node
        .peers(m.sim.now())
        .into_iter()
        .find(|p| p.address == m.address(a))
        .unwrap();
    assert!(seen.paths.iter().any(|(ep, alive)| *ep == new_ep && *alive));
}

#[test]
fn same_seed_same_run() {
    let run = |seed| {
        let mut m = Mesh::build(
            seed,
            &[AccessLink::default()
                .with_jitter(Duration::from_millis(3))
                .with_loss(0.02)],
            &[
                Placement::Behind(NatKind::PortRestricted),
                Placement::Public,
            ],
            AccessLink::default()
                .with_jitter(Duration::from_millis(3))
                .with_loss(0.02),
        );
        m.settle();
        let (a, b) = (m.nodes[0], m.nodes[1]);
        for _ in 0..5 {
            m.ping(a, b, 5 * SECOND);
        }
        (m.sim.trace_hash(), m.sim.now())
    };
    assert_eq!(run(14), run(14));
    assert_ne!(run(14).0, run(15).0);
}
