//! The control core's roots: HELLO and liveness, the choice of relay, and what `info`,
//! `peers` and `netcheck` say about them.
//!
//! # Liveness (the failover contract)
//! A node sends each root a HELLO every [`ROOT_HELLO_INTERVAL`]. The first HELLO sent
//! after the root last answered starts a *probe*; while it is unanswered the HELLO is
//! repeated every [`ROOT_RETRY`]. A root is *alive* while it answered within
//! [`PATH_ALIVE`] and no probe has waited longer than [`ROOT_ANSWER_TIMEOUT`]. So a root
//! that dies is given up at most `ROOT_HELLO_INTERVAL + ROOT_ANSWER_TIMEOUT` (plus one
//! tick) after its last answer, and relayed traffic moves to the next alive root with the
//! lowest latency; the other side of a relayed pair does the same with its own HELLOs.
//! A dead root keeps getting a HELLO every `ROOT_HELLO_INTERVAL`, rotating over its
//! configured endpoints, and is alive again with its first answer.
//!
//! Only alive roots are shown DIRECT; a node without an alive root is offline, and
//! [`NodeStatus::offline_reason`] says why. Going offline and back online is reported
//! once each as [`Event::Offline`] and [`Event::Online`].

use std::time::Duration;

use super::Control;
use crate::node::peer::{PATH_ALIVE, Path, Peer, Role};
use crate::node::{Event, Link, NodeStatus, ROOT_HELLO_INTERVAL};
use crate::types::{Endpoint, NodeAddress, Time};

/// How often an unanswered HELLO to a root is repeated.
pub const ROOT_RETRY: Duration = Duration::from_secs(1);

/// A root whose HELLO has waited this long for an answer is dead.
pub const ROOT_ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// One root as `netcheck` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootReport {
    /// The root's address.
    pub address: NodeAddress,
    /// Planet or moon root.
    pub role: Role,
    /// Where it listens (from the world file).
    pub endpoints: Vec<Endpoint>,
    /// True while it answers (see the module documentation).
    pub alive: bool,
    /// Smoothed round-trip time of its HELLOs.
    pub latency: Option<Duration>,
    /// Our endpoint as this root saw it in its last HELLO answer over IPv4 (on a path
    /// that is alive).
    pub observed_ipv4: Option<Endpoint>,
    /// Likewise over IPv6.
    pub observed_ipv6: Option<Endpoint>,
    /// Time since it last answered.
    pub last_answer: Option<Duration>,
}

/// The HELLO to a root that is still waiting for an answer, if any.
fn unanswered_probe(p: &Peer) -> Option<Time> {
    p.probe_since
        .filter(|since| p.last_rx.is_none_or(|rx| rx < *since))
}

/// Our endpoint as the root saw it on its alive path of one family.
fn observed(p: &Peer, now: Time, ipv6: bool) -> Option<Endpoint> {
    p.paths
        .iter()
        .filter(|x| x.endpoint.0.is_ipv6() == ipv6 && x.alive(now))
        .max_by_key(|x| x.last_rx)?
        .observed
}

/// True while the root answers (see the module documentation).
pub(super) fn root_alive(p: &Peer, now: Time) -> bool {
    p.last_rx.is_some_and(|rx| now.since(rx) < PATH_ALIVE)
        && unanswered_probe(p).is_none_or(|since| now.since(since) < ROOT_ANSWER_TIMEOUT)
}

impl Control {
    /// What `info` shows.
    pub fn status(&self, now: Time) -> NodeStatus {
        NodeStatus {
            address: self.address(),
            online: self.best_root(now).is_some(),
            offline_reason: self.offline_reason(now),
            surface: self.surface,
            world: (self.worlds.planet.id, self.worlds.planet.timestamp),
        }
    }

    /// Whether the host can send over IPv6 (see `Node::set_ipv6`).
    pub fn set_ipv6(&mut self, usable: bool) {
        self.ipv6 = usable;
        self.peers.touch_all();
    }

