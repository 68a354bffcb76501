//! The `usage` table: what the meter counted per subscriber and interval, by direction and
//! class, and the grid bytes settlement compares reports with.

use quid_common::{Counter, DIR_CLASS_PAIRS, SubscriberCounters};
use rusqlite::{Transaction, params};

use super::{Store, StoreError, secs};
use crate::settlement::matching::{clamp, prorate};

/// One interval's counts for one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub start: u64,
    pub end: u64,
    pub counters: SubscriberCounters,
}

impl Store {
    /// Usage records of `id` that lie within `[from, to)` (unix seconds), oldest first.
    pub fn usage(&self, id: &str, from: u64, to: u64) -> Result<Vec<Usage>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT start, end, up_packets, up_bytes, up_grid_packets, up_grid_bytes,
                        down_packets, down_bytes, down_grid_packets, down_grid_bytes
                 FROM usage WHERE subscriber = ?1 AND start >= ?2 AND end <= ?3 ORDER BY start",
            )
            .map_err(|e| self.sql(e))?;
        // Bounds past i64::MAX mean "to the end of time": the query saturates, not wraps.
        let rows = stmt
            .query_map(params![id, secs(from), secs(to)], |r| {
                let mut v = [0u64; 2 * DIR_CLASS_PAIRS];
                for (i, x) in v.iter_mut().enumerate() {
                    *x = r.get::<_, i64>(i + 2)?.cast_unsigned();
                }
                Ok(Usage {
                    start: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                    end: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                    counters: unflat(&v),
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }

    /// Grid-class bytes (both directions) counted for `subscriber` over `[start, end)`; an
    /// interval that straddles an edge counts in proportion to its overlap. Reads every tier:
    /// the roll-up keeps the interval rows of pending reports, so an hourly or daily row is
    /// prorated only for a report settled after its rows aged out (`quid check` refuses an
    /// interval retention that allows it).
    pub fn metered_grid_bytes(
        &self,
        subscriber: &str,
        start: i64,
        end: i64,
    ) -> Result<u64, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT start, end, up_grid_bytes, down_grid_bytes FROM usage_all
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
            // Counters are stored bit-exact (see `flat`): read them back as u64.
            let bytes = up.cast_unsigned().saturating_add(down.cast_unsigned());
            total += prorate(bytes, s, e, start, end);
        }
        Ok(clamp(total))
    }
}

/// Adds one interval's usage rows inside an open transaction.
pub(super) fn add(tx: &Transaction<'_>, rows: &[(&str, Usage)]) -> rusqlite::Result<()> {
    let mut add = tx
        // Two reads within one second share a start second: their counts add up.
        .prepare_cached(
            "INSERT INTO usage VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT(subscriber, start) DO UPDATE SET end = max(end, excluded.end),
               up_packets = up_packets + excluded.up_packets,
               up_bytes = up_bytes + excluded.up_bytes,
               up_grid_packets = up_grid_packets + excluded.up_grid_packets,
               up_grid_bytes = up_grid_bytes + excluded.up_grid_bytes,
               down_packets = down_packets + excluded.down_packets,
               down_bytes = down_bytes + excluded.down_bytes,
               down_grid_packets = down_grid_packets + excluded.down_grid_packets,
               down_grid_bytes = down_grid_bytes + excluded.down_grid_bytes",
        )?;
    for (id, u) in rows {
        let c = flat(&u.counters);
        add.execute(params![
            id,
            secs(u.start),
            secs(u.end),
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            c[5],
            c[6],
            c[7]
        ])?;
    }
    Ok(())
}

/// The counters as eight numbers: (packets, bytes) per (direction, class) pair, in
/// `pair_index` order, bit-exact (a counter past i64::MAX is kept as the negative i64 with the
/// same bits, and read back whole).
fn flat(c: &SubscriberCounters) -> [i64; 2 * DIR_CLASS_PAIRS] {
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
