//! The session table of one node or root: every [`Tunnel`] it has, the map from local
//! session index to peer, the cache of verified identities, and whole-packet handling
//! for the three authenticated packet kinds (HandshakeInit, HandshakeResp, Data) and
//! for CookieReply. Every HandshakeInit passes the [`Guard`] (mac1, and under load
//! mac2 and a per-address budget) before any public-key work, and is refused unless
//! its timestamp is newer than the last one accepted from that peer.
//!
//! Contract: [`SessionTable::open`] is the only way to turn a Data datagram into
//! plaintext, and it returns the peer address the *session* belongs to, which it has
//! checked against the (unauthenticated) source address in the header. Everything a
//! core does with a packet's contents starts from that. (The node's data plane opens
//! Data on confirmed sessions itself, from the snapshot its control core publishes;
//! it checks the same session-owner rule, and hands every other packet to the table.)
//! [`SessionTable::take_changed`] tells the owner when confirmed sessions changed, so it
//! publishes them again. The table never reads a clock
//! or OS randomness: `now` is an input, the RNG is seeded at construction, and the
//! wall clock our own handshake timestamps come from is `now` plus the origin the
//! driver sets with [`SessionTable::set_wall_origin`].

use std::collections::HashMap;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use super::guard::{self, Guard, MacKeys, Source, Verdict};
use super::identity::{Identity, IdentityCache, PublicIdentity};
use super::session::{self, HandshakeTimestamp};
use super::tunnel::{Tunnel, TunnelError};
use crate::types::{Endpoint, NodeAddress, Time, UnixTime};
use crate::wire::{self, Header, MAC_LEN, Message, Outer};

/// Why a packet was refused by the session table; each is a drop counter in the cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// A session-level failure (replay, decryption, expiry, ...).
    #[error(transparent)]
    Tunnel(#[from] TunnelError),
    /// We hold no identity for that address, so no handshake can start.
    #[error("unknown peer")]
    UnknownPeer,
    /// The packet's index names no session of ours.
    #[error("unknown session index")]
    UnknownIndex,
    /// The session's peer is not the header's source address.
    #[error("source address does not match the session")]
    SourceMismatch,
    /// A handshake that failed cryptographically or carried an invalid identity.
    #[error("handshake rejected")]
    Handshake,
    /// A packet too short for its kind.
    #[error("malformed packet")]
    Malformed,
    /// A HandshakeInit answered before, or not newer than the last one accepted.
    #[error("replayed handshake")]
    Replay,
    /// A HandshakeInit whose mac1 is wrong (junk, or meant for someone else).
    #[error("handshake with a bad mac1")]
    BadMac,
    /// A HandshakeInit over its source address's budget while we are under load.
    #[error("handshake over its source's budget")]
    RateLimited,
    /// A HandshakeInit that would have got a cookie, over the cookie budget.
    #[error("cookie reply withheld: over the cookie budget")]
    CookieWithheld,
}

/// What to send back for a HandshakeInit the table accepted.
#[derive(Debug)]
pub enum InitAnswer {
    /// A new responder session with `peer`; send `reply` (a HandshakeResp).
    Session {
        /// The initiator.
        peer: NodeAddress,
        /// The HandshakeResp datagram.
        reply: Vec<u8>,
    },
    /// Under load and the message had no valid mac2: send this CookieReply datagram
    /// back the way the message came, and nothing else.
    Cookie(Vec<u8>),
}

/// An authenticated, decrypted Data packet.
#[derive(Debug)]
pub struct Opened<'a> {
    /// The peer whose session opened it.
    pub peer: NodeAddress,
    /// The packet's counter.
    pub counter: u64,
    /// Verb and payload.
    pub plaintext: &'a [u8],
}

/// See the module documentation.
pub struct SessionTable {
    local: Identity,
    rng: ChaCha20Rng,
    tunnels: HashMap<NodeAddress, Tunnel>,
    indices: HashMap<u32, NodeAddress>,
    identities: IdentityCache,
    guard: Guard,
    /// Wall-clock time at `Time::ZERO`, for our handshake timestamps.
    wall_origin: UnixTime,
    last_timestamp: Option<HandshakeTimestamp>,
    /// Peers whose confirmed sessions appeared, were promoted, expired or went away
    /// (perhaps listed more than once), when the owner asked for them with
    /// [`SessionTable::report_changes`]; see [`SessionTable::take_changed`].
    changed: Option<Vec<NodeAddress>>,
}

