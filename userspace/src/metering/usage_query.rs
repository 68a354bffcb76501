//! `quid usage`: a subscriber's interval records over a time range, and their sum.

use anyhow::{Context as _, bail};
use quid_common::{DIR_DOWNLOAD, DIR_UPLOAD, SubscriberCounters};

use crate::{kernel::counters, store::Usage};

/// A time as unix seconds: RFC 3339 (`2026-11-01T00:00:00Z`), a UTC date (`2026-11-01`), or
/// plain unix seconds.
pub fn parse_time(text: &str) -> anyhow::Result<u64> {
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(secs);
    }
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return u64::try_from(ts.as_second()).context("times before 1970 are not supported");
    }
    if let Ok(date) = text.parse::<jiff::civil::Date>() {
        let ts = date
            .to_zoned(jiff::tz::TimeZone::UTC)
            .context("date out of range")?
            .timestamp();
        return u64::try_from(ts.as_second()).context("times before 1970 are not supported");
    }
    bail!("`{text}` is not a time: use 2026-11-01T00:00:00Z, 2026-11-01 or unix seconds")
}

/// The sum of usage records.
pub fn sum(rows: &[Usage]) -> SubscriberCounters {
    let mut total = SubscriberCounters::default();
    for r in rows {
        total.add(&r.counters);
    }
    total
}

/// The records as a table (or JSON) with their sum.
pub fn render(id: &str, rows: &[Usage], json: bool) -> anyhow::Result<String> {
    let line = |c: &SubscriberCounters| {
        let (u, d) = (
            counters::direction(c, DIR_UPLOAD),
            counters::direction(c, DIR_DOWNLOAD),
        );
        [u.packets, u.bytes, d.packets, d.bytes]
    };
    let total = sum(rows);
    if json {
        let records: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let [up, ub, dp, db] = line(&r.counters);
                serde_json::json!({"start": r.start, "end": r.end, "up_packets": up,
                    "up_bytes": ub, "down_packets": dp, "down_bytes": db})
            })
            .collect();
        let [up, ub, dp, db] = line(&total);
        let doc = serde_json::json!({"subscriber": id, "records": records, "total":
            {"up_packets": up, "up_bytes": ub, "down_packets": dp, "down_bytes": db}});
        return Ok(serde_json::to_string_pretty(&doc)? + "\n");
    }
    let mut out = format!(
        "{:<22} {:<22} {:>12} {:>16} {:>12} {:>16}\n",
        "START", "END", "UP_PACKETS", "UP_BYTES", "DOWN_PACKETS", "DOWN_BYTES"
    );
    // A second no timestamp can hold (beyond i64 or jiff's range) is shown as the number.
    let when = |s: u64| {
        i64::try_from(s)
            .ok()
            .and_then(|secs| jiff::Timestamp::from_second(secs).ok())
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| s.to_string())
    };
    for r in rows {
        let [up, ub, dp, db] = line(&r.counters);
        out += &format!(
            "{:<22} {:<22} {up:>12} {ub:>16} {dp:>12} {db:>16}\n",
            when(r.start),
            when(r.end)
        );
    }
    let [up, ub, dp, db] = line(&total);
    out += &format!(
        "{:<45} {up:>12} {ub:>16} {dp:>12} {db:>16}\n",
        format!("TOTAL ({} records)", rows.len())
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_three_forms_and_garbage_is_refused() {
        assert_eq!(parse_time("1700000000").unwrap(), 1_700_000_000);
        assert_eq!(parse_time("2026-11-01T00:00:00Z").unwrap(), 1_793_491_200);
        assert_eq!(parse_time("2026-11-01").unwrap(), 1_793_491_200);
        assert!(
            parse_time("yesterday")
                .unwrap_err()
                .to_string()
                .contains("is not a time")
        );
    }
}
