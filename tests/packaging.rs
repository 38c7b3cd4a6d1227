//! What a Debian user installs: the systemd units in `packaging/systemd/` pass
//! `systemd-analyze verify` and stay hardened (`systemd-analyze security`), their
//! `ExecStart` lines are accepted by this binary, and `packaging/build-deb.sh` makes a
//! package of the built binary with the units, manual pages and completions in the
//! places Debian looks for them. The tools come from Debian's `systemd` and `dpkg`
//! (installed by `.ci/run`); a test whose tool is missing says so loudly and passes.
// Tests may use files and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const UNITS: [&str; 2] = ["skylan-node.service", "skylan-root.service"];
/// `systemd-analyze security` exposure above which a unit counts as weakened (0 is
/// fully locked down, 10 is none at all; the node needs CAP_NET_ADMIN and a device).
const MAX_EXPOSURE: [(&str, &str); 2] =
    [("skylan-node.service", "30"), ("skylan-root.service", "15")];

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
        "CapabilityBoundingSet=",
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
        "Depends: libc6",
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
