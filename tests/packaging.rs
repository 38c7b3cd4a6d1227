//! What a Debian user installs: the systemd units in `packaging/systemd/` pass
//! `systemd-analyze verify` and stay hardened (`systemd-analyze security`), their
//! `ExecStart` lines are accepted by this binary, the daemons work with no more
//! privilege than the units leave them (a node with only the unit's capability set makes
//! its TAP device, addresses and routes in a lab namespace; a root runs as an
//! unprivileged user with no capabilities), and `packaging/build-deb.sh` makes a package
//! of the built binary with the units, manual pages and completions in the places Debian
//! looks for them. The tools come from Debian's `systemd`, `dpkg` and `util-linux`
//! (`setpriv`), installed by `.ci/run`; a test whose tool is missing, or that needs root
//! without it, says so loudly and passes. Nothing here runs systemd itself, so the units'
//! seccomp and address-family filters are checked only by `systemd-analyze`.
// Tests may use files and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use skylan::lab::{Lab, require_root, run_in};

const UNITS: [&str; 2] = ["skylan-node.service", "skylan-root.service"];
/// `systemd-analyze security` exposure above which a unit counts as weakened (0 is
/// fully locked down, 10 is none at all; the node needs CAP_NET_ADMIN and a device, the
/// root CAP_NET_BIND_SERVICE for the TCP fallback relay on 443, which rules out a private
/// user namespace: 1.6 where it was 1.2 without them).
const MAX_EXPOSURE: [(&str, &str); 2] =
    [("skylan-node.service", "30"), ("skylan-root.service", "17")];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn skylan_bin() -> &'static str {
    env!("CARGO_BIN_EXE_skylan")
}

/// Whether `tool` can be run; prints why the test is skipped when not.
fn have(tool: &str, test: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().is_ok();
    if !found {
        eprintln!("SKIPPED {test}: `{tool}` is not installed (apt-get install systemd dpkg)");
    }
    found
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The units, copied to `dir` with `ExecStart` pointing at the binary under test (verify
/// checks that the program exists).
fn units_for_this_binary(dir: &Path) -> Vec<PathBuf> {
    UNITS
        .iter()
        .map(|name| {
            let unit = std::fs::read_to_string(repo().join("packaging/systemd").join(name))
                .unwrap()
                .replace("/usr/bin/skylan", skylan_bin());
            let path = dir.join(name);
            std::fs::write(&path, unit).unwrap();
            path
        })
        .collect()
}

#[test]
fn systemd_units_verify_clean_and_stay_hardened() {
    if !have(
        "systemd-analyze",
        "systemd_units_verify_clean_and_stay_hardened",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let units = units_for_this_binary(dir.path());
    let out = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units));
    // verify exits 0 on unknown keys and bad values, and only warns.
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(warnings.trim().is_empty(), "{warnings}");
    for (unit, threshold) in MAX_EXPOSURE {
        run(Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(format!("--threshold={threshold}"))
            .arg(dir.path().join(unit)));
    }
}

#[test]
fn systemd_units_give_the_daemons_what_they_need() {
    let unit =
        |name: &str| std::fs::read_to_string(repo().join("packaging/systemd").join(name)).unwrap();
    let node = unit("skylan-node.service");
    for line in [
        "CapabilityBoundingSet=CAP_NET_ADMIN",
        "DeviceAllow=/dev/net/tun rw",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "StateDirectory=skylan",
        "Restart=on-failure",
        "After=network-online.target",
        "Wants=network-online.target",
    ] {
        assert!(node.lines().any(|l| l == line), "node unit lacks {line}");
    }
    let root = unit("skylan-root.service");
    for line in [
        "DynamicUser=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "PrivateDevices=yes",
        "StateDirectory=skylan-root",
    ] {
        assert!(root.lines().any(|l| l == line), "root unit lacks {line}");
    }
    // Each ExecStart, without its optional extra flags, is a command line this binary
    // accepts (clap checks the arguments before `--help`).
    for text in [&node, &root] {
        let exec = text
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart=/usr/bin/skylan "))
            .unwrap();
        let args: Vec<&str> = exec
            .split_whitespace()
            .filter(|a| !a.starts_with('$'))
            .collect();
        run(Command::new(skylan_bin()).args(&args).arg("--help"));
    }
}

#[test]
fn the_deb_holds_binary_units_man_pages_and_completions() {
    let test = "the_deb_holds_binary_units_man_pages_and_completions";
    if !have("dpkg-deb", test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = run(Command::new("bash")
        .arg(repo().join("packaging/build-deb.sh"))
        .args(["--binary", skylan_bin(), "--compress", "none", "--out"])
        .arg(dir.path()));
    let deb = PathBuf::from(text(&out).trim());
    assert!(deb.starts_with(dir.path()) && deb.exists(), "{deb:?}");

    let info = text(&run(Command::new("dpkg-deb").arg("--info").arg(&deb)));
    let version = format!("Version: {}", env!("CARGO_PKG_VERSION"));
    for field in [
        "Package: skylan",
        &version,
        "Depends: libc6 (>= 2.",
        "libgcc-s1",
        "postinst",
        "prerm",
    ] {
        assert!(info.contains(field), "no {field} in\n{info}");
    }
    let contents = text(&run(Command::new("dpkg-deb").arg("--contents").arg(&deb)));
    for path in [
        "./usr/bin/skylan",
        "./lib/systemd/system/skylan-node.service",
        "./lib/systemd/system/skylan-root.service",
        "./usr/share/man/man1/skylan.1.gz",
        "./usr/share/man/man1/skylan-node.1.gz",
        "./usr/share/bash-completion/completions/skylan",
        "./usr/share/zsh/vendor-completions/_skylan",
        "./usr/share/fish/vendor_completions.d/skylan.fish",
        "./usr/share/doc/skylan/copyright",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(path)),
            "no {path} in\n{contents}"
        );
    }
    assert!(!contents.contains("./etc/"), "conffiles: {contents}");

    // The maintainer scripts are valid sh.
    let control = dir.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    for script in ["postinst", "prerm", "postrm"] {
        run(Command::new("sh").arg("-n").arg(control.join(script)));
    }

    let tree = dir.path().join("tree");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree));
    let page = text(&run(Command::new("gzip")
        .args(["-dc"])
        .arg(tree.join("usr/share/man/man1/skylan-root.1.gz"))));
    assert!(page.contains(".TH skylan-root 1"), "{page}");
    let bash =
        std::fs::read_to_string(tree.join("usr/share/bash-completion/completions/skylan")).unwrap();
    assert!(bash.contains("join") && bash.contains("complete -F"));
}

