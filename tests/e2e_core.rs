//! End to end with real `skylan` processes in network namespaces: roots and nodes on
//! public hosts and behind NATs of the lab, driven through the CLI (`-j`) and the local
//! API exactly as a user would.
//!
//! Scenarios:
//! - two nodes behind different port-restricted NATs start relayed and then go DIRECT to
//!   each other's public (NAT) endpoint;
//! - two nodes behind symmetric NATs stay RELAY;
//! - with two roots, killing the root the nodes relay through moves them to the other,
//!   over several rounds (median and worst printed, not asserted); the dead root is
//!   shown as such, and with every root gone `info` says OFFLINE and why;
//! - a NAT rebinding (the router forgets its mappings and maps to new ports) brings
//!   traffic back, then a direct path on the new mapping (times printed, not asserted);
//! - a restarted node keeps its address and is reachable again;
//! - a flood of garbage datagrams is dropped and counted, and the node keeps working.
//!
//! Needs root (namespaces, nftables); each test skips loudly otherwise. Each test has
//! its own lab tag; all of them run in parallel within a couple of minutes. On failure
//! the daemons' logs are printed (see `support`).

// Recovery times are measured with the wall clock and printed, never asserted tightly.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde_json::Value;
use skylan::lab::NatKind;
use skylan::types::{Endpoint, NodeAddress};
use support::{Daemon, Ping, Testbed};

const ROOT1_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
const ROOT2_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 12);
const A_PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 21);
const B_PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 22);
const C_PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 23);
const ATTACKER_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 66);
const A_PRIVATE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const B_PRIVATE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);

/// A node reaching its roots on a quiet lab takes well under a second; this allows for
/// a loaded 2-core CI machine.
const ONLINE: Duration = Duration::from_secs(30);
/// WHOIS, a relayed handshake and the first echo.
const FIRST_REPLY: Duration = Duration::from_secs(30);
/// RENDEZVOUS plus hole punching (probes every second).
const GO_DIRECT: Duration = Duration::from_secs(40);
/// Root failover: a root counts as dead within 9 s of its last answer (allowing for a
/// loaded CI machine).
const FAILOVER: Duration = Duration::from_secs(30);
/// A restarted peer: a stale session is noticed after 20 s of silence.
const RESTART: Duration = Duration::from_secs(60);

/// The `peers -j` entry for `address` on `daemon`, which must be listed.
fn peer_entry(tb: &Testbed, daemon: &Daemon, address: NodeAddress) -> Result<Value> {
    tb.peer(daemon, address)?.with_context(|| {
        format!(
            "{} does not list {address} in `peers -j`: {:?}",
            daemon.name,
            tb.peers(daemon)
        )
    })
}

/// The external endpoint a node's roots see (`info -j` `surfaceAddresses[0]`).
fn surface(tb: &Testbed, daemon: &Daemon) -> Result<Endpoint> {
    let info = tb.info(daemon)?;
    let text = info["surfaceAddresses"][0]
        .as_str()
        .with_context(|| format!("{} has no surface address yet: {info}", daemon.name))?;
    text.parse()
        .map_err(|e| anyhow::anyhow!("bad surface address {text:?}: {e}"))
}

fn online(tb: &Testbed, daemon: &Daemon) -> Result<()> {
    let info = tb.info(daemon)?;
    ensure!(
        info["online"] == Value::Bool(true),
        "{} is not ONLINE: {info}",
        daemon.name
    );
    Ok(())
}

