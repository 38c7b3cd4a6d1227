//! The nftables rulesets the lab loads, as text (pure functions, so they can be read and
//! tested without root).
//!
//! Two places use nftables:
//! - the **backbone** namespace: one `bridge` table whose `forward` chain jumps, for every
//!   frame entering or leaving a host's bridge port, to that port's own chain. A port chain
//!   is empty (pass), holds `drop` (link cut), or holds `numgen random mod 100 < N drop`
//!   (loss without netem). Bridged frames never reach the IP `forward` hook, which is why
//!   this is a bridge-family table.
//! - each **NAT router** namespace: one `ip` table implementing the NAT behaviour, plus an
//!   `input` rule that drops new connections from the public side to the router itself.
//!   That rule matters: a probe from a stranger that reached the router's own stack would
//!   leave a conntrack entry which later makes the NAT pick a different public port for the
//!   host's own flow to that stranger, breaking endpoint-independent mapping. Dropped
//!   before conntrack confirmation, the probe leaves no trace, like a home router.
//!
//! Interface names inside namespaces are fixed by the lab: the router's public side is
//! [`WAN_IF`], its private side [`LAN_IF`].

use std::fmt::Write;
use std::net::Ipv4Addr;

use super::NatKind;

/// Name of the bridge-family table in the backbone namespace.
pub(crate) const BACKBONE_TABLE: &str = "skylan_lab";
/// Name of the NAT table in a router namespace.
pub(crate) const NAT_TABLE: &str = "skylan_nat";
/// The router's public (backbone-facing) interface.
pub(crate) const WAN_IF: &str = "wan0";
/// The router's private (host-facing) interface.
pub(crate) const LAN_IF: &str = "lan0";
/// How long the full-cone emulation remembers a mapping without traffic (seconds); the
/// same as conntrack's default for a UDP flow that has seen replies.
const CONE_TIMEOUT_SECS: u32 = 180;

/// The backbone table with an empty `forward` chain.
pub(crate) fn backbone_table() -> String {
    format!(
        "table bridge {BACKBONE_TABLE} {{\n\
         \tchain forward {{ type filter hook forward priority filter; policy accept; }}\n\
         }}\n"
    )
}

/// Creates the (empty) chain for a new bridge port and hooks it into `forward` for both
/// directions.
pub(crate) fn add_port(port: &str) -> String {
    let chain = port_chain(port);
    format!(
        "add chain bridge {BACKBONE_TABLE} {chain}\n\
         add rule bridge {BACKBONE_TABLE} forward iifname \"{port}\" jump {chain}\n\
         add rule bridge {BACKBONE_TABLE} forward oifname \"{port}\" jump {chain}\n"
    )
}

/// Replaces a port chain's rules: `cut` drops everything; otherwise `loss_percent` drops
/// that share of frames at random, each time a frame crosses the port.
pub(crate) fn set_port(port: &str, cut: bool, loss_percent: u8) -> String {
    let chain = port_chain(port);
    let mut s = format!("flush chain bridge {BACKBONE_TABLE} {chain}\n");
    if cut || loss_percent >= 100 {
        // Writing to a String cannot fail. (`numgen random mod 100` is 0..=99, so 100 %
        // cannot be written as a comparison.)
        let _ = writeln!(s, "add rule bridge {BACKBONE_TABLE} {chain} counter drop");
    } else if loss_percent > 0 {
        let _ = writeln!(
            s,
            "add rule bridge {BACKBONE_TABLE} {chain} numgen random mod 100 < {loss_percent} counter drop"
        );
    }
    s
}

fn port_chain(port: &str) -> String {
    format!("port_{port}")
}

/// The router's ruleset for a NAT behaviour, with `public_ip` on [`WAN_IF`].
///
/// - `PortRestricted`: plain `masquerade`. Linux keeps the source port when it is free, so
///   the mapping does not depend on the destination; conntrack only lets in replies from
///   the exact address and port a flow was sent to.
/// - `Symmetric`: `masquerade fully-random`: every new flow gets a random public port.
/// - `EndpointIndependent` (full cone): `snat` to the public address, and a dynamic map
///   learned after NAT in postrouting (public UDP port → private address and port, taken
///   from conntrack's original tuple) that a prerouting `dnat ... map` uses to let anyone
///   reach a mapped port. UDP only (the overlay's transport); TCP is plain source NAT.
pub(crate) fn nat_ruleset(kind: NatKind, public_ip: Ipv4Addr) -> String {
    let mut s = format!("table ip {NAT_TABLE} {{\n");
    let outbound = match kind {
        NatKind::PortRestricted => "masquerade".to_string(),
        NatKind::Symmetric => "masquerade fully-random".to_string(),
        NatKind::EndpointIndependent => format!("snat ip to {public_ip}"),
    };
    let _ = write!(
        s,
        "\tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\toifname \"{WAN_IF}\" {outbound}\n\
         \t}}\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority filter; policy accept;\n\
         \t\tiifname \"{WAN_IF}\" ct state new drop\n\
         \t}}\n"
    );
    if kind == NatKind::EndpointIndependent {
        let _ = write!(
            s,
            "\tmap cone {{\n\
             \t\ttype inet_service : ipv4_addr . inet_service\n\
             \t\tflags dynamic, timeout\n\
             \t\ttimeout {CONE_TIMEOUT_SECS}s\n\
             \t}}\n\
             \tchain learn {{\n\
             \t\ttype filter hook postrouting priority srcnat + 10; policy accept;\n\
             \t\toifname \"{WAN_IF}\" meta l4proto udp update @cone {{ udp sport : ct original ip saddr . ct original proto-src }}\n\
             \t}}\n\
             \tchain prerouting {{\n\
             \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
             \t\tiifname \"{WAN_IF}\" meta l4proto udp dnat ip to udp dport map @cone\n\
             \t}}\n"
        );
    }
    s.push_str("}\n");
    s
}

