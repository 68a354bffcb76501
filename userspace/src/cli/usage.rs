//! `quid usage`: a subscriber's usage between two times, read from the store at the finest
//! resolution it still holds for the whole range. Grid and Internet bytes are shown apart,
//! since settlement prices them differently.

use quid::{
    clock::rfc3339_or_secs_unsigned,
    config::Config,
    metering::usage_query as usage,
    store::{Store, TierSum, Usage},
};
use quid_common::{
    CLASS_GRID, CLASS_INTERNET, Counter, DIR_DOWNLOAD, DIR_UPLOAD, SubscriberCounters, pair_index,
};

use super::human::{bytes, bytes_exact, count};

/// Prints `subscriber`'s usage from `from` to `to` (exclusive): the sum at the finest tier
/// still covering the range (widened to whole buckets of it), and the interval records held.
pub fn print_usage(
    config: &Config,
    subscriber: &str,
    from: &str,
    to: &str,
    json: bool,
) -> anyhow::Result<()> {
    let asked = usage::parse_range(from, to)?;
    let store = Store::open(&config.daemon.state_dir)?;
    let sum = store.usage_finest(subscriber, asked.0, asked.1)?;
    let covered = (
        u64::try_from(sum.from).unwrap_or(0),
        u64::try_from(sum.to).unwrap_or(0),
    );
    let rows = store.usage(subscriber, covered.0, covered.1)?;
    super::known::require_subscriber(config, &store, subscriber, || Ok(!rows.is_empty()))?;
    if json {
        print!(
            "{}",
            with_classes(
                &usage::render(subscriber, &rows, &sum, asked, true)?,
                &rows,
                &sum
            )?
        );
    } else {
        print!("{}", render_human(&rows, &sum, asked)?);
    }
    Ok(())
}

/// One direction's counter in one class.
fn class(c: &SubscriberCounters, direction: usize, class: usize) -> Counter {
    c.pairs[pair_index(direction, class)]
}

/// `{"internet": {...}, "grid": {...}}`: the raw figures of `c` by class.
fn by_class(c: &SubscriberCounters) -> serde_json::Value {
    let of = |k| {
        let (u, d) = (class(c, DIR_UPLOAD, k), class(c, DIR_DOWNLOAD, k));
        serde_json::json!({"up_packets": u.packets, "up_bytes": u.bytes,
            "down_packets": d.packets, "down_bytes": d.bytes})
    };
    serde_json::json!({"internet": of(CLASS_INTERNET), "grid": of(CLASS_GRID)})
}

/// The usage JSON with the grid/Internet split added: `by_class` in each record and
/// `total_by_class` beside `total` (the other fields as they were).
fn with_classes(doc: &str, rows: &[Usage], sum: &TierSum) -> anyhow::Result<String> {
    let mut doc: serde_json::Value = serde_json::from_str(doc)?;
    if let Some(records) = doc["records"].as_array_mut() {
        for (record, row) in records.iter_mut().zip(rows) {
            record["by_class"] = by_class(&row.counters);
        }
    }
    doc["total_by_class"] = by_class(&sum.counters);
    Ok(serde_json::to_string_pretty(&doc)? + "\n")
}

