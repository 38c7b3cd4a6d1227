//! End to end over an IPv6 underlay, in network namespaces with real `skylan` processes.
//!
//! - **IPv6 only**: the root and two nodes have only addresses in 2001:db8:5::/64 (their
//!   IPv4 addresses removed), and the planet names the root only at its IPv6 endpoint.
//!   Both nodes must come online, ping each other DIRECT at the peer's IPv6 endpoint,
//!   and `netcheck` must say IPv6 yes, IPv4 no, no NAT.
//! - **Dual stack**: every host has an IPv4 and an IPv6 address and the planet names the
//!   root at both. The nodes must ping DIRECT over IPv6 (preferred at equal round trips)
//!   and stay there in both directions (once on IPv6, no further link change is logged), and `netcheck` must say IPv4 yes and IPv6 yes with
//!   the root's view of us over each.
//!
//! Needs root (namespaces); skips loudly otherwise.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use skylan::types::Endpoint;
use support::{Daemon, PORT, Testbed, wait_until};

const ROOT_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
const A_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 21);
const B_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 22);
const ROOT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 5, 0, 0, 0, 0, 0x11);
const A_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 5, 0, 0, 0, 0, 0x21);
const B_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 5, 0, 0, 0, 0, 0x22);

/// Online takes about a second on a quiet lab; this allows for a loaded CI machine.
const ONLINE: Duration = Duration::from_secs(30);
/// Until pings go direct.
const DIRECT: Duration = Duration::from_secs(30);

/// The lab: a root and nodes A and B on public hosts with IPv6 addresses, IPv4 kept
/// or removed; the planet names the root at `root_endpoints`.
struct Ipv6Lab {
    tb: Testbed,
    a: Daemon,
    b: Daemon,
}

fn start(test: &str, tag: &str, keep_ipv4: bool) -> Result<Option<Ipv6Lab>> {
    let Some(tb) = Testbed::new(test, tag)? else {
        return Ok(None);
    };
    let hosts = [
        ("root", ROOT_V4, ROOT_V6),
        ("a", A_V4, A_V6),
        ("b", B_V4, B_V6),
    ]
    .into_iter()
    .map(|(name, v4, v6)| {
        let host = tb.public_host(name, v4)?;
        tb.lab().add_ipv6(&host, v6)?;
        if !keep_ipv4 {
            tb.lab().drop_ipv4(&host)?;
        }
        Ok(host)
    })
    .collect::<Result<Vec<_>>>()?;
    let spec = tb.prepare_root("root", &hosts[0], PORT)?;
    let mut endpoints = vec![format!("{ROOT_V6}/{PORT}")];
    if keep_ipv4 {
        endpoints.insert(0, format!("{ROOT_V4}/{PORT}"));
    }
    let planet = tb.make_planet_at(&[(&spec, endpoints)])?;
    tb.start_root(&spec, &planet)?;
    let a = tb.start_node("a", &hosts[1], &planet, &[])?;
    let b = tb.start_node("b", &hosts[2], &planet, &[])?;
    for node in [&a, &b] {
        tb.wait_online(node, ONLINE)?;
    }
    Ok(Some(Ipv6Lab { tb, a, b }))
}

/// Pings `from` → `to` until a reply comes DIRECT from `to`'s IPv6 endpoint.
fn direct_over_ipv6(tb: &Testbed, from: &Daemon, to: &Daemon, ip: Ipv6Addr) -> Result<()> {
    let want = Endpoint((ip, to.port).into()).to_string();
    let (ping, took) = tb.wait_ping(from, to, "DIRECT over IPv6", DIRECT, |p| {
        p.is_direct() && p.path.as_deref() == Some(want.as_str())
    })?;
    tb.report(format!(
        "{} -> {}: DIRECT at {want} after {took:.1?}, {:.2} ms",
        from.name,
        to.name,
        ping.latency_ms.unwrap_or_default()
    ));
    Ok(())
}

