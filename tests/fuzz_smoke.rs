//! The fuzz targets' harnesses under plain `cargo test`, so CI exercises them without
//! cargo-fuzz: every committed seed, then a few thousand pseudo-random inputs per target
//! (structured operations, mutated seeds and raw bytes) from a fixed seed. Also checks
//! what the core targets rely on: replaying the recorded conversation into fresh cores
//! reproduces it exactly, so the fuzzer's genuine packets really authenticate.
//!
//! The harness source is `fuzz/src/` (the fuzz crate's library), compiled here as a
//! module. Seed corpora are written by the ignored test at the bottom:
//! `cargo test --test fuzz_smoke -- --ignored write_seed_corpora`.
// Tests and examples may use files, sockets, threads and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::path::{Path, PathBuf};

use harness::ops::{self, Command, Edit, Op};
use harness::scenario::{Input, scenario};
use harness::{node, root, world};
use skylan::types::Transmit;

/// Pseudo-random inputs per core target (each runs a fresh core).
const CORE_INPUTS: usize = 2000;
/// Pseudo-random inputs for the world target.
const WORLD_INPUTS: usize = 3000;

#[test]
fn replaying_the_node_trace_reproduces_it_exactly() {
    let s = scenario();
    assert!(
        s.node.datagrams.len() <= 256,
        "Deliver ops name a recorded datagram with one byte; shorten the conversation"
    );
    let mut n = s.fresh_node();
    let mut outputs = Vec::new();
    for (i, input) in s.node.inputs.iter().enumerate() {
        match input {
            Input::Datagram {
                now,
                local,
                from,
                bytes,
            } => n.handle_datagram(*now, *local, *from, bytes),
            Input::Timeout { now } => n.handle_timeout(*now),
            Input::Ping { now, peer } => drop(n.ping(*now, *peer).expect("ping accepted")),
        }
        outputs.extend(std::iter::from_fn(|| n.poll_transmit()).map(|t| (i, t)));
        while n.poll_tap().is_some() {}
        while n.poll_event().is_some() {}
    }
    assert_same_outputs(&outputs, &s.node.outputs);
    // And through the op encoding: every genuine frame and every pong arrives.
    let outcome = node::run_ops(&node::recorded_ops(None));
    assert_eq!(outcome.frames, s.frames.len(), "{outcome:?}");
    assert_eq!(outcome.pongs, 3, "{outcome:?}");
    // Nothing genuine is dropped; only the config requests to the scenario network's
    // controller, which does not exist, are given up (`drop_unreachable`).
    let s = outcome.stats;
    assert_eq!(s.dropped() - s.drop_unreachable, 0, "{outcome:?}");
}

#[test]
fn replaying_the_root_trace_reproduces_it_exactly() {
    let s = scenario();
    assert!(
        s.root.datagrams.len() <= 256,
        "Deliver ops name a recorded datagram with one byte; shorten the conversation"
    );
    let mut r = s.fresh_root();
    let mut outputs = Vec::new();
    for (i, input) in s.root.inputs.iter().enumerate() {
        match input {
            Input::Datagram {
                now,
                local,
                from,
                bytes,
            } => r.handle_datagram(*now, *local, *from, bytes),
            Input::Timeout { now } => r.handle_timeout(*now),
            Input::Ping { .. } => unreachable!("roots take no commands"),
        }
        outputs.extend(std::iter::from_fn(|| r.poll_transmit()).map(|t| (i, t)));
    }
    assert_same_outputs(&outputs, &s.root.outputs);
    let outcome = root::run_ops(&root::recorded_ops(None));
    assert!(outcome.relayed >= 4 && outcome.answers >= 10, "{outcome:?}");
    assert!(outcome.stats.rendezvous >= 2, "{outcome:?}");
}

