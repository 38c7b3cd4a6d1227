//! Explaining a decision: the same evaluation as [`evaluate`](super::evaluate), with
//! every step recorded, and a text report that names the deciding rule's source line and
//! shows, for each condition, what the frame had.
//!
//! Used by `skylan rules explain` and by rule editors ("dry-run against a sample frame").
//! Allocates (it records a trace); the node's hot path uses `evaluate` instead.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::compile::{Names, Origin, Origins};
use super::eval::{
    ActionEffect, DecidedBy, Decision, Direction, FrameContext, Observer, PeerTags, TableRef,
    TagValue, Truth, Verdict, characteristics, evaluate_with, random_draw, tag_value,
};
use super::frame::{Facts, L2, parse_l2, parse_l3};
use super::render::{action_text, chr_text, render_condition, render_rule};
use super::table::{Condition, Entry, RuleSet, ethertype_name, protocol_name, rules_of};

/// One step of an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A match entry: its result after `not` (`None`: skipped, the rule's value was
    /// already decided) and the rule's running value after it.
    Match {
        /// The table.
        table: TableRef,
        /// Entry index in the table.
        entry: usize,
        /// The entry's own result.
        result: Option<Truth>,
        /// The rule's value so far.
        running: Truth,
    },
    /// An action entry.
    Action {
        /// The table.
        table: TableRef,
        /// Entry index in the table.
        entry: usize,
        /// Rule index in the table.
        rule: u16,
        /// What it did.
        effect: ActionEffect,
    },
    /// A capability was considered.
    Capability {
        /// Its index in [`RuleSet::capabilities`].
        index: u16,
        /// Whether the sender holds it (it is evaluated only then).
        held: bool,
    },
}

/// A decision and how it was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The decision (identical to what [`evaluate`](super::evaluate) returns).
    pub decision: Decision,
    /// Every step, in order.
    pub steps: Vec<Step>,
}

struct Recorder(Vec<Step>);

impl Observer for Recorder {
    fn on_match(&mut self, table: TableRef, entry: usize, result: Option<Truth>, running: Truth) {
        self.0.push(Step::Match {
            table,
            entry,
            result,
            running,
        });
    }
    fn on_action(&mut self, table: TableRef, entry: usize, rule: u16, effect: ActionEffect) {
        self.0.push(Step::Action {
            table,
            entry,
            rule,
            effect,
        });
    }
    fn on_capability(&mut self, index: u16, held: bool) {
        self.0.push(Step::Capability { index, held });
    }
}

/// Evaluates like [`evaluate`](super::evaluate) and records every step.
pub fn explain(rules: &RuleSet, ctx: &FrameContext<'_>) -> Explanation {
    let mut r = Recorder(Vec::new());
    let decision = evaluate_with(rules, ctx, &mut r);
    Explanation {
        decision,
        steps: r.0,
    }
}

