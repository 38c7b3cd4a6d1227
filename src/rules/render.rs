//! Compiled entries back to rules-language text, for people: `rules compile` output,
//! `explain` traces, rule sets that arrived as JSON and have no source.
//!
//! The text is canonical (symbolic names where the language has them, `and` written
//! out) and compiles back to the same entries.

use super::compile::Names;
use super::table::{
    Action, Condition, CopyLength, Entry, Match, TagOp, chr, ethertype_name, protocol_name,
};

/// One condition with its `not`, e.g. `not ethertype arp` or `dport 1024-65535`.
pub fn render_condition(m: &Match, names: Option<&Names>) -> String {
    let mut s = String::new();
    if m.not {
        s.push_str("not ");
    }
    s.push_str(&condition_text(&m.condition, names));
    s
}

/// One rule (its matches and its action) as source, e.g. `accept ethertype arp;`.
pub fn render_rule(rule: &[Entry], names: Option<&Names>) -> String {
    let mut s = String::new();
    if let Some(Entry::Action(a)) = rule.last() {
        s.push_str(&action_text(a));
    }
    for (i, e) in rule.iter().enumerate() {
        if let Entry::Match(m) = e {
            s.push(' ');
            if m.or {
                s.push_str("or ");
            } else if i > 0 {
                s.push_str("and ");
            }
            s.push_str(&render_condition(m, names));
        }
    }
    s.push(';');
    s
}

pub(crate) fn action_text(a: &Action) -> String {
    match *a {
        Action::Accept | Action::Drop | Action::Break => a.keyword().to_string(),
        Action::Tee { to, length } | Action::Watch { to, length } => {
            format!("{} {} {to}", a.keyword(), length_text(length))
        }
        Action::Redirect { to } => format!("redirect {to}"),
    }
}

fn length_text(l: CopyLength) -> String {
    l.to_i64().to_string()
}

fn range_text(a: u16, b: u16) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("{a}-{b}")
    }
}

pub(crate) fn chr_text(mask: u64) -> String {
    let mut parts = Vec::new();
    for bit in (0..64u8).rev() {
        if mask & (1 << bit) == 0 {
            continue;
        }
        match chr::NAMES.iter().find(|(_, b)| *b == bit) {
            Some((n, _)) => parts.push(n.to_string()),
            None => parts.push(bit.to_string()),
        }
    }
    parts.join(",")
}

pub(crate) fn probability_text(p: u32) -> String {
    let v = f64::from(p) / f64::from(u32::MAX);
    // Shortest decimal that compiles back to the same encoded probability.
    for digits in 1..=12 {
        let t = format!("{v:.digits$}");
        if let Ok(back) = t.parse::<f64>()
            && (back * f64::from(u32::MAX)).floor() as u32 == p
        {
            let t = t.trim_end_matches('0').trim_end_matches('.');
            return if t.is_empty() { "0".into() } else { t.into() };
        }
    }
    format!("{v}")
}

fn condition_text(c: &Condition, names: Option<&Names>) -> String {
    match *c {
        Condition::ZtSource(a) => format!("ztsrc {a}"),
        Condition::ZtDest(a) => format!("ztdest {a}"),
        Condition::VlanId(v) => format!("vlan {v}"),
        Condition::VlanPcp(v) => format!("vlanpcp {v}"),
        Condition::VlanDei(v) => format!("vlandei {v}"),
        Condition::EtherType(t) => match ethertype_name(t) {
            Some(n) => format!("ethertype {n}"),
            None => format!("ethertype 0x{t:04x}"),
        },
        Condition::MacSource(m) => format!("macsrc {m}"),
        Condition::MacDest(m) => format!("macdest {m}"),
        Condition::Ipv4Source(n) => format!("ipsrc {n}"),
        Condition::Ipv4Dest(n) => format!("ipdest {n}"),
        Condition::Ipv6Source(n) => format!("ipsrc {n}"),
        Condition::Ipv6Dest(n) => format!("ipdest {n}"),
        Condition::IpTos { mask, range } => format!(
            "iptos 0x{mask:02x} {}",
            if range.start() == range.end() {
                range.start().to_string()
            } else {
                format!("{}-{}", range.start(), range.end())
            }
        ),
        Condition::IpProtocol(p) => match protocol_name(p) {
            Some(n) => format!("ipprotocol {n}"),
            None => format!("ipprotocol {p}"),
        },
        Condition::Icmp { icmp_type, code } => match code {
            Some(c) => format!("icmp {icmp_type} {c}"),
            None => format!("icmp {icmp_type} -1"),
        },
        Condition::SourcePort(r) => format!("sport {}", range_text(r.start(), r.end())),
        Condition::DestPort(r) => format!("dport {}", range_text(r.start(), r.end())),
        Condition::FrameSize(r) => format!("framesize {}", range_text(r.start(), r.end())),
        Condition::Characteristics(m) => format!("chr {}", chr_text(m)),
        Condition::Random(p) => format!("random {}", probability_text(p)),
        Condition::Tag { op, id, value } => {
            let tag = names.and_then(|n| n.tag_by_id(id));
            let name = tag
                .map(|t| t.name.clone())
                .unwrap_or_else(|| id.to_string());
            let v = tag
                .and_then(|t| t.enums.iter().find(|(_, v)| *v == value))
                .map(|(n, _)| n.clone())
                .unwrap_or_else(|| value.to_string());
            match op {
                TagOp::Sender | TagOp::Receiver | TagOp::Equal => {
                    format!("{} {name} {v}", op.keyword())
                }
                _ => format!("{} {name} {value}", op.keyword()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_render_shortest() {
        assert_eq!(probability_text(u32::MAX), "1");
        assert_eq!(probability_text(0), "0");
        assert_eq!(probability_text(2147483647), "0.5");
        assert_eq!(probability_text(42949672), "0.01");
    }

    #[test]
    fn chr_names_bits() {
        assert_eq!(chr_text(0x12), "tcp_ack,tcp_syn");
        assert_eq!(chr_text(1 << 63 | 1 << 40), "inbound,40");
    }
}
