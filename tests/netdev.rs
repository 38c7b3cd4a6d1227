//! The device manager against a real kernel, inside a lab namespace: a network device is
//! created with addresses and a route through a gateway member, changed (an address
//! removed, one added, the MTU changed, routes added), re-applied without touching
//! anything (watched with `ip monitor`), and removed without leaving a trace. Needs root;
//! skips loudly otherwise.
// Tests and examples may use files, sockets, threads and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ipnet::IpNet;
use serde_json::Value;
use skylan::io::netconf::NetConf;
use skylan::io::netdev::{Change, DeviceConfig, NetDevice, NetdevError, RouteSpec, interface_name};
use skylan::lab::{Lab, require_root, run_in};
use skylan::types::{NetworkId, NodeAddress};

fn network() -> NetworkId {
    "8056c2e21c5a0001".parse().expect("test network ID")
}

fn me() -> NodeAddress {
    "89e92ceee5".parse().expect("test node address")
}

fn net(s: &str) -> IpNet {
    s.parse().expect("test prefix")
}

fn route(target: &str, via: Option<&str>) -> RouteSpec {
    RouteSpec {
        target: net(target),
        via: via.map(|v| v.parse().expect("test gateway")),
    }
}

/// Runs `f` with a current-thread runtime on a thread inside `netns`.
fn in_netns<R: Send>(netns: &str, f: impl AsyncFnOnce() -> R + Send) -> R {
    run_in(netns, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("building a current-thread runtime");
        rt.block_on(f())
    })
    .expect("entering the lab namespace")
}

/// `ip -j ARGS` in the calling thread's namespace, parsed.
fn ip_json(args: &[&str]) -> Value {
    let out = Command::new("ip")
        .arg("-j")
        .args(args)
        .output()
        .expect("running ip (apt-get install -y iproute2)");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Value::Array(vec![]);
    }
    serde_json::from_slice(&out.stdout).expect("ip -j prints JSON")
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `local/prefixlen` of every address on `dev`.
fn addresses(dev: &str) -> Vec<String> {
    let shown = ip_json(&["addr", "show", "dev", dev]);
    shown[0]["addr_info"]
        .as_array()
        .expect("addr_info is a list")
        .iter()
        .filter(|a| a["scope"] != "link") // IPv6 link-local comes with the link
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or("?"), a["prefixlen"]))
        .collect()
}

/// `dst [via gateway]` of every route on `dev`, both families, main table.
fn routes(dev: &str) -> Vec<String> {
    let mut all = Vec::new();
    for family in ["-4", "-6"] {
        let shown = ip_json(&[family, "route", "show", "dev", dev]);
        for r in shown.as_array().expect("routes are a list") {
            let dst = r["dst"].as_str().unwrap_or("?");
            match r["gateway"].as_str() {
                Some(gw) => all.push(format!("{dst} via {gw}")),
                None => all.push(dst.to_string()),
            }
        }
    }
    all
}

/// Every route in the namespace, whatever the device (to prove nothing is left).
fn all_routes() -> Vec<Value> {
    let mut all = Vec::new();
    for family in ["-4", "-6"] {
        let shown = ip_json(&[family, "route", "show", "table", "all"]);
        all.extend(shown.as_array().expect("routes are a list").iter().cloned());
    }
    all
}

/// `ip monitor` of link, address and route events in the calling thread's namespace. To
/// know what happened between two moments for sure, each moment is a marker event (an
/// address added to or removed from `lo`) that we wait to see.
struct Monitor {
    child: Child,
    lines: mpsc::Receiver<String>,
}

const MARKER: &str = "198.18.255.254/32";

impl Monitor {
    fn start() -> Monitor {
        let mut child = Command::new("ip")
            .args(["-o", "monitor", "link", "address", "route"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting ip monitor");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut monitor = Monitor { child, lines };
        // Retry the first marker: the monitor may not have subscribed yet.
        let mut seen = false;
        for _ in 0..50 {
            ip(&["addr", "add", MARKER, "dev", "lo"]);
            if monitor
                .wait_for_marker(false, Duration::from_millis(200))
                .is_some()
            {
                seen = true;
                break;
            }
            ip(&["addr", "del", MARKER, "dev", "lo"]);
        }
        assert!(seen, "ip monitor never reported the marker address");
        monitor
    }

    /// Lines up to and including the next report of the marker address being added (or,
    /// with `deleted`, removed); None on timeout.
    fn wait_for_marker(&mut self, deleted: bool, timeout: Duration) -> Option<Vec<String>> {
        let address_event = format!("inet {MARKER}");
        let mut got = Vec::new();
        loop {
            let line = self.lines.recv_timeout(timeout).ok()?;
            let done = line.contains(&address_event) && line.starts_with("Deleted") == deleted;
            got.push(line);
            if done {
                return Some(got);
            }
        }
    }

    /// Ends the observation: removes the marker and returns every event since `start`.
    fn stop(mut self) -> Vec<String> {
        ip(&["addr", "del", MARKER, "dev", "lo"]);
        let got = self
            .wait_for_marker(true, Duration::from_secs(10))
            .expect("ip monitor never reported the marker's removal");
        let _ = self.child.kill();
        let _ = self.child.wait();
        got
    }
}

/// The events among `events` that show `dev` being changed rather than left alone: any
/// removal of its addresses or routes, and any link report with another MTU or MAC or
/// without UP. (An add of something already present is impossible, so a flap of an
/// address or route always shows a removal; plain notifications such as the end of IPv6
/// duplicate address detection or a carrier report are not changes.)
fn flaps<'a>(events: &'a [String], dev: &str, mtu: u16, mac: &str) -> Vec<&'a String> {
    let link_ok = |l: &str| {
        l.contains(&format!(" mtu {mtu} "))
            && l.contains(mac)
            && (l.contains(",UP") || l.contains("<UP"))
    };
    events
        .iter()
        .filter(|l| l.contains(dev))
        .filter(|l| {
            let link = l.contains(&format!("{dev}: <"));
            l.starts_with("Deleted") || (link && !link_ok(l))
        })
        .collect()
}

