//! Inside → outside: a frame read from our TAP becomes datagrams; and the last step of
//! outside → inside, a received Frame's checks and delivery.
//!
//! What the rules decide is carried out on both sides, as ZeroTier does: a `redirect`
//! sends the frame to its target instead (outbound) or forwards it there instead of
//! delivering it (inbound); `tee` and `watch` send each observer a copy of the frame
//! cut to the rule's length. Such frames travel with [`wire::FRAME_FORWARDED`]: the
//! receiver delivers them although their destination MAC is another's, checks that the
//! sender is a member and applies its own rules, and never copies or redirects them
//! again (so two members' rules cannot bounce a frame between them).

use super::{DataPlane, FRAME_HEADROOM, STORM_IN, STORM_OUT, ToControl};
use crate::node::network::{ParsedFrame, judge};
use crate::node::snapshot::Snapshot;
use crate::node::switch::{DropReason, Outbound};
use crate::node::{MAX_FRAME_LEN, TapFrame};
use crate::rules::{Copies, Direction, Verdict};
use crate::types::{NetworkId, NodeAddress, Time};
use crate::wire::{
    self, DATA_PREFIX_LEN, FRAGMENT_OVERHEAD, FRAME_FORWARDED, FRAME_HEADER_LEN, TAG_LEN,
};

/// A frame on its way: borrowed (copied when it is sealed or delivered), or at
/// `buf[at..]` in a buffer the seal or the delivery may take, leaving an empty one from
/// the pool in its place (a frame reassembled or copied here can go to the TAP queue as
/// it is).
pub(crate) enum Held<'a> {
    Slice(&'a [u8]),
    Buffer { buf: &'a mut Vec<u8>, at: usize },
}

impl Held<'_> {
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Held::Slice(frame) => frame,
            Held::Buffer { buf, at } => buf.get(*at..).unwrap_or_default(),
        }
    }
}

impl DataPlane {
    /// A frame read from the TAP of `network`: switched to its member(s), filtered by
    /// the sending side's rules, sealed and queued for [`poll_transmit`](Self::poll_transmit)
    /// (or handed to control when a recipient has no usable session or route). Returns
    /// the switch's reason when it drops the frame (counted by the switch); a frame the
    /// rules drop counts in `drop_rules`.
    pub fn inside(
        &mut self,
        snap: &Snapshot,
        now: Time,
        network: NetworkId,
        frame: &[u8],
    ) -> Result<(), DropReason> {
        let mut buf = self.buffer();
        buf.resize(FRAME_HEADROOM, 0);
        buf.extend_from_slice(frame);
        let result = self.inside_buffer(snap, now, network, &mut buf);
        self.recycle(buf);
        result
    }

    /// [`inside`](Self::inside) for a frame at `buf[FRAME_HEADROOM..]` (what lies before
    /// it is overwritten): the last recipient's packet is sealed where the frame lies,
    /// saving a copy. The buffer may be taken for that; `buf` is then an empty buffer
    /// from the pool.
    pub fn inside_buffer(
        &mut self,
        snap: &Snapshot,
        now: Time,
        network: NetworkId,
        buf: &mut Vec<u8>,
    ) -> Result<(), DropReason> {
        self.sync(snap);
        let random = self.random() as u32;
        let Some(net) = self.nets.get_mut(&network) else {
            return Err(DropReason::NotAMember);
        };
        if !net.ok {
            return Err(DropReason::NotAMember);
        }
        let frame = buf.get(FRAME_HEADROOM..).unwrap_or_default();
        // One parse of the header for the switch and the rules.
        let parsed = ParsedFrame::parse(frame);
        let group_frame = parsed
            .eth
            .as_ref()
            .is_some_and(|e| e.dst_mac().is_multicast());
        if group_frame && !net.storm[STORM_OUT].spend(now) {
            net.switch.count_storm_drop();
            self.stats.drop_storm += 1;
            return Err(DropReason::StormLimited);
        }
        let outbound = net.switch.outbound_parsed(parsed.eth.as_ref());
        let peers = match &outbound {
            Outbound::Unicast(peer) => std::slice::from_ref(peer),
            Outbound::Multicast(peers) => peers.as_slice(),
            Outbound::Gather(group) => {
                let frame = self.buffer_from(frame);
                self.hand_to_control(ToControl::Gather {
                    network,
                    group: *group,
                    frame,
                });
                return Ok(());
            }
            Outbound::Drop(reason) => return Err(*reason),
        };
        if group_frame && let Some(eth) = &parsed.eth {
            let group = crate::types::MulticastGroup {
                mac: eth.dst_mac(),
                adi: eth.arp_request_target().map_or(0, u32::from),
            };
            if let Some(entry) = net.switch.group(&group) {
                entry.touch(now);
            }
        }
        // The last recipient, when no copy of the frame follows it, gets the buffer.
        let mut in_place = None;
        for (i, &peer) in peers.iter().enumerate() {
            let random = if i == 0 { random } else { self.random() as u32 };
            let Some(net) = self.nets.get_mut(&network) else {
                break;
            };
            let judged = judge(
                net.policy.as_deref(),
                &mut net.hits,
                &net.switch,
                Direction::Outbound,
                snap.me,
                peer,
                &parsed,
                random,
            );
            let to = match judged.verdict {
                Verdict::Accept => Some((peer, 0)),
                Verdict::Redirect { to } => Some((to, FRAME_FORWARDED)),
                Verdict::Drop => {
                    self.stats.drop_rules += 1;
                    None
                }
            };
            match to {
                Some(to) if i + 1 == peers.len() && judged.copies.is_empty() => {
                    in_place = Some(to);
                }
                Some((to, flags)) => {
                    self.send(snap, now, network, to, flags, Held::Slice(frame));
                }
                None => {}
            }
            self.send_copies(snap, now, network, &judged.copies, &parsed);
        }
        if let Some((to, flags)) = in_place {
            let held = Held::Buffer {
                buf,
                at: FRAME_HEADROOM,
            };
            self.send(snap, now, network, to, flags, held);
        }
        Ok(())
    }

