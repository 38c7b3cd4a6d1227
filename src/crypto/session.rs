//! Sessions: the Noise IK handshake and the data-path keys it produces.
//!
//! Handshake: `Noise_IK_25519_ChaChaPoly_BLAKE2s` (via `snow`) with prologue
//! `skylan-session-v2`. The initiator knows the responder's X25519 key (from WHOIS, a
//! world or a cache); the responder learns the initiator's from message 1.
//!
//! ```text
//! initiator                                           responder
//!   initiate(local, remote, seed, ts) ── message 1 (178 B) ──▶ respond(local, msg1, seed)
//!     e, es, s, ss, payload = initiator's 69-byte public identity | ciphers offered 1
//!                             | timestamp 12
//!   finish(msg2)  ◀── message 2 (49 B): e, ee, se, payload = cipher chosen 1 ──
//! ```
//!
//! The timestamp ([`HandshakeTimestamp`], seconds and nanoseconds of wall-clock time)
//! only ever grows for one initiator; a responder refuses a message 1 whose timestamp
//! is not newer than the last one it accepted from that peer, so a recorded message 1
//! is refused for good, not only while its ephemeral key is remembered.
//!
//! Cipher negotiation: the initiator offers the data-path ciphers it runs fast (a bit
//! set: [`Cipher::ChaCha20Poly1305`] always, [`Cipher::Aes256Gcm`] where the CPU has
//! AES instructions); the responder chooses AES-256-GCM when both offer it, else
//! ChaCha20-Poly1305, and says which in message 2. Both payloads are encrypted and
//! bound into the handshake hash, so neither can be changed on the way. Protocol 1
//! messages (other prologue, no timestamp) are refused: a peer that could leave the
//! timestamp out could replay old messages.
//!
//! [`respond`] guarantees that the X25519 key inside the 69-byte identity equals the
//! Noise static key that authenticated message 1; the caller must still check the
//! identity's address (proof of work) with an
//! [`IdentityCache`](super::IdentityCache) before trusting it. Both sides then hold
//! [`SessionKeys`] from snow's raw split: the first key carries initiator→responder
//! traffic, the second responder→initiator; each side sends with one and receives with
//! the other.
//!
//! Randomness: snow draws the ephemeral key from a resolver whose RNG is a ChaCha20
//! stream seeded with the `seed` the caller passes (the simulator passes seeded values,
//! the node passes fresh OS randomness). A seed must never be reused for two
//! handshakes in real use: a repeated ephemeral key breaks forward secrecy.
//!
//! Data path: ChaCha20-Poly1305 (RFC 8439) or AES-256-GCM from `ring`, as negotiated,
//! both with the 32-byte keys of the split, a 16-byte tag, and nonce = 4 zero bytes ‖
//! counter (u64 little-endian), the layout WireGuard uses. The caller owns the counter (one per
//! packet, never reused with a key) and the replay window.
//!
//! Secrets: raw key bytes taken from snow are wiped after being loaded into `ring`.
//! `ring` 0.17 keeps its own copy of each key inside `LessSafeKey` and does not wipe it
//! on drop (it has no zeroize support); that copy lives as long as the `SessionKeys`.

use ring::aead::{AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use snow::params::NoiseParams;
use snow::resolvers::{CryptoResolver, DefaultResolver, FallbackResolver};
use snow::types::{Cipher as NoiseCipher, Dh, Hash, Random};
use zeroize::Zeroizing;

use super::{CryptoError, IDENTITY_LEN, Identity, PublicIdentity};

/// The Noise protocol name.
const NOISE_PARAMS: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";

/// Bound into the handshake hash so a skylan handshake cannot be confused with any
/// other protocol's use of the same Noise pattern.
const PROLOGUE: &[u8] = b"skylan-session-v2";

/// Length of the AEAD tag appended by [`SessionKeys::seal`].
pub const TAG_LEN: usize = 16;

/// Length of a [`HandshakeTimestamp`].
pub const TIMESTAMP_LEN: usize = 12;

/// Length of Noise message 1: ephemeral (32) + encrypted static (32 + 16) + encrypted
/// 69-byte identity, cipher offer and timestamp (69 + 1 + 12 + 16).
pub const HANDSHAKE_INIT_LEN: usize =
    32 + 32 + TAG_LEN + IDENTITY_LEN + 1 + TIMESTAMP_LEN + TAG_LEN;

/// Length of Noise message 2: ephemeral (32) + the encrypted cipher choice (1 + 16).
pub const HANDSHAKE_RESP_LEN: usize = 32 + 1 + TAG_LEN;

/// A data-path AEAD. Both use 32-byte keys, 12-byte nonces and 16-byte tags, so the
/// packet layout does not depend on the choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cipher {
    /// ChaCha20-Poly1305: fast everywhere, the fallback.
    ChaCha20Poly1305,
    /// AES-256-GCM: about three times faster where the CPU has AES instructions.
    Aes256Gcm,
}

