//! Moons with real `skylan` processes in network namespaces: a planet of one root R, a
//! moon root M (`idtool initmoon` + `genmoon` into M's `moons.d`, started as
//! `skylan root --planet PLANET`), a controller, and members A and B behind symmetric
//! NATs (they cannot go direct, so every packet between them is relayed by a root).
//!
//! The scenario, driven through the CLI and the local API as a user would:
//! 1. A orbits the moon with `skylan orbit <id> <M>`, B with `POST /moon/<id>
//!    {"seed": "<M>"}` (what `zerotier-cli orbit` sends); both hold it (`moons -j` not
//!    waiting), list M with role MOON, and A has written `moons.d/<id>.moon`;
//! 2. R is killed: A still pings B, relayed through M;
//! 3. A restarts (R still dead): it orbits the moon from `moons.d` without being told
//!    and reaches B through M again;
//! 4. `deorbit` removes the moon and its file.
//!
//! The time until the moon is held after `orbit`, until pings pass after R is killed
//! and after A's restart are printed, not asserted (beyond generous bounds).
//!
//! Needs root (namespaces, nftables); skips loudly otherwise.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use skylan::lab::NatKind;
use skylan::types::NodeAddress;
use support::networks::{authorized_network, managed_ip, ping_ip};
use support::{CLI_TIMEOUT, Daemon, PORT, RootSpec, Testbed, run_with_timeout, skylan_bin};

const R_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
const M_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 31);
const CTRL_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 40);
const A_PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 21);
const B_PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 22);
const A_PRIVATE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const B_PRIVATE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);

/// A node reaching its root, on a loaded 2-core CI machine.
const ONLINE: Duration = Duration::from_secs(30);
/// From `orbit` until the moon is held and its root answers (the seed is asked every
/// 2 s; finding it goes through the planet).
const HELD: Duration = Duration::from_secs(40);
/// From R's death until relayed pings pass through M (a dead root is noticed within
/// about 9 s).
const FAILOVER: Duration = Duration::from_secs(40);
/// From A's restart until it reaches B again (its identity, the moon from disk, a new
/// session with B).
const RESTART: Duration = Duration::from_secs(60);

/// Writes the moon of root `m` into `m`'s `moons.d` with `idtool initmoon` and
/// `genmoon`, as an operator would; returns the moon's id (16 hex digits).
fn make_moon(tb: &Testbed, m: &RootSpec) -> Result<String> {
    let template = tb.dir().join("moon.tmpl");
    let moons = m.home.join("moons.d");
    std::fs::create_dir_all(&moons)?;
    let endpoint = format!("{}/{}", m.host.ip, m.port);
    let steps: [Vec<std::ffi::OsString>; 2] = [
        vec![
            "initmoon".into(),
            m.home.join("identity.public").into(),
            "--endpoint".into(),
            endpoint.into(),
            "--out".into(),
            template.clone().into(),
        ],
        vec![
            "genmoon".into(),
            template.into(),
            "--secret".into(),
            m.home.join("identity.secret").into(),
            "--out-dir".into(),
            moons.into(),
        ],
    ];
    for args in steps {
        let out = run_with_timeout(
            Command::new(skylan_bin()).arg("idtool").args(&args),
            CLI_TIMEOUT,
        )?;
        ensure!(out.success(), "idtool {args:?} failed: {}", out.stderr);
        tb.note(format!("idtool {:?}: {}", args[0], out.stdout.trim()));
    }
    Ok(format!("{:016x}", m.address.value()))
}

/// The entry of `moons -j` on `d` for moon `id`, if listed.
fn moon_entry(tb: &Testbed, d: &Daemon, id: &str) -> Result<Option<Value>> {
    let list = tb.cli_json(d, &["moons"])?;
    let list = list.as_array().context("moons -j is a list")?;
    Ok(list.iter().find(|m| m["id"] == id).cloned())
}

