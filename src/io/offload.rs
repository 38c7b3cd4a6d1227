//! TAP offloads: the `virtio_net_hdr` a TAP opened with `IFF_VNET_HDR` puts before every
//! frame, TCP segmentation of the large frames the kernel hands over when the TAP
//! offers TSO, and TCP coalescing of the frames we write, so the host's TCP stack sees
//! one 64 KB segment instead of forty small ones.
//!
//! Contract:
//! - [`split_read`] turns one message read from the TAP into plain Ethernet frames, each
//!   with valid checksums, as if the host had no offloads: a frame whose checksum the
//!   kernel left to us (`NEEDS_CSUM`) is completed; a TCP segmentation frame (`TCPV4`,
//!   `TCPV6`) is cut into frames of at most `gso_size` payload bytes with the sequence
//!   numbers, IP lengths, IPv4 IDs, flags and checksums a NIC would write. Other GSO
//!   kinds are refused (the TAP does not offer them).
//! - [`Coalescer`] takes the frames delivered for one TAP, in order, and merges each
//!   flow's runs of TCP frames (same headers but for sequence number, contiguous, equal
//!   payload sizes but for a shorter last one, plain ACK or PSH on the last) into one
//!   message with a `TCPV4`/`TCPV6` header, up to [`MAX_OPEN`] flows at once; anything
//!   else is written as it came, after everything before it, marked `DATA_VALID` (the
//!   frame was authenticated end to end, and its checksums are the sender's).
//! - Pure functions on bytes: no I/O here. The node driver calls them around
//!   [`Tap`](super::tap::Tap) reads and writes.

use std::ops::Range;

/// Bytes of the `virtio_net_hdr` before every frame.
pub const VNET_HDR_LEN: usize = 10;
/// The checksum from `csum_start` on is left to the reader.
pub const F_NEEDS_CSUM: u8 = 1;
/// The frame's checksums are known to be good.
pub const F_DATA_VALID: u8 = 2;
/// Not a segmentation frame.
pub const GSO_NONE: u8 = 0;
/// TCP over IPv4 segmentation.
pub const GSO_TCPV4: u8 = 1;
/// TCP over IPv6 segmentation.
pub const GSO_TCPV6: u8 = 4;
/// Flag bit of `gso_type`: the segments carry ECN (CWR only on the first).
pub const GSO_ECN: u8 = 0x80;

const ETH_LEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const PROTO_TCP: u8 = 6;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_CWR: u8 = 0x80;
/// The largest frame a coalesced write may carry (IPv4's total-length limit plus the
/// Ethernet header).
const MAX_COALESCED: usize = ETH_LEN + 65_535;

/// Why a message read from the TAP could not be turned into frames (it is dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OffloadError {
    /// Shorter than its headers say.
    #[error("truncated offload message")]
    Truncated,
    /// A segmentation or checksum request we do not implement.
    #[error("unsupported offload: {0}")]
    Unsupported(&'static str),
}

/// The `virtio_net_hdr` (legacy layout, host byte order as the TAP uses by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// `F_NEEDS_CSUM`, `F_DATA_VALID`.
    pub flags: u8,
    /// `GSO_*`, with `GSO_ECN` or-ed in.
    pub gso_type: u8,
    /// Length of the headers (Ethernet, IP, TCP).
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where the checksummed data starts.
    pub csum_start: u16,
    /// Where in it the checksum goes.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Reads the header at the start of `b`.
    pub fn parse(b: &[u8]) -> Option<VnetHdr> {
        let b = b.get(..VNET_HDR_LEN)?;
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    /// The header's bytes.
    pub fn emit(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }
}

