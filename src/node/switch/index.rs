//! The switch's lookup tables: who is admitted and owns which address (rebuilt when
//! the settings or the admitted members change, so the frame path only does hash
//! lookups), MACs learned behind bridges, and, on a bridge, the MACs of its own segment.

use std::collections::VecDeque;
use std::collections::hash_map::Entry;
use std::net::{IpAddr, Ipv6Addr};

use foldhash::{HashMap, HashMapExt, HashSet};

use super::{Admission, LEARNED_MACS_MAX, Members, SwitchSettings};
use crate::types::{Mac, NodeAddress};

/// How many [`LocalMacs::age`] calls (seconds) a MAC of our own segment is remembered.
const LOCAL_MAC_AGES: u8 = 30;
/// At most this many MACs of our own segment are remembered.
const LOCAL_MACS_MAX: usize = 4096;

/// Lookup tables built from the settings and the admitted members.
#[derive(Debug, Default)]
pub(super) struct MemberIndex {
    /// Admitted members (listed, and by credential), us included.
    pub(super) members: HashSet<NodeAddress>,
    /// Bridges (with `Listed` admission, only those also listed).
    pub(super) bridges: HashSet<NodeAddress>,
    /// Managed address → the member(s) that own it (several only if misconfigured).
    pub(super) ip_owners: HashMap<IpAddr, Vec<NodeAddress>>,
    /// Low 24 bits of managed IPv6 addresses → their owners (solicited-node groups).
    pub(super) v6_low24_owners: HashMap<u32, Vec<NodeAddress>>,
    /// Recipients of group frames: bridges, then the other members, ascending; never us.
    pub(super) group_order: Vec<NodeAddress>,
    /// How many entries at the front of `group_order` are bridges.
    pub(super) bridges_in_order: usize,
}

impl MemberIndex {
    pub(super) fn build(me: NodeAddress, settings: &SwitchSettings, admitted: &Members) -> Self {
        let listed = settings.admission == Admission::Listed;
        let mut members: HashSet<NodeAddress> =
            settings.members.iter().map(|m| m.address).collect();
        if !listed {
            members.extend(admitted.keys().copied());
        }
        // Without a list, a bridge's frames still need its credential (or a public
        // network), checked with every frame; the bridge list itself comes from the
        // controller.
        let bridges: HashSet<NodeAddress> = settings
            .bridges
            .iter()
            .copied()
            .filter(|b| !listed || members.contains(b))
            .collect();
        let mut ip_owners: HashMap<IpAddr, Vec<NodeAddress>> = HashMap::new();
        let mut v6_low24_owners: HashMap<u32, Vec<NodeAddress>> = HashMap::new();
        let facts = admitted
            .iter()
            .filter(|_| !listed)
            .map(|(a, f)| (*a, f.ips.as_slice()));
        let listed_ips = settings
            .members
            .iter()
            .map(|m| (m.address, m.ips.as_slice()));
        for (address, ips) in listed_ips.chain(facts) {
            for &ip in ips {
                push_unique(ip_owners.entry(ip).or_default(), address);
                if let IpAddr::V6(v6) = ip {
                    push_unique(v6_low24_owners.entry(low24(v6)).or_default(), address);
                }
            }
        }
        let mut ordered_bridges: Vec<NodeAddress> =
            bridges.iter().copied().filter(|&b| b != me).collect();
        ordered_bridges.sort_unstable();
        // Group frames go to the listed members; those admitted by credential get them
        // through the group's gathered subscribers instead.
        let mut others: Vec<NodeAddress> = settings
            .members
            .iter()
            .map(|m| m.address)
            .filter(|&m| m != me && !bridges.contains(&m))
            .collect();
        others.sort_unstable();
        others.dedup();
        let bridges_in_order = ordered_bridges.len();
        let mut group_order = ordered_bridges;
        group_order.extend(others);
        MemberIndex {
            members,
            bridges,
            ip_owners,
            v6_low24_owners,
            group_order,
            bridges_in_order,
        }
    }
}

fn push_unique(list: &mut Vec<NodeAddress>, node: NodeAddress) {
    if !list.contains(&node) {
        list.push(node);
    }
}

/// MAC → bridge behind which it was seen, at most [`LEARNED_MACS_MAX`] entries, forgotten
/// in the order they were first learned. Invariant: `order` holds exactly the keys of
/// `map`, each once.
#[derive(Debug, Default)]
pub(super) struct LearnedMacs {
    pub(super) map: HashMap<Mac, NodeAddress>,
    pub(super) order: VecDeque<Mac>,
}

impl LearnedMacs {
    pub(super) fn get(&self, mac: Mac) -> Option<NodeAddress> {
        self.map.get(&mac).copied()
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// Records `mac` behind `bridge`; true if that is news (a new MAC, or a move).
    pub(super) fn learn(&mut self, mac: Mac, bridge: NodeAddress) -> bool {
        match self.map.entry(mac) {
            Entry::Occupied(mut e) => {
                if *e.get() == bridge {
                    return false;
                }
                e.insert(bridge);
                true
            }
            Entry::Vacant(e) => {
                e.insert(bridge);
                self.order.push_back(mac);
                while self.order.len() > LEARNED_MACS_MAX {
                    if let Some(old) = self.order.pop_front() {
                        self.map.remove(&old);
                    }
                }
                true
            }
        }
    }

    pub(super) fn retain(&mut self, keep: impl Fn(NodeAddress) -> bool) {
        self.map.retain(|_, bridge| keep(*bridge));
        let map = &self.map;
        self.order.retain(|mac| map.contains_key(mac));
    }
}

fn low24(ip: Ipv6Addr) -> u32 {
    let o = ip.octets();
    u32::from_be_bytes([0, o[13], o[14], o[15]])
}

/// As a bridge: the MACs our own segment sent from (read from our TAP), each
/// remembered for [`LOCAL_MAC_AGES`] ages, at most [`LOCAL_MACS_MAX`] (when full, new
/// MACs are not added until old ones age out).
#[derive(Debug, Default)]
pub(super) struct LocalMacs {
    /// MAC → ages left.
    map: HashMap<Mac, u8>,
}

impl LocalMacs {
    /// Our segment sent from `mac` just now.
    pub(super) fn saw(&mut self, mac: Mac) {
        if let Some(left) = self.map.get_mut(&mac) {
            *left = LOCAL_MAC_AGES;
        } else if self.map.len() < LOCAL_MACS_MAX {
            self.map.insert(mac, LOCAL_MAC_AGES);
        }
    }

    pub(super) fn contains(&self, mac: Mac) -> bool {
        self.map.contains_key(&mac)
    }

    /// One second passed: forgets MACs not seen for [`LOCAL_MAC_AGES`] seconds.
    pub(super) fn age(&mut self) {
        self.map.retain(|_, left| {
            *left = left.saturating_sub(1);
            *left > 0
        });
    }
}
