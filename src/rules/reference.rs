//! A deliberately simple reference interpreter of the evaluation order documented on
//! [`super::evaluate`], for differential tests. It splits tables into rules, evaluates
//! every condition of a rule (no short cuts), uses `Option<bool>` for three-valued logic,
//! parses the whole frame up front, and re-states each condition from its definition. It
//! shares only the frame parser and the `random` draw function with the real evaluator.

use std::net::IpAddr;

use super::eval::{
    Copies, DecidedBy, Decision, Direction, FrameContext, FrameCopy, MAX_COPIES, PeerTags, Verdict,
    random_draw,
};
use super::frame::{L2, L3, parse_l2, parse_l3};
use super::table::{Action, Condition, CopyLength, Entry, Match, RuleSet, TagOp};
use crate::types::NodeAddress;

enum End {
    Accept(u16),
    Drop(u16),
    Redirect(u16, NodeAddress),
    Defer(u16),
    Break(u16),
    Fall,
}

struct World<'a> {
    rules: &'a RuleSet,
    ctx: &'a FrameContext<'a>,
    l2: Option<L2<'a>>,
    l3: L3,
}

pub(crate) fn reference_evaluate(rules: &RuleSet, ctx: &FrameContext<'_>) -> Decision {
    let l2 = parse_l2(ctx.frame);
    let l3 = l2.as_ref().map(parse_l3).unwrap_or_default();
    let w = World { rules, ctx, l2, l3 };
    let mut copies: Vec<FrameCopy> = Vec::new();
    let (end, c) = run_table(&w, rules.entries(), 0);
    copies.extend(c);
    let mk = |verdict, by, deferred, copies: &[FrameCopy]| Decision {
        verdict,
        decided_by: by,
        deferred,
        copies: to_copies(if verdict == Verdict::Drop {
            &[]
        } else {
            copies
        }),
    };
    let broke = match end {
        End::Accept(r) => return mk(Verdict::Accept, DecidedBy::Rule(r), false, &copies),
        End::Drop(r) => return mk(Verdict::Drop, DecidedBy::Rule(r), false, &copies),
        End::Redirect(r, to) => {
            return mk(Verdict::Redirect { to }, DecidedBy::Rule(r), false, &copies);
        }
        End::Defer(r) => return mk(Verdict::Accept, DecidedBy::Rule(r), true, &copies),
        End::Break(r) => Some(r),
        End::Fall => None,
    };
    for (i, cap) in rules.capabilities().iter().enumerate() {
        if !ctx.sender_capabilities.contains(&cap.id) {
            continue;
        }
        let (end, c) = run_table(&w, cap.entries(), i as u32 + 1);
        let by = |rule| DecidedBy::Capability {
            capability: i as u16,
            rule,
        };
        let mut all = copies.clone();
        all.extend(c);
        match end {
            End::Accept(r) => return mk(Verdict::Accept, by(r), false, &all),
            End::Redirect(r, to) => return mk(Verdict::Redirect { to }, by(r), false, &all),
            End::Defer(r) => return mk(Verdict::Accept, by(r), true, &all),
            _ => {}
        }
    }
    let by = match broke {
        Some(r) => DecidedBy::Rule(r),
        None => DecidedBy::Default,
    };
    mk(Verdict::Drop, by, false, &[])
}

fn to_copies(list: &[FrameCopy]) -> Copies {
    let mut out = Copies::default();
    let mut kept: Vec<NodeAddress> = Vec::new();
    for c in list {
        if kept.len() < MAX_COPIES && !kept.contains(&c.to) {
            kept.push(c.to);
            out.push(*c);
        }
    }
    out
}

fn run_table(w: &World<'_>, entries: &[Entry], salt: u32) -> (End, Vec<FrameCopy>) {
    let mut copies = Vec::new();
    let mut matches: Vec<(usize, Match)> = Vec::new();
    let mut rule: u16 = 0;
    for (i, e) in entries.iter().enumerate() {
        let a = match e {
            Entry::Match(m) => {
                matches.push((i, *m));
                continue;
            }
            Entry::Action(a) => *a,
        };
        let mut value = Some(true);
        for (idx, m) in matches.drain(..) {
            let mut r = condition(w, &m.condition, salt, idx);
            if m.not {
                r = r.map(|x| !x);
            }
            value = if m.or { or3(value, r) } else { and3(value, r) };
        }
        match value {
            Some(false) => {}
            None => return (End::Defer(rule), copies),
            Some(true) => {
                let endpoint = |n: NodeAddress| n == w.ctx.ztsrc || Some(n) == w.ctx.ztdest;
                match a {
                    Action::Accept => return (End::Accept(rule), copies),
                    Action::Drop => return (End::Drop(rule), copies),
                    Action::Break => return (End::Break(rule), copies),
                    Action::Redirect { to } if !endpoint(to) => {
                        return (End::Redirect(rule, to), copies);
                    }
                    Action::Redirect { .. } => {}
                    Action::Tee { to, length } | Action::Watch { to, length } => {
                        if !endpoint(to) {
                            let payload = w.l2.map(|l| l.payload.len()).unwrap_or(0);
                            copies.push(FrameCopy {
                                to,
                                watch: matches!(a, Action::Watch { .. }),
                                // Written out here rather than through `copied`, so the
                                // reference does not share the evaluator's code.
                                payload_len: match length {
                                    CopyLength::Whole | CopyLength::WholeAsZero => payload,
                                    CopyLength::Bytes(n) => payload.min(n.get() as usize),
                                },
                            });
                        }
                    }
                }
            }
        }
        rule += 1;
    }
    (End::Fall, copies)
}