#[test]
fn nodes_behind_port_restricted_nats_go_direct() -> Result<()> {
    let Some(tb) = Testbed::new(
        "e2e_core::nodes_behind_port_restricted_nats_go_direct",
        "e2edirect",
    )?
    else {
        return Ok(());
    };
    let r = tb.public_host("root", ROOT1_IP)?;
    let ha = tb.nat_host("a", NatKind::PortRestricted, A_PUBLIC, A_PRIVATE)?;
    let hb = tb.nat_host("b", NatKind::PortRestricted, B_PUBLIC, B_PRIVATE)?;
    let (roots, planet) = tb.start_planet(&[("root", &r)])?;
    let a = tb.start_node("a", &ha, &planet, &[])?;
    let b = tb.start_node("b", &hb, &planet, &[])?;
    tb.wait_online(&a, ONLINE)?;
    tb.wait_online(&b, ONLINE)?;

    let (first, _) = tb.wait_ping(&a, &b, "first reply", FIRST_REPLY, |p| p.reply)?;
    ensure!(
        first.is_direct() || first.is_relay(),
        "a reply must say how it came: {first:?}"
    );
    let (direct, _) = tb.wait_ping(&a, &b, "DIRECT", GO_DIRECT, Ping::is_direct)?;

    // The direct path is B's NAT mapping, the same one the root sees.
    let b_surface = surface(&tb, &b)?;
    ensure!(
        b_surface.0.ip() == B_PUBLIC,
        "the root should see B at its NAT's address {B_PUBLIC}, sees {b_surface}"
    );
    let path: Endpoint = direct
        .path
        .as_deref()
        .context("a DIRECT reply names its path")?
        .parse()
        .map_err(|e| anyhow::anyhow!("bad path in {direct:?}: {e}"))?;
    ensure!(
        path == b_surface,
        "A reaches B directly at {path}, expected B's public endpoint {b_surface}"
    );

    // `peers` on both sides agrees; the root is listed as PLANET.
    let pb = peer_entry(&tb, &a, b.address)?;
    ensure!(pb["link"] == "DIRECT", "A's peer entry for B: {pb}");
    let preferred: Vec<&Value> = pb["paths"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["preferred"] == Value::Bool(true))
        .collect();
    ensure!(
        preferred.len() == 1 && preferred[0]["address"] == b_surface.to_string().as_str(),
        "A's preferred path to B should be {b_surface}: {pb}"
    );
    let pr = peer_entry(&tb, &a, roots[0].address)?;
    ensure!(pr["role"] == "PLANET", "A's peer entry for the root: {pr}");
    let pa = peer_entry(&tb, &b, a.address)?;
    ensure!(pa["link"] == "DIRECT", "B's peer entry for A: {pa}");
    let a_surface = surface(&tb, &a)?;
    ensure!(
        a_surface.0.ip() == A_PUBLIC,
        "the root should see A at {A_PUBLIC}, sees {a_surface}"
    );

    // And it stays direct.
    for _ in 0..3 {
        let p = tb.ping(&a, b.address)?;
        ensure!(p.is_direct(), "ping after going direct: {p:?}");
    }
    online(&tb, &a)?;
    online(&tb, &b)?;
    tb.finish();
    Ok(())
}

