//! The compiled form of a rule set: flat tables of MATCH and ACTION entries.
//!
//! This is what the compiler produces, what the controller stores and ships (its JSON form
//! is ZeroTier's compiled-rule JSON, see [`super::json`]), and what the evaluator reads.
//!
//! A *table* is a list of [`Entry`]s. A *rule* is zero or more [`Entry::Match`] entries
//! followed by one [`Entry::Action`]. Rules are numbered from 0 in table order; that number
//! is what [`super::Decision`] reports, so callers can keep one hit counter per rule.
//!
//! Invariants, upheld by every constructor ([`RuleSet::new`], the compiler, the JSON
//! reader):
//! - a table never ends with match entries that no action follows;
//! - the base table has at most [`MAX_BASE_ENTRIES`] entries, each capability at most
//!   [`MAX_CAPABILITY_ENTRIES`]; at most [`MAX_CAPABILITIES`] capabilities and
//!   [`MAX_TAGS`] tag definitions; capability IDs and tag IDs are unique;
//! - every value inside an entry is in range (ports, VLAN IDs, prefix lengths, ...), which
//!   the small value types below enforce on construction.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::types::{Mac, NodeAddress};

/// Most entries (matches plus actions) in the base rule table (ZeroTier's
/// `ZT_MAX_NETWORK_RULES`).
pub const MAX_BASE_ENTRIES: usize = 1024;
/// Most entries in one capability's rule table (ZeroTier's `ZT_MAX_CAPABILITY_RULES`).
pub const MAX_CAPABILITY_ENTRIES: usize = 64;
/// Most capabilities a rule set may define (ZeroTier allows 128 per member).
pub const MAX_CAPABILITIES: usize = 128;
/// Most tags a rule set may define (ZeroTier allows 128 per member).
pub const MAX_TAGS: usize = 128;

/// One entry of a rule table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A condition on the frame or on the two members' tags.
    Match(Match),
    /// What to do when the conditions before it (since the previous action) hold.
    Action(Action),
}

/// A condition with its two modifier bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    /// Invert the condition's result (the `not` keyword).
    pub not: bool,
    /// Combine with the rule's result so far by OR instead of AND (the `or` keyword).
    pub or: bool,
    /// The condition itself.
    pub condition: Condition,
}

/// What a match entry tests. Every variant corresponds to one ZeroTier `MATCH_*` type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// `ztsrc`: the sending node (`MATCH_SOURCE_ZEROTIER_ADDRESS`).
    ZtSource(NodeAddress),
    /// `ztdest`: the receiving node (`MATCH_DEST_ZEROTIER_ADDRESS`); never true while a
    /// multicast frame is filtered without a destination.
    ZtDest(NodeAddress),
    /// `vlan`: the 802.1Q VLAN ID, 0 for untagged frames (`MATCH_VLAN_ID`).
    VlanId(u16),
    /// `vlanpcp`: the 802.1Q priority, 0 for untagged frames (`MATCH_VLAN_PCP`).
    VlanPcp(u8),
    /// `vlandei`: the 802.1Q drop-eligible bit, 0 for untagged frames (`MATCH_VLAN_DEI`).
    VlanDei(u8),
    /// `ethertype`: the frame's ethertype after any VLAN tags (`MATCH_ETHERTYPE`).
    EtherType(u16),
    /// `macsrc` (`MATCH_MAC_SOURCE`).
    MacSource(Mac),
    /// `macdest` (`MATCH_MAC_DEST`).
    MacDest(Mac),
    /// `ipsrc` with an IPv4 network (`MATCH_IPV4_SOURCE`).
    Ipv4Source(Ipv4Cidr),
    /// `ipdest` with an IPv4 network (`MATCH_IPV4_DEST`).
    Ipv4Dest(Ipv4Cidr),
    /// `ipsrc` with an IPv6 network (`MATCH_IPV6_SOURCE`).
    Ipv6Source(Ipv6Cidr),
    /// `ipdest` with an IPv6 network (`MATCH_IPV6_DEST`).
    Ipv6Dest(Ipv6Cidr),
    /// `iptos`: `(TOS & mask)` within `range` (IPv4 TOS byte or IPv6 traffic class)
    /// (`MATCH_IP_TOS`).
    IpTos {
        /// Bits of the TOS byte to keep before comparing.
        mask: u8,
        /// Accepted values of the masked byte.
        range: ByteRange,
    },
    /// `ipprotocol`: the IPv4 protocol or the IPv6 upper-layer header after extension
    /// headers (`MATCH_IP_PROTOCOL`).
    IpProtocol(u8),
    /// `icmp`: ICMPv4 or ICMPv6 type, and code unless `None` (`MATCH_ICMP`).
    Icmp {
        /// The ICMP type.
        icmp_type: u8,
        /// The ICMP code, or `None` for any code.
        code: Option<u8>,
    },
    /// `sport`: TCP, UDP, SCTP or UDP-Lite source port (`MATCH_IP_SOURCE_PORT_RANGE`).
    SourcePort(PortRange),
    /// `dport`: TCP, UDP, SCTP or UDP-Lite destination port (`MATCH_IP_DEST_PORT_RANGE`).
    DestPort(PortRange),
    /// `chr`: true if the frame has any of these characteristic bits
    /// (`MATCH_CHARACTERISTICS`); see [`chr`].
    Characteristics(u64),
    /// `framesize`: the Ethernet payload length in bytes (`MATCH_FRAME_SIZE_RANGE`).
    FrameSize(PortRange),
    /// `random`: true with probability `p / (2^32 - 1)` (`MATCH_RANDOM`).
    Random(u32),
    /// A comparison of the sender's and/or receiver's value of one tag.
    Tag {
        /// Which comparison.
        op: TagOp,
        /// The tag ID.
        id: u32,
        /// The operand.
        value: u32,
    },
}