impl Cipher {
    fn bit(self) -> u8 {
        match self {
            Cipher::ChaCha20Poly1305 => 1,
            Cipher::Aes256Gcm => 2,
        }
    }

    fn from_byte(b: u8) -> Option<Cipher> {
        [Cipher::ChaCha20Poly1305, Cipher::Aes256Gcm]
            .into_iter()
            .find(|c| c.bit() == b)
    }

    /// The name `peers` and logs show.
    pub fn as_str(self) -> &'static str {
        match self {
            Cipher::ChaCha20Poly1305 => "chacha20-poly1305",
            Cipher::Aes256Gcm => "aes-256-gcm",
        }
    }
}

/// The ciphers this machine offers: ChaCha20-Poly1305, and AES-256-GCM when the CPU has
/// AES and carry-less multiply instructions (without them ring's AES is slower than
/// ChaCha20). Reads CPU feature flags only; the answer never changes.
pub fn local_offer() -> u8 {
    let mut offer = Cipher::ChaCha20Poly1305.bit();
    if hardware_aes() {
        offer |= Cipher::Aes256Gcm.bit();
    }
    offer
}

/// The cipher two nodes on this machine (or on machines alike) agree on.
pub fn preferred_cipher() -> Cipher {
    choose(local_offer(), local_offer())
}

#[cfg(target_arch = "x86_64")]
fn hardware_aes() -> bool {
    std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
}

#[cfg(target_arch = "aarch64")]
fn hardware_aes() -> bool {
    std::arch::is_aarch64_feature_detected!("aes")
        && std::arch::is_aarch64_feature_detected!("pmull")
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn hardware_aes() -> bool {
    false
}

/// What a responder accepting `accept` picks from an initiator's `offer`.
fn choose(offer: u8, accept: u8) -> Cipher {
    if offer & accept & Cipher::Aes256Gcm.bit() != 0 {
        Cipher::Aes256Gcm
    } else {
        Cipher::ChaCha20Poly1305
    }
}

/// When a message 1 was made: seconds (u64) and nanoseconds (u32) since the Unix
/// epoch, big-endian, so that byte order is time order (TAI64N's idea).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HandshakeTimestamp([u8; TIMESTAMP_LEN]);

impl HandshakeTimestamp {
    /// The timestamp `micros` microseconds after the Unix epoch.
    pub fn from_unix_micros(micros: u64) -> Self {
        let mut b = [0u8; TIMESTAMP_LEN];
        b[..8].copy_from_slice(&(micros / 1_000_000).to_be_bytes());
        b[8..].copy_from_slice(&((micros % 1_000_000) as u32 * 1000).to_be_bytes());
        Self(b)
    }

    /// The next representable timestamp (one nanosecond later).
    pub fn next(self) -> Self {
        let secs = u64::from_be_bytes(self.0[..8].try_into().unwrap_or_default());
        let nanos = u32::from_be_bytes(self.0[8..].try_into().unwrap_or_default());
        let (secs, nanos) = if nanos + 1 >= 1_000_000_000 {
            (secs.saturating_add(1), 0)
        } else {
            (secs, nanos + 1)
        };
        let mut b = [0u8; TIMESTAMP_LEN];
        b[..8].copy_from_slice(&secs.to_be_bytes());
        b[8..].copy_from_slice(&nanos.to_be_bytes());
        Self(b)
    }
}

/// The initiator's state between sending message 1 and receiving message 2.
pub struct InitiatorHandshake {
    state: snow::HandshakeState,
    /// The ciphers message 1 offered (the answer must be one of them).
    offer: u8,
}

impl std::fmt::Debug for InitiatorHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InitiatorHandshake { .. }")
    }
}

