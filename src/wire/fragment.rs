//! Fragmentation of outer packets larger than the path MTU, and their reassembly with
//! bounded memory.
//!
//! [`fragment`] cuts a whole outer packet (header included) into 2..=16 chunks of
//! nearly equal size and wraps each in a Fragment packet with the original's
//! destination, source and flags. [`Reassembler`] collects chunks per
//! `(source, packet_id)` and returns the original bytes once all have arrived.
//!
//! Fragments are not authenticated, so the reassembler assumes an attacker can send
//! any number of them with any source address. Its invariants, which hold after every
//! call: at most `max_packets` partial packets in total and `max_per_source` per
//! source address, at most `max_bytes` of chunk data buffered, no partial packet
//! older than `timeout` once `insert` or `expire` has been called with a later time,
//! and no partial packet longer than `max_packet_len`. When a limit would be exceeded
//! the *oldest* partial packet (of that source, or overall) is evicted, so a flood
//! delays reassembly but never grows memory. Every dropped fragment or packet is
//! counted in [`ReassemblyStats`] by reason.
//!
//! The node core owns one reassembler and feeds it the fields of each
//! [`Outer::Fragment`](super::Outer::Fragment) it receives. A reassembled packet
//! carries the header as the sender wrote it; the hops added by relays are on the
//! fragments' headers, so path decisions use the hop count of the fragments. A fragment
//! arriving after its packet completed starts a new partial packet that times out.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use super::WireError;
use super::packet::{HEADER_LEN, Header, Kind, check_fragment, field};
use crate::types::{NodeAddress, Time};

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
    /// Partial packets in flight from all sources together.
    pub max_packets: usize,
    /// Partial packets in flight from one source address.
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
    /// 256 packets, 8 per source, 4 MiB, 64 KiB per packet, 2 s.
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
    /// Partial packets evicted because their source had `max_per_source` in flight.
    pub evicted_per_source: u64,
    /// Partial packets evicted because `max_packets` or `max_bytes` was reached.
    pub evicted_global: u64,
}

/// Puts fragments back together with bounded memory (see the module docs for the
/// limits and the eviction policy). Time is an input; it must not go backwards.
#[derive(Debug)]
pub struct Reassembler {
    limits: ReassemblyLimits,
    /// Partial packets keyed by a sequence number given in arrival order of their
    /// first fragment, so the first entry is the oldest.
    partials: BTreeMap<u64, Partial>,
    /// `(source, packet_id)` → sequence number.
    by_id: HashMap<(NodeAddress, u64), u64>,
    /// Sequence numbers per source, oldest first; no empty lists are kept.
    by_source: HashMap<NodeAddress, VecDeque<u64>>,
    next_seq: u64,
    /// Sum of `Partial::bytes`.
    bytes: usize,
    stats: ReassemblyStats,
}

