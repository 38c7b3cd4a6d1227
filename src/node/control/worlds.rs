//! The control core's worlds: the planet, the moons the node orbits, the roots they
//! list, orbiting a moon through a seed, and world updates in band.
//!
//! # Roots
//! The node's roots are the planet's roots followed by each moon's (a root listed by
//! two worlds counts once, as its first world's kind). They are all alike: HELLO and
//! liveness (`roots`), WHOIS, and relaying through the alive root with the lowest
//! latency, so a node near a moon relays through it and keeps working through it when
//! every planet root is gone. A root that no world lists any more becomes a leaf peer
//! (forgotten when idle).
//!
//! # Orbit
//! [`Control::orbit`] records a *waiting* moon and sends its seed (any node address;
//! usually one of the moon's roots, which says hello to the planet's roots so they
//! can introduce it) a WORLD_REQUEST naming the moon with timestamp 0, every
//! [`ORBIT_RETRY`] until a signed moon with that id arrives from the seed. The moon is
//! accepted when it verifies (`World::verify`: structure, the id is its first root's
//! address, the signature); its roots are used from then on and
//! [`Event::WorldUpdated`] asks the driver to store it (`moons.d/<id>.moon`).
//!
//! # Updates in band
//! The node sends each root a WORLD_REQUEST listing every world it holds (id and
//! timestamp) when the root's session comes up and every [`WORLD_REFRESH`] after. A root
//! answers with each of those worlds it holds in a newer revision. A revision replaces
//! the held one only when `World::accepts_update` agrees: same id and kind, newer, and
//! signed by the held revision's update key. Anything else (a world nobody asked for,
//! an older or equal one, a broken chain or signature) changes nothing and is counted
//! in `drop_world`; a refused update is reported once as [`Event::WorldRefused`].
//! Cheap checks (the id and timestamp in the header) come before the costly ones
//! (a proof-of-work check per root and the signature), so unsolicited worlds cost
//! nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Control;
use crate::node::peer::{Peer, Role};
use crate::node::{Event, NodeError};
use crate::types::{NodeAddress, Time};
use crate::wire::Message;
use crate::world::{World, WorldError, WorldKind};

/// Each root is asked for newer worlds this often (and when its session comes up).
pub const WORLD_REFRESH: Duration = Duration::from_secs(300);
/// A waiting orbit asks its seed again this often.
pub const ORBIT_RETRY: Duration = Duration::from_secs(2);
/// Most moons a node orbits at once.
pub const MAX_MOONS: usize = 16;

/// A world as `moons` shows it: held, or waiting for its seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldInfo {
    /// The world id.
    pub id: u64,
    /// Planet or moon.
    pub kind: WorldKind,
    /// The signed world, once held (`None` while an orbit waits for its seed).
    pub world: Option<World>,
    /// The seed an orbit asked (moons orbited in this run).
    pub seed: Option<NodeAddress>,
}

/// A moon asked for and not yet received.
struct Orbit {
    seed: NodeAddress,
    last_sent: Option<Time>,
}

/// The worlds a node holds and waits for.
pub(super) struct Worlds {
    pub(super) planet: World,
    moons: BTreeMap<u64, World>,
    /// Seeds of moons orbited in this run (shown by `moons`).
    seeds: BTreeMap<u64, NodeAddress>,
    waiting: BTreeMap<u64, Orbit>,
    /// When each root was last asked for newer worlds.
    asked: BTreeMap<NodeAddress, Time>,
    /// Ids whose refusal was already reported (one event per id and revision).
    refused: BTreeMap<u64, u64>,
}

impl Worlds {
    /// The planet and the moons loaded from disk (moons that are not moons, or repeat an
    /// id, are skipped).
    pub(super) fn new(planet: World, moons: Vec<World>) -> Self {
        let moons = moons
            .into_iter()
            .filter(|m| m.kind == WorldKind::Moon)
            .take(MAX_MOONS)
            .map(|m| (m.id, m))
            .collect();
        Self {
            planet,
            moons,
            seeds: BTreeMap::new(),
            waiting: BTreeMap::new(),
            asked: BTreeMap::new(),
            refused: BTreeMap::new(),
        }
    }

