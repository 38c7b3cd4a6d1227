//! The host side of a joined network: one TAP device with the network's MTU, our member
//! MAC, managed addresses and routes, kept in step with the network config.
//!
//! Contract:
//! - [`NetDevice::create`] makes the TAP (which comes up with its MTU and MAC, see
//!   [`Tap::create`]) and installs the addresses, then the routes. If any step fails the
//!   TAP is dropped again, so nothing half-configured stays behind.
//! - [`NetDevice::apply`] moves the device to a new [`DeviceConfig`] by difference against
//!   what this device installed: it removes routes and addresses that are gone, adds what
//!   is new and changes MTU/MAC only when they differ. Unchanged state is never touched
//!   (no flapping), so applying the same config twice does nothing and returns no
//!   [`Change`]. Each step is recorded as it succeeds, so after an error a later `apply`
//!   picks up where this one stopped. An address or route that is already there counts
//!   as added, one that is already gone as removed.
//! - [`NetDevice::remove`] withdraws routes and addresses, then deletes the TAP. Simply
//!   dropping a `NetDevice` deletes the TAP too (the kernel then drops its addresses and
//!   routes).
//! - Routes: a [`RouteSpec`] without `via` is on-link (scope link); with `via` it goes
//!   through that gateway, normally another member's managed IP. Two kinds of configured
//!   routes are *not* installed: an on-link route that equals the prefix of one of our
//!   addresses (the kernel already added that prefix route with the address, and
//!   withdrawing ours would take the kernel's with it), and a route via one of our own
//!   addresses (we are that gateway; the route is for the other members).
//! - A default route (`0.0.0.0/0`, `::/0`) is installed as its two halves (`0.0.0.0/1` and
//!   `128.0.0.0/1`, `::/1` and `8000::/1`), as ZeroTier does: the halves win over the
//!   host's own default route by being more specific, where a second `/0` would be
//!   refused by the kernel (`EEXIST`) or lose on metric.
//! - The [`NetConf`] passed in must live in the namespace the TAP is created in; `create`
//!   checks it. Everything here needs `CAP_NET_ADMIN` and a tokio runtime.
//!
//! Interface names: [`interface_name`] gives `sky` + the last 8 hex digits of the network
//! ID (11 bytes, e.g. `sky1c000001`), leaving room under Linux's 15-byte limit for a VLAN
//! suffix such as `.100`. Two joined networks whose IDs end in the same 8 digits would
//! collide; the second `create` then fails with an error that names the interface.
//!
//! Callers: the node driver, once per joined network, when a network config arrives or
//! changes; its frame loop reads and writes through [`NetDevice::tap`].

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::io::netconf::{NetConf, NetConfError};
use crate::io::tap::{MIN_MTU, Queues, Tap, TapError};
use crate::types::{Mac, NetworkId, NodeAddress};

/// Prefix of every skylan network interface name.
pub const INTERFACE_PREFIX: &str = "sky";
/// IPv6 needs at least this MTU; Linux disables IPv6 on smaller links.
pub const IPV6_MIN_MTU: u16 = 1280;
/// How long [`NetDevice::remove`] waits for the kernel to delete the TAP.
const REMOVE_WAIT: Duration = Duration::from_secs(2);
const REMOVE_POLL: Duration = Duration::from_millis(20);

/// The interface name of a network: `sky` + the last 8 hex digits of its ID.
pub fn interface_name(network: NetworkId) -> String {
    format!("{INTERFACE_PREFIX}{:08x}", network.value() & 0xffff_ffff)
}

/// The Ethernet multicast groups the kernel has each device listening to (what ZeroTier
/// reports as a network's `multicastSubscriptions`), by device name, from one read of
/// `/proc/net/dev_mcast`; empty when the file cannot be read.
pub fn multicast_groups() -> HashMap<String, Vec<Mac>> {
    std::fs::read_to_string("/proc/net/dev_mcast")
        .map(|text| parse_dev_mcast(&text))
        .unwrap_or_default()
}

