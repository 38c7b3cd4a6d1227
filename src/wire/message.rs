//! Inner messages: the plaintext of a Data packet, `verb u8 | payload`.
//!
//! [`Message::parse`] borrows frame and echo bytes from the decrypted buffer and
//! allocates only for lists (WHOIS addresses, RENDEZVOUS endpoints, identities).
//! Reserved and unknown verbs parse as [`Message::Unknown`] with the raw body.
//! Layouts are in the [module docs](super). Called by the node and root cores after
//! `crypto` has opened a packet, and before sealing one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::WireError;
use super::ethernet::ETHERNET_HEADER_LEN;
use super::reader::Reader;
use crate::types::{Endpoint, Mac, MulticastGroup, NetworkId, NodeAddress, Time};

/// Length of a public identity on the wire: address 5 | ed25519 32 | x25519 32.
pub const IDENTITY_LEN: usize = 69;
/// A public identity as bytes; `crypto` parses and verifies it.
pub type IdentityBytes = [u8; IDENTITY_LEN];
/// Longest Echo payload (and echoed OK body).
pub const ECHO_MAX_LEN: usize = 256;
/// Longest list a one-byte count can announce; [`Message::emit`] writes at most this
/// many entries.
pub const MAX_LIST_LEN: usize = 255;
/// Bytes of a Frame message before the Ethernet frame: verb 1 | network id 8 | flags 1.
pub const FRAME_HEADER_LEN: usize = 10;
/// Most endpoints one PushDirectPaths message may carry; a longer list is malformed.
pub const MAX_PUSHED_PATHS: usize = 8;
/// Most worlds one WorldRequest may name (the planet and moons a node holds); a longer
/// list is malformed.
pub const MAX_WORLDS_ASKED: usize = 32;
/// Most members one OK(MulticastGather) lists; a longer list is malformed.
pub const MAX_GATHERED: usize = 1024;
/// Bytes of one subscription in a MulticastLike: network id 8 | mac 6 | adi 4.
pub const SUBSCRIPTION_LEN: usize = 18;
/// NETWORK_CREDENTIALS flag: the sender asks for the receiver's credential in return.
pub const CREDENTIALS_ASK: u8 = 0x01;

/// The verb byte that starts every inner message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// 0x01: announce version and clock, answered by OK.
    Hello,
    /// 0x02: a request failed.
    Error,
    /// 0x03: a request succeeded.
    Ok,
    /// 0x04: ask a root for identities by address.
    Whois,
    /// 0x05: a root tells a node where to reach a peer.
    Rendezvous,
    /// 0x06: an Ethernet frame on a network.
    Frame,
    /// 0x07: a liveness probe, answered by OK with the same bytes.
    Echo,
    /// 0x08: a node subscribes to multicast groups at a root.
    MulticastLike,
    /// 0x09: reserved (ask a controller for a network config).
    NetworkConfigRequest,
    /// 0x0a: reserved (a network config).
    NetworkConfig,
    /// 0x0b: a member shows a peer its membership credential.
    NetworkCredentials,
    /// 0x0c: reserved (a multicast frame).
    MulticastFrame,
    /// 0x0d: a node tells a peer the endpoints it can be reached at on its own networks.
    PushDirectPaths,
    /// 0x0e: a padded path MTU probe, answered by OK with its token.
    PathProbe,
    /// 0x0f: a node asks a root for newer revisions of worlds (planet, moons).
    WorldRequest,
    /// 0x10: a node asks a root who subscribes to a multicast group.
    MulticastGather,
    /// Any other value.
    Unknown(u8),
}

impl From<u8> for Verb {
    fn from(value: u8) -> Self {
        match value {
            0x01 => Verb::Hello,
            0x02 => Verb::Error,
            0x03 => Verb::Ok,
            0x04 => Verb::Whois,
            0x05 => Verb::Rendezvous,
            0x06 => Verb::Frame,
            0x07 => Verb::Echo,
            0x08 => Verb::MulticastLike,
            0x09 => Verb::NetworkConfigRequest,
            0x0a => Verb::NetworkConfig,
            0x0b => Verb::NetworkCredentials,
            0x0c => Verb::MulticastFrame,
            0x0d => Verb::PushDirectPaths,
            0x0e => Verb::PathProbe,
            0x0f => Verb::WorldRequest,
            0x10 => Verb::MulticastGather,
            other => Verb::Unknown(other),
        }
    }
}

