//! The router's outbox for the shared store: each interval commit seals its usage rows into one
//! batch in the same transaction, so a batch exists exactly when its counts are in the local
//! books. The shipper (`daemon/shipping.rs`) reads batches in sequence order, the shared store
//! applies them under (router id, sequence) exactly once, and they are dropped here after.
//!
//! A batch's `entries`: for each row, the subscriber's key, the row's start (unix seconds) and
//! the eight counters (`usage::flat` order, bit-exact u64s), each LEB128. Sequence numbers
//! come from `AUTOINCREMENT`, so they never repeat even after every batch was dropped (a
//! repeated number would be taken by the shared store as already applied, and lost).

use std::collections::HashMap;

use quid_common::{DIR_CLASS_PAIRS, SubscriberCounters};
use rusqlite::{Transaction, params};

use super::{
    IntervalRow, Store, StoreError,
    leb128::{get, put},
    secs,
    usage::{flat, unflat},
};

/// The table (created at every open; empty unless the shared store is configured).
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS cluster_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, covers_until INTEGER NOT NULL,
    rows INTEGER NOT NULL, entries BLOB NOT NULL);";

/// Meta key: this store's random identity, which the shared store ties to the router id (two
/// routers configured with one id, or a router whose books were replaced, are refused).
const IDENTITY: &str = "cluster_store_id";

/// One usage row of a batch: subscriber key, row start (unix seconds), counts.
pub type SealedRow = (i64, i64, SubscriberCounters);

/// A sealed batch as the shipper reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedBatch {
    /// Its sequence number (increasing, never repeated).
    pub seq: i64,
    /// The end of the interval it closes (unix seconds): this router's usage up to here is in
    /// it or in an earlier batch.
    pub covers_until: i64,
    /// The usage rows.
    pub rows: Vec<SealedRow>,
}

/// What waits in the outbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxDepth {
    pub batches: u64,
    pub rows: u64,
    /// The newest batch's end, if any.
    pub sealed_until: Option<i64>,
}

