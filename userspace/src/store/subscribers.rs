//! The `subscribers` table: each subscriber's name, plan, prefixes, counter slot, integer key,
//! and the base its counters are kept from.
//!
//! The interval commit writes only the current hour's usage row, not this table: a row holds
//! `last` and `total` as they stood at the start of hour `based`, and the subscriber's hourly
//! rows from `based` on add up to everything counted since (see [`Base`]). The base is moved
//! forward about once a day per subscriber and whenever the record itself changes.

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
    /// Where the stored counters stand against the hourly rows.
    pub base: Base,
}

/// How a record's current counters are kept on disk: `last` and `total` as stored plus
/// `since`, the sum of the subscriber's hourly rows starting at or after `based`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Base {
    /// The integer key of the subscriber's usage rows (unique, never reused).
    pub key: i64,
    /// Start of the first hour whose rows are not in the stored counters.
    pub based: i64,
    /// The sum of the subscriber's hourly rows from `based` on.
    pub since: SubscriberCounters,
    /// The newest hour holding a row of this subscriber at or after `based`, if known (the
    /// base can move to a new hour only before the subscriber has a row in it).
    pub row_hour: Option<i64>,
}

impl Record {
    /// A subscriber new to the books: active, nothing counted, its rows under `key` starting
    /// with hour `based`; name, plan and prefixes empty until the table fills them.
    pub fn fresh(id: &str, key: i64, based: i64) -> Record {
        Record {
            id: id.to_owned(),
            name: String::new(),
            plan: String::new(),
            prefixes: String::new(),
            slot: None,
            status: Status::Active,
            last: SubscriberCounters::default(),
            total: SubscriberCounters::default(),
            base: Base {
                key,
                based,
                ..Base::default()
            },
        }
    }
}

impl Store {
    /// Every subscriber the store knows, active and removed, with its current counters (the
    /// stored base plus its hourly rows since).
    pub fn records(&self) -> Result<Vec<Record>, StoreError> {
        // One read transaction: a base that moves between the two reads would count its
        // hour twice or not at all.
        let tx = self.begin(rusqlite::TransactionBehavior::Deferred)?;
        let records = records_on(&tx).map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))?;
        Ok(records)
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

/// Every subscriber on `conn` with its current counters (see [`Store::records`]).
fn records_on(conn: &rusqlite::Connection) -> rusqlite::Result<Vec<Record>> {
    let mut records: Vec<Record> = {
        let mut stmt = conn.prepare(
            "SELECT id, name, plan, prefixes, slot, removed, last, total, key, based
                 FROM subscribers ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
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
                base: Base {
                    key: r.get(8)?,
                    based: r.get(9)?,
                    ..Base::default()
                },
            })
        })?;
        rows.collect::<Result<_, _>>()?
    };
    // One pass over the hours since the oldest base (a day or two of rows), not a query
    // per subscriber: the hourly rows are keyed by time first.
    let by_key: std::collections::HashMap<i64, usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.base.key, i))
        .collect();
    let Some(oldest) = records.iter().map(|r| r.base.based).min() else {
        return Ok(records);
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT key, start, {} FROM usage_hour WHERE start >= ?1",
        super::tiers::COUNTERS.join(", ")
    ))?;
    let mut rows = stmt.query([oldest])?;
    while let Some(row) = rows.next()? {
        let key: i64 = row.get(0)?;
        let start: i64 = row.get(1)?;
        let Some(r) = by_key.get(&key).map(|&i| &mut records[i]) else {
            continue;
        };
        if start < r.base.based {
            continue;
        }
        let c = super::usage::counters_at(row, 2)?;
        r.base.since.add(&c);
        r.base.row_hour = r.base.row_hour.max(Some(start));
    }
    // The hours not folded into rows yet.
    for (start, key, c) in super::hour_blocks::all(conn, oldest, i64::MAX)? {
        let Some(r) = by_key.get(&key).map(|&i| &mut records[i]) else {
            continue;
        };
        if start < r.base.based {
            continue;
        }
        r.base.since.add(&c);
        r.base.row_hour = r.base.row_hour.max(Some(start));
    }
    for r in &mut records {
        r.last.add(&r.base.since);
        r.total.add(&r.base.since);
    }
    Ok(records)
}

/// Writes `records` (new or changed) inside an open transaction.
pub(super) fn put(tx: &Transaction<'_>, records: &[&Record]) -> rusqlite::Result<()> {
    let mut put = tx.prepare_cached(
        "INSERT INTO subscribers (id, name, plan, prefixes, slot, removed, last, total, key, based)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT(id) DO UPDATE SET name = excluded.name, plan = excluded.plan,
           prefixes = excluded.prefixes, slot = excluded.slot,
           removed = excluded.removed, last = excluded.last, total = excluded.total,
           key = excluded.key, based = excluded.based",
    )?;
    // In key order (keys follow the table's row order): the pages are visited front to back.
    let mut records = records.to_vec();
    records.sort_by_key(|r| r.base.key);
    for r in records {
        // The stored counters leave out what the hourly rows from `based` on hold.
        put.execute(params![
            r.id,
            r.name,
            r.plan,
            r.prefixes,
            r.slot.map(i64::from),
            i64::from(r.status == Status::Removed),
            encode(&r.last.wrapping_sub(&r.base.since)),
            encode(&r.total.wrapping_sub(&r.base.since)),
            r.base.key,
            r.base.based,
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