impl From<Verb> for u8 {
    fn from(verb: Verb) -> u8 {
        match verb {
            Verb::Hello => 0x01,
            Verb::Error => 0x02,
            Verb::Ok => 0x03,
            Verb::Whois => 0x04,
            Verb::Rendezvous => 0x05,
            Verb::Frame => 0x06,
            Verb::Echo => 0x07,
            Verb::MulticastLike => 0x08,
            Verb::NetworkConfigRequest => 0x09,
            Verb::NetworkConfig => 0x0a,
            Verb::NetworkCredentials => 0x0b,
            Verb::MulticastFrame => 0x0c,
            Verb::PushDirectPaths => 0x0d,
            Verb::PathProbe => 0x0e,
            Verb::WorldRequest => 0x0f,
            Verb::MulticastGather => 0x10,
            Verb::Unknown(other) => other,
        }
    }
}

/// Why a request failed, in an Error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 1: the request was malformed.
    InvalidRequest,
    /// 2: the protocol versions are incompatible.
    BadProtocolVersion,
    /// 3: the thing asked for (identity, network) is not known.
    ObjNotFound,
    /// 4: another identity already holds this address.
    IdentityCollision,
    /// 5: the receiver does not do this.
    UnsupportedOperation,
    /// 6: send a membership certificate first.
    NeedMembershipCertificate,
    /// 7: the controller refuses access to the network.
    NetworkAccessDenied,
    /// Any other value.
    Unknown(u8),
}

impl From<u8> for ErrorCode {
    fn from(value: u8) -> Self {
        match value {
            1 => ErrorCode::InvalidRequest,
            2 => ErrorCode::BadProtocolVersion,
            3 => ErrorCode::ObjNotFound,
            4 => ErrorCode::IdentityCollision,
            5 => ErrorCode::UnsupportedOperation,
            6 => ErrorCode::NeedMembershipCertificate,
            7 => ErrorCode::NetworkAccessDenied,
            other => ErrorCode::Unknown(other),
        }
    }
}

impl From<ErrorCode> for u8 {
    fn from(code: ErrorCode) -> u8 {
        match code {
            ErrorCode::InvalidRequest => 1,
            ErrorCode::BadProtocolVersion => 2,
            ErrorCode::ObjNotFound => 3,
            ErrorCode::IdentityCollision => 4,
            ErrorCode::UnsupportedOperation => 5,
            ErrorCode::NeedMembershipCertificate => 6,
            ErrorCode::NetworkAccessDenied => 7,
            ErrorCode::Unknown(other) => other,
        }
    }
}

/// A software version as sent in HELLO and its OK: major 1 | minor 1 | patch 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SoftwareVersion {
    /// Major version.
    pub major: u8,
    /// Minor version.
    pub minor: u8,
    /// Patch level.
    pub patch: u16,
}

/// The HELLO payload: who I am running and what I believe about the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hello {
    /// Protocol version the sender speaks.
    pub proto_version: u8,
    /// Sender's software version.
    pub version: SoftwareVersion,
    /// Sender's clock when sending; echoed in the OK so the sender measures latency.
    pub timestamp: Time,
    /// The world (root set) the sender uses.
    pub world_id: u64,
    /// Timestamp (revision) of that world definition, so a stale peer can be updated.
    pub world_timestamp: u64,
}

const HELLO_LEN: usize = 1 + 4 + 8 + 8 + 8;

/// The OK body answering a HELLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HelloOk {
    /// The HELLO's timestamp, echoed.
    pub timestamp: Time,
    /// Protocol version the responder speaks.
    pub proto_version: u8,
    /// Responder's software version.
    pub version: SoftwareVersion,
    /// The endpoint the HELLO arrived from, as the responder saw it (the sender's
    /// address outside its NAT).
    pub observed: Endpoint,
}

/// The body of an OK message; which one is decided by the verb it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OkBody<'a> {
    /// Answer to HELLO.
    Hello(HelloOk),
    /// Answer to WHOIS: the identities that were found (at most 255).
    Whois(Vec<IdentityBytes>),
    /// Answer to ECHO: the same bytes (at most 256).
    Echo(&'a [u8]),
    /// Answer to PATH_PROBE: the probe's token (the padding is not sent back).
    PathProbe {
        /// The token of the probe that arrived.
        token: u32,
    },
    /// Answer to WORLD_REQUEST: one signed world in its binary form (`world::World`
    /// parses and verifies it); one OK per world sent.
    World(&'a [u8]),
    /// Answer to MULTICAST_GATHER: members subscribed to the group.
    Gather(Gathered),
    /// Answer to any other verb; body kept raw. Use the variants above for HELLO,
    /// WHOIS, ECHO, PATH_PROBE and WORLD_REQUEST: bytes emitted here for those verbs
    /// parse as the typed body.
    Other {
        /// The verb being answered.
        in_re_verb: Verb,
        /// The raw body.
        body: &'a [u8],
    },
}

impl OkBody<'_> {
    /// The verb this OK answers.
    pub fn in_re_verb(&self) -> Verb {
        match self {
            OkBody::Hello(_) => Verb::Hello,
            OkBody::Whois(_) => Verb::Whois,
            OkBody::Echo(_) => Verb::Echo,
            OkBody::PathProbe { .. } => Verb::PathProbe,
            OkBody::World(_) => Verb::WorldRequest,
            OkBody::Gather(_) => Verb::MulticastGather,
            OkBody::Other { in_re_verb, .. } => *in_re_verb,
        }
    }
}

