//! The outer packet: the 12-byte clear header, the per-kind bodies, a zero-copy view
//! for relays, and the Data prefix/AAD helpers for the seal and open paths.
//!
//! Layout and authentication rules are in the [module docs](super). Invariants:
//! a [`Packet`] always holds at least [`HEADER_LEN`] bytes with two valid node
//! addresses; [`parse`] accepts every kind (unknown ones as [`Outer::Unknown`]) so
//! roots can relay what they do not understand.

use super::WireError;
use super::reader::Reader;
use crate::types::NodeAddress;

/// Length of the clear outer header.
pub const HEADER_LEN: usize = 12;
/// Length of a Data packet before its ciphertext: header, receiver index, counter.
/// These bytes (flags zeroed) are the AEAD associated data.
pub const DATA_PREFIX_LEN: usize = 24;
/// Length of the Poly1305 tag at the end of every Data packet.
pub const TAG_LEN: usize = 16;
/// The largest hop count the 3-bit field holds; a relay drops a packet that already
/// has it rather than forward it again.
pub const MAX_HOPS: u8 = 7;

/// Length of each of the two MACs that end a HandshakeInit (see `crypto::guard`).
pub const MAC_LEN: usize = 16;
/// Length of a CookieReply's nonce (XChaCha20-Poly1305).
pub const COOKIE_NONCE_LEN: usize = 24;
/// Length of a CookieReply's sealed cookie: 16 bytes and a 16-byte tag.
pub const COOKIE_LEN: usize = 32;

/// Mask of the hop count bits in the flags byte.
const HOPS_MASK: u8 = 0x07;

/// Byte offsets and ranges of every outer field, so code and docs name the same thing.
pub mod field {
    use core::ops::Range;

    /// Packet kind (see [`Kind`](super::Kind)).
    pub const KIND: usize = 0;
    /// Flags: hops in bits 0-2, bits 3-7 reserved. Not authenticated.
    pub const FLAGS: usize = 1;
    /// Destination node address.
    pub const DEST: Range<usize> = 2..7;
    /// Source node address.
    pub const SRC: Range<usize> = 7..12;

    /// HandshakeInit and HandshakeResp: the sender's session index.
    pub const SENDER_INDEX: Range<usize> = 12..16;
    /// HandshakeInit: start of Noise IK message 1.
    pub const INIT_NOISE: usize = 16;
    /// HandshakeResp: the initiator's session index, echoed.
    pub const RESP_RECEIVER_INDEX: Range<usize> = 16..20;
    /// HandshakeResp: start of Noise IK message 2.
    pub const RESP_NOISE: usize = 20;

    /// Data: the receiver's session index.
    pub const DATA_RECEIVER_INDEX: Range<usize> = 12..16;
    /// Data: the AEAD counter (big-endian here; little-endian in the nonce).
    pub const DATA_COUNTER: Range<usize> = 16..24;
    /// Data: start of ciphertext and tag.
    pub const DATA_CIPHERTEXT: usize = 24;

    /// Fragment: identifies the fragmented packet together with the source address.
    pub const FRAG_PACKET_ID: Range<usize> = 12..20;
    /// Fragment: this fragment's position, `0..count`.
    pub const FRAG_INDEX: usize = 20;
    /// Fragment: how many fragments the packet was cut into, `2..=16`.
    pub const FRAG_COUNT: usize = 21;
    /// Fragment: start of the chunk.
    pub const FRAG_CHUNK: usize = 22;

    /// SessionUnknown: the receiver index of the Data packet that found no session.
    pub const UNKNOWN_RECEIVER_INDEX: Range<usize> = 12..16;

    /// CookieReply: the initiator's session index from the HandshakeInit answered.
    pub const COOKIE_RECEIVER_INDEX: Range<usize> = 12..16;
    /// CookieReply: the XChaCha20-Poly1305 nonce.
    pub const COOKIE_NONCE: Range<usize> = 16..40;
    /// CookieReply: the sealed cookie and its tag.
    pub const COOKIE_SEALED: Range<usize> = 40..72;
}

/// What an outer packet carries. Unknown values are kept, not rejected, so roots relay
/// packets from newer versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// 0x01: first Noise IK handshake message.
    HandshakeInit,
    /// 0x02: second Noise IK handshake message.
    HandshakeResp,
    /// 0x03: an encrypted message.
    Data,
    /// 0x04: one piece of a larger packet.
    Fragment,
    /// 0x05: "I hold no session with this index" (the sender restarted or forgot it).
    SessionUnknown,
    /// 0x06: "I am under load: repeat your HandshakeInit with this cookie".
    CookieReply,
    /// Any other value.
    Unknown(u8),
}

