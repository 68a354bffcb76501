//! One shipment: a run of sealed outbox batches and the reports admitted since the last one,
//! applied in one transaction. The router's row in `quid_routers` is locked first and holds
//! its cursors (the last batch and report applied), so a shipment that is repeated (the
//! router died before it dropped the batches, or never heard the commit) applies nothing
//! twice; batches only ever arrive in sequence order, so a cursor is enough.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use futures_util::SinkExt as _;
use quid_common::DIR_CLASS_PAIRS;

use super::{SharedError, SharedStore};
use crate::store::{
    ReportRow, SealedBatch, Store,
    tiers::{COUNTERS, HOUR, bucket},
    usage::flat,
};

/// Reports per shipment.
const REPORTS_PER_SHIPMENT: usize = 10_000;

/// Bytes per COPY chunk.
const CHUNK: usize = 1 << 22;

/// What a shipment applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shipped {
    /// The last batch the shared store now holds from this router (drop up to it locally).
    pub last_seq: i64,
    /// The last report row it holds.
    pub reports_cursor: i64,
    /// This router's usage is in the shared store up to here (unix seconds).
    pub covered_until: i64,
    /// Batches applied by this shipment (not counting any it already held).
    pub batches: u64,
    /// (subscriber, hour) rows it added into.
    pub rows: u64,
    /// Reports it received (copies of reports another router sent first included).
    pub reports: u64,
}

impl SharedStore {
    /// Ships the next shipment from `local`'s outbox after `cursor` (batches up to `ship_rows`
    /// rows, and the reports admitted since), then drops locally what the shared store now
    /// holds. `keys` is the caller's copy of `local`'s subscriber keys, read again only when a
    /// batch holds a key it lacks (keys are never reused, so a copy never goes wrong, only
    /// short). `None`: nothing was waiting.
    pub async fn ship_next(
        &mut self,
        local: &Store,
        identity: i64,
        cursor: &Shipped,
        ship_rows: usize,
        keys: &mut HashMap<i64, String>,
        now: i64,
    ) -> Result<Option<Shipped>, SharedError> {
        let batches = local.sealed_after(cursor.last_seq, ship_rows)?;
        let reports = local.reports_after(cursor.reports_cursor, REPORTS_PER_SHIPMENT)?;
        if batches.is_empty() && reports.is_empty() {
            return Ok(None);
        }
        let known = |k: &i64| keys.contains_key(k);
        if !batches.iter().flat_map(|b| &b.rows).all(|(k, ..)| known(k)) {
            *keys = local.subscriber_keys()?;
        }
        let done = self.ship(identity, &batches, keys, &reports, now).await?;
        local.drop_shipped(done.last_seq)?;
        Ok(Some(done))
    }

    /// Claims this router id for the local store `identity` (or finds it claimed by it) and
    /// returns where its shipping stands.
    pub async fn cursor(&mut self, identity: i64) -> Result<Shipped, SharedError> {
        let tx = self.client.transaction().await?;
        let got = lock_router(&tx, &self.router, identity).await?;
        tx.commit().await?;
        Ok(got)
    }

