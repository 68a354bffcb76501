//! `quid subscribers`: the running (or last) daemon's per-subscriber totals as a table or
//! JSON, and `quid subscribers reload`, which asks the daemon to reload its table and waits.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, bail};
use quid::{
    config::Config,
    metering::snapshot::{DaemonState, Snapshot},
    subscribers::reload_result::ReloadResult,
};

use super::running_daemon::running_daemon;

/// `quid subscribers`: the current totals as a table (or JSON).
pub fn print_subscribers(state_dir: &Path, json: bool) -> anyhow::Result<()> {
    let snap = Snapshot::read(state_dir)
        .context("no totals yet: is `quid run` running with this state_dir?")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&snap)?);
    } else {
        if snap.state != DaemonState::Running {
            println!("(daemon stopped; these are its final totals)");
        }
        print!("{}", snap.render_table());
    }
    Ok(())
}

/// `quid subscribers reload`: SIGHUP, then wait for the daemon's answer.
pub fn reload(config: &Config) -> anyhow::Result<()> {
    let pid = running_daemon(config).context("no quid is running with this config")?;
    let before = ReloadResult::read(&config.daemon.state_dir).map(|r| r.seq);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .with_context(|| format!("cannot signal quid (pid {pid})"))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if let Some(r) = ReloadResult::read(&config.daemon.state_dir)
            && Some(r.seq) != before
        {
            if r.ok {
                println!(
                    "reloaded: {} added, {} removed, {} changed",
                    r.change.added.len(),
                    r.change.removed.len(),
                    r.change.changed.len()
                );
                return Ok(());
            }
            bail!(
                "reload refused, the running table is unchanged:\n  {}",
                r.errors.join("\n  ")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("quid (pid {pid}) did not answer the reload within 60 s")
}