/// What a root knows of a multicast group's subscribers (the body of an
/// OK(MulticastGather)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gathered {
    /// The network.
    pub network: NetworkId,
    /// The group.
    pub group: MulticastGroup,
    /// How many members the root knows in the group (may exceed `members.len()`).
    pub total: u32,
    /// Subscribers, at most the gather's limit and [`MAX_GATHERED`].
    pub members: Vec<NodeAddress>,
}

/// Protocol version carried in HELLO. 3: members of a private network admit each
/// other by NETWORK_CREDENTIALS, and group frames go to the subscribers a root
/// gathers (MULTICAST_LIKE, MULTICAST_GATHER); a node of version 2 cannot take part
/// in a network with version-3 members.
pub const PROTOCOL_VERSION: u8 = 3;

/// Software version reported in HELLO.
pub const SOFTWARE_VERSION: SoftwareVersion = SoftwareVersion {
    major: 0,
    minor: 1,
    patch: 0,
};

/// FRAME flag: a copy or a redirection that a flow rule of the sender made (`tee`,
/// `watch`, `redirect`). The receiver delivers it although its destination MAC is
/// another's, and never copies or redirects it again.
pub const FRAME_FORWARDED: u8 = 0x01;

/// A decrypted inner message, borrowing byte payloads from the plaintext buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// 0x01 HELLO.
    Hello(Hello),
    /// 0x02 ERROR: a request failed.
    Error {
        /// Verb of the failed request.
        in_re_verb: Verb,
        /// Data counter of the failed request's packet.
        in_re_counter: u64,
        /// Why it failed.
        code: ErrorCode,
        /// Details depending on the code (for example the network ID), raw.
        payload: &'a [u8],
    },
    /// 0x03 OK: a request succeeded.
    Ok {
        /// Data counter of the request's packet.
        in_re_counter: u64,
        /// The answer; also names the verb answered ([`OkBody::in_re_verb`]).
        body: OkBody<'a>,
    },
    /// 0x04 WHOIS: which identities own these addresses (at most 255)?
    Whois {
        /// The addresses asked about.
        addresses: Vec<NodeAddress>,
    },
    /// 0x05 RENDEZVOUS: `peer` can be reached at these endpoints; try them now.
    Rendezvous {
        /// The peer to contact.
        peer: NodeAddress,
        /// Its endpoints as the root sees them (at most 255).
        endpoints: Vec<Endpoint>,
    },
    /// 0x06 FRAME: an Ethernet frame on a network.
    Frame {
        /// The network the frame belongs to.
        network: NetworkId,
        /// Per-frame flags: [`FRAME_FORWARDED`]; the other bits are reserved (sent 0,
        /// ignored).
        flags: u8,
        /// The whole Ethernet frame: dst mac | src mac | ethertype | payload
        /// (at least [`ETHERNET_HEADER_LEN`] bytes).
        frame: &'a [u8],
    },
    /// 0x07 ECHO: bytes to send back in an OK (at most 256).
    Echo(&'a [u8]),
    /// 0x08 MULTICAST_LIKE: node → root, "I listen to these groups" (at most 255). A
    /// root keeps a subscription until it expires (`root::multicast`); nodes repeat
    /// them while they hold.
    MulticastLike {
        /// (network, group) pairs.
        subscriptions: Vec<(NetworkId, MulticastGroup)>,
    },
    /// 0x09 NETWORK_CONFIG_REQUEST: member → controller, "send me the config of this
    /// network"; `revision` is the revision the member holds (0 for none).
    NetworkConfigRequest {
        /// The network.
        network: NetworkId,
        /// Revision of the config the member already has.
        revision: u64,
    },
    /// 0x0a NETWORK_CONFIG: controller → member, a signed network config (opaque here;
    /// `controller::SignedNetworkConfig` encodes it). Sent as the answer to a request and
    /// pushed whenever the config changes.
    NetworkConfig {
        /// The network.
        network: NetworkId,
        /// The signed config bytes.
        config: &'a [u8],
    },
    /// 0x0b NETWORK_CREDENTIALS: member → peer, "here is my membership credential on
    /// this network" (`crypto::membership` parses and verifies it), so the peer
    /// accepts my frames there. With [`CREDENTIALS_ASK`] the sender also wants the
    /// receiver's credential (the receiver answers with its own NETWORK_CREDENTIALS).
    NetworkCredentials {
        /// The network.
        network: NetworkId,
        /// [`CREDENTIALS_ASK`]; other bits reserved (sent 0, ignored).
        flags: u8,
        /// The credential's binary form; empty when the sender only asks.
        credential: &'a [u8],
    },
    /// 0x0d PUSH_DIRECT_PATHS: node → peer, "I can also be reached at these endpoints"
    /// (its interface addresses with its UDP port), so two nodes behind one NAT find
    /// each other on their LAN. Candidates only: the receiver probes them, and one
    /// carries traffic only after an authenticated packet arrived on it.
    PushDirectPaths {
        /// The sender's local endpoints (at most [`MAX_PUSHED_PATHS`]).
        endpoints: Vec<Endpoint>,
    },
    /// 0x0e PATH_PROBE: node → peer, a datagram padded to a chosen size on one path,
    /// answered by OK with the token, so the sender learns that datagrams of this size
    /// cross the path (path MTU discovery without ICMP; see `node::control::pmtu`).
    PathProbe {
        /// Chosen by the sender, echoed in the OK.
        token: u32,
        /// Zero bytes after the token that make the datagram the probed size; the
        /// receiver ignores their content.
        padding: usize,
    },
    /// 0x0f WORLD_REQUEST: node → root, "these are the worlds I hold, as (id,
    /// timestamp); send me any newer revision you have". A timestamp of 0 asks for a
    /// world the node does not hold yet (`orbit`). Answered by one OK per newer world.
    WorldRequest {
        /// (world id, revision timestamp held), at most [`MAX_WORLDS_ASKED`].
        worlds: Vec<(u64, u64)>,
    },
    /// 0x10 MULTICAST_GATHER: node → root, "who subscribes to this group?"; answered
    /// by OK with a [`Gathered`] of at most `limit` members.
    MulticastGather {
        /// The network.
        network: NetworkId,
        /// The group.
        group: MulticastGroup,
        /// Most members wanted (at most [`MAX_GATHERED`] are sent).
        limit: u16,
    },
    /// A reserved or unknown verb, body kept raw so it can be counted and skipped.
    Unknown {
        /// The verb.
        verb: Verb,
        /// Everything after the verb byte.
        body: &'a [u8],
    },
}

