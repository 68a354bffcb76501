//! The open hours: each subscriber's counts of the current hour as the interval commit adds
//! them, kept as one blob per (hour, block of 1,024 subscriber keys) rather than a row per
//! subscriber. A commit at a million active subscribers rewrites about a thousand blobs instead
//! of updating a million B-tree rows (measured: about a tenth of the time).
//!
//! Every commit folds a few blocks of the hours before the current one into the hourly rows
//! (`usage_hour`), and the roll-up folds whatever is left of an hour before it rolls it, so the
//! hourly rows hold every closed hour within minutes. A subscriber's count for an hour is its
//! hourly row plus its entry in that hour's block: readers add both. A fold adds a block's
//! entries into the rows and deletes the block in one transaction, so nothing is counted twice.
//!
//! A block's `entries`: for each subscriber with counts, in key order, the key's offset in the
//! block and the eight counters (`usage::flat` order, bit-exact u64s), each LEB128.

use std::collections::BTreeMap;

use quid_common::{DIR_CLASS_PAIRS, SubscriberCounters};
use rusqlite::{Connection, Transaction, params};

use super::{
    IntervalRow,
    leb128::{get, put},
    secs,
    tiers::{HOUR, bucket},
    usage::{flat, unflat, upsert_hour},
};

/// The table's name.
pub(super) const TABLE: &str = "usage_hour_blocks";

/// The table (created at every open: it arrived after the compact books' migration).
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS usage_hour_blocks (
    start INTEGER NOT NULL, block INTEGER NOT NULL, entries BLOB NOT NULL,
    PRIMARY KEY (start, block));";

/// Keys per block: 2^10. A block of a thousand active subscribers is about 20 KB.
const BLOCK_BITS: u32 = 10;

/// Blocks each interval commit folds into hourly rows (at most 65,536 rows: a closed hour of a
/// million subscribers is folded within sixteen commits).
pub(super) const FOLD_PER_COMMIT: i64 = 64;

/// One subscriber's counts in a block: its key and counters.
pub(super) type Entry = (i64, SubscriberCounters);

/// The block holding `key`.
fn block_of(key: i64) -> i64 {
    key >> BLOCK_BITS
}

/// The keys of `block`: `[first, end)`.
fn keys_of(block: i64) -> (i64, i64) {
    (block << BLOCK_BITS, (block + 1) << BLOCK_BITS)
}

/// One past the last key `block` can hold.
pub(super) fn end_of_block(block: i64) -> i64 {
    keys_of(block).1
}

/// `entries` (keys of `block`, in key order) as a block's blob.
fn encode(block: i64, entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 20);
    let first = keys_of(block).0;
    for (key, c) in entries {
        put(&mut out, key.saturating_sub(first).cast_unsigned());
        for v in flat(c) {
            put(&mut out, v.cast_unsigned());
        }
    }
    out
}

/// The entries of `block`'s blob of hour `start`; an error names a blob that is not a whole
/// run of entries of that block.
fn decode(start: i64, block: i64, b: &[u8]) -> Result<Vec<Entry>, String> {
    let (first, end) = keys_of(block);
    let damaged = |at: usize| format!("open hour {start}, block {block} is damaged at byte {at}");
    let mut out = Vec::with_capacity(b.len() / 16);
    let mut at = 0;
    while at < b.len() {
        let was = at;
        let offset = get(b, &mut at).ok_or_else(|| damaged(was))?;
        let key = i64::try_from(offset)
            .ok()
            .and_then(|o| first.checked_add(o))
            .filter(|k| *k < end)
            .ok_or_else(|| damaged(was))?;
        let mut v = [0u64; 2 * DIR_CLASS_PAIRS];
        for x in &mut v {
            let was = at;
            *x = get(b, &mut at).ok_or_else(|| damaged(was))?;
        }
        out.push((key, unflat(&v)));
    }
    Ok(out)
}

/// A damaged blob as the error SQLite reads would give.
fn damaged(e: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Blob, e.into())
}

