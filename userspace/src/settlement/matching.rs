//! Matching accepted reports against the meter: once the books cover a report's period, the
//! grid bytes its subscriber's nodes claimed are compared with the grid-class bytes the kernel
//! counted for that subscriber over the same period. The outcome, both figures, the bytes the
//! meter backs for the report and the credit are kept with the report, and the credit enters
//! the ledger, in one transaction.
//!
//! Pure: the store (`Store::settle_pending`) reads each pending report with the [`Evidence`]
//! the books hold for it, asks [`decide`] for the [`Verdict`], and records every verdict and
//! its credit in the one transaction it read them in.
//!
//! The rules, for report R of subscriber S over period P:
//!
//! - **Metered time only.** Every second of P must lie in a meter span (the kernel counters
//!   ran) while S was in the installed table, and after quid first saw R's node. Otherwise R is
//!   `unmetered` and earns nothing: the meter cannot back time it never measured.
//! - **One meter, shared.** The meter's bytes over P back all of S's reports together, never
//!   each one separately. Another report Q of S overlapping P counts in proportion to the
//!   overlap, `|Q ∩ P| / |Q|` (claims are taken as spread evenly over their period). Reports
//!   already settled have taken their backed bytes (`allocated_grid_bytes`) out of the meter:
//!   `available = metered(P) − Σ settled allocated × overlap share`. Reports not yet settled
//!   (R included) share what is left: `claimed = R's claim + Σ pending claims × overlap share`.
//!   Reports settled in the same pass see the same state, so the order in which reports arrive
//!   or are settled cannot let the same bytes back two claims.
//! - **Tolerance.** R is `matched` (full credit, backed for its whole claim) when `claimed`
//!   differs from `available` by at most `max(tolerance_percent of available,
//!   min(tolerance_bytes, available))`: the byte floor covers interval edges but never exceeds
//!   what was metered, so a claim on zero metered bytes is never matched by tolerance.
//! - **Disputed.** Otherwise R is `disputed`: with `disputed = "none"` it earns nothing; with
//!   `"capped"` an over-claim earns its credit scaled by `available / claimed` (and is backed
//!   for the same share of its claim), an under-claim earns in full.
//!
//! Every amount is checked: a credit that would carry a balance out of i64 leaves the report
//! pending (logged), so it can never wrap or stop the others.

use serde::Deserialize;

use crate::{
    ledger::chain::NewEntry,
    ledger::tariff::Tariff,
    settlement::audits::{AuditTally, StorageReduction},
    settlement::outcome::Outcome,
};

/// What a disputed report earns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DisputedPolicy {
    /// Nothing.
    #[default]
    None,
    /// Its credit scaled down to what the meter supports (measured / reported).
    Capped,
}

/// `[settlement]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettlementConfig {
    /// Allowed difference as a share of the measured bytes, in percent.
    #[serde(default = "default_percent")]
    pub tolerance_percent: u64,
    /// Allowed difference in bytes however little was measured (covers interval edges).
    #[serde(default = "default_bytes")]
    pub tolerance_bytes: u64,
    #[serde(default)]
    pub disputed: DisputedPolicy,
    /// The operator's signing key: with it, the daemon issues every subscriber's statement
    /// for the month just ended into `STATE_DIR/statements/YYYY-MM/`.
    #[serde(default)]
    pub operator_key: Option<std::path::PathBuf>,
    /// How often usage debits enter the ledger (`hourly`, `daily`, `monthly`; UTC).
    #[serde(default)]
    pub period: crate::ledger::period::SettlementPeriod,
    /// With an operator key, the daemon signs a checkpoint of the ledger's head this often
    /// (seconds) when it moved, and at every statement issue (`quid ledger checkpoints`).
    #[serde(
        default = "default_checkpoint_seconds",
        deserialize_with = "checkpoint_seconds"
    )]
    pub checkpoint_seconds: u64,
}

fn default_checkpoint_seconds() -> u64 {
    3600
}

/// The longest gap between checkpoints: a month, so every statement period has at least one.
const MAX_CHECKPOINT_SECONDS: u64 = 31 * 86_400;

fn checkpoint_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = u64::deserialize(d)?;
    if !(60..=MAX_CHECKPOINT_SECONDS).contains(&v) {
        return Err(serde::de::Error::custom(format!(
            "must be between 60 seconds and {MAX_CHECKPOINT_SECONDS} (31 days), got {v}: \
             checkpoints anchor the ledger, one a minute is plenty and one a month the least"
        )));
    }
    Ok(v)
}

