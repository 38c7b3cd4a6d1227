//! What a node knows about each peer besides its sessions: physical paths, latency,
//! the queue of messages waiting for a session, and activity timestamps.
//!
//! Path rules (the anti-spoofing contract): a path is *learned* only from an
//! authenticated packet that arrived with zero hops from that endpoint; a candidate
//! path from a RENDEZVOUS is only probed, never used for traffic, until an authenticated
//! packet confirms it; so are the LAN endpoints a peer pushes itself (PushDirectPaths,
//! see `control::paths`, which also keeps a relayed pair's candidates past
//! [`CANDIDATE_EXPIRE`]). A path is *alive* while something authenticated arrived on it
//! within [`PATH_ALIVE`]; it is forgotten after [`PATH_EXPIRE`].

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use super::snapshot::{Activity, PeerActivity, later};
use crate::types::{Endpoint, NodeAddress, Time};

/// A path is used for traffic while it received something within this long.
pub const PATH_ALIVE: Duration = Duration::from_secs(30);
/// A path is forgotten after this long without receiving.
pub const PATH_EXPIRE: Duration = Duration::from_secs(120);
/// A probe on a path (a HELLO sent after the path went quiet while we were sending on
/// it) that waited this long for an answer makes the path dead until something
/// authenticated arrives on it again.
pub const PATH_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// An unconfirmed candidate path is forgotten after this long.
pub const CANDIDATE_EXPIRE: Duration = Duration::from_secs(30);
/// At most this many paths per peer (a RENDEZVOUS endpoint, a few pushed LAN endpoints
/// and the paths learned from traffic).
pub const MAX_PATHS: usize = 8;
/// At most this many messages wait for a session to a peer; older ones are dropped.
pub const MAX_QUEUED: usize = 64;
/// A peer that carried user traffic (frames, pings) within this long is *active*: it
/// gets keepalives and rekeys. Idle peers let their sessions and paths lapse.
pub const ACTIVE_FOR: Duration = Duration::from_secs(300);

/// Role of a peer in the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An ordinary node.
    Leaf,
    /// A root of the planet.
    Planet,
    /// A root of a moon.
    Moon,
}

impl Role {
    /// True for planet and moon roots.
    pub fn is_root(self) -> bool {
        !matches!(self, Role::Leaf)
    }

    /// The name `peers` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leaf => "LEAF",
            Role::Planet => "PLANET",
            Role::Moon => "MOON",
        }
    }
}

/// One physical path to a peer.
#[derive(Debug, Clone)]
pub struct Path {
    /// The peer's endpoint as we see it.
    pub endpoint: Endpoint,
    /// Last authenticated packet received on it; `None` for an unconfirmed candidate.
    pub last_rx: Option<Time>,
    /// Last packet sent on it.
    pub last_tx: Option<Time>,
    /// When the path was added or last nominated by a RENDEZVOUS; a path that is not
    /// alive is probed for [`CANDIDATE_EXPIRE`] after that.
    pub nominated: Time,
    /// Smoothed round-trip time measured on it.
    pub latency: Option<Duration>,
    /// When the first probe since the path last received was sent (see
    /// `control::liveness`).
    pub probe_since: Option<Time>,
    /// When the path was given up for the peer's relayed traffic (see
    /// `control::liveness`); alive again with the next packet received on it.
    pub given_up: Option<Time>,
    /// Our endpoint as the peer saw it in its last HELLO answer on this path (roots).
    pub observed: Option<Endpoint>,
}

impl Path {
    /// A path to `endpoint` nominated at `now`, that received at `last_rx` (`None` for a
    /// candidate), with nothing sent, measured or probed yet.
    fn new(endpoint: Endpoint, now: Time, last_rx: Option<Time>) -> Self {
        Path {
            endpoint,
            last_rx,
            last_tx: None,
            nominated: now,
            latency: None,
            probe_since: None,
            given_up: None,
            observed: None,
        }
    }

    /// True when the path may carry traffic: it received within [`PATH_ALIVE`] and no
    /// probe has waited longer than [`PATH_ANSWER_TIMEOUT`].
    pub fn alive(&self, now: Time) -> bool {
        self.last_rx
            .is_some_and(|t| now.since(t) < PATH_ALIVE && self.given_up.is_none_or(|g| t > g))
            && self
                .unanswered_probe()
                .is_none_or(|since| now.since(since) < PATH_ANSWER_TIMEOUT)
    }

