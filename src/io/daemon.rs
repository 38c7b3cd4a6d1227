//! The drivers of `skylan node` and `skylan root`: each owns its protocol core on one
//! task, feeds it datagrams, TAP frames and timeouts from a UDP socket ([`UdpIo`]), the
//! TAP devices and a monotonic clock, sends what it asks, and serves commands from the
//! local API through a channel (no shared locks around the core).
//!
//! The node's packet loop runs on a thread of its own with a single-threaded runtime
//! (`skylan-packets`); the local API and the controller's HTTP endpoints run on the
//! process's main runtime and talk to it only through channels. In the loop, UDP, the
//! TAPs and the core share one thread: no frame crosses a thread or a channel. Each
//! turn takes everything ready in bounded batches — one `recvmmsg` of datagrams, up to
//! [`TAP_BATCH`](super::packets::TAP_BATCH) frames per TAP — and flushes after each
//! batch, so neither direction starves the other; it sleeps only when both are drained.
//! With `--workers N` the packet loop is also the control thread of N - 1 more packet
//! threads (see [`super::workers`]): it publishes the node's snapshot and TAP list to
//! them and handles what their data planes hand over.
//!
//! Drain order after every batch (the cores' contract): transmits (one `sendmmsg`, with
//! segmentation offload), TAP frames, events; repeated while events produce more.
//!
//! Worlds: at start the node orbits every moon of `<home>/moons.d` and the root serves
//! every one (a file that does not load is skipped with a warning, see
//! [`Home::load_moons`]). The node driver stores each world the core accepts
//! (`Event::WorldUpdated`: a moon `orbit` asked for, a newer revision in band) with
//! [`Home::save_world`], and removes a moon's file on `deorbit`, so what a node orbits
//! survives restarts.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};
use tokio::sync::{mpsc, oneshot, watch};

use super::handle::{NetworkView, NodeCommand, NodeHandle, PingResult, RootsView, SetNetworkError};
use super::home::{Home, HomeError};
use super::http;
use super::interfaces;
use super::local::NetworkDefaults;
use super::netdev;
use super::networks::Networks;
use super::packets::{PacketIo, TapCounters, received};
use super::tap::Queues;
use super::tcp::{self, Fallback, FallbackAction, TcpEvent, TcpLink};
use super::udp::UdpIo;
use super::workers::Workers;
use crate::controller::Change;
use crate::crypto::identity::PublicIdentity;
use crate::node::network::NetworkStatus;
use crate::node::{DEFAULT_PHYS_MTU, Event, Node, NodeConfig, NodeStats, ToControl};
use crate::root::Root;
use crate::service::member::{self, Answer, IdentitySigner, Serving};
use crate::types::{Endpoint, Mac, NetworkId, NodeAddress, Time, UnixTime};
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

    /// The wall-clock time that core time zero stands for (what handshake timestamps
    /// count from).
    pub fn wall_origin(&self) -> UnixTime {
        let now = http::controller::wall_clock().as_micros();
        UnixTime::from_micros(now.saturating_sub(self.now().as_micros()))
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
    /// Where the controller keeps its data.
    pub controller_db: http::controller::ControllerDb,
    /// Packet threads (at least one; the first also runs the control work).
    pub workers: usize,
    /// The opt-ins a network starts with when joined (from `<home>/local.toml`).
    pub network_defaults: NetworkDefaults,
}

/// Work for the controller thread: decide, sign, store, and send the answers back to
/// the packet loop as [`NodeCommand::Answers`].
enum ControllerWork {
    /// A member asked for a network's config.
    Asked(NetworkId, Box<PublicIdentity>),
    /// A network changed, or a member lost access: answer everyone who asked again
    /// (`None`), or only the member that changed (a config lists no other members).
    Changed(NetworkId, Option<NodeAddress>),
}

/// Items handed over by workers that one turn of the control thread takes.
const HANDOVER_BATCH: usize = 256;

