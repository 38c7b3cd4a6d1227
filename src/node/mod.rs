//! The node core: a sans-IO state machine that turns datagrams, frames and time into
//! datagrams, frames and events. [`Node`] is a thin single-threaded facade over two
//! parts:
//!
//! - [`control::Control`] owns peers, paths, roots, WHOIS, handshakes and sessions
//!   (through [`SessionTable`](crate::crypto::table::SessionTable)), pings, network
//!   configs and events, and publishes an immutable [`Snapshot`] of what the per-frame
//!   path needs (confirmed sessions, each peer's route, each network's switch settings
//!   and rules) whenever one of those changes;
//! - [`data::DataPlane`] runs `inside` (TAP frame → switch → rules → seal → datagrams)
//!   and `outside` (datagram → open → switch → rules → TAP frame) reading only that
//!   snapshot, and hands everything unusual to control (see [`data`] for the list).
//!
//! # Driving it
//! Inputs: [`Node::handle_datagram`], [`Node::handle_tap_frame`] (the only way a frame
//! enters), [`Node::handle_timeout`], and the commands ([`Node::ping`], [`Node::join`],
//! ...). After any input the driver drains, in this order: [`Node::poll_transmit`]
//! until `None` (datagrams to send: the control core's first, then the data plane's),
//! [`Node::poll_tap`] (frames for the TAP), [`Node::poll_event`] (events for logs and
//! the API); then it sleeps until [`Node::poll_timeout`] or the next input. It gives
//! every `Transmit::contents` and `TapFrame::frame` back with [`Node::recycle`] once
//! written, so the steady-state path allocates nothing. The node never reads a clock or
//! OS randomness: `now` comes with every input and the RNG is seeded at construction.
//!
//! Within one input the node runs the data plane, then (only if the data plane handed
//! something over) the control core, republishes the snapshot if control changed it,
//! and runs the data plane's inbound checks on frames control received.
//!
//! # Several workers
//! [`Node::snapshot`] (`Send + Sync`) and [`Node::new_data_plane`] (`Send`) are what a
//! multi-worker driver needs: each worker runs [`DataPlane::inside`] and
//! [`DataPlane::outside`] on its own data plane with the latest snapshot, and passes
//! what [`DataPlane::poll_control`] returns to the owner of the `Node`, which calls
//! [`Node::handle_control`]. The node daemon does this with `--workers N`
//! (`crate::io::workers`); the simulator uses the facade alone.
//!
//! # Behaviour
//! See [`control`] for roots, WHOIS, RENDEZVOUS and paths, [`network`] for networks and
//! [`switch`] for the switch. Every input packet that fails a check is dropped and
//! counted in [`NodeStats`]; nothing unauthenticated changes a path, a session or
//! reaches `poll_tap`.

pub mod control;
pub mod data;
pub mod network;
pub mod peer;
mod shards;
pub mod snapshot;
pub mod switch;

use std::sync::Arc;
use std::time::Duration;

use crate::crypto::Cipher;
use crate::crypto::identity::{Identity, PublicIdentity};
use crate::crypto::table::TableError;
use crate::crypto::tunnel::TunnelError;
use crate::types::{Endpoint, MulticastGroup, NetworkId, NodeAddress, Time, Transmit};
use crate::wire::{self, SoftwareVersion};
use crate::world::World;
use control::Control;
pub use control::membership::{HOLD_MAX, HOLD_PER_PEER, HOLD_TIME, SHOW_INTERVAL};
pub use control::multicast::{
    GATHER_HOLD, GATHER_REFRESH, GATHER_REFRESH_EMPTY, GATHER_TIMEOUT, GATHERING_MAX, GROUP_IDLE,
    LIKE_PERIOD,
};
pub use control::worlds::{MAX_MOONS, ORBIT_RETRY, WORLD_REFRESH, WorldInfo};
pub use control::{ROOT_ANSWER_TIMEOUT, ROOT_RETRY, RootReport};
pub use data::{DataPlane, FRAME_HEADROOM, ToControl};
use network::{Credentials, NetworkInfo, NetworkStatus, Policy, RuleKey};
use peer::Role;
pub use snapshot::{PeerTraffic, Snapshot};
use switch::{DropReason, SwitchSettings, SwitchStats};

