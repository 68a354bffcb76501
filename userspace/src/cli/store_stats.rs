//! `quid store stats`: how big the store is, per usage tier and per table, and where it is
//! heading.
//!
//! The projection is the size the file settles at once every tier holds its full retention,
//! if traffic goes on as now: the hourly tier's rows over the hours they span (at least one,
//! at most the tier's retention) are the subscribers with traffic in an hour, each adding one
//! hourly row an hour and one daily row a day; the grid journal's rows over the time they span
//! are its arrival rate. A tier's projected rows are its rate times its retention, at the
//! tier's own bytes per row now (the hourly tier's for an empty daily tier). Every other table
//! is counted as it is now, and free pages as none (incremental vacuum returns them).

use anyhow::Context as _;

use super::human::{bytes, bytes_exact, count};
use quid::{
    clock::Clock,
    clock::rfc3339_or_secs,
    config::Config,
    store::{Retention, Store, StoreStats, Tier},
};

/// Prints the store's sizes, rows, oldest rows and projection (or all of it as JSON).
pub fn print_stats(config: &Config, json: bool) -> anyhow::Result<()> {
    let store = Store::open(&config.daemon.state_dir)?;
    let stats = store.stats()?;
    let now = Clock::system().now_i64().context("reading the clock")?;
    let lag = store.rollup_lag(now, &config.store.keep)?;
    let interval = i64::try_from(config.daemon.interval_secs).unwrap_or(i64::MAX);
    let projected = project(&stats, &config.store.keep, now, interval);
    print!("{}", render(&stats, projected.as_ref(), lag, json)?);
    Ok(())
}

/// Projected rows and bytes per tier, and the file's projected bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projection {
    /// (tier, rows, bytes) once each tier holds its retention.
    pub tiers: Vec<(Tier, u64, u64)>,
    /// The file: the tiers' projected bytes plus every other table as it is now.
    pub file_bytes: u64,
}

/// The steady-state size at the current rate (see the module doc); `None` without hourly
/// rows (no rate to project from).
pub fn project(
    stats: &StoreStats,
    keep: &Retention,
    now: i64,
    interval: i64,
) -> Option<Projection> {
    let of = |t: Tier| stats.tiers.iter().find(|s| s.tier == t);
    let hourly = of(Tier::Hourly)?;
    if hourly.rows == 0 {
        return None;
    }
    let wide = |n: i64| u128::from(u64::try_from(n).unwrap_or(0));
    let hour = 3_600i64;
    // Hours the hourly tier spans, counting the current one.
    let hours = wide(
        now.saturating_sub(hourly.oldest?)
            .saturating_add(hour)
            .clamp(hour, keep.hourly_secs.max(hour))
            / hour,
    );
    let per_hour = u128::from(hourly.rows) / hours.max(1);
    let bytes_per = |t: Tier| {
        of(t)
            .filter(|s| s.rows > 0)
            .or(Some(hourly))
            .map_or((0, 1), |s| (u128::from(s.bytes), u128::from(s.rows)))
    };
    let mut tiers = Vec::new();
    let mut file = 0u128;
    for tier in Tier::ALL {
        let keep_secs = wide(keep.of(tier));
        let projected = match tier {
            Tier::Interval => {
                let Some(j) = of(tier).filter(|j| j.rows > 0) else {
                    tiers.push((tier, 0, 0));
                    continue;
                };
                let span = wide(
                    now.saturating_sub(j.oldest.unwrap_or(now))
                        .clamp(interval.max(1), keep.interval_secs.max(1)),
                );
                u128::from(j.rows) * keep_secs / span.max(1)
            }
            Tier::Hourly => per_hour * keep_secs / 3_600,
            Tier::Daily => per_hour * keep_secs / 86_400,
        };
        let (bytes, n) = bytes_per(tier);
        let bytes = projected * bytes / n.max(1);
        file += bytes;
        let clip = |x: u128| u64::try_from(x).unwrap_or(u64::MAX);
        tiers.push((tier, clip(projected), clip(bytes)));
    }
    let tier_tables = Tier::ALL.map(Tier::table);
    for (table, bytes) in &stats.tables {
        if !tier_tables.contains(&table.as_str()) {
            file += u128::from(*bytes);
        }
    }
    Some(Projection {
        tiers,
        file_bytes: u64::try_from(file).unwrap_or(u64::MAX),
    })
}

