//! The UDP drivers of `skylan node` and `skylan root`: each owns its protocol core on
//! one task, feeds it datagrams and timeouts from a tokio UDP socket and a monotonic
//! clock, sends what it asks, and serves commands from the local API through a
//! channel (no shared locks around the core).
//!
//! Drain order after every input (the cores' contract): transmits, TAP frames, events.

use std::collections::HashMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::home::{Home, HomeError};
use super::http;
use super::networks::{Networks, TapInput};
use crate::controller::{Change, Controller, NetworkConfig};
use crate::crypto::identity::PublicIdentity;
use crate::node::network::{NetworkStatus, RuleKey};
use crate::node::{DEFAULT_PHYS_MTU, Event, Link, Node, NodeConfig, NodeStatus, PeerInfo};
use crate::root::Root;
use crate::service::member::{self, IdentitySigner, Serving};
use crate::types::{Endpoint, Mac, NetworkId, NodeAddress, Time, Transmit};
use crate::world::{World, WorldError};

/// Errors that stop a daemon from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A file in the home directory.
    #[error(transparent)]
    Home(#[from] HomeError),
    /// The planet file.
    #[error(transparent)]
    World(#[from] WorldError),
    /// A socket could not be opened.
    #[error(
        "cannot bind {what} on {addr}: {source} (is another skylan using the port? pick another with --port)"
    )]
    Bind {
        /// UDP or the API.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The controller database could not be opened.
    #[error("controller: {0}")]
    Controller(String),
    /// Anything else from the OS.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The monotonic clock of a driver: [`Time`] counts from the driver's start.
#[derive(Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    /// Starts the clock.
    pub fn start() -> Self {
        Clock(Instant::now())
    }

    /// Now, as a core sees it.
    pub fn now(&self) -> Time {
        Time::from_micros(self.0.elapsed().as_micros() as u64)
    }

    /// The instant a core time stands for.
    pub fn instant(&self, t: Time) -> Instant {
        self.0 + Duration::from_micros(t.as_micros())
    }
}

/// Random seed for a core, from the OS.
pub fn os_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    seed
}

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
    /// Flow-rule hit counters per network and deciding rule.
    RuleHits(oneshot::Sender<Vec<(NetworkId, RuleKey, u64)>>),
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
    /// The config in force.
    pub config: Option<NetworkConfig>,
}

/// A cloneable handle the API uses to talk to the node driver.
#[derive(Clone)]
pub struct NodeHandle {
    tx: mpsc::Sender<NodeCommand>,
    /// Our address (fixed for the daemon's life).
    pub address: NodeAddress,
    /// Our public identity text.
    pub public_identity: String,
    /// The UDP port.
    pub udp_port: u16,
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

/// Settings of `skylan node`.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Home directory.
    pub home: PathBuf,
    /// UDP port (and the local API's TCP port unless `api_port` says otherwise).
    pub port: u16,
    /// Planet file; defaults to `<home>/planet`.
    pub planet: Option<PathBuf>,
    /// Local API port override.
    pub api_port: Option<u16>,
    /// Also run the network controller (its endpoints join the local API).
    pub controller: bool,
}

/// The controller side of a node driver.
struct ControllerSide {
    serving: Serving,
    changes: broadcast::Receiver<Change>,
}

/// A node core bound to a UDP socket, ready to run.
pub struct NodeDriver {
    node: Node,
    socket: UdpSocket,
    clock: Clock,
    commands: mpsc::Receiver<NodeCommand>,
    pings: HashMap<u64, oneshot::Sender<PingResult>>,
    home: Home,
    networks: Option<Networks>,
    taps: mpsc::Receiver<TapInput>,
    taps_tx: mpsc::Sender<TapInput>,
    controller: Option<ControllerSide>,
}

