//! Membership without a roster: the credentials members of a private network show
//! each other, and the frames that wait for them.
//!
//! # Protocol
//! A [`Book`] per joined network with a controller holds our own credential (from our
//! config), the controller's key, the revocations our config lists, and the peers'
//! credentials we accepted. The data plane admits frames of a private network only from
//! peers in that set, and hands the control core the rest:
//! - a frame for a peer we hold no credential of ([`ToControl::Introduce`]): we send our
//!   credential with [`CREDENTIALS_ASK`] (at most once per [`SHOW_INTERVAL`] per peer),
//!   then the frame. The peer accepts ours, answers with its own, and from then on both
//!   data planes carry the pair's frames without us.
//! - a frame from a peer we hold no credential of ([`ToControl::Stranger`]): it waits
//!   here (at most [`HOLD_PER_PEER`] per peer, [`HOLD_MAX`] in all, for [`HOLD_TIME`]),
//!   and we ask for the credential. When one is accepted the frames go through the data
//!   plane's checks again; otherwise they are dropped and counted (`drop_not_member`).
//!   Frames usually arrive right behind the credential that admits them, and another
//!   worker may see them first: this is what keeps them.
//!
//! A credential is accepted when it parses, names the peer whose session carried it and
//! this network, verifies under the controller's key, is not revoked (issued at or
//! before its member's revocation), and agrees with our own (timestamps within our
//! `max_delta`, see [`crate::crypto::membership`]). Refusals count in `drop_credential`.
//!
//! # Renewal and expiry
//! Every config refresh brings us a fresh credential. Then every accepted credential is
//! checked again (the ones that no longer agree, or are revoked now, are dropped) and
//! the peers we keep get our new one, so they renew their view of us. A member cut off
//! from the controller keeps its old credential, which stops agreeing with its peers'
//! once theirs are `max_delta` (5 minutes) newer: that is the bound on how long a
//! member the controller no longer serves stays accepted.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::crypto::membership::MembershipCredential;
use crate::node::network::Credentials;
use crate::node::switch::{MemberFacts, Members};
use crate::types::{NetworkId, NodeAddress, Time, UnixTime};

#[cfg(doc)]
use crate::node::data::ToControl;
#[cfg(doc)]
use crate::wire::CREDENTIALS_ASK;

/// We show our credential to one peer at most this often.
pub const SHOW_INTERVAL: Duration = Duration::from_secs(1);
/// A frame from a peer waits this long for its credential.
pub const HOLD_TIME: Duration = Duration::from_secs(2);
/// Frames held per peer.
pub const HOLD_PER_PEER: usize = 16;
/// Frames held per network.
pub const HOLD_MAX: usize = 256;

/// Why a peer's credential was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// It does not parse.
    Malformed,
    /// It names another member or network than the one it came for.
    Mismatch,
    /// The controller did not sign it.
    BadSignature,
    /// Its member was revoked after it was issued.
    Revoked,
    /// Its timestamp is too far from ours.
    Disagrees,
}

/// What offering a credential did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offered {
    /// Accepted, and new (or newer than the one we held).
    Accepted,
    /// The same credential we hold already.
    Known,
}

/// A frame from a peer, waiting for its credential.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) peer: NodeAddress,
    pub(crate) flags: u8,
    pub(crate) frame: Vec<u8>,
    at: Time,
}

/// The credentials of one network (see the module docs).
#[derive(Debug)]
pub(crate) struct Book {
    network: NetworkId,
    me: NodeAddress,
    key: [u8; 32],
    own: MembershipCredential,
    own_bytes: Vec<u8>,
    revoked: HashMap<NodeAddress, UnixTime>,
    accepted: HashMap<NodeAddress, MembershipCredential>,
    /// When we last sent our credential to each peer.
    shown: HashMap<NodeAddress, Time>,
    held: VecDeque<Held>,
    /// What the data plane admits: accepted peers and us (rebuilt on every change).
    members: Arc<Members>,
}

impl Book {
    pub(crate) fn new(network: NetworkId, me: NodeAddress, creds: Credentials) -> Self {
        let own_bytes = creds.own.to_bytes();
        let mut book = Book {
            network,
            me,
            key: creds.controller_key,
            own: creds.own,
            own_bytes,
            revoked: creds.revoked.into_iter().collect(),
            accepted: HashMap::new(),
            shown: HashMap::new(),
            held: VecDeque::new(),
            members: Arc::new(Members::new()),
        };
        book.publish();
        book
    }

