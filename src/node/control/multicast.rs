//! Multicast without a roster: what our TAP listens to goes to the roots, and who
//! listens to a group comes back from them (ZeroTier's MULTICAST_LIKE and gather).
//!
//! # Subscriptions
//! On every network with a controller we subscribe to plain broadcast, to the ARP group
//! of each managed IPv4 address of ours (`ff:ff:ff:ff:ff:ff/<address>`: ARP requests for
//! it reach only us), to the solicited-node group of each managed IPv6 address, and to
//! every group the driver reports our TAP joined ([`Control::set_multicast_groups`]:
//! link-local neighbour discovery, mDNS, ...). Every root gets them in MULTICAST_LIKE
//! messages when they change and every [`LIKE_PERIOD`]; a root forgets a subscription
//! not repeated for three periods.
//!
//! # Gathering
//! A group frame for a group the snapshot has no subscribers of arrives here
//! ([`ToControl::Gather`]). We ask every root (MULTICAST_GATHER) and keep the frame
//! (at most [`GATHER_HOLD`] per group, [`GATHERING_MAX`] groups at once). The first
//! answer becomes the group's entry in the snapshot and the frames go through the data
//! plane again, which now sends them to the subscribers; answers of the same round
//! (until [`GATHER_TIMEOUT`]) add up, since a moon's roots know only the members that
//! orbit it, and a later round replaces the entry, so members that left drop out. A
//! round nobody answers leaves the entry as it was, or an empty one (the frames go to
//! the bridges only, or nowhere), so a silent root costs each frame no more than that
//! wait. Entries in use are gathered again every [`GATHER_REFRESH`] (an empty one every
//! [`GATHER_REFRESH_EMPTY`], so an address whose owner comes online later is found),
//! and entries unused for [`GROUP_IDLE`] are forgotten.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::Control;
use crate::node::switch::{GroupCache, GroupEntry};
use crate::types::{MulticastGroup, NetworkId, NodeAddress, Time};
use crate::wire::{Gathered, MAX_GATHERED, MAX_LIST_LEN, Message};

#[cfg(doc)]
use crate::node::data::ToControl;

/// Subscriptions are announced to every root this often.
pub const LIKE_PERIOD: Duration = Duration::from_secs(60);
/// A gather not answered in this time gets an empty answer.
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(2);
/// A group in use is gathered again this often.
pub const GATHER_REFRESH: Duration = Duration::from_secs(30);
/// A group in use whose last gather found nobody is gathered again this often.
pub const GATHER_REFRESH_EMPTY: Duration = Duration::from_secs(2);
/// An entry no frame used for this long is forgotten.
pub const GROUP_IDLE: Duration = Duration::from_secs(120);
/// Frames kept per group while its subscribers are gathered.
pub const GATHER_HOLD: usize = 16;
/// Groups gathered at once per network.
pub const GATHERING_MAX: usize = 256;

/// The multicast state of one joined network (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Multicast {
    /// Groups the driver says our TAP joined.
    os_groups: BTreeSet<MulticastGroup>,
    /// What we last announced, and when.
    announced: BTreeSet<MulticastGroup>,
    last_like: Option<Time>,
    /// Gathered subscribers, as published.
    pub(crate) cache: Arc<GroupCache>,
    /// Gathers in flight: when asked, and the frames waiting.
    gathering: HashMap<MulticastGroup, (Time, Vec<Vec<u8>>)>,
}

impl Multicast {
    /// Our subscriptions, given our managed addresses.
    fn subscriptions(&self, own_ips: &[IpAddr]) -> BTreeSet<MulticastGroup> {
        let mut out = self.os_groups.clone();
        out.insert(MulticastGroup::BROADCAST);
        for ip in own_ips {
            out.insert(match ip {
                IpAddr::V4(v4) => MulticastGroup::arp(*v4),
                IpAddr::V6(v6) => MulticastGroup::solicited_node(*v6),
            });
        }
        out
    }

    fn set_entry(&mut self, group: MulticastGroup, entry: GroupEntry) {
        let mut cache = (*self.cache).clone();
        cache.insert(group, Arc::new(entry));
        self.cache = Arc::new(cache);
    }
}

impl Control {
    /// The groups the driver found our TAP of `network` joined (replacing the last
    /// list). Announced to the roots at the next tick if they changed.
    pub fn set_multicast_groups(&mut self, network: NetworkId, groups: Vec<MulticastGroup>) {
        if let Some(j) = self.networks.get_mut(&network) {
            j.multicast.os_groups = groups
                .into_iter()
                .filter(|g| g.mac.is_multicast())
                .collect();
        }
    }

    /// What we announce for `network` now (empty without a controller).
    pub fn multicast_subscriptions(&self, network: NetworkId) -> Vec<MulticastGroup> {
        self.networks
            .get(&network)
            .and_then(|j| {
                j.book
                    .as_ref()
                    .map(|b| j.multicast.subscriptions(b.own_ips()))
            })
            .map(|s| s.into_iter().collect())
            .unwrap_or_default()
    }

    /// A frame for `group`, whose subscribers the snapshot lacks.
    pub(crate) fn on_gather_needed(
        &mut self,
        now: Time,
        network: NetworkId,
        group: MulticastGroup,
        frame: Vec<u8>,
    ) {
        let Some(j) = self.networks.get_mut(&network) else {
            return;
        };
        if j.multicast.cache.contains_key(&group) {
            // Gathered since the data plane looked: send it again through the switch.
            self.reinject.push_back((network, frame));
            return;
        }
        let m = &mut j.multicast;
        let in_flight = m.gathering.len();
        let ask = match m.gathering.get_mut(&group) {
            Some((_, frames)) => {
                if frames.len() < GATHER_HOLD {
                    frames.push(frame);
                } else {
                    self.stats.drop_queue_full += 1;
                }
                false
            }
            None if in_flight >= GATHERING_MAX => {
                self.stats.drop_queue_full += 1;
                false
            }
            None => {
                m.gathering.insert(group, (now, vec![frame]));
                true
            }
        };
        let limit = gather_limit(j.settings.multicast_limit);
        if ask {
            self.send_gather(now, network, group, limit);
        }
    }

