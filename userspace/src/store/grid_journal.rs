//! The grid journal: the grid bytes of every interval, per subscriber, for as long as a node
//! report may still be matched against them (`[store] interval_secs`). The same bytes are in
//! the hourly rows; the journal keeps the meter's own resolution for settlement.
//!
//! Rows are keyed (chunk start, subscriber key), a chunk being five minutes: an interval commit
//! appends each subscriber's interval to its row of the current chunk, so it touches only the
//! newest pages (a row per interval keyed by subscriber first would dirty a page per
//! subscriber), and a report's window is read as one point lookup per chunk. A row's `spans`
//! is a run of intervals, each four LEB128 numbers: start minus the chunk start, length, upload
//! and download grid bytes.

use std::collections::BTreeMap;

use rusqlite::{Connection, Transaction, params, params_from_iter, types::Value};

use super::{
    IntervalRow,
    leb128::{get, put},
    secs,
    tiers::bucket,
    usage::grid_bytes,
};

/// Seconds in a journal chunk.
pub(super) const CHUNK: i64 = 300;

/// How far before a report's window an interval may start and still overlap it: longer
/// intervals (a daemon stopped for more than a day) are matched from the hourly rows.
const LOOKBACK: i64 = 86_400;

/// Rows per multi-row UPSERT.
const BATCH: usize = 100;

/// One interval's grid bytes as the journal holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    pub start: i64,
    pub end: i64,
    pub up: u64,
    pub down: u64,
}

/// The entry of `span` in the row of chunk `chunk`.
fn encode(chunk: i64, span: &Span, out: &mut Vec<u8>) {
    put(out, span.start.saturating_sub(chunk).cast_unsigned());
    put(out, span.end.saturating_sub(span.start).cast_unsigned());
    put(out, span.up);
    put(out, span.down);
}

/// The spans of chunk `chunk`'s row; an error names a row that is not a whole run of entries.
pub(super) fn decode(chunk: i64, b: &[u8]) -> Result<Vec<Span>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    let next = |at: &mut usize| {
        let was = *at;
        get(b, at).ok_or_else(|| format!("grid journal row {chunk} is damaged at byte {was}"))
    };
    while at < b.len() {
        let offset = next(&mut at)?.cast_signed();
        let len = next(&mut at)?.cast_signed();
        let (up, down) = (next(&mut at)?, next(&mut at)?);
        let start = chunk.saturating_add(offset);
        out.push(Span {
            start,
            end: start.saturating_add(len),
            up,
            down,
        });
    }
    Ok(out)
}

/// Rows of chunk `chunk` (a count of its key range, answered from the key).
fn rows_in(tx: &Connection, chunk: i64) -> rusqlite::Result<i64> {
    tx.query_row(
        "SELECT count(*) FROM grid_journal WHERE start = ?1",
        [chunk],
        |r| r.get(0),
    )
}

/// Appends the grid bytes of `rows` (those with any) to their subscribers' rows of the chunk
/// holding each interval's start, inside an open transaction; returns the rows it created.
pub(super) fn append(tx: &Transaction<'_>, rows: &[IntervalRow]) -> rusqlite::Result<i64> {
    let mut by_chunk: BTreeMap<i64, Vec<(i64, Vec<u8>)>> = BTreeMap::new();
    for r in rows {
        let (up, down) = grid_bytes(&r.usage.counters);
        if up == 0 && down == 0 {
            continue;
        }
        let start = secs(r.usage.start);
        let chunk = bucket(start, CHUNK);
        let mut spans = Vec::with_capacity(16);
        let span = Span {
            start,
            end: secs(r.usage.end),
            up,
            down,
        };
        encode(chunk, &span, &mut spans);
        by_chunk.entry(chunk).or_default().push((r.key, spans));
    }
    let mut created = 0;
    for (chunk, mut entries) in by_chunk {
        // In key order: the chunk's pages are visited once, front to back.
        entries.sort_by_key(|(k, _)| *k);
        let before = rows_in(tx, chunk)?;
        for batch in entries.chunks(BATCH) {
            let values: Vec<String> = (0..batch.len())
                .map(|j| format!("(?1, ?{}, ?{})", 2 * j + 2, 2 * j + 3))
                .collect();
            let mut stmt = tx.prepare_cached(&format!(
                // `||` makes text of its operands (byte for byte, zeros included): the
                // result is cast back to the blob it was.
                "INSERT INTO grid_journal VALUES {} ON CONFLICT(start, key) DO UPDATE SET \
                 spans = CAST(spans || excluded.spans AS BLOB)",
                values.join(",")
            ))?;
            let mut p: Vec<Value> = Vec::with_capacity(1 + 2 * batch.len());
            p.push(Value::Integer(chunk));
            for (key, spans) in batch {
                p.push(Value::Integer(*key));
                p.push(Value::Blob(spans.clone()));
            }
            stmt.execute(params_from_iter(p))?;
        }
        created += rows_in(tx, chunk)? - before;
    }
    Ok(created)
}