/// Same datagrams after the same inputs (order within one input may differ: the cores
/// iterate hash maps).
fn assert_same_outputs(got: &[(usize, Transmit)], want: &[(usize, Transmit)]) {
    let key = |v: &[(usize, Transmit)]| {
        let mut k: Vec<(usize, String, Vec<u8>)> = v
            .iter()
            .map(|(i, t)| (*i, t.destination.to_string(), t.contents.clone()))
            .collect();
        k.sort();
        k
    };
    assert_eq!(got.len(), want.len(), "number of datagrams sent");
    assert!(
        key(got) == key(want),
        "a fresh core fed the recorded inputs sent other datagrams: the recording is not \
         deterministic, so the fuzz targets' genuine packets would not authenticate"
    );
}

#[test]
fn node_seeds_and_pseudo_random_inputs_hold_the_invariants() {
    let seeds = committed_seeds("node_datagrams");
    for (_, data) in &seeds {
        node::run(data);
    }
    let mut rng = Rng(0x6e6f6465);
    for _ in 0..CORE_INPUTS {
        node::run(&core_input(&mut rng, &seeds));
    }
}

#[test]
fn root_seeds_and_pseudo_random_inputs_hold_the_invariants() {
    let seeds = committed_seeds("root_datagrams");
    for (_, data) in &seeds {
        root::run(data);
    }
    let mut rng = Rng(0x726f6f74);
    for _ in 0..CORE_INPUTS {
        root::run(&core_input(&mut rng, &seeds));
    }
}

#[test]
fn world_seeds_and_pseudo_random_inputs_hold_the_invariants() {
    let seeds = committed_seeds("world_file");
    let mut parsed = world::Outcome::default();
    for (_, data) in &seeds {
        let o = world::run(data);
        parsed.binary |= o.binary;
        parsed.json |= o.json;
        parsed.template |= o.template;
    }
    assert_eq!(
        parsed,
        world::Outcome {
            binary: true,
            json: true,
            template: true
        },
        "the seeds cover every form"
    );
    let mut rng = Rng(0x776f726c64);
    for _ in 0..WORLD_INPUTS {
        let mut data = match rng.below(4) {
            0 => rng.bytes_below(300),
            _ => seeds[rng.below(seeds.len())].1.clone(),
        };
        mutate_bytes(&mut rng, &mut data);
        world::run(&data);
    }
}

#[test]
fn ops_survive_an_encoding_round_trip() {
    let mut rng = Rng(0x6f7073);
    let mut all = node::recorded_ops(None);
    all.extend(root::recorded_ops(None));
    all.extend((0..2000).map(|_| random_op(&mut rng)));
    for chunk in all.chunks(ops::MAX_OPS) {
        assert_eq!(ops::decode_all(&ops::encode_all(chunk)), chunk);
    }
    // Any bytes decode, and decoding stops at the operation limit.
    for _ in 0..200 {
        let data = rng.bytes_below(4000);
        assert!(ops::decode_all(&data).len() <= ops::MAX_OPS);
    }
}

// ----- single datagrams that must not break a session ------------------------------
//
// Found while building the targets: nothing unauthenticated gets *in*, but one forged
// or replayed datagram could break a handshake. The first two are fixed; the last is
// ignored until it is.

/// A HandshakeResp with garbage Noise bytes but the right receiver index (readable in
/// the clear in our HandshakeInit) must not abort our pending handshake: the genuine
/// response that follows still completes it (as in WireGuard).
#[test]
fn a_forged_handshake_response_does_not_abort_the_handshake() {
    let forged = node::run_ops(&[
        Op::Advance { flags: 1, delta: 0 },
        // Recorded datagram 0 is the root's HandshakeResp: keep header and both
        // indices, replace the 48 Noise bytes.
        Op::Splice {
            index: 0,
            from: 0,
            keep: 20,
            bytes: vec![0x55; 48],
        },
        Op::Deliver { index: 0 },
    ]);
    assert_eq!(forged.stats.drop_auth, 1, "the forgery was refused");
    assert_eq!(
        forged.stats.handshakes, 1,
        "the genuine response still completes the handshake: {:?}",
        forged.stats
    );
}

