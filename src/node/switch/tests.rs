//! Tests of the switch rules, one scenario per rule.
use super::*;
use crate::wire::ethernet::{ETHERNET_HEADER_LEN, ETHERTYPE_ARP};
use std::net::Ipv6Addr;

fn node(hex: &str) -> NodeAddress {
    hex.parse().expect("test address")
}

fn net() -> NetworkId {
    "8056c2e21c000001".parse().expect("test network")
}

fn me() -> NodeAddress {
    node("1111111111")
}
fn b() -> NodeAddress {
    node("2222222222")
}
fn c() -> NodeAddress {
    node("3333333333")
}
fn d() -> NodeAddress {
    node("4444444444")
}
fn outsider() -> NodeAddress {
    node("5555555555")
}

fn mac(n: NodeAddress) -> Mac {
    Mac::for_member(n, net())
}

/// A host behind a bridge (not a member MAC of this network).
const HOST: Mac = Mac([0x00, 0x16, 0x3e, 0x12, 0x34, 0x01]);
const HOST2: Mac = Mac([0x00, 0x16, 0x3e, 0x12, 0x34, 0x02]);

fn member(address: NodeAddress, ips: &[&str]) -> MemberInfo {
    MemberInfo {
        address,
        ips: ips.iter().map(|s| s.parse().expect("test ip")).collect(),
    }
}

fn settings() -> SwitchSettings {
    SwitchSettings {
        enable_broadcast: true,
        multicast_limit: 32,
        members: vec![
            member(me(), &["198.18.0.1", "fd00:5a::11:1111"]),
            member(b(), &["198.18.0.2", "fd00:5a::22:2222"]),
            member(c(), &["198.18.0.3"]),
            member(d(), &[]),
        ],
        bridges: vec![],
        admission: Admission::Listed,
    }
}

fn switch() -> NetworkSwitch {
    NetworkSwitch::new(net(), me(), settings())
}

fn frame(dst: Mac, src: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn ipv4_frame(dst: Mac, src: Mac) -> Vec<u8> {
    frame(dst, src, 0x0800, &[0x45; 40])
}

fn vlan_frame(dst: Mac, src: Mac, vid: u16, inner: u16, payload: &[u8]) -> Vec<u8> {
    let mut tagged = vid.to_be_bytes().to_vec();
    tagged.extend_from_slice(&inner.to_be_bytes());
    tagged.extend_from_slice(payload);
    frame(dst, src, 0x8100, &tagged)
}

fn arp_body(oper: u16, sender: Mac, sender_ip: [u8; 4], target_ip: [u8; 4]) -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0x00, 6, 4];
    a.extend_from_slice(&oper.to_be_bytes());
    a.extend_from_slice(&sender.0);
    a.extend_from_slice(&sender_ip);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&target_ip);
    a
}

fn arp_request(src: Mac, target_ip: [u8; 4]) -> Vec<u8> {
    frame(
        Mac::BROADCAST,
        src,
        ETHERTYPE_ARP,
        &arp_body(1, src, [198, 18, 0, 1], target_ip),
    )
}

/// An IPv6 neighbour solicitation for `target` (only the parts the switch reads are
/// meaningful; the rest is a plausible packet).
fn neighbour_solicitation(src: Mac, target: Ipv6Addr) -> Vec<u8> {
    let t = target.octets();
    let dst = Mac([0x33, 0x33, 0xff, t[13], t[14], t[15]]);
    let mut ip = vec![0x60, 0, 0, 0, 0, 32, 58, 255];
    ip.extend_from_slice(&"fd00:5a::11:1111".parse::<Ipv6Addr>().unwrap().octets());
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    );
    ip.extend_from_slice(&group.octets());
    ip.extend_from_slice(&[135, 0, 0, 0, 0, 0, 0, 0]);
    ip.extend_from_slice(&t);
    frame(dst, src, ETHERTYPE_IPV6, &ip)
}

fn multicast(list: &[NodeAddress]) -> Outbound {
    Outbound::Multicast(list.to_vec())
}

// ---- outbound ----

