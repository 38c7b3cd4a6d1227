//! `skylan completions SHELL` and `skylan man [--out DIR]`: shell completion scripts and
//! manual pages, generated from the command line's own clap definition (which `main.rs`
//! owns and passes in), so they cannot drift from the options the binary accepts.
//!
//! Contract: both are offline and read nothing but their arguments. Without `--out`,
//! `man` returns the top page (`skylan.1`) as roff text; with `--out DIR` it writes one
//! page per command and subcommand (`skylan.1`, `skylan-node.1`,
//! `skylan-idtool-generate.1`, ...) into `DIR`, creating it, and returns the list of
//! files written (every `<name>*.1` in `DIR`). The packaging script (`packaging/build-deb.sh`) calls both.

use std::path::Path;

use clap_complete::Shell;

/// Why manual pages could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write manual pages to {dir}: {source}")]
pub struct DocsError {
    /// The output directory.
    dir: String,
    /// The OS error.
    source: std::io::Error,
}

/// The completion script for `shell`, for the command line `cmd`.
pub fn completions(mut cmd: clap::Command, shell: Shell) -> String {
    let name = cmd.get_name().to_owned();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The top manual page as roff text (`out` is `None`), or every page written to `out`
/// (the returned text lists the files, one a line).
pub fn man(cmd: clap::Command, out: Option<&Path>) -> Result<String, DocsError> {
    let Some(dir) = out else {
        let mut page = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = clap_mangen::Man::new(cmd).render(&mut page);
        return Ok(String::from_utf8_lossy(&page).into_owned());
    };
    let prefix = cmd.get_name().to_owned();
    let err = |source| DocsError {
        dir: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    clap_mangen::generate_to(cmd, dir).map_err(err)?;
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map_err(err)?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .filter(|path| {
            let name = path.file_name().map(|n| n.to_string_lossy());
            name.is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".1"))
        })
        .map(|path| path.display().to_string())
        .collect();
    files.sort();
    Ok(files.join("\n"))
}
