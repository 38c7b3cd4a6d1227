//! Restarts are invisible, in the simulator: a node, a root or a controller that comes
//! back with the same identity and no state is reached again within seconds, because a
//! Data packet on a session it no longer holds is answered with SessionUnknown and the
//! sender handshakes again at once. And that answer cannot be abused: a wrong index
//! changes nothing, a right one at most one rekey per rekey timeout, a flood of unknown
//! indices a bounded trickle of answers.

mod adversary;

use std::time::Duration;

use adversary::*;
use skylan::crypto::table::LostSessionReplies;
use skylan::crypto::tunnel::REKEY_TIMEOUT;
use skylan::node::{Node, ROOT_HELLO_INTERVAL};
use skylan::root::Root;
use skylan::sim::cores::NodeHost;
use skylan::sim::mesh::{Mesh, test_identity};
use skylan::types::NodeAddress;
use skylan::wire::{Kind, Outer};

/// Replaces node `host` (pool identity `identity`) by a fresh node with the same identity.
fn restart_node(m: &mut Mesh, host: skylan::sim::HostId, identity: usize, seed: u8) {
    let world = m.world.clone();
    let now = m.sim.now();
    *m.sim.host_mut::<NodeHost>(host) = NodeHost::new(Node::new(
        node_config(test_identity(identity), &world, seed),
        now,
    ));
}

/// The index `from` seals to when sending to `to` (from its captured Data packets).
fn index_in_use(m: &mut Mesh, from: skylan::sim::HostId, to: NodeAddress) -> u32 {
    let from_addr = m.address(from);
    m.sim.enable_capture();
    ping(&mut m.sim, from, to, 2 * SECOND).expect("ping");
    m.sim
        .take_captured()
        .iter()
        .filter(|c| is_kind(c, Kind::Data, from_addr, to))
        .find_map(|c| match skylan::wire::parse(&c.bytes) {
            Ok((_, Outer::Data { receiver_index, .. })) => Some(receiver_index),
            _ => None,
        })
        .expect("a Data packet from A to B")
}

#[test]
fn a_restarted_peer_is_reachable_again_within_5_s() {
    let (mut m, a, b, a_addr, b_addr) = public_pair(219);
    assert!(ping(&mut m.sim, a, b_addr, 10 * SECOND).is_some());
    m.sim.run_for(5 * SECOND);
    restart_node(&mut m, b, 2, 0x77);
    assert_eq!(m.address(b), b_addr);
    let took = time_until(&mut m.sim, 60, |s| ping(s, a, b_addr, SECOND).is_some())
        .expect("A reaches the restarted B");
    eprintln!("restart: A -> B answered again after {took:?}");
    // The first ping finds no session at B, whose answer makes A handshake again; the
    // next one gets through (before SessionUnknown this took 16 s).
    assert!(took <= 3 * SECOND, "took {took:?}");
    assert!(stats(&m.sim, b).lost_session_answers >= 1);
    assert_eq!(stats(&m.sim, a).lost_session_rekeys, 1);
    assert!(ping(&mut m.sim, b, a_addr, 5 * SECOND).is_some());
}

#[test]
fn a_restarted_root_is_reached_again_within_seconds() {
    let (mut m, a, _, _, b_addr) = public_pair(230);
    let root = m.roots[0];
    let rekeys_before = stats(&m.sim, a).lost_session_rekeys;
    // The mesh's one root has the pool's first identity.
    let identity = test_identity(0);
    let world = m.world.clone();
    let now = m.sim.now();
    *m.sim.host_mut::<Root>(root) = Root::new(identity, Some(&world), [9; 32], now);
    // The nodes' next HELLOs find no session at the root; it answers, they handshake
    // again, and the root knows them again (it relays and answers WHOIS for them).
    let start = m.sim.now();
    let came_back = m.sim.run_until_true(60 * SECOND, |s| {
        let root: &Root = s.host(root);
        root.node_count() >= 2
    });
    let took = m.sim.now().since(start);
    eprintln!("root restart: both nodes known again after {took:?}");
    assert!(came_back, "the nodes say hello to the restarted root");
    // Their next HELLO finds no session; the answer makes them handshake at once (before,
    // they kept sealing HELLOs nobody could open until the rekey, 120 s on).
    assert!(took <= ROOT_HELLO_INTERVAL + 3 * SECOND, "took {took:?}");
    assert!(stats(&m.sim, a).lost_session_rekeys > rekeys_before);
    assert!(ping(&mut m.sim, a, b_addr, 5 * SECOND).is_some());
}