impl NodeDriver {
    /// Loads the identity and planet from the home directory and binds the UDP socket.
    pub async fn bind(options: &NodeOptions) -> Result<(Self, NodeHandle), DaemonError> {
        let home = Home::create(&options.home)?;
        let identity = home.load_or_create_identity()?;
        let planet = options
            .planet
            .clone()
            .unwrap_or_else(|| home.path("planet"));
        let world: World = super::home::load_world(&planet)?;
        let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, options.port));
        let socket = UdpSocket::bind(addr)
            .await
            .map_err(|source| DaemonError::Bind {
                what: "UDP",
                addr,
                source,
            })?;
        set_socket_buffers(&socket);
        let udp_port = socket.local_addr()?.port();
        let public_identity = identity.public().to_string();
        let address = identity.public().address();
        let clock = Clock::start();
        let node = Node::new(
            NodeConfig {
                identity,
                world,
                seed: os_seed(),
                phys_mtu: DEFAULT_PHYS_MTU,
            },
            clock.now(),
        );
        let controller = if options.controller {
            let c = Arc::new(
                http::controller::open(home.dir(), address)
                    .map_err(|e| DaemonError::Controller(e.to_string()))?,
            );
            let (tx, changes) = broadcast::channel(1024);
            c.subscribe(Arc::new(http::controller::BroadcastChanges(tx)));
            Some(ControllerSide {
                serving: Serving::new(c, IdentitySigner(home.load_or_create_identity()?)),
                changes,
            })
        } else {
            None
        };
        let (tx, commands) = mpsc::channel(64);
        let (taps_tx, taps) = mpsc::channel(1024);
        let handle = NodeHandle {
            tx,
            address,
            public_identity,
            udp_port,
            controller: controller.as_ref().map(|c| c.serving.controller.clone()),
        };
        Ok((
            Self {
                node,
                socket,
                clock,
                commands,
                pings: HashMap::new(),
                home,
                networks: None,
                taps,
                taps_tx,
                controller,
            },
            handle,
        ))
    }

    /// Runs until `shutdown` completes.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
        tokio::pin!(shutdown);
        let local = Endpoint(self.socket.local_addr()?);
        let mut networks = Networks::new(&self.home, self.node.address(), self.taps_tx.clone());
        networks.restore(&mut self.node, self.clock.now()).await;
        self.networks = Some(networks);
        let mut buf = vec![0u8; 65536];
        loop {
            let deadline = self
                .node
                .poll_timeout()
                .map(|t| self.clock.instant(t))
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => self.node.handle_datagram(self.clock.now(), local, Endpoint(from), &buf[..n]),
                    Err(e) => tracing::debug!("udp receive: {e}"),
                },
                _ = tokio::time::sleep_until(deadline.into()) => self.node.handle_timeout(self.clock.now()),
                Some(cmd) = self.commands.recv() => self.command(cmd).await,
                Some((network, frame)) = self.taps.recv() => {
                    let _ = self.node.handle_tap_frame(self.clock.now(), network, &frame);
                }
                change = next_change(&mut self.controller) => self.on_change(change),
                _ = &mut shutdown => break,
            }
            self.drain().await;
        }
        if let Some(n) = &mut self.networks {
            n.shutdown().await;
        }
        Ok(())
    }

    fn on_change(&mut self, change: Option<Change>) {
        let now = self.clock.now();
        let (Some(side), Some(change)) = (&self.controller, change) else {
            return;
        };
        let wall = http::controller::wall_clock();
        if let Err(e) = side.serving.push(&mut self.node, now, wall, change.nwid) {
            tracing::warn!(network = %change.nwid, "pushing configs failed: {e}");
        }
    }

    async fn command(&mut self, cmd: NodeCommand) {
        let now = self.clock.now();
        match cmd {
            NodeCommand::Status(tx) => {
                let _ = tx.send(self.node.status(now));
            }
            NodeCommand::Peers(tx) => {
                let _ = tx.send(self.node.peers(now));
            }
            NodeCommand::Stats(tx) => {
                let _ = tx.send(self.node.stats().iter().collect());
            }
            NodeCommand::Join(network, tx) => {
                self.node.join(now, network);
                if let Some(n) = &self.networks {
                    n.joined(network);
                }
                let _ = tx.send(());
            }
            NodeCommand::Leave(network, tx) => {
                let was = self.node.networks().iter().any(|n| n.id == network);
                self.node.leave(network);
                if let Some(n) = &mut self.networks {
                    n.leave(network).await;
                }
                let _ = tx.send(was);
            }
            NodeCommand::RuleHits(tx) => {
                let hits = self
                    .node
                    .networks()
                    .into_iter()
                    .flat_map(|n| {
                        self.node
                            .rule_hits(n.id)
                            .into_iter()
                            .map(move |(k, v)| (n.id, k, v))
                    })
                    .collect();
                let _ = tx.send(hits);
            }
            NodeCommand::Networks(tx) => {
                let me = self.node.address();
                let views = self
                    .node
                    .networks()
                    .into_iter()
                    .map(|n| NetworkView {
                        id: n.id,
                        status: n.status,
                        mac: Mac::for_member(me, n.id),
                        device: self
                            .networks
                            .as_ref()
                            .and_then(|x| x.device(n.id).map(str::to_string)),
                        config: self.networks.as_ref().and_then(|x| x.config(n.id).cloned()),
                    })
                    .collect();
                let _ = tx.send(views);
            }
            NodeCommand::Ping(peer, tx) => match self.node.ping(now, peer) {
                Ok(id) => {
                    self.pings.insert(id, tx);
                }
                Err(e) => {
                    let _ = tx.send(PingResult::Refused(e.to_string()));
                }
            },
        }
    }

    async fn drain(&mut self) {
        while let Some(t) = self.node.poll_transmit() {
            send(&self.socket, t).await;
        }
        while let Some(f) = self.node.poll_tap() {
            if let Some(n) = &self.networks {
                n.deliver(f.network, &f.frame).await;
            }
        }
        while let Some(event) = self.node.poll_event() {
            match event {
                Event::ConfigRequested {
                    network, identity, ..
                } => self.answer(network, identity),
                Event::ConfigReceived {
                    network,
                    controller_key,
                    config,
                } => {
                    match member::apply_config(&mut self.node, network, &controller_key, &config) {
                        Ok(cfg) => {
                            let controller = self.node.peer_identity(network.controller());
                            if let Some(n) = &mut self.networks {
                                n.accept(network, controller.as_ref(), &config, cfg).await;
                            }
                        }
                        Err(e) => tracing::warn!(%network, "network config rejected: {e}"),
                    }
                }
                Event::NetworkStatus { network, status } => {
                    tracing::info!(%network, status = status.as_str(), "network status");
                    if matches!(
                        status,
                        NetworkStatus::AccessDenied | NetworkStatus::NotFound
                    ) {
                        if let Some(n) = &mut self.networks {
                            n.withdraw(network).await;
                        }
                    }
                }
                Event::Pong { id, rtt, link, .. } => {
                    if let Some(tx) = self.pings.remove(&id) {
                        let _ = tx.send(PingResult::Reply { rtt, link });
                    }
                }
                Event::PingLost { id, .. } => {
                    if let Some(tx) = self.pings.remove(&id) {
                        let _ = tx.send(PingResult::Lost);
                    }
                }
                Event::LinkChanged { peer, link } => tracing::info!(%peer, %link, "link changed"),
                Event::Unreachable(peer) => tracing::info!(%peer, "no root knows this address"),
            }
        }
    }
}

