//! Node identities: key pairs, the address proof of work, text and binary forms.
//!
//! An identity is an Ed25519 signing key plus an X25519 agreement key (the Noise static
//! key). Its 40-bit [`NodeAddress`] is derived from the two public keys:
//!
//! ```text
//! hash    = argon2id(password = ed25519_pub || x25519_pub, salt = "skylan-address-v1",
//!                    memory = 2 MiB, passes = 1, lanes = 1, output = 64 bytes)
//! valid   iff hash[0] < POW_THRESHOLD  and  address is not reserved
//! address = hash[59..64] (big-endian, the last 5 bytes)
//! ```
//!
//! Forms:
//! - binary, [`IDENTITY_LEN`] = 69 bytes: `address (5) | ed25519 public (32) | x25519 public (32)`
//! - public text: `<10 hex address>:1:<128 hex: ed25519 public || x25519 public>`
//! - secret text: the public text, then `:<128 hex: ed25519 seed || x25519 secret>`
//!
//! The `1` is the identity type, as in ZeroTier's `addr:0:...` files (0 there is their
//! C25519 bundle; our type 1 is this Ed25519 + X25519 + argon2id scheme).
//!
//! # Invariants
//! A [`PublicIdentity`] exists only after its address has been recomputed and checked
//! (by [`PublicIdentity::from_bytes`], [`FromStr`], or [`Identity::generate`]), so
//! holding one proves the address belongs to the keys. An [`Identity`] holds secrets:
//! they are wiped on drop and `Debug` prints only the address.
//!
//! # Cost, and why the proof of work exists
//! One evaluation of the hash costs about 2 ms of one core and 2 MiB of memory
//! (measured with `cargo bench --bench crypto`: 2.1 ms per `identity/verify` and
//! 0.54 s per `identity/generate`, release build, on the project's shared 2-vCPU Xeon
//! build machine while it was busy; expect somewhat less on an idle core). With
//! `POW_THRESHOLD = 1` a random key pair passes with probability 1/256, so
//! [`Identity::generate`] needs on average 256 evaluations (plus 1/256 for reserved
//! addresses), about 0.5 s. Verifying a received identity is one evaluation, so hot
//! paths go through [`IdentityCache`].
//!
//! Collision economics: to impersonate a *chosen* node an attacker needs a key pair
//! that passes the threshold *and* hashes to that node's 40 address bits. Each
//! evaluation succeeds with probability 1/256 × 2^-40, so the expected work is 2^48 ≈
//! 2.8 × 10^14 evaluations × 2.1 ms ≈ 5.9 × 10^11 core-seconds ≈ 19,000 core-years
//! (ZeroTier quotes about 10,000 CPU-years for its own scheme). Colliding
//! with *any one* of N existing nodes divides that by N (10^4 nodes: about 2 core-years),
//! which is why roots and controllers pin the full identity of an address the first
//! time they see it and refuse a different key for it later. The 2 MiB of memory per
//! evaluation blunts GPU and ASIC speed-ups.
//!
//! Callers: `switch` and `moon` verify identities received in handshakes and WHOIS
//! replies through an [`IdentityCache`]; `io` generates and stores identities.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use argon2::{Algorithm, Argon2, Block, Params, Version};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use rand_core::{CryptoRng, RngCore};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::CryptoError;
use crate::types::NodeAddress;

/// Length of the binary public identity: address (5) | Ed25519 (32) | X25519 (32).
pub const IDENTITY_LEN: usize = NodeAddress::LEN + 32 + 32;

/// A key pair is accepted only if the first byte of its address hash is below this.
///
/// Chosen so that generation takes about 0.5 s on one core (256 evaluations of ~2 ms).
/// Changing it changes which identities are valid: it is part of the protocol.
pub const POW_THRESHOLD: u8 = 1;

/// The identity type written in the text forms.
const IDENTITY_TYPE: &str = "1";

/// Salt for the address hash; versioned so a future scheme cannot collide with this one.
const ADDRESS_SALT: &[u8] = b"skylan-address-v1";

