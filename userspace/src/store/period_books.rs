//! What a planner's period needs from the books (`quid report`, `quid tariff simulate`), all
//! read in one read transaction ([`PeriodReader`]): subscriber keys, the plan history, hourly
//! rows by range of subscriber keys (so per-subscriber hourly figures can be computed a group
//! of subscribers at a time, in bounded memory), daily rows, the reports settled in the period
//! and its ledger entries. Subscribers are named by their integer key throughout: a million
//! ids are never held.

use quid_common::SubscriberCounters;
use rusqlite::{Transaction, TransactionBehavior, params};

use super::{Store, StoreError, from_sql, hour_blocks, plan_history, tiers, usage::counters_at};
use crate::{ledger::chain::EntryKind, settlement::outcome::Outcome};

/// A report settled in the period, as signed, with what it was credited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettledReport {
    pub subscriber: String,
    /// The subscriber's key (`None`: a subscriber the table never held).
    pub key: Option<i64>,
    /// The end of the report's period (unix seconds).
    pub period_end: i64,
    pub outcome: Outcome,
    pub cpu_core_micros: u64,
    pub storage_byte_seconds: u64,
    pub energy_microjoules: u64,
    /// The credit it was settled at (micro-credits).
    pub credit: i64,
}

/// A ledger entry of the period, as a planner sums it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodEntry {
    /// The subscriber's key (`None`: a subscriber the table never held).
    pub key: Option<i64>,
    pub subscriber: String,
    pub at: i64,
    pub kind: EntryKind,
    /// Micro-credits.
    pub amount: i64,
}

/// Which counters a read gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figures {
    /// Packets and bytes.
    All,
    /// Bytes only (packets read as zero): fewer columns for figures that need no packets.
    Bytes,
}

impl Figures {
    /// The counter columns read, in `COUNTERS` order.
    fn columns(self) -> String {
        match self {
            Figures::All => tiers::COUNTERS.join(", "),
            Figures::Bytes => tiers::COUNTERS
                .iter()
                .filter(|c| c.ends_with("_bytes"))
                .copied()
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// The counters of a row whose columns from `first` on are [`Figures::columns`].
    fn read(self, r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<SubscriberCounters> {
        match self {
            Figures::All => counters_at(r, first),
            Figures::Bytes => {
                let mut c = SubscriberCounters::default();
                for (i, p) in c.pairs.iter_mut().enumerate() {
                    // Stored bit-exact (see `usage::flat`).
                    p.bytes = r.get::<_, i64>(first + i)?.cast_unsigned();
                }
                Ok(c)
            }
        }
    }
}

/// One read transaction over the books (see the module's documentation).
pub struct PeriodReader<'a> {
    pub(super) store: &'a Store,
    pub(super) tx: Transaction<'a>,
}

impl Store {
    /// A reader of one moment of the books; it reads while the daemon writes.
    pub fn period_reader(&self) -> Result<PeriodReader<'_>, StoreError> {
        Ok(PeriodReader {
            store: self,
            tx: self.begin(TransactionBehavior::Deferred)?,
        })
    }

    /// A reader that holds the write lock from its start, for a fold that reads and then
    /// writes what it read (`PeriodReader::commit_fold`).
    pub fn digest_folder(&self) -> Result<PeriodReader<'_>, StoreError> {
        Ok(PeriodReader {
            store: self,
            tx: self.begin(TransactionBehavior::Immediate)?,
        })
    }
}

