//! The durable store on local disk: subscribers with their counter slots and running totals,
//! and one usage record per subscriber and interval.
//!
//! SQLite (rusqlite, bundled): ACID commits that survive a crash or power loss, WAL mode so
//! `quid usage` and an operator's `sqlite3` read while the daemon writes, and a file format
//! every ISP tool can open. One transaction per interval keeps the deltas and the counter
//! values they were computed from consistent: after a crash the daemon resumes from the last
//! committed values, and the pinned kernel counters still hold the rest.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use quid_common::{Counter, DIR_CLASS_PAIRS, SubscriberCounters};
use rusqlite::{Connection, OptionalExtension, params};

/// File name of the store inside the state directory.
pub const FILE: &str = "quid.db";

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Clock(#[from] crate::clock::ClockError),
    #[error("store {path}: {source}")]
    Sql {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "store {path} is damaged ({detail}); quid will not rebuild it silently: restore it from \
         a backup, or move it away to start with empty books"
    )]
    Corrupt { path: PathBuf, detail: String },
    /// Ledger entries refused because a balance would leave i64.
    #[error(transparent)]
    Ledger(crate::ledger::chain::AppendError),
}

/// Where a subscriber stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// In the installed table.
    Active,
    /// Removed from the table; its totals are final.
    Removed,
}

/// A subscriber as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub id: String,
    pub name: String,
    pub plan: String,
    /// Prefixes as written in the table, space-separated.
    pub prefixes: String,
    /// Counter slot while active.
    pub slot: Option<u32>,
    pub status: Status,
    /// The slot's kernel counters when last read (the baseline of the next delta).
    pub last: SubscriberCounters,
    /// Everything counted for this subscriber, across restarts.
    pub total: SubscriberCounters,
}

/// One interval's counts for one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub start: u64,
    pub end: u64,
    pub counters: SubscriberCounters,
}

