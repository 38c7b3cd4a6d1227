//! Frames, tags and capabilities from short descriptions, for `skylan rules explain` and
//! for dry runs in rule editors.
//!
//! A frame description is a list of words (case-insensitive; commas count as spaces):
//!
//! ```text
//! tcp from 198.18.0.2:40000 to 198.18.0.3:22 syn
//! udp from [fd00::1]:5353 to [ff02::fb]:5353
//! icmp from 198.18.0.2 to 198.18.0.3 echo-request
//! arp from 198.18.0.2 to 198.18.0.3            (a who-has request; `reply` for a reply)
//! ethertype 0x88cc size 60
//! tcp to 198.18.0.3:443 with syn,ack vlan 42 pcp 5 tos 0x28 noipauth
//! ```
//!
//! | words | meaning |
//! | --- | --- |
//! | `tcp` `udp` `sctp` `udplite` `icmp` `icmp6` `arp` | the protocol (default `tcp`) |
//! | `proto N` / `ethertype N` | another IP protocol / a raw ethertype (number or name) |
//! | `ipv4` `ipv6` | the IP version, if the addresses do not tell |
//! | `from ADDR` `to ADDR` | `198.18.0.2`, `198.18.0.2:40000`, `fd00::1`, `[fd00::1]:22` |
//! | `syn` `ack` `fin` `rst` `psh` `urg` `ece` `cwr` `ns` | TCP flags (`flags syn,ack` also works) |
//! | `type N` `code N` `echo-request` `echo-reply` | ICMP type and code |
//! | `request` `reply` | ARP operation |
//! | `vlan N` `pcp N` `dei` | an 802.1Q tag |
//! | `tos N` `dscp N` | IPv4 TOS / IPv6 traffic class (DSCP is shifted left by 2) |
//! | `size N` | pad the Ethernet payload to N bytes |
//! | `macsrc MAC` `macdest MAC` | MAC addresses (defaults are placeholders; multicast and broadcast IPs get the matching group MAC) |
//! | `noipauth` `nomacauth` | the sender does not own its source IP / MAC (`chr ipauth`/`macauth` false; by default both are true) |
//! | `with` | ignored, for readability |
//!
//! Defaults: IPv4 198.18.0.1 -> 198.18.0.2 (IPv6 fd00::1 -> fd00::2), source port 49152,
//! destination port 80, ICMP echo request. Checksums are left zero: rules never look at
//! them.
//!
//! Tags are written `name=value,name=value` (names and values as in the rules: a tag name
//! or numeric ID; a number, enum name or flag names joined by `|`), `none` for no tags,
//! or `unknown`. Capabilities are written as names or IDs separated by commas.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::compile::Names;
use super::error::{RulesError, suggest};
use super::values;

/// A frame built from a description, with the ownership facts that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedFrame {
    /// The Ethernet frame.
    pub frame: Vec<u8>,
    /// Whether the sender owns the source IP (`chr ipauth`).
    pub ip_authenticated: bool,
    /// Whether the sender owns the source MAC (`chr macauth`).
    pub mac_authenticated: bool,
}

fn fail<T>(message: impl Into<String>, hint: impl Into<Option<String>>) -> Result<T, RulesError> {
    Err(RulesError::Describe {
        message: message.into(),
        hint: hint.into(),
    })
}

const WORDS: &[&str] = &[
    "tcp",
    "udp",
    "sctp",
    "udplite",
    "icmp",
    "icmp6",
    "icmpv6",
    "arp",
    "proto",
    "ethertype",
    "ipv4",
    "ipv6",
    "from",
    "to",
    "syn",
    "ack",
    "fin",
    "rst",
    "psh",
    "urg",
    "ece",
    "cwr",
    "ns",
    "flags",
    "type",
    "code",
    "echo-request",
    "echo-reply",
    "request",
    "reply",
    "vlan",
    "pcp",
    "dei",
    "tos",
    "dscp",
    "size",
    "macsrc",
    "macdest",
    "noipauth",
    "nomacauth",
    "with",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Ip(u8),
    Arp,
    Raw(u16),
}

