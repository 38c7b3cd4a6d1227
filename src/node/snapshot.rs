//! What the control core publishes for the data plane: an immutable [`Snapshot`] of
//! everything the per-frame path reads, and the per-peer [`PeerActivity`] counters the
//! data plane writes back.
//!
//! # Contract
//! - A snapshot is never changed after it is built; the control core builds a new one
//!   (and bumps [`Snapshot::version`]) only when something in it changes: a confirmed
//!   session is installed, promoted, expires or goes away; a peer's route (its direct
//!   endpoint, or the endpoint of the root that relays for it) or the route's path MTU
//!   changes; a peer appears or
//!   is forgotten; a network is joined or left, or its config or rules change, a
//!   member's credential is accepted or dropped, or a group's subscribers are gathered.
//!   The peer and session tables are [`ShardMap`]s: a new snapshot shares every part
//!   of them the change did not touch, so publishing after one peer's change does not
//!   cost a copy of every peer.
//! - It holds only confirmed sessions (`current` and `previous`). An unconfirmed
//!   responder session (`next`) stays with the control core: the first packet on it finds
//!   no index here and goes to control, which promotes the session and publishes again.
//! - The data plane reads it without locks (`Send + Sync`; a worker keeps an `Arc`), and
//!   reports per-frame facts only through [`PeerActivity`] atomics, which the control
//!   core folds into its peer table on every tick and before each input about the peer.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::network::Policy;
use super::shards::ShardMap;
use super::switch::{GroupCache, Members, SwitchSettings};
use crate::crypto::tunnel::SessionState;
use crate::types::{Endpoint, NetworkId, NodeAddress, Time};

/// Everything the data plane reads, as published by the control core.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases with every publication.
    pub(crate) version: u64,
    /// Our address.
    pub(crate) me: NodeAddress,
    /// Receiver index → confirmed session (current or previous) and its peer.
    pub(crate) sessions: ShardMap<u32, RxSession>,
    /// Every peer the control core tracks: how to seal and send to it.
    pub(crate) peers: ShardMap<NodeAddress, TxPeer>,
    /// Joined networks: status, switch settings and rules.
    pub(crate) networks: HashMap<NetworkId, NetworkView>,
}

impl Snapshot {
    /// An empty snapshot (nothing published yet).
    pub(crate) fn empty(me: NodeAddress) -> Self {
        Snapshot {
            version: 0,
            me,
            sessions: ShardMap::default(),
            peers: ShardMap::default(),
            networks: HashMap::new(),
        }
    }

    /// Increases with every publication (a worker compares it to notice a new one).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Number of peers published.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Number of confirmed sessions published.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }
}

/// A confirmed session the data plane may open with.
#[derive(Debug, Clone)]
pub(crate) struct RxSession {
    /// The peer the session belongs to (checked against the header's source).
    pub(crate) peer: NodeAddress,
    pub(crate) session: Arc<SessionState>,
}

/// How to seal for and reach one peer.
#[derive(Debug, Clone)]
pub(crate) struct TxPeer {
    /// The current session, if any (the data plane checks it is still usable).
    pub(crate) session: Option<Arc<SessionState>>,
    /// Where datagrams for the peer go; `None` while there is no way yet.
    pub(crate) route: Option<Route>,
    /// The direct path whose receive time the data plane may refresh; an authenticated
    /// zero-hop packet from any other endpoint goes to control (roaming, learning).
    pub(crate) direct: Option<Endpoint>,
    /// The peer's counters.
    pub(crate) activity: Arc<PeerActivity>,
}

impl TxPeer {
    /// Same session, route, direct path and counters (what decides whether to publish
    /// again).
    pub(crate) fn same_as(&self, other: &TxPeer) -> bool {
        let same_route = |a: &Route, b: &Route| {
            a.to == b.to && a.relayed == b.relayed && a.mtu == b.mtu && Arc::ptr_eq(&a.via, &b.via)
        };
        both_or_neither(self.session.as_ref(), other.session.as_ref(), Arc::ptr_eq)
            && both_or_neither(self.route.as_ref(), other.route.as_ref(), same_route)
            && self.direct == other.direct
            && Arc::ptr_eq(&self.activity, &other.activity)
    }
}

