//! [`Sim`]: the world, its clock and the loop that moves datagrams between hosts.
//!
//! Owns the hosts (in a `Vec`, indexed by [`HostId`]), the NAT boxes, the address
//! registry, the event queue and the one seeded RNG. The path a datagram takes, the
//! counters it lands in and the NAT rules are documented on the parent module; this file
//! implements them. Called by scenario tests, benches and examples.
//!
//! Invariants:
//! - `now` never goes backwards; every event is scheduled at or after `now`.
//! - A host is called only through `call`-style paths that end in [`Sim::after_call`],
//!   so its transmits are always drained and its timer re-read before the next event.
//! - Each host has at most one valid timer event: the one at the host's `timer_at`.
//!   Other timer entries in the heap are stale and skipped when they pop.
//! - The socket registry holds one entry per host, keyed by (realm, address), and one
//!   more for a public host's IPv6 socket ([`Sim::add_ipv6`]).
//! - A dual-stack host sends from the socket of the destination's family (as a kernel
//!   picks the source address); a datagram to an IPv6 endpoint from a host without one
//!   is unroutable.

use std::any::Any;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::hash::{FastMap, FastSet};
use super::nat::{Nat, NatKind};
use super::queue::{Datagram, Popped, Queue, Stage};
use super::rng::SimRng;
use super::{AccessLink, Captured, Host, HostId, HostStats, NatId, SimStats};
use crate::types::{Endpoint, Time, Transmit};

/// Events at a single instant after which the simulator assumes a livelock.
const DEFAULT_LIVELOCK_LIMIT: u64 = 10_000_000;

/// A deterministic simulated network of [`Host`]s. See the [module docs](super).
pub struct Sim {
    now: Time,
    rng: SimRng,
    queue: Queue,
    hosts: Vec<Slot>,
    nats: Vec<Nat>,
    /// Who holds each socket address, per address space.
    sockets: FastMap<(Realm, SocketAddr), HostId>,
    /// Public IPs held by public hosts (with how many sockets), to keep NATs off them.
    public_ips: FastMap<IpAddr, u32>,
    /// NAT public IP → NAT.
    nat_ips: FastMap<IpAddr, NatId>,
    /// Cut host pairs, stored as (lower id, higher id).
    partitions: FastSet<(HostId, HostId)>,
    /// Hosts touched through `host_mut` or just added, to drain before the next event.
    dirty: Vec<HostId>,
    /// Reused buffer for draining transmits (no allocation per call).
    scratch: Vec<Transmit>,
    stats: SimStats,
    capture: Option<Vec<Captured>>,
    /// Measure the real time each host's calls take ([`Sim::enable_timing`]).
    timing: bool,
    trace: u64,
    livelock_limit: u64,
    /// Real events processed at `now` so far.
    same_instant: u64,
}

/// An address space: the public network, or the LAN behind one NAT.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Realm {
    Public,
    Lan(NatId),
}

/// A host and everything the simulator keeps about it.
struct Slot {
    host: Box<dyn AnyHost>,
    addr: SocketAddr,
    behind: Option<NatId>,
    link: AccessLink,
    up: bool,
    /// Already listed in `Sim::dirty`.
    dirty: bool,
    /// The time of the pending valid timer event, if any.
    timer_at: Option<Time>,
    /// Bumped when the host moves, so datagrams addressed to its old socket are dropped.
    epoch: u32,
    /// A public host's second socket, on an IPv6 address (dual stack).
    v6: Option<SocketAddr>,
    /// False while the host's IPv6 is cut (nothing in or out over it).
    v6_up: bool,
    stats: HostStats,
}