impl Default for SettlementConfig {
    fn default() -> Self {
        Self {
            tolerance_percent: default_percent(),
            tolerance_bytes: default_bytes(),
            disputed: DisputedPolicy::default(),
            operator_key: None,
            period: crate::ledger::period::SettlementPeriod::default(),
            checkpoint_seconds: default_checkpoint_seconds(),
        }
    }
}

fn default_percent() -> u64 {
    5
}

fn default_bytes() -> u64 {
    100_000
}

/// One settled report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub node: String,
    pub seq: u64,
    pub subscriber: String,
    /// Matched, disputed or unmetered.
    pub outcome: Outcome,
    /// Grid bytes the report itself claimed.
    pub reported: u64,
    /// Grid bytes the meter counted for the subscriber over the period.
    pub measured: u64,
    /// Grid bytes of the meter this report now holds (others cannot claim them again).
    pub allocated: u64,
    pub credit: i64,
    /// The storage byte-seconds credited (what the audits proved of the claim).
    pub storage_credited: u64,
    /// Why less storage was credited than claimed, if it was.
    pub storage_reduction: Option<StorageReduction>,
}

/// The grid bytes of a subscriber's reports around one period, as the meter shares them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Claims {
    /// What the meter counted over the period.
    pub measured: u64,
    /// What settled reports already hold of it (their overlapping share).
    pub taken: u64,
    /// What the reports still to settle claim over the period, the judged one included.
    pub claimed: u64,
    /// The judged report's own claim.
    pub own: u64,
}

/// The outcome, credit and backed bytes of one report (see the module docs for the rules).
pub fn judge(c: Claims, full: i64, rules: &SettlementConfig) -> (Outcome, i64, u64) {
    let available = c.measured.saturating_sub(c.taken);
    let percent = u128::from(available) * u128::from(rules.tolerance_percent) / 100;
    // The byte floor never exceeds the metered bytes: zero metered bytes tolerate nothing.
    let floor = u128::from(rules.tolerance_bytes.min(available));
    if u128::from(c.claimed.abs_diff(available)) <= percent.max(floor) {
        return (Outcome::Matched, full, c.own);
    }
    if c.claimed < available {
        // Claimed less than the meter saw: the node's own figure is the cap.
        let credit = match rules.disputed {
            DisputedPolicy::None => 0,
            DisputedPolicy::Capped => full,
        };
        return (Outcome::Disputed, credit, c.own);
    }
    // Over-claimed: the report's share of what is available, in proportion to its claim.
    let share = |x: u128| x * u128::from(available) / u128::from(c.claimed.max(1));
    let allocated = u64::try_from(share(u128::from(c.own))).unwrap_or(c.own);
    let credit = match rules.disputed {
        DisputedPolicy::None => 0,
        DisputedPolicy::Capped => {
            // full ≥ 0 and available < claimed, so the share fits in i64.
            let f = u128::try_from(full.max(0)).unwrap_or(0);
            i64::try_from(share(f)).unwrap_or(0)
        }
    };
    (Outcome::Disputed, credit, allocated)
}

/// `bytes × overlap / length`: the part of a claim spread evenly over `[s, e)` that falls in
/// `[start, end)`.
pub fn prorate(bytes: u64, s: i64, e: i64, start: i64, end: i64) -> u128 {
    let len = i128::from(e) - i128::from(s);
    let overlap = (i128::from(e.min(end)) - i128::from(s.max(start))).max(0);
    if len <= 0 {
        // A one-second read: inside or outside.
        return if s >= start && s < end {
            u128::from(bytes)
        } else {
            0
        };
    }
    let (overlap, len) = (
        u128::try_from(overlap).unwrap_or(0),
        u128::try_from(len).unwrap_or(1),
    );
    u128::from(bytes) * overlap.min(len) / len
}

/// A u128 as u64, saturating (sums of u64 figures).
pub fn clamp(x: u128) -> u64 {
    u64::try_from(x).unwrap_or(u64::MAX)
}