    /// True when `endpoint` is of a family this host can send from.
    pub(super) fn reachable_family(&self, endpoint: &Endpoint) -> bool {
        self.ipv6 || endpoint.0.is_ipv4()
    }

    /// Packets the control core has opened (authenticated) itself so far.
    pub fn authenticated(&self) -> u64 {
        self.authenticated
    }

    /// True while a root answers.
    pub fn online(&self, now: Time) -> bool {
        self.best_root(now).is_some()
    }

    /// Why no root is alive, in words, or `None` while one is.
    fn offline_reason(&self, now: Time) -> Option<String> {
        if self.best_root(now).is_some() {
            return None;
        }
        if self.roots.is_empty() {
            return Some("the planet lists no root other than this node".into());
        }
        let tried: Vec<String> = self
            .roots
            .iter()
            .map(|r| match self.root_endpoint(now, *r) {
                Some(ep) => format!("{r} at {ep}"),
                None => r.to_string(),
            })
            .collect();
        let last = self
            .roots
            .iter()
            .filter_map(|r| self.peers.get(r)?.last_rx)
            .max();
        Some(match last {
            None => format!("no root has answered yet (tried {})", tried.join(", ")),
            Some(t) => format!(
                "no root has answered for {} s (tried {})",
                now.since(t).as_secs(),
                tried.join(", ")
            ),
        })
    }

    /// Every root with what the node knows of it, in world order.
    pub fn roots_report(&self, now: Time) -> Vec<RootReport> {
        self.roots
            .iter()
            .filter_map(|&address| {
                let p = self.peers.get(&address)?;
                Some(RootReport {
                    address,
                    role: p.role,
                    endpoints: self.configured_endpoints(address),
                    alive: root_alive(p, now),
                    latency: p.latency,
                    observed_ipv4: observed(p, now, false),
                    observed_ipv6: observed(p, now, true),
                    last_answer: p.last_rx.map(|t| now.since(t)),
                })
            })
            .collect()
    }

    /// Lets the next HELLO to each root start a new handshake at once when the pending
    /// one has not finished (see `Node::handshake_roots_now`).
    pub fn forget_root_handshakes(&mut self) {
        for root in &self.roots {
            if let Some(p) = self.peers.get_mut(root) {
                p.last_handshake = None;
            }
        }
    }

    /// Sends every root a HELLO now (for `netcheck`), whatever their schedule.
    pub fn hello_roots_now(&mut self, now: Time) {
        for root in self.roots.clone() {
            if let Some(p) = self.peers.get_mut(&root) {
                p.last_hello = None;
            }
            self.hello_root(now, root);
        }
    }

    /// The endpoints the world files give for `root`.
    pub(super) fn configured_endpoints(&self, root: NodeAddress) -> Vec<Endpoint> {
        self.worlds
            .all()
            .flat_map(|w| &w.roots)
            .filter(|r| r.identity.address() == root)
            .flat_map(|r| r.endpoints.iter().copied())
            .collect()
    }

    /// The endpoint to reach a root by: while it answers, its best path; else the
    /// configured or learned endpoint tried least recently (so a dead endpoint does not
    /// hold us forever).
    pub(super) fn root_endpoint(&self, now: Time, root: NodeAddress) -> Option<Endpoint> {
        let p = self.peers.get(&root)?;
        if root_alive(p, now) {
            if let Some(path) = p.best_path(now) {
                return Some(path.endpoint);
            }
        }
        // Endpoints of a family we cannot send from come last (a root listed only at
        // those is still tried: the host may have gained the family since).
        p.paths
            .iter()
            .min_by_key(|x| (!self.reachable_family(&x.endpoint), x.last_tx))
            .map(|x: &Path| x.endpoint)
    }

    /// The alive root with the lowest latency.
    pub(super) fn best_root(&self, now: Time) -> Option<NodeAddress> {
        self.roots
            .iter()
            .filter_map(|r| self.peers.get(r).map(|p| (r, p)))
            .filter(|(_, p)| root_alive(p, now))
            .min_by_key(|(_, p)| p.latency.unwrap_or(Duration::MAX))
            .map(|(r, _)| *r)
    }

