//! The data plane: the per-frame path of the node, in two directions.
//!
//! - [`inside`](DataPlane::inside): a frame from our TAP → the network's switch (where
//!   it goes) → the flow rules (sending side) → sealed with each recipient's current
//!   session (atomic send counter) → fragmented to the MTU → datagrams.
//! - [`outside`](DataPlane::outside): a datagram → fragments reassembled → receiver
//!   index looked up → replay check, open in place, window update → a Frame → the
//!   switch's inbound check and the rules (receiving side) → a frame for the TAP.
//!
//! # Contract
//! It reads only a published [`Snapshot`] and its own state (per-network switch and
//! rule-hit counters, fragment reassembly, buffer pools, counters). Per-frame facts the
//! control core needs (last receive and send per peer and per published path, user
//! activity) go through [`PeerActivity`](super::snapshot::PeerActivity) atomics, never
//! through the control core's tables. Everything unusual is handed to control as a
//! [`ToControl`] (drained with [`DataPlane::poll_control`]):
//! - any packet that is not Data (handshakes, unknown kinds), and Data whose receiver
//!   index the snapshot does not hold (an unconfirmed `next` session, or an unknown one:
//!   control counts the drop as before);
//! - opened messages other than Frame (HELLO, ECHO, OK, WHOIS, RENDEZVOUS, configs...),
//!   and malformed plaintext (control counts it);
//! - an authenticated zero-hop Frame from an endpoint other than the peer's published
//!   direct path ([`ToControl::Seen`]: roaming and path learning; the frame itself is
//!   delivered here);
//! - a frame for a peer with no usable session or no route ([`ToControl::Frame`]:
//!   control queues it, asks WHOIS, handshakes).
//!
//! It never reads a clock or OS randomness (`now` comes with every input, its RNG is
//! seeded by the control core), and allocates nothing per frame in steady state:
//! datagrams and TAP frames are drawn from a pool that [`DataPlane::recycle`] refills.
//! It is `Send`, so a driver may run one per worker thread on a shared `Arc<Snapshot>`.
//!
//! It copies a frame as little as it can. A frame the driver lays out with
//! [`FRAME_HEADROOM`] free bytes before it ([`DataPlane::inside_buffer`]) is sealed
//! where it lies for its last recipient, and the first fragment of a packet cut to the
//! path MTU is that same buffer (only the later fragments are copied). A frame opened in
//! a buffer of its own (reassembled from fragments, or copied by
//! [`DataPlane::outside`]) goes to the TAP queue in that buffer, with where it starts
//! ([`DataPlane::poll_tap_at`]).
//!
//! Every drop is counted in its own [`NodeStats`] (the node merges them with the
//! control core's), under the same counter the single core used for the same input.
//!
//! # State of its own
//! Per joined network it keeps a [`NetworkSwitch`] built from the published settings
//! (rebuilt when the snapshot's network epoch changes, updated when its config does),
//! so the MACs learned behind bridges and the switch and rule-hit counters belong to
//! the data plane. Rule-hit counters start again from zero when the network's rule set
//! changes (a rule's number means nothing across rule sets). With several workers each
//! learns on its own: a worker that has not seen a MAC behind a bridge yet sends frames
//! for it to every bridge, as the switch does for any MAC no member owns.

mod inside;
mod outside;

pub(crate) use inside::Held;

use std::collections::VecDeque;
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt};

use super::network::{Policy, RuleKey};
use super::snapshot::Snapshot;
use super::switch::{GROUP_FRAMES_PER_SECOND, NetworkSwitch, SwitchStats};
use super::{MAX_PENDING_OUTPUT, NodeStats, TapFrame};
use crate::types::{Endpoint, MulticastGroup, NetworkId, NodeAddress, Time, Transmit};
use crate::wire::{
    self, DATA_PREFIX_LEN, FRAGMENT_OVERHEAD, FRAME_HEADER_LEN, HEADER_LEN, Kind, MAX_FRAGMENTS,
    Reassembler,
};

