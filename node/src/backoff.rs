//! When to try the router again: doubling delays from 1 s to 5 minutes, each cut at random to
//! between half and all of itself, so nodes that lost the same router do not all come back
//! in the same second.

/// The first delay in seconds.
const FIRST_SECS: u64 = 1;
/// The longest delay in seconds.
const MAX_SECS: u64 = 300;

/// Consecutive failures and the delay they earn.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// A success: the next failure waits the first delay again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// A failure: seconds to wait before the next attempt (at least 1).
    pub fn next_delay(&mut self) -> u64 {
        let full = FIRST_SECS
            .checked_shl(self.failures)
            .unwrap_or(MAX_SECS)
            .min(MAX_SECS);
        self.failures = self.failures.saturating_add(1).min(32);
        let mut byte = [0u8; 8];
        // Without randomness the delay is still bounded, only less spread.
        let r = getrandom::fill(&mut byte).map_or(0, |()| u64::from_le_bytes(byte));
        let half = full / 2;
        (half + r % (full - half + 1)).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_five_minutes_with_jitter() {
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..12).map(|_| b.next_delay()).collect();
        assert_eq!(delays[0], 1);
        assert!((4..=8).contains(&delays[3]), "{delays:?}");
        assert!(delays[11] >= 150 && delays[11] <= 300, "{delays:?}");
        b.reset();
        assert_eq!(b.next_delay(), 1);
    }
}