/// The seven tag comparisons of the language. `s` is the sender's value of the tag and
/// `r` the receiver's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TagOp {
    /// `tdiff`: `|s - r| <= value` (`MATCH_TAGS_DIFFERENCE`).
    Difference,
    /// `tand`: `s & r == value` (`MATCH_TAGS_BITWISE_AND`).
    BitwiseAnd,
    /// `tor`: `s | r == value` (`MATCH_TAGS_BITWISE_OR`).
    BitwiseOr,
    /// `txor`: `s ^ r == value` (`MATCH_TAGS_BITWISE_XOR`).
    BitwiseXor,
    /// `teq`: `s == value && r == value` (`MATCH_TAGS_EQUAL`).
    Equal,
    /// `tseq` (and `tag NAME=VALUE`): `s == value` (`MATCH_TAG_SENDER`).
    Sender,
    /// `treq`: `r == value` (`MATCH_TAG_RECEIVER`).
    Receiver,
}

impl TagOp {
    /// The language keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            TagOp::Difference => "tdiff",
            TagOp::BitwiseAnd => "tand",
            TagOp::BitwiseOr => "tor",
            TagOp::BitwiseXor => "txor",
            TagOp::Equal => "teq",
            TagOp::Sender => "tseq",
            TagOp::Receiver => "treq",
        }
    }

    /// Whether the comparison reads the sender's value.
    pub fn needs_sender(self) -> bool {
        !matches!(self, TagOp::Receiver)
    }

    /// Whether the comparison reads the receiver's value.
    pub fn needs_receiver(self) -> bool {
        !matches!(self, TagOp::Sender)
    }

    /// Applies the comparison to the two values.
    pub fn holds(self, sender: u32, receiver: u32, value: u32) -> bool {
        match self {
            TagOp::Difference => sender.abs_diff(receiver) <= value,
            TagOp::BitwiseAnd => sender & receiver == value,
            TagOp::BitwiseOr => sender | receiver == value,
            TagOp::BitwiseXor => sender ^ receiver == value,
            TagOp::Equal => sender == value && receiver == value,
            TagOp::Sender => sender == value,
            TagOp::Receiver => receiver == value,
        }
    }
}

/// An action entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `accept`: deliver the frame and stop (`ACTION_ACCEPT`).
    Accept,
    /// `drop`: discard the frame and stop; no capability can override it. Inside a
    /// capability it only ends that capability (`ACTION_DROP`).
    Drop,
    /// `break`: stop the base rules and let the sender's capabilities decide
    /// (`ACTION_BREAK`).
    Break,
    /// `tee`: send a copy of the frame to `to` and continue (`ACTION_TEE`).
    Tee {
        /// The observer.
        to: NodeAddress,
        /// How much of the frame to copy.
        length: CopyLength,
    },
    /// `watch`: like `tee`, flagged so the observer knows it is watching
    /// (`ACTION_WATCH`).
    Watch {
        /// The observer.
        to: NodeAddress,
        /// How much of the frame to copy.
        length: CopyLength,
    },
    /// `redirect`: deliver the unchanged frame to `to` instead of its destination
    /// (`ACTION_REDIRECT`).
    Redirect {
        /// The node that receives the frame instead.
        to: NodeAddress,
    },
}

