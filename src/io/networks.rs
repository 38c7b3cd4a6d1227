//! The node driver's networks: one TAP device per configured network (MAC, MTU,
//! managed addresses and routes through netlink), and the cache in
//! `<home>/networks.d/` that lets a node come back with its networks while the
//! controller is down.
//!
//! Cache files per network: `<nwid>.conf` (the last signed config; empty while none has
//! arrived — its presence means "joined") and `<nwid>.controller` (the controller's
//! public identity, to verify the cached config at start). A cached config that cannot
//! be read or verified at start is logged and moved to `<nwid>.conf.damaged`; it is
//! never used, and never silently taken for "no config".
//!
//! Devices are created only for networks whose config verified; a network that turns
//! ACCESS_DENIED or NOT_FOUND, or that is left, loses its device (addresses and routes
//! withdrawn, TAP removed) and its cached config.
//!
//! **Opt-ins.** The member's settings for a network (`allowManaged`, `allowGlobal`,
//! `allowDefault`, `allowDNS`; see [`crate::service::optin`]) live in
//! `<nwid>.local.conf`, in ZeroTier's format, and decide which of the config's addresses
//! and routes the device gets. [`Networks::set`] saves a change and re-applies the
//! device at once (addresses and routes added or withdrawn). Leaving a network deletes
//! its `.local.conf`, as ZeroTier does: a later join starts from the defaults (ZeroTier's,
//! or those of `<home>/local.toml`, see [`super::local`]). A
//! `.local.conf` that cannot be read is logged, and until it is fixed (or removed, for
//! the defaults; `skylan set` rewrites it) the network installs nothing managed: a
//! member who turned something off is never opted in by a damaged file.
//!
//! **Underlay.** No managed route (nor an address's prefix route) is installed that
//! would carry the underlay address of a root or a peer into the overlay.
//! [`Networks::watch_underlay`], called from the packet loop, notes the paths the node
//! core reports every [`UNDERLAY_CHECK`], lists the host's routes, and re-applies every
//! device when what it found changed, so a route that would take a newly seen peer's
//! path is withdrawn within that time. Every skipped item is shown in `networks` with
//! its reason and logged once when it starts being skipped.
//!
//! The TAPs are read and written by the node's packet threads themselves
//! ([`Networks::taps`]): no reader task, no channel per frame.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::dns::HostDns;
use super::home::{Home, HomeError, write_file};
use super::local::NetworkDefaults;
use super::netconf::NetConf;
use super::netdev::{DeviceConfig, NetDevice, RouteSpec};
use super::tap::{Queues, Tap};
use super::underlay::Endpoints;
use crate::controller::NetworkConfig;
use crate::controller::model::{DEFAULT_MTU, Dns};
use crate::crypto::identity::PublicIdentity;
use crate::node::Node;
use crate::service::member;
use crate::service::optin::{
    self, Managed, NetworkSettings, Setting, SkipReason, Skipped, Underlay,
};
use crate::types::{MulticastGroup, NetworkId, NodeAddress, Time};

/// How often [`Networks::watch_underlay`] looks at the node's paths and the host's routes.
pub const UNDERLAY_CHECK: Duration = Duration::from_secs(5);
/// How often [`Networks::watch_groups`] reads the devices' multicast groups.
pub const GROUP_CHECK: Duration = Duration::from_secs(2);

/// See the module documentation.
pub struct Networks {
    dir: PathBuf,
    me: NodeAddress,
    netconf: Option<NetConf>,
    /// Devices get several queues when packet workers read them.
    queues: Queues,
    devices: HashMap<NetworkId, NetDevice>,
    configs: HashMap<NetworkId, NetworkConfig>,
    /// Why a configured network has no device (ZeroTier's PORT_ERROR).
    port_errors: HashMap<NetworkId, String>,
    /// Bumped whenever a device appears or goes, so the driver knows to re-read
    /// [`taps`](Self::taps).
    generation: u64,
    /// The member's opt-ins per joined network, as loaded or last set.
    settings: HashMap<NetworkId, NetworkSettings>,
    /// What the last plan of each network left out, and why.
    skipped: HashMap<NetworkId, Vec<Skipped>>,
    /// Underlay addresses of roots and peers, as the node reported them.
    endpoints: Endpoints,
    /// What the last plan protected, to re-plan only when it changes.
    underlay: Vec<Underlay>,
    /// When [`watch_underlay`](Self::watch_underlay) looks next.
    next_check: Instant,
    /// When [`watch_groups`](Self::watch_groups) looks next.
    next_group_check: Instant,
    /// The opt-ins of a network without a `.local.conf` (from `local.toml`).
    defaults: NetworkDefaults,
    /// DNS settings given to the host's resolver.
    dns: HostDns,
}

