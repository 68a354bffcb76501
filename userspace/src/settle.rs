//! Matching accepted reports against the meter: once the books cover a report's period, the
//! grid bytes the node reported are compared with the grid-class bytes the kernel counted for
//! its subscriber over the same period. Within the tolerance the report is `matched` and earns
//! full credit; beyond it, `disputed`, and it earns what the policy allows. The outcome, both
//! figures and the credit are kept with the report, and the credit enters the ledger, in one
//! transaction.

use rusqlite::params;
use serde::Deserialize;

use crate::{
    ledger::{self, NewEntry},
    nodes::Nodes,
    store::{Store, StoreError, from_sql, to_sql},
    tariff::Tariff,
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
    pub outcome: &'static str,
    pub reported: u64,
    pub measured: u64,
    pub credit: i64,
}

/// The outcome and credit of one report.
pub fn judge(
    reported: u64,
    measured: u64,
    full: i64,
    rules: &SettlementConfig,
) -> (&'static str, i64) {
    let allowed = (u128::from(measured) * u128::from(rules.tolerance_percent) / 100)
        .max(u128::from(rules.tolerance_bytes));
    if u128::from(reported.abs_diff(measured)) <= allowed {
        return ("matched", full);
    }
    let credit = match rules.disputed {
        DisputedPolicy::None => 0,
        DisputedPolicy::Capped if reported > measured => {
            (i128::from(full) * i128::from(measured) / i128::from(reported.max(1))) as i64
        }
        // Reported less than measured: the node's own figure is the cap.
        DisputedPolicy::Capped => full,
    };
    ("disputed", credit)
}

/// The credit a report's figures earn in full (micro-credits), priced exactly from the
/// integers the node signed: core-microseconds, byte-seconds and microjoules.
pub fn contribution_credit(
    tariff: &Tariff,
    cpu_core_micros: u64,
    storage_byte_seconds: u64,
    energy_microjoules: u64,
) -> i64 {
    // u64 x u64 fits a u128; each rate is per hour, GiB-day or kWh.
    let cpu = u128::from(cpu_core_micros) * u128::from(tariff.cpu_core_hour) / 3_600_000_000;
    let storage = u128::from(storage_byte_seconds) * u128::from(tariff.storage_gib_day)
        / ((1u128 << 30) * 86_400);
    let energy = u128::from(energy_microjoules) * u128::from(tariff.energy_kwh) / 3_600_000_000_000;
    i64::try_from(cpu + storage + energy).unwrap_or(i64::MAX)
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
                "SELECT start, end, up_grid_bytes + down_grid_bytes FROM usage
                 WHERE subscriber = ?1 AND end >= ?2 AND start <= ?3",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![subscriber, start, end], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut total = 0u128;
        for row in rows {
            let (s, e, bytes) = row.map_err(|e| self.sql(e))?;
            let bytes = bytes.max(0) as u128;
            if e <= s {
                // A read within one second: it lies inside the period or outside it.
                if s >= start && s < end {
                    total += bytes;
                }
                continue;
            }
            let overlap = (e.min(end) - s.max(start)).max(0) as u128;
            total += bytes * overlap / (e - s) as u128;
        }
        Ok(total.min(u128::from(u64::MAX)) as u64)
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
        type Pending = (String, u64, i64, i64, u64, u64, u64, u64, u64);
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
                    // Integers as stored (never wrapped: a negative value is an error).
                    Ok((
                        r.get(0)?,
                        from_sql(r, 1)?,
                        r.get(2)?,
                        r.get(3)?,
                        from_sql(r, 4)?,
                        from_sql(r, 5)?,
                        from_sql(r, 6)?,
                        from_sql(r, 7)?,
                        from_sql(r, 8)?,
                    ))
                })
                .map_err(|e| self.sql(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))?
        };
        let mut settled = Vec::new();
        for (node, seq, start, end, cpu, storage, energy, sent, received) in pending {
            // A node removed from the nodes file keeps its reports pending until it returns.
            let Some(n) = nodes.by_id.get(&node) else {
                continue;
            };
            let measured = self.metered_grid_bytes(&n.subscriber, start, end)?;
            let reported = sent.saturating_add(received);
            let full = contribution_credit(tariff, cpu, storage, energy);
            let (outcome, credit) = judge(reported, measured, full, rules);
            settled.push(Settled {
                node,
                seq,
                subscriber: n.subscriber.clone(),
                outcome,
                reported,
                measured,
                credit,
            });
        }
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
                       subscriber = ?6 WHERE node = ?1 AND seq = ?2",
                )
                .map_err(sql)?;
            for s in &settled {
                update
                    .execute(params![
                        s.node,
                        to_sql("seq", s.seq).map_err(sql)?,
                        s.outcome,
                        to_sql("measured_grid_bytes", s.measured).map_err(sql)?,
                        s.credit,
                        s.subscriber
                    ])
                    .map_err(sql)?;
            }
        }
        let entries: Vec<NewEntry> = settled
            .iter()
            .filter(|s| s.credit != 0)
            .map(|s| NewEntry {
                at: now,
                subscriber: s.subscriber.clone(),
                kind: "contribution_credit",
                amount: s.credit,
                reference: format!(
                    "{}#{} {}: reported {} grid bytes, metered {}",
                    s.node, s.seq, s.outcome, s.reported, s.measured
                ),
            })
            .collect();
        ledger::append(&tx, &entries).map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(settled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_and_policies_decide_outcome_and_credit() {
        let rules = SettlementConfig {
            tolerance_percent: 5,
            tolerance_bytes: 1000,
            disputed: DisputedPolicy::None,
            operator_key: None,
        };
        assert_eq!(judge(104_000, 100_000, 700, &rules), ("matched", 700));
        assert_eq!(judge(106_000, 100_000, 700, &rules), ("disputed", 0));
        assert_eq!(judge(900, 0, 700, &rules), ("matched", 700));
        let capped = SettlementConfig {
            disputed: DisputedPolicy::Capped,
            ..rules.clone()
        };
        assert_eq!(judge(1_000_000, 100_000, 700, &capped), ("disputed", 70));
        assert_eq!(judge(10_000, 100_000, 700, &capped), ("disputed", 700));
    }
}