/// The text of `/proc/net/dev_mcast` (lines of: index, name, users, global flag,
/// address as 12 hex digits) as addresses by device. Lines that do not parse are skipped.
fn parse_dev_mcast(text: &str) -> HashMap<String, Vec<Mac>> {
    let mut groups: HashMap<String, Vec<Mac>> = HashMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, name, _, _, hex] = fields[..] else {
            continue;
        };
        let mut bytes = [0u8; 6];
        if hex.len() == 12 && hex::decode_to_slice(hex, &mut bytes).is_ok() {
            groups.entry(name.to_string()).or_default().push(Mac(bytes));
        }
    }
    groups
}

/// A route the network config asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteSpec {
    /// The destination prefix (host bits are ignored).
    pub target: IpNet,
    /// The next hop (another member's managed IP), or None for an on-link route.
    pub via: Option<IpAddr>,
}

impl RouteSpec {
    /// The same route with the host bits of the target cleared (how the kernel keeps it).
    pub fn normalized(self) -> RouteSpec {
        RouteSpec {
            target: self.target.trunc(),
            via: self.via,
        }
    }
}

impl fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.via {
            Some(gw) => write!(f, "{} via {gw}", self.target.trunc()),
            None => write!(f, "{} on-link", self.target.trunc()),
        }
    }
}

/// What the device of one network should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    /// Interface name (see [`interface_name`]); fixed for the life of the device.
    pub name: String,
    /// Our member MAC on the network ([`Mac::for_member`]).
    pub mac: Mac,
    /// The network's MTU.
    pub mtu: u16,
    /// Our managed addresses with their prefix lengths (e.g. `198.18.0.1/24`).
    pub addresses: Vec<IpNet>,
    /// The network's routes.
    pub routes: Vec<RouteSpec>,
    /// One TAP queue, or several for packet workers; fixed for the life of the device.
    pub queues: Queues,
}

impl DeviceConfig {
    /// The config for member `me` of `network`: the standard name and our member MAC.
    pub fn for_network(
        network: NetworkId,
        me: NodeAddress,
        mtu: u16,
        addresses: Vec<IpNet>,
        routes: Vec<RouteSpec>,
    ) -> DeviceConfig {
        DeviceConfig {
            name: interface_name(network),
            mac: Mac::for_member(me, network),
            mtu,
            addresses,
            routes,
            queues: Queues::One,
        }
    }

    /// Checks what can be checked without the kernel.
    pub fn validate(&self) -> Result<(), NetdevError> {
        let bad = |reason: String| NetdevError::BadConfig {
            iface: self.name.clone(),
            reason,
        };
        if self.mtu < MIN_MTU {
            return Err(bad(format!(
                "MTU {} is below {MIN_MTU}, the least IPv4 needs",
                self.mtu
            )));
        }
        if self.mac.is_multicast() || self.mac.0 == [0; 6] {
            return Err(bad(format!(
                "MAC {} cannot be an interface's own address (it must be unicast and not zero)",
                self.mac
            )));
        }
        for addr in &self.addresses {
            let ip = addr.addr();
            if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
                return Err(bad(format!(
                    "{addr} cannot be an interface address (unspecified, multicast or loopback)"
                )));
            }
            if ip.is_ipv6() && self.mtu < IPV6_MIN_MTU {
                return Err(bad(format!(
                    "IPv6 address {addr} needs an MTU of at least {IPV6_MIN_MTU}, the network's is {}",
                    self.mtu
                )));
            }
        }
        for route in &self.routes {
            if let Some(gw) = route.via {
                if gw.is_ipv4() != route.target.addr().is_ipv4() {
                    return Err(bad(format!(
                        "route {route}: the gateway must be of the same IP family as the target"
                    )));
                }
                if gw.is_unspecified() || gw.is_multicast() {
                    return Err(bad(format!("route {route}: {gw} cannot be a gateway")));
                }
            }
        }
        Ok(())
    }

    /// The addresses to install: as configured, without repeats.
    fn wanted_addresses(&self) -> Vec<IpNet> {
        let mut seen = HashSet::new();
        self.addresses
            .iter()
            .copied()
            .filter(|a| seen.insert(*a))
            .collect()
    }

    /// The routes to install (see the module docs for the two kinds left out, and default
    /// routes split in halves), normalized and without repeats.
    fn wanted_routes(&self) -> Vec<RouteSpec> {
        let prefixes: HashSet<IpNet> = self.addresses.iter().map(|a| a.trunc()).collect();
        let own: HashSet<IpAddr> = self.addresses.iter().map(|a| a.addr()).collect();
        let mut seen = HashSet::new();
        self.routes
            .iter()
            .map(|r| r.normalized())
            .flat_map(halves)
            .filter(|r| match r.via {
                None => !prefixes.contains(&r.target),
                Some(gw) => !own.contains(&gw),
            })
            .filter(|r| seen.insert(*r))
            .collect()
    }
}

