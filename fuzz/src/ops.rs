//! Turning fuzzer bytes into a sequence of operations on a core, and back.
//!
//! Both core targets read their input as a list of [`Op`]s. Decoding never fails: it
//! reads what it can and stops at the end of the input (missing bytes end the list), so
//! every byte string is a valid program and libFuzzer's mutations stay meaningful.
//! [`Op::encode`] is the exact inverse, used to write seed corpora from a recorded
//! trace; `decode(encode(ops)) == ops` for ops within the documented ranges.
//! [`Feed`] turns the datagram ops into the datagrams a core receives, the same way for
//! both core targets.
//!
//! ```text
//! op byte % 7:
//!   0 Deliver   index u8                         a recorded datagram, as recorded
//!   1 Mutate    index u8 | from u8 | n u8 | n × (edit u8 | pos u16 | value u8)
//!   2 Raw       from u8 | len u16 | bytes        arbitrary bytes (up to len, rest of input)
//!   3 Advance   flags u8 | delta u32             bit 0: call handle_timeout;
//!                                                bit 1: delta in ms, else µs
//!   4 Fragments index u8 | from u8 | mtu u16 | id u64 | n u8 | n × pick u8
//!   5 Splice    index u8 | from u8 | keep u8 | len u16 | bytes
//!   6 Command   kind u8 | target u8 | len u16    node only (a root ignores it)
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use skylan::crypto::PublicIdentity;
use skylan::crypto::guard::{MacKeys, write_macs};
use skylan::types::Endpoint;
use skylan::wire::{self, FRAGMENT_OVERHEAD};

use super::scenario::{Scenario, Trace};

/// At most this many ops are run per input, so one input cannot run for long.
pub const MAX_OPS: usize = 512;
/// Longest byte string a `Raw` or `Splice` op carries.
pub const MAX_BYTES: usize = 4096;
/// Most edits in one `Mutate` op.
pub const MAX_EDITS: usize = 8;
/// Most fragments delivered by one `Fragments` op.
pub const MAX_PICKS: usize = 32;
/// Most HandshakeInit datagrams delivered per input; later ones are skipped. Each
/// costs the responder several X25519 operations, which under coverage instrumentation
/// dominate the run time, and a flood of them finds nothing a few do not.
pub const MAX_HANDSHAKE_INITS: usize = 24;

/// True for a datagram that would make a core answer a handshake (see
/// [`MAX_HANDSHAKE_INITS`]).
pub fn is_handshake_init(bytes: &[u8]) -> bool {
    wire::Header::parse(bytes).is_ok_and(|h| h.kind == wire::Kind::HandshakeInit)
}

/// True when `answer` is the one answer an unauthenticated datagram may get: a 16-byte
/// SessionUnknown sent back to where `input` came from, to its claimed source, and
/// (for a Data packet) naming its receiver index. A Fragment that completes a Data
/// packet gets the same answer for the reassembled packet.
pub fn is_session_unknown_answer(
    input: &[u8],
    from: Endpoint,
    answer: &skylan::types::Transmit,
) -> bool {
    let Ok((h, outer)) = wire::parse(input) else {
        return false;
    };
    let Ok((a, wire::Outer::SessionUnknown { receiver_index })) = wire::parse(&answer.contents)
    else {
        return false;
    };
    let index_ok = match outer {
        wire::Outer::Data {
            receiver_index: i, ..
        } => i == receiver_index,
        wire::Outer::Fragment { .. } => true,
        _ => false,
    };
    answer.destination == from
        && index_ok
        && (a.dest, a.src, a.hops) == (h.src, h.dest, 0)
        && answer.contents.len() == wire::HEADER_LEN + 4
}

/// A reader over the fuzzer's bytes that returns `None` at the end.
pub struct Cursor<'a> {
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    /// Reads `data` from its start.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.data.split_first_chunk::<N>()?;
        self.data = rest;
        Some(*head)
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }

    /// Up to `len` bytes: fewer when the input ends first.
    fn bytes(&mut self, len: usize) -> &'a [u8] {
        let n = len.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }
}

