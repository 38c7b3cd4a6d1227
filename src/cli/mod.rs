//! The command-line clients: `info`, `peers`, `ping`, `join`, `networks`, `netcheck`,
//! `orbit`, `deorbit`, `moons` and the controller commands talk to the local daemon's API
//! over HTTP; `idtool` and `rules` work offline on files; `docs` makes shell completions
//! and manual pages. Each returns the text to print (or the API's JSON) and an error that
//! says what to check.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod client;
pub mod controller;
pub mod docs;
pub mod dump;
pub mod idtool;
pub mod moons;
pub mod netcheck;
pub mod netfile;
pub mod node;
pub mod rules;
pub mod table;

/// Writes `text` and a newline to standard output. A reader that went away (a closed
/// pipe, as in `skylan peers | head -1`) is an error of kind `BrokenPipe`, which callers
/// treat as the end of the output, not as a failure (`println!` would panic).
pub fn print_line(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}