#[test]
fn outbound_unicast_to_a_member_mac_goes_to_that_member() {
    let mut sw = switch();
    assert_eq!(
        sw.outbound(&ipv4_frame(mac(b()), mac(me()))),
        Outbound::Unicast(b())
    );
    assert_eq!(
        sw.outbound(&ipv4_frame(mac(d()), mac(me()))),
        Outbound::Unicast(d())
    );
    assert_eq!(sw.stats().unicast_out, 2);
    assert_eq!(sw.stats().dropped_total(), 0);
}

#[test]
fn outbound_frames_shorter_than_a_header_are_dropped_not_panicking() {
    let mut sw = switch();
    let full = ipv4_frame(mac(b()), mac(me()));
    for len in 0..ETHERNET_HEADER_LEN {
        assert_eq!(
            sw.outbound(&full[..len]),
            Outbound::Drop(DropReason::TooShort),
            "{len} bytes"
        );
    }
    // Exactly a header is a (payload-less) frame and is switched.
    assert_eq!(
        sw.outbound(&full[..ETHERNET_HEADER_LEN]),
        Outbound::Unicast(b())
    );
    assert_eq!(
        sw.stats().dropped(DropReason::TooShort),
        ETHERNET_HEADER_LEN as u64
    );
}

#[test]
fn outbound_source_must_be_our_member_mac() {
    let mut sw = switch();
    for src in [
        HOST,
        mac(b()),
        Mac::for_member(me(), "8056c2e21c000105".parse().unwrap()),
    ] {
        assert_eq!(
            sw.outbound(&ipv4_frame(mac(b()), src)),
            Outbound::Drop(DropReason::SourceNotOurs),
            "from {src}"
        );
    }
    let group_src = Mac([0x03, 0, 0, 0, 0, 1]);
    assert_eq!(
        sw.outbound(&ipv4_frame(mac(b()), group_src)),
        Outbound::Drop(DropReason::MulticastSource)
    );
    assert_eq!(sw.stats().dropped(DropReason::SourceNotOurs), 3);
}

#[test]
fn outbound_unicast_to_non_members_unknown_macs_and_ourselves_is_dropped() {
    let mut sw = switch();
    assert_eq!(
        sw.outbound(&ipv4_frame(mac(outsider()), mac(me()))),
        Outbound::Drop(DropReason::NotAMember)
    );
    assert_eq!(
        sw.outbound(&ipv4_frame(HOST, mac(me()))),
        Outbound::Drop(DropReason::UnknownDestination)
    );
    assert_eq!(
        sw.outbound(&ipv4_frame(mac(me()), mac(me()))),
        Outbound::Drop(DropReason::Looped)
    );
}

#[test]
fn outbound_arp_request_for_a_member_ip_goes_to_its_owner_only() {
    let mut sw = switch();
    assert_eq!(
        sw.outbound(&arp_request(mac(me()), [198, 18, 0, 3])),
        Outbound::Unicast(c())
    );
    // Also with broadcast disabled and a multicast limit of 0.
    sw.update(SwitchSettings {
        enable_broadcast: false,
        multicast_limit: 0,
        ..settings()
    });
    assert_eq!(
        sw.outbound(&arp_request(mac(me()), [198, 18, 0, 2])),
        Outbound::Unicast(b())
    );
}

#[test]
fn outbound_arp_request_for_an_address_owned_twice_goes_to_both_owners() {
    let mut s = settings();
    s.members[3].ips.push("198.18.0.3".parse().unwrap());
    let mut sw = NetworkSwitch::new(net(), me(), s);
    assert_eq!(
        sw.outbound(&arp_request(mac(me()), [198, 18, 0, 3])),
        multicast(&[c(), d()])
    );
}

#[test]
fn outbound_arp_for_our_own_address_goes_nowhere() {
    let mut sw = switch();
    assert_eq!(
        sw.outbound(&arp_request(mac(me()), [198, 18, 0, 1])),
        Outbound::Drop(DropReason::NoRecipients)
    );
}

