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
CREATE TABLE IF NOT EXISTS reports (
    node TEXT NOT NULL, seq INTEGER NOT NULL,
    period_start INTEGER NOT NULL, period_end INTEGER NOT NULL,
    cpu_core_seconds REAL NOT NULL, storage_byte_seconds REAL NOT NULL, energy_joules REAL NOT NULL,
    grid_bytes_sent INTEGER NOT NULL, grid_bytes_received INTEGER NOT NULL,
    signature TEXT NOT NULL, received_at INTEGER NOT NULL,
    outcome TEXT NOT NULL DEFAULT 'pending',
    measured_grid_bytes INTEGER, credit INTEGER, subscriber TEXT,
    PRIMARY KEY (node, seq));
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, subscriber TEXT NOT NULL, kind TEXT NOT NULL,
    amount INTEGER NOT NULL, reference TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL);
-- Running sums kept by triggers in the same transaction as what they sum, so the exporter
-- reads one row per subscriber instead of aggregating the whole ledger every interval.
CREATE TABLE IF NOT EXISTS balances (subscriber TEXT PRIMARY KEY, amount INTEGER NOT NULL);
CREATE TRIGGER IF NOT EXISTS ledger_balance AFTER INSERT ON ledger BEGIN
    INSERT INTO balances VALUES (NEW.subscriber, NEW.amount)
    ON CONFLICT(subscriber) DO UPDATE SET amount = amount + NEW.amount;
END;
CREATE TABLE IF NOT EXISTS contributions (
    subscriber TEXT PRIMARY KEY, cpu_core_seconds REAL NOT NULL,
    storage_byte_seconds REAL NOT NULL, energy_joules REAL NOT NULL);
CREATE TRIGGER IF NOT EXISTS report_settled AFTER UPDATE OF outcome ON reports
WHEN OLD.outcome = 'pending' AND NEW.outcome != 'pending' BEGIN
    INSERT INTO contributions VALUES (NEW.subscriber, NEW.cpu_core_seconds,
        NEW.storage_byte_seconds, NEW.energy_joules)
    ON CONFLICT(subscriber) DO UPDATE SET
        cpu_core_seconds = cpu_core_seconds + NEW.cpu_core_seconds,
        storage_byte_seconds = storage_byte_seconds + NEW.storage_byte_seconds,
        energy_joules = energy_joules + NEW.energy_joules;
END;
";

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
        conn.execute_batch(SCHEMA)
            .map_err(|e| corrupt(e.to_string()))?;
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
            .map(|v| v.map(|v| v as u64))
            .map_err(|e| self.sql(e))
    }

    /// Keeps a number under `key`.
    pub fn set_meta(&self, key: &str, value: u64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value as i64],
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
                    slot: r.get::<_, Option<i64>>(4)?.map(|s| s as u32),
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
        self.commit_with(records, usage, &[], &[])
    }

    /// Like [`Store::commit`], with ledger entries appended and meta values set in the same
    /// transaction.
    pub fn commit_with(
        &mut self,
        records: &[&Record],
        usage: &[(&str, Usage)],
        entries: &[crate::ledger::chain::NewEntry],
        meta: &[(&str, u64)],
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
                    (r.status == Status::Removed) as i64,
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
                let c = flat(&u.counters);
                add.execute(params![
                    id,
                    u.start as i64,
                    u.end as i64,
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
        crate::ledger::chain::append(&tx, entries).map_err(sql)?;
        for (key, value) in meta {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, *value as i64],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)
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
        let rows = stmt
            .query_map(params![id, from as i64, to as i64], |r| {
                let mut v = [0u64; 8];
                for (i, x) in v.iter_mut().enumerate() {
                    *x = r.get::<_, i64>(i + 2)? as u64;
                }
                Ok(Usage {
                    start: r.get::<_, i64>(0)? as u64,
                    end: r.get::<_, i64>(1)? as u64,
                    counters: unflat(&v),
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }
}

impl Store {
    /// Records an admitted report; it is durable when this returns.
    pub fn insert_report(
        &mut self,
        r: &crate::settlement::report::Report,
        p: crate::settlement::report::Period,
        received_at: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO reports (node, seq, period_start, period_end, cpu_core_seconds,
                   storage_byte_seconds, energy_joules, grid_bytes_sent, grid_bytes_received,
                   signature, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    r.node,
                    r.seq as i64,
                    p.start,
                    p.end,
                    r.cpu_core_seconds,
                    r.storage_byte_seconds,
                    r.energy_joules,
                    r.grid_bytes_sent as i64,
                    r.grid_bytes_received as i64,
                    r.signature,
                    received_at
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
                    r.get::<_, i64>(1)? as u64,
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
                sig,
                crate::settlement::report::Period { start, end },
            );
        }
        Ok(out)
    }

    /// The signature of report `seq` of `node`, if it is recorded.
    pub fn report_signature(&self, node: &str, seq: u64) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT signature FROM reports WHERE node = ?1 AND seq = ?2",
                params![node, seq as i64],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Every subscriber's balance (micro-credits) as the triggers keep it.
    pub fn running_balances(&self) -> Result<HashMap<String, i64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT subscriber, amount FROM balances")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
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

    /// Subscriber `id`'s balance (micro-credits), if it has ledger entries.
    pub fn balance(&self, id: &str) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT amount FROM balances WHERE subscriber = ?1",
                [id],
                |r| r.get(0),
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
            .query_row("SELECT count(*) FROM reports", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.sql(e))
    }
}

/// The counters as eight numbers: (packets, bytes) per (direction, class) pair, in
/// `pair_index` order.
pub fn flat(c: &SubscriberCounters) -> [i64; 8] {
    let mut out = [0i64; 8];
    for (i, p) in c.pairs.iter().enumerate() {
        out[2 * i] = p.packets as i64;
        out[2 * i + 1] = p.bytes as i64;
    }
    out
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
