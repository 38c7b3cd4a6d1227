//! End to end in network namespaces: LAN paths. Two real `skylan` nodes behind one NAT
//! router (port-restricted, no hairpinning), members of one network, tell each other
//! their interface addresses (PushDirectPaths) and go DIRECT over the LAN, with the
//! peer's private 192.0.2.x address as the path; a third member behind a NAT elsewhere
//! still reaches them, and never by their private addresses.
//!
//! First the lab itself is checked: the two hosts reach each other on the private
//! segment, and a datagram to the router's public address (the other host's NAT
//! mapping) does not come back in (no hairpinning), so only the LAN path can work.
//!
//! Needs root (namespaces, nftables); skips loudly otherwise. The time to DIRECT is
//! reported, not asserted tightly.

// Times are measured with the wall clock and printed.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use support::networks::{authorized_network, managed_ip, ping_ip};

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use skylan::lab::NatKind;
use support::{Ping, Testbed, udp_socket, wait_until};

const ROOT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
const CTRL_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 12);
const LAN_PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 21);
const C_PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 23);
const A_PRIVATE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const B_PRIVATE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);
const C_PRIVATE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 30);

/// A node reaching its roots; generous for a loaded 2-core machine.
const ONLINE: Duration = Duration::from_secs(30);
/// WHOIS, a relayed handshake and the first echo.
const FIRST_REPLY: Duration = Duration::from_secs(30);
/// The push goes out as soon as the session is usable and is probed at once; this
/// allows for a loaded machine.
const GO_DIRECT: Duration = Duration::from_secs(30);

