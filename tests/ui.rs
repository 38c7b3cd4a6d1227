//! The controller's web UI end to end, in headless Chromium: a real `skylan node
//! --controller` (temporary home, free ports, a planet whose one root is never
//! started), the login link from `skylan controller ui`, and `tests/ui/ui_test.mjs`
//! (playwright-core) clicking through it: sign in, create a network, edit its settings,
//! add and authorize a member, type a broken rule and see its line:column, fix it, see it
//! compile, save it, read the audit log. Afterwards the API must hold what the browser
//! did.
//!
//! Needs Debian's `chromium`, `node`, and `npm ci` in `tests/ui/` (`.ci/run` installs
//! them). Without them the test fails saying what to install; it never passes silently.
//! Every process it starts is ended by its own PID, also when the test fails.
// Tests may use files, sockets, processes and the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use skylan::cli::client::raw_request;

const CHROMIUM: &str = "/usr/bin/chromium";
/// The member the browser adds and authorizes (it never joins; ZeroTier-style).
const MEMBER: &str = "5bd5e2b7a1";
/// What the browser saves as the network's rules (as in `ui_test.mjs`).
const RULES: &str = "accept ethertype arp;\ndrop dport 22;\naccept;\n";
/// The longest the browser script may take (it gives up itself after 45 s).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

/// A process this test started, ended by its PID when dropped; its output goes to a
/// log file, printed when the test fails.
struct Started {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Started {
    fn spawn(name: &'static str, cmd: &mut Command, dir: &Path) -> Started {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Started { name, child, log }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to end within `timeout` (then kills it); its exit status.
    fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- {} output ----\n{}", self.name, self.output());
        }
    }
}

/// Fails (never skips) when the browser or the script's runtime is missing.
fn require_browser(ui_dir: &Path) {
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).exists() {
        missing.push(format!(
            "{CHROMIUM} (apt-get install chromium chromium-driver)"
        ));
    }
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        missing.push("node (apt-get install nodejs npm)".into());
    }
    if !ui_dir.join("node_modules/playwright-core").is_dir() {
        missing.push(format!(
            "playwright-core (run `npm ci` in {})",
            ui_dir.display()
        ));
    }
    assert!(
        missing.is_empty(),
        "the web UI test needs: {}; .ci/run installs all of it",
        missing.join(", ")
    );
}

fn free_tcp_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn skylan(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_skylan"));
    cmd.arg("--home").arg(home);
    cmd
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// `GET`/`POST` on the API; (status, JSON body or null).
fn api(addr: SocketAddr, token: Option<&str>, method: &str, path: &str) -> (u16, Value) {
    let headers: Vec<(&str, &str)> = token.map(|t| ("X-ZT1-Auth", t)).into_iter().collect();
    let r = raw_request(addr, method, path, &headers, b"").unwrap();
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

#[test]
fn the_web_ui_creates_a_network_authorizes_a_member_and_saves_rules() {
    let ui_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui");
    require_browser(&ui_dir);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");

    // A planet with one root that never runs: the controller needs none to serve.
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    run_ok(
        skylan(&root)
            .args(["idtool", "generate"])
            .arg(root.join("identity.secret"))
            .arg(root.join("identity.public")),
    );
    let planet = dir.path().join("planet");
    run_ok(
        skylan(&root)
            .args(["idtool", "mkplanet", "--root"])
            .arg(format!(
                "{}@127.0.0.1/{}",
                root.join("identity.public").display(),
                free_udp_port()
            ))
            .arg("--out")
            .arg(&planet),
    );

    let api_port = free_tcp_port();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, api_port));
    let mut node = Started::spawn(
        "node",
        skylan(&home)
            .args(["node", "--controller", "--planet"])
            .arg(&planet)
            .args(["--port", &free_udp_port().to_string()])
            .args(["--api-port", &api_port.to_string()])
            .env("SKYLAN_LOG", "info"),
        dir.path(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while raw_request(addr, "GET", "/health", &[], b"").map_or(true, |r| r.status != 200) {
        assert!(node.child.try_wait().unwrap().is_none(), "the node exited");
        assert!(Instant::now() < deadline, "the node's API did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The login link, and what the server gives without a token: the page, no data.
    let printed = run_ok(skylan(&home).args(["controller", "ui"]));
    let link = printed
        .lines()
        .find(|l| l.starts_with("http://"))
        .unwrap_or_else(|| panic!("no link in {printed:?}"))
        .trim()
        .to_string();
    let token = std::fs::read_to_string(home.join("authtoken.secret")).unwrap();
    let token = token.trim();
    assert_eq!(
        link,
        format!("http://127.0.0.1:{api_port}/ui/#token={token}")
    );
    let page = raw_request(addr, "GET", "/ui/", &[], b"").unwrap();
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(api(addr, None, "GET", "/controller/network").0, 401);

    let profile = dir.path().join("chromium-profile");
    std::fs::create_dir(&profile).unwrap();
    let mut script = Started::spawn(
        "ui_test.mjs",
        Command::new("node")
            .arg(ui_dir.join("ui_test.mjs"))
            .current_dir(&ui_dir)
            .env("SKYLAN_UI_LINK", &link)
            .env("SKYLAN_UI_MEMBER", MEMBER)
            .env("SKYLAN_UI_PROFILE", &profile)
            .env("CHROMIUM", CHROMIUM),
        dir.path(),
    );
    let status = script.wait(SCRIPT_TIMEOUT);
    let output = script.output();
    assert!(
        status.is_some_and(|s| s.success()),
        "the browser script failed ({status:?}):\n{output}"
    );
    let result: Value = output
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no result line in:\n{output}"));
    let nwid = result["nwid"].as_str().unwrap();

    // What the browser did is what the controller holds.
    let (status, net) = api(
        addr,
        Some(token),
        "GET",
        &format!("/controller/network/{nwid}"),
    );
    assert_eq!(status, 200, "{net}");
    assert_eq!(net["name"], "ui-lab <b>bold</b>");
    assert_eq!(net["rulesSource"], RULES);
    assert_eq!(net["mtu"], 1400);
    assert_eq!(net["ipAssignmentPools"][0]["ipRangeStart"], "198.18.0.1");
    assert_eq!(net["routes"][0]["target"], "198.18.0.0/15");
    assert_eq!(net["dns"]["domain"], "lab.example");
    assert_eq!(net["rules"][3]["type"], "ACTION_DROP", "{}", net["rules"]);
    let (status, member) = api(
        addr,
        Some(token),
        "GET",
        &format!("/controller/network/{nwid}/member/{MEMBER}"),
    );
    assert_eq!(status, 200, "{member}");
    assert_eq!(member["authorized"], true);

    assert!(
        node.child.try_wait().unwrap().is_none(),
        "the node exited during the test"
    );
}