/// One change to a recorded datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edit {
    /// What to do (`kind % 6`): 0 xor, 1 set, 2 truncate, 3 insert, 4 remove, 5 set the
    /// hop bits.
    pub kind: u8,
    /// Where (modulo the length).
    pub pos: u16,
    /// The byte to use.
    pub value: u8,
}

impl Edit {
    /// Applies the edit to `bytes`.
    pub fn apply(&self, bytes: &mut Vec<u8>) {
        let len = bytes.len();
        let at = if len == 0 { 0 } else { self.pos as usize % len };
        match self.kind % 6 {
            0 if len > 0 => bytes[at] ^= self.value.max(1),
            1 if len > 0 => bytes[at] = self.value,
            2 => bytes.truncate(at),
            3 => bytes.insert(at.min(len), self.value),
            4 if len > 0 => {
                let end = (at + 1 + self.value as usize % 16).min(len);
                bytes.drain(at..end);
            }
            5 if len > 1 => bytes[1] = (bytes[1] & !0x07) | (self.value & 0x07),
            _ => {}
        }
    }
}

/// A command to the node core (see [`Op::Command`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command {
    /// `kind % 4`: 0 ping, 1 send a frame of `len` bytes, 2 join, 3 leave.
    pub kind: u8,
    /// Which address (ping, frame) or network (join, leave), chosen by the target.
    pub target: u8,
    /// Frame length.
    pub len: u16,
}

/// One operation on a core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Deliver recorded datagram `index` (modulo their number) as it was recorded.
    Deliver {
        /// Which recorded datagram.
        index: u8,
    },
    /// Deliver a recorded datagram after `edits`, from the endpoint `from` selects.
    Mutate {
        /// Which recorded datagram.
        index: u8,
        /// Source endpoint selector; 0 means the recorded one.
        from: u8,
        /// Changes, applied in order.
        edits: Vec<Edit>,
    },
    /// Deliver arbitrary bytes.
    Raw {
        /// Source endpoint selector.
        from: u8,
        /// The datagram.
        bytes: Vec<u8>,
    },
    /// Move the clock forward, and maybe call `handle_timeout`.
    Advance {
        /// Bit 0: call `handle_timeout`; bit 1: `delta` is in milliseconds.
        flags: u8,
        /// How far.
        delta: u32,
    },
    /// Re-fragment a recorded datagram and deliver some of the fragments.
    Fragments {
        /// Which recorded datagram.
        index: u8,
        /// Source endpoint selector; 0 means the recorded one.
        from: u8,
        /// Largest fragment.
        mtu: u16,
        /// Packet ID of the fragments.
        id: u64,
        /// Fragments to deliver, in order (each modulo the count); empty means all.
        picks: Vec<u8>,
    },
    /// The first `keep` bytes of a recorded datagram followed by `bytes`.
    Splice {
        /// Which recorded datagram.
        index: u8,
        /// Source endpoint selector; 0 means the recorded one.
        from: u8,
        /// How many bytes of the recorded datagram to keep.
        keep: u8,
        /// What follows them.
        bytes: Vec<u8>,
    },
    /// A command to the node core.
    Command(Command),
}

impl Op {
    /// The next op, or `None` at the end of the input.
    pub fn decode(c: &mut Cursor<'_>) -> Option<Op> {
        Some(match c.u8()? % 7 {
            0 => Op::Deliver { index: c.u8()? },
            1 => {
                let index = c.u8()?;
                let from = c.u8()?;
                let n = c.u8()? as usize % (MAX_EDITS + 1);
                let mut edits = Vec::with_capacity(n);
                for _ in 0..n {
                    edits.push(Edit {
                        kind: c.u8()?,
                        pos: c.u16()?,
                        value: c.u8()?,
                    });
                }
                Op::Mutate { index, from, edits }
            }
            2 => {
                let from = c.u8()?;
                let len = c.u16()? as usize % (MAX_BYTES + 1);
                Op::Raw {
                    from,
                    bytes: c.bytes(len).to_vec(),
                }
            }
            3 => Op::Advance {
                flags: c.u8()?,
                delta: c.u32()?,
            },
            4 => {
                let index = c.u8()?;
                let from = c.u8()?;
                let mtu = c.u16()?;
                let id = c.u64()?;
                let n = c.u8()? as usize % (MAX_PICKS + 1);
                let picks = c.bytes(n).to_vec();
                Op::Fragments {
                    index,
                    from,
                    mtu,
                    id,
                    picks,
                }
            }
            5 => {
                let index = c.u8()?;
                let from = c.u8()?;
                let keep = c.u8()?;
                let len = c.u16()? as usize % (MAX_BYTES + 1);
                Op::Splice {
                    index,
                    from,
                    keep,
                    bytes: c.bytes(len).to_vec(),
                }
            }
            _ => Op::Command(Command {
                kind: c.u8()?,
                target: c.u8()?,
                len: c.u16()?,
            }),
        })
    }

