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
//! With packet workers (`--workers 2` on the blocked node), frames that the workers seal
//! go over the TCP link too: a network's members ping each other by managed address and
//! carry a 4-stream TCP transfer (flows spread over both packet threads), and the node
//! goes back to UDP when the block is lifted, whichever thread's socket the root's
//! answers land on.
//!
//! Needs root (namespaces, nftables); skips loudly otherwise.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use skylan::io::tcp::{FALLBACK_AFTER, UDP_RETRY};
use support::networks::{authorized_network, managed_ip, ping_ip};
use support::{Daemon, Testbed, wait_until};

const ROOT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
const A_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 21);
const B_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 22);
const CTRL_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 23);

/// Slack for a loaded CI machine on top of the fallback's own timers.
const SLACK: Duration = Duration::from_secs(20);

/// Waits until `node` is online through the TCP fallback; how long that took.
fn wait_tunneled(tb: &Testbed, node: &Daemon) -> Result<Duration> {
    let what = format!("{} online over TCP", node.name);
    let ((), took) = wait_until(&what, FALLBACK_AFTER + SLACK, || {
        tb.check_running(node)?;
        let info = tb.info(node)?;
        ensure!(
            info["online"] == true && info["tcpFallbackActive"] == true,
            "info says {info}"
        );
        Ok(())
    })?;
    Ok(took)
}

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

    let tunneled = wait_tunneled(&tb, &b)?;
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

#[test]
fn packet_workers_send_over_the_tcp_link_too() -> Result<()> {
    let Some(tb) = Testbed::new(
        "e2e_tcp_fallback::packet_workers_send_over_the_tcp_link_too",
        "e2etcpwrk",
    )?
    else {
        return Ok(());
    };
    let hr = tb.public_host("root", ROOT_IP)?;
    let hc = tb.public_host("ctrl", CTRL_IP)?;
    let ha = tb.public_host("a", A_IP)?;
    let hb = tb.public_host("b", B_IP)?;
    tb.lab().block_udp(&hb, true)?;
    let (_roots, planet) = tb.start_planet(&[("root", &hr)])?;
    let ctrl = tb.start_node("ctrl", &hc, &planet, &["--controller"])?;
    let a = tb.start_node("a", &ha, &planet, &[])?;
    let b = tb.start_node("b", &hb, &planet, &["--workers", "2"])?;
    for d in [&ctrl, &a] {
        tb.wait_online(d, Duration::from_secs(30))?;
    }
    wait_tunneled(&tb, &b)?;
    let (_, entries) = authorized_network(
        &tb,
        &ctrl,
        &[&a, &b],
        "198.18.2.10-198.18.2.250",
        "198.18.2.0/24",
    )?;
    let ip_a = managed_ip(&entries[0])?;
    let ip_b = managed_ip(&entries[1])?;
    wait_until("b pings a by managed IP over the TCP link", SLACK, || {
        ensure!(ping_ip(&tb, &b, &ip_a)?, "no reply");
        Ok(())
    })?;
    let mut serve = a.host.command("iperf3");
    serve
        .args(["-s", "-1", "-B", &ip_a])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let server = tb.lab().spawn(&a.host, serve)?;
    std::thread::sleep(Duration::from_millis(500));
    let client = tb.exec(
        &b.host,
        "timeout",
        &[
            "20", "iperf3", "-c", &ip_a, "-B", &ip_b, "-P", "4", "-t", "2", "-J",
        ],
    )?;
    let _ = tb.lab().kill(server);
    ensure!(
        client.success(),
        "4 TCP streams from b's two packet threads over the TCP link: {client:?}"
    );
    let report: serde_json::Value = serde_json::from_str(&client.stdout)?;
    let rate = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("iperf3 reports a rate")?;
    ensure!(rate > 0.0, "no bytes arrived: {}", client.stdout);
    tb.report(format!(
        "4 TCP streams b -> a through the TCP fallback (b with 2 packet threads): {:.0} Mbit/s (not asserted)",
        rate / 1e6
    ));
    // The root's answers over UDP may land on either thread's socket: b must notice.
    tb.lab().block_udp(&hb, false)?;
    let ((), back) = wait_until("b with workers back on UDP", UDP_RETRY + SLACK, || {
        let info = tb.info(&b)?;
        ensure!(info["tcpFallbackActive"] == false, "info says {info}");
        Ok(())
    })?;
    tb.report(format!(
        "b (2 packet threads) back on UDP {back:.1?} after the block was lifted"
    ));
    tb.finish();
    Ok(())
}