    /// Every held world, planet first.
    pub(super) fn all(&self) -> impl Iterator<Item = &World> {
        std::iter::once(&self.planet).chain(self.moons.values())
    }

    /// What a WORLD_REQUEST to a root says: every held world.
    fn held(&self) -> Vec<(u64, u64)> {
        self.all().map(|w| (w.id, w.timestamp)).collect()
    }
}

/// The id and timestamp in a world's binary header, without verifying anything.
fn peek(bytes: &[u8]) -> Option<(WorldKind, u64, u64)> {
    let kind = match *bytes.get(16)? {
        1 => WorldKind::Planet,
        127 => WorldKind::Moon,
        _ => return None,
    };
    let id = u64::from_be_bytes(bytes.get(17..25)?.try_into().ok()?);
    let timestamp = u64::from_be_bytes(bytes.get(25..33)?.try_into().ok()?);
    Some((kind, id, timestamp))
}

impl Control {
    /// Starts orbiting moon `id` through `seed` (see the module documentation). Orbiting
    /// a moon already held or waited for changes only its seed.
    pub fn orbit(&mut self, now: Time, id: u64, seed: NodeAddress) -> Result<(), NodeError> {
        if id == self.worlds.planet.id {
            return Err(NodeError::PlanetId(id));
        }
        // Moon ids are their first root's address: 40 bits, not reserved.
        if id >> 40 != 0 || NodeAddress::new(id).is_err() {
            return Err(NodeError::NotAMoonId(id));
        }
        if seed == self.address() {
            return Err(NodeError::SelfAddress);
        }
        self.worlds.seeds.insert(id, seed);
        if self.worlds.moons.contains_key(&id) {
            return Ok(());
        }
        if self.worlds.moons.len() + self.worlds.waiting.len() >= MAX_MOONS
            && !self.worlds.waiting.contains_key(&id)
        {
            return Err(NodeError::TooManyMoons(MAX_MOONS));
        }
        self.worlds.waiting.insert(
            id,
            Orbit {
                seed,
                last_sent: None,
            },
        );
        self.ask_seeds(now);
        Ok(())
    }

    /// Stops orbiting moon `id` (held or waiting); false if it was neither.
    pub fn deorbit(&mut self, now: Time, id: u64) -> bool {
        self.worlds.seeds.remove(&id);
        let waited = self.worlds.waiting.remove(&id).is_some();
        let held = self.worlds.moons.remove(&id).is_some();
        if held {
            self.rebuild_roots(now);
        }
        waited || held
    }

    /// The planet, the moons held and the orbits waiting for their seed.
    pub fn worlds(&self) -> Vec<WorldInfo> {
        let held = self.worlds.all().map(|w| WorldInfo {
            id: w.id,
            kind: w.kind,
            world: Some(w.clone()),
            seed: self.worlds.seeds.get(&w.id).copied(),
        });
        let waiting = self.worlds.waiting.iter().map(|(&id, o)| WorldInfo {
            id,
            kind: WorldKind::Moon,
            world: None,
            seed: Some(o.seed),
        });
        held.chain(waiting).collect()
    }

    /// The roots of every held world, in world order, each once, without us.
    pub(super) fn world_roots(&self) -> Vec<(NodeAddress, Role)> {
        let me = self.address();
        let mut out: Vec<(NodeAddress, Role)> = Vec::new();
        for w in self.worlds.all() {
            let role = match w.kind {
                WorldKind::Planet => Role::Planet,
                WorldKind::Moon => Role::Moon,
            };
            for r in &w.roots {
                let a = r.identity.address();
                if a != me && !out.iter().any(|(x, _)| *x == a) {
                    out.push((a, role));
                }
            }
        }
        out
    }

