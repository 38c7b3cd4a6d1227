//! Membership without a roster, in the simulator: configs list no other members,
//! members show each other controller-signed credentials before their frames are
//! admitted, a revoked member is refused even when it never hears of its revocation,
//! a member cut off from the controller falls out of agreement on its own, and group
//! frames (ARP, broadcast) reach only the subscribers the roots gather.

use std::time::Duration;

use serde_json::json;
use skylan::controller::SignedNetworkConfig;
use skylan::node::network::NetworkStatus;
use skylan::node::{Event, TapFrame};
use skylan::sim::mesh::{Mesh, Placement};
use skylan::sim::{AccessLink, HostId, NatKind};
use skylan::types::{Mac, NetworkId};

const SECOND: Duration = Duration::from_secs(1);

struct Lab {
    m: Mesh,
    ctrl: HostId,
    members: Vec<HostId>,
    nw: NetworkId,
}

/// A root, a controller and `n` members (behind NATs), all authorized on a private
/// network with addresses from a pool.
fn lab(seed: u64, n: usize, multicast_limit: u32) -> Lab {
    let placements = vec![Placement::Behind(NatKind::PortRestricted); n];
    let mut m = Mesh::build(
        seed,
        &[AccessLink::default()],
        &placements,
        AccessLink::default(),
    );
    let ctrl = m.add_controller(Placement::Public, AccessLink::default());
    m.settle();
    // `nodes` lists the controller's host too: it is no member.
    let members: Vec<HostId> = m.nodes.iter().copied().filter(|&h| h != ctrl).collect();
    let authorized: Vec<(HostId, serde_json::Value)> = members
        .iter()
        .map(|&h| (h, json!({"authorized": true})))
        .collect();
    let nw = m.network_with_members(
        ctrl,
        json!({
            "name": "lab",
            "private": true,
            "multicastLimit": multicast_limit,
            "ipAssignmentPools": [{"ipRangeStart": "198.18.0.10", "ipRangeEnd": "198.18.0.250"}],
            "routes": [{"target": "198.18.0.0/24", "via": null}],
            "v4AssignMode": {"zt": true},
        }),
        &authorized,
    );
    Lab {
        m,
        ctrl,
        members,
        nw,
    }
}

/// The managed IPv4 address of member `h`.
fn ip_of(l: &Lab, h: HostId) -> [u8; 4] {
    let ips =
        l.m.controller(l.ctrl)
            .member(l.nw, l.m.address(h))
            .unwrap()
            .ip_assignments;
    match ips[0] {
        std::net::IpAddr::V4(v4) => v4.octets(),
        other => panic!("expected an IPv4 address, got {other}"),
    }
}

fn arp_request(l: &Lab, from: HostId, target: [u8; 4]) -> Vec<u8> {
    let src = Mac::for_member(l.m.address(from), l.nw);
    let mut f = Vec::new();
    f.extend_from_slice(&Mac::BROADCAST.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&ip_of(l, from));
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f
}

fn broadcast(l: &Lab, from: HostId, tag: u8) -> Vec<u8> {
    let mut f = vec![tag; 60];
    f[..6].copy_from_slice(&Mac::BROADCAST.0);
    f[6..12].copy_from_slice(&Mac::for_member(l.m.address(from), l.nw).0);
    f[12] = 0x88;
    f[13] = 0xb5;
    f
}

/// Hands `frame` to `from`'s TAP side.
fn inject(l: &mut Lab, from: HostId, frame: &[u8]) {
    let nw = l.nw;
    let _ =
        l.m.sim
            .with_host::<skylan::sim::cores::NodeHost, _>(from, |h, now| {
                h.node.handle_tap_frame(now, nw, frame)
            });
}

/// Cuts member `h` off from the controller and the roots: it keeps only its direct
/// paths to other members.
fn cut_off(l: &mut Lab, h: HostId, cut: bool) {
    l.m.sim.set_partition(h, l.ctrl, cut);
    for r in l.m.roots.clone() {
        l.m.sim.set_partition(h, r, cut);
    }
}