/// How often the node wakes up for housekeeping.
pub const TICK: Duration = Duration::from_secs(1);
/// HELLO to each root this often (also the NAT keepalive towards roots).
pub const ROOT_HELLO_INTERVAL: Duration = Duration::from_secs(5);
/// Keepalive on an idle direct path this often (short enough for common NAT timeouts).
pub const KEEPALIVE: Duration = Duration::from_secs(10);
/// If we sent and heard nothing back for this long, the session is presumed lost
/// (e.g. the peer restarted) and a new handshake starts.
pub const SILENCE_REHANDSHAKE: Duration = Duration::from_secs(20);
/// WHOIS retry interval and how long to keep trying.
pub const WHOIS_RETRY: Duration = Duration::from_millis(500);
/// Give up a WHOIS (and drop what waited for it) after this long.
pub const WHOIS_GIVE_UP: Duration = Duration::from_secs(10);
/// An unconfirmed candidate path is probed at most this often.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// A leaf peer with no session, no traffic and nothing queued for this long is forgotten
/// (its identity is fetched again by WHOIS if needed).
pub const PEER_FORGET: Duration = Duration::from_secs(600);
/// A ping with no reply is reported lost after this long.
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Default largest UDP payload we send; bigger packets are fragmented.
pub const DEFAULT_PHYS_MTU: usize = 1432;
/// At most this many events or TAP frames wait to be polled; older ones are dropped.
pub const MAX_PENDING_OUTPUT: usize = 4096;
/// Largest Ethernet frame carried (the largest network MTU plus an 802.1Q header).
pub const MAX_FRAME_LEN: usize = 10_000 + 18;

/// Construction parameters of a [`Node`].
pub struct NodeConfig {
    /// The node's identity.
    pub identity: Identity,
    /// The planet whose roots the node uses.
    pub world: World,
    /// The moons it orbits (their roots are used alongside the planet's).
    pub moons: Vec<World>,
    /// Seed of every random choice the node makes.
    pub seed: [u8; 32],
    /// Largest UDP payload to send; larger packets are fragmented.
    pub phys_mtu: usize,
}

/// How a packet reaches a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Straight to the peer's endpoint.
    Direct(Endpoint),
    /// Through a root, which forwards without decrypting.
    Relay(NodeAddress),
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Link::Direct(ep) => write!(f, "DIRECT {ep}"),
            Link::Relay(root) => write!(f, "RELAY via {root}"),
        }
    }
}

/// Something the driver may want to log or report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An answer to [`Node::ping`].
    Pong {
        /// Who answered.
        peer: NodeAddress,
        /// The ID `ping` returned.
        id: u64,
        /// Round-trip time.
        rtt: Duration,
        /// The way the answer came back.
        link: Link,
    },
    /// A ping got no answer within [`PING_TIMEOUT`].
    PingLost {
        /// Who was pinged.
        peer: NodeAddress,
        /// The ID `ping` returned.
        id: u64,
    },
    /// Traffic to a peer now goes over a different link.
    LinkChanged {
        /// The peer.
        peer: NodeAddress,
        /// The new link.
        link: Link,
    },
    /// A WHOIS for an address got no answer in time.
    Unreachable(NodeAddress),
    /// A root answers again after none did (or for the first time).
    Online {
        /// The root relaying now.
        root: NodeAddress,
    },
    /// No root answers any more.
    Offline {
        /// Why, in words (see [`NodeStatus::offline_reason`]).
        reason: String,
    },
    /// A world was verified and is in use: a moon [`Node::orbit`] asked for, or a newer
    /// revision of the planet or a moon (signed by the previous revision's update key).
    /// The driver stores it (`planet`, `moons.d/<id>.moon`).
    WorldUpdated(Box<World>),
    /// A world (or update) was refused; nothing changed.
    WorldRefused {
        /// The world's id.
        id: u64,
        /// Who sent it.
        from: NodeAddress,
        /// What was wrong (signature, update chain, structure).
        reason: String,
    },
    /// (Controller) a member asks for a network's config; answer with
    /// [`Node::send_network_config`] or [`Node::send_network_error`].
    ConfigRequested {
        /// The network.
        network: NetworkId,
        /// The member (authenticated by its session).
        member: NodeAddress,
        /// Its public identity.
        identity: PublicIdentity,
        /// The config revision it holds.
        revision: u64,
    },
    /// A config for a joined network arrived from its controller; verify it with
    /// `controller_key` and apply it with [`Node::set_network`].
    ConfigReceived {
        /// The network.
        network: NetworkId,
        /// The controller's Ed25519 key (from its authenticated identity).
        controller_key: [u8; 32],
        /// The signed config bytes.
        config: Vec<u8>,
    },
    /// A joined network's status changed.
    NetworkStatus {
        /// The network.
        network: NetworkId,
        /// The new status.
        status: network::NetworkStatus,
    },
}