/// A pending report as the store hands it to settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingReport {
    pub node: String,
    pub seq: u64,
    /// Its period, `[start, end)` in unix seconds.
    pub start: i64,
    pub end: i64,
    pub cpu_core_micros: u64,
    pub storage_byte_seconds: u64,
    pub energy_microjoules: u64,
    /// Grid bytes sent plus received (saturating).
    pub claim: u64,
}

/// What a report's storage claim is credited by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageProof {
    /// The storage audits of its period (`[audits]` configured): unproven storage earns nothing.
    Audits,
    /// The claim, within the node's declared capacity (no audits run).
    Declared,
}

/// What the books hold about a pending report's period, for its subscriber.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evidence {
    /// Seconds of the period within a meter span while the subscriber was metered.
    pub metered_seconds: i64,
    /// When quid first saw the report's node registered, if ever.
    pub node_first_seen: Option<i64>,
    /// Grid bytes the meter counted for the subscriber over the period.
    pub measured: u64,
    /// Grid bytes of the period the subscriber's settled reports hold (their overlap share).
    pub taken: u128,
    /// Grid bytes of the period the subscriber's other pending reports claim (overlap share).
    pub others_claimed: u128,
    /// The node's storage audits over the period; `None` when storage is not audited (no
    /// `[audits]`), and then storage is credited as claimed within the declared capacity.
    pub audits: Option<AuditTally>,
}

/// How one report settles, and the ledger entry of its credit (none when it earns nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub settled: Settled,
    pub credit: Option<NewEntry>,
}

