//! Forged handshake traffic: what anyone who knows a responder's public identity can
//! send without holding an identity of their own. The adversarial tests, the DoS
//! scenarios and the flood benchmark (`examples/handshake_flood.rs`) use it.
//!
//! A [`throwaway_init`] is a genuine Noise IK message 1 under fresh random keys whose
//! claimed identity matches its Noise static key but (almost surely) fails the proof of
//! work, so a responder without defences pays its public-key work and an identity check
//! for each one. [`handshake_init`] wraps one in a datagram with a correct mac1, so it
//! passes the cheap first check: exactly the traffic the handshake guard must absorb.

use rand_core::RngCore;

use crate::crypto::guard::{MacKeys, write_macs};
use crate::crypto::session::{self, HandshakeTimestamp};
use crate::crypto::{IDENTITY_LEN, PublicIdentity};
use crate::types::NodeAddress;
use crate::wire::{MAC_LEN, Outer};

/// A random node address that is not reserved.
pub fn random_address(rng: &mut impl RngCore) -> NodeAddress {
    loop {
        if let Ok(a) = NodeAddress::new(rng.next_u64() & 0xff_ffff_ffff) {
            return a;
        }
    }
}

/// A Noise IK message 1 for `responder` from fresh random keys, carrying a 69-byte
/// identity that matches the Noise static key but (almost surely) fails the proof of
/// work, and a zero timestamp. Returns the address it claims and the message.
pub fn throwaway_init(
    rng: &mut impl RngCore,
    responder: &PublicIdentity,
) -> (NodeAddress, Vec<u8>) {
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let agreement = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(secret));
    let mut signing_seed = [0u8; 32];
    rng.fill_bytes(&mut signing_seed);
    let signing = ed25519_dalek::SigningKey::from_bytes(&signing_seed).verifying_key();
    let claimed = random_address(rng);
    let mut identity = [0u8; IDENTITY_LEN];
    identity[..5].copy_from_slice(&claimed.to_bytes());
    identity[5..37].copy_from_slice(signing.as_bytes());
    identity[37..].copy_from_slice(agreement.as_bytes());
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    let timestamp = HandshakeTimestamp::from_unix_micros(0);
    // Invariant: the keys are 32 bytes and the payload fits message 1, the only ways
    // writing message 1 can fail.
    let (_, message) = session::message1(
        &secret,
        &identity,
        responder,
        seed,
        timestamp,
        session::local_offer(),
    )
    .expect("a forged message 1 is well formed");
    (claimed, message)
}

/// A HandshakeInit datagram from `src` to `responder` carrying `noise`, with a correct
/// mac1 and no mac2.
pub fn handshake_init(
    sender_index: u32,
    noise: &[u8],
    responder: &PublicIdentity,
    src: NodeAddress,
) -> Vec<u8> {
    let mut out = Vec::new();
    Outer::HandshakeInit {
        sender_index,
        noise,
        mac1: [0; MAC_LEN],
        mac2: [0; MAC_LEN],
    }
    .emit(responder.address(), src, &mut out);
    write_macs(
        &mut out,
        &MacKeys::for_responder(responder.agreement_key()),
        None,
    );
    out
}