    /// Applies `batches` (those after the shared store's cursor; the rest are skipped) and
    /// `reports` (the same), with `keys` naming each batch row's subscriber, in one
    /// transaction stamped `now`.
    pub async fn ship(
        &mut self,
        identity: i64,
        batches: &[SealedBatch],
        keys: &HashMap<i64, String>,
        reports: &[ReportRow],
        now: i64,
    ) -> Result<Shipped, SharedError> {
        let tx = self.client.transaction().await?;
        let mut done = lock_router(&tx, &self.router, identity).await?;
        tx.batch_execute(
            "CREATE TEMP TABLE IF NOT EXISTS quid_incoming_reports (LIKE quid_reports)
                ON COMMIT DELETE ROWS;",
        )
        .await?;

        // Each (subscriber, hour) once per shipment: fewer rows to copy and to fold.
        let mut sums: BTreeMap<(i64, i64), [u128; 2 * DIR_CLASS_PAIRS]> = BTreeMap::new();
        let applied = done.last_seq;
        for b in batches.iter().filter(|b| b.seq > applied) {
            for (key, start, c) in &b.rows {
                let sum = sums.entry((*key, bucket(*start, HOUR))).or_default();
                for (s, v) in sum.iter_mut().zip(flat(c)) {
                    *s += u128::from(v.cast_unsigned());
                }
            }
            done.last_seq = b.seq;
            done.covered_until = done.covered_until.max(b.covers_until);
            done.batches += 1;
        }
        if !sums.is_empty() {
            // Straight into the delta table (no index, no conflict to check): the fold adds
            // it into the hourly rows later (`fold.rs`).
            let sink = tx
                .copy_in(&format!(
                    "COPY quid_usage_delta (router, subscriber, start, {}) FROM STDIN",
                    COUNTERS.join(", ")
                ))
                .await?;
            futures_util::pin_mut!(sink);
            let mut buf = Vec::with_capacity(CHUNK + 512);
            for ((key, start), sum) in &sums {
                let id = keys.get(key).ok_or_else(|| {
                    SharedError::Damaged(format!(
                        "an outbox batch holds subscriber key {key}, which the local store \
                         does not know"
                    ))
                })?;
                escape(&mut buf, self.router.as_str());
                buf.push(b'\t');
                escape(&mut buf, id);
                // An hour of one subscriber beyond 2^63 bytes (never real) is kept at 2^63 - 1.
                line(
                    &mut buf,
                    std::iter::once(i128::from(*start)).chain(
                        sum.iter()
                            .map(|v| i128::from(i64::try_from(*v).unwrap_or(i64::MAX))),
                    ),
                );
                done.rows += 1;
                if buf.len() >= CHUNK {
                    sink.send(Bytes::from(std::mem::take(&mut buf))).await?;
                }
            }
            sink.send(Bytes::from(buf)).await?;
            sink.finish().await?;
        }

        let fresh: Vec<&ReportRow> = reports
            .iter()
            .filter(|r| r.rowid > done.reports_cursor)
            .collect();
        if let Some(last) = fresh.last() {
            let sink = tx.copy_in("COPY quid_incoming_reports FROM STDIN").await?;
            futures_util::pin_mut!(sink);
            let mut buf = Vec::new();
            for r in &fresh {
                escape(&mut buf, &r.node);
                buf.push(b'\t');
                buf.extend_from_slice(r.seq.to_string().as_bytes());
                buf.push(b'\t');
                escape(&mut buf, &r.subscriber);
                line(
                    &mut buf,
                    [r.period_start, r.period_end]
                        .into_iter()
                        .chain(r.figures)
                        .map(i128::from),
                );
                buf.pop();
                buf.push(b'\t');
                escape(&mut buf, &r.signature);
                buf.push(b'\t');
                buf.extend_from_slice(r.received_at.to_string().as_bytes());
                buf.push(b'\t');
                escape(&mut buf, self.router.as_str());
                buf.push(b'\t');
                match &r.energy_source {
                    Some(source) => escape(&mut buf, source),
                    // COPY's NULL.
                    None => buf.extend_from_slice(b"\\N"),
                }
                buf.push(b'\n');
            }
            sink.send(Bytes::from(buf)).await?;
            sink.finish().await?;
            // Every router's copy is kept (two that differ are a node signing two reports
            // under one number); the first to arrive is the report.
            tx.execute(
                "INSERT INTO quid_report_copies (node, seq, router, signature, received_at)
                 SELECT node, seq, router, signature, received_at FROM quid_incoming_reports
                 ON CONFLICT DO NOTHING",
                &[],
            )
            .await?;
            tx.execute(
                "INSERT INTO quid_reports SELECT * FROM quid_incoming_reports
                 ON CONFLICT (node, seq) DO NOTHING",
                &[],
            )
            .await?;
            done.reports_cursor = last.rowid;
            done.reports = fresh.len() as u64;
        }

        tx.execute(
            "UPDATE quid_routers SET last_seq = $2, reports_cursor = $3, covered_until = $4,
               shipped_at = $5, batches = batches + $6, usage_rows = usage_rows + $7
             WHERE router = $1",
            &[
                &self.router.as_str(),
                &done.last_seq,
                &done.reports_cursor,
                &done.covered_until,
                &now,
                &i64::try_from(done.batches).unwrap_or(i64::MAX),
                &i64::try_from(done.rows).unwrap_or(i64::MAX),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(done)
    }
}

/// Locks the router's row (making it on first contact) and checks it belongs to `identity`.
async fn lock_router(
    tx: &tokio_postgres::Transaction<'_>,
    router: &crate::cluster::config::RouterId,
    identity: i64,
) -> Result<Shipped, SharedError> {
    tx.execute(
        "INSERT INTO quid_routers (router, store_identity) VALUES ($1, $2)
         ON CONFLICT (router) DO NOTHING",
        &[&router.as_str(), &identity],
    )
    .await?;
    let row = tx
        .query_one(
            "SELECT store_identity, last_seq, reports_cursor, covered_until FROM quid_routers
             WHERE router = $1 FOR UPDATE",
            &[&router.as_str()],
        )
        .await?;
    let theirs: i64 = row.get(0);
    if theirs != identity {
        return Err(SharedError::IdentityTaken {
            router: router.clone(),
            theirs,
            ours: identity,
        });
    }
    Ok(Shipped {
        last_seq: row.get(1),
        reports_cursor: row.get(2),
        covered_until: row.get(3),
        ..Shipped::default()
    })
}

/// `text` as a field of COPY's text format (backslash escapes for the characters it gives a
/// meaning).
fn escape(buf: &mut Vec<u8>, text: &str) {
    for b in text.bytes() {
        match b {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            _ => buf.push(b),
        }
    }
}

/// The numbers of a line after its first field, each after a tab, and the line's end.
fn line(buf: &mut Vec<u8>, numbers: impl Iterator<Item = i128>) {
    for n in numbers {
        buf.push(b'\t');
        buf.extend_from_slice(n.to_string().as_bytes());
    }
    buf.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_fields_escape_what_copy_reads_as_syntax() {
        let mut b = Vec::new();
        escape(&mut b, "a\\b\tc\nd\re");
        assert_eq!(b, b"a\\\\b\\tc\\nd\\re");
        line(&mut b, [1i128, -2, u64::MAX.into()].into_iter());
        assert!(b.ends_with(b"\t1\t-2\t18446744073709551615\n"));
    }
}