impl From<u8> for Kind {
    fn from(value: u8) -> Self {
        match value {
            0x01 => Kind::HandshakeInit,
            0x02 => Kind::HandshakeResp,
            0x03 => Kind::Data,
            0x04 => Kind::Fragment,
            0x05 => Kind::SessionUnknown,
            0x06 => Kind::CookieReply,
            other => Kind::Unknown(other),
        }
    }
}

impl From<Kind> for u8 {
    fn from(kind: Kind) -> u8 {
        match kind {
            Kind::HandshakeInit => 0x01,
            Kind::HandshakeResp => 0x02,
            Kind::Data => 0x03,
            Kind::Fragment => 0x04,
            Kind::SessionUnknown => 0x05,
            Kind::CookieReply => 0x06,
            Kind::Unknown(other) => other,
        }
    }
}

/// The decoded outer header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// What follows the header.
    pub kind: Kind,
    /// How many relays have forwarded the packet (0 = straight from the source).
    /// Only the low 3 bits travel; [`Header::emit`] stores at most [`MAX_HOPS`].
    pub hops: u8,
    /// The node the packet is for.
    pub dest: NodeAddress,
    /// The node that sent it (not authenticated outside Data packets).
    pub src: NodeAddress,
}

impl Header {
    /// A header for a packet the caller originates (hops 0).
    pub fn new(kind: Kind, dest: NodeAddress, src: NodeAddress) -> Self {
        Self {
            kind,
            hops: 0,
            dest,
            src,
        }
    }

    /// Reads the header at the start of `buf`; the rest of `buf` is not looked at.
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf);
        let kind = Kind::from(r.u8("outer header kind")?);
        let flags = r.u8("outer header flags")?;
        let dest = r.array("outer header destination address")?;
        let src = r.array("outer header source address")?;
        Ok(Self {
            kind,
            hops: flags & HOPS_MASK,
            dest: NodeAddress::from_bytes(&dest)
                .map_err(|_| WireError::ReservedAddress("outer header destination"))?,
            src: NodeAddress::from_bytes(&src)
                .map_err(|_| WireError::ReservedAddress("outer header source"))?,
        })
    }

    /// The 12 header bytes. Hops above [`MAX_HOPS`] are stored as `MAX_HOPS`;
    /// reserved flag bits are 0.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[field::KIND] = self.kind.into();
        b[field::FLAGS] = self.hops.min(MAX_HOPS);
        b[field::DEST].copy_from_slice(&self.dest.to_bytes());
        b[field::SRC].copy_from_slice(&self.src.to_bytes());
        b
    }

    /// Appends the 12 header bytes to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }
}

/// A zero-copy view of an outer packet, for code that only needs the header (roots
/// relaying) or edits the hop count in place.
///
/// Invariant: the buffer holds at least [`HEADER_LEN`] bytes and both addresses are
/// valid; [`Packet::new_checked`] is the only constructor, and the only mutation is
/// of the hop bits.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` after checking it holds a complete header with valid addresses.
    /// The body is not checked; use [`Packet::outer`] or [`parse`] for that.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        Header::parse(buffer.as_ref())?;
        Ok(Self { buffer })
    }

    /// The packet kind.
    pub fn kind(&self) -> Kind {
        Kind::from(self.buffer.as_ref()[field::KIND])
    }

    /// The raw flags byte (hops plus reserved bits).
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The hop count, 0..=7.
    pub fn hops(&self) -> u8 {
        self.flags() & HOPS_MASK
    }

    /// The destination node.
    pub fn dest(&self) -> NodeAddress {
        self.address(field::DEST)
    }

    /// The source node.
    pub fn src(&self) -> NodeAddress {
        self.address(field::SRC)
    }

    fn address(&self, range: core::ops::Range<usize>) -> NodeAddress {
        let mut b = [0u8; NodeAddress::LEN];
        b.copy_from_slice(&self.buffer.as_ref()[range]);
        NodeAddress::from_bytes(&b)
            .expect("invariant: new_checked validated both addresses and they are never mutated")
    }

    /// The decoded header.
    pub fn header(&self) -> Header {
        Header {
            kind: self.kind(),
            hops: self.hops(),
            dest: self.dest(),
            src: self.src(),
        }
    }

    /// Everything after the header.
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// The whole packet.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Parses the body according to the kind.
    pub fn outer(&self) -> Result<Outer<'_>, WireError> {
        Outer::parse_body(self.kind(), self.body())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the hop count, keeping the reserved flag bits as received. Values above
    /// [`MAX_HOPS`] are stored as `MAX_HOPS`. The hop count is not authenticated, so
    /// this is the one change a relay may make.
    pub fn set_hops(&mut self, hops: u8) {
        let flags = &mut self.buffer.as_mut()[field::FLAGS];
        *flags = (*flags & !HOPS_MASK) | hops.min(MAX_HOPS);
    }

    /// Adds one hop before relaying; returns `false` (and changes nothing) when the
    /// packet already has [`MAX_HOPS`] and must be dropped instead.
    pub fn increment_hops(&mut self) -> bool {
        let hops = self.hops();
        if hops >= MAX_HOPS {
            return false;
        }
        self.set_hops(hops + 1);
        true
    }
}

