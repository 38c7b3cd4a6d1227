//! Moons in the deterministic simulator: a node orbits a moon through its seed (the moon
//! root's address, found through the planet), relays through the nearest live root,
//! keeps working through the moon when every planet root is gone, reaches nodes that
//! orbit no moon through it, and follows world updates in band only along the update
//! key chain. Forged and unchained worlds change nothing and are counted.

use std::time::Duration;

use skylan::node::peer::Role;
use skylan::node::{Event, Link, WORLD_REFRESH, WorldInfo};
use skylan::root::Root;
use skylan::sim::mesh::{MOON_KEY, Mesh, PLANET_KEY, Placement, signed_world};
use skylan::sim::{AccessLink, HostId, NatKind};
use skylan::types::NodeAddress;
use skylan::world::{World, WorldKind};

const SECOND: Duration = Duration::from_secs(1);

/// A planet root 40 ms away, two nodes behind symmetric NATs (they must relay), and a
/// moon root 5 ms away that nobody orbits yet.
fn mesh_with_moon(seed: u64) -> (Mesh, HostId, World) {
    let far = AccessLink::default().with_latency(Duration::from_millis(40));
    let near = AccessLink::default().with_latency(Duration::from_millis(5));
    let mut m = Mesh::build(
        seed,
        &[far],
        &[
            Placement::Behind(NatKind::Symmetric),
            Placement::Behind(NatKind::Symmetric),
        ],
        AccessLink::default(),
    );
    let (moon_root, moon) = m.add_moon_root(near);
    m.settle();
    (m, moon_root, moon)
}

fn root_address(m: &Mesh, root: HostId) -> NodeAddress {
    m.sim.host::<Root>(root).address()
}

fn held(m: &Mesh, node: HostId, id: u64) -> Option<World> {
    m.node(node)
        .node
        .worlds()
        .into_iter()
        .find(|w: &WorldInfo| w.id == id)
        .and_then(|w| w.world)
}

/// Orbits `moon` from each node through `seed` and waits until every one holds it.
fn orbit_all(m: &mut Mesh, nodes: &[HostId], moon: &World, seed: NodeAddress) -> Duration {
    let start = m.sim.now();
    for &n in nodes {
        m.sim
            .with_host::<skylan::sim::cores::NodeHost, _>(n, |h, now| {
                h.node.orbit(now, moon.id, seed)
            })
            .expect("orbit accepted");
    }
    let ids: Vec<HostId> = nodes.to_vec();
    let id = moon.id;
    let ok = m.sim.run_until_true(20 * SECOND, |s| {
        ids.iter().all(|&n| {
            s.host::<skylan::sim::cores::NodeHost>(n)
                .node
                .worlds()
                .iter()
                .any(|w| w.id == id && w.world.is_some())
        })
    });
    assert!(ok, "the moon was not held within 20 s of orbit");
    m.sim.now().since(start)
}

fn role_of(m: &Mesh, node: HostId, peer: NodeAddress) -> Option<Role> {
    let now = m.sim.now();
    m.node(node)
        .node
        .peers(now)
        .into_iter()
        .find(|p| p.address == peer)
        .map(|p| p.role)
}

