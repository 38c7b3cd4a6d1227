//! The evaluator: a pure, allocation-free function from a rule set and a frame to a
//! decision.
//!
//! Nodes call [`evaluate`] twice for every frame that crosses the overlay: the sender
//! before sealing it ([`Direction::Outbound`]) and the receiver after opening it
//! ([`Direction::Inbound`]), each with its own copy of the network's rules. A frame is
//! delivered only if both accept it, so a modified sender cannot bypass the receiver's
//! rules. Time and randomness are inputs ([`FrameContext::random`]); nothing here reads a
//! clock, allocates, or panics on any frame.
//!
//! The decision names the rule that made it ([`DecidedBy`]), so callers can keep one hit
//! counter per rule: size an array with [`RuleSet::rule_count`] (and each capability's
//! [`rule_count`](super::rule_count)) and increment the reported index.

use super::frame::{Facts, L2};
use super::table::{Action, Condition, Entry, RuleSet, chr};
use crate::types::NodeAddress;
use crate::wire::EthernetFrame;

/// Which side of the overlay is filtering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// We are the sender: the frame came from our TAP and is about to be sent.
    Outbound,
    /// We are the receiver: the frame arrived from a peer and is about to reach our TAP.
    Inbound,
}

/// What the filtering node knows about one member's tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerTags<'a> {
    /// The member's tags as `(tag id, value)` pairs. Tags missing from the list take the
    /// rule set's default for that tag, if it defines one.
    Known(&'a [(u32, u32)]),
    /// The filtering node has not learned this member's tags. Only meaningful for the
    /// receiver on the outbound side (the sender may not know them yet; the receiver
    /// always does). Anywhere else it is treated as "holds no tags".
    Unknown,
}

/// Everything the evaluator looks at besides the rules.
#[derive(Debug, Clone, Copy)]
pub struct FrameContext<'a> {
    /// Which side is filtering.
    pub direction: Direction,
    /// The node that sent the frame.
    pub ztsrc: NodeAddress,
    /// The node the frame is for; `None` while a multicast or broadcast frame is filtered
    /// before its recipients are known (then `ztdest` matches nothing). On the inbound
    /// side this is the receiving node itself.
    pub ztdest: Option<NodeAddress>,
    /// The whole Ethernet frame: destination MAC, source MAC, optional 802.1Q tags,
    /// ethertype, payload.
    pub frame: &'a [u8],
    /// The sender's tags (on the outbound side, our own).
    pub sender_tags: PeerTags<'a>,
    /// The receiver's tags (on the inbound side, our own).
    pub receiver_tags: PeerTags<'a>,
    /// IDs of the capabilities the sender holds: ours on the outbound side, the ones the
    /// sender presented on the inbound side. Their rules come from the rule set.
    pub sender_capabilities: &'a [u32],
    /// Whether the sender owns the frame's source IP (`chr ipauth`); the caller decides
    /// from the network's address assignments.
    pub ip_authenticated: bool,
    /// Whether the sender owns the frame's source MAC (`chr macauth`).
    pub mac_authenticated: bool,
    /// Fresh randomness for `random` matches (each match derives its own draw from it).
    pub random: u32,
}

/// What happens to the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver it (outbound: send it; inbound: write it to the TAP).
    Accept,
    /// Discard it.
    Drop,
    /// Deliver the unchanged frame to this node instead of its destination (outbound:
    /// send it there; inbound: forward it there and do not deliver it locally).
    Redirect {
        /// The node that gets the frame.
        to: NodeAddress,
    },
}

/// Which rule made the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecidedBy {
    /// A rule of the base table (0-based rule index). For [`Verdict::Drop`] this is a
    /// `drop`, or a `break` after which no capability accepted.
    Rule(u16),
    /// A rule inside a capability.
    Capability {
        /// Index of the capability in [`RuleSet::capabilities`].
        capability: u16,
        /// 0-based rule index inside that capability.
        rule: u16,
    },
    /// No rule matched and no capability accepted: the default, drop.
    Default,
}

/// A copy of the frame to send because a `tee` or `watch` rule fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCopy {
    /// The observer.
    pub to: NodeAddress,
    /// Set for `watch`, clear for `tee`.
    pub watch: bool,
    /// How many bytes of the Ethernet payload (after the VLAN tags) to copy.
    pub payload_len: usize,
}

/// Most copies one decision carries; further `tee`/`watch` rules that fire are ignored.
pub const MAX_COPIES: usize = 4;

/// The copies a decision asks for (at most [`MAX_COPIES`], one per observer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Copies {
    items: [Option<FrameCopy>; MAX_COPIES],
}

