//! What the rules can see in an Ethernet frame, parsed without allocating.
//!
//! The link layer (MACs, the outer 802.1Q tag, the ethertype after VLAN tags, the payload
//! length) is read up front with the shared [`EthernetFrame`] view: a few fixed offsets. The network and transport layers
//! (IP addresses, TOS, protocol, ports, ICMP type/code, TCP flags) are parsed on first
//! use with etherparse's lax IP slicer, which also walks IPv6 extension headers, so a rule
//! set that only looks at ethertypes never pays for IP parsing.
//!
//! Definitions the evaluator relies on:
//! - A frame shorter than 14 bytes has no link layer: every condition on frame contents is
//!   false for it.
//! - The *ethertype* is the one after any 802.1Q/802.1ad tags (up to 3); `vlan`,
//!   `vlanpcp` and `vlandei` read the outermost tag, and are 0 for untagged frames.
//! - The *frame size* is the Ethernet payload length (after the VLAN tags), as in
//!   ZeroTier.
//! - IP facts exist only when the ethertype is IPv4 (resp. IPv6) and the packet's version
//!   matches. The *protocol* of IPv6 is the header after the extension headers etherparse
//!   understands (hop-by-hop, routing, fragment, destination options, authentication).
//! - Ports exist for TCP, UDP, SCTP and UDP-Lite; ports, TCP flags and ICMP type/code
//!   exist only in the first fragment of a fragmented packet.

use std::net::IpAddr;

use etherparse::{Ipv6ExtensionSlice, LaxIpSlice};

use crate::wire::EthernetFrame;

/// Link-layer facts: the one Ethernet view the switch uses too.
pub(crate) type L2<'a> = EthernetFrame<'a>;

/// Network- and transport-layer facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct L3 {
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    /// IPv4 TOS byte or IPv6 traffic class.
    pub tos: Option<u8>,
    pub protocol: Option<u8>,
    pub ports: Option<(u16, u16)>,
    pub icmp: Option<(u8, u8)>,
    /// TCP flag bits as `chr` numbers them (bits 0-11), 0 if not TCP.
    pub tcp_flags: u16,
}

impl L3 {
    const NONE: L3 = L3 {
        src: None,
        dst: None,
        tos: None,
        protocol: None,
        ports: None,
        icmp: None,
        tcp_flags: 0,
    };
}

/// A frame's facts, with the upper layers parsed on demand.
pub(crate) struct Facts<'a> {
    l2: Option<L2<'a>>,
    l3: Option<L3>,
}

impl<'a> Facts<'a> {
    pub fn new(frame: &'a [u8]) -> Self {
        Self::from_l2(parse_l2(frame))
    }

    /// Facts of a frame whose link layer the caller already parsed.
    pub fn from_l2(l2: Option<L2<'a>>) -> Self {
        Self { l2, l3: None }
    }

    pub fn l2(&self) -> Option<&L2<'a>> {
        self.l2.as_ref()
    }

    pub fn l3(&mut self) -> &L3 {
        if self.l3.is_none() {
            self.l3 = Some(self.l2.as_ref().map(parse_l3).unwrap_or(L3::NONE));
        }
        // Invariant: set just above.
        self.l3.as_ref().unwrap_or(&L3::NONE)
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The link layer of `frame` (see [`EthernetFrame`]).
pub(crate) fn parse_l2(frame: &[u8]) -> Option<L2<'_>> {
    EthernetFrame::parse(frame)
}

