//! The anti-replay window for data-packet counters (RFC 6479, as in WireGuard).
//!
//! A ring of 128 blocks of 64 bits remembers which counters were seen. The window covers
//! the highest counter seen and the [`ReplayWindow::WINDOW`] = (128 − 1) × 64 = 8128
//! counters below it; anything older is rejected, because its bit may have been reused.
//! Moving the window forward clears only the blocks it passes over, so an update costs
//! at most 128 word writes and usually none.
//!
//! Use: call [`ReplayWindow::check`] before decrypting (it is cheap and does not change
//! anything, so forged packets cannot move the window), then [`ReplayWindow::update`]
//! only after the packet authenticated. `update` re-checks, so a duplicate that raced
//! in between is still refused.
//!
//! Callers: the per-session receive path ([`super::tunnel::SessionState::open`]), in the
//! node's data plane and control core and in the root core.

/// Bits per block.
const BLOCK_BITS: u64 = 64;
/// Blocks in the ring (a power of two).
const RING_BLOCKS: u64 = 128;

/// RFC 6479 sliding-window replay filter for one receive session.
#[derive(Clone, Debug)]
pub struct ReplayWindow {
    /// Highest counter accepted so far (meaningless while `ring` is all zero and nothing
    /// was accepted; counter 0 is then still accepted because its bit is clear).
    last: u64,
    ring: [u64; RING_BLOCKS as usize],
}

impl ReplayWindow {
    /// How far below the highest accepted counter a counter may be and still be accepted.
    pub const WINDOW: u64 = (RING_BLOCKS - 1) * BLOCK_BITS;

    /// An empty window: every counter is new.
    pub fn new() -> ReplayWindow {
        ReplayWindow {
            last: 0,
            ring: [0; RING_BLOCKS as usize],
        }
    }

    /// True if `counter` has not been accepted and is not too old. Does not change
    /// the window; call before decrypting.
    pub fn check(&self, counter: u64) -> bool {
        if counter > self.last {
            return true;
        }
        if self.last - counter > Self::WINDOW {
            return false;
        }
        let (block, bit) = Self::position(counter);
        self.ring[block] & bit == 0
    }

    /// Marks `counter` as seen if [`check`](Self::check) accepts it, moving the window
    /// forward when it is the newest. Returns whether it was accepted. Call only after
    /// the packet authenticated.
    pub fn update(&mut self, counter: u64) -> bool {
        if !self.check(counter) {
            return false;
        }
        if counter > self.last {
            let current = self.last / BLOCK_BITS;
            let target = counter / BLOCK_BITS;
            let advance = (target - current).min(RING_BLOCKS);
            for i in 1..=advance {
                self.ring[((current + i) % RING_BLOCKS) as usize] = 0;
            }
            self.last = counter;
        }
        let (block, bit) = Self::position(counter);
        self.ring[block] |= bit;
        true
    }

    /// The highest counter accepted so far (0 if none).
    pub fn highest(&self) -> u64 {
        self.last
    }

    fn position(counter: u64) -> (usize, u64) {
        let block = ((counter / BLOCK_BITS) % RING_BLOCKS) as usize;
        let bit = 1u64 << (counter % BLOCK_BITS);
        (block, bit)
    }
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    const W: u64 = ReplayWindow::WINDOW;

    #[test]
    fn window_is_8128() {
        assert_eq!(W, 8128);
    }

    #[test]
    fn in_order_counters_are_accepted_once() {
        let mut w = ReplayWindow::new();
        for c in 0..20_000 {
            assert!(w.check(c));
            assert!(w.update(c));
            assert!(!w.check(c));
            assert!(!w.update(c));
        }
        // Everything behind is refused, in the window (seen) or beyond it (too old).
        for c in 0..20_000 {
            assert!(!w.check(c), "counter {c} accepted twice");
        }
    }

    #[test]
    fn check_does_not_change_the_window() {
        let mut w = ReplayWindow::new();
        assert!(w.check(1_000_000));
        assert!(w.check(1_000_000));
        assert!(w.update(5));
        assert!(w.check(1_000_000));
        assert!(w.check(4));
        assert_eq!(w.highest(), 5);
    }

