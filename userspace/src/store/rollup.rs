//! The roll-up: hourly rows older than their retention are added into daily rows, daily rows
//! past theirs are dropped, and grid journal rows past theirs are dropped (their bytes are in
//! the hourly rows already). Every tier is keyed (start, key): each pass works from the oldest
//! bucket forward, a batch of keys at a time. Batches are bounded, each in its own transaction, so an interval
//! commit or a scrape waits at most one small batch; coarser rows are committed in the same
//! transaction that deletes the finer ones, so a crash loses and doubles nothing.
//!
//! An hourly row at or after its subscriber's `based` hour stays until the base moves past it
//! (see `subscribers::Base`): those rows are part of the subscriber's running totals.

use rusqlite::{OptionalExtension, params};

use super::{
    Store, StoreError, hour_blocks, tier_counts,
    tiers::{COUNTERS, DAY, HOUR, Retention, RollupProgress, Tier, add_excluded, bucket},
    usage::JOURNAL_FROM,
};
use crate::settlement::outcome::Outcome;

/// Where an interrupted roll-up continues: the tier, the bucket and the last key done. Only
/// an optimisation: starting over is always correct.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct RollupCursor {
    tier: usize,
    bucket: Option<i64>,
    after: Option<i64>,
}

/// Rows of `usage_hour` whose subscriber's base has moved past them (the others stay).
const UNBASED: &str =
    "start < coalesce((SELECT based FROM subscribers s WHERE s.key = u.key), 9223372036854775807)";

impl Store {
    /// Rolls usage up, at most `keep.rollup_batch_rows` rows per call, each batch in its own
    /// transaction. Journal rows a pending report still covers stay (matching reads them).
    /// Call again (next interval) while `done` is false; the store remembers where it stopped.
    pub fn roll_up(&mut self, now: i64, keep: &Retention) -> Result<RollupProgress, StoreError> {
        self.roll_up_inner(now, keep, &mut |_| Ok(()))
    }

    /// [`Store::roll_up`] with `between` called after each committed batch (its error stops
    /// the roll-up there): how tests interrupt a roll-up at a batch boundary.
    pub fn roll_up_inner(
        &mut self,
        now: i64,
        keep: &Retention,
        between: &mut dyn FnMut(u64) -> Result<(), StoreError>,
    ) -> Result<RollupProgress, StoreError> {
        let mut cursor = std::mem::take(&mut self.rollup);
        let result = self.roll_up_from(now, keep, &mut cursor, between);
        self.rollup = cursor;
        result
    }

