//! The node driver's networks: one TAP device per configured network (MAC, MTU,
//! managed addresses and routes through netlink), and the cache in
//! `<home>/networks.d/` that lets a node come back with its networks while the
//! controller is down.
//!
//! Cache files per network: `<nwid>.conf` (the last signed config; empty while none has
//! arrived — its presence means "joined") and `<nwid>.controller` (the controller's
//! public identity, to verify the cached config at start).
//!
//! Devices are created only for networks whose config verified; a network that turns
//! ACCESS_DENIED or NOT_FOUND, or that is left, loses its device (addresses and routes
//! withdrawn, TAP removed) and its cached config.
//!
//! The TAPs are read and written by the node's packet threads themselves
//! ([`Networks::taps`]): no reader task, no channel per frame.

use std::collections::HashMap;
use std::path::PathBuf;
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
    pub async fn restore(&mut self, node: &mut Node, now: crate::types::Time) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
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
            let config = std::fs::read(self.file(network, "conf")).unwrap_or_default();
            let controller = std::fs::read_to_string(self.file(network, "controller"))
                .ok()
                .and_then(|t| t.trim().parse::<PublicIdentity>().ok());
            let (Some(controller), false) = (controller, config.is_empty()) else {
                continue;
            };
            if controller.address() != network.controller() {
                continue;
            }
            match member::apply_config(node, network, controller.signing_key(), &config) {
                Ok(cfg) => {
                    tracing::info!(%network, "restored cached network config");
                    self.configure(network, cfg).await;
                }
                Err(e) => tracing::warn!(%network, "cached config rejected: {e}"),
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
        self.dir.join(format!("{network}.{ext}"))
    }
}