    /// A root's answer to our gather.
    pub(crate) fn on_gathered(&mut self, now: Time, root: NodeAddress, g: Gathered) {
        if !self.roots.contains(&root) {
            self.stats.drop_not_from_root += 1;
            return;
        }
        let me = self.address();
        let Some(j) = self.networks.get_mut(&g.network) else {
            return;
        };
        let mut members: Vec<NodeAddress> = g.members.into_iter().filter(|&m| m != me).collect();
        // Every root is asked: the answers of one round add up (roots of a moon know the
        // members that orbit it, the planet's roots every member); a new round replaces
        // what an earlier one found, so members that left drop out.
        let round = j.multicast.gathering.get(&g.group).map(|(asked, _)| *asked);
        if let Some(old) = j.multicast.cache.get(&g.group)
            && round.map_or(now.since(old.at) < GATHER_TIMEOUT, |asked| old.at >= asked)
        {
            for &m in &old.members {
                if !members.contains(&m) {
                    members.push(m);
                }
            }
        }
        members.sort_unstable();
        j.multicast
            .set_entry(g.group, GroupEntry::new(members, now));
        self.dirty = true;
        // The round stays open for the other roots' answers; its frames go now.
        if let Some((_, frames)) = j.multicast.gathering.get_mut(&g.group) {
            for frame in frames.drain(..) {
                self.reinject.push_back((g.network, frame));
            }
        }
    }

    /// Announcements, gather timeouts and refreshes (every tick).
    pub(crate) fn multicast_housekeeping(&mut self, now: Time) {
        let ids: Vec<NetworkId> = self.networks.keys().copied().collect();
        let mut likes: Vec<(NetworkId, MulticastGroup)> = Vec::new();
        let mut due_like = false;
        let mut regather = Vec::new();
        for id in ids {
            let Some(j) = self.networks.get_mut(&id) else {
                continue;
            };
            let Some(book) = &j.book else {
                continue;
            };
            let subs = j.multicast.subscriptions(book.own_ips());
            let m = &mut j.multicast;
            if subs != m.announced || m.last_like.is_none_or(|t| now.since(t) >= LIKE_PERIOD) {
                due_like = true;
            }
            likes.extend(subs.iter().map(|g| (id, *g)));
            m.announced = subs;
            // Rounds end after GATHER_TIMEOUT. One nobody answered leaves the entry an
            // earlier round made, or an empty one, and its frames go on.
            let ended: Vec<MulticastGroup> = m
                .gathering
                .iter()
                .filter(|(_, (asked, _))| now.since(*asked) >= GATHER_TIMEOUT)
                .map(|(g, _)| *g)
                .collect();
            for group in ended {
                if let Some((_, frames)) = m.gathering.remove(&group) {
                    if !m.cache.contains_key(&group) {
                        m.set_entry(group, GroupEntry::new(Vec::new(), now));
                        self.dirty = true;
                    }
                    self.reinject.extend(frames.into_iter().map(|f| (id, f)));
                }
            }
            // Refresh groups in use; forget idle ones.
            let idle = |e: &GroupEntry| {
                let last = e.last_used().unwrap_or(e.at);
                now.since(last) >= GROUP_IDLE
            };
            if m.cache.values().any(|e| idle(e)) {
                let kept: GroupCache = m
                    .cache
                    .iter()
                    .filter(|(_, e)| !idle(e))
                    .map(|(g, e)| (*g, Arc::clone(e)))
                    .collect();
                m.cache = Arc::new(kept);
                self.dirty = true;
            }
            for (group, e) in m.cache.iter() {
                let every = if e.members.is_empty() {
                    GATHER_REFRESH_EMPTY
                } else {
                    GATHER_REFRESH
                };
                let used_since = e.last_used().is_some_and(|t| t >= e.at);
                if used_since && now.since(e.at) >= every && !m.gathering.contains_key(group) {
                    regather.push((id, *group, gather_limit(j.settings.multicast_limit)));
                }
            }
        }
        for (network, group, limit) in regather {
            if let Some(j) = self.networks.get_mut(&network) {
                j.multicast.gathering.insert(group, (now, Vec::new()));
            }
            self.send_gather(now, network, group, limit);
        }
        if due_like {
            let roots = self.roots.clone();
            for network in self.networks.values_mut() {
                network.multicast.last_like = Some(now);
            }
            for chunk in likes.chunks(MAX_LIST_LEN) {
                let msg = Message::MulticastLike {
                    subscriptions: chunk.to_vec(),
                };
                for root in &roots {
                    self.send_message(now, *root, &msg);
                }
            }
        }
    }

    /// Asks every root (each knows the members that announce to it).
    fn send_gather(&mut self, now: Time, network: NetworkId, group: MulticastGroup, limit: u16) {
        let msg = Message::MulticastGather {
            network,
            group,
            limit,
        };
        for root in self.roots.clone() {
            self.send_message(now, root, &msg);
        }
    }
}

/// How many subscribers to ask for: the network's multicast limit (address
/// resolution groups have few subscribers; the switch applies the limit itself), at
/// least 64 and at most [`MAX_GATHERED`].
fn gather_limit(multicast_limit: usize) -> u16 {
    // Cannot truncate: MAX_GATHERED is 1024.
    multicast_limit.clamp(64, MAX_GATHERED) as u16
}
