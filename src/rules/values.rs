//! Parsing of argument tokens into typed values, with messages that say what was expected.
//!
//! Each function takes the token text and returns the value or a [`ValueError`] (message
//! plus optional hint); the compiler attaches the token's location. Numbers are decimal or
//! `0x` hexadecimal. These parsers are stricter than ZeroTier's (which accepts `22abc` as
//! 22): a token is either entirely valid or rejected.

use std::net::IpAddr;

use super::table::{ETHERTYPES, IP_PROTOCOLS, Ipv4Cidr, Ipv6Cidr, PortRange, chr};
use crate::types::{Mac, NodeAddress};

/// What is wrong with a token, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValueError {
    pub message: String,
    pub hint: Option<String>,
}

pub(crate) type VResult<T> = Result<T, ValueError>;

pub(crate) fn err<T>(message: impl Into<String>, hint: Option<String>) -> VResult<T> {
    Err(ValueError {
        message: message.into(),
        hint,
    })
}

/// An unsigned number, decimal or `0x` hex, at most `max`.
pub(crate) fn number(text: &str, what: &str, max: u64) -> VResult<u64> {
    let t = text.trim();
    let parsed = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        t.parse::<u64>().ok()
    } else {
        None
    };
    match parsed {
        Some(v) if v <= max => Ok(v),
        Some(v) => err(
            format!("{what} {v} is out of range"),
            Some(format!("{what} must be between 0 and {max}")),
        ),
        None if t.starts_with('-') => err(
            format!("{what} must not be negative, found `{text}`"),
            Some(format!("{what} must be between 0 and {max}")),
        ),
        None if t.bytes().all(|b| b.is_ascii_digit()) && !t.is_empty() => err(
            format!("{what} `{text}` is out of range"),
            Some(format!("{what} must be between 0 and {max}")),
        ),
        None => err(
            format!("expected {what} (a number), found `{text}`"),
            Some(format!(
                "write {what} in decimal or as 0x hex, between 0 and {max}"
            )),
        ),
    }
}

/// `N` or `A-B` with `A <= B <= max`.
pub(crate) fn range(text: &str, what: &str, max: u64) -> VResult<(u64, u64)> {
    // A leading `-` is a (rejected) negative number, not a range separator.
    let split = text.get(1..).and_then(|r| r.find('-')).map(|i| i + 1);
    match split {
        None => {
            let v = number(text, what, max)?;
            Ok((v, v))
        }
        Some(i) => {
            let (a, b) = (&text[..i], &text[i + 1..]);
            if b.contains('-') {
                return err(
                    format!("`{text}` is not a range"),
                    Some(format!("write a range as START-END, e.g. 1024-{max}")),
                );
            }
            let a = number(a, what, max)?;
            let b = number(b, what, max)?;
            if a > b {
                return err(
                    format!("the range `{text}` starts above its end"),
                    Some(format!("write the lower value first: {b}-{a}")),
                );
            }
            Ok((a, b))
        }
    }
}

/// A port range for `sport`/`dport`, or a size range for `framesize`.
pub(crate) fn port_range(text: &str, what: &str) -> VResult<PortRange> {
    let (a, b) = range(text, what, 65535)?;
    // Invariant: `range` returned a <= b <= 65535.
    PortRange::new(a as u16, b as u16).ok_or_else(|| ValueError {
        message: format!("`{text}` is not a valid range"),
        hint: None,
    })
}

/// A 40-bit node address: exactly 10 hex digits.
pub(crate) fn node_address(text: &str) -> VResult<NodeAddress> {
    if text.len() != 10 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return err(
            format!("`{text}` is not a node address"),
            Some("a node address is 10 hex digits, e.g. 89e92ceee5".into()),
        );
    }
    text.to_ascii_lowercase()
        .parse::<NodeAddress>()
        .or_else(|e| err(e.to_string(), None))
}

/// A MAC address: 12 hex digits, optionally separated by `:`, `-` or `.`.
pub(crate) fn mac(text: &str) -> VResult<Mac> {
    let hex: String = text
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect();
    if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return err(
            format!("`{text}` is not a MAC address"),
            Some("write 6 bytes in hex, e.g. 32:aa:bb:cc:dd:ee".into()),
        );
    }
    let mut out = [0u8; 6];
    for (i, b) in out.iter_mut().enumerate() {
        // Invariant: `hex` is 12 ASCII hex digits.
        *b = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).unwrap_or(0);
    }
    Ok(Mac(out))
}

/// An IP network `addr/bits`; a bare address means the single host.
pub(crate) enum IpNet {
    V4(Ipv4Cidr),
    V6(Ipv6Cidr),
}