impl Action {
    /// The language keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Drop => "drop",
            Action::Break => "break",
            Action::Tee { .. } => "tee",
            Action::Watch { .. } => "watch",
            Action::Redirect { .. } => "redirect",
        }
    }
}

/// How many bytes of a frame's Ethernet payload a `tee`/`watch` copies.
///
/// `-1` and `0` both mean the whole frame; which one was written is kept, so the
/// compiled JSON says what the source said (ZeroTier's compiler writes the number as
/// given, and its controller keeps a 0 as 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CopyLength {
    /// The whole frame, written `-1`.
    Whole,
    /// The whole frame, written `0` (ZeroTier's engine reads a length of 0 as "no limit").
    WholeAsZero,
    /// At most this many bytes of the Ethernet payload (1-65535).
    Bytes(std::num::NonZeroU16),
}

impl CopyLength {
    /// From the language/JSON number: -1 and 0 mean the whole frame.
    pub fn from_i64(n: i64) -> Option<CopyLength> {
        match n {
            -1 => Some(CopyLength::Whole),
            0 => Some(CopyLength::WholeAsZero),
            1..=65535 => std::num::NonZeroU16::new(n as u16).map(CopyLength::Bytes),
            _ => None,
        }
    }

    /// The JSON number, as written: -1 or 0 for the whole frame, else the byte count.
    pub fn to_i64(self) -> i64 {
        match self {
            CopyLength::Whole => -1,
            CopyLength::WholeAsZero => 0,
            CopyLength::Bytes(n) => i64::from(n.get()),
        }
    }

    /// How many payload bytes of a frame whose payload is `payload` bytes are copied.
    pub fn copied(self, payload: usize) -> usize {
        match self {
            CopyLength::Whole | CopyLength::WholeAsZero => payload,
            CopyLength::Bytes(n) => payload.min(usize::from(n.get())),
        }
    }
}

/// An inclusive range of 16-bit values (ports, frame sizes) with `start <= end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    start: u16,
    end: u16,
}

impl PortRange {
    /// A range; `None` if `start > end`.
    pub fn new(start: u16, end: u16) -> Option<Self> {
        (start <= end).then_some(Self { start, end })
    }

    /// The lowest value in the range.
    pub fn start(self) -> u16 {
        self.start
    }

    /// The highest value in the range.
    pub fn end(self) -> u16 {
        self.end
    }

    /// Whether `v` is in the range.
    pub fn contains(self, v: u16) -> bool {
        self.start <= v && v <= self.end
    }
}

/// An inclusive range of byte values with `start <= end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ByteRange {
    start: u8,
    end: u8,
}

impl ByteRange {
    /// A range; `None` if `start > end`.
    pub fn new(start: u8, end: u8) -> Option<Self> {
        (start <= end).then_some(Self { start, end })
    }

    /// The lowest value.
    pub fn start(self) -> u8 {
        self.start
    }

    /// The highest value.
    pub fn end(self) -> u8 {
        self.end
    }

    /// Whether `v` is in the range.
    pub fn contains(self, v: u8) -> bool {
        self.start <= v && v <= self.end
    }
}

/// An IPv4 address with a prefix length (0-32). The address is kept as written (host
/// bits included) so it renders back unchanged; containment ignores the host bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Cidr {
    /// `None` if `prefix > 32`.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32).then_some(Self { addr, prefix })
    }

    /// The address as written.
    pub fn addr(self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is inside the network.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0);
        (u32::from(ip) ^ u32::from(self.addr)) & mask == 0
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An IPv6 address with a prefix length (0-128), kept as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Cidr {
    addr: Ipv6Addr,
    prefix: u8,
}

impl Ipv6Cidr {
    /// `None` if `prefix > 128`.
    pub fn new(addr: Ipv6Addr, prefix: u8) -> Option<Self> {
        (prefix <= 128).then_some(Self { addr, prefix })
    }

    /// The address as written.
    pub fn addr(self) -> Ipv6Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is inside the network.
    pub fn contains(self, ip: Ipv6Addr) -> bool {
        let mask = u128::MAX
            .checked_shl(128 - u32::from(self.prefix))
            .unwrap_or(0);
        (u128::from(ip) ^ u128::from(self.addr)) & mask == 0
    }
}

