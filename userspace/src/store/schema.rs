//! The schema: every table, index and trigger, and the migrations that bring a store written
//! by an older quid up to date (each in one transaction or idempotent, so an interrupted
//! upgrade is finished by the next open).

use rusqlite::{Connection, OptionalExtension};

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub(super) enum SchemaError {
    /// A statement failed (the file may be fine: a full disk, a lock).
    #[error(transparent)]
    Sql(rusqlite::Error),
    /// The schema itself could not be created over what the file holds.
    #[error(transparent)]
    Corrupt(rusqlite::Error),
    #[error(transparent)]
    Clock(#[from] crate::clock::ClockError),
}

impl From<rusqlite::Error> for SchemaError {
    fn from(e: rusqlite::Error) -> Self {
        SchemaError::Sql(e)
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
-- `key` numbers the subscriber's usage rows; `last` and `total` are as at the start of hour
-- `based` (see `subscribers::Base`).
CREATE TABLE IF NOT EXISTS subscribers (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, plan TEXT NOT NULL, prefixes TEXT NOT NULL,
    slot INTEGER, removed INTEGER NOT NULL, last BLOB NOT NULL, total BLOB NOT NULL,
    key INTEGER, based INTEGER NOT NULL DEFAULT 0);
-- Report figures are integers in base units, exactly as signed (version 2 and 3 reports);
-- `energy_source` is what a version 3 report names (NULL: a version 2 report stated none).
CREATE TABLE IF NOT EXISTS reports (
    node TEXT NOT NULL, seq INTEGER NOT NULL,
    period_start INTEGER NOT NULL, period_end INTEGER NOT NULL,
    cpu_core_micros INTEGER NOT NULL, storage_byte_seconds INTEGER NOT NULL,
    energy_microjoules INTEGER NOT NULL,
    grid_bytes_sent INTEGER NOT NULL, grid_bytes_received INTEGER NOT NULL,
    signature TEXT NOT NULL, received_at INTEGER NOT NULL,
    outcome TEXT NOT NULL DEFAULT 'pending',
    measured_grid_bytes INTEGER, credit INTEGER, subscriber TEXT, allocated_grid_bytes INTEGER,
    energy_source TEXT, storage_credited_byte_seconds INTEGER, storage_reduction TEXT,
    PRIMARY KEY (node, seq));
-- `hash` is the entry's 32-byte SHA-256 (hex in statements, checkpoints and the CLI); the link to
-- the previous entry is that entry's hash, read back by `seq` (not stored twice).
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, subscriber TEXT NOT NULL, kind TEXT NOT NULL,
    amount INTEGER NOT NULL, reference TEXT NOT NULL, hash BLOB NOT NULL);
-- Each subscriber's balance, kept by a trigger in the same transaction as every ledger entry:
-- THE balance (CLI, metrics, operator API read this row; one row per subscriber instead of the
-- whole ledger every interval). `quid ledger verify` checks each row against the entries.
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
-- The roll-up keeps the grid journal of pending reports: their earliest start, every interval.
CREATE INDEX IF NOT EXISTS reports_pending ON reports (period_start) WHERE outcome = 'pending';
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
fn migrate_reports_v2(conn: &Connection) -> rusqlite::Result<()> {
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

/// Fills the `balances` table of a store written before quid kept one from its entries (an
/// edited ledger whose sums leave i64 makes this fail: SQLite's `sum` refuses to overflow).
const FILL_BALANCES: &str = "
INSERT INTO balances (subscriber, amount)
    SELECT subscriber, sum(amount) FROM ledger GROUP BY subscriber;
";

/// Runs `sql` and records schema `version` under meta `key`, in one transaction, unless the
/// store is at `version` already; returns whether it ran (each versioned migration's step).
pub(super) fn versioned_step(
    conn: &Connection,
    key: &str,
    version: i64,
    sql: &str,
) -> rusqlite::Result<bool> {
    let current: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?;
    if current.is_some_and(|v| v >= version) {
        return Ok(false);
    }
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {sql}
         INSERT INTO meta (key, value) VALUES ('{key}', {version})
         ON CONFLICT(key) DO UPDATE SET value = excluded.value; COMMIT;"
    ))
    .inspect_err(|_| {
        let _ = conn.execute_batch("ROLLBACK;");
    })?;
    Ok(true)
}

/// Whether the store has a table (or trigger, index) called `name`.
pub(super) fn has(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE name = ?1",
        [name],
        |r| r.get(0),
    )
}