/// A frame for the TAP of `network`, from an authenticated peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapFrame {
    /// The network it belongs to.
    pub network: NetworkId,
    /// The sending node (authenticated).
    pub from: NodeAddress,
    /// The Ethernet frame.
    pub frame: Vec<u8>,
}

/// Why [`Node::ping`] could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// That is our own address.
    #[error("cannot send to ourselves")]
    SelfAddress,
    /// `orbit` named the planet.
    #[error("{0:016x} is the planet's id; orbit takes a moon's id")]
    PlanetId(u64),
    /// `orbit` named an id that cannot be a moon's (a moon's id is its first root's
    /// address).
    #[error(
        "{0:016x} cannot be a moon id: a moon's id is the address of its first root \
         (10 hex digits, shown as 16 with leading zeros)"
    )]
    NotAMoonId(u64),
    /// `orbit` would exceed the most moons a node orbits.
    #[error("already orbiting {0} moons; deorbit one first")]
    TooManyMoons(usize),
}

/// Counters of everything dropped or refused, by reason, and of traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Datagrams received.
    pub rx_datagrams: u64,
    /// Datagrams sent.
    pub tx_datagrams: u64,
    /// Datagrams that did not parse.
    pub drop_malformed: u64,
    /// Datagrams addressed to another node (nodes do not relay).
    pub drop_not_for_us: u64,
    /// Datagrams of an unknown kind or with an unknown verb.
    pub drop_unknown: u64,
    /// Handshakes that failed (bad crypto, bad identity, wrong source).
    pub drop_handshake: u64,
    /// Data packets naming no session of ours.
    pub drop_unknown_session: u64,
    /// Packets whose header source does not own the session.
    pub drop_source_mismatch: u64,
    /// Replayed or too-old packets.
    pub drop_replay: u64,
    /// Packets that failed authentication.
    pub drop_auth: u64,
    /// Packets on expired sessions.
    pub drop_expired: u64,
    /// Control messages a leaf only accepts from roots, from someone else.
    pub drop_not_from_root: u64,
    /// Worlds nobody asked for, not newer, or refused (signature, update chain).
    pub drop_world: u64,
    /// PushDirectPaths from a root or from a node we exchange no user traffic with.
    pub drop_push_not_peer: u64,
    /// PushDirectPaths over the sending peer's rate limit.
    pub drop_push_rate: u64,
    /// Frames for networks we have not joined.
    pub drop_not_joined: u64,
    /// Frames refused by a network's switch (sender not admitted, wrong MAC, ...), for a
    /// network that is not OK, or from a peer whose credential did not come in time.
    pub drop_not_member: u64,
    /// Membership credentials refused (malformed, forged, revoked, out of date).
    pub drop_credential: u64,
    /// Membership credentials accepted (new, or renewed).
    pub credentials_accepted: u64,
    /// Frames a bridge refused because they came back to their own segment through
    /// another bridge (two bridges share a segment).
    pub drop_bridge_loop: u64,
    /// Group frames over a network's storm limit (either way).
    pub drop_storm: u64,
    /// Network configs or errors that did not come from the network's controller.
    pub drop_not_from_controller: u64,
    /// Frames the network's flow rules dropped (sending or receiving side).
    pub drop_rules: u64,
    /// Messages dropped because the queue for a session-less peer was full.
    pub drop_queue_full: u64,
    /// Messages dropped because a WHOIS failed.
    pub drop_unreachable: u64,
    /// HandshakeInits dropped for a bad mac1 (before any public-key work).
    pub drop_handshake_mac: u64,
    /// HandshakeInits over their source address's budget while under load.
    pub drop_handshake_rate: u64,
    /// CookieReplies sent instead of answering a HandshakeInit while under load.
    pub cookie_replies: u64,
    /// HandshakeInits dropped unanswered because the cookie budget was spent.
    pub drop_cookie_rate: u64,
    /// SessionUnknown answers sent for Data packets on indices we do not hold.
    pub lost_session_answers: u64,
    /// Sessions dropped (and handshakes started) because the peer said it lost them.
    pub lost_session_rekeys: u64,
    /// Frames delivered to `poll_tap`.
    pub frames_in: u64,
    /// Frames sent to peers.
    pub frames_out: u64,
    /// Copies of frames sent to observers (`tee`, `watch`).
    pub frames_copied: u64,
    /// Handshakes completed (both roles).
    pub handshakes: u64,
    /// Fragment reassembly: fragments and partial packets dropped, by reason.
    pub fragments: wire::ReassemblyStats,
}

