//! Usage as the interval commit writes it and settlement reads it: each subscriber's counts
//! added into its entry of the current hour (`hour_blocks`, folded into the hourly rows of
//! `usage_hour` once the hour has closed), and the grid bytes of every interval in the grid journal
//! (`grid_journal`, the meter's evidence for node reports, kept only as long as a report may
//! still need it).

use quid_common::{
    CLASS_GRID, Counter, DIR_CLASS_PAIRS, DIR_DOWNLOAD, DIR_UPLOAD, SubscriberCounters, pair_index,
};
use rusqlite::Transaction;

use super::{Store, StoreError, grid_journal, hour_blocks, secs, tiers};
use crate::settlement::matching::{clamp, prorate};

/// One stretch of counts for one subscriber: an interval as committed, or an hourly or daily
/// row as read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub start: u64,
    pub end: u64,
    pub counters: SubscriberCounters,
}

/// Meta key: the hour from which the grid journal holds every interval (older grid bytes are
/// read from the hourly and daily rows).
pub(super) const JOURNAL_FROM: &str = "grid_journal_from";

/// Rows per multi-row UPSERT: one statement per hundred subscribers instead of one each.
const BATCH: usize = 100;

impl Store {
    /// `id`'s usage rows (hourly, then daily where the hours were rolled up) whose start lies
    /// in `[from, to)` (unix seconds), oldest first; an unknown subscriber has none.
    pub fn usage(&self, id: &str, from: u64, to: u64) -> Result<Vec<Usage>, StoreError> {
        let _read = self.snapshot()?;
        let Some(key) = self.key_of(id)? else {
            return Ok(Vec::new());
        };
        // Bounds past i64::MAX mean "to the end of time": the query saturates, not wraps.
        let mut rows: Vec<Usage> = tiers::rows_of(&self.conn, key, secs(from), secs(to))
            .map_err(|e| self.sql(e))?
            .into_iter()
            .map(|(_, start, end, counters)| Usage {
                start: u64::try_from(start).unwrap_or(0),
                end: u64::try_from(end).unwrap_or(0),
                counters,
            })
            .collect();
        rows.sort_by_key(|u| u.start);
        Ok(rows)
    }

