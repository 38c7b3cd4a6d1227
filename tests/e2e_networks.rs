//! Virtual networks end to end with real processes in namespaces: a root, a node that
//! runs the controller, and members behind NAT; a private network with a pool and a
//! route created with `skylan controller`; joins, ACCESS_DENIED until authorized, real
//! `ping` between managed addresses over the members' TAP devices, revocation, and a
//! member restarted while the controller is down coming back on its cached config.
//!
//! Join-to-first-ping and revocation latency are printed (never asserted tightly).
//! Needs root; skips loudly otherwise.

// Latencies are measured with the wall clock and printed.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use skylan::lab::NatKind;
use support::networks::{
    STEP, bulk_tcp, controller, create_network, managed_ip, network, ping_ip, set_rules,
    wait_status,
};
use support::{Daemon, Testbed, wait_until};

const ROOT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 31);
const CTRL_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 32);
const A_PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 33);
const B_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 34);
const A_PRIVATE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 30);

#[test]
fn members_join_get_addresses_ping_and_are_revoked() -> Result<()> {
    let Some(tb) = Testbed::new("members_join_get_addresses_ping_and_are_revoked", "e2enet")?
    else {
        return Ok(());
    };
    let root_host = tb.public_host("root", ROOT_IP)?;
    let ctrl_host = tb.public_host("ctrl", CTRL_IP)?;
    let a_host = tb.nat_host("a", NatKind::PortRestricted, A_PUBLIC, A_PRIVATE)?;
    let b_host = tb.public_host("b", B_IP)?;
    let (_roots, planet) = tb.start_planet(&[("root", &root_host)])?;
    let ctrl = tb.start_node("ctrl", &ctrl_host, &planet, &["--controller"])?;
    let mut a = tb.start_node("a", &a_host, &planet, &[])?;
    let b = tb.start_node("b", &b_host, &planet, &[])?;
    for d in [&ctrl, &a, &b] {
        tb.wait_online(d, Duration::from_secs(30))?;
    }

    let nwid = create_network(&tb, &ctrl, "198.18.0.10-198.18.0.250", "198.18.0.0/24")?;

    let joined_at = Instant::now();
    for d in [&a, &b] {
        tb.cli(d, &["join", &nwid])?;
    }
    for d in [&a, &b] {
        wait_status(&tb, d, &nwid, "ACCESS_DENIED")?;
    }
    for d in [&a, &b] {
        controller(
            &tb,
            &ctrl,
            &["member", "authorize", &nwid, &d.address.to_string()],
        )?;
    }
    let na = wait_status(&tb, &a, &nwid, "OK")?;
    let nb = wait_status(&tb, &b, &nwid, "OK")?;
    let (ip_a, ip_b) = (managed_ip(&na)?, managed_ip(&nb)?);
    ensure!(ip_a != ip_b, "distinct managed addresses");
    ensure!(
        na["portDeviceName"]
            .as_str()
            .is_some_and(|d| d.starts_with("sky")),
        "a TAP device: {na}"
    );
    let (_, first_ping) = wait_until("a pings b by managed IP", STEP, || {
        ensure!(ping_ip(&tb, &a, &ip_b)?, "no reply");
        Ok(())
    })?;
    tb.report(format!(
        "join to first ping (incl. authorization): {:.1} s (first ping after OK: {:.1} s)",
        joined_at.elapsed().as_secs_f64(),
        first_ping.as_secs_f64()
    ));
    ensure!(ping_ip(&tb, &b, &ip_a)?, "b pings a back");
    // The network JSON reports the kernel's view of the TAP: its IPv4 all-hosts group
    // (joined once the device is up with an address), and no bridging for a member the
    // controller did not make an active bridge.
    let na = network(&tb, &a, &nwid)?;
    ensure!(
        na["multicastSubscriptions"]
            .as_array()
            .is_some_and(|groups| groups.iter().any(|g| g["mac"] == "01:00:5e:00:00:01")),
        "a's TAP lists the all-hosts group: {na}"
    );
    ensure!(na["bridge"] == false, "a is not a bridge: {na}");

    // Revocation: b deauthorized; a's pings to b stop and b's status turns ACCESS_DENIED.
    let revoked_at = Instant::now();
    controller(
        &tb,
        &ctrl,
        &["member", "deauthorize", &nwid, &b.address.to_string()],
    )?;
    let (_, stopped) = wait_until("pings to the revoked member stop", STEP, || {
        ensure!(!ping_ip(&tb, &a, &ip_b)?, "still answered");
        Ok(())
    })?;
    tb.report(format!(
        "revocation: pings stopped {:.1} s after the deauthorize call",
        stopped.as_secs_f64()
    ));
    wait_status(&tb, &b, &nwid, "ACCESS_DENIED")?;
    // The device went cleanly: removed by the daemon, not left to a later close.
    let log = std::fs::read_to_string(&b.log).unwrap_or_default();
    ensure!(
        !log.contains("removing the network device"),
        "b's device removal failed: {}",
        log.lines()
            .filter(|l| l.contains("removing the network device"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let nb = tb.network(&b, &nwid)?;
    ensure!(
        nb["assignedAddresses"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "the revoked member's addresses are withdrawn: {nb}"
    );
    ensure!(revoked_at.elapsed() < STEP * 2);

    // a restarts while the controller is down: its cached config brings the network back.
    controller(
        &tb,
        &ctrl,
        &["member", "authorize", &nwid, &b.address.to_string()],
    )?;
    wait_status(&tb, &b, &nwid, "OK")?;
    tb.stop(&ctrl)?;
    tb.restart(&mut a)?;
    tb.wait_online(&a, Duration::from_secs(30))?;
    let na = wait_status(&tb, &a, &nwid, "OK")?;
    ensure!(managed_ip(&na)? == ip_a, "same address from the cache");
    wait_until("a pings b again with the controller down", STEP, || {
        ensure!(ping_ip(&tb, &a, &ip_b)?, "no reply");
        Ok(())
    })?;
    tb.finish();
    Ok(())
}

#[test]
fn an_unauthorized_node_gets_access_denied_and_no_frames() -> Result<()> {
    let Some(tb) = Testbed::new(
        "an_unauthorized_node_gets_access_denied_and_no_frames",
        "e2edeny",
    )?
    else {
        return Ok(());
    };
    let root_host = tb.public_host("root", ROOT_IP)?;
    let ctrl_host = tb.public_host("ctrl", CTRL_IP)?;
    let b_host = tb.public_host("b", B_IP)?;
    let (_roots, planet) = tb.start_planet(&[("root", &root_host)])?;
    let ctrl = tb.start_node("ctrl", &ctrl_host, &planet, &["--controller"])?;
    let b = tb.start_node("b", &b_host, &planet, &[])?;
    tb.wait_online(&ctrl, Duration::from_secs(30))?;
    tb.wait_online(&b, Duration::from_secs(30))?;
    let created = controller(
        &tb,
        &ctrl,
        &[
            "network",
            "create",
            "--name",
            "closed",
            "--pool",
            "198.18.1.10-198.18.1.20",
            "--private",
        ],
    )?;
    let nwid = created["id"].as_str().context("network id")?.to_string();
    tb.cli(&b, &["join", &nwid])?;
    let n = wait_status(&tb, &b, &nwid, "ACCESS_DENIED")?;
    ensure!(
        n["portDeviceName"].as_str().is_none_or(str::is_empty),
        "no device: {n}"
    );
    let metrics = tb.metrics(&b)?;
    tb.note(format!("metrics: {metrics:?}"));
    tb.finish();
    Ok(())
}

/// A root, a controller and two public members, all online, and a network on the
/// controller with a pool and a route in `<prefix>.0/24`.
struct Members {
    _roots: Vec<Daemon>,
    ctrl: Daemon,
    a: Daemon,
    b: Daemon,
    nwid: String,
}

fn start_members(tb: &Testbed, name: &str, prefix: &str) -> Result<Members> {
    let root_host = tb.public_host("root", ROOT_IP)?;
    let ctrl_host = tb.public_host("ctrl", CTRL_IP)?;
    let a_host = tb.public_host("a", A_PUBLIC)?;
    let b_host = tb.public_host("b", B_IP)?;
    let (roots, planet) = tb.start_planet(&[("root", &root_host)])?;
    let ctrl = tb.start_node("ctrl", &ctrl_host, &planet, &["--controller"])?;
    let a = tb.start_node("a", &a_host, &planet, &[])?;
    let b = tb.start_node("b", &b_host, &planet, &[])?;
    for d in [&ctrl, &a, &b] {
        tb.wait_online(d, Duration::from_secs(30))?;
    }
    let pool = format!("{prefix}.10-{prefix}.20");
    let route = format!("{prefix}.0/24");
    let created = controller(
        tb,
        &ctrl,
        &[
            "network", "create", "--name", name, "--pool", &pool, "--route", &route,
        ],
    )?;
    let nwid = created["id"].as_str().context("network id")?.to_string();
    Ok(Members {
        _roots: roots,
        ctrl,
        a,
        b,
        nwid,
    })
}

const SSH_FROM_TAGGED: &str = "tag ssh id 1 default 0; \
accept ethertype arp; \
accept ethertype ipv4 and ipprotocol tcp and dport 22 and tag ssh=1; \
accept ethertype ipv4 and ipprotocol tcp and sport 22; \
drop ethertype ipv4 and ipprotocol tcp and dport 22; \
accept;";

/// Whether a TCP connection from `from`'s namespace to `ip`:22 completes within 2 s.
fn tcp_connects(from: &Daemon, ip: &str) -> Result<bool> {
    let addr: std::net::SocketAddr = format!("{ip}:22").parse()?;
    let ok = from
        .host
        .run(move || std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok())?;
    Ok(ok)
}

/// Listens on TCP 22 on every address of `d`'s namespace, accepting forever (the
/// listener thread ends with the process; the namespace goes with the lab).
fn listen_ssh(d: &Daemon) -> Result<()> {
    let listener = d
        .host
        .run(|| std::net::TcpListener::bind("0.0.0.0:22"))?
        .context("bind port 22")?;
    std::thread::spawn(move || for _ in listener.incoming() {});
    Ok(())
}

#[test]
fn rules_allow_ssh_only_from_the_tagged_member_and_changes_apply() -> Result<()> {
    let Some(tb) = Testbed::new("rules_allow_ssh_only_from_the_tagged_member", "e2erules")? else {
        return Ok(());
    };
    let Members {
        ctrl, a, b, nwid, ..
    } = start_members(&tb, "ssh", "198.18.2")?;
    set_rules(&tb, &ctrl, &nwid, SSH_FROM_TAGGED)?;
    for (d, tag) in [(&a, 1), (&b, 0)] {
        tb.cli(d, &["join", &nwid])?;
        let addr = d.address.to_string();
        controller(&tb, &ctrl, &["member", "authorize", &nwid, &addr])?;
        controller(
            &tb,
            &ctrl,
            &["member", "set", &nwid, &addr, &format!("tags=[[1,{tag}]]")],
        )?;
    }
    let ip_a = managed_ip(&wait_status(&tb, &a, &nwid, "OK")?)?;
    let ip_b = managed_ip(&wait_status(&tb, &b, &nwid, "OK")?)?;
    listen_ssh(&a)?;
    listen_ssh(&b)?;
    wait_until("tagged a connects to b:22", STEP, || {
        ensure!(tcp_connects(&a, &ip_b)?, "refused");
        Ok(())
    })?;
    ensure!(!tcp_connects(&b, &ip_a)?, "untagged b must not reach a:22");
    ensure!(ping_ip(&tb, &b, &ip_a)?, "other traffic still flows");

    let changed_at = Instant::now();
    set_rules(&tb, &ctrl, &nwid, "accept;")?;
    let (_, took) = wait_until("b connects to a:22 after the rule change", STEP, || {
        ensure!(tcp_connects(&b, &ip_a)?, "still refused");
        Ok(())
    })?;
    tb.report(format!(
        "rule change reached the members: b→a:22 connects {:.1} s after the API call ({:.1} s in the loop)",
        changed_at.elapsed().as_secs_f64(),
        took.as_secs_f64()
    ));

    // Spoofing: b gives its device an address the controller did not assign. With every
    // frame accepted it works; with `drop not chr ipauth` it does not (the receiver checks
    // too), while b's own address keeps working.
    let device = network(&tb, &b, &nwid)?["portDeviceName"]
        .as_str()
        .context("b's device")?
        .to_string();
    let spoofed = "198.18.2.77";
    let added = tb.exec(
        &b.host,
        "ip",
        &["addr", "add", &format!("{spoofed}/32"), "dev", &device],
    )?;
    ensure!(added.success(), "adding {spoofed} on b: {added:?}");
    let ping_from = |src: &str| -> Result<bool> {
        Ok(tb
            .exec(&b.host, "ping", &["-c", "1", "-W", "1", "-I", src, &ip_a])?
            .success())
    };
    wait_until(
        "b pings a from an unassigned address while all is accepted",
        STEP,
        || {
            ensure!(ping_from(spoofed)?, "no reply");
            Ok(())
        },
    )?;
    set_rules(&tb, &ctrl, &nwid, "drop not chr ipauth; accept;")?;
    wait_until("the unassigned address stops working", STEP, || {
        ensure!(!ping_from(spoofed)?, "still answered");
        Ok(())
    })?;
    ensure!(ping_from(&ip_b)?, "b's own address still works");
    tb.finish();
    Ok(())
}

#[test]
fn a_member_whose_device_cannot_be_made_shows_a_port_error() -> Result<()> {
    let Some(tb) = Testbed::new("a_member_whose_device_cannot_be_made", "e2eport")? else {
        return Ok(());
    };
    let Members { ctrl, a, nwid, .. } = start_members(&tb, "port", "198.18.3")?;
    // Something else already has the interface name the network's device would get.
    let name = skylan::io::netdev::interface_name(nwid.parse()?);
    let peer = format!("{name}x");
    let taken = tb.exec(
        &a.host,
        "ip",
        &["link", "add", &name, "type", "veth", "peer", "name", &peer],
    )?;
    ensure!(taken.success(), "ip link add {name}: {taken:?}");
    tb.cli(&a, &["join", &nwid])?;
    let addr = a.address.to_string();
    controller(&tb, &ctrl, &["member", "authorize", &nwid, &addr])?;
    let n = wait_status(&tb, &a, &nwid, "PORT_ERROR")?;
    ensure!(
        n["portError"] != 0
            && n["portErrorMessage"]
                .as_str()
                .is_some_and(|m| m.contains(&name)),
        "the port error names the device: {n}"
    );
    let text = tb.cli(&a, &["networks"])?;
    ensure!(
        text.stdout.contains("PORT_ERROR") && text.stdout.contains("port error:"),
        "networks says so: {}",
        text.stdout
    );
    tb.finish();
    Ok(())
}

/// Bulk TCP both ways: the kernel hands the TAP 64 KB segments (TSO), the sender cuts
/// them into frames, the receiver merges them again; every byte must arrive.
#[test]
fn bulk_tcp_arrives_intact_both_ways_through_segmentation_and_coalescing() -> Result<()> {
    let Some(tb) = Testbed::new("bulk_tcp_arrives_intact_both_ways", "e2ebulk")? else {
        return Ok(());
    };
    let Members {
        ctrl, a, b, nwid, ..
    } = start_members(&tb, "bulk", "198.18.3")?;
    for d in [&a, &b] {
        tb.cli(d, &["join", &nwid])?;
        controller(
            &tb,
            &ctrl,
            &["member", "authorize", &nwid, &d.address.to_string()],
        )?;
    }
    let ip_a = managed_ip(&wait_status(&tb, &a, &nwid, "OK")?)?;
    let ip_b = managed_ip(&wait_status(&tb, &b, &nwid, "OK")?)?;
    wait_until("a pings b", STEP, || {
        ensure!(ping_ip(&tb, &a, &ip_b)?, "no reply");
        Ok(())
    })?;
    const LEN: usize = 24 << 20;
    let started = Instant::now();
    let ab = bulk_tcp(&a, &b, &ip_b, 5001, LEN)?;
    let ba = bulk_tcp(&b, &a, &ip_a, 5002, LEN)?;
    ensure!(ab == LEN, "a→b: {ab} of {LEN} bytes arrived intact");
    ensure!(ba == LEN, "b→a: {ba} of {LEN} bytes arrived intact");
    // The data path runs the cipher the two negotiated, and says which.
    let peers: Value = serde_json::from_str(&tb.cli(&a, &["-j", "peers"])?.stdout)?;
    let to_b = peers
        .as_array()
        .and_then(|ps| {
            ps.iter()
                .find(|p| p["address"] == b.address.to_string().as_str())
        })
        .context("b in a's peers")?;
    ensure!(
        to_b["cipher"] == skylan::crypto::preferred_cipher().as_str(),
        "negotiated cipher: {to_b}"
    );
    // Both offloads were really in play on both members.
    for d in [&a, &b] {
        let m = tb.metrics(d)?;
        let count = |name: &str| m.get(name).copied().unwrap_or(0.0);
        ensure!(
            count("skylan_node_tap_segmented_messages_total") > 0.0,
            "{}: no TCP segmentation frame was cut: {m:?}",
            d.name
        );
        ensure!(
            count("skylan_node_tap_coalesced_messages_total") > 0.0,
            "{}: no frames were merged on writing: {m:?}",
            d.name
        );
        ensure!(
            count("skylan_node_dropped_total{reason=\"tap_message\"}") == 0.0,
            "{}: {m:?}",
            d.name
        );
    }
    tb.report(format!(
        "bulk: 2 × {} MiB intact in {:.1} s (debug build)",
        LEN >> 20,
        started.elapsed().as_secs_f64()
    ));
    tb.finish();
    Ok(())
}
