//! The wire layer: byte layouts of every skylan datagram and of the messages inside
//! encrypted ones, fragmentation of large datagrams, and bounded reassembly.
//!
//! This module owns the bytes and nothing else: it knows no keys, no peers and no
//! clock. It is called by the node core (`node`), the root core (`root`), `crypto`
//! (for the Data AAD), the fuzzers and the benches. Parsing never panics and never
//! allocates for the hot path (outer packets, `Frame` and `Echo` messages borrow from
//! the input); errors are the small [`WireError`].
//!
//! # Outer packet
//!
//! Every UDP datagram starts with a 12-byte header sent in clear, so a root can relay
//! a packet by looking only at the destination, without any key. All integers on the
//! wire are big-endian. Over the TCP fallback (a node whose UDP is blocked, to a root's
//! TCP port 443; `io::tcp`) the same datagrams travel as a 2-byte length followed by
//! the datagram's bytes, nothing else added.
//!
//! ```text
//! 0        1        2                                      7                                      12
//! +--------+--------+--------------------------------------+--------------------------------------+
//! |  kind  | flags  |      destination node address (5)    |        source node address (5)       |
//! +--------+--------+--------------------------------------+--------------------------------------+
//!
//! flags:   7   6   5   4   3   2   1   0
//!        +---+---+---+---+---+---+---+---+
//!        |     reserved      |   hops    |   hops: relays increment it (0..=7)
//!        +---+---+---+---+---+---+---+---+   reserved: sent as 0, ignored on receipt
//! ```
//!
//! What follows the header depends on `kind`:
//!
//! ```text
//! 0x01 HandshakeInit   12 +----------------+-----------------------------+---------+---------+
//!                         | sender_index 4 | Noise IK message 1 (opaque) | mac1 16 | mac2 16 |
//!                         +----------------+-----------------------------+---------+---------+
//! 0x02 HandshakeResp   12 +----------------+------------------+-----------------+
//!                         | sender_index 4 | receiver_index 4 | Noise IK msg 2  |
//!                         +----------------+------------------+-----------------+
//! 0x03 Data            12 +------------------+-----------+----------------------+--------+
//!                         | receiver_index 4 | counter 8 | ciphertext (≥ 0)     | tag 16 |
//!                         +------------------+-----------+----------------------+--------+
//! 0x04 Fragment        12 +--------------+---------+---------+------------------+
//!                         | packet_id 8  | index 1 | count 1 | chunk (≥ 1)      |
//!                         +--------------+---------+---------+------------------+
//! 0x05 SessionUnknown  12 +------------------+
//!                         | receiver_index 4 |  "a Data packet to this index found
//!                         +------------------+   no session here": handshake again
//! 0x06 CookieReply     12 +------------------+----------+------------------------+
//!                         | receiver_index 4 | nonce 24 | sealed cookie 16 + 16  |
//!                         +------------------+----------+------------------------+
//! other                   the header parses as `Kind::Unknown(n)`; roots relay it,
//!                         nodes drop and count it.
//! ```
//!
//! # Which bytes are authenticated
//!
//! Only Data packets are authenticated by this layer's layout. The AEAD
//! (ChaCha20-Poly1305) covers the ciphertext and, as associated data, the first
//! [`DATA_PREFIX_LEN`] = 24 bytes (header, receiver index, counter) **with the flags
//! byte replaced by zero** ([`data_aad`]). The flags byte is the one byte a relay
//! changes (it increments `hops`), so it is left out; everything else a relay could
//! tamper with — kind, both addresses, index, counter — is bound to the ciphertext.
//! The nonce is 4 zero bytes followed by the counter as a little-endian u64
//! (WireGuard's layout), although the counter field itself is big-endian.
//!
//! Handshake bodies are protected by Noise itself; this layer does not bind their
//! header, so `crypto` must check the claimed source address against the identity
//! the handshake proves. The two MACs that end a HandshakeInit (protocol 2) cover
//! every byte before them except the flags byte; they are not authentication but
//! cost control: mac1 (keyed by the responder's public key) lets a responder drop
//! junk with one hash, and mac2 (keyed by a cookie bound to the sender's IP address
//! and port) is demanded only under load. A CookieReply carries that cookie sealed with
//! the HandshakeInit's mac1 as associated data; it is 72 bytes, smaller than the
//! 226-byte HandshakeInit it answers. `crypto::guard` has the details. SessionUnknown is not authenticated: a node acts on it only
//! when its index is that of the session it sends with (which off-path senders cannot
//! know), and then only by handshaking again, at most once per
//! rekey timeout (5 s); it is 16 bytes, smaller
//! than the Data packet it answers, and rate-limited per source node, so it cannot
//! amplify. Unknown kinds are not authenticated. Fragment headers are
//! not authenticated at all: a forged fragment can at worst spoil a reassembly, and
//! the reassembled Data packet is authenticated as a whole. The reassembler's memory is
//! bounded so a flood of forged fragments cannot exhaust it, and its partial packets
//! are kept per sender so forged ones cannot evict a peer's ([`Reassembler`]).
//!
//! # Inner messages
//!
//! The plaintext of a Data packet is `verb u8 | payload` ([`Message`]):
//!
//! ```text
//! verb  name                   payload
//! 0x01  Hello                  proto_version 1 | major 1 | minor 1 | patch 2 |
//!                              timestamp 8 (sender µs, echoed in OK) |
//!                              world_id 8 | world_timestamp 8
//! 0x02  Error                  in_re_verb 1 | in_re_counter 8 | code 1 | payload (rest)
//! 0x03  Ok                     in_re_verb 1 | in_re_counter 8 | body by in_re_verb:
//!                                Hello: timestamp 8 | proto 1 | major 1 | minor 1 |
//!                                       patch 2 | observed endpoint
//!                                Whois: count 1 | count × identity (69:
//!                                       address 5 | ed25519 32 | x25519 32)
//!                                Echo:  the echoed bytes (rest, ≤ 256)
//!                                PathProbe: token 4
//!                                WorldRequest: one signed world (rest: `world`'s
//!                                       binary form with its signature)
//!                                MulticastGather: network id 8 | group 10 |
//!                                       total 4 | count 2 (≤ 1024) |
//!                                       count × node address 5
//!                                other: raw bytes (rest)
//! 0x04  Whois                  count 1 | count × node address 5
//! 0x05  Rendezvous             peer address 5 | count 1 | count × endpoint
//!                              (a root sends the peer's last endpoint of each
//!                              family it heard from: one or two)
//! 0x06  Frame                  network id 8 | flags 1 | Ethernet frame (rest:
//!                              dst mac 6 | src mac 6 | ethertype 2 | payload);
//!                              flags bit 0: FRAME_FORWARDED (a rule's copy or
//!                              redirection), other bits 0
//! 0x07  Echo                   bytes (rest, ≤ 256)
//! 0x08  MulticastLike          count 1 | count × (network id 8 | group 10): node →
//!                              root, "my TAP listens to these groups"; kept by the
//!                              root until it expires (`root::multicast`), so nodes
//!                              repeat them
//! 0x09  NetworkConfigRequest   network id 8 | revision 8 (the config the member holds,
//!                              0 for none)
//! 0x0a  NetworkConfig          network id 8 | signed config (rest, opaque here:
//!                              `controller::SignedNetworkConfig`); the answer to a
//!                              request, and pushed when the config changes. A refusal
//!                              is an Error in re NetworkConfigRequest (code 3 or 7,
//!                              payload: network id 8)
//! 0x0b  NetworkCredentials     network id 8 | flags 1 | credential (rest; empty
//!                              when only asking): member → peer, its controller-
//!                              signed membership credential (`crypto::membership`
//!                              has its layout); flags bit 0: CREDENTIALS_ASK, send
//!                              me yours. Peers accept frames of a private network
//!                              only from members whose credential they hold
//!                              (`node::control::membership`)
//! 0x0c  MulticastFrame         reserved
//! 0x0d  PushDirectPaths        count 1 (≤ 8, more is malformed) | count × endpoint:
//!                              the sender's own interface addresses with its UDP
//!                              port. Candidates only (see `node::peer`): the receiver
//!                              probes them, and rate-limits and filters pushes
//! 0x0e  PathProbe              token 4 | zero padding (rest): sent straight on one
//!                              path, never fragmented, padded so the datagram has
//!                              the size being probed; answered by OK (token 4).
//!                              Path MTU discovery without ICMP (`node::control::pmtu`)
//! 0x0f  WorldRequest           count 1 (≤ 32, more is malformed) | count × (world id 8 |
//!                              timestamp 8): the worlds the sender holds (0: wants
//!                              it); a root answers one OK per world it holds in a
//!                              newer revision. The receiver of an OK checks the
//!                              signature and the update chain (`world`)
//! 0x10  MulticastGather        network id 8 | group 10 | limit 2: node → root, "who
//!                              subscribes to this group?"; answered by OK
//! other                        `Verb::Unknown(n)`, body kept raw
//!
//! endpoint = family 1 (4 or 6) | ip (4 or 16) | port 2
//! group = mac 6 | adi 4 (for an ARP request the IPv4 address asked about, else 0)
//! error codes: 1 InvalidRequest  2 BadProtocolVersion  3 ObjNotFound
//!              4 IdentityCollision  5 UnsupportedOperation
//!              6 NeedMembershipCertificate  7 NetworkAccessDenied
//! ```
//!
//! `in_re_counter` is the Data counter of the request being answered, which both
//! sides know. Reserved and unknown verbs parse as [`Message::Unknown`] with the raw
//! body, so an older node can count and skip what a newer one sends. Messages with a
//! fixed layout or a counted list ignore bytes after their last field, so a later
//! protocol version may append fields; this version never sends any.
//!
//! # Fragments
//!
//! A whole outer packet (of any kind except Fragment) longer than the path MTU is cut
//! by [`fragment`] into 2..=16 chunks; each is sent as a Fragment packet with the
//! original's destination, source and hops, so roots relay fragments like any other
//! packet. The chunks concatenate to the original packet, header included.
//! [`Reassembler`] puts them back together with bounded memory.

