//! Flow rules enforced in the simulator: the controller compiles `rulesSource`, members
//! get the compiled rules with every member's tags, and both the sending and the
//! receiving side evaluate them; a modified sender cannot bypass the receiver's copy,
//! and a rule change reaches members within seconds.

use std::time::Duration;

use serde_json::json;
use skylan::node::switch::SwitchSettings;
use skylan::sim::cores::NodeHost;
use skylan::sim::mesh::{Mesh, Placement};
use skylan::sim::{AccessLink, HostId, wall};
use skylan::types::{Mac, NetworkId};

const SECOND: Duration = Duration::from_secs(1);

const SSH_ONLY_FROM_TAGGED: &str = "\
# SSH only from members tagged ssh=1
tag ssh id 1 default 0;
accept ethertype arp;
accept ethertype ipv4 and ipprotocol tcp and dport 22 and tag ssh=1;
accept ethertype ipv4 and ipprotocol tcp and sport 22;
drop ethertype ipv4 and ipprotocol tcp and dport 22;
accept;
";

/// An Ethernet/IPv4/TCP SYN from `from` to `to` on `network`, to `dport`.
fn syn(m: &Mesh, from: HostId, to: HostId, network: NetworkId, dport: u16) -> Vec<u8> {
    syn_from(m, from, to, network, dport, [198, 18, 0, 2])
}

/// [`syn`] with the IPv4 source address `src`.
fn syn_from(
    m: &Mesh,
    from: HostId,
    to: HostId,
    network: NetworkId,
    dport: u16,
    src: [u8; 4],
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&Mac::for_member(m.address(to), network).0);
    f.extend_from_slice(&Mac::for_member(m.address(from), network).0);
    f.extend_from_slice(&[0x08, 0x00]);
    // IPv4: version/IHL, TOS, total length 40, id, flags, TTL 64, TCP, checksum 0.
    f.extend_from_slice(&[0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[198, 18, 0, 3]);
    // TCP: ports, seq, ack, data offset 5, SYN, window, checksum, urgent.
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    f
}

/// A frame through the sender's TAP path (its rules apply), then delivered or not.
fn through_tap(m: &mut Mesh, from: HostId, to: HostId, nw: NetworkId, dport: u16) -> bool {
    let before = m.node(to).tap.len();
    let f = syn(m, from, to, nw, dport);
    m.sim
        .with_host::<NodeHost, _>(from, |h, now| h.node.handle_tap_frame(now, nw, &f))
        .ok();
    m.sim.run_for(SECOND);
    m.node(to).tap.len() > before
}

fn setup() -> (Mesh, HostId, HostId, HostId, NetworkId) {
    let mut m = Mesh::build(
        31,
        &[AccessLink::default()],
        &[Placement::Public, Placement::Public],
        AccessLink::default(),
    );
    let ctrl = m.add_controller(Placement::Public, AccessLink::default());
    m.settle();
    let (a, b) = (m.nodes[0], m.nodes[1]);
    let nw = m.network_with_members(
        ctrl,
        json!({"name": "rules", "private": true, "rulesSource": SSH_ONLY_FROM_TAGGED}),
        &[
            (a, json!({"authorized": true, "tags": [[1, 1]]})),
            (b, json!({"authorized": true, "tags": [[1, 0]]})),
        ],
    );
    (m, ctrl, a, b, nw)
}

#[test]
fn ssh_is_allowed_only_from_the_tagged_member() {
    let (mut m, _ctrl, a, b, nw) = setup();
    assert!(
        through_tap(&mut m, a, b, nw, 22),
        "tagged a may open SSH to b"
    );
    assert!(
        !through_tap(&mut m, b, a, nw, 22),
        "untagged b may not open SSH to a"
    );
    assert!(
        m.node(b).node.stats().drop_rules > 0,
        "dropped on b's own (sending) side"
    );
    assert!(through_tap(&mut m, b, a, nw, 80), "other TCP is accepted");
    let hits = m.node(b).node.rule_hits(nw);
    assert!(
        hits.iter()
            .any(|((table, rule), n)| *table == u32::MAX && *rule == 3 && *n > 0),
        "{hits:?}"
    );
}

#[test]
fn a_modified_sender_cannot_bypass_the_receivers_rules() {
    let (mut m, _ctrl, a, b, nw) = setup();
    // a has b's credential (from an accepted frame); then b drops its own rules (a
    // config no controller signed, at a revision nothing replaces) and sends the frame
    // through its switch alone.
    assert!(through_tap(&mut m, b, a, nw, 80));
    let f = syn(&m, b, a, nw, 22);
    let members = [m.address(a), m.address(b)];
    let dropped = m.node(a).node.stats().drop_rules;
    let delivered = m.node(a).tap.len();
    m.sim.with_host::<NodeHost, _>(b, |h, _| {
        h.node
            .set_network(nw, u64::MAX, SwitchSettings::open(&members), None, None)
    });
    m.sim
        .with_host::<NodeHost, _>(b, |h, now| h.node.handle_tap_frame(now, nw, &f))
        .unwrap();
    m.sim.run_for(SECOND);
    assert_eq!(
        m.node(a).tap.len(),
        delivered,
        "the receiver's copy of the rules dropped it"
    );
    assert_eq!(m.node(a).node.stats().drop_rules, dropped + 1);
}

