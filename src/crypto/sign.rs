//! Bare Ed25519 signing keys and signature checks, for objects that are not signed by a
//! node identity (world update keys) and for checking a signature under a raw key.
//!
//! Every signed object starts its signed bytes with its own domain tag (for example
//! `skylan-world-v1`), so a signature over one kind of object never verifies as another.
//! Signatures are plain Ed25519 (RFC 8032, no pre-hash) and are checked strictly.
//!
//! Callers: `moon::world` (signing and checking worlds), `io::idtool` (update keys).

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use super::{CryptoError, Identity};

/// Something that can sign: a node [`Identity`] or an [`UpdateKey`].
pub trait Signer {
    /// The Ed25519 public key that verifies this signer's signatures.
    fn public_key(&self) -> [u8; 32];
    /// Signs `msg` (plain Ed25519).
    fn sign_message(&self, msg: &[u8]) -> [u8; 64];
}

impl Signer for Identity {
    fn public_key(&self) -> [u8; 32] {
        *self.public().signing_key()
    }

    fn sign_message(&self, msg: &[u8]) -> [u8; 64] {
        self.sign(msg)
    }
}

/// A standalone Ed25519 key pair, e.g. the key that must sign the next version of a
/// planet. Text form (one line): `ed25519:<64 hex public>:<64 hex secret seed>`.
/// The secret is wiped on drop and never printed by `Debug`.
#[derive(Clone)]
pub struct UpdateKey {
    key: SigningKey,
}

/// The prefix of the text form.
const UPDATE_KEY_PREFIX: &str = "ed25519";

impl UpdateKey {
    /// Generates a fresh key pair.
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> UpdateKey {
        UpdateKey {
            key: SigningKey::generate(rng),
        }
    }

    /// The text form, including the secret. Wiped when the returned value drops.
    pub fn to_secret_string(&self) -> Zeroizing<String> {
        let secret = Zeroizing::new(hex::encode(self.key.as_bytes()));
        Zeroizing::new(format!(
            "{UPDATE_KEY_PREFIX}:{}:{}",
            hex::encode(self.key.verifying_key().as_bytes()),
            secret.as_str()
        ))
    }
}

impl Signer for UpdateKey {
    fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    fn sign_message(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }
}

impl fmt::Debug for UpdateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "UpdateKey(public {})",
            hex::encode(self.key.verifying_key().as_bytes())
        )
    }
}

impl FromStr for UpdateKey {
    type Err = CryptoError;

    /// Parses the text form and checks that the secret belongs to the public key.
    fn from_str(s: &str) -> Result<UpdateKey, CryptoError> {
        let shape = CryptoError::MalformedIdentity(
            "an update key must look like ed25519:<64 hex public key>:<64 hex secret key>",
        );
        let mut parts = s.trim().split(':');
        let (Some(UPDATE_KEY_PREFIX), Some(public_hex), Some(secret_hex), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(shape);
        };
        let mut public = [0u8; 32];
        let mut secret = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(public_hex, &mut public).map_err(|_| shape)?;
        hex::decode_to_slice(secret_hex, &mut secret[..]).map_err(|_| shape)?;
        let key = SigningKey::from_bytes(&secret);
        if key.verifying_key().to_bytes() != public {
            return Err(CryptoError::KeyMismatch);
        }
        Ok(UpdateKey { key })
    }
}

/// Checks an Ed25519 signature under a raw public key (strict: rejects small-order
/// keys and non-canonical signatures).
pub fn verify_signature(key: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> Result<(), CryptoError> {
    let key = VerifyingKey::from_bytes(key).map_err(|_| CryptoError::BadSignature)?;
    let sig = ed25519_dalek::Signature::from_bytes(sig);
    key.verify_strict(msg, &sig)
        .map_err(|_| CryptoError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn update_key_signs_and_round_trips() {
        let key = UpdateKey::generate(&mut ChaCha20Rng::from_seed([1; 32]));
        let sig = key.sign_message(b"world");
        verify_signature(&key.public_key(), b"world", &sig).unwrap();
        assert_eq!(
            verify_signature(&key.public_key(), b"worle", &sig),
            Err(CryptoError::BadSignature)
        );

        let text = key.to_secret_string();
        let back: UpdateKey = format!("{}\n", text.as_str()).parse().unwrap();
        assert_eq!(back.public_key(), key.public_key());
        assert!(!format!("{key:?}").contains(&text[text.len() - 64..]));
    }

    #[test]
    fn update_key_text_is_checked() {
        let key = UpdateKey::generate(&mut ChaCha20Rng::from_seed([2; 32]));
        let other = UpdateKey::generate(&mut ChaCha20Rng::from_seed([3; 32]));
        let text = key.to_secret_string();
        let other_text = other.to_secret_string();
        let mixed = format!("{}{}", &text[..8 + 64], &other_text[8 + 64..]);
        assert_eq!(
            mixed.parse::<UpdateKey>().err(),
            Some(CryptoError::KeyMismatch)
        );
        assert!("ed25519:00:00".parse::<UpdateKey>().is_err());
        assert!(text.replace("ed25519", "rsa").parse::<UpdateKey>().is_err());
    }

    #[test]
    fn identity_is_a_signer() {
        let id = Identity::generate(&mut ChaCha20Rng::from_seed([4; 32]));
        let sig = id.sign_message(b"x");
        verify_signature(&id.public_key(), b"x", &sig).unwrap();
        id.public().verify(b"x", &sig).unwrap();
    }

    #[test]
    fn garbage_keys_do_not_verify() {
        assert_eq!(
            verify_signature(&[0; 32], b"x", &[0; 64]),
            Err(CryptoError::BadSignature)
        );
    }
}