impl NodeDriver {
    fn answer(&mut self, network: NetworkId, identity: PublicIdentity) {
        let now = self.clock.now();
        let Some(side) = &mut self.controller else {
            return;
        };
        let wall = http::controller::wall_clock();
        if let Err(e) = side
            .serving
            .on_request(&mut self.node, now, wall, network, &identity)
        {
            tracing::warn!(%network, member = %identity.address(), "answering a config request failed: {e}");
        }
    }
}

/// The next controller change, or never when there is no controller.
async fn next_change(side: &mut Option<ControllerSide>) -> Option<Change> {
    match side {
        Some(s) => loop {
            match s.changes.recv().await {
                Ok(c) => return Some(c),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        },
        None => std::future::pending().await,
    }
}

/// Settings of `skylan root`.
#[derive(Debug, Clone)]
pub struct RootOptions {
    /// Home directory (identity created there if missing).
    pub home: PathBuf,
    /// UDP port.
    pub port: u16,
    /// The world this root belongs to, so it can answer WHOIS for its fellow roots.
    pub world: Option<PathBuf>,
}

/// Runs `skylan root` until `shutdown` completes.
pub async fn run_root(
    options: RootOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let home = Home::create(&options.home)?;
    let identity = home.load_or_create_identity()?;
    let world = options
        .world
        .as_deref()
        .map(super::home::load_world)
        .transpose()?;
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, options.port));
    let socket = UdpSocket::bind(addr)
        .await
        .map_err(|source| DaemonError::Bind {
            what: "UDP",
            addr,
            source,
        })?;
    set_socket_buffers(&socket);
    let local = Endpoint(socket.local_addr()?);
    tracing::info!(address = %identity.public().address(), %local, "root listening");
    let clock = Clock::start();
    let mut root = Root::new(identity, world.as_ref(), os_seed(), clock.now());
    tokio::pin!(shutdown);
    let mut buf = vec![0u8; 65536];
    loop {
        let deadline = root
            .poll_timeout()
            .map(|t| clock.instant(t))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, from)) => root.handle_datagram(clock.now(), local, Endpoint(from), &buf[..n]),
                Err(e) => tracing::debug!("udp receive: {e}"),
            },
            _ = tokio::time::sleep_until(deadline.into()) => root.handle_timeout(clock.now()),
            _ = &mut shutdown => return Ok(()),
        }
        while let Some(t) = root.poll_transmit() {
            send(&socket, t).await;
        }
    }
}

