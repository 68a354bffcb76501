//! `quid report`: a month's figures per plan and for the fleet, as a table, JSON, CSV or a
//! self-contained HTML page with charts.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use quid::{
    clock::{self, Clock},
    config::Config,
    kernel::attach_settings::Role,
    ledger::chain::credits_wide,
    planner::{
        report::{PREVIOUS, PlanReport, ReadFrom, Report, report},
        report_csv, report_html, report_parquet, subscriber_csv, subscriber_parquet,
        uplink::uplink,
    },
    store::Store,
};

use super::human;

/// `quid report` as given on the command line.
#[derive(clap::Args)]
pub struct ReportArgs {
    /// The month, YYYY-MM (UTC); the last complete month by default.
    #[arg(long)]
    pub period: Option<String>,
    /// Print it as JSON (exact integers: bytes, micro-credits, base units).
    #[arg(long)]
    pub json: bool,
    /// Also write the per-plan rows as CSV to FILE.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Also write the per-plan rows as Parquet to FILE (the CSV's columns).
    #[arg(long, value_name = "FILE")]
    pub parquet: Option<PathBuf>,
    /// Also write one row per subscriber to FILE as CSV: its plans and its own 95th percentile
    /// of hourly bytes, per direction (bytes per hour and bits per second), and its bytes.
    #[arg(long, value_name = "FILE")]
    pub subscribers_csv: Option<PathBuf>,
    /// Also write the subscribers' rows (as `--subscribers-csv`) as Parquet to FILE.
    #[arg(long, value_name = "FILE")]
    pub subscribers_parquet: Option<PathBuf>,
    /// Also write the report as one self-contained HTML page with charts to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// The share of the core interfaces' capacity (percent) whose crossing by forecast demand
    /// is looked for (with `capacity_bits_per_second` set on them).
    #[arg(long, default_value_t = 80.0)]
    pub threshold: f64,
    #[arg(long, short, default_value = "/etc/quid/quid.toml")]
    pub config: PathBuf,
}

/// Prints the report of `--period` and writes the files asked for.
pub fn report_cmd(a: ReportArgs) -> anyhow::Result<()> {
    let config = Config::load(&a.config)?;
    let period = match a.period.clone() {
        Some(p) => p,
        None => clock::previous_month(Clock::system().now_i64()?)?,
    };
    let (from, to) = clock::month_bounds(&period)?;
    // The months before, most recent first.
    let mut previous = Vec::new();
    let mut start = from;
    for _ in 0..PREVIOUS {
        let month = clock::previous_month(start)?;
        let bounds = clock::month_bounds(&month)?;
        previous.push(bounds);
        start = bounds.0;
    }
    let store = Store::open(&config.daemon.state_dir)?;
    let mut r = if a.subscribers_csv.is_none() && a.subscribers_parquet.is_none() {
        report(&store, from, to, &previous, |_| {})?
    } else {
        subscribers_report(&a, &store, &period, (from, to), &previous)?
    };
    // The core interfaces' capacity together, if any is configured.
    let capacity = config
        .interfaces
        .iter()
        .filter(|i| i.role != Role::Access)
        .filter_map(|i| i.capacity_bits_per_second)
        .fold(None, |sum: Option<u64>, c| {
            Some(sum.unwrap_or(0).saturating_add(c))
        });
    r.uplink = capacity.map(|c| uplink(&r, c, a.threshold));
    if let Some(path) = &a.csv {
        write_file(path, |f| {
            report_csv::write(&r, &period, f).map_err(anyhow::Error::from)
        })?;
    }
    if let Some(path) = &a.parquet {
        write_file(path, |f| {
            report_parquet::write(&r, &period, f).map_err(anyhow::Error::from)
        })?;
    }
    if let Some(path) = &a.html {
        let page = report_html::page(&period, &r)?;
        write_file(path, |f| {
            std::io::Write::write_all(f, page.as_bytes()).map_err(anyhow::Error::from)
        })?;
    }
    if a.json {
        let mut value = serde_json::to_value(&r)?;
        value["period"] = serde_json::Value::String(period.clone());
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", render(&period, &r));
    }
    Ok(())
}