/// The body of an outer packet, borrowing from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outer<'a> {
    /// First handshake message.
    HandshakeInit {
        /// The initiator's session index (the responder puts it in Data packets to it).
        sender_index: u32,
        /// Noise IK message 1, opaque to this layer.
        noise: &'a [u8],
        /// Keyed by the responder's public key; checked before any public-key work.
        mac1: [u8; MAC_LEN],
        /// Keyed by a cookie from the responder, or zero when the sender has none.
        mac2: [u8; MAC_LEN],
    },
    /// Second handshake message.
    HandshakeResp {
        /// The responder's session index.
        sender_index: u32,
        /// The initiator's session index, from the HandshakeInit being answered.
        receiver_index: u32,
        /// Noise IK message 2, opaque to this layer.
        noise: &'a [u8],
    },
    /// An encrypted message.
    Data {
        /// The receiver's session index, which selects the keys.
        receiver_index: u32,
        /// The AEAD counter (nonce), unique per packet in a session.
        counter: u64,
        /// Ciphertext followed by the [`TAG_LEN`]-byte tag (so at least `TAG_LEN`).
        ciphertext: &'a [u8],
    },
    /// One piece of a larger packet.
    Fragment {
        /// Identifies the packet (per source) the piece belongs to.
        packet_id: u64,
        /// Position of this piece, `0..count`.
        index: u8,
        /// How many pieces, `2..=16`.
        count: u8,
        /// The bytes of this piece (at least one).
        chunk: &'a [u8],
    },
    /// The sender holds no session with `receiver_index`: a Data packet to it found none
    /// (the sender restarted, or expired the session). Not authenticated: it only
    /// prompts a new handshake when `receiver_index` is that of the session in use,
    /// which only the two ends and on-path observers know.
    SessionUnknown {
        /// The receiver index of the Data packet that found no session.
        receiver_index: u32,
    },
    /// The answer of a responder under load to a HandshakeInit without a valid mac2:
    /// a cookie for the sender's address, sealed so that only the sender of that
    /// HandshakeInit can open it (see `crypto::guard`).
    CookieReply {
        /// The initiator's session index from the HandshakeInit answered.
        receiver_index: u32,
        /// XChaCha20-Poly1305 nonce.
        nonce: [u8; COOKIE_NONCE_LEN],
        /// The sealed 16-byte cookie and its tag.
        sealed: [u8; COOKIE_LEN],
    },
    /// A kind this version does not know; relayed by roots, dropped by nodes.
    Unknown {
        /// The kind byte.
        kind: u8,
        /// Everything after the header.
        body: &'a [u8],
    },
}

/// The fields of one Fragment packet (what [`Reassembler::insert`](super::Reassembler::insert)
/// takes), from [`Outer::piece`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece<'a> {
    /// Identifies the packet (per source) the piece belongs to.
    pub packet_id: u64,
    /// Position of this piece, `0..count`.
    pub index: u8,
    /// How many pieces, `2..=16`.
    pub count: u8,
    /// The bytes of this piece.
    pub chunk: &'a [u8],
}

/// Parses a whole datagram: header plus body. Never panics, never allocates.
pub fn parse(buf: &[u8]) -> Result<(Header, Outer<'_>), WireError> {
    let header = Header::parse(buf)?;
    let body = buf.get(HEADER_LEN..).unwrap_or_default();
    Ok((header, Outer::parse_body(header.kind, body)?))
}