impl Networks {
    /// Opens the cache directory. Devices are made with `queues`; a network without a
    /// `.local.conf` has the opt-ins of `defaults`.
    pub fn new(home: &Home, me: NodeAddress, queues: Queues, defaults: NetworkDefaults) -> Self {
        let dir = home.path("networks.d");
        let _ = std::fs::create_dir_all(&dir);
        let netconf = match NetConf::new() {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!("netlink unavailable, networks get no devices: {e}");
                None
            }
        };
        Self {
            dir,
            me,
            netconf,
            queues,
            devices: HashMap::new(),
            configs: HashMap::new(),
            port_errors: HashMap::new(),
            generation: 0,
            settings: HashMap::new(),
            skipped: HashMap::new(),
            endpoints: Endpoints::default(),
            underlay: Vec::new(),
            next_check: Instant::now(),
            next_group_check: Instant::now(),
            defaults,
            dns: HostDns::detect(),
        }
    }

    /// Joins every cached network, applying its cached config when it still verifies.
    /// A cached config that cannot be read or does not verify is never used, nor
    /// quietly dropped: it is logged (which file, what is wrong) and kept beside as
    /// `<nwid>.conf.damaged`, and the network stays joined and waits for a fresh
    /// config from its controller.
    pub async fn restore(&mut self, node: &mut Node, now: crate::types::Time) {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(
                    dir = %self.dir.display(),
                    "cannot list the cached networks, so none are rejoined: {e}"
                );
                return;
            }
        };
        let mut ids: Vec<NetworkId> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".conf")?.parse().ok()
            })
            .collect();
        ids.sort();
        self.endpoints.note(&node.peers(now), Instant::now());
        for network in ids {
            node.join(now, network);
            self.load_settings(network);
            let (config, controller) = match read_cached(&self.dir, network) {
                Ok(Cached::Joined) => continue,
                Ok(Cached::Config { config, controller }) => (config, controller),
                Err(problem) => {
                    set_aside(&self.dir, network, &problem);
                    continue;
                }
            };
            match member::apply_config(node, network, controller.signing_key(), &config) {
                Ok(cfg) => {
                    tracing::info!(%network, "restored cached network config");
                    self.configure(network, cfg).await;
                }
                Err(e) => set_aside(&self.dir, network, &format!("does not verify ({e})")),
            }
        }
    }

    /// Records a join (so a restart rejoins) and reads the network's opt-ins.
    pub fn joined(&mut self, network: NetworkId) {
        let path = self.file(network, "conf");
        if !path.exists() {
            let _ = write_file(&path, b"", 0o600);
        }
        if !self.settings.contains_key(&network) {
            self.load_settings(network);
        }
    }

    /// The opt-ins of a network (the defaults for one never joined).
    pub fn settings(&self, network: NetworkId) -> NetworkSettings {
        self.settings
            .get(&network)
            .copied()
            .unwrap_or_else(|| self.defaults.for_network(network))
    }

    /// What the device of a network does not install, and why.
    pub fn skipped(&self, network: NetworkId) -> &[Skipped] {
        self.skipped.get(&network).map_or(&[], Vec::as_slice)
    }

    /// Changes opt-ins of a joined network: saves them to `<nwid>.local.conf`, then
    /// re-applies the network's device at once. Nothing changes when saving fails.
    pub async fn set(
        &mut self,
        network: NetworkId,
        changes: &[(Setting, bool)],
    ) -> Result<NetworkSettings, HomeError> {
        let settings = self.settings(network).with(changes);
        write_file(
            &self.file(network, "local.conf"),
            settings.to_local_conf().as_bytes(),
            0o644,
        )?;
        self.settings.insert(network, settings);
        tracing::info!(%network, settings = %settings.summary(), "network settings changed");
        if let Some(config) = self.configs.get(&network).cloned() {
            self.configure(network, config).await;
        }
        Ok(settings)
    }

    /// Every [`UNDERLAY_CHECK`]: notes the paths in `node`'s peer list, and re-applies
    /// every device if the underlay addresses or the host routes that reach them changed
    /// (see the module documentation). Cheap between checks.
    pub async fn watch_underlay(&mut self, node: &Node, now: Time) {
        let at = Instant::now();
        if at < self.next_check {
            return;
        }
        self.next_check = at + UNDERLAY_CHECK;
        self.endpoints.note(&node.peers(now), at);
        if self.configs.is_empty() {
            return;
        }
        let underlay = self.current_underlay().await;
        if underlay == self.underlay {
            return;
        }
        let configs: Vec<(NetworkId, NetworkConfig)> = self
            .configs
            .iter()
            .map(|(id, c)| (*id, c.clone()))
            .collect();
        for (network, config) in configs {
            self.configure_with(network, config, &underlay).await;
        }
    }

    /// Every [`GROUP_CHECK`]: tells `node` the multicast groups each network's device
    /// joined (read from `/proc/net/dev_mcast`), which it announces to the roots so
    /// frames for IPv6 link-local neighbour discovery, mDNS and other groups reach us.
    pub fn watch_groups(&mut self, node: &mut Node) {
        let at = Instant::now();
        if at < self.next_group_check || self.devices.is_empty() {
            return;
        }
        self.next_group_check = at + GROUP_CHECK;
        let mut groups = super::netdev::multicast_groups();
        for (network, device) in &self.devices {
            let macs = groups.remove(device.name()).unwrap_or_default();
            let joined = macs
                .into_iter()
                .map(|mac| MulticastGroup { mac, adi: 0 })
                .collect();
            node.set_multicast_groups(*network, joined);
        }
    }

    /// A config arrived and verified: cache it and (re)configure the device.
    pub async fn accept(
        &mut self,
        network: NetworkId,
        controller: Option<&PublicIdentity>,
        bytes: &[u8],
        config: NetworkConfig,
    ) {
        let _ = write_file(&self.file(network, "conf"), bytes, 0o600);
        if let Some(c) = controller {
            let _ = write_file(
                &self.file(network, "controller"),
                c.to_string().as_bytes(),
                0o644,
            );
        }
        self.configure(network, config).await;
    }

    /// The network is refused or gone: withdraw its device and cached config (stays joined).
    pub async fn withdraw(&mut self, network: NetworkId) {
        self.configs.remove(&network);
        self.skipped.remove(&network);
        let _ = write_file(&self.file(network, "conf"), b"", 0o600);
        self.remove_device(network).await;
    }

    /// Leaves a network: device, cache and opt-ins removed.
    pub async fn leave(&mut self, network: NetworkId) {
        self.configs.remove(&network);
        self.settings.remove(&network);
        self.skipped.remove(&network);
        self.remove_device(network).await;
        let _ = std::fs::remove_file(self.file(network, "conf"));
        let _ = std::fs::remove_file(self.file(network, "controller"));
        let _ = std::fs::remove_file(self.file(network, "local.conf"));
    }

    /// Every network's TAP, for the driver to read from.
    pub fn taps(&self) -> Vec<(NetworkId, Arc<Tap>)> {
        let mut taps: Vec<(NetworkId, Arc<Tap>)> = self
            .devices
            .iter()
            .map(|(id, d)| (*id, d.tap().clone()))
            .collect();
        taps.sort_by_key(|(id, _)| *id);
        taps
    }

    /// Changes whenever a device appears or goes.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The config in force for a network, if any.
    pub fn config(&self, network: NetworkId) -> Option<&NetworkConfig> {
        self.configs.get(&network)
    }

    /// Why a configured network has no device, if it failed to get one.
    pub fn port_error(&self, network: NetworkId) -> Option<&str> {
        self.port_errors.get(&network).map(String::as_str)
    }

    /// The device name of a network, if it has one.
    pub fn device(&self, network: NetworkId) -> Option<&str> {
        self.devices.get(&network).map(|d| d.name())
    }

    /// Removes every device (at shutdown).
    pub async fn shutdown(&mut self) {
        let ids: Vec<NetworkId> = self.devices.keys().copied().collect();
        for network in ids {
            self.remove_device(network).await;
        }
    }

    async fn configure(&mut self, network: NetworkId, config: NetworkConfig) {
        let underlay = self.current_underlay().await;
        self.configure_with(network, config, &underlay).await;
    }

    /// Configures the device of `network` with what [`optin::plan`] lets through,
    /// protecting `underlay`.
    async fn configure_with(
        &mut self,
        network: NetworkId,
        config: NetworkConfig,
        underlay: &[Underlay],
    ) {
        self.underlay = underlay.to_vec();
        let mtu = u16::try_from(config.mtu).unwrap_or(DEFAULT_MTU as u16);
        let plan = optin::plan(
            &config.assigned_addresses,
            &config.routes,
            self.settings(network),
            underlay,
        );
        let mut skipped = plan.skipped;
        let routes = plan
            .routes
            .iter()
            .map(|r| RouteSpec {
                target: r.target,
                via: r.via,
            })
            .collect();
        let wanted = DeviceConfig {
            queues: self.queues,
            ..DeviceConfig::for_network(network, self.me, mtu, plan.addresses, routes)
        };
        let dns = optin::dns(&config.dns, self.settings(network)).map(Option::<&Dns>::cloned);
        self.configs.insert(network, config);
        if let Some(device) = self.set_up_device(network, wanted).await {
            // Whatever is not (or no longer) set takes back what an earlier config set.
            let outcome = match dns {
                Ok(Some(dns)) => self.dns.apply(&device, &dns).await.map_err(Some),
                Ok(None) => Err(None),
                Err(s) => Err(Some(s.reason)),
            };
            if let Err(reason) = outcome {
                self.dns.revert(&device).await;
                skipped.extend(reason.map(|reason| Skipped {
                    item: Managed::Dns,
                    reason,
                }));
            }
        }
        self.note_skipped(network, skipped);
    }

    /// Makes or updates the device of `network`; its name, or `None` when there is
    /// none (the reason is in `port_errors`).
    async fn set_up_device(&mut self, network: NetworkId, wanted: DeviceConfig) -> Option<String> {
        let Some(nc) = &self.netconf else {
            self.port_errors
                .insert(network, "netlink is not available to this process".into());
            return None;
        };
        if let Some(dev) = self.devices.get_mut(&network) {
            match dev.apply(&wanted, nc).await {
                Ok(changes) if !changes.is_empty() => {
                    tracing::info!(%network, ?changes, "network device updated")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(%network, "network device update failed: {e}"),
            }
            return Some(dev.name().to_string());
        }
        match NetDevice::create(wanted, nc).await {
            Ok(dev) => {
                tracing::info!(%network, device = dev.name(), "network device up");
                let name = dev.name().to_string();
                self.devices.insert(network, dev);
                self.port_errors.remove(&network);
                self.generation += 1;
                Some(name)
            }
            Err(e) => {
                tracing::warn!(%network, "cannot create the network device: {e}");
                self.port_errors.insert(network, e.to_string());
                None
            }
        }
    }

    async fn remove_device(&mut self, network: NetworkId) {
        self.generation += 1;
        self.port_errors.remove(&network);
        if let (Some(dev), Some(nc)) = (self.devices.remove(&network), &self.netconf) {
            self.dns.revert(dev.name()).await;
            if let Err(e) = dev.remove(nc).await {
                tracing::warn!(%network, "removing the network device: {e}");
            }
        }
    }

    /// The underlay addresses to protect now, with the host routes that reach them (not
    /// counting our own devices' routes).
    async fn current_underlay(&self) -> Vec<Underlay> {
        let Some(nc) = &self.netconf else {
            return self.endpoints.resolve(None);
        };
        let ours: Vec<u32> = self.devices.values().map(|d| d.tap().index()).collect();
        match nc.main_routes().await {
            Ok(all) => {
                let routes: Vec<IpNet> = all
                    .into_iter()
                    .filter(|r| r.ifindex.is_none_or(|i| !ours.contains(&i)))
                    .map(|r| r.target)
                    .collect();
                self.endpoints.resolve(Some(&routes))
            }
            Err(e) => {
                tracing::warn!(
                    "{e}; until the routes can be read, no managed route that contains a root's or peer's address is installed"
                );
                self.endpoints.resolve(None)
            }
        }
    }

    /// Records what the plan of `network` skipped, logging each item once when it
    /// starts being skipped (or skipped for another reason).
    fn note_skipped(&mut self, network: NetworkId, skipped: Vec<Skipped>) {
        let before = self.skipped.get(&network);
        for s in &skipped {
            if before.is_some_and(|b| b.contains(s)) {
                continue;
            }
            match s.reason {
                SkipReason::Underlay(_) | SkipReason::Unusable(_) => {
                    tracing::warn!(%network, "not installing managed {}: {}", s.item, s.reason)
                }
                _ => tracing::info!(%network, "not installing managed {}: {}", s.item, s.reason),
            }
        }
        self.skipped.insert(network, skipped);
    }

    /// Reads `<nwid>.local.conf`: the defaults when there is none; everything off, with a
    /// warning, when it cannot be read (see the module documentation).
    fn load_settings(&mut self, network: NetworkId) {
        let path = self.file(network, "local.conf");
        let settings = match read_settings(&path, self.defaults.for_network(network)) {
            Ok(s) => s,
            Err(problem) => {
                tracing::warn!(
                    %network,
                    "the network settings {} {problem}; no managed addresses or routes are installed until it is fixed, removed (for the defaults) or rewritten with `skylan set {network} KEY=VALUE`",
                    path.display()
                );
                NetworkSettings {
                    allow_managed: false,
                    allow_global: false,
                    allow_default: false,
                    allow_dns: false,
                }
            }
        };
        self.settings.insert(network, settings);
    }

    fn file(&self, network: NetworkId, ext: &str) -> PathBuf {
        cache_file(&self.dir, network, ext)
    }
}

