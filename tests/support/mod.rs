//! Shared helpers for end-to-end tests that run real `skylan` processes inside the
//! namespace lab ([`skylan::lab`]).
//!
//! A [`Testbed`] owns a [`Lab`], a temporary directory for home directories, planets
//! and logs, and a record of every daemon it started. It offers the steps such a test
//! is made of:
//!
//! - hosts: [`Testbed::public_host`], [`Testbed::nat_host`];
//! - roots and the planet: [`Testbed::prepare_root`] (identity made offline with
//!   `skylan idtool generate`), [`Testbed::make_planet`], [`Testbed::start_root`], or
//!   [`Testbed::start_planet`] for all three at once;
//! - nodes: [`Testbed::start_node`] (the node makes its own identity, as a user's would),
//!   [`Testbed::stop`], [`Testbed::restart`] and [`Testbed::start_again`] (same home,
//!   same arguments),
//!   [`Testbed::start_expecting_refusal`] (for a home it must refuse to start with);
//! - the CLI run inside the daemon's namespace: [`Testbed::cli`], [`Testbed::cli_json`],
//!   [`Testbed::info`], [`Testbed::peers`], [`Testbed::peer`], [`Testbed::ping`],
//!   [`Testbed::network`]; other programs there with [`Testbed::exec`];
//! - the local API from inside the namespace: [`Testbed::http`],
//!   [`Testbed::http_with_body`], [`Testbed::metrics`];
//! - waiting: [`wait_until`] (a condition with a deadline, reporting the last reason it
//!   did not hold), [`Testbed::wait_online`], [`Testbed::wait_ping`],
//!   [`Testbed::wait_network_status`], and
//!   [`Testbed::ping_recovery`] to measure how soon pings get through after a change;
//! - output: [`Testbed::note`] (timestamped, shown on failure) and [`Testbed::report`]
//!   (measurements, always shown).
//!
//! Contracts:
//! - Every daemon runs as a child of the lab (`Lab::spawn`), so it is ended by PID when
//!   the testbed is dropped, also when the test panics; nothing else is ever signalled.
//! - Each daemon's stdout and stderr go to `<name>.log` in the temporary directory
//!   (appended across restarts, with a marker line). Unless [`Testbed::finish`] was
//!   called, dropping the testbed prints the tail of every log and the last notes, so a
//!   failing test (a panic or an early `?` return) always shows what the processes said.
//!   `SKYLAN_E2E_LOGS=1` prints them for passing tests too.
//! - The daemons log at `SKYLAN_E2E_LOG` (a `SKYLAN_LOG` filter, default `info`).
//! - CLI runs have a timeout ([`CLI_TIMEOUT`]); a hung CLI is killed (by its own PID)
//!   and reported as an error, never left behind.
//!
//! Callers: the `tests/e2e_*.rs` files (each test binary uses part of this module).

// Each test binary uses a different part of the helpers.
#![allow(dead_code)]
// Tests drive real processes and measure how long things take (reported, not asserted).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod networks;
pub mod postgres;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::Value;
use skylan::cli::client::{RawResponse, raw_request};
use skylan::lab::{Lab, LabHost, NatKind, require_root};
use skylan::types::{Endpoint, NodeAddress};

/// How [`Testbed::restart_after`] ends a daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// SIGTERM: it shuts down cleanly (SIGKILL only after a grace period).
    Clean,
    /// SIGKILL at once, like `kill -9` or a power cut of the process.
    Crash,
}

/// The UDP port daemons use unless told otherwise (each host has its own namespace, so
/// they can all use the same one, as on real machines).
pub const PORT: u16 = 9993;
/// How long one CLI invocation may take (a ping with `-c 1` waits up to 5 s).
pub const CLI_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a started daemon may take to write its identity.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How many lines of each log a failure dump shows.
const LOG_TAIL_LINES: usize = 120;
/// Environment variable with the daemons' log filter.
pub const LOG_FILTER_ENV: &str = "SKYLAN_E2E_LOG";
/// Environment variable that makes passing tests print the logs too.
pub const ALWAYS_DUMP_ENV: &str = "SKYLAN_E2E_LOGS";

/// The `skylan` binary cargo built for these tests.
pub fn skylan_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_skylan"))
}

/// What a daemon is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `skylan root`.
    Root,
    /// `skylan node`.
    Node,
}

