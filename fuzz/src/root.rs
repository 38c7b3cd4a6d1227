//! The `root_datagrams` target: a root core fed recorded genuine traffic, mutated
//! traffic, arbitrary datagrams and timers, with its invariants checked after every
//! operation.
//!
//! The root is `R` of the [recorded conversation](super::scenario), rebuilt fresh for
//! every input. Invariants (a violation panics):
//!
//! - **Relaying never amplifies**: a datagram for another node leaves at most once,
//!   byte for byte the same except the hop count, which grows by one and stays under
//!   the root's hop limit. Besides it the root may send at most two RENDEZVOUS (only
//!   for a packet that arrived with zero hops). Over the whole run, relayed bytes never
//!   exceed received bytes.
//! - **Answers go back**: a datagram for the root itself gets at most one answer, sent
//!   to where it came from; a handshake answer is smaller than the handshake.
//! - **Unauthenticated input causes no output of its own**: a datagram that does not
//!   parse, or that the root drops before authentication, makes it send nothing.
//! - **No directory entries for strangers**: only nodes that completed a handshake
//!   (the two of the conversation) are ever known.
//! - Timers never send anything.
//!
//! Input is read as [operations](super::ops); at most
//! [`MAX_HANDSHAKE_INITS`](super::ops::MAX_HANDSHAKE_INITS) HandshakeInit datagrams are
//! delivered per input, to keep runs fast.

use std::collections::HashSet;

use skylan::root::{RELAY_HOP_LIMIT, Root, RootStats};
use skylan::types::{Endpoint, Time, Transmit};
use skylan::wire::{self, Kind};

use super::ops::{self, Feed, Op};
use super::scenario::{Input, Scenario, scenario};

/// Largest RENDEZVOUS datagram: prefix 24, verb 1, address 5, count 1, two endpoints
/// (the peer's last one of each family, up to 19 bytes each), tag 16.
const MAX_RENDEZVOUS_LEN: usize = 24 + 1 + 5 + 1 + 2 * 19 + 16;

/// What one run did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Datagrams relayed.
    pub relayed: usize,
    /// Answers the root sent to datagrams addressed to it.
    pub answers: usize,
    /// The root's counters at the end.
    pub stats: RootStats,
}

/// Runs one fuzz input.
pub fn run(data: &[u8]) -> Outcome {
    run_ops(&ops::decode_all(data))
}

/// Runs a list of operations.
pub fn run_ops(ops: &[Op]) -> Outcome {
    let mut h = Harness::new(scenario());
    for op in ops {
        h.apply(op);
    }
    h.outcome.stats = *h.root.stats();
    h.outcome
}

/// The ops that replay `R`'s first `inputs` recorded inputs exactly (all if `None`).
pub fn recorded_ops(inputs: Option<usize>) -> Vec<Op> {
    let s = scenario();
    let mut ops = Vec::new();
    let mut now = s.start;
    let mut datagram = 0usize;
    for input in s.root.inputs.iter().take(inputs.unwrap_or(usize::MAX)) {
        let t = input.now();
        if t > now {
            ops.push(Op::advance(t.since(now), false));
            now = t;
        }
        match input {
            Input::Datagram { .. } => {
                ops.push(Op::Deliver {
                    index: datagram as u8,
                });
                datagram += 1;
            }
            Input::Timeout { .. } | Input::Ping { .. } => {
                ops.push(Op::Advance { flags: 1, delta: 0 })
            }
        }
    }
    ops
}

struct Harness {
    s: &'static Scenario,
    root: Root,
    now: Time,
    feed: Feed,
    /// Where the root may send: the conversation's endpoints and every source it saw.
    allowed: HashSet<Endpoint>,
    bytes_in: usize,
    bytes_relayed: usize,
    /// HandshakeInit datagrams still allowed in this input.
    inits_left: usize,
    outcome: Outcome,
}

impl Harness {
    fn new(s: &'static Scenario) -> Self {
        Harness {
            s,
            root: s.fresh_root(),
            now: s.start,
            feed: Feed::new(s, &s.root, s.root_identity.public()),
            allowed: s.endpoints.iter().copied().collect(),
            bytes_in: 0,
            bytes_relayed: 0,
            inits_left: ops::MAX_HANDSHAKE_INITS,
            outcome: Outcome::default(),
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Advance { flags, delta } => {
                self.now = self.now + ops::advance_duration(*flags, *delta);
                if flags & 1 != 0 {
                    self.root.handle_timeout(self.now);
                    assert!(
                        self.root.poll_transmit().is_none(),
                        "a timer made the root send"
                    );
                }
            }
            // A root takes no commands.
            Op::Command(_) => {}
            _ => {
                for (local, from, bytes) in self.feed.datagrams(op) {
                    self.datagram(local, from, &bytes);
                }
            }
        }
    }

