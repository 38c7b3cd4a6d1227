//! The simulator's single source of randomness.
//!
//! Owns one seeded `ChaCha8Rng`. Every random choice the simulator makes (link loss,
//! jitter, NAT public ports, seeds handed to hosts) is drawn from it, in event order, so a
//! seed fixes the whole run. Only [`super::Sim`] and the NAT table call it.
//!
//! Invariant: no method draws when the answer is already certain (loss 0 or 1, jitter
//! 0), so a run with lossless, jitter-free links does not depend on how many draws other
//! code would have made.

use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// A seeded random stream with the few distributions the simulator needs.
#[derive(Debug, Clone)]
pub(crate) struct SimRng(ChaCha8Rng);

impl SimRng {
    /// A stream fixed by `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// 64 uniformly random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A uniform integer in `0..n`, without modulo bias (Lemire's multiply-and-reject).
    /// `n == 0` yields 0.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n <= 1 {
            return 0;
        }
        // Reject the few low products that would make some results more likely.
        let threshold = n.wrapping_neg() % n;
        loop {
            let product = u128::from(self.0.next_u64()) * u128::from(n);
            if (product as u64) >= threshold {
                return (product >> 64) as u64;
            }
        }
    }

    /// True with probability `p` (values outside `0..=1` are clamped; NaN counts as 0).
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        if p.is_nan() || p <= 0.0 {
            return false;
        }
        if p >= 1.0 {
            return true;
        }
        // 53 random bits give a uniform f64 in [0, 1).
        let unit = (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        unit < p
    }

    /// A uniform delay in `0..=max`, at microsecond resolution (the simulator's clock tick).
    pub(crate) fn jitter(&mut self, max: Duration) -> Duration {
        let max_us = u64::try_from(max.as_micros()).unwrap_or(u64::MAX);
        if max_us == 0 {
            return Duration::ZERO;
        }
        Duration::from_micros(self.below(max_us.saturating_add(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = SimRng::new(42);
        let mut b = SimRng::new(42);
        let mut c = SimRng::new(43);
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut r = SimRng::new(1);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            let x = r.below(7);
            assert!(x < 7);
            seen[x as usize] += 1;
        }
        // Each bucket expects 1000; 800 is more than 6 standard deviations away.
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
        assert_eq!(r.below(0), 0);
        assert_eq!(r.below(1), 0);
    }

    #[test]
    fn chance_edges_do_not_draw() {
        let mut a = SimRng::new(5);
        let mut b = SimRng::new(5);
        assert!(!a.chance(0.0));
        assert!(a.chance(1.0));
        assert!(!a.chance(f64::NAN));
        assert!(a.chance(7.0));
        assert_eq!(a.jitter(Duration::ZERO), Duration::ZERO);
        assert_eq!(
            a.next_u64(),
            b.next_u64(),
            "certain answers consumed randomness"
        );
    }

    #[test]
    fn jitter_is_bounded_inclusive() {
        let mut r = SimRng::new(9);
        let max = Duration::from_micros(3);
        let mut seen = [false; 4];
        for _ in 0..200 {
            let j = r.jitter(max);
            assert!(j <= max);
            seen[j.as_micros() as usize] = true;
        }
        assert!(seen.iter().all(|&s| s), "{seen:?}");
    }
}
