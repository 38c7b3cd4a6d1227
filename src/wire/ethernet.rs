//! The Ethernet view: one parse of a frame's link layer, shared by the node's switch and
//! the flow rules (which used to read the header each in their own way).
//!
//! ```text
//! 0                   6                  12        14
//! +-------------------+-------------------+---------+----------------------------
//! | destination MAC   | source MAC        | type    | payload ...
//! +-------------------+-------------------+---------+----------------------------
//!                     with VLAN tags:     | 0x8100  | TCI (2) | type | payload ...
//! ```
//!
//! Definitions: a frame shorter than [`ETHERNET_HEADER_LEN`] has no view. Up to
//! [`MAX_VLAN_TAGS`] 802.1Q / 802.1ad / pre-standard QinQ tags are skipped;
//! [`EthernetFrame::ether_type`] is the type after them and the VLAN fields read the
//! outermost tag (0 when untagged). A tag type with fewer than 4 bytes after it is not
//! a tag: it stays the ethertype. The view borrows the frame and never panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::types::Mac;

/// Destination MAC, source MAC and ethertype: an untagged Ethernet header.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// 802.1Q, 802.1ad and the pre-standard QinQ tag.
pub const VLAN_ETHERTYPES: [u16; 3] = [0x8100, 0x88a8, 0x9100];
/// At most this many VLAN tags are skipped.
pub const MAX_VLAN_TAGS: u8 = 3;
/// Ethertype of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// Ethertype of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// Ethertype of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// ARP for IPv4 over Ethernet: htype, ptype, hlen, plen, oper, sha, spa, tha, tpa.
const ARP_IPV4_LEN: usize = 28;
/// Offset of the target protocol address inside the ARP body.
const ARP_TARGET_IP_OFFSET: usize = 24;

/// The link layer of one frame (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetFrame<'a> {
    /// Destination MAC.
    pub dst: [u8; 6],
    /// Source MAC.
    pub src: [u8; 6],
    /// VLAN ID of the outermost tag (0 if untagged).
    pub vlan_id: u16,
    /// Priority of the outermost tag.
    pub vlan_pcp: u8,
    /// Drop-eligible bit of the outermost tag.
    pub vlan_dei: u8,
    /// How many VLAN tags were skipped.
    pub tags: u8,
    /// The ethertype after the VLAN tags.
    pub ether_type: u16,
    /// The Ethernet payload after the VLAN tags.
    pub payload: &'a [u8],
}

impl<'a> EthernetFrame<'a> {
    /// The view of `frame`, or `None` when it is shorter than an Ethernet header.
    pub fn parse(frame: &'a [u8]) -> Option<Self> {
        if frame.len() < ETHERNET_HEADER_LEN {
            return None;
        }
        let mut dst = [0u8; 6];
        let mut src = [0u8; 6];
        dst.copy_from_slice(&frame[0..6]);
        src.copy_from_slice(&frame[6..12]);
        let mut ether_type = be16(frame, 12);
        let mut payload = &frame[ETHERNET_HEADER_LEN..];
        let (mut vlan_id, mut vlan_pcp, mut vlan_dei) = (0, 0, 0);
        let mut tags = 0;
        while VLAN_ETHERTYPES.contains(&ether_type) && payload.len() >= 4 && tags < MAX_VLAN_TAGS {
            let tci = be16(payload, 0);
            if tags == 0 {
                vlan_id = tci & 0x0fff;
                vlan_pcp = (tci >> 13) as u8;
                vlan_dei = ((tci >> 12) & 1) as u8;
            }
            ether_type = be16(payload, 2);
            payload = &payload[4..];
            tags += 1;
        }
        Some(EthernetFrame {
            dst,
            src,
            vlan_id,
            vlan_pcp,
            vlan_dei,
            tags,
            ether_type,
            payload,
        })
    }

    /// The destination MAC.
    pub fn dst_mac(&self) -> Mac {
        Mac(self.dst)
    }

    /// The source MAC.
    pub fn src_mac(&self) -> Mac {
        Mac(self.src)
    }

