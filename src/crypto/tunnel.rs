//! Per-peer encrypted sessions: the handshake state machine, the three session slots,
//! rekey and expiry timers, and replay-checked opening. Used by the node's control core
//! (`node::control`) and the root core (`root`), which add paths and verbs on top.
//!
//! A [`Tunnel`] belongs to one remote identity. It holds up to three sessions, each
//! named by the 32-bit *local index* the remote puts in Data packets it sends us:
//!
//! - `current`: the session we seal with;
//! - `previous`: the one `current` replaced, still accepted for opening until it
//!   expires, so packets in flight during a rekey are not lost;
//! - `next`: a session we created as Noise *responder*, not used for sealing until the
//!   initiator proves it holds the keys by sending a Data packet on it (WireGuard's rule).
//!   A replayed handshake message therefore costs us a DH but never displaces a working
//!   session.
//!
//! Timers (WireGuard's values): the initiator of the current session rekeys after
//! [`REKEY_AFTER`]; the responder does so [`RESPONDER_REKEY_GRACE`] later if no new
//! session arrived, so the two sides rarely both start; no session seals or opens after
//! [`REJECT_AFTER`]; an unanswered handshake is retried after [`REKEY_TIMEOUT`].
//!
//! Each session is an `Arc<`[`SessionState`]`>`: keys, an atomic send counter and a
//! replay window behind a lock, so the node's data plane can seal and open with the
//! confirmed sessions ([`Tunnel::current`], [`Tunnel::confirmed`]) from a published
//! snapshot while the tunnel (and its owner) stays with the control core. A counter is
//! never handed out twice whoever seals; the replay window is checked before and
//! updated after decryption under its lock. [`Tunnel::generation`] changes whenever the
//! confirmed sessions do, which is when the snapshot must be published again.
//!
//! Index allocation is the caller's (the core owns the index → peer map); every index
//! a tunnel stops using is reported by [`Tunnel::take_freed`] so the map stays exact.
//! No clock or randomness in here: `now` and handshake seeds are inputs.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::CryptoError;
use super::guard;
use super::identity::Identity;
use super::identity::PublicIdentity;
use super::replay::ReplayWindow;
use super::session::{self, HandshakeTimestamp, InitiatorHandshake, SessionKeys};
use crate::types::Time;
use crate::wire::{self, MAC_LEN};

/// The initiator of a session starts a new handshake once it is this old.
pub const REKEY_AFTER: Duration = Duration::from_secs(120);
/// The responder starts a rekey this much later than the initiator would.
pub const RESPONDER_REKEY_GRACE: Duration = Duration::from_secs(10);
/// No session seals or opens once it is this old.
pub const REJECT_AFTER: Duration = Duration::from_secs(180);
/// An unanswered handshake is retried after this long.
pub const REKEY_TIMEOUT: Duration = Duration::from_secs(5);
/// A session seals at most this many packets before it must be replaced.
pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);

/// Why a tunnel operation failed; each maps to a drop counter in the cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TunnelError {
    /// No session can seal right now (none yet, or all expired).
    #[error("no usable session")]
    NoSession,
    /// The index names no session of this tunnel.
    #[error("unknown session index")]
    UnknownIndex,
    /// The session is older than [`REJECT_AFTER`] or used up.
    #[error("session expired")]
    Expired,
    /// The counter was seen already or is behind the replay window.
    #[error("replayed or too old")]
    Replay,
    /// Authentication failed.
    #[error("authentication failed")]
    Decrypt,
    /// A handshake response that matches no handshake we started.
    #[error("unexpected handshake response")]
    UnexpectedResponse,
}

/// One established session, shared between the control core (which owns the
/// [`Tunnel`]) and the data plane (which reads it from a published snapshot): the keys,
/// an atomic send counter and a locked replay window, so either side may seal and open
/// with it without going through the tunnel.
pub struct SessionState {
    /// The index the remote puts in packets it sends us.
    local_index: u32,
    /// The index we put in packets we send.
    remote_index: u32,
    keys: SessionKeys,
    created: Time,
    /// Next counter to seal with; never reused (one `fetch_add` per packet).
    next_counter: AtomicU64,
    /// Checked before decryption, updated after, under the lock.
    replay: Mutex<ReplayWindow>,
    /// True when we were the Noise initiator (we drive the time-based rekey).
    initiator: bool,
}

impl std::fmt::Debug for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionState")
            .field("local_index", &self.local_index)
            .field("remote_index", &self.remote_index)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