impl<'a> Outer<'a> {
    fn parse_body(kind: Kind, body: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        match kind {
            Kind::HandshakeInit => {
                let sender_index = r.u32("HandshakeInit sender index")?;
                let rest = r.rest();
                let noise_len = rest
                    .len()
                    .checked_sub(2 * MAC_LEN)
                    .ok_or(WireError::Truncated("HandshakeInit MACs"))?;
                let (noise, macs) = rest.split_at(noise_len);
                let mut mac1 = [0; MAC_LEN];
                let mut mac2 = [0; MAC_LEN];
                mac1.copy_from_slice(&macs[..MAC_LEN]);
                mac2.copy_from_slice(&macs[MAC_LEN..]);
                Ok(Outer::HandshakeInit {
                    sender_index,
                    noise,
                    mac1,
                    mac2,
                })
            }
            Kind::HandshakeResp => Ok(Outer::HandshakeResp {
                sender_index: r.u32("HandshakeResp sender index")?,
                receiver_index: r.u32("HandshakeResp receiver index")?,
                noise: r.rest(),
            }),
            Kind::Data => {
                let receiver_index = r.u32("Data receiver index")?;
                let counter = r.u64("Data counter")?;
                let ciphertext = r.rest();
                if ciphertext.len() < TAG_LEN {
                    return Err(WireError::Truncated("Data authentication tag"));
                }
                Ok(Outer::Data {
                    receiver_index,
                    counter,
                    ciphertext,
                })
            }
            Kind::Fragment => {
                let packet_id = r.u64("Fragment packet id")?;
                let index = r.u8("Fragment index")?;
                let count = r.u8("Fragment count")?;
                let chunk = r.rest();
                check_fragment(index, count, chunk)?;
                Ok(Outer::Fragment {
                    packet_id,
                    index,
                    count,
                    chunk,
                })
            }
            Kind::SessionUnknown => {
                let receiver_index = r.u32("SessionUnknown receiver index")?;
                if !r.rest().is_empty() {
                    return Err(WireError::BadLength(
                        "SessionUnknown carries only a receiver index",
                    ));
                }
                Ok(Outer::SessionUnknown { receiver_index })
            }
            Kind::CookieReply => {
                let receiver_index = r.u32("CookieReply receiver index")?;
                let nonce = r.array::<COOKIE_NONCE_LEN>("CookieReply nonce")?;
                let sealed = r.array::<COOKIE_LEN>("CookieReply cookie")?;
                if !r.rest().is_empty() {
                    return Err(WireError::BadLength(
                        "CookieReply carries only an index, a nonce and a cookie",
                    ));
                }
                Ok(Outer::CookieReply {
                    receiver_index,
                    nonce,
                    sealed,
                })
            }
            Kind::Unknown(kind) => Ok(Outer::Unknown { kind, body }),
        }
    }

