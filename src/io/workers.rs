//! Extra packet workers of a node: threads that each run a [`DataPlane`] on a socket and
//! TAP queues of their own, beside the control thread (which runs the whole [`Node`] and
//! moves packets too).
//!
//! How traffic spreads: every worker binds the node's UDP port with `SO_REUSEPORT`, so
//! the kernel hands each remote endpoint's datagrams to one socket (by a hash of the
//! addresses and ports); every TAP is multi-queue (`IFF_MULTI_QUEUE`) and each worker
//! opens a queue of its own, so the host hands each flow's frames to one queue. A pair
//! of nodes therefore talks through one worker on each side; many peers spread over
//! all of them.
//!
//! Contract with the control thread ([`Workers`]):
//! - it publishes the node's [`Snapshot`] whenever its version changes
//!   ([`Workers::publish`]); a worker takes the newest one before each batch;
//! - it publishes the list of TAP devices ([`Workers::set_taps`]); a worker opens a queue
//!   of each new device in its own runtime and closes the queues of devices no longer
//!   listed, then says which list it has taken in. Before a device is removed the
//!   control thread publishes an empty list and waits ([`Workers::release_taps`]) until
//!   every worker has closed its queues, since the kernel keeps a device while any queue
//!   is open;
//! - what a worker's data plane hands to control ([`ToControl`]) comes back through a
//!   bounded queue ([`Workers::next_item`]); when it is full the item is dropped and
//!   counted under `drop_queue_full`, as a full switch port would;
//! - while the TCP fallback is on, it publishes the link's sender
//!   ([`Workers::set_tcp`]); a worker sends its datagrams for the TCP root through it
//!   instead of its socket;
//! - each worker reports its counters and rule hits when it goes idle (and at least
//!   every [`REPORT_EVERY`] while busy), for `/metrics` ([`Workers::stats`]).
//!
//! A worker shares the control thread's [`Clock`], so the activity times it stamps on
//! peers mean the same to the control core.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::daemon::Clock;
use super::packets::{PacketIo, TapCounters, WorkerPath};
use super::tap::Tap;
use super::tcp::TcpSender;
use super::udp::UdpIo;
use crate::node::network::RuleKey;
use crate::node::snapshot::Snapshot;
use crate::node::{Node, NodeStats, ToControl};
use crate::types::{NetworkId, Time};

/// Items a worker may have waiting for the control thread.
pub const HANDOVER_QUEUE: usize = 4096;
/// A busy worker reports its counters at least this often.
pub const REPORT_EVERY: Duration = Duration::from_millis(250);
/// How long removing a device waits for the workers to close their queues.
pub const RELEASE_WAIT: Duration = Duration::from_secs(2);
/// A worker's periodic work (expiring partial packets) runs this often.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// The TAP devices the workers should have queues of.
struct TapSet {
    generation: u64,
    taps: Vec<(NetworkId, Arc<Tap>)>,
}

/// What a worker last reported.
#[derive(Debug, Default, Clone)]
struct Report {
    stats: NodeStats,
    taps: TapCounters,
    hits: Vec<(NetworkId, RuleKey, u64)>,
}

/// What a worker and the control thread share besides the channels.
#[derive(Default)]
struct Shared {
    report: Mutex<Report>,
    /// The TAP list generation this worker has taken in.
    taken: AtomicU64,
    /// An authenticated datagram from the TCP fallback's root came in over UDP.
    udp_from_tcp_root: std::sync::atomic::AtomicBool,
}

/// The control thread's side of the workers. See the module documentation.
pub struct Workers {
    snapshot: watch::Sender<Arc<Snapshot>>,
    published: u64,
    taps: watch::Sender<Arc<TapSet>>,
    generation: u64,
    items: mpsc::Receiver<ToControl>,
    shared: Vec<Arc<Shared>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    stop: watch::Sender<bool>,
    /// The TCP fallback's sender, numbered so a worker sees each new one.
    tcp: watch::Sender<(u64, Option<TcpSender>)>,
}

