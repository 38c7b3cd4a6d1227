//! Membership credentials: what a member of a private network shows its peers.
//!
//! The controller signs one [`MembershipCredential`] per member and hands it out with
//! the member's network config. Members exchange them peer to peer (the wire's
//! NETWORK_CREDENTIALS) before they accept each other's frames, so no config has to list
//! the network's members (ZeroTier's certificate of membership is the model). A
//! credential carries what a peer needs to switch and filter the holder's frames: its
//! managed IP addresses (`chr ipauth`, ARP and neighbour-discovery scoping) and its tags
//! and capability IDs (the receiving side's rules).
//!
//! ## Binary form (version 2), integers big-endian
//!
//! ```text
//!  0    1          9           14          22          30
//! +----+----------+-----------+-----------+-----------+
//! | v2 |  nwid 8  | member 5  | timestamp | max_delta |
//! +----+----------+-----------+-----------+-----------+
//! | n_ips 1 | n_ips x (family 1: 4 or 6, address 4 or 16)          |
//! | n_tags 1 | n_tags x (id 4, value 4), ascending ids, no repeats  |
//! | n_caps 1 | n_caps x (id 4), ascending, no repeats               |
//! | signature 64                                                     |
//! ```
//!
//! timestamp, max_delta: microseconds of controller time. The signature is Ed25519 by
//! the network's controller over `"skylan/membership-credential/v2" || everything before
//! it`. At most [`MAX_ADDRESSES`] addresses and [`MAX_TAGS`] tags or capabilities.
//!
//! ## Agreement
//! [`MembershipCredential::agrees_with`]: my credential accepts yours when both are for
//! the same network and our timestamps are within *my* `max_delta`. Timestamps are all
//! controller time, so members need no synchronised clocks, and a credential stops
//! agreeing on its own once the holder's peers have renewed theirs for `max_delta`:
//! that is the bound on how long a member the controller no longer serves stays
//! accepted. Revoked members are refused by a list in the network config (see the node
//! core's membership book), not by anything in here.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use super::{CryptoError, Signer, verify_signature};
use crate::types::{NetworkId, NodeAddress, UnixTime};

/// Most managed addresses one credential carries.
pub const MAX_ADDRESSES: usize = 32;
/// Most tags, and most capability IDs, one credential carries.
pub const MAX_TAGS: usize = 128;

const DOMAIN: &[u8] = b"skylan/membership-credential/v2";
const VERSION: u8 = 2;
const FIXED_LEN: usize = 30;
const SIGNATURE_LEN: usize = 64;

/// A controller-signed statement that a member belongs to a network, with the facts
/// about it that peers need (see the module docs).
#[derive(Clone, PartialEq, Eq)]
pub struct MembershipCredential {
    /// What the controller states.
    pub facts: CredentialFacts,
    /// Ed25519 signature by the controller.
    pub signature: [u8; 64],
}

/// The facts a credential states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialFacts {
    /// The network.
    pub nwid: NetworkId,
    /// The member it was issued to.
    pub member: NodeAddress,
    /// Controller time of issue.
    pub timestamp: UnixTime,
    /// Largest timestamp difference this credential's holder accepts.
    pub max_delta: Duration,
    /// The member's managed addresses (at most [`MAX_ADDRESSES`]).
    pub ips: Vec<IpAddr>,
    /// The member's tags `(id, value)`, ascending by id (at most [`MAX_TAGS`]).
    pub tags: Vec<(u32, u32)>,
    /// The capability IDs the member holds, ascending (at most [`MAX_TAGS`]).
    pub capabilities: Vec<u32>,
}

impl MembershipCredential {
    /// Issues a credential for `facts`, signed by `signer`. Lists longer than the
    /// limits are cut; tags and capabilities are sorted and made unique.
    pub fn issue(signer: &dyn Signer, mut facts: CredentialFacts) -> Self {
        facts.ips.truncate(MAX_ADDRESSES);
        facts.tags.sort_unstable();
        facts.tags.dedup_by_key(|t| t.0);
        facts.tags.truncate(MAX_TAGS);
        facts.capabilities.sort_unstable();
        facts.capabilities.dedup();
        facts.capabilities.truncate(MAX_TAGS);
        let mut c = MembershipCredential {
            facts,
            signature: [0; 64],
        };
        c.signature = signer.sign_message(&[DOMAIN, &c.body()].concat());
        c
    }