    /// A new config: our new credential, key and revocations. Drops accepted
    /// credentials that no longer agree or are revoked now, and returns the peers we
    /// keep when our own credential changed (they should get the new one).
    pub(crate) fn update(&mut self, creds: Credentials) -> Vec<NodeAddress> {
        let renewed = creds.own != self.own;
        if creds.controller_key != self.key {
            self.accepted.clear();
        }
        self.key = creds.controller_key;
        self.own_bytes = creds.own.to_bytes();
        self.own = creds.own;
        self.revoked = creds.revoked.into_iter().collect();
        let (own, revoked) = (&self.own, &self.revoked);
        self.accepted
            .retain(|_, c| own.agrees_with(c) && !is_revoked(revoked, c));
        if renewed {
            // They hold our old credential: the next frame shows the new one anyway,
            // but pushing it now keeps their view from ageing out.
            self.shown.clear();
        }
        self.publish();
        if renewed {
            let mut keep: Vec<NodeAddress> = self.accepted.keys().copied().collect();
            keep.sort_unstable();
            keep
        } else {
            Vec::new()
        }
    }

    /// Our credential's binary form.
    pub(crate) fn own_bytes(&self) -> &[u8] {
        &self.own_bytes
    }

    /// Whether we hold an accepted credential of `peer`.
    pub(crate) fn knows(&self, peer: NodeAddress) -> bool {
        self.accepted.contains_key(&peer)
    }

    /// What the data plane admits.
    pub(crate) fn members(&self) -> &Arc<Members> {
        &self.members
    }

    /// True (and noted) when our credential may be sent to `peer` now.
    pub(crate) fn should_show(&mut self, now: Time, peer: NodeAddress) -> bool {
        match self.shown.get(&peer) {
            Some(&t) if now.since(t) < SHOW_INTERVAL => false,
            _ => {
                self.shown.insert(peer, now);
                true
            }
        }
    }

    /// A credential `peer` sent (its session authenticated it).
    pub(crate) fn offer(&mut self, peer: NodeAddress, bytes: &[u8]) -> Result<Offered, Refusal> {
        if self
            .accepted
            .get(&peer)
            .is_some_and(|c| c.to_bytes() == bytes)
        {
            return Ok(Offered::Known);
        }
        let c = MembershipCredential::from_bytes(bytes).map_err(|_| Refusal::Malformed)?;
        if c.facts.member != peer || c.facts.nwid != self.network {
            return Err(Refusal::Mismatch);
        }
        c.verify(&self.key).map_err(|_| Refusal::BadSignature)?;
        if is_revoked(&self.revoked, &c) {
            return Err(Refusal::Revoked);
        }
        if !self.own.agrees_with(&c) {
            return Err(Refusal::Disagrees);
        }
        // An older credential than the one held is refused by agreement or kept out
        // here, so a replayed one cannot roll a member's facts back.
        if self
            .accepted
            .get(&peer)
            .is_some_and(|held| held.facts.timestamp > c.facts.timestamp)
        {
            return Ok(Offered::Known);
        }
        self.accepted.insert(peer, c);
        self.publish();
        Ok(Offered::Accepted)
    }

    /// Keeps a frame from `peer` until its credential comes; false when full (the
    /// caller counts the drop).
    pub(crate) fn hold(&mut self, now: Time, peer: NodeAddress, flags: u8, frame: Vec<u8>) -> bool {
        let of_peer = self.held.iter().filter(|h| h.peer == peer).count();
        if of_peer >= HOLD_PER_PEER || self.held.len() >= HOLD_MAX {
            return false;
        }
        self.held.push_back(Held {
            peer,
            flags,
            frame,
            at: now,
        });
        true
    }

    /// The frames `peer` sent while we waited for its credential.
    pub(crate) fn release(&mut self, peer: NodeAddress) -> Vec<Held> {
        let (mine, rest): (VecDeque<Held>, VecDeque<Held>) =
            self.held.drain(..).partition(|h| h.peer == peer);
        self.held = rest;
        mine.into()
    }

    /// Frames that waited longer than [`HOLD_TIME`], for the caller to count.
    pub(crate) fn expire(&mut self, now: Time) -> usize {
        let before = self.held.len();
        self.held.retain(|h| now.since(h.at) < HOLD_TIME);
        before - self.held.len()
    }

    /// Our own credential's addresses (our subscriptions follow them).
    pub(crate) fn own_ips(&self) -> &[std::net::IpAddr] {
        &self.own.facts.ips
    }

    fn publish(&mut self) {
        let facts = |c: &MembershipCredential| {
            Arc::new(MemberFacts {
                ips: c.facts.ips.clone(),
                tags: c.facts.tags.clone(),
                capabilities: c.facts.capabilities.clone(),
            })
        };
        let mut members: Members = self.accepted.iter().map(|(&a, c)| (a, facts(c))).collect();
        members.insert(self.me, facts(&self.own));
        self.members = Arc::new(members);
    }
}

