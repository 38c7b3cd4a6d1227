//! Damaged state is refused, never silently replaced — with real processes in
//! namespaces: a root, a node running the controller and a member of one network.
//!
//! - The controller's database emptied (0 bytes) or overwritten: `skylan node
//!   --controller` exits with a message naming the file and leaves it as it was; the
//!   database restored from a copy (with a mode others can read) starts again with its
//!   network, and the file is 0600 again.
//! - The member's `identity.secret` gone while `identity.public` is there: the node
//!   refuses to start and mints no new address; an `identity.public` of another node
//!   next to the secret: refused, naming `identity.public`.
//! - The member's cached network config damaged: logged, kept aside as
//!   `<nwid>.conf.damaged`, and the member gets a fresh config from the controller.
//!
//! Needs root; skips loudly otherwise.

// Home files are damaged and inspected directly.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use support::{CLI_TIMEOUT, Daemon, Testbed, run_with_timeout, skylan_bin, wait_until};

const ROOT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 41);
const CTRL_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 42);
const M_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 43);

const STEP: Duration = Duration::from_secs(40);
/// How long a refusing daemon may take to exit (it exits while loading its home).
const REFUSAL: Duration = Duration::from_secs(20);

fn mode(path: &Path) -> Result<u32> {
    Ok(fs::metadata(path)
        .with_context(|| format!("{}", path.display()))?
        .permissions()
        .mode()
        & 0o777)
}

/// Requires every piece of `wanted` in `log`.
fn logged(log: &str, wanted: &[&str]) -> Result<()> {
    for w in wanted {
        ensure!(log.contains(w), "expected {w:?} in the log:\n{log}");
    }
    Ok(())
}

#[test]
fn damaged_state_is_refused_and_never_replaced() -> Result<()> {
    let Some(tb) = Testbed::new("damaged_state_is_refused_and_never_replaced", "e2edamage")? else {
        return Ok(());
    };
    let root_host = tb.public_host("root", ROOT_IP)?;
    let ctrl_host = tb.public_host("ctrl", CTRL_IP)?;
    let m_host = tb.public_host("m", M_IP)?;
    let (_roots, planet) = tb.start_planet(&[("root", &root_host)])?;
    let mut ctrl = tb.start_node("ctrl", &ctrl_host, &planet, &["--controller"])?;
    let mut m = tb.start_node("m", &m_host, &planet, &[])?;
    for d in [&ctrl, &m] {
        tb.wait_online(d, Duration::from_secs(30))?;
    }
    let created = tb.cli_json(
        &ctrl,
        &[
            "controller",
            "network",
            "create",
            "--name",
            "lab",
            "--pool",
            "198.18.0.10-198.18.0.250",
            "--route",
            "198.18.0.0/24",
        ],
    )?;
    let nwid = created["id"].as_str().context("network id")?.to_string();
    tb.cli(&m, &["join", &nwid])?;
    tb.cli_json(
        &ctrl,
        &[
            "controller",
            "member",
            "authorize",
            &nwid,
            &m.address.to_string(),
        ],
    )?;
    tb.wait_network_status(&m, &nwid, "OK", STEP)?;

    controller_database(&tb, &mut ctrl, &nwid)?;
    member_identity(&tb, &mut m)?;
    cached_config(&tb, &mut m, &nwid)?;
    tb.finish();
    Ok(())
}