/// `b`'s entries added into `a`'s (both in key order): one entry per key, in key order.
fn merge(a: Vec<Entry>, b: &[Entry]) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::with_capacity(a.len() + b.len());
    let mut push = |(k, c): Entry| match out.last_mut() {
        Some((last, sum)) if *last == k => sum.add(&c),
        _ => out.push((k, c)),
    };
    let mut b = b.iter().copied().peekable();
    for e in a {
        while let Some(n) = b.next_if(|n| n.0 <= e.0) {
            push(n);
        }
        push(e);
    }
    b.for_each(push);
    out
}

/// The entries of hour `start`'s block `block` (none if it has no blob).
fn read_block(tx: &Connection, start: i64, block: i64) -> rusqlite::Result<Vec<Entry>> {
    use rusqlite::OptionalExtension;
    let blob: Option<Vec<u8>> = tx
        .prepare_cached("SELECT entries FROM usage_hour_blocks WHERE start = ?1 AND block = ?2")?
        .query_row(params![start, block], |r| r.get(0))
        .optional()?;
    blob.map_or(Ok(Vec::new()), |b| {
        decode(start, block, &b).map_err(damaged)
    })
}

/// Adds each row's counts into its subscriber's entry of the hour holding the row's start,
/// inside an open transaction.
pub(super) fn add(tx: &Transaction<'_>, rows: &[IntervalRow]) -> rusqlite::Result<()> {
    let mut by_block: BTreeMap<(i64, i64), Vec<Entry>> = BTreeMap::new();
    for r in rows {
        let hour = bucket(secs(r.usage.start), HOUR);
        by_block
            .entry((hour, block_of(r.key)))
            .or_default()
            .push((r.key, r.usage.counters));
    }
    let mut write = tx.prepare_cached(
        "INSERT INTO usage_hour_blocks (start, block, entries) VALUES (?1, ?2, ?3)
         ON CONFLICT(start, block) DO UPDATE SET entries = excluded.entries",
    )?;
    for ((hour, block), mut new) in by_block {
        new.sort_by_key(|e| e.0);
        let entries = merge(read_block(tx, hour, block)?, &new);
        write.execute(params![hour, block, encode(block, &entries)])?;
    }
    Ok(())
}