/// A default route as its two halves (see the module docs); any other route as it is.
fn halves(route: RouteSpec) -> Vec<RouteSpec> {
    if route.target.prefix_len() != 0 {
        return vec![route];
    }
    // A /0 always has /1 subnets.
    route
        .target
        .subnets(1)
        .into_iter()
        .flatten()
        .map(|target| RouteSpec { target, ..route })
        .collect()
}

/// One thing [`NetDevice::create`] or [`NetDevice::apply`] changed on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The MTU changed.
    Mtu {
        /// Before.
        from: u16,
        /// After.
        to: u16,
    },
    /// The MAC changed.
    Mac {
        /// Before.
        from: Mac,
        /// After.
        to: Mac,
    },
    /// An address was added.
    AddressAdded(IpNet),
    /// An address was removed.
    AddressRemoved(IpNet),
    /// A route was added (or put back after the kernel dropped it).
    RouteAdded(RouteSpec),
    /// A route was removed.
    RouteRemoved(RouteSpec),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Mtu { from, to } => write!(f, "MTU {from} -> {to}"),
            Change::Mac { from, to } => write!(f, "MAC {from} -> {to}"),
            Change::AddressAdded(a) => write!(f, "added address {a}"),
            Change::AddressRemoved(a) => write!(f, "removed address {a}"),
            Change::RouteAdded(r) => write!(f, "added route {r}"),
            Change::RouteRemoved(r) => write!(f, "removed route {r}"),
        }
    }
}

/// Why a network device could not be created, changed or removed.
#[derive(Debug, thiserror::Error)]
pub enum NetdevError {
    /// The config cannot be applied as it is; nothing was changed.
    #[error("network device {iface}: {reason}")]
    BadConfig {
        /// The interface.
        iface: String,
        /// What is wrong and what would be right.
        reason: String,
    },
    /// The TAP device could not be created.
    #[error(transparent)]
    Tap(#[from] TapError),
    /// The kernel refused a configuration step.
    #[error("configuring network device {iface}: {source}")]
    Netlink {
        /// The interface.
        iface: String,
        /// The refused request (names the operation and its argument).
        #[source]
        source: NetConfError,
    },
    /// `apply` was given a config with another interface name.
    #[error("network device {iface} cannot be renamed to {wanted}; remove it and create a new one")]
    Rename {
        /// The current name.
        iface: String,
        /// The name asked for.
        wanted: String,
    },
    /// The `NetConf` given to `create` talks to another network namespace than the TAP's.
    #[error(
        "network device {iface}: the netlink connection is in another network namespace \
         than the TAP (create both on the same thread)"
    )]
    WrongNamespace {
        /// The interface.
        iface: String,
    },
    /// `remove` withdrew addresses and routes, but the TAP is still open elsewhere, so
    /// the kernel deletes it only when the last handle is dropped.
    #[error(
        "network device {iface}: addresses and routes were withdrawn, but {holders} other \
         handle(s) still hold the TAP open; it is deleted when they are dropped (stop the \
         frame loop first)"
    )]
    StillOpen {
        /// The interface.
        iface: String,
        /// How many other `Arc<Tap>` clones exist.
        holders: usize,
    },
    /// The TAP was closed but the interface did not go away.
    #[error(
        "network device {iface} still exists after its TAP was closed; \
         delete it with `ip link del {iface}`"
    )]
    StillPresent {
        /// The interface.
        iface: String,
    },
}