/// Subscriber `key`'s journal spans that overlap `[from, to)` (and started at most a day
/// before it).
pub(super) fn read(conn: &Connection, key: i64, from: i64, to: i64) -> rusqlite::Result<Vec<Span>> {
    let first = bucket(from.saturating_sub(LOOKBACK), CHUNK);
    if first >= to {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare_cached(&format!(
        "WITH RECURSIVE c(s) AS (SELECT ?2 UNION ALL SELECT s + {CHUNK} FROM c WHERE s + {CHUNK} < ?3)
         SELECT j.start, j.spans FROM c CROSS JOIN grid_journal j ON j.start = c.s AND j.key = ?1"
    ))?;
    let mut rows = stmt.query(params![key, first, to])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let chunk: i64 = r.get(0)?;
        let blob: Vec<u8> = r.get(1)?;
        let spans = decode(chunk, &blob).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Blob, e.into())
        })?;
        out.extend(spans.into_iter().filter(|s| s.start < to && s.end > from));
    }
    Ok(out)
}

/// Moves the interval rows of a store written before the compact books (`usage`, subscriber
/// names) into the journal: one row per subscriber and chunk.
pub(super) fn convert_legacy(conn: &Connection) -> rusqlite::Result<()> {
    let mut rows: BTreeMap<(i64, i64), Vec<u8>> = BTreeMap::new();
    {
        let mut stmt = conn.prepare(
            "SELECT s.key, o.start, o.end, o.up_grid_bytes, o.down_grid_bytes FROM usage o
             JOIN subscribers s ON s.id = o.subscriber
             WHERE o.up_grid_bytes != 0 OR o.down_grid_bytes != 0 ORDER BY o.start",
        )?;
        let mut q = stmt.query([])?;
        while let Some(r) = q.next()? {
            let span = Span {
                start: r.get(1)?,
                end: r.get(2)?,
                // Counters are stored bit-exact (see `usage::flat`).
                up: r.get::<_, i64>(3)?.cast_unsigned(),
                down: r.get::<_, i64>(4)?.cast_unsigned(),
            };
            let chunk = bucket(span.start, CHUNK);
            encode(chunk, &span, rows.entry((chunk, r.get(0)?)).or_default());
        }
    }
    let mut put = conn.prepare("INSERT INTO grid_journal VALUES (?1, ?2, ?3)")?;
    for ((chunk, key), spans) in rows {
        put.execute(params![chunk, key, spans])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_back_exactly_and_a_cut_row_is_an_error() {
        let chunk = 1_800_000_000 - 1_800_000_000 % CHUNK;
        let spans = [
            Span {
                start: chunk,
                end: chunk + 10,
                up: 0,
                down: 1,
            },
            Span {
                start: chunk + 10,
                end: chunk + 7_200,
                up: u64::MAX,
                down: 300,
            },
            Span {
                start: chunk + 299,
                end: chunk + 299,
                up: 1 << 40,
                down: 0,
            },
        ];
        let mut b = Vec::new();
        for s in &spans {
            encode(chunk, s, &mut b);
        }
        assert_eq!(decode(chunk, &b).unwrap(), spans);
        let cut = &b[..b.len() - 1];
        assert!(decode(chunk, cut).unwrap_err().contains("damaged"));
        // Eleven bytes of continuation: longer than any u64.
        assert!(decode(chunk, &[0xff; 11]).is_err());
    }

    /// Appends through SQL, zero bytes and all, read back whole.
    #[test]
    fn appended_intervals_read_back_byte_for_byte() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(super::super::tiers::SCHEMA).unwrap();
        let chunk = 1_800_000_000 - 1_800_000_000 % CHUNK;
        let mut want = Vec::new();
        for i in 0..4u64 {
            let mut c = quid_common::SubscriberCounters::default();
            // Zero upload bytes: entries full of zero bytes.
            c.pairs[quid_common::pair_index(quid_common::DIR_DOWNLOAD, quid_common::CLASS_GRID)]
                .bytes = 128 * i + 1;
            let start = u64::try_from(chunk).unwrap() + 10 * i;
            let row = IntervalRow {
                key: 7,
                usage: super::super::Usage {
                    start,
                    end: start + 10,
                    counters: c,
                },
            };
            let tx = conn.transaction().unwrap();
            let created = append(&tx, &[row]).unwrap();
            tx.commit().unwrap();
            assert_eq!(created, i64::from(i == 0));
            want.push(Span {
                start: chunk + 10 * i64::try_from(i).unwrap(),
                end: chunk + 10 * i64::try_from(i).unwrap() + 10,
                up: 0,
                down: 128 * i + 1,
            });
        }
        assert_eq!(read(&conn, 7, chunk, chunk + CHUNK).unwrap(), want);
        let kind: String = conn
            .query_row("SELECT typeof(spans) FROM grid_journal", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kind, "blob");
    }
}