/// At most this many spare buffers are kept for reuse.
pub const POOL_MAX: usize = 1024;
/// Capacity of a fresh buffer: a full frame of the default MTU (2,756) with the room
/// to seal it where it lies fits, so buffers do not grow (and copy) on the frame path.
const BUFFER_CAPACITY: usize = 4096;
/// Bytes a frame handed to [`DataPlane::inside_buffer`] has free before it, so that it
/// can be sealed where it lies: a Fragment header, the Data prefix and the Frame header.
pub const FRAME_HEADROOM: usize = FRAGMENT_OVERHEAD + DATA_PREFIX_LEN + FRAME_HEADER_LEN;

/// Work the data plane hands to the control core (see the module documentation).
#[derive(Debug)]
pub enum ToControl {
    /// A whole packet for control: not Data, or Data on an index the snapshot lacks.
    /// `relayed` is set for a packet reassembled from fragments (true when one of
    /// them came through a relay), as for the core's own receive path.
    Datagram {
        /// Where it came from.
        from: Endpoint,
        /// See above.
        relayed: Option<bool>,
        /// The packet as received.
        packet: Vec<u8>,
    },
    /// An authenticated message other than Frame (or one that does not parse).
    Opened {
        /// Where it came from.
        from: Endpoint,
        /// True when it arrived with zero hops, not through a relay.
        direct: bool,
        /// The peer whose session opened it.
        peer: NodeAddress,
        /// Its counter (requests are answered by it).
        counter: u64,
        /// Verb and payload.
        plaintext: Vec<u8>,
    },
    /// An authenticated zero-hop packet from `from`, which is not the peer's published
    /// direct path.
    Seen {
        /// The peer.
        peer: NodeAddress,
        /// The endpoint it came from.
        from: Endpoint,
    },
    /// A frame the switch and rules let out, for a peer with no usable session or
    /// route, or one that has not shown its membership credential yet.
    Frame {
        /// Its network.
        network: NetworkId,
        /// The recipient.
        peer: NodeAddress,
        /// FRAME flags ([`wire::FRAME_FORWARDED`] for a rule's copy or redirection).
        flags: u8,
        /// The Ethernet frame.
        frame: Vec<u8>,
        /// The recipient has not shown its credential: control shows ours first.
        introduce: bool,
    },
    /// A frame from a peer that has not shown its membership credential on a private
    /// network: control keeps it until the credential comes (`control::membership`).
    Stranger {
        /// Its network.
        network: NetworkId,
        /// The authenticated sender.
        peer: NodeAddress,
        /// Its FRAME flags.
        flags: u8,
        /// The Ethernet frame.
        frame: Vec<u8>,
    },
    /// A group frame from our TAP whose group's subscribers are not known yet: control
    /// gathers them and sends the frame through the switch again
    /// (`control::multicast`).
    Gather {
        /// Its network.
        network: NetworkId,
        /// The group.
        group: MulticastGroup,
        /// The Ethernet frame.
        frame: Vec<u8>,
    },
}

impl ToControl {
    /// The buffer this item carries, for [`DataPlane::recycle`] once handled.
    pub fn into_buffer(self) -> Option<Vec<u8>> {
        match self {
            ToControl::Datagram { packet: b, .. }
            | ToControl::Opened { plaintext: b, .. }
            | ToControl::Frame { frame: b, .. }
            | ToControl::Stranger { frame: b, .. }
            | ToControl::Gather { frame: b, .. } => Some(b),
            ToControl::Seen { .. } => None,
        }
    }
}

/// One joined network as the data plane keeps it: the switch (MACs learned behind
/// bridges, counters), what the snapshot says about it, and rule hits.
struct NetState {
    epoch: u64,
    config: u64,
    ok: bool,
    policy: Option<Arc<Policy>>,
    switch: NetworkSwitch,
    hits: HashMap<RuleKey, u64>,
    /// Group frames left this second, each way (the storm limit).
    storm: [StormBudget; 2],
}

/// A budget of [`GROUP_FRAMES_PER_SECOND`] group frames per second.
#[derive(Debug, Default, Clone, Copy)]
struct StormBudget {
    second: u64,
    spent: u32,
}

