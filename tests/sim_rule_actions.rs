//! Rule actions carried out in the simulator: `tee` and `watch` send an observer a copy
//! (cut to the rule's length), `redirect` sends the frame to its target instead, on the
//! sending side or on the receiving side; forwarded frames are never forwarded again.

use std::time::Duration;

use serde_json::json;
use skylan::sim::cores::NodeHost;
use skylan::sim::mesh::{Mesh, Placement};
use skylan::sim::{AccessLink, HostId};
use skylan::types::{Mac, NetworkId};

const SECOND: Duration = Duration::from_secs(1);

/// A mesh with a controller and members a, b and c (the observer) on a network whose
/// rules `rules(c)` writes given c's address.
fn setup(seed: u64, rules: impl Fn(&str) -> String) -> (Mesh, [HostId; 3], NetworkId) {
    let mut m = Mesh::build(
        seed,
        &[AccessLink::default()],
        &[Placement::Public; 3],
        AccessLink::default(),
    );
    let ctrl = m.add_controller(Placement::Public, AccessLink::default());
    m.settle();
    let [a, b, c] = [m.nodes[0], m.nodes[1], m.nodes[2]];
    let source = rules(&m.address(c).to_string());
    let authorized = json!({"authorized": true});
    let nw = m.network_with_members(
        ctrl,
        json!({"name": "actions", "private": true, "rulesSource": source}),
        &[a, b, c].map(|h| (h, authorized.clone())),
    );
    (m, [a, b, c], nw)
}

/// A 100-byte frame from `from` to `to` (an experimental ethertype and a pattern).
fn frame(m: &Mesh, from: HostId, to: HostId, nw: NetworkId) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&Mac::for_member(m.address(to), nw).0);
    f.extend_from_slice(&Mac::for_member(m.address(from), nw).0);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend((0..86u8).map(|i| i.wrapping_mul(7)));
    f
}

/// Sends `f` from `from`'s TAP and returns what each member's TAP got.
fn send(
    m: &mut Mesh,
    hosts: [HostId; 3],
    from: HostId,
    nw: NetworkId,
    f: &[u8],
) -> [Vec<Vec<u8>>; 3] {
    let before = hosts.map(|h| m.node(h).tap.len());
    m.sim
        .with_host::<NodeHost, _>(from, |h, now| h.node.handle_tap_frame(now, nw, f))
        .expect("the switch takes it");
    m.sim.run_for(SECOND);
    let mut got = [Vec::new(), Vec::new(), Vec::new()];
    for (i, h) in hosts.iter().enumerate() {
        got[i] = m.node(*h).tap[before[i]..]
            .iter()
            .map(|t| t.frame.clone())
            .collect();
    }
    got
}

#[test]
fn tee_sends_the_observer_a_copy_and_the_frame_still_arrives() {
    // Rules run on both sides: unqualified, each side would send its own copy.
    let (mut m, hosts, nw) = setup(41, |c| format!("tee -1 {c} not chr inbound;\naccept;\n"));
    let [a, b, _] = hosts;
    let f = frame(&m, a, b, nw);
    let [to_a, to_b, to_c] = send(&mut m, hosts, a, nw, &f);
    assert!(to_a.is_empty());
    assert_eq!(to_b, vec![f.clone()], "b gets the frame");
    assert_eq!(to_c, vec![f], "c gets a whole copy");
    assert_eq!(m.node(a).node.stats().frames_copied, 1);
}

#[test]
fn watch_copies_are_cut_to_the_rules_length() {
    let (mut m, hosts, nw) = setup(42, |c| format!("watch 20 {c} chr inbound;\naccept;\n"));
    let [a, b, _] = hosts;
    let f = frame(&m, a, b, nw);
    let [_, to_b, to_c] = send(&mut m, hosts, a, nw, &f);
    assert_eq!(to_b, vec![f.clone()]);
    assert_eq!(
        to_c,
        vec![f[..14 + 20].to_vec()],
        "header and 20 payload bytes"
    );
    assert_eq!(
        m.node(b).node.stats().frames_copied,
        1,
        "b, the receiver, copied"
    );
}

#[test]
fn an_unqualified_tee_copies_on_both_sides() {
    let (mut m, hosts, nw) = setup(45, |c| format!("tee -1 {c};\naccept;\n"));
    let [a, b, _] = hosts;
    let f = frame(&m, a, b, nw);
    let [_, to_b, to_c] = send(&mut m, hosts, a, nw, &f);
    assert_eq!(to_b, vec![f.clone()]);
    assert_eq!(to_c, vec![f.clone(), f], "one copy from each side");
}

#[test]
fn redirect_on_the_sending_side_sends_the_frame_to_the_target_instead() {
    let (mut m, hosts, nw) = setup(43, |c| format!("redirect {c} not chr inbound;\naccept;\n"));
    let [a, b, _] = hosts;
    let f = frame(&m, a, b, nw);
    let [_, to_b, to_c] = send(&mut m, hosts, a, nw, &f);
    assert!(to_b.is_empty(), "b does not get it");
    assert_eq!(to_c, vec![f], "c gets it, unchanged");
}

#[test]
fn redirect_on_the_receiving_side_forwards_instead_of_delivering() {
    let (mut m, hosts, nw) = setup(44, |c| format!("redirect {c} chr inbound;\naccept;\n"));
    let [a, b, c] = hosts;
    let f = frame(&m, a, b, nw);
    let [_, to_b, to_c] = send(&mut m, hosts, a, nw, &f);
    assert!(to_b.is_empty(), "b forwards it and keeps none");
    assert_eq!(to_c, vec![f], "c gets it once, and forwards it nowhere");
    assert_eq!(m.node(c).node.stats().frames_out, 0, "no further hop");
}