/// Argon2 memory in KiB blocks (2 MiB).
const POW_MEMORY_BLOCKS: u32 = 2048;

/// Argon2 output length; the address is its last 5 bytes.
const POW_HASH_LEN: usize = 64;

/// A scalar used only to test that a received X25519 key is not of small order.
const PROBE_SCALAR: [u8; 32] = [0x5a; 32];

thread_local! {
    /// Argon2 working memory reused across evaluations on this thread, so checking an
    /// identity does not allocate and fault in 2 MiB each time.
    static POW_MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// A node's secret identity: its signing and agreement secrets and its public identity.
#[derive(Clone)]
pub struct Identity {
    public: PublicIdentity,
    /// Ed25519 secret; ed25519-dalek wipes it on drop.
    signing: SigningKey,
    /// X25519 secret (the Noise static key); x25519-dalek wipes it on drop.
    agreement: StaticSecret,
}

impl Identity {
    /// Generates a new identity, grinding the X25519 key until the address proof of
    /// work passes. Takes about 0.5 s of one core (see the module docs).
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Identity {
        Self::generate_counting(rng).0
    }

    /// [`Identity::generate`], also returning how many X25519 keys it drew (the last
    /// one passed), which [`Identity::regenerate`] takes to rebuild it cheaply.
    pub fn generate_counting(rng: &mut (impl RngCore + CryptoRng)) -> (Identity, u32) {
        let signing = SigningKey::generate(rng);
        let signing_public = signing.verifying_key();
        let mut drawn = 0u32;
        with_pow_memory(|memory| {
            loop {
                drawn += 1;
                let agreement = StaticSecret::random_from_rng(&mut *rng);
                let agreement_public = PublicKey::from(&agreement);
                let hash = pow_hash(
                    signing_public.as_bytes(),
                    agreement_public.as_bytes(),
                    memory,
                );
                if let Ok(address) = address_from_hash(&hash) {
                    let identity = Identity {
                        public: PublicIdentity {
                            address,
                            signing: signing_public,
                            agreement: agreement_public,
                        },
                        signing,
                        agreement,
                    };
                    return (identity, drawn);
                }
            }
        })
    }

    /// The identity [`Identity::generate_counting`] made from an RNG in the same state
    /// after drawing `drawn` keys, rebuilt with one proof-of-work evaluation instead of
    /// ~256 (the simulator keeps large pools of test identities as draw counts). Fails
    /// if the key it arrives at does not pass the proof of work.
    pub fn regenerate(
        rng: &mut (impl RngCore + CryptoRng),
        drawn: u32,
    ) -> Result<Identity, CryptoError> {
        let signing = SigningKey::generate(rng);
        for _ in 1..drawn {
            drop(StaticSecret::random_from_rng(&mut *rng));
        }
        let agreement = StaticSecret::random_from_rng(&mut *rng);
        let signing_public = signing.verifying_key();
        let agreement_public = PublicKey::from(&agreement);
        let hash = address_hash(signing_public.as_bytes(), agreement_public.as_bytes());
        let public = PublicIdentity {
            address: address_from_hash(&hash)?,
            signing: signing_public,
            agreement: agreement_public,
        };
        Ok(Identity {
            public,
            signing,
            agreement,
        })
    }

    /// The public half.
    pub fn public(&self) -> &PublicIdentity {
        &self.public
    }

    /// This node's address (shorthand for `public().address()`).
    pub fn address(&self) -> NodeAddress {
        self.public.address
    }

    /// Signs `msg` with the Ed25519 key (plain Ed25519, no pre-hash). Callers put a
    /// domain tag at the start of `msg` so one kind of signed object cannot be
    /// replayed as another.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }

    /// The X25519 secret, for the Noise handshake. Wiped when the returned value drops.
    pub fn agreement_secret(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.agreement.to_bytes())
    }

    /// The secret text form `<address>:1:<hex public keys>:<hex secret keys>`, as
    /// stored in `identity.secret`. Wiped when the returned value drops.
    pub fn to_secret_string(&self) -> Zeroizing<String> {
        let mut secret = Zeroizing::new([0u8; 64]);
        secret[..32].copy_from_slice(self.signing.as_bytes());
        secret[32..].copy_from_slice(self.agreement.as_bytes());
        let secret_hex = Zeroizing::new(hex::encode(&secret[..]));
        Zeroizing::new(format!("{}:{}", self.public, secret_hex.as_str()))
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("address", &self.public.address)
            .finish_non_exhaustive()
    }
}