/// Waits until `d` holds moon `id` (listed, not waiting, with root `m` first) and lists
/// `m` as a MOON peer that answers; returns the moon entry and how long it took.
fn wait_held(tb: &Testbed, d: &Daemon, id: &str, m: &Daemon) -> Result<(Value, Duration)> {
    let what = format!("{} holds moon {id} and hears {}", d.name, m.name);
    let m_address = m.address.to_string();
    support::wait_until(&what, HELD, || {
        tb.check_running(d)?;
        let moon = moon_entry(tb, d, id)?.context("not listed")?;
        ensure!(moon["waiting"] == false, "still waiting: {moon}");
        let first = moon["roots"][0]["identity"].as_str().unwrap_or_default();
        ensure!(first.starts_with(&m_address), "roots: {}", moon["roots"]);
        let peer = tb.peer(d, m.address)?.context("M is not a peer")?;
        ensure!(
            peer["role"] == "MOON" && peer["link"] == "DIRECT",
            "M's peer entry: {peer}"
        );
        Ok(moon)
    })
}

/// Whether a ping reply came relayed through `root`.
fn relayed_via(p: &support::Ping, root: NodeAddress) -> bool {
    p.is_relay() && p.path.as_deref() == Some(root.to_string().as_str())
}

/// Checks that `from`'s `peers -j` shows the link to `to` as RELAY via `root`.
fn peer_relays_via(tb: &Testbed, from: &Daemon, to: &Daemon, root: &Daemon) -> Result<()> {
    let p = tb
        .peer(from, to.address)?
        .with_context(|| format!("{} does not list {}", from.name, to.name))?;
    ensure!(
        p["link"] == "RELAY" && p["relay"] == root.address.to_string().as_str(),
        "{}'s peer entry for {} should be RELAY via {} ({}): {p}",
        from.name,
        to.name,
        root.name,
        root.address
    );
    Ok(())
}