/// What the responder gets from a valid message 1.
#[derive(Debug)]
pub struct Responded {
    /// The initiator's 69-byte public identity, as sent. Its X25519 key is the Noise
    /// static key that authenticated the message; its address is not yet checked.
    pub initiator: [u8; IDENTITY_LEN],
    /// When the initiator made message 1 (by its clock); must be newer than the last
    /// one accepted from it.
    pub timestamp: HandshakeTimestamp,
    /// Message 2, to send back.
    pub reply: Vec<u8>,
    /// The session keys (responder's directions).
    pub keys: SessionKeys,
}

/// Starts a handshake with `remote`. Returns the state to keep and message 1, whose
/// payload is `local`'s 69-byte public identity, this machine's cipher offer and
/// `timestamp`.
pub fn initiate(
    local: &Identity,
    remote: &PublicIdentity,
    seed: [u8; 32],
    timestamp: HandshakeTimestamp,
) -> Result<(InitiatorHandshake, Vec<u8>), CryptoError> {
    initiate_offering(local, remote, seed, timestamp, local_offer())
}

fn initiate_offering(
    local: &Identity,
    remote: &PublicIdentity,
    seed: [u8; 32],
    timestamp: HandshakeTimestamp,
    offer: u8,
) -> Result<(InitiatorHandshake, Vec<u8>), CryptoError> {
    let secret = local.agreement_secret();
    let identity = local.public().to_bytes();
    let (state, message) = message1(&secret, &identity, remote, seed, timestamp, offer)?;
    Ok((InitiatorHandshake { state, offer }, message))
}

/// Message 1 from raw parts: an X25519 secret and the 69 identity bytes to claim (which
/// the simulator's forgeries need not prove). Returns the initiator state and the message.
pub(crate) fn message1(
    secret: &[u8; 32],
    identity: &[u8; IDENTITY_LEN],
    remote: &PublicIdentity,
    seed: [u8; 32],
    timestamp: HandshakeTimestamp,
    offer: u8,
) -> Result<(snow::HandshakeState, Vec<u8>), CryptoError> {
    let mut state = builder(seed)
        .local_private_key(&secret[..])
        .and_then(|b| b.remote_public_key(remote.agreement_key()))
        .and_then(|b| b.build_initiator())
        .map_err(|_| CryptoError::Handshake("could not set up the Noise initiator"))?;
    let mut payload = identity.to_vec();
    payload.push(offer);
    payload.extend_from_slice(&timestamp.0);
    let mut message = vec![0u8; HANDSHAKE_INIT_LEN];
    let len = state
        .write_message(&payload, &mut message)
        .map_err(|_| CryptoError::Handshake("could not write message 1"))?;
    message.truncate(len);
    Ok((state, message))
}

impl InitiatorHandshake {
    /// Reads message 2 and derives the session keys (initiator's directions).
    pub fn finish(mut self, msg2: &[u8]) -> Result<SessionKeys, CryptoError> {
        if msg2.len() != HANDSHAKE_RESP_LEN {
            return Err(CryptoError::Handshake("message 2 has the wrong length"));
        }
        let mut payload = [0u8; HANDSHAKE_RESP_LEN];
        let len = self
            .state
            .read_message(msg2, &mut payload)
            .map_err(|_| CryptoError::Handshake("message 2 did not authenticate"))?;
        if !self.state.is_handshake_finished() {
            return Err(CryptoError::Handshake(
                "message 2 did not finish the handshake",
            ));
        }
        let cipher = match &payload[..len] {
            [b] => Cipher::from_byte(*b)
                .filter(|c| c.bit() & self.offer != 0)
                .ok_or(CryptoError::Handshake(
                    "message 2 chose a cipher we did not offer",
                ))?,
            _ => return Err(CryptoError::Handshake("message 2 carries unexpected data")),
        };
        let (to_responder, to_initiator) = raw_split(&mut self.state);
        Ok(SessionKeys::from_raw(&to_responder, &to_initiator, cipher))
    }
}