#[test]
fn a_network_device_is_created_changed_without_flapping_and_removed() {
    if !require_root("netdev::a_network_device_is_created_changed_without_flapping_and_removed") {
        return;
    }
    let lab = Lab::new("netdev").expect("lab");
    let host = lab
        .add_public_host("a", "198.51.100.51".parse().expect("ip"))
        .expect("host");
    let name = interface_name(network());
    assert_eq!(name, "sky1c5a0001");

    let subnet = route("198.18.0.0/24", None);
    let lan_behind_gw = route("198.18.128.0/24", Some("198.18.0.9"));
    let first = DeviceConfig::for_network(
        network(),
        me(),
        2800,
        vec![net("198.18.0.1/24"), net("198.19.7.1/24")],
        vec![subnet, lan_behind_gw],
    );
    let v6_lan = route("2001:db8:5b::/48", Some("2001:db8:5a::9"));
    let second = DeviceConfig {
        mtu: 1400,
        addresses: vec![net("198.18.0.1/24"), net("2001:db8:5a::1/64")],
        routes: vec![subnet, lan_behind_gw, route("198.19.64.0/18", None), v6_lan],
        ..first.clone()
    };

    in_netns(&host.netns, async || {
        let nc = NetConf::new().expect("netlink");
        let mut dev = NetDevice::create(first.clone(), &nc).await.expect("create");
        assert_eq!(dev.name(), name);

        let link = &ip_json(&["link", "show", "dev", &name])[0];
        assert_eq!(link["mtu"], 2800, "{link}");
        assert_eq!(link["address"], first.mac.to_string(), "{link}");
        assert!(
            link["flags"]
                .as_array()
                .expect("flags")
                .iter()
                .any(|f| f == "UP"),
            "{link}"
        );
        let mut a = addresses(&name);
        a.sort();
        assert_eq!(a, ["198.18.0.1/24", "198.19.7.1/24"]);
        let r = routes(&name);
        assert!(
            r.contains(&"198.18.128.0/24 via 198.18.0.9".to_string()),
            "{r:?}"
        );
        assert!(r.contains(&"198.18.0.0/24".to_string()), "{r:?}");
        assert_eq!(
            dev.installed_routes(),
            [lan_behind_gw],
            "the subnet route is the kernel's"
        );

        // A second device of the same name is refused, naming it.
        let err = NetDevice::create(first.clone(), &nc).await.unwrap_err();
        assert!(err.to_string().contains(&name), "{err}");

        // The same config again changes nothing on the host.
        let monitor = Monitor::start();
        let changes = dev.apply(&first, &nc).await.expect("re-apply");
        let events = monitor.stop();
        assert_eq!(changes, vec![]);
        let mac = first.mac.to_string();
        let touched = flaps(&events, &name, 2800, &mac);
        assert!(
            touched.is_empty(),
            "re-applying touched the device: {touched:?}"
        );

        // The changed config: one address gone, one new, MTU down, two routes new. The
        // flap detector must see it (which shows it would have seen flapping above).
        let monitor = Monitor::start();
        let changes = dev.apply(&second, &nc).await.expect("apply");
        let events = monitor.stop();
        // The detector sees the removed address and the MTU change.
        let touched = flaps(&events, &name, 2800, &mac);
        assert!(
            touched
                .iter()
                .any(|l| l.contains("Deleted") && l.contains("198.19.7.1/24"))
                && touched.iter().any(|l| l.contains(" mtu 1400 ")),
            "the monitor missed the changes: {events:?}"
        );
        assert_eq!(
            changes,
            vec![
                Change::AddressRemoved(net("198.19.7.1/24")),
                Change::Mtu {
                    from: 2800,
                    to: 1400
                },
                Change::AddressAdded(net("2001:db8:5a::1/64")),
                Change::RouteAdded(route("198.19.64.0/18", None)),
                Change::RouteAdded(v6_lan),
            ]
        );
        assert_eq!(dev.mtu(), 1400);
        assert_eq!(dev.config(), &second);
        let link = &ip_json(&["link", "show", "dev", &name])[0];
        assert_eq!(link["mtu"], 1400, "{link}");
        let mut a = addresses(&name);
        a.sort();
        assert_eq!(a, ["198.18.0.1/24", "2001:db8:5a::1/64"]);
        let r = routes(&name);
        for want in [
            "198.18.0.0/24",
            "198.18.128.0/24 via 198.18.0.9",
            "198.19.64.0/18",
            "2001:db8:5b::/48 via 2001:db8:5a::9",
        ] {
            assert!(r.contains(&want.to_string()), "{want} missing from {r:?}");
        }
        assert!(!r.iter().any(|x| x.starts_with("198.19.7.")), "{r:?}");

        // Again: no flapping of the changed state either.
        let monitor = Monitor::start();
        assert_eq!(dev.apply(&second, &nc).await.expect("re-apply"), vec![]);
        let events = monitor.stop();
        let touched = flaps(&events, &name, 1400, &mac);
        assert!(
            touched.is_empty(),
            "re-applying touched the device: {touched:?}"
        );

        // A rename is refused and changes nothing.
        let renamed = DeviceConfig {
            name: "skyother".into(),
            ..second.clone()
        };
        assert!(matches!(
            dev.apply(&renamed, &nc).await,
            Err(NetdevError::Rename { .. })
        ));

        dev.remove(&nc).await.expect("remove");
        let gone = Command::new("ip")
            .args(["link", "show", "dev", &name])
            .output()
            .expect("ip");
        assert!(!gone.status.success(), "{name} still exists");
        let left: Vec<Value> = all_routes()
            .into_iter()
            .filter(|r| {
                let dst = r["dst"].as_str().unwrap_or("");
                r["dev"] == name.as_str()
                    || dst.starts_with("198.18.")
                    || dst.starts_with("198.19.")
                    || dst.starts_with("2001:db8:5")
            })
            .collect();
        assert!(left.is_empty(), "routes left behind: {left:?}");
        let addrs = ip_json(&["addr", "show"]).to_string();
        assert!(
            !addrs.contains("198.18.0.1") && !addrs.contains("2001:db8:5a::1"),
            "addresses left behind: {addrs}"
        );
    });
}