pub mod ethernet;
mod fragment;
mod message;
mod packet;
mod reader;

pub use ethernet::{ETHERNET_HEADER_LEN, EthernetFrame};
pub use fragment::{
    Arrival, FRAGMENT_OVERHEAD, MAX_FRAGMENTS, PATH_MTU_FLOOR, Reassembler, ReassemblyLimits,
    ReassemblyStats, fragment,
};
pub use message::{
    CREDENTIALS_ASK, ECHO_MAX_LEN, ErrorCode, FRAME_FORWARDED, FRAME_HEADER_LEN, Gathered, Hello,
    HelloOk, IDENTITY_LEN, IdentityBytes, MAX_GATHERED, MAX_LIST_LEN, MAX_PUSHED_PATHS,
    MAX_WORLDS_ASKED, Message, OkBody, PROTOCOL_VERSION, SOFTWARE_VERSION, SUBSCRIPTION_LEN,
    SoftwareVersion, Verb, emit_endpoint, emit_frame_header, endpoint_len, frame_header,
    parse_endpoint,
};
pub use packet::{
    COOKIE_LEN, COOKIE_NONCE_LEN, DATA_PREFIX_LEN, DataMut, HEADER_LEN, Header, Kind, MAC_LEN,
    MAX_HOPS, Outer, Packet, Piece, TAG_LEN, data_aad, data_prefix, emit_data_prefix, field, parse,
    parse_data_mut,
};

