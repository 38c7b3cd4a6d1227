//! `skylan demo` end to end: the real binary runs the whole script and exits 0 with the
//! key lines of every step, and nothing of its lab survives (namespaces, work directory,
//! processes); SIGINT in the middle of the script tears the lab down too; and a step that
//! fails (a daemon that will not start) fails the demo with the step named, after tearing
//! down. Needs root; skips loudly otherwise. The demos run one at a time (they are
//! CPU-hungry and their timing-based checks should not fight each other).
//!
//! The clock is read only for timeouts on the child process, never asserted.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use skylan::lab::demo::{DemoError, DemoOptions, LAB_TAG, run};
use skylan::lab::{LAB_PREFIX, list_namespaces, require_root};

const SKYLAN: &str = env!("CARGO_BIN_EXE_skylan");
/// Far more than the demo needs (about 10 s); only a hang gets near it.
const DEMO_TIMEOUT: Duration = Duration::from_secs(180);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The prefix of every namespace and work directory of the demo run by process `pid`.
fn lab_prefix(pid: u32) -> String {
    format!("{LAB_PREFIX}{LAB_TAG}-{pid}-")
}

/// Fails if anything of the labs of process `pid` is left: a namespace, a work directory
/// in the temporary directory, or a process whose command line names one of them.
fn assert_nothing_left(pid: u32) -> Result<()> {
    let prefix = lab_prefix(pid);
    let namespaces: Vec<String> = list_namespaces()?
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    if !namespaces.is_empty() {
        bail!("namespaces left behind: {namespaces:?}");
    }
    for entry in std::fs::read_dir(std::env::temp_dir())?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) {
            bail!("work directory left behind: {}", entry.path().display());
        }
    }
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&prefix) {
            bail!("process left behind: {cmdline}");
        }
    }
    Ok(())
}

/// Waits up to `timeout` for `child`; kills it and fails when it takes longer.
fn wait(child: &mut Child, timeout: Duration) -> Result<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("skylan demo did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Reads a pipe to the end on a thread.
fn collect(pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(pipe).read_to_string(&mut text);
        text
    })
}

#[test]
fn the_demo_runs_every_step_and_leaves_nothing_behind() -> Result<()> {
    if !require_root("demo::the_demo_runs_every_step_and_leaves_nothing_behind") {
        return Ok(());
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut child = Command::new(SKYLAN)
        .arg("demo")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting skylan demo")?;
    let pid = child.id();
    let out = collect(child.stdout.take().context("stdout")?);
    let err = collect(child.stderr.take().context("stderr")?);
    let status = wait(&mut child, DEMO_TIMEOUT)?;
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    println!("{out}");
    eprintln!("{err}");
    assert!(status.success(), "skylan demo failed ({status}):\n{err}");
    for wanted in [
        "[1/11] Building the lab",
        "200 info ",
        " ONLINE",
        "created network ",
        "pools:       198.18.0.10-198.18.0.250",
        "routes:      198.18.0.0/24",
        "200 join OK",
        " ACCESS_DENIED ",
        "authorized member ",
        " OK PRIVATE sky",
        "3 members, 3 authorized",
        "bytes from 198.18.0.",
        "3 packets transmitted, 3 received",
        "200 peers",
        "drop ipprotocol 1 and ipdest 198.18.0.",
        "skylan_rule_hits_total{",
        "(rules back to `accept;`: carol answers again)",
        "deauthorized member ",
        "alice and bob are unaffected",
        "[11/11] Tearing down",
        "namespaces deleted",
        "join → first ping:",
        "revocation latency:          ≤ ",
    ] {
        assert!(
            out.contains(wanted),
            "missing {wanted:?} in the demo's output"
        );
    }
    // The path summary: alice reaches both NAT'd nodes directly, bob and carol only
    // through the root (no hole can be punched between a port-restricted cone and a
    // symmetric NAT).
    let path_line = |from: &str, to: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(from) && l.contains(&format!("↔ {to}")))
            .map(str::to_string)
            .unwrap_or_default()
    };
    assert!(path_line("alice", "bob").contains("DIRECT"), "{out}");
    assert!(path_line("alice", "carol").contains("DIRECT"), "{out}");
    assert!(path_line("bob", "carol").contains("RELAY"), "{out}");
    assert!(
        !out.contains("(expected "),
        "a path was not as expected:\n{out}"
    );
    assert_nothing_left(pid)
}

#[test]
fn sigint_in_the_middle_tears_the_lab_down() -> Result<()> {
    if !require_root("demo::sigint_in_the_middle_tears_the_lab_down") {
        return Ok(());
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut child = Command::new(SKYLAN)
        .arg("demo")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting skylan demo")?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().context("stdout")?;
    let reader = thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let err = collect(child.stderr.take().context("stderr")?);
    // Interrupt once the daemons run and the network exists: the lab is at its fullest.
    let deadline = Instant::now() + DEMO_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with("[5/11]") => break,
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the demo never reached step 5:\n{}",
                    err.join().unwrap_or_default()
                );
            }
        }
    }
    let namespaces_before = list_namespaces()?
        .into_iter()
        .filter(|n| n.starts_with(&lab_prefix(pid)))
        .count();
    assert!(
        namespaces_before >= 8,
        "the lab should be up, it has {namespaces_before} namespaces"
    );
    // SAFETY: a plain signal to our own child, not yet reaped.
    unsafe { libc::kill(i32::try_from(pid)?, libc::SIGINT) };
    let status = wait(&mut child, Duration::from_secs(60))?;
    let (out, err) = (
        reader.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    println!("{out}");
    eprintln!("{err}");
    assert!(!status.success(), "an interrupted demo must not exit 0");
    assert!(
        err.contains("interrupted"),
        "stderr should say why it stopped:\n{err}"
    );
    assert!(
        out.contains("Tearing down"),
        "the teardown should be narrated:\n{out}"
    );
    assert_nothing_left(pid)
}

#[test]
fn a_daemon_that_will_not_start_fails_its_step_and_the_lab_is_removed() -> Result<()> {
    if !require_root("demo::a_daemon_that_will_not_start_fails_its_step_and_the_lab_is_removed") {
        return Ok(());
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // A stand-in for the binary: everything works except `skylan node`.
    let dir = tempfile::tempdir()?;
    let fake = dir.path().join("skylan");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nif [ \"$1\" = node ]; then echo 'node: refusing to start (test)' >&2; exit 3; fi\nexec {SKYLAN} \"$@\"\n"
        ),
    )?;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755))?;
    let result = run(&DemoOptions {
        skylan: Some(fake),
        keep: false,
    });
    match result {
        Err(DemoError::Step { step, problem, .. }) => {
            assert_eq!(step, 3, "starting the daemons is step 3: {problem}");
            assert!(problem.contains("exited"), "{problem}");
        }
        Err(other) => bail!("expected step 3 to fail, got: {other}"),
        Ok(summary) => bail!("the demo cannot succeed without nodes:\n{summary}"),
    }
    assert_nothing_left(std::process::id())
}
