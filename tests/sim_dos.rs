//! Denial of service, in the simulator: a flood of HandshakeInits (correct mac1, forged
//! sources) cannot keep a real node from a root, old HandshakeInits are refused for
//! good by their timestamps, and a root relays only for nodes that said hello to it,
//! within a per-source rate.

mod adversary;

use adversary::*;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use skylan::crypto::guard::{HANDSHAKES_PER_SEC, MacKeys, write_macs};
use skylan::crypto::table::{InitAnswer, SessionTable, TableError};
use skylan::node::Node;
use skylan::root::{RELAY_PER_SOURCE_BURST, RootStats};
use skylan::sim::cores::NodeHost;
use skylan::sim::mesh::test_identity;
use skylan::types::{Endpoint, Time};
use skylan::wire::{self, Header, Kind};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

fn root_stats(m: &skylan::sim::mesh::Mesh) -> RootStats {
    *m.root(m.roots[0]).stats()
}

/// A forged source address: 192.0.2.0/24 with a random port.
fn forged(rng: &mut ChaCha20Rng) -> Endpoint {
    let ip = Ipv4Addr::new(192, 0, 2, (rng.next_u32() % 250) as u8 + 2);
    Endpoint(SocketAddr::new(
        IpAddr::V4(ip),
        1024 + (rng.next_u32() % 60_000) as u16,
    ))
}

#[test]
fn a_handshake_flood_at_the_root_does_not_keep_a_restarted_node_out() {
    let (mut m, a, _b, a_addr, b_addr) = public_pair(240);
    let root = m.roots[0];
    let root_ep = m.sim.endpoint(root);
    let root_identity = test_identity(0).public().clone();
    let mut rng = ChaCha20Rng::from_seed([40; 32]);
    // A pool of well-formed messages 1 with a correct mac1 from throwaway keys; each
    // costs the root its Diffie-Hellman work and fails only at the proof of work.
    let pool: Vec<_> = (0..32)
        .map(|_| throwaway_init(&mut rng, &root_identity))
        .collect();
    let before = root_stats(&m);
    // 5,000 a second (25 times the root's handshake budget), every 10 ms.
    let flood = |m: &mut skylan::sim::mesh::Mesh, rng: &mut ChaCha20Rng| {
        for i in 0..50 {
            let (claimed, msg1) = &pool[i % pool.len()];
            let pkt = handshake_init(rng.next_u32(), msg1, &root_identity, *claimed);
            m.sim.inject(forged(rng), root_ep, pkt);
        }
        m.sim.run_for(10 * MS);
    };
    for _ in 0..100 {
        flood(&mut m, &mut rng);
    }
    assert!(m.root(root).stats().cookie_replies > before.cookie_replies);
    // A restarts (same identity, no state) in the middle of the flood.
    let world = m.world.clone();
    let now = m.sim.now();
    *m.sim.host_mut::<NodeHost>(a) =
        NodeHost::new(Node::new(node_config(test_identity(1), &world, 0x41), now));
    let start = m.sim.now();
    let mut took = None;
    for _ in 0..500 {
        flood(&mut m, &mut rng);
        if stats(&m.sim, a).handshakes >= 1 {
            took = Some(m.sim.now().since(start));
            break;
        }
    }
    let took = took.expect("A completes a handshake with the root under the flood");
    let after = root_stats(&m);
    eprintln!(
        "flood of 5,000 HandshakeInits/s: restarted node handshaked with the root after {took:?}; \
         the root sent {} cookie replies and did public-key work for {} bogus messages",
        after.cookie_replies - before.cookie_replies,
        after.drop_handshake - before.drop_handshake,
    );
    // The first node tick, a cookie round trip and the handshake itself.
    assert!(took <= 2 * SECOND, "took {took:?}");
    // Public-key work stayed within the budget: at most the budget per second plus
    // one burst, over the whole flood.
    let seconds = m.sim.now().since(Time::ZERO).as_secs() + 1;
    assert!(
        after.drop_handshake - before.drop_handshake
            <= u64::from(HANDSHAKES_PER_SEC) * (seconds + 1)
    );
    // Still flooding, A reaches B through the path the root introduced.
    for _ in 0..100 {
        flood(&mut m, &mut rng);
    }
    assert!(ping(&mut m.sim, a, b_addr, 3 * SECOND).is_some());
    assert!(
        m.root(root).node_count() >= 2,
        "the root knows A ({a_addr}) again"
    );
}

/// Message 1 from A to B made at `at` (A's handshake timestamps follow its clock).
fn init_at(
    a: &mut SessionTable,
    at: Time,
    b: &skylan::crypto::identity::PublicIdentity,
) -> Vec<u8> {
    a.handshake_packet(at, b.address())
        .expect("a HandshakeInit")
}

