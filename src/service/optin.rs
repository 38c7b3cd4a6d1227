//! Member opt-ins: which of the managed addresses and routes that a network's controller
//! sends actually get installed on this member's host. The settings are ZeroTier's
//! per-network `allowManaged`, `allowGlobal`, `allowDefault` and `allowDNS`
//! ([`NetworkSettings`]); the member sets them (`skylan set <nwid> allowDefault=true`),
//! the controller cannot.
//!
//! [`plan`] is a pure function: a config's addresses and routes, the member's settings
//! and the underlay endpoints the node must keep reaching ([`Underlay`]) in; what to
//! install and what is skipped, each with its reason ([`Skipped`]), out. The node driver
//! (`io::networks`) installs the result and shows the skipped items in `networks`.
//!
//! # The rules, in order (the first that applies decides)
//!
//! 1. **allowManaged=false**: nothing managed is installed (the device still carries
//!    frames).
//! 2. **Never**: link-local (169.254.0.0/16, fe80::/10), loopback, multicast and
//!    unspecified addresses, and routes entirely inside those ranges, are never installed
//!    (as ZeroTier does).
//! 3. **Underlay**: a route that would carry the underlay address of a root or of a
//!    peer into the overlay is never installed, whatever the settings: the node would
//!    lose its own way to them. It *would carry* an address when its prefix contains the
//!    address and is at least as long as the prefix of the host route that reaches that
//!    address now (the longest prefix wins; at equal length the choice is the kernel's,
//!    so it counts). An address no host route reaches is carried by any prefix that
//!    contains it. For a managed address the prefix is the one the kernel adds as a
//!    route with it (`203.0.113.10/24` adds `203.0.113.0/24`).
//! 4. **Default**: a default route (`0.0.0.0/0`, `::/0`) or one of its halves
//!    (`0.0.0.0/1`, `128.0.0.0/1`, `::/1`, `8000::/1`) needs **allowDefault**; so does an
//!    address whose prefix is that wide (a controller sends `198.18.0.5/0` when only a
//!    default route contains the address, and the kernel would add that prefix as a
//!    route).
//! 5. **Global**: anything not entirely inside a private range needs **allowGlobal**.
//!    For an address both the address and its prefix must be private (`198.18.0.5/8`
//!    puts a route to all of 198.0.0.0/8 on the device). This is stricter than ZeroTier,
//!    which looks only at the first address of a prefix.
//!
//! **Private ranges**: 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 (RFC 1918),
//! 100.64.0.0/10 (shared address space), 198.18.0.0/15 (benchmarking; skylan's own
//! tests and demo use it for overlays) and fc00::/7 (unique local, which includes
//! ZeroTier-style `rfc4193` and `6plane` addresses). Everything else is global.
//!
//! **allowDNS**: a config's DNS servers and search domain are set on the network's
//! device only with allowDNS ([`dns`]; the node driver applies them through
//! systemd-resolved, see `io::dns`).
//!
//! # Settings file
//!
//! ZeroTier's `networks.d/<nwid>.local.conf` format, which [`NetworkSettings::to_local_conf`]
//! writes and [`NetworkSettings::from_local_conf`] reads: one `key=value` line per
//! setting, values `1`/`0` (also `true`/`false`, `t`/`f`); missing keys take their
//! defaults. ZeroTier's list-of-prefixes form of `allowManaged` is not supported (it is
//! refused as a bad value).
//!
//! Callers: the node driver and the CLI (which parses `KEY=VALUE` with
//! [`parse_assignment`] before it asks the daemon).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::controller::model::{Dns, Route};
use crate::controller::patch::is_default_route;
use crate::types::NodeAddress;

/// Changes of settings, applied in order.
pub type Changes = Vec<(Setting, bool)>;

/// A member's opt-ins for one network. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkSettings {
    /// Install managed addresses and routes at all (default true).
    pub allow_managed: bool,
    /// Also those outside the private ranges (default false).
    pub allow_global: bool,
    /// Also default routes and their halves (default false).
    pub allow_default: bool,
    /// Apply the network's DNS settings (default false; stored and shown only).
    pub allow_dns: bool,
}