    /// Makes the path dead now, until something authenticated arrives on it again.
    pub fn give_up(&mut self, now: Time) {
        self.given_up = Some(now);
    }

    /// When the probe still waiting for an answer was sent, if one is.
    pub fn unanswered_probe(&self) -> Option<Time> {
        self.probe_since
            .filter(|since| self.last_rx.is_none_or(|rx| rx < *since))
    }

    /// True when the path should be probed: not alive, but nominated recently.
    pub fn wants_probe(&self, now: Time) -> bool {
        !self.alive(now) && now.since(self.nominated) < CANDIDATE_EXPIRE
    }
}

/// Per-peer state of the node core.
#[derive(Debug)]
pub struct Peer {
    /// Leaf or root.
    pub role: Role,
    /// Direct paths (for roots: their world endpoints, always kept).
    pub paths: Vec<Path>,
    /// Plaintext messages (verb + payload) waiting for a session.
    pub queue: VecDeque<Vec<u8>>,
    /// Last authenticated packet from the peer, on any path.
    pub last_rx: Option<Time>,
    /// Last authenticated packet from the peer that came through a root.
    pub last_relayed_rx: Option<Time>,
    /// Last packet we sent to the peer.
    pub last_tx: Option<Time>,
    /// Last user traffic (frames, pings) in either direction.
    pub last_activity: Option<Time>,
    /// Last handshake we started.
    pub last_handshake: Option<Time>,
    /// Last time the peer's SessionUnknown made us drop our session and handshake again.
    pub last_lost_session: Option<Time>,
    /// Last HELLO we sent (roots).
    pub last_hello: Option<Time>,
    /// When the first HELLO since the root last answered was sent (roots; see
    /// `control::roots` for how it decides liveness).
    pub probe_since: Option<Time>,
    /// Smoothed round-trip time, any path.
    pub latency: Option<Duration>,
    /// Software version the peer reported in HELLO.
    pub version: Option<crate::wire::SoftwareVersion>,
    /// What the data plane reports about the peer; folded in by the control core on every tick.
    pub activity: Arc<PeerActivity>,
}

impl Peer {
    /// A peer with no paths yet.
    pub fn new(role: Role) -> Self {
        Self {
            role,
            paths: Vec::new(),
            queue: VecDeque::new(),
            last_rx: None,
            last_relayed_rx: None,
            last_tx: None,
            last_activity: None,
            last_handshake: None,
            last_lost_session: None,
            last_hello: None,
            probe_since: None,
            latency: None,
            version: None,
            activity: Arc::default(),
        }
    }

    /// True when user traffic flowed recently, or the peer is a root.
    pub fn active(&self, now: Time) -> bool {
        self.role.is_root()
            || self
                .last_activity
                .is_some_and(|t| now.since(t) < ACTIVE_FOR)
    }

    /// The best alive path (see [`best_path_index`](Self::best_path_index)).
    pub fn best_path(&self, now: Time) -> Option<&Path> {
        self.best_path_index(now).map(|i| &self.paths[i])
    }

    /// Where in `paths` the best alive path is. Within each address family the path
    /// heard from most recently wins (it follows roaming and NAT rebinding). Between the
    /// families an alive IPv6 path wins (no NAT on the way, usually; ZeroTier and Happy
    /// Eyeballs prefer it too), so a dual-stack pair settles on one family on both sides
    /// and stays there instead of following whichever packet came last; IPv4 carries the
    /// traffic when IPv6 stops answering (`control::liveness` gives the path up).
    ///
    /// Round trips do not decide: the path not in use is not measured any more, so its
    /// last sample (often the first, taken while the pair was still setting up) would
    /// decide forever.
    pub fn best_path_index(&self, now: Time) -> Option<usize> {
        let newest = |v6: bool| {
            self.paths
                .iter()
                .enumerate()
                .filter(|(_, p)| p.endpoint.0.is_ipv6() == v6 && p.alive(now))
                .max_by_key(|(_, p)| p.last_rx)
                .map(|(i, _)| i)
        };
        newest(true).or_else(|| newest(false))
    }

    /// Records an authenticated packet received directly from `endpoint`.
    pub fn learn_path(&mut self, now: Time, endpoint: Endpoint) {
        self.last_rx = Some(now);
        if let Some(p) = self.paths.iter_mut().find(|p| p.endpoint == endpoint) {
            p.last_rx = Some(now);
            return;
        }
        self.insert_path(Path::new(endpoint, now, Some(now)));
    }