/// Answers message 1 addressed to `local`. Fails if the message is malformed, was not
/// made for `local`'s static key, or carries an identity whose X25519 key is not the
/// key that authenticated the message.
pub fn respond(local: &Identity, msg1: &[u8], seed: [u8; 32]) -> Result<Responded, CryptoError> {
    respond_accepting(local, msg1, seed, local_offer())
}

fn respond_accepting(
    local: &Identity,
    msg1: &[u8],
    seed: [u8; 32],
    accept: u8,
) -> Result<Responded, CryptoError> {
    if msg1.len() != HANDSHAKE_INIT_LEN {
        return Err(CryptoError::Handshake("message 1 has the wrong length"));
    }
    let secret = local.agreement_secret();
    let mut state = builder(seed)
        .local_private_key(&secret[..])
        .and_then(|b| b.build_responder())
        .map_err(|_| CryptoError::Handshake("could not set up the Noise responder"))?;
    let mut payload = [0u8; HANDSHAKE_INIT_LEN];
    let len = state
        .read_message(msg1, &mut payload)
        .map_err(|_| CryptoError::Handshake("message 1 did not authenticate"))?;
    if len != IDENTITY_LEN + 1 + TIMESTAMP_LEN {
        return Err(CryptoError::Handshake(
            "message 1 does not carry an identity, an offer and a timestamp",
        ));
    }
    let (identity, rest) = payload[..len].split_at(IDENTITY_LEN);
    let offer = rest[0];
    let mut initiator = [0u8; IDENTITY_LEN];
    initiator.copy_from_slice(identity);
    let mut timestamp = [0u8; TIMESTAMP_LEN];
    timestamp.copy_from_slice(&rest[1..]);
    let remote_static = state
        .get_remote_static()
        .ok_or(CryptoError::Handshake("message 1 has no static key"))?;
    if remote_static != &initiator[IDENTITY_LEN - 32..] {
        return Err(CryptoError::Handshake(
            "the identity in message 1 does not match its Noise static key",
        ));
    }
    let cipher = choose(offer, accept);
    let choice = [cipher.bit()];
    let mut reply = vec![0u8; HANDSHAKE_RESP_LEN];
    let len = state
        .write_message(&choice, &mut reply)
        .map_err(|_| CryptoError::Handshake("could not write message 2"))?;
    reply.truncate(len);
    let (to_responder, to_initiator) = raw_split(&mut state);
    Ok(Responded {
        initiator,
        timestamp: HandshakeTimestamp(timestamp),
        reply,
        keys: SessionKeys::from_raw(&to_initiator, &to_responder, cipher),
    })
}

/// The two directions of a session, from snow's split: (initiator→responder,
/// responder→initiator). Wiped when dropped.
fn raw_split(state: &mut snow::HandshakeState) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    let (first, second) = state.dangerously_get_raw_split();
    (Zeroizing::new(first), Zeroizing::new(second))
}

fn builder(seed: [u8; 32]) -> snow::Builder<'static> {
    builder_with_prologue(seed, PROLOGUE)
}

fn builder_with_prologue(seed: [u8; 32], prologue: &'static [u8]) -> snow::Builder<'static> {
    // Invariant: NOISE_PARAMS is a constant, supported protocol name (covered by every
    // handshake test), so parsing cannot fail.
    let params: NoiseParams = NOISE_PARAMS
        .parse()
        .expect("the Noise protocol name is valid");
    let resolver =
        FallbackResolver::new(Box::new(SeededResolver { seed }), Box::new(DefaultResolver));
    // Invariant: the prologue is set once on a fresh builder, the only failure case.
    snow::Builder::with_resolver(params, Box::new(resolver))
        .prologue(prologue)
        .expect("the prologue is set once")
}

/// Supplies only the RNG (a seeded ChaCha20 stream); everything else falls back to
/// snow's default resolver. The seed decides the ephemeral key, so it is wiped on drop.
struct SeededResolver {
    seed: [u8; 32],
}

impl Drop for SeededResolver {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.seed);
    }
}