impl FromStr for Identity {
    type Err = CryptoError;

    /// Parses the secret text form, checks that the secrets belong to the public keys,
    /// and recomputes the address (one proof-of-work evaluation, ~2 ms).
    fn from_str(s: &str) -> Result<Identity, CryptoError> {
        let s = s.trim();
        let mut parts = s.split(':');
        let (Some(address), Some(kind), Some(public_hex), Some(secret_hex), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(CryptoError::MalformedIdentity(
                "a secret identity must look like <10 hex address>:1:<128 hex public keys>:<128 hex secret keys>",
            ));
        };
        let public = parse_public_parts(address, kind, public_hex)?;
        let mut secret = Zeroizing::new([0u8; 64]);
        hex::decode_to_slice(secret_hex, &mut secret[..]).map_err(|_| {
            CryptoError::MalformedIdentity("the secret key part must be 128 hex digits")
        })?;
        let mut signing_seed = Zeroizing::new([0u8; 32]);
        let mut agreement_bytes = Zeroizing::new([0u8; 32]);
        signing_seed.copy_from_slice(&secret[..32]);
        agreement_bytes.copy_from_slice(&secret[32..]);
        let signing = SigningKey::from_bytes(&signing_seed);
        let agreement = StaticSecret::from(*agreement_bytes);
        if signing.verifying_key() != public.signing
            || PublicKey::from(&agreement) != public.agreement
        {
            return Err(CryptoError::KeyMismatch);
        }
        Ok(Identity {
            public,
            signing,
            agreement,
        })
    }
}

/// A node's public identity. Holding one proves that its address was derived from its
/// keys (see the module invariants).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicIdentity {
    address: NodeAddress,
    /// Decompressed once here so every signature check does not redo it.
    signing: VerifyingKey,
    agreement: PublicKey,
}

impl PublicIdentity {
    /// The node address derived from the keys.
    pub fn address(&self) -> NodeAddress {
        self.address
    }

    /// The Ed25519 public key.
    pub fn signing_key(&self) -> &[u8; 32] {
        self.signing.as_bytes()
    }

    /// The X25519 public key (the Noise static key).
    pub fn agreement_key(&self) -> &[u8; 32] {
        self.agreement.as_bytes()
    }

    /// The 69-byte binary form: address | Ed25519 public | X25519 public.
    pub fn to_bytes(&self) -> [u8; IDENTITY_LEN] {
        let mut out = [0u8; IDENTITY_LEN];
        out[..5].copy_from_slice(&self.address.to_bytes());
        out[5..37].copy_from_slice(self.signing.as_bytes());
        out[37..].copy_from_slice(self.agreement.as_bytes());
        out
    }

    /// Parses the 69-byte binary form and verifies it.
    ///
    /// Cost: one proof-of-work evaluation (about 2 ms of CPU and 2 MiB of memory, reused
    /// per thread) plus an X25519 multiplication. Use an [`IdentityCache`] for anything
    /// that arrives from the network more than once, and rate-limit misses per source.
    ///
    /// Rejects: wrong length, a reserved address, an Ed25519 key that is not a valid or
    /// is a weak point, a small-order X25519 key, a failed proof of work, and an address
    /// that does not match the keys.
    pub fn from_bytes(bytes: &[u8]) -> Result<PublicIdentity, CryptoError> {
        let bytes: &[u8; IDENTITY_LEN] = bytes
            .try_into()
            .map_err(|_| CryptoError::MalformedIdentity("a binary identity is 69 bytes"))?;
        let mut address = [0u8; 5];
        let mut signing = [0u8; 32];
        let mut agreement = [0u8; 32];
        address.copy_from_slice(&bytes[..5]);
        signing.copy_from_slice(&bytes[5..37]);
        agreement.copy_from_slice(&bytes[37..]);
        let address = NodeAddress::from_bytes(&address).map_err(|_| {
            CryptoError::MalformedIdentity("the identity carries a reserved node address")
        })?;
        Self::from_parts(address, &signing, &agreement)
    }