/// True when both are absent, or both present and `same`.
pub(crate) fn both_or_neither<T>(
    a: Option<&T>,
    b: Option<&T>,
    same: impl FnOnce(&T, &T) -> bool,
) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => same(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// Where a peer's datagrams go.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    /// The endpoint to send to: the peer's, or the relaying root's.
    pub(crate) to: Endpoint,
    /// True when a root relays.
    pub(crate) relayed: bool,
    /// Whose path `to` is (the peer's, or the root's): its send time is refreshed.
    pub(crate) via: Arc<PeerActivity>,
    /// Largest datagram this route carries (its probed path MTU); larger packets are
    /// fragmented.
    pub(crate) mtu: usize,
}

/// One joined network as the data plane sees it.
#[derive(Debug, Clone)]
pub(crate) struct NetworkView {
    /// Changes when the network is left and joined again (fresh switch and counters).
    pub(crate) epoch: u64,
    /// Changes when the settings or rules change.
    pub(crate) config: u64,
    /// True when the network is OK (frames flow).
    pub(crate) ok: bool,
    pub(crate) settings: Arc<SwitchSettings>,
    /// Flow rules; `None` carries every frame the switch admits.
    pub(crate) policy: Option<Arc<Policy>>,
    /// Members admitted by credential (a new `Arc` whenever one is added or removed).
    pub(crate) members: Arc<Members>,
    /// Gathered multicast group subscribers (a new `Arc` whenever one changes).
    pub(crate) groups: Arc<GroupCache>,
}

/// Per-frame facts about one peer, written by the data plane with plain atomic stores
/// and taken (reset to "nothing new") by the control core when it folds them in. Times
/// are microseconds plus one; 0 means nothing since the last fold. The frame and byte
/// totals only grow (for `/metrics`); [`PeerActivity::take`] leaves them alone.
#[derive(Debug, Default)]
pub struct PeerActivity {
    /// Frames sent to the peer, and their bytes (Ethernet frame lengths).
    frames_out: AtomicU64,
    bytes_out: AtomicU64,
    /// Frames from the peer delivered to a TAP, and their bytes.
    frames_in: AtomicU64,
    bytes_in: AtomicU64,
    /// Last authenticated packet from the peer.
    rx: AtomicU64,
    /// Last packet sent to the peer's published direct path (or through this root).
    tx: AtomicU64,
    /// Last user traffic (frames) either way.
    active: AtomicU64,
    /// Last authenticated zero-hop packet on the published direct path.
    path_rx: AtomicU64,
    /// Last authenticated packet that came through a root.
    relayed_rx: AtomicU64,
}

/// How an authenticated packet from a peer arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Came {
    /// Straight from the peer's published direct path.
    OnPath,
    /// Straight from another endpoint of the peer.
    Elsewhere,
    /// Through a root.
    Relayed,
}

/// Frames and bytes carried to and from one peer since it was first seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerTraffic {
    /// Frames sealed for the peer.
    pub frames_out: u64,
    /// Their Ethernet bytes.
    pub bytes_out: u64,
    /// Frames from the peer delivered to a TAP.
    pub frames_in: u64,
    /// Their Ethernet bytes.
    pub bytes_in: u64,
}

/// What [`PeerActivity::take`] hands the control core.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Activity {
    pub(crate) rx: Option<Time>,
    pub(crate) tx: Option<Time>,
    pub(crate) active: Option<Time>,
    pub(crate) path_rx: Option<Time>,
    pub(crate) relayed_rx: Option<Time>,
}

impl PeerActivity {
    /// An authenticated packet arrived the way `came` says.
    pub(crate) fn received(&self, now: Time, came: Came) {
        let t = stamp(now);
        self.rx.store(t, Ordering::Relaxed);
        match came {
            Came::OnPath => self.path_rx.store(t, Ordering::Relaxed),
            Came::Relayed => self.relayed_rx.store(t, Ordering::Relaxed),
            Came::Elsewhere => {}
        }
    }