#[test]
fn nodes_keep_working_through_a_moon_when_the_planet_root_is_gone() -> Result<()> {
    let Some(tb) = Testbed::new(
        "e2e_moon::nodes_keep_working_through_a_moon_when_the_planet_root_is_gone",
        "e2emoon",
    )?
    else {
        return Ok(());
    };
    let hr = tb.public_host("r", R_IP)?;
    let hm = tb.public_host("m", M_IP)?;
    let hc = tb.public_host("ctrl", CTRL_IP)?;
    let ha = tb.nat_host("a", NatKind::Symmetric, A_PUBLIC, A_PRIVATE)?;
    let hb = tb.nat_host("b", NatKind::Symmetric, B_PUBLIC, B_PRIVATE)?;
    let r_spec = tb.prepare_root("r", &hr, PORT)?;
    let m_spec = tb.prepare_root("m", &hm, PORT)?;
    let planet = tb.make_planet(&[&r_spec])?;
    let moon_id = make_moon(&tb, &m_spec)?;
    let moon_file = format!("{moon_id}.moon");
    let r = tb.start_root(&r_spec, &planet)?;
    let m = tb.start_root(&m_spec, &planet)?;
    support::wait_until("M serves the moon", ONLINE, || {
        tb.check_running(&m)?;
        let log = std::fs::read_to_string(&m.log)?;
        ensure!(
            log.lines()
                .any(|l| l.contains("serving moon") && l.contains(&moon_id)),
            "M has not logged `serving moon {moon_id}`"
        );
        Ok(())
    })?;

    let ctrl = tb.start_node("ctrl", &hc, &planet, &["--controller"])?;
    let mut a = tb.start_node("a", &ha, &planet, &[])?;
    let b = tb.start_node("b", &hb, &planet, &[])?;
    for d in [&ctrl, &a, &b] {
        tb.wait_online(d, ONLINE)?;
    }
    let (nwid, entries) = authorized_network(
        &tb,
        &ctrl,
        &[&a, &b],
        "198.18.7.10-198.18.7.250",
        "198.18.7.0/24",
    )?;
    let ip_b = managed_ip(&entries[1])?;
    support::wait_until("A pings B over the overlay (through R)", FAILOVER, || {
        ensure!(ping_ip(&tb, &a, &ip_b)?, "no reply");
        Ok(())
    })?;
    ensure!(
        moon_entry(&tb, &a, &moon_id)?.is_none(),
        "A orbits nothing yet"
    );

    // 1. Orbit: A with the CLI, B with zerotier-cli's request.
    let bad = tb.cli(&a, &["orbit", "0000736b796c616e"])?;
    ensure!(
        bad.code == Some(2),
        "a bad moon id is a usage error: {bad:?}"
    );
    let orbit_start = Instant::now();
    let asked = tb.cli_json(&a, &["orbit", &moon_id, &m.address.to_string()])?;
    ensure!(
        asked["id"] == moon_id.as_str() && asked["seed"] == m.address.to_string().as_str(),
        "orbit -j: {asked}"
    );
    let body = format!(r#"{{"seed":"{}"}}"#, m.address);
    let resp = tb.http_with_body(&b, "POST", &format!("/moon/{moon_id}"), body.as_bytes())?;
    ensure!(
        resp.status == 200,
        "POST /moon on B: {} {}",
        resp.status,
        String::from_utf8_lossy(&resp.body)
    );
    let (held_a, _) = wait_held(&tb, &a, &moon_id, &m)?;
    let held_by_a = orbit_start.elapsed();
    wait_held(&tb, &b, &moon_id, &m)?;
    let held_by_b = orbit_start.elapsed();
    let stored = std::fs::read_to_string(a.home.join("moons.d").join(&moon_file))
        .context("A stored the moon in moons.d")?;
    let published = std::fs::read_to_string(m.home.join("moons.d").join(&moon_file))?;
    ensure!(stored == published, "A stored another moon:\n{stored}");
    ensure!(
        held_a["timestamp"].as_u64().is_some_and(|t| t > 0),
        "{held_a}"
    );
    let table = tb.cli(&a, &["moons"])?;
    ensure!(
        table.success()
            && table.stdout.contains(&moon_id)
            && table.stdout.contains(&format!("{M_IP}/{PORT}")),
        "moons: {table:?}"
    );

    // 2. The planet's only root dies: A and B keep talking through M.
    tb.stop(&r)?;
    let (p, after_kill) = tb.ping_recovery(&a, &b, Duration::from_millis(250), FAILOVER, |p| {
        relayed_via(p, m.address)
    })?;
    tb.note(format!("after R died: {p:?}"));
    peer_relays_via(&tb, &a, &b, &m)?;
    support::wait_until("A pings B's managed address through M", FAILOVER, || {
        ensure!(ping_ip(&tb, &a, &ip_b)?, "no reply");
        Ok(())
    })?;

    // 3. A restarts with R still dead: the moon comes from moons.d.
    tb.restart(&mut a)?;
    let restarted = Instant::now();
    let (p, after_restart) = tb.wait_ping(&a, &b, "relayed through M", RESTART, |p| {
        relayed_via(p, m.address)
    })?;
    tb.note(format!("after A's restart: {p:?}"));
    let moon = moon_entry(&tb, &a, &moon_id)?.context("A lists the moon after a restart")?;
    ensure!(
        moon["waiting"] == false && moon["seed"].is_null(),
        "the moon comes from moons.d, not from an orbit: {moon}"
    );
    peer_relays_via(&tb, &a, &b, &m)?;
    support::wait_until(
        "A pings B's managed address after its restart",
        RESTART,
        || {
            ensure!(ping_ip(&tb, &a, &ip_b)?, "no reply");
            Ok(())
        },
    )?;
    let managed_after_restart = restarted.elapsed();
    tb.note(format!("network {nwid} carries traffic again"));

    // 4. Deorbit removes the moon and its file; a second one is refused.
    let done = tb.cli_json(&a, &["deorbit", &moon_id])?;
    ensure!(done["result"] == true, "deorbit -j: {done}");
    ensure!(
        !a.home.join("moons.d").join(&moon_file).exists(),
        "deorbit leaves {moon_file}"
    );
    ensure!(
        moon_entry(&tb, &a, &moon_id)?.is_none(),
        "A still lists the moon"
    );
    let again = tb.cli(&a, &["deorbit", &moon_id])?;
    ensure!(
        again.code == Some(1) && again.stderr.contains("not orbiting"),
        "a second deorbit: {again:?}"
    );

    tb.report(format!(
        "MOON: held {:.1} s (A) and {:.1} s (B) after orbit; pings relayed through M \
         {:.1} s after R was killed; after A's restart (R dead) through M in {:.1} s, \
         managed address in {:.1} s",
        held_by_a.as_secs_f64(),
        held_by_b.as_secs_f64(),
        after_kill.as_secs_f64(),
        after_restart.as_secs_f64(),
        managed_after_restart.as_secs_f64(),
    ));
    tb.finish();
    Ok(())
}