#[derive(Default)]
struct Desc {
    proto: Option<Proto>,
    v6: Option<bool>,
    from: Option<(IpAddr, Option<u16>)>,
    to: Option<(IpAddr, Option<u16>)>,
    tcp_flags: u16,
    icmp_type: Option<u8>,
    icmp_code: u8,
    arp_reply: bool,
    vlan: Option<u16>,
    pcp: u8,
    dei: bool,
    tos: u8,
    size: Option<usize>,
    macsrc: Option<[u8; 6]>,
    macdest: Option<[u8; 6]>,
    noipauth: bool,
    nomacauth: bool,
}

fn parse_endpoint(w: &str) -> Result<(IpAddr, Option<u16>), RulesError> {
    let bad = || {
        fail(
            format!("`{w}` is not an address"),
            "write 198.18.0.2, 198.18.0.2:22, fd00::1 or [fd00::1]:22".to_string(),
        )
    };
    if let Some(rest) = w.strip_prefix('[') {
        let Some((a, p)) = rest.split_once(']') else {
            return bad();
        };
        let Ok(ip) = a.parse::<Ipv6Addr>() else {
            return bad();
        };
        let port = match p.strip_prefix(':') {
            Some(p) => Some(port(p)?),
            None if p.is_empty() => None,
            None => return bad(),
        };
        return Ok((IpAddr::V6(ip), port));
    }
    if let Ok(ip) = w.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    match w.rsplit_once(':') {
        Some((a, p)) => match a.parse::<Ipv4Addr>() {
            Ok(ip) => Ok((IpAddr::V4(ip), Some(port(p)?))),
            Err(_) => bad(),
        },
        None => bad(),
    }
}

fn port(p: &str) -> Result<u16, RulesError> {
    values::number(p, "a port", 65535)
        .map(|v| v as u16)
        .or_else(|e| fail(e.message, e.hint))
}

fn num(w: Option<&str>, what: &str, max: u64) -> Result<u64, RulesError> {
    let Some(w) = w else {
        return fail(format!("missing {what} at the end"), None);
    };
    values::number(w, what, max).or_else(|e| fail(e.message, e.hint))
}

const TCP_FLAGS: &[(&str, u16)] = &[
    ("fin", 1),
    ("syn", 2),
    ("rst", 4),
    ("psh", 8),
    ("ack", 16),
    ("urg", 32),
    ("ece", 64),
    ("cwr", 128),
    ("ns", 256),
];