impl SessionTable {
    /// A table for `local`, whose handshake randomness and session indices come from `seed`.
    pub fn new(local: Identity, seed: [u8; 32]) -> Self {
        Self {
            guard: Guard::new(local.public().agreement_key()),
            wall_origin: UnixTime::EPOCH,
            last_timestamp: None,
            local,
            rng: ChaCha20Rng::from_seed(seed),
            tunnels: HashMap::new(),
            indices: HashMap::new(),
            identities: IdentityCache::new(4096),
            changed: None,
        }
    }

    /// Sets the wall-clock time that `Time::ZERO` stands for (the driver's start), from
    /// which our handshake timestamps are made. Without it they count from the epoch,
    /// which is what the simulator wants.
    pub fn set_wall_origin(&mut self, origin: UnixTime) {
        self.wall_origin = origin;
    }

    /// True while the guard demands cookies of handshakes (see [`guard`]).
    pub fn under_load(&self, now: Time) -> bool {
        self.guard.under_load(now)
    }

    /// Our identity.
    pub fn identity(&self) -> &Identity {
        &self.local
    }

    /// Our address.
    pub fn address(&self) -> NodeAddress {
        self.local.public().address()
    }

    /// A random value from the table's seeded RNG, for callers that need one (ping IDs,
    /// fragment packet IDs, jitter).
    pub fn random_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// Verifies a 69-byte identity (proof of work included), using the cache.
    pub fn verify_identity(&mut self, bytes: &[u8]) -> Option<PublicIdentity> {
        self.identities.verify(bytes).ok()
    }

    /// The tunnel to `peer`, if we know its identity.
    pub fn tunnel(&self, peer: NodeAddress) -> Option<&Tunnel> {
        self.tunnels.get(&peer)
    }

    /// Remembers a verified identity (no-op if known).
    pub fn add_peer(&mut self, identity: PublicIdentity) {
        self.tunnels
            .entry(identity.address())
            .or_insert_with(|| Tunnel::new(identity));
    }

    /// Forgets peers whose tunnels hold nothing and that `keep` does not want; returns
    /// the addresses forgotten.
    pub fn forget_idle(&mut self, keep: impl Fn(NodeAddress) -> bool) -> Vec<NodeAddress> {
        let idle: Vec<NodeAddress> = self
            .tunnels
            .iter()
            .filter(|(a, t)| t.is_idle() && !keep(**a))
            .map(|(a, _)| *a)
            .collect();
        for a in &idle {
            self.remove_peer(*a);
        }
        idle
    }

    /// Forgets a peer and all its sessions.
    pub fn remove_peer(&mut self, peer: NodeAddress) {
        if let Some(t) = self.tunnels.remove(&peer) {
            note_changed(&mut self.changed, peer);
            for i in t.indices() {
                self.indices.remove(&i);
            }
        }
    }

    /// Number of peers with a tunnel.
    pub fn len(&self) -> usize {
        self.tunnels.len()
    }

    /// True when the table has no peers.
    pub fn is_empty(&self) -> bool {
        self.tunnels.is_empty()
    }

    /// Builds a complete HandshakeInit datagram to `peer` (whose identity must be known).
    pub fn handshake_packet(
        &mut self,
        now: Time,
        peer: NodeAddress,
    ) -> Result<Vec<u8>, TableError> {
        if !self.tunnels.contains_key(&peer) {
            return Err(TableError::UnknownPeer);
        }
        let index = self.allocate_index(peer);
        let seed = self.seed();
        let timestamp = self.timestamp(now);
        let src = self.address();
        let tunnel = self.tunnels.get_mut(&peer).ok_or(TableError::UnknownPeer)?;
        let msg1 = tunnel
            .initiate(&self.local, index, seed, timestamp, now)
            .map_err(|_| TableError::Handshake)?;
        let mut out = Vec::with_capacity(wire::HEADER_LEN + 4 + msg1.len() + 2 * MAC_LEN);
        Outer::HandshakeInit {
            sender_index: index,
            noise: &msg1,
            mac1: [0; MAC_LEN],
            mac2: [0; MAC_LEN],
        }
        .emit(peer, src, &mut out);
        let keys = MacKeys::for_responder(tunnel.remote().agreement_key());
        let mac1 = guard::write_macs(&mut out, &keys, tunnel.cookie(now));
        tunnel.set_sent_mac1(mac1);
        self.collect_freed(peer);
        Ok(out)
    }