impl CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        use rand_core::SeedableRng;
        Some(Box::new(SeededRng(rand_chacha::ChaCha20Rng::from_seed(
            self.seed,
        ))))
    }

    fn resolve_dh(&self, _choice: &snow::params::DHChoice) -> Option<Box<dyn Dh>> {
        // Fuzz builds remember X25519 results (see `fuzz_memo`); every other build
        // uses snow's own implementation.
        #[cfg(fuzzing)]
        return Some(Box::new(super::fuzz_memo::MemoDh25519::default()));
        #[cfg(not(fuzzing))]
        None
    }

    fn resolve_hash(&self, _choice: &snow::params::HashChoice) -> Option<Box<dyn Hash>> {
        None
    }

    fn resolve_cipher(&self, _choice: &snow::params::CipherChoice) -> Option<Box<dyn NoiseCipher>> {
        None
    }
}

struct SeededRng(rand_chacha::ChaCha20Rng);

impl Random for SeededRng {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        rand_core::RngCore::fill_bytes(&mut self.0, dest);
        Ok(())
    }
}

/// The data-path keys of one session: one key to seal what we send, one to open what
/// we receive. Cheap to share by reference across threads (`Send + Sync`).
pub struct SessionKeys {
    send: LessSafeKey,
    receive: LessSafeKey,
    cipher: Cipher,
}

impl SessionKeys {
    /// Builds keys from raw 32-byte keys (send, receive) for `cipher`.
    pub(crate) fn from_raw(send: &[u8; 32], receive: &[u8; 32], cipher: Cipher) -> SessionKeys {
        SessionKeys {
            send: ring_key(send, cipher),
            receive: ring_key(receive, cipher),
            cipher,
        }
    }

    /// The negotiated cipher.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// Encrypts `buf[start..]` in place and appends the 16-byte tag. `buf[..start]` (a
    /// header the caller already wrote) is left as is; authenticate it through `aad`.
    ///
    /// `counter` must never repeat with these keys. Panics only on caller bugs: if
    /// `start > buf.len()`, or if the plaintext exceeds ring's 256 GiB limit.
    pub fn seal(&self, counter: u64, aad: &[u8], buf: &mut Vec<u8>, start: usize) {
        // Invariants: ring fails only for inputs over 2^38 bytes, and `start` is within
        // `buf` (both documented caller obligations; datagrams are at most 64 KiB).
        let tag = self
            .send
            .seal_in_place_separate_tag(nonce(counter), Aad::from(aad), &mut buf[start..])
            .expect("plaintext fits the AEAD's length limit");
        buf.extend_from_slice(tag.as_ref());
    }

    /// Decrypts and authenticates `buf` (ciphertext followed by the tag) in place and
    /// returns the plaintext, a prefix of `buf`. On failure the contents of `buf` are
    /// unspecified and the error says nothing about why.
    pub fn open<'a>(
        &self,
        counter: u64,
        aad: &[u8],
        buf: &'a mut [u8],
    ) -> Result<&'a [u8], CryptoError> {
        self.receive
            .open_in_place(nonce(counter), Aad::from(aad), buf)
            .map(|plain| &*plain)
            .map_err(|_| CryptoError::Decrypt)
    }
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys { .. }")
    }
}

fn ring_key(raw: &[u8; 32], cipher: Cipher) -> LessSafeKey {
    let algorithm = match cipher {
        Cipher::ChaCha20Poly1305 => &CHACHA20_POLY1305,
        Cipher::Aes256Gcm => &AES_256_GCM,
    };
    // Invariant: both algorithms take exactly 32-byte keys.
    LessSafeKey::new(UnboundKey::new(algorithm, raw).expect("a 32-byte key fits both AEADs"))
}