/// [`Host`] plus downcasting, implemented for every host type.
trait AnyHost: Host {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Host> AnyHost for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl Sim {
    /// An empty world at [`Time::ZERO`] whose every random choice follows `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            now: Time::ZERO,
            rng: SimRng::new(seed),
            queue: Queue::default(),
            hosts: Vec::new(),
            nats: Vec::new(),
            sockets: FastMap::default(),
            public_ips: FastMap::default(),
            nat_ips: FastMap::default(),
            partitions: FastSet::default(),
            dirty: Vec::new(),
            scratch: Vec::new(),
            stats: SimStats::default(),
            capture: None,
            timing: false,
            trace: TRACE_SEED,
            livelock_limit: DEFAULT_LIVELOCK_LIMIT,
            same_instant: 0,
        }
    }

    /// The virtual time.
    pub fn now(&self) -> Time {
        self.now
    }

    /// A seed for a host's own RNG, drawn from the simulator's stream, so hosts built
    /// with it are as reproducible as the network.
    pub fn fork_seed(&mut self) -> u64 {
        self.rng.next_u64()
    }

    // ----- hosts -----

    /// Adds `host` with one socket at `ip:port` on `link`, on the public network or on
    /// the LAN behind `behind` (whose address space is separate: use 192.0.2.0/24).
    /// Its first transmits and timer are picked up before the next event.
    ///
    /// # Panics
    /// If the address is taken in that address space, is a NAT's public IP, or `behind`
    /// is not a NAT of this simulator.
    pub fn add_host(
        &mut self,
        host: impl Host,
        ip: IpAddr,
        port: u16,
        link: AccessLink,
        behind: Option<NatId>,
    ) -> HostId {
        let id = HostId(
            u32::try_from(self.hosts.len()).expect("fewer than 2^32 hosts in one simulator"),
        );
        let addr = SocketAddr::new(ip, port);
        self.register(id, addr, behind);
        self.hosts.push(Slot {
            host: Box::new(host),
            addr,
            behind,
            link,
            up: true,
            dirty: false,
            timer_at: None,
            epoch: 0,
            v6: None,
            v6_up: true,
            stats: HostStats::default(),
        });
        self.mark_dirty(id);
        id
    }

    /// Gives the public host `id` a second socket at `ip` (IPv6) and its port: it then
    /// speaks both families (see the module invariants).
    ///
    /// # Panics
    /// If the host is behind a NAT, already has one, `ip` is not IPv6, or it is taken.
    pub fn add_ipv6(&mut self, id: HostId, ip: IpAddr) {
        let slot = self.slot(id);
        assert!(
            ip.is_ipv6() && slot.behind.is_none() && slot.v6.is_none() && slot.addr.is_ipv4(),
            "{id}: only a public IPv4 host gets one IPv6 address ({ip})"
        );
        let addr = SocketAddr::new(ip, slot.addr.port());
        self.register(id, addr, None);
        self.slot_mut(id).v6 = Some(addr);
    }

    /// The host's IPv6 socket, if it has one.
    pub fn endpoint_v6(&self, id: HostId) -> Option<Endpoint> {
        self.slot(id).v6.map(Endpoint)
    }

    /// Cuts (`false`) or restores (`true`) the host's IPv6: datagrams over it, both ways
    /// and already in flight, are dropped (counted as partitioned). IPv4 is untouched.
    pub fn set_ipv6_up(&mut self, id: HostId, up: bool) {
        self.slot_mut(id).v6_up = up;
    }

    /// The host `id`, as its concrete type.
    ///
    /// # Panics
    /// If `id` is unknown or the host is not a `T`.
    pub fn host<T: Host>(&self, id: HostId) -> &T {
        self.slot(id)
            .host
            .as_any()
            .downcast_ref()
            .unwrap_or_else(|| panic!("{id} is not a {}", std::any::type_name::<T>()))
    }

    /// The host `id`, mutably. Its transmits are drained and its timer re-read before
    /// the next event (at the current time).
    ///
    /// # Panics
    /// If `id` is unknown or the host is not a `T`.
    pub fn host_mut<T: Host>(&mut self, id: HostId) -> &mut T {
        self.mark_dirty(id);
        self.slot_mut(id)
            .host
            .as_any_mut()
            .downcast_mut()
            .unwrap_or_else(|| panic!("{id} is not a {}", std::any::type_name::<T>()))
    }

    /// Calls `f` with the host `id` and the current time, then drains its transmits and
    /// re-reads its timer at once.
    ///
    /// # Panics
    /// If `id` is unknown or the host is not a `T`.
    pub fn with_host<T: Host, R>(&mut self, id: HostId, f: impl FnOnce(&mut T, Time) -> R) -> R {
        self.flush();
        let now = self.now;
        let out = f(self.host_mut(id), now);
        self.flush();
        out
    }

    /// How many hosts there are.
    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    /// Every host id, in order of addition.
    pub fn host_ids(&self) -> impl Iterator<Item = HostId> + use<> {
        // `hosts.len()` fits in u32: `add_host` checks it.
        (0..self.hosts.len() as u32).map(HostId)
    }

    /// The host's socket (its private address if it is behind a NAT).
    pub fn endpoint(&self, id: HostId) -> Endpoint {
        Endpoint(self.slot(id).addr)
    }

    /// The NAT the host is behind, if any.
    pub fn behind(&self, id: HostId) -> Option<NatId> {
        self.slot(id).behind
    }

    /// The host's access link.
    pub fn link(&self, id: HostId) -> AccessLink {
        self.slot(id).link
    }

    /// Replaces the host's access link; datagrams already on it keep their timing.
    pub fn set_link(&mut self, id: HostId, link: AccessLink) {
        self.slot_mut(id).link = link;
    }

    /// Whether the host is up.
    pub fn is_up(&self, id: HostId) -> bool {
        self.slot(id).up
    }

    /// Takes the host down (a dead machine: no datagrams in or out, no timeouts; what it
    /// already sent is still on the wire) or brings it back up (its timer is asked again
    /// and fires at once if overdue).
    pub fn set_up(&mut self, id: HostId, up: bool) {
        let slot = self.slot_mut(id);
        if slot.up == up {
            return;
        }
        slot.up = up;
        if up {
            self.mark_dirty(id);
        }
    }

    /// Cuts (`true`) or restores (`false`) all traffic between `a` and `b`, both ways.
    /// Checked on delivery, so datagrams in flight between them are dropped too.
    pub fn set_partition(&mut self, a: HostId, b: HostId, cut: bool) {
        self.slot(a);
        self.slot(b);
        let pair = (a.min(b), a.max(b));
        if cut {
            self.partitions.insert(pair);
        } else {
            self.partitions.remove(&pair);
        }
    }

    /// Moves the host to a new socket, possibly behind another NAT or none (a laptop
    /// changing networks). Datagrams in flight to its old socket are dropped on arrival
    /// (`unroutable`).
    ///
    /// # Panics
    /// As [`Sim::add_host`].
    pub fn move_host(&mut self, id: HostId, ip: IpAddr, port: u16, behind: Option<NatId>) {
        let (old_addr, old_behind) = {
            let slot = self.slot(id);
            (slot.addr, slot.behind)
        };
        self.unregister(old_addr, old_behind);
        let addr = SocketAddr::new(ip, port);
        self.register(id, addr, behind);
        let slot = self.slot_mut(id);
        slot.addr = addr;
        slot.behind = behind;
        slot.epoch = slot.epoch.wrapping_add(1);
    }

    /// The host's own counters.
    pub fn host_stats(&self, id: HostId) -> HostStats {
        self.slot(id).stats
    }

    // ----- NATs -----

    /// Adds a NAT with public address `public_ip`, no mappings and a 60 s idle timeout.
    ///
    /// # Panics
    /// If a public host or another NAT already uses `public_ip`.
    pub fn add_nat(&mut self, kind: NatKind, public_ip: IpAddr) -> NatId {
        let id = NatId(u32::try_from(self.nats.len()).expect("fewer than 2^32 NATs"));
        self.claim_nat_ip(id, public_ip);
        self.nats.push(Nat::new(kind, public_ip));
        id
    }

    /// The NAT's behaviour.
    pub fn nat_kind(&self, nat: NatId) -> NatKind {
        self.nat(nat).kind()
    }

    /// The NAT's public address.
    pub fn nat_public_ip(&self, nat: NatId) -> IpAddr {
        self.nat(nat).public_ip()
    }

    /// The NAT's mapping idle timeout.
    pub fn nat_timeout(&self, nat: NatId) -> Duration {
        self.nat(nat).timeout()
    }

    /// Sets the NAT's mapping idle timeout (applies to existing mappings too).
    pub fn set_nat_timeout(&mut self, nat: NatId, timeout: Duration) {
        self.nat_mut(nat).set_timeout(timeout);
    }

    /// Forgets all the NAT's mappings (a router reboot, a conntrack flush): the next
    /// outbound datagrams get new public ports, and inbound traffic to old ones is refused.
    pub fn reset_nat(&mut self, nat: NatId) {
        self.nat_mut(nat).reset();
    }

    /// Gives the NAT a new public address and forgets its mappings (ISP renumbering).
    ///
    /// # Panics
    /// If a public host or another NAT already uses `ip`.
    pub fn set_nat_public_ip(&mut self, nat: NatId, ip: IpAddr) {
        let old = self.nat(nat).public_ip();
        self.nat_ips.remove(&old);
        self.claim_nat_ip(nat, ip);
        self.nat_mut(nat).set_public_ip(ip);
    }

    /// How many of the NAT's mappings are live now.
    pub fn nat_mappings(&self, nat: NatId) -> usize {
        self.nat(nat).live_mappings(self.now)
    }

    // ----- driving -----

    /// Processes the next event (skipping stale timers). False if nothing is pending.
    pub fn step(&mut self) -> bool {
        self.flush();
        while let Some((time, popped)) = self.queue.pop() {
            if self.process(time, popped) {
                return true;
            }
        }
        false
    }

    /// Processes every event up to and including `deadline`, then sets the clock to it
    /// (if it is not already later).
    pub fn run_until(&mut self, deadline: Time) {
        self.flush();
        while self.queue.peek_time().is_some_and(|t| t <= deadline) {
            self.process_next();
        }
        self.now = self.now.max(deadline);
    }

    /// [`Sim::run_until`] `now + duration`.
    pub fn run_for(&mut self, duration: Duration) {
        self.run_until(self.now + duration);
    }

    /// Runs until `done` holds (checked before starting and after every event) or until
    /// `max` has passed. Returns whether `done` held; the clock is left at the event
    /// that satisfied it, or at `now + max`.
    pub fn run_until_true(&mut self, max: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        self.flush();
        let deadline = self.now + max;
        if done(self) {
            return true;
        }
        while self.queue.peek_time().is_some_and(|t| t <= deadline) {
            if self.process_next() && done(self) {
                return true;
            }
        }
        self.now = self.now.max(deadline);
        done(self)
    }

    /// When the next event is due (a stale timer may make this early).
    pub fn next_event_time(&self) -> Option<Time> {
        self.queue.peek_time()
    }

    /// Events waiting in the queue (stale timers included).
    pub fn pending_events(&self) -> usize {
        self.queue.len()
    }

    /// Changes how many events may happen at a single instant before the simulator
    /// panics, reporting a livelock (default 10,000,000).
    pub fn set_livelock_limit(&mut self, limit: u64) {
        self.livelock_limit = limit;
    }

    // ----- test hooks -----

    /// Puts a forged datagram from `from` on the public network now, addressed to `to`:
    /// it takes the normal path from there (NAT filtering, the receiver's link with its
    /// latency, loss and MTU).
    pub fn inject(&mut self, from: Endpoint, to: Endpoint, bytes: Vec<u8>) {
        self.stats.injected += 1;
        let datagram = Datagram {
            sender: None,
            from,
            to,
            receiver: None,
            lan: false,
            bytes,
        };
        self.queue.push_datagram(self.now, Stage::Transit, datagram);
    }

    /// Hands a datagram from `from` straight to the host's socket now, bypassing links,
    /// NATs and partitions (a down host still drops it).
    pub fn inject_to_host(&mut self, id: HostId, from: Endpoint, bytes: Vec<u8>) {
        self.stats.injected += 1;
        let slot = self.slot(id);
        let datagram = Datagram {
            sender: None,
            from,
            to: Endpoint(slot.addr),
            receiver: Some((id, slot.epoch)),
            lan: true,
            bytes,
        };
        self.queue.push_datagram(self.now, Stage::Deliver, datagram);
    }

    /// Sends a copy of a captured datagram again, now, as if from its original source:
    /// through the public network and the receiver's NAT with [`Sim::inject`], or
    /// straight to the receiver if it never crossed the public network.
    pub fn replay(&mut self, captured: &Captured) {
        if captured.lan {
            self.inject_to_host(captured.receiver, captured.from, captured.bytes.clone());
        } else {
            self.inject(captured.from, captured.to, captured.bytes.clone());
        }
    }

    /// Starts measuring the real time each host's calls take
    /// ([`HostStats::busy`](super::HostStats::busy)), for scale measurements. The run
    /// itself stays the same.
    pub fn enable_timing(&mut self) {
        self.timing = true;
    }

    /// Starts recording every delivered datagram (see [`Sim::captured`]).
    pub fn enable_capture(&mut self) {
        self.capture.get_or_insert_with(Vec::new);
    }

    /// Datagrams delivered since capture was enabled or last taken, in delivery order.
    pub fn captured(&self) -> &[Captured] {
        self.capture.as_deref().unwrap_or(&[])
    }

    /// Takes the recorded datagrams, leaving capture on with an empty record.
    pub fn take_captured(&mut self) -> Vec<Captured> {
        self.capture
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The run's counters.
    pub fn stats(&self) -> SimStats {
        self.stats
    }

    /// A digest of every delivery so far (time, receiver, sender, source, destination,
    /// payload), always kept: two runs that deliver the same datagrams at the same times
    /// have the same hash. Not cryptographic.
    pub fn trace_hash(&self) -> u64 {
        self.trace
    }

    // ----- the engine -----

    /// Pops and processes one event; false if it was stale or nothing was pending.
    fn process_next(&mut self) -> bool {
        match self.queue.pop() {
            Some((time, popped)) => self.process(time, popped),
            None => false,
        }
    }

    /// Processes one popped event; false if it was a stale timer or a down host's.
    fn process(&mut self, time: Time, popped: Popped) -> bool {
        debug_assert!(time >= self.now, "event scheduled in the past");
        if time > self.now {
            self.now = time;
            self.same_instant = 0;
        }
        let real = match popped {
            Popped::Timer(host) => self.fire_timer(host),
            Popped::Datagram(Stage::Transit, datagram) => {
                self.transit(datagram);
                true
            }
            Popped::Datagram(Stage::Deliver, datagram) => {
                self.deliver(datagram);
                true
            }
        };
        if real {
            self.stats.events += 1;
            self.same_instant += 1;
            if self.same_instant > self.livelock_limit {
                panic!(
                    "livelock: more than {} events at {} µs; a host keeps scheduling \
                     work at `now` (raise the limit with Sim::set_livelock_limit if intended)",
                    self.livelock_limit,
                    self.now.as_micros()
                );
            }
        }
        real
    }

    fn fire_timer(&mut self, id: HostId) -> bool {
        let now = self.now;
        let slot = &mut self.hosts[id.index()];
        if slot.timer_at != Some(now) {
            // Superseded by an earlier timer, or already fired.
            return false;
        }
        slot.timer_at = None;
        if !slot.up {
            // Re-read when the host comes back up.
            return false;
        }
        match slot.host.poll_timeout() {
            Some(due) if due <= now => {
                self.stats.timeouts += 1;
                let span = host_span(id, now);
                let _entered = span.enter();
                let started = Stopwatch::start(self.timing);
                slot.host.handle_timeout(now);
                slot.stats.busy += started.elapsed();
                self.after_call(id);
            }
            _ => self.refresh_timer(id),
        }
        true
    }

    /// Stage 1: a host's datagram leaves it.
    fn send(&mut self, id: HostId, transmit: Transmit) {
        let now = self.now;
        self.stats.sent += 1;
        let slot = &mut self.hosts[id.index()];
        slot.stats.sent += 1;
        let (mut src, link, behind, up) = (slot.addr, slot.link, slot.behind, slot.up);
        let Transmit {
            destination: to,
            contents: bytes,
        } = transmit;
        if to.0.is_ipv6() != src.is_ipv6() {
            match slot.v6.filter(|_| to.0.is_ipv6()) {
                Some(_) if !slot.v6_up => {
                    self.stats.partitioned += 1;
                    return;
                }
                Some(v6) => src = v6,
                None => {
                    self.stats.unroutable += 1;
                    tracing::trace!(target: "skylan::sim", %id, %to, "dropped: no address of that family");
                    return;
                }
            }
        }
        if !up {
            self.stats.down_dropped += 1;
            tracing::trace!(target: "skylan::sim", %id, %to, "dropped: sender is down");
            return;
        }
        if bytes.len() > link.mtu {
            self.stats.mtu_dropped += 1;
            tracing::trace!(target: "skylan::sim", %id, %to, len = bytes.len(), mtu = link.mtu, "dropped: over the sender's MTU");
            return;
        }
        let mut from = src;
        if let Some(nat_id) = behind {
            if let Some(&receiver) = self.sockets.get(&(Realm::Lan(nat_id), to.0)) {
                self.send_on_lan(id, receiver, to, bytes);
                return;
            }
            let nat = &mut self.nats[nat_id.index()];
            if to.0.ip() == nat.public_ip() {
                self.stats.nat_filtered += 1;
                tracing::trace!(target: "skylan::sim", %id, %to, "dropped: hairpin through {nat_id}");
                return;
            }
            match nat.outbound(now, src, to.0, &mut self.rng) {
                Some(public) => from = public,
                None => {
                    self.stats.nat_filtered += 1;
                    tracing::trace!(target: "skylan::sim", %id, %to, "dropped: {nat_id} has no free port");
                    return;
                }
            }
        }
        if self.rng.chance(link.loss) {
            self.stats.lost += 1;
            tracing::trace!(target: "skylan::sim", %id, %to, "lost on the sender's link");
            return;
        }
        let arrival = now + link.latency + self.rng.jitter(link.jitter);
        let datagram = Datagram {
            sender: Some(id),
            from: Endpoint(from),
            to,
            receiver: None,
            lan: false,
            bytes,
        };
        self.queue.push_datagram(arrival, Stage::Transit, datagram);
    }

    /// Stage 1 for a destination on the sender's own LAN: both links, no NAT.
    fn send_on_lan(&mut self, id: HostId, receiver: HostId, to: Endpoint, bytes: Vec<u8>) {
        let src = &self.hosts[id.index()];
        let dst = &self.hosts[receiver.index()];
        let (from, out, inn, epoch) = (src.addr, src.link, dst.link, dst.epoch);
        if bytes.len() > inn.mtu {
            self.stats.mtu_dropped += 1;
            return;
        }
        if self.rng.chance(out.loss) || self.rng.chance(inn.loss) {
            self.stats.lost += 1;
            return;
        }
        let delay =
            out.latency + self.rng.jitter(out.jitter) + inn.latency + self.rng.jitter(inn.jitter);
        let datagram = Datagram {
            sender: Some(id),
            from: Endpoint(from),
            to,
            receiver: Some((receiver, epoch)),
            lan: true,
            bytes,
        };
        self.queue
            .push_datagram(self.now + delay, Stage::Deliver, datagram);
    }

    /// Stage 2: the datagram reaches the public network; find the receiver.
    fn transit(&mut self, mut datagram: Datagram) {
        let now = self.now;
        let to = datagram.to.0;
        let receiver = if let Some(&nat_id) = self.nat_ips.get(&to.ip()) {
            let nat = &mut self.nats[nat_id.index()];
            match nat.inbound(now, to.port(), datagram.from.0) {
                Ok(private) => self.sockets.get(&(Realm::Lan(nat_id), private)).copied(),
                Err(refusal) => {
                    self.stats.nat_filtered += 1;
                    tracing::trace!(target: "skylan::sim", from = %datagram.from, to = %datagram.to, ?refusal, "refused by {nat_id}");
                    return;
                }
            }
        } else {
            self.sockets.get(&(Realm::Public, to)).copied()
        };
        let Some(receiver) = receiver else {
            self.stats.unroutable += 1;
            tracing::trace!(target: "skylan::sim", from = %datagram.from, to = %datagram.to, "dropped: nobody holds the address");
            return;
        };
        let slot = &self.hosts[receiver.index()];
        let (link, epoch) = (slot.link, slot.epoch);
        if datagram.bytes.len() > link.mtu {
            self.stats.mtu_dropped += 1;
            return;
        }
        if self.rng.chance(link.loss) {
            self.stats.lost += 1;
            return;
        }
        let arrival = now + link.latency + self.rng.jitter(link.jitter);
        datagram.receiver = Some((receiver, epoch));
        self.queue.push_datagram(arrival, Stage::Deliver, datagram);
    }

    /// Stage 3: hand the datagram to the receiving host.
    fn deliver(&mut self, datagram: Datagram) {
        let now = self.now;
        // Invariant: only `send_on_lan`, `transit` and `inject_to_host` queue Deliver
        // events, and all of them set the receiver.
        let (id, epoch) = datagram
            .receiver
            .expect("a datagram at the Deliver stage has a receiver");
        let slot = &self.hosts[id.index()];
        if slot.epoch != epoch {
            self.stats.unroutable += 1;
            return;
        }
        if !slot.up {
            self.stats.down_dropped += 1;
            return;
        }
        let cut = datagram.sender.is_some_and(|sender| {
            !self.partitions.is_empty()
                && self.partitions.contains(&(sender.min(id), sender.max(id)))
        });
        let v6_cut = datagram.to.0.is_ipv6() && !slot.addr.is_ipv6() && !slot.v6_up;
        if cut || v6_cut {
            self.stats.partitioned += 1;
            return;
        }
        self.stats.delivered += 1;
        let local = match slot.v6 {
            Some(v6) if datagram.to.0.is_ipv6() => Endpoint(v6),
            _ => Endpoint(slot.addr),
        };
        self.trace = trace_delivery(self.trace, now, id, &datagram);
        let slot = &mut self.hosts[id.index()];
        slot.stats.received += 1;
        {
            let span = host_span(id, now);
            let _entered = span.enter();
            let started = Stopwatch::start(self.timing);
            slot.host
                .handle_datagram(now, local, datagram.from, &datagram.bytes);
            slot.stats.busy += started.elapsed();
        }
        if let Some(capture) = &mut self.capture {
            capture.push(Captured {
                time: now,
                sender: datagram.sender,
                receiver: id,
                from: datagram.from,
                to: datagram.to,
                local,
                lan: datagram.lan,
                bytes: datagram.bytes,
            });
        }
        self.after_call(id);
    }

    /// Drains the host's transmits, then re-reads its timer.
    fn after_call(&mut self, id: HostId) {
        let mut out = std::mem::take(&mut self.scratch);
        {
            let host = &mut self.hosts[id.index()].host;
            while let Some(transmit) = host.poll_transmit() {
                out.push(transmit);
            }
        }
        for transmit in out.drain(..) {
            self.send(id, transmit);
        }
        self.scratch = out;
        self.refresh_timer(id);
    }

    /// Schedules the host's timer if it wants one earlier than the pending one.
    fn refresh_timer(&mut self, id: HostId) {
        let now = self.now;
        let slot = &mut self.hosts[id.index()];
        if !slot.up {
            return;
        }
        let Some(due) = slot.host.poll_timeout() else {
            return;
        };
        let due = due.max(now);
        if slot.timer_at.is_some_and(|pending| pending <= due) {
            // The pending event fires first and re-reads the timer then.
            return;
        }
        slot.timer_at = Some(due);
        self.queue.push_timer(due, id);
    }

    fn mark_dirty(&mut self, id: HostId) {
        let slot = self.slot_mut(id);
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(id);
        }
    }

    /// Drains every host touched from outside since the last event.
    fn flush(&mut self) {
        while !self.dirty.is_empty() {
            let dirty = std::mem::take(&mut self.dirty);
            for &id in &dirty {
                self.hosts[id.index()].dirty = false;
                self.after_call(id);
            }
            // Keep the allocation if nothing new was marked meanwhile.
            if self.dirty.is_empty() {
                self.dirty = dirty;
                self.dirty.clear();
            }
        }
    }

    // ----- registry and lookups -----

    fn register(&mut self, id: HostId, addr: SocketAddr, behind: Option<NatId>) {
        let realm = match behind {
            Some(nat) => {
                self.nat(nat);
                Realm::Lan(nat)
            }
            None => {
                if let Some(nat) = self.nat_ips.get(&addr.ip()) {
                    panic!(
                        "cannot put {id} at {addr}: {} is the public IP of {nat}",
                        addr.ip()
                    );
                }
                *self.public_ips.entry(addr.ip()).or_default() += 1;
                Realm::Public
            }
        };
        if let Some(other) = self.sockets.insert((realm, addr), id) {
            panic!("cannot put {id} at {addr}: {other} already holds it ({realm:?})");
        }
    }

    fn unregister(&mut self, addr: SocketAddr, behind: Option<NatId>) {
        let realm = match behind {
            Some(nat) => Realm::Lan(nat),
            None => {
                if let Some(count) = self.public_ips.get_mut(&addr.ip()) {
                    *count -= 1;
                    if *count == 0 {
                        self.public_ips.remove(&addr.ip());
                    }
                }
                Realm::Public
            }
        };
        self.sockets.remove(&(realm, addr));
    }

    fn claim_nat_ip(&mut self, id: NatId, ip: IpAddr) {
        if self.public_ips.contains_key(&ip) {
            panic!("cannot give {id} the public IP {ip}: a public host already uses it");
        }
        if let Some(other) = self.nat_ips.insert(ip, id) {
            panic!("cannot give {id} the public IP {ip}: {other} already has it");
        }
    }

    fn slot(&self, id: HostId) -> &Slot {
        self.hosts
            .get(id.index())
            .unwrap_or_else(|| panic!("{id} is not a host of this simulator"))
    }

    fn slot_mut(&mut self, id: HostId) -> &mut Slot {
        self.hosts
            .get_mut(id.index())
            .unwrap_or_else(|| panic!("{id} is not a host of this simulator"))
    }

    fn nat(&self, id: NatId) -> &Nat {
        self.nats
            .get(id.index())
            .unwrap_or_else(|| panic!("{id} is not a NAT of this simulator"))
    }

    fn nat_mut(&mut self, id: NatId) -> &mut Nat {
        self.nats
            .get_mut(id.index())
            .unwrap_or_else(|| panic!("{id} is not a NAT of this simulator"))
    }
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("now", &self.now)
            .field("hosts", &self.hosts.len())
            .field("nats", &self.nats.len())
            .field("pending_events", &self.queue.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The span host calls run in, so a host's log lines say which host and when.
fn host_span(id: HostId, now: Time) -> tracing::Span {
    tracing::info_span!(target: "skylan::sim", "host", id = id.0, t_us = now.as_micros())
}

const TRACE_SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// Folds one delivery into the running digest (a multiply-rotate mix over 8-byte words).
fn trace_delivery(mut h: u64, now: Time, receiver: HostId, d: &Datagram) -> u64 {
    let mut mix = |w: u64| h = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    mix(now.as_micros());
    mix(u64::from(receiver.0));
    mix(d.sender.map_or(u64::MAX, |s| u64::from(s.0)));
    for ep in [d.from, d.to] {
        match ep.0.ip() {
            IpAddr::V4(ip) => mix(u64::from(u32::from(ip))),
            IpAddr::V6(ip) => {
                let v = u128::from(ip);
                mix(v as u64);
                mix((v >> 64) as u64);
            }
        }
        mix(u64::from(ep.0.port()));
    }
    mix(d.bytes.len() as u64);
    let mut words = d.bytes.chunks_exact(8);
    for w in &mut words {
        // `chunks_exact(8)` yields 8-byte slices.
        mix(u64::from_le_bytes(w.try_into().expect("an 8-byte chunk")));
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    mix(u64::from_le_bytes(tail));
    h
}

/// Measures a host call's real time when timing is on (and reads no clock otherwise).
struct Stopwatch(Option<std::time::Instant>);

impl Stopwatch {
    // The one clock read in the simulator: a measurement for reports, never an input.
    #[allow(clippy::disallowed_methods, clippy::disallowed_types)]
    fn start(on: bool) -> Stopwatch {
        Stopwatch(on.then(std::time::Instant::now))
    }

    #[allow(clippy::disallowed_methods, clippy::disallowed_types)]
    fn elapsed(&self) -> std::time::Duration {
        self.0.map(|t| t.elapsed()).unwrap_or_default()
    }
}