impl Workers {
    /// Starts `count` workers bound to `local`'s port (the control thread's socket must
    /// have been bound with `SO_REUSEPORT`), each with a data plane seeded by `node`.
    /// Returns once every worker has bound its socket, or the first one's error.
    pub async fn start(
        count: usize,
        node: &mut Node,
        local: SocketAddr,
        clock: Clock,
    ) -> std::io::Result<Workers> {
        let snapshot = node.snapshot();
        let published = snapshot.version();
        let (snapshot_tx, _) = watch::channel(snapshot);
        let (taps_tx, _) = watch::channel(Arc::new(TapSet {
            generation: 0,
            taps: Vec::new(),
        }));
        let (stop, _) = watch::channel(false);
        let (tcp, _) = watch::channel((0, None));
        let (items_tx, items) = mpsc::channel(HANDOVER_QUEUE);
        let mut workers = Workers {
            snapshot: snapshot_tx,
            published,
            taps: taps_tx,
            generation: 0,
            items,
            shared: Vec::new(),
            threads: Vec::new(),
            stop,
            tcp,
        };
        for n in 1..=count {
            let shared = Arc::new(Shared::default());
            let (ready_tx, ready) = oneshot::channel();
            let worker = Worker {
                path: WorkerPath {
                    data: node.new_data_plane(),
                    snapshot: node.snapshot(),
                },
                snapshots: workers.snapshot.subscribe(),
                tap_sets: workers.taps.subscribe(),
                stop: workers.stop.subscribe(),
                tcp: workers.tcp.subscribe(),
                tcp_taken: 0,
                items: items_tx.clone(),
                shared: shared.clone(),
                clock,
                queues: HashMap::new(),
                handover_dropped: 0,
            };
            let thread = std::thread::Builder::new()
                .name(format!("skylan-worker{n}"))
                .spawn(move || worker.run_thread(local, ready_tx))?;
            workers.threads.push(thread);
            workers.shared.push(shared);
            match ready.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(std::io::Error::other("a packet worker stopped at start")),
            }
        }
        Ok(workers)
    }

    /// How many workers run.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    /// True when none run.
    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// Publishes `node`'s snapshot if it changed since the last call.
    pub fn publish(&mut self, node: &Node) {
        let snapshot = node.snapshot();
        if snapshot.version() != self.published {
            self.published = snapshot.version();
            self.snapshot.send_replace(snapshot);
        }
    }

    /// True (once) when a worker received an authenticated datagram from the TCP
    /// fallback's root over UDP (the kernel may hand the root's datagrams to any
    /// worker's socket).
    pub fn take_udp_from_tcp_root(&self) -> bool {
        self.shared
            .iter()
            .any(|s| s.udp_from_tcp_root.swap(false, Ordering::Relaxed))
    }

    /// Publishes the TCP fallback's sender (`None`: the workers send over UDP again).
    pub fn set_tcp(&mut self, sender: Option<TcpSender>) {
        self.tcp.send_modify(|(n, s)| {
            *n += 1;
            *s = sender;
        });
    }

    /// Publishes the TAP devices the workers should have queues of.
    pub fn set_taps(&mut self, taps: Vec<(NetworkId, Arc<Tap>)>) {
        self.generation += 1;
        self.taps.send_replace(Arc::new(TapSet {
            generation: self.generation,
            taps,
        }));
    }

    /// Has every worker close its TAP queues, waiting (at most [`RELEASE_WAIT`]) until
    /// they have; the next [`set_taps`](Self::set_taps) opens them again.
    pub async fn release_taps(&mut self) {
        self.set_taps(Vec::new());
        let wanted = self.generation;
        let mut waited = Duration::ZERO;
        let step = Duration::from_millis(1);
        while self
            .shared
            .iter()
            .any(|s| s.taken.load(Ordering::Acquire) < wanted)
        {
            if waited >= RELEASE_WAIT {
                tracing::warn!("a packet worker did not close its TAP queues in time");
                return;
            }
            tokio::time::sleep(step).await;
            waited += step;
        }
    }

    /// An item a worker handed over, if one is waiting.
    pub fn try_item(&mut self) -> Option<ToControl> {
        self.items.try_recv().ok()
    }

    /// Waits for the next item a worker hands over (never ready once all have stopped).
    pub async fn next_item(&mut self) -> ToControl {
        match self.items.recv().await {
            Some(item) => item,
            None => std::future::pending().await,
        }
    }

    /// The workers' counters, summed (as last reported).
    pub fn stats(&self) -> (NodeStats, TapCounters) {
        self.shared.iter().fold(
            (NodeStats::default(), TapCounters::default()),
            |(stats, taps), s| {
                let r = s.report.lock().unwrap_or_else(|p| p.into_inner());
                (stats.merged(&r.stats), taps.merged(&r.taps))
            },
        )
    }

    /// Each worker's counters (as last reported).
    pub fn per_worker(&self) -> Vec<NodeStats> {
        self.shared
            .iter()
            .map(|s| s.report.lock().unwrap_or_else(|p| p.into_inner()).stats)
            .collect()
    }

    /// The workers' rule hits (as last reported), one entry per worker and rule.
    pub fn rule_hits(&self) -> Vec<(NetworkId, RuleKey, u64)> {
        self.shared
            .iter()
            .flat_map(|s| {
                let r = s.report.lock().unwrap_or_else(|p| p.into_inner());
                r.hits.clone()
            })
            .collect()
    }

    /// Stops the workers and waits for their threads to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                if t.join().is_err() {
                    tracing::warn!("a packet worker panicked");
                }
            }
        })
        .await;
    }
}

