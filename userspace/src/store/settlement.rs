//! The settlement transaction: pending reports read with the evidence the books hold for them,
//! judged by the caller (`settlement::matching::decide`), and every verdict recorded with its
//! ledger credit, all in one transaction. The write lock is taken first (`BEGIN IMMEDIATE`), so
//! what was judged is exactly what is recorded: no other writer can change it in between.

use rusqlite::{TransactionBehavior, params};

use super::{Store, StoreError, from_sql, ledger, to_sql};
use crate::settlement::{
    matching::{Evidence, PendingReport, Settled, Verdict, prorate},
    outcome::Outcome,
};

impl Store {
    /// Settles every pending report whose period ends by `until`: `subscriber_of` names the
    /// subscriber of a report's node now (`None`: the node left the nodes file, and its
    /// reports stay pending until it returns), and `decide` judges a report on its evidence.
    /// Every report of the pass is judged against the same books (nothing written yet), so
    /// their order does not matter. A credit the ledger cannot take (its balance would leave
    /// i64) keeps its report pending, logged, instead of failing everyone's settlement.
    pub fn settle_pending(
        &mut self,
        until: i64,
        subscriber_of: impl Fn(&str) -> Option<String>,
        mut decide: impl FnMut(&PendingReport, &str, &Evidence) -> Verdict,
    ) -> Result<Vec<Settled>, StoreError> {
        let sql = |e| self.sql(e);
        let tx = self.begin(TransactionBehavior::Immediate)?;
        self.assign_legacy_reports(&subscriber_of)?;
        let mut verdicts = Vec::new();
        for report in self.pending_reports(until)? {
            let Some(subscriber) = subscriber_of(&report.node) else {
                continue;
            };
            let evidence = self.evidence(&report, &subscriber)?;
            verdicts.push(decide(&report, &subscriber, &evidence));
        }
        let credits: Vec<_> = verdicts.iter().filter_map(|v| v.credit.clone()).collect();
        let mut refusals = ledger::refusals_on(&tx, &credits).map_err(sql)?.into_iter();
        let mut entries = Vec::new();
        let mut settled = Vec::new();
        for v in verdicts {
            if let Some(credit) = v.credit {
                if let Some(Some(e)) = refusals.next() {
                    log::error!(
                        "report {}#{} left pending: {e}",
                        v.settled.node,
                        v.settled.seq
                    );
                    continue;
                }
                entries.push(credit);
            }
            settled.push(v.settled);
        }
        if settled.is_empty() {
            // Only legacy assignments to keep.
            tx.commit().map_err(sql)?;
            return Ok(settled);
        }
        {
            let mut update = tx
                .prepare_cached(
                    "UPDATE reports SET outcome = ?3, measured_grid_bytes = ?4, credit = ?5,
                       subscriber = ?6, allocated_grid_bytes = ?7,
                       storage_credited_byte_seconds = ?8, storage_reduction = ?9
                     WHERE node = ?1 AND seq = ?2",
                )
                .map_err(sql)?;
            for s in &settled {
                update
                    .execute(params![
                        s.node,
                        to_sql("seq", s.seq).map_err(sql)?,
                        s.outcome,
                        i64::try_from(s.measured).unwrap_or(i64::MAX),
                        s.credit,
                        s.subscriber,
                        i64::try_from(s.allocated).unwrap_or(i64::MAX),
                        i64::try_from(s.storage_credited).unwrap_or(i64::MAX),
                        s.storage_reduction.map(|r| r.as_str())
                    ])
                    .map_err(sql)?;
            }
        }
        ledger::append_on(&tx, &entries).map_err(|e| e.into_store(&self.path))?;
        tx.commit().map_err(sql)?;
        Ok(settled)
    }

    /// Reports recorded by an older quid carry no subscriber: their node's, now.
    fn assign_legacy_reports(
        &self,
        subscriber_of: &impl Fn(&str) -> Option<String>,
    ) -> Result<(), StoreError> {
        let nodes: Vec<String> = {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT DISTINCT node FROM reports WHERE subscriber IS NULL")
                .map_err(|e| self.sql(e))?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(|e| self.sql(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))?
        };
        for node in nodes {
            let Some(subscriber) = subscriber_of(&node) else {
                continue;
            };
            self.conn
                .execute(
                    "UPDATE reports SET subscriber = ?2 WHERE node = ?1 AND subscriber IS NULL",
                    params![node, subscriber],
                )
                .map_err(|e| self.sql(e))?;
        }
        Ok(())
    }

    /// The pending reports whose period ends by `until`, in the order they arrived.
    fn pending_reports(&self, until: i64) -> Result<Vec<PendingReport>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT node, seq, period_start, period_end, cpu_core_micros,
                        storage_byte_seconds, energy_microjoules, grid_bytes_sent,
                        grid_bytes_received
                 FROM reports WHERE outcome = ?1 AND period_end <= ?2
                 ORDER BY received_at, node, seq",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![Outcome::Pending, until], |r| {
                Ok(PendingReport {
                    node: r.get(0)?,
                    // Integers as stored (never wrapped: a negative value is an error).
                    seq: from_sql(r, 1)?,
                    start: r.get(2)?,
                    end: r.get(3)?,
                    cpu_core_micros: from_sql(r, 4)?,
                    storage_byte_seconds: from_sql(r, 5)?,
                    energy_microjoules: from_sql(r, 6)?,
                    claim: from_sql(r, 7)?.saturating_add(from_sql(r, 8)?),
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }

    /// What the books hold about `report`'s period for `subscriber`.
    fn evidence(&self, report: &PendingReport, subscriber: &str) -> Result<Evidence, StoreError> {
        let (start, end) = (report.start, report.end);
        let (taken, others_claimed) = self.others(subscriber, report, start, end)?;
        Ok(Evidence {
            metered_seconds: self.metered_seconds(subscriber, start, end)?,
            node_first_seen: self.node_first_seen(&report.node)?,
            measured: self.metered_grid_bytes(subscriber, start, end)?,
            taken,
            others_claimed,
            audits: self.audit_tally(
                &report.node,
                start.saturating_mul(1000),
                end.saturating_mul(1000),
            )?,
        })
    }

    /// The grid bytes `subscriber`'s reports other than `report` hold or claim over
    /// `[start, end)`: (taken by settled reports, claimed by pending ones).
    fn others(
        &self,
        subscriber: &str,
        report: &PendingReport,
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
                   AND outcome != ?6 AND NOT (node = ?4 AND seq = ?5)",
            )
            .map_err(|e| self.sql(e))?;
        let seq = to_sql("seq", report.seq).map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(
                params![subscriber, start, end, report.node, seq, Outcome::Unmetered],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Outcome>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                    ))
                },
            )
            .map_err(|e| self.sql(e))?;
        let (mut taken, mut claimed) = (0u128, 0u128);
        for row in rows {
            let (s, e, outcome, sent, received, allocated) = row.map_err(|e| self.sql(e))?;
            let claim = unsigned(sent).saturating_add(unsigned(received));
            if outcome == Outcome::Pending {
                claimed += prorate(claim, s, e, start, end);
            } else {
                // Settled by an older quid without a record of its share: its whole claim.
                let held = allocated.map_or(claim, unsigned);
                taken += prorate(held, s, e, start, end);
            }
        }
        Ok((taken, claimed))
    }
}

/// A non-negative i64 read from SQLite as u64 (negative: 0).
fn unsigned(x: i64) -> u64 {
    u64::try_from(x).unwrap_or(0)
}