/// Frames `h`'s TAP got since `since` (an index into its tap log).
fn tapped(l: &Lab, h: HostId, since: usize) -> Vec<TapFrame> {
    l.m.node(h).tap[since..].to_vec()
}

fn unicast_frames(l: &mut Lab, from: HostId, to: HostId, n: u8) -> usize {
    let before = l.m.node(to).tap.len();
    for i in 0..n {
        let f = l.m.frame(from, to, l.nw, i, 100);
        l.m.send_frame(from, to, l.nw, &f);
        l.m.sim.run_for(Duration::from_millis(100));
    }
    l.m.sim.run_for(SECOND);
    l.m.node(to).tap.len() - before
}

#[test]
fn configs_list_no_members_and_members_admit_each_other_by_credential() {
    let mut l = lab(61, 3, 32);
    let (a, b) = (l.members[0], l.members[1]);
    // The last config A got names nobody but A.
    let config =
        l.m.node(a)
            .events
            .iter()
            .rev()
            .find_map(|e| match e {
                Event::ConfigReceived { config, .. } => Some(config.clone()),
                _ => None,
            })
            .expect("A received a config");
    let signed = SignedNetworkConfig::from_bytes(&config).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&signed.payload).unwrap();
    assert!(json.get("members").is_none(), "no roster in {json}");
    assert!(
        config.len() < 2_000,
        "a config's size does not grow with the network ({} bytes)",
        config.len()
    );
    assert_eq!(unicast_frames(&mut l, a, b, 5), 5);
    assert_eq!(unicast_frames(&mut l, b, a, 5), 5);
    for h in [a, b] {
        let s = l.m.node(h).node.stats();
        assert!(s.credentials_accepted >= 1, "{s:?}");
        assert_eq!(s.drop_credential, 0);
    }
}

#[test]
fn arp_reaches_only_the_owner_and_broadcast_reaches_the_subscribers() {
    let mut l = lab(62, 3, 32);
    let (a, b, c) = (l.members[0], l.members[1], l.members[2]);
    let (tb, tc) = (l.m.node(b).tap.len(), l.m.node(c).tap.len());
    let arp = arp_request(&l, a, ip_of(&l, b));
    inject(&mut l, a, &arp);
    l.m.sim.run_for(2 * SECOND);
    let at_b = tapped(&l, b, tb);
    assert_eq!(at_b.len(), 1, "B, the owner, gets the ARP request");
    assert_eq!(at_b[0].frame, arp);
    assert!(tapped(&l, c, tc).is_empty(), "C does not own the address");

    let (tb, tc) = (l.m.node(b).tap.len(), l.m.node(c).tap.len());
    let frame = broadcast(&l, a, 7);
    inject(&mut l, a, &frame);
    l.m.sim.run_for(2 * SECOND);
    assert_eq!(tapped(&l, b, tb).len(), 1);
    assert_eq!(tapped(&l, c, tc).len(), 1);
}

#[test]
fn a_group_frame_goes_to_at_most_multicast_limit_subscribers() {
    let mut l = lab(63, 4, 1);
    let (a, others) = (l.members[0], l.members[1..].to_vec());
    let before: Vec<usize> = others.iter().map(|&h| l.m.node(h).tap.len()).collect();
    let frame = broadcast(&l, a, 9);
    inject(&mut l, a, &frame);
    l.m.sim.run_for(2 * SECOND);
    let got: usize = others
        .iter()
        .zip(&before)
        .map(|(&h, &n)| l.m.node(h).tap.len() - n)
        .sum();
    assert_eq!(got, 1, "multicastLimit 1: one subscriber");
}

