//! The control core's direct paths to leaves: candidates from a root's RENDEZVOUS,
//! probed until an authenticated answer confirms one (the anti-spoofing contract is in
//! [`crate::node::peer`]).

use super::Control;
use crate::node::PROBE_INTERVAL;
use crate::node::peer::{self, Peer, Role};
use crate::types::{Endpoint, NodeAddress, Time};

impl Control {
    pub(super) fn on_rendezvous(&mut self, now: Time, other: NodeAddress, endpoints: &[Endpoint]) {
        // Only for peers we are talking to: a RENDEZVOUS about a stranger (a root
        // introducing someone after spoofed traffic) must not create state.
        if other == self.address()
            || self.roots.contains(&other)
            || self.table.tunnel(other).is_none()
        {
            return;
        }
        let p = self
            .peers
            .entry(other)
            .or_insert_with(|| Peer::new(Role::Leaf));
        for ep in endpoints.iter().take(peer::MAX_PATHS) {
            p.add_candidate(now, *ep);
        }
        self.probe_candidates(now, other);
    }

    /// Sends an authenticated probe straight to each unconfirmed candidate path of
    /// `peer` (at most once per [`PROBE_INTERVAL`] each). Whichever side's probe gets
    /// through first opens the NAT mappings for the other's answer. Needs a session:
    /// until there is one, candidates wait and are probed from the next tick on.
    pub(super) fn probe_candidates(&mut self, now: Time, peer: NodeAddress) {
        if !self.table.tunnel(peer).is_some_and(|t| t.can_seal(now)) {
            return;
        }
        let due: Vec<Endpoint> = match self.peers.get(&peer) {
            Some(p) => p
                .paths
                .iter()
                .filter(|x| x.wants_probe(now))
                .filter(|x| x.last_tx.is_none_or(|t| now.since(t) >= PROBE_INTERVAL))
                .map(|x| x.endpoint)
                .collect(),
            None => return,
        };
        for ep in due {
            self.hello_via(now, peer, Some(ep));
        }
    }
}
