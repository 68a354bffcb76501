//! The `reports` table: admitted node reports as signed, what admission must remember of each
//! node, and the settled contributions the metrics show (the settlement transaction is in
//! `settlement.rs`).

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, from_sql, to_sql};
use crate::settlement::{
    admission::History,
    report::{EnergySource, Period, Report},
};

/// A recorded report as `quid node reports` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReport {
    pub seq: u64,
    pub period: Period,
    pub cpu_core_micros: u64,
    pub storage_byte_seconds: u64,
    pub energy_microjoules: u64,
    pub energy_source: Sourced,
    /// Sent, received.
    pub grid_bytes: [u64; 2],
    /// `pending` until settled, then the settlement's outcome.
    pub outcome: String,
}

/// The energy source a recorded report names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sourced {
    /// A version 3 report's source.
    Stated(EnergySource),
    /// A version 2 report: no source stated.
    Unstated,
    /// A name this quid does not know (a store written by a newer quid).
    Unknown(String),
}

impl Sourced {
    /// The source's name, `unstated` for a version 2 report.
    pub fn name(&self) -> &str {
        match self {
            Sourced::Stated(s) => s.as_str(),
            Sourced::Unstated => "unstated",
            Sourced::Unknown(name) => name,
        }
    }
}

impl Store {
    /// Records an admitted report; it is durable when this returns. `subscriber` is the
    /// node's subscriber now: the meter it is matched against. Every integer must fit
    /// SQLite's i64 (admission refuses larger ones; this refuses rather than wraps).
    pub fn insert_report(
        &mut self,
        r: &Report,
        p: Period,
        received_at: i64,
        subscriber: &str,
    ) -> Result<(), StoreError> {
        insert_on(&self.conn, r, p, received_at, subscriber).map_err(|e| self.sql(e))
    }

    /// What every node had accepted, to resume admission after a restart.
    pub fn report_histories(&self) -> Result<HashMap<String, History>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT node, seq, period_start, period_end, signature FROM reports")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    from_sql(r, 1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut out: HashMap<String, History> = HashMap::new();
        for row in rows {
            let (node, seq, start, end, sig) = row.map_err(|e| self.sql(e))?;
            out.entry(node)
                .or_default()
                .record(seq, signature_bytes(&sig), Period { start, end });
        }
        Ok(out)
    }

    /// The reports recorded for `node`, oldest first.
    pub fn node_reports(&self, node: &str) -> Result<Vec<StoredReport>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, period_start, period_end, cpu_core_micros, storage_byte_seconds,
                        energy_microjoules, energy_source, grid_bytes_sent, grid_bytes_received,
                        outcome
                 FROM reports WHERE node = ?1 ORDER BY seq",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([node], |r| {
                let source: Option<String> = r.get(6)?;
                Ok(StoredReport {
                    seq: from_sql(r, 0)?,
                    period: Period {
                        start: r.get(1)?,
                        end: r.get(2)?,
                    },
                    cpu_core_micros: from_sql(r, 3)?,
                    storage_byte_seconds: from_sql(r, 4)?,
                    energy_microjoules: from_sql(r, 5)?,
                    energy_source: match source {
                        None => Sourced::Unstated,
                        Some(name) => EnergySource::from_name(&name)
                            .map_or(Sourced::Unknown(name), Sourced::Stated),
                    },
                    grid_bytes: [from_sql(r, 7)?, from_sql(r, 8)?],
                    outcome: r.get(9)?,
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }

    /// The signature bytes of report `seq` of `node`, if it is recorded.
    pub fn report_signature(&self, node: &str, seq: u64) -> Result<Option<[u8; 64]>, StoreError> {
        let Ok(seq) = i64::try_from(seq) else {
            // Never admitted, so never recorded.
            return Ok(None);
        };
        self.conn
            .prepare_cached("SELECT signature FROM reports WHERE node = ?1 AND seq = ?2")
            .and_then(|mut s| {
                s.query_row(params![node, seq], |r| r.get::<_, String>(0))
                    .optional()
            })
            .map(|s| s.and_then(|s| signature_bytes(&s)))
            .map_err(|e| self.sql(e))
    }

    /// Every subscriber's settled contributions: cpu core-seconds, storage byte-seconds, joules.
    pub fn contributions(
        &self,
    ) -> Result<std::collections::BTreeMap<String, [f64; 3]>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT subscriber, cpu_core_seconds, storage_byte_seconds, energy_joules
                 FROM contributions",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, [r.get(1)?, r.get(2)?, r.get(3)?])))
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }

    /// Settled contributions summed per plan (each subscriber's current plan): cpu
    /// core-seconds, storage byte-seconds, joules.
    pub fn plan_contributions(
        &self,
    ) -> Result<std::collections::BTreeMap<String, [f64; 3]>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT s.plan, sum(c.cpu_core_seconds), sum(c.storage_byte_seconds),
                        sum(c.energy_joules)
                 FROM contributions c JOIN subscribers s ON s.id = c.subscriber
                 GROUP BY s.plan",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, [r.get(1)?, r.get(2)?, r.get(3)?])))
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }

    /// How many reports are recorded.
    pub fn report_count(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM reports", [], |r| from_sql(r, 0))
            .map_err(|e| self.sql(e))
    }
}

