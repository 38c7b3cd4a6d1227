//! Path MTU with real processes: a member behind a router whose links carry 1,280-byte
//! IP packets and whose "fragmentation needed" errors are dropped (a PMTU black hole,
//! `Lab::black_hole`). TCP across the overlay must not stall, at the default network
//! MTU, the smallest useful one and the largest a user may set, and `peers` shows the
//! size the nodes found.
//!
//! Needs root; skipped otherwise. Times are printed, not asserted.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use skylan::lab::NatKind;
use support::networks::{authorized_network, bulk_tcp, controller, managed_ip, ping_ip};
use support::{Daemon, Testbed, wait_until};

const ROOT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 70);
const CTRL_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 71);
const A_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 72);
const B_PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 73);
const B_PRIVATE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
/// The underlay's IP MTU on b's side.
const UNDERLAY_MTU: u16 = 1280;
/// Largest UDP payload an IPv4 packet of [`UNDERLAY_MTU`] bytes carries.
const UNDERLAY_PAYLOAD: u64 = UNDERLAY_MTU as u64 - 28;
/// Bytes sent each way per network MTU.
const LEN: usize = 8 << 20;

/// `d`'s `peers -j` entry for `peer`.
fn peer_entry(tb: &Testbed, d: &Daemon, peer: &Daemon) -> Result<Value> {
    tb.peer(d, peer.address)?
        .with_context(|| format!("{} does not list {}", d.name, peer.name))
}

/// Sets the network MTU and waits until both members run with it.
fn set_network_mtu(
    tb: &Testbed,
    ctrl: &Daemon,
    nwid: &str,
    members: &[&Daemon],
    mtu: u32,
) -> Result<()> {
    controller(tb, ctrl, &["network", "set", nwid, &format!("mtu={mtu}")])?;
    for d in members {
        wait_until(
            &format!("{} runs MTU {mtu}", d.name),
            Duration::from_secs(30),
            || {
                let n = tb.network(d, nwid)?;
                ensure!(n["mtu"] == mtu, "network entry: {n}");
                Ok(())
            },
        )?;
    }
    Ok(())
}

#[test]
fn tcp_does_not_stall_through_a_pmtu_black_hole_at_any_network_mtu() -> Result<()> {
    let Some(tb) = Testbed::new("tcp_does_not_stall_through_a_pmtu_black_hole", "e2epmtu")? else {
        return Ok(());
    };
    let root_host = tb.public_host("root", ROOT_IP)?;
    let ctrl_host = tb.public_host("ctrl", CTRL_IP)?;
    let a_host = tb.public_host("a", A_IP)?;
    let b_host = tb.nat_host("b", NatKind::PortRestricted, B_PUBLIC, B_PRIVATE)?;
    tb.lab().black_hole(&b_host, UNDERLAY_MTU)?;
    let (_roots, planet) = tb.start_planet(&[("root", &root_host)])?;
    let ctrl = tb.start_node("ctrl", &ctrl_host, &planet, &["--controller"])?;
    let a = tb.start_node("a", &a_host, &planet, &[])?;
    let b = tb.start_node("b", &b_host, &planet, &[])?;
    for d in [&ctrl, &a, &b] {
        tb.wait_online(d, Duration::from_secs(30))?;
    }
    let (nwid, entries) = authorized_network(
        &tb,
        &ctrl,
        &[&a, &b],
        "198.18.9.10-198.18.9.20",
        "198.18.9.0/24",
    )?;
    let ip_a = managed_ip(&entries[0])?;
    let ip_b = managed_ip(&entries[1])?;
    wait_until(
        "a pings b over the overlay",
        Duration::from_secs(30),
        || {
            ensure!(ping_ip(&tb, &a, &ip_b)?, "no reply");
            Ok(())
        },
    )?;

    let mut port = 5200;
    for mtu in [None, Some(1280), Some(10_000)] {
        if let Some(mtu) = mtu {
            set_network_mtu(&tb, &ctrl, &nwid, &[&a, &b], mtu)?;
        }
        let shown = mtu.map_or("default".to_string(), |m| m.to_string());
        let started = Instant::now();
        let ab = bulk_tcp(&a, &b, &ip_b, port, LEN)?;
        let ab_time = started.elapsed();
        let ba = bulk_tcp(&b, &a, &ip_a, port + 1, LEN)?;
        let ba_time = started.elapsed() - ab_time;
        port += 2;
        ensure!(
            ab == LEN,
            "network MTU {shown}: a→b {ab} of {LEN} bytes arrived intact"
        );
        ensure!(
            ba == LEN,
            "network MTU {shown}: b→a {ba} of {LEN} bytes arrived intact"
        );
        tb.report(format!(
            "PMTU black hole at {UNDERLAY_MTU} bytes, network MTU {shown}: {} MiB a→b in {:.2} s, b→a in {:.2} s ({} build)",
            LEN >> 20,
            ab_time.as_secs_f64(),
            ba_time.as_secs_f64(),
            if cfg!(debug_assertions) { "debug" } else { "release" }
        ));
    }

    // Both ends found what the path carries, on their own.
    for (d, peer) in [(&a, &b), (&b, &a)] {
        let entry = peer_entry(&tb, d, peer)?;
        let path_mtu = entry["pathMtu"].as_u64().context("pathMtu")?;
        ensure!(
            (1232..=UNDERLAY_PAYLOAD).contains(&path_mtu),
            "{} → {}: pathMtu {path_mtu} over a {UNDERLAY_MTU}-byte underlay: {entry}",
            d.name,
            peer.name
        );
        tb.report(format!(
            "{} → {}: {} {}, pathMtu {path_mtu}",
            d.name, peer.name, entry["link"], entry["relay"]
        ));
    }
    let text = tb.cli(&a, &["peers"])?;
    ensure!(
        text.stdout.contains(&entry_mtu(&tb, &a, &b)?),
        "peers shows the path MTU: {}",
        text.stdout
    );
    tb.finish();
    Ok(())
}

/// The path MTU `d` shows for `peer`, as text.
fn entry_mtu(tb: &Testbed, d: &Daemon, peer: &Daemon) -> Result<String> {
    Ok(peer_entry(tb, d, peer)?["pathMtu"].to_string())
}