    /// Adds a candidate path to probe (from RENDEZVOUS or the world file), or
    /// nominates a known one again. Returns true if it is new.
    pub fn add_candidate(&mut self, now: Time, endpoint: Endpoint) -> bool {
        if let Some(p) = self.paths.iter_mut().find(|p| p.endpoint == endpoint) {
            p.nominated = now;
            return false;
        }
        self.insert_path(Path::new(endpoint, now, None));
        true
    }

    /// The path to `endpoint`, if it is one of ours.
    pub fn path_mut(&mut self, endpoint: Endpoint) -> Option<&mut Path> {
        self.paths.iter_mut().find(|p| p.endpoint == endpoint)
    }

    /// Notes a round-trip measurement (on `endpoint` if it is a known path).
    pub fn record_rtt(&mut self, endpoint: Option<Endpoint>, rtt: Duration) {
        self.latency = Some(smooth(self.latency, rtt));
        if let Some(ep) = endpoint {
            if let Some(p) = self.paths.iter_mut().find(|p| p.endpoint == ep) {
                p.latency = Some(smooth(p.latency, rtt));
            }
        }
    }

    /// Notes a packet sent on `endpoint`.
    pub fn sent_on(&mut self, now: Time, endpoint: Endpoint) {
        self.last_tx = Some(now);
        if let Some(p) = self.paths.iter_mut().find(|p| p.endpoint == endpoint) {
            p.last_tx = Some(now);
        }
    }

    /// Queues a plaintext message for when a session exists; drops the oldest when full.
    /// Returns false when something was dropped.
    pub fn enqueue(&mut self, plaintext: Vec<u8>) -> bool {
        let dropped = self.queue.len() >= MAX_QUEUED;
        if dropped {
            self.queue.pop_front();
        }
        self.queue.push_back(plaintext);
        !dropped
    }

    /// Folds in what the data plane reported: `path` is the direct path it was told to
    /// refresh on receive, `sent_on` the path it sent on (if direct).
    pub(crate) fn fold(
        &mut self,
        act: Activity,
        path: Option<Endpoint>,
        sent_on: Option<Endpoint>,
    ) {
        self.last_rx = later(self.last_rx, act.rx);
        self.last_tx = later(self.last_tx, act.tx);
        self.last_activity = later(self.last_activity, act.active);
        self.last_relayed_rx = later(self.last_relayed_rx, act.relayed_rx);
        for p in &mut self.paths {
            if Some(p.endpoint) == path {
                p.last_rx = later(p.last_rx, act.path_rx);
            }
            if Some(p.endpoint) == sent_on {
                p.last_tx = later(p.last_tx, act.tx);
            }
        }
    }

    /// Forgets dead paths (never a root's configured endpoints).
    pub fn expire_paths(&mut self, now: Time, keep: &[Endpoint]) {
        self.paths.retain(|p| {
            keep.contains(&p.endpoint)
                || match p.last_rx {
                    Some(t) => now.since(t) < PATH_EXPIRE,
                    None => now.since(p.nominated) < CANDIDATE_EXPIRE,
                }
        });
    }

    fn insert_path(&mut self, path: Path) {
        if self.paths.len() >= MAX_PATHS {
            // Evict the path heard from least recently (candidates first).
            if let Some((i, _)) = self
                .paths
                .iter()
                .enumerate()
                .min_by_key(|(_, p)| (p.last_rx, p.nominated))
            {
                self.paths.swap_remove(i);
            }
        }
        self.paths.push(path);
    }
}

/// Exponentially weighted moving average with weight 1/4 for the new sample.
fn smooth(old: Option<Duration>, sample: Duration) -> Duration {
    match old {
        None => sample,
        Some(old) => (old * 3 + sample) / 4,
    }
}

/// The control core's peers, remembering which ones changed since the last
/// publication: every mutable access ([`get_mut`](Self::get_mut),
/// [`entry`](Self::entry), [`remove`](Self::remove)) marks the peer, and
/// [`touch_all`](Self::touch_all) marks every one. Reads go through `Deref` to the map.
/// The control core re-derives what it publishes for marked peers only.
#[derive(Debug, Default)]
pub(crate) struct PeerBook {
    map: HashMap<NodeAddress, Peer>,
    touched: HashSet<NodeAddress>,
    all: bool,
}

/// What changed since [`PeerBook::take_touched`] was last called.
pub(crate) enum Touched {
    /// Anything may have: look at every peer.
    All,
    /// These peers (present or gone).
    Some(HashSet<NodeAddress>),
}

