//! A fast hasher for the simulator's internal maps (sockets, NAT tables).
//!
//! The keys are addresses and ports the test itself chose, never untrusted input, so
//! there is no hash flooding to defend against and std's SipHash only costs time. The
//! mixing is FxHash's (multiply-rotate per word). Iteration order of these maps never
//! influences a run: they are only used for lookups.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` with [`FastHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;
/// A `HashSet` with [`FastHasher`].
pub(crate) type FastSet<T> = HashSet<T, BuildHasherDefault<FastHasher>>;

/// FxHash-style word mixer.
#[derive(Default, Clone, Copy, Debug)]
pub(crate) struct FastHasher(u64);

const K: u64 = 0x517c_c1b7_2722_0a95;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            // `chunks_exact(8)` yields 8-byte slices.
            self.add(u64::from_le_bytes(
                chunk.try_into().expect("an 8-byte chunk"),
            ));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[test]
    fn distinct_sockets_rarely_collide() {
        let mut seen = FastSet::default();
        let mut buckets = std::collections::HashSet::new();
        for i in 0..10_000u32 {
            let ip = std::net::Ipv4Addr::from(0xc633_6400 + (i % 250));
            let sa = SocketAddr::new(ip.into(), 1024 + (i / 250) as u16);
            assert!(seen.insert(sa));
            let mut h = FastHasher::default();
            std::hash::Hash::hash(&sa, &mut h);
            buckets.insert(h.finish());
        }
        assert_eq!(
            buckets.len(),
            10_000,
            "full 64-bit hashes of distinct sockets differ"
        );
    }
}