    /// Seals one frame for `peer` with its current session and queues the datagram(s)
    /// on its published route; hands it to control when either is missing, or when the
    /// network needs credentials and `peer` has not shown its own yet.
    fn send(
        &mut self,
        snap: &Snapshot,
        now: Time,
        network: NetworkId,
        peer: NodeAddress,
        flags: u8,
        frame: Held<'_>,
    ) {
        let frame_len = frame.bytes().len();
        if peer == snap.me || frame_len > MAX_FRAME_LEN {
            return;
        }
        self.stats.frames_out += 1;
        let introduce = self
            .nets
            .get(&network)
            .is_some_and(|n| n.switch.needs_credentials() && !n.switch.admits(peer));
        let target = snap.peers.get(&peer).and_then(|p| {
            let session = p.session.as_ref().filter(|s| s.usable(now))?;
            Some((session, p.route.as_ref()?, &p.activity))
        });
        let (Some((session, route, activity)), false) = (target, introduce) else {
            let frame = self.buffer_from(frame.bytes());
            self.hand_to_control(ToControl::Frame {
                network,
                peer,
                flags,
                frame,
                introduce,
            });
            return;
        };
        // Where the packet starts: after room for a fragment header when it will be cut.
        let sealed_len = DATA_PREFIX_LEN + FRAME_HEADER_LEN + frame_len + TAG_LEN;
        let at = if sealed_len > route.mtu {
            FRAGMENT_OVERHEAD
        } else {
            0
        };
        let plain = at + DATA_PREFIX_LEN + FRAME_HEADER_LEN;
        let mut buf = match frame {
            Held::Buffer {
                buf: held,
                at: from,
            } => {
                let mut buf = std::mem::replace(held, self.buffer());
                if plain != from {
                    buf.resize(buf.len().max(plain + frame_len), 0);
                    buf.copy_within(from..from + frame_len, plain);
                    buf.truncate(plain + frame_len);
                }
                buf
            }
            Held::Slice(frame) => {
                let mut buf = self.buffer();
                buf.resize(plain, 0);
                buf.extend_from_slice(frame);
                buf
            }
        };
        let me = snap.me;
        let sealed = session.seal(now, &mut buf, |info, b| {
            let aad = wire::data_prefix(peer, me, info.receiver_index, info.counter);
            b[at..at + DATA_PREFIX_LEN].copy_from_slice(&aad);
            b[at + DATA_PREFIX_LEN..plain].copy_from_slice(&wire::frame_header(network, flags));
            (aad, at + DATA_PREFIX_LEN)
        });
        if sealed.is_err() {
            // Used up between the check and the seal (another worker): control rekeys.
            // The seal failed before writing anything: the frame is still plaintext.
            buf.drain(..plain);
            self.hand_to_control(ToControl::Frame {
                network,
                peer,
                flags,
                frame: buf,
                introduce: false,
            });
            return;
        }
        activity.frame_sent(now, frame_len);
        route.via.sent(now);
        if at == 0 {
            self.push_transmit(route.to, buf);
        } else {
            self.push_fragments(route.to, buf, route.mtu);
        }
    }