/// A daemon started by a [`Testbed`].
#[derive(Debug, Clone)]
pub struct Daemon {
    /// The name given at start; also its log file's and home directory's name.
    pub name: String,
    /// Root or node.
    pub role: Role,
    /// The lab host it runs on.
    pub host: LabHost,
    /// Its home directory.
    pub home: PathBuf,
    /// Its UDP port.
    pub port: u16,
    /// Its node address (from `identity.public`).
    pub address: NodeAddress,
    /// The process id (changes with [`Testbed::restart`]).
    pub pid: u32,
    /// Everything after the binary on its command line (kept for restarts).
    args: Vec<OsString>,
    /// Environment variables set for it (kept for restarts).
    env: Vec<(OsString, OsString)>,
    /// Its log file.
    pub log: PathBuf,
}

impl Daemon {
    /// The endpoint other hosts reach it at when nothing translates it (public hosts):
    /// the host's address and the daemon's port.
    pub fn public_endpoint(&self) -> Endpoint {
        Endpoint(SocketAddr::from((self.host.ip, self.port)))
    }
}

/// A root whose identity exists but which has not been started yet.
#[derive(Debug, Clone)]
pub struct RootSpec {
    /// Its name (log file and home directory).
    pub name: String,
    /// The lab host it will run on (must be public: roots need a stable endpoint).
    pub host: LabHost,
    /// Its home directory, holding the identity.
    pub home: PathBuf,
    /// Its UDP port.
    pub port: u16,
    /// Its node address.
    pub address: NodeAddress,
}

/// One `skylan ping -c 1 -j` answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Ping {
    /// Whether a reply came back.
    pub reply: bool,
    /// `DIRECT`, `RELAY` or `NONE` (when there was a reply).
    pub link: Option<String>,
    /// For DIRECT, the peer's endpoint `ip/port`; for RELAY, the root's address.
    pub path: Option<String>,
    /// Round trip in milliseconds.
    pub latency_ms: Option<f64>,
}

impl Ping {
    /// A reply that came over a direct path.
    pub fn is_direct(&self) -> bool {
        self.reply && self.link.as_deref() == Some("DIRECT")
    }

    /// A reply that came through a root.
    pub fn is_relay(&self) -> bool {
        self.reply && self.link.as_deref() == Some("RELAY")
    }
}

/// What one CLI run produced.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// Exit code (`None` when ended by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CliOutput {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Prometheus samples by name, labels included as written (`skylan_node_peers{link="direct"}`).
pub type Metrics = BTreeMap<String, f64>;

/// A lab plus the `skylan` daemons running in it; see the module docs.
pub struct Testbed {
    lab: Lab,
    dir: tempfile::TempDir,
    started: Instant,
    /// Every daemon ever started, for the log dump: (name, log file).
    logs: Mutex<Vec<(String, PathBuf)>>,
    /// Timestamped notes (what the test did and saw), dumped with the logs.
    notes: Mutex<Vec<String>>,
    /// Set by [`Testbed::finish`]: the test passed, no dump needed.
    finished: AtomicBool,
}