#[test]
fn session_unknown_with_a_wrong_index_changes_nothing() {
    let (mut m, a, b, a_addr, b_addr) = public_pair(231);
    let index = index_in_use(&mut m, a, b_addr);
    let forged = packet(
        Outer::SessionUnknown {
            receiver_index: index ^ 1,
        },
        a_addr,
        b_addr,
    );
    let before = stats(&m.sim, a);
    for _ in 0..10 {
        m.sim.inject_to_host(a, m.sim.endpoint(b), forged.clone());
    }
    m.sim.run_for(SECOND);
    let after = stats(&m.sim, a);
    assert_eq!(after.lost_session_rekeys, before.lost_session_rekeys);
    assert_eq!(after.handshakes, before.handshakes, "no new handshake");
    assert!(after.drop_unknown_session >= before.drop_unknown_session + 10);
}

#[test]
fn session_unknown_with_the_right_index_costs_one_rekey_per_timeout() {
    let (mut m, a, b, a_addr, b_addr) = public_pair(232);
    let index = index_in_use(&mut m, a, b_addr);
    let seen = packet(
        Outer::SessionUnknown {
            receiver_index: index,
        },
        a_addr,
        b_addr,
    );
    // An on-path attacker replays it over and over: one rekey, and traffic flows on.
    for _ in 0..20 {
        m.sim.inject_to_host(a, m.sim.endpoint(b), seen.clone());
        m.sim.run_for(Duration::from_millis(100));
    }
    assert!(REKEY_TIMEOUT > 2 * SECOND);
    assert_eq!(stats(&m.sim, a).lost_session_rekeys, 1);
    assert!(ping(&mut m.sim, a, b_addr, 2 * SECOND).is_some());
}

#[test]
fn a_flood_of_unknown_indices_gets_a_bounded_trickle_of_answers() {
    let (mut m, _, b, _, b_addr) = public_pair(233);
    let before = stats(&m.sim, b).lost_session_answers;
    // 5,000 Data packets on unknown indices from 50 claimed sources within a second.
    for i in 0..5_000u32 {
        let src = address(i as usize % 50);
        let data = packet(
            Outer::Data {
                receiver_index: i,
                counter: 0,
                ciphertext: &[0; 32],
            },
            b_addr,
            src,
        );
        m.sim.inject_to_host(b, spoofer(), data);
    }
    m.sim.run_for(Duration::from_millis(500));
    let answers = stats(&m.sim, b).lost_session_answers - before;
    assert!(
        answers <= 50,
        "{answers} answers for 50 sources in under a second"
    );
}

#[test]
fn the_answer_table_is_bounded() {
    let mut replies = LostSessionReplies::default();
    let now = skylan::types::Time::from_millis(1_000);
    let allowed = (0..LostSessionReplies::MAX + 100)
        .filter(|&i| replies.allow(now, address(i)))
        .count();
    assert_eq!(allowed, LostSessionReplies::MAX);
    assert!(
        !replies.allow(now, address(0)),
        "once per second per source"
    );
    let later = now + LostSessionReplies::EVERY;
    assert!(replies.allow(later, address(LostSessionReplies::MAX + 5)));
    assert!(replies.allow(later, address(0)));
}

fn address(i: usize) -> NodeAddress {
    NodeAddress::new(0x10_0000_0000 + i as u64).expect("address")
}
