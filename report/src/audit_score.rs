//! What audits earn: a node's audit score, kept like Storj's reputation, and the storage
//! credit of a period.
//!
//! The score is `alpha / (alpha + beta)`, where each audit multiplies both by
//! [`FORGET`] and adds 1 to `alpha` when it passed, to `beta` when it failed. A new node starts
//! at the steady state of one that passes everything (`alpha` = 1 / (1 - [`FORGET`]) = 100),
//! so one failed read does not disqualify it; over the last hundred or so audits the score is
//! the share passed. A node whose score falls below [`DISQUALIFIED_BELOW`] (0.96, Storj's
//! threshold) earns no storage credit until the operator resets it: failing every audit, that
//! is at the 5th (0.99^5 = 0.951).

/// How much of the past each audit keeps.
pub const FORGET: f64 = 0.99;

/// The score under which a node is disqualified.
pub const DISQUALIFIED_BELOW: f64 = 0.96;

/// A node's standing after its audits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Earns storage credit in proportion to the audits it passes.
    Good,
    /// Failed too many audits: earns no storage credit.
    Disqualified,
}

/// A node's audit score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AuditScore {
    /// Weight of passed audits.
    pub alpha: f64,
    /// Weight of failed audits.
    pub beta: f64,
    /// Set once the score falls below [`DISQUALIFIED_BELOW`]; passing later does not undo it.
    pub standing: Standing,
}

impl Default for AuditScore {
    fn default() -> AuditScore {
        AuditScore {
            alpha: 1.0 / (1.0 - FORGET),
            beta: 0.0,
            standing: Standing::Good,
        }
    }
}

impl AuditScore {
    /// Adds one audit's outcome.
    pub fn record(&mut self, passed: bool) {
        self.alpha = FORGET * self.alpha + if passed { 1.0 } else { 0.0 };
        self.beta = FORGET * self.beta + if passed { 0.0 } else { 1.0 };
        if self.value() < DISQUALIFIED_BELOW {
            // A node that lost data cannot win its standing back by passing audits of the
            // chunks it still has.
            self.standing = Standing::Disqualified;
        }
    }

    /// The score, from 0 to 1.
    pub fn value(&self) -> f64 {
        self.alpha / (self.alpha + self.beta)
    }
}

/// The storage credit of a period, in byte-seconds: what the node claimed, at most the bytes
/// the router filled held for the period, times the share of the period's audits passed;
/// nothing for a period without audits (nothing was proven) or a disqualified node.
pub fn storage_credit(
    claimed_byte_seconds: u64,
    filled_bytes: u64,
    period_secs: u64,
    audits: u32,
    passed: u32,
    standing: Standing,
) -> u64 {
    if audits == 0 || standing == Standing::Disqualified {
        return 0;
    }
    let held = u128::from(filled_bytes) * u128::from(period_secs);
    let base = u128::from(claimed_byte_seconds).min(held);
    let earned = base * u128::from(passed.min(audits)) / u128::from(audits);
    u64::try_from(earned).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_passing_everything_stays_at_one_and_one_slip_is_forgiven() {
        let mut s = AuditScore::default();
        for _ in 0..1000 {
            s.record(true);
        }
        assert!((s.value() - 1.0).abs() < 1e-12);
        s.record(false);
        assert!(s.value() > 0.98, "{}", s.value());
        assert_eq!(s.standing, Standing::Good);
        for _ in 0..200 {
            s.record(true);
        }
        assert!(s.value() > 0.998);
    }

    #[test]
    fn failing_every_audit_disqualifies_at_the_fifth_and_for_good() {
        let mut s = AuditScore::default();
        for n in 1..=5 {
            s.record(false);
            let expected = if n < 5 {
                Standing::Good
            } else {
                Standing::Disqualified
            };
            assert_eq!(s.standing, expected, "after {n} failures: {}", s.value());
        }
        for _ in 0..1000 {
            s.record(true);
        }
        assert_eq!(s.standing, Standing::Disqualified);
    }

    #[test]
    fn credit_is_the_proven_share_of_what_was_filled_and_claimed() {
        let g = Standing::Good;
        // 1 GB claimed for an hour, all filled, 3 of 4 audits passed.
        assert_eq!(
            storage_credit(3_600_000_000_000, 1_000_000_000, 3600, 4, 3, g),
            2_700_000_000_000
        );
        // Only 100 MB filled so far: only those are credited.
        assert_eq!(
            storage_credit(3_600_000_000_000, 100_000_000, 3600, 4, 4, g),
            360_000_000_000
        );
        assert_eq!(storage_credit(3_600, 1, 3600, 0, 0, g), 0);
        assert_eq!(
            storage_credit(3_600, 1, 3600, 4, 4, Standing::Disqualified),
            0
        );
        // Passed counts above the audits do not multiply the claim.
        assert_eq!(storage_credit(3_600, 1, 3600, 1, 9, g), 3_600);
        assert_eq!(
            storage_credit(u64::MAX, u64::MAX, u64::MAX, 2, 1, g),
            u64::MAX / 2
        );
    }
}