    /// Appends the op's encoding to `out` (the inverse of [`Op::decode`]).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Op::Deliver { index } => out.extend([0, *index]),
            Op::Mutate { index, from, edits } => {
                out.extend([1, *index, *from, edits.len() as u8]);
                for e in edits {
                    out.push(e.kind);
                    out.extend(e.pos.to_be_bytes());
                    out.push(e.value);
                }
            }
            Op::Raw { from, bytes } => {
                out.extend([2, *from]);
                out.extend((bytes.len() as u16).to_be_bytes());
                out.extend_from_slice(bytes);
            }
            Op::Advance { flags, delta } => {
                out.extend([3, *flags]);
                out.extend(delta.to_be_bytes());
            }
            Op::Fragments {
                index,
                from,
                mtu,
                id,
                picks,
            } => {
                out.extend([4, *index, *from]);
                out.extend(mtu.to_be_bytes());
                out.extend(id.to_be_bytes());
                out.push(picks.len() as u8);
                out.extend_from_slice(picks);
            }
            Op::Splice {
                index,
                from,
                keep,
                bytes,
            } => {
                out.extend([5, *index, *from, *keep]);
                out.extend((bytes.len() as u16).to_be_bytes());
                out.extend_from_slice(bytes);
            }
            Op::Command(c) => {
                out.extend([6, c.kind, c.target]);
                out.extend(c.len.to_be_bytes());
            }
        }
    }

    /// An `Advance` op covering `d` (in µs when it fits, else in ms), calling
    /// `handle_timeout` if `timeout`.
    pub fn advance(d: Duration, timeout: bool) -> Op {
        let flag = u8::from(timeout);
        match u32::try_from(d.as_micros()) {
            Ok(delta) => Op::Advance { flags: flag, delta },
            Err(_) => Op::Advance {
                flags: flag | 2,
                delta: u32::try_from(d.as_millis()).unwrap_or(u32::MAX),
            },
        }
    }
}

/// Where a core target's datagrams come from: the recorded trace of its core, and the
/// source endpoints a selector byte picks from.
///
/// A `Mutate` or `Splice` op that yields a HandshakeInit gets a correct mac1 for the
/// core (anyone can compute it: it is keyed by the core's public key), so mutations
/// reach the handshake behind the mac1 check instead of all stopping there. `Raw`
/// bytes are delivered as they are, which keeps the mac1 refusal itself covered.
pub struct Feed {
    trace: &'static Trace,
    /// The MAC keys of HandshakeInits sent to the core.
    macs: MacKeys,
    /// Strangers first, then every endpoint of the conversation.
    sources: Vec<Endpoint>,
    /// The core's own socket, for `Raw` datagrams.
    local: Endpoint,
}

impl Feed {
    /// The feed of a core whose recorded inputs are `trace`.
    pub fn new(s: &'static Scenario, trace: &'static Trace, core: &PublicIdentity) -> Self {
        let mut sources: Vec<Endpoint> = strangers().to_vec();
        sources.extend(s.endpoints.iter().copied());
        let local = trace.datagrams.first().map_or(sources[0], |r| r.local);
        Feed {
            trace,
            macs: MacKeys::for_responder(core.agreement_key()),
            sources,
            local,
        }
    }

