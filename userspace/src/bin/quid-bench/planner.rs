//! The planner benchmark (`bench/planner.json`): a month's hourly export (CSV and Parquet, to
//! a sink that discards it), the month re-priced under another tariff, and the month's report,
//! at a store of `n` subscribers with one hourly row each for every hour of the month. Rows
//! measured replace those of the same measure, subscribers and hours; the others are kept.

use std::{path::Path, time::Instant};

use quid::{
    ledger::tariff::Tariff,
    planner::{
        export_csv, export_parquet, month_fold, period_books,
        report::{ReadFrom, report},
        simulate::simulate,
    },
    store::{DigestCursor, DigestWrites, MonthDigest, PlanHour, Resolution, Store},
};
use serde::Serialize;

use super::{books, peak_rss};

/// What the benchmark measures (each alone gives its own peak RSS: it only ever rises).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Measure {
    ExportHourCsv,
    ExportHourParquet,
    TariffSimulate,
    Report,
    /// Folding the store's first day into the month digests (the daemon's daily pass).
    FoldDay,
    /// The report of a whole month (744 hours) read from month digests.
    ReportMonthDigests,
}

/// One row of planner.json.
#[derive(Serialize)]
pub struct PlannerRow {
    measure: &'static str,
    subscribers: u32,
    /// Hours of hourly rows per subscriber.
    hours: u64,
    /// Rows read from the books.
    rows: u64,
    seconds: f64,
    rows_per_second: f64,
    /// The process's peak resident memory after the measurement (VmHWM; it never falls, so
    /// each row bounds the measurements before it too).
    peak_rss_bytes: u64,
}

/// Measures at `n` subscribers x `hours` hourly rows, the store built under `scratch`.
pub fn run(
    out: &Path,
    n: u32,
    hours: u64,
    scratch: &Path,
    measures: &[Measure],
) -> anyhow::Result<()> {
    let dir = scratch.join(format!("quid-planner-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = measure(&dir, n, hours, measures);
    let _ = std::fs::remove_dir_all(&dir);
    let rows = result?;
    std::fs::create_dir_all(out)?;
    let path = out.join("planner.json");
    // The rows measured before, except those measured again now.
    let mut all: Vec<serde_json::Value> = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)?,
        Err(_) => Vec::new(),
    };
    let new: Vec<serde_json::Value> = rows
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;
    let same = |a: &serde_json::Value, b: &serde_json::Value| {
        ["measure", "subscribers", "hours"]
            .iter()
            .all(|k| a.get(k) == b.get(k))
    };
    all.retain(|old| !new.iter().any(|n| same(old, n)));
    all.extend(new);
    std::fs::write(&path, serde_json::to_string_pretty(&all)? + "\n")?;
    Ok(())
}

