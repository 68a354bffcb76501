//! `quid export usage`: every subscriber's usage rows over a range, as CSV, streamed from the
//! books to stdout or a file.

use std::{io::Write as _, path::Path};

use anyhow::{Context as _, bail};
use quid::{
    config::Config,
    metering::usage_query::parse_time,
    planner::export_csv,
    store::{Resolution, Store},
};

/// Writes the rows at `resolution` (`hour` or `day`) starting in `[from, to)` as `format` to
/// `out` (stdout when `None`); says on stderr how many rows were written.
pub fn usage(
    config: &Config,
    from: &str,
    to: &str,
    resolution: &str,
    format: &str,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let resolution = match resolution {
        "hour" => Resolution::Hour,
        "day" => Resolution::Day,
        other => bail!("--resolution `{other}` is not known: use hour or day"),
    };
    if format != "csv" {
        bail!(
            "--format `{format}` is not supported: use csv (Parquet is not built yet; DuckDB and \
             pandas read the CSV directly)"
        );
    }
    let (from, to) = (parse_time(from)?, parse_time(to)?);
    if to <= from {
        bail!("--to must be after --from");
    }
    let (from, to) = (quid::store::secs(from), quid::store::secs(to));
    let store = Store::open(&config.daemon.state_dir)?;
    let rows = match out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let mut w = std::io::BufWriter::new(file);
            let n = export_csv::write(&store, resolution, from, to, &mut w)?;
            w.flush()
                .with_context(|| format!("cannot write {}", path.display()))?;
            n
        }
        None => {
            let stdout = std::io::stdout().lock();
            export_csv::write(
                &store,
                resolution,
                from,
                to,
                std::io::BufWriter::new(stdout),
            )?
        }
    };
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
