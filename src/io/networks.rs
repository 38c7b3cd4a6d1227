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
//! The TAPs are read and written by the node's packet threads themselves
//! ([`Networks::taps`]): no reader task, no channel per frame.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::home::{Home, write_file};
use super::netconf::NetConf;
use super::netdev::{DeviceConfig, NetDevice, RouteSpec};
use super::tap::{Queues, Tap};
use crate::controller::NetworkConfig;
use crate::controller::model::DEFAULT_MTU;
use crate::crypto::identity::PublicIdentity;
use crate::node::Node;
use crate::service::member;
use crate::types::{NetworkId, NodeAddress};

/// See the module documentation.
pub struct Networks {
    dir: PathBuf,
    me: NodeAddress,
    netconf: Option<NetConf>,
    /// Devices get several queues when packet workers read them.
    queues: Queues,
    devices: HashMap<NetworkId, NetDevice>,
    configs: HashMap<NetworkId, NetworkConfig>,
    /// Bumped whenever a device appears or goes, so the driver knows to re-read
    /// [`taps`](Self::taps).
    generation: u64,
}

impl Networks {
    /// Opens the cache directory. Devices are made with `queues`.
    pub fn new(home: &Home, me: NodeAddress, queues: Queues) -> Self {
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
            generation: 0,
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
        for network in ids {
            node.join(now, network);
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

    /// Records a join (so a restart rejoins).
    pub fn joined(&self, network: NetworkId) {
        let path = self.file(network, "conf");
        if !path.exists() {
            let _ = write_file(&path, b"", 0o600);
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
        let _ = write_file(&self.file(network, "conf"), b"", 0o600);
        self.remove_device(network).await;
    }

    /// Leaves a network: device and cache removed.
    pub async fn leave(&mut self, network: NetworkId) {
        self.configs.remove(&network);
        self.remove_device(network).await;
        let _ = std::fs::remove_file(self.file(network, "conf"));
        let _ = std::fs::remove_file(self.file(network, "controller"));
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
        let mtu = u16::try_from(config.mtu).unwrap_or(DEFAULT_MTU as u16);
        let routes = config
            .routes
            .iter()
            .map(|r| RouteSpec {
                target: r.target,
                via: r.via,
            })
            .collect();
        let wanted = DeviceConfig {
            queues: self.queues,
            ..DeviceConfig::for_network(
                network,
                self.me,
                mtu,
                config.assigned_addresses.clone(),
                routes,
            )
        };
        self.configs.insert(network, config);
        let Some(nc) = &self.netconf else {
            return;
        };
        if let Some(dev) = self.devices.get_mut(&network) {
            match dev.apply(&wanted, nc).await {
                Ok(changes) if !changes.is_empty() => {
                    tracing::info!(%network, ?changes, "network device updated")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(%network, "network device update failed: {e}"),
            }
            return;
        }
        match NetDevice::create(wanted, nc).await {
            Ok(dev) => {
                tracing::info!(%network, device = dev.name(), "network device up");
                self.devices.insert(network, dev);
                self.generation += 1;
            }
            Err(e) => tracing::warn!(%network, "cannot create the network device: {e}"),
        }
    }

    async fn remove_device(&mut self, network: NetworkId) {
        self.generation += 1;
        if let (Some(dev), Some(nc)) = (self.devices.remove(&network), &self.netconf) {
            if let Err(e) = dev.remove(nc).await {
                tracing::warn!(%network, "removing the network device: {e}");
            }
        }
    }

    fn file(&self, network: NetworkId, ext: &str) -> PathBuf {
        cache_file(&self.dir, network, ext)
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
