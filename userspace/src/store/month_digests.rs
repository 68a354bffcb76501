//! The month digests: what `quid report` needs of a closed month, folded a day at a time from
//! the hourly rows (by `planner::month_fold`), so the report of a month at a million
//! subscribers reads a million digests and a few thousand plan-hours instead of 720 million
//! hourly rows.
//!
//! - `digest_plan_hours`: every plan's bytes per hour (plan 0 is the unknown plan), by class
//!   and direction: the plan and fleet series, totals, busy hour and percentiles.
//! - `digest_months`: per (month, subscriber key), a [`MonthDigest`] blob: the plans it had
//!   usage under, its month's bytes each way, and its largest hourly values each way (enough
//!   for the exact nearest-rank 95th percentile of any month).
//! - `digest_plans`: the plan names behind the ids the other two hold.
//! - `meta` keys `digest_since`, `digest_day`, `digest_key`: the first day folded, the day
//!   being folded and the next subscriber key in it. A month is complete when it lies between
//!   the first day and the day being folded.
//!
//! A blob: LEB128 numbers: the count of plans then each id, the bytes down and up, then each
//! direction's count of values and the values largest first, each after the first as its
//! difference from the one before.

use rusqlite::{OptionalExtension as _, params};

use super::{
    PeriodReader, StoreError,
    leb128::{get, put},
};

/// The tables (created at every open: they arrived after the compact books' migration).
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS digest_plan_hours (
    start INTEGER NOT NULL, plan INTEGER NOT NULL,
    internet_down INTEGER NOT NULL, internet_up INTEGER NOT NULL,
    grid_down INTEGER NOT NULL, grid_up INTEGER NOT NULL,
    PRIMARY KEY (start, plan)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS digest_months (
    month INTEGER NOT NULL, key INTEGER NOT NULL, digest BLOB NOT NULL,
    PRIMARY KEY (month, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS digest_plans (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);";

/// The id of the unknown plan (usage of a key without plan history).
pub const UNKNOWN_PLAN: i64 = 0;

/// One subscriber's month so far (see the module's documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MonthDigest {
    /// Ids of the plans it had usage under, ascending.
    pub plans: Vec<i64>,
    /// Bytes of the month, both classes, downloaded.
    pub down: u64,
    /// Bytes of the month, both classes, uploaded.
    pub up: u64,
    /// Its largest hourly values downloaded, largest first (hours without usage are zeros
    /// and not held).
    pub top_down: Vec<u64>,
    /// The same, uploaded.
    pub top_up: Vec<u64>,
}

impl MonthDigest {
    /// The blob.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 4 * (self.top_down.len() + self.top_up.len()));
        put(&mut out, self.plans.len() as u64);
        for &p in &self.plans {
            put(&mut out, p.cast_unsigned());
        }
        put(&mut out, self.down);
        put(&mut out, self.up);
        for values in [&self.top_down, &self.top_up] {
            put(&mut out, values.len() as u64);
            let mut before = None;
            for &v in values {
                put(&mut out, before.map_or(v, |b: u64| b.saturating_sub(v)));
                before = Some(v);
            }
        }
        out
    }

    /// The digest of a blob; `None` if it is damaged.
    fn decode(b: &[u8]) -> Option<MonthDigest> {
        let mut at = 0;
        let count = |at: &mut usize| -> Option<usize> {
            // No list is longer than the bytes left: a damaged count cannot allocate much.
            usize::try_from(get(b, at)?).ok().filter(|&n| n <= b.len())
        };
        let n = count(&mut at)?;
        let plans = (0..n)
            .map(|_| get(b, &mut at).map(u64::cast_signed))
            .collect::<Option<Vec<_>>>()?;
        let (down, up) = (get(b, &mut at)?, get(b, &mut at)?);
        let mut lists = [Vec::new(), Vec::new()];
        for list in &mut lists {
            let n = count(&mut at)?;
            let mut before: Option<u64> = None;
            for _ in 0..n {
                let d = get(b, &mut at)?;
                let v = match before {
                    None => d,
                    Some(b) => b.checked_sub(d)?,
                };
                list.push(v);
                before = Some(v);
            }
        }
        let [top_down, top_up] = lists;
        (at == b.len()).then_some(MonthDigest {
            plans,
            down,
            up,
            top_down,
            top_up,
        })
    }
}

/// Where the folding stands (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestCursor {
    /// The first day folded (unix seconds, a UTC midnight).
    pub since: i64,
    /// The day being folded: every day before it is folded.
    pub day: i64,
    /// The next subscriber key to fold in `day`.
    pub key: i64,
}

/// One plan's bytes in one hour, by class and direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanHour {
    pub internet_down: u64,
    pub internet_up: u64,
    pub grid_down: u64,
    pub grid_up: u64,
}

