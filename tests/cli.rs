//! The `skylan` command line as a user's shell sees it: exit codes, aliases, and what
//! happens when the reader of its output goes away.
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
