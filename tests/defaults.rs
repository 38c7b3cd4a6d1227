//! Defaults that are arithmetic on the wire format, checked against the real encoder.

use skylan::controller::model::DEFAULT_MTU;
use skylan::node::DEFAULT_PHYS_MTU;
use skylan::types::NodeAddress;
use skylan::wire::{self, DATA_PREFIX_LEN, ETHERNET_HEADER_LEN, FRAME_HEADER_LEN, Header, TAG_LEN};

/// The datagrams a full-size frame of a network with `mtu` costs at the default UDP
/// payload size.
fn datagrams_per_full_frame(mtu: usize) -> usize {
    let a: NodeAddress = "0a0b0c0d0e".parse().unwrap();
    let b: NodeAddress = "0102030405".parse().unwrap();
    let mut packet = Vec::new();
    wire::emit_data_prefix(b, a, 7, 1, &mut packet);
    assert_eq!(packet.len(), DATA_PREFIX_LEN);
    packet.resize(
        DATA_PREFIX_LEN + FRAME_HEADER_LEN + ETHERNET_HEADER_LEN + mtu + TAG_LEN,
        0,
    );
    assert!(Header::parse(&packet).is_ok());
    let fragments = wire::fragment(&packet, DEFAULT_PHYS_MTU, 1).unwrap();
    assert!(fragments.iter().all(|f| f.len() <= DEFAULT_PHYS_MTU));
    fragments.len()
}

#[test]
fn the_default_network_mtu_is_the_largest_that_costs_two_datagrams_per_full_frame() {
    let mtu = DEFAULT_MTU as usize;
    assert_eq!(datagrams_per_full_frame(mtu), 2);
    assert_eq!(datagrams_per_full_frame(mtu + 1), 3);
    // ZeroTier's 2,800 would cost a third datagram for every full frame.
    assert_eq!(datagrams_per_full_frame(2800), 3);
}
