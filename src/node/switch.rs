//! The virtual switch of one network: decides where an Ethernet frame read from our TAP
//! goes ([`NetworkSwitch::outbound`]) and whether a frame a peer sent us may reach our TAP
//! ([`NetworkSwitch::inbound`]). Pure: no I/O, no clock, no randomness; the node core owns
//! one `NetworkSwitch` per joined network and feeds it from its frame path.
//!
//! # What it knows
//! The member list of the network's current config (each member's node address and
//! managed IPs), which members are bridges, `enable_broadcast` and `multicast_limit`.
//! Member MACs are never learned: [`Mac::for_member`] derives them from node address and
//! network ID, so [`Mac::to_member`] names the owner of any member MAC. Only MACs *behind
//! bridges* are learned, from inbound frames of bridge members, in a table bounded by
//! [`LEARNED_MACS_MAX`] (oldest entry out first).
//!
//! # Outbound rules (a frame from our TAP), in order
//! 1. Shorter than an Ethernet header ([`ETHERNET_HEADER_LEN`](crate::wire::ETHERNET_HEADER_LEN)) → [`DropReason::TooShort`].
//! 2. The source MAC must be our member MAC. If we are a bridge, other unicast source
//!    MACs are allowed too, but never another member's MAC. A group source MAC is always
//!    dropped.
//! 3. Unicast destination: a member MAC → that member (if it is in the member list; our
//!    own MAC is a loop); otherwise the learned table; otherwise, for a MAC no member
//!    owns, every bridge but us (the host may sit behind any of them, as ZeroTier
//!    does); otherwise dropped. The member and learned cases do not allocate.
//! 4. Untagged ARP request (broadcast, ethertype 0x0806) for an IPv4 address that members
//!    own → unicast to the owner(s), even with broadcast disabled (ZeroTier's ARP "ADI"
//!    scoping, without a gather round). For an address no member owns: the general
//!    broadcast rule, or — with broadcast disabled — only the bridges.
//! 5. Untagged IPv6 to a solicited-node group `33:33:ff:xx:xx:xx` (neighbour
//!    solicitations) where some member's managed IPv6 address ends in `xx:xx:xx` → those
//!    members only. Other groups (link-local neighbours, mDNS, ...) use rule 6.
//! 6. Any other group frame → every member except us: bridges first, then the others in
//!    ascending address order, truncated to `multicast_limit` (0 disables group frames);
//!    ff:ff:ff:ff:ff:ff is dropped when `enable_broadcast` is false.
//!
//! VLAN-tagged frames (802.1Q 0x8100, 802.1ad 0x88a8, 0x9100, up to three tags, read by the shared
//! [`EthernetFrame`] view) are switched
//! by MAC like any frame, but rules 4 and 5 apply only to untagged frames: managed
//! addresses live on the untagged interface, so a tagged ARP goes to the whole group.
//!
//! # Inbound rules (a frame an authenticated peer sent us), in order
//! 1. Shorter than an Ethernet header → [`DropReason::TooShort`].
//! 2. The sender must be in the member list and must not be us.
//! 3. The source MAC must be the sender's member MAC; a bridge may also send from other
//!    unicast MACs (not another member's), and each such MAC is learned → that bridge.
//! 4. The destination must be our MAC, a multicast group, or broadcast when enabled. With
//!    broadcast disabled an untagged ARP request for one of our managed IPv4 addresses
//!    still passes (that is how rule 4 above delivers it). If we are a bridge, we also
//!    accept every broadcast, and unicast to MACs that are not member MACs (hosts behind
//!    us). Learning happens only for frames that pass every check.
//!
//! Every drop is counted per [`DropReason`] in [`SwitchStats`].

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::types::{Mac, NetworkId, NodeAddress};
use crate::wire::EthernetFrame;
use crate::wire::ethernet::{ETHERTYPE_IPV6, SourceClaim};

/// At most this many MACs behind bridges are remembered; the oldest is forgotten first.
pub const LEARNED_MACS_MAX: usize = 4096;

/// First three bytes of a solicited-node multicast MAC (33:33 + ff02::1:ffXX:XXXX).
const SOLICITED_NODE_MAC_PREFIX: [u8; 3] = [0x33, 0x33, 0xff];

/// The network's switching settings, taken from its current config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwitchSettings {
    /// Whether ff:ff:ff:ff:ff:ff frames are switched (ARP to member addresses works either way).
    pub enable_broadcast: bool,
    /// At most this many recipients for one group frame; 0 disables group frames
    /// (ARP and neighbour solicitations for member addresses still work).
    pub multicast_limit: usize,
    /// Every authorized member, us included, with its managed addresses.
    pub members: Vec<MemberInfo>,
    /// Members allowed to send from (and receive for) MACs other than their own. An
    /// address here that is not also in `members` is ignored.
    pub bridges: Vec<NodeAddress>,
}

impl SwitchSettings {
    /// Admits exactly `members`, broadcast on, no multicast limit: a network configured
    /// without a controller (tests, benchmarks, fuzzing).
    pub fn open(members: &[NodeAddress]) -> Self {
        SwitchSettings {
            enable_broadcast: true,
            multicast_limit: usize::MAX,
            members: members
                .iter()
                .map(|&address| MemberInfo {
                    address,
                    ips: Vec::new(),
                })
                .collect(),
            bridges: Vec::new(),
        }
    }
}

/// One authorized member of the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Its node address.
    pub address: NodeAddress,
    /// Its managed IP addresses (without prefix length).
    pub ips: Vec<IpAddr>,
}

/// Where a frame read from our TAP goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// To this one member: a unicast frame, or an ARP/neighbour solicitation whose target
    /// address one member owns.
    Unicast(NodeAddress),
    /// The same frame to each of these members (never empty, never us).
    Multicast(Vec<NodeAddress>),
    /// Nowhere.
    Drop(DropReason),
}