    /// Answers a HandshakeInit datagram that arrived from `from`: passes it through the
    /// guard (which may answer with a cookie instead), verifies the initiator, records
    /// the responder session and returns the HandshakeResp to send back.
    pub fn on_handshake_init(
        &mut self,
        now: Time,
        from: Endpoint,
        datagram: &[u8],
    ) -> Result<InitAnswer, TableError> {
        self.on_handshake_init_from(now, from, false, datagram)
    }

    /// [`SessionTable::on_handshake_init`] for a caller that knows whether `from` is
    /// one of its roots: a datagram a root relayed (hop count above zero) is then held
    /// to the budgets of the node it names, not to the root's (see `guard`).
    pub fn on_handshake_init_from(
        &mut self,
        now: Time,
        from: Endpoint,
        from_root: bool,
        datagram: &[u8],
    ) -> Result<InitAnswer, TableError> {
        let Ok((
            header,
            Outer::HandshakeInit {
                sender_index,
                noise,
                ..
            },
        )) = wire::parse(datagram)
        else {
            return Err(TableError::Malformed);
        };
        let source = if from_root && header.hops > 0 {
            Source::relayed(from, header.src)
        } else {
            Source::direct(from)
        };
        let rng = &mut self.rng;
        match self.guard.check(now, source, datagram, || {
            let mut secret = [0u8; 32];
            rng.fill_bytes(&mut secret);
            secret
        }) {
            Verdict::Admit => {}
            Verdict::BadMac => return Err(TableError::BadMac),
            Verdict::RateLimited => return Err(TableError::RateLimited),
            Verdict::Withheld => return Err(TableError::CookieWithheld),
            Verdict::Cookie { mac1 } => {
                let mut nonce = [0u8; wire::COOKIE_NONCE_LEN];
                self.rng.fill_bytes(&mut nonce);
                let sealed = self.guard.cookie_reply(source, &mac1, nonce);
                let mut out = Vec::with_capacity(wire::HEADER_LEN + 60);
                Outer::CookieReply {
                    receiver_index: sender_index,
                    nonce,
                    sealed,
                }
                .emit(header.src, self.address(), &mut out);
                return Ok(InitAnswer::Cookie(out));
            }
        }
        // Cheap checks before any Diffie-Hellman: a replayed message 1 (its ephemeral key
        // was answered before) from the peer it claims to come from.
        let ephemeral: [u8; 32] = noise
            .get(..32)
            .and_then(|e| e.try_into().ok())
            .ok_or(TableError::Malformed)?;
        if self
            .tunnels
            .get(&header.src)
            .is_some_and(|t| t.seen_ephemeral(&ephemeral))
        {
            return Err(TableError::Replay);
        }
        let seed = self.seed();
        let responded =
            session::respond(&self.local, noise, seed).map_err(|_| TableError::Handshake)?;
        // A peer we hold a tunnel to (a rekey) was verified when the tunnel was made:
        // the same bytes need no proof-of-work check, however many peers pushed it out
        // of the identity cache since.
        let known = self
            .tunnels
            .get(&header.src)
            .map(Tunnel::remote)
            .filter(|r| r.to_bytes()[..] == responded.initiator[..])
            .cloned();
        let initiator = match known {
            Some(id) => id,
            None => self
                .identities
                .verify(&responded.initiator)
                .map_err(|_| TableError::Handshake)?,
        };
        let peer = initiator.address();
        if peer != header.src {
            return Err(TableError::SourceMismatch);
        }
        // Pin the identity: another key pair claiming a known address (a 40-bit
        // collision) is refused.
        if self
            .tunnels
            .get(&peer)
            .is_some_and(|t| *t.remote() != initiator)
        {
            return Err(TableError::Handshake);
        }
        self.add_peer(initiator);
        // Invariant: `add_peer` just inserted the tunnel if it was missing.
        let tunnel = self.tunnels.get_mut(&peer).expect("tunnel added above");
        if !tunnel.accept_timestamp(responded.timestamp) {
            return Err(TableError::Replay);
        }
        let index = self.allocate_index(peer);
        let tunnel = self.tunnels.get_mut(&peer).expect("tunnel added above");
        tunnel.accept(responded.keys, index, sender_index, ephemeral, now);
        self.collect_freed(peer);
        let mut out = Vec::with_capacity(wire::HEADER_LEN + 8 + responded.reply.len());
        Outer::HandshakeResp {
            sender_index: index,
            receiver_index: sender_index,
            noise: &responded.reply,
        }
        .emit(peer, self.address(), &mut out);
        Ok(InitAnswer::Session { peer, reply: out })
    }