    /// [`Store::roll_up_inner`] from `cursor`, which it moves on.
    fn roll_up_from(
        &mut self,
        now: i64,
        keep: &Retention,
        cursor: &mut RollupCursor,
        between: &mut dyn FnMut(u64) -> Result<(), StoreError>,
    ) -> Result<RollupProgress, StoreError> {
        let mut progress = RollupProgress::default();
        let mut scanned = 0u64;
        let budget = u64::try_from(keep.rollup_batch_rows).unwrap_or(u64::MAX);
        while let Some(&tier) = Tier::ALL.get(cursor.tier) {
            let cutoff = self.cutoff(tier, now, keep)?;
            if tier == Tier::Hourly && cursor.bucket.is_none() {
                // Hours whose blocks are not folded yet (a store that stopped before its
                // commits folded them) become rows before they are rolled.
                loop {
                    if scanned >= budget {
                        return Ok(progress);
                    }
                    let (created, more) = self.fold_before(cutoff)?;
                    scanned += created.cast_unsigned().max(1);
                    if !more {
                        break;
                    }
                }
            }
            loop {
                if scanned >= budget {
                    return Ok(progress);
                }
                let left = budget - scanned;
                if tier == Tier::Interval && cursor.bucket.is_none() {
                    // The journal holds every interval from the cutoff on (nothing newer is
                    // ever dropped): matching reads the hourly rows before it.
                    self.conn
                        .execute(
                            "INSERT INTO meta (key, value) VALUES (?1, ?2)
                             ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)",
                            params![JOURNAL_FROM, cutoff],
                        )
                        .map_err(|e| self.sql(e))?;
                }
                let step = self.roll_bucket(tier, cursor, cutoff, left)?;
                let Some((seen, moved)) = step else { break };
                scanned += seen.max(1);
                if moved > 0 {
                    progress.rows += moved;
                    between(progress.rows)?;
                }
            }
            *cursor = RollupCursor {
                tier: cursor.tier + 1,
                ..RollupCursor::default()
            };
        }
        *cursor = RollupCursor::default();
        progress.done = true;
        if progress.rows > 0 {
            // Hand the freed pages back to the file system (auto_vacuum = INCREMENTAL).
            self.conn
                .execute_batch("PRAGMA incremental_vacuum;")
                .map_err(|e| self.sql(e))?;
        }
        Ok(progress)
    }

    /// Folds a batch of the blocks of hours before `before` into hourly rows, in one
    /// transaction; returns the rows created and whether blocks before `before` are left.
    fn fold_before(&mut self, before: i64) -> Result<(i64, bool), StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        let (created, more) =
            hour_blocks::fold(&tx, before, hour_blocks::FOLD_PER_COMMIT).map_err(sql)?;
        tier_counts::add(&tx, Tier::Hourly, created).map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok((created, more))
    }

    /// The start before which `tier`'s rows leave it now: a whole bucket of the coarser tier,
    /// and for the journal never after the hour of a pending report's period start.
    pub(super) fn cutoff(&self, tier: Tier, now: i64, keep: &Retention) -> Result<i64, StoreError> {
        let edge = now.saturating_sub(keep.of(tier));
        Ok(match tier {
            Tier::Interval => {
                // The outcome as a literal, so that SQLite answers from the partial index of
                // pending reports (`reports_pending`) instead of scanning every report.
                let pending: Option<i64> = self
                    .conn
                    .query_row(
                        &format!(
                            "SELECT min(period_start) FROM reports WHERE outcome = '{}'",
                            Outcome::Pending.as_str()
                        ),
                        [],
                        |r| r.get(0),
                    )
                    .map_err(|e| self.sql(e))?;
                let cutoff = bucket(edge, HOUR);
                pending.map_or(cutoff, |p| cutoff.min(bucket(p, HOUR)))
            }
            Tier::Hourly | Tier::Daily => bucket(edge, DAY),
        })
    }

    /// Moves (hourly into daily) or drops (daily, journal) up to `left` rows of the oldest bucket
    /// before `cutoff`, in one transaction; `None` once no bucket before `cutoff` is left.
    /// Returns the rows looked at and the rows that left the tier.
    fn roll_bucket(
        &mut self,
        tier: Tier,
        cursor: &mut RollupCursor,
        cutoff: i64,
        left: u64,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        let table = tier.table();
        let b: Option<i64> = match cursor.bucket {
            Some(b) => Some(b),
            None => self
                .conn
                .query_row(&format!("SELECT min(start) FROM {table}"), [], |r| r.get(0))
                .map_err(|e| self.sql(e))?,
        };
        let Some(b) = b.filter(|b| *b < cutoff) else {
            return Ok(None);
        };
        let after = cursor.after.unwrap_or(i64::MIN);
        // The last key of this batch (or the bucket's end).
        let upto: Option<i64> = self
            .conn
            .query_row(
                &format!(
                    "SELECT key FROM {table} WHERE start = ?1 AND key > ?2 ORDER BY key \
                     LIMIT 1 OFFSET ?3"
                ),
                params![
                    b,
                    after,
                    i64::try_from(left.saturating_sub(1)).unwrap_or(i64::MAX)
                ],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        let upto_key = upto.unwrap_or(i64::MAX);
        let path = self.path.clone();
        let sql = |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        let range = "start = ?1 AND key > ?2 AND key <= ?3";
        let guard = if tier == Tier::Hourly { UNBASED } else { "1" };
        let seen: i64 = tx
            .query_row(
                &format!("SELECT count(*) FROM {table} u WHERE {range}"),
                params![b, after, upto_key],
                |r| r.get(0),
            )
            .map_err(sql)?;
        if tier == Tier::Hourly {
            let day = bucket(b, DAY);
            let fresh: i64 = tx
                .query_row(
                    &format!(
                        "SELECT count(*) FROM usage_hour u WHERE {range} AND {guard} AND NOT \
                         EXISTS (SELECT 1 FROM usage_day d WHERE d.start = ?4 AND d.key = u.key)"
                    ),
                    params![b, after, upto_key, day],
                    |r| r.get(0),
                )
                .map_err(sql)?;
            // Integer sums in SQLite fail on i64 overflow rather than wrap; counters are kept
            // bit-exact, so totals beyond 2^63 per day are refused (2^63 bytes is 9 EB).
            tx.execute(
                &format!(
                    "INSERT INTO usage_day SELECT ?4, key, {cols} FROM usage_hour u
                     WHERE {range} AND {guard}
                     ON CONFLICT(start, key) DO UPDATE SET {adds}",
                    cols = COUNTERS.join(", "),
                    adds = add_excluded(),
                ),
                params![b, after, upto_key, day],
            )
            .map_err(sql)?;
            tier_counts::add(&tx, Tier::Daily, fresh).map_err(sql)?;
        }
        let moved = tx
            .execute(
                &format!("DELETE FROM {table} AS u WHERE {range} AND {guard}"),
                params![b, after, upto_key],
            )
            .map_err(sql)?;
        let moved = i64::try_from(moved).unwrap_or(i64::MAX);
        tier_counts::add(&tx, tier, -moved).map_err(sql)?;
        tx.commit().map_err(sql)?;
        if upto.is_some() {
            cursor.bucket = Some(b);
            cursor.after = Some(upto_key);
        } else {
            // This bucket is done: on to the next one held.
            cursor.bucket = self
                .conn
                .query_row(
                    &format!("SELECT min(start) FROM {table} WHERE start > ?1"),
                    [b],
                    |r| r.get(0),
                )
                .map_err(|e| self.sql(e))?;
            cursor.after = None;
            if cursor.bucket.is_none() {
                cursor.bucket = Some(i64::MAX);
            }
        }
        Ok(Some((seen.cast_unsigned(), moved.cast_unsigned())))
    }

    /// How far the roll-up is behind: seconds since the oldest row of any tier should have
    /// left it (0 when every tier is within its retention).
    pub fn rollup_lag(&self, now: i64, keep: &Retention) -> Result<i64, StoreError> {
        let mut lag = 0i64;
        for tier in Tier::ALL {
            let cutoff = self.cutoff(tier, now, keep)?;
            let oldest = self.oldest(tier)?;
            if let Some(oldest) = oldest
                && oldest < cutoff
            {
                lag = lag.max(cutoff.saturating_sub(oldest));
            }
        }
        Ok(lag)
    }
}
