//! `<home>/local.toml`: a node's own settings, like ZeroTier's `local.conf`. Optional;
//! a missing file means every default. Read once at start by `skylan node` and by
//! `skylan root` (which uses only `[settings]`).
//!
//! ```toml
//! [settings]
//! primaryPort = 9993        # UDP port (and the local API's, unless apiPort says otherwise)
//! apiPort = 9993            # local API TCP port on 127.0.0.1
//! interfacePrefixBlacklist = ["docker", "veth"]   # interfaces never told to peers
//!
//! [network.default]         # opt-ins of every network joined, until `skylan set` changes them
//! allowManaged = true
//! allowGlobal = false
//! allowDefault = false
//! allowDNS = false
//!
//! [network.8056c2e21c000001]   # one network's opt-ins, over network.default
//! allowDefault = true
//! ```
//!
//! **Precedence.** A command-line flag wins over the file, the file over the built-in
//! default. For opt-ins: a network's `<nwid>.local.conf` (what `skylan set` wrote, see
//! `io::networks`) wins over `[network.<nwid>]`, which wins over `[network.default]`,
//! which wins over ZeroTier's defaults ([`NetworkSettings::default`]). So the file gives
//! the opt-ins a network starts with when it is joined; `skylan set` then saves all four.
//!
//! **Strict.** Unknown sections and keys, wrong types and table names that are neither
//! `default` nor a 16-digit network ID are refused, and the daemon does not start: the
//! error names the file, line and column, and suggests the nearest key when the unknown
//! one looks like a typo ([`LocalConfigError`]). A setting that is silently ignored is
//! worse than a daemon that says why it stopped.
//!
//! Callers: `main.rs` for `skylan node` and `skylan root` (ports) and the node driver
//! (opt-in defaults, through [`NetworkDefaults`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use crate::service::optin::{NetworkSettings, Setting};
use crate::types::NetworkId;

/// The file's name in the home directory.
pub const LOCAL_TOML: &str = "local.toml";
/// The UDP port when neither `--port` nor `primaryPort` names one (ZeroTier's).
pub const DEFAULT_PORT: u16 = 9993;

/// What the file says; every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalConfig {
    /// `settings.primaryPort`: the UDP port.
    pub port: Option<u16>,
    /// `settings.apiPort`: the local API's TCP port.
    pub api_port: Option<u16>,
    /// `settings.interfacePrefixBlacklist` (ZeroTier's key): interfaces whose name
    /// starts with one of these are never told to peers as local endpoints
    /// (`io::interfaces`; `lo`, `zt`, `tun`, `tap` and skylan's own are never told).
    pub interface_prefix_blacklist: Vec<String>,
    /// The `[network.*]` tables.
    pub networks: NetworkDefaults,
}

/// The opt-ins a network starts with, from `[network.default]` and `[network.<nwid>]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkDefaults {
    all: OptIns,
    per_network: HashMap<NetworkId, OptIns>,
}

impl NetworkDefaults {
    /// The settings `network` starts with (see the module documentation for the order).
    pub fn for_network(&self, network: NetworkId) -> NetworkSettings {
        let specific = self.per_network.get(&network).copied().unwrap_or_default();
        Setting::ALL
            .into_iter()
            .fold(NetworkSettings::default(), |mut settings, setting| {
                if let Some(value) = specific.get(setting).or(self.all.get(setting)) {
                    settings.set(setting, value);
                }
                settings
            })
    }
}

/// Why `local.toml` was refused.
#[derive(Debug, thiserror::Error)]
pub enum LocalConfigError {
    /// The file exists but could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or not what skylan expects.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending key or value (1 when unknown).
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong, with a suggestion when there is one.
        message: String,
    },
}

impl LocalConfig {
    /// Reads `<home>/local.toml`; the defaults when there is none.
    pub fn load(home: &Path) -> Result<LocalConfig, LocalConfigError> {
        let path = home.join(LOCAL_TOML);
        match std::fs::read_to_string(&path) {
            Ok(text) => LocalConfig::parse(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LocalConfig::default()),
            Err(source) => Err(LocalConfigError::Io { path, source }),
        }
    }