/// Builds a frame from a description (see the module documentation for the words).
pub fn frame_from_description(text: &str) -> Result<DescribedFrame, RulesError> {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    let mut d = Desc::default();
    let mut it = words.iter().copied().peekable();
    let set_proto = |d: &mut Desc, p: Proto| -> Result<(), RulesError> {
        match d.proto {
            Some(old) if old != p => fail(
                "the description names two protocols",
                "describe one frame: one of tcp, udp, sctp, udplite, icmp, icmp6, arp, proto N, ethertype N".to_string(),
            ),
            _ => {
                d.proto = Some(p);
                Ok(())
            }
        }
    };
    while let Some(w) = it.next() {
        if let Some((_, f)) = TCP_FLAGS.iter().find(|(n, _)| *n == w) {
            d.tcp_flags |= f;
            continue;
        }
        match w {
            "with" => {}
            "tcp" => set_proto(&mut d, Proto::Ip(6))?,
            "udp" => set_proto(&mut d, Proto::Ip(17))?,
            "sctp" => set_proto(&mut d, Proto::Ip(132))?,
            "udplite" => set_proto(&mut d, Proto::Ip(136))?,
            "icmp" | "icmp4" | "icmpv4" => set_proto(&mut d, Proto::Ip(1))?,
            "icmp6" | "icmpv6" => {
                set_proto(&mut d, Proto::Ip(58))?;
                d.v6 = Some(true);
            }
            "arp" => set_proto(&mut d, Proto::Arp)?,
            "proto" => {
                let p = match it.next() {
                    Some(p) => values::protocol(p).or_else(|e| fail(e.message, e.hint))?,
                    None => return fail("missing the protocol after `proto`", None),
                };
                set_proto(&mut d, Proto::Ip(p))?
            }
            "ethertype" => {
                let t = match it.next() {
                    Some(t) => values::ethertype(t).or_else(|e| fail(e.message, e.hint))?,
                    None => return fail("missing the ethertype after `ethertype`", None),
                };
                let p = match t {
                    0x0800 => Proto::Ip(0),
                    0x86dd => {
                        d.v6 = Some(true);
                        Proto::Ip(0)
                    }
                    0x0806 => Proto::Arp,
                    t => Proto::Raw(t),
                };
                if t == 0x0800 {
                    d.v6 = Some(false);
                }
                set_proto(&mut d, p)?
            }
            "ipv4" | "ip4" | "ip" => d.v6 = Some(false),
            "ipv6" | "ip6" => d.v6 = Some(true),
            "from" | "to" => {
                let Some(a) = it.next() else {
                    return fail(format!("missing an address after `{w}`"), None);
                };
                let ep = parse_endpoint(a)?;
                if w == "from" {
                    d.from = Some(ep);
                } else {
                    d.to = Some(ep);
                }
            }
            "flags" => {
                // The following words that are TCP flag names.
                while let Some(n) = it.peek() {
                    let Some((_, f)) = TCP_FLAGS.iter().find(|(x, _)| x == n) else {
                        break;
                    };
                    d.tcp_flags |= f;
                    it.next();
                }
            }
            "type" => d.icmp_type = Some(num(it.next(), "an ICMP type", 255)? as u8),
            "code" => d.icmp_code = num(it.next(), "an ICMP code", 255)? as u8,
            "echo-request" | "ping" | "echo" => d.icmp_type = Some(255), // resolved below
            "echo-reply" | "pong" => d.icmp_type = Some(254),            // resolved below
            "request" => d.arp_reply = false,
            "reply" => d.arp_reply = true,
            "vlan" => d.vlan = Some(num(it.next(), "a VLAN ID", 4095)? as u16),
            "pcp" => d.pcp = num(it.next(), "a VLAN priority", 7)? as u8,
            "dei" => d.dei = true,
            "tos" => d.tos = num(it.next(), "a TOS byte", 255)? as u8,
            "dscp" => d.tos = (num(it.next(), "a DSCP value", 63)? as u8) << 2,
            "size" => d.size = Some(num(it.next(), "a payload size", 9000)? as usize),
            "macsrc" | "macdest" => {
                let Some(m) = it.next() else {
                    return fail(format!("missing a MAC after `{w}`"), None);
                };
                let m = values::mac(m).or_else(|e| fail(e.message, e.hint))?.0;
                if w == "macsrc" {
                    d.macsrc = Some(m);
                } else {
                    d.macdest = Some(m);
                }
            }
            "noipauth" => d.noipauth = true,
            "nomacauth" => d.nomacauth = true,
            "ipauth" => d.noipauth = false,
            "macauth" => d.nomacauth = false,
            other => {
                let hint = match suggest(other, WORDS.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "see `skylan rules explain --help` for the words a frame description may use".into(),
                };
                return fail(
                    format!("unknown word `{other}` in the frame description"),
                    hint,
                );
            }
        }
    }
    build(d)
}