/// The settings in `path`: `defaults` when it does not exist; `Err` says what is wrong
/// with it.
fn read_settings(path: &Path, defaults: NetworkSettings) -> Result<NetworkSettings, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            NetworkSettings::from_local_conf(&text).map_err(|e| format!("is damaged ({e})"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(defaults),
        Err(e) => Err(format!("cannot be read ({e})")),
    }
}

/// `<dir>/<nwid>.<ext>`.
fn cache_file(dir: &Path, network: NetworkId, ext: &str) -> PathBuf {
    dir.join(format!("{network}.{ext}"))
}

/// What the cache holds for a joined network.
#[derive(Debug)]
enum Cached {
    /// Joined, and no config has arrived yet (an empty `.conf`).
    Joined,
    /// The last signed config, and the controller identity that must have signed it.
    Config {
        config: Vec<u8>,
        controller: Box<PublicIdentity>,
    },
}

/// Reads the cache files of `network`. `Err` says what is wrong (naming the file), for
/// a cache that cannot be read or makes no sense.
fn read_cached(dir: &Path, network: NetworkId) -> Result<Cached, String> {
    let conf = cache_file(dir, network, "conf");
    let config = std::fs::read(&conf).map_err(|e| format!("cannot be read ({e})"))?;
    if config.is_empty() {
        return Ok(Cached::Joined);
    }
    let path = cache_file(dir, network, "controller");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot be verified: the controller identity {} cannot be read ({e})",
            path.display()
        )
    })?;
    let controller = text.trim().parse::<PublicIdentity>().map_err(|e| {
        format!(
            "cannot be verified: {} is not a public identity ({e})",
            path.display()
        )
    })?;
    if controller.address() != network.controller() {
        return Err(format!(
            "cannot be verified: {} names controller {}, but the network's controller is {}",
            path.display(),
            controller.address(),
            network.controller()
        ));
    }
    Ok(Cached::Config {
        config,
        controller: Box::new(controller),
    })
}