/// The table (or JSON) `quid store stats` prints.
pub fn render(
    stats: &StoreStats,
    projected: Option<&Projection>,
    lag: i64,
    json: bool,
) -> anyhow::Result<String> {
    let projected_of =
        |t: Tier| projected.and_then(|p| p.tiers.iter().find(|(x, _, _)| *x == t).copied());
    if json {
        let tiers: Vec<serde_json::Value> = stats
            .tiers
            .iter()
            .map(|t| {
                let p = projected_of(t.tier);
                serde_json::json!({"tier": t.tier.as_str(), "rows": t.rows, "bytes": t.bytes,
                    "oldest": t.oldest, "projected_rows": p.map(|p| p.1),
                    "projected_bytes": p.map(|p| p.2)})
            })
            .collect();
        let tables: Vec<serde_json::Value> = stats
            .tables
            .iter()
            .map(|(name, bytes)| serde_json::json!({"table": name, "bytes": bytes}))
            .collect();
        let doc = serde_json::json!({"file_bytes": stats.file_bytes,
            "free_bytes": stats.free_bytes, "rollup_lag_seconds": lag,
            "projected_file_bytes": projected.map(|p| p.file_bytes),
            "tiers": tiers, "tables": tables});
        return Ok(serde_json::to_string_pretty(&doc)? + "\n");
    }
    let mut out = format!(
        "file {}, {} free (returned by incremental vacuum); roll-up lag {lag} s\n",
        bytes_exact(stats.file_bytes),
        bytes_exact(stats.free_bytes)
    );
    out += &match projected {
        Some(p) => format!(
            "projected {} once every tier holds its retention at the current rate\n",
            bytes_exact(p.file_bytes)
        ),
        None => "projected: no hourly rows, no rate to project from\n".to_string(),
    };
    out += &format!(
        "\n{:<10} {:>14} {:>12} {:<22} {:>14} {:>12}\n",
        "TIER", "ROWS", "SIZE", "OLDEST", "PROJ_ROWS", "PROJ_SIZE"
    );
    for t in &stats.tiers {
        let (pr, pb) =
            projected_of(t.tier).map_or(("-".into(), "-".into()), |p| (count(p.1), bytes(p.2)));
        out += &format!(
            "{:<10} {:>14} {:>12} {:<22} {pr:>14} {pb:>12}\n",
            t.tier.as_str(),
            count(t.rows),
            bytes(t.bytes),
            t.oldest.map_or_else(|| "-".to_string(), rfc3339_or_secs)
        );
    }
    out += &format!("\n{:<24} {:>12}\n", "TABLE", "SIZE");
    for (name, size) in &stats.tables {
        out += &format!("{name:<24} {:>12}\n", bytes(*size));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use quid::store::TierStats;

    use super::*;

    #[test]
    fn the_projection_scales_each_tier_to_its_retention() {
        // One day of hourly rows for 10 subscribers at 40 bytes a row, and a day of grid
        // journal for one of them at 10 s; nothing rolled up yet.
        let day = 86_400;
        let stats = StoreStats {
            file_bytes: 1_000_000,
            free_bytes: 0,
            tiers: vec![
                TierStats {
                    tier: Tier::Interval,
                    rows: 8_640,
                    bytes: 345_600,
                    oldest: Some(0),
                },
                TierStats {
                    tier: Tier::Hourly,
                    rows: 240,
                    bytes: 9_600,
                    oldest: Some(0),
                },
                TierStats {
                    tier: Tier::Daily,
                    rows: 0,
                    bytes: 0,
                    oldest: None,
                },
            ],
            tables: vec![
                ("usage_hour".into(), 9_600),
                ("grid_journal".into(), 345_600),
                ("ledger".into(), 5_000),
            ],
        };
        let keep = Retention::default();
        let p = project(&stats, &keep, day, 10).unwrap();
        // 25 hours spanned (the current one counts): 9 subscribers an hour, rounding down.
        assert_eq!(p.tiers[0], (Tier::Interval, 17_280, 691_200));
        assert_eq!(p.tiers[1], (Tier::Hourly, 9 * 24 * 35, 9 * 24 * 35 * 40));
        assert_eq!(p.tiers[2].1, 9 * 3 * 366);
        let tiers: u64 = p.tiers.iter().map(|t| t.2).sum();
        assert_eq!(p.file_bytes, tiers + 5_000);
        let text = render(&stats, Some(&p), 0, false).unwrap();
        assert!(text.contains("projected"), "{text}");
        // Units and separators for the operator; --json keeps raw integers.
        assert!(
            text.starts_with("file 1,000,000 B (1.00 MB), 0 B free"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["usage_hour", "9.60", "kB"]),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("interval") && l.split_whitespace().nth(1) == Some("8,640")),
            "{text}"
        );
        let doc: serde_json::Value =
            serde_json::from_str(&render(&stats, Some(&p), 0, true).unwrap()).unwrap();
        assert_eq!(doc["file_bytes"], 1_000_000);
        let empty = StoreStats {
            tiers: vec![],
            ..stats
        };
        assert_eq!(project(&empty, &keep, day, 10), None);
    }
}