/// Inserts an admitted report on `conn` (autocommit, or inside a report batch's transaction).
pub(super) fn insert_on(
    conn: &rusqlite::Connection,
    r: &Report,
    p: Period,
    received_at: i64,
    subscriber: &str,
) -> rusqlite::Result<()> {
    let [seq, cpu, storage, energy, sent, received] =
        r.figures().map(|(field, v)| to_sql(field, v));
    let signature = r
        .signature_bytes()
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    conn.prepare_cached(
        "INSERT INTO reports (node, seq, period_start, period_end, cpu_core_micros,
           storage_byte_seconds, energy_microjoules, grid_bytes_sent, grid_bytes_received,
           signature, received_at, subscriber, energy_source)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        r.node,
        seq?,
        p.start,
        p.end,
        cpu?,
        storage?,
        energy?,
        sent?,
        received?,
        // Canonical lowercase: one report, one text, whatever case the node sent.
        hex::encode(signature),
        received_at,
        subscriber,
        r.energy_source.map(EnergySource::as_str)
    ])
    .map(|_| ())
}

/// A stored signature's bytes (hex of either case, as older versions kept what nodes sent).
fn signature_bytes(text: &str) -> Option<[u8; 64]> {
    hex::decode(text).ok().and_then(|b| b.try_into().ok())
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;
    use crate::store::FILE;

    /// The reports schema before version 2 reports, as older quid created it.
    const V1_REPORTS: &str = "
        CREATE TABLE reports (
            node TEXT NOT NULL, seq INTEGER NOT NULL,
            period_start INTEGER NOT NULL, period_end INTEGER NOT NULL,
            cpu_core_seconds REAL NOT NULL, storage_byte_seconds REAL NOT NULL, energy_joules REAL NOT NULL,
            grid_bytes_sent INTEGER NOT NULL, grid_bytes_received INTEGER NOT NULL,
            signature TEXT NOT NULL, received_at INTEGER NOT NULL,
            outcome TEXT NOT NULL DEFAULT 'pending',
            measured_grid_bytes INTEGER, credit INTEGER, subscriber TEXT,
            PRIMARY KEY (node, seq));
        CREATE TABLE contributions (
            subscriber TEXT PRIMARY KEY, cpu_core_seconds REAL NOT NULL,
            storage_byte_seconds REAL NOT NULL, energy_joules REAL NOT NULL);
        CREATE TRIGGER report_settled AFTER UPDATE OF outcome ON reports
        WHEN OLD.outcome = 'pending' AND NEW.outcome != 'pending' BEGIN
            INSERT INTO contributions VALUES (NEW.subscriber, NEW.cpu_core_seconds,
                NEW.storage_byte_seconds, NEW.energy_joules)
            ON CONFLICT(subscriber) DO UPDATE SET
                cpu_core_seconds = cpu_core_seconds + NEW.cpu_core_seconds,
                storage_byte_seconds = storage_byte_seconds + NEW.storage_byte_seconds,
                energy_joules = energy_joules + NEW.energy_joules;
        END;
        INSERT INTO reports (node, seq, period_start, period_end, cpu_core_seconds,
            storage_byte_seconds, energy_joules, grid_bytes_sent, grid_bytes_received,
            signature, received_at)
          VALUES ('pi', 1, 100, 200, 7200.5, 3.6e12, 90000.000001, 5, -1, 'AB', 300),
                 ('pi', 2, 200, 300, 0.1, 0.0, 0.0, -9223372036854775808, 7, 'cd', 400);
    ";

    /// A store an older quid wrote with [`V1_REPORTS`], opened (and so migrated) by this one.
    fn v1_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        Connection::open(dir.path().join(FILE))
            .unwrap()
            .execute_batch(V1_REPORTS)
            .unwrap();
        let s = Store::open(dir.path()).unwrap();
        (dir, s)
    }

    #[test]
    fn a_store_from_before_version_2_reports_opens_with_exact_integer_figures() {
        let (dir, mut s) = v1_store();
        let rows: Vec<(i64, i64, i64, i64, i64, String)> = s
            .conn
            .prepare(
                "SELECT cpu_core_micros, storage_byte_seconds, energy_microjoules,
                        grid_bytes_sent, grid_bytes_received, signature FROM reports ORDER BY seq",
            )
            .unwrap()
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                // Wrapped grid figures (u64 >= 2^63 stored negative) read as the largest claim.
                (
                    7_200_500_000,
                    3_600_000_000_000,
                    90_000_000_001,
                    5,
                    i64::MAX,
                    "ab".into()
                ),
                (100_000, 0, 0, i64::MAX, 7, "cd".into()),
            ]
        );
        // Resumed admission still knows the node; the migrated trigger sums in seconds.
        assert_eq!(s.report_histories().unwrap()["pi"].last_seq, Some(2));
        s.conn
            .execute(
                "UPDATE reports SET outcome = 'matched', subscriber = 'alice' WHERE seq = 1",
                [],
            )
            .unwrap();
        assert_eq!(
            s.contributions().unwrap()["alice"],
            [7200.5, 3.6e12, 90_000.000001]
        );
        // Opening again changes nothing.
        drop(s);
        s = Store::open(dir.path()).unwrap();
        assert_eq!(s.report_count().unwrap(), 2);
    }

    /// Reports from before version 3 state no energy source; a version 3 report's source is
    /// kept and shown as it was signed.
    #[test]
    fn the_energy_source_is_stored_as_signed_and_older_reports_state_none() {
        let (dir, mut s) = v1_store();
        let sources = |s: &Store| -> Vec<(u64, Sourced)> {
            s.node_reports("pi")
                .unwrap()
                .into_iter()
                .map(|r| (r.seq, r.energy_source))
                .collect()
        };
        assert_eq!(
            sources(&s),
            [(1, Sourced::Unstated), (2, Sourced::Unstated)]
        );
        let mut r = Report {
            node: "pi".into(),
            seq: 3,
            period_start: "1970-01-01T00:05:00Z".into(),
            period_end: "1970-01-01T00:06:40Z".into(),
            cpu_core_micros: 1,
            storage_byte_seconds: 2,
            energy_microjoules: 3,
            energy_source: Some(EnergySource::Shelly),
            grid_bytes_sent: 4,
            grid_bytes_received: 5,
            signature: "00".repeat(64),
        };
        s.insert_report(&r, r.period().unwrap(), 500, "alice")
            .unwrap();
        r.seq = 4;
        r.energy_source = None;
        s.insert_report(&r, r.period().unwrap(), 600, "alice")
            .unwrap();
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        let shown = s.node_reports("pi").unwrap();
        assert_eq!(
            sources(&s)[2..],
            [
                (3, Sourced::Stated(EnergySource::Shelly)),
                (4, Sourced::Unstated)
            ]
        );
        assert_eq!(shown[2].energy_microjoules, 3);
        assert_eq!(shown[2].grid_bytes, [4, 5]);
        assert_eq!(
            shown[2].period,
            Period {
                start: 300,
                end: 400
            }
        );
        assert_eq!(shown[2].energy_source.name(), "shelly");
        assert!(s.node_reports("ghost").unwrap().is_empty());
    }
}