    /// Makes the root list, the roots' peers and their world endpoints follow the
    /// worlds held. Roots no world lists any more become leaves.
    pub(super) fn rebuild_roots(&mut self, now: Time) {
        let roots = self.world_roots();
        for (address, role) in &roots {
            let endpoints = self.configured_endpoints(*address);
            if let Some(identity) = self
                .worlds
                .all()
                .flat_map(|w| &w.roots)
                .find(|r| r.identity.address() == *address)
                .map(|r| r.identity.clone())
            {
                if self.table.tunnel(*address).is_none() {
                    self.table.add_peer(identity);
                }
            }
            let p = self
                .peers
                .entry(*address)
                .or_insert_with(|| Peer::new(*role));
            p.role = *role;
            for ep in endpoints {
                p.add_candidate(now, ep);
            }
        }
        for old in &self.roots {
            if !roots.iter().any(|(a, _)| a == old) {
                if let Some(p) = self.peers.get_mut(old) {
                    p.role = Role::Leaf;
                    p.last_activity = Some(now);
                }
            }
        }
        self.roots = roots.into_iter().map(|(a, _)| a).collect();
        self.peers.touch_all();
        self.dirty = true;
    }

    /// Sends each waiting orbit's seed a WORLD_REQUEST when one is due.
    pub(super) fn ask_seeds(&mut self, now: Time) {
        let due: Vec<(u64, NodeAddress)> = self
            .worlds
            .waiting
            .iter_mut()
            .filter(|(_, o)| o.last_sent.is_none_or(|t| now.since(t) >= ORBIT_RETRY))
            .map(|(&id, o)| {
                o.last_sent = Some(now);
                (id, o.seed)
            })
            .collect();
        for (id, seed) in due {
            self.touch_activity(now, seed);
            let ask = Message::WorldRequest {
                worlds: vec![(id, 0)],
            };
            self.send_message(now, seed, &ask);
        }
    }

    /// Asks `root` for newer revisions of the worlds we hold when it is due (the
    /// session just came up, or [`WORLD_REFRESH`] passed).
    pub(super) fn ask_root_for_worlds(&mut self, now: Time, root: NodeAddress, force: bool) {
        if !force
            && self
                .worlds
                .asked
                .get(&root)
                .is_some_and(|t| now.since(*t) < WORLD_REFRESH)
        {
            return;
        }
        self.worlds.asked.insert(root, now);
        let ask = Message::WorldRequest {
            worlds: self.worlds.held(),
        };
        self.send_message(now, root, &ask);
    }

    /// An OK carrying a world arrived from `peer` (authenticated).
    pub(super) fn on_world(&mut self, now: Time, peer: NodeAddress, bytes: &[u8]) {
        let Some((kind, id, timestamp)) = peek(bytes) else {
            self.stats.drop_world += 1;
            return;
        };
        let held = self.worlds.all().find(|w| w.id == id && w.kind == kind);
        let wanted = match held {
            Some(w) => timestamp > w.timestamp,
            None => {
                kind == WorldKind::Moon
                    && self.worlds.waiting.get(&id).is_some_and(|o| o.seed == peer)
            }
        };
        if !wanted || self.worlds.refused.get(&id) == Some(&timestamp) {
            self.stats.drop_world += 1;
            return;
        }
        // from_bytes verifies the world in itself; an update must also extend the chain.
        let checked = World::from_bytes(bytes).and_then(|w| {
            if let Some(old) = held {
                old.accepts_update(&w)?;
            }
            Ok(w)
        });
        match checked {
            Ok(world) => self.adopt(now, world),
            Err(e) => self.refuse(peer, id, timestamp, e),
        }
    }

    fn adopt(&mut self, now: Time, world: World) {
        match world.kind {
            WorldKind::Planet => self.worlds.planet = world.clone(),
            WorldKind::Moon => {
                self.worlds.waiting.remove(&world.id);
                self.worlds.moons.insert(world.id, world.clone());
            }
        }
        self.rebuild_roots(now);
        self.event(Event::WorldUpdated(Box::new(world)));
    }

    fn refuse(&mut self, peer: NodeAddress, id: u64, timestamp: u64, e: WorldError) {
        self.stats.drop_world += 1;
        self.worlds.refused.insert(id, timestamp);
        self.event(Event::WorldRefused {
            id,
            from: peer,
            reason: e.to_string(),
        });
    }
}