fn build(d: Desc) -> Result<DescribedFrame, RulesError> {
    let proto = d.proto.unwrap_or(Proto::Ip(6));
    let addr_v6 = d.from.or(d.to).map(|(a, _)| a.is_ipv6());
    if let (Some((a, _)), Some((b, _))) = (d.from, d.to)
        && a.is_ipv6() != b.is_ipv6()
    {
        return fail("`from` and `to` mix IPv4 and IPv6", None);
    }
    let v6 = match (d.v6, addr_v6) {
        (Some(a), Some(b)) if a != b => {
            return fail("the IP version does not match the addresses", None);
        }
        (v, a) => v.or(a).unwrap_or(false),
    };
    if v6 && proto == Proto::Arp {
        return fail(
            "ARP carries IPv4 addresses",
            "use IPv4 addresses with `arp`".to_string(),
        );
    }
    let (src, sport) = d.from.unwrap_or(if v6 {
        (
            IpAddr::V6("fd00::1".parse().unwrap_or(Ipv6Addr::LOCALHOST)),
            None,
        )
    } else {
        (IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), None)
    });
    let (dst, dport) = d.to.unwrap_or(if v6 {
        (
            IpAddr::V6("fd00::2".parse().unwrap_or(Ipv6Addr::LOCALHOST)),
            None,
        )
    } else {
        (IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)), None)
    });
    let (sport, dport) = (sport.unwrap_or(49152), dport.unwrap_or(80));

    let macsrc = d.macsrc.unwrap_or([0x32, 0xaa, 0xaa, 0xaa, 0xaa, 0x01]);
    let macdest = d.macdest.unwrap_or_else(|| match (proto, dst) {
        (Proto::Arp, _) if !d.arp_reply => [0xff; 6],
        (_, IpAddr::V4(a)) if a.is_broadcast() => [0xff; 6],
        (_, IpAddr::V4(a)) if a.is_multicast() => {
            let o = a.octets();
            [0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]
        }
        (_, IpAddr::V6(a)) if a.is_multicast() => {
            let o = a.octets();
            [0x33, 0x33, o[12], o[13], o[14], o[15]]
        }
        _ => [0x32, 0xaa, 0xaa, 0xaa, 0xaa, 0x02],
    });

    let mut f = Vec::with_capacity(128);
    f.extend_from_slice(&macdest);
    f.extend_from_slice(&macsrc);
    if d.vlan.is_some() || d.pcp != 0 || d.dei {
        let tci = (u16::from(d.pcp) << 13) | (u16::from(d.dei) << 12) | d.vlan.unwrap_or(0);
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    let payload_start;
    match proto {
        Proto::Raw(t) => {
            f.extend_from_slice(&t.to_be_bytes());
            payload_start = f.len();
        }
        Proto::Arp => {
            f.extend_from_slice(&0x0806u16.to_be_bytes());
            payload_start = f.len();
            let (IpAddr::V4(s), IpAddr::V4(t)) = (src, dst) else {
                return fail("ARP carries IPv4 addresses", None);
            };
            f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, if d.arp_reply { 2 } else { 1 }]);
            f.extend_from_slice(&macsrc);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&if d.arp_reply { macdest } else { [0; 6] });
            f.extend_from_slice(&t.octets());
        }
        Proto::Ip(p) => {
            let transport = transport(p, v6, sport, dport, d.tcp_flags, d.icmp_type, d.icmp_code);
            f.extend_from_slice(&(if v6 { 0x86ddu16 } else { 0x0800 }).to_be_bytes());
            payload_start = f.len();
            let ip_len = if v6 { 40 } else { 20 };
            let pad = d
                .size
                .map(|s| s.saturating_sub(ip_len + transport.len()))
                .unwrap_or(0);
            let body_len = transport.len() + pad;
            match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(t)) => {
                    let total = (20 + body_len) as u16;
                    let mut h = [0u8; 20];
                    h[0] = 0x45;
                    h[1] = d.tos;
                    h[2..4].copy_from_slice(&total.to_be_bytes());
                    h[6] = 0x40;
                    h[8] = 64;
                    h[9] = p;
                    h[12..16].copy_from_slice(&s.octets());
                    h[16..20].copy_from_slice(&t.octets());
                    let sum = ipv4_checksum(&h);
                    h[10..12].copy_from_slice(&sum.to_be_bytes());
                    f.extend_from_slice(&h);
                }
                (IpAddr::V6(s), IpAddr::V6(t)) => {
                    let mut h = [0u8; 40];
                    h[0] = 0x60 | (d.tos >> 4);
                    h[1] = (d.tos & 0x0f) << 4;
                    h[4..6].copy_from_slice(&(body_len as u16).to_be_bytes());
                    h[6] = p;
                    h[7] = 64;
                    h[8..24].copy_from_slice(&s.octets());
                    h[24..40].copy_from_slice(&t.octets());
                    f.extend_from_slice(&h);
                }
                _ => return fail("`from` and `to` mix IPv4 and IPv6", None),
            }
            f.extend_from_slice(&transport);
            f.resize(f.len() + pad, 0);
        }
    }
    if let Some(size) = d.size {
        let have = f.len() - payload_start;
        if have < size {
            f.resize(payload_start + size, 0);
        }
    }
    Ok(DescribedFrame {
        frame: f,
        ip_authenticated: !d.noipauth,
        mac_authenticated: !d.nomacauth,
    })
}

