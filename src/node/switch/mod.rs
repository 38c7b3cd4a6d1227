//! The virtual switch of one network: decides where an Ethernet frame read from our TAP
//! goes ([`NetworkSwitch::outbound`]) and whether a frame a peer sent us may reach our TAP
//! ([`NetworkSwitch::inbound`]). Pure: no I/O, no clock, no randomness; the node core owns
//! one `NetworkSwitch` per joined network and feeds it from its frame path.
//!
//! # What it knows
//! The network's settings from its current config ([`SwitchSettings`]: broadcast,
//! `multicast_limit`, which members are bridges, and how members are admitted), the
//! members it knows ([`MemberIndex`]: a fixed list for a network without a controller,
//! plus every peer whose membership credential the control core accepted, each with its
//! managed IPs), and the subscribers of multicast groups the control core gathered from
//! the roots ([`GroupCache`]). No config lists the members of a network with a
//! controller: they show each other credentials, and group frames go to subscribers.
//! Member MACs are never learned: [`Mac::for_member`] derives them from node address and
//! network ID, so [`Mac::to_member`] names the owner of any member MAC. Only MACs *behind
//! bridges* are learned, from inbound frames of bridge members, in a table bounded by
//! [`LEARNED_MACS_MAX`] (oldest entry out first).
//!
//! # Admission ([`Admission`])
//! - `Listed`: exactly the members of `SwitchSettings::members` (a network configured
//!   without a controller: tests, benchmarks, fuzzing).
//! - `Credentials` (a private network): the listed members and every peer whose
//!   credential the control core holds. A unicast frame for a member MAC whose owner
//!   has shown no credential yet is still routed to it: the data plane hands it to the
//!   control core, which shows ours first (the owner then shows its own).
//! - `Anyone` (a public network): every peer; no credentials are needed.
//!
//! # Outbound rules (a frame from our TAP), in order
//! 1. Shorter than an Ethernet header ([`ETHERNET_HEADER_LEN`](crate::wire::ETHERNET_HEADER_LEN)) → [`DropReason::TooShort`].
//! 2. The source MAC must be our member MAC. If we are a bridge, other unicast source
//!    MACs are allowed too, but never another member's MAC. A group source MAC is always
//!    dropped. A bridge remembers the foreign MACs it sends for (its segment's hosts).
//! 3. Unicast destination: a member MAC → that member (if it is admitted, or admission
//!    is not `Listed`; our own MAC is a loop); otherwise the learned table; otherwise,
//!    for a MAC no member owns, every bridge but us (the host may sit behind any of
//!    them, as ZeroTier does); otherwise dropped. Does not allocate.
//! 4. Untagged ARP request (broadcast, ethertype 0x0806) for an IPv4 address a known
//!    member owns → unicast to the owner(s), even with broadcast disabled (ZeroTier's
//!    ARP "ADI" scoping). Otherwise, on a network with a controller, the group
//!    `ff:ff:ff:ff:ff:ff/<address>` whose subscribers are its owners (gathered; see
//!    rule 7). For an address nobody owns: the general broadcast rule, or — with
//!    broadcast disabled — only the bridges.
//! 5. Untagged IPv6 to a solicited-node group `33:33:ff:xx:xx:xx` (neighbour
//!    solicitations) where a known member's managed IPv6 address ends in `xx:xx:xx` →
//!    those members only; otherwise the group's gathered subscribers and the bridges
//!    (every member's TAP joins the solicited-node groups of its addresses). Rules 4
//!    and 5 ignore `multicast_limit` and `enable_broadcast`: they resolve addresses.
//! 6. Any other group frame: ff:ff:ff:ff:ff:ff is dropped when `enable_broadcast` is
//!    false, every group frame when `multicast_limit` is 0. Recipients: the bridges
//!    first, then the listed members, then the group's gathered subscribers, never us,
//!    each once, truncated to `multicast_limit`.
//! 7. A group whose subscribers have not been gathered yet (networks with a
//!    controller only) → [`Outbound::Gather`]: the data plane hands the frame to the
//!    control core, which asks a root and sends the frame on when it answers.
//!
//! VLAN-tagged frames (802.1Q 0x8100, 802.1ad 0x88a8, 0x9100, up to three tags, read by the shared
//! [`EthernetFrame`] view) are switched
//! by MAC like any frame, but rules 4 and 5 apply only to untagged frames: managed
//! addresses live on the untagged interface, so a tagged ARP goes to the whole group.
//!
//! # Inbound rules (a frame an authenticated peer sent us), in order
//! 1. Shorter than an Ethernet header → [`DropReason::TooShort`].
//! 2. The sender must be admitted and must not be us.
//! 3. The source MAC must be the sender's member MAC; a bridge may also send from other
//!    unicast MACs (not another member's), and each such MAC is learned → that bridge.
//!    If we are a bridge and the MAC is one our own segment sent from lately, two
//!    bridges share a segment: the frame is dropped ([`DropReason::BridgeLoop`]), so
//!    the segment's frames do not circle through the overlay.
//! 4. The destination must be our MAC, a multicast group, or broadcast when enabled. With
//!    broadcast disabled an untagged ARP request for one of our managed IPv4 addresses
//!    still passes (that is how rule 4 above delivers it). If we are a bridge, we also
//!    accept every broadcast, and unicast to MACs that are not member MACs (hosts behind
//!    us). Learning happens only for frames that pass every check.
//!
//! Every drop is counted per [`DropReason`] in [`SwitchStats`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::types::{Mac, MulticastGroup, NetworkId, NodeAddress, Time};
use crate::wire::EthernetFrame;
use crate::wire::ethernet::{ETHERTYPE_IPV6, SourceClaim};