/// The header written before a frame that needs nothing from the kernel.
pub const PLAIN: [u8; VNET_HDR_LEN] = [F_DATA_VALID, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// Turns one message read from the TAP (header and frame) into Ethernet frames with
/// valid checksums and calls `each` with every one, in order, at `scratch[headroom..]`
/// (the bytes before it are zero; `each` may write there, or take the buffer and leave
/// another in its place). Returns how many frames it produced.
pub fn split_read(
    msg: &mut [u8],
    scratch: &mut Vec<u8>,
    headroom: usize,
    mut each: impl FnMut(&mut Vec<u8>),
) -> Result<usize, OffloadError> {
    let hdr = VnetHdr::parse(msg).ok_or(OffloadError::Truncated)?;
    let frame = &mut msg[VNET_HDR_LEN..];
    match hdr.gso_type & !GSO_ECN {
        GSO_NONE => {
            if hdr.flags & F_NEEDS_CSUM != 0 {
                complete_checksum(frame, hdr.csum_start.into(), hdr.csum_offset.into())?;
            }
            start_frame(scratch, headroom, frame);
            each(scratch);
            Ok(1)
        }
        GSO_TCPV4 | GSO_TCPV6 => segment_tcp(frame, hdr, scratch, headroom, each),
        _ => Err(OffloadError::Unsupported("segmentation other than TCP")),
    }
}

/// Empties `scratch` and writes `headroom` zero bytes and then `bytes` to it.
fn start_frame(scratch: &mut Vec<u8>, headroom: usize, bytes: &[u8]) {
    scratch.clear();
    scratch.resize(headroom, 0);
    scratch.extend_from_slice(bytes);
}

/// Writes the checksum the kernel left to us: the one's complement of the sum from
/// `start` to the end (the field already holds the pseudo-header sum).
fn complete_checksum(frame: &mut [u8], start: usize, offset: usize) -> Result<(), OffloadError> {
    let at = start + offset;
    if at + 2 > frame.len() || start > frame.len() {
        return Err(OffloadError::Truncated);
    }
    let mut sum = !fold(sum_words(&frame[start..], 0));
    if sum == 0 && offset == 6 {
        // A UDP checksum of zero means "none": send all ones instead.
        sum = 0xffff;
    }
    frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}

/// Where the headers of a TCP frame are.
#[derive(Debug, Clone, Copy)]
struct TcpFrame {
    v4: bool,
    /// Offset of the TCP header.
    l4: usize,
    /// Offset of the payload.
    payload: usize,
}

impl TcpFrame {
    /// Locates the headers of an untagged TCP/IPv4 (no options) or TCP/IPv6 (no
    /// extension headers) frame; `None` for anything else.
    fn parse(f: &[u8]) -> Option<TcpFrame> {
        let ethertype = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
        let (v4, l4) = match ethertype {
            ETHERTYPE_IPV4 => {
                let vihl = *f.get(ETH_LEN)?;
                let ihl = usize::from(vihl & 0x0f) * 4;
                let frag = u16::from_be_bytes([*f.get(ETH_LEN + 6)?, *f.get(ETH_LEN + 7)?]);
                if vihl >> 4 != 4 || ihl < 20 || frag & 0x3fff != 0 {
                    return None;
                }
                if *f.get(ETH_LEN + 9)? != PROTO_TCP {
                    return None;
                }
                (true, ETH_LEN + ihl)
            }
            ETHERTYPE_IPV6 => {
                if *f.get(ETH_LEN)? >> 4 != 6 || *f.get(ETH_LEN + 6)? != PROTO_TCP {
                    return None;
                }
                (false, ETH_LEN + 40)
            }
            _ => return None,
        };
        let thl = usize::from(*f.get(l4 + 12)? >> 4) * 4;
        let payload = l4 + thl;
        if thl < 20 || payload > f.len() {
            return None;
        }
        Some(TcpFrame { v4, l4, payload })
    }

    fn seq(&self, f: &[u8]) -> u32 {
        u32::from_be_bytes([
            f[self.l4 + 4],
            f[self.l4 + 5],
            f[self.l4 + 6],
            f[self.l4 + 7],
        ])
    }

    fn flags(&self, f: &[u8]) -> u8 {
        f[self.l4 + 13]
    }

    /// Writes the IP lengths for a frame of `len` bytes and, for IPv4, the ID and the
    /// header checksum.
    fn set_ip(&self, f: &mut [u8], len: usize, id: Option<u16>) {
        if self.v4 {
            let total = (len - ETH_LEN) as u16;
            f[ETH_LEN + 2..ETH_LEN + 4].copy_from_slice(&total.to_be_bytes());
            if let Some(id) = id {
                f[ETH_LEN + 4..ETH_LEN + 6].copy_from_slice(&id.to_be_bytes());
            }
            f[ETH_LEN + 10..ETH_LEN + 12].copy_from_slice(&[0, 0]);
            let c = !fold(sum_words(&f[ETH_LEN..self.l4], 0));
            f[ETH_LEN + 10..ETH_LEN + 12].copy_from_slice(&c.to_be_bytes());
        } else {
            let payload = (len - ETH_LEN - 40) as u16;
            f[ETH_LEN + 4..ETH_LEN + 6].copy_from_slice(&payload.to_be_bytes());
        }
    }

    /// The pseudo-header sum for a TCP segment of `tcp_len` bytes.
    fn pseudo(&self, f: &[u8], tcp_len: usize) -> u32 {
        let addrs = if self.v4 {
            &f[ETH_LEN + 12..ETH_LEN + 20]
        } else {
            &f[ETH_LEN + 8..ETH_LEN + 40]
        };
        let sum = sum_words(addrs, 0) + u32::from(PROTO_TCP);
        if self.v4 {
            sum + tcp_len as u32
        } else {
            sum + (tcp_len as u32 >> 16) + (tcp_len as u32 & 0xffff)
        }
    }

    /// Writes the full TCP checksum of the frame.
    fn set_tcp_checksum(&self, f: &mut [u8]) {
        let field = self.l4 + 16;
        f[field..field + 2].copy_from_slice(&[0, 0]);
        let sum = sum_words(&f[self.l4..], self.pseudo(f, f.len() - self.l4));
        f[field..field + 2].copy_from_slice(&(!fold(sum)).to_be_bytes());
    }
}

/// Cuts a TCP segmentation frame into frames of at most `gso_size` payload bytes.
fn segment_tcp(
    frame: &[u8],
    hdr: VnetHdr,
    scratch: &mut Vec<u8>,
    headroom: usize,
    mut each: impl FnMut(&mut Vec<u8>),
) -> Result<usize, OffloadError> {
    let t = TcpFrame::parse(frame).ok_or(OffloadError::Unsupported(
        "a TCP segmentation frame that is not plain TCP/IP",
    ))?;
    if (hdr.gso_type & !GSO_ECN == GSO_TCPV4) != t.v4 {
        return Err(OffloadError::Unsupported(
            "segmentation type and IP version differ",
        ));
    }
    let mss = usize::from(hdr.gso_size);
    if mss == 0 {
        return Err(OffloadError::Unsupported("segment size 0"));
    }
    let headers = &frame[..t.payload];
    let payload = &frame[t.payload..];
    let seq0 = t.seq(frame);
    let id0 = u16::from_be_bytes([frame[ETH_LEN + 4], frame[ETH_LEN + 5]]);
    let flags = t.flags(frame);
    let count = payload.len().div_ceil(mss).max(1);
    for (i, chunk) in payload.chunks(mss).enumerate() {
        start_frame(scratch, headroom, headers);
        scratch.extend_from_slice(chunk);
        let seg = &mut scratch[headroom..];
        let seq = seq0.wrapping_add((i * mss) as u32);
        seg[t.l4 + 4..t.l4 + 8].copy_from_slice(&seq.to_be_bytes());
        let mut f = flags;
        if i + 1 < count {
            f &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            f &= !TCP_CWR;
        }
        seg[t.l4 + 13] = f;
        let len = seg.len();
        t.set_ip(seg, len, t.v4.then(|| id0.wrapping_add(i as u16)));
        t.set_tcp_checksum(seg);
        each(scratch);
    }
    if payload.is_empty() {
        start_frame(scratch, headroom, headers);
        let seg = &mut scratch[headroom..];
        let len = seg.len();
        t.set_ip(seg, len, None);
        t.set_tcp_checksum(seg);
        each(scratch);
    }
    Ok(count)
}

/// Merges the frames given to one TAP: each TCP flow's consecutive frames into one
/// segmentation message, with up to [`MAX_OPEN`] flows open at once, so interleaved
/// streams merge too. Order is kept within a flow and around every frame that merges
/// with nothing (it is written after all that came before it).
#[derive(Debug, Default)]
pub struct Coalescer {
    open: Vec<Merge>,
    spare: Vec<Merge>,
}

/// Flows a [`Coalescer`] merges at once.
pub const MAX_OPEN: usize = 8;

impl Coalescer {
    /// An empty coalescer.
    pub fn new() -> Self {
        Coalescer::default()
    }

    /// Takes `frame`; messages that must be written before anything that follows go to
    /// `write` (with the number of frames each merged).
    pub fn push(&mut self, frame: &[u8], mut write: impl FnMut(&[u8], usize)) {
        if self.open.iter_mut().any(|m| m.append(frame)) {
            return;
        }
        // A frame of a flow already open (out of sequence, other flags...) or one that
        // merges with nothing goes after everything open, which keeps the order.
        let new_flow = !self.open.iter().any(|m| m.same_flow(frame));
        if !new_flow || self.open.len() == MAX_OPEN {
            self.flush(&mut write);
        }
        let mut m = self.spare.pop().unwrap_or_default();
        m.start(frame);
        if m.run.is_some() {
            self.open.push(m);
        } else {
            self.flush(&mut write);
            let frames = m.frames;
            if let Some(message) = m.finish() {
                write(message, frames);
            }
            self.spare.push(m);
        }
    }

    /// Writes everything open, oldest first.
    pub fn flush(&mut self, mut write: impl FnMut(&[u8], usize)) {
        for mut m in self.open.drain(..) {
            let frames = m.frames;
            if let Some(message) = m.finish() {
                write(message, frames);
            }
            self.spare.push(m);
        }
    }

    /// True when nothing waits to be written.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

/// One message being merged: the first frame's headers and every merged payload.
#[derive(Debug, Default)]
struct Merge {
    /// The message being built: header room, then the (merged) frame.
    buf: Vec<u8>,
    /// The open run, if the frame in `buf` may take more.
    run: Option<Run>,
    /// Frames in `buf`.
    frames: usize,
}

#[derive(Debug, Clone, Copy)]
struct Run {
    tcp: TcpFrame,
    /// Payload bytes of the first frame: the segment size.
    segment: usize,
    /// The sequence number the next frame must start at.
    next_seq: u32,
}

impl Merge {
    /// Adds `frame` to the open run; false when it cannot join.
    fn append(&mut self, frame: &[u8]) -> bool {
        let Some(run) = self.run else {
            return false;
        };
        let Some(t) = TcpFrame::parse(frame) else {
            return false;
        };
        let first = &self.buf[VNET_HDR_LEN..];
        let len = frame.len() - t.payload;
        let fits = t.v4 == run.tcp.v4
            && t.payload == run.tcp.payload
            && len > 0
            && len <= run.segment
            && first.len() + len <= MAX_COALESCED
            && t.seq(frame) == run.next_seq
            && t.flags(frame) & !TCP_PSH == TCP_ACK
            && same_headers(first, frame, run.tcp);
        if !fits {
            return false;
        }
        self.buf.extend_from_slice(&frame[t.payload..]);
        self.frames += 1;
        self.run = if len < run.segment || t.flags(frame) & TCP_PSH != 0 {
            let at = VNET_HDR_LEN + run.tcp.l4 + 13;
            self.buf[at] |= t.flags(frame) & TCP_PSH;
            None
        } else {
            Some(Run {
                next_seq: run.next_seq.wrapping_add(len as u32),
                ..run
            })
        };
        true
    }

    /// True when `frame` is TCP between the same hosts and ports as this message.
    fn same_flow(&self, frame: &[u8]) -> bool {
        let (Some(a), Some(b)) = (
            TcpFrame::parse(&self.buf[VNET_HDR_LEN..]),
            TcpFrame::parse(frame),
        ) else {
            return false;
        };
        let first = &self.buf[VNET_HDR_LEN..];
        let addrs = if a.v4 {
            ETH_LEN + 12..ETH_LEN + 20
        } else {
            ETH_LEN + 8..ETH_LEN + 40
        };
        a.v4 == b.v4
            && a.l4 == b.l4
            && first[addrs.clone()] == frame[addrs]
            && first[a.l4..a.l4 + 4] == frame[b.l4..b.l4 + 4]
    }

    /// Starts a new message with `frame` (the previous one must have been finished).
    fn start(&mut self, frame: &[u8]) {
        self.buf.clear();
        self.buf.extend_from_slice(&PLAIN);
        self.buf.extend_from_slice(frame);
        self.frames = 1;
        self.run = TcpFrame::parse(frame).and_then(|t| {
            let segment = frame.len() - t.payload;
            let plain_ack = t.flags(frame) == TCP_ACK;
            (segment > 0 && plain_ack).then(|| Run {
                tcp: t,
                segment,
                next_seq: t.seq(frame).wrapping_add(segment as u32),
            })
        });
    }

    /// Completes the message (header, lengths, checksums) and returns it, ready to
    /// write; `None` when empty. The merge is empty afterwards.
    fn finish(&mut self) -> Option<&[u8]> {
        if self.frames == 0 {
            return None;
        }
        let frames = std::mem::take(&mut self.frames);
        self.run = None;
        if frames > 1 {
            let t = TcpFrame::parse(&self.buf[VNET_HDR_LEN..])?;
            let segment = self.first_segment(t);
            let frame = &mut self.buf[VNET_HDR_LEN..];
            let len = frame.len();
            t.set_ip(frame, len, None);
            let field = t.l4 + 16;
            let partial = fold(t.pseudo(frame, len - t.l4));
            frame[field..field + 2].copy_from_slice(&partial.to_be_bytes());
            let hdr = VnetHdr {
                flags: F_NEEDS_CSUM,
                gso_type: if t.v4 { GSO_TCPV4 } else { GSO_TCPV6 },
                hdr_len: t.payload as u16,
                gso_size: segment as u16,
                csum_start: t.l4 as u16,
                csum_offset: 16,
            };
            self.buf[..VNET_HDR_LEN].copy_from_slice(&hdr.emit());
        }
        Some(&self.buf)
    }

    /// The segment size of the open message: what `start` recorded as the first
    /// frame's payload (kept in the message's own IP length until `finish`).
    fn first_segment(&self, t: TcpFrame) -> usize {
        let f = &self.buf[VNET_HDR_LEN..];
        let ip_len = if t.v4 {
            usize::from(u16::from_be_bytes([f[ETH_LEN + 2], f[ETH_LEN + 3]]))
        } else {
            usize::from(u16::from_be_bytes([f[ETH_LEN + 4], f[ETH_LEN + 5]])) + 40
        };
        ip_len + ETH_LEN - t.payload
    }
}

/// True when `b`'s headers equal `a`'s but for what changes between segments of one
/// flow: IPv4 length, ID and checksum; IPv6 payload length; TCP sequence number,
/// checksum and the PSH flag.
fn same_headers(a: &[u8], b: &[u8], t: TcpFrame) -> bool {
    let skip: &[Range<usize>] = if t.v4 {
        &[
            ETH_LEN + 2..ETH_LEN + 6,
            ETH_LEN + 10..ETH_LEN + 12,
            t.l4 + 4..t.l4 + 8,
            t.l4 + 13..t.l4 + 14,
            t.l4 + 16..t.l4 + 18,
        ]
    } else {
        &[
            ETH_LEN + 4..ETH_LEN + 6,
            t.l4 + 4..t.l4 + 8,
            t.l4 + 13..t.l4 + 14,
            t.l4 + 16..t.l4 + 18,
        ]
    };
    let mut at = 0;
    for r in skip {
        if a[at..r.start] != b[at..r.start] {
            return false;
        }
        at = r.end;
    }
    a[at..t.payload] == b[at..t.payload]
}

/// One's-complement sum of `data` as big-endian 16-bit words (odd length padded with
/// zero), added to `init`; fold with [`fold`]. Adds the data as native-endian 32-bit
/// words into a 64-bit accumulator, which vectorizes without a byte swap per word: a
/// one's-complement sum does not depend on byte order (RFC 1071, 2.B), so the folded
/// sum is swapped into network order once at the end.
fn sum_words(data: &[u8], init: u32) -> u32 {
    let mut native = 0u64;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        native += u64::from(u32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    native += u64::from(u32::from_ne_bytes(tail));
    while native >> 16 != 0 {
        native = (native & 0xffff) + (native >> 16);
    }
    // The bytes of the native-order sum, read as big-endian: the network-order sum.
    let words = u16::from_be(native as u16);
    let mut sum = u64::from(init) + u64::from(words);
    // Fold 64 → 32 bits, keeping the carries.
    while sum >> 32 != 0 {
        sum = (sum & 0xffff_ffff) + (sum >> 32);
    }
    sum as u32
}

/// Folds a 32-bit one's-complement sum to 16 bits.
fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// True when the TCP/UDP and IPv4 checksums of `frame` verify (for tests and the
/// fuzzer-style checks below).
#[cfg(test)]
fn checksums_ok(frame: &[u8]) -> bool {
    let Some(t) = TcpFrame::parse(frame) else {
        return false;
    };
    let ip_ok = !t.v4 || fold(sum_words(&frame[ETH_LEN..t.l4], 0)) == 0xffff;
    let tcp = fold(sum_words(
        &frame[t.l4..],
        t.pseudo(frame, frame.len() - t.l4),
    ));
    ip_ok && tcp == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP/IPv4 frame with a timestamp option and `payload`, checksums valid.
    fn tcp4(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut ip = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, PROTO_TCP, 0, 0];
        ip.extend_from_slice(&[198, 18, 0, 1, 198, 18, 0, 2]);
        let options = [1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 3];
        tcp_frame(ETHERTYPE_IPV4, &ip, &options, seq, flags, payload)
    }

    /// A TCP/IPv6 frame without options, checksums valid.
    fn tcp6(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut ip = vec![0x60, 0, 0, 0, 0, 0, PROTO_TCP, 64];
        ip.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8].repeat(4));
        ip.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb9].repeat(4));
        tcp_frame(ETHERTYPE_IPV6, &ip, &[], seq, flags, payload)
    }

    fn tcp_frame(
        ethertype: u16,
        ip: &[u8],
        options: &[u8],
        seq: u32,
        flags: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(ip);
        f.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51]);
        f.extend_from_slice(&seq.to_be_bytes());
        f.extend_from_slice(&7u32.to_be_bytes());
        let offset = ((20 + options.len()) / 4) as u8;
        f.extend_from_slice(&[offset << 4, flags, 0x01, 0xf5, 0, 0, 0, 0]);
        f.extend_from_slice(options);
        f.extend_from_slice(payload);
        let t = TcpFrame::parse(&f).unwrap();
        let len = f.len();
        t.set_ip(&mut f, len, None);
        t.set_tcp_checksum(&mut f);
        f
    }

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + 3) as u8).collect()
    }

    fn with_hdr(hdr: VnetHdr, frame: &[u8]) -> Vec<u8> {
        let mut m = hdr.emit().to_vec();
        m.extend_from_slice(frame);
        m
    }

    #[test]
    fn checksum_matches_a_known_ipv4_header() {
        // RFC 1071's example style: a header whose checksum is known (0xb861).
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(!fold(sum_words(&h, 0)), 0xb861);
        // Odd lengths are padded with zero.
        assert_eq!(fold(sum_words(&[0x01], 0)), 0x0100);
    }

    #[test]
    fn a_plain_frame_passes_and_a_partial_checksum_is_completed() {
        let f = tcp4(1000, TCP_ACK, &payload(100));
        let mut scratch = Vec::new();
        let mut got = Vec::new();
        let mut m = with_hdr(VnetHdr::default(), &f);
        split_read(&mut m, &mut scratch, 0, |x| got.push(x.to_vec())).unwrap();
        assert_eq!(got, vec![f.clone()]);
        // The kernel leaves the pseudo-header sum in the field and asks us to finish.
        let t = TcpFrame::parse(&f).unwrap();
        let mut partial = f.clone();
        let p = fold(t.pseudo(&partial, partial.len() - t.l4));
        partial[t.l4 + 16..t.l4 + 18].copy_from_slice(&p.to_be_bytes());
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: t.l4 as u16,
            csum_offset: 16,
            ..VnetHdr::default()
        };
        let mut m = with_hdr(hdr, &partial);
        got.clear();
        split_read(&mut m, &mut scratch, 0, |x| got.push(x.to_vec())).unwrap();
        assert_eq!(got, vec![f]);
        assert!(checksums_ok(&got[0]));
    }

    fn segmented(gso: u8, big: &[u8], mss: u16) -> Vec<Vec<u8>> {
        let t = TcpFrame::parse(big).unwrap();
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: gso,
            hdr_len: t.payload as u16,
            gso_size: mss,
            csum_start: t.l4 as u16,
            csum_offset: 16,
        };
        let mut m = with_hdr(hdr, big);
        let mut got = Vec::new();
        let n = split_read(&mut m.clone(), &mut Vec::new(), 0, |x| got.push(x.to_vec())).unwrap();
        assert_eq!(n, got.len());
        // With headroom, taking each buffer as the data plane does: the same frames,
        // after zeroed room.
        let mut taken = Vec::new();
        split_read(&mut m, &mut Vec::new(), 56, |x| {
            taken.push(std::mem::take(x))
        })
        .unwrap();
        assert!(taken.iter().all(|t| t[..56].iter().all(|&b| b == 0)));
        let frames: Vec<&[u8]> = taken.iter().map(|t| &t[56..]).collect();
        assert_eq!(frames, got);
        got
    }

    #[test]
    fn a_tso_frame_is_cut_like_a_nic_would() {
        let data = payload(4000);
        let big = tcp4(5000, TCP_ACK | TCP_PSH, &data);
        let segs = segmented(GSO_TCPV4, &big, 1448);
        let expected: Vec<Vec<u8>> = data
            .chunks(1448)
            .enumerate()
            .map(|(i, c)| {
                let flags = if i == 2 { TCP_ACK | TCP_PSH } else { TCP_ACK };
                let mut f = tcp4(5000 + (i * 1448) as u32, flags, c);
                // Consecutive IPv4 IDs from the big frame's.
                let id = 0x1234u16 + i as u16;
                f[ETH_LEN + 4..ETH_LEN + 6].copy_from_slice(&id.to_be_bytes());
                let t = TcpFrame::parse(&f).unwrap();
                let len = f.len();
                t.set_ip(&mut f, len, None);
                f
            })
            .collect();
        assert_eq!(segs, expected);
        assert!(segs.iter().all(|s| checksums_ok(s)));
        let segs6 = segmented(GSO_TCPV6, &tcp6(1, TCP_ACK, &data), 1000);
        assert_eq!(segs6.len(), 4);
        assert!(segs6.iter().all(|s| checksums_ok(s)));
        assert_eq!(segs6[3].len(), 14 + 40 + 20 + 1000);
    }

    #[test]
    fn unsupported_or_truncated_messages_are_refused() {
        let big = tcp4(1, TCP_ACK, &payload(3000));
        let hdr = VnetHdr {
            gso_type: 3,
            gso_size: 1000,
            ..VnetHdr::default()
        };
        assert!(split_read(&mut with_hdr(hdr, &big), &mut Vec::new(), 0, |_| {}).is_err());
        // A TCPV4 request on an IPv6 frame.
        let hdr = VnetHdr {
            gso_type: GSO_TCPV4,
            gso_size: 1000,
            ..VnetHdr::default()
        };
        let v6 = tcp6(1, TCP_ACK, &payload(3000));
        assert!(split_read(&mut with_hdr(hdr, &v6), &mut Vec::new(), 0, |_| {}).is_err());
        assert!(split_read(&mut [0u8; 4], &mut Vec::new(), 0, |_| {}).is_err());
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 60,
            csum_offset: 16,
            ..VnetHdr::default()
        };
        assert!(split_read(&mut with_hdr(hdr, &[0u8; 40]), &mut Vec::new(), 0, |_| {}).is_err());
    }

    /// Coalesces `frames` as the driver does and returns the messages written.
    fn coalesce(frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut c = Coalescer::new();
        let mut out = Vec::new();
        for f in frames {
            c.push(f, |m, _| out.push(m.to_vec()));
        }
        c.flush(|m, _| out.push(m.to_vec()));
        assert!(c.is_empty());
        out
    }

    #[test]
    fn a_run_of_one_flow_becomes_one_segmentation_message_that_splits_back() {
        for v6 in [false, true] {
            let data = payload(1448 * 5 + 300);
            let frames: Vec<Vec<u8>> = data
                .chunks(1448)
                .enumerate()
                .map(|(i, c)| {
                    let flags = if i == 5 { TCP_ACK | TCP_PSH } else { TCP_ACK };
                    let seq = 77 + (i * 1448) as u32;
                    if v6 {
                        tcp6(seq, flags, c)
                    } else {
                        tcp4(seq, flags, c)
                    }
                })
                .collect();
            let out = coalesce(&frames);
            assert_eq!(out.len(), 1, "v6 {v6}");
            let hdr = VnetHdr::parse(&out[0]).unwrap();
            assert_eq!(hdr.gso_size, 1448);
            assert_eq!(hdr.flags, F_NEEDS_CSUM);
            // What the kernel would do with it: segment it again. Same frames, but the
            // IPv4 IDs, which segmentation numbers from the first.
            let mut m = out[0].clone();
            let mut back = Vec::new();
            split_read(&mut m, &mut Vec::new(), 0, |x| back.push(x.to_vec())).unwrap();
            assert_eq!(back.len(), frames.len());
            for (b, f) in back.iter().zip(&frames) {
                assert!(checksums_ok(b));
                assert_eq!(b[..ETH_LEN + 4], f[..ETH_LEN + 4]);
                assert_eq!(b[ETH_LEN + 12..], f[ETH_LEN + 12..]);
            }
        }
    }

    #[test]
    fn runs_end_at_gaps_other_flows_short_frames_and_non_ack_flags() {
        let c = payload(1000);
        let a0 = tcp4(0, TCP_ACK, &c);
        let a1 = tcp4(1000, TCP_ACK, &c);
        let gap = tcp4(5000, TCP_ACK, &c);
        let short = tcp4(2000, TCP_ACK, &c[..10]);
        let after_short = tcp4(2010, TCP_ACK, &c);
        let fin = tcp4(3010, TCP_ACK | TCP_FIN, &c);
        let mut other = tcp4(1000, TCP_ACK, &c);
        other[ETH_LEN + 19] = 9; // another destination address
        let pure_ack = tcp4(9, TCP_ACK, &[]);
        let out = coalesce(&[a0.clone(), a1.clone(), gap.clone()]);
        assert_eq!(out.len(), 2);
        let out = coalesce(&[a0.clone(), other.clone()]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1][VNET_HDR_LEN..], other[..]);
        assert_eq!(out[1][..VNET_HDR_LEN], PLAIN);
        let out = coalesce(&[a0.clone(), a1.clone(), short, after_short, fin]);
        assert_eq!(out.len(), 3);
        let out = coalesce(&[pure_ack.clone(), pure_ack]);
        assert_eq!(out.len(), 2);
        let out = coalesce(&[b"not a tcp frame at all".to_vec(), a0]);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn interleaved_flows_merge_each_and_keep_their_order() {
        let c = payload(1000);
        let other_flow = |mut f: Vec<u8>| {
            f[ETH_LEN + 19] = 9;
            let t = TcpFrame::parse(&f).unwrap();
            let len = f.len();
            t.set_ip(&mut f, len, None);
            t.set_tcp_checksum(&mut f);
            f
        };
        let mut frames = Vec::new();
        for i in 0..4u32 {
            frames.push(tcp4(i * 1000, TCP_ACK, &c));
            frames.push(other_flow(tcp4(50_000 + i * 1000, TCP_ACK, &c)));
        }
        // An ARP-like frame in the middle: everything before it is written first.
        frames.insert(
            4,
            b"\xff\xff\xff\xff\xff\xff\x02\x00\x00\x00\x00\x01\x08\x06 arp".to_vec(),
        );
        let out = coalesce(&frames);
        let merged: Vec<usize> = out
            .iter()
            .map(|m| {
                let h = VnetHdr::parse(m).unwrap();
                if h.gso_size == 0 {
                    1
                } else {
                    (m.len() - VNET_HDR_LEN - 66).div_ceil(1000)
                }
            })
            .collect();
        // Flow A's first two, flow B's first two, the ARP frame, then the rest of each.
        assert_eq!(merged, vec![2, 2, 1, 2, 2]);
        // Splitting everything back gives every flow's frames in order.
        let mut back = Vec::new();
        for m in &out {
            let mut m = m.clone();
            split_read(&mut m, &mut Vec::new(), 0, |x| back.push(x.to_vec())).unwrap();
        }
        let seqs = |dst: u8| -> Vec<u32> {
            back.iter()
                .filter_map(|f| {
                    TcpFrame::parse(f)
                        .filter(|_| f[ETH_LEN + 19] == dst)
                        .map(|t| t.seq(f))
                })
                .collect()
        };
        assert_eq!(seqs(2), vec![0, 1000, 2000, 3000]);
        assert_eq!(seqs(9), vec![50_000, 51_000, 52_000, 53_000]);
    }

    #[test]
    fn the_wide_sum_equals_the_sum_of_16_bit_words() {
        let naive = |d: &[u8], init: u32| {
            let mut sum = u64::from(init);
            for pair in d.chunks(2) {
                let hi = u64::from(pair[0]) << 8;
                sum += hi | pair.get(1).map_or(0, |&b| u64::from(b));
            }
            while sum >> 16 != 0 {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            sum as u16
        };
        let data: Vec<u8> = (0..300u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
            .collect();
        for len in 0..data.len() {
            for init in [0, 0xffff, 0x1_2345, u32::MAX >> 1] {
                assert_eq!(
                    fold(sum_words(&data[..len], init)),
                    naive(&data[..len], init),
                    "len {len}"
                );
            }
        }
        // All ones everywhere: the carries must wrap around.
        let ones = [0xffu8; 64];
        assert_eq!(fold(sum_words(&ones, 0xffff)), naive(&ones, 0xffff));
    }
}