impl<'a> Message<'a> {
    /// The OK answering a HELLO: echoes its timestamp and tells the sender the endpoint
    /// its packet came from. Nodes and roots answer alike.
    pub fn hello_ok(in_re_counter: u64, hello: &Hello, observed: Endpoint) -> Message<'a> {
        Message::Ok {
            in_re_counter,
            body: OkBody::Hello(HelloOk {
                timestamp: hello.timestamp,
                proto_version: PROTOCOL_VERSION,
                version: SOFTWARE_VERSION,
                observed,
            }),
        }
    }

    /// Parses a decrypted Data payload. Never panics; allocates only for lists.
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf);
        let verb = Verb::from(r.u8("message verb")?);
        match verb {
            Verb::Hello => parse_hello(&mut r).map(Message::Hello),
            Verb::Error => Ok(Message::Error {
                in_re_verb: Verb::from(r.u8("Error in-re verb")?),
                in_re_counter: r.u64("Error in-re counter")?,
                code: ErrorCode::from(r.u8("Error code")?),
                payload: r.rest(),
            }),
            Verb::Ok => {
                let in_re_verb = Verb::from(r.u8("OK in-re verb")?);
                let in_re_counter = r.u64("OK in-re counter")?;
                let body = parse_ok_body(in_re_verb, r)?;
                Ok(Message::Ok {
                    in_re_counter,
                    body,
                })
            }
            Verb::Whois => {
                let count = r.u8("Whois count")?;
                let mut addresses = Vec::with_capacity(usize::from(count));
                for _ in 0..count {
                    addresses.push(parse_address(&mut r, "Whois address")?);
                }
                Ok(Message::Whois { addresses })
            }
            Verb::Rendezvous => {
                let peer = parse_address(&mut r, "Rendezvous peer address")?;
                let count = r.u8("Rendezvous endpoint count")?;
                let mut endpoints = Vec::with_capacity(usize::from(count));
                for _ in 0..count {
                    endpoints.push(read_endpoint(&mut r, "Rendezvous endpoint")?);
                }
                Ok(Message::Rendezvous { peer, endpoints })
            }
            Verb::Frame => {
                let network = NetworkId::from_u64(r.u64("Frame network id")?)
                    .map_err(|_| WireError::BadNetworkId)?;
                let flags = r.u8("Frame flags")?;
                let frame = r.rest();
                if frame.len() < ETHERNET_HEADER_LEN {
                    return Err(WireError::Truncated("Frame Ethernet header"));
                }
                Ok(Message::Frame {
                    network,
                    flags,
                    frame,
                })
            }
            Verb::Echo => {
                let bytes = r.rest();
                if bytes.len() > ECHO_MAX_LEN {
                    return Err(WireError::BadLength("Echo payload exceeds 256 bytes"));
                }
                Ok(Message::Echo(bytes))
            }
            Verb::NetworkConfigRequest => Ok(Message::NetworkConfigRequest {
                network: parse_network(&mut r, "NetworkConfigRequest network id")?,
                revision: r.u64("NetworkConfigRequest revision")?,
            }),
            Verb::NetworkConfig => Ok(Message::NetworkConfig {
                network: parse_network(&mut r, "NetworkConfig network id")?,
                config: r.rest(),
            }),
            Verb::PushDirectPaths => {
                let count = usize::from(r.u8("PushDirectPaths count")?);
                if count > MAX_PUSHED_PATHS {
                    return Err(WireError::BadLength(
                        "PushDirectPaths carries more than 8 endpoints",
                    ));
                }
                let mut endpoints = Vec::with_capacity(count);
                for _ in 0..count {
                    endpoints.push(read_endpoint(&mut r, "PushDirectPaths endpoint")?);
                }
                Ok(Message::PushDirectPaths { endpoints })
            }
            Verb::PathProbe => Ok(Message::PathProbe {
                token: r.u32("PathProbe token")?,
                padding: r.rest().len(),
            }),
            Verb::WorldRequest => {
                let count = usize::from(r.u8("WorldRequest count")?);
                if count > MAX_WORLDS_ASKED {
                    return Err(WireError::BadLength(
                        "WorldRequest names more than 32 worlds",
                    ));
                }
                let mut worlds = Vec::with_capacity(count);
                for _ in 0..count {
                    worlds.push((
                        r.u64("WorldRequest world id")?,
                        r.u64("WorldRequest world timestamp")?,
                    ));
                }
                Ok(Message::WorldRequest { worlds })
            }
            Verb::MulticastLike => {
                let count = r.u8("MulticastLike count")?;
                let mut subscriptions = Vec::with_capacity(usize::from(count));
                for _ in 0..count {
                    let network = parse_network(&mut r, "MulticastLike network id")?;
                    subscriptions.push((network, read_group(&mut r, "MulticastLike group")?));
                }
                Ok(Message::MulticastLike { subscriptions })
            }
            Verb::NetworkCredentials => Ok(Message::NetworkCredentials {
                network: parse_network(&mut r, "NetworkCredentials network id")?,
                flags: r.u8("NetworkCredentials flags")?,
                credential: r.rest(),
            }),
            Verb::MulticastGather => Ok(Message::MulticastGather {
                network: parse_network(&mut r, "MulticastGather network id")?,
                group: read_group(&mut r, "MulticastGather group")?,
                limit: r.u16("MulticastGather limit")?,
            }),
            Verb::MulticastFrame | Verb::Unknown(_) => Ok(Message::Unknown {
                verb,
                body: r.rest(),
            }),
        }
    }

    /// The verb byte this message starts with.
    pub fn verb(&self) -> Verb {
        match self {
            Message::Hello(_) => Verb::Hello,
            Message::Error { .. } => Verb::Error,
            Message::Ok { .. } => Verb::Ok,
            Message::Whois { .. } => Verb::Whois,
            Message::Rendezvous { .. } => Verb::Rendezvous,
            Message::Frame { .. } => Verb::Frame,
            Message::Echo(_) => Verb::Echo,
            Message::NetworkConfigRequest { .. } => Verb::NetworkConfigRequest,
            Message::NetworkConfig { .. } => Verb::NetworkConfig,
            Message::PushDirectPaths { .. } => Verb::PushDirectPaths,
            Message::PathProbe { .. } => Verb::PathProbe,
            Message::WorldRequest { .. } => Verb::WorldRequest,
            Message::MulticastLike { .. } => Verb::MulticastLike,
            Message::NetworkCredentials { .. } => Verb::NetworkCredentials,
            Message::MulticastGather { .. } => Verb::MulticastGather,
            Message::Unknown { verb, .. } => *verb,
        }
    }

    /// Exactly how many bytes [`Message::emit`] appends.
    pub fn buffer_len(&self) -> usize {
        1 + match self {
            Message::Hello(_) => HELLO_LEN,
            Message::Error { payload, .. } => 10 + payload.len(),
            Message::Ok { body, .. } => {
                9 + match body {
                    OkBody::Hello(ok) => 13 + endpoint_len(&ok.observed),
                    OkBody::Whois(ids) => 1 + list_len(ids.len()) * IDENTITY_LEN,
                    OkBody::Echo(bytes) => echo_len(bytes),
                    OkBody::PathProbe { .. } => 4,
                    OkBody::World(bytes) => bytes.len(),
                    OkBody::Gather(g) => 8 + 10 + 4 + 2 + gathered_len(g.members.len()) * 5,
                    OkBody::Other { body, .. } => body.len(),
                }
            }
            Message::Whois { addresses } => 1 + list_len(addresses.len()) * NodeAddress::LEN,
            Message::Rendezvous { endpoints, .. } => {
                NodeAddress::LEN
                    + 1
                    + endpoints
                        .iter()
                        .take(MAX_LIST_LEN)
                        .map(endpoint_len)
                        .sum::<usize>()
            }
            Message::Frame { frame, .. } => FRAME_HEADER_LEN - 1 + frame.len(),
            Message::Echo(bytes) => echo_len(bytes),
            Message::NetworkConfigRequest { .. } => 16,
            Message::NetworkConfig { config, .. } => 8 + config.len(),
            Message::PushDirectPaths { endpoints } => {
                1 + endpoints[..pushed_len(endpoints.len())]
                    .iter()
                    .map(endpoint_len)
                    .sum::<usize>()
            }
            Message::PathProbe { padding, .. } => 4 + padding,
            Message::WorldRequest { worlds } => 1 + asked_len(worlds.len()) * 16,
            Message::MulticastLike { subscriptions } => {
                1 + list_len(subscriptions.len()) * SUBSCRIPTION_LEN
            }
            Message::NetworkCredentials { credential, .. } => 9 + credential.len(),
            Message::MulticastGather { .. } => 8 + 10 + 2,
            Message::Unknown { body, .. } => body.len(),
        }
    }

    /// Appends the message (verb first) to `out`, typically right after a Data prefix
    /// so it can be sealed in place.
    ///
    /// Lists longer than [`MAX_LIST_LEN`] (pushed paths: [`MAX_PUSHED_PATHS`]) and echo
    /// bytes longer than [`ECHO_MAX_LEN`] cannot be sent; `emit` writes only the first
    /// entries/bytes that fit (and
    /// asserts in debug builds, since building such a message is a caller bug).
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.reserve(self.buffer_len());
        out.push(self.verb().into());
        match self {
            Message::Hello(hello) => {
                out.push(hello.proto_version);
                emit_version(hello.version, out);
                out.extend_from_slice(&hello.timestamp.as_micros().to_be_bytes());
                out.extend_from_slice(&hello.world_id.to_be_bytes());
                out.extend_from_slice(&hello.world_timestamp.to_be_bytes());
            }
            Message::Error {
                in_re_verb,
                in_re_counter,
                code,
                payload,
            } => {
                out.push((*in_re_verb).into());
                out.extend_from_slice(&in_re_counter.to_be_bytes());
                out.push((*code).into());
                out.extend_from_slice(payload);
            }
            Message::Ok {
                in_re_counter,
                body,
            } => {
                out.push(body.in_re_verb().into());
                out.extend_from_slice(&in_re_counter.to_be_bytes());
                match body {
                    OkBody::Hello(ok) => {
                        out.extend_from_slice(&ok.timestamp.as_micros().to_be_bytes());
                        out.push(ok.proto_version);
                        emit_version(ok.version, out);
                        emit_endpoint(&ok.observed, out);
                    }
                    OkBody::Whois(ids) => {
                        out.push(count_byte(ids.len()));
                        for id in ids.iter().take(MAX_LIST_LEN) {
                            out.extend_from_slice(id);
                        }
                    }
                    OkBody::Echo(bytes) => emit_echo(bytes, out),
                    OkBody::PathProbe { token } => out.extend_from_slice(&token.to_be_bytes()),
                    OkBody::World(bytes) => out.extend_from_slice(bytes),
                    OkBody::Gather(g) => {
                        out.extend_from_slice(&g.network.value().to_be_bytes());
                        emit_group(g.group, out);
                        out.extend_from_slice(&g.total.to_be_bytes());
                        let members = &g.members[..gathered_len(g.members.len())];
                        // Cannot truncate: gathered_len caps at MAX_GATHERED = 1024.
                        out.extend_from_slice(&(members.len() as u16).to_be_bytes());
                        for m in members {
                            out.extend_from_slice(&m.to_bytes());
                        }
                    }
                    OkBody::Other { body, .. } => out.extend_from_slice(body),
                }
            }
            Message::Whois { addresses } => {
                out.push(count_byte(addresses.len()));
                for address in addresses.iter().take(MAX_LIST_LEN) {
                    out.extend_from_slice(&address.to_bytes());
                }
            }
            Message::Rendezvous { peer, endpoints } => {
                out.extend_from_slice(&peer.to_bytes());
                out.push(count_byte(endpoints.len()));
                for endpoint in endpoints.iter().take(MAX_LIST_LEN) {
                    emit_endpoint(endpoint, out);
                }
            }
            Message::Frame {
                network,
                flags,
                frame,
            } => {
                out.extend_from_slice(&network.value().to_be_bytes());
                out.push(*flags);
                out.extend_from_slice(frame);
            }
            Message::Echo(bytes) => emit_echo(bytes, out),
            Message::NetworkConfigRequest { network, revision } => {
                out.extend_from_slice(&network.value().to_be_bytes());
                out.extend_from_slice(&revision.to_be_bytes());
            }
            Message::NetworkConfig { network, config } => {
                out.extend_from_slice(&network.value().to_be_bytes());
                out.extend_from_slice(config);
            }
            Message::PushDirectPaths { endpoints } => {
                let endpoints = &endpoints[..pushed_len(endpoints.len())];
                // Cannot truncate: pushed_len caps at MAX_PUSHED_PATHS = 8.
                out.push(endpoints.len() as u8);
                for endpoint in endpoints {
                    emit_endpoint(endpoint, out);
                }
            }
            Message::PathProbe { token, padding } => {
                out.extend_from_slice(&token.to_be_bytes());
                out.resize(out.len() + padding, 0);
            }
            Message::WorldRequest { worlds } => {
                let worlds = &worlds[..asked_len(worlds.len())];
                // Cannot truncate: asked_len caps at MAX_WORLDS_ASKED = 32.
                out.push(worlds.len() as u8);
                for (id, timestamp) in worlds {
                    out.extend_from_slice(&id.to_be_bytes());
                    out.extend_from_slice(&timestamp.to_be_bytes());
                }
            }
            Message::MulticastLike { subscriptions } => {
                out.push(count_byte(subscriptions.len()));
                for (network, group) in subscriptions.iter().take(MAX_LIST_LEN) {
                    out.extend_from_slice(&network.value().to_be_bytes());
                    emit_group(*group, out);
                }
            }
            Message::NetworkCredentials {
                network,
                flags,
                credential,
            } => {
                out.extend_from_slice(&network.value().to_be_bytes());
                out.push(*flags);
                out.extend_from_slice(credential);
            }
            Message::MulticastGather {
                network,
                group,
                limit,
            } => {
                out.extend_from_slice(&network.value().to_be_bytes());
                emit_group(*group, out);
                out.extend_from_slice(&limit.to_be_bytes());
            }
            Message::Unknown { body, .. } => out.extend_from_slice(body),
        }
    }
}