#[test]
fn orbit_fetches_the_moon_through_its_seed_and_uses_its_roots() {
    let (mut m, moon_root, moon) = mesh_with_moon(1);
    let [a, b] = [m.nodes[0], m.nodes[1]];
    let seed = root_address(&m, moon_root);
    let took = orbit_all(&mut m, &[a, b], &moon, seed);
    eprintln!("moon held {took:?} after orbit (seed found through the planet)");
    assert_eq!(held(&m, a, moon.id).as_ref(), Some(&moon));
    assert!(
        m.node(a)
            .events
            .iter()
            .any(|e| matches!(e, Event::WorldUpdated(w) if **w == moon)),
        "the driver is told to store the moon"
    );
    m.sim.run_for(10 * SECOND);
    assert_eq!(role_of(&m, a, seed), Some(Role::Moon));
    let report = m.node(a).node.roots_report(m.sim.now());
    assert!(
        report.iter().any(|r| r.address == seed && r.alive),
        "the moon root answers: {report:?}"
    );
    // Relayed traffic goes through the nearest live root: the moon (5 ms, planet 40 ms).
    let (_, link) = m.ping(a, b, 5 * SECOND).expect("a reaches b");
    assert_eq!(
        link,
        Link::Relay(seed),
        "relayed through the nearer moon root"
    );
    assert_eq!(m.link_of(a, b), Some(Link::Relay(seed)));
    // Deorbit: the moon root is a root no more, a's traffic goes through the planet.
    assert!(
        m.sim
            .with_host::<skylan::sim::cores::NodeHost, _>(a, |h, now| h.node.deorbit(now, moon.id))
    );
    assert!(held(&m, a, moon.id).is_none());
    assert_eq!(role_of(&m, a, seed), Some(Role::Leaf));
    let planet_root = root_address(&m, m.roots[0]);
    assert!(
        m.ping(a, b, 5 * SECOND).is_some(),
        "a reaches b after deorbit"
    );
    assert_eq!(m.link_of(a, b), Some(Link::Relay(planet_root)));
}

#[test]
fn a_moon_root_carries_the_network_when_every_planet_root_is_gone() {
    let mut times = Vec::new();
    for seed in 20..30 {
        let (mut m, moon_root, moon) = mesh_with_moon(seed);
        let [a, b] = [m.nodes[0], m.nodes[1]];
        let seed_root = root_address(&m, moon_root);
        orbit_all(&mut m, &[a, b], &moon, seed_root);
        m.sim.run_for(10 * SECOND);
        m.sim.set_up(m.roots[0], false);
        let start = m.sim.now();
        let mut answered = None;
        while m.sim.now().since(start) < 30 * SECOND {
            if let Some((_, link)) = m.ping(a, b, SECOND) {
                answered = Some((m.sim.now().since(start), link));
                break;
            }
        }
        let (after, link) = answered.expect("a reaches b through the moon without the planet");
        assert_eq!(link, Link::Relay(seed_root), "seed {seed}");
        times.push(after);
        // Still online (the moon root answers); the dead planet root is shown dead.
        m.sim.run_for(10 * SECOND);
        let status = m.node(a).node.status(m.sim.now());
        assert!(status.online, "online through the moon root: {status:?}");
        let planet_root = root_address(&m, m.roots[0]);
        let report = m.node(a).node.roots_report(m.sim.now());
        assert!(report.iter().any(|r| r.address == planet_root && !r.alive));
    }
    eprintln!("planet root down, pings through the moon root: {times:?}");
}

#[test]
fn nodes_that_orbit_no_moon_are_reached_through_the_moon_root() {
    let mut firsts = Vec::new();
    for seed in 30..40 {
        let (mut m, moon_root, moon) = mesh_with_moon(seed);
        let [a, b] = [m.nodes[0], m.nodes[1]];
        let seed_root = root_address(&m, moon_root);
        // Only a orbits: it relays through the moon root, which hands packets for b
        // (whom it has never heard of) to the planet root.
        orbit_all(&mut m, &[a], &moon, seed_root);
        m.sim.run_for(10 * SECOND);
        // First contact: a's handshake goes a -> moon -> planet -> b and b's answer
        // b -> planet -> a, 200 ms there and back; the first ping answers.
        let start = m.sim.now();
        firsts.push(
            m.ping(a, b, 5 * SECOND)
                .map(|_| m.sim.now().since(start))
                .expect("a reaches b at first contact"),
        );
        for _ in 0..3 {
            assert!(
                m.ping(a, b, 5 * SECOND).is_some(),
                "seed {seed}: a reaches b"
            );
            assert!(
                m.ping(b, a, 5 * SECOND).is_some(),
                "seed {seed}: b reaches a"
            );
        }
        assert_eq!(m.link_of(a, b), Some(Link::Relay(seed_root)), "seed {seed}");
        assert!(m.sim.host::<Root>(moon_root).stats().forwarded_upstream > 0);
    }
    eprintln!("first contact through moon and planet: {firsts:?}");
}