#[test]
fn outbound_arp_for_an_unmanaged_address_is_broadcast_or_goes_to_bridges() {
    let mut sw = switch();
    let arp = arp_request(mac(me()), [198, 18, 9, 9]);
    assert_eq!(sw.outbound(&arp), multicast(&[b(), c(), d()]));

    let off = SwitchSettings {
        enable_broadcast: false,
        ..settings()
    };
    sw.update(off.clone());
    assert_eq!(
        sw.outbound(&arp),
        Outbound::Drop(DropReason::BroadcastDisabled)
    );
    sw.update(SwitchSettings {
        bridges: vec![c()],
        ..off
    });
    assert_eq!(sw.outbound(&arp), multicast(&[c()]));
}

#[test]
fn outbound_arp_replies_and_malformed_arp_are_ordinary_broadcasts() {
    let mut sw = switch();
    let everyone = multicast(&[b(), c(), d()]);
    let reply = frame(
        Mac::BROADCAST,
        mac(me()),
        ETHERTYPE_ARP,
        &arp_body(2, mac(me()), [198, 18, 0, 1], [198, 18, 0, 3]),
    );
    assert_eq!(sw.outbound(&reply), everyone);
    // Truncated ARP body: too short to hold a target address.
    let short = arp_request(mac(me()), [198, 18, 0, 3]);
    assert_eq!(sw.outbound(&short[..40]), everyone);
    // ARP for another protocol (ptype 0x86dd).
    let mut odd = arp_request(mac(me()), [198, 18, 0, 3]);
    odd[16..18].copy_from_slice(&[0x86, 0xdd]);
    assert_eq!(sw.outbound(&odd), everyone);
}

#[test]
fn outbound_neighbour_solicitation_goes_to_the_matching_member() {
    let mut sw = switch();
    let target: Ipv6Addr = "fd00:5a::22:2222".parse().unwrap();
    let ns = neighbour_solicitation(mac(me()), target);
    assert_eq!(&ns[0..6], &[0x33, 0x33, 0xff, 0x22, 0x22, 0x22]);
    assert_eq!(sw.outbound(&ns), Outbound::Unicast(b()));
    // Even with group frames disabled.
    sw.update(SwitchSettings {
        enable_broadcast: false,
        multicast_limit: 0,
        ..settings()
    });
    assert_eq!(sw.outbound(&ns), Outbound::Unicast(b()));
}

#[test]
fn outbound_neighbour_solicitation_for_unmanaged_addresses_uses_the_group_rule() {
    let mut sw = switch();
    let link_local: Ipv6Addr = "fe80::1234:5678".parse().unwrap();
    let ns = neighbour_solicitation(mac(me()), link_local);
    assert_eq!(sw.outbound(&ns), multicast(&[b(), c(), d()]));
    sw.update(SwitchSettings {
        multicast_limit: 0,
        ..settings()
    });
    assert_eq!(
        sw.outbound(&ns),
        Outbound::Drop(DropReason::MulticastDisabled)
    );
}

#[test]
fn outbound_duplicate_address_detection_of_our_own_address_goes_nowhere() {
    let mut sw = switch();
    let ours: Ipv6Addr = "fd00:5a::11:1111".parse().unwrap();
    assert_eq!(
        sw.outbound(&neighbour_solicitation(mac(me()), ours)),
        Outbound::Drop(DropReason::NoRecipients)
    );
}

#[test]
fn outbound_group_frames_go_to_everyone_else_truncated_to_the_limit() {
    let mut sw = switch();
    let mdns = Mac([0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb]);
    assert_eq!(
        sw.outbound(&ipv4_frame(mdns, mac(me()))),
        multicast(&[b(), c(), d()])
    );
    sw.update(SwitchSettings {
        multicast_limit: 2,
        bridges: vec![d()],
        ..settings()
    });
    // Bridges first, then ascending addresses.
    assert_eq!(
        sw.outbound(&ipv4_frame(Mac::BROADCAST, mac(me()))),
        multicast(&[d(), b()])
    );
    assert_eq!(sw.stats().multicast_out, 2);
}