/// How many of `n` gathered members fit in an OK(MulticastGather).
fn gathered_len(n: usize) -> usize {
    debug_assert!(n <= MAX_GATHERED, "OK(MulticastGather) of {n} members");
    n.min(MAX_GATHERED)
}

fn emit_group(group: MulticastGroup, out: &mut Vec<u8>) {
    out.extend_from_slice(&group.mac.0);
    out.extend_from_slice(&group.adi.to_be_bytes());
}

fn read_group(r: &mut Reader<'_>, what: &'static str) -> Result<MulticastGroup, WireError> {
    Ok(MulticastGroup {
        mac: Mac(r.array::<6>(what)?),
        adi: r.u32(what)?,
    })
}

/// How many of `n` requested worlds fit in a WorldRequest.
fn asked_len(n: usize) -> usize {
    debug_assert!(n <= MAX_WORLDS_ASKED, "WorldRequest of {n} worlds");
    n.min(MAX_WORLDS_ASKED)
}

fn parse_network(r: &mut Reader<'_>, what: &'static str) -> Result<NetworkId, WireError> {
    NetworkId::from_u64(r.u64(what)?).map_err(|_| WireError::BadNetworkId)
}

/// Appends the [`FRAME_HEADER_LEN`] bytes that start a Frame message, so a driver can
/// read or copy the Ethernet frame straight after them (one copy on the send path).
pub fn emit_frame_header(network: NetworkId, flags: u8, out: &mut Vec<u8>) {
    out.extend_from_slice(&frame_header(network, flags));
}