fn is_revoked(revoked: &HashMap<NodeAddress, UnixTime>, c: &MembershipCredential) -> bool {
    revoked
        .get(&c.facts.member)
        .is_some_and(|&at| c.facts.timestamp <= at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::membership::CredentialFacts;
    use crate::crypto::{Signer, UpdateKey};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    const DELTA: Duration = Duration::from_secs(300);

    fn key(seed: u8) -> UpdateKey {
        UpdateKey::generate(&mut ChaCha20Rng::from_seed([seed; 32]))
    }

    fn nwid() -> NetworkId {
        "89e92ceee5000001".parse().unwrap()
    }

    fn addr(s: &str) -> NodeAddress {
        s.parse().unwrap()
    }

    fn cred(k: &UpdateKey, member: &str, secs: u64) -> MembershipCredential {
        MembershipCredential::issue(
            k,
            CredentialFacts {
                nwid: nwid(),
                member: addr(member),
                timestamp: UnixTime::from_millis(secs * 1000),
                max_delta: DELTA,
                ips: vec!["198.18.0.2".parse().unwrap()],
                tags: vec![(1, 7)],
                capabilities: vec![],
            },
        )
    }

    fn book(k: &UpdateKey, secs: u64, revoked: Vec<(NodeAddress, UnixTime)>) -> Book {
        Book::new(
            nwid(),
            addr("1111111111"),
            Credentials {
                controller_key: k.public_key(),
                own: cred(k, "1111111111", secs),
                revoked,
            },
        )
    }

    #[test]
    fn a_valid_credential_is_accepted_once_and_published_with_its_facts() {
        let k = key(1);
        let mut b = book(&k, 1000, vec![]);
        let theirs = cred(&k, "2222222222", 1010).to_bytes();
        assert_eq!(b.offer(addr("2222222222"), &theirs), Ok(Offered::Accepted));
        assert_eq!(b.offer(addr("2222222222"), &theirs), Ok(Offered::Known));
        let facts = &b.members()[&addr("2222222222")];
        assert_eq!(facts.tags, vec![(1, 7)]);
        assert!(
            b.members().contains_key(&addr("1111111111")),
            "we are a member"
        );
    }

    #[test]
    fn forged_foreign_revoked_and_stale_credentials_are_refused() {
        let k = key(1);
        let other = key(2);
        let revoked_at = UnixTime::from_millis(1_005_000);
        let mut b = book(&k, 1000, vec![(addr("3333333333"), revoked_at)]);
        let peer = addr("2222222222");
        assert_eq!(b.offer(peer, b"junk"), Err(Refusal::Malformed));
        let forged = cred(&other, "2222222222", 1000).to_bytes();
        assert_eq!(b.offer(peer, &forged), Err(Refusal::BadSignature));
        let someone_elses = cred(&k, "4444444444", 1000).to_bytes();
        assert_eq!(b.offer(peer, &someone_elses), Err(Refusal::Mismatch));
        let revoked = cred(&k, "3333333333", 1004).to_bytes();
        assert_eq!(b.offer(addr("3333333333"), &revoked), Err(Refusal::Revoked));
        let reissued = cred(&k, "3333333333", 1006).to_bytes();
        assert_eq!(
            b.offer(addr("3333333333"), &reissued),
            Ok(Offered::Accepted)
        );
        let stale = cred(&k, "2222222222", 1000 - 301).to_bytes();
        assert_eq!(b.offer(peer, &stale), Err(Refusal::Disagrees));
        assert_eq!(b.members().len(), 2, "us and the re-authorized member");
    }

    #[test]
    fn renewal_drops_what_no_longer_agrees_and_revocations_apply_to_held_credentials() {
        let k = key(1);
        let mut b = book(&k, 1000, vec![]);
        b.offer(addr("2222222222"), &cred(&k, "2222222222", 1000).to_bytes())
            .unwrap();
        b.offer(addr("3333333333"), &cred(&k, "3333333333", 1250).to_bytes())
            .unwrap();
        let creds = |secs, revoked| Credentials {
            controller_key: k.public_key(),
            own: cred(&k, "1111111111", secs),
            revoked,
        };
        // 400 s later: the credential from 1000 is too old, the one from 1250 is not.
        let keep = b.update(creds(1400, vec![]));
        assert_eq!(keep, vec![addr("3333333333")]);
        assert!(!b.knows(addr("2222222222")));
        // The same config again renews nothing.
        assert!(b.update(creds(1400, vec![])).is_empty());
        let revoked = vec![(addr("3333333333"), UnixTime::from_millis(1_300_000))];
        b.update(creds(1401, revoked));
        assert!(!b.knows(addr("3333333333")));
        assert_eq!(b.members().len(), 1);
    }

    #[test]
    fn frames_wait_bounded_and_expire() {
        let k = key(1);
        let mut b = book(&k, 1000, vec![]);
        let p = addr("2222222222");
        let t0 = Time::ZERO;
        for _ in 0..HOLD_PER_PEER {
            assert!(b.hold(t0, p, 0, vec![1]));
        }
        assert!(!b.hold(t0, p, 0, vec![1]), "per-peer bound");
        assert!(b.hold(t0, addr("3333333333"), 0, vec![2]));
        assert_eq!(b.release(p).len(), HOLD_PER_PEER);
        assert_eq!(b.expire(t0 + HOLD_TIME), 1);
        assert!(b.should_show(t0, p));
        assert!(!b.should_show(t0 + Duration::from_millis(500), p));
        assert!(b.should_show(t0 + SHOW_INTERVAL, p));
    }
}