#[test]
fn outbound_broadcast_is_dropped_when_disabled_but_multicast_is_not() {
    let mut sw = NetworkSwitch::new(
        net(),
        me(),
        SwitchSettings {
            enable_broadcast: false,
            ..settings()
        },
    );
    assert_eq!(
        sw.outbound(&ipv4_frame(Mac::BROADCAST, mac(me()))),
        Outbound::Drop(DropReason::BroadcastDisabled)
    );
    let group = Mac([0x01, 0x00, 0x5e, 0x00, 0x00, 0x01]);
    assert_eq!(
        sw.outbound(&ipv4_frame(group, mac(me()))),
        multicast(&[b(), c(), d()])
    );
    assert_eq!(sw.stats().dropped(DropReason::BroadcastDisabled), 1);
}

#[test]
fn outbound_group_frame_when_alone_has_no_recipients() {
    let mut sw = NetworkSwitch::new(
        net(),
        me(),
        SwitchSettings {
            members: vec![member(me(), &["198.18.0.1"])],
            ..settings()
        },
    );
    assert_eq!(
        sw.outbound(&ipv4_frame(Mac::BROADCAST, mac(me()))),
        Outbound::Drop(DropReason::NoRecipients)
    );
}

#[test]
fn outbound_vlan_tagged_frames_are_switched_by_mac_and_tagged_arp_is_broadcast() {
    let mut sw = switch();
    let tagged = vlan_frame(mac(c()), mac(me()), 100, 0x0800, &[0x45; 40]);
    assert_eq!(sw.outbound(&tagged), Outbound::Unicast(c()));
    let tagged_arp = vlan_frame(
        Mac::BROADCAST,
        mac(me()),
        100,
        ETHERTYPE_ARP,
        &arp_body(1, mac(me()), [198, 18, 0, 1], [198, 18, 0, 3]),
    );
    assert_eq!(sw.outbound(&tagged_arp), multicast(&[b(), c(), d()]));
    // A tag cut off right after the header is still a switchable frame.
    assert_eq!(sw.outbound(&tagged[..15]), Outbound::Unicast(c()));
}

#[test]
fn outbound_as_a_bridge_allows_foreign_sources_but_not_member_macs() {
    let mut sw = NetworkSwitch::new(
        net(),
        me(),
        SwitchSettings {
            bridges: vec![me()],
            ..settings()
        },
    );
    assert_eq!(
        sw.outbound(&ipv4_frame(mac(b()), HOST)),
        Outbound::Unicast(b())
    );
    assert_eq!(
        sw.outbound(&ipv4_frame(mac(b()), mac(c()))),
        Outbound::Drop(DropReason::SourceNotOurs)
    );
    assert_eq!(
        sw.outbound(&ipv4_frame(mac(b()), mac(me()))),
        Outbound::Unicast(b())
    );
}

// ---- inbound ----

#[test]
fn inbound_accepts_member_frames_to_us_broadcast_and_multicast() {
    let mut sw = switch();
    assert_eq!(sw.inbound(b(), &ipv4_frame(mac(me()), mac(b()))), Ok(()));
    assert_eq!(
        sw.inbound(b(), &ipv4_frame(Mac::BROADCAST, mac(b()))),
        Ok(())
    );
    let group = Mac([0x33, 0x33, 0, 0, 0, 1]);
    assert_eq!(sw.inbound(c(), &ipv4_frame(group, mac(c()))), Ok(()));
    assert_eq!(sw.stats().accepted_in, 3);
}

#[test]
fn inbound_frames_shorter_than_a_header_are_dropped() {
    let mut sw = switch();
    let full = ipv4_frame(mac(me()), mac(b()));
    for len in 0..ETHERNET_HEADER_LEN {
        assert_eq!(
            sw.inbound(b(), &full[..len]),
            Err(DropReason::TooShort),
            "{len}"
        );
    }
    assert_eq!(
        sw.stats().dropped(DropReason::TooShort),
        ETHERNET_HEADER_LEN as u64
    );
}

