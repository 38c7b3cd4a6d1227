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

use std::net::Ipv4Addr;

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