impl PeriodReader<'_> {
    pub(super) fn sql(&self, e: rusqlite::Error) -> StoreError {
        self.store.sql(e)
    }

    /// Every subscriber's key, ascending.
    pub fn keys(&self) -> Result<Vec<i64>, StoreError> {
        let mut stmt = self
            .tx
            .prepare("SELECT key FROM subscribers WHERE key IS NOT NULL ORDER BY key")
            .map_err(|e| self.sql(e))?;
        let keys = stmt
            .query_map([], |r| r.get(0))
            .and_then(Iterator::collect)
            .map_err(|e| self.sql(e))?;
        Ok(keys)
    }

    /// Every subscriber's id by key.
    pub fn ids(&self) -> Result<std::collections::HashMap<i64, String>, StoreError> {
        super::export::ids_by_key(&self.tx).map_err(|e| self.sql(e))
    }

    /// The subscriber id of `key`.
    pub fn id_of(&self, key: i64) -> Result<Option<String>, StoreError> {
        use rusqlite::OptionalExtension as _;
        self.tx
            .query_row("SELECT id FROM subscribers WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// The plan history.
    pub fn plan_history(&self) -> Result<super::PlanHistory, StoreError> {
        plan_history::read(&self.tx).map_err(|e| self.sql(e))
    }

    /// The plan history of the subscribers with keys in `[lo, hi)` (their plan names only).
    pub fn plan_history_of(&self, lo: i64, hi: i64) -> Result<super::PlanHistory, StoreError> {
        if lo >= hi {
            return Ok(super::PlanHistory::default());
        }
        plan_history::read_keys(&self.tx, lo, hi - 1).map_err(|e| self.sql(e))
    }

    /// The end of the last interval the daemon committed (unix seconds), if any.
    pub fn last_interval_end(&self) -> Result<Option<i64>, StoreError> {
        use rusqlite::OptionalExtension as _;
        self.tx
            .query_row(
                "SELECT value FROM meta WHERE key = 'last_interval_end'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// The start of the oldest hourly row held, if any (older hours are in days).
    pub fn oldest_hour(&self) -> Result<Option<i64>, StoreError> {
        let mut oldest = None;
        for table in [tiers::Tier::Hourly.table(), hour_blocks::TABLE] {
            if let Some((lo, _)) = tiers::start_span(&self.tx, table).map_err(|e| self.sql(e))? {
                oldest = Some(oldest.map_or(lo, |o: i64| o.min(lo)));
            }
        }
        Ok(oldest)
    }

    /// Gives `each` (hour start, key, counters) for the hourly counts of subscribers with
    /// keys in `[lo, hi)` and hours starting in `[from, to)` (`from` a whole hour), hour by
    /// hour. An hour not folded yet gives its open counts separately: the same (hour, key)
    /// may come twice, and the counts add.
    pub fn hourly(
        &self,
        (lo, hi): (i64, i64),
        from: i64,
        to: i64,
        figures: Figures,
        mut each: impl FnMut(i64, i64, &SubscriberCounters),
    ) -> Result<(), StoreError> {
        if from < to {
            // One range of keys per hour: the table is keyed (start, key).
            let query = format!(
                "WITH RECURSIVE b(s) AS (SELECT ?1 UNION ALL SELECT s + {h} FROM b WHERE s + {h} < ?2)
                 SELECT u.start, u.key, {} FROM b CROSS JOIN usage_hour u
                 ON u.start = b.s AND u.key >= ?3 AND u.key < ?4",
                figures.columns(),
                h = tiers::HOUR,
            );
            self.usage_rows(&query, params![from, to, lo, hi], figures, &mut each)?;
        }
        let open = hour_blocks::of_keys(&self.tx, lo, hi, from, to).map_err(|e| self.sql(e))?;
        for (start, key, c) in open {
            each(start, key, &c);
        }
        Ok(())
    }

    /// Gives `each` (day start, key, counters) for every daily row starting in `[from, to)`.
    pub fn daily(
        &self,
        from: i64,
        to: i64,
        figures: Figures,
        mut each: impl FnMut(i64, i64, &SubscriberCounters),
    ) -> Result<(), StoreError> {
        let query = format!(
            "SELECT start, key, {} FROM usage_day WHERE start >= ?1 AND start < ?2",
            figures.columns()
        );
        self.usage_rows(&query, params![from, to], figures, &mut each)
    }

    /// Gives `each` (start, key, counters) for the rows of `query` (start, key, the counters
    /// of `figures`).
    fn usage_rows(
        &self,
        query: &str,
        params: impl rusqlite::Params,
        figures: Figures,
        each: &mut impl FnMut(i64, i64, &SubscriberCounters),
    ) -> Result<(), StoreError> {
        let sql = |e| self.sql(e);
        let mut stmt = self.tx.prepare_cached(query).map_err(sql)?;
        let mut rows = stmt.query(params).map_err(sql)?;
        while let Some(r) = rows.next().map_err(sql)? {
            let (start, key) = (r.get(0).map_err(sql)?, r.get(1).map_err(sql)?);
            each(start, key, &figures.read(r, 2).map_err(sql)?);
        }
        Ok(())
    }

    /// The reports matched or disputed whose period ends in `(from, to]`: the reports a
    /// statement of `[from, to)` counts.
    pub fn settled_reports(&self, from: i64, to: i64) -> Result<Vec<SettledReport>, StoreError> {
        let sql = |e| self.sql(e);
        let mut stmt = self
            .tx
            .prepare(
                "SELECT r.subscriber, s.key, r.period_end, r.outcome, r.cpu_core_micros,
                        r.storage_byte_seconds, r.energy_microjoules, coalesce(r.credit, 0)
                 FROM reports r LEFT JOIN subscribers s ON s.id = r.subscriber
                 WHERE r.subscriber IS NOT NULL AND r.outcome IN (?3, ?4)
                   AND r.period_end > ?1 AND r.period_end <= ?2",
            )
            .map_err(sql)?;
        let mut rows = stmt
            .query(params![from, to, Outcome::Matched, Outcome::Disputed])
            .map_err(sql)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(sql)? {
            out.push(
                (|| -> rusqlite::Result<SettledReport> {
                    Ok(SettledReport {
                        subscriber: r.get(0)?,
                        key: r.get(1)?,
                        period_end: r.get(2)?,
                        outcome: r.get(3)?,
                        cpu_core_micros: from_sql(r, 4)?,
                        storage_byte_seconds: from_sql(r, 5)?,
                        energy_microjoules: from_sql(r, 6)?,
                        credit: r.get(7)?,
                    })
                })()
                .map_err(sql)?,
            );
        }
        Ok(out)
    }

    /// Gives `each` every ledger entry dated in `[from, to)`.
    pub fn entries(
        &self,
        from: i64,
        to: i64,
        mut each: impl FnMut(&PeriodEntry),
    ) -> Result<(), StoreError> {
        let sql = |e| self.sql(e);
        let mut stmt = self
            .tx
            .prepare(
                "SELECT s.key, l.subscriber, l.at, l.kind, l.amount
                 FROM ledger l LEFT JOIN subscribers s ON s.id = l.subscriber
                 WHERE l.at >= ?1 AND l.at < ?2",
            )
            .map_err(sql)?;
        let mut rows = stmt.query(params![from, to]).map_err(sql)?;
        while let Some(r) = rows.next().map_err(sql)? {
            let entry = (|| -> rusqlite::Result<PeriodEntry> {
                Ok(PeriodEntry {
                    key: r.get(0)?,
                    subscriber: r.get(1)?,
                    at: r.get(2)?,
                    kind: r.get(3)?,
                    amount: r.get(4)?,
                })
            })()
            .map_err(sql)?;
            each(&entry);
        }
        Ok(())
    }
}