/// Why the switch dropped a frame. Each reason has a counter in [`SwitchStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than an Ethernet header (14 bytes).
    TooShort,
    /// Outbound: the source MAC is not our member MAC and we are not a bridge (or it is
    /// another member's MAC).
    SourceNotOurs,
    /// Inbound: the source MAC is not the sender's member MAC and the sender is not a
    /// bridge (or it claims another member's MAC).
    SourceMismatch,
    /// The source MAC is a group (multicast or broadcast) address.
    MulticastSource,
    /// Inbound: the sender is not in the member list. Outbound: the destination MAC
    /// belongs to a node that is not in the member list.
    NotAMember,
    /// Outbound: unicast to a MAC that no member owns and no bridge has shown us.
    UnknownDestination,
    /// A frame to ourselves (outbound) or claiming to come from ourselves (inbound).
    Looped,
    /// Inbound: unicast to another MAC, and we are not a bridge.
    NotForUs,
    /// A broadcast frame while the network has broadcast disabled.
    BroadcastDisabled,
    /// A group frame while the network's multicast limit is 0.
    MulticastDisabled,
    /// A group frame with nobody to deliver it to (we are alone, or it asks for our own
    /// address).
    NoRecipients,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 11] = [
        DropReason::TooShort,
        DropReason::SourceNotOurs,
        DropReason::SourceMismatch,
        DropReason::MulticastSource,
        DropReason::NotAMember,
        DropReason::UnknownDestination,
        DropReason::Looped,
        DropReason::NotForUs,
        DropReason::BroadcastDisabled,
        DropReason::MulticastDisabled,
        DropReason::NoRecipients,
    ];

    /// A stable snake_case name for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::TooShort => "too_short",
            DropReason::SourceNotOurs => "source_not_ours",
            DropReason::SourceMismatch => "source_mismatch",
            DropReason::MulticastSource => "multicast_source",
            DropReason::NotAMember => "not_a_member",
            DropReason::UnknownDestination => "unknown_destination",
            DropReason::Looped => "looped",
            DropReason::NotForUs => "not_for_us",
            DropReason::BroadcastDisabled => "broadcast_disabled",
            DropReason::MulticastDisabled => "multicast_disabled",
            DropReason::NoRecipients => "no_recipients",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Frame counters of one network's switch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwitchStats {
    /// Outbound frames sent to one member.
    pub unicast_out: u64,
    /// Outbound frames replicated to several members (counted once per frame).
    pub multicast_out: u64,
    /// Inbound frames accepted for our TAP.
    pub accepted_in: u64,
    /// MACs learned behind bridges (new entries and moves between bridges).
    pub learned: u64,
    drops: [u64; DropReason::ALL.len()],
}

impl SwitchStats {
    /// How many frames were dropped for `reason` (both directions).
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// All frames dropped, whatever the reason.
    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// `(reason name, count)` for every drop reason, for metrics.
    pub fn drops(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|r| (r.as_str(), self.drops[r.index()]))
    }
}

/// The L2 switch of one network (see the module docs for the rules).
#[derive(Debug)]
pub struct NetworkSwitch {
    network: NetworkId,
    me: NodeAddress,
    /// Our member MAC, the only source MAC a non-bridge may send from.
    my_mac: Mac,
    settings: SwitchSettings,
    /// Indexes derived from `settings` by [`NetworkSwitch::update`].
    index: MemberIndex,
    learned: LearnedMacs,
    stats: SwitchStats,
}

impl NetworkSwitch {
    /// A switch for `network` as seen by member `me`.
    pub fn new(network: NetworkId, me: NodeAddress, settings: SwitchSettings) -> Self {
        let index = MemberIndex::build(me, &settings);
        NetworkSwitch {
            network,
            me,
            my_mac: Mac::for_member(me, network),
            settings,
            index,
            learned: LearnedMacs::default(),
            stats: SwitchStats::default(),
        }
    }

    /// Replaces the settings (a new network config arrived). MACs learned behind members
    /// that are no longer bridges are forgotten.
    pub fn update(&mut self, settings: SwitchSettings) {
        self.index = MemberIndex::build(self.me, &settings);
        self.settings = settings;
        let bridges = &self.index.bridges;
        self.learned.retain(|bridge| bridges.contains(&bridge));
    }

    /// Where a frame read from our TAP goes. Counts the frame.
    pub fn outbound(&mut self, frame: &[u8]) -> Outbound {
        self.outbound_parsed(EthernetFrame::parse(frame).as_ref())
    }

    /// [`outbound`](Self::outbound) for a frame whose header the caller parsed already
    /// (`None`: shorter than a header).
    pub fn outbound_parsed(&mut self, eth: Option<&EthernetFrame<'_>>) -> Outbound {
        let out = self.route_outbound(eth);
        match &out {
            Outbound::Unicast(_) => self.stats.unicast_out += 1,
            Outbound::Multicast(_) => self.stats.multicast_out += 1,
            Outbound::Drop(reason) => self.stats.drops[reason.index()] += 1,
        }
        out
    }

    /// Whether a frame `from` sent us may go to our TAP. Learns source MACs behind
    /// bridges. Counts the frame.
    pub fn inbound(&mut self, from: NodeAddress, frame: &[u8]) -> Result<(), DropReason> {
        self.inbound_parsed(from, EthernetFrame::parse(frame).as_ref())
    }

    /// [`inbound`](Self::inbound) for a frame whose header the caller parsed already
    /// (`None`: shorter than a header).
    pub fn inbound_parsed(
        &mut self,
        from: NodeAddress,
        eth: Option<&EthernetFrame<'_>>,
    ) -> Result<(), DropReason> {
        let verdict = self.check_inbound(from, eth);
        self.count_inbound(verdict)
    }

    /// [`inbound`](Self::inbound) for a frame another member's rules copied or redirected
    /// to us: only the sender is checked (a member, not us); its MACs are someone
    /// else's conversation, so nothing is learned from them. Counts the frame.
    pub fn inbound_forwarded(
        &mut self,
        from: NodeAddress,
        eth: Option<&EthernetFrame<'_>>,
    ) -> Result<(), DropReason> {
        let verdict = if eth.is_none() {
            Err(DropReason::TooShort)
        } else if from == self.me {
            Err(DropReason::Looped)
        } else if !self.index.members.contains(&from) {
            Err(DropReason::NotAMember)
        } else {
            Ok(())
        };
        self.count_inbound(verdict)
    }

    fn count_inbound(&mut self, verdict: Result<(), DropReason>) -> Result<(), DropReason> {
        match verdict {
            Ok(()) => self.stats.accepted_in += 1,
            Err(reason) => self.stats.drops[reason.index()] += 1,
        }
        verdict
    }

    /// The network this switch serves.
    pub fn network(&self) -> NetworkId {
        self.network
    }