/// An emptied or overwritten database stops the controller; the real one starts again.
fn controller_database(tb: &Testbed, ctrl: &mut Daemon, nwid: &str) -> Result<()> {
    let db = ctrl.home.join("controller.d").join("controller.redb");
    ensure!(mode(&db)? == 0o600, "database mode {:o}", mode(&db)?);
    tb.stop(ctrl)?;
    let backup = fs::read(&db)?;

    fs::write(&db, b"")?;
    let log = tb.start_expecting_refusal(ctrl, REFUSAL)?;
    logged(
        &log,
        &[&db.display().to_string(), "is empty (0 bytes)", "backup"],
    )?;
    ensure!(
        fs::read(&db)?.is_empty(),
        "the emptied database was replaced"
    );

    fs::write(&db, b"not a database at all")?;
    let log = tb.start_expecting_refusal(ctrl, REFUSAL)?;
    logged(&log, &[&db.display().to_string(), "cannot be opened"])?;
    ensure!(
        fs::read(&db)? == b"not a database at all",
        "the file was changed"
    );

    // Restored from the copy, readable by others: it starts, and is private again.
    fs::write(&db, &backup)?;
    fs::set_permissions(&db, fs::Permissions::from_mode(0o644))?;
    tb.restart(ctrl)?;
    tb.wait_online(ctrl, Duration::from_secs(30))?;
    let networks = tb.cli_json(ctrl, &["controller", "networks"])?;
    ensure!(
        networks
            .as_array()
            .is_some_and(|a| a.iter().any(|n| n == nwid)),
        "the restored database has the network: {networks}"
    );
    ensure!(
        mode(&db)? == 0o600,
        "database mode after start {:o}",
        mode(&db)?
    );
    let log = fs::read_to_string(&ctrl.log)?;
    logged(&log, &["changed it to 0600"])
}

/// A missing or mismatched secret stops the node; it never makes a new identity.
fn member_identity(tb: &Testbed, m: &mut Daemon) -> Result<()> {
    let secret = m.home.join("identity.secret");
    let public = m.home.join("identity.public");
    let aside = m.home.join("identity.secret.aside");
    let public_text = fs::read_to_string(&public)?;
    tb.stop(m)?;

    fs::rename(&secret, &aside)?;
    let log = tb.start_expecting_refusal(m, REFUSAL)?;
    logged(
        &log,
        &["identity.secret", "is missing", &m.address.to_string()],
    )?;
    ensure!(!secret.exists(), "a new identity.secret was written");
    ensure!(
        fs::read_to_string(&public)? == public_text,
        "identity.public changed"
    );

    // The public identity of another node beside this node's secret.
    let other = tb.dir().join("other-identity");
    fs::create_dir_all(&other)?;
    let out = run_with_timeout(
        Command::new(skylan_bin())
            .args(["idtool", "generate"])
            .arg(other.join("identity.secret"))
            .arg(other.join("identity.public")),
        CLI_TIMEOUT,
    )?;
    ensure!(out.success(), "idtool generate: {}", out.stderr);
    fs::rename(&aside, &secret)?;
    fs::copy(other.join("identity.public"), &public)?;
    let log = tb.start_expecting_refusal(m, REFUSAL)?;
    logged(
        &log,
        &[
            &public.display().to_string(),
            "does not match identity.secret",
        ],
    )?;

    // Doing what the message says (delete identity.public) brings the node back as itself.
    fs::remove_file(&public)?;
    tb.restart(m)?;
    ensure!(
        fs::read_to_string(&public)? == public_text,
        "identity.public rewritten"
    );
    tb.wait_online(m, Duration::from_secs(30))?;
    Ok(())
}

/// A damaged cached config is logged and kept aside, and a fresh one replaces it.
fn cached_config(tb: &Testbed, m: &mut Daemon, nwid: &str) -> Result<()> {
    let conf = m.home.join("networks.d").join(format!("{nwid}.conf"));
    let kept = m
        .home
        .join("networks.d")
        .join(format!("{nwid}.conf.damaged"));
    ensure!(
        fs::metadata(&conf)?.len() > 0,
        "the member cached its config"
    );
    tb.stop(m)?;
    let damaged = b"this is not a signed network config".to_vec();
    fs::write(&conf, &damaged)?;
    tb.start_again(m)?;
    wait_until("the damaged cache to be reported", STEP, || {
        let log = fs::read_to_string(&m.log)?;
        logged(&log, &[&conf.display().to_string(), "does not verify"])
    })?;
    ensure!(
        fs::read(&kept)? == damaged,
        "the damaged config is kept aside"
    );
    tb.wait_network_status(m, nwid, "OK", STEP)?;
    wait_until("a fresh config in the cache", STEP, || {
        let now = fs::read(&conf)?;
        ensure!(!now.is_empty() && now != damaged, "not yet");
        Ok(())
    })?;
    Ok(())
}
