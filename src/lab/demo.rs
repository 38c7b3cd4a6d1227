//! `skylan demo`: the README's first command. As root, it builds a throw-away lab of
//! network namespaces on this machine, runs a real root, a real controller and three real
//! nodes in it (one public, one behind a port-restricted cone NAT, one behind a symmetric
//! NAT), and narrates a numbered script:
//!
//! 1. build the lab; 2. make the root's identity and the planet; 3. start the daemons and
//!    wait until every node is ONLINE; 4. create a private network with an address pool
//!    and a route; 5. join it from the three nodes, which are denied until authorized;
//!    6. authorize them and wait for their TAP devices and managed addresses, measuring
//!    the first ping from the join; 7. ping across by managed IP with the system `ping`;
//!    8. show `skylan peers` (DIRECT or RELAY paths); 9. deauthorize one member, measure
//!    how long until pings to it stop, and show that the others still talk; 10. tear
//!    everything down and check that nothing is left.
//!
//! Every line of command output printed is the real output of the real command (the
//! current `skylan` binary, `ping`), run inside the host's namespace; the narration says
//! which host each command runs on. Waiting is always polling with a timeout, never a
//! fixed long sleep.
//!
//! Invariants:
//! - Everything the demo creates lives in one [`Lab`] (namespaces tagged `demo`, processes
//!   spawned through it) and one work directory under the temporary directory named after
//!   the lab. Both go away on every exit path: success, a failed step (after printing the
//!   last lines of every daemon's log), SIGINT/SIGTERM/SIGHUP (a handler only sets a flag
//!   that every wait and command checks; a second signal quits at once and the next run
//!   sweeps what was left), and a panic (the lab's `Drop` runs while unwinding).
//! - Underlay addresses come from 198.51.100.0/24 and 192.0.2.0/24, overlay addresses
//!   from 198.18.0.0/15; the backbone has no route out, so nothing leaves the machine.
//!
//! Caller: `skylan demo` in `main.rs`, through [`run`]; `tests/demo.rs` runs the binary.
//! Output is narration on stdout; on failure the log tails go to stderr.

use std::fs::{self, File};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::client::ApiClient;
use crate::lab::{self, Lab, LabError, LabHost, NatKind};
use plumbing::{
    CmdOutput, SignalGuard, WorkDir, clear_interrupt, ensure_tools, interrupted, run_command,
    run_command_with, sweep_stale, unix_now,
};

mod plumbing;

/// The lab tag: every namespace of the demo is named `skl-demo-<pid>-<n>...`.
pub const LAB_TAG: &str = "demo";
/// Name of the network the demo creates.
pub const NETWORK_NAME: &str = "skylan-demo";
/// The managed-address pool (overlay addresses come from 198.18.0.0/15).
pub const POOL: &str = "198.18.0.10-198.18.0.250";
/// The managed route pushed to members.
pub const ROUTE: &str = "198.18.0.0/24";

/// UDP port of every daemon (each has its own namespace, so they do not collide).
const PORT: &str = "9993";
const ROOT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const CONTROLLER_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const ALICE_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
const BOB_PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 21);
const BOB_PRIVATE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const CAROL_PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 22);
const CAROL_PRIVATE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);

/// Number of numbered steps (the header of each says `[n/STEPS]`).
const STEPS: usize = 11;
/// How often waits poll.
const POLL: Duration = Duration::from_millis(25);
/// Daemons start, create identities (a proof of work each) and reach the root.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// A config request answered, a config pushed, a device configured.
const CONFIG_TIMEOUT: Duration = Duration::from_secs(10);
/// Any single command (CLI call, `ping -c 3`).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a first ping may keep trying.
const FIRST_PING_DEADLINE: Duration = Duration::from_secs(5);
/// How long to wait for NAT-punched paths to become DIRECT before showing `peers`.
const PATH_WAIT: Duration = Duration::from_secs(4);
/// The interval of the revocation ping: the resolution of the revocation latency.
const REVOKE_PING_INTERVAL: Duration = Duration::from_millis(10);
/// How long the revocation ping keeps going after the deauthorize call.
const REVOKE_WATCH: Duration = Duration::from_secs(3);
/// Pings must have been silent at least this long at the end of [`REVOKE_WATCH`].
const REVOKE_QUIET: Duration = Duration::from_millis(1500);
/// Lines of each daemon's log printed when a step fails.
const LOG_TAIL_LINES: usize = 15;

