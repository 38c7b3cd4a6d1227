//! The demo's plumbing: the signal handler that turns SIGINT/SIGTERM/SIGHUP into a
//! flag, commands run with captured output, a timeout and that flag, the work directory,
//! and the sweep of what killed demos left behind.
//!
//! Invariants: the signal handler only touches an atomic, `write(2)` and `_exit(2)`
//! (async-signal-safe); a command this module started is always reaped before
//! [`run_command_with`] returns (killed first on timeout or interrupt). Caller: the
//! script in [`super`].

use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{DemoError, LAB_TAG, Narrator, fmt_duration};
use crate::lab::{self, Lab};

// Signals.

/// Signals received since the handler was installed.
static SIGNALS: AtomicUsize = AtomicUsize::new(0);

/// Whether SIGINT, SIGTERM or SIGHUP arrived.
pub(super) fn interrupted() -> bool {
    SIGNALS.load(Ordering::SeqCst) > 0
}

/// Forgets the signals so far (after `--keep`, where Ctrl-C is the expected end).
pub(super) fn clear_interrupt() {
    SIGNALS.store(0, Ordering::SeqCst);
}

extern "C" fn on_signal(_signal: libc::c_int) {
    // Only async-signal-safe work here: an atomic, write(2) and _exit(2).
    let n = SIGNALS.fetch_add(1, Ordering::SeqCst);
    if n == 0 {
        let msg =
            b"\nskylan demo: interrupted; tearing the lab down (interrupt again to quit at once)\n";
        // SAFETY: write(2) on stderr with a valid buffer.
        unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
    } else {
        let msg =
            b"\nskylan demo: quitting without teardown; the next `skylan demo` removes the lab\n";
        // SAFETY: write(2) and _exit(2) are async-signal-safe.
        unsafe {
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::_exit(130);
        }
    }
}

/// Installs [`on_signal`] for SIGINT, SIGTERM and SIGHUP; restores the previous handlers
/// on drop.
pub(super) struct SignalGuard {
    previous: Vec<(libc::c_int, libc::sigaction)>,
}

impl SignalGuard {
    const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

    pub(super) fn install() -> std::io::Result<Self> {
        SIGNALS.store(0, Ordering::SeqCst);
        let mut guard = SignalGuard {
            previous: Vec::new(),
        };
        for signal in Self::SIGNALS {
            // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the
            // handler is an `extern "C" fn(c_int)` as sa_sigaction expects without
            // SA_SIGINFO, and `old` is a valid place to store the previous action.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal, &action, &mut old) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                guard.previous.push((signal, old));
            }
        }
        Ok(guard)
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        for (signal, old) in &self.previous {
            // SAFETY: restoring an action that sigaction itself returned.
            unsafe { libc::sigaction(*signal, old, std::ptr::null_mut()) };
        }
    }
}

// Commands, files, leftovers.

/// What a finished command printed.
pub(super) struct CmdOutput {
    pub(super) status: ExitStatus,
    pub(super) stdout: String,
    pub(super) stderr: String,
}

/// Runs `cmd` to completion with its output captured, killing it after `timeout` or
/// when the demo is interrupted.
pub(super) fn run_command(cmd: &mut Command, timeout: Duration) -> Result<CmdOutput, String> {
    run_command_with(cmd, timeout, true)
}

