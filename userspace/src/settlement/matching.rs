//! Matching accepted reports against the meter: once the books cover a report's period, the
//! grid bytes its subscriber's nodes claimed are compared with the grid-class bytes the kernel
//! counted for that subscriber over the same period. The outcome, both figures, the bytes the
//! meter backs for the report and the credit are kept with the report, and the credit enters
//! the ledger, in one transaction.
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

use rusqlite::params;
use serde::Deserialize;

use crate::{
    ledger::chain::{self as ledger, NewEntry},
    ledger::tariff::Tariff,
    settlement::nodes::Nodes,
    store::{Store, StoreError, from_sql},
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
}

impl Default for SettlementConfig {
    fn default() -> Self {
        Self {
            tolerance_percent: default_percent(),
            tolerance_bytes: default_bytes(),
            disputed: DisputedPolicy::default(),
            operator_key: None,
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
    /// `matched`, `disputed` or `unmetered`.
    pub outcome: &'static str,
    /// Grid bytes the report itself claimed.
    pub reported: u64,
    /// Grid bytes the meter counted for the subscriber over the period.
    pub measured: u64,
    /// Grid bytes of the meter this report now holds (others cannot claim them again).
    pub allocated: u64,
    pub credit: i64,
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
pub fn judge(c: Claims, full: i64, rules: &SettlementConfig) -> (&'static str, i64, u64) {
    let available = c.measured.saturating_sub(c.taken);
    let percent = u128::from(available) * u128::from(rules.tolerance_percent) / 100;
    // The byte floor never exceeds the metered bytes: zero metered bytes tolerate nothing.
    let floor = u128::from(rules.tolerance_bytes.min(available));
    if u128::from(c.claimed.abs_diff(available)) <= percent.max(floor) {
        return ("matched", full, c.own);
    }
    if c.claimed < available {
        // Claimed less than the meter saw: the node's own figure is the cap.
        let credit = match rules.disputed {
            DisputedPolicy::None => 0,
            DisputedPolicy::Capped => full,
        };
        return ("disputed", credit, c.own);
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
    ("disputed", credit, allocated)
}

/// `bytes × overlap / length`: the part of a claim spread evenly over `[s, e)` that falls in
/// `[start, end)`.
fn prorate(bytes: u64, s: i64, e: i64, start: i64, end: i64) -> u128 {
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
fn clamp(x: u128) -> u64 {
    u64::try_from(x).unwrap_or(u64::MAX)
}

/// A non-negative i64 read from SQLite as u64 (negative: 0).
fn unsigned(x: i64) -> u64 {
    u64::try_from(x).unwrap_or(0)
}

/// A pending report as settlement reads it.
struct Pending {
    node: String,
    seq: u64,
    start: i64,
    end: i64,
    cpu: u64,
    storage: u64,
    energy: u64,
    claim: u64,
}

impl Store {
    /// Grid-class bytes (both directions) counted for `subscriber` over `[start, end)`; an
    /// interval that straddles an edge counts in proportion to its overlap.
    pub fn metered_grid_bytes(
        &self,
        subscriber: &str,
        start: i64,
        end: i64,
    ) -> Result<u64, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT start, end, up_grid_bytes, down_grid_bytes FROM usage
                 WHERE subscriber = ?1 AND end >= ?2 AND start <= ?3",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![subscriber, start, end], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut total = 0u128;
        for row in rows {
            let (s, e, up, down) = row.map_err(|e| self.sql(e))?;
            // Counters are stored bit-exact (see `store::flat`): read them back as u64.
            let bytes = up.cast_unsigned().saturating_add(down.cast_unsigned());
            total += prorate(bytes, s, e, start, end);
        }
        Ok(clamp(total))
    }

    /// The grid bytes `subscriber`'s reports other than `node#seq` hold or claim over
    /// `[start, end)`: (taken by settled reports, claimed by pending ones).
    fn others(
        &self,
        subscriber: &str,
        (node, seq): (&str, i64),
        start: i64,
        end: i64,
    ) -> Result<(u128, u128), StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT period_start, period_end, outcome, grid_bytes_sent, grid_bytes_received,
                        allocated_grid_bytes
                 FROM reports
                 WHERE subscriber = ?1 AND period_end > ?2 AND period_start < ?3
                   AND outcome != 'unmetered' AND NOT (node = ?4 AND seq = ?5)",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![subscriber, start, end, node, seq], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        let (mut taken, mut claimed) = (0u128, 0u128);
        for row in rows {
            let (s, e, outcome, sent, received, allocated) = row.map_err(|e| self.sql(e))?;
            let claim = unsigned(sent).saturating_add(unsigned(received));
            if outcome == "pending" {
                claimed += prorate(claim, s, e, start, end);
            } else {
                // Settled by an older quid without a record of its share: its whole claim.
                let held = allocated.map_or(claim, unsigned);
                taken += prorate(held, s, e, start, end);
            }
        }
        Ok((taken, claimed))
    }

    /// Settles every pending report whose period the books cover up to `metered_until`.
    pub fn settle(
        &mut self,
        nodes: &Nodes,
        tariff: &Tariff,
        rules: &SettlementConfig,
        metered_until: i64,
        now: i64,
    ) -> Result<Vec<Settled>, StoreError> {
        // Reports recorded by an older quid carry no subscriber: their node's, now.
        for n in nodes.by_id.values() {
            self.conn
                .execute(
                    "UPDATE reports SET subscriber = ?2 WHERE node = ?1 AND subscriber IS NULL",
                    params![n.id, n.subscriber],
                )
                .map_err(|e| self.sql(e))?;
        }
        let pending: Vec<Pending> = {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT node, seq, period_start, period_end, cpu_core_micros,
                            storage_byte_seconds, energy_microjoules, grid_bytes_sent,
                            grid_bytes_received
                     FROM reports WHERE outcome = 'pending' AND period_end <= ?1
                     ORDER BY received_at, node, seq",
                )
                .map_err(|e| self.sql(e))?;
            let rows = stmt
                .query_map([metered_until], |r| {
                    Ok(Pending {
                        node: r.get(0)?,
                        // Integers as stored (never wrapped: a negative value is an error).
                        seq: from_sql(r, 1)?,
                        start: r.get(2)?,
                        end: r.get(3)?,
                        cpu: from_sql(r, 4)?,
                        storage: from_sql(r, 5)?,
                        energy: from_sql(r, 6)?,
                        claim: from_sql(r, 7)?.saturating_add(from_sql(r, 8)?),
                    })
                })
                .map_err(|e| self.sql(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))?
        };
        // Every report of this pass is judged against the same state (nothing written yet),
        // so their order does not matter.
        let mut settled = Vec::new();
        for p in pending {
            // A node removed from the nodes file keeps its reports pending until it returns.
            let Some(n) = nodes.by_id.get(&p.node) else {
                continue;
            };
            let subscriber = n.subscriber.clone();
            let length = p.end.saturating_sub(p.start);
            let covered = self.metered_seconds(&subscriber, p.start, p.end)?;
            let seen = self.node_first_seen(&p.node)?;
            let measured = self.metered_grid_bytes(&subscriber, p.start, p.end)?;
            let base = Settled {
                node: p.node.clone(),
                seq: p.seq,
                subscriber: subscriber.clone(),
                outcome: "unmetered",
                reported: p.claim,
                measured,
                allocated: 0,
                credit: 0,
            };
            if length <= 0 || covered < length || seen.is_none_or(|t| p.start < t) {
                settled.push(base);
                continue;
            }
            let (taken, claimed) = self.others(
                &subscriber,
                // Read from an i64 column above, so it fits.
                (&p.node, i64::try_from(p.seq).unwrap_or(i64::MAX)),
                p.start,
                p.end,
            )?;
            let claims = Claims {
                measured,
                taken: clamp(taken),
                claimed: clamp(claimed + u128::from(p.claim)),
                own: p.claim,
            };
            let full = tariff.contribution_credit(p.cpu, p.storage, p.energy);
            let (outcome, credit, allocated) = judge(claims, full, rules);
            settled.push(Settled {
                outcome,
                allocated,
                credit,
                ..base
            });
        }
        // A credit the ledger cannot take (its balance would leave i64) keeps its report
        // pending, logged, instead of failing everyone's settlement.
        let mut entries = Vec::new();
        let mut fits = Vec::new();
        for s in settled {
            if s.credit == 0 {
                fits.push(s);
                continue;
            }
            let entry = NewEntry {
                at: now,
                subscriber: s.subscriber.clone(),
                kind: "contribution_credit",
                amount: s.credit,
                reference: format!(
                    "{}#{} {}: reported {} grid bytes, metered {}",
                    s.node, s.seq, s.outcome, s.reported, s.measured
                ),
            };
            let mut batch = entries.clone();
            batch.push(entry.clone());
            match ledger::check(&self.conn, &batch) {
                Ok(()) => {
                    entries.push(entry);
                    fits.push(s);
                }
                Err(e) => log::error!("report {}#{} left pending: {e}", s.node, s.seq),
            }
        }
        let settled = fits;
        if settled.is_empty() {
            return Ok(settled);
        }
        let path = self.path().to_owned();
        let sql = |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        {
            let mut update = tx
                .prepare_cached(
                    "UPDATE reports SET outcome = ?3, measured_grid_bytes = ?4, credit = ?5,
                       subscriber = ?6, allocated_grid_bytes = ?7 WHERE node = ?1 AND seq = ?2",
                )
                .map_err(sql)?;
            for s in &settled {
                update
                    .execute(params![
                        s.node,
                        s.seq.cast_signed(),
                        s.outcome,
                        i64::try_from(s.measured).unwrap_or(i64::MAX),
                        s.credit,
                        s.subscriber,
                        i64::try_from(s.allocated).unwrap_or(i64::MAX)
                    ])
                    .map_err(sql)?;
            }
        }
        ledger::append(&tx, &entries).map_err(|e| e.into_store(&path))?;
        tx.commit().map_err(sql)?;
        Ok(settled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        };
        let alone = |reported, measured| c(measured, 0, reported, reported);
        assert_eq!(judge(alone(104_000, 100_000), 700, &rules).0, "matched");
        assert_eq!(judge(alone(104_000, 100_000), 700, &rules).1, 700);
        assert_eq!(judge(alone(106_000, 100_000), 700, &rules).1, 0);
        // Zero metered bytes back nothing, whatever the byte floor.
        assert_eq!(judge(alone(900, 0), 700, &rules), ("disputed", 0, 0));
        assert_eq!(judge(alone(0, 0), 700, &rules), ("matched", 700, 0));
        // The floor never exceeds what was metered: 1 byte metered does not back 1,000.
        assert_eq!(judge(alone(1_000, 1), 700, &rules).0, "disputed");
        assert_eq!(judge(alone(2, 1), 700, &rules).0, "matched");
        let capped = SettlementConfig {
            disputed: DisputedPolicy::Capped,
            ..rules.clone()
        };
        assert_eq!(
            judge(alone(1_000_000, 100_000), 700, &capped),
            ("disputed", 70, 100_000)
        );
        assert_eq!(judge(alone(10_000, 100_000), 700, &capped).1, 700);
        // Two reports each claiming the whole meter: each is backed for half.
        assert_eq!(
            judge(c(500_000, 0, 1_000_000, 500_000), 700, &capped),
            ("disputed", 350, 250_000)
        );
        // The meter already held by a settled report backs nothing more.
        assert_eq!(
            judge(c(500_000, 500_000, 500_000, 500_000), 700, &capped),
            ("disputed", 0, 0)
        );
        assert_eq!(judge(c(500_000, 500_000, 0, 0), 700, &capped).0, "matched");
        // Extremes do not overflow.
        assert_eq!(
            judge(c(u64::MAX, 0, u64::MAX, u64::MAX), i64::MAX, &capped).1,
            i64::MAX
        );
        assert_eq!(judge(c(1, 0, u64::MAX, u64::MAX), i64::MAX, &capped).1, 0);
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