impl Default for NetworkSettings {
    /// ZeroTier's defaults: managed private addresses and routes yes, the rest no.
    fn default() -> Self {
        NetworkSettings {
            allow_managed: true,
            allow_global: false,
            allow_default: false,
            allow_dns: false,
        }
    }
}

/// One of the four settings, by its ZeroTier name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Setting {
    /// `allowManaged`.
    AllowManaged,
    /// `allowGlobal`.
    AllowGlobal,
    /// `allowDefault`.
    AllowDefault,
    /// `allowDNS`.
    AllowDns,
}

impl Setting {
    /// Every setting, in the order files and listings show them.
    pub const ALL: [Setting; 4] = [
        Setting::AllowManaged,
        Setting::AllowGlobal,
        Setting::AllowDefault,
        Setting::AllowDns,
    ];

    /// The name in commands, files and JSON (`allowManaged`, ..., `allowDNS`).
    pub fn name(self) -> &'static str {
        match self {
            Setting::AllowManaged => "allowManaged",
            Setting::AllowGlobal => "allowGlobal",
            Setting::AllowDefault => "allowDefault",
            Setting::AllowDns => "allowDNS",
        }
    }

    /// The setting called exactly `key`; otherwise an error that suggests the nearest.
    pub fn from_name(key: &str) -> Result<Setting, SettingsError> {
        if let Some(s) = Setting::ALL.into_iter().find(|s| s.name() == key) {
            return Ok(s);
        }
        let names = Setting::ALL.map(Setting::name);
        let lower = key.to_lowercase();
        let hint = crate::rules::suggest(key, names).or_else(|| {
            // `default` or `dns` alone: the name that ends with it.
            (lower.len() >= 3)
                .then(|| {
                    names
                        .into_iter()
                        .find(|n| n.to_lowercase().ends_with(&lower))
                })
                .flatten()
        });
        Err(SettingsError::UnknownKey {
            key: key.to_string(),
            hint,
        })
    }
}

impl NetworkSettings {
    /// The value of one setting.
    pub fn get(&self, setting: Setting) -> bool {
        match setting {
            Setting::AllowManaged => self.allow_managed,
            Setting::AllowGlobal => self.allow_global,
            Setting::AllowDefault => self.allow_default,
            Setting::AllowDns => self.allow_dns,
        }
    }

    /// Changes one setting.
    pub fn set(&mut self, setting: Setting, value: bool) {
        let field = match setting {
            Setting::AllowManaged => &mut self.allow_managed,
            Setting::AllowGlobal => &mut self.allow_global,
            Setting::AllowDefault => &mut self.allow_default,
            Setting::AllowDns => &mut self.allow_dns,
        };
        *field = value;
    }

    /// The settings with `changes` applied in order (a later change of the same setting
    /// wins).
    pub fn with(mut self, changes: &[(Setting, bool)]) -> NetworkSettings {
        for &(setting, value) in changes {
            self.set(setting, value);
        }
        self
    }

    /// `allowManaged=1` ... `allowDNS=0`, one line each: the `<nwid>.local.conf` file.
    pub fn to_local_conf(&self) -> String {
        Setting::ALL
            .into_iter()
            .map(|s| format!("{}={}\n", s.name(), u8::from(self.get(s))))
            .collect()
    }

    /// Reads a `<nwid>.local.conf` file (see the module documentation). Blank lines and
    /// lines starting with `#` are skipped; an unknown key or a bad value is an error
    /// naming the line.
    pub fn from_local_conf(text: &str) -> Result<NetworkSettings, SettingsError> {
        let mut settings = NetworkSettings::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (setting, value) = parse_assignment(line).map_err(|e| SettingsError::Line {
                number: i + 1,
                source: Box::new(e),
            })?;
            settings.set(setting, value);
        }
        Ok(settings)
    }

    /// `allowManaged=true allowGlobal=false ...`, for messages and the CLI.
    pub fn summary(&self) -> String {
        Setting::ALL
            .into_iter()
            .map(|s| format!("{}={}", s.name(), self.get(s)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Parses `KEY=VALUE`: a setting's exact name, and `true`/`false`, `1`/`0` or `t`/`f`
/// (any case), as `zerotier-cli set` accepts them.
pub fn parse_assignment(text: &str) -> Result<(Setting, bool), SettingsError> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(SettingsError::NotAssignment(text.to_string()));
    };
    let setting = Setting::from_name(key.trim())?;
    let value = match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "t" => true,
        "false" | "0" | "f" => false,
        _ => {
            return Err(SettingsError::BadValue {
                key: setting.name(),
                value: value.to_string(),
            });
        }
    };
    Ok((setting, value))
}