mod index;

use index::{LearnedMacs, LocalMacs, MemberIndex};

/// At most this many MACs behind bridges are remembered; the oldest is forgotten first.
pub const LEARNED_MACS_MAX: usize = 4096;
/// Group frames (multicast and broadcast) one network carries per second in each
/// direction, per data plane (packet thread); more are dropped and counted
/// ([`DropReason::StormLimited`]).
pub const GROUP_FRAMES_PER_SECOND: u32 = 2_000;

/// First three bytes of a solicited-node multicast MAC (33:33 + ff02::1:ffXX:XXXX).
const SOLICITED_NODE_MAC_PREFIX: [u8; 3] = [0x33, 0x33, 0xff];

/// Who may send frames on a network (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Admission {
    /// Exactly the listed members (no controller).
    #[default]
    Listed,
    /// Listed members and peers whose membership credential was accepted (private).
    Credentials,
    /// Everyone (public).
    Anyone,
}

/// The network's switching settings, taken from its current config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwitchSettings {
    /// Whether ff:ff:ff:ff:ff:ff frames are switched (ARP to member addresses works either way).
    pub enable_broadcast: bool,
    /// At most this many recipients for one group frame; 0 disables group frames
    /// (ARP and neighbour solicitations for member addresses still work).
    pub multicast_limit: usize,
    /// Members known without credentials, us included, with their managed addresses:
    /// every member of a network without a controller; empty for one with a controller.
    pub members: Vec<MemberInfo>,
    /// Members allowed to send from (and receive for) MACs other than their own. With
    /// `Listed` admission, an address here that is not also in `members` is ignored.
    pub bridges: Vec<NodeAddress>,
    /// Who may send frames.
    pub admission: Admission,
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
            admission: Admission::Listed,
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

/// What an accepted membership credential says about a member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberFacts {
    /// Its managed IP addresses.
    pub ips: Vec<IpAddr>,
    /// Its tags `(id, value)`.
    pub tags: Vec<(u32, u32)>,
    /// The capability IDs it holds.
    pub capabilities: Vec<u32>,
}

/// Members admitted by credential (us included, from our own), as the control core
/// publishes them.
pub type Members = HashMap<NodeAddress, Arc<MemberFacts>>;

/// The gathered subscribers of one multicast group.
#[derive(Debug)]
pub struct GroupEntry {
    /// Subscribers other than us, as a root listed them.
    pub members: Vec<NodeAddress>,
    /// When the root answered.
    pub at: Time,
    /// Microseconds plus one of the last frame sent to the group (0: none since the
    /// gather); the data plane stores it, the control core regathers groups in use.
    used: AtomicU64,
}

impl GroupEntry {
    /// Subscribers a root listed at `at`.
    pub fn new(members: Vec<NodeAddress>, at: Time) -> Self {
        GroupEntry {
            members,
            at,
            used: AtomicU64::new(0),
        }
    }

    /// A frame went to the group at `now`.
    pub fn touch(&self, now: Time) {
        self.used.store(now.as_micros() + 1, Ordering::Relaxed);
    }

    /// The last time a frame went to the group since the gather.
    pub fn last_used(&self) -> Option<Time> {
        match self.used.load(Ordering::Relaxed) {
            0 => None,
            t => Some(Time::from_micros(t - 1)),
        }
    }
}

/// Gathered groups of one network.
pub type GroupCache = HashMap<MulticastGroup, Arc<GroupEntry>>;