#[test]
fn a_rule_change_reaches_members_within_seconds() {
    let (mut m, ctrl, a, b, nw) = setup();
    assert!(!through_tap(&mut m, b, a, nw, 22));
    let start = m.sim.now();
    m.update_network(ctrl, nw, json!({"rulesSource": "accept;"}));
    let mut took = None;
    for _ in 0..10 {
        if through_tap(&mut m, b, a, nw, 22) {
            took = Some(m.sim.now().since(start));
            break;
        }
    }
    let took = took.expect("the new rules took effect");
    assert!(took <= 5 * SECOND, "took {took:?}");
}

#[test]
fn a_rules_source_that_does_not_compile_is_refused_and_changes_nothing() {
    let (m, ctrl, _a, _b, nw) = setup();
    let body = json!({"rulesSource": "accept ethertype ipv4\ndrop;"});
    let err = m
        .controller(ctrl)
        .post_network(nw, body.as_object().unwrap(), "test", wall(m.sim.now()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing `;`"), "says what is wrong: {err}");
    let net = m.controller(ctrl).network(nw).unwrap();
    assert!(net.rules_source.contains("tag ssh"), "unchanged");
}

#[test]
fn rule_hit_counters_start_fresh_with_a_new_rule_set() {
    let (mut m, ctrl, a, b, nw) = setup();
    assert!(!through_tap(&mut m, b, a, nw, 22));
    assert!(through_tap(&mut m, b, a, nw, 80));
    let before = m.node(b).node.rule_hits(nw);
    let drop_rule = (u32::MAX, 3);
    assert!(
        before.iter().any(|(k, n)| *k == drop_rule && *n == 1),
        "{before:?}"
    );

    // A change that keeps the rules (a new name) keeps the counts.
    m.update_network(ctrl, nw, json!({"name": "renamed"}));
    m.sim.run_for(5 * SECOND);
    assert_eq!(m.node(b).node.rule_hits(nw), before);

    // New rules: the old numbers mean other rules now, so counting starts again.
    m.update_network(
        ctrl,
        nw,
        json!({"rulesSource": "accept ethertype arp;\naccept;"}),
    );
    let mut delivered = false;
    for _ in 0..10 {
        if through_tap(&mut m, b, a, nw, 22) {
            delivered = true;
            break;
        }
    }
    assert!(delivered, "the new rules took effect");
    let after = m.node(b).node.rule_hits(nw);
    assert_eq!(
        after,
        vec![((u32::MAX, 1), 1)],
        "only the new rule set's hit"
    );
}

/// An ARP reply from `from` to `to` claiming `sender_ip`.
fn arp_reply(m: &Mesh, from: HostId, to: HostId, nw: NetworkId, sender_ip: [u8; 4]) -> Vec<u8> {
    let (src, dst) = (
        Mac::for_member(m.address(from), nw),
        Mac::for_member(m.address(to), nw),
    );
    let mut f = Vec::new();
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&sender_ip);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&[198, 18, 0, 3]);
    f
}

#[test]
fn members_cannot_send_from_addresses_they_were_not_given() {
    let mut m = Mesh::build(
        32,
        &[AccessLink::default()],
        &[Placement::Public, Placement::Public],
        AccessLink::default(),
    );
    let ctrl = m.add_controller(Placement::Public, AccessLink::default());
    m.settle();
    let (a, b) = (m.nodes[0], m.nodes[1]);
    let nw = m.network_with_members(
        ctrl,
        json!({"name": "nospoof", "private": true,
               "ipAssignmentPools": [{"ipRangeStart": "198.18.0.2", "ipRangeEnd": "198.18.0.99"}],
               "rulesSource": "drop not chr ipauth;\naccept;\n"}),
        &[
            (
                a,
                json!({"authorized": true, "ipAssignments": ["198.18.0.3"]}),
            ),
            (
                b,
                json!({"authorized": true, "ipAssignments": ["198.18.0.2"]}),
            ),
        ],
    );
    let delivered = |m: &mut Mesh, f: Vec<u8>| {
        let before = m.node(a).tap.len();
        let _ = m
            .sim
            .with_host::<NodeHost, _>(b, |h, now| h.node.handle_tap_frame(now, nw, &f));
        m.sim.run_for(SECOND);
        m.node(a).tap.len() > before
    };
    let own = syn_from(&m, b, a, nw, 80, [198, 18, 0, 2]);
    assert!(delivered(&mut m, own), "from its own address");
    for spoofed in [[198, 18, 0, 3], [198, 18, 0, 77]] {
        let f = syn_from(&m, b, a, nw, 80, spoofed);
        assert!(!delivered(&mut m, f), "from {spoofed:?}, not b's");
        let f = arp_reply(&m, b, a, nw, spoofed);
        assert!(!delivered(&mut m, f), "ARP claiming {spoofed:?}");
    }
    let f = arp_reply(&m, b, a, nw, [198, 18, 0, 2]);
    assert!(delivered(&mut m, f), "ARP for its own address");
    // A modified b without rules: a's copy still refuses the spoofed source.
    let members = [m.address(a), m.address(b)];
    m.sim.with_host::<NodeHost, _>(b, |h, _| {
        h.node
            .set_network(nw, u64::MAX, SwitchSettings::open(&members), None, None)
    });
    let dropped = m.node(a).node.stats().drop_rules;
    let f = syn_from(&m, b, a, nw, 80, [198, 18, 0, 3]);
    assert!(!delivered(&mut m, f), "the receiver checks too");
    assert_eq!(m.node(a).node.stats().drop_rules, dropped + 1);
}
