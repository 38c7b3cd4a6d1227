//! Packet workers end to end (`skylan node --workers N`) with real processes in
//! namespaces: members with two packet threads each join a network; every TAP gets one
//! queue per thread; pings and a TCP transfer cross it; datagrams from many source
//! ports spread over both threads' sockets and are counted once each in `/metrics`;
//! leaving the network removes its device although a worker had a queue of it open.
//!
//! Needs root; skips loudly otherwise.

// The transfer's duration is the wall clock's; nothing about speed is asserted.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use skylan::lab::LabHost;
use support::networks::{STEP, authorized_network, managed_ip, network, ping_ip};
use support::{Daemon, PORT, Testbed, udp_socket, wait_until};

const ROOT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 41);
const CTRL_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 42);
const A_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 43);
const B_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 44);
const SPRAY_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 45);
/// Source ports the garbage comes from: enough that both sockets of a pair get some
/// (all on one of two would take a 1-in-2^63 hash).
const SPRAY_PORTS: u16 = 64;

/// `ip -details link show` of a device, from inside the member's namespace.
fn link_details(tb: &Testbed, d: &Daemon, device: &str) -> Result<String> {
    let out = tb.exec(&d.host, "ip", &["-details", "link", "show", "dev", device])?;
    ensure!(
        out.success(),
        "ip link show {device} on {}: {out:?}",
        d.name
    );
    Ok(out.stdout.clone())
}

/// One metric's value (0 when absent).
fn metric(tb: &Testbed, d: &Daemon, name: &str) -> Result<f64> {
    Ok(tb.metrics(d)?.get(name).copied().unwrap_or(0.0))
}

/// Sends one malformed datagram to `to` from each of `SPRAY_PORTS` source ports.
fn spray(host: &LabHost, to: Ipv4Addr) -> Result<()> {
    for i in 0..SPRAY_PORTS {
        let sock = udp_socket(host, 40_000 + i)?;
        sock.send_to(b"?", SocketAddrV4::new(to, PORT))
            .context("sending garbage")?;
    }
    Ok(())
}

#[test]
fn two_packet_threads_share_the_port_and_the_taps() -> Result<()> {
    let Some(tb) = Testbed::new("two_packet_threads_share_the_port_and_the_taps", "e2ewrk")? else {
        return Ok(());
    };
    let root_host = tb.public_host("root", ROOT_IP)?;
    let ctrl_host = tb.public_host("ctrl", CTRL_IP)?;
    let a_host = tb.public_host("a", A_IP)?;
    let b_host = tb.public_host("b", B_IP)?;
    let spray_host = tb.public_host("spray", SPRAY_IP)?;
    let (_roots, planet) = tb.start_planet(&[("root", &root_host)])?;
    let ctrl = tb.start_node("ctrl", &ctrl_host, &planet, &["--controller"])?;
    let a = tb.start_node("a", &a_host, &planet, &["--workers", "2"])?;
    let b = tb.start_node("b", &b_host, &planet, &["--workers", "2"])?;
    for d in [&ctrl, &a, &b] {
        tb.wait_online(d, Duration::from_secs(30))?;
    }
    let (nwid, entries) = authorized_network(
        &tb,
        &ctrl,
        &[&a, &b],
        "198.18.1.10-198.18.1.250",
        "198.18.1.0/24",
    )?;
    let ip_b = managed_ip(&entries[1])?;

    // One TAP queue per packet thread.
    let device = entries[0]["portDeviceName"]
        .as_str()
        .context("a's device")?
        .to_string();
    wait_until("a's TAP has a queue per packet thread", STEP, || {
        let details = link_details(&tb, &a, &device)?;
        ensure!(
            details.contains("multi_queue") && details.contains("numqueues 2"),
            "{details}"
        );
        Ok(())
    })?;

    wait_until("a pings b by managed IP", STEP, || {
        ensure!(ping_ip(&tb, &a, &ip_b)?, "no reply");
        Ok(())
    })?;
    // A TCP transfer with several flows (the host spreads flows over the queues).
    let mut serve = b.host.command("iperf3");
    serve
        .args(["-s", "-1", "-B", &ip_b])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let server = tb.lab().spawn(&b.host, serve)?;
    std::thread::sleep(Duration::from_millis(500));
    let client = tb.exec(
        &a.host,
        "iperf3",
        &["-c", &ip_b, "-P", "4", "-t", "2", "-J"],
    )?;
    let _ = tb.lab().kill(server);
    ensure!(client.success(), "iperf3 through the overlay: {client:?}");
    let report: serde_json::Value = serde_json::from_str(&client.stdout)?;
    let bytes = report["end"]["sum_received"]["bytes"]
        .as_f64()
        .unwrap_or(0.0);
    ensure!(bytes > 0.0, "no bytes arrived: {}", client.stdout);
    tb.report(format!(
        "4 TCP streams over two packet threads each: {:.2} Gbit/s (not asserted)",
        report["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0)
            / 1e9
    ));

    // Garbage from many source ports lands on both threads' sockets, and /metrics
    // counts each datagram once.
    let before = metric(&tb, &b, "skylan_node_dropped_total{reason=\"malformed\"}")?;
    spray(&spray_host, B_IP)?;
    let wanted = before + f64::from(SPRAY_PORTS);
    wait_until("b counts every malformed datagram", STEP, || {
        let now = metric(&tb, &b, "skylan_node_dropped_total{reason=\"malformed\"}")?;
        ensure!(now == wanted, "{now} of {wanted}: {:?}", tb.metrics(&b)?);
        Ok(())
    })?;
    for thread in 0..2 {
        let name = format!("skylan_node_thread_rx_datagrams_total{{thread=\"{thread}\"}}");
        let got = metric(&tb, &b, &name)?;
        ensure!(got > 0.0, "thread {thread} of b received nothing");
    }

    // Leaving removes the device although a worker held a queue of it.
    tb.cli(&a, &["leave", &nwid])?;
    wait_until("a's device is gone", STEP, || {
        let out = tb.exec(&a.host, "ip", &["link", "show", "dev", &device])?;
        ensure!(!out.success(), "{device} still exists");
        Ok(())
    })?;
    ensure!(
        network(&tb, &a, &nwid).is_err(),
        "a still lists the network after leaving"
    );
    let log = std::fs::read_to_string(&a.log).unwrap_or_default();
    ensure!(
        !log.contains("removing the network device") && !log.contains("did not close"),
        "a's device removal was not clean:\n{log}"
    );
    tb.finish();
    Ok(())
}