/// Where a frame read from our TAP goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// To this one member: a unicast frame, or an ARP/neighbour solicitation whose target
    /// address one member owns.
    Unicast(NodeAddress),
    /// The same frame to each of these members (never empty, never us).
    Multicast(Vec<NodeAddress>),
    /// To a group whose subscribers are not known yet: ask a root first.
    Gather(MulticastGroup),
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
    /// Inbound: the sender is not admitted. Outbound (`Listed` admission): the
    /// destination MAC belongs to a node that is not in the member list.
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
    /// Inbound, as a bridge: the source MAC is a host on our own segment, so another
    /// bridge shares the segment and the frame would circle (see the module docs).
    BridgeLoop,
    /// More group frames than [`GROUP_FRAMES_PER_SECOND`] on the network (a storm).
    StormLimited,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 13] = [
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
        DropReason::BridgeLoop,
        DropReason::StormLimited,
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
            DropReason::BridgeLoop => "bridge_loop",
            DropReason::StormLimited => "storm_limited",
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

    /// Counts one frame dropped for `reason` outside the switch's own checks (the
    /// data plane's storm limit).
    pub fn count_drop(&mut self, reason: DropReason) {
        self.drops[reason.index()] += 1;
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
    /// Members admitted by credential, as last published.
    members: Arc<Members>,
    /// Gathered group subscribers, as last published.
    groups: Arc<GroupCache>,
    /// Indexes derived from `settings` and `members`.
    index: MemberIndex,
    learned: LearnedMacs,
    /// As a bridge: MACs our own segment sent from lately.
    local: LocalMacs,
    stats: SwitchStats,
}

impl NetworkSwitch {
    /// A switch for `network` as seen by member `me`.
    pub fn new(network: NetworkId, me: NodeAddress, settings: SwitchSettings) -> Self {
        let members = Arc::new(Members::new());
        let index = MemberIndex::build(me, &settings, &members);
        NetworkSwitch {
            network,
            me,
            my_mac: Mac::for_member(me, network),
            settings,
            members,
            groups: Arc::new(GroupCache::new()),
            index,
            learned: LearnedMacs::default(),
            local: LocalMacs::default(),
            stats: SwitchStats::default(),
        }
    }

    /// Replaces the settings (a new network config arrived). MACs learned behind members
    /// that are no longer bridges are forgotten.
    pub fn update(&mut self, settings: SwitchSettings) {
        self.settings = settings;
        self.reindex();
    }

    /// Replaces the members admitted by credential (a no-op for the same table, or
    /// for an empty one while none are admitted).
    pub fn set_members(&mut self, members: &Arc<Members>) {
        // A network without credentials publishes a fresh empty table every time.
        let same =
            Arc::ptr_eq(&self.members, members) || (members.is_empty() && self.members.is_empty());
        if !same {
            self.members = Arc::clone(members);
            self.reindex();
        }
    }

    /// Replaces the gathered group subscribers.
    pub fn set_groups(&mut self, groups: &Arc<GroupCache>) {
        self.groups = Arc::clone(groups);
    }

    fn reindex(&mut self) {
        self.index = MemberIndex::build(self.me, &self.settings, &self.members);
        let bridges = &self.index.bridges;
        self.learned.retain(|bridge| bridges.contains(&bridge));
    }

    /// What an accepted credential says about `member`, if one was accepted.
    pub fn facts(&self, member: NodeAddress) -> Option<&MemberFacts> {
        self.members.get(&member).map(Arc::as_ref)
    }

    /// Whether frames from `peer` are admitted.
    pub fn admits(&self, peer: NodeAddress) -> bool {
        self.settings.admission == Admission::Anyone || self.index.members.contains(&peer)
    }

    /// True when peers must show credentials before their frames are admitted.
    pub fn needs_credentials(&self) -> bool {
        self.settings.admission == Admission::Credentials
    }

    /// The gathered entry of `group`, if any.
    pub fn group(&self, group: &MulticastGroup) -> Option<&Arc<GroupEntry>> {
        self.groups.get(group)
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
            Outbound::Gather(_) => {}
            Outbound::Drop(reason) => self.stats.drops[reason.index()] += 1,
        }
        if let Some(eth) = eth
            && !matches!(out, Outbound::Drop(_))
            && self.i_am_bridge()
            && eth.src_mac() != self.my_mac
        {
            self.local.saw(eth.src_mac());
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
    /// to us: only the sender is checked (admitted, not us); its MACs are someone
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
        } else if !self.admits(from) {
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

    /// Ages the MACs our segment sent from (as a bridge): call about once a second.
    pub fn tick(&mut self) {
        self.local.age();
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

    /// Counts a group frame the storm limit dropped.
    pub fn count_storm_drop(&mut self) {
        self.stats.count_drop(DropReason::StormLimited);
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
        {
            if let Some(owners) = self.index.v6_low24_owners.get(&low24) {
                return self.to_owners(owners);
            }
            if self.settings.admission != Admission::Listed {
                let group = MulticastGroup { mac: dst, adi: 0 };
                return self.route_resolution(group);
            }
        }
        self.route_group(MulticastGroup { mac: dst, adi: 0 })
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
        if let Some(node) = owner {
            // Without a list, any member MAC may belong to a member we have not met.
            return match self.settings.admission {
                Admission::Listed => Outbound::Drop(DropReason::NotAMember),
                _ if node == self.me => Outbound::Drop(DropReason::Looped),
                _ => Outbound::Unicast(node),
            };
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
        if self.settings.admission != Admission::Listed {
            match self.groups.get(&MulticastGroup::arp(target)) {
                None => return Outbound::Gather(MulticastGroup::arp(target)),
                Some(entry) => {
                    if let Some(out) = self.recipients(&[], &entry.members, usize::MAX) {
                        return out;
                    }
                }
            }
        }
        if self.settings.enable_broadcast {
            return self.route_group(MulticastGroup::BROADCAST);
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

    /// A neighbour solicitation nobody known owns the target of: the group's
    /// subscribers and the bridges, whatever the multicast settings.
    fn route_resolution(&self, group: MulticastGroup) -> Outbound {
        let Some(entry) = self.groups.get(&group) else {
            return Outbound::Gather(group);
        };
        let bridges = self.bridges_slice();
        self.recipients(bridges, &entry.members, usize::MAX)
            .unwrap_or(Outbound::Drop(DropReason::NoRecipients))
    }

    /// Up to `limit` bridges other than us, in group order; `None` when there are none.
    fn bridges_but_me(&self, limit: usize) -> Option<Vec<NodeAddress>> {
        let bridges: Vec<NodeAddress> = self.bridges_slice().iter().take(limit).copied().collect();
        (!bridges.is_empty()).then_some(bridges)
    }

    fn bridges_slice(&self) -> &[NodeAddress] {
        &self.index.group_order[..self.index.bridges_in_order]
    }

    /// The owners of an address, except us.
    fn to_owners(&self, owners: &[NodeAddress]) -> Outbound {
        self.recipients(&[], owners, usize::MAX)
            .unwrap_or(Outbound::Drop(DropReason::NoRecipients))
    }

    /// `first` then `then`, without us or repeats, at most `limit`; `None` if empty.
    fn recipients(
        &self,
        first: &[NodeAddress],
        then: &[NodeAddress],
        limit: usize,
    ) -> Option<Outbound> {
        let mut out: Vec<NodeAddress> = Vec::new();
        for &n in first.iter().chain(then) {
            if out.len() >= limit {
                break;
            }
            if n != self.me && !out.contains(&n) {
                out.push(n);
            }
        }
        match out.len() {
            0 => None,
            1 => Some(Outbound::Unicast(out[0])),
            _ => Some(Outbound::Multicast(out)),
        }
    }

    fn route_group(&self, group: MulticastGroup) -> Outbound {
        if group.mac.is_broadcast() && !self.settings.enable_broadcast {
            return Outbound::Drop(DropReason::BroadcastDisabled);
        }
        let limit = self.settings.multicast_limit;
        if limit == 0 {
            return Outbound::Drop(DropReason::MulticastDisabled);
        }
        let gathered: &[NodeAddress] = if self.settings.admission == Admission::Listed {
            &[]
        } else {
            match self.groups.get(&group) {
                Some(entry) => &entry.members,
                None => return Outbound::Gather(group),
            }
        };
        let order = &self.index.group_order;
        if order.len() >= limit || gathered.is_empty() {
            // The common cases: a list (no controller) or nobody gathered.
            if order.is_empty() {
                return Outbound::Drop(DropReason::NoRecipients);
            }
            return Outbound::Multicast(order[..order.len().min(limit)].to_vec());
        }
        match self.recipients(order, gathered, limit) {
            Some(Outbound::Unicast(only)) => Outbound::Multicast(vec![only]),
            Some(out) => out,
            None => Outbound::Drop(DropReason::NoRecipients),
        }
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
        if !self.admits(from) {
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
        if bridged && self.i_am_bridge() && self.local.contains(src) {
            return Err(DropReason::BridgeLoop);
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

    /// True if `mac` is the member MAC of a member (us included). Without a list, any
    /// MAC of this network's member form counts: its owner may be a member we have not
    /// met.
    fn is_member_mac(&self, mac: Mac) -> bool {
        mac == self.my_mac
            || mac.to_member(self.network).is_some_and(|node| {
                self.settings.admission != Admission::Listed || self.index.members.contains(&node)
            })
    }
}

/// The low 24 bits of a solicited-node group MAC (33:33:ff:xx:xx:xx).
fn solicited_node_low24(mac: Mac) -> Option<u32> {
    let m = mac.0;
    (m[..3] == SOLICITED_NODE_MAC_PREFIX).then(|| u32::from_be_bytes([0, m[3], m[4], m[5]]))
}

#[cfg(test)]
mod tests;
