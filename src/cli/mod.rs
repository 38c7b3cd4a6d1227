//! The command-line clients: `info`, `peers`, `ping`, `join`, `networks` and the
//! controller commands talk to the local daemon's API over HTTP; `idtool` and `rules`
//! work offline on files. Each returns the text to print (or the API's JSON) and a
//! [`client::CliError`] that says what to check.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod client;
pub mod controller;
pub mod idtool;
pub mod node;
pub mod rules;