/// Why the demo stopped. Every variant is printed after the lab has been torn down.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Namespaces, veths, TAP devices and nftables need root.
    #[error(
        "`skylan demo` builds network namespaces and TAP devices, which needs root; run it as root (e.g. `sudo skylan demo`)"
    )]
    NotRoot,
    /// A tool the demo runs is not installed.
    #[error(
        "the demo needs {packages}, which could not be installed; install them (apt-get install -y {packages}) and run it again"
    )]
    MissingTool {
        /// The Debian packages missing.
        packages: String,
    },
    /// Building or tearing down the lab failed.
    #[error("the namespace lab: {0}")]
    Lab(#[from] LabError),
    /// A numbered step failed; the daemons' log tails were printed to stderr.
    #[error("step {step}/{STEPS} ({title}) failed: {problem}")]
    Step {
        /// The step number.
        step: usize,
        /// What the step does.
        title: String,
        /// What went wrong, with the command or the state seen.
        problem: String,
    },
    /// SIGINT, SIGTERM or SIGHUP arrived; the lab was torn down.
    #[error("interrupted; the lab was torn down")]
    Interrupted,
    /// The work directory could not be made or removed.
    #[error("{what}: {source}")]
    Io {
        /// What the demo was doing.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Settings of `skylan demo`.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// The `skylan` binary to run in the lab; `None` means the running executable.
    pub skylan: Option<PathBuf>,
    /// After the script, keep the lab running (printing how to reach it) until
    /// interrupted, then tear it down.
    pub keep: bool,
}

/// Runs the demo, printing the narration to stdout as it goes, and returns the summary of
/// measurements to print last. The lab is gone when this returns, whatever happened.
pub fn run(options: &DemoOptions) -> Result<String, DemoError> {
    if !lab::is_root() {
        return Err(DemoError::NotRoot);
    }
    ensure_tools()?;
    let exe = match &options.skylan {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(|source| DemoError::Io {
            what: "finding the running skylan binary".into(),
            source,
        })?,
    };
    let _signals = SignalGuard::install().map_err(|source| DemoError::Io {
        what: "installing the SIGINT/SIGTERM handler".into(),
        source,
    })?;
    let say = Narrator::new();
    let started = say.started;
    sweep_stale(&say)?;
    // A lab command killed by the terminal's SIGINT fails; report the interrupt instead.
    let mut demo = Demo::build(exe, say).map_err(|e| {
        if interrupted() {
            DemoError::Interrupted
        } else {
            e
        }
    })?;
    let result = demo.script(options.keep);
    if let Err(e) = &result {
        if !matches!(e, DemoError::Interrupted) {
            eprintln!("\nskylan demo: {e}");
            demo.print_log_tails();
        }
    }
    let teardown = demo.teardown();
    match (result, teardown) {
        (Ok(summary), Ok(())) => Ok(format!(
            "{summary}  {:<28} {}\n",
            "total, teardown included:",
            fmt_duration(started.elapsed())
        )),
        (Err(e), teardown) => {
            if let Err(t) = teardown {
                eprintln!("skylan demo: tearing down failed too: {t}");
            }
            Err(e)
        }
        (Ok(_), Err(t)) => Err(t),
    }
}

// ---------------------------------------------------------------------------------------
// The script.

/// Index of the controller in `Demo::sites`; the members follow it.
const CTL: usize = 0;
const ALICE: usize = 1;
const BOB: usize = 2;
const CAROL: usize = 3;
const MEMBERS: [usize; 3] = [ALICE, BOB, CAROL];

/// One host of the lab running `skylan node` (the controller or a member).
struct Site {
    name: &'static str,
    host: LabHost,
    home: PathBuf,
    /// The node address, known once the daemon is up.
    address: String,
    /// The managed address, known once the network config arrived.
    ip: String,
}

/// A daemon the lab spawned, with its log file.
struct Daemon {
    name: &'static str,
    pid: u32,
    log: PathBuf,
}

/// A pair of members that ping each other, the link expected between them, and why.
struct Pair {
    from: usize,
    to: usize,
    expect: &'static str,
    why: &'static str,
}

/// The pairs the demo pings (indices into `Demo::sites`).
const PAIRS: [Pair; 3] = [
    Pair {
        from: ALICE,
        to: BOB,
        expect: "DIRECT",
        why: "public and port-restricted cone: bob's NAT opens once bob sends",
    },
    Pair {
        from: ALICE,
        to: CAROL,
        expect: "DIRECT",
        why: "public and symmetric: alice answers the port carol's NAT picked",
    },
    Pair {
        from: BOB,
        to: CAROL,
        expect: "RELAY",
        why: "port-restricted and symmetric: no port to punch, the root relays",
    },
];

/// What the summary reports, in time since the first join where it says so.
#[derive(Default)]
struct Facts {
    online: Duration,
    denied: Duration,
    authorized: Duration,
    configured: Duration,
    first_pings: Vec<(String, Duration)>,
    revocation: Option<Revocation>,
}

/// The lab, what runs in it, and what the steps found out.
struct Demo {
    say: Narrator,
    exe: PathBuf,
    /// Declared before `dir`: dropped first, so the daemons have stopped writing into
    /// the work directory when it is removed.
    lab: Lab,
    dir: WorkDir,
    root: LabHost,
    /// The controller, then alice, bob and carol.
    sites: Vec<Site>,
    daemons: Vec<Daemon>,
    facts: Facts,
}

impl Demo {
    /// Step 1: the lab and the work directory.
    fn build(exe: PathBuf, mut say: Narrator) -> Result<Demo, DemoError> {
        say.line("skylan demo: a throw-away lab of network namespaces on this machine, with a");
        say.line("root, a network controller and three nodes, two of them behind NAT.");
        say.begin("Building the lab: namespaces, a backbone switch, two NAT routers");
        let lab = Lab::new(LAB_TAG)?;
        let dir = WorkDir::create(std::env::temp_dir().join(lab.id()))?;
        let root = lab.add_public_host("root", ROOT_IP)?;
        let hosts = [
            lab.add_public_host("ctl", CONTROLLER_IP)?,
            lab.add_public_host("alice", ALICE_IP)?,
            lab.add_nat_host("bob", NatKind::PortRestricted, BOB_PUBLIC, BOB_PRIVATE)?,
            lab.add_nat_host("carol", NatKind::Symmetric, CAROL_PUBLIC, CAROL_PRIVATE)?,
        ];
        let names = ["ctl", "alice", "bob", "carol"];
        let sites: Vec<Site> = hosts
            .into_iter()
            .zip(names)
            .map(|(host, name)| Site {
                name,
                home: dir.0.join(name),
                host,
                address: String::new(),
                ip: String::new(),
            })
            .collect();
        let nat = |h: &LabHost, private: Ipv4Addr| format!("{private} behind NAT {}", h.ip);
        let rows = [
            ("root", ROOT_IP.to_string(), "skylan root".to_string()),
            (
                "ctl",
                CONTROLLER_IP.to_string(),
                "skylan node --controller".into(),
            ),
            (
                "alice",
                ALICE_IP.to_string(),
                "skylan node, public address".into(),
            ),
            (
                "bob",
                nat(&sites[BOB].host, BOB_PRIVATE),
                format!("skylan node, {} NAT", NatKind::PortRestricted),
            ),
            (
                "carol",
                nat(&sites[CAROL].host, CAROL_PRIVATE),
                format!("skylan node, {} NAT", NatKind::Symmetric),
            ),
        ];
        for (name, addr, role) in rows {
            say.out(&format!("{name:<6} {addr:<36} {role}"));
        }
        say.out(&format!(
            "{} namespaces {}.*, work directory $DIR = {}",
            lab.namespaces().len(),
            lab.id(),
            dir.0.display()
        ));
        say.out("`host$ skylan CMD` below runs `ip netns exec <host's namespace> skylan --home $DIR/<host> CMD`");
        say.done();
        Ok(Demo {
            say,
            exe,
            lab,
            dir,
            root,
            sites,
            daemons: Vec::new(),
            facts: Facts::default(),
        })
    }

    /// Steps 2 to 10; returns the summary text.
    fn script(&mut self, keep: bool) -> Result<String, DemoError> {
        self.planet()?;
        self.start_daemons()?;
        let nwid = self.create_network()?;
        let joined = self.join(&nwid)?;
        self.authorize(&nwid, joined)?;
        self.ping_across()?;
        self.paths()?;
        self.flow_rules(&nwid)?;
        self.revoke(&nwid)?;
        if keep {
            self.keep_running()?;
        }
        Ok(self.summary())
    }

    /// Step 2: the root's identity and a planet naming it.
    fn planet(&mut self) -> Result<(), DemoError> {
        self.say
            .begin("Making the root's identity and the planet (the signed list of roots)");
        let home = self.dir.0.join("root");
        fs::create_dir_all(&home).map_err(|source| DemoError::Io {
            what: format!("creating {}", home.display()),
            source,
        })?;
        let (secret, public) = (home.join("identity.secret"), home.join("identity.public"));
        let mut cmd = self.root.command(&self.exe);
        cmd.args(["idtool", "generate"]).arg(&secret).arg(&public);
        self.show_checked("root", cmd)?;
        let mut cmd = self.root.command(&self.exe);
        let spec = format!("{}@{ROOT_IP}/{PORT}", public.display());
        cmd.args(["idtool", "mkplanet", "--root", &spec, "--out"]);
        cmd.arg(self.dir.0.join("planet"));
        self.show_checked("root", cmd)?;
        self.say.done();
        Ok(())
    }

    /// Step 3: root, controller and nodes, each until ONLINE.
    fn start_daemons(&mut self) -> Result<(), DemoError> {
        self.say.begin(
            "Starting the root, the controller and three nodes; waiting until all are ONLINE",
        );
        let t0 = Instant::now();
        let planet = self.dir.0.join("planet");
        let root = self.root.clone();
        let (root_home, port) = (self.dir.0.join("root"), ["--port", PORT]);
        let mut cmd = root.command(&self.exe);
        cmd.arg("root").arg("--home").arg(&root_home).args(port);
        cmd.arg("--planet").arg(&planet);
        self.spawn_daemon("root", &root, cmd)?;
        for i in 0..self.sites.len() {
            let site = &self.sites[i];
            let (name, host) = (site.name, site.host.clone());
            let mut cmd = host.command(&self.exe);
            cmd.arg("node").arg("--home").arg(&site.home).args(port);
            cmd.arg("--planet").arg(&planet);
            if i == CTL {
                cmd.arg("--controller");
            }
            self.spawn_daemon(name, &host, cmd)?;
        }
        self.say
            .out("(each node makes its identity first: about half a second of proof of work)");
        for i in 0..self.sites.len() {
            let site = &self.sites[i];
            let what = format!("{} to be ONLINE", site.name);
            let status = self.wait_for(&what, START_TIMEOUT, || {
                let s = self.api(site, "GET", "/status")?;
                Ok((s["online"] == Value::Bool(true)).then_some(s))
            })?;
            self.sites[i].address = status["address"].as_str().unwrap_or_default().into();
        }
        self.facts.online = t0.elapsed();
        for i in 0..self.sites.len() {
            self.show(i, "info")?;
        }
        self.say.out(&format!(
            "all online {} after starting",
            fmt_duration(self.facts.online)
        ));
        self.say.done();
        Ok(())
    }

    /// Step 4: a private network with a pool and a route; returns its ID.
    fn create_network(&mut self) -> Result<String, DemoError> {
        self.say
            .begin("Creating a private network with an address pool and a route");
        let create = format!(
            "controller network create --name {NETWORK_NAME} --pool {POOL} --route {ROUTE}"
        );
        self.show(CTL, &create)?;
        let list = self
            .api(&self.sites[CTL], "GET", "/controller/network")
            .map_err(|e| self.fail(format!("listing the controller's networks: {e}")))?;
        let ids: Vec<&str> = list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let [nwid] = ids.as_slice() else {
            return Err(self.fail(format!(
                "the controller should have one network, it lists {list}"
            )));
        };
        let nwid = nwid.to_string();
        self.say.done();
        Ok(nwid)
    }

    /// Step 5: the members join and are denied (the network is private). Returns when the
    /// first join was sent.
    fn join(&mut self, nwid: &str) -> Result<Instant, DemoError> {
        self.say
            .begin("Joining the network from alice, bob and carol (not authorized yet)");
        let joined = Instant::now();
        for i in MEMBERS {
            self.show(i, &format!("join {nwid}"))?;
        }
        let path = format!("/network/{nwid}");
        for i in MEMBERS {
            let site = &self.sites[i];
            let what = format!("the controller to answer {}'s join", site.name);
            let status = self.wait_for(&what, CONFIG_TIMEOUT, || {
                let v = self.api(site, "GET", &path)?;
                let s = v["status"].as_str().unwrap_or_default().to_string();
                Ok((s != "REQUESTING_CONFIGURATION").then_some(s))
            })?;
            if status != "ACCESS_DENIED" {
                return Err(self.fail(format!(
                    "{} should be ACCESS_DENIED before anyone authorized it, but its status is {status}",
                    site.name
                )));
            }
        }
        self.facts.denied = joined.elapsed();
        self.show(ALICE, "networks")?;
        self.say.out(&format!(
            "all three ACCESS_DENIED {} after joining: the controller refuses members it has not authorized",
            fmt_duration(self.facts.denied)
        ));
        self.say.done();
        Ok(joined)
    }

    /// Step 6: authorize, wait for device and address, measure the first pings.
    fn authorize(&mut self, nwid: &str, joined: Instant) -> Result<(), DemoError> {
        self.say
            .begin("Authorizing the members; each gets a TAP device and a managed address");
        self.facts.authorized = joined.elapsed();
        for i in MEMBERS {
            let args = format!(
                "controller member authorize {nwid} {}",
                self.sites[i].address
            );
            let out = self.skylan(CTL, &args)?;
            self.say
                .prompt(self.sites[CTL].name, &format!("skylan {args}"));
            self.say.block(out.lines().next().unwrap_or_default());
        }
        self.say
            .out("(each also prints the member record; `controller members` below sums them up)");
        let path = format!("/network/{nwid}");
        for i in MEMBERS {
            let site = &self.sites[i];
            let what = format!(
                "{}'s network to be OK with a device and an address",
                site.name
            );
            let ip = self.wait_for(&what, CONFIG_TIMEOUT, || {
                Ok(configured_ip(&self.api(site, "GET", &path)?))
            })?;
            self.sites[i].ip = ip.to_string();
        }
        self.facts.configured = joined.elapsed();
        self.first_pings(joined)?;
        for i in MEMBERS {
            self.show(i, "networks")?;
        }
        self.show(CTL, &format!("controller members {nwid}"))?;
        self.say.done();
        Ok(())
    }

    /// Pings every pair at once with `ping -c 1 -w N -i 0.02` (which keeps sending until
    /// the first reply) and records when the first reply came, from the join.
    fn first_pings(&mut self, joined: Instant) -> Result<(), DemoError> {
        let joined_wall = unix_now() - joined.elapsed().as_secs_f64();
        let deadline = FIRST_PING_DEADLINE.as_secs().to_string();
        let results: Vec<(String, Result<CmdOutput, String>)> = std::thread::scope(|s| {
            let handles: Vec<_> = PAIRS
                .iter()
                .map(|p| {
                    let (from, to) = (&self.sites[p.from], &self.sites[p.to]);
                    let mut cmd = from.host.command("ping");
                    cmd.args(["-n", "-D", "-c", "1", "-i", "0.02", "-w", &deadline, &to.ip]);
                    let label = format!("{} → {}", from.name, to.name);
                    s.spawn(move || (label, run_command(&mut cmd, COMMAND_TIMEOUT)))
                })
                .collect();
            // A panicking ping thread is a bug in `run_command`; report it as a failure.
            let lost = || (String::new(), Err("a ping thread panicked".into()));
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| lost()))
                .collect()
        });
        for (label, result) in results {
            let out = result.map_err(|e| self.fail(format!("first ping {label}: {e}")))?;
            let Some(&first) = ping_replies(&out.stdout).first() else {
                return Err(self.fail(format!(
                    "first ping {label}: no reply within {}:\n{}{}",
                    fmt_duration(FIRST_PING_DEADLINE),
                    out.stdout,
                    out.stderr
                )));
            };
            let since_join = Duration::from_secs_f64((first - joined_wall).max(0.0));
            self.facts.first_pings.push((label, since_join));
        }
        Ok(())
    }

    /// Step 7: the system `ping` between members, by managed IP.
    fn ping_across(&mut self) -> Result<(), DemoError> {
        self.say
            .begin("Pinging across the overlay by managed IP (the system ping)");
        for p in &PAIRS {
            let to = &self.sites[p.to];
            let out = self.ping(p.from, &format!("-n -c 3 -i 0.2 -w 5 {}", to.ip))?;
            if !out.status.success() {
                let from = self.sites[p.from].name;
                return Err(self.fail(format!(
                    "{from} cannot ping {} at {} over the overlay",
                    to.name, to.ip
                )));
            }
        }
        let f = &self.facts;
        let mut timeline = vec![
            (f.denied, "all three ACCESS_DENIED".to_string()),
            (f.authorized, "authorize requests sent".into()),
            (
                f.configured,
                "all three OK, with a TAP device and a managed address".into(),
            ),
        ];
        for (label, t) in &f.first_pings {
            timeline.push((*t, format!("first ping reply {label}")));
        }
        timeline.sort_by_key(|(t, _)| *t);
        self.say.out("timeline from the first `skylan join`:");
        for (t, what) in timeline {
            self.say.out(&format!("  +{:<8} {what}", fmt_secs(t)));
        }
        self.say.done();
        Ok(())
    }

    /// Step 8: `skylan peers` on each member, and which pairs went direct.
    fn paths(&mut self) -> Result<(), DemoError> {
        self.say
            .begin("Paths: who talks DIRECT (hole punched) and who through the root (RELAY)");
        // Hole punching finishes shortly after the first frames; wait a little for it, but
        // show whatever the paths are when the wait ends.
        let settled = self.wait_quietly(PATH_WAIT, || {
            PAIRS
                .iter()
                .all(|p| self.link(p).is_ok_and(|(link, _)| link == p.expect))
        })?;
        for i in MEMBERS {
            self.show(i, "peers")?;
        }
        for p in &PAIRS {
            let (link, path) = self.link(p).unwrap_or_else(|e| ("?".into(), e));
            let mark = if link == p.expect {
                String::new()
            } else {
                format!(" (expected {})", p.expect)
            };
            let (from, to) = (self.sites[p.from].name, self.sites[p.to].name);
            self.say.out(&format!(
                "{from:<5} ↔ {to:<5}  {link:<6} {path:<20} {}{mark}",
                p.why
            ));
        }
        if !settled {
            self.say.out(&format!(
                "(not all paths were as expected after {})",
                fmt_duration(PATH_WAIT)
            ));
        }
        self.say.done();
        Ok(())
    }

    /// The link `pair.from` has to `pair.to`: ("DIRECT", "ip/port") or ("RELAY", "via ...").
    fn link(&self, pair: &Pair) -> Result<(String, String), String> {
        let to = &self.sites[pair.to].address;
        Ok(peer_link(&self.api(
            &self.sites[pair.from],
            "GET",
            &format!("/peer/{to}"),
        )?))
    }

    /// Step 9: a rule that blocks and one that allows. The network's rules drop pings
    /// to carol and accept everything else; alice's pings to carol stop while bob still
    /// answers, and alice's `/metrics` counts the hits per rule. Then the rules go back
    /// to accepting everything, for the revocation step.
    fn flow_rules(&mut self, nwid: &str) -> Result<(), DemoError> {
        self.say
            .begin("Flow rules: one drops pings to carol, one accepts the rest");
        let carol = self.sites[CAROL].ip.clone();
        let blocking = format!(
            "# carol answers no pings; everything else passes\n\
             drop ipprotocol 1 and ipdest {carol}/32;\n\
             accept;\n"
        );
        self.set_rules(nwid, "office.rules", &blocking)?;
        let bob = self.sites[BOB].ip.clone();
        self.wait_for(
            "alice's pings to carol to be dropped",
            CONFIG_TIMEOUT,
            || Ok((!self.quiet_ping(ALICE, &carol)).then_some(())),
        )?;
        let to_carol = self.ping(ALICE, &format!("-n -c 2 -i 0.2 -w 2 {carol}"))?;
        let to_bob = self.ping(ALICE, &format!("-n -c 2 -i 0.2 -w 3 {bob}"))?;
        if to_carol.status.success() || !to_bob.status.success() {
            return Err(self.fail(
                "with the rules in place, carol should not answer alice's pings and bob should",
            ));
        }
        let home = self.sites[ALICE].home.clone();
        let metrics = lab::run_in(&self.sites[ALICE].host.netns, move || {
            ApiClient::for_home(&home, None)?.get_text("/metrics")
        })
        .map_err(|e| self.fail(e.to_string()))?
        .map_err(|e| self.fail(e.to_string()))?;
        let hits: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("skylan_rule_hits_total"))
            .collect();
        self.say
            .out("alice's rule hit counters (rule 0 drops, 1 accepts; GET /metrics):");
        self.say.block(&hits.join("\n"));
        self.set_rules(nwid, "open.rules", "accept;\n")?;
        self.wait_for(
            "alice's pings to carol to pass again",
            CONFIG_TIMEOUT,
            || Ok(self.quiet_ping(ALICE, &carol).then_some(())),
        )?;
        self.say
            .out("(rules back to `accept;`: carol answers again)");
        self.say.done();
        Ok(())
    }

    /// Writes `rules` to `$DIR/<file>` and makes it the network's rules on the controller.
    fn set_rules(&self, nwid: &str, file: &str, rules: &str) -> Result<(), DemoError> {
        let path = self.dir.0.join(file);
        fs::write(&path, rules).map_err(|source| DemoError::Io {
            what: format!("writing {}", path.display()),
            source,
        })?;
        self.say.out(&format!("$DIR/{file}:"));
        self.say.block(rules);
        let args = format!(
            "controller network set {nwid} rulesSource=@{}",
            path.display()
        );
        self.skylan(CTL, &args)?;
        self.say.prompt(
            self.sites[CTL].name,
            &format!("skylan controller network set {nwid} rulesSource=@$DIR/{file}"),
        );
        Ok(())
    }

    /// One ping from `site` to `ip` with a one-second wait, not shown: true on a reply.
    fn quiet_ping(&self, site: usize, ip: &str) -> bool {
        let mut cmd = self.sites[site].host.command("ping");
        cmd.args(["-n", "-c", "1", "-W", "1", ip]);
        run_command(&mut cmd, COMMAND_TIMEOUT).is_ok_and(|o| o.status.success())
    }

    /// Step 10: deauthorize carol while alice pings her every 10 ms; measure when the
    /// replies stop after the API call, and check that alice and bob still talk.
    fn revoke(&mut self, nwid: &str) -> Result<(), DemoError> {
        self.say
            .begin("Revoking carol: deauthorize her while alice pings her every 10 ms");
        let out_path = self.dir.0.join("revoke-ping.out");
        let out = File::create(&out_path).map_err(|source| DemoError::Io {
            what: format!("creating {}", out_path.display()),
            source,
        })?;
        let (alice, carol) = (&self.sites[ALICE], &self.sites[CAROL]);
        let interval = format!("{:.3}", REVOKE_PING_INTERVAL.as_secs_f64());
        let mut cmd = alice.host.command("ping");
        cmd.args(["-n", "-D", "-i", &interval, "-w", "60", &carol.ip]);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::null());
        let shown = format!(
            "ping -n -D -i {interval} {} > $DIR/revoke-ping.out &",
            carol.ip
        );
        self.say.prompt(alice.name, &shown);
        let pinger = self.lab.spawn(&alice.host, cmd)?;
        let replies = || ping_replies(&fs::read_to_string(&out_path).unwrap_or_default());
        self.wait_for(
            "alice's pings to carol to be answered",
            CONFIG_TIMEOUT,
            || Ok((replies().len() >= 10).then_some(())),
        )?;
        let before_call = unix_now();
        self.show(
            CTL,
            &format!("controller member deauthorize {nwid} {}", carol.address),
        )?;
        // The controller stamps the deauthorization (Unix ms, so up to 1 ms early) when it
        // handles the API call: the start of the measurement, on the same clock as ping's
        // -D stamps. Without the stamp, the time the CLI was started stands in (earlier,
        // so the measurement can only come out longer, never shorter).
        let member_path = format!("/controller/network/{nwid}/member/{}", carol.address);
        let member = self
            .api(&self.sites[CTL], "GET", &member_path)
            .unwrap_or_default();
        let call = match member["lastDeauthorizedTime"].as_u64() {
            Some(ms) if ms > 0 => ms as f64 / 1000.0,
            _ => before_call,
        };
        let watch_until = Instant::now() + REVOKE_WATCH;
        self.wait_quietly(REVOKE_WATCH * 2, || Instant::now() >= watch_until)?;
        if let Ok(pid) = i32::try_from(pinger) {
            // SIGINT makes ping print its statistics and exit.
            // SAFETY: a plain signal to a child the lab spawned and has not reaped.
            unsafe { libc::kill(pid, libc::SIGINT) };
        }
        self.wait_for("the revocation ping to exit", COMMAND_TIMEOUT, || {
            self.lab.try_wait(pinger).map_err(|e| e.to_string())
        })?;
        let end = unix_now();
        let text = fs::read_to_string(&out_path).unwrap_or_default();
        let r = analyse_revocation(&ping_replies(&text), call, end, REVOKE_PING_INTERVAL)
            .map_err(|e| self.fail(format!("{e}\nlast lines of the ping:\n{}", tail(&text, 8))))?;
        self.say.out(&format!(
            "{} replies before the call, {} after it; the last came {} after the call, then {} of silence",
            r.before,
            r.after,
            fmt_duration(r.last),
            fmt_duration(r.quiet)
        ));
        self.say.out(&format!(
            "revocation latency: at most {} (the ping after the last answered one, {} later, got no reply)",
            fmt_duration(r.bound),
            fmt_duration(r.gap)
        ));
        self.facts.revocation = Some(r);
        let path = format!("/network/{nwid}");
        self.wait_for("carol to see ACCESS_DENIED", CONFIG_TIMEOUT, || {
            let v = self.api(&self.sites[CAROL], "GET", &path)?;
            Ok((v["status"] == "ACCESS_DENIED").then_some(()))
        })?;
        self.show(CAROL, "networks")?;
        let out = self.ping(
            ALICE,
            &format!("-n -c 2 -i 0.2 -w 5 {}", self.sites[BOB].ip),
        )?;
        if !out.status.success() {
            return Err(self.fail("alice can no longer ping bob after carol was revoked"));
        }
        self.say
            .out("carol lost her device and address; alice and bob are unaffected");
        self.say.done();
        Ok(())
    }

    /// `--keep`: leave the lab up until interrupted.
    fn keep_running(&mut self) -> Result<(), DemoError> {
        let alice = &self.sites[ALICE];
        self.say.line("\nThe lab stays up (--keep). For example:");
        self.say.out(&format!(
            "ip netns exec {} ping {}",
            alice.host.netns, self.sites[BOB].ip
        ));
        let home = alice.home.display();
        self.say.out(&format!(
            "ip netns exec {} {} --home {home} peers",
            alice.host.netns,
            self.exe.display()
        ));
        self.say.line("Press Ctrl-C to tear it down.");
        while !interrupted() {
            self.check_daemons()?;
            std::thread::sleep(Duration::from_millis(200));
        }
        // The interrupt was the expected end here, not a failure.
        clear_interrupt();
        Ok(())
    }

    /// Step 11 (on every path): end the daemons, delete the namespaces and the work
    /// directory, and check that nothing of this lab is left.
    fn teardown(self) -> Result<(), DemoError> {
        let Demo {
            mut say, lab, dir, ..
        } = self;
        // Always the last step, also when an earlier one failed.
        say.step = STEPS - 1;
        say.begin("Tearing down: ending the daemons, deleting the namespaces");
        let id = format!("{}.", lab.id());
        let count = lab.namespaces().len();
        drop(lab);
        drop(dir);
        // A signal during teardown can kill an `ip netns del` the lab ran; retry those.
        let mut left = Vec::new();
        for name in lab::list_namespaces()?
            .into_iter()
            .filter(|n| n.starts_with(&id))
        {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "del", &name]);
            if !run_command_with(&mut cmd, COMMAND_TIMEOUT, false).is_ok_and(|o| o.status.success())
            {
                left.push(name);
            }
        }
        if !left.is_empty() {
            return Err(DemoError::Step {
                step: STEPS,
                title: "tearing down".into(),
                problem: format!(
                    "namespaces left behind: {}; remove them with `ip netns del NAME`",
                    left.join(" ")
                ),
            });
        }
        say.out(&format!(
            "{count} namespaces deleted, every daemon ended, $DIR removed"
        ));
        say.done();
        Ok(())
    }

    fn summary(&self) -> String {
        let f = &self.facts;
        let mut s = String::from("\nSummary\n");
        let mut row = |what: &str, value: String| s.push_str(&format!("  {what:<28} {value}\n"));
        row("nodes online after start:", fmt_duration(f.online));
        if let Some((label, t)) = f.first_pings.iter().min_by_key(|(_, t)| *t) {
            let all = f.first_pings.iter().map(|(_, t)| *t).max().unwrap_or(*t);
            row(
                "join → first ping:",
                format!(
                    "{} ({label}; every pair by {}; authorized at +{})",
                    fmt_duration(*t),
                    fmt_duration(all),
                    fmt_secs(f.authorized)
                ),
            );
        }
        if let Some(r) = &f.revocation {
            row(
                "revocation latency:",
                format!(
                    "≤ {} (deauthorize call → pings stop; last reply at +{})",
                    fmt_duration(r.bound),
                    fmt_duration(r.last)
                ),
            );
        }
        s
    }

    // ----- Helpers. ------------------------------------------------------------------

    /// Starts a daemon (`cmd` from `host.command(..)`) with its output in `$DIR/<name>.log`.
    fn spawn_daemon(
        &mut self,
        name: &'static str,
        host: &LabHost,
        mut cmd: Command,
    ) -> Result<(), DemoError> {
        let log = self.dir.0.join(format!("{name}.log"));
        let io = |source| DemoError::Io {
            what: format!("creating {}", log.display()),
            source,
        };
        let file = File::create(&log).map_err(io)?;
        let err = file.try_clone().map_err(io)?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err));
        let shown = self.shown_args(&cmd);
        self.say
            .prompt(name, &format!("skylan {shown} > $DIR/{name}.log 2>&1 &"));
        let pid = self.lab.spawn(host, cmd)?;
        self.daemons.push(Daemon { name, pid, log });
        Ok(())
    }

    /// Runs `skylan --home <site's home> ARGS` (ARGS split at spaces) in the site's
    /// namespace and returns its stdout; a non-zero exit fails the step.
    fn skylan(&self, site: usize, args: &str) -> Result<String, DemoError> {
        let site = &self.sites[site];
        let mut cmd = site.host.command(&self.exe);
        cmd.arg("--home")
            .arg(&site.home)
            .args(args.split_whitespace());
        let out = run_command(&mut cmd, COMMAND_TIMEOUT).map_err(|e| self.fail(e))?;
        if !out.status.success() {
            return Err(self.fail(format!(
                "`{}$ skylan {args}` exited with {}: {}{}",
                site.name,
                out.status,
                out.stderr.trim(),
                out.stdout.trim()
            )));
        }
        Ok(out.stdout)
    }

    /// [`Demo::skylan`], printing the command and its output.
    fn show(&self, site: usize, args: &str) -> Result<(), DemoError> {
        let out = self.skylan(site, args)?;
        self.say
            .prompt(self.sites[site].name, &format!("skylan {args}"));
        self.say.block(&out);
        Ok(())
    }

    /// Runs an offline `skylan` command (`cmd` from `host.command(..)`), printing it and
    /// its output; a non-zero exit fails the step.
    fn show_checked(&self, name: &str, mut cmd: Command) -> Result<(), DemoError> {
        let shown = self.shown_args(&cmd);
        let out = run_command(&mut cmd, COMMAND_TIMEOUT).map_err(|e| self.fail(e))?;
        self.say.prompt(name, &format!("skylan {shown}"));
        self.say.block(&format!("{}{}", out.stdout, out.stderr));
        if !out.status.success() {
            return Err(self.fail(format!("`skylan {shown}` exited with {}", out.status)));
        }
        Ok(())
    }

    /// The arguments of a `host.command(program)` command (after `ip netns exec <netns>
    /// <program>`), with the work directory written `$DIR`, for display.
    fn shown_args(&self, cmd: &Command) -> String {
        let args: Vec<_> = cmd
            .get_args()
            .skip(4)
            .map(|a| a.to_string_lossy())
            .collect();
        self.dir.shorten(&args.join(" "))
    }

    /// Runs the system `ping ARGS` on a site, printing it and its output.
    fn ping(&self, site: usize, args: &str) -> Result<CmdOutput, DemoError> {
        let site = &self.sites[site];
        let mut cmd = site.host.command("ping");
        cmd.args(args.split_whitespace());
        let out = run_command(&mut cmd, COMMAND_TIMEOUT).map_err(|e| self.fail(e))?;
        self.say.prompt(site.name, &format!("ping {args}"));
        self.say.block(&format!("{}{}", out.stdout, out.stderr));
        Ok(out)
    }

    /// One request to a site's local API (inside its namespace, with its token).
    fn api(&self, site: &Site, method: &str, path: &str) -> Result<Value, String> {
        let home = site.home.clone();
        lab::run_in(&site.host.netns, move || {
            ApiClient::for_home(&home, None)?.call(method, path, None)
        })
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    }

    /// Polls `probe` until it returns a value, failing the step after `timeout` (with the
    /// last error the probe saw), when a daemon exits, or when interrupted.
    fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut() -> Result<Option<T>, String>,
    ) -> Result<T, DemoError> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            self.check_daemons()?;
            match probe() {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(e) => last = format!(" (last error: {e})"),
            }
            if Instant::now() >= deadline {
                return Err(self.fail(format!(
                    "timed out after {} waiting for {what}{last}",
                    fmt_duration(timeout)
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Polls `done` until true or `timeout`; returns whether it became true. Fails only
    /// when a daemon exits or the demo is interrupted.
    fn wait_quietly(
        &self,
        timeout: Duration,
        mut done: impl FnMut() -> bool,
    ) -> Result<bool, DemoError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_daemons()?;
            if done() {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Fails when interrupted or when a daemon has exited.
    fn check_daemons(&self) -> Result<(), DemoError> {
        if interrupted() {
            return Err(DemoError::Interrupted);
        }
        for d in &self.daemons {
            let what = format!("the daemon on {} (pid {})", d.name, d.pid);
            match self.lab.try_wait(d.pid) {
                Ok(None) => {}
                Ok(Some(status)) => {
                    return Err(self.fail(format!("{what} exited ({status}); its log is below")));
                }
                Err(e) => return Err(self.fail(format!("checking {what}: {e}"))),
            }
        }
        Ok(())
    }

    /// The error for the current step, or [`DemoError::Interrupted`] after a signal
    /// (commands then fail because they were interrupted too).
    fn fail(&self, problem: impl std::fmt::Display) -> DemoError {
        if interrupted() {
            return DemoError::Interrupted;
        }
        DemoError::Step {
            step: self.say.step,
            title: self.say.title.clone(),
            problem: problem.to_string(),
        }
    }

    /// The last lines of every daemon's log, to stderr.
    fn print_log_tails(&self) {
        let mut err = std::io::stderr().lock();
        for d in &self.daemons {
            let text = fs::read_to_string(&d.log).unwrap_or_default();
            let _ = writeln!(
                err,
                "---- last lines of $DIR/{}.log ({}):",
                d.name,
                d.log.display()
            );
            let _ = writeln!(err, "{}", tail(&text, LOG_TAIL_LINES));
        }
        let _ = err.flush();
    }
}

// ---------------------------------------------------------------------------------------
// Narration.

/// Prints the numbered steps and their output, with timings.
struct Narrator {
    started: Instant,
    step: usize,
    title: String,
    step_started: Instant,
}

impl Narrator {
    fn new() -> Self {
        Narrator {
            started: Instant::now(),
            step: 0,
            title: String::new(),
            step_started: Instant::now(),
        }
    }

    fn begin(&mut self, title: &str) {
        self.step += 1;
        self.title = title.to_string();
        self.step_started = Instant::now();
        self.line("");
        self.line(&format!("[{}/{STEPS}] {title}", self.step));
    }

    fn done(&self) {
        self.out(&format!(
            "(step took {})",
            fmt_duration(self.step_started.elapsed())
        ));
    }

    /// A line at the left margin.
    fn line(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        // A closed stdout (`skylan demo | head`) must not stop the teardown.
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    /// Indented narration.
    fn out(&self, text: &str) {
        self.line(&format!("    {text}"));
    }

    /// A command as typed on `host`.
    fn prompt(&self, host: &str, command: &str) {
        self.line(&format!("  {host}$ {command}"));
    }

    /// A command's output, indented under its prompt.
    fn block(&self, text: &str) {
        for l in text.trim_end().lines() {
            self.line(&format!("      {l}"));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Pure parts: reading command output, measuring, formatting.

/// The managed IPv4 address of a network from `GET /network/<nwid>`, once it is OK with a
/// device and an address.
fn configured_ip(network: &Value) -> Option<Ipv4Addr> {
    if network["status"] != "OK" || network["portDeviceName"].as_str().unwrap_or("").is_empty() {
        return None;
    }
    network["assignedAddresses"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|a| a.split('/').next()?.parse::<Ipv4Addr>().ok())
        .next()
}

/// ("DIRECT", "ip/port"), ("RELAY", "via <root>") or ("NONE", "-") from a `GET /peer/<addr>`.
fn peer_link(peer: &Value) -> (String, String) {
    let link = peer["link"].as_str().unwrap_or("NONE").to_string();
    let path = match link.as_str() {
        "DIRECT" => peer["paths"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["preferred"] == Value::Bool(true))
            .and_then(|p| p["address"].as_str())
            .unwrap_or("-")
            .to_string(),
        "RELAY" => format!("via {}", peer["relay"].as_str().unwrap_or("?")),
        _ => "-".into(),
    };
    (link, path)
}

/// The receive times (Unix seconds) of the echo replies in `ping -D` output, in order.
fn ping_replies(text: &str) -> Vec<f64> {
    text.lines()
        .filter(|l| l.contains(" bytes from "))
        .filter_map(|l| l.strip_prefix('[')?.split_once(']')?.0.parse().ok())
        .collect()
}

/// How a revocation went, from the ping's reply times.
#[derive(Debug, Clone, PartialEq)]
struct Revocation {
    /// Replies received before the deauthorize call.
    before: usize,
    /// Replies received after it (in flight, or before the revocation took effect).
    after: usize,
    /// From the call to the last reply (zero when none came after the call).
    last: Duration,
    /// The ping interval seen before the call (the median gap between replies).
    gap: Duration,
    /// The revocation took effect before this, from the call: the ping sent after the
    /// last answered one (at most `gap` after the last reply) got no answer.
    bound: Duration,
    /// From the last reply to the end of the watch.
    quiet: Duration,
}

/// Measures a revocation: `replies` are reply times, `call` the time of the deauthorize
/// call and `end` the end of the watch (Unix seconds), `interval` ping's nominal interval
/// (used when too few replies came to measure it). Fails when no pings were answered
/// before the call, or when they did not stop for at least [`REVOKE_QUIET`] before `end`.
fn analyse_revocation(
    replies: &[f64],
    call: f64,
    end: f64,
    interval: Duration,
) -> Result<Revocation, String> {
    let before: Vec<f64> = replies.iter().copied().filter(|&t| t < call).collect();
    let Some(&last) = replies.iter().max_by(|a, b| a.total_cmp(b)) else {
        return Err("no ping reply came at all, so nothing was measured".into());
    };
    if before.is_empty() {
        return Err(
            "no ping reply came before the deauthorize call, so nothing was measured".into(),
        );
    }
    let secs = |s: f64| Duration::from_secs_f64(s.max(0.0));
    let mut gaps: Vec<f64> = before.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort_by(f64::total_cmp);
    let gap = gaps.get(gaps.len() / 2).map_or(interval, |&g| secs(g));
    let quiet = secs(end - last);
    if quiet < REVOKE_QUIET {
        return Err(format!(
            "the deauthorized member still answered {} after the deauthorize call ({} replies after it)",
            fmt_duration(secs(last - call)),
            replies.len() - before.len()
        ));
    }
    Ok(Revocation {
        before: before.len(),
        after: replies.len() - before.len(),
        last: secs(last - call),
        gap,
        bound: secs(last - call + gap.as_secs_f64()),
        quiet,
    })
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `1.5 ms` below 10 ms, `850 ms` below a second, `1.2 s` above.
fn fmt_duration(d: Duration) -> String {
    if d < Duration::from_millis(10) {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    } else if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// `1.23 s`: offsets on a timeline.
fn fmt_secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ping_replies_are_read_from_timestamped_output() {
        let out = "PING 198.18.0.5 (198.18.0.5) 56(84) bytes of data.\n\
                   [1795313621.546617] 64 bytes from 198.18.0.5: icmp_seq=17 ttl=64 time=0.720 ms\n\
                   [1795313621.600000] From 198.18.0.9 icmp_seq=18 Destination Host Unreachable\n\
                   [1795313621.659623] 64 bytes from 198.18.0.5: icmp_seq=19 ttl=64 time=1.73 ms\n\
                   \n--- 198.18.0.5 ping statistics ---\n";
        assert_eq!(
            ping_replies(out),
            vec![1795313621.546617, 1795313621.659623]
        );
        assert!(ping_replies("64 bytes from 198.18.0.5: no timestamp").is_empty());
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn revocation_is_bounded_by_the_last_reply_and_the_next_ping() {
        // Replies every 10 ms; the call at 100.015; two more replies in flight after it.
        let replies = [100.000, 100.010, 100.020, 100.030];
        let r = analyse_revocation(&replies, 100.015, 102.0, 20 * MS).unwrap();
        assert_eq!((r.before, r.after), (2, 2));
        assert_eq!(r.last.as_millis(), 15);
        assert_eq!(
            r.gap.as_millis(),
            10,
            "the gap is measured, not the nominal 20 ms"
        );
        assert_eq!(r.bound.as_millis(), 25);
        assert_eq!(r.quiet.as_millis(), 1970);
        // Revoked before the next ping went out: no reply after the call.
        let r = analyse_revocation(&replies, 100.035, 102.0, 20 * MS).unwrap();
        assert_eq!((r.before, r.after, r.last), (4, 0, Duration::ZERO));
        assert_eq!(r.bound.as_millis(), 5);
        // One reply before the call: no gap to measure, the nominal interval is used.
        let r = analyse_revocation(&[100.0], 100.001, 102.0, 20 * MS).unwrap();
        assert_eq!((r.gap, r.bound.as_millis()), (20 * MS, 19));
    }

    #[test]
    fn a_revocation_that_did_not_stop_pings_or_measured_nothing_fails() {
        let still_answering = [100.0, 100.5, 101.0, 101.9];
        let err = analyse_revocation(&still_answering, 100.2, 102.0, 10 * MS).unwrap_err();
        assert!(
            err.contains("still answered") && err.contains("3 replies"),
            "{err}"
        );
        let err = analyse_revocation(&[101.0], 100.0, 103.0, 10 * MS).unwrap_err();
        assert!(err.contains("no ping reply came before"), "{err}");
        assert!(analyse_revocation(&[], 100.0, 103.0, 10 * MS).is_err());
    }

    #[test]
    fn a_network_counts_as_configured_only_when_ok_with_device_and_address() {
        let ok = json!({"status": "OK", "portDeviceName": "sky37a5ddaf",
                        "assignedAddresses": ["fd00::1/88", "198.18.0.132/24"]});
        assert_eq!(configured_ip(&ok), Some(Ipv4Addr::new(198, 18, 0, 132)));
        let no_device = json!({"status": "OK", "portDeviceName": "",
                               "assignedAddresses": ["198.18.0.132/24"]});
        assert_eq!(configured_ip(&no_device), None);
        let denied = json!({"status": "ACCESS_DENIED", "portDeviceName": "x",
                            "assignedAddresses": ["198.18.0.132/24"]});
        assert_eq!(configured_ip(&denied), None);
        let no_address = json!({"status": "OK", "portDeviceName": "x", "assignedAddresses": []});
        assert_eq!(configured_ip(&no_address), None);
    }

    #[test]
    fn peer_links_name_the_direct_path_or_the_relay() {
        let direct = json!({"link": "DIRECT", "paths": [
            {"address": "198.51.100.9/9993", "preferred": false},
            {"address": "198.51.100.21/9993", "preferred": true}]});
        assert_eq!(
            peer_link(&direct),
            ("DIRECT".into(), "198.51.100.21/9993".into())
        );
        let relay = json!({"link": "RELAY", "relay": "f9db959161", "paths": []});
        assert_eq!(peer_link(&relay), ("RELAY".into(), "via f9db959161".into()));
        assert_eq!(peer_link(&json!({})), ("NONE".into(), "-".into()));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(fmt_duration(Duration::from_micros(1250)), "1.2 ms");
        assert_eq!(fmt_duration(Duration::from_millis(35)), "35 ms");
        assert_eq!(fmt_duration(Duration::from_millis(1234)), "1.2 s");
        assert_eq!(fmt_secs(Duration::from_millis(1234)), "1.23 s");
    }

    #[test]
    fn tails_keep_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 3), "");
    }

    #[test]
    fn every_pair_is_between_distinct_members_and_expects_a_known_link() {
        for p in &PAIRS {
            assert_ne!(p.from, p.to);
            assert!(MEMBERS.contains(&p.from) && MEMBERS.contains(&p.to));
            assert!(matches!(p.expect, "DIRECT" | "RELAY"));
        }
        // Carol is the one revoked: she must be pinged by alice, and alice and bob must be
        // able to check they still talk afterwards.
        assert!(PAIRS.iter().any(|p| (p.from, p.to) == (ALICE, CAROL)));
        assert!(PAIRS.iter().any(|p| (p.from, p.to) == (ALICE, BOB)));
        assert!(!MEMBERS.contains(&CTL));
    }
}
