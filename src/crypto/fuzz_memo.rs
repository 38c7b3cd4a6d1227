//! Fuzz builds only (`cfg(fuzzing)`, which cargo-fuzz sets; no other build compiles
//! this file): remembered results of the expensive public-key functions.
//!
//! The core fuzz targets replay a recorded conversation for every input, so each input
//! repeats the same X25519 operations and identity proofs of work. Under coverage
//! instrumentation those cost milliseconds and left the targets at ~200 executions per
//! second. Here each distinct input to X25519 or to the address hash is computed once
//! per process and then looked up, so results are bit for bit those of the real
//! functions (the checked-in identity pool and corpora stay valid), only repeats are
//! free. Mutated keys still pay the full price once each.
//!
//! Each table holds at most [`CAPACITY`] entries and starts over when full.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Most entries one table keeps.
pub(crate) const CAPACITY: usize = 1 << 16;

/// A process-wide table of results keyed by their input bytes.
pub(crate) struct Memo<V>(Mutex<BTreeMap<Vec<u8>, V>>);

impl<V: Clone> Memo<V> {
    /// An empty table (usable in a `static`).
    pub(crate) const fn new() -> Memo<V> {
        Memo(Mutex::new(BTreeMap::new()))
    }

    /// The remembered result for `key`, or `compute()` remembered.
    pub(crate) fn get_or(&self, key: &[u8], compute: impl FnOnce() -> V) -> V {
        let known = self.lock().get(key).cloned();
        if let Some(value) = known {
            return value;
        }
        let value = compute();
        let mut table = self.lock();
        if table.len() >= CAPACITY {
            table.clear();
        }
        table.insert(key.to_vec(), value.clone());
        value
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, V>> {
        // A panic while the lock was held (the fuzzer reporting a crash) leaves the
        // table consistent: entries are inserted whole.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// X25519 of a secret scalar (clamped, as RFC 7748 says) and a point, remembered.
pub(crate) fn x25519(secret: [u8; 32], point: [u8; 32]) -> [u8; 32] {
    static TABLE: Memo<[u8; 32]> = Memo::new();
    TABLE.get_or(&[secret, point].concat(), || {
        x25519_dalek::x25519(secret, point)
    })
}

/// The identity proof-of-work hash of a key pair, remembered (`compute` is the real one).
pub(crate) fn address_hash(
    signing: &[u8; 32],
    agreement: &[u8; 32],
    compute: impl FnOnce() -> [u8; 64],
) -> [u8; 64] {
    static TABLE: Memo<[u8; 64]> = Memo::new();
    TABLE.get_or(&[*signing, *agreement].concat(), compute)
}

/// snow's X25519 with [`x25519`] underneath: the same keys and shared secrets as
/// snow's own `Dh25519`, remembered.
#[derive(Default)]
pub(crate) struct MemoDh25519 {
    secret: [u8; 32],
    public: [u8; 32],
}

impl Drop for MemoDh25519 {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

impl snow::types::Dh for MemoDh25519 {
    fn name(&self) -> &'static str {
        "25519"
    }

    fn pub_len(&self) -> usize {
        32
    }

    fn priv_len(&self) -> usize {
        32
    }

    fn set(&mut self, privkey: &[u8]) {
        let n = privkey.len().min(32);
        self.secret = [0; 32];
        self.secret[..n].copy_from_slice(&privkey[..n]);
        self.public = x25519(self.secret, x25519_dalek::X25519_BASEPOINT_BYTES);
    }

    fn generate(&mut self, rng: &mut dyn snow::types::Random) -> Result<(), snow::Error> {
        let mut secret = [0u8; 32];
        rng.try_fill_bytes(&mut secret)?;
        self.set(&secret);
        zeroize::Zeroize::zeroize(&mut secret);
        Ok(())
    }

    fn pubkey(&self) -> &[u8] {
        &self.public
    }

    fn privkey(&self) -> &[u8] {
        &self.secret
    }

    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        let point: [u8; 32] = pubkey
            .get(..32)
            .and_then(|p| p.try_into().ok())
            .ok_or(snow::Error::Dh)?;
        let shared = x25519(self.secret, point);
        let n = out.len().min(32);
        out[..n].copy_from_slice(&shared[..n]);
        Ok(())
    }
}
