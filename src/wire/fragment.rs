//! Fragmentation of outer packets larger than the path MTU, and their reassembly with
//! bounded memory.
//!
//! [`fragment`] cuts a whole outer packet (header included) into 2..=16 chunks of
//! nearly equal size and wraps each in a Fragment packet with the original's
//! destination, source and flags. [`Reassembler`] collects chunks and returns the
//! original bytes once all have arrived.
//!
//! # What can be trusted, and the keying that follows
//!
//! Packets are sealed first and fragmented after, so reassembly happens *before*
//! decryption: nothing in a fragment is authenticated, and an attacker can send any
//! number of them claiming any source node address. The reassembled packet is
//! authenticated as a whole afterwards (a forged chunk only makes it fail). What the
//! receiver does know is where the datagram came from, and which endpoints its own
//! authenticated sessions use for each peer. So the caller states, per fragment, its
//! [`Arrival`]: on a known path of the claimed source (the peer's direct path, or the
//! root relaying for it), or unverified from some IP address. Partial packets are kept
//! per *owner*: the claimed peer for known-path fragments, the sending IP address for
//! the others. The key is `(owner, source, packet_id)`, so a fragment from elsewhere
//! cannot even touch a known-path partial packet (to discard it as inconsistent).
//!
//! Invariants, which hold after every call: at most `max_packets` partial packets in
//! total and `max_per_source` per owner, at most `max_bytes` of chunk data buffered, no
//! partial packet older than `timeout` once `insert` or `expire` has been called with a
//! later time, and no partial packet longer than `max_packet_len`. When a limit would
//! be exceeded, the *oldest* partial packet that the new fragment may displace is
//! evicted: the owner's own for the per-owner limit; for the global limits, the oldest
//! unverified one, and only for a known-path fragment, failing that, the oldest
//! known-path one. An unverified fragment that finds no room is refused. So a flood of
//! forged fragments evicts the flooder's own packets and other unverified ones, never
//! a peer's on its known path, and memory never grows. What remains open is as far as
//! unauthenticated fragments allow: an attacker who also spoofs the peer's own IP and
//! port gets its fragments counted as the peer's (and can then evict only that peer's
//! packets), and fragments relayed by the root that relays for a peer count as the
//! peer's, so on a relayed path the protection is as strong as the root's check of
//! which source address a sender may use. Every dropped fragment or packet is counted
//! in [`ReassemblyStats`] by reason.
//!
//! Buffers are reused: a partial packet's chunks live in one buffer, and the returned
//! packet is built in another; both come from a small pool that finished partial
//! packets and [`Reassembler::recycle`] refill, so steady reassembly allocates nothing.
//!
//! The node's data plane owns one reassembler and feeds it the fields of each
//! [`Outer::Fragment`](super::Outer::Fragment) it receives, with the arrival judged
//! from its published snapshot. A reassembled packet carries the header as the sender
//! wrote it; the hops added by relays are on the fragments' headers, so path decisions
//! use the hop count of the fragments. A fragment arriving after its packet completed
//! starts a new partial packet that times out.

use std::net::IpAddr;
use std::time::Duration;

use foldhash::{HashMap, HashMapExt};

use super::WireError;
use super::packet::{HEADER_LEN, Header, Kind, Piece, check_fragment, field};
use crate::types::{NodeAddress, Time};

/// The UDP payload every path carries: 1,280 (IPv6's minimum link MTU) minus 40 bytes
/// of IPv6 and 8 of UDP header. Routes start with it and fall back to it (the node's
/// path MTU discovery), and roots cut what they send to it.
pub const PATH_MTU_FLOOR: usize = 1232;
/// Most fragments one packet may be cut into (the count is 2..=16).
pub const MAX_FRAGMENTS: usize = 16;
/// Bytes a Fragment packet adds around its chunk: header 12 | packet_id 8 | index 1 |
/// count 1.
pub const FRAGMENT_OVERHEAD: usize = field::FRAG_CHUNK;

/// Cuts an outer packet into Fragment datagrams of at most `max_len` bytes each.
///
/// Each fragment is a complete datagram with kind Fragment and the original's
/// destination, source and flags (hops), so roots relay it like any packet; the chunks
/// concatenate to `packet`. `packet_id` must not repeat for the same source while
/// fragments may still be in flight (a per-node counter is enough).
///
/// A packet that already fits in `max_len` is returned unchanged as the only element.
/// Errors: `packet` has no valid header, is itself a Fragment, `max_len` leaves no
/// room for a chunk, or more than [`MAX_FRAGMENTS`] fragments would be needed.
pub fn fragment(packet: &[u8], max_len: usize, packet_id: u64) -> Result<Vec<Vec<u8>>, WireError> {
    let header = Header::parse(packet)?;
    if header.kind == Kind::Fragment {
        return Err(WireError::BadFragment(
            "a Fragment packet cannot be fragmented again",
        ));
    }
    if packet.len() <= max_len {
        return Ok(vec![packet.to_vec()]);
    }
    let room = max_len.saturating_sub(FRAGMENT_OVERHEAD);
    if room == 0 {
        return Err(WireError::MtuTooSmall(max_len));
    }
    let count = packet.len().div_ceil(room);
    if count > MAX_FRAGMENTS {
        return Err(WireError::TooManyFragments {
            len: packet.len(),
            max_len,
        });
    }
    // Equal chunks (the last may be shorter); ceil(len / count) <= room, and cutting
    // at that size yields exactly `count` chunks.
    let chunk_len = packet.len().div_ceil(count);
    let chunks: Vec<&[u8]> = packet.chunks(chunk_len).collect();
    let mut head = [0u8; HEADER_LEN];
    head.copy_from_slice(&packet[..HEADER_LEN]);
    head[field::KIND] = Kind::Fragment.into();
    let count_byte = chunks.len() as u8; // at most MAX_FRAGMENTS, checked above
    Ok(chunks
        .iter()
        .enumerate()
        .map(|(index, chunk)| {
            let mut datagram = Vec::with_capacity(FRAGMENT_OVERHEAD + chunk.len());
            datagram.extend_from_slice(&head);
            datagram.extend_from_slice(&packet_id.to_be_bytes());
            datagram.push(index as u8); // index < count <= MAX_FRAGMENTS
            datagram.push(count_byte);
            datagram.extend_from_slice(chunk);
            datagram
        })
        .collect())
}