    /// The root that has `endpoint` among its paths.
    pub(super) fn root_at(&self, endpoint: Endpoint) -> Option<NodeAddress> {
        self.roots.iter().copied().find(|r| {
            self.peers
                .get(r)
                .is_some_and(|p| p.paths.iter().any(|x| x.endpoint == endpoint))
        })
    }

    /// The link `peers` shows: for a root, DIRECT only while it answers.
    pub(super) fn shown_link(&self, now: Time, peer: NodeAddress) -> Option<Link> {
        if self.roots.contains(&peer) && !self.peers.get(&peer).is_some_and(|p| root_alive(p, now))
        {
            return None;
        }
        self.link_for(now, peer)
    }

    /// True when `peer` is a root that does not answer (its paths are shown dead).
    pub(super) fn dead_root(&self, now: Time, peer: NodeAddress) -> bool {
        self.roots.contains(&peer) && !self.peers.get(&peer).is_some_and(|p| root_alive(p, now))
    }

    /// Sends `root` a HELLO when one is due: every [`ROOT_HELLO_INTERVAL`], or every
    /// [`ROOT_RETRY`] while a probe waits for its answer. Without a session it
    /// handshakes instead; the HELLO follows when the session is ready.
    pub(super) fn hello_root(&mut self, now: Time, root: NodeAddress) {
        let Some(p) = self.peers.get_mut(&root) else {
            return;
        };
        let probe = unanswered_probe(p);
        let interval = match probe {
            Some(since) if now.since(since) < ROOT_ANSWER_TIMEOUT => ROOT_RETRY,
            _ => ROOT_HELLO_INTERVAL,
        };
        if p.last_hello.is_some_and(|t| now.since(t) < interval) {
            return;
        }
        p.last_hello = Some(now);
        if probe.is_none() {
            p.probe_since = Some(now);
        }
        if !self.table.tunnel(root).is_some_and(|t| t.can_seal(now)) {
            self.start_handshake(now, root);
            return;
        }
        let main = self.route_to(now, root).map(|(_, ep)| ep);
        let other = main.and_then(|ep| self.other_family_path(now, root, ep));
        for ep in main.into_iter().chain(other) {
            if let Some(path) = self.peers.get_mut(&root).and_then(|p| p.path_mut(ep)) {
                if path.unanswered_probe().is_none() {
                    path.probe_since = Some(now);
                }
            }
        }
        let hello = self.hello(now);
        self.send_message(now, root, &hello);
        if let Some(ep) = other {
            self.hello_via(now, root, Some(ep));
        }
    }

    /// The root's path of the other address family than `main`'s, to say HELLO on as
    /// well: the one heard from last, else the one tried least recently. So each family
    /// keeps a measured path (and an observed endpoint, for `netcheck`), and traffic
    /// moves to the other family when one stops answering.
    fn other_family_path(&self, now: Time, root: NodeAddress, main: Endpoint) -> Option<Endpoint> {
        let p = self.peers.get(&root)?;
        let other = |x: &&Path| {
            x.endpoint.0.is_ipv6() != main.0.is_ipv6() && self.reachable_family(&x.endpoint)
        };
        p.paths
            .iter()
            .filter(other)
            .filter(|x| x.alive(now))
            .max_by_key(|x| x.last_rx)
            .or_else(|| p.paths.iter().filter(other).min_by_key(|x| x.last_tx))
            .map(|x| x.endpoint)
    }

    /// Reports going offline or back online, once each.
    pub(super) fn note_online(&mut self, now: Time) {
        let online = self.best_root(now);
        if online.is_some() == self.was_online {
            return;
        }
        self.was_online = online.is_some();
        match online {
            Some(root) => self.event(Event::Online { root }),
            None => {
                let reason = self.offline_reason(now).unwrap_or_default();
                self.event(Event::Offline { reason });
            }
        }
    }
}