impl StormBudget {
    /// Spends one frame at `now`; false when this second's budget is gone.
    fn spend(&mut self, now: Time) -> bool {
        let second = now.as_micros() / 1_000_000;
        if second != self.second {
            self.second = second;
            self.spent = 0;
        }
        self.spent += 1;
        self.spent <= GROUP_FRAMES_PER_SECOND
    }
}

/// Which [`NetState::storm`] budget a frame spends.
const STORM_OUT: usize = 0;
const STORM_IN: usize = 1;

/// The per-frame path. See the module documentation.
pub struct DataPlane {
    /// Version of the snapshot `nets` was synced with.
    synced: Option<u64>,
    nets: HashMap<NetworkId, NetState>,
    reassembler: Reassembler,
    transmits: VecDeque<Transmit>,
    /// Frames for the TAP, each with where it starts in its buffer.
    tap: VecDeque<(TapFrame, usize)>,
    control: VecDeque<ToControl>,
    /// Items ever handed to control (0 per frame in steady state).
    handed_over: u64,
    /// Packets ever opened (authenticated) here.
    authenticated: u64,
    pool: Vec<Vec<u8>>,
    /// Where a shared-slice datagram is copied to be opened in place.
    scratch: Vec<u8>,
    stats: NodeStats,
    /// SplitMix64 state: rule `random` draws and fragment packet IDs.
    rng: u64,
}

impl DataPlane {
    /// Packets this data plane has opened (authenticated) so far; the driver compares
    /// it before and after a datagram to tell whether that datagram was genuine.
    pub fn authenticated(&self) -> u64 {
        self.authenticated
    }

    /// A data plane whose random choices come from `seed` (drawn from the control
    /// core's seeded RNG, so the simulator stays deterministic).
    pub fn new(seed: u64) -> Self {
        DataPlane {
            synced: None,
            nets: HashMap::new(),
            reassembler: Reassembler::default(),
            transmits: VecDeque::new(),
            tap: VecDeque::new(),
            control: VecDeque::new(),
            handed_over: 0,
            authenticated: 0,
            pool: Vec::new(),
            scratch: Vec::with_capacity(BUFFER_CAPACITY),
            stats: NodeStats::default(),
            rng: seed,
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next frame for the TAP.
    pub fn poll_tap(&mut self) -> Option<TapFrame> {
        let (mut frame, start) = self.tap.pop_front()?;
        frame.frame.drain(..start);
        Some(frame)
    }

    /// [`poll_tap`](Self::poll_tap) without moving the frame to the start of its
    /// buffer: the frame is `frame[start..]` of what comes back with `start`.
    pub fn poll_tap_at(&mut self) -> Option<(TapFrame, usize)> {
        self.tap.pop_front()
    }

    /// The next item for the control core.
    pub fn poll_control(&mut self) -> Option<ToControl> {
        self.control.pop_front()
    }

    /// How many items this data plane has handed to control so far (a steady stream of
    /// frames on established sessions and paths adds none).
    pub fn handed_over(&self) -> u64 {
        self.handed_over
    }

    fn hand_to_control(&mut self, item: ToControl) {
        self.handed_over += 1;
        self.control.push_back(item);
    }

    /// True while items wait for the control core.
    pub fn has_control(&self) -> bool {
        !self.control.is_empty()
    }

    /// Gives a buffer back (a sent `Transmit`'s contents, a written `TapFrame`'s frame)
    /// so the next frame reuses it instead of allocating.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.pool.len() < POOL_MAX && buf.capacity() > 0 {
            buf.clear();
            self.pool.push(buf);
        }
    }

    /// Drop and traffic counters of this data plane.
    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    /// Fragment reassembly counters.
    pub fn reassembly_stats(&self) -> wire::ReassemblyStats {
        self.reassembler.stats()
    }

    /// The switch counters of a joined network.
    pub fn switch_stats(&self, network: NetworkId) -> Option<&SwitchStats> {
        self.nets.get(&network).map(|n| n.switch.stats())
    }