/// Why bytes could not be parsed (or a packet could not be fragmented).
///
/// Small and `Copy` because it is produced on the per-packet path; the receiver drops
/// the packet and counts the variant. The `&'static str` names the field or layout
/// that was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The bytes end before a field the layout requires.
    #[error("truncated: {0} is missing (the datagram or message is too short)")]
    Truncated(&'static str),
    /// A length is out of range (too long, or shorter than the layout allows).
    #[error("bad length: {0}")]
    BadLength(&'static str),
    /// A node address field holds a reserved value (all zero or starting with `ff`).
    #[error("reserved node address in {0} (0000000000 and ff........ are never sent)")]
    ReservedAddress(&'static str),
    /// A network ID whose controller part is a reserved node address.
    #[error("network ID names a reserved controller address")]
    BadNetworkId,
    /// An endpoint whose family byte is neither 4 nor 6.
    #[error("endpoint address family must be 4 or 6, got {0}")]
    BadEndpointFamily(u8),
    /// A packet of another kind where a specific kind was required.
    #[error("expected a Data packet, got kind {0:#04x}")]
    UnexpectedKind(u8),
    /// A fragment header with `count` outside 2..=16, `index >= count`, or no chunk.
    #[error("bad fragment header: {0}")]
    BadFragment(&'static str),
    /// [`fragment`] would need more than [`MAX_FRAGMENTS`] fragments at this MTU.
    #[error(
        "packet of {len} bytes needs more than 16 fragments at a maximum datagram size of {max_len}; lower the virtual MTU"
    )]
    TooManyFragments {
        /// Length of the packet that was to be fragmented.
        len: usize,
        /// The maximum datagram size that was asked for.
        max_len: usize,
    },
    /// [`fragment`] was given a maximum datagram size too small to carry any chunk.
    #[error(
        "maximum datagram size {0} leaves no room for a fragment chunk (it must exceed {FRAGMENT_OVERHEAD} bytes)"
    )]
    MtuTooSmall(usize),
}