/// The store.
pub struct Store {
    pub(crate) conn: Connection,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS subscribers (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, plan TEXT NOT NULL, prefixes TEXT NOT NULL,
    slot INTEGER, removed INTEGER NOT NULL, last BLOB NOT NULL, total BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS usage (
    subscriber TEXT NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL,
    up_packets INTEGER NOT NULL, up_bytes INTEGER NOT NULL,
    up_grid_packets INTEGER NOT NULL, up_grid_bytes INTEGER NOT NULL,
    down_packets INTEGER NOT NULL, down_bytes INTEGER NOT NULL,
    down_grid_packets INTEGER NOT NULL, down_grid_bytes INTEGER NOT NULL,
    PRIMARY KEY (subscriber, start));
-- Report figures are integers in base units, exactly as signed (version 2 reports).
CREATE TABLE IF NOT EXISTS reports (
    node TEXT NOT NULL, seq INTEGER NOT NULL,
    period_start INTEGER NOT NULL, period_end INTEGER NOT NULL,
    cpu_core_micros INTEGER NOT NULL, storage_byte_seconds INTEGER NOT NULL,
    energy_microjoules INTEGER NOT NULL,
    grid_bytes_sent INTEGER NOT NULL, grid_bytes_received INTEGER NOT NULL,
    signature TEXT NOT NULL, received_at INTEGER NOT NULL,
    outcome TEXT NOT NULL DEFAULT 'pending',
    measured_grid_bytes INTEGER, credit INTEGER, subscriber TEXT, allocated_grid_bytes INTEGER,
    PRIMARY KEY (node, seq));
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, subscriber TEXT NOT NULL, kind TEXT NOT NULL,
    amount INTEGER NOT NULL, reference TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL);
-- Running sums kept by triggers in the same transaction as what they sum, so the exporter
-- reads one row per subscriber instead of aggregating the whole ledger every interval.
CREATE TABLE IF NOT EXISTS balances (subscriber TEXT PRIMARY KEY, amount INTEGER NOT NULL);
-- SQLite turns an integer sum that overflows into a REAL: a balance must stay an exact i64, so
-- a write that would leave anything else aborts (and with it the whole transaction). Rust
-- checks first and refuses with a clear error; these catch whatever bypasses it.
CREATE TRIGGER IF NOT EXISTS ledger_amount_integer BEFORE INSERT ON ledger
WHEN typeof(NEW.amount) != 'integer' BEGIN
    SELECT RAISE(ABORT, 'quid: ledger amount is not an integer');
END;
CREATE TRIGGER IF NOT EXISTS balance_integer_insert BEFORE INSERT ON balances
WHEN typeof(NEW.amount) != 'integer' BEGIN
    SELECT RAISE(ABORT, 'quid: balance out of range');
END;
CREATE TRIGGER IF NOT EXISTS balance_integer_update BEFORE UPDATE ON balances
WHEN typeof(NEW.amount) != 'integer' BEGIN
    SELECT RAISE(ABORT, 'quid: balance out of range');
END;
CREATE TRIGGER IF NOT EXISTS ledger_balance AFTER INSERT ON ledger BEGIN
    INSERT INTO balances VALUES (NEW.subscriber, NEW.amount)
    ON CONFLICT(subscriber) DO UPDATE SET amount = amount + NEW.amount;
END;
-- Settled contributions for the metrics (float gauges, in seconds and joules): the books'
-- exact figures are the reports' integers, which statements sum exactly.
CREATE TABLE IF NOT EXISTS contributions (
    subscriber TEXT PRIMARY KEY, cpu_core_seconds REAL NOT NULL,
    storage_byte_seconds REAL NOT NULL, energy_joules REAL NOT NULL);
CREATE TRIGGER IF NOT EXISTS report_settled_v2 AFTER UPDATE OF outcome ON reports
WHEN OLD.outcome = 'pending' AND NEW.outcome != 'pending' BEGIN
    INSERT INTO contributions VALUES (NEW.subscriber, NEW.cpu_core_micros / 1e6,
        NEW.storage_byte_seconds * 1.0, NEW.energy_microjoules / 1e6)
    ON CONFLICT(subscriber) DO UPDATE SET
        cpu_core_seconds = cpu_core_seconds + NEW.cpu_core_micros / 1e6,
        storage_byte_seconds = storage_byte_seconds + NEW.storage_byte_seconds * 1.0,
        energy_joules = energy_joules + NEW.energy_microjoules / 1e6;
END;
-- What the books metered: `meter_spans` are the stretches of time the kernel counters ran
-- without a break (a new span starts whenever the daemon starts on fresh maps, so downtime is
-- never covered); `metering` holds when each subscriber was in the installed table (`end`
-- NULL while it still is). A report can only be backed for time in both.
CREATE TABLE IF NOT EXISTS meter_spans (start INTEGER PRIMARY KEY, end INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS metering (
    subscriber TEXT NOT NULL, start INTEGER NOT NULL, end INTEGER,
    PRIMARY KEY (subscriber, start));
-- Settlement looks up a subscriber's reports by period.
CREATE INDEX IF NOT EXISTS reports_by_subscriber ON reports (subscriber, period_end);
-- When quid first saw each node in the nodes file: a node cannot report for earlier time.
CREATE TABLE IF NOT EXISTS nodes_seen (node TEXT PRIMARY KEY, first_seen INTEGER NOT NULL);
";

/// The tables a store written by an older quid lacks, and how to fill them from its books:
/// subscribers metered from their first usage record (or now), the meter running from the
/// first usage record to the last committed interval, nodes seen from their first report.
const MIGRATE: &str = "
INSERT OR IGNORE INTO metering (subscriber, start, end)
    SELECT s.id, coalesce((SELECT min(start) FROM usage u WHERE u.subscriber = s.id), ?1),
           CASE WHEN s.removed != 0
                THEN coalesce((SELECT max(end) FROM usage u WHERE u.subscriber = s.id), ?1)
           END
    FROM subscribers s;
INSERT OR IGNORE INTO meter_spans (start, end)
    SELECT min(u.start), max(coalesce((SELECT value FROM meta WHERE key = 'last_interval_end'), 0), max(u.end))
    FROM usage u HAVING count(*) > 0;
INSERT OR IGNORE INTO nodes_seen (node, first_seen)
    SELECT node, min(period_start) FROM reports GROUP BY node;
";

/// What a commit changes besides records and usage (see [`Store::commit_with`]).
#[derive(Debug, Default)]
pub struct Changes<'a> {
    /// Ledger entries to append.
    pub entries: &'a [crate::ledger::chain::NewEntry],
    /// Meta values to set.
    pub meta: &'a [(&'a str, u64)],
    /// The end the current meter span now reaches (the interval's end).
    pub metered_until: Option<u64>,
    /// Subscribers that entered the installed table at `at` (metered from then on).
    pub started: &'a [String],
    /// Subscribers that left the installed table at `at`.
    pub stopped: &'a [String],
    /// When `started` and `stopped` happened.
    pub at: u64,
}