/// Bounds on what a [`Reassembler`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// Partial packets in flight from all senders together.
    pub max_packets: usize,
    /// Partial packets in flight from one sender: one peer on a known path, or one IP
    /// address otherwise (see [`Arrival`]).
    pub max_per_source: usize,
    /// Chunk bytes buffered in total (raised to `max_packet_len` if lower, so one
    /// packet of the largest size can always complete).
    pub max_bytes: usize,
    /// Longest packet that may be reassembled.
    pub max_packet_len: usize,
    /// How long after its first fragment a partial packet is given up.
    pub timeout: Duration,
}

impl Default for ReassemblyLimits {
    /// 256 packets, 8 per sender, 4 MiB, 64 KiB per packet, 2 s.
    fn default() -> Self {
        Self {
            max_packets: 256,
            max_per_source: 8,
            max_bytes: 4 << 20,
            max_packet_len: 64 << 10,
            timeout: Duration::from_secs(2),
        }
    }
}

/// How a fragment reached us: what decides whose partial packets it may displace.
///
/// The caller judges it from what it knows to be authenticated (the node core: the
/// endpoints its sessions publish for each peer); the fragment itself proves nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// From an endpoint the caller has an authenticated path on for the fragment's
    /// claimed source: the peer's direct path, or the root that relays for it. Only
    /// fragments that also arrive that way can evict this source's partial packets.
    KnownPath,
    /// From anywhere else. The sender is whoever can send from this IP address; its
    /// partial packets are bounded per address and never displace known-path ones.
    Unverified(IpAddr),
}

/// What a [`Reassembler`] did with the fragments it was given; every fragment that did
/// not end up in a reassembled packet is counted under one reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    /// Fragments stored in a partial packet.
    pub fragments_accepted: u64,
    /// Packets completed and returned.
    pub packets_reassembled: u64,
    /// Fragments dropped for a bad header: count not 2..=16, index not below count,
    /// empty chunk, or a chunk longer than `max_packet_len`.
    pub bad_fragment: u64,
    /// Fragments dropped because the same index had already arrived with the same bytes.
    pub duplicate: u64,
    /// Fragments from an unverified sender dropped because every slot (or byte) is held
    /// by partial packets from known paths, which such fragments may not evict.
    pub refused: u64,
    /// Partial packets discarded because a fragment contradicted them (another count,
    /// or the same index with other bytes).
    pub inconsistent: u64,
    /// Partial packets discarded because they grew beyond `max_packet_len`.
    pub too_large: u64,
    /// Completed packets dropped because they were not a valid, non-Fragment packet
    /// from the source the fragments came from.
    pub malformed: u64,
    /// Partial packets given up after `timeout`.
    pub timed_out: u64,
    /// Partial packets evicted because their sender had `max_per_source` in flight.
    pub evicted_per_source: u64,
    /// Partial packets evicted because `max_packets` or `max_bytes` was reached.
    pub evicted_global: u64,
}

impl ReassemblyStats {
    /// Every counter with its metric name (drops start with `drop_fragment_`).
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("fragments_accepted", self.fragments_accepted),
            ("fragment_packets_reassembled", self.packets_reassembled),
            ("drop_fragment_bad", self.bad_fragment),
            ("drop_fragment_duplicate", self.duplicate),
            ("drop_fragment_refused", self.refused),
            ("drop_fragment_inconsistent", self.inconsistent),
            ("drop_fragment_too_large", self.too_large),
            ("drop_fragment_malformed", self.malformed),
            ("drop_fragment_timed_out", self.timed_out),
            ("drop_fragment_evicted_per_source", self.evicted_per_source),
            ("drop_fragment_evicted_global", self.evicted_global),
        ]
        .into_iter()
    }

    /// The sum of two sets of counters.
    pub fn merged(&self, o: &ReassemblyStats) -> ReassemblyStats {
        ReassemblyStats {
            fragments_accepted: self.fragments_accepted + o.fragments_accepted,
            packets_reassembled: self.packets_reassembled + o.packets_reassembled,
            bad_fragment: self.bad_fragment + o.bad_fragment,
            duplicate: self.duplicate + o.duplicate,
            refused: self.refused + o.refused,
            inconsistent: self.inconsistent + o.inconsistent,
            too_large: self.too_large + o.too_large,
            malformed: self.malformed + o.malformed,
            timed_out: self.timed_out + o.timed_out,
            evicted_per_source: self.evicted_per_source + o.evicted_per_source,
            evicted_global: self.evicted_global + o.evicted_global,
        }
    }
}