    /// Checks a signature made by [`Identity::sign`]. Strict verification: rejects
    /// non-canonical signatures, so a signature cannot be altered and still verify.
    pub fn verify(&self, msg: &[u8], sig: &[u8; 64]) -> Result<(), CryptoError> {
        let sig = ed25519_dalek::Signature::from_bytes(sig);
        self.signing
            .verify_strict(msg, &sig)
            .map_err(|_| CryptoError::BadSignature)
    }

    /// Verifies keys against a claimed address (the shared tail of every parser).
    fn from_parts(
        claimed: NodeAddress,
        signing: &[u8; 32],
        agreement: &[u8; 32],
    ) -> Result<PublicIdentity, CryptoError> {
        let signing_key = VerifyingKey::from_bytes(signing)
            .map_err(|_| CryptoError::WeakKey("the Ed25519 key is not a curve point"))?;
        if signing_key.is_weak() {
            return Err(CryptoError::WeakKey("the Ed25519 key has small order"));
        }
        let agreement_key = PublicKey::from(*agreement);
        if !contributory(agreement) {
            return Err(CryptoError::WeakKey("the X25519 key has small order"));
        }
        let hash = address_hash(signing, agreement);
        let derived = address_from_hash(&hash)?;
        if derived != claimed {
            return Err(CryptoError::AddressMismatch { claimed, derived });
        }
        Ok(PublicIdentity {
            address: derived,
            signing: signing_key,
            agreement: agreement_key,
        })
    }
}

impl fmt::Display for PublicIdentity {
    /// `<address>:1:<hex ed25519 public || x25519 public>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{IDENTITY_TYPE}:{}{}",
            self.address,
            hex::encode(self.signing.as_bytes()),
            hex::encode(self.agreement.as_bytes())
        )
    }
}

impl fmt::Debug for PublicIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicIdentity({})", self.address)
    }
}

impl FromStr for PublicIdentity {
    type Err = CryptoError;

    /// Parses the public text form and verifies it (one proof-of-work evaluation).
    /// A secret identity string is refused, so secrets are not passed around by mistake.
    fn from_str(s: &str) -> Result<PublicIdentity, CryptoError> {
        let s = s.trim();
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            [address, kind, public_hex] => parse_public_parts(address, kind, public_hex),
            [_, _, _, _] => Err(CryptoError::MalformedIdentity(
                "this is a secret identity; give its public form (skylan idtool getpublic)",
            )),
            _ => Err(CryptoError::MalformedIdentity(
                "a public identity must look like <10 hex address>:1:<128 hex public keys>",
            )),
        }
    }
}

/// Parses `<address>:1:<128 hex>` (already split) and verifies it.
fn parse_public_parts(
    address: &str,
    kind: &str,
    public_hex: &str,
) -> Result<PublicIdentity, CryptoError> {
    let address: NodeAddress = address.parse().map_err(|_| {
        CryptoError::MalformedIdentity("the address part must be 10 hex digits and not reserved")
    })?;
    if kind != IDENTITY_TYPE {
        return Err(CryptoError::MalformedIdentity(
            "unknown identity type (expected 1; type 0 is a ZeroTier identity, which skylan cannot use)",
        ));
    }
    let mut public = [0u8; 64];
    hex::decode_to_slice(public_hex, &mut public).map_err(|_| {
        CryptoError::MalformedIdentity("the public key part must be 128 hex digits")
    })?;
    let mut signing = [0u8; 32];
    let mut agreement = [0u8; 32];
    signing.copy_from_slice(&public[..32]);
    agreement.copy_from_slice(&public[32..]);
    PublicIdentity::from_parts(address, &signing, &agreement)
}

