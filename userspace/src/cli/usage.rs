//! `quid usage`: a subscriber's usage records between two times, read from the store.

use anyhow::bail;
use quid::{config::Config, metering::usage_query as usage, store::Store};

/// Prints `subscriber`'s records from `from` to `to` (exclusive) with their sum.
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
    let store = Store::open(&config.daemon.state_dir)?;
    let rows = store.usage(subscriber, from, to)?;
    print!("{}", usage::render(subscriber, &rows, json)?);
    Ok(())
}