pub(crate) fn ip_net(text: &str) -> VResult<IpNet> {
    let (addr, bits) = match text.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (text, None),
    };
    let Ok(ip) = addr.parse::<IpAddr>() else {
        return err(
            format!("`{addr}` is not an IPv4 or IPv6 address"),
            Some("write an address with its prefix length, e.g. 198.18.0.0/15 or fd00::/8".into()),
        );
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        None => max as u8,
        Some(b) => number(b, "the prefix length", max)? as u8,
    };
    Ok(match ip {
        IpAddr::V4(a) => IpNet::V4(Ipv4Cidr::new(a, bits).ok_or_else(|| ValueError {
            message: format!("bad prefix length in `{text}`"),
            hint: None,
        })?),
        IpAddr::V6(a) => IpNet::V6(Ipv6Cidr::new(a, bits).ok_or_else(|| ValueError {
            message: format!("bad prefix length in `{text}`"),
            hint: None,
        })?),
    })
}

/// How ZeroTier's compiler writes the network `text` (already accepted by [`ip_net`])
/// into the compiled JSON: as written. A bare address (our extension) gets the `/bits`
/// of a single host (`max_bits`: 32 or 128) appended.
pub(crate) fn ip_spelling(text: &str, max_bits: u8) -> String {
    if text.contains('/') {
        text.to_string()
    } else {
        format!("{text}/{max_bits}")
    }
}

/// An ethertype: a number 0-65535 or one of the names in [`ETHERTYPES`].
pub(crate) fn ethertype(text: &str) -> VResult<u16> {
    let lc = text.to_ascii_lowercase();
    if let Some((_, v)) = ETHERTYPES.iter().find(|(n, _)| *n == lc) {
        return Ok(*v);
    }
    if text.starts_with(|c: char| c.is_ascii_digit()) {
        return number(text, "an ethertype", 0xffff).map(|v| v as u16);
    }
    let names: Vec<&str> = ETHERTYPES.iter().map(|(n, _)| *n).collect();
    err(
        format!("unknown ethertype `{text}`"),
        Some(match super::error::suggest(text, names.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("use a number like 0x0800 or one of: {}", names.join(", ")),
        }),
    )
}

/// An IP protocol: a number 0-255 or one of the names in [`IP_PROTOCOLS`].
pub(crate) fn protocol(text: &str) -> VResult<u8> {
    let lc = text.to_ascii_lowercase();
    if let Some((_, v)) = IP_PROTOCOLS.iter().find(|(n, _)| *n == lc) {
        return Ok(*v);
    }
    if text.starts_with(|c: char| c.is_ascii_digit()) {
        return number(text, "an IP protocol", 255).map(|v| v as u8);
    }
    let names: Vec<&str> = IP_PROTOCOLS.iter().map(|(n, _)| *n).collect();
    err(
        format!("unknown IP protocol `{text}`"),
        Some(match super::error::suggest(text, names.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("use a number 0-255 or one of: {}", names.join(", ")),
        }),
    )
}

/// A `chr` list: comma-separated characteristic names or bit numbers 0-63.
pub(crate) fn characteristics(text: &str) -> VResult<u64> {
    let mut mask = 0u64;
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let lc = part.to_ascii_lowercase();
        let bit = if let Some((_, b)) = chr::NAMES.iter().find(|(n, _)| *n == lc) {
            *b
        } else if part.starts_with(|c: char| c.is_ascii_digit()) {
            number(part, "a characteristic bit", 63)? as u8
        } else {
            let names = chr::NAMES.iter().map(|(n, _)| *n);
            return err(
                format!("unknown characteristic `{part}`"),
                Some(match super::error::suggest(part, names) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "known: inbound, multicast, broadcast, ipauth, macauth, tcp_fin, tcp_syn, tcp_rst, tcp_psh, tcp_ack, tcp_urg, tcp_ece, tcp_cwr, tcp_ns, tcp_rs0-2, or a bit number 0-63".into(),
                }),
            );
        };
        mask |= 1u64 << bit;
    }
    if mask == 0 {
        return err(
            format!("`{text}` names no characteristic"),
            Some("e.g. `chr tcp_syn` or `chr tcp_syn,tcp_ack`".into()),
        );
    }
    Ok(mask)
}

/// A probability 0.0-1.0, as ZeroTier encodes it: `floor(p * (2^32 - 1))`.
pub(crate) fn probability(text: &str) -> VResult<u32> {
    match text.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok((p * f64::from(u32::MAX)).floor() as u32),
        Ok(_) => err(
            format!("probability {text} is out of range"),
            Some("a probability is between 0 (never) and 1 (always), e.g. 0.01".into()),
        ),
        Err(_) => err(
            format!("expected a probability, found `{text}`"),
            Some("a probability is a decimal number between 0 and 1, e.g. 0.01".into()),
        ),
    }
}

