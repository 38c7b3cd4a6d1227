//! Members opt in, end to end with real processes in namespaces: a network whose
//! controller pushes a default route, a global address and route, and a route over the
//! root's own underlay address. By default the member's device gets none of them;
//! `skylan set <nwid> allowDefault=true allowGlobal=true` installs the default route (as
//! its two /1 halves) and the global address and route at once (checked with `ip` inside the member's
//! namespace), while the route over the root's address is never installed and is
//! reported; the settings survive a restart and are forgotten by leave/join (as
//! ZeroTier does); the local API's `POST /network/<nwid>` changes them too.
//!
//! Addresses: the underlay is 198.51.100.0/24 (every host here is public; the lab uses
//! 192.0.2.0/24 only behind NAT, and nothing else). The "global" managed address is
//! 203.0.113.10/24: a documentation range that no underlay of this test (or of the lab)
//! uses, so the overlay's route to it cannot take any host's way to another, and the
//! traffic it draws stays between the test's namespaces. The root sits at
//! 198.51.100.49 so that the route 198.51.100.48/29 covers it and no other host.
//!
//! Needs root (skips loudly otherwise), except the first test, which checks the CLI's
//! usage errors without a daemon.

// Tests run programs, read the daemons' files and wait.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use support::networks::{STEP, controller, wait_status};
use support::{Daemon, Testbed, skylan_bin, wait_until};

const ROOT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 49);
const CTRL_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 41);
const A_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 42);
/// The route that would carry the root's address (198.51.100.48-55) into the overlay.
const OVER_ROOT: &str = "198.51.100.48/29";
const GLOBAL_ADDRESS: &str = "203.0.113.10/24";
const GLOBAL_ROUTE: &str = "203.0.113.0/24";
const PRIVATE_ADDRESS: &str = "198.18.9.10/24";
const GATEWAY: &str = "198.18.9.1";

#[test]
fn set_refuses_bad_arguments_as_usage_errors_before_asking_the_daemon() -> Result<()> {
    let home = tempfile::tempdir()?;
    let run = |args: &[&str]| -> Result<(Option<i32>, String)> {
        let out = std::process::Command::new(skylan_bin())
            .arg("--home")
            .arg(home.path())
            .args(args)
            .output()?;
        Ok((
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into(),
        ))
    };
    let (code, err) = run(&["set", "89e92ceee5000001", "allowDefualt=true"])?;
    ensure!(code == Some(2), "exit {code:?}: {err}");
    ensure!(err.contains("did you mean `allowDefault`?"), "{err}");
    let (code, err) = run(&["set", "89e92ceee5000001", "allowGlobal=maybe"])?;
    ensure!(code == Some(2), "exit {code:?}: {err}");
    ensure!(err.contains("must be true or false"), "{err}");
    let (code, err) = run(&["set", "not-a-network", "allowGlobal=true"])?;
    ensure!(code == Some(2), "exit {code:?}: {err}");
    let (code, err) = run(&["set", "89e92ceee5000001"])?;
    ensure!(code == Some(2), "exit {code:?}: {err}");
    // Well-formed, but no daemon owns this home: exit 1, saying what to check.
    let (code, err) = run(&["set", "89e92ceee5000001", "allowGlobal=true"])?;
    ensure!(code == Some(1), "exit {code:?}: {err}");
    ensure!(err.contains("API token"), "{err}");
    Ok(())
}

/// `ip -j ARGS` inside `d`'s namespace, parsed.
fn ip_json(tb: &Testbed, d: &Daemon, args: &[&str]) -> Result<Value> {
    let mut all = vec!["-j"];
    all.extend_from_slice(args);
    let out = tb.exec(&d.host, "ip", &all)?;
    ensure!(out.success(), "ip {}: {}", all.join(" "), out.stderr);
    Ok(serde_json::from_str(&out.stdout)?)
}

/// The IPv4 addresses (`ip/len`) on `dev` in `d`'s namespace.
fn addresses(tb: &Testbed, d: &Daemon, dev: &str) -> Result<Vec<String>> {
    let v = ip_json(tb, d, &["-4", "addr", "show", "dev", dev])?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .flat_map(|link| link["addr_info"].as_array().cloned().unwrap_or_default())
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or("?"), a["prefixlen"]))
        .collect())
}