    /// The signed part of the binary form.
    fn body(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.encoded_len());
        b.push(VERSION);
        b.extend_from_slice(&self.facts.nwid.value().to_be_bytes());
        b.extend_from_slice(&self.facts.member.to_bytes());
        b.extend_from_slice(&self.facts.timestamp.as_micros().to_be_bytes());
        let delta = u64::try_from(self.facts.max_delta.as_micros()).unwrap_or(u64::MAX);
        b.extend_from_slice(&delta.to_be_bytes());
        // Invariant: the lists are within the limits (issue and parse enforce them).
        b.push(self.facts.ips.len() as u8);
        for ip in &self.facts.ips {
            match ip {
                IpAddr::V4(v4) => {
                    b.push(4);
                    b.extend_from_slice(&v4.octets());
                }
                IpAddr::V6(v6) => {
                    b.push(6);
                    b.extend_from_slice(&v6.octets());
                }
            }
        }
        b.push(self.facts.tags.len() as u8);
        for (id, value) in &self.facts.tags {
            b.extend_from_slice(&id.to_be_bytes());
            b.extend_from_slice(&value.to_be_bytes());
        }
        b.push(self.facts.capabilities.len() as u8);
        for id in &self.facts.capabilities {
            b.extend_from_slice(&id.to_be_bytes());
        }
        b
    }

    /// Length of the binary form.
    pub fn encoded_len(&self) -> usize {
        let ips: usize = self
            .facts
            .ips
            .iter()
            .map(|ip| if ip.is_ipv4() { 5 } else { 17 })
            .sum();
        FIXED_LEN
            + 1
            + ips
            + 1
            + 8 * self.facts.tags.len()
            + 1
            + 4 * self.facts.capabilities.len()
            + SIGNATURE_LEN
    }

    /// The binary form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.body();
        out.extend_from_slice(&self.signature);
        out
    }

    /// Parses the binary form. Does not verify the signature: call [`Self::verify`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, CryptoError> {
        let bad = CryptoError::MalformedCredential;
        if b.len() < FIXED_LEN + 3 + SIGNATURE_LEN {
            return Err(bad("too short"));
        }
        if b[0] != VERSION {
            return Err(bad("unknown version"));
        }
        let (body, signature) = b.split_at(b.len() - SIGNATURE_LEN);
        let mut r = Cursor { b: body, at: 1 };
        let nwid = NetworkId::from_u64(r.u64()?).map_err(|_| bad("invalid network ID"))?;
        let member =
            NodeAddress::from_bytes(&r.array::<5>()?).map_err(|_| bad("invalid member address"))?;
        let timestamp = UnixTime::from_micros(r.u64()?);
        let max_delta = Duration::from_micros(r.u64()?);
        let n_ips = usize::from(r.u8()?);
        if n_ips > MAX_ADDRESSES {
            return Err(bad("too many addresses"));
        }
        let mut ips = Vec::with_capacity(n_ips);
        for _ in 0..n_ips {
            ips.push(match r.u8()? {
                4 => IpAddr::from(r.array::<4>()?),
                6 => IpAddr::from(r.array::<16>()?),
                _ => return Err(bad("unknown address family")),
            });
        }
        let n_tags = usize::from(r.u8()?);
        if n_tags > MAX_TAGS {
            return Err(bad("too many tags"));
        }
        let mut tags = Vec::with_capacity(n_tags);
        for _ in 0..n_tags {
            tags.push((r.u32()?, r.u32()?));
        }
        let n_caps = usize::from(r.u8()?);
        if n_caps > MAX_TAGS {
            return Err(bad("too many capabilities"));
        }
        let mut capabilities = Vec::with_capacity(n_caps);
        for _ in 0..n_caps {
            capabilities.push(r.u32()?);
        }
        if r.at != body.len() {
            return Err(bad("trailing bytes"));
        }
        if !tags.windows(2).all(|w| w[0].0 < w[1].0)
            || !capabilities.windows(2).all(|w| w[0] < w[1])
        {
            return Err(bad("tags or capabilities out of order"));
        }
        let mut sig = [0u8; SIGNATURE_LEN];
        sig.copy_from_slice(signature);
        Ok(MembershipCredential {
            facts: CredentialFacts {
                nwid,
                member,
                timestamp,
                max_delta,
                ips,
                tags,
                capabilities,
            },
            signature: sig,
        })
    }

    /// Checks the controller's signature.
    pub fn verify(&self, controller_signing_key: &[u8; 32]) -> Result<(), CryptoError> {
        verify_signature(
            controller_signing_key,
            &[DOMAIN, &self.body()].concat(),
            &self.signature,
        )
    }

    /// Whether the holder of `self` accepts `other` (both already verified): same
    /// network, timestamps within `self`'s `max_delta`.
    pub fn agrees_with(&self, other: &MembershipCredential) -> bool {
        self.facts.nwid == other.facts.nwid
            && self
                .facts
                .timestamp
                .since(other.facts.timestamp)
                .max(other.facts.timestamp.since(self.facts.timestamp))
                <= self.facts.max_delta
    }
}

