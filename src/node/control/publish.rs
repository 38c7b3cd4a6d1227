//! Publishing: folding the data plane's counters into the peer table, and building a
//! new [`Snapshot`] from what changed since the last one (see the parent module's
//! "What it publishes").

use std::collections::HashSet;
use std::sync::Arc;

use super::Control;
use crate::node::network::NetworkStatus;
use crate::node::peer::{Peer, Touched};
use crate::node::snapshot::{
    Activity, NetworkView, Route, RxSession, Snapshot, TxPeer, both_or_neither,
};
use crate::types::{Endpoint, NodeAddress, Time};

impl Control {
    /// Folds what the data plane reported (receive and send times, activity) for every
    /// peer into the peer table: on every tick and before commands that may look at
    /// any peer. Inputs about one peer fold that peer and the roots
    /// ([`fold_around`](Self::fold_around)).
    pub fn fold(&mut self) {
        let snapshot = Arc::clone(&self.snapshot);
        for (addr, tx) in snapshot.peers.iter() {
            self.fold_from(*addr, tx);
        }
    }

    /// Folds what the data plane reported for `peer` (if any) and for the roots, whose
    /// liveness every relayed route depends on.
    pub fn fold_around(&mut self, peer: Option<NodeAddress>) {
        let snapshot = Arc::clone(&self.snapshot);
        for i in 0..self.roots.len() {
            self.fold_in(&snapshot, self.roots[i]);
        }
        if let Some(addr) = peer {
            self.fold_in(&snapshot, addr);
        }
    }

    fn fold_in(&mut self, snapshot: &Snapshot, addr: NodeAddress) {
        if let Some(tx) = snapshot.peers.get(&addr) {
            self.fold_from(addr, tx);
        }
    }

    fn fold_from(&mut self, addr: NodeAddress, tx: &TxPeer) {
        let act = tx.activity.take();
        if act == Activity::default() {
            return;
        }
        let Some(p) = self.peers.get_mut(&addr) else {
            return;
        };
        let sent_on = tx.route.as_ref().filter(|r| !r.relayed).map(|r| r.to);
        p.fold(act, tx.direct, sent_on);
    }

    /// Publishes a new snapshot if anything in it changed; returns true if it did.
    ///
    /// Only what may have changed is derived again: the peers marked in the peer book
    /// (every change to a peer marks it; each tick marks all, since paths age), the
    /// sessions of peers the session table reports, and every relayed route when the
    /// relay (the best root, or its endpoint) changed.
    pub fn settle(&mut self, now: Time) -> bool {
        let mut session_peers = self.table.take_changed();
        session_peers.sort_unstable();
        session_peers.dedup();
        for peer in &session_peers {
            self.peers.touch(*peer);
        }
        let relay = self.relay(now);
        if relay != self.published_relay {
            self.published_relay = relay;
            self.peers.touch_all();
        }
        let touched: HashSet<NodeAddress> = match self.peers.take_touched() {
            Touched::All => self
                .peers
                .keys()
                .chain(self.snapshot.peers.iter().map(|(a, _)| a))
                .copied()
                .collect(),
            Touched::Some(set) => set,
        };
        let changed: Vec<(NodeAddress, Option<TxPeer>)> = touched
            .into_iter()
            .filter_map(|addr| {
                let new = self
                    .peers
                    .get(&addr)
                    .map(|p| self.published_peer(now, addr, p));
                let same = both_or_neither(
                    self.snapshot.peers.get(&addr),
                    new.as_ref(),
                    TxPeer::same_as,
                );
                (!same).then_some((addr, new))
            })
            .collect();
        if !(self.dirty || !session_peers.is_empty() || !changed.is_empty()) {
            return false;
        }
        // What the data plane reported on the old routes belongs to the old snapshot.
        let old = Arc::clone(&self.snapshot);
        for (addr, _) in &changed {
            self.fold_in(&old, *addr);
        }
        self.dirty = false;
        let mut peers = self.snapshot.peers.clone();
        for (addr, tx) in changed {
            match tx {
                Some(tx) => peers.insert(addr, tx),
                None => peers.remove(&addr),
            };
        }
        let mut sessions = self.snapshot.sessions.clone();
        for peer in session_peers {
            for index in self.published_indices.remove(&peer).unwrap_or_default() {
                sessions.remove(&index);
            }
            let Some(tunnel) = self.table.tunnel(peer) else {
                continue;
            };
            let mut indices = Vec::new();
            for s in tunnel.confirmed() {
                indices.push(s.local_index());
                let session = Arc::clone(s);
                sessions.insert(s.local_index(), RxSession { peer, session });
            }
            if !indices.is_empty() {
                self.published_indices.insert(peer, indices);
            }
        }
        let networks = self
            .networks
            .iter()
            .map(|(&id, j)| {
                let view = NetworkView {
                    epoch: j.epoch,
                    config: j.config,
                    ok: j.status == NetworkStatus::Ok,
                    settings: Arc::clone(&j.settings),
                    policy: j.policy.clone(),
                    members: j.members(),
                    groups: Arc::clone(&j.multicast.cache),
                };
                (id, view)
            })
            .collect();
        self.snapshot = Arc::new(Snapshot {
            version: self.snapshot.version + 1,
            me: self.address(),
            sessions,
            peers,
            networks,
        });
        true
    }