/// An admitted report as the shared store receives it (figures as stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    /// Its place in this store's table (the shipping cursor).
    pub rowid: i64,
    pub node: String,
    pub seq: i64,
    /// The subscriber it was admitted for (empty for a report older than that column).
    pub subscriber: String,
    pub period_start: i64,
    pub period_end: i64,
    /// cpu core-µs, storage byte-seconds, energy µJ, grid bytes sent, grid bytes received.
    pub figures: [i64; 5],
    /// Lowercase hex.
    pub signature: String,
    pub received_at: i64,
    /// The energy meter a version-3 report names (`none`, `rapl`, ...); `None` before version 3.
    pub energy_source: Option<String>,
}

impl Store {
    /// Up to `limit` reports admitted after `rowid`, in admission order. Reports are never
    /// deleted, so row ids only grow and a cursor on them misses none.
    pub fn reports_after(&self, rowid: i64, limit: usize) -> Result<Vec<ReportRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT rowid, node, seq, coalesce(subscriber, ''), period_start, period_end,
                   cpu_core_micros, storage_byte_seconds, energy_microjoules, grid_bytes_sent,
                   grid_bytes_received, signature, received_at, energy_source
                 FROM reports WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(
                params![rowid, i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| {
                    Ok(ReportRow {
                        rowid: r.get(0)?,
                        node: r.get(1)?,
                        seq: r.get(2)?,
                        subscriber: r.get(3)?,
                        period_start: r.get(4)?,
                        period_end: r.get(5)?,
                        figures: [r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?],
                        signature: r.get(11)?,
                        received_at: r.get(12)?,
                        energy_source: r.get(13)?,
                    })
                },
            )
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }
}