/// The bytes [`emit_frame_header`] appends, for a caller that writes them in place.
pub fn frame_header(network: NetworkId, flags: u8) -> [u8; FRAME_HEADER_LEN] {
    let mut head = [0u8; FRAME_HEADER_LEN];
    head[0] = Verb::Frame.into();
    head[1..9].copy_from_slice(&network.value().to_be_bytes());
    head[9] = flags;
    head
}

/// Encoded length of an endpoint: 7 for IPv4, 19 for IPv6.
pub fn endpoint_len(endpoint: &Endpoint) -> usize {
    match endpoint.0 {
        SocketAddr::V4(_) => 1 + 4 + 2,
        SocketAddr::V6(_) => 1 + 16 + 2,
    }
}

/// Appends `family | ip | port`. IPv6 flow info and scope are not sent.
pub fn emit_endpoint(endpoint: &Endpoint, out: &mut Vec<u8>) {
    match endpoint.0.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&endpoint.0.port().to_be_bytes());
}

/// Reads one endpoint from the start of `buf`; returns it and the bytes it used.
pub fn parse_endpoint(buf: &[u8]) -> Result<(Endpoint, usize), WireError> {
    let mut r = Reader::new(buf);
    let endpoint = read_endpoint(&mut r, "endpoint")?;
    Ok((endpoint, buf.len() - r.rest().len()))
}