/// Seals `usage` as one batch ending at `covers_until`, inside the commit's transaction.
pub(super) fn seal(
    tx: &Transaction<'_>,
    usage: &[IntervalRow],
    covers_until: i64,
) -> rusqlite::Result<()> {
    let mut out = Vec::with_capacity(usage.len() * 24);
    for r in usage {
        put(&mut out, r.key.cast_unsigned());
        put(&mut out, secs(r.usage.start).cast_unsigned());
        for v in flat(&r.usage.counters) {
            put(&mut out, v.cast_unsigned());
        }
    }
    tx.prepare_cached(
        "INSERT INTO cluster_outbox (covers_until, rows, entries) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![covers_until, usage.len(), out])?;
    Ok(())
}

/// The rows of batch `seq`'s blob; an error names a blob that is not a whole run of rows.
fn decode(seq: i64, b: &[u8]) -> Result<Vec<SealedRow>, String> {
    let damaged = |at: usize| format!("outbox batch {seq} is damaged at byte {at}");
    let mut out = Vec::with_capacity(b.len() / 16);
    let mut at = 0;
    let next = |at: &mut usize| {
        let was = *at;
        get(b, at).ok_or_else(|| damaged(was))
    };
    while at < b.len() {
        let key = next(&mut at)?.cast_signed();
        let start = next(&mut at)?.cast_signed();
        let mut v = [0u64; 2 * DIR_CLASS_PAIRS];
        for x in &mut v {
            *x = next(&mut at)?;
        }
        out.push((key, start, unflat(&v)));
    }
    Ok(out)
}

impl Store {
    /// Seals every interval commit's usage into the outbox from now on (the shared store is
    /// configured). Off by default: a single router's books have no outbox.
    pub fn seal_batches(&mut self, on: bool) {
        self.outbox = on;
    }

    /// The batches after `after` in sequence order, whole, until they hold `max_rows` rows
    /// (at least one batch, however large).
    pub fn sealed_after(
        &self,
        after: i64,
        max_rows: usize,
    ) -> Result<Vec<SealedBatch>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, covers_until, rows, entries FROM cluster_outbox WHERE seq > ?1
                 ORDER BY seq",
            )
            .map_err(|e| self.sql(e))?;
        let mut rows = stmt.query([after]).map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        let mut held = 0usize;
        while let Some(r) = rows.next().map_err(|e| self.sql(e))? {
            let n: i64 = r.get(2).map_err(|e| self.sql(e))?;
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if !out.is_empty() && held.saturating_add(n) > max_rows {
                break;
            }
            let seq: i64 = r.get(0).map_err(|e| self.sql(e))?;
            let blob: Vec<u8> = r.get(3).map_err(|e| self.sql(e))?;
            let rows = decode(seq, &blob).map_err(|detail| StoreError::Corrupt {
                path: self.path.clone(),
                detail,
            })?;
            held = held.saturating_add(rows.len());
            out.push(SealedBatch {
                seq,
                covers_until: r.get(1).map_err(|e| self.sql(e))?,
                rows,
            });
        }
        Ok(out)
    }

    /// Drops the batches up to `seq`, which the shared store holds.
    pub fn drop_shipped(&self, seq: i64) -> Result<u64, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM cluster_outbox WHERE seq <= ?1", [seq])
            .map_err(|e| self.sql(e))?;
        Ok(n as u64)
    }

    /// What waits in the outbox.
    pub fn outbox_depth(&self) -> Result<OutboxDepth, StoreError> {
        self.conn
            .query_row(
                "SELECT count(*), coalesce(sum(rows), 0), max(covers_until) FROM cluster_outbox",
                [],
                |r| {
                    Ok(OutboxDepth {
                        batches: r.get::<_, i64>(0)?.cast_unsigned(),
                        rows: r.get::<_, i64>(1)?.cast_unsigned(),
                        sealed_until: r.get(2)?,
                    })
                },
            )
            .map_err(|e| self.sql(e))
    }

    /// This store's identity for the shared store, made on first use.
    pub fn store_identity(&self) -> Result<u64, StoreError> {
        if let Some(id) = self.meta(IDENTITY)? {
            return Ok(id);
        }
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            detail: format!("no random identity for the outbox: {e}"),
        })?;
        // Below 2^63: the shared store keeps it as a signed 64-bit number.
        let id = u64::from_le_bytes(b) >> 1;
        self.set_meta(IDENTITY, id)?;
        Ok(id)
    }

    /// Every subscriber's key and id (keys are never reused, so a batch's keys name the same
    /// subscribers whenever it is shipped).
    pub fn subscriber_keys(&self) -> Result<HashMap<i64, String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT key, id FROM subscribers")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A commit's changes that only move the meter's end to `t`.
    fn until(t: u64) -> super::super::Changes<'static> {
        super::super::Changes {
            metered_until: Some(t),
            ..Default::default()
        }
    }

    #[test]
    fn batches_decode_to_what_was_sealed_and_name_a_damaged_blob() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store.seal_batches(true);
        let mut c = SubscriberCounters::default();
        c.pairs[0].bytes = u64::MAX;
        c.pairs[3].packets = 7;
        let usage = |key, start| IntervalRow {
            key,
            usage: super::super::Usage {
                start,
                end: start + 10,
                counters: c,
            },
        };
        store
            .commit_with(&[], &[usage(1, 3600), usage(900, 3600)], &until(3610))
            .unwrap();
        store.commit_with(&[], &[], &until(3620)).unwrap();
        let depth = store.outbox_depth().unwrap();
        assert_eq!(
            (depth.batches, depth.rows, depth.sealed_until),
            (2, 2, Some(3620))
        );
        let got = store.sealed_after(0, 1000).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].rows, vec![(1, 3600, c), (900, 3600, c)]);
        assert_eq!((got[1].seq, got[1].covers_until), (got[0].seq + 1, 3620));
        // A shipment stops before the batch that would pass its size, but takes one at least.
        assert_eq!(store.sealed_after(0, 1).unwrap().len(), 1);
        // Dropped batches leave their numbers behind: the next batch's number is higher.
        store.drop_shipped(got[1].seq).unwrap();
        store.commit_with(&[], &[], &until(3630)).unwrap();
        assert_eq!(store.sealed_after(0, 10).unwrap()[0].seq, got[1].seq + 1);
        assert!(
            decode(5, &[0x80])
                .unwrap_err()
                .contains("batch 5 is damaged at byte 0")
        );
        // Identity: made once, kept.
        let id = store.store_identity().unwrap();
        assert_eq!(store.store_identity().unwrap(), id);
        assert!(id < 1 << 63);
    }

    #[test]
    fn a_store_without_the_shared_store_seals_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store.commit_with(&[], &[], &until(3620)).unwrap();
        assert_eq!(store.outbox_depth().unwrap(), OutboxDepth::default());
    }
}
