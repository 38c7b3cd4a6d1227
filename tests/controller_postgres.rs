//! The controller on PostgreSQL (`--controller-db`): the same store contract as the
//! embedded database (revisions, the IP allocation index, deletes that take everything
//! with them, the audit log, paging, data that outlives the process), and the lock that
//! makes a second controller with the same identity wait.
//!
//! Each test starts its own PostgreSQL server (Debian's package, as the `postgres`
//! user) listening on a Unix socket only. Needs root; skips loudly otherwise.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Map, Value, json};
use skylan::controller::{Controller, ControllerError};
use skylan::io::postgres::PgStore;
use skylan::lab::require_root;
use skylan::types::{NodeAddress, UnixTime};
use support::postgres::PgServer;

const CTRL: &str = "89e92ceee5";

fn server(test: &str) -> Result<Option<PgServer>> {
    if !require_root(test) {
        return Ok(None);
    }
    PgServer::start(None).map(Some)
}

fn controller(url: &str, address: &str) -> Result<Controller> {
    let address: NodeAddress = address.parse()?;
    let store = PgStore::open(url, address)?;
    Ok(Controller::new(Box::new(store), address, [7; 32]))
}

fn body(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn now() -> UnixTime {
    UnixTime::from_millis(1_800_000_000_000)
}

fn member(i: u64) -> NodeAddress {
    NodeAddress::new(0x02_0000_0000 + i).expect("a valid address")
}

#[test]
fn the_store_keeps_its_contract_on_postgres() -> Result<()> {
    let Some(pg) = server("the_store_keeps_its_contract_on_postgres")? else {
        return Ok(());
    };
    let url = pg.socket_url();
    let c = controller(&url, CTRL)?;
    let nwid = c
        .create_network(
            &body(json!({
                "name": "pg",
                "v4AssignMode": {"zt": true},
                "ipAssignmentPools": [{"ipRangeStart": "198.18.0.1", "ipRangeEnd": "198.18.0.254"}],
                "routes": [{"target": "198.18.0.0/24", "via": null}]
            })),
            "test",
            now(),
        )?
        .record
        .id;

    // Revisions count saves; pool addresses are assigned on authorization.
    for i in 0..30 {
        c.post_member(
            nwid,
            member(i),
            &body(json!({"authorized": true})),
            "test",
            now(),
        )?;
    }
    let first = c.member(nwid, member(0))?;
    ensure!(
        first.revision == 1,
        "a new member has revision {}",
        first.revision
    );
    let renamed = c.post_member(nwid, member(0), &body(json!({"name": "a"})), "test", now())?;
    ensure!(
        renamed.record.revision == 2,
        "revision after one update: {}",
        renamed.record.revision
    );
    let taken = first.ip_assignments[0];

    // One address, one member: a conflict changes nothing.
    let err = c
        .post_member(
            nwid,
            member(1),
            &body(json!({"ipAssignments": [taken.to_string()]})),
            "test",
            now(),
        )
        .err()
        .context("a second member got an address that is held")?;
    ensure!(matches!(err, ControllerError::Conflict(_)), "{err}");
    ensure!(
        c.member(nwid, member(1))?.revision == 1,
        "the refused write changed the member"
    );

    // Deleting the member frees its address for another.
    c.delete_member(nwid, member(0), "test", now())?;
    c.post_member(
        nwid,
        member(1),
        &body(json!({"ipAssignments": [taken.to_string()]})),
        "test",
        now(),
    )?;
    ensure!(
        c.member(nwid, member(1))?.ip_assignments == vec![taken],
        "the freed address was not given"
    );

    // Paging walks every member once, in order.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = c.members_after(nwid, after, 7)?;
        let Some(last) = page.last() else { break };
        after = Some(last.address);
        seen.extend(page.iter().map(|m| m.address));
    }
    let all: Vec<NodeAddress> = (1..30).map(member).collect();
    ensure!(
        seen == all,
        "pages gave {} members, not the 29 in order",
        seen.len()
    );

    // The audit log numbers every change.
    let audit = c.audit(0, 1000)?;
    ensure!(audit.len() >= 33, "{} audit entries", audit.len());
    ensure!(
        audit.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "audit sequence numbers have gaps"
    );

    // Everything outlives the process's store; a deleted network takes its members.
    drop(c);
    let c = controller(&url, CTRL)?;
    ensure!(c.members(nwid)?.len() == 29, "members after reopening");
    ensure!(c.networks()? == vec![nwid], "networks after reopening");
    c.delete_network(nwid, "test", now())?;
    ensure!(c.networks()?.is_empty(), "the network is still listed");
    let rows = pg.sql("skylan", "SELECT count(*) FROM skylan_members")?;
    ensure!(
        rows == "0",
        "{rows} member rows left after deleting the network"
    );
    let rows = pg.sql("skylan", "SELECT count(*) FROM skylan_ip_index")?;
    ensure!(
        rows == "0",
        "{rows} allocation rows left after deleting the network"
    );
    Ok(())
}

#[test]
fn a_second_controller_with_the_same_identity_waits_for_the_lock() -> Result<()> {
    let Some(pg) = server("a_second_controller_with_the_same_identity_waits_for_the_lock")? else {
        return Ok(());
    };
    let url = pg.socket_url();
    let serving = controller(&url, CTRL)?;
    serving.create_network(&body(json!({"name": "one"})), "test", now())?;

    let (done, opened) = mpsc::channel();
    let standby_url = url.clone();
    std::thread::spawn(move || {
        let _ = done.send(controller(&standby_url, CTRL));
    });
    ensure!(
        opened.recv_timeout(Duration::from_secs(3)).is_err(),
        "the standby opened while the first controller held the lock"
    );
    let stopped = Instant::now();
    drop(serving);
    let standby = opened
        .recv_timeout(Duration::from_secs(10))
        .context("the standby did not take over within 10 s")??;
    eprintln!(
        "standby took over {:?} after the serving store closed",
        stopped.elapsed()
    );
    ensure!(
        standby.networks()?.len() == 1,
        "the standby sees another state"
    );
    standby.create_network(&body(json!({"name": "two"})), "test", now())?;
    ensure!(standby.networks()?.len() == 2, "the standby cannot write");
    Ok(())
}