impl NodeStats {
    /// Every counter with its metric name, for `/metrics`.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("rx_datagrams", self.rx_datagrams),
            ("tx_datagrams", self.tx_datagrams),
            ("drop_malformed", self.drop_malformed),
            ("drop_not_for_us", self.drop_not_for_us),
            ("drop_unknown", self.drop_unknown),
            ("drop_handshake", self.drop_handshake),
            ("drop_unknown_session", self.drop_unknown_session),
            ("drop_source_mismatch", self.drop_source_mismatch),
            ("drop_replay", self.drop_replay),
            ("drop_auth", self.drop_auth),
            ("drop_expired", self.drop_expired),
            ("drop_not_from_root", self.drop_not_from_root),
            ("drop_world", self.drop_world),
            ("drop_push_not_peer", self.drop_push_not_peer),
            ("drop_push_rate", self.drop_push_rate),
            ("drop_not_joined", self.drop_not_joined),
            ("drop_not_member", self.drop_not_member),
            ("drop_credential", self.drop_credential),
            ("credentials_accepted", self.credentials_accepted),
            ("drop_bridge_loop", self.drop_bridge_loop),
            ("drop_storm", self.drop_storm),
            ("drop_not_from_controller", self.drop_not_from_controller),
            ("drop_rules", self.drop_rules),
            ("drop_queue_full", self.drop_queue_full),
            ("drop_unreachable", self.drop_unreachable),
            ("drop_handshake_mac", self.drop_handshake_mac),
            ("drop_handshake_rate", self.drop_handshake_rate),
            ("cookie_replies", self.cookie_replies),
            ("drop_cookie_rate", self.drop_cookie_rate),
            ("lost_session_answers", self.lost_session_answers),
            ("lost_session_rekeys", self.lost_session_rekeys),
            ("frames_in", self.frames_in),
            ("frames_out", self.frames_out),
            ("frames_copied", self.frames_copied),
            ("handshakes", self.handshakes),
        ]
        .into_iter()
        .chain(self.fragments.iter())
    }

    /// Total of all drop counters.
    pub fn dropped(&self) -> u64 {
        self.iter()
            .filter(|(name, _)| name.starts_with("drop_"))
            .map(|(_, v)| v)
            .sum()
    }

    /// The sum of two sets of counters (the control core's and the data plane's).
    pub fn merged(&self, o: &NodeStats) -> NodeStats {
        NodeStats {
            rx_datagrams: self.rx_datagrams + o.rx_datagrams,
            tx_datagrams: self.tx_datagrams + o.tx_datagrams,
            drop_malformed: self.drop_malformed + o.drop_malformed,
            drop_not_for_us: self.drop_not_for_us + o.drop_not_for_us,
            drop_unknown: self.drop_unknown + o.drop_unknown,
            drop_handshake: self.drop_handshake + o.drop_handshake,
            drop_unknown_session: self.drop_unknown_session + o.drop_unknown_session,
            drop_source_mismatch: self.drop_source_mismatch + o.drop_source_mismatch,
            drop_replay: self.drop_replay + o.drop_replay,
            drop_auth: self.drop_auth + o.drop_auth,
            drop_expired: self.drop_expired + o.drop_expired,
            drop_not_from_root: self.drop_not_from_root + o.drop_not_from_root,
            drop_world: self.drop_world + o.drop_world,
            drop_push_not_peer: self.drop_push_not_peer + o.drop_push_not_peer,
            drop_push_rate: self.drop_push_rate + o.drop_push_rate,
            drop_not_joined: self.drop_not_joined + o.drop_not_joined,
            drop_not_member: self.drop_not_member + o.drop_not_member,
            drop_credential: self.drop_credential + o.drop_credential,
            credentials_accepted: self.credentials_accepted + o.credentials_accepted,
            drop_bridge_loop: self.drop_bridge_loop + o.drop_bridge_loop,
            drop_storm: self.drop_storm + o.drop_storm,
            drop_not_from_controller: self.drop_not_from_controller + o.drop_not_from_controller,
            drop_rules: self.drop_rules + o.drop_rules,
            drop_queue_full: self.drop_queue_full + o.drop_queue_full,
            drop_unreachable: self.drop_unreachable + o.drop_unreachable,
            drop_handshake_mac: self.drop_handshake_mac + o.drop_handshake_mac,
            drop_handshake_rate: self.drop_handshake_rate + o.drop_handshake_rate,
            cookie_replies: self.cookie_replies + o.cookie_replies,
            drop_cookie_rate: self.drop_cookie_rate + o.drop_cookie_rate,
            lost_session_answers: self.lost_session_answers + o.lost_session_answers,
            lost_session_rekeys: self.lost_session_rekeys + o.lost_session_rekeys,
            frames_in: self.frames_in + o.frames_in,
            frames_out: self.frames_out + o.frames_out,
            frames_copied: self.frames_copied + o.frames_copied,
            handshakes: self.handshakes + o.handshakes,
            fragments: self.fragments.merged(&o.fragments),
        }
    }

    pub(crate) fn count(&mut self, e: TableError) {
        match e {
            TableError::Tunnel(TunnelError::Replay) | TableError::Replay => self.drop_replay += 1,
            TableError::Tunnel(TunnelError::Decrypt) => self.drop_auth += 1,
            TableError::Tunnel(TunnelError::Expired) => self.drop_expired += 1,
            TableError::Tunnel(_) | TableError::UnknownIndex => self.drop_unknown_session += 1,
            TableError::SourceMismatch => self.drop_source_mismatch += 1,
            TableError::Handshake | TableError::UnknownPeer => self.drop_handshake += 1,
            TableError::Malformed => self.drop_malformed += 1,
            TableError::BadMac => self.drop_handshake_mac += 1,
            TableError::RateLimited => self.drop_handshake_rate += 1,
            TableError::CookieWithheld => self.drop_cookie_rate += 1,
        }
    }
}