fn measure(
    dir: &Path,
    n: u32,
    hours: u64,
    measures: &[Measure],
) -> anyhow::Result<Vec<PlannerRow>> {
    books::hourly_store(dir, n, hours)?;
    let store = Store::connect(dir)?;
    let from = i64::try_from(books::T0)?;
    let to = from + i64::try_from(hours)? * 3_600;
    let mut rows = Vec::new();
    let mut row = |measure, count: u64, started: Instant| {
        let r = row_of(measure, count, started, n, hours);
        println!(
            "{measure}: {count} rows in {:.2} s ({:.0} rows/s), peak RSS {} MiB",
            r.seconds,
            r.rows_per_second,
            r.peak_rss_bytes >> 20
        );
        rows.push(r);
    };
    let wants = |m| measures.is_empty() || measures.contains(&m);
    if wants(Measure::ExportHourCsv) {
        let t = Instant::now();
        let count = export_csv::write(&store, Resolution::Hour, from, to, std::io::sink())?;
        row("export_hour_csv", count, t);
    }
    if wants(Measure::ExportHourParquet) {
        let t = Instant::now();
        let count = export_parquet::write(&store, Resolution::Hour, from, to, std::io::sink())?;
        row("export_hour_parquet", count, t);
    }
    if wants(Measure::TariffSimulate) {
        let t = Instant::now();
        let books = period_books::read(&store, from, to)?;
        let current = Tariff {
            download_internet_gb: 10_000,
            ..Tariff::default()
        };
        let new = Tariff {
            download_internet_gb: 12_000,
            ..Tariff::default()
        };
        let sim = simulate(&books, &current, &new);
        anyhow::ensure!(sim.fleet.subscribers == u64::from(n), "{:?}", sim.fleet);
        row("tariff_simulate", u64::from(n) * hours, t);
    }
    if wants(Measure::Report) {
        // The month with three previous months to compare with (empty here: read all the same).
        let t = Instant::now();
        let month = 31 * 86_400;
        let previous: Vec<(i64, i64)> = (1..=3)
            .map(|k| (from - k * month, from - (k - 1) * month))
            .collect();
        let mut subscribers = 0u64;
        let r = report(&store, from, to, &previous, |_| subscribers += 1)?;
        anyhow::ensure!(
            r.fleet.active == u64::from(n) && subscribers == u64::from(n),
            "{} active, {subscribers} percentiles",
            r.fleet.active
        );
        row("report", u64::from(n) * hours, t);
    }
    if wants(Measure::FoldDay) {
        anyhow::ensure!(hours >= 24, "folding a day needs --hours 24 or more");
        books::set_last_interval_end(dir, to)?;
        // A day into digests that already hold one (read, merged, rewritten) when the store
        // has two, as every day after a month's first is folded.
        let fold_day = || -> anyhow::Result<()> {
            let mut days = 0;
            while days == 0 {
                // One batch a call, so the day's last batch ends it.
                let p = month_fold::fold(&store, std::time::Duration::ZERO)?;
                days += p.days;
                anyhow::ensure!(p.days > 0 || !p.caught_up, "nothing to fold: {p:?}");
            }
            Ok(())
        };
        if hours >= 48 {
            fold_day()?;
        }
        let t = Instant::now();
        fold_day()?;
        row("fold_day", u64::from(n) * 24, t);
    }
    if wants(Measure::ReportMonthDigests) {
        // January 2026: 744 hours, the longest month, digests as the daily pass leaves them.
        let month = (from, from + 31 * 86_400);
        month_digests(&store, n, month)?;
        let t = Instant::now();
        let mut subscribers = 0u64;
        let r = report(&store, month.0, month.1, &[], |_| subscribers += 1)?;
        anyhow::ensure!(
            r.read_from == ReadFrom::MonthDigests
                && r.fleet.active == u64::from(n)
                && subscribers == u64::from(n),
            "{:?}: {} active, {subscribers} percentiles",
            r.read_from,
            r.fleet.active
        );
        let r = row_of("report_month_digests", u64::from(n), t, n, 744);
        println!(
            "report_month_digests: {n} digests in {:.2} s, peak RSS {} MiB",
            r.seconds,
            r.peak_rss_bytes >> 20
        );
        rows.push(r);
    }
    Ok(rows)
}

/// A measured row of `count` rows read since `started`.
fn row_of(measure: &'static str, count: u64, started: Instant, n: u32, hours: u64) -> PlannerRow {
    let seconds = started.elapsed().as_secs_f64();
    PlannerRow {
        measure,
        subscribers: n,
        hours,
        rows: count,
        seconds,
        rows_per_second: super::as_f64(count) / seconds.max(1e-9),
        peak_rss_bytes: peak_rss(),
    }
}

/// Writes the month digests of `n` subscribers for `month` as a whole month of daily passes
/// leaves them (every subscriber on one plan with its 38 largest hours each way, and the plan's
/// bytes for every hour), through the store's own fold writer, and marks the month folded.
fn month_digests(store: &Store, n: u32, (from, to): (i64, i64)) -> anyhow::Result<()> {
    let started = Instant::now();
    let keys = i64::from(n);
    let mut key = 1i64;
    let mut plan = None;
    while key <= keys {
        let hi = (key + 8_192).min(keys + 1);
        let folder = store.digest_folder()?;
        let at = folder.digest_cursor()?;
        let id = match plan {
            Some(id) => id,
            None => *plan.insert(folder.digest_plan_id("bench")?),
        };
        let top = |k: i64, scale: u64| -> Vec<u64> {
            (0..38u64)
                .map(|i| (k.unsigned_abs() % 50 + 1) * scale * (1_000 - i))
                .collect()
        };
        let writes = DigestWrites {
            month: from,
            digests: (key..hi)
                .map(|k| {
                    (
                        k,
                        MonthDigest {
                            plans: vec![id],
                            down: k.unsigned_abs() * 744,
                            up: k.unsigned_abs() * 93,
                            top_down: top(k, 1_234),
                            top_up: top(k, 77),
                        },
                    )
                })
                .collect(),
            plan_hours: if key == 1 {
                (from..to)
                    .step_by(3_600)
                    .map(|h| {
                        (
                            h,
                            id,
                            PlanHour {
                                internet_down: u64::from(n) * 1_000,
                                internet_up: u64::from(n) * 100,
                                ..PlanHour::default()
                            },
                        )
                    })
                    .collect()
            } else {
                Vec::new()
            },
        };
        let next = DigestCursor {
            since: from,
            day: if hi > keys { to } else { from },
            key: if hi > keys { 0 } else { hi },
        };
        anyhow::ensure!(folder.commit_fold(at, next, &writes)?, "the cursor moved");
        key = hi;
    }
    log::info!(
        "month digests written in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