pub(crate) fn parse_l3(l2: &L2<'_>) -> L3 {
    let want_v4 = match l2.ether_type {
        0x0800 => true,
        0x86dd => false,
        _ => return L3::NONE,
    };
    let Ok((ip, _stop)) = LaxIpSlice::from_slice(l2.payload) else {
        return L3::NONE;
    };
    let raw = l2.payload;
    let (tos, first_fragment) = match &ip {
        LaxIpSlice::Ipv4(v4) if want_v4 => {
            let offset = v4.header().fragments_offset().value();
            (raw[1], offset == 0)
        }
        LaxIpSlice::Ipv6(v6) if !want_v4 => {
            let tc = ((raw[0] & 0x0f) << 4) | (raw[1] >> 4);
            let first = v6.extensions().clone().into_iter().all(|e| match e {
                Ipv6ExtensionSlice::Fragment(f) => f.fragment_offset().value() == 0,
                _ => true,
            });
            (tc, first)
        }
        _ => return L3::NONE,
    };
    let payload = ip.payload();
    let protocol = payload.ip_number.0;
    let body = payload.payload;
    let mut l3 = L3 {
        src: Some(ip.source_addr()),
        dst: Some(ip.destination_addr()),
        tos: Some(tos),
        protocol: Some(protocol),
        ..L3::NONE
    };
    if first_fragment {
        if matches!(protocol, 6 | 17 | 132 | 136) && body.len() >= 4 {
            l3.ports = Some((be16(body, 0), be16(body, 2)));
        }
        if protocol == 6 && body.len() >= 14 {
            l3.tcp_flags = u16::from(body[13]) | (u16::from(body[12] & 0x0f) << 8);
        }
        let icmp_proto = if want_v4 { 1 } else { 58 };
        if protocol == icmp_proto && body.len() >= 2 {
            l3.icmp = Some((body[0], body[1]));
        }
    }
    l3
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    pub(crate) const SRC_MAC: [u8; 6] = [0x32, 0, 0, 0, 0, 1];
    pub(crate) const DST_MAC: [u8; 6] = [0x32, 0, 0, 0, 0, 2];

    pub(crate) fn tcp_v4(sport: u16, dport: u16, syn: bool, ack: bool) -> Vec<u8> {
        let mut b = PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .ipv4([198, 18, 0, 2], [198, 18, 0, 3], 64)
            .tcp(sport, dport, 1, 1024);
        if syn {
            b = b.syn();
        }
        if ack {
            b = b.ack(5);
        }
        let mut out = Vec::new();
        // Invariant: writing to a Vec cannot fail.
        b.write(&mut out, &[1, 2, 3]).unwrap();
        out
    }

    #[test]
    fn ipv4_tcp_facts() {
        let f = tcp_v4(40000, 22, true, false);
        let mut facts = Facts::new(&f);
        let l2 = *facts.l2().unwrap();
        assert_eq!(l2.ether_type, 0x0800);
        assert_eq!(l2.src, SRC_MAC);
        assert_eq!(l2.payload.len(), 20 + 20 + 3);
        let l3 = *facts.l3();
        assert_eq!(l3.src, Some("198.18.0.2".parse().unwrap()));
        assert_eq!(l3.protocol, Some(6));
        assert_eq!(l3.ports, Some((40000, 22)));
        assert_eq!(l3.tcp_flags, 0b10);
        assert_eq!(l3.icmp, None);
    }

    #[test]
    fn vlan_tag_is_read_and_skipped() {
        let mut b = Vec::new();
        PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .single_vlan(etherparse::VlanId::try_new(42).unwrap())
            .ipv6([0xfd; 16], [0xfe; 16], 9)
            .udp(53, 5353)
            .write(&mut b, &[0; 4])
            .unwrap();
        // Set PCP 5 and DEI in the tag.
        b[14] |= (5 << 5) | (1 << 4);
        let mut facts = Facts::new(&b);
        let l2 = *facts.l2().unwrap();
        assert_eq!((l2.vlan_id, l2.vlan_pcp, l2.vlan_dei), (42, 5, 1));
        assert_eq!(l2.ether_type, 0x86dd);
        assert_eq!(facts.l3().ports, Some((53, 5353)));
        assert_eq!(facts.l3().protocol, Some(17));
    }

    #[test]
    fn icmp_and_non_first_fragments() {
        let mut b = Vec::new();
        PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .ipv4([198, 18, 0, 2], [198, 18, 0, 3], 64)
            .icmpv4_echo_request(1, 2)
            .write(&mut b, &[0; 8])
            .unwrap();
        let mut facts = Facts::new(&b);
        assert_eq!(facts.l3().icmp, Some((8, 0)));
        assert_eq!(facts.l3().ports, None);

        // A later fragment of a TCP packet: no ports, no flags.
        let mut f = tcp_v4(1, 2, true, false);
        f[14 + 6] = 0x00;
        f[14 + 7] = 0x10; // fragment offset 16 (x8 bytes)
        let mut facts = Facts::new(&f);
        assert_eq!(facts.l3().protocol, Some(6));
        assert_eq!(facts.l3().ports, None);
        assert_eq!(facts.l3().tcp_flags, 0);
    }

    #[test]
    fn short_and_mismatched_frames_have_no_facts() {
        assert!(Facts::new(&[0u8; 13]).l2().is_none());
        let mut f = tcp_v4(1, 2, false, false);
        f[12] = 0x86; // claims IPv6, carries IPv4
        f[13] = 0xdd;
        let mut facts = Facts::new(&f);
        assert_eq!(*facts.l3(), L3::NONE);
        let mut arp = f.clone();
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert_eq!(*Facts::new(&arp).l3(), L3::NONE);
    }
}
