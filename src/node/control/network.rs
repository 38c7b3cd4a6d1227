//! The control core's side of virtual networks: joining, asking the controller for the
//! config, applying it, and serving config requests when this node is the controller
//! (the protocol is described in [`crate::node::network`]). Every change here (join,
//! leave, new settings or rules, status) is published in the next snapshot, which is
//! where the data plane's switch and rules take it from.

use std::sync::Arc;

use super::Control;
use crate::node::Event;
use crate::node::network::{CONFIG_REFRESH, CONFIG_RETRY, NetworkInfo, NetworkStatus, Policy};
use crate::node::switch::SwitchSettings;
use crate::types::{NetworkId, NodeAddress, Time};
use crate::wire::{ErrorCode, Message, Verb};

/// A joined network as the control core keeps it.
pub(crate) struct Joined {
    pub(crate) status: NetworkStatus,
    pub(crate) revision: u64,
    /// The roster and switch settings in force (published to the data plane).
    pub(crate) settings: Arc<SwitchSettings>,
    pub(crate) last_request: Option<Time>,
    /// Flow rules; `None` carries every frame the switch admits.
    pub(crate) policy: Option<Arc<Policy>>,
    /// Distinguishes this join from an earlier one of the same network.
    pub(crate) epoch: u64,
    /// Bumped with every change of `settings` or `policy`.
    pub(crate) config: u64,
}

impl Control {
    /// Joins `network`: asks its controller for a config now and keeps asking until it
    /// answers. Frames flow once `set_network` applied a verified config.
    pub fn join(&mut self, now: Time, network: NetworkId) {
        if !self.networks.contains_key(&network) {
            self.epochs += 1;
            self.networks.insert(
                network,
                Joined {
                    status: NetworkStatus::RequestingConfiguration,
                    revision: 0,
                    settings: Arc::new(empty_settings()),
                    last_request: None,
                    policy: None,
                    epoch: self.epochs,
                    config: 0,
                },
            );
            self.dirty = true;
        }
        self.request_config(now, network);
    }

    /// Leaves `network`: no more frames in or out.
    pub fn leave(&mut self, network: NetworkId) {
        self.dirty |= self.networks.remove(&network).is_some();
    }

    /// Every joined network.
    pub fn networks(&self) -> Vec<NetworkInfo> {
        let mut out: Vec<NetworkInfo> = self
            .networks
            .iter()
            .map(|(&id, j)| NetworkInfo {
                id,
                status: j.status,
                revision: j.revision,
            })
            .collect();
        out.sort_by_key(|n| n.id);
        out
    }

    /// Applies a verified config: the roster and switch settings at `revision`. Older
    /// revisions than the one in force are ignored (no rollback by replaying an old
    /// config). Returns false when ignored or the network is not joined.
    pub fn set_network(
        &mut self,
        network: NetworkId,
        revision: u64,
        settings: SwitchSettings,
        policy: Option<Policy>,
    ) -> bool {
        let Some(j) = self.networks.get_mut(&network) else {
            return false;
        };
        if j.status == NetworkStatus::Ok && revision < j.revision {
            return false;
        }
        j.revision = revision;
        j.settings = Arc::new(settings);
        j.policy = policy.map(Arc::new);
        j.config += 1;
        self.dirty = true;
        self.set_status(network, NetworkStatus::Ok);
        true
    }

    /// Sends (or, for ourselves, applies) a signed config to `member` — the answer to
    /// [`Event::ConfigRequested`], or a push after a change.
    pub fn send_network_config(
        &mut self,
        now: Time,
        member: NodeAddress,
        network: NetworkId,
        config: &[u8],
    ) {
        if member == self.address() {
            self.on_network_config(self.address(), network, config);
            return;
        }
        let msg = Message::NetworkConfig { network, config };
        self.send_message(now, member, &msg);
    }

    /// Tells `member` it may not have `network`'s config (`AccessDenied`) or that there is
    /// no such network (`NotFound`).
    pub fn send_network_error(
        &mut self,
        now: Time,
        member: NodeAddress,
        network: NetworkId,
        status: NetworkStatus,
    ) {
        if member == self.address() {
            self.set_status(network, status);
            return;
        }
        let code = match status {
            NetworkStatus::NotFound => ErrorCode::ObjNotFound,
            _ => ErrorCode::NetworkAccessDenied,
        };
        let payload = network.value().to_be_bytes();
        let msg = Message::Error {
            in_re_verb: Verb::NetworkConfigRequest,
            in_re_counter: 0,
            code,
            payload: &payload,
        };
        self.send_message(now, member, &msg);
    }