impl Testbed {
    /// A testbed for `test_name` with a lab tagged `tag` (1–12 of `[A-Za-z0-9_]`, unique
    /// per test). Returns `Ok(None)` after printing a loud skip line when not root.
    pub fn new(test_name: &str, tag: &str) -> Result<Option<Testbed>> {
        if !require_root(test_name) {
            return Ok(None);
        }
        let lab = Lab::new(tag).with_context(|| format!("building lab {tag}"))?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("skylan-{tag}-"))
            .tempdir()
            .context("creating a temporary directory")?;
        Ok(Some(Testbed {
            lab,
            dir,
            started: Instant::now(),
            logs: Mutex::new(Vec::new()),
            notes: Mutex::new(Vec::new()),
            finished: AtomicBool::new(false),
        }))
    }

    /// The lab (for cuts, loss, `try_wait` and hosts).
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// The temporary directory holding homes, planets and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Time since the testbed was made.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Records (and prints, for the captured test output) a timestamped note.
    pub fn note(&self, text: impl AsRef<str>) {
        let line = format!("[{:7.2}s] {}", self.elapsed().as_secs_f64(), text.as_ref());
        eprintln!("{line}");
        lock(&self.notes).push(line);
    }

    /// Prints a measurement so it shows in the test output even when the test passes
    /// (written to the process's stderr, which the test harness does not capture), and
    /// keeps it as a note.
    pub fn report(&self, text: impl AsRef<str>) {
        let _ = writeln!(std::io::stderr(), "{}", text.as_ref());
        lock(&self.notes).push(format!(
            "[{:7.2}s] {}",
            self.elapsed().as_secs_f64(),
            text.as_ref()
        ));
    }

    /// Marks the test as passed: dropping the testbed then prints no logs (unless
    /// `SKYLAN_E2E_LOGS=1`).
    pub fn finish(self) {
        self.finished.store(true, Ordering::SeqCst);
    }

    // ----- hosts ----------------------------------------------------------------------

    /// A host directly on the backbone with `ip` (in 198.51.100.0/24).
    pub fn public_host(&self, name: &str, ip: Ipv4Addr) -> Result<LabHost> {
        Ok(self.lab.add_public_host(name, ip)?)
    }

    /// A host at `private_ip` (192.0.2.0/24) behind its own NAT of `kind` with
    /// `public_ip` (198.51.100.0/24).
    pub fn nat_host(
        &self,
        name: &str,
        kind: NatKind,
        public_ip: Ipv4Addr,
        private_ip: Ipv4Addr,
    ) -> Result<LabHost> {
        Ok(self.lab.add_nat_host(name, kind, public_ip, private_ip)?)
    }

    // ----- roots and planet -----------------------------------------------------------

    /// Makes a root's home directory with a fresh identity (`skylan idtool generate`),
    /// so the planet can name it before it starts.
    pub fn prepare_root(&self, name: &str, host: &LabHost, port: u16) -> Result<RootSpec> {
        ensure!(
            host.nat.is_none(),
            "root {name} must be on a public host, not behind NAT"
        );
        let home = self.home(name)?;
        let out = run_with_timeout(
            Command::new(skylan_bin())
                .args(["idtool", "generate"])
                .arg(home.join("identity.secret"))
                .arg(home.join("identity.public")),
            CLI_TIMEOUT,
        )?;
        ensure!(
            out.success(),
            "idtool generate for {name} failed: {}",
            out.stderr
        );
        let address = read_address(&home)?;
        Ok(RootSpec {
            name: name.to_string(),
            host: host.clone(),
            home,
            port,
            address,
        })
    }

    /// Writes a signed planet naming `roots` at their hosts' addresses
    /// (`skylan idtool mkplanet`) and returns its path.
    pub fn make_planet(&self, roots: &[&RootSpec]) -> Result<PathBuf> {
        let at: Vec<(&RootSpec, Vec<String>)> = roots
            .iter()
            .map(|r| (*r, vec![format!("{}/{}", r.host.ip, r.port)]))
            .collect();
        self.make_planet_at(&at)
    }

    /// Writes a signed planet naming each root at the given endpoints (`IP/PORT`, of
    /// either family) and returns its path.
    pub fn make_planet_at(&self, roots: &[(&RootSpec, Vec<String>)]) -> Result<PathBuf> {
        let out_path = self.dir().join("planet");
        let mut cmd = Command::new(skylan_bin());
        cmd.args(["idtool", "mkplanet"]);
        for (r, endpoints) in roots {
            let spec = format!(
                "{}@{}",
                r.home.join("identity.public").display(),
                endpoints.join(",")
            );
            cmd.arg("--root").arg(spec);
        }
        cmd.arg("--out").arg(&out_path);
        let out = run_with_timeout(&mut cmd, CLI_TIMEOUT)?;
        ensure!(out.success(), "idtool mkplanet failed: {}", out.stderr);
        Ok(out_path)
    }

    /// Starts a prepared root with `--planet` (so it answers WHOIS for its fellows).
    pub fn start_root(&self, spec: &RootSpec, planet: &Path) -> Result<Daemon> {
        let mut args: Vec<OsString> = vec!["--home".into(), spec.home.clone().into_os_string()];
        args.extend(["root".into(), "--port".into(), spec.port.to_string().into()]);
        args.extend(["--planet".into(), planet.as_os_str().to_owned()]);
        let pid = self.spawn(&spec.name, &spec.host, &args, &[])?;
        self.note(format!(
            "started root {} ({}) at {}/{} pid {pid}",
            spec.name, spec.address, spec.host.ip, spec.port
        ));
        Ok(Daemon {
            name: spec.name.clone(),
            role: Role::Root,
            host: spec.host.clone(),
            home: spec.home.clone(),
            port: spec.port,
            address: spec.address,
            pid,
            args,
            env: Vec::new(),
            log: self.log_path(&spec.name),
        })
    }

    /// Prepares and starts one root per `(name, host)` on [`PORT`], all in one planet;
    /// returns the roots and the planet's path.
    pub fn start_planet(&self, roots: &[(&str, &LabHost)]) -> Result<(Vec<Daemon>, PathBuf)> {
        let specs = roots
            .iter()
            .map(|(name, host)| self.prepare_root(name, host, PORT))
            .collect::<Result<Vec<_>>>()?;
        let planet = self.make_planet(&specs.iter().collect::<Vec<_>>())?;
        let daemons = specs
            .iter()
            .map(|s| self.start_root(s, &planet))
            .collect::<Result<Vec<_>>>()?;
        Ok((daemons, planet))
    }

    // ----- nodes ----------------------------------------------------------------------

    /// Starts `skylan node` on `host` (port [`PORT`]) with a fresh home directory and the
    /// given planet, plus `extra` arguments (e.g. `--controller`), and waits until it has
    /// written its identity (not until it is online: see [`Testbed::wait_online`]).
    pub fn start_node(
        &self,
        name: &str,
        host: &LabHost,
        planet: &Path,
        extra: &[&str],
    ) -> Result<Daemon> {
        self.start_node_with_env(name, host, planet, extra, Vec::new())
    }

    /// [`start_node`](Self::start_node) with environment variables set for the daemon.
    pub fn start_node_with_env(
        &self,
        name: &str,
        host: &LabHost,
        planet: &Path,
        extra: &[&str],
        env: Vec<(OsString, OsString)>,
    ) -> Result<Daemon> {
        let home = self.home(name)?;
        let mut args: Vec<OsString> = vec!["--home".into(), home.clone().into_os_string()];
        args.extend(["node".into(), "--port".into(), PORT.to_string().into()]);
        args.extend(["--planet".into(), planet.as_os_str().to_owned()]);
        args.extend(extra.iter().map(OsString::from));
        let pid = self.spawn(name, host, &args, &env)?;
        let address = self.wait_for_identity(name, pid, &home)?;
        self.note(format!(
            "started node {name} ({address}) on {} pid {pid}",
            host_desc(host)
        ));
        Ok(Daemon {
            name: name.to_string(),
            role: Role::Node,
            host: host.clone(),
            home,
            port: PORT,
            address,
            pid,
            args,
            env,
            log: self.log_path(name),
        })
    }

    /// Ends the daemon (SIGTERM, then SIGKILL after a grace period) by its PID.
    pub fn stop(&self, daemon: &Daemon) -> Result<()> {
        let status = self
            .lab
            .kill(daemon.pid)
            .with_context(|| format!("stopping {}", daemon.name))?;
        self.note(format!(
            "stopped {} (pid {}): {status}",
            daemon.name, daemon.pid
        ));
        Ok(())
    }

    /// Stops the daemon and starts it again with the same home and arguments; updates
    /// `daemon.pid`. The address is re-read from `identity.public` and must not change.
    pub fn restart(&self, daemon: &mut Daemon) -> Result<()> {
        self.restart_after(daemon, Ending::Clean)
    }

    /// [`Testbed::restart`], ending the daemon as `ending` says.
    pub fn restart_after(&self, daemon: &mut Daemon, ending: Ending) -> Result<()> {
        match ending {
            Ending::Clean => self.stop(daemon)?,
            Ending::Crash => {
                let status = self
                    .lab
                    .crash(daemon.pid)
                    .with_context(|| format!("killing {}", daemon.name))?;
                self.note(format!(
                    "killed {} (pid {}): {status}",
                    daemon.name, daemon.pid
                ));
            }
        }
        self.start_again(daemon)
    }

    /// Starts a stopped daemon again with the same home and arguments; updates
    /// `daemon.pid`. The address is re-read from `identity.public` and must not change.
    pub fn start_again(&self, daemon: &mut Daemon) -> Result<()> {
        let pid = self.spawn(&daemon.name, &daemon.host, &daemon.args, &daemon.env)?;
        let address = self.wait_for_identity(&daemon.name, pid, &daemon.home)?;
        ensure!(
            address == daemon.address,
            "{} came back as {address}, was {}",
            daemon.name,
            daemon.address
        );
        daemon.pid = pid;
        self.note(format!("started {} again, pid {pid}", daemon.name));
        Ok(())
    }

    /// Starts the daemon again (same home and arguments; it must not be running) for a
    /// state it has to refuse, and waits up to `timeout` for it to exit by itself with a
    /// failure status. Returns what it logged in this run. A daemon that keeps running
    /// (or exits 0) is an error; a running one is stopped first.
    pub fn start_expecting_refusal(
        &self,
        daemon: &mut Daemon,
        timeout: Duration,
    ) -> Result<String> {
        let from = std::fs::metadata(&daemon.log).map_or(0, |m| m.len());
        let pid = self.spawn(&daemon.name, &daemon.host, &daemon.args, &daemon.env)?;
        daemon.pid = pid;
        let exited = wait_until(
            &format!("{} to refuse to start", daemon.name),
            timeout,
            || {
                self.lab
                    .try_wait(pid)?
                    .ok_or_else(|| anyhow!("{} (pid {pid}) is still running", daemon.name))
            },
        );
        let log = read_from(&daemon.log, from);
        let status = match exited {
            Ok((status, _)) => status,
            Err(e) => {
                let _ = self.lab.kill(pid);
                bail!("{e:#}\nit logged:\n{log}");
            }
        };
        ensure!(
            !status.success(),
            "{} exited successfully instead of refusing; it logged:\n{log}",
            daemon.name
        );
        self.note(format!("{} refused to start ({status})", daemon.name));
        Ok(log)
    }

    /// Fails (with the log tail) if the daemon's process has exited.
    pub fn check_running(&self, daemon: &Daemon) -> Result<()> {
        match self.lab.try_wait(daemon.pid)? {
            None => Ok(()),
            Some(status) => bail!(
                "{} (pid {}) exited: {status}\n{}",
                daemon.name,
                daemon.pid,
                tail(&daemon.log, 30)
            ),
        }
    }

    // ----- CLI ------------------------------------------------------------------------

    /// Runs `skylan --home <home> <args>` inside the daemon's namespace.
    pub fn cli(&self, daemon: &Daemon, args: &[&str]) -> Result<CliOutput> {
        let mut cmd = daemon.host.command(skylan_bin());
        cmd.arg("--home").arg(&daemon.home).args(args);
        run_with_timeout(&mut cmd, CLI_TIMEOUT)
            .with_context(|| format!("skylan {} on {}", args.join(" "), daemon.name))
    }

    /// Runs any program (`ping`, `ip`, `iperf3`, ...) inside `host`'s namespace with
    /// captured output and the CLI timeout.
    pub fn exec(&self, host: &LabHost, program: &str, args: &[&str]) -> Result<CliOutput> {
        let mut cmd = host.command(program);
        cmd.args(args);
        run_with_timeout(&mut cmd, CLI_TIMEOUT)
            .with_context(|| format!("{program} {} on {}", args.join(" "), host.name))
    }

    /// Runs the CLI with `-j`, requires exit 0, and parses its JSON.
    pub fn cli_json(&self, daemon: &Daemon, args: &[&str]) -> Result<Value> {
        let mut all = args.to_vec();
        all.push("-j");
        let out = self.cli(daemon, &all)?;
        ensure!(
            out.success(),
            "`skylan {}` on {} exited {:?}: {}{}",
            all.join(" "),
            daemon.name,
            out.code,
            out.stderr.trim(),
            out.stdout.trim()
        );
        serde_json::from_str(&out.stdout).with_context(|| {
            format!(
                "`skylan {}` on {} printed no JSON: {:?}",
                all.join(" "),
                daemon.name,
                out.stdout
            )
        })
    }

    /// `info -j`.
    pub fn info(&self, daemon: &Daemon) -> Result<Value> {
        self.cli_json(daemon, &["info"])
    }

    /// `peers -j` as a list.
    pub fn peers(&self, daemon: &Daemon) -> Result<Vec<Value>> {
        match self.cli_json(daemon, &["peers"])? {
            Value::Array(list) => Ok(list),
            other => bail!("peers -j on {} is not a list: {other}", daemon.name),
        }
    }

    /// The entry of `peers -j` for `address`, if listed.
    pub fn peer(&self, daemon: &Daemon, address: NodeAddress) -> Result<Option<Value>> {
        let address = address.to_string();
        Ok(self
            .peers(daemon)?
            .into_iter()
            .find(|p| p["address"].as_str() == Some(address.as_str())))
    }

    /// One `ping -c 1 -j` from `from` to `to`. A lost ping is `Ok` with `reply: false`;
    /// a refused one (non-zero exit) is an error.
    pub fn ping(&self, from: &Daemon, to: NodeAddress) -> Result<Ping> {
        let v = self.cli_json(from, &["ping", &to.to_string(), "-c", "1"])?;
        let r = v
            .as_array()
            .and_then(|a| a.first())
            .ok_or_else(|| anyhow!("ping -j printed no reply object: {v}"))?;
        let text = |k: &str| r[k].as_str().map(str::to_string);
        Ok(Ping {
            reply: r["reply"].as_bool() == Some(true),
            link: text("link"),
            path: text("path"),
            latency_ms: r["latency"].as_f64(),
        })
    }

    // ----- local API ------------------------------------------------------------------

    /// One request to the daemon's local API from inside its namespace (127.0.0.1 at the
    /// port in `skylan.port`), with the token from its home.
    pub fn http(&self, daemon: &Daemon, method: &str, path: &str) -> Result<RawResponse> {
        self.http_with_body(daemon, method, path, b"")
    }

    /// [`Testbed::http`] with a request body.
    pub fn http_with_body(
        &self,
        daemon: &Daemon,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<RawResponse> {
        let body = body.to_vec();
        let token = std::fs::read_to_string(daemon.home.join("authtoken.secret"))
            .with_context(|| format!("reading {}'s API token", daemon.name))?;
        let port: u16 = std::fs::read_to_string(daemon.home.join("skylan.port"))
            .with_context(|| format!("reading {}'s API port", daemon.name))?
            .trim()
            .parse()
            .context("skylan.port is not a port number")?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let token = token.trim().to_string();
        let resp = daemon.host.run(move || {
            raw_request(addr, method, path, &[("X-ZT1-Auth", token.as_str())], &body)
        })??;
        Ok(resp)
    }

    /// The entry of `networks -j` on `daemon` for `nwid`.
    pub fn network(&self, daemon: &Daemon, nwid: &str) -> Result<Value> {
        let list = self.cli_json(daemon, &["networks"])?;
        list.as_array()
            .into_iter()
            .flatten()
            .find(|n| n["nwid"] == nwid)
            .cloned()
            .with_context(|| format!("{} does not list {nwid}: {list}", daemon.name))
    }

    /// Waits until `networks -j` on `daemon` shows `nwid` with `status` (`OK`,
    /// `ACCESS_DENIED`, ...); returns the entry.
    pub fn wait_network_status(
        &self,
        daemon: &Daemon,
        nwid: &str,
        status: &str,
        timeout: Duration,
    ) -> Result<Value> {
        let what = format!("{} {status} on {nwid}", daemon.name);
        let (n, _) = wait_until(&what, timeout, || {
            let n = self.network(daemon, nwid)?;
            ensure!(n["status"] == status, "status {}", n["status"]);
            Ok(n)
        })?;
        Ok(n)
    }

    /// `GET /metrics`, parsed.
    pub fn metrics(&self, daemon: &Daemon) -> Result<Metrics> {
        let resp = self.http(daemon, "GET", "/metrics")?;
        ensure!(
            resp.status == 200,
            "GET /metrics on {} answered {}",
            daemon.name,
            resp.status
        );
        let text = String::from_utf8(resp.body).context("/metrics is not UTF-8")?;
        parse_metrics(&text)
    }

    // ----- waiting --------------------------------------------------------------------

    /// Waits until `info -j` says online; returns how long that took. Fails early if
    /// the process exits.
    pub fn wait_online(&self, daemon: &Daemon, timeout: Duration) -> Result<Duration> {
        let ((), took) = wait_until(&format!("{} ONLINE", daemon.name), timeout, || {
            self.check_running(daemon)?;
            let info = self.info(daemon)?;
            ensure!(info["online"] == Value::Bool(true), "info says {info}");
            Ok(())
        })?;
        self.note(format!("{} ONLINE after {took:.1?}", daemon.name));
        Ok(took)
    }

    /// Pings `to` from `from` until a reply satisfies `accept`; returns it and how long
    /// the wait took.
    pub fn wait_ping(
        &self,
        from: &Daemon,
        to: &Daemon,
        what: &str,
        timeout: Duration,
        accept: impl Fn(&Ping) -> bool,
    ) -> Result<(Ping, Duration)> {
        let what = format!("{} -> {}: {what}", from.name, to.name);
        let (ping, took) = wait_until(&what, timeout, || {
            self.check_running(from)?;
            let p = self.ping(from, to.address)?;
            ensure!(accept(&p), "ping gave {p:?}");
            Ok(p)
        })?;
        self.note(format!("{what} after {took:.1?}: {ping:?}"));
        Ok((ping, took))
    }

    /// Measures how soon pings get through again: starts a ping from `from` to `to`
    /// every `every` (each on its own thread, so a lost ping does not hold up the next),
    /// until a reply satisfies `accept` or `timeout` passes. Returns the earliest-sent
    /// accepted reply and when its ping was sent, counted from the call; the resolution
    /// is `every`. Pings still in flight are waited for before returning.
    pub fn ping_recovery(
        &self,
        from: &Daemon,
        to: &Daemon,
        every: Duration,
        timeout: Duration,
        accept: impl Fn(&Ping) -> bool + Sync,
    ) -> Result<(Ping, Duration)> {
        let start = Instant::now();
        let (tx, rx) = std::sync::mpsc::channel::<(Duration, Result<Ping>)>();
        let mut seen = Vec::new();
        let best = std::thread::scope(|scope| {
            let mut best: Option<(Ping, Duration)> = None;
            let mut in_flight = 0usize;
            let mut next = Duration::ZERO;
            loop {
                let elapsed = start.elapsed();
                if best.is_none() && elapsed < timeout && elapsed >= next {
                    let tx = tx.clone();
                    let sent = elapsed;
                    scope.spawn(move || {
                        let _ = tx.send((sent, self.ping(from, to.address)));
                    });
                    in_flight += 1;
                    next += every;
                }
                if in_flight == 0 && (best.is_some() || elapsed >= timeout) {
                    return best;
                }
                let Ok((sent, result)) = rx.recv_timeout(Duration::from_millis(50)) else {
                    continue;
                };
                in_flight -= 1;
                match result {
                    Ok(p) if accept(&p) => {
                        if best.as_ref().is_none_or(|(_, t)| sent < *t) {
                            best = Some((p, sent));
                        }
                    }
                    Ok(p) => seen.push(format!("sent at {sent:.1?}: {p:?}")),
                    Err(e) => seen.push(format!("sent at {sent:.1?}: {e:#}")),
                }
            }
        });
        let what = format!("{} -> {} recovery", from.name, to.name);
        match best {
            Some((p, t)) => {
                self.note(format!(
                    "{what}: first good ping sent {t:.1?} after the start: {p:?}"
                ));
                Ok((p, t))
            }
            None => bail!(
                "no acceptable ping reply from {} within {timeout:?}; the last answers:\n{}",
                to.name,
                seen[seen.len().saturating_sub(8)..].join("\n")
            ),
        }
    }

    // ----- internals ------------------------------------------------------------------

    fn home(&self, name: &str) -> Result<PathBuf> {
        let home = self.dir().join(name);
        std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
        Ok(home)
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir().join(format!("{name}.log"))
    }

    /// Starts `skylan <args>` in `host` with its output appended to `<name>.log`.
    fn spawn(
        &self,
        name: &str,
        host: &LabHost,
        args: &[OsString],
        env: &[(OsString, OsString)],
    ) -> Result<u32> {
        let log_path = self.log_path(name);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        writeln!(
            log,
            "===== [{:.2}s] starting {name} on {} =====",
            self.elapsed().as_secs_f64(),
            host_desc(host)
        )?;
        let mut cmd = host.command(skylan_bin());
        cmd.args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env(
                "SKYLAN_LOG",
                std::env::var(LOG_FILTER_ENV).unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let pid = self
            .lab
            .spawn(host, cmd)
            .with_context(|| format!("starting {name}"))?;
        let mut logs = lock(&self.logs);
        if !logs.iter().any(|(n, _)| n == name) {
            logs.push((name.to_string(), log_path));
        }
        Ok(pid)
    }

    fn wait_for_identity(&self, name: &str, pid: u32, home: &Path) -> Result<NodeAddress> {
        let (address, _) = wait_until(&format!("{name} identity"), START_TIMEOUT, || {
            if let Some(status) = self.lab.try_wait(pid)? {
                bail!(
                    "{name} exited at start: {status}\n{}",
                    tail(&self.log_path(name), 30)
                );
            }
            read_address(home)
        })?;
        Ok(address)
    }

    fn dump(&self) {
        eprintln!("===== notes =====");
        for line in lock(&self.notes).iter() {
            eprintln!("{line}");
        }
        for (name, path) in lock(&self.logs).iter() {
            eprintln!("===== log of {name} ({}) =====", path.display());
            eprintln!("{}", tail(path, LOG_TAIL_LINES));
        }
        eprintln!("===== end of logs =====");
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let failed = !self.finished.load(Ordering::SeqCst);
        if failed || std::env::var_os(ALWAYS_DUMP_ENV).is_some_and(|v| v == "1") {
            if failed {
                eprintln!(
                    "===== test failed (lab {}): dumping what the processes said =====",
                    self.lab.id()
                );
            }
            self.dump();
        }
        // `lab` drops after this: it ends the daemons and deletes the namespaces.
    }
}

/// Runs `check` until it returns `Ok`, pausing 300 ms between tries, for at most
/// `timeout`. An `Err` from `check` means "not yet"; the last one is reported if time
/// runs out. Returns the value and how long it took.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T>,
) -> Result<(T, Duration)> {
    let start = Instant::now();
    let mut tries = 0u32;
    loop {
        tries += 1;
        match check() {
            Ok(v) => return Ok((v, start.elapsed())),
            Err(e) if start.elapsed() >= timeout => {
                return Err(e.context(format!(
                    "timed out after {:.1?} ({tries} tries) waiting for {what}; last reason",
                    start.elapsed()
                )));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

/// A UDP socket bound to `port` on `host`'s own address, inside its namespace (usable
/// from any thread afterwards).
pub fn udp_socket(host: &LabHost, port: u16) -> Result<UdpSocket> {
    let addr = SocketAddrV4::new(host.local_ip(), port);
    let sock = host
        .run(move || UdpSocket::bind(addr))?
        .with_context(|| format!("binding {addr} in {}", host.netns))?;
    Ok(sock)
}

/// Parses Prometheus text: `name{labels} value` per line, comments skipped.
pub fn parse_metrics(text: &str) -> Result<Metrics> {
    let mut out = Metrics::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| anyhow!("metrics line without a value: {line:?}"))?;
        let value: f64 = value
            .parse()
            .with_context(|| format!("metrics line with a bad value: {line:?}"))?;
        out.insert(name.trim().to_string(), value);
    }
    Ok(out)
}

/// Runs `cmd` with captured output; kills it (by its own handle) after `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<CliOutput> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    };
    let out = reader(child.stdout.take().map(|p| Box::new(p) as _));
    let err = reader(child.stderr.take().map(|p| Box::new(p) as _));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{cmd:?} did not finish within {timeout:?}; killed it");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(CliOutput {
        code: status.code(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// The address in `<home>/identity.public` (`<address>:...`).
fn read_address(home: &Path) -> Result<NodeAddress> {
    let path = home.join("identity.public");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let first = text.split(':').next().unwrap_or_default().trim();
    first
        .parse()
        .map_err(|e| anyhow!("{}: bad address {first:?}: {e}", path.display()))
}

/// A file's text from byte `offset` on (or why it could not be read).
fn read_from(path: &Path, offset: u64) -> String {
    use std::io::{Seek, SeekFrom};
    let mut text = String::new();
    let read = File::open(path).and_then(|mut f| {
        f.seek(SeekFrom::Start(offset))?;
        f.read_to_string(&mut text)
    });
    match read {
        Ok(_) => text,
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// The last `lines` lines of a file (or why it could not be read).
fn tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Err(e) = File::open(path).and_then(|mut f| f.read_to_string(&mut text)) {
        return format!("(cannot read {}: {e})", path.display());
    }
    let all: Vec<&str> = text.lines().collect();
    let skip = all.len().saturating_sub(lines);
    let mut out = String::new();
    if skip > 0 {
        out.push_str(&format!("... ({skip} earlier lines)\n"));
    }
    out.push_str(&all[skip..].join("\n"));
    out
}

fn host_desc(host: &LabHost) -> String {
    match (host.nat, host.private_ip) {
        (Some(kind), Some(private)) => {
            format!("{} ({private} behind {kind} NAT {})", host.name, host.ip)
        }
        _ => format!("{} ({})", host.name, host.ip),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Notes and log lists stay usable after a panic elsewhere (each update is one push).
    m.lock().unwrap_or_else(|p| p.into_inner())
}