#[derive(Debug)]
struct Partial {
    src: NodeAddress,
    packet_id: u64,
    created: Time,
    /// One slot per fragment; `chunks.len()` is the fragment count.
    chunks: Vec<Option<Box<[u8]>>>,
    received: usize,
    bytes: usize,
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
            partials: BTreeMap::new(),
            by_id: HashMap::new(),
            by_source: HashMap::new(),
            next_seq: 0,
            bytes: 0,
            stats: ReassemblyStats::default(),
        }
    }

    /// Takes one fragment (the fields of an `Outer::Fragment` and the header's source)
    /// and returns the whole original packet when this was its last missing piece.
    /// Expires old partial packets first.
    pub fn insert(
        &mut self,
        now: Time,
        src: NodeAddress,
        packet_id: u64,
        index: u8,
        count: u8,
        chunk: &[u8],
    ) -> Option<Vec<u8>> {
        if check_fragment(index, count, chunk).is_err() || chunk.len() > self.limits.max_packet_len
        {
            self.stats.bad_fragment += 1;
            return None;
        }
        self.expire(now);

        let seq = match self.by_id.get(&(src, packet_id)) {
            Some(&seq) => {
                let partial = self.partials.get(&seq)?;
                let slot = partial.chunks.get(usize::from(index));
                if partial.chunks.len() != usize::from(count) {
                    self.remove(seq, Some(Removal::Inconsistent));
                    return None;
                }
                if let Some(Some(existing)) = slot {
                    if **existing == *chunk {
                        self.stats.duplicate += 1;
                    } else {
                        self.remove(seq, Some(Removal::Inconsistent));
                    }
                    return None;
                }
                if partial.bytes + chunk.len() > self.limits.max_packet_len {
                    self.remove(seq, Some(Removal::TooLarge));
                    return None;
                }
                seq
            }
            None => self.start(now, src, packet_id, count),
        };

        // Make room for the chunk by evicting the oldest other partial packets. This
        // ends: this partial plus the chunk fits in max_packet_len <= max_bytes.
        while self.bytes + chunk.len() > self.limits.max_bytes {
            let Some(victim) = self.partials.keys().copied().find(|&s| s != seq) else {
                break;
            };
            self.remove(victim, Some(Removal::Global));
        }

        let partial = self.partials.get_mut(&seq)?;
        partial.chunks[usize::from(index)] = Some(chunk.into());
        partial.received += 1;
        partial.bytes += chunk.len();
        self.bytes += chunk.len();
        self.stats.fragments_accepted += 1;
        if partial.received < partial.chunks.len() {
            return None;
        }

        let partial = self.remove(seq, None)?;
        let mut packet = Vec::with_capacity(partial.bytes);
        for chunk in partial.chunks.iter().flatten() {
            packet.extend_from_slice(chunk);
        }
        match Header::parse(&packet) {
            Ok(header) if header.kind != Kind::Fragment && header.src == src => {
                self.stats.packets_reassembled += 1;
                Some(packet)
            }
            _ => {
                self.stats.malformed += 1;
                None
            }
        }
    }

    /// Gives up partial packets whose first fragment is `timeout` or more before `now`.
    pub fn expire(&mut self, now: Time) {
        while let Some((&seq, oldest)) = self.partials.first_key_value() {
            if now.since(oldest.created) < self.limits.timeout {
                break;
            }
            self.remove(seq, Some(Removal::TimedOut));
        }
    }

    /// When the oldest partial packet times out, for the caller's timer.
    pub fn next_expiry(&self) -> Option<Time> {
        self.partials
            .first_key_value()
            .map(|(_, p)| p.created + self.limits.timeout)
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
        self.partials.len()
    }

    /// Chunk bytes held now.
    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    /// Starts a partial packet, evicting the oldest ones first if the per-source or
    /// total packet limit is reached. Returns its sequence number.
    fn start(&mut self, now: Time, src: NodeAddress, packet_id: u64, count: u8) -> u64 {
        let own = self.by_source.get(&src).map_or(0, VecDeque::len);
        if own >= self.limits.max_per_source {
            if let Some(oldest) = self.by_source.get(&src).and_then(|q| q.front().copied()) {
                self.remove(oldest, Some(Removal::PerSource));
            }
        }
        if self.partials.len() >= self.limits.max_packets {
            if let Some(oldest) = self.partials.keys().next().copied() {
                self.remove(oldest, Some(Removal::Global));
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.partials.insert(
            seq,
            Partial {
                src,
                packet_id,
                created: now,
                chunks: vec![None; usize::from(count)],
                received: 0,
                bytes: 0,
            },
        );
        self.by_id.insert((src, packet_id), seq);
        self.by_source.entry(src).or_default().push_back(seq);
        seq
    }

    /// Removes a partial packet from every index, counting `reason` if it is a drop.
    fn remove(&mut self, seq: u64, reason: Option<Removal>) -> Option<Partial> {
        let partial = self.partials.remove(&seq)?;
        self.by_id.remove(&(partial.src, partial.packet_id));
        if let Some(queue) = self.by_source.get_mut(&partial.src) {
            queue.retain(|&s| s != seq);
            if queue.is_empty() {
                self.by_source.remove(&partial.src);
            }
        }
        self.bytes -= partial.bytes;
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
        Some(partial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Outer, parse};
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

    /// Feeds one datagram to the reassembler as the node core would.
    fn feed(r: &mut Reassembler, now: Time, datagram: &[u8]) -> Option<Vec<u8>> {
        let (header, outer) = parse(datagram).expect("fragment parses");
        let Outer::Fragment {
            packet_id,
            index,
            count,
            chunk,
        } = outer
        else {
            panic!("not a fragment: {outer:?}");
        };
        r.insert(now, header.src, packet_id, index, count, chunk)
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
        assert_eq!(r.insert(Time::ZERO, src, 1, 0, 3, b"aaaa"), None);
        assert_eq!(r.insert(Time::ZERO, src, 1, 0, 3, b"bbbb"), None);
        assert_eq!(r.packets_in_flight(), 0);
        assert_eq!(r.insert(Time::ZERO, src, 2, 0, 3, b"aaaa"), None);
        assert_eq!(r.insert(Time::ZERO, src, 2, 1, 4, b"aaaa"), None);
        assert_eq!(r.packets_in_flight(), 0);
        assert_eq!(r.stats().inconsistent, 2);
        for (index, count, chunk) in [
            (0u8, 1u8, &b"x"[..]),
            (3, 3, b"x"),
            (0, 17, b"x"),
            (0, 2, b""),
        ] {
            assert_eq!(r.insert(Time::ZERO, src, 3, index, count, chunk), None);
        }
        assert_eq!(r.stats().bad_fragment, 4);
        assert_eq!(r.packets_in_flight(), 0);
    }

    #[test]
    fn completed_garbage_is_not_returned() {
        let src = addr(7);
        let mut r = Reassembler::default();
        // Too short for a header.
        r.insert(Time::ZERO, src, 1, 0, 2, b"ab");
        assert_eq!(r.insert(Time::ZERO, src, 1, 1, 2, b"cd"), None);
        // A valid packet, but from another source than the fragments claim.
        let other = packet(addr(8), 100);
        r.insert(Time::ZERO, src, 2, 0, 2, &other[..50]);
        assert_eq!(r.insert(Time::ZERO, src, 2, 1, 2, &other[50..]), None);
        // A fragment inside fragments.
        let mut nested = packet(src, 100);
        nested[field::KIND] = Kind::Fragment.into();
        r.insert(Time::ZERO, src, 3, 0, 2, &nested[..50]);
        assert_eq!(r.insert(Time::ZERO, src, 3, 1, 2, &nested[50..]), None);
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
        assert_eq!(r.insert(Time::ZERO, src, 1, 0, 3, &[1; 101]), None);
        assert_eq!(r.stats().bad_fragment, 1);
        r.insert(Time::ZERO, src, 2, 0, 3, &[1; 60]);
        r.insert(Time::ZERO, src, 2, 1, 3, &[1; 60]);
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
            r.insert(Time::ZERO, flooder, id, 0, 16, &[0u8; 1000]);
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
            r.insert(now, src, i, (i % 3) as u8, 4, &vec![i as u8; len]);
            peak.0 = peak.0.max(r.packets_in_flight());
            peak.1 = peak.1.max(r.buffered_bytes());
            assert!(r.packets_in_flight() <= limits.max_packets);
            assert!(r.buffered_bytes() <= limits.max_bytes);
            let per_source = r.by_source.get(&src).map_or(0, VecDeque::len);
            assert!(per_source <= limits.max_per_source);
            assert!(r.by_id.len() == r.partials.len() && r.by_source.len() <= r.partials.len());
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
    fn byte_limit_evicts_oldest_packets() {
        let mut r = Reassembler::new(ReassemblyLimits {
            max_bytes: 3000,
            max_packet_len: 2000,
            ..ReassemblyLimits::default()
        });
        r.insert(Time::ZERO, addr(1), 1, 0, 2, &[0; 1000]);
        r.insert(Time::ZERO, addr(2), 1, 0, 2, &[0; 1000]);
        r.insert(Time::ZERO, addr(3), 1, 0, 2, &[0; 1000]);
        assert_eq!(r.buffered_bytes(), 3000);
        r.insert(Time::ZERO, addr(4), 1, 0, 2, &[0; 1500]);
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