/// Whose a partial packet is: the unit of the per-sender limit and of eviction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Owner {
    /// A peer whose fragments arrived on a known path ([`Arrival::KnownPath`]).
    Peer(NodeAddress),
    /// Whoever sends from this address ([`Arrival::Unverified`]).
    Address(IpAddr),
}

impl Owner {
    fn known(self) -> bool {
        matches!(self, Owner::Peer(_))
    }
}

/// Puts fragments back together with bounded memory (see the module docs for the
/// limits and the eviction policy). Time is an input; it must not go backwards.
#[derive(Debug)]
pub struct Reassembler {
    limits: ReassemblyLimits,
    /// Partial packets; `None` slots are listed in `free`. Grows to at most
    /// `max_packets` slots and is reused from then on.
    slots: Vec<Option<Partial>>,
    free: Vec<usize>,
    /// `(owner, source, packet_id)` → slot.
    by_id: HashMap<(Owner, NodeAddress, u64), usize>,
    /// Partial packets per owner; no zero counts are kept.
    per_owner: HashMap<Owner, usize>,
    /// Partial packets held (`Some` slots).
    live: usize,
    /// Arrival order of first fragments, so eviction can pick the oldest.
    next_seq: u64,
    /// No partial packet was created before this (it may be earlier than the oldest
    /// one still held; `expire` then rescans).
    earliest: Option<Time>,
    /// Sum of the partial packets' chunk bytes.
    bytes: usize,
    /// Buffers of finished partial packets and recycled results, for reuse.
    spare: Vec<Vec<u8>>,
    stats: ReassemblyStats,
}

#[derive(Debug)]
struct Partial {
    owner: Owner,
    src: NodeAddress,
    packet_id: u64,
    seq: u64,
    created: Time,
    count: u8,
    received: u8,
    /// Where each fragment's chunk is in `data` (offset, length), by index.
    chunks: [Option<(usize, usize)>; MAX_FRAGMENTS],
    /// The chunks in arrival order.
    data: Vec<u8>,
}

/// Why a partial packet is removed before completing.
#[derive(Debug, Clone, Copy)]
enum Removal {
    Inconsistent,
    TooLarge,
    TimedOut,
    PerSource,
    Global,
}

impl Default for Reassembler {
    fn default() -> Self {
        Self::new(ReassemblyLimits::default())
    }
}

impl Reassembler {
    /// An empty reassembler. Limits of zero are raised to one; `max_bytes` is raised
    /// to at least `max_packet_len`.
    pub fn new(limits: ReassemblyLimits) -> Self {
        let max_packet_len = limits.max_packet_len.max(1);
        let limits = ReassemblyLimits {
            max_packets: limits.max_packets.max(1),
            max_per_source: limits.max_per_source.max(1),
            max_bytes: limits.max_bytes.max(max_packet_len),
            max_packet_len,
            timeout: limits.timeout,
        };
        Self {
            limits,
            slots: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            per_owner: HashMap::new(),
            live: 0,
            next_seq: 0,
            earliest: None,
            bytes: 0,
            spare: Vec::new(),
            stats: ReassemblyStats::default(),
        }
    }

    /// Takes one fragment (its fields, the header's source and how it arrived) and
    /// returns the whole original packet when this was its last missing piece. Expires
    /// old partial packets first. Give the returned buffer back with
    /// [`recycle`](Self::recycle) to have it reused.
    pub fn insert(
        &mut self,
        now: Time,
        arrival: Arrival,
        src: NodeAddress,
        piece: Piece<'_>,
    ) -> Option<Vec<u8>> {
        let Piece {
            packet_id,
            index,
            count,
            chunk,
        } = piece;
        if check_fragment(index, count, chunk).is_err() || chunk.len() > self.limits.max_packet_len
        {
            self.stats.bad_fragment += 1;
            return None;
        }
        self.expire(now);
        let owner = match arrival {
            Arrival::KnownPath => Owner::Peer(src),
            Arrival::Unverified(ip) => Owner::Address(ip),
        };

        let slot = match self.by_id.get(&(owner, src, packet_id)) {
            Some(&slot) => {
                let partial = self.slots.get(slot)?.as_ref()?;
                if partial.count != count {
                    self.discard(slot, Some(Removal::Inconsistent));
                    return None;
                }
                if let Some((at, len)) = partial.chunks[usize::from(index)] {
                    if partial.data[at..at + len] == *chunk {
                        self.stats.duplicate += 1;
                    } else {
                        self.discard(slot, Some(Removal::Inconsistent));
                    }
                    return None;
                }
                if partial.data.len() + chunk.len() > self.limits.max_packet_len {
                    self.discard(slot, Some(Removal::TooLarge));
                    return None;
                }
                slot
            }
            None => match self.start(now, owner, src, packet_id, count) {
                Some(slot) => slot,
                None => {
                    self.stats.refused += 1;
                    return None;
                }
            },
        };

        // Make room for the chunk by evicting other partial packets, oldest first, that
        // this fragment may displace. For a known path this ends: this partial plus the
        // chunk fits in max_packet_len <= max_bytes.
        while self.bytes + chunk.len() > self.limits.max_bytes {
            match self.victim(owner.known(), Some(slot)) {
                Some(victim) => self.discard(victim, Some(Removal::Global)),
                None => {
                    if self.slots[slot].as_ref().is_some_and(|p| p.received == 0) {
                        self.discard(slot, None);
                    }
                    self.stats.refused += 1;
                    return None;
                }
            }
        }

        let partial = self.slots.get_mut(slot)?.as_mut()?;
        partial.chunks[usize::from(index)] = Some((partial.data.len(), chunk.len()));
        partial.data.extend_from_slice(chunk);
        partial.received += 1;
        self.bytes += chunk.len();
        self.stats.fragments_accepted += 1;
        if partial.received < partial.count {
            return None;
        }

        // Fragments usually arrive in order, and then the chunks already lie in order.
        // The partial stays in its slot until its data is out (it is a few hundred
        // bytes: moving it costs more than reading it in place).
        let in_order = partial
            .chunks
            .iter()
            .flatten()
            .try_fold(0, |next, &(at, len)| (at == next).then_some(at + len))
            .is_some();
        let reordered = (!in_order).then(|| {
            let mut packet = self.spare.pop().unwrap_or_default();
            packet.clear();
            for &(at, len) in partial.chunks.iter().flatten() {
                packet.extend_from_slice(&partial.data[at..at + len]);
            }
            packet
        });
        let data = self.remove(slot, None)?;
        let packet = match reordered {
            Some(packet) => {
                self.recycle(data);
                packet
            }
            None => data,
        };
        match Header::parse(&packet) {
            Ok(header) if header.kind != Kind::Fragment && header.src == src => {
                self.stats.packets_reassembled += 1;
                Some(packet)
            }
            _ => {
                self.stats.malformed += 1;
                self.recycle(packet);
                None
            }
        }
    }