/// True unless X25519 with this point yields zero (a point of small order).
fn contributory(agreement: &[u8; 32]) -> bool {
    #[cfg(fuzzing)]
    return super::fuzz_memo::x25519(PROBE_SCALAR, *agreement) != [0; 32];
    #[cfg(not(fuzzing))]
    StaticSecret::from(PROBE_SCALAR)
        .diffie_hellman(&PublicKey::from(*agreement))
        .was_contributory()
}

/// The proof-of-work hash of a key pair (remembered per process in fuzz builds).
fn address_hash(signing: &[u8; 32], agreement: &[u8; 32]) -> [u8; POW_HASH_LEN] {
    let compute = || with_pow_memory(|memory| pow_hash(signing, agreement, memory));
    #[cfg(fuzzing)]
    return super::fuzz_memo::address_hash(signing, agreement, compute);
    #[cfg(not(fuzzing))]
    compute()
}

/// Runs `f` with this thread's reusable argon2 working memory.
fn with_pow_memory<R>(f: impl FnOnce(&mut [Block]) -> R) -> R {
    POW_MEMORY.with(|cell| {
        // A re-entrant call (impossible today: `f` never checks an identity) would find
        // the buffer borrowed; give it a fresh buffer instead of panicking.
        match cell.try_borrow_mut() {
            Ok(mut memory) => {
                if memory.len() != POW_MEMORY_BLOCKS as usize {
                    *memory = vec![Block::default(); POW_MEMORY_BLOCKS as usize];
                }
                f(&mut memory)
            }
            Err(_) => f(&mut vec![Block::default(); POW_MEMORY_BLOCKS as usize]),
        }
    })
}

/// The memory-hard address hash of a pair of public keys.
fn pow_hash(signing: &[u8; 32], agreement: &[u8; 32], memory: &mut [Block]) -> [u8; POW_HASH_LEN] {
    // Invariant: these constant parameters are within argon2's limits (checked by the
    // `pow_parameters_are_valid` test), so construction cannot fail.
    let params = Params::new(POW_MEMORY_BLOCKS, 1, 1, Some(POW_HASH_LEN))
        .expect("constant argon2 parameters are valid");
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut password = [0u8; 64];
    password[..32].copy_from_slice(signing);
    password[32..].copy_from_slice(agreement);
    let mut out = [0u8; POW_HASH_LEN];
    // Invariant: the password (64 B), salt (17 B), output (64 B) and memory (2048
    // blocks) all fit the parameters above, the only things argon2 checks here.
    argon
        .hash_password_into_with_memory(&password, ADDRESS_SALT, &mut out, memory)
        .expect("argon2 inputs match its parameters");
    out
}

/// Applies the threshold and the reserved-address rule to a hash.
fn address_from_hash(hash: &[u8; POW_HASH_LEN]) -> Result<NodeAddress, CryptoError> {
    if hash[0] >= POW_THRESHOLD {
        return Err(CryptoError::ProofOfWork);
    }
    let mut tail = [0u8; 5];
    tail.copy_from_slice(&hash[POW_HASH_LEN - 5..]);
    NodeAddress::from_bytes(&tail).map_err(|_| {
        CryptoError::ReservedAddress(u64::from_be_bytes([
            0, 0, 0, tail[0], tail[1], tail[2], tail[3], tail[4],
        ]))
    })
}

/// A bounded map from 69-byte binary identities to verified [`PublicIdentity`]s, so a
/// peer's identity costs one proof-of-work evaluation, not one per packet.
///
/// Eviction is two-generation: entries live in a young map; when it reaches half the
/// capacity it becomes the old map (the previous old map is dropped) and a hit in the
/// old map moves the entry back to the young one. Recently used identities survive,
/// memory stays within `capacity` entries, and every operation is O(1).
///
/// Only successes are cached. A flood of distinct invalid identities costs one
/// evaluation each: callers must rate-limit cache misses per source address.
#[derive(Debug, Clone)]
pub struct IdentityCache {
    half: usize,
    young: HashMap<[u8; IDENTITY_LEN], PublicIdentity>,
    old: HashMap<[u8; IDENTITY_LEN], PublicIdentity>,
}