/// A joined network's TAP device with its host configuration.
#[derive(Debug)]
pub struct NetDevice {
    tap: Arc<Tap>,
    /// The config most recently applied in full.
    config: DeviceConfig,
    /// What this device has installed on the host (updated step by step).
    installed: Installed,
}

/// The host state this device is responsible for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Installed {
    mtu: u16,
    mac: Mac,
    addresses: Vec<IpNet>,
    routes: Vec<RouteSpec>,
}

/// One netlink request of a plan, in execution order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    SetMtu(u16),
    SetMac(Mac),
    DelRoute(RouteSpec),
    DelAddress(IpNet),
    AddAddress(IpNet),
    AddRoute(RouteSpec),
    /// Re-add a route we keep, in case the kernel dropped it with a removed address.
    EnsureRoute(RouteSpec),
}

impl NetDevice {
    /// Creates the TAP `config.name` and configures it (see the module docs). Must run
    /// inside a tokio runtime on a thread in the target namespace, with `nc` opened there.
    pub async fn create(config: DeviceConfig, nc: &NetConf) -> Result<NetDevice, NetdevError> {
        config.validate()?;
        let tap = Tap::create(&config.name, config.mtu, config.mac, config.queues)?;
        let iface = tap.name().to_string();
        match nc.link_index(&iface).await {
            Ok(index) if index == tap.index() => {}
            Ok(_) | Err(NetConfError::NoSuchLink(_)) => {
                return Err(NetdevError::WrongNamespace { iface });
            }
            Err(source) => return Err(NetdevError::Netlink { iface, source }),
        }
        let installed = Installed {
            mtu: config.mtu,
            mac: config.mac,
            addresses: Vec::new(),
            routes: Vec::new(),
        };
        let mut dev = NetDevice {
            tap: Arc::new(tap),
            config: config.clone(),
            installed,
        };
        if let Err(e) = dev.apply(&config, nc).await {
            // Deleting the TAP takes what was installed with it; wait until the kernel
            // has removed it, so the name is free again when this returns.
            if let Err(gone) = dev.remove(nc).await {
                tracing::warn!("removing a half-configured device: {gone}");
            }
            return Err(e);
        }
        Ok(dev)
    }

    /// Moves the device to `new` (see the module docs) and returns what changed.
    pub async fn apply(
        &mut self,
        new: &DeviceConfig,
        nc: &NetConf,
    ) -> Result<Vec<Change>, NetdevError> {
        if new.name != self.tap.name() {
            return Err(NetdevError::Rename {
                iface: self.tap.name().to_string(),
                wanted: new.name.clone(),
            });
        }
        new.validate()?;
        let mut changes = Vec::new();
        for step in plan(&self.installed, new) {
            self.execute(step, nc, &mut changes).await?;
        }
        self.config = new.clone();
        Ok(changes)
    }

