//! `skylan dump`: one text report with what a bug report needs, secrets removed.
//!
//! # Contract
//! - Sections, each under a `## ` heading: the version and host; the files of the home
//!   directory (names, sizes, modes; no contents); `local.toml` if there is one; the
//!   daemon's `/status`, `/peer`, `/network` and `/metrics` (and `/controller` on a
//!   node that runs one); the end of the daemon's log.
//! - **Secrets never appear**: `identity.secret` and the controller database are never
//!   read; `authtoken.secret` is read only to strike its value from the report, and
//!   every other file whose name ends in `.secret` is left unread.
//! - A daemon that cannot be reached does not stop the report: its sections say why,
//!   and the rest is still there (a dump is most wanted when something is wrong).
//! - The log comes from the file given with `--log`, else from the systemd journal
//!   (`journalctl -u skylan-node -u skylan-root`) where there is one; otherwise the
//!   section says how to keep a log.

use std::fmt::Write;
use std::path::Path;
use std::process::Command;

use super::client::{ApiClient, CliError};
use crate::io::http::TOKEN_FILE;

/// Log lines the report keeps.
pub const LOG_LINES: usize = 300;

/// What is struck from the report in place of a secret.
pub const REDACTED: &str = "<redacted>";

/// The report for the daemon whose home is `home`; `log` is a log file to take the
/// end of (else the journal).
pub fn dump(home: &Path, log: Option<&Path>) -> Result<String, CliError> {
    let mut out = String::new();
    let _ = writeln!(out, "# skylan dump");
    section(&mut out, "version and host", &host_facts());
    section(&mut out, "home directory", &home_files(home));
    if let Ok(text) = std::fs::read_to_string(home.join("local.toml")) {
        section(&mut out, "local.toml", &text);
    }
    match ApiClient::for_home(home, None) {
        Ok(api) => {
            let controller = api.get("/controller").is_ok();
            let mut paths = vec!["/status", "/peer", "/network"];
            if controller {
                paths.extend(["/controller", "/unstable/controller/network"]);
            }
            for path in paths {
                let text = match api.get(path) {
                    Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
                    Err(e) => format!("not available: {e}"),
                };
                section(&mut out, &format!("GET {path}"), &text);
            }
            let metrics = api
                .get_text("/metrics")
                .unwrap_or_else(|e| format!("not available: {e}"));
            section(&mut out, "GET /metrics", &metrics);
        }
        Err(e) => section(&mut out, "daemon", &format!("not asked: {e}")),
    }
    section(&mut out, "log", &log_tail(log));
    Ok(redact(home, out))
}

fn section(out: &mut String, title: &str, body: &str) {
    let _ = writeln!(out, "\n## {title}\n\n{}", body.trim_end());
}

fn host_facts() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let os = read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "unknown".into());
    format!(
        "skylan {}\nkernel {}\nos {os}\narch {}",
        env!("CARGO_PKG_VERSION"),
        read("/proc/sys/kernel/osrelease").trim(),
        std::env::consts::ARCH,
    )
}

/// The home directory's files, one level down into its directories: mode, size, name.
fn home_files(home: &Path) -> String {
    let mut lines = Vec::new();
    let Some(dirs) = list_dir(home, "", &mut lines) else {
        return format!("cannot read {}", home.display());
    };
    for d in dirs {
        list_dir(&home.join(&d), &format!("{d}/"), &mut lines);
    }
    if lines.is_empty() {
        return format!("{} is empty", home.display());
    }
    lines.join("\n")
}

/// Adds a line per entry of `dir` (names after `prefix`); its subdirectories' names, or
/// `None` when it cannot be read.
fn list_dir(dir: &Path, prefix: &str, lines: &mut Vec<String>) -> Option<Vec<String>> {
    use std::os::unix::fs::PermissionsExt;
    let mut entries: Vec<_> = std::fs::read_dir(dir).ok()?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    let mut dirs = Vec::new();
    for e in entries {
        let Ok(meta) = e.metadata() else { continue };
        let name = e.file_name().to_string_lossy().into_owned();
        let slash = if meta.is_dir() { "/" } else { "" };
        lines.push(format!(
            "{:04o} {:>10} {prefix}{name}{slash}",
            meta.permissions().mode() & 0o7777,
            meta.len()
        ));
        if meta.is_dir() {
            dirs.push(name);
        }
    }
    Some(dirs)
}

fn log_tail(log: Option<&Path>) -> String {
    if let Some(path) = log {
        return match std::fs::read_to_string(path) {
            Ok(text) => last_lines(&text, LOG_LINES),
            Err(e) => format!("cannot read {}: {e}", path.display()),
        };
    }
    let journal = Command::new("journalctl")
        .args(["-u", "skylan-node", "-u", "skylan-root", "--no-pager", "-o"])
        .args(["short-iso", "-n", &LOG_LINES.to_string()])
        .output();
    match journal {
        Ok(out)
            if out.status.success()
                && !String::from_utf8_lossy(&out.stdout).trim().is_empty()
                && !String::from_utf8_lossy(&out.stdout).contains("-- No entries --") =>
        {
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
        _ => "no journal entries for skylan-node or skylan-root; if the daemon runs \
              outside systemd, keep its standard error in a file and pass it with \
              `skylan dump --log FILE`"
            .into(),
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Strikes the API token of `home` from `report`.
fn redact(home: &Path, report: String) -> String {
    match std::fs::read_to_string(home.join(TOKEN_FILE)) {
        Ok(token) if !token.trim().is_empty() => report.replace(token.trim(), REDACTED),
        _ => report,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_struck_and_secrets_are_listed_not_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(TOKEN_FILE), "abcdefgh12345678\n").unwrap();
        std::fs::write(dir.path().join("identity.secret"), "SECRETKEYMATERIAL").unwrap();
        std::fs::create_dir(dir.path().join("networks.d")).unwrap();
        std::fs::write(dir.path().join("networks.d/x.local.conf"), "allowDNS=1").unwrap();
        std::fs::write(dir.path().join("local.toml"), "# abcdefgh12345678\n").unwrap();
        let log = dir.path().join("daemon.log");
        let lines: Vec<String> = (0..LOG_LINES + 5).map(|i| format!("line {i}")).collect();
        std::fs::write(&log, lines.join("\n")).unwrap();
        let report = dump(dir.path(), Some(&log)).unwrap();
        assert!(!report.contains("abcdefgh12345678"), "{report}");
        assert!(report.contains(REDACTED));
        assert!(!report.contains("SECRETKEYMATERIAL"));
        assert!(report.contains(" identity.secret\n"), "{report}");
        assert!(report.contains(" networks.d/x.local.conf"), "{report}");
        assert!(report.contains("## daemon\n\nnot asked") || report.contains("not available"));
        assert!(report.contains("\nline 5\n") && !report.contains("\nline 4\n"));
    }
}
