//! Tests of the controller service over the in-memory redb store.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::*;
use crate::crypto::UpdateKey;

const CTRL: &str = "89e92ceee5";

fn controller() -> Controller {
    Controller::new(
        Box::new(RedbStore::open_in_memory().unwrap()),
        CTRL.parse().unwrap(),
        [9; 32],
    )
}

fn body(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn t(ms: u64) -> UnixTime {
    UnixTime::from_millis(1_700_000_000_000 + ms)
}

fn addr(i: u64) -> NodeAddress {
    NodeAddress::new(0x02_0000_0000 + i).unwrap()
}

fn lab(c: &Controller) -> NetworkId {
    c.create_network(
        &body(json!({
            "name": "lab",
            "v4AssignMode": {"zt": true},
            "ipAssignmentPools": [{"ipRangeStart": "198.18.0.1", "ipRangeEnd": "198.18.0.254"}],
            "routes": [{"target": "198.18.0.0/24", "via": null}]
        })),
        "test",
        t(0),
    )
    .unwrap()
    .record
    .id
}

fn signer() -> UpdateKey {
    use rand_core::SeedableRng;
    UpdateKey::generate(&mut rand_chacha::ChaCha20Rng::from_seed([3; 32]))
}

fn req(nwid: NetworkId, member: NodeAddress) -> ConfigRequest {
    ConfigRequest {
        nwid,
        member,
        identity: format!("identity-of-{member}"),
        version: None,
    }
}

#[test]
fn create_network_picks_an_id_under_this_controller() {
    let c = controller();
    let a = c.create_network(&Map::new(), "test", t(0)).unwrap().record;
    let b = c.create_network(&Map::new(), "test", t(0)).unwrap().record;
    assert_eq!(a.id.controller().to_string(), CTRL);
    assert_ne!(a.id, b.id);
    assert_ne!(a.id.number(), 0);
    assert_eq!(a.revision, 1);
    assert_eq!(c.networks().unwrap().len(), 2);
}

#[test]
fn post_network_creates_updates_and_refuses_foreign_ids() {
    let c = controller();
    let nwid: NetworkId = format!("{CTRL}000042").parse().unwrap();
    let n = c
        .post_network(nwid, &body(json!({"name": "a"})), "test", t(0))
        .unwrap()
        .record;
    assert_eq!((n.name.as_str(), n.revision), ("a", 1));
    let n = c
        .post_network(nwid, &body(json!({"mtu": 1400})), "test", t(1))
        .unwrap()
        .record;
    assert_eq!((n.name.as_str(), n.mtu, n.revision), ("a", 1400, 2));
    // Posting what is already there saves nothing.
    let n = c
        .post_network(nwid, &body(json!({"mtu": 1400})), "test", t(2))
        .unwrap()
        .record;
    assert_eq!(n.revision, 2);
    let foreign: NetworkId = "0123456789000001".parse().unwrap();
    assert!(matches!(
        c.post_network(foreign, &Map::new(), "test", t(0)),
        Err(ControllerError::BadRequest(_))
    ));
}

#[test]
fn a_bad_field_changes_nothing() {
    let c = controller();
    let nwid = lab(&c);
    let before = c.network(nwid).unwrap();
    let err = c
        .post_network(
            nwid,
            &body(json!({"name": "x", "mtu": "big"})),
            "test",
            t(5),
        )
        .unwrap_err();
    assert!(matches!(err, ControllerError::BadField { ref field, .. } if field == "mtu"));
    assert_eq!(c.network(nwid).unwrap(), before);
    assert_eq!(
        c.audit(0, 100).unwrap().len(),
        1,
        "only the create is logged"
    );
}

#[test]
fn members_get_unique_sticky_addresses_when_authorized() {
    let c = controller();
    let nwid = lab(&c);
    let mut seen = BTreeSet::new();
    for i in 0..50 {
        let m = c
            .post_member(
                nwid,
                addr(i),
                &body(json!({"authorized": true})),
                "test",
                t(i),
            )
            .unwrap()
            .record;
        assert_eq!(m.ip_assignments.len(), 1);
        assert!(seen.insert(m.ip_assignments[0]), "address handed out twice");
    }
    // Sticky: updating the member again keeps its address.
    let first = c.member(nwid, addr(0)).unwrap().ip_assignments;
    let m = c
        .post_member(nwid, addr(0), &body(json!({"name": "n0"})), "test", t(99))
        .unwrap()
        .record;
    assert_eq!(m.ip_assignments, first);
}

#[test]
fn unauthorized_members_get_no_pool_address() {
    let c = controller();
    let nwid = lab(&c);
    let m = c
        .post_member(
            nwid,
            addr(1),
            &body(json!({"name": "pending"})),
            "test",
            t(0),
        )
        .unwrap()
        .record;
    assert!(m.ip_assignments.is_empty());
}

#[test]
fn static_address_held_by_another_member_is_a_conflict_and_changes_nothing() {
    let c = controller();
    let nwid = lab(&c);
    let ip = "198.18.0.77";
    c.post_member(
        nwid,
        addr(1),
        &body(json!({"ipAssignments": [ip]})),
        "test",
        t(0),
    )
    .unwrap();
    let err = c
        .post_member(
            nwid,
            addr(2),
            &body(json!({"ipAssignments": [ip], "name": "second"})),
            "test",
            t(1),
        )
        .unwrap_err();
    assert!(matches!(err, ControllerError::Conflict(_)), "{err}");
    assert!(err.to_string().contains(&addr(1).to_string()));
    assert!(matches!(
        c.member(nwid, addr(2)),
        Err(ControllerError::NotFound { .. })
    ));
    // Freed by deletion, the address can be taken.
    c.delete_member(nwid, addr(1), "test", t(2)).unwrap();
    c.post_member(
        nwid,
        addr(2),
        &body(json!({"ipAssignments": [ip]})),
        "test",
        t(3),
    )
    .unwrap();
}

#[test]
fn moving_an_address_between_members_frees_the_old_holder() {
    let c = controller();
    let nwid = lab(&c);
    c.post_member(
        nwid,
        addr(1),
        &body(json!({"ipAssignments": ["198.18.0.5"]})),
        "t",
        t(0),
    )
    .unwrap();
    c.post_member(
        nwid,
        addr(1),
        &body(json!({"ipAssignments": ["198.18.0.6"]})),
        "t",
        t(1),
    )
    .unwrap();
    c.post_member(
        nwid,
        addr(2),
        &body(json!({"ipAssignments": ["198.18.0.5"]})),
        "t",
        t(2),
    )
    .unwrap();
}

#[test]
fn member_operations_on_missing_network_are_not_found() {
    let c = controller();
    let nwid: NetworkId = format!("{CTRL}00abcd").parse().unwrap();
    assert!(matches!(
        c.post_member(nwid, addr(1), &Map::new(), "t", t(0)),
        Err(ControllerError::NotFound { .. })
    ));
    assert!(matches!(
        c.members(nwid),
        Err(ControllerError::NotFound { .. })
    ));
    let nwid = lab(&c);
    assert!(matches!(
        c.member(nwid, addr(1)),
        Err(ControllerError::NotFound { .. })
    ));
    assert!(matches!(
        c.delete_member(nwid, addr(1), "t", t(0)),
        Err(ControllerError::NotFound { .. })
    ));
}

#[test]
fn deleting_a_network_deletes_members_and_frees_addresses() {
    let c = controller();
    let nwid: NetworkId = format!("{CTRL}000001").parse().unwrap();
    let setup = json!({
        "v4AssignMode": {"zt": true},
        "ipAssignmentPools": [{"ipRangeStart": "198.18.0.1", "ipRangeEnd": "198.18.0.1"}],
        "routes": [{"target": "198.18.0.0/24"}]
    });
    c.post_network(nwid, &body(setup.clone()), "t", t(0))
        .unwrap();
    let m = c
        .post_member(nwid, addr(1), &body(json!({"authorized": true})), "t", t(1))
        .unwrap()
        .record;
    assert_eq!(
        m.ip_assignments,
        vec!["198.18.0.1".parse::<IpAddr>().unwrap()]
    );
    let deleted = c.delete_network(nwid, "t", t(2)).unwrap();
    assert_eq!(deleted.id, nwid);
    assert!(matches!(
        c.network(nwid),
        Err(ControllerError::NotFound { .. })
    ));
    // Re-created under the same ID, the network starts empty and the address is free.
    c.post_network(nwid, &body(setup), "t", t(3)).unwrap();
    assert!(c.members(nwid).unwrap().is_empty());
    let m = c
        .post_member(nwid, addr(2), &body(json!({"authorized": true})), "t", t(4))
        .unwrap()
        .record;
    assert_eq!(
        m.ip_assignments,
        vec!["198.18.0.1".parse::<IpAddr>().unwrap()]
    );
}

#[test]
fn audit_log_records_actor_action_and_changed_fields() {
    let c = controller();
    let nwid = lab(&c);
    c.post_member(
        nwid,
        addr(1),
        &body(json!({"authorized": true})),
        "api 127.0.0.1",
        t(10),
    )
    .unwrap();
    c.post_member(
        nwid,
        addr(1),
        &body(json!({"authorized": false})),
        "api 127.0.0.1",
        t(20),
    )
    .unwrap();
    let log = c.audit(0, 100).unwrap();
    let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["network.create", "member.create", "member.update"]
    );
    let last = log.last().unwrap();
    assert_eq!(last.actor, "api 127.0.0.1");
    assert_eq!(last.member.as_deref(), Some(addr(1).to_string().as_str()));
    assert_eq!(last.changes["authorized"].before, json!(true));
    assert_eq!(last.changes["authorized"].after, json!(false));
    assert!(!last.changes.contains_key("revision"));
    assert!(log.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(c.audit(log[1].seq, 100).unwrap().len(), 1);
}

#[test]
fn listeners_hear_committed_changes_and_revocations() {
    let c = controller();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let sink = heard.clone();
    c.subscribe(Arc::new(move |ch: &Change| sink.lock().unwrap().push(*ch)));
    let nwid = lab(&c);
    c.post_member(nwid, addr(1), &body(json!({"authorized": true})), "t", t(1))
        .unwrap();
    let _ = c.post_network(nwid, &body(json!({"mtu": 1})), "t", t(2));
    c.post_member(
        nwid,
        addr(1),
        &body(json!({"authorized": false})),
        "t",
        t(3),
    )
    .unwrap();
    let heard = heard.lock().unwrap().clone();
    assert_eq!(
        heard.len(),
        3,
        "a failed update is not announced: {heard:?}"
    );
    assert_eq!(heard[0].kind, ChangeKind::Created);
    assert_eq!(heard[1].member, Some(addr(1)));
    assert!(!heard[1].revoked);
    assert!(heard[2].revoked);
    assert_eq!(c.network(nwid).unwrap().membership_revision, 1);
}

#[test]
fn config_request_on_private_network_waits_for_authorization() {
    let c = controller();
    let nwid = lab(&c);
    let s = signer();
    let d = c.request(&req(nwid, addr(1)), t(1), &s).unwrap();
    assert_eq!(d, Decision::AccessDenied);
    let m = c.member(nwid, addr(1)).unwrap();
    assert!(!m.authorized);
    assert_eq!(m.identity, format!("identity-of-{}", addr(1)));
    c.post_member(nwid, addr(1), &body(json!({"authorized": true})), "t", t(2))
        .unwrap();
    let Decision::Config(cfg) = c.request(&req(nwid, addr(1)), t(3), &s).unwrap() else {
        panic!("expected a config");
    };
    assert_eq!(cfg.assigned_addresses.len(), 1);
    assert_eq!(cfg.assigned_addresses[0].prefix_len(), 24);
    cfg.credential.verify(&s.public_key()).unwrap();
    // A repeated request changes nothing on disk.
    let rev = c.member(nwid, addr(1)).unwrap().revision;
    let log_len = c.audit(0, 1000).unwrap().len();
    c.request(&req(nwid, addr(1)), t(4), &s).unwrap();
    assert_eq!(c.member(nwid, addr(1)).unwrap().revision, rev);
    assert_eq!(c.audit(0, 1000).unwrap().len(), log_len);
}

#[test]
fn config_request_on_public_network_admits_and_assigns() {
    let c = controller();
    let nwid = lab(&c);
    c.post_network(nwid, &body(json!({"private": false})), "t", t(0))
        .unwrap();
    let Decision::Config(cfg) = c.request(&req(nwid, addr(7)), t(1), &signer()).unwrap() else {
        panic!("expected a config");
    };
    let m = c.member(nwid, addr(7)).unwrap();
    assert!(m.authorized);
    assert_eq!(m.ip_assignments.len(), 1);
    assert_eq!(cfg.assigned_addresses[0].addr(), m.ip_assignments[0]);
    let log = c.audit(0, 100).unwrap();
    assert_eq!(log.last().unwrap().actor, format!("node {}", addr(7)));
}

#[test]
fn an_exhausted_pool_is_an_error_not_a_member_without_an_address() {
    let c = controller();
    let nwid = c
        .create_network(
            &body(json!({
                "v4AssignMode": {"zt": true},
                "ipAssignmentPools": [{"ipRangeStart": "198.18.0.10", "ipRangeEnd": "198.18.0.11"}],
                "routes": [{"target": "198.18.0.0/24", "via": null}]
            })),
            "test",
            t(0),
        )
        .unwrap()
        .record
        .id;
    let authorize = json!({"authorized": true});
    for i in 1..=2 {
        c.post_member(nwid, addr(i), &body(authorize.clone()), "t", t(i))
            .unwrap();
    }
    let err = c
        .post_member(nwid, addr(3), &body(authorize.clone()), "t", t(3))
        .unwrap_err();
    assert!(matches!(err, ControllerError::PoolExhausted(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains("198.18.0.10-198.18.0.11"), "{text}");
    assert!(text.contains(&addr(3).to_string()), "{text}");
    assert!(
        matches!(
            c.member(nwid, addr(3)),
            Err(ControllerError::NotFound { .. })
        ),
        "nothing was stored"
    );
    // A member the node itself created (unauthorized) cannot be authorized either.
    c.request(&req(nwid, addr(4)), t(4), &signer()).unwrap();
    let err = c
        .post_member(nwid, addr(4), &body(authorize.clone()), "t", t(5))
        .unwrap_err();
    assert!(matches!(err, ControllerError::PoolExhausted(_)), "{err}");
    assert!(!c.member(nwid, addr(4)).unwrap().authorized);
    // On a public network every member is admitted; revoking one whose address the
    // pool could not supply still works.
    c.post_network(nwid, &body(json!({"private": false})), "t", t(5))
        .unwrap();
    c.request(&req(nwid, addr(5)), t(5), &signer()).unwrap();
    let m = c
        .post_member(
            nwid,
            addr(5),
            &body(json!({"authorized": false})),
            "t",
            t(5),
        )
        .unwrap()
        .record;
    assert!(!m.authorized && m.ip_assignments.is_empty());
    c.post_network(nwid, &body(json!({"private": true})), "t", t(5))
        .unwrap();
    // Giving it an address by hand, or freeing one, works.
    c.delete_member(nwid, addr(1), "t", t(6)).unwrap();
    let m = c
        .post_member(nwid, addr(4), &body(authorize), "t", t(7))
        .unwrap()
        .record;
    assert_eq!(m.ip_assignments.len(), 1);
}

#[test]
fn config_request_for_unknown_network_or_wrong_identity() {
    let c = controller();
    let nwid = lab(&c);
    let other: NetworkId = format!("{CTRL}00beef").parse().unwrap();
    assert_eq!(
        c.request(&req(other, addr(1)), t(0), &signer()).unwrap(),
        Decision::NotFound
    );
    c.post_member(nwid, addr(1), &body(json!({"authorized": true})), "t", t(0))
        .unwrap();
    assert!(matches!(
        c.request(&req(nwid, addr(1)), t(1), &signer()).unwrap(),
        Decision::Config(_)
    ));
    let mut impostor = req(nwid, addr(1));
    impostor.identity = "someone else".into();
    assert_eq!(
        c.request(&impostor, t(2), &signer()).unwrap(),
        Decision::AccessDenied
    );
}

#[test]
fn deleting_an_authorized_member_revokes() {
    let c = controller();
    let nwid = lab(&c);
    c.post_member(nwid, addr(1), &body(json!({"authorized": true})), "t", t(0))
        .unwrap();
    c.post_member(nwid, addr(2), &Map::new(), "t", t(0))
        .unwrap();
    c.delete_member(nwid, addr(2), "t", t(1)).unwrap();
    assert_eq!(c.network(nwid).unwrap().membership_revision, 0);
    c.delete_member(nwid, addr(1), "t", t(2)).unwrap();
    assert_eq!(c.network(nwid).unwrap().membership_revision, 1);
}

#[test]
fn active_bridges_are_listed_in_configs() {
    let c = controller();
    let nwid = lab(&c);
    c.post_member(
        nwid,
        addr(1),
        &body(json!({"authorized": true, "activeBridge": true})),
        "t",
        t(0),
    )
    .unwrap();
    c.post_member(nwid, addr(2), &body(json!({"authorized": true})), "t", t(0))
        .unwrap();
    let Decision::Config(cfg) = c.request(&req(nwid, addr(2)), t(1), &signer()).unwrap() else {
        panic!("expected a config");
    };
    assert_eq!(cfg.active_bridges, vec![addr(1)]);
    assert!(
        c.member(nwid, addr(1)).unwrap().ip_assignments.is_empty(),
        "bridges get no automatic address"
    );
}

#[test]
fn data_survives_reopening_the_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(RedbStore::FILE_NAME);
    let nwid;
    {
        let c = Controller::new(
            Box::new(RedbStore::create(&path).unwrap()),
            CTRL.parse().unwrap(),
            [1; 32],
        );
        nwid = lab(&c);
        c.post_member(nwid, addr(1), &body(json!({"authorized": true})), "t", t(0))
            .unwrap();
    }
    let c = Controller::new(
        Box::new(RedbStore::open(&path).unwrap()),
        CTRL.parse().unwrap(),
        [1; 32],
    );
    let m = c.member(nwid, addr(1)).unwrap();
    assert!(m.authorized);
    assert_eq!(m.ip_assignments.len(), 1);
    // The index came back too: nobody else can take that address.
    let ip = m.ip_assignments[0].to_string();
    assert!(matches!(
        c.post_member(
            nwid,
            addr(2),
            &body(json!({"ipAssignments": [ip]})),
            "t",
            t(1)
        ),
        Err(ControllerError::Conflict(_))
    ));
}

// Writing damaged database files is the point of this test.
#[allow(clippy::disallowed_methods)]
#[test]
fn an_empty_or_foreign_database_file_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(RedbStore::FILE_NAME);
    for (what, bytes) in [
        ("empty", &b""[..]),
        (
            "foreign",
            &b"this is not a redb database, just some text"[..],
        ),
    ] {
        std::fs::write(&path, bytes).unwrap();
        let err = RedbStore::open(&path).err().expect(what);
        assert!(
            matches!(err, ControllerError::DamagedDatabase { .. }),
            "{what}: {err}"
        );
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("restore the file from a backup"), "{text}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{what} file kept as it was"
        );
    }
    std::fs::remove_file(&path).unwrap();
    let err = RedbStore::open(&path).err().expect("missing");
    assert!(
        matches!(err, ControllerError::DamagedDatabase { .. }),
        "{err}"
    );
    assert!(!path.exists(), "opening never creates a database");
}
