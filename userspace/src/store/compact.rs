//! The compact books (schema version 3), brought in place over a store written by an earlier
//! quid, in one transaction: subscribers get an integer key and a base hour; hourly and daily
//! rows move to tables keyed (start, key); the interval rows become hourly rows, and their grid
//! bytes the grid journal; ledger hashes are kept as bytes, and the repeated link column goes. Every figure stays: any range sums the same before and after.

use quid_common::SubscriberCounters;
use rusqlite::{Connection, OptionalExtension, params};

use super::{schema::has, subscribers, tiers, usage};

/// Meta key: the version of the compact books this store has.
const VERSION_KEY: &str = "schema_compact";

/// Counter columns as a select list.
fn cols() -> String {
    tiers::COUNTERS.join(", ")
}

/// Brings the store to the compact books (idempotent); `now` is used only when the store has
/// never committed an interval.
pub(super) fn migrate(conn: &Connection, now: i64) -> rusqlite::Result<()> {
    let version: Option<i64> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            [VERSION_KEY],
            |r| r.get(0),
        )
        .optional()?;
    if version >= Some(1) {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE;")?;
    let result = migrate_in(conn, now);
    match result {
        Ok(()) => conn.execute_batch("COMMIT;"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK;");
            Err(e)
        }
    }?;
    // Give the dropped tables' pages back.
    conn.execute_batch("PRAGMA incremental_vacuum;")?;
    Ok(())
}

/// Gives a key to every subscriber row without one (a row written by hand or by a tool that
/// predates keys), after the largest key in use: keys are never reused.
pub(super) fn fill_keys(conn: &Connection) -> rusqlite::Result<()> {
    let missing: Vec<String> = conn
        .prepare("SELECT id FROM subscribers WHERE key IS NULL")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in missing {
        conn.execute(
            "UPDATE subscribers SET key = (SELECT coalesce(max(key), 0) + 1 FROM subscribers)
             WHERE id = ?1",
            [id],
        )?;
    }
    Ok(())
}

/// [`migrate`] inside its transaction.
fn migrate_in(conn: &Connection, now: i64) -> rusqlite::Result<()> {
    let keyed: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('subscribers') WHERE name = 'key'",
        [],
        |r| r.get(0),
    )?;
    // Usage of an id the subscribers table lacks (never written by quid, but kept if found):
    // a removed subscriber, so that the rows get a key and nothing is lost.
    for old in ["usage", "usage_hourly", "usage_daily"] {
        if has(conn, old)? {
            conn.execute(
                &format!(
                    "INSERT OR IGNORE INTO subscribers (id, name, plan, prefixes, slot, removed,
                         last, total)
                     SELECT DISTINCT subscriber, '', '', '', NULL, 1, x'', x'' FROM {old}"
                ),
                [],
            )?;
        }
    }
    if !keyed {
        conn.execute_batch(
            "ALTER TABLE subscribers ADD COLUMN key INTEGER;
             ALTER TABLE subscribers ADD COLUMN based INTEGER NOT NULL DEFAULT 0;",
        )?;
    }
    // Keys never change once given (rowids may, on VACUUM): copied once, then kept.
    conn.execute_batch(
        "UPDATE subscribers SET key = rowid WHERE key IS NULL;
         CREATE UNIQUE INDEX IF NOT EXISTS subscribers_key ON subscribers (key);",
    )?;
    conn.execute_batch(tiers::SCHEMA)?;
    conn.execute_batch("DROP VIEW IF EXISTS usage_all;")?;
    for (old, new) in [("usage_hourly", "usage_hour"), ("usage_daily", "usage_day")] {
        if has(conn, old)? {
            conn.execute(
                &format!(
                    "INSERT INTO {new} SELECT o.start, s.key, {c} FROM {old} o
                     JOIN subscribers s ON s.id = o.subscriber WHERE 1
                     ON CONFLICT(start, key) DO UPDATE SET {a}",
                    c = cols()
                        .split(", ")
                        .map(|c| format!("o.{c}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    a = tiers::add_excluded()
                ),
                [],
            )?;
            conn.execute_batch(&format!("DROP TABLE {old};"))?;
        }
    }
    if has(conn, "usage")? {
        let sums = tiers::COUNTERS
            .iter()
            .map(|c| format!("sum(o.{c})"))
            .collect::<Vec<_>>()
            .join(", ");
        conn.execute(
            &format!(
                "INSERT INTO usage_hour
                 SELECT o.start - (o.start % {h}) AS b, s.key, {sums} FROM usage o
                 JOIN subscribers s ON s.id = o.subscriber GROUP BY b, s.key
                 ON CONFLICT(start, key) DO UPDATE SET {a}",
                h = tiers::HOUR,
                a = tiers::add_excluded()
            ),
            [],
        )?;
        super::grid_journal::convert_legacy(conn)?;
        let first: Option<i64> =
            conn.query_row("SELECT min(start) FROM usage", [], |r| r.get(0))?;
        let from = tiers::bucket(first.unwrap_or(now), tiers::HOUR);
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![usage::JOURNAL_FROM, from],
        )?;
        conn.execute_batch("DROP TABLE usage;")?;
    }
    // Every subscriber's base: the hour the next interval commit writes into. The hourly rows
    // from it on are taken out of the stored counters, which hold everything counted so far.
    let last_end: Option<i64> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'last_interval_end'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    let based = tiers::bucket(last_end.unwrap_or(now), tiers::HOUR);
    let mut since: std::collections::HashMap<i64, SubscriberCounters> = Default::default();
    {
        let mut stmt = conn.prepare(&format!(
            "SELECT key, {} FROM usage_hour WHERE start >= ?1",
            cols()
        ))?;
        let mut rows = stmt.query([based])?;
        while let Some(r) = rows.next()? {
            since
                .entry(r.get(0)?)
                .or_default()
                .add(&usage::counters_at(r, 1)?);
        }
    }
    {
        let mut read = conn.prepare("SELECT key, last, total FROM subscribers")?;
        let rows: Vec<(i64, Vec<u8>, Vec<u8>)> = read
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let mut write = conn
            .prepare("UPDATE subscribers SET last = ?2, total = ?3, based = ?4 WHERE key = ?1")?;
        for (key, last, total) in rows {
            let s = since.get(&key).copied().unwrap_or_default();
            let last = subscribers::decode(&last).wrapping_sub(&s);
            let total = subscribers::decode(&total).wrapping_sub(&s);
            write.execute(params![
                key,
                subscribers::encode(&last),
                subscribers::encode(&total),
                based
            ])?;
        }
    }
    // Hashes as their 32 bytes instead of 64 hex digits; a value that is not hex (only an
    // edited store has one) is kept as it is, for `quid ledger verify` to name.
    // The stored link to the previous entry repeats that entry's hash: dropped (verification
    // recomputes every hash over the previous one, so an edit, a removal or a reordering is
    // still found).
    conn.execute_batch(
        "UPDATE ledger SET hash = coalesce(unhex(hash), hash) WHERE typeof(hash) = 'text';",
    )?;
    let linked: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('ledger') WHERE name = 'prev'",
        [],
        |r| r.get(0),
    )?;
    if linked {
        conn.execute_batch("ALTER TABLE ledger DROP COLUMN prev;")?;
    }
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, 1)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [VERSION_KEY],
    )?;
    log::info!(
        "store: compact books (hourly rows keyed by subscriber number, grid journal, base hour \
         {based})"
    );
    Ok(())
}