/// Why a setting or a settings file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// Not `KEY=VALUE`.
    #[error("`{0}` is not KEY=VALUE; write e.g. allowDefault=true")]
    NotAssignment(String),
    /// No setting has this name.
    #[error(
        "unknown setting `{key}`{}; the settings are allowManaged, allowGlobal, allowDefault and allowDNS",
        hint.map(|h| format!(" (did you mean `{h}`?)")).unwrap_or_default()
    )]
    UnknownKey {
        /// The name given.
        key: String,
        /// The nearest setting's name, if one is close.
        hint: Option<&'static str>,
    },
    /// The value is not a boolean.
    #[error("{key}={value}: the value must be true or false (or 1/0)")]
    BadValue {
        /// The setting.
        key: &'static str,
        /// The value given.
        value: String,
    },
    /// A line of a settings file.
    #[error("line {number}: {source}")]
    Line {
        /// 1-based line number.
        number: usize,
        /// What is wrong with it.
        source: Box<SettingsError>,
    },
}

/// An underlay address that the node uses to reach a root or a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Underlay {
    /// The address (a root's endpoint from the world, or a peer's path).
    pub ip: IpAddr,
    /// Whose it is.
    pub node: NodeAddress,
    /// Whether that node is a root.
    pub root: bool,
    /// The prefix length of the host route that reaches `ip` now, not counting routes
    /// on the overlay's own devices ([`underlay_route_len`]); `None` when none does.
    pub route_len: Option<u8>,
}

/// The prefix length of the longest of `routes` that contains `ip` (how the kernel picks
/// a route), or `None` when none does.
pub fn underlay_route_len(ip: IpAddr, routes: &[IpNet]) -> Option<u8> {
    routes
        .iter()
        .filter(|r| r.contains(&ip))
        .map(IpNet::prefix_len)
        .max()
}

/// Whether a config's `dns` goes on the host: `Ok(Some)` to apply, `Ok(None)` when it
/// sets nothing, `Err` (with allowDNS off) to list as skipped.
pub fn dns(dns: &Dns, settings: NetworkSettings) -> Result<Option<&Dns>, Skipped> {
    if dns.servers.is_empty() && dns.domain.is_empty() {
        return Ok(None);
    }
    if !settings.allow_dns {
        return Err(Skipped {
            item: Managed::Dns,
            reason: SkipReason::NeedsDns,
        });
    }
    Ok(Some(dns))
}

/// A managed item from a network config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Managed {
    /// An address with its prefix length.
    Address(IpNet),
    /// A route.
    Route(Route),
    /// The network's DNS servers and search domain.
    Dns,
}

impl fmt::Display for Managed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Managed::Address(a) => write!(f, "address {a}"),
            Managed::Dns => write!(f, "DNS settings"),
            Managed::Route(Route {
                target,
                via: Some(gw),
            }) => write!(f, "route {target} via {gw}"),
            Managed::Route(Route { target, via: None }) => write!(f, "route {target}"),
        }
    }
}

/// Why a managed item is not installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// allowManaged is false.
    NotManaged,
    /// Link-local, loopback, multicast or unspecified: never installed.
    Unusable(&'static str),
    /// It would carry this underlay address into the overlay.
    Underlay(Underlay),
    /// A default route (or half of one), and allowDefault is false.
    NeedsDefault(IpNet),
    /// Not entirely private, and allowGlobal is false.
    NeedsGlobal(IpNet),
    /// DNS settings, and allowDNS is false.
    NeedsDns,
    /// DNS settings, and the host has no systemd-resolved (`resolvectl`).
    NoResolver,
    /// DNS settings, and `resolvectl` failed (the log says how).
    ResolverFailed,
}