fn and3(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

fn or3(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
        _ => None,
    }
}

/// `Some(Some(v))` value, `Some(None)` the member lacks it, `None` unknown.
fn tag(w: &World<'_>, receiver: bool, id: u32) -> Option<Option<u32>> {
    let tags = if receiver {
        w.ctx.receiver_tags
    } else {
        w.ctx.sender_tags
    };
    let list: &[(u32, u32)] = match tags {
        PeerTags::Known(l) => l,
        PeerTags::Unknown if receiver && w.ctx.direction == Direction::Outbound => return None,
        PeerTags::Unknown => &[],
    };
    if let Some((_, v)) = list.iter().find(|(i, _)| *i == id) {
        return Some(Some(*v));
    }
    Some(
        w.rules
            .tags()
            .iter()
            .find(|t| t.id == id)
            .and_then(|t| t.default),
    )
}

fn condition(w: &World<'_>, c: &Condition, salt: u32, entry: usize) -> Option<bool> {
    let l2 = w.l2.as_ref();
    let l3 = &w.l3;
    Some(match *c {
        Condition::ZtSource(a) => w.ctx.ztsrc == a,
        Condition::ZtDest(a) => w.ctx.ztdest == Some(a),
        Condition::VlanId(v) => l2.is_some_and(|l| l.vlan_id == v),
        Condition::VlanPcp(v) => l2.is_some_and(|l| l.vlan_pcp == v),
        Condition::VlanDei(v) => l2.is_some_and(|l| l.vlan_dei == v),
        Condition::EtherType(v) => l2.is_some_and(|l| l.ether_type == v),
        Condition::MacSource(m) => l2.is_some_and(|l| l.src == m.0),
        Condition::MacDest(m) => l2.is_some_and(|l| l.dst == m.0),
        Condition::FrameSize(r) => l2.is_some_and(|l| {
            l.payload.len() >= r.start() as usize && l.payload.len() <= r.end() as usize
        }),
        Condition::Ipv4Source(n) => matches!(l3.src, Some(IpAddr::V4(a)) if n.contains(a)),
        Condition::Ipv4Dest(n) => matches!(l3.dst, Some(IpAddr::V4(a)) if n.contains(a)),
        Condition::Ipv6Source(n) => matches!(l3.src, Some(IpAddr::V6(a)) if n.contains(a)),
        Condition::Ipv6Dest(n) => matches!(l3.dst, Some(IpAddr::V6(a)) if n.contains(a)),
        Condition::IpTos { mask, range } => match l3.tos {
            Some(t) => t & mask >= range.start() && t & mask <= range.end(),
            None => false,
        },
        Condition::IpProtocol(p) => l3.protocol == Some(p),
        Condition::Icmp { icmp_type, code } => match l3.icmp {
            Some((t, c)) => t == icmp_type && (code.is_none() || code == Some(c)),
            None => false,
        },
        Condition::SourcePort(r) => l3
            .ports
            .is_some_and(|(s, _)| s >= r.start() && s <= r.end()),
        Condition::DestPort(r) => l3
            .ports
            .is_some_and(|(_, d)| d >= r.start() && d <= r.end()),
        Condition::Characteristics(mask) => {
            let mut bits: u64 = u64::from(l3.tcp_flags);
            if w.ctx.direction == Direction::Inbound {
                bits |= 1 << 63;
            }
            if l2.is_some_and(|l| l.dst[0] & 1 != 0) {
                bits |= 1 << 62;
            }
            if l2.is_some_and(|l| l.dst == [0xff; 6]) {
                bits |= 1 << 61;
            }
            if w.ctx.ip_authenticated {
                bits |= 1 << 60;
            }
            if w.ctx.mac_authenticated {
                bits |= 1 << 59;
            }
            bits & mask != 0
        }
        Condition::Random(p) => {
            let draw = random_draw(w.ctx.random, salt, entry);
            p == u32::MAX || draw < p
        }
        Condition::Tag { op, id, value } => {
            let s = tag(w, false, id);
            let r = tag(w, true, id);
            let (need_s, need_r) = match op {
                TagOp::Sender => (true, false),
                TagOp::Receiver => (false, true),
                _ => (true, true),
            };
            if (need_s && s == Some(None)) || (need_r && r == Some(None)) {
                return Some(false);
            }
            let (s, r) = (s.flatten().unwrap_or(0), r.flatten().unwrap_or(0));
            let unknown =
                (need_s && tag(w, false, id).is_none()) || (need_r && tag(w, true, id).is_none());
            if unknown {
                return None;
            }
            match op {
                TagOp::Difference => {
                    (i64::from(s) - i64::from(r)).unsigned_abs() <= u64::from(value)
                }
                TagOp::BitwiseAnd => s & r == value,
                TagOp::BitwiseOr => s | r == value,
                TagOp::BitwiseXor => s ^ r == value,
                TagOp::Equal => s == value && r == value,
                TagOp::Sender => s == value,
                TagOp::Receiver => r == value,
            }
        }
    })
}
