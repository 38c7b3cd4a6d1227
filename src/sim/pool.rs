//! The large pool of test identities, for simulated meshes of thousands of nodes.
//!
//! Generating an identity costs ~0.5 s of proof of work, so 10,000 of them would cost
//! over an hour per test run. The pool keeps, for identity `i`, only how many X25519
//! keys [`Identity::generate_counting`] drew from `ChaCha20Rng::seed_from_u64(2^32 +
//! i)` before one passed; [`large_test_identity`] replays the RNG and checks that key
//! with one proof-of-work evaluation (~2 ms). Identities are real: every core verifies
//! them as it would any other.
//!
//! The counts live in `test_identity_draws.txt` (one per line); the ignored test
//! `extend_large_pool` appends more (`SKYLAN_POOL_SIZE=N`, release build, all cores).

use std::sync::OnceLock;

use rand_core::SeedableRng;

use crate::crypto::identity::Identity;

static DRAWS: &str = include_str!("test_identity_draws.txt");

/// Identity `i` of the pool is made from this seed plus `i`.
const SEED_BASE: u64 = 1 << 32;

/// The entries of a checked-in pool file: its lines, trimmed, without blank lines and
/// `#` comments.
pub(crate) fn entries(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

fn draws() -> &'static [u32] {
    static PARSED: OnceLock<Vec<u32>> = OnceLock::new();
    PARSED.get_or_init(|| {
        entries(DRAWS)
            // Invariant: the file is written by `extend_large_pool` only.
            .map(|l| l.parse().expect("a draw count"))
            .collect()
    })
}

/// How many identities the large pool holds.
pub fn large_pool_size() -> usize {
    draws().len()
}

/// The `i`-th identity of the large pool (one proof-of-work evaluation).
///
/// # Panics
/// If `i` is beyond the pool, or the checked-in count does not lead to a valid
/// identity (the identity scheme changed: extend the pool again from an empty file).
pub fn large_test_identity(i: usize) -> Identity {
    let drawn = *draws().get(i).unwrap_or_else(|| {
        panic!(
            "the large identity pool has {} entries, asked for #{i}",
            large_pool_size()
        )
    });
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(SEED_BASE + i as u64);
    Identity::regenerate(&mut rng, drawn)
        .unwrap_or_else(|e| panic!("large pool identity #{i} is invalid: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appends draw counts until the pool holds `SKYLAN_POOL_SIZE` identities, in
    /// chunks, so an interrupted run keeps what it made:
    /// `SKYLAN_POOL_SIZE=10000 cargo test --release --lib extend_large_pool -- --ignored`
    #[test]
    #[ignore]
    fn extend_large_pool() {
        use std::io::Write;
        let want: usize = std::env::var("SKYLAN_POOL_SIZE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/sim/test_identity_draws.txt"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let mut have = entries(&text).count();
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        while have < want {
            let chunk = (have..want.min(have + 64)).collect::<Vec<usize>>();
            let counts: Vec<(usize, u32)> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let mine: Vec<usize> =
                            chunk.iter().copied().filter(|i| i % threads == t).collect();
                        s.spawn(move || {
                            mine.into_iter()
                                .map(|i| {
                                    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(
                                        SEED_BASE + i as u64,
                                    );
                                    (i, Identity::generate_counting(&mut rng).1)
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                let mut all: Vec<(usize, u32)> = handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap())
                    .collect();
                all.sort();
                all
            });
            for (_, drawn) in &counts {
                writeln!(file, "{drawn}").unwrap();
            }
            file.flush().unwrap();
            have += counts.len();
            eprintln!("{have} / {want}");
        }
    }

    #[test]
    fn a_pool_entry_rebuilds_the_generated_identity() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(SEED_BASE + 7);
        let (made, drawn) = Identity::generate_counting(&mut rng);
        let mut again = rand_chacha::ChaCha20Rng::seed_from_u64(SEED_BASE + 7);
        let rebuilt = Identity::regenerate(&mut again, drawn).unwrap();
        assert_eq!(rebuilt.public(), made.public());
        assert_eq!(
            rebuilt.to_secret_string().as_str(),
            made.to_secret_string().as_str()
        );
        // One draw short is another key, which fails the proof of work (or, with
        // probability 1/256, passes as another identity: never the same one).
        let mut short = rand_chacha::ChaCha20Rng::seed_from_u64(SEED_BASE + 7);
        if let Ok(other) = Identity::regenerate(&mut short, drawn.saturating_sub(1).max(1))
            && drawn > 1
        {
            assert_ne!(other.public(), made.public());
        }
    }

    #[test]
    fn the_checked_in_pool_is_valid_and_distinct() {
        let n = large_pool_size().min(8);
        let addresses: std::collections::BTreeSet<_> =
            (0..n).map(|i| large_test_identity(i).address()).collect();
        assert_eq!(addresses.len(), n);
    }
}