/// 4 zero bytes ‖ counter as u64 little-endian.
fn nonce(counter: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20poly1305::aead::{AeadInPlace, KeyInit};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use std::sync::OnceLock;

    /// Two identities shared by the tests (generation costs ~0.5 s each).
    fn ts() -> HandshakeTimestamp {
        HandshakeTimestamp::from_unix_micros(1_765_000_000_000_000)
    }

    fn pair() -> &'static (Identity, Identity) {
        static PAIR: OnceLock<(Identity, Identity)> = OnceLock::new();
        PAIR.get_or_init(|| {
            (
                Identity::generate(&mut ChaCha20Rng::from_seed([1; 32])),
                Identity::generate(&mut ChaCha20Rng::from_seed([2; 32])),
            )
        })
    }

    fn third() -> &'static Identity {
        static THIRD: OnceLock<Identity> = OnceLock::new();
        THIRD.get_or_init(|| Identity::generate(&mut ChaCha20Rng::from_seed([3; 32])))
    }

    fn handshake(seed_a: u8, seed_b: u8) -> (SessionKeys, Responded, Vec<u8>) {
        let (a, b) = pair();
        let (hs, msg1) = initiate(a, b.public(), [seed_a; 32], ts()).unwrap();
        let msg1_copy = msg1.clone();
        let responded = respond(b, &msg1, [seed_b; 32]).unwrap();
        let keys = hs.finish(&responded.reply).unwrap();
        (keys, responded, msg1_copy)
    }

    #[test]
    fn handshake_gives_matching_keys_and_the_initiator_identity() {
        let (a, _) = pair();
        let (a_keys, responded, msg1) = handshake(10, 11);
        assert_eq!(msg1.len(), HANDSHAKE_INIT_LEN);
        assert_eq!(responded.reply.len(), HANDSHAKE_RESP_LEN);
        assert_eq!(responded.initiator, a.public().to_bytes());
        let b_keys = responded.keys;

        let mut buf = b"header".to_vec();
        buf.extend_from_slice(b"hello from a");
        a_keys.seal(7, b"aad", &mut buf, 6);
        assert_eq!(buf.len(), 6 + 12 + TAG_LEN);
        assert_eq!(&buf[..6], b"header");
        assert_eq!(
            b_keys.open(7, b"aad", &mut buf[6..]).unwrap(),
            b"hello from a"
        );

        let mut buf = b"hello from b".to_vec();
        b_keys.seal(0, b"", &mut buf, 0);
        assert_eq!(a_keys.open(0, b"", &mut buf).unwrap(), b"hello from b");

        // Each side cannot open its own traffic: the directions differ.
        let mut buf = b"echo".to_vec();
        a_keys.seal(1, b"", &mut buf, 0);
        assert_eq!(
            a_keys.open(1, b"", &mut buf.clone()),
            Err(CryptoError::Decrypt)
        );
    }

    #[test]
    fn seeds_make_handshakes_deterministic() {
        let (_, r1, m1) = handshake(20, 21);
        let (_, r2, m2) = handshake(20, 21);
        let (_, r3, m3) = handshake(22, 21);
        assert_eq!(m1, m2);
        assert_eq!(r1.reply, r2.reply);
        assert_ne!(m1, m3);
        assert_ne!(r1.reply, r3.reply);
    }

    #[test]
    fn message_1_for_someone_else_is_refused() {
        let (a, b) = pair();
        let (_, msg1) = initiate(a, b.public(), [30; 32], ts()).unwrap();
        assert!(matches!(
            respond(third(), &msg1, [31; 32]),
            Err(CryptoError::Handshake(_))
        ));
    }

    #[test]
    fn tampered_or_truncated_handshake_messages_are_refused() {
        let (a, b) = pair();
        let (_, msg1) = initiate(a, b.public(), [40; 32], ts()).unwrap();
        for i in [0, 31, 32, 70, 100, HANDSHAKE_INIT_LEN - 1] {
            let mut bad = msg1.clone();
            bad[i] ^= 0x01;
            assert!(respond(b, &bad, [41; 32]).is_err(), "flipped byte {i}");
        }
        assert!(respond(b, &msg1[..HANDSHAKE_INIT_LEN - 1], [41; 32]).is_err());
        assert!(respond(b, &[], [41; 32]).is_err());

        let (hs, msg1) = initiate(a, b.public(), [42; 32], ts()).unwrap();
        let responded = respond(b, &msg1, [43; 32]).unwrap();
        let mut bad = responded.reply.clone();
        bad[40] ^= 0x01;
        assert!(hs.finish(&bad).is_err());
        let (hs, _) = initiate(a, b.public(), [44; 32], ts()).unwrap();
        assert!(hs.finish(&responded.reply[..10]).is_err());
    }

    #[test]
    fn reply_for_another_handshake_is_refused() {
        let (a, b) = pair();
        let (hs1, _) = initiate(a, b.public(), [50; 32], ts()).unwrap();
        let (_, msg1b) = initiate(a, b.public(), [51; 32], ts()).unwrap();
        let responded = respond(b, &msg1b, [52; 32]).unwrap();
        assert!(hs1.finish(&responded.reply).is_err());
    }

    #[test]
    fn identity_payload_must_match_the_static_key() {
        // Build message 1 by hand with a payload naming another identity.
        let (a, b) = pair();
        let secret = a.agreement_secret();
        let mut state = builder([60; 32])
            .local_private_key(&secret[..])
            .unwrap()
            .remote_public_key(b.public().agreement_key())
            .unwrap()
            .build_initiator()
            .unwrap();
        let mut msg1 = vec![0u8; HANDSHAKE_INIT_LEN];
        let mut payload = third().public().to_bytes().to_vec();
        payload.push(Cipher::ChaCha20Poly1305.bit());
        payload.extend_from_slice(&[0; TIMESTAMP_LEN]);
        let len = state.write_message(&payload, &mut msg1).unwrap();
        assert_eq!(len, HANDSHAKE_INIT_LEN);
        assert_eq!(
            respond(b, &msg1, [61; 32]).err(),
            Some(CryptoError::Handshake(
                "the identity in message 1 does not match its Noise static key"
            ))
        );
    }

    #[test]
    fn tampering_and_wrong_keys_fail_to_open() {
        let (a_keys, responded, _) = handshake(70, 71);
        let b_keys = responded.keys;
        let mut sealed = vec![0xabu8; 100];
        a_keys.seal(5, b"aad", &mut sealed, 0);
        for i in [0, 50, 99, 100, 115] {
            let mut bad = sealed.clone();
            bad[i] ^= 0x40;
            assert_eq!(b_keys.open(5, b"aad", &mut bad), Err(CryptoError::Decrypt));
        }
        assert_eq!(
            b_keys.open(6, b"aad", &mut sealed.clone()),
            Err(CryptoError::Decrypt),
            "wrong counter"
        );
        assert_eq!(
            b_keys.open(5, b"aae", &mut sealed.clone()),
            Err(CryptoError::Decrypt),
            "wrong aad"
        );
        assert_eq!(
            b_keys.open(5, b"aad", &mut sealed[..15].to_vec()),
            Err(CryptoError::Decrypt),
            "shorter than a tag"
        );
        let (other_keys, _, _) = handshake(72, 73);
        assert_eq!(
            other_keys.open(5, b"aad", &mut sealed.clone()),
            Err(CryptoError::Decrypt),
            "keys of another session"
        );
        assert_eq!(
            b_keys.open(5, b"aad", &mut sealed).unwrap(),
            &[0xab; 100][..]
        );
    }

    #[test]
    fn ring_output_is_byte_identical_to_rustcrypto() {
        let send = [0x42u8; 32];
        let keys = SessionKeys::from_raw(&send, &send, Cipher::ChaCha20Poly1305);
        let rc = chacha20poly1305::ChaCha20Poly1305::new((&send).into());
        for (counter, len) in [
            (0u64, 0usize),
            (1, 1),
            (0x0102_0304_0506_0708, 1400),
            (u64::MAX, 65536),
        ] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let aad = [0x11u8; 24];

            let mut ours = plain.clone();
            keys.seal(counter, &aad, &mut ours, 0);

            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&counter.to_le_bytes());
            let mut theirs = plain.clone();
            rc.encrypt_in_place((&nonce).into(), &aad, &mut theirs)
                .unwrap();
            assert_eq!(ours, theirs, "counter {counter} length {len}");

            // And RustCrypto's output opens with ring.
            assert_eq!(keys.open(counter, &aad, &mut theirs).unwrap(), &plain[..]);
        }
    }

    /// Runs a handshake with explicit offers; returns both sides' keys.
    fn negotiate(offer: u8, accept: u8) -> Result<(SessionKeys, SessionKeys), CryptoError> {
        let (a, b) = pair();
        let (hs, msg1) = initiate_offering(a, b.public(), [20; 32], ts(), offer)?;
        let responded = respond_accepting(b, &msg1, [21; 32], accept)?;
        Ok((hs.finish(&responded.reply)?, responded.keys))
    }

    fn round_trip(a: &SessionKeys, b: &SessionKeys) -> bool {
        let mut buf = vec![0x5a; 1400];
        a.seal(9, b"aad", &mut buf, 0);
        b.open(9, b"aad", &mut buf).is_ok_and(|p| p == [0x5a; 1400])
    }

    #[test]
    fn aes_gcm_is_chosen_only_when_both_sides_offer_it() {
        let both = Cipher::ChaCha20Poly1305.bit() | Cipher::Aes256Gcm.bit();
        let chacha = Cipher::ChaCha20Poly1305.bit();
        for (offer, accept, expected) in [
            (both, both, Cipher::Aes256Gcm),
            (both, chacha, Cipher::ChaCha20Poly1305),
            (chacha, both, Cipher::ChaCha20Poly1305),
            (chacha, chacha, Cipher::ChaCha20Poly1305),
        ] {
            let (a, b) = negotiate(offer, accept).unwrap();
            assert_eq!((a.cipher(), b.cipher()), (expected, expected));
            assert!(round_trip(&a, &b) && round_trip(&b, &a), "{expected:?}");
        }
        // The two ciphers really differ on the wire: keys of one do not open the other.
        let (aes, _) = negotiate(both, both).unwrap();
        let (_, chacha_b) = negotiate(chacha, chacha).unwrap();
        assert!(!round_trip(&aes, &chacha_b));
    }

    #[test]
    fn protocol_1_messages_are_refused() {
        let (a, b) = pair();
        // A protocol 1 initiator: old prologue, identity and offer, no timestamp.
        let mut state = builder_with_prologue([30; 32], b"skylan-session-v1")
            .local_private_key(&a.agreement_secret()[..])
            .and_then(|x| x.remote_public_key(b.public().agreement_key()))
            .and_then(|x| x.build_initiator())
            .unwrap();
        let mut payload = a.public().to_bytes().to_vec();
        payload.push(local_offer());
        let mut msg1 = vec![0u8; HANDSHAKE_INIT_LEN];
        let n = state.write_message(&payload, &mut msg1).unwrap();
        msg1.truncate(n);
        assert!(respond(b, &msg1, [31; 32]).is_err());
        // The same padded to the new length still fails: the prologue differs.
        msg1.resize(HANDSHAKE_INIT_LEN, 0);
        assert!(respond(b, &msg1, [31; 32]).is_err());
        // A responder that answers without a cipher choice is refused too.
        let (hs, msg1) = initiate(a, b.public(), [32; 32], ts()).unwrap();
        let msg2 = reply_by_hand(b, &msg1, &[]);
        assert!(hs.finish(&msg2).is_err());
    }

    #[test]
    fn the_timestamp_travels_encrypted_and_orders_by_time() {
        let (a, b) = pair();
        let t = HandshakeTimestamp::from_unix_micros(1_765_000_000_123_456);
        let (_, msg1) = initiate(a, b.public(), [34; 32], t).unwrap();
        assert_eq!(respond(b, &msg1, [35; 32]).unwrap().timestamp, t);
        assert!(HandshakeTimestamp::from_unix_micros(1_765_000_000_123_457) > t);
        assert!(t.next() > t);
        assert!(
            HandshakeTimestamp::from_unix_micros(999_999).next()
                == HandshakeTimestamp::from_unix_micros(999_999).next()
        );
        assert!(
            HandshakeTimestamp::from_unix_micros(2_000_000)
                > HandshakeTimestamp::from_unix_micros(1_999_999).next()
        );
    }

    /// Message 2 from `responder` to `msg1` with any payload we like.
    fn reply_by_hand(responder: &Identity, msg1: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut state = builder([33; 32])
            .local_private_key(&responder.agreement_secret()[..])
            .and_then(|x| x.build_responder())
            .unwrap();
        let mut read = [0u8; HANDSHAKE_INIT_LEN];
        state.read_message(msg1, &mut read).unwrap();
        let mut msg2 = vec![0u8; HANDSHAKE_RESP_LEN];
        let n = state.write_message(payload, &mut msg2).unwrap();
        msg2.truncate(n);
        msg2
    }

    #[test]
    fn a_choice_that_was_not_offered_is_refused() {
        let (a, b) = pair();
        let chacha = Cipher::ChaCha20Poly1305.bit();
        let (hs, msg1) = initiate_offering(a, b.public(), [40; 32], ts(), chacha).unwrap();
        let msg2 = reply_by_hand(b, &msg1, &[Cipher::Aes256Gcm.bit()]);
        assert!(hs.finish(&msg2).is_err());
    }
}