/// A node core bound to a UDP socket, ready to run.
pub struct NodeDriver {
    node: Node,
    io: PacketIo,
    clock: Clock,
    commands: mpsc::Receiver<NodeCommand>,
    pings: HashMap<u64, oneshot::Sender<PingResult>>,
    home: Home,
    /// The planet file the node was started with: a newer revision accepted in band is
    /// stored there.
    planet: PathBuf,
    networks: Option<Networks>,
    /// The controller thread's queue, when this node runs one.
    controller: Option<std::sync::mpsc::Sender<ControllerWork>>,
    /// The TAPs in `io` (and published to the workers) are those of
    /// `Networks::generation() == taps_generation`.
    taps_generation: u64,
    /// Bridge-loop drops already reported, and when to look again.
    bridge_loops: (u64, Instant),
    /// The other packet threads, with `--workers` above one.
    workers: Option<Workers>,
    /// How many packet threads in all.
    threads: usize,
    /// Handed to [`Networks`] when the driver starts.
    network_defaults: NetworkDefaults,
    /// Our UDP port, which local endpoints pair with interface addresses.
    udp_port: u16,
    /// True when the UDP socket speaks IPv6 (its addresses are local endpoints too).
    ipv6: bool,
    /// `interfacePrefixBlacklist` of `<home>/local.toml`.
    interface_blacklist: Vec<String>,
    /// When to look at the host's interfaces again ([`interfaces::REFRESH`]).
    next_interfaces: Instant,
    /// When root traffic goes over TCP (see [`super::tcp`]).
    fallback: Fallback,
    /// What TCP connections report, and the sender they report with.
    tcp_events: (mpsc::Sender<TcpEvent>, mpsc::Receiver<TcpEvent>),
    /// The TCP root's endpoint while the fallback is on, for `info` and `peers`.
    tcp_shown: watch::Sender<Option<Endpoint>>,
    /// The TCP fallback's connection while it is on.
    tcp_link: Option<TcpLink>,
}

impl NodeDriver {
    /// Loads the identity and planet from the home directory and binds the UDP socket
    /// in the calling thread's runtime (the one that will run the driver).
    pub async fn bind(options: &NodeOptions) -> Result<(Self, NodeHandle), DaemonError> {
        let home = Home::create(&options.home)?;
        let identity = home.load_or_create_identity()?;
        let planet = options
            .planet
            .clone()
            .unwrap_or_else(|| home.path("planet"));
        let world: World = super::home::load_world(&planet)?;
        let moons = home.load_moons();
        for moon in &moons {
            tracing::info!(id = %hex_id(moon.id), roots = %describe_roots(moon), "orbiting moon (from {})", super::home::MOONS_DIR);
        }
        let threads = options.workers.max(1);
        let udp = bind_udp(options.port, threads > 1).await?;
        let udp_port = udp.local().0.port();
        let ipv6 = udp.has_ipv6();
        let public_identity = identity.public().to_string();
        let address = identity.public().address();
        let clock = Clock::start();
        let mut node = Node::new(
            NodeConfig {
                identity,
                world,
                moons,
                seed: os_seed(),
                phys_mtu: DEFAULT_PHYS_MTU,
            },
            clock.now(),
        );
        node.set_wall_origin(clock.wall_origin());
        let (tx, commands) = mpsc::channel(64);
        let (controller, controller_work) = if options.controller {
            // Blocking: a PostgreSQL standby waits here until the serving process stops.
            let (dir, database) = (home.dir().to_path_buf(), options.controller_db.clone());
            let opened = tokio::task::spawn_blocking(move || {
                http::controller::open(&dir, address, &database)
            })
            .await
            .map_err(|e| DaemonError::Controller(format!("opening the controller: {e}")))?;
            let c = Arc::new(opened.map_err(|e| DaemonError::Controller(e.to_string()))?);
            let serving = Serving::new(c.clone(), IdentitySigner(home.load_or_create_identity()?));
            let (work, queue) = std::sync::mpsc::channel();
            let changed = work.clone();
            c.subscribe(Arc::new(move |change: &Change| {
                // A stopped controller thread only means nobody needs pushing.
                let only = change.member.filter(|_| !change.revoked);
                let _ = changed.send(ControllerWork::Changed(change.nwid, only));
            }));
            let answers = tx.clone();
            std::thread::Builder::new()
                .name("skylan-controller".into())
                .spawn(move || run_controller(serving, queue, answers))?;
            (Some(c), Some(work))
        } else {
            (None, None)
        };
        let workers = if threads > 1 {
            // The same address as the driver's socket: dual-stack when it is.
            let local = udp.local().0;
            let w = Workers::start(threads - 1, &mut node, local, clock)
                .await
                .map_err(|source| DaemonError::Bind {
                    what: "UDP for a packet worker",
                    addr: local,
                    source,
                })?;
            Some(w)
        } else {
            None
        };
        // `skylan node` refused a bad local.toml before it got here; this reads the one
        // key the driver itself needs.
        let interface_blacklist = super::local::LocalConfig::load(&options.home)
            .map(|l| l.interface_prefix_blacklist)
            .unwrap_or_default();
        let (tcp_shown, tcp) = watch::channel(None);
        let handle = NodeHandle {
            tx,
            address,
            public_identity,
            udp_port,
            ipv6,
            tcp,
            home: home.dir().to_path_buf(),
            controller,
        };
        Ok((
            Self {
                node,
                io: PacketIo::new(udp),
                clock,
                commands,
                pings: HashMap::new(),
                home,
                planet,
                networks: None,
                controller: controller_work,
                taps_generation: u64::MAX,
                bridge_loops: (0, Instant::now()),
                workers,
                threads,
                network_defaults: options.network_defaults.clone(),
                udp_port,
                ipv6,
                interface_blacklist,
                next_interfaces: Instant::now(),
                fallback: Fallback::default(),
                tcp_events: mpsc::channel(1024),
                tcp_shown,
                tcp_link: None,
            },
            handle,
        ))
    }