/// A one-line description of a frame, e.g.
/// `ipv4 tcp 198.18.0.2:40000 -> 198.18.0.3:22 [syn], 43 bytes`.
pub fn summarize_frame(frame: &[u8]) -> String {
    let Some(l2) = parse_l2(frame) else {
        return format!("{} bytes: too short for an Ethernet frame", frame.len());
    };
    let l3 = parse_l3(&l2);
    let mut s = String::new();
    let et = ethertype_text(l2.ether_type);
    if l2.vlan_id != 0 || l2.vlan_pcp != 0 || l2.vlan_dei != 0 {
        let _ = write!(
            s,
            "vlan {} pcp {} dei {} ",
            l2.vlan_id, l2.vlan_pcp, l2.vlan_dei
        );
    }
    match (l3.src, l3.dst, l3.protocol) {
        (Some(src), Some(dst), Some(p)) => {
            let ver = if src.is_ipv4() { "ipv4" } else { "ipv6" };
            let proto = protocol_name(p)
                .map(str::to_string)
                .unwrap_or(format!("proto {p}"));
            let ep = |ip: IpAddr, port: Option<u16>| match (ip, port) {
                (IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
                (ip, Some(p)) => format!("{ip}:{p}"),
                (ip, None) => ip.to_string(),
            };
            let _ = write!(
                s,
                "{ver} {proto} {} -> {}",
                ep(src, l3.ports.map(|p| p.0)),
                ep(dst, l3.ports.map(|p| p.1))
            );
            if p == 6 {
                let _ = write!(s, " [{}]", tcp_flags_text(l3.tcp_flags));
            }
            if let Some((t, c)) = l3.icmp {
                let _ = write!(s, " type {t} code {c}");
            }
            if let Some(tos) = l3.tos.filter(|t| *t != 0) {
                let _ = write!(s, " tos 0x{tos:02x}");
            }
        }
        _ if l2.ether_type == 0x0806 && l2.payload.len() >= 28 => {
            let p = l2.payload;
            let op = if p[7] == 2 { "reply" } else { "request" };
            let _ = write!(
                s,
                "arp {op} {}.{}.{}.{} -> {}.{}.{}.{}",
                p[14], p[15], p[16], p[17], p[24], p[25], p[26], p[27]
            );
        }
        _ => {
            let _ = write!(s, "ethertype {et}");
        }
    }
    let _ = write!(
        s,
        ", {} -> {}, {} bytes of payload",
        crate::types::Mac(l2.src),
        crate::types::Mac(l2.dst),
        l2.payload.len()
    );
    s
}

fn ethertype_text(t: u16) -> String {
    match ethertype_name(t) {
        Some(n) => format!("{n} (0x{t:04x})"),
        None => format!("0x{t:04x}"),
    }
}

fn tcp_flags_text(f: u16) -> String {
    let names = ["fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr", "ns"];
    let v: Vec<&str> = names
        .iter()
        .enumerate()
        .filter(|(i, _)| f & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect();
    if v.is_empty() {
        "no flags".into()
    } else {
        v.join(",")
    }
}

/// What the frame and the members have for `condition`, in words (the right-hand column
/// of an explanation).
pub fn observe(
    rules: &RuleSet,
    ctx: &FrameContext<'_>,
    table: TableRef,
    entry: usize,
    condition: &Condition,
    names: Option<&Names>,
) -> String {
    let mut facts = Facts::new(ctx.frame);
    let l2: Option<L2<'_>> = facts.l2().copied();
    let no_eth = "frame is too short to be Ethernet".to_string();
    let ip_of = |ip: Option<IpAddr>, v4: bool, what: &str| match ip {
        Some(a) if a.is_ipv4() == v4 => format!("{what} {a}"),
        _ => format!("frame has no IPv{} header", if v4 { 4 } else { 6 }),
    };
    match *condition {
        Condition::ZtSource(_) => format!("sender is {}", ctx.ztsrc),
        Condition::ZtDest(_) => match ctx.ztdest {
            Some(d) => format!("receiver is {d}"),
            None => "no single receiver yet (multicast)".into(),
        },
        Condition::VlanId(_) | Condition::VlanPcp(_) | Condition::VlanDei(_) => match l2 {
            Some(l) if l.vlan_id == 0 && l.vlan_pcp == 0 && l.vlan_dei == 0 => {
                "frame is untagged (vlan 0)".into()
            }
            Some(l) => format!(
                "frame vlan {} pcp {} dei {}",
                l.vlan_id, l.vlan_pcp, l.vlan_dei
            ),
            None => no_eth,
        },
        Condition::EtherType(_) => match l2 {
            Some(l) => format!("frame ethertype {}", ethertype_text(l.ether_type)),
            None => no_eth,
        },
        Condition::MacSource(_) => l2
            .map(|l| format!("frame macsrc {}", crate::types::Mac(l.src)))
            .unwrap_or(no_eth),
        Condition::MacDest(_) => l2
            .map(|l| format!("frame macdest {}", crate::types::Mac(l.dst)))
            .unwrap_or(no_eth),
        Condition::FrameSize(_) => l2
            .map(|l| format!("frame payload is {} bytes", l.payload.len()))
            .unwrap_or(no_eth),
        Condition::Ipv4Source(_) => ip_of(facts.l3().src, true, "frame ipsrc"),
        Condition::Ipv4Dest(_) => ip_of(facts.l3().dst, true, "frame ipdest"),
        Condition::Ipv6Source(_) => ip_of(facts.l3().src, false, "frame ipsrc"),
        Condition::Ipv6Dest(_) => ip_of(facts.l3().dst, false, "frame ipdest"),
        Condition::IpTos { .. } => match facts.l3().tos {
            Some(t) => format!("frame tos 0x{t:02x}"),
            None => "frame is not IP".into(),
        },
        Condition::IpProtocol(_) => match facts.l3().protocol {
            Some(p) => format!(
                "frame protocol {}",
                protocol_name(p)
                    .map(|n| format!("{n} ({p})"))
                    .unwrap_or(p.to_string())
            ),
            None => "frame is not IP".into(),
        },
        Condition::Icmp { .. } => match facts.l3().icmp {
            Some((t, c)) => format!("frame icmp type {t} code {c}"),
            None => "frame is not ICMP".into(),
        },
        Condition::SourcePort(_) | Condition::DestPort(_) => match facts.l3().ports {
            Some((s, d)) => format!("frame sport {s} dport {d}"),
            None => "frame has no ports (not TCP, UDP, SCTP or UDP-Lite)".into(),
        },
        Condition::Characteristics(_) => {
            let tcp = facts.l3().tcp_flags;
            let bits = characteristics(ctx, l2.as_ref(), tcp);
            if bits == 0 {
                "frame has none of the characteristics".into()
            } else {
                format!("frame has {}", chr_text(bits))
            }
        }
        Condition::Random(p) => {
            let salt = match table {
                TableRef::Base => 0,
                TableRef::Capability(i) => u32::from(i) + 1,
            };
            let draw = random_draw(ctx.random, salt, entry);
            format!(
                "draw {:.4} against {:.4}",
                f64::from(draw) / f64::from(u32::MAX),
                f64::from(p) / f64::from(u32::MAX)
            )
        }
        Condition::Tag { op, id, .. } => {
            let info = names.and_then(|n| n.tag_by_id(id));
            let name = info
                .map(|t| t.name.clone())
                .unwrap_or_else(|| format!("tag {id}"));
            let show = |v: TagValue| match v {
                TagValue::Value(x) => info.map(|t| t.describe(x)).unwrap_or(x.to_string()),
                TagValue::Absent => "none (no value, no default)".into(),
                TagValue::Unknown => "unknown to the sender".into(),
            };
            let outbound = ctx.direction == Direction::Outbound;
            let mut parts = Vec::new();
            if op.needs_sender() {
                parts.push(format!(
                    "sender {name} = {}",
                    show(tag_value(rules, ctx.sender_tags, false, id))
                ));
            }
            if op.needs_receiver() {
                parts.push(format!(
                    "receiver {name} = {}",
                    show(tag_value(rules, ctx.receiver_tags, outbound, id))
                ));
            }
            parts.join(", ")
        }
    }
}

fn truth_word(t: Truth) -> &'static str {
    match t {
        Truth::True => "true",
        Truth::False => "false",
        Truth::Unknown => "unknown",
    }
}

fn verdict_text(d: &Decision) -> String {
    let mut s = match d.verdict {
        Verdict::Accept if d.deferred => "ACCEPT (deferred to the receiver)".to_string(),
        Verdict::Accept => "ACCEPT".to_string(),
        Verdict::Drop => "DROP".to_string(),
        Verdict::Redirect { to } => format!("REDIRECT to {to}"),
    };
    for c in d.copies.iter() {
        let _ = write!(
            s,
            ", {} copy to {} ({} payload bytes)",
            if c.watch { "watch" } else { "tee" },
            c.to,
            c.payload_len
        );
    }
    s
}

/// Rule locations and names for a report.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sources<'a> {
    /// Where each rule came from (from [`Compiled::origins`](super::Compiled)).
    pub origins: Option<&'a Origins>,
    /// Tag and capability names.
    pub names: Option<&'a Names>,
}