    fn datagram(&mut self, local: Endpoint, from: Endpoint, bytes: &[u8]) {
        if ops::is_handshake_init(bytes) {
            if self.inits_left == 0 {
                return;
            }
            self.inits_left -= 1;
        }
        self.allowed.insert(from);
        let before = *self.root.stats();
        self.root.handle_datagram(self.now, local, from, bytes);
        let after = *self.root.stats();
        let out: Vec<Transmit> = std::iter::from_fn(|| self.root.poll_transmit()).collect();
        for t in &out {
            assert!(
                self.allowed.contains(&t.destination),
                "sent to an endpoint nobody gave the root: {}",
                t.destination
            );
        }
        self.bytes_in += bytes.len();
        let me = self.root.address();
        let header = match wire::parse(bytes) {
            Ok((header, _)) => header,
            Err(_) => {
                assert!(out.is_empty(), "the root answered garbage: {out:?}");
                return;
            }
        };
        if header.dest != me {
            let mut relayed = 0;
            for t in &out {
                if is_relayed_copy(bytes, &t.contents) {
                    relayed += 1;
                    assert!(
                        header.hops < RELAY_HOP_LIMIT,
                        "relayed a packet at the hop limit"
                    );
                    self.bytes_relayed += t.contents.len();
                } else {
                    self.check_rendezvous(t, header.hops);
                }
            }
            assert!(relayed <= 1, "one datagram relayed {relayed} times");
            assert!(out.len() <= 1 + 2, "relaying sent {} datagrams", out.len());
            self.outcome.relayed += relayed;
        } else {
            let refused = pre_auth_drops(&after) > pre_auth_drops(&before);
            assert!(
                !refused
                    || out.is_empty()
                    || (out.len() == 1 && ops::is_session_unknown_answer(bytes, from, &out[0])),
                "an unauthenticated datagram was answered: {out:?}"
            );
            assert!(out.len() <= 1, "one datagram got {} answers", out.len());
            for t in &out {
                assert_eq!(t.destination, from, "answer sent elsewhere");
                let (h, _) = wire::parse(&t.contents).expect("the root's answer parses");
                assert_eq!((h.src, h.dest, h.hops), (me, header.src, 0));
                if header.kind == Kind::HandshakeInit {
                    assert!(t.contents.len() < bytes.len(), "handshake answer amplifies");
                }
            }
            self.outcome.answers += out.len();
        }
        assert!(
            self.bytes_relayed <= self.bytes_in,
            "relayed {} bytes of {} received",
            self.bytes_relayed,
            self.bytes_in
        );
        let known = [self.s.node_address(), self.s.peer].len();
        assert!(
            self.root.node_count() <= known,
            "the root knows {} nodes; only {known} ever handshaked",
            self.root.node_count()
        );
    }

    fn check_rendezvous(&self, t: &Transmit, hops: u8) {
        assert_eq!(hops, 0, "RENDEZVOUS for a packet that was relayed already");
        assert!(
            t.contents.len() <= MAX_RENDEZVOUS_LEN,
            "relaying also sent {} bytes that are no RENDEZVOUS",
            t.contents.len()
        );
        let (h, _) = wire::parse(&t.contents).expect("the root's RENDEZVOUS parses");
        assert_eq!(h.kind, Kind::Data);
        assert_eq!(h.src, self.root.address());
    }
}

/// True when `out` is `input` with the hop count incremented.
fn is_relayed_copy(input: &[u8], out: &[u8]) -> bool {
    input.len() == out.len()
        && input.len() > 1
        && input[0] == out[0]
        && input[2..] == out[2..]
        && out[1] & 0x07 == (input[1] & 0x07) + 1
        && out[1] & !0x07 == input[1] & !0x07
}

/// Drops that happen before a packet is authenticated.
fn pre_auth_drops(s: &RootStats) -> u64 {
    s.drop_malformed + s.drop_handshake + s.drop_unknown_session + s.drop_replay + s.drop_auth
}