impl SkipReason {
    /// A short code for scripts: the setting that would allow it (`allowManaged`,
    /// `allowDefault`, `allowGlobal`, `allowDNS`), `underlay` / `scope` for what nothing
    /// allows, or `resolver` for DNS settings this host cannot take.
    pub fn code(&self) -> &'static str {
        match self {
            SkipReason::NotManaged => "allowManaged",
            SkipReason::Unusable(_) => "scope",
            SkipReason::Underlay(_) => "underlay",
            SkipReason::NeedsDefault(_) => "allowDefault",
            SkipReason::NeedsGlobal(_) => "allowGlobal",
            SkipReason::NeedsDns => "allowDNS",
            SkipReason::NoResolver | SkipReason::ResolverFailed => "resolver",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NotManaged => {
                write!(f, "allowManaged is false: no managed addresses or routes")
            }
            SkipReason::Unusable(kind) => write!(f, "{kind} addresses are never installed"),
            SkipReason::Underlay(u) => write!(
                f,
                "it would carry {} {}'s underlay address {} into the overlay and cut the \
                 node off from it; never installed",
                if u.root { "root" } else { "peer" },
                u.node,
                u.ip
            ),
            SkipReason::NeedsDefault(p) => write!(
                f,
                "{p} is a default route (or half of one): installed only with allowDefault=true"
            ),
            SkipReason::NeedsGlobal(p) if p.prefix_len() == p.max_prefix_len() => write!(
                f,
                "{} is not in a private range: installed only with allowGlobal=true",
                p.addr()
            ),
            SkipReason::NeedsGlobal(p) => write!(
                f,
                "{p} is not in a private range: installed only with allowGlobal=true"
            ),
            SkipReason::NeedsDns => write!(f, "applied to the host only with allowDNS=true"),
            SkipReason::NoResolver => write!(
                f,
                "this host has no systemd-resolved (`resolvectl` is not on PATH); set the \
                 servers in the host's resolver configuration by hand"
            ),
            SkipReason::ResolverFailed => write!(
                f,
                "`resolvectl` failed (the log says how); is systemd-resolved running?"
            ),
        }
    }
}

/// A managed item that is not installed, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    /// The item.
    pub item: Managed,
    /// The first rule that refused it.
    pub reason: SkipReason,
}

/// What to install for one network, and what not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Addresses to install, in config order.
    pub addresses: Vec<IpNet>,
    /// Routes to install, in config order.
    pub routes: Vec<Route>,
    /// Everything else, addresses first, in config order.
    pub skipped: Vec<Skipped>,
}

/// Sorts a config's managed `addresses` and `routes` into those to install and those
/// to skip, by the rules in the module documentation. `underlay` lists the addresses
/// the node must keep reaching; when several would be carried, the reason names a
/// root's before a peer's.
pub fn plan(
    addresses: &[IpNet],
    routes: &[Route],
    settings: NetworkSettings,
    underlay: &[Underlay],
) -> Plan {
    let mut out = Plan::default();
    for &address in addresses {
        let host = IpNet::from(address.addr());
        match verdict(Some(host), address.trunc(), settings, underlay) {
            None => out.addresses.push(address),
            Some(reason) => out.skipped.push(Skipped {
                item: Managed::Address(address),
                reason,
            }),
        }
    }
    for &route in routes {
        match verdict(None, route.target.trunc(), settings, underlay) {
            None => out.routes.push(route),
            Some(reason) => out.skipped.push(Skipped {
                item: Managed::Route(route),
                reason,
            }),
        }
    }
    out
}