    /// The integer key of subscriber `id`'s usage rows.
    pub(super) fn key_of(&self, id: &str) -> Result<Option<i64>, StoreError> {
        use rusqlite::OptionalExtension;
        self.conn
            .query_row("SELECT key FROM subscribers WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Grid-class bytes (both directions) counted for `subscriber` over `[start, end)`. From
    /// the grid journal where it reaches (interval resolution: an interval that straddles an
    /// edge counts in proportion to its overlap); before the journal's first hour, from the
    /// hourly and daily rows, prorated the same way (`quid check` refuses a journal retention
    /// shorter than a report window, so only a report settled late reads those).
    pub fn metered_grid_bytes(
        &self,
        subscriber: &str,
        start: i64,
        end: i64,
    ) -> Result<u64, StoreError> {
        let _read = self.snapshot()?;
        let Some(key) = self.key_of(subscriber)? else {
            return Ok(0);
        };
        let from = self
            .meta(JOURNAL_FROM)?
            .map_or(0, |v| i64::try_from(v).unwrap_or(0));
        let mut total = 0u128;
        // Intervals starting from the journal's first hour on; the hourly rows before it hold
        // exactly the intervals that started earlier.
        let spans = grid_journal::read(&self.conn, key, start, end).map_err(|e| self.sql(e))?;
        for span in spans.into_iter().filter(|s| s.start >= from) {
            let bytes = span.up.saturating_add(span.down);
            total += prorate(bytes, span.start, span.end, start, end);
        }
        if start < from {
            let before = end.min(from);
            // Rows whose bucket overlaps the range: from the bucket holding `start`.
            let first = tiers::bucket(start, tiers::DAY);
            for (_, s, e, c) in
                tiers::rows_of(&self.conn, key, first, before).map_err(|e| self.sql(e))?
            {
                let grid = c.pairs[pair_index(DIR_UPLOAD, CLASS_GRID)]
                    .bytes
                    .saturating_add(c.pairs[pair_index(DIR_DOWNLOAD, CLASS_GRID)].bytes);
                total += prorate(grid, s, e, start, before);
            }
        }
        Ok(clamp(total))
    }
}

/// What one interval adds for one subscriber: its key, the interval, and the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntervalRow {
    pub key: i64,
    pub usage: Usage,
}

/// Adds one interval's counts into each subscriber's entry of the hour holding the interval's
/// start (`hour_blocks`), and its grid bytes (if any) into the grid journal, inside an open
/// transaction; then folds a few blocks of the hours before `open` into hourly rows. Returns how
/// many hourly and journal rows it created.
pub(super) fn add(
    tx: &Transaction<'_>,
    rows: &[IntervalRow],
    open: Option<i64>,
) -> rusqlite::Result<(i64, i64)> {
    hour_blocks::add(tx, rows)?;
    let mut created = 0;
    if let Some(open) = open {
        created = hour_blocks::fold(tx, open, hour_blocks::FOLD_PER_COMMIT)?.0;
    }
    Ok((created, grid_journal::append(tx, rows)?))
}

/// Adds `rows` (key, counters; in key order) into their hourly rows of hour `hour`, inside an
/// open transaction: batched multi-row UPSERTs, the hour's pages visited once, front to back.
pub(super) fn upsert_hour(
    tx: &Transaction<'_>,
    hour: i64,
    rows: &[(i64, SubscriberCounters)],
) -> rusqlite::Result<()> {
    // The full batch's statement text is built once (a few KB: formatting and hashing it for
    // every hundred rows would cost a tenth of a second at a million subscribers).
    static FULL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let full = FULL.get_or_init(|| hour_sql(BATCH));
    for chunk in rows.chunks(BATCH) {
        let partial;
        let sql = if chunk.len() == BATCH {
            full
        } else {
            partial = hour_sql(chunk.len());
            &partial
        };
        let mut stmt = tx.prepare_cached(sql)?;
        // Bound in place: no parameter vector per batch.
        stmt.raw_bind_parameter(1, hour)?;
        let mut at = 2;
        for (key, counters) in chunk {
            stmt.raw_bind_parameter(at, key)?;
            at += 1;
            for v in flat(counters) {
                stmt.raw_bind_parameter(at, v)?;
                at += 1;
            }
        }
        stmt.raw_execute()?;
    }
    Ok(())
}

/// The UPSERT of `n` hourly rows of one hour (`?1`), each its key and eight counters.
fn hour_sql(n: usize) -> String {
    let width = 1 + 2 * DIR_CLASS_PAIRS;
    let values: Vec<String> = (0..n)
        .map(|j| {
            let cols: Vec<String> = (0..width)
                .map(|c| format!("?{}", 2 + j * width + c))
                .collect();
            format!("(?1,{})", cols.join(","))
        })
        .collect();
    format!(
        "INSERT INTO usage_hour VALUES {} ON CONFLICT(start, key) DO UPDATE SET {}",
        values.join(","),
        tiers::add_excluded()
    )
}

/// Upload and download grid bytes of `c`.
pub(super) fn grid_bytes(c: &SubscriberCounters) -> (u64, u64) {
    (
        c.pairs[pair_index(DIR_UPLOAD, CLASS_GRID)].bytes,
        c.pairs[pair_index(DIR_DOWNLOAD, CLASS_GRID)].bytes,
    )
}

/// The counters as eight numbers: (packets, bytes) per (direction, class) pair, in
/// `pair_index` order, bit-exact (a counter past i64::MAX is kept as the negative i64 with the
/// same bits, and read back whole).
pub(super) fn flat(c: &SubscriberCounters) -> [i64; 2 * DIR_CLASS_PAIRS] {
    let mut out = [0i64; 2 * DIR_CLASS_PAIRS];
    for (i, p) in c.pairs.iter().enumerate() {
        // Bit-exact: a u64 beyond i64::MAX is stored negative and read back by `unflat`.
        out[2 * i] = p.packets.cast_signed();
        out[2 * i + 1] = p.bytes.cast_signed();
    }
    out
}

/// The counters of eight numbers in [`flat`]'s order.
pub(super) fn unflat(v: &[u64; 2 * DIR_CLASS_PAIRS]) -> SubscriberCounters {
    let mut c = SubscriberCounters::default();
    for i in 0..DIR_CLASS_PAIRS {
        c.pairs[i] = Counter {
            packets: v[2 * i],
            bytes: v[2 * i + 1],
        };
    }
    c
}

/// The eight counter columns of `row` starting at column `first`, in [`flat`]'s order.
pub(super) fn counters_at(
    row: &rusqlite::Row<'_>,
    first: usize,
) -> rusqlite::Result<SubscriberCounters> {
    let mut v = [0u64; 2 * DIR_CLASS_PAIRS];
    for (i, x) in v.iter_mut().enumerate() {
        // Counters are stored bit-exact (see `flat`).
        *x = row.get::<_, i64>(first + i)?.cast_unsigned();
    }
    Ok(unflat(&v))
}
