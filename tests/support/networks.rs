//! Network steps shared by the end-to-end tests: the controller CLI, a member's entry
//! in `networks -j`, waiting for a status, and a private network with authorized members.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

use super::{Daemon, Testbed};

/// A planet of one root, a node running the controller and member nodes, all online.
pub struct ControlledLab {
    /// The root (kept so it runs for the test's life).
    pub roots: Vec<Daemon>,
    /// The node with `--controller`.
    pub ctrl: Daemon,
    /// The members, in the order asked for.
    pub members: Vec<Daemon>,
}

/// Starts a root at `root_ip`, a controller node at `ctrl_ip` and one node per
/// `(name, ip)` of `members`, each in its own public host, and waits (up to [`STEP`])
/// until all are online.
pub fn start_controlled_lab(
    tb: &Testbed,
    root_ip: Ipv4Addr,
    ctrl_ip: Ipv4Addr,
    members: &[(&str, Ipv4Addr)],
) -> Result<ControlledLab> {
    let root_host = tb.public_host("root", root_ip)?;
    let (roots, planet) = tb.start_planet(&[("root", &root_host)])?;
    let ctrl = tb.start_node(
        "ctrl",
        &tb.public_host("ctrl", ctrl_ip)?,
        &planet,
        &["--controller"],
    )?;
    let members = members
        .iter()
        .map(|(name, ip)| tb.start_node(name, &tb.public_host(name, *ip)?, &planet, &[]))
        .collect::<Result<Vec<_>>>()?;
    for d in std::iter::once(&ctrl).chain(&members) {
        tb.wait_online(d, STEP)?;
    }
    Ok(ControlledLab {
        roots,
        ctrl,
        members,
    })
}

/// How long one step of a network's life (a join, an authorization) may take.
pub const STEP: Duration = Duration::from_secs(40);

/// Runs `skylan controller ...` on the controller node and parses `-j` output.
pub fn controller(tb: &Testbed, ctrl: &Daemon, args: &[&str]) -> Result<Value> {
    let mut all = vec!["controller"];
    all.extend_from_slice(args);
    tb.cli_json(ctrl, &all)
}

/// Sets `nwid`'s rules to `source` (the rules language) on the controller `ctrl`.
pub fn set_rules(tb: &Testbed, ctrl: &Daemon, nwid: &str, source: &str) -> Result<Value> {
    let field = format!("rulesSource={source}");
    controller(tb, ctrl, &["network", "set", nwid, &field])
}

/// The network entry of `networks -j` on `d`.
pub fn network(tb: &Testbed, d: &Daemon, nwid: &str) -> Result<Value> {
    tb.network(d, nwid)
}

/// Waits (up to [`STEP`]) until `d` shows `status` for `nwid`; returns its entry.
pub fn wait_status(tb: &Testbed, d: &Daemon, nwid: &str, status: &str) -> Result<Value> {
    tb.wait_network_status(d, nwid, status, STEP)
}

/// The first managed IPv4 address (without prefix) of a network entry.
pub fn managed_ip(n: &Value) -> Result<String> {
    n["assignedAddresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|a| a.contains('.'))
        .and_then(|a| a.split('/').next())
        .map(str::to_string)
        .with_context(|| format!("no managed IPv4 address in {n}"))
}

/// One system ping from `from`'s namespace; true when answered.
pub fn ping_ip(tb: &Testbed, from: &Daemon, ip: &str) -> Result<bool> {
    let out = tb.exec(&from.host, "ping", &["-c", "1", "-W", "1", ip])?;
    Ok(out.success())
}

/// Creates a private network named "lab" with `pool` and `route` on `ctrl`; returns
/// its ID.
pub fn create_network(tb: &Testbed, ctrl: &Daemon, pool: &str, route: &str) -> Result<String> {
    let created = controller(
        tb,
        ctrl,
        &[
            "network",
            "create",
            "--name",
            "lab",
            "--pool",
            pool,
            "--route",
            route,
            "--private",
        ],
    )?;
    let nwid = created["id"]
        .as_str()
        .context("created network has an id")?
        .to_string();
    tb.note(format!("created network {nwid}"));
    Ok(nwid)
}

/// [`create_network`], then joins and authorizes `members` and waits until each is OK;
/// returns the network ID and each member's entry.
pub fn authorized_network(
    tb: &Testbed,
    ctrl: &Daemon,
    members: &[&Daemon],
    pool: &str,
    route: &str,
) -> Result<(String, Vec<Value>)> {
    let nwid = create_network(tb, ctrl, pool, route)?;
    for d in members {
        tb.cli(d, &["join", &nwid])?;
    }
    for d in members {
        let member = d.address.to_string();
        controller(tb, ctrl, &["member", "authorize", &nwid, &member])?;
    }
    let entries = members
        .iter()
        .map(|d| wait_status(tb, d, &nwid, "OK"))
        .collect::<Result<Vec<_>>>()?;
    Ok((nwid, entries))
}

/// A deterministic byte pattern (so the receiver can check every byte).
fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// Sends `len` pattern bytes over TCP from `from`'s namespace to `to_ip`:`port`, where
/// `to` listens; returns how many bytes arrived in order and intact.
pub fn bulk_tcp(from: &Daemon, to: &Daemon, to_ip: &str, port: u16, len: usize) -> Result<usize> {
    use std::io::{Read, Write};
    let listener = to
        .host
        .run(move || std::net::TcpListener::bind(("0.0.0.0", port)))?
        .context("bind the bulk receiver")?;
    let receiver = std::thread::spawn(move || -> std::io::Result<usize> {
        let (mut s, _) = listener.accept()?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut buf = vec![0u8; 1 << 16];
        let mut good = 0;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok(good);
            }
            for &b in &buf[..n] {
                if b != pattern(good) {
                    return Ok(good);
                }
                good += 1;
            }
        }
    });
    let addr: std::net::SocketAddr = format!("{to_ip}:{port}").parse()?;
    from.host.run(move || -> std::io::Result<()> {
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        // A stalled transfer fails the test instead of hanging it.
        s.set_write_timeout(Some(Duration::from_secs(30)))?;
        let data: Vec<u8> = (0..len).map(pattern).collect();
        s.write_all(&data)?;
        s.shutdown(std::net::Shutdown::Write)
    })??;
    let good = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("receiver panicked"))??;
    Ok(good)
}
