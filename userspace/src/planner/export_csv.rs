//! `quid export usage` as CSV: one row per subscriber and bucket, written as the store streams
//! them (constant memory).

use std::io::Write;

use crate::store::{COUNTERS, ExportError, ExportRow, Resolution, Store};

/// The CSV header: subscriber id, bucket start and end (RFC 3339 UTC), the eight counters.
pub fn header() -> Vec<&'static str> {
    let mut h = vec!["subscriber", "start", "end"];
    h.extend(COUNTERS);
    h
}

/// A second as RFC 3339 UTC (one beyond jiff's range, which the books never hold, as the
/// number).
pub fn rfc3339(s: i64) -> String {
    jiff::Timestamp::from_second(s)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| s.to_string())
}

/// Writes every subscriber's rows at `resolution` starting in `[from, to)` to `out` as CSV
/// with a header; returns the rows written.
pub fn write(
    store: &Store,
    resolution: Resolution,
    from: i64,
    to: i64,
    out: impl Write,
) -> Result<u64, ExportError> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(header())
        .map_err(|e| ExportError::Write(e.into()))?;
    let mut num = itoa::Buffer::new();
    // Rows come in start order: a bucket's times are formatted once, not once per subscriber.
    let mut times = (i64::MIN, String::new(), String::new());
    let n = store.export_usage(resolution, from, to, |r: &ExportRow<'_>| {
        if times.0 != r.start {
            times = (r.start, rfc3339(r.start), rfc3339(r.end));
        }
        w.write_field(r.subscriber)?;
        w.write_field(&times.1)?;
        w.write_field(&times.2)?;
        // In `COUNTERS` order: packets then bytes of each (direction, class) pair.
        for p in &r.counters.pairs {
            w.write_field(num.format(p.packets))?;
            w.write_field(num.format(p.bytes))?;
        }
        w.write_record(None::<&[u8]>)?;
        Ok(())
    })?;
    w.flush().map_err(ExportError::Write)?;
    Ok(n)
}
