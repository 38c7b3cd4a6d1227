//! The underlay addresses the node must keep reaching, for the opt-in filter
//! ([`crate::service::optin`]) that never lets a managed route carry them into the
//! overlay.
//!
//! [`Endpoints`] remembers the address of every path the node core reports in `peers`:
//! the roots' endpoints from the world (the core always keeps those) and every peer's
//! current paths. An address stays remembered for [`REMEMBER`] after it was last seen,
//! so a path that a route would have taken away (and that then died because of it) is
//! still protected afterwards, and a skipped route does not come back and go again.
//! [`Endpoints::resolve`] adds, for each address, the prefix length of the host route
//! that reaches it now (the caller lists the host's routes, leaving out those on the
//! overlay's own devices).
//!
//! Callers: [`super::networks`], on the node's packet thread.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::node::PeerInfo;
use crate::service::optin::{Underlay, underlay_route_len};
use crate::types::NodeAddress;

/// How long an underlay address is protected after the node last reported it.
pub const REMEMBER: Duration = Duration::from_secs(3600);

/// Underlay addresses of roots and peers. See the module documentation.
#[derive(Debug, Default)]
pub struct Endpoints {
    seen: HashMap<IpAddr, Seen>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    node: NodeAddress,
    root: bool,
    at: Instant,
}

impl Endpoints {
    /// Remembers every path address in `peers` (the core's `peers` list) as seen `now`,
    /// and forgets those not seen for [`REMEMBER`]. An address that is both a root's and
    /// a peer's counts as the root's.
    pub fn note(&mut self, peers: &[PeerInfo], now: Instant) {
        for p in peers {
            let root = p.role.is_root();
            for (endpoint, _) in &p.paths {
                let seen = self.seen.entry(endpoint.0.ip()).or_insert(Seen {
                    node: p.address,
                    root,
                    at: now,
                });
                if root || !seen.root {
                    seen.node = p.address;
                    seen.root = root;
                }
                seen.at = now;
            }
        }
        self.seen
            .retain(|_, s| now.saturating_duration_since(s.at) < REMEMBER);
    }

    /// Every remembered address, sorted, with the prefix length of the longest of
    /// `routes` (the host's routes, not counting the overlay's own) that contains it.
    /// Without `routes` (they could not be listed) no address has a route, so that any
    /// route containing one counts as carrying it: the safe side.
    pub fn resolve(&self, routes: Option<&[IpNet]>) -> Vec<Underlay> {
        let mut out: Vec<Underlay> = self
            .seen
            .iter()
            .map(|(&ip, s)| Underlay {
                ip,
                node: s.node,
                root: s.root,
                route_len: routes.and_then(|r| underlay_route_len(ip, r)),
            })
            .collect();
        out.sort_by_key(|u| u.ip);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::peer::Role;
    use crate::types::Endpoint;

    fn peer(address: &str, role: Role, paths: &[&str]) -> PeerInfo {
        PeerInfo {
            address: address.parse().unwrap(),
            role,
            version: None,
            latency: None,
            link: None,
            paths: paths
                .iter()
                .map(|p| (Endpoint(p.parse().unwrap()), true))
                .collect(),
            last_tx: None,
            last_rx: None,
            session: false,
            cipher: None,
            traffic: Default::default(),
            path_mtu: 1432,
        }
    }

    #[test]
    fn paths_are_remembered_for_a_while_and_roots_win() {
        let start = Instant::now();
        let mut e = Endpoints::default();
        e.note(
            &[
                peer("89e92ceee5", Role::Planet, &["198.51.100.49:9993"]),
                peer(
                    "1c2d3e4f50",
                    Role::Leaf,
                    &["198.51.100.49:40000", "192.0.2.8:9993"],
                ),
            ],
            start,
        );
        let u = e.resolve(Some(&["198.51.100.0/24".parse().unwrap()]));
        assert_eq!(u.len(), 2);
        assert_eq!(u[1].ip.to_string(), "198.51.100.49");
        assert!(u[1].root, "the root's address stays the root's: {u:?}");
        assert_eq!(u[1].node.to_string(), "89e92ceee5");
        assert_eq!((u[0].route_len, u[1].route_len), (None, Some(24)));
        // The peer's path is gone from `peers`, but still protected for a while.
        e.note(&[], start + REMEMBER / 2);
        assert_eq!(e.resolve(None).len(), 2);
        e.note(&[], start + REMEMBER);
        assert!(e.resolve(None).is_empty());
    }
}