/// One worker thread. See the module documentation.
struct Worker {
    path: WorkerPath,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    tap_sets: watch::Receiver<Arc<TapSet>>,
    stop: watch::Receiver<bool>,
    tcp: watch::Receiver<(u64, Option<TcpSender>)>,
    /// The number of the TCP sender in use.
    tcp_taken: u64,
    items: mpsc::Sender<ToControl>,
    shared: Arc<Shared>,
    clock: Clock,
    /// Our queue of each device: (interface index of the device, queue).
    queues: HashMap<NetworkId, (u32, Arc<Tap>)>,
    handover_dropped: u64,
}

impl Worker {
    fn run_thread(self, local: SocketAddr, ready: oneshot::Sender<std::io::Result<()>>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        runtime.block_on(async move {
            let udp = match UdpIo::bind(local, true).await {
                Ok(u) => u,
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            if ready.send(Ok(())).is_ok() {
                self.run(PacketIo::new(udp)).await;
            }
        });
    }

    async fn run(mut self, mut io: PacketIo) {
        let mut last_report = self.clock.now();
        let mut last_housekeeping = last_report;
        loop {
            self.take_taps(&mut io);
            self.take_tcp(&mut io);
            loop {
                self.take_snapshot();
                let now = self.clock.now();
                let mut moved = io.pump_udp(&mut self.path, now);
                io.flush(&mut self.path).await;
                moved += io.pump_taps(&mut self.path, now);
                io.flush(&mut self.path).await;
                self.hand_over();
                if io.take_udp_from_tcp_root() {
                    self.shared.udp_from_tcp_root.store(true, Ordering::Relaxed);
                }
                if moved == 0 {
                    break;
                }
                if elapsed(self.clock.now(), last_report) >= REPORT_EVERY {
                    last_report = self.report(&io);
                }
            }
            let now = self.clock.now();
            if elapsed(now, last_housekeeping) >= HOUSEKEEPING {
                self.path.data.housekeeping(now);
                last_housekeeping = now;
            }
            if self.changed_since_report(&io) {
                last_report = self.report(&io);
            }
            tokio::select! {
                r = self.stop.changed() => if r.is_err() || *self.stop.borrow() {
                    break;
                },
                _ = io.readable() => {}
                r = self.snapshots.changed() => if r.is_err() {
                    break;
                },
                r = self.tap_sets.changed() => if r.is_err() {
                    break;
                },
                r = self.tcp.changed() => if r.is_err() {
                    break;
                },
                _ = tokio::time::sleep(HOUSEKEEPING) => {}
            }
        }
        io.set_taps(Vec::new());
        self.queues.clear();
        self.report(&io);
    }

    /// Takes the newest TCP fallback sender, if one was published.
    fn take_tcp(&mut self, io: &mut PacketIo) {
        let current = self.tcp.borrow_and_update();
        if current.0 != self.tcp_taken {
            self.tcp_taken = current.0;
            io.set_tcp(current.1.clone());
        }
    }

    /// Takes the newest snapshot, if one was published. (Versions are compared rather
    /// than the channel's "changed" mark, which waiting for a change consumes.)
    fn take_snapshot(&mut self) {
        let newest = self.snapshots.borrow_and_update();
        if newest.version() != self.path.snapshot.version() {
            self.path.snapshot = newest.clone();
        }
    }

    /// Takes the newest TAP list, if one was published: opens queues of new devices,
    /// closes those of devices gone, and says so.
    fn take_taps(&mut self, io: &mut PacketIo) {
        let set = self.tap_sets.borrow_and_update().clone();
        if set.generation == self.shared.taken.load(Ordering::Relaxed) {
            return;
        }
        self.queues.retain(|network, (index, _)| {
            set.taps
                .iter()
                .any(|(id, tap)| id == network && tap.index() == *index)
        });
        for (network, tap) in &set.taps {
            if self.queues.contains_key(network) {
                continue;
            }
            match tap.queue() {
                Ok(q) => {
                    self.queues.insert(*network, (tap.index(), Arc::new(q)));
                }
                Err(e) => tracing::warn!(%network, "a packet worker cannot open a TAP queue: {e}"),
            }
        }
        let generation = set.generation;
        // The primary devices' handles go before the list is acknowledged.
        drop(set);
        let mut queues: Vec<(NetworkId, Arc<Tap>)> = self
            .queues
            .iter()
            .map(|(id, (_, q))| (*id, q.clone()))
            .collect();
        queues.sort_by_key(|(id, _)| *id);
        io.set_taps(queues);
        self.shared.taken.store(generation, Ordering::Release);
    }

    /// Sends what the data plane handed over to the control thread.
    fn hand_over(&mut self) {
        while let Some(item) = self.path.data.poll_control() {
            if let Err(e) = self.items.try_send(item) {
                self.handover_dropped += 1;
                let item = match e {
                    mpsc::error::TrySendError::Full(i) | mpsc::error::TrySendError::Closed(i) => i,
                };
                if let Some(buf) = item.into_buffer() {
                    self.path.data.recycle(buf);
                }
            }
        }
    }

    /// True when the counters differ from the last report.
    fn changed_since_report(&self, io: &PacketIo) -> bool {
        let r = self.shared.report.lock().unwrap_or_else(|p| p.into_inner());
        r.taps != io.counters() || r.stats != self.counted()
    }

    /// The data plane's counters with the hand-over drops.
    fn counted(&self) -> NodeStats {
        let mut stats = *self.path.data.stats();
        stats.drop_queue_full += self.handover_dropped;
        stats
    }

    /// Publishes the counters and rule hits; returns when.
    fn report(&self, io: &PacketIo) -> Time {
        let report = Report {
            stats: self.counted(),
            taps: io.counters(),
            hits: self.path.data.all_rule_hits(),
        };
        *self.shared.report.lock().unwrap_or_else(|p| p.into_inner()) = report;
        self.clock.now()
    }
}

fn elapsed(now: Time, since: Time) -> Duration {
    Duration::from_micros(now.as_micros().saturating_sub(since.as_micros()))
}
