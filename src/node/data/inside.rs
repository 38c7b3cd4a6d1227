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

use super::{DataPlane, STORM_IN, STORM_OUT, ToControl};
use crate::node::network::{ParsedFrame, judge};
use crate::node::snapshot::Snapshot;
use crate::node::switch::{DropReason, Outbound};
use crate::node::{MAX_FRAME_LEN, TapFrame};
use crate::rules::{Copies, Direction, Verdict};
use crate::types::{NetworkId, NodeAddress, Time};
use crate::wire::{self, FRAME_FORWARDED};

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
        self.sync(snap);
        let random = self.random() as u32;
        let Some(net) = self.nets.get_mut(&network) else {
            return Err(DropReason::NotAMember);
        };
        if !net.ok {
            return Err(DropReason::NotAMember);
        }
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
            match judged.verdict {
                Verdict::Accept => self.send_frame(snap, now, network, peer, 0, frame),
                Verdict::Redirect { to } => {
                    self.send_frame(snap, now, network, to, FRAME_FORWARDED, frame)
                }
                Verdict::Drop => self.stats.drop_rules += 1,
            }
            self.send_copies(snap, now, network, &judged.copies, &parsed);
        }
        Ok(())
    }

    /// Seals one frame for `peer` with its current session and queues the datagram(s)
    /// on its published route; hands it to control when either is missing, or when the
    /// network needs credentials and `peer` has not shown its own yet.
    pub(crate) fn send_frame(
        &mut self,
        snap: &Snapshot,
        now: Time,
        network: NetworkId,
        peer: NodeAddress,
        flags: u8,
        frame: &[u8],
    ) {
        if peer == snap.me || frame.len() > MAX_FRAME_LEN {
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
            let frame = self.buffer_from(frame);
            self.hand_to_control(ToControl::Frame {
                network,
                peer,
                flags,
                frame,
                introduce,
            });
            return;
        };
        let mut buf = self.buffer();
        let me = snap.me;
        let sealed = session.seal(now, &mut buf, |info, b| {
            let aad = wire::emit_data_prefix(peer, me, info.receiver_index, info.counter, b);
            let start = b.len();
            wire::emit_frame_header(network, flags, b);
            b.extend_from_slice(frame);
            (aad, start)
        });
        if sealed.is_err() {
            // Used up between the check and the seal (another worker): control rekeys.
            buf.clear();
            buf.extend_from_slice(frame);
            self.hand_to_control(ToControl::Frame {
                network,
                peer,
                flags,
                frame: buf,
                introduce: false,
            });
            return;
        }
        activity.frame_sent(now, frame.len());
        route.via.sent(now);
        self.push_datagram(route.to, buf, route.mtu);
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
            self.send_frame(
                snap,
                now,
                network,
                copy.to,
                FRAME_FORWARDED,
                &frame.bytes[..len],
            );
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
        frame: &[u8],
        retried: bool,
    ) {
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
                self.send_frame(snap, now, network, to, FRAME_FORWARDED, frame);
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
        let frame = self.buffer_from(frame);
        self.tap_push(TapFrame {
            network,
            from: peer,
            frame,
        });
    }
}
