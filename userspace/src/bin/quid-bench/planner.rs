//! The planner benchmark (`bench/planner.json`): a month's hourly export (CSV and Parquet, to
//! a sink that discards it), the month re-priced under another tariff, and the month's report,
//! at a store of `n` subscribers with one hourly row each for every hour of the month. Rows
//! measured replace those of the same measure, subscribers and hours; the others are kept.

use std::{path::Path, time::Instant};

use quid::{
    ledger::tariff::Tariff,
    planner::{export_csv, export_parquet, period_books, report::report, simulate::simulate},
    store::{Resolution, Store},
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
        let seconds = started.elapsed().as_secs_f64();
        let r = PlannerRow {
            measure,
            subscribers: n,
            hours,
            rows: count,
            seconds,
            rows_per_second: super::as_f64(count) / seconds.max(1e-9),
            peak_rss_bytes: peak_rss(),
        };
        println!(
            "{measure}: {count} rows in {seconds:.2} s ({:.0} rows/s), peak RSS {} MiB",
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
    Ok(rows)
}