/// The IPv4 routes on `dev` in `d`'s namespace, as `dst` or `dst via gw`.
fn routes(tb: &Testbed, d: &Daemon, dev: &str) -> Result<Vec<String>> {
    let v = ip_json(tb, d, &["-4", "route", "show", "dev", dev])?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let dst = r["dst"].as_str().unwrap_or("?");
            match r["gateway"].as_str() {
                Some(gw) => format!("{dst} via {gw}"),
                None => dst.to_string(),
            }
        })
        .collect())
}

/// Whether `routes` hold the network's default route: installed as its two halves via
/// the gateway (so it wins over a host default route without replacing it).
fn has_default_route(routes: &[String]) -> bool {
    ["0.0.0.0/1", "128.0.0.0/1"]
        .iter()
        .all(|half| routes.contains(&format!("{half} via {GATEWAY}")))
}

/// Whether any of `routes` is a default route or a half of one.
fn any_default_route(routes: &[String]) -> bool {
    routes.iter().any(|r| {
        ["default", "0.0.0.0/1", "128.0.0.0/1"]
            .iter()
            .any(|d| r.starts_with(d))
    })
}

/// The entry of a network's `skipped` for an address or a route target.
fn skipped<'a>(n: &'a Value, item: &str) -> Option<&'a Value> {
    n["skipped"]
        .as_array()?
        .iter()
        .find(|s| s["address"] == item || s["target"] == item)
}

/// The device's addresses and routes, for messages.
fn device_state(tb: &Testbed, d: &Daemon, dev: &str) -> String {
    format!(
        "addresses {:?}, routes {:?}",
        addresses(tb, d, dev).unwrap_or_default(),
        routes(tb, d, dev).unwrap_or_default()
    )
}