/// What `peers` shows about one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's address.
    pub address: NodeAddress,
    /// LEAF, PLANET or MOON.
    pub role: Role,
    /// Version from its HELLO, if any.
    pub version: Option<SoftwareVersion>,
    /// Smoothed round-trip time.
    pub latency: Option<Duration>,
    /// The way traffic to it goes now (`None` when there is no way yet).
    pub link: Option<Link>,
    /// All known paths: endpoint and whether it is alive.
    pub paths: Vec<(Endpoint, bool)>,
    /// Time since we last sent to it.
    pub last_tx: Option<Duration>,
    /// Time since we last heard from it.
    pub last_rx: Option<Duration>,
    /// True while a session can carry traffic.
    pub session: bool,
    /// The data-path cipher of the current session, if any.
    pub cipher: Option<Cipher>,
    /// Frames and bytes each way.
    pub traffic: PeerTraffic,
    /// Largest datagram (UDP payload) the current route carries: probed, or the floor
    /// while it is not (see `control::pmtu`).
    pub path_mtu: usize,
}

/// What `info` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// Our address.
    pub address: NodeAddress,
    /// True when at least one root answers.
    pub online: bool,
    /// While offline, why: which roots were tried and since when none answered.
    pub offline_reason: Option<String>,
    /// Our endpoint as the preferred root sees it.
    pub surface: Option<Endpoint>,
    /// The world in use: ID and revision.
    pub world: (u64, u64),
}

/// The node core. See the module documentation.
pub struct Node {
    control: Control,
    data: DataPlane,
    /// The latest `now` of any input, for commands that do not take one.
    now: Time,
}

impl Node {
    /// A node that will contact the roots of `config.world` at its first timeout.
    pub fn new(config: NodeConfig, now: Time) -> Self {
        let mut control = Control::new(config, now);
        let data = DataPlane::new(control.data_seed());
        let mut node = Node { control, data, now };
        node.run_control(now);
        node
    }

    /// Our address.
    pub fn address(&self) -> NodeAddress {
        self.control.address()
    }

    /// Sets the wall-clock time `Time::ZERO` stands for, which our handshake
    /// timestamps count from (see `SessionTable::set_wall_origin`); the simulator
    /// leaves it at the epoch.
    pub fn set_wall_origin(&mut self, origin: crate::types::UnixTime) {
        self.control.set_wall_origin(origin);
    }

    /// The verified identity of a peer we have a tunnel with (or our own).
    pub fn peer_identity(&self, peer: NodeAddress) -> Option<PublicIdentity> {
        self.control.peer_identity(peer)
    }

    /// Drop and traffic counters (control core and data plane together), summed
    /// when asked (not per frame).
    pub fn stats(&self) -> NodeStats {
        self.control.stats().merged(self.data.stats())
    }

