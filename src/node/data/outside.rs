//! Outside → inside: a datagram becomes a frame for the TAP (or work for control).

use super::inside::Held;
use super::{DataPlane, ToControl};
use crate::crypto::table::TableError;
use crate::node::snapshot::{Came, RxSession, Snapshot};
use crate::types::{Endpoint, NodeAddress, Time};
use crate::wire::{self, Arrival, DATA_PREFIX_LEN, FRAME_HEADER_LEN, Message, Outer};

impl DataPlane {
    /// A datagram from `from`. A Data packet on a confirmed session is copied into a
    /// reused buffer and opened there; fragments are reassembled in reused buffers, kept
    /// apart by how they arrived (on a published path of the peer they claim to come
    /// from, or from some other address: see [`wire::Arrival`]). Frames
    /// go to [`poll_tap`](Self::poll_tap), anything else to
    /// [`poll_control`](Self::poll_control).
    pub fn outside(&mut self, snap: &Snapshot, now: Time, from: Endpoint, datagram: &[u8]) {
        self.stats.rx_datagrams += 1;
        self.sync(snap);
        let Some((rx, direct)) = self.classify(snap, now, from, datagram, None) else {
            return;
        };
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        buf.extend_from_slice(datagram);
        // A delivered frame may keep the buffer; the next datagram gets another.
        self.open(snap, now, from, direct, rx, Packet::Ours(&mut buf));
        self.scratch = buf;
    }

    /// [`outside`](Self::outside) decrypting in the caller's receive buffer, whose
    /// contents are unspecified afterwards.
    pub fn outside_in_place(
        &mut self,
        snap: &Snapshot,
        now: Time,
        from: Endpoint,
        datagram: &mut [u8],
    ) {
        self.stats.rx_datagrams += 1;
        self.sync(snap);
        if let Some((rx, direct)) = self.classify(snap, now, from, datagram, None) {
            self.open(snap, now, from, direct, rx, Packet::Callers(datagram));
        }
    }

    /// Everything before decryption: parse, addresses, fragments (a completed packet is
    /// handled here in place), hand-over to control. Returns the confirmed session to
    /// open a Data packet with, and whether it came with zero hops. `relayed` is set for
    /// a packet reassembled from fragments of which one came through a relay: its inner
    /// header still says zero hops.
    fn classify<'s>(
        &mut self,
        snap: &'s Snapshot,
        now: Time,
        from: Endpoint,
        datagram: &[u8],
        relayed: Option<bool>,
    ) -> Option<(&'s RxSession, bool)> {
        let (header, outer) = match wire::parse(datagram) {
            Ok(x) => x,
            Err(_) => {
                self.stats.drop_malformed += 1;
                return None;
            }
        };
        if header.dest != snap.me || header.src == snap.me {
            self.stats.drop_not_for_us += 1;
            return None;
        }
        let index = match outer {
            Outer::Fragment { .. } if relayed.is_none() => {
                let piece = outer.piece()?;
                let arrival = arrival(snap, header.src, from);
                let whole = self.reassembler.insert(now, arrival, header.src, piece);
                self.stats.fragments = self.reassembler.stats();
                let mut whole = whole?;
                let relayed = Some(header.hops > 0);
                if let Some((rx, direct)) = self.classify(snap, now, from, &whole, relayed) {
                    self.open(snap, now, from, direct, rx, Packet::Ours(&mut whole));
                }
                self.reassembler.recycle(whole);
                return None;
            }
            Outer::Data { receiver_index, .. } => receiver_index,
            _ => {
                self.hand_over(from, relayed, datagram);
                return None;
            }
        };
        let Some(rx) = snap.sessions.get(&index) else {
            self.hand_over(from, relayed, datagram);
            return None;
        };
        Some((rx, header.hops == 0 && relayed != Some(true)))
    }

    fn hand_over(&mut self, from: Endpoint, relayed: Option<bool>, datagram: &[u8]) {
        let packet = self.buffer_from(datagram);
        self.hand_to_control(ToControl::Datagram {
            from,
            relayed,
            packet,
        });
    }

    fn open(
        &mut self,
        snap: &Snapshot,
        now: Time,
        from: Endpoint,
        direct: bool,
        rx: &RxSession,
        mut packet: Packet<'_>,
    ) {
        let datagram = match &mut packet {
            Packet::Callers(datagram) => &mut **datagram,
            Packet::Ours(buf) => buf.as_mut_slice(),
        };
        let Ok(data) = wire::parse_data_mut(datagram) else {
            self.stats.drop_malformed += 1;
            return;
        };
        let peer = rx.peer;
        if peer != data.header.src {
            self.stats.drop_source_mismatch += 1;
            return;
        }
        let counter = data.counter;
        let plaintext = match rx.session.open(now, counter, &data.aad, data.ciphertext) {
            Ok(p) => {
                self.authenticated += 1;
                p
            }
            Err(e) => {
                self.stats.count(TableError::Tunnel(e));
                return;
            }
        };
        let Ok(Message::Frame {
            network,
            flags,
            frame,
        }) = Message::parse(plaintext)
        else {
            let plaintext = self.buffer_from(plaintext);
            self.hand_to_control(ToControl::Opened {
                from,
                direct,
                peer,
                counter,
                plaintext,
            });
            return;
        };
        if let Some(p) = snap.peers.get(&peer) {
            let on_path = direct && p.direct == Some(from);
            let came = match (direct, on_path) {
                (false, _) => Came::Relayed,
                (true, true) => Came::OnPath,
                (true, false) => Came::Elsewhere,
            };
            p.activity.received(now, came);
            if direct && !on_path {
                self.hand_to_control(ToControl::Seen { peer, from });
            }
        }
        // The frame lies right after the Data prefix and the Frame header.
        let (len, frame_ptr) = (frame.len(), frame.as_ptr());
        let at = DATA_PREFIX_LEN + FRAME_HEADER_LEN;
        let held = match packet {
            Packet::Callers(datagram) => Held::Slice(&datagram[at..at + len]),
            Packet::Ours(buf) => {
                buf.truncate(at + len);
                Held::Buffer { buf, at }
            }
        };
        debug_assert_eq!(held.bytes().as_ptr(), frame_ptr);
        self.deliver(snap, now, peer, network, flags, held, false);
    }
}

/// Where an arriving packet lies: in the caller's receive buffer (which it keeps), or
/// in one of ours that a delivered frame may take as it is.
enum Packet<'a> {
    Callers(&'a mut [u8]),
    Ours(&'a mut Vec<u8>),
}

/// How a fragment claiming to come from `src` reached us: on a path the control core
/// published for that peer (its direct path, or the root that relays for it), or from
/// anywhere else. Only the former may displace that peer's partial packets.
fn arrival(snap: &Snapshot, src: NodeAddress, from: Endpoint) -> Arrival {
    let known = snap
        .peers
        .get(&src)
        .is_some_and(|p| p.direct == Some(from) || p.route.as_ref().is_some_and(|r| r.to == from));
    if known {
        Arrival::KnownPath
    } else {
        Arrival::Unverified(from.0.ip())
    }
}
