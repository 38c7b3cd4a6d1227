//! Virtual networks inside the node core: joining, asking the controller for the
//! network's config, enforcing membership on every frame, and serving config requests
//! when this node is the controller.
//!
//! The node core treats a signed config as opaque bytes. The protocol is:
//! 1. `join` → NETWORK_CONFIG_REQUEST to the controller (the network ID's first 40
//!    bits), repeated every [`CONFIG_RETRY`] until answered, then every
//!    [`CONFIG_REFRESH`] as a backstop to pushes.
//! 2. A NETWORK_CONFIG from the network's controller (and only from it) becomes
//!    [`Event::ConfigReceived`] with the controller's signing key. The driver verifies
//!    and decodes it, then calls [`Node::set_network`] with the member roster and
//!    switch settings. Only then does the network carry frames (status OK).
//! 3. An ERROR (access denied / not found) from the controller sets the status and
//!    stops all frames of that network at once.
//! 4. As controller: a NETWORK_CONFIG_REQUEST becomes [`Event::ConfigRequested`]; the
//!    driver decides and answers with [`Node::send_network_config`] or
//!    [`Node::send_network_error`]. Pushes use the same calls.
//!
//! Frames: [`Node::handle_tap_frame`] runs the network's [`NetworkSwitch`] (source MAC
//! must be ours, destination resolved to members) before sealing; a received FRAME is
//! delivered to `poll_tap` only if the network is OK and the switch admits it (the
//! sender is on the current roster and uses its own MAC, or is a bridge). A member
//! removed from the roster is refused from the moment the new settings are applied.

use std::time::Duration;

use std::collections::HashMap;

use super::switch::{DropReason, NetworkSwitch, Outbound, SwitchSettings};
use super::{Event, Node, TapFrame};
use crate::rules::{DecidedBy, Direction, FrameContext, PeerTags, RuleSet, Verdict};
use crate::types::{NetworkId, NodeAddress, Time};
use crate::wire::{ErrorCode, Message, Verb};

/// Ask again this often while a network has no config.
pub const CONFIG_RETRY: Duration = Duration::from_secs(3);
/// Refresh the config this often even without pushes.
pub const CONFIG_REFRESH: Duration = Duration::from_secs(60);

/// Where a joined network stands (the words `skylan networks` prints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkStatus {
    /// Waiting for the controller's first answer.
    RequestingConfiguration,
    /// Configured; frames flow.
    Ok,
    /// The controller refused us (not authorized, or deauthorized).
    AccessDenied,
    /// The controller does not know the network.
    NotFound,
}

impl NetworkStatus {
    /// The name the CLI and API use.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkStatus::RequestingConfiguration => "REQUESTING_CONFIGURATION",
            NetworkStatus::Ok => "OK",
            NetworkStatus::AccessDenied => "ACCESS_DENIED",
            NetworkStatus::NotFound => "NOT_FOUND",
        }
    }
}

/// A network's flow rules as this member applies them: the compiled rule set, our own
/// tags and capabilities, and every member's (for the receiving side's evaluation).
#[derive(Debug, Clone)]
pub struct Policy {
    /// The rule set.
    pub rules: RuleSet,
    /// Our tags.
    pub tags: Vec<(u32, u32)>,
    /// Our capability IDs.
    pub capabilities: Vec<u32>,
    /// Each member's tags and capability IDs.
    pub members: HashMap<NodeAddress, MemberPolicy>,
}

/// What the rules need to know about one member.
#[derive(Debug, Clone, Default)]
pub struct MemberPolicy {
    /// Its tags.
    pub tags: Vec<(u32, u32)>,
    /// Its capability IDs.
    pub capabilities: Vec<u32>,
}

/// Identifies the rule that decided: (capability ID, or `u32::MAX` for the base table;
/// rule index, or `u16::MAX` for the default action).
pub type RuleKey = (u32, u16);

/// A joined network.
pub(super) struct Joined {
    pub(super) status: NetworkStatus,
    pub(super) revision: u64,
    pub(super) switch: NetworkSwitch,
    pub(super) last_request: Option<Time>,
    /// Flow rules; `None` carries every frame the switch admits.
    pub(super) policy: Option<Policy>,
    /// Hits per deciding rule: (capability ID or `u32::MAX` for the base table, rule).
    pub(super) hits: HashMap<RuleKey, u64>,
}

impl Joined {
    /// Evaluates the rules for one frame; true when it may pass. Counts the hit.
    fn permits(
        &mut self,
        direction: Direction,
        src: NodeAddress,
        dest: NodeAddress,
        me: NodeAddress,
        frame: &[u8],
        random: u32,
    ) -> bool {
        let Some(p) = &self.policy else {
            return true;
        };
        let none = MemberPolicy::default();
        let (sender_tags, sender_caps, receiver_tags) = if src == me {
            let receiver = p.members.get(&dest).unwrap_or(&none);
            (&p.tags, &p.capabilities, &receiver.tags)
        } else {
            let sender = p.members.get(&src).unwrap_or(&none);
            (&sender.tags, &sender.capabilities, &p.tags)
        };
        let decision = p.rules.evaluate(&FrameContext {
            direction,
            ztsrc: src,
            ztdest: Some(dest),
            frame,
            sender_tags: PeerTags::Known(sender_tags),
            receiver_tags: PeerTags::Known(receiver_tags),
            sender_capabilities: sender_caps,
            ip_authenticated: true,
            mac_authenticated: true,
            random,
        });
        let key = match decision.decided_by {
            DecidedBy::Rule(r) => (u32::MAX, r),
            DecidedBy::Capability { capability, rule } => (u32::from(capability), rule),
            DecidedBy::Default => (u32::MAX, u16::MAX),
        };
        *self.hits.entry(key).or_insert(0) += 1;
        matches!(decision.verdict, Verdict::Accept)
    }
}