fn transport(
    p: u8,
    v6: bool,
    sport: u16,
    dport: u16,
    flags: u16,
    icmp_type: Option<u8>,
    icmp_code: u8,
) -> Vec<u8> {
    let mut t = Vec::new();
    match p {
        6 => {
            t.extend_from_slice(&sport.to_be_bytes());
            t.extend_from_slice(&dport.to_be_bytes());
            t.extend_from_slice(&1u32.to_be_bytes());
            t.extend_from_slice(&u32::from(flags & 16 != 0).to_be_bytes());
            t.push(0x50 | ((flags >> 8) & 1) as u8);
            t.push(flags as u8);
            t.extend_from_slice(&64240u16.to_be_bytes());
            t.extend_from_slice(&[0, 0, 0, 0]);
        }
        17 | 136 => {
            t.extend_from_slice(&sport.to_be_bytes());
            t.extend_from_slice(&dport.to_be_bytes());
            t.extend_from_slice(&8u16.to_be_bytes());
            t.extend_from_slice(&[0, 0]);
        }
        132 => {
            t.extend_from_slice(&sport.to_be_bytes());
            t.extend_from_slice(&dport.to_be_bytes());
            t.extend_from_slice(&[0; 8]);
        }
        1 | 58 => {
            let ty = match icmp_type {
                Some(255) | None => {
                    if v6 {
                        128
                    } else {
                        8
                    }
                }
                Some(254) => {
                    if v6 {
                        129
                    } else {
                        0
                    }
                }
                Some(x) => x,
            };
            t.extend_from_slice(&[ty, icmp_code, 0, 0, 0, 1, 0, 1]);
        }
        _ => {}
    }
    t
}

fn ipv4_checksum(h: &[u8; 20]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A member's tags as written for `explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagsSpec {
    /// These `(id, value)` pairs.
    Known(Vec<(u32, u32)>),
    /// The filtering node does not know them.
    Unknown,
}

/// Parses `name=value,...`, `none` or `unknown` (see the module documentation).
pub fn parse_tags(text: &str, names: &Names) -> Result<TagsSpec, RulesError> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("unknown") {
        return Ok(TagsSpec::Unknown);
    }
    let mut out: Vec<(u32, u32)> = Vec::new();
    if t.is_empty() || t.eq_ignore_ascii_case("none") {
        return Ok(TagsSpec::Known(out));
    }
    for part in t.split([',', ' ']).filter(|p| !p.is_empty()) {
        let Some((name, value)) = part.split_once('=') else {
            return fail(
                format!("`{part}` is not NAME=VALUE"),
                "write tags like department=sales,admin=1 (or `none`, or `unknown`)".to_string(),
            );
        };
        let info = names.tag(name);
        let id = match info {
            Some(t) => t.id,
            None => match values::number(name, "a tag ID", u64::from(u32::MAX)) {
                Ok(id) => id as u32,
                Err(_) => {
                    let known: Vec<&str> = names.tags.iter().map(|t| t.name.as_str()).collect();
                    let hint = match suggest(name, known.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None if known.is_empty() => {
                            "the rules define no tags; use numeric tag IDs".into()
                        }
                        None => format!("the rules define: {}", known.join(", ")),
                    };
                    return fail(format!("no tag named `{name}`"), hint);
                }
            },
        };
        let mut v = 0u32;
        for piece in value.split('|') {
            let resolved = match info {
                Some(t) => t.value_of(piece),
                None => values::number(piece, "", u64::from(u32::MAX))
                    .ok()
                    .map(|x| x as u32),
            };
            match resolved {
                Some(x) => v |= x,
                None => return fail(format!("`{piece}` is not a value of tag `{name}`"), None),
            }
        }
        match out.iter_mut().find(|(i, _)| *i == id) {
            Some(e) => e.1 = v,
            None => out.push((id, v)),
        }
    }
    Ok(TagsSpec::Known(out))
}