/// A copy of a peer's HandshakeInit arriving right behind the genuine one must not
/// replace the session the responder just created, or the initiator's first Data
/// packets would name a freed index and be dropped until the silence timer forces a new
/// handshake.
#[test]
fn a_replayed_handshake_init_does_not_break_the_new_session() {
    use skylan::node::Event;
    use skylan::sim::cores::NodeHost;
    use skylan::sim::mesh::{Mesh, Placement};
    use skylan::wire::Kind;
    use std::time::Duration;

    let link = skylan::sim::AccessLink::default();
    let mut m = Mesh::build(21, &[link], &[Placement::Public, Placement::Public], link);
    m.settle();
    let (a, b) = (m.nodes[0], m.nodes[1]);
    let target = m.address(b);
    m.sim.enable_capture();
    let id = m
        .sim
        .with_host::<NodeHost, _>(a, |h, now| h.node.ping(now, target))
        .expect("ping accepted");
    // Let the genuine HandshakeInit reach B, then send B a copy of it.
    let mut replayed = false;
    for _ in 0..100_000 {
        if !m.sim.step() {
            break;
        }
        let init = m.sim.captured().iter().find(|c| {
            c.receiver == b
                && skylan::wire::parse(&c.bytes).is_ok_and(|(h, _)| h.kind == Kind::HandshakeInit)
        });
        if let Some(init) = init.cloned() {
            m.sim.replay(&init);
            replayed = true;
            break;
        }
    }
    assert!(replayed, "saw A's HandshakeInit to B");
    let answered = m.sim.run_until_true(Duration::from_secs(5), |s| {
        s.host::<NodeHost>(a)
            .events
            .iter()
            .any(|e| matches!(e, Event::Pong { id: got, .. } if *got == id))
    });
    assert!(
        answered,
        "the ping is answered despite the replayed HandshakeInit"
    );
}

/// The hop count is not authenticated (relays change it), yet `Node::on_echo_reply`
/// trusts it: a direct answer whose hop bits were set on the way, arriving from an
/// endpoint that is no root's, yields `Event::Pong { link: AccessLink::Relay(peer) }`,
/// "relayed through" the peer itself, a leaf (`root_at(from).unwrap_or(peer)`). The
/// node fuzz target found it; it counts these instead of failing until this is fixed.
#[test]
#[ignore = "known weakness: forged hop bits make a pong claim a relay through a leaf"]
fn a_pong_never_claims_a_relay_through_a_leaf() {
    let s = scenario();
    let trace = node::recorded_ops(None);
    let mut tried = 0;
    for (i, d) in s.node.datagrams.iter().enumerate() {
        let Ok((h, _)) = skylan::wire::parse(&d.bytes) else {
            continue;
        };
        if h.src != s.peer || h.hops != 0 {
            continue;
        }
        tried += 1;
        // The same trace, but this one datagram arrives with one hop, from a stranger.
        let ops: Vec<Op> = trace
            .iter()
            .map(|op| match op {
                Op::Deliver { index } if *index as usize == i => Op::Mutate {
                    index: *index,
                    from: 1,
                    edits: vec![Edit {
                        kind: 5,
                        pos: 0,
                        value: 1,
                    }],
                },
                other => other.clone(),
            })
            .collect();
        let outcome = node::run_ops(&ops);
        assert_eq!(
            outcome.relayed_by_leaf, 0,
            "datagram {i} with forged hops made a pong claim a relay through a leaf"
        );
    }
    assert!(tried > 0, "the trace has direct datagrams from the peer");
}

// ----- inputs ---------------------------------------------------------------------

