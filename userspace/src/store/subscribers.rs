//! The `subscribers` table: each subscriber's name, plan, prefixes, counter slot and the
//! kernel counters it was last read at and has counted in all.

use quid_common::{DIR_CLASS_PAIRS, SubscriberCounters};
use rusqlite::{Transaction, params};

use super::{Store, StoreError, usage::unflat};

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

impl Store {
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
}

/// Writes `records` (new or changed) inside an open transaction.
pub(super) fn put(tx: &Transaction<'_>, records: &[&Record]) -> rusqlite::Result<()> {
    let mut put = tx.prepare_cached(
        "INSERT INTO subscribers (id, name, plan, prefixes, slot, removed, last, total)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(id) DO UPDATE SET name = excluded.name, plan = excluded.plan,
           prefixes = excluded.prefixes, slot = excluded.slot,
           removed = excluded.removed, last = excluded.last, total = excluded.total",
    )?;
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
        ])?;
    }
    Ok(())
}

/// Counters as the blob the table keeps: each (packets, bytes) pair little-endian.
pub(super) fn encode(c: &SubscriberCounters) -> Vec<u8> {
    c.pairs
        .iter()
        .flat_map(|p| [p.packets, p.bytes])
        .flat_map(u64::to_le_bytes)
        .collect()
}

/// The counters of a blob [`encode`] wrote (missing bytes read as zero).
pub(super) fn decode(b: &[u8]) -> SubscriberCounters {
    let mut v = [0u64; 2 * DIR_CLASS_PAIRS];
    for (i, chunk) in b.chunks_exact(8).take(v.len()).enumerate() {
        v[i] = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
    }
    unflat(&v)
}