    /// Checks what publication must keep true after every input, however little it
    /// derives again: the snapshot holds exactly the session table's confirmed sessions
    /// and exactly our peers, each with its current session and its own counters.
    /// (Routes may lag their paths' ageing by up to a tick.) The simulator calls it
    /// after every input in debug builds.
    pub fn check_snapshot(&self) -> Result<(), String> {
        let snap = &self.snapshot;
        let mut confirmed = 0;
        for (peer, tunnel) in self.table.tunnels() {
            for s in tunnel.confirmed() {
                confirmed += 1;
                let index = s.local_index();
                match snap.sessions.get(&index) {
                    Some(rx) if rx.peer == peer && Arc::ptr_eq(&rx.session, s) => {}
                    _ => return Err(format!("session {index} of {peer} is not published")),
                }
            }
        }
        if snap.sessions.len() != confirmed {
            let published = snap.sessions.len();
            return Err(format!(
                "{published} sessions published, {confirmed} confirmed"
            ));
        }
        if snap.peers.len() != self.peers.len() {
            let (published, known) = (snap.peers.len(), self.peers.len());
            return Err(format!("{published} peers published, {known} known"));
        }
        for (addr, p) in self.peers.iter() {
            let Some(tx) = snap.peers.get(addr) else {
                return Err(format!("peer {addr} is not published"));
            };
            let current = self.table.tunnel(*addr).and_then(|t| t.current());
            if !both_or_neither(tx.session.as_ref(), current, Arc::ptr_eq) {
                return Err(format!("peer {addr} is published with another session"));
            }
            if !Arc::ptr_eq(&tx.activity, &p.activity) {
                return Err(format!("peer {addr} is published with another's counters"));
            }
        }
        Ok(())
    }

    /// The root that relays for peers without a direct path, and its endpoint.
    fn relay(&self, now: Time) -> Option<(NodeAddress, Endpoint)> {
        let root = self
            .best_root(now)
            .or_else(|| self.roots.first().copied())?;
        Some((root, self.root_endpoint(now, root)?))
    }

    /// How the data plane should reach `addr` now.
    fn published_peer(&self, now: Time, addr: NodeAddress, p: &Peer) -> TxPeer {
        let route = self.route_to(now, addr).and_then(|(via, to)| {
            Some(Route {
                to,
                relayed: via != addr,
                via: Arc::clone(&self.peers.get(&via)?.activity),
                mtu: self.pmtu.mtu(addr, to),
            })
        });
        TxPeer {
            session: self.table.tunnel(addr).and_then(|t| t.current().cloned()),
            route,
            direct: p.best_path(now).map(|x| x.endpoint),
            activity: Arc::clone(&p.activity),
        }
    }
}