/// Unix seconds as SQLite stores them; times beyond i64 (year 292 billion) are clamped.
pub fn secs(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

/// Moves a store written before version 2 reports to integer figures, in one transaction:
/// the REAL columns `cpu_core_seconds`, `storage_byte_seconds` and `energy_joules` become
/// INTEGER `cpu_core_micros`, `storage_byte_seconds` and `energy_microjoules`, rounded to
/// the base unit (admission had kept them finite, non-negative and within capacity; anything
/// else is clamped into 0..=i64::MAX rather than wrapped), and signatures become lowercase.
const MIGRATE_REPORTS_V2: &str = "
DROP TRIGGER IF EXISTS report_settled;
ALTER TABLE reports RENAME TO reports_v1;
CREATE TABLE reports (
    node TEXT NOT NULL, seq INTEGER NOT NULL,
    period_start INTEGER NOT NULL, period_end INTEGER NOT NULL,
    cpu_core_micros INTEGER NOT NULL, storage_byte_seconds INTEGER NOT NULL,
    energy_microjoules INTEGER NOT NULL,
    grid_bytes_sent INTEGER NOT NULL, grid_bytes_received INTEGER NOT NULL,
    signature TEXT NOT NULL, received_at INTEGER NOT NULL,
    outcome TEXT NOT NULL DEFAULT 'pending',
    measured_grid_bytes INTEGER, credit INTEGER, subscriber TEXT,
    PRIMARY KEY (node, seq));
INSERT INTO reports SELECT node, seq, period_start, period_end,
    CAST(max(0, min(round(coalesce(cpu_core_seconds, 0) * 1e6), 9.2e18)) AS INTEGER),
    CAST(max(0, min(round(coalesce(storage_byte_seconds, 0)), 9.2e18)) AS INTEGER),
    CAST(max(0, min(round(coalesce(energy_joules, 0) * 1e6), 9.2e18)) AS INTEGER),
    -- A grid figure of 2^63 or more was stored wrapped (negative) by older versions: it is
    -- read as the largest claim, so it can never settle as matching an idle meter.
    CASE WHEN grid_bytes_sent < 0 THEN 9223372036854775807 ELSE grid_bytes_sent END,
    CASE WHEN grid_bytes_received < 0 THEN 9223372036854775807 ELSE grid_bytes_received END,
    lower(signature), received_at, outcome,
    measured_grid_bytes, credit, subscriber
  FROM reports_v1;
DROP TABLE reports_v1;
";

/// Brings a store written by an older quid to the current schema (nothing to do for a new
/// or current one).
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let has = |column: &str| -> rusqlite::Result<bool> {
        conn.query_row(
            "SELECT count(*) FROM pragma_table_info('reports') WHERE name = ?1",
            [column],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
    };
    if has("cpu_core_seconds")? && !has("cpu_core_micros")? {
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {MIGRATE_REPORTS_V2} COMMIT;"))
            .inspect_err(|_| {
                let _ = conn.execute_batch("ROLLBACK;");
            })?;
        log::info!("store: report figures migrated to integers in base units (version 2)");
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the store in `state_dir`, checking it is intact.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        let path = state_dir.join(FILE);
        let sql = |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(sql)?;
        let corrupt = |detail: String| StoreError::Corrupt {
            path: path.clone(),
            detail,
        };
        // The integrity check comes first: nothing is written to a file that fails it.
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| corrupt(e.to_string()))?;
        if check != "ok" {
            return Err(corrupt(check));
        }
        conn.execute_batch("PRAGMA journal_mode=WAL;")
            .map_err(sql)?;
        // Reports with float figures (before version 2) become integers in base units first.
        migrate(&conn).map_err(sql)?;
        // A store from before metering was recorded: fill the new tables from its books once.
        let legacy: bool = conn
            .query_row(
                "SELECT count(*) = 0 FROM sqlite_master WHERE name = 'metering'",
                [],
                |r| r.get(0),
            )
            .map_err(sql)?;
        // Reports settled by an older quid lack the grid bytes the meter backed for them.
        let allocated: bool = conn
            .query_row(
                "SELECT count(*) > 0 FROM pragma_table_info('reports')
                 WHERE name = 'allocated_grid_bytes'",
                [],
                |r| r.get(0),
            )
            .map_err(sql)?;
        let has_reports: bool = conn
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'reports'",
                [],
                |r| r.get(0),
            )
            .map_err(sql)?;
        if has_reports && !allocated {
            conn.execute_batch("ALTER TABLE reports ADD COLUMN allocated_grid_bytes INTEGER;")
                .map_err(sql)?;
        }
        conn.execute_batch(SCHEMA)
            .map_err(|e| corrupt(e.to_string()))?;
        if legacy {
            let now = crate::clock::Clock::system().now_i64()?;
            for statement in MIGRATE.split(';').filter(|s| !s.trim().is_empty()) {
                let mut stmt = conn.prepare(statement).map_err(sql)?;
                let n = stmt.parameter_count();
                if n == 0 {
                    stmt.execute([]).map_err(sql)?;
                } else {
                    stmt.execute([now]).map_err(sql)?;
                }
            }
        }
        Store::settings(conn, path)
    }

    /// Another connection to a store this process has already opened (and so checked) with
    /// [`Store::open`]: no second integrity check, which reads the whole file.
    pub fn connect(state_dir: &Path) -> Result<Store, StoreError> {
        let path = state_dir.join(FILE);
        match Connection::open(&path) {
            Ok(conn) => Store::settings(conn, path),
            Err(source) => Err(StoreError::Sql { path, source }),
        }
    }

    /// The per-connection settings: every commit on disk before it is acknowledged, and a
    /// wait rather than an error while another connection writes.
    fn settings(conn: Connection, path: PathBuf) -> Result<Store, StoreError> {
        let sql = |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        conn.execute_batch("PRAGMA synchronous=FULL;")
            .map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql)?;
        Ok(Store { conn, path })
    }

    /// The SQLite connection, for reading with plain SQL (tests, operator tooling).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The error for a failed statement on this store.
    pub(crate) fn sql(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sql {
            path: self.path.clone(),
            source,
        }
    }

    /// A number kept under `key`.
    pub fn meta(&self, key: &str) -> Result<Option<u64>, StoreError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| {
                r.get::<_, i64>(0)
            })
            .optional()
            .map(|v| v.map(i64::cast_unsigned))
            .map_err(|e| self.sql(e))
    }

    /// Keeps a number under `key`.
    pub fn set_meta(&self, key: &str, value: u64) -> Result<(), StoreError> {
        let value = meta_to_sql(value);
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
            .map_err(|e| self.sql(e))
    }

    /// Commits one small write, to learn whether the store takes writes now (not on a full
    /// disk or a read-only file system) before a change that must reach both kernel and store.
    pub fn check_writable(&self, now: u64) -> Result<(), StoreError> {
        self.set_meta("write_check", now)
    }

    /// Every subscriber the store knows, active and removed.
    pub fn records(&self) -> Result<Vec<Record>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, name, plan, prefixes, slot, removed, last, total FROM subscribers
                 ORDER BY id",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Record {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    plan: r.get(2)?,
                    prefixes: r.get(3)?,
                    // A slot outside u32 is no slot: the subscriber gets a new one.
                    slot: r
                        .get::<_, Option<i64>>(4)?
                        .and_then(|s| u32::try_from(s).ok()),
                    status: if r.get::<_, i64>(5)? != 0 {
                        Status::Removed
                    } else {
                        Status::Active
                    },
                    last: decode(&r.get::<_, Vec<u8>>(6)?),
                    total: decode(&r.get::<_, Vec<u8>>(7)?),
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }

    /// Writes changed records and the interval's usage rows in one transaction.
    pub fn commit(
        &mut self,
        records: &[&Record],
        usage: &[(&str, Usage)],
    ) -> Result<(), StoreError> {
        self.commit_with(records, usage, &Changes::default())
    }

    /// Like [`Store::commit`], with the ledger entries, meta values and metering changes of
    /// `changes` in the same transaction.
    pub fn commit_with(
        &mut self,
        records: &[&Record],
        usage: &[(&str, Usage)],
        changes: &Changes<'_>,
    ) -> Result<(), StoreError> {
        let Changes {
            entries,
            meta,
            metered_until,
            started,
            stopped,
            at,
        } = *changes;
        let path = self.path.clone();
        let sql = |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        {
            let mut put = tx
                .prepare_cached(
                    "INSERT INTO subscribers (id, name, plan, prefixes, slot, removed, last, total)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT(id) DO UPDATE SET name = excluded.name, plan = excluded.plan,
                       prefixes = excluded.prefixes, slot = excluded.slot,
                       removed = excluded.removed, last = excluded.last, total = excluded.total",
                )
                .map_err(sql)?;
            for r in records {
                put.execute(params![
                    r.id,
                    r.name,
                    r.plan,
                    r.prefixes,
                    r.slot.map(i64::from),
                    i64::from(r.status == Status::Removed),
                    encode(&r.last),
                    encode(&r.total),
                ])
                .map_err(sql)?;
            }
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
                )
                .map_err(sql)?;
            for (id, u) in usage {
                let c = flat(&u.counters).map_err(sql)?;
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
                ])
                .map_err(sql)?;
            }
        }
        crate::ledger::chain::append(&tx, entries).map_err(|e| e.into_store(&path))?;
        for (key, value) in meta {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value.cast_signed()],
            )
            .map_err(sql)?;
        }
        if let Some(until) = metered_until {
            // The current span is the latest one; it only ever grows forward.
            tx.execute(
                "UPDATE meter_spans SET end = max(end, ?1)
                 WHERE start = (SELECT max(start) FROM meter_spans)",
                [secs(until)],
            )
            .map_err(sql)?;
        }
        for id in started {
            tx.execute(
                "INSERT INTO metering (subscriber, start, end) VALUES (?1, ?2, NULL)
                 ON CONFLICT(subscriber, start) DO UPDATE SET end = NULL",
                params![id, secs(at)],
            )
            .map_err(sql)?;
        }
        for id in stopped {
            tx.execute(
                "UPDATE metering SET end = ?2 WHERE subscriber = ?1 AND end IS NULL",
                params![id, secs(at)],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)
    }

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
        self.conn
            .query_row(
                "SELECT min(start) FROM metering WHERE subscriber = ?1",
                [subscriber],
                |r| r.get(0),
            )
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
        self.conn
            .query_row(
                "SELECT first_seen FROM nodes_seen WHERE node = ?1",
                [node],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

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
                let mut v = [0u64; 8];
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
}