impl IdentityCache {
    /// The capacity a node uses unless told otherwise.
    pub const DEFAULT_CAPACITY: usize = 4096;

    /// A cache holding at most `capacity` identities (at least 2).
    pub fn new(capacity: usize) -> IdentityCache {
        IdentityCache {
            half: (capacity / 2).max(1),
            young: HashMap::new(),
            old: HashMap::new(),
        }
    }

    /// Returns the verified identity for these 69 bytes, computing and remembering it
    /// on a miss (see [`PublicIdentity::from_bytes`] for the cost and the checks).
    pub fn verify(&mut self, bytes: &[u8]) -> Result<PublicIdentity, CryptoError> {
        let key: [u8; IDENTITY_LEN] = bytes
            .try_into()
            .map_err(|_| CryptoError::MalformedIdentity("a binary identity is 69 bytes"))?;
        if let Some(id) = self.young.get(&key) {
            return Ok(id.clone());
        }
        if let Some(id) = self.old.remove(&key) {
            self.insert_young(key, id.clone());
            return Ok(id);
        }
        let id = PublicIdentity::from_bytes(&key)?;
        self.insert_young(key, id.clone());
        Ok(id)
    }

    /// Remembers an identity that was already verified (a `PublicIdentity` can only
    /// exist verified), e.g. the roots of a world or this node's own identity.
    pub fn insert(&mut self, id: PublicIdentity) {
        let key = id.to_bytes();
        self.old.remove(&key);
        self.insert_young(key, id);
    }

    /// True if these bytes are cached (no verification is done).
    pub fn contains(&self, bytes: &[u8; IDENTITY_LEN]) -> bool {
        self.young.contains_key(bytes) || self.old.contains_key(bytes)
    }

    /// Number of cached identities.
    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    /// True if nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert_young(&mut self, key: [u8; IDENTITY_LEN], id: PublicIdentity) {
        if self.young.len() >= self.half && !self.young.contains_key(&key) {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, id);
    }
}

