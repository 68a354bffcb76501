//! Unsettled usage (see `ledger::period`): per subscriber, the cumulative counters the ledger
//! has debited so far and the debit pending for the rest, written in the interval's commit.
//! The pending debit is kept as a figure (priced by the daemon's tariff when committed) so the
//! CLI, metrics and operator API show it without knowing the tariff.

use std::collections::HashMap;

use quid_common::SubscriberCounters;
use rusqlite::{Connection, Transaction, params};

use super::{Store, StoreError, subscribers};

/// Meta key: the version of the settlement-period schema this store has.
const VERSION_KEY: &str = "schema_settlement_periods";

/// Brings a store to settlement periods, idempotently: creates the pending table and, for a
/// store written by a quid that debited every interval (whose subscribers' running totals are
/// therefore fully debited already), records each total as settled, so nothing already in
/// the ledger is debited again. A new store has no subscribers yet: nothing to fill.
pub(super) fn migrate_settlement_periods(conn: &Connection) -> rusqlite::Result<()> {
    let version: Option<i64> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            [VERSION_KEY],
            |r| r.get(0),
        )
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    if version >= Some(1) {
        return Ok(());
    }
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         CREATE TABLE IF NOT EXISTS usage_pending (
             subscriber TEXT PRIMARY KEY, settled BLOB NOT NULL, debit INTEGER NOT NULL);
         INSERT OR IGNORE INTO usage_pending (subscriber, settled, debit)
             SELECT id, total, 0 FROM subscribers;
         INSERT INTO meta (key, value) VALUES ('{VERSION_KEY}', 1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value;
         COMMIT;"
    ))
    .inspect_err(|_| {
        let _ = conn.execute_batch("ROLLBACK;");
    })?;
    log::info!("store: usage debits settle once per period (pending usage kept per subscriber)");
    Ok(())
}

/// Writes subscribers' unsettled usage inside an open transaction.
pub(super) fn put(
    tx: &Transaction<'_>,
    pending: &[(&str, SubscriberCounters, i64)],
) -> rusqlite::Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let mut put = tx.prepare_cached(
        "INSERT INTO usage_pending (subscriber, settled, debit) VALUES (?1, ?2, ?3)
         ON CONFLICT(subscriber) DO UPDATE SET settled = excluded.settled, debit = excluded.debit",
    )?;
    for (id, settled, debit) in pending {
        put.execute(params![id, subscribers::encode(settled), debit])?;
    }
    Ok(())
}

impl Store {
    /// Each subscriber's cumulative counters the ledger has debited (absent: none yet).
    pub fn settled_usage(&self) -> Result<HashMap<String, SubscriberCounters>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT subscriber, settled FROM usage_pending")
            .map_err(|e| self.sql(e))?;
        stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                subscribers::decode(&r.get::<_, Vec<u8>>(1)?),
            ))
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.sql(e))
    }

    /// Each subscriber's pending usage debit (micro-credits, zero or negative): the traffic
    /// not yet settled into the ledger, priced as the next settlement will debit it.
    pub fn pending_debits(&self) -> Result<HashMap<String, i64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT subscriber, debit FROM usage_pending WHERE debit != 0")
            .map_err(|e| self.sql(e))?;
        stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .and_then(Iterator::collect)
            .map_err(|e| self.sql(e))
    }

    /// `subscriber`'s pending usage debit (zero when nothing is pending).
    pub fn pending_debit(&self, subscriber: &str) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT coalesce((SELECT debit FROM usage_pending WHERE subscriber = ?1), 0)",
                [subscriber],
                |r| r.get(0),
            )
            .map_err(|e| self.sql(e))
    }
}