impl Store {
    /// Records an admitted report; it is durable when this returns. `subscriber` is the
    /// node's subscriber now: the meter it is matched against. Every integer must fit
    /// SQLite's i64 (admission refuses larger ones; this refuses rather than wraps).
    pub fn insert_report(
        &mut self,
        r: &crate::settlement::report::Report,
        p: crate::settlement::report::Period,
        received_at: i64,
        subscriber: &str,
    ) -> Result<(), StoreError> {
        let [seq, cpu, storage, energy, sent, received] =
            r.figures().map(|(field, v)| to_sql(field, v));
        let signature = r
            .signature_bytes()
            .map_err(|e| self.sql(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        self.conn
            .execute(
                "INSERT INTO reports (node, seq, period_start, period_end, cpu_core_micros,
                   storage_byte_seconds, energy_microjoules, grid_bytes_sent, grid_bytes_received,
                   signature, received_at, subscriber)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    r.node,
                    seq.map_err(|e| self.sql(e))?,
                    p.start,
                    p.end,
                    cpu.map_err(|e| self.sql(e))?,
                    storage.map_err(|e| self.sql(e))?,
                    energy.map_err(|e| self.sql(e))?,
                    sent.map_err(|e| self.sql(e))?,
                    received.map_err(|e| self.sql(e))?,
                    // Canonical lowercase: one report, one text, whatever case the node sent.
                    hex::encode(signature),
                    received_at,
                    subscriber
                ],
            )
            .map(|_| ())
            .map_err(|e| self.sql(e))
    }