#[test]
fn two_nodes_behind_one_nat_go_direct_over_their_lan() -> Result<()> {
    let Some(tb) = Testbed::new("e2e_lan::two_nodes_behind_one_nat_go_direct", "e2elan")? else {
        return Ok(());
    };
    let r = tb.public_host("root", ROOT_IP)?;
    let ha = tb.nat_host("a", NatKind::PortRestricted, LAN_PUBLIC, A_PRIVATE)?;
    let hb = tb.lab().add_host_behind("b", &ha, B_PRIVATE)?;
    let hc = tb.nat_host("c", NatKind::PortRestricted, C_PUBLIC, C_PRIVATE)?;
    ensure!(hb.ip == LAN_PUBLIC && hb.router_netns == ha.router_netns);

    // The lab: B reaches A on the LAN, but not through the router's public address.
    let a_sock = udp_socket(&ha, 40000)?;
    a_sock.set_read_timeout(Some(Duration::from_millis(500)))?;
    let b_sock = udp_socket(&hb, 40000)?;
    let watcher = udp_socket(&r, 40000)?;
    watcher.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 64];
    b_sock.send_to(b"lan", SocketAddr::from((A_PRIVATE, 40000)))?;
    let (n, from) = a_sock
        .recv_from(&mut buf)
        .context("B reaches A on the LAN")?;
    ensure!(&buf[..n] == b"lan" && from == SocketAddr::from((B_PRIVATE, 40000)));
    a_sock.send_to(b"out", SocketAddr::from((ROOT_IP, 40000)))?;
    let (_, mapping) = watcher.recv_from(&mut buf).context("A reaches the root")?;
    ensure!(mapping.ip() == LAN_PUBLIC, "A's NAT maps it to {mapping}");
    b_sock.send_to(b"hairpin", mapping)?;
    ensure!(
        a_sock.recv_from(&mut buf).is_err(),
        "the router hairpinned B's datagram to A's public mapping {mapping}"
    );
    tb.note(format!(
        "lab checked: LAN works, no hairpinning at {mapping}"
    ));
    drop((a_sock, b_sock, watcher));

    let (_, planet) = tb.start_planet(&[("root", &r)])?;
    let hctrl = tb.public_host("ctrl", CTRL_IP)?;
    let ctrl = tb.start_node("ctrl", &hctrl, &planet, &["--controller"])?;
    let a = tb.start_node("a", &ha, &planet, &[])?;
    let b = tb.start_node("b", &hb, &planet, &[])?;
    let c = tb.start_node("c", &hc, &planet, &[])?;
    for d in [&ctrl, &a, &b, &c] {
        tb.wait_online(d, ONLINE)?;
    }
    // Members of one network trust each other: they tell each other their endpoints.
    let (_, entries) = authorized_network(
        &tb,
        &ctrl,
        &[&a, &b, &c],
        "198.18.0.10-198.18.0.50",
        "198.18.0.0/24",
    )?;
    let b_overlay = managed_ip(&entries[1])?;
    let authorized = Instant::now();

    // Members trust each other once they showed each other their credentials, which
    // their first frames do.
    wait_until("A reaches B's managed address", GO_DIRECT, || {
        ensure!(ping_ip(&tb, &a, &b_overlay)?, "no reply");
        Ok(())
    })?;
    let first = tb.ping(&a, b.address)?;
    tb.note(format!("first ping after the network is OK: {first:?}"));
    let b_lan = format!("{B_PRIVATE}/{}", b.port);
    let a_lan = format!("{A_PRIVATE}/{}", a.port);
    let (direct, took) = tb.wait_ping(&a, &b, "DIRECT on the LAN", GO_DIRECT, |p| {
        p.is_direct() && p.path.as_deref() == Some(b_lan.as_str())
    })?;
    tb.report(format!(
        "time to DIRECT over the LAN: {} ms after the network was OK on every member \
         (first ping {}, DIRECT reply after waiting {} ms: {direct:?})",
        authorized.elapsed().as_millis(),
        first.link.as_deref().unwrap_or("lost"),
        took.as_millis(),
    ));
    let (back, _) = tb.wait_ping(&b, &a, "DIRECT on the LAN", GO_DIRECT, |p| {
        p.is_direct() && p.path.as_deref() == Some(a_lan.as_str())
    })?;
    tb.note(format!("B -> A: {back:?}"));

    // `peers` agrees on both sides.
    let preferred = |from: &support::Daemon, to: &support::Daemon| -> Result<Vec<String>> {
        let entry = tb
            .peer(from, to.address)?
            .with_context(|| format!("{} does not list {}", from.name, to.name))?;
        ensure!(
            entry["link"] == "DIRECT",
            "{}'s entry for {}: {entry}",
            from.name,
            to.name
        );
        Ok(entry["paths"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["preferred"] == Value::Bool(true))
            .filter_map(|p| p["address"].as_str().map(str::to_string))
            .collect())
    };
    ensure!(preferred(&a, &b)? == std::slice::from_ref(&b_lan));
    ensure!(preferred(&b, &a)? == std::slice::from_ref(&a_lan));
    // And it stays direct.
    for _ in 0..3 {
        let p = tb.ping(&a, b.address)?;
        ensure!(
            p.is_direct() && p.path.as_deref() == Some(b_lan.as_str()),
            "{p:?}"
        );
    }

    // The third node reaches both, never by a private address of their LAN (its own
    // LAN is 192.0.2.0/24 too: probes there find nobody).
    for to in [&a, &b] {
        let (p, _) = tb.wait_ping(&c, to, "reply", FIRST_REPLY, |p| p.reply)?;
        ensure!(
            !p.is_direct()
                || p.path
                    .as_deref()
                    .is_some_and(|x| x.starts_with("198.51.100.21/")),
            "C -> {}: {p:?}",
            to.name
        );
    }
    let after: Ping = tb.ping(&a, b.address)?;
    ensure!(
        after.is_direct() && after.path.as_deref() == Some(b_lan.as_str()),
        "{after:?}"
    );
    // Traffic on the network (a system ping over the TAP devices) goes the same way.
    ensure!(
        ping_ip(&tb, &a, &b_overlay)?,
        "A pings B's managed address {b_overlay}"
    );
    let entry = tb.peer(&a, b.address)?.context("A lists B")?;
    ensure!(
        entry["link"] == "DIRECT",
        "A's entry for B after the system ping: {entry}"
    );

    // The pushes and their receipt are counted where /metrics lists drops.
    let m = tb.metrics(&b)?;
    for reason in ["push_not_peer", "push_rate"] {
        let key = format!("skylan_node_dropped_total{{reason=\"{reason}\"}}");
        ensure!(m.contains_key(&key), "/metrics lacks {key}");
    }
    tb.finish();
    Ok(())
}