impl Default for IdentityCache {
    fn default() -> Self {
        IdentityCache::new(IdentityCache::DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn identity(seed: u8) -> Identity {
        Identity::generate(&mut ChaCha20Rng::from_seed([seed; 32]))
    }

    #[test]
    fn pow_parameters_are_valid() {
        assert!(Params::new(POW_MEMORY_BLOCKS, 1, 1, Some(POW_HASH_LEN)).is_ok());
    }

    #[test]
    fn generated_identity_passes_its_own_checks() {
        let id = identity(1);
        let public = id.public();
        let bytes = public.to_bytes();
        assert_eq!(&bytes[..5], &public.address().to_bytes());
        assert_eq!(PublicIdentity::from_bytes(&bytes).unwrap(), *public);
        let hash = with_pow_memory(|m| pow_hash(public.signing_key(), public.agreement_key(), m));
        assert!(hash[0] < POW_THRESHOLD);
        assert_eq!(&hash[59..], &bytes[..5]);
    }

    #[test]
    fn generation_is_deterministic_for_a_seeded_rng() {
        assert_eq!(identity(2).public(), identity(2).public());
    }

    #[test]
    fn text_forms_round_trip() {
        let id = identity(3);
        let public_text = id.public().to_string();
        assert!(public_text.starts_with(&format!("{}:1:", id.address())));
        assert_eq!(public_text.len(), 10 + 3 + 128);
        assert_eq!(public_text.parse::<PublicIdentity>().unwrap(), *id.public());

        let secret_text = id.to_secret_string();
        assert!(secret_text.starts_with(&public_text));
        let back: Identity = secret_text.parse().unwrap();
        assert_eq!(back.public(), id.public());
        assert_eq!(*back.agreement_secret(), *id.agreement_secret());
        assert_eq!(back.sign(b"m"), id.sign(b"m"));
        // Trailing newline as in a file.
        let with_newline = format!("{}\n", secret_text.as_str());
        assert!(with_newline.parse::<Identity>().is_ok());
    }

    #[test]
    fn debug_does_not_print_secrets() {
        let id = identity(4);
        let debug = format!("{id:?}");
        let secret = id.to_secret_string();
        let secret_hex = secret.rsplit(':').next().unwrap();
        assert!(!debug.contains(&secret_hex[..16]));
        assert!(!debug.contains(&secret_hex[64..80]));
        assert!(debug.contains(&id.address().to_string()));
    }

    #[test]
    fn signatures_verify_and_reject_tampering() {
        let id = identity(5);
        let sig = id.sign(b"hello");
        id.public().verify(b"hello", &sig).unwrap();
        assert_eq!(
            id.public().verify(b"hellp", &sig),
            Err(CryptoError::BadSignature)
        );
        let mut bad = sig;
        bad[10] ^= 1;
        assert_eq!(
            id.public().verify(b"hello", &bad),
            Err(CryptoError::BadSignature)
        );
        let other = identity(6);
        assert_eq!(
            other.public().verify(b"hello", &sig),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn binary_form_rejects_wrong_address_and_altered_keys() {
        let id = identity(7);
        let bytes = id.public().to_bytes();

        assert!(matches!(
            PublicIdentity::from_bytes(&bytes[..68]),
            Err(CryptoError::MalformedIdentity(_))
        ));

        let mut wrong_address = bytes;
        wrong_address[4] ^= 1;
        match PublicIdentity::from_bytes(&wrong_address) {
            Err(CryptoError::AddressMismatch { claimed, derived }) => {
                assert_eq!(derived, id.address());
                assert_ne!(claimed, derived);
            }
            other => panic!("expected an address mismatch, got {other:?}"),
        }

        // Altering the X25519 key changes the hash: with overwhelming probability it
        // fails the threshold (255/256) or derives another address.
        let mut altered = bytes;
        altered[40] ^= 0x80;
        assert!(PublicIdentity::from_bytes(&altered).is_err());

        let mut reserved = bytes;
        reserved[..5].copy_from_slice(&[0; 5]);
        assert!(matches!(
            PublicIdentity::from_bytes(&reserved),
            Err(CryptoError::MalformedIdentity(_))
        ));
    }

    #[test]
    fn small_order_keys_are_rejected() {
        let id = identity(8);
        let mut bytes = id.public().to_bytes();
        // The X25519 point 0 has small order.
        bytes[37..].copy_from_slice(&[0; 32]);
        assert_eq!(
            PublicIdentity::from_bytes(&bytes),
            Err(CryptoError::WeakKey("the X25519 key has small order"))
        );
        let mut bytes = id.public().to_bytes();
        // The Ed25519 identity point (y = 1) has small order.
        let mut identity_point = [0u8; 32];
        identity_point[0] = 1;
        bytes[5..37].copy_from_slice(&identity_point);
        assert_eq!(
            PublicIdentity::from_bytes(&bytes),
            Err(CryptoError::WeakKey("the Ed25519 key has small order"))
        );
    }

    #[test]
    fn a_key_pair_failing_the_threshold_is_rejected() {
        // Search keys until one fails the threshold (255 of 256 do), then claim the
        // address its hash would give.
        let mut rng = ChaCha20Rng::from_seed([9; 32]);
        loop {
            let signing = SigningKey::generate(&mut rng);
            let agreement = PublicKey::from(&StaticSecret::random_from_rng(&mut rng));
            let hash = with_pow_memory(|m| {
                pow_hash(signing.verifying_key().as_bytes(), agreement.as_bytes(), m)
            });
            if hash[0] < POW_THRESHOLD {
                continue;
            }
            let mut tail = [0u8; 5];
            tail.copy_from_slice(&hash[59..]);
            let Ok(claimed) = NodeAddress::from_bytes(&tail) else {
                continue;
            };
            let mut bytes = [0u8; IDENTITY_LEN];
            bytes[..5].copy_from_slice(&claimed.to_bytes());
            bytes[5..37].copy_from_slice(signing.verifying_key().as_bytes());
            bytes[37..].copy_from_slice(agreement.as_bytes());
            assert_eq!(
                PublicIdentity::from_bytes(&bytes),
                Err(CryptoError::ProofOfWork)
            );
            break;
        }
    }

    #[test]
    fn text_parsing_rejects_bad_input() {
        let id = identity(10);
        let text = id.public().to_string();
        let cases = [
            String::new(),
            "garbage".to_string(),
            text.replacen(":1:", ":0:", 1),
            text[..text.len() - 2].to_string(),
            format!("{}zz", &text[..text.len() - 2]),
            format!("0000000000{}", &text[10..]),
        ];
        for case in &cases {
            assert!(case.parse::<PublicIdentity>().is_err(), "accepted {case:?}");
        }
        // A secret string is not accepted where a public one is expected.
        assert!(matches!(
            id.to_secret_string().parse::<PublicIdentity>(),
            Err(CryptoError::MalformedIdentity(_))
        ));
        // A public string is not a secret identity.
        assert!(text.parse::<Identity>().is_err());
    }

    #[test]
    fn secret_that_does_not_match_is_rejected() {
        let a = identity(11);
        let b = identity(12);
        let a_text = a.to_secret_string();
        let b_text = b.to_secret_string();
        let a_secret = a_text.rsplit(':').next().unwrap();
        let b_public = b_text.rsplit_once(':').unwrap().0;
        let mixed = format!("{b_public}:{a_secret}");
        assert_eq!(
            mixed.parse::<Identity>().err(),
            Some(CryptoError::KeyMismatch)
        );
    }

    #[test]
    fn cache_verifies_once_and_stays_bounded() {
        let ids: Vec<Identity> = (20..25).map(identity).collect();
        let mut cache = IdentityCache::new(4);
        for id in &ids {
            assert_eq!(cache.verify(&id.public().to_bytes()).unwrap(), *id.public());
            assert!(cache.len() <= 4);
        }
        // The most recent ones are present; the oldest was evicted.
        assert!(cache.contains(&ids[4].public().to_bytes()));
        assert!(cache.contains(&ids[3].public().to_bytes()));
        assert!(!cache.contains(&ids[0].public().to_bytes()));

        // A hit in the old generation survives the next rotation.
        let mut cache = IdentityCache::new(4);
        cache.insert(ids[0].public().clone());
        cache.insert(ids[1].public().clone());
        cache.insert(ids[2].public().clone()); // rotates: 0 and 1 are old
        cache.verify(&ids[0].public().to_bytes()).unwrap(); // promotes 0
        cache.insert(ids[3].public().clone()); // rotates again: 1 is dropped
        assert!(cache.contains(&ids[0].public().to_bytes()));
        assert!(!cache.contains(&ids[1].public().to_bytes()));
        assert_eq!(cache.len(), 3); // 3 young; 2 and 0 old

        // Failures are reported and not cached.
        let mut bad = ids[4].public().to_bytes();
        bad[4] ^= 1;
        assert!(cache.verify(&bad).is_err());
        assert!(!cache.contains(&bad));
        assert!(cache.verify(&bad[..10]).is_err());
    }

    /// Prints the cost of one proof-of-work evaluation and of a generation, to tune
    /// `POW_THRESHOLD`. Run with `cargo test --release --lib pow_timing -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing report, not a check"]
    #[allow(clippy::disallowed_methods)]
    fn pow_timing() {
        let id = identity(30);
        let bytes = id.public().to_bytes();
        let n = 200;
        let start = std::time::Instant::now();
        for _ in 0..n {
            PublicIdentity::from_bytes(&bytes).unwrap();
        }
        let per_eval = start.elapsed() / n;
        let start = std::time::Instant::now();
        for seed in 0..8u8 {
            identity(100 + seed);
        }
        println!(
            "one evaluation: {per_eval:?}; one generation: {:?} (mean of 8)",
            start.elapsed() / 8
        );
    }
}
