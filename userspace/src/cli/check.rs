//! `quid check`: everything `quid run` would refuse before touching the kernel, without it.

use std::path::Path;

use quid::{config::Config, daemon::preflight::preflight};

/// Checks the config at `path` and says what it holds.
pub fn check(path: &Path) -> anyhow::Result<()> {
    let cfg = Config::load(path)?;
    // Everything `quid run` would refuse before touching the kernel.
    let table = preflight(&cfg)?.table;
    let (v4, v6) = table.prefix_counts();
    println!(
        "{}: ok; {} subscribers, {v4} IPv4 and {v6} IPv6 prefixes, {} interfaces",
        path.display(),
        table.subscribers.len(),
        cfg.interfaces.len()
    );
    Ok(())
}