/// What one fold batch writes.
#[derive(Debug, Default)]
pub struct DigestWrites {
    /// The month (its first second) the digests belong to.
    pub month: i64,
    /// The new digests of the batch's subscribers, by key.
    pub digests: Vec<(i64, MonthDigest)>,
    /// Bytes to add to (hour start, plan id).
    pub plan_hours: Vec<(i64, i64, PlanHour)>,
}

impl PeriodReader<'_> {
    /// Where the folding stands; `None` before the first fold.
    pub fn digest_cursor(&self) -> Result<Option<DigestCursor>, StoreError> {
        let value = |k: &str| -> Result<Option<i64>, StoreError> {
            self.tx
                .query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
                .optional()
                .map_err(|e| self.sql(e))
        };
        Ok(
            match (
                value("digest_since")?,
                value("digest_day")?,
                value("digest_key")?,
            ) {
                (Some(since), Some(day), Some(key)) => Some(DigestCursor { since, day, key }),
                _ => None,
            },
        )
    }

    /// Whether the digests hold every day of `[from, to)`.
    pub fn digested(&self, from: i64, to: i64) -> Result<bool, StoreError> {
        Ok(self
            .digest_cursor()?
            .is_some_and(|c| c.since <= from && to <= c.day))
    }

    /// One past the largest subscriber key with usage in the hours `[from, to)`; `None`
    /// without any.
    pub fn key_bound(&self, from: i64, to: i64) -> Result<Option<i64>, StoreError> {
        let sql = |e| self.sql(e);
        let mut rows = self
            .tx
            .prepare_cached("SELECT max(key) FROM usage_hour WHERE start = ?1")
            .map_err(sql)?;
        let mut blocks = self
            .tx
            .prepare_cached("SELECT max(block) FROM usage_hour_blocks WHERE start = ?1")
            .map_err(sql)?;
        let mut bound: Option<i64> = None;
        let hours = (from..to).step_by(usize::try_from(super::tiers::HOUR).unwrap_or(3_600));
        for hour in hours {
            let key: Option<i64> = rows.query_row([hour], |r| r.get(0)).map_err(sql)?;
            // A block holds keys up to the next block's first.
            let block: Option<i64> = blocks.query_row([hour], |r| r.get(0)).map_err(sql)?;
            for b in [
                key.map(|k| k.saturating_add(1)),
                block.map(super::hour_blocks::end_of_block),
            ]
            .into_iter()
            .flatten()
            {
                bound = Some(bound.map_or(b, |x| x.max(b)));
            }
        }
        Ok(bound)
    }

    /// The digest id of plan `name`, given one if it has none (inside a fold only).
    pub fn digest_plan_id(&self, name: &str) -> Result<i64, StoreError> {
        let sql = |e| self.sql(e);
        self.tx
            .prepare_cached("INSERT OR IGNORE INTO digest_plans (name) VALUES (?1)")
            .and_then(|mut s| s.execute([name]))
            .map_err(sql)?;
        self.tx
            .prepare_cached("SELECT id FROM digest_plans WHERE name = ?1")
            .and_then(|mut s| s.query_row([name], |r| r.get(0)))
            .map_err(sql)
    }

    /// Every digest plan id's name.
    pub fn digest_plan_names(&self) -> Result<std::collections::HashMap<i64, String>, StoreError> {
        let sql = |e| self.sql(e);
        let mut stmt = self
            .tx
            .prepare("SELECT id, name FROM digest_plans")
            .map_err(sql)?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(Iterator::collect)
            .map_err(sql)
    }

    /// Gives `each` (key, digest) for the digests of `month` with keys in `[lo, hi)`, by key.
    pub fn month_digests(
        &self,
        month: i64,
        (lo, hi): (i64, i64),
        mut each: impl FnMut(i64, MonthDigest),
    ) -> Result<(), StoreError> {
        let sql = |e| self.sql(e);
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT key, digest FROM digest_months WHERE month = ?1 AND key >= ?2 AND key < ?3
                 ORDER BY key",
            )
            .map_err(sql)?;
        let mut rows = stmt.query(params![month, lo, hi]).map_err(sql)?;
        while let Some(r) = rows.next().map_err(sql)? {
            let key: i64 = r.get(0).map_err(sql)?;
            let blob = r.get_ref(1).and_then(|v| Ok(v.as_blob()?)).map_err(sql)?;
            let digest = MonthDigest::decode(blob).ok_or_else(|| StoreError::Corrupt {
                path: self.store.path.clone(),
                detail: format!(
                    "the month digest of subscriber key {key} for the month starting at \
                     {month} does not read back"
                ),
            })?;
            each(key, digest);
        }
        Ok(())
    }

    /// Gives `each` (hour start, plan id, bytes) for the plan-hours starting in `[from, to)`.
    pub fn plan_hours(
        &self,
        from: i64,
        to: i64,
        mut each: impl FnMut(i64, i64, PlanHour),
    ) -> Result<(), StoreError> {
        let sql = |e| self.sql(e);
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT start, plan, internet_down, internet_up, grid_down, grid_up
                 FROM digest_plan_hours WHERE start >= ?1 AND start < ?2 ORDER BY start, plan",
            )
            .map_err(sql)?;
        let mut rows = stmt.query([from, to]).map_err(sql)?;
        while let Some(r) = rows.next().map_err(sql)? {
            // Stored bit-exact, like the usage counters.
            let n = |i| r.get::<_, i64>(i).map(i64::cast_unsigned);
            let hour = (|| {
                Ok::<_, rusqlite::Error>((
                    r.get(0)?,
                    r.get(1)?,
                    PlanHour {
                        internet_down: n(2)?,
                        internet_up: n(3)?,
                        grid_down: n(4)?,
                        grid_up: n(5)?,
                    },
                ))
            })()
            .map_err(sql)?;
            each(hour.0, hour.1, hour.2);
        }
        Ok(())
    }

    /// Writes one fold batch and moves the cursor from `at` to `next`, then commits: the
    /// batch counts once or not at all. `false` (nothing written) if another fold moved the
    /// cursor meanwhile.
    pub fn commit_fold(
        self,
        at: Option<DigestCursor>,
        next: DigestCursor,
        writes: &DigestWrites,
    ) -> Result<bool, StoreError> {
        if self.digest_cursor()? != at {
            return Ok(false);
        }
        let sql = |e| self.sql(e);
        {
            let mut put_digest = self
                .tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO digest_months (month, key, digest) VALUES (?1, ?2, ?3)",
                )
                .map_err(sql)?;
            for (key, d) in &writes.digests {
                put_digest
                    .execute(params![writes.month, key, d.encode()])
                    .map_err(sql)?;
            }
            let mut add_hour = self
                .tx
                .prepare_cached(
                    "INSERT INTO digest_plan_hours
                        (start, plan, internet_down, internet_up, grid_down, grid_up)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (start, plan) DO UPDATE SET
                        internet_down = internet_down + excluded.internet_down,
                        internet_up = internet_up + excluded.internet_up,
                        grid_down = grid_down + excluded.grid_down,
                        grid_up = grid_up + excluded.grid_up",
                )
                .map_err(sql)?;
            for (start, plan, h) in &writes.plan_hours {
                let n = |v: u64| v.cast_signed();
                add_hour
                    .execute(params![
                        start,
                        plan,
                        n(h.internet_down),
                        n(h.internet_up),
                        n(h.grid_down),
                        n(h.grid_up)
                    ])
                    .map_err(sql)?;
            }
            let mut meta = self
                .tx
                .prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")
                .map_err(sql)?;
            for (k, v) in [
                ("digest_since", next.since),
                ("digest_day", next.day),
                ("digest_key", next.key),
            ] {
                meta.execute(params![k, v]).map_err(sql)?;
            }
        }
        self.tx.commit().map_err(|e| self.store.sql(e))?;
        Ok(true)
    }

    /// Deletes up to `limit` digests of months before `before`, then commits; the number
    /// deleted (the retention of the daily tier applies to them).
    pub fn drop_digests_before(self, before: i64, limit: i64) -> Result<usize, StoreError> {
        let sql = |e| self.sql(e);
        let n = self
            .tx
            .execute(
                "DELETE FROM digest_months WHERE (month, key) IN
                    (SELECT month, key FROM digest_months WHERE month < ?1 LIMIT ?2)",
                [before, limit],
            )
            .map_err(sql)?;
        self.tx
            .execute("DELETE FROM digest_plan_hours WHERE start < ?1", [before])
            .map_err(sql)?;
        self.tx.commit().map_err(|e| self.store.sql(e))?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_reads_back_and_a_damaged_one_is_refused() {
        let d = MonthDigest {
            plans: vec![1, 7],
            down: u64::MAX,
            up: 3,
            top_down: vec![u64::MAX, 9, 9, 0],
            top_up: vec![300, 2],
        };
        let b = d.encode();
        assert_eq!(MonthDigest::decode(&b), Some(d.clone()));
        assert_eq!(
            MonthDigest::decode(&MonthDigest::default().encode()),
            Some(MonthDigest::default())
        );
        // Cut short, or with a byte too many: refused, never a wrong digest.
        for cut in 0..b.len() {
            assert_eq!(MonthDigest::decode(&b[..cut]), None, "cut at {cut}");
        }
        let mut long = b.clone();
        long.push(0);
        assert_eq!(MonthDigest::decode(&long), None);
        // A list claiming more values than bytes left.
        assert_eq!(MonthDigest::decode(&[0, 0, 0, 0x7f]), None);
    }
}
