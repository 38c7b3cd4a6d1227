//! The byte-moving half of a packet thread, shared by the node's control thread and its
//! extra workers: one UDP socket and one queue of each network's TAP, read in bounded
//! batches into a [`FramePath`] (the whole [`Node`] on the control thread, a
//! [`DataPlane`] with the latest snapshot on a worker), and what that path produced
//! written back out.
//!
//! Contract:
//! - [`PacketIo::pump_udp`] and [`PacketIo::pump_taps`] feed one batch each and say how
//!   much they moved; a TAP message is cut into frames first ([`offload::split_read`]),
//!   each laid out with [`FRAME_HEADROOM`] bytes before it so the path can seal it in
//!   the buffer it was cut into.
//!   After a flush wrote to a TAP queue, the next `pump_taps` reads that queue once
//!   even when the runtime has not reported it readable: what the host answered while
//!   the frame was being written (an echo reply, a TCP ACK) goes out in the same turn
//!   instead of after another trip through the poller. Callers flush between
//!   `pump_udp` and `pump_taps` for that.
//! - [`PacketIo::flush`] sends the path's datagrams (one `sendmmsg`, buffers recycled)
//!   and writes its TAP frames, each flow's consecutive TCP segments merged by the
//!   [`Coalescer`], to this thread's queue of the frame's network; a frame for a network
//!   this thread has no queue of is dropped and counted, as a full switch port would.
//! - [`PacketIo::readable`] is ready when the socket or any TAP queue may have input.
//! - With a TCP link to a root set ([`PacketIo::set_tcp`], the TCP fallback, see
//!   [`super::tcp`]), datagrams for that root's endpoint go over the link instead of
//!   UDP (except in a flush after [`PacketIo::probe_udp_once`]), and what the link
//!   delivers is fed in with [`PacketIo::tcp_datagram`] as if it came over UDP from there.
//! - It never blocks and holds no locks; the TAP list is replaced by its owner
//!   ([`PacketIo::set_taps`]), which must clear it before a device is removed.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;

use super::offload::{self, Coalescer};
use super::tap::{self, Tap};
use super::tcp::TcpSender;
use super::udp::UdpIo;
use crate::node::snapshot::Snapshot;
use crate::node::{DataPlane, FRAME_HEADROOM, MAX_FRAME_LEN, Node, TapFrame};
use crate::types::{Endpoint, NetworkId, Time, Transmit};

/// Frames read from one TAP before the loop turns to the socket again.
pub const TAP_BATCH: usize = 64;

/// Where a packet thread's input goes and its output comes from.
pub trait FramePath {
    /// A datagram arrived (decrypted in place: `data` is unspecified afterwards).
    fn datagram(&mut self, now: Time, local: Endpoint, from: Endpoint, data: &mut [u8]);
    /// A frame was read from `network`'s TAP; it lies at `buf[FRAME_HEADROOM..]`, and
    /// the path may seal it there (taking the buffer and leaving another).
    fn tap_frame(&mut self, now: Time, network: NetworkId, buf: &mut Vec<u8>);
    /// The next datagram to send.
    fn poll_transmit(&mut self) -> Option<Transmit>;
    /// The next frame for a TAP: `frame[start..]` of what comes back with `start`.
    fn poll_tap(&mut self) -> Option<(TapFrame, usize)>;
    /// A buffer handed out earlier, written and given back.
    fn recycle(&mut self, buf: Vec<u8>);
    /// Packets authenticated so far (see [`Node::authenticated`]).
    fn authenticated(&self) -> u64;
}

impl FramePath for Node {
    fn datagram(&mut self, now: Time, local: Endpoint, from: Endpoint, data: &mut [u8]) {
        self.handle_datagram_in_place(now, local, from, data);
    }
    fn tap_frame(&mut self, now: Time, network: NetworkId, buf: &mut Vec<u8>) {
        // A frame the switch drops is counted there.
        let _ = self.handle_tap_buffer(now, network, buf);
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        Node::poll_transmit(self)
    }
    fn poll_tap(&mut self) -> Option<(TapFrame, usize)> {
        Node::poll_tap_at(self)
    }
    fn recycle(&mut self, buf: Vec<u8>) {
        Node::recycle(self, buf);
    }
    fn authenticated(&self) -> u64 {
        Node::authenticated(self)
    }
}

/// A worker's data plane with the snapshot it reads.
pub struct WorkerPath {
    /// The per-frame path.
    pub data: DataPlane,
    /// The latest snapshot the control thread published.
    pub snapshot: Arc<Snapshot>,
}