impl std::ops::Deref for PeerBook {
    type Target = HashMap<NodeAddress, Peer>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl PeerBook {
    /// The peer, marked as changed (marking an unknown one is harmless: publication
    /// finds it neither here nor published).
    pub(crate) fn get_mut(&mut self, peer: &NodeAddress) -> Option<&mut Peer> {
        self.touch(*peer);
        self.map.get_mut(peer)
    }

    /// The peer's entry, marked as changed.
    pub(crate) fn entry(&mut self, peer: NodeAddress) -> Entry<'_, NodeAddress, Peer> {
        self.touch(peer);
        self.map.entry(peer)
    }

    /// Forgets the peer.
    pub(crate) fn remove(&mut self, peer: &NodeAddress) -> Option<Peer> {
        self.touch(*peer);
        self.map.remove(peer)
    }

    /// Marks the peer as changed (something outside it that its publication reads did).
    pub(crate) fn touch(&mut self, peer: NodeAddress) {
        if !self.all {
            self.touched.insert(peer);
        }
    }

    /// Marks every peer (time passed, or something all of them depend on changed).
    pub(crate) fn touch_all(&mut self) {
        self.all = true;
        self.touched.clear();
    }

    /// What was marked since the last call.
    pub(crate) fn take_touched(&mut self) -> Touched {
        if std::mem::take(&mut self.all) {
            Touched::All
        } else {
            Touched::Some(std::mem::take(&mut self.touched))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(port: u16) -> Endpoint {
        format!("198.51.100.1/{port}").parse().unwrap()
    }

    #[test]
    fn candidates_are_not_alive_until_confirmed() {
        let mut p = Peer::new(Role::Leaf);
        let t = Time::from_millis(1000);
        assert!(p.add_candidate(t, ep(1)));
        assert!(p.best_path(t).is_none());
        p.learn_path(t, ep(1));
        assert_eq!(p.best_path(t).unwrap().endpoint, ep(1));
        assert!(
            p.best_path(t + PATH_ALIVE).is_none(),
            "dies without traffic"
        );
    }

    #[test]
    fn most_recent_path_wins_and_paths_are_bounded() {
        let mut p = Peer::new(Role::Leaf);
        let t = Time::from_millis(1000);
        for i in 0..10u16 {
            p.learn_path(t + Duration::from_millis(i.into()), ep(i));
        }
        assert_eq!(p.paths.len(), MAX_PATHS);
        assert_eq!(
            p.best_path(t + Duration::from_secs(1)).unwrap().endpoint,
            ep(9)
        );
        p.expire_paths(t + PATH_EXPIRE + Duration::from_secs(1), &[]);
        assert!(p.paths.is_empty());
    }

    #[test]
    fn an_alive_ipv6_path_wins_whatever_came_last() {
        let v6 = |port: u16| -> Endpoint { format!("2001:db8::1/{port}").parse().unwrap() };
        let mut p = Peer::new(Role::Leaf);
        let t = Time::from_millis(1000);
        p.learn_path(t, v6(1));
        p.learn_path(t + Duration::from_millis(1), ep(1));
        let at = t + Duration::from_millis(2);
        assert_eq!(p.best_path(at).unwrap().endpoint, v6(1), "v4 heard last");
        // A slow sample on IPv6 does not move it.
        p.record_rtt(Some(ep(1)), Duration::from_millis(10));
        p.record_rtt(Some(v6(1)), Duration::from_millis(400));
        assert_eq!(p.best_path(at).unwrap().endpoint, v6(1));
        // IPv6 given up (unanswered probes): IPv4 carries the traffic, and within a
        // family the most recent path wins.
        p.path_mut(v6(1)).unwrap().give_up(at);
        let later = at + Duration::from_millis(1);
        p.learn_path(later, ep(2));
        assert_eq!(p.best_path(later).unwrap().endpoint, ep(2));
        // IPv6 heard again: back to it.
        let again = later + Duration::from_millis(1);
        p.learn_path(again, v6(1));
        assert_eq!(p.best_path(again).unwrap().endpoint, v6(1));
    }

    #[test]
    fn queue_is_bounded() {
        let mut p = Peer::new(Role::Leaf);
        for i in 0..MAX_QUEUED {
            assert!(p.enqueue(vec![i as u8]));
        }
        assert!(!p.enqueue(vec![0xff]));
        assert_eq!(p.queue.len(), MAX_QUEUED);
        assert_eq!(p.queue.front().unwrap()[0], 1);
    }
}
