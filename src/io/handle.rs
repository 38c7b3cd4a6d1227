//! What the local API (and the controller thread) and the node driver say to each
//! other: the commands sent over a channel, the answers, and the [`NodeHandle`]. Both
//! [`super::daemon`] (which answers) and [`super::http`] (which asks) import this;
//! neither imports the other.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::home::HomeError;
use crate::controller::{Controller, NetworkConfig};
use crate::node::network::{NetworkStatus, RuleKey};
use crate::node::{Link, NodeStats, NodeStatus, PeerInfo, RootReport, WorldInfo};
use crate::service::member::Answer;
use crate::service::optin::{Changes, NetworkSettings, Skipped};
use crate::types::{Mac, NetworkId, NodeAddress, Time};

/// The answer to a ping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PingResult {
    /// A reply came back.
    Reply {
        /// Round trip.
        rtt: Duration,
        /// The way it came back.
        link: Link,
    },
    /// No reply in time.
    Lost,
    /// The node refused to send it.
    Refused(String),
}

/// Commands the local API sends to the node driver.
pub enum NodeCommand {
    /// `info`.
    Status(oneshot::Sender<NodeStatus>),
    /// `peers`.
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    /// `ping`.
    Ping(NodeAddress, oneshot::Sender<PingResult>),
    /// Counters for `/metrics`, as (name, value).
    Stats(oneshot::Sender<Vec<(&'static str, u64)>>),
    /// `join`.
    Join(NetworkId, oneshot::Sender<()>),
    /// `leave`; answers false when the network was not joined.
    Leave(NetworkId, oneshot::Sender<bool>),
    /// `networks`.
    Networks(oneshot::Sender<Vec<NetworkView>>),
    /// `set`: changes the opt-ins of a joined network and re-applies its device.
    SetNetwork(
        NetworkId,
        Changes,
        oneshot::Sender<Result<(), SetNetworkError>>,
    ),
    /// Traffic counters of each packet thread (the control thread first).
    Threads(oneshot::Sender<Vec<NodeStats>>),
    /// Flow-rule hit counters per network and deciding rule.
    RuleHits(oneshot::Sender<Vec<(NetworkId, RuleKey, u64)>>),
    /// (From the controller thread) configs and refusals to send to members.
    Answers(Vec<Answer>),
    /// `netcheck`: sends every root a HELLO now; answers the roots as they were just
    /// before.
    HelloRoots(oneshot::Sender<RootsView>),
    /// `netcheck`: every root as the node knows it now.
    Roots(oneshot::Sender<RootsView>),
    /// `orbit`: starts orbiting a moon (id) through a seed; the refusal in words.
    Orbit(u64, NodeAddress, oneshot::Sender<Result<(), String>>),
    /// `deorbit`: stops orbiting a moon and removes its file from `moons.d`; answers
    /// false when the moon was neither held nor waited for.
    Deorbit(u64, oneshot::Sender<bool>),
    /// `moons`: the planet, the moons held and the orbits waiting, in that order.
    Worlds(oneshot::Sender<Vec<WorldInfo>>),
}

/// The node's roots at one moment of the driver's clock (`netcheck`).
#[derive(Debug, Clone)]
pub struct RootsView {
    /// When the report was taken.
    pub now: Time,
    /// Every root, in world order.
    pub roots: Vec<RootReport>,
}

/// What `networks` shows about one network.
#[derive(Debug, Clone)]
pub struct NetworkView {
    /// The network.
    pub id: NetworkId,
    /// REQUESTING_CONFIGURATION, OK, ACCESS_DENIED or NOT_FOUND.
    pub status: NetworkStatus,
    /// Our MAC on it.
    pub mac: Mac,
    /// The TAP device, once configured.
    pub device: Option<String>,
    /// Why the network has no device although configured (shown as PORT_ERROR).
    pub port_error: Option<String>,
    /// The config in force.
    pub config: Option<NetworkConfig>,
    /// The member's opt-ins.
    pub settings: NetworkSettings,
    /// Managed addresses and routes of the config that are not installed, and why.
    pub skipped: Vec<Skipped>,
    /// The Ethernet multicast groups the device listens to.
    pub multicast: Vec<Mac>,
}

/// Why [`NodeCommand::SetNetwork`] changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum SetNetworkError {
    /// The network is not joined.
    #[error("not a member of network {0}; join it first with `skylan join {0}`")]
    NotJoined(NetworkId),
    /// The settings file could not be written.
    #[error("the settings were not changed: {0}")]
    Save(#[from] HomeError),
}

/// A cloneable handle the API uses to talk to the node driver.
#[derive(Clone)]
pub struct NodeHandle {
    pub(super) tx: mpsc::Sender<NodeCommand>,
    /// Our address (fixed for the daemon's life).
    pub address: NodeAddress,
    /// Our public identity text.
    pub public_identity: String,
    /// The UDP port.
    pub udp_port: u16,
    /// True when the UDP socket speaks IPv6 too (dual stack).
    pub ipv6: bool,
    /// The root's endpoint while the TCP fallback carries root traffic.
    pub tcp: tokio::sync::watch::Receiver<Option<crate::types::Endpoint>>,
    /// The home directory (reported as `homeDir` in `GET /status`).
    pub home: std::path::PathBuf,
    /// The controller, when this node runs one.
    pub controller: Option<Arc<Controller>>,
}

impl NodeHandle {
    /// Asks the driver; `None` when it has stopped.
    pub async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> NodeCommand) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.ok()?;
        rx.await.ok()
    }
}
