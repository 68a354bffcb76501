//! What the books metered: the meter's spans (the kernel counters ran without a break), when
//! each subscriber was in the installed table, and when quid first saw each node.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, secs};

impl Store {
    /// Starts a new meter span at `at`: the kernel counters start from zero now, so nothing
    /// before is covered by this run (the previous span ends where its last interval did).
    pub fn begin_meter_span(&self, at: u64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO meter_spans (start, end) VALUES (?1, ?1)
                 ON CONFLICT(start) DO NOTHING",
                [secs(at)],
            )
            .map(|_| ())
            .map_err(|e| self.sql(e))
    }

    /// Seconds of `[start, end)` the books metered for `subscriber`: time within a meter
    /// span while the subscriber was in the installed table.
    pub fn metered_seconds(
        &self,
        subscriber: &str,
        start: i64,
        end: i64,
    ) -> Result<i64, StoreError> {
        let spans =
            |sql: &str, params: &[&dyn rusqlite::ToSql]| -> Result<Vec<(i64, i64)>, StoreError> {
                let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.sql(e))?;
                let rows = stmt
                    .query_map(params, |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
                    .map_err(|e| self.sql(e))?;
                rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
            };
        let meter = spans(
            "SELECT max(start, ?1), min(end, ?2) FROM meter_spans WHERE end > ?1 AND start < ?2",
            &[&start, &end],
        )?;
        let active = spans(
            "SELECT max(start, ?2), min(coalesce(end, ?3), ?3) FROM metering
             WHERE subscriber = ?1 AND coalesce(end, ?3) > ?2 AND start < ?3",
            &[&subscriber, &start, &end],
        )?;
        // The pairwise overlaps, merged: spans a store holds should not overlap, but time
        // must never count twice even if they do.
        let mut pieces: Vec<(i64, i64)> = Vec::new();
        for &(a, b) in &meter {
            for &(c, d) in &active {
                let (s, e) = (a.max(c), b.min(d));
                if e > s {
                    pieces.push((s, e));
                }
            }
        }
        pieces.sort_unstable();
        let mut covered = 0i64;
        let mut reached = i64::MIN;
        for (s, e) in pieces {
            let s = s.max(reached);
            if e > s {
                covered = covered.saturating_add(e.saturating_sub(s));
                reached = e;
            }
        }
        Ok(covered)
    }

    /// The earliest time the books metered `subscriber`, if they ever did.
    pub fn metered_since(&self, subscriber: &str) -> Result<Option<i64>, StoreError> {
        // Cached: the report intake asks once per report.
        self.conn
            .prepare_cached("SELECT min(start) FROM metering WHERE subscriber = ?1")
            .and_then(|mut s| s.query_row([subscriber], |r| r.get(0)))
            .map_err(|e| self.sql(e))
    }

    /// Records that quid saw `nodes` registered at `now` (the first time counts).
    pub fn nodes_seen<'a>(
        &mut self,
        nodes: impl Iterator<Item = &'a str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        {
            let mut put = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO nodes_seen (node, first_seen) VALUES (?1, ?2)",
                )
                .map_err(sql)?;
            for node in nodes {
                put.execute(params![node, now]).map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)
    }

    /// When quid first saw `node` registered.
    pub fn node_first_seen(&self, node: &str) -> Result<Option<i64>, StoreError> {
        // Cached: the report intake asks once per report.
        self.conn
            .prepare_cached("SELECT first_seen FROM nodes_seen WHERE node = ?1")
            .and_then(|mut s| s.query_row([node], |r| r.get(0)).optional())
            .map_err(|e| self.sql(e))
    }
}