impl SessionState {
    fn new(
        keys: SessionKeys,
        local_index: u32,
        remote_index: u32,
        now: Time,
        initiator: bool,
    ) -> Arc<Self> {
        Arc::new(SessionState {
            local_index,
            remote_index,
            keys,
            created: now,
            next_counter: AtomicU64::new(0),
            replay: Mutex::new(ReplayWindow::new()),
            initiator,
        })
    }

    /// The index the remote puts in packets it sends us.
    pub fn local_index(&self) -> u32 {
        self.local_index
    }

    /// The index we put in packets we send.
    pub fn remote_index(&self) -> u32 {
        self.remote_index
    }

    /// The data-path cipher the handshake negotiated.
    pub fn cipher(&self) -> super::Cipher {
        self.keys.cipher()
    }

    /// When the session was established.
    pub fn created(&self) -> Time {
        self.created
    }

    /// True while the session may seal: younger than [`REJECT_AFTER`] and not used up.
    pub fn usable(&self, now: Time) -> bool {
        !self.expired(now) && self.next_counter.load(Ordering::Relaxed) < REJECT_AFTER_MESSAGES
    }

    /// True once the session is too old to seal or open anything.
    pub fn expired(&self, now: Time) -> bool {
        now.since(self.created) >= REJECT_AFTER
    }

    /// Seals one packet (see [`Tunnel::seal`]): takes the next counter atomically, lets
    /// `write` append the prefix and plaintext, encrypts in place and appends the tag.
    pub fn seal(
        &self,
        now: Time,
        buf: &mut Vec<u8>,
        write: impl FnOnce(SealInfo, &mut Vec<u8>) -> ([u8; 24], usize),
    ) -> Result<SealInfo, TunnelError> {
        if self.expired(now) {
            return Err(TunnelError::Expired);
        }
        let counter = self.next_counter.fetch_add(1, Ordering::Relaxed);
        if counter >= REJECT_AFTER_MESSAGES {
            return Err(TunnelError::Expired);
        }
        let info = SealInfo {
            receiver_index: self.remote_index,
            counter,
        };
        let (aad, start) = write(info, buf);
        self.keys.seal(info.counter, &aad, buf, start);
        Ok(info)
    }

    /// Opens a Data packet of this session: expiry, cheap replay check, decryption,
    /// then the window update, in that order (the window only moves for packets that
    /// authenticated).
    pub fn open<'a>(
        &self,
        now: Time,
        counter: u64,
        aad: &[u8],
        ciphertext: &'a mut [u8],
    ) -> Result<&'a [u8], TunnelError> {
        if self.expired(now) {
            return Err(TunnelError::Expired);
        }
        if !self.replay_window().check(counter) {
            return Err(TunnelError::Replay);
        }
        let plain_len = self
            .keys
            .open(counter, aad, ciphertext)
            .map_err(|_| TunnelError::Decrypt)?
            .len();
        if !self.replay_window().update(counter) {
            return Err(TunnelError::Replay);
        }
        Ok(&ciphertext[..plain_len])
    }

    fn replay_window(&self) -> std::sync::MutexGuard<'_, ReplayWindow> {
        // A poisoned lock only means another thread panicked mid-update; the window
        // itself is always consistent (plain integers), so keep using it.
        self.replay.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type Session = Arc<SessionState>;

/// A handshake we started and whose response we are waiting for. The seed is kept so
/// the state can be rebuilt when a forged response consumes it (initiation is a pure
/// function of identity, remote and seed).
struct Pending {
    state: InitiatorHandshake,
    seed: [u8; 32],
    timestamp: HandshakeTimestamp,
    local_index: u32,
    sent_at: Time,
    /// mac1 of the HandshakeInit sent, which a cookie reply to it is bound to.
    mac1: [u8; MAC_LEN],
}

/// How many unconfirmed responder sessions a tunnel keeps at once, so a replayed
/// HandshakeInit cannot displace the genuine one.
pub const MAX_UNCONFIRMED: usize = 3;
/// How many initiator ephemeral keys a tunnel remembers to refuse replayed
/// HandshakeInits (at one handshake per rekey period, over an hour of history).
pub const REMEMBERED_EPHEMERALS: usize = 32;

/// What a sealed packet needs from the tunnel: which index and counter to write in the
/// Data header. See [`Tunnel::seal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealInfo {
    /// The receiver's index for the header.
    pub receiver_index: u32,
    /// The counter for the header and the nonce.
    pub counter: u64,
}

