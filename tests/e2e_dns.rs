//! A network's DNS settings reach the host's resolver only when the member allows DNS,
//! end to end with real processes in namespaces. systemd-resolved does not run in a
//! test namespace, so each member finds a `resolvectl` of the test's own first on its
//! `PATH`: member a's records its arguments (what the node asked for), member b's fails
//! as `resolvectl` does when systemd-resolved is not running.
//!
//! Checked: with `allowDNS` off (the default) nothing is run and `networks` lists the
//! DNS settings as skipped for `allowDNS`; `skylan set <nwid> allowDNS=true` sets the
//! servers and search domain on the network's device; turning it off and leaving the
//! network take them back (`resolvectl revert`); a failing resolver is reported as
//! skipped with the code `resolver`.
//!
//! Needs root (skips loudly otherwise).

// Tests run programs, read the daemons' files and wait.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use support::networks::{STEP, controller, wait_status};
use support::{Testbed, wait_until};

const ROOT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 57);
const CTRL_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 58);
const A_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 59);
const B_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 60);
const DNS_SERVER: &str = "198.18.10.53";
const DOMAIN: &str = "lab.example";

/// A directory holding an executable `resolvectl` with `script` as its body; the
/// environment that puts it first on `PATH`.
fn fake_resolvectl(dir: &Path, script: &str) -> Result<Vec<(OsString, OsString)>> {
    std::fs::create_dir_all(dir)?;
    let tool = dir.join("resolvectl");
    std::fs::write(&tool, format!("#!/bin/sh\n{script}\n"))?;
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755))?;
    let mut path = OsString::from(dir);
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    Ok(vec![("PATH".into(), path)])
}

/// The `skipped` entry of a network for its DNS settings.
fn dns_skipped(n: &Value) -> Option<&Value> {
    n["skipped"].as_array()?.iter().find(|s| s["dns"] == true)
}

#[test]
fn dns_settings_reach_the_resolver_only_when_allowed_and_go_away_again() -> Result<()> {
    let Some(tb) = Testbed::new(
        "dns_settings_reach_the_resolver_only_when_allowed_and_go_away_again",
        "e2edns",
    )?
    else {
        return Ok(());
    };
    let calls = tb.dir().join("resolvectl-calls");
    let recording = fake_resolvectl(
        &tb.dir().join("tool-a"),
        &format!("echo \"$*\" >> '{}'", calls.display()),
    )?;
    let failing = fake_resolvectl(
        &tb.dir().join("tool-b"),
        "echo 'Failed to set DNS configuration: Unit dbus-org.freedesktop.resolve1.service not found.' >&2; exit 1",
    )?;
    let root_host = tb.public_host("root", ROOT_IP)?;
    let ctrl_host = tb.public_host("ctrl", CTRL_IP)?;
    let a_host = tb.public_host("a", A_IP)?;
    let b_host = tb.public_host("b", B_IP)?;
    let (_roots, planet) = tb.start_planet(&[("root", &root_host)])?;
    let ctrl = tb.start_node("ctrl", &ctrl_host, &planet, &["--controller"])?;
    let a = tb.start_node_with_env("a", &a_host, &planet, &[], recording)?;
    let b = tb.start_node_with_env("b", &b_host, &planet, &[], failing)?;
    for d in [&ctrl, &a, &b] {
        tb.wait_online(d, STEP)?;
    }
    let created = controller(
        &tb,
        &ctrl,
        &[
            "network",
            "create",
            "--name",
            "dns",
            "--pool",
            "198.18.10.10-198.18.10.20",
            "--route",
            "198.18.10.0/24",
        ],
    )?;
    let nwid = created["id"].as_str().context("network id")?.to_string();
    let dns = format!("dns={{\"domain\":\"{DOMAIN}\",\"servers\":[\"{DNS_SERVER}\"]}}");
    controller(&tb, &ctrl, &["network", "set", &nwid, &dns])?;
    for d in [&a, &b] {
        tb.cli(d, &["join", &nwid])?;
        controller(
            &tb,
            &ctrl,
            &["member", "authorize", &nwid, &d.address.to_string()],
        )?;
    }

    // Off by default: listed as skipped, nothing run.
    let n = wait_status(&tb, &a, &nwid, "OK")?;
    let dev = n["portDeviceName"]
        .as_str()
        .context("a's device")?
        .to_string();
    let s = dns_skipped(&n).with_context(|| format!("DNS not listed as skipped: {n}"))?;
    ensure!(s["reason"] == "allowDNS", "{s}");
    ensure!(!calls.exists(), "resolvectl ran while DNS was not allowed");

    // Allowed: servers and search domain on the device, and no longer skipped.
    let out = tb.cli(&a, &["set", &nwid, "allowDNS=true"])?;
    ensure!(out.success(), "set allowDNS: {}", out.stderr);
    let read_calls = || std::fs::read_to_string(&calls).unwrap_or_default();
    wait_until("a's DNS settings applied", STEP, || {
        let log = read_calls();
        ensure!(
            log.contains(&format!("dns {dev} {DNS_SERVER}\n")),
            "calls: {log:?}"
        );
        ensure!(
            log.contains(&format!("domain {dev} {DOMAIN}\n")),
            "calls: {log:?}"
        );
        Ok(())
    })?;
    let n = tb.network(&a, &nwid)?;
    ensure!(dns_skipped(&n).is_none(), "still skipped: {n}");
    ensure!(n["allowDNS"] == true, "{n}");

    // Off again: taken back.
    let applied = read_calls().lines().count();
    let out = tb.cli(&a, &["set", &nwid, "allowDNS=false"])?;
    ensure!(out.success(), "set allowDNS: {}", out.stderr);
    wait_until("a's DNS settings taken back", STEP, || {
        let log = read_calls();
        let new: Vec<&str> = log.lines().skip(applied).collect();
        ensure!(new == [format!("revert {dev}")], "calls since: {new:?}");
        Ok(())
    })?;

    // Leaving takes them back too.
    let out = tb.cli(&a, &["set", &nwid, "allowDNS=true"])?;
    ensure!(out.success(), "set allowDNS: {}", out.stderr);
    wait_until("a's DNS settings applied again", STEP, || {
        ensure!(read_calls().ends_with(&format!("domain {dev} {DOMAIN}\n")));
        Ok(())
    })?;
    let applied = read_calls().lines().count();
    let out = tb.cli(&a, &["leave", &nwid])?;
    ensure!(out.success(), "leave: {}", out.stderr);
    wait_until("a's DNS settings taken back on leave", STEP, || {
        let log = read_calls();
        let new: Vec<&str> = log.lines().skip(applied).collect();
        ensure!(new == [format!("revert {dev}")], "calls since: {new:?}");
        Ok(())
    })?;

    // A resolver that fails is reported, with the network otherwise working.
    let out = tb.cli(&b, &["set", &nwid, "allowDNS=true"])?;
    ensure!(out.success(), "set allowDNS: {}", out.stderr);
    wait_until("b reports its resolver", STEP, || {
        let n = tb.network(&b, &nwid)?;
        ensure!(n["status"] == "OK", "{n}");
        let s = dns_skipped(&n).with_context(|| format!("not skipped: {n}"))?;
        ensure!(s["reason"] == "resolver", "{s}");
        ensure!(
            s["message"]
                .as_str()
                .is_some_and(|m| m.contains("systemd-resolved")),
            "{s}"
        );
        Ok(())
    })?;
    tb.finish();
    Ok(())
}