    /// What every node had accepted, to resume admission after a restart.
    pub fn report_histories(
        &self,
    ) -> Result<std::collections::HashMap<String, crate::settlement::admission::History>, StoreError>
    {
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
        let mut out: std::collections::HashMap<String, crate::settlement::admission::History> =
            Default::default();
        for row in rows {
            let (node, seq, start, end, sig) = row.map_err(|e| self.sql(e))?;
            out.entry(node).or_default().record(
                seq,
                signature_bytes(&sig),
                crate::settlement::report::Period { start, end },
            );
        }
        Ok(out)
    }

    /// The signature bytes of report `seq` of `node`, if it is recorded.
    pub fn report_signature(&self, node: &str, seq: u64) -> Result<Option<[u8; 64]>, StoreError> {
        let Ok(seq) = i64::try_from(seq) else {
            // Never admitted, so never recorded.
            return Ok(None);
        };
        self.conn
            .query_row(
                "SELECT signature FROM reports WHERE node = ?1 AND seq = ?2",
                params![node, seq],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map(|s| s.and_then(|s| signature_bytes(&s)))
            .map_err(|e| self.sql(e))
    }

    /// Every subscriber's balance (micro-credits) as the triggers keep it, and the subscribers
    /// whose row is not an exact integer (skipped, so one bad row never hides the others).
    pub fn running_balances(&self) -> Result<(HashMap<String, i64>, Vec<String>), StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT subscriber, amount FROM balances")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, rusqlite::types::Value>(1)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        let (mut good, mut bad) = (HashMap::new(), Vec::new());
        for row in rows {
            match row.map_err(|e| self.sql(e))? {
                (id, rusqlite::types::Value::Integer(v)) => {
                    good.insert(id, v);
                }
                (id, _) => bad.push(id),
            }
        }
        Ok((good, bad))
    }