#[test]
fn members_opt_in_to_global_addresses_and_default_routes_never_over_a_root() -> Result<()> {
    let Some(tb) = Testbed::new(
        "members_opt_in_to_global_addresses_and_default_routes",
        "e2eoptin",
    )?
    else {
        return Ok(());
    };
    let root_host = tb.public_host("root", ROOT_IP)?;
    let ctrl_host = tb.public_host("ctrl", CTRL_IP)?;
    let a_host = tb.public_host("a", A_IP)?;
    let (_roots, planet) = tb.start_planet(&[("root", &root_host)])?;
    let ctrl = tb.start_node("ctrl", &ctrl_host, &planet, &["--controller"])?;
    let mut a = tb.start_node("a", &a_host, &planet, &[])?;
    for d in [&ctrl, &a] {
        tb.wait_online(d, Duration::from_secs(30))?;
    }

    let default_route = format!("0.0.0.0/0,{GATEWAY}");
    let created = controller(
        &tb,
        &ctrl,
        &[
            "network",
            "create",
            "--name",
            "optin",
            "--pool",
            "198.18.9.10-198.18.9.20",
            "--route",
            "198.18.9.0/24",
            "--route",
            &default_route,
            "--route",
            GLOBAL_ROUTE,
            "--route",
            OVER_ROOT,
            "--private",
            "--allow-default-route",
        ],
    )?;
    let nwid = created["id"].as_str().context("network id")?.to_string();
    let member = a.address.to_string();
    tb.cli(&a, &["join", &nwid])?;
    controller(&tb, &ctrl, &["member", "authorize", &nwid, &member])?;
    let private_ip = PRIVATE_ADDRESS.split('/').next().unwrap_or_default();
    let global_ip = GLOBAL_ADDRESS.split('/').next().unwrap_or_default();
    controller(
        &tb,
        &ctrl,
        &[
            "member",
            "set",
            &nwid,
            &member,
            "--ip",
            private_ip,
            "--ip",
            global_ip,
            "--allow-outside-pools",
        ],
    )?;
    let (n, _) = wait_until("a has the config with the global address", STEP, || {
        let n = tb.network(&a, &nwid)?;
        ensure!(n["status"] == "OK", "status {}", n["status"]);
        ensure!(
            n["assignedAddresses"]
                .as_array()
                .is_some_and(|l| l.iter().any(|x| x == GLOBAL_ADDRESS)),
            "addresses {}",
            n["assignedAddresses"]
        );
        Ok(n)
    })?;
    let dev = n["portDeviceName"]
        .as_str()
        .context("a device")?
        .to_string();

    // Defaults: private yes; the global address and route, the default route no; the
    // route over the root never. The settings are real booleans.
    for (key, want) in [
        ("allowManaged", true),
        ("allowGlobal", false),
        ("allowDefault", false),
        ("allowDNS", false),
    ] {
        ensure!(n[key] == json!(want), "{key}: {}", n[key]);
    }
    wait_until("a's device has its private address", STEP, || {
        ensure!(
            addresses(&tb, &a, &dev)?.contains(&PRIVATE_ADDRESS.to_string()),
            "{}",
            device_state(&tb, &a, &dev)
        );
        Ok(())
    })?;
    let (addrs, rts) = (addresses(&tb, &a, &dev)?, routes(&tb, &a, &dev)?);
    ensure!(!addrs.iter().any(|x| x == GLOBAL_ADDRESS), "{addrs:?}");
    ensure!(!any_default_route(&rts), "{rts:?}");
    for unwanted in [GLOBAL_ROUTE, OVER_ROOT] {
        ensure!(
            !rts.iter().any(|r| r.starts_with(unwanted)),
            "{unwanted} in {rts:?}"
        );
    }
    for (item, reason) in [
        (GLOBAL_ADDRESS, "allowGlobal"),
        ("0.0.0.0/0", "allowDefault"),
        (GLOBAL_ROUTE, "allowGlobal"),
        (OVER_ROOT, "underlay"),
    ] {
        let s = skipped(&n, item).with_context(|| format!("{item} not skipped: {n}"))?;
        ensure!(s["reason"] == reason, "{item}: {s}");
    }
    let over_root = skipped(&n, OVER_ROOT).context("the route over the root")?;
    ensure!(
        over_root["message"]
            .as_str()
            .is_some_and(|m| m.contains(&ROOT_IP.to_string()) && m.contains("root")),
        "{over_root}"
    );
    let text = tb.cli(&a, &["networks"])?.stdout;
    ensure!(
        text.contains(&format!("    skipped route {OVER_ROOT}: ")),
        "{text}"
    );

    // Opting in installs the global address and route and the default route at once;
    // the route over the root stays out.
    let out = tb.cli(&a, &["set", &nwid, "allowDefault=true", "allowGlobal=true"])?;
    ensure!(out.success(), "set: {} {}", out.stdout, out.stderr);
    ensure!(
        out.stdout.contains(&format!(
            "200 set {nwid} allowManaged=true allowGlobal=true allowDefault=true allowDNS=false"
        )),
        "{}",
        out.stdout
    );
    ensure!(
        out.stdout.contains(&format!("skipped route {OVER_ROOT}: ")),
        "{}",
        out.stdout
    );
    let (addrs, rts) = (addresses(&tb, &a, &dev)?, routes(&tb, &a, &dev)?);
    ensure!(addrs.iter().any(|x| x == GLOBAL_ADDRESS), "{addrs:?}");
    ensure!(has_default_route(&rts), "no default route: {rts:?}");
    ensure!(rts.iter().any(|r| r == GLOBAL_ROUTE), "{rts:?}");
    ensure!(!rts.iter().any(|r| r.starts_with(OVER_ROOT)), "{rts:?}");
    let n = tb.network(&a, &nwid)?;
    ensure!(
        n["allowDefault"] == json!(true) && n["allowGlobal"] == json!(true),
        "{n}"
    );
    ensure!(
        skipped(&n, OVER_ROOT).is_some_and(|s| s["reason"] == "underlay"),
        "{n}"
    );
    ensure!(
        skipped(&n, "0.0.0.0/0").is_none() && skipped(&n, GLOBAL_ADDRESS).is_none(),
        "{n}"
    );
    // The root is still reached over the underlay, and the node stays online.
    let via = tb.exec(&a.host, "ip", &["route", "get", &ROOT_IP.to_string()])?;
    ensure!(via.stdout.contains("dev eth0"), "{}", via.stdout);
    // The skip is logged once, not at every check of the underlay.
    std::thread::sleep(Duration::from_secs(6));
    tb.wait_online(&a, Duration::from_secs(10))?;
    let log = std::fs::read_to_string(&a.log)?;
    let logged = log
        .matches(&format!("not installing managed route {OVER_ROOT}"))
        .count();
    ensure!(logged == 1, "logged {logged} times");

    // The settings persist across a restart.
    tb.restart(&mut a)?;
    tb.wait_online(&a, Duration::from_secs(30))?;
    let n = wait_status(&tb, &a, &nwid, "OK")?;
    ensure!(
        n["allowDefault"] == json!(true) && n["allowGlobal"] == json!(true),
        "{n}"
    );
    wait_until("the default route is back after the restart", STEP, || {
        ensure!(
            has_default_route(&routes(&tb, &a, &dev)?),
            "{}",
            device_state(&tb, &a, &dev)
        );
        Ok(())
    })?;
    let conf = std::fs::read_to_string(a.home.join(format!("networks.d/{nwid}.local.conf")))?;
    ensure!(conf.contains("allowDefault=1"), "{conf}");

    // Turning one off withdraws what it allowed, at once.
    let out = tb.cli(&a, &["set", &nwid, "allowDefault=0"])?;
    ensure!(out.success(), "{}", out.stderr);
    let rts = routes(&tb, &a, &dev)?;
    ensure!(!any_default_route(&rts), "{rts:?}");
    ensure!(rts.iter().any(|r| r == GLOBAL_ROUTE), "{rts:?}");

    // The local API: wrong types are refused, booleans change the settings.
    let path = format!("/network/{nwid}");
    let r = tb.http_with_body(&a, "POST", &path, br#"{"allowDNS": "yes"}"#)?;
    ensure!(
        r.status == 400,
        "{} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    let r = tb.http_with_body(&a, "POST", &path, br#"{"allowDNS": true, "name": "x"}"#)?;
    ensure!(
        r.status == 200,
        "{} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    let body: Value = serde_json::from_slice(&r.body)?;
    ensure!(body["allowDNS"] == json!(true), "{body}");
    ensure!(
        r.header("skylan-ignored-fields") == Some("name"),
        "{:?}",
        r.headers
    );

    // Usage errors and a network that is not joined, against the live daemon.
    let out = tb.cli(&a, &["set", &nwid, "allowdefault=true"])?;
    ensure!(out.code == Some(2), "{out:?}");
    ensure!(
        out.stderr.contains("did you mean `allowDefault`?"),
        "{}",
        out.stderr
    );
    let other = format!("{}000099", &nwid[..10]);
    let out = tb.cli(&a, &["set", &other, "allowGlobal=true"])?;
    ensure!(out.code == Some(1), "{out:?}");
    ensure!(out.stderr.contains("join it first"), "{}", out.stderr);
    ensure!(tb.network(&a, &other).is_err(), "set must not join {other}");

    // Leave forgets the settings (as ZeroTier does); a new join starts from the defaults.
    tb.cli(&a, &["leave", &nwid])?;
    ensure!(
        !a.home
            .join(format!("networks.d/{nwid}.local.conf"))
            .exists(),
        "the settings file outlived the leave"
    );
    tb.cli(&a, &["join", &nwid])?;
    let n = wait_status(&tb, &a, &nwid, "OK")?;
    ensure!(
        n["allowGlobal"] == json!(false) && n["allowDefault"] == json!(false),
        "{n}"
    );
    let dev = n["portDeviceName"]
        .as_str()
        .context("a device")?
        .to_string();
    wait_until(
        "the rejoined device has only its private address",
        STEP,
        || {
            let addrs = addresses(&tb, &a, &dev)?;
            ensure!(addrs.contains(&PRIVATE_ADDRESS.to_string()), "{addrs:?}");
            ensure!(!addrs.iter().any(|x| x == GLOBAL_ADDRESS), "{addrs:?}");
            Ok(())
        },
    )?;
    tb.finish();
    Ok(())
}