    /// Withdraws routes and addresses, deletes the TAP and waits until the kernel has
    /// removed the interface. Withdrawal is best effort (deleting the interface takes
    /// whatever is left); the error says if the interface could not be deleted.
    pub async fn remove(self, nc: &NetConf) -> Result<(), NetdevError> {
        let iface = self.tap.name().to_string();
        let index = self.tap.index();
        for route in self.installed.routes.iter().rev() {
            if let Err(e) = nc.del_route(route.target, route.via, index).await
                && e.errno() != Some(libc::ESRCH)
            {
                tracing::warn!(%iface, error = %e, "withdrawing a route before deleting the device");
            }
        }
        for addr in self.installed.addresses.iter().rev() {
            if let Err(e) = nc.del_address(index, *addr).await
                && e.errno() != Some(libc::EADDRNOTAVAIL)
            {
                tracing::warn!(%iface, error = %e, "withdrawing an address before deleting the device");
            }
        }
        let holders = Arc::strong_count(&self.tap) - 1;
        drop(self.tap);
        if holders > 0 {
            return Err(NetdevError::StillOpen { iface, holders });
        }
        let mut waited = Duration::ZERO;
        loop {
            match nc.link_index(&iface).await {
                Err(NetConfError::NoSuchLink(_)) => return Ok(()),
                // Same name but another index: someone else's new device, ours is gone.
                Ok(i) if i != index => return Ok(()),
                Ok(_) if waited < REMOVE_WAIT => {}
                Ok(_) => return Err(NetdevError::StillPresent { iface }),
                Err(source) => return Err(NetdevError::Netlink { iface, source }),
            }
            tokio::time::sleep(REMOVE_POLL).await;
            waited += REMOVE_POLL;
        }
    }

    /// The TAP, for the frame loop (clone the `Arc` for a reader task; drop the clones
    /// before [`NetDevice::remove`]). Its `mtu()` is the creation-time MTU; the current
    /// one is [`NetDevice::mtu`].
    pub fn tap(&self) -> &Arc<Tap> {
        &self.tap
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        self.tap.name()
    }

    /// The MTU in force (size read buffers as MTU + 18 for a VLAN-tagged header).
    pub fn mtu(&self) -> u16 {
        self.installed.mtu
    }

    /// The config most recently applied in full.
    pub fn config(&self) -> &DeviceConfig {
        &self.config
    }

    /// The routes this device installed (the configured ones minus those the module docs
    /// leave out).
    pub fn installed_routes(&self) -> &[RouteSpec] {
        &self.installed.routes
    }

    async fn execute(
        &mut self,
        step: Step,
        nc: &NetConf,
        changes: &mut Vec<Change>,
    ) -> Result<(), NetdevError> {
        let index = self.tap.index();
        let iface = || self.tap.name().to_string();
        let fail = |source| NetdevError::Netlink {
            iface: iface(),
            source,
        };
        let installed = &mut self.installed;
        match step {
            Step::SetMtu(mtu) => {
                nc.set_mtu(index, mtu).await.map_err(fail)?;
                changes.push(Change::Mtu {
                    from: installed.mtu,
                    to: mtu,
                });
                installed.mtu = mtu;
            }
            Step::SetMac(mac) => {
                nc.set_mac(index, mac).await.map_err(fail)?;
                changes.push(Change::Mac {
                    from: installed.mac,
                    to: mac,
                });
                installed.mac = mac;
            }
            Step::DelRoute(route) => {
                tolerate(
                    nc.del_route(route.target, route.via, index).await,
                    libc::ESRCH,
                )
                .map_err(fail)?;
                installed.routes.retain(|r| *r != route);
                changes.push(Change::RouteRemoved(route));
            }
            Step::DelAddress(addr) => {
                tolerate(nc.del_address(index, addr).await, libc::EADDRNOTAVAIL).map_err(fail)?;
                installed.addresses.retain(|a| *a != addr);
                changes.push(Change::AddressRemoved(addr));
            }
            Step::AddAddress(addr) => {
                tolerate(nc.add_address(index, addr).await, libc::EEXIST).map_err(fail)?;
                installed.addresses.push(addr);
                changes.push(Change::AddressAdded(addr));
            }
            Step::AddRoute(route) => {
                tolerate(
                    nc.add_route(route.target, route.via, index).await,
                    libc::EEXIST,
                )
                .map_err(fail)?;
                installed.routes.push(route);
                changes.push(Change::RouteAdded(route));
            }
            Step::EnsureRoute(route) => match nc.add_route(route.target, route.via, index).await {
                Ok(()) => changes.push(Change::RouteAdded(route)),
                Err(e) if e.errno() == Some(libc::EEXIST) => {}
                Err(e) => return Err(fail(e)),
            },
        }
        Ok(())
    }
}