#[test]
fn a_create_that_fails_half_way_leaves_no_device() {
    if !require_root("netdev::a_create_that_fails_half_way_leaves_no_device") {
        return;
    }
    let lab = Lab::new("netdevfail").expect("lab");
    let host = lab
        .add_public_host("a", "198.51.100.52".parse().expect("ip"))
        .expect("host");
    // The gateway is on no link of ours, so the kernel refuses the route after the
    // addresses went in.
    let config = DeviceConfig::for_network(
        network(),
        me(),
        2800,
        vec![net("198.18.0.1/24")],
        vec![route("198.18.128.0/24", Some("198.19.200.9"))],
    );
    in_netns(&host.netns, async || {
        let nc = NetConf::new().expect("netlink");
        let err = NetDevice::create(config.clone(), &nc).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, NetdevError::Netlink { .. }), "{text}");
        assert!(
            text.contains(&config.name) && text.contains("198.18.128.0/24 via 198.19.200.9"),
            "the error names the device and the operation: {text}"
        );
        let gone = Command::new("ip")
            .args(["link", "show", "dev", &config.name])
            .output()
            .expect("ip");
        assert!(!gone.status.success(), "{} was left behind", config.name);
        // The name is free again: a good config now succeeds.
        let good = DeviceConfig {
            routes: vec![route("198.18.128.0/24", Some("198.18.0.9"))],
            ..config.clone()
        };
        let dev = NetDevice::create(good, &nc).await.expect("create");
        dev.remove(&nc).await.expect("remove");
    });
}

#[test]
fn remove_reports_a_tap_still_held_by_the_frame_loop() {
    if !require_root("netdev::remove_reports_a_tap_still_held_by_the_frame_loop") {
        return;
    }
    let lab = Lab::new("netdevhold").expect("lab");
    let host = lab
        .add_public_host("a", "198.51.100.53".parse().expect("ip"))
        .expect("host");
    let config =
        DeviceConfig::for_network(network(), me(), 2800, vec![net("198.18.0.1/24")], vec![]);
    in_netns(&host.netns, async || {
        let nc = NetConf::new().expect("netlink");
        let dev = NetDevice::create(config.clone(), &nc)
            .await
            .expect("create");
        let reader = dev.tap().clone();
        let err = dev.remove(&nc).await.unwrap_err();
        assert!(
            matches!(err, NetdevError::StillOpen { holders: 1, .. }),
            "{err}"
        );
        assert_eq!(addresses(&config.name), Vec::<String>::new(), "withdrawn");
        drop(reader);
        let gone = Command::new("ip")
            .args(["link", "show", "dev", &config.name])
            .output()
            .expect("ip");
        assert!(!gone.status.success(), "the last handle deletes the device");
    });
}