impl FramePath for WorkerPath {
    fn datagram(&mut self, now: Time, _local: Endpoint, from: Endpoint, data: &mut [u8]) {
        self.data.outside_in_place(&self.snapshot, now, from, data);
    }
    fn tap_frame(&mut self, now: Time, network: NetworkId, buf: &mut Vec<u8>) {
        let _ = self.data.inside_buffer(&self.snapshot, now, network, buf);
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.data.poll_transmit()
    }
    fn poll_tap(&mut self) -> Option<(TapFrame, usize)> {
        self.data.poll_tap_at()
    }
    fn recycle(&mut self, buf: Vec<u8>) {
        self.data.recycle(buf);
    }
    fn authenticated(&self) -> u64 {
        self.data.authenticated()
    }
}

/// TAP counters of one packet thread (for `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TapCounters {
    /// Frames the path delivered that no TAP queue took (none, or its queue was full).
    pub drops: u64,
    /// Messages read from a TAP that could not be turned into frames.
    pub bad: u64,
    /// Messages read from a TAP that were cut into several frames (TCP segmentation).
    pub segmented: u64,
    /// Messages written to a TAP that merged several frames.
    pub coalesced: u64,
}

impl TapCounters {
    /// The sum of two threads' counters.
    pub fn merged(&self, o: &TapCounters) -> TapCounters {
        TapCounters {
            drops: self.drops + o.drops,
            bad: self.bad + o.bad,
            segmented: self.segmented + o.segmented,
            coalesced: self.coalesced + o.coalesced,
        }
    }

    /// As `/metrics` names them.
    pub fn named(&self) -> [(&'static str, u64); 4] {
        [
            ("drop_tap_write", self.drops),
            ("drop_tap_message", self.bad),
            ("tap_segmented_messages", self.segmented),
            ("tap_coalesced_messages", self.coalesced),
        ]
    }
}

/// A packet thread's socket, TAP queues and buffers. See the module documentation.
pub struct PacketIo {
    udp: UdpIo,
    taps: Vec<(NetworkId, Arc<Tap>)>,
    /// Per TAP queue (as `taps`): written since it was last read.
    written: Vec<bool>,
    /// Datagrams the path produced, sent together.
    transmits: Vec<Transmit>,
    /// One message read from a TAP (virtio header and a frame of up to 64 KiB).
    message: Vec<u8>,
    /// Where each frame of a message is laid out to be sealed (the path may take it).
    segment: Vec<u8>,
    coalescer: Coalescer,
    counters: TapCounters,
    /// The TCP fallback's link to a root, while it is on.
    tcp: Option<TcpSender>,
    /// The next flush sends the TCP root's datagrams over UDP.
    probe_udp: bool,
    /// An authenticated datagram came over UDP from the TCP root since last asked.
    udp_from_tcp_root: bool,
}

impl PacketIo {
    /// Byte mover around `udp`, with no TAP yet.
    pub fn new(udp: UdpIo) -> Self {
        PacketIo {
            udp,
            taps: Vec::new(),
            written: Vec::new(),
            transmits: Vec::with_capacity(256),
            message: vec![0; tap::MESSAGE_LEN],
            segment: Vec::with_capacity(FRAME_HEADROOM + MAX_FRAME_LEN),
            coalescer: Coalescer::new(),
            counters: TapCounters::default(),
            tcp: None,
            probe_udp: false,
            udp_from_tcp_root: false,
        }
    }

    /// Sends the datagrams for `link`'s root over it from now on (`None`: UDP again).
    pub fn set_tcp(&mut self, link: Option<TcpSender>) {
        self.tcp = link;
        self.udp_from_tcp_root = false;
    }

    /// The next flush sends the TCP root's datagrams over UDP, to see whether UDP works.
    pub fn probe_udp_once(&mut self) {
        self.probe_udp = true;
    }

    /// True (once) when an authenticated datagram came over UDP from the TCP root.
    pub fn take_udp_from_tcp_root(&mut self) -> bool {
        std::mem::take(&mut self.udp_from_tcp_root)
    }

    /// Feeds `path` a datagram the TCP link delivered from `from`.
    pub fn tcp_datagram(
        &mut self,
        path: &mut impl FramePath,
        now: Time,
        from: Endpoint,
        data: &mut [u8],
    ) {
        path.datagram(now, self.udp.local(), from, data);
    }

    /// The socket's bound address.
    pub fn local(&self) -> Endpoint {
        self.udp.local()
    }

    /// TAP counters so far.
    pub fn counters(&self) -> TapCounters {
        self.counters
    }

    /// The TAP queues read and written from now on (an empty list lets go of them all).
    pub fn set_taps(&mut self, taps: Vec<(NetworkId, Arc<Tap>)>) {
        self.written = vec![false; taps.len()];
        self.taps = taps;
    }