/// [`run_command`]; `interruptible: false` (the teardown) keeps going after a signal.
pub(super) fn run_command_with(
    cmd: &mut Command,
    timeout: Duration,
    interruptible: bool,
) -> Result<CmdOutput, String> {
    let what = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start `{what}`: {e}"))?;
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(e) => break Err(format!("waiting for `{what}`: {e}")),
        }
        if interruptible && interrupted() {
            break Err("interrupted".to_string());
        }
        if Instant::now() >= deadline {
            break Err(format!(
                "`{what}` did not finish within {}",
                fmt_duration(timeout)
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if status.is_err() {
        // Killing closes the pipes, so the readers finish.
        let _ = child.kill();
        let _ = child.wait();
    }
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    status.map(|status| CmdOutput {
        status,
        stdout,
        stderr,
    })
}

/// The command line as text, for messages.
fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The programs the demo and its lab run, with the Debian package of each.
pub(super) const TOOLS: [(&str, &str); 3] = [
    ("ip", "iproute2"),
    ("nft", "nftables"),
    ("ping", "iputils-ping"),
];

/// True when `tool` can be started.
fn runs(tool: &str) -> bool {
    !matches!(
        Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound
    )
}

/// The packages to install so that every tool of `tools` runs, given which run now.
pub(super) fn missing_packages<'a>(
    tools: &[(&str, &'a str)],
    runs: impl Fn(&str) -> bool,
) -> Vec<&'a str> {
    tools
        .iter()
        .filter(|(tool, _)| !runs(tool))
        .map(|(_, package)| *package)
        .collect()
}

/// Makes sure every program of [`TOOLS`] runs: installs the missing ones' packages with
/// `apt-get` (saying so first), and fails with [`DemoError::MissingTool`] naming what
/// to install where that is not possible.
pub(super) fn ensure_tools() -> Result<(), DemoError> {
    let missing = missing_packages(&TOOLS, runs);
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !runs("apt-get") {
        return Err(DemoError::MissingTool { packages: list });
    }
    println!("The demo needs {list}; installing with apt-get.");
    // apt-get's output is shown only when it fails.
    let apt = |args: &[&str]| match Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
    {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr).trim_end());
            false
        }
        Err(_) => false,
    };
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend(&missing);
    // A fresh machine may have no package lists yet: fetch them and try once more.
    let installed = apt(&install) || (apt(&["update", "-q"]) && apt(&install));
    if installed && missing_packages(&TOOLS, runs).is_empty() {
        Ok(())
    } else {
        Err(DemoError::MissingTool { packages: list })
    }
}

/// The demo's work directory (homes, planet, logs), removed on drop.
pub(super) struct WorkDir(pub(super) PathBuf);

impl WorkDir {
    pub(super) fn create(path: PathBuf) -> Result<WorkDir, DemoError> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|source| DemoError::Io {
                what: format!("creating the work directory {}", path.display()),
                source,
            })?;
        Ok(WorkDir(path))
    }

    /// `text` with the work directory written as `$DIR`.
    pub(super) fn shorten(&self, text: &str) -> String {
        text.replace(&*self.0.to_string_lossy(), "$DIR")
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0) {
            eprintln!("skylan demo: could not remove {}: {e}", self.0.display());
        }
    }
}

/// Removes namespaces and work directories of earlier demos whose process died without
/// tearing down (SIGKILL, a second Ctrl-C).
pub(super) fn sweep_stale(say: &Narrator) -> Result<(), DemoError> {
    let namespaces = Lab::sweep_stale(LAB_TAG)?;
    let mut dirs = 0;
    let prefix = format!("{}{LAB_TAG}-", lab::LAB_PREFIX);
    if let Ok(entries) = fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<i32>().ok())
            else {
                continue;
            };
            if !process_alive(pid) && fs::remove_dir_all(entry.path()).is_ok() {
                dirs += 1;
            }
        }
    }
    if !namespaces.is_empty() || dirs > 0 {
        say.line(&format!(
            "(removed {} namespaces and {dirs} work directories left by an earlier demo that was killed)",
            namespaces.len()
        ));
    }
    Ok(())
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Seconds since the Unix epoch, as ping's `-D` prints them.
pub(super) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_packages_of_missing_tools_are_installed() {
        let none = missing_packages(&TOOLS, |_| true);
        assert!(none.is_empty());
        let some = missing_packages(&TOOLS, |tool| tool == "ip");
        assert_eq!(some, ["nftables", "iputils-ping"]);
    }
    use crate::lab::demo::COMMAND_TIMEOUT;

    #[test]
    fn the_work_directory_is_shown_as_dir() {
        let w = WorkDir(PathBuf::from("/nonexistent/skl-demo-1-0"));
        assert_eq!(
            w.shorten("/nonexistent/skl-demo-1-0/root/identity.public@198.51.100.1/9993"),
            "$DIR/root/identity.public@198.51.100.1/9993"
        );
        // Not created, so nothing to remove; dropping must not panic.
        drop(w);
    }

    #[test]
    fn commands_are_captured_and_timed_out() {
        let out = run_command(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            COMMAND_TIMEOUT,
        )
        .unwrap();
        assert_eq!(
            (out.stdout.as_str(), out.stderr.as_str()),
            ("out\n", "err\n")
        );
        assert_eq!(out.status.code(), Some(3));
        let err = run_command(Command::new("sleep").arg("5"), Duration::from_millis(100))
            .err()
            .unwrap();
        assert!(err.contains("did not finish"), "{err}");
        let err = run_command(&mut Command::new("skylan-no-such-program"), COMMAND_TIMEOUT)
            .err()
            .unwrap();
        assert!(err.contains("cannot start"), "{err}");
    }
}