/// Adds columns to the `reports` table of a store an older quid wrote: runs `ddl` when the
/// table exists without `column` (a new store gets every column from the schema).
fn add_to_reports(conn: &Connection, column: &str, ddl: &str) -> rusqlite::Result<()> {
    let present: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('reports') WHERE name = ?1",
        [column],
        |r| r.get(0),
    )?;
    if has(conn, "reports")? && !present {
        conn.execute_batch(ddl)?;
    }
    Ok(())
}

/// Brings the store on `conn` to the current schema (nothing to do for a new or current one);
/// `now` dates what a migration must assume began now.
pub(super) fn bring_up_to_date(
    conn: &Connection,
    now: impl Fn() -> Result<i64, crate::clock::ClockError>,
) -> Result<(), SchemaError> {
    // Reports with float figures (before version 2) become integers in base units first.
    migrate_reports_v2(conn)?;
    // A store from before metering was recorded: fill the new tables from its books once.
    let legacy = !has(conn, "metering")? && has(conn, "usage")?;
    // Reports settled by an older quid lack the grid bytes the meter backed for them.
    add_to_reports(
        conn,
        "allocated_grid_bytes",
        "ALTER TABLE reports ADD COLUMN allocated_grid_bytes INTEGER;",
    )?;
    // Reports stored before version 3 have no energy source: NULL, as they stated none.
    add_to_reports(
        conn,
        "energy_source",
        "ALTER TABLE reports ADD COLUMN energy_source TEXT;",
    )?;
    // Reports settled before storage was audited: NULL, credited as claimed.
    add_to_reports(
        conn,
        "storage_credited_byte_seconds",
        "ALTER TABLE reports ADD COLUMN storage_credited_byte_seconds INTEGER;
         ALTER TABLE reports ADD COLUMN storage_reduction TEXT;",
    )?;
    conn.execute_batch(SCHEMA).map_err(SchemaError::Corrupt)?;
    conn.execute_batch(super::month_digests::SCHEMA)
        .map_err(SchemaError::Corrupt)?;
    conn.execute_batch(super::hour_blocks::SCHEMA)
        .map_err(SchemaError::Corrupt)?;
    conn.execute_batch(super::outbox::SCHEMA)
        .map_err(SchemaError::Corrupt)?;
    conn.execute_batch(super::audits::SCHEMA)
        .map_err(SchemaError::Corrupt)?;
    conn.execute_batch(super::bindings::SCHEMA)
        .map_err(SchemaError::Corrupt)?;
    conn.execute_batch(super::accounting_out::SCHEMA)
        .map_err(SchemaError::Corrupt)?;
    // Usage debits once per settlement period: the pending usage table (version 1).
    super::pending::migrate_settlement_periods(conn)?;
    // The signed checkpoints of the ledger (an older store's chain is sealed, not rewritten).
    super::checkpoints::migrate(conn)?;
    // A store from before balances were kept (entries, no balance rows; every entry makes a
    // row since): fill them from its ledger, once.
    let unbalanced: bool = conn.query_row(
        "SELECT NOT EXISTS (SELECT 1 FROM balances) AND EXISTS (SELECT 1 FROM ledger)",
        [],
        |r| r.get(0),
    )?;
    if unbalanced {
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {FILL_BALANCES} COMMIT;"))
            .inspect_err(|_| {
                let _ = conn.execute_batch("ROLLBACK;");
            })?;
        log::info!("store: balances filled from the ledger");
    }
    if legacy {
        let now = now()?;
        for statement in MIGRATE.split(';').filter(|s| !s.trim().is_empty()) {
            let mut stmt = conn.prepare(statement)?;
            if stmt.parameter_count() == 0 {
                stmt.execute([])?;
            } else {
                stmt.execute([now])?;
            }
        }
    }
    // The compact books: integer keys, hourly rows written in place, the grid journal.
    super::compact::migrate(conn, now()?)?;
    super::compact::fill_keys(conn)?;
    // Plans with the time they came into force (version 1), after the keys it is kept by.
    super::plan_history::migrate(conn)?;
    super::tiers::incremental_vacuum(conn)?;
    super::tier_counts::init(conn)?;
    Ok(())
}
