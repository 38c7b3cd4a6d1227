//! The root's multicast directory: which nodes listen to which group of which network
//! (MULTICAST_LIKE), and who asks gets some of them (MULTICAST_GATHER).
//!
//! A subscription lasts [`SUBSCRIPTION_TTL`] (three of the nodes' announcement periods)
//! unless repeated. A node holds at most [`MAX_SUBSCRIPTIONS_PER_NODE`], the directory at
//! most [`MAX_SUBSCRIPTIONS`]; announcements beyond either are ignored and counted. The
//! directory does not check membership: a subscriber's address only lets a member send
//! it frames, which its own switch then judges (credentials, rules). A gather larger
//! than the limit asked gets a random subset, so the load of a popular group spreads.

use std::collections::HashMap;
use std::time::Duration;

use crate::types::{MulticastGroup, NetworkId, NodeAddress, Time};
use crate::wire::{Gathered, MAX_GATHERED};

/// A subscription not repeated for this long is forgotten.
pub const SUBSCRIPTION_TTL: Duration = Duration::from_secs(180);
/// Most subscriptions one node holds.
pub const MAX_SUBSCRIPTIONS_PER_NODE: usize = 4096;
/// Most subscriptions the directory holds.
pub const MAX_SUBSCRIPTIONS: usize = 4_000_000;

type Key = (NetworkId, MulticastGroup);

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Directory {
    groups: HashMap<Key, HashMap<NodeAddress, Time>>,
    per_node: HashMap<NodeAddress, usize>,
    total: usize,
    /// SplitMix64 state for random subsets.
    rng: u64,
}

impl Directory {
    pub(crate) fn new(seed: u64) -> Self {
        Directory {
            groups: HashMap::new(),
            per_node: HashMap::new(),
            total: 0,
            rng: seed,
        }
    }

    /// `node` listens to these groups; returns how many were refused (over a bound).
    pub(crate) fn like(&mut self, now: Time, node: NodeAddress, subs: &[Key]) -> usize {
        let mut refused = 0;
        for key in subs {
            if !key.1.mac.is_multicast() {
                refused += 1;
                continue;
            }
            let members = self.groups.entry(*key).or_default();
            if let Some(t) = members.get_mut(&node) {
                *t = now;
                continue;
            }
            let count = self.per_node.entry(node).or_default();
            if *count >= MAX_SUBSCRIPTIONS_PER_NODE || self.total >= MAX_SUBSCRIPTIONS {
                refused += 1;
                if members.is_empty() {
                    self.groups.remove(key);
                }
                continue;
            }
            members.insert(node, now);
            *count += 1;
            self.total += 1;
        }
        refused
    }

    /// Up to `limit` subscribers of `group` on `network`, `asker` left out.
    pub(crate) fn gather(
        &mut self,
        asker: NodeAddress,
        network: NetworkId,
        group: MulticastGroup,
        limit: u16,
    ) -> Gathered {
        let mut members: Vec<NodeAddress> = self
            .groups
            .get(&(network, group))
            .map(|m| m.keys().copied().filter(|&a| a != asker).collect())
            .unwrap_or_default();
        let total = u32::try_from(members.len()).unwrap_or(u32::MAX);
        let limit = usize::from(limit).min(MAX_GATHERED);
        if members.len() > limit {
            // A partial Fisher-Yates shuffle: the first `limit` are a random subset.
            for i in 0..limit {
                let j = i + (self.random() % (members.len() - i) as u64) as usize;
                members.swap(i, j);
            }
            members.truncate(limit);
        }
        members.sort_unstable();
        Gathered {
            network,
            group,
            total,
            members,
        }
    }

    /// Forgets subscriptions not repeated within [`SUBSCRIPTION_TTL`].
    pub(crate) fn expire(&mut self, now: Time) {
        let per_node = &mut self.per_node;
        let mut removed = 0;
        self.groups.retain(|_, members| {
            members.retain(|node, t| {
                let keep = now.since(*t) < SUBSCRIPTION_TTL;
                if !keep {
                    removed += 1;
                    if let Some(c) = per_node.get_mut(node) {
                        *c -= 1;
                    }
                }
                keep
            });
            !members.is_empty()
        });
        self.per_node.retain(|_, c| *c > 0);
        self.total -= removed;
    }

    /// Subscriptions held.
    pub(crate) fn len(&self) -> usize {
        self.total
    }

    fn random(&mut self) -> u64 {
        crate::types::splitmix64(&mut self.rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Mac;

    fn addr(n: u64) -> NodeAddress {
        NodeAddress::new(0x10_0000_0000 + n).unwrap()
    }

    fn net() -> NetworkId {
        "89e92ceee5000001".parse().unwrap()
    }

    #[test]
    fn subscribers_are_gathered_without_the_asker_and_limited_at_random() {
        let mut d = Directory::new(7);
        let g = MulticastGroup::BROADCAST;
        for n in 0..100 {
            d.like(Time::ZERO, addr(n), &[(net(), g)]);
        }
        let all = d.gather(addr(0), net(), g, 1000);
        assert_eq!((all.total, all.members.len()), (99, 99));
        assert!(!all.members.contains(&addr(0)));
        let some = d.gather(addr(0), net(), g, 10);
        let again = d.gather(addr(0), net(), g, 10);
        assert_eq!((some.total, some.members.len()), (99, 10));
        assert_ne!(some.members, again.members, "a random subset each time");
        let other = "89e92ceee5000002".parse().unwrap();
        assert!(d.gather(addr(0), other, g, 10).members.is_empty());
    }

    #[test]
    fn subscriptions_expire_unless_repeated_and_are_bounded_per_node() {
        let mut d = Directory::new(1);
        let arp = MulticastGroup::arp("198.18.0.1".parse().unwrap());
        d.like(Time::ZERO, addr(1), &[(net(), arp)]);
        d.like(Time::ZERO, addr(2), &[(net(), arp)]);
        d.like(Time::ZERO + SUBSCRIPTION_TTL / 2, addr(2), &[(net(), arp)]);
        d.expire(Time::ZERO + SUBSCRIPTION_TTL);
        assert_eq!(d.gather(addr(9), net(), arp, 10).members, vec![addr(2)]);
        assert_eq!(d.len(), 1);
        let many: Vec<Key> = (0..MAX_SUBSCRIPTIONS_PER_NODE as u32 + 5)
            .map(|i| {
                (
                    net(),
                    MulticastGroup {
                        mac: Mac::BROADCAST,
                        adi: i + 1,
                    },
                )
            })
            .collect();
        assert_eq!(d.like(Time::ZERO, addr(3), &many), 5);
        let unicast = MulticastGroup {
            mac: Mac([2, 0, 0, 0, 0, 1]),
            adi: 0,
        };
        assert_eq!(d.like(Time::ZERO, addr(4), &[(net(), unicast)]), 1);
    }
}