impl<'a> Sources<'a> {
    fn origin(&self, table: TableRef, rule: u16) -> Option<&'a Origin> {
        let o = self.origins?;
        match table {
            TableRef::Base => o.base.get(rule as usize),
            TableRef::Capability(i) => o.capabilities.get(i as usize)?.get(rule as usize),
        }
    }

    fn cap_name(&self, rules: &RuleSet, i: u16) -> String {
        let id = rules
            .capabilities()
            .get(i as usize)
            .map(|c| c.id)
            .unwrap_or(0);
        match self.names.and_then(|n| n.capability_by_id(id)) {
            Some(c) => format!("capability `{}` (id {id})", c.name),
            None => format!("capability {id}"),
        }
    }
}

/// Describes the deciding rule, e.g. `rule 3 at policy.rules:7:1: drop chr tcp_syn;`.
pub fn describe_decider(rules: &RuleSet, d: &Decision, src: Sources<'_>) -> String {
    let (table, rule) = match d.decided_by {
        DecidedBy::Default => {
            return "the default: no rule accepted the frame, so it is dropped".into();
        }
        DecidedBy::Rule(r) => (TableRef::Base, r),
        DecidedBy::Capability { capability, rule } => (TableRef::Capability(capability), rule),
    };
    let entries = match table {
        TableRef::Base => rules.entries(),
        TableRef::Capability(i) => rules
            .capabilities()
            .get(i as usize)
            .map(|c| c.entries())
            .unwrap_or(&[]),
    };
    let text = src
        .origin(table, rule)
        .map(|o| o.text.clone())
        .or_else(|| {
            rules_of(entries)
                .nth(rule as usize)
                .map(|(_, r)| render_rule(r, src.names))
        })
        .unwrap_or_default();
    let place = match table {
        TableRef::Base => format!("rule {rule}"),
        TableRef::Capability(i) => format!("rule {rule} of {}", src.cap_name(rules, i)),
    };
    let at = src
        .origin(table, rule)
        .map(|o| format!(" at {o}"))
        .unwrap_or_default();
    let why = match (d.verdict, entries_action_is_break(entries, rule)) {
        (Verdict::Drop, true) => " (break, and no capability of the sender accepted)",
        _ => "",
    };
    format!("{place}{at}{why}\n    {text}")
}