/// UDP socket buffer size asked for: bursts of full-size frames arrive as three
/// fragments each, and the kernel's default (about 200 KiB) overflows under TCP load,
/// which the end-to-end benchmark showed as thousands of retransmits.
pub const SOCKET_BUFFER: usize = 4 << 20;

/// Enlarges the socket's buffers: past the system limit when privileged
/// (`SO_RCVBUFFORCE`), up to it otherwise. Failures only cost throughput.
fn set_socket_buffers(socket: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    let size = libc::c_int::try_from(SOCKET_BUFFER).unwrap_or(libc::c_int::MAX);
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        let set = |opt| {
            // SAFETY: `fd` is an open socket owned by `socket` for the whole call, and the
            // option value is a properly sized c_int.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            }
        };
        if set(force) != 0 && set(plain) != 0 {
            tracing::debug!("could not enlarge the UDP socket buffers");
        }
    }
}

async fn send(socket: &UdpSocket, t: Transmit) {
    if let Err(e) = socket.send_to(&t.contents, t.destination.0).await {
        tracing::debug!(to = %t.destination, "udp send: {e}");
    }
}

/// Runs `skylan node` until `shutdown` completes: the UDP driver, and the local API on
/// 127.0.0.1 (with the controller's endpoints when `options.controller`).
pub async fn run_node(
    options: NodeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let (driver, handle) = NodeDriver::bind(&options).await?;
    let home = Home::create(&options.home)?;
    let token = http::load_or_create_token(home.dir()).map_err(|source| HomeError::Io {
        path: home.path(http::TOKEN_FILE),
        source,
    })?;
    let api_port = options.api_port.unwrap_or(handle.udp_port);
    let api_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, api_port));
    let listener = tokio::net::TcpListener::bind(api_addr)
        .await
        .map_err(|source| DaemonError::Bind {
            what: "the local API",
            addr: api_addr,
            source,
        })?;
    home.write_port(listener.local_addr()?.port())?;
    let mut protected = http::node::routes(handle.clone());
    if let Some(controller) = &handle.controller {
        protected = protected.merge(http::controller::routes(
            controller.clone(),
            Arc::new(http::controller::wall_clock),
        ));
    }
    let router = http::router(http::ApiConfig::new(token), protected);
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let api = tokio::spawn(http::serve(
        listener,
        async move {
            let _ = stop_rx.changed().await;
        },
        router,
    ));
    tracing::info!(address = %handle.address, udp = handle.udp_port, api = api_port, "node running");
    let result = driver.run(shutdown).await;
    let _ = stop_tx.send(true);
    let _ = api.await;
    result
}