impl fmt::Display for Ipv6Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A capability: a rule table that a member may hold in addition to the base rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    /// The capability's ID (members hold capabilities by ID).
    pub id: u32,
    /// Whether new members get it automatically.
    pub default: bool,
    entries: Vec<Entry>,
}

impl Capability {
    /// A capability; checks the table shape and the [`MAX_CAPABILITY_ENTRIES`] limit.
    pub fn new(id: u32, default: bool, entries: Vec<Entry>) -> Result<Self, RuleTableError> {
        check_table(&entries, MAX_CAPABILITY_ENTRIES, TableKind::Capability(id))?;
        Ok(Self {
            id,
            default,
            entries,
        })
    }

    /// The capability's rule table.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

/// A tag definition: its ID and the value members have when they were not given one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TagDef {
    /// The tag's ID.
    pub id: u32,
    /// The value a member has if it was not given one; `None`: such a member lacks the
    /// tag, and every comparison involving it is false.
    pub default: Option<u32>,
}

/// Everything a node needs to filter frames on one network: the base rule table, the
/// capability definitions and the tag definitions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleSet {
    entries: Vec<Entry>,
    capabilities: Vec<Capability>,
    tags: Vec<TagDef>,
}

impl RuleSet {
    /// A rule set; checks table shapes, limits and ID uniqueness.
    pub fn new(
        entries: Vec<Entry>,
        capabilities: Vec<Capability>,
        tags: Vec<TagDef>,
    ) -> Result<Self, RuleTableError> {
        check_table(&entries, MAX_BASE_ENTRIES, TableKind::Base)?;
        if capabilities.len() > MAX_CAPABILITIES {
            return Err(RuleTableError::TooManyCapabilities(capabilities.len()));
        }
        if tags.len() > MAX_TAGS {
            return Err(RuleTableError::TooManyTags(tags.len()));
        }
        for (i, c) in capabilities.iter().enumerate() {
            if capabilities[..i].iter().any(|o| o.id == c.id) {
                return Err(RuleTableError::DuplicateCapabilityId(c.id));
            }
        }
        for (i, t) in tags.iter().enumerate() {
            if tags[..i].iter().any(|o| o.id == t.id) {
                return Err(RuleTableError::DuplicateTagId(t.id));
            }
        }
        Ok(Self {
            entries,
            capabilities,
            tags,
        })
    }

    /// A rule set with one rule, `accept;` (what a new network gets).
    pub fn accept_all() -> Self {
        Self {
            entries: vec![Entry::Action(Action::Accept)],
            capabilities: Vec::new(),
            tags: Vec::new(),
        }
    }

    /// The base rule table.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The capability definitions, in the order they are tried.
    pub fn capabilities(&self) -> &[Capability] {
        &self.capabilities
    }

    /// The tag definitions.
    pub fn tags(&self) -> &[TagDef] {
        &self.tags
    }

    /// Number of rules in the base table (size a hit-counter array with this).
    pub fn rule_count(&self) -> usize {
        rule_count(&self.entries)
    }

    /// The default value of tag `id`, if the tag is defined with one.
    pub fn tag_default(&self, id: u32) -> Option<u32> {
        self.tags
            .iter()
            .find(|t| t.id == id)
            .and_then(|t| t.default)
    }
}

/// Number of rules (actions) in a table.
pub fn rule_count(entries: &[Entry]) -> usize {
    entries
        .iter()
        .filter(|e| matches!(e, Entry::Action(_)))
        .count()
}

/// Splits a table into rules: `(first entry index, entries of the rule)`.
pub fn rules_of(entries: &[Entry]) -> impl Iterator<Item = (usize, &[Entry])> {
    let mut start = 0;
    entries
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Entry::Action(_)))
        .map(move |(i, _)| {
            let r = (start, &entries[start..=i]);
            start = i + 1;
            r
        })
}

/// Which table a [`RuleTableError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// The base rules.
    Base,
    /// The capability with this ID.
    Capability(u32),
}

impl fmt::Display for TableKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableKind::Base => write!(f, "the base rule table"),
            TableKind::Capability(id) => write!(f, "capability {id}"),
        }
    }
}

