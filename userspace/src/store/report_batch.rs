//! A batch of admitted reports written in one transaction: the group commit's unit of
//! durability, one fsync for the whole batch instead of one per report.

use rusqlite::{Transaction, TransactionBehavior};

use super::{Store, StoreError, reports::insert_on};
use crate::settlement::report::{Period, Report};

/// An open write transaction for reports. Nothing in it is durable, or visible to other
/// connections, until [`ReportBatch::commit`]; dropped uncommitted, it is rolled back. Reads
/// through the same store (a report's signature, metered time) see what it holds so far.
pub struct ReportBatch<'a> {
    store: &'a Store,
    tx: Transaction<'a>,
}

impl Store {
    /// Opens a report batch. It takes the write lock at once (IMMEDIATE): a transaction that
    /// read first and wrote later could fail on the upgrade while another connection writes,
    /// instead of waiting for it.
    pub fn begin_reports(&self) -> Result<ReportBatch<'_>, StoreError> {
        Ok(ReportBatch {
            store: self,
            tx: self.begin(TransactionBehavior::Immediate)?,
        })
    }
}

impl ReportBatch<'_> {
    /// Adds an admitted report (see [`Store::insert_report`] for `subscriber`).
    pub fn insert(
        &self,
        r: &Report,
        p: Period,
        received_at: i64,
        subscriber: &str,
    ) -> Result<(), StoreError> {
        insert_on(&self.tx, r, p, received_at, subscriber).map_err(|e| self.store.sql(e))
    }

    /// Commits every report added: they are durable when this returns `Ok`.
    pub fn commit(self) -> Result<(), StoreError> {
        let store = self.store;
        self.tx.commit().map_err(|e| store.sql(e))
    }
}