    /// Fragment reassembly counters.
    pub fn reassembly_stats(&self) -> wire::ReassemblyStats {
        self.data.reassembly_stats()
    }

    /// Sends an ECHO to `peer` (looking it up and handshaking first if needed). The
    /// answer arrives as [`Event::Pong`] or [`Event::PingLost`] with the returned ID.
    pub fn ping(&mut self, now: Time, peer: NodeAddress) -> Result<u64, NodeError> {
        self.now = now;
        self.control.fold();
        let id = self.control.ping(now, peer);
        self.run_control(now);
        id
    }

    /// A datagram arrived on our socket `_local` from `from`. A Data packet is copied
    /// into a reused buffer to be opened in place; see
    /// [`handle_datagram_in_place`](Self::handle_datagram_in_place) to skip the copy.
    pub fn handle_datagram(&mut self, now: Time, _local: Endpoint, from: Endpoint, data: &[u8]) {
        self.on_data(now, |d, snap| d.outside(snap, now, from, data));
    }

    /// [`handle_datagram`](Self::handle_datagram) without the copy: the datagram is
    /// decrypted in the driver's receive buffer, whose contents are unspecified after.
    pub fn handle_datagram_in_place(
        &mut self,
        now: Time,
        _local: Endpoint,
        from: Endpoint,
        data: &mut [u8],
    ) {
        self.on_data(now, |d, snap| d.outside_in_place(snap, now, from, data));
    }

    /// A frame read from the TAP of `network`: switched to its member(s), filtered by the
    /// rules, sealed and queued; or dropped with the switch's reason (counted by the
    /// switch). With [`handle_tap_buffer`](Self::handle_tap_buffer), the only way a frame
    /// enters the node.
    pub fn handle_tap_frame(
        &mut self,
        now: Time,
        network: NetworkId,
        frame: &[u8],
    ) -> Result<(), DropReason> {
        self.on_data(now, |d, snap| d.inside(snap, now, network, frame))
    }

    /// [`handle_tap_frame`](Self::handle_tap_frame) for a frame at
    /// `buf[FRAME_HEADROOM..]`, sealed where it lies when it can be (see
    /// [`DataPlane::inside_buffer`]; `buf` may come back as another, empty buffer).
    pub fn handle_tap_buffer(
        &mut self,
        now: Time,
        network: NetworkId,
        buf: &mut Vec<u8>,
    ) -> Result<(), DropReason> {
        self.on_data(now, |d, snap| d.inside_buffer(snap, now, network, buf))
    }

    /// The time from [`poll_timeout`](Self::poll_timeout) has come.
    pub fn handle_timeout(&mut self, now: Time) {
        self.now = now;
        if !self.control.tick_due(now) {
            return;
        }
        self.control.fold();
        self.control.handle_timeout(now);
        self.data.housekeeping(now);
        self.run_control(now);
    }