/// An ICMP code: 0-255, or -1 for any code.
pub(crate) fn icmp_code(text: &str) -> VResult<Option<u8>> {
    if text == "-1" {
        return Ok(None);
    }
    number(text, "an ICMP code", 255)
        .map(|v| Some(v as u8))
        .map_err(|mut e| {
            e.hint = Some("an ICMP code is 0-255, or -1 to match any code".into());
            e
        })
}

/// A tee/watch length: -1 or 0 for the whole frame, or 1-65535.
pub(crate) fn copy_length(text: &str) -> VResult<super::table::CopyLength> {
    let n: Option<i64> = if text == "-1" {
        Some(-1)
    } else {
        number(text, "a copy length", 65535).ok().map(|v| v as i64)
    };
    n.and_then(super::table::CopyLength::from_i64)
        .ok_or_else(|| ValueError {
            message: format!("`{text}` is not a copy length"),
            hint: Some("use -1 (or 0) to copy whole frames, or a byte count 1-65535".into()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_strict_and_say_the_range() {
        assert_eq!(number("22", "a port", 65535), Ok(22));
        assert_eq!(number("0x0800", "x", 0xffff), Ok(0x800));
        let e = number("70000", "a port", 65535).unwrap_err();
        assert_eq!(e.message, "a port 70000 is out of range");
        assert_eq!(
            e.hint.as_deref(),
            Some("a port must be between 0 and 65535")
        );
        assert!(number("22abc", "a port", 65535).is_err());
        assert!(
            number("-3", "a port", 65535)
                .unwrap_err()
                .message
                .contains("negative")
        );
        assert!(number("99999999999999999999999", "a port", 65535).is_err());
    }

    #[test]
    fn ranges_need_order() {
        assert_eq!(range("1024-65535", "a port", 65535), Ok((1024, 65535)));
        assert_eq!(range("80", "a port", 65535), Ok((80, 80)));
        let e = range("80-22", "a port", 65535).unwrap_err();
        assert_eq!(
            e.hint.as_deref(),
            Some("write the lower value first: 22-80")
        );
        assert!(range("1-2-3", "a port", 65535).is_err());
        assert!(range("-1", "a port", 65535).is_err());
    }

    #[test]
    fn addresses_parse() {
        assert!(node_address("89e92ceee5").is_ok());
        assert!(node_address("89E92CEEE5").is_ok());
        assert!(node_address("89e92ceee").is_err());
        assert!(node_address("0000000000").is_err());
        assert_eq!(
            mac("32-aa-bb-cc-dd-ee").unwrap().to_string(),
            "32:aa:bb:cc:dd:ee"
        );
        assert_eq!(
            mac("32aa.bbcc.ddee").unwrap().to_string(),
            "32:aa:bb:cc:dd:ee"
        );
        assert!(mac("32:aa:bb:cc:dd").is_err());
        assert!(matches!(ip_net("198.18.0.0/15"), Ok(IpNet::V4(n)) if n.prefix() == 15));
        assert!(matches!(ip_net("198.18.0.2"), Ok(IpNet::V4(n)) if n.prefix() == 32));
        assert!(matches!(ip_net("fd00::/8"), Ok(IpNet::V6(n)) if n.prefix() == 8));
        assert!(ip_net("198.18.0.0/33").is_err());
        assert!(ip_net("198.18.0/15").is_err());
    }

    #[test]
    fn symbolic_names_are_case_insensitive_with_suggestions() {
        assert_eq!(ethertype("IPv4"), Ok(0x0800));
        assert_eq!(ethertype("0x86dd"), Ok(0x86dd));
        assert_eq!(
            ethertype("ipv5").unwrap_err().hint.as_deref(),
            Some("did you mean `ipv4`?")
        );
        assert_eq!(protocol("TCP"), Ok(6));
        assert_eq!(protocol("icmp"), Ok(1));
        assert!(protocol("256").is_err());
        assert_eq!(characteristics("tcp_syn,tcp_ack"), Ok(0x12));
        assert_eq!(
            characteristics("inbound,multicast"),
            Ok(0xc000_0000_0000_0000)
        );
        assert_eq!(characteristics("63"), Ok(1 << 63));
        assert!(
            characteristics("tcp_sny")
                .unwrap_err()
                .hint
                .unwrap()
                .contains("tcp_syn")
        );
    }

    #[test]
    fn probabilities_and_lengths() {
        assert_eq!(probability("1"), Ok(u32::MAX));
        assert_eq!(probability("0"), Ok(0));
        assert_eq!(probability("0.5"), Ok(2147483647));
        assert!(probability("1.5").is_err());
        assert!(probability("x").is_err());
        assert_eq!(icmp_code("-1"), Ok(None));
        assert_eq!(icmp_code("3"), Ok(Some(3)));
        assert!(copy_length("-1").is_ok());
        assert!(copy_length("-2").is_err());
    }
}
