//! [`ShardMap`]: an immutable-once-published map that is cheap to copy with a few
//! entries changed, for the snapshot's peer and session tables.
//!
//! # Contract
//! - The map is split into hash maps (shards) behind `Arc`s: one while it is small,
//!   eight times as many whenever it outgrows [`PER_SHARD`] entries per shard (up to
//!   [`MAX_SHARDS`]). `clone` copies the shard pointers only; `insert` and `remove`
//!   copy the one shard they change if another map still shares it. Publishing a
//!   snapshot with k of n peers changed costs about k * [`PER_SHARD`] entry copies
//!   instead of n.
//! - A lookup is one multiply to pick the shard, then an ordinary hash-map lookup.
//! - Iteration order is unspecified (shard by shard).

use std::hash::Hash;
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt};

use crate::types::NodeAddress;

/// A map grows more shards when it holds more than this many entries per shard.
pub(crate) const PER_SHARD: usize = 128;
/// At most this many shards.
pub(crate) const MAX_SHARDS: usize = 4096;

/// A key that picks its shard from its own bits.
pub(crate) trait ShardKey: Copy + Eq + Hash {
    /// The bits the shard is derived from (mixed before use, so any spread works).
    fn bits(&self) -> u64;
}

impl ShardKey for NodeAddress {
    fn bits(&self) -> u64 {
        self.value()
    }
}

impl ShardKey for u32 {
    fn bits(&self) -> u64 {
        u64::from(*self)
    }
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct ShardMap<K, V> {
    shards: Vec<Arc<HashMap<K, V>>>,
    len: usize,
}

impl<K, V> Clone for ShardMap<K, V> {
    fn clone(&self) -> Self {
        ShardMap {
            shards: self.shards.clone(),
            len: self.len,
        }
    }
}

impl<K: ShardKey, V> Default for ShardMap<K, V> {
    fn default() -> Self {
        ShardMap {
            shards: vec![Arc::new(HashMap::new())],
            len: 0,
        }
    }
}

/// Which of `count` (a power of two, at most 2^24) shards holds `key`.
fn shard_of<K: ShardKey>(key: &K, count: usize) -> usize {
    // Fibonacci hashing: the top bits of the product depend on every bit of the key.
    (key.bits().wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize & (count - 1)
}

impl<K: ShardKey, V> ShardMap<K, V> {
    /// The value for `key`.
    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.shards[shard_of(key, self.shards.len())].get(key)
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Every entry, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards.iter().flat_map(|s| s.iter())
    }
}

impl<K: ShardKey, V: Clone> ShardMap<K, V> {
    /// Sets `key` to `value` (copying its shard if it is shared); returns the old value.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        let count = self.shards.len();
        let old = Arc::make_mut(&mut self.shards[shard_of(&key, count)]).insert(key, value);
        if old.is_none() {
            self.len += 1;
            if self.len > count * PER_SHARD && count < MAX_SHARDS {
                self.reshard(count * 8);
            }
        }
        old
    }

    /// Removes `key` (copying its shard if it is shared and holds the key).
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let count = self.shards.len();
        let shard = &mut self.shards[shard_of(key, count)];
        if !shard.contains_key(key) {
            return None;
        }
        let old = Arc::make_mut(shard).remove(key);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Spreads the entries over `count` new shards (each entry copied once).
    fn reshard(&mut self, count: usize) {
        let mut shards: Vec<HashMap<K, V>> = (0..count).map(|_| HashMap::new()).collect();
        for (k, v) in self.iter() {
            shards[shard_of(k, count)].insert(*k, v.clone());
        }
        self.shards = shards.into_iter().map(Arc::new).collect();
    }
}

impl<K: ShardKey, V: Clone> FromIterator<(K, V)> for ShardMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = ShardMap::default();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_copy_only_the_shard_they_touch() {
        let a: ShardMap<u32, u64> = (0..2_000u32).map(|i| (i, u64::from(i) * 2)).collect();
        assert_eq!(a.len(), 2_000);
        let mut b = a.clone();
        assert_eq!(b.insert(7, 1), Some(14));
        assert_eq!(b.remove(&8), Some(16));
        assert_eq!(b.remove(&8), None, "removed once");
        assert_eq!(b.insert(5_000, 3), None);
        assert_eq!(
            (a.get(&7), b.get(&7)),
            (Some(&14), Some(&1)),
            "a is unchanged"
        );
        assert!(a.get(&8).is_some() && b.get(&8).is_none());
        assert_eq!((a.len(), b.len()), (2_000, 2_000));
        let shared = a
            .shards
            .iter()
            .zip(&b.shards)
            .filter(|(x, y)| Arc::ptr_eq(x, y))
            .count();
        assert_eq!(a.shards.len(), 64, "2,000 entries grew 64 shards");
        assert!(
            shared >= 64 - 3,
            "only touched shards were copied: {shared}"
        );
        let mut seen: Vec<u32> = b.iter().map(|(k, _)| *k).collect();
        seen.sort_unstable();
        assert_eq!(seen.len(), 2_000);
        assert!(seen.contains(&5_000) && !seen.contains(&8));
    }

    #[test]
    fn keys_spread_over_the_shards() {
        let mut counts = [0usize; 64];
        for i in 0..6_400u32 {
            counts[shard_of(&i, 64)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (50..=150).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn a_small_map_is_one_shard_and_grows_as_it_fills() {
        let mut m: ShardMap<u32, u32> = ShardMap::default();
        m.insert(1, 1);
        assert_eq!(m.shards.len(), 1);
        for i in 0..=(PER_SHARD as u32) {
            m.insert(i, i);
        }
        assert_eq!((m.len(), m.shards.len()), (PER_SHARD + 1, 8));
        assert!(
            (0..=(PER_SHARD as u32)).all(|i| m.get(&i) == Some(&i)),
            "nothing lost"
        );
    }
}
