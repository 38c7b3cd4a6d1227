//! The glue between the node core and the controller, shared by the node driver and
//! the simulator so both run the same code:
//!
//! - [`apply_config`]: a member received a signed config from its controller
//!   ([`Event::ConfigReceived`](crate::node::Event::ConfigReceived)): verify the
//!   signature with the controller's key, check it is for this node and network, and
//!   hand the switch settings, rules and our credential to the node core.
//! - [`decide_request`]: this node is the controller and a member asked
//!   ([`Event::ConfigRequested`](crate::node::Event::ConfigRequested)): decide and sign
//!   the config, or refuse, as an [`Answer`] that [`Answer::apply`] sends through the
//!   node core. Deciding may write the controller's store and signs: the daemon does
//!   it off its packet thread.
//! - [`Serving`]: remembers who asked and answers; after a change of the network or a
//!   revocation it answers every member that asked with a fresh config (or a refusal),
//!   so a revocation (listed in every fresh config) takes effect without waiting for a
//!   refresh; after a change of one member's record, that member alone.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;

use crate::controller::{
    ConfigRequest, Controller, ControllerError, CredentialError, Decision, NetworkConfig,
    SignedNetworkConfig,
};
use crate::crypto::Signer;
use crate::crypto::identity::{Identity, PublicIdentity};
use crate::node::Node;
use crate::node::network::{Credentials, NetworkStatus, Policy};
use crate::node::switch::{Admission, SwitchSettings};
use crate::rules::RuleSet;
use crate::types::{NetworkId, NodeAddress, Time, UnixTime};

/// The node identity a [`Serving`] controller signs with.
pub struct IdentitySigner(pub Identity);

impl Signer for IdentitySigner {
    fn public_key(&self) -> [u8; 32] {
        self.0.public_key()
    }

    fn sign_message(&self, msg: &[u8]) -> [u8; 64] {
        self.0.sign_message(msg)
    }
}

/// Verifies a config received for `network` and applies it to `node`. Returns the
/// decoded config (for the driver to configure the TAP, addresses and routes).
pub fn apply_config(
    node: &mut Node,
    network: NetworkId,
    controller_key: &[u8; 32],
    bytes: &[u8],
) -> Result<NetworkConfig, CredentialError> {
    let signed = SignedNetworkConfig::from_bytes(bytes)?;
    let config = signed.verify(controller_key)?;
    if config.nwid != network
        || config.issued_to != node.address()
        || signed.signer != network.controller()
    {
        return Err(CredentialError::Malformed {
            what: "network config",
            why: format!(
                "config for {} issued to {} by {}; expected {network} for {} by {}",
                config.nwid,
                config.issued_to,
                signed.signer,
                node.address(),
                network.controller()
            ),
        });
    }
    let policy = policy(&config)?;
    let credentials = Credentials {
        controller_key: *controller_key,
        own: config.credential.clone(),
        revoked: config
            .revocations
            .iter()
            .map(|r| (r.member, r.before))
            .collect(),
    };
    node.set_network(
        network,
        config.revision_key(),
        switch_settings(&config),
        Some(policy),
        Some(credentials),
    );
    Ok(config)
}

/// The flow-rules policy a config implies.
pub fn policy(config: &NetworkConfig) -> Result<Policy, CredentialError> {
    let capabilities = serde_json::to_value(&config.capabilities).unwrap_or(Value::Null);
    let rules =
        RuleSet::from_json_values(&config.rules, &capabilities, &Value::Null).map_err(|e| {
            CredentialError::Malformed {
                what: "network config rules",
                why: e.to_string(),
            }
        })?;
    // Other members' tags and capabilities come with their credentials.
    Ok(Policy {
        rules,
        tags: config.tags.clone(),
        capabilities: config.credential.facts.capabilities.clone(),
        members: HashMap::new(),
    })
}

/// The switch settings a config implies: no member list (members show credentials on
/// a private network; anyone is admitted on a public one).
pub fn switch_settings(config: &NetworkConfig) -> SwitchSettings {
    SwitchSettings {
        enable_broadcast: config.enable_broadcast,
        multicast_limit: config.multicast_limit as usize,
        members: Vec::new(),
        bridges: config.active_bridges.clone(),
        admission: if config.private {
            Admission::Credentials
        } else {
            Admission::Anyone
        },
    }
}

impl NetworkConfig {
    /// An ordering key for configs of one network: newer configs have larger keys
    /// (the issue time, so a membership change without a record change still orders).
    pub fn revision_key(&self) -> u64 {
        self.timestamp.as_micros()
    }
}

/// What the controller says to one member about one network: a signed config, or a
/// refusal. Decided away from the node core ([`Serving::answers_for_request`],
/// [`Serving::answers_for_push`]), then handed to it with [`Answer::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The member.
    pub member: NodeAddress,
    /// The network.
    pub network: NetworkId,
    /// The signed config bytes, or the refusal.
    pub reply: Reply,
}