    /// Our member MAC on this network (the TAP's MAC).
    pub fn my_mac(&self) -> Mac {
        self.my_mac
    }

    /// The settings in force.
    pub fn settings(&self) -> &SwitchSettings {
        &self.settings
    }

    /// The counters.
    pub fn stats(&self) -> &SwitchStats {
        &self.stats
    }

    /// The bridge a MAC was learned behind, if any.
    pub fn learned(&self, mac: Mac) -> Option<NodeAddress> {
        self.learned.get(mac)
    }

    /// How many MACs are learned behind bridges.
    pub fn learned_len(&self) -> usize {
        self.learned.len()
    }

    fn i_am_bridge(&self) -> bool {
        self.index.bridges.contains(&self.me)
    }

    fn route_outbound(&self, eth: Option<&EthernetFrame<'_>>) -> Outbound {
        let Some(eth) = eth else {
            return Outbound::Drop(DropReason::TooShort);
        };
        let src = eth.src_mac();
        if src.is_multicast() {
            return Outbound::Drop(DropReason::MulticastSource);
        }
        // A bridge forwards for hosts behind it, but never under another member's MAC.
        let bridged_ok = self.i_am_bridge() && !self.is_member_mac(src);
        if src != self.my_mac && !bridged_ok {
            return Outbound::Drop(DropReason::SourceNotOurs);
        }
        let dst = eth.dst_mac();
        if !dst.is_multicast() {
            return self.route_unicast(dst);
        }
        if dst.is_broadcast()
            && let Some(target) = eth.arp_request_target()
        {
            return self.route_arp_request(target);
        }
        if let Some(low24) = solicited_node_low24(dst)
            && eth.untagged_ethertype() == Some(ETHERTYPE_IPV6)
            && let Some(owners) = self.index.v6_low24_owners.get(&low24)
        {
            return self.to_owners(owners);
        }
        self.route_group(dst.is_broadcast())
    }

    fn route_unicast(&self, dst: Mac) -> Outbound {
        if dst == self.my_mac {
            return Outbound::Drop(DropReason::Looped);
        }
        let owner = dst.to_member(self.network);
        if let Some(node) = owner
            && self.index.members.contains(&node)
        {
            return if node == self.me {
                Outbound::Drop(DropReason::Looped)
            } else {
                Outbound::Unicast(node)
            };
        }
        if let Some(bridge) = self.learned.get(dst) {
            return Outbound::Unicast(bridge);
        }
        if owner.is_some() {
            return Outbound::Drop(DropReason::NotAMember);
        }
        match self.bridges_but_me(usize::MAX) {
            Some(bridges) => Outbound::Multicast(bridges),
            None => Outbound::Drop(DropReason::UnknownDestination),
        }
    }

    fn route_arp_request(&self, target: Ipv4Addr) -> Outbound {
        if let Some(owners) = self.index.ip_owners.get(&IpAddr::V4(target)) {
            return self.to_owners(owners);
        }
        if self.settings.enable_broadcast {
            return self.route_group(true);
        }
        // Broadcast is off, but an address nobody manages may sit behind a bridge.
        if self.settings.multicast_limit == 0 {
            return Outbound::Drop(DropReason::MulticastDisabled);
        }
        match self.bridges_but_me(self.settings.multicast_limit) {
            Some(bridges) => Outbound::Multicast(bridges),
            None => Outbound::Drop(DropReason::BroadcastDisabled),
        }
    }

    /// Up to `limit` bridges other than us, in group order; `None` when there are none.
    fn bridges_but_me(&self, limit: usize) -> Option<Vec<NodeAddress>> {
        let bridges: Vec<NodeAddress> = self
            .index
            .group_order
            .iter()
            .take(self.index.bridges_in_order)
            .take(limit)
            .copied()
            .collect();
        (!bridges.is_empty()).then_some(bridges)
    }

    /// The owners of an address, except us.
    fn to_owners(&self, owners: &[NodeAddress]) -> Outbound {
        let mut others = owners.iter().copied().filter(|&o| o != self.me);
        match (others.next(), others.next()) {
            (None, _) => Outbound::Drop(DropReason::NoRecipients),
            (Some(only), None) => Outbound::Unicast(only),
            (Some(first), Some(second)) => {
                let mut all = vec![first, second];
                all.extend(others);
                Outbound::Multicast(all)
            }
        }
    }

    fn route_group(&self, broadcast: bool) -> Outbound {
        if broadcast && !self.settings.enable_broadcast {
            return Outbound::Drop(DropReason::BroadcastDisabled);
        }
        if self.settings.multicast_limit == 0 {
            return Outbound::Drop(DropReason::MulticastDisabled);
        }
        let order = &self.index.group_order;
        if order.is_empty() {
            return Outbound::Drop(DropReason::NoRecipients);
        }
        let n = order.len().min(self.settings.multicast_limit);
        Outbound::Multicast(order[..n].to_vec())
    }

    fn check_inbound(
        &mut self,
        from: NodeAddress,
        eth: Option<&EthernetFrame<'_>>,
    ) -> Result<(), DropReason> {
        let eth = eth.ok_or(DropReason::TooShort)?;
        if from == self.me {
            return Err(DropReason::Looped);
        }
        if !self.index.members.contains(&from) {
            return Err(DropReason::NotAMember);
        }
        let src = eth.src_mac();
        if src.is_multicast() {
            return Err(DropReason::MulticastSource);
        }
        let bridged = src != Mac::for_member(from, self.network);
        if bridged && (!self.index.bridges.contains(&from) || self.is_member_mac(src)) {
            return Err(DropReason::SourceMismatch);
        }
        self.check_inbound_destination(eth)?;
        if bridged && self.learned.learn(src, from) {
            self.stats.learned += 1;
        }
        Ok(())
    }

    fn check_inbound_destination(&self, eth: &EthernetFrame<'_>) -> Result<(), DropReason> {
        let dst = eth.dst_mac();
        if dst == self.my_mac {
            return Ok(());
        }
        if dst.is_broadcast() {
            if self.settings.enable_broadcast || self.i_am_bridge() {
                return Ok(());
            }
            let for_me = eth.arp_request_target().is_some_and(|ip| {
                self.index
                    .ip_owners
                    .get(&IpAddr::V4(ip))
                    .is_some_and(|owners| owners.contains(&self.me))
            });
            return if for_me {
                Ok(())
            } else {
                Err(DropReason::BroadcastDisabled)
            };
        }
        if dst.is_multicast() || (self.i_am_bridge() && !self.is_member_mac(dst)) {
            return Ok(());
        }
        Err(DropReason::NotForUs)
    }

