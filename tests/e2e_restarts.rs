//! Restarts are invisible, with real processes in namespaces: the controller and a
//! member are each restarted cleanly and killed with SIGKILL; after each, a member's
//! ping over the overlay gets through again and (after a controller restart) a new
//! member's join is answered, each within 10 s of the process starting again.
//!
//! The recovery times are printed. `SKYLAN_RESTART_ROUNDS` (default 1) repeats the four
//! restarts, for figures over many (the median and worst are printed).
//! Needs root; skips loudly otherwise.

// Recovery times are measured with the wall clock and printed.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use support::networks::{authorized_network, controller, managed_ip, ping_ip, wait_status};
use support::{Daemon, Ending, Testbed, wait_until};

const ROOT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 51);
const CTRL_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 52);
const A_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 53);
const B_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 54);
const C_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 55);
/// What "invisible" allows: traffic and joins work again this soon after the restart.
const RECOVERY: Duration = Duration::from_secs(10);

/// Seconds from `since` until `a` pings `ip` over the overlay.
fn ping_back(tb: &Testbed, a: &Daemon, ip: &str, since: Instant) -> Result<f64> {
    wait_until("a pings b over the overlay again", RECOVERY, || {
        ensure!(ping_ip(tb, a, ip)?, "no reply");
        Ok(())
    })?;
    Ok(since.elapsed().as_secs_f64())
}

/// Seconds from `since` until `c`'s join of `nwid` is answered and c is authorized.
fn join_back(tb: &Testbed, ctrl: &Daemon, c: &Daemon, nwid: &str, since: Instant) -> Result<f64> {
    tb.cli(c, &["join", nwid])?;
    let member = c.address.to_string();
    wait_until("the controller answers c's join", RECOVERY, || {
        controller(tb, ctrl, &["member", "authorize", nwid, &member])?;
        let n = support::networks::network(tb, c, nwid)?;
        ensure!(n["status"] == "OK", "status {}", n["status"]);
        Ok(())
    })?;
    let took = since.elapsed().as_secs_f64();
    tb.cli(c, &["leave", nwid])?;
    controller(tb, ctrl, &["member", "deauthorize", nwid, &member])?;
    Ok(took)
}

fn summary(what: &str, mut times: Vec<f64>) -> String {
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let worst = times[times.len() - 1];
    format!(
        "{what}: median {median:.2} s, worst {worst:.2} s over {}",
        times.len()
    )
}

#[test]
fn restarted_controllers_and_members_are_reached_again_within_10_s() -> Result<()> {
    let Some(tb) = Testbed::new(
        "restarted_controllers_and_members_are_reached_again_within_10_s",
        "e2erst",
    )?
    else {
        return Ok(());
    };
    let rounds: usize = std::env::var("SKYLAN_RESTART_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let root_host = tb.public_host("root", ROOT_IP)?;
    let ctrl_host = tb.public_host("ctrl", CTRL_IP)?;
    let a_host = tb.public_host("a", A_IP)?;
    let b_host = tb.public_host("b", B_IP)?;
    let c_host = tb.public_host("c", C_IP)?;
    let (_roots, planet) = tb.start_planet(&[("root", &root_host)])?;
    let mut ctrl = tb.start_node("ctrl", &ctrl_host, &planet, &["--controller"])?;
    let a = tb.start_node("a", &a_host, &planet, &[])?;
    let mut b = tb.start_node("b", &b_host, &planet, &[])?;
    let c = tb.start_node("c", &c_host, &planet, &[])?;
    for d in [&ctrl, &a, &b, &c] {
        tb.wait_online(d, Duration::from_secs(30))?;
    }
    let (nwid, entries) = authorized_network(
        &tb,
        &ctrl,
        &[&a, &b],
        "198.18.2.10-198.18.2.250",
        "198.18.2.0/24",
    )?;
    let ip_b = managed_ip(&entries[1])?;
    wait_until("a pings b over the overlay", RECOVERY * 4, || {
        ensure!(ping_ip(&tb, &a, &ip_b)?, "no reply");
        Ok(())
    })?;

    let (mut ctrl_ping, mut ctrl_join, mut member_ping) = (vec![], vec![], vec![]);
    for _ in 0..rounds {
        for ending in [Ending::Clean, Ending::Crash] {
            tb.restart_after(&mut ctrl, ending)?;
            let since = Instant::now();
            ctrl_ping.push(ping_back(&tb, &a, &ip_b, since)?);
            ctrl_join.push(join_back(&tb, &ctrl, &c, &nwid, since)?);
            tb.note(format!(
                "controller {ending:?}: join answered, ping through"
            ));

            tb.restart_after(&mut b, ending)?;
            let since = Instant::now();
            member_ping.push(ping_back(&tb, &a, &ip_b, since)?);
            wait_status(&tb, &b, &nwid, "OK")?;
            tb.note(format!("member {ending:?}: ping through"));
        }
    }
    tb.report(summary(
        "controller restart -> new join answered",
        ctrl_join,
    ));
    tb.report(summary("controller restart -> member ping", ctrl_ping));
    tb.report(summary("member restart -> ping from a peer", member_ping));
    tb.finish();
    Ok(())
}