impl Copies {
    /// The copies, in the order their rules fired.
    pub fn iter(&self) -> impl Iterator<Item = &FrameCopy> {
        self.items.iter().flatten()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items[0].is_none()
    }

    /// Adds a copy unless the observer already gets one or the list is full. Returns
    /// whether it was added.
    pub(crate) fn push(&mut self, c: FrameCopy) -> bool {
        for slot in &mut self.items {
            match slot {
                Some(existing) if existing.to == c.to => return false,
                Some(_) => {}
                None => {
                    *slot = Some(c);
                    return true;
                }
            }
        }
        false
    }

    fn extend(&mut self, other: &Copies) {
        for c in other.iter() {
            self.push(*c);
        }
    }
}

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// What to do with the frame.
    pub verdict: Verdict,
    /// Which rule decided.
    pub decided_by: DecidedBy,
    /// Set on the outbound side when the deciding rule depended on tags of the receiver
    /// that the sender does not know: the sender lets the frame go and the receiver, which
    /// knows both members' tags, decides. `verdict` is then [`Verdict::Accept`].
    pub deferred: bool,
    /// Copies to send; empty when the verdict is [`Verdict::Drop`].
    pub copies: Copies,
}

/// A three-valued truth: a condition on tags the sender does not know is `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Truth {
    /// Holds.
    True,
    /// Does not hold.
    False,
    /// Cannot be known by this node (outbound, receiver's tags not known).
    Unknown,
}

impl Truth {
    fn from_bool(b: bool) -> Self {
        if b { Truth::True } else { Truth::False }
    }

    fn not(self) -> Self {
        match self {
            Truth::True => Truth::False,
            Truth::False => Truth::True,
            Truth::Unknown => Truth::Unknown,
        }
    }

    fn and(self, o: Self) -> Self {
        match (self, o) {
            (Truth::False, _) | (_, Truth::False) => Truth::False,
            (Truth::True, Truth::True) => Truth::True,
            _ => Truth::Unknown,
        }
    }

    fn or(self, o: Self) -> Self {
        match (self, o) {
            (Truth::True, _) | (_, Truth::True) => Truth::True,
            (Truth::False, Truth::False) => Truth::False,
            _ => Truth::Unknown,
        }
    }
}

/// Which table an entry belongs to (in an [`explain`](super::explain) trace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableRef {
    /// The base rules.
    Base,
    /// The capability at this index of [`RuleSet::capabilities`].
    Capability(u16),
}

/// What an action entry did (in an [`explain`](super::explain) trace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionEffect {
    /// The rule's conditions did not hold.
    Skipped,
    /// The action ended evaluation of its table.
    Decided,
    /// A tee/watch made a copy; evaluation continues.
    Copied,
    /// A tee/watch/redirect names the sender or the destination itself, or the copy list
    /// is full: nothing happens and evaluation continues.
    NoOp,
    /// The conditions depend on unknown receiver tags: the sender defers.
    Deferred,
}

/// Receives every step of an evaluation (used by `explain`; the plain evaluator passes a
/// no-op observer that compiles away).
pub(crate) trait Observer {
    /// A match entry: its own result (after `not`), or `None` if it was skipped because
    /// the outcome of the rule was already known; and the rule's running result.
    fn on_match(&mut self, _t: TableRef, _entry: usize, _result: Option<Truth>, _running: Truth) {}
    /// An action entry.
    fn on_action(&mut self, _t: TableRef, _entry: usize, _rule: u16, _effect: ActionEffect) {}
    /// A capability is about to be tried (or skipped because the sender lacks it).
    fn on_capability(&mut self, _index: u16, _held: bool) {}
}

struct Silent;
impl Observer for Silent {}