fn read_endpoint(r: &mut Reader<'_>, what: &'static str) -> Result<Endpoint, WireError> {
    let ip = match r.u8(what)? {
        4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>(what)?)),
        6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>(what)?)),
        family => return Err(WireError::BadEndpointFamily(family)),
    };
    Ok(Endpoint(SocketAddr::new(ip, r.u16(what)?)))
}

fn parse_hello(r: &mut Reader<'_>) -> Result<Hello, WireError> {
    Ok(Hello {
        proto_version: r.u8("Hello protocol version")?,
        version: parse_version(r, "Hello software version")?,
        timestamp: Time::from_micros(r.u64("Hello timestamp")?),
        world_id: r.u64("Hello world id")?,
        world_timestamp: r.u64("Hello world timestamp")?,
    })
}

fn parse_ok_body<'a>(in_re_verb: Verb, mut r: Reader<'a>) -> Result<OkBody<'a>, WireError> {
    match in_re_verb {
        Verb::Hello => Ok(OkBody::Hello(HelloOk {
            timestamp: Time::from_micros(r.u64("OK(Hello) timestamp")?),
            proto_version: r.u8("OK(Hello) protocol version")?,
            version: parse_version(&mut r, "OK(Hello) software version")?,
            observed: read_endpoint(&mut r, "OK(Hello) observed endpoint")?,
        })),
        Verb::Whois => {
            let count = r.u8("OK(Whois) count")?;
            let mut ids = Vec::with_capacity(usize::from(count));
            for _ in 0..count {
                ids.push(r.array::<IDENTITY_LEN>("OK(Whois) identity")?);
            }
            Ok(OkBody::Whois(ids))
        }
        Verb::Echo => {
            let bytes = r.rest();
            if bytes.len() > ECHO_MAX_LEN {
                return Err(WireError::BadLength("OK(Echo) payload exceeds 256 bytes"));
            }
            Ok(OkBody::Echo(bytes))
        }
        Verb::PathProbe => Ok(OkBody::PathProbe {
            token: r.u32("OK(PathProbe) token")?,
        }),
        Verb::WorldRequest => Ok(OkBody::World(r.rest())),
        Verb::MulticastGather => {
            let network = parse_network(&mut r, "OK(MulticastGather) network id")?;
            let group = read_group(&mut r, "OK(MulticastGather) group")?;
            let total = r.u32("OK(MulticastGather) total")?;
            let count = usize::from(r.u16("OK(MulticastGather) count")?);
            if count > MAX_GATHERED {
                return Err(WireError::BadLength(
                    "OK(MulticastGather) lists more than 1024 members",
                ));
            }
            let mut members = Vec::with_capacity(count);
            for _ in 0..count {
                members.push(parse_address(&mut r, "OK(MulticastGather) member")?);
            }
            Ok(OkBody::Gather(Gathered {
                network,
                group,
                total,
                members,
            }))
        }
        other => Ok(OkBody::Other {
            in_re_verb: other,
            body: r.rest(),
        }),
    }
}

