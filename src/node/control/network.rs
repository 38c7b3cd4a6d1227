//! The control core's side of virtual networks: joining, asking the controller for the
//! config, applying it, and serving config requests when this node is the controller
//! (the protocol is described in [`crate::node::network`]). Every change here (join,
//! leave, new settings or rules, status) is published in the next snapshot, which is
//! where the data plane's switch and rules take it from.

use std::collections::HashMap;
use std::sync::Arc;

use super::Control;
use super::membership::{Book, Offered};
use super::multicast::Multicast;
use crate::node::Event;
use crate::node::control::Delivery;
use crate::node::network::{
    CONFIG_REFRESH, CONFIG_RETRY, Credentials, NetworkInfo, NetworkStatus, Policy,
};
use crate::node::switch::{Members, SwitchSettings};
use crate::types::{NetworkId, NodeAddress, Time};
use crate::wire::{CREDENTIALS_ASK, ErrorCode, Message, Verb};

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
    /// Membership credentials (networks with a controller).
    pub(crate) book: Option<Book>,
    /// Subscriptions and gathered groups (networks with a controller).
    pub(crate) multicast: Multicast,
}

impl Joined {
    /// What the data plane admits by credential.
    pub(crate) fn members(&self) -> Arc<Members> {
        self.book
            .as_ref()
            .map(|b| Arc::clone(b.members()))
            .unwrap_or_default()
    }
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
                    book: None,
                    multicast: Multicast::default(),
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

    /// Applies a verified config: the switch settings, rules and our membership
    /// credential at `revision` (`credentials` is `None` for a network without a
    /// controller). Older revisions than the one in force are ignored (no rollback by
    /// replaying an old config). Returns false when ignored or the network is not
    /// joined.
    pub fn set_network(
        &mut self,
        now: Time,
        network: NetworkId,
        revision: u64,
        settings: SwitchSettings,
        policy: Option<Policy>,
        credentials: Option<Credentials>,
    ) -> bool {
        let me = self.address();
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
        let renewed = match (credentials, &mut j.book) {
            (Some(c), Some(book)) => book.update(c),
            (Some(c), None) => {
                j.book = Some(Book::new(network, me, c));
                Vec::new()
            }
            (None, _) => {
                j.book = None;
                Vec::new()
            }
        };
        self.dirty = true;
        self.set_status(network, NetworkStatus::Ok);
        for peer in renewed {
            self.show_credential(now, network, peer, false);
        }
        // New addresses mean new subscriptions: announce them now, not at the next tick.
        self.multicast_housekeeping(now);
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
            // Forget the settings and credentials: nothing flows until a new config is
            // applied.
            j.settings = Arc::new(empty_settings());
            j.policy = None;
            j.book = None;
            j.multicast = Multicast::default();
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
    SwitchSettings::default()
}

// ----- membership credentials (see `membership`) -----------------------------------

/// The credentials of a joined network with a controller. A free function so that the
/// caller may still use the control core's other fields while it holds the book.
fn book_of(networks: &mut HashMap<NetworkId, Joined>, network: NetworkId) -> Option<&mut Book> {
    networks.get_mut(&network).and_then(|j| j.book.as_mut())
}

impl Control {
    /// Sends our credential on `network` to `peer` (asking for theirs when `ask`), if
    /// we have one and did not send it within the show interval.
    pub(crate) fn show_credential(
        &mut self,
        now: Time,
        network: NetworkId,
        peer: NodeAddress,
        ask: bool,
    ) {
        let Some(book) = book_of(&mut self.networks, network) else {
            return;
        };
        if !book.should_show(now, peer) {
            return;
        }
        let credential = book.own_bytes().to_vec();
        let flags = if ask { CREDENTIALS_ASK } else { 0 };
        let msg = Message::NetworkCredentials {
            network,
            flags,
            credential: &credential,
        };
        self.send_message(now, peer, &msg);
    }

    /// NETWORK_CREDENTIALS from `peer`.
    pub(crate) fn on_credentials(
        &mut self,
        now: Time,
        peer: NodeAddress,
        network: NetworkId,
        flags: u8,
        credential: &[u8],
    ) {
        let Some(book) = book_of(&mut self.networks, network) else {
            return;
        };
        if !credential.is_empty() {
            match book.offer(peer, credential) {
                Ok(Offered::Accepted) => {
                    self.stats.credentials_accepted += 1;
                    self.dirty = true;
                    for held in book.release(peer) {
                        let d = Delivery::retried(held.peer, network, held.flags, held.frame);
                        self.deliveries.push_back(d);
                    }
                }
                Ok(Offered::Known) => {}
                // Refused; still answer an ask below: whether it accepts ours is its
                // own judgement.
                Err(_) => self.stats.drop_credential += 1,
            }
        }
        let theirs_known = book.knows(peer);
        // Answer an ask, and a credential we accepted, with ours (at most once per
        // show interval, so two members refusing each other do not ping-pong).
        if flags & CREDENTIALS_ASK != 0 || theirs_known {
            self.show_credential(now, network, peer, !theirs_known);
        }
    }

    /// A frame the data plane would send to `peer`, whose credential we lack: ours
    /// goes first.
    pub(crate) fn on_introduce(&mut self, now: Time, network: NetworkId, peer: NodeAddress) {
        self.show_credential(now, network, peer, true);
    }

    /// A frame from `peer`, whose credential we lack: it waits, and we ask.
    pub(crate) fn on_stranger(
        &mut self,
        now: Time,
        network: NetworkId,
        peer: NodeAddress,
        flags: u8,
        frame: Vec<u8>,
    ) {
        let Some(book) = book_of(&mut self.networks, network) else {
            self.stats.drop_not_member += 1;
            return;
        };
        if book.knows(peer) {
            // Accepted since the data plane's snapshot was taken: deliver it now.
            self.deliveries
                .push_back(Delivery::retried(peer, network, flags, frame));
            return;
        }
        if !book.hold(now, peer, flags, frame) {
            self.stats.drop_not_member += 1;
        }
        self.show_credential(now, network, peer, true);
    }

    /// Drops frames that waited too long for a credential (every tick).
    pub(crate) fn expire_held_frames(&mut self, now: Time) {
        for j in self.networks.values_mut() {
            if let Some(book) = j.book.as_mut() {
                self.stats.drop_not_member += book.expire(now) as u64;
            }
        }
    }
}
