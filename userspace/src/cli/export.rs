//! `quid export usage`: every subscriber's usage rows over a range, as CSV, streamed from the
//! books to stdout or a file.

use std::{io::Write as _, path::PathBuf};

use anyhow::{Context as _, bail};
use quid::{
    config::Config,
    metering::usage_query::parse_time,
    planner::{export_csv, export_parquet},
    store::{Resolution, Store},
};

/// `quid export usage` as given on the command line.
#[derive(clap::Args)]
pub struct UsageArgs {
    /// Start (RFC 3339 like 2026-11-01T00:00:00Z, a date like 2026-11-01, or unix seconds).
    #[arg(long)]
    pub from: String,
    /// End, exclusive (same forms as --from).
    #[arg(long)]
    pub to: String,
    /// hour (the hourly rows still held) or day (whole UTC days, from both tiers).
    #[arg(long, value_enum, default_value = "hour")]
    pub resolution: ResolutionArg,
    /// Output format: csv or parquet (the same columns).
    #[arg(long, value_enum, default_value = "csv")]
    pub format: Format,
    /// Write to FILE instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, short, default_value = "/etc/quid/quid.toml")]
    pub config: PathBuf,
}

/// `--resolution`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ResolutionArg {
    Hour,
    Day,
}

/// `--format`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Csv,
    /// Uncompressed Parquet, the same columns (times as UTC timestamps).
    Parquet,
}

/// Writes the rows at the resolution asked starting in `[from, to)` as `--format` to `--out` (stdout
/// without it); says on stderr how many rows were written.
pub fn usage(a: UsageArgs) -> anyhow::Result<()> {
    let config = Config::load(&a.config)?;
    let resolution = match a.resolution {
        ResolutionArg::Hour => Resolution::Hour,
        ResolutionArg::Day => Resolution::Day,
    };
    let out = a.out.as_deref();
    let (from, to) = (parse_time(&a.from)?, parse_time(&a.to)?);
    if to <= from {
        bail!("--to must be after --from");
    }
    let (from, to) = (quid::store::secs(from), quid::store::secs(to));
    let store = Store::open(&config.daemon.state_dir)?;
    let mut sink: Box<dyn std::io::Write + Send> = match out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let rows = match a.format {
        Format::Csv => export_csv::write(&store, resolution, from, to, &mut sink)?,
        Format::Parquet => export_parquet::write(&store, resolution, from, to, &mut sink)?,
    };
    sink.flush().context("cannot write the export")?;
    eprintln!("{rows} rows exported");
    if resolution == Resolution::Hour
        && let Some(oldest) = store.oldest_hour()?
        && from < oldest
    {
        eprintln!(
            "note: hours before {} are rolled up into days; export them with --resolution day",
            export_csv::rfc3339(oldest)
        );
    }
    Ok(())
}