fn parse_version(r: &mut Reader<'_>, what: &'static str) -> Result<SoftwareVersion, WireError> {
    Ok(SoftwareVersion {
        major: r.u8(what)?,
        minor: r.u8(what)?,
        patch: r.u16(what)?,
    })
}

fn emit_version(version: SoftwareVersion, out: &mut Vec<u8>) {
    out.push(version.major);
    out.push(version.minor);
    out.extend_from_slice(&version.patch.to_be_bytes());
}

fn parse_address(r: &mut Reader<'_>, what: &'static str) -> Result<NodeAddress, WireError> {
    NodeAddress::from_bytes(&r.array(what)?).map_err(|_| WireError::ReservedAddress(what))
}

fn list_len(len: usize) -> usize {
    debug_assert!(
        len <= MAX_LIST_LEN,
        "a list of {len} entries cannot be sent"
    );
    len.min(MAX_LIST_LEN)
}

fn count_byte(len: usize) -> u8 {
    // Cannot truncate: list_len caps at MAX_LIST_LEN = u8::MAX.
    list_len(len) as u8
}

fn pushed_len(len: usize) -> usize {
    debug_assert!(
        len <= MAX_PUSHED_PATHS,
        "a push of {len} endpoints cannot be sent"
    );
    len.min(MAX_PUSHED_PATHS)
}

fn echo_len(bytes: &[u8]) -> usize {
    debug_assert!(bytes.len() <= ECHO_MAX_LEN, "echo payload too long");
    bytes.len().min(ECHO_MAX_LEN)
}

fn emit_echo(bytes: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&bytes[..echo_len(bytes)]);
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