    /// The fields of a Fragment; `None` for any other kind.
    pub fn piece(&self) -> Option<Piece<'a>> {
        match *self {
            Outer::Fragment {
                packet_id,
                index,
                count,
                chunk,
            } => Some(Piece {
                packet_id,
                index,
                count,
                chunk,
            }),
            _ => None,
        }
    }

    /// The kind byte this body travels under.
    pub fn kind(&self) -> Kind {
        match self {
            Outer::HandshakeInit { .. } => Kind::HandshakeInit,
            Outer::HandshakeResp { .. } => Kind::HandshakeResp,
            Outer::Data { .. } => Kind::Data,
            Outer::Fragment { .. } => Kind::Fragment,
            Outer::SessionUnknown { .. } => Kind::SessionUnknown,
            Outer::CookieReply { .. } => Kind::CookieReply,
            Outer::Unknown { kind, .. } => Kind::from(*kind),
        }
    }

    /// Length of the whole datagram [`Outer::emit`] writes, header included.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + match self {
                Outer::HandshakeInit { noise, .. } => 4 + noise.len() + 2 * MAC_LEN,
                Outer::HandshakeResp { noise, .. } => 8 + noise.len(),
                Outer::Data { ciphertext, .. } => 12 + ciphertext.len(),
                Outer::Fragment { chunk, .. } => 10 + chunk.len(),
                Outer::SessionUnknown { .. } => 4,
                Outer::CookieReply { .. } => 4 + COOKIE_NONCE_LEN + COOKIE_LEN,
                Outer::Unknown { body, .. } => body.len(),
            }
    }

    /// Appends a complete datagram (header with hops 0, then the body) to `out`.
    ///
    /// The caller builds values within the layout's limits (a Data ciphertext holds
    /// its tag, a fragment's index and count are in range); `emit` writes what it is
    /// given, and [`parse`] of such bytes rejects them.
    pub fn emit(&self, dest: NodeAddress, src: NodeAddress, out: &mut Vec<u8>) {
        out.reserve(self.buffer_len());
        Header::new(self.kind(), dest, src).emit(out);
        match *self {
            Outer::HandshakeInit {
                sender_index,
                noise,
                mac1,
                mac2,
            } => {
                out.extend_from_slice(&sender_index.to_be_bytes());
                out.extend_from_slice(noise);
                out.extend_from_slice(&mac1);
                out.extend_from_slice(&mac2);
            }
            Outer::HandshakeResp {
                sender_index,
                receiver_index,
                noise,
            } => {
                out.extend_from_slice(&sender_index.to_be_bytes());
                out.extend_from_slice(&receiver_index.to_be_bytes());
                out.extend_from_slice(noise);
            }
            Outer::Data {
                receiver_index,
                counter,
                ciphertext,
            } => {
                out.extend_from_slice(&receiver_index.to_be_bytes());
                out.extend_from_slice(&counter.to_be_bytes());
                out.extend_from_slice(ciphertext);
            }
            Outer::Fragment {
                packet_id,
                index,
                count,
                chunk,
            } => {
                out.extend_from_slice(&packet_id.to_be_bytes());
                out.push(index);
                out.push(count);
                out.extend_from_slice(chunk);
            }
            Outer::SessionUnknown { receiver_index } => {
                out.extend_from_slice(&receiver_index.to_be_bytes())
            }
            Outer::CookieReply {
                receiver_index,
                nonce,
                sealed,
            } => {
                out.extend_from_slice(&receiver_index.to_be_bytes());
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&sealed);
            }
            Outer::Unknown { body, .. } => out.extend_from_slice(body),
        }
    }
}

/// Checks the fragment fields every fragment must satisfy on its own.
pub(super) fn check_fragment(index: u8, count: u8, chunk: &[u8]) -> Result<(), WireError> {
    if !(2..=super::MAX_FRAGMENTS).contains(&usize::from(count)) {
        return Err(WireError::BadFragment("count must be 2..=16"));
    }
    if index >= count {
        return Err(WireError::BadFragment("index must be below count"));
    }
    if chunk.is_empty() {
        return Err(WireError::BadFragment("chunk is empty"));
    }
    Ok(())
}

/// The AEAD associated data of a Data packet: its first [`DATA_PREFIX_LEN`] bytes with
/// the flags byte (hop count) set to zero, so relays can change hops without breaking
/// authentication.
///
/// `prefix` is the packet (or at least its first 24 bytes). A shorter input never
/// panics: the missing bytes read as zero, which cannot authenticate any real packet
/// ([`parse`] rejects such a packet before it gets here).
pub fn data_aad(prefix: &[u8]) -> [u8; DATA_PREFIX_LEN] {
    let mut aad = [0u8; DATA_PREFIX_LEN];
    let n = prefix.len().min(DATA_PREFIX_LEN);
    aad[..n].copy_from_slice(&prefix[..n]);
    aad[field::FLAGS] = 0;
    aad
}

/// Appends the 24-byte prefix of a Data packet (header with hops 0, receiver index,
/// counter) to `out` and returns the AAD for sealing, which equals those bytes.
///
/// The send path needs no copy beyond writing the plaintext once:
///
/// ```text
/// let start = out.len();
/// let aad = emit_data_prefix(dest, src, receiver_index, counter, &mut out);
/// message.emit(&mut out);                        // plaintext after the prefix
/// seal(counter, &aad, &mut out[start + DATA_PREFIX_LEN..]) and append the tag
/// ```
pub fn emit_data_prefix(
    dest: NodeAddress,
    src: NodeAddress,
    receiver_index: u32,
    counter: u64,
    out: &mut Vec<u8>,
) -> [u8; DATA_PREFIX_LEN] {
    let prefix = data_prefix(dest, src, receiver_index, counter);
    out.extend_from_slice(&prefix);
    prefix
}

