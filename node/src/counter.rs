//! A kernel or device counter extended to a 64-bit running total that never goes back: RAPL
//! wraps at `max_energy_range_uj`, a cgroup's `usage_usec` starts again at 0 when the cgroup is
//! recreated, a plug's total restarts when it is reset. Sampling often enough (more often than
//! the counter can wrap twice) and keeping the total in every outbox entry makes a period's
//! figure the difference of two totals, whatever happened to the raw counter in between.

use serde::{Deserialize, Serialize};

/// What a raw counter does when it goes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollover {
    /// It started again from 0 (a recreated cgroup, a reset plug, an interface that came
    /// back): what it reads now was all counted since the last sample.
    Reset,
    /// It wrapped from `max` to 0 (RAPL `max_energy_range_uj`).
    Wrap { max: u64 },
}

/// One raw reading: the value and what identifies the thing counted (a cgroup's inode, an
/// interface's index; 0 where there is no such thing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Raw {
    /// The counter's value as read.
    pub value: u64,
    /// Changes when the counted object is replaced by another.
    pub identity: u64,
}

/// A counter's last raw reading and the running total it has contributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// The last raw reading, if the source has ever been read.
    pub last: Option<Raw>,
    /// Everything counted since the agent's first sample, in the counter's unit.
    pub total: u64,
}

impl Counter {
    /// A counter that has never been read.
    pub const fn new() -> Counter {
        Counter {
            last: None,
            total: 0,
        }
    }

    /// Adds what was counted between the last reading and `raw`. The first reading only
    /// sets the baseline: what the source counted before the agent watched it is not the
    /// agent's to claim.
    pub fn advance(&mut self, raw: Raw, rollover: Rollover) {
        let delta = match self.last {
            None => 0,
            Some(last) if last.identity != raw.identity => raw.value,
            Some(last) if raw.value >= last.value => raw.value - last.value,
            Some(last) => match rollover {
                Rollover::Reset => raw.value,
                // The kernel counts 0..=max, so one wrap adds (max - last) + value.
                Rollover::Wrap { max } => max.saturating_sub(last.value).saturating_add(raw.value),
            },
        };
        self.total = self.total.saturating_add(delta);
        self.last = Some(raw);
    }
}

impl Default for Counter {
    fn default() -> Counter {
        Counter::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(value: u64, identity: u64) -> Raw {
        Raw { value, identity }
    }

    #[test]
    fn the_first_reading_is_a_baseline_and_later_ones_add_their_difference() {
        let mut c = Counter::new();
        c.advance(raw(1_000, 7), Rollover::Reset);
        assert_eq!(c.total, 0);
        c.advance(raw(1_500, 7), Rollover::Reset);
        assert_eq!(c.total, 500);
    }

    #[test]
    fn a_reset_or_a_new_identity_counts_the_new_value_from_zero() {
        let mut c = Counter::new();
        c.advance(raw(1_000, 7), Rollover::Reset);
        c.advance(raw(300, 7), Rollover::Reset);
        assert_eq!(c.total, 300);
        // A recreated cgroup may already read more than the old one did.
        c.advance(raw(5_000, 8), Rollover::Reset);
        assert_eq!(c.total, 5_300);
    }

    #[test]
    fn a_wrap_adds_the_distance_to_max_and_the_new_value() {
        let max = 262_143_328_850;
        let mut c = Counter::new();
        c.advance(raw(max - 1_000, 0), Rollover::Wrap { max });
        c.advance(raw(2_000, 0), Rollover::Wrap { max });
        assert_eq!(c.total, 3_000);
    }
}
