//! Unsettled usage (see `ledger::period`): per subscriber, the cumulative counters the ledger
//! has debited so far, written when a period settles. The pending debit is the tariff's price
//! of the rest (the running total less what was settled), computed when asked with the usage
//! rates the daemon keeps in `meta`, so the CLI and the operator API show it without the
//! daemon's config and the interval commit writes nothing for it.

use std::collections::HashMap;

use quid_common::SubscriberCounters;
use rusqlite::{Connection, Transaction, params};

use super::{Store, StoreError, subscribers};
use crate::ledger::tariff::Tariff;

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

/// Meta keys of the tariff's usage rates, in micro-credits per GB: download and upload of
/// Internet and grid traffic.
pub const RATE_KEYS: [&str; 4] = [
    "tariff_download_internet_gb",
    "tariff_upload_internet_gb",
    "tariff_download_grid_gb",
    "tariff_upload_grid_gb",
];

/// The usage rates of `t`, in [`RATE_KEYS`] order.
pub fn usage_rates(t: &Tariff) -> [u64; 4] {
    [
        t.download_internet_gb,
        t.upload_internet_gb,
        t.download_grid_gb,
        t.upload_grid_gb,
    ]
}

/// Writes subscribers' settled usage inside an open transaction.
pub(super) fn put(
    tx: &Transaction<'_>,
    settled: &[(&str, SubscriberCounters)],
) -> rusqlite::Result<()> {
    if settled.is_empty() {
        return Ok(());
    }
    let mut put = tx.prepare_cached(
        "INSERT INTO usage_pending (subscriber, settled, debit) VALUES (?1, ?2, 0)
         ON CONFLICT(subscriber) DO UPDATE SET settled = excluded.settled",
    )?;
    for (id, settled) in settled {
        put.execute(params![id, subscribers::encode(settled)])?;
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

    /// The tariff the daemon priced usage with last (only its usage rates are kept).
    pub fn usage_tariff(&self) -> Result<Tariff, StoreError> {
        let mut r = [0u64; 4];
        for (x, key) in r.iter_mut().zip(RATE_KEYS) {
            *x = self.meta(key)?.unwrap_or(0);
        }
        Ok(Tariff {
            download_internet_gb: r[0],
            upload_internet_gb: r[1],
            download_grid_gb: r[2],
            upload_grid_gb: r[3],
            ..Tariff::default()
        })
    }

    /// Each subscriber's pending usage debit (micro-credits, negative; absent when zero): the
    /// traffic not yet settled into the ledger, priced as the next settlement will debit it.
    pub fn pending_debits(&self) -> Result<HashMap<String, i64>, StoreError> {
        let tariff = self.usage_tariff()?;
        let settled = self.settled_usage()?;
        Ok(self
            .records()?
            .into_iter()
            .filter_map(|r| {
                let s = settled.get(&r.id).copied().unwrap_or_default();
                let debit = tariff.usage_debit(&s, &r.total);
                (debit != 0).then_some((r.id, debit))
            })
            .collect())
    }

    /// `subscriber`'s pending usage debit (zero when nothing is pending).
    pub fn pending_debit(&self, subscriber: &str) -> Result<i64, StoreError> {
        Ok(self.pending_debits()?.get(subscriber).copied().unwrap_or(0))
    }
}