/// `Ok` also when the kernel answered `errno` (the state asked for is already there).
fn tolerate(result: Result<(), NetConfError>, errno: i32) -> Result<(), NetConfError> {
    match result {
        Err(e) if e.errno() == Some(errno) => Ok(()),
        other => other,
    }
}

/// The netlink requests that take `installed` to `new`, in order: a larger MTU and the
/// MAC; routes, then addresses, that are gone; a smaller MTU; addresses, then routes, that
/// are new; and, if an address was removed, every kept route once more (removing an
/// address can take routes through it along).
fn plan(installed: &Installed, new: &DeviceConfig) -> Vec<Step> {
    let mut steps = Vec::new();
    // A larger MTU goes first (IPv6 addresses below may need it); a smaller one after the
    // removals (so the kernel does not drop IPv6 state we are about to remove ourselves).
    if new.mtu > installed.mtu {
        steps.push(Step::SetMtu(new.mtu));
    }
    if new.mac != installed.mac {
        steps.push(Step::SetMac(new.mac));
    }
    let addresses = new.wanted_addresses();
    let routes = new.wanted_routes();
    steps.extend(
        installed
            .routes
            .iter()
            .rev()
            .filter(|r| !routes.contains(r))
            .map(|r| Step::DelRoute(*r)),
    );
    let removed_addresses: Vec<IpNet> = installed
        .addresses
        .iter()
        .rev()
        .filter(|a| !addresses.contains(a))
        .copied()
        .collect();
    steps.extend(removed_addresses.iter().map(|a| Step::DelAddress(*a)));
    if new.mtu < installed.mtu {
        steps.push(Step::SetMtu(new.mtu));
    }
    steps.extend(
        addresses
            .iter()
            .filter(|a| !installed.addresses.contains(a))
            .map(|a| Step::AddAddress(*a)),
    );
    steps.extend(
        routes
            .iter()
            .filter(|r| !installed.routes.contains(r))
            .map(|r| Step::AddRoute(*r)),
    );
    if !removed_addresses.is_empty() {
        steps.extend(
            routes
                .iter()
                .filter(|r| installed.routes.contains(r))
                .map(|r| Step::EnsureRoute(*r)),
        );
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test prefix")
    }

    fn route(target: &str, via: Option<&str>) -> RouteSpec {
        RouteSpec {
            target: net(target),
            via: via.map(|v| v.parse().expect("test gateway")),
        }
    }

    const MAC: Mac = Mac([0x02, 0x5a, 0, 0, 0, 1]);

    fn config(addresses: &[&str], routes: &[RouteSpec]) -> DeviceConfig {
        DeviceConfig {
            name: "sky1c000001".into(),
            mac: MAC,
            mtu: 2800,
            addresses: addresses.iter().map(|a| net(a)).collect(),
            routes: routes.to_vec(),
            queues: Queues::One,
        }
    }

    fn installed_as(config: &DeviceConfig) -> Installed {
        Installed {
            mtu: config.mtu,
            mac: config.mac,
            addresses: config.wanted_addresses(),
            routes: config.wanted_routes(),
        }
    }

    fn empty(mtu: u16) -> Installed {
        Installed {
            mtu,
            mac: MAC,
            addresses: vec![],
            routes: vec![],
        }
    }

    #[test]
    fn interface_names_use_the_last_eight_hex_digits_and_fit_linux() {
        let n: NetworkId = "8056c2e21c000001".parse().unwrap();
        assert_eq!(interface_name(n), "sky1c000001");
        let n: NetworkId = "8056c2e200abcdef".parse().unwrap();
        assert_eq!(interface_name(n), "sky00abcdef");
        assert!(interface_name(n).len() + ".100".len() <= crate::io::tap::MAX_NAME_LEN);
        let me: NodeAddress = "89e92ceee5".parse().unwrap();
        let c = DeviceConfig::for_network(n, me, 2800, vec![], vec![]);
        assert_eq!(c.name, "sky00abcdef");
        assert_eq!(c.mac.to_member(n), Some(me));
    }

    #[test]
    fn creating_installs_addresses_before_routes() {
        let gw = route("198.18.128.0/24", Some("198.18.0.9"));
        let new = config(&["198.18.0.1/24", "198.19.7.1/24"], &[gw]);
        assert_eq!(
            plan(&empty(2800), &new),
            vec![
                Step::AddAddress(net("198.18.0.1/24")),
                Step::AddAddress(net("198.19.7.1/24")),
                Step::AddRoute(gw),
            ]
        );
    }

    #[test]
    fn the_same_config_twice_plans_nothing() {
        let c = config(
            &["198.18.0.1/24", "fd00:5a::1/88"],
            &[
                route("198.18.128.0/24", Some("198.18.0.9")),
                route("198.19.0.0/16", None),
            ],
        );
        assert_eq!(plan(&installed_as(&c), &c), vec![]);
        // Neither do repeats in the config.
        let mut twice = c.clone();
        twice.addresses.push(net("198.18.0.1/24"));
        twice.routes.push(route("198.19.0.0/16", None));
        assert_eq!(plan(&installed_as(&c), &twice), vec![]);
    }

    #[test]
    fn changes_remove_before_adding_and_keep_what_stays() {
        let via = route("198.18.128.0/24", Some("198.18.0.9"));
        let old = config(&["198.18.0.1/24", "198.19.7.1/24"], &[via]);
        let added = route("203.0.113.0/24", Some("198.18.0.9"));
        let mut new = config(&["198.18.0.1/24"], &[via, added]);
        new.mtu = 1400;
        assert_eq!(
            plan(&installed_as(&old), &new),
            vec![
                Step::DelAddress(net("198.19.7.1/24")),
                Step::SetMtu(1400),
                Step::AddRoute(added),
                Step::EnsureRoute(via),
            ]
        );
        let gone = config(&["198.18.0.1/24"], &[]);
        assert_eq!(
            plan(&installed_as(&old), &gone),
            vec![Step::DelRoute(via), Step::DelAddress(net("198.19.7.1/24")),]
        );
    }

    #[test]
    fn the_mtu_grows_before_ipv6_is_added_and_shrinks_after_it_is_removed() {
        let v4 = DeviceConfig {
            mtu: 1200,
            ..config(&["198.18.0.1/24"], &[])
        };
        let v6 = config(&["198.18.0.1/24", "fd00:5a::1/88"], &[]);
        assert_eq!(
            plan(&installed_as(&v4), &v6),
            vec![Step::SetMtu(2800), Step::AddAddress(net("fd00:5a::1/88"))]
        );
        assert_eq!(
            plan(&installed_as(&v6), &v4),
            vec![Step::DelAddress(net("fd00:5a::1/88")), Step::SetMtu(1200)]
        );
    }

    #[test]
    fn a_changed_prefix_length_replaces_the_address() {
        let old = config(&["198.18.0.1/24"], &[]);
        let new = config(&["198.18.0.1/16"], &[]);
        assert_eq!(
            plan(&installed_as(&old), &new),
            vec![
                Step::DelAddress(net("198.18.0.1/24")),
                Step::AddAddress(net("198.18.0.1/16")),
            ]
        );
    }

    #[test]
    fn on_link_routes_of_our_own_prefixes_are_left_to_the_kernel() {
        let subnet = route("198.18.0.0/24", None);
        let c = config(&["198.18.0.1/24"], &[subnet, route("198.18.7.7/24", None)]);
        // The prefix route comes with the address; the other is normalized.
        assert_eq!(c.wanted_routes(), vec![route("198.18.7.0/24", None)]);
        // When the address goes, the route must be installed by us.
        let without = config(&[], &[subnet]);
        assert_eq!(
            plan(&installed_as(&c), &without),
            vec![
                Step::DelRoute(route("198.18.7.0/24", None)),
                Step::DelAddress(net("198.18.0.1/24")),
                Step::AddRoute(subnet),
            ]
        );
        // And when an address covers it again, ours goes before the address comes.
        assert_eq!(
            plan(
                &installed_as(&without),
                &config(&["198.18.0.1/24"], &[subnet])
            ),
            vec![
                Step::DelRoute(subnet),
                Step::AddAddress(net("198.18.0.1/24")),
            ]
        );
    }

    #[test]
    fn default_routes_are_installed_as_their_halves() {
        let c = config(
            &["198.18.0.9/24", "fd00:5a::9/88"],
            &[
                route("0.0.0.0/0", Some("198.18.0.1")),
                route("::/0", None),
                route("198.19.0.0/16", None),
            ],
        );
        assert_eq!(
            c.wanted_routes(),
            vec![
                route("0.0.0.0/1", Some("198.18.0.1")),
                route("128.0.0.0/1", Some("198.18.0.1")),
                route("::/1", None),
                route("8000::/1", None),
                route("198.19.0.0/16", None),
            ]
        );
    }

    #[test]
    fn routes_via_our_own_address_are_not_installed() {
        let c = config(
            &["198.18.0.9/24"],
            &[route("198.18.128.0/24", Some("198.18.0.9"))],
        );
        assert_eq!(c.wanted_routes(), vec![]);
    }

    #[test]
    fn bad_configs_are_refused_with_the_interface_named() {
        let cases = [
            DeviceConfig {
                mtu: 60,
                ..config(&[], &[])
            },
            DeviceConfig {
                mtu: 1200,
                ..config(&["fd00:5a::1/88"], &[])
            },
            DeviceConfig {
                mac: Mac::BROADCAST,
                ..config(&[], &[])
            },
            config(&["0.0.0.0/0"], &[]),
            config(&["224.0.0.1/4"], &[]),
            config(&[], &[route("2001:db8::/32", Some("198.18.0.9"))]),
            config(&[], &[route("198.18.128.0/24", Some("fd00::9"))]),
            config(&[], &[route("198.18.128.0/24", Some("0.0.0.0"))]),
        ];
        for c in cases {
            let err = c.validate().unwrap_err();
            assert!(matches!(err, NetdevError::BadConfig { .. }), "{err}");
            assert!(err.to_string().contains("sky1c000001"), "{err}");
        }
        assert!(
            config(
                &["198.18.0.1/24", "fd00:5a::1/88"],
                &[route("0.0.0.0/0", Some("198.18.0.9"))]
            )
            .validate()
            .is_ok()
        );
    }

    #[test]
    fn changes_read_well_in_logs() {
        assert_eq!(
            Change::RouteAdded(route("198.18.128.7/24", Some("198.18.0.9"))).to_string(),
            "added route 198.18.128.0/24 via 198.18.0.9"
        );
        assert_eq!(
            Change::RouteRemoved(route("198.19.0.0/16", None)).to_string(),
            "removed route 198.19.0.0/16 on-link"
        );
        assert_eq!(
            Change::Mtu {
                from: 2800,
                to: 1400
            }
            .to_string(),
            "MTU 2800 -> 1400"
        );
    }

    #[test]
    fn multicast_groups_come_from_dev_mcast() {
        let text = "2    eth0            1     0     333300000001\n\
                    3    skya000dbdc     1     0     01005e000001\n\
                    3    skya000dbdc     2     0     3333ff395fca\n\
                    3    skya000dbdc     1     0     nothex000000\n\
                    garbage\n";
        let groups = parse_dev_mcast(text);
        assert_eq!(
            groups["skya000dbdc"],
            vec![
                "01:00:5e:00:00:01".parse::<Mac>().unwrap(),
                "33:33:ff:39:5f:ca".parse().unwrap()
            ]
        );
        assert_eq!(groups["eth0"].len(), 1);
        assert!(!groups.contains_key("skyother"));
    }
}