/// See [`Answer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A signed config.
    Config(Vec<u8>),
    /// `AccessDenied` or `NotFound`.
    Refused(NetworkStatus),
}

impl Answer {
    /// Sends answers through the controller's own node, all in one pass of its control
    /// core ([`Node::send_network_answers`]).
    pub fn apply_all(answers: &[Answer], node: &mut Node, now: Time) {
        node.send_network_answers(
            now,
            answers.iter().map(|a| {
                let reply = match &a.reply {
                    Reply::Config(bytes) => Ok(bytes.as_slice()),
                    Reply::Refused(status) => Err(*status),
                };
                (a.member, a.network, reply)
            }),
        );
    }
}

/// Decides a member's config request: signs its config, or refuses. `wall` is the
/// controller's clock (wall-clock [`UnixTime`]).
pub fn decide_request(
    controller: &Controller,
    signer: &dyn Signer,
    wall: UnixTime,
    network: NetworkId,
    member: &PublicIdentity,
) -> Result<Answer, ControllerError> {
    let req = ConfigRequest {
        nwid: network,
        member: member.address(),
        identity: member.to_string(),
        version: None,
    };
    let reply = match controller.request(&req, wall, signer)? {
        Decision::Config(cfg) => Reply::Config(cfg.sign(signer).to_bytes()),
        Decision::AccessDenied => Reply::Refused(NetworkStatus::AccessDenied),
        Decision::NotFound => Reply::Refused(NetworkStatus::NotFound),
    };
    Ok(Answer {
        member: member.address(),
        network,
        reply,
    })
}

/// A controller serving its members from one node: remembers who asked for each
/// network, answers requests, and pushes fresh configs after changes. The node driver
/// decides on a thread of its own and hands the [`Answer`]s to its packet loop; the
/// simulator applies them at once ([`Serving::on_request`], [`Serving::push`]).
pub struct Serving {
    /// The controller.
    pub controller: Arc<Controller>,
    signer: IdentitySigner,
    askers: HashMap<NetworkId, BTreeMap<NodeAddress, PublicIdentity>>,
}

impl Serving {
    /// Serves `controller` with the node identity `signer`.
    pub fn new(controller: Arc<Controller>, signer: IdentitySigner) -> Self {
        Self {
            controller,
            signer,
            askers: HashMap::new(),
        }
    }

    /// The answer to a member's request (a config lists no other members, so a new
    /// member changes nobody else's).
    pub fn answers_for_request(
        &mut self,
        wall: UnixTime,
        network: NetworkId,
        member: &PublicIdentity,
    ) -> Result<Vec<Answer>, ControllerError> {
        self.askers
            .entry(network)
            .or_default()
            .insert(member.address(), member.clone());
        Ok(vec![decide_request(
            &self.controller,
            &self.signer,
            wall,
            network,
            member,
        )?])
    }

    /// A fresh config or refusal for every member that asked for `network`.
    pub fn answers_for_push(
        &self,
        wall: UnixTime,
        network: NetworkId,
    ) -> Result<Vec<Answer>, ControllerError> {
        let Some(members) = self.askers.get(&network) else {
            return Ok(Vec::new());
        };
        members
            .values()
            .map(|m| decide_request(&self.controller, &self.signer, wall, network, m))
            .collect()
    }

    /// [`answers_for_request`](Self::answers_for_request), sent at once through `node`.
    /// `wall` is a [`UnixTime`] (the simulator's `Time` converts into one).
    pub fn on_request(
        &mut self,
        node: &mut Node,
        now: Time,
        wall: UnixTime,
        network: NetworkId,
        member: &PublicIdentity,
    ) -> Result<(), ControllerError> {
        Answer::apply_all(&self.answers_for_request(wall, network, member)?, node, now);
        Ok(())
    }

    /// A fresh config or refusal for `member` alone, if it asked for `network` (what a
    /// change of one member's record needs: no other member's config names it).
    pub fn answers_for_member(
        &self,
        wall: UnixTime,
        network: NetworkId,
        member: NodeAddress,
    ) -> Result<Vec<Answer>, ControllerError> {
        let Some(identity) = self.askers.get(&network).and_then(|m| m.get(&member)) else {
            return Ok(Vec::new());
        };
        Ok(vec![decide_request(
            &self.controller,
            &self.signer,
            wall,
            network,
            identity,
        )?])
    }

    /// [`answers_for_push`](Self::answers_for_push), sent at once through `node`.
    /// `wall` is a [`UnixTime`] (the simulator's `Time` converts into one).
    pub fn push(
        &self,
        node: &mut Node,
        now: Time,
        wall: UnixTime,
        network: NetworkId,
    ) -> Result<(), ControllerError> {
        Answer::apply_all(&self.answers_for_push(wall, network)?, node, now);
        Ok(())
    }
}