/// The sessions with one remote identity.
pub struct Tunnel {
    remote: PublicIdentity,
    pending: Option<Pending>,
    current: Option<Session>,
    previous: Option<Session>,
    /// Unconfirmed responder sessions, oldest first.
    next: Vec<Session>,
    /// Ephemeral keys of HandshakeInits already answered, oldest first.
    ephemerals: VecDeque<[u8; 32]>,
    /// The newest HandshakeInit timestamp accepted from the remote.
    latest_timestamp: Option<HandshakeTimestamp>,
    /// A cookie the remote gave us (under load) and when.
    cookie: Option<(Time, [u8; MAC_LEN])>,
    freed: Vec<u32>,
    /// Bumped whenever `current` or `previous` changes, so a core that publishes them
    /// (the node's snapshot) knows when to publish again.
    generation: u64,
}

impl Tunnel {
    /// A tunnel with no sessions yet.
    pub fn new(remote: PublicIdentity) -> Self {
        Self {
            remote,
            pending: None,
            current: None,
            previous: None,
            next: Vec::new(),
            ephemerals: VecDeque::new(),
            latest_timestamp: None,
            cookie: None,
            freed: Vec::new(),
            generation: 0,
        }
    }

    /// The remote identity.
    pub fn remote(&self) -> &PublicIdentity {
        &self.remote
    }

    /// Starts (or restarts) a handshake as initiator: returns Noise message 1, to be sent
    /// in a HandshakeInit packet with `local_index` as the sender index.
    pub fn initiate(
        &mut self,
        local: &Identity,
        local_index: u32,
        seed: [u8; 32],
        timestamp: HandshakeTimestamp,
        now: Time,
    ) -> Result<Vec<u8>, CryptoError> {
        let (state, msg1) = session::initiate(local, &self.remote, seed, timestamp)?;
        if let Some(old) = self.pending.replace(Pending {
            state,
            seed,
            timestamp,
            local_index,
            sent_at: now,
            mac1: [0; MAC_LEN],
        }) {
            self.freed.push(old.local_index);
        }
        Ok(msg1)
    }

    /// Records the mac1 of the HandshakeInit just sent for the pending handshake.
    pub fn set_sent_mac1(&mut self, mac1: [u8; MAC_LEN]) {
        if let Some(p) = self.pending.as_mut() {
            p.mac1 = mac1;
        }
    }

    /// The cookie to put in mac2 of our next HandshakeInit, while it is fresh.
    pub fn cookie(&self, now: Time) -> Option<&[u8; MAC_LEN]> {
        self.cookie
            .as_ref()
            .filter(|(at, _)| now.since(*at) < guard::COOKIE_USE)
            .map(|(_, c)| c)
    }

    /// Takes a CookieReply to our pending HandshakeInit with `receiver_index`: keeps
    /// the cookie when it opens with that message's mac1. The caller then sends a new
    /// HandshakeInit, which carries it.
    pub fn take_cookie(
        &mut self,
        now: Time,
        receiver_index: u32,
        nonce: &[u8; wire::COOKIE_NONCE_LEN],
        sealed: &[u8; wire::COOKIE_LEN],
    ) -> Result<(), TunnelError> {
        let mac1 = match &self.pending {
            Some(p) if p.local_index == receiver_index => p.mac1,
            _ => return Err(TunnelError::UnexpectedResponse),
        };
        let keys = guard::MacKeys::for_responder(self.remote.agreement_key());
        let cookie = guard::open_cookie(&keys, &mac1, nonce, sealed).ok_or(TunnelError::Decrypt)?;
        self.cookie = Some((now, cookie));
        Ok(())
    }

    /// Records the timestamp of a HandshakeInit from the remote that authenticated:
    /// false (and nothing recorded) when it is not newer than the newest accepted so
    /// far, which makes the message a replay.
    pub fn accept_timestamp(&mut self, timestamp: HandshakeTimestamp) -> bool {
        if self.latest_timestamp.is_some_and(|t| timestamp <= t) {
            return false;
        }
        self.latest_timestamp = Some(timestamp);
        true
    }