/// Folds up to `limit` blocks of hours before `before` into the hourly rows, oldest first, inside
/// an open transaction; returns the hourly rows it created and whether blocks before `before`
/// are left.
pub(super) fn fold(tx: &Transaction<'_>, before: i64, limit: i64) -> rusqlite::Result<(i64, bool)> {
    let blocks: Vec<(i64, i64, Vec<u8>)> = tx
        .prepare_cached(
            "SELECT start, block, entries FROM usage_hour_blocks WHERE start < ?1
             ORDER BY start, block LIMIT ?2",
        )?
        .query_map(params![before, limit.saturating_add(1)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    let more = i64::try_from(blocks.len()).unwrap_or(i64::MAX) > limit;
    let mut created = 0;
    let count = |start: i64, block: i64| -> rusqlite::Result<i64> {
        let (first, end) = keys_of(block);
        tx.prepare_cached(
            "SELECT count(*) FROM usage_hour WHERE start = ?1 AND key >= ?2 AND key < ?3",
        )?
        .query_row(params![start, first, end], |r| r.get(0))
    };
    for (start, block, blob) in blocks.into_iter().take(usize::try_from(limit).unwrap_or(0)) {
        let entries = decode(start, block, &blob).map_err(damaged)?;
        let held = count(start, block)?;
        upsert_hour(tx, start, &entries)?;
        created += count(start, block)? - held;
        tx.execute(
            "DELETE FROM usage_hour_blocks WHERE start = ?1 AND block = ?2",
            params![start, block],
        )?;
    }
    Ok((created, more))
}

/// Subscriber `key`'s entries of the hours in `[from, to)`: (hour start, counters), oldest first.
pub(super) fn of_key(
    conn: &Connection,
    key: i64,
    from: i64,
    to: i64,
) -> rusqlite::Result<Vec<(i64, SubscriberCounters)>> {
    let block = block_of(key);
    let mut stmt = conn.prepare_cached(
        "SELECT start, entries FROM usage_hour_blocks
         WHERE start >= ?2 AND start < ?3 AND block = ?1 ORDER BY start",
    )?;
    let mut rows = stmt.query(params![block, from, to])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let start: i64 = r.get(0)?;
        let entries = decode(start, block, &r.get::<_, Vec<u8>>(1)?).map_err(damaged)?;
        if let Ok(i) = entries.binary_search_by_key(&key, |e| e.0) {
            out.push((start, entries[i].1));
        }
    }
    Ok(out)
}

/// The entries of keys in `[lo, hi)` of the hours in `[from, to)`: (hour start, key,
/// counters), in (start, key) order.
pub(super) fn of_keys(
    conn: &Connection,
    lo: i64,
    hi: i64,
    from: i64,
    to: i64,
) -> rusqlite::Result<Vec<(i64, i64, SubscriberCounters)>> {
    if lo >= hi {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare_cached(
        "SELECT start, block, entries FROM usage_hour_blocks
         WHERE start >= ?1 AND start < ?2 AND block >= ?3 AND block <= ?4 ORDER BY start, block",
    )?;
    let mut rows = stmt.query(params![from, to, block_of(lo), block_of(hi - 1)])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let (start, block): (i64, i64) = (r.get(0)?, r.get(1)?);
        let entries = decode(start, block, &r.get::<_, Vec<u8>>(2)?).map_err(damaged)?;
        out.extend(
            entries
                .into_iter()
                .filter(|(k, _)| (lo..hi).contains(k))
                .map(|(k, c)| (start, k, c)),
        );
    }
    Ok(out)
}

/// Every entry of the hours in `[from, to)`: (hour start, key, counters), in (start, key) order.
/// Only the hours not folded yet have entries (the current one, and closed ones for a few
/// minutes).
pub(super) fn all(
    conn: &Connection,
    from: i64,
    to: i64,
) -> rusqlite::Result<Vec<(i64, i64, SubscriberCounters)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT start, block, entries FROM usage_hour_blocks WHERE start >= ?1 AND start < ?2
         ORDER BY start, block",
    )?;
    let mut rows = stmt.query(params![from, to])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let (start, block): (i64, i64) = (r.get(0)?, r.get(1)?);
        let entries = decode(start, block, &r.get::<_, Vec<u8>>(2)?).map_err(damaged)?;
        out.extend(entries.into_iter().map(|(k, c)| (start, k, c)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use quid_common::Counter;

    use super::*;

    fn c(seed: u64) -> SubscriberCounters {
        let mut c = SubscriberCounters::default();
        for (i, p) in c.pairs.iter_mut().enumerate() {
            let i = u64::try_from(i).unwrap();
            *p = Counter {
                packets: seed + i,
                bytes: seed.wrapping_mul(1_000_003).wrapping_add(i),
            };
        }
        c
    }

    #[test]
    fn a_block_reads_back_bit_exact_and_damage_is_named() {
        let block = 3;
        let entries = vec![
            (3 << 10, c(1)),
            ((3 << 10) + 7, c(u64::MAX - 9)),
            ((4 << 10) - 1, c(0)),
        ];
        let b = encode(block, &entries);
        assert_eq!(decode(5, block, &b).unwrap(), entries);
        // Cut inside an entry, and a key outside the block: errors naming hour and block.
        let e = decode(5, block, &b[..b.len() - 1]).unwrap_err();
        assert!(e.contains("hour 5, block 3 is damaged"), "{e}");
        let mut outside = Vec::new();
        put(&mut outside, 1 << 10);
        outside.extend(std::iter::repeat_n(0, 8));
        assert!(decode(5, block, &outside).is_err());
        assert!(decode(5, block, &[0xff; 11]).is_err());
    }

    /// Alice (key 5) and bob (key 5,000: another block) with two intervals each in hour `H0`,
    /// then one in the next hour: the reads add rows and blocks, a fold moves a closed hour into
    /// rows exactly once, and a reopened store counts the open hour in each base.
    #[test]
    fn open_hours_read_the_same_before_and_after_they_are_folded() {
        use crate::store::{Record, Resolution, Store, Tier, Usage};
        const H0: u64 = 1_767_225_600;
        let dir = tempfile::tempdir().unwrap();
        let rec = |id: &str, key: i64| Record::fresh(id, key, i64::try_from(H0).unwrap());
        let (alice, bob) = (rec("alice", 5), rec("bob", 5_000));
        let at = |start: u64, seed: u64| Usage {
            start,
            end: start + 10,
            counters: c(seed),
        };
        let sum = |seeds: &[u64]| {
            let mut t = SubscriberCounters::default();
            seeds.iter().for_each(|s| t.add(&c(*s)));
            t
        };
        let mut s = Store::open(dir.path()).unwrap();
        s.commit(&[&alice, &bob], &[("alice", at(H0, 1)), ("bob", at(H0, 2))])
            .unwrap();
        s.commit(&[], &[("alice", at(H0 + 10, 3)), ("bob", at(H0 + 10, 4))])
            .unwrap();
        let hour = |s: &Store, id: &str, h: u64| -> Vec<SubscriberCounters> {
            s.usage(id, h, h + 3_600)
                .unwrap()
                .iter()
                .map(|u| u.counters)
                .collect()
        };
        // The open hour is in blocks only: no hourly row yet, one usage row per subscriber.
        assert_eq!(s.tier_rows(Tier::Hourly).unwrap(), 0);
        assert_eq!(hour(&s, "alice", H0), [sum(&[1, 3])]);
        assert_eq!(hour(&s, "bob", H0), [sum(&[2, 4])]);
        // The next hour's commit folds the closed one into rows, and nothing moves twice.
        s.commit(&[], &[("alice", at(H0 + 3_600, 5))]).unwrap();
        assert_eq!(s.tier_rows(Tier::Hourly).unwrap(), 2);
        let blocks: i64 = s
            .conn
            .query_row("SELECT count(*) FROM usage_hour_blocks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(blocks, 1, "only the new hour's block is left");
        assert_eq!(hour(&s, "alice", H0), [sum(&[1, 3])]);
        assert_eq!(hour(&s, "alice", H0 + 3_600), [sum(&[5])]);
        // A later interval of the folded hour (a late commit) adds into its row.
        s.commit(&[], &[("bob", at(H0 + 20, 6))]).unwrap();
        assert_eq!(hour(&s, "bob", H0), [sum(&[2, 4, 6])]);
        // Exports merge rows and blocks in (start, key) order, hour by hour and per day.
        let export = |res| {
            let mut got = Vec::new();
            s.export_usage(res, 0, i64::MAX, |r| {
                got.push((r.start, r.subscriber.to_string(), r.counters));
                Ok(())
            })
            .unwrap();
            got
        };
        let h0 = i64::try_from(H0).unwrap();
        assert_eq!(
            export(Resolution::Hour),
            [
                (h0, "alice".into(), sum(&[1, 3])),
                (h0, "bob".into(), sum(&[2, 4, 6])),
                (h0 + 3_600, "alice".into(), sum(&[5])),
            ]
        );
        assert_eq!(
            export(Resolution::Day),
            [
                (h0, "alice".into(), sum(&[1, 3, 5])),
                (h0, "bob".into(), sum(&[2, 4, 6])),
            ]
        );
        // Reopened: each base counts the hours from `based` on, blocks included.
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        let records = s.records().unwrap();
        let total = |id: &str| records.iter().find(|r| r.id == id).unwrap().total;
        assert_eq!(total("alice"), sum(&[1, 3, 5]));
        assert_eq!(total("bob"), sum(&[2, 4, 6]));
    }

    #[test]
    fn merging_adds_equal_keys_and_keeps_key_order() {
        let a = vec![(1, c(1)), (5, c(5)), (9, c(9))];
        let b = [(0, c(100)), (5, c(50)), (5, c(7)), (12, c(12))];
        let got = merge(a, &b);
        let mut five = c(5);
        five.add(&c(50));
        five.add(&c(7));
        assert_eq!(
            got,
            vec![(0, c(100)), (1, c(1)), (5, five), (9, c(9)), (12, c(12))]
        );
    }
}