fn entries_action_is_break(entries: &[Entry], rule: u16) -> bool {
    rules_of(entries)
        .nth(rule as usize)
        .and_then(|(_, r)| r.last())
        .is_some_and(|e| matches!(e, Entry::Action(super::table::Action::Break)))
}

/// A text report of one side's evaluation: the verdict, the deciding rule with its source
/// location, and every rule that was looked at with each condition's result next to what
/// the frame had.
pub fn render_report(
    rules: &RuleSet,
    ctx: &FrameContext<'_>,
    ex: &Explanation,
    src: Sources<'_>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "verdict: {}", verdict_text(&ex.decision));
    let _ = writeln!(
        out,
        "decided by {}",
        describe_decider(rules, &ex.decision, src)
    );
    let _ = writeln!(out, "trace:");
    let table_entries = |t: TableRef| -> &[Entry] {
        match t {
            TableRef::Base => rules.entries(),
            TableRef::Capability(i) => rules
                .capabilities()
                .get(i as usize)
                .map(|c| c.entries())
                .unwrap_or(&[]),
        }
    };
    let mut header_for: Option<(TableRef, u16)> = None;
    let rule_of_entry = |t: TableRef, entry: usize| -> u16 {
        table_entries(t)[..entry]
            .iter()
            .filter(|e| matches!(e, Entry::Action(_)))
            .count() as u16
    };
    for step in &ex.steps {
        match *step {
            Step::Capability { index, held } => {
                if held {
                    let _ = writeln!(
                        out,
                        "  trying {} (held by the sender)",
                        src.cap_name(rules, index)
                    );
                } else {
                    let _ = writeln!(
                        out,
                        "  skipping {} (not held by the sender)",
                        src.cap_name(rules, index)
                    );
                }
            }
            Step::Match {
                table,
                entry,
                result,
                ..
            } => {
                let rule = rule_of_entry(table, entry);
                print_rule_header(&mut out, rules, table, rule, &mut header_for, src);
                let Some(Entry::Match(m)) = table_entries(table).get(entry) else {
                    continue;
                };
                let first = entry == 0
                    || matches!(table_entries(table).get(entry - 1), Some(Entry::Action(_)));
                let conj = if m.or {
                    "or "
                } else if first {
                    ""
                } else {
                    "and "
                };
                let text = format!("{conj}{}", render_condition(m, src.names));
                match result {
                    None => {
                        let _ = writeln!(out, "      skipped  {text}");
                    }
                    Some(r) => {
                        let seen = observe(rules, ctx, table, entry, &m.condition, src.names);
                        let _ = writeln!(out, "      {:<8} {text:<32} [{seen}]", truth_word(r));
                    }
                }
            }
            Step::Action {
                table,
                entry,
                rule,
                effect,
            } => {
                print_rule_header(&mut out, rules, table, rule, &mut header_for, src);
                let action = match table_entries(table).get(entry) {
                    Some(Entry::Action(a)) => action_text(a),
                    _ => String::new(),
                };
                let what = match effect {
                    ActionEffect::Skipped => "conditions false: rule not applied".to_string(),
                    ActionEffect::Decided => format!("-> {action}"),
                    ActionEffect::Copied => format!("-> {action}: copy recorded, continuing"),
                    ActionEffect::NoOp => {
                        format!(
                            "-> {action}: target is the sender or the receiver (or copies are full), nothing to do"
                        )
                    }
                    ActionEffect::Deferred => format!(
                        "-> {action} depends on the receiver's tags, which the sender does not know: sent, the receiver decides"
                    ),
                };
                let _ = writeln!(out, "      {what}");
            }
        }
    }
    if ex.steps.is_empty() {
        let _ = writeln!(out, "  (no rules)");
    }
    out
}