/// Why a rule table or rule set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleTableError {
    /// More entries than the limit.
    #[error(
        "{table} has {entries} entries; the limit is {limit} (every match and every action is one entry)"
    )]
    TooManyEntries {
        /// Which table.
        table: TableKind,
        /// How many it has.
        entries: usize,
        /// The limit.
        limit: usize,
    },
    /// Matches after the last action.
    #[error("{table} ends with {count} match entries that no action follows")]
    DanglingMatches {
        /// Which table.
        table: TableKind,
        /// How many.
        count: usize,
    },
    /// Too many capabilities.
    #[error("{0} capabilities defined; the limit is {MAX_CAPABILITIES}")]
    TooManyCapabilities(usize),
    /// Too many tags.
    #[error("{0} tags defined; the limit is {MAX_TAGS}")]
    TooManyTags(usize),
    /// Two capabilities with one ID.
    #[error("capability ID {0} is used twice")]
    DuplicateCapabilityId(u32),
    /// Two tags with one ID.
    #[error("tag ID {0} is used twice")]
    DuplicateTagId(u32),
}

fn check_table(entries: &[Entry], limit: usize, table: TableKind) -> Result<(), RuleTableError> {
    if entries.len() > limit {
        return Err(RuleTableError::TooManyEntries {
            table,
            entries: entries.len(),
            limit,
        });
    }
    let dangling = entries
        .iter()
        .rev()
        .take_while(|e| matches!(e, Entry::Match(_)))
        .count();
    if dangling > 0 {
        return Err(RuleTableError::DanglingMatches {
            table,
            count: dangling,
        });
    }
    Ok(())
}

/// Symbolic ethertypes the language accepts (ZeroTier's list).
pub const ETHERTYPES: &[(&str, u16)] = &[
    ("ipv4", 0x0800),
    ("arp", 0x0806),
    ("wol", 0x0842),
    ("rarp", 0x8035),
    ("ipv6", 0x86dd),
    ("atalk", 0x809b),
    ("aarp", 0x80f3),
    ("ipx_a", 0x8137),
    ("ipx_b", 0x8138),
];

/// Symbolic IP protocol numbers the language accepts (ZeroTier's list; the first name
/// of a number is the one used when rendering).
pub const IP_PROTOCOLS: &[(&str, u8)] = &[
    ("icmp", 1),
    ("icmp4", 1),
    ("icmpv4", 1),
    ("igmp", 2),
    ("ipip", 4),
    ("tcp", 6),
    ("egp", 8),
    ("igp", 9),
    ("udp", 17),
    ("rdp", 27),
    ("esp", 50),
    ("ah", 51),
    ("icmp6", 58),
    ("icmpv6", 58),
    ("l2tp", 115),
    ("sctp", 132),
    ("udplite", 136),
];

/// Frame characteristic bits for `chr` (bit 0 is the least significant).
pub mod chr {
    /// The frame is being filtered by its receiver.
    pub const INBOUND: u64 = 1 << 63;
    /// The destination MAC is a multicast (or broadcast) address.
    pub const MULTICAST: u64 = 1 << 62;
    /// The destination MAC is ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: u64 = 1 << 61;
    /// The sender owns the frame's source IP (as the caller determined).
    pub const IPAUTH: u64 = 1 << 60;
    /// The sender owns the frame's source MAC (as the caller determined).
    pub const MACAUTH: u64 = 1 << 59;
    /// Mask of the TCP flag bits (FIN..CWR in bits 0-7, NS and the reserved bits in 8-11).
    pub const TCP_FLAGS: u64 = 0xfff;

    /// Names the language accepts, with their bit numbers.
    pub const NAMES: &[(&str, u8)] = &[
        ("inbound", 63),
        ("multicast", 62),
        ("broadcast", 61),
        ("ipauth", 60),
        ("macauth", 59),
        ("tcp_fin", 0),
        ("tcp_syn", 1),
        ("tcp_rst", 2),
        ("tcp_psh", 3),
        ("tcp_ack", 4),
        ("tcp_urg", 5),
        ("tcp_ece", 6),
        ("tcp_cwr", 7),
        ("tcp_ns", 8),
        ("tcp_rs2", 9),
        ("tcp_rs1", 10),
        ("tcp_rs0", 11),
    ];
}

/// The name of an ethertype, if the language has one.
pub fn ethertype_name(v: u16) -> Option<&'static str> {
    ETHERTYPES.iter().find(|(_, n)| *n == v).map(|(s, _)| *s)
}