    /// Whether the books know subscriber `id` (active or removed).
    pub fn has_subscriber(&self, id: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM subscribers WHERE id = ?1",
                [id],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|e| self.sql(e))
    }

    /// Subscriber `id`'s balance (micro-credits), if it has ledger entries; an error if its
    /// row is not an exact integer.
    pub fn balance(&self, id: &str) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT amount FROM balances WHERE subscriber = ?1",
                [id],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Every subscriber's settled contributions: cpu core-seconds, storage byte-seconds, joules.
    pub fn contributions(&self) -> Result<HashMap<String, [f64; 3]>, StoreError> {
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

/// A report figure as SQLite's i64, or an error naming it (never a wrapped value).
pub(crate) fn to_sql(field: &'static str, value: u64) -> rusqlite::Result<i64> {
    i64::try_from(value).map_err(|_| {
        rusqlite::Error::ToSqlConversionFailure(
            format!("{field} of {value} does not fit the store's i64").into(),
        )
    })
}

/// Column `i` of a row as the u64 it was stored from, or an error naming the column (a
/// negative value was never written by this version).
pub(crate) fn from_sql(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<u64> {
    let v: i64 = row.get(i)?;
    u64::try_from(v).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Integer, Box::new(e))
    })
}

/// A meta value as the i64 with the same 64 bits. Meta values are opaque u64s (a random
/// instance id, times, a month): never compared or summed in SQL, only read back whole, so
/// the bit pattern is the exact way to hold all of them (and the one older versions wrote).
fn meta_to_sql(value: u64) -> i64 {
    i64::from_be_bytes(value.to_be_bytes())
}

