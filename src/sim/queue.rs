//! The event queue: what happens next, in a total, reproducible order.
//!
//! Owns every pending event and the datagrams in flight. Events are ordered by
//! `(time, sequence)`, where the sequence number counts pushes, so two events at the same
//! microsecond always run in the order they were scheduled. Heap entries are 24 bytes;
//! datagrams wait in a slab beside the heap (its slots are reused), so moving entries
//! around the heap never copies a datagram. Only [`super::Sim`] uses it.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::HostId;
use crate::types::{Endpoint, Time};

/// A datagram between hosts, as the simulator tracks it.
#[derive(Debug)]
pub(crate) struct Datagram {
    /// The sending host; `None` for injected datagrams.
    pub(crate) sender: Option<HostId>,
    /// The source address as the receiver will see it (after the sender's NAT).
    pub(crate) from: Endpoint,
    /// The address the sender put on it.
    pub(crate) to: Endpoint,
    /// Set once the receiving host is known (for [`Stage::Deliver`]), with the host's
    /// address epoch at that moment (a host that moves since does not get it).
    pub(crate) receiver: Option<(HostId, u32)>,
    /// True if it stayed inside one NAT's LAN (sender and receiver behind the same NAT).
    pub(crate) lan: bool,
    /// The UDP payload.
    pub(crate) bytes: Vec<u8>,
}

/// Where a datagram is when its event fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// It has crossed the sender's access link and reaches the public network, where
    /// its destination (a public host or a NAT) is looked up.
    Transit,
    /// It has crossed the receiver's access link and reaches the receiver's socket.
    Deliver,
}

/// An event taken off the queue.
#[derive(Debug)]
pub(crate) enum Popped {
    /// A host's timer; the host's pending timer time says whether it is still wanted.
    Timer(HostId),
    /// A datagram reaching a stage of its path.
    Datagram(Stage, Datagram),
}

/// What an entry refers to; 8 bytes, so the heap moves little memory.
#[derive(Debug, Clone, Copy)]
enum What {
    Timer(HostId),
    Datagram(Stage, u32),
}

#[derive(Debug)]
struct Entry {
    time: Time,
    seq: u64,
    what: What,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    /// Reversed, so the max-heap pops the earliest (time, seq) first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time, other.seq).cmp(&(self.time, self.seq))
    }
}

/// Pending events plus the datagrams they refer to.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    heap: BinaryHeap<Entry>,
    next_seq: u64,
    slab: Vec<Option<Datagram>>,
    free: Vec<u32>,
}

impl Queue {
    /// Schedules a host timer.
    pub(crate) fn push_timer(&mut self, time: Time, host: HostId) {
        self.push(time, What::Timer(host));
    }

    /// Schedules a datagram to reach `stage` at `time`.
    pub(crate) fn push_datagram(&mut self, time: Time, stage: Stage, datagram: Datagram) {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slab[slot as usize] = Some(datagram);
                slot
            }
            None => {
                let slot = u32::try_from(self.slab.len())
                    .expect("fewer than 2^32 datagrams in flight at once");
                self.slab.push(Some(datagram));
                slot
            }
        };
        self.push(time, What::Datagram(stage, slot));
    }

    /// The time of the earliest pending event.
    pub(crate) fn peek_time(&self) -> Option<Time> {
        self.heap.peek().map(|e| e.time)
    }

    /// Removes the earliest event.
    pub(crate) fn pop(&mut self) -> Option<(Time, Popped)> {
        let entry = self.heap.pop()?;
        let popped = match entry.what {
            What::Timer(host) => Popped::Timer(host),
            What::Datagram(stage, slot) => {
                // Invariant: every Datagram entry owns its slab slot until popped here.
                let datagram = self.slab[slot as usize]
                    .take()
                    .expect("a queued datagram's slab slot is filled");
                self.free.push(slot);
                Popped::Datagram(stage, datagram)
            }
        };
        Some((entry.time, popped))
    }

    /// Pending events, stale timers included.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    fn push(&mut self, time: Time, what: What) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Entry { time, seq, what });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(tag: u8) -> Datagram {
        let ep: Endpoint = "198.51.100.1/1".parse().unwrap();
        Datagram {
            sender: None,
            from: ep,
            to: ep,
            receiver: None,
            lan: false,
            bytes: vec![tag],
        }
    }

    fn tag(p: Popped) -> u8 {
        match p {
            Popped::Datagram(_, d) => d.bytes[0],
            Popped::Timer(host) => 100 + host.0 as u8,
        }
    }

    #[test]
    fn earliest_first_and_ties_in_push_order() {
        let mut q = Queue::default();
        let t = Time::from_millis;
        q.push_datagram(t(5), Stage::Deliver, datagram(1));
        q.push_datagram(t(1), Stage::Transit, datagram(2));
        q.push_timer(t(5), HostId(0));
        q.push_datagram(t(5), Stage::Deliver, datagram(3));
        q.push_datagram(t(1), Stage::Deliver, datagram(4));
        assert_eq!(q.peek_time(), Some(t(1)));
        let order: Vec<(Time, u8)> = std::iter::from_fn(|| q.pop())
            .map(|(time, p)| (time, tag(p)))
            .collect();
        assert_eq!(
            order,
            vec![(t(1), 2), (t(1), 4), (t(5), 1), (t(5), 100), (t(5), 3)]
        );
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn entries_stay_small() {
        assert_eq!(std::mem::size_of::<Entry>(), 24);
    }

    #[test]
    fn slab_slots_are_reused() {
        let mut q = Queue::default();
        for round in 0..10u8 {
            q.push_datagram(
                Time::from_millis(u64::from(round)),
                Stage::Transit,
                datagram(round),
            );
            let (_, p) = q.pop().unwrap();
            assert_eq!(tag(p), round);
        }
        assert_eq!(q.slab.len(), 1);
    }
}