    /// Parses the text of the file at `path` (named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<LocalConfig, LocalConfigError> {
        let file: FileModel = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| line_column(text, s.start));
            LocalConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                message: explain(e.message()),
            }
        })?;
        let mut networks = NetworkDefaults::default();
        for (key, opt_ins) in file.network {
            match key {
                NetworkKey::Default => networks.all = opt_ins,
                NetworkKey::Id(id) => {
                    networks.per_network.insert(id, opt_ins);
                }
            }
        }
        Ok(LocalConfig {
            port: file.settings.primary_port,
            api_port: file.settings.api_port,
            interface_prefix_blacklist: file.settings.interface_prefix_blacklist,
            networks,
        })
    }
}

/// The file as serde reads it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileModel {
    #[serde(default)]
    settings: SettingsModel,
    #[serde(default)]
    network: HashMap<NetworkKey, OptIns>,
}

/// `[settings]`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SettingsModel {
    primary_port: Option<u16>,
    api_port: Option<u16>,
    #[serde(default)]
    interface_prefix_blacklist: Vec<String>,
}

/// A `[network.*]` table: each opt-in it names.
#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct OptIns {
    #[serde(rename = "allowManaged")]
    allow_managed: Option<bool>,
    #[serde(rename = "allowGlobal")]
    allow_global: Option<bool>,
    #[serde(rename = "allowDefault")]
    allow_default: Option<bool>,
    #[serde(rename = "allowDNS")]
    allow_dns: Option<bool>,
}

impl OptIns {
    fn get(&self, setting: Setting) -> Option<bool> {
        match setting {
            Setting::AllowManaged => self.allow_managed,
            Setting::AllowGlobal => self.allow_global,
            Setting::AllowDefault => self.allow_default,
            Setting::AllowDns => self.allow_dns,
        }
    }
}

/// The name of a `[network.*]` table.
#[derive(Debug, PartialEq, Eq, Hash)]
enum NetworkKey {
    Default,
    Id(NetworkId),
}

impl FromStr for NetworkKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "default" {
            return Ok(NetworkKey::Default);
        }
        s.parse().map(NetworkKey::Id).map_err(|e| {
            format!("[network.{s}]: a network table is named `default` or by a network ID ({e})")
        })
    }
}

