//! End to end `skylan netcheck` in network namespaces: one planet of two roots, and four
//! nodes: one on a public host and one behind each NAT kind of the lab (full cone,
//! port-restricted cone, symmetric). Each node's `netcheck -j` must give the external
//! endpoint at the NAT's public address (the host's own for the public node),
//! `mappingVariesByDestination` false for all but the symmetric NAT, the NAT in words,
//! and both roots with a latency. The human report of each is printed (`tb.report`).
//! Then: a usage error exits 2, and with the daemon stopped the command says to check
//! that the node runs.
//!
//! Needs root (namespaces, nftables); skips loudly otherwise.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use skylan::lab::NatKind;
use skylan::types::Endpoint;
use support::{Daemon, Testbed, wait_until};

const ROOT1_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
const ROOT2_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 12);
const PUBLIC_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 21);
const CONE_PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 22);
const RESTRICTED_PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 23);
const SYMMETRIC_PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 24);
const CONE_PRIVATE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);
const RESTRICTED_PRIVATE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 30);
const SYMMETRIC_PRIVATE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 40);

/// A node reaching its roots on a quiet lab takes well under a second; this allows for
/// a loaded 2-core CI machine.
const ONLINE: Duration = Duration::from_secs(30);
/// Until both roots have answered a node (the second may answer a HELLO later than the
/// first).
const BOTH_ROOTS: Duration = Duration::from_secs(15);

/// What one node's netcheck must say.
struct Expect {
    /// The lab's name for the case.
    case: &'static str,
    /// The IP every root must see.
    ip: Ipv4Addr,
    /// `nat`.
    nat: &'static str,
    /// Words `natDescription` must contain.
    words: &'static str,
    /// `mappingVariesByDestination`.
    varies: bool,
}

#[test]
fn netcheck_tells_each_nat_kind() -> Result<()> {
    let Some(tb) = Testbed::new("e2e_netcheck::netcheck_tells_each_nat_kind", "e2enetcheck")?
    else {
        return Ok(());
    };
    let r1 = tb.public_host("root1", ROOT1_IP)?;
    let r2 = tb.public_host("root2", ROOT2_IP)?;
    let hp = tb.public_host("public", PUBLIC_IP)?;
    let hc = tb.nat_host(
        "cone",
        NatKind::EndpointIndependent,
        CONE_PUBLIC,
        CONE_PRIVATE,
    )?;
    let hr = tb.nat_host(
        "restricted",
        NatKind::PortRestricted,
        RESTRICTED_PUBLIC,
        RESTRICTED_PRIVATE,
    )?;
    let hs = tb.nat_host(
        "symmetric",
        NatKind::Symmetric,
        SYMMETRIC_PUBLIC,
        SYMMETRIC_PRIVATE,
    )?;
    let (roots, planet) = tb.start_planet(&[("root1", &r1), ("root2", &r2)])?;
    let cases = [
        (
            tb.start_node("public", &hp, &planet, &[])?,
            Expect {
                case: "public host (no NAT)",
                ip: PUBLIC_IP,
                nat: "none",
                words: "no NAT",
                varies: false,
            },
        ),
        (
            tb.start_node("cone", &hc, &planet, &[])?,
            Expect {
                case: "full-cone NAT (NatKind::EndpointIndependent)",
                ip: CONE_PUBLIC,
                nat: "endpoint-independent",
                words: "endpoint-independent mapping (cone NAT)",
                varies: false,
            },
        ),
        (
            tb.start_node("restricted", &hr, &planet, &[])?,
            Expect {
                case: "port-restricted cone NAT (NatKind::PortRestricted)",
                ip: RESTRICTED_PUBLIC,
                nat: "endpoint-independent",
                words: "endpoint-independent mapping (cone NAT)",
                varies: false,
            },
        ),
        (
            tb.start_node("symmetric", &hs, &planet, &[])?,
            Expect {
                case: "symmetric NAT (NatKind::Symmetric)",
                ip: SYMMETRIC_PUBLIC,
                nat: "symmetric",
                words: "mapping varies by destination",
                varies: true,
            },
        ),
    ];
    for (node, _) in &cases {
        tb.wait_online(node, ONLINE)?;
    }

    let root_addresses: Vec<String> = roots.iter().map(|r| r.address.to_string()).collect();
    for (node, expect) in &cases {
        let (v, took) = wait_until(
            &format!("{}: both roots answer netcheck", node.name),
            BOTH_ROOTS,
            || {
                let v = tb.cli_json(node, &["netcheck"])?;
                let answered = roots_of(&v)
                    .iter()
                    .filter(|r| r["answered"] == true)
                    .count();
                ensure!(answered == 2, "{answered} of 2 roots answered: {v}");
                Ok(v)
            },
        )?;
        tb.note(format!(
            "{}: both roots answered after {took:.1?}",
            node.name
        ));
        check(&v, node, expect, &root_addresses)
            .with_context(|| format!("netcheck -j on {} ({}): {v:#}", node.name, expect.case))?;

        let human = tb.cli(node, &["netcheck"])?;
        ensure!(
            human.success(),
            "netcheck on {} exited {:?}: {}",
            node.name,
            human.code,
            human.stderr
        );
        ensure!(
            human.stdout.contains(expect.words) && human.stdout.contains(" ms "),
            "netcheck on {} should say {:?} and list latencies: {}",
            node.name,
            expect.words,
            human.stdout
        );
        tb.report(format!(
            "--- skylan netcheck on {} ({}):\n{}",
            node.name,
            expect.case,
            human.stdout.trim_end()
        ));
    }

    // Usage errors exit 2; a stopped daemon gets the same hint as the other commands.
    let public = &cases[0].0;
    let usage = tb.cli(public, &["netcheck", "extra"])?;
    ensure!(usage.code == Some(2), "netcheck extra: {usage:?}");
    tb.stop(public)?;
    let down = tb.cli(public, &["netcheck"])?;
    ensure!(
        down.code == Some(1) && down.stderr.contains("is the node running?"),
        "netcheck with the daemon stopped: {down:?}"
    );
    tb.report(format!(
        "--- skylan netcheck with the daemon stopped: {}",
        down.stderr.trim()
    ));
    tb.finish();
    Ok(())
}

