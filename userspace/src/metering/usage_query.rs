//! `quid usage`: a subscriber's usage over a time range at the finest resolution the books still
//! hold for it (see `Store::usage_finest`), with the interval records still held in it.

use anyhow::{Context as _, bail};
use quid_common::{DIR_DOWNLOAD, DIR_UPLOAD, SubscriberCounters};

use crate::{
    clock::{rfc3339_or_secs, rfc3339_or_secs_unsigned},
    kernel::counters,
    store::{Tier, TierSum, Usage},
};

/// `--from` and `--to` as unix seconds, `to` after `from`; times past i64 mean "to the end
/// of time" and saturate.
pub fn parse_range(from: &str, to: &str) -> anyhow::Result<(i64, i64)> {
    let (from, to) = (parse_time(from)?, parse_time(to)?);
    if to <= from {
        bail!("--to must be after --from");
    }
    Ok((
        i64::try_from(from).unwrap_or(i64::MAX),
        i64::try_from(to).unwrap_or(i64::MAX),
    ))
}

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

/// The answer: `sum` (from `Store::usage_finest` over the asked `[from, to)`) as the total, its
/// resolution and, when the range was widened to whole hours or days, the widened range; and
/// the interval `rows` still held in that range, as a table (or JSON).
pub fn render(
    id: &str,
    rows: &[Usage],
    sum: &TierSum,
    asked: (i64, i64),
    json: bool,
) -> anyhow::Result<String> {
    let line = |c: &SubscriberCounters| {
        let (u, d) = (
            counters::direction(c, DIR_UPLOAD),
            counters::direction(c, DIR_DOWNLOAD),
        );
        [u.packets, u.bytes, d.packets, d.bytes]
    };
    let widened = (sum.from, sum.to) != asked;
    if json {
        let records: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let [up, ub, dp, db] = line(&r.counters);
                serde_json::json!({"start": r.start, "end": r.end, "up_packets": up,
                    "up_bytes": ub, "down_packets": dp, "down_bytes": db})
            })
            .collect();
        let [up, ub, dp, db] = line(&sum.counters);
        let doc = serde_json::json!({"subscriber": id, "resolution": sum.tier.as_str(),
            "from": asked.0, "to": asked.1, "widened": widened,
            "covered_from": sum.from, "covered_to": sum.to, "rows_summed": sum.rows,
            "records": records, "total":
            {"up_packets": up, "up_bytes": ub, "down_packets": dp, "down_bytes": db}});
        return Ok(serde_json::to_string_pretty(&doc)? + "\n");
    }
    let mut out = format!("resolution: {}", sum.tier.as_str());
    if widened {
        let unit = if sum.tier == Tier::Daily {
            "days"
        } else {
            "hours"
        };
        out += &format!(
            " (widened to whole UTC {unit}: {} to {})",
            rfc3339_or_secs(sum.from),
            rfc3339_or_secs(sum.to)
        );
    }
    if sum.tier != Tier::Interval {
        out += &format!(
            "; the total sums the {} hourly and daily rows listed below",
            sum.rows
        );
    }
    out += &format!(
        "\n{:<22} {:<22} {:>12} {:>16} {:>12} {:>16}\n",
        "START", "END", "UP_PACKETS", "UP_BYTES", "DOWN_PACKETS", "DOWN_BYTES"
    );
    for r in rows {
        let [up, ub, dp, db] = line(&r.counters);
        out += &format!(
            "{:<22} {:<22} {up:>12} {ub:>16} {dp:>12} {db:>16}\n",
            rfc3339_or_secs_unsigned(r.start),
            rfc3339_or_secs_unsigned(r.end)
        );
    }
    let [up, ub, dp, db] = line(&sum.counters);
    out += &format!(
        "{:<45} {up:>12} {ub:>16} {dp:>12} {db:>16}\n",
        format!("TOTAL ({} records)", sum.rows)
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

    #[test]
    fn a_widened_range_says_its_resolution_and_the_whole_hours_it_covers() {
        let mut counters = SubscriberCounters::default();
        counters.pairs[quid_common::pair_index(DIR_DOWNLOAD, quid_common::CLASS_INTERNET)] =
            quid_common::Counter {
                packets: 3,
                bytes: 4_500,
            };
        // Asked 00:30 to 01:30; the books hold hours there: 00:00 to 02:00.
        let (from, to) = (1_793_491_200, 1_793_491_200 + 7_200);
        let sum = TierSum {
            tier: Tier::Hourly,
            from,
            to,
            rows: 2,
            counters,
        };
        let table = render("a", &[], &sum, (from + 1_800, to - 1_800), false).unwrap();
        let first = table.lines().next().unwrap();
        assert!(first.starts_with("resolution: hourly"), "{table}");
        assert!(
            first.contains("2026-11-01T00:00:00Z to 2026-11-01T02:00:00Z"),
            "{table}"
        );
        let total: Vec<&str> = table.lines().last().unwrap().split_whitespace().collect();
        assert_eq!(total[total.len() - 4..], ["0", "0", "3", "4500"]);

        let doc: serde_json::Value = serde_json::from_str(
            &render("a", &[], &sum, (from + 1_800, to - 1_800), true).unwrap(),
        )
        .unwrap();
        assert_eq!(doc["resolution"], "hourly");
        assert_eq!(doc["widened"], true);
        assert_eq!(doc["from"], from + 1_800);
        assert_eq!(doc["covered_from"], from);
        assert_eq!(doc["covered_to"], to);
        assert_eq!(doc["total"]["down_bytes"], 4_500);

        // Interval resolution: nothing widened, nothing said about it.
        let exact = TierSum {
            tier: Tier::Interval,
            ..sum
        };
        let table = render("a", &[], &exact, (from, to), false).unwrap();
        assert_eq!(table.lines().next().unwrap(), "resolution: interval");
    }
}
