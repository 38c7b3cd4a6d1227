//! A network of 10,000 authorized members with real processes: the members are created
//! through the controller's HTTP API, then two real members join, reach OK and ping
//! each other, and a revocation still stops a member's traffic within 5 seconds. No
//! config lists the members, so a config's size and a join's time do not grow with
//! the network; both are printed at 10, 1,000 and 10,000 members, with the API's
//! latency per member write (never asserted tightly).
//!
//! Needs root; skips loudly otherwise.

// Latencies are measured with the wall clock and printed.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use skylan::cli::client::raw_request;
use support::networks::{
    STEP, controller, create_network, managed_ip, ping_ip, start_controlled_lab, wait_status,
};
use support::{Daemon, Testbed, wait_until};

const ROOT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 81);
const CTRL_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 82);
const A_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 83);
const B_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 84);

/// Members of the network, the two real ones included.
const SIZES: [usize; 3] = [10, 1_000, 10_000];

/// The `i`th made-up member address (valid, distinct, never a real node's).
fn member_address(i: usize) -> String {
    format!("{:010x}", 0x3a_0000_0000u64 + (i as u64) * 0x1_0007)
}

/// Authorizes members `from..to` (made-up addresses) through the controller's HTTP API
/// from inside its namespace; returns each write's latency.
fn add_members(ctrl: &Daemon, nwid: &str, from: usize, to: usize) -> Result<Vec<Duration>> {
    let token = std::fs::read_to_string(ctrl.home.join("authtoken.secret"))?;
    let port: u16 = std::fs::read_to_string(ctrl.home.join("skylan.port"))?
        .trim()
        .parse()?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let nwid = nwid.to_string();
    ctrl.host.run(move || -> Result<Vec<Duration>> {
        let token = token.trim();
        let mut took = Vec::with_capacity(to - from);
        for i in from..to {
            let path = format!("/controller/network/{nwid}/member/{}", member_address(i));
            let start = Instant::now();
            let resp = raw_request(
                addr,
                "POST",
                &path,
                &[("X-ZT1-Auth", token)],
                br#"{"authorized": true}"#,
            )?;
            took.push(start.elapsed());
            ensure!(
                resp.status == 200,
                "POST {path}: {} {}",
                resp.status,
                String::from_utf8_lossy(&resp.body)
            );
        }
        Ok(took)
    })?
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `a` leaves and joins again; returns the time to OK and to the first answered ping
/// to `ip_b`, and the size of the config it cached.
fn rejoin(tb: &Testbed, a: &Daemon, nwid: &str, ip_b: &str) -> Result<(Duration, Duration, u64)> {
    tb.cli(a, &["leave", nwid])?;
    wait_until("a left", STEP, || {
        ensure!(tb.network(a, nwid).is_err(), "still listed");
        Ok(())
    })?;
    let start = Instant::now();
    tb.cli(a, &["join", nwid])?;
    wait_status(tb, a, nwid, "OK")?;
    let ok = start.elapsed();
    wait_until("a pings b", STEP, || {
        ensure!(ping_ip(tb, a, ip_b)?, "no reply");
        Ok(())
    })?;
    let pinged = start.elapsed();
    let size = std::fs::metadata(a.home.join("networks.d").join(format!("{nwid}.conf")))
        .map(|m| m.len())
        .context("a's cached config")?;
    Ok((ok, pinged, size))
}

#[test]
fn ten_thousand_members_two_of_them_real_join_ping_and_are_revoked() -> Result<()> {
    let Some(tb) = Testbed::new(
        "ten_thousand_members_two_of_them_real_join_ping_and_are_revoked",
        "e2escale",
    )?
    else {
        return Ok(());
    };
    let lab = start_controlled_lab(&tb, ROOT_IP, CTRL_IP, &[("a", A_IP), ("b", B_IP)])?;
    let (ctrl, a, b) = (&lab.ctrl, &lab.members[0], &lab.members[1]);
    let nwid = create_network(&tb, ctrl, "198.18.0.1-198.19.255.254", "198.18.0.0/15")?;
    for d in [a, b] {
        tb.cli(d, &["join", &nwid])?;
        controller(
            &tb,
            ctrl,
            &["member", "authorize", &nwid, &d.address.to_string()],
        )?;
    }
    let (na, nb) = (
        wait_status(&tb, a, &nwid, "OK")?,
        wait_status(&tb, b, &nwid, "OK")?,
    );
    let (ip_a, ip_b) = (managed_ip(&na)?, managed_ip(&nb)?);

    let mut made = 0;
    for size in SIZES {
        let mut took = add_members(ctrl, &nwid, made, size - 2)?;
        made = size - 2;
        let (ok, pinged, config) = rejoin(&tb, a, &nwid, &ip_b)?;
        took.sort();
        let api = if took.is_empty() {
            String::new()
        } else {
            format!(
                "; member writes: p50 {:.1} ms, p99 {:.1} ms over {}",
                percentile(&took, 0.5).as_secs_f64() * 1e3,
                percentile(&took, 0.99).as_secs_f64() * 1e3,
                took.len()
            )
        };
        tb.report(format!(
            "{size} members: config {config} bytes, join to OK {:.2} s, to first ping {:.2} s{api}",
            ok.as_secs_f64(),
            pinged.as_secs_f64(),
        ));
        ensure!(config < 4_096, "a config lists no members ({config} bytes)");
    }
    let listed = tb.http(ctrl, "GET", &format!("/controller/network/{nwid}/member"))?;
    let listed: serde_json::Value = serde_json::from_slice(&listed.body)?;
    let count = listed.as_object().map_or(0, |m| m.len());
    ensure!(count == 10_000, "the controller lists {count} members");
    ensure!(ping_ip(&tb, b, &ip_a)?, "b pings a back");

    // Revocation among 10,000: a's traffic to b stops within 5 s.
    let revoked_at = Instant::now();
    controller(
        &tb,
        ctrl,
        &["member", "deauthorize", &nwid, &a.address.to_string()],
    )?;
    let (_, stopped) = wait_until("a's pings stop", STEP, || {
        ensure!(!ping_ip(&tb, a, &ip_b)?, "still answered");
        Ok(())
    })?;
    tb.report(format!(
        "revocation among 10,000 members: a's pings stopped {:.1} s after the call",
        stopped.as_secs_f64()
    ));
    ensure!(
        revoked_at.elapsed() <= Duration::from_secs(5) + Duration::from_secs(2),
        "revocation took {:.1} s (5 s allowed, plus one ping's timeout)",
        revoked_at.elapsed().as_secs_f64()
    );
    Ok(())
}