    /// True while a handshake we started is waiting for its response.
    pub fn handshake_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Completes our handshake with the responder's message 2. The new session becomes
    /// `current` at once (the response proves the responder holds the keys). A response
    /// that fails leaves the handshake waiting for the genuine one.
    pub fn complete(
        &mut self,
        local: &Identity,
        receiver_index: u32,
        sender_index: u32,
        msg2: &[u8],
        now: Time,
    ) -> Result<(), TunnelError> {
        match &self.pending {
            Some(p) if p.local_index == receiver_index => {}
            _ => return Err(TunnelError::UnexpectedResponse),
        }
        // Invariant: checked just above that `pending` is Some.
        let pending = self
            .pending
            .take()
            .expect("pending handshake checked above");
        let (seed, sent_at, timestamp, mac1) = (
            pending.seed,
            pending.sent_at,
            pending.timestamp,
            pending.mac1,
        );
        let keys = match pending.state.finish(msg2) {
            Ok(keys) => keys,
            Err(_) => {
                // `finish` consumed the state: rebuild it from the seed, same index.
                match session::initiate(local, &self.remote, seed, timestamp) {
                    Ok((state, _)) => {
                        self.pending = Some(Pending {
                            state,
                            seed,
                            timestamp,
                            local_index: receiver_index,
                            sent_at,
                            mac1,
                        })
                    }
                    Err(_) => self.freed.push(receiver_index),
                }
                return Err(TunnelError::Decrypt);
            }
        };
        self.install_current(SessionState::new(
            keys,
            pending.local_index,
            sender_index,
            now,
            true,
        ));
        Ok(())
    }

    /// True when a HandshakeInit with this initiator ephemeral key was answered before
    /// (a replay: refuse it before doing any Diffie-Hellman).
    pub fn seen_ephemeral(&self, ephemeral: &[u8; 32]) -> bool {
        self.ephemerals.contains(ephemeral)
    }

    /// Records a session we created as responder (see [`session::respond`]); it waits
    /// among the unconfirmed sessions until the initiator's first Data packet arrives on
    /// it. `ephemeral` is the initiator's ephemeral key, remembered to refuse replays.
    pub fn accept(
        &mut self,
        keys: SessionKeys,
        local_index: u32,
        remote_index: u32,
        ephemeral: [u8; 32],
        now: Time,
    ) {
        if self.ephemerals.len() >= REMEMBERED_EPHEMERALS {
            self.ephemerals.pop_front();
        }
        self.ephemerals.push_back(ephemeral);
        let session = SessionState::new(keys, local_index, remote_index, now, false);
        if self.next.len() >= MAX_UNCONFIRMED {
            let old = self.next.remove(0);
            self.freed.push(old.local_index);
        }
        self.next.push(session);
    }

    /// True when [`seal`](Self::seal) would succeed.
    pub fn can_seal(&self, now: Time) -> bool {
        self.current.as_ref().is_some_and(|s| s.usable(now))
    }

    /// Age of the current session, if any.
    pub fn session_age(&self, now: Time) -> Option<Duration> {
        self.current.as_ref().map(|s| now.since(s.created))
    }

    /// Seals one packet with the current session. `write` gets the index and counter
    /// to put in the header, appends the packet prefix and the plaintext to `buf`, and
    /// returns the additional data and where the plaintext starts; the plaintext is
    /// then encrypted in place and the tag appended.
    pub fn seal(
        &mut self,
        now: Time,
        buf: &mut Vec<u8>,
        write: impl FnOnce(SealInfo, &mut Vec<u8>) -> ([u8; 24], usize),
    ) -> Result<SealInfo, TunnelError> {
        match self.current.as_ref() {
            Some(s) if s.usable(now) => s.seal(now, buf, write),
            Some(_) => Err(TunnelError::Expired),
            None => Err(TunnelError::NoSession),
        }
    }

    /// The session we seal with, if any (usable or not).
    pub fn current(&self) -> Option<&Arc<SessionState>> {
        self.current.as_ref()
    }