    /// The ethertype if the frame carries no VLAN tag (and its type field is not a tag
    /// type), else `None`.
    pub fn untagged_ethertype(&self) -> Option<u16> {
        (self.tags == 0 && !VLAN_ETHERTYPES.contains(&self.ether_type)).then_some(self.ether_type)
    }

    /// The target address of an untagged ARP request for IPv4 over Ethernet.
    pub fn arp_request_target(&self) -> Option<Ipv4Addr> {
        if self.untagged_ethertype() != Some(ETHERTYPE_ARP) {
            return None;
        }
        let arp = self.payload.get(..ARP_IPV4_LEN)?;
        let header_ok = arp[0..2] == [0, 1] // Ethernet
            && arp[2..4] == [0x08, 0x00] // IPv4
            && arp[4] == 6
            && arp[5] == 4
            && arp[6..8] == [0, 1]; // request
        if !header_ok {
            return None;
        }
        let t = &arp[ARP_TARGET_IP_OFFSET..ARP_TARGET_IP_OFFSET + 4];
        Some(Ipv4Addr::new(t[0], t[1], t[2], t[3]))
    }
}

/// The IP address a frame claims to come from, for `chr ipauth` (ZeroTier's reading).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceClaim {
    /// The frame claims this source address: an IPv4 or IPv6 source, an ARP sender
    /// address, or the target of an IPv6 neighbour advertisement.
    Ip(IpAddr),
    /// An IPv6 neighbour solicitation: its source is unspecified or link-local and
    /// cannot be checked, so it counts as authenticated (without this, IPv6 could not
    /// work under `drop not chr ipauth`).
    Unverifiable,
    /// No IP source (another ethertype, a VLAN-tagged or truncated frame).
    None,
}

impl EthernetFrame<'_> {
    /// The IP source the frame claims (see [`SourceClaim`]); only untagged frames.
    pub fn source_claim(&self) -> SourceClaim {
        let p = self.payload;
        match self.untagged_ethertype() {
            Some(ETHERTYPE_IPV4) if p.len() >= 20 && p[0] >> 4 == 4 => {
                SourceClaim::Ip(IpAddr::V4(Ipv4Addr::new(p[12], p[13], p[14], p[15])))
            }
            Some(ETHERTYPE_IPV6) if p.len() >= 40 && p[0] >> 4 == 6 => {
                let icmp = p[6] == IPPROTO_ICMPV6 && p.len() >= 40 + 8 + 16;
                match p.get(40) {
                    Some(&ICMPV6_NEIGHBOR_SOLICITATION) if icmp => SourceClaim::Unverifiable,
                    Some(&ICMPV6_NEIGHBOR_ADVERTISEMENT) if icmp => {
                        SourceClaim::Ip(IpAddr::V6(ipv6_at(p, 48)))
                    }
                    _ => SourceClaim::Ip(IpAddr::V6(ipv6_at(p, 8))),
                }
            }
            Some(ETHERTYPE_ARP) if p.len() >= ARP_IPV4_LEN && p[2..4] == [0x08, 0x00] => {
                let s = &p[ARP_SENDER_IP_OFFSET..ARP_SENDER_IP_OFFSET + 4];
                SourceClaim::Ip(IpAddr::V4(Ipv4Addr::new(s[0], s[1], s[2], s[3])))
            }
            _ => SourceClaim::None,
        }
    }
}

/// Offset of the sender protocol address inside the ARP body.
const ARP_SENDER_IP_OFFSET: usize = 14;
const IPPROTO_ICMPV6: u8 = 58;
const ICMPV6_NEIGHBOR_SOLICITATION: u8 = 135;
const ICMPV6_NEIGHBOR_ADVERTISEMENT: u8 = 136;