    /// The TAP queues in use.
    pub fn taps(&self) -> &[(NetworkId, Arc<Tap>)] {
        &self.taps
    }

    /// Feeds `path` one batch of ready datagrams; returns how many.
    pub fn pump_udp(&mut self, path: &mut impl FramePath, now: Time) -> usize {
        let local = self.udp.local();
        let tcp_root = self.tcp.as_ref().map(TcpSender::peer);
        let heard = &mut self.udp_from_tcp_root;
        received(self.udp.try_recv_batch(|from, data| {
            // Only an authenticated datagram from the TCP root says UDP works again (a
            // forged one must not turn the fallback off).
            let before = (Some(from) == tcp_root).then(|| path.authenticated());
            path.datagram(now, local, from, data);
            *heard |= before.is_some_and(|b| path.authenticated() > b);
        }))
    }

    /// Feeds `path` up to [`TAP_BATCH`] ready messages of each TAP queue (a
    /// segmentation message cut into its frames first); returns how many messages.
    pub fn pump_taps(&mut self, path: &mut impl FramePath, now: Time) -> usize {
        let mut moved = 0;
        for ((network, tap), written) in self.taps.iter().zip(&mut self.written) {
            let mut unheard = std::mem::take(written);
            for _ in 0..TAP_BATCH {
                let read = match tap.try_read_message(&mut self.message) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && unheard => {
                        unheard = false;
                        tap.read_message_now(&mut self.message)
                    }
                    read => read,
                };
                let len = match read {
                    Ok(len) => len,
                    Err(e) => {
                        if e.kind() != std::io::ErrorKind::WouldBlock {
                            tracing::debug!(%network, "tap read: {e}");
                        }
                        break;
                    }
                };
                let message = &mut self.message[..len];
                let split = offload::split_read(message, &mut self.segment, FRAME_HEADROOM, |f| {
                    path.tap_frame(now, *network, f)
                });
                match split {
                    Ok(frames) if frames > 1 => self.counters.segmented += 1,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::trace!(%network, "tap message dropped: {e}");
                        self.counters.bad += 1;
                    }
                }
                moved += 1;
            }
        }
        moved
    }

    /// Sends every datagram `path` has queued and writes every frame it has for the TAPs.
    pub async fn flush(&mut self, path: &mut impl FramePath) {
        while let Some(t) = path.poll_transmit() {
            self.transmits.push(t);
        }
        if let Some(link) = &mut self.tcp
            && !std::mem::take(&mut self.probe_udp)
        {
            link.divert(&mut self.transmits);
        }
        if !self.transmits.is_empty() {
            self.udp.send_batch(&mut self.transmits).await;
            for t in self.transmits.drain(..) {
                path.recycle(t.contents);
            }
        }
        let mut current: Option<NetworkId> = None;
        while let Some((f, start)) = path.poll_tap() {
            if current != Some(f.network) {
                self.write_merged(current, None);
                current = Some(f.network);
            }
            self.write_merged(current, Some(f.frame.get(start..).unwrap_or_default()));
            path.recycle(f.frame);
        }
        self.write_merged(current, None);
    }

    /// Ready when the socket or any TAP queue may have input.
    pub fn readable(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.udp.poll_readable(cx).is_ready() {
                return Poll::Ready(());
            }
            for (_, tap) in &self.taps {
                if tap.poll_readable(cx).is_ready() {
                    return Poll::Ready(());
                }
            }
            Poll::Pending
        })
    }

    /// Gives `frame` to the coalescer (or, with `None`, flushes it) and writes what it
    /// hands back to `network`'s TAP queue.
    fn write_merged(&mut self, network: Option<NetworkId>, frame: Option<&[u8]>) {
        let Some(network) = network else {
            return;
        };
        let index = self.taps.iter().position(|(id, _)| *id == network);
        let tap = index.map(|i| &self.taps[i].1);
        if let Some(i) = index {
            self.written[i] = true;
        }
        let counters = &mut self.counters;
        let mut write = |message: &[u8], frames: usize| {
            if frames > 1 {
                counters.coalesced += 1;
            }
            let written = match tap {
                Some(t) => t.try_write_message(message).map_err(|e| {
                    tracing::trace!(%network, "tap write: {e}");
                }),
                None => Err(()),
            };
            if written.is_err() {
                counters.drops += 1;
            }
        };
        match frame {
            Some(f) => self.coalescer.push(f, &mut write),
            None => self.coalescer.flush(&mut write),
        }
    }
}

/// How many datagrams a receive batch delivered: none when nothing was ready, and none
/// (logged) on an error, which only costs this turn.
pub fn received(batch: std::io::Result<usize>) -> usize {
    match batch {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
        Err(e) => {
            tracing::debug!("udp receive: {e}");
            0
        }
    }
}