    // ----- called by the node core ------------------------------------------------

    pub(crate) fn request_config(&mut self, now: Time, network: NetworkId) {
        let controller = network.controller();
        let Some(j) = self.networks.get_mut(&network) else {
            return;
        };
        j.last_request = Some(now);
        let revision = j.revision;
        if controller == self.address() {
            let identity = self.table.identity().public().clone();
            self.event(Event::ConfigRequested {
                network,
                member: controller,
                identity,
                revision,
            });
            return;
        }
        self.send_message(
            now,
            controller,
            &Message::NetworkConfigRequest { network, revision },
        );
    }

    pub(crate) fn on_config_request(
        &mut self,
        now: Time,
        peer: NodeAddress,
        network: NetworkId,
        revision: u64,
    ) {
        if network.controller() != self.address() {
            self.send_network_error(now, peer, network, NetworkStatus::NotFound);
            return;
        }
        let Some(identity) = self.table.tunnel(peer).map(|t| t.remote().clone()) else {
            return;
        };
        self.event(Event::ConfigRequested {
            network,
            member: peer,
            identity,
            revision,
        });
    }

    pub(crate) fn on_network_config(
        &mut self,
        peer: NodeAddress,
        network: NetworkId,
        config: &[u8],
    ) {
        if peer != network.controller() || !self.networks.contains_key(&network) {
            self.stats.drop_not_from_controller += 1;
            return;
        }
        let key = if peer == self.address() {
            *self.table.identity().public().signing_key()
        } else {
            match self.table.tunnel(peer) {
                Some(t) => *t.remote().signing_key(),
                None => return,
            }
        };
        self.event(Event::ConfigReceived {
            network,
            controller_key: key,
            config: config.to_vec(),
        });
    }

    pub(crate) fn on_network_error(&mut self, peer: NodeAddress, code: ErrorCode, payload: &[u8]) {
        let Some(network) = <[u8; 8]>::try_from(payload)
            .ok()
            .and_then(|b| NetworkId::from_u64(u64::from_be_bytes(b)).ok())
        else {
            return;
        };
        if peer != network.controller() {
            self.stats.drop_not_from_controller += 1;
            return;
        }
        let status = match code {
            ErrorCode::NetworkAccessDenied => NetworkStatus::AccessDenied,
            ErrorCode::ObjNotFound => NetworkStatus::NotFound,
            _ => return,
        };
        if let Some(j) = self.networks.get_mut(&network) {
            // Forget the roster: nothing flows until a new config is applied.
            j.settings = Arc::new(empty_settings());
            j.policy = None;
            j.revision = 0;
            j.config += 1;
            self.dirty = true;
        }
        self.set_status(network, status);
    }

    /// Asks `controller` again at once for every config of its we are still waiting for.
    pub(crate) fn rerequest_configs_from(&mut self, now: Time, controller: NodeAddress) {
        let waiting: Vec<NetworkId> = self
            .networks
            .iter()
            .filter(|(id, j)| id.controller() == controller && j.status != NetworkStatus::Ok)
            .map(|(id, _)| *id)
            .collect();
        for network in waiting {
            self.request_config(now, network);
        }
    }

    pub(crate) fn refresh_networks(&mut self, now: Time) {
        let due: Vec<NetworkId> = self
            .networks
            .iter()
            .filter(|(_, j)| {
                let every = match j.status {
                    NetworkStatus::Ok => CONFIG_REFRESH,
                    _ => CONFIG_RETRY,
                };
                j.last_request.is_none_or(|t| now.since(t) >= every)
            })
            .map(|(id, _)| *id)
            .collect();
        for network in due {
            self.request_config(now, network);
        }
    }

    fn set_status(&mut self, network: NetworkId, status: NetworkStatus) {
        if let Some(j) = self.networks.get_mut(&network) {
            if j.status != status {
                j.status = status;
                self.dirty = true;
                self.event(Event::NetworkStatus { network, status });
            }
        }
    }
}

fn empty_settings() -> SwitchSettings {
    SwitchSettings {
        enable_broadcast: false,
        multicast_limit: 0,
        members: Vec::new(),
        bridges: Vec::new(),
    }
}