/// The prefix [`emit_data_prefix`] appends, for a caller that writes it in place.
pub fn data_prefix(
    dest: NodeAddress,
    src: NodeAddress,
    receiver_index: u32,
    counter: u64,
) -> [u8; DATA_PREFIX_LEN] {
    let mut prefix = [0u8; DATA_PREFIX_LEN];
    prefix[..HEADER_LEN].copy_from_slice(&Header::new(Kind::Data, dest, src).to_bytes());
    prefix[field::DATA_RECEIVER_INDEX].copy_from_slice(&receiver_index.to_be_bytes());
    prefix[field::DATA_COUNTER].copy_from_slice(&counter.to_be_bytes());
    prefix
}

/// A Data packet split for opening in place: the decoded prefix, its AAD, and the
/// ciphertext (with tag) as a mutable slice of the datagram buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct DataMut<'a> {
    /// The outer header as received (hops included).
    pub header: Header,
    /// The receiver's session index.
    pub receiver_index: u32,
    /// The AEAD counter.
    pub counter: u64,
    /// The associated data ([`data_aad`] of the packet).
    pub aad: [u8; DATA_PREFIX_LEN],
    /// Ciphertext and tag, at least [`TAG_LEN`] bytes, to decrypt in place.
    pub ciphertext: &'a mut [u8],
}

