//! The planner benchmark (`bench/planner.json`): a month's hourly export (CSV and Parquet, to
//! a sink that discards it) and the month re-priced under another tariff, at a store of `n`
//! subscribers with one hourly row each for every hour of the month.

use std::{path::Path, time::Instant};

use quid::{
    ledger::tariff::Tariff,
    planner::{export_csv, export_parquet, period_books, simulate::simulate},
    store::{Resolution, Store},
};
use serde::Serialize;

use super::{books, peak_rss};

/// One row of planner.json.
#[derive(Serialize)]
pub struct PlannerRow {
    measure: &'static str,
    subscribers: u32,
    /// Rows read from the books.
    rows: u64,
    seconds: f64,
    rows_per_second: f64,
    /// The process's peak resident memory after the measurement (VmHWM; it never falls, so
    /// each row bounds the measurements before it too).
    peak_rss_bytes: u64,
}

/// Measures at `n` subscribers x `hours` hourly rows, the store built under `scratch`.
pub fn run(out: &Path, n: u32, hours: u64, scratch: &Path) -> anyhow::Result<()> {
    let dir = scratch.join(format!("quid-planner-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = measure(&dir, n, hours);
    let _ = std::fs::remove_dir_all(&dir);
    let rows = result?;
    std::fs::create_dir_all(out)?;
    std::fs::write(
        out.join("planner.json"),
        serde_json::to_string_pretty(&rows)? + "\n",
    )?;
    Ok(())
}

fn measure(dir: &Path, n: u32, hours: u64) -> anyhow::Result<Vec<PlannerRow>> {
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
    let t = Instant::now();
    let count = export_csv::write(&store, Resolution::Hour, from, to, std::io::sink())?;
    row("export_hour_csv", count, t);
    let t = Instant::now();
    let count = export_parquet::write(&store, Resolution::Hour, from, to, std::io::sink())?;
    row("export_hour_parquet", count, t);
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
    Ok(rows)
}