#[test]
fn a_revoked_member_that_never_hears_of_it_is_refused_within_five_seconds() {
    let mut l = lab(64, 2, 32);
    let (a, b, ctrl, nw) = (l.members[0], l.members[1], l.ctrl, l.nw);
    assert_eq!(unicast_frames(&mut l, a, b, 3), 3);
    // A cannot hear the controller any more, so it keeps its config and credential
    // and goes on sending, as a misbehaving member would.
    cut_off(&mut l, a, true);
    let start = l.m.sim.now();
    l.m.set_member(ctrl, nw, a, json!({"authorized": false}));
    let mut stopped = None;
    for _ in 0..50 {
        if unicast_frames(&mut l, a, b, 1) == 0 {
            stopped = Some(l.m.sim.now().since(start));
            break;
        }
    }
    let took = stopped.expect("the revoked member's frames stopped");
    assert!(took <= 5 * SECOND, "revocation took {took:?}");
    l.m.sim.run_for(5 * SECOND);
    let a_status = l.m.node(a).node.networks()[0].status;
    assert_eq!(a_status, NetworkStatus::Ok, "A never heard");
    assert_eq!(unicast_frames(&mut l, a, b, 5), 0, "and stays refused");
    let s = l.m.node(b).node.stats();
    assert!(s.drop_credential >= 1, "A's credential is refused: {s:?}");
    assert!(s.drop_not_member >= 1, "its frames are dropped: {s:?}");
}

#[test]
fn a_member_cut_off_from_the_controller_falls_out_of_agreement() {
    let mut l = lab(65, 2, 32);
    let (a, b) = (l.members[0], l.members[1]);
    assert_eq!(unicast_frames(&mut l, a, b, 3), 3);
    cut_off(&mut l, a, true);
    // B renews its credential every minute; A's stays as it was (issued up to a minute
    // before the cut).
    l.m.sim.run_for(Duration::from_secs(4 * 60));
    assert_eq!(
        unicast_frames(&mut l, a, b, 3),
        3,
        "still within the window"
    );
    l.m.sim.run_for(Duration::from_secs(3 * 60));
    assert_eq!(
        unicast_frames(&mut l, a, b, 3),
        0,
        "past the 5-minute window A's credential no longer agrees with B's"
    );
    assert!(l.m.node(b).node.stats().drop_credential >= 1);
    // Back in touch, A renews and is admitted again.
    cut_off(&mut l, a, false);
    l.m.sim.run_for(Duration::from_secs(70));
    assert_eq!(unicast_frames(&mut l, a, b, 3), 3);
}

#[test]
fn a_broadcast_storm_is_bounded() {
    let mut l = lab(66, 2, 32);
    let (a, b) = (l.members[0], l.members[1]);
    // Subscribers gathered first.
    let warm = broadcast(&l, a, 1);
    inject(&mut l, a, &warm);
    l.m.sim.run_for(2 * SECOND);
    let before = l.m.node(b).tap.len();
    let frame = broadcast(&l, a, 2);
    for _ in 0..5_000 {
        inject(&mut l, a, &frame);
    }
    l.m.sim.run_for(SECOND / 2);
    let got = l.m.node(b).tap.len() - before;
    assert!(
        got <= skylan::node::switch::GROUP_FRAMES_PER_SECOND as usize,
        "{got} group frames in one second"
    );
    assert!(got > 0);
}

#[test]
fn a_member_that_left_drops_out_of_the_gathered_subscribers() {
    let mut l = lab(67, 3, 32);
    let (a, c) = (l.members[0], l.members[2]);
    let frame = broadcast(&l, a, 5);
    let recipients = |l: &mut Lab| {
        let before = l.m.node(a).node.stats().frames_out;
        inject(l, a, &frame);
        l.m.sim.run_for(2 * SECOND);
        l.m.node(a).node.stats().frames_out - before
    };
    recipients(&mut l); // gathers, and introduces A to B and C
    assert_eq!(recipients(&mut l), 2, "B and C subscribe");
    let nw = l.nw;
    l.m.sim
        .with_host::<skylan::sim::cores::NodeHost, _>(c, |h, _| h.node.leave(nw));
    // C no longer announces; the roots forget it after three announcement periods, and
    // A, sending to the group all along, gathers again every 30 s.
    for _ in 0..24 {
        recipients(&mut l);
        l.m.sim.run_for(8 * SECOND);
    }
    assert_eq!(recipients(&mut l), 1, "only B is left");
}