#[test]
fn a_handshake_init_older_than_the_last_one_accepted_is_refused_for_good() {
    let a_id = test_identity(ATTACKER_POOL + 3);
    let b_id = test_identity(ATTACKER_POOL + 4);
    let b_pub = b_id.public().clone();
    let mut a = SessionTable::new(a_id, [1; 32]);
    let mut b = SessionTable::new(b_id, [2; 32]);
    a.add_peer(b_pub.clone());
    let from: Endpoint = "198.51.100.20:9993".parse().unwrap();
    let old = init_at(&mut a, Time::from_millis(1_000), &b_pub);
    let new = init_at(&mut a, Time::from_millis(2_000), &b_pub);
    assert!(matches!(
        b.on_handshake_init(Time::from_millis(2_100), from, &new),
        Ok(InitAnswer::Session { .. })
    ));
    // The older message was never answered (its ephemeral key is unknown to B), yet it
    // is refused, from any address and at any later time.
    let elsewhere: Endpoint = "203.0.113.9:4000".parse().unwrap();
    for (t, src) in [(2_200, from), (600_000, elsewhere)] {
        assert_eq!(
            b.on_handshake_init(Time::from_millis(t), src, &old).err(),
            Some(TableError::Replay)
        );
    }
    // A's clock going on, a new handshake works; a restarted A (new table, wall clock
    // later than before) too.
    let next = init_at(&mut a, Time::from_millis(700_000), &b_pub);
    assert!(
        b.on_handshake_init(Time::from_millis(700_000), from, &next)
            .is_ok()
    );
    let mut restarted = SessionTable::new(test_identity(ATTACKER_POOL + 3), [3; 32]);
    restarted.set_wall_origin(skylan::types::UnixTime::from_micros(800_000_000));
    restarted.add_peer(b_pub.clone());
    let fresh = init_at(&mut restarted, Time::from_millis(5), &b_pub);
    assert!(
        b.on_handshake_init(Time::from_millis(800_000), from, &fresh)
            .is_ok()
    );
    // Junk without mac1 costs one hash and is told apart.
    let mut junk = fresh.clone();
    let n = junk.len();
    junk[n - 2 * wire::MAC_LEN] ^= 1;
    assert_eq!(
        b.on_handshake_init(Time::from_millis(800_001), from, &junk)
            .err(),
        Some(TableError::BadMac)
    );
    // And a message whose mac1 is right for another responder, too.
    let mut other = fresh.clone();
    write_macs(&mut other, &MacKeys::for_responder(&[9; 32]), None);
    assert_eq!(
        b.on_handshake_init(Time::from_millis(800_002), from, &other)
            .err(),
        Some(TableError::BadMac)
    );
}

#[test]
fn the_root_relays_only_for_nodes_that_said_hello_and_within_their_rate() {
    let (mut m, a, b, a_addr, b_addr) = public_pair(241);
    let root_ep = m.sim.endpoint(m.roots[0]);
    let a_ep = m.sim.endpoint(a);
    let b_ep = m.sim.endpoint(b);
    let junk_to = |dest, src| {
        let mut junk = Vec::new();
        Header::new(Kind::Unknown(0x7f), dest, src).emit(&mut junk);
        junk.extend_from_slice(&[0; 64]);
        junk
    };
    let mut rng = ChaCha20Rng::from_seed([41; 32]);
    let before = root_stats(&m);
    // A stranger (never said hello) toward B, and A's address from another IP.
    for _ in 0..10 {
        let stranger = random_address(&mut rng);
        m.sim
            .inject(forged(&mut rng), root_ep, junk_to(b_addr, stranger));
        m.sim
            .inject(forged(&mut rng), root_ep, junk_to(b_addr, a_addr));
    }
    m.sim.run_for(SECOND);
    let after = root_stats(&m);
    assert_eq!(after.drop_unknown_src - before.drop_unknown_src, 20);
    assert_eq!(after.relayed, before.relayed, "nothing relayed for them");
    // From A's own address (a NAT may have moved its port) the root relays, within
    // A's budget: a burst well over it is cut to about the burst.
    let moved_port = Endpoint(SocketAddr::new(a_ep.0.ip(), a_ep.0.port() + 1));
    let before = root_stats(&m);
    let burst = 3 * RELAY_PER_SOURCE_BURST as usize;
    for _ in 0..burst {
        m.sim.inject(moved_port, root_ep, junk_to(b_addr, a_addr));
    }
    m.sim.run_for(SECOND);
    let after = root_stats(&m);
    let relayed = after.relayed - before.relayed;
    let limited = after.drop_relay_rate - before.drop_relay_rate;
    eprintln!(
        "{burst} packets at once from A's address: {relayed} relayed, {limited} over its rate"
    );
    assert_eq!(relayed + limited, burst as u64);
    assert!(relayed >= u64::from(RELAY_PER_SOURCE_BURST) && relayed < burst as u64);
    // B's relayed traffic is not affected: the budget is per source.
    let before = root_stats(&m);
    m.sim.inject(b_ep, root_ep, junk_to(a_addr, b_addr));
    m.sim.run_for(100 * MS);
    assert_eq!(root_stats(&m).relayed - before.relayed, 1);
    assert!(ping(&mut m.sim, a, b_addr, 3 * SECOND).is_some());
}