    /// Takes a CookieReply to a HandshakeInit of ours; returns the peer, to which the
    /// caller sends a new HandshakeInit (it carries the cookie in mac2) at once.
    pub fn on_cookie_reply(
        &mut self,
        now: Time,
        header: &Header,
        receiver_index: u32,
        nonce: &[u8; wire::COOKIE_NONCE_LEN],
        sealed: &[u8; wire::COOKIE_LEN],
    ) -> Result<NodeAddress, TableError> {
        let peer = self.owner_of(receiver_index, header.src)?;
        let tunnel = self.tunnels.get_mut(&peer).ok_or(TableError::UnknownPeer)?;
        tunnel.take_cookie(now, receiver_index, nonce, sealed)?;
        Ok(peer)
    }

    /// Completes a handshake we started; returns the peer whose session is now current.
    pub fn on_handshake_resp(
        &mut self,
        now: Time,
        header: &Header,
        sender_index: u32,
        receiver_index: u32,
        noise: &[u8],
    ) -> Result<NodeAddress, TableError> {
        let peer = self.owner_of(receiver_index, header.src)?;
        let tunnel = self.tunnels.get_mut(&peer).ok_or(TableError::UnknownPeer)?;
        let generation = tunnel.generation();
        let result = tunnel.complete(&self.local, receiver_index, sender_index, noise, now);
        if tunnel.generation() != generation {
            note_changed(&mut self.changed, peer);
        }
        self.collect_freed(peer);
        result?;
        Ok(peer)
    }