    /// Sends each observer its copy of `frame` (cut to the rule's length), flagged as
    /// forwarded.
    fn send_copies(
        &mut self,
        snap: &Snapshot,
        now: Time,
        network: NetworkId,
        copies: &Copies,
        frame: &ParsedFrame<'_>,
    ) {
        let Some(eth) = &frame.eth else {
            return;
        };
        let header = frame.bytes.len() - eth.payload.len();
        for copy in copies.iter() {
            let len = header + copy.payload_len.min(eth.payload.len());
            self.stats.frames_copied += 1;
            let cut = Held::Slice(&frame.bytes[..len]);
            self.send(snap, now, network, copy.to, FRAME_FORWARDED, cut);
        }
    }

    /// Delivers a Frame an authenticated `peer` sent on `network` to the TAP queue, if
    /// the network is OK, its switch admits it and the receiving side's rules accept it;
    /// forwards it where those rules redirect or copy it. A frame with
    /// [`FRAME_FORWARDED`] (another member's copy or redirection) needs only its sender
    /// to be a member and our rules to accept it, and goes nowhere else.
    ///
    /// A frame from a peer that has not shown its credential on a private network goes
    /// to control to wait for it, unless it `retried` (waited already).
    #[allow(clippy::too_many_arguments)] // one received frame's whole context
    pub(crate) fn deliver(
        &mut self,
        snap: &Snapshot,
        now: Time,
        peer: NodeAddress,
        network: NetworkId,
        flags: u8,
        held: Held<'_>,
        retried: bool,
    ) {
        let frame = held.bytes();
        self.sync(snap);
        let random = self.random() as u32;
        let Some(net) = self.nets.get_mut(&network) else {
            self.stats.drop_not_joined += 1;
            return;
        };
        if net.ok && !retried && net.switch.needs_credentials() && !net.switch.admits(peer) {
            let frame = self.buffer_from(frame);
            self.hand_to_control(ToControl::Stranger {
                network,
                peer,
                flags,
                frame,
            });
            return;
        }
        let parsed = ParsedFrame::parse(frame);
        if parsed
            .eth
            .as_ref()
            .is_some_and(|e| e.dst_mac().is_multicast())
            && !net.storm[STORM_IN].spend(now)
        {
            net.switch.count_storm_drop();
            self.stats.drop_storm += 1;
            return;
        }
        let forwarded = flags & FRAME_FORWARDED != 0;
        let admitted = if forwarded {
            net.switch.inbound_forwarded(peer, parsed.eth.as_ref())
        } else {
            net.switch.inbound_parsed(peer, parsed.eth.as_ref())
        };
        match admitted {
            Err(DropReason::BridgeLoop) => {
                self.stats.drop_bridge_loop += 1;
                return;
            }
            Err(_) => {
                self.stats.drop_not_member += 1;
                return;
            }
            Ok(()) if !net.ok => {
                self.stats.drop_not_member += 1;
                return;
            }
            Ok(()) => {}
        }
        // The receiver's own copy of the rules: a modified sender cannot bypass them.
        let judged = judge(
            net.policy.as_deref(),
            &mut net.hits,
            &net.switch,
            Direction::Inbound,
            peer,
            snap.me,
            &parsed,
            random,
        );
        if !forwarded {
            self.send_copies(snap, now, network, &judged.copies, &parsed);
        }
        match judged.verdict {
            Verdict::Accept => {}
            Verdict::Redirect { to } if !forwarded => {
                self.send(snap, now, network, to, FRAME_FORWARDED, Held::Slice(frame));
                return;
            }
            Verdict::Redirect { .. } | Verdict::Drop => {
                self.stats.drop_rules += 1;
                return;
            }
        }
        if let Some(p) = snap.peers.get(&peer) {
            p.activity.frame_received(now, frame.len());
        }
        self.stats.frames_in += 1;
        let (frame, start) = match held {
            Held::Slice(frame) => (self.buffer_from(frame), 0),
            Held::Buffer { buf, at } => (std::mem::replace(buf, self.buffer()), at),
        };
        let frame = TapFrame {
            network,
            from: peer,
            frame,
        };
        self.tap_push(frame, start);
    }
}