/// A stored signature's bytes (hex of either case, as older versions kept what nodes sent).
fn signature_bytes(text: &str) -> Option<[u8; 64]> {
    hex::decode(text).ok().and_then(|b| b.try_into().ok())
}

/// The counters as eight numbers: (packets, bytes) per (direction, class) pair, in
/// `pair_index` order; a counter past i64::MAX is an error, never a wrapped value.
pub fn flat(c: &SubscriberCounters) -> rusqlite::Result<[i64; 8]> {
    let mut out = [0i64; 8];
    for (i, p) in c.pairs.iter().enumerate() {
        // Bit-exact: a u64 beyond i64::MAX is stored negative and read back by `unflat`.
        out[2 * i] = p.packets.cast_signed();
        out[2 * i + 1] = p.bytes.cast_signed();
    }
    Ok(out)
}

fn unflat(v: &[u64; 8]) -> SubscriberCounters {
    let mut c = SubscriberCounters::default();
    for i in 0..DIR_CLASS_PAIRS {
        c.pairs[i] = Counter {
            packets: v[2 * i],
            bytes: v[2 * i + 1],
        };
    }
    c
}

fn encode(c: &SubscriberCounters) -> Vec<u8> {
    c.pairs
        .iter()
        .flat_map(|p| [p.packets, p.bytes])
        .flat_map(u64::to_le_bytes)
        .collect()
}

fn decode(b: &[u8]) -> SubscriberCounters {
    let mut v = [0u64; 8];
    for (i, chunk) in b.chunks_exact(8).take(8).enumerate() {
        v[i] = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
    }
    unflat(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(seed: u64) -> SubscriberCounters {
        unflat(&std::array::from_fn(|i| seed * 10 + i as u64))
    }

    #[test]
    fn records_and_usage_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Record {
            id: "alice".into(),
            name: "Alice".into(),
            plan: "home".into(),
            prefixes: "100.64.0.1/32".into(),
            slot: Some(3),
            status: Status::Active,
            last: counters(1),
            total: counters(2),
        };
        {
            let mut s = Store::open(dir.path()).unwrap();
            s.set_meta("instance", 42).unwrap();
            let u = Usage {
                start: 100,
                end: 110,
                counters: counters(3),
            };
            s.commit(&[&rec], &[("alice", u)]).unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.meta("instance").unwrap(), Some(42));
        assert_eq!(s.records().unwrap(), [rec]);
        let u = s.usage("alice", 100, 110).unwrap();
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].counters, counters(3));
        assert!(s.usage("alice", 101, 200).unwrap().is_empty());
    }

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

    #[test]
    fn a_store_from_before_version_2_reports_opens_with_exact_integer_figures() {
        let dir = tempfile::tempdir().unwrap();
        Connection::open(dir.path().join(FILE))
            .unwrap()
            .execute_batch(V1_REPORTS)
            .unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let rows: Vec<(i64, i64, i64, i64, i64, String)> = s
            .connection()
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
        s.connection()
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

    #[test]
    fn a_damaged_store_is_refused_not_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), vec![0x5a; 8192]).unwrap();
        let err = Store::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("is damaged"), "{err}");
        assert_eq!(
            std::fs::read(dir.path().join(FILE)).unwrap(),
            vec![0x5a; 8192]
        );
    }
}