fn roots_of(v: &Value) -> Vec<Value> {
    v["roots"].as_array().cloned().unwrap_or_default()
}

/// The checks of one node's `netcheck -j`.
fn check(v: &Value, node: &Daemon, expect: &Expect, roots: &[String]) -> Result<()> {
    ensure!(
        v["mappingVariesByDestination"] == expect.varies,
        "mappingVariesByDestination should be {}",
        expect.varies
    );
    ensure!(v["nat"] == expect.nat, "nat should be {:?}", expect.nat);
    let words = v["natDescription"].as_str().unwrap_or_default();
    ensure!(
        words.contains(expect.words),
        "natDescription should say {:?}",
        expect.words
    );
    let endpoints: Vec<Endpoint> = v["endpoints"]
        .as_array()
        .context("endpoints is a list")?
        .iter()
        .map(|e| {
            e.as_str()
                .context("an endpoint is a string")?
                .parse::<Endpoint>()
                .map_err(|e| anyhow::anyhow!("{e}"))
        })
        .collect::<Result<_>>()?;
    let distinct = if expect.varies { 2 } else { 1 };
    ensure!(
        endpoints.len() == distinct,
        "{distinct} distinct endpoint(s) expected"
    );
    for ep in &endpoints {
        ensure!(
            ep.0.ip() == expect.ip,
            "endpoint {ep} should be at {}",
            expect.ip
        );
    }
    if expect.nat == "none" {
        ensure!(
            endpoints == [Endpoint((expect.ip, node.port).into())],
            "a public node is seen at its own address and port"
        );
        ensure!(v["portPreserved"] == true, "the port is preserved");
    }
    ensure!(v["ipv4"] == true, "IPv4 should be reachable");
    ensure!(
        v["ipv6"] == false && v["ipv6Reason"] == "no root answered over IPv6",
        "IPv6 should be unreachable with its reason (the lab has no IPv6 here)"
    );
    ensure!(
        v["directPeers"].as_str().is_some_and(|s| !s.is_empty()),
        "directPeers says which peers are reached directly"
    );
    let listed = roots_of(v);
    ensure!(listed.len() == 2, "both roots listed");
    for (r, address) in listed.iter().zip(roots) {
        ensure!(r["address"] == address.as_str(), "roots in world order");
        ensure!(r["role"] == "PLANET", "a planet root: {r}");
        ensure!(r["alive"] == true, "root alive: {r}");
        ensure!(
            r["latency"].as_f64().is_some_and(|l| l > 0.0),
            "root with a latency: {r}"
        );
        let seen: Endpoint = r["observed"]
            .as_str()
            .context("observed endpoint")?
            .parse()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        ensure!(endpoints.contains(&seen), "{seen} among the endpoints");
    }
    Ok(())
}