    /// Rule hit counters of a joined network.
    pub fn rule_hits(&self, network: NetworkId) -> Vec<(RuleKey, u64)> {
        let mut out: Vec<(RuleKey, u64)> = self
            .nets
            .get(&network)
            .map(|n| n.hits.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Rule hit counters of every joined network, as (network, rule, hits).
    pub fn all_rule_hits(&self) -> Vec<(NetworkId, RuleKey, u64)> {
        let mut out: Vec<(NetworkId, RuleKey, u64)> = self
            .nets
            .iter()
            .flat_map(|(id, n)| n.hits.iter().map(move |(k, v)| (*id, *k, *v)))
            .collect();
        out.sort();
        out
    }

    /// Periodic work (about once a second): forgets partial packets that timed out,
    /// and ages what bridges remember of their own segment.
    pub fn housekeeping(&mut self, now: Time) {
        self.reassembler.expire(now);
        self.stats.fragments = self.reassembler.stats();
        for net in self.nets.values_mut() {
            net.switch.tick();
        }
    }

    /// Takes in a new snapshot's networks (a no-op when already synced with it): a
    /// fresh switch for a network joined (again), new settings for one reconfigured,
    /// nothing kept for one left.
    pub fn sync(&mut self, snap: &Snapshot) {
        if self.synced == Some(snap.version) {
            return;
        }
        self.synced = Some(snap.version);
        self.nets.retain(|id, n| {
            snap.networks
                .get(id)
                .is_some_and(|view| view.epoch == n.epoch)
        });
        for (&id, view) in &snap.networks {
            match self.nets.get_mut(&id) {
                Some(n) => {
                    if n.config != view.config {
                        n.switch.update(view.settings.as_ref().clone());
                        n.config = view.config;
                    }
                    n.switch.set_members(&view.members);
                    n.switch.set_groups(&view.groups);
                    n.ok = view.ok;
                    // Rule numbers name rules of one rule set: counts start again with
                    // a new one (tags, members or other settings changing keep them).
                    if !same_rules(n.policy.as_deref(), view.policy.as_deref()) {
                        n.hits.clear();
                    }
                    n.policy = view.policy.clone();
                }
                None => {
                    let mut switch =
                        NetworkSwitch::new(id, snap.me, view.settings.as_ref().clone());
                    switch.set_members(&view.members);
                    switch.set_groups(&view.groups);
                    self.nets.insert(
                        id,
                        NetState {
                            epoch: view.epoch,
                            config: view.config,
                            ok: view.ok,
                            policy: view.policy.clone(),
                            switch,
                            hits: HashMap::new(),
                            storm: Default::default(),
                        },
                    );
                }
            }
        }
    }

    // ----- shared helpers -----------------------------------------------------------

    fn buffer(&mut self) -> Vec<u8> {
        self.pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUFFER_CAPACITY))
    }

    fn buffer_from(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut buf = self.buffer();
        buf.extend_from_slice(bytes);
        buf
    }

    fn random(&mut self) -> u64 {
        crate::types::splitmix64(&mut self.rng)
    }

    /// Queues a frame for the TAP: `frame.frame[start..]`.
    fn tap_push(&mut self, frame: TapFrame, start: usize) {
        if self.tap.len() >= MAX_PENDING_OUTPUT {
            if let Some((old, _)) = self.tap.pop_front() {
                self.recycle(old.frame);
            }
            self.stats.drop_queue_full += 1;
        }
        self.tap.push_back((frame, start));
    }

    /// Queues one datagram to `to`.
    fn push_transmit(&mut self, to: Endpoint, datagram: Vec<u8>) {
        self.stats.tx_datagrams += 1;
        self.transmits.push_back(Transmit {
            destination: to,
            contents: datagram,
        });
    }