/// Why a managed item is skipped (the rules of the module documentation, in order), or
/// `None` to install it. `prefix` is what it routes to the device: a route's target, or
/// an address's prefix; `host` is an address itself (`None` for a route).
fn verdict(
    host: Option<IpNet>,
    prefix: IpNet,
    settings: NetworkSettings,
    underlay: &[Underlay],
) -> Option<SkipReason> {
    if !settings.allow_managed {
        return Some(SkipReason::NotManaged);
    }
    if let Some(kind) = never(host.unwrap_or(prefix)) {
        return Some(SkipReason::Unusable(kind));
    }
    if let Some(u) = carried(prefix, underlay) {
        return Some(SkipReason::Underlay(u));
    }
    let default = is_default_route(&Route {
        target: prefix,
        via: None,
    });
    if default && !settings.allow_default {
        return Some(SkipReason::NeedsDefault(prefix));
    }
    if !settings.allow_global {
        // A default route needs allowDefault alone; an address is also checked itself.
        let checked = host.into_iter().chain((!default).then_some(prefix));
        if let Some(global) = checked.into_iter().find(|n| !is_private(*n)) {
            return Some(SkipReason::NeedsGlobal(global));
        }
    }
    None
}

/// The first underlay address (roots first) that a route to `prefix` would carry.
fn carried(prefix: IpNet, underlay: &[Underlay]) -> Option<Underlay> {
    let takes = |u: &&Underlay| {
        prefix.contains(&u.ip) && u.route_len.is_none_or(|len| prefix.prefix_len() >= len)
    };
    let roots = underlay.iter().filter(|u| u.root);
    let peers = underlay.iter().filter(|u| !u.root);
    roots.chain(peers).find(takes).copied()
}

/// Private ranges (see the module documentation).
const PRIVATE: [IpNet; 6] = [
    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 0), 8)),
    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(172, 16, 0, 0), 12)),
    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(192, 168, 0, 0), 16)),
    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(100, 64, 0, 0), 10)),
    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(198, 18, 0, 0), 15)),
    IpNet::V6(Ipv6Net::new_assert(
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
    )),
];

/// Ranges whose addresses are never installed, with what they are.
const NEVER: [(IpNet, &str); 8] = [
    (
        IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(169, 254, 0, 0), 16)),
        "link-local",
    ),
    (
        IpNet::V6(Ipv6Net::new_assert(
            Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
            10,
        )),
        "link-local",
    ),
    (
        IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8)),
        "loopback",
    ),
    (
        IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128)),
        "loopback",
    ),
    (
        IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(224, 0, 0, 0), 4)),
        "multicast",
    ),
    (
        IpNet::V6(Ipv6Net::new_assert(
            Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
            8,
        )),
        "multicast",
    ),
    (
        IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::UNSPECIFIED, 8)),
        "unspecified",
    ),
    (
        IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::UNSPECIFIED, 128)),
        "unspecified",
    ),
];

/// Whether `net` lies entirely inside one private range.
fn is_private(net: IpNet) -> bool {
    PRIVATE.iter().any(|p| p.contains(&net))
}