    /// True if `mac` is the member MAC of a member (us included).
    /// What `chr ipauth` and `chr macauth` say about a frame `sender` sent (or, for us,
    /// sends): whether the IP source it claims is one of the sender's managed addresses
    /// (a neighbour solicitation counts as yes, a frame without an IP source as no),
    /// and whether its source MAC is the sender's member MAC (a host behind a bridge
    /// is not). ZeroTier's meaning, with the controller's assignments as the owners.
    pub fn ownership(&self, sender: NodeAddress, eth: Option<&EthernetFrame<'_>>) -> (bool, bool) {
        let Some(eth) = eth else {
            return (false, false);
        };
        let ip = match eth.source_claim() {
            SourceClaim::Ip(ip) => self
                .index
                .ip_owners
                .get(&ip)
                .is_some_and(|owners| owners.contains(&sender)),
            SourceClaim::Unverifiable => true,
            SourceClaim::None => false,
        };
        (ip, eth.src_mac() == Mac::for_member(sender, self.network))
    }

    fn is_member_mac(&self, mac: Mac) -> bool {
        mac == self.my_mac
            || mac
                .to_member(self.network)
                .is_some_and(|node| self.index.members.contains(&node))
    }
}

/// Lookup tables built from [`SwitchSettings`] once per config, so the frame path only
/// does hash lookups.
#[derive(Debug, Default)]
struct MemberIndex {
    members: HashSet<NodeAddress>,
    /// Bridges that are also members.
    bridges: HashSet<NodeAddress>,
    /// Managed address → the member(s) that own it (several only if misconfigured).
    ip_owners: HashMap<IpAddr, Vec<NodeAddress>>,
    /// Low 24 bits of managed IPv6 addresses → their owners (solicited-node groups).
    v6_low24_owners: HashMap<u32, Vec<NodeAddress>>,
    /// Recipients of group frames: bridges, then the other members, ascending; never us.
    group_order: Vec<NodeAddress>,
    /// How many entries at the front of `group_order` are bridges.
    bridges_in_order: usize,
}

