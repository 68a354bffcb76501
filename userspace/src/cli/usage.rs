//! `quid usage`: a subscriber's usage between two times, read from the store at the finest
//! resolution it still holds for the whole range.

use anyhow::bail;
use quid::{config::Config, metering::usage_query as usage, store::Store};

/// Prints `subscriber`'s usage from `from` to `to` (exclusive): the sum at the finest tier
/// still covering the range (widened to whole buckets of it), and the interval records held.
pub fn print_usage(
    config: &Config,
    subscriber: &str,
    from: &str,
    to: &str,
    json: bool,
) -> anyhow::Result<()> {
    let (from, to) = (usage::parse_time(from)?, usage::parse_time(to)?);
    if to <= from {
        bail!("--to must be after --from");
    }
    // Times past i64 mean "to the end of time": they saturate.
    let asked = (
        i64::try_from(from).unwrap_or(i64::MAX),
        i64::try_from(to).unwrap_or(i64::MAX),
    );
    let store = Store::open(&config.daemon.state_dir)?;
    let sum = store.usage_finest(subscriber, asked.0, asked.1)?;
    let covered = (
        u64::try_from(sum.from).unwrap_or(0),
        u64::try_from(sum.to).unwrap_or(0),
    );
    let rows = store.usage(subscriber, covered.0, covered.1)?;
    super::known::require_subscriber(config, &store, subscriber, || Ok(!rows.is_empty()))?;
    print!("{}", usage::render(subscriber, &rows, &sum, asked, json)?);
    Ok(())
}