fn print_rule_header(
    out: &mut String,
    rules: &RuleSet,
    table: TableRef,
    rule: u16,
    last: &mut Option<(TableRef, u16)>,
    src: Sources<'_>,
) {
    if *last == Some((table, rule)) {
        return;
    }
    *last = Some((table, rule));
    let entries = match table {
        TableRef::Base => rules.entries(),
        TableRef::Capability(i) => rules
            .capabilities()
            .get(i as usize)
            .map(|c| c.entries())
            .unwrap_or(&[]),
    };
    let (loc, text) = match src.origin(table, rule) {
        Some(o) => (format!(" ({o})"), o.text.clone()),
        None => (
            String::new(),
            rules_of(entries)
                .nth(rule as usize)
                .map(|(_, r)| render_rule(r, src.names))
                .unwrap_or_default(),
        ),
    };
    let _ = writeln!(out, "  rule {rule}{loc}: {text}");
}

/// A short description of a member's tags for reports: `department=sales (100), admin=1`.
pub fn describe_tags(tags: PeerTags<'_>, names: Option<&Names>) -> String {
    match tags {
        PeerTags::Unknown => "unknown".into(),
        PeerTags::Known([]) => "none".into(),
        PeerTags::Known(list) => list
            .iter()
            .map(|(id, v)| match names.and_then(|n| n.tag_by_id(*id)) {
                Some(t) => format!("{}={}", t.name, t.describe(*v)),
                None => format!("{id}={v}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}