    /// The confirmed sessions we open with: `current` and `previous` (never the
    /// unconfirmed `next` ones, whose first packet must go through [`Tunnel::open`]).
    pub fn confirmed(&self) -> impl Iterator<Item = &Arc<SessionState>> + '_ {
        self.current.iter().chain(self.previous.iter())
    }

    /// Opens a Data packet sent to `local_index`: cheap replay check, decryption, then the
    /// window update, in that order. A first packet on the `next` session promotes it.
    pub fn open<'a>(
        &mut self,
        now: Time,
        local_index: u32,
        counter: u64,
        aad: &[u8],
        ciphertext: &'a mut [u8],
    ) -> Result<&'a [u8], TunnelError> {
        let slot = self.slot_of(local_index).ok_or(TunnelError::UnknownIndex)?;
        let session = self.slot_ref(slot).ok_or(TunnelError::UnknownIndex)?;
        let plain_len = session.open(now, counter, aad, ciphertext)?.len();
        if let Slot::Next(i) = slot {
            // The initiator proved it holds these keys: the other unconfirmed sessions
            // are stale or replays.
            let promoted = self.next.remove(i);
            for s in self.next.drain(..) {
                self.freed.push(s.local_index);
            }
            self.install_current(promoted);
        }
        Ok(&ciphertext[..plain_len])
    }

    /// True when it is time for us to start a handshake: no usable session, or the
    /// current one is due for a rekey, and no handshake of ours is waiting (or the one
    /// waiting has timed out).
    pub fn wants_handshake(&self, now: Time) -> bool {
        if let Some(p) = &self.pending {
            return now.since(p.sent_at) >= REKEY_TIMEOUT;
        }
        match &self.current {
            None => true,
            Some(s) if !s.usable(now) => true,
            Some(s) => {
                let due = if s.initiator {
                    REKEY_AFTER
                } else {
                    REKEY_AFTER + RESPONDER_REKEY_GRACE
                };
                now.since(s.created) >= due
            }
        }
    }

    /// The peer says it holds no session with `remote_index` (a SessionUnknown): when
    /// that is the index our current session seals to, stop sealing with it (its local
    /// index is reported as freed) and return true, so the caller handshakes again.
    pub fn peer_lost(&mut self, remote_index: u32) -> bool {
        if self
            .current
            .as_ref()
            .is_none_or(|s| s.remote_index != remote_index)
        {
            return false;
        }
        self.generation += 1;
        self.freed
            .extend(self.current.take().map(|s| s.local_index));
        true
    }

    /// Drops sessions past [`REJECT_AFTER`] (their indices are reported as freed).
    pub fn expire(&mut self, now: Time) {
        let old = |s: &Session| now.since(s.created) >= REJECT_AFTER;
        if self.current.as_ref().is_some_and(old) || self.previous.as_ref().is_some_and(old) {
            self.generation += 1;
        }
        if self.current.as_ref().is_some_and(old) {
            self.freed
                .extend(self.current.take().map(|s| s.local_index));
        }
        if self.previous.as_ref().is_some_and(old) {
            self.freed
                .extend(self.previous.take().map(|s| s.local_index));
        }
        let (gone, kept): (Vec<Session>, Vec<Session>) = self.next.drain(..).partition(old);
        self.next = kept;
        self.freed.extend(gone.iter().map(|s| s.local_index));
    }

    /// True when the tunnel holds no session and no handshake (it can be forgotten).
    pub fn is_idle(&self) -> bool {
        self.pending.is_none()
            && self.current.is_none()
            && self.previous.is_none()
            && self.next.is_empty()
    }

    /// Every local index this tunnel has stopped using since the last call.
    pub fn take_freed(&mut self) -> std::vec::Drain<'_, u32> {
        self.freed.drain(..)
    }

    /// Every local index this tunnel still uses (for tearing the tunnel down).
    pub fn indices(&self) -> impl Iterator<Item = u32> + '_ {
        self.pending
            .iter()
            .map(|p| p.local_index)
            .chain(self.current.iter().map(|s| s.local_index))
            .chain(self.previous.iter().map(|s| s.local_index))
            .chain(self.next.iter().map(|s| s.local_index))
    }

    /// Changes whenever the confirmed sessions (`current`, `previous`) change.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn install_current(&mut self, session: Session) {
        self.generation += 1;
        let old_previous = self.previous.take();
        self.previous = self.current.replace(session);
        if let Some(old) = old_previous {
            self.freed.push(old.local_index);
        }
    }

    fn slot_of(&self, index: u32) -> Option<Slot> {
        if self
            .current
            .as_ref()
            .is_some_and(|s| s.local_index == index)
        {
            return Some(Slot::Current);
        }
        if let Some(i) = self.next.iter().position(|s| s.local_index == index) {
            return Some(Slot::Next(i));
        }
        if self
            .previous
            .as_ref()
            .is_some_and(|s| s.local_index == index)
        {
            return Some(Slot::Previous);
        }
        None
    }

    fn slot_ref(&self, slot: Slot) -> Option<&Session> {
        match slot {
            Slot::Current => self.current.as_ref(),
            Slot::Previous => self.previous.as_ref(),
            Slot::Next(i) => self.next.get(i),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Current,
    Previous,
    Next(usize),
}