fn ipv6_at(b: &[u8], at: usize) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(octets)
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ether_type: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&ether_type.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn the_claimed_source_is_read_as_zerotier_reads_it() {
        let claim = |et, p: &[u8]| EthernetFrame::parse(&frame(et, p)).unwrap().source_claim();
        let mut v4 = vec![0x45; 20];
        v4[12..16].copy_from_slice(&[198, 18, 0, 7]);
        assert_eq!(
            claim(ETHERTYPE_IPV4, &v4),
            SourceClaim::Ip("198.18.0.7".parse().unwrap())
        );
        let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 2];
        arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 198, 18, 0, 9]);
        arp.extend_from_slice(&[0; 10]);
        assert_eq!(
            claim(ETHERTYPE_ARP, &arp),
            SourceClaim::Ip("198.18.0.9".parse().unwrap())
        );
        let src: Ipv6Addr = "fd00::5".parse().unwrap();
        let target: Ipv6Addr = "fd00::6".parse().unwrap();
        let mut v6 = vec![0x60, 0, 0, 0, 0, 32, IPPROTO_ICMPV6, 255];
        v6.extend_from_slice(&src.octets());
        v6.extend_from_slice(&[0; 16]);
        let icmp = |kind: u8| {
            let mut p = v6.clone();
            p.extend_from_slice(&[kind, 0, 0, 0, 0, 0, 0, 0]);
            p.extend_from_slice(&target.octets());
            p
        };
        assert_eq!(
            claim(ETHERTYPE_IPV6, &icmp(128)),
            SourceClaim::Ip(src.into())
        );
        assert_eq!(
            claim(ETHERTYPE_IPV6, &icmp(ICMPV6_NEIGHBOR_ADVERTISEMENT)),
            SourceClaim::Ip(target.into()),
            "an advertisement vouches for its target"
        );
        assert_eq!(
            claim(ETHERTYPE_IPV6, &icmp(ICMPV6_NEIGHBOR_SOLICITATION)),
            SourceClaim::Unverifiable
        );
        assert_eq!(claim(0x88b5, &[0; 40]), SourceClaim::None);
        assert_eq!(
            claim(ETHERTYPE_IPV4, &[0x45; 10]),
            SourceClaim::None,
            "truncated"
        );
    }

    #[test]
    fn short_frames_have_no_view() {
        assert!(EthernetFrame::parse(&[0; 13]).is_none());
        let eth = EthernetFrame::parse(&[0; 14]).expect("a bare header");
        assert!(eth.payload.is_empty());
    }

    #[test]
    fn tags_are_skipped_and_the_outer_one_read() {
        let mut inner = vec![0xa0, 0x2a, 0x81, 0x00, 0x00, 0x07, 0x86, 0xdd];
        inner.extend_from_slice(&[1, 2, 3]);
        let f = frame(0x88a8, &inner);
        let eth = EthernetFrame::parse(&f).unwrap();
        assert_eq!((eth.vlan_id, eth.vlan_pcp, eth.vlan_dei), (42, 5, 0));
        assert_eq!((eth.tags, eth.ether_type), (2, ETHERTYPE_IPV6));
        assert_eq!(eth.payload, &[1, 2, 3]);
        assert_eq!(eth.untagged_ethertype(), None);
    }

    #[test]
    fn a_truncated_tag_is_no_tag_and_not_untagged() {
        let f = frame(0x8100, &[0, 1]);
        let eth = EthernetFrame::parse(&f).unwrap();
        assert_eq!((eth.tags, eth.ether_type), (0, 0x8100));
        assert_eq!(eth.untagged_ethertype(), None);
    }

    #[test]
    fn arp_requests_name_their_target() {
        let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
        arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 10, 0, 0, 1]);
        arp.extend_from_slice(&[0; 6]);
        arp.extend_from_slice(&[10, 0, 0, 2]);
        let f = frame(ETHERTYPE_ARP, &arp);
        let eth = EthernetFrame::parse(&f).unwrap();
        assert_eq!(eth.arp_request_target(), Some(Ipv4Addr::new(10, 0, 0, 2)));
        arp[7] = 2; // a reply
        let f = frame(ETHERTYPE_ARP, &arp);
        assert_eq!(EthernetFrame::parse(&f).unwrap().arp_request_target(), None);
    }
}