    /// Runs until `shutdown` completes.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
        tokio::pin!(shutdown);
        let queues = if self.threads > 1 {
            Queues::Many
        } else {
            Queues::One
        };
        let mut networks = Networks::new(
            &self.home,
            self.node.address(),
            queues,
            std::mem::take(&mut self.network_defaults),
        );
        networks.restore(&mut self.node, self.clock.now()).await;
        self.networks = Some(networks);
        loop {
            // Everything ready, in bounded batches, flushing after each.
            loop {
                let now = self.clock.now();
                let mut moved = self.io.pump_udp(&mut self.node, now) + self.pump_workers(now);
                self.flush().await;
                moved += self.io.pump_taps(&mut self.node, now);
                self.flush().await;
                if moved == 0 {
                    break;
                }
            }
            let now = self.clock.now();
            if self.node.poll_timeout().is_some_and(|t| t <= now) {
                self.node.handle_timeout(now);
                self.flush().await;
            }
            self.refresh_taps();
            if self.refresh_local_endpoints() {
                self.flush().await;
            }
            if let Some(n) = &mut self.networks {
                n.watch_underlay(&self.node, self.clock.now()).await;
                n.watch_groups(&mut self.node);
            }
            self.warn_on_bridge_loops();
            if self.drive_fallback() {
                self.flush().await;
            }
            let deadline = self
                .node
                .poll_timeout()
                .map(|t| self.clock.instant(t))
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.io.readable() => {}
                item = next_item(&mut self.workers) => self.node.handle_control(self.clock.now(), item),
                _ = tokio::time::sleep_until(deadline.into()) => self.node.handle_timeout(self.clock.now()),
                Some(cmd) = self.commands.recv() => self.command(cmd).await,
                Some(event) = self.tcp_events.1.recv() => self.on_tcp(event),
            }
            self.flush().await;
        }
        if let Some(w) = self.workers.take() {
            w.stop().await;
        }
        self.release_taps().await;
        if let Some(n) = &mut self.networks {
            n.shutdown().await;
        }
        Ok(())
    }

    /// Moves root traffic to TCP and back as [`Fallback`] says (see [`super::tcp`]).
    /// True when the core may have something to send.
    fn drive_fallback(&mut self) -> bool {
        let now = self.clock.now();
        // An authenticated datagram from the TCP root came over UDP, on any thread.
        let heard = self.io.take_udp_from_tcp_root()
            | self
                .workers
                .as_ref()
                .is_some_and(Workers::take_udp_from_tcp_root);
        if heard && self.fallback.udp_answered() {
            if let Some(link) = &self.tcp_link {
                tracing::info!(root = %link.peer(), "UDP works again: TCP fallback off");
            }
            self.set_tcp(None);
        }
        match self.fallback.tick(now, self.node.online(now)) {
            Some(FallbackAction::Connect(attempt)) => {
                let endpoints: Vec<Endpoint> = self
                    .node
                    .roots_report(now)
                    .iter()
                    .flat_map(|r| r.endpoints.iter().copied())
                    .filter(|e| self.ipv6 || e.0.is_ipv4())
                    .collect();
                match endpoints.get(attempt % endpoints.len().max(1)).copied() {
                    Some(root) => {
                        let addr = SocketAddr::new(root.0.ip(), tcp::ROOT_TCP_PORT);
                        tracing::warn!(
                            %root,
                            "no root has answered over UDP for {} s: trying TCP to {addr}",
                            tcp::FALLBACK_AFTER.as_secs()
                        );
                        tcp::connect(addr, root, self.tcp_events.0.clone());
                    }
                    None => self.fallback.lost(now),
                }
                false
            }
            Some(FallbackAction::ProbeUdp) => {
                self.io.probe_udp_once();
                self.node.hello_roots_now(now);
                true
            }
            None => false,
        }
    }

    /// What a TCP connection reported.
    fn on_tcp(&mut self, event: TcpEvent) {
        let now = self.clock.now();
        match event {
            TcpEvent::Opened(mut link) if self.fallback.connecting() => {
                tracing::info!(root = %link.peer(), "TCP fallback on: root traffic goes over TCP");
                self.fallback.connected(now);
                link.start();
                self.set_tcp(Some(link));
                // The handshake started over UDP waits out its backoff otherwise.
                self.node.handshake_roots_now(now);
            }
            // A connection nobody waits for any more (UDP came back meanwhile).
            TcpEvent::Opened(_) => {}
            TcpEvent::Datagram(from, mut data) => {
                self.io.tcp_datagram(&mut self.node, now, from, &mut data);
            }
            TcpEvent::Closed { id, peer, why } => {
                if self.tcp_link.as_ref().is_some_and(|l| l.id() == id) {
                    tracing::warn!(root = %peer, "TCP to the root: {why}");
                    self.set_tcp(None);
                    self.fallback.lost(now);
                }
            }
            TcpEvent::Failed(root, why) => {
                if self.fallback.connecting() {
                    tracing::warn!(%root, "TCP fallback: {why}");
                    self.fallback.lost(now);
                }
            }
        }
    }

    /// Puts `link` in use for root traffic on every packet thread (`None`: UDP again).
    fn set_tcp(&mut self, link: Option<TcpLink>) {
        self.tcp_shown
            .send_replace(link.as_ref().map(TcpLink::peer));
        let sender = link.as_ref().map(TcpLink::sender);
        if let Some(w) = &mut self.workers {
            w.set_tcp(sender.clone());
        }
        self.io.set_tcp(sender);
        self.tcp_link = link;
    }

    /// Tells the core the host's endpoints (interface addresses with our UDP port) at
    /// start and every [`interfaces::REFRESH`]; the core pushes them to peers when they
    /// changed. True when it looked.
    fn refresh_local_endpoints(&mut self) -> bool {
        if Instant::now() < self.next_interfaces {
            return false;
        }
        self.next_interfaces = Instant::now() + interfaces::REFRESH;
        let endpoints =
            interfaces::local_endpoints(self.udp_port, self.ipv6, &self.interface_blacklist);
        // IPv6 is worth trying only with a global or unique-local address to send from.
        self.node.set_ipv6(endpoints.iter().any(|e| e.0.is_ipv6()));
        self.node.set_local_endpoints(self.clock.now(), endpoints);
        true
    }

    /// Hands the core up to [`HANDOVER_BATCH`] items the workers' data planes passed on;
    /// returns how many.
    fn pump_workers(&mut self, now: Time) -> usize {
        let Some(workers) = &mut self.workers else {
            return 0;
        };
        let mut moved = 0;
        while moved < HANDOVER_BATCH {
            let Some(item) = workers.try_item() else {
                break;
            };
            self.node.handle_control(now, item);
            moved += 1;
        }
        moved
    }

    /// Lets go of the TAPs before a device is removed: the device goes only when its
    /// last handle and queue close, and removal checks that none is still held. The
    /// list is read again on the next turn.
    async fn release_taps(&mut self) {
        self.io.set_taps(Vec::new());
        self.taps_generation = u64::MAX;
        if let Some(w) = &mut self.workers {
            w.release_taps().await;
        }
    }

    /// Re-reads the TAP list when devices came or went, and passes it on to the workers.
    fn refresh_taps(&mut self) {
        let Some(n) = &self.networks else {
            return;
        };
        if n.generation() == self.taps_generation {
            return;
        }
        let taps = n.taps();
        self.taps_generation = n.generation();
        if let Some(w) = &mut self.workers {
            w.set_taps(taps.clone());
        }
        self.io.set_taps(taps);
    }

    /// Every few seconds: says so when this bridge dropped frames that came back to
    /// its own segment through another bridge.
    fn warn_on_bridge_loops(&mut self) {
        let (reported, next) = self.bridge_loops;
        if Instant::now() < next {
            return;
        }
        let loops = self.counters().0.drop_bridge_loop;
        if loops > reported {
            tracing::warn!(
                "{} frames of this bridge's own segment came back through another active \
                 bridge and were dropped: two active bridges share a LAN segment; make only \
                 one of them an active bridge (`activeBridge`)",
                loops - reported
            );
        }
        self.bridge_loops = (loops, Instant::now() + Duration::from_secs(5));
    }

    /// Counters of the core and every packet thread.
    fn counters(&self) -> (NodeStats, TapCounters) {
        let (stats, taps) = self
            .workers
            .as_ref()
            .map(Workers::stats)
            .unwrap_or_default();
        (
            self.node.stats().merged(&stats),
            self.io.counters().merged(&taps),
        )
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
                let (stats, taps) = self.counters();
                let mut named: Vec<(&'static str, u64)> = stats.iter().collect();
                named.extend(taps.named());
                let _ = tx.send(named);
            }
            NodeCommand::Threads(tx) => {
                let mut threads = vec![self.node.stats()];
                threads.extend(self.workers.iter().flat_map(Workers::per_worker));
                let _ = tx.send(threads);
            }
            NodeCommand::Join(network, tx) => {
                self.node.join(now, network);
                if let Some(n) = &mut self.networks {
                    n.joined(network);
                }
                let _ = tx.send(());
            }
            NodeCommand::Leave(network, tx) => {
                let was = self.node.networks().iter().any(|n| n.id == network);
                self.node.leave(network);
                self.release_taps().await;
                if let Some(n) = &mut self.networks {
                    n.leave(network).await;
                }
                let _ = tx.send(was);
            }
            NodeCommand::RuleHits(tx) => {
                let mut hits = BTreeMap::new();
                let ours = self.node.data_plane().all_rule_hits();
                let theirs = self.workers.as_ref().map(Workers::rule_hits);
                for (network, rule, n) in ours.into_iter().chain(theirs.into_iter().flatten()) {
                    *hits.entry((network, rule)).or_insert(0) += n;
                }
                let _ = tx.send(hits.into_iter().map(|((w, r), n)| (w, r, n)).collect());
            }
            NodeCommand::Networks(tx) => {
                let me = self.node.address();
                let mut groups = netdev::multicast_groups();
                let views = self
                    .node
                    .networks()
                    .into_iter()
                    .map(|n| {
                        let device = self
                            .networks
                            .as_ref()
                            .and_then(|x| x.device(n.id).map(str::to_string));
                        NetworkView {
                            id: n.id,
                            status: n.status,
                            mac: Mac::for_member(me, n.id),
                            multicast: device
                                .as_ref()
                                .and_then(|d| groups.remove(d))
                                .unwrap_or_default(),
                            device,
                            port_error: self
                                .networks
                                .as_ref()
                                .and_then(|x| x.port_error(n.id).map(str::to_string)),
                            config: self.networks.as_ref().and_then(|x| x.config(n.id).cloned()),
                            settings: self
                                .networks
                                .as_ref()
                                .map(|x| x.settings(n.id))
                                .unwrap_or_default(),
                            skipped: self
                                .networks
                                .as_ref()
                                .map(|x| x.skipped(n.id).to_vec())
                                .unwrap_or_default(),
                        }
                    })
                    .collect();
                let _ = tx.send(views);
            }
            NodeCommand::SetNetwork(network, changes, tx) => {
                let joined = self.node.networks().iter().any(|n| n.id == network);
                let result = match &mut self.networks {
                    Some(n) if joined => {
                        n.set(network, &changes).await.map(drop).map_err(Into::into)
                    }
                    _ => Err(SetNetworkError::NotJoined(network)),
                };
                let _ = tx.send(result);
            }
            NodeCommand::Answers(answers) => Answer::apply_all(&answers, &mut self.node, now),
            NodeCommand::HelloRoots(tx) => {
                let roots = self.node.roots_report(now);
                self.node.hello_roots_now(now);
                let _ = tx.send(RootsView { now, roots });
            }
            NodeCommand::Roots(tx) => {
                let roots = self.node.roots_report(now);
                let _ = tx.send(RootsView { now, roots });
            }
            NodeCommand::Orbit(id, seed, tx) => {
                let result = self.node.orbit(now, id, seed).map_err(|e| e.to_string());
                if result.is_ok() {
                    tracing::info!(id = %hex_id(id), %seed, "orbit: asking the seed for the moon");
                }
                let _ = tx.send(result);
            }
            NodeCommand::Deorbit(id, tx) => {
                let was = self.node.deorbit(now, id);
                if was {
                    self.forget_moon(id);
                }
                let _ = tx.send(was);
            }
            NodeCommand::Worlds(tx) => {
                let _ = tx.send(self.node.worlds());
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

    /// Sends what the core produced, in the contract's order, until it has nothing left,
    /// and publishes its snapshot to the workers when it changed.
    async fn flush(&mut self) {
        loop {
            self.io.flush(&mut self.node).await;
            if let Some(w) = &mut self.workers {
                w.publish(&self.node);
            }
            let mut events = false;
            while let Some(event) = self.node.poll_event() {
                events = true;
                self.on_event(event).await;
            }
            if !events {
                return;
            }
        }
    }

    async fn on_event(&mut self, event: Event) {
        match event {
            Event::ConfigRequested {
                network, identity, ..
            } => {
                if let Some(c) = &self.controller {
                    // A stopped controller thread answers nobody; members retry.
                    let _ = c.send(ControllerWork::Asked(network, Box::new(identity)));
                }
            }
            Event::ConfigReceived {
                network,
                controller_key,
                config,
            } => match member::apply_config(&mut self.node, network, &controller_key, &config) {
                Ok(cfg) => {
                    let controller = self.node.peer_identity(network.controller());
                    if let Some(n) = &mut self.networks {
                        n.accept(network, controller.as_ref(), &config, cfg).await;
                    }
                }
                Err(e) => tracing::warn!(%network, "network config rejected: {e}"),
            },
            Event::NetworkStatus { network, status } => {
                tracing::info!(%network, status = status.as_str(), "network status");
                if matches!(
                    status,
                    NetworkStatus::AccessDenied | NetworkStatus::NotFound
                ) {
                    self.release_taps().await;
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
            Event::Online { root } => tracing::info!(%root, "online: a root answers"),
            Event::Offline { reason } => tracing::warn!("offline: {reason}"),
            Event::WorldUpdated(world) => self.store_world(&world),
            Event::WorldRefused { id, from, reason } => {
                tracing::warn!(id = %hex_id(id), %from, "world refused: {reason}")
            }
        }
    }

    /// Stores a world the core accepted (a moon `orbit` asked for, or a newer revision
    /// of the planet or a moon), so the node starts with it next time. A failure is
    /// logged: the world stays in use until the node stops.
    fn store_world(&self, world: &World) {
        let id = hex_id(world.id);
        match self.home.save_world(world, &self.planet) {
            Ok(path) => tracing::info!(
                %id,
                kind = %world.kind,
                revision = world.timestamp,
                roots = %describe_roots(world),
                file = %path.display(),
                "world updated and stored"
            ),
            Err(e) => tracing::warn!(
                %id,
                kind = %world.kind,
                "world updated and in use, but not stored (the node will start without this revision): {e}"
            ),
        }
    }

    /// Removes a deorbited moon's file, so it is not orbited again at the next start.
    fn forget_moon(&self, id: u64) {
        let id_text = hex_id(id);
        match self.home.remove_moon(id) {
            Ok(files) => {
                for f in files {
                    tracing::info!(id = %id_text, file = %f.display(), "deorbited; moon file removed");
                }
            }
            Err(e) => tracing::warn!(
                id = %id_text,
                "deorbited, but the moon file stays (the node will orbit it again at the next start): {e}"
            ),
        }
    }
}

/// A world id as shown everywhere: 16 hex digits.
fn hex_id(id: u64) -> String {
    format!("{id:016x}")
}

/// A world's roots for the log: `<address>@<endpoint>,<endpoint> ...`.
fn describe_roots(world: &World) -> String {
    world
        .roots
        .iter()
        .map(|r| {
            let endpoints: Vec<String> = r.endpoints.iter().map(ToString::to_string).collect();
            format!("{}@{}", r.identity.address(), endpoints.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The controller thread: decides (which may write the store) and signs away from the
/// packet loop, then hands the answers to it. Ends when the driver is gone.
fn run_controller(
    mut serving: Serving,
    queue: std::sync::mpsc::Receiver<ControllerWork>,
    answers: mpsc::Sender<NodeCommand>,
) {
    while let Ok(work) = queue.recv() {
        let wall = http::controller::wall_clock();
        let (network, decided) = match &work {
            ControllerWork::Asked(network, member) => (
                *network,
                serving.answers_for_request(wall, *network, member),
            ),
            ControllerWork::Changed(network, None) => {
                (*network, serving.answers_for_push(wall, *network))
            }
            ControllerWork::Changed(network, Some(member)) => (
                *network,
                serving.answers_for_member(wall, *network, *member),
            ),
        };
        match decided {
            Ok(a) if a.is_empty() => {}
            Ok(a) => {
                if answers.blocking_send(NodeCommand::Answers(a)).is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!(%network, "answering config requests failed: {e}"),
        }
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
    /// Local API TCP port (`/metrics`, `/health`), if not the UDP port.
    pub api_port: Option<u16>,
    /// TCP port of the fallback relay ([`tcp::ROOT_TCP_PORT`]); 0 turns it off.
    pub tcp_port: u16,
}

/// The receive buffer of a root's socket. Small on purpose: when more arrives than the
/// root can handle (a flood), a deep queue would only delay every legitimate packet
/// behind it; this one holds a few milliseconds of work.
pub const ROOT_RECEIVE_BUFFER: usize = 2 << 20;

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
    let mut udp = bind_udp(options.port, false).await?;
    udp.set_receive_buffer(ROOT_RECEIVE_BUFFER);
    let local = udp.local();
    // The TCP fallback: nodes that cannot use UDP connect here (see `tcp`).
    let (tcp_tx, mut tcp_events) = mpsc::channel(4096);
    let accepting = match options.tcp_port {
        0 => None,
        port => match tcp::listen(port).await {
            Ok(listener) => Some(tcp::serve(listener, tcp_tx)),
            Err(e) => {
                tracing::warn!("TCP fallback relay off: cannot listen on TCP port {port}: {e}");
                None
            }
        },
    };
    let mut links: HashMap<Endpoint, TcpLink> = HashMap::new();
    let (report, reports) = watch::channel(Default::default());
    let api_port = options.api_port.unwrap_or(local.0.port());
    let api = LocalApi::start(&home, api_port, http::root::routes(reports)).await?;
    tracing::info!(address = %identity.public().address(), %local, api = api_port, tcp = accepting.is_some().then_some(options.tcp_port), "root listening");
    let clock = Clock::start();
    let me = identity.public().address();
    let mut root = Root::new(identity, world.as_ref(), os_seed(), clock.now());
    root.set_wall_origin(clock.wall_origin());
    for moon in home.load_moons() {
        let (id, roots) = (hex_id(moon.id), describe_roots(&moon));
        if moon.roots.iter().any(|r| r.identity.address() == me) {
            tracing::info!(%id, %roots, "serving moon");
        } else {
            tracing::warn!(%id, %roots, "serving moon, although this root ({me}) is not one of its roots");
        }
        root.add_world(moon);
    }
    tokio::pin!(shutdown);
    let mut transmits = Vec::with_capacity(256);
    loop {
        loop {
            let now = clock.now();
            let moved =
                received(udp.try_recv_batch(|from, d| root.handle_datagram(now, local, from, d)));
            while let Some(t) = root.poll_transmit() {
                transmits.push(t);
            }
            divert(&mut transmits, &mut links);
            udp.send_batch(&mut transmits).await;
            transmits.clear();
            if moved == 0 {
                break;
            }
        }
        report.send_replace((*root.stats(), root.node_count()));
        let deadline = root
            .poll_timeout()
            .map(|t| clock.instant(t))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            r = udp.readable() => if let Err(e) = r {
                tracing::debug!("udp readiness: {e}");
            },
            _ = tokio::time::sleep_until(deadline.into()) => root.handle_timeout(clock.now()),
            Some(event) = tcp_events.recv() => match event {
                TcpEvent::Opened(mut link) => {
                    let peer = link.peer();
                    let from_there = links.keys().filter(|e| e.0.ip() == peer.0.ip()).count();
                    if links.len() >= tcp::MAX_CONNECTIONS || from_there >= tcp::MAX_PER_ADDRESS {
                        tracing::debug!(%peer, "TCP fallback connection refused: {} open, {from_there} from its address", links.len());
                    } else {
                        tracing::debug!(%peer, "TCP fallback connection");
                        link.start();
                        links.insert(peer, link);
                    }
                }
                TcpEvent::Datagram(from, data) => {
                    root.handle_datagram(clock.now(), local, from, &data);
                }
                TcpEvent::Closed { id, peer, why } => {
                    if links.get(&peer).is_some_and(|l| l.id() == id) {
                        tracing::debug!(%peer, "TCP fallback connection closed: {why}");
                        links.remove(&peer);
                    }
                }
                // Only a node's own connects fail.
                TcpEvent::Failed(..) => {}
            },
            _ = &mut shutdown => {
                if let Some(a) = &accepting {
                    a.abort();
                }
                api.stop().await;
                return Ok(());
            }
        }
        while let Some(t) = root.poll_transmit() {
            transmits.push(t);
        }
        divert(&mut transmits, &mut links);
        udp.send_batch(&mut transmits).await;
        transmits.clear();
    }
}

/// Moves the datagrams for endpoints of TCP fallback connections onto them.
fn divert(transmits: &mut Vec<crate::types::Transmit>, links: &mut HashMap<Endpoint, TcpLink>) {
    if links.is_empty() {
        return;
    }
    transmits.retain_mut(|t| match links.get_mut(&t.destination) {
        Some(link) => {
            link.send(std::mem::take(&mut t.contents));
            false
        }
        None => true,
    });
}

/// Binds the UDP socket of a node or root on every address of both families (IPv4
/// only on a host without IPv6; shared with the packet workers when `shared`).
async fn bind_udp(port: u16, shared: bool) -> Result<UdpIo, DaemonError> {
    UdpIo::bind_port(port, shared)
        .await
        .map_err(|source| DaemonError::Bind {
            what: "UDP",
            addr: SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)),
            source,
        })
}

/// The next item a worker handed over; never without workers.
async fn next_item(workers: &mut Option<Workers>) -> ToControl {
    match workers {
        Some(w) => w.next_item().await,
        None => std::future::pending().await,
    }
}

/// The local API server of a daemon, on 127.0.0.1.
struct LocalApi {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl LocalApi {
    /// Binds 127.0.0.1:`port`, records the port in the home directory and serves
    /// `protected` behind the token of `authtoken.secret` (made if missing).
    async fn start(home: &Home, port: u16, protected: axum::Router) -> Result<Self, DaemonError> {
        let token = http::load_or_create_token(home.dir()).map_err(|source| HomeError::Io {
            path: home.path(http::TOKEN_FILE),
            source,
        })?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| DaemonError::Bind {
                what: "the local API",
                addr,
                source,
            })?;
        home.write_port(listener.local_addr()?.port())?;
        let router = http::router(http::ApiConfig::new(token), protected);
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(http::serve(
            listener,
            async move {
                let _ = stopped.changed().await;
            },
            router,
        ));
        Ok(LocalApi { stop, task })
    }

    /// Stops serving after the requests in flight.
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Runs `skylan node` until `shutdown` completes: the packet loop on its own thread
/// (see the module documentation), and the local API on 127.0.0.1 (with the
/// controller's endpoints when `options.controller`) on the calling runtime.
pub async fn run_node(
    options: NodeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let (handle, packets) = start_packet_thread(options.clone()).await?;
    let home = Home::create(&options.home)?;
    let api_port = options.api_port.unwrap_or(handle.udp_port);
    let protected = http::node::routes(handle.clone()).merge(match &handle.controller {
        Some(controller) => {
            http::controller::routes(controller.clone(), Arc::new(http::controller::wall_clock))
        }
        None => http::controller::absent(),
    });
    let api = LocalApi::start(&home, api_port, protected).await?;
    tracing::info!(address = %handle.address, udp = handle.udp_port, api = api_port, "node running");
    let PacketThread {
        thread,
        mut done,
        stop,
    } = packets;
    tokio::select! {
        _ = shutdown => {}
        _ = &mut done => {}
    }
    let _ = stop.send(true);
    api.stop().await;
    let result = tokio::task::spawn_blocking(move || thread.join())
        .await
        .map_err(|e| DaemonError::Io(std::io::Error::other(e.to_string())))?;
    match result {
        Ok(r) => r,
        Err(_) => Err(DaemonError::Io(std::io::Error::other(
            "the packet thread panicked",
        ))),
    }
}

/// The packet loop's thread: told to stop with `stop`, then joined; `done` fires when
/// it ends (by itself on a fatal error).
struct PacketThread {
    thread: std::thread::JoinHandle<Result<(), DaemonError>>,
    done: oneshot::Receiver<()>,
    stop: watch::Sender<bool>,
}

/// Starts the packet thread, which binds the socket and runs the node driver on a
/// single-threaded runtime of its own until the returned stop signal; returns the
/// handle the API uses once the driver is bound (or the reason it could not start).
async fn start_packet_thread(
    options: NodeOptions,
) -> Result<(NodeHandle, PacketThread), DaemonError> {
    let (ready_tx, ready_rx) = oneshot::channel();
    let (done_tx, done) = oneshot::channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("skylan-packets".into())
        .spawn(move || {
            let result = run_packet_loop(options, ready_tx, stop_rx);
            let _ = done_tx.send(());
            result
        })?;
    match ready_rx.await {
        Ok(handle) => Ok((
            handle,
            PacketThread {
                thread,
                done,
                stop: stop_tx,
            },
        )),
        Err(_) => match thread.join() {
            Ok(Err(e)) => Err(e),
            _ => Err(DaemonError::Io(std::io::Error::other(
                "the packet thread stopped before it was ready",
            ))),
        },
    }
}

fn run_packet_loop(
    options: NodeOptions,
    ready: oneshot::Sender<NodeHandle>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (driver, handle) = NodeDriver::bind(&options).await?;
        if ready.send(handle).is_err() {
            return Ok(());
        }
        driver
            .run(async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            })
            .await
    })
}