/// Replaces a masquerading router's outbound rule with one that maps to public ports in
/// `range` only (see `Lab::rebind_nat`).
pub(crate) fn rebind_outbound(kind: NatKind, (first, last): (u16, u16)) -> String {
    let random = if kind == NatKind::Symmetric {
        " fully-random"
    } else {
        ""
    };
    // A port range needs a transport protocol match; everything else (ICMP) is
    // masqueraded as before.
    format!(
        "flush chain ip {NAT_TABLE} postrouting\n\
         add rule ip {NAT_TABLE} postrouting oifname \"{WAN_IF}\" meta l4proto {{ tcp, udp }} masquerade to :{first}-{last}{random}\n\
         add rule ip {NAT_TABLE} postrouting oifname \"{WAN_IF}\" masquerade{random}\n"
    )
}

/// Name of the table that silences a router's "fragmentation needed" errors.
pub(crate) const PMTU_TABLE: &str = "skylan_pmtu";

/// Drops the ICMP errors a router sends when a packet with the don't-fragment bit is
/// too big for the next link (IPv4 "fragmentation needed", IPv6 "packet too big"), so
/// the sender never learns the path's MTU: a PMTU black hole (see `Lab::black_hole`).
pub(crate) fn silence_pmtu_errors() -> String {
    format!(
        "table inet {PMTU_TABLE} {{\n\
         \tchain output {{ type filter hook output priority filter; policy accept;\n\
         \t\ticmp type destination-unreachable icmp code frag-needed drop\n\
         \t\ticmpv6 type packet-too-big drop\n\
         \t}}\n\
         }}\n"
    )
}

/// Name of the table that blocks UDP in a host's namespace (`Lab::block_udp`).
pub(crate) const UDP_BLOCK_TABLE: &str = "skylan_block_udp";

/// Drops every UDP packet a host sends or receives, both families (a firewall that lets
/// only TCP through).
pub(crate) fn block_udp() -> String {
    format!(
        "table inet {UDP_BLOCK_TABLE} {{\n\
         \tchain output {{ type filter hook output priority filter; policy accept;\n\
         \t\tmeta l4proto udp counter drop\n\
         \t}}\n\
         \tchain input {{ type filter hook input priority filter; policy accept;\n\
         \t\tmeta l4proto udp counter drop\n\
         \t}}\n\
         }}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_udp_drops_it_both_ways() {
        let s = block_udp();
        assert_eq!(s.matches("meta l4proto udp counter drop").count(), 2, "{s}");
        assert!(s.contains("hook output") && s.contains("hook input"), "{s}");
    }

    #[test]
    fn a_black_hole_drops_only_the_mtu_errors() {
        let s = silence_pmtu_errors();
        assert!(s.contains("hook output"), "{s}");
        assert!(s.contains("icmp code frag-needed drop"), "{s}");
        assert!(s.contains("icmpv6 type packet-too-big drop"), "{s}");
        assert!(s.contains("policy accept"), "{s}");
    }

    const IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 21);

    #[test]
    fn each_nat_kind_uses_its_documented_mechanism() {
        let pr = nat_ruleset(NatKind::PortRestricted, IP);
        assert!(pr.contains("oifname \"wan0\" masquerade\n"), "{pr}");
        assert!(!pr.contains("dnat"), "{pr}");

        let sym = nat_ruleset(NatKind::Symmetric, IP);
        assert!(sym.contains("masquerade fully-random"), "{sym}");
        assert!(!sym.contains("dnat"), "{sym}");

        let cone = nat_ruleset(NatKind::EndpointIndependent, IP);
        assert!(cone.contains("snat ip to 198.51.100.21"), "{cone}");
        assert!(cone.contains("update @cone"), "{cone}");
        assert!(cone.contains("dnat ip to udp dport map @cone"), "{cone}");

        for r in [pr, sym, cone] {
            assert!(
                r.contains("ct state new drop"),
                "router must stay stealthy: {r}"
            );
        }
    }

    #[test]
    fn a_rebinding_keeps_the_kind_and_moves_the_ports() {
        let pr = rebind_outbound(NatKind::PortRestricted, (20_000, 20_999));
        assert!(
            pr.starts_with("flush chain ip skylan_nat postrouting\n"),
            "{pr}"
        );
        assert!(
            pr.contains("{ tcp, udp } masquerade to :20000-20999\n"),
            "{pr}"
        );
        let sym = rebind_outbound(NatKind::Symmetric, (21_000, 21_999));
        assert!(
            sym.contains("masquerade to :21000-21999 fully-random\n"),
            "{sym}"
        );
    }

    #[test]
    fn port_rules_express_cut_loss_and_pass() {
        assert!(set_port("p3", true, 40).contains("port_p3 counter drop"));
        let loss = set_port("p3", false, 40);
        assert!(
            loss.contains("numgen random mod 100 < 40 counter drop"),
            "{loss}"
        );
        assert!(set_port("p3", false, 100).contains("port_p3 counter drop"));
        let pass = set_port("p3", false, 0);
        assert_eq!(pass.lines().count(), 1, "only the flush: {pass}");
        let add = add_port("p3");
        assert!(add.contains("iifname \"p3\" jump port_p3"));
        assert!(add.contains("oifname \"p3\" jump port_p3"));
    }
}