/// Evaluates `rules` for one frame.
///
/// Evaluation order:
///
/// 1. **Base rules**, top to bottom. Each rule starts out *true*. Each match entry
///    computes its condition, inverts it if it has `not`, and folds it into the rule's
///    value strictly left to right: with `or` as `value OR m`, otherwise as
///    `value AND m` (no precedence: `a and b or c` is `(a and b) or c`). A condition
///    that does not apply to the frame (ports of an ICMP packet, an IP address of an
///    ARP frame) is simply false, and `not` of it is true.
/// 2. At the rule's action, if the value is true:
///    - `accept` accepts the frame, `drop` drops it: evaluation ends. A drop in the base
///      rules cannot be overridden by any capability.
///    - `redirect X` ends evaluation with [`Verdict::Redirect`] — unless X is the sender
///      or the destination, in which case the rule does nothing.
///    - `tee`/`watch` record a copy for X (unless X is the sender or the destination)
///      and evaluation continues. Copies are sent only if the frame is finally accepted
///      or redirected.
///    - `break` ends the base rules without a decision.
///
///    Then the next rule starts out true again.
/// 3. If the base rules end without a decision (a `break`, or the end of the table),
///    the **capabilities the sender holds** are tried in the order the rule set defines
///    them. Each is evaluated like the base rules; the first that accepts (or
///    redirects) decides. Inside a capability `drop` and `break` only end that
///    capability — a capability can grant, never deny.
/// 4. If nothing accepted, the frame is **dropped** (the default).
///
/// Tags: a member's value of a tag is its own value, else the tag's `default`. A
/// comparison with a member that has neither is false. On the outbound side the sender
/// may not know the receiver's tags ([`PeerTags::Unknown`]); a condition that needs them
/// is then *unknown*, folds three-valued (`false and unknown` is false, `true or
/// unknown` is true), and if a rule's action is reached with an unknown value the sender
/// defers: [`Verdict::Accept`] with [`Decision::deferred`] set, and the receiver decides.
/// On the inbound side nothing is unknown: a sender whose tags the receiver has not
/// learned is treated as holding no tags.
pub fn evaluate(rules: &RuleSet, ctx: &FrameContext<'_>) -> Decision {
    evaluate_with(rules, ctx, &mut Silent)
}

impl RuleSet {
    /// Evaluates this rule set for one frame; see [`evaluate`].
    pub fn evaluate(&self, ctx: &FrameContext<'_>) -> Decision {
        evaluate(self, ctx)
    }

    /// [`evaluate`](Self::evaluate) with the frame's Ethernet header already parsed
    /// (`None`: too short to have one), so a caller that parsed it for its switch does
    /// not parse it twice. `l2` must be the parse of `ctx.frame`.
    pub fn evaluate_parsed(
        &self,
        ctx: &FrameContext<'_>,
        l2: Option<&EthernetFrame<'_>>,
    ) -> Decision {
        evaluate_facts(self, ctx, Facts::from_l2(l2.copied()), &mut Silent)
    }
}

/// How one table ended.
enum TableEnd {
    Accept(u16),
    Redirect(u16, NodeAddress),
    Drop(u16),
    Deferred(u16),
    /// End of table, or a `break` (its rule index).
    NoMatch(Option<u16>),
}

pub(crate) fn evaluate_with<O: Observer>(
    rules: &RuleSet,
    ctx: &FrameContext<'_>,
    obs: &mut O,
) -> Decision {
    evaluate_facts(rules, ctx, Facts::new(ctx.frame), obs)
}

fn evaluate_facts<'a, O: Observer>(
    rules: &RuleSet,
    ctx: &FrameContext<'a>,
    facts: Facts<'a>,
    obs: &mut O,
) -> Decision {
    let mut env = Env { ctx, rules, facts };
    let mut copies = Copies::default();
    let decided = |verdict, decided_by, deferred, copies| Decision {
        verdict,
        decided_by,
        deferred,
        copies,
    };
    let broke_at = match run_table(&mut env, TableRef::Base, rules.entries(), &mut copies, obs) {
        TableEnd::Accept(r) => return decided(Verdict::Accept, DecidedBy::Rule(r), false, copies),
        TableEnd::Redirect(r, to) => {
            return decided(Verdict::Redirect { to }, DecidedBy::Rule(r), false, copies);
        }
        TableEnd::Deferred(r) => return decided(Verdict::Accept, DecidedBy::Rule(r), true, copies),
        TableEnd::Drop(r) => {
            return decided(Verdict::Drop, DecidedBy::Rule(r), false, Copies::default());
        }
        TableEnd::NoMatch(b) => b,
    };
    for (i, cap) in rules.capabilities().iter().enumerate() {
        let index = i as u16;
        let held = ctx.sender_capabilities.contains(&cap.id);
        obs.on_capability(index, held);
        if !held {
            continue;
        }
        let mut cap_copies = Copies::default();
        let by = |rule| DecidedBy::Capability {
            capability: index,
            rule,
        };
        let t = TableRef::Capability(index);
        match run_table(&mut env, t, cap.entries(), &mut cap_copies, obs) {
            TableEnd::Accept(r) => {
                copies.extend(&cap_copies);
                return decided(Verdict::Accept, by(r), false, copies);
            }
            TableEnd::Redirect(r, to) => {
                copies.extend(&cap_copies);
                return decided(Verdict::Redirect { to }, by(r), false, copies);
            }
            TableEnd::Deferred(r) => {
                copies.extend(&cap_copies);
                return decided(Verdict::Accept, by(r), true, copies);
            }
            TableEnd::Drop(_) | TableEnd::NoMatch(_) => {}
        }
    }
    let by = broke_at.map(DecidedBy::Rule).unwrap_or(DecidedBy::Default);
    decided(Verdict::Drop, by, false, Copies::default())
}