/// The verdict on `report` of `subscriber` given the `evidence` (see the module docs for the
/// rules); its credit is priced by `tariff` and dated `now`.
pub fn decide(
    report: &PendingReport,
    subscriber: &str,
    evidence: &Evidence,
    tariff: &Tariff,
    rules: &SettlementConfig,
    now: i64,
) -> Verdict {
    let base = Settled {
        node: report.node.clone(),
        seq: report.seq,
        subscriber: subscriber.to_owned(),
        outcome: Outcome::Unmetered,
        reported: report.claim,
        measured: evidence.measured,
        allocated: 0,
        credit: 0,
        storage_credited: 0,
        storage_reduction: None,
    };
    let length = report.end.saturating_sub(report.start);
    if length <= 0
        || evidence.metered_seconds < length
        || evidence.node_first_seen.is_none_or(|t| report.start < t)
    {
        return Verdict {
            settled: base,
            credit: None,
        };
    }
    let claims = Claims {
        measured: evidence.measured,
        taken: clamp(evidence.taken),
        claimed: clamp(
            evidence
                .others_claimed
                .saturating_add(u128::from(report.claim)),
        ),
        own: report.claim,
    };
    // Storage earns only what the period's audits proved (see `AuditTally::credit`).
    let (storage_credited, storage_reduction) = match evidence.audits {
        None => (report.storage_byte_seconds, None),
        Some(t) => t.credit(
            report.storage_byte_seconds,
            u64::try_from(length).unwrap_or(0),
        ),
    };
    let full = tariff.contribution_credit(
        report.cpu_core_micros,
        storage_credited,
        report.energy_microjoules,
    );
    let (outcome, credit, allocated) = judge(claims, full, rules);
    let settled = Settled {
        outcome,
        allocated,
        credit,
        storage_credited,
        storage_reduction,
        ..base
    };
    let credit = (credit != 0).then(|| {
        NewEntry::contribution_credit(
            subscriber,
            now,
            credit,
            format!(
                "{}#{} {}: reported {} grid bytes, metered {}{}",
                settled.node,
                settled.seq,
                settled.outcome,
                settled.reported,
                settled.measured,
                settled.storage_reduction.map_or(String::new(), |r| format!(
                    "; storage {} of {} byte-seconds ({})",
                    settled.storage_credited,
                    report.storage_byte_seconds,
                    r.as_str()
                ))
            ),
        )
    });
    Verdict { settled, credit }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::chain::EntryKind;

    fn c(measured: u64, taken: u64, claimed: u64, own: u64) -> Claims {
        Claims {
            measured,
            taken,
            claimed,
            own,
        }
    }

    #[test]
    fn tolerance_and_policies_decide_outcome_and_credit() {
        let rules = SettlementConfig {
            tolerance_percent: 5,
            tolerance_bytes: 1000,
            disputed: DisputedPolicy::None,
            operator_key: None,
            ..SettlementConfig::default()
        };
        let alone = |reported, measured| c(measured, 0, reported, reported);
        assert_eq!(
            judge(alone(104_000, 100_000), 700, &rules).0,
            Outcome::Matched
        );
        assert_eq!(judge(alone(104_000, 100_000), 700, &rules).1, 700);
        assert_eq!(judge(alone(106_000, 100_000), 700, &rules).1, 0);
        // Zero metered bytes back nothing, whatever the byte floor.
        assert_eq!(judge(alone(900, 0), 700, &rules), (Outcome::Disputed, 0, 0));
        assert_eq!(judge(alone(0, 0), 700, &rules), (Outcome::Matched, 700, 0));
        // The floor never exceeds what was metered: 1 byte metered does not back 1,000.
        assert_eq!(judge(alone(1_000, 1), 700, &rules).0, Outcome::Disputed);
        assert_eq!(judge(alone(2, 1), 700, &rules).0, Outcome::Matched);
        let capped = SettlementConfig {
            disputed: DisputedPolicy::Capped,
            ..rules.clone()
        };
        assert_eq!(
            judge(alone(1_000_000, 100_000), 700, &capped),
            (Outcome::Disputed, 70, 100_000)
        );
        assert_eq!(judge(alone(10_000, 100_000), 700, &capped).1, 700);
        // Two reports each claiming the whole meter: each is backed for half.
        assert_eq!(
            judge(c(500_000, 0, 1_000_000, 500_000), 700, &capped),
            (Outcome::Disputed, 350, 250_000)
        );
        // The meter already held by a settled report backs nothing more.
        assert_eq!(
            judge(c(500_000, 500_000, 500_000, 500_000), 700, &capped),
            (Outcome::Disputed, 0, 0)
        );
        assert_eq!(
            judge(c(500_000, 500_000, 0, 0), 700, &capped).0,
            Outcome::Matched
        );
        // Extremes do not overflow.
        assert_eq!(
            judge(c(u64::MAX, 0, u64::MAX, u64::MAX), i64::MAX, &capped).1,
            i64::MAX
        );
        assert_eq!(judge(c(1, 0, u64::MAX, u64::MAX), i64::MAX, &capped).1, 0);
    }

    #[test]
    fn only_metered_time_earns_and_a_credit_is_one_contribution_entry() {
        let report = PendingReport {
            node: "pi".into(),
            seq: 7,
            start: 100,
            end: 200,
            cpu_core_micros: 3_600_000_000,
            storage_byte_seconds: 0,
            energy_microjoules: 0,
            claim: 50_000,
        };
        let tariff = Tariff {
            cpu_core_hour: 1_000,
            ..Tariff::default()
        };
        let rules = SettlementConfig::default();
        let metered = Evidence {
            metered_seconds: 100,
            node_first_seen: Some(100),
            measured: 50_000,
            ..Evidence::default()
        };
        let v = decide(&report, "alice", &metered, &tariff, &rules, 300);
        assert_eq!(
            (v.settled.outcome, v.settled.credit),
            (Outcome::Matched, 1_000)
        );
        let credit = v.credit.unwrap();
        assert_eq!(
            (
                credit.kind,
                credit.amount,
                credit.at,
                credit.reference.as_str()
            ),
            (
                EntryKind::ContributionCredit,
                1_000,
                300,
                "pi#7 matched: reported 50000 grid bytes, metered 50000"
            )
        );
        // One second short of the period, or a node seen after it began: nothing earned.
        for evidence in [
            Evidence {
                metered_seconds: 99,
                ..metered
            },
            Evidence {
                node_first_seen: Some(101),
                ..metered
            },
        ] {
            let v = decide(&report, "alice", &evidence, &tariff, &rules, 300);
            assert_eq!((v.settled.outcome, v.credit), (Outcome::Unmetered, None));
        }
    }

    #[test]
    fn prorating_is_exact_at_the_extremes() {
        assert_eq!(prorate(100, 0, 10, 0, 5), 50);
        assert_eq!(prorate(u64::MAX, i64::MIN, i64::MAX, 0, 1), 1);
        assert_eq!(
            prorate(u64::MAX, 0, 1, i64::MIN, i64::MAX),
            u128::from(u64::MAX)
        );
        assert_eq!(prorate(7, 3, 3, 0, 5), 7);
    }
}