#[test]
fn world_updates_spread_in_band_only_along_the_update_key_chain() {
    let (mut m, moon_root, moon) = mesh_with_moon(4);
    let a = m.nodes[0];
    let seed = root_address(&m, moon_root);
    orbit_all(&mut m, &[a], &moon, seed);
    // Revision 2, signed by the key revision 1 names: taken at the next refresh.
    let rev2 = signed_world(WorldKind::Moon, moon.id, moon.roots.clone(), 2, MOON_KEY);
    m.sim.host_mut::<Root>(moon_root).add_world(rev2.clone());
    m.sim.run_for(WORLD_REFRESH + 10 * SECOND);
    assert_eq!(held(&m, a, moon.id), Some(rev2.clone()));
    assert!(
        m.node(a)
            .events
            .iter()
            .any(|e| matches!(e, Event::WorldUpdated(w) if **w == rev2))
    );
    // Revision 3 signed by another key: refused, reported once, nothing changes.
    let forged = signed_world(WorldKind::Moon, moon.id, moon.roots.clone(), 3, 99);
    m.sim.host_mut::<Root>(moon_root).add_world(forged);
    m.sim.run_for(2 * WORLD_REFRESH + 10 * SECOND);
    assert_eq!(held(&m, a, moon.id), Some(rev2));
    let refused: Vec<&Event> = m
        .node(a)
        .events
        .iter()
        .filter(|e| matches!(e, Event::WorldRefused { .. }))
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(m.node(a).node.stats().drop_world >= 2);
    // The planet too: a newer revision signed by the planet's key arrives from its root.
    let planet = m.world.clone();
    let newer = signed_world(
        WorldKind::Planet,
        planet.id,
        planet.roots.clone(),
        5,
        PLANET_KEY,
    );
    m.sim.host_mut::<Root>(m.roots[0]).add_world(newer.clone());
    m.sim.run_for(WORLD_REFRESH + 10 * SECOND);
    assert_eq!(held(&m, a, planet.id), Some(newer));
    assert_eq!(m.node(a).node.status(m.sim.now()).world, (planet.id, 5));
}

#[test]
fn a_moon_that_does_not_verify_is_refused_and_the_orbit_keeps_waiting() {
    let (mut m, moon_root, moon) = mesh_with_moon(5);
    let a = m.nodes[0];
    let seed = root_address(&m, moon_root);
    let mut tampered = moon.clone();
    tampered.signature[0] ^= 1;
    m.sim.host_mut::<Root>(moon_root).add_world(tampered);
    m.sim
        .with_host::<skylan::sim::cores::NodeHost, _>(a, |h, now| h.node.orbit(now, moon.id, seed))
        .expect("orbit accepted");
    m.sim.run_for(20 * SECOND);
    let info = m
        .node(a)
        .node
        .worlds()
        .into_iter()
        .find(|w| w.id == moon.id)
        .expect("still listed");
    assert!(info.world.is_none(), "still waiting");
    assert_eq!(info.seed, Some(seed));
    assert!(m.node(a).events.iter().any(|e| matches!(
        e,
        Event::WorldRefused { id, reason, .. } if *id == moon.id && reason.contains("signature")
    )));
    assert_ne!(role_of(&m, a, seed), Some(Role::Moon));
    // Orbiting the planet's id or a non-address id is refused at once.
    let planet_id = m.world.id;
    let err = m
        .sim
        .with_host::<skylan::sim::cores::NodeHost, _>(a, |h, now| {
            h.node.orbit(now, planet_id, seed)
        })
        .unwrap_err();
    assert!(err.to_string().contains("planet"), "{err}");
}