struct Env<'c, 'f> {
    ctx: &'c FrameContext<'f>,
    rules: &'c RuleSet,
    facts: Facts<'f>,
}

fn run_table<O: Observer>(
    env: &mut Env<'_, '_>,
    t: TableRef,
    entries: &[Entry],
    copies: &mut Copies,
    obs: &mut O,
) -> TableEnd {
    let salt = match t {
        TableRef::Base => 0,
        TableRef::Capability(i) => u32::from(i) + 1,
    };
    let mut value = Truth::True;
    let mut rule: u16 = 0;
    for (i, e) in entries.iter().enumerate() {
        match e {
            Entry::Match(m) => {
                // The outcome is already known: `false and x` is false, `true or x` is true.
                if (value == Truth::False && !m.or) || (value == Truth::True && m.or) {
                    obs.on_match(t, i, None, value);
                    continue;
                }
                let mut r = condition(env, &m.condition, salt, i);
                if m.not {
                    r = r.not();
                }
                value = if m.or { value.or(r) } else { value.and(r) };
                obs.on_match(t, i, Some(r), value);
            }
            Entry::Action(a) => {
                match value {
                    Truth::False => obs.on_action(t, i, rule, ActionEffect::Skipped),
                    Truth::Unknown => {
                        obs.on_action(t, i, rule, ActionEffect::Deferred);
                        return TableEnd::Deferred(rule);
                    }
                    Truth::True => match *a {
                        Action::Accept => {
                            obs.on_action(t, i, rule, ActionEffect::Decided);
                            return TableEnd::Accept(rule);
                        }
                        Action::Drop => {
                            obs.on_action(t, i, rule, ActionEffect::Decided);
                            return TableEnd::Drop(rule);
                        }
                        Action::Break => {
                            obs.on_action(t, i, rule, ActionEffect::Decided);
                            return TableEnd::NoMatch(Some(rule));
                        }
                        Action::Redirect { to } => {
                            if env.is_endpoint(to) {
                                obs.on_action(t, i, rule, ActionEffect::NoOp);
                            } else {
                                obs.on_action(t, i, rule, ActionEffect::Decided);
                                return TableEnd::Redirect(rule, to);
                            }
                        }
                        Action::Tee { to, length } | Action::Watch { to, length } => {
                            let watch = matches!(a, Action::Watch { .. });
                            let payload = env.facts.l2().map(|l| l.payload.len()).unwrap_or(0);
                            let payload_len = length.copied(payload);
                            let copied = !env.is_endpoint(to)
                                && copies.push(FrameCopy {
                                    to,
                                    watch,
                                    payload_len,
                                });
                            let effect = if copied {
                                ActionEffect::Copied
                            } else {
                                ActionEffect::NoOp
                            };
                            obs.on_action(t, i, rule, effect);
                        }
                    },
                }
                value = Truth::True;
                rule = rule.saturating_add(1);
            }
        }
    }
    TableEnd::NoMatch(None)
}

impl Env<'_, '_> {
    fn is_endpoint(&self, n: NodeAddress) -> bool {
        n == self.ctx.ztsrc || Some(n) == self.ctx.ztdest
    }
}

/// A tag value as the filtering node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TagValue {
    Value(u32),
    /// The member has neither the tag nor a default for it.
    Absent,
    /// The filtering node does not know the member's tags.
    Unknown,
}

pub(crate) fn tag_value(
    rules: &RuleSet,
    tags: PeerTags<'_>,
    unknown_allowed: bool,
    id: u32,
) -> TagValue {
    let list: &[(u32, u32)] = match tags {
        PeerTags::Known(l) => l,
        PeerTags::Unknown if unknown_allowed => return TagValue::Unknown,
        PeerTags::Unknown => &[],
    };
    match list.iter().find(|(i, _)| *i == id) {
        Some((_, v)) => TagValue::Value(*v),
        None => match rules.tag_default(id) {
            Some(d) => TagValue::Value(d),
            None => TagValue::Absent,
        },
    }
}

/// The draw a `random` match compares with its probability: derived from the caller's
/// randomness, the table and the entry, so several `random` matches are independent.
pub(crate) fn random_draw(random: u32, salt: u32, entry: usize) -> u32 {
    let mut z = (u64::from(random) << 32) | (u64::from(salt) << 16) ^ entry as u64;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) as u32
}

