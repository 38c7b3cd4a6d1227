//! End to end: a node whose host blocks UDP entirely (nftables drops every UDP packet in
//! its namespace, both ways) comes online over the TCP fallback, and back to UDP when
//! the block is lifted. Real `skylan` processes in network namespaces: a root, a public
//! node A and node B behind the block.
//!
//! Checks: B's `info` says TUNNELED (and `tcpFallbackActive`) within `FALLBACK_AFTER` and
//! a margin; B and A ping each other (relayed by the root, over TCP on B's side); B's
//! `peers` marks the root's path as TCP; A stays ONLINE over UDP. With the block lifted,
//! B is back on UDP (ONLINE, `tcpFallbackActive` false) within `UDP_RETRY` and a margin,
//! and pings go DIRECT. The times are reported.
//!
//! Needs root (namespaces, nftables); skips loudly otherwise.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Result, ensure};
use skylan::io::tcp::{FALLBACK_AFTER, UDP_RETRY};
use support::{Daemon, Testbed, wait_until};

const ROOT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
const A_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 21);
const B_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 22);

/// Slack for a loaded CI machine on top of the fallback's own timers.
const SLACK: Duration = Duration::from_secs(20);

fn info_text(tb: &Testbed, node: &Daemon) -> Result<String> {
    let out = tb.cli(node, &["info"])?;
    ensure!(out.success(), "info on {}: {out:?}", node.name);
    Ok(out.stdout)
}

#[test]
fn a_node_without_udp_goes_over_tcp_and_back() -> Result<()> {
    let Some(tb) = Testbed::new(
        "e2e_tcp_fallback::a_node_without_udp_goes_over_tcp_and_back",
        "e2etcp",
    )?
    else {
        return Ok(());
    };
    let hr = tb.public_host("root", ROOT_IP)?;
    let ha = tb.public_host("a", A_IP)?;
    let hb = tb.public_host("b", B_IP)?;
    tb.lab().block_udp(&hb, true)?;
    let (_roots, planet) = tb.start_planet(&[("root", &hr)])?;
    let a = tb.start_node("a", &ha, &planet, &[])?;
    let b = tb.start_node("b", &hb, &planet, &[])?;
    tb.wait_online(&a, Duration::from_secs(30))?;

    let ((), tunneled) = wait_until("b online over TCP", FALLBACK_AFTER + SLACK, || {
        tb.check_running(&b)?;
        let info = tb.info(&b)?;
        ensure!(
            info["online"] == true && info["tcpFallbackActive"] == true,
            "info says {info}"
        );
        Ok(())
    })?;
    tb.report(format!(
        "UDP blocked: b TUNNELED {tunneled:.1?} after start (fallback after {} s without a root)",
        FALLBACK_AFTER.as_secs()
    ));
    let text = info_text(&tb, &b)?;
    ensure!(
        text.contains("TUNNELED") && text.contains("over TCP"),
        "info on b: {text}"
    );
    tb.report(format!("--- skylan info on b:\n{}", text.trim_end()));

    let (ping, took) = tb.wait_ping(&b, &a, "through the root over TCP", SLACK, |p| p.reply)?;
    tb.report(format!(
        "b -> a over the TCP fallback: {ping:?} after {took:.1?}"
    ));
    tb.wait_ping(&a, &b, "through the root to b's TCP link", SLACK, |p| {
        p.is_relay()
    })?;
    let root = tb
        .peers(&b)?
        .into_iter()
        .find(|p| p["role"] == "PLANET")
        .ok_or_else(|| anyhow::anyhow!("b lists no root"))?;
    ensure!(root["tunneled"] == true, "the root is tunneled: {root}");
    ensure!(
        root["paths"]
            .as_array()
            .is_some_and(|paths| paths.iter().any(|x| x["transport"] == "tcp")),
        "the root's path is marked TCP: {root}"
    );
    let peers = tb.cli(&b, &["peers"])?;
    ensure!(
        peers.stdout.contains("(TCP)"),
        "peers on b: {}",
        peers.stdout
    );
    let a_info = tb.info(&a)?;
    ensure!(
        a_info["tcpFallbackActive"] == false,
        "a keeps UDP: {a_info}"
    );

    tb.lab().block_udp(&hb, false)?;
    let ((), back) = wait_until("b back on UDP", UDP_RETRY + SLACK, || {
        let info = tb.info(&b)?;
        ensure!(
            info["online"] == true && info["tcpFallbackActive"] == false,
            "info says {info}"
        );
        Ok(())
    })?;
    tb.report(format!(
        "UDP unblocked: b back on UDP after {back:.1?} (UDP tried every {} s)",
        UDP_RETRY.as_secs()
    ));
    ensure!(
        info_text(&tb, &b)?.contains("ONLINE"),
        "info says ONLINE again"
    );
    let (_, took) = tb.wait_ping(&b, &a, "DIRECT over UDP", Duration::from_secs(60), |p| {
        p.is_direct()
    })?;
    tb.report(format!("b -> a DIRECT {took:.1?} after UDP came back"));
    tb.finish();
    Ok(())
}