/// Parses a Data packet for the receive path, handing back the ciphertext mutably so
/// it can be decrypted in the receive buffer without a copy.
pub fn parse_data_mut(buf: &mut [u8]) -> Result<DataMut<'_>, WireError> {
    let (header, outer) = parse(buf)?;
    let Outer::Data {
        receiver_index,
        counter,
        ..
    } = outer
    else {
        return Err(WireError::UnexpectedKind(header.kind.into()));
    };
    let aad = data_aad(buf);
    let ciphertext = buf
        .get_mut(field::DATA_CIPHERTEXT..)
        .ok_or(WireError::Truncated("Data ciphertext"))?;
    Ok(DataMut {
        header,
        receiver_index,
        counter,
        aad,
        ciphertext,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr(v: u64) -> NodeAddress {
        NodeAddress::new(v).expect("test address is valid")
    }

    fn a() -> NodeAddress {
        addr(0x89e92ceee5)
    }

    fn b() -> NodeAddress {
        addr(0x0102030405)
    }

    fn samples() -> Vec<Outer<'static>> {
        vec![
            Outer::HandshakeInit {
                sender_index: 0xdead_beef,
                noise: &[7; 96],
                mac1: [1; MAC_LEN],
                mac2: [2; MAC_LEN],
            },
            Outer::HandshakeResp {
                sender_index: 1,
                receiver_index: 0xdead_beef,
                noise: &[9; 48],
            },
            Outer::Data {
                receiver_index: 42,
                counter: 0x0102_0304_0506_0708,
                ciphertext: &[0xaa; 40],
            },
            Outer::Data {
                receiver_index: 42,
                counter: 0,
                ciphertext: &[0xbb; TAG_LEN],
            },
            Outer::Fragment {
                packet_id: 99,
                index: 3,
                count: 4,
                chunk: b"chunk",
            },
            Outer::Unknown {
                kind: 0x7f,
                body: b"from the future",
            },
            Outer::Unknown {
                kind: 0x00,
                body: &[],
            },
            Outer::SessionUnknown {
                receiver_index: 0x0a0b_0c0d,
            },
            Outer::CookieReply {
                receiver_index: 0xdead_beef,
                nonce: [3; COOKIE_NONCE_LEN],
                sealed: [4; COOKIE_LEN],
            },
        ]
    }

    #[test]
    fn header_layout_matches_the_diagram() {
        let mut out = Vec::new();
        Outer::Data {
            receiver_index: 0x1122_3344,
            counter: 0x5566_7788_99aa_bbcc,
            ciphertext: &[0xee; TAG_LEN],
        }
        .emit(a(), b(), &mut out);
        assert_eq!(
            &out[..DATA_PREFIX_LEN],
            &[
                0x03, 0x00, 0x89, 0xe9, 0x2c, 0xee, 0xe5, 0x01, 0x02, 0x03, 0x04, 0x05, 0x11, 0x22,
                0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc
            ]
        );
        assert_eq!(out.len(), DATA_PREFIX_LEN + TAG_LEN);
    }

    #[test]
    fn every_kind_round_trips() {
        for outer in samples() {
            let mut out = Vec::new();
            outer.emit(a(), b(), &mut out);
            assert_eq!(out.len(), outer.buffer_len(), "{outer:?}");
            let (header, parsed) = parse(&out).unwrap();
            assert_eq!(header, Header::new(outer.kind(), a(), b()));
            assert_eq!(parsed, outer);
        }
    }

    #[test]
    fn every_truncation_into_the_fixed_part_is_an_error() {
        for outer in samples() {
            let mut out = Vec::new();
            outer.emit(a(), b(), &mut out);
            let fixed = match outer.kind() {
                Kind::HandshakeInit => HEADER_LEN + 4 + 2 * MAC_LEN,
                Kind::CookieReply => field::COOKIE_SEALED.end,
                Kind::HandshakeResp => HEADER_LEN + 8,
                Kind::Data => DATA_PREFIX_LEN + TAG_LEN,
                Kind::Fragment => field::FRAG_CHUNK + 1,
                Kind::SessionUnknown => field::UNKNOWN_RECEIVER_INDEX.end,
                Kind::Unknown(_) => HEADER_LEN,
            };
            for len in 0..out.len() {
                let result = parse(&out[..len]);
                if len < fixed {
                    assert!(result.is_err(), "{outer:?} cut to {len} parsed");
                }
            }
        }
    }

    #[test]
    fn session_unknown_with_trailing_bytes_is_refused() {
        let mut out = Vec::new();
        Outer::SessionUnknown { receiver_index: 7 }.emit(a(), b(), &mut out);
        out.extend_from_slice(&[0; 32]);
        assert_eq!(
            parse(&out),
            Err(WireError::BadLength(
                "SessionUnknown carries only a receiver index"
            ))
        );
    }

    #[test]
    fn reserved_addresses_and_bad_fragments_are_rejected() {
        let mut out = Vec::new();
        samples()[0].emit(a(), b(), &mut out);
        let mut zero_dest = out.clone();
        zero_dest[field::DEST].fill(0);
        assert_eq!(
            parse(&zero_dest),
            Err(WireError::ReservedAddress("outer header destination"))
        );
        let mut ff_src = out.clone();
        ff_src[field::SRC.start] = 0xff;
        assert_eq!(
            parse(&ff_src),
            Err(WireError::ReservedAddress("outer header source"))
        );

        for (index, count, chunk) in [
            (0u8, 1u8, &b"x"[..]),
            (0, 17, b"x"),
            (2, 2, b"x"),
            (0, 2, b""),
        ] {
            let mut out = Vec::new();
            Outer::Fragment {
                packet_id: 1,
                index,
                count,
                chunk,
            }
            .emit(a(), b(), &mut out);
            assert!(
                matches!(parse(&out), Err(WireError::BadFragment(_))),
                "index {index} count {count} chunk {chunk:?}"
            );
        }
    }

    #[test]
    fn reserved_flag_bits_are_ignored_and_kept_by_relays() {
        let mut out = Vec::new();
        samples()[2].emit(a(), b(), &mut out);
        out[field::FLAGS] = 0b1010_1000 | 2;
        let (header, _) = parse(&out).unwrap();
        assert_eq!(header.hops, 2);

        let mut packet = Packet::new_checked(&mut out[..]).unwrap();
        assert!(packet.increment_hops());
        assert_eq!(packet.hops(), 3);
        assert_eq!(packet.flags(), 0b1010_1000 | 3);
        packet.set_hops(200);
        assert_eq!(packet.hops(), MAX_HOPS);
        assert!(
            !packet.increment_hops(),
            "a packet at the hop limit is not relayed"
        );
        assert_eq!(packet.hops(), MAX_HOPS);
    }

    #[test]
    fn packet_view_reads_the_header_and_body() {
        let mut out = Vec::new();
        samples()[1].emit(a(), b(), &mut out);
        let packet = Packet::new_checked(&out[..]).unwrap();
        assert_eq!(packet.kind(), Kind::HandshakeResp);
        assert_eq!(packet.dest(), a());
        assert_eq!(packet.src(), b());
        assert_eq!(packet.header(), Header::new(Kind::HandshakeResp, a(), b()));
        assert_eq!(packet.body().len(), out.len() - HEADER_LEN);
        assert_eq!(packet.outer().unwrap(), samples()[1]);
        assert_eq!(
            Packet::new_checked(&out[..HEADER_LEN - 1]).unwrap_err(),
            WireError::Truncated("outer header source address")
        );
        // Unknown kinds have a valid header so roots can relay them.
        let mut unknown = out.clone();
        unknown[field::KIND] = 0x42;
        assert_eq!(
            Packet::new_checked(&unknown[..]).unwrap().kind(),
            Kind::Unknown(0x42)
        );
    }

    #[test]
    fn aad_ignores_hops_but_covers_everything_else() {
        let mut out = Vec::new();
        let aad = emit_data_prefix(a(), b(), 7, 9, &mut out);
        assert_eq!(&out[..], &aad[..]);
        out.extend_from_slice(&[0u8; TAG_LEN]);
        let mut relayed = out.clone();
        Packet::new_checked(&mut relayed[..]).unwrap().set_hops(5);
        assert_eq!(data_aad(&relayed), aad);
        for i in (0..DATA_PREFIX_LEN).filter(|&i| i != field::FLAGS) {
            let mut changed = out.clone();
            changed[i] ^= 1;
            assert_ne!(data_aad(&changed), aad, "byte {i} must be authenticated");
        }
        // Short input never panics.
        assert_eq!(data_aad(&[3, 5]), {
            let mut x = [0u8; DATA_PREFIX_LEN];
            x[0] = 3;
            x
        });
    }

    #[test]
    fn data_opens_in_place() {
        let mut out = Vec::new();
        let aad = emit_data_prefix(a(), b(), 7, 9, &mut out);
        out.extend_from_slice(b"plaintext then tag..");
        out[field::FLAGS] = 4;
        let data = parse_data_mut(&mut out).unwrap();
        assert_eq!(data.header.hops, 4);
        assert_eq!((data.receiver_index, data.counter), (7, 9));
        assert_eq!(data.aad, aad);
        data.ciphertext[0] = b'P';
        assert_eq!(&out[DATA_PREFIX_LEN..DATA_PREFIX_LEN + 2], b"Pl");

        let mut init = Vec::new();
        samples()[0].emit(a(), b(), &mut init);
        assert_eq!(
            parse_data_mut(&mut init),
            Err(WireError::UnexpectedKind(0x01))
        );
    }

    fn arb_outer() -> impl Strategy<Value = (Kind, u8, Vec<u8>, u32, u32, u64)> {
        (
            prop_oneof![
                Just(Kind::HandshakeInit),
                Just(Kind::HandshakeResp),
                Just(Kind::Data),
                Just(Kind::Fragment),
                Just(Kind::SessionUnknown),
                Just(Kind::CookieReply),
                (7u8..).prop_map(Kind::Unknown),
                Just(Kind::Unknown(0)),
            ],
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 16..200),
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
        )
    }

    proptest! {
        #[test]
        fn prop_round_trip((kind, small, bytes, i, j, n) in arb_outer(),
                           d in 1u64..0xff_0000_0000, s in 1u64..0xff_0000_0000) {
            let count = 2 + small % 15;
            let outer = match kind {
                Kind::HandshakeInit => Outer::HandshakeInit { sender_index: i, noise: &bytes, mac1: [small; MAC_LEN], mac2: [j as u8; MAC_LEN] },
                Kind::CookieReply => Outer::CookieReply { receiver_index: i, nonce: [small; COOKIE_NONCE_LEN], sealed: [j as u8; COOKIE_LEN] },
                Kind::HandshakeResp => Outer::HandshakeResp { sender_index: i, receiver_index: j, noise: &bytes },
                Kind::Data => Outer::Data { receiver_index: i, counter: n, ciphertext: &bytes },
                Kind::Fragment => Outer::Fragment { packet_id: n, index: small % count, count, chunk: &bytes },
                Kind::SessionUnknown => Outer::SessionUnknown { receiver_index: i },
                Kind::Unknown(k) => Outer::Unknown { kind: k, body: &bytes },
            };
            let mut out = Vec::new();
            outer.emit(addr(d), addr(s), &mut out);
            prop_assert_eq!(out.len(), outer.buffer_len());
            let (header, parsed) = parse(&out).unwrap();
            prop_assert_eq!(header, Header::new(kind, addr(d), addr(s)));
            prop_assert_eq!(parsed, outer);
        }

        #[test]
        fn prop_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(&bytes);
            let mut copy = bytes.clone();
            let _ = parse_data_mut(&mut copy);
            if let Ok(mut p) = Packet::new_checked(copy) {
                let _ = p.outer();
                p.increment_hops();
            }
        }
    }
}
