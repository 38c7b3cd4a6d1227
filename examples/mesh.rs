//! A readable tour of the simulator: one root on a public address and two nodes, each
//! behind its own NAT. The first ping between the nodes goes through the root (RELAY);
//! the root introduces them (RENDEZVOUS), they punch through their NATs and traffic
//! moves to a DIRECT path. Everything runs on a virtual clock, so the whole minute of
//! network time takes milliseconds and prints the same every run.
//!
//! Run: `cargo run --example mesh` or, with other NAT kinds,
//! `cargo run --example mesh -- symmetric full-cone` (one kind per node; with two
//! symmetric NATs no direct path can be found and traffic stays relayed).
// Tests and examples may use files, sockets, threads and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::Duration;

use anyhow::{Context, bail};
use skylan::node::Link as Via;
use skylan::sim::mesh::{Mesh, Placement};
use skylan::sim::{AccessLink, NatKind};
use skylan::types::Time;

fn main() -> anyhow::Result<()> {
    let kinds = nat_kinds(std::env::args().skip(1).collect())?;
    let mut m = Mesh::build(
        1,
        &[AccessLink::default()],
        &[Placement::Behind(kinds[0]), Placement::Behind(kinds[1])],
        AccessLink::default(),
    );
    let (root, a, b) = (m.roots[0], m.nodes[0], m.nodes[1]);
    let root_address = m.root(root).address();
    println!("A skylan mesh in the simulator (every link: 10 ms one way, no loss)");
    println!("  root    {root_address} at {}", m.sim.endpoint(root));
    for (name, id, kind) in [("node A", a, kinds[0]), ("node B", b, kinds[1])] {
        let nat = m.sim.behind(id).context("the nodes sit behind NATs")?;
        println!(
            "  {name}  {} at {} behind a {} NAT with public address {}",
            m.address(id),
            m.sim.endpoint(id),
            describe(kind),
            m.sim.nat_public_ip(nat),
        );
    }
    println!();

    m.settle();
    let now = m.sim.now();
    let surface = |m: &Mesh, id| {
        m.node(id)
            .node
            .status(m.sim.now())
            .surface
            .map_or("unknown".to_string(), |e| e.to_string())
    };
    println!(
        "{}  both nodes reached the root; it sees A at {} and B at {}",
        at(now),
        surface(&m, a),
        surface(&m, b)
    );

    let mut first_direct = None;
    let mut first_ping = None;
    for _ in 0..20 {
        let sent = m.sim.now();
        first_ping.get_or_insert(sent);
        match m.ping(a, b, Duration::from_secs(5)) {
            Some((rtt, link)) => {
                let note = if first_ping == Some(sent) {
                    "  (the first one includes the WHOIS and the handshake)"
                } else {
                    ""
                };
                println!(
                    "{}  ping A → B: {:>5.1} ms  {}{note}",
                    at(sent),
                    ms(rtt),
                    describe_link(link)
                );
                if matches!(link, Via::Direct(_)) {
                    first_direct.get_or_insert(sent);
                }
            }
            None => println!("{}  ping A → B: lost", at(sent)),
        }
        if first_direct.is_some_and(|t| m.sim.now().since(t) > Duration::from_secs(2)) {
            break;
        }
        m.sim.run_for(Duration::from_millis(500));
    }
    println!();

    let root_stats = m.root(root).stats();
    println!(
        "The root relayed {} packets and sent {} RENDEZVOUS messages.",
        root_stats.relayed, root_stats.rendezvous
    );
    match (first_ping, first_direct) {
        (Some(start), Some(direct)) => println!(
            "Path A → B: RELAY → DIRECT, {:.1} s after the first ping.",
            direct.since(start).as_secs_f64()
        ),
        _ => println!(
            "Path A → B stayed RELAY: these NATs leave no way to reach each other directly."
        ),
    }
    let events: Vec<String> = m
        .node(a)
        .events
        .iter()
        .filter_map(|e| match e {
            skylan::node::Event::LinkChanged { peer, link } if *peer == m.address(b) => {
                Some(describe_link(*link))
            }
            _ => None,
        })
        .collect();
    println!("Node A's link events for B: {}", events.join(" → "));
    let s = m.sim.stats();
    println!(
        "Simulator: {} datagrams delivered, {} refused by NATs (hole-punch probes the other \
         side's NAT did not let in), {} lost.",
        s.delivered, s.nat_filtered, s.lost
    );
    Ok(())
}

fn nat_kinds(args: Vec<String>) -> anyhow::Result<[NatKind; 2]> {
    let parse = |s: &str| {
        Ok(match s {
            "full-cone" => NatKind::EndpointIndependent,
            "port-restricted" => NatKind::PortRestricted,
            "symmetric" => NatKind::Symmetric,
            other => {
                bail!("unknown NAT kind {other:?}: use full-cone, port-restricted or symmetric")
            }
        })
    };
    match args.as_slice() {
        [] => Ok([NatKind::PortRestricted; 2]),
        [one] => Ok([parse(one)?; 2]),
        [first, second] => Ok([parse(first)?, parse(second)?]),
        _ => bail!("usage: mesh [NAT-KIND-OF-A [NAT-KIND-OF-B]]"),
    }
}

fn describe(kind: NatKind) -> &'static str {
    match kind {
        NatKind::EndpointIndependent => "full-cone",
        NatKind::PortRestricted => "port-restricted",
        NatKind::Symmetric => "symmetric",
    }
}

fn describe_link(link: Via) -> String {
    match link {
        Via::Relay(root) => format!("RELAY through root {root}"),
        Via::Direct(ep) => format!("DIRECT to {ep}"),
    }
}

fn at(t: Time) -> String {
    format!("t = {:>6.3} s", t.as_micros() as f64 / 1e6)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