/// The committed seeds of `target` (there must be some).
fn committed_seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("no seed corpus at {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
        })
        .map(|p| {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&p).expect("readable seed"))
        })
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seed-* files in {}", dir.display());
    seeds
}

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// One input for a core target: structured random ops, a mutated seed (cut short, with
/// ops appended), or raw bytes.
fn core_input(rng: &mut Rng, seeds: &[(String, Vec<u8>)]) -> Vec<u8> {
    match rng.below(8) {
        0 => rng.bytes_below(200),
        1..=3 => {
            let n = rng.below(40);
            ops::encode_all(&(0..n).map(|_| random_op(rng)).collect::<Vec<_>>())
        }
        _ => {
            let ops_in_seed = ops::decode_all(&seeds[rng.below(seeds.len())].1);
            let keep = rng.below(ops_in_seed.len() + 1);
            let mut ops: Vec<Op> = ops_in_seed.into_iter().take(keep).collect();
            let extra = rng.below(12);
            ops.extend((0..extra).map(|_| random_op(rng)));
            let mut data = ops::encode_all(&ops);
            if rng.below(4) == 0 {
                mutate_bytes(rng, &mut data);
            }
            data
        }
    }
}

fn random_op(rng: &mut Rng) -> Op {
    let index = rng.byte();
    let from = if rng.below(2) == 0 { 0 } else { rng.byte() };
    match rng.below(9) {
        0 | 1 => Op::Deliver { index },
        2 => Op::Mutate {
            index,
            from,
            edits: (0..1 + rng.below(3))
                .map(|_| Edit {
                    kind: rng.byte(),
                    pos: rng.below(1600) as u16,
                    value: rng.byte(),
                })
                .collect(),
        },
        3 => Op::Raw {
            from,
            bytes: rng.bytes_below(100),
        },
        4 => Op::Advance {
            flags: rng.byte() & 3,
            delta: match rng.below(3) {
                0 => rng.below(2_000_000) as u32,
                1 => rng.below(700_000) as u32,
                _ => rng.next() as u32,
            },
        },
        5 => Op::Fragments {
            index,
            from,
            mtu: rng.below(1600) as u16,
            id: rng.next(),
            picks: rng.bytes_below(6),
        },
        6 => Op::Splice {
            index,
            from,
            keep: rng.below(40) as u8,
            bytes: rng.bytes_below(120),
        },
        _ => Op::Command(Command {
            kind: rng.byte(),
            target: rng.byte(),
            len: rng.below(3000) as u16,
        }),
    }
}

fn mutate_bytes(rng: &mut Rng, data: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(4) {
            0 if at < data.len() => data[at] ^= 1 << rng.below(8),
            1 if at < data.len() => data[at] = rng.byte(),
            2 => data.insert(at, rng.byte()),
            _ => data.truncate(at.max(data.len().saturating_sub(8))),
        }
    }
}

/// splitmix64: a fixed, dependency-free stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    /// Random bytes, fewer than `n` of them.
    fn bytes_below(&mut self, n: usize) -> Vec<u8> {
        let len = self.below(n);
        (0..len).map(|_| self.byte()).collect()
    }
}

// ----- seed corpora -----------------------------------------------------------------

/// Writes `fuzz/corpus/<target>/seed-*` from the recorded conversation. Run it after a
/// protocol change and commit the result:
/// `cargo test --test fuzz_smoke -- --ignored write_seed_corpora`
#[test]
#[ignore]
fn write_seed_corpora() {
    let s = scenario();
    let node_len = s.node.inputs.len();
    let mut node_seeds = vec![("replay-all".to_string(), node::recorded_ops(None))];
    for quarter in 1..4 {
        let n = node_len * quarter / 4;
        node_seeds.push((format!("replay-{quarter}of4"), node::recorded_ops(Some(n))));
    }
    node_seeds.push(("replay-then-attack".into(), {
        let mut ops = node::recorded_ops(None);
        ops.extend(attacks(s.node.datagrams.len(), s.node.wholes.len()));
        ops
    }));
    node_seeds.push(("commands".into(), commands()));
    write_corpus("node_datagrams", &encode(node_seeds));

    let root_len = s.root.inputs.len();
    let mut root_seeds = vec![("replay-all".to_string(), root::recorded_ops(None))];
    for half in 1..2 {
        root_seeds.push((
            format!("replay-{half}of2"),
            root::recorded_ops(Some(root_len / 2)),
        ));
    }
    root_seeds.push(("replay-then-attack".into(), {
        let mut ops = root::recorded_ops(None);
        ops.extend(attacks(s.root.datagrams.len(), s.root.wholes.len()));
        ops
    }));
    write_corpus("root_datagrams", &encode(root_seeds));

    let world_seeds: Vec<(String, Vec<u8>)> = world::seeds()
        .into_iter()
        .map(|(name, data)| (name.to_string(), data))
        .collect();
    write_corpus("world_file", &world_seeds);
}