#[test]
fn inbound_from_non_members_and_from_ourselves_is_dropped() {
    let mut sw = switch();
    assert_eq!(
        sw.inbound(outsider(), &ipv4_frame(mac(me()), mac(outsider()))),
        Err(DropReason::NotAMember)
    );
    assert_eq!(
        sw.inbound(me(), &ipv4_frame(mac(me()), mac(me()))),
        Err(DropReason::Looped)
    );
    // A member removed by a config update is no longer accepted.
    let mut s = settings();
    s.members.retain(|m| m.address != c());
    sw.update(s);
    assert_eq!(
        sw.inbound(c(), &ipv4_frame(mac(me()), mac(c()))),
        Err(DropReason::NotAMember)
    );
    assert_eq!(sw.stats().dropped(DropReason::NotAMember), 2);
}

#[test]
fn inbound_source_must_be_the_senders_mac() {
    let mut sw = switch();
    assert_eq!(
        sw.inbound(b(), &ipv4_frame(mac(me()), mac(c()))),
        Err(DropReason::SourceMismatch)
    );
    assert_eq!(
        sw.inbound(b(), &ipv4_frame(mac(me()), HOST)),
        Err(DropReason::SourceMismatch)
    );
    assert_eq!(
        sw.inbound(b(), &ipv4_frame(mac(me()), Mac::BROADCAST)),
        Err(DropReason::MulticastSource)
    );
    assert_eq!(sw.learned_len(), 0, "non-bridges teach nothing");
}

#[test]
fn inbound_destination_must_be_us_or_a_group() {
    let mut sw = switch();
    assert_eq!(
        sw.inbound(b(), &ipv4_frame(mac(c()), mac(b()))),
        Err(DropReason::NotForUs)
    );
    assert_eq!(
        sw.inbound(b(), &ipv4_frame(HOST, mac(b()))),
        Err(DropReason::NotForUs)
    );
}

#[test]
fn inbound_broadcast_when_disabled_passes_only_arp_for_our_addresses() {
    let mut sw = NetworkSwitch::new(
        net(),
        me(),
        SwitchSettings {
            enable_broadcast: false,
            ..settings()
        },
    );
    assert_eq!(
        sw.inbound(b(), &ipv4_frame(Mac::BROADCAST, mac(b()))),
        Err(DropReason::BroadcastDisabled)
    );
    assert_eq!(
        sw.inbound(b(), &arp_request(mac(b()), [198, 18, 0, 1])),
        Ok(())
    );
    assert_eq!(
        sw.inbound(b(), &arp_request(mac(b()), [198, 18, 0, 3])),
        Err(DropReason::BroadcastDisabled)
    );
}

#[test]
fn inbound_neighbour_solicitation_is_accepted() {
    let mut sw = switch();
    let ours: Ipv6Addr = "fd00:5a::11:1111".parse().unwrap();
    assert_eq!(
        sw.inbound(b(), &neighbour_solicitation(mac(b()), ours)),
        Ok(())
    );
}

#[test]
fn inbound_vlan_tagged_frames_follow_the_same_rules() {
    let mut sw = switch();
    let to_us = vlan_frame(mac(me()), mac(b()), 7, 0x0800, &[0x45; 40]);
    assert_eq!(sw.inbound(b(), &to_us), Ok(()));
    let spoofed = vlan_frame(mac(me()), mac(c()), 7, 0x0800, &[0x45; 40]);
    assert_eq!(sw.inbound(b(), &spoofed), Err(DropReason::SourceMismatch));
    // Broadcast off: a tagged ARP is not the untagged ARP for our address.
    sw.update(SwitchSettings {
        enable_broadcast: false,
        ..settings()
    });
    let tagged_arp = vlan_frame(
        Mac::BROADCAST,
        mac(b()),
        7,
        ETHERTYPE_ARP,
        &arp_body(1, mac(b()), [198, 18, 0, 2], [198, 18, 0, 1]),
    );
    assert_eq!(
        sw.inbound(b(), &tagged_arp),
        Err(DropReason::BroadcastDisabled)
    );
}

