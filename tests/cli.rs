//! The `skylan` command line as a user's shell sees it: exit codes, aliases, what
//! happens when the reader of its output goes away, the shell completions and manual
//! pages it generates, and how `skylan node` treats `<home>/local.toml`.
// Tests may use files and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::process::{Command, Stdio};

fn skylan() -> Command {
    Command::new(env!("CARGO_BIN_EXE_skylan"))
}

#[test]
fn a_closed_pipe_ends_the_output_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("many.rules");
    std::fs::write(&rules, "accept;\n".repeat(500)).unwrap();
    // `skylan -j rules compile FILE | head -0`, made deterministic: the read end of
    // the pipe is closed before skylan starts, so every write fails with EPIPE.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = skylan()
        .args(["-j", "rules", "compile"])
        .arg(&rules)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
}

#[test]
fn zerotier_cli_names_are_accepted() {
    for alias in ["listpeers", "listnetworks"] {
        let out = skylan().args([alias, "--help"]).output().unwrap();
        assert!(out.status.success(), "{alias}: {out:?}");
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["no-such-command"][..],
        &["set"],
        &["ping"],
        &["node", "--workers", "0"],
    ] {
        let out = skylan().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "skylan {args:?}: {out:?}");
    }
}

#[test]
fn completions_are_scripts_that_know_the_commands() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef skylan"),
        ("fish", "complete -c skylan"),
    ] {
        let out = skylan().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: no `{marker}`");
        for command in ["join", "networks", "idtool", "completions"] {
            assert!(script.contains(command), "{shell}: no `{command}`");
        }
    }
    let out = skylan().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn man_pages_are_roff_one_per_command() {
    let out = skylan().arg("man").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH skylan 1"), "{page}");
    assert!(
        page.contains(".SH NAME") && page.contains(".SH SYNOPSIS"),
        "{page}"
    );
    assert!(page.contains("\\-\\-home"), "{page}");

    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("man1");
    let out = skylan()
        .args(["man", "--out"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let listed = String::from_utf8(out.stdout).unwrap();
    for name in ["skylan.1", "skylan-node.1", "skylan-idtool-genmoon.1"] {
        let page = std::fs::read_to_string(out_dir.join(name)).unwrap();
        assert!(
            page.starts_with(".ie") && page.contains(".SH NAME"),
            "{name}"
        );
        assert!(listed.contains(name), "{name} not listed: {listed}");
    }
    let node = std::fs::read_to_string(out_dir.join("skylan-node.1")).unwrap();
    assert!(node.contains("local.toml") && node.contains("\\-\\-controller"));
}

/// A `skylan node` process, killed when dropped (even when the test fails).
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A home directory with a planet whose one root is on loopback and never answers (so a
/// node started on it sends nothing off this machine).
fn node_home(dir: &std::path::Path) -> std::path::PathBuf {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let (secret, public) = (dir.join("root.secret"), dir.join("root.public"));
    let out = skylan()
        .args(["idtool", "generate"])
        .args([&secret, &public])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let root = format!("{}@127.0.0.1/9", public.display());
    let out = skylan()
        .args(["idtool", "mkplanet", "--root", &root, "--out"])
        .arg(home.join("planet"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    home
}

/// Starts `skylan node` on `home` with `args`; returns it and the API port it records
/// in `<home>/skylan.port` once it serves.
fn start_node(home: &std::path::Path, args: &[&str]) -> (Running, u16) {
    start_daemon(home, "node", args)
}

/// Starts `skylan DAEMON` (node or root) on `home` with `args`, as [`start_node`].
fn start_daemon(home: &std::path::Path, daemon: &str, args: &[&str]) -> (Running, u16) {
    let port_file = home.join("skylan.port");
    let _ = std::fs::remove_file(&port_file);
    let node = Running(
        skylan()
            .arg("--home")
            .arg(home)
            .arg(daemon)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(&port_file)
            && let Ok(port) = text.trim().parse()
        {
            return (node, port);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the {daemon} wrote no {}", port_file.display());
}

fn free_tcp_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn local_toml_sets_the_ports_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let home = node_home(dir.path());
    let (from_file, from_flag) = (free_tcp_port(), free_tcp_port());
    std::fs::write(
        home.join("local.toml"),
        format!("[settings]\nprimaryPort = 0\napiPort = {from_file}\n"),
    )
    .unwrap();
    assert_eq!(start_node(&home, &[]).1, from_file);
    let flag = from_flag.to_string();
    assert_eq!(start_node(&home, &["--api-port", &flag]).1, from_flag);
}

#[test]
fn local_toml_sets_the_ports_of_a_root_too() {
    let dir = tempfile::tempdir().unwrap();
    let api = free_tcp_port();
    std::fs::write(
        dir.path().join("local.toml"),
        format!("[settings]\nprimaryPort = 0\napiPort = {api}\n"),
    )
    .unwrap();
    assert_eq!(start_daemon(dir.path(), "root", &[]).1, api);
}

#[test]
fn local_toml_gives_the_opt_ins_a_network_starts_with() {
    let dir = tempfile::tempdir().unwrap();
    let home = node_home(dir.path());
    let (one, two) = ("8056c2e21c000001", "8056c2e21c000002");
    std::fs::write(
        home.join("local.toml"),
        format!(
            "[settings]\nprimaryPort = 0\napiPort = 0\n\n[network.default]\nallowGlobal = true\n\n\
             [network.{two}]\nallowDNS = true\nallowGlobal = false\n"
        ),
    )
    .unwrap();
    let (_node, _) = start_node(&home, &[]);
    for nwid in [one, two] {
        let out = skylan()
            .arg("--home")
            .arg(&home)
            .args(["join", nwid])
            .output()
            .unwrap();
        assert!(out.status.success(), "join {nwid}: {out:?}");
    }
    let out = skylan()
        .arg("--home")
        .arg(&home)
        .args(["-j", "networks"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let networks: serde_json::Value = serde_json::from_str(&text).unwrap();
    let settings = |nwid: &str| {
        let n = networks
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["nwid"] == nwid)
            .unwrap_or_else(|| panic!("{nwid} not in {text}"));
        ["allowManaged", "allowGlobal", "allowDefault", "allowDNS"].map(|k| n[k] == true)
    };
    assert_eq!(settings(one), [true, true, false, false], "{text}");
    assert_eq!(settings(two), [true, false, false, true], "{text}");
}

#[test]
fn local_toml_with_an_unknown_key_stops_the_node_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let home = node_home(dir.path());
    let file = home.join("local.toml");
    std::fs::write(
        &file,
        "[settings]\nprimaryPort = 0\n\n[network.default]\nallowGlobal = true\nalowDNS = true\n",
    )
    .unwrap();
    let out = skylan()
        .arg("--home")
        .arg(&home)
        .arg("node")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let expected = format!("{}:6:1: unknown key `alowDNS`", file.display());
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("did you mean `allowDNS`?"), "{stderr}");
}

#[test]
fn dump_reports_a_running_node_without_its_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let home = node_home(dir.path());
    let api = free_tcp_port().to_string();
    let (_node, _) = start_node(&home, &["--port", "0", "--api-port", &api, "--controller"]);
    let log = dir.path().join("node.log");
    std::fs::write(&log, "a log line\n").unwrap();
    let out = skylan()
        .arg("--home")
        .arg(&home)
        .args(["dump", "--log"])
        .arg(&log)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report = String::from_utf8(out.stdout).unwrap();
    let token = std::fs::read_to_string(home.join("authtoken.secret")).unwrap();
    let secret = std::fs::read_to_string(home.join("identity.secret")).unwrap();
    let secret_key = secret.trim().rsplit(':').next().unwrap();
    assert!(!report.contains(token.trim()), "the token is in the dump");
    assert!(
        !report.contains(secret_key),
        "the identity secret is in the dump"
    );
    let address = std::fs::read_to_string(home.join("identity.public")).unwrap();
    let address = &address[..10];
    for wanted in [
        "## version and host",
        " identity.secret\n",
        "## GET /status",
        &format!("\"address\": \"{address}\""),
        "## GET /peer",
        "## GET /network",
        "## GET /controller",
        "## GET /metrics",
        "skylan_node_rx_datagrams_total",
        "## log\n\na log line",
    ] {
        assert!(report.contains(wanted), "no {wanted:?} in:\n{report}");
    }
}