fn encode(seeds: Vec<(String, Vec<Op>)>) -> Vec<(String, Vec<u8>)> {
    seeds
        .into_iter()
        .map(|(name, ops)| {
            assert!(ops.len() <= ops::MAX_OPS, "seed {name} has too many ops");
            (name, ops::encode_all(&ops))
        })
        .collect()
}

/// What an attacker on the path would try after a genuine conversation: replays,
/// bit flips, hop changes, re-fragmenting, spliced garbage, time jumps.
fn attacks(datagrams: usize, wholes: usize) -> Vec<Op> {
    let mut ops = Vec::new();
    let n = datagrams.min(256);
    ops.extend((0..n).step_by(3).map(|i| Op::Deliver { index: i as u8 }));
    for i in (0..n).step_by(5) {
        ops.push(Op::Mutate {
            index: i as u8,
            from: 0,
            edits: vec![Edit {
                kind: 0,
                pos: 30 + i as u16,
                value: 0x40,
            }],
        });
        ops.push(Op::Mutate {
            index: i as u8,
            from: 1,
            edits: vec![Edit {
                kind: 5,
                pos: 0,
                value: 1,
            }],
        });
    }
    for i in (0..wholes.min(256)).step_by(7) {
        ops.push(Op::Fragments {
            index: i as u8,
            from: 0,
            mtu: 40,
            id: i as u64,
            picks: vec![],
        });
    }
    for i in (0..n).step_by(11) {
        ops.push(Op::Splice {
            index: i as u8,
            from: 0,
            keep: 24,
            bytes: vec![0xa5; 40],
        });
    }
    ops.push(Op::Raw {
        from: 2,
        bytes: vec![3, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    });
    ops.push(Op::advance(std::time::Duration::from_secs(200), true));
    ops.push(Op::advance(std::time::Duration::from_secs(700), true));
    ops.extend((0..n).step_by(9).map(|i| Op::Deliver { index: i as u8 }));
    ops
}

/// Commands alone: pings and frames to every target, joins and leaves, with timers.
fn commands() -> Vec<Op> {
    let mut ops = Vec::new();
    for target in 0..8u8 {
        for kind in 0..4u8 {
            ops.push(Op::Command(Command {
                kind,
                target,
                len: 100 + 1000 * u16::from(target),
            }));
        }
        ops.push(Op::advance(std::time::Duration::from_millis(700), true));
    }
    ops.push(Op::advance(std::time::Duration::from_secs(11), true));
    ops
}

fn write_corpus(target: &str, seeds: &[(String, Vec<u8>)]) {
    let dir = corpus_dir(target);
    std::fs::create_dir_all(&dir).expect("create the corpus directory");
    for entry in std::fs::read_dir(&dir).expect("list the corpus").flatten() {
        if entry.file_name().to_string_lossy().starts_with("seed-") {
            std::fs::remove_file(entry.path()).expect("remove an old seed");
        }
    }
    for (name, data) in seeds {
        std::fs::write(dir.join(format!("seed-{name}")), data).expect("write a seed");
    }
}