#[cfg(test)]
mod tests {
    //! Checks across the submodules, and the fuzz seeds.

    use super::*;
    use crate::types::{Endpoint, NetworkId, NodeAddress, Time};

    fn addr(v: u64) -> NodeAddress {
        NodeAddress::new(v).expect("test address is valid")
    }

    /// A Data packet whose "ciphertext" is the plaintext of `message` plus a zero tag,
    /// which is how the `wire_parse` fuzz target reads Data packets.
    fn data_with(message: &Message<'_>, counter: u64) -> Vec<u8> {
        let mut out = Vec::new();
        emit_data_prefix(addr(0x89e92ceee5), addr(0x0102030405), 7, counter, &mut out);
        message.emit(&mut out);
        out.extend_from_slice(&[0; TAG_LEN]);
        out
    }

    /// The seed corpus of `fuzz/fuzz_targets/wire_parse.rs`: a valid datagram of every
    /// kind, a Data packet for every verb, and a record stream of fragments.
    fn fuzz_seeds() -> Vec<(&'static str, Vec<u8>)> {
        let (dest, src) = (addr(0x89e92ceee5), addr(0x0102030405));
        let noise: Vec<u8> = (0..149u8).map(|i| i.wrapping_mul(37)).collect();
        let ethernet: Vec<u8> = (0..1400u32).map(|i| (i * 13 + 5) as u8).collect();
        let network = NetworkId::new(dest, 1);
        let v4: Endpoint = "198.51.100.7/9993".parse().expect("valid endpoint");
        let v6: Endpoint = "[2001:db8::1]:9993".parse().expect("valid endpoint");
        let version = SoftwareVersion {
            major: 0,
            minor: 1,
            patch: 0,
        };
        let emit = |outer: Outer<'_>| {
            let mut out = Vec::new();
            outer.emit(dest, src, &mut out);
            out
        };
        let frame = Message::Frame {
            network,
            flags: 0,
            frame: &ethernet,
        };
        let big = data_with(&frame, 9);
        let mut stream = Vec::new();
        let fragments = fragment(&big, 600, 42).expect("1.4 kB fits in 16 fragments");
        for (step, i) in [(0u8, 2usize), (1, 0), (0, 0), (3, 1)] {
            stream.push(step);
            stream.extend_from_slice(&(fragments[i].len() as u16).to_be_bytes());
            stream.extend_from_slice(&fragments[i]);
        }
        vec![
            (
                "seed-handshake-init",
                emit(Outer::HandshakeInit {
                    sender_index: 1,
                    noise: &noise,
                    mac1: [1; MAC_LEN],
                    mac2: [0; MAC_LEN],
                }),
            ),
            (
                "seed-handshake-resp",
                emit(Outer::HandshakeResp {
                    sender_index: 2,
                    receiver_index: 1,
                    noise: &noise[..48],
                }),
            ),
            (
                "seed-cookie-reply",
                emit(Outer::CookieReply {
                    receiver_index: 1,
                    nonce: [5; COOKIE_NONCE_LEN],
                    sealed: [6; COOKIE_LEN],
                }),
            ),
            (
                "seed-unknown-kind",
                emit(Outer::Unknown {
                    kind: 0x42,
                    body: b"relayed unread",
                }),
            ),
            ("seed-fragment", fragments[0].clone()),
            ("seed-stream-fragments", stream),
            (
                "seed-data-hello",
                data_with(
                    &Message::Hello(Hello {
                        proto_version: 1,
                        version,
                        timestamp: Time::from_micros(1_000_000),
                        world_id: 1,
                        world_timestamp: 1,
                    }),
                    1,
                ),
            ),
            (
                "seed-data-error",
                data_with(
                    &Message::Error {
                        in_re_verb: Verb::NetworkConfigRequest,
                        in_re_counter: 3,
                        code: ErrorCode::NetworkAccessDenied,
                        payload: &network.value().to_be_bytes(),
                    },
                    2,
                ),
            ),
            (
                "seed-data-ok-hello",
                data_with(
                    &Message::Ok {
                        in_re_counter: 1,
                        body: OkBody::Hello(HelloOk {
                            timestamp: Time::from_micros(1_000_000),
                            proto_version: 1,
                            version,
                            observed: v6,
                        }),
                    },
                    3,
                ),
            ),
            (
                "seed-data-ok-whois",
                data_with(
                    &Message::Ok {
                        in_re_counter: 4,
                        body: OkBody::Whois(vec![[0x11; IDENTITY_LEN]]),
                    },
                    4,
                ),
            ),
            (
                "seed-data-ok-echo",
                data_with(
                    &Message::Ok {
                        in_re_counter: 5,
                        body: OkBody::Echo(b"ping"),
                    },
                    5,
                ),
            ),
            (
                "seed-data-ok-other",
                data_with(
                    &Message::Ok {
                        in_re_counter: 6,
                        body: OkBody::Other {
                            in_re_verb: Verb::NetworkConfigRequest,
                            body: b"{}",
                        },
                    },
                    6,
                ),
            ),
            (
                "seed-data-whois",
                data_with(
                    &Message::Whois {
                        addresses: vec![src, dest],
                    },
                    7,
                ),
            ),
            (
                "seed-data-rendezvous",
                data_with(
                    &Message::Rendezvous {
                        peer: src,
                        endpoints: vec![v4, v6],
                    },
                    8,
                ),
            ),
            ("seed-data-frame", big),
            ("seed-data-echo", data_with(&Message::Echo(b"ping"), 10)),
            (
                "seed-data-path-probe",
                data_with(
                    &Message::PathProbe {
                        token: 7,
                        padding: 40,
                    },
                    12,
                ),
            ),
            (
                "seed-data-ok-path-probe",
                data_with(
                    &Message::Ok {
                        in_re_counter: 12,
                        body: OkBody::PathProbe { token: 7 },
                    },
                    13,
                ),
            ),
            (
                "seed-data-world-request",
                data_with(
                    &Message::WorldRequest {
                        worlds: vec![(0x736b_796c_616e, 1_700_000_000_000), (0x8a1b2c3d4e, 0)],
                    },
                    14,
                ),
            ),
            (
                "seed-data-multicast-like",
                data_with(
                    &Message::MulticastLike {
                        subscriptions: vec![
                            (network, crate::types::MulticastGroup::BROADCAST),
                            (
                                network,
                                crate::types::MulticastGroup::arp([198, 18, 0, 9].into()),
                            ),
                        ],
                    },
                    15,
                ),
            ),
            (
                "seed-data-network-credentials",
                data_with(
                    &Message::NetworkCredentials {
                        network,
                        flags: CREDENTIALS_ASK,
                        credential: &[2; 40],
                    },
                    16,
                ),
            ),
            (
                "seed-data-multicast-gather",
                data_with(
                    &Message::MulticastGather {
                        network,
                        group: crate::types::MulticastGroup::BROADCAST,
                        limit: 32,
                    },
                    17,
                ),
            ),
            (
                "seed-data-reserved-verb",
                data_with(
                    &Message::Unknown {
                        verb: Verb::MulticastFrame,
                        body: b"later",
                    },
                    11,
                ),
            ),
        ]
    }

    /// The checked-in seeds must equal what this version emits, so they cannot rot.
    /// `SKYLAN_WRITE_FUZZ_SEEDS=1 cargo test --lib wire::tests` rewrites them.
    #[test]
    fn fuzz_seeds_are_current() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/wire_parse");
        let write = std::env::var_os("SKYLAN_WRITE_FUZZ_SEEDS").is_some();
        if write {
            std::fs::create_dir_all(&dir).expect("create the corpus directory");
        }
        for (name, bytes) in fuzz_seeds() {
            let path = dir.join(name);
            if write {
                std::fs::write(&path, &bytes).expect("write a seed");
            }
            let on_disk = std::fs::read(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e}; run with SKYLAN_WRITE_FUZZ_SEEDS=1",
                    path.display()
                )
            });
            assert_eq!(
                on_disk, bytes,
                "{name} is stale; run with SKYLAN_WRITE_FUZZ_SEEDS=1"
            );
        }
    }

    #[test]
    fn every_seed_datagram_parses_down_to_its_message() {
        for (name, bytes) in fuzz_seeds() {
            if name == "seed-stream-fragments" {
                continue;
            }
            let (_, outer) = parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            if let Outer::Data { ciphertext, .. } = outer {
                let plaintext = &ciphertext[..ciphertext.len() - TAG_LEN];
                Message::parse(plaintext).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
    }

    #[test]
    fn errors_say_what_was_wrong() {
        assert_eq!(
            WireError::MtuTooSmall(20).to_string(),
            "maximum datagram size 20 leaves no room for a fragment chunk (it must exceed 22 bytes)"
        );
        assert_eq!(
            parse(&[3, 0, 1]).unwrap_err().to_string(),
            "truncated: outer header destination address is missing (the datagram or message is too short)"
        );
        assert_eq!(
            WireError::UnexpectedKind(4).to_string(),
            "expected a Data packet, got kind 0x04"
        );
        assert!(
            std::mem::size_of::<WireError>() <= 24,
            "stays small and cheap to return"
        );
    }

    /// The whole send and receive path through this layer, as the node core uses it.
    #[test]
    fn seal_in_place_shape_round_trips_a_frame() {
        let ethernet = [0xab; 1400];
        let network = NetworkId::new(addr(0x89e92ceee5), 1);
        let mut out = Vec::new();
        let aad = emit_data_prefix(addr(0x89e92ceee5), addr(0x0102030405), 7, 9, &mut out);
        emit_frame_header(network, 0, &mut out);
        out.extend_from_slice(&ethernet);
        out.extend_from_slice(&[0; TAG_LEN]); // stands in for sealing
        for mut datagram in fragment(&out, 1200, 1).expect("fits in two fragments") {
            let (header, outer) = parse(&datagram).expect("fragment parses");
            let Outer::Fragment { .. } = outer else {
                panic!("expected fragments, got {outer:?}");
            };
            assert_eq!(header.hops, 0);
            // A relay bumps the hop count in place; nothing else changes.
            let before = datagram.clone();
            Packet::new_checked(&mut datagram[..])
                .expect("valid")
                .set_hops(1);
            assert_eq!(parse(&datagram).expect("still parses").0.hops, 1);
            assert_eq!(datagram[field::FLAGS + 1..], before[field::FLAGS + 1..]);
        }
        let data = parse_data_mut(&mut out).expect("a Data packet");
        assert_eq!(data.aad, aad);
        let n = data.ciphertext.len() - TAG_LEN;
        let message = Message::parse(&data.ciphertext[..n]).expect("a Frame");
        assert_eq!(
            message,
            Message::Frame {
                network,
                flags: 0,
                frame: &ethernet
            }
        );
    }
}