/// What kind of never-installed range `net` lies entirely inside, if any.
fn never(net: IpNet) -> Option<&'static str> {
    NEVER
        .iter()
        .find(|(range, _)| range.contains(&net))
        .map(|(_, kind)| *kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_goes_on_the_host_only_when_allowed_and_when_there_is_some() {
        let none = Dns::default();
        let some = Dns {
            domain: "lab.example".into(),
            servers: vec!["198.18.0.53".parse().unwrap()],
        };
        let off = NetworkSettings::default();
        let on = off.with(&[(Setting::AllowDns, true)]);
        assert_eq!(dns(&none, off), Ok(None));
        assert_eq!(dns(&none, on), Ok(None));
        assert_eq!(dns(&some, on), Ok(Some(&some)));
        let skipped = dns(&some, off).unwrap_err();
        assert_eq!(
            (skipped.item, skipped.reason.code()),
            (Managed::Dns, "allowDNS")
        );
    }

    fn net(s: &str) -> IpNet {
        s.parse().expect("test prefix")
    }

    fn route(target: &str, via: Option<&str>) -> Route {
        Route {
            target: net(target),
            via: via.map(|v| v.parse().expect("test gateway")),
        }
    }

    const ROOT: &str = "89e92ceee5";
    const PEER: &str = "1c2d3e4f50";

    fn underlay(ip: &str, root: bool, route_len: Option<u8>) -> Underlay {
        Underlay {
            ip: ip.parse().expect("test address"),
            node: if root { ROOT } else { PEER }.parse().expect("test node"),
            root,
            route_len,
        }
    }

    /// A root on the member's own /24 (the namespace tests' underlay).
    fn lab_root() -> Underlay {
        underlay("198.51.100.49", true, Some(24))
    }

    fn allow(changes: &[(Setting, bool)]) -> NetworkSettings {
        NetworkSettings::default().with(changes)
    }

    fn codes(p: &Plan) -> Vec<(String, &'static str)> {
        p.skipped
            .iter()
            .map(|s| (s.item.to_string(), s.reason.code()))
            .collect()
    }

    #[test]
    fn defaults_install_private_addresses_and_routes_only() {
        let addresses = [
            net("198.18.9.10/24"),
            net("203.0.113.10/24"),
            net("fd00::1/88"),
        ];
        let routes = [
            route("198.18.9.0/24", None),
            route("10.20.0.0/16", Some("198.18.9.1")),
            route("0.0.0.0/0", Some("198.18.9.1")),
            route("203.0.113.0/24", None),
        ];
        let p = plan(
            &addresses,
            &routes,
            NetworkSettings::default(),
            &[lab_root()],
        );
        assert_eq!(p.addresses, vec![net("198.18.9.10/24"), net("fd00::1/88")]);
        assert_eq!(p.routes, routes[..2].to_vec());
        assert_eq!(
            codes(&p),
            vec![
                ("address 203.0.113.10/24".into(), "allowGlobal"),
                ("route 0.0.0.0/0 via 198.18.9.1".into(), "allowDefault"),
                ("route 203.0.113.0/24".into(), "allowGlobal"),
            ]
        );
    }

    #[test]
    fn allow_default_and_global_install_the_rest() {
        let addresses = [net("203.0.113.10/24")];
        let routes = [
            route("0.0.0.0/0", Some("198.18.9.1")),
            route("::/0", Some("fd00::1")),
            route("0.0.0.0/1", None),
            route("128.0.0.0/1", None),
            route("8000::/1", None),
        ];
        let s = allow(&[(Setting::AllowDefault, true), (Setting::AllowGlobal, true)]);
        let p = plan(&addresses, &routes, s, &[lab_root()]);
        assert_eq!(p.addresses, addresses.to_vec());
        assert_eq!(p.routes, routes.to_vec());
        assert!(p.skipped.is_empty(), "{:?}", p.skipped);
        // Default routes need allowDefault alone; global ones allowGlobal alone.
        let only_default = plan(
            &addresses,
            &routes,
            allow(&[(Setting::AllowDefault, true)]),
            &[],
        );
        assert_eq!(only_default.routes, routes.to_vec());
        assert!(only_default.addresses.is_empty());
        let only_global = plan(
            &addresses,
            &routes,
            allow(&[(Setting::AllowGlobal, true)]),
            &[],
        );
        assert!(only_global.routes.is_empty());
        assert_eq!(only_global.addresses, addresses.to_vec());
    }

    #[test]
    fn allow_managed_false_installs_nothing() {
        let p = plan(
            &[net("198.18.9.10/24")],
            &[route("198.18.10.0/24", None)],
            allow(&[(Setting::AllowManaged, false), (Setting::AllowGlobal, true)]),
            &[],
        );
        assert!(p.addresses.is_empty() && p.routes.is_empty());
        assert!(p.skipped.iter().all(|s| s.reason == SkipReason::NotManaged));
        assert_eq!(p.skipped.len(), 2);
    }

    #[test]
    fn private_means_entirely_inside_a_private_range() {
        for private in [
            "10.1.0.0/16",
            "172.16.0.0/12",
            "192.168.7.0/24",
            "100.64.0.0/10",
            "198.18.0.0/15",
            "198.19.255.0/24",
            "fd12:3456::/32",
            "fc00::/7",
        ] {
            assert!(is_private(net(private)), "{private}");
        }
        for global in [
            "10.0.0.0/7",
            "172.0.0.0/8",
            "198.18.0.0/14",
            "203.0.113.0/24",
            "2001:db8::/32",
            "100.0.0.0/8",
        ] {
            assert!(!is_private(net(global)), "{global}");
        }
        let p = plan(
            &[net("203.0.113.10/24")],
            &[],
            NetworkSettings::default(),
            &[],
        );
        assert_eq!(
            p.skipped[0].reason.to_string(),
            "203.0.113.10 is not in a private range: installed only with allowGlobal=true"
        );
        // An address is private only with its prefix: 198.18.0.5/8 routes 198.0.0.0/8.
        let p = plan(&[net("198.18.0.5/8")], &[], NetworkSettings::default(), &[]);
        assert_eq!(
            p.skipped[0].reason,
            SkipReason::NeedsGlobal(net("198.0.0.0/8"))
        );
        // An address whose prefix is a default route needs allowDefault.
        let p = plan(&[net("198.18.0.5/0")], &[], NetworkSettings::default(), &[]);
        assert_eq!(
            p.skipped[0].reason,
            SkipReason::NeedsDefault(net("0.0.0.0/0"))
        );
    }

    #[test]
    fn link_local_loopback_and_multicast_are_never_installed() {
        let everything = allow(&[(Setting::AllowGlobal, true), (Setting::AllowDefault, true)]);
        let p = plan(
            &[net("169.254.3.4/16"), net("fe80::5/64"), net("127.0.0.2/8")],
            &[route("224.0.0.0/4", None), route("fe80::/64", None)],
            everything,
            &[],
        );
        assert!(p.addresses.is_empty() && p.routes.is_empty());
        let kinds: Vec<_> = p.skipped.iter().map(|s| s.reason).collect();
        assert_eq!(
            kinds,
            vec![
                SkipReason::Unusable("link-local"),
                SkipReason::Unusable("link-local"),
                SkipReason::Unusable("loopback"),
                SkipReason::Unusable("multicast"),
                SkipReason::Unusable("link-local"),
            ]
        );
    }

    #[test]
    fn routes_that_would_carry_an_underlay_address_are_never_installed() {
        let everything = allow(&[(Setting::AllowGlobal, true), (Setting::AllowDefault, true)]);
        let root = lab_root();
        // More specific than the /24 that reaches the root now, or as specific: carried.
        for target in ["198.51.100.48/29", "198.51.100.49/32", "198.51.100.0/24"] {
            let p = plan(&[], &[route(target, None)], everything, &[root]);
            assert!(p.routes.is_empty(), "{target}");
            assert_eq!(p.skipped[0].reason, SkipReason::Underlay(root), "{target}");
        }
        // Less specific: the host's /24 still wins, so the default route is harmless.
        let p = plan(
            &[],
            &[route("0.0.0.0/0", None), route("198.51.0.0/16", None)],
            everything,
            &[root],
        );
        assert_eq!(p.routes.len(), 2);
        // A root reached by the host's default route: a default route would take it.
        let far = underlay("192.0.2.7", true, Some(0));
        let p = plan(
            &[],
            &[route("0.0.0.0/0", Some("198.18.9.1"))],
            everything,
            &[far],
        );
        assert_eq!(p.skipped[0].reason, SkipReason::Underlay(far));
        // Whatever the settings: the underlay reason comes before allowDefault.
        let p = plan(
            &[],
            &[route("128.0.0.0/1", None)],
            NetworkSettings::default(),
            &[far],
        );
        assert_eq!(p.skipped[0].reason.code(), "underlay");
        // No host route at all: any prefix that contains it.
        let lost = underlay("203.0.113.5", false, None);
        let p = plan(&[], &[route("203.0.0.0/8", None)], everything, &[lost]);
        assert_eq!(p.skipped[0].reason, SkipReason::Underlay(lost));
        // Another family is never carried.
        let p = plan(&[], &[route("::/0", Some("fd00::1"))], everything, &[far]);
        assert_eq!(p.routes.len(), 1);
    }

    #[test]
    fn an_address_whose_prefix_would_carry_an_underlay_address_is_skipped() {
        let everything = allow(&[(Setting::AllowGlobal, true)]);
        let root = lab_root();
        let p = plan(&[net("198.51.100.200/24")], &[], everything, &[root]);
        assert_eq!(p.skipped[0].reason, SkipReason::Underlay(root));
        // 203.0.113.10/24 does not overlap the underlay: installed.
        let p = plan(&[net("203.0.113.10/24")], &[], everything, &[root]);
        assert_eq!(p.addresses.len(), 1);
    }

    #[test]
    fn the_reason_names_a_root_before_a_peer() {
        let peer = underlay("198.51.100.50", false, Some(24));
        let root = lab_root();
        let p = plan(
            &[],
            &[route("198.51.100.48/29", None)],
            allow(&[(Setting::AllowGlobal, true)]),
            &[peer, root],
        );
        assert_eq!(p.skipped[0].reason, SkipReason::Underlay(root));
        let text = p.skipped[0].reason.to_string();
        assert!(
            text.contains("root 89e92ceee5") && text.contains("198.51.100.49"),
            "{text}"
        );
    }

    #[test]
    fn the_longest_host_route_decides_the_underlay_prefix() {
        let routes = [
            net("0.0.0.0/0"),
            net("198.51.100.0/24"),
            net("198.51.100.0/25"),
            net("fd00::/8"),
        ];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(underlay_route_len(ip("198.51.100.9"), &routes), Some(25));
        assert_eq!(underlay_route_len(ip("198.51.100.200"), &routes), Some(24));
        assert_eq!(underlay_route_len(ip("192.0.2.1"), &routes), Some(0));
        assert_eq!(underlay_route_len(ip("2001:db8::1"), &routes), None);
    }

    #[test]
    fn assignments_parse_like_zerotier_cli_and_refuse_the_rest() {
        assert_eq!(
            parse_assignment("allowDefault=true"),
            Ok((Setting::AllowDefault, true))
        );
        for (text, want) in [
            ("allowManaged=0", (Setting::AllowManaged, false)),
            ("allowGlobal=1", (Setting::AllowGlobal, true)),
            ("allowDNS=t", (Setting::AllowDns, true)),
            ("allowDNS=F", (Setting::AllowDns, false)),
            ("allowGlobal=FALSE", (Setting::AllowGlobal, false)),
        ] {
            assert_eq!(parse_assignment(text), Ok(want), "{text}");
        }
        let e = parse_assignment("allowDefualt=true").unwrap_err();
        assert!(
            e.to_string().contains("did you mean `allowDefault`?"),
            "{e}"
        );
        for (typo, meant) in [
            ("allowdns", "allowDNS"),
            ("allow_global", "allowGlobal"),
            ("default", "allowDefault"),
        ] {
            let e = Setting::from_name(typo).unwrap_err();
            assert_eq!(
                e,
                SettingsError::UnknownKey {
                    key: typo.into(),
                    hint: Some(meant)
                }
            );
        }
        let e = parse_assignment("colour=blue").unwrap_err();
        assert!(!e.to_string().contains("did you mean"), "{e}");
        assert!(e.to_string().contains("allowManaged, allowGlobal"), "{e}");
        let e = parse_assignment("allowDefault=maybe").unwrap_err();
        assert_eq!(
            e.to_string(),
            "allowDefault=maybe: the value must be true or false (or 1/0)"
        );
        assert!(matches!(
            parse_assignment("allowDefault"),
            Err(SettingsError::NotAssignment(_))
        ));
    }

    #[test]
    fn local_conf_round_trips_in_zerotiers_format() {
        let s = allow(&[(Setting::AllowDefault, true), (Setting::AllowDns, true)]);
        let text = s.to_local_conf();
        assert_eq!(
            text,
            "allowManaged=1\nallowGlobal=0\nallowDefault=1\nallowDNS=1\n"
        );
        assert_eq!(NetworkSettings::from_local_conf(&text), Ok(s));
        // Missing keys take their defaults; comments and blank lines are skipped.
        assert_eq!(
            NetworkSettings::from_local_conf("# mine\n\nallowGlobal=1\n"),
            Ok(allow(&[(Setting::AllowGlobal, true)]))
        );
        let e = NetworkSettings::from_local_conf("allowManaged=1\nallowManaged=10.0.0.0/8\n")
            .unwrap_err();
        assert!(e.to_string().starts_with("line 2: allowManaged="), "{e}");
    }
}