/// Logs why the cached config of `network` is not used, moves it aside to
/// `<nwid>.conf.damaged` (for inspection; it replaces an older one) and leaves an empty
/// `<nwid>.conf`, so the network stays joined and asks its controller again.
fn set_aside(dir: &Path, network: NetworkId, problem: &str) {
    let conf = cache_file(dir, network, "conf");
    let kept = cache_file(dir, network, "conf.damaged");
    let moved = std::fs::rename(&conf, &kept)
        .map_err(|e| e.to_string())
        .and_then(|()| write_file(&conf, b"", 0o600).map_err(|e| e.to_string()));
    match moved {
        Ok(()) => tracing::warn!(
            %network,
            "the cached network config {} {problem}; not using it. Kept it as {} for inspection; the network stays joined and waits for a fresh config from its controller",
            conf.display(),
            kept.display()
        ),
        Err(e) => tracing::warn!(
            %network,
            "the cached network config {} {problem}; not using it (moving it aside failed: {e}); the network waits for a fresh config from its controller",
            conf.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NWID: &str = "89e92ceee5000001";

    fn nwid() -> NetworkId {
        NWID.parse().unwrap()
    }

    #[test]
    fn an_empty_cache_file_means_joined() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(format!("{NWID}.conf")), b"").unwrap();
        assert!(matches!(
            read_cached(dir.path(), nwid()),
            Ok(Cached::Joined)
        ));
    }

    #[test]
    fn an_unreadable_or_unverifiable_cache_is_reported_never_taken_for_empty() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join(format!("{NWID}.conf"));
        // Cannot be read (a directory where the file should be).
        std::fs::create_dir(&conf).unwrap();
        let err = read_cached(dir.path(), nwid()).unwrap_err();
        assert!(err.starts_with("cannot be read"), "{err}");
        std::fs::remove_dir(&conf).unwrap();

        // A config without the controller identity to check it.
        std::fs::write(&conf, b"some signed config").unwrap();
        let err = read_cached(dir.path(), nwid()).unwrap_err();
        assert!(err.contains(&format!("{NWID}.controller")), "{err}");

        std::fs::write(dir.path().join(format!("{NWID}.controller")), "junk").unwrap();
        let err = read_cached(dir.path(), nwid()).unwrap_err();
        assert!(err.contains("is not a public identity"), "{err}");
    }

    #[test]
    fn settings_files_default_when_missing_and_report_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("{NWID}.local.conf"));
        // Missing: the defaults given (those of local.toml), whatever they are.
        let defaults = NetworkSettings::default().with(&[(Setting::AllowDns, true)]);
        assert_eq!(read_settings(&path, defaults), Ok(defaults));
        std::fs::write(&path, "allowManaged=1\nallowGlobal=1\n").unwrap();
        let read = read_settings(&path, defaults).unwrap();
        assert!(read.allow_global && !read.allow_dns);
        std::fs::write(&path, "allowGlobal=perhaps\n").unwrap();
        let err = read_settings(&path, defaults).unwrap_err();
        assert!(
            err.starts_with("is damaged (line 1: allowGlobal=perhaps"),
            "{err}"
        );
    }

    #[test]
    fn a_damaged_cache_is_kept_aside_and_the_network_stays_joined() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join(format!("{NWID}.conf"));
        std::fs::write(&conf, b"damaged bytes").unwrap();
        set_aside(dir.path(), nwid(), "does not verify (test)");
        assert_eq!(std::fs::read(&conf).unwrap(), b"");
        let kept = dir.path().join(format!("{NWID}.conf.damaged"));
        assert_eq!(std::fs::read(kept).unwrap(), b"damaged bytes");
        assert!(matches!(
            read_cached(dir.path(), nwid()),
            Ok(Cached::Joined)
        ));
    }
}