    /// A datagram went out on the published route.
    pub(crate) fn sent(&self, now: Time) {
        self.tx.store(stamp(now), Ordering::Relaxed);
    }

    /// A frame of `len` bytes was sealed for the peer.
    pub(crate) fn frame_sent(&self, now: Time, len: usize) {
        self.active.store(stamp(now), Ordering::Relaxed);
        self.frames_out.fetch_add(1, Ordering::Relaxed);
        self.bytes_out.fetch_add(len as u64, Ordering::Relaxed);
    }

    /// A frame of `len` bytes from the peer was delivered.
    pub(crate) fn frame_received(&self, now: Time, len: usize) {
        self.active.store(stamp(now), Ordering::Relaxed);
        self.frames_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(len as u64, Ordering::Relaxed);
    }

    /// The running totals.
    pub(crate) fn traffic(&self) -> PeerTraffic {
        PeerTraffic {
            frames_out: self.frames_out.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            frames_in: self.frames_in.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
        }
    }

    /// Everything since the last call, resetting the counters.
    pub(crate) fn take(&self) -> Activity {
        Activity {
            rx: unstamp(self.rx.swap(0, Ordering::Relaxed)),
            tx: unstamp(self.tx.swap(0, Ordering::Relaxed)),
            active: unstamp(self.active.swap(0, Ordering::Relaxed)),
            path_rx: unstamp(self.path_rx.swap(0, Ordering::Relaxed)),
            relayed_rx: unstamp(self.relayed_rx.swap(0, Ordering::Relaxed)),
        }
    }

    /// Everything since the last [`take`](Self::take), without resetting.
    pub(crate) fn peek(&self) -> Activity {
        Activity {
            rx: unstamp(self.rx.load(Ordering::Relaxed)),
            tx: unstamp(self.tx.load(Ordering::Relaxed)),
            active: unstamp(self.active.load(Ordering::Relaxed)),
            path_rx: unstamp(self.path_rx.load(Ordering::Relaxed)),
            relayed_rx: unstamp(self.relayed_rx.load(Ordering::Relaxed)),
        }
    }
}

fn stamp(now: Time) -> u64 {
    now.as_micros().saturating_add(1)
}

fn unstamp(v: u64) -> Option<Time> {
    (v != 0).then(|| Time::from_micros(v - 1))
}

/// The later of two optional times.
pub(crate) fn later(a: Option<Time>, b: Option<Time>) -> Option<Time> {
    a.max(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_is_taken_once_and_peeked_without_reset() {
        let a = PeerActivity::default();
        assert_eq!(a.take(), Activity::default(), "nothing reported yet");
        let t = Time::from_millis(1_000);
        a.received(t, Came::Elsewhere);
        a.sent(t);
        a.frame_sent(t, 100);
        a.frame_received(t, 60);
        let seen = a.peek();
        assert_eq!((seen.rx, seen.tx, seen.active), (Some(t), Some(t), Some(t)));
        assert_eq!(seen.path_rx, None, "not on the published path");
        assert_eq!(a.take(), seen);
        assert_eq!(a.take(), Activity::default(), "taken once");
        // The traffic totals are not taken.
        a.frame_sent(t, 40);
        let totals = PeerTraffic {
            frames_out: 2,
            bytes_out: 140,
            frames_in: 1,
            bytes_in: 60,
        };
        assert_eq!(a.traffic(), totals);
    }

    #[test]
    fn time_zero_is_still_a_time() {
        let a = PeerActivity::default();
        a.received(Time::from_micros(0), Came::OnPath);
        assert_eq!(a.take().path_rx, Some(Time::from_micros(0)));
    }

    #[test]
    fn the_snapshot_is_shareable_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Snapshot>();
        shared::<Arc<Snapshot>>();
        shared::<PeerActivity>();
    }
}
