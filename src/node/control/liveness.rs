//! Liveness of direct paths to leaves: a path we keep sending on but stop hearing from
//! is probed, and given up quickly when the probe goes unanswered.
//!
//! On every tick, for each active leaf with a direct path: when we sent on the path
//! since it last received and it has been quiet for [`PATH_QUIET`], a HELLO goes to that
//! endpoint and starts a probe (repeated every [`ROOT_RETRY`] while unanswered). A path
//! whose probe waited [`PATH_ANSWER_TIMEOUT`] is dead ([`Path::alive`](crate::node::peer::Path::alive)):
//! traffic moves to the relay at once, every root hears a HELLO at once (our own NAT
//! may have rebound, and the roots must relay to the new mapping), and the path is alive again with the next
//! authenticated packet that arrives on it (the peer's own traffic, or the answer to a
//! probe after a RENDEZVOUS). This is what brings traffic back within seconds after a
//! NAT rebinding, instead of after [`PATH_ALIVE`](crate::node::peer::PATH_ALIVE).
//! Steady two-way traffic never triggers a probe; a one-way flow costs about one HELLO
//! per second.
//!
//! A quiet path is also given up at once when the peer's packets arrive through a root
//! instead: the peer gave up its side (after a rebinding of our NAT, say), and our
//! packets on it most likely go nowhere either. Answers then go through the root, and
//! the next RENDEZVOUS and probes find the new direct path.

use std::time::Duration;

use super::{Control, ROOT_RETRY};
use crate::node::peer::PATH_ANSWER_TIMEOUT;
use crate::types::{NodeAddress, Time};

/// A direct path we sent on that has received nothing for this long is probed.
pub const PATH_QUIET: Duration = Duration::from_secs(1);

impl Control {
    /// Probes `peer`'s direct path when it went quiet while we were sending on it.
    pub(super) fn check_direct_path(&mut self, now: Time, peer: NodeAddress) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.role.is_root() {
            return;
        }
        let active = p.active(now);
        let relayed_rx = p.last_relayed_rx;
        let mut timed_out = false;
        for path in &mut p.paths {
            if let Some(since) = path.unanswered_probe()
                && now.since(since) >= PATH_ANSWER_TIMEOUT
                && path.given_up.is_none_or(|g| g < since)
            {
                path.give_up(now);
                timed_out = true;
            }
        }
        if timed_out {
            // Our own NAT may have given us a new mapping: tell the roots at once, so
            // what they relay to us reaches the new one.
            self.hello_roots_now(now);
            return;
        }
        let Some(best) = p.best_path_index(now) else {
            return;
        };
        let path = &mut p.paths[best];
        let quiet = path.last_rx.is_some_and(|rx| now.since(rx) >= PATH_QUIET);
        let sent_since = path.last_tx > path.last_rx;
        if quiet && sent_since && relayed_rx > path.last_rx {
            // We send on this path and hear nothing on it, while the peer's packets
            // come through a root: it gave the path up, and what we send on it is most
            // likely lost too.
            path.give_up(now);
            return;
        }
        if !active {
            return;
        }
        if sent_since && !quiet {
            // Look again the moment it would count as quiet, not a whole tick later.
            if let Some(rx) = path.last_rx {
                self.next_tick = self.next_tick.min(rx + PATH_QUIET);
            }
        }
        let probe = match path.unanswered_probe() {
            // Repeat an unanswered probe (a lost HELLO should not cost the path).
            Some(_) => path.last_tx.is_none_or(|t| now.since(t) >= ROOT_RETRY),
            None => {
                if quiet && sent_since {
                    path.probe_since = Some(now);
                }
                quiet && sent_since
            }
        };
        if probe {
            let to = path.endpoint;
            self.hello_via(now, peer, Some(to));
        }
    }
}