impl MemberIndex {
    fn build(me: NodeAddress, settings: &SwitchSettings) -> Self {
        let members: HashSet<NodeAddress> = settings.members.iter().map(|m| m.address).collect();
        let bridges: HashSet<NodeAddress> = settings
            .bridges
            .iter()
            .copied()
            .filter(|b| members.contains(b))
            .collect();
        let mut ip_owners: HashMap<IpAddr, Vec<NodeAddress>> = HashMap::new();
        let mut v6_low24_owners: HashMap<u32, Vec<NodeAddress>> = HashMap::new();
        for member in &settings.members {
            for &ip in &member.ips {
                push_unique(ip_owners.entry(ip).or_default(), member.address);
                if let IpAddr::V6(v6) = ip {
                    push_unique(
                        v6_low24_owners.entry(low24(v6)).or_default(),
                        member.address,
                    );
                }
            }
        }
        let mut ordered_bridges: Vec<NodeAddress> =
            bridges.iter().copied().filter(|&b| b != me).collect();
        ordered_bridges.sort_unstable();
        let mut others: Vec<NodeAddress> = members
            .iter()
            .copied()
            .filter(|&m| m != me && !bridges.contains(&m))
            .collect();
        others.sort_unstable();
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
struct LearnedMacs {
    map: HashMap<Mac, NodeAddress>,
    order: VecDeque<Mac>,
}

impl LearnedMacs {
    fn get(&self, mac: Mac) -> Option<NodeAddress> {
        self.map.get(&mac).copied()
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    /// Records `mac` behind `bridge`; true if that is news (a new MAC, or a move).
    fn learn(&mut self, mac: Mac, bridge: NodeAddress) -> bool {
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

    fn retain(&mut self, keep: impl Fn(NodeAddress) -> bool) {
        self.map.retain(|_, bridge| keep(*bridge));
        let map = &self.map;
        self.order.retain(|mac| map.contains_key(mac));
    }
}

/// The low 24 bits of a solicited-node group MAC (33:33:ff:xx:xx:xx).
fn solicited_node_low24(mac: Mac) -> Option<u32> {
    let m = mac.0;
    (m[..3] == SOLICITED_NODE_MAC_PREFIX).then(|| u32::from_be_bytes([0, m[3], m[4], m[5]]))
}

fn low24(ip: Ipv6Addr) -> u32 {
    let o = ip.octets();
    u32::from_be_bytes([0, o[13], o[14], o[15]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethernet::{ETHERNET_HEADER_LEN, ETHERTYPE_ARP};

    fn node(hex: &str) -> NodeAddress {
        hex.parse().expect("test address")
    }

    fn net() -> NetworkId {
        "8056c2e21c000001".parse().expect("test network")
    }

    fn me() -> NodeAddress {
        node("1111111111")
    }
    fn b() -> NodeAddress {
        node("2222222222")
    }
    fn c() -> NodeAddress {
        node("3333333333")
    }
    fn d() -> NodeAddress {
        node("4444444444")
    }
    fn outsider() -> NodeAddress {
        node("5555555555")
    }

    fn mac(n: NodeAddress) -> Mac {
        Mac::for_member(n, net())
    }

    /// A host behind a bridge (not a member MAC of this network).
    const HOST: Mac = Mac([0x00, 0x16, 0x3e, 0x12, 0x34, 0x01]);
    const HOST2: Mac = Mac([0x00, 0x16, 0x3e, 0x12, 0x34, 0x02]);

    fn member(address: NodeAddress, ips: &[&str]) -> MemberInfo {
        MemberInfo {
            address,
            ips: ips.iter().map(|s| s.parse().expect("test ip")).collect(),
        }
    }

    fn settings() -> SwitchSettings {
        SwitchSettings {
            enable_broadcast: true,
            multicast_limit: 32,
            members: vec![
                member(me(), &["198.18.0.1", "fd00:5a::11:1111"]),
                member(b(), &["198.18.0.2", "fd00:5a::22:2222"]),
                member(c(), &["198.18.0.3"]),
                member(d(), &[]),
            ],
            bridges: vec![],
        }
    }

    fn switch() -> NetworkSwitch {
        NetworkSwitch::new(net(), me(), settings())
    }

    fn frame(dst: Mac, src: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst.0);
        f.extend_from_slice(&src.0);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn ipv4_frame(dst: Mac, src: Mac) -> Vec<u8> {
        frame(dst, src, 0x0800, &[0x45; 40])
    }

    fn vlan_frame(dst: Mac, src: Mac, vid: u16, inner: u16, payload: &[u8]) -> Vec<u8> {
        let mut tagged = vid.to_be_bytes().to_vec();
        tagged.extend_from_slice(&inner.to_be_bytes());
        tagged.extend_from_slice(payload);
        frame(dst, src, 0x8100, &tagged)
    }

    fn arp_body(oper: u16, sender: Mac, sender_ip: [u8; 4], target_ip: [u8; 4]) -> Vec<u8> {
        let mut a = vec![0, 1, 0x08, 0x00, 6, 4];
        a.extend_from_slice(&oper.to_be_bytes());
        a.extend_from_slice(&sender.0);
        a.extend_from_slice(&sender_ip);
        a.extend_from_slice(&[0; 6]);
        a.extend_from_slice(&target_ip);
        a
    }

    fn arp_request(src: Mac, target_ip: [u8; 4]) -> Vec<u8> {
        frame(
            Mac::BROADCAST,
            src,
            ETHERTYPE_ARP,
            &arp_body(1, src, [198, 18, 0, 1], target_ip),
        )
    }

    /// An IPv6 neighbour solicitation for `target` (only the parts the switch reads are
    /// meaningful; the rest is a plausible packet).
    fn neighbour_solicitation(src: Mac, target: Ipv6Addr) -> Vec<u8> {
        let t = target.octets();
        let dst = Mac([0x33, 0x33, 0xff, t[13], t[14], t[15]]);
        let mut ip = vec![0x60, 0, 0, 0, 0, 32, 58, 255];
        ip.extend_from_slice(&"fd00:5a::11:1111".parse::<Ipv6Addr>().unwrap().octets());
        let group = Ipv6Addr::new(
            0xff02,
            0,
            0,
            0,
            0,
            1,
            0xff00 | u16::from(t[13]),
            u16::from_be_bytes([t[14], t[15]]),
        );
        ip.extend_from_slice(&group.octets());
        ip.extend_from_slice(&[135, 0, 0, 0, 0, 0, 0, 0]);
        ip.extend_from_slice(&t);
        frame(dst, src, ETHERTYPE_IPV6, &ip)
    }

    fn multicast(list: &[NodeAddress]) -> Outbound {
        Outbound::Multicast(list.to_vec())
    }

    // ---- outbound ----

    #[test]
    fn outbound_unicast_to_a_member_mac_goes_to_that_member() {
        let mut sw = switch();
        assert_eq!(
            sw.outbound(&ipv4_frame(mac(b()), mac(me()))),
            Outbound::Unicast(b())
        );
        assert_eq!(
            sw.outbound(&ipv4_frame(mac(d()), mac(me()))),
            Outbound::Unicast(d())
        );
        assert_eq!(sw.stats().unicast_out, 2);
        assert_eq!(sw.stats().dropped_total(), 0);
    }

    #[test]
    fn outbound_frames_shorter_than_a_header_are_dropped_not_panicking() {
        let mut sw = switch();
        let full = ipv4_frame(mac(b()), mac(me()));
        for len in 0..ETHERNET_HEADER_LEN {
            assert_eq!(
                sw.outbound(&full[..len]),
                Outbound::Drop(DropReason::TooShort),
                "{len} bytes"
            );
        }
        // Exactly a header is a (payload-less) frame and is switched.
        assert_eq!(
            sw.outbound(&full[..ETHERNET_HEADER_LEN]),
            Outbound::Unicast(b())
        );
        assert_eq!(
            sw.stats().dropped(DropReason::TooShort),
            ETHERNET_HEADER_LEN as u64
        );
    }

    #[test]
    fn outbound_source_must_be_our_member_mac() {
        let mut sw = switch();
        for src in [
            HOST,
            mac(b()),
            Mac::for_member(me(), "8056c2e21c000105".parse().unwrap()),
        ] {
            assert_eq!(
                sw.outbound(&ipv4_frame(mac(b()), src)),
                Outbound::Drop(DropReason::SourceNotOurs),
                "from {src}"
            );
        }
        let group_src = Mac([0x03, 0, 0, 0, 0, 1]);
        assert_eq!(
            sw.outbound(&ipv4_frame(mac(b()), group_src)),
            Outbound::Drop(DropReason::MulticastSource)
        );
        assert_eq!(sw.stats().dropped(DropReason::SourceNotOurs), 3);
    }

    #[test]
    fn outbound_unicast_to_non_members_unknown_macs_and_ourselves_is_dropped() {
        let mut sw = switch();
        assert_eq!(
            sw.outbound(&ipv4_frame(mac(outsider()), mac(me()))),
            Outbound::Drop(DropReason::NotAMember)
        );
        assert_eq!(
            sw.outbound(&ipv4_frame(HOST, mac(me()))),
            Outbound::Drop(DropReason::UnknownDestination)
        );
        assert_eq!(
            sw.outbound(&ipv4_frame(mac(me()), mac(me()))),
            Outbound::Drop(DropReason::Looped)
        );
    }

    #[test]
    fn outbound_arp_request_for_a_member_ip_goes_to_its_owner_only() {
        let mut sw = switch();
        assert_eq!(
            sw.outbound(&arp_request(mac(me()), [198, 18, 0, 3])),
            Outbound::Unicast(c())
        );
        // Also with broadcast disabled and a multicast limit of 0.
        sw.update(SwitchSettings {
            enable_broadcast: false,
            multicast_limit: 0,
            ..settings()
        });
        assert_eq!(
            sw.outbound(&arp_request(mac(me()), [198, 18, 0, 2])),
            Outbound::Unicast(b())
        );
    }

    #[test]
    fn outbound_arp_request_for_an_address_owned_twice_goes_to_both_owners() {
        let mut s = settings();
        s.members[3].ips.push("198.18.0.3".parse().unwrap());
        let mut sw = NetworkSwitch::new(net(), me(), s);
        assert_eq!(
            sw.outbound(&arp_request(mac(me()), [198, 18, 0, 3])),
            multicast(&[c(), d()])
        );
    }

    #[test]
    fn outbound_arp_for_our_own_address_goes_nowhere() {
        let mut sw = switch();
        assert_eq!(
            sw.outbound(&arp_request(mac(me()), [198, 18, 0, 1])),
            Outbound::Drop(DropReason::NoRecipients)
        );
    }

    #[test]
    fn outbound_arp_for_an_unmanaged_address_is_broadcast_or_goes_to_bridges() {
        let mut sw = switch();
        let arp = arp_request(mac(me()), [198, 18, 9, 9]);
        assert_eq!(sw.outbound(&arp), multicast(&[b(), c(), d()]));

        let off = SwitchSettings {
            enable_broadcast: false,
            ..settings()
        };
        sw.update(off.clone());
        assert_eq!(
            sw.outbound(&arp),
            Outbound::Drop(DropReason::BroadcastDisabled)
        );
        sw.update(SwitchSettings {
            bridges: vec![c()],
            ..off
        });
        assert_eq!(sw.outbound(&arp), multicast(&[c()]));
    }

    #[test]
    fn outbound_arp_replies_and_malformed_arp_are_ordinary_broadcasts() {
        let mut sw = switch();
        let everyone = multicast(&[b(), c(), d()]);
        let reply = frame(
            Mac::BROADCAST,
            mac(me()),
            ETHERTYPE_ARP,
            &arp_body(2, mac(me()), [198, 18, 0, 1], [198, 18, 0, 3]),
        );
        assert_eq!(sw.outbound(&reply), everyone);
        // Truncated ARP body: too short to hold a target address.
        let short = arp_request(mac(me()), [198, 18, 0, 3]);
        assert_eq!(sw.outbound(&short[..40]), everyone);
        // ARP for another protocol (ptype 0x86dd).
        let mut odd = arp_request(mac(me()), [198, 18, 0, 3]);
        odd[16..18].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(sw.outbound(&odd), everyone);
    }

    #[test]
    fn outbound_neighbour_solicitation_goes_to_the_matching_member() {
        let mut sw = switch();
        let target: Ipv6Addr = "fd00:5a::22:2222".parse().unwrap();
        let ns = neighbour_solicitation(mac(me()), target);
        assert_eq!(&ns[0..6], &[0x33, 0x33, 0xff, 0x22, 0x22, 0x22]);
        assert_eq!(sw.outbound(&ns), Outbound::Unicast(b()));
        // Even with group frames disabled.
        sw.update(SwitchSettings {
            enable_broadcast: false,
            multicast_limit: 0,
            ..settings()
        });
        assert_eq!(sw.outbound(&ns), Outbound::Unicast(b()));
    }

    #[test]
    fn outbound_neighbour_solicitation_for_unmanaged_addresses_uses_the_group_rule() {
        let mut sw = switch();
        let link_local: Ipv6Addr = "fe80::1234:5678".parse().unwrap();
        let ns = neighbour_solicitation(mac(me()), link_local);
        assert_eq!(sw.outbound(&ns), multicast(&[b(), c(), d()]));
        sw.update(SwitchSettings {
            multicast_limit: 0,
            ..settings()
        });
        assert_eq!(
            sw.outbound(&ns),
            Outbound::Drop(DropReason::MulticastDisabled)
        );
    }

    #[test]
    fn outbound_duplicate_address_detection_of_our_own_address_goes_nowhere() {
        let mut sw = switch();
        let ours: Ipv6Addr = "fd00:5a::11:1111".parse().unwrap();
        assert_eq!(
            sw.outbound(&neighbour_solicitation(mac(me()), ours)),
            Outbound::Drop(DropReason::NoRecipients)
        );
    }

    #[test]
    fn outbound_group_frames_go_to_everyone_else_truncated_to_the_limit() {
        let mut sw = switch();
        let mdns = Mac([0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb]);
        assert_eq!(
            sw.outbound(&ipv4_frame(mdns, mac(me()))),
            multicast(&[b(), c(), d()])
        );
        sw.update(SwitchSettings {
            multicast_limit: 2,
            bridges: vec![d()],
            ..settings()
        });
        // Bridges first, then ascending addresses.
        assert_eq!(
            sw.outbound(&ipv4_frame(Mac::BROADCAST, mac(me()))),
            multicast(&[d(), b()])
        );
        assert_eq!(sw.stats().multicast_out, 2);
    }

    #[test]
    fn outbound_broadcast_is_dropped_when_disabled_but_multicast_is_not() {
        let mut sw = NetworkSwitch::new(
            net(),
            me(),
            SwitchSettings {
                enable_broadcast: false,
                ..settings()
            },
        );
        assert_eq!(
            sw.outbound(&ipv4_frame(Mac::BROADCAST, mac(me()))),
            Outbound::Drop(DropReason::BroadcastDisabled)
        );
        let group = Mac([0x01, 0x00, 0x5e, 0x00, 0x00, 0x01]);
        assert_eq!(
            sw.outbound(&ipv4_frame(group, mac(me()))),
            multicast(&[b(), c(), d()])
        );
        assert_eq!(sw.stats().dropped(DropReason::BroadcastDisabled), 1);
    }

    #[test]
    fn outbound_group_frame_when_alone_has_no_recipients() {
        let mut sw = NetworkSwitch::new(
            net(),
            me(),
            SwitchSettings {
                members: vec![member(me(), &["198.18.0.1"])],
                ..settings()
            },
        );
        assert_eq!(
            sw.outbound(&ipv4_frame(Mac::BROADCAST, mac(me()))),
            Outbound::Drop(DropReason::NoRecipients)
        );
    }

    #[test]
    fn outbound_vlan_tagged_frames_are_switched_by_mac_and_tagged_arp_is_broadcast() {
        let mut sw = switch();
        let tagged = vlan_frame(mac(c()), mac(me()), 100, 0x0800, &[0x45; 40]);
        assert_eq!(sw.outbound(&tagged), Outbound::Unicast(c()));
        let tagged_arp = vlan_frame(
            Mac::BROADCAST,
            mac(me()),
            100,
            ETHERTYPE_ARP,
            &arp_body(1, mac(me()), [198, 18, 0, 1], [198, 18, 0, 3]),
        );
        assert_eq!(sw.outbound(&tagged_arp), multicast(&[b(), c(), d()]));
        // A tag cut off right after the header is still a switchable frame.
        assert_eq!(sw.outbound(&tagged[..15]), Outbound::Unicast(c()));
    }

    #[test]
    fn outbound_as_a_bridge_allows_foreign_sources_but_not_member_macs() {
        let mut sw = NetworkSwitch::new(
            net(),
            me(),
            SwitchSettings {
                bridges: vec![me()],
                ..settings()
            },
        );
        assert_eq!(
            sw.outbound(&ipv4_frame(mac(b()), HOST)),
            Outbound::Unicast(b())
        );
        assert_eq!(
            sw.outbound(&ipv4_frame(mac(b()), mac(c()))),
            Outbound::Drop(DropReason::SourceNotOurs)
        );
        assert_eq!(
            sw.outbound(&ipv4_frame(mac(b()), mac(me()))),
            Outbound::Unicast(b())
        );
    }

    // ---- inbound ----

    #[test]
    fn inbound_accepts_member_frames_to_us_broadcast_and_multicast() {
        let mut sw = switch();
        assert_eq!(sw.inbound(b(), &ipv4_frame(mac(me()), mac(b()))), Ok(()));
        assert_eq!(
            sw.inbound(b(), &ipv4_frame(Mac::BROADCAST, mac(b()))),
            Ok(())
        );
        let group = Mac([0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(sw.inbound(c(), &ipv4_frame(group, mac(c()))), Ok(()));
        assert_eq!(sw.stats().accepted_in, 3);
    }

    #[test]
    fn inbound_frames_shorter_than_a_header_are_dropped() {
        let mut sw = switch();
        let full = ipv4_frame(mac(me()), mac(b()));
        for len in 0..ETHERNET_HEADER_LEN {
            assert_eq!(
                sw.inbound(b(), &full[..len]),
                Err(DropReason::TooShort),
                "{len}"
            );
        }
        assert_eq!(
            sw.stats().dropped(DropReason::TooShort),
            ETHERNET_HEADER_LEN as u64
        );
    }

    #[test]
    fn inbound_from_non_members_and_from_ourselves_is_dropped() {
        let mut sw = switch();
        assert_eq!(
            sw.inbound(outsider(), &ipv4_frame(mac(me()), mac(outsider()))),
            Err(DropReason::NotAMember)
        );
        assert_eq!(
            sw.inbound(me(), &ipv4_frame(mac(me()), mac(me()))),
            Err(DropReason::Looped)
        );
        // A member removed by a config update is no longer accepted.
        let mut s = settings();
        s.members.retain(|m| m.address != c());
        sw.update(s);
        assert_eq!(
            sw.inbound(c(), &ipv4_frame(mac(me()), mac(c()))),
            Err(DropReason::NotAMember)
        );
        assert_eq!(sw.stats().dropped(DropReason::NotAMember), 2);
    }

    #[test]
    fn inbound_source_must_be_the_senders_mac() {
        let mut sw = switch();
        assert_eq!(
            sw.inbound(b(), &ipv4_frame(mac(me()), mac(c()))),
            Err(DropReason::SourceMismatch)
        );
        assert_eq!(
            sw.inbound(b(), &ipv4_frame(mac(me()), HOST)),
            Err(DropReason::SourceMismatch)
        );
        assert_eq!(
            sw.inbound(b(), &ipv4_frame(mac(me()), Mac::BROADCAST)),
            Err(DropReason::MulticastSource)
        );
        assert_eq!(sw.learned_len(), 0, "non-bridges teach nothing");
    }

    #[test]
    fn inbound_destination_must_be_us_or_a_group() {
        let mut sw = switch();
        assert_eq!(
            sw.inbound(b(), &ipv4_frame(mac(c()), mac(b()))),
            Err(DropReason::NotForUs)
        );
        assert_eq!(
            sw.inbound(b(), &ipv4_frame(HOST, mac(b()))),
            Err(DropReason::NotForUs)
        );
    }

    #[test]
    fn inbound_broadcast_when_disabled_passes_only_arp_for_our_addresses() {
        let mut sw = NetworkSwitch::new(
            net(),
            me(),
            SwitchSettings {
                enable_broadcast: false,
                ..settings()
            },
        );
        assert_eq!(
            sw.inbound(b(), &ipv4_frame(Mac::BROADCAST, mac(b()))),
            Err(DropReason::BroadcastDisabled)
        );
        assert_eq!(
            sw.inbound(b(), &arp_request(mac(b()), [198, 18, 0, 1])),
            Ok(())
        );
        assert_eq!(
            sw.inbound(b(), &arp_request(mac(b()), [198, 18, 0, 3])),
            Err(DropReason::BroadcastDisabled)
        );
    }

    #[test]
    fn inbound_neighbour_solicitation_is_accepted() {
        let mut sw = switch();
        let ours: Ipv6Addr = "fd00:5a::11:1111".parse().unwrap();
        assert_eq!(
            sw.inbound(b(), &neighbour_solicitation(mac(b()), ours)),
            Ok(())
        );
    }

    #[test]
    fn inbound_vlan_tagged_frames_follow_the_same_rules() {
        let mut sw = switch();
        let to_us = vlan_frame(mac(me()), mac(b()), 7, 0x0800, &[0x45; 40]);
        assert_eq!(sw.inbound(b(), &to_us), Ok(()));
        let spoofed = vlan_frame(mac(me()), mac(c()), 7, 0x0800, &[0x45; 40]);
        assert_eq!(sw.inbound(b(), &spoofed), Err(DropReason::SourceMismatch));
        // Broadcast off: a tagged ARP is not the untagged ARP for our address.
        sw.update(SwitchSettings {
            enable_broadcast: false,
            ..settings()
        });
        let tagged_arp = vlan_frame(
            Mac::BROADCAST,
            mac(b()),
            7,
            ETHERTYPE_ARP,
            &arp_body(1, mac(b()), [198, 18, 0, 2], [198, 18, 0, 1]),
        );
        assert_eq!(
            sw.inbound(b(), &tagged_arp),
            Err(DropReason::BroadcastDisabled)
        );
    }

    // ---- bridges and learning ----

    fn with_bridge(bridge: NodeAddress) -> NetworkSwitch {
        NetworkSwitch::new(
            net(),
            me(),
            SwitchSettings {
                bridges: vec![bridge],
                ..settings()
            },
        )
    }

    #[test]
    fn a_bridge_may_send_from_other_macs_which_are_learned() {
        let mut sw = with_bridge(c());
        assert_eq!(sw.inbound(c(), &ipv4_frame(mac(me()), HOST)), Ok(()));
        assert_eq!(sw.learned(HOST), Some(c()));
        assert_eq!(sw.stats().learned, 1);
        // Seeing it again is not news.
        assert_eq!(sw.inbound(c(), &ipv4_frame(mac(me()), HOST)), Ok(()));
        assert_eq!(sw.stats().learned, 1);
        // Now unicast to that host goes to the bridge, without allocating.
        assert_eq!(
            sw.outbound(&ipv4_frame(HOST, mac(me()))),
            Outbound::Unicast(c())
        );
        // A host not learned yet may be behind any bridge: it goes to all of them.
        assert_eq!(
            sw.outbound(&ipv4_frame(HOST2, mac(me()))),
            Outbound::Multicast(vec![c()])
        );
    }

    #[test]
    fn a_bridge_cannot_claim_another_members_mac() {
        let mut sw = with_bridge(c());
        assert_eq!(
            sw.inbound(c(), &ipv4_frame(mac(me()), mac(b()))),
            Err(DropReason::SourceMismatch)
        );
        assert_eq!(
            sw.inbound(c(), &ipv4_frame(mac(me()), mac(me()))),
            Err(DropReason::SourceMismatch)
        );
        assert_eq!(sw.learned_len(), 0);
    }

    #[test]
    fn nothing_is_learned_from_a_frame_that_is_dropped() {
        let mut sw = with_bridge(c());
        // Bridged source, but addressed to another member's MAC.
        assert_eq!(
            sw.inbound(c(), &ipv4_frame(mac(b()), HOST)),
            Err(DropReason::NotForUs)
        );
        assert_eq!(sw.learned(HOST), None);
    }

    #[test]
    fn a_mac_that_moves_between_bridges_follows_and_updates_forget_ex_bridges() {
        let mut sw = NetworkSwitch::new(
            net(),
            me(),
            SwitchSettings {
                bridges: vec![b(), c()],
                ..settings()
            },
        );
        sw.inbound(b(), &ipv4_frame(mac(me()), HOST)).unwrap();
        sw.inbound(b(), &ipv4_frame(mac(me()), HOST2)).unwrap();
        sw.inbound(c(), &ipv4_frame(mac(me()), HOST)).unwrap();
        assert_eq!(sw.learned(HOST), Some(c()));
        assert_eq!(sw.stats().learned, 3);
        sw.update(SwitchSettings {
            bridges: vec![c()],
            ..settings()
        });
        assert_eq!(sw.learned(HOST), Some(c()));
        assert_eq!(sw.learned(HOST2), None, "b is no longer a bridge");
        assert_eq!(sw.learned_len(), 1);
        assert_eq!(
            sw.inbound(b(), &ipv4_frame(mac(me()), HOST2)),
            Err(DropReason::SourceMismatch)
        );
    }

    #[test]
    fn a_bridge_listed_without_membership_is_ignored() {
        let mut sw = with_bridge(outsider());
        assert_eq!(
            sw.inbound(outsider(), &ipv4_frame(mac(me()), HOST)),
            Err(DropReason::NotAMember)
        );
        assert_eq!(
            sw.outbound(&ipv4_frame(Mac::BROADCAST, mac(me()))),
            multicast(&[b(), c(), d()])
        );
    }

    #[test]
    fn the_learned_table_is_bounded_and_forgets_the_oldest_first() {
        let mut sw = with_bridge(c());
        let host = |i: u32| {
            let b = i.to_be_bytes();
            Mac([0x02, 0xee, b[0], b[1], b[2], b[3]])
        };
        let total = LEARNED_MACS_MAX as u32 + 10;
        for i in 0..total {
            sw.inbound(c(), &ipv4_frame(mac(me()), host(i))).unwrap();
        }
        assert_eq!(sw.learned_len(), LEARNED_MACS_MAX);
        for i in 0..10 {
            assert_eq!(sw.learned(host(i)), None, "{i} should be forgotten");
        }
        assert_eq!(sw.learned(host(10)), Some(c()));
        assert_eq!(sw.learned(host(total - 1)), Some(c()));
        assert_eq!(sw.learned.order.len(), sw.learned.map.len());
    }

    #[test]
    fn as_a_bridge_we_accept_frames_for_hosts_behind_us_and_all_broadcasts() {
        let mut sw = NetworkSwitch::new(
            net(),
            me(),
            SwitchSettings {
                bridges: vec![me()],
                enable_broadcast: false,
                ..settings()
            },
        );
        assert_eq!(sw.inbound(b(), &ipv4_frame(HOST, mac(b()))), Ok(()));
        assert_eq!(
            sw.inbound(b(), &ipv4_frame(Mac::BROADCAST, mac(b()))),
            Ok(())
        );
        // But a frame for another member is still not ours to take.
        assert_eq!(
            sw.inbound(b(), &ipv4_frame(mac(c()), mac(b()))),
            Err(DropReason::NotForUs)
        );
    }

    #[test]
    fn drop_counters_are_per_reason_and_named() {
        let mut sw = switch();
        sw.outbound(&[0; 3]);
        sw.inbound(outsider(), &ipv4_frame(mac(me()), mac(outsider())))
            .unwrap_err();
        sw.inbound(b(), &ipv4_frame(mac(c()), mac(b())))
            .unwrap_err();
        let drops: HashMap<&str, u64> = sw.stats().drops().collect();
        assert_eq!(drops.len(), DropReason::ALL.len());
        assert_eq!(drops["too_short"], 1);
        assert_eq!(drops["not_a_member"], 1);
        assert_eq!(drops["not_for_us"], 1);
        assert_eq!(drops["looped"], 0);
        assert_eq!(sw.stats().dropped_total(), 3);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut sw = with_bridge(c());
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = sw.outbound(&bytes);
            let _ = sw.inbound(c(), &bytes);
            let _ = sw.inbound(b(), &bytes);
        }
        let s = sw.stats();
        assert_eq!(
            s.unicast_out + s.multicast_out + s.accepted_in + s.dropped_total(),
            600
        );
    }
}