    /// The datagrams `op` delivers, in order, as `(local, from, bytes)`; none for
    /// `Advance` and `Command`, or when the op cannot apply (e.g. a packet too large
    /// to re-fragment at the chosen size).
    pub fn datagrams(&self, op: &Op) -> Vec<(Endpoint, Endpoint, Vec<u8>)> {
        let recorded = |index: u8| {
            let all = &self.trace.datagrams;
            (!all.is_empty()).then(|| &all[index as usize % all.len()])
        };
        let source = |selector: u8, recorded: Option<Endpoint>| match recorded {
            Some(ep) if selector == 0 => ep,
            _ => self.sources[selector as usize % self.sources.len()],
        };
        match op {
            Op::Deliver { index } => recorded(*index)
                .map(|r| (r.local, r.from, r.bytes.clone()))
                .into_iter()
                .collect(),
            Op::Mutate { index, from, edits } => recorded(*index)
                .map(|r| {
                    let mut bytes = r.bytes.clone();
                    for e in edits {
                        e.apply(&mut bytes);
                    }
                    (r.local, source(*from, Some(r.from)), self.with_mac1(bytes))
                })
                .into_iter()
                .collect(),
            Op::Raw { from, bytes } => vec![(self.local, source(*from, None), bytes.clone())],
            Op::Fragments {
                index,
                from,
                mtu,
                id,
                picks,
            } => {
                let wholes = &self.trace.wholes;
                if wholes.is_empty() {
                    return Vec::new();
                }
                let r = &wholes[*index as usize % wholes.len()];
                let max_len = FRAGMENT_OVERHEAD + 1 + *mtu as usize % 1500;
                let Ok(pieces) = wire::fragment(&r.bytes, max_len, *id) else {
                    return Vec::new();
                };
                let from = source(*from, Some(r.from));
                let order: Vec<usize> = if picks.is_empty() {
                    (0..pieces.len()).collect()
                } else {
                    picks.iter().map(|&i| i as usize % pieces.len()).collect()
                };
                order
                    .into_iter()
                    .map(|i| (r.local, from, pieces[i].clone()))
                    .collect()
            }
            Op::Splice {
                index,
                from,
                keep,
                bytes,
            } => recorded(*index)
                .map(|r| {
                    let keep = (*keep as usize).min(r.bytes.len());
                    let mut spliced = r.bytes[..keep].to_vec();
                    spliced.extend_from_slice(bytes);
                    (
                        r.local,
                        source(*from, Some(r.from)),
                        self.with_mac1(spliced),
                    )
                })
                .into_iter()
                .collect(),
            Op::Advance { .. } | Op::Command(_) => Vec::new(),
        }
    }

    /// `bytes` with a correct mac1 (and no mac2) if they are a HandshakeInit.
    fn with_mac1(&self, mut bytes: Vec<u8>) -> Vec<u8> {
        if is_handshake_init(&bytes) {
            write_macs(&mut bytes, &self.macs, None);
        }
        bytes
    }
}

/// Source endpoints the recording never had (a spoofer, a roaming peer).
pub fn strangers() -> [Endpoint; 3] {
    [
        Endpoint(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 66)),
            4444,
        )),
        Endpoint(SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x66)),
            9993,
        )),
        Endpoint(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, 77)),
            1,
        )),
    ]
}

/// Decodes a whole input (at most [`MAX_OPS`] ops).
pub fn decode_all(data: &[u8]) -> Vec<Op> {
    let mut c = Cursor::new(data);
    std::iter::from_fn(|| Op::decode(&mut c))
        .take(MAX_OPS)
        .collect()
}

/// Encodes a list of ops.
pub fn encode_all(ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        op.encode(&mut out);
    }
    out
}

/// The duration an `Advance` op stands for.
pub fn advance_duration(flags: u8, delta: u32) -> Duration {
    if flags & 2 != 0 {
        Duration::from_millis(u64::from(delta))
    } else {
        Duration::from_micros(u64::from(delta))
    }
}