    /// Gives a buffer back (a packet [`insert`](Self::insert) returned) so that a later
    /// partial packet reuses it instead of allocating.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        // One buffer per partial packet that may be held, plus the one being returned.
        if self.spare.len() <= self.limits.max_packets && buf.capacity() > 0 {
            self.spare.push(buf);
        }
    }

    /// Gives up partial packets whose first fragment is `timeout` or more before `now`.
    pub fn expire(&mut self, now: Time) {
        let Some(earliest) = self.earliest else {
            return;
        };
        if now.since(earliest) < self.limits.timeout {
            return;
        }
        let mut still = None;
        for slot in 0..self.slots.len() {
            let Some(created) = self.slots[slot].as_ref().map(|p| p.created) else {
                continue;
            };
            if now.since(created) >= self.limits.timeout {
                self.discard(slot, Some(Removal::TimedOut));
            } else {
                still = Some(still.map_or(created, |t: Time| t.min(created)));
            }
        }
        self.earliest = still;
    }

    /// When the oldest partial packet times out, for the caller's timer (possibly a
    /// little early: [`expire`](Self::expire) then finds nothing to do).
    pub fn next_expiry(&self) -> Option<Time> {
        if self.live == 0 {
            return None;
        }
        self.earliest.map(|t| t + self.limits.timeout)
    }

    /// Drop and completion counters since creation.
    pub fn stats(&self) -> ReassemblyStats {
        self.stats
    }

    /// The limits in force (after the adjustments made by [`Reassembler::new`]).
    pub fn limits(&self) -> ReassemblyLimits {
        self.limits
    }

    /// Partial packets held now.
    pub fn packets_in_flight(&self) -> usize {
        self.live
    }

    /// Chunk bytes held now.
    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    /// Starts a partial packet, evicting first the owner's oldest one if it has
    /// `max_per_source` in flight, and one it may displace if `max_packets` are held.
    /// Returns its slot, or `None` if there is no room this fragment may take.
    fn start(
        &mut self,
        now: Time,
        owner: Owner,
        src: NodeAddress,
        packet_id: u64,
        count: u8,
    ) -> Option<usize> {
        if self.per_owner.get(&owner).copied().unwrap_or(0) >= self.limits.max_per_source {
            if let Some(oldest) = self.oldest(|p| p.owner == owner, None) {
                self.discard(oldest, Some(Removal::PerSource));
            }
        }
        if self.live >= self.limits.max_packets {
            let victim = self.victim(owner.known(), None)?;
            self.discard(victim, Some(Removal::Global));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut data = self.spare.pop().unwrap_or_default();
        data.clear();
        let partial = Partial {
            owner,
            src,
            packet_id,
            seq,
            created: now,
            count,
            received: 0,
            chunks: [None; MAX_FRAGMENTS],
            data,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(partial);
                slot
            }
            None => {
                self.slots.push(Some(partial));
                self.slots.len() - 1
            }
        };
        self.live += 1;
        self.by_id.insert((owner, src, packet_id), slot);
        *self.per_owner.entry(owner).or_insert(0) += 1;
        self.earliest = Some(self.earliest.map_or(now, |t| t.min(now)));
        Some(slot)
    }

    /// The partial packet a fragment may evict to make room: the oldest unverified
    /// one, or for a known-path fragment the oldest of any kind. Never `except`.
    fn victim(&self, known: bool, except: Option<usize>) -> Option<usize> {
        self.oldest(|p| !p.owner.known(), except)
            .or_else(|| known.then(|| self.oldest(|_| true, except)).flatten())
    }

    /// The slot of the oldest partial packet matching `pick`, other than `except`.
    fn oldest(&self, pick: impl Fn(&Partial) -> bool, except: Option<usize>) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|&(slot, _)| Some(slot) != except)
            .filter_map(|(slot, p)| p.as_ref().filter(|p| pick(p)).map(|p| (p.seq, slot)))
            .min()
            .map(|(_, slot)| slot)
    }

    /// Removes a partial packet and keeps its buffer for reuse.
    fn discard(&mut self, slot: usize, reason: Option<Removal>) {
        if let Some(data) = self.remove(slot, reason) {
            self.recycle(data);
        }
    }

    /// Removes a partial packet from every index, counting `reason` if it is a drop;
    /// returns its data.
    fn remove(&mut self, slot: usize, reason: Option<Removal>) -> Option<Vec<u8>> {
        let partial = self.slots.get_mut(slot)?.as_mut()?;
        let data = std::mem::take(&mut partial.data);
        let key = (partial.owner, partial.src, partial.packet_id);
        self.slots[slot] = None;
        self.free.push(slot);
        self.live -= 1;
        self.by_id.remove(&key);
        let owner = key.0;
        if let Some(n) = self.per_owner.get_mut(&owner) {
            *n -= 1;
            if *n == 0 {
                self.per_owner.remove(&owner);
            }
        }
        self.bytes -= data.len();
        let counter = match reason {
            None => None,
            Some(Removal::Inconsistent) => Some(&mut self.stats.inconsistent),
            Some(Removal::TooLarge) => Some(&mut self.stats.too_large),
            Some(Removal::TimedOut) => Some(&mut self.stats.timed_out),
            Some(Removal::PerSource) => Some(&mut self.stats.evicted_per_source),
            Some(Removal::Global) => Some(&mut self.stats.evicted_global),
        };
        if let Some(counter) = counter {
            *counter += 1;
        }
        Some(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Outer, parse};

    fn piece(packet_id: u64, index: u8, count: u8, chunk: &[u8]) -> Piece<'_> {
        Piece {
            packet_id,
            index,
            count,
            chunk,
        }
    }
    use proptest::prelude::*;

    fn addr(v: u64) -> NodeAddress {
        NodeAddress::new(v).expect("test address is valid")
    }

    /// A Data packet of `len` bytes from `src` with a recognisable body.
    fn packet(src: NodeAddress, len: usize) -> Vec<u8> {
        let body: Vec<u8> = (0..len - 24).map(|i| (i * 7 + 3) as u8).collect();
        let mut out = Vec::new();
        Outer::Data {
            receiver_index: 1,
            counter: 2,
            ciphertext: &body,
        }
        .emit(addr(0x89e92ceee5), src, &mut out);
        out
    }

    const KNOWN: Arrival = Arrival::KnownPath;

    fn ip(last: u8) -> Arrival {
        Arrival::Unverified(IpAddr::from([203, 0, 113, last]))
    }

    /// Feeds one datagram, arrived on the peer's known path, as the node core would.
    fn feed(r: &mut Reassembler, now: Time, datagram: &[u8]) -> Option<Vec<u8>> {
        feed_as(r, now, KNOWN, datagram)
    }

    fn feed_as(
        r: &mut Reassembler,
        now: Time,
        arrival: Arrival,
        datagram: &[u8],
    ) -> Option<Vec<u8>> {
        let (header, outer) = parse(datagram).expect("fragment parses");
        let piece = outer.piece().expect("a fragment");
        r.insert(now, arrival, header.src, piece)
    }

    #[test]
    fn fragments_carry_the_original_route_and_fit() {
        let src = addr(0x0102030405);
        let mut original = packet(src, 3000);
        original[field::FLAGS] = 2;
        let fragments = fragment(&original, 1400, 77).unwrap();
        assert_eq!(fragments.len(), 3);
        let mut joined = Vec::new();
        for (i, f) in fragments.iter().enumerate() {
            assert!(f.len() <= 1400);
            let (header, outer) = parse(f).unwrap();
            assert_eq!(header.kind, Kind::Fragment);
            assert_eq!(header.hops, 2);
            assert_eq!((header.dest, header.src), (addr(0x89e92ceee5), src));
            let Outer::Fragment {
                packet_id,
                index,
                count,
                chunk,
            } = outer
            else {
                panic!("{outer:?}")
            };
            assert_eq!((packet_id, usize::from(index), count), (77, i, 3));
            joined.extend_from_slice(chunk);
        }
        assert_eq!(joined, original);
    }

    #[test]
    fn fragment_limits() {
        let src = addr(5);
        let small = packet(src, 100);
        assert_eq!(fragment(&small, 100, 1).unwrap(), vec![small.clone()]);
        assert_eq!(
            fragment(&small, FRAGMENT_OVERHEAD, 1),
            Err(WireError::MtuTooSmall(FRAGMENT_OVERHEAD))
        );
        // 16 fragments of one byte each is the most there can be.
        let sixteen = packet(src, 32);
        assert_eq!(fragment(&sixteen, 24, 1).unwrap().len(), 16);
        let big = packet(src, 33);
        assert_eq!(
            fragment(&big, 24, 1),
            Err(WireError::TooManyFragments {
                len: 33,
                max_len: 24
            })
        );
        let frags = fragment(&packet(src, 3000), 1400, 1).unwrap();
        assert!(matches!(
            fragment(&frags[0], 100, 2),
            Err(WireError::BadFragment(_))
        ));
        assert!(fragment(&[1, 2, 3], 100, 1).is_err());
    }

    #[test]
    fn reassembles_in_any_order_and_counts_duplicates() {
        let src = addr(0x0102030405);
        let original = packet(src, 5000);
        let fragments = fragment(&original, 600, 9).unwrap();
        assert_eq!(fragments.len(), 9);
        let mut r = Reassembler::default();
        let order = [4, 0, 8, 4, 2, 7, 1, 3, 6, 5];
        for (n, &i) in order.iter().enumerate() {
            let out = feed(&mut r, Time::from_millis(n as u64), &fragments[i]);
            if n + 1 < order.len() {
                assert_eq!(out, None, "completed early at step {n}");
            } else {
                assert_eq!(out, Some(original.clone()));
            }
        }
        let stats = r.stats();
        assert_eq!(stats.duplicate, 1);
        assert_eq!(stats.fragments_accepted, 9);
        assert_eq!(stats.packets_reassembled, 1);
        assert_eq!((r.packets_in_flight(), r.buffered_bytes()), (0, 0));
        assert_eq!(r.next_expiry(), None);
    }

    #[test]
    fn inconsistent_fragments_discard_the_partial_packet() {
        let src = addr(7);
        let mut r = Reassembler::default();
        assert_eq!(
            r.insert(Time::ZERO, KNOWN, src, piece(1, 0, 3, b"aaaa")),
            None
        );
        assert_eq!(
            r.insert(Time::ZERO, KNOWN, src, piece(1, 0, 3, b"bbbb")),
            None
        );
        assert_eq!(r.packets_in_flight(), 0);
        assert_eq!(
            r.insert(Time::ZERO, KNOWN, src, piece(2, 0, 3, b"aaaa")),
            None
        );
        assert_eq!(
            r.insert(Time::ZERO, KNOWN, src, piece(2, 1, 4, b"aaaa")),
            None
        );
        assert_eq!(r.packets_in_flight(), 0);
        assert_eq!(r.stats().inconsistent, 2);
        for (index, count, chunk) in [
            (0u8, 1u8, &b"x"[..]),
            (3, 3, b"x"),
            (0, 17, b"x"),
            (0, 2, b""),
        ] {
            assert_eq!(
                r.insert(Time::ZERO, KNOWN, src, piece(3, index, count, chunk)),
                None
            );
        }
        assert_eq!(r.stats().bad_fragment, 4);
        assert_eq!(r.packets_in_flight(), 0);
    }

    #[test]
    fn completed_garbage_is_not_returned() {
        let src = addr(7);
        let mut r = Reassembler::default();
        // Too short for a header.
        r.insert(Time::ZERO, KNOWN, src, piece(1, 0, 2, b"ab"));
        assert_eq!(
            r.insert(Time::ZERO, KNOWN, src, piece(1, 1, 2, b"cd")),
            None
        );
        // A valid packet, but from another source than the fragments claim.
        let other = packet(addr(8), 100);
        r.insert(Time::ZERO, KNOWN, src, piece(2, 0, 2, &other[..50]));
        assert_eq!(
            r.insert(Time::ZERO, KNOWN, src, piece(2, 1, 2, &other[50..])),
            None
        );
        // A fragment inside fragments.
        let mut nested = packet(src, 100);
        nested[field::KIND] = Kind::Fragment.into();
        r.insert(Time::ZERO, KNOWN, src, piece(3, 0, 2, &nested[..50]));
        assert_eq!(
            r.insert(Time::ZERO, KNOWN, src, piece(3, 1, 2, &nested[50..])),
            None
        );
        assert_eq!(r.stats().malformed, 3);
        assert_eq!(r.stats().packets_reassembled, 0);
    }

    #[test]
    fn partial_packets_time_out() {
        let src = addr(7);
        let original = packet(src, 3000);
        let fragments = fragment(&original, 1400, 1).unwrap();
        let mut r = Reassembler::default();
        feed(&mut r, Time::from_millis(1000), &fragments[0]);
        assert_eq!(r.next_expiry(), Some(Time::from_millis(3000)));
        r.expire(Time::from_millis(2999));
        assert_eq!(r.packets_in_flight(), 1);
        // The rest arrives too late: the first piece is gone, so no packet.
        assert_eq!(feed(&mut r, Time::from_millis(3000), &fragments[1]), None);
        assert_eq!(feed(&mut r, Time::from_millis(3001), &fragments[2]), None);
        assert_eq!(r.stats().timed_out, 1);
        r.expire(Time::from_millis(6000));
        assert_eq!(r.stats().timed_out, 2);
        assert_eq!((r.packets_in_flight(), r.buffered_bytes()), (0, 0));
    }

    #[test]
    fn oversized_packets_are_dropped() {
        let src = addr(7);
        let mut r = Reassembler::new(ReassemblyLimits {
            max_packet_len: 100,
            ..ReassemblyLimits::default()
        });
        assert_eq!(
            r.insert(Time::ZERO, KNOWN, src, piece(1, 0, 3, &[1; 101])),
            None
        );
        assert_eq!(r.stats().bad_fragment, 1);
        r.insert(Time::ZERO, KNOWN, src, piece(2, 0, 3, &[1; 60]));
        r.insert(Time::ZERO, KNOWN, src, piece(2, 1, 3, &[1; 60]));
        assert_eq!(r.stats().too_large, 1);
        assert_eq!((r.packets_in_flight(), r.buffered_bytes()), (0, 0));
    }

    #[test]
    fn a_flooding_source_only_evicts_its_own_packets() {
        let limits = ReassemblyLimits::default();
        let mut r = Reassembler::new(limits);
        let quiet = addr(0x0102030405);
        let original = packet(quiet, 3000);
        let fragments = fragment(&original, 1400, 1).unwrap();
        feed(&mut r, Time::ZERO, &fragments[0]);
        let flooder = addr(0x0a0b0c0d0e);
        for id in 0..10_000u64 {
            r.insert(Time::ZERO, KNOWN, flooder, piece(id, 0, 16, &[0u8; 1000]));
            assert!(r.packets_in_flight() <= 1 + limits.max_per_source);
        }
        assert_eq!(
            r.stats().evicted_per_source,
            10_000 - limits.max_per_source as u64
        );
        feed(&mut r, Time::ZERO, &fragments[2]);
        assert_eq!(feed(&mut r, Time::ZERO, &fragments[1]), Some(original));
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_from_many_sources() {
        let limits = ReassemblyLimits {
            max_packets: 64,
            max_per_source: 4,
            max_bytes: 100_000,
            max_packet_len: 20_000,
            timeout: Duration::from_secs(2),
        };
        let mut r = Reassembler::new(limits);
        let mut peak = (0, 0);
        for i in 0..50_000u64 {
            let src = addr(1 + i % 1000);
            let now = Time::from_millis(i / 10);
            let len = 1 + (i as usize * 131) % 1400;
            // Half the senders are peers on known paths, half bare addresses.
            let (arrival, owner) = if i % 2 == 0 {
                (KNOWN, Owner::Peer(src))
            } else {
                let a = IpAddr::from([198, 51, 100, (i % 200) as u8]);
                (Arrival::Unverified(a), Owner::Address(a))
            };
            let chunk = vec![i as u8; len];
            r.insert(now, arrival, src, piece(i, (i % 3) as u8, 4, &chunk));
            peak.0 = peak.0.max(r.packets_in_flight());
            peak.1 = peak.1.max(r.buffered_bytes());
            assert!(r.packets_in_flight() <= limits.max_packets);
            assert!(r.buffered_bytes() <= limits.max_bytes);
            assert!(r.per_owner.get(&owner).copied().unwrap_or(0) <= limits.max_per_source);
            assert!(r.by_id.len() == r.live && r.per_owner.len() <= r.live);
            assert!(r.slots.len() <= limits.max_packets);
            assert!(r.spare.len() <= limits.max_packets + 1);
        }
        assert_eq!(peak.0, limits.max_packets, "the flood reached the limit");
        let stats = r.stats();
        assert!(stats.evicted_global > 0);
        assert_eq!(
            stats.fragments_accepted,
            stats.evicted_global
                + stats.evicted_per_source
                + stats.timed_out
                + r.packets_in_flight() as u64,
            "every accepted fragment is still held or counted as dropped"
        );
        // After the flood, a packet whose fragments arrive together still gets through.
        let src = addr(0x0102030405);
        let original = packet(src, 3000);
        let now = Time::from_millis(5000);
        let mut out = None;
        for f in fragment(&original, 1400, 1).unwrap() {
            out = feed(&mut r, now, &f);
        }
        assert_eq!(out, Some(original));
        r.expire(now + limits.timeout);
        assert_eq!((r.packets_in_flight(), r.buffered_bytes()), (0, 0));
    }

    #[test]
    fn unverified_fragments_never_evict_a_known_paths_packets() {
        let limits = ReassemblyLimits {
            max_packets: 16,
            max_per_source: 4,
            ..ReassemblyLimits::default()
        };
        let mut r = Reassembler::new(limits);
        let peer = addr(0x0102030405);
        let original = packet(peer, 3000);
        let fragments = fragment(&original, 1400, 77).unwrap();
        feed(&mut r, Time::ZERO, &fragments[0]);
        // Forged fragments from a thousand addresses, half claiming to be the peer and
        // a few even guessing its packet ID, with other bytes.
        for i in 0..10_000u64 {
            let src = if i % 2 == 0 { peer } else { addr(1 + i) };
            let id = if i % 100 == 0 { 77 } else { i };
            let from = ip((i % 250) as u8);
            let out = r.insert(Time::ZERO, from, src, piece(id, 1, 3, &[0xee; 1000]));
            assert_eq!(out, None);
            assert!(r.packets_in_flight() <= limits.max_packets);
        }
        assert!(r.stats().evicted_global > 0, "the flood filled the table");
        assert_eq!(
            r.stats().inconsistent,
            0,
            "other senders' IDs are their own"
        );
        feed(&mut r, Time::ZERO, &fragments[2]);
        assert_eq!(feed(&mut r, Time::ZERO, &fragments[1]), Some(original));
    }

    #[test]
    fn a_table_full_of_known_paths_refuses_unverified_fragments() {
        let mut r = Reassembler::new(ReassemblyLimits {
            max_packets: 4,
            max_per_source: 4,
            ..ReassemblyLimits::default()
        });
        for id in 0..4 {
            r.insert(Time::ZERO, KNOWN, addr(1), piece(id, 0, 2, &[1; 100]));
        }
        assert_eq!(
            r.insert(Time::ZERO, ip(9), addr(2), piece(1, 0, 2, &[1; 100])),
            None
        );
        assert_eq!(r.stats().refused, 1);
        assert_eq!(r.packets_in_flight(), 4);
        // Another known path may take the oldest slot.
        r.insert(Time::ZERO, KNOWN, addr(3), piece(1, 0, 2, &[1; 100]));
        assert_eq!(r.stats().evicted_global, 1);
        assert_eq!(r.packets_in_flight(), 4);
        // Bytes too: an unverified fragment cannot push known-path bytes out.
        let mut r = Reassembler::new(ReassemblyLimits {
            max_bytes: 3000,
            max_packet_len: 2000,
            ..ReassemblyLimits::default()
        });
        r.insert(Time::ZERO, KNOWN, addr(1), piece(1, 0, 2, &[0; 1500]));
        r.insert(Time::ZERO, ip(1), addr(2), piece(1, 0, 2, &[0; 1000]));
        assert_eq!(
            r.insert(Time::ZERO, ip(2), addr(3), piece(1, 0, 2, &[0; 1000])),
            None
        );
        assert_eq!(r.stats().evicted_global, 1, "the older unverified one went");
        // This one evicts the other unverified packet and still does not fit.
        assert_eq!(
            r.insert(Time::ZERO, ip(3), addr(4), piece(1, 0, 2, &[0; 1600])),
            None
        );
        assert_eq!((r.stats().evicted_global, r.stats().refused), (2, 1));
        assert_eq!((r.packets_in_flight(), r.buffered_bytes()), (1, 1500));
    }

    #[test]
    fn reassembly_reuses_its_buffers() {
        let src = addr(7);
        let mut r = Reassembler::default();
        let reassemble = |r: &mut Reassembler, id: u64| {
            let mut out = None;
            for f in fragment(&packet(src, 3000), 1400, id).unwrap() {
                out = feed(r, Time::ZERO, &f);
            }
            out.expect("reassembled")
        };
        let first = reassemble(&mut r, 1);
        r.recycle(first);
        let pooled: Vec<*const u8> = r.spare.iter().map(|b| b.as_ptr()).collect();
        assert_eq!(
            pooled.len(),
            1,
            "fragments in order: the partial's buffer is the packet, no second one"
        );
        for id in 2..10 {
            let again = reassemble(&mut r, id);
            assert!(pooled.contains(&again.as_ptr()), "no new buffer");
            r.recycle(again);
            assert_eq!(r.spare.len(), 1);
        }
        // Out of order, the chunks are put in order in a second buffer.
        let mut fragments = fragment(&packet(src, 3000), 1400, 99).unwrap();
        fragments.reverse();
        let mut out = None;
        for f in &fragments {
            out = feed(&mut r, Time::ZERO, f);
        }
        assert_eq!(out, Some(packet(src, 3000)));
    }

    #[test]
    fn byte_limit_evicts_oldest_packets() {
        let mut r = Reassembler::new(ReassemblyLimits {
            max_bytes: 3000,
            max_packet_len: 2000,
            ..ReassemblyLimits::default()
        });
        r.insert(Time::ZERO, KNOWN, addr(1), piece(1, 0, 2, &[0; 1000]));
        r.insert(Time::ZERO, KNOWN, addr(2), piece(1, 0, 2, &[0; 1000]));
        r.insert(Time::ZERO, KNOWN, addr(3), piece(1, 0, 2, &[0; 1000]));
        assert_eq!(r.buffered_bytes(), 3000);
        r.insert(Time::ZERO, KNOWN, addr(4), piece(1, 0, 2, &[0; 1500]));
        assert_eq!(r.stats().evicted_global, 2);
        assert_eq!(r.buffered_bytes(), 2500);
        assert_eq!(r.packets_in_flight(), 2);
    }

    proptest! {
        #[test]
        fn prop_fragment_reassemble_round_trip(
            len in 13usize..6000,
            max_len in 23usize..2000,
            id in any::<u64>(),
            seed in any::<u64>(),
        ) {
            let src = addr(0x0102030405);
            let mut original = vec![0u8; len];
            original[..HEADER_LEN].copy_from_slice(
                &Header::new(Kind::Unknown(0x33), addr(9), src).to_bytes(),
            );
            for (i, b) in original.iter_mut().enumerate().skip(HEADER_LEN) {
                *b = (i as u64).wrapping_mul(seed | 1) as u8;
            }
            let fragments = match fragment(&original, max_len, id) {
                Ok(f) => f,
                Err(WireError::TooManyFragments { .. }) => {
                    prop_assert!(len.div_ceil(max_len - FRAGMENT_OVERHEAD) > MAX_FRAGMENTS);
                    return Ok(());
                }
                Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
            };
            if len <= max_len {
                prop_assert_eq!(fragments, vec![original]);
                return Ok(());
            }
            prop_assert!(fragments.len() >= 2 && fragments.len() <= MAX_FRAGMENTS);
            // Deterministic shuffle from the seed.
            let mut order: Vec<usize> = (0..fragments.len()).collect();
            let mut x = seed;
            for i in (1..order.len()).rev() {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                order.swap(i, (x >> 33) as usize % (i + 1));
            }
            let mut r = Reassembler::default();
            let mut result = None;
            for (n, &i) in order.iter().enumerate() {
                prop_assert!(fragments[i].len() <= max_len);
                let out = feed(&mut r, Time::ZERO, &fragments[i]);
                if n + 1 < order.len() {
                    prop_assert_eq!(&out, &None);
                }
                result = out;
            }
            prop_assert_eq!(result, Some(original));
            prop_assert_eq!(r.buffered_bytes(), 0);
        }
    }
}