    #[test]
    fn edges_of_the_window_exactly() {
        let mut w = ReplayWindow::new();
        let top = 100_000;
        assert!(w.update(top));
        assert!(w.check(top - W), "oldest counter inside the window");
        assert!(!w.check(top - W - 1), "first counter beyond the window");
        assert!(w.update(top - W));
        assert!(!w.update(top - W));
        // Every counter in the window except `top` and `top - W` is still fresh.
        for c in top - W + 1..top {
            assert!(w.check(c), "counter {c}");
        }
    }

    #[test]
    fn every_offset_inside_the_window_for_every_alignment() {
        // For each position of the top counter inside a block, mark every other counter
        // in the window, then check each exactly once.
        for align in 0..BLOCK_BITS {
            let top = 10 * W + align;
            let mut w = ReplayWindow::new();
            assert!(w.update(top));
            for c in (top - W..top).step_by(2) {
                assert!(w.update(c));
            }
            for c in top - W..=top {
                let seen = c == top || (c - (top - W)) % 2 == 0;
                assert_eq!(w.check(c), !seen, "align {align} counter {c}");
            }
            assert!(!w.check(top - W - 1));
        }
    }

    #[test]
    fn a_jump_clears_old_bits() {
        let mut w = ReplayWindow::new();
        for c in 0..200 {
            w.update(c);
        }
        // Jump far ahead: old counters that share ring positions must not look seen
        // if they are inside the new window, and must be refused if outside.
        let jump = 1_000_000;
        assert!(w.update(jump));
        assert!(!w.check(150), "far behind the new window");
        for c in jump - W..jump {
            assert!(w.check(c), "counter {c} inside the new window looked seen");
        }
        // Jump by less than a full ring.
        let mut w = ReplayWindow::new();
        for c in 0..W {
            w.update(c);
        }
        let next = W + 3 * BLOCK_BITS + 7;
        assert!(w.update(next));
        for c in next - W..W {
            assert!(!w.check(c), "counter {c} was seen");
        }
        for c in W..next {
            assert!(w.check(c), "counter {c} was not seen");
        }
    }

    #[test]
    fn extreme_counters_do_not_overflow() {
        let mut w = ReplayWindow::new();
        assert!(w.update(u64::MAX - 1));
        assert!(w.update(u64::MAX));
        assert!(!w.update(u64::MAX));
        assert!(w.check(u64::MAX - W));
        assert!(!w.check(u64::MAX - W - 1));
        assert!(!w.check(0));
    }

    /// Reference: a set of seen counters and the highest one.
    fn reference_accepts(seen: &HashSet<u64>, highest: Option<u64>, c: u64) -> bool {
        match highest {
            None => true,
            Some(h) => !seen.contains(&c) && (c > h || h - c <= W),
        }
    }

    proptest! {
        #[test]
        fn matches_a_set_inside_the_window(
            start in 0u64..u64::MAX / 2,
            steps in proptest::collection::vec((-9000i64..9000, any::<bool>()), 1..400),
        ) {
            let mut w = ReplayWindow::new();
            let mut seen = HashSet::new();
            let mut highest: Option<u64> = None;
            let mut cursor = start;
            for (delta, commit) in steps {
                cursor = cursor.saturating_add_signed(delta);
                let c = cursor;
                let expected = reference_accepts(&seen, highest, c);
                prop_assert_eq!(w.check(c), expected, "check({})", c);
                if commit {
                    prop_assert_eq!(w.update(c), expected, "update({})", c);
                    if expected {
                        seen.insert(c);
                        highest = Some(highest.map_or(c, |h| h.max(c)));
                    }
                }
            }
        }

        #[test]
        fn duplicates_are_always_refused(counters in proptest::collection::vec(0u64..20_000, 1..500)) {
            let mut w = ReplayWindow::new();
            let mut accepted = HashSet::new();
            for c in counters {
                if w.update(c) {
                    prop_assert!(accepted.insert(c), "counter {} accepted twice", c);
                }
            }
        }
    }
}
