//! What a period's re-pricing needs from the books (`quid tariff simulate`): each subscriber's
//! usage and plan, the reports settled in the period, and the allowances granted in it, read
//! in one read transaction.

use std::collections::HashMap;

use quid_common::SubscriberCounters;
use rusqlite::{Connection, TransactionBehavior, params};

use super::{Store, StoreError, from_sql};
use crate::{ledger::chain::EntryKind, settlement::outcome::Outcome};

/// A report settled in the period, as signed, with what it was credited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettledReport {
    pub subscriber: String,
    pub outcome: Outcome,
    pub cpu_core_micros: u64,
    pub storage_byte_seconds: u64,
    pub energy_microjoules: u64,
    /// The credit it was settled at (micro-credits).
    pub credit: i64,
}

/// A period of the books, for re-pricing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeriodBooks {
    /// Every subscriber's current plan (plans are not kept with time yet).
    pub plans: HashMap<String, String>,
    /// Each subscriber's usage in the period (rows starting in it).
    pub usage: HashMap<String, SubscriberCounters>,
    /// Reports matched or disputed whose period ends in `(from, to]`, as statements count them.
    pub reports: Vec<SettledReport>,
    /// Monthly allowances granted to each subscriber in the period.
    pub allowances: HashMap<String, u64>,
}

impl Store {
    /// The books of `[from, to)` for re-pricing.
    pub fn period_books(&self, from: i64, to: i64) -> Result<PeriodBooks, StoreError> {
        let tx = self.begin(TransactionBehavior::Deferred)?;
        let usage = self.usage_by_subscriber_on(&tx, from, to)?;
        let mut books = read(&tx, from, to).map_err(|e| self.sql(e))?;
        books.usage = usage;
        tx.commit().map_err(|e| self.sql(e))?;
        Ok(books)
    }
}

/// Plans, settled reports and allowances of `[from, to)`.
fn read(c: &Connection, from: i64, to: i64) -> rusqlite::Result<PeriodBooks> {
    let mut books = PeriodBooks::default();
    let mut stmt = c.prepare("SELECT id, plan FROM subscribers")?;
    books.plans = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    // The same reports a statement of the period counts.
    let mut stmt = c.prepare(
        "SELECT subscriber, outcome, cpu_core_micros, storage_byte_seconds, energy_microjoules,
                coalesce(credit, 0)
         FROM reports WHERE subscriber IS NOT NULL AND outcome IN (?3, ?4)
           AND period_end > ?1 AND period_end <= ?2",
    )?;
    let mut rows = stmt.query(params![from, to, Outcome::Matched, Outcome::Disputed])?;
    while let Some(r) = rows.next()? {
        books.reports.push(SettledReport {
            subscriber: r.get(0)?,
            outcome: r.get(1)?,
            cpu_core_micros: from_sql(r, 2)?,
            storage_byte_seconds: from_sql(r, 3)?,
            energy_microjoules: from_sql(r, 4)?,
            credit: r.get(5)?,
        });
    }
    let mut stmt = c.prepare(
        "SELECT subscriber, count(*) FROM ledger
         WHERE kind = ?3 AND at >= ?1 AND at < ?2 GROUP BY subscriber",
    )?;
    books.allowances = stmt
        .query_map(params![from, to, EntryKind::Allowance.as_str()], |r| {
            Ok((r.get(0)?, from_sql(r, 1)?))
        })?
        .collect::<Result<_, _>>()?;
    Ok(books)
}
