//! The direct/relay matrix with real `skylan` processes: one node on a public address and
//! one behind each NAT kind of the lab (full cone, port-restricted cone, symmetric), one
//! root. Every pair pings; a pair that can hole-punch must go DIRECT, the one that cannot
//! (port-restricted with symmetric) must stay RELAY and keep answering. The time from the
//! first reply to the first DIRECT one is printed per pair, not asserted. Pairs of the
//! same kind are in `e2e_core` (port-restricted, symmetric) and `e2e_lan` (two nodes
//! behind one NAT).
//!
//! Needs root (namespaces, nftables); skips loudly otherwise.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Result, ensure};
use skylan::lab::{LabHost, NatKind};
use support::{Daemon, Ping, Testbed};

const ROOT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);

/// A node reaching its root, and a first reply (WHOIS, relayed handshake, echo), on a
/// loaded 2-core CI machine.
const FIRST_REPLY: Duration = Duration::from_secs(30);
/// RENDEZVOUS plus hole punching (probes every second).
const GO_DIRECT: Duration = Duration::from_secs(40);

/// Where a node of the matrix sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spot {
    Public,
    Behind(NatKind),
}

impl Spot {
    fn name(self) -> &'static str {
        match self {
            Spot::Public => "public",
            Spot::Behind(NatKind::EndpointIndependent) => "cone",
            Spot::Behind(NatKind::PortRestricted) => "restricted",
            Spot::Behind(NatKind::Symmetric) => "symmetric",
        }
    }
}

/// Whether two nodes can reach each other directly: only a port-restricted NAT facing a
/// symmetric one cannot (the symmetric side's port towards the peer is not the one the
/// root saw, and the restricted side lets in only the port it sent to).
fn goes_direct(a: Spot, b: Spot) -> bool {
    let pair = [a, b];
    !(pair.contains(&Spot::Behind(NatKind::PortRestricted))
        && pair.contains(&Spot::Behind(NatKind::Symmetric)))
}

#[test]
fn every_nat_pair_goes_direct_unless_it_cannot() -> Result<()> {
    let Some(tb) = Testbed::new(
        "e2e_matrix::every_nat_pair_goes_direct_unless_it_cannot",
        "e2ematrix",
    )?
    else {
        return Ok(());
    };
    let spots = [
        Spot::Public,
        Spot::Behind(NatKind::EndpointIndependent),
        Spot::Behind(NatKind::PortRestricted),
        Spot::Behind(NatKind::Symmetric),
    ];
    let r = tb.public_host("root", ROOT_IP)?;
    let hosts = spots
        .iter()
        .zip(21u8..)
        .map(|(spot, n)| {
            let public = Ipv4Addr::new(198, 51, 100, n);
            match spot {
                Spot::Public => tb.public_host(spot.name(), public),
                Spot::Behind(kind) => {
                    tb.nat_host(spot.name(), *kind, public, Ipv4Addr::new(192, 0, 2, n))
                }
            }
        })
        .collect::<Result<Vec<LabHost>>>()?;
    let (_roots, planet) = tb.start_planet(&[("root", &r)])?;
    let nodes = spots
        .iter()
        .zip(&hosts)
        .map(|(spot, host)| tb.start_node(spot.name(), host, &planet, &[]))
        .collect::<Result<Vec<Daemon>>>()?;
    for n in &nodes {
        tb.wait_online(n, FIRST_REPLY)?;
    }

    let mut table = Vec::new();
    for i in 0..nodes.len() {
        for j in i + 1..nodes.len() {
            let (a, b) = (&nodes[i], &nodes[j]);
            let (sa, sb) = (spots[i], spots[j]);
            let (_, first) = tb.wait_ping(a, b, "first reply", FIRST_REPLY, |p| p.reply)?;
            let cell = if goes_direct(sa, sb) {
                let (p, took) = tb.wait_ping(a, b, "DIRECT", GO_DIRECT, Ping::is_direct)?;
                let back = tb.ping(b, a.address)?;
                ensure!(
                    back.is_direct(),
                    "{} -> {} after DIRECT: {back:?}",
                    b.name,
                    a.name
                );
                format!(
                    "DIRECT after {:.1} s (first reply {:.1} s), {}",
                    took.as_secs_f64(),
                    first.as_secs_f64(),
                    p.path.unwrap_or_default()
                )
            } else {
                // Long enough for RENDEZVOUS and several rounds of probes, which must
                // all fail while every ping still gets through the root.
                for k in 0..8 {
                    let p = tb.ping(a, b.address)?;
                    ensure!(p.is_relay(), "{} -> {} ping {k}: {p:?}", a.name, b.name);
                    let back = tb.ping(b, a.address)?;
                    ensure!(
                        back.is_relay(),
                        "{} -> {} ping {k}: {back:?}",
                        b.name,
                        a.name
                    );
                    std::thread::sleep(Duration::from_millis(500));
                }
                "RELAY, every ping answered".to_string()
            };
            table.push(format!("{:>10} - {:<10} {cell}", sa.name(), sb.name()));
        }
    }
    tb.report(format!("MATRIX (one root):\n{}", table.join("\n")));
    tb.finish();
    Ok(())
}