/// What `networks` shows about one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInfo {
    /// The network.
    pub id: NetworkId,
    /// Its status.
    pub status: NetworkStatus,
    /// Revision of the config in force (0 before the first).
    pub revision: u64,
}

impl Node {
    /// Joins `network`: asks its controller for a config now and keeps asking until it
    /// answers. Frames flow once [`Node::set_network`] applied a verified config.
    pub fn join(&mut self, now: Time, network: NetworkId) {
        let me = self.address();
        self.networks.entry(network).or_insert_with(|| Joined {
            status: NetworkStatus::RequestingConfiguration,
            revision: 0,
            switch: NetworkSwitch::new(network, me, empty_settings()),
            last_request: None,
            policy: None,
            hits: HashMap::new(),
        });
        self.request_config(now, network);
    }

    /// Leaves `network`: no more frames in or out.
    pub fn leave(&mut self, network: NetworkId) {
        self.networks.remove(&network);
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
        j.switch.update(settings);
        j.policy = policy;
        self.set_status(network, NetworkStatus::Ok);
        true
    }

    /// A frame read from the TAP of `network`: switched to its member(s), or dropped
    /// with the reason (counted by the switch).
    pub fn handle_tap_frame(
        &mut self,
        now: Time,
        network: NetworkId,
        frame: &[u8],
    ) -> Result<(), DropReason> {
        let Some(j) = self.networks.get_mut(&network) else {
            return Err(DropReason::NotAMember);
        };
        if j.status != NetworkStatus::Ok {
            return Err(DropReason::NotAMember);
        }
        let targets = match j.switch.outbound(frame) {
            Outbound::Unicast(peer) => vec![peer],
            Outbound::Multicast(peers) => peers,
            Outbound::Drop(reason) => return Err(reason),
        };
        let me = self.table.address();
        for peer in targets {
            let random = self.table.random_u64() as u32;
            let Some(j) = self.networks.get_mut(&network) else {
                break;
            };
            if j.permits(Direction::Outbound, me, peer, me, frame, random) {
                let _ = self.send_frame(now, network, peer, frame);
            } else {
                self.stats.drop_rules += 1;
            }
        }
        Ok(())
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

    pub(super) fn request_config(&mut self, now: Time, network: NetworkId) {
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

    pub(super) fn on_config_request(
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

    pub(super) fn on_network_config(
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

    pub(super) fn on_network_error(&mut self, peer: NodeAddress, code: ErrorCode, payload: &[u8]) {
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
            j.switch.update(empty_settings());
            j.policy = None;
            j.revision = 0;
        }
        self.set_status(network, status);
    }

    /// A FRAME from an authenticated peer: delivered only if the network is OK and its
    /// switch admits the sender and addresses.
    pub(super) fn on_frame(
        &mut self,
        now: Time,
        peer: NodeAddress,
        network: NetworkId,
        frame: &[u8],
    ) {
        let Some(j) = self.networks.get_mut(&network) else {
            self.stats.drop_not_joined += 1;
            return;
        };
        if j.status != NetworkStatus::Ok || j.switch.inbound(peer, frame).is_err() {
            self.stats.drop_not_member += 1;
            return;
        }
        let me = self.table.address();
        let random = self.table.random_u64() as u32;
        // The receiver's own copy of the rules: a modified sender cannot bypass them.
        let Some(j) = self.networks.get_mut(&network) else {
            return;
        };
        if !j.permits(Direction::Inbound, peer, me, me, frame, random) {
            self.stats.drop_rules += 1;
            return;
        }
        self.touch_activity(now, peer);
        self.stats.frames_in += 1;
        if self.tap.len() >= super::MAX_PENDING_OUTPUT {
            self.tap.pop_front();
            self.stats.drop_queue_full += 1;
        }
        self.tap.push_back(TapFrame {
            network,
            from: peer,
            frame: frame.to_vec(),
        });
    }

    pub(super) fn refresh_networks(&mut self, now: Time) {
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

    /// Rule hit counters of a joined network: ((capability ID or `u32::MAX` for the base
    /// table, rule index or `u16::MAX` for the default action), hits).
    pub fn rule_hits(&self, network: NetworkId) -> Vec<(RuleKey, u64)> {
        let mut out: Vec<(RuleKey, u64)> = self
            .networks
            .get(&network)
            .map(|j| j.hits.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default();
        out.sort();
        out
    }

    /// The switch statistics of a joined network, for `/metrics`.
    pub fn switch_stats(&self, network: NetworkId) -> Option<&super::switch::SwitchStats> {
        self.networks.get(&network).map(|j| j.switch.stats())
    }

    fn set_status(&mut self, network: NetworkId, status: NetworkStatus) {
        if let Some(j) = self.networks.get_mut(&network) {
            if j.status != status {
                j.status = status;
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
