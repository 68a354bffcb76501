//! The durable store on local disk: subscribers with their counter slots and running totals,
//! usage per subscriber and hour (the current hour in blocks, rolled up into days), the grid journal, what was metered, node reports and their settlement, the
//! hash-chained ledger with each subscriber's balance, and the figures statements need. All of
//! quid's SQL is here, one file per group of tables; the domain modules it serves (ledger,
//! settlement) stay pure and never reach the store.
//!
//! SQLite (rusqlite, bundled): ACID commits that survive a crash or power loss, WAL mode so
//! `quid usage` and an operator's `sqlite3` read while the daemon writes, and a file format
//! every ISP tool can open. One transaction per interval keeps the deltas and the counter
//! values they were computed from consistent: after a crash the daemon resumes from the last
//! committed values, and the pinned kernel counters still hold the rest.

mod accounting_out;
mod audits;
mod bindings;
mod checkpoints;
mod commit;
mod compact;
mod export;
mod grid_journal;
mod hour_blocks;
mod leb128;
mod ledger;
mod metering;
mod month_digests;
mod outbox;
mod pending;
mod period_books;
mod period_books_tests;
mod plan_history;
mod report_batch;
mod reports;
mod rollup;
mod schema;
mod settlement;
pub mod shared;
mod statements;
mod subscribers;
mod tier_counts;
mod tiers;
mod usage;
mod values;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

pub use accounting_out::AccountingSession;
pub use bindings::StoredSession;
pub use checkpoints::StreamVerified;
pub use commit::Changes;
pub use export::{ExportError, ExportRow, Resolution};
pub use ledger::LedgerSnapshot;
pub use month_digests::{DigestCursor, DigestWrites, MonthDigest, PlanHour, UNKNOWN_PLAN};
pub use outbox::{OutboxDepth, SealedBatch, SealedRow};
pub use pending::{RATE_KEYS, usage_rates};
pub use period_books::{Figures, PeriodEntry, PeriodReader, SettledReport};
pub use plan_history::{PlanHistory, PlanSpan, SINCE_ALWAYS};
pub use report_batch::ReportBatch;
pub use reports::{ReportRow, Sourced, StoredReport};
pub use subscribers::{Base, Record, Status};
pub use tiers::{
    COUNTERS, Retention, RetentionError, RollupProgress, StoreStats, Tier, TierStats, TierSum,
};
pub use usage::{IntervalRow, Usage};

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

/// The store.
pub struct Store {
    /// Private to the store: every statement on it is in this module's files.
    conn: Connection,
    path: PathBuf,
    /// Where the roll-up continues next call.
    rollup: rollup::RollupCursor,
    /// Interval commits seal their usage into the outbox for the shared store.
    outbox: bool,
}

/// Unix seconds as SQLite stores them; times beyond i64 (year 292 billion) are clamped.
pub fn secs(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
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
        // A new file gets incremental vacuum before its first table (only VACUUM can change
        // it afterwards, which rewrites the file). Only a new one: setting it on an existing
        // file is a write, and opening must work on a full disk.
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .map_err(sql)?;
        if pages == 0 {
            conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")
                .map_err(sql)?;
        }
        conn.execute_batch("PRAGMA journal_mode=WAL;")
            .map_err(sql)?;
        let now = || crate::clock::Clock::system().now_i64();
        schema::bring_up_to_date(&conn, now).map_err(|e| match e {
            schema::SchemaError::Sql(e) => sql(e),
            schema::SchemaError::Corrupt(e) => corrupt(e.to_string()),
            schema::SchemaError::Clock(e) => StoreError::Clock(e),
        })?;
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
        // The WAL is truncated back to 64 MiB after a checkpoint (a long roll-up or a burst of
        // commits could otherwise leave it as large as the biggest it ever grew).
        // A page cache of up to 64 MiB (SQLite's default is 2 MiB): an interval commit rewrites
        // the current hour's blocks (about 20 MB at a million active subscribers) and folds a
        // few closed ones into the newest pages of `usage_hour`; with them cached it is a pass
        // over memory, not over the disk.
        // Only pages read are held, so a small store's memory stays small.
        conn.execute_batch(
            "PRAGMA synchronous=FULL; PRAGMA journal_size_limit=67108864; \
             PRAGMA cache_size=-65536;",
        )
        .map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql)?;
        Ok(Store {
            conn,
            path,
            rollup: rollup::RollupCursor::default(),
            outbox: false,
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The error for a failed statement on this store.
    fn sql(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sql {
            path: self.path.clone(),
            source,
        }
    }

    /// A transaction opened from a `&self` method, so reads (and writes kept to this module)
    /// can run beside the daemon's other work on the one connection. Unchecked because
    /// rusqlite's checked `transaction()` needs `&mut`; it is sound here because no other
    /// transaction is open on this connection outside a method of the store.
    fn begin(&self, behavior: TransactionBehavior) -> Result<Transaction<'_>, StoreError> {
        Transaction::new_unchecked(&self.conn, behavior).map_err(|e| self.sql(e))
    }

    /// A read transaction for a figure made of several queries, so that they all see one
    /// moment of the books (a fold or a roll-up committed by the daemon in between would
    /// otherwise count a row twice or not at all); `None` inside a transaction already open.
    fn snapshot(&self) -> Result<Option<Transaction<'_>>, StoreError> {
        if self.conn.is_autocommit() {
            self.begin(TransactionBehavior::Deferred).map(Some)
        } else {
            Ok(None)
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
        set_meta_on(&self.conn, key, value).map_err(|e| self.sql(e))
    }

    /// Commits one small write, to learn whether the store takes writes now (not on a full
    /// disk or a read-only file system) before a change that must reach both kernel and store.
    pub fn check_writable(&self, now: u64) -> Result<(), StoreError> {
        self.set_meta("write_check", now)
    }

    /// Runs `sql` on the store's connection as it is, bypassing every rule of quid's: only
    /// for unit tests that damage or restrict a store on purpose.
    #[cfg(test)]
    pub(crate) fn execute_unchecked_for_tests(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.execute_batch(sql)
    }
}

/// Keeps `value` under `key` (inside a transaction, or alone).
fn set_meta_on(conn: &Connection, key: &str, value: u64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, meta_to_sql(value)],
    )
    .map(|_| ())
}

/// A report figure as SQLite's i64, or an error naming it (never a wrapped value).
fn to_sql(field: &'static str, value: u64) -> rusqlite::Result<i64> {
    i64::try_from(value).map_err(|_| {
        rusqlite::Error::ToSqlConversionFailure(
            format!("{field} of {value} does not fit the store's i64").into(),
        )
    })
}

/// Column `i` of a row as the u64 it was stored from, or an error naming the column (a
/// negative value was never written by this version).
fn from_sql(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<u64> {
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn meta_values_keep_all_64_bits() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        // A new store has incremental vacuum from the start.
        let mode: i64 = s
            .conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, 2);
        s.set_meta("instance", u64::MAX).unwrap();
        assert_eq!(s.meta("instance").unwrap(), Some(u64::MAX));
        assert_eq!(s.meta("absent").unwrap(), None);
    }
}