/// A daemon process, killed when dropped (even when the test fails).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A line of `/proc/<pid>/status`, e.g. `CapBnd`.
fn proc_status(pid: u32, key: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(&format!("{key}:")));
    line.unwrap().split_whitespace().nth(1).unwrap().to_string()
}

/// Waits for `<home>/skylan.port`, which a daemon writes once its API serves.
fn wait_for_api(home: &Path, daemon: &mut Running) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(home.join("skylan.port"))
            && let Ok(port) = text.trim().parse()
        {
            return port;
        }
        if let Some(status) = daemon.0.try_wait().unwrap() {
            panic!("the daemon ended ({status}) before its API served");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no {} after 20 s", home.join("skylan.port").display());
}

/// `skylan -j --home HOME ARGS` inside `netns`, as JSON.
fn cli_json(netns: &str, home: &Path, args: &[&str]) -> Value {
    let out = run(Command::new("ip")
        .args(["netns", "exec", netns, skylan_bin(), "-j", "--home"])
        .arg(home)
        .args(args));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `setpriv --bounding-set` for the unit's `CapabilityBoundingSet=` (`-all,+net_admin`).
fn bounding_set(unit: &str) -> String {
    let text = std::fs::read_to_string(repo().join("packaging/systemd").join(unit)).unwrap();
    let caps = text
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .unwrap();
    let mut set = String::from("-all");
    for cap in caps.split_whitespace() {
        let name = cap.strip_prefix("CAP_").unwrap().to_lowercase();
        set.push_str(&format!(",+{name}"));
    }
    set
}

/// One host in a lab namespace of its own, and an empty home directory for a daemon.
struct Bench {
    /// Removes the namespace when dropped: keep it bound until the end of the test.
    lab: Lab,
    netns: String,
    dir: tempfile::TempDir,
    home: PathBuf,
}

/// A [`Bench`] with its host at `ip`, or `None` (having said why) when `test` cannot
/// run here: it needs root and `setpriv`.
fn bench(test: &str, tag: &str, ip: &str) -> Option<Bench> {
    if !require_root(test) || !have("setpriv", test) {
        return None;
    }
    let lab = Lab::new(tag).unwrap();
    let netns = lab.add_public_host("h", ip.parse().unwrap()).unwrap().netns;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    Some(Bench {
        lab,
        netns,
        dir,
        home,
    })
}

#[test]
fn a_node_with_only_the_units_capabilities_makes_its_device() {
    let test = "a_node_with_only_the_units_capabilities_makes_its_device";
    let Some(Bench {
        lab: _lab,
        netns,
        dir,
        home,
    }) = bench(test, "unitcaps", "198.51.100.61")
    else {
        return;
    };
    // A planet whose root is in the lab and never answers: the controller is this node.
    let (secret, public) = (dir.path().join("r.secret"), dir.path().join("r.public"));
    run(Command::new(skylan_bin())
        .args(["idtool", "generate"])
        .args([&secret, &public]));
    run(Command::new(skylan_bin())
        .args(["idtool", "mkplanet", "--root"])
        .arg(format!("{}@198.51.100.62/9993", public.display()))
        .arg("--out")
        .arg(home.join("planet")));
    let caps = bounding_set("skylan-node.service");
    let mut node = Running(
        Command::new("ip")
            .args(["netns", "exec", &netns, "setpriv"])
            .arg(format!("--bounding-set={caps}"))
            .args([
                "--inh-caps=-all",
                "--no-new-privs",
                "--",
                skylan_bin(),
                "--home",
            ])
            .arg(&home)
            .args(["node", "--controller"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_api(&home, &mut node);
    // `ip netns exec` and `setpriv` exec: the pid is skylan's. CAP_NET_ADMIN is bit 12.
    assert_eq!(proc_status(node.0.id(), "CapEff"), "0000000000001000");

    let address = cli_json(&netns, &home, &["info"])["address"]
        .as_str()
        .unwrap()
        .to_string();
    let network = cli_json(
        &netns,
        &home,
        &[
            "controller",
            "network",
            "create",
            "--pool",
            "198.18.61.10-198.18.61.20",
        ],
    );
    let nwid = network["id"].as_str().unwrap().to_string();
    cli_json(&netns, &home, &["join", &nwid]);
    cli_json(
        &netns,
        &home,
        &["controller", "member", "authorize", &nwid, &address],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let device = loop {
        let networks = cli_json(&netns, &home, &["networks"]);
        let n = networks
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["nwid"] == nwid.as_str());
        if let Some(n) = n.filter(|n| n["status"] == "OK" && n["portDeviceName"].is_string()) {
            break n["portDeviceName"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "not OK after 20 s: {networks}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let shown = text(&run(
        Command::new("ip").args(["-n", &netns, "-o", "addr", "show", "dev", &device])
    ));
    assert!(
        shown.contains("198.18.61."),
        "no managed address on {device}: {shown}"
    );
}

#[test]
fn a_root_runs_as_an_unprivileged_user_that_may_only_bind_443() {
    let test = "a_root_runs_as_an_unprivileged_user_that_may_only_bind_443";
    let caps = bounding_set("skylan-root.service");
    assert_eq!(caps, "-all,+net_bind_service");
    let Some(Bench {
        lab: _lab,
        netns,
        dir,
        home,
    }) = bench(test, "unitroot", "198.51.100.63")
    else {
        return;
    };
    // Like DynamicUser=: a user that owns nothing but the state directory.
    let nobody = "65534";
    run(Command::new("chown")
        .args([&format!("{nobody}:{nobody}")])
        .arg(dir.path())
        .arg(&home));
    let mut root = Running(
        Command::new("ip")
            .args(["netns", "exec", &netns, "setpriv"])
            .args([&format!("--reuid={nobody}"), &format!("--regid={nobody}")])
            .args(["--clear-groups", &format!("--bounding-set={caps}")])
            // AmbientCapabilities=: inheritable and ambient, kept across the exec.
            .args([
                "--inh-caps=-all,+net_bind_service",
                "--ambient-caps=+net_bind_service",
            ])
            .args(["--no-new-privs", "--", skylan_bin(), "--home"])
            .arg(&home)
            .args(["root", "--port", "9993"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let port = wait_for_api(&home, &mut root);
    // CAP_NET_BIND_SERVICE is bit 10, and the only one.
    assert_eq!(proc_status(root.0.id(), "CapEff"), "0000000000000400");
    assert_eq!(proc_status(root.0.id(), "Uid"), nobody);
    let health = run_in(&netns, move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let request = "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    })
    .unwrap();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // The TCP fallback relay listens on 443 (the capability's only use).
    let relay = run_in(&netns, || {
        std::net::TcpStream::connect(("198.51.100.63", skylan::io::tcp::ROOT_TCP_PORT)).map(drop)
    })
    .unwrap();
    assert!(relay.is_ok(), "no TCP fallback relay on 443: {relay:?}");
}