    /// Authenticates and decrypts a whole Data datagram in place. Returns the peer, the
    /// packet's counter (requests are answered by it) and the plaintext (a verb and its
    /// payload).
    pub fn open<'a>(
        &mut self,
        now: Time,
        datagram: &'a mut [u8],
    ) -> Result<Opened<'a>, TableError> {
        let data = wire::parse_data_mut(datagram).map_err(|_| TableError::Malformed)?;
        let peer = self.owner_of(data.receiver_index, data.header.src)?;
        let tunnel = self.tunnels.get_mut(&peer).ok_or(TableError::UnknownPeer)?;
        let counter = data.counter;
        let generation = tunnel.generation();
        let result = tunnel.open(
            now,
            data.receiver_index,
            counter,
            &data.aad,
            data.ciphertext,
        );
        if tunnel.generation() != generation {
            note_changed(&mut self.changed, peer);
        }
        self.collect_freed(peer);
        Ok(Opened {
            peer,
            counter,
            plaintext: result?,
        })
    }

    /// Seals `msg` for `peer` into a complete Data datagram appended to `out`.
    pub fn seal(
        &mut self,
        now: Time,
        peer: NodeAddress,
        msg: &Message<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), TableError> {
        self.seal_with(now, peer, out, |o| msg.emit(o))
    }

    /// Seals an already encoded message (verb and payload) for `peer`.
    pub fn seal_raw(
        &mut self,
        now: Time,
        peer: NodeAddress,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), TableError> {
        self.seal_with(now, peer, out, |o| o.extend_from_slice(plaintext))
    }

    fn seal_with(
        &mut self,
        now: Time,
        peer: NodeAddress,
        out: &mut Vec<u8>,
        plaintext: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), TableError> {
        let src = self.address();
        let tunnel = self.tunnels.get_mut(&peer).ok_or(TableError::UnknownPeer)?;
        let base = out.len();
        let sealed = tunnel.seal(now, out, |info, buf| {
            let aad = wire::emit_data_prefix(peer, src, info.receiver_index, info.counter, buf);
            let start = buf.len();
            plaintext(buf);
            (aad, start)
        });
        if let Err(e) = sealed {
            out.truncate(base);
            return Err(e.into());
        }
        Ok(())
    }

    /// `peer` says it holds no session with `remote_index` (see [`Tunnel::peer_lost`]):
    /// true when that was our current session with it, which is then dropped.
    pub fn peer_lost(&mut self, peer: NodeAddress, remote_index: u32) -> bool {
        let Some(tunnel) = self.tunnels.get_mut(&peer) else {
            return false;
        };
        if !tunnel.peer_lost(remote_index) {
            return false;
        }
        note_changed(&mut self.changed, peer);
        for i in tunnel.take_freed() {
            self.indices.remove(&i);
        }
        true
    }

    /// Expires old sessions of every tunnel and forgets their indices.
    pub fn expire(&mut self, now: Time) {
        for (&peer, tunnel) in self.tunnels.iter_mut() {
            let generation = tunnel.generation();
            tunnel.expire(now);
            if tunnel.generation() != generation {
                note_changed(&mut self.changed, peer);
            }
            for i in tunnel.take_freed() {
                self.indices.remove(&i);
            }
        }
    }

    /// The peers (each perhaps more than once) of which a confirmed session appeared,
    /// was promoted, expired or went away since the last call: the signal to publish
    /// their sessions again. Empty unless [`report_changes`](Self::report_changes) was called.
    pub fn take_changed(&mut self) -> Vec<NodeAddress> {
        self.changed
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// From now on, remember which peers' confirmed sessions change, for
    /// [`take_changed`](Self::take_changed) (an owner that never takes them, a root,
    /// does not call this, so the list cannot grow).
    pub fn report_changes(&mut self) {
        self.changed.get_or_insert_with(Vec::new);
    }

    /// Every tunnel, by peer address.
    pub fn tunnels(&self) -> impl Iterator<Item = (NodeAddress, &Tunnel)> + '_ {
        self.tunnels.iter().map(|(a, t)| (*a, t))
    }

    /// Every peer address with a tunnel.
    pub fn peers(&self) -> impl Iterator<Item = NodeAddress> + '_ {
        self.tunnels.keys().copied()
    }

    /// Our timestamp for a HandshakeInit made at `now`: wall-clock time, and always
    /// later than the one before.
    fn timestamp(&mut self, now: Time) -> HandshakeTimestamp {
        let micros = self.wall_origin.as_micros().saturating_add(now.as_micros());
        let mut t = HandshakeTimestamp::from_unix_micros(micros);
        if let Some(last) = self.last_timestamp.filter(|l| t <= *l) {
            t = last.next();
        }
        self.last_timestamp = Some(t);
        t
    }

    /// The peer our session `index` belongs to, which must be the packet's (claimed)
    /// source `src`.
    fn owner_of(&self, index: u32, src: NodeAddress) -> Result<NodeAddress, TableError> {
        let peer = *self.indices.get(&index).ok_or(TableError::UnknownIndex)?;
        if peer != src {
            return Err(TableError::SourceMismatch);
        }
        Ok(peer)
    }

    fn seed(&mut self) -> [u8; 32] {
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        seed
    }

    fn allocate_index(&mut self, peer: NodeAddress) -> u32 {
        loop {
            let i = self.rng.next_u32();
            if i != 0 && !self.indices.contains_key(&i) {
                self.indices.insert(i, peer);
                return i;
            }
        }
    }

    fn collect_freed(&mut self, peer: NodeAddress) {
        if let Some(t) = self.tunnels.get_mut(&peer) {
            for i in t.take_freed() {
                self.indices.remove(&i);
            }
        }
    }
}

/// Lists `peer` in a table's changed peers, when its owner asked for them (a free
/// function, so it works while a tunnel of the table is borrowed).
fn note_changed(changed: &mut Option<Vec<NodeAddress>>, peer: NodeAddress) {
    if let Some(changed) = changed {
        changed.push(peer);
    }
}

/// Which source nodes were recently told SessionUnknown: at most one answer per source
/// node per [`LostSessionReplies::EVERY`], from a table of at most
/// [`LostSessionReplies::MAX`] sources, so a flood of Data packets on unknown indices
/// costs a bounded trickle of 16-byte answers.
#[derive(Debug, Default)]
pub struct LostSessionReplies {
    last: HashMap<NodeAddress, Time>,
}

impl LostSessionReplies {
    /// Least time between two answers to one source.
    pub const EVERY: Duration = Duration::from_secs(1);
    /// Most sources remembered at once; when full, answers wait until entries age out.
    pub const MAX: usize = 1024;

    /// True when `src` may be answered now (and records that it was).
    pub fn allow(&mut self, now: Time, src: NodeAddress) -> bool {
        if self
            .last
            .get(&src)
            .is_some_and(|t| now.since(*t) < Self::EVERY)
        {
            return false;
        }
        if self.last.len() >= Self::MAX && !self.last.contains_key(&src) {
            self.last.retain(|_, t| now.since(*t) < Self::EVERY);
            if self.last.len() >= Self::MAX {
                return false;
            }
        }
        self.last.insert(src, now);
        true
    }
}