/// Parses capability names or IDs separated by commas (`none` for none).
pub fn parse_capabilities(text: &str, names: &Names) -> Result<Vec<u32>, RulesError> {
    let t = text.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    t.split([',', ' '])
        .filter(|p| !p.is_empty())
        .map(|p| match names.capability(p) {
            Some(c) => Ok(c.id),
            None => match values::number(p, "a capability ID", u64::from(u32::MAX)) {
                Ok(id) => Ok(id as u32),
                Err(_) => {
                    let known: Vec<&str> =
                        names.capabilities.iter().map(|c| c.name.as_str()).collect();
                    let hint = match suggest(p, known.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("the rules define: {}", known.join(", ")),
                    };
                    fail(format!("no capability named `{p}`"), hint)
                }
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::explain::summarize_frame;

    #[test]
    fn describes_common_frames() {
        let f =
            frame_from_description("tcp from 198.18.0.2:40000 to 198.18.0.3:22 with SYN").unwrap();
        assert_eq!(
            summarize_frame(&f.frame),
            "ipv4 tcp 198.18.0.2:40000 -> 198.18.0.3:22 [syn], 32:aa:aa:aa:aa:01 -> 32:aa:aa:aa:aa:02, 40 bytes of payload"
        );
        assert!(f.ip_authenticated && f.mac_authenticated);
        let f =
            frame_from_description("udp from [fd00::1]:5353 to [ff02::fb]:5353 noipauth").unwrap();
        let s = summarize_frame(&f.frame);
        assert!(
            s.starts_with("ipv6 udp [fd00::1]:5353 -> [ff02::fb]:5353"),
            "{s}"
        );
        assert!(s.contains("-> 33:33:00:00:00:fb"), "{s}");
        assert!(!f.ip_authenticated);
        let f = frame_from_description("arp from 198.18.0.2 to 198.18.0.3").unwrap();
        assert!(summarize_frame(&f.frame).starts_with(
            "arp request 198.18.0.2 -> 198.18.0.3, 32:aa:aa:aa:aa:01 -> ff:ff:ff:ff:ff:ff"
        ));
        let f = frame_from_description("icmp6 to fd00::9 echo-reply").unwrap();
        assert!(summarize_frame(&f.frame).contains("type 129 code 0"));
        let f = frame_from_description("ethertype 0x88cc size 60 vlan 7 pcp 3").unwrap();
        let s = summarize_frame(&f.frame);
        assert!(s.starts_with("vlan 7 pcp 3 dei 0 ethertype 0x88cc"), "{s}");
        assert!(s.ends_with("60 bytes of payload"), "{s}");
    }

    #[test]
    fn rejects_nonsense_with_hints() {
        let e = frame_from_description("tcp to 198.18.0.3:22 sin").unwrap_err();
        assert!(e.to_string().contains("did you mean `syn`?"), "{e}");
        assert!(frame_from_description("tcp udp").is_err());
        assert!(frame_from_description("tcp from 198.18.0.2 to fd00::1").is_err());
        assert!(frame_from_description("tcp to 198.18.0.3:70000").is_err());
        assert!(frame_from_description("arp to fd00::1").is_err());
    }

    #[test]
    fn tags_and_caps_resolve_names() {
        let c = crate::rules::compile_str(
            "tag dept id 7 enum 100 sales flag 0 r flag 1 w; cap ssh id 9 accept; ; accept;",
        )
        .unwrap();
        assert_eq!(
            parse_tags("dept=sales", &c.names).unwrap(),
            TagsSpec::Known(vec![(7, 100)])
        );
        assert_eq!(
            parse_tags("dept=r|w,12=3", &c.names).unwrap(),
            TagsSpec::Known(vec![(7, 3), (12, 3)])
        );
        assert_eq!(parse_tags("unknown", &c.names).unwrap(), TagsSpec::Unknown);
        assert!(
            parse_tags("dpt=1", &c.names)
                .unwrap_err()
                .to_string()
                .contains("dept")
        );
        assert_eq!(parse_capabilities("ssh,12", &c.names).unwrap(), vec![9, 12]);
        assert!(parse_capabilities("sh", &c.names).is_err());
    }
}