/// The name of an IP protocol number, if the language has one.
pub fn protocol_name(v: u8) -> Option<&'static str> {
    IP_PROTOCOLS.iter().find(|(_, n)| *n == v).map(|(s, _)| *s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_containment_ignores_host_bits() {
        let n = Ipv4Cidr::new(Ipv4Addr::new(198, 18, 0, 7), 15).unwrap();
        assert!(n.contains(Ipv4Addr::new(198, 19, 255, 1)));
        assert!(!n.contains(Ipv4Addr::new(198, 20, 0, 1)));
        let all = Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, 0).unwrap();
        assert!(all.contains(Ipv4Addr::new(203, 0, 113, 9)));
        let host = Ipv4Cidr::new(Ipv4Addr::new(203, 0, 113, 9), 32).unwrap();
        assert!(host.contains(Ipv4Addr::new(203, 0, 113, 9)));
        assert!(!host.contains(Ipv4Addr::new(203, 0, 113, 8)));
        assert!(Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, 33).is_none());
        let v6 = Ipv6Cidr::new("fd00::1".parse().unwrap(), 8).unwrap();
        assert!(v6.contains("fdff::2".parse().unwrap()));
        assert!(!v6.contains("fe80::2".parse().unwrap()));
        assert!(
            Ipv6Cidr::new(Ipv6Addr::UNSPECIFIED, 0)
                .unwrap()
                .contains(Ipv6Addr::LOCALHOST)
        );
    }

    #[test]
    fn tag_ops_follow_their_definitions() {
        assert!(TagOp::Difference.holds(10, 7, 3));
        assert!(!TagOp::Difference.holds(7, 10, 2));
        assert!(TagOp::Difference.holds(0, u32::MAX, u32::MAX));
        assert!(TagOp::BitwiseAnd.holds(0b110, 0b011, 0b010));
        assert!(TagOp::BitwiseOr.holds(0b100, 0b001, 0b101));
        assert!(TagOp::BitwiseXor.holds(5, 5, 0));
        assert!(TagOp::Equal.holds(4, 4, 4));
        assert!(!TagOp::Equal.holds(4, 5, 4));
        assert!(TagOp::Sender.holds(1, 9, 1));
        assert!(TagOp::Receiver.holds(9, 1, 1));
    }

    #[test]
    fn tables_must_end_with_an_action_and_respect_limits() {
        let m = Entry::Match(Match {
            not: false,
            or: false,
            condition: Condition::EtherType(0x0800),
        });
        let a = Entry::Action(Action::Accept);
        assert!(RuleSet::new(vec![m.clone(), a.clone()], vec![], vec![]).is_ok());
        assert_eq!(
            RuleSet::new(vec![a.clone(), m.clone()], vec![], vec![]),
            Err(RuleTableError::DanglingMatches {
                table: TableKind::Base,
                count: 1
            })
        );
        let big = vec![a.clone(); MAX_CAPABILITY_ENTRIES + 1];
        assert!(matches!(
            Capability::new(7, false, big),
            Err(RuleTableError::TooManyEntries { .. })
        ));
        let c1 = Capability::new(7, false, vec![a.clone()]).unwrap();
        assert_eq!(
            RuleSet::new(vec![], vec![c1.clone(), c1], vec![]),
            Err(RuleTableError::DuplicateCapabilityId(7))
        );
        let t = TagDef {
            id: 1,
            default: None,
        };
        assert_eq!(
            RuleSet::new(vec![], vec![], vec![t, t]),
            Err(RuleTableError::DuplicateTagId(1))
        );
    }

    #[test]
    fn rules_split_at_actions() {
        let m = Entry::Match(Match {
            not: false,
            or: false,
            condition: Condition::EtherType(0x0800),
        });
        let a = Entry::Action(Action::Accept);
        let t = vec![m.clone(), m.clone(), a.clone(), a.clone(), m, a];
        let r: Vec<(usize, usize)> = rules_of(&t).map(|(s, e)| (s, e.len())).collect();
        assert_eq!(r, vec![(0, 3), (3, 1), (4, 2)]);
        assert_eq!(rule_count(&t), 3);
    }

    #[test]
    fn copy_length_accepts_zerotier_forms() {
        assert_eq!(CopyLength::from_i64(-1), Some(CopyLength::Whole));
        assert_eq!(CopyLength::from_i64(0), Some(CopyLength::WholeAsZero));
        assert_eq!(CopyLength::from_i64(0).map(|c| c.to_i64()), Some(0));
        assert_eq!(CopyLength::WholeAsZero.copied(1500), 1500);
        assert_eq!(CopyLength::from_i64(128).map(|c| c.copied(1500)), Some(128));
        assert_eq!(CopyLength::from_i64(128).map(|c| c.to_i64()), Some(128));
        assert_eq!(CopyLength::from_i64(65536), None);
        assert_eq!(CopyLength::from_i64(-2), None);
    }
}