impl<'de> Deserialize<'de> for NetworkKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" in the file's words, with the
/// nearest expected key when `x` looks like a typo of it. Also used for network files
/// (`cli::netfile`).
pub(crate) fn explain(message: &str) -> String {
    let message = message.trim_end();
    let Some(rest) = message.strip_prefix("unknown field ") else {
        return message.to_string();
    };
    let names: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    let Some((key, expected)) = names.split_first() else {
        return message.to_string();
    };
    let mut out = format!("unknown key `{key}` (known here: {})", expected.join(", "));
    // `suggest` lowercases only the word; compare with lowercased keys (`allowDNS`).
    let lower: Vec<String> = expected.iter().map(|k| k.to_lowercase()).collect();
    if let Some(near) = crate::rules::suggest(key, lower.iter().map(String::as_str))
        && let Some(i) = lower.iter().position(|k| k == near)
    {
        out.push_str(&format!("; did you mean `{}`?", expected[i]));
    }
    out
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LocalConfig, String> {
        LocalConfig::parse(text, Path::new("/h/local.toml")).map_err(|e| e.to_string())
    }

    const NWID: &str = "8056c2e21c000001";

    #[test]
    fn an_empty_file_is_every_default() {
        let config = parse("").unwrap();
        assert_eq!(config, LocalConfig::default());
        let nwid = NWID.parse().unwrap();
        assert_eq!(
            config.networks.for_network(nwid),
            NetworkSettings::default()
        );
    }

    #[test]
    fn ports_and_opt_ins_are_read_network_over_default_over_built_in() {
        let config = parse(&format!(
            "[settings]\nprimaryPort = 9994\napiPort = 9995\n\n\
             [network.default]\nallowGlobal = true\nallowDNS = true\n\n\
             [network.{NWID}]\nallowDNS = false\nallowDefault = true\n"
        ))
        .unwrap();
        assert_eq!((config.port, config.api_port), (Some(9994), Some(9995)));
        let this = config.networks.for_network(NWID.parse().unwrap());
        let expected = NetworkSettings {
            allow_managed: true,
            allow_global: true,
            allow_default: true,
            allow_dns: false,
        };
        assert_eq!(this, expected);
        let other = config
            .networks
            .for_network("8056c2e21c000002".parse().unwrap());
        assert!(other.allow_global && other.allow_dns && !other.allow_default);
    }

    #[test]
    fn the_interface_prefix_blacklist_is_a_list_of_names() {
        let config =
            parse("[settings]\ninterfacePrefixBlacklist = [\"docker\", \"veth\"]\n").unwrap();
        assert_eq!(config.interface_prefix_blacklist, ["docker", "veth"]);
        assert!(parse("").unwrap().interface_prefix_blacklist.is_empty());
        let e = parse("[settings]\ninterfacePrefixBlacklist = \"docker\"\n").unwrap_err();
        assert!(e.starts_with("/h/local.toml:2:"), "{e}");
        let e = parse("[settings]\ninterfacePrefixBlacklist = [1]\n").unwrap_err();
        assert!(e.starts_with("/h/local.toml:2:"), "{e}");
        let e = parse("[settings]\ninterfacePrefixBlackList = []\n").unwrap_err();
        assert!(
            e.ends_with("did you mean `interfacePrefixBlacklist`?"),
            "{e}"
        );
    }

    #[test]
    fn an_unknown_key_names_file_line_and_the_nearest_key() {
        let e = parse("[network.default]\nallowManaged = true\nallowDefualt = true\n").unwrap_err();
        assert!(
            e.starts_with("/h/local.toml:3:1: unknown key `allowDefualt`"),
            "{e}"
        );
        assert!(e.ends_with("did you mean `allowDefault`?"), "{e}");
        let e = parse("[settings]\nport = 1\n").unwrap_err();
        assert!(
            e.starts_with("/h/local.toml:2:1: unknown key `port`"),
            "{e}"
        );
        assert!(e.contains("primaryPort"), "{e}");
        let e = parse("[setings]\n").unwrap_err();
        assert!(e.contains("did you mean `settings`?"), "{e}");
    }

    #[test]
    fn bad_values_and_table_names_are_refused_with_a_position() {
        let e = parse("[settings]\nprimaryPort = 70000\n").unwrap_err();
        assert!(e.starts_with("/h/local.toml:2:"), "{e}");
        let e = parse("[network.default]\nallowGlobal = \"yes\"\n").unwrap_err();
        assert!(e.starts_with("/h/local.toml:2:"), "{e}");
        let e = parse("[network.nope]\nallowGlobal = true\n").unwrap_err();
        assert!(e.contains("[network.nope]"), "{e}");
        assert!(e.starts_with("/h/local.toml:1:"), "{e}");
        let e = parse("[settings\n").unwrap_err();
        assert!(e.starts_with("/h/local.toml:1:"), "{e}");
    }

    #[test]
    fn the_example_file_is_valid() {
        let example = include_str!("../../examples/deploy/local.toml");
        let config = parse(example).unwrap();
        assert_eq!(config.port, Some(DEFAULT_PORT));
        assert_eq!(config.interface_prefix_blacklist, ["docker", "veth"]);
        let this = config.networks.for_network(NWID.parse().unwrap());
        assert!(this.allow_managed && this.allow_global && !this.allow_default);
    }

    #[test]
    fn a_missing_file_is_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            LocalConfig::load(dir.path()).unwrap(),
            LocalConfig::default()
        );
        std::fs::write(dir.path().join(LOCAL_TOML), "[settings]\napiPort = 1\n").unwrap();
        assert_eq!(LocalConfig::load(dir.path()).unwrap().api_port, Some(1));
    }
}