    /// The next datagram to send (the control core's first, then the data plane's).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.control
            .poll_transmit()
            .or_else(|| self.data.poll_transmit())
    }

    /// The next frame for a TAP device.
    pub fn poll_tap(&mut self) -> Option<TapFrame> {
        self.data.poll_tap()
    }

    /// [`poll_tap`](Self::poll_tap) without moving the frame to the start of its
    /// buffer: the frame is `frame[start..]` (see [`DataPlane::poll_tap_at`]).
    pub fn poll_tap_at(&mut self) -> Option<(TapFrame, usize)> {
        self.data.poll_tap_at()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.control.poll_event()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.control.poll_timeout()
    }

    /// Gives back a buffer the node handed out (`Transmit::contents` once sent,
    /// `TapFrame::frame` once written), so later frames reuse it.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.data.recycle(buf);
    }

    /// Whether the host has an IPv6 address to send from (the driver looks at its
    /// interfaces). Without one, IPv6 endpoints of roots and peers are not tried, so an
    /// IPv4-only host does not send HELLOs and probes that can only fail. True at first.
    pub fn set_ipv6(&mut self, usable: bool) {
        self.control.set_ipv6(usable);
    }

    /// Packets this node has authenticated so far (data plane and control core): the
    /// driver compares it around a datagram to tell a genuine one from a forged one.
    pub fn authenticated(&self) -> u64 {
        self.data.authenticated() + self.control.authenticated()
    }

    /// True while a root answers.
    pub fn online(&self, now: Time) -> bool {
        self.control.online(now)
    }

    /// What `info` shows.
    pub fn status(&self, now: Time) -> NodeStatus {
        self.control.status(now)
    }

    /// What `peers` shows, sorted by address.
    pub fn peers(&self, now: Time) -> Vec<PeerInfo> {
        self.control.peers(now)
    }

    /// Every root with its liveness, latency and our endpoint as it saw us (`netcheck`).
    pub fn roots_report(&self, now: Time) -> Vec<RootReport> {
        self.control.roots_report(now)
    }

    /// [`hello_roots_now`](Self::hello_roots_now), and a root without a session gets
    /// a new handshake at once, whatever the backoff of the pending one (a new way to
    /// the roots just opened: the TCP fallback).
    pub fn handshake_roots_now(&mut self, now: Time) {
        self.control.forget_root_handshakes();
        self.hello_roots_now(now);
    }

    /// Sends every root a HELLO now, so a [`Node::roots_report`] taken a moment later
    /// is fresh (`netcheck`).
    pub fn hello_roots_now(&mut self, now: Time) {
        self.now = now;
        self.control.fold();
        self.control.hello_roots_now(now);
        self.run_control(now);
    }

    /// Starts orbiting moon `id`: asks `seed` (usually one of the moon's roots) for it;
    /// [`Event::WorldUpdated`] follows when it arrives and verifies. See
    /// [`control::worlds`].
    pub fn orbit(&mut self, now: Time, id: u64, seed: NodeAddress) -> Result<(), NodeError> {
        self.now = now;
        self.control.fold();
        let result = self.control.orbit(now, id, seed);
        self.run_control(now);
        result
    }

    /// Stops orbiting moon `id`; false when it was neither held nor waited for.
    pub fn deorbit(&mut self, now: Time, id: u64) -> bool {
        self.now = now;
        self.control.fold();
        let removed = self.control.deorbit(now, id);
        self.run_control(now);
        removed
    }

    /// The planet, the moons held and the orbits still waiting for their seed.
    pub fn worlds(&self) -> Vec<WorldInfo> {
        self.control.worlds()
    }

    /// Our own endpoints, as the driver finds them (each interface address with the
    /// node's UDP port), at start and whenever they may have changed. Peers we talk to
    /// hear them (PushDirectPaths), so two nodes behind one NAT go direct over their
    /// LAN; see [`control`] for when and to whom.
    pub fn set_local_endpoints(&mut self, now: Time, endpoints: Vec<Endpoint>) {
        self.now = now;
        self.control.fold();
        self.control.set_local_endpoints(now, endpoints);
        self.run_control(now);
    }

    /// Our endpoints as last set with [`Node::set_local_endpoints`] (implausible ones
    /// left out).
    pub fn local_endpoints(&self) -> &[Endpoint] {
        self.control.local_endpoints()
    }

    /// Joins `network`: asks its controller for a config now and keeps asking until it
    /// answers. Frames flow once [`Node::set_network`] applied a verified config.
    pub fn join(&mut self, now: Time, network: NetworkId) {
        self.now = now;
        self.control.fold();
        self.control.join(now, network);
        self.run_control(now);
    }

    /// Leaves `network`: no more frames in or out.
    pub fn leave(&mut self, network: NetworkId) {
        self.control.leave(network);
        self.run_control(self.now);
    }

    /// Every joined network.
    pub fn networks(&self) -> Vec<NetworkInfo> {
        self.control.networks()
    }

    /// Applies a verified config: the switch settings, rules and our membership
    /// credential at `revision` (`credentials` is `None` for a network without a
    /// controller, whose settings list its members). Older revisions than the one in
    /// force are ignored (no rollback by replaying an old config). Returns false when
    /// ignored or the network is not joined.
    pub fn set_network(
        &mut self,
        network: NetworkId,
        revision: u64,
        settings: SwitchSettings,
        policy: Option<Policy>,
        credentials: Option<Credentials>,
    ) -> bool {
        let now = self.now;
        let applied =
            self.control
                .set_network(now, network, revision, settings, policy, credentials);
        self.run_control(now);
        applied
    }

    /// The multicast groups our TAP of `network` joined (the driver reads them from
    /// the OS); announced to the roots so group frames reach us.
    pub fn set_multicast_groups(&mut self, network: NetworkId, groups: Vec<MulticastGroup>) {
        self.control.set_multicast_groups(network, groups);
    }

    /// The groups we announce for `network`.
    pub fn multicast_subscriptions(&self, network: NetworkId) -> Vec<MulticastGroup> {
        self.control.multicast_subscriptions(network)
    }

    /// Sends (or, for ourselves, applies) a signed config to `member`: the answer to
    /// [`Event::ConfigRequested`], or a push after a change.
    pub fn send_network_config(
        &mut self,
        now: Time,
        member: NodeAddress,
        network: NetworkId,
        config: &[u8],
    ) {
        self.send_network_answers(now, [(member, network, Ok(config))]);
    }

    /// Sends a controller's answers to many members at once, each as
    /// [`Node::send_network_config`] (`Ok(config)`) or [`Node::send_network_error`]
    /// (`Err(status)`) would, but runs the control work and republishes the snapshot
    /// once at the end: a push to N members costs one pass over the peers, not N.
    pub fn send_network_answers<'a>(
        &mut self,
        now: Time,
        answers: impl IntoIterator<Item = (NodeAddress, NetworkId, Result<&'a [u8], NetworkStatus>)>,
    ) {
        self.now = now;
        for (member, network, reply) in answers {
            self.control.fold_around(Some(member));
            match reply {
                Ok(config) => self
                    .control
                    .send_network_config(now, member, network, config),
                Err(status) => self
                    .control
                    .send_network_error(now, member, network, status),
            }
        }
        self.run_control(now);
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
        self.send_network_answers(now, [(member, network, Err(status))]);
    }

    /// Rule hit counters of a joined network: ((capability ID or `u32::MAX` for the base
    /// table, rule index or `u16::MAX` for the default action), hits).
    pub fn rule_hits(&self, network: NetworkId) -> Vec<(RuleKey, u64)> {
        self.data.rule_hits(network)
    }

    /// The switch statistics of a joined network, for `/metrics`.
    pub fn switch_stats(&self, network: NetworkId) -> Option<&SwitchStats> {
        self.data.switch_stats(network)
    }

    // ----- the split, for multi-worker drivers ------------------------------------------

    /// The snapshot in force (`Send + Sync`): what a worker's data plane reads.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(self.control.snapshot())
    }

    /// The facade's own data plane.
    pub fn data_plane(&mut self) -> &mut DataPlane {
        &mut self.data
    }

    /// A fresh data plane (`Send`) for another worker, seeded from the node's RNG. Its
    /// counters, switch state and rule hits are its own: the worker reports them.
    pub fn new_data_plane(&mut self) -> DataPlane {
        DataPlane::new(self.control.data_seed())
    }

    /// Work a worker's data plane handed over ([`DataPlane::poll_control`]).
    pub fn handle_control(&mut self, now: Time, mut item: ToControl) {
        self.now = now;
        self.control.handle(now, &mut item);
        if let Some(buf) = item.into_buffer() {
            self.data.recycle(buf);
        }
        self.run_control(now);
    }

    /// See [`Control::check_snapshot`] (for tests).
    #[doc(hidden)]
    pub fn check_snapshot(&self) -> Result<(), String> {
        self.control.check_snapshot()
    }

    // ----- internals --------------------------------------------------------------------

    /// After a data-plane input: the control core runs only if it has work.
    /// Runs one input through the data plane with the current snapshot, then lets the
    /// control core handle what it handed over.
    fn on_data<R>(&mut self, now: Time, input: impl FnOnce(&mut DataPlane, &Snapshot) -> R) -> R {
        self.now = now;
        let out = input(&mut self.data, self.control.snapshot());
        if self.data.has_control() {
            self.run_control(now);
        }
        out
    }

    /// Lets the control core handle what the data plane handed over, republishes the
    /// snapshot if anything in it changed, and runs the data plane's inbound checks on
    /// frames control received, until neither has work left.
    fn run_control(&mut self, now: Time) {
        loop {
            while let Some(mut item) = self.data.poll_control() {
                self.control.handle(now, &mut item);
                if let Some(buf) = item.into_buffer() {
                    self.data.recycle(buf);
                }
            }
            if self.control.settle(now) {
                self.data.sync(self.control.snapshot());
            }
            while let Some(d) = self.control.poll_delivery() {
                self.data.deliver(
                    self.control.snapshot(),
                    now,
                    d.peer,
                    d.network,
                    d.flags,
                    data::Held::Slice(&d.frame),
                    d.retried,
                );
            }
            while let Some((network, frame)) = self.control.poll_reinject() {
                // Dropped frames were counted by the switch.
                let _ = self
                    .data
                    .inside(self.control.snapshot(), now, network, &frame);
                self.data.recycle(frame);
            }
            if !self.data.has_control() {
                break;
            }
        }
    }
}