// ---- bridges and learning ----

fn with_bridge(bridge: NodeAddress) -> NetworkSwitch {
    NetworkSwitch::new(
        net(),
        me(),
        SwitchSettings {
            bridges: vec![bridge],
            ..settings()
        },
    )
}

#[test]
fn a_bridge_may_send_from_other_macs_which_are_learned() {
    let mut sw = with_bridge(c());
    assert_eq!(sw.inbound(c(), &ipv4_frame(mac(me()), HOST)), Ok(()));
    assert_eq!(sw.learned(HOST), Some(c()));
    assert_eq!(sw.stats().learned, 1);
    // Seeing it again is not news.
    assert_eq!(sw.inbound(c(), &ipv4_frame(mac(me()), HOST)), Ok(()));
    assert_eq!(sw.stats().learned, 1);
    // Now unicast to that host goes to the bridge, without allocating.
    assert_eq!(
        sw.outbound(&ipv4_frame(HOST, mac(me()))),
        Outbound::Unicast(c())
    );
    // A host not learned yet may be behind any bridge: it goes to all of them.
    assert_eq!(
        sw.outbound(&ipv4_frame(HOST2, mac(me()))),
        Outbound::Multicast(vec![c()])
    );
}

#[test]
fn a_bridge_cannot_claim_another_members_mac() {
    let mut sw = with_bridge(c());
    assert_eq!(
        sw.inbound(c(), &ipv4_frame(mac(me()), mac(b()))),
        Err(DropReason::SourceMismatch)
    );
    assert_eq!(
        sw.inbound(c(), &ipv4_frame(mac(me()), mac(me()))),
        Err(DropReason::SourceMismatch)
    );
    assert_eq!(sw.learned_len(), 0);
}

#[test]
fn nothing_is_learned_from_a_frame_that_is_dropped() {
    let mut sw = with_bridge(c());
    // Bridged source, but addressed to another member's MAC.
    assert_eq!(
        sw.inbound(c(), &ipv4_frame(mac(b()), HOST)),
        Err(DropReason::NotForUs)
    );
    assert_eq!(sw.learned(HOST), None);
}

#[test]
fn a_mac_that_moves_between_bridges_follows_and_updates_forget_ex_bridges() {
    let mut sw = NetworkSwitch::new(
        net(),
        me(),
        SwitchSettings {
            bridges: vec![b(), c()],
            ..settings()
        },
    );
    sw.inbound(b(), &ipv4_frame(mac(me()), HOST)).unwrap();
    sw.inbound(b(), &ipv4_frame(mac(me()), HOST2)).unwrap();
    sw.inbound(c(), &ipv4_frame(mac(me()), HOST)).unwrap();
    assert_eq!(sw.learned(HOST), Some(c()));
    assert_eq!(sw.stats().learned, 3);
    sw.update(SwitchSettings {
        bridges: vec![c()],
        ..settings()
    });
    assert_eq!(sw.learned(HOST), Some(c()));
    assert_eq!(sw.learned(HOST2), None, "b is no longer a bridge");
    assert_eq!(sw.learned_len(), 1);
    assert_eq!(
        sw.inbound(b(), &ipv4_frame(mac(me()), HOST2)),
        Err(DropReason::SourceMismatch)
    );
}

#[test]
fn a_bridge_listed_without_membership_is_ignored() {
    let mut sw = with_bridge(outsider());
    assert_eq!(
        sw.inbound(outsider(), &ipv4_frame(mac(me()), HOST)),
        Err(DropReason::NotAMember)
    );
    assert_eq!(
        sw.outbound(&ipv4_frame(Mac::BROADCAST, mac(me()))),
        multicast(&[b(), c(), d()])
    );
}

