//! Virtual networks: the protocol with the controller, the public types (status,
//! policy, rule keys), and the rule evaluation the data plane runs on every frame. The
//! control core joins, requests and applies configs (`control::network`); the data
//! plane enforces membership and rules on every frame (`data`).
//!
//! The node core treats a signed config as opaque bytes. The protocol is:
//! 1. `join` → NETWORK_CONFIG_REQUEST to the controller (the network ID's first 40
//!    bits), repeated every [`CONFIG_RETRY`] until answered, then every
//!    [`CONFIG_REFRESH`] as a backstop to pushes.
//! 2. A NETWORK_CONFIG from the network's controller (and only from it) becomes
//!    [`Event::ConfigReceived`](super::Event::ConfigReceived) with the controller's signing key. The driver verifies
//!    and decodes it, then calls [`Node::set_network`](super::Node::set_network) with the switch settings,
//!    the rules and our membership credential. Only then does the network carry
//!    frames (status OK). No config lists the other members: on a private network
//!    members show each other their credentials (`control::membership`), and group
//!    frames go to the subscribers a root gathers (`control::multicast`).
//! 3. An ERROR (access denied / not found) from the controller sets the status and
//!    stops all frames of that network at once.
//! 4. As controller: a NETWORK_CONFIG_REQUEST becomes [`Event::ConfigRequested`](super::Event::ConfigRequested); the
//!    driver decides and answers with [`Node::send_network_config`](super::Node::send_network_config) or
//!    [`Node::send_network_error`](super::Node::send_network_error). Pushes send many answers
//!    in one pass with [`Node::send_network_answers`](super::Node::send_network_answers).
//!
//! Frames: [`Node::handle_tap_frame`](super::Node::handle_tap_frame) runs the network's
//! [`NetworkSwitch`](super::switch::NetworkSwitch) (source MAC
//! must be ours, destination resolved to members) before sealing; a received FRAME is
//! delivered to `poll_tap` only if the network is OK and the switch admits it (the
//! sender showed a credential we accept, or is listed, and uses its own MAC, or is a
//! bridge). A member the controller revokes is refused from the moment the config
//! listing the revocation is applied.

use std::time::Duration;

use std::collections::HashMap;

use super::switch::NetworkSwitch;
use crate::crypto::membership::MembershipCredential;
use crate::rules::{Copies, DecidedBy, Direction, FrameContext, PeerTags, RuleSet, Verdict};
use crate::types::{NetworkId, NodeAddress, UnixTime};
use crate::wire::EthernetFrame;

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
/// tags and capabilities, and, on a network without a controller, every member's (for
/// the receiving side's evaluation; with a controller they come from credentials).
#[derive(Debug, Clone)]
pub struct Policy {
    /// The rule set.
    pub rules: RuleSet,
    /// Our tags.
    pub tags: Vec<(u32, u32)>,
    /// Our capability IDs.
    pub capabilities: Vec<u32>,
    /// Each member's tags and capability IDs (networks without a controller).
    pub members: HashMap<NodeAddress, MemberPolicy>,
}

/// What a member of a network with a controller needs to show and check membership
/// credentials (taken from its verified config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The controller's Ed25519 key, which signs every member's credential.
    pub controller_key: [u8; 32],
    /// Our own credential.
    pub own: MembershipCredential,
    /// Members revoked lately: their credentials issued at or before the time are
    /// refused.
    pub revoked: Vec<(NodeAddress, UnixTime)>,
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

/// A frame with its Ethernet header parsed once, for the switch and the rules.
pub(crate) struct ParsedFrame<'a> {
    /// The whole frame.
    pub(crate) bytes: &'a [u8],
    /// Its header; `None` when it is too short to have one.
    pub(crate) eth: Option<EthernetFrame<'a>>,
}

impl<'a> ParsedFrame<'a> {
    pub(crate) fn parse(bytes: &'a [u8]) -> Self {
        ParsedFrame {
            bytes,
            eth: EthernetFrame::parse(bytes),
        }
    }
}

/// What the rules decided about one frame: pass, drop or redirect it, and which
/// observers get a copy (`tee`, `watch`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Judgement {
    pub(crate) verdict: Verdict,
    pub(crate) copies: Copies,
}

/// Evaluates `policy` for one frame (without rules every frame passes). Counts the
/// deciding rule in `hits`. Outbound, `src` is us; inbound, `dest` is us. `switch` says
/// who owns which addresses (`chr ipauth`, `chr macauth`).
#[allow(clippy::too_many_arguments)] // one frame's whole context, read in one place
pub(crate) fn judge(
    policy: Option<&Policy>,
    hits: &mut foldhash::HashMap<RuleKey, u64>,
    switch: &NetworkSwitch,
    direction: Direction,
    src: NodeAddress,
    dest: NodeAddress,
    frame: &ParsedFrame<'_>,
    random: u32,
) -> Judgement {
    let Some(p) = policy else {
        return Judgement {
            verdict: Verdict::Accept,
            copies: Copies::default(),
        };
    };
    // A member's tags and capabilities: from its accepted credential, else from the
    // policy's own list (networks without a controller).
    let lookup = |n: NodeAddress| {
        switch
            .facts(n)
            .map(|f| (f.tags.as_slice(), f.capabilities.as_slice()))
            .or_else(|| {
                p.members
                    .get(&n)
                    .map(|m| (m.tags.as_slice(), m.capabilities.as_slice()))
            })
    };
    let (sender_tags, sender_caps, receiver_tags) = match direction {
        Direction::Outbound => {
            // A receiver that has not shown its credential yet: its own rules judge
            // its tags.
            let receiver = match lookup(dest) {
                Some((tags, _)) => PeerTags::Known(tags),
                None if switch.needs_credentials() => PeerTags::Unknown,
                None => PeerTags::Known(&[]),
            };
            (p.tags.as_slice(), p.capabilities.as_slice(), receiver)
        }
        Direction::Inbound => {
            let (tags, caps) = lookup(src).unwrap_or((&[], &[]));
            (tags, caps, PeerTags::Known(p.tags.as_slice()))
        }
    };
    let (ip_authenticated, mac_authenticated) = switch.ownership(src, frame.eth.as_ref());
    let ctx = FrameContext {
        direction,
        ztsrc: src,
        ztdest: Some(dest),
        frame: frame.bytes,
        sender_tags: PeerTags::Known(sender_tags),
        receiver_tags,
        sender_capabilities: sender_caps,
        ip_authenticated,
        mac_authenticated,
        random,
    };
    // The switch parsed the header already; the rules read the same view.
    let decision = p.rules.evaluate_parsed(&ctx, frame.eth.as_ref());
    let key = match decision.decided_by {
        DecidedBy::Rule(r) => (u32::MAX, r),
        DecidedBy::Capability { capability, rule } => (u32::from(capability), rule),
        DecidedBy::Default => (u32::MAX, u16::MAX),
    };
    *hits.entry(key).or_insert(0) += 1;
    Judgement {
        verdict: decision.verdict,
        copies: decision.copies,
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