/// The table: the resolution line, each record's bytes by direction and class with units,
/// then each direction's exact total and its split.
fn render_human(rows: &[Usage], sum: &TierSum, asked: (i64, i64)) -> anyhow::Result<String> {
    // The resolution (and widened range) line is the one `usage_query` words for the books:
    // its first line, rendered without records.
    let plain = usage::render("", &[], sum, asked, false)?;
    let mut out = plain.lines().next().unwrap_or_default().to_owned();
    // Every line of the table: a 45-column label (the record's start and end, or the total)
    // and the four figures.
    let table_line = |label: String, cells: [String; 4]| {
        let [a, b, c, d] = cells;
        format!("{label:<45} {a:>12} {b:>12} {c:>12} {d:>12}\n")
    };
    let figures = |c: &SubscriberCounters| {
        [
            (DIR_UPLOAD, CLASS_INTERNET),
            (DIR_UPLOAD, CLASS_GRID),
            (DIR_DOWNLOAD, CLASS_INTERNET),
            (DIR_DOWNLOAD, CLASS_GRID),
        ]
        .map(|(d, k)| bytes(class(c, d, k).bytes))
    };
    out += "\n";
    out += &table_line(
        format!("{:<22} END", "START"),
        ["UP_INTERNET", "UP_GRID", "DOWN_INTERNET", "DOWN_GRID"].map(String::from),
    );
    for r in rows {
        let label = format!(
            "{:<22} {}",
            rfc3339_or_secs_unsigned(r.start),
            rfc3339_or_secs_unsigned(r.end)
        );
        out += &table_line(label, figures(&r.counters));
    }
    out += &table_line(
        format!("TOTAL ({} records)", sum.rows),
        figures(&sum.counters),
    );
    for (name, d) in [("upload:  ", DIR_UPLOAD), ("download:", DIR_DOWNLOAD)] {
        let (i, g) = (
            class(&sum.counters, d, CLASS_INTERNET),
            class(&sum.counters, d, CLASS_GRID),
        );
        let mut all = i;
        all.add(&g);
        out += &format!(
            "{name} {} in {} packets: Internet {}, grid {}\n",
            bytes_exact(all.bytes),
            count(all.packets),
            bytes_exact(i.bytes),
            bytes_exact(g.bytes)
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use quid::store::Tier;

    use super::*;

    #[test]
    fn the_table_shows_units_and_grid_apart_from_internet() {
        let mut counters = SubscriberCounters::default();
        counters.pairs[pair_index(DIR_DOWNLOAD, CLASS_INTERNET)] = Counter {
            packets: 3_000,
            bytes: 4_160_000,
        };
        counters.pairs[pair_index(DIR_DOWNLOAD, CLASS_GRID)] = Counter {
            packets: 2,
            bytes: 1_500,
        };
        counters.pairs[pair_index(DIR_UPLOAD, CLASS_GRID)] = Counter {
            packets: 1,
            bytes: 600,
        };
        let (from, to) = (1_793_491_200, 1_793_491_200 + 3_600);
        let row = Usage {
            start: 1_793_491_200,
            end: 1_793_491_210,
            counters,
        };
        let sum = TierSum {
            tier: Tier::Interval,
            from,
            to,
            rows: 1,
            counters,
        };
        let text = render_human(std::slice::from_ref(&row), &sum, (from, to)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "resolution: interval", "{text}");
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            [
                "2026-11-01T00:00:00Z",
                "2026-11-01T00:00:10Z",
                "0",
                "B",
                "600",
                "B",
                "4.16",
                "MB",
                "1.50",
                "kB"
            ],
            "{text}"
        );
        assert_eq!(
            lines[4], "upload:   600 B in 1 packets: Internet 0 B, grid 600 B",
            "{text}"
        );
        assert_eq!(
            lines[5],
            "download: 4,161,500 B (4.16 MB) in 3,002 packets: Internet 4,160,000 B (4.16 MB), \
             grid 1,500 B (1.50 kB)",
            "{text}"
        );

        let doc = usage::render("a", &[row], &sum, (from, to), true).unwrap();
        let doc: serde_json::Value =
            serde_json::from_str(&with_classes(&doc, &[row], &sum).unwrap()).unwrap();
        assert_eq!(doc["total"]["down_bytes"], 4_161_500);
        assert_eq!(doc["total_by_class"]["grid"]["down_bytes"], 1_500);
        assert_eq!(doc["total_by_class"]["internet"]["down_bytes"], 4_160_000);
        assert_eq!(doc["records"][0]["by_class"]["grid"]["up_bytes"], 600);
    }
}