#[test]
fn the_learned_table_is_bounded_and_forgets_the_oldest_first() {
    let mut sw = with_bridge(c());
    let host = |i: u32| {
        let b = i.to_be_bytes();
        Mac([0x02, 0xee, b[0], b[1], b[2], b[3]])
    };
    let total = LEARNED_MACS_MAX as u32 + 10;
    for i in 0..total {
        sw.inbound(c(), &ipv4_frame(mac(me()), host(i))).unwrap();
    }
    assert_eq!(sw.learned_len(), LEARNED_MACS_MAX);
    for i in 0..10 {
        assert_eq!(sw.learned(host(i)), None, "{i} should be forgotten");
    }
    assert_eq!(sw.learned(host(10)), Some(c()));
    assert_eq!(sw.learned(host(total - 1)), Some(c()));
    assert_eq!(sw.learned.order.len(), sw.learned.map.len());
}

#[test]
fn as_a_bridge_we_accept_frames_for_hosts_behind_us_and_all_broadcasts() {
    let mut sw = NetworkSwitch::new(
        net(),
        me(),
        SwitchSettings {
            bridges: vec![me()],
            enable_broadcast: false,
            ..settings()
        },
    );
    assert_eq!(sw.inbound(b(), &ipv4_frame(HOST, mac(b()))), Ok(()));
    assert_eq!(
        sw.inbound(b(), &ipv4_frame(Mac::BROADCAST, mac(b()))),
        Ok(())
    );
    // But a frame for another member is still not ours to take.
    assert_eq!(
        sw.inbound(b(), &ipv4_frame(mac(c()), mac(b()))),
        Err(DropReason::NotForUs)
    );
}