/// `netcheck -j` once every root has answered over each family in `families`.
fn netcheck(tb: &Testbed, node: &Daemon, ipv4: bool, ipv6: bool) -> Result<Value> {
    let (v, _) = wait_until(
        &format!("{}: netcheck says IPv4 {ipv4}, IPv6 {ipv6}", node.name),
        Duration::from_secs(15),
        || {
            let v = tb.cli_json(node, &["netcheck"])?;
            ensure!(
                v["ipv4"] == ipv4 && v["ipv6"] == ipv6,
                "netcheck says {v:#}"
            );
            Ok(v)
        },
    )?;
    let human = tb.cli(node, &["netcheck"])?;
    tb.report(format!(
        "--- skylan netcheck on {}:\n{}",
        node.name,
        human.stdout.trim_end()
    ));
    Ok(v)
}

fn observed(v: &Value, key: &str) -> Result<Endpoint> {
    v["roots"][0][key]
        .as_str()
        .with_context(|| format!("roots[0].{key} in {v:#}"))?
        .parse()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

#[test]
fn an_ipv6_only_underlay_goes_direct() -> Result<()> {
    let Some(Ipv6Lab { tb, a, b }) = start(
        "e2e_ipv6::an_ipv6_only_underlay_goes_direct",
        "e2eipv6only",
        false,
    )?
    else {
        return Ok(());
    };
    direct_over_ipv6(&tb, &a, &b, B_V6)?;
    direct_over_ipv6(&tb, &b, &a, A_V6)?;
    let v = netcheck(&tb, &a, false, true)?;
    ensure!(v["nat"] == "none", "an IPv6 host has no NAT: {v:#}");
    ensure!(
        observed(&v, "observedIpv6")? == Endpoint((A_V6, a.port).into()),
        "the root sees A at its own IPv6 endpoint: {v:#}"
    );
    ensure!(
        v["ipv4Reason"] == "no root answered over IPv4",
        "IPv4 says why: {v:#}"
    );
    tb.finish();
    Ok(())
}

#[test]
fn a_dual_stack_pair_settles_on_ipv6() -> Result<()> {
    let Some(Ipv6Lab { tb, a, b }) = start(
        "e2e_ipv6::a_dual_stack_pair_settles_on_ipv6",
        "e2edual",
        true,
    )?
    else {
        return Ok(());
    };
    direct_over_ipv6(&tb, &a, &b, B_V6)?;
    direct_over_ipv6(&tb, &b, &a, A_V6)?;
    // Traffic for a few seconds more: the link must stay on IPv6 both ways.
    for _ in 0..10 {
        for (from, to, ip) in [(&a, &b, B_V6), (&b, &a, A_V6)] {
            let p = tb.ping(from, to.address)?;
            let want = Endpoint((ip, to.port).into()).to_string();
            ensure!(
                !p.reply || p.path.as_deref() == Some(want.as_str()),
                "{} -> {} left IPv6: {p:?}",
                from.name,
                to.name
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    for (node, other, ip) in [(&a, &b, B_V6), (&b, &a, A_V6)] {
        let log = std::fs::read_to_string(&node.log)?;
        let changes: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("link changed") && l.contains(&other.address.to_string()))
            .collect();
        let v6 = Endpoint((ip, other.port).into()).to_string();
        let on_v6 = changes
            .iter()
            .position(|l| l.ends_with(&format!("DIRECT {v6}")))
            .context("a link change to IPv6 is logged")?;
        tb.note(format!(
            "{}: link to {}: {}",
            node.name,
            other.name,
            changes.join(" | ")
        ));
        ensure!(
            on_v6 + 1 == changes.len(),
            "{}'s link to {} moved again after it reached IPv6: {changes:#?}",
            node.name,
            other.name
        );
    }
    let v = netcheck(&tb, &a, true, true)?;
    ensure!(v["nat"] == "none", "a public host has no NAT: {v:#}");
    ensure!(
        observed(&v, "observed")? == Endpoint((A_V4, a.port).into())
            && observed(&v, "observedIpv6")? == Endpoint((A_V6, a.port).into()),
        "the root sees A at both of its endpoints: {v:#}"
    );
    tb.finish();
    Ok(())
}