/// The report of `[from, to)`, writing each subscriber's row to the files asked for as it is
/// computed.
fn subscribers_report(
    a: &ReportArgs,
    store: &Store,
    period: &str,
    (from, to): (i64, i64),
    previous: &[(i64, i64)],
) -> anyhow::Result<Report> {
    let names = subscriber_csv::Names::read(store)?;
    let create = |path: &Path| {
        std::fs::File::create(path)
            .map(std::io::BufWriter::new)
            .with_context(|| format!("cannot create {}", path.display()))
    };
    let mut csv = match &a.subscribers_csv {
        Some(p) => Some(subscriber_csv::Writer::new(create(p)?, &names, period)?),
        None => None,
    };
    let mut parquet = match &a.subscribers_parquet {
        Some(p) => Some(subscriber_parquet::Writer::new(create(p)?, &names, period)?),
        None => None,
    };
    // The first write error of each file, kept until the report returns.
    let (mut csv_failed, mut parquet_failed) = (None, None);
    let r = report(store, from, to, previous, |s| {
        if let Some(w) = csv.as_mut().filter(|_| csv_failed.is_none()) {
            csv_failed = w.row(s).err();
        }
        if let Some(w) = parquet.as_mut().filter(|_| parquet_failed.is_none()) {
            parquet_failed = w.row(s).err();
        }
    })?;
    if let (Some(w), Some(path)) = (csv, &a.subscribers_csv) {
        csv_failed
            .map_or_else(|| w.finish(), Err)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let (Some(w), Some(path)) = (parquet, &a.subscribers_parquet) {
        parquet_failed
            .map_or_else(|| w.finish(), Err)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(r)
}

/// Creates `path` and lets `write` fill it.
fn write_file(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    write(&mut out).with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::flush(&mut out).with_context(|| format!("cannot write {}", path.display()))
}

/// Bits per second of `bytes` over an hour.
fn rate(bytes: u64) -> String {
    let bps = bytes.saturating_mul(8) / 3_600;
    if bps >= 1_000_000 {
        format!("{:.1} Mb/s", bps as f64 / 1e6)
    } else {
        format!("{:.1} kb/s", bps as f64 / 1e3)
    }
}

/// The table.
fn render(period: &str, r: &Report) -> String {
    let mut out = String::new();
    let when = |t: i64| clock::rfc3339_or_secs(t);
    let _ = writeln!(
        out,
        "{period}: hourly figures over {} .. {} (read from {})",
        when(r.hours_from),
        when(r.hours_to),
        match r.read_from {
            ReadFrom::MonthDigests => "the month digests",
            ReadFrom::HourlyRows => "the hourly and daily rows",
        }
    );
    let _ = writeln!(
        out,
        "peak hour {}; busy hour of the day {}",
        r.peak_hour.map_or_else(|| "-".to_owned(), when),
        r.busy_hour_of_day
            .map_or_else(|| "-".to_owned(), |h| format!("{h:02}:00 UTC")),
    );
    let _ = writeln!(
        out,
        "{:<14} {:>7} {:>7} {:>10} {:>10} {:>10} {:>12} {:>12} {:>12} {:>16} {:>16} {:>16} {:>8}",
        "plan",
        "active",
        "contrib",
        "down",
        "up",
        "grid",
        "peak down",
        "busy down",
        "p95 down",
        "credits",
        "debits",
        "net",
        "growth"
    );
    let row = |out: &mut String, p: &PlanReport| {
        let grid = p.bytes.grid.total();
        let _ = writeln!(
            out,
            "{:<14} {:>7} {:>7} {:>10} {:>10} {:>10} {:>12} {:>12} {:>12} {:>16} {:>16} {:>16} {:>8}",
            p.plan,
            p.active,
            p.contributing,
            human::bytes(p.bytes.internet.down),
            human::bytes(p.bytes.internet.up),
            human::bytes(grid),
            rate(p.peak_hour.down),
            rate(p.busy_hour_average.down),
            rate(p.p95_hour.down),
            credits_wide(p.credits),
            credits_wide(p.debits),
            credits_wide(p.net),
            p.growth_percent
                .map_or_else(|| "-".to_owned(), |g| format!("{g:+.1}%")),
        );
    };
    for p in &r.plans {
        row(&mut out, p);
    }
    row(&mut out, &r.fleet);
    if let Some(u) = &r.uplink {
        let _ = writeln!(
            out,
            "uplinks ({} Mb/s): peak {:.1}%, 95th percentile {:.1}%; forecast passes {:.0}%: {}",
            u.capacity_bits_per_second / 1_000_000,
            u.peak_percent,
            u.p95_percent,
            u.threshold_percent,
            u.crossing_text(),
        );
    }
    if let Some(s) = &r.supply {
        let pct = |g: Option<f64>| g.map_or_else(|| "-".to_owned(), |g| format!("{g:+.1}%"));
        let _ = writeln!(
            out,
            "supply vs demand: credits {} and debits {} a month; credits stop covering debits: {}",
            pct(s.credits_growth_percent),
            pct(s.debits_growth_percent),
            s.text(),
        );
    }
    let c = &r.fleet.contributions;
    let _ = writeln!(
        out,
        "contributions: {} reports, {:.1} core-hours, {:.1} GiB-days, {:.3} kWh",
        c.reports,
        c.cpu_core_micros as f64 / 3.6e9,
        c.storage_byte_seconds as f64 / (1_073_741_824.0 * 86_400.0),
        c.energy_microjoules as f64 / 3.6e12,
    );
    out
}
