//! Virtual networks in the simulator: joining by network ID, authorization on a private
//! network, revocation, unknown networks, and members carrying on while the controller
//! is down. The controller is the real one (in-memory database) inside a simulated node.

use std::time::Duration;

use serde_json::json;
use skylan::node::network::NetworkStatus;
use skylan::sim::mesh::{Mesh, Placement};
use skylan::sim::{AccessLink, HostId, NatKind};
use skylan::types::NetworkId;

const SECOND: Duration = Duration::from_secs(1);

struct Lab {
    m: Mesh,
    ctrl: HostId,
    a: HostId,
    b: HostId,
    nw: NetworkId,
}

/// A root, a controller, and two members behind port-restricted NATs, with a private
/// network that has a pool and a route.
fn lab(seed: u64) -> Lab {
    let mut m = Mesh::build(
        seed,
        &[AccessLink::default()],
        &[
            Placement::Behind(NatKind::PortRestricted),
            Placement::Behind(NatKind::PortRestricted),
        ],
        AccessLink::default(),
    );
    let ctrl = m.add_controller(Placement::Public, AccessLink::default());
    m.settle();
    let nw = m.create_network(
        ctrl,
        json!({
            "name": "lab",
            "private": true,
            "ipAssignmentPools": [{"ipRangeStart": "198.18.0.10", "ipRangeEnd": "198.18.0.250"}],
            "routes": [{"target": "198.18.0.0/24", "via": null}],
            "v4AssignMode": {"zt": true},
        }),
    );
    let (a, b) = (m.nodes[0], m.nodes[1]);
    Lab { m, ctrl, a, b, nw }
}

/// Both members join the lab network and are authorized; waits until both are OK.
fn authorized_pair(l: &mut Lab) {
    let (a, b, nw, ctrl) = (l.a, l.b, l.nw, l.ctrl);
    for h in [a, b] {
        l.m.join(h, nw);
        l.m.sim.run_for(SECOND);
        l.m.set_member(ctrl, nw, h, json!({"authorized": true}));
    }
    for h in [a, b] {
        assert!(l.m.wait_status(h, nw, NetworkStatus::Ok, 10 * SECOND));
    }
    configs_settle(l);
}

/// Lets the controller's pushes and the members' announcements to the roots settle.
fn configs_settle(l: &mut Lab) {
    l.m.sim.run_for(SECOND);
}

fn frames_between(l: &mut Lab, n: u8) -> usize {
    let before = l.m.node(l.b).tap.len();
    for i in 0..n {
        let f = l.m.frame(l.a, l.b, l.nw, i, 100);
        l.m.send_frame(l.a, l.b, l.nw, &f);
        l.m.sim.run_for(Duration::from_millis(100));
    }
    l.m.sim.run_for(SECOND);
    l.m.node(l.b).tap.len() - before
}

#[test]
fn a_private_network_needs_authorization_then_carries_frames() {
    let mut l = lab(21);
    let (a, b, nw, ctrl) = (l.a, l.b, l.nw, l.ctrl);
    l.m.join(a, nw);
    l.m.join(b, nw);
    assert!(l.m.wait_status(a, nw, NetworkStatus::AccessDenied, 20 * SECOND));
    assert!(l.m.wait_status(b, nw, NetworkStatus::AccessDenied, 20 * SECOND));
    assert_eq!(
        frames_between(&mut l, 3),
        0,
        "nothing flows before authorization"
    );
    l.m.set_member(ctrl, nw, a, json!({"authorized": true}));
    l.m.set_member(ctrl, nw, b, json!({"authorized": true}));
    assert!(l.m.wait_status(a, nw, NetworkStatus::Ok, 10 * SECOND));
    assert!(l.m.wait_status(b, nw, NetworkStatus::Ok, 10 * SECOND));
    configs_settle(&mut l);
    assert_eq!(frames_between(&mut l, 5), 5);
    // Both got distinct pool addresses.
    let ips: Vec<_> = [a, b]
        .iter()
        .map(|&h| {
            let addr = l.m.address(h);
            l.m.controller(ctrl)
                .member(nw, addr)
                .unwrap()
                .ip_assignments
        })
        .collect();
    assert_eq!(ips[0].len(), 1);
    assert_eq!(ips[1].len(), 1);
    assert_ne!(ips[0], ips[1]);
}

#[test]
fn deauthorizing_a_member_stops_its_frames_within_five_seconds() {
    let mut l = lab(22);
    let (a, nw, ctrl) = (l.a, l.nw, l.ctrl);
    authorized_pair(&mut l);
    assert_eq!(frames_between(&mut l, 3), 3);
    let start = l.m.sim.now();
    l.m.set_member(ctrl, nw, a, json!({"authorized": false}));
    // Keep sending from the revoked member, as a misbehaving node would.
    let mut stopped = None;
    for _ in 0..50 {
        if frames_between(&mut l, 1) == 0 {
            stopped = Some(l.m.sim.now().since(start));
            break;
        }
    }
    let took = stopped.expect("the revoked member's frames stopped");
    eprintln!("revocation took effect after {took:?} (simulated)");
    assert!(took <= 5 * SECOND, "revocation took {took:?}");
    assert!(l.m.wait_status(a, nw, NetworkStatus::AccessDenied, 5 * SECOND));
    // A revoked member that never hears of it, and keeps sending, is refused by its
    // peers: `sim_membership.rs`.
}

#[test]
fn an_unknown_network_is_not_found() {
    let mut l = lab(23);
    let missing = NetworkId::new(l.m.address(l.ctrl), 0xabcdef);
    l.m.join(l.a, missing);
    assert!(l.m.wait_status(l.a, missing, NetworkStatus::NotFound, 20 * SECOND));
}

#[test]
fn members_keep_talking_while_the_controller_is_down() {
    let mut l = lab(24);
    authorized_pair(&mut l);
    l.m.sim.set_up(l.ctrl, false);
    l.m.sim.run_for(Duration::from_secs(300));
    assert_eq!(
        frames_between(&mut l, 5),
        5,
        "configs in force keep working"
    );
}

#[test]
fn a_public_network_admits_members_without_authorization() {
    let mut l = lab(25);
    let nw =
        l.m.create_network(l.ctrl, json!({"name": "open", "private": false}));
    l.nw = nw;
    l.m.join(l.a, nw);
    l.m.join(l.b, nw);
    assert!(l.m.wait_status(l.a, nw, NetworkStatus::Ok, 20 * SECOND));
    assert!(l.m.wait_status(l.b, nw, NetworkStatus::Ok, 20 * SECOND));
    configs_settle(&mut l);
    assert_eq!(frames_between(&mut l, 4), 4);
}

#[test]
fn a_member_change_is_answered_for_that_member_alone() {
    let mut l = lab(26);
    authorized_pair(&mut l);
    let (a, nw, ctrl) = (l.a, l.nw, l.ctrl);
    let wall = skylan::sim::wall(l.m.sim.now());
    let serving = l.m.node(ctrl).controller.as_ref().expect("a controller");
    let one = serving
        .answers_for_member(wall, nw, l.m.address(a))
        .unwrap();
    assert_eq!(
        one.len(),
        1,
        "a config lists no other member: only A's changes"
    );
    let stranger = skylan::types::NodeAddress::new(0x3a_0000_0001).unwrap();
    assert!(
        serving
            .answers_for_member(wall, nw, stranger)
            .unwrap()
            .is_empty()
    );
    assert_eq!(serving.answers_for_push(wall, nw).unwrap().len(), 2);
}