impl fmt::Debug for MembershipCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MembershipCredential")
            .field("facts", &self.facts)
            .finish_non_exhaustive()
    }
}

/// Reads big-endian fields off the front of a body; running out is malformed.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn array<const N: usize>(&mut self) -> Result<[u8; N], CryptoError> {
        let end = self.at + N;
        let slice = self
            .b
            .get(self.at..end)
            .ok_or(CryptoError::MalformedCredential("truncated"))?;
        self.at = end;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, CryptoError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, CryptoError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, CryptoError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::UpdateKey;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn key() -> UpdateKey {
        UpdateKey::generate(&mut ChaCha20Rng::from_seed([7; 32]))
    }

    fn facts() -> CredentialFacts {
        CredentialFacts {
            nwid: "89e92ceee5000001".parse().unwrap(),
            member: "0123456789".parse().unwrap(),
            timestamp: UnixTime::from_millis(1_000),
            max_delta: Duration::from_secs(300),
            ips: vec!["198.18.0.7".parse().unwrap(), "fd00:1::7".parse().unwrap()],
            tags: vec![(9, 1), (2, 5), (2, 6)],
            capabilities: vec![4, 1, 4],
        }
    }

    #[test]
    fn round_trips_and_verifies() {
        let k = key();
        let c = MembershipCredential::issue(&k, facts());
        assert_eq!(
            c.facts.tags,
            vec![(2, 5), (9, 1)],
            "sorted, one value per id"
        );
        assert_eq!(c.facts.capabilities, vec![1, 4]);
        let bytes = c.to_bytes();
        assert_eq!(bytes.len(), c.encoded_len());
        let back = MembershipCredential::from_bytes(&bytes).unwrap();
        assert_eq!(back, c);
        back.verify(&k.public_key()).unwrap();
    }

    #[test]
    fn any_changed_byte_fails() {
        let k = key();
        let bytes = MembershipCredential::issue(&k, facts()).to_bytes();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            let ok = MembershipCredential::from_bytes(&b)
                .is_ok_and(|c| c.verify(&k.public_key()).is_ok());
            assert!(!ok, "byte {i} flipped still verifies");
        }
        let other = UpdateKey::generate(&mut ChaCha20Rng::from_seed([8; 32]));
        let c = MembershipCredential::from_bytes(&bytes).unwrap();
        assert_eq!(
            c.verify(&other.public_key()),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn every_truncation_is_malformed() {
        let bytes = MembershipCredential::issue(&key(), facts()).to_bytes();
        for len in 0..bytes.len() {
            assert!(
                MembershipCredential::from_bytes(&bytes[..len]).is_err(),
                "{len} bytes parsed"
            );
        }
    }

    #[test]
    fn limits_are_kept() {
        let mut f = facts();
        f.ips = (0..40u8).map(|i| IpAddr::from([198, 18, 1, i])).collect();
        f.tags = (0..200).map(|i| (i, i)).collect();
        f.capabilities = (0..200).collect();
        let c = MembershipCredential::issue(&key(), f);
        assert_eq!(
            (
                c.facts.ips.len(),
                c.facts.tags.len(),
                c.facts.capabilities.len()
            ),
            (MAX_ADDRESSES, MAX_TAGS, MAX_TAGS)
        );
        assert!(MembershipCredential::from_bytes(&c.to_bytes()).is_ok());
    }

    #[test]
    fn agreement_is_within_my_window() {
        let k = key();
        let mine = MembershipCredential::issue(&k, facts());
        let mut f = facts();
        f.member = "0123456780".parse().unwrap();
        f.timestamp = UnixTime::from_millis(1_000 + 300_000);
        let theirs = MembershipCredential::issue(&k, f.clone());
        assert!(mine.agrees_with(&theirs) && theirs.agrees_with(&mine));
        f.timestamp = UnixTime::from_millis(1_000 + 300_001);
        let late = MembershipCredential::issue(&k, f.clone());
        assert!(!mine.agrees_with(&late));
        f.nwid = "89e92ceee5000002".parse().unwrap();
        f.timestamp = UnixTime::from_millis(1_000);
        assert!(!mine.agrees_with(&MembershipCredential::issue(&k, f)));
    }
}