#[test]
fn nodes_behind_symmetric_nats_stay_relayed() -> Result<()> {
    let Some(tb) = Testbed::new(
        "e2e_core::nodes_behind_symmetric_nats_stay_relayed",
        "e2esym",
    )?
    else {
        return Ok(());
    };
    let r = tb.public_host("root", ROOT1_IP)?;
    let ha = tb.nat_host("a", NatKind::Symmetric, A_PUBLIC, A_PRIVATE)?;
    let hb = tb.nat_host("b", NatKind::Symmetric, B_PUBLIC, B_PRIVATE)?;
    let (roots, planet) = tb.start_planet(&[("root", &r)])?;
    let root = roots[0].address.to_string();
    let a = tb.start_node("a", &ha, &planet, &[])?;
    let b = tb.start_node("b", &hb, &planet, &[])?;
    tb.wait_online(&a, ONLINE)?;
    tb.wait_online(&b, ONLINE)?;

    tb.wait_ping(&a, &b, "first reply", FIRST_REPLY, |p| p.reply)?;
    // Long enough for RENDEZVOUS and several rounds of probes, which must all fail.
    for i in 0..8 {
        let p = tb.ping(&a, b.address)?;
        ensure!(
            p.is_relay() && p.path.as_deref() == Some(root.as_str()),
            "ping {i} should come back RELAY via the root {root}: {p:?}"
        );
        let back = tb.ping(&b, a.address)?;
        ensure!(back.is_relay(), "ping {i} from B: {back:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let pb = peer_entry(&tb, &a, b.address)?;
    ensure!(
        pb["link"] == "RELAY" && pb["relay"] == root.as_str(),
        "A's peer entry for B: {pb}"
    );
    online(&tb, &a)?;
    online(&tb, &b)?;
    tb.finish();
    Ok(())
}

/// Rounds of a recovery measurement: the environment variable `var` (`SKYLAN_FAILOVER_ROUNDS`,
/// `SKYLAN_REBIND_ROUNDS`), else `default`; the figures in the notes use 10.
fn rounds(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        .max(1)
}

/// Median and worst of `times`, in seconds.
fn median_and_worst(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    (
        times[times.len() / 2].as_secs_f64(),
        times[times.len() - 1].as_secs_f64(),
    )
}

/// Waits until `daemon` shows every root as an answering PLANET root.
fn hears_all_roots(tb: &Testbed, daemon: &Daemon, roots: &[Daemon]) -> Result<()> {
    support::wait_until("all roots answer", ONLINE, || {
        for r in roots {
            let p = peer_entry(tb, daemon, r.address)?;
            ensure!(
                p["role"] == "PLANET" && p["link"] == "DIRECT",
                "{}: {p}",
                r.name
            );
        }
        Ok(())
    })
    .map(|_| ())
}

#[test]
fn relayed_pings_fail_over_to_the_other_root() -> Result<()> {
    let Some(tb) = Testbed::new(
        "e2e_core::relayed_pings_fail_over_to_the_other_root",
        "e2efail",
    )?
    else {
        return Ok(());
    };
    let r1 = tb.public_host("root1", ROOT1_IP)?;
    let r2 = tb.public_host("root2", ROOT2_IP)?;
    // Symmetric NATs keep the traffic on a root.
    let ha = tb.nat_host("a", NatKind::Symmetric, A_PUBLIC, A_PRIVATE)?;
    let hb = tb.nat_host("b", NatKind::Symmetric, B_PUBLIC, B_PRIVATE)?;
    let (mut roots, planet) = tb.start_planet(&[("root1", &r1), ("root2", &r2)])?;
    let a = tb.start_node("a", &ha, &planet, &[])?;
    let b = tb.start_node("b", &hb, &planet, &[])?;
    tb.wait_online(&a, ONLINE)?;
    tb.wait_online(&b, ONLINE)?;
    tb.wait_ping(&a, &b, "a relayed reply", FIRST_REPLY, Ping::is_relay)?;

    let mut times = Vec::new();
    for round in 0..rounds("SKYLAN_FAILOVER_ROUNDS", 3) {
        // Both roots answer before we judge which one is used.
        hears_all_roots(&tb, &a, &roots)?;
        hears_all_roots(&tb, &b, &roots)?;
        // Each side sends through its own best root (lowest latency), so A and B may use
        // different ones; the root A sends through is the one whose loss cuts A off.
        let (p, _) = tb.wait_ping(&a, &b, "a relayed reply", FIRST_REPLY, Ping::is_relay)?;
        let used = p.path.clone().context("a relayed reply names its root")?;
        let dead = roots
            .iter()
            .position(|r| r.address.to_string() == used)
            .with_context(|| format!("A relays through {used}, which is neither root"))?;
        let other = roots[1 - dead].address.to_string();
        tb.stop(&roots[dead])?;
        // A reply names the root it came back through; the dead one cannot carry anything.
        let (p, took) = tb.ping_recovery(&a, &b, Duration::from_millis(250), FAILOVER, |p| {
            p.is_relay() && p.path.as_deref() == Some(other.as_str())
        })?;
        tb.note(format!(
            "round {round}: through {} {:.1} s after {} was killed ({p:?})",
            roots[1 - dead].name,
            took.as_secs_f64(),
            roots[dead].name,
        ));
        times.push(took);

        let back = tb.ping(&b, a.address)?;
        ensure!(
            back.is_relay() && back.path.as_deref() == Some(other.as_str()),
            "B -> A after failover: {back:?}"
        );
        // Truthful: the dead root is not DIRECT, and the node is still online.
        support::wait_until("the dead root shown as such", ONLINE, || {
            let p = peer_entry(&tb, &a, roots[dead].address)?;
            let paths = p["paths"].as_array().context("paths")?;
            ensure!(
                p["link"] == "NONE" && paths.iter().all(|x| x["active"] == false),
                "{p}"
            );
            Ok(())
        })?;
        online(&tb, &a)?;
        online(&tb, &b)?;
        tb.start_again(&mut roots[dead])?;
    }
    let n = times.len();
    let (median, worst) = median_and_worst(times);
    tb.report(format!(
        "FAILOVER over {n} rounds: relayed pings back through the other root after median {median:.1} s, worst {worst:.1} s"
    ));

    // With every root gone, the node says OFFLINE and why.
    for r in &roots {
        tb.stop(r)?;
    }
    support::wait_until("A offline with a reason", ONLINE, || {
        let info = tb.info(&a)?;
        ensure!(
            info["online"] == false
                && info["offlineReason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("no root has answered")),
            "{info}"
        );
        Ok(())
    })?;
    let text = tb.cli(&a, &["info"])?;
    ensure!(
        text.stdout.contains("OFFLINE") && text.stdout.contains("no root has answered"),
        "info: {text:?}"
    );
    tb.finish();
    Ok(())
}

#[test]
fn a_nat_rebinding_brings_traffic_back_and_then_the_direct_path() -> Result<()> {
    let Some(tb) = Testbed::new(
        "e2e_core::a_nat_rebinding_brings_traffic_back_and_then_the_direct_path",
        "e2erebind",
    )?
    else {
        return Ok(());
    };
    let r = tb.public_host("root", ROOT1_IP)?;
    let ha = tb.nat_host("a", NatKind::PortRestricted, A_PUBLIC, A_PRIVATE)?;
    let hb = tb.nat_host("b", NatKind::PortRestricted, B_PUBLIC, B_PRIVATE)?;
    let (_roots, planet) = tb.start_planet(&[("root", &r)])?;
    let a = tb.start_node("a", &ha, &planet, &[])?;
    let b = tb.start_node("b", &hb, &planet, &[])?;
    tb.wait_online(&a, ONLINE)?;
    tb.wait_online(&b, ONLINE)?;
    tb.wait_ping(&a, &b, "first reply", FIRST_REPLY, |p| p.reply)?;

    let (mut back, mut direct) = (Vec::new(), Vec::new());
    for round in 0..rounds("SKYLAN_REBIND_ROUNDS", 2) {
        let (before, _) = tb.wait_ping(&a, &b, "DIRECT", GO_DIRECT, Ping::is_direct)?;
        // B's router forgets its mappings and maps to new ports: A's packets to the old
        // one are dropped, and B's leave from a port A's router does not let in.
        let start = std::time::Instant::now();
        tb.lab().rebind_nat(&hb)?;
        let every = Duration::from_millis(250);
        let (_, t) = tb.ping_recovery(&a, &b, every, FIRST_REPLY, |p| p.reply)?;
        back.push(t);
        let (now, _) = tb.ping_recovery(&a, &b, every, GO_DIRECT, Ping::is_direct)?;
        let t_direct = start.elapsed();
        direct.push(t_direct);
        ensure!(
            now.path != before.path,
            "round {round}: still direct on the old mapping {:?}",
            before.path
        );
        tb.note(format!(
            "round {round}: traffic back {t:.1?}, direct again on {:?} (was {:?}) after {t_direct:.1?}",
            now.path, before.path
        ));
    }
    let n = back.len();
    let ((b_median, b_worst), (d_median, d_worst)) =
        (median_and_worst(back), median_and_worst(direct));
    tb.report(format!(
        "REBINDING over {n} rounds: traffic back after median {b_median:.1} s, worst {b_worst:.1} s; \
         direct again after median {d_median:.1} s, worst {d_worst:.1} s"
    ));
    online(&tb, &a)?;
    online(&tb, &b)?;
    tb.finish();
    Ok(())
}

#[test]
fn a_restarted_node_keeps_its_address_and_is_reachable_again() -> Result<()> {
    let Some(tb) = Testbed::new(
        "e2e_core::a_restarted_node_keeps_its_address_and_is_reachable_again",
        "e2erestart",
    )?
    else {
        return Ok(());
    };
    let r = tb.public_host("root", ROOT1_IP)?;
    let ha = tb.nat_host("a", NatKind::PortRestricted, A_PUBLIC, A_PRIVATE)?;
    let hb = tb.public_host("b", B_PUBLIC)?;
    let (_, planet) = tb.start_planet(&[("root", &r)])?;
    let a = tb.start_node("a", &ha, &planet, &[])?;
    let mut b = tb.start_node("b", &hb, &planet, &[])?;
    tb.wait_online(&a, ONLINE)?;
    tb.wait_online(&b, ONLINE)?;
    tb.wait_ping(&a, &b, "first reply", FIRST_REPLY, |p| p.reply)?;
    let before = tb.info(&b)?;
    let identity = std::fs::read_to_string(b.home.join("identity.public"))?;

    tb.restart(&mut b)?;
    tb.wait_online(&b, ONLINE)?;
    let after = tb.info(&b)?;
    ensure!(
        after["address"] == before["address"] && after["address"] == b.address.to_string().as_str(),
        "address changed across the restart: {} -> {}",
        before["address"],
        after["address"]
    );
    ensure!(
        after["publicIdentity"] == before["publicIdentity"],
        "public identity changed across the restart"
    );
    ensure!(
        std::fs::read_to_string(b.home.join("identity.public"))? == identity,
        "identity.public was rewritten"
    );

    // A still holds a session with the old process; it must notice and start over.
    let (_, took) = tb.ping_recovery(&a, &b, Duration::from_secs(1), RESTART, |p| p.reply)?;
    tb.report(format!(
        "RESTART: A reached the restarted B {:.1} s after B was back online",
        took.as_secs_f64()
    ));
    let back = tb.ping(&b, a.address)?;
    ensure!(back.reply, "the restarted B reaches A: {back:?}");
    tb.finish();
    Ok(())
}

/// One garbage datagram of the flood; `kind` cycles through the shapes a node must
/// survive: too short for a header, random bytes, and well-formed headers addressed to
/// the node carrying a random Data packet, a random handshake, or an unknown kind.
fn garbage(rng: &mut ChaCha8Rng, kind: u32, dest: NodeAddress) -> Vec<u8> {
    let mut len = |lo: u32, hi: u32| (lo + rng.next_u32() % (hi - lo)) as usize;
    let n = match kind {
        0 => len(0, 12),
        1 => len(12, 1400),
        _ => len(12, 400),
    };
    let mut data = vec![0u8; n];
    rng.fill_bytes(&mut data);
    if kind >= 2 {
        data[0] = match kind {
            2 => 0x03, // Data
            3 => 0x01, // HandshakeInit
            _ => 0x7e, // no such kind
        };
        data[1] = 0;
        data[2..7].copy_from_slice(&dest.to_bytes());
    }
    data
}

const MALFORMED: &str = "skylan_node_dropped_total{reason=\"malformed\"}";

fn drops(m: &support::Metrics) -> f64 {
    m.iter()
        .filter(|(k, _)| k.starts_with("skylan_node_dropped_total{"))
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn a_garbage_flood_is_dropped_and_counted_and_the_node_keeps_working() -> Result<()> {
    let Some(tb) = Testbed::new(
        "e2e_core::a_garbage_flood_is_dropped_and_counted_and_the_node_keeps_working",
        "e2eflood",
    )?
    else {
        return Ok(());
    };
    let r = tb.public_host("root", ROOT1_IP)?;
    let ht = tb.public_host("target", C_PUBLIC)?;
    let hp = tb.nat_host("pinger", NatKind::PortRestricted, A_PUBLIC, A_PRIVATE)?;
    let hx = tb.public_host("attacker", ATTACKER_IP)?;
    let (_, planet) = tb.start_planet(&[("root", &r)])?;
    let t = tb.start_node("target", &ht, &planet, &[])?;
    let p = tb.start_node("pinger", &hp, &planet, &[])?;
    tb.wait_online(&t, ONLINE)?;
    tb.wait_online(&p, ONLINE)?;
    tb.wait_ping(&p, &t, "first reply", FIRST_REPLY, |x| x.reply)?;

    let before = tb.metrics(&t)?;
    for name in [MALFORMED, "skylan_node_rx_datagrams_total"] {
        ensure!(
            before.contains_key(name),
            "/metrics lacks {name}: {before:?}"
        );
    }

    const PACKETS: u32 = 4000;
    const SHAPES: u32 = 5;
    let seed = 0x5eed_f100d;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let sock = support::udp_socket(&hx, 40000)?;
    let target = t.public_endpoint().0;
    for i in 0..PACKETS {
        sock.send_to(&garbage(&mut rng, i % SHAPES, t.address), target)?;
        // Pace the flood a little so the kernel's receive buffer, not the node, is not
        // what drops it.
        if i % 32 == 31 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    tb.note(format!(
        "sent {PACKETS} garbage datagrams (seed {seed:#x}) to {target}"
    ));

    // The node processes them in order; wait until its counters show most of them.
    let short = f64::from(PACKETS / SHAPES);
    let (after, _) = support::wait_until("the flood counted", Duration::from_secs(20), || {
        let m = tb.metrics(&t)?;
        let malformed = m[MALFORMED] - before[MALFORMED];
        let dropped = drops(&m) - drops(&before);
        ensure!(
            malformed >= short * 0.5 && dropped >= f64::from(PACKETS) * 0.5,
            "malformed +{malformed}, all drops +{dropped} of {PACKETS} sent"
        );
        Ok(m)
    })?;
    let increases: Vec<String> = after
        .iter()
        .filter(|(k, _)| k.starts_with("skylan_node_dropped_total{"))
        .map(|(k, v)| (k, v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .map(|(k, d)| format!("{k} +{d}"))
        .collect();
    tb.report(format!(
        "FLOOD: drop counters after {PACKETS} datagrams: {increases:?}"
    ));
    // The shapes are told apart: short ones, foreign headers, bad sessions, bad
    // handshakes and unknown kinds do not all land in one counter.
    ensure!(
        increases.len() >= 3,
        "garbage of {SHAPES} shapes should raise several drop reasons: {increases:?}"
    );
    let rx = after["skylan_node_rx_datagrams_total"] - before["skylan_node_rx_datagrams_total"];
    ensure!(
        rx >= f64::from(PACKETS) * 0.5,
        "rx_datagrams rose by only {rx}"
    );

    tb.check_running(&t)?;
    online(&tb, &t)?;
    let (x, _) = tb.wait_ping(&p, &t, "reply after the flood", FIRST_REPLY, |x| x.reply)?;
    ensure!(x.reply);
    let back = tb.ping(&t, p.address)?;
    ensure!(
        back.reply,
        "the flooded node still reaches others: {back:?}"
    );
    tb.finish();
    Ok(())
}