    /// Queues a sealed packet larger than `mtu`, `buf[FRAGMENT_OVERHEAD..]`, cut into
    /// Fragment datagrams the way [`wire::fragment`] cuts it. The first is made where the
    /// packet lies (its fragment header written into the room before it); the others
    /// are copied into buffers from the pool.
    fn push_fragments(&mut self, to: Endpoint, mut buf: Vec<u8>, mtu: usize) {
        let at = FRAGMENT_OVERHEAD;
        let len = buf.len().saturating_sub(at);
        let room = mtu.saturating_sub(FRAGMENT_OVERHEAD);
        let count = if room == 0 {
            usize::MAX
        } else {
            len.div_ceil(room)
        };
        if count > MAX_FRAGMENTS || len < HEADER_LEN {
            self.recycle(buf);
            return;
        }
        let id = self.random();
        let chunk_len = len.div_ceil(count);
        let chunks = len.div_ceil(chunk_len) as u8; // <= count <= MAX_FRAGMENTS
        let mut head = [0u8; FRAGMENT_OVERHEAD];
        head[..HEADER_LEN].copy_from_slice(&buf[at..at + HEADER_LEN]);
        head[wire::field::KIND] = Kind::Fragment.into();
        head[HEADER_LEN..HEADER_LEN + 8].copy_from_slice(&id.to_be_bytes());
        head[FRAGMENT_OVERHEAD - 1] = chunks;
        // The first fragment's place in the queue; the others follow it.
        let first = self.transmits.len();
        self.transmits.push_back(Transmit {
            destination: to,
            contents: Vec::new(),
        });
        for index in 1..chunks {
            let chunk_at = at + usize::from(index) * chunk_len;
            let chunk = &buf[chunk_at..(chunk_at + chunk_len).min(buf.len())];
            let mut datagram = self.buffer();
            head[FRAGMENT_OVERHEAD - 2] = index;
            datagram.extend_from_slice(&head);
            datagram.extend_from_slice(chunk);
            self.transmits.push_back(Transmit {
                destination: to,
                contents: datagram,
            });
        }
        head[FRAGMENT_OVERHEAD - 2] = 0;
        buf.truncate(at + chunk_len);
        buf[..at].copy_from_slice(&head);
        self.transmits[first].contents = buf;
        self.stats.tx_datagrams += u64::from(chunks);
    }
}

/// Whether two policies carry the same rule set (the same `Arc` or equal tables).
fn same_rules(a: Option<&Policy>, b: Option<&Policy>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => std::ptr::eq(a, b) || a.rules == b.rules,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_plane_can_move_to_a_worker_thread() {
        fn movable<T: Send>() {}
        movable::<DataPlane>();
        movable::<ToControl>();
    }

    #[test]
    fn recycled_buffers_are_reused_and_the_pool_is_bounded() {
        let mut d = DataPlane::new(1);
        let mut buf = Vec::with_capacity(4096);
        buf.extend_from_slice(b"old contents");
        let ptr = buf.as_ptr();
        d.recycle(buf);
        let again = d.buffer();
        assert_eq!(again.as_ptr(), ptr, "the same allocation comes back");
        assert!(again.is_empty(), "cleared");
        for _ in 0..POOL_MAX + 10 {
            d.recycle(Vec::with_capacity(8));
        }
        assert_eq!(d.pool.len(), POOL_MAX);
        d.recycle(Vec::new());
        assert_eq!(d.pool.len(), POOL_MAX, "empty vectors are not kept");
    }

    #[test]
    fn fragments_match_the_wire_fragmenter() {
        let mut d = DataPlane::new(7);
        let me: NodeAddress = "1111111111".parse().unwrap();
        let peer: NodeAddress = "2222222222".parse().unwrap();
        let mut packet = Vec::new();
        wire::emit_data_prefix(peer, me, 9, 3, &mut packet);
        packet.extend((0..2_900u32).map(|i| i as u8));
        let to: Endpoint = "198.51.100.7/9993".parse().unwrap();
        // Laid out with room for a fragment header before it, cut into 3 fragments or 2.
        for mtu in [1100, 1432] {
            let mut buf = vec![0xee; FRAGMENT_OVERHEAD];
            buf.extend_from_slice(&packet);
            let before = d.stats().tx_datagrams;
            d.push_fragments(to, buf, mtu);
            let ours: Vec<Vec<u8>> = std::iter::from_fn(|| d.poll_transmit())
                .map(|t| t.contents)
                .collect();
            let id = u64::from_be_bytes(ours[0][12..20].try_into().unwrap());
            let theirs = wire::fragment(&packet, mtu, id).unwrap();
            assert_eq!(ours, theirs, "mtu {mtu}");
            assert_eq!(d.stats().tx_datagrams - before, theirs.len() as u64);
        }
    }
}