#[test]
fn drop_counters_are_per_reason_and_named() {
    let mut sw = switch();
    sw.outbound(&[0; 3]);
    sw.inbound(outsider(), &ipv4_frame(mac(me()), mac(outsider())))
        .unwrap_err();
    sw.inbound(b(), &ipv4_frame(mac(c()), mac(b())))
        .unwrap_err();
    let drops: HashMap<&str, u64> = sw.stats().drops().collect();
    assert_eq!(drops.len(), DropReason::ALL.len());
    assert_eq!(drops["too_short"], 1);
    assert_eq!(drops["not_a_member"], 1);
    assert_eq!(drops["not_for_us"], 1);
    assert_eq!(drops["looped"], 0);
    assert_eq!(sw.stats().dropped_total(), 3);
    for (i, r) in DropReason::ALL.iter().enumerate() {
        assert_eq!(r.index(), i);
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut sw = with_bridge(c());
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for len in 0..200 {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let _ = sw.outbound(&bytes);
        let _ = sw.inbound(c(), &bytes);
        let _ = sw.inbound(b(), &bytes);
    }
    let s = sw.stats();
    assert_eq!(
        s.unicast_out + s.multicast_out + s.accepted_in + s.dropped_total(),
        600
    );
}

// ---- networks with a controller: credentials and gathered groups ----

/// A switch on a private network (no list): `admitted` showed credentials.
fn private(admitted: &[(NodeAddress, &[&str])], bridges: Vec<NodeAddress>) -> NetworkSwitch {
    let mut sw = NetworkSwitch::new(
        net(),
        me(),
        SwitchSettings {
            enable_broadcast: true,
            multicast_limit: 2,
            members: Vec::new(),
            bridges,
            admission: Admission::Credentials,
        },
    );
    let members: Members = admitted
        .iter()
        .map(|(a, ips)| {
            let facts = MemberFacts {
                ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
                ..MemberFacts::default()
            };
            (*a, Arc::new(facts))
        })
        .collect();
    sw.set_members(&Arc::new(members));
    sw
}

fn gathered(sw: &mut NetworkSwitch, groups: &[(MulticastGroup, &[NodeAddress])]) {
    let cache: GroupCache = groups
        .iter()
        .map(|(g, m)| (*g, Arc::new(GroupEntry::new(m.to_vec(), Time::ZERO))))
        .collect();
    sw.set_groups(&Arc::new(cache));
}

#[test]
fn without_a_list_only_peers_with_credentials_are_admitted() {
    let mut sw = private(&[(me(), &["198.18.0.1"]), (b(), &["198.18.0.2"])], vec![]);
    assert_eq!(sw.inbound(b(), &ipv4_frame(mac(me()), mac(b()))), Ok(()));
    assert_eq!(
        sw.inbound(c(), &ipv4_frame(mac(me()), mac(c()))),
        Err(DropReason::NotAMember)
    );
    assert!(sw.needs_credentials() && sw.admits(b()) && !sw.admits(c()));
    // Frames to a member we have not met still go to it (it judges our credential).
    assert_eq!(
        sw.outbound(&ipv4_frame(mac(c()), mac(me()))),
        Outbound::Unicast(c())
    );
    let public = NetworkSwitch::new(
        net(),
        me(),
        SwitchSettings {
            admission: Admission::Anyone,
            ..SwitchSettings::default()
        },
    );
    assert!(public.admits(outsider()) && !public.needs_credentials());
}

#[test]
fn arp_goes_to_a_known_owner_else_to_the_gathered_owners() {
    let mut sw = private(&[(me(), &["198.18.0.1"]), (b(), &["198.18.0.2"])], vec![]);
    assert_eq!(
        sw.outbound(&arp_request(mac(me()), [198, 18, 0, 2])),
        Outbound::Unicast(b())
    );
    let unknown = MulticastGroup::arp("198.18.0.3".parse().unwrap());
    let arp = arp_request(mac(me()), [198, 18, 0, 3]);
    assert_eq!(sw.outbound(&arp), Outbound::Gather(unknown));
    gathered(&mut sw, &[(unknown, &[c()])]);
    assert_eq!(sw.outbound(&arp), Outbound::Unicast(c()));
    // Nobody owns it: the general broadcast group, gathered in its turn.
    gathered(&mut sw, &[(unknown, &[])]);
    assert_eq!(
        sw.outbound(&arp),
        Outbound::Gather(MulticastGroup::BROADCAST)
    );
}

#[test]
fn group_frames_go_to_bridges_then_gathered_subscribers_within_the_limit() {
    let mut sw = private(&[(me(), &[])], vec![d()]);
    let bcast = frame(Mac::BROADCAST, mac(me()), 0x88b5, &[0; 40]);
    assert_eq!(
        sw.outbound(&bcast),
        Outbound::Gather(MulticastGroup::BROADCAST)
    );
    gathered(
        &mut sw,
        &[(MulticastGroup::BROADCAST, &[me(), b(), c(), d()])],
    );
    assert_eq!(
        sw.outbound(&bcast),
        multicast(&[d(), b()]),
        "limit 2, bridge first"
    );
    let ns = neighbour_solicitation(mac(me()), "fd00:5a::33:3333".parse().unwrap());
    let group = MulticastGroup::solicited_node("fd00:5a::33:3333".parse().unwrap());
    assert_eq!(sw.outbound(&ns), Outbound::Gather(group));
    gathered(&mut sw, &[(group, &[b(), c()])]);
    assert_eq!(
        sw.outbound(&ns),
        multicast(&[d(), b(), c()]),
        "address resolution ignores the limit"
    );
}

#[test]
fn two_bridges_on_one_segment_do_not_loop() {
    let mut sw = NetworkSwitch::new(
        net(),
        me(),
        SwitchSettings {
            bridges: vec![me(), c()],
            ..settings()
        },
    );
    // A host on our segment speaks: we bridge it into the network.
    let from_host = frame(Mac::BROADCAST, HOST, 0x0806, &[0; 28]);
    assert!(matches!(sw.outbound(&from_host), Outbound::Multicast(_)));
    // Bridge C, on the same segment, bridged the same frame back to us.
    assert_eq!(sw.inbound(c(), &from_host), Err(DropReason::BridgeLoop));
    assert_eq!(sw.stats().dropped(DropReason::BridgeLoop), 1);
    assert_eq!(sw.learned(HOST), None, "not learned behind C");
    // Hosts only behind C are fine, and a host that moved there is after 30 s.
    assert_eq!(sw.inbound(c(), &ipv4_frame(mac(me()), HOST2)), Ok(()));
    for _ in 0..30 {
        sw.tick();
    }
    assert_eq!(sw.inbound(c(), &from_host), Ok(()));
}