/// Whether a `random` match with probability `p` passes for `draw`.
pub(crate) fn random_passes(p: u32, draw: u32) -> bool {
    p == u32::MAX || draw < p
}

/// The characteristic bits of the frame.
pub(crate) fn characteristics(ctx: &FrameContext<'_>, l2: Option<&L2<'_>>, tcp_flags: u16) -> u64 {
    let mut bits = u64::from(tcp_flags) & chr::TCP_FLAGS;
    if ctx.direction == Direction::Inbound {
        bits |= chr::INBOUND;
    }
    if let Some(l2) = l2 {
        if l2.dst[0] & 1 == 1 {
            bits |= chr::MULTICAST;
        }
        if l2.dst == [0xff; 6] {
            bits |= chr::BROADCAST;
        }
    }
    if ctx.ip_authenticated {
        bits |= chr::IPAUTH;
    }
    if ctx.mac_authenticated {
        bits |= chr::MACAUTH;
    }
    bits
}

fn condition(env: &mut Env<'_, '_>, c: &Condition, salt: u32, entry: usize) -> Truth {
    let ctx = env.ctx;
    let b = Truth::from_bool;
    match *c {
        Condition::ZtSource(a) => b(ctx.ztsrc == a),
        Condition::ZtDest(a) => b(ctx.ztdest == Some(a)),
        Condition::VlanId(v) => b(env.facts.l2().is_some_and(|l| l.vlan_id == v)),
        Condition::VlanPcp(v) => b(env.facts.l2().is_some_and(|l| l.vlan_pcp == v)),
        Condition::VlanDei(v) => b(env.facts.l2().is_some_and(|l| l.vlan_dei == v)),
        Condition::EtherType(v) => b(env.facts.l2().is_some_and(|l| l.ether_type == v)),
        Condition::MacSource(m) => b(env.facts.l2().is_some_and(|l| l.src == m.0)),
        Condition::MacDest(m) => b(env.facts.l2().is_some_and(|l| l.dst == m.0)),
        Condition::FrameSize(r) => b(env
            .facts
            .l2()
            .is_some_and(|l| u16::try_from(l.payload.len()).is_ok_and(|n| r.contains(n)))),
        Condition::Ipv4Source(n) => {
            b(matches!(env.facts.l3().src, Some(std::net::IpAddr::V4(a)) if n.contains(a)))
        }
        Condition::Ipv4Dest(n) => {
            b(matches!(env.facts.l3().dst, Some(std::net::IpAddr::V4(a)) if n.contains(a)))
        }
        Condition::Ipv6Source(n) => {
            b(matches!(env.facts.l3().src, Some(std::net::IpAddr::V6(a)) if n.contains(a)))
        }
        Condition::Ipv6Dest(n) => {
            b(matches!(env.facts.l3().dst, Some(std::net::IpAddr::V6(a)) if n.contains(a)))
        }
        Condition::IpTos { mask, range } => {
            b(env.facts.l3().tos.is_some_and(|t| range.contains(t & mask)))
        }
        Condition::IpProtocol(p) => b(env.facts.l3().protocol == Some(p)),
        Condition::Icmp { icmp_type, code } => b(env
            .facts
            .l3()
            .icmp
            .is_some_and(|(t, c)| t == icmp_type && code.is_none_or(|want| want == c))),
        Condition::SourcePort(r) => b(env.facts.l3().ports.is_some_and(|(s, _)| r.contains(s))),
        Condition::DestPort(r) => b(env.facts.l3().ports.is_some_and(|(_, d)| r.contains(d))),
        Condition::Characteristics(mask) => {
            let tcp = if mask & chr::TCP_FLAGS != 0 {
                env.facts.l3().tcp_flags
            } else {
                0
            };
            b(characteristics(ctx, env.facts.l2(), tcp) & mask != 0)
        }
        Condition::Random(p) => b(random_passes(p, random_draw(ctx.random, salt, entry))),
        Condition::Tag { op, id, value } => {
            let outbound = ctx.direction == Direction::Outbound;
            let s = if op.needs_sender() {
                tag_value(env.rules, ctx.sender_tags, false, id)
            } else {
                TagValue::Value(0)
            };
            let r = if op.needs_receiver() {
                tag_value(env.rules, ctx.receiver_tags, outbound, id)
            } else {
                TagValue::Value(0)
            };
            match (s, r) {
                (TagValue::Absent, _) | (_, TagValue::Absent) => Truth::False,
                (TagValue::Value(s), TagValue::Value(r)) => b(op.holds(s, r, value)),
                _ => Truth::Unknown,
            }
        }
    }
}
