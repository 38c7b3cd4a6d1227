//! Low-level namespace plumbing for the lab: entering a named network namespace on a
//! thread ([`run_in`]), running `ip`/`nft` and reporting their failures, and root checks.
//!
//! Invariants: a thread that `setns`-es into a namespace is always a fresh thread that
//! ends before [`run_in`] returns, so no thread of the calling process is left in a lab
//! namespace (which would keep it alive after the lab deletes it). Every external command
//! is run with its output captured, and a failure carries the command line and stderr.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::LabError;

/// Where `ip netns add` mounts named namespaces.
pub(crate) const NETNS_DIR: &str = "/var/run/netns";

/// How many root-only tests this process skipped (printed with every skip).
static SKIPPED: AtomicUsize = AtomicUsize::new(0);

/// True when the process runs with effective UID 0 (needed for namespaces and nft).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// For root-only tests: returns true when running as root. Otherwise prints a loud
/// `SKIPPED (needs root): <test_name>` line (with the number of such skips so far in this
/// process, since a skipped test is not a passed one) and returns false.
///
/// ```no_run
/// # fn t() {
/// if !skylan::lab::require_root("nat_probe") { return; }
/// # }
/// ```
pub fn require_root(test_name: &str) -> bool {
    if is_root() {
        return true;
    }
    let n = SKIPPED.fetch_add(1, Ordering::Relaxed) + 1;
    // Written to the fd, not with eprintln!, so the test harness cannot capture it.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED (needs root): {test_name} — namespace tests need root with iproute2 and \
         nftables; {n} test(s) skipped so far in this process"
    );
    false
}

/// Runs `f` on a fresh thread that has joined the named network namespace (libc `setns`
/// with `CLONE_NEWNET` on `/var/run/netns/<netns>`), and returns its result.
///
/// Sockets, TAP devices and netlink sockets created inside `f` belong to that namespace
/// and stay there after `f` returns, so a test can create a socket in a namespace and use
/// it from any thread. Threads started from inside `f` inherit the namespace. Note that
/// `/proc/net` shows the main thread's namespace; use `/proc/thread-self/net` inside `f`.
///
/// A panic in `f` is resumed on the calling thread. Errors: the namespace does not exist
/// or cannot be entered.
pub fn run_in<R: Send>(netns: &str, f: impl FnOnce() -> R + Send) -> Result<R, LabError> {
    let path = netns_path(netns)?;
    let file = File::open(&path).map_err(|source| LabError::Io {
        what: format!("opening network namespace {path} (does the namespace exist?)"),
        source,
    })?;
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name(format!("netns:{netns}"))
            .spawn_scoped(scope, move || {
                // SAFETY: `file` is an open namespace file for the whole call; setns only
                // changes the network namespace of this (fresh, scoped) thread.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                drop(file);
                Ok(f())
            })
            .map_err(|source| LabError::Io {
                what: format!("starting a thread for namespace {netns}"),
                source,
            })?;
        match thread.join() {
            Ok(result) => result.map_err(|source| LabError::Io {
                what: format!("entering network namespace {netns} with setns"),
                source,
            }),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// The path of a named namespace, refusing names that would escape `/var/run/netns`.
pub(crate) fn netns_path(netns: &str) -> Result<String, LabError> {
    if netns.is_empty() || netns.contains('/') || netns == "." || netns == ".." {
        return Err(LabError::BadName {
            name: netns.to_string(),
            reason: "a namespace name must be non-empty and contain no '/'",
        });
    }
    Ok(format!("{NETNS_DIR}/{netns}"))
}

/// Names of all named network namespaces on this machine (`ip netns list`).
pub fn list_namespaces() -> Result<Vec<String>, LabError> {
    let out = run(Command::new("ip").args(["netns", "list"]))?;
    // Lines look like `name` or `name (id: 3)`.
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// Names of all interfaces in the namespace the calling thread is in (`ip -o link`).
pub fn list_interfaces() -> Result<Vec<String>, LabError> {
    let out = run(Command::new("ip").args(["-o", "link", "show"]))?;
    // Lines look like `3: name@peer: <FLAGS> ...`.
    Ok(out
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect())
}

/// Runs an `ip` command inside `netns` (`ip -n <netns> ...`).
pub(crate) fn ip_in(netns: &str, args: &[&str]) -> Result<String, LabError> {
    run(Command::new("ip").arg("-n").arg(netns).args(args))
}

/// Loads an nftables script inside `netns` (`ip netns exec <netns> nft -f -`).
pub(crate) fn nft_in(netns: &str, script: &str) -> Result<(), LabError> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns, "nft", "-f", "-"]);
    let what = describe(&cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| missing_tool("ip", source))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|source| LabError::Io {
                what: format!("writing an nftables script to `{what}`"),
                source,
            })?;
    }
    let output = child.wait_with_output().map_err(|source| LabError::Io {
        what: format!("waiting for `{what}`"),
        source,
    })?;
    check(&what, output).map(drop).map_err(|e| match e {
        LabError::Command {
            command,
            status,
            stderr,
        } => LabError::Command {
            command,
            status,
            stderr: format!("{stderr}\nscript:\n{script}"),
        },
        other => other,
    })
}

/// Runs a command to completion, returning its stdout or a [`LabError::Command`].
pub(crate) fn run(cmd: &mut Command) -> Result<String, LabError> {
    let what = describe(cmd);
    let program = cmd.get_program().to_string_lossy().into_owned();
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| missing_tool(&program, source))?;
    check(&what, output)
}

fn check(what: &str, output: Output) -> Result<String, LabError> {
    if !output.status.success() {
        return Err(LabError::Command {
            command: what.to_string(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn missing_tool(program: &str, source: std::io::Error) -> LabError {
    if source.kind() == std::io::ErrorKind::NotFound {
        LabError::MissingTool {
            tool: program.to_string(),
        }
    } else {
        LabError::Io {
            what: format!("starting `{program}`"),
            source,
        }
    }
}

/// The command line as text, for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_paths_cannot_escape_the_netns_directory() {
        assert!(netns_path("../etc").is_err());
        assert!(netns_path("").is_err());
        assert!(netns_path("..").is_err());
        assert_eq!(
            netns_path("skl-a-1-0.bb").unwrap(),
            "/var/run/netns/skl-a-1-0.bb"
        );
    }

    #[test]
    fn failed_commands_report_command_line_and_stderr() {
        let err = run(Command::new("sh").args(["-c", "echo oops >&2; exit 3"])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("sh -c"), "{text}");
        assert!(text.contains("oops"), "{text}");
    }

    #[test]
    fn a_missing_program_is_named() {
        let err = run(&mut Command::new("skylan-no-such-tool")).unwrap_err();
        assert!(matches!(err, LabError::MissingTool { .. }), "{err}");
    }

    #[test]
    fn run_in_reports_a_missing_namespace() {
        let err = run_in("skl-no-such-namespace", || ()).unwrap_err();
        assert!(err.to_string().contains("skl-no-such-namespace"), "{err}");
    }
}
